//! The details tabs' units (contacts, statistical categories, attachments, the picture), each
//! against a temporary register; and a register an earlier sip2d wrote (store format 2, log
//! records of then) read into today's records.

use jiff::Timestamp;
use jiff::civil::date;

use super::ops::FileBytes;
use super::testkit::{Added, Reg as Register, Scratch};
use super::*;
use crate::domain::*;

fn now() -> Timestamp {
    "2026-11-22T10:00:00Z".parse().unwrap()
}

fn open() -> (Scratch, Register) {
    let dir = Scratch::new();
    let reg = Register::open(dir.path(), "tester").unwrap();
    reg.add_institution("MAIN", "Main Library", "SEK", "Europe/Stockholm").unwrap();
    (dir, reg)
}

fn patron(reg: &Register, primary_id: &str, first: &str, email: Option<&str>) -> Patron {
    let new = NewPatron {
        institution: "MAIN".into(),
        primary_id: primary_id.into(),
        first_name: first.into(),
        last_name: "Reader".into(),
        birth_date: Some(date(1990, 5, 17)),
        email: email.map(String::from),
        ..Default::default()
    };
    match reg.add_patron(new, false, now()).unwrap() {
        Added::Patron(p) => *p,
        Added::PossibleDuplicate(ids) => panic!("duplicate of {ids:?}"),
    }
}

fn op(reg: &Register, op: Operation) -> Result<Patron, Error> {
    reg.run(op, now())?.patron()
}

fn contact(patron: u64, kind: ContactKind, value: &str) -> Operation {
    Operation::AddContact { patron, kind, value: value.into(), postal_code: None, usage: ContactUse::Work }
}

fn refusal(e: Error) -> Refusal {
    match e {
        Error::Refused(r) => r,
        other => panic!("not a refusal: {other}"),
    }
}

#[test]
fn contacts_are_checked_unique_and_swap_with_the_preferred_one() {
    let (_d, reg) = open();
    let a = patron(&reg, "P1", "Avery", Some("avery@example.org"));
    let b = patron(&reg, "P2", "Blake", Some("blake@example.org"));

    let p = op(&reg, contact(a.id, ContactKind::Email, "avery@work.example")).unwrap();
    assert_eq!(p.contacts.len(), 1);
    assert_eq!(p.contacts[0].usage, ContactUse::Work);
    // Found by it, as by the preferred one.
    assert_eq!(reg.find("MAIN", "AVERY@work.example").unwrap().id, a.id);

    // Another patron of the institution can take neither of Avery's e-mails, as a contact or
    // as their preferred one; nor Avery twice the same one.
    let e = refusal(op(&reg, contact(b.id, ContactKind::Email, "Avery@Work.example")).unwrap_err());
    assert!(matches!(e, Refusal::Taken { what: "e-mail", patron, .. } if patron == a.id), "{e:?}");
    let e = refusal(reg.edit(b.id, &[("email".into(), "avery@work.example".into())], now()).unwrap_err());
    assert!(matches!(e, Refusal::Taken { .. }), "{e:?}");
    let e = refusal(op(&reg, contact(a.id, ContactKind::Email, "avery@example.org")).unwrap_err());
    assert!(matches!(e, Refusal::Exists { .. }), "{e:?}");
    // Shapes as for the preferred field.
    let e = refusal(op(&reg, contact(a.id, ContactKind::Email, "not-an-address")).unwrap_err());
    assert!(matches!(e, Refusal::Invalid(_)), "{e:?}");
    let e = refusal(op(&reg, contact(a.id, ContactKind::Phone, "07|0")).unwrap_err());
    assert!(matches!(e, Refusal::Invalid(_)), "{e:?}");

    // Preferred: the contact takes the record's field, and the field's old value becomes the
    // contact; notices now go to the new one.
    let p = op(&reg, Operation::PreferContact { patron: a.id, contact: 1 }).unwrap();
    assert_eq!(p.email.as_deref(), Some("avery@work.example"));
    assert_eq!(p.contacts[0].value, "avery@example.org");
    assert_eq!(p.contacts[0].id, 1);

    // An address carries its postal code along.
    let addr = Operation::AddContact {
        patron: a.id,
        kind: ContactKind::Address,
        value: "Storgatan 1, Lund".into(),
        postal_code: Some("222 22".into()),
        usage: ContactUse::Home,
    };
    let p = op(&reg, addr).unwrap();
    let id = p.contacts.iter().find(|c| c.kind == ContactKind::Address).unwrap().id;
    let p = op(&reg, Operation::PreferContact { patron: a.id, contact: id }).unwrap();
    assert_eq!((p.address.as_deref(), p.postal_code.as_deref()), (Some("Storgatan 1, Lund"), Some("222 22")));
    assert!(p.contacts.iter().all(|c| c.kind != ContactKind::Address), "no address before, so none is left");

    // Removed, the e-mail is free for another patron.
    let p = op(&reg, Operation::RemoveContact { patron: a.id, contact: 1 }).unwrap();
    assert!(p.contacts.is_empty());
    op(&reg, contact(b.id, ContactKind::Email, "avery@example.org")).unwrap();
    let e = refusal(op(&reg, Operation::RemoveContact { patron: a.id, contact: 1 }).unwrap_err());
    assert!(matches!(e, Refusal::NoEntry { what: "contact", id: 1 }), "{e:?}");

    let h = reg.history(a.id).unwrap();
    let actions: Vec<&str> = h.iter().map(|e| e.action.as_str()).collect();
    assert!(actions.contains(&"contact-add") && actions.contains(&"contact-prefer"), "{actions:?}");
}

#[test]
fn contacts_and_statistics_are_capped() {
    let dir = Scratch::new();
    let limits = RegisterLimits { max_contacts_per_patron: 2, max_statistics_per_patron: 2, ..Default::default() };
    let engine =
        Register::open_with(dir.path(), "tester", &StoreConfig { limits, ..Default::default() }).unwrap().engine;
    let desk = Desk::new(engine.as_ref(), "tester");
    desk.add_institution("MAIN", "Main Library", "SEK", "Europe/Stockholm", now()).unwrap();
    let new = NewPatron {
        institution: "MAIN".into(),
        primary_id: "P1".into(),
        first_name: "A".into(),
        last_name: "R".into(),
        ..Default::default()
    };
    let p = desk.add_patron(new, false, now()).unwrap();
    for n in 0..2 {
        desk.run(contact(p.id, ContactKind::Phone, &format!("070-00{n}")), now()).unwrap();
        desk.run(Operation::AddStatistic { patron: p.id, category: format!("c{n}"), note: None }, now()).unwrap();
    }
    let e = refusal(desk.run(contact(p.id, ContactKind::Phone, "070-009"), now()).unwrap_err());
    assert!(matches!(e, Refusal::Full { what: "contacts", limit: 2 }), "{e:?}");
    let e = refusal(
        desk.run(Operation::AddStatistic { patron: p.id, category: "c9".into(), note: None }, now()).unwrap_err(),
    );
    assert!(matches!(e, Refusal::Full { what: "statistical categories", limit: 2 }), "{e:?}");
}

#[test]
fn statistical_categories_are_codes_once_each() {
    let (_d, reg) = open();
    let a = patron(&reg, "P1", "Avery", None);
    let add = |category: &str, note: Option<&str>| {
        op(&reg, Operation::AddStatistic { patron: a.id, category: category.into(), note: note.map(String::from) })
    };
    let p = add("distance-student", Some("from 2026")).unwrap();
    assert_eq!(p.statistics[0].category, "distance-student");
    assert_eq!(p.statistics[0].note.as_deref(), Some("from 2026"));
    assert!(matches!(refusal(add("distance-student", None).unwrap_err()), Refusal::Exists { .. }));
    assert!(matches!(refusal(add("two words", None).unwrap_err()), Refusal::Rule(_)));
    assert!(matches!(refusal(add("", None).unwrap_err()), Refusal::Invalid(_)));
    let p = op(&reg, Operation::RemoveStatistic { patron: a.id, statistic: 1 }).unwrap();
    assert!(p.statistics.is_empty());
}

fn file(reg: &Register, patron: u64, file: u32) -> Result<(FileInfo, Vec<u8>), Error> {
    match reg.engine.query(Query::File { patron, file }).wait()? {
        Answer::File(info, bytes) => Ok((*info, bytes.0)),
        other => panic!("{other:?}"),
    }
}

const PNG: &[u8] = &[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, b'I', b'H', b'D', b'R'];

#[test]
fn attachments_keep_their_bytes_and_are_typed_from_them() {
    let dir = Scratch::new();
    let limits = RegisterLimits { max_attachment_bytes: 1000, max_attachments_per_patron: 3, ..Default::default() };
    let settings = StoreConfig { limits, ..Default::default() };
    let reg = Register::open_with(dir.path(), "tester", &settings).unwrap();
    reg.add_institution("MAIN", "Main Library", "SEK", "Europe/Stockholm").unwrap();
    let a = patron(&reg, "P1", "Avery", None);
    let attach = |name: &str, bytes: &[u8]| {
        op(&reg, Operation::AddAttachment { patron: a.id, name: name.into(), content: FileBytes(bytes.to_vec()) })
    };

    // What the uploader calls a page is kept as the text it is: the type comes from the bytes.
    let html = b"<html><script>alert(1)</script></html>";
    let p = attach("C:\\Users\\desk\\consent.html", html).unwrap();
    assert_eq!(p.attachments[0].name, "consent.html", "the path is not kept");
    assert_eq!(p.attachments[0].media_type, "text/plain");
    let p = attach("scan.png", PNG).unwrap();
    assert_eq!(p.attachments[1].media_type, "image/png");
    let p = attach("blob.bin", &[0, 1, 2, 0xff]).unwrap();
    assert_eq!(p.attachments[2].media_type, "application/octet-stream");

    assert_eq!(file(&reg, a.id, 1).unwrap().1, html);
    assert_eq!(file(&reg, a.id, 2).unwrap().1, PNG);

    let e = refusal(attach("more.txt", b"x").unwrap_err());
    assert!(matches!(e, Refusal::Full { what: "attachments", limit: 3 }), "{e:?}");
    op(&reg, Operation::RemoveAttachment { patron: a.id, attachment: 3 }).unwrap();
    let e = refusal(attach("big.txt", &vec![b'a'; 1001]).unwrap_err());
    assert!(matches!(e, Refusal::TooLarge { what: "attachment", bytes: 1001, limit: 1000 }), "{e:?}");
    assert!(matches!(refusal(attach("empty.txt", b"").unwrap_err()), Refusal::AsItStands(AsItStands::EmptyFile)));
    assert!(matches!(refusal(file(&reg, a.id, 3).unwrap_err()), Refusal::NoEntry { what: "attachment", id: 3 }));

    // Kept across a restart, in the store alone.
    drop(reg);
    let reg = Register::open_with(dir.path(), "tester", &settings).unwrap();
    assert_eq!(file(&reg, a.id, 1).unwrap().1, html);
    let (info, bytes) = file(&reg, a.id, 2).unwrap();
    assert_eq!((info.name.as_str(), bytes.as_slice()), ("scan.png", PNG));
}

#[test]
fn a_picture_is_an_image_within_its_limit_and_goes_with_the_patron() {
    let (_d, reg) = open();
    let a = patron(&reg, "P1", "Avery", None);
    let set =
        |c: Option<&[u8]>| op(&reg, Operation::SetPicture { patron: a.id, content: c.map(|c| FileBytes(c.to_vec())) });
    assert!(matches!(refusal(set(Some(b"<svg onload=alert(1)>")).unwrap_err()), Refusal::NotAPicture));
    let big = [PNG, &vec![0; 256 * 1024][..]].concat();
    assert!(matches!(refusal(set(Some(&big)).unwrap_err()), Refusal::TooLarge { what: "picture", .. }));
    let p = set(Some(PNG)).unwrap();
    assert_eq!(p.picture.as_ref().map(|f| f.media_type.as_str()), Some("image/png"));
    assert_eq!(file(&reg, a.id, 0).unwrap().1, PNG);
    let p = set(None).unwrap();
    assert!(p.picture.is_none());
    assert!(matches!(refusal(file(&reg, a.id, 0).unwrap_err()), Refusal::NoEntry { what: "picture", .. }));
    assert!(matches!(refusal(set(None).unwrap_err()), Refusal::NoEntry { .. }));

    // Deleted, then purged: the files go with the record.
    set(Some(PNG)).unwrap();
    op(&reg, Operation::AddAttachment { patron: a.id, name: "f.txt".into(), content: FileBytes(b"hi".to_vec()) })
        .unwrap();
    reg.delete(a.id, now()).unwrap();
    assert_eq!(file(&reg, a.id, 1).unwrap().1, b"hi", "kept in the bank of deleted users");
    let report = reg.purge(now(), false).unwrap();
    assert_eq!(report.removed.len(), 1);
    assert!(file(&reg, a.id, 1).is_err());
}

/// Two staff members add contacts to one patron at once, and two patrons are given the same
/// e-mail at once: every acknowledged contact is there with its own number, and the e-mail is
/// one patron's.
#[test]
fn contacts_added_at_once_end_as_a_serial_order() {
    let (_d, reg) = open();
    let a = patron(&reg, "P1", "Avery", None);
    let b = patron(&reg, "P2", "Blake", None);
    for round in 0..6 {
        let (ok_a, ok_b, phones) = std::thread::scope(|s| {
            let claim = |who: u64| {
                let reg = reg.clone();
                s.spawn(move || {
                    op(&reg, contact(who, ContactKind::Email, &format!("shared{round}@example.org"))).is_ok()
                })
            };
            let phone = |n: u32| {
                let reg = reg.clone();
                s.spawn(move || {
                    op(&reg, contact(a.id, ContactKind::Phone, &format!("070-{round}-{n}"))).map_err(|e| e.to_string())
                })
            };
            let (ta, tb) = (claim(a.id), claim(b.id));
            let (p1, p2) = (phone(1), phone(2));
            (ta.join().unwrap(), tb.join().unwrap(), [p1.join().unwrap().map(drop), p2.join().unwrap().map(drop)])
        });
        assert!(ok_a ^ ok_b, "round {round}: exactly one patron gets the e-mail");
        assert_eq!(phones, [Ok(()), Ok(())]);
        let owner = reg.find("MAIN", &format!("shared{round}@example.org")).unwrap();
        assert_eq!(owner.id, if ok_a { a.id } else { b.id });
    }
    let p = reg.store.patron(a.id).unwrap();
    let phones = p.contacts.iter().filter(|c| c.kind == ContactKind::Phone).count();
    assert_eq!(phones, 12, "every acknowledged contact is kept");
    let mut ids: Vec<u32> = p.contacts.iter().map(|c| c.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), p.contacts.len(), "each has its own number");
}

/// A register an earlier sip2d wrote: its records in store format 2, and a log record of a
/// patron as it was then. Both are read into today's records, with the new tabs empty.
#[test]
fn a_register_of_store_format_2_is_read_into_todays_records() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_or_create(dir.path(), &StoreConfig::default()).unwrap();
    let desk = Desk::new(&engine, "tester");
    desk.add_institution("MAIN", "Main Library", "SEK", "Europe/Stockholm", now()).unwrap();
    let new = NewPatron {
        institution: "MAIN".into(),
        primary_id: "P1".into(),
        first_name: "Avery".into(),
        last_name: "Reader".into(),
        email: Some("avery@example.org".into()),
        ..Default::default()
    };
    let p = desk.add_patron(new, false, now()).unwrap();
    drop(engine);

    // Rewrite every stored record as format 2 had it.
    {
        // sled lets go of its lock a moment after the engine closed it (`Store::open` waits too).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let db = loop {
            match sled::open(dir.path().join(store::DIR)) {
                Ok(db) => break db,
                Err(e) if std::time::Instant::now() < deadline => {
                    assert!(e.to_string().contains("lock"), "{e}");
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("{e}"),
            }
        };
        let old = bincode::DefaultOptions::new();
        use bincode::Options as _;
        let patrons = db.open_tree("patrons").unwrap();
        let mut v2 = vec![2u8];
        old.serialize_into(&mut v2, &legacy::PatronV2::from(&p)).unwrap();
        patrons.insert(p.id.to_be_bytes(), v2).unwrap();
        let institutions = db.open_tree("institutions").unwrap();
        let (k, v) = institutions.iter().next().unwrap().unwrap();
        assert_eq!(v[0], 3, "written in today's format");
        let mut v = v.to_vec();
        v[0] = 2;
        institutions.insert(k, v).unwrap();
        db.flush().unwrap();
    }
    let engine = open_or_create(dir.path(), &StoreConfig::default()).unwrap();
    let read = Desk::new(&engine, "tester").patron(p.id).unwrap();
    assert_eq!(read, p, "every field of then, and nothing in the new ones");
    drop(engine);

    // A log record of then: a batch with the patron at the place the log format gave it.
    #[derive(serde::Serialize)]
    enum WriteThen {
        #[allow(dead_code)]
        Institution(Box<Institution>),
        Patron(Box<legacy::PatronV2>),
    }
    use bincode::Options as _;
    let mut changed = p.clone();
    changed.first_name = "Avery-Lee".into();
    let then = bincode::DefaultOptions::new()
        .serialize(&vec![WriteThen::Patron(Box::new(legacy::PatronV2::from(&changed)))])
        .unwrap();
    let writes = store::decode_batch(&then).unwrap();
    assert!(matches!(&writes[..], [store::Write::Patron(q)] if **q == changed), "{writes:?}");
}
