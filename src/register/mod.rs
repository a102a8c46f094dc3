//! Staff operations on the register: validate, decide, commit atomically, record the audit.
//!
//! The `sip2d` register commands call these, and so will the server's admin API, so both get
//! the same checks and the same history. Time is an argument; nothing here reads the clock.

use std::path::Path;

use jiff::Timestamp;
use jiff::civil::Date;

use crate::domain::rules::{self, PinCheck};
use crate::domain::secret::{self, PinKey};
use crate::domain::validate::{self, Invalid};
use crate::domain::*;
use crate::store::{Store, StoreConfig, StoreError, Write};

/// The register: the store, the PIN key, and who is acting.
pub struct Register {
    pub store: Store,
    key: PinKey,
    actor: String,
}

impl Register {
    /// The same register (one store, one PIN key) acting for someone else: the name its
    /// changes record in the audit history. The server gives each admin request one.
    pub fn acting_as(&self, actor: &str) -> Register {
        Register { store: self.store.clone(), key: self.key.clone(), actor: actor.to_string() }
    }
}

/// What staff enter to register a patron.
#[derive(Clone, Debug, Default)]
pub struct NewPatron {
    pub institution: String,
    pub primary_id: String,
    pub first_name: String,
    pub last_name: String,
    pub middle_name: Option<String>,
    pub title: Option<String>,
    pub birth_date: Option<Date>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub postal_code: Option<String>,
    pub language: Option<String>,
    pub user_group: Option<String>,
    pub record_type: RecordType,
    pub account_type: AccountType,
    pub expiry: Option<Date>,
    pub purge: Option<Date>,
    pub barcodes: Vec<String>,
    /// A Swedish personnummer or samordningsnummer, stored as a `national-id` identifier.
    pub national_id: Option<String>,
    pub guardian: Option<Guardian>,
    pub terms_accepted: Option<Date>,
    /// A PIN chosen (or generated) at the desk, set with the registration.
    pub pin: Option<NewPin>,
}

/// A PIN as staff enter it, held only until it is hashed; `Debug` never shows it.
#[derive(Clone)]
pub struct NewPin(pub String);

impl std::fmt::Debug for NewPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewPin(***)")
    }
}

/// A registration that did not happen only because it looks like someone already registered.
#[derive(Debug)]
pub enum Added {
    Patron(Box<Patron>),
    /// Same first name, last name and birth date as these patrons: pass `force` to add anyway.
    PossibleDuplicate(Vec<u64>),
}

fn audit(patron: u64, now: Timestamp, by: &str, action: &str, changes: Vec<(String, String, String)>) -> AuditEntry {
    AuditEntry { patron, at: now, by: by.to_string(), action: action.to_string(), changes }
}

fn opt(field: &'static str, v: &Option<String>) -> Result<(), Invalid> {
    v.as_deref().map_or(Ok(()), |s| validate::plain(field, s))
}

/// Adds a payment to a fee: what is paid, `Paid` once nothing is owed, and the history line.
fn record_payment(fee: &mut Fee, amount: Money, by: String, at: Timestamp, transaction: Option<String>) {
    fee.paid = Money(fee.paid.0 + amount.0);
    if fee.outstanding() == Money::ZERO {
        fee.status = FeeStatus::Paid;
    }
    fee.history.push(FeeEvent::Paid { amount, by, at, transaction });
}

/// Every check a stored patron must pass, whoever wrote it (staff, an edit, an import):
/// required fields, characters, the institution's patterns, national ids, minors' guardians.
pub fn check_patron(inst: &Institution, p: &Patron, today: Date) -> Result<(), StoreError> {
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
                return Err(StoreError::Refused(format!(
                    "national id '{}' must be stored in its 12-digit form {canonical}",
                    i.value
                )));
            }
        }
    }
    validate::formats(&inst.formats, &p.primary_id, p.email.as_deref(), p.phone.as_deref(), p.postal_code.as_deref())?;
    let minor = p.birth_date.is_some_and(|b| validate::is_minor(b, today));
    if minor && (p.guardian.is_none() || p.terms_accepted.is_none()) {
        return Err(Invalid::MinorWithoutGuardian.into());
    }
    Ok(())
}

/// Every check a stored institution must pass.
pub fn check_institution(i: &Institution) -> Result<(), StoreError> {
    let code = &i.code;
    validate::required("institution code", code)?;
    validate::required("name", &i.name)?;
    if code.len() > 32 || code.contains(char::is_whitespace) {
        return Err(StoreError::Refused(format!("institution code '{code}' must be 1-32 characters without spaces")));
    }
    let currency = &i.currency;
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(StoreError::Refused(format!("currency '{currency}' is not an ISO 4217 code such as SEK or USD")));
    }
    let timezone = &i.timezone;
    jiff::tz::TimeZone::get(timezone).map_err(|_| {
        StoreError::Refused(format!("time zone '{timezone}' is not an IANA zone such as Europe/Stockholm"))
    })?;
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

/// The store's directory inside a data directory; its presence is what makes a register.
pub const STORE_DIR: &str = crate::store::DIR;
/// The PIN key's file in a data directory.
pub const PIN_KEY: &str = "pin.key";

impl Register {
    /// Opens the register in `dir`, creating it if there is none: the store, and the PIN key
    /// beside it (readable by its owner only). The command line creates registers only with
    /// `sip2d init` and opens them with [`Register::open_existing`].
    pub fn open(dir: &Path, actor: &str) -> Result<Register, StoreError> {
        Register::open_with(dir, actor, &StoreConfig::default())
    }

    /// Creates an empty register in `dir` (which may exist, but must hold no register): the
    /// directory owner-only, the store, a new PIN key.
    pub fn init(dir: &Path, actor: &str) -> Result<Register, StoreError> {
        if dir.join(STORE_DIR).exists() {
            return Err(StoreError::Refused(format!("a register exists already at {}", dir.display())));
        }
        if dir.join(PIN_KEY).exists() {
            return Err(StoreError::Refused(format!(
                "{} holds a PIN key but no store; move it away or restore the store beside it",
                dir.display()
            )));
        }
        let open_err = |e: std::io::Error| StoreError::Open { path: dir.to_path_buf(), source: e.into() };
        std::fs::create_dir_all(dir).map_err(open_err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(open_err)?;
        }
        Register::open(dir, actor)
    }

    /// Opens the register that is in `dir`; refuses, without creating anything, when there is
    /// none or its PIN key is missing (a new key would make every stored PIN wrong).
    pub fn open_existing(dir: &Path, actor: &str, settings: &StoreConfig) -> Result<Register, StoreError> {
        if !dir.join(STORE_DIR).is_dir() {
            return Err(StoreError::NotFound(format!("no register at {}", dir.display())));
        }
        if !dir.join(PIN_KEY).exists() {
            return Err(StoreError::Refused(format!(
                "the PIN key {} is missing, and every stored PIN depends on it; put the register's key back with `sip2d key import FILE`",
                dir.join(PIN_KEY).display()
            )));
        }
        Register::open_with(dir, actor, settings)
    }

    /// Opens the register with these store settings.
    pub fn open_with(dir: &Path, actor: &str, settings: &StoreConfig) -> Result<Register, StoreError> {
        let store = Store::open_with(dir, settings)?;
        let key = PinKey::load_or_create(&dir.join(PIN_KEY))
            .map_err(|e| StoreError::Refused(format!("cannot read or create the PIN key in {}: {e}", dir.display())))?;
        Ok(Register { store, key, actor: actor.to_string() })
    }

    /// Who the audit history will name.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// The fingerprint of this register's PIN key (exports carry it; it does not reveal it).
    pub fn pin_key_fingerprint(&self) -> String {
        self.key.fingerprint()
    }

    /// Makes `key` the PIN key of the register in `dir`, when no stored PIN depends on
    /// another: the register has that key already (`Ok(false)`), has no key (a lost one being
    /// put back), or holds no PIN. The file is replaced atomically, owner-only. Refused while
    /// another process (a server) has the store open. A `dry_run` checks and writes nothing.
    pub fn install_pin_key(dir: &Path, key: &PinKey, dry_run: bool) -> Result<bool, StoreError> {
        let path = dir.join(PIN_KEY);
        let current = match PinKey::load(&path) {
            Ok(k) => Some(k),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(StoreError::Refused(format!("cannot read the PIN key {}: {e}", path.display()))),
        };
        if current.as_ref().is_some_and(|c| c.fingerprint() == key.fingerprint()) {
            return Ok(false);
        }
        if !dir.join(STORE_DIR).is_dir() {
            return Err(StoreError::NotFound(format!("no register at {}", dir.display())));
        }
        let store = Store::open(dir)?;
        if let Some(current) = &current {
            for p in store.patrons_iter() {
                if p?.pin.is_some() {
                    return Err(StoreError::Refused(format!(
                        "this register holds PINs made with its own PIN key {}; another key is accepted only into a register without PINs, or one that has it already",
                        current.fingerprint()
                    )));
                }
            }
        }
        drop(store);
        if !dry_run {
            key.replace(&path)
                .map_err(|e| StoreError::Refused(format!("cannot write the PIN key {}: {e}", path.display())))?;
        }
        Ok(true)
    }

    // -- institutions -----------------------------------------------------------------------

    /// Adds an institution with the standard block types and default loan policy.
    pub fn add_institution(
        &self,
        code: &str,
        name: &str,
        currency: &str,
        timezone: &str,
    ) -> Result<Institution, StoreError> {
        let inst = Institution::new(code, name, currency, timezone);
        check_institution(&inst)?;
        self.store.add_institution(&inst)?;
        Ok(inst)
    }

    /// Changes an institution's settings, with the same checks as when it was added.
    pub fn change_institution(
        &self,
        code: &str,
        change: impl FnOnce(&mut Institution) -> Result<(), StoreError>,
    ) -> Result<Institution, StoreError> {
        let mut inst = self.store.institution(code)?;
        change(&mut inst)?;
        check_institution(&inst)?;
        self.store.put_institution(&inst)?;
        Ok(inst)
    }

    /// What a patron may do now (on this day at their institution) and why not, from the same
    /// rules the kiosk answers with.
    pub fn standing(&self, p: &Patron, now: Timestamp) -> Result<rules::Standing, StoreError> {
        let inst = self.store.institution(&p.institution)?;
        Ok(rules::standing(p, &inst, self.store.loan_count(p.id), self.balance(p.id)?, inst.today(now)))
    }

    // -- patrons ----------------------------------------------------------------------------

    /// Registers a patron after every check: required fields, characters, the institution's
    /// patterns, the national id, minors' guardians, and (unless `force`) likely duplicates.
    pub fn add_patron(&self, new: NewPatron, force: bool, now: Timestamp) -> Result<Added, StoreError> {
        let inst = self.store.institution(&new.institution)?;
        let today = inst.today(now);
        for b in &new.barcodes {
            validate::required("barcode", b)?;
        }
        if let Some(NewPin(pin)) = &new.pin {
            validate::pin(&inst.pin_policy, pin)?;
        }
        let national = new.national_id.as_deref().map(|n| validate::swedish_national_id(n, today)).transpose()?;

        let id = self.store.new_id()?;
        let mut identifiers: Vec<Identifier> = new
            .barcodes
            .iter()
            .map(|b| Identifier { kind: "barcode".into(), value: b.clone(), note: None, active: true, internal: true })
            .collect();
        if let Some(n) = national {
            identifiers.push(Identifier {
                kind: "national-id".into(),
                value: n,
                note: None,
                active: true,
                internal: true,
            });
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
            pin: new.pin.map(|NewPin(pin)| self.key.hash(id, &pin)),
            created: Created { at: now, by: self.actor.clone(), via: "register".into() },
            ..Patron::new(id, &new.institution, &new.primary_id, new.first_name.trim(), new.last_name.trim(), now)
        };
        check_patron(&inst, &patron, today)?;
        if !force {
            let same = self.store.same_person(&patron)?;
            if !same.is_empty() {
                return Ok(Added::PossibleDuplicate(same));
            }
        }
        // The registration itself is recorded in the record (`created`), first in its history;
        // the welcome goes to the outbox in the same transaction.
        let welcome = self.draft(id, NoticeKind::Welcome, "", (&patron.institution, None), now)?.notice(&patron);
        self.store.apply(&[Write::Patron(Box::new(patron.clone())), Write::Notice(Box::new(welcome))])?;
        self.store.flush()?;
        Ok(Added::Patron(Box::new(patron)))
    }

    /// A patron's history, oldest first: how the record was created, then every change.
    pub fn history(&self, id: u64) -> Result<Vec<AuditEntry>, StoreError> {
        let p = self.store.patron(id)?;
        let c = p.created;
        let mut out = vec![AuditEntry { patron: id, at: c.at, by: c.by, action: c.via, changes: vec![] }];
        out.extend(self.store.history(id)?);
        Ok(out)
    }

    /// Finds a patron by register id (`#123` or `123`), or by primary id, barcode or other
    /// identifier, or e-mail, at the institution.
    pub fn find(&self, institution: &str, key: &str) -> Result<Patron, StoreError> {
        if let Some(rest) = key.strip_prefix('#') {
            let id =
                rest.parse().map_err(|_| StoreError::Refused(format!("'{key}' is not a register id such as #12")))?;
            return self.store.patron(id);
        }
        if let Some(p) = self.store.patron_by_identifier(institution, key)? {
            return Ok(p);
        }
        if key.contains('@') {
            if let Some(p) = self.store.patron_by_email(institution, key)? {
                return Ok(p);
            }
        }
        if let Ok(id) = key.parse::<u64>() {
            if let Ok(p) = self.store.patron(id) {
                return Ok(p);
            }
        }
        Err(StoreError::NoPatron(format!("'{key}' at {institution}")))
    }

    /// Sets a patron's PIN (checked against the institution's policy) and clears any lockout.
    pub fn set_pin(&self, id: u64, pin: &str, now: Timestamp) -> Result<Patron, StoreError> {
        let patron = self.store.patron(id)?;
        let inst = self.store.institution(&patron.institution)?;
        validate::pin(&inst.pin_policy, pin)?;
        let hash = self.key.hash(id, pin);
        self.store.update_patron(id, |mut p| {
            p.pin = Some(hash.clone());
            p.failed_pins = 0;
            p.locked = false;
            Ok((p, audit(id, now, &self.actor, "pin", vec![("pin".into(), String::new(), "changed".into())])))
        })
    }

    /// Generates a four-digit PIN, sets it, and returns it to show once.
    pub fn generate_pin(&self, id: u64, now: Timestamp) -> Result<String, StoreError> {
        let pin = secret::generate_pin().map_err(|e| StoreError::Refused(format!("no randomness available: {e}")))?;
        self.set_pin(id, &pin, now)?;
        Ok(pin)
    }

    /// Checks a PIN the way a kiosk does: counts wrong ones and locks after five in a row.
    pub fn check_pin(&self, id: u64, pin: &str, now: Timestamp) -> Result<PinCheck, StoreError> {
        let attempt = |p: &Patron| {
            let correct = p.pin.as_ref().is_some_and(|h| self.key.verify(id, pin, h));
            rules::pin_attempt(p.failed_pins, p.locked, correct)
        };
        let before = self.store.patron(id)?;
        let (outcome, failed, locked) = attempt(&before);
        if (failed, locked) == (before.failed_pins, before.locked) {
            // Nothing to count or reset (a right PIN, or any PIN on a locked card): no write.
            return Ok(outcome);
        }
        // Counted again inside the transaction, from the record it updates, so that attempts
        // arriving together all count.
        let after = self.store.update_patron(id, |mut p| {
            let (_, failed, locked) = attempt(&p);
            let changes = vec![("failed PINs".into(), p.failed_pins.to_string(), failed.to_string())];
            let action = if locked && !p.locked { "locked" } else { "pin-attempt" };
            p.failed_pins = failed;
            p.locked = locked;
            Ok((p, audit(id, now, "kiosk", action, changes)))
        })?;
        Ok(rules::pin_check_of(after.failed_pins, after.locked))
    }

    /// Lifts a PIN lockout.
    pub fn unlock(&self, id: u64, now: Timestamp) -> Result<Patron, StoreError> {
        self.store.update_patron(id, |mut p| {
            if !p.locked && p.failed_pins == 0 {
                return Err(StoreError::Refused(format!("patron {id} is not locked")));
            }
            let changes = vec![("locked".into(), p.locked.to_string(), "false".into())];
            p.locked = false;
            p.failed_pins = 0;
            Ok((p, audit(id, now, &self.actor, "unlock", changes)))
        })
    }

    /// Places a block of a type the institution knows.
    pub fn block(&self, id: u64, kind: &str, note: Option<&str>, now: Timestamp) -> Result<Patron, StoreError> {
        let patron = self.store.patron(id)?;
        let inst = self.store.institution(&patron.institution)?;
        if !inst.block_types.iter().any(|t| t.code == kind) {
            let known: Vec<&str> = inst.block_types.iter().map(|t| t.code.as_str()).collect();
            return Err(StoreError::Refused(format!("unknown block type '{kind}'; known: {}", known.join(", "))));
        }
        if let Some(n) = note {
            validate::plain("note", n)?;
        }
        self.store.update_patron(id, |mut p| {
            let block_id = p.blocks.iter().map(|b| b.id).max().unwrap_or(0) + 1;
            p.blocks.push(Block {
                id: block_id,
                kind: kind.into(),
                note: note.map(Into::into),
                active: true,
                by: self.actor.clone(),
                at: now,
            });
            Ok((p, audit(id, now, &self.actor, "block", vec![("block".into(), String::new(), kind.into())])))
        })
    }

    /// Lifts the patron's active blocks of `kind` (or all of them when `kind` is `None`).
    pub fn unblock(&self, id: u64, kind: Option<&str>, now: Timestamp) -> Result<Patron, StoreError> {
        self.store.update_patron(id, |mut p| {
            let mut lifted = Vec::new();
            for b in p.blocks.iter_mut().filter(|b| b.active && kind.is_none_or(|k| k == b.kind)) {
                b.active = false;
                lifted.push(b.kind.clone());
            }
            if lifted.is_empty() {
                return Err(StoreError::Refused(format!(
                    "patron {id} has no active block{}",
                    kind.map(|k| format!(" of type '{k}'")).unwrap_or_default()
                )));
            }
            Ok((p, audit(id, now, &self.actor, "unblock", vec![("block".into(), lifted.join(","), String::new())])))
        })
    }

    /// The patron's balance: active fees less payments, disputed ones left out.
    pub fn balance(&self, id: u64) -> Result<Money, StoreError> {
        Ok(rules::balance(&self.store.fees_of(id)?))
    }

    // -- fees -------------------------------------------------------------------------------

    /// Charges a fee, or (negative amount) records a credit, which needs a comment.
    pub fn add_fee(
        &self,
        patron: u64,
        kind: FeeKind,
        amount: Money,
        item: Option<&str>,
        comment: Option<&str>,
        now: Timestamp,
    ) -> Result<Fee, StoreError> {
        let p = self.store.patron(patron)?;
        let inst = self.store.institution(&p.institution)?;
        if amount.0 == 0 {
            return Err(StoreError::Refused("a fee of 0.00 charges nothing".into()));
        }
        if amount.0 < 0 && comment.is_none_or(|c| c.trim().is_empty()) {
            return Err(StoreError::Refused("a credit needs a comment saying why".into()));
        }
        for (field, v) in [("item", item), ("comment", comment)] {
            v.map_or(Ok(()), |v| validate::plain(field, v))?;
        }
        let fee = Fee {
            id: self.store.new_id()?,
            patron,
            kind,
            amount,
            paid: Money::ZERO,
            currency: inst.currency,
            item: item.map(Into::into),
            comment: comment.map(Into::into),
            status: FeeStatus::Active,
            created: now,
            history: vec![FeeEvent::Added { by: self.actor.clone(), at: now }],
        };
        let change = vec![("fee".into(), String::new(), format!("{} {} {}", fee.id, kind.name(), amount))];
        self.store.put_fee(&fee, &audit(patron, now, &self.actor, "fee-add", change))?;
        Ok(fee)
    }

    fn change_fee(
        &self,
        fee_id: u64,
        action: &str,
        now: Timestamp,
        change: impl FnOnce(&mut Fee) -> Result<(), StoreError>,
    ) -> Result<Fee, StoreError> {
        let mut fee = self.store.fee(fee_id)?.ok_or_else(|| StoreError::NotFound(format!("no fee {fee_id}")))?;
        let before = format!("{:?} paid {}", fee.status, fee.paid);
        change(&mut fee)?;
        let after = format!("{:?} paid {}", fee.status, fee.paid);
        let audit = audit(fee.patron, now, &self.actor, action, vec![(format!("fee {fee_id}"), before, after)]);
        self.store.put_fee(&fee, &audit)?;
        Ok(fee)
    }

    /// Records a payment on an active fee; refuses more than is owed.
    pub fn pay_fee(
        &self,
        fee_id: u64,
        amount: Money,
        transaction: Option<&str>,
        now: Timestamp,
    ) -> Result<Fee, StoreError> {
        let by = self.actor.clone();
        self.change_fee(fee_id, "fee-pay", now, |fee| {
            if fee.status != FeeStatus::Active {
                return Err(StoreError::Refused(format!("fee {fee_id} is {:?}, not active", fee.status)));
            }
            if amount.0 <= 0 || amount > fee.outstanding() {
                return Err(StoreError::Refused(format!(
                    "a payment must be more than 0 and at most {} owed",
                    fee.outstanding()
                )));
            }
            record_payment(fee, amount, by, now, transaction.map(Into::into));
            Ok(())
        })
    }

    /// Takes a payment from a patron (a kiosk's 37): on the named fee, or on the oldest active
    /// fees in turn, all in one commit. More than is owed is refused. Returns the fees as
    /// changed and a receipt number.
    pub fn pay(
        &self,
        patron: u64,
        amount: Money,
        fee: Option<u64>,
        transaction: Option<&str>,
        now: Timestamp,
    ) -> Result<(Vec<Fee>, u64), StoreError> {
        if amount.0 <= 0 {
            return Err(StoreError::Refused("a payment must be more than 0.00".into()));
        }
        let mut fees: Vec<Fee> = self
            .store
            .fees_of(patron)?
            .into_iter()
            .filter(|f| f.status == FeeStatus::Active && f.outstanding().0 > 0)
            .collect();
        if let Some(id) = fee {
            fees.retain(|f| f.id == id);
            if fees.is_empty() {
                return Err(StoreError::Refused(format!("fee {id} is not an open fee of this patron")));
            }
        }
        let owed = Money(fees.iter().map(|f| f.outstanding().0).sum());
        if amount > owed {
            return Err(StoreError::Refused(format!("{amount} is more than the {owed} owed")));
        }
        let receipt = self.store.new_id()?;
        let transaction = transaction.map(String::from).or_else(|| Some(format!("receipt {receipt}")));
        let mut left = amount.0;
        let mut writes = Vec::new();
        let mut changed = Vec::new();
        for mut f in fees {
            if left == 0 {
                break;
            }
            let part = left.min(f.outstanding().0);
            left -= part;
            record_payment(&mut f, Money(part), self.actor.clone(), now, transaction.clone());
            writes.push(Write::Audit(audit(
                patron,
                now,
                &self.actor,
                "fee-pay",
                vec![(format!("fee {}", f.id), String::new(), format!("paid {}", Money(part)))],
            )));
            writes.push(Write::Fee(f.clone()));
            changed.push(f);
        }
        self.store.apply(&writes)?;
        self.store.flush()?;
        Ok((changed, receipt))
    }

    /// Waives an active or disputed fee, with a reason. A waived fee cannot be restored.
    pub fn waive_fee(&self, fee_id: u64, reason: &str, now: Timestamp) -> Result<Fee, StoreError> {
        validate::required("reason", reason)?;
        let by = self.actor.clone();
        self.change_fee(fee_id, "fee-waive", now, |fee| {
            if !matches!(fee.status, FeeStatus::Active | FeeStatus::Disputed) {
                return Err(StoreError::Refused(format!(
                    "fee {fee_id} is {:?}; only active or disputed fees can be waived",
                    fee.status
                )));
            }
            fee.status = FeeStatus::Waived;
            fee.history.push(FeeEvent::Waived { reason: reason.into(), by, at: now });
            Ok(())
        })
    }

    /// Marks an active fee disputed: it no longer counts toward the balance that blocks borrowing.
    pub fn dispute_fee(&self, fee_id: u64, now: Timestamp) -> Result<Fee, StoreError> {
        let by = self.actor.clone();
        self.change_fee(fee_id, "fee-dispute", now, |fee| {
            if fee.status != FeeStatus::Active {
                return Err(StoreError::Refused(format!(
                    "fee {fee_id} is {:?}; only an active fee can be disputed",
                    fee.status
                )));
            }
            fee.status = FeeStatus::Disputed;
            fee.history.push(FeeEvent::Disputed { by, at: now });
            Ok(())
        })
    }

    /// Returns a disputed fee to active. Waived fees stay waived.
    pub fn restore_fee(&self, fee_id: u64, now: Timestamp) -> Result<Fee, StoreError> {
        let by = self.actor.clone();
        self.change_fee(fee_id, "fee-restore", now, |fee| {
            if fee.status != FeeStatus::Disputed {
                return Err(StoreError::Refused(format!(
                    "fee {fee_id} is {:?}; only a disputed fee can be restored",
                    fee.status
                )));
            }
            fee.status = FeeStatus::Active;
            fee.history.push(FeeEvent::Restored { by, at: now });
            Ok(())
        })
    }

    // -- transfers, deletion ----------------------------------------------------------------

    /// Asks for the patron to move to another institution; it waits there for acceptance.
    pub fn request_transfer(&self, id: u64, to: &str, now: Timestamp) -> Result<Patron, StoreError> {
        let from = self.store.patron(id)?.institution;
        let to_name = self.store.institution(to)?.name;
        let draft = self.draft(id, NoticeKind::TransferRequested, &to_name, (&from, None), now)?;
        self.store.update_patron_noting(
            id,
            |mut p| {
                if p.institution == to {
                    return Err(StoreError::Refused(format!("patron {id} is already at {to}")));
                }
                if let Some(t) = &p.transfer {
                    return Err(StoreError::Refused(format!("patron {id} already has a transfer to {} pending", t.to)));
                }
                p.transfer = Some(Transfer { to: to.into(), requested_by: self.actor.clone(), at: now });
                Ok((
                    p,
                    audit(
                        id,
                        now,
                        &self.actor,
                        "transfer-request",
                        vec![("transfer".into(), String::new(), to.into())],
                    ),
                ))
            },
            Some(|p: &Patron| draft.notice(p)),
        )
    }

    /// Patrons waiting to move to `institution`.
    pub fn pending_transfers(&self, institution: &str) -> Result<Vec<Patron>, StoreError> {
        self.store
            .patrons_iter()
            .filter(|p| p.as_ref().map_or(true, |p| p.transfer.as_ref().is_some_and(|t| t.to == institution)))
            .collect()
    }

    /// Accepts (moves the patron) or declines a pending transfer.
    pub fn decide_transfer(&self, id: u64, accept: bool, now: Timestamp) -> Result<Patron, StoreError> {
        let before = self.store.patron(id)?;
        let to = before.transfer.map(|t| t.to).unwrap_or_default();
        let (kind, detail) = if accept {
            (NoticeKind::TransferAccepted, String::new())
        } else {
            let name = self.store.institution(&to).map(|i| i.name).unwrap_or_else(|_| to.clone());
            (NoticeKind::TransferDeclined, name)
        };
        let moving_to = (accept && !to.is_empty()).then_some(to.as_str());
        let draft = self.draft(id, kind, &detail, (&before.institution, moving_to), now)?;
        let change = |mut p: Patron| {
            let Some(t) = p.transfer.take() else {
                return Err(StoreError::Refused(format!("patron {id} has no pending transfer")));
            };
            let from = p.institution.clone();
            let (action, changes) = if accept {
                p.institution = t.to.clone();
                ("transfer-accept", vec![("institution".into(), from, t.to)])
            } else {
                ("transfer-decline", vec![("transfer".into(), t.to, String::new())])
            };
            Ok((p, audit(id, now, &self.actor, action, changes)))
        };
        self.store.update_patron_noting(id, change, Some(|p: &Patron| draft.notice(p)))
    }

    /// Moves a patron to the bank of deleted users; refused while money is owed or items are
    /// on loan, saying which.
    pub fn delete(&self, id: u64, now: Timestamp) -> Result<Patron, StoreError> {
        let balance = self.balance(id)?;
        let loans = self.store.loan_count(id);
        let mut why = Vec::new();
        if balance.0 > 0 {
            why.push(format!("a balance of {balance} is due"));
        }
        if loans > 0 {
            why.push(format!("{loans} item{} on loan", if loans == 1 { " is" } else { "s are" }));
        }
        if !why.is_empty() {
            if balance.0 > 0 {
                // The patron hears what is owed.
                let p = self.store.patron(id)?;
                let currency = self.store.institution(&p.institution)?.currency;
                self.write_notice(&p, NoticeKind::BalanceDue, &format!("{balance} {currency}"), now)?;
                self.store.flush()?;
            }
            return Err(StoreError::Refused(format!("patron {id} cannot be deleted: {}", why.join(" and "))));
        }
        self.store.update_patron(id, |mut p| {
            if p.deleted.is_some() {
                return Err(StoreError::Refused(format!("patron {id} is already deleted")));
            }
            p.deleted = Some(now);
            Ok((p, audit(id, now, &self.actor, "delete", vec![])))
        })
    }

    /// Brings a patron back from the bank of deleted users.
    pub fn restore(&self, id: u64, now: Timestamp) -> Result<Patron, StoreError> {
        self.store.update_patron(id, |mut p| {
            if p.deleted.is_none() {
                return Err(StoreError::Refused(format!("patron {id} is not deleted")));
            }
            p.deleted = None;
            Ok((p, audit(id, now, &self.actor, "restore", vec![])))
        })
    }
}

mod circulation;
pub mod demo;
mod exchange;
pub mod notices;
mod patrons;

pub use circulation::{HoldTarget, Lend, Lent, NewItem};
pub use exchange::{ImportOptions, ImportReport, Line, PinHashes, RegisterLine};
pub use patrons::{ListFilter, PurgeReport};

#[cfg(test)]
mod tests;
