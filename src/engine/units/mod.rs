//! The units of work staff operations run: each reads what it needs from the unit's state, lets
//! a rule decide, and yields its writes. The kiosk's units are in `engine::kiosk`.

pub(super) mod circulation;
pub(super) mod details;
pub(super) mod fees;
pub(super) mod patrons;
pub(super) mod selfservice;
pub(super) mod staff;

use crate::domain::validate::{self, Invalid};
use crate::domain::*;
use std::sync::Arc;

use super::ops::{Operation, Receipt};
use super::store::Write;
use super::terminals::{self, LastChange};
use super::unit::Unit;
use super::{Error, exchange, kiosk};

pub use circulation::check_item;
pub use patrons::check_login;

/// Runs one operation as a unit. A terminal's request sent again (the same bytes from the same
/// address) is answered from the receipt its first run left, and runs no rule; a first one
/// that changes the register leaves its receipt with the change.
pub fn run(op: Operation, u: &mut Unit<'_>) -> Result<Receipt, Error> {
    // The unit's `By` outlives the unit's borrow, so nothing of it is copied to read it.
    let by = u.by;
    let Some(mark) = &by.request else { return decide(op, u) };
    let terminal = &by.actor;
    if let Some(receipt) =
        u.state.last_change(terminal, &mark.from).filter(|c| c.request == mark.digest).and_then(LastChange::receipt)
    {
        return Ok(receipt);
    }
    let receipt = decide(op, u)?;
    if u.writes() > 0 {
        if let Some(bytes) = terminals::encode_receipt(&receipt) {
            // The same terminal's receipts from other addresses, old enough that no retry can
            // want them, go with it.
            let keep = jiff::SignedDuration::from_hours(i64::from(u.state.limits().retry_receipt_hours));
            let stale: Vec<String> = u
                .state
                .last_changes_of(terminal)
                .filter(|c| c.from != *mark.from && u.now().duration_since(c.at) >= keep)
                .map(LastChange::key)
                .collect();
            for key in stale {
                u.put(Write::RemoveLastChange(key))?;
            }
            let change = LastChange {
                terminal: terminal.clone(),
                from: mark.from.to_string(),
                request: mark.digest,
                at: u.now(),
                receipt: bytes,
            };
            u.put(Write::LastChange(Arc::new(change)))?;
        }
    }
    Ok(receipt)
}

/// Decides one operation.
fn decide(op: Operation, u: &mut Unit<'_>) -> Result<Receipt, Error> {
    use Operation as O;
    staff::authorise(u, &op)?;
    Ok(match op {
        O::KioskPatron { at, card, pin, detail } => kiosk::patron(u, &at, &card, pin.as_ref(), detail)?,
        O::KioskCheckout(c) => kiosk::checkout(u, *c)?,
        O::KioskCheckin { at, item, returned } => kiosk::checkin(u, &at, &item, returned)?,
        O::KioskRenew { at, card, pin, item, fee_acknowledged, no_block_due } => {
            kiosk::renew(u, &at, &card, pin.as_ref(), item.as_deref(), fee_acknowledged, no_block_due)?
        }
        O::KioskRenewAll { at, card, pin, fee_acknowledged } => {
            kiosk::renew_all(u, &at, &card, pin.as_ref(), fee_acknowledged)?
        }
        O::KioskPay { at, card, currency, amount, fee, transaction } => {
            kiosk::pay(u, &at, &card, &currency, &amount, fee.as_deref(), transaction.as_deref())?
        }
        O::KioskHold { at, card, pin, action, target, pickup, expires } => {
            kiosk::hold(u, &at, &card, pin.as_ref(), action, target, pickup, expires)?
        }
        O::KioskBlock { at, card, message } => kiosk::block(u, &at, &card, &message)?,
        O::KioskEnable { at, card, pin } => kiosk::enable(u, &at, &card, pin.as_ref())?,
        O::KioskItemProperties { at: _, item, properties } => Receipt::ItemProperties(
            u.attempt(|u| circulation::set_item_properties(u, &item, &properties)).map(Box::new),
        ),

        O::AddInstitution { code, name, currency, timezone } => {
            Receipt::Institution(Box::new(patrons::add_institution(u, &code, &name, &currency, &timezone)?))
        }
        O::ChangeInstitution { code, change } => {
            Receipt::Institution(Box::new(patrons::change_institution(u, &code, change)?))
        }
        O::AddPatron { new, force } => Receipt::Patron(Box::new(patrons::add(u, *new, force)?)),
        O::EditPatron { patron, sets, expect } => {
            Receipt::Patron(Box::new(patrons::edit(u, patron, &sets, expect.as_deref())?))
        }
        O::AddIdentifier { patron, kind, value, note } => {
            Receipt::Patron(Box::new(patrons::add_identifier(u, patron, &kind, &value, note.as_deref())?))
        }
        O::SetIdentifierActive { patron, value, active } => {
            Receipt::Patron(Box::new(patrons::set_identifier_active(u, patron, &value, active)?))
        }
        O::AddNote { patron, kind, text, public } => {
            Receipt::Patron(Box::new(patrons::add_note(u, patron, &kind, &text, public)?))
        }
        O::RemoveNote { patron, note } => Receipt::Patron(Box::new(patrons::remove_note(u, patron, note)?)),
        O::SetProxy { proxy, for_whom, allow } => {
            Receipt::Patron(Box::new(patrons::set_proxy(u, proxy, for_whom, allow)?))
        }
        O::SetActive { patron, active } => Receipt::Patron(Box::new(patrons::set_active(u, patron, active)?)),
        O::SetPin { patron, pin } => Receipt::Patron(Box::new(patrons::set_pin(u, patron, &pin.0)?)),
        O::CheckPin { patron, pin } => Receipt::Pin(patrons::check_pin(u, patron, &pin.0)?),
        O::Unlock { patron } => Receipt::Patron(Box::new(patrons::unlock(u, patron)?)),
        O::Block { patron, kind, note } => {
            Receipt::Patron(Box::new(patrons::block(u, patron, &kind, note.as_deref())?))
        }
        O::Unblock { patron, kind } => Receipt::Patron(Box::new(patrons::unblock(u, patron, kind.as_deref())?)),
        O::AddFee { patron, kind, amount, item, comment } => {
            Receipt::Fee(Box::new(fees::add(u, patron, kind, amount, item.as_deref(), comment.as_deref())?))
        }
        O::PayFee { fee, amount, transaction } => Receipt::Fee(Box::new(fees::pay_fee(u, fee, amount, transaction)?)),
        O::WaiveFee { fee, reason } => Receipt::Fee(Box::new(fees::waive(u, fee, &reason)?)),
        O::DisputeFee { fee } => Receipt::Fee(Box::new(fees::dispute(u, fee)?)),
        O::RestoreFee { fee } => Receipt::Fee(Box::new(fees::restore(u, fee)?)),
        O::RequestTransfer { patron, to } => Receipt::Patron(Box::new(patrons::request_transfer(u, patron, &to)?)),
        O::DecideTransfer { patron, accept } => Receipt::Patron(Box::new(patrons::decide_transfer(u, patron, accept)?)),
        O::DeletePatron { patron } => match patrons::delete(u, patron) {
            // The patron hears what is owed, though the deletion is refused.
            Err(r @ Refusal::CannotDelete { balance, .. }) if balance.0 > 0 => {
                patrons::balance_due(u, patron)?;
                Receipt::Refused(r)
            }
            done => Receipt::Patron(Box::new(done?)),
        },
        O::RestorePatron { patron } => Receipt::Patron(Box::new(patrons::restore(u, patron)?)),
        O::Purge { dry_run } => Receipt::Purged(patrons::purge(u, dry_run)?),
        O::Report { patron } => Receipt::Notice(Box::new(super::notices::report(u, patron)?)),
        O::Invite { patron } => Receipt::Notice(Box::new(patrons::invite(u, patron)?)),
        O::SetOptout { patron, kind, out } => Receipt::Optouts(patrons::set_optout(u, patron, kind, out)?),
        O::AddContact { patron, kind, value, postal_code, usage } => {
            Receipt::Patron(Box::new(details::add_contact(u, patron, kind, &value, postal_code.as_deref(), usage)?))
        }
        O::RemoveContact { patron, contact } => Receipt::Patron(Box::new(details::remove_contact(u, patron, contact)?)),
        O::PreferContact { patron, contact } => Receipt::Patron(Box::new(details::prefer_contact(u, patron, contact)?)),
        O::AddStatistic { patron, category, note } => {
            Receipt::Patron(Box::new(details::add_statistic(u, patron, &category, note.as_deref())?))
        }
        O::RemoveStatistic { patron, statistic } => {
            Receipt::Patron(Box::new(details::remove_statistic(u, patron, statistic)?))
        }
        O::AddAttachment { patron, name, content } => {
            Receipt::Patron(Box::new(details::add_attachment(u, patron, &name, content)?))
        }
        O::RemoveAttachment { patron, attachment } => {
            Receipt::Patron(Box::new(details::remove_attachment(u, patron, attachment)?))
        }
        O::SetPicture { patron, content } => Receipt::Patron(Box::new(details::set_picture(u, patron, content)?)),
        O::RedeemPinLink { token, pin } => Receipt::Patron(Box::new(selfservice::redeem(u, &token.0, &pin.0)?)),
        O::PatronLogin { institution, card, pin } => match selfservice::login(u, &institution, &card, &pin.0)? {
            Ok(p) => Receipt::Patron(Box::new(p)),
            Err(r) => Receipt::Refused(r),
        },
        O::ForgotPin { institution, given } => {
            selfservice::forgot_pin(u, &institution, &given)?;
            Receipt::Done
        }
        O::AsPatron { patron, session, act } => selfservice::act(u, patron, &session, act)?,
        O::ConfirmEmail { token } => Receipt::Patron(Box::new(selfservice::confirm_email(u, &token.0)?)),
        O::AddItem(new) => Receipt::Item(Box::new(circulation::add_item(u, *new)?)),
        O::EditItem { barcode, sets } => Receipt::Item(Box::new(circulation::edit_item(u, &barcode, &sets)?)),
        O::DeleteItem { barcode } => {
            circulation::delete_item(u, &barcode)?;
            Receipt::Done
        }
        O::Lend { patron, item, accept_fee } => {
            let request = circulation::Lend { accept_fee, renewal_allowed: true, no_block: None };
            Receipt::Loan(circulation::lend(u, patron, &item, &request)?.loan)
        }
        O::Return { item } => Receipt::Returned(circulation::checkin(u, &item, None)?.0),
        O::PlaceHold { patron, target, pickup, expires } => {
            Receipt::Hold(Box::new(circulation::place_hold(u, patron, &target, &pickup, expires)?))
        }
        O::CancelHold { hold } => Receipt::Hold(Box::new(circulation::cancel_hold(u, hold)?)),
        O::AddAccount { login, password_hash, institution, location } => Receipt::Account(Box::new(
            patrons::add_account(u, &login, password_hash, &institution, location.as_deref())?,
        )),
        O::SetAccountPassword { login, password_hash } => {
            Receipt::Account(Box::new(patrons::set_account_password(u, &login, password_hash)?))
        }
        O::SetAccountProfile { login, sets } => {
            Receipt::Account(Box::new(patrons::set_account_profile(u, &login, &sets)?))
        }
        O::RemoveAccount { login } => {
            patrons::remove_account(u, &login)?;
            Receipt::Done
        }
        O::AddStaff { login, name, password_hash, role, institutions } => {
            Receipt::Staff(Box::new(staff::add(u, &login, &name, password_hash, role, institutions)?))
        }
        O::ChangeStaff { login, name, role, institutions } => {
            Receipt::Staff(Box::new(staff::change(u, &login, name, role, institutions)?))
        }
        O::SetStaffPassword { login, password_hash, matched: _ } => {
            Receipt::Staff(Box::new(staff::set_password(u, &login, password_hash)?))
        }
        O::StaffLogin { login, matched } => match staff::login(u, &login, matched.as_deref())? {
            Ok(m) => Receipt::Staff(Box::new(m)),
            Err(r) => Receipt::Refused(r),
        },
        O::UnlockStaff { login } => Receipt::Staff(Box::new(staff::unlock(u, &login)?)),
        O::AddStaffToken { login, label, digest } => {
            Receipt::Staff(Box::new(staff::add_token(u, &login, &label, digest)?))
        }
        O::RevokeStaffToken { login, token } => Receipt::Staff(Box::new(staff::revoke_token(u, &login, token)?)),
        O::RemoveStaff { login } => {
            staff::remove(u, &login)?;
            Receipt::Done
        }
        O::Import { lines, take_pin_hashes, ids_above } => {
            Receipt::Imported(exchange::import_lines(u, lines, take_pin_hashes, ids_above))
        }
        O::Delivered { notice, result } => {
            super::notices::delivered(u, *notice, result)?;
            Receipt::Done
        }
    })
}

fn opt(field: &'static str, v: &Option<String>) -> Result<(), Invalid> {
    v.as_deref().map_or(Ok(()), |s| validate::plain(field, s))
}

/// Every check a stored patron must pass, whoever wrote it (staff, an edit, an import):
/// required fields, characters, the institution's patterns, national ids, minors' guardians.
pub fn check_patron(inst: &Institution, p: &Patron, today: jiff::civil::Date) -> Result<(), Refusal> {
    validate::required("first name", &p.first_name)?;
    validate::required("last name", &p.last_name)?;
    validate::required("primary id", &p.primary_id)?;
    for (field, v) in [
        ("middle name", &p.middle_name),
        ("title", &p.title),
        ("e-mail", &p.email),
        ("phone", &p.phone),
        ("address", &p.address),
        ("postal code", &p.postal_code),
        ("language", &p.language),
        ("user group", &p.user_group),
    ] {
        opt(field, v)?;
    }
    for i in &p.identifiers {
        validate::required("identifier", &i.value)?;
        validate::required("identifier type", &i.kind)?;
        if i.kind == "national-id" {
            let canonical = validate::swedish_national_id(&i.value, today)?;
            if canonical != i.value {
                return Err(Refusal::rule(format!(
                    "national id '{}' must be stored in its 12-digit form {canonical}",
                    i.value
                )));
            }
        }
    }
    validate::formats(&inst.formats, &p.primary_id, p.email.as_deref(), p.phone.as_deref(), p.postal_code.as_deref())?;
    for c in &p.contacts {
        details::check_contact(inst, c)?;
    }
    for s in &p.statistics {
        details::check_statistic(s)?;
    }
    let minor = p.birth_date.is_some_and(|b| validate::is_minor(b, today));
    if minor && (p.guardian.is_none() || p.terms_accepted.is_none()) {
        return Err(Invalid::MinorWithoutGuardian.into());
    }
    Ok(())
}

/// Every check a stored institution must pass.
pub fn check_institution(i: &Institution) -> Result<(), Refusal> {
    let code = &i.code;
    validate::required("institution code", code)?;
    validate::required("name", &i.name)?;
    if code.len() > 32 || code.contains(char::is_whitespace) {
        return Err(Refusal::rule(format!("institution code '{code}' must be 1-32 characters without spaces")));
    }
    let currency = &i.currency;
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Refusal::rule(format!("currency '{currency}' is not an ISO 4217 code such as SEK or USD")));
    }
    let timezone = &i.timezone;
    jiff::tz::TimeZone::get(timezone)
        .map_err(|_| Refusal::rule(format!("time zone '{timezone}' is not an IANA zone such as Europe/Stockholm")))?;
    for (field, p) in [
        ("primary id", &i.formats.primary_id),
        ("e-mail", &i.formats.email),
        ("phone", &i.formats.phone),
        ("postal code", &i.formats.postal_code),
    ] {
        validate::pattern(field, "", p.as_deref()).or_else(|e| match e {
            Invalid::Pattern { .. } => Ok(()),
            e => Err(e),
        })?;
    }
    Ok(())
}

/// The fields that differ between two versions of a patron, as (field, old, new); a PIN shows
/// only as "changed".
pub fn diff(old: &Patron, new: &Patron) -> Vec<(String, String, String)> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return vec![];
    };
    let text = |v: Option<&serde_json::Value>| match v {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    };
    b.iter()
        .filter(|(k, v)| a.get(*k) != Some(*v))
        .map(|(k, v)| {
            if k == "pin" {
                (k.clone(), String::new(), "changed".into())
            } else {
                (k.clone(), text(a.get(k)), text(Some(v)))
            }
        })
        .collect()
}
