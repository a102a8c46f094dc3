//! `sip2d outbox`: the notifications written to patrons, and their delivery by SMTP.

use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::json;

use super::register::Common;
use crate::domain::{Delivery, Notice};
use crate::register::Register;

/// The notifications to patrons (welcome, transfers, reports, balance due) and their delivery.
#[derive(Debug, clap::Subcommand)]
pub enum OutboxCmd {
    /// List notifications, newest last: pending, sent, failed or skipped.
    List {
        /// Only those in this state: pending, sent, failed, skipped.
        #[arg(long)]
        state: Option<String>,
    },
    /// Send the pending notifications that are due through an SMTP relay; failures are retried
    /// later with a doubling backoff, and given up after six attempts.
    Deliver(Smtp),
}

/// An SMTP relay (plain SMTP, as a local relay or smarthost on the management network speaks it).
#[derive(Debug, Clone, clap::Args)]
pub struct Smtp {
    /// The relay, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub smtp: String,
    /// The sender address.
    #[arg(long, value_name = "ADDRESS")]
    pub from: String,
}

fn state_name(d: Delivery) -> &'static str {
    match d {
        Delivery::Pending => "pending",
        Delivery::Sent => "sent",
        Delivery::Failed => "failed",
        Delivery::Skipped => "skipped",
    }
}

/// Prints a notice: a line, or with `body` the whole message.
pub fn print_notice(n: &Notice, body: bool, json: bool) {
    if json {
        outln!(
            "{}",
            json!({"id": n.id, "patron": n.patron, "kind": n.kind.name(), "to": n.to, "language": n.language,
                   "subject": n.subject, "body": n.body, "state": state_name(n.delivery), "attempts": n.attempts,
                   "created": n.created.to_string(), "sent": n.sent.map(|t| t.to_string()),
                   "next_attempt": n.next_attempt.map(|t| t.to_string()), "last_error": n.last_error, "note": n.note})
        );
        return;
    }
    outln!(
        "{:>6}  {:<8} {:<18} patron {:<6} {:<28} {}{}",
        n.id,
        state_name(n.delivery),
        n.kind.name(),
        n.patron,
        n.to.as_deref().unwrap_or("-"),
        n.subject,
        n.note.as_deref().or(n.last_error.as_deref()).map(|w| format!("  ({w})")).unwrap_or_default()
    );
    if body {
        outln!("\n{}", n.body);
    }
}

/// Sends one notice through the relay.
pub fn send(smtp: &Smtp, n: &Notice) -> Result<(), String> {
    use lettre::message::header::ContentType;
    use lettre::{Message, SmtpTransport, Transport};
    let to = n.to.as_deref().ok_or("no address")?;
    let msg = Message::builder()
        .from(smtp.from.parse().map_err(|e| format!("sender {}: {e}", smtp.from))?)
        .to(to.parse().map_err(|e| format!("address {to}: {e}"))?)
        .subject(n.subject.clone())
        .header(ContentType::TEXT_PLAIN)
        .body(n.body.clone())
        .map_err(|e| e.to_string())?;
    let (host, port) = smtp.smtp.rsplit_once(':').ok_or("--smtp takes HOST:PORT")?;
    let port: u16 = port.parse().map_err(|_| "--smtp takes HOST:PORT")?;
    let transport =
        SmtpTransport::builder_dangerous(host).port(port).timeout(Some(std::time::Duration::from_secs(10))).build();
    transport.send(&msg).map(|_| ()).map_err(|e| e.to_string())
}

/// Delivers what is due; returns (sent, failed, still pending).
pub fn deliver(reg: &Register, smtp: &Smtp) -> Result<(usize, usize, usize)> {
    Ok(reg.deliver(jiff::Timestamp::now(), |n| send(smtp, n))?)
}

pub fn run(cmd: &OutboxCmd, common: &Common) -> Result<ExitCode> {
    let reg = common.open()?;
    match cmd {
        OutboxCmd::List { state } => {
            for n in reg.store.notices() {
                let n = n?;
                if state.as_deref().is_none_or(|s| s == state_name(n.delivery)) {
                    print_notice(&n, false, common.json);
                }
            }
        }
        OutboxCmd::Deliver(smtp) => {
            let (sent, failed, pending) = deliver(&reg, smtp).context("delivering the outbox")?;
            outln!("{sent} sent, {failed} given up, {pending} to be retried");
            if failed + pending > 0 {
                return Ok(super::exit::Exit::Failure.into());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
