//! The server over real sockets: every message pair and its refusals, error detection and
//! resends, CRLF and pipelining, profiles, limits and shutdown.

mod common;

use std::time::Duration;

use common::{Kiosk, open, sealed, start, start_in, test_config, vector_world};
use sip2d::domain::{FeeKind, Money};
use sip2d::engine::{Desk, Operation};

const D: &str = "20261122    120000";
const BLANK_DATE: &str = "                  ";

fn with_fee(desk: &Desk<'_>) {
    vector_world(desk);
    let blake = desk.find("MAIN", "21234000099999").unwrap();
    desk.add_fee(blake.id, FeeKind::Overdue, Money(500), jiff::Timestamp::now()).unwrap();
}

/// A variable field's value (not the first field, which follows the fixed part).
fn field<'a>(reply: &'a str, id: &str) -> Option<&'a str> {
    reply.split('|').skip(1).find_map(|f| f.strip_prefix(id))
}

#[test]
fn every_message_pair_is_answered_and_its_changes_persist() {
    let s = start(with_fee, test_config());
    let mut k = s.logged_in();

    let r = k.ask("9900302.00");
    assert!(r.starts_with("98YYYYYN999003"), "status update allowed for kiosk1: {r}");
    assert!(r.contains("|BXYYYYYYYYYYYYYYYY|"), "kiosk1 may use all sixteen: {r}");
    assert!(r.contains("AOMAIN|AMMain Library|"), "{r}");

    let r = k.ask(&format!("23001{D}AOMAIN|AA21234000012345|AC|AD4321|"));
    assert!(r.starts_with("24              001"), "{r}");
    assert!(r.contains("|AA21234000012345|AEReader, Avery|BLY|CQY|"), "{r}");
    let r = k.ask(&format!("23001{D}AOMAIN|AA21234000012345|AC|AD9999|"));
    assert!(r.contains("|BLY|CQN|") && r.contains("AFThe PIN is not correct."), "{r}");
    let r = k.ask(&format!("23001{D}AOMAIN|AA00000000000000|AC|AD9999|"));
    assert!(r.starts_with("24YYYY          001") && r.contains("|BLN|CQN|"), "unknown card: {r}");

    let r = k.ask(&format!("63001{D}          AOMAIN|AA21234000099999|AC|AD1111|"));
    assert!(r.starts_with("64"), "{r}");
    assert!(r.contains("|BLY|CQY|BHUSD|BV5.00|"), "the fee shows in BV: {r}");

    let checkout = format!("11YN{D}{BLANK_DATE}AOMAIN|AA21234000012345|AB31234000098765|AC|AD4321|");
    let r = k.ask(&checkout);
    assert!(r.starts_with("121NYY") || r.starts_with("121N"), "{r}");
    assert!(r.contains("|AJThe Left Hand of Darkness|AH"), "{r}");
    let r = k.ask(&checkout);
    assert!(r.starts_with("121Y"), "the patron's own item is renewed: {r}");
    let r = k.ask(&format!("11YN{D}{BLANK_DATE}AOMAIN|AA21234000099999|AB31234000098765|AC|AD1111|"));
    assert!(r.starts_with("120"), "someone else's loan: {r}");
    assert!(field(&r, "AF").is_some(), "a refusal says why: {r}");

    let r = k.ask(&format!("17{D}AOMAIN|AB31234000098765|AC|"));
    assert!(r.starts_with("180402"), "charged, security marker 02: {r}");
    assert!(r.contains("|AJThe Left Hand of Darkness|"), "{r}");

    let r = k.ask(&format!("29NN{D}{BLANK_DATE}AOMAIN|AA21234000012345|AD4321|AB31234000098765|AC|"));
    assert!(r.starts_with("301Y"), "{r}");
    let r = k.ask(&format!("65{D}AOMAIN|AA21234000012345|AD4321|AC|"));
    assert!(r.starts_with("66100010000"), "one renewed, none refused: {r}");
    assert!(r.contains("|BM31234000098765|"), "{r}");

    let r = k.ask(&format!("63001{D}  Y       AOMAIN|AA21234000012345|AC|AD4321|"));
    assert!(r.contains("|AU31234000098765|"), "charged items listed: {r}");

    let r = k.ask(&format!("09N{D}{D}APENTRANCE|AOMAIN|AB31234000098765|AC|"));
    assert!(r.starts_with("101YNN"), "{r}");
    assert!(r.contains("|AA21234000012345|"), "whose loan it was: {r}");

    let r = k.ask(&format!("15+{D}AOMAIN|AA21234000099999|AD1111|AB31234000011111|AC|"));
    assert!(r.starts_with("161"), "{r}");
    assert!(r.contains("BR1|"), "first in the queue: {r}");
    let r = k.ask(&format!("15-{D}AOMAIN|AA21234000099999|AD1111|AB31234000011111|AC|"));
    assert!(r.starts_with("161"), "cancelled: {r}");
    let r = k.ask(&format!("15?{D}AOMAIN|AA21234000099999|AD1111|AB31234000011111|AC|"));
    assert!(r.starts_with("160"), "unknown hold mode: {r}");

    let r = k.ask(&format!("37{D}0400USDBV9.00|AOMAIN|AA21234000099999|AC|AD1111|"));
    assert!(r.starts_with("38N"), "more than is owed is refused: {r}");
    let r = k.ask(&format!("37{D}0400USDBV2.00|AOMAIN|AA21234000099999|AC|AD1111|"));
    assert!(r.starts_with("38Y") && field(&r, "BK").is_some(), "accepted with a receipt: {r}");

    let r = k.ask(&format!("35{D}AOMAIN|AA21234000012345|AC|AD4321|"));
    assert!(r.starts_with("36Y"), "{r}");

    let r = k.ask(&format!("19{D}AOMAIN|AB31234000022222|AC|CHshelf 4, bin 2|"));
    assert!(r.starts_with("201"), "{r}");

    let r = k.ask(&format!("01N{D}AOMAIN|ALCard left in the machine|AA21234000012345|AC|"));
    assert!(r.starts_with("24YYYY"), "the card is blocked at once: {r}");
    let r = k.ask(&format!("25{D}AOMAIN|AA21234000012345|AC|AD4321|"));
    assert!(r.starts_with("26    "), "the self-check block is lifted: {r}");

    drop(k);
    let (result, dir) = s.stop();
    result.unwrap();
    // Everything answered "ok" is in the store.
    let engine = open(dir.path());
    let desk = Desk::new(&engine, "test");
    let blake = desk.find("MAIN", "21234000099999").unwrap();
    assert_eq!(desk.balance(blake.id).unwrap(), Money(300), "5.00 owed, 2.00 paid");
    let item = desk.item("31234000022222").unwrap().item;
    assert_eq!(item.properties.as_deref(), Some("shelf 4, bin 2"));
    assert!(desk.loan("31234000098765").unwrap().is_none(), "checked in");
    let avery = desk.find("MAIN", "21234000012345").unwrap();
    assert!(avery.blocks.iter().any(|b| b.kind == "self-check" && !b.active), "blocked, then enabled: {avery:?}");
}

#[test]
fn before_login_every_request_gets_its_refusal_and_three_bad_logins_close() {
    let s = start(vector_world, test_config());
    let mut k = s.kiosk();
    let r = k.ask(&format!("23001{D}AOMAIN|AA21234000012345|AC|AD4321|"));
    assert!(r.starts_with("24YYYY") && r.contains("|BLN|"), "{r}");
    assert!(!r.contains("Reader"), "no patron data before login: {r}");
    assert!(r.contains("AFPlease log in first"), "{r}");
    let r = k.ask(&format!("11YN{D}{BLANK_DATE}AOMAIN|AA21234000012345|AB31234000098765|AC|AD4321|"));
    assert!(r.starts_with("120"), "{r}");
    let r = k.ask("9900302.00");
    assert!(r.starts_with("98N"), "offline before login: {r}");
    let r = k.ask(&format!("37{D}0400USDBV2.00|AOMAIN|AA21234000099999|AC|"));
    assert!(r.starts_with("38N"), "{r}");
    // A corrupted login is a line error, not an attempt.
    assert_eq!(k.ask("9300CNkiosj1|COs3cret-kiosk|AY0AZF70E"), "96AZFEF6");
    assert_eq!(k.ask("9300CNkiosk1|COwrong|"), "940");
    assert_eq!(k.ask("9300CNkiosk1|COwrong|"), "940");
    assert_eq!(k.ask("9300CNkiosk1|COwrong|"), "940");
    assert!(k.closed(), "the third refused login closes the connection");

    // With sc_status_before_login a 99 is answered before login, and says only 93/97/99.
    let mut c = test_config();
    c.sc_status_before_login = true;
    let s = start(vector_world, c);
    let mut k = s.kiosk();
    let r = k.ask("9900302.00");
    assert!(r.starts_with("98Y") && r.contains("|BXNNNNYYYNNNNNNNNN|"), "{r}");
}

#[test]
fn checksums_resends_and_retransmissions() {
    let s = start(with_fee, test_config());
    let mut k = s.kiosk();
    assert_eq!(k.ask("97AZFEF5"), "96AZFEF6", "nothing sent yet");
    assert_eq!(k.ask(&sealed("9300CNkiosk1|COs3cret-kiosk|", 0)), sealed("941", 0));
    let status = sealed(&format!("23001{D}AOMAIN|AA21234000012345|AC|AD4321|"), 1);
    let r = k.ask(&status);
    assert!(r.starts_with("24") && r.contains("|AY1AZ"), "{r}");
    assert_eq!(k.ask("97AZFEF5"), r, "97 replays the last reply byte for byte");
    // One corrupted digit: 96, and nothing runs.
    let mut bad = status.clone();
    bad.pop();
    bad.push(if status.ends_with('0') { '1' } else { '0' });
    assert_eq!(k.ask(&bad), "96AZFEF6");
    // AZ without AY: processed, answered with AZ only.
    let body = format!("23001{D}AOMAIN|AA21234000012345|AC|AD4321|AZ");
    let r = k.ask(&format!("{body}{:04X}", sip2d::proto::checksum(body.as_bytes())));
    assert!(r.contains("|AZ") && !r.contains("AY"), "{r}");
    // Lower-case checksum digits are accepted.
    let frame = sealed(&format!("23001{D}AOMAIN|AA21234000012345|AC|AD4321|"), 2);
    let (head, sum) = frame.split_at(frame.len() - 4);
    let r = k.ask(&format!("{head}{}", sum.to_lowercase()));
    assert!(r.starts_with("24") && r.contains("|AY2AZ"), "{r}");

    // A retried payment is answered from the stored reply and not paid twice.
    let pay = sealed(&format!("37{D}0400USDBV2.00|AOMAIN|AA21234000099999|AC|AD1111|"), 3);
    let first = k.ask(&pay);
    assert!(first.starts_with("38Y"), "{first}");
    let again = k.ask(&pay);
    assert_eq!(again, first, "the same AY and AZ get the same bytes");
    // The same payment with the next sequence number is a new payment.
    let next = k.ask(&sealed(&format!("37{D}0400USDBV2.00|AOMAIN|AA21234000099999|AC|AD1111|"), 4));
    assert!(next.starts_with("38Y") && next != first, "{next}");
    drop(k);
    let (r, dir) = s.stop();
    r.unwrap();
    let engine = open(dir.path());
    let desk = Desk::new(&engine, "test");
    let blake = desk.find("MAIN", "21234000099999").unwrap();
    assert_eq!(desk.balance(blake.id).unwrap(), Money(100), "two payments of 2.00, not three");
}

#[test]
fn crlf_pipelining_profiles_and_encodings() {
    let s = start(
        |desk| {
            let now = jiff::Timestamp::now();
            vector_world(desk);
            desk.add_account("sorter", "sorter-password", "MAIN", None, now).unwrap();
            let sets = [
                ("messages", "09,17"),
                ("terminator", "crlf"),
                ("encoding", "cp850"),
                ("error-detection", "required"),
                ("language", "sv"),
            ];
            desk.set_account_profile("sorter", &sets, now).unwrap();
            let p = desk.find("MAIN", "21234000099999").unwrap();
            let sets =
                vec![("first-name".to_string(), "Jörg".to_string()), ("last-name".to_string(), "Müller".to_string())];
            desk.run(Operation::EditPatron { patron: p.id, sets, expect: None }, now).unwrap();
        },
        test_config(),
    );
    // Two frames in one write, CRLF-terminated: both answered, in order.
    let mut k = s.logged_in();
    k.send(format!("9900302.00\r\n23001{D}AOMAIN|AA21234000012345|AC|AD4321|\r\n").as_bytes());
    assert!(k.reply().unwrap().starts_with("98"));
    assert!(k.reply().unwrap().starts_with("24"));

    let mut k = s.kiosk();
    assert_eq!(k.ask(&sealed("9300CNsorter|COsorter-password|", 1)), sealed("941", 1));
    // Error detection required: a frame without a trailer is not served.
    k.send(b"9900302.00\r");
    assert_eq!(k.raw_reply().unwrap(), b"96AZFEF6\r\n", "CRLF on output for this terminal");
    k.send(format!("{}\r", sealed("9900302.00", 2)).as_bytes());
    let r = k.reply().unwrap();
    let bx = field(&r, "BX").unwrap();
    assert_eq!(bx, "NNYNYYYNNNYNNNNN", "09, 99, 97, 93 and 17 only");
    k.send(format!("{}\r", sealed(&format!("23001{D}AOMAIN|AA21234000012345|AC|AD4321|"), 3)).as_bytes());
    let raw = k.raw_reply().unwrap();
    assert!(raw.starts_with(b"24YYYY"), "{raw:?}");
    // In Swedish, and in CP850: å is 0x86, ö is 0x94.
    let swedish_cp850 = b"AFAutomaten f\x86r inte utf\x94ra detta.";
    assert!(raw.windows(swedish_cp850.len()).any(|w| w == swedish_cp850), "{}", String::from_utf8_lossy(&raw));
    // CP850 on the wire for this terminal.
    let r = k.ask(&sealed(&format!("17{D}AOMAIN|AB31234000098765|AC|"), 4));
    assert!(r.starts_with("18"), "{r}");
    drop(k);
    let mut k = s.kiosk();
    assert_eq!(k.ask("9300CNsorter|COsorter-password|"), "941");
    k.send(format!("{}\r", sealed(&format!("09N{D}{D}APX|AOMAIN|AB31234000098765|AC|"), 5)).as_bytes());
    let raw = k.raw_reply().unwrap();
    assert!(raw.starts_with(b"10"), "{raw:?}");
    drop(k);

    let mut k = s.logged_in();
    let r = k.ask(&format!("23001{D}AOMAIN|AA21234000099999|AC|AD1111|"));
    assert!(r.contains("AEMüller, Jörg"), "UTF-8 for kiosk1: {r}");
}

#[test]
fn a_no_block_due_date_out_of_bounds_is_replaced_by_the_policy() {
    let s = start(vector_world, test_config());
    let mut k = s.logged_in();
    let r = k.ask(&format!("11YY{D}20991231    235900AOMAIN|AA21234000012345|AB31234000098765|AC|AD4321|"));
    assert!(r.starts_with("121"), "{r}");
    let due = field(&r, "AH").unwrap();
    assert!(!due.starts_with("2099"), "a due date 73 years out is not taken: {r}");
    let soon = jiff::Zoned::now().date().saturating_add(jiff::Span::new().days(10));
    let nb = format!("{}    235900", soon.strftime("%Y%m%d"));
    let r = k.ask(&format!("11YY{D}{nb}AOMAIN|AA21234000012345|AB31234000011111|AC|AD4321|"));
    assert!(
        field(&r, "AH").unwrap().starts_with(&soon.strftime("%Y%m%d").to_string()),
        "within bounds it is kept: {r}"
    );
}

#[test]
fn a_terminal_that_sends_too_many_wrong_pins_is_held_back() {
    let mut c = test_config();
    c.limits.pin_failures_per_window = 3;
    let s = start(vector_world, c);
    let mut k = s.logged_in();
    for pin in ["0001", "0002", "0003"] {
        let r = k.ask(&format!("23001{D}AOMAIN|AA21234000099999|AC|AD{pin}|"));
        assert!(r.contains("|CQN|"), "{r}");
    }
    // The right PIN of another patron is not even tried now.
    let r = k.ask(&format!("23001{D}AOMAIN|AA21234000012345|AC|AD4321|"));
    assert!(r.contains("|CQN|") && r.contains("Too many wrong PINs"), "{r}");
    // A reconnect does not reset it: the budget is the terminal's.
    drop(k);
    let mut k = s.logged_in();
    let r = k.ask(&format!("23001{D}AOMAIN|AA21234000012345|AC|AD4321|"));
    assert!(r.contains("|CQN|"), "{r}");
}

#[test]
fn limits_oversize_frames_idle_and_login_timeouts_garbage_and_the_connection_cap() {
    let mut c = test_config();
    c.limits.idle_timeout = Duration::from_millis(400);
    c.limits.login_timeout = Duration::from_millis(400);
    c.limits.max_message_bytes = 1024;
    c.limits.max_connections = 3;
    let s = start(vector_world, c);

    // An oversize frame closes the connection without a reply.
    let mut k = s.logged_in();
    let mut big = format!("23001{D}AOMAIN|AA");
    big.push_str(&"7".repeat(5000));
    big.push_str("|AC|AD|\r");
    k.send(big.as_bytes());
    assert!(k.closed());

    // Idle after login, and silent without login: both closed.
    let mut k = s.logged_in();
    assert!(k.closed(), "idle timeout");
    let mut k = s.kiosk();
    k.send(b"9900302.00");
    assert!(k.closed(), "no login within the login timeout");

    // The idle clock starts again with every request: a kiosk that speaks more often than
    // the idle timeout stays, however long it stays; once silent it is closed within about
    // the timeout, although the login timeout (the first deadline set) is far longer.
    let mut c = test_config();
    c.limits.idle_timeout = Duration::from_millis(400);
    c.limits.login_timeout = Duration::from_secs(60);
    let s2 = start(vector_world, c);
    let mut k = s2.logged_in();
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(200));
        assert!(k.ask("9900302.00").starts_with("98"), "answered while active");
    }
    let silent = std::time::Instant::now();
    assert!(k.closed(), "idle timeout after activity");
    let took = silent.elapsed();
    assert!(took >= Duration::from_millis(350) && took < Duration::from_secs(5), "closed after {took:?}");
    drop(s2);

    // An unknown frame gets 96 (never silence); five in a row close, and a good frame in
    // between resets the count.
    let mut k = s.logged_in();
    for _ in 0..4 {
        assert_eq!(k.ask("XX garbage"), "96");
    }
    assert!(k.ask("9900302.00").starts_with("98"));
    for _ in 0..4 {
        assert_eq!(k.ask("XX garbage"), "96");
    }
    assert_eq!(k.ask("XX garbage"), "96", "the fifth in a row is answered too");
    assert!(k.closed(), "and then the connection is closed");

    // The cap: three open, a fourth is closed at once, and served again once one leaves.
    let held: Vec<Kiosk> = (0..3).map(|_| s.kiosk()).collect();
    let mut extra = s.kiosk();
    assert!(extra.closed(), "over the connection cap");
    drop(held);
    std::thread::sleep(Duration::from_millis(100));
    let mut k = s.logged_in();
    assert!(k.ask("9900302.00").starts_with("98"));
}

#[test]
fn a_slow_client_does_not_hold_up_others() {
    let s = start(vector_world, test_config());
    // One connection sends half a frame and stops.
    let mut slow = s.logged_in();
    slow.send(b"23001");
    let mut k = s.logged_in();
    for _ in 0..20 {
        assert!(k.ask(&format!("23001{D}AOMAIN|AA21234000012345|AC|AD4321|")).starts_with("24"));
    }
}

#[test]
fn shutdown_finishes_what_was_asked_and_flushes() {
    let s = start(vector_world, test_config());
    let mut k = s.logged_in();
    let r = k.ask(&format!("11YN{D}{BLANK_DATE}AOMAIN|AA21234000012345|AB31234000098765|AC|AD4321|"));
    assert!(r.starts_with("121"), "{r}");
    let addr = s.addr();
    let (result, dir) = s.stop();
    result.unwrap();
    assert!(k.closed(), "open connections are closed");
    assert!(std::net::TcpStream::connect(addr).is_err(), "no longer listening");
    let engine = open(dir.path());
    assert!(Desk::new(&engine, "test").loan("31234000098765").unwrap().is_some());
    // The same directory serves again.
    let s = start_in(dir, engine, test_config());
    let mut k = s.logged_in();
    let r = k.ask(&format!("17{D}AOMAIN|AB31234000098765|AC|"));
    assert!(r.starts_with("1804"), "{r}");
}

#[test]
fn one_address_cannot_take_every_connection() {
    let mut c = test_config();
    c.limits.max_connections_per_address = 2;
    let s = start(vector_world, c);
    let mut a = s.logged_in();
    let _b = s.logged_in();
    let mut third = s.kiosk();
    assert!(third.closed(), "a third connection from 127.0.0.1 is refused");
    assert!(a.ask("9900302.00").starts_with("98"), "the first two are unaffected");
}

#[test]
fn injected_faults_exercise_a_kiosks_retry_logic() {
    // Every 2nd reply's checksum corrupted: the kiosk's 97 gets the good bytes.
    let mut c = test_config();
    c.faults.corrupt_checksum_every = 2;
    let s = start(with_fee, c);
    let mut k = s.kiosk();
    assert_eq!(k.ask(&sealed("9300CNkiosk1|COs3cret-kiosk|", 0)), sealed("941", 0));
    let bad = k.ask(&sealed("9900302.00", 1));
    let d = sip2d::proto::decode(bad.as_bytes(), sip2d::proto::Encoding::Utf8);
    assert!(!d.trailer.is_valid(), "corrupted: {bad}");
    let good = k.ask("97AZFEF5");
    assert!(sip2d::proto::decode(good.as_bytes(), sip2d::proto::Encoding::Utf8).trailer.is_valid(), "{good}");
    assert_eq!(good.len(), bad.len());
    drop(k);
    drop(s);

    // Every 2nd request answered 96: the kiosk resends, gets the real reply, pays once.
    let mut c = test_config();
    c.faults.answer_96_every = 2;
    let s = start(with_fee, c);
    let mut k = s.kiosk();
    assert_eq!(k.ask(&sealed("9300CNkiosk1|COs3cret-kiosk|", 0)), sealed("941", 0));
    let pay = sealed(&format!("37{D}0400USDBV2.00|AOMAIN|AA21234000099999|AC|AD1111|"), 1);
    assert_eq!(k.ask(&pay), "96AZFEF6");
    assert!(k.ask(&pay).starts_with("38Y"), "the resend gets the stored reply");
    drop(k);
    let (r, dir) = s.stop();
    r.unwrap();
    let engine = open(dir.path());
    let desk = Desk::new(&engine, "test");
    let blake = desk.find("MAIN", "21234000099999").unwrap();
    assert_eq!(desk.balance(blake.id).unwrap(), Money(300), "paid once");

    // Every 2nd reply cut off halfway, then the connection closed.
    let mut c = test_config();
    c.faults.drop_mid_reply_every = 2;
    c.faults.delay = Duration::from_millis(50);
    let s = start(vector_world, c);
    let mut k = s.logged_in();
    k.send(b"9900302.00\r");
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut k.stream, &mut got).unwrap();
    assert!(got.starts_with(b"98") && !got.contains(&b'\r') && got.len() > 10, "half a reply, then a close: {got:?}");
    assert!(started.elapsed() >= Duration::from_millis(40), "the delay applies");
}

#[test]
fn metrics_health_and_readiness() {
    let mut c = test_config();
    c.ops_listen = Some("127.0.0.1:0".parse().unwrap());
    c.faults.delay = Duration::from_millis(800);
    let s = start(vector_world, c);
    let ops = s.ops.unwrap();
    assert_eq!(common::http_get(ops, "/health").0, 200);
    assert_eq!(common::http_get(ops, "/ready").0, 200);
    let mut k = s.logged_in();
    let r = k.ask(&format!("23001{D}AOMAIN|AA21234000012345|AC|AD9999|"));
    assert!(r.contains("|CQN|"), "{r}");
    k.send(b"XX\xff garbage that must not become a label\r");
    assert_eq!(k.reply().as_deref(), Some("96"));
    assert!(k.ask("9900302.00").starts_with("98"));
    let (status, m) = common::http_get(ops, "/metrics");
    assert_eq!(status, 200);
    for line in [
        r#"sip2d_requests_total{code="23",outcome="refused"} 1"#,
        r#"sip2d_requests_total{code="other",outcome="unknown-code"} 1"#,
        r#"sip2d_logins_total{outcome="accepted"} 1"#,
        "sip2d_connections 1",
        "sip2d_pin_failures_total 1",
        r#"sip2d_request_seconds_count{code="23"} 1"#,
    ] {
        assert!(m.lines().any(|l| l == line), "{line} missing from\n{m}");
    }
    assert!(m.contains("sip2d_bytes_in_total") && m.contains("sip2d_store_sync_seconds"), "{m}");
    assert!(!m.contains("garbage"), "labels stay bounded");
    // A request in flight (the delay fault holds its reply) keeps the server draining: not
    // ready, still healthy.
    k.send(format!("17{D}AOMAIN|AB31234000098765|AC|\r").as_bytes());
    std::thread::sleep(Duration::from_millis(100));
    s.shutdown.cancel();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(common::http_get(ops, "/ready").0, 503, "draining");
    assert_eq!(common::http_get(ops, "/health").0, 200);
    assert!(k.reply().unwrap().starts_with("18"), "the request in flight is answered");
}

#[test]
fn the_sample_configuration_is_valid_and_says_the_defaults() {
    let text = include_str!("../contrib/sip2d.toml");
    let sample: sip2d::net::Config = toml::from_str(text).unwrap();
    sample.check().unwrap();
    assert_eq!(sample, sip2d::net::Config::default(), "uncommented, the sample is the defaults");
    // Every commented setting, uncommented, is a known key with its default value.
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.contains(" = ") && !rest.starts_with("address") && !rest.starts_with("tls") => rest,
            Some(rest @ "[mail]") => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let full: sip2d::net::Config = toml::from_str(&uncommented).unwrap();
    let want = sip2d::net::Config {
        data: Some("/var/lib/sip2d".into()),
        ops_listen: Some("127.0.0.1:9101".parse().unwrap()),
        admin_listen: Some("127.0.0.1:9102".parse().unwrap()),
        mail: Some(sip2d::net::config::Mail {
            relay: "localhost:25".into(),
            from: "library@example.org".into(),
            interval: Duration::from_secs(30),
            self_service_url: Some("https://library.example.org".into()),
        }),
        store: sip2d::net::config::Store {
            url: Some(sip2d::net::config::DbUrl("host=db1 user=sip2d dbname=sip2d".into())),
            node: Some("sip2d-1".into()),
            ca_file: Some("/etc/sip2d/db-ca.pem".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    assert_eq!(full, want);
}

#[test]
fn a_reload_changes_new_connections_keeps_open_ones_and_refuses_a_bad_configuration() {
    let s = start(vector_world, test_config());
    let mut open = s.logged_in();
    // The configuration as given (port 0), as a SIGHUP re-reads it.
    let mut tighter = test_config();
    tighter.limits.max_connections_per_address = 1;
    s.handle.reload(&tighter).unwrap();
    let mut refused = s.kiosk();
    assert!(refused.closed(), "the new limit applies to new connections");
    assert!(open.ask("9900302.00").starts_with("98"), "the open connection keeps working");

    // Unusable configurations are refused and the one in force stays.
    let mut bad = tighter.clone();
    bad.limits.max_connections = 0;
    assert!(s.handle.reload(&bad).is_err());
    let mut moved = tighter.clone();
    moved.listen = vec![sip2d::net::Listener::plain("127.0.0.1:1".parse().unwrap())];
    let e = s.handle.reload(&moved).unwrap_err();
    assert!(e.to_string().contains("needs a restart"), "{e}");
    assert!(s.kiosk().closed(), "still one per address");
    assert!(open.ask("9900302.00").starts_with("98"));

    // Loosened again, a second connection is served.
    let mut loose = tighter.clone();
    loose.limits.max_connections_per_address = 8;
    s.handle.reload(&loose).unwrap();
    let mut second = s.logged_in();
    assert!(second.ask("9900302.00").starts_with("98"));
}

/// Issue 14, item 6: 01 sent over and over blocks the card once; the record and its history do
/// not grow with every request.
#[test]
fn a_repeated_block_patron_blocks_once_and_grows_nothing() {
    let s = start(vector_world, test_config());
    let mut k = s.logged_in();
    for i in 0..500 {
        let r = k.ask(&format!("01N{D}AOMAIN|ALCard left {i}|AA21234000012345|AC|"));
        assert!(r.starts_with("24YYYY"), "{r}");
    }
    let (_, dir) = s.stop();
    let engine = common::open(dir.path());
    let desk = Desk::new(&engine, "test");
    let avery = desk.find("MAIN", "21234000012345").unwrap();
    assert_eq!(avery.blocks.len(), 1, "one block, not one per request: {:?}", avery.blocks);
    let blocks = desk.history(avery.id).unwrap().into_iter().filter(|e| e.action == "block").count();
    assert_eq!(blocks, 1, "one history entry for the block");
}

/// Issue 14, item 6: holds a kiosk places stop at the register's cap, with a refusal the
/// patron can read.
#[test]
fn holds_beyond_the_cap_are_refused() {
    let mut config = test_config();
    config.register.max_holds_per_patron = 2;
    let dir = tempfile::tempdir().unwrap();
    let engine = sip2d::engine::open_or_create(dir.path(), &config.store_config()).unwrap();
    vector_world(&Desk::new(&engine, "test"));
    let s = start_in(dir, engine, config);
    let mut k = s.logged_in();
    let hold = |k: &mut Kiosk, item: &str| k.ask(&format!("15+{D}AOMAIN|AA21234000012345|AB{item}|AC|AD4321|"));
    assert!(hold(&mut k, "31234000098765").starts_with("161"));
    assert!(hold(&mut k, "31234000011111").starts_with("161"));
    let r = hold(&mut k, "31234000022222");
    assert!(r.starts_with("160"), "{r}");
    assert_eq!(field(&r, "AF"), Some("Hold refused: you have 2 holds, the most you may have."), "{r}");
}

/// Issue 15 (never silent): a connection whose first bytes are plainly not SIP (a TLS
/// handshake on the plain port, an HTTP request, telnet negotiation) is closed at once, not
/// left to the login timeout (a minute here); an unknown code before login gets 96.
#[test]
fn what_is_not_sip_is_closed_at_once_and_unknown_codes_get_96() {
    let mut config = test_config();
    config.limits.login_timeout = Duration::from_secs(60);
    let s = start(vector_world, config);
    for (what, bytes) in [
        ("a TLS ClientHello", &b"\x16\x03\x01\x00\xf5\x01\x00\x00\xf1\x03\x03"[..]),
        ("an HTTP request", &b"GET / HTTP/1.1\r\nHost: sip.example.org\r\n\r\n"[..]),
        ("telnet negotiation", &b"\xff\xfd\x18\xff\xfd\x20"[..]),
    ] {
        let mut k = s.kiosk();
        k.send(bytes);
        let t = std::time::Instant::now();
        assert!(k.closed(), "{what}: closed without a reply");
        assert!(t.elapsed() < Duration::from_secs(5), "{what}: closed at once, not by a timeout");
    }
    let mut k = s.kiosk();
    assert_eq!(k.ask("XX000120250114    093015AOMAIN|"), "96", "an unknown code before login");
    assert_eq!(k.ask("9300CNkiosk1|COs3cret-kiosk|"), "941", "and the connection goes on");
}

/// Issue 14, item 6, at once: eight kiosks place holds for one patron in the same instant,
/// 20 rounds, with a cap of three. Each round ends as some serial order would: exactly three
/// holds taken, the rest refused, never four.
#[test]
fn kiosks_racing_for_the_last_holds_never_pass_the_cap() {
    let mut config = test_config();
    config.register.max_holds_per_patron = 3;
    let dir = tempfile::tempdir().unwrap();
    let engine = sip2d::engine::open_or_create(dir.path(), &config.store_config()).unwrap();
    let items: Vec<String> = (0..8).map(|n| format!("3999000000000{n}")).collect();
    {
        let desk = Desk::new(&engine, "test");
        vector_world(&desk);
        for b in &items {
            let new = sip2d::engine::NewItem {
                barcode: b.clone(),
                institution: "MAIN".into(),
                title: b.clone(),
                media_type: 1,
                security_marker: 2,
                ..Default::default()
            };
            desk.add_item(new, jiff::Timestamp::now()).unwrap();
        }
    }
    let s = start_in(dir, engine, config);
    let mut kiosks: Vec<Kiosk> = (0..8).map(|_| s.logged_in()).collect();
    for round in 0..20 {
        let go = std::sync::Barrier::new(kiosks.len());
        let replies: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = kiosks
                .iter_mut()
                .zip(&items)
                .map(|(k, item)| {
                    let go = &go;
                    scope.spawn(move || {
                        go.wait();
                        k.ask(&format!("15+{D}AOMAIN|AA21234000012345|AB{item}|AC|AD4321|"))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let taken = replies.iter().filter(|r| r.starts_with("161")).count();
        assert_eq!(taken, 3, "round {round}: {replies:?}");
        assert!(replies.iter().all(|r| r.starts_with("161") || r.contains("you have 3 holds")), "{replies:?}");
        // Cancelled again for the next round.
        for (k, item) in kiosks.iter_mut().zip(&items) {
            k.ask(&format!("15-{D}AOMAIN|AA21234000012345|AB{item}|AC|AD4321|"));
        }
    }
}

/// Behind a load balancer: connections from the addresses a listener trusts start with a
/// PROXY header, and the kiosk's address it names is the one the per-address limit counts.
/// From any other address the header is never read, so no client can claim another address.
#[test]
fn a_proxy_header_names_the_kiosk_only_from_a_trusted_balancer() {
    let serve = |trusted: &str| {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("sip2d.toml");
        let text = format!(
            "[[listen]]\naddress = \"127.0.0.1:0\"\nproxy_from = [\"{trusted}\"]\n[limits]\nmax_connections_per_address = 1\n"
        );
        std::fs::write(&config, text).unwrap();
        let data = dir.path().join("demo");
        let (c, d) = (config.to_str().unwrap(), data.to_str().unwrap());
        let args = ["--config", c, "--data", d, "serve", "--demo"];
        let (child, stdout, sip) = common::spawn_sip2d(&args, "warn", std::process::Stdio::null(), "listening on ");
        std::thread::spawn(move || {
            use std::io::BufRead;
            for _ in stdout.lines() {}
        });
        (dir, child, sip)
    };
    // A connection that sends `bytes` then a login: the login's reply (after any refusal of
    // what came before it), or None when the server closed the connection unanswered.
    let logs_in = |sip: std::net::SocketAddr, bytes: &str| -> (Option<String>, std::net::TcpStream) {
        use std::io::{BufRead, BufReader, Write};
        let mut s = std::net::TcpStream::connect(sip).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(format!("{bytes}9300CNkiosk1|COkiosk1-secret|\r").as_bytes());
        let mut r = BufReader::new(s.try_clone().unwrap());
        for _ in 0..3 {
            let mut line = Vec::new();
            match r.read_until(b'\r', &mut line) {
                Ok(0) | Err(_) => return (None, s),
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line).trim().to_string();
                    if text.starts_with("94") {
                        return (Some(text), s);
                    }
                }
            }
        }
        (None, s)
    };

    // Trusted: two kiosks behind one balancer each get their own slot; a second connection of
    // one of them is over its limit of one.
    let (_dir, mut child, sip) = serve("127.0.0.1");
    let (a, _a) = logs_in(sip, "PROXY TCP4 192.0.2.7 127.0.0.1 5555 6001\r\n");
    assert_eq!(a.as_deref(), Some("941"));
    let (b, _b) = logs_in(sip, "PROXY TCP4 192.0.2.8 127.0.0.1 5556 6001\r\n");
    assert_eq!(b.as_deref(), Some("941"), "another kiosk behind the same balancer");
    let (again, _c) = logs_in(sip, "PROXY TCP4 192.0.2.7 127.0.0.1 5557 6001\r\n");
    assert_eq!(again, None, "192.0.2.7 has its one connection");
    // Without a header, a trusted balancer's connection is closed unserved.
    assert_eq!(logs_in(sip, "").0, None);
    let _ = child.kill();
    let _ = child.wait();

    // Not trusted: the header is just bytes, and the connections are 127.0.0.1's, one at a time.
    let (_dir, mut child, sip) = serve("192.0.2.1");
    let (a, _a) = logs_in(sip, "PROXY TCP4 192.0.2.7 127.0.0.1 5555 6001\r\n");
    assert_eq!(a.as_deref(), Some("941"), "served as 127.0.0.1");
    let (forged, _f) = logs_in(sip, "PROXY TCP4 192.0.2.9 127.0.0.1 5555 6001\r\n");
    assert_eq!(forged, None, "a claimed address does not get past 127.0.0.1's limit");
    let _ = child.kill();
    let _ = child.wait();
}
