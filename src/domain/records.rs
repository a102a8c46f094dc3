//! The register's records: institutions, patrons, items, loans, holds, fees, accounts.
//!
//! Plain data with serde, no behaviour beyond small accessors; the rules that decide things are
//! pure functions in `rules`, and storage is the store's business.

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

fn yes() -> bool {
    true
}

/// An amount in minor units (cents, öre) of the institution's currency. Negative is a credit.
/// Stored as the integer; in JSON it is the decimal text staff write, such as "27.50".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(pub i64);

impl Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() { s.collect_str(self) } else { s.serialize_i64(self.0) }
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Money, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            Money::parse(&text)
                .ok_or_else(|| serde::de::Error::custom(format!("'{text}' is not an amount such as \"27.50\"")))
        } else {
            i64::deserialize(d).map(Money)
        }
    }
}

impl Money {
    pub const ZERO: Money = Money(0);

    /// Parses `12`, `12.5` or `12.50` (a dot, at most two decimals, an optional minus).
    pub fn parse(s: &str) -> Option<Money> {
        let s = s.trim();
        let (neg, s) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 2 {
            return None;
        }
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let whole: i64 = whole.parse().ok()?;
        let cents: i64 = match frac.len() {
            0 => 0,
            1 => frac.parse::<i64>().ok()? * 10,
            _ => frac.parse().ok()?,
        };
        let v = whole.checked_mul(100)?.checked_add(cents)?;
        Some(Money(if neg { -v } else { v }))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let v = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", v / 100, v % 100)
    }
}

/// What a block, or the patron's standing, denies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Privileges {
    pub borrow: bool,
    pub renew: bool,
    pub hold: bool,
}

impl Privileges {
    pub const ALL: Privileges = Privileges { borrow: true, renew: true, hold: true };
    pub const NONE: Privileges = Privileges { borrow: false, renew: false, hold: false };

    /// Both sets together.
    pub fn union(self, other: Privileges) -> Privileges {
        Privileges {
            borrow: self.borrow || other.borrow,
            renew: self.renew || other.renew,
            hold: self.hold || other.hold,
        }
    }

    /// Parses `borrow`, `renew`, `hold`, `all`, or a comma-separated list of them.
    pub fn parse(s: &str) -> Option<Privileges> {
        s.split(',').map(str::trim).try_fold(Privileges::NONE, |acc, p| {
            let one = match p {
                "borrow" => Privileges { borrow: true, ..Privileges::NONE },
                "renew" => Privileges { renew: true, ..Privileges::NONE },
                "hold" => Privileges { hold: true, ..Privileges::NONE },
                "all" => Privileges::ALL,
                _ => return None,
            };
            Some(acc.union(one))
        })
    }
}

/// Loan rules for one user group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoanPolicy {
    pub loan_days: u32,
    pub max_loans: u32,
    pub max_renewals: u32,
    /// A balance above this blocks borrowing.
    pub fine_threshold: Money,
}

impl Default for LoanPolicy {
    fn default() -> LoanPolicy {
        LoanPolicy { loan_days: 21, max_loans: 50, max_renewals: 3, fine_threshold: Money(10_00) }
    }
}

/// A kind of block staff can place, and what it denies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockType {
    pub code: String,
    pub denies: Privileges,
}

/// What a PIN must look like.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PinPolicy {
    /// Exactly four digits (the default; kiosk PIN pads).
    #[default]
    FourDigits,
    /// A password of at least this many characters.
    Password { min_len: u8 },
}

/// Patterns that values must match, per institution (a regex each).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldFormats {
    pub primary_id: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub postal_code: Option<String>,
}

/// A library: the SIP `AO`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Institution {
    pub code: String,
    pub name: String,
    /// ISO 4217, e.g. `SEK`.
    pub currency: String,
    /// IANA time zone, e.g. `Europe/Stockholm`.
    pub timezone: String,
    #[serde(default)]
    pub default_policy: LoanPolicy,
    /// Loan policy by user group.
    #[serde(default)]
    pub policies: BTreeMap<String, LoanPolicy>,
    #[serde(default = "Institution::standard_block_types")]
    pub block_types: Vec<BlockType>,
    #[serde(default)]
    pub formats: FieldFormats,
    #[serde(default)]
    pub pin_policy: PinPolicy,
    /// Audit entries older than this many days are pruned by `purge` (none: kept for ever).
    #[serde(default)]
    pub audit_retention_days: Option<u32>,
}

impl Institution {
    /// A new institution with the default loan policy and the standard block types.
    pub fn new(code: &str, name: &str, currency: &str, timezone: &str) -> Institution {
        Institution {
            code: code.into(),
            name: name.into(),
            currency: currency.into(),
            timezone: timezone.into(),
            default_policy: LoanPolicy::default(),
            policies: BTreeMap::new(),
            block_types: Institution::standard_block_types(),
            formats: FieldFormats::default(),
            pin_policy: PinPolicy::FourDigits,
            audit_retention_days: None,
        }
    }

    /// The institution's time zone. The name is checked when the institution is stored, so the
    /// UTC fallback only covers a zone database that lost it since.
    /// The last zone looked up is kept per thread: every kiosk reply's date asks for it, and
    /// a look-up in the zone database costs more than the rest of the date.
    pub fn time_zone(&self) -> jiff::tz::TimeZone {
        use std::cell::RefCell;
        thread_local! {
            static LAST: RefCell<Option<(String, jiff::tz::TimeZone)>> = const { RefCell::new(None) };
        }
        let get = || jiff::tz::TimeZone::get(&self.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
        LAST.with(|last| {
            let Ok(mut last) = last.try_borrow_mut() else { return get() };
            match &*last {
                Some((name, tz)) if *name == self.timezone => tz.clone(),
                _ => {
                    let tz = get();
                    *last = Some((self.timezone.clone(), tz.clone()));
                    tz
                }
            }
        })
    }

    /// The calendar date at the institution at `now`.
    pub fn today(&self, now: Timestamp) -> Date {
        now.to_zoned(self.time_zone()).date()
    }

    /// The loan policy for a user group (the default when the group has none).
    pub fn policy_for(&self, group: Option<&str>) -> &LoanPolicy {
        group.and_then(|g| self.policies.get(g)).unwrap_or(&self.default_policy)
    }

    /// The standard block types: what a library starts with.
    pub fn standard_block_types() -> Vec<BlockType> {
        vec![
            BlockType { code: "general".into(), denies: Privileges::ALL },
            BlockType { code: "lost-card".into(), denies: Privileges::ALL },
            BlockType { code: "overdue".into(), denies: Privileges { borrow: true, renew: false, hold: true } },
            BlockType { code: "self-check".into(), denies: Privileges::ALL },
        ]
    }
}

/// Staff, public or contact (a person the library only keeps in touch with).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordType {
    Staff,
    #[default]
    Public,
    Contact,
}

/// Who owns the record: the library, or an external system that syncs it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccountType {
    #[default]
    Internal,
    /// Synced from a student or HR system, named here.
    External { source: String },
}

/// A barcode or other identifier of a patron.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identifier {
    /// `barcode`, `national-id`, `student-id`, ...
    pub kind: String,
    pub value: String,
    pub note: Option<String>,
    #[serde(default = "yes")]
    pub active: bool,
    /// Added by staff: survives a sync from an external system.
    #[serde(default)]
    pub internal: bool,
}

/// A block on a patron.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Block {
    pub id: u32,
    pub kind: String,
    pub note: Option<String>,
    #[serde(default = "yes")]
    pub active: bool,
    pub by: String,
    pub at: Timestamp,
}

/// A note on a patron; `public` notes reach the kiosk screen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Note {
    pub id: u32,
    pub kind: String,
    pub text: String,
    #[serde(default)]
    pub public: bool,
    pub by: String,
    pub at: Timestamp,
}

/// What a contact is: an e-mail address, a phone number or a postal address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContactKind {
    Email,
    Phone,
    Address,
}

impl ContactKind {
    pub const ALL: [ContactKind; 3] = [ContactKind::Email, ContactKind::Phone, ContactKind::Address];

    pub fn name(self) -> &'static str {
        match self {
            ContactKind::Email => "email",
            ContactKind::Phone => "phone",
            ContactKind::Address => "address",
        }
    }
}

/// What a contact is for, as the registers' contact tabs label them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContactUse {
    Home,
    Work,
    School,
    Mobile,
    #[default]
    Other,
}

impl ContactUse {
    pub const ALL: [ContactUse; 5] =
        [ContactUse::Home, ContactUse::Work, ContactUse::School, ContactUse::Mobile, ContactUse::Other];

    pub fn name(self) -> &'static str {
        match self {
            ContactUse::Home => "home",
            ContactUse::Work => "work",
            ContactUse::School => "school",
            ContactUse::Mobile => "mobile",
            ContactUse::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<ContactUse> {
        ContactUse::ALL.into_iter().find(|u| u.name() == s)
    }
}

/// A way to reach a patron besides the preferred e-mail, phone and address, which stay in the
/// record's own fields (notices and kiosks use those). Making one of these preferred swaps it
/// with the record's field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    pub id: u32,
    pub kind: ContactKind,
    pub value: String,
    /// Addresses only.
    #[serde(default)]
    pub postal_code: Option<String>,
    #[serde(default, rename = "use")]
    pub usage: ContactUse,
    pub by: String,
    pub at: Timestamp,
}

/// A statistical category the library counts the patron under (a code staff choose, such as
/// `distance-student`), with an optional note.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statistic {
    pub id: u32,
    pub category: String,
    #[serde(default)]
    pub note: Option<String>,
    pub by: String,
    pub at: Timestamp,
}

/// A small file on a patron's record (a signed form, a copy of an ID), or their picture. The
/// record holds what it is; the bytes are kept in the store alone, read when asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileInfo {
    /// Numbered on the patron from 1; the picture is 0.
    pub id: u32,
    /// The name it was given, for the download.
    pub name: String,
    /// Found from the bytes (never taken from the uploader).
    pub media_type: String,
    pub bytes: u32,
    /// SHA-256 of the bytes, hex: the download's ETag, and how an import knows it has them.
    pub sha256: String,
    pub by: String,
    pub at: Timestamp,
}

/// A link e-mailed to a patron to set their own PIN: kept as the SHA-256 of its random token
/// (the token itself only in the e-mail), good once, until `expires`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinLink {
    /// SHA-256 of the token, hex.
    pub digest: String,
    pub patron: u64,
    pub created: Timestamp,
    pub expires: Timestamp,
}

/// A new e-mail address a patron gave on their own pages, waiting for the link sent to it to
/// be followed (until then the record keeps the old one). Kept, like a [`PinLink`], as the
/// SHA-256 of the link's token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailCheck {
    /// SHA-256 of the token, hex.
    pub digest: String,
    pub patron: u64,
    pub email: String,
    pub created: Timestamp,
    pub expires: Timestamp,
}

/// A guardian, required to register a patron under 18.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guardian {
    pub name: String,
    pub contact: String,
}

/// A keyed hash of a PIN (HMAC-SHA-256 with the installation's secret).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinHash(pub [u8; 32]);

impl fmt::Debug for PinHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PinHash(***)")
    }
}

/// A requested move to another library.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub to: String,
    pub requested_by: String,
    pub at: Timestamp,
}

/// Who created a record, when, and how (`register` at the desk, `import`): the first line of
/// a patron's history, kept with the record so that a bulk import writes one record, not two.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Created {
    pub at: Timestamp,
    pub by: String,
    pub via: String,
}

/// A library user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Patron {
    pub id: u64,
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
    pub active: bool,
    pub status_changed: Timestamp,
    pub created: Created,
    pub terms_accepted: Option<Date>,
    pub guardian: Option<Guardian>,
    pub identifiers: Vec<Identifier>,
    pub blocks: Vec<Block>,
    pub notes: Vec<Note>,
    /// Patrons this patron may act for.
    pub proxy_for: Vec<u64>,
    pub pin: Option<PinHash>,
    /// Wrong PINs in a row.
    pub failed_pins: u8,
    pub locked: bool,
    pub deleted: Option<Timestamp>,
    pub transfer: Option<Transfer>,
    // Added in store format 3 (`store::legacy` reads records of format 2).
    /// Contacts beyond the preferred ones.
    #[serde(default)]
    pub contacts: Vec<Contact>,
    #[serde(default)]
    pub statistics: Vec<Statistic>,
    #[serde(default)]
    pub attachments: Vec<FileInfo>,
    #[serde(default)]
    pub picture: Option<FileInfo>,
}

impl Patron {
    /// A new active patron with the mandatory fields; everything else empty.
    pub fn new(
        id: u64,
        institution: &str,
        primary_id: &str,
        first_name: &str,
        last_name: &str,
        now: Timestamp,
    ) -> Patron {
        Patron {
            id,
            institution: institution.into(),
            primary_id: primary_id.into(),
            first_name: first_name.into(),
            last_name: last_name.into(),
            middle_name: None,
            title: None,
            birth_date: None,
            email: None,
            phone: None,
            address: None,
            postal_code: None,
            language: None,
            user_group: None,
            record_type: RecordType::Public,
            account_type: AccountType::Internal,
            expiry: None,
            purge: None,
            active: true,
            status_changed: now,
            created: Created { at: now, by: String::new(), via: String::new() },
            terms_accepted: None,
            guardian: None,
            identifiers: vec![],
            blocks: vec![],
            notes: vec![],
            proxy_for: vec![],
            pin: None,
            failed_pins: 0,
            locked: false,
            deleted: None,
            transfer: None,
            contacts: vec![],
            statistics: vec![],
            attachments: vec![],
            picture: None,
        }
    }

    /// The files on the record: the picture (number 0), then the attachments.
    pub fn files(&self) -> impl Iterator<Item = &FileInfo> {
        self.picture.iter().chain(&self.attachments)
    }

    /// The file of this number (0: the picture).
    pub fn file(&self, id: u32) -> Option<&FileInfo> {
        self.files().find(|f| f.id == id)
    }

    /// Every e-mail address on the record, the preferred one first.
    pub fn emails(&self) -> impl Iterator<Item = &str> {
        self.email
            .as_deref()
            .into_iter()
            .chain(self.contacts.iter().filter(|c| c.kind == ContactKind::Email).map(|c| c.value.as_str()))
    }

    /// "Last, First" as kiosks show it.
    pub fn display_name(&self) -> String {
        let mut name = String::with_capacity(self.last_name.len() + 2 + self.first_name.len());
        name.push_str(&self.last_name);
        name.push_str(", ");
        name.push_str(&self.first_name);
        name
    }

    /// The active identifiers' values.
    pub fn active_identifiers(&self) -> impl Iterator<Item = &str> {
        self.identifiers.iter().filter(|i| i.active).map(|i| i.value.as_str())
    }
}

/// SIP fee types (docs/protocol.md section 4.5), as the register names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeeKind {
    Other,
    Administrative,
    Damage,
    Overdue,
    Processing,
    Rental,
    Replacement,
    ComputerAccess,
    Hold,
}

impl FeeKind {
    pub const ALL: [FeeKind; 9] = [
        FeeKind::Other,
        FeeKind::Administrative,
        FeeKind::Damage,
        FeeKind::Overdue,
        FeeKind::Processing,
        FeeKind::Rental,
        FeeKind::Replacement,
        FeeKind::ComputerAccess,
        FeeKind::Hold,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FeeKind::Other => "other",
            FeeKind::Administrative => "administrative",
            FeeKind::Damage => "damage",
            FeeKind::Overdue => "overdue",
            FeeKind::Processing => "processing",
            FeeKind::Rental => "rental",
            FeeKind::Replacement => "replacement",
            FeeKind::ComputerAccess => "computer-access",
            FeeKind::Hold => "hold",
        }
    }

    pub fn parse(s: &str) -> Option<FeeKind> {
        FeeKind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// Where a fee stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeeStatus {
    Active,
    /// Contested by the patron: left out of the balance that blocks borrowing.
    Disputed,
    Waived,
    Paid,
    Closed,
}

/// One step in a fee's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeeEvent {
    Added { by: String, at: Timestamp },
    Paid { amount: Money, by: String, at: Timestamp, transaction: Option<String> },
    Waived { reason: String, by: String, at: Timestamp },
    Disputed { by: String, at: Timestamp },
    Restored { by: String, at: Timestamp },
}

/// A fine, a fee, or (negative amount) a credit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fee {
    pub id: u64,
    pub patron: u64,
    pub kind: FeeKind,
    pub amount: Money,
    #[serde(default)]
    pub paid: Money,
    pub currency: String,
    pub item: Option<String>,
    pub comment: Option<String>,
    pub status: FeeStatus,
    pub created: Timestamp,
    #[serde(default)]
    pub history: Vec<FeeEvent>,
    /// The id the fee had in the library's previous system, kept from an import so that a
    /// kiosk still naming it (37 `CG`) pays this fee. Unique among the patron's fees.
    #[serde(default)]
    pub previous_id: Option<String>,
}

impl Fee {
    /// What is still owed on it (never below zero for a charge; a credit stays negative).
    pub fn outstanding(&self) -> Money {
        if self.amount.0 < 0 { self.amount } else { Money((self.amount.0 - self.paid.0).max(0)) }
    }
}

/// Circulation status of an item, in the register's terms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ItemStatus {
    #[default]
    Available,
    OnLoan,
    OnHoldShelf,
    InTransit,
    InProcess,
    Lost,
    Missing,
    ClaimedReturned,
}

/// A copy the library lends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    pub barcode: String,
    pub institution: String,
    pub title: String,
    pub author: Option<String>,
    pub call_number: Option<String>,
    pub location: Option<String>,
    /// SIP media type code (`001` book, `006` CD/DVD, ...).
    #[serde(default)]
    pub media_type: u16,
    #[serde(default)]
    pub status: ItemStatus,
    /// SIP security marker code.
    #[serde(default)]
    pub security_marker: u8,
    /// Charged at checkout (rental items).
    pub rental_fee: Option<Money>,
    pub loan_days: Option<u32>,
    /// Opaque properties a kiosk stored (SIP 19).
    pub properties: Option<String>,
}

/// An item out on loan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Loan {
    pub item: String,
    pub patron: u64,
    pub out: Timestamp,
    pub due: Timestamp,
    #[serde(default)]
    pub renewals: u32,
}

/// Waiting or ready for pickup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HoldStatus {
    Waiting,
    Available,
}

/// A request for an item (or any copy of a title).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hold {
    pub id: u64,
    pub patron: u64,
    pub item: Option<String>,
    pub title: Option<String>,
    pub pickup: String,
    pub placed: Timestamp,
    pub expires: Option<Date>,
    pub status: HoldStatus,
}

/// A self-check terminal's login and the profile the server applies to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub login: String,
    /// Argon2 PHC string.
    pub password_hash: String,
    pub institution: String,
    pub location: Option<String>,
    pub profile: BTreeMap<String, String>,
}

/// One change to a patron, for the audit history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub patron: u64,
    pub at: Timestamp,
    pub by: String,
    pub action: String,
    /// Field, old value, new value (PINs appear only as "changed").
    pub changes: Vec<(String, String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_parses_and_prints() {
        assert_eq!(Money::parse("2.50"), Some(Money(250)));
        assert_eq!(Money::parse("2.5"), Some(Money(250)));
        assert_eq!(Money::parse("12"), Some(Money(1200)));
        assert_eq!(Money::parse("-0.75"), Some(Money(-75)));
        for bad in ["", ".5", "2.555", "1,00", "abc", "1.x", "--1"] {
            assert_eq!(Money::parse(bad), None, "{bad}");
        }
        assert_eq!(Money(-75).to_string(), "-0.75");
        assert_eq!(Money(27_50).to_string(), "27.50");
    }

    #[test]
    fn privileges_parse() {
        assert_eq!(Privileges::parse("all"), Some(Privileges::ALL));
        assert_eq!(Privileges::parse("borrow,hold"), Some(Privileges { borrow: true, renew: false, hold: true }));
        assert_eq!(Privileges::parse("fly"), None);
    }
}

/// What a notification to a patron is about. Patrons may opt out of each kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoticeKind {
    /// On registration, with how to set a PIN.
    Welcome,
    /// A transfer to another library was requested.
    TransferRequested,
    TransferAccepted,
    TransferDeclined,
    /// Loans and requests, on demand.
    Report,
    /// A balance is due (deletion was refused because of it).
    BalanceDue,
    /// The link a patron asked for on the forgot-PIN page. (New kinds go last: stored
    /// notices and opt-outs keep their numbers.)
    PinReset,
    /// The link that confirms a new e-mail address, sent to that address.
    EmailCheck,
}

impl NoticeKind {
    pub const ALL: [NoticeKind; 8] = [
        NoticeKind::Welcome,
        NoticeKind::TransferRequested,
        NoticeKind::TransferAccepted,
        NoticeKind::TransferDeclined,
        NoticeKind::Report,
        NoticeKind::BalanceDue,
        NoticeKind::PinReset,
        NoticeKind::EmailCheck,
    ];

    /// Whether a patron may opt out of this kind: not of what they ask for themselves.
    pub fn optional(self) -> bool {
        !matches!(self, NoticeKind::PinReset | NoticeKind::EmailCheck)
    }

    pub fn name(self) -> &'static str {
        match self {
            NoticeKind::Welcome => "welcome",
            NoticeKind::TransferRequested => "transfer-requested",
            NoticeKind::TransferAccepted => "transfer-accepted",
            NoticeKind::TransferDeclined => "transfer-declined",
            NoticeKind::Report => "report",
            NoticeKind::BalanceDue => "balance-due",
            NoticeKind::PinReset => "pin-reset",
            NoticeKind::EmailCheck => "email-check",
        }
    }

    pub fn parse(s: &str) -> Option<NoticeKind> {
        NoticeKind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// Where a notification stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// Waiting for (another) attempt.
    Pending,
    Sent,
    /// Given up after the last attempt.
    Failed,
    /// Not to be sent: the patron opted out, or has no e-mail address.
    Skipped,
}

/// A notification in the outbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub id: u64,
    pub patron: u64,
    pub kind: NoticeKind,
    /// The address it goes to (the patron's e-mail when it was written).
    pub to: Option<String>,
    /// `en` or `sv`: the language it is written in.
    pub language: String,
    pub subject: String,
    pub body: String,
    pub created: Timestamp,
    pub delivery: Delivery,
    pub attempts: u32,
    /// When the next attempt is due (pending ones).
    pub next_attempt: Option<Timestamp>,
    pub last_error: Option<String>,
    pub sent: Option<Timestamp>,
    /// Why it is skipped.
    pub note: Option<String>,
}
