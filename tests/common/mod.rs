//! A server on a free port over a temporary register, and a blocking kiosk to talk to it.
#![allow(dead_code)]

pub mod pg;
pub mod smtp;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use jiff::civil::date;
use sip2d::engine::{Desk, NewItem, NewPatron, Pin, SledEngine, StoreConfig};
use sip2d::net::{Config, Listener, ServeError, Server};
use tokio_util::sync::CancellationToken;

/// The vectors' world: institution MAIN, Avery Reader with card 21234000012345 and PIN 4321,
/// the item 31234000098765, and the terminal kiosk1 / s3cret-kiosk.
pub fn vector_world(desk: &Desk<'_>) {
    let now = jiff::Timestamp::now();
    desk.add_institution("MAIN", "Main Library", "USD", "America/Chicago", now).unwrap();
    for (primary_id, first, last, barcode, pin) in
        [("P1", "Avery", "Reader", "21234000012345", "4321"), ("P2", "Blake", "Owing", "21234000099999", "1111")]
    {
        let new = NewPatron {
            institution: "MAIN".into(),
            primary_id: primary_id.into(),
            first_name: first.into(),
            last_name: last.into(),
            expiry: Some(date(2099, 1, 1)),
            barcodes: vec![barcode.into()],
            pin: Some(Pin(pin.into())),
            ..Default::default()
        };
        desk.add_patron(new, false, now).unwrap();
    }
    for (barcode, title) in [
        ("31234000098765", "The Left Hand of Darkness"),
        ("31234000011111", "Dune"),
        ("31234000022222", "The Dispossessed"),
    ] {
        let new = NewItem {
            barcode: barcode.into(),
            institution: "MAIN".into(),
            title: title.into(),
            media_type: 1,
            security_marker: 2,
            ..Default::default()
        };
        desk.add_item(new, now).unwrap();
    }
    desk.add_account("kiosk1", "s3cret-kiosk", "MAIN", Some("ENTRANCE"), now).unwrap();
    desk.set_account_profile("kiosk1", &[("status-update", "yes"), ("patron-enable", "yes")], now).unwrap();
}

/// Opens (or creates) the register in `dir`, as the tests look into it after a server stopped.
pub fn open(dir: &std::path::Path) -> SledEngine {
    sip2d::engine::open_or_create(dir, &StoreConfig::default()).unwrap()
}

/// A running server and its data directory.
pub struct Running {
    pub addrs: Vec<(SocketAddr, bool)>,
    /// Where `/metrics`, `/health` and `/ready` are served, when configured.
    pub ops: Option<SocketAddr>,
    /// Reloads the configuration.
    pub handle: sip2d::net::Handle,
    pub shutdown: CancellationToken,
    join: Option<std::thread::JoinHandle<Result<(), ServeError>>>,
    pub dir: tempfile::TempDir,
    engine: std::sync::Arc<dyn sip2d::engine::Engine>,
}

/// Test settings: one plain listener on a free loopback port, no pause after a bad login.
pub fn test_config() -> Config {
    let mut c = Config { listen: vec![Listener::plain("127.0.0.1:0".parse().unwrap())], ..Config::default() };
    c.limits.login_failure_delay = Duration::ZERO;
    c
}

pub fn start(setup: impl FnOnce(&Desk<'_>), config: Config) -> Running {
    let dir = tempfile::tempdir().unwrap();
    // The register's limits are the configuration's, as `sip2d serve` opens it.
    let engine = sip2d::engine::open_or_create(dir.path(), &config.store_config()).unwrap();
    setup(&Desk::new(&engine, "test"));
    start_in(dir, engine, config)
}

pub fn start_in(dir: tempfile::TempDir, engine: SledEngine, config: Config) -> Running {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let server = rt.block_on(Server::bind(&config, std::sync::Arc::new(engine))).unwrap();
    let addrs = server.addresses();
    let ops = server.ops_address();
    let engine = server.engine();
    let handle = server.handle();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let join = std::thread::spawn(move || {
        let r = rt.block_on(server.run(token));
        rt.shutdown_timeout(Duration::from_secs(5));
        r
    });
    Running { addrs, ops, handle, shutdown, join: Some(join), dir, engine }
}

impl Running {
    /// The first plain listener.
    pub fn addr(&self) -> SocketAddr {
        self.addrs.iter().find(|(_, tls)| !tls).map(|(a, _)| *a).expect("a plain listener")
    }

    /// Shuts down as SIGTERM would and waits for the server to finish.
    pub fn stop(mut self) -> (Result<(), ServeError>, tempfile::TempDir) {
        self.shutdown.cancel();
        let r = self.join.take().unwrap().join().unwrap();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (r, dir)
    }

    pub fn kiosk(&self) -> Kiosk {
        Kiosk::connect(self.addr())
    }

    /// Does staff work on the running server's register (as the admin API would).
    pub fn engine_desk(&self, f: impl FnOnce(&Desk<'_>)) {
        f(&Desk::new(self.engine.as_ref(), "test"));
    }

    /// A kiosk logged in as kiosk1.
    pub fn logged_in(&self) -> Kiosk {
        let mut k = self.kiosk();
        assert_eq!(k.ask("9300CNkiosk1|COs3cret-kiosk|"), "941");
        k
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.join.take() {
            let _ = h.join();
        }
    }
}

/// A frame with its `AY`/`AZ` trailer.
pub fn sealed(body: &str, seq: u8) -> String {
    let head = format!("{body}AY{seq}AZ");
    format!("{head}{:04X}", sip2d::proto::checksum(head.as_bytes()))
}

/// A blocking kiosk connection.
pub struct Kiosk {
    pub stream: TcpStream,
    pending: Vec<u8>,
    /// Whether this connection's replies end in CR LF, once a reply has shown it.
    ends_with_lf: Option<bool>,
}

impl Kiosk {
    pub fn connect(addr: SocketAddr) -> Kiosk {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Kiosk::from_stream(stream)
    }

    pub fn from_stream(stream: TcpStream) -> Kiosk {
        Kiosk { stream, pending: Vec::new(), ends_with_lf: None }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// The next reply, without its CR (and an LF after it); `None` when the server closed.
    pub fn reply(&mut self) -> Option<String> {
        self.reply_bytes().map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// The next reply's raw bytes, terminator included.
    pub fn raw_reply(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = self.pending.iter().position(|&b| b == b'\r') {
                let mut end = i + 1;
                if self.pending.get(end) == Some(&b'\n') {
                    end += 1;
                } else if end == self.pending.len() && self.ends_with_lf != Some(false) {
                    // An LF may still be on its way; give it a moment (once per connection:
                    // a server ends every reply on a connection the same way).
                    self.stream.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                    let mut b = [0u8; 1];
                    if let Ok(1) = self.stream.read(&mut b) {
                        self.pending.push(b[0]);
                    }
                    self.stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    if self.pending.get(end) == Some(&b'\n') {
                        end += 1;
                    }
                }
                self.ends_with_lf = Some(self.pending.get(end - 1) == Some(&b'\n'));
                return Some(self.pending.drain(..end).collect());
            }
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.pending.extend_from_slice(buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("no reply: {e}"),
            }
        }
    }

    fn reply_bytes(&mut self) -> Option<Vec<u8>> {
        let mut b = self.raw_reply()?;
        while matches!(b.last(), Some(b'\r' | b'\n')) {
            b.pop();
        }
        Some(b)
    }

    /// Sends one frame (CR appended) and returns the reply.
    pub fn ask(&mut self, frame: &str) -> String {
        self.send(format!("{frame}\r").as_bytes());
        self.reply().unwrap_or_else(|| panic!("the server closed instead of answering {frame:?}"))
    }

    /// True when nothing arrives for `wait` and the connection stays open.
    pub fn silent_for(&mut self, wait: Duration) -> bool {
        if !self.pending.is_empty() {
            return false;
        }
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut b = [0u8; 1];
        let r = self.stream.read(&mut b);
        self.stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        match r {
            Ok(0) => false,
            Ok(_) => {
                self.pending.push(b[0]);
                false
            }
            Err(e) => matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        }
    }

    /// True when the server closes the connection (within the read timeout) without
    /// sending anything more.
    pub fn closed(&mut self) -> bool {
        if !self.pending.is_empty() {
            return false;
        }
        let mut b = [0u8; 1];
        match self.stream.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

/// A plain HTTP/1.1 GET: the status code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// An HTTP reply: the status, the ETag, the body as JSON (`Null` when it is not JSON) and the
/// raw text after the headers.
pub struct HttpReply {
    pub status: u16,
    pub etag: Option<String>,
    pub body: serde_json::Value,
    pub raw: String,
    /// The status line and headers.
    pub head: String,
}

impl HttpReply {
    /// A header's value (the first, by name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One HTTP/1.1 request with a JSON body (`extra`: more header lines, each ending in CRLF).
pub fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, extra: &str, body: &str) -> HttpReply {
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    http_as(addr, method, path, "application/json", &format!("{auth}{extra}"), body)
}

/// A form post, as a browser sends one (`extra`: more header lines, each ending in CRLF).
pub fn form_post(addr: SocketAddr, path: &str, extra: &str, body: &str) -> HttpReply {
    http_as(addr, "POST", path, "application/x-www-form-urlencoded", extra, body)
}

/// One HTTP/1.1 request with a body of `content_type`.
pub fn http_as(addr: SocketAddr, method: &str, path: &str, content_type: &str, extra: &str, body: &str) -> HttpReply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // A server that closes a connection unanswered may do so before all of the request is
    // written (the write then meets a reset): nothing is read then, status 0.
    let _ = s.write_all(request.as_bytes());
    // To the end; but an event stream never ends, so of one only its first event is read.
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
        }
        let text = String::from_utf8_lossy(&bytes);
        if let Some((head, rest)) = text.split_once("\r\n\r\n") {
            if head.to_ascii_lowercase().contains("content-type: text/event-stream") && rest.contains("\n\n") {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let etag = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("etag").then(|| v.trim().to_string())
    });
    // A chunked body's sizes sit around the JSON: the object is what lies between the braces.
    let body = match (rest.find('{'), rest.rfind('}')) {
        (Some(a), Some(b)) if a < b => serde_json::from_str(rest.get(a..=b).unwrap_or("null")).unwrap_or_default(),
        _ => serde_json::Value::Null,
    };
    HttpReply { status, etag, body, raw: rest.to_string(), head: head.to_string() }
}

/// Starts `sip2d ARGS` with `RUST_LOG=level`, its standard error going to `stderr` (piped when
/// the test reads the log), and reads its standard output up to the address announced after
/// `marker`. The rest of standard output is the caller's to read or drain.
///
/// The server is killed when the thread that started it ends (a test that panics, or forgets
/// its child, leaves no server behind).
pub fn spawn_sip2d(
    args: &[&str],
    level: &str,
    stderr: std::process::Stdio,
    marker: &str,
) -> (std::process::Child, std::io::BufReader<std::process::ChildStdout>, SocketAddr) {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sip2d"));
    command.args(args).env("RUST_LOG", level).stdout(std::process::Stdio::piped()).stderr(stderr);
    // SAFETY: between fork and exec the closure makes one system call (prctl), which is
    // async-signal-safe, and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
    let mut child = command.spawn().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let addr = address_after(&mut stdout, marker);
    (child, stdout, addr)
}

/// Reads a child's output until a line containing `marker`, and parses the address that
/// follows it (as `serve` and `conform --listen` announce theirs).
pub fn address_after(out: &mut impl std::io::BufRead, marker: &str) -> SocketAddr {
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "no line with {marker:?} in:\n{seen}");
        if let Some(i) = line.find(marker) {
            let rest = line.get(i + marker.len()..).unwrap_or_default();
            let token = rest.split_whitespace().next().unwrap_or_default().trim_end_matches([';', '/']);
            return token.parse().unwrap_or_else(|e| panic!("{token:?} in {line:?}: {e}"));
        }
        seen.push_str(&line);
    }
}

/// One HTTP/1.0 exchange on the admin socket of the server holding `data` (an answer's body is
/// then never chunked): `(status, body)`, or `None` when no server answers.
pub fn admin_socket(data: &std::path::Path, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = std::os::unix::net::UnixStream::connect(data.join("admin.sock")).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// Runs one engine operation on the server holding `data` through its admin socket, as the
/// command line does while a server runs: `(status, answer)`, or `None` when no server answers.
pub fn operation(data: &std::path::Path, op: sip2d::engine::Operation) -> Option<(u16, String)> {
    let body = serde_json::json!({"operation": op, "actor": "desk"}).to_string();
    admin_socket(data, "POST", "/v1/operations", &body)
}

/// The register as the server holding `data` exports it (JSON Lines), through its admin socket.
pub fn export(data: &std::path::Path) -> Option<String> {
    let (status, body) = admin_socket(data, "GET", "/v1/export", "")?;
    assert_eq!(status, 200, "{body}");
    Some(body)
}

/// `(method, path template)` of every operation docs/openapi.json lists: the description the
/// server generates from its handlers (a unit test holds the file to it).
pub fn api_operations() -> Vec<(String, String)> {
    let doc: serde_json::Value = serde_json::from_str(include_str!("../../docs/openapi.json")).unwrap();
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                out.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

/// A `sip2d serve --demo` of a test's own over a temporary register, with its staff console
/// and admin API on free loopback ports and short pauses after refused logins; killed when
/// dropped.
pub struct Demo {
    pub sip: SocketAddr,
    pub console: SocketAddr,
    /// The patron pages' own listener, when the configuration gives one.
    pub pages: Option<SocketAddr>,
    pub admin: SocketAddr,
    /// The admin listener's token: the system.
    pub system: String,
    pub data: std::path::PathBuf,
    _dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn demo() -> Demo {
    demo_with("")
}

/// The demo server with more configuration after the tests' own `[limits]` (a `[mail]` section).
pub fn demo_with(more_config: &str) -> Demo {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let config = dir.path().join("sip2d.toml");
    let limits = "[limits]\nlogin_failure_delay = \"20ms\"\nlogin_backoff_max = \"100ms\"\n";
    std::fs::write(&config, format!("{limits}{more_config}")).unwrap();
    let (c, d) = (config.to_str().unwrap(), data.to_str().unwrap());
    let args = [
        "--config",
        c,
        "--data",
        d,
        "serve",
        "--demo",
        "--listen",
        "127.0.0.1:0",
        "--console-listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ];
    // The admin API is announced first, then the demo's banner: the SIP listener, the console.
    let (child, mut stdout, admin) =
        spawn_sip2d(&args, "warn", std::process::Stdio::null(), "sip2d admin API on http://");
    // The patron pages' own listener is announced before the demo's banner.
    let pages = more_config.contains("[patron_pages]").then(|| address_after(&mut stdout, "patron pages on http://"));
    let sip = address_after(&mut stdout, "listening on ");
    let console = address_after(&mut stdout, "staff console on http://");
    std::thread::spawn(move || {
        use std::io::BufRead;
        for _ in stdout.lines() {}
    });
    let system = std::fs::read_to_string(data.join("admin.token")).unwrap().trim().to_string();
    Demo { sip, console, pages, admin, system, data, _dir: dir, child }
}
