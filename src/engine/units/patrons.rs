//! Institutions, patrons and self-check accounts: registration and upkeep, PINs, blocks,
//! transfers, deletion and purge.

use crate::domain::rules::{self, PinCheck};
use crate::domain::validate;
use crate::domain::*;

use super::super::notices::draft;
use super::super::ops::{InstitutionChange, NewPatron, PurgeReport};
use super::super::store::Write;
use super::super::unit::Unit;
use super::{check_institution, check_patron, diff};

fn rule(text: String) -> Refusal {
    Refusal::Rule(text)
}

fn opt_text(field: &'static str, value: &str) -> Result<Option<String>, Refusal> {
    if value.is_empty() {
        return Ok(None);
    }
    validate::plain(field, value)?;
    Ok(Some(value.to_string()))
}

fn opt_date(field: &'static str, value: &str) -> Result<Option<jiff::civil::Date>, Refusal> {
    if value.is_empty() {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| validate::Invalid::NotADate { field, value: value.into() }.into())
}

/// The fields `patron edit --set FIELD=VALUE` can change; an empty value clears an optional one.
pub const EDITABLE: &[&str] = &[
    "first-name",
    "last-name",
    "middle-name",
    "title",
    "primary-id",
    "birth-date",
    "email",
    "phone",
    "address",
    "postal-code",
    "language",
    "group",
    "record-type",
    "account-type",
    "expiry",
    "purge",
    "terms-accepted",
    "guardian",
];

/// The fields an external account's sync owns (the student system's): staff change them
/// there, or make the account internal first.
pub const SYNCED: &[&str] = &[
    "first-name",
    "last-name",
    "middle-name",
    "title",
    "primary-id",
    "birth-date",
    "email",
    "phone",
    "address",
    "postal-code",
    "group",
    "record-type",
    "expiry",
    "purge",
];

/// Sets one field from staff text.
fn set_field(p: &mut Patron, field: &str, value: &str) -> Result<(), Refusal> {
    let value = value.trim();
    match field {
        "first-name" => p.first_name = value.into(),
        "last-name" => p.last_name = value.into(),
        "primary-id" => p.primary_id = value.into(),
        "middle-name" => p.middle_name = opt_text("middle name", value)?,
        "title" => p.title = opt_text("title", value)?,
        "email" => p.email = opt_text("e-mail", value)?,
        "phone" => p.phone = opt_text("phone", value)?,
        "address" => p.address = opt_text("address", value)?,
        "postal-code" => p.postal_code = opt_text("postal code", value)?,
        "language" => p.language = opt_text("language", value)?,
        "group" => p.user_group = opt_text("user group", value)?,
        "birth-date" => p.birth_date = opt_date("birth date", value)?,
        "expiry" => p.expiry = opt_date("expiry", value)?,
        "purge" => p.purge = opt_date("purge date", value)?,
        "terms-accepted" => p.terms_accepted = opt_date("terms accepted", value)?,
        "record-type" => {
            p.record_type = match value {
                "staff" => RecordType::Staff,
                "public" => RecordType::Public,
                "contact" => RecordType::Contact,
                _ => return Err(rule(format!("record type '{value}' is not staff, public or contact"))),
            }
        }
        "account-type" => {
            p.account_type = match value.split_once(':') {
                None if value == "internal" => AccountType::Internal,
                Some(("external", source)) if !source.is_empty() => {
                    AccountType::External { source: source.to_string() }
                }
                _ => {
                    return Err(rule(format!(
                        "account type '{value}' is not 'internal' or 'external:SOURCE' (e.g. external:ladok)"
                    )));
                }
            }
        }
        "guardian" => {
            p.guardian = match value.split_once(';') {
                _ if value.is_empty() => None,
                Some((name, contact)) if !name.trim().is_empty() && !contact.trim().is_empty() => {
                    validate::plain("guardian", value)?;
                    Some(Guardian { name: name.trim().into(), contact: contact.trim().into() })
                }
                _ => return Err(rule("guardian is 'NAME;CONTACT'".into())),
            }
        }
        _ => return Err(rule(format!("'{field}' cannot be edited; editable fields: {}", EDITABLE.join(", ")))),
    }
    Ok(())
}

/// A self-check account's login: 1-64 characters, no spaces.
pub fn check_login(login: &str) -> Result<(), Refusal> {
    validate::required("login", login)?;
    if login.len() > 64 || login.contains(char::is_whitespace) {
        return Err(rule(format!("login '{login}' must be 1-64 characters without spaces")));
    }
    Ok(())
}

// -- institutions ---------------------------------------------------------------------------

pub fn add_institution(
    u: &mut Unit<'_>,
    code: &str,
    name: &str,
    currency: &str,
    timezone: &str,
) -> Result<Institution, Refusal> {
    let inst = Institution::new(code, name, currency, timezone);
    check_institution(&inst)?;
    if u.state.institution(code).is_some() {
        return Err(Refusal::Exists { what: "institution", key: code.into() });
    }
    u.put(Write::Institution(Box::new(inst.clone())))?;
    Ok(inst)
}

pub fn change_institution(u: &mut Unit<'_>, code: &str, change: InstitutionChange) -> Result<Institution, Refusal> {
    let mut i = u.institution(code)?;
    match change {
        InstitutionChange::Settings { name, patterns, pin_policy, audit_retention_days } => {
            if let Some(n) = name {
                i.name = n;
            }
            let [primary_id, email, phone, postal_code] = patterns;
            for (p, slot) in [
                (primary_id, &mut i.formats.primary_id),
                (email, &mut i.formats.email),
                (phone, &mut i.formats.phone),
                (postal_code, &mut i.formats.postal_code),
            ] {
                if let Some(p) = p {
                    *slot = (!p.is_empty()).then_some(p);
                }
            }
            if let Some(p) = pin_policy {
                i.pin_policy = p;
            }
            if let Some(d) = audit_retention_days {
                i.audit_retention_days = (d > 0).then_some(d);
            }
        }
        InstitutionChange::Policy { group, loan_days, max_loans, max_renewals, fine_threshold } => {
            let policy = match group {
                Some(g) => i.policies.entry(g).or_insert_with(|| i.default_policy.clone()),
                None => &mut i.default_policy,
            };
            policy.loan_days = loan_days.unwrap_or(policy.loan_days);
            policy.max_loans = max_loans.unwrap_or(policy.max_loans);
            policy.max_renewals = max_renewals.unwrap_or(policy.max_renewals);
            policy.fine_threshold = fine_threshold.unwrap_or(policy.fine_threshold);
        }
        InstitutionChange::BlockType { code: name, denies } => match denies {
            None => {
                let before = i.block_types.len();
                i.block_types.retain(|t| t.code != name);
                if i.block_types.len() == before {
                    return Err(rule(format!("{code} has no block type '{name}'")));
                }
            }
            Some(denies) => {
                validate::required("block type", &name)?;
                match i.block_types.iter_mut().find(|t| t.code == name) {
                    Some(t) => t.denies = denies,
                    None => i.block_types.push(BlockType { code: name, denies }),
                }
            }
        },
    }
    check_institution(&i)?;
    u.put(Write::Institution(Box::new(i.clone())))?;
    Ok(i)
}

// -- registration and upkeep ----------------------------------------------------------------

/// Registers a patron after every check: required fields, characters, the institution's
/// patterns, the national id, minors' guardians, and (unless `force`) likely duplicates. The
/// welcome goes to the outbox with it.
pub fn add(u: &mut Unit<'_>, new: NewPatron, force: bool) -> Result<Patron, Refusal> {
    let inst = u.institution(&new.institution)?;
    let today = inst.today(u.now());
    for b in &new.barcodes {
        validate::required("barcode", b)?;
    }
    if let Some(pin) = &new.pin {
        validate::pin(&inst.pin_policy, &pin.0)?;
    }
    let national = new.national_id.as_deref().map(|n| validate::swedish_national_id(n, today)).transpose()?;
    let id = u.new_id();
    let mut identifiers: Vec<Identifier> = new
        .barcodes
        .iter()
        .map(|b| Identifier { kind: "barcode".into(), value: b.clone(), note: None, active: true, internal: true })
        .collect();
    if let Some(n) = national {
        identifiers.push(Identifier { kind: "national-id".into(), value: n, note: None, active: true, internal: true });
    }
    let patron = Patron {
        middle_name: new.middle_name,
        title: new.title,
        birth_date: new.birth_date,
        email: new.email,
        phone: new.phone,
        address: new.address,
        postal_code: new.postal_code,
        language: new.language,
        user_group: new.user_group,
        record_type: new.record_type,
        account_type: new.account_type,
        expiry: new.expiry,
        purge: new.purge,
        terms_accepted: new.terms_accepted,
        guardian: new.guardian,
        identifiers,
        pin: new.pin.map(|pin| u.key.hash(id, &pin.0)),
        created: Created { at: u.now(), by: u.actor().to_string(), via: "register".into() },
        ..Patron::new(id, &new.institution, &new.primary_id, new.first_name.trim(), new.last_name.trim(), u.now())
    };
    check_patron(&inst, &patron, today)?;
    if !force {
        let same = u.state.same_person(&patron);
        if !same.is_empty() {
            return Err(Refusal::PossibleDuplicate(same));
        }
    }
    // The registration itself is recorded in the record (`created`), first in its history.
    u.put(Write::Patron(Box::new(patron.clone())))?;
    if !new.no_invitation {
        let welcome = welcome(u, &patron, &inst)?;
        u.notice(welcome);
    }
    Ok(patron)
}

/// The welcome for a patron: with a link to choose their PIN when they have none and an
/// e-mail address to receive it (a new link; earlier ones stop working).
fn welcome(u: &mut Unit<'_>, p: &Patron, inst: &Institution) -> Result<Notice, Refusal> {
    let link = if p.pin.is_none() && p.email.is_some() {
        super::selfservice::link_marker(super::selfservice::issue_link(u, p.id)?)
    } else {
        String::new()
    };
    Ok(draft(u, p.id, NoticeKind::Welcome, &link, inst, None).notice(p))
}

/// Writes the welcome to the outbox for a patron who is registered and has an e-mail address
/// to receive it.
pub fn invite(u: &mut Unit<'_>, id: u64) -> Result<Notice, Refusal> {
    let p = u.patron(id)?;
    if p.deleted.is_some() {
        return Err(AsItStands::InTheBank(id).into());
    }
    if p.email.as_deref().is_none_or(|e| e.trim().is_empty()) {
        return Err(AsItStands::NoEmail(id).into());
    }
    let inst = u.institution(&p.institution)?;
    let welcome = welcome(u, &p, &inst)?;
    u.notice(welcome.clone());
    Ok(welcome)
}

/// Changes fields of a patron (`FIELD=VALUE` pairs), with every registration check.
pub fn edit(u: &mut Unit<'_>, id: u64, sets: &[(String, String)], expect: Option<&str>) -> Result<Patron, Refusal> {
    if sets.is_empty() {
        return Err(rule(format!("nothing to change; give --set FIELD=VALUE ({})", EDITABLE.join(", "))));
    }
    let old = u.patron(id)?;
    // Decided here, inside the unit: two staff members saving at once cannot both pass.
    if expect.is_some_and(|tag| tag != crate::engine::patron_tag(&old)) {
        return Err(Refusal::Changed(id));
    }
    // An external account's synced fields are the sync's, unless this edit makes it internal.
    let made_internal = sets.iter().any(|(f, v)| f == "account-type" && v.trim() == "internal");
    if let (AccountType::External { source }, false) = (&old.account_type, made_internal) {
        if let Some((field, _)) = sets.iter().find(|(f, _)| SYNCED.contains(&f.as_str())) {
            let field = SYNCED.iter().find(|s| **s == field.as_str()).copied().unwrap_or("field");
            return Err(Refusal::Synced { field, source: source.clone() });
        }
    }
    let inst = u.institution(&old.institution)?;
    let mut p = old.clone();
    for (field, value) in sets {
        set_field(&mut p, field, value)?;
    }
    check_patron(&inst, &p, inst.today(u.now()))?;
    let changes = diff(&old, &p);
    if changes.is_empty() {
        return Err(AsItStands::NothingChanged(id).into());
    }
    u.put(Write::Patron(Box::new(p.clone())))?;
    u.audit(id, "edit", changes);
    Ok(p)
}

/// Adds an identifier (a barcode, student id, national id, ...) that kiosks may present.
pub fn add_identifier(
    u: &mut Unit<'_>,
    id: u64,
    kind: &str,
    value: &str,
    note: Option<&str>,
) -> Result<Patron, Refusal> {
    validate::required("identifier type", kind)?;
    let value = if kind == "national-id" {
        let inst = u.institution(&u.patron(id)?.institution)?;
        validate::swedish_national_id(value, inst.today(u.now()))?
    } else {
        validate::required("identifier", value)?;
        value.trim().to_string()
    };
    if let Some(n) = note {
        validate::plain("note", n)?;
    }
    u.update_patron(id, "identifier-add", |p| {
        p.identifiers.push(Identifier {
            kind: kind.into(),
            value: value.clone(),
            note: note.map(Into::into),
            active: true,
            internal: true,
        });
        Ok(vec![(format!("identifier {kind}"), String::new(), value.clone())])
    })
}

/// Turns an identifier off (kept for the record) or on again.
pub fn set_identifier_active(u: &mut Unit<'_>, id: u64, value: &str, active: bool) -> Result<Patron, Refusal> {
    u.update_patron(id, "identifier-status", |p| {
        let Some(i) = p.identifiers.iter_mut().find(|i| i.value == value) else {
            return Err(AsItStands::NoIdentifier { patron: id, value: value.into() }.into());
        };
        if i.active == active {
            return Err(AsItStands::IdentifierAlready { value: value.into(), active }.into());
        }
        i.active = active;
        Ok(vec![(format!("identifier {value}"), (!active).to_string(), active.to_string())])
    })
}

/// Adds a note; `public` notes are shown to the patron at the kiosk.
pub fn add_note(u: &mut Unit<'_>, id: u64, kind: &str, text: &str, public: bool) -> Result<Patron, Refusal> {
    validate::required("note type", kind)?;
    validate::required("note", text)?;
    let (by, at) = (u.actor().to_string(), u.now());
    let limit = u.state.limits().max_notes_per_patron;
    u.update_patron(id, "note-add", |p| {
        if p.notes.len() >= limit as usize {
            return Err(Refusal::Full { what: "notes", limit });
        }
        let note_id = p.notes.iter().map(|n| n.id).max().unwrap_or(0) + 1;
        p.notes.push(Note { id: note_id, kind: kind.into(), text: text.into(), public, by, at });
        Ok(vec![(format!("note {note_id}"), String::new(), text.into())])
    })
}

/// Removes a note by its number on the patron.
pub fn remove_note(u: &mut Unit<'_>, id: u64, note: u32) -> Result<Patron, Refusal> {
    u.update_patron(id, "note-remove", |p| {
        let Some(pos) = p.notes.iter().position(|n| n.id == note) else {
            return Err(Refusal::NoEntry { what: "note", id: note });
        };
        let old = p.notes.remove(pos);
        Ok(vec![(format!("note {note}"), old.text, String::new())])
    })
}

/// Lets patron `proxy` act for patron `for_whom` (or stops it).
pub fn set_proxy(u: &mut Unit<'_>, proxy: u64, for_whom: u64, allow: bool) -> Result<Patron, Refusal> {
    if proxy == for_whom {
        return Err(AsItStands::OwnProxy.into());
    }
    let other = u.patron(for_whom)?;
    let who = format!("#{} {}", other.id, other.display_name());
    let action = if allow { "proxy-add" } else { "proxy-remove" };
    u.update_patron(proxy, action, |p| {
        let has = p.proxy_for.contains(&for_whom);
        match (allow, has) {
            (true, true) => return Err(AsItStands::AlreadyProxy { proxy, for_whom }.into()),
            (false, false) => return Err(AsItStands::NotProxy { proxy, for_whom }.into()),
            (true, false) => p.proxy_for.push(for_whom),
            (false, true) => p.proxy_for.retain(|x| *x != for_whom),
        }
        Ok(vec![if allow {
            ("proxy for".into(), String::new(), who)
        } else {
            ("proxy for".into(), who, String::new())
        }])
    })
}

/// Activates or deactivates a patron, recording when the status changed.
pub fn set_active(u: &mut Unit<'_>, id: u64, active: bool) -> Result<Patron, Refusal> {
    let now = u.now();
    u.update_patron(id, if active { "activate" } else { "deactivate" }, |p| {
        if p.active == active {
            return Err(if active { AsItStands::AlreadyActive(id) } else { AsItStands::AlreadyInactive(id) }.into());
        }
        p.active = active;
        p.status_changed = now;
        Ok(vec![("active".into(), (!active).to_string(), active.to_string())])
    })
}

// -- PINs and blocks ------------------------------------------------------------------------

/// Sets a patron's PIN (checked against the institution's policy) and clears any lockout.
pub fn set_pin(u: &mut Unit<'_>, id: u64, pin: &str) -> Result<Patron, Refusal> {
    let patron = u.patron(id)?;
    let inst = u.institution(&patron.institution)?;
    validate::pin(&inst.pin_policy, pin)?;
    let hash = u.key.hash(id, pin);
    u.update_patron(id, "pin", |p| {
        p.pin = Some(hash);
        p.failed_pins = 0;
        p.locked = false;
        Ok(vec![("pin".into(), String::new(), "changed".into())])
    })
}

/// One PIN attempt, as a kiosk makes it: a wrong one counts toward the lockout (the fifth in
/// a row locks), a right one clears earlier failures. Writes only when the count changes.
pub fn attempt_pin(u: &mut Unit<'_>, p: &Patron, pin: &str) -> Result<PinCheck, Refusal> {
    let correct = p.pin.as_ref().is_some_and(|h| u.key.verify(p.id, pin, h));
    let (outcome, failed, locked) = rules::pin_attempt(p.failed_pins, p.locked, correct);
    if (failed, locked) == (p.failed_pins, p.locked) {
        return Ok(outcome);
    }
    let action = if locked && !p.locked { "locked" } else { "pin-attempt" };
    let changes = vec![("failed PINs".into(), p.failed_pins.to_string(), failed.to_string())];
    let mut changed = p.clone();
    changed.failed_pins = failed;
    changed.locked = locked;
    u.put(Write::Patron(Box::new(changed)))?;
    u.audit(p.id, action, changes);
    Ok(outcome)
}

pub fn check_pin(u: &mut Unit<'_>, id: u64, pin: &str) -> Result<PinCheck, Refusal> {
    let p = u.patron(id)?;
    attempt_pin(u, &p, pin)
}

/// Lifts a PIN lockout.
pub fn unlock(u: &mut Unit<'_>, id: u64) -> Result<Patron, Refusal> {
    u.update_patron(id, "unlock", |p| {
        if !p.locked && p.failed_pins == 0 {
            return Err(AsItStands::NotLocked(id).into());
        }
        let changes = vec![("locked".into(), p.locked.to_string(), "false".into())];
        p.locked = false;
        p.failed_pins = 0;
        Ok(changes)
    })
}

/// Places a block of a type the institution knows.
pub fn block(u: &mut Unit<'_>, id: u64, kind: &str, note: Option<&str>) -> Result<Patron, Refusal> {
    let patron = u.patron(id)?;
    let inst = u.institution(&patron.institution)?;
    if !inst.block_types.iter().any(|t| t.code == kind) {
        let known = inst.block_types.iter().map(|t| t.code.clone()).collect();
        return Err(Refusal::NoBlockType { code: kind.into(), known });
    }
    if let Some(n) = note {
        validate::plain("note", n)?;
    }
    let (by, at) = (u.actor().to_string(), u.now());
    u.update_patron(id, "block", |p| {
        let block_id = p.blocks.iter().map(|b| b.id).max().unwrap_or(0) + 1;
        p.blocks.push(Block { id: block_id, kind: kind.into(), note: note.map(Into::into), active: true, by, at });
        Ok(vec![("block".into(), String::new(), kind.into())])
    })
}

/// Lifts the patron's active blocks of `kind` (or all of them when `kind` is `None`).
pub fn unblock(u: &mut Unit<'_>, id: u64, kind: Option<&str>) -> Result<Patron, Refusal> {
    u.update_patron(id, "unblock", |p| {
        let mut lifted = Vec::new();
        for b in p.blocks.iter_mut().filter(|b| b.active && kind.is_none_or(|k| k == b.kind)) {
            b.active = false;
            lifted.push(b.kind.clone());
        }
        if lifted.is_empty() {
            return Err(AsItStands::NoActiveBlock { patron: id, kind: kind.map(String::from) }.into());
        }
        Ok(vec![("block".into(), lifted.join(","), String::new())])
    })
}

// -- transfers, deletion, purge ---------------------------------------------------------------

/// Asks for the patron to move to another institution; it waits there for acceptance.
pub fn request_transfer(u: &mut Unit<'_>, id: u64, to: &str) -> Result<Patron, Refusal> {
    let before = u.patron(id)?;
    let target = u.institution(to)?;
    if before.institution == to {
        return Err(AsItStands::AlreadyAt { patron: id, institution: to.into() }.into());
    }
    if let Some(t) = &before.transfer {
        return Err(AsItStands::TransferPending { patron: id, to: t.to.clone() }.into());
    }
    let home = u.institution(&before.institution)?;
    let transfer = Transfer { to: to.into(), requested_by: u.actor().to_string(), at: u.now() };
    let p = u.update_patron(id, "transfer-request", |p| {
        p.transfer = Some(transfer);
        Ok(vec![("transfer".into(), String::new(), to.into())])
    })?;
    let n = draft(u, id, NoticeKind::TransferRequested, &target.name, &home, None).notice(&p);
    u.notice(n);
    Ok(p)
}

/// Accepts (moves the patron) or declines a pending transfer.
pub fn decide_transfer(u: &mut Unit<'_>, id: u64, accept: bool) -> Result<Patron, Refusal> {
    let before = u.patron(id)?;
    let Some(t) = before.transfer.clone() else {
        return Err(AsItStands::NoTransfer(id).into());
    };
    let home = u.institution(&before.institution)?;
    let target = u.state.institution(&t.to).cloned();
    let (kind, detail, action) = if accept {
        (NoticeKind::TransferAccepted, String::new(), "transfer-accept")
    } else {
        let name = target.as_ref().map_or_else(|| t.to.clone(), |i| i.name.clone());
        (NoticeKind::TransferDeclined, name, "transfer-decline")
    };
    let p = u.update_patron(id, action, |p| {
        p.transfer = None;
        Ok(if accept {
            let from = std::mem::replace(&mut p.institution, t.to.clone());
            vec![("institution".into(), from, t.to.clone())]
        } else {
            vec![("transfer".into(), t.to.clone(), String::new())]
        })
    })?;
    let moving_to = if accept { target.as_ref() } else { None };
    let n = draft(u, id, kind, &detail, &home, moving_to).notice(&p);
    u.notice(n);
    Ok(p)
}

/// Moves a patron to the bank of deleted users; refused while money is owed or items are on
/// loan. A balance due is also written to the patron (the refusal keeps that notice).
pub fn delete(u: &mut Unit<'_>, id: u64) -> Result<Patron, Refusal> {
    let p = u.patron(id)?;
    let balance = u.state.balance(id);
    let loans = u.state.loan_count(id);
    if balance.0 > 0 || loans > 0 {
        return Err(Refusal::CannotDelete { balance, loans });
    }
    if p.deleted.is_some() {
        return Err(AsItStands::AlreadyDeleted(id).into());
    }
    let now = u.now();
    u.update_patron(id, "delete", |p| {
        p.deleted = Some(now);
        Ok(vec![])
    })
}

/// The notice a refused deletion leaves: the balance due, in the patron's language.
pub fn balance_due(u: &mut Unit<'_>, id: u64) -> Result<(), Refusal> {
    let p = u.patron(id)?;
    let balance = u.state.balance(id);
    if balance.0 > 0 {
        let inst = u.institution(&p.institution)?;
        let n = draft(u, id, NoticeKind::BalanceDue, &format!("{balance} {}", inst.currency), &inst, None).notice(&p);
        u.notice(n);
    }
    Ok(())
}

/// Brings a patron back from the bank of deleted users.
pub fn restore(u: &mut Unit<'_>, id: u64) -> Result<Patron, Refusal> {
    u.update_patron(id, "restore", |p| {
        if p.deleted.is_none() {
            return Err(AsItStands::NotDeleted(id).into());
        }
        p.deleted = None;
        Ok(vec![])
    })
}

/// Removes for good the deleted patrons and those past their purge date (unless money is
/// owed or items are out), with their fees, holds and history; prunes audit entries older
/// than each institution's retention. `dry_run` only reports. The writer runs it in a batch
/// of its own, so the stored history it reads is all there is.
pub fn purge(u: &mut Unit<'_>, dry_run: bool) -> Result<PurgeReport, Refusal> {
    let now = u.now();
    let mut report = PurgeReport::default();
    let institutions: Vec<Institution> = u.state.institutions().cloned().collect();
    let passed = |p: &Patron, d: jiff::civil::Date| {
        institutions.iter().find(|i| i.code == p.institution).is_none_or(|i| d <= i.today(now))
    };
    let candidates: Vec<Patron> =
        u.state.patrons().filter(|p| p.deleted.is_some() || p.purge.is_some_and(|d| passed(p, d))).cloned().collect();
    for p in candidates {
        let balance = u.state.balance(p.id);
        let loans = u.state.loan_count(p.id);
        let why = if p.deleted.is_some() { "deleted" } else { "past its purge date" };
        if balance.0 > 0 || loans > 0 {
            report.kept.push((p.id, format!("{why}, but owes {balance} and has {loans} loans")));
            continue;
        }
        report.removed.push((p.id, format!("#{} {} ({why})", p.id, p.display_name())));
        if dry_run {
            continue;
        }
        let fees: Vec<u64> = u.state.fees_of(p.id).iter().map(|f| f.id).collect();
        let holds: Vec<u64> = u.state.holds_of(p.id).iter().map(|h| h.id).collect();
        u.put(Write::RemovePatron(p.id))?;
        for w in super::details::remove_files(&p) {
            u.put(w)?;
        }
        for f in fees {
            u.put(Write::RemoveFee(f))?;
        }
        for h in holds {
            u.put(Write::RemoveHold(h))?;
        }
        for (k, _) in u.history(p.id) {
            u.put(Write::RemoveAudit(k))?;
        }
    }
    if !dry_run {
        // Links past their time, or of a patron no longer here, can do nothing: they go too.
        let gone = |patron: u64, expires: jiff::Timestamp| expires <= now || u.state.patron(patron).is_none();
        let links: Vec<String> =
            u.state.links().filter(|l| gone(l.patron, l.expires)).map(|l| l.digest.clone()).collect();
        let checks: Vec<String> =
            u.state.email_checks().filter(|c| gone(c.patron, c.expires)).map(|c| c.digest.clone()).collect();
        for digest in links {
            u.put(Write::RemoveLink(digest))?;
        }
        for digest in checks {
            u.put(Write::RemoveEmailCheck(digest))?;
        }
    }
    for inst in institutions {
        let Some(days) = inst.audit_retention_days else { continue };
        let cutoff = now.checked_sub(jiff::SignedDuration::from_hours(24 * i64::from(days))).unwrap_or(now);
        let ids: Vec<u64> = u.state.patrons().filter(|p| p.institution == inst.code).map(|p| p.id).collect();
        for id in ids {
            let old: Vec<Vec<u8>> = u.history(id).into_iter().filter(|(_, e)| e.at < cutoff).map(|(k, _)| k).collect();
            report.audit_entries_pruned += old.len();
            if !dry_run {
                for k in old {
                    u.put(Write::RemoveAudit(k))?;
                }
            }
        }
    }
    Ok(report)
}

/// Opts a patron out of (or back into) a kind of notice.
pub fn set_optout(u: &mut Unit<'_>, id: u64, kind: NoticeKind, out: bool) -> Result<Vec<NoticeKind>, Refusal> {
    u.patron(id)?;
    if !kind.optional() {
        return Err(validate::Invalid::NotOptional(kind.name()).into());
    }
    let mut kinds = u.state.optouts(id).to_vec();
    kinds.retain(|k| *k != kind);
    if out {
        kinds.push(kind);
    }
    kinds.sort();
    u.put(Write::Optouts(id, kinds.clone()))?;
    Ok(kinds)
}

// -- self-check accounts ----------------------------------------------------------------------

pub fn add_account(
    u: &mut Unit<'_>,
    login: &str,
    password_hash: String,
    institution: &str,
    location: Option<&str>,
) -> Result<Account, Refusal> {
    check_login(login)?;
    u.institution(institution)?;
    if let Some(l) = location {
        validate::plain("location", l)?;
    }
    if u.state.account(login).is_some() {
        return Err(Refusal::Exists { what: "account", key: login.into() });
    }
    let account = Account {
        login: login.into(),
        password_hash,
        institution: institution.into(),
        location: location.map(Into::into),
        profile: Default::default(),
    };
    u.put(Write::Account(Box::new(account.clone())))?;
    Ok(account)
}

fn account(u: &Unit<'_>, login: &str) -> Result<Account, Refusal> {
    u.state.account(login).cloned().ok_or_else(|| Refusal::NoAccount(login.into()))
}

pub fn set_account_password(u: &mut Unit<'_>, login: &str, password_hash: String) -> Result<Account, Refusal> {
    let mut a = account(u, login)?;
    a.password_hash = password_hash;
    u.put(Write::Account(Box::new(a.clone())))?;
    Ok(a)
}

/// Sets (or, with an empty value, removes) profile settings of a terminal account.
pub fn set_account_profile(u: &mut Unit<'_>, login: &str, sets: &[(String, String)]) -> Result<Account, Refusal> {
    let mut a = account(u, login)?;
    for (k, v) in sets {
        validate::required("profile key", k)?;
        validate::plain("profile value", v)?;
        if v.is_empty() {
            a.profile.remove(k);
        } else {
            a.profile.insert(k.clone(), v.clone());
        }
    }
    Profile::of(&a).map_err(rule)?;
    u.put(Write::Account(Box::new(a.clone())))?;
    Ok(a)
}

pub fn remove_account(u: &mut Unit<'_>, login: &str) -> Result<(), Refusal> {
    account(u, login)?;
    u.put(Write::RemoveAccount(login.into()))
}
