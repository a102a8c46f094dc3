//! Items, loans and holds. `lend` is the one lending decision: the kiosk's 11 and 29, the
//! desk's checkout and a renewal all come here.

use crate::domain::rules::{self, CheckoutDecision, CheckoutRequest};
use crate::domain::validate;
use crate::domain::*;
use std::sync::Arc;

use super::super::ops::{HoldTarget, Lent, NewItem};
use super::super::store::Write;
use super::super::unit::Unit;

fn rule(text: String) -> Refusal {
    Refusal::Rule(text)
}

/// How a loan is asked for.
#[derive(Clone, Debug, Default)]
pub struct Lend {
    /// The patron accepts the item's rental fee.
    pub accept_fee: bool,
    /// Renewals are allowed from where this is asked (an 11 on one's own item renews).
    pub renewal_allowed: bool,
    /// Made off line already ("no block"), due then: recorded as it was made.
    pub no_block: Option<jiff::Timestamp>,
}

/// Every check a stored item must pass.
pub fn check_item(item: &Item) -> Result<(), Refusal> {
    validate::required("barcode", &item.barcode)?;
    validate::required("title", &item.title)?;
    for (field, v) in [("author", &item.author), ("call number", &item.call_number), ("location", &item.location)] {
        v.as_deref().map_or(Ok(()), |s| validate::plain(field, s))?;
    }
    if item.media_type > 999 {
        return Err(rule(format!("media type {} is not a three-digit SIP code", item.media_type)));
    }
    if item.security_marker > 99 {
        return Err(rule(format!("security marker {} is not a two-digit SIP code", item.security_marker)));
    }
    if item.rental_fee.is_some_and(|f| f.0 < 0) {
        return Err(rule("a rental fee cannot be negative".into()));
    }
    Ok(())
}

pub fn add_item(u: &mut Unit<'_>, new: NewItem) -> Result<Item, Refusal> {
    u.institution(&new.institution)?;
    let item = Item {
        barcode: new.barcode.trim().to_string(),
        institution: new.institution,
        title: new.title,
        author: new.author,
        call_number: new.call_number,
        location: new.location,
        media_type: new.media_type,
        status: ItemStatus::Available,
        security_marker: new.security_marker,
        rental_fee: new.rental_fee,
        loan_days: new.loan_days,
        properties: None,
    };
    check_item(&item)?;
    if u.state.item(&item.barcode).is_some() {
        return Err(Refusal::Exists { what: "item", key: item.barcode });
    }
    u.put(Write::Item(Arc::new(item.clone())))?;
    Ok(item)
}

/// Changes fields of an item (`FIELD=VALUE`; an empty value clears an optional one).
pub fn edit_item(u: &mut Unit<'_>, barcode: &str, sets: &[(String, String)]) -> Result<Item, Refusal> {
    let mut item = u.item(barcode)?;
    for (field, value) in sets {
        let v = value.trim();
        let text = |v: &str| if v.is_empty() { None } else { Some(v.to_string()) };
        let number = |v: &str| v.parse::<u32>().map_err(|_| rule(format!("{field} '{v}' is not a whole number")));
        match field.as_str() {
            "title" => item.title = v.into(),
            "author" => item.author = text(v),
            "call-number" => item.call_number = text(v),
            "location" => item.location = text(v),
            "media-type" => item.media_type = u16::try_from(number(v)?).unwrap_or(u16::MAX),
            "security-marker" => item.security_marker = u8::try_from(number(v)?).unwrap_or(u8::MAX),
            "loan-days" => item.loan_days = if v.is_empty() { None } else { Some(number(v)?) },
            "rental-fee" => {
                item.rental_fee = if v.is_empty() {
                    None
                } else {
                    Some(Money::parse(v).ok_or_else(|| rule(format!("'{v}' is not an amount")))?)
                }
            }
            "status" => {
                item.status = serde_json::from_value(serde_json::Value::String(v.into())).map_err(|_| {
                    rule(format!(
                        "status '{v}' is not one of available, on-loan, on-hold-shelf, in-transit, in-process, lost, missing, claimed-returned"
                    ))
                })?
            }
            _ => {
                return Err(rule(format!(
                    "'{field}' cannot be edited; editable: title, author, call-number, location, media-type, security-marker, loan-days, rental-fee, status"
                )));
            }
        }
    }
    check_item(&item)?;
    u.put(Write::Item(Arc::new(item.clone())))?;
    Ok(item)
}

/// Removes an item that is not on loan, with its holds.
pub fn delete_item(u: &mut Unit<'_>, barcode: &str) -> Result<(), Refusal> {
    u.item(barcode)?;
    if let Some(loan) = u.state.loan(barcode) {
        return Err(rule(format!("item '{barcode}' is on loan to patron {}; return it first", loan.patron)));
    }
    let holds: Vec<u64> = u.state.holds_on(barcode).iter().map(|h| h.id).collect();
    u.put(Write::RemoveItem(barcode.into()))?;
    for h in holds {
        u.put(Write::RemoveHold(h))?;
    }
    Ok(())
}

/// Stores the opaque properties a kiosk keeps on an item (SIP 19).
pub fn set_item_properties(u: &mut Unit<'_>, barcode: &str, properties: &str) -> Result<Item, Refusal> {
    let mut item = u.item(barcode)?;
    validate::plain("item properties", properties)?;
    item.properties = if properties.is_empty() { None } else { Some(properties.into()) };
    u.put(Write::Item(Arc::new(item.clone())))?;
    Ok(item)
}

/// Decides a checkout (or renewal) by the rules and, when it is allowed, writes the loan with
/// its fee, the item's status, the patron's fulfilled hold and the audit entry. The day, and
/// so the due date, is the institution's, whoever lends.
pub fn lend(u: &mut Unit<'_>, patron: u64, barcode: &str, r: &Lend) -> Result<Lent, Refusal> {
    let now = u.now();
    let p = u.patron_shared(patron)?;
    let inst = u.institution_shared(&p.institution)?;
    let mut item = u.item(barcode)?;
    let standing = u.state.standing(&p, &inst, now);
    let tz = inst.time_zone();
    let current = u.state.loan(barcode).cloned();
    let holds: Vec<Hold> = u.state.holds_on(barcode).into_iter().cloned().collect();
    let decision = match r.no_block {
        // Done off line already: recorded as the kiosk did it, whatever the rules say now.
        Some(due) if current.as_ref().is_none_or(|l| l.patron == patron) => {
            CheckoutDecision::Lend { due, fee: item.rental_fee.filter(|f| f.0 > 0) }
        }
        _ => rules::checkout(&CheckoutRequest {
            patron: &p,
            standing: &standing,
            policy: inst.policy_for(p.user_group.as_deref()),
            item: &item,
            current_loan: current.as_ref(),
            holds: &holds,
            fee_acknowledged: r.accept_fee,
            renewal_allowed: r.renewal_allowed,
            now,
            tz: &tz,
        }),
    };
    let mut charged = None;
    let (loan, renewed) = match decision {
        CheckoutDecision::Refuse(d) => return Err(Refusal::Lending(d)),
        CheckoutDecision::Renew { due, renewals } => (
            Loan { due, renewals, ..current.unwrap_or(Loan { item: barcode.into(), patron, out: now, due, renewals }) },
            true,
        ),
        CheckoutDecision::Lend { due, fee } => {
            if let Some(amount) = fee {
                let fee = Fee {
                    id: u.new_id(),
                    patron,
                    kind: FeeKind::Rental,
                    amount,
                    paid: Money::ZERO,
                    currency: inst.currency.clone(),
                    item: Some(barcode.into()),
                    comment: None,
                    status: FeeStatus::Active,
                    created: now,
                    history: vec![FeeEvent::Added { by: u.actor().to_string(), at: now }],
                    previous_id: None,
                };
                u.put(Write::Fee(Box::new(fee.clone())))?;
                charged = Some(fee);
            }
            // The patron's own hold is fulfilled by the loan.
            for h in holds.iter().filter(|h| h.patron == patron) {
                u.put(Write::RemoveHold(h.id))?;
            }
            (Loan { item: barcode.into(), patron, out: now, due, renewals: 0 }, false)
        }
    };
    item.status = ItemStatus::OnLoan;
    u.put(Write::Item(Arc::new(item.clone())))?;
    u.put(Write::Loan(Arc::new(loan.clone())))?;
    let change = vec![("loan".into(), String::new(), format!("{barcode} due {}", loan.due))];
    u.audit(patron, if renewed { "renew" } else { "checkout" }, change);
    Ok(Lent { loan, item, fee: charged, renewed })
}

/// Takes an item back: ends its loan, and puts it on the hold shelf if someone waits for it.
/// Returns the loan it ended and the hold it serves.
pub fn checkin(
    u: &mut Unit<'_>,
    barcode: &str,
    returned: Option<jiff::Timestamp>,
) -> Result<(Option<Loan>, Option<Hold>), Refusal> {
    let mut item = u.item(barcode)?;
    let loan = u.state.loan(barcode).cloned();
    let next = u.state.holds_on(barcode).first().map(|h| (*h).clone());
    if loan.is_some() {
        u.put(Write::EndLoan(barcode.into()))?;
    }
    item.status = match &next {
        Some(h) => {
            u.put(Write::Hold(Box::new(Hold { status: HoldStatus::Available, ..h.clone() })))?;
            ItemStatus::OnHoldShelf
        }
        None => ItemStatus::Available,
    };
    u.put(Write::Item(Arc::new(item)))?;
    if let Some(l) = &loan {
        let at = returned.unwrap_or(u.now());
        u.audit_at(l.patron, "checkin", vec![("loan".into(), barcode.into(), String::new())], at);
    }
    Ok((loan, next))
}

/// Places a hold on an item (or on any copy of a title).
pub fn place_hold(
    u: &mut Unit<'_>,
    patron: u64,
    target: &HoldTarget,
    pickup: &str,
    expires: Option<jiff::civil::Date>,
) -> Result<Hold, Refusal> {
    let p = u.patron(patron)?;
    let inst = u.institution(&p.institution)?;
    let standing = u.state.standing(&p, &inst, u.now());
    if standing.denied.hold {
        return Err(Refusal::HoldsDenied(standing.first_reason().cloned().unwrap_or(rules::Reason::Inactive)));
    }
    validate::required("pickup location", pickup)?;
    let limit = u.state.limits().max_holds_per_patron;
    if u.state.holds_of(patron).len() >= limit as usize {
        return Err(Refusal::Full { what: "holds", limit });
    }
    let (item, title) = match target {
        HoldTarget::Item(b) => {
            u.item(b)?;
            if u.state.holds_on(b).iter().any(|h| h.patron == patron) {
                return Err(Refusal::AlreadyHeld(b.clone()));
            }
            (Some(b.as_str()), None)
        }
        HoldTarget::Title(t) => {
            validate::required("title", t)?;
            (None, Some(t.as_str()))
        }
    };
    let hold = Hold {
        id: u.new_id(),
        patron,
        item: item.map(Into::into),
        title: title.map(Into::into),
        pickup: pickup.into(),
        placed: u.now(),
        expires,
        status: HoldStatus::Waiting,
    };
    u.put(Write::Hold(Box::new(hold.clone())))?;
    u.audit(
        patron,
        "hold",
        vec![("hold".into(), String::new(), format!("{} {}", hold.id, item.or(title).unwrap_or("")))],
    );
    Ok(hold)
}

/// Changes where a hold is collected or when it lapses; its place in the queue stays.
pub fn change_hold(
    u: &mut Unit<'_>,
    id: u64,
    pickup: Option<&str>,
    expires: Option<jiff::civil::Date>,
) -> Result<Hold, Refusal> {
    let mut hold = u.state.hold(id).cloned().ok_or(Refusal::NoHold(id))?;
    if let Some(p) = pickup {
        validate::required("pickup location", p)?;
        hold.pickup = p.into();
    }
    if expires.is_some() {
        hold.expires = expires;
    }
    u.put(Write::Hold(Box::new(hold.clone())))?;
    let change = vec![("hold".into(), id.to_string(), format!("pickup {} expires {:?}", hold.pickup, hold.expires))];
    u.audit(hold.patron, "hold-change", change);
    Ok(hold)
}

pub fn cancel_hold(u: &mut Unit<'_>, id: u64) -> Result<Hold, Refusal> {
    let hold = u.state.hold(id).cloned().ok_or(Refusal::NoHold(id))?;
    u.put(Write::RemoveHold(id))?;
    u.audit(hold.patron, "hold-cancel", vec![("hold".into(), id.to_string(), String::new())]);
    Ok(hold)
}
