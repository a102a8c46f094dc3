//! Set-PIN links (issue 17), at fixed instants: made with the welcome, good once and for
//! `pin_link_hours`, made void by a newer welcome; the PIN chosen is held to the policy and
//! the guessable-PIN rule; two uses at once end as one.

use jiff::civil::date;
use jiff::{SignedDuration, Timestamp};

use super::testkit::{Added, Reg as Register, Scratch};
use super::*;
use crate::domain::rules::PinCheck;
use crate::domain::*;

fn now() -> Timestamp {
    "2026-11-22T10:00:00Z".parse().unwrap()
}

fn open() -> (Scratch, Register, Patron) {
    let dir = Scratch::new();
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

// -- the patron's own pages ---------------------------------------------------------------

fn kiosk() -> Kiosk {
    super::testkit::kiosk("kiosk1")
}

fn login(reg: &Register, card: &str, pin: &str) -> Result<Patron, Refusal> {
    let op = Operation::PatronLogin { institution: "MAIN".into(), card: card.into(), pin: Pin(pin.into()) };
    match reg.run(op, now()) {
        Ok(Receipt::Patron(p)) => Ok(*p),
        Err(e) => Err(refusal(e)),
        Ok(other) => panic!("{other:?}"),
    }
}

/// What a kiosk's 23 with this PIN says of it.
fn kiosk_pin(reg: &Register, card: &str, pin: &str) -> PinVerdict {
    let op = Operation::KioskPatron { at: kiosk(), card: card.into(), pin: Some(Pin(pin.into())), detail: false };
    match reg.run(op, now()).unwrap() {
        Receipt::KioskPatron(Ok(k), _) => k.pin,
        other => panic!("{other:?}"),
    }
}

fn own(reg: &Register, p: &Patron, act: OwnAct, at: Timestamp) -> Result<Receipt, Error> {
    let session = pin_session_tag(p).expect("logged in with a PIN");
    reg.run(Operation::AsPatron { patron: p.id, session, act }, at)
}

/// One counter of wrong PINs, kiosks' and the pages' alike: four at a kiosk and one on the
/// pages lock the card, and five on the pages lock it for kiosks.
#[test]
fn wrong_pins_on_the_pages_and_at_kiosks_count_toward_one_lockout() {
    let (_d, reg, p) = open();
    reg.set_pin(p.id, "4821", now()).unwrap();
    assert_eq!(login(&reg, "P1", "4821").unwrap().id, p.id);
    assert_eq!(login(&reg, "nobody", "4821").unwrap_err(), Refusal::UnknownCard);
    for _ in 0..4 {
        assert_eq!(kiosk_pin(&reg, "P1", "1111"), PinVerdict::Wrong);
    }
    assert_eq!(login(&reg, "P1", "1111").unwrap_err(), Refusal::LockedOut);
    assert_eq!(login(&reg, "P1", "4821").unwrap_err(), Refusal::LockedOut, "locked: even the right PIN");

    reg.unlock(p.id, now()).unwrap();
    for remaining in (1..5).rev() {
        assert_eq!(login(&reg, "P1", "1111").unwrap_err(), Refusal::WrongPin { remaining });
    }
    assert_eq!(login(&reg, "P1", "1111").unwrap_err(), Refusal::LockedOut);
    assert_eq!(kiosk_pin(&reg, "P1", "4821"), PinVerdict::Locked);
    assert!(reg.history(p.id).unwrap().iter().any(|h| h.action == "locked"));
}

fn resets(reg: &Register) -> Vec<Notice> {
    reg.store.notices().unwrap().into_iter().filter(|n| n.kind == NoticeKind::PinReset).collect()
}

/// "Forgot PIN" mails a link to the patron a card or an e-mail address names, at most once a
/// quarter of an hour, and says nothing of whether it found anyone.
#[test]
fn forgot_pin_sends_a_link_to_a_known_card_or_address_at_most_once_a_quarter_hour() {
    let (_d, reg, p) = open();
    let forgot = |given: &str, at: Timestamp| {
        let op = Operation::ForgotPin { institution: "MAIN".into(), given: given.into() };
        assert!(matches!(reg.run(op, at).unwrap(), Receipt::Done), "{given}");
    };
    let welcome_token = token(&reg);
    forgot("nobody", now());
    forgot("someone@example.org", now());
    assert!(resets(&reg).is_empty());
    // The welcome's link went out just now: within the quarter hour, nothing more is sent.
    forgot("P1", now());
    assert!(resets(&reg).is_empty());
    let later = now() + SignedDuration::from_mins(16);
    forgot(" P1 ", later);
    let sent = resets(&reg);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to.as_deref(), Some("avery@example.org"));
    assert!(sent[0].body.contains(LINK_MARKER), "{}", sent[0].body);
    forgot("avery@example.org", later + SignedDuration::from_mins(5));
    assert_eq!(resets(&reg).len(), 1, "throttled per account");
    forgot("avery@example.org", later + SignedDuration::from_mins(16));
    assert_eq!(resets(&reg).len(), 2, "by e-mail address, once the quarter hour is over");
    // The newest link works, and clears a lockout; the earlier ones are void.
    let n = resets(&reg).pop().unwrap();
    let at = n.body.find(LINK_MARKER).unwrap();
    let serial = n.body[at + LINK_MARKER.len()..].split('}').next().unwrap().parse().unwrap();
    let t = reg.engine.link_token(serial).unwrap();
    assert_eq!(
        refusal(redeem(&reg, &welcome_token, "4821", later).unwrap_err()),
        Refusal::LinkUnusable { expired: false }
    );
    for _ in 0..5 {
        login(&reg, "P1", "1111").unwrap_err();
    }
    let after = redeem(&reg, &t, "4821", later + SignedDuration::from_mins(20)).unwrap();
    assert!(!after.locked && after.failed_pins == 0);
    assert_eq!(login(&reg, "P1", "4821").unwrap().id, p.id);
    // A reset is not a notice to opt out of.
    let e = refusal(
        reg.run(Operation::SetOptout { patron: p.id, kind: NoticeKind::PinReset, out: true }, now()).unwrap_err(),
    );
    assert!(matches!(e, Refusal::Invalid(validate::Invalid::NotOptional(_))), "{e:?}");
}

/// On their pages a patron acts on their own loans and requests only, by the rules kiosks and
/// staff use; a PIN set since they logged in, or a lockout, ends what they can do.
#[test]
fn a_patron_acts_on_their_own_loans_and_requests_only() {
    let (_d, reg, p) = open();
    reg.set_pin(p.id, "4821", now()).unwrap();
    let me = login(&reg, "P1", "4821").unwrap();
    let other = NewPatron { primary_id: "P2".into(), first_name: "Blake".into(), email: None, ..avery_like() };
    let Added::Patron(other) = reg.add_patron(other, true, now()).unwrap() else { panic!() };
    for b in ["I1", "I2", "I3"] {
        reg.add_item(NewItem {
            barcode: b.into(),
            institution: "MAIN".into(),
            title: "Dune".into(),
            ..Default::default()
        })
        .unwrap();
    }
    let mine = reg.checkout(p.id, "I1", false, now()).unwrap();
    reg.checkout(other.id, "I2", false, now()).unwrap();
    let day = now() + SignedDuration::from_hours(24);
    let renewed = own(&reg, &me, OwnAct::Renew { item: "I1".into() }, day).unwrap();
    let Receipt::Loan(renewed) = renewed else { panic!("{renewed:?}") };
    assert!(renewed.due > mine.due, "{renewed:?}");
    let e = refusal(own(&reg, &me, OwnAct::Renew { item: "I2".into() }, day).unwrap_err());
    assert_eq!(e, Refusal::NotOnLoanToPatron);

    let theirs = reg.place_hold(other.id, HoldTarget::Item("I1".into()), "MAIN", None, now()).unwrap();
    let e = refusal(own(&reg, &me, OwnAct::CancelHold { hold: theirs.id }, day).unwrap_err());
    assert_eq!(e, Refusal::NoHold(theirs.id));
    assert_eq!(reg.desk().holds_of(other.id).unwrap().len(), 1, "another's request stands");
    let held = reg.place_hold(p.id, HoldTarget::Item("I3".into()), "MAIN", None, now()).unwrap();
    own(&reg, &me, OwnAct::CancelHold { hold: held.id }, day).unwrap();
    assert!(reg.desk().holds_of(p.id).unwrap().is_empty());

    let out = own(&reg, &me, OwnAct::OptOut { kinds: vec![NoticeKind::Report], out: true }, day).unwrap();
    assert!(matches!(out, Receipt::Optouts(k) if k == vec![NoticeKind::Report]));
    let moves = vec![NoticeKind::TransferRequested, NoticeKind::TransferAccepted, NoticeKind::TransferDeclined];
    let Receipt::Optouts(k) = own(&reg, &me, OwnAct::OptOut { kinds: moves.clone(), out: true }, day).unwrap() else {
        panic!()
    };
    assert_eq!(k.len(), 4, "{k:?}");
    let Receipt::Optouts(k) = own(&reg, &me, OwnAct::OptOut { kinds: moves, out: false }, day).unwrap() else {
        panic!()
    };
    assert_eq!(k, vec![NoticeKind::Report]);
    let contact =
        OwnAct::Contact { phone: "+46 8 123 45".into(), address: "Storgatan 1".into(), postal_code: "111 22".into() };
    let Receipt::Patron(changed) = own(&reg, &me, contact, day).unwrap() else { panic!() };
    assert_eq!(changed.phone.as_deref(), Some("+46 8 123 45"));
    reg.add_institution("BRANCH", "Branch Library", "SEK", "Europe/Stockholm").unwrap();
    let Receipt::Patron(moving) = own(&reg, &me, OwnAct::RequestMove { to: "BRANCH".into() }, day).unwrap() else {
        panic!()
    };
    assert_eq!(moving.transfer.as_ref().map(|t| t.to.as_str()), Some("BRANCH"));
    assert_eq!(reg.pending_transfers("BRANCH").unwrap().len(), 1, "the staff's accept or decline flow has it");

    // A PIN set at the desk since the login ends the session; so does a lockout.
    reg.set_pin(p.id, "5930", now()).unwrap();
    let e = refusal(own(&reg, &me, OwnAct::Renew { item: "I1".into() }, day).unwrap_err());
    assert_eq!(e, Refusal::PinNeeded);
    let me = login(&reg, "P1", "5930").unwrap();
    for _ in 0..5 {
        kiosk_pin(&reg, "P1", "1111");
    }
    let e = refusal(own(&reg, &me, OwnAct::Renew { item: "I1".into() }, day).unwrap_err());
    assert_eq!(e, Refusal::LockedOut);
}

fn avery_like() -> NewPatron {
    NewPatron {
        institution: "MAIN".into(),
        primary_id: "P9".into(),
        first_name: "Avery".into(),
        last_name: "Reader".into(),
        ..Default::default()
    }
}

/// A new e-mail address is the record's only once the link sent to it is followed; another
/// patron's address gets no link; an external account's is its sync's.
#[test]
fn a_new_email_address_takes_effect_only_through_its_link() {
    let (_d, reg, p) = open();
    reg.set_pin(p.id, "4821", now()).unwrap();
    let me = login(&reg, "P1", "4821").unwrap();
    let ask = |email: &str| own(&reg, &me, OwnAct::ChangeEmail { email: email.into() }, now());
    assert!(matches!(refusal(ask("not-an-address").unwrap_err()), Refusal::Invalid(_)));
    assert!(matches!(ask("new@example.org").unwrap(), Receipt::Done));
    assert_eq!(reg.desk().patron(p.id).unwrap().email.as_deref(), Some("avery@example.org"), "not yet");
    let checks: Vec<Notice> =
        reg.store.notices().unwrap().into_iter().filter(|n| n.kind == NoticeKind::EmailCheck).collect();
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].to.as_deref(), Some("new@example.org"), "sent to the new address");
    let body = &checks[0].body;
    let at = body.find(EMAIL_LINK_MARKER).unwrap_or_else(|| panic!("{body}"));
    let serial = body[at + EMAIL_LINK_MARKER.len()..].split('}').next().unwrap().parse().unwrap();
    let t = reg.engine.link_token(serial).unwrap();
    let confirm = |token: &str, at: Timestamp| reg.run(Operation::ConfirmEmail { token: Pin(token.into()) }, at);
    let late = now() + SignedDuration::from_hours(24);
    assert_eq!(refusal(confirm(&t, late).unwrap_err()), Refusal::LinkUnusable { expired: true });
    confirm(&t, now()).unwrap();
    assert_eq!(reg.desk().patron(p.id).unwrap().email.as_deref(), Some("new@example.org"));
    assert_eq!(refusal(confirm(&t, now()).unwrap_err()), Refusal::LinkUnusable { expired: false });

    // Another patron's address: answered the same, and no link is sent anywhere.
    let other = NewPatron { email: Some("blake@example.org".into()), no_invitation: true, ..avery_like() };
    reg.add_patron(other, true, now()).unwrap();
    assert!(matches!(ask("blake@example.org").unwrap(), Receipt::Done));
    let last = reg.store.notices().unwrap().pop().unwrap();
    assert_eq!((last.kind, last.delivery), (NoticeKind::EmailCheck, Delivery::Skipped), "written alike, not sent");
    assert!(last.note.as_deref().is_some_and(|n| n.contains("another patron")), "{last:?}");

    // An external account's address is the student system's.
    reg.edit(p.id, &[("account-type".into(), "external:ladok".into())], now()).unwrap();
    let e = refusal(ask("third@example.org").unwrap_err());
    assert!(matches!(e, Refusal::Synced { field: "email", .. }), "{e:?}");
}

/// A renewal on the patron's pages and a checkin at a kiosk of the same item at the same
/// moment: either the renewal came first (the checkin ends the renewed loan) or the checkin
/// did (the renewal is refused: the item is no longer on loan to them). Never both a renewal
/// and a loan ended as it was before.
#[test]
fn a_renewal_on_the_pages_and_a_kiosk_checkin_at_once_end_serially() {
    let (_d, reg, p) = open();
    reg.set_pin(p.id, "4821", now()).unwrap();
    let me = login(&reg, "P1", "4821").unwrap();
    let day = now() + SignedDuration::from_hours(24);
    let (mut renewed_first, mut checked_in_first) = (0, 0);
    for round in 0..40 {
        let barcode = format!("R{round}");
        reg.add_item(NewItem {
            barcode: barcode.clone(),
            institution: "MAIN".into(),
            title: "Dune".into(),
            ..Default::default()
        })
        .unwrap();
        let lent = reg.checkout(p.id, &barcode, false, now()).unwrap();
        let (renew, checkin) = std::thread::scope(|s| {
            let (reg2, me2, b2) = (reg.clone(), me.clone(), barcode.clone());
            let renew = s.spawn(move || own(&reg2, &me2, OwnAct::Renew { item: b2 }, day));
            let (reg3, b3) = (reg.clone(), barcode.clone());
            let checkin =
                s.spawn(move || reg3.run(Operation::KioskCheckin { at: kiosk(), item: b3, returned: None }, day));
            (renew.join().unwrap(), checkin.join().unwrap())
        });
        let Receipt::Checkin(c) = checkin.unwrap() else { panic!("round {round}") };
        let (ended, _) = c.ended.expect("the checkin ends a loan either way");
        match renew {
            Ok(Receipt::Loan(l)) => {
                renewed_first += 1;
                assert!(l.due > lent.due, "round {round}");
                assert_eq!(ended.due, l.due, "round {round}: the checkin ended the renewed loan");
            }
            Err(e) => {
                checked_in_first += 1;
                assert_eq!(refusal(e), Refusal::NotOnLoanToPatron, "round {round}");
                assert_eq!(ended.due, lent.due, "round {round}: the loan as it was lent");
            }
            Ok(other) => panic!("round {round}: {other:?}"),
        }
        assert!(reg.desk().loan(&barcode).unwrap().is_none(), "round {round}: nothing left on loan");
    }
    assert_eq!(renewed_first + checked_in_first, 40);
}

/// The set-PIN page asks for what the link's patron's institution takes: four digits, or a
/// password it chose; a link that is not known has no policy to show.
#[test]
fn a_link_tells_the_page_the_pin_policy_it_is_held_to() {
    let (_d, reg, _p) = open();
    let t = token(&reg);
    let policy = |t: &str| match reg.desk().query(Query::LinkPolicy { token: Pin(t.into()), now: now() }).unwrap() {
        Answer::PinPolicy(p) => p.ok(),
        other => panic!("{other:?}"),
    };
    assert_eq!(policy(&t), Some(PinPolicy::FourDigits));
    assert_eq!(policy("0123abcd"), None);
    let late = Query::LinkPolicy { token: Pin(t.clone()), now: now() + SignedDuration::from_hours(72) };
    assert!(matches!(reg.desk().query(late).unwrap(), Answer::PinPolicy(Err(Refusal::LinkUnusable { expired: true }))));
    let password = InstitutionChange::Settings {
        name: None,
        patterns: Default::default(),
        pin_policy: Some(PinPolicy::Password { min_len: 8 }),
        audit_retention_days: None,
    };
    reg.change_institution("MAIN", password).unwrap();
    assert_eq!(policy(&t), Some(PinPolicy::Password { min_len: 8 }));
    assert!(matches!(refusal(redeem(&reg, &t, "4821", now()).unwrap_err()), Refusal::Invalid(_)));
    redeem(&reg, &t, "a-long-passphrase", now()).unwrap();
    assert_eq!(policy(&t), None, "used");
}

/// Purging removes links past their time (they could do nothing), and keeps good ones.
#[test]
fn a_purge_removes_links_past_their_time() {
    let (_d, reg, _p) = open();
    let t = token(&reg);
    // Known at all: good, or expired (rather than unknown).
    let known = |t: &str| {
        let q = Query::LinkPolicy { token: Pin(t.into()), now: now() + SignedDuration::from_hours(100) };
        matches!(reg.desk().query(q).unwrap(), Answer::PinPolicy(Err(Refusal::LinkUnusable { expired: true })))
    };
    reg.purge(now() + SignedDuration::from_hours(71), false).unwrap();
    assert!(known(&t), "still good");
    reg.purge(now() + SignedDuration::from_hours(72), false).unwrap();
    assert!(!known(&t), "expired, and gone");
}
