//! Issue 15 over real sockets: what real kiosks send is answered as they mean it, counted by
//! deviation, and refused with 96 where a listener or profile is strict.

mod common;

use common::{Kiosk, http_get, start, test_config, vector_world};
use sip2d::net::ListenerStrictness;

const AVERY: &str = "21234000012345";

fn field<'a>(reply: &'a str, id: &str) -> Option<&'a str> {
    reply.split('|').skip(1).find_map(|f| f.strip_prefix(id))
}

fn metric(ops: std::net::SocketAddr, line: &str) -> u64 {
    let (status, body) = http_get(ops, "/metrics");
    assert_eq!(status, 200);
    body.lines().find_map(|l| l.strip_prefix(line).and_then(|v| v.trim().parse().ok())).unwrap_or(0)
}

#[test]
fn what_real_kiosks_send_is_answered_as_meant_and_counted() {
    let mut config = test_config();
    config.ops_listen = Some("127.0.0.1:0".parse().unwrap());
    let server = start(vector_world, config);
    let ops = server.ops.unwrap();
    let mut k = server.logged_in();

    // Language as letters: a 24 for Avery, right PIN, the language echoed as its SIP code.
    let r = k.ask(&format!("23eng20250114    093015AOMAIN|AA{AVERY}|AC|AD4321|"));
    assert!(r.starts_with("24"), "{r}");
    assert_eq!(r.get(16..19), Some("001"), "{r}");
    assert_eq!((field(&r, "BL"), field(&r, "CQ")), (Some("Y"), Some("Y")), "{r}");

    // A blank language and a zoneless date in a 63: read where the spec puts the fields.
    let r = k.ask(&format!("63   20250114093015          AOMAIN|AA{AVERY}|AC|AD4321|"));
    assert!(r.starts_with("64"), "{r}");
    assert_eq!(field(&r, "AE"), Some("Reader, Avery"), "{r}");

    // A short SC status gets the 98.
    let r = k.ask("990302.00");
    assert!(r.starts_with("98"), "{r}");

    // A hold whose expiry is a day: the 16, and the hold is placed.
    let r = k.ask(&format!("15+20250114    093015BW20261231|AOMAIN|AA{AVERY}|AB31234000011111|AC|AD4321|"));
    assert!(r.starts_with("16"), "{r}");

    // An unknown code: 96, and the connection still serves.
    assert_eq!(k.ask("42foo|"), "96");
    assert!(k.ask(&format!("23001{}AOMAIN|AA{AVERY}|AC|AD4321|", "20250114    093015")).starts_with("24"));

    let counted = |kind: &str| metric(ops, &format!("sip2d_deviations_total{{kind=\"{kind}\"}}"));
    assert_eq!(counted("language-letters"), 1);
    assert_eq!(counted("language-blank"), 1);
    assert_eq!(counted("date-without-zone"), 1);
    assert_eq!(counted("sc-status-short-width"), 1);
    assert_eq!(counted("date-only"), 1);
}

#[test]
fn a_strict_profile_answers_96_where_a_lenient_one_serves() {
    let server = start(
        |desk| {
            vector_world(desk);
            let now = jiff::Timestamp::now();
            desk.add_account("strict1", "s3cret-strict", "MAIN", None, now).unwrap();
            desk.set_account_profile("strict1", &[("strictness", "strict")], now).unwrap();
        },
        test_config(),
    );
    let deviant = [
        format!("23eng20250114    093015AOMAIN|AA{AVERY}|AC|AD4321|"),
        "990302.00".to_string(),
        format!("15+20250114    093015BW20261231|AOMAIN|AA{AVERY}|AB31234000011111|AC|AD4321|"),
        format!("2300120250114093015AOMAIN|AA{AVERY}|AC|AD4321|"),
        format!("23001YYYYMMDDZZZZHHMMSSAOMAIN|AA{AVERY}|AC|AD4321|"),
    ];
    let mut lenient = server.logged_in();
    let mut strict = server.kiosk();
    assert_eq!(strict.ask("9300CNstrict1|COs3cret-strict|"), "941");
    let plain = format!("2300120250114    093015AOMAIN|AA{AVERY}|AC|AD4321|");
    for frame in &deviant {
        assert!(!lenient.ask(frame).starts_with("96"), "lenient: {frame}");
        assert_eq!(strict.ask(frame), "96", "strict: {frame}");
        // (Refusals in a row close the connection; a plain request in between keeps it.)
        assert!(strict.ask(&plain).starts_with("24"));
    }
    // The same messages as the spec writes them are served on the strict connection.
    for frame in [
        format!("2300120250114    093015AOMAIN|AA{AVERY}|AC|AD4321|"),
        "9900302.00".to_string(),
        format!("15-20250114    093015BW20261231    235959|AOMAIN|AA{AVERY}|AB31234000011111|AC|AD4321|"),
    ] {
        let r = strict.ask(&frame);
        assert!(!r.starts_with("96"), "strict, canonical: {frame} -> {r}");
    }
}

#[test]
fn a_strict_listener_refuses_a_deviant_login_and_a_lenient_one_takes_it() {
    let mut config = test_config();
    let mut strict = config.listen[0].clone();
    strict.strictness = ListenerStrictness::Strict;
    config.listen.push(strict);
    let server = start(vector_world, config);
    let (lenient_addr, strict_addr) = (server.addrs[0].0, server.addrs[1].0);
    // Some kiosks leave out the two algorithm digits of the 93.
    let login = "93CNkiosk1|COs3cret-kiosk|";
    assert_eq!(Kiosk::connect(lenient_addr).ask(login), "941");
    let mut k = Kiosk::connect(strict_addr);
    assert_eq!(k.ask("9300CNkiosk1|COs3cret-kiosk|"), "941");
    let mut k = Kiosk::connect(strict_addr);
    assert_eq!(k.ask(login), "96");
    // The strict listener takes the login as the spec writes it; then the profile (lenient
    // by default) decides.
    assert_eq!(k.ask("9300CNkiosk1|COs3cret-kiosk|"), "941");
    assert!(k.ask(&format!("23eng20250114    093015AOMAIN|AA{AVERY}|AC|AD4321|")).starts_with("24"));
}

/// A fee imported with the id it had in the previous system is paid by a 37 naming that id;
/// an id the register does not know pays nothing and says why.
#[test]
fn a_fee_id_from_the_previous_system_pays_that_fee() {
    use sip2d::domain::{FeeKind, FeeStatus, Money};
    use sip2d::engine::{By, ImportOptions, exchange};

    let dir = tempfile::tempdir().unwrap();
    let engine = common::open(dir.path());
    let now = jiff::Timestamp::now();
    let desk = sip2d::engine::Desk::new(&engine, "test");
    vector_world(&desk);
    // Avery owes 2.00 in a fee made here, and 3.00 in one the old system called FINE-9911.
    let here = desk.add_fee(1, FeeKind::Overdue, Money(200), now).unwrap();
    let line = format!(
        r#"{{"type":"fee","id":9001,"patron":{},"kind":"overdue","amount":"3.00","paid":"0.00","currency":"USD","comment":null,"status":"active","created":"2026-11-01T10:00:00Z","previous_id":"FINE-9911"}}"#,
        here.patron
    );
    let by = By::new("import", now);
    let report = exchange::import(&engine, std::io::Cursor::new(line.clone()), &ImportOptions::default(), &by).unwrap();
    assert_eq!(report.rejected.len(), 0, "{report:?}");
    // The same previous id on a second fee of the patron is refused.
    let twin = line.replace("9001", "9002");
    let report = exchange::import(&engine, std::io::Cursor::new(twin), &ImportOptions::default(), &by).unwrap();
    assert_eq!(report.rejected.len(), 1, "{report:?}");
    let server = common::start_in(dir, engine, test_config());
    let mut k = server.logged_in();

    let pay = |k: &mut Kiosk, cg: &str, amount: &str| {
        k.ask(&format!("3720250114    0930150100USDAOMAIN|AA{AVERY}|AC|AD4321|BV{amount}|CG{cg}|"))
    };
    let r = pay(&mut k, "NOPE-1", "3.00");
    assert!(r.starts_with("38N"), "{r}");
    assert_eq!(field(&r, "AF"), Some("There is no fee 'NOPE-1'."), "{r}");
    let r = pay(&mut k, "FINE-9911", "3.00");
    assert!(r.starts_with("38Y"), "{r}");
    server.engine_desk(|desk| {
        let (fees, _) = desk.fees(here.patron).unwrap();
        let old = fees.iter().find(|f| f.id == 9001).unwrap();
        assert_eq!(old.status, FeeStatus::Paid, "{old:?}");
        let new = fees.iter().find(|f| f.id == here.id).unwrap();
        assert_eq!(new.paid, Money(0), "the other fee is untouched: {new:?}");
    });
    // Paid already: a second payment naming it is refused, with the reason.
    let r = pay(&mut k, "FINE-9911", "1.00");
    assert!(r.starts_with("38N") && field(&r, "AF").is_some(), "{r}");
}

/// Reads from `s` until `want` has arrived (or a second has passed).
fn expect_text(s: &mut std::net::TcpStream, want: &str) {
    use std::io::Read;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&got).ends_with(want) {
        match s.read(&mut byte) {
            Ok(1) => got.push(byte[0]),
            other => panic!("waiting for {want:?}, got {:?} then {other:?}", String::from_utf8_lossy(&got)),
        }
    }
}

#[test]
fn telnet_login_on_a_listener_that_enables_it_then_sip() {
    use std::io::Write;
    let mut config = test_config();
    let mut telnet = config.listen[0].clone();
    telnet.telnet_login = true;
    config.listen.push(telnet);
    let server = start(vector_world, config);
    let (plain, telnet) = (server.addrs[0].0, server.addrs[1].0);

    let mut s = std::net::TcpStream::connect(telnet).unwrap();
    // A telnet client negotiates first; a wrong password is refused and asked again.
    s.write_all(b"\xFF\xFD\x03\xFF\xFB\x18").unwrap();
    expect_text(&mut s, "login: ");
    s.write_all(b"kiosk1\r\n").unwrap();
    expect_text(&mut s, "password: ");
    s.write_all(b"wrong\r\0").unwrap();
    expect_text(&mut s, "Invalid login\r\n");
    expect_text(&mut s, "login: ");
    s.write_all(b"kiosk1\r\n").unwrap();
    expect_text(&mut s, "password: ");
    s.write_all(b"s3cret-kiosk\r\n").unwrap();
    expect_text(&mut s, "Login OK. Initiating SIP\r\n");
    let mut k = Kiosk::from_stream(s);
    let r = k.ask(&format!("2300120250114    093015AOMAIN|AA{AVERY}|AC|AD4321|"));
    assert!(r.starts_with("24") && r.contains("|BLY|CQY|"), "{r}");

    // The same credentials typed at a listener without telnet login: its first bytes are
    // telnet negotiation, which is not SIP, and the connection is closed at once.
    let mut k = Kiosk::connect(plain);
    k.send(b"\xFF\xFD\x03");
    assert!(k.closed());
    // And the prompts never go out where telnet login is off.
    let mut k = Kiosk::connect(plain);
    assert!(k.silent_for(std::time::Duration::from_millis(200)));
}

#[test]
fn telnet_login_gives_up_after_the_login_attempts() {
    use std::io::Write;
    let mut config = test_config();
    config.listen[0].telnet_login = true;
    config.limits.max_login_attempts = 2;
    let server = start(vector_world, config);
    let mut s = std::net::TcpStream::connect(server.addr()).unwrap();
    for _ in 0..2 {
        expect_text(&mut s, "login: ");
        s.write_all(b"kiosk1\n").unwrap();
        expect_text(&mut s, "password: ");
        s.write_all(b"nope\n").unwrap();
        expect_text(&mut s, "Invalid login\r\n");
    }
    let mut k = Kiosk::from_stream(s);
    assert!(k.closed(), "closed after two refusals");
}

#[test]
fn an_unknown_code_gets_96_or_where_the_profile_asks_the_nearest_refusal() {
    use sip2d::service::nearest_request;
    assert_eq!(nearest_request(*b"39"), Some(*b"37"));
    assert_eq!(nearest_request(*b"02"), Some(*b"01"));
    assert_eq!(nearest_request(*b"50"), Some(*b"37"), "a tie goes to the lower code");
    assert_eq!(nearest_request(*b"XY"), None);

    let server = start(
        |desk| {
            vector_world(desk);
            let now = jiff::Timestamp::now();
            desk.add_account("old1", "s3cret-old", "MAIN", None, now).unwrap();
            desk.set_account_profile("old1", &[("unknown-code", "nearest-refusal")], now).unwrap();
        },
        test_config(),
    );
    assert_eq!(server.logged_in().ask("3920250114    093015AOMAIN|"), "96");
    let mut k = server.kiosk();
    assert_eq!(k.ask("9300CNold1|COs3cret-old|"), "941");
    let r = k.ask("3920250114    093015AOMAIN|");
    assert!(r.starts_with("38N"), "{r}");
    assert_eq!(field(&r, "AF"), Some("This message is not served here."), "{r}");
    // Sealed, the refusal echoes the sequence number, as every reply but a 96 does.
    let r = k.ask(&common::sealed("3920250114    093015AOMAIN|", 4));
    assert!(r.starts_with("38N") && r.contains("|AY4AZ"), "{r}");
    // And the connection serves on.
    assert!(k.ask(&format!("2300120250114    093015AOMAIN|AA{AVERY}|AC|AD4321|")).starts_with("24"));
}
