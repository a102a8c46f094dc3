//! Issue 14, items 4 and 5, as attacks over real sockets: patron data without a PIN, and
//! circulation for a patron never verified on the connection.

mod common;

use common::{Kiosk, Running, start, test_config, vector_world};
use jiff::civil::date;
use sip2d::domain::{FeeKind, Money};
use sip2d::engine::{Desk, NewPatron, Pin};

const D: &str = "20261122    120000";
const CASEY: &str = "21234000077777";
const AVERY: &str = "21234000012345";

/// The vectors' world, and Casey Contact: address, e-mail, phone, a fee and a loan.
fn world(desk: &Desk<'_>) {
    vector_world(desk);
    let now = jiff::Timestamp::now();
    let new = NewPatron {
        institution: "MAIN".into(),
        primary_id: "P3".into(),
        first_name: "Casey".into(),
        last_name: "Contact".into(),
        email: Some("casey@example.org".into()),
        phone: Some("+46 8 123 45 67".into()),
        address: Some("Storgatan 1, Stockholm".into()),
        expiry: Some(date(2099, 1, 1)),
        barcodes: vec![CASEY.into()],
        pin: Some(Pin("2468".into())),
        ..Default::default()
    };
    let casey = desk.add_patron(new, false, now).unwrap();
    desk.add_fee(casey.id, FeeKind::Overdue, Money(250), now).unwrap();
}

fn field<'a>(reply: &'a str, id: &str) -> Option<&'a str> {
    reply.split('|').skip(1).find_map(|f| f.strip_prefix(id))
}

fn info(k: &mut Kiosk, card: &str, pin: Option<&str>, summary: &str) -> String {
    let ad = pin.map(|p| format!("AD{p}|")).unwrap_or_default();
    k.ask(&format!("63001{D}{summary}AOMAIN|AA{card}|AC|{ad}"))
}

fn checkout(k: &mut Kiosk, card: &str, item: &str, pin: Option<&str>) -> String {
    let ad = pin.map(|p| format!("AD{p}|")).unwrap_or_default();
    k.ask(&format!("11YN{D}{D}AOMAIN|AA{card}|AB{item}|AC|{ad}"))
}

/// Nothing personal in a reply: no contacts, fees, item lists or name.
fn assert_private(r: &str, what: &str) {
    for id in ["BD", "BE", "BF", "BV", "BH", "AS", "AT", "AU", "AV", "BU", "CD", "CB", "CC"] {
        assert!(field(r, id).is_none(), "{what}: {id} in {r}");
    }
    assert_eq!(field(r, "AE"), Some(""), "{what}: the name in {r}");
    assert!(!r.contains("Casey") && !r.contains("casey@") && !r.contains("Storgatan"), "{what}: {r}");
    assert_eq!(field(r, "BL"), Some("Y"), "{what}: the card is valid");
    assert_eq!(field(r, "CQ"), Some("N"), "{what}: the PIN is not");
}

fn assert_private_of_avery(r: &str) {
    assert_eq!((field(r, "CQ"), field(r, "AE")), (Some("N"), Some("")), "{r}");
}

fn lend_casey_an_item(s: &Running) {
    let mut k = s.logged_in();
    assert!(checkout(&mut k, CASEY, "31234000098765", Some("2468")).starts_with("121"));
}

/// Item 4: 63 and 23 with a wrong PIN, an empty one, or none at all show that the card is
/// valid and the PIN is not; never the name, contacts, fees or the loans.
#[test]
fn patron_details_need_the_pin_on_the_request() {
    let s = start(world, test_config());
    lend_casey_an_item(&s);
    let mut k = s.logged_in();
    for (pin, what) in [(Some("0000"), "a wrong PIN"), (Some(""), "an empty PIN"), (None, "no PIN")] {
        for summary in ["Y         ", "  Y       ", "   Y      "] {
            let r = info(&mut k, CASEY, pin, summary);
            assert!(r.starts_with("64"), "{r}");
            assert_private(&r, &format!("63 with {what}, summary {summary:?}"));
            // The counts are four blanks: how much someone borrows is not shown either.
            assert_eq!(r.get(37..61), Some(&" ".repeat(24)[..]), "63 with {what}: {r}");
        }
    }
    let r = k.ask(&format!("2300120261122    120000AOMAIN|AA{CASEY}|AC|AD0000|"));
    assert_private(&r, "23 with a wrong PIN");
    // A PIN that was right on an earlier request does not open a later one without it.
    assert!(field(&info(&mut k, CASEY, Some("2468"), "          "), "CQ") == Some("Y"));
    assert_private(&info(&mut k, CASEY, None, "  Y       "), "63 after a right PIN, without one");
    // With the PIN: everything, as before.
    let r = info(&mut k, CASEY, Some("2468"), "  Y       ");
    assert_eq!(field(&r, "AE"), Some("Contact, Casey"), "{r}");
    assert_eq!(field(&r, "BE"), Some("casey@example.org"));
    assert_eq!(field(&r, "BD"), Some("Storgatan 1, Stockholm"));
    assert_eq!(field(&r, "BF"), Some("+46 8 123 45 67"));
    assert_eq!(field(&r, "AU"), Some("31234000098765"), "the charged items: {r}");
    assert_eq!(field(&r, "BV"), Some("2.50"));
}

/// The profile decides what an unverified terminal also sees: the name (`unverified-name`),
/// and the status flags (`unverified-status`, on by default).
#[test]
fn the_profile_decides_the_name_and_status_flags_without_a_pin() {
    let s = start(
        |desk: &Desk<'_>| {
            world(desk);
            let blake = desk.find("MAIN", "21234000099999").unwrap();
            desk.add_fee(blake.id, FeeKind::Overdue, Money(100_000), jiff::Timestamp::now()).unwrap();
        },
        test_config(),
    );
    let mut k = s.logged_in();
    let flags = |r: &str| r.get(2..16).map(str::to_string).unwrap();
    let r = k.ask("2300120261122    120000AOMAIN|AA21234000099999|AC|AD|");
    assert!(flags(&r).contains('Y'), "Blake owes too much: flags shown by default: {r}");
    s.engine_desk(|desk| {
        desk.set_account_profile(
            "kiosk1",
            &[("unverified-name", "yes"), ("unverified-status", "no")],
            jiff::Timestamp::now(),
        )
        .unwrap();
    });
    let mut k = s.logged_in();
    let r = k.ask("2300120261122    120000AOMAIN|AA21234000099999|AC|AD|");
    assert_eq!(flags(&r), " ".repeat(14), "no flags: {r}");
    assert_eq!(field(&r, "AE"), Some("Owing, Blake"), "the name, as the profile allows: {r}");
    assert!(field(&r, "BV").is_none(), "never the fee: {r}");
}

/// Item 5: 11, 15, 29 and 65 without a PIN, for a patron never verified on the connection,
/// are refused and change nothing; a 63 with the right PIN, then 11 without it, lends (what
/// kiosks do); another patron's verification, or a 35, ends that.
#[test]
fn circulation_needs_a_patron_verified_on_the_connection() {
    let s = start(world, test_config());
    let mut k = s.logged_in();
    let item = "31234000011111";
    let r = checkout(&mut k, AVERY, item, None);
    assert!(r.starts_with("120"), "{r}");
    assert_eq!(field(&r, "AF"), Some("Please enter your PIN."), "{r}");
    let hold = k.ask(&format!("15+{D}AOMAIN|AA{AVERY}|AB{item}|AC|"));
    assert!(hold.starts_with("160"), "a hold: {hold}");
    let renew = k.ask(&format!("29NN{D}{D}AOMAIN|AA{AVERY}|AB{item}|AC|"));
    assert!(renew.starts_with("300"), "a renewal: {renew}");
    let all = k.ask(&format!("65{D}AOMAIN|AA{AVERY}|AC|"));
    assert!(all.starts_with("660"), "a renew-all: {all}");
    let status = k.ask(&format!("1720261122    120000AOMAIN|AB{item}|AC|"));
    assert!(status.starts_with("1803"), "the item is still on the shelf, unheld: {status}");

    // Verified by a 63 with the PIN: 11 without it lends, as real kiosks send it, and a 63
    // without the PIN in between (paging through the loans) does not undo that.
    assert_eq!(field(&info(&mut k, AVERY, Some("4321"), "          "), "CQ"), Some("Y"));
    assert_private_of_avery(&info(&mut k, AVERY, None, "  Y       "));
    assert!(checkout(&mut k, AVERY, item, None).starts_with("121"));
    // Another patron's card is not covered by Avery's PIN.
    assert!(checkout(&mut k, "21234000099999", "31234000022222", None).starts_with("120"));
    // Nor is Avery on another connection.
    let mut other = s.logged_in();
    assert!(checkout(&mut other, AVERY, "31234000022222", None).starts_with("120"));
    // A wrong PIN for Avery, or an end of session, ends the verification.
    assert_eq!(field(&info(&mut k, AVERY, Some("0000"), "          "), "CQ"), Some("N"));
    assert!(checkout(&mut k, AVERY, "31234000022222", None).starts_with("120"));
    assert_eq!(field(&info(&mut k, AVERY, Some("4321"), "          "), "CQ"), Some("Y"));
    assert!(k.ask(&format!("35{D}AOMAIN|AA{AVERY}|AC|")).starts_with("36Y"));
    assert!(checkout(&mut k, AVERY, "31234000022222", None).starts_with("120"));
    // With the PIN on the request itself, it always lends.
    assert!(checkout(&mut k, AVERY, "31234000022222", Some("4321")).starts_with("121"));
}

/// `patron-verification = pin-each-request` wants the PIN on every request; `none` wants
/// none (trusted sorters).
#[test]
fn the_profile_chooses_how_patrons_are_verified() {
    let s = start(world, test_config());
    s.engine_desk(|desk| {
        desk.set_account_profile("kiosk1", &[("patron-verification", "pin-each-request")], jiff::Timestamp::now())
            .unwrap();
    });
    let mut k = s.logged_in();
    assert_eq!(field(&info(&mut k, AVERY, Some("4321"), "          "), "CQ"), Some("Y"));
    assert!(checkout(&mut k, AVERY, "31234000011111", None).starts_with("120"));
    assert!(checkout(&mut k, AVERY, "31234000011111", Some("4321")).starts_with("121"));
    s.engine_desk(|desk| {
        desk.set_account_profile("kiosk1", &[("patron-verification", "none")], jiff::Timestamp::now()).unwrap();
    });
    let mut k = s.logged_in();
    assert!(checkout(&mut k, AVERY, "31234000022222", None).starts_with("121"));
}
