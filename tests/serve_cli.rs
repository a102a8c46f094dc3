//! `sip2d serve` as a process: the demo register, JSON request logs without secrets, and a
//! clean exit 0 on SIGTERM with everything acknowledged on disk.

mod common;

use std::io::{BufRead, Read, Write};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;

use common::{Kiosk, spawn_sip2d};

/// Reads a server's log (its standard error) in the background, or a full pipe would stall it.
fn collect_log(child: &mut Child) -> JoinHandle<String> {
    let mut stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut log = String::new();
        stderr.read_to_string(&mut log).unwrap();
        log
    })
}

#[test]
fn the_demo_serves_logs_without_secrets_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let args = ["--data", data.to_str().unwrap(), "serve", "--demo", "--listen", "127.0.0.1:0", "--log-format", "json"];
    let (mut child, _stdout, addr) = spawn_sip2d(&args, "trace", Stdio::piped(), "listening on ");
    let log_reader = collect_log(&mut child);
    let mut k = Kiosk::connect(addr);
    assert_eq!(k.ask("9300CNkiosk1|COkiosk1-secret|"), "941");
    let r = k.ask("2300120261122    120000AOMAIN|AA21000000000001|AC|AD1234|");
    assert!(r.contains("|AEReader, Avery|BLY|CQY|"), "{r}");
    let r = k.ask("2300120261122    120000AOMAIN|AA21000000000002|AC|AD1234|");
    // A lost card is said as such; the note staff wrote on the block stays with staff.
    assert!(r.starts_with("24YYYY") && r.contains("reported lost"), "the blocked demo patron: {r}");
    assert!(!r.contains("Card reported lost"), "a staff note reached the kiosk: {r}");
    let r = k.ask("2300120261122    120000AOMAIN|AA21000000000007|AC|AD1234|");
    assert!(r.contains("locked"), "the locked-out demo patron: {r}");
    let r = k.ask("11YN20261122    120000                  AOMAIN|AA21000000000001|AB31000000000004|AC|AD1234|");
    assert!(r.starts_with("120") && r.contains("on hold for another"), "held for Harper: {r}");
    let r = k.ask("11YN20261122    120000                  AOMAIN|AA21000000000001|AB31000000000002|AC|AD1234|");
    assert!(r.starts_with("121"), "{r}");

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "SIGTERM ends with exit 0: {exit:?}");
    let log = log_reader.join().unwrap();
    for secret in ["kiosk1-secret", "AD1234", "|AD", "COkiosk1"] {
        assert!(!log.contains(secret), "the log holds {secret}");
    }
    let requests: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "request")
        .collect();
    assert_eq!(requests.len(), 6, "one line per request: {log}");
    let checkout = &requests[5];
    for key in ["peer", "account", "code", "outcome", "latency_us"] {
        assert!(!checkout[key].is_null(), "{key} missing from {checkout}");
    }
    assert_eq!((checkout["code"].as_str(), checkout["outcome"].as_str()), (Some("11"), Some("ok")));
    assert!(log.contains("the store is flushed"), "{log}");

    // The checkout answered "ok" is in the store.
    let engine = common::open(&data);
    assert!(sip2d::engine::Desk::new(&engine, "test").loan("31000000000002").unwrap().is_some());
}

#[test]
fn sighup_reloads_the_configuration_and_refuses_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let config = dir.path().join("sip2d.toml");
    let write =
        |limit: &str| std::fs::write(&config, format!("[limits]\nmax_connections_per_address = {limit}\n")).unwrap();
    write("8");
    let args = [
        "--data",
        data.to_str().unwrap(),
        "serve",
        "--demo",
        "--listen",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
    ];
    let (mut child, stdout, addr) = spawn_sip2d(&args, "info", Stdio::piped(), "listening on ");
    let log_reader = collect_log(&mut child);
    std::thread::spawn(move || for _ in stdout.lines() {});
    let hup = |pid: u32| assert!(Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap().success());

    // A new connection refused at once (the per-address limit), polled while a signal lands.
    let refused_soon = || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_millis(200))).unwrap();
            if matches!(s.read(&mut [0u8; 1]), Ok(0)) {
                return true;
            }
        }
        false
    };
    let mut open = Kiosk::connect(addr);
    assert_eq!(open.ask("9300CNkiosk1|COkiosk1-secret|"), "941");
    write("1");
    hup(child.id());
    assert!(refused_soon(), "after SIGHUP one connection per address");
    assert!(open.ask("9900302.00").starts_with("98"), "the open connection keeps working");

    std::fs::write(&config, "[limits]\nmax_connections_per_address = \"many\"\n").unwrap();
    hup(child.id());
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(refused_soon(), "the old configuration stays in force");
    assert!(open.ask("9900302.00").starts_with("98"));

    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert!(child.wait().unwrap().success());
    let log = log_reader.join().unwrap();
    assert!(log.contains("SIGHUP: configuration reloaded"), "{log}");
    assert!(log.contains("SIGHUP: configuration refused") && log.contains("many"), "{log}");
}

#[test]
fn register_commands_go_through_the_running_server_and_take_effect_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let d = data.to_str().unwrap().to_string();
    let (mut child, stdout, addr) = spawn_sip2d(
        &["--data", &d, "serve", "--demo", "--listen", "127.0.0.1:0"],
        "warn",
        Stdio::null(),
        "listening on ",
    );
    std::thread::spawn(move || for _ in stdout.lines() {});
    let sip2d = |args: &[&str], input: &str| {
        use std::io::Write;
        let mut c = Command::new(env!("CARGO_BIN_EXE_sip2d"))
            .args(["--data", &d])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let o = c.wait_with_output().unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
    };
    let mut k = Kiosk::connect(addr);
    assert_eq!(k.ask("9300CNkiosk1|COkiosk1-secret|"), "941");
    let status = "2300120261122    120000AOMAIN|AA21000000000001|AC|AD1234|";
    assert!(k.ask(status).starts_with("24    "), "not blocked yet");

    // The store is the server's: the command goes to it, and the very next request sees it.
    let (code, out) = sip2d(
        &[
            "--as",
            "alice",
            "patron",
            "block",
            "21000000000001",
            "--institution",
            "MAIN",
            "--type",
            "general",
            "--note",
            "Lost card",
        ],
        "",
    );
    assert_eq!(code, Some(0), "{out}");
    let r = k.ask(status);
    assert!(r.starts_with("24YYYY") && r.contains("Your card is blocked"), "{r}");
    assert!(!r.contains("Lost card"), "the staff note stays with staff: {r}");
    let (_, history) = sip2d(&["patron", "history", "21000000000001", "--institution", "MAIN"], "");
    assert!(history.contains("alice (admin API)"), "the audit names the admin client: {history}");

    // Refusals keep their message and exit code; standard input and files travel.
    let (code, out) = sip2d(&["patron", "show", "nobody", "--institution", "MAIN"], "");
    assert_ne!(code, Some(0));
    assert!(out.contains("no patron"), "{out}");
    let (code, out) = sip2d(&["account", "password", "kiosk2"], "a-new-password\n");
    assert_eq!(code, Some(0), "{out}");
    let mut k2 = Kiosk::connect(addr);
    assert_eq!(k2.ask("9300CNkiosk2|COa-new-password|"), "941");
    let export = dir.path().join("export.jsonl");
    let (code, out) = sip2d(&["export", "-o", export.to_str().unwrap()], "");
    assert_eq!(code, Some(0), "{out}");
    assert!(std::fs::read_to_string(&export).unwrap().contains("\"21000000000001\""));
    let import = dir.path().join("more.jsonl");
    std::fs::write(&import, r#"{"type":"item","barcode":"39999","institution":"MAIN","title":"Imported live","media_type":1,"security_marker":2}"#).unwrap();
    let (code, out) = sip2d(&["import", import.to_str().unwrap()], "");
    assert_eq!(code, Some(0), "{out}");
    assert!(k.ask("1720261122    120000AOMAIN|AB39999|AC|").contains("AJImported live"));

    // The admin API carries operations as data, never a file name: an import or export names
    // its file on the client's side. The PIN key cannot change under a running server, and no
    // request acts as a kiosk (those come over SIP, with a terminal's login).
    let key_before = std::fs::read(data.join("pin.key")).unwrap();
    let (code, out) = sip2d(&["import", "--pin-key", data.join("pin.key").to_str().unwrap(), "-"], "");
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("cannot change while `sip2d serve` runs"), "{out}");
    assert_eq!(std::fs::read(data.join("pin.key")).unwrap(), key_before, "the PIN key is untouched");
    let kiosk = r#"{"operation":{"kiosk-checkin":{"at":{},"item":"39999","returned":null}}}"#;
    let (status, body) = common::admin_socket(&data, "POST", "/v1/operations", kiosk).unwrap();
    assert_eq!(status, 422, "{body}");
    assert!(k.ask("1720261122    120000AOMAIN|AB39999|AC|").contains("AJImported live"));
    let (status, body) =
        common::admin_socket(&data, "POST", "/v1/operations", r#"{"operation":{"delete-item":{"barcode":"nope"}}}"#)
            .unwrap();
    assert_eq!(status, 404, "a refusal is said as one: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["failure"]["refused"]["no-item"], "nope", "{v}");
    assert!(v["error"].as_str().unwrap().contains("nope"), "{v}");

    // Files travel too: attached through the server, read back as they were, and exported.
    let file = dir.path().join("consent.pdf");
    std::fs::write(&file, b"%PDF-1.4 signed by the guardian").unwrap();
    let f = file.to_str().unwrap();
    let (code, out) = sip2d(&["patron", "attachment", "add", "21000000000001", "--institution", "MAIN", f], "");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("attachment 1  consent.pdf (application/pdf, 31 bytes)"), "{out}");
    let back = dir.path().join("back.pdf");
    let b = back.to_str().unwrap();
    let (code, out) =
        sip2d(&["patron", "attachment", "get", "21000000000001", "1", "--institution", "MAIN", "-o", b], "");
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(std::fs::read(&back).unwrap(), std::fs::read(&file).unwrap());

    // The export read through the server, as it streams, is the one the store gives alone.
    let (code, served) = sip2d(&["export"], "");
    assert_eq!(code, Some(0), "{served}");
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert!(child.wait().unwrap().success());
    assert!(!data.join("admin.sock").exists(), "the socket goes with the server");
    // With no server, the same command opens the store itself.
    let (code, out) = sip2d(&["patron", "history", "21000000000001", "--institution", "MAIN"], "");
    assert_eq!(code, Some(0), "{out}");
    let (code, alone) = sip2d(&["export"], "");
    assert_eq!(code, Some(0), "{alone}");
    assert!(served.lines().count() > 30, "{served}");
    assert_eq!(served, alone);
}

/// A raw HTTP/1.1 POST: status and body.
fn post(addr: std::net::SocketAddr, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let r = common::http(addr, "POST", path, token, "", body);
    (r.status, r.raw)
}

#[test]
fn the_admin_api_over_tcp_needs_the_token_and_reloads_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let config = dir.path().join("sip2d.toml");
    std::fs::write(&config, "[limits]\nmax_connections = 100\n").unwrap();
    let data_dir = data.to_str().unwrap();
    let args = ["--data", data_dir, "serve", "--demo", "--listen", "127.0.0.1:0"];
    let args = [&args[..], &["--admin-listen", "127.0.0.1:0", "--config", config.to_str().unwrap()]].concat();
    let (mut child, stdout, admin) = spawn_sip2d(&args, "warn", Stdio::null(), "sip2d admin API on http://");
    std::thread::spawn(move || for _ in stdout.lines() {});
    let token_file = data.join("admin.token");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777, 0o600);
    let token = std::fs::read_to_string(&token_file).unwrap().trim().to_string();
    let show = r#"{"query":{"find-patron":{"institution":"MAIN","key":"21000000000001"}}}"#;
    assert_eq!(post(admin, "/v1/queries", None, show).0, 401, "no token");
    assert_eq!(post(admin, "/v1/queries", Some("wrong"), show).0, 401, "a wrong token");
    let (status, body) = post(admin, "/v1/queries", Some(&token), show);
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["patron"]["first_name"], "Avery", "{answer}");
    let block = r#"{"operation":{"block":{"patron":1,"kind":"general","note":"from ops"}},"actor":"ops"}"#;
    assert_eq!(post(admin, "/v1/operations", None, block).0, 401, "no token, no change");
    let (status, body) = post(admin, "/v1/operations", Some(&token), block);
    assert_eq!(status, 200, "{body}");
    let history = r#"{"query":{"history":1}}"#;
    let (_, body) = post(admin, "/v1/queries", Some(&token), history);
    assert!(body.contains("ops (admin API)"), "the audit names who acted: {body}");

    let (status, body) = post(admin, "/v1/reload", Some(&token), "");
    assert_eq!(status, 200, "{body}");
    std::fs::write(&config, "[limits]\nmax_connections = 0\n").unwrap();
    let (status, body) = post(admin, "/v1/reload", Some(&token), "");
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("max_connections"), "the reason: {body}");

    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert!(child.wait().unwrap().success());
}

/// Every file of a register is its owner's alone: what sip2d creates, and what an earlier
/// version left readable; a data directory others may write is refused by the server.
#[test]
fn the_register_is_owner_only_and_a_directory_others_may_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let run =
        |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_sip2d")).args(["--data", d]).args(args).output().unwrap();
    assert!(run(&["init"]).status.success());
    assert!(run(&["institution", "add", "--code", "MAIN", "--name", "Main"]).status.success());
    let loose = |root: &std::path::Path| -> Vec<String> {
        let mut out = Vec::new();
        let mut todo = vec![root.to_path_buf()];
        while let Some(p) = todo.pop() {
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.permissions().mode() & 0o077 != 0 {
                out.push(format!("{} {:o}", p.display(), m.permissions().mode() & 0o777));
            }
            if m.is_dir() {
                todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            }
        }
        out
    };
    assert_eq!(loose(&data), Vec::<String>::new(), "what sip2d creates is owner-only");

    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = run(&["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("may be written by others") && err.contains("chmod 700"), "{err}");

    // As an earlier version left it: readable by all. The server makes it owner-only.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(data.join("pin.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(data.join("db"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (mut child, stdout, _addr) =
        spawn_sip2d(&["--data", d, "serve", "--listen", "127.0.0.1:0"], "warn", Stdio::null(), "listening on ");
    std::thread::spawn(move || for _ in stdout.lines() {});
    assert_eq!(loose(&data), Vec::<String>::new(), "the server left something readable by others");
    let _ = child.kill();
    let _ = child.wait();
}

/// Issue 14, item 3: a flood of idle connections on the admin API (and the operations
/// endpoints) holds at most their own cap of descriptors, is closed after the HTTP idle
/// timeout, and never keeps kiosks from their listener; an oversized request head gets 431.
/// The server runs with 400 descriptors, which 1,000 held connections would exhaust.
#[test]
fn an_admin_connection_flood_is_capped_and_kiosks_are_still_served() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let config = dir.path().join("sip2d.toml");
    std::fs::write(
        &config,
        "ops_listen = \"127.0.0.1:0\"\n[limits]\nmax_http_connections = 16\nhttp_idle_timeout = \"2s\"\n",
    )
    .unwrap();
    let (d, c) = (data.to_str().unwrap(), config.to_str().unwrap());
    let mut child = Command::new("sh")
        .args(["-c", "ulimit -n 400 && exec \"$0\" \"$@\"", env!("CARGO_BIN_EXE_sip2d")])
        .args(["--data", d, "serve", "--demo", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--config", c])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let admin = common::address_after(&mut stdout, "sip2d admin API on http://");
    let sip = common::address_after(&mut stdout, "listening on ");
    std::thread::spawn(move || for _ in stdout.lines() {});
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap().trim().to_string();

    let idle: Vec<std::net::TcpStream> = (0..1000).map(|_| std::net::TcpStream::connect(admin).unwrap()).collect();
    // Kiosks are served while the flood is there.
    let mut kiosk = Kiosk::connect(sip);
    assert_eq!(kiosk.ask("9300CNkiosk1|COkiosk1-secret|"), "941", "a kiosk logs in during the flood");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let open = |socks: &[std::net::TcpStream]| {
        socks
            .iter()
            .filter(|s| {
                s.set_nonblocking(true).unwrap();
                let mut b = [0u8; 1];
                let r = (&**s).read(&mut b);
                matches!(r, Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock)
            })
            .count()
    };
    let held = open(&idle);
    assert!(held <= 16, "{held} idle admin connections held open; the cap is 16");
    // After the idle timeout the ones it kept are closed too, and the API answers again.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(open(&idle), 0, "idle admin connections are closed after http_idle_timeout");
    drop(idle);
    let show = r#"{"query":{"find-patron":{"institution":"MAIN","key":"21000000000001"}}}"#;
    let (status, body) = post(admin, "/v1/queries", Some(&token), show);
    assert_eq!(status, 200, "{body}");
    // A request head over max_http_header_bytes (16 KiB) is refused without being read on.
    let mut s = std::net::TcpStream::connect(admin).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let big = "x".repeat(64 * 1024);
    let _ = write!(s, "POST /v1/queries HTTP/1.1\r\nHost: localhost\r\nX-Padding: {big}\r\n\r\n");
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply:.80}");
    assert!(kiosk.ask("9900302.00").starts_with("98"), "the kiosk's connection was never disturbed");
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert!(child.wait().unwrap().success());
}

/// A SIGTERM as soon as the first address is announced (a systemd stop during start-up) stops
/// the server cleanly: the signal is taken over before anything is served, not once start-up
/// has finished.
#[test]
fn a_sigterm_right_at_start_up_stops_the_server_cleanly() {
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("demo");
        let args = ["--data", data.to_str().unwrap(), "serve", "--demo", "--listen", "127.0.0.1:0"];
        let args = [&args[..], &["--admin-listen", "127.0.0.1:0"]].concat();
        let (mut child, stdout, _) = spawn_sip2d(&args, "warn", Stdio::null(), "sip2d admin API on http://");
        assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
        std::thread::spawn(move || for _ in stdout.lines() {});
        let status = child.wait().unwrap();
        assert!(status.success(), "round {round}: {status}");
    }
}
