//! Fines and fees: charges, credits, payments, waivers and disputes.

use crate::domain::validate;
use crate::domain::*;

use super::super::ops::Payment;
use super::super::store::Write;
use super::super::unit::Unit;

/// Adds a payment to a fee: what is paid, `Paid` once nothing is owed, and the history line.
fn record_payment(fee: &mut Fee, amount: Money, by: String, at: jiff::Timestamp, transaction: Option<String>) {
    fee.paid = Money(fee.paid.0 + amount.0);
    if fee.outstanding() == Money::ZERO {
        fee.status = FeeStatus::Paid;
    }
    fee.history.push(FeeEvent::Paid { amount, by, at, transaction });
}

/// Charges a fee, or (negative amount) records a credit, which needs a comment.
pub fn add(
    u: &mut Unit<'_>,
    patron: u64,
    kind: FeeKind,
    amount: Money,
    item: Option<&str>,
    comment: Option<&str>,
) -> Result<Fee, Refusal> {
    let p = u.patron(patron)?;
    let inst = u.institution(&p.institution)?;
    if amount.0 == 0 {
        return Err(Refusal::rule("a fee of 0.00 charges nothing"));
    }
    if amount.0 < 0 && comment.is_none_or(|c| c.trim().is_empty()) {
        return Err(Refusal::rule("a credit needs a comment saying why"));
    }
    for (field, v) in [("item", item), ("comment", comment)] {
        v.map_or(Ok(()), |v| validate::plain(field, v))?;
    }
    let fee = Fee {
        id: u.new_id(),
        patron,
        kind,
        amount,
        paid: Money::ZERO,
        currency: inst.currency,
        item: item.map(Into::into),
        comment: comment.map(Into::into),
        status: FeeStatus::Active,
        created: u.now(),
        history: vec![FeeEvent::Added { by: u.actor().to_string(), at: u.now() }],
        previous_id: None,
    };
    u.put(Write::Fee(Box::new(fee.clone())))?;
    u.audit(patron, "fee-add", vec![("fee".into(), String::new(), format!("{} {} {}", fee.id, kind.name(), amount))]);
    Ok(fee)
}

/// Changes one fee as `change` decides, with its audit entry.
fn change(
    u: &mut Unit<'_>,
    id: u64,
    action: &str,
    change: impl FnOnce(&mut Fee, String, jiff::Timestamp) -> Result<(), Refusal>,
) -> Result<Fee, Refusal> {
    let mut fee = u.state.fee(id).cloned().ok_or(Refusal::NoFee(id))?;
    let before = format!("{:?} paid {}", fee.status, fee.paid);
    change(&mut fee, u.actor().to_string(), u.now())?;
    let after = format!("{:?} paid {}", fee.status, fee.paid);
    u.put(Write::Fee(Box::new(fee.clone())))?;
    u.audit(fee.patron, action, vec![(format!("fee {id}"), before, after)]);
    Ok(fee)
}

/// Records a payment on one fee at the desk: the kiosk's payment rule ([`pay`]), on that fee.
pub fn pay_fee(u: &mut Unit<'_>, id: u64, amount: Money, transaction: Option<String>) -> Result<Fee, Refusal> {
    let fee = u.state.fee(id).cloned().ok_or(Refusal::NoFee(id))?;
    if fee.status != FeeStatus::Active {
        return Err(Refusal::FeeStatus { fee: id, status: fee.status, wanted: "an active fee can be paid" });
    }
    let paid = pay(u, fee.patron, amount, Some(id), transaction.as_deref())?;
    paid.fees.into_iter().next().ok_or(Refusal::FeeNotOpen(id))
}

/// Takes a payment from a patron (a kiosk's 37): on the named fee, or on the oldest active
/// fees in turn, all in one commit. More than is owed is refused.
pub fn pay(
    u: &mut Unit<'_>,
    patron: u64,
    amount: Money,
    fee: Option<u64>,
    transaction: Option<&str>,
) -> Result<Payment, Refusal> {
    if amount.0 <= 0 {
        return Err(Refusal::NotPositive);
    }
    let mut fees: Vec<Fee> = u
        .state
        .fees_of(patron)
        .into_iter()
        .filter(|f| f.status == FeeStatus::Active && f.outstanding().0 > 0)
        .cloned()
        .collect();
    if let Some(id) = fee {
        fees.retain(|f| f.id == id);
        if fees.is_empty() {
            return Err(Refusal::FeeNotOpen(id));
        }
    }
    let owed = Money(fees.iter().map(|f| f.outstanding().0).sum());
    if amount > owed {
        return Err(Refusal::Overpayment { amount, owed });
    }
    let receipt = u.new_id();
    let transaction = transaction.map(String::from).or_else(|| Some(format!("receipt {receipt}")));
    let mut left = amount.0;
    let mut changed = Vec::new();
    for mut f in fees {
        if left == 0 {
            break;
        }
        let part = left.min(f.outstanding().0);
        left -= part;
        record_payment(&mut f, Money(part), u.actor().to_string(), u.now(), transaction.clone());
        u.put(Write::Fee(Box::new(f.clone())))?;
        u.audit(patron, "fee-pay", vec![(format!("fee {}", f.id), String::new(), format!("paid {}", Money(part)))]);
        changed.push(f);
    }
    Ok(Payment { fees: changed, receipt })
}

/// Waives an active or disputed fee, with a reason. A waived fee cannot be restored.
pub fn waive(u: &mut Unit<'_>, id: u64, reason: &str) -> Result<Fee, Refusal> {
    validate::required("reason", reason)?;
    change(u, id, "fee-waive", |fee, by, at| {
        if !matches!(fee.status, FeeStatus::Active | FeeStatus::Disputed) {
            return Err(Refusal::FeeStatus {
                fee: id,
                status: fee.status,
                wanted: "active or disputed fees can be waived",
            });
        }
        fee.status = FeeStatus::Waived;
        fee.history.push(FeeEvent::Waived { reason: reason.into(), by, at });
        Ok(())
    })
}

/// Marks an active fee disputed: it no longer counts toward the balance.
pub fn dispute(u: &mut Unit<'_>, id: u64) -> Result<Fee, Refusal> {
    change(u, id, "fee-dispute", |fee, by, at| {
        if fee.status != FeeStatus::Active {
            return Err(Refusal::FeeStatus { fee: id, status: fee.status, wanted: "an active fee can be disputed" });
        }
        fee.status = FeeStatus::Disputed;
        fee.history.push(FeeEvent::Disputed { by, at });
        Ok(())
    })
}

/// Returns a disputed fee to active. Waived fees stay waived.
pub fn restore(u: &mut Unit<'_>, id: u64) -> Result<Fee, Refusal> {
    change(u, id, "fee-restore", |fee, by, at| {
        if fee.status != FeeStatus::Disputed {
            return Err(Refusal::FeeStatus { fee: id, status: fee.status, wanted: "a disputed fee can be restored" });
        }
        fee.status = FeeStatus::Active;
        fee.history.push(FeeEvent::Restored { by, at });
        Ok(())
    })
}
