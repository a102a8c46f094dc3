//! The engine test suite: staff operations end to end through the engine seam, against a
//! temporary register. Written on `testkit::Reg`, whose `open` is the one place that names an
//! engine, so another engine runs the same suite.

// Amounts in minor units are written major_minor: `27_50` is 27.50.
#![allow(clippy::inconsistent_digit_grouping)]

use jiff::Timestamp;
use jiff::civil::{Date, date};

use super::testkit::{Added, Reg as Register, Scratch};
use super::*;
use crate::domain::rules::PinCheck;
use crate::domain::*;

const TODAY: Date = date(2026, 11, 22);

fn now() -> Timestamp {
    "2026-11-22T10:00:00Z".parse().unwrap()
}

fn dry() -> ImportOptions {
    ImportOptions { dry_run: true, ..Default::default() }
}

fn open() -> (Scratch, Register) {
    let dir = Scratch::new();
    let reg = Register::open(dir.path(), "tester").unwrap();
    reg.add_institution("MAIN", "Main Library", "SEK", "Europe/Stockholm").unwrap();
    (dir, reg)
}

fn avery() -> NewPatron {
    NewPatron {
        institution: "MAIN".into(),
        primary_id: "P1".into(),
        first_name: "Avery".into(),
        last_name: "Reader".into(),
        birth_date: Some(date(1990, 5, 17)),
        barcodes: vec!["21234000012345".into()],
        ..Default::default()
    }
}

/// A second patron, Avery's sibling (another first name, so no duplicate warning).
fn blake() -> NewPatron {
    NewPatron { primary_id: "P2".into(), first_name: "Blake".into(), barcodes: vec!["B2".into()], ..avery() }
}

fn added(a: Added) -> Patron {
    match a {
        Added::Patron(p) => *p,
        Added::PossibleDuplicate(ids) => panic!("duplicate of {ids:?}"),
    }
}

#[test]
fn institutions_are_checked() {
    let (_d, reg) = open();
    assert!(reg.add_institution("X Y", "n", "SEK", "Europe/Stockholm").is_err());
    assert!(reg.add_institution("B2", "n", "kr", "Europe/Stockholm").unwrap_err().to_string().contains("ISO 4217"));
    assert!(reg.add_institution("B2", "n", "SEK", "Mars/Olympus").unwrap_err().to_string().contains("IANA"));
}

#[test]
fn registration_warns_of_duplicates_and_checks_minors_and_national_ids() {
    let (_d, reg) = open();
    let p = added(reg.add_patron(avery(), false, now()).unwrap());
    let mut twin = avery();
    twin.primary_id = "P2".into();
    twin.barcodes = vec!["B2".into()];
    assert!(
        matches!(reg.add_patron(twin.clone(), false, now()).unwrap(), Added::PossibleDuplicate(ids) if ids == vec![p.id])
    );
    added(reg.add_patron(twin, true, now()).unwrap());

    let mut kid = avery();
    kid.primary_id = "K1".into();
    kid.barcodes = vec![];
    kid.first_name = "Kim".into();
    kid.birth_date = Some(date(2015, 1, 1));
    assert!(reg.add_patron(kid.clone(), false, now()).unwrap_err().to_string().contains("guardian"));
    kid.guardian = Some(Guardian { name: "Pat Parent".into(), contact: "070-1234567".into() });
    kid.terms_accepted = Some(TODAY);
    added(reg.add_patron(kid, false, now()).unwrap());

    let mut swede = avery();
    swede.primary_id = "S1".into();
    swede.first_name = "Sven".into();
    swede.barcodes = vec![];
    swede.national_id = Some("811218-9877".into());
    assert!(reg.add_patron(swede.clone(), false, now()).unwrap_err().to_string().contains("check digit"));
    swede.national_id = Some("811218-9876".into());
    let s = added(reg.add_patron(swede, false, now()).unwrap());
    assert_eq!(reg.find("MAIN", "198112189876").unwrap().id, s.id);

    let mut nameless = avery();
    nameless.first_name = " ".into();
    assert!(reg.add_patron(nameless, true, now()).unwrap_err().to_string().contains("first name is required"));
}

/// A kiosk's 23 from terminal `login`: the PIN verdict.
fn kiosk_pin(reg: &Register, login: &str, card: &str, pin: &str, at: Timestamp) -> PinVerdict {
    let op = Operation::KioskPatron {
        at: super::testkit::kiosk(login),
        card: card.into(),
        pin: Some(Pin(pin.into())),
        detail: false,
    };
    match reg.run(op, at).unwrap() {
        Receipt::KioskPatron(Ok(k), _) => k.pin,
        other => panic!("{other:?}"),
    }
}

/// The terminal's budget of wrong PINs is kept in the register: spent by wrong PINs on any
/// patron, it holds the terminal's next PIN checks untried (right ones too) until its window
/// ends, other terminals go on, and a register opened again still holds it.
#[test]
fn a_terminals_budget_of_wrong_pins_is_the_registers() {
    let dir = Scratch::new();
    let mut settings = StoreConfig::default();
    settings.limits.pin_failures_per_window = 3;
    settings.limits.pin_window_secs = 600;
    let reg = Register::open_with(dir.path(), "tester", &settings).unwrap();
    reg.add_institution("MAIN", "Main Library", "SEK", "Europe/Stockholm").unwrap();
    let mut cards = Vec::new();
    for (n, first) in ["Ann", "Ben", "Cid", "Dee"].iter().enumerate() {
        let new = NewPatron {
            primary_id: format!("P{n}"),
            first_name: (*first).into(),
            barcodes: vec![format!("C{n}")],
            pin: Some(Pin("1234".into())),
            ..avery()
        };
        added(reg.add_patron(new, false, now()).unwrap());
        cards.push(format!("C{n}"));
    }
    for card in &cards[..3] {
        assert_eq!(kiosk_pin(&reg, "kiosk1", card, "0000", now()), PinVerdict::Wrong);
    }
    assert_eq!(kiosk_pin(&reg, "kiosk1", &cards[3], "1234", now()), PinVerdict::Throttled);
    assert_eq!(kiosk_pin(&reg, "kiosk2", &cards[3], "1234", now()), PinVerdict::Right, "another terminal");
    assert_eq!(reg.store.patron(reg.find("MAIN", &cards[3]).unwrap().id).unwrap().failed_pins, 0, "not tried");
    drop(reg);
    let reg = Register::open_with(dir.path(), "tester", &settings).unwrap();
    assert_eq!(kiosk_pin(&reg, "kiosk1", &cards[3], "1234", now()), PinVerdict::Throttled, "kept");
    let later = now() + jiff::SignedDuration::from_secs(600);
    assert_eq!(kiosk_pin(&reg, "kiosk1", &cards[3], "1234", later), PinVerdict::Right, "a new window");
}

/// kiosk1 pays 1.00 on Avery's fee `fee`.
fn kiosk_pays(fee: u64) -> Operation {
    Operation::KioskPay {
        at: super::testkit::kiosk("kiosk1"),
        card: "21234000012345".into(),
        currency: "SEK".into(),
        amount: "1.00".into(),
        fee: Some(fee.to_string()),
        transaction: None,
    }
}

/// A terminal's request marked as sent before from the same address is answered from the
/// receipt of its first run, which changed the register once; the same bytes from another
/// address, or other bytes, run; a request that changed nothing leaves no receipt.
#[test]
fn a_request_sent_again_is_answered_from_its_first_receipt() {
    let (dir, reg) = open();
    let p = added(reg.add_patron(avery(), false, now()).unwrap());
    let fee = reg.add_fee(p.id, FeeKind::Damage, Money(10_00), None, None, now()).unwrap();
    let pay = || kiosk_pays(fee.id);
    let mark = |from: &str, frame: &[u8]| Some(RequestMark::of(from.into(), frame));
    let run = |by_mark, at| {
        let by = By::new("kiosk1", at).marked(by_mark);
        match reg.engine.run(pay(), by).wait().unwrap() {
            Receipt::Paid(Ok(p)) => p.receipt,
            other => panic!("{other:?}"),
        }
    };
    let first = run(mark("10.0.0.5", b"37...AY1AZ0001"), now());
    let later = now() + jiff::SignedDuration::from_secs(5);
    assert_eq!(run(mark("10.0.0.5", b"37...AY1AZ0001"), later), first, "answered from the receipt");
    assert_eq!(reg.store.fee(fee.id).unwrap().unwrap().paid, Money(1_00), "paid once");
    assert_ne!(run(mark("10.0.0.6", b"37...AY1AZ0001"), later), first, "another address: another payment");
    assert_ne!(run(mark("10.0.0.5", b"37...AY2AZ0002"), later), first, "another request");
    assert_eq!(run(None, later), run(None, later) - 1, "unmarked requests always run");
    assert_eq!(reg.store.fee(fee.id).unwrap().unwrap().paid, Money(5_00));
    // Kept in the register: opened again (or on another node), the retry is still known.
    drop(reg);
    let reg = Register::open(dir.path(), "tester").unwrap();
    let by = By::new("kiosk1", later).marked(mark("10.0.0.5", b"37...AY2AZ0002"));
    let Receipt::Paid(Ok(again)) = reg.engine.run(pay(), by).wait().unwrap() else { panic!() };
    assert_eq!(reg.store.fee(fee.id).unwrap().unwrap().paid, Money(5_00), "not paid again: {again:?}");
}

/// A terminal's receipts from other addresses go once they are older than
/// `retry_receipt_hours` and the terminal changes something again: an address it left is not
/// kept for ever.
#[test]
fn receipts_of_addresses_a_terminal_left_are_not_kept_for_ever() {
    let dir = Scratch::new();
    let mut settings = StoreConfig::default();
    settings.limits.retry_receipt_hours = 1;
    let reg = Register::open_with(dir.path(), "tester", &settings).unwrap();
    reg.add_institution("MAIN", "Main Library", "SEK", "Europe/Stockholm").unwrap();
    let p = added(reg.add_patron(avery(), false, now()).unwrap());
    let fee = reg.add_fee(p.id, FeeKind::Damage, Money(10_00), None, None, now()).unwrap();
    let pay = |from: &str, frame: &[u8], at: Timestamp| {
        let op = kiosk_pays(fee.id);
        let by = By::new("kiosk1", at).marked(Some(RequestMark::of(from.into(), frame)));
        reg.engine.run(op, by).wait().unwrap();
        reg.store.fee(fee.id).unwrap().unwrap().paid
    };
    let half = now() + jiff::SignedDuration::from_mins(30);
    let later = now() + jiff::SignedDuration::from_hours(2);
    assert_eq!(pay("10.0.0.5", b"37 one", now()), Money(1_00));
    assert_eq!(pay("10.0.0.6", b"37 two", half), Money(2_00));
    assert_eq!(pay("10.0.0.5", b"37 one", half), Money(2_00), "within the hour: answered from the receipt");
    assert_eq!(pay("10.0.0.6", b"37 three", later), Money(3_00));
    assert_eq!(pay("10.0.0.5", b"37 one", later), Money(4_00), "its receipt went: the request runs");
}

#[test]
fn pins_lock_after_five_wrong_tries_and_staff_unlock() {
    let (_d, reg) = open();
    let p = added(reg.add_patron(avery(), false, now()).unwrap());
    assert!(reg.set_pin(p.id, "12a4", now()).is_err());
    reg.set_pin(p.id, "1234", now()).unwrap();
    assert_eq!(reg.check_pin(p.id, "1234", now()).unwrap(), PinCheck::Accepted);
    for remaining in [4, 3, 2, 1] {
        assert_eq!(reg.check_pin(p.id, "0000", now()).unwrap(), PinCheck::Wrong { remaining });
    }
    assert_eq!(reg.check_pin(p.id, "0000", now()).unwrap(), PinCheck::LockedOut);
    assert_eq!(reg.check_pin(p.id, "1234", now()).unwrap(), PinCheck::LockedOut);
    assert!(reg.store.patron(p.id).unwrap().locked);
    reg.unlock(p.id, now()).unwrap();
    assert_eq!(reg.check_pin(p.id, "1234", now()).unwrap(), PinCheck::Accepted);
    // Every attempt is in the history, even those in the same instant; the PIN itself is not.
    let entries = reg.store.history(p.id).unwrap();
    assert_eq!(entries.iter().filter(|e| e.action == "pin-attempt").count(), 4);
    let history = format!("{entries:?}");
    assert!(!history.contains("1234"), "{history}");
    assert!(history.contains("changed"));
}

#[test]
fn fees_dispute_waive_restore_and_the_balance_follows() {
    let (_d, reg) = open();
    let p = added(reg.add_patron(avery(), false, now()).unwrap());
    let a = reg.add_fee(p.id, FeeKind::Overdue, Money(30_00), None, None, now()).unwrap();
    let b = reg.add_fee(p.id, FeeKind::Damage, Money(20_00), Some("31234"), None, now()).unwrap();
    assert!(reg.add_fee(p.id, FeeKind::Other, Money(-5_00), None, None, now()).is_err());
    reg.add_fee(p.id, FeeKind::Other, Money(-5_00), None, Some("goodwill"), now()).unwrap();
    assert_eq!(reg.balance(p.id).unwrap(), Money(45_00));

    reg.dispute_fee(a.id, now()).unwrap();
    assert_eq!(reg.balance(p.id).unwrap(), Money(15_00));
    reg.restore_fee(a.id, now()).unwrap();
    assert_eq!(reg.balance(p.id).unwrap(), Money(45_00));

    assert!(reg.pay_fee(b.id, Money(25_00), None, now()).unwrap_err().to_string().contains("more than the 20.00 owed"));
    reg.pay_fee(b.id, Money(20_00), Some("TX1"), now()).unwrap();
    assert_eq!(reg.store.fee(b.id).unwrap().unwrap().status, FeeStatus::Paid);

    assert!(reg.waive_fee(a.id, " ", now()).is_err());
    reg.waive_fee(a.id, "first offence", now()).unwrap();
    assert!(reg.restore_fee(a.id, now()).unwrap_err().to_string().contains("only a disputed fee"));
    assert_eq!(reg.balance(p.id).unwrap(), Money(-5_00));
}

#[test]
fn blocks_transfers_and_deletion() {
    let (_d, reg) = open();
    reg.add_institution("BRANCH2", "Branch 2", "SEK", "Europe/Stockholm").unwrap();
    let p = added(reg.add_patron(avery(), false, now()).unwrap());

    assert!(reg.block(p.id, "nonsense", None, now()).unwrap_err().to_string().contains("unknown block type"));
    reg.block(p.id, "general", Some("lost a book"), now()).unwrap();
    assert!(reg.unblock(p.id, Some("overdue"), now()).is_err());
    reg.unblock(p.id, None, now()).unwrap();

    reg.request_transfer(p.id, "BRANCH2", now()).unwrap();
    assert_eq!(reg.pending_transfers("BRANCH2").unwrap().len(), 1);
    assert!(reg.request_transfer(p.id, "BRANCH2", now()).is_err());
    let moved = reg.decide_transfer(p.id, true, now()).unwrap();
    assert_eq!(moved.institution, "BRANCH2");
    assert_eq!(reg.find("BRANCH2", "21234000012345").unwrap().id, p.id);
    assert!(reg.pending_transfers("BRANCH2").unwrap().is_empty());

    let fee = reg.add_fee(p.id, FeeKind::Overdue, Money(2_50), None, None, now()).unwrap();
    assert!(reg.delete(p.id, now()).unwrap_err().to_string().contains("balance of 2.50 is due"));
    reg.pay_fee(fee.id, Money(2_50), None, now()).unwrap();
    reg.delete(p.id, now()).unwrap();
    assert!(reg.store.patron(p.id).unwrap().deleted.is_some());
    reg.restore(p.id, now()).unwrap();
    assert!(reg.store.patron(p.id).unwrap().deleted.is_none());
    let history = reg.history(p.id).unwrap();
    assert_eq!((history[0].action.as_str(), history[0].by.as_str()), ("register", "tester"), "creation comes first");
    let actions: Vec<String> = history.into_iter().map(|e| e.action).collect();
    for a in [
        "register",
        "block",
        "unblock",
        "transfer-request",
        "transfer-accept",
        "fee-add",
        "fee-pay",
        "delete",
        "restore",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} missing from {actions:?}");
    }
}

#[test]
fn notices_are_committed_with_their_change_and_name_the_library_the_patron_is_at() {
    let (_d, reg) = open();
    reg.add_institution("WEST", "West Library", "SEK", "Europe/Stockholm").unwrap();
    let p = added(reg.add_patron(avery(), false, now()).unwrap());
    let outbox = || -> Vec<Notice> { reg.store.notices().unwrap() };
    let kinds = || -> Vec<NoticeKind> { outbox().into_iter().map(|n| n.kind).collect() };
    assert_eq!(kinds(), [NoticeKind::Welcome]);

    // A refused change writes no notice.
    assert!(reg.request_transfer(p.id, "MAIN", now()).is_err());
    assert!(reg.decide_transfer(p.id, true, now()).is_err());
    assert_eq!(kinds(), [NoticeKind::Welcome]);

    reg.request_transfer(p.id, "WEST", now()).unwrap();
    reg.decide_transfer(p.id, true, now()).unwrap();
    let notices = outbox();
    assert_eq!(kinds(), [NoticeKind::Welcome, NoticeKind::TransferRequested, NoticeKind::TransferAccepted]);
    assert!(notices[1].body.contains("from Main Library to West Library"), "{}", notices[1].body);
    assert_eq!(notices[2].subject, "Welcome to West Library", "composed as the patron stands after the move");
    assert!(notices.iter().all(|n| n.note.as_deref() == Some("the patron has no e-mail address")));

    reg.request_transfer(p.id, "MAIN", now()).unwrap();
    reg.decide_transfer(p.id, false, now()).unwrap();
    let declined = outbox().pop().unwrap();
    assert_eq!(declined.kind, NoticeKind::TransferDeclined);
    assert!(declined.subject.contains("Main Library") && declined.body.contains("West Library"), "{declined:?}");
}

#[test]
fn a_pin_given_at_registration_is_checked_first_and_set_with_it() {
    let (_d, reg) = open();
    let with = |pin: &str| NewPatron { pin: Some(Pin(pin.into())), email: Some("a@example.org".into()), ..avery() };
    assert!(reg.add_patron(with("12"), false, now()).unwrap_err().to_string().contains("four digits"));
    assert!(reg.find("MAIN", "21234000012345").is_err(), "nothing was added");
    assert!(reg.store.notices().unwrap().is_empty(), "and no welcome written");
    assert!(!format!("{:?}", with("9876")).contains("9876"), "Debug hides the PIN");

    let p = added(reg.add_patron(with("9876"), false, now()).unwrap());
    assert_eq!(reg.check_pin(p.id, "9876", now()).unwrap(), PinCheck::Accepted);
    let welcome = reg.store.notices().unwrap().remove(0);
    assert!(welcome.body.contains("the PIN you were given when you registered"), "{}", welcome.body);
    assert!(!welcome.body.contains("9876"));
    let b = added(reg.add_patron(blake(), false, now()).unwrap());
    let second = reg.store.notices().unwrap().remove(1);
    assert_eq!(second.patron, b.id);
    assert!(second.body.contains("you need a PIN"), "{}", second.body);
}

fn item(barcode: &str) -> NewItem {
    NewItem { barcode: barcode.into(), institution: "MAIN".into(), title: "Dune".into(), ..Default::default() }
}

#[test]
fn edits_are_checked_and_audited_field_by_field() {
    let (_d, reg) = open();
    let p = added(reg.add_patron(avery(), false, now()).unwrap());
    let set = |f: &str, v: &str| vec![(f.to_string(), v.to_string())];
    let p2 = reg.edit(p.id, &set("email", "avery@example.org"), now()).unwrap();
    assert_eq!(p2.email.as_deref(), Some("avery@example.org"));
    assert!(reg.edit(p.id, &set("email", "not-an-address"), now()).is_err());
    assert!(reg.edit(p.id, &set("first-name", " "), now()).unwrap_err().to_string().contains("required"));
    assert!(reg.edit(p.id, &set("shoe-size", "42"), now()).unwrap_err().to_string().contains("editable"));
    // A minor needs a guardian: making Avery 10 years old is refused until one is given.
    assert!(reg.edit(p.id, &set("birth-date", "2016-01-01"), now()).is_err());
    // The institution's pattern applies to edits too.
    let phone = InstitutionChange::Settings {
        name: None,
        patterns: [None, None, Some(r"\+46\d{7,9}".into()), None],
        pin_policy: None,
        audit_retention_days: None,
    };
    reg.change_institution("MAIN", phone).unwrap();
    let e = reg.edit(p.id, &set("phone", "555-1234"), now()).unwrap_err().to_string();
    assert!(e.contains(r"\+46\d{7,9}"), "{e}");
    reg.edit(p.id, &set("phone", "+46701234567"), now()).unwrap();
    // An empty value clears an optional field.
    let p3 = reg.edit(p.id, &set("email", ""), now()).unwrap();
    assert_eq!(p3.email, None);
    let history = reg.store.history(p.id).unwrap();
    let edits: Vec<_> = history.iter().filter(|e| e.action == "edit").collect();
    assert_eq!(edits.len(), 3);
    assert_eq!(edits[0].changes, vec![("email".to_string(), String::new(), "avery@example.org".to_string())]);
    // Nothing refused was written.
    assert_eq!(reg.store.patron(p.id).unwrap().phone.as_deref(), Some("+46701234567"));
}

#[test]
fn notes_proxies_status_and_identifiers() {
    let (_d, reg) = open();
    let a = added(reg.add_patron(avery(), false, now()).unwrap());
    let b = added(reg.add_patron(blake(), false, now()).unwrap());

    let a1 = reg.add_note(a.id, "general", "Prefers large print", true, now()).unwrap();
    assert_eq!(a1.notes[0].id, 1);
    assert!(a1.notes[0].public);
    assert!(reg.remove_note(a.id, 9, now()).is_err());
    assert!(reg.remove_note(a.id, 1, now()).unwrap().notes.is_empty());

    assert!(reg.set_proxy(a.id, a.id, true, now()).is_err());
    assert_eq!(reg.set_proxy(b.id, a.id, true, now()).unwrap().proxy_for, vec![a.id]);
    assert!(reg.set_proxy(b.id, a.id, true, now()).is_err());
    assert!(reg.set_proxy(b.id, a.id, false, now()).unwrap().proxy_for.is_empty());

    let later: Timestamp = "2026-11-23T08:00:00Z".parse().unwrap();
    let off = reg.set_active(a.id, false, later).unwrap();
    assert!(!off.active);
    assert_eq!(off.status_changed, later);
    assert!(reg.set_active(a.id, false, later).is_err());
    assert!(reg.standing(&off, now()).unwrap().denied.borrow);

    reg.add_identifier(a.id, "student-id", "S-77", None, now()).unwrap();
    assert_eq!(reg.find("MAIN", "S-77").unwrap().id, a.id);
    // Unique within the institution: B may not take A's identifier.
    assert!(reg.add_identifier(b.id, "barcode", "S-77", None, now()).unwrap_err().to_string().contains("already used"));
    assert!(reg.add_identifier(a.id, "national-id", "19900517-1234", None, now()).is_err());
    let n = reg.add_identifier(a.id, "national-id", "811218-9876", None, now()).unwrap();
    assert!(n.identifiers.iter().any(|i| i.value == "198112189876"));
    assert_eq!(reg.search("MAIN", "19811218-9876", now()).unwrap()[0].id, a.id);
    let off = reg.set_identifier_active(a.id, "S-77", false, now()).unwrap();
    assert!(!off.active_identifiers().any(|v| v == "S-77"));

    assert_eq!(reg.search("MAIN", "read", now()).unwrap().len(), 2);
    assert_eq!(reg.search("MAIN", "Reader, Bl", now()).unwrap()[0].id, b.id);
    let inactive = reg.list(&ListFilter { inactive_only: true, ..Default::default() }).unwrap();
    assert_eq!(inactive.iter().map(|p| p.id).collect::<Vec<_>>(), vec![a.id]);
}

#[test]
fn loans_block_deletion_and_checkout_follows_the_rules() {
    let (_d, reg) = open();
    let p = added(reg.add_patron(avery(), false, now()).unwrap());
    reg.add_item(item("I1")).unwrap();
    assert!(reg.add_item(item("I1")).unwrap_err().to_string().contains("exists"));
    reg.add_item(NewItem { rental_fee: Some(Money(20_00)), ..item("I2") }).unwrap();

    let loan = reg.checkout(p.id, "I1", false, now()).unwrap();
    assert_eq!(loan.patron, p.id);
    assert_eq!(reg.item("I1").unwrap().status, ItemStatus::OnLoan);
    // The rental fee must be accepted; then it is charged.
    assert!(reg.checkout(p.id, "I2", false, now()).unwrap_err().to_string().contains("Rental fee 20.00"));
    reg.checkout(p.id, "I2", true, now()).unwrap();
    assert_eq!(reg.balance(p.id).unwrap(), Money(20_00));

    let e = reg.delete(p.id, now()).unwrap_err().to_string();
    assert!(e.contains("20.00") && e.contains("2 items are on loan"), "{e}");
    assert!(reg.delete_item("I1").unwrap_err().to_string().contains("on loan"));

    let fee = reg.store.fees_of(p.id).unwrap().remove(0);
    reg.pay_fee(fee.id, Money(20_00), None, now()).unwrap();
    reg.checkin("I2", now()).unwrap();
    let e = reg.delete(p.id, now()).unwrap_err().to_string();
    assert!(e.contains("1 item is on loan") && !e.contains("balance"), "{e}");
    reg.checkin("I1", now()).unwrap();
    assert_eq!(reg.item("I1").unwrap().status, ItemStatus::Available);
    reg.delete(p.id, now()).unwrap();
}

#[test]
fn holds_queue_and_go_to_the_hold_shelf_on_return() {
    let (_d, reg) = open();
    let a = added(reg.add_patron(avery(), false, now()).unwrap());
    let b = added(reg.add_patron(blake(), false, now()).unwrap());
    reg.add_item(item("I1")).unwrap();
    reg.checkout(a.id, "I1", false, now()).unwrap();
    let h = reg.place_hold(b.id, HoldTarget::Item("I1".into()), "MAIN", None, now()).unwrap();
    assert_eq!(reg.queue_position(&h).unwrap(), Some(1));
    assert!(reg.place_hold(b.id, HoldTarget::Item("I1".into()), "MAIN", None, now()).is_err());
    assert!(reg.place_hold(b.id, HoldTarget::Item("NOPE".into()), "MAIN", None, now()).is_err());
    // Renewal is refused while someone else waits.
    assert!(reg.checkout(a.id, "I1", false, now()).unwrap_err().to_string().contains("hold"));
    reg.checkin("I1", now()).unwrap();
    assert_eq!(reg.item("I1").unwrap().status, ItemStatus::OnHoldShelf);
    assert_eq!(reg.store.hold(h.id).unwrap().unwrap().status, HoldStatus::Available);
    // A on-hold item goes only to the patron it waits for; their loan fulfils the hold.
    assert!(reg.checkout(a.id, "I1", false, now()).is_err());
    reg.checkout(b.id, "I1", false, now()).unwrap();
    assert!(reg.store.holds_of(b.id).unwrap().is_empty());
    let t = reg.place_hold(a.id, HoldTarget::Title("Dune".into()), "MAIN", None, now()).unwrap();
    assert_eq!(reg.queue_position(&t).unwrap(), None);
    reg.cancel_hold(t.id, now()).unwrap();
    assert!(reg.cancel_hold(t.id, now()).is_err());
}

#[test]
fn accounts_keep_only_an_argon2_hash() {
    let (_d, reg) = open();
    assert!(reg.add_account("kiosk 1", "long enough", "MAIN", None).is_err());
    assert!(reg.add_account("kiosk1", "short", "MAIN", None).is_err());
    assert!(reg.add_account("kiosk1", "long enough", "NOPE", None).is_err());
    let a = reg.add_account("kiosk1", "long enough", "MAIN", Some("ENTRANCE")).unwrap();
    assert!(a.password_hash.starts_with("$argon2"));
    assert!(!a.password_hash.contains("long enough"));
    assert!(reg.verify_account("kiosk1", "long enough").unwrap().is_some());
    assert!(reg.verify_account("kiosk1", "wrong one!").unwrap().is_none());
    assert!(reg.add_account("kiosk1", "long enough", "MAIN", None).is_err());
    reg.set_account_password("kiosk1", "another secret").unwrap();
    assert!(reg.verify_account("kiosk1", "long enough").unwrap().is_none());
    let a = reg.set_account_profile("kiosk1", &[("renewals".into(), "no".into())]).unwrap();
    assert_eq!(a.profile.get("renewals").map(String::as_str), Some("no"));
    reg.remove_account("kiosk1").unwrap();
    assert!(reg.verify_account("kiosk1", "another secret").unwrap().is_none());
}

#[test]
fn purge_removes_deleted_and_expired_records_and_old_history() {
    let (_d, reg) = open();
    let a = added(reg.add_patron(avery(), false, now()).unwrap());
    let b = added(reg.add_patron(NewPatron { purge: Some(date(2026, 1, 1)), ..blake() }, false, now()).unwrap());
    reg.add_fee(b.id, FeeKind::Damage, Money(5_00), None, None, now()).unwrap();
    reg.delete(a.id, now()).unwrap();

    let dry = reg.purge(now(), true).unwrap();
    assert_eq!(dry.removed.len(), 1);
    assert_eq!(dry.kept.len(), 1, "B owes money: kept");
    assert!(reg.store.patron(a.id).is_ok(), "a dry run removes nothing");

    let done = reg.purge(now(), false).unwrap();
    assert_eq!(done.removed.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![a.id]);
    assert!(reg.store.patron(a.id).is_err());
    assert!(reg.find("MAIN", "P1").is_err(), "its identifiers are free again");
    assert!(reg.store.history(a.id).unwrap().is_empty());

    // Retention: entries older than the period go; newer ones stay.
    let keep = InstitutionChange::Settings {
        name: None,
        patterns: Default::default(),
        pin_policy: None,
        audit_retention_days: Some(30),
    };
    reg.change_institution("MAIN", keep).unwrap();
    let much_later = now().checked_add(jiff::SignedDuration::from_hours(24 * 40)).unwrap();
    reg.set_active(b.id, false, much_later).unwrap();
    let r = reg.purge(much_later, false).unwrap();
    assert_eq!(r.audit_entries_pruned, 1, "the fee, not the deactivation");
    let left: Vec<String> = reg.history(b.id).unwrap().into_iter().map(|e| e.action).collect();
    assert_eq!(left, vec!["register", "deactivate"], "the creation stays with the record");
}

#[test]
fn import_is_idempotent_reports_bad_lines_and_round_trips() {
    let (dir, reg) = open();
    let file = r#"{"type":"patron","institution":"MAIN","primary_id":"U1","first_name":"Ada","last_name":"Lind","email":"ada@example.org","identifiers":[{"kind":"barcode","value":"B1"}],"pin":"1234"}
{"type":"patron","institution":"MAIN","primary_id":"U2","first_name":"Bo","last_name":"Berg","email":"ADA@example.org"}
{"type":"item","barcode":"I1","institution":"MAIN","title":"Dune"}

{"type":"item","barcode":"I2","institution":"MAIN","title":""}
{"type":"loan","item":"I1","patron":999,"out":"2026-11-01T10:00:00Z","due":"2026-11-22T22:59:00Z"}
nonsense
"#;
    let dry = reg.import(std::io::Cursor::new(file), &dry(), now()).unwrap();
    assert_eq!((dry.created, dry.rejected.len()), (2, 4));
    assert!(reg.find("MAIN", "U1").is_err(), "a dry run writes nothing");

    let first = reg.import(std::io::Cursor::new(file), &ImportOptions::default(), now()).unwrap();
    assert_eq!(first.lines, 6, "the blank line is not a record");
    assert_eq!(first.created, 2);
    let lines: Vec<usize> = first.rejected.iter().map(|(n, _)| *n).collect();
    assert_eq!(lines, vec![2, 5, 6, 7]);
    assert!(first.rejected[0].1.contains("already used by patron"), "{:?}", first.rejected[0]);
    assert!(first.rejected[1].1.contains("title is required"));
    assert!(first.rejected[2].1.contains("no patron 999"));
    assert!(first.rejected[3].1.contains("not valid JSON"));
    let ada = reg.find("MAIN", "B1").unwrap();
    assert_eq!(reg.check_pin(ada.id, "1234", now()).unwrap(), PinCheck::Accepted);
    let first = &reg.history(ada.id).unwrap()[0];
    assert_eq!((first.action.as_str(), first.by.as_str(), first.at), ("import", "tester", now()));

    let again = reg.import(std::io::Cursor::new(file), &ImportOptions::default(), now()).unwrap();
    assert_eq!((again.created, again.updated, again.unchanged), (0, 0, 2));

    // Export, import into an empty store with the same key, export again: identical.
    reg.add_fee(ada.id, FeeKind::Overdue, Money(7_50), Some("I1"), None, now()).unwrap();
    reg.add_note(ada.id, "general", "Hello", true, now()).unwrap();
    reg.checkout(ada.id, "I1", false, now()).unwrap();
    reg.block(ada.id, "overdue", Some("Three overdue items"), now()).unwrap();
    reg.add_account("kiosk1", "long enough", "MAIN", None).unwrap();
    // The details tabs too: a contact, a statistical category, an attachment and a picture.
    let png = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13].to_vec();
    for op in [
        Operation::AddContact {
            patron: ada.id,
            kind: ContactKind::Phone,
            value: "070-123".into(),
            postal_code: None,
            usage: ContactUse::Mobile,
        },
        Operation::AddStatistic { patron: ada.id, category: "distance-student".into(), note: None },
        Operation::AddAttachment { patron: ada.id, name: "consent.txt".into(), content: FileBytes(b"signed".to_vec()) },
        Operation::SetPicture { patron: ada.id, content: Some(FileBytes(png.clone())) },
    ] {
        reg.run(op, now()).unwrap();
    }
    let mut out = Vec::new();
    reg.export(&mut out).unwrap();
    assert!(String::from_utf8_lossy(&out).contains(r#""type":"file""#));
    let copy = Scratch::new();
    std::fs::copy(dir.path().join("pin.key"), copy.path().join("pin.key")).unwrap();
    let reg2 = Register::open(copy.path(), "tester").unwrap();
    let r = reg2.import(std::io::Cursor::new(&out), &ImportOptions::default(), now()).unwrap();
    assert!(r.rejected.is_empty(), "{:?}", r.rejected);
    let mut out2 = Vec::new();
    reg2.export(&mut out2).unwrap();
    assert_eq!(String::from_utf8(out.clone()).unwrap(), String::from_utf8(out2).unwrap());
    assert_eq!(reg2.check_pin(ada.id, "1234", now()).unwrap(), PinCheck::Accepted);
    assert_eq!(reg2.balance(ada.id).unwrap(), Money(7_50));
    let copied = reg2.store.patron(ada.id).unwrap();
    assert_eq!((copied.contacts.len(), copied.statistics.len(), copied.attachments.len()), (1, 1, 1));
    let read = |file| match reg2.engine.query(Query::File { patron: ada.id, file }).wait().unwrap() {
        Answer::File(_, bytes) => bytes.0,
        other => panic!("{other:?}"),
    };
    assert_eq!((read(1), read(0)), (b"signed".to_vec(), png));
    let r = reg2.import(std::io::Cursor::new(&out), &ImportOptions::default(), now()).unwrap();
    assert_eq!(r.unchanged, r.lines);
}

#[test]
fn sync_overwrites_external_fields_and_keeps_local_additions() {
    let (_d, reg) = open();
    let sync1 = r#"{"type":"patron","institution":"MAIN","primary_id":"S1","first_name":"Cy","last_name":"Ek","email":"cy@uni.se","account_type":{"external":{"source":"ladok"}},"identifiers":[{"kind":"student-id","value":"ST1"}]}"#;
    reg.import(std::io::Cursor::new(sync1), &ImportOptions::default(), now()).unwrap();
    let cy = reg.find("MAIN", "ST1").unwrap();
    reg.add_note(cy.id, "general", "Local note", false, now()).unwrap();
    reg.block(cy.id, "general", None, now()).unwrap();
    reg.add_identifier(cy.id, "barcode", "LOCAL-1", None, now()).unwrap();
    reg.set_pin(cy.id, "4321", now()).unwrap();

    let sync2 = r#"{"type":"patron","institution":"MAIN","primary_id":"S1","first_name":"Cyrus","last_name":"Ek","account_type":{"external":{"source":"ladok"}},"identifiers":[{"kind":"student-id","value":"ST2"}]}"#;
    let r = reg.import(std::io::Cursor::new(sync2), &ImportOptions::default(), now()).unwrap();
    assert_eq!(r.updated, 1);
    let after = reg.store.patron(cy.id).unwrap();
    assert_eq!(after.first_name, "Cyrus");
    assert_eq!(after.email, None, "the external system cleared it");
    let ids: Vec<&str> = after.identifiers.iter().map(|i| i.value.as_str()).collect();
    assert_eq!(ids, vec!["ST2", "LOCAL-1"]);
    assert_eq!(after.notes.len(), 1);
    assert_eq!(after.blocks.len(), 1);
    assert_eq!(reg.check_pin(cy.id, "4321", now()).unwrap(), PinCheck::Accepted);
    assert!(reg.find("MAIN", "ST1").is_err(), "the old synced identifier is gone from the index");
    let r = reg.import(std::io::Cursor::new(sync2), &ImportOptions::default(), now()).unwrap();
    assert_eq!(r.unchanged, 1);
}

/// An external account's synced fields are the sync's: staff edits of them are refused, and
/// take effect once the same edit (or an earlier one) makes the account internal. What is not
/// synced (the language) staff change as on any record.
#[test]
fn staff_cannot_edit_what_the_sync_owns() {
    let (_d, reg) = open();
    let line = r#"{"type":"patron","institution":"MAIN","primary_id":"S1","first_name":"Cy","last_name":"Ek","account_type":{"external":{"source":"ladok"}},"identifiers":[{"kind":"student-id","value":"ST1"}]}"#;
    reg.import(std::io::Cursor::new(line), &ImportOptions::default(), now()).unwrap();
    let cy = reg.find("MAIN", "ST1").unwrap();
    let set = |field: &str, value: &str| vec![(field.to_string(), value.to_string())];
    for field in crate::engine::SYNCED {
        let e = reg.edit(cy.id, &set(field, "2030-01-01"), now()).unwrap_err();
        assert!(
            matches!(&e, Error::Refused(Refusal::Synced { field: f, source }) if f == field && source == "ladok"),
            "{field}: {e}"
        );
    }
    assert_eq!(reg.store.patron(cy.id).unwrap(), cy, "nothing was written");
    assert_eq!(reg.edit(cy.id, &set("language", "sv"), now()).unwrap().language.as_deref(), Some("sv"));
    let mut both = set("account-type", "internal");
    both.extend(set("first-name", "Cyrus"));
    let p = reg.edit(cy.id, &both, now()).unwrap();
    assert_eq!((p.first_name.as_str(), &p.account_type), ("Cyrus", &AccountType::Internal));
}

#[test]
fn each_import_line_stands_alone_and_sees_the_lines_before_it() {
    // A line refused (a value another patron holds, a loan of an item not yet there) writes
    // nothing; the lines after it go on, and see what the lines before them wrote.
    let (_d, reg) = open();
    let p = added(reg.add_patron(avery(), false, now()).unwrap());
    let file = r#"{"type":"patron","institution":"MAIN","primary_id":"U5","first_name":"Cy","last_name":"Ek","identifiers":[{"kind":"barcode","value":"21234000012345"}]}
{"type":"patron","institution":"MAIN","primary_id":"U6","first_name":"Di","last_name":"Ek","identifiers":[{"kind":"barcode","value":"B6"}]}
{"type":"loan","item":"I9","patron":1,"out":"2026-11-01T10:00:00Z","due":"2026-11-22T22:59:00Z"}
{"type":"item","barcode":"I9","institution":"MAIN","title":"Dune"}
{"type":"loan","item":"I9","patron":PID,"out":"2026-11-01T10:00:00Z","due":"2026-11-22T22:59:00Z"}
"#
    .replace("PID", &p.id.to_string());
    let dry = reg.import(std::io::Cursor::new(&file), &dry(), now()).unwrap();
    assert_eq!(dry.rejected.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec![1, 3], "a dry run decides the same");
    let r = reg.import(std::io::Cursor::new(file), &ImportOptions::default(), now()).unwrap();
    let rejected: Vec<usize> = r.rejected.iter().map(|(n, _)| *n).collect();
    assert_eq!(rejected, vec![1, 3], "{:?}", r.rejected);
    assert!(r.rejected[0].1.contains(&format!("already used by patron {}", p.id)), "{:?}", r.rejected);
    assert_eq!(r.created, 3);
    assert!(reg.find("MAIN", "U5").is_err(), "nothing of the refused line was written");
    assert_eq!(reg.find("MAIN", "B6").unwrap().primary_id, "U6");
    assert_eq!(reg.store.loan("I9").unwrap().unwrap().patron, p.id);
}

/// Units from many threads at once leave what some serial order of them leaves: no item lent
/// twice, every acknowledged payment counted.
#[test]
fn units_from_many_threads_at_once_end_as_a_serial_order() {
    let (_d, reg) = open();
    let a = added(reg.add_patron(avery(), false, now()).unwrap());
    let b = added(reg.add_patron(blake(), false, now()).unwrap());
    let items: Vec<String> = (0..50).map(|n| format!("I{n}")).collect();
    for i in &items {
        reg.add_item(item(i)).unwrap();
    }
    let fee = reg.add_fee(a.id, FeeKind::Overdue, Money(100_00), None, None, now()).unwrap();
    let (lent_a, lent_b, paid) = std::thread::scope(|s| {
        let borrow = |who: u64| {
            let (reg, items) = (reg.clone(), items.clone());
            s.spawn(move || {
                items.iter().filter(|i| reg.checkout(who, i, false, now()).is_ok()).cloned().collect::<Vec<_>>()
            })
        };
        let (ta, tb) = (borrow(a.id), borrow(b.id));
        let payers: Vec<_> = (0..4)
            .map(|_| {
                let reg = reg.clone();
                s.spawn(move || (0..25).filter(|_| reg.pay_fee(fee.id, Money(1), None, now()).is_ok()).count())
            })
            .collect();
        let paid: usize = payers.into_iter().map(|t| t.join().unwrap()).sum();
        (ta.join().unwrap(), tb.join().unwrap(), paid)
    });
    assert_eq!(lent_a.len() + lent_b.len(), items.len(), "each item lent exactly once");
    for i in &items {
        let to = reg.store.loan(i).unwrap().unwrap().patron;
        assert_eq!(to, if lent_a.contains(i) { a.id } else { b.id }, "{i}");
    }
    assert_eq!(paid, 100);
    assert_eq!(reg.store.fee(fee.id).unwrap().unwrap().paid, Money(1_00), "every acknowledged payment counts");
}

fn faulty(
    retry: std::time::Duration,
) -> (tempfile::TempDir, StoreConfig, [std::sync::Arc<std::sync::atomic::AtomicBool>; 3]) {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let flags = [Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false))];
    let faults = Faults {
        full: Some(flags[0].clone()),
        fail_syncs: Some(flags[1].clone()),
        fail_checkpoints: Some(flags[2].clone()),
    };
    let settings = StoreConfig { faults, retry_interval: retry, ..Default::default() };
    (tempfile::tempdir().unwrap(), settings, flags)
}

/// The institution and Avery in `engine`, and the desk that put them there.
fn with_avery(engine: &dyn Engine) -> (Desk<'_>, Patron) {
    let desk = Desk::new(engine, "tester");
    desk.add_institution("MAIN", "Main Library", "SEK", "Europe/Stockholm", now()).unwrap();
    let p = desk.add_patron(avery(), false, now()).unwrap();
    (desk, p)
}

fn set(flag: &std::sync::atomic::AtomicBool, on: bool) {
    flag.store(on, std::sync::atomic::Ordering::SeqCst);
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !f() {
        assert!(std::time::Instant::now() < until, "{what}: not within 20 s");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A batch whose sync fails is acknowledged to no one, never shows in the view, and the engine
/// takes no further change until it has reopened its log; what was durable before is all there is.
#[test]
fn a_failed_sync_acknowledges_nothing_and_stops_every_later_write() {
    let (dir, settings, [_, fail, _]) = faulty(std::time::Duration::from_secs(3600));
    let engine = open_or_create(dir.path(), &settings).unwrap();
    let (desk, p) = with_avery(&engine);
    set(&fail, true);
    let e = desk.run(Operation::Block { patron: p.id, kind: "general".into(), note: None }, now()).unwrap_err();
    assert!(matches!(e, Error::Stopped(_)), "{e}");
    assert!(desk.patron(p.id).unwrap().blocks.is_empty(), "the view shows only what was durable");
    assert!(!engine.healthy());
    set(&fail, false);
    let e = desk.run(Operation::SetActive { patron: p.id, active: false }, now()).unwrap_err();
    assert!(matches!(e, Error::Stopped(_)), "no write after a failed sync until the log is reopened: {e}");
    assert!(desk.patron(p.id).is_ok(), "reads go on");
    drop(engine);
    let reopened = open_or_create(dir.path(), &StoreConfig::default()).unwrap();
    let after = Desk::new(&reopened, "tester").patron(p.id).unwrap();
    // The batch whose sync failed was never acknowledged; reopened, the register holds exactly
    // what was.
    assert!(after.blocks.is_empty() && after.active, "nothing after the failure was made: {after:?}");
    assert_eq!(after.primary_id, "P1", "and what was acknowledged before it is there");
}

/// The engine reopens its log by itself once syncs work again: the batch in doubt is cut from
/// it, and writes go on, durable across a restart.
#[test]
fn after_a_failed_sync_the_engine_reopens_its_log_and_takes_changes_again() {
    let (dir, settings, [_, fail, _]) = faulty(std::time::Duration::from_millis(20));
    let engine = open_or_create(dir.path(), &settings).unwrap();
    let (desk, p) = with_avery(&engine);
    set(&fail, true);
    let e = desk.run(Operation::Block { patron: p.id, kind: "general".into(), note: None }, now()).unwrap_err();
    assert!(matches!(e, Error::Stopped(_)), "{e}");
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(!engine.healthy(), "no reopen while syncs still fail");
    set(&fail, false);
    wait_until("the log reopened", || engine.healthy());
    desk.run(Operation::SetActive { patron: p.id, active: false }, now()).unwrap();
    drop(engine);
    let reopened = open_or_create(dir.path(), &StoreConfig::default()).unwrap();
    let after = Desk::new(&reopened, "tester").patron(p.id).unwrap();
    assert!(after.blocks.is_empty(), "the batch in doubt was cut from the log");
    assert!(!after.active, "the change made after the reopen is there");
}

/// A full disk refuses the batch it stops, keeps answering reads, and takes the next change
/// once there is room, without a reopen; nothing acknowledged is lost.
#[test]
fn a_full_disk_refuses_writes_serves_reads_and_writes_resume_when_there_is_room() {
    let (dir, settings, [full, _, _]) = faulty(std::time::Duration::from_secs(3600));
    let engine = open_or_create(dir.path(), &settings).unwrap();
    let (desk, p) = with_avery(&engine);
    set(&full, true);
    let e = desk.run(Operation::Block { patron: p.id, kind: "general".into(), note: None }, now()).unwrap_err();
    assert!(matches!(e, Error::NotDone(_)) && e.to_string().starts_with("could not complete"), "{e}");
    assert!(engine.healthy(), "a write that never reached the disk does not stop the engine");
    assert!(desk.patron(p.id).unwrap().blocks.is_empty(), "reads go on, without the refused change");
    set(&full, false);
    desk.run(Operation::SetActive { patron: p.id, active: false }, now()).unwrap();
    drop(engine);
    let reopened = open_or_create(dir.path(), &StoreConfig::default()).unwrap();
    let after = Desk::new(&reopened, "tester").patron(p.id).unwrap();
    assert!(after.blocks.is_empty() && !after.active, "{after:?}");
}

/// While sled cannot be written, changes stay acknowledged and durable in the log; the
/// checkpointer reopens sled, reads the log back into it, and then removes what it holds.
#[test]
fn a_failing_checkpoint_loses_nothing_and_sled_catches_up_once_it_can() {
    let (dir, mut settings, [_, _, fail]) = faulty(std::time::Duration::from_millis(20));
    settings.checkpoint_interval = std::time::Duration::from_millis(20);
    settings.segment_bytes = 512;
    let engine = open_or_create(dir.path(), &settings).unwrap();
    let (desk, p) = with_avery(&engine);
    set(&fail, true);
    for i in 0..20 {
        desk.run(
            Operation::AddNote { patron: p.id, kind: "general".into(), text: format!("note {i}"), public: false },
            now(),
        )
        .unwrap();
    }
    wait_until("a checkpoint failed", || engine.stats().checkpoint_failures > 0);
    assert!(engine.healthy(), "the log still takes changes");
    let segments = || std::fs::read_dir(dir.path().join(wal::DIR)).unwrap().count();
    assert!(segments() > 2, "segments are kept while sled lags");
    // sled reopened can be read, though not flushed: the history is all there.
    assert_eq!(desk.history(p.id).unwrap().iter().filter(|e| e.action == "note-add").count(), 20);
    set(&fail, false);
    let before = engine.stats().checkpoints;
    wait_until("a checkpoint made", || engine.stats().checkpoints > before);
    assert_eq!(segments(), 1, "only the segment in use is left");
    let history = desk.history(p.id).unwrap();
    assert_eq!(history.iter().filter(|e| e.action == "note-add").count(), 20);
    drop(engine);
    let reopened = open_or_create(dir.path(), &StoreConfig::default()).unwrap();
    assert_eq!(Desk::new(&reopened, "tester").patron(p.id).unwrap().notes.len(), 20);
}

/// Killed without a checkpoint (here: the log written, sled never told), the register comes
/// back whole from the log at the next open.
#[test]
fn the_log_alone_brings_back_what_sled_never_got() {
    let (dir, mut settings, [_, _, fail]) = faulty(std::time::Duration::from_secs(3600));
    settings.checkpoint_interval = std::time::Duration::from_secs(3600);
    let engine = open_or_create(dir.path(), &settings).unwrap();
    let (desk, p) = with_avery(&engine);
    desk.run(Operation::Block { patron: p.id, kind: "general".into(), note: None }, now()).unwrap();
    // Every checkpoint, the last one at close included, fails: sled keeps none of it.
    set(&fail, true);
    drop(engine);
    let reopened = open_or_create(dir.path(), &StoreConfig::default()).unwrap();
    let after = Desk::new(&reopened, "tester").patron(p.id).unwrap();
    assert_eq!((after.primary_id.as_str(), after.blocks.len()), ("P1", 1));
}

/// A unit refused after many writes leaves the state exactly as it found it: records, indexes
/// and counters, undone write by write (no copy of the state is kept to go back to).
#[test]
fn a_refused_unit_is_undone_write_by_write() {
    use super::state::State;
    use super::store::{Loaded, Write};
    use super::unit::Unit;
    let t = now();
    let patron = |id: u64, card: &str| {
        let mut p = Patron::new(id, "MAIN", &format!("P{id}"), "Pat", &format!("Ron{id}"), t);
        p.identifiers.push(Identifier {
            kind: "barcode".into(),
            value: card.into(),
            note: None,
            active: true,
            internal: true,
        });
        p.email = Some(format!("p{id}@example.org"));
        p
    };
    let item = |b: &str| Item {
        barcode: b.into(),
        institution: "MAIN".into(),
        title: format!("Book {b}"),
        author: None,
        call_number: None,
        location: None,
        media_type: 1,
        status: ItemStatus::default(),
        security_marker: 0,
        rental_fee: None,
        loan_days: None,
        properties: None,
    };
    let loan = |i: &str, p: u64| Loan { item: i.into(), patron: p, out: t, due: t, renewals: 0 };
    let fee = |id: u64, p: u64| Fee {
        id,
        patron: p,
        kind: FeeKind::Overdue,
        amount: Money(5_00),
        paid: Money(0),
        currency: "SEK".into(),
        item: None,
        comment: None,
        status: FeeStatus::Active,
        created: t,
        history: vec![],
        previous_id: None,
    };
    let hold = |id: u64, p: u64, i: &str| Hold {
        id,
        patron: p,
        item: Some(i.into()),
        title: None,
        pickup: "MAIN".into(),
        placed: t,
        expires: None,
        status: HoldStatus::Waiting,
    };
    let loaded = Loaded {
        institutions: vec![Institution::new("MAIN", "Main Library", "SEK", "Europe/Stockholm")],
        patrons: vec![patron(1, "C1"), patron(2, "C2")],
        items: vec![item("I1"), item("I2"), item("I3")],
        loans: vec![loan("I1", 1)],
        fees: vec![fee(10, 1)],
        holds: vec![hold(20, 2, "I1")],
        optouts: vec![(1, vec![NoticeKind::Welcome])],
        last_id: 30,
        audit_seq: 7,
        ..Default::default()
    };
    let mut state = State::build(loaded).unwrap();
    let picture = |s: &State| {
        let mut lines = Vec::new();
        exchange::export(s, "key", &|_, _| Ok(None), &mut |l| {
            lines.push(serde_json::to_string(l).unwrap());
            Ok(())
        })
        .unwrap();
        let indexes = (
            s.patron_by_identifier("MAIN", "C1").map(|p| p.id),
            s.patron_by_identifier("MAIN", "C3").map(|p| p.id),
            s.email_owner("MAIN", "p2@example.org"),
            s.loans_of(1).len(),
            s.loans_of(2).len(),
            s.fees_of(1).len(),
            s.holds_on("I1").len(),
            s.holds_on("I2").len(),
            s.optouts(1).to_vec(),
            s.counters(),
        );
        (lines, format!("{indexes:?}"))
    };
    let before = picture(&state);
    let key = crate::domain::secret::PinKey::generate().unwrap();
    let by = By::new("tester", t);
    let mut unit = Unit::new(&mut state, &key, &by);
    let r: Result<(), Refusal> = unit.attempt(|u| {
        let id = u.new_id();
        u.put(Write::Patron(Box::new(patron(id, "C3"))))?;
        let mut moved = patron(2, "C9");
        moved.email = None;
        u.put(Write::Patron(Box::new(moved)))?;
        u.put(Write::RemovePatron(1))?;
        u.put(Write::Item(Arc::new(Item { title: "Changed".into(), ..item("I2") })))?;
        u.put(Write::RemoveItem("I3".into()))?;
        u.put(Write::EndLoan("I1".into()))?;
        u.put(Write::Loan(Arc::new(loan("I2", 2))))?;
        u.put(Write::RemoveFee(10))?;
        u.put(Write::Fee(Box::new(fee(11, 2))))?;
        u.put(Write::RemoveHold(20))?;
        u.put(Write::Hold(Box::new(hold(21, 1, "I2"))))?;
        u.put(Write::Optouts(1, vec![]))?;
        u.put(Write::Institution(Box::new(Institution::new("NEW", "New", "SEK", "Europe/Stockholm"))))?;
        u.audit(id, "test", vec![]);
        // A claim another patron holds: refused, and with it everything before.
        u.put(Write::Patron(Box::new(patron(99, "C3"))))?;
        Ok(())
    });
    assert!(matches!(r, Err(Refusal::Taken { .. })), "{r:?}");
    assert_eq!(unit.writes(), 0, "the refused part's writes are dropped");
    drop(unit);
    assert_eq!(picture(&state), before);
}

/// A status request tried on the shared view (before the writer) reads it in place when it
/// changes nothing, as with a right PIN; a wrong PIN, which counts against the patron, works
/// on a copy and leaves the view as it was.
#[test]
fn a_read_on_the_view_copies_it_only_when_it_changes_something() {
    use super::state::State;
    use super::store::Loaded;
    use super::unit::Unit;
    let key = crate::domain::secret::PinKey::generate().unwrap();
    let mut p = Patron::new(1, "MAIN", "P1", "Pat", "Ron", now());
    p.identifiers.push(Identifier {
        kind: "barcode".into(),
        value: "C1".into(),
        note: None,
        active: true,
        internal: true,
    });
    p.pin = Some(key.hash(1, "1234"));
    let view = State::build(Loaded {
        institutions: vec![Institution::new("MAIN", "Main Library", "SEK", "Europe/Stockholm")],
        patrons: vec![p],
        last_id: 1,
        ..Default::default()
    })
    .unwrap();
    let by = By::new("kiosk1", now());
    let status = |pin: &str| Operation::KioskPatron {
        at: super::testkit::kiosk("kiosk1"),
        card: "C1".into(),
        pin: Some(Pin(pin.into())),
        detail: false,
    };
    let verdict = |r: Result<Receipt, Error>| match r {
        Ok(Receipt::KioskPatron(Ok(k), _)) => k.pin,
        other => panic!("{other:?}"),
    };

    let mut unit = Unit::reading(&view, &key, &by);
    assert_eq!(verdict(units::run(status("1234"), &mut unit)), PinVerdict::Right);
    assert_eq!((unit.writes(), unit.copied()), (0, false), "a right PIN reads the view in place");

    let mut unit = Unit::reading(&view, &key, &by);
    assert_eq!(verdict(units::run(status("0000"), &mut unit)), PinVerdict::Wrong);
    assert!(unit.writes() > 0 && unit.copied(), "a wrong PIN is counted on a copy");
    assert_eq!(unit.state.patron(1).unwrap().failed_pins, 1);
    drop(unit);
    assert_eq!(view.patron(1).unwrap().failed_pins, 0, "the view is not changed");
}

/// Issue 14, item 6: notes and holds on one patron stop at their caps with a refusal, and the
/// audit history rotates (the oldest entries go at the checkpoint) instead of growing.
#[test]
fn notes_holds_and_history_are_capped_per_patron() {
    let dir = Scratch::new();
    let limits = RegisterLimits {
        max_notes_per_patron: 5,
        max_holds_per_patron: 2,
        max_history_per_patron: 40,
        ..Default::default()
    };
    let settings = StoreConfig { limits, ..Default::default() };
    let engine = Register::open_with(dir.path(), "tester", &settings).unwrap().engine;
    let (desk, p) = with_avery(engine.as_ref());
    let note =
        |n: u32| Operation::AddNote { patron: p.id, kind: "general".into(), text: format!("note {n}"), public: false };
    for n in 0..5 {
        desk.run(note(n), now()).unwrap();
    }
    let e = desk.run(note(5), now()).unwrap_err();
    assert!(matches!(e, Error::Refused(Refusal::Full { what: "notes", limit: 5 })), "{e}");
    assert_eq!(desk.patron(p.id).unwrap().notes.len(), 5, "the refused note is not there");
    for b in ["H1", "H2", "H3"] {
        let item = NewItem { barcode: b.into(), institution: "MAIN".into(), title: b.into(), ..Default::default() };
        desk.add_item(item, now()).unwrap();
    }
    let hold = |b: &str| Operation::PlaceHold {
        patron: p.id,
        target: HoldTarget::Item(b.into()),
        pickup: "MAIN".into(),
        expires: None,
    };
    desk.run(hold("H1"), now()).unwrap();
    desk.run(hold("H2"), now()).unwrap();
    let e = desk.run(hold("H3"), now()).unwrap_err();
    assert!(matches!(e, Error::Refused(Refusal::Full { what: "holds", limit: 2 })), "{e}");
    // 200 changes, each an audit entry: the history keeps the newest 40 once checkpointed.
    for n in 0..100 {
        desk.run(Operation::Block { patron: p.id, kind: "general".into(), note: Some(format!("b{n}")) }, now())
            .unwrap();
        desk.run(Operation::Unblock { patron: p.id, kind: None }, now()).unwrap();
    }
    drop(engine);
    let engine = Register::open_with(dir.path(), "tester", &settings).unwrap().engine;
    let history = Desk::new(engine.as_ref(), "tester").history(p.id).unwrap();
    // The record's creation (always first, from the record itself) and the newest 40.
    assert_eq!(history.len(), 1 + 40, "rotated to the cap");
    assert_eq!(history.last().map(|e| e.action.as_str()), Some("unblock"), "the newest kept");
}
