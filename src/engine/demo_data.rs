//! The demo register `sip2d serve --demo` starts with: two institutions, patrons in every
//! state a kiosk must handle, items in every state, and self-check accounts. Made through the
//! engine's operations, as staff would.

// Amounts in minor units are written major_minor: `150_00` is 150.00.
#![allow(clippy::inconsistent_digit_grouping)]

use jiff::Timestamp;
use jiff::civil::{Date, date};

use super::ops::{HoldTarget, NewItem, NewPatron, Operation, Pin};
use super::{Desk, Engine, Error};
use crate::domain::{FeeKind, Money};

/// The PIN every demo patron has.
pub const DEMO_PIN: &str = "1234";

/// A demo patron: their barcode and what they show.
pub struct DemoPatron {
    pub barcode: &'static str,
    pub shows: &'static str,
}

/// A demo self-check account.
pub struct DemoAccount {
    pub login: &'static str,
    pub password: &'static str,
    pub institution: &'static str,
    pub shows: &'static str,
}

/// A demo staff account for the console.
pub struct DemoStaff {
    pub login: &'static str,
    pub password: &'static str,
    pub role: crate::domain::Role,
    pub institutions: &'static [&'static str],
}

/// The demo's staff accounts: one of each role the console shows.
pub const DEMO_STAFF: &[DemoStaff] = &[
    DemoStaff { login: "desk", password: "desk-password", role: crate::domain::Role::Desk, institutions: &["MAIN"] },
    DemoStaff {
        login: "manager",
        password: "manager-password",
        role: crate::domain::Role::UserManager,
        institutions: &["MAIN"],
    },
    DemoStaff {
        login: "admin",
        password: "admin-password",
        role: crate::domain::Role::UserAdministrator,
        institutions: &["MAIN", "BRANCH"],
    },
    DemoStaff {
        login: "branch",
        password: "branch-password",
        role: crate::domain::Role::UserManager,
        institutions: &["BRANCH"],
    },
];

/// What the demo register holds, for the start-up banner.
pub struct Demo {
    pub patrons: Vec<DemoPatron>,
    pub items: Vec<(&'static str, &'static str)>,
    pub accounts: Vec<DemoAccount>,
    pub staff: &'static [DemoStaff],
}

struct Person {
    inst: &'static str,
    barcode: &'static str,
    first: &'static str,
    last: &'static str,
    shows: &'static str,
}

const PEOPLE: &[Person] = &[
    Person {
        inst: "MAIN",
        barcode: "21000000000001",
        first: "Avery",
        last: "Reader",
        shows: "good standing, one loan",
    },
    Person { inst: "MAIN", barcode: "21000000000002", first: "Blake", last: "Barred", shows: "blocked (lost card)" },
    Person { inst: "MAIN", barcode: "21000000000003", first: "Casey", last: "Owing", shows: "fines over the limit" },
    Person { inst: "MAIN", barcode: "21000000000004", first: "Dana", last: "Disputes", shows: "a disputed fee only" },
    Person { inst: "MAIN", barcode: "21000000000005", first: "Eli", last: "Lapsed", shows: "card expired" },
    Person { inst: "MAIN", barcode: "21000000000006", first: "Frankie", last: "Away", shows: "inactive" },
    Person { inst: "MAIN", barcode: "21000000000007", first: "Gale", last: "Forgetful", shows: "locked out (PIN)" },
    Person {
        inst: "MAIN",
        barcode: "21000000000008",
        first: "Harper",
        last: "Helper",
        shows: "proxy for Avery; a hold waiting",
    },
    Person { inst: "MAIN", barcode: "21000000000009", first: "Jörg", last: "Müller", shows: "non-ASCII name" },
    Person { inst: "BRANCH", barcode: "22000000000001", first: "Kim", last: "Harbour", shows: "branch patron" },
];

/// (barcode, institution, title, media type, rental fee in minor units)
const ITEMS: &[(&str, &str, &str, u16, i64)] = &[
    ("31000000000001", "MAIN", "The Left Hand of Darkness", 1, 0),
    ("31000000000002", "MAIN", "Dune", 1, 0),
    ("31000000000003", "MAIN", "A Wizard of Earthsea", 1, 0),
    ("31000000000004", "MAIN", "The Dispossessed", 1, 0),
    ("31000000000005", "MAIN", "Blade Runner (video)", 5, 20_00),
    ("31000000000006", "MAIN", "Kind of Blue (CD)", 6, 0),
    ("31000000000007", "MAIN", "National Geographic, May", 2, 0),
    ("32000000000001", "BRANCH", "Pippi Långstrump", 1, 0),
];

/// Fills an empty register with the demo data, as of `now`.
pub fn build(engine: &dyn Engine, now: Timestamp) -> Result<Demo, Error> {
    let desk = Desk::new(engine, "demo");
    let run = |op: Operation| desk.run(op, now);
    let tz = "Europe/Stockholm";
    desk.add_institution("MAIN", "Main Library", "SEK", tz, now)?;
    desk.add_institution("BRANCH", "Harbour Branch", "SEK", tz, now)?;
    let today: Date = now.to_zoned(jiff::tz::TimeZone::get(tz).unwrap_or(jiff::tz::TimeZone::UTC)).date();
    let mut ids = Vec::new();
    for (n, p) in PEOPLE.iter().enumerate() {
        let expiry =
            if p.last == "Lapsed" { date(2020, 1, 31) } else { today.saturating_add(jiff::Span::new().years(2)) };
        let new = NewPatron {
            institution: p.inst.into(),
            primary_id: format!("U{:04}", n + 1),
            first_name: p.first.into(),
            last_name: p.last.into(),
            expiry: Some(expiry),
            barcodes: vec![p.barcode.into()],
            pin: Some(Pin(DEMO_PIN.into())),
            ..Default::default()
        };
        ids.push(desk.add_patron(new, false, now)?.id);
    }
    let id = |barcode: &str| {
        PEOPLE.iter().position(|p| p.barcode == barcode).and_then(|i| ids.get(i).copied()).unwrap_or_default()
    };
    for (barcode, inst, title, media, fee) in ITEMS {
        desk.add_item(
            NewItem {
                barcode: (*barcode).into(),
                institution: (*inst).into(),
                title: (*title).into(),
                media_type: *media,
                security_marker: 2,
                rental_fee: (*fee > 0).then_some(Money(*fee)),
                location: Some("Floor 1".into()),
                ..Default::default()
            },
            now,
        )?;
    }
    let (avery, blake, casey, dana) =
        (id("21000000000001"), id("21000000000002"), id("21000000000003"), id("21000000000004"));
    let (frankie, gale, harper) = (id("21000000000006"), id("21000000000007"), id("21000000000008"));
    run(Operation::Lend { patron: avery, item: "31000000000003".into(), accept_fee: false })?;
    run(Operation::AddNote {
        patron: avery,
        kind: "general".into(),
        text: "Your library card renews in the spring.".into(),
        public: true,
    })?;
    run(Operation::Block { patron: blake, kind: "lost-card".into(), note: Some("Card reported lost".into()) })?;
    run(Operation::AddFee {
        patron: casey,
        kind: FeeKind::Overdue,
        amount: Money(150_00),
        item: Some("31000000000002".into()),
        comment: None,
    })?;
    let disputed = run(Operation::AddFee {
        patron: dana,
        kind: FeeKind::Damage,
        amount: Money(80_00),
        item: None,
        comment: None,
    })?
    .fee()?;
    run(Operation::DisputeFee { fee: disputed.id })?;
    run(Operation::SetActive { patron: frankie, active: false })?;
    for _ in 0..5 {
        run(Operation::CheckPin { patron: gale, pin: Pin("0000".into()) })?;
    }
    run(Operation::SetProxy { proxy: harper, for_whom: avery, allow: true })?;
    // The Dispossessed: lent to Dana, held by Harper, returned, so it waits on the hold shelf
    // for Harper and no one else may borrow it.
    run(Operation::Lend { patron: dana, item: "31000000000004".into(), accept_fee: false })?;
    run(Operation::PlaceHold {
        patron: harper,
        target: HoldTarget::Item("31000000000004".into()),
        pickup: "MAIN".into(),
        expires: None,
    })?;
    run(Operation::Return { item: "31000000000004".into() })?;

    let accounts = vec![
        DemoAccount {
            login: "kiosk1",
            password: "kiosk1-secret",
            institution: "MAIN",
            shows: "every message, may block and enable cards",
        },
        DemoAccount { login: "kiosk2", password: "kiosk2-secret", institution: "BRANCH", shows: "every message" },
        DemoAccount {
            login: "sorter1",
            password: "sorter1-secret",
            institution: "MAIN",
            shows: "book sorter: 09, 17 and 19 only; CRLF",
        },
    ];
    desk.add_account("kiosk1", "kiosk1-secret", "MAIN", Some("ENTRANCE"), now)?;
    desk.set_account_profile("kiosk1", &[("status-update", "yes"), ("patron-enable", "yes")], now)?;
    desk.add_account("kiosk2", "kiosk2-secret", "BRANCH", Some("HARBOUR"), now)?;
    desk.add_account("sorter1", "sorter1-secret", "MAIN", Some("RETURNS"), now)?;
    desk.set_account_profile("sorter1", &[("messages", "09,17,19"), ("terminator", "crlf")], now)?;
    for s in DEMO_STAFF {
        let name = format!("Demo {}", s.role);
        run(Operation::AddStaff {
            login: s.login.into(),
            name,
            password_hash: super::hash_staff_password(s.password)?,
            role: s.role,
            institutions: s.institutions.iter().map(|i| i.to_string()).collect(),
        })?;
    }
    Ok(Demo {
        staff: DEMO_STAFF,
        patrons: PEOPLE.iter().map(|p| DemoPatron { barcode: p.barcode, shows: p.shows }).collect(),
        items: ITEMS.iter().map(|(b, _, t, _, _)| (*b, *t)).collect(),
        accounts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Answer, Query, SledEngine, StoreConfig};

    #[test]
    fn the_demo_register_has_every_state_it_promises() {
        let dir = tempfile::tempdir().unwrap();
        let key = crate::domain::secret::PinKey::from_bytes([3; 32]);
        let engine = SledEngine::open(dir.path(), key, &StoreConfig::default()).unwrap();
        let now: Timestamp = "2026-11-22T10:00:00Z".parse().unwrap();
        let demo = build(&engine, now).unwrap();
        assert_eq!(demo.patrons.len(), PEOPLE.len());
        let desk = Desk::new(&engine, "test");
        let find = |b: &str| {
            let institution = if b.starts_with("22") { "BRANCH" } else { "MAIN" }.to_string();
            match desk.query(Query::FindPatron { institution, key: b.into() }).unwrap() {
                Answer::Patron(p) => *p,
                other => panic!("{other:?}"),
            }
        };
        assert!(find("21000000000007").locked, "five wrong PINs lock the card");
        let dana = find("21000000000004");
        let Answer::Fees(_, balance) = desk.query(Query::Fees(dana.id)).unwrap() else { panic!() };
        assert_eq!(balance, Money(0), "a disputed fee is left out of the balance");
        let Answer::Item(facts) = desk.query(Query::Item("31000000000004".into())).unwrap() else { panic!() };
        assert_eq!(facts.item.status, crate::domain::ItemStatus::OnHoldShelf);
        let Answer::Account(sorter) = desk.query(Query::Account("sorter1".into())).unwrap() else { panic!() };
        assert!(crate::domain::secret::verify_password("sorter1-secret", &sorter.password_hash));
    }
}
