//! Isolation, in the spirit of PostgreSQL's isolation tester: for each pair of actions that can
//! meet on one record (two kiosks, or a kiosk and a member of staff through the admin API), both
//! are sent at the same instant over real sockets, round after round, and the state they leave
//! must be one that running them one after the other, in some order, would leave, with every
//! acknowledged action in it.
//!
//! The register is made by `sip2d import` and read back by `sip2d export`, and the server is the
//! `sip2d serve` binary, so these tests hold whatever engine is behind it. With
//! `SIP2D_TEST_POSTGRES` set to a PostgreSQL server (`host=127.0.0.1 user=postgres`), the
//! register is in a database of its own there, three nodes serve it, and each kiosk and the
//! staff member talk to different nodes: `.ci/run` runs them so as well.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Barrier;

use common::Kiosk;
use serde_json::{Value, json};
use sip2d::engine::Operation;

/// Rounds per pair.
const ROUNDS: usize = 200;
const DATE: &str = "20261202    120000";
const BLANK_DATE: &str = "                  ";

struct World {
    /// The nodes: a server each, its address, its data directory.
    nodes: Vec<(Child, SocketAddr, PathBuf)>,
    /// Holds the data directories and configuration.
    _dir: tempfile::TempDir,
    /// The test database, when the register is on PostgreSQL (dropped after the nodes stop).
    db: Option<common::pg::TestDb>,
}

impl Drop for World {
    fn drop(&mut self) {
        for (child, _, _) in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
        drop(self.db.take());
    }
}

fn sip2d(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sip2d"));
    c.arg("--data").arg(data).env_remove("SIP2D_DATA").env_remove("SIP2D_CONFIG");
    c
}

fn run_ok(c: &mut Command, what: &str) {
    let o = c.output().unwrap();
    assert!(o.status.success(), "{what}: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
}

/// The institution, its kiosks (which may block and enable cards) and `lines`.
fn world(lines: Vec<Value>) -> World {
    // Many wrong PINs on purpose: the terminals' budget is not what most tests test.
    world_with(lines, 1_000_000)
}

/// The same, with each terminal allowed `pin_budget` wrong PINs per window.
fn world_with(lines: Vec<Value>, pin_budget: u32) -> World {
    let dir = tempfile::tempdir().unwrap();
    let mut all =
        vec![json!({"type":"institution","code":"MAIN","name":"Main Library","currency":"USD","timezone":"UTC",
               "default_policy":{"loan_days":21,"max_loans":100000,"max_renewals":1000,"fine_threshold":"100000.00"}})];
    for login in ["kiosk1", "kiosk2", "kiosk3", "kiosk4"] {
        all.push(json!({"type":"account","login":login,"password":"kiosk-secret","institution":"MAIN",
                        "profile":{"status-update":"yes","patron-enable":"yes"}}));
    }
    all.extend(lines);
    let file = dir.path().join("register.jsonl");
    std::fs::write(&file, all.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let db =
        std::env::var("SIP2D_TEST_POSTGRES").ok().filter(|s| !s.is_empty()).map(|s| common::pg::TestDb::create(&s));
    // 200 rounds' holds on one patron, on purpose: the register's caps are not tested here.
    let mut settings = format!(
        "[limits]\npin_failures_per_window = {pin_budget}\nlogin_failure_delay = \"0s\"\n\
         [register]\nmax_holds_per_patron = 100000\n"
    );
    if let Some(db) = &db {
        settings.push_str(&format!("[store]\nengine = \"postgres\"\nurl = \"{}\"\n", db.url()));
    }
    let config = dir.path().join("sip2d.toml");
    std::fs::write(&config, settings).unwrap();
    let nodes = if db.is_some() { 3 } else { 1 };
    let data: Vec<PathBuf> = (0..nodes).map(|n| dir.path().join(format!("data{n}"))).collect();
    let with_config = |d: &Path| {
        let mut c = sip2d(d);
        c.arg("--config").arg(&config);
        c
    };
    if db.is_some() {
        run_ok(with_config(&data[0]).arg("migrate"), "migrate");
    }
    run_ok(with_config(&data[0]).arg("init"), "init");
    run_ok(with_config(&data[0]).arg("import").arg(&file), "import");
    if nodes > 1 {
        // Every node holds the register's PIN key.
        let key = dir.path().join("pin.key");
        run_ok(with_config(&data[0]).args(["key", "export", "-o"]).arg(&key), "key export");
        for d in &data[1..] {
            run_ok(with_config(d).args(["key", "import"]).arg(&key), "key import");
        }
    }
    let nodes = data
        .into_iter()
        .map(|d| {
            let (child, _out, addr) = common::spawn_sip2d(
                &[
                    "--data",
                    d.to_str().unwrap(),
                    "serve",
                    "--config",
                    config.to_str().unwrap(),
                    "--listen",
                    "127.0.0.1:0",
                ],
                "warn",
                Stdio::null(),
                "listening on ",
            );
            (child, addr, d)
        })
        .collect();
    World { nodes, _dir: dir, db }
}

impl World {
    /// The node staff work on: the last (not kiosk1's, which races staff).
    fn data(&self) -> PathBuf {
        self.nodes[self.nodes.len() - 1].2.clone()
    }

    /// A kiosk logged in on a node of its own: kiosk1 on the first, kiosk2 on the second...
    fn kiosk(&self, login: &str) -> Kiosk {
        let n: usize = login.trim_start_matches("kiosk").parse().unwrap();
        self.kiosk_on(login, n - 1)
    }

    /// A connection logged in as `login` on node `node` (modulo the nodes there are).
    fn kiosk_on(&self, login: &str, node: usize) -> Kiosk {
        let mut k = Kiosk::connect(self.nodes[node % self.nodes.len()].1);
        assert_eq!(k.ask(&format!("9300CN{login}|COkiosk-secret|")), "941");
        k
    }

    /// Runs an operation on the server through its admin socket, as the command line does:
    /// (HTTP status, answer).
    fn admin(&self, op: Operation) -> (u16, String) {
        common::operation(&self.data(), op).expect("the server answers on its admin socket")
    }

    /// The register as `sip2d export` writes it, by kind (from the first node).
    fn export(&self) -> Register {
        let out = common::export(&self.nodes[0].2).expect("the server answers on its admin socket");
        let mut r = Register::default();
        for line in out.lines().filter(|l| l.starts_with('{')) {
            let v: Value = serde_json::from_str(line).unwrap();
            match v["type"].as_str().unwrap() {
                "patron" => {
                    r.patrons.insert(v["id"].as_u64().unwrap(), v);
                }
                "item" => {
                    r.items.insert(v["barcode"].as_str().unwrap().to_string(), v);
                }
                "loan" => {
                    r.loans.insert(v["item"].as_str().unwrap().to_string(), v);
                }
                "fee" => {
                    r.fees.insert(v["id"].as_u64().unwrap(), v);
                }
                "hold" => r.holds.push(v),
                _ => {}
            }
        }
        r
    }
}

#[derive(Default)]
struct Register {
    patrons: HashMap<u64, Value>,
    items: HashMap<String, Value>,
    loans: HashMap<String, Value>,
    fees: HashMap<u64, Value>,
    holds: Vec<Value>,
}

impl Register {
    fn loan_to(&self, item: &str) -> Option<u64> {
        self.loans.get(item).map(|l| l["patron"].as_u64().unwrap())
    }
    fn paid(&self, fee: u64) -> String {
        self.fees[&fee]["paid"].as_str().unwrap().to_string()
    }
    fn blocked(&self, patron: u64) -> bool {
        self.patrons[&patron]["blocks"].as_array().is_some_and(|b| b.iter().any(|b| b["active"] == true))
    }
}

fn patron(id: u64, card: &str, pin: &str) -> Value {
    json!({"type":"patron","id":id,"institution":"MAIN","primary_id":format!("P{id}"),"first_name":"Pat",
           "last_name":format!("Ron{id}"),"expiry":"2099-01-01","identifiers":[{"kind":"barcode","value":card}],"pin":pin})
}

/// An open fee, nothing paid yet.
fn fee(id: u64, patron: u64, kind: &str, amount: &str) -> Value {
    json!({"type":"fee","id":id,"patron":patron,"kind":kind,"amount":amount,"paid":"0.00","currency":"USD",
           "status":"active","created":"2026-11-01T10:00:00Z"})
}

fn item(barcode: &str) -> Value {
    json!({"type":"item","barcode":barcode,"institution":"MAIN","title":format!("Book {barcode}"),"media_type":1,"security_marker":2})
}

fn item_no(r: usize) -> String {
    format!("3{r:013}")
}

fn card(id: u64) -> String {
    format!("2{id:013}")
}

fn checkout(card: &str, item: &str) -> String {
    format!("11YN{DATE}{BLANK_DATE}AOMAIN|AA{card}|AB{item}|AC|AD1234|")
}

fn checkin(item: &str) -> String {
    format!("09N{DATE}{DATE}APlobby|AOMAIN|AB{item}|AC|")
}

/// Runs `a` and `b` on two threads, each released at the same instant by the barrier it waits on.
fn race<A: Send, B: Send>(a: impl FnOnce(&Barrier) -> A + Send, b: impl FnOnce(&Barrier) -> B + Send) -> (A, B) {
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        let ha = s.spawn(|| a(&barrier));
        let hb = s.spawn(|| b(&barrier));
        (ha.join().unwrap(), hb.join().unwrap())
    })
}

/// Sends each connection its frame (`frame(n)` to the n-th) at the same instant; the replies in
/// the connections' order.
fn at_once(kiosks: &mut [Kiosk], frame: impl Fn(usize) -> String + Sync) -> Vec<String> {
    let barrier = Barrier::new(kiosks.len());
    std::thread::scope(|sc| {
        let handles: Vec<_> = kiosks
            .iter_mut()
            .enumerate()
            .map(|(n, k)| {
                let (barrier, frame) = (&barrier, &frame);
                sc.spawn(move || send_at(k, barrier, &frame(n)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Sends `frame` once released, and returns the reply.
fn send_at(k: &mut Kiosk, go: &Barrier, frame: &str) -> String {
    let bytes = format!("{frame}\r");
    go.wait();
    k.send(bytes.as_bytes());
    k.reply().expect("a reply")
}

fn admin_at(w: &World, go: &Barrier, op: Operation) -> (u16, String) {
    go.wait();
    w.admin(op)
}

fn ok_12(reply: &str) -> bool {
    assert!(reply.starts_with("12"), "{reply}");
    reply.as_bytes()[2] == b'1'
}

fn s(v: &str) -> String {
    v.to_string()
}

#[test]
fn two_checkouts_of_one_item_lend_it_once() {
    let (a, b) = (10, 11);
    let mut lines = vec![patron(a, &card(a), "1234"), patron(b, &card(b), "1234")];
    lines.extend((0..ROUNDS).map(|r| item(&item_no(r))));
    let w = world(lines);
    let (mut k1, mut k2) = (w.kiosk("kiosk1"), w.kiosk("kiosk2"));
    let mut acked = Vec::new();
    let mut both = 0;
    for r in 0..ROUNDS {
        let i = item_no(r);
        let (ra, rb) = race(
            |go| send_at(&mut k1, go, &checkout(&card(a), &i)),
            |go| send_at(&mut k2, go, &checkout(&card(b), &i)),
        );
        let (oa, ob) = (ok_12(&ra), ok_12(&rb));
        both += usize::from(oa && ob);
        acked.push(match (oa, ob) {
            (true, false) => Some(a),
            (false, true) => Some(b),
            _ => None,
        });
    }
    assert_eq!(both, 0, "{both} of {ROUNDS} items were lent to both patrons at once");
    let reg = w.export();
    for (r, who) in acked.iter().enumerate() {
        assert_eq!(reg.loan_to(&item_no(r)), *who, "round {r}: the loan is not the acknowledged one");
    }
    assert!(acked.iter().all(Option::is_some), "one of the two checkouts is always possible");
}

#[test]
fn a_checkout_and_a_checkin_of_one_item_end_as_one_order_or_the_other() {
    let a = 10;
    let mut lines = vec![patron(a, &card(a), "1234")];
    lines.extend((0..ROUNDS).map(|r| item(&item_no(r))));
    let w = world(lines);
    let (mut k1, mut k2) = (w.kiosk("kiosk1"), w.kiosk("kiosk2"));
    let mut checkin_saw_loan = Vec::new();
    for r in 0..ROUNDS {
        let i = item_no(r);
        let (co, ci) =
            race(|go| send_at(&mut k1, go, &checkout(&card(a), &i)), |go| send_at(&mut k2, go, &checkin(&i)));
        assert!(ok_12(&co), "the patron may always borrow: {co}");
        assert!(ci.starts_with("101"), "a checkin is always taken: {ci}");
        checkin_saw_loan.push(ci.contains(&format!("|AA{}|", card(a))));
    }
    let reg = w.export();
    for (r, saw) in checkin_saw_loan.iter().enumerate() {
        // Checkout first: the checkin ends the loan it saw. Checkin first: the loan stands.
        let expected = if *saw { None } else { Some(a) };
        assert_eq!(reg.loan_to(&item_no(r)), expected, "round {r}: checkin saw a loan: {saw}");
        let status = reg.items[&item_no(r)]["status"].as_str().unwrap().to_string();
        assert_eq!(status, if *saw { "available" } else { "on-loan" }, "round {r}");
    }
}

#[test]
fn a_renewal_racing_a_checkin_never_brings_the_loan_back() {
    let a = 10;
    let mut lines = vec![patron(a, &card(a), "1234")];
    for r in 0..ROUNDS {
        let mut i = item(&item_no(r));
        i["status"] = json!("on-loan");
        lines.push(i);
        lines.push(json!({"type":"loan","item":item_no(r),"patron":a,"out":"2026-11-30T10:00:00Z",
                          "due":"2026-12-20T23:59:00Z","renewals":0}));
    }
    let w = world(lines);
    let (mut k1, mut k2) = (w.kiosk("kiosk1"), w.kiosk("kiosk2"));
    for r in 0..ROUNDS {
        let i = item_no(r);
        let renew = format!("29NN{DATE}{BLANK_DATE}AOMAIN|AA{}|AD1234|AB{i}|AC|", card(a));
        let (rn, ci) = race(|go| send_at(&mut k1, go, &renew), |go| send_at(&mut k2, go, &checkin(&i)));
        assert!(rn.starts_with("30"), "{rn}");
        // In either order the checkin finds the loan (before or after its renewal) and ends it.
        assert!(ci.starts_with("101") && ci.contains(&format!("|AA{}|", card(a))), "round {r}: {ci}");
    }
    let reg = w.export();
    let back: Vec<_> = (0..ROUNDS).filter(|r| reg.loan_to(&item_no(*r)).is_some()).collect();
    assert!(back.is_empty(), "loans that came back after their checkin: rounds {back:?}");
}

#[test]
fn payments_on_one_fee_from_three_kiosks_at_once_are_all_counted() {
    let c = 10;
    let w = world(vec![patron(c, &card(c), "1234"), fee(5001, c, "overdue", "12.50")]);
    // Three kiosks, on three nodes when there are.
    let mut kiosks: Vec<Kiosk> = ["kiosk1", "kiosk2", "kiosk3"].iter().map(|l| w.kiosk(l)).collect();
    let pay = format!("37{DATE}0400USDBV0.01|AOMAIN|AA{}|AC|CG5001|", card(c));
    let mut acked = 0;
    for _ in 0..ROUNDS {
        for reply in at_once(&mut kiosks, |_| pay.clone()) {
            assert!(reply.starts_with("38"), "{reply}");
            acked += usize::from(reply.as_bytes()[2] == b'Y');
        }
    }
    assert_eq!(acked, 3 * ROUNDS, "every payment of 0.01 on a fee of 12.50 is taken");
    let reg = w.export();
    let want = format!("{:.2}", acked as f64 * 0.01);
    assert_eq!(reg.paid(5001), want, "{acked} payments of 0.01 were acknowledged");
}

#[test]
fn a_payment_racing_a_staff_waive_loses_neither() {
    let d = 10;
    let mut lines = vec![patron(d, &card(d), "1234")];
    lines.extend((0..ROUNDS as u64).map(|r| fee(6000 + r, d, "damage", "5.00")));
    let w = world(lines);
    let mut k1 = w.kiosk("kiosk1");
    let mut paid = Vec::new();
    for r in 0..ROUNDS as u64 {
        let pay = format!("37{DATE}0400USDBV1.00|AOMAIN|AA{}|AC|CG{}|", card(d), 6000 + r);
        let waive = Operation::WaiveFee { fee: 6000 + r, reason: s("goodwill") };
        let (rp, (code, out)) = race(|go| send_at(&mut k1, go, &pay), |go| admin_at(&w, go, waive));
        assert_eq!(code, 200, "a waive of an active fee is always taken: {out}");
        paid.push(rp.as_bytes()[2] == b'Y');
    }
    let reg = w.export();
    for (r, p) in paid.iter().enumerate() {
        let fee = &reg.fees[&(6000 + r as u64)];
        assert_eq!(fee["status"], "waived", "round {r}: the waive was lost: {fee}");
        assert_eq!(fee["paid"], if *p { "1.00" } else { "0.00" }, "round {r}: the payment (acknowledged: {p})");
    }
}

/// Patrons 100.. each with a card, and an item per round.
fn patrons_and_items() -> Vec<Value> {
    let mut lines = Vec::new();
    for r in 0..ROUNDS as u64 {
        lines.push(patron(100 + r, &card(100 + r), "1234"));
        lines.push(item(&item_no(r as usize)));
    }
    lines
}

#[test]
fn a_checkout_racing_a_staff_block_is_lent_only_before_the_block() {
    let w = world(patrons_and_items());
    let mut k1 = w.kiosk("kiosk1");
    let mut lent = Vec::new();
    for r in 0..ROUNDS {
        let p = 100 + r as u64;
        let block = Operation::Block { patron: p, kind: s("general"), note: None };
        let (co, (code, out)) =
            race(|go| send_at(&mut k1, go, &checkout(&card(p), &item_no(r))), |go| admin_at(&w, go, block));
        assert_eq!(code, 200, "{out}");
        lent.push(ok_12(&co));
    }
    let reg = w.export();
    for (r, l) in lent.iter().enumerate() {
        let p = 100 + r as u64;
        assert!(reg.blocked(p), "round {r}: the block was lost");
        assert_eq!(reg.loan_to(&item_no(r)), l.then_some(p), "round {r}: checkout acknowledged: {l}");
    }
}

#[test]
fn a_checkout_racing_a_deletion_leaves_one_of_the_two() {
    let w = world(patrons_and_items());
    let mut k1 = w.kiosk("kiosk1");
    let mut outcomes = Vec::new();
    for r in 0..ROUNDS {
        let p = 100 + r as u64;
        let delete = Operation::DeletePatron { patron: p };
        let (co, (code, _)) =
            race(|go| send_at(&mut k1, go, &checkout(&card(p), &item_no(r))), |go| admin_at(&w, go, delete));
        outcomes.push((ok_12(&co), code == 200));
    }
    let reg = w.export();
    for (r, (lent, deleted)) in outcomes.iter().enumerate() {
        let p = 100 + r as u64;
        // Checkout first: the deletion is refused (a loan). Deletion first: the card is unknown.
        assert!(lent != deleted, "round {r}: lent {lent}, deleted {deleted}");
        assert_eq!(reg.loan_to(&item_no(r)), lent.then_some(p), "round {r}");
        assert_eq!(reg.patrons[&p]["deleted"].is_string(), *deleted, "round {r}");
    }
}

#[test]
fn a_hold_racing_a_checkout_by_another_patron_ends_as_one_order_or_the_other() {
    let (holder, borrower) = (10, 11);
    let mut lines = vec![patron(holder, &card(holder), "1234"), patron(borrower, &card(borrower), "1234")];
    lines.extend((0..ROUNDS).map(|r| item(&item_no(r))));
    let w = world(lines);
    let (mut k1, mut k2) = (w.kiosk("kiosk1"), w.kiosk("kiosk2"));
    let mut lent = Vec::new();
    for r in 0..ROUNDS {
        let i = item_no(r);
        let hold = format!("15+{DATE}BSMAIN|AOMAIN|AA{}|AD1234|AB{i}|AC|", card(holder));
        let (h, co) = race(|go| send_at(&mut k1, go, &hold), |go| send_at(&mut k2, go, &checkout(&card(borrower), &i)));
        assert!(h.starts_with("161"), "a hold is always taken: {h}");
        lent.push(ok_12(&co));
    }
    let reg = w.export();
    for (r, l) in lent.iter().enumerate() {
        let i = item_no(r);
        // Hold first: the checkout is refused (on hold for another). Checkout first: both stand.
        assert_eq!(reg.loan_to(&i), l.then_some(borrower), "round {r}");
        let held = reg.holds.iter().any(|h| h["item"] == i.as_str() && h["patron"] == holder);
        assert!(held, "round {r}: the hold was lost");
    }
}

#[test]
fn a_kiosk_block_racing_a_checkout_is_lent_only_before_the_block() {
    let w = world(patrons_and_items());
    let (mut k1, mut k2) = (w.kiosk("kiosk1"), w.kiosk("kiosk2"));
    let mut lent = Vec::new();
    for r in 0..ROUNDS {
        let p = 100 + r as u64;
        let block = format!("01N{DATE}AOMAIN|ALcard kept|AA{}|AC|", card(p));
        let (b, co) =
            race(|go| send_at(&mut k1, go, &block), |go| send_at(&mut k2, go, &checkout(&card(p), &item_no(r))));
        assert!(b.starts_with("24"), "{b}");
        lent.push(ok_12(&co));
    }
    let reg = w.export();
    for (r, l) in lent.iter().enumerate() {
        let p = 100 + r as u64;
        assert!(reg.blocked(p), "round {r}: the kiosk's block was lost");
        assert_eq!(reg.loan_to(&item_no(r)), l.then_some(p), "round {r}");
    }
}

#[test]
fn wrong_pins_on_four_connections_lock_the_card_after_exactly_five() {
    let w = world((0..ROUNDS as u64).map(|r| patron(100 + r, &card(100 + r), "1111")).collect());
    let mut kiosks: Vec<Kiosk> = ["kiosk1", "kiosk2", "kiosk3", "kiosk4"].iter().map(|l| w.kiosk(l)).collect();
    for r in 0..ROUNDS as u64 {
        let status = format!("23001{DATE}AOMAIN|AA{}|AC|AD0000|", card(100 + r));
        // Two wrong PINs from each of four kiosks, the pairs at the same instant.
        let mut replies = at_once(&mut kiosks, |_| status.clone());
        replies.extend(at_once(&mut kiosks, |_| status.clone()));
        let wrong = replies.iter().filter(|r| r.contains("The PIN is not correct")).count();
        let locked = replies.iter().filter(|r| r.contains("your card is locked")).count();
        assert_eq!((wrong, locked), (4, 4), "round {r}: 4 wrong, then the fifth locks: {replies:?}");
    }
    let reg = w.export();
    for r in 0..ROUNDS as u64 {
        let p = &reg.patrons[&(100 + r)];
        assert_eq!((p["failed_pins"].as_u64(), p["locked"].as_bool()), (Some(5), Some(true)), "round {r}: {p}");
    }
}

/// A reply without its transaction date (characters 3 to 20 of a 38), which is the time of
/// answering, and the checksum that covers it.
fn undated(reply: &str) -> String {
    let body = reply.rsplit_once("AZ").map_or(reply, |(b, _)| b);
    format!("{}{}", &body[..3], &body[21..])
}

#[test]
fn a_payment_sent_again_on_another_connection_or_node_is_answered_as_before_and_paid_once() {
    let c = 10;
    let mut lines = vec![patron(c, &card(c), "1234")];
    lines.extend((0..ROUNDS as u64).map(|r| fee(7000 + r, c, "damage", "5.00")));
    let w = world(lines);
    let pay = |r: usize| {
        let body = format!("37{DATE}0400USDBV1.00|AOMAIN|AA{}|AC|CG{}|", card(c), 7000 + r);
        common::sealed(&body, (r % 10) as u8)
    };
    // The reply lost with the connection: the kiosk sends the request again on a new one, to
    // another node, and hears what it would have heard.
    let mut first = w.kiosk_on("kiosk1", 0);
    let before = first.ask(&pay(0));
    drop(first);
    let mut again = w.kiosk_on("kiosk1", 1);
    let after = again.ask(&pay(0));
    assert!(before.starts_with("38Y"), "{before}");
    assert_eq!(undated(&after), undated(&before), "the same answer, from the first run's receipt");
    // Sent on two connections (two nodes) at the same instant, round after round: one runs,
    // the other is answered from its receipt.
    let (mut k1, mut k2) = (w.kiosk_on("kiosk1", 1), w.kiosk_on("kiosk1", 2));
    for r in 1..ROUNDS {
        let frame = pay(r);
        let (ra, rb) = race(|go| send_at(&mut k1, go, &frame), |go| send_at(&mut k2, go, &frame));
        assert!(ra.starts_with("38Y"), "round {r}: {ra}");
        assert_eq!(undated(&ra), undated(&rb), "round {r}: both connections hear the one payment");
    }
    // Another request (another sequence number) is another payment.
    let body = format!("37{DATE}0400USDBV1.00|AOMAIN|AA{}|AC|CG7000|", card(c));
    assert!(k1.ask(&common::sealed(&body, 9)).starts_with("38Y"));
    let reg = w.export();
    assert_eq!(reg.paid(7000), "2.00", "fee 7000: the first payment once, and the later one");
    for r in 1..ROUNDS as u64 {
        assert_eq!(reg.paid(7000 + r), "1.00", "fee {}: paid once", 7000 + r);
    }
}

#[test]
fn a_terminals_wrong_pins_count_on_every_connection_and_node_and_stop_at_its_budget() {
    const BUDGET: usize = 20;
    let w = world_with((0..60u64).map(|p| patron(100 + p, &card(100 + p), "1111")).collect(), BUDGET as u32);
    // One terminal on three connections (three nodes when there are), wrong PINs from all at
    // once: each on a patron of its own, so no card locks.
    let mut conns: Vec<Kiosk> = (0..3).map(|n| w.kiosk_on("kiosk3", n)).collect();
    let mut replies = Vec::new();
    for round in 0..10u64 {
        replies.extend(at_once(&mut conns, |n| {
            format!("23001{DATE}AOMAIN|AA{}|AC|AD0000|", card(100 + round * 3 + n as u64))
        }));
    }
    let wrong = replies.iter().filter(|r| r.contains("The PIN is not correct")).count();
    let held = replies.iter().filter(|r| r.contains("Too many wrong PINs")).count();
    assert_eq!((wrong, held), (BUDGET, 30 - BUDGET), "{replies:?}");
    // Held on every node, even for a right PIN; another terminal is not.
    for k in &mut conns {
        let r = k.ask(&format!("23001{DATE}AOMAIN|AA{}|AC|AD1111|", card(150)));
        assert!(r.contains("|CQN|") && r.contains("Too many wrong PINs"), "{r}");
    }
    let r = w.kiosk("kiosk2").ask(&format!("23001{DATE}AOMAIN|AA{}|AC|AD1111|", card(150)));
    assert!(r.contains("|CQY|"), "{r}");
    let reg = w.export();
    let counted: u64 = (0..30u64).map(|p| reg.patrons[&(100 + p)]["failed_pins"].as_u64().unwrap()).sum();
    assert_eq!(counted, BUDGET as u64, "only the PINs tried count on the patrons");
}
