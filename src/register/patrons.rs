//! Patron upkeep beyond registration: edits, identifiers, notes, proxies, status, search and
//! listing, and the purge of deleted or expired records.

use jiff::Timestamp;
use jiff::civil::Date;

use super::{Register, audit, check_patron, diff};
use crate::domain::validate;
use crate::domain::*;
use crate::store::{StoreError, Write};

/// Which patrons `list` shows.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub institution: Option<String>,
    pub group: Option<String>,
    /// Only deleted ones (the bank of deleted users); otherwise deleted ones are left out.
    pub deleted: bool,
    pub inactive_only: bool,
    /// Only those whose card has expired by this date.
    pub expired_by: Option<Date>,
    pub limit: Option<usize>,
}

/// What `purge` removed, or would remove, and what it left and why.
#[derive(Clone, Debug, Default)]
pub struct PurgeReport {
    pub removed: Vec<(u64, String)>,
    pub kept: Vec<(u64, String)>,
    pub audit_entries_pruned: usize,
}

fn refused(msg: String) -> StoreError {
    StoreError::Refused(msg)
}

fn opt_text(field: &'static str, value: &str) -> Result<Option<String>, StoreError> {
    if value.is_empty() {
        return Ok(None);
    }
    validate::plain(field, value)?;
    Ok(Some(value.to_string()))
}

fn opt_date(field: &str, value: &str) -> Result<Option<Date>, StoreError> {
    if value.is_empty() {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| refused(format!("{field} '{value}' is not a date such as 2027-06-30")))
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

/// Sets one field from staff text.
fn set_field(p: &mut Patron, field: &str, value: &str) -> Result<(), StoreError> {
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
                _ => return Err(refused(format!("record type '{value}' is not staff, public or contact"))),
            }
        }
        "account-type" => {
            p.account_type = match value.split_once(':') {
                None if value == "internal" => AccountType::Internal,
                Some(("external", source)) if !source.is_empty() => {
                    AccountType::External { source: source.to_string() }
                }
                _ => {
                    return Err(refused(format!(
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
                _ => return Err(refused("guardian is 'NAME;CONTACT'".into())),
            }
        }
        _ => return Err(refused(format!("'{field}' cannot be edited; editable fields: {}", EDITABLE.join(", ")))),
    }
    Ok(())
}

impl Register {
    /// Changes fields of a patron (`FIELD=VALUE` pairs), with every registration check, in one
    /// atomic change with its audit entry.
    pub fn edit(&self, id: u64, sets: &[(String, String)], now: Timestamp) -> Result<Patron, StoreError> {
        if sets.is_empty() {
            return Err(refused(format!("nothing to change; give --set FIELD=VALUE ({})", EDITABLE.join(", "))));
        }
        let inst = self.store.institution(&self.store.patron(id)?.institution)?;
        let today = inst.today(now);
        self.store.update_patron(id, |old| {
            let mut p = old.clone();
            for (field, value) in sets {
                set_field(&mut p, field, value)?;
            }
            check_patron(&inst, &p, today)?;
            let changes = diff(&old, &p);
            if changes.is_empty() {
                return Err(refused(format!("patron {id} already has those values")));
            }
            Ok((p, audit(id, now, &self.actor, "edit", changes)))
        })
    }

    /// Adds an identifier (a barcode, student id, national id, ...) that kiosks may present.
    pub fn add_identifier(
        &self,
        id: u64,
        kind: &str,
        value: &str,
        note: Option<&str>,
        now: Timestamp,
    ) -> Result<Patron, StoreError> {
        validate::required("identifier type", kind)?;
        let value = if kind == "national-id" {
            let inst = self.store.institution(&self.store.patron(id)?.institution)?;
            validate::swedish_national_id(value, inst.today(now))?
        } else {
            validate::required("identifier", value)?;
            value.trim().to_string()
        };
        if let Some(n) = note {
            validate::plain("note", n)?;
        }
        self.store.update_patron(id, |mut p| {
            p.identifiers.push(Identifier {
                kind: kind.into(),
                value: value.clone(),
                note: note.map(Into::into),
                active: true,
                internal: true,
            });
            let change = vec![(format!("identifier {kind}"), String::new(), value.clone())];
            Ok((p, audit(id, now, &self.actor, "identifier-add", change)))
        })
    }

    /// Turns an identifier off (kept for the record) or on again.
    pub fn set_identifier_active(
        &self,
        id: u64,
        value: &str,
        active: bool,
        now: Timestamp,
    ) -> Result<Patron, StoreError> {
        self.store.update_patron(id, |mut p| {
            let Some(i) = p.identifiers.iter_mut().find(|i| i.value == value) else {
                return Err(refused(format!("patron {id} has no identifier '{value}'")));
            };
            if i.active == active {
                return Err(refused(format!(
                    "identifier '{value}' is already {}",
                    if active { "active" } else { "inactive" }
                )));
            }
            i.active = active;
            let change = vec![(format!("identifier {value}"), (!active).to_string(), active.to_string())];
            Ok((p, audit(id, now, &self.actor, "identifier-status", change)))
        })
    }

    /// Adds a note; `public` notes are shown to the patron at the kiosk.
    pub fn add_note(
        &self,
        id: u64,
        kind: &str,
        text: &str,
        public: bool,
        now: Timestamp,
    ) -> Result<Patron, StoreError> {
        validate::required("note type", kind)?;
        validate::required("note", text)?;
        self.store.update_patron(id, |mut p| {
            let note_id = p.notes.iter().map(|n| n.id).max().unwrap_or(0) + 1;
            p.notes.push(Note {
                id: note_id,
                kind: kind.into(),
                text: text.into(),
                public,
                by: self.actor.clone(),
                at: now,
            });
            let change = vec![(format!("note {note_id}"), String::new(), text.into())];
            Ok((p, audit(id, now, &self.actor, "note-add", change)))
        })
    }

    /// Removes a note by its number on the patron.
    pub fn remove_note(&self, id: u64, note: u32, now: Timestamp) -> Result<Patron, StoreError> {
        self.store.update_patron(id, |mut p| {
            let Some(pos) = p.notes.iter().position(|n| n.id == note) else {
                return Err(refused(format!("patron {id} has no note {note}")));
            };
            let old = p.notes.remove(pos);
            Ok((p, audit(id, now, &self.actor, "note-remove", vec![(format!("note {note}"), old.text, String::new())])))
        })
    }

    /// Lets patron `proxy` act for patron `for_whom` (or stops it).
    pub fn set_proxy(&self, proxy: u64, for_whom: u64, allow: bool, now: Timestamp) -> Result<Patron, StoreError> {
        if proxy == for_whom {
            return Err(refused("a patron cannot be their own proxy".into()));
        }
        let other = self.store.patron(for_whom)?;
        self.store.update_patron(proxy, |mut p| {
            let has = p.proxy_for.contains(&for_whom);
            match (allow, has) {
                (true, true) => return Err(refused(format!("patron {proxy} already acts for {for_whom}"))),
                (false, false) => return Err(refused(format!("patron {proxy} does not act for {for_whom}"))),
                (true, false) => p.proxy_for.push(for_whom),
                (false, true) => p.proxy_for.retain(|x| *x != for_whom),
            }
            let who = format!("#{} {}", other.id, other.display_name());
            let (action, change) = if allow {
                ("proxy-add", ("proxy for".into(), String::new(), who))
            } else {
                ("proxy-remove", ("proxy for".into(), who, String::new()))
            };
            Ok((p, audit(proxy, now, &self.actor, action, vec![change])))
        })
    }

    /// Activates or deactivates a patron, recording when the status changed.
    pub fn set_active(&self, id: u64, active: bool, now: Timestamp) -> Result<Patron, StoreError> {
        self.store.update_patron(id, |mut p| {
            if p.active == active {
                return Err(refused(format!("patron {id} is already {}", if active { "active" } else { "inactive" })));
            }
            p.active = active;
            p.status_changed = now;
            let change = vec![("active".into(), (!active).to_string(), active.to_string())];
            Ok((p, audit(id, now, &self.actor, if active { "activate" } else { "deactivate" }, change)))
        })
    }

    /// Patrons matching `query` at the institution: an exact primary id, identifier, e-mail or
    /// national id first; otherwise names starting with it ("last" or "last, first").
    pub fn search(&self, institution: &str, query: &str, now: Timestamp) -> Result<Vec<Patron>, StoreError> {
        let query = query.trim();
        if let Some(p) = self.store.patron_by_identifier(institution, query)? {
            return Ok(vec![p]);
        }
        let today = self.store.institution(institution)?.today(now);
        if let Ok(n) = validate::swedish_national_id(query, today) {
            if let Some(p) = self.store.patron_by_identifier(institution, &n)? {
                return Ok(vec![p]);
            }
        }
        if query.contains('@') {
            return Ok(self.store.patron_by_email(institution, query)?.into_iter().collect());
        }
        let prefix = match query.split_once(',') {
            Some((last, first)) => format!("{}\0{}", last.trim(), first.trim()),
            None => query.to_string(),
        };
        self.store.patrons_by_name(institution, &prefix)
    }

    /// Patrons by filter, in id order.
    pub fn list(&self, f: &ListFilter) -> Result<Vec<Patron>, StoreError> {
        let mut out = Vec::new();
        for p in self.store.patrons_iter() {
            let p = p?;
            let keep = f.institution.as_ref().is_none_or(|i| *i == p.institution)
                && f.group.as_ref().is_none_or(|g| Some(g) == p.user_group.as_ref())
                && f.deleted == p.deleted.is_some()
                && (!f.inactive_only || !p.active)
                && f.expired_by.is_none_or(|d| p.expiry.is_some_and(|e| e < d));
            if keep {
                out.push(p);
                if f.limit.is_some_and(|l| out.len() >= l) {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Removes for good the deleted patrons and those past their purge date (unless money is
    /// owed or items are out), with their fees, holds and history; prunes audit entries older
    /// than each institution's retention period. `dry_run` only reports.
    pub fn purge(&self, now: Timestamp, dry_run: bool) -> Result<PurgeReport, StoreError> {
        let mut report = PurgeReport::default();
        let institutions = self.store.institutions()?;
        // A purge date has passed when it has at the patron's institution.
        let today: std::collections::HashMap<&str, Date> =
            institutions.iter().map(|i| (i.code.as_str(), i.today(now))).collect();
        let passed = |p: &Patron, d: Date| today.get(p.institution.as_str()).is_none_or(|t| d <= *t);
        let candidates: Vec<Patron> = self
            .store
            .patrons_iter()
            .filter(|p| p.as_ref().map_or(true, |p| p.deleted.is_some() || p.purge.is_some_and(|d| passed(p, d))))
            .collect::<Result<_, _>>()?;
        for p in candidates {
            let balance = self.balance(p.id)?;
            let loans = self.store.loan_count(p.id);
            let why = if p.deleted.is_some() { "deleted" } else { "past its purge date" };
            if balance.0 > 0 || loans > 0 {
                report.kept.push((p.id, format!("{why}, but owes {balance} and has {loans} loans")));
                continue;
            }
            report.removed.push((p.id, format!("#{} {} ({why})", p.id, p.display_name())));
            if dry_run {
                continue;
            }
            let mut writes = vec![Write::RemovePatron(p.id)];
            writes.extend(self.store.fees_of(p.id)?.into_iter().map(|f| Write::RemoveFee(f.id)));
            writes.extend(self.store.holds_of(p.id)?.into_iter().map(|h| Write::RemoveHold(h.id)));
            writes.extend(self.store.history_keys(p.id)?.into_iter().map(|(k, _)| Write::RemoveAudit(k)));
            self.store.apply(&writes)?;
        }
        for inst in institutions {
            let Some(days) = inst.audit_retention_days else { continue };
            let cutoff = now.checked_sub(jiff::SignedDuration::from_hours(24 * i64::from(days))).unwrap_or(now);
            let mut old = Vec::new();
            for p in self.store.patrons_iter() {
                let p = p?;
                if p.institution != inst.code {
                    continue;
                }
                old.extend(self.store.history_keys(p.id)?.into_iter().filter(|(_, e)| e.at < cutoff).map(|(k, _)| k));
            }
            report.audit_entries_pruned += old.len();
            if !dry_run && !old.is_empty() {
                self.store.apply(&old.into_iter().map(Write::RemoveAudit).collect::<Vec<_>>())?;
            }
        }
        if !dry_run {
            self.store.flush()?;
        }
        Ok(report)
    }
}
