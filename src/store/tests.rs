//! The store against a temporary directory.

use jiff::Timestamp;
use jiff::civil::date;

use super::*;
use crate::domain::*;

fn now() -> Timestamp {
    "2026-11-22T10:00:00Z".parse().unwrap()
}

fn institution(code: &str) -> Institution {
    Institution::new(code, &format!("{code} library"), "SEK", "Europe/Stockholm")
}

fn patron(id: u64, primary: &str, barcode: &str, email: Option<&str>) -> Patron {
    Patron {
        birth_date: Some(date(1990, 5, 17)),
        email: email.map(Into::into),
        identifiers: vec![Identifier {
            kind: "barcode".into(),
            value: barcode.into(),
            note: None,
            active: true,
            internal: true,
        }],
        ..Patron::new(id, "MAIN", primary, "Avery", "Reader", now())
    }
}

fn created(id: u64) -> AuditEntry {
    AuditEntry { patron: id, at: now(), by: "test".into(), action: "add".into(), changes: vec![] }
}

/// Stores a new patron and its audit entry as the register does: one atomic group, flushed.
fn add(store: &Store, p: &Patron, audit: &AuditEntry) -> Result<(), StoreError> {
    store.apply(&[Write::Patron(Box::new(p.clone())), Write::Audit(audit.clone())])?;
    store.flush()
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.add_institution(&institution("MAIN")).unwrap();
    (dir, store)
}

#[test]
fn institutions_are_unique_by_code() {
    let (_dir, store) = open();
    assert!(matches!(store.add_institution(&institution("MAIN")), Err(StoreError::InstitutionExists(_))));
    store.add_institution(&institution("BRANCH2")).unwrap();
    let codes: Vec<_> = store.institutions().unwrap().into_iter().map(|i| i.code).collect();
    assert_eq!(codes, vec!["BRANCH2", "MAIN"]);
    assert!(matches!(store.institution("NOPE"), Err(StoreError::NoInstitution(_))));
}

#[test]
fn patrons_are_found_by_any_identifier_and_e_mail() {
    let (_dir, store) = open();
    add(&store, &patron(1, "P1", "21234000012345", Some("Avery@Example.org")), &created(1)).unwrap();
    let by_barcode = store.patron_by_identifier("MAIN", "21234000012345").unwrap().unwrap();
    assert_eq!(by_barcode.id, 1);
    assert_eq!(store.patron_by_identifier("MAIN", "P1").unwrap().unwrap().id, 1);
    assert!(store.patron_by_identifier("OTHER", "21234000012345").unwrap().is_none());
    assert_eq!(store.patron_by_email("MAIN", "avery@example.ORG").unwrap().unwrap().id, 1);
    assert_eq!(store.patrons_by_name("MAIN", "read").unwrap().len(), 1);
    assert_eq!(store.history(1).unwrap().len(), 1);
}

#[test]
fn unique_values_are_refused_and_nothing_is_half_written() {
    let (_dir, store) = open();
    add(&store, &patron(1, "P1", "B1", Some("a@example.org")), &created(1)).unwrap();
    for (p, what) in [
        (patron(2, "P1", "B2", None), "primary id"),
        (patron(2, "P2", "B1", None), "identifier"),
        (patron(2, "P2", "P1", None), "identifier"),
        (patron(2, "P2", "B2", Some("A@example.org")), "e-mail"),
    ] {
        match add(&store, &p, &created(2)) {
            Err(StoreError::Taken { what: w, patron: 1, .. }) => assert_eq!(w, what),
            other => panic!("{what}: {other:?}"),
        }
        // The refused patron left no trace: its own barcode is still free.
        assert!(store.patron_by_identifier("MAIN", "B2").unwrap().is_none());
        assert!(store.patron(2).is_err());
    }
}

#[test]
fn updates_move_indexes_and_record_history() {
    let (_dir, store) = open();
    add(&store, &patron(1, "P1", "B1", Some("a@example.org")), &created(1)).unwrap();
    add(&store, &patron(2, "P2", "B2", None), &created(2)).unwrap();
    let updated = store
        .update_patron(1, |mut p| {
            p.identifiers[0].value = "B9".into();
            p.email = Some("new@example.org".into());
            let audit = AuditEntry {
                patron: 1,
                at: now() + jiff::Span::new().seconds(1),
                by: "staff".into(),
                action: "edit".into(),
                changes: vec![("email".into(), "a@example.org".into(), "new@example.org".into())],
            };
            Ok((p, audit))
        })
        .unwrap();
    assert_eq!(updated.email.as_deref(), Some("new@example.org"));
    assert!(store.patron_by_identifier("MAIN", "B1").unwrap().is_none());
    assert_eq!(store.patron_by_identifier("MAIN", "B9").unwrap().unwrap().id, 1);
    assert!(store.patron_by_email("MAIN", "a@example.org").unwrap().is_none());
    assert_eq!(store.history(1).unwrap().len(), 2);

    // Taking another patron's barcode is refused, and the record is unchanged.
    let err = store
        .update_patron(1, |mut p| {
            p.identifiers[0].value = "B2".into();
            Ok((p, created(1)))
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::Taken { patron: 2, .. }), "{err:?}");
    assert_eq!(store.patron_by_identifier("MAIN", "B9").unwrap().unwrap().id, 1);

    // A refusal from the change itself aborts the transaction.
    let err = store.update_patron(1, |_| Err(StoreError::Refused("no".into()))).unwrap_err();
    assert!(matches!(err, StoreError::Refused(_)));
}

#[test]
fn duplicates_are_found_by_name_and_birth_date() {
    let (_dir, store) = open();
    add(&store, &patron(1, "P1", "B1", None), &created(1)).unwrap();
    let twin = patron(2, "P2", "B2", None);
    assert_eq!(store.same_person(&twin).unwrap(), vec![1]);
    let mut other = patron(3, "P3", "B3", None);
    other.birth_date = Some(date(1991, 1, 1));
    assert!(store.same_person(&other).unwrap().is_empty());
}

#[test]
fn fees_are_listed_per_patron_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.add_institution(&institution("MAIN")).unwrap();
        add(&store, &patron(1, "P1", "B1", None), &created(1)).unwrap();
        for (id, cents) in [(10, 250), (11, 100)] {
            let fee = Fee {
                id,
                patron: 1,
                kind: FeeKind::Overdue,
                amount: Money(cents),
                paid: Money::ZERO,
                currency: "SEK".into(),
                item: None,
                comment: None,
                status: FeeStatus::Active,
                created: now(),
                history: vec![],
            };
            store.put_fee(&fee, &created(1)).unwrap();
        }
    }
    let store = Store::open(dir.path()).unwrap();
    let fees = store.fees_of(1).unwrap();
    assert_eq!(fees.iter().map(|f| f.id).collect::<Vec<_>>(), vec![10, 11]);
    assert_eq!(crate::domain::rules::balance(&fees), Money(350));
    assert!(store.fees_of(2).unwrap().is_empty());
}

#[test]
fn ids_are_fresh_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let s = Store::open(dir.path()).unwrap();
        let a = s.new_id().unwrap();
        let b = s.new_id().unwrap();
        assert_eq!((a, b), (1, 2));
        s.flush().unwrap();
        b
    };
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.new_id().unwrap(), first + 1);
}

#[test]
fn a_store_in_use_is_reported_plainly() {
    let (dir, _store) = open();
    match Store::open(dir.path()) {
        Err(e @ StoreError::Locked { .. }) => assert!(e.to_string().contains("in use by another process")),
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("a second open of the same store succeeded"),
    }
}
