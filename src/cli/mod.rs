//! The `sip2d` command line: one binary, git-style subcommands.

mod decode;
mod register;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// sip2d: a SIP2 (3M Standard Interchange Protocol 2.00) self-check server and toolkit.
///
/// Self-check kiosks, sorters and authentication clients speak SIP2 to a library's circulation
/// system. sip2d reads and writes that protocol; `sip2d decode` turns raw SIP2 from kiosk logs
/// into labelled fields with a checksum verdict.
#[derive(Debug, Parser)]
#[command(name = "sip2d", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    common: register::Common,
}

#[derive(Debug, Subcommand)]
enum Command {
    Decode(decode::DecodeArgs),
    #[command(subcommand)]
    Institution(register::InstitutionCmd),
    #[command(subcommand)]
    Patron(register::PatronCmd),
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Decode(args) => decode::run(&args, cli.common.json),
        Command::Institution(cmd) => register::institution(&cmd, &cli.common),
        Command::Patron(cmd) => register::patron(&cmd, &cli.common),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sip2d: {e:#}");
            ExitCode::FAILURE
        }
    }
}
