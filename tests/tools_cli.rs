//! The vendor tools as processes: `client`, `conform` (passing against sip2d, failing against
//! a broken responder) and `bench` (against sip2d with a register it wrote, and `--null`).

mod common;

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};

fn sip2d(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sip2d")).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `sip2d serve` with these arguments (killed when dropped); its address from what it prints.
fn serve(args: &[&str]) -> (Killed, SocketAddr) {
    let (child, out, addr) = common::spawn_sip2d(args, "warn", Stdio::null(), "listening on ");
    // Keep reading stdout in the background so the banner never blocks the server.
    std::thread::spawn(move || for _ in out.lines() {});
    (Killed(child), addr)
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn conform_passes_against_the_demo_and_the_client_talks_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let (_server, addr) = serve(&["--data", data.to_str().unwrap(), "serve", "--demo", "--listen", "127.0.0.1:0"]);
    let port = addr.port().to_string();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/conformance/fixtures/demo.toml");
    let o = sip2d(&["conform", "--port", &port, "--login", "kiosk1:kiosk1-secret", "--fixture", fixture]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains(" 0 failed, 0 skipped"), "{t}");
    assert!(t.contains("PASS patron/status-right-pin: CQ = Y"), "{t}");

    // The JSON report, and a transcript skipped when the fixture lacks what it needs.
    let o = sip2d(&["conform", "--port", &port, "--login", "kiosk1:kiosk1-secret", "--json", "--only", "status-right"]);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["failed"], 0);
    assert_eq!(report["checks"][0]["verdict"], "skip", "{report}");
    assert!(!o.status.success(), "nothing passed, so it is not a pass");

    // The client, one-shot, decoded and raw.
    let o = sip2d(&[
        "client",
        "--port",
        &port,
        "--login",
        "kiosk1:kiosk1-secret",
        "patron-status",
        "21000000000001",
        "--pin",
        "1234",
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("24 Patron Status Response (checksum ok") && t.contains("CQ valid patron password  Y (yes)"),
        "{t}"
    );
    let o = sip2d(&[
        "client",
        "--port",
        &port,
        "--login",
        "kiosk1:kiosk1-secret",
        "--raw",
        "--no-checksums",
        "--crlf",
        "checkout",
        "21000000000001",
        "31000000000002",
        "--pin",
        "1234",
    ]);
    let t = text(&o);
    assert!(t.contains("> 11YN") && t.contains("|AD***|"), "the PIN is masked: {t}");
    assert!(t.contains("< 121"), "{t}");
    let o = sip2d(&["client", "--port", &port, "--login", "kiosk1:wrong", "sc-status"]);
    assert!(!o.status.success() && text(&o).contains("refused the login"), "{}", text(&o));

    // Interactive: commands from standard input, one reply each.
    let mut child = Command::new(env!("CARGO_BIN_EXE_sip2d"))
        .args(["client", "--port", &port, "--login", "kiosk1:kiosk1-secret"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"item-info 31000000000005\nno-such-command\nresend\nquit\n").unwrap();
    let o = child.wait_with_output().unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert_eq!(t.matches("< 18 Item Information Response").count(), 2, "item-info, then resend: {t}");
    assert!(t.contains("unrecognized subcommand 'no-such-command'"), "{t}");
}

#[test]
fn conform_fails_against_a_broken_responder() {
    // The bench's canned responder: no checksums, the wrong patron echoed, every patron valid.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let token = tokio_util::sync::CancellationToken::new();
    let addr = rt.block_on(sip2d::tools::bench::start_null(token.clone())).unwrap();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/conformance/fixtures/demo.toml");
    let o = sip2d(&["conform", "--port", &addr.port().to_string(), "--login", "bench:x", "--fixture", fixture]);
    let t = text(&o);
    assert!(!o.status.success(), "a broken server must not pass: {t}");
    for failure in [
        "FAIL framing/sc-status: checksum: no valid AY/AZ trailer",
        "FAIL patron/status-unknown-patron: BL = N",
        "FAIL patron/status-right-pin: AA = 21000000000001",
    ] {
        assert!(t.contains(failure), "expected '{failure}' in:\n{t}");
    }
    token.cancel();
}

#[test]
fn bench_runs_clean_against_sip2d_and_the_null_responder() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bench.jsonl");
    let data = dir.path().join("data");
    let o = sip2d(&[
        "bench",
        "--write-register",
        file.to_str().unwrap(),
        "--register-patrons",
        "8",
        "--register-items",
        "8",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(sip2d(&["--data", data.to_str().unwrap(), "init"]).status.success());
    let o = sip2d(&["--data", data.to_str().unwrap(), "import", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let (server, addr) = serve(&["--data", data.to_str().unwrap(), "serve", "--listen", "127.0.0.1:0"]);
    let port = addr.port().to_string();
    let pid = server.0.id().to_string();
    let o = sip2d(&[
        "bench",
        "--port",
        &port,
        "--connections",
        "4",
        "--duration",
        "2s",
        "--warmup",
        "500ms",
        "--json",
        "--server-pid",
        &pid,
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["errors"], 0, "{r}");
    assert!(r["throughput"].as_f64().unwrap() > 0.0, "{r}");
    // The server did the work: some CPU per request, and not more than the window holds.
    let cpu = r["server_cpu_us_per_request"].as_f64().expect("the server's CPU per request");
    let ceiling = 2.0 * 2e6 * num_cpus() / r["requests"].as_f64().unwrap();
    assert!(cpu > 0.0 && cpu <= ceiling, "{cpu} µs per request: {r}");
    for code in ["23", "11", "09"] {
        assert!(r["per_message"][code]["count"].as_u64().unwrap() > 0, "{code}: {r}");
        assert!(
            r["per_message"][code]["p99_us"].as_u64().unwrap() >= r["per_message"][code]["p50_us"].as_u64().unwrap()
        );
    }
    // Items the register does not have: every checkout is refused, and the bench must count
    // each refusal as an error.
    let o = sip2d(&[
        "bench",
        "--port",
        &port,
        "--connections",
        "2",
        "--duration",
        "1s",
        "--warmup",
        "0s",
        "--mix",
        "checkout",
        "--json",
        "--item-prefix",
        "X",
    ]);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(r["errors"].as_u64().unwrap() > 0, "a refusal counts as an error: {r}");
    assert!(!o.status.success());

    let o = sip2d(&["bench", "--null", "--connections", "8", "--duration", "1s", "--warmup", "200ms", "--json"]);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["errors"], 0, "{r}");
    assert!(r["throughput"].as_f64().unwrap() > 100.0, "{r}");

    // The same canned responder as a process of its own.
    let (_canned, addr) = serve(&["serve", "--null", "--listen", "127.0.0.1:0"]);
    let port = addr.port().to_string();
    let o = sip2d(&["bench", "--port", &port, "--connections", "4", "--duration", "1s", "--warmup", "200ms", "--json"]);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["errors"], 0, "{r}");
    assert!(r["throughput"].as_f64().unwrap() > 100.0, "{r}");
}

fn num_cpus() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

#[test]
fn conform_listen_grades_what_a_kiosk_sends() {
    let args = ["conform", "--listen", "127.0.0.1:0", "--duration", "3s", "--json"];
    let (child, mut out, addr) = common::spawn_sip2d(&args, "warn", Stdio::null(), "conform: acting as the ACS on ");
    let mut child = Killed(child);
    let mut k = common::Kiosk::connect(addr);
    // Before login, then a good login, then a bad checksum and a sequence jump.
    let r = k.ask("2300120261122    120000AOMAIN|AA21000000000001|AC|AD1234|");
    assert!(r.starts_with("24"), "{r}");
    assert_eq!(k.ask(&common::sealed("9300CNkiosk1|COkiosk1-secret|", 0)), common::sealed("941", 0));
    assert!(k.ask(&common::sealed("9900302.00", 1)).starts_with("98"));
    assert_eq!(k.ask("9900302.00AY2AZ0000"), "96AZFEF6");
    assert!(k.ask(&common::sealed("9900302.00", 6)).starts_with("98"));
    drop(k);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = child.0.wait().unwrap();
    assert!(!status.success(), "a kiosk with faults fails the grading");
    let report: serde_json::Value = serde_json::from_str(rest.lines().last().unwrap()).unwrap();
    assert_eq!(report["requests"], 5, "{report}");
    let failed: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["verdict"] == "fail")
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["login first", "checksum", "sequence"], "{report}");
}
