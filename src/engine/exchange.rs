//! The register as JSON Lines (`sip2d import` and `sip2d export`), one record per line. Each
//! line of an import is its own unit of work, run by the engine's writer in file order, so a
//! line sees what the lines before it did; a refused line writes nothing and is reported with
//! its number. See docs/import.md.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Seek};
use std::sync::Arc;

use jiff::Timestamp;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::domain::secret::{self, hex};
use crate::domain::validate;
use crate::domain::*;

use super::ops::{Answer, By, Operation, Query, Receipt};
use super::state::State;
use super::store::Write;
use super::unit::Unit;
use super::units::{check_institution, check_item, check_login, check_patron, diff};
use super::{Engine, Error, Pending};

/// Lines in one import operation: the writer commits whatever operations wait together, so
/// this only bounds how much one holds (a refused line is undone alone either way).
const LINES_PER_OPERATION: usize = 256;
/// Operations an import keeps in flight, so that reading and checking the file overlaps the
/// writer's commits.
const IN_FLIGHT: usize = 64;

/// One line of the exchange format.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Line {
    /// What the file is: an export writes it first.
    Register(RegisterLine),
    Institution(Institution),
    Account(AccountLine),
    /// A staff account as an export writes it: the password and token digests, never the
    /// password or a token.
    Staff(Box<Staff>),
    Patron(Box<PatronLine>),
    Item(Item),
    Loan(Loan),
    Fee(Fee),
    Hold(Hold),
    /// A file on a patron's record: an attachment, or the picture (`id` 0).
    File(Box<FileLine>),
}

/// A file on a patron's record, with its bytes (base64). Its type is found again from them.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLine {
    /// The patron's register id.
    pub patron: u64,
    /// The file's number on the patron; 0 is the picture.
    pub id: u32,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Timestamp>,
    pub content: super::ops::FileBytes,
}

/// The first line of an export: the format, and which PIN key made its `pin_hash` values, so
/// that an import into a register with another key is refused instead of breaking every PIN.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterLine {
    /// The exchange format's version (1).
    pub format: u32,
    /// The fingerprint of the exporting register's PIN key (`sip2d key show`).
    pub pin_key: String,
    /// The sip2d version that wrote the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip2d: Option<String>,
}

/// What an import does with the file's `pin_hash` values, which only the PIN key that made
/// them can check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PinHashes {
    /// Take them when the file names this register's key; otherwise refuse the import.
    #[default]
    Check,
    /// They were made with the key of this fingerprint, which the caller installed (or, in a
    /// dry run, would install) as this register's (`import --pin-key`): take them also from a
    /// file that names no key; refuse a file naming another.
    MadeWith(String),
    /// Leave them out: imported patrons keep the PIN they have here, or get none.
    Drop,
}

/// How to import.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Check every line and report; write nothing.
    pub dry_run: bool,
    pub pin_hashes: PinHashes,
}

/// A self-check account: a plain `password` (hashed on import) or the `password_hash` an export
/// wrote.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountLine {
    pub login: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    pub institution: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub profile: BTreeMap<String, String>,
}

/// A patron. The person's fields are the line's to set: absent optional ones are cleared (an
/// external system's sync owns them). Status fields (`active`, `locked`, `deleted`, the PIN...)
/// are kept when absent. Blocks, notes, proxies and internal identifiers already stored survive.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatronLine {
    /// The register id; when absent, the patron is matched by institution and primary id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    pub institution: String,
    pub primary_id: String,
    pub first_name: String,
    pub last_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<Date>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_type: Option<RecordType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_type: Option<AccountType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry: Option<Date>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge: Option<Date>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms_accepted: Option<Date>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardian: Option<Guardian>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifiers: Vec<Identifier>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<Block>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Note>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxy_for: Vec<u64>,
    /// A PIN in clear, hashed on import (never exported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
    /// The stored keyed hash, hex; valid only with the same `pin.key` and register id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_changed: Option<Timestamp>,
    /// How the record came to be (export writes it; a new patron without it is "import").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<Created>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_pins: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<Transfer>,
    /// Contacts besides the preferred ones; stored ones the line does not name survive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<Contact>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statistics: Vec<Statistic>,
}

impl PatronLine {
    /// Everything stored about a patron, for export.
    pub fn of(p: &Patron) -> PatronLine {
        PatronLine {
            id: Some(p.id),
            institution: p.institution.clone(),
            primary_id: p.primary_id.clone(),
            first_name: p.first_name.clone(),
            last_name: p.last_name.clone(),
            middle_name: p.middle_name.clone(),
            title: p.title.clone(),
            birth_date: p.birth_date,
            email: p.email.clone(),
            phone: p.phone.clone(),
            address: p.address.clone(),
            postal_code: p.postal_code.clone(),
            language: p.language.clone(),
            user_group: p.user_group.clone(),
            record_type: Some(p.record_type),
            account_type: Some(p.account_type.clone()),
            expiry: p.expiry,
            purge: p.purge,
            terms_accepted: p.terms_accepted,
            guardian: p.guardian.clone(),
            identifiers: p.identifiers.clone(),
            blocks: p.blocks.clone(),
            notes: p.notes.clone(),
            proxy_for: p.proxy_for.clone(),
            pin: None,
            pin_hash: p.pin.as_ref().map(|h| hex(&h.0)),
            active: Some(p.active),
            status_changed: Some(p.status_changed),
            created: Some(p.created.clone()),
            failed_pins: Some(p.failed_pins),
            locked: Some(p.locked),
            deleted: p.deleted,
            transfer: p.transfer.clone(),
            contacts: p.contacts.clone(),
            statistics: p.statistics.clone(),
        }
    }

    /// The patron this line makes of `base` (the stored one, or a fresh one).
    fn apply_to(&self, base: &Patron, now: Timestamp) -> Patron {
        let mut p = base.clone();
        p.institution = self.institution.clone();
        p.primary_id = self.primary_id.clone();
        p.first_name = self.first_name.clone();
        p.last_name = self.last_name.clone();
        p.middle_name = self.middle_name.clone();
        p.title = self.title.clone();
        p.birth_date = self.birth_date;
        p.email = self.email.clone();
        p.phone = self.phone.clone();
        p.address = self.address.clone();
        p.postal_code = self.postal_code.clone();
        p.language = self.language.clone();
        p.user_group = self.user_group.clone();
        p.expiry = self.expiry;
        p.purge = self.purge;
        p.terms_accepted = self.terms_accepted;
        p.guardian = self.guardian.clone();
        if let Some(t) = self.record_type {
            p.record_type = t;
        }
        if let Some(t) = &self.account_type {
            p.account_type = t.clone();
        }
        // The line's identifiers replace the synced ones; staff's own (internal) ones stay.
        let mut ids = self.identifiers.clone();
        ids.extend(
            base.identifiers
                .iter()
                .filter(|i| i.internal && !self.identifiers.iter().any(|n| n.value == i.value))
                .cloned(),
        );
        p.identifiers = ids;
        merge_by_id(&mut p.blocks, &self.blocks, |b| b.id);
        merge_by_id(&mut p.notes, &self.notes, |n| n.id);
        merge_by_id(&mut p.contacts, &self.contacts, |c| c.id);
        merge_by_id(&mut p.statistics, &self.statistics, |s| s.id);
        for id in &self.proxy_for {
            if !p.proxy_for.contains(id) {
                p.proxy_for.push(*id);
            }
        }
        if let Some(a) = self.active {
            if a != p.active {
                p.status_changed = now;
            }
            p.active = a;
        }
        if let Some(t) = self.status_changed {
            p.status_changed = t;
        }
        if let Some(n) = self.failed_pins {
            p.failed_pins = n;
        }
        if let Some(l) = self.locked {
            p.locked = l;
        }
        if self.deleted.is_some() {
            p.deleted = self.deleted;
        }
        if self.transfer.is_some() {
            p.transfer = self.transfer.clone();
        }
        p
    }
}

/// Replaces stored entries with the line's of the same id and appends the line's new ones.
fn merge_by_id<T: Clone>(stored: &mut Vec<T>, incoming: &[T], id: impl Fn(&T) -> u32) {
    for new in incoming {
        match stored.iter_mut().find(|s| id(s) == id(new)) {
            Some(s) => *s = new.clone(),
            None => stored.push(new.clone()),
        }
    }
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// What an import did (or, dry, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub lines: usize,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    /// Line number (from 1) and why it was not imported.
    pub rejected: Vec<(usize, String)>,
}

/// What one line did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImportOutcome {
    Created,
    Updated,
    Unchanged,
}

use ImportOutcome as Outcome;

/// Runs each line as its own part of the unit: refused, a line leaves nothing behind.
pub fn import_lines(
    u: &mut Unit<'_>,
    lines: Vec<(usize, Line)>,
    take_pin_hashes: bool,
    ids_above: u64,
) -> Vec<(usize, Result<ImportOutcome, String>)> {
    bump_ids(u, ids_above);
    lines.into_iter().map(|(n, line)| (n, u.attempt(|u| import_line(u, line, take_pin_hashes)))).collect()
}

fn import_line(u: &mut Unit<'_>, line: Line, take_pin_hashes: bool) -> Result<Outcome, String> {
    let s = |e: Refusal| e.to_string();
    match line {
        // Read before the import began (the PIN key check).
        Line::Register(_) => Ok(Outcome::Unchanged),
        Line::Institution(i) => {
            check_institution(&i).map_err(s)?;
            let outcome = match u.state.institution(&i.code) {
                Some(old) if *old == i => return Ok(Outcome::Unchanged),
                Some(_) => Outcome::Updated,
                None => Outcome::Created,
            };
            u.put(Write::Institution(Box::new(i))).map_err(s)?;
            Ok(outcome)
        }
        Line::Account(a) => import_account(u, a),
        Line::Staff(m) => import_staff(u, *m),
        Line::Patron(p) => import_patron(u, *p, take_pin_hashes),
        Line::File(f) => import_file(u, *f),
        Line::Item(item) => {
            u.institution(&item.institution).map_err(s)?;
            check_item(&item).map_err(s)?;
            let outcome = match u.state.item(&item.barcode) {
                Some(old) if *old == item => return Ok(Outcome::Unchanged),
                Some(_) => Outcome::Updated,
                None => Outcome::Created,
            };
            u.put(Write::Item(Arc::new(item))).map_err(s)?;
            Ok(outcome)
        }
        Line::Loan(loan) => {
            if u.state.patron(loan.patron).is_none() {
                return Err(format!("no patron {}", loan.patron));
            }
            let Some(mut item) = u.state.item(&loan.item).cloned() else {
                return Err(format!("no item '{}'", loan.item));
            };
            if loan.due < loan.out {
                return Err("the due date is before the loan date".into());
            }
            let outcome = match u.state.loan(&loan.item) {
                Some(o) if o.patron != loan.patron => {
                    return Err(format!("item '{}' is on loan to patron {}", loan.item, o.patron));
                }
                Some(o) if *o == loan && item.status == ItemStatus::OnLoan => return Ok(Outcome::Unchanged),
                Some(_) => Outcome::Updated,
                None => Outcome::Created,
            };
            if item.status != ItemStatus::OnLoan {
                item.status = ItemStatus::OnLoan;
                u.put(Write::Item(Arc::new(item))).map_err(s)?;
            }
            u.put(Write::Loan(Arc::new(loan))).map_err(s)?;
            Ok(outcome)
        }
        Line::Fee(fee) => {
            if fee.id == 0 {
                return Err("a fee needs its id (a number), so that importing it again finds it".into());
            }
            if u.state.patron(fee.patron).is_none() {
                return Err(format!("no patron {}", fee.patron));
            }
            if fee.amount.0 == 0 {
                return Err("a fee of 0.00 charges nothing".into());
            }
            if fee.amount.0 < 0 && fee.comment.as_deref().is_none_or(|c| c.trim().is_empty()) {
                return Err("a credit needs a comment saying why".into());
            }
            if fee.paid.0 < 0 || (fee.amount.0 > 0 && fee.paid > fee.amount) {
                return Err(format!("paid {} does not fit the amount {}", fee.paid, fee.amount));
            }
            if let Some(previous) = &fee.previous_id {
                if previous.trim().is_empty() || previous.trim() != previous || previous.contains('|') {
                    return Err(format!("previous_id {previous:?} is not an id a kiosk can send"));
                }
                let taken = u
                    .state
                    .fees_of(fee.patron)
                    .into_iter()
                    .find(|f| f.id != fee.id && f.previous_id.as_ref() == Some(previous));
                if let Some(other) = taken {
                    return Err(format!("previous_id {previous} is already fee {}'s, of the same patron", other.id));
                }
            }
            let outcome = match u.state.fee(fee.id) {
                Some(o) if o.patron != fee.patron => {
                    return Err(format!("fee {} belongs to patron {}, not {}", fee.id, o.patron, fee.patron));
                }
                Some(o) if *o == fee => return Ok(Outcome::Unchanged),
                Some(_) => Outcome::Updated,
                None => Outcome::Created,
            };
            bump_ids(u, fee.id);
            u.put(Write::Fee(Box::new(fee))).map_err(s)?;
            Ok(outcome)
        }
        Line::Hold(hold) => {
            if hold.id == 0 {
                return Err("a hold needs its id (a number), so that importing it again finds it".into());
            }
            if u.state.patron(hold.patron).is_none() {
                return Err(format!("no patron {}", hold.patron));
            }
            match (&hold.item, &hold.title) {
                (Some(b), _) => {
                    if u.state.item(b).is_none() {
                        return Err(format!("no item '{b}'"));
                    }
                }
                (None, Some(_)) => {}
                (None, None) => return Err("a hold is on an item or a title: give one".into()),
            }
            validate::required("pickup", &hold.pickup).map_err(|e| e.to_string())?;
            let outcome = match u.state.hold(hold.id) {
                Some(o) if *o == hold => return Ok(Outcome::Unchanged),
                Some(_) => Outcome::Updated,
                None => Outcome::Created,
            };
            bump_ids(u, hold.id);
            u.put(Write::Hold(Box::new(hold))).map_err(s)?;
            Ok(outcome)
        }
    }
}

/// A file line: the patron's record names the file, and the store keeps its bytes.
fn import_file(u: &mut Unit<'_>, f: FileLine) -> Result<Outcome, String> {
    let s = |e: Refusal| e.to_string();
    let (by, at) = (f.by.unwrap_or_else(|| u.actor().to_string()), f.at.unwrap_or(u.now()));
    let limits = *u.state.limits();
    let size = f.content.0.len();
    let kind = super::units::details::media_type(&f.content.0);
    let (what, limit) =
        if f.id == 0 { ("picture", limits.max_picture_bytes) } else { ("attachment", limits.max_attachment_bytes) };
    if size > limit as usize {
        return Err(s(Refusal::TooLarge { what, bytes: size as u64, limit }));
    }
    if f.id == 0 && !kind.starts_with("image/") {
        return Err(s(Refusal::NotAPicture));
    }
    let name = super::units::details::file_name(&f.name).map_err(s)?;
    let sha256 = super::units::details::sha256(&f.content.0);
    let info = FileInfo { id: f.id, name, media_type: kind.into(), bytes: size as u32, sha256, by, at };
    let stored = u.patron(f.patron).map_err(s)?;
    if stored.file(f.id) == Some(&info) {
        return Ok(Outcome::Unchanged);
    }
    let mut outcome = Outcome::Created;
    u.update_patron(f.patron, "import", |p| {
        let slot = if f.id == 0 {
            &mut p.picture
        } else {
            match p.attachments.iter().position(|a| a.id == f.id) {
                Some(i) => {
                    outcome = Outcome::Updated;
                    p.attachments[i] = info.clone();
                    return Ok(vec![]);
                }
                None if p.attachments.len() >= limits.max_attachments_per_patron as usize => {
                    return Err(Refusal::Full { what: "attachments", limit: limits.max_attachments_per_patron });
                }
                None => {
                    p.attachments.push(info.clone());
                    p.attachments.sort_by_key(|a| a.id);
                    return Ok(vec![]);
                }
            }
        };
        if slot.is_some() {
            outcome = Outcome::Updated;
        }
        *slot = Some(info.clone());
        Ok(vec![])
    })
    .map_err(s)?;
    u.put(Write::File(f.patron, f.id, f.content.0)).map_err(s)?;
    Ok(outcome)
}

/// Records given their own ids keep later ids above them.
fn bump_ids(u: &mut Unit<'_>, id: u64) {
    if id > u.state.last_id() {
        let _ = u.state.apply(&Write::LastId(id));
    }
}

fn import_account(u: &mut Unit<'_>, a: AccountLine) -> Result<Outcome, String> {
    let s = |e: Refusal| e.to_string();
    check_login(&a.login).map_err(s)?;
    u.institution(&a.institution).map_err(s)?;
    let old = u.state.account(&a.login).cloned();
    // A password in clear was hashed before the line came here (see `prepare`); so both is a
    // line that gave both.
    let password_hash = match (&a.password, &a.password_hash) {
        (Some(_), Some(_)) => return Err("give password or password_hash, not both".into()),
        (Some(_), None) => return Err("the password was not hashed before the import".into()),
        (None, None) => match &old {
            Some(o) => o.password_hash.clone(),
            None => return Err("a new account needs a password".into()),
        },
        (None, Some(h)) => {
            argon2::password_hash::PasswordHash::new(h)
                .map_err(|e| format!("password_hash is not an Argon2 PHC string: {e}"))?;
            h.clone()
        }
    };
    let account =
        Account { login: a.login, password_hash, institution: a.institution, location: a.location, profile: a.profile };
    let outcome = match &old {
        Some(o) if *o == account => return Ok(Outcome::Unchanged),
        Some(_) => Outcome::Updated,
        None => Outcome::Created,
    };
    u.put(Write::Account(Box::new(account))).map_err(s)?;
    Ok(outcome)
}

fn import_staff(u: &mut Unit<'_>, m: Staff) -> Result<Outcome, String> {
    let s = |e: Refusal| e.to_string();
    crate::domain::staff::check_login(&m.login).map_err(s)?;
    validate::required("name", &m.name).map_err(|e| s(e.into()))?;
    if m.institutions.is_empty() {
        return Err("a staff account works for at least one institution".into());
    }
    for i in &m.institutions {
        u.institution(i).map_err(s)?;
    }
    argon2::password_hash::PasswordHash::new(&m.password_hash)
        .map_err(|e| format!("password_hash is not an Argon2 PHC string: {e}"))?;
    if let Some(t) = m.tokens.iter().find(|t| unhex32(&t.digest).is_none()) {
        return Err(format!("token {} digest is not 64 hex digits", t.id));
    }
    let outcome = match u.state.staff(&m.login) {
        Some(old) if *old == m => return Ok(Outcome::Unchanged),
        Some(_) => Outcome::Updated,
        None => Outcome::Created,
    };
    u.put(Write::Staff(Box::new(m))).map_err(s)?;
    Ok(outcome)
}

fn import_patron(u: &mut Unit<'_>, line: PatronLine, take_pin_hashes: bool) -> Result<Outcome, String> {
    let s = |e: Refusal| e.to_string();
    let inst = u.institution(&line.institution).map_err(s)?;
    let existing = match line.id {
        Some(id) => u.state.patron(id).cloned(),
        None => u
            .state
            .patron_by_identifier(&line.institution, &line.primary_id)
            .filter(|p| p.primary_id == line.primary_id)
            .cloned(),
    };
    let (id, base) = match &existing {
        Some(p) => (p.id, p.clone()),
        None => {
            let id = match line.id {
                Some(id) => {
                    bump_ids(u, id);
                    id
                }
                None => u.new_id(),
            };
            let created = line.created.clone().unwrap_or(Created {
                at: u.now(),
                by: u.actor().to_string(),
                via: "import".into(),
            });
            let fresh =
                Patron::new(id, &line.institution, &line.primary_id, &line.first_name, &line.last_name, u.now());
            (id, Patron { created, ..fresh })
        }
    };
    let mut p = line.apply_to(&base, u.now());
    check_patron(&inst, &p, inst.today(u.now())).map_err(s)?;
    let pin_hash = if take_pin_hashes { &line.pin_hash } else { &None };
    match (&line.pin, pin_hash) {
        (Some(_), Some(_)) => return Err("give pin or pin_hash, not both".into()),
        (Some(pin), None) => {
            validate::pin(&inst.pin_policy, pin).map_err(|e| e.to_string())?;
            p.pin = Some(u.key.hash(id, pin));
        }
        (None, Some(h)) => {
            let bytes = unhex32(h).ok_or("pin_hash is not 64 hex digits")?;
            p.pin = Some(PinHash(bytes));
        }
        (None, None) => {}
    }
    for other in &p.proxy_for {
        if *other == id || u.state.patron(*other).is_none() {
            return Err(format!("proxy_for names patron {other}, who is not in the register"));
        }
    }
    let outcome = match &existing {
        Some(old) if *old == p => return Ok(Outcome::Unchanged),
        Some(_) => Outcome::Updated,
        None => Outcome::Created,
    };
    u.put(Write::Patron(Box::new(p.clone()))).map_err(s)?;
    if let Some(old) = &existing {
        u.audit(id, "import-update", diff(old, &p));
    }
    Ok(outcome)
}

/// The explicit ids a file uses, read ahead.
#[derive(Deserialize)]
struct IdOnly {
    #[serde(default)]
    id: Option<u64>,
}

/// Reads one line, saying what is wrong in terms of the line (serde counts lines of the text it
/// was given, which is always one here).
fn parse_line(text: &str) -> Result<Line, String> {
    serde_json::from_str::<Line>(text).map_err(|e| {
        let what = if e.is_syntax() || e.is_eof() { "not valid JSON: " } else { "" };
        let msg = e.to_string();
        let msg = msg.split(" at line 1 column ").next().unwrap_or(&msg);
        format!("{what}{msg} (column {})", e.column())
    })
}

/// Whether the file's PIN hashes may be taken as `mode` says: refused, before anything is
/// written, when they were made with another key than the register's (or the file does not say
/// which, unless the caller vouches for it).
fn check_pin_hashes(ours: &str, headers: &[RegisterLine], has_hashes: bool, mode: &PinHashes) -> Result<(), Refusal> {
    let ours = match mode {
        _ if !has_hashes => return Ok(()),
        PinHashes::Drop => return Ok(()),
        PinHashes::Check => ours.to_string(),
        PinHashes::MadeWith(key) => key.clone(),
    };
    let ways = "give the exporting register's key with --pin-key FILE (`sip2d key export` writes it; accepted into a register without PINs or one with that key), or import without the PINs with --reset-pins";
    match headers.iter().find(|h| h.pin_key != ours).or(headers.first()) {
        Some(h) if h.pin_key == ours => Ok(()),
        Some(h) => Err(Refusal::rule(format!(
            "the file's PIN hashes were made with PIN key {}, and this register's key is {ours}: imported, every one of those PINs would be refused at the kiosk; {ways}",
            h.pin_key
        ))),
        None if matches!(mode, PinHashes::MadeWith(_)) => Ok(()),
        None => Err(Refusal::rule(format!(
            "the file has PIN hashes (pin_hash) but no register line naming the PIN key that made them; {ways}"
        ))),
    }
}

/// A line ready for the writer: an account's password in clear hashed here, where it may take
/// its time (Argon2), unless the stored hash already matches it.
fn prepare(engine: &dyn Engine, line: Line) -> Result<Line, String> {
    let Line::Account(mut a) = line else { return Ok(line) };
    let (Some(p), None) = (&a.password, &a.password_hash) else { return Ok(Line::Account(a)) };
    let stored = match engine.query(Query::Account(a.login.clone())).wait() {
        Ok(Answer::Account(old)) => Some(old.password_hash),
        _ => None,
    };
    a.password_hash = Some(match stored {
        // Hashing again would change the salt: keep the stored hash if it matches.
        Some(h) if secret::verify_password(p, &h) => h,
        _ => {
            if p.chars().count() < 8 {
                return Err("a terminal password needs at least 8 characters".into());
            }
            secret::hash_password(p).map_err(|e| e.to_string())?
        }
    });
    a.password = None;
    Ok(Line::Account(a))
}

/// Imports JSON Lines from `input` through `engine`. Rejected lines are reported, not fatal;
/// an error is returned when the engine fails, or when the file's PIN hashes do not fit the
/// register's key (then nothing is written).
pub fn import<R: BufRead + Seek>(
    engine: &dyn Engine,
    mut input: R,
    options: &ImportOptions,
    by: &By,
) -> Result<ImportReport, Error> {
    let read_err = |e: io::Error| Error::Refused(Refusal::rule(format!("cannot read the import file: {e}")));
    // Read twice, streaming: first for the register lines and whether it holds PIN hashes.
    let mut headers: Vec<RegisterLine> = Vec::new();
    let mut has_hashes = false;
    // The ids the file gives its records, so that ids made for others never collide with them.
    let mut ids_above = 0;
    for l in (&mut input).split(b'\n') {
        let l = l.map_err(read_err)?;
        if l.windows(4).any(|w| w == b"\"id\"") {
            if let Some(id) = serde_json::from_slice::<IdOnly>(&l).ok().and_then(|x| x.id) {
                ids_above = ids_above.max(id);
            }
        }
        if l.windows(17).any(|w| w == b"\"type\":\"register\"") {
            if let Ok(Line::Register(h)) = serde_json::from_slice::<Line>(&l) {
                headers.push(h);
            }
        }
        has_hashes = has_hashes || l.windows(10).any(|w| w == b"\"pin_hash\"");
    }
    check_pin_hashes(&engine.pin_key_fingerprint()?, &headers, has_hashes, &options.pin_hashes)?;
    input.rewind().map_err(read_err)?;
    let take = options.pin_hashes != PinHashes::Drop;
    let mut report = ImportReport::default();
    let mut group: Vec<(usize, Line)> = Vec::with_capacity(LINES_PER_OPERATION);
    let mut dry: Vec<Operation> = Vec::new();
    let mut flight: std::collections::VecDeque<Pending<Receipt>> = std::collections::VecDeque::new();
    let tally = |report: &mut ImportReport, r: Result<Receipt, Error>| -> Result<(), Error> {
        match r? {
            Receipt::Imported(lines) => {
                for (n, verdict) in lines {
                    match verdict {
                        Ok(Outcome::Created) => report.created += 1,
                        Ok(Outcome::Updated) => report.updated += 1,
                        Ok(Outcome::Unchanged) => report.unchanged += 1,
                        Err(why) => report.rejected.push((n, why)),
                    }
                }
                Ok(())
            }
            other => Err(Error::Refused(Refusal::rule(format!("unexpected answer to an import: {other:?}")))),
        }
    };
    let mut send = |group: Vec<(usize, Line)>, report: &mut ImportReport| -> Result<(), Error> {
        let op = Operation::Import { lines: group, take_pin_hashes: take, ids_above };
        if options.dry_run {
            dry.push(op);
            return Ok(());
        }
        flight.push_back(engine.run(op, by.clone()));
        while flight.len() > IN_FLIGHT {
            if let Some(p) = flight.pop_front() {
                tally(report, p.wait())?;
            }
        }
        Ok(())
    };
    for (n, l) in input.split(b'\n').enumerate() {
        let n = n + 1;
        let text = match l {
            Ok(bytes) => String::from_utf8(bytes).map_err(|_| "the line is not UTF-8".to_string()),
            Err(e) => Err(format!("cannot read: {e}")),
        };
        if text.as_ref().is_ok_and(|t| t.trim().is_empty()) {
            continue;
        }
        report.lines += 1;
        match text.and_then(|t| parse_line(&t)).and_then(|l| prepare(engine, l)) {
            Ok(line) => group.push((n, line)),
            Err(why) => report.rejected.push((n, why)),
        }
        if group.len() >= LINES_PER_OPERATION {
            send(std::mem::take(&mut group), &mut report)?;
        }
    }
    if !group.is_empty() {
        send(group, &mut report)?;
    }
    for p in flight {
        tally(&mut report, p.wait())?;
    }
    if options.dry_run {
        for r in engine.check(dry, by.clone()).wait()? {
            tally(&mut report, r)?;
        }
    }
    report.rejected.sort_by_key(|(n, _)| *n);
    Ok(report)
}

/// Writes every record of `state` as JSON Lines: the register line (with the PIN key's
/// fingerprint), institutions, accounts, patrons, items, loans, fees, holds, files (each kind
/// after what it refers to; `files` reads a file's bytes from the store, none if it is gone since). Returns the number
/// of lines.
pub fn export(
    state: &State,
    pin_key: &str,
    files: &dyn Fn(u64, u32) -> io::Result<Option<Vec<u8>>>,
    sink: &mut dyn FnMut(&Line) -> io::Result<()>,
) -> Result<usize, io::Error> {
    let mut n = 0;
    let mut put = |line: Line| -> io::Result<()> {
        sink(&line)?;
        n += 1;
        Ok(())
    };
    put(Line::Register(RegisterLine {
        format: 1,
        pin_key: pin_key.to_string(),
        sip2d: Some(env!("CARGO_PKG_VERSION").to_string()),
    }))?;
    for i in state.institutions() {
        put(Line::Institution(i.clone()))?;
    }
    for a in state.accounts() {
        put(Line::Account(AccountLine {
            login: a.login.clone(),
            password: None,
            password_hash: Some(a.password_hash.clone()),
            institution: a.institution.clone(),
            location: a.location.clone(),
            profile: a.profile.clone(),
        }))?;
    }
    for m in state.staff_list() {
        put(Line::Staff(Box::new(m.clone())))?;
    }
    for p in state.patrons() {
        put(Line::Patron(Box::new(PatronLine::of(p))))?;
    }
    for i in state.items() {
        put(Line::Item(i.clone()))?;
    }
    for l in state.loans() {
        put(Line::Loan(l.clone()))?;
    }
    for f in state.fees() {
        put(Line::Fee(f.clone()))?;
    }
    for h in state.holds() {
        put(Line::Hold(h.clone()))?;
    }
    for p in state.patrons() {
        for f in p.files() {
            let Some(content) = files(p.id, f.id)? else { continue };
            put(Line::File(Box::new(FileLine {
                patron: p.id,
                id: f.id,
                name: f.name.clone(),
                by: Some(f.by.clone()),
                at: Some(f.at),
                content: super::ops::FileBytes(content),
            })))?;
        }
    }
    Ok(n)
}

/// Writes a line as the exchange format has it (one JSON object, then a newline).
pub fn write_line(out: &mut dyn io::Write, line: &Line) -> io::Result<()> {
    serde_json::to_writer(&mut *out, line).map_err(io::Error::other)?;
    out.write_all(b"\n")
}
