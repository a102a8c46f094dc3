//! Items, loans, holds and self-check accounts: what staff keep so the server can lend.

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::civil::Date;

use super::{Register, audit};
use crate::domain::rules::{self, CheckoutDecision, CheckoutRequest};
use crate::domain::secret;
use crate::domain::validate;
use crate::domain::*;
use crate::store::{StoreError, Write};

fn refused(msg: String) -> StoreError {
    StoreError::Refused(msg)
}

fn not_found(msg: String) -> StoreError {
    StoreError::NotFound(msg)
}

/// What staff enter to add an item.
#[derive(Clone, Debug, Default)]
pub struct NewItem {
    pub barcode: String,
    pub institution: String,
    pub title: String,
    pub author: Option<String>,
    pub call_number: Option<String>,
    pub location: Option<String>,
    pub media_type: u16,
    pub security_marker: u8,
    pub rental_fee: Option<Money>,
    pub loan_days: Option<u32>,
}

/// What a hold waits for: one copy, or any copy of a title.
#[derive(Clone, Copy, Debug)]
pub enum HoldTarget<'a> {
    Item(&'a str),
    Title(&'a str),
}

/// How a checkout is asked for.
#[derive(Clone, Debug, Default)]
pub struct Lend {
    /// The patron accepted the item's rental fee.
    pub accept_fee: bool,
    /// The terminal (and its account) allow renewing an item the patron already has.
    pub renewal_allowed: bool,
    /// Done off line by the kiosk, due then: recorded even where the rules would refuse.
    pub no_block: Option<Timestamp>,
}

/// What a checkout came to.
#[derive(Clone, Debug)]
pub enum Lent {
    /// Committed: the loan, the item as it now stands, a rental fee charged, and whether it
    /// was a renewal of the patron's own loan.
    Done {
        loan: Loan,
        item: Box<Item>,
        fee: Option<Box<Fee>>,
        renewed: bool,
    },
    Refused(rules::Refusal),
}

/// Every check a stored item must pass.
pub fn check_item(item: &Item) -> Result<(), StoreError> {
    validate::required("barcode", &item.barcode)?;
    validate::required("title", &item.title)?;
    for (field, v) in [("author", &item.author), ("call number", &item.call_number), ("location", &item.location)] {
        v.as_deref().map_or(Ok(()), |s| validate::plain(field, s))?;
    }
    if item.media_type > 999 {
        return Err(refused(format!("media type {} is not a three-digit SIP code", item.media_type)));
    }
    if item.security_marker > 99 {
        return Err(refused(format!("security marker {} is not a two-digit SIP code", item.security_marker)));
    }
    if item.rental_fee.is_some_and(|f| f.0 < 0) {
        return Err(refused("a rental fee cannot be negative".into()));
    }
    Ok(())
}

/// A self-check account's login: 1-64 characters, no spaces or `|`.
pub(super) fn check_login(login: &str) -> Result<(), StoreError> {
    validate::required("login", login)?;
    if login.len() > 64 || login.contains(char::is_whitespace) {
        return Err(refused(format!("login '{login}' must be 1-64 characters without spaces")));
    }
    Ok(())
}

impl Register {
    // -- items ------------------------------------------------------------------------------

    /// Adds an item; refuses a barcode already used.
    pub fn add_item(&self, new: NewItem) -> Result<Item, StoreError> {
        self.store.institution(&new.institution)?;
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
        if self.store.item(&item.barcode)?.is_some() {
            return Err(refused(format!("item '{}' exists already", item.barcode)));
        }
        self.store.apply(&[Write::Item(item.clone())])?;
        self.store.flush()?;
        Ok(item)
    }

    pub fn item(&self, barcode: &str) -> Result<Item, StoreError> {
        self.store.item(barcode)?.ok_or_else(|| not_found(format!("no item '{barcode}'")))
    }

    /// Changes fields of an item (`FIELD=VALUE`; an empty value clears an optional one).
    pub fn edit_item(&self, barcode: &str, sets: &[(String, String)]) -> Result<Item, StoreError> {
        let mut item = self.item(barcode)?;
        for (field, value) in sets {
            let v = value.trim();
            let text = |v: &str| if v.is_empty() { None } else { Some(v.to_string()) };
            let number =
                |v: &str| v.parse::<u32>().map_err(|_| refused(format!("{field} '{v}' is not a whole number")));
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
                        Some(Money::parse(v).ok_or_else(|| refused(format!("'{v}' is not an amount")))?)
                    }
                }
                "status" => {
                    item.status = serde_json::from_value(serde_json::Value::String(v.into())).map_err(|_| {
                        refused(format!(
                            "status '{v}' is not one of available, on-loan, on-hold-shelf, in-transit, in-process, lost, missing, claimed-returned"
                        ))
                    })?
                }
                _ => {
                    return Err(refused(format!(
                        "'{field}' cannot be edited; editable: title, author, call-number, location, media-type, security-marker, loan-days, rental-fee, status"
                    )));
                }
            }
        }
        check_item(&item)?;
        self.store.apply(&[Write::Item(item.clone())])?;
        self.store.flush()?;
        Ok(item)
    }

    /// Removes an item that is not on loan, with its holds.
    pub fn delete_item(&self, barcode: &str) -> Result<(), StoreError> {
        self.item(barcode)?;
        if let Some(loan) = self.store.loan(barcode)? {
            return Err(refused(format!("item '{barcode}' is on loan to patron {}; return it first", loan.patron)));
        }
        let mut writes = vec![Write::RemoveItem(barcode.into())];
        writes.extend(self.store.holds_on(barcode)?.into_iter().map(|h| Write::RemoveHold(h.id)));
        self.store.apply(&writes)?;
        self.store.flush()
    }

    // -- loans ------------------------------------------------------------------------------

    /// Lends an item at the desk, with the same rules the kiosk uses. A rental fee is charged
    /// only when `accept_fee` is set. Refusals come back as `Refused` with the kiosk's sentence.
    pub fn checkout(&self, patron: u64, barcode: &str, accept_fee: bool, now: Timestamp) -> Result<Loan, StoreError> {
        let request = Lend { accept_fee, renewal_allowed: true, no_block: None };
        match self.lend(patron, barcode, &request, now)? {
            Lent::Done { loan, .. } => Ok(loan),
            Lent::Refused(r) => Err(refused(r.to_string())),
        }
    }

    /// Decides a checkout by the rules and, when it is allowed, commits the loan (with its fee,
    /// the item's status, the patron's fulfilled hold and the audit entry) before returning.
    /// The day, and so the due date, is the institution's, whoever lends: kiosk or desk.
    pub fn lend(&self, patron: u64, barcode: &str, r: &Lend, now: Timestamp) -> Result<Lent, StoreError> {
        let p = self.store.patron(patron)?;
        let inst = self.store.institution(&p.institution)?;
        let mut item = self.item(barcode)?;
        let loans = self.store.loan_count(patron);
        let standing = rules::standing(&p, &inst, loans, self.balance(patron)?, inst.today(now));
        let tz = inst.time_zone();
        let current = self.store.loan(barcode)?;
        let holds = self.store.holds_on(barcode)?;
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
        let mut writes = Vec::new();
        let mut charged = None;
        let (loan, renewed) = match decision {
            CheckoutDecision::Refuse(r) => return Ok(Lent::Refused(r)),
            CheckoutDecision::Renew { due, renewals } => (
                Loan {
                    due,
                    renewals,
                    ..current.unwrap_or(Loan { item: barcode.into(), patron, out: now, due, renewals })
                },
                true,
            ),
            CheckoutDecision::Lend { due, fee } => {
                if let Some(amount) = fee {
                    let fee = Fee {
                        id: self.store.new_id()?,
                        patron,
                        kind: FeeKind::Rental,
                        amount,
                        paid: Money::ZERO,
                        currency: inst.currency.clone(),
                        item: Some(barcode.into()),
                        comment: None,
                        status: FeeStatus::Active,
                        created: now,
                        history: vec![FeeEvent::Added { by: self.actor.clone(), at: now }],
                    };
                    writes.push(Write::Fee(fee.clone()));
                    charged = Some(fee);
                }
                // The patron's own hold is fulfilled by the loan.
                writes.extend(holds.iter().filter(|h| h.patron == patron).map(|h| Write::RemoveHold(h.id)));
                (Loan { item: barcode.into(), patron, out: now, due, renewals: 0 }, false)
            }
        };
        item.status = ItemStatus::OnLoan;
        writes.push(Write::Item(item.clone()));
        writes.push(Write::Loan(loan.clone()));
        writes.push(Write::Audit(audit(
            patron,
            now,
            &self.actor,
            if renewed { "renew" } else { "checkout" },
            vec![("loan".into(), String::new(), format!("{barcode} due {}", loan.due))],
        )));
        self.store.apply(&writes)?;
        self.store.flush()?;
        Ok(Lent::Done { loan, item: Box::new(item), fee: charged.map(Box::new), renewed })
    }

    /// Takes an item back: ends its loan, and puts it on the hold shelf if someone waits for it.
    pub fn checkin(&self, barcode: &str, now: Timestamp) -> Result<Option<Loan>, StoreError> {
        let mut item = self.item(barcode)?;
        let loan = self.store.loan(barcode)?;
        let holds = self.store.holds_on(barcode)?;
        let mut writes = vec![Write::EndLoan(barcode.into())];
        item.status = match holds.first() {
            Some(h) => {
                writes.push(Write::Hold(Hold { status: HoldStatus::Available, ..h.clone() }));
                ItemStatus::OnHoldShelf
            }
            None => ItemStatus::Available,
        };
        writes.push(Write::Item(item));
        if let Some(l) = &loan {
            writes.push(Write::Audit(audit(
                l.patron,
                now,
                &self.actor,
                "checkin",
                vec![("loan".into(), barcode.into(), String::new())],
            )));
        }
        self.store.apply(&writes)?;
        self.store.flush()?;
        Ok(loan)
    }

    // -- holds ------------------------------------------------------------------------------

    /// Places a hold on an item (or on any copy of a title).
    pub fn place_hold(
        &self,
        patron: u64,
        target: HoldTarget<'_>,
        pickup: &str,
        expires: Option<Date>,
        now: Timestamp,
    ) -> Result<Hold, StoreError> {
        let p = self.store.patron(patron)?;
        let inst = self.store.institution(&p.institution)?;
        let standing =
            rules::standing(&p, &inst, self.store.loan_count(patron), self.balance(patron)?, inst.today(now));
        if standing.denied.hold {
            let why = standing.first_reason().map(ToString::to_string).unwrap_or_default();
            return Err(refused(format!("patron {patron} may not place holds: {why}")));
        }
        validate::required("pickup location", pickup)?;
        let (item, title) = match target {
            HoldTarget::Item(b) => {
                self.item(b)?;
                if self.store.holds_on(b)?.iter().any(|h| h.patron == patron) {
                    return Err(refused(format!("patron {patron} already has a hold on '{b}'")));
                }
                (Some(b), None)
            }
            HoldTarget::Title(t) => {
                validate::required("title", t)?;
                (None, Some(t))
            }
        };
        let hold = Hold {
            id: self.store.new_id()?,
            patron,
            item: item.map(Into::into),
            title: title.map(Into::into),
            pickup: pickup.into(),
            placed: now,
            expires,
            status: HoldStatus::Waiting,
        };
        let change = vec![("hold".into(), String::new(), format!("{} {}", hold.id, item.or(title).unwrap_or("")))];
        self.store
            .apply(&[Write::Hold(hold.clone()), Write::Audit(audit(patron, now, &self.actor, "hold", change))])?;
        self.store.flush()?;
        Ok(hold)
    }

    /// Changes where a hold is collected or when it lapses; its place in the queue stays.
    pub fn change_hold(
        &self,
        id: u64,
        pickup: Option<&str>,
        expires: Option<Date>,
        now: Timestamp,
    ) -> Result<Hold, StoreError> {
        let mut hold = self.store.hold(id)?.ok_or_else(|| not_found(format!("no hold {id}")))?;
        if let Some(p) = pickup {
            validate::required("pickup location", p)?;
            hold.pickup = p.into();
        }
        if expires.is_some() {
            hold.expires = expires;
        }
        let change =
            vec![("hold".into(), id.to_string(), format!("pickup {} expires {:?}", hold.pickup, hold.expires))];
        self.store.apply(&[
            Write::Hold(hold.clone()),
            Write::Audit(audit(hold.patron, now, &self.actor, "hold-change", change)),
        ])?;
        self.store.flush()?;
        Ok(hold)
    }

    /// Stores the opaque properties a kiosk keeps on an item (SIP 19).
    pub fn set_item_properties(&self, barcode: &str, properties: &str) -> Result<Item, StoreError> {
        let mut item = self.item(barcode)?;
        validate::plain("item properties", properties)?;
        item.properties = if properties.is_empty() { None } else { Some(properties.into()) };
        self.store.apply(&[Write::Item(item.clone())])?;
        self.store.flush()?;
        Ok(item)
    }

    /// Cancels a hold.
    pub fn cancel_hold(&self, id: u64, now: Timestamp) -> Result<Hold, StoreError> {
        let hold = self.store.hold(id)?.ok_or_else(|| not_found(format!("no hold {id}")))?;
        let change = vec![("hold".into(), id.to_string(), String::new())];
        self.store.apply(&[
            Write::RemoveHold(id),
            Write::Audit(audit(hold.patron, now, &self.actor, "hold-cancel", change)),
        ])?;
        self.store.flush()?;
        Ok(hold)
    }

    /// A hold's place in its item's queue (1 is next), or none for a title hold.
    pub fn queue_position(&self, hold: &Hold) -> Result<Option<usize>, StoreError> {
        let Some(item) = &hold.item else { return Ok(None) };
        Ok(self.store.holds_on(item)?.iter().position(|h| h.id == hold.id).map(|p| p + 1))
    }

    // -- self-check accounts ----------------------------------------------------------------

    /// Adds a terminal login; the password is kept only as an Argon2 hash.
    pub fn add_account(
        &self,
        login: &str,
        password: &str,
        institution: &str,
        location: Option<&str>,
    ) -> Result<Account, StoreError> {
        check_login(login)?;
        self.store.institution(institution)?;
        if password.chars().count() < 8 {
            return Err(refused("a terminal password needs at least 8 characters".into()));
        }
        if self.store.account(login)?.is_some() {
            return Err(refused(format!("account '{login}' exists already")));
        }
        let account = Account {
            login: login.into(),
            password_hash: secret::hash_password(password).map_err(|e| refused(format!("cannot hash: {e}")))?,
            institution: institution.into(),
            location: location.map(Into::into),
            profile: BTreeMap::new(),
        };
        self.store.apply(&[Write::Account(account.clone())])?;
        self.store.flush()?;
        Ok(account)
    }

    pub fn account(&self, login: &str) -> Result<Account, StoreError> {
        self.store.account(login)?.ok_or_else(|| not_found(format!("no account '{login}'")))
    }

    /// Changes a terminal's password.
    pub fn set_account_password(&self, login: &str, password: &str) -> Result<Account, StoreError> {
        let mut a = self.account(login)?;
        if password.chars().count() < 8 {
            return Err(refused("a terminal password needs at least 8 characters".into()));
        }
        a.password_hash = secret::hash_password(password).map_err(|e| refused(format!("cannot hash: {e}")))?;
        self.store.apply(&[Write::Account(a.clone())])?;
        self.store.flush()?;
        Ok(a)
    }

    /// Sets (or, with an empty value, removes) profile settings of a terminal account.
    pub fn set_account_profile(&self, login: &str, sets: &[(String, String)]) -> Result<Account, StoreError> {
        let mut a = self.account(login)?;
        for (k, v) in sets {
            validate::required("profile key", k)?;
            validate::plain("profile value", v)?;
            if v.is_empty() {
                a.profile.remove(k);
            } else {
                a.profile.insert(k.clone(), v.clone());
            }
        }
        Profile::of(&a).map_err(refused)?;
        self.store.apply(&[Write::Account(a.clone())])?;
        self.store.flush()?;
        Ok(a)
    }

    pub fn remove_account(&self, login: &str) -> Result<(), StoreError> {
        self.account(login)?;
        self.store.apply(&[Write::RemoveAccount(login.into())])?;
        self.store.flush()
    }

    /// Checks a terminal login (the server's 93).
    pub fn verify_account(&self, login: &str, password: &str) -> Result<Option<Account>, StoreError> {
        Ok(self.store.account(login)?.filter(|a| secret::verify_password(password, &a.password_hash)))
    }
}
