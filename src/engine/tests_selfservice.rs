//! Set-PIN links (issue 17), at fixed instants: made with the welcome, good once and for
//! `pin_link_hours`, made void by a newer welcome; the PIN chosen is held to the policy and
//! the guessable-PIN rule; two uses at once end as one.

use jiff::civil::date;
use jiff::{SignedDuration, Timestamp};

use super::testkit::{Added, Reg as Register};
use super::*;
use crate::domain::rules::PinCheck;
use crate::domain::*;

fn now() -> Timestamp {
    "2026-11-22T10:00:00Z".parse().unwrap()
}

fn open() -> (tempfile::TempDir, Register, Patron) {
    let dir = tempfile::tempdir().unwrap();
    let reg = Register::open(dir.path(), "tester").unwrap();
    reg.add_institution("MAIN", "Main Library", "SEK", "Europe/Stockholm").unwrap();
    let new = NewPatron {
        institution: "MAIN".into(),
        primary_id: "P1".into(),
        first_name: "Avery".into(),
        last_name: "Reader".into(),
        birth_date: Some(date(1990, 5, 17)),
        email: Some("avery@example.org".into()),
        ..Default::default()
    };
    let Added::Patron(p) = reg.add_patron(new, false, now()).unwrap() else { panic!("duplicate") };
    (dir, reg, *p)
}

/// The token of the newest welcome's link, as the mailer makes it from the marker.
fn token(reg: &Register) -> String {
    let welcome = reg.store.notices().unwrap().into_iter().rev().find(|n| n.kind == NoticeKind::Welcome).unwrap();
    let at = welcome.body.find(LINK_MARKER).unwrap_or_else(|| panic!("no link: {}", welcome.body));
    let serial = welcome.body[at + LINK_MARKER.len()..].split('}').next().unwrap().parse().unwrap();
    reg.engine.link_token(serial).unwrap()
}

fn redeem(reg: &Register, token: &str, pin: &str, at: Timestamp) -> Result<Patron, Error> {
    reg.run(Operation::RedeemPinLink { token: Pin(token.into()), pin: Pin(pin.into()) }, at)?.patron()
}

fn refusal(e: Error) -> Refusal {
    match e {
        Error::Refused(r) => r,
        other => panic!("{other}"),
    }
}

#[test]
fn the_welcome_link_sets_a_pin_once_and_is_kept_only_as_a_digest() {
    let (dir, reg, p) = open();
    let t = token(&reg);
    assert_eq!(t.len(), 64, "256 bits");
    // Nothing on disk holds the token: not the store, the log or the outbox's welcome.
    drop(reg);
    let mut files = vec![dir.path().to_path_buf()];
    let mut read = 0;
    while let Some(f) = files.pop() {
        if f.is_dir() {
            files.extend(std::fs::read_dir(&f).unwrap().map(|e| e.unwrap().path()));
        } else {
            let bytes = std::fs::read(&f).unwrap();
            assert!(!bytes.windows(t.len()).any(|w| w == t.as_bytes()), "the token is in {}", f.display());
            read += bytes.len();
        }
    }
    assert!(read > 0);
    let reg = Register::open(dir.path(), "tester").unwrap();

    // Guessable PINs and the policy are refused, and the link stays good.
    for pin in ["1234", "0000", "1990", "0517", "12"] {
        let e = refusal(redeem(&reg, &t, pin, now()).unwrap_err());
        assert!(matches!(e, Refusal::Invalid(_)), "{pin}: {e:?}");
    }
    let done = redeem(&reg, &t, "4821", now()).unwrap();
    assert!(done.pin.is_some());
    assert_eq!(reg.check_pin(p.id, "4821", now()).unwrap(), PinCheck::Accepted);
    // Used: it is gone.
    let e = refusal(redeem(&reg, &t, "5930", now()).unwrap_err());
    assert_eq!(e, Refusal::LinkUnusable { expired: false });
    assert_eq!(reg.check_pin(p.id, "4821", now()).unwrap(), PinCheck::Accepted, "the PIN stands");
    let history = reg.history(p.id).unwrap();
    assert!(history.iter().any(|e| e.action == "pin-by-link"), "{history:?}");
}

#[test]
fn a_link_expires_and_a_newer_welcome_voids_the_older_link() {
    let (_d, reg, p) = open();
    let first = token(&reg);
    reg.run(Operation::Invite { patron: p.id }, now()).unwrap();
    let second = token(&reg);
    assert_ne!(first, second);
    assert_eq!(refusal(redeem(&reg, &first, "4821", now()).unwrap_err()), Refusal::LinkUnusable { expired: false });
    // 72 hours by default: good just before, expired at the end.
    let later = |h: i64| now().checked_add(SignedDuration::from_hours(h)).unwrap();
    reg.run(Operation::Invite { patron: p.id }, now()).unwrap();
    let third = token(&reg);
    assert_eq!(refusal(redeem(&reg, &third, "4821", later(72)).unwrap_err()), Refusal::LinkUnusable { expired: true });
    redeem(&reg, &third, "4821", later(71)).unwrap();
    // A patron with a PIN gets a welcome without a link.
    reg.run(Operation::Invite { patron: p.id }, now()).unwrap();
    let welcome = reg.store.notices().unwrap().into_iter().next_back().unwrap();
    assert!(!welcome.body.contains("/pin/"), "{}", welcome.body);
}

/// Two people use one link at once (the patron on two tabs, say): one PIN is set, the other
/// told the link is used; the PIN that works is the one that was acknowledged.
#[test]
fn one_link_used_twice_at_once_sets_one_pin() {
    for round in 0..10 {
        let (_d, reg, p) = open();
        let t = token(&reg);
        let (a, b) = std::thread::scope(|s| {
            let use_it = |pin: &'static str| {
                let (reg, t) = (reg.clone(), t.clone());
                s.spawn(move || redeem(&reg, &t, pin, now()).is_ok())
            };
            let (a, b) = (use_it("4821"), use_it("5930"));
            (a.join().unwrap(), b.join().unwrap())
        });
        assert!(a ^ b, "round {round}: exactly one use succeeds");
        let (won, lost) = if a { ("4821", "5930") } else { ("5930", "4821") };
        assert_eq!(reg.check_pin(p.id, won, now()).unwrap(), PinCheck::Accepted, "round {round}");
        assert!(matches!(reg.check_pin(p.id, lost, now()).unwrap(), PinCheck::Wrong { .. }), "round {round}");
    }
}
