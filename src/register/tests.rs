//! Staff operations end to end against a temporary store.

use jiff::Timestamp;
use jiff::civil::{Date, date};

use super::*;

const TODAY: Date = date(2026, 11, 22);

fn now() -> Timestamp {
    "2026-11-22T10:00:00Z".parse().unwrap()
}

fn open() -> (tempfile::TempDir, Register) {
    let dir = tempfile::tempdir().unwrap();
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
    let p = added(reg.add_patron(avery(), false, TODAY, now()).unwrap());
    let mut twin = avery();
    twin.primary_id = "P2".into();
    twin.barcodes = vec!["B2".into()];
    assert!(
        matches!(reg.add_patron(twin.clone(), false, TODAY, now()).unwrap(), Added::PossibleDuplicate(ids) if ids == vec![p.id])
    );
    added(reg.add_patron(twin, true, TODAY, now()).unwrap());

    let mut kid = avery();
    kid.primary_id = "K1".into();
    kid.barcodes = vec![];
    kid.first_name = "Kim".into();
    kid.birth_date = Some(date(2015, 1, 1));
    assert!(reg.add_patron(kid.clone(), false, TODAY, now()).unwrap_err().to_string().contains("guardian"));
    kid.guardian = Some(Guardian { name: "Pat Parent".into(), contact: "070-1234567".into() });
    kid.terms_accepted = Some(TODAY);
    added(reg.add_patron(kid, false, TODAY, now()).unwrap());

    let mut swede = avery();
    swede.primary_id = "S1".into();
    swede.first_name = "Sven".into();
    swede.barcodes = vec![];
    swede.national_id = Some("811218-9877".into());
    assert!(reg.add_patron(swede.clone(), false, TODAY, now()).unwrap_err().to_string().contains("check digit"));
    swede.national_id = Some("811218-9876".into());
    let s = added(reg.add_patron(swede, false, TODAY, now()).unwrap());
    assert_eq!(reg.find("MAIN", "198112189876").unwrap().id, s.id);

    let mut nameless = avery();
    nameless.first_name = " ".into();
    assert!(reg.add_patron(nameless, true, TODAY, now()).unwrap_err().to_string().contains("first name is required"));
}

#[test]
fn pins_lock_after_five_wrong_tries_and_staff_unlock() {
    let (_d, reg) = open();
    let p = added(reg.add_patron(avery(), false, TODAY, now()).unwrap());
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
    let p = added(reg.add_patron(avery(), false, TODAY, now()).unwrap());
    let a = reg.add_fee(p.id, FeeKind::Overdue, Money(30_00), None, None, now()).unwrap();
    let b = reg.add_fee(p.id, FeeKind::Damage, Money(20_00), Some("31234"), None, now()).unwrap();
    assert!(reg.add_fee(p.id, FeeKind::Other, Money(-5_00), None, None, now()).is_err());
    reg.add_fee(p.id, FeeKind::Other, Money(-5_00), None, Some("goodwill"), now()).unwrap();
    assert_eq!(reg.balance(p.id).unwrap(), Money(45_00));

    reg.dispute_fee(a.id, now()).unwrap();
    assert_eq!(reg.balance(p.id).unwrap(), Money(15_00));
    reg.restore_fee(a.id, now()).unwrap();
    assert_eq!(reg.balance(p.id).unwrap(), Money(45_00));

    assert!(reg.pay_fee(b.id, Money(25_00), None, now()).unwrap_err().to_string().contains("at most 20.00"));
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
    let p = added(reg.add_patron(avery(), false, TODAY, now()).unwrap());

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
    let actions: Vec<String> = reg.store.history(p.id).unwrap().into_iter().map(|e| e.action).collect();
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
