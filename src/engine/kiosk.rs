//! The units kiosks run (SIP2): each finds the card, checks the PIN as the terminal's profile
//! asks, decides by the same rules staff use, and reports every fact its reply needs, decided
//! in the same unit. A refusal is part of the receipt; what it wrote (a wrong PIN counted)
//! stands.

use std::sync::Arc;

use jiff::Timestamp;
use jiff::civil::Date;

use crate::domain::profile::Verification;
use crate::domain::rules::{self, Denial, PinCheck};
use crate::domain::*;

use super::Error;
use super::ops::*;
use super::store::Write;
use super::terminals::PinWindow;
use super::unit::Unit;
use super::units::circulation::{self as circ, Lend};
use super::units::{fees, patrons};

/// The patron a kiosk names: one of their active identifiers (or the primary id) at the
/// terminal's institution. Deleted patrons are unknown to kiosks.
pub fn find_card(u: &Unit<'_>, at: &Kiosk, card: &str) -> Option<Arc<Patron>> {
    card_holder(u, &at.institution, card)
}

/// The patron whose card (an active identifier, or the primary id) this is at the
/// institution; deleted patrons have none.
pub fn card_holder(u: &Unit<'_>, institution: &str, card: &str) -> Option<Arc<Patron>> {
    u.state
        .identifier_owner(institution, card)
        .and_then(|id| u.state.patron_shared(id))
        .filter(|p| p.deleted.is_none() && (p.primary_id == card || p.active_identifiers().any(|v| v == card)))
}

/// Checks the PIN a kiosk sent, as the profile asks; a check counts toward the lockout.
fn pin(u: &mut Unit<'_>, at: &Kiosk, p: &Patron, pin: Option<&Pin>) -> Result<PinVerdict, Refusal> {
    let Some(pin) = pin else { return Ok(PinVerdict::NotChecked) };
    if !at.pin_required {
        return Ok(PinVerdict::NotChecked);
    }
    if pin.0.is_empty() {
        return Ok(if at.empty_pin_ok { PinVerdict::Right } else { PinVerdict::Wrong });
    }
    // The terminal's budget of wrong PINs is checked, and spent, in the same unit as the
    // patron's own count, so every node and connection of the terminal shares it.
    if !PinWindow::allows(u.state.pin_window(&at.login), u.state.limits(), u.now()) {
        return Ok(PinVerdict::Throttled);
    }
    let verdict = match patrons::attempt_pin(u, p, &pin.0)? {
        PinCheck::Accepted => PinVerdict::Right,
        PinCheck::Wrong { .. } => PinVerdict::Wrong,
        // "Not correct" would mislead on a locked card, where even the right PIN is refused.
        PinCheck::LockedOut => PinVerdict::Locked,
    };
    if verdict != PinVerdict::Right {
        let spent = PinWindow::after_failure(u.state.pin_window(&at.login), &at.login, u.state.limits(), u.now());
        u.put(Write::PinWindow(Box::new(spent)))?;
    }
    Ok(verdict)
}

/// Whether a request without a PIN may act for `card`: the terminal's `patron-verification`
/// (PINs not used at all, no verification asked, or this card verified on the connection).
fn present_without_pin(at: &Kiosk, card: &str) -> bool {
    !at.pin_required
        || match at.verification {
            Verification::None => true,
            Verification::Session => at.verified_card.as_deref() == Some(card),
            Verification::PinEachRequest => false,
        }
}

/// The patron a circulation request (11, 15, 29, 65) acts for, or why not: an unknown card, a
/// PIN that was sent and is wrong (counted toward the lockout), or none where one is needed.
fn authenticate(
    u: &mut Unit<'_>,
    at: &Kiosk,
    card: &str,
    sent: Option<&Pin>,
) -> Result<Result<Arc<Patron>, Refusal>, Refusal> {
    let Some(p) = find_card(u, at, card) else { return Ok(Err(Refusal::UnknownCard)) };
    if sent.is_none() && !present_without_pin(at, card) {
        return Ok(Err(Refusal::PinNeeded));
    }
    if let Some(r) = pin(u, at, &p, sent)?.refusal() {
        return Ok(Err(r));
    }
    Ok(Ok(p))
}

/// The patron as they stand now.
fn report(u: &Unit<'_>, id: u64, verdict: PinVerdict, detail: bool) -> Result<KioskPatron, Refusal> {
    let patron = u.state.patron_shared(id).ok_or_else(|| Refusal::NoPatron(format!("#{id}")))?;
    let inst =
        u.state.institution(&patron.institution).ok_or_else(|| Refusal::NoInstitution(patron.institution.clone()))?;
    let standing = u.state.standing(&patron, inst, u.now());
    let (loans, holds, fees) = if detail {
        (
            u.state.loans_of(id).into_iter().cloned().collect(),
            u.state.holds_of(id).into_iter().cloned().collect(),
            u.state.fees_of(id).into_iter().filter(|f| f.status == FeeStatus::Active).cloned().collect(),
        )
    } else {
        Default::default()
    };
    Ok(KioskPatron {
        balance: u.state.balance(id),
        currency: inst.currency.clone(),
        policy: inst.policy_for(patron.user_group.as_deref()).clone(),
        patron,
        pin: verdict,
        standing,
        loans,
        holds,
        fees,
    })
}

/// 23 and 63.
pub fn patron(u: &mut Unit<'_>, at: &Kiosk, card: &str, sent: Option<&Pin>, detail: bool) -> Result<Receipt, Error> {
    let Some(p) = find_card(u, at, card) else {
        return Ok(Receipt::KioskPatron(Err(Refusal::UnknownCard), None));
    };
    // Checked first, so that a lockout it causes shows at once.
    let verdict = pin(u, at, &p, sent)?;
    Ok(Receipt::KioskPatron(Ok(Box::new(report(u, p.id, verdict, detail)?)), None))
}

/// 11.
pub fn checkout(u: &mut Unit<'_>, c: KioskCheckout) -> Result<Receipt, Error> {
    let receipt = |item, result| Ok(Receipt::Checkout(Box::new(CheckoutReceipt { item, result })));
    let p = match authenticate(u, &c.at, &c.card, c.pin.as_ref())? {
        Ok(p) => p,
        Err(r) => return receipt(None, Err(r)),
    };
    let Some(item) = u.state.item(&c.item).cloned() else { return receipt(None, Err(Refusal::NoItem(c.item))) };
    if c.cancel {
        // Only the loan this patron has: a cancel never ends someone else's loan.
        let result = match u.state.loan(&item.barcode) {
            Some(l) if l.patron == p.id => {
                circ::checkin(u, &item.barcode, None)?;
                Ok(CheckoutDone::Cancelled)
            }
            _ => Err(Refusal::NothingToCancel),
        };
        return receipt(Some(item), result);
    }
    let no_block = c.no_block.map(|due| {
        due.unwrap_or_else(|| {
            let inst = u.state.institution(&p.institution);
            let policy = inst.map(|i| i.policy_for(p.user_group.as_deref()).clone()).unwrap_or_default();
            let tz = inst.map_or(jiff::tz::TimeZone::UTC, Institution::time_zone);
            rules::due_date(&policy, &item, u.now(), &tz)
        })
    });
    let request =
        Lend { accept_fee: c.fee_acknowledged, renewal_allowed: c.renewal_allowed && c.at.renewals, no_block };
    let result = u.attempt(|u| circ::lend(u, p.id, &item.barcode, &request)).map(|l| CheckoutDone::Lent(Box::new(l)));
    receipt(Some(item), result)
}

/// 09, at `returned` when that is a readable moment after the loan began and not in the future.
pub fn checkin(u: &mut Unit<'_>, at: &Kiosk, barcode: &str, returned: Option<Timestamp>) -> Result<Receipt, Error> {
    let _ = at;
    let Some(item) = u.state.item(barcode).cloned() else {
        return Ok(Receipt::Checkin(Box::new(CheckinReceipt { item: None, ended: None, waiting: None })));
    };
    let now = u.now();
    let out = u.state.loan(barcode).map(|l| l.out);
    let returned = returned.filter(|t| *t <= now && out.is_none_or(|o| o <= *t));
    let (ended, next) = circ::checkin(u, barcode, returned)?;
    let ended = match ended {
        Some(l) => {
            let card = u
                .state
                .patron(l.patron)
                .map(|who| who.active_identifiers().next().unwrap_or(&who.primary_id).to_string())
                .unwrap_or_default();
            Some((l, card))
        }
        None => None,
    };
    let waiting = next.and_then(|hold| {
        let who = u.state.patron(hold.patron)?;
        Some(Waiting { primary_id: who.primary_id.clone(), name: who.display_name(), hold })
    });
    Ok(Receipt::Checkin(Box::new(CheckinReceipt { item: Some(item), ended, waiting })))
}

/// 29.
pub fn renew(
    u: &mut Unit<'_>,
    at: &Kiosk,
    card: &str,
    sent: Option<&Pin>,
    barcode: Option<&str>,
    fee_acknowledged: bool,
    no_block_due: Option<Timestamp>,
) -> Result<Receipt, Error> {
    let receipt = |item, result| Ok(Receipt::Renew(Box::new(RenewReceipt { item, result })));
    let p = match authenticate(u, at, card, sent)? {
        Ok(p) => p,
        Err(r) => return receipt(None, Err(r)),
    };
    let Some(barcode) = barcode.filter(|b| !b.is_empty()) else { return receipt(None, Err(Refusal::NotByTitle)) };
    if u.state.loan(barcode).is_none_or(|l| l.patron != p.id) {
        return receipt(None, Err(Refusal::NotOnLoanToPatron));
    }
    let item = u.state.item(barcode).cloned();
    if !at.renewals {
        return receipt(item, Err(Denial::RenewalNotAllowed.into()));
    }
    let request = Lend { accept_fee: fee_acknowledged, renewal_allowed: true, no_block: no_block_due };
    let result = u.attempt(|u| circ::lend(u, p.id, barcode, &request));
    receipt(item, result)
}

/// 65: every loan the patron has, each by the rules.
pub fn renew_all(
    u: &mut Unit<'_>,
    at: &Kiosk,
    card: &str,
    sent: Option<&Pin>,
    fee_acknowledged: bool,
) -> Result<Receipt, Error> {
    let p = match authenticate(u, at, card, sent)? {
        Ok(p) => p,
        Err(r) => return Ok(Receipt::RenewAll(Box::new(RenewAllReceipt { result: Err(r) }))),
    };
    let request = Lend { accept_fee: fee_acknowledged, renewal_allowed: at.renewals, no_block: None };
    let items: Vec<String> = u.state.loans_of(p.id).iter().map(|l| l.item.clone()).collect();
    let mut each = Vec::new();
    for item in items {
        let r = u.attempt(|u| circ::lend(u, p.id, &item, &request));
        each.push((item, r));
    }
    Ok(Receipt::RenewAll(Box::new(RenewAllReceipt { result: Ok(each) })))
}

/// 37: another currency, an amount that is not money and more than is owed are refused.
pub fn pay(
    u: &mut Unit<'_>,
    at: &Kiosk,
    card: &str,
    currency: &str,
    amount: &str,
    fee: Option<&str>,
    transaction: Option<&str>,
) -> Result<Receipt, Error> {
    let paid = |r| Ok(Receipt::Paid(r));
    let Some(p) = find_card(u, at, card) else { return paid(Err(Refusal::UnknownCard)) };
    let inst = u.institution(&p.institution)?;
    if currency != inst.currency {
        return paid(Err(Refusal::WrongCurrency { accepted: inst.currency, given: currency.into() }));
    }
    let Some(amount) = Money::parse(amount) else { return paid(Err(Refusal::NotAnAmount(amount.into()))) };
    let fee = match fee.map(str::trim).filter(|f| !f.is_empty()) {
        Some(f) => match named_fee(u, p.id, f) {
            Some(id) => Some(id),
            None => return paid(Err(Refusal::UnknownFee(f.into()))),
        },
        None => None,
    };
    paid(u.attempt(|u| fees::pay(u, p.id, amount, fee, transaction)))
}

/// The fee a 37's `CG` names: one of the patron's fees by our id, else by the id it had in the
/// previous system, else (a number) our id for `fees::pay` to refuse as not the patron's.
fn named_fee(u: &Unit<'_>, patron: u64, named: &str) -> Option<u64> {
    let fees = u.state.fees_of(patron);
    let ours = named.parse::<u64>().ok();
    if let Some(f) = fees.iter().find(|f| Some(f.id) == ours) {
        return Some(f.id);
    }
    fees.iter().find(|f| f.previous_id.as_deref() == Some(named)).map(|f| f.id).or(ours)
}

/// 15: places, cancels or changes a hold on an item or a title.
#[allow(clippy::too_many_arguments)]
pub fn hold(
    u: &mut Unit<'_>,
    at: &Kiosk,
    card: &str,
    sent: Option<&Pin>,
    action: HoldAction,
    target: Option<HoldTarget>,
    pickup: Option<String>,
    expires: Option<Date>,
) -> Result<Receipt, Error> {
    let receipt = |result| Ok(Receipt::KioskHold(Box::new(HoldReceipt { result })));
    let p = match authenticate(u, at, card, sent)? {
        Ok(p) => p,
        Err(r) => return receipt(Err(r)),
    };
    let Some(target) = target else { return receipt(Err(Refusal::NoHoldTarget)) };
    let existing = u.state.holds_of(p.id).into_iter().find(|h| match &target {
        HoldTarget::Item(i) => h.item.as_deref() == Some(i),
        HoldTarget::Title(t) => h.item.is_none() && h.title.as_deref() == Some(t),
    });
    let existing = existing.map(|h| h.id);
    let pickup = pickup.filter(|p| !p.is_empty());
    let result = u.attempt(|u| match (action, existing) {
        (HoldAction::Place, _) => {
            let pickup =
                pickup.or(at.location.as_deref().map(str::to_string)).unwrap_or_else(|| at.institution.to_string());
            circ::place_hold(u, p.id, &target, &pickup, expires).map(|h| (h, false))
        }
        (HoldAction::Cancel, Some(id)) => circ::cancel_hold(u, id).map(|h| (h, true)),
        (HoldAction::Change, Some(id)) => circ::change_hold(u, id, pickup.as_deref(), expires).map(|h| (h, false)),
        (HoldAction::Cancel | HoldAction::Change, None) => Err(Refusal::NoSuchHold),
        (HoldAction::Unknown, _) => Err(Refusal::HoldMode),
    });
    let result = result.map(|(hold, cancelled)| {
        let queue_position = if cancelled { None } else { u.state.queue_position(&hold) };
        let available = match &target {
            HoldTarget::Item(i) => Some(u.state.item(i).is_some_and(|it| it.status == ItemStatus::Available)),
            HoldTarget::Title(_) => None,
        };
        HoldDone { hold, cancelled, queue_position, available }
    });
    receipt(result)
}

/// 01: a `self-check` block with the kiosk's message, when the profile allows it.
pub fn block(u: &mut Unit<'_>, at: &Kiosk, card: &str, message: &str) -> Result<Receipt, Error> {
    let Some(p) = find_card(u, at, card) else {
        return Ok(Receipt::KioskPatron(Err(Refusal::UnknownCard), None));
    };
    let refused = if at.status_update {
        // One self-check block at a time: a repeated 01 (a kiosk retrying, or a client
        // sending it in a loop) changes nothing and adds nothing to the record.
        if !p.blocks.iter().any(|b| b.active && b.kind == "self-check") {
            patrons::block(u, p.id, "self-check", Some(message))?;
        }
        None
    } else {
        Some(Refusal::TerminalMayNot("block cards"))
    };
    Ok(Receipt::KioskPatron(Ok(Box::new(report(u, p.id, PinVerdict::NotChecked, false)?)), refused))
}

/// 25: lifts the blocks kiosks placed, when the profile allows it and the PIN, if sent, is right.
pub fn enable(u: &mut Unit<'_>, at: &Kiosk, card: &str, sent: Option<&Pin>) -> Result<Receipt, Error> {
    let Some(p) = find_card(u, at, card) else {
        return Ok(Receipt::KioskPatron(Err(Refusal::UnknownCard), None));
    };
    let verdict = pin(u, at, &p, sent)?;
    let refused = if !at.patron_enable {
        Some(Refusal::TerminalMayNot("enable cards"))
    } else if let Some(r) = verdict.refusal() {
        Some(r)
    } else {
        if p.blocks.iter().any(|b| b.active && b.kind == "self-check") {
            patrons::unblock(u, p.id, Some("self-check"))?;
        }
        None
    };
    Ok(Receipt::KioskPatron(Ok(Box::new(report(u, p.id, PinVerdict::NotChecked, false)?)), refused))
}
