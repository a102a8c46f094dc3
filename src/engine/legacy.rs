//! Records as earlier store formats laid them out, read and brought up to the current layout:
//! bincode is not self-describing, so a record that gains a field needs its old shape kept.

use jiff::Timestamp;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::domain::*;

/// A patron as store format 2 (and log records written before format 3) held it: without
/// contacts, statistics, attachments and picture.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PatronV2 {
    id: u64,
    institution: String,
    primary_id: String,
    first_name: String,
    last_name: String,
    middle_name: Option<String>,
    title: Option<String>,
    birth_date: Option<Date>,
    email: Option<String>,
    phone: Option<String>,
    address: Option<String>,
    postal_code: Option<String>,
    language: Option<String>,
    user_group: Option<String>,
    record_type: RecordType,
    account_type: AccountType,
    expiry: Option<Date>,
    purge: Option<Date>,
    active: bool,
    status_changed: Timestamp,
    created: Created,
    terms_accepted: Option<Date>,
    guardian: Option<Guardian>,
    identifiers: Vec<Identifier>,
    blocks: Vec<Block>,
    notes: Vec<Note>,
    proxy_for: Vec<u64>,
    pin: Option<PinHash>,
    failed_pins: u8,
    locked: bool,
    deleted: Option<Timestamp>,
    transfer: Option<Transfer>,
}

impl PatronV2 {
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl From<PatronV2> for Patron {
    fn from(p: PatronV2) -> Patron {
        Patron {
            id: p.id,
            institution: p.institution,
            primary_id: p.primary_id,
            first_name: p.first_name,
            last_name: p.last_name,
            middle_name: p.middle_name,
            title: p.title,
            birth_date: p.birth_date,
            email: p.email,
            phone: p.phone,
            address: p.address,
            postal_code: p.postal_code,
            language: p.language,
            user_group: p.user_group,
            record_type: p.record_type,
            account_type: p.account_type,
            expiry: p.expiry,
            purge: p.purge,
            active: p.active,
            status_changed: p.status_changed,
            created: p.created,
            terms_accepted: p.terms_accepted,
            guardian: p.guardian,
            identifiers: p.identifiers,
            blocks: p.blocks,
            notes: p.notes,
            proxy_for: p.proxy_for,
            pin: p.pin,
            failed_pins: p.failed_pins,
            locked: p.locked,
            deleted: p.deleted,
            transfer: p.transfer,
            contacts: vec![],
            statistics: vec![],
            attachments: vec![],
            picture: None,
        }
    }
}

/// A current patron in format 2's layout, for tests that write what an older sip2d wrote;
/// what format 2 cannot hold is dropped.
#[cfg(test)]
impl From<&Patron> for PatronV2 {
    fn from(p: &Patron) -> PatronV2 {
        let p = p.clone();
        PatronV2 {
            id: p.id,
            institution: p.institution,
            primary_id: p.primary_id,
            first_name: p.first_name,
            last_name: p.last_name,
            middle_name: p.middle_name,
            title: p.title,
            birth_date: p.birth_date,
            email: p.email,
            phone: p.phone,
            address: p.address,
            postal_code: p.postal_code,
            language: p.language,
            user_group: p.user_group,
            record_type: p.record_type,
            account_type: p.account_type,
            expiry: p.expiry,
            purge: p.purge,
            active: p.active,
            status_changed: p.status_changed,
            created: p.created,
            terms_accepted: p.terms_accepted,
            guardian: p.guardian,
            identifiers: p.identifiers,
            blocks: p.blocks,
            notes: p.notes,
            proxy_for: p.proxy_for,
            pin: p.pin,
            failed_pins: p.failed_pins,
            locked: p.locked,
            deleted: p.deleted,
            transfer: p.transfer,
        }
    }
}
