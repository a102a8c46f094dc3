//! Patron notifications: written to the outbox in the patron's language unless they opted
//! out, and delivered over SMTP to a sink on loopback (`common::smtp`), with a failed delivery
//! kept for a retry.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::smtp::SmtpSink;

fn sip2d(data: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sip2d")).arg("--data").arg(data).args(args).output().unwrap()
}

fn ok(o: Output) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{text}");
    text
}

fn outbox(data: &std::path::Path) -> Vec<serde_json::Value> {
    let o = ok(sip2d(data, &["--json", "outbox", "list"]));
    o.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Kills the child process when dropped.
struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn notifications_are_written_in_the_patrons_language_and_delivered_by_smtp() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    ok(sip2d(data, &["init"]));
    ok(sip2d(data, &["institution", "add", "--code", "MAIN", "--name", "Main Library"]));
    ok(sip2d(data, &["institution", "add", "--code", "WEST", "--name", "West Library"]));
    let add = |id: &str, first: &str, extra: &[&str]| {
        let mut args = vec![
            "patron",
            "add",
            "--institution",
            "MAIN",
            "--first-name",
            first,
            "--last-name",
            "Reader",
            "--primary-id",
            id,
        ];
        args.extend_from_slice(extra);
        ok(sip2d(data, &args));
    };
    add("P1", "Ada", &["--email", "ada@example.org"]);
    add("P2", "Åsa", &["--email", "asa@example.org", "--language", "sv"]);
    add("P3", "Noemail", &[]);

    let notes = outbox(data);
    assert_eq!(notes.len(), 3, "a welcome for each registration: {notes:?}");
    assert_eq!((notes[0]["kind"].as_str(), notes[0]["state"].as_str()), (Some("welcome"), Some("pending")));
    assert_eq!(notes[0]["subject"], "Welcome to Main Library");
    assert!(notes[0]["body"].as_str().unwrap().contains("PIN"), "how to get a PIN: {}", notes[0]["body"]);
    assert_eq!(notes[1]["language"], "sv");
    assert_eq!(notes[1]["subject"], "Välkommen till Main Library");
    assert_eq!(
        (notes[2]["state"].as_str(), notes[2]["note"].as_str()),
        (Some("skipped"), Some("the patron has no e-mail address"))
    );

    // Opt-outs, a report, a transfer, and a balance that stops a deletion.
    ok(sip2d(data, &["patron", "notices", "P1", "-i", "MAIN", "--opt-out", "transfer-requested"]));
    let report = ok(sip2d(data, &["patron", "report", "P2", "-i", "MAIN"]));
    assert!(report.contains("Lån:") && report.contains("Att betala: 0.00 SEK"), "{report}");
    ok(sip2d(data, &["patron", "transfer", "request", "P1", "-i", "MAIN", "--to", "WEST"]));
    ok(sip2d(data, &["patron", "fee", "add", "P2", "-i", "MAIN", "--type", "damage", "--amount", "12.00"]));
    assert!(!sip2d(data, &["patron", "delete", "P2", "-i", "MAIN"]).status.success());
    let notes = outbox(data);
    let kinds: Vec<(&str, &str)> =
        notes.iter().map(|n| (n["kind"].as_str().unwrap(), n["state"].as_str().unwrap())).collect();
    assert_eq!(
        &kinds[3..],
        [("report", "pending"), ("transfer-requested", "skipped"), ("balance-due", "pending")],
        "{notes:?}"
    );
    assert!(notes[5]["body"].as_str().unwrap().contains("12.00 SEK"), "{}", notes[5]["body"]);
    assert!(!sip2d(data, &["patron", "notices", "P1", "-i", "MAIN", "--opt-out", "spam"]).status.success());

    // A relay that is down: nothing lost, retried later with a backoff.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let o =
        sip2d(data, &["outbox", "deliver", "--smtp", &format!("127.0.0.1:{closed}"), "--from", "library@example.org"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a delivery that did not happen is a failure: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let notes = outbox(data);
    assert_eq!(notes[0]["attempts"], 1);
    assert_eq!(notes[0]["state"], "pending");
    assert!(notes[0]["last_error"].is_string() && notes[0]["next_attempt"].is_string(), "{}", notes[0]);

    // A real SMTP server on loopback: once the backoff has passed, the notices go out.
    let sink = SmtpSink::start();
    let relay = sink.relay();
    let o = sip2d(data, &["outbox", "deliver", "--smtp", &relay, "--from", "library@example.org"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("0 sent"),
        "not due yet: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    // Make them due: the store says when the next attempt is; a fresh notice is due at once.
    ok(sip2d(data, &["patron", "report", "P1", "-i", "MAIN"]));
    let o = ok(sip2d(data, &["outbox", "deliver", "--smtp", &relay, "--from", "library@example.org"]));
    assert!(o.contains("1 sent"), "{o}");
    let received = sink.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(
        (received[0].from.as_str(), received[0].to.as_slice()),
        ("library@example.org", &["ada@example.org".to_string()][..])
    );
    assert!(received[0].data.contains("Subject: Your loans and requests at Main Library"), "{:?}", received[0]);
    let notes = outbox(data);
    let last = notes.last().unwrap();
    assert_eq!((last["kind"].as_str(), last["state"].as_str()), (Some("report"), Some("sent")));
}

#[test]
fn a_running_server_with_a_relay_delivers_the_outbox_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sink = SmtpSink::start();
    let config = dir.path().join("sip2d.toml");
    std::fs::write(&config, sink.mail_config()).unwrap();
    ok(sip2d(&data, &["init"]));
    ok(sip2d(&data, &["institution", "add", "--code", "MAIN", "--name", "Main Library"]));
    let mut server = Killed(
        Command::new(env!("CARGO_BIN_EXE_sip2d"))
            .arg("--data")
            .arg(&data)
            .args(["serve", "--listen", "127.0.0.1:0", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.contains("listening on"), "{line}");
    // Registered while the server runs (through its admin socket): the welcome goes out alone.
    ok(sip2d(
        &data,
        &[
            "patron",
            "add",
            "--first-name",
            "Bo",
            "--last-name",
            "Reader",
            "--primary-id",
            "P9",
            "--email",
            "bo@example.org",
        ],
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let notes = outbox(&data);
        if notes.first().is_some_and(|n| n["state"] == "sent") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not delivered: {notes:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(server);
    let received = sink.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].to, ["bo@example.org"]);
    assert!(received[0].data.contains("Subject: Welcome to Main Library"), "{:?}", received[0]);
}

/// `patron add --no-invitation` registers without the welcome; `patron invite` writes it
/// then, and again when asked; a patron without an e-mail address is refused one.
#[test]
fn the_invitation_is_sent_with_the_registration_or_later_by_staff() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    ok(sip2d(data, &["init"]));
    ok(sip2d(data, &["institution", "add", "--code", "MAIN", "--name", "Main Library"]));
    let add = |id: &str, extra: &[&str]| {
        let mut args = vec!["patron", "add", "--first-name", "Ines", "--last-name", id, "--primary-id", id];
        args.extend_from_slice(extra);
        ok(sip2d(data, &args));
    };
    let welcomes = || outbox(data).iter().filter(|n| n["kind"] == "welcome").count();
    add("P1", &["--email", "p1@example.org", "--no-invitation"]);
    assert_eq!(welcomes(), 0);
    let shown = ok(sip2d(data, &["patron", "invite", "P1"]));
    assert!(shown.contains("p1@example.org") && shown.contains("Welcome to Main Library"), "{shown}");
    assert_eq!(welcomes(), 1);
    ok(sip2d(data, &["patron", "invite", "P1"]));
    assert_eq!(welcomes(), 2, "sent again when asked");
    add("P2", &[]);
    let o = sip2d(data, &["patron", "invite", "P2"]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("no e-mail address"), "{o:?}");
}
