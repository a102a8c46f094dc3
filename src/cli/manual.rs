//! The manual pages, made from the same command definitions `--help` prints (clap_mangen).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::CommandFactory;

/// What sip2d(1) says beyond the options: where the register is, the environment, exit codes.
const SECTIONS: &[(&str, &str)] = &[
    (
        "FILES",
        "The data directory holds the register: db/ (the store) and pin.key (the key every PIN hash depends on; \
         `sip2d key export` copies it). It is the first of --data, $SIP2D_DATA, the configuration's `data`, and \
         the per-user directory (~/.local/share/sip2d). The configuration file is --config, $SIP2D_CONFIG, or \
         /etc/sip2d/sip2d.toml when it exists. The Debian package keeps the register in /var/lib/sip2d, owned by \
         the sip2d user; run commands on it as that user: sudo -u sip2d sip2d patron list.",
    ),
    (
        "ENVIRONMENT",
        "SIP2D_DATA names the data directory; SIP2D_CONFIG the configuration file; RUST_LOG overrides the \
         server's log level.",
    ),
];

/// Escapes text for a roff paragraph.
fn roff(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    t.lines()
        .map(|l| if l.starts_with(['.', '\'']) { format!("\\&{l}") } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n")
}

/// sip2d.1: the generated page, with EXIT STATUS (one line per code), FILES and ENVIRONMENT.
fn main_page(w: &mut dyn Write) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(super::Cli::command().after_help("").disable_help_subcommand(true));
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    man.render_subcommands_section(w)?;
    writeln!(w, ".SH \"EXIT STATUS\"")?;
    for line in super::exit::EXIT_CODES_HELP.lines().skip(1) {
        match line.trim_start().split_once("  ") {
            Some((code, what)) if code.len() == 1 => writeln!(w, ".TP\n{code}\n{}", roff(what.trim()))?,
            _ => writeln!(w, "{}", roff(line.trim()))?,
        }
    }
    for (title, text) in SECTIONS {
        writeln!(w, ".SH {title}\n{}", roff(text))?;
    }
    man.render_version_section(w)
}

/// Writes sip2d.1 and a page per subcommand (sip2d-serve.1, sip2d-patron-fee.1, ...) to `out`.
pub fn write(out: &Path) -> Result<ExitCode> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut cmd = super::Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = 0;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        clap_mangen::generate_to(sub.clone(), out).with_context(|| format!("cannot write to {}", out.display()))?;
        written += 1 + count(sub);
    }
    let path = out.join("sip2d.1");
    let mut file = std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    main_page(&mut file).with_context(|| format!("cannot write {}", path.display()))?;
    outln!("wrote {} manual pages to {}", written + 1, out.display());
    Ok(ExitCode::SUCCESS)
}

fn count(cmd: &clap::Command) -> usize {
    cmd.get_subcommands().filter(|s| !s.is_hide_set()).map(|s| 1 + count(s)).sum()
}
