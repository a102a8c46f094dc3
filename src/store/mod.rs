//! The register's durable store: sled, one tree per record kind, secondary indexes kept in the
//! same transactions as the records, values as a version byte plus bincode.
//!
//! Callers speak domain terms (add a patron, find by barcode); nothing outside this module knows
//! it is sled, so another engine can replace it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bincode::Options;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::{Transactional, Tree};

use crate::domain::validate::Invalid;
use crate::domain::{Account, AuditEntry, Fee, Hold, Institution, Item, Loan, Notice, NoticeKind, Patron};

/// Format version written before every value, so records can evolve. 2: bincode with
/// variable-length integers (lengths and small numbers take one byte: records a third smaller,
/// so more of them fit in the cache and sled copies less on each write).
const VERSION: u8 = 2;

fn codec() -> impl bincode::Options {
    bincode::DefaultOptions::new()
}

/// Why a store operation did not happen. Refusals name what is wrong; nothing is half-written.
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
    #[error("no institution '{0}'")]
    NoInstitution(String),
    #[error("institution '{0}' exists already")]
    InstitutionExists(String),
    #[error("no patron {0}")]
    NoPatron(String),
    #[error("{what} '{value}' is already used by patron {patron} at {institution}")]
    Taken { what: &'static str, value: String, institution: String, patron: u64 },
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("{0}")]
    Refused(String),
    /// What was named (an item, fee, hold, account) does not exist.
    #[error("{0}")]
    NotFound(String),
}

/// Encodes a record: version byte, then bincode.
fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![VERSION];
    // Serialising plain data into a Vec cannot fail.
    codec().serialize_into(&mut out, value).unwrap_or_else(|e| unreachable!("bincode into a Vec: {e}"));
    out
}

fn decode<T: DeserializeOwned>(kind: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&VERSION, rest)) => {
            codec().deserialize(rest).map_err(|e| StoreError::Corrupt { kind, detail: e.to_string() })
        }
        Some((v, _)) => Err(StoreError::Corrupt { kind, detail: format!("format version {v}") }),
        None => Err(StoreError::Corrupt { kind, detail: "empty value".into() }),
    }
}

/// An index key: institution, a NUL, then the value (values cannot hold NUL: validation forbids
/// control characters).
fn scoped(institution: &str, value: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(institution.len() + 1 + value.len());
    k.extend_from_slice(institution.as_bytes());
    k.push(0);
    k.extend_from_slice(value.as_bytes());
    k
}

fn email_key(institution: &str, email: &str) -> Vec<u8> {
    scoped(institution, &email.to_lowercase())
}

/// Name index key: last and first name lower-cased, birth date, id; finds duplicates and serves
/// name searches by prefix.
fn name_key(p: &Patron) -> Vec<u8> {
    let birth = p.birth_date.map(|d| d.to_string()).unwrap_or_default();
    let mut k =
        scoped(&p.institution, &format!("{}\0{}\0{birth}\0", p.last_name.to_lowercase(), p.first_name.to_lowercase()));
    k.extend_from_slice(&p.id.to_be_bytes());
    k
}

/// The directory sled keeps its files in, inside the data directory.
pub const DIR: &str = "db";

/// The store's tunables, with their defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Bytes of sled's page cache. Default 512 MiB: enough to keep 1 M patrons' indexes and
    /// records warm, and with sled's own overhead still under 2 GiB while importing them.
    pub cache_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig { cache_bytes: 512 * 1024 * 1024 }
    }
}

/// One change in an atomic group of changes (see [`Store::apply`]).
#[derive(Clone, Debug)]
pub enum Write {
    Institution(Institution),
    /// A new or changed patron; its indexes follow, and unique values are claimed.
    Patron(Box<Patron>),
    /// Removes a patron for good, with its index entries.
    RemovePatron(u64),
    Item(Item),
    RemoveItem(String),
    /// Opens or replaces the loan of `loan.item`.
    Loan(Loan),
    /// Ends the loan of this item.
    EndLoan(String),
    Fee(Fee),
    RemoveFee(u64),
    Hold(Hold),
    RemoveHold(u64),
    Account(Account),
    RemoveAccount(String),
    Audit(AuditEntry),
    /// Removes one stored audit entry (by its key, from [`Store::history_keys`]).
    RemoveAudit(Vec<u8>),
    /// A notice for the outbox, committed with the change it reports.
    Notice(Box<Notice>),
}

/// The sled database and its trees. Clones share the database (sled handles are shared).
#[derive(Clone)]
pub struct Store {
    path: PathBuf,
    db: sled::Db,
    /// Counters and settings of the store itself.
    meta: Tree,
    institutions: Tree,
    patrons: Tree,
    /// institution \0 identifier value (primary id, barcodes, other ids) -> patron id
    identifiers: Tree,
    /// institution \0 lower-cased e-mail -> patron id
    emails: Tree,
    /// institution \0 last \0 first \0 birth \0 id -> ()
    names: Tree,
    items: Tree,
    fees: Tree,
    /// patron id ++ fee id -> ()
    fees_by_patron: Tree,
    /// patron id ++ timestamp ++ sequence -> AuditEntry
    audit: Tree,
    /// item barcode -> Loan
    loans: Tree,
    /// patron id ++ item barcode -> ()
    loans_by_patron: Tree,
    /// hold id -> Hold
    holds: Tree,
    /// patron id ++ hold id -> ()
    holds_by_patron: Tree,
    /// item barcode \0 placed (µs) ++ hold id -> ()
    holds_by_item: Tree,
    /// terminal login -> Account
    accounts: Tree,
    /// notice id -> Notice (the outbox)
    outbox: Tree,
    /// patron id -> the notice kinds they opted out of
    optouts: Tree,
    /// Shares one disk sync among writers that ask for it at the same time.
    commits: Arc<GroupCommit>,
    /// When set, `flush` only notes on the calling thread that a sync is owed (see
    /// [`Store::defer_flushes`]).
    deferred: Arc<std::sync::atomic::AtomicBool>,
}

thread_local! {
    /// Set by a deferred `flush` on this thread; taken by [`Store::take_owed_sync`].
    static SYNC_OWED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Group commit: a writer that asks for durability while a sync is running waits for the
/// next one, and that next sync covers every writer that arrived meanwhile. Under load one
/// fdatasync serves many requests, and an idle store still syncs each write at once.
#[derive(Default)]
struct GroupCommit {
    state: std::sync::Mutex<CommitState>,
    synced: std::sync::Condvar,
}

#[derive(Default)]
struct CommitState {
    /// Tickets handed out: one per `flush` call.
    asked: u64,
    /// Every ticket up to this one is durable.
    done: u64,
    /// A sync is running.
    syncing: bool,
    /// How many syncs have run (for the benchmarks and tests).
    syncs: u64,
}

impl GroupCommit {
    fn lock(&self) -> std::sync::MutexGuard<'_, CommitState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn flush(&self, sync: impl Fn() -> Result<(), StoreError>) -> Result<(), StoreError> {
        let mut st = self.lock();
        st.asked += 1;
        // Writes before this call are applied; any sync that starts from now on covers them.
        let ticket = st.asked;
        loop {
            if st.done >= ticket {
                return Ok(());
            }
            if !st.syncing {
                st.syncing = true;
                let upto = st.asked;
                drop(st);
                let result = sync();
                st = self.lock();
                st.syncing = false;
                st.syncs += 1;
                if result.is_ok() {
                    st.done = st.done.max(upto);
                }
                self.synced.notify_all();
                // A failed sync fails its leader; the waiters try again with their own.
                result?;
                continue;
            }
            st = self.synced.wait(st).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

fn abort<T>(e: StoreError) -> Result<T, ConflictableTransactionError<StoreError>> {
    Err(ConflictableTransactionError::Abort(e))
}

fn tx_result<T>(r: Result<T, TransactionError<StoreError>>) -> Result<T, StoreError> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Io(e),
    })
}

/// Reads and decodes one record inside a transaction.
fn tx_get<T: DeserializeOwned>(
    tree: &TransactionalTree,
    kind: &'static str,
    key: &[u8],
) -> Result<Option<T>, ConflictableTransactionError<StoreError>> {
    match tree.get(key)? {
        Some(v) => decode(kind, &v).map(Some).map_err(ConflictableTransactionError::Abort),
        None => Ok(None),
    }
}

/// A record id stored as 8 big-endian bytes (an index value).
fn read_id(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_be_bytes)
}

/// The record id that ends an index key.
fn trailing_id(key: &[u8]) -> Option<u64> {
    key.get(key.len().saturating_sub(8)..).and_then(read_id)
}

/// Claims one unique value for patron `id` in an index tree. A value already claimed is refused,
/// naming its owner, unless the owner is `holder` (the patron being changed keeps its own).
fn claim(
    tree: &TransactionalTree,
    key: Vec<u8>,
    id: u64,
    holder: Option<u64>,
    taken: impl FnOnce(u64) -> StoreError,
) -> Result<(), ConflictableTransactionError<StoreError>> {
    if let Some(owner) = tree.get(&key)? {
        let owner = read_id(&owner).unwrap_or(0);
        if Some(owner) != holder {
            return abort(taken(owner));
        }
    }
    tree.insert(key, &id.to_be_bytes())?;
    Ok(())
}

/// Moves a patron's index entries from `old` (none for a new patron) to `new`, in the caller's
/// transaction: unique values (primary id, identifiers, e-mail) and the name index.
fn reindex(
    identifiers: &TransactionalTree,
    emails: &TransactionalTree,
    names: &TransactionalTree,
    old: Option<&Patron>,
    new: &Patron,
) -> Result<(), ConflictableTransactionError<StoreError>> {
    let holder = old.map(|o| o.id);
    if let Some(old) = old {
        unindex(identifiers, emails, names, old)?;
    }
    let institution = &new.institution;
    for (what, k, value) in claims(new) {
        claim(identifiers, k, new.id, holder, |patron| StoreError::Taken {
            what,
            value,
            institution: institution.clone(),
            patron,
        })?;
    }
    if let Some(e) = &new.email {
        claim(emails, email_key(institution, e), new.id, holder, |patron| StoreError::Taken {
            what: "e-mail",
            value: e.clone(),
            institution: institution.clone(),
            patron,
        })?;
    }
    names.insert(name_key(new), &[])?;
    Ok(())
}

/// Removes a patron's index entries.
fn unindex(
    identifiers: &TransactionalTree,
    emails: &TransactionalTree,
    names: &TransactionalTree,
    old: &Patron,
) -> Result<(), ConflictableTransactionError<StoreError>> {
    for (_, k, _) in claims(old) {
        identifiers.remove(k)?;
    }
    if let Some(e) = &old.email {
        emails.remove(email_key(&old.institution, e))?;
    }
    names.remove(name_key(old))?;
    Ok(())
}

/// Where a patron's unique values are claimed: primary id and identifiers, and e-mail.
fn claims(p: &Patron) -> Vec<(&'static str, Vec<u8>, String)> {
    let mut out = vec![("primary id", scoped(&p.institution, &p.primary_id), p.primary_id.clone())];
    for i in &p.identifiers {
        out.push(("identifier", scoped(&p.institution, &i.value), i.value.clone()));
    }
    out
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(dir, &StoreConfig::default())
    }

    /// Opens (or creates) the store in `dir` with these settings.
    pub fn open_with(dir: &Path, settings: &StoreConfig) -> Result<Store, StoreError> {
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
        let tree = |name: &str| db.open_tree(name);
        Ok(Store {
            path: dir.to_path_buf(),
            meta: tree("meta")?,
            institutions: tree("institutions")?,
            patrons: tree("patrons")?,
            identifiers: tree("identifiers")?,
            emails: tree("emails")?,
            names: tree("names")?,
            items: tree("items")?,
            fees: tree("fees")?,
            fees_by_patron: tree("fees_by_patron")?,
            audit: tree("audit")?,
            loans: tree("loans")?,
            loans_by_patron: tree("loans_by_patron")?,
            holds: tree("holds")?,
            holds_by_patron: tree("holds_by_patron")?,
            holds_by_item: tree("holds_by_item")?,
            accounts: tree("accounts")?,
            outbox: tree("outbox")?,
            optouts: tree("optouts")?,
            commits: Arc::new(GroupCommit::default()),
            deferred: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            db,
        })
    }

    /// Where the store lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes every write so far durable. Callers that flush at the same time share one disk
    /// sync (group commit). With flushes deferred, it only notes that a sync is owed.
    pub fn flush(&self) -> Result<(), StoreError> {
        if self.deferred.load(std::sync::atomic::Ordering::Relaxed) {
            SYNC_OWED.with(|o| o.set(true));
            return Ok(());
        }
        self.sync()
    }

    /// Syncs every write so far to disk now (group commit), deferred or not.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.commits.flush(|| {
            self.db.flush()?;
            Ok(())
        })
    }

    /// The server's mode: `flush` no longer waits for the disk but notes on the calling thread
    /// that a sync is owed; the server takes that note after each request
    /// ([`Store::take_owed_sync`]) and holds the reply until a shared sync has run. Requests
    /// then never block a thread on the disk, and one sync serves every request waiting.
    pub fn defer_flushes(&self, on: bool) {
        self.deferred.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether work on this thread since the last call owes a sync; clears the note.
    pub fn take_owed_sync() -> bool {
        SYNC_OWED.with(|o| o.replace(false))
    }

    /// Stores a notice in the outbox (new or updated). Not flushed: callers flush before they
    /// report success.
    pub fn put_notice(&self, n: &Notice) -> Result<(), StoreError> {
        self.outbox.insert(n.id.to_be_bytes(), encode(n))?;
        Ok(())
    }

    /// The outbox, oldest first.
    pub fn notices(&self) -> impl Iterator<Item = Result<Notice, StoreError>> + '_ {
        self.outbox.iter().values().map(|v| decode("notice", &v?))
    }

    /// The notice kinds a patron opted out of.
    pub fn optouts(&self, patron: u64) -> Result<Vec<NoticeKind>, StoreError> {
        match self.optouts.get(patron.to_be_bytes())? {
            Some(v) => decode("opt-outs", &v),
            None => Ok(Vec::new()),
        }
    }

    /// Replaces a patron's opt-outs (flushed).
    pub fn set_optouts(&self, patron: u64, kinds: &[NoticeKind]) -> Result<(), StoreError> {
        self.optouts.insert(patron.to_be_bytes(), encode(&kinds.to_vec()))?;
        self.flush()
    }

    /// How many disk syncs `flush` has run since the store was opened.
    pub fn syncs(&self) -> u64 {
        self.commits.state.lock().map_or(0, |s| s.syncs)
    }

    /// Reserves `n` fresh ids and returns the first.
    pub fn reserve_ids(&self, n: u64) -> Result<u64, StoreError> {
        let next = self.meta.update_and_fetch(b"next_id", |old| {
            let last = old.and_then(read_id).unwrap_or(0);
            Some(last.saturating_add(n).to_be_bytes().to_vec())
        })?;
        let last = next
            .and_then(|b| read_id(&b))
            .ok_or_else(|| StoreError::Corrupt { kind: "id counter", detail: "missing after update".into() })?;
        Ok(last + 1 - n)
    }

    /// The last id given out (0 in a new store).
    pub fn last_id(&self) -> Result<u64, StoreError> {
        Ok(self.meta.get(b"next_id")?.and_then(|b| read_id(&b)).unwrap_or(0))
    }

    /// Makes sure later ids are above `id` (records imported with their own ids).
    pub fn bump_ids(&self, id: u64) -> Result<(), StoreError> {
        self.meta.update_and_fetch(b"next_id", |old| {
            let last = old.and_then(read_id).unwrap_or(0);
            Some(last.max(id).to_be_bytes().to_vec())
        })?;
        Ok(())
    }

    /// A fresh id: 1, 2, 3, ... across restarts (staff read and type patron numbers, so they
    /// stay short; sled's own id generator jumps by a million on every open).
    pub fn new_id(&self) -> Result<u64, StoreError> {
        self.reserve_ids(1)
    }

    // -- institutions -----------------------------------------------------------------------

    /// Adds an institution; refuses an existing code.
    pub fn add_institution(&self, inst: &Institution) -> Result<(), StoreError> {
        let prior =
            self.institutions.compare_and_swap(inst.code.as_bytes(), None as Option<&[u8]>, Some(encode(inst)))?;
        if prior.is_err() {
            return Err(StoreError::InstitutionExists(inst.code.clone()));
        }
        self.flush()
    }

    /// Replaces an institution's settings.
    pub fn put_institution(&self, inst: &Institution) -> Result<(), StoreError> {
        self.institutions.insert(inst.code.as_bytes(), encode(inst))?;
        self.flush()
    }

    pub fn institution(&self, code: &str) -> Result<Institution, StoreError> {
        match self.institutions.get(code.as_bytes())? {
            Some(v) => decode("institution", &v),
            None => Err(StoreError::NoInstitution(code.to_string())),
        }
    }

    pub fn institutions(&self) -> Result<Vec<Institution>, StoreError> {
        self.institutions.iter().values().map(|v| decode("institution", &v?)).collect()
    }

    // -- patrons ----------------------------------------------------------------------------

    /// Patrons at the institution with the same names and birth date (the duplicate warning).
    pub fn same_person(&self, p: &Patron) -> Result<Vec<u64>, StoreError> {
        let key = name_key(p);
        let prefix = key.get(..key.len() - 8).unwrap_or_default();
        self.names
            .scan_prefix(prefix)
            .keys()
            .map(|k| Ok(trailing_id(&k?).unwrap_or(0)))
            .filter(|r| !matches!(r, Ok(id) if *id == p.id))
            .collect()
    }

    pub fn patron(&self, id: u64) -> Result<Patron, StoreError> {
        match self.patrons.get(id.to_be_bytes())? {
            Some(v) => decode("patron", &v),
            None => Err(StoreError::NoPatron(id.to_string())),
        }
    }

    /// The patron holding this primary id or identifier at the institution.
    pub fn patron_by_identifier(&self, institution: &str, value: &str) -> Result<Option<Patron>, StoreError> {
        match self.identifiers.get(scoped(institution, value))? {
            Some(id) => {
                let id = read_id(&id).ok_or_else(|| StoreError::Corrupt {
                    kind: "identifier index",
                    detail: "a key of the wrong length".into(),
                })?;
                self.patron(id).map(Some)
            }
            None => Ok(None),
        }
    }

    /// The id of the patron holding this primary id or identifier (no record read).
    pub fn identifier_owner(&self, institution: &str, value: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.identifiers.get(scoped(institution, value))?.and_then(|v| read_id(&v)))
    }

    /// The id of the patron with this e-mail (no record read).
    pub fn email_owner(&self, institution: &str, email: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.emails.get(email_key(institution, email))?.and_then(|v| read_id(&v)))
    }

    /// The patron with this e-mail at the institution.
    pub fn patron_by_email(&self, institution: &str, email: &str) -> Result<Option<Patron>, StoreError> {
        match self.emails.get(email_key(institution, email))? {
            Some(id) => self.patron(read_id(&id).unwrap_or(0)).map(Some),
            None => Ok(None),
        }
    }

    /// Patrons whose last name (then first name) starts with `prefix`, case-insensitively.
    pub fn patrons_by_name(&self, institution: &str, prefix: &str) -> Result<Vec<Patron>, StoreError> {
        let key = scoped(institution, &prefix.to_lowercase());
        self.names.scan_prefix(key).keys().map(|k| self.patron(trailing_id(&k?).unwrap_or(0))).collect()
    }

    /// Changes a patron atomically: `change` sees the current record and returns the new one and
    /// an audit entry, or a refusal. Indexes follow the change in the same transaction. The
    /// closure may run more than once (on conflict), so it must not have side effects.
    pub fn update_patron<F>(&self, id: u64, change: F) -> Result<Patron, StoreError>
    where
        F: Fn(Patron) -> Result<(Patron, AuditEntry), StoreError>,
    {
        self.update_patron_noting(id, change, None::<fn(&Patron) -> Notice>)
    }

    /// [`Store::update_patron`], and a notice to the patron about the change, composed by
    /// `notice` from the changed record and committed in the same transaction: the change is
    /// never stored without the notice, nor the notice without the change.
    pub fn update_patron_noting<F, N>(&self, id: u64, change: F, notice: Option<N>) -> Result<Patron, StoreError>
    where
        F: Fn(Patron) -> Result<(Patron, AuditEntry), StoreError>,
        N: Fn(&Patron) -> Notice,
    {
        // Taken outside the transaction: its closure must stay free of side effects.
        let seq = self.new_id()?;
        // The outbox joins the transaction only when there is a notice to write.
        let trees = [&self.patrons, &self.identifiers, &self.emails, &self.names, &self.audit, &self.outbox];
        let trees = if notice.is_some() { &trees[..] } else { &trees[..5] };
        let r = trees.transaction(|t| {
            let [patrons, identifiers, emails, names, audit_tree, outbox @ ..] = t.as_slice() else {
                unreachable!("the five patron trees are always passed in")
            };
            let key = id.to_be_bytes();
            let Some(old) = tx_get::<Patron>(patrons, "patron", &key)? else {
                return abort(StoreError::NoPatron(id.to_string()));
            };
            let (new, audit) = match change(old.clone()) {
                Ok(x) => x,
                Err(e) => return abort(e),
            };
            if new.id != id {
                return abort(StoreError::Refused(format!("patron {id} cannot change its id")));
            }
            reindex(identifiers, emails, names, Some(&old), &new)?;
            patrons.insert(&key, encode(&new))?;
            audit_tree.insert(audit_key(&audit, seq), encode(&audit))?;
            if let (Some(compose), [outbox]) = (&notice, outbox) {
                let n = compose(&new);
                outbox.insert(&n.id.to_be_bytes(), encode(&n))?;
            }
            Ok(new)
        });
        let patron = tx_result(r)?;
        self.flush()?;
        Ok(patron)
    }

    /// A patron's audit history, oldest first.
    pub fn history(&self, patron: u64) -> Result<Vec<AuditEntry>, StoreError> {
        self.audit.scan_prefix(patron.to_be_bytes()).values().map(|v| decode("audit entry", &v?)).collect()
    }

    // -- fees -------------------------------------------------------------------------------

    /// Stores a fee (new or changed) with its patron index.
    pub fn put_fee(&self, fee: &Fee, audit: &AuditEntry) -> Result<(), StoreError> {
        self.apply(&[Write::Fee(fee.clone()), Write::Audit(audit.clone())])?;
        self.flush()
    }

    pub fn fee(&self, id: u64) -> Result<Option<Fee>, StoreError> {
        self.fees.get(id.to_be_bytes())?.map(|v| decode("fee", &v)).transpose()
    }

    /// A patron's fees, oldest first.
    pub fn fees_of(&self, patron: u64) -> Result<Vec<Fee>, StoreError> {
        self.fees_by_patron
            .scan_prefix(patron.to_be_bytes())
            .keys()
            .filter_map(|k| match k {
                Ok(k) => {
                    let id = k.get(8..16).and_then(read_id)?;
                    self.fee(id).transpose()
                }
                Err(e) => Some(Err(e.into())),
            })
            .collect()
    }

    // -- items, loans, holds, accounts -------------------------------------------------------

    pub fn item(&self, barcode: &str) -> Result<Option<Item>, StoreError> {
        self.items.get(barcode.as_bytes())?.map(|v| decode("item", &v)).transpose()
    }

    /// Every item, in barcode order, read lazily.
    pub fn items(&self) -> impl Iterator<Item = Result<Item, StoreError>> + '_ {
        self.items.iter().values().map(|v| decode("item", &v?))
    }

    /// The loan of an item, if it is out.
    pub fn loan(&self, item: &str) -> Result<Option<Loan>, StoreError> {
        self.loans.get(item.as_bytes())?.map(|v| decode("loan", &v)).transpose()
    }

    /// Every loan, in item barcode order.
    pub fn loans(&self) -> impl Iterator<Item = Result<Loan, StoreError>> + '_ {
        self.loans.iter().values().map(|v| decode("loan", &v?))
    }

    /// A patron's loans, in item barcode order.
    pub fn loans_of(&self, patron: u64) -> Result<Vec<Loan>, StoreError> {
        let mut out = Vec::new();
        for k in self.loans_by_patron.scan_prefix(patron.to_be_bytes()).keys() {
            let k = k?;
            let barcode = String::from_utf8_lossy(k.get(8..).unwrap_or_default()).into_owned();
            out.extend(self.loan(&barcode)?);
        }
        Ok(out)
    }

    /// How many items the patron has on loan (without reading the loans).
    pub fn loan_count(&self, patron: u64) -> u32 {
        let n = self.loans_by_patron.scan_prefix(patron.to_be_bytes()).keys().count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    pub fn hold(&self, id: u64) -> Result<Option<Hold>, StoreError> {
        self.holds.get(id.to_be_bytes())?.map(|v| decode("hold", &v)).transpose()
    }

    /// Every hold, in id order.
    pub fn holds(&self) -> impl Iterator<Item = Result<Hold, StoreError>> + '_ {
        self.holds.iter().values().map(|v| decode("hold", &v?))
    }

    /// A patron's holds, oldest first.
    pub fn holds_of(&self, patron: u64) -> Result<Vec<Hold>, StoreError> {
        self.ids_after(&self.holds_by_patron, &patron.to_be_bytes())
            .filter_map(|id| id.and_then(|id| self.hold(id)).transpose())
            .collect()
    }

    /// The holds on an item, oldest first (the queue).
    pub fn holds_on(&self, item: &str) -> Result<Vec<Hold>, StoreError> {
        let mut prefix = item.as_bytes().to_vec();
        prefix.push(0);
        self.ids_after(&self.holds_by_item, &prefix)
            .filter_map(|id| id.and_then(|id| self.hold(id)).transpose())
            .collect()
    }

    /// The ids that end the keys under `prefix` in an index tree.
    fn ids_after<'a>(&self, tree: &'a Tree, prefix: &[u8]) -> impl Iterator<Item = Result<u64, StoreError>> + 'a {
        tree.scan_prefix(prefix).keys().map(|k| {
            let k = k?;
            trailing_id(&k).ok_or_else(|| StoreError::Corrupt { kind: "index", detail: "a short key".into() })
        })
    }

    pub fn account(&self, login: &str) -> Result<Option<Account>, StoreError> {
        self.accounts.get(login.as_bytes())?.map(|v| decode("account", &v)).transpose()
    }

    pub fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.accounts.iter().values().map(|v| decode("account", &v?)).collect()
    }

    /// Every fee, in id order.
    pub fn fees(&self) -> impl Iterator<Item = Result<Fee, StoreError>> + '_ {
        self.fees.iter().values().map(|v| decode("fee", &v?))
    }

    /// Every patron, in id order, read lazily.
    pub fn patrons_iter(&self) -> impl Iterator<Item = Result<Patron, StoreError>> + '_ {
        self.patrons.iter().values().map(|v| decode("patron", &v?))
    }

    /// The storage keys of a patron's audit entries with the entries, oldest first.
    pub fn history_keys(&self, patron: u64) -> Result<Vec<(Vec<u8>, AuditEntry)>, StoreError> {
        self.audit
            .scan_prefix(patron.to_be_bytes())
            .map(|kv| {
                let (k, v) = kv?;
                Ok((k.to_vec(), decode("audit entry", &v)?))
            })
            .collect()
    }

    /// Reads the patron lookup path (identifier index and patron records) once, so that the
    /// first kiosk questions after a start are answered from memory, not disk. Returns the
    /// number of entries read.
    pub fn warm_up(&self) -> Result<usize, StoreError> {
        let mut n = 0;
        for tree in [&self.identifiers, &self.patrons] {
            for kv in tree.iter() {
                kv?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Bytes the store takes on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }

    // -- atomic groups ----------------------------------------------------------------------

    /// Applies a group of changes in one transaction: all of them or none. Unique values are
    /// claimed inside it, so a conflict refuses the whole group and writes nothing. Not flushed:
    /// callers flush before they report success.
    pub fn apply(&self, writes: &[Write]) -> Result<(), StoreError> {
        // Items alone touch one tree and read nothing: a batch is atomic there, and cheaper than
        // a transaction (a bulk import is mostly items).
        if !writes.is_empty() && writes.iter().all(|w| matches!(w, Write::Item(_))) {
            let mut batch = sled::Batch::default();
            for w in writes {
                if let Write::Item(i) = w {
                    batch.insert(i.barcode.as_bytes(), encode(i));
                }
            }
            self.items.apply_batch(batch)?;
            return Ok(());
        }
        let audits = writes.iter().filter(|w| matches!(w, Write::Audit(_))).count() as u64;
        let mut seq = if audits > 0 { self.reserve_ids(audits)? } else { 0 };
        let mut audit_keys = Vec::with_capacity(audits as usize);
        for w in writes {
            if let Write::Audit(a) = w {
                audit_keys.push(audit_key(a, seq));
                seq += 1;
            }
        }
        let trees = [
            &self.institutions,
            &self.patrons,
            &self.identifiers,
            &self.emails,
            &self.names,
            &self.items,
            &self.fees,
            &self.fees_by_patron,
            &self.audit,
            &self.loans,
            &self.loans_by_patron,
            &self.holds,
            &self.holds_by_patron,
            &self.holds_by_item,
            &self.accounts,
            &self.outbox,
        ];
        // The outbox (last) joins the transaction only when a notice is written: not on the hot path.
        let notices = writes.iter().any(|w| matches!(w, Write::Notice(_)));
        let trees = if notices { &trees[..] } else { &trees[..trees.len() - 1] };
        let r = trees.transaction(|t| {
            let [
                institutions,
                patrons,
                identifiers,
                emails,
                names,
                items,
                fees,
                fees_by_patron,
                audit,
                loans,
                loans_by_patron,
                holds,
                holds_by_patron,
                holds_by_item,
                accounts,
                outbox @ ..,
            ] = t.as_slice()
            else {
                unreachable!("one transactional tree per tree passed in")
            };
            let mut audit_keys = audit_keys.iter();
            // Institutions seen to exist in this transaction (patrons of a group share a few).
            let mut known: Vec<&str> = Vec::new();
            for w in writes {
                match w {
                    Write::Institution(i) => {
                        institutions.insert(i.code.as_bytes(), encode(i))?;
                    }
                    Write::Patron(p) => {
                        if !known.contains(&p.institution.as_str()) {
                            if institutions.get(p.institution.as_bytes())?.is_none() {
                                return abort(StoreError::NoInstitution(p.institution.clone()));
                            }
                            known.push(&p.institution);
                        }
                        let key = p.id.to_be_bytes();
                        let old = tx_get::<Patron>(patrons, "patron", &key)?;
                        reindex(identifiers, emails, names, old.as_ref(), p)?;
                        patrons.insert(&key, encode(p))?;
                    }
                    Write::RemovePatron(id) => {
                        let key = id.to_be_bytes();
                        if let Some(old) = tx_get::<Patron>(patrons, "patron", &key)? {
                            unindex(identifiers, emails, names, &old)?;
                            patrons.remove(&key)?;
                        }
                    }
                    Write::Item(i) => {
                        items.insert(i.barcode.as_bytes(), encode(i))?;
                    }
                    Write::RemoveItem(barcode) => {
                        items.remove(barcode.as_bytes())?;
                    }
                    Write::Loan(l) => {
                        if let Some(old) = tx_get::<Loan>(loans, "loan", l.item.as_bytes())? {
                            loans_by_patron.remove(pair_key(old.patron, old.item.as_bytes()))?;
                        }
                        loans.insert(l.item.as_bytes(), encode(l))?;
                        loans_by_patron.insert(pair_key(l.patron, l.item.as_bytes()), &[])?;
                    }
                    Write::EndLoan(item) => {
                        if let Some(old) = tx_get::<Loan>(loans, "loan", item.as_bytes())? {
                            loans_by_patron.remove(pair_key(old.patron, old.item.as_bytes()))?;
                            loans.remove(item.as_bytes())?;
                        }
                    }
                    Write::Fee(f) => {
                        if let Some(old) = tx_get::<Fee>(fees, "fee", &f.id.to_be_bytes())? {
                            fees_by_patron.remove(pair_key(old.patron, &old.id.to_be_bytes()))?;
                        }
                        fees.insert(&f.id.to_be_bytes(), encode(f))?;
                        fees_by_patron.insert(pair_key(f.patron, &f.id.to_be_bytes()), &[])?;
                    }
                    Write::RemoveFee(id) => {
                        if let Some(old) = tx_get::<Fee>(fees, "fee", &id.to_be_bytes())? {
                            fees_by_patron.remove(pair_key(old.patron, &old.id.to_be_bytes()))?;
                            fees.remove(&id.to_be_bytes())?;
                        }
                    }
                    Write::Hold(h) => {
                        if let Some(old) = tx_get::<Hold>(holds, "hold", &h.id.to_be_bytes())? {
                            unindex_hold(holds_by_patron, holds_by_item, &old)?;
                        }
                        holds.insert(&h.id.to_be_bytes(), encode(h))?;
                        holds_by_patron.insert(pair_key(h.patron, &h.id.to_be_bytes()), &[])?;
                        if let Some(item) = &h.item {
                            holds_by_item.insert(hold_item_key(item, h), &[])?;
                        }
                    }
                    Write::RemoveHold(id) => {
                        if let Some(old) = tx_get::<Hold>(holds, "hold", &id.to_be_bytes())? {
                            unindex_hold(holds_by_patron, holds_by_item, &old)?;
                            holds.remove(&id.to_be_bytes())?;
                        }
                    }
                    Write::Account(a) => {
                        accounts.insert(a.login.as_bytes(), encode(a))?;
                    }
                    Write::RemoveAccount(login) => {
                        accounts.remove(login.as_bytes())?;
                    }
                    Write::Audit(a) => {
                        let Some(k) = audit_keys.next() else { unreachable!("one key per audit entry") };
                        audit.insert(k.as_slice(), encode(a))?;
                    }
                    Write::RemoveAudit(k) => {
                        audit.remove(k.as_slice())?;
                    }
                    Write::Notice(n) => {
                        let [outbox] = outbox else { unreachable!("the outbox is passed in with a notice") };
                        outbox.insert(&n.id.to_be_bytes(), encode(n))?;
                    }
                }
            }
            Ok(())
        });
        tx_result(r)
    }
}

/// An index key of a record id (big-endian) followed by another key.
fn pair_key(id: u64, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + rest.len());
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(rest);
    k
}

/// A hold's place in its item's queue: the item, then the time it was placed, then its id.
fn hold_item_key(item: &str, h: &Hold) -> Vec<u8> {
    let mut k = item.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&h.placed.as_microsecond().to_be_bytes());
    k.extend_from_slice(&h.id.to_be_bytes());
    k
}

fn unindex_hold(
    by_patron: &TransactionalTree,
    by_item: &TransactionalTree,
    h: &Hold,
) -> Result<(), ConflictableTransactionError<StoreError>> {
    by_patron.remove(pair_key(h.patron, &h.id.to_be_bytes()))?;
    if let Some(item) = &h.item {
        by_item.remove(hold_item_key(item, h))?;
    }
    Ok(())
}

/// Audit key: patron, time, then a fresh id, so that entries sort by time and two changes in
/// the same microsecond both survive.
fn audit_key(e: &AuditEntry, seq: u64) -> Vec<u8> {
    let mut k = e.patron.to_be_bytes().to_vec();
    k.extend_from_slice(&e.at.as_microsecond().to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod group_commit_tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Barrier};

    #[test]
    fn writers_arriving_during_a_sync_share_the_next_one() {
        let gc = Arc::new(GroupCommit::default());
        let synced = Arc::new(AtomicU64::new(0));
        let start = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (gc, synced, start) = (gc.clone(), synced.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    gc.flush(|| {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        synced.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    })
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        let n = synced.load(Ordering::SeqCst);
        // One sync for the first arrival, then one for everyone who waited behind it.
        assert!((1..8).contains(&n), "8 concurrent flushes ran {n} syncs");
        assert_eq!(gc.state.lock().unwrap().done, 8);
    }

    #[test]
    fn a_failed_sync_is_reported_and_the_next_flush_syncs_again() {
        let gc = GroupCommit::default();
        assert!(gc.flush(|| Err(StoreError::Refused("disk full".into()))).is_err());
        let ran = std::cell::Cell::new(false);
        gc.flush(|| {
            ran.set(true);
            Ok(())
        })
        .unwrap();
        assert!(ran.get());
    }
}
