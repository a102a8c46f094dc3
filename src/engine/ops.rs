//! What the engine is asked, as data: operations (units of work that may change the register)
//! and queries (reads of a committed view), with what each answers. Every client (the SIP
//! service, the command line, the admin API, import) speaks these.

use std::sync::Arc;

use jiff::Timestamp;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::domain::rules::{PinCheck, Standing};
use crate::domain::*;

use super::exchange::{ImportOutcome, Line};

/// A file's bytes: base64 in JSON, plain bytes in bincode.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct FileBytes(pub Vec<u8>);

impl std::fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileBytes({} bytes)", self.0.len())
    }
}

impl Serialize for FileBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        if s.is_human_readable() {
            s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for FileBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<FileBytes, D::Error> {
        use base64::Engine as _;
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            base64::engine::general_purpose::STANDARD
                .decode(text.as_bytes())
                .map(FileBytes)
                .map_err(|e| serde::de::Error::custom(format!("a file's content is base64: {e}")))
        } else {
            serde_bytes_vec(d).map(FileBytes)
        }
    }
}

fn serde_bytes_vec<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct Bytes;
    impl<'de> serde::de::Visitor<'de> for Bytes {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
    }
    d.deserialize_byte_buf(Bytes)
}

/// A PIN or password as given, held only until it is checked or hashed; `Debug` hides it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin(pub String);

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "Pin(empty)" } else { "Pin(***)" })
    }
}

/// Who asks, and when: the name the audit history records, and the moment every rule of the
/// unit reads (nothing inside reads the clock).
#[derive(Clone, Debug)]
pub struct By {
    pub actor: String,
    pub now: Timestamp,
    /// The staff member asking, by login: the unit reads their account as it is inside the
    /// commit and refuses what their role or institutions do not allow. None: the system (the
    /// owner's command line, a kiosk, the server itself), allowed everything.
    pub staff: Option<Arc<str>>,
    /// A terminal's request with a sequence number (`actor` is the terminal's login): a
    /// change it makes is kept with its receipt, and the same request sent again from the
    /// same address, on any connection or node, is answered from that receipt instead of
    /// running again (`engine::terminals`).
    pub request: Option<super::terminals::RequestMark>,
}

impl By {
    pub fn new(actor: impl Into<String>, now: Timestamp) -> By {
        By { actor: actor.into(), now, staff: None, request: None }
    }

    /// A staff member's request: the audit history names them.
    pub fn staff(member: &Staff, now: Timestamp) -> By {
        By { actor: member.actor(), now, staff: Some(member.login.as_str().into()), request: None }
    }

    /// This request, marked as a terminal's (see [`By::request`]).
    pub fn marked(self, request: Option<super::terminals::RequestMark>) -> By {
        By { request, ..self }
    }
}

/// The terminal a kiosk request comes from, as it logged in: its institution and what its
/// profile allows.
#[derive(Clone, Debug, PartialEq, Eq)]
///
/// Its text is shared (`Arc<str>`): every kiosk request carries one, and copying it must not
/// allocate.
pub struct Kiosk {
    pub login: Arc<str>,
    pub institution: Arc<str>,
    pub location: Option<Arc<str>>,
    /// Whether PINs are checked at all (`pin-required`).
    pub pin_required: bool,
    /// Whether an empty PIN counts as right (`empty-pin-ok`).
    pub empty_pin_ok: bool,
    /// Whether it may renew (`renewals`).
    pub renewals: bool,
    /// Whether it may block cards (`status-update`, SIP 01).
    pub status_update: bool,
    /// Whether it may lift kiosk blocks (`patron-enable`, SIP 25).
    pub patron_enable: bool,
    /// How circulation requests show the patron is present (`patron-verification`).
    pub verification: crate::domain::profile::Verification,
    /// The card whose PIN was verified earlier on this connection, if any.
    pub verified_card: Option<Arc<str>>,
}

/// What staff enter to register a patron.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
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
    pub pin: Option<Pin>,
    /// Register only: no welcome to the outbox (staff send the invitation later).
    #[serde(default)]
    pub no_invitation: bool,
}

/// What staff enter to add an item.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HoldTarget {
    Item(String),
    Title(String),
}

/// A change to an institution's settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstitutionChange {
    /// Name, field patterns (an empty pattern removes it), PIN policy, audit retention
    /// (0: keep for ever); `None` leaves a setting as it is.
    Settings {
        name: Option<String>,
        patterns: [Option<String>; 4],
        pin_policy: Option<PinPolicy>,
        audit_retention_days: Option<u32>,
    },
    /// The loan policy of a user group (or the default one, without a group).
    Policy {
        group: Option<String>,
        loan_days: Option<u32>,
        max_loans: Option<u32>,
        max_renewals: Option<u32>,
        fine_threshold: Option<Money>,
    },
    /// Adds or changes a block type, or (`denies: None`) removes it.
    BlockType { code: String, denies: Option<Privileges> },
}

/// What a kiosk's hold request asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldAction {
    Place,
    Cancel,
    Change,
    Unknown,
}

/// A kiosk's checkout (SIP 11).
#[derive(Clone, Debug)]
pub struct KioskCheckout {
    pub at: Kiosk,
    pub card: String,
    pub pin: Option<Pin>,
    pub item: String,
    /// The patron accepts the item's fee.
    pub fee_acknowledged: bool,
    /// The kiosk's renewal policy (SC renewal policy): an 11 on one's own item renews.
    pub renewal_allowed: bool,
    /// Done off line already ("no block"), with the due date the kiosk gave, if any.
    pub no_block: Option<Option<Timestamp>>,
    /// Undo the loan this kiosk just made (the strip would not desensitise).
    pub cancel: bool,
}

/// A unit of work: what it reads, the rule that decides, what it writes, in one commit.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    // -- kiosks (SIP) ----------------------------------------------------------------------
    /// 23 and 63 (`detail`): the patron as a kiosk sees them. The PIN, when sent, is checked:
    /// a wrong one, or a right one clearing earlier failures, is written.
    #[serde(skip)]
    KioskPatron {
        at: Kiosk,
        card: String,
        pin: Option<Pin>,
        detail: bool,
    },
    /// 11.
    #[serde(skip)]
    KioskCheckout(Box<KioskCheckout>),
    /// 09, taken back at `returned` (the kiosk's no-block return date) or now.
    #[serde(skip)]
    KioskCheckin {
        at: Kiosk,
        item: String,
        returned: Option<Timestamp>,
    },
    /// 29; `no_block_due` is the kiosk's due date for a renewal it already made off line.
    #[serde(skip)]
    KioskRenew {
        at: Kiosk,
        card: String,
        pin: Option<Pin>,
        item: Option<String>,
        fee_acknowledged: bool,
        no_block_due: Option<Timestamp>,
    },
    /// 65.
    #[serde(skip)]
    KioskRenewAll {
        at: Kiosk,
        card: String,
        pin: Option<Pin>,
        fee_acknowledged: bool,
    },
    /// 37: on the fee named, or on the oldest open fees.
    #[serde(skip)]
    KioskPay {
        at: Kiosk,
        card: String,
        currency: String,
        amount: String,
        fee: Option<String>,
        transaction: Option<String>,
    },
    /// 15.
    #[serde(skip)]
    KioskHold {
        at: Kiosk,
        card: String,
        pin: Option<Pin>,
        action: HoldAction,
        target: Option<HoldTarget>,
        pickup: Option<String>,
        expires: Option<Date>,
    },
    /// 01: a `self-check` block with the kiosk's message, answered with the patron after it.
    #[serde(skip)]
    KioskBlock {
        at: Kiosk,
        card: String,
        message: String,
    },
    /// 25: lifts the blocks kiosks placed, answered with the patron after it.
    #[serde(skip)]
    KioskEnable {
        at: Kiosk,
        card: String,
        pin: Option<Pin>,
    },
    /// 19: the opaque properties a kiosk keeps on an item.
    #[serde(skip)]
    KioskItemProperties {
        at: Kiosk,
        item: String,
        properties: String,
    },

    // -- staff ------------------------------------------------------------------------------
    AddInstitution {
        code: String,
        name: String,
        currency: String,
        timezone: String,
    },
    ChangeInstitution {
        code: String,
        change: InstitutionChange,
    },
    AddPatron {
        new: Box<NewPatron>,
        force: bool,
    },
    EditPatron {
        patron: u64,
        sets: Vec<(String, String)>,
        /// The record's tag ([`crate::engine::patron_tag`]) as the editor saw it: when set,
        /// the edit is refused with [`Refusal::Changed`] if the record changed since.
        expect: Option<String>,
    },
    AddIdentifier {
        patron: u64,
        kind: String,
        value: String,
        note: Option<String>,
    },
    SetIdentifierActive {
        patron: u64,
        value: String,
        active: bool,
    },
    AddNote {
        patron: u64,
        kind: String,
        text: String,
        public: bool,
    },
    RemoveNote {
        patron: u64,
        note: u32,
    },
    SetProxy {
        proxy: u64,
        for_whom: u64,
        allow: bool,
    },
    SetActive {
        patron: u64,
        active: bool,
    },
    SetPin {
        patron: u64,
        pin: Pin,
    },
    /// A PIN tried as a kiosk tries it: counts toward the lockout.
    CheckPin {
        patron: u64,
        pin: Pin,
    },
    Unlock {
        patron: u64,
    },
    Block {
        patron: u64,
        kind: String,
        note: Option<String>,
    },
    Unblock {
        patron: u64,
        kind: Option<String>,
    },
    AddFee {
        patron: u64,
        kind: FeeKind,
        amount: Money,
        item: Option<String>,
        comment: Option<String>,
    },
    PayFee {
        fee: u64,
        amount: Money,
        transaction: Option<String>,
    },
    WaiveFee {
        fee: u64,
        reason: String,
    },
    DisputeFee {
        fee: u64,
    },
    RestoreFee {
        fee: u64,
    },
    RequestTransfer {
        patron: u64,
        to: String,
    },
    DecideTransfer {
        patron: u64,
        accept: bool,
    },
    DeletePatron {
        patron: u64,
    },
    RestorePatron {
        patron: u64,
    },
    Purge {
        dry_run: bool,
    },
    /// The patron's loans, requests and balance, written to the outbox.
    Report {
        patron: u64,
    },
    /// The welcome (the invitation to the library, with how to get a PIN) written to the
    /// outbox again, or for the first time for a patron registered without it.
    Invite {
        patron: u64,
    },
    SetOptout {
        patron: u64,
        kind: NoticeKind,
        out: bool,
    },
    /// A contact besides the preferred ones (an e-mail counts toward the institution's
    /// unique e-mails like the preferred one).
    AddContact {
        patron: u64,
        kind: ContactKind,
        value: String,
        #[serde(default)]
        postal_code: Option<String>,
        #[serde(default, rename = "use")]
        usage: ContactUse,
    },
    RemoveContact {
        patron: u64,
        contact: u32,
    },
    /// The contact becomes the record's preferred one of its kind (what notices and kiosks
    /// use), and the one it replaces, if any, becomes a contact.
    PreferContact {
        patron: u64,
        contact: u32,
    },
    AddStatistic {
        patron: u64,
        category: String,
        #[serde(default)]
        note: Option<String>,
    },
    RemoveStatistic {
        patron: u64,
        statistic: u32,
    },
    /// A small file on the record; its type is found from its bytes.
    AddAttachment {
        patron: u64,
        name: String,
        content: FileBytes,
    },
    RemoveAttachment {
        patron: u64,
        attachment: u32,
    },
    /// The patron's picture (a PNG, JPEG, GIF or WebP image), or none.
    SetPicture {
        patron: u64,
        content: Option<FileBytes>,
    },
    /// A patron sets their PIN from the e-mailed link (the patron pages run it).
    #[serde(skip)]
    RedeemPinLink {
        token: Pin,
        pin: Pin,
    },
    /// A patron logs in to their own pages with a card (or the primary id) and PIN. The
    /// attempt counts toward the lockout kiosks count, both ways; what it writes stands,
    /// refused or not.
    #[serde(skip)]
    PatronLogin {
        institution: String,
        card: String,
        pin: Pin,
    },
    /// "Forgot PIN": a card number or e-mail address at the institution. When it names a
    /// patron with an e-mail address who was sent no link in the last `[register]
    /// forgot_pin_minutes`, a set-PIN link goes to them; the receipt is the same either way.
    #[serde(skip)]
    ForgotPin {
        institution: String,
        given: String,
    },
    /// What a logged-in patron does on their own pages. `session` is the tag of the PIN they
    /// logged in with ([`pin_session_tag`]): a PIN changed since, or a lockout, ends it.
    #[serde(skip)]
    AsPatron {
        patron: u64,
        session: String,
        act: OwnAct,
    },
    /// A patron follows the link sent to a new e-mail address: the address becomes theirs.
    #[serde(skip)]
    ConfirmEmail {
        token: Pin,
    },
    AddItem(Box<NewItem>),
    EditItem {
        barcode: String,
        sets: Vec<(String, String)>,
    },
    DeleteItem {
        barcode: String,
    },
    /// Lends at the desk, by the kiosk's rules (renews an item the patron has).
    Lend {
        patron: u64,
        item: String,
        accept_fee: bool,
    },
    /// Takes an item back at the desk.
    Return {
        item: String,
    },
    PlaceHold {
        patron: u64,
        target: HoldTarget,
        pickup: String,
        expires: Option<Date>,
    },
    CancelHold {
        hold: u64,
    },
    /// The password is hashed (Argon2) before it gets here: the writer does no slow work.
    AddAccount {
        login: String,
        password_hash: String,
        institution: String,
        location: Option<String>,
    },
    SetAccountPassword {
        login: String,
        password_hash: String,
    },
    SetAccountProfile {
        login: String,
        sets: Vec<(String, String)>,
    },
    RemoveAccount {
        login: String,
    },
    /// Staff accounts; passwords are hashed (Argon2) before they get here, as for terminals.
    AddStaff {
        login: String,
        name: String,
        password_hash: String,
        role: Role,
        institutions: Vec<String>,
    },
    /// A member changing their own gives `matched`: the hash their current password matched
    /// (checked outside, as for a login); it must still be theirs.
    SetStaffPassword {
        login: String,
        password_hash: String,
        matched: Option<String>,
    },
    /// Changes what is given: the name, the role, the institutions.
    ChangeStaff {
        login: String,
        name: Option<String>,
        role: Option<Role>,
        institutions: Option<Vec<String>>,
    },
    /// A login attempt whose password was checked outside the writer (Argon2 is slow):
    /// `matched` is the hash the password matched, if any; it counts only if it is still the
    /// account's. Counts a wrong one, locks after too many, and refuses while locked (what it
    /// writes stands).
    StaffLogin {
        login: String,
        matched: Option<String>,
    },
    UnlockStaff {
        login: String,
    },
    /// A bearer token for an integration, by its SHA-256 digest (hex).
    AddStaffToken {
        login: String,
        label: String,
        digest: String,
    },
    RevokeStaffToken {
        login: String,
        token: u32,
    },
    RemoveStaff {
        login: String,
    },
    /// Lines of an import, each its own unit within this one (a refused line writes nothing,
    /// the others stand). PINs in clear are hashed inside; `pin_hashes` says whether the file's
    /// hashes are taken.
    Import {
        lines: Vec<(usize, Line)>,
        take_pin_hashes: bool,
        ids_above: u64,
    },
    /// What became of one attempt to deliver a notice (as it was read from the outbox).
    Delivered {
        notice: Box<Notice>,
        result: Result<(), String>,
    },
}

impl Operation {
    /// What a staff member needs to run this, and what it is, for the refusal.
    pub fn needs(&self) -> (staff::Needs, &'static str) {
        use Operation as O;
        use staff::Needs::{Role as R, System};
        match self {
            O::KioskPatron { .. }
            | O::KioskCheckout(_)
            | O::KioskCheckin { .. }
            | O::KioskRenew { .. }
            | O::KioskRenewAll { .. }
            | O::KioskPay { .. }
            | O::KioskHold { .. }
            | O::KioskBlock { .. }
            | O::KioskEnable { .. }
            | O::KioskItemProperties { .. } => (System, "act as a kiosk"),
            O::Import { .. } => (System, "import"),
            O::Delivered { .. } => (System, "record deliveries"),
            O::RedeemPinLink { .. } => (System, "set a PIN from a patron's link"),
            O::PatronLogin { .. } | O::ForgotPin { .. } | O::AsPatron { .. } | O::ConfirmEmail { .. } => {
                (System, "act on a patron's own pages")
            }
            O::Purge { .. } => (System, "purge the register"),
            O::StaffLogin { .. } => (System, "record logins"),
            O::AddInstitution { .. } => (System, "add institutions"),
            O::ChangeInstitution { .. } => (R(Role::MainAdministrator), "change the institution's settings"),
            O::AddItem(_) | O::EditItem { .. } | O::DeleteItem { .. } => (R(Role::UserAdministrator), "change items"),
            O::DeletePatron { .. } => (R(Role::UserAdministrator), "delete patrons"),
            O::RestorePatron { .. } => (R(Role::UserAdministrator), "restore deleted patrons"),
            O::AddAccount { .. }
            | O::SetAccountPassword { .. }
            | O::SetAccountProfile { .. }
            | O::RemoveAccount { .. } => (R(Role::UserAdministrator), "manage terminal accounts"),
            // Which members, and which roles, is decided on the accounts (`staff::may_manage`).
            O::AddStaff { .. }
            | O::ChangeStaff { .. }
            | O::SetStaffPassword { .. }
            | O::UnlockStaff { .. }
            | O::AddStaffToken { .. }
            | O::RevokeStaffToken { .. }
            | O::RemoveStaff { .. } => (R(Role::Desk), "manage staff accounts"),
            O::AddPatron { .. }
            | O::EditPatron { .. }
            | O::AddIdentifier { .. }
            | O::SetIdentifierActive { .. }
            | O::AddNote { .. }
            | O::RemoveNote { .. }
            | O::SetProxy { .. }
            | O::SetActive { .. }
            | O::SetPin { .. }
            | O::CheckPin { .. }
            | O::Unlock { .. }
            | O::Block { .. }
            | O::Unblock { .. }
            | O::AddFee { .. }
            | O::PayFee { .. }
            | O::WaiveFee { .. }
            | O::DisputeFee { .. }
            | O::RestoreFee { .. }
            | O::RequestTransfer { .. }
            | O::DecideTransfer { .. }
            | O::Report { .. }
            | O::Invite { .. }
            | O::SetOptout { .. }
            | O::AddContact { .. }
            | O::RemoveContact { .. }
            | O::PreferContact { .. }
            | O::AddStatistic { .. }
            | O::RemoveStatistic { .. }
            | O::AddAttachment { .. }
            | O::RemoveAttachment { .. }
            | O::SetPicture { .. }
            | O::Lend { .. }
            | O::Return { .. }
            | O::PlaceHold { .. }
            | O::CancelHold { .. } => (R(Role::UserManager), "change patrons"),
        }
    }
}

/// What a kiosk is told about the PIN it sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PinVerdict {
    /// The profile asks for no PIN: no `CQ` is sent.
    NotChecked,
    Right,
    Wrong,
    /// Locked by wrong PINs (this one may have been the fifth): no PIN is accepted.
    Locked,
    /// Not tried: the terminal has sent as many wrong PINs as its window allows.
    Throttled,
}

impl PinVerdict {
    /// The refusal a PIN verdict means, if it refuses.
    pub fn refusal(self) -> Option<Refusal> {
        match self {
            PinVerdict::Wrong => Some(Refusal::WrongPin { remaining: 0 }),
            PinVerdict::Locked => Some(Refusal::LockedOut),
            PinVerdict::Throttled => Some(Refusal::PinThrottled),
            PinVerdict::NotChecked | PinVerdict::Right => None,
        }
    }
}

/// What a patron does on their own pages, each by the rule staff and kiosks use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnAct {
    /// Renews one of their loans, where the lending rules allow.
    Renew { item: String },
    /// Cancels one of their requests.
    CancelHold { hold: u64 },
    /// Their phone and postal address (an external account's are its sync's).
    Contact { phone: String, address: String, postal_code: String },
    /// A new e-mail address: a link goes to it, and it is theirs once that is followed.
    ChangeEmail { email: String },
    /// Out of (or back into) kinds of notice, together (a move's three notices are one choice).
    OptOut { kinds: Vec<NoticeKind>, out: bool },
    /// Asks to move to another library; its staff accept or decline.
    RequestMove { to: String },
}

/// The tag a patron's session on their own pages carries: a digest of the PIN hash they
/// logged in with, so that a PIN set since (at the desk, from a link) ends the session.
pub fn pin_session_tag(p: &Patron) -> Option<String> {
    p.pin.as_ref().map(|h| crate::domain::secret::token_digest(&crate::domain::secret::hex(&h.0)))
}

/// A patron as a kiosk sees them (23, 63, and the 24 that answers 01 and 25).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KioskPatron {
    /// Shared with the working set: a status request copies no record.
    pub patron: std::sync::Arc<Patron>,
    pub pin: PinVerdict,
    pub standing: Standing,
    pub balance: Money,
    pub currency: String,
    pub policy: LoanPolicy,
    /// For 63 (`detail`): loans, holds and open fees.
    pub loans: Vec<Loan>,
    pub holds: Vec<Hold>,
    pub fees: Vec<Fee>,
}

/// What a kiosk learns about an item.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ItemFacts {
    pub item: Item,
    pub loan: Option<Loan>,
    /// The queue, next first.
    pub holds: Vec<Hold>,
}

/// A loan made or renewed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Lent {
    pub loan: Loan,
    pub item: Item,
    /// The rental fee charged.
    pub fee: Option<Fee>,
    pub renewed: bool,
}

/// The answer to a kiosk's checkout, with the facts the reply reports even when refused.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckoutReceipt {
    /// The item, when it is in the catalogue.
    pub item: Option<Item>,
    pub result: Result<CheckoutDone, Refusal>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum CheckoutDone {
    Lent(Box<Lent>),
    Cancelled,
}

/// Someone waiting for a returned item.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Waiting {
    pub hold: Hold,
    pub primary_id: String,
    pub name: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckinReceipt {
    /// `None`: not in the catalogue (nothing was done).
    pub item: Option<Item>,
    /// The loan it ended, with the card of the patron who had it.
    pub ended: Option<(Loan, String)>,
    pub waiting: Option<Waiting>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RenewReceipt {
    pub item: Option<Item>,
    pub result: Result<Lent, Refusal>,
}

/// One loan of a renew-all: the item, and its renewal or why not.
pub type Renewed = (String, Result<Lent, Refusal>);

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RenewAllReceipt {
    /// `Err`: the patron or PIN refused the request as a whole.
    pub result: Result<Vec<Renewed>, Refusal>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Payment {
    pub fees: Vec<Fee>,
    pub receipt: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HoldReceipt {
    pub result: Result<HoldDone, Refusal>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HoldDone {
    pub hold: Hold,
    pub cancelled: bool,
    pub queue_position: Option<usize>,
    /// For a hold on an item: whether it is on the shelf now.
    pub available: Option<bool>,
}

/// What purge removed, or would remove, and what it left and why.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PurgeReport {
    pub removed: Vec<(u64, String)>,
    pub kept: Vec<(u64, String)>,
    pub audit_entries_pruned: usize,
}

/// What an operation did.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Receipt {
    /// The kiosk's patron report; `Err` when the card is unknown (or, for 01/25, the action
    /// refused: the report is then of the patron as they stand).
    KioskPatron(Result<Box<KioskPatron>, Refusal>, Option<Refusal>),
    Checkout(Box<CheckoutReceipt>),
    Checkin(Box<CheckinReceipt>),
    Renew(Box<RenewReceipt>),
    RenewAll(Box<RenewAllReceipt>),
    Paid(Result<Payment, Refusal>),
    KioskHold(Box<HoldReceipt>),
    ItemProperties(Result<Box<Item>, Refusal>),
    Institution(Box<Institution>),
    Patron(Box<Patron>),
    Pin(PinCheck),
    Fee(Box<Fee>),
    Item(Box<Item>),
    Loan(Loan),
    Returned(Option<Loan>),
    Hold(Box<Hold>),
    Account(Box<Account>),
    Staff(Box<Staff>),
    Purged(PurgeReport),
    Notice(Box<Notice>),
    Optouts(Vec<NoticeKind>),
    Imported(Vec<(usize, Result<ImportOutcome, String>)>),
    /// Refused, and what the refusal wrote stands (a deletion refused for a balance due
    /// writes the patron that notice).
    Refused(Refusal),
    Done,
}

/// Which patrons a list shows.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ListFilter {
    pub institution: Option<String>,
    pub group: Option<String>,
    /// Only deleted ones (the bank of deleted users); otherwise deleted ones are left out.
    pub deleted: bool,
    pub inactive_only: bool,
    /// Only those whose card has expired before this date.
    pub expired_by: Option<Date>,
    pub limit: Option<usize>,
}

/// A read of a committed view: what a crash could take back is never in it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Query {
    Institutions,
    Institution(String),
    Accounts,
    Account(String),
    StaffList,
    Staff(String),
    /// The staff member a bearer token belongs to, by the token's SHA-256 digest (hex).
    StaffByToken(String),
    /// A patron by register id.
    Patron(u64),
    /// A patron by `#id`, primary id, identifier or e-mail at the institution.
    FindPatron {
        institution: String,
        key: String,
    },
    Patrons(ListFilter),
    /// By exact identifier, national id or e-mail, else by name prefix ("last, first").
    Search {
        institution: String,
        query: String,
        now: Timestamp,
    },
    PendingTransfers(String),
    /// The patron's card for staff: the record, balance, standing and loans, at `now`.
    Card {
        patron: u64,
        now: Timestamp,
    },
    Item(String),
    Items {
        institution: Option<String>,
        limit: usize,
    },
    Loans {
        patron: Option<u64>,
    },
    Holds {
        patron: Option<u64>,
        item: Option<String>,
    },
    Fees(u64),
    Optouts(u64),
    /// The audit history, oldest first (its first entry is how the record began).
    History(u64),
    /// The outbox, oldest first.
    Outbox,
    /// One of a patron's files: an attachment by its number, or the picture (0).
    File {
        patron: u64,
        file: u32,
    },
    /// The PIN policy the patron of a set-PIN link is held to (the page asks for four digits
    /// or a password accordingly), or why the link does not work at `now`.
    #[serde(skip)]
    LinkPolicy {
        token: Pin,
        now: Timestamp,
    },
    /// A kiosk's 17.
    #[serde(skip)]
    KioskItem {
        at: Kiosk,
        item: String,
    },
}

/// A patron's card for staff views.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Card {
    pub patron: Patron,
    pub balance: Money,
    pub standing: Standing,
    pub loans: Vec<Loan>,
}

/// A hold with its place in the queue.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QueuedHold {
    pub hold: Hold,
    pub position: Option<usize>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Answer {
    Institutions(Vec<Institution>),
    Institution(Box<Institution>),
    Accounts(Vec<Account>),
    Account(Box<Account>),
    StaffList(Vec<Staff>),
    Staff(Box<Staff>),
    Patron(Box<Patron>),
    Patrons(Vec<Patron>),
    Card(Box<Card>),
    Item(Box<ItemFacts>),
    Items(Vec<Item>),
    Loans(Vec<Loan>),
    Holds(Vec<QueuedHold>),
    Fees(Vec<Fee>, Money),
    Optouts(Vec<NoticeKind>),
    History(Vec<AuditEntry>),
    Outbox(Vec<Notice>),
    File(Box<FileInfo>, FileBytes),
    #[serde(skip)]
    KioskItem(Option<Box<ItemFacts>>),
    /// A link that is not (or no longer) good has none: `LinkUnusable`.
    #[serde(skip)]
    PinPolicy(Result<PinPolicy, Refusal>),
}
