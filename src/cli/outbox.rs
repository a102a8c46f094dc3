//! `sip2d outbox`: the notifications written to patrons, and their delivery by SMTP.

use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::json;

use super::register::Common;
use crate::domain::{Delivery, Notice};
use crate::engine::{Answer, Engine, Operation, Query};

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
    /// Where patrons reach the self-service pages (the links in welcomes lead there), such as
    /// https://library.example.org.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9104")]
    pub self_service_url: String,
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
pub fn send(smtp: &Smtp, n: &Notice, body: &str) -> Result<(), String> {
    use lettre::message::header::ContentType;
    use lettre::{Message, SmtpTransport, Transport};
    let to = n.to.as_deref().ok_or("no address")?;
    let msg = Message::builder()
        .from(smtp.from.parse().map_err(|e| format!("sender {}: {e}", smtp.from))?)
        .to(to.parse().map_err(|e| format!("address {to}: {e}"))?)
        .subject(n.subject.clone())
        .header(ContentType::TEXT_PLAIN)
        .body(body.to_string())
        .map_err(|e| e.to_string())?;
    let (host, port) = smtp.smtp.rsplit_once(':').ok_or("--smtp takes HOST:PORT")?;
    let port: u16 = port.parse().map_err(|_| "--smtp takes HOST:PORT")?;
    let transport =
        SmtpTransport::builder_dangerous(host).port(port).timeout(Some(std::time::Duration::from_secs(10))).build();
    transport.send(&msg).map(|_| ()).map_err(|e| e.to_string())
}

/// A notice's body with each link's marker made the link: `{pin-link:SERIAL}` (choose a PIN)
/// and `{email-link:SERIAL}` (confirm an e-mail address) become the patron pages' address, the
/// page's path and the token, which only now exists outside the key.
fn with_links(engine: &dyn Engine, smtp: &Smtp, body: &str) -> Result<String, String> {
    const LINKS: [(&str, &str); 2] = [(crate::engine::LINK_MARKER, "pin"), (crate::engine::EMAIL_LINK_MARKER, "email")];
    let base = smtp.self_service_url.trim_end_matches('/');
    let mut out = String::with_capacity(body.len() + 64);
    let mut rest = body;
    while let Some((at, marker, page)) =
        LINKS.iter().filter_map(|(m, page)| rest.find(m).map(|at| (at, *m, *page))).min_by_key(|(at, _, _)| *at)
    {
        out.push_str(&rest[..at]);
        let after = &rest[at + marker.len()..];
        let Some((serial, tail)) = after.split_once('}') else { break };
        let serial: u64 = serial.parse().map_err(|_| format!("a link marker without a number: {serial}"))?;
        let token = engine.link_token(serial).map_err(|e| e.to_string())?;
        out.push_str(&format!("{base}/{page}/{token}"));
        rest = tail;
    }
    out.push_str(rest);
    Ok(out)
}

/// Delivers what is due through `engine` (each attempt's outcome written back as a unit of its
/// own); returns (sent, failed, still pending).
pub fn deliver(engine: &dyn Engine, smtp: &Smtp, actor: &str) -> Result<(usize, usize, usize)> {
    let desk = crate::engine::Desk::new(engine, actor);
    let now = jiff::Timestamp::now();
    let Answer::Outbox(all) = desk.query(Query::Outbox)? else { anyhow::bail!("unexpected answer to the outbox") };
    let (mut sent, mut failed, mut pending) = (0, 0, 0);
    for n in all.into_iter().filter(|n| crate::engine::notices_due(n, now)) {
        let result = with_links(engine, smtp, &n.body).and_then(|body| send(smtp, &n, &body));
        match (&result, n.attempts + 1 >= crate::engine::MAX_ATTEMPTS) {
            (Ok(()), _) => sent += 1,
            (Err(_), true) => failed += 1,
            (Err(_), false) => pending += 1,
        }
        desk.run(Operation::Delivered { notice: Box::new(n), result }, now)?;
    }
    Ok((sent, failed, pending))
}

pub fn run(cmd: &OutboxCmd, common: &Common) -> Result<ExitCode> {
    let reg = common.open()?;
    match cmd {
        OutboxCmd::List { state } => {
            let Answer::Outbox(all) = reg.query(Query::Outbox)? else {
                anyhow::bail!("unexpected answer to the outbox")
            };
            for n in all {
                if state.as_deref().is_none_or(|s| s == state_name(n.delivery)) {
                    print_notice(&n, false, common.json);
                }
            }
        }
        OutboxCmd::Deliver(smtp) => {
            let (sent, failed, pending) =
                deliver(reg.engine.as_ref(), smtp, &reg.actor).context("delivering the outbox")?;
            outln!("{sent} sent, {failed} given up, {pending} to be retried");
            if failed + pending > 0 {
                return Ok(super::exit::Exit::Failure.into());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
