//! The demo register `sip2d serve --demo` starts with: two institutions, patrons in every
//! state a kiosk must handle, items in every state, and self-check accounts.

// Amounts in minor units are written major_minor: `150_00` is 150.00.
#![allow(clippy::inconsistent_digit_grouping)]

use jiff::Timestamp;
use jiff::civil::{Date, date};

use super::{Added, HoldTarget, NewItem, NewPatron, NewPin, Register};
use crate::domain::{FeeKind, Money};
use crate::store::StoreError;

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

/// What the demo register holds, for the start-up banner.
pub struct Demo {
    pub patrons: Vec<DemoPatron>,
    pub items: Vec<(&'static str, &'static str)>,
    pub accounts: Vec<DemoAccount>,
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

fn added(a: Added) -> Result<u64, StoreError> {
    match a {
        Added::Patron(p) => Ok(p.id),
        Added::PossibleDuplicate(_) => Err(StoreError::Refused("the demo register is not empty".into())),
    }
}

/// Fills an empty register with the demo data, as of `now`.
pub fn build(reg: &Register, now: Timestamp) -> Result<Demo, StoreError> {
    let tz = "Europe/Stockholm";
    reg.add_institution("MAIN", "Main Library", "SEK", tz)?;
    reg.add_institution("BRANCH", "Harbour Branch", "SEK", tz)?;
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
            pin: Some(NewPin(DEMO_PIN.into())),
            ..Default::default()
        };
        let id = added(reg.add_patron(new, false, now)?)?;
        ids.push(id);
    }
    let id = |barcode: &str| {
        PEOPLE.iter().position(|p| p.barcode == barcode).and_then(|i| ids.get(i).copied()).unwrap_or_default()
    };
    for (barcode, inst, title, media, fee) in ITEMS {
        reg.add_item(NewItem {
            barcode: (*barcode).into(),
            institution: (*inst).into(),
            title: (*title).into(),
            media_type: *media,
            security_marker: 2,
            rental_fee: (*fee > 0).then_some(Money(*fee)),
            location: Some("Floor 1".into()),
            ..Default::default()
        })?;
    }
    let (avery, blake, casey, dana) =
        (id("21000000000001"), id("21000000000002"), id("21000000000003"), id("21000000000004"));
    let (frankie, gale, harper) = (id("21000000000006"), id("21000000000007"), id("21000000000008"));
    reg.checkout(avery, "31000000000003", false, now)?;
    reg.add_note(avery, "general", "Your library card renews in the spring.", true, now)?;
    reg.block(blake, "lost-card", Some("Card reported lost"), now)?;
    reg.add_fee(casey, FeeKind::Overdue, Money(150_00), Some("31000000000002"), None, now)?;
    let disputed = reg.add_fee(dana, FeeKind::Damage, Money(80_00), None, None, now)?;
    reg.dispute_fee(disputed.id, now)?;
    reg.set_active(frankie, false, now)?;
    for _ in 0..5 {
        reg.check_pin(gale, "0000", now)?;
    }
    reg.set_proxy(harper, avery, true, now)?;
    // The Dispossessed: lent to Dana, held by Harper, returned, so it waits on the hold shelf
    // for Harper and no one else may borrow it.
    reg.checkout(dana, "31000000000004", false, now)?;
    reg.place_hold(harper, HoldTarget::Item("31000000000004"), "MAIN", None, now)?;
    reg.checkin("31000000000004", now)?;

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
    reg.add_account("kiosk1", "kiosk1-secret", "MAIN", Some("ENTRANCE"))?;
    reg.set_account_profile(
        "kiosk1",
        &[("status-update".into(), "yes".into()), ("patron-enable".into(), "yes".into())],
    )?;
    reg.add_account("kiosk2", "kiosk2-secret", "BRANCH", Some("HARBOUR"))?;
    reg.add_account("sorter1", "sorter1-secret", "MAIN", Some("RETURNS"))?;
    reg.set_account_profile(
        "sorter1",
        &[("messages".into(), "09,17,19".into()), ("terminator".into(), "crlf".into())],
    )?;
    reg.store.flush()?;
    Ok(Demo {
        patrons: PEOPLE.iter().map(|p| DemoPatron { barcode: p.barcode, shows: p.shows }).collect(),
        items: ITEMS.iter().map(|(b, _, t, _, _)| (*b, *t)).collect(),
        accounts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_register_has_every_state_it_promises() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Register::open(dir.path(), "demo").unwrap();
        let now: Timestamp = "2026-11-22T10:00:00Z".parse().unwrap();
        let demo = build(&reg, now).unwrap();
        assert_eq!(demo.patrons.len(), PEOPLE.len());
        let patron = |b: &str| reg.store.patron_by_identifier(if b.starts_with("22") { "BRANCH" } else { "MAIN" }, b);
        let gale = patron("21000000000007").unwrap().unwrap();
        assert!(gale.locked, "five wrong PINs lock the card");
        let dana = patron("21000000000004").unwrap().unwrap();
        assert_eq!(reg.balance(dana.id).unwrap(), Money(0), "a disputed fee is left out of the balance");
        let item = reg.store.item("31000000000004").unwrap().unwrap();
        assert_eq!(item.status, crate::domain::ItemStatus::OnHoldShelf);
        assert!(reg.verify_account("sorter1", "sorter1-secret").unwrap().is_some());
    }
}
