//! The sled engine's storage: one tree per record kind, values as a version byte plus
//! bincode. Only the checkpointer writes it, bringing it up to date with the write-ahead log;
//! the engine keeps the working set in memory, so the store is read whole at start and, for
//! the records kept only here (audit history, the outbox), once it holds every batch before
//! the read.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bincode::Options;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::Tree;

use crate::domain::{
    Account, AuditEntry, EmailCheck, Fee, Hold, Institution, Item, Loan, Notice, NoticeKind, Patron, PinLink, Staff,
};

/// Format version written before every value, so records can evolve. 2: bincode with
/// variable-length integers. 3: patrons gained contacts, statistics, attachments and a
/// picture (format 2's patrons are read through `legacy`; the other records are as in 2).
const VERSION: u8 = 3;

/// A record kept in the store, and how it reads the formats before [`VERSION`].
pub trait Record: DeserializeOwned {
    /// Reads a value of an older format; by default its layout has not changed since.
    fn read_older(_version: u8, bytes: &[u8]) -> Result<Self, bincode::Error> {
        codec().deserialize(bytes)
    }
}

impl Record for Patron {
    fn read_older(_version: u8, bytes: &[u8]) -> Result<Patron, bincode::Error> {
        codec().deserialize::<super::legacy::PatronV2>(bytes).map(Patron::from)
    }
}

impl Record for Institution {}
impl Record for Account {}
impl Record for Staff {}
impl Record for Item {}
impl Record for Loan {}
impl Record for Fee {}
impl Record for Hold {}
impl Record for AuditEntry {}
impl Record for Notice {}
impl Record for Vec<NoticeKind> {}
impl Record for PinLink {}
impl Record for EmailCheck {}
impl Record for super::terminals::PinWindow {}
impl Record for super::terminals::LastChange {}

/// The directory sled keeps its files in, inside the data directory.
pub const DIR: &str = "db";

/// Trees of earlier versions, which kept secondary indexes on disk; the engine keeps them in
/// memory now, and drops these on open.
const OLD_INDEXES: &[&str] =
    &["identifiers", "emails", "names", "fees_by_patron", "loans_by_patron", "holds_by_patron", "holds_by_item"];

fn codec() -> impl bincode::Options {
    bincode::DefaultOptions::new()
}

/// Why storage failed. Each carries its source.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the store at {path} is in use by another process (a running `sip2d serve`?); stop it or use its admin interface"
    )]
    Locked { path: PathBuf },
    #[error("cannot open the store at {path}: {source}")]
    Open { path: PathBuf, source: sled::Error },
    #[error("store I/O failed: {0}")]
    Io(#[from] sled::Error),
    #[error("a stored {kind} could not be read ({detail}); was it written by a newer sip2d?")]
    Corrupt { kind: &'static str, detail: String },
    #[error(transparent)]
    Log(#[from] super::wal::LogError),
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![VERSION];
    put(&mut out, value);
    out
}

pub(crate) fn decode<T: Record>(kind: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    let corrupt = |e: bincode::Error| StoreError::Corrupt { kind, detail: e.to_string() };
    match bytes.split_first() {
        Some((&VERSION, rest)) => codec().deserialize(rest).map_err(corrupt),
        Some((&v @ 2, rest)) => T::read_older(v, rest).map_err(corrupt),
        Some((v, _)) => Err(StoreError::Corrupt { kind, detail: format!("format version {v}") }),
        None => Err(StoreError::Corrupt { kind, detail: "empty value".into() }),
    }
}

/// The meta key under which sled records the last log record it holds.
pub const APPLIED: &[u8] = b"wal_applied";

/// The trees, in the order of [`Store::trees`].
pub const TREES: usize = 17;
/// Their names, in the same order: sled's trees, and the PostgreSQL engine's tables.
pub const TREE_NAMES: [&str; TREES] = [
    "meta",
    "institutions",
    "patrons",
    "items",
    "loans",
    "fees",
    "holds",
    "accounts",
    "audit",
    "outbox",
    "optouts",
    "staff",
    "files",
    "links",
    "email_checks",
    "pin_windows",
    "last_changes",
];
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum TreeId {
    Meta,
    Institutions,
    Patrons,
    Items,
    Loans,
    Fees,
    Holds,
    Accounts,
    Audit,
    Outbox,
    Optouts,
    Staff,
    Files,
    Links,
    EmailChecks,
    PinWindows,
    LastChanges,
}

/// Changes that await sled, one per key: the last write to a key is all sled needs of it.
#[derive(Default)]
pub struct Pending {
    entries: std::collections::HashMap<(TreeId, Vec<u8>), Option<Vec<u8>>>,
    /// Bytes of the values held.
    bytes: usize,
}

impl Pending {
    /// Takes in one batch's writes, in order; with the batch's log record (`payload`), each
    /// stored record is copied out of it rather than encoded a second time.
    pub fn fold(&mut self, writes: &[Write], payload: Option<&Payload>) {
        use TreeId as T;
        let payload = payload.filter(|p| p.bounds.len() == writes.len() + 1);
        for (n, w) in writes.iter().enumerate() {
            // A stored record is its write's last field, so its bytes end the write's in the
            // log record, after the variant's tag (and, for some, a number before the record).
            let record = |after_tag: Option<u64>, encode: &dyn Fn() -> Vec<u8>| match payload
                .and_then(|p| p.record(n, after_tag))
            {
                Some(v) => {
                    debug_assert_eq!(v, encode(), "a record cut from its log record differs from its encoding");
                    v
                }
                None => encode(),
            };
            let (tree, key, value): (TreeId, Vec<u8>, Option<Vec<u8>>) = match w {
                Write::Institution(i) => {
                    (T::Institutions, i.code.as_bytes().to_vec(), Some(record(None, &|| encode(i.as_ref()))))
                }
                Write::Patron(p) => {
                    (T::Patrons, p.id.to_be_bytes().to_vec(), Some(record(None, &|| encode(p.as_ref()))))
                }
                Write::PatronV2(p) => {
                    let p = Patron::from(p.as_ref().clone());
                    (T::Patrons, p.id.to_be_bytes().to_vec(), Some(encode(&p)))
                }
                Write::File(patron, id, bytes) => (T::Files, file_key(*patron, *id), Some(bytes.clone())),
                Write::RemoveFile(patron, id) => (T::Files, file_key(*patron, *id), None),
                Write::Link(l) => (T::Links, l.digest.as_bytes().to_vec(), Some(record(None, &|| encode(l.as_ref())))),
                Write::RemoveLink(d) => (T::Links, d.as_bytes().to_vec(), None),
                Write::EmailCheck(c) => {
                    (T::EmailChecks, c.digest.as_bytes().to_vec(), Some(record(None, &|| encode(c.as_ref()))))
                }
                Write::RemoveEmailCheck(d) => (T::EmailChecks, d.as_bytes().to_vec(), None),
                Write::RemovePatron(id) => (T::Patrons, id.to_be_bytes().to_vec(), None),
                Write::Item(i) => (T::Items, i.barcode.as_bytes().to_vec(), Some(record(None, &|| encode(i.as_ref())))),
                Write::RemoveItem(b) => (T::Items, b.as_bytes().to_vec(), None),
                Write::Loan(l) => (T::Loans, l.item.as_bytes().to_vec(), Some(record(None, &|| encode(l)))),
                Write::EndLoan(item) => (T::Loans, item.as_bytes().to_vec(), None),
                Write::Fee(f) => (T::Fees, f.id.to_be_bytes().to_vec(), Some(record(None, &|| encode(f.as_ref())))),
                Write::RemoveFee(id) => (T::Fees, id.to_be_bytes().to_vec(), None),
                Write::Hold(h) => (T::Holds, h.id.to_be_bytes().to_vec(), Some(record(None, &|| encode(h.as_ref())))),
                Write::RemoveHold(id) => (T::Holds, id.to_be_bytes().to_vec(), None),
                Write::Account(a) => {
                    (T::Accounts, a.login.as_bytes().to_vec(), Some(record(None, &|| encode(a.as_ref()))))
                }
                Write::RemoveAccount(login) => (T::Accounts, login.as_bytes().to_vec(), None),
                Write::Audit(seq, a) => {
                    (T::Audit, audit_key(a, *seq), Some(record(Some(*seq), &|| encode(a.as_ref()))))
                }
                Write::RemoveAudit(k) => (T::Audit, k.clone(), None),
                Write::Notice(n) => {
                    (T::Outbox, n.id.to_be_bytes().to_vec(), Some(record(None, &|| encode(n.as_ref()))))
                }
                Write::Optouts(patron, kinds) => (
                    T::Optouts,
                    patron.to_be_bytes().to_vec(),
                    (!kinds.is_empty()).then(|| record(Some(*patron), &|| encode(kinds))),
                ),
                Write::LastId(id) => (T::Meta, b"next_id".to_vec(), Some(id.to_be_bytes().to_vec())),
                Write::AuditSeq(seq) => (T::Meta, b"audit_seq".to_vec(), Some(seq.to_be_bytes().to_vec())),
                Write::Staff(m) => (T::Staff, m.login.as_bytes().to_vec(), Some(record(None, &|| encode(m.as_ref())))),
                Write::RemoveStaff(login) => (T::Staff, login.as_bytes().to_vec(), None),
                Write::PinWindow(w) => {
                    (T::PinWindows, w.terminal.as_bytes().to_vec(), Some(record(None, &|| encode(w.as_ref()))))
                }
                Write::LastChange(c) => {
                    (T::LastChanges, c.key().into_bytes(), Some(record(None, &|| encode(c.as_ref()))))
                }
                Write::RemoveLastChange(k) => (T::LastChanges, k.as_bytes().to_vec(), None),
            };
            self.bytes += key.len() + value.as_ref().map_or(0, Vec::len);
            self.entries.insert((tree, key), value);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Roughly the memory the values take (bytes).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Takes every change out, each tree's in key order: sled takes keys in order much faster
    /// (fewer node splits), and a million-record import is mostly new keys.
    pub fn take_sorted(&mut self) -> Sorted {
        // Each tree's vector made once at its size: grown by doubling instead, the large ones
        // of an import were copied over and over into fresh pages.
        let mut sizes = [0; TREES];
        for (tree, _) in self.entries.keys() {
            sizes[*tree as usize] += 1;
        }
        let mut out: [Vec<Change>; TREES] = sizes.map(Vec::with_capacity);
        for ((tree, key), value) in self.entries.drain() {
            out[tree as usize].push((key, value));
        }
        for v in &mut out {
            v.sort_unstable_by(|a, b| b.0.cmp(&a.0));
        }
        self.bytes = 0;
        Sorted { trees: out, carried: None }
    }
}

/// A key and its new value (none: removed).
pub type Change = (Vec<u8>, Option<Vec<u8>>);

/// Changes taken out of [`Pending`], per tree in key order, written a part at a time.
#[derive(Default)]
pub struct Sorted {
    trees: [Vec<Change>; TREES],
    /// The patron whose audit entries go on into the next part, with how many the parts so
    /// far added (less those they removed): cut once all are written.
    carried: Option<([u8; 8], isize)>,
}

impl Sorted {
    pub fn is_empty(&self) -> bool {
        self.trees.iter().all(Vec::is_empty)
    }

    /// Each tree's changes by the tree's name (keys in descending order).
    pub fn into_trees(self) -> impl Iterator<Item = (&'static str, Vec<Change>)> {
        TREE_NAMES.into_iter().zip(self.trees)
    }
}

/// A batch's writes as one log record's payload (bincode of the list), and where each
/// write's bytes end in it: a checkpoint copies each stored record out of it
/// ([`Pending::fold`]) instead of encoding the record again.
#[derive(Clone, Debug, Default)]
pub struct Payload {
    pub bytes: Vec<u8>,
    /// Where the writes begin (after the list's length), then where each one ends.
    bounds: Vec<usize>,
}

impl Payload {
    /// Encodes `writes` in place of what it held (keeping its buffers).
    pub fn encode(&mut self, writes: &[Write]) {
        self.bytes.clear();
        self.bounds.clear();
        // Written one write at a time: bincode lays a list down as its length and then each
        // element, so the bytes are the same as the list's in one go (a test holds them to it).
        put(&mut self.bytes, &(writes.len() as u64));
        self.bounds.push(self.bytes.len());
        for w in writes {
            put(&mut self.bytes, w);
            self.bounds.push(self.bytes.len());
        }
    }

    /// The `n`th write's record as the store keeps it: the version, then the write's bytes
    /// after its variant's tag and `after_tag` (a number the variant holds before the record).
    fn record(&self, n: usize, after_tag: Option<u64>) -> Option<Vec<u8>> {
        // bincode numbers a variant with a variable-length integer: one byte below 251.
        let head = 1 + after_tag.map_or(Some(0), |x| codec().serialized_size(&x).ok())? as usize;
        let (start, end) = (*self.bounds.get(n)?, *self.bounds.get(n + 1)?);
        let bytes = self.bytes.get(start + head..end)?;
        let mut v = Vec::with_capacity(1 + bytes.len());
        v.push(VERSION);
        v.extend_from_slice(bytes);
        Some(v)
    }
}

/// Appends `value`'s bincode to `out`.
fn put<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Serialising plain data into a Vec cannot fail.
    codec().serialize_into(out, value).unwrap_or_else(|e| unreachable!("bincode into a Vec: {e}"));
}

/// A log record's payload back as the batch's writes.
pub fn decode_batch(payload: &[u8]) -> Result<Vec<Write>, StoreError> {
    let writes: Vec<Write> =
        codec().deserialize(payload).map_err(|e| StoreError::Corrupt { kind: "log record", detail: e.to_string() })?;
    Ok(writes.into_iter().map(Write::current).collect())
}

/// A file's key: the patron, then the file's number, so a patron's files are one range.
pub(crate) fn file_key(patron: u64, id: u32) -> Vec<u8> {
    let mut k = patron.to_be_bytes().to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

pub(crate) fn read_u64(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_be_bytes)
}

/// The store's tunables, with their defaults.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Bytes of sled's page cache. Default 64 MiB: the engine reads records from its own
    /// working set; sled's cache serves only the checkpoints and the cold records.
    pub cache_bytes: u64,
    /// A log segment is closed, and a new one started, once it holds this many bytes.
    /// Default 64 MiB.
    pub segment_bytes: u64,
    /// sled is brought up to date with the log once this many bytes of log await it, or
    /// `checkpoint_interval` after the last checkpoint, whichever comes first. The log read
    /// back at start is at most about this long. Default 64 MiB.
    pub checkpoint_bytes: u64,
    /// Default 30 s.
    pub checkpoint_interval: std::time::Duration,
    /// How long after a failed log sync (or a failed checkpoint) the engine tries to reopen
    /// the log (or sled). Default 5 s.
    pub retry_interval: std::time::Duration,
    /// The niceness the checkpointer's thread runs at (0-19, default 10): the threads that
    /// answer kiosks take a busy core first, and checkpoints use what they leave.
    pub checkpoint_nice: u8,
    /// Faults injected by tests.
    pub faults: super::wal::Faults,
    /// How much of a patron's record anyone can make grow.
    pub limits: RegisterLimits,
    /// The PostgreSQL database the register is in, instead of the data directory's sled
    /// (default none).
    pub postgres: Option<super::pg::PgSettings>,
}

/// Caps on what a client (a kiosk, staff, an integration) can add to one patron, so that no
/// loop of requests grows the register without bound (`[register]` in the configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegisterLimits {
    /// Notes on one patron (default 200); one more is refused until staff remove some.
    pub max_notes_per_patron: u32,
    /// Holds one patron has at once (default 100); one more is refused.
    pub max_holds_per_patron: u32,
    /// Audit history entries kept per patron (default 10000): beyond that the oldest are
    /// removed as new ones are checkpointed, so the history rotates instead of growing.
    pub max_history_per_patron: u32,
    /// Contacts beyond the preferred ones on one patron (default 20).
    pub max_contacts_per_patron: u32,
    /// Statistical categories on one patron (default 50).
    pub max_statistics_per_patron: u32,
    /// Attachments on one patron (default 20).
    pub max_attachments_per_patron: u32,
    /// Bytes of one attachment (default 1 MiB); a larger one is refused.
    pub max_attachment_bytes: u32,
    /// Bytes of a patron's picture (default 256 KiB).
    pub max_picture_bytes: u32,
    /// How long the set-PIN link in a welcome works (default 72 hours).
    pub pin_link_hours: u32,
    /// "Forgot PIN" sends a patron at most one link in this many minutes (default 15); more
    /// asks meanwhile are answered the same and send nothing.
    pub forgot_pin_minutes: u32,
    /// How long the link that confirms a new e-mail address works (default 24 hours).
    pub email_link_hours: u32,
    /// Wrong staff passwords in a row that lock the account (default 5).
    pub staff_failures_before_lockout: u32,
    /// How long a locked staff account stays locked (default 15 minutes); `sip2d staff
    /// unlock` opens it sooner.
    pub staff_lockout_minutes: u32,
    /// How long the receipt of a terminal's last change from one address is kept once the
    /// terminal has changed something from another address since (default 24 hours): a
    /// kiosk retries within seconds, and addresses that change (DHCP) are not kept for ever.
    pub retry_receipt_hours: u32,
    /// Wrong PINs one terminal may send within `pin_window_secs` (default 20). Beyond that
    /// its PIN checks are refused untried, so one kiosk cannot walk the 10,000 four-digit
    /// PINs of many patrons; each patron's own lockout still holds. Counted in the register,
    /// so a kiosk that reconnects, or moves to another node, keeps its count. Set from
    /// `[limits] pin_failures_per_window`.
    #[serde(skip)]
    pub pin_failures_per_window: u32,
    /// The window of `pin_failures_per_window`, in seconds (default 600; `[limits] pin_window`).
    #[serde(skip)]
    pub pin_window_secs: u32,
}

impl RegisterLimits {
    /// The largest request body the staff listeners take: an attachment as base64 in JSON,
    /// or a picture in a form, with room for the rest of the request; at least 2 MiB.
    pub fn request_body_bytes(&self) -> usize {
        let file = self.max_attachment_bytes.max(self.max_picture_bytes) as usize;
        (file / 3 * 4 + 64 * 1024).max(2 * 1024 * 1024)
    }

    /// The staff login rule these limits set.
    pub fn lockout(&self) -> crate::domain::staff::Lockout {
        crate::domain::staff::Lockout {
            failures: self.staff_failures_before_lockout.max(1),
            duration: jiff::SignedDuration::from_mins(i64::from(self.staff_lockout_minutes)),
        }
    }
}

impl Default for RegisterLimits {
    fn default() -> RegisterLimits {
        RegisterLimits {
            max_notes_per_patron: 200,
            max_holds_per_patron: 100,
            max_history_per_patron: 10_000,
            max_contacts_per_patron: 20,
            max_statistics_per_patron: 50,
            max_attachments_per_patron: 20,
            max_attachment_bytes: 1024 * 1024,
            max_picture_bytes: 256 * 1024,
            pin_link_hours: 72,
            forgot_pin_minutes: 15,
            email_link_hours: 24,
            staff_failures_before_lockout: 5,
            staff_lockout_minutes: 15,
            retry_receipt_hours: 24,
            pin_failures_per_window: 20,
            pin_window_secs: 600,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            cache_bytes: 64 * 1024 * 1024,
            segment_bytes: 64 * 1024 * 1024,
            checkpoint_bytes: 64 * 1024 * 1024,
            checkpoint_interval: std::time::Duration::from_secs(30),
            retry_interval: std::time::Duration::from_secs(5),
            checkpoint_nice: 10,
            faults: Default::default(),
            limits: RegisterLimits::default(),
            postgres: None,
        }
    }
}

/// One change to the stored register. A batch of them is one log record (bincode), so a
/// change here is a change of the log's format (`wal::FORMAT`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum Write {
    Institution(Box<Institution>),
    /// A patron as logs written before store format 3 hold it; read, never written.
    PatronV2(Box<super::legacy::PatronV2>),
    RemovePatron(u64),
    Item(Arc<Item>),
    RemoveItem(String),
    /// Opens or replaces the loan of `loan.item`.
    Loan(Arc<Loan>),
    EndLoan(String),
    Fee(Box<Fee>),
    RemoveFee(u64),
    Hold(Box<Hold>),
    RemoveHold(u64),
    Account(Box<Account>),
    RemoveAccount(String),
    /// An audit entry, with the sequence number that keeps entries of one microsecond apart.
    Audit(u64, Box<AuditEntry>),
    /// Removes one stored audit entry (by its key, from [`Store::history`]).
    RemoveAudit(Vec<u8>),
    Notice(Box<Notice>),
    Optouts(u64, Vec<NoticeKind>),
    /// The last record id given out.
    LastId(u64),
    /// The last audit sequence number given out.
    AuditSeq(u64),
    // New variants go last: bincode numbers them in order, and logs written before hold the
    // numbers of the ones above.
    Staff(Box<Staff>),
    RemoveStaff(String),
    /// Adds or replaces a patron.
    Patron(Box<Patron>),
    /// A file of a patron's (the picture is 0), kept only in the store.
    File(u64, u32, Vec<u8>),
    RemoveFile(u64, u32),
    /// A patron's set-PIN link (by its token's digest).
    Link(Box<PinLink>),
    RemoveLink(String),
    /// A new e-mail address waiting for its link (by the token's digest).
    EmailCheck(Box<EmailCheck>),
    RemoveEmailCheck(String),
    /// A terminal's wrong PINs in its current window.
    PinWindow(Box<super::terminals::PinWindow>),
    /// The last change a terminal asked for from one address, for a retry.
    LastChange(Arc<super::terminals::LastChange>),
    /// Removes one (by its key, `terminals::change_key`).
    RemoveLastChange(String),
}

impl Write {
    /// The write as the current format has it (a log record of an older one read back).
    pub fn current(self) -> Write {
        match self {
            Write::PatronV2(p) => Write::Patron(Box::new(Patron::from(*p))),
            w => w,
        }
    }
}

/// The kinds of record the working set is loaded from.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Institution,
    Account,
    Patron,
    Item,
    Loan,
    Fee,
    Hold,
    Staff,
    Link,
    EmailCheck,
    PinWindow,
    LastChange,
}

/// Everything the working set is built from (tests build a state from one).
#[derive(Default)]
pub struct Loaded {
    pub institutions: Vec<Institution>,
    pub accounts: Vec<Account>,
    pub staff: Vec<Staff>,
    pub patrons: Vec<Patron>,
    pub items: Vec<Item>,
    pub loans: Vec<Loan>,
    pub fees: Vec<Fee>,
    pub holds: Vec<Hold>,
    pub optouts: Vec<(u64, Vec<NoticeKind>)>,
    pub links: Vec<PinLink>,
    pub email_checks: Vec<EmailCheck>,
    pub pin_windows: Vec<super::terminals::PinWindow>,
    pub last_changes: Vec<super::terminals::LastChange>,
    pub last_id: u64,
    pub audit_seq: u64,
}

/// The sled database and its trees.
pub struct Store {
    path: PathBuf,
    db: sled::Db,
    meta: Tree,
    institutions: Tree,
    patrons: Tree,
    items: Tree,
    loans: Tree,
    fees: Tree,
    holds: Tree,
    accounts: Tree,
    /// patron id ++ time (µs) ++ sequence -> AuditEntry
    audit: Tree,
    /// notice id -> Notice
    outbox: Tree,
    /// login -> Staff
    staff: Tree,
    /// patron id -> the notice kinds they opted out of
    optouts: Tree,
    /// patron id, file number -> the file's bytes
    files: Tree,
    /// token digest -> a patron's set-PIN link
    links: Tree,
    email_checks: Tree,
    /// terminal login -> its wrong PINs in the current window
    pin_windows: Tree,
    /// terminal login, NUL, address -> the last change it asked for from there
    last_changes: Tree,
    fail_flushes: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Audit entries kept per patron.
    history_cap: usize,
    /// Each patron's stored audit entries, once counted (see [`Store::rotate_history`]).
    history_counts: std::sync::Mutex<std::collections::HashMap<[u8; 8], usize>>,
}

/// Removals of a history's cut written to sled at a time.
const CUT_BATCH: usize = 256;

/// Audit key: patron, time, then a sequence number, so that entries sort by time and two in
/// the same microsecond both survive.
fn audit_key(e: &AuditEntry, seq: u64) -> Vec<u8> {
    let mut k = e.patron.to_be_bytes().to_vec();
    k.extend_from_slice(&e.at.as_microsecond().to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path, settings: &StoreConfig) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Open { path: dir.to_path_buf(), source: e.into() })?;
        let config = sled::Config::new()
            .path(dir.join(DIR))
            .cache_capacity(settings.cache_bytes)
            .mode(sled::Mode::HighThroughput);
        // sled releases its file lock a moment after a `Db` is dropped (its flusher thread still
        // holds the file), so a store closed and reopened in one process can briefly look locked.
        // Wait that out; a lock still held after about a second belongs to another process.
        let mut wait = std::time::Duration::from_millis(5);
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                Err(sled::Error::Io(io))
                    if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock") =>
                {
                    if wait > std::time::Duration::from_millis(640) {
                        return Err(StoreError::Locked { path: dir.to_path_buf() });
                    }
                    std::thread::sleep(wait);
                    wait *= 2;
                }
                Err(e) => return Err(StoreError::Open { path: dir.to_path_buf(), source: e }),
            }
        };
        for old in OLD_INDEXES {
            if db.tree_names().iter().any(|n| n.as_ref() == old.as_bytes()) {
                db.drop_tree(old)?;
            }
        }
        let tree = |name: &str| db.open_tree(name);
        Ok(Store {
            path: dir.to_path_buf(),
            meta: tree("meta")?,
            institutions: tree("institutions")?,
            patrons: tree("patrons")?,
            items: tree("items")?,
            loans: tree("loans")?,
            fees: tree("fees")?,
            holds: tree("holds")?,
            accounts: tree("accounts")?,
            audit: tree("audit")?,
            outbox: tree("outbox")?,
            optouts: tree("optouts")?,
            staff: tree("staff")?,
            files: tree("files")?,
            links: tree("links")?,
            email_checks: tree("email_checks")?,
            pin_windows: tree("pin_windows")?,
            last_changes: tree("last_changes")?,
            fail_flushes: settings.faults.fail_checkpoints.clone(),
            history_cap: settings.limits.max_history_per_patron as usize,
            history_counts: Default::default(),
            db,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every stored record of one kind, in key order, read as it is wanted (a million patrons
    /// are not gathered into a list first).
    pub fn records<T: Record>(&self, kind: Kind) -> impl Iterator<Item = Result<T, StoreError>> + '_ {
        let (tree, name) = match kind {
            Kind::Institution => (&self.institutions, "institution"),
            Kind::Account => (&self.accounts, "account"),
            Kind::Patron => (&self.patrons, "patron"),
            Kind::Item => (&self.items, "item"),
            Kind::Loan => (&self.loans, "loan"),
            Kind::Fee => (&self.fees, "fee"),
            Kind::Hold => (&self.holds, "hold"),
            Kind::Staff => (&self.staff, "staff account"),
            Kind::Link => (&self.links, "set-PIN link"),
            Kind::EmailCheck => (&self.email_checks, "e-mail check"),
            Kind::PinWindow => (&self.pin_windows, "terminal PIN window"),
            Kind::LastChange => (&self.last_changes, "terminal's last change"),
        };
        tree.iter().values().map(move |v| decode(name, &v?))
    }

    /// The opt-outs of every patron who has any.
    pub fn optouts(&self) -> Result<Vec<(u64, Vec<NoticeKind>)>, StoreError> {
        let mut optouts = Vec::new();
        for kv in self.optouts.iter() {
            let (k, v) = kv?;
            let id = read_u64(&k).ok_or(StoreError::Corrupt { kind: "opt-outs", detail: "key".into() })?;
            optouts.push((id, decode("opt-outs", &v)?));
        }
        Ok(optouts)
    }

    /// The last record id given out, and the last audit sequence number.
    pub fn counters(&self) -> Result<(u64, u64), StoreError> {
        let counter =
            |key: &[u8]| -> Result<u64, StoreError> { Ok(self.meta.get(key)?.and_then(|b| read_u64(&b)).unwrap_or(0)) };
        let last_id = counter(b"next_id")?;
        // Earlier versions numbered audit entries from the record ids.
        Ok((last_id, counter(b"audit_seq")?.max(last_id)))
    }

    /// A patron's audit history with each entry's storage key, oldest first.
    pub fn history(&self, patron: u64) -> Result<Vec<(Vec<u8>, AuditEntry)>, StoreError> {
        self.audit
            .scan_prefix(patron.to_be_bytes())
            .map(|kv| {
                let (k, v) = kv?;
                Ok((k.to_vec(), decode("audit entry", &v)?))
            })
            .collect()
    }

    /// One of a patron's files (the picture is 0).
    pub fn file(&self, patron: u64, id: u32) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.files.get(file_key(patron, id))?.map(|v| v.to_vec()))
    }

    /// The outbox, oldest first.
    pub fn notices(&self) -> Result<Vec<Notice>, StoreError> {
        self.outbox.iter().values().map(|v| decode("notice", &v?)).collect()
    }

    pub fn notice(&self, id: u64) -> Result<Option<Notice>, StoreError> {
        self.outbox.get(id.to_be_bytes())?.map(|v| decode("notice", &v)).transpose()
    }

    /// Bytes the store takes on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }

    /// Writes what `pending` holds (not synced: [`Store::checkpoint`]). Not one transaction
    /// across trees: the log is what makes a batch atomic, and replaying it puts right a
    /// checkpoint a crash cut short.
    pub fn apply(&self, pending: &mut Pending) -> Result<(), StoreError> {
        let mut sorted = self.take_sorted(pending);
        while !sorted.is_empty() {
            self.apply_some(&mut sorted, usize::MAX)?;
        }
        Ok(())
    }

    /// `pending`'s changes taken out in key order, as they are to be written: without the
    /// audit entries the history's cut would take at once.
    pub fn take_sorted(&self, pending: &mut Pending) -> Sorted {
        let mut sorted = pending.take_sorted();
        self.drop_entries_past_the_cap(&mut sorted);
        sorted
    }

    /// Drops from `sorted` each new audit entry that has `history_cap` or more of the
    /// patron's new entries after it: the cut to the cap ([`Store::rotate_history`]) would take
    /// it at once. A patron with more new entries in one checkpoint than the cap (a busy
    /// account, a long interval) would have them written to sled only to be removed again.
    /// Exact whatever sled holds: the entries after it are written and stay, so it could never
    /// be among the newest `history_cap`; stored already (a replay after a crash), it is cut as
    /// before.
    fn drop_entries_past_the_cap(&self, sorted: &mut Sorted) {
        let cap = self.history_cap;
        let (mut patron, mut newer) = (None, 0usize);
        // In descending order: each patron's newest first.
        sorted.trees[TreeId::Audit as usize].retain(|(key, value)| {
            let p = key.first_chunk::<8>();
            if p != patron.as_ref() {
                (patron, newer) = (p.copied(), 0);
            }
            if value.is_none() || p.is_none() {
                return true;
            }
            newer += 1;
            newer <= cap
        });
    }

    /// Writes up to `most` of `sorted`'s changes, removing them from it.
    pub fn apply_some(&self, sorted: &mut Sorted, most: usize) -> Result<(), StoreError> {
        let trees = self.trees();
        let mut left = most;
        for (tree, changes) in trees.iter().zip(sorted.trees.iter_mut()) {
            if left == 0 {
                break;
            }
            let n = changes.len().min(left);
            let mut batch = sled::Batch::default();
            // Kept in descending order, so the smallest keys are at the end to be split off.
            let chunk = changes.split_off(changes.len() - n);
            // Per audited patron: how many entries this part adds (less those it removes).
            let mut audited = std::collections::BTreeMap::<[u8; 8], isize>::new();
            if std::ptr::eq(*tree, &self.audit) {
                let counts = self.history_counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                for (k, v) in &chunk {
                    let Some(p) = k.first_chunk::<8>() else { continue };
                    // A patron not counted yet is counted by a scan once written: no need to look.
                    let change = match counts.contains_key(p) {
                        true => match (v.is_some(), self.audit.contains_key(k)?) {
                            (true, false) => 1,
                            (false, true) => -1,
                            _ => 0,
                        },
                        false => 0,
                    };
                    *audited.entry(*p).or_default() += change;
                }
                drop(counts);
                if let Some((p, change)) = sorted.carried.take() {
                    *audited.entry(p).or_default() += change;
                }
                // A patron whose changes go on into the next part is cut once they are all
                // written, its count carried till then: cut before a removal that comes later
                // in key order, a history could end shorter than the cap. (A part that fails
                // takes the store, and the counts, with it: the checkpointer opens sled again.)
                let goes_on = chunk.first().zip(changes.last()).and_then(|((a, _), (b, _))| {
                    a.first_chunk::<8>().filter(|p| b.first_chunk::<8>() == Some(*p)).copied()
                });
                if let Some(p) = goes_on {
                    sorted.carried = audited.remove(&p).map(|change| (p, change));
                }
            }
            for (key, value) in chunk.into_iter().rev() {
                match value {
                    Some(v) => batch.insert(key, v),
                    None => batch.remove(key),
                }
            }
            left -= n;
            tree.apply_batch(batch)?;
            if !audited.is_empty() {
                self.rotate_history(&audited)?;
            }
        }
        Ok(())
    }

    /// Removes each patron's oldest audit entries beyond the cap. A patron's entries are
    /// counted once, by a scan, and then kept count of (`audited` says by how many each part
    /// changed them), so the cut reads only the keys it removes: a scan of every history at
    /// every checkpoint had cost more than the rest of the checkpoint (docs/BENCHMARKS.md).
    fn rotate_history(&self, audited: &std::collections::BTreeMap<[u8; 8], isize>) -> Result<(), StoreError> {
        let mut counts = self.history_counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (p, change) in audited {
            // Taken out until the cut is made: if it fails, the patron is counted afresh.
            let n = match counts.remove(p) {
                Some(n) => n.saturating_add_signed(*change),
                None => self.audit.scan_prefix(p).keys().try_fold(0, |n, k| k.map(|_| n + 1))?,
            };
            // Keys sort by patron, then time: the oldest are the first ones.
            let over = n.saturating_sub(self.history_cap);
            // In batches of a part's size: one batch of thousands (a busy patron's cut, made
            // once all its entries are written) costs sled more an entry.
            let (mut batch, mut held) = (sled::Batch::default(), 0);
            for key in self.audit.scan_prefix(p).keys().take(over) {
                batch.remove(key?);
                held += 1;
                if held == CUT_BATCH {
                    self.audit.apply_batch(std::mem::take(&mut batch))?;
                    held = 0;
                }
            }
            // What the batch holds, not what `over` says: a history shorter than its count
            // (a count gone stale) still has its last removals written.
            if held > 0 {
                self.audit.apply_batch(batch)?;
            }
            counts.insert(*p, n - over);
        }
        Ok(())
    }

    fn trees(&self) -> [&Tree; TREES] {
        [
            &self.meta,
            &self.institutions,
            &self.patrons,
            &self.items,
            &self.loans,
            &self.fees,
            &self.holds,
            &self.accounts,
            &self.audit,
            &self.outbox,
            &self.optouts,
            &self.staff,
            &self.files,
            &self.links,
            &self.email_checks,
            &self.pin_windows,
            &self.last_changes,
        ]
    }

    /// Every entry of the tree named `name` (of [`TREE_NAMES`]), in key order, as stored.
    pub fn raw(&self, name: &str) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + '_ {
        let tree = TREE_NAMES.iter().position(|n| *n == name).map(|i| self.trees()[i]);
        tree.into_iter().flat_map(|t| t.iter().map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(Into::into)))
    }

    /// Puts entries, as stored elsewhere, into the tree named `name` (not synced: [`Store::checkpoint`]).
    pub fn put_raw(&self, name: &str, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<(), StoreError> {
        let Some(i) = TREE_NAMES.iter().position(|n| *n == name) else {
            return Err(StoreError::Corrupt { kind: "tree", detail: format!("no tree {name}") });
        };
        let mut batch = sled::Batch::default();
        for (k, v) in entries {
            batch.insert(k.as_slice(), v.as_slice());
        }
        self.trees()[i].apply_batch(batch)?;
        // Histories written this way are counted afresh when next audited.
        self.history_counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        Ok(())
    }

    /// The last log record sled holds (all batches up to it, flushed).
    pub fn applied(&self) -> Result<u64, StoreError> {
        Ok(self.meta.get(APPLIED)?.and_then(|b| read_u64(&b)).unwrap_or(0))
    }

    /// Makes everything applied durable, then records that sled holds the log up to `seq`.
    pub fn checkpoint(&self, seq: u64) -> Result<(), StoreError> {
        self.flush()?;
        self.meta.insert(APPLIED, &seq.to_be_bytes())?;
        self.flush()
    }

    /// Makes every applied change durable (an fsync of sled's log).
    fn flush(&self) -> Result<(), StoreError> {
        if self.fail_flushes.as_ref().is_some_and(|f| f.load(std::sync::atomic::Ordering::SeqCst)) {
            return Err(StoreError::Io(sled::Error::Io(std::io::Error::other("injected sled failure"))));
        }
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(patron: u64, seq: u64) -> Write {
        let at = jiff::Timestamp::from_second(1_800_000_000 + seq as i64).unwrap();
        let e = AuditEntry { patron, at, by: "desk".into(), action: format!("e{seq}"), changes: Vec::new() };
        Write::Audit(seq, Box::new(e))
    }

    fn actions(store: &Store, patron: u64) -> Vec<String> {
        store.history(patron).unwrap().into_iter().map(|(_, e)| e.action).collect()
    }

    fn apply_in_parts(store: &Store, writes: &[Write]) {
        let mut pending = Pending::default();
        pending.fold(writes, None);
        let mut sorted = pending.take_sorted();
        while !sorted.is_empty() {
            store.apply_some(&mut sorted, 2).unwrap();
        }
    }

    /// Histories are cut to the cap at every checkpoint from a count kept between them: entries
    /// added in parts, one written again (as a replay after a crash does) and one removed leave
    /// exactly the newest `cap` each time.
    #[test]
    fn histories_are_cut_to_the_cap_from_a_count_kept_between_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let limits = RegisterLimits { max_history_per_patron: 5, ..Default::default() };
        let store = Store::open(dir.path(), &StoreConfig { limits, ..Default::default() }).unwrap();
        let newest = |from: u64, to: u64| (from..=to).map(|s| format!("e{s}")).collect::<Vec<_>>();
        let mut seq = 0;
        for round in 1..=4u64 {
            let writes: Vec<Write> = (seq + 1..=seq + 3).map(|s| entry(1, s)).collect();
            seq += 3;
            apply_in_parts(&store, &[writes, vec![entry(2, 1000 + round)]].concat());
            assert_eq!(actions(&store, 1), newest(seq.saturating_sub(4).max(1), seq), "round {round}");
        }
        assert_eq!(actions(&store, 2).len(), 4);
        // The newest entry written again, with one new one: only the oldest goes.
        apply_in_parts(&store, &[entry(1, seq), entry(1, seq + 1)]);
        seq += 1;
        assert_eq!(actions(&store, 1), newest(seq - 4, seq));
        // One removed, then one added: five again, none lost to a stale count.
        let (oldest, _) = store.history(1).unwrap().remove(0);
        apply_in_parts(&store, &[Write::RemoveAudit(oldest)]);
        assert_eq!(actions(&store, 1), newest(seq - 3, seq));
        apply_in_parts(&store, &[entry(1, seq + 1)]);
        seq += 1;
        assert_eq!(actions(&store, 1), newest(seq - 4, seq));
    }

    fn entry_at(patron: u64, second: i64, seq: u64) -> Write {
        let at = jiff::Timestamp::from_second(1_800_000_000 + second).unwrap();
        let e = AuditEntry { patron, at, by: "desk".into(), action: format!("e{second}.{seq}"), changes: Vec::new() };
        Write::Audit(seq, Box::new(e))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(40))]
        /// Each history holds its patron's newest `cap` entries of all ever written and not
        /// removed, whether entries past the cap are dropped before the checkpoint or written and
        /// cut: two stores take the same checkpoints, one with the drop, with new entries older
        /// than stored ones, entries written again (a replay after a crash), entries removed, two
        /// patrons, in parts of any size.
        #[test]
        fn entries_dropped_past_the_cap_leave_the_histories_writing_them_would(
            rounds in proptest::collection::vec(
                (proptest::collection::vec((1u64..3, 0i64..30, proptest::bool::ANY), 0..24),
                 proptest::collection::vec(0usize..6, 0..3), 1usize..9),
                1..4,
            ),
        ) {
            let cap = 4;
            let limits = RegisterLimits { max_history_per_patron: cap, ..Default::default() };
            let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
            let open = |d: &tempfile::TempDir| Store::open(d.path(), &StoreConfig { limits, ..Default::default() }).unwrap();
            let (dropping, writing) = (open(&dirs[0]), open(&dirs[1]));
            let mut seq = 0;
            let mut written: Vec<Write> = Vec::new();
            // What each history holds: every write made, then each patron's newest `cap` kept.
            let mut model = std::collections::BTreeMap::<Vec<u8>, String>::new();
            for (added, removals, part) in rounds {
                let mut writes = Vec::new();
                for patron in 1..3u64 {
                    let stored = writing.history(patron).unwrap();
                    for r in &removals {
                        if let Some((k, _)) = stored.get(*r) {
                            writes.push(Write::RemoveAudit(k.clone()));
                        }
                    }
                }
                for (patron, second, again) in added {
                    // Again: one of the entries written in an earlier round, its key and record.
                    match written.iter().find(|w| matches!(w, Write::Audit(_, e) if e.patron == patron && again)) {
                        Some(Write::Audit(s, e)) => writes.push(Write::Audit(*s, e.clone())),
                        _ => {
                            seq += 1;
                            writes.push(entry_at(patron, second, seq));
                        }
                    }
                }
                written.extend(writes.iter().filter_map(|w| match w {
                    Write::Audit(s, e) => Some(Write::Audit(*s, e.clone())),
                    _ => None,
                }));
                for (store, drop) in [(&dropping, true), (&writing, false)] {
                    let mut pending = Pending::default();
                    pending.fold(&writes, None);
                    let mut sorted = pending.take_sorted();
                    if drop {
                        store.drop_entries_past_the_cap(&mut sorted);
                    }
                    while !sorted.is_empty() {
                        store.apply_some(&mut sorted, part).unwrap();
                    }
                }
                for w in &writes {
                    match w {
                        Write::Audit(s, e) => model.insert(audit_key(e, *s), e.action.clone()),
                        Write::RemoveAudit(k) => model.remove(k),
                        _ => None,
                    };
                }
                for patron in 1..3u64 {
                    let p = patron.to_be_bytes();
                    let all: Vec<String> = model.iter().filter(|(k, _)| k[..8] == p).map(|(_, a)| a.clone()).collect();
                    let newest = all[all.len().saturating_sub(cap as usize)..].to_vec();
                    model.retain(|k, a| k[..8] != p || newest.contains(a));
                    proptest::prop_assert_eq!(actions(&writing, patron), newest.clone());
                    proptest::prop_assert_eq!(actions(&dropping, patron), newest);
                }
            }
        }
    }

    /// A cut of more entries than one removal batch holds (the cap lowered under a long
    /// history) takes exactly the oldest, whatever the batch boundaries.
    #[test]
    fn a_cut_larger_than_a_batch_leaves_the_newest_up_to_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let open = |cap| {
            let limits = RegisterLimits { max_history_per_patron: cap, ..Default::default() };
            Store::open(dir.path(), &StoreConfig { limits, ..Default::default() }).unwrap()
        };
        let n = 2 * CUT_BATCH as u64 + 37;
        let store = open(1000);
        apply_in_parts(&store, &(1..=n).map(|s| entry_at(1, s as i64, s)).collect::<Vec<_>>());
        assert_eq!(actions(&store, 1).len(), n as usize);
        drop(store);
        let store = open(10);
        apply_in_parts(&store, &[entry_at(1, n as i64 + 1, n + 1)]);
        let want: Vec<String> = (n - 8..=n + 1).map(|s| format!("e{s}.{s}")).collect();
        assert_eq!(actions(&store, 1), want);
    }

    /// More new entries for one patron than the cap: only the newest `cap` are written, and
    /// removals are kept whatever their place.
    #[test]
    fn only_the_newest_entries_up_to_the_cap_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let limits = RegisterLimits { max_history_per_patron: 3, ..Default::default() };
        let store = Store::open(dir.path(), &StoreConfig { limits, ..Default::default() }).unwrap();
        let mut writes: Vec<Write> = (1..=6).map(|s| entry_at(1, s as i64, s)).collect();
        writes.push(entry_at(2, 1, 7));
        let Write::Audit(seq, e) = entry_at(1, 0, 99) else { unreachable!() };
        writes.push(Write::RemoveAudit(audit_key(&e, seq)));
        let mut pending = Pending::default();
        pending.fold(&writes, None);
        let mut sorted = pending.take_sorted();
        store.drop_entries_past_the_cap(&mut sorted);
        let audit: Vec<(Vec<u8>, bool)> =
            sorted.trees[TreeId::Audit as usize].iter().map(|(k, v)| (k.clone(), v.is_some())).collect();
        assert_eq!(audit.len(), 5, "three of patron 1's six, patron 2's one, the removal");
        assert_eq!(audit.iter().filter(|(_, v)| !v).count(), 1);
        store.apply_some(&mut sorted, usize::MAX).unwrap();
        assert_eq!(actions(&store, 1), ["e4.4", "e5.5", "e6.6"]);
        assert_eq!(actions(&store, 2), ["e1.7"]);
    }

    /// A checkpoint copies each record out of the batch's log record: the log record is the
    /// list's bincode as before, and every record cut from it is the record's own encoding,
    /// numbers before the record of every width included.
    #[test]
    fn records_cut_from_the_log_record_are_the_records_encoded() {
        let at = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let item = Item {
            barcode: "31000000000001".into(),
            institution: "MAIN".into(),
            title: "Dune".into(),
            author: Some("Herbert".into()),
            call_number: None,
            location: Some("Floor 1".into()),
            media_type: 1,
            status: crate::domain::ItemStatus::OnLoan,
            security_marker: 2,
            rental_fee: None,
            loan_days: Some(21),
            properties: None,
        };
        let loan = Loan { item: item.barcode.clone(), patron: 70_000, out: at, due: at, renewals: 1 };
        let writes = vec![
            entry(1, 5),
            entry(2, 70_000),
            entry(3, u64::MAX),
            Write::Item(Arc::new(item.clone())),
            Write::Loan(Arc::new(loan)),
            Write::Optouts(300, vec![NoticeKind::Welcome, NoticeKind::TransferAccepted]),
            Write::Optouts(1 << 40, Vec::new()),
            Write::RemoveItem(item.barcode),
            Write::LastId(1 << 33),
        ];
        let mut payload = Payload::default();
        // Reused, as the writer reuses it: nothing of an earlier batch is left.
        payload.encode(&[entry(9, 9)]);
        payload.encode(&writes);
        assert_eq!(payload.bytes, codec().serialize(&writes).unwrap());
        assert_eq!(decode_batch(&payload.bytes).unwrap().len(), writes.len());
        let sorted = |payload: Option<&Payload>| {
            let mut pending = Pending::default();
            pending.fold(&writes, payload);
            pending.take_sorted().into_trees().collect::<Vec<_>>()
        };
        let (cut, encoded) = (sorted(Some(&payload)), sorted(None));
        assert_eq!(cut.iter().map(|(_, c)| c.len()).sum::<usize>(), 8);
        assert_eq!(cut, encoded);
        // A payload of another batch is not taken for this one.
        let mut other = Payload::default();
        other.encode(&writes[..2]);
        assert_eq!(sorted(Some(&other)), encoded);
    }
}
