//! Staff accounts through the engine: logins decided in the commit (lockout counted serially
//! however many arrive at once), and a member's role and institutions checked inside every
//! unit they ask for, against their account as it is then.

use jiff::{SignedDuration, Timestamp};

use super::testkit::{Added, Reg, Scratch};
use super::*;
use crate::domain::*;

fn now() -> Timestamp {
    "2026-12-03T10:00:00Z".parse().unwrap()
}

fn open() -> (Scratch, Reg) {
    let dir = Scratch::new();
    let reg = Reg::open(dir.path(), "tester").unwrap();
    reg.add_institution("MAIN", "Main Library", "SEK", "Europe/Stockholm").unwrap();
    reg.add_institution("BRANCH", "Harbour Branch", "SEK", "Europe/Stockholm").unwrap();
    (dir, reg)
}

fn patron(reg: &Reg, institution: &str, primary: &str) -> Patron {
    let new = NewPatron {
        institution: institution.into(),
        primary_id: primary.into(),
        first_name: "Avery".into(),
        last_name: primary.into(),
        ..Default::default()
    };
    match reg.add_patron(new, false, now()).unwrap() {
        Added::Patron(p) => *p,
        other => panic!("{other:?}"),
    }
}

/// A staff account with a fixed (unusable) hash: these tests decide logins on `matched`.
fn member(reg: &Reg, login: &str, role: Role, institutions: &[&str]) -> Staff {
    let op = Operation::AddStaff {
        login: login.into(),
        name: format!("Member {login}"),
        password_hash: format!("hash-of-{login}"),
        role,
        institutions: institutions.iter().map(|s| s.to_string()).collect(),
    };
    reg.run(op, now()).unwrap().staff().unwrap()
}

fn as_member(reg: &Reg, m: &Staff, op: Operation) -> Result<Receipt, Error> {
    reg.engine.run(op, By::staff(m, now())).wait()
}

fn login(reg: &Reg, login: &str, matched: Option<&str>, at: Timestamp) -> Result<Staff, Refusal> {
    let op = Operation::StaffLogin { login: login.into(), matched: matched.map(Into::into) };
    // The engine's own answer: a refused login still writes what it counts.
    match reg.engine.run(op, By::new("sip2d", at)).wait() {
        Ok(Receipt::Staff(m)) => Ok(*m),
        Ok(Receipt::Refused(r)) => Err(r),
        other => panic!("{other:?}"),
    }
}

/// Twelve wrong passwords at once: the same answers as twelve in a row (4, 3, 2, 1 tries
/// left, then locked by the fifth, then "locked" for the other seven), and the right password
/// is refused until the lock has run out.
#[test]
fn wrong_passwords_at_once_lock_as_they_would_in_a_row() {
    for _round in 0..5 {
        let (_d, reg) = open();
        let anna = member(&reg, "anna", Role::UserManager, &["MAIN"]);
        let verdicts: Vec<Result<Staff, Refusal>> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..12)
                .map(|_| {
                    let reg = reg.clone();
                    s.spawn(move || login(&reg, "anna", None, now()))
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let until = now() + SignedDuration::from_mins(15);
        let mut remaining: Vec<u32> = verdicts
            .iter()
            .filter_map(|v| match v {
                Err(Refusal::WrongPassword { remaining }) => Some(*remaining),
                _ => None,
            })
            .collect();
        remaining.sort_unstable();
        assert_eq!(remaining, vec![0, 1, 2, 3, 4], "{verdicts:?}");
        let locked = verdicts.iter().filter(|v| matches!(v, Err(Refusal::StaffLocked(t)) if *t == until)).count();
        assert_eq!(locked, 7, "{verdicts:?}");
        let right = Some(anna.password_hash.as_str());
        assert_eq!(login(&reg, "anna", right, now() + SignedDuration::from_mins(14)), Err(Refusal::StaffLocked(until)));
        let open = login(&reg, "anna", right, until).unwrap();
        assert_eq!((open.failures, open.last_login), (0, Some(until)));
        assert!(open.history.iter().any(|e| e.what.contains("locked after 5")), "{:?}", open.history);
    }
}

/// A password checked against a hash that was replaced meanwhile does not open the account,
/// and an unknown login is answered as a wrong password.
#[test]
fn a_stale_password_check_and_an_unknown_login_are_wrong_passwords() {
    let (_d, reg) = open();
    let anna = member(&reg, "anna", Role::Desk, &["MAIN"]);
    let op = Operation::SetStaffPassword { login: "anna".into(), password_hash: "new".into(), matched: None };
    reg.run(op, now()).unwrap();
    assert!(matches!(login(&reg, "anna", Some(&anna.password_hash), now()), Err(Refusal::WrongPassword { .. })));
    assert!(login(&reg, "anna", Some("new"), now()).is_ok());
    assert!(matches!(login(&reg, "nobody", Some("new"), now()), Err(Refusal::WrongPassword { .. })));
}

#[test]
fn members_act_within_their_role_and_institutions() {
    let (_d, reg) = open();
    let ours = patron(&reg, "MAIN", "P1");
    let theirs = patron(&reg, "BRANCH", "P2");
    let fee = reg.add_fee(theirs.id, FeeKind::Overdue, Money(500), None, None, now()).unwrap();
    let manager = member(&reg, "manager", Role::UserManager, &["MAIN"]);
    let desk = member(&reg, "desk", Role::Desk, &["MAIN"]);
    let block = |p: u64| Operation::Block { patron: p, kind: "general".into(), note: Some("lost card".into()) };

    as_member(&reg, &manager, block(ours.id)).unwrap().patron().unwrap();
    let entry = reg.history(ours.id).unwrap().pop().unwrap();
    assert_eq!(entry.by, "Member manager (manager)");

    let refused = |r: Result<Receipt, Error>| match r {
        Err(Error::Refused(r)) => r,
        other => panic!("{other:?}"),
    };
    assert!(matches!(refused(as_member(&reg, &desk, block(ours.id))), Refusal::NotPermitted { .. }));
    let delete = Operation::DeletePatron { patron: ours.id };
    assert!(matches!(refused(as_member(&reg, &manager, delete)), Refusal::NotPermitted { .. }));
    // Another institution's patron, fee and institution are not there for them.
    assert!(matches!(refused(as_member(&reg, &manager, block(theirs.id))), Refusal::NoPatron(_)));
    let waive = Operation::WaiveFee { fee: fee.id, reason: "x".into() };
    assert_eq!(refused(as_member(&reg, &manager, waive)), Refusal::NoFee(fee.id));
    let new = NewPatron {
        institution: "BRANCH".into(),
        primary_id: "P3".into(),
        first_name: "A".into(),
        last_name: "B".into(),
        ..Default::default()
    };
    let add = Operation::AddPatron { new: Box::new(new), force: false };
    assert_eq!(refused(as_member(&reg, &manager, add)), Refusal::NoInstitution("BRANCH".into()));
    assert!(!reg.history(theirs.id).unwrap().iter().any(|e| e.by.contains("manager")));

    // Staff accounts: no more than one's own role, no other institution.
    let admin = member(&reg, "admin", Role::UserAdministrator, &["MAIN"]);
    let give = |login: &str, role: Role, inst: &str| Operation::AddStaff {
        login: login.into(),
        name: "N".into(),
        password_hash: "h".into(),
        role,
        institutions: vec![inst.into()],
    };
    assert!(as_member(&reg, &admin, give("m2", Role::UserManager, "MAIN")).is_ok());
    assert!(matches!(
        refused(as_member(&reg, &admin, give("m3", Role::MainAdministrator, "MAIN"))),
        Refusal::NotPermitted { .. }
    ));
    assert!(as_member(&reg, &admin, give("m4", Role::Desk, "BRANCH")).is_err());
    assert!(matches!(refused(as_member(&reg, &manager, give("m5", Role::Desk, "MAIN"))), Refusal::NotPermitted { .. }));
    // One's own password given the current one; a colleague's, only for an administrator,
    // and only below their own role; a token only for oneself.
    let pw = |login: &str, matched: Option<&str>| Operation::SetStaffPassword {
        login: login.into(),
        password_hash: "p".into(),
        matched: matched.map(Into::into),
    };
    assert!(as_member(&reg, &manager, pw("manager", None)).is_err(), "the current password is needed");
    assert!(as_member(&reg, &manager, pw("manager", Some("wrong"))).is_err());
    assert!(as_member(&reg, &manager, pw("manager", Some(&manager.password_hash))).is_ok());
    assert!(as_member(&reg, &manager, pw("desk", None)).is_err());
    assert!(as_member(&reg, &admin, pw("desk", None)).is_ok());
    let peer = member(&reg, "peer", Role::UserAdministrator, &["MAIN"]);
    assert!(as_member(&reg, &admin, pw("peer", None)).is_err(), "a peer's account is not theirs to take");
    let token =
        |login: &str| Operation::AddStaffToken { login: login.into(), label: "x".into(), digest: "00".repeat(32) };
    assert!(as_member(&reg, &admin, token("desk")).is_err(), "a token for someone else");
    assert!(as_member(&reg, &peer, token("peer")).is_ok());

    // A patron asked to move to MAIN is seen there, but not changed, until MAIN accepts.
    let moving = Operation::RequestTransfer { patron: theirs.id, to: "MAIN".into() };
    reg.run(moving, now()).unwrap();
    assert!(matches!(refused(as_member(&reg, &manager, block(theirs.id))), Refusal::NoPatron(_)));
    let accept = Operation::DecideTransfer { patron: theirs.id, accept: true };
    assert_eq!(as_member(&reg, &manager, accept).unwrap().patron().unwrap().institution, "MAIN");
    assert!(as_member(&reg, &manager, block(theirs.id)).is_ok(), "theirs now");
}

/// The role is read inside the unit: a member demoted, or removed, is refused from the next
/// unit on. A removal racing a member's edits: every edit acknowledged is in the history, and
/// none lands after the removal.
#[test]
fn roles_are_read_in_the_commit() {
    let (_d, reg) = open();
    let p = patron(&reg, "MAIN", "P1");
    let manager = member(&reg, "manager", Role::UserManager, &["MAIN"]);
    let note =
        |n: u32| Operation::AddNote { patron: p.id, kind: "general".into(), text: format!("n{n}"), public: false };
    let demote =
        Operation::ChangeStaff { login: "manager".into(), name: None, role: Some(Role::Desk), institutions: None };
    reg.run(demote, now()).unwrap();
    assert!(as_member(&reg, &manager, note(0)).is_err());
    let promote = Operation::ChangeStaff {
        login: "manager".into(),
        name: None,
        role: Some(Role::UserManager),
        institutions: None,
    };
    reg.run(promote, now()).unwrap();

    for round in 0..10u32 {
        let login = format!("m{round}");
        let m = member(&reg, &login, Role::UserManager, &["MAIN"]);
        let acknowledged = std::thread::scope(|s| {
            let writer = {
                let (reg, m) = (reg.clone(), m.clone());
                s.spawn(move || (0..20).filter(|n| as_member(&reg, &m, note(round * 100 + n)).is_ok()).count())
            };
            let remover = {
                let reg = reg.clone();
                let login = login.clone();
                s.spawn(move || {
                    std::thread::yield_now();
                    reg.run(Operation::RemoveStaff { login }, now()).unwrap();
                })
            };
            remover.join().unwrap();
            writer.join().unwrap()
        });
        let by = format!("Member {login} ({login})");
        let written = reg.history(p.id).unwrap().iter().filter(|e| e.by == by).count();
        assert_eq!(written, acknowledged, "round {round}: every acknowledged note, and no other, is written");
        assert!(as_member(&reg, &m, note(9999)).is_err(), "removed: refused");
    }
}
