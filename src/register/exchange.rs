//! `sip2d import` and `sip2d export`: the register as JSON Lines, one record per line.
//!
//! Import is idempotent (a record equal to what is stored writes nothing), applies each record
//! atomically with its indexes, and reports every rejected line with its number and reason.
//! Lines are committed in groups for speed; if a group is refused as a whole, its lines are
//! redone one by one so that each gets its own verdict. See docs/import.md.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, Seek};

use jiff::Timestamp;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use super::circulation::check_item;
use super::{Register, audit, check_institution, check_patron, diff};
use crate::domain::secret;
use crate::domain::validate;
use crate::domain::*;
use crate::store::{StoreError, Write};

/// Lines committed together in one transaction. sled keeps a transaction's garbage until it
/// ends, so larger groups cost memory and time: 32-128 measured fastest, 256 about 10% slower,
/// 1 024 slower still (docs/BENCHMARKS.md).
const GROUP: usize = 64;
/// Groups between flushes to disk (and the final flush before the report).
const GROUPS_PER_FLUSH: usize = 256;

/// One line of the exchange format.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Line {
    /// What the file is: an export writes it first.
    Register(RegisterLine),
    Institution(Institution),
    Account(AccountLine),
    Patron(Box<PatronLine>),
    Item(Item),
    Loan(Loan),
    Fee(Fee),
    Hold(Hold),
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Created,
    Updated,
    Unchanged,
}

/// What the lines planned so far (and not yet committed) will have written: later lines in the
/// same group see it as if it were stored.
#[derive(Default)]
struct Overlay {
    institutions: HashMap<String, Institution>,
    patrons: HashMap<u64, Patron>,
    /// institution \0 value (primary id, identifier, lower-cased e-mail) -> patron
    claims: HashMap<String, u64>,
    items: HashMap<String, Item>,
    loans: HashMap<String, Loan>,
    accounts: HashMap<String, Account>,
}

/// The overlays of the groups planned but perhaps not yet committed, newest last. A real
/// import keeps three: the group being applied, the one waiting, and the one being planned.
#[derive(Default)]
struct Overlays {
    gens: std::collections::VecDeque<Overlay>,
    /// How many to keep (none: all, for a dry run, which commits nothing).
    keep: Option<usize>,
}

impl Overlays {
    fn get<'a, T>(&'a self, f: impl Fn(&'a Overlay) -> Option<T>) -> Option<T> {
        self.gens.iter().rev().find_map(f)
    }

    fn cur(&mut self) -> &mut Overlay {
        if self.gens.is_empty() {
            self.gens.push_back(Overlay::default());
        }
        let last = self.gens.len() - 1;
        &mut self.gens[last]
    }

    /// Starts the next group's overlay, dropping those of groups surely committed.
    fn next_group(&mut self) {
        self.gens.push_back(Overlay::default());
        while self.keep.is_some_and(|k| self.gens.len() > k) {
            self.gens.pop_front();
        }
    }

    fn clear(&mut self) {
        self.gens.clear();
    }
}

/// Ids for new records: reserved from the store a block at a time, or counted locally in a dry
/// run (which writes nothing).
struct Ids {
    dry_next: Option<u64>,
    /// The next reserved id and the end of the reserved block.
    block: (u64, u64),
}

struct Importer<'a> {
    reg: &'a Register,
    /// Whether unique values are checked against the store while planning. A dry run must; a
    /// real run leaves it to the commit, which checks them anyway (and a refused group is then
    /// redone line by line, so each line still gets its verdict).
    check_store: bool,
    drop_pin_hashes: bool,
    now: Timestamp,
    overlay: Overlays,
    ids: Ids,
    /// Institutions as stored, read once (an institution line updates it).
    institutions: HashMap<String, Institution>,
}

fn claim_key(institution: &str, value: &str) -> String {
    format!("{institution}\0{value}")
}

/// The overlay key of a unique value: e-mails compare without case and live apart from
/// identifiers (as in the store's own indexes).
fn claim_of(institution: &str, value: &str, email: bool) -> String {
    if email { format!("@{}", claim_key(institution, &value.to_lowercase())) } else { claim_key(institution, value) }
}

impl Importer<'_> {
    fn new_id(&mut self) -> Result<u64, String> {
        match &mut self.ids.dry_next {
            Some(n) => {
                *n += 1;
                Ok(*n - 1)
            }
            None => {
                let (next, end) = &mut self.ids.block;
                if *next == *end {
                    *next = self.reg.store.reserve_ids(GROUP as u64).map_err(|e| e.to_string())?;
                    *end = *next + GROUP as u64;
                }
                *next += 1;
                Ok(*next - 1)
            }
        }
    }

    fn institution(&mut self, code: &str) -> Result<Institution, String> {
        if let Some(i) = self.overlay.get(|o| o.institutions.get(code)).or_else(|| self.institutions.get(code)) {
            return Ok(i.clone());
        }
        let i = self.reg.store.institution(code).map_err(|e| e.to_string())?;
        self.institutions.insert(code.to_string(), i.clone());
        Ok(i)
    }

    fn patron(&self, id: u64) -> Result<Option<Patron>, String> {
        if let Some(p) = self.overlay.get(|o| o.patrons.get(&id)) {
            return Ok(Some(p.clone()));
        }
        match self.reg.store.patron(id) {
            Ok(p) => Ok(Some(p)),
            Err(StoreError::NoPatron(_)) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The patron whose primary id this is, planned in this group or stored.
    fn by_primary_id(&self, institution: &str, primary_id: &str) -> Result<Option<Patron>, String> {
        if let Some(id) = self.overlay.get(|o| o.claims.get(&claim_key(institution, primary_id))) {
            return Ok(self.overlay.get(|o| o.patrons.get(id)).filter(|p| p.primary_id == primary_id).cloned());
        }
        let found = self.reg.store.patron_by_identifier(institution, primary_id).map_err(|e| e.to_string())?;
        Ok(found.filter(|p| p.primary_id == primary_id && self.overlay.get(|o| o.patrons.get(&p.id)).is_none()))
    }

    fn item(&self, barcode: &str) -> Result<Option<Item>, String> {
        if let Some(i) = self.overlay.get(|o| o.items.get(barcode)) {
            return Ok(Some(i.clone()));
        }
        self.reg.store.item(barcode).map_err(|e| e.to_string())
    }

    /// Who holds a unique value (primary id or identifier, or with `email` an e-mail).
    fn owner(&self, institution: &str, value: &str, email: bool) -> Result<Option<u64>, String> {
        let key = claim_of(institution, value, email);
        if let Some(id) = self.overlay.get(|o| o.claims.get(&key)) {
            return Ok(Some(*id));
        }
        if !self.check_store {
            return Ok(None);
        }
        let found = if email {
            self.reg.store.email_owner(institution, value)
        } else {
            self.reg.store.identifier_owner(institution, value)
        };
        let found = found.map_err(|e| e.to_string())?;
        // A patron changed in a group not yet committed may have given the value up.
        Ok(found.filter(|id| self.overlay.get(|o| o.patrons.get(id)).is_none()))
    }

    fn plan(&mut self, line: Line) -> Result<(Outcome, Vec<Write>), String> {
        match line {
            // Read before the import began (see `Register::check_pin_hashes`).
            Line::Register(_) => Ok((Outcome::Unchanged, vec![])),
            Line::Institution(i) => self.plan_institution(i),
            Line::Account(a) => self.plan_account(a),
            Line::Patron(p) => self.plan_patron(*p),
            Line::Item(i) => self.plan_item(i),
            Line::Loan(l) => self.plan_loan(l),
            Line::Fee(f) => self.plan_fee(f),
            Line::Hold(h) => self.plan_hold(h),
        }
    }

    fn plan_institution(&mut self, i: Institution) -> Result<(Outcome, Vec<Write>), String> {
        check_institution(&i).map_err(|e| e.to_string())?;
        let outcome = match self.institution(&i.code) {
            Ok(old) if old == i => return Ok((Outcome::Unchanged, vec![])),
            Ok(_) => Outcome::Updated,
            Err(_) => Outcome::Created,
        };
        self.overlay.cur().institutions.insert(i.code.clone(), i.clone());
        self.institutions.remove(&i.code);
        Ok((outcome, vec![Write::Institution(i)]))
    }

    fn plan_account(&mut self, a: AccountLine) -> Result<(Outcome, Vec<Write>), String> {
        super::circulation::check_login(&a.login).map_err(|e| e.to_string())?;
        self.institution(&a.institution)?;
        let old = match self.overlay.get(|o| o.accounts.get(&a.login)) {
            Some(a) => Some(a.clone()),
            None => self.reg.store.account(&a.login).map_err(|e| e.to_string())?,
        };
        let password_hash = match (&a.password, &a.password_hash) {
            (Some(_), Some(_)) => return Err("give password or password_hash, not both".into()),
            (None, None) => match &old {
                Some(o) => o.password_hash.clone(),
                None => return Err("a new account needs a password".into()),
            },
            (None, Some(h)) => {
                argon2::password_hash::PasswordHash::new(h)
                    .map_err(|e| format!("password_hash is not an Argon2 PHC string: {e}"))?;
                h.clone()
            }
            (Some(p), None) => match &old {
                // Hashing again would change the salt: keep the stored hash if it matches.
                Some(o) if secret::verify_password(p, &o.password_hash) => o.password_hash.clone(),
                _ => {
                    if p.chars().count() < 8 {
                        return Err("a terminal password needs at least 8 characters".into());
                    }
                    secret::hash_password(p).map_err(|e| e.to_string())?
                }
            },
        };
        let account = Account {
            login: a.login,
            password_hash,
            institution: a.institution,
            location: a.location,
            profile: a.profile,
        };
        let outcome = match &old {
            Some(o) if *o == account => return Ok((Outcome::Unchanged, vec![])),
            Some(_) => Outcome::Updated,
            None => Outcome::Created,
        };
        self.overlay.cur().accounts.insert(account.login.clone(), account.clone());
        Ok((outcome, vec![Write::Account(account)]))
    }

    fn plan_patron(&mut self, line: PatronLine) -> Result<(Outcome, Vec<Write>), String> {
        let inst = self.institution(&line.institution)?;
        let existing = match line.id {
            Some(id) => self.patron(id)?,
            None => self.by_primary_id(&line.institution, &line.primary_id)?,
        };
        let (id, base) = match &existing {
            Some(p) => (p.id, p.clone()),
            None => {
                let id = match line.id {
                    Some(id) => id,
                    None => self.new_id()?,
                };
                let created = line.created.clone().unwrap_or(Created {
                    at: self.now,
                    by: self.reg.actor.clone(),
                    via: "import".into(),
                });
                let fresh =
                    Patron::new(id, &line.institution, &line.primary_id, &line.first_name, &line.last_name, self.now);
                (id, Patron { created, ..fresh })
            }
        };
        let mut p = line.apply_to(&base, self.now);
        check_patron(&inst, &p, inst.today(self.now)).map_err(|e| e.to_string())?;
        let pin_hash = if self.drop_pin_hashes { &None } else { &line.pin_hash };
        match (&line.pin, pin_hash) {
            (Some(_), Some(_)) => return Err("give pin or pin_hash, not both".into()),
            (Some(pin), None) => {
                validate::pin(&inst.pin_policy, pin).map_err(|e| e.to_string())?;
                let h = self.reg.key.hash(id, pin);
                p.pin = Some(h);
            }
            (None, Some(h)) => {
                let bytes = unhex32(h).ok_or("pin_hash is not 64 hex digits")?;
                p.pin = Some(PinHash(bytes));
            }
            (None, None) => {}
        }
        for other in &p.proxy_for {
            if *other == id || self.patron(*other)?.is_none() {
                return Err(format!("proxy_for names patron {other}, who is not in the register"));
            }
        }
        // Unique values: refused here with a clear reason rather than by the transaction.
        let mut values: Vec<(&str, &str, bool)> = vec![("primary id", &p.primary_id, false)];
        values.extend(p.identifiers.iter().map(|i| ("identifier", i.value.as_str(), false)));
        values.extend(p.email.iter().map(|e| ("e-mail", e.as_str(), true)));
        for (what, value, email) in &values {
            if let Some(owner) = self.owner(&p.institution, value, *email)? {
                if owner != id {
                    return Err(format!("{what} '{value}' is already used by patron {owner} at {}", p.institution));
                }
            }
        }
        let outcome = match &existing {
            Some(old) if *old == p => return Ok((Outcome::Unchanged, vec![])),
            Some(_) => Outcome::Updated,
            None => Outcome::Created,
        };
        for (_, value, email) in values {
            self.overlay.cur().claims.insert(claim_of(&p.institution, value, email), id);
        }
        self.overlay.cur().patrons.insert(id, p.clone());
        match &existing {
            // A new patron's creation is recorded in the record itself (`created`).
            None => Ok((outcome, vec![Write::Patron(Box::new(p))])),
            Some(old) => {
                let entry = audit(id, self.now, &self.reg.actor, "import-update", diff(old, &p));
                Ok((outcome, vec![Write::Patron(Box::new(p)), Write::Audit(entry)]))
            }
        }
    }

    fn plan_item(&mut self, item: Item) -> Result<(Outcome, Vec<Write>), String> {
        self.institution(&item.institution)?;
        check_item(&item).map_err(|e| e.to_string())?;
        let outcome = match self.item(&item.barcode)? {
            Some(old) if old == item => return Ok((Outcome::Unchanged, vec![])),
            Some(_) => Outcome::Updated,
            None => Outcome::Created,
        };
        self.overlay.cur().items.insert(item.barcode.clone(), item.clone());
        Ok((outcome, vec![Write::Item(item)]))
    }

    fn plan_loan(&mut self, loan: Loan) -> Result<(Outcome, Vec<Write>), String> {
        if self.patron(loan.patron)?.is_none() {
            return Err(format!("no patron {}", loan.patron));
        }
        let Some(mut item) = self.item(&loan.item)? else { return Err(format!("no item '{}'", loan.item)) };
        if loan.due < loan.out {
            return Err("the due date is before the loan date".into());
        }
        let old = match self.overlay.get(|o| o.loans.get(&loan.item)) {
            Some(l) => Some(l.clone()),
            None => self.reg.store.loan(&loan.item).map_err(|e| e.to_string())?,
        };
        let outcome = match &old {
            Some(o) if o.patron != loan.patron => {
                return Err(format!("item '{}' is on loan to patron {}", loan.item, o.patron));
            }
            Some(o) if *o == loan && item.status == ItemStatus::OnLoan => return Ok((Outcome::Unchanged, vec![])),
            Some(_) => Outcome::Updated,
            None => Outcome::Created,
        };
        let mut writes = vec![Write::Loan(loan.clone())];
        if item.status != ItemStatus::OnLoan {
            item.status = ItemStatus::OnLoan;
            self.overlay.cur().items.insert(item.barcode.clone(), item.clone());
            writes.push(Write::Item(item));
        }
        self.overlay.cur().loans.insert(loan.item.clone(), loan);
        Ok((outcome, writes))
    }

    fn plan_fee(&mut self, fee: Fee) -> Result<(Outcome, Vec<Write>), String> {
        if fee.id == 0 {
            return Err("a fee needs its id (a number), so that importing it again finds it".into());
        }
        if self.patron(fee.patron)?.is_none() {
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
        let old = self.reg.store.fee(fee.id).map_err(|e| e.to_string())?;
        let outcome = match &old {
            Some(o) if o.patron != fee.patron => {
                return Err(format!("fee {} belongs to patron {}, not {}", fee.id, o.patron, fee.patron));
            }
            Some(o) if *o == fee => return Ok((Outcome::Unchanged, vec![])),
            Some(_) => Outcome::Updated,
            None => Outcome::Created,
        };
        Ok((outcome, vec![Write::Fee(fee)]))
    }

    fn plan_hold(&mut self, hold: Hold) -> Result<(Outcome, Vec<Write>), String> {
        if hold.id == 0 {
            return Err("a hold needs its id (a number), so that importing it again finds it".into());
        }
        if self.patron(hold.patron)?.is_none() {
            return Err(format!("no patron {}", hold.patron));
        }
        match (&hold.item, &hold.title) {
            (Some(b), _) => {
                if self.item(b)?.is_none() {
                    return Err(format!("no item '{b}'"));
                }
            }
            (None, Some(_)) => {}
            (None, None) => return Err("a hold is on an item or a title: give one".into()),
        }
        validate::required("pickup", &hold.pickup).map_err(|e| e.to_string())?;
        let old = self.reg.store.hold(hold.id).map_err(|e| e.to_string())?;
        let outcome = match &old {
            Some(o) if *o == hold => return Ok((Outcome::Unchanged, vec![])),
            Some(_) => Outcome::Updated,
            None => Outcome::Created,
        };
        Ok((outcome, vec![Write::Hold(hold)]))
    }
}

/// A group of lines as the planner left them: each line with its verdict, and the writes of
/// those it accepted, to be committed together.
struct Planned {
    lines: Vec<(usize, String, Result<Outcome, String>)>,
    /// Lines that could not be read (not UTF-8): rejected whatever the store holds.
    unreadable: Vec<(usize, String)>,
    writes: Vec<Write>,
}

/// Splits numbered lines into groups of [`GROUP`] records; blank lines are skipped.
fn groups_of(
    lines: impl Iterator<Item = (usize, Result<String, String>)>,
) -> impl Iterator<Item = Vec<(usize, Result<String, String>)>> {
    let mut lines = lines.filter(|(_, l)| l.as_ref().map_or(true, |t| !t.trim().is_empty())).peekable();
    std::iter::from_fn(move || {
        lines.peek()?;
        Some(lines.by_ref().take(GROUP).collect())
    })
}

impl Importer<'_> {
    fn plan_group(&mut self, group: Vec<(usize, Result<String, String>)>) -> Planned {
        let mut planned = Planned { lines: Vec::with_capacity(group.len()), unreadable: vec![], writes: vec![] };
        for (n, text) in group {
            match text {
                Err(why) => planned.unreadable.push((n, why)),
                Ok(text) => {
                    let verdict = parse_line(&text).and_then(|l| self.plan(l)).map(|(outcome, w)| {
                        planned.writes.extend(w);
                        outcome
                    });
                    planned.lines.push((n, text, verdict));
                }
            }
        }
        planned
    }
}

/// The explicit ids a file uses, read ahead so new ids never collide with a later line's.
#[derive(Deserialize)]
struct IdOnly {
    #[serde(default)]
    id: Option<u64>,
}

impl Register {
    /// Whether the file's PIN hashes may be imported as `mode` says: refused, before anything
    /// is written, when they were made with another key than this register's (or the file does
    /// not say which, unless the caller vouches for it).
    fn check_pin_hashes(&self, headers: &[RegisterLine], has_hashes: bool, mode: &PinHashes) -> Result<(), StoreError> {
        let ours = match mode {
            _ if !has_hashes => return Ok(()),
            PinHashes::Drop => return Ok(()),
            PinHashes::Check => self.key.fingerprint(),
            PinHashes::MadeWith(key) => key.clone(),
        };
        let ways = "give the exporting register's key with --pin-key FILE (`sip2d key export` writes it; accepted into a register without PINs or one with that key), or import without the PINs with --reset-pins";
        match headers.iter().find(|h| h.pin_key != ours).or(headers.first()) {
            Some(h) if h.pin_key == ours => Ok(()),
            Some(h) => Err(StoreError::Refused(format!(
                "the file's PIN hashes were made with PIN key {}, and this register's key is {ours}: imported, every one of those PINs would be refused at the kiosk; {ways}",
                h.pin_key
            ))),
            None if matches!(mode, PinHashes::MadeWith(_)) => Ok(()),
            None => Err(StoreError::Refused(format!(
                "the file has PIN hashes (pin_hash) but no register line naming the PIN key that made them; {ways}"
            ))),
        }
    }

    /// Imports JSON Lines from `input`. Rejected lines are reported, not fatal; an error is
    /// returned when the store itself fails, or when the file's PIN hashes do not fit this
    /// register's key (then nothing is written).
    pub fn import<R: BufRead + Seek + Send>(
        &self,
        mut input: R,
        options: &ImportOptions,
        now: Timestamp,
    ) -> Result<ImportReport, StoreError> {
        let dry_run = options.dry_run;
        let read_err = |e: io::Error| StoreError::Refused(format!("cannot read the import file: {e}"));
        // The file is read twice, streaming: first for the ids it uses, its register line and
        // whether it holds PIN hashes, then to import.
        let mut max_id = 0;
        let mut headers: Vec<RegisterLine> = Vec::new();
        let mut has_hashes = false;
        for l in (&mut input).split(b'\n') {
            let l = l.map_err(read_err)?;
            if l.windows(17).any(|w| w == b"\"type\":\"register\"") {
                if let Ok(Line::Register(h)) = serde_json::from_slice::<Line>(&l) {
                    headers.push(h);
                }
            }
            has_hashes = has_hashes || l.windows(10).any(|w| w == b"\"pin_hash\"");
            // Most lines (items, patrons matched by primary id) have no id: skip parsing them.
            if !l.windows(4).any(|w| w == b"\"id\"") {
                continue;
            }
            if let Some(id) = serde_json::from_slice::<IdOnly>(&l).ok().and_then(|x| x.id) {
                max_id = max_id.max(id);
            }
        }
        self.check_pin_hashes(&headers, has_hashes, &options.pin_hashes)?;
        input.rewind().map_err(read_err)?;
        let lines = input.split(b'\n').enumerate().map(|(n, l)| {
            let text = match l {
                Ok(bytes) => String::from_utf8(bytes).map_err(|_| "the line is not UTF-8".to_string()),
                Err(e) => Err(format!("cannot read: {e}")),
            };
            (n + 1, text)
        });
        let dry_next = if dry_run { Some(self.store.last_id()?.max(max_id) + 1) } else { None };
        if !dry_run {
            self.store.bump_ids(max_id)?;
        }
        let mut imp = Importer {
            reg: self,
            check_store: dry_run,
            drop_pin_hashes: options.pin_hashes == PinHashes::Drop,
            now,
            overlay: Overlays { gens: Default::default(), keep: if dry_run { None } else { Some(3) } },
            ids: Ids { dry_next, block: (0, 0) },
            institutions: HashMap::new(),
        };
        let mut report = ImportReport::default();
        let groups = groups_of(lines);
        if dry_run {
            for group in groups {
                let planned = imp.plan_group(group);
                report.lines += planned.lines.len();
                report.rejected.extend(planned.unreadable);
                for (n, _, verdict) in planned.lines {
                    match verdict {
                        Ok(outcome) => tally(&mut report, &[outcome]),
                        Err(why) => report.rejected.push((n, why)),
                    }
                }
            }
        } else {
            // Two threads: this one commits group k while the planner reads and checks group
            // k+1 (the planner's overlays show it what k and k+1 will write).
            std::thread::scope(|scope| -> Result<(), StoreError> {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Planned>(1);
                scope.spawn(move || {
                    for group in groups {
                        imp.overlay.next_group();
                        if tx.send(imp.plan_group(group)).is_err() {
                            return; // the committer stopped
                        }
                    }
                });
                let mut sequential: Option<Importer<'_>> = None;
                for (k, planned) in rx.into_iter().enumerate() {
                    report.lines += planned.lines.len();
                    report.rejected.extend(planned.unreadable.iter().cloned());
                    if sequential.is_none() {
                        match self.store.apply(&planned.writes) {
                            Ok(()) => {
                                for (n, _, verdict) in &planned.lines {
                                    match verdict {
                                        Ok(outcome) => tally(&mut report, &[*outcome]),
                                        Err(why) => report.rejected.push((*n, why.clone())),
                                    }
                                }
                                if (k + 1) % GROUPS_PER_FLUSH == 0 {
                                    self.store.flush()?;
                                }
                                continue;
                            }
                            Err(StoreError::Io(e)) => return Err(StoreError::Io(e)),
                            Err(_) => {
                                // Refused at commit (another writer took a value the planner
                                // saw free). The planner's later plans assumed this group would
                                // land, so from here on each line is planned and committed alone.
                                sequential = Some(Importer {
                                    reg: self,
                                    check_store: true,
                                    drop_pin_hashes: options.pin_hashes == PinHashes::Drop,
                                    now,
                                    overlay: Overlays::default(),
                                    ids: Ids { dry_next: None, block: (0, 0) },
                                    institutions: HashMap::new(),
                                });
                            }
                        }
                    }
                    if let Some(imp) = sequential.as_mut() {
                        for (n, text, _) in &planned.lines {
                            imp.overlay.clear();
                            let result = parse_line(text).and_then(|l| imp.plan(l)).and_then(|(outcome, w)| {
                                self.store.apply(&w).map_err(|e| e.to_string())?;
                                Ok(outcome)
                            });
                            match result {
                                Ok(outcome) => tally(&mut report, &[outcome]),
                                Err(why) => report.rejected.push((*n, why)),
                            }
                        }
                    }
                }
                Ok(())
            })?;
            self.store.flush()?;
        }
        report.rejected.sort_by_key(|(n, _)| *n);
        Ok(report)
    }

    /// Writes the whole register as JSON Lines: the register line (with the PIN key's
    /// fingerprint), institutions, accounts, patrons, items, loans, fees, holds (each kind after
    /// what it refers to). Returns the number of lines.
    pub fn export(&self, out: &mut impl io::Write) -> Result<usize, StoreError> {
        let mut n = 0;
        let mut put = |line: Line| -> Result<(), StoreError> {
            let text =
                serde_json::to_string(&line).map_err(|e| StoreError::Refused(format!("cannot write JSON: {e}")))?;
            writeln!(out, "{text}").map_err(|e| StoreError::Refused(format!("cannot write the export: {e}")))?;
            n += 1;
            Ok(())
        };
        put(Line::Register(RegisterLine {
            format: 1,
            pin_key: self.key.fingerprint(),
            sip2d: Some(env!("CARGO_PKG_VERSION").to_string()),
        }))?;
        for i in self.store.institutions()? {
            put(Line::Institution(i))?;
        }
        for a in self.store.accounts()? {
            put(Line::Account(AccountLine {
                login: a.login,
                password: None,
                password_hash: Some(a.password_hash),
                institution: a.institution,
                location: a.location,
                profile: a.profile,
            }))?;
        }
        for p in self.store.patrons_iter() {
            put(Line::Patron(Box::new(PatronLine::of(&p?))))?;
        }
        for i in self.store.items() {
            put(Line::Item(i?))?;
        }
        for l in self.store.loans() {
            put(Line::Loan(l?))?;
        }
        for f in self.store.fees() {
            put(Line::Fee(f?))?;
        }
        for h in self.store.holds() {
            put(Line::Hold(h?))?;
        }
        out.flush().map_err(|e| StoreError::Refused(format!("cannot write the export: {e}")))?;
        Ok(n)
    }
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

fn tally(report: &mut ImportReport, outcomes: &[Outcome]) {
    for o in outcomes {
        match o {
            Outcome::Created => report.created += 1,
            Outcome::Updated => report.updated += 1,
            Outcome::Unchanged => report.unchanged += 1,
        }
    }
}
