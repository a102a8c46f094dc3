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
mod remote;
mod selfservice;
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
    /// Notifications to patrons (welcome, set-PIN and e-mail links, transfers, reports, balance
    /// due): list them, and deliver the pending ones through an SMTP relay with retries.
    #[command(subcommand)]
    Outbox(outbox::OutboxCmd),
    /// The register's PIN key: show its fingerprint, export it, import it.
    #[command(subcommand)]
    Key(setup::KeyCmd),
    /// The register's write-ahead log: check every record, or cut a damaged log where the
    /// damage starts.
    #[command(subcommand)]
    Log(setup::LogCmd),
    /// Create or bring up to date the schema of the PostgreSQL database a register on
    /// `[store] engine = "postgres"` is in (migrations applied in order, each in a transaction
    /// of its own); a node refuses to serve a schema it does not know. Run it before the first
    /// node starts and after each upgrade (docs/deploy.md).
    Migrate(setup::MigrateArgs),
    /// Move a register between the embedded store and PostgreSQL, every entry as it is
    /// (history, outbox and files included), and compare the counts and a checksum of both
    /// sides after: `--from sled:/var/lib/sip2d --to postgres:host=db1 user=sip2d dbname=sip2d`,
    /// or back with `--from postgres:... --to sled:DIR`. Stop the servers first.
    MigrateStore(setup::MigrateStoreArgs),
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
    match run_command(cli) {
        Ok(code) => code,
        Err(e) => exit::report(&e),
    }
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
        Command::Migrate(args) => setup::migrate(&args, &cli.common),
        Command::MigrateStore(args) => setup::migrate_store(&args, &cli.common),
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
