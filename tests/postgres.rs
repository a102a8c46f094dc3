//! The PostgreSQL engine as the people who run it meet it: `sip2d migrate`, nodes set up with
//! the register's one PIN key, a node that refuses a schema it does not know, and, under
//! load, a node killed and the database lost.
//!
//! Needs a PostgreSQL server where tests may create databases: `SIP2D_TEST_POSTGRES`
//! (key=value, default `host=127.0.0.1 port=5432 user=postgres`). Each test makes a database
//! of its own and drops it. Not part of a plain `cargo test`; `.ci/run` runs it
//! (`cargo test --test postgres`). The isolation tests run on three nodes as well
//! (`SIP2D_TEST_POSTGRES=... cargo test --test isolation`).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::pg::{Proxy, TestDb};
use serde_json::{Value, json};

const DATE: &str = "20261203    120000";
const BLANK_DATE: &str = "                  ";

fn sip2d(config: &Path, data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sip2d"));
    c.arg("--config").arg(config).arg("--data").arg(data).env_remove("SIP2D_DATA").env_remove("SIP2D_CONFIG");
    c
}

/// Runs a command: (success, standard output and error together).
fn run(c: &mut Command) -> (bool, String) {
    let o = c.output().unwrap();
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

fn run_ok(c: &mut Command) -> String {
    let (ok, out) = run(c);
    assert!(ok, "{c:?}: {out}");
    out
}

/// A configuration naming the database at `url`, with `more` after it.
fn config(dir: &Path, url: &str, more: &str) -> PathBuf {
    let path = dir.join("sip2d.toml");
    std::fs::write(
        &path,
        format!(
            "[limits]\nlogin_failure_delay = \"0s\"\npin_failures_per_window = 1000000\n\
             [store]\nengine = \"postgres\"\nurl = \"{url}\"\n{more}"
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_node_serves_only_a_schema_it_knows_and_migrate_makes_it() {
    let db = TestDb::create(&common::pg::server());
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &db.url(), "");
    let data = dir.path().join("node");

    // Before `migrate`: nothing to serve, and no PIN key is left behind.
    let (ok, out) = run(sip2d(&config, &data).arg("init"));
    assert!(!ok && out.contains("run `sip2d migrate`"), "{out}");
    assert!(!data.join("pin.key").exists());
    let (ok, out) = run(sip2d(&config, &data).args(["migrate", "--check"]));
    assert!(!ok && out.contains("has no sip2d schema; this sip2d needs schema 2"), "{out}");

    let out = run_ok(sip2d(&config, &data).arg("migrate"));
    assert!(out.contains("applied V1__register, V2__terminals") && out.contains("sip2d schema 2"), "{out}");
    let out = run_ok(sip2d(&config, &data).arg("migrate"));
    assert!(out.contains("schema 2 already; nothing to do"), "{out}");
    run_ok(sip2d(&config, &data).args(["migrate", "--check"]));
    run_ok(sip2d(&config, &data).arg("init"));
    run_ok(sip2d(&config, &data).args(["institution", "add", "--code", "MAIN", "--name", "Main Library"]));

    // A database migrated by a newer sip2d: this one neither serves it nor migrates it back.
    db.client()
        .execute(
            "INSERT INTO sip2d_schema_history (version, name, applied_on, checksum) VALUES (3, 'later', 'now', '0')",
            &[],
        )
        .unwrap();
    let (ok, out) = run(sip2d(&config, &data).args(["serve", "--listen", "127.0.0.1:0"]));
    assert!(!ok && out.contains("has sip2d schema 3, newer than the 2 this sip2d knows"), "{out}");
    let (ok, out) = run(sip2d(&config, &data).arg("migrate"));
    assert!(!ok && out.contains("newer than the 2"), "{out}");
    let (ok, out) = run(sip2d(&config, &data).args(["institution", "list"]));
    assert!(!ok && out.contains("newer"), "{out}");
}

#[test]
fn every_node_holds_the_register_pin_key() {
    let db = TestDb::create(&common::pg::server());
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &db.url(), "");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    run_ok(sip2d(&config, &a).arg("migrate"));
    run_ok(sip2d(&config, &a).arg("init"));
    run_ok(sip2d(&config, &a).args(["institution", "add", "--code", "MAIN", "--name", "Main Library"]));

    // A second node with a key of its own would make every PIN wrong: refused, and its new
    // key removed again.
    let (ok, out) = run(sip2d(&config, &b).arg("init"));
    assert!(!ok && out.contains("the database's PINs were made with PIN key"), "{out}");
    assert!(!b.join("pin.key").exists());
    let (ok, out) = run(sip2d(&config, &b).args(["institution", "list"]));
    assert!(!ok && out.contains("no register at"), "{out}");

    let key = dir.path().join("exported.key");
    run_ok(sip2d(&config, &a).args(["key", "export", "-o"]).arg(&key));
    let out = run_ok(sip2d(&config, &b).args(["key", "import"]).arg(&key));
    assert!(out.contains("installed PIN key"), "{out}");
    let out = run_ok(sip2d(&config, &b).args(["institution", "list"]));
    assert!(out.contains("Main Library"), "node b reads the register node a made: {out}");

    // A node whose key is not the register's cannot open it.
    let c = dir.path().join("c");
    std::fs::create_dir(&c).unwrap();
    let other = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_sip2d")).arg("--data").arg(other.path()).arg("init").output().unwrap();
    std::fs::copy(other.path().join("pin.key"), c.join("pin.key")).unwrap();
    let (ok, out) = run(sip2d(&config, &c).args(["serve", "--listen", "127.0.0.1:0"]));
    assert!(!ok && out.contains("give every node the register's pin.key"), "{out}");
}

/// A register of `kiosks` kiosks, each with a patron of its own (card `2…k`, PIN 1234), a fee
/// of 100.00 and `items` items to lend.
fn load_register(kiosks: usize, items: usize) -> Vec<Value> {
    let mut all =
        vec![json!({"type":"institution","code":"MAIN","name":"Main Library","currency":"USD","timezone":"UTC",
               "default_policy":{"loan_days":21,"max_loans":100000,"max_renewals":1000,"fine_threshold":"100000.00"}})];
    for k in 0..kiosks {
        all.push(json!({"type":"account","login":format!("kiosk{k}"),"password":"kiosk-secret","institution":"MAIN"}));
        let id = 100 + k as u64;
        all.push(json!({"type":"patron","id":id,"institution":"MAIN","primary_id":format!("P{id}"),"first_name":"Pat",
               "last_name":format!("Ron{id}"),"expiry":"2099-01-01","identifiers":[{"kind":"barcode","value":card(k)}],"pin":"1234"}));
        all.push(json!({"type":"fee","id":5000 + k,"patron":id,"kind":"overdue","amount":"100.00","paid":"0.00",
               "currency":"USD","status":"active","created":"2026-11-01T10:00:00Z"}));
        for i in 0..items {
            all.push(json!({"type":"item","barcode":item(k, i),"institution":"MAIN","title":"Book","media_type":1,"security_marker":2}));
        }
    }
    all
}

fn card(k: usize) -> String {
    format!("2{k:013}")
}

fn item(k: usize, i: usize) -> String {
    format!("3{k:03}{i:010}")
}

/// Nodes on one database, set up as docs/deploy.md says: migrate, init the first, import, and
/// the PIN key to every other.
struct Nodes {
    /// Holds the data directories and the configurations.
    _dir: tempfile::TempDir,
    nodes: Vec<(Option<Child>, SocketAddr, PathBuf)>,
    _db: TestDb,
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for (child, _, _) in &mut self.nodes {
            if let Some(c) = child.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Nodes {
    /// `n` nodes serving `lines`, reaching the database at `url` (the test database, or a way
    /// to it through a proxy).
    fn start(db: TestDb, url: Option<String>, n: usize, more: &str, lines: &[Value]) -> Nodes {
        let dir = tempfile::tempdir().unwrap();
        let direct = config(dir.path(), &db.url(), more);
        let data: Vec<PathBuf> = (0..n).map(|i| dir.path().join(format!("node{i}"))).collect();
        run_ok(sip2d(&direct, &data[0]).arg("migrate"));
        run_ok(sip2d(&direct, &data[0]).arg("init"));
        let file = dir.path().join("register.jsonl");
        std::fs::write(&file, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
        run_ok(sip2d(&direct, &data[0]).arg("import").arg(&file));
        let key = dir.path().join("register.key");
        run_ok(sip2d(&direct, &data[0]).args(["key", "export", "-o"]).arg(&key));
        for d in &data[1..] {
            run_ok(sip2d(&direct, d).args(["key", "import"]).arg(&key));
        }
        let config = match url {
            Some(u) => {
                let sub = dir.path().join("via");
                std::fs::create_dir(&sub).unwrap();
                config(&sub, &u, more)
            }
            None => direct,
        };
        let nodes = data
            .into_iter()
            .map(|d| {
                let (child, _out, addr) = common::spawn_sip2d(
                    &[
                        "--config",
                        config.to_str().unwrap(),
                        "--data",
                        d.to_str().unwrap(),
                        "serve",
                        "--listen",
                        "127.0.0.1:0",
                    ],
                    "warn",
                    Stdio::null(),
                    "listening on ",
                );
                (Some(child), addr, d)
            })
            .collect();
        Nodes { _dir: dir, nodes, _db: db }
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|(_, a, _)| *a).collect()
    }

    /// The register as `sip2d export` on a node's data directory writes it (the server's, over
    /// its admin socket).
    fn export(&self, node: usize) -> Vec<Value> {
        let out = common::export(&self.nodes[node].2).expect("the node answers on its admin socket");
        out.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

/// What one kiosk did: what was acknowledged, and what was sent but never acknowledged (it
/// may or may not have been committed: the answer was lost with the node or the database).
#[derive(Default, Debug)]
struct Tally {
    lent: Vec<String>,
    lent_in_doubt: Vec<String>,
    paid: u32,
    paid_in_doubt: u32,
    /// Requests not acknowledged, and the moments they failed.
    failures: Vec<Instant>,
    /// Acknowledged requests after the last failure.
    after_last_failure: usize,
    /// The nodes the kiosk was served by, in order.
    nodes: Vec<usize>,
}

/// A kiosk that, when its connection fails, logs in again on the first node that takes it
/// (its own, then the others in order) and carries on.
struct Roaming {
    addrs: Vec<SocketAddr>,
    login: String,
    node: usize,
    stream: Option<TcpStream>,
}

impl Roaming {
    fn ask(&mut self, frame: &str) -> Option<String> {
        let s = self.stream.as_mut()?;
        s.write_all(format!("{frame}\r").as_bytes()).ok()?;
        let mut reply = Vec::new();
        let mut b = [0u8; 1];
        loop {
            match s.read(&mut b) {
                Ok(1) if b[0] == b'\r' => break,
                Ok(1) => reply.push(b[0]),
                _ => {
                    self.stream = None;
                    return None;
                }
            }
        }
        Some(String::from_utf8_lossy(&reply).trim_start_matches('\n').to_string())
    }

    /// Connects and logs in, trying the nodes in turn until one takes it (at most 30 s).
    fn connect(&mut self, tally: &mut Tally) {
        let until = Instant::now() + Duration::from_secs(30);
        let mut n = self.node;
        while Instant::now() < until {
            if let Ok(s) = TcpStream::connect_timeout(&self.addrs[n], Duration::from_secs(1)) {
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                self.stream = Some(s);
                if self.ask(&format!("9300CN{}|COkiosk-secret|", self.login)).as_deref() == Some("941") {
                    self.node = n;
                    tally.nodes.push(n);
                    return;
                }
                self.stream = None;
                std::thread::sleep(Duration::from_millis(50));
            }
            n = (n + 1) % self.addrs.len();
        }
        panic!("{}: no node took the kiosk for 30 s", self.login);
    }
}

/// Kiosk `k` lends its items one by one and pays 0.01 on its fee after each, through
/// whatever happens to its node, counting what was acknowledged.
fn kiosk_load(addrs: Vec<SocketAddr>, k: usize, node: usize, items: usize, acked: &AtomicUsize) -> Tally {
    let mut t = Tally::default();
    let mut kiosk = Roaming { addrs, login: format!("kiosk{k}"), node, stream: None };
    kiosk.connect(&mut t);
    let refused_for_the_register = |r: &str| r.contains("could not complete");
    for i in 0..items {
        let barcode = item(k, i);
        let lend = format!("11YN{DATE}{BLANK_DATE}AOMAIN|AA{}|AB{barcode}|AC|AD1234|", card(k));
        match kiosk.ask(&lend) {
            Some(r) if r.starts_with("121") => {
                t.lent.push(barcode);
                t.after_last_failure += 1;
                acked.fetch_add(1, Ordering::SeqCst);
            }
            Some(r) if r.starts_with("120") && refused_for_the_register(&r) => {
                t.lent_in_doubt.push(barcode);
                t.failures.push(Instant::now());
                t.after_last_failure = 0;
            }
            Some(r) => panic!("kiosk{k}: {lend:?} answered {r:?}"),
            None => {
                t.lent_in_doubt.push(barcode);
                t.failures.push(Instant::now());
                t.after_last_failure = 0;
            }
        }
        if kiosk.stream.is_none() {
            kiosk.connect(&mut t);
        }
        let pay = format!("37{DATE}0400USDBV0.01|AOMAIN|AA{}|AC|CG{}|", card(k), 5000 + k);
        match kiosk.ask(&pay) {
            Some(r) if r.starts_with("38Y") => {
                t.paid += 1;
                t.after_last_failure += 1;
                acked.fetch_add(1, Ordering::SeqCst);
            }
            Some(r) if r.starts_with("38N") && refused_for_the_register(&r) => {
                t.paid_in_doubt += 1;
                t.failures.push(Instant::now());
                t.after_last_failure = 0;
            }
            Some(r) => panic!("kiosk{k}: {pay:?} answered {r:?}"),
            None => {
                t.paid_in_doubt += 1;
                t.failures.push(Instant::now());
                t.after_last_failure = 0;
            }
        }
        if kiosk.stream.is_none() {
            kiosk.connect(&mut t);
        }
    }
    t
}

/// Every acknowledged loan and payment is in `register`; nothing in it was never sent.
fn nothing_acknowledged_lost(register: &[Value], k: usize, t: &Tally, items: usize) {
    let patron = 100 + k as u64;
    let on_loan = |barcode: &str| {
        register.iter().any(|v| v["type"] == "loan" && v["item"] == barcode && v["patron"].as_u64() == Some(patron))
    };
    for b in &t.lent {
        assert!(on_loan(b), "kiosk{k}: the acknowledged loan of {b} was lost");
    }
    for i in 0..items {
        let b = item(k, i);
        if !t.lent.contains(&b) && !t.lent_in_doubt.contains(&b) {
            assert!(!on_loan(&b), "kiosk{k}: {b} is on loan, and was never lent");
        }
    }
    let fee = register.iter().find(|v| v["type"] == "fee" && v["id"].as_u64() == Some(5000 + k as u64)).unwrap();
    let paid: f64 = fee["paid"].as_str().unwrap().parse().unwrap();
    let cents = (paid * 100.0).round() as u32;
    assert!(
        (t.paid..=t.paid + t.paid_in_doubt).contains(&cents),
        "kiosk{k}: {cents} cents paid, {} acknowledged, {} in doubt",
        t.paid,
        t.paid_in_doubt
    );
}

#[test]
fn a_node_killed_under_load_loses_nothing_acknowledged_and_its_kiosks_go_on_at_another() {
    const ITEMS: usize = 150;
    let db = TestDb::create(&common::pg::server());
    let mut nodes = Nodes::start(db, None, 3, "", &load_register(3, ITEMS));
    let addrs = nodes.addrs();
    let acked = AtomicUsize::new(0);
    let killed_at = std::sync::Mutex::new(None);
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let kiosks: Vec<_> = (0..3)
            .map(|k| {
                let (addrs, acked) = (addrs.clone(), &acked);
                s.spawn(move || kiosk_load(addrs, k, k, ITEMS, acked))
            })
            .collect();
        // Node 1 dies a third of the way through, mid-request as like as not.
        while acked.load(Ordering::SeqCst) < ITEMS * 2 {
            std::thread::sleep(Duration::from_millis(2));
        }
        if let Some(child) = nodes.nodes[1].0.as_mut() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        *killed_at.lock().unwrap() = Some(Instant::now());
        kiosks.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let register = nodes.export(0);
    for (k, t) in tallies.iter().enumerate() {
        nothing_acknowledged_lost(&register, k, t, ITEMS);
    }
    let (survivor0, lost, survivor2) = (&tallies[0], &tallies[1], &tallies[2]);
    assert!(
        survivor0.failures.is_empty() && survivor2.failures.is_empty(),
        "the other nodes kept serving: {tallies:?}"
    );
    assert_eq!((survivor0.nodes.as_slice(), survivor2.nodes.as_slice()), (&[0][..], &[2][..]));
    assert!(lost.nodes.len() == 2 && lost.nodes[1] != 1, "node 1's kiosk went on at another node: {lost:?}");
    assert!(lost.lent.len() + lost.lent_in_doubt.len() == ITEMS && lost.after_last_failure > 100, "{lost:?}");
    assert!(lost.lent_in_doubt.len() + lost.paid_in_doubt as usize <= 1, "only the request in flight: {lost:?}");
}

#[test]
fn the_database_lost_under_load_refuses_what_is_in_flight_loses_nothing_and_serving_resumes() {
    const ITEMS: usize = 120;
    let db = TestDb::create(&common::pg::server());
    let proxy = Proxy::start(db.server_addr());
    let via = db.via(&proxy);
    let more = "connect_timeout = \"1s\"\nstatement_timeout = \"3s\"\npoll_interval = \"200ms\"\n";
    let nodes = Nodes::start(db, Some(via), 2, more, &load_register(2, ITEMS));
    let addrs = nodes.addrs();
    let acked = AtomicUsize::new(0);
    let restored = AtomicBool::new(false);
    let (tallies, cut_at) = std::thread::scope(|s| {
        let kiosks: Vec<_> = (0..2)
            .map(|k| {
                let (addrs, acked) = (addrs.clone(), &acked);
                s.spawn(move || kiosk_load(addrs, k, k, ITEMS, acked))
            })
            .collect();
        while acked.load(Ordering::SeqCst) < ITEMS {
            std::thread::sleep(Duration::from_millis(2));
        }
        // Taken before the cut: a kiosk can see its connection fail while `cut` returns.
        let cut_at = Instant::now();
        proxy.cut();
        std::thread::sleep(Duration::from_millis(1500));
        proxy.restore();
        restored.store(true, Ordering::SeqCst);
        (kiosks.into_iter().map(|h| h.join().unwrap()).collect::<Vec<Tally>>(), cut_at)
    });
    // Both nodes, reading the database again, hold every acknowledged change.
    for node in 0..2 {
        let register = nodes.export(node);
        for (k, t) in tallies.iter().enumerate() {
            nothing_acknowledged_lost(&register, k, t, ITEMS);
        }
    }
    let failures: usize = tallies.iter().map(|t| t.failures.len()).sum();
    assert!(failures > 0, "the cut was felt: {tallies:?}");
    for t in &tallies {
        assert!(t.failures.iter().all(|f| *f >= cut_at), "nothing failed before the cut: {t:?}");
        assert!(t.after_last_failure > 20, "serving resumed by itself: {t:?}");
    }
}

#[test]
fn a_register_moves_to_postgres_and_back_whole() {
    let db = TestDb::create(&common::pg::server());
    let dir = tempfile::tempdir().unwrap();
    let plain = |data: &Path| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sip2d"));
        c.arg("--data").arg(data).env_remove("SIP2D_DATA").env_remove("SIP2D_CONFIG");
        c
    };
    // A register on sled with history, notices and a file besides the records.
    let sled = dir.path().join("sled");
    run_ok(plain(&sled).arg("init"));
    let file = dir.path().join("register.jsonl");
    let lines = load_register(2, 5);
    std::fs::write(&file, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    run_ok(plain(&sled).arg("import").arg(&file));
    run_ok(plain(&sled).args(["patron", "block", &card(0), "--type", "lost-card", "--note", "reported lost"]));
    run_ok(plain(&sled).args(["patron", "note", "add", &card(0), "called about the fee"]));
    let picture = dir.path().join("me.png");
    std::fs::write(&picture, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89")
        .unwrap();
    run_ok(plain(&sled).args(["patron", "picture", "set", &card(1)]).arg(&picture));
    let before = run_ok(plain(&sled).arg("export"));

    let config = config(dir.path(), &db.url(), "");
    let node = dir.path().join("node");
    run_ok(sip2d(&config, &node).arg("migrate"));
    let to = format!("postgres:{}", db.url());
    let out_to =
        run_ok(plain(&sled).args(["migrate-store", "--from", &format!("sled:{}", sled.display()), "--to", &to]));
    for kind in ["read back, it holds the same entries", "patrons", "audit", "files"] {
        assert!(out_to.contains(kind), "{kind}: {out_to}");
    }
    // Once is enough: a database holding a register takes no second one.
    let (ok2, again) =
        run(plain(&sled).args(["migrate-store", "--from", &format!("sled:{}", sled.display()), "--to", &to]));
    assert!(!ok2 && again.contains("holds a register already"), "{again}");

    // A node on the database serves the same register.
    let key = dir.path().join("key");
    run_ok(plain(&sled).args(["key", "export", "-o"]).arg(&key));
    run_ok(sip2d(&config, &node).args(["key", "import"]).arg(&key));
    let on_postgres = run_ok(sip2d(&config, &node).arg("export"));
    assert_eq!(on_postgres, before, "the export from PostgreSQL is the export from sled");

    // And back, into a new directory, with the node's PIN key.
    let back = dir.path().join("back");
    let out_back = run_ok(sip2d(&config, &node).args([
        "migrate-store",
        "--from",
        &to,
        "--to",
        &format!("sled:{}", back.display()),
    ]));
    let checksum = |s: &str| s.lines().find(|l| l.contains("checksum")).map(str::to_string);
    assert_eq!(checksum(&out_back), checksum(&out_to), "{out_back}");
    assert_eq!(run_ok(plain(&back).arg("export")), before);
}

/// Two nodes in one process, on one database, through the engine seam the server uses.
fn two_engines(db: &TestDb) -> (sip2d::engine::pg::PgEngine, sip2d::engine::pg::PgEngine) {
    use sip2d::engine::pg::{PgEngine, PgSettings, migrate};
    let settings = PgSettings::new(db.url());
    migrate(&settings).unwrap();
    let key = sip2d::domain::secret::PinKey::from_bytes([7; 32]);
    let limits = sip2d::engine::RegisterLimits::default();
    let a = PgEngine::open(&PgSettings { node: "a".into(), ..settings.clone() }, key.clone(), limits).unwrap();
    let b = PgEngine::open(&PgSettings { node: "b".into(), ..settings }, key, limits).unwrap();
    (a, b)
}

#[test]
fn a_read_on_one_node_sees_what_another_node_committed_before_it() {
    use sip2d::engine::{Desk, NewItem, NewPatron, Operation};
    let db = TestDb::create(&common::pg::server());
    let (a, b) = two_engines(&db);
    let (on_a, on_b) = (Desk::new(&a, "staff at a"), Desk::new(&b, "staff at b"));
    let now = jiff::Timestamp::now();
    on_a.add_institution("MAIN", "Main Library", "USD", "UTC", now).unwrap();
    let new = NewPatron {
        institution: "MAIN".into(),
        primary_id: "P1".into(),
        first_name: "Avery".into(),
        last_name: "Reader".into(),
        barcodes: vec!["21000000000001".into()],
        ..Default::default()
    };
    let p = on_b.add_patron(new, false, now).unwrap();
    for r in 0..100 {
        let barcode = format!("3{r:013}");
        let item = NewItem {
            barcode: barcode.clone(),
            institution: "MAIN".into(),
            title: "Book".into(),
            ..Default::default()
        };
        // Made on one node, lent on the other, read back at once on the first: no announcement
        // waited for, no retry.
        let (made, lender, reader) = if r % 2 == 0 { (&on_a, &on_b, &on_a) } else { (&on_b, &on_a, &on_b) };
        made.add_item(item, now).unwrap();
        let lend = Operation::Lend { patron: p.id, item: barcode.clone(), accept_fee: false };
        let loan = lender.run(lend, now).unwrap().loan().unwrap();
        assert_eq!(reader.loan(&barcode).unwrap().map(|l| l.patron), Some(loan.patron), "round {r}");
        assert_eq!(reader.card(p.id, now).unwrap().loans.len(), 1, "round {r}");
        reader.run(Operation::Return { item: barcode.clone() }, now).unwrap();
        assert_eq!(lender.loan(&barcode).unwrap(), None, "round {r}: the return is seen where the loan was made");
    }
    assert_eq!(on_a.history(p.id).unwrap().len(), on_b.history(p.id).unwrap().len());
}

#[test]
fn the_database_over_tls_is_verified_and_never_plain() {
    use common::pg::{TlsFront, tls_for_localhost};
    use sip2d::engine::pg::{PgEngine, PgSettings, migrate};
    let db = TestDb::create(&common::pg::server());
    migrate(&PgSettings::new(db.url())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ca, config) = tls_for_localhost();
    let ca_file = dir.path().join("db-ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let key = sip2d::domain::secret::PinKey::from_bytes([9; 32]);
    let limits = sip2d::engine::RegisterLimits::default();
    let via = |front: &TlsFront, ca: Option<&Path>| {
        let url = format!("host=localhost port={} user=postgres dbname={}", front.addr.port(), db.name);
        PgSettings {
            ca_file: ca.map(Path::to_path_buf),
            connect_timeout: Duration::from_secs(3),
            ..PgSettings::new(url)
        }
    };

    // Through TLS, the certificate chaining to the CA given: the register is served.
    let front = TlsFront::start(db.server_addr(), Some(config));
    let engine = PgEngine::open(&via(&front, Some(&ca_file)), key.clone(), limits).unwrap();
    sip2d::engine::Desk::new(&engine, "tester")
        .add_institution("MAIN", "Main Library", "USD", "UTC", jiff::Timestamp::now())
        .unwrap();
    drop(engine);
    let n: i64 = db.client().query_one("SELECT count(*) FROM institutions", &[]).unwrap().get(0);
    assert_eq!(n, 1, "the change went through the TLS connection");

    // An impostor with a certificate from another CA is refused.
    let (_, impostor) = tls_for_localhost();
    let front = TlsFront::start(db.server_addr(), Some(impostor));
    let e = PgEngine::open(&via(&front, Some(&ca_file)), key.clone(), limits).err().expect("refused");
    assert!(e.to_string().contains("cannot reach the database") && e.to_string().contains("certificate"), "{e}");

    // A server that answers "no TLS" is not talked to in the clear.
    let plain = TlsFront::start(db.server_addr(), None);
    let e = PgEngine::open(&via(&plain, Some(&ca_file)), key.clone(), limits).err().expect("refused");
    assert!(e.to_string().contains("cannot reach the database") && e.to_string().contains("TLS"), "{e}");

    // Asking for TLS in the URL without saying whom to trust is refused before connecting.
    let url = format!("{} sslmode=require", db.url());
    let e = PgEngine::open(&PgSettings::new(url), key, limits).err().expect("refused");
    assert!(e.to_string().contains("give store.ca_file"), "{e}");
}
