//! The service against a temporary register: requests in, replies out, fixed instants.

use std::borrow::Cow;

use jiff::civil::date;

use super::*;
use crate::domain::{FeeKind, FeeStatus, Money};
use crate::engine::testkit::{Added, Reg};
use crate::engine::{NewItem, NewPatron};
use crate::proto::{self, Encoding, Message, Secret};
use crate::service::{Session, SessionRules, Verdict};

/// Runs a future to its end on a runtime of its own (the service is async).
fn settle<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

fn now() -> Timestamp {
    "2026-11-22T10:00:00Z".parse().unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    reg: Reg,
    patron: u64,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let reg = Reg::open(dir.path(), "tester").unwrap();
    reg.add_institution("MAIN", "Main Library", "SEK", "Europe/Stockholm").unwrap();
    let new = NewPatron {
        institution: "MAIN".into(),
        primary_id: "P1".into(),
        first_name: "Avery".into(),
        last_name: "Reader".into(),
        birth_date: Some(date(1990, 5, 17)),
        expiry: Some(date(2028, 1, 1)),
        barcodes: vec!["21234000012345".into()],
        pin: Some(Pin("4321".into())),
        ..Default::default()
    };
    let Added::Patron(p) = reg.add_patron(new, false, now()).unwrap() else { panic!() };
    reg.add_account("kiosk1", "kiosk-secret", "MAIN", Some("ENTRANCE")).unwrap();
    Fixture { _dir: dir, reg, patron: p.id }
}

/// Another patron at MAIN (no PIN, no barcode), for holds that wait behind the first.
fn second_patron(f: &Fixture) -> crate::domain::Patron {
    let new = NewPatron {
        institution: "MAIN".into(),
        primary_id: "P2".into(),
        first_name: "Blake".into(),
        last_name: "Reader".into(),
        ..Default::default()
    };
    let Added::Patron(p) = f.reg.add_patron(new, false, now()).unwrap() else { panic!() };
    *p
}

fn login(f: &Fixture, user: &str, password: &str) -> Option<Terminal> {
    let req = Login {
        login_user_id: Cow::Owned(user.into()),
        login_password: Secret::new(password.to_string()),
        ..Default::default()
    };
    let (reply, terminal) = settle(Service::new(f.reg.engine.as_ref()).login(&req)).unwrap();
    assert_eq!(reply.ok, terminal.is_some());
    terminal
}

fn status(f: &Fixture, t: &Terminal, barcode: &str, pin: &str) -> PatronStatusResponse<'static> {
    let req = PatronStatusRequest {
        institution_id: Cow::Borrowed("MAIN"),
        patron_identifier: Cow::Owned(barcode.into()),
        patron_password: Secret::new(pin.to_string()),
        ..Default::default()
    };
    settle(Service::new(f.reg.engine.as_ref()).patron_status(t, &req, now())).unwrap()
}

/// The reply as a kiosk receives it.
fn wire(m: impl Into<Message<'static>>) -> String {
    let mut out = bytes::BytesMut::new();
    proto::encode_frame(&m.into(), &mut out, Encoding::Utf8, proto::Seal::None, proto::Terminator::Cr);
    String::from_utf8(out.to_vec()).unwrap()
}

#[test]
fn login_checks_the_account_and_its_profile() {
    let f = fixture();
    assert!(login(&f, "kiosk1", "wrong").is_none());
    assert!(login(&f, "nobody", "kiosk-secret").is_none());
    let t = login(&f, "kiosk1", "kiosk-secret").unwrap();
    assert_eq!(t.institution.code, "MAIN");
    assert_eq!(t.profile, Profile::default());
    // A profile key with a typo is refused when it is set.
    let e = f.reg.set_account_profile("kiosk1", &[("pin-requird".into(), "no".into())]).unwrap_err();
    assert!(e.to_string().contains("known keys: pin-required"), "{e}");
    assert!(f.reg.set_account_profile("kiosk1", &[("renewals".into(), "maybe".into())]).is_err());
    assert!(login(&f, "kiosk1", "kiosk-secret").is_some());
}

#[test]
fn sc_status_says_what_the_terminal_may_do() {
    let f = fixture();
    let t = login(&f, "kiosk1", "kiosk-secret").unwrap();
    let all = SupportedMessages::from_wire("YYYYYYYYYYYYYYYY");
    let reply = Service::new(f.reg.engine.as_ref()).sc_status(&t, all, now());
    // 10:00 UTC is 11:00 in Stockholm.
    assert_eq!(
        wire(reply),
        "98YYYYNN99900320261122    1100002.00AOMAIN|AMMain Library|BXYYYYYYYYYYYYYYYY|ANENTRANCE|\r"
    );
}

#[test]
fn patron_status_in_good_standing_with_the_right_pin() {
    let f = fixture();
    let t = login(&f, "kiosk1", "kiosk-secret").unwrap();
    let r = status(&f, &t, "21234000012345", "4321");
    assert_eq!(wire(r), "24              00020261122    110000AOMAIN|AA21234000012345|AEReader, Avery|BLY|CQY|\r");
}

#[test]
fn unknown_patron_gets_the_unknown_shape() {
    let f = fixture();
    let t = login(&f, "kiosk1", "kiosk-secret").unwrap();
    let r = status(&f, &t, "99999", "4321");
    assert_eq!(r.patron_status, PatronStatus::UNKNOWN_PATRON);
    assert_eq!((r.valid_patron, r.valid_patron_password), (Some(false), Some(false)));
    assert_eq!(r.personal_name, "");
    assert_eq!(r.patron_identifier, "99999");
    // An identifier turned off is unknown too.
    f.reg.set_identifier_active(f.patron, "21234000012345", false, now()).unwrap();
    assert_eq!(status(&f, &t, "21234000012345", "4321").valid_patron, Some(false));
}

#[test]
fn wrong_and_empty_pins_and_the_lockout() {
    let f = fixture();
    let t = login(&f, "kiosk1", "kiosk-secret").unwrap();
    let r = status(&f, &t, "21234000012345", "");
    assert_eq!(r.valid_patron_password, Some(false), "an empty PIN is not a PIN");
    for _ in 0..4 {
        let r = status(&f, &t, "21234000012345", "0000");
        assert_eq!(r.valid_patron_password, Some(false));
        assert!(!r.patron_status.contains(PatronStatus::CHARGE_DENIED), "a wrong PIN leaves the mask alone");
    }
    let r = status(&f, &t, "21234000012345", "0000");
    assert!(r.patron_status.contains(PatronStatus::CHARGE_DENIED), "the fifth wrong PIN locks the card");
    assert_eq!(r.screen_message, ["Too many wrong PINs: your card is locked. Please see staff."]);
    let r = status(&f, &t, "21234000012345", "4321");
    assert_eq!(r.valid_patron_password, Some(false), "locked: even the right PIN is refused");
    assert_eq!(r.screen_message, ["Too many wrong PINs: your card is locked. Please see staff."], "not 'not correct'");
    add_item(&f, "I1", None, 1);
    let r = checkout(&f, &t, "I1", |_| {});
    assert!(!r.ok);
    assert_eq!(r.screen_message, ["Too many wrong PINs: your card is locked. Please see staff."]);
    f.reg.unlock(f.patron, now()).unwrap();
    assert_eq!(status(&f, &t, "21234000012345", "4321").valid_patron_password, Some(true));

    // A profile without PINs sends no CQ and counts nothing.
    f.reg.set_account_profile("kiosk1", &[("pin-required".into(), "no".into())]).unwrap();
    let t = login(&f, "kiosk1", "kiosk-secret").unwrap();
    assert_eq!(status(&f, &t, "21234000012345", "").valid_patron_password, None);
}

#[test]
fn blocks_fines_and_public_notes_reach_the_kiosk() {
    let f = fixture();
    let t = login(&f, "kiosk1", "kiosk-secret").unwrap();
    f.reg.add_fee(f.patron, FeeKind::Overdue, Money(25_00), None, None, now()).unwrap();
    f.reg.add_note(f.patron, "general", "Your new card is ready at the desk.", true, now()).unwrap();
    f.reg.add_note(f.patron, "general", "Staff only", false, now()).unwrap();
    let r = status(&f, &t, "21234000012345", "4321");
    assert!(r.patron_status.contains(PatronStatus::EXCESSIVE_FINES));
    assert!(r.patron_status.contains(PatronStatus::CHARGE_DENIED));
    assert_eq!((r.currency_type.as_deref(), r.fee_amount.as_deref()), (Some("SEK"), Some("25.00")));
    assert_eq!(r.screen_message, vec!["Fines of 25.00 block borrowing.", "Your new card is ready at the desk."]);

    f.reg.block(f.patron, "lost-card", Some("Reported lost"), now()).unwrap();
    let r = status(&f, &t, "21234000012345", "4321");
    assert!(r.patron_status.contains(PatronStatus::CARD_REPORTED_LOST));
    assert_eq!(r.valid_patron, Some(true), "a blocked patron is still a valid patron");
}

fn info(
    f: &Fixture,
    t: &Terminal,
    barcode: &str,
    summary: &str,
    window: Option<(&str, &str)>,
) -> PatronInformationResponse<'static> {
    let req = PatronInformation {
        summary: proto::Summary::from_wire(summary),
        institution_id: Cow::Borrowed("MAIN"),
        patron_identifier: Cow::Owned(barcode.into()),
        patron_password: Some(Secret::new("4321")),
        start_item: window.map(|w| Cow::Owned(w.0.to_string())),
        end_item: window.map(|w| Cow::Owned(w.1.to_string())),
        ..Default::default()
    };
    settle(Service::new(f.reg.engine.as_ref()).patron_information(t, &req, now())).unwrap()
}

#[test]
fn patron_information_counts_lists_and_windows() {
    let f = fixture();
    let t = login(&f, "kiosk1", "kiosk-secret").unwrap();
    let earlier: Timestamp = "2026-10-01T10:00:00Z".parse().unwrap();
    for b in ["I1", "I2", "I3"] {
        f.reg
            .add_item(NewItem {
                barcode: b.into(),
                institution: "MAIN".into(),
                title: format!("Title {b}"),
                ..Default::default()
            })
            .unwrap();
    }
    // I1 was lent long ago (overdue now); I2 today.
    f.reg.checkout(f.patron, "I1", false, earlier).unwrap();
    f.reg.checkout(f.patron, "I2", false, now()).unwrap();
    f.reg.add_fee(f.patron, FeeKind::Damage, Money(3_50), Some("I1"), None, now()).unwrap();
    f.reg.place_hold(f.patron, HoldTarget::Title("Dune".into()), "MAIN", None, now()).unwrap();

    let r = info(&f, &t, "21234000012345", "  Y       ", None);
    assert_eq!(
        wire(r),
        "64              00020261122    110000000000010002000100000001AOMAIN|AA21234000012345|AEReader, Avery|CB0050|BLY|CQY|BHSEK|BV3.50|CC10.00|AUI1|AUI2|\r"
    );
    let r = info(&f, &t, "21234000012345", " Y        ", None);
    assert_eq!(r.overdue_items, vec!["I1"]);
    let r = info(&f, &t, "21234000012345", "   Y      ", None);
    assert_eq!(r.fine_items, vec!["3.50 damage I1"]);
    let r = info(&f, &t, "21234000012345", "     Y    ", None);
    assert_eq!(r.unavailable_hold_items, vec!["Dune"]);
    // BP/BQ choose a window; a bound that is not a number is ignored.
    assert_eq!(info(&f, &t, "21234000012345", "  Y       ", Some(("2", "2"))).charged_items, vec!["I2"]);
    assert_eq!(info(&f, &t, "21234000012345", "  Y       ", Some(("x", "1"))).charged_items, vec!["I1"]);
    assert!(info(&f, &t, "21234000012345", "  Y       ", Some(("5", "9"))).charged_items.is_empty());

    let r = info(&f, &t, "nobody", "  Y       ", None);
    assert_eq!(r.patron_status, PatronStatus::UNKNOWN_PATRON);
    assert_eq!(r.charged_items_count, Count::new(0));
    assert_eq!((r.valid_patron, r.valid_patron_password), (Some(false), Some(false)));
}

fn checkout(
    f: &Fixture,
    t: &Terminal,
    item: &str,
    tweak: impl FnOnce(&mut Checkout<'static>),
) -> CheckoutResponse<'static> {
    let mut req = Checkout {
        sc_renewal_policy: true,
        institution_id: Cow::Borrowed("MAIN"),
        patron_identifier: Cow::Borrowed("21234000012345"),
        item_identifier: Cow::Owned(item.into()),
        patron_password: Some(Secret::new("4321")),
        ..Default::default()
    };
    tweak(&mut req);
    settle(Service::new(f.reg.engine.as_ref()).checkout(t, &req, now())).unwrap()
}

fn add_item(f: &Fixture, barcode: &str, rental: Option<Money>, media: u16) {
    f.reg
        .add_item(NewItem {
            barcode: barcode.into(),
            institution: "MAIN".into(),
            title: format!("Title {barcode}"),
            rental_fee: rental,
            media_type: media,
            ..Default::default()
        })
        .unwrap();
}

#[test]
fn checkout_lends_and_answers_after_the_commit() {
    let f = fixture();
    let t = login(&f, "kiosk1", "kiosk-secret").unwrap();
    add_item(&f, "I1", None, 1);
    let r = checkout(&f, &t, "I1", |_| {});
    // Due in 21 days at 23:59 Stockholm time.
    assert_eq!(
        wire(r),
        "121NNY20261122    110000AOMAIN|AA21234000012345|ABI1|AJTitle I1|AH20261213    235900|CK001|\r"
    );
    assert_eq!(f.reg.store.loan("I1").unwrap().unwrap().patron, f.patron, "stored before the reply");
    // Again: the patron has it, so it is a renewal (when the kiosk allows renewals).
    let r = checkout(&f, &t, "I1", |_| {});
    assert!(r.ok && r.renewal_ok);
    let r = checkout(&f, &t, "I1", |q| q.sc_renewal_policy = false);
    assert!(!r.ok);
    assert_eq!(r.screen_message, vec!["Renewal is not allowed from this terminal."]);
}

#[test]
fn checkout_fee_flow_and_refusals() {
    let f = fixture();
    let t = login(&f, "kiosk1", "kiosk-secret").unwrap();
    add_item(&f, "DVD1", Some(Money(20_00)), 6);
    let r = checkout(&f, &t, "DVD1", |_| {});
    assert!(!r.ok);
    assert_eq!(
        (r.fee_type, r.fee_amount.as_deref(), r.currency_type.as_deref()),
        (Some(FeeType::Rental), Some("20.00"), Some("SEK"))
    );
    assert!(f.reg.store.loan("DVD1").unwrap().is_none());
    let r = checkout(&f, &t, "DVD1", |q| q.fee_acknowledged = Some(true));
    assert!(r.ok);
    assert_eq!(r.magnetic_media, Tristate::Yes);
    let fee_id: u64 = r.transaction_id.as_deref().unwrap().parse().unwrap();
    assert_eq!(f.reg.store.fee(fee_id).unwrap().unwrap().amount, Money(20_00));

    let r = checkout(&f, &t, "NOPE", |_| {});
    assert!(!r.ok);
    assert_eq!(r.title_identifier, "");
    let r = checkout(&f, &t, "DVD1", |q| q.patron_password = Some(Secret::new("0000")));
    assert_eq!((r.ok, r.screen_message[0].as_ref()), (false, "The PIN is not correct."));

    add_item(&f, "I2", None, 1);
    f.reg.block(f.patron, "general", Some("Please see the desk"), now()).unwrap();
    let r = checkout(&f, &t, "I2", |_| {});
    assert!(!r.ok);
    // The kiosk hears that the card is blocked, never the note staff wrote on the block.
    assert_eq!(r.screen_message, vec!["Your card is blocked. Please see staff."]);
    // A no-block checkout was done off line: it is recorded, with the kiosk's due date.
    let r = checkout(&f, &t, "I2", |q| {
        q.no_block = true;
        q.nb_due_date = SipDate::At(DateTime::local(2026, 12, 1, 20, 0, 0).unwrap());
    });
    assert!(r.ok, "{:?}", r.screen_message);
    assert_eq!(r.due_date, "20261201    200000");
    assert_eq!(f.reg.store.loan("I2").unwrap().unwrap().due, "2026-12-01T19:00:00Z".parse::<Timestamp>().unwrap());
}

fn checkin(f: &Fixture, t: &Terminal, item: &str) -> CheckinResponse<'static> {
    let req = Checkin {
        current_location: Cow::Borrowed("ENTRANCE"),
        institution_id: Cow::Borrowed("MAIN"),
        item_identifier: Cow::Owned(item.into()),
        ..Default::default()
    };
    settle(Service::new(f.reg.engine.as_ref()).checkin(t, &req, now())).unwrap()
}

#[test]
fn checkin_returns_the_item_and_routes_holds() {
    let f = fixture();
    let t = login(&f, "kiosk1", "kiosk-secret").unwrap();
    add_item(&f, "I1", None, 1);
    assert!(checkout(&f, &t, "I1", |_| {}).ok);
    let r = checkin(&f, &t, "I1");
    assert_eq!(wire(r), "101YNN20261122    110000AOMAIN|ABI1|AQ|AJTitle I1|CLSHELF|AA21234000012345|CK001|\r");
    assert!(f.reg.store.loan("I1").unwrap().is_none(), "stored before the reply");

    // Off line (no block): recorded at the kiosk's return date, between the checkout and now.
    let two_days_ago = now() - jiff::SignedDuration::from_hours(48);
    f.reg.checkout(f.patron, "I1", false, two_days_ago).unwrap();
    let req = Checkin {
        no_block: true,
        return_date: SipDate::At(DateTime::local(2026, 11, 21, 18, 30, 0).unwrap()),
        item_identifier: Cow::Borrowed("I1"),
        ..Default::default()
    };
    assert!(settle(Service::new(f.reg.engine.as_ref()).checkin(&t, &req, now())).unwrap().ok);
    let at: Timestamp = "2026-11-21T17:30:00Z".parse().unwrap();
    assert!(f.reg.history(f.patron).unwrap().iter().any(|e| e.action == "checkin" && e.at == at));

    // Not on loan: still ok, no alert, and a word on the screen.
    let r = checkin(&f, &t, "I1");
    assert!(r.ok && !r.alert);
    assert_eq!(r.screen_message, vec!["This item was not on loan."]);

    // Someone waits for it: alert, and where it goes.
    let other = second_patron(&f);
    assert!(checkout(&f, &t, "I1", |_| {}).ok);
    f.reg.place_hold(other.id, HoldTarget::Item("I1".into()), "BRANCH", None, now()).unwrap();
    let r = checkin(&f, &t, "I1");
    assert!(r.ok && r.alert);
    assert_eq!(r.alert_type, Some(AlertType::HoldElsewhere));
    assert_eq!(r.sort_bin.as_deref(), Some("HOLD"));
    assert_eq!((r.destination_location.as_deref(), r.hold_patron_id.as_deref()), (Some("BRANCH"), Some("P2")));
    assert_eq!(f.reg.item("I1").unwrap().status, crate::domain::ItemStatus::OnHoldShelf);

    let r = checkin(&f, &t, "NOPE");
    assert!(!r.ok && r.alert);
    assert_eq!(r.permanent_location, "");
}

#[test]
fn item_information_renew_end_session() {
    let f = fixture();
    let mut t = login(&f, "kiosk1", "kiosk-secret").unwrap();
    // The patron's PIN was verified earlier on the connection (patron-verification = session).
    t.verified = Some("21234000012345".into());
    add_item(&f, "I1", Some(Money(5_00)), 1);
    let info = |b: &str| {
        let req = ItemInformation { item_identifier: Cow::Owned(b.into()), ..Default::default() };
        settle(Service::new(f.reg.engine.as_ref()).item_information(&t, &req, now())).unwrap()
    };
    assert_eq!(wire(info("I1")), "1803000620261122    110000ABI1|AJTitle I1|CF0|BGMAIN|BHSEK|BV5.00|CK001|\r");
    assert_eq!(
        wire(info("NOPE")),
        "1801010120261122    110000ABNOPE|AJ|AFThis item is not in the library's catalogue.|\r"
    );

    let renew = |b: &str| {
        let req = Renew {
            patron_identifier: Cow::Borrowed("21234000012345"),
            item_identifier: Some(Cow::Owned(b.into())),
            ..Default::default()
        };
        settle(Service::new(f.reg.engine.as_ref()).renew(&t, &req, now())).unwrap()
    };
    let r = renew("I1");
    assert_eq!((r.ok, r.screen_message[0].as_ref()), (false, "This item is not on loan to you."));
    assert!(checkout(&f, &t, "I1", |q| q.fee_acknowledged = Some(true)).ok);
    assert_eq!(info("I1").circulation_status, CirculationStatus::Charged);
    let r = renew("I1");
    assert!(r.ok && r.renewal_ok, "{:?}", r.screen_message);
    assert_eq!(f.reg.store.loan("I1").unwrap().unwrap().renewals, 1);
    // The default policy allows three renewals.
    assert!(renew("I1").ok && renew("I1").ok);
    let r = renew("I1");
    assert_eq!((r.ok, r.screen_message[0].as_ref()), (false, "Renewal limit reached (3)."));

    let req = EndPatronSession { patron_identifier: Cow::Borrowed("anyone"), ..Default::default() };
    assert_eq!(
        wire(Service::new(f.reg.engine.as_ref()).end_session(&t, &req, now())),
        "36Y20261122    110000AOMAIN|AAanyone|\r"
    );
}

#[test]
fn fee_paid_applies_payments_and_refuses_overpayment() {
    let f = fixture();
    let t = login(&f, "kiosk1", "kiosk-secret").unwrap();
    let a = f.reg.add_fee(f.patron, FeeKind::Overdue, Money(3_00), None, None, now()).unwrap();
    let b = f.reg.add_fee(f.patron, FeeKind::Damage, Money(10_00), None, None, now()).unwrap();
    let pay = |amount: &str, currency: &str, fee: Option<String>| {
        let req = FeePaid {
            currency_type: proto::Currency::new(currency).unwrap(),
            fee_amount: Cow::Owned(amount.into()),
            patron_identifier: Cow::Borrowed("21234000012345"),
            fee_identifier: fee.map(Cow::Owned),
            ..Default::default()
        };
        settle(Service::new(f.reg.engine.as_ref()).fee_paid(&t, &req, now())).unwrap()
    };
    let r = pay("14.00", "SEK", None);
    assert!(!r.payment_accepted);
    assert!(r.screen_message[0].contains("more than the 13.00 owed"), "{:?}", r.screen_message);
    assert!(!pay("5.00", "USD", None).payment_accepted);
    assert!(!pay("five", "SEK", None).payment_accepted);
    // 5.00 on the oldest first: 3.00 settles fee a, 2.00 goes to b.
    let r = pay("5.00", "SEK", None);
    assert!(r.payment_accepted);
    assert!(r.transaction_id.is_some());
    assert_eq!(f.reg.store.fee(a.id).unwrap().unwrap().status, FeeStatus::Paid);
    assert_eq!(f.reg.store.fee(b.id).unwrap().unwrap().paid, Money(2_00));
    assert_eq!(f.reg.balance(f.patron).unwrap(), Money(8_00));
    // A named fee takes the payment; another patron's or a settled one is refused.
    assert!(!pay("1.00", "SEK", Some(a.id.to_string())).payment_accepted);
    assert!(pay("8.00", "SEK", Some(b.id.to_string())).payment_accepted);
    assert_eq!(f.reg.balance(f.patron).unwrap(), Money::ZERO);
}

#[test]
fn renew_all_lists_what_was_and_was_not_renewed() {
    let f = fixture();
    let t = login(&f, "kiosk1", "kiosk-secret").unwrap();
    add_item(&f, "I1", None, 1);
    add_item(&f, "I2", None, 1);
    assert!(checkout(&f, &t, "I1", |_| {}).ok && checkout(&f, &t, "I2", |_| {}).ok);
    let other = second_patron(&f);
    f.reg.place_hold(other.id, HoldTarget::Item("I2".into()), "MAIN", None, now()).unwrap();
    let req = proto::RenewAll {
        patron_identifier: Cow::Borrowed("21234000012345"),
        patron_password: Some(Secret::new("4321")),
        ..Default::default()
    };
    let r = settle(Service::new(f.reg.engine.as_ref()).renew_all(&t, &req, now())).unwrap();
    assert_eq!(wire(r), "6610001000120261122    110000AOMAIN|BMI1|BNI2 This item is on hold for another patron.|\r");
}

#[test]
fn holds_are_placed_changed_and_cancelled() {
    let f = fixture();
    let mut t = login(&f, "kiosk1", "kiosk-secret").unwrap();
    // The patron's PIN was verified earlier on the connection (patron-verification = session).
    t.verified = Some("21234000012345".into());
    add_item(&f, "I1", None, 1);
    let hold = |mode: proto::HoldMode, pickup: Option<&str>| {
        let req = proto::Hold {
            hold_mode: mode,
            patron_identifier: Cow::Borrowed("21234000012345"),
            item_identifier: Some(Cow::Borrowed("I1")),
            pickup_location: pickup.map(|p| Cow::Owned(p.to_string())),
            ..Default::default()
        };
        settle(Service::new(f.reg.engine.as_ref()).hold(&t, &req, now())).unwrap()
    };
    let r = hold(proto::HoldMode::Add, None);
    assert!(r.ok && r.available);
    assert_eq!((r.queue_position.as_deref(), r.pickup_location.as_deref()), (Some("1"), Some("ENTRANCE")));
    assert!(!hold(proto::HoldMode::Add, None).ok, "one hold per patron and item");
    let r = hold(proto::HoldMode::Change, Some("BRANCH"));
    assert_eq!((r.ok, r.pickup_location.as_deref()), (true, Some("BRANCH")));
    assert!(hold(proto::HoldMode::Delete, None).ok);
    assert!(f.reg.store.holds_of(f.patron).unwrap().is_empty());
    let r = hold(proto::HoldMode::Delete, None);
    assert_eq!((r.ok, r.screen_message[0].as_ref()), (false, "Hold refused: you have no such hold."));
}

#[test]
fn block_and_enable_follow_the_profile() {
    let f = fixture();
    let t = login(&f, "kiosk1", "kiosk-secret").unwrap();
    let block = |t: &Terminal| {
        let req = proto::BlockPatron {
            card_retained: true,
            blocked_card_msg: Cow::Borrowed("Card left in the machine"),
            patron_identifier: Cow::Borrowed("21234000012345"),
            ..Default::default()
        };
        settle(Service::new(f.reg.engine.as_ref()).block_patron(t, &req, now())).unwrap()
    };
    let enable = |t: &Terminal| {
        let req = proto::PatronEnable { patron_identifier: Cow::Borrowed("21234000012345"), ..Default::default() };
        settle(Service::new(f.reg.engine.as_ref()).patron_enable(t, &req, now())).unwrap()
    };
    // Off by default: the state is reported unchanged, with a word why.
    let r = block(&t);
    assert!(!r.patron_status.contains(PatronStatus::CHARGE_DENIED));
    assert_eq!(r.screen_message.last().map(|m| m.as_ref()), Some("This terminal may not block cards."));
    f.reg
        .set_account_profile(
            "kiosk1",
            &[("status-update".into(), "yes".into()), ("patron-enable".into(), "yes".into())],
        )
        .unwrap();
    let t = login(&f, "kiosk1", "kiosk-secret").unwrap();
    let r = block(&t);
    assert!(r.patron_status.contains(PatronStatus::CHARGE_DENIED));
    let b = &f.reg.store.patron(f.patron).unwrap().blocks[0];
    assert_eq!((b.kind.as_str(), b.note.as_deref()), ("self-check", Some("Card left in the machine (card retained)")));
    // Enable lifts only what kiosks placed.
    f.reg.block(f.patron, "general", None, now()).unwrap();
    let r = enable(&t);
    assert!(r.patron_status.contains(PatronStatus::CHARGE_DENIED), "the staff block stays");
    let active: Vec<String> =
        f.reg.store.patron(f.patron).unwrap().blocks.iter().filter(|b| b.active).map(|b| b.kind.clone()).collect();
    assert_eq!(active, vec!["general"]);
}

#[test]
fn item_status_update_stores_properties() {
    let f = fixture();
    let t = login(&f, "kiosk1", "kiosk-secret").unwrap();
    add_item(&f, "I1", None, 1);
    let update = |b: &str| {
        let req = proto::ItemStatusUpdate {
            item_identifier: Cow::Owned(b.into()),
            item_properties: Cow::Borrowed("shelf 4, RFID tag 9"),
            ..Default::default()
        };
        settle(Service::new(f.reg.engine.as_ref()).item_status_update(&t, &req, now())).unwrap()
    };
    assert_eq!(wire(update("I1")), "20120261122    110000ABI1|AJTitle I1|CHshelf 4, RFID tag 9|\r");
    assert_eq!(f.reg.item("I1").unwrap().properties.as_deref(), Some("shelf 4, RFID tag 9"));
    assert!(!update("NOPE").item_properties_ok);
}

/// A frame with its `AY`/`AZ` trailer.
fn sealed(body: &str, seq: u8) -> String {
    let head = format!("{body}AY{seq}AZ");
    format!("{head}{:04X}", proto::checksum(head.as_bytes()))
}

#[test]
fn a_session_is_driven_by_frames_and_a_fixed_clock() {
    let f = fixture();
    let svc = Service::new(f.reg.engine.as_ref());
    let mut s = Session::new(SessionRules::default());
    let mut send = |frame: &str| {
        let o = settle(s.on_frame(&svc, frame.as_bytes(), now()));
        (o.reply.map(|b| String::from_utf8(b.to_vec()).unwrap()), o.verdict, o.close)
    };
    assert_eq!(send("97"), (Some("96\r".into()), Verdict::Resent, false));
    let (reply, verdict, _) = send("2300120261122    110000AOMAIN|AA21234000012345|AC|AD4321|");
    assert_eq!(verdict, Verdict::NotLoggedIn);
    assert_eq!(
        reply.unwrap(),
        "24YYYY          00120261122   Z100000AOMAIN|AA21234000012345|AE|BLN|CQN|AFPlease log in first: this terminal is not logged in.|\r"
    );
    assert_eq!(
        send(&sealed("9300CNkiosk1|COkiosk-secret|", 1)),
        (Some(format!("{}\r", sealed("941", 1))), Verdict::Ok, false)
    );
    // The same time on every reply: the clock is the caller's.
    let status = sealed("2300120261122    110000AOMAIN|AA21234000012345|AC|AD4321|", 2);
    let (first, verdict, _) = send(&status);
    assert_eq!(verdict, Verdict::Ok);
    assert!(first.as_deref().unwrap().starts_with("24              00120261122    110000AOMAIN|"));
    assert_eq!(send(&status), (first.clone(), Verdict::Duplicate, false));
    assert_eq!(send("97AZFEF5"), (first, Verdict::Resent, false));
    // Never silent: an unknown code gets 96; a 96 sent to us gets nothing (no ping-pong);
    // either way five in a row close the connection.
    for n in 1..=4 {
        let (reply, verdict, close) = send("XX not a message");
        assert_eq!((reply.as_deref(), verdict, close), (Some("96\r"), Verdict::UnknownCode, false), "{n}");
    }
    assert_eq!(send("96"), (None, Verdict::Ignored, true));
}

/// A sequenced request sent again on a new connection from the same address (the reply was
/// lost with the first) gets the same bytes, and the register changed once; from another
/// address the same bytes are another terminal's request.
#[test]
fn a_request_sent_again_on_a_new_connection_is_answered_as_before() {
    let f = fixture();
    let fee = f.reg.add_fee(f.patron, FeeKind::Damage, Money(10_00), None, None, now()).unwrap();
    let svc = Service::new(f.reg.engine.as_ref());
    let pay = sealed(&format!("3720261122    1100000400SEKBV2.00|AOMAIN|AA21234000012345|AC|CG{}|", fee.id), 3);
    let on_new_connection = |from: [u8; 4]| {
        let mut s = Session::new(SessionRules::default()).from_address(std::net::IpAddr::from(from));
        let login = settle(s.on_frame(&svc, sealed("9300CNkiosk1|COkiosk-secret|", 1).as_bytes(), now()));
        assert_eq!(login.verdict, Verdict::Ok);
        let o = settle(s.on_frame(&svc, pay.as_bytes(), now()));
        (String::from_utf8(o.reply.unwrap().to_vec()).unwrap(), o.verdict)
    };
    let (first, verdict) = on_new_connection([10, 0, 0, 5]);
    assert!(first.starts_with("38Y"), "{first}");
    assert_eq!(verdict, Verdict::Ok);
    assert_eq!(on_new_connection([10, 0, 0, 5]), (first.clone(), Verdict::Ok));
    assert_eq!(f.reg.balance(f.patron).unwrap(), Money(8_00), "paid once");
    let (other, _) = on_new_connection([10, 0, 0, 6]);
    assert_ne!(other, first, "another payment, another transaction id");
    assert_eq!(f.reg.balance(f.patron).unwrap(), Money(6_00));
}
