//! Circulation rules as pure functions: records, policy and `now` in, a decision with its
//! reasons out. The server calls them to answer kiosks; staff commands call them to explain.

use std::fmt;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};

use super::records::{
    Fee, FeeStatus, Hold, Institution, Item, ItemStatus, Loan, LoanPolicy, Money, Patron, Privileges,
};

/// Wrong PINs in a row that lock a patron.
pub const MAX_PIN_FAILURES: u8 = 5;

/// What the patron owes: active fees less what was paid, credits subtracted. Disputed, waived,
/// paid and closed fees are left out.
pub fn balance<'a>(fees: impl IntoIterator<Item = &'a Fee>) -> Money {
    Money(fees.into_iter().filter(|f| f.status == FeeStatus::Active).map(|f| f.outstanding().0).sum())
}

/// What a kiosk shows for a card locked by wrong PINs.
pub const LOCKED_OUT: &str = "Too many wrong PINs: your card is locked. Please see staff.";

/// Why a patron may not do something. `Display` says it for staff; kiosks word it in the
/// terminal's language (`service`), without staff notes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    Deleted,
    Inactive,
    Expired { on: Date },
    LockedOut,
    Blocked { kind: String, note: Option<String> },
    OverFineThreshold { balance: Money, threshold: Money },
    TooManyLoans { loans: u32, max: u32 },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Deleted => f.write_str("This card is no longer valid. Please see staff."),
            Reason::Inactive => f.write_str("Your account is inactive. Please see staff."),
            Reason::Expired { on } => write!(f, "Your card expired on {on}. Please see staff."),
            Reason::LockedOut => f.write_str(LOCKED_OUT),
            Reason::Blocked { note: Some(n), .. } => write!(f, "Your card is blocked: {n}. Please see staff."),
            Reason::Blocked { kind, note: None } => write!(f, "Your card is blocked ({kind}). Please see staff."),
            Reason::OverFineThreshold { balance, .. } => write!(f, "Fines of {balance} block borrowing."),
            Reason::TooManyLoans { max, .. } => write!(f, "You have reached the limit of {max} loans."),
        }
    }
}

/// What the patron may do now, and why not.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Standing {
    pub denied: Privileges,
    pub reasons: Vec<Reason>,
    /// Set when the card is lost or the account closed: kiosks show it as "card reported lost".
    pub card_invalid: bool,
    pub over_fine_threshold: bool,
    pub too_many_loans: bool,
}

impl Standing {
    /// The first reason that denies `what`, for a screen message.
    pub fn first_reason(&self) -> Option<&Reason> {
        self.reasons.first()
    }
}

/// A patron's standing at an institution: expiry, status, lockout, blocks, fines and loans.
pub fn standing(patron: &Patron, institution: &Institution, loans: u32, balance: Money, today: Date) -> Standing {
    let policy = institution.policy_for(patron.user_group.as_deref());
    let mut s = Standing {
        denied: Privileges::NONE,
        reasons: Vec::new(),
        card_invalid: false,
        over_fine_threshold: false,
        too_many_loans: false,
    };
    let deny = |s: &mut Standing, p: Privileges, r: Reason| {
        s.denied = s.denied.union(p);
        s.reasons.push(r);
    };
    if patron.deleted.is_some() {
        s.card_invalid = true;
        deny(&mut s, Privileges::ALL, Reason::Deleted);
    }
    if !patron.active {
        deny(&mut s, Privileges::ALL, Reason::Inactive);
    }
    if let Some(on) = patron.expiry.filter(|e| *e < today) {
        deny(&mut s, Privileges::ALL, Reason::Expired { on });
    }
    if patron.locked {
        deny(&mut s, Privileges::ALL, Reason::LockedOut);
    }
    for block in patron.blocks.iter().filter(|b| b.active) {
        let denies =
            institution.block_types.iter().find(|t| t.code == block.kind).map_or(Privileges::ALL, |t| t.denies);
        if block.kind == "lost-card" {
            s.card_invalid = true;
        }
        deny(&mut s, denies, Reason::Blocked { kind: block.kind.clone(), note: block.note.clone() });
    }
    if balance > policy.fine_threshold {
        s.over_fine_threshold = true;
        deny(&mut s, Privileges::ALL, Reason::OverFineThreshold { balance, threshold: policy.fine_threshold });
    }
    if loans >= policy.max_loans {
        s.too_many_loans = true;
        let borrow = Privileges { borrow: true, ..Privileges::NONE };
        deny(&mut s, borrow, Reason::TooManyLoans { loans, max: policy.max_loans });
    }
    s
}

/// The due date of a loan made at `now`: the policy's (or the item's) number of days later, at
/// 23:59 in the institution's time zone.
pub fn due_date(policy: &LoanPolicy, item: &Item, now: Timestamp, tz: &TimeZone) -> Timestamp {
    let days = item.loan_days.unwrap_or(policy.loan_days);
    let local = now.to_zoned(tz.clone()).date();
    let due_day = local.checked_add(Span::new().days(i64::from(days))).unwrap_or(local);
    due_day.to_datetime(Time::constant(23, 59, 0, 0)).to_zoned(tz.clone()).map_or(now, |z| z.timestamp())
}

/// Why an item cannot be lent (or renewed).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Denial {
    Patron(Reason),
    ItemNotAvailable(ItemStatus),
    OnLoanToAnother,
    OnHoldForAnother,
    RenewalLimit {
        max: u32,
    },
    RenewalNotAllowed,
    /// The item carries a fee the patron has not accepted yet.
    FeeNotAcknowledged {
        fee: Money,
    },
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::Patron(r) => r.fmt(f),
            Denial::ItemNotAvailable(s) => write!(f, "This item cannot be borrowed now ({s:?})."),
            Denial::OnLoanToAnother => f.write_str("This item is on loan to another patron."),
            Denial::OnHoldForAnother => f.write_str("This item is on hold for another patron."),
            Denial::RenewalLimit { max } => write!(f, "Renewal limit reached ({max})."),
            Denial::RenewalNotAllowed => f.write_str("Renewal is not allowed from this terminal."),
            Denial::FeeNotAcknowledged { fee } => write!(f, "Rental fee {fee} - confirm to borrow."),
        }
    }
}

/// What a checkout request comes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckoutDecision {
    /// Lend the item, charging `fee` if there is one.
    Lend {
        due: Timestamp,
        fee: Option<Money>,
    },
    /// The patron already has it: extend the loan.
    Renew {
        due: Timestamp,
        renewals: u32,
    },
    Refuse(Denial),
}

/// Everything a checkout decision looks at.
pub struct CheckoutRequest<'a> {
    pub patron: &'a Patron,
    pub standing: &'a Standing,
    pub policy: &'a LoanPolicy,
    pub item: &'a Item,
    pub current_loan: Option<&'a Loan>,
    /// Holds on the item, oldest first.
    pub holds: &'a [Hold],
    pub fee_acknowledged: bool,
    /// The kiosk allows renewals (SC renewal policy).
    pub renewal_allowed: bool,
    pub now: Timestamp,
    pub tz: &'a TimeZone,
}

/// Decides a checkout: the patron's standing, the item's state, holds, renewals and fees.
pub fn checkout(r: &CheckoutRequest<'_>) -> CheckoutDecision {
    if let Some(loan) = r.current_loan {
        if loan.patron != r.patron.id {
            return CheckoutDecision::Refuse(Denial::OnLoanToAnother);
        }
        return match renew(r.patron, r.standing, r.policy, loan, r.holds, r.renewal_allowed, r.item, r.now, r.tz) {
            Ok(due) => CheckoutDecision::Renew { due, renewals: loan.renewals + 1 },
            Err(refusal) => CheckoutDecision::Refuse(refusal),
        };
    }
    if r.standing.denied.borrow {
        let reason = r.standing.reasons.first().cloned().unwrap_or(Reason::Inactive);
        return CheckoutDecision::Refuse(Denial::Patron(reason));
    }
    match r.item.status {
        ItemStatus::Available | ItemStatus::OnHoldShelf | ItemStatus::InTransit => {}
        other => return CheckoutDecision::Refuse(Denial::ItemNotAvailable(other)),
    }
    if r.holds.first().is_some_and(|h| h.patron != r.patron.id) {
        return CheckoutDecision::Refuse(Denial::OnHoldForAnother);
    }
    let fee = r.item.rental_fee.filter(|f| f.0 > 0);
    if let Some(fee) = fee {
        if !r.fee_acknowledged {
            return CheckoutDecision::Refuse(Denial::FeeNotAcknowledged { fee });
        }
    }
    CheckoutDecision::Lend { due: due_date(r.policy, r.item, r.now, r.tz), fee }
}

/// Decides a renewal: the new due date, or why not.
#[allow(clippy::too_many_arguments)]
pub fn renew(
    patron: &Patron,
    standing: &Standing,
    policy: &LoanPolicy,
    loan: &Loan,
    holds: &[Hold],
    allowed: bool,
    item: &Item,
    now: Timestamp,
    tz: &TimeZone,
) -> Result<Timestamp, Denial> {
    if !allowed {
        return Err(Denial::RenewalNotAllowed);
    }
    if standing.denied.renew {
        return Err(Denial::Patron(standing.reasons.first().cloned().unwrap_or(Reason::Inactive)));
    }
    if loan.renewals >= policy.max_renewals {
        return Err(Denial::RenewalLimit { max: policy.max_renewals });
    }
    if holds.iter().any(|h| h.patron != patron.id) {
        return Err(Denial::OnHoldForAnother);
    }
    Ok(due_date(policy, item, now, tz))
}

/// What one PIN attempt comes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PinCheck {
    Accepted,
    Wrong {
        remaining: u8,
    },
    /// Locked now or before: no PIN is accepted until staff unlock.
    LockedOut,
}

/// Applies one PIN attempt to the lockout state: `(outcome, failed_pins, locked)` after it.
/// A right PIN resets the count; the fifth wrong one in a row locks.
pub fn pin_attempt(failed_before: u8, locked: bool, correct: bool) -> (PinCheck, u8, bool) {
    if locked {
        return (PinCheck::LockedOut, failed_before, true);
    }
    if correct {
        return (PinCheck::Accepted, 0, false);
    }
    let failed = failed_before.saturating_add(1);
    if failed >= MAX_PIN_FAILURES {
        (PinCheck::LockedOut, failed, true)
    } else {
        (PinCheck::Wrong { remaining: MAX_PIN_FAILURES - failed }, failed, false)
    }
}

/// The outcome a lockout state reports: what [`pin_attempt`] returned when it left this state.
pub fn pin_check_of(failed_pins: u8, locked: bool) -> PinCheck {
    match (locked, failed_pins) {
        (true, _) => PinCheck::LockedOut,
        (false, 0) => PinCheck::Accepted,
        (false, n) => PinCheck::Wrong { remaining: MAX_PIN_FAILURES.saturating_sub(n) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::records::*;
    use jiff::civil::date;

    fn now() -> Timestamp {
        "2026-11-22T10:00:00Z".parse().unwrap()
    }

    fn institution() -> Institution {
        Institution {
            default_policy: LoanPolicy { loan_days: 21, max_loans: 2, max_renewals: 1, fine_threshold: Money(100_00) },
            ..Institution::new("MAIN", "Main", "SEK", "Europe/Stockholm")
        }
    }

    fn patron(id: u64) -> Patron {
        Patron {
            expiry: Some(date(2027, 12, 31)),
            ..Patron::new(id, "MAIN", &format!("P{id}"), "Avery", "Reader", now())
        }
    }

    fn fee(amount: i64, paid: i64, status: FeeStatus) -> Fee {
        Fee {
            id: 1,
            patron: 1,
            kind: FeeKind::Overdue,
            amount: Money(amount),
            paid: Money(paid),
            currency: "SEK".into(),
            item: None,
            comment: None,
            status,
            created: now(),
            history: vec![],
            previous_id: None,
        }
    }

    fn item(status: ItemStatus) -> Item {
        Item {
            barcode: "31234".into(),
            institution: "MAIN".into(),
            title: "Kindred".into(),
            author: None,
            call_number: None,
            location: None,
            media_type: 1,
            status,
            security_marker: 2,
            rental_fee: None,
            loan_days: None,
            properties: None,
        }
    }

    #[test]
    fn balance_leaves_out_disputed_and_closed_and_subtracts_credits() {
        let fees = [
            fee(50_00, 10_00, FeeStatus::Active),
            fee(30_00, 0, FeeStatus::Disputed),
            fee(20_00, 0, FeeStatus::Waived),
            fee(5_00, 5_00, FeeStatus::Paid),
            fee(-15_00, 0, FeeStatus::Active),
        ];
        assert_eq!(balance(&fees), Money(25_00));
    }

    #[test]
    fn standing_lists_every_reason() {
        let inst = institution();
        let today = date(2026, 11, 22);
        let good = standing(&patron(1), &inst, 0, Money::ZERO, today);
        assert_eq!(good.denied, Privileges::NONE);
        assert!(good.reasons.is_empty());

        let mut p = patron(1);
        p.expiry = Some(date(2026, 1, 1));
        p.blocks.push(Block {
            id: 1,
            kind: "overdue".into(),
            note: Some("three weeks late".into()),
            active: true,
            by: "staff".into(),
            at: now(),
        });
        let s = standing(&p, &inst, 2, Money(150_00), today);
        assert_eq!(s.denied, Privileges::ALL);
        assert_eq!(s.reasons.len(), 4);
        assert!(s.over_fine_threshold && s.too_many_loans);
        assert_eq!(s.reasons[0].to_string(), "Your card expired on 2026-01-01. Please see staff.");
        assert_eq!(s.reasons[2].to_string(), "Fines of 150.00 block borrowing.");

        // A block of a type that denies only some privileges.
        let mut p = patron(1);
        p.blocks.push(Block { id: 1, kind: "overdue".into(), note: None, active: true, by: "s".into(), at: now() });
        let s = standing(&p, &inst, 0, Money::ZERO, today);
        assert_eq!(s.denied, Privileges { borrow: true, renew: false, hold: true });
        // An inactive block counts for nothing; an unknown block type denies everything.
        p.blocks[0].active = false;
        p.blocks.push(Block { id: 2, kind: "mystery".into(), note: None, active: true, by: "s".into(), at: now() });
        assert_eq!(standing(&p, &inst, 0, Money::ZERO, today).denied, Privileges::ALL);
    }

    #[test]
    fn due_dates_end_the_local_day() {
        let inst = institution();
        let tz = TimeZone::get(&inst.timezone).unwrap();
        let due = due_date(&inst.default_policy, &item(ItemStatus::Available), now(), &tz);
        assert_eq!(due.to_zoned(tz).to_string(), "2026-12-13T23:59:00+01:00[Europe/Stockholm]");
    }

    fn request<'a>(
        p: &'a Patron,
        s: &'a Standing,
        inst: &'a Institution,
        it: &'a Item,
        loan: Option<&'a Loan>,
        holds: &'a [Hold],
        tz: &'a TimeZone,
    ) -> CheckoutRequest<'a> {
        CheckoutRequest {
            patron: p,
            standing: s,
            policy: &inst.default_policy,
            item: it,
            current_loan: loan,
            holds,
            fee_acknowledged: false,
            renewal_allowed: true,
            now: now(),
            tz,
        }
    }

    #[test]
    fn checkout_decisions() {
        let inst = institution();
        let tz = TimeZone::get(&inst.timezone).unwrap();
        let p = patron(1);
        let ok = standing(&p, &inst, 0, Money::ZERO, date(2026, 11, 22));
        let avail = item(ItemStatus::Available);

        assert!(matches!(
            checkout(&request(&p, &ok, &inst, &avail, None, &[], &tz)),
            CheckoutDecision::Lend { fee: None, .. }
        ));

        let lost = item(ItemStatus::Lost);
        assert_eq!(
            checkout(&request(&p, &ok, &inst, &lost, None, &[], &tz)),
            CheckoutDecision::Refuse(Denial::ItemNotAvailable(ItemStatus::Lost))
        );

        let hold = Hold {
            id: 1,
            patron: 2,
            item: Some("31234".into()),
            title: None,
            pickup: "MAIN".into(),
            placed: now(),
            expires: None,
            status: HoldStatus::Waiting,
        };
        assert_eq!(
            checkout(&request(&p, &ok, &inst, &avail, None, std::slice::from_ref(&hold), &tz)),
            CheckoutDecision::Refuse(Denial::OnHoldForAnother)
        );

        let mut rental = item(ItemStatus::Available);
        rental.rental_fee = Some(Money(1_00));
        assert_eq!(
            checkout(&request(&p, &ok, &inst, &rental, None, &[], &tz)),
            CheckoutDecision::Refuse(Denial::FeeNotAcknowledged { fee: Money(1_00) })
        );
        let mut acked = request(&p, &ok, &inst, &rental, None, &[], &tz);
        acked.fee_acknowledged = true;
        assert!(matches!(checkout(&acked), CheckoutDecision::Lend { fee: Some(Money(100)), .. }));

        let blocked = standing(&p, &inst, 0, Money(500_00), date(2026, 11, 22));
        assert!(matches!(
            checkout(&request(&p, &blocked, &inst, &avail, None, &[], &tz)),
            CheckoutDecision::Refuse(Denial::Patron(Reason::OverFineThreshold { .. }))
        ));
    }

    #[test]
    fn checking_out_an_item_already_held_renews_it_within_limits() {
        let inst = institution();
        let tz = TimeZone::get(&inst.timezone).unwrap();
        let p = patron(1);
        let ok = standing(&p, &inst, 1, Money::ZERO, date(2026, 11, 22));
        let out = item(ItemStatus::OnLoan);
        let mut loan = Loan { item: "31234".into(), patron: 1, out: now(), due: now(), renewals: 0 };
        assert!(matches!(
            checkout(&request(&p, &ok, &inst, &out, Some(&loan), &[], &tz)),
            CheckoutDecision::Renew { renewals: 1, .. }
        ));
        loan.renewals = 1;
        assert_eq!(
            checkout(&request(&p, &ok, &inst, &out, Some(&loan), &[], &tz)),
            CheckoutDecision::Refuse(Denial::RenewalLimit { max: 1 })
        );
        loan.patron = 9;
        assert_eq!(
            checkout(&request(&p, &ok, &inst, &out, Some(&loan), &[], &tz)),
            CheckoutDecision::Refuse(Denial::OnLoanToAnother)
        );
    }

    #[test]
    fn five_wrong_pins_in_a_row_lock_and_a_right_one_resets() {
        let (mut failed, mut locked) = (0, false);
        for expected_remaining in [4, 3, 2, 1] {
            let (check, f, l) = pin_attempt(failed, locked, false);
            assert_eq!(check, PinCheck::Wrong { remaining: expected_remaining });
            (failed, locked) = (f, l);
        }
        assert_eq!(pin_attempt(failed, locked, true), (PinCheck::Accepted, 0, false));
        let (check, f, l) = pin_attempt(failed, locked, false);
        assert_eq!((check, f, l), (PinCheck::LockedOut, 5, true));
        // Once locked, even the right PIN is refused until staff unlock.
        assert_eq!(pin_attempt(f, l, true).0, PinCheck::LockedOut);

        // Every outcome can be read back from the state it leaves.
        for failed in 0..MAX_PIN_FAILURES {
            for correct in [false, true] {
                let (check, f, l) = pin_attempt(failed, false, correct);
                assert_eq!(pin_check_of(f, l), check, "{failed} failures, correct {correct}");
            }
        }
    }
}
