//! Every line of `conformance/vectors/malformed.txt` sent to a live server: each gets the
//! answer its note asks for (a reply, silence, or a clean close), the server never falls
//! over, and a second connection is served normally after every case.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{Kiosk, Running, start, test_config, vector_world};
use sip2d::proto::escape;

enum Expect {
    /// This exact reply (terminator removed).
    Exact(&'static str),
    /// A reply starting so, containing each of these.
    Starts(&'static str, &'static [&'static str]),
    /// No reply, and the connection stays open.
    Silent,
    /// Closed without a reply.
    Closed,
}

use Expect::*;

/// The expected outcome of each request line, by its number among the file's non-comment
/// lines (1-based). Line 46 is the server's side of line 45.
fn expected(n: usize) -> Option<Expect> {
    Some(match n {
        1..=5 => Exact("96AZFEF6"),
        6 => Starts("24", &["|AZ"]),
        7 => Exact("941"),
        8 => Exact("96AZFEF6"),
        9 | 10 => Exact("96"),
        // A line too short for a code gets 96 (never silence); an empty or blank one, nothing.
        11 => Exact("96"),
        12 | 13 => Silent,
        14 => Starts("98", &[]),
        15 => Closed,
        16 => Starts("98", &["|AY1AZ"]),
        17 | 19 => Starts("24YYYY", &["|BLN|"]),
        18 => Exact("96AZFEF6"),
        20 => Closed,
        // A TLS hello mid-connection holds no CR: nothing to answer yet. An HTTP request line
        // and random bytes ending in CR are unknown frames: 96.
        21 => Silent,
        22 | 23 => Exact("96"),
        24 => Exact("96AZFEF6"),
        25 => Starts("24", &["|BLY|"]),
        // Unknown codes and responses sent to us: 96, sealed as they were; a 96 sent to us:
        // nothing, so two confused peers cannot bounce 96s.
        26..=28 => Exact("96AZFEF6"),
        29 => Silent,
        30 | 31 => Starts("12", &[]),
        32 => Starts("24", &["AOMAIN|", "|BLY|"]),
        33 => Starts("64YYYY", &["|BLN|"]),
        34 | 36 | 37 => Starts("", &["|BLY|CQY|"]),
        35 => Starts("24", &["|AA21234000012345|AEReader", "|BLY|", "|CQN|"]),
        // Fields delimited by '^': read leniently as the fields they are (docs/protocol.md).
        38 => Starts("24", &["|AA21234000012345|AEReader", "|BLY|CQY|"]),
        39 => Starts("24YYYY", &["|BLN|", "log in"]),
        40 => Exact("96AZFEF6"),
        41 | 42 => Starts("24", &["|BLY|CQY|"]),
        43 => Starts("160", &["AF"]),
        44 => Starts("120", &["AF"]),
        45 => Exact("940AY3AZFDFB"),
        _ => return None,
    })
}

fn lines() -> Vec<(String, Vec<u8>)> {
    let text = include_str!("../conformance/vectors/malformed.txt");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (wire, note) = l.split_once('\t').expect("wire<TAB>note");
            (note.to_string(), escape::unescape(wire).expect("valid escapes"))
        })
        .collect()
}

fn check(n: usize, note: &str, k: &mut Kiosk, expect: &Expect) {
    let at = format!("line {n} ({note})");
    match expect {
        Exact(want) => assert_eq!(k.reply().as_deref(), Some(*want), "{at}"),
        Starts(prefix, parts) => {
            let r = k.reply().unwrap_or_else(|| panic!("{at}: closed instead of answering"));
            assert!(r.starts_with(prefix), "{at}: {r}");
            for p in *parts {
                assert!(r.contains(p), "{at}: {r} lacks {p}");
            }
        }
        Silent => assert!(k.silent_for(Duration::from_millis(300)), "{at}: expected no reply"),
        Closed => assert!(k.closed(), "{at}: expected a close without reply"),
    }
}

fn witness_is_served(s: &Running, witness: &mut Kiosk, n: usize) {
    let r = witness.ask("2300120250114    093015AOMAIN|AA21234000012345|AC|AD4321|");
    assert!(r.contains("|BLY|CQY|"), "after line {n} a second connection is served normally: {r}");
    assert!(s.addrs.len() == 1);
}

#[test]
fn every_malformed_line_gets_the_answer_its_note_asks_for() {
    let mut config = test_config();
    config.limits.max_message_bytes = 8 * 1024;
    // The name shows even where the PIN is wrong (line 35 sends an empty one), so that a reply
    // tells which of two cards the server looked up.
    let world = |desk: &sip2d::engine::Desk<'_>| {
        vector_world(desk);
        desk.set_account_profile("kiosk1", &[("unverified-name", "yes")], jiff::Timestamp::now()).unwrap();
    };
    let s = start(world, config);
    let mut witness = s.logged_in();
    let all = lines();
    assert_eq!(all.len(), 46, "the vector file changed; review the expectations");
    let mut n = 0;
    while n < all.len() {
        n += 1;
        let (note, wire) = &all[n - 1];
        let Some(expect) = expected(n) else { continue };
        match n {
            // The line is the first message of a connection that has not logged in.
            39 => {
                let mut k = s.kiosk();
                k.send(wire);
                check(n, note, &mut k, &expect);
            }
            // No terminator, then the peer stops sending: the partial frame is dropped.
            15 => {
                let mut k = s.logged_in();
                k.send(wire);
                k.stream.shutdown(std::net::Shutdown::Write).unwrap();
                check(n, note, &mut k, &expect);
            }
            // A CR inside a value: a 23 served, then the rest an unknown frame, answered 96.
            25 => {
                let mut k = s.logged_in();
                k.send(wire);
                check(n, note, &mut k, &expect);
                check(n, note, &mut k, &Exact("96"));
            }
            // A pair on one connection: the second is not a duplicate of the first.
            41 => {
                let mut k = s.logged_in();
                k.send(wire);
                check(n, note, &mut k, &expect);
                let (note2, wire2) = &all[n];
                n += 1;
                k.send(wire2);
                check(n, note2, &mut k, &expected(n).expect("42"));
            }
            // After two refused logins this third one is refused (940, line 46) and the
            // connection closed: a fourth attempt never gets a hearing.
            45 => {
                let mut k = s.kiosk();
                assert_eq!(k.ask("9300CNkiosk1|COwrong-password|"), "940");
                assert_eq!(k.ask("9300CNkiosk1|COwrong-password|"), "940");
                k.send(wire);
                check(n, note, &mut k, &expect);
                check(n, note, &mut k, &Closed);
            }
            _ => {
                let mut k = s.logged_in();
                // Some lines are sent by a closing peer: the write may meet a reset.
                let _ = k.stream.write_all(wire);
                check(n, note, &mut k, &expect);
            }
        }
        witness_is_served(&s, &mut witness, n);
    }
    let (result, _) = s.stop();
    result.expect("the server stopped cleanly after every malformed line");
}
