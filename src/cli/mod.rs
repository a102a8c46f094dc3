//! The `sip2d` command line: one binary, git-style subcommands.

#[macro_use]
mod io;
mod admin;
mod api;
mod bench;
mod circulation;
mod client;
mod conform;
mod console;
mod decode;
pub mod exit;
pub mod location;
mod logbuf;
mod manual;
mod outbox;
mod progress;
mod register;
mod serve;
mod sessions;
mod setup;
mod staff;
mod times;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// sip2d: a SIP2 (3M Standard Interchange Protocol 2.00) self-check server and toolkit.
///
/// Self-check kiosks, sorters and authentication clients speak SIP2 to a library's circulation
/// system. `sip2d serve` answers them over TCP and TLS from the patron register sip2d keeps
/// (institutions, patrons, items, loans, holds, fees, self-check accounts: the commands below,
/// with import and export as JSON Lines); `sip2d serve --demo` starts one to try. `sip2d
/// decode` turns raw SIP2 from kiosk logs into labelled fields with a checksum verdict.
#[derive(Debug, Parser)]
#[command(name = "sip2d", version = VERSION, propagate_version = true, max_term_width = 100)]
#[command(after_help = exit::EXIT_CODES_HELP)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    common: register::Common,
}

/// The version and the commit it was built from, e.g. `0.1.0 (c19694b 2026-12-02)`.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("SIP2D_COMMIT"), ")");

#[derive(Debug, Subcommand)]
enum Command {
    /// Create an empty register (store and a new PIN key, the directory owner-only) in the
    /// data directory. Every other command uses an existing register and creates none.
    Init,
    Serve(serve::ServeArgs),
    /// Talk SIP2 to any server (sip2d or another), plain or TLS: one request by name
    /// (`sip2d client --login U:P patron-status 21234 --pin 1234`) or, without one, an
    /// interactive prompt with history and completion. Replies are shown decoded with field
    /// labels, or raw with --raw; PINs and passwords are masked.
    Client(client::ClientArgs),
    Conform(conform::ConformArgs),
    Bench(bench::BenchArgs),
    Decode(decode::DecodeArgs),
    #[command(subcommand)]
    Institution(register::InstitutionCmd),
    #[command(subcommand)]
    Patron(register::PatronCmd),
    #[command(subcommand)]
    Item(circulation::ItemCmd),
    #[command(subcommand)]
    Loan(circulation::LoanCmd),
    #[command(subcommand)]
    Hold(circulation::HoldCmd),
    #[command(subcommand)]
    Account(circulation::AccountCmd),
    #[command(subcommand)]
    Staff(staff::StaffCmd),
    /// Remove for good the deleted patrons and those past their purge date (unless they owe
    /// money or have loans), and audit entries past each institution's retention.
    Purge(circulation::PurgeArgs),
    /// Import institutions, accounts, patrons, items, loans, fees and holds from JSON Lines
    /// (docs/import.md). Idempotent; each record atomic; rejected lines are listed and the
    /// exit code is 6.
    Import(circulation::ImportArgs),
    /// Export the whole register as JSON Lines, the format `import` reads.
    Export(circulation::ExportArgs),
    /// Notifications to patrons (welcome, transfers, reports, balance due): list them, and
    /// deliver the pending ones through an SMTP relay with retries.
    #[command(subcommand)]
    Outbox(outbox::OutboxCmd),
    /// The register's PIN key: show its fingerprint, export it, import it.
    #[command(subcommand)]
    Key(setup::KeyCmd),
    /// The register's write-ahead log: check every record, or cut a damaged log where the
    /// damage starts.
    #[command(subcommand)]
    Log(setup::LogCmd),
    /// Print a completion script for a shell, e.g.
    /// `sip2d completions bash > /etc/bash_completion.d/sip2d`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (sip2d.1, sip2d-serve.1, ...) to a directory, for packaging.
    Man {
        /// The directory to write them to (created if missing).
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: std::path::PathBuf,
    },
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    // What sip2d creates (the store, the log, keys, exports) is its owner's alone.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if matches.subcommand_name() != Some("serve") {
        // What the engine says of itself while a command runs (a torn log tail dropped at open,
        // say): one line each on standard error. The server sets up its own log.
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(tracing::Level::WARN)
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .without_time()
            .try_init();
    }
    // A register command on a data directory a server holds goes to that server.
    if matches.subcommand_name().is_some_and(is_register) {
        match forward(&cli) {
            Ok(Some(code)) => return code,
            Ok(None) => {}
            Err(e) => return exit::report(&e),
        }
    }
    match run_command(cli) {
        Ok(code) => code,
        Err(e) => exit::report(&e),
    }
}

/// The commands that work on the register, and so go through a running server (and are the
/// ones its admin API runs).
const REGISTER_COMMANDS: &[&str] =
    &["institution", "patron", "item", "loan", "hold", "account", "staff", "purge", "import", "export", "outbox"];

fn is_register(command: &str) -> bool {
    REGISTER_COMMANDS.contains(&command)
}

/// Why a command, run by the admin API inside the server, would read or write a file on the
/// server's machine: the API takes data in the request and gives it back in the response,
/// never a path (whoever may call it must not read or overwrite the server's files, its PIN
/// key say).
fn names_a_server_file(command: &Command) -> Option<&'static str> {
    match command {
        Command::Import(a) if a.pin_key.is_some() => {
            Some("a PIN key is not taken through the admin API; stop the server and use `sip2d key import`")
        }
        Command::Import(a) if a.file.as_os_str() != "-" => Some(
            "the admin API reads an import from the request (file `-`, the lines as standard input), never a file on the server",
        ),
        Command::Export(a) if a.output.is_some() => {
            Some("the admin API gives an export back in the response; it writes no file on the server")
        }
        _ => None,
    }
}

/// Sends this register command to the server running on its data directory, if any: the
/// arguments as given, standard input when the command reads it, files read and written here.
fn forward(cli: &Cli) -> anyhow::Result<Option<ExitCode>> {
    use std::io::Read;
    let dir = cli.common.data_dir()?.path;
    if !dir.join(admin::SOCKET).exists() {
        return Ok(None);
    }
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut stdin = String::new();
    let mut output: Option<std::path::PathBuf> = None;
    match &cli.command {
        Command::Import(a) if a.pin_key.is_some() => {
            return Err(exit::refused(
                "a register's PIN key cannot change while `sip2d serve` runs on it; stop the server, import, start it again",
            ));
        }
        // The file is read here and sent as standard input.
        Command::Import(a) if a.file.as_os_str() != "-" => {
            stdin = std::fs::read_to_string(&a.file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", a.file.display()))?;
            let file = a.file.to_string_lossy().into_owned();
            if let Some(arg) = args.iter_mut().find(|x| **x == file) {
                *arg = "-".into();
            }
        }
        Command::Import(_) => {
            std::io::stdin().read_to_string(&mut stdin)?;
        }
        // The export comes back on standard output and is written here.
        Command::Export(a) => {
            if let Some(o) = &a.output {
                output = Some(o.clone());
                let o = o.to_string_lossy().into_owned();
                if let Some(i) = args.iter().position(|x| *x == o) {
                    args.remove(i);
                    if i > 0 && matches!(args.get(i - 1).map(String::as_str), Some("-o" | "--output")) {
                        args.remove(i - 1);
                    }
                }
            }
        }
        Command::Account(circulation::AccountCmd::Add { .. } | circulation::AccountCmd::Password { .. })
        | Command::Staff(staff::StaffCmd::Add { .. } | staff::StaffCmd::Password { .. }) => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            stdin = line;
        }
        _ => {}
    }
    let Some(answer) = admin::forward(&dir, args, stdin, cli.common.actor())? else { return Ok(None) };
    match output {
        Some(path) if answer.code == 0 => {
            std::fs::write(&path, &answer.stdout)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        }
        _ => print!("{}", answer.stdout),
    }
    eprint!("{}", answer.stderr);
    Ok(Some(ExitCode::from(answer.code)))
}

/// Runs a parsed command here.
fn run_command(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Init => setup::init(&cli.common),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "sip2d", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { out } => manual::write(&out),
        Command::Key(cmd) => setup::key(&cmd, &cli.common),
        Command::Log(cmd) => setup::log(&cmd, &cli.common),
        Command::Serve(args) => serve::run(&args, &cli.common),
        Command::Client(args) => client::run(&args),
        Command::Conform(args) => conform::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Decode(args) => decode::run(&args, cli.common.json),
        Command::Institution(cmd) => register::institution(&cmd, &cli.common),
        Command::Patron(cmd) => register::patron(&cmd, &cli.common),
        Command::Item(cmd) => circulation::item(&cmd, &cli.common),
        Command::Loan(cmd) => circulation::loan(&cmd, &cli.common),
        Command::Hold(cmd) => circulation::hold(&cmd, &cli.common),
        Command::Account(cmd) => circulation::account(&cmd, &cli.common),
        Command::Staff(cmd) => staff::run(&cmd, &cli.common),
        Command::Purge(args) => circulation::purge(&args, &cli.common),
        Command::Import(args) => circulation::import(&args, &cli.common),
        Command::Export(args) => circulation::export(&args, &cli.common),
        Command::Outbox(cmd) => outbox::run(&cmd, &cli.common),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_register_commands_are_subcommands_and_the_tools_are_not_among_them() {
        let cli = super::Cli::command();
        for name in super::REGISTER_COMMANDS {
            assert!(cli.find_subcommand(name).is_some(), "{name} is not a subcommand");
        }
        for tool in ["serve", "client", "conform", "bench"] {
            assert!(cli.find_subcommand(tool).is_some() && !super::is_register(tool), "{tool}");
        }
    }
}
