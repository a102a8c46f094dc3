//! The PostgreSQL engine: several sip2d nodes on one database, each deciding with the same
//! units and rules as the sled engine, one unit of work per database transaction.
//!
//! Each node keeps the register in memory, as the sled engine does. Every change is decided
//! by the node's writer thread inside one transaction that first takes the register's
//! advisory lock, so the nodes' writers take turns: under the lock the writer brings its
//! state up to date from `commits` (the batches other nodes committed since it last looked),
//! runs the waiting units on it, and writes their batch as one `commits` row with the record
//! rows it put or removed. The batch is answered once PostgreSQL has committed it
//! (`synchronous_commit` on), so an "ok" is as durable as the database. What the rule decided
//! is serial across every node: each unit sees every unit committed before it, on any node.
//!
//! Reads go to the writer too: it answers them once it has read every batch committed before
//! them, on any node (one query for all the reads it has taken), so a kiosk that moves to
//! another node sees what it did on the first. A patron status that writes nothing is such a
//! read; one that writes (a wrong PIN counted) is committed like any change. Other nodes'
//! commits are announced (LISTEN/NOTIFY), and an idle node reads them then or every
//! `poll_interval`, so the next unit finds less to catch up on.
//!
//! Audit history, files and the outbox are read from the database, never held in memory.

mod moving;
mod schema;

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postgres::{Client, NoTls, Statement, Transaction};
use tokio::sync::oneshot;

use crate::domain::secret::PinKey;
use crate::domain::*;

use super::exchange::Line;
use super::ops::*;
use super::seam::{self, Queue};
use super::state::State;
use super::store::{self, Loaded, Payload, StoreError, TREE_NAMES, TREES, Write};
use super::unit::Unit;
use super::{Engine, Error, Observer, Pending, Stats, units};

pub use moving::{Contents, Moved, postgres_to_sled, sled_to_postgres};
pub(crate) use schema::check as check_schema;
pub use schema::{Migrated, SchemaState, migrate, schema_of, schema_state};

/// Histories are cut to their cap every this many commits.
const ROTATE_EVERY: u64 = 1024;
/// Units the writer takes into one transaction at most.
const MAX_BATCH: usize = 1024;
/// Units that may wait for the writer before senders wait for room.
const QUEUE: usize = 16 * 1024;
/// The advisory lock every node's writer holds while it decides and commits ("sip2").
const REGISTER_LOCK: i64 = 0x7369_7032;
/// The channel commits are announced on; the payload is the committing node's name.
const CHANNEL: &str = "sip2d_commits";
/// The `meta` key of the PIN key's fingerprint every stored PIN depends on.
pub(crate) const PIN_KEY_META: &[u8] = b"pin_key_fingerprint";

/// How a node reaches its database, with the defaults in [`PgSettings::new`].
#[derive(Clone)]
pub struct PgSettings {
    /// A libpq connection string or URL (`postgresql://sip2d@db1/sip2d`).
    pub url: String,
    /// This node's name in `commits` and the log (default: the host name).
    pub node: String,
    /// Batches kept in `commits` for nodes to catch up from (default 100,000); a node further
    /// behind reloads the register from the tables.
    pub commits_kept: u64,
    /// How long a connection attempt may take (default 5 s).
    pub connect_timeout: Duration,
    /// How long one statement may take, waiting for the lock included (default 10 s): past
    /// it the transaction is abandoned and its units answered "could not complete".
    pub statement_timeout: Duration,
    /// How often an idle node looks for other nodes' commits when no announcement came
    /// (default 1 s).
    pub poll_interval: Duration,
    /// The CA certificates (PEM) the database's certificate must chain to, for its name in the
    /// connection string: with it every connection is TLS and refused otherwise (default none:
    /// plain TCP, for a database on the same host or a private network).
    pub ca_file: Option<std::path::PathBuf>,
}

impl PgSettings {
    pub fn new(url: impl Into<String>) -> PgSettings {
        let node = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "sip2d".into());
        PgSettings {
            url: url.into(),
            node: format!("{node}:{}", std::process::id()),
            commits_kept: 100_000,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            ca_file: None,
        }
    }

    /// The connection settings, with the timeouts applied.
    fn config(&self) -> Result<postgres::Config, Error> {
        let mut c: postgres::Config = self.url.parse().map_err(|e| {
            Error::Refused(Refusal::rule(format!("store.url is not a PostgreSQL connection string: {e}")))
        })?;
        if c.get_connect_timeout().is_none() {
            c.connect_timeout(self.connect_timeout);
        }
        c.keepalives(true).keepalives_idle(Duration::from_secs(30));
        if c.get_application_name().is_none() {
            c.application_name("sip2d");
        }
        Ok(c)
    }

    /// Where the database is, without the password (for messages and the log).
    pub fn shown(&self) -> String {
        match self.url.parse::<postgres::Config>() {
            Ok(c) => {
                let hosts: Vec<String> = c
                    .get_hosts()
                    .iter()
                    .map(|h| match h {
                        postgres::config::Host::Tcp(h) => h.clone(),
                        postgres::config::Host::Unix(p) => p.display().to_string(),
                    })
                    .collect();
                let port = c.get_ports().first().copied().unwrap_or(5432);
                format!("postgres://{}:{port}/{}", hosts.join(","), c.get_dbname().unwrap_or(""))
            }
            Err(_) => "postgres (an unreadable connection string)".into(),
        }
    }
}

/// Never shows the password a connection string may hold.
impl std::fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSettings")
            .field("url", &self.shown())
            .field("node", &self.node)
            .field("commits_kept", &self.commits_kept)
            .finish_non_exhaustive()
    }
}

/// What went wrong, without the "could not complete" an [`Error::NotDone`] adds when shown.
fn reason(e: &Error) -> Arc<str> {
    match e {
        Error::NotDone(w) | Error::Stopped(w) => w.clone(),
        other => Arc::from(other.to_string()),
    }
}

pub(crate) fn db_error(what: &str, e: &postgres::Error) -> Error {
    Error::NotDone(Arc::from(format!("{what}: {}", describe(e))))
}

/// A database error in one line: the server's message when it sent one, else the error and
/// its causes (a TLS handshake's says which certificate was refused and why).
fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    let mut line = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        line.push_str(&format!(": {c}"));
        cause = c.source();
    }
    line
}

/// A TLS connector that trusts the CA certificates in `ca` alone.
fn tls(ca: &std::path::Path) -> Result<tokio_postgres_rustls::MakeRustlsConnect, Error> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let bad = |why: String| Error::Refused(Refusal::rule(format!("store.ca_file {}: {why}", ca.display())));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| bad(e.to_string()))? {
        roots.add(cert.map_err(|e| bad(e.to_string()))?).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no CERTIFICATE block found".into()));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Connects, with the session settings every connection of the engine runs with: over TLS,
/// the database's certificate verified, when `ca_file` is given (never falling back to plain).
pub(crate) fn connect(settings: &PgSettings) -> Result<Client, Error> {
    let mut config = settings.config()?;
    let unreachable = |e: postgres::Error| db_error(&format!("cannot reach the database at {}", settings.shown()), &e);
    let mut client = match &settings.ca_file {
        Some(ca) => {
            config.ssl_mode(postgres::config::SslMode::Require);
            config.connect(tls(ca)?).map_err(unreachable)?
        }
        None if config.get_ssl_mode() == postgres::config::SslMode::Require => {
            return Err(Refusal::rule(
                "store.url asks for TLS (sslmode=require): give store.ca_file, the CA that signed the database's certificate",
            )
            .into());
        }
        None => config.connect(NoTls).map_err(unreachable)?,
    };
    let ms = settings.statement_timeout.as_millis();
    // An "ok" waits for the commit to be on disk whatever the server's default; no statement
    // (the lock included) waits past the timeout.
    client
        .batch_execute(&format!(
            "SET synchronous_commit = on; SET statement_timeout = {ms}; SET idle_in_transaction_session_timeout = {ms}"
        ))
        .map_err(|e| db_error("cannot set up the database session", &e))?;
    Ok(client)
}

/// What a read does with the up-to-date register (or why there is none).
type ReadFn = Box<dyn FnOnce(Result<&State, Error>) + Send>;

enum Job {
    Run {
        op: Operation,
        by: By,
        reply: Reply,
    },
    Cold {
        query: Query,
        reply: oneshot::Sender<Result<Answer, Error>>,
    },
    /// A read, answered from the register once it holds every batch committed (on any node)
    /// before the read was asked.
    Read(ReadFn),
    /// A unit that usually only reads: decided on the up-to-date register, and committed only
    /// when it wrote something after all.
    Peek {
        op: Operation,
        by: By,
        reply: Reply,
    },
    /// Another node committed: read its batch now.
    Refresh,
}

/// What the writer and the readers share.
struct Shared {
    /// Why the database cannot be used now, and since when (cleared by the next success).
    down: Mutex<Option<(Arc<str>, Instant)>>,
    observer: Mutex<Option<Observer>>,
    batches: AtomicU64,
    units: AtomicU64,
    reads: AtomicU64,
    sync_micros: AtomicU64,
}

impl Shared {
    fn down(&self) -> Option<(Arc<str>, Instant)> {
        self.down.lock().ok().and_then(|d| d.clone())
    }

    fn set_down(&self, why: Option<Arc<str>>) {
        if let Ok(mut d) = self.down.lock() {
            match why {
                Some(w) => {
                    let since = match d.as_ref() {
                        Some((_, since)) => *since,
                        None => {
                            tracing::error!(error = %w, "the database cannot be used; changes are refused until it can");
                            Instant::now()
                        }
                    };
                    *d = Some((w, since));
                }
                None => {
                    if d.take().is_some() {
                        tracing::info!("the database answers again; taking changes");
                    }
                }
            }
        }
    }
}

struct Inner {
    shared: Arc<Shared>,
    key: PinKey,
    jobs: Queue<Job>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Tells the listener thread to stop.
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.jobs.close();
        if let Ok(mut threads) = self.threads.lock() {
            for h in threads.drain(..) {
                let _ = h.join();
            }
        }
    }
}

/// The PostgreSQL engine of one node. Clones share it.
#[derive(Clone)]
pub struct PgEngine {
    inner: Arc<Inner>,
}

impl PgEngine {
    /// Opens the register in the database `settings` names: refuses a database whose schema
    /// this build does not know (run `sip2d migrate`), or whose PINs were made with another
    /// PIN key; loads the register and starts the writer.
    pub fn open(settings: &PgSettings, key: PinKey, limits: super::RegisterLimits) -> Result<PgEngine, Error> {
        let mut client = connect(settings)?;
        schema::check(&mut client, settings)?;
        adopt_pin_key(&mut client, &key)?;
        let (state, seq) = load(&mut client)?;
        let state = state.with_limits(limits);
        let shared = Arc::new(Shared {
            down: Mutex::new(None),
            observer: Mutex::new(None),
            batches: AtomicU64::new(0),
            units: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            sync_micros: AtomicU64::new(0),
        });
        let spawn_error = |e: std::io::Error| Error::NotDone(Arc::from(format!("cannot start a thread: {e}")));
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let writer = Writer {
            settings: settings.clone(),
            conn: Some(Conn::new(client).map_err(|e| db_error("cannot prepare the engine's statements", &e))?),
            key: key.clone(),
            shared: shared.clone(),
            working: state,
            seq,
            retry_at: None,
            audited: Default::default(),
        };
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut threads = vec![
            std::thread::Builder::new()
                .name("sip2d-pg-writer".into())
                .spawn(move || writer.run(rx))
                .map_err(spawn_error)?,
        ];
        let listener = Listener { settings: settings.clone(), jobs: tx.clone(), stop: stop.clone() };
        threads.push(
            std::thread::Builder::new()
                .name("sip2d-pg-listen".into())
                .spawn(move || listener.run())
                .map_err(spawn_error)?,
        );
        Ok(PgEngine {
            inner: Arc::new(Inner { shared, key, jobs: Queue::new(tx), threads: Mutex::new(threads), stop }),
        })
    }

    fn send(&self, job: Job) -> Result<(), Error> {
        self.inner.jobs.send(job)
    }

    /// Has `f` answered by the writer from the register up to date (see [`Job::Read`]).
    fn read<T: Send + 'static>(&self, f: impl FnOnce(&State) -> Result<T, Error> + Send + 'static) -> Pending<T> {
        let (reply, rx) = oneshot::channel();
        let read = Job::Read(Box::new(move |state: Result<&State, Error>| {
            let _ = reply.send(state.and_then(f));
        }));
        match self.send(read) {
            Ok(()) => Pending::waiting(rx),
            Err(e) => Pending::ready(Err(e)),
        }
    }
}

/// Records the PIN key's fingerprint in a database that has none, and refuses one whose PINs
/// depend on another key: every node must hold the same `pin.key`.
fn adopt_pin_key(client: &mut Client, key: &PinKey) -> Result<(), Error> {
    let ours = key.fingerprint();
    let mut tx = client.transaction().map_err(|e| db_error("cannot begin", &e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&REGISTER_LOCK]).map_err(|e| db_error("cannot lock", &e))?;
    let row = tx
        .query_opt("SELECT value FROM meta WHERE key = $1", &[&PIN_KEY_META])
        .map_err(|e| db_error("cannot read the register's PIN key", &e))?;
    match row.map(|r| r.get::<_, Vec<u8>>(0)) {
        Some(theirs) if theirs == ours.as_bytes() => Ok(()),
        Some(theirs) => Err(Refusal::rule(format!(
            "the database's PINs were made with PIN key {}, and this node's key is {ours}: give every node the register's pin.key (`sip2d key export` on a node that has it, `sip2d key import` here)",
            String::from_utf8_lossy(&theirs)
        ))
        .into()),
        None => {
            tx.execute("INSERT INTO meta (key, value) VALUES ($1, $2)", &[&PIN_KEY_META, &ours.as_bytes()])
                .map_err(|e| db_error("cannot record the PIN key", &e))?;
            tx.commit().map_err(|e| db_error("cannot record the PIN key", &e))
        }
    }
}

/// A read-only transaction that sees one moment of the database throughout.
pub(crate) fn snapshot(client: &mut Client) -> Result<Transaction<'_>, Error> {
    client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(|e| db_error("cannot begin reading the register", &e))
}

/// The whole register as one consistent snapshot of the tables, and the last batch it holds.
fn load(client: &mut Client) -> Result<(State, u64), Error> {
    let mut tx = snapshot(client)?;
    let loaded = load_in(&mut tx)?;
    tx.commit().map_err(|e| db_error("cannot read the register", &e))?;
    Ok(loaded)
}

/// Reads the register inside `tx` (a snapshot, or under the lock).
fn load_in(tx: &mut Transaction<'_>) -> Result<(State, u64), Error> {
    let read = |e: postgres::Error| db_error("cannot read the register", &e);
    let seq: i64 = tx.query_one("SELECT coalesce(max(seq), 0) FROM commits", &[]).map_err(read)?.get(0);
    let mut l = Loaded::default();
    fn all<T: store::Record>(tx: &mut Transaction<'_>, table: &str, kind: &'static str) -> Result<Vec<T>, Error> {
        let rows = tx
            .query(&format!("SELECT value FROM {table} ORDER BY key"), &[])
            .map_err(|e| db_error("cannot read the register", &e))?;
        rows.iter().map(|r| store::decode::<T>(kind, r.get::<_, &[u8]>(0)).map_err(Error::from)).collect()
    }
    l.institutions = all(tx, "institutions", "institution")?;
    l.accounts = all(tx, "accounts", "account")?;
    l.staff = all(tx, "staff", "staff account")?;
    l.patrons = all(tx, "patrons", "patron")?;
    l.items = all(tx, "items", "item")?;
    l.loans = all(tx, "loans", "loan")?;
    l.fees = all(tx, "fees", "fee")?;
    l.holds = all(tx, "holds", "hold")?;
    l.links = all(tx, "links", "set-PIN link")?;
    l.email_checks = all(tx, "email_checks", "e-mail check")?;
    l.pin_windows = all(tx, "pin_windows", "terminal PIN window")?;
    l.last_changes = all(tx, "last_changes", "terminal's last change")?;
    for r in tx.query("SELECT key, value FROM optouts", &[]).map_err(read)? {
        let id = store::read_u64(r.get::<_, &[u8]>(0))
            .ok_or(StoreError::Corrupt { kind: "opt-outs", detail: "key".into() })?;
        l.optouts.push((id, store::decode("opt-outs", r.get::<_, &[u8]>(1))?));
    }
    let counter = |tx: &mut Transaction<'_>, key: &[u8]| -> Result<u64, Error> {
        let row = tx.query_opt("SELECT value FROM meta WHERE key = $1", &[&key]).map_err(read)?;
        Ok(row.and_then(|r| store::read_u64(r.get::<_, &[u8]>(0))).unwrap_or(0))
    };
    l.last_id = counter(tx, b"next_id")?;
    l.audit_seq = counter(tx, b"audit_seq")?.max(l.last_id);
    let state = State::build(l)?;
    Ok((state, seq as u64))
}

/// The writer's connection and its prepared statements.
struct Conn {
    client: Client,
    lock: Statement,
    since: Statement,
    insert_commit: Statement,
    upsert: Vec<Statement>,
    delete: Vec<Statement>,
    rotate_audit: Statement,
    notify: Statement,
}

impl Conn {
    fn new(mut client: Client) -> Result<Conn, postgres::Error> {
        let mut upsert = Vec::with_capacity(TREES);
        let mut delete = Vec::with_capacity(TREES);
        // The table names are the constants of `TREE_NAMES`, never input.
        for t in TREE_NAMES {
            upsert.push(client.prepare(&format!(
                "INSERT INTO {t} (key, value) SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            ))?);
            delete.push(client.prepare(&format!("DELETE FROM {t} WHERE key = ANY($1::bytea[])"))?);
        }
        Ok(Conn {
            lock: client.prepare("SELECT pg_advisory_xact_lock($1)")?,
            since: client.prepare("SELECT seq, batch FROM commits WHERE seq > $1 ORDER BY seq LIMIT 10000")?,
            insert_commit: client.prepare("INSERT INTO commits (seq, node, batch) VALUES ($1, $2, $3)")?,
            rotate_audit: client.prepare(
                "DELETE FROM audit WHERE key IN \
                 (SELECT key FROM audit WHERE key >= $1 AND key < $2 ORDER BY key DESC OFFSET $3)",
            )?,
            notify: client.prepare("SELECT pg_notify($1, $2)")?,
            upsert,
            delete,
            client,
        })
    }
}

/// The writer thread: decides every change this node makes, one transaction per batch.
struct Writer {
    settings: PgSettings,
    conn: Option<Conn>,
    key: PinKey,
    shared: Arc<Shared>,
    /// The register as the last batch this node knows of left it.
    working: State,
    /// The last batch `working` holds.
    seq: u64,
    /// While the database is away: not before then is it tried again.
    retry_at: Option<Instant>,
    /// Patrons whose history this node wrote since it last rotated histories.
    audited: std::collections::BTreeSet<u64>,
}

/// Where a unit's answer goes.
type Reply = oneshot::Sender<Result<Receipt, Error>>;

impl Writer {
    fn run(mut self, jobs: Receiver<Job>) {
        loop {
            let first = match jobs.recv_timeout(self.settings.poll_interval) {
                Ok(job) => job,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    let _ = self.refresh();
                    continue;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    self.rotate_now();
                    break;
                }
            };
            let mut batch: Vec<(Operation, By, Reply)> = Vec::new();
            let (mut reads, mut peeks) = (Vec::new(), Vec::new());
            let mut job = Some(first);
            let mut refresh = false;
            let mut taken = 0;
            while let Some(j) = job.take() {
                taken += 1;
                match j {
                    Job::Refresh => refresh = true,
                    Job::Read(f) => reads.push(f),
                    Job::Peek { op, by, reply } => peeks.push((op, by, reply)),
                    Job::Cold { query, reply } => {
                        // Answered after the units before it are committed, and with every
                        // other node's before it read (the patron may be new).
                        self.commit(std::mem::take(&mut batch));
                        let answer = self.refresh().and_then(|()| self.cold(query));
                        let _ = reply.send(answer);
                    }
                    Job::Run { op, by, reply } => {
                        if matches!(op, Operation::Purge { .. }) {
                            // A purge reads stored history: in a transaction of its own.
                            self.commit(std::mem::take(&mut batch));
                            self.commit(vec![(op, by, reply)]);
                        } else {
                            batch.push((op, by, reply));
                        }
                    }
                }
                if taken < MAX_BATCH {
                    job = jobs.try_recv().ok();
                }
            }
            self.commit(batch);
            if refresh || !reads.is_empty() || !peeks.is_empty() {
                // One look at the commits serves every read taken.
                let fresh = self.refresh();
                for f in reads {
                    f(match &fresh {
                        Ok(()) => Ok(&self.working),
                        Err(e) => Err(e.clone_not_done()),
                    });
                }
                let mut wrote = Vec::new();
                for (op, by, reply) in peeks {
                    if let Err(e) = &fresh {
                        let _ = reply.send(Err(e.clone_not_done()));
                        continue;
                    }
                    let mut unit = Unit::reading(&self.working, &self.key, &by);
                    let r = units::run(op.clone(), &mut unit);
                    if unit.writes() == 0 {
                        self.shared.reads.fetch_add(1, Ordering::Relaxed);
                        let _ = reply.send(r);
                    } else {
                        wrote.push((op, by, reply));
                    }
                }
                self.commit(wrote);
            }
        }
    }

    /// Cuts the histories written since the last rotation to their cap (at a clean stop).
    fn rotate_now(&mut self) {
        if self.audited.is_empty() {
            return;
        }
        let (audited, cap) =
            (std::mem::take(&mut self.audited), i64::from(self.working.limits().max_history_per_patron));
        let r = self.with_conn(|conn, _, _| {
            let mut tx = conn.client.transaction().map_err(|e| db_error("cannot begin", &e))?;
            rotate(&mut tx, &conn.rotate_audit, &audited, cap)?;
            tx.commit().map_err(|e| db_error("cannot rotate the history", &e))
        });
        if let Err(e) = r {
            tracing::warn!(error = %e, "the histories were not cut to their cap; the next rotation will");
        }
    }

    /// The connection, made again when the last one broke; while the database is down, at
    /// most one attempt per `poll_interval`, the units meanwhile refused at once.
    fn conn(&mut self) -> Result<(), Error> {
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            if let Some((why, _)) = self.shared.down() {
                if self.retry_at.is_some_and(|at| Instant::now() < at) {
                    return Err(Error::NotDone(why));
                }
            }
            self.retry_at = Some(Instant::now() + self.settings.poll_interval);
            let made = connect(&self.settings)
                .and_then(|c| Conn::new(c).map_err(|e| db_error("cannot prepare the engine's statements", &e)));
            match made {
                Ok(c) => self.conn = Some(c),
                Err(e) => {
                    let why = reason(&e);
                    self.shared.set_down(Some(why.clone()));
                    return Err(Error::NotDone(why));
                }
            }
        }
        Ok(())
    }

    /// Brings the register up to date with what other nodes committed (no lock: it only reads).
    fn refresh(&mut self) -> Result<(), Error> {
        let result = self.with_conn(|conn, working, seq| {
            let mut tx = conn.client.transaction().map_err(|e| db_error("cannot begin", &e))?;
            catch_up(&mut tx, &conn.since, working, seq)?;
            tx.commit().map_err(|e| db_error("cannot read", &e))
        });
        match result {
            Ok(()) => {
                self.shared.set_down(None);
                Ok(())
            }
            Err(e) => {
                let not_done = e.clone_not_done();
                self.failed(e);
                Err(not_done)
            }
        }
    }

    /// Runs `f` with the connection (made first if need be) and the writer's state.
    fn with_conn<T>(
        &mut self,
        f: impl FnOnce(&mut Conn, &mut State, &mut u64) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.conn()?;
        let mut conn = self.conn.take().ok_or(Error::Closed)?;
        let r = f(&mut conn, &mut self.working, &mut self.seq);
        self.conn = Some(conn);
        r
    }

    /// A failure of the connection: it is dropped and made again for the next batch.
    fn failed(&mut self, e: Error) {
        if self.conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            self.conn = None;
            self.shared.set_down(Some(reason(&e)));
        } else {
            tracing::warn!(error = %e, "a transaction failed");
        }
    }

    /// Decides and commits one batch of units in one transaction, then answers them.
    fn commit(&mut self, batch: Vec<(Operation, By, Reply)>) {
        if batch.is_empty() {
            return;
        }
        let started = Instant::now();
        let (before, seq_before) = (self.working.clone(), self.seq);
        let mut replies = Vec::with_capacity(batch.len());
        let result = self.transact(batch, &mut replies);
        match result {
            Ok(wrote) => {
                self.shared.set_down(None);
                self.shared.units.fetch_add(replies.len() as u64, Ordering::Relaxed);
                if wrote {
                    let took = started.elapsed();
                    self.shared.batches.fetch_add(1, Ordering::Relaxed);
                    self.shared.sync_micros.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
                    if let Some(o) = self.shared.observer.lock().ok().as_ref().and_then(|o| o.as_ref()) {
                        o(took, replies.len());
                    }
                }
                for (reply, r) in replies {
                    let _ = reply.send(r);
                }
            }
            Err((e, unanswered)) => {
                // Nothing of the batch is acknowledged: decide the next one from what is known
                // to be committed (a commit the broken connection could not confirm is read
                // back with the other nodes' batches).
                self.working = before;
                self.seq = seq_before;
                let why = reason(&e);
                self.failed(e);
                for reply in unanswered.into_iter().chain(replies.into_iter().map(|(r, _)| r)) {
                    let _ = reply.send(Err(Error::NotDone(why.clone())));
                }
            }
        }
    }

    /// The transaction of one batch. Ok(whether it wrote anything); on failure the replies
    /// not yet moved into `replies` come back with the error.
    #[allow(clippy::type_complexity)]
    fn transact(
        &mut self,
        batch: Vec<(Operation, By, Reply)>,
        replies: &mut Vec<(Reply, Result<Receipt, Error>)>,
    ) -> Result<bool, (Error, Vec<Reply>)> {
        let node = self.settings.node.clone();
        let kept = self.settings.commits_kept;
        let history_cap = i64::from(self.working.limits().max_history_per_patron);
        if let Err(e) = self.conn() {
            return Err((e, batch.into_iter().map(|(_, _, r)| r).collect()));
        }
        let Some(mut conn) = self.conn.take() else {
            return Err((Error::Closed, batch.into_iter().map(|(_, _, r)| r).collect()));
        };
        let r = self.transact_on(&mut conn, batch, replies, &node, kept, history_cap);
        self.conn = Some(conn);
        r
    }

    #[allow(clippy::type_complexity)]
    fn transact_on(
        &mut self,
        conn: &mut Conn,
        batch: Vec<(Operation, By, Reply)>,
        replies: &mut Vec<(Reply, Result<Receipt, Error>)>,
        node: &str,
        kept: u64,
        history_cap: i64,
    ) -> Result<bool, (Error, Vec<Reply>)> {
        let Conn { client, lock, since, insert_commit, upsert, delete, rotate_audit, notify } = conn;
        let mut tx = match client.transaction() {
            Ok(tx) => tx,
            Err(e) => {
                return Err((db_error("cannot begin", &e), batch.into_iter().map(|(_, _, r)| r).collect()));
            }
        };
        let prepared = tx
            .execute(&*lock, &[&REGISTER_LOCK])
            .map_err(|e| db_error("cannot take the register's lock", &e))
            .and_then(|_| catch_up(&mut tx, since, &mut self.working, &mut self.seq));
        if let Err(e) = prepared {
            return Err((e, batch.into_iter().map(|(_, _, r)| r).collect()));
        }
        let counters = self.working.counters();
        let mut writes = Vec::new();
        {
            let tx = RefCell::new(&mut tx);
            let history = |patron: u64| read_history(&mut tx.borrow_mut(), patron).unwrap_or_default();
            for (op, by, reply) in batch {
                let mut unit = Unit::new(&mut self.working, &self.key, &by).with_history(&history);
                let result = units::run(op, &mut unit);
                if result.is_err() {
                    unit.roll_back();
                }
                writes.extend(unit.into_writes());
                replies.push((reply, result));
            }
        }
        let (last_id, audit_seq) = counters;
        if self.working.last_id() != last_id {
            writes.push(Write::LastId(self.working.last_id()));
        }
        if self.working.audit_seq() != audit_seq {
            writes.push(Write::AuditSeq(self.working.audit_seq()));
        }
        let fail = |e: Error, replies: &mut Vec<(Reply, Result<Receipt, Error>)>| {
            (e, replies.drain(..).map(|(r, _)| r).collect::<Vec<_>>())
        };
        if writes.is_empty() {
            // Decided on the current register; nothing to keep. Ending the transaction lets
            // the lock go.
            return match tx.commit() {
                Ok(()) => Ok(false),
                Err(e) => Err(fail(db_error("cannot end the transaction", &e), replies)),
            };
        }
        let seq = self.seq + 1;
        let mut audited = self.audited.clone();
        // The histories written since are rotated every ROTATE_EVERY commits (and at a clean
        // stop), as sled's are at its checkpoints: between, a patron may have a few more.
        let rotating = seq % ROTATE_EVERY == 0;
        let written = write_batch(&mut tx, seq, node, &writes, insert_commit, upsert, delete, &mut audited)
            .and_then(|()| {
                tx.execute(&*notify, &[&CHANNEL, &node]).map_err(|e| db_error("cannot announce the commit", &e))?;
                if rotating {
                    rotate(&mut tx, rotate_audit, &audited, history_cap)?;
                    if seq > kept {
                        tx.execute("DELETE FROM commits WHERE seq <= $1", &[&((seq - kept) as i64)])
                            .map_err(|e| db_error("cannot trim the commits", &e))?;
                    }
                }
                Ok(())
            })
            .and_then(|()| tx.commit().map_err(|e| db_error("could not commit", &e)));
        match written {
            Ok(()) => {
                self.seq = seq;
                self.audited = if rotating { Default::default() } else { audited };
                Ok(true)
            }
            Err(e) => Err(fail(e, replies)),
        }
    }

    /// Reads of what only the database holds: history, files, the outbox.
    fn cold(&mut self, query: Query) -> Result<Answer, Error> {
        match query {
            Query::History(id) => {
                let created = seam::creation(&self.working, id)?;
                self.with_conn(|conn, _, _| {
                    let mut tx = conn.client.transaction().map_err(|e| db_error("cannot begin", &e))?;
                    let mut out = vec![created];
                    out.extend(read_history(&mut tx, id)?.into_iter().map(|(_, e)| e));
                    tx.commit().map_err(|e| db_error("cannot read", &e))?;
                    Ok(Answer::History(out))
                })
            }
            Query::File { patron, file } => {
                let info = seam::file_info(&self.working, patron, file)?;
                let key = store::file_key(patron, file);
                let row = self.with_conn(|conn, _, _| {
                    conn.client
                        .query_opt("SELECT value FROM files WHERE key = $1", &[&key])
                        .map_err(|e| db_error("cannot read the file", &e))
                })?;
                match row {
                    Some(r) => Ok(Answer::File(Box::new(info), FileBytes(r.get(0)))),
                    None => Err(Error::NotDone(format!("the store lacks file {file} of patron {patron}").into())),
                }
            }
            Query::Outbox => {
                let rows = self.with_conn(|conn, _, _| {
                    conn.client
                        .query("SELECT value FROM outbox ORDER BY key", &[])
                        .map_err(|e| db_error("cannot read the outbox", &e))
                })?;
                let notices = rows
                    .iter()
                    .map(|r| store::decode::<Notice>("notice", r.get::<_, &[u8]>(0)).map_err(Error::from))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Answer::Outbox(notices))
            }
            other => super::view::answer(&self.working, other),
        }
    }
}

/// Applies the batches committed after `seq` (by any node) to `state`. A gap (the rows were
/// trimmed while this node was away) reloads the whole register.
fn catch_up(tx: &mut Transaction<'_>, since: &Statement, state: &mut State, seq: &mut u64) -> Result<(), Error> {
    loop {
        let rows = tx.query(since, &[&(*seq as i64)]).map_err(|e| db_error("cannot read the commits", &e))?;
        let n = rows.len();
        for row in rows {
            let s = row.get::<_, i64>(0) as u64;
            if s != *seq + 1 {
                tracing::warn!(
                    have = *seq,
                    next = s,
                    "this node is behind what the database keeps of its commits; reloading the register"
                );
                let limits = *state.limits();
                let (fresh, at) = load_in(tx)?;
                *state = fresh.with_limits(limits);
                *seq = at;
                return Ok(());
            }
            for w in store::decode_batch(row.get::<_, &[u8]>(1))? {
                state.apply(&w).map_err(|r| {
                    Error::Store(StoreError::Corrupt {
                        kind: "commit",
                        detail: format!("batch {s} does not apply: {r}"),
                    })
                })?;
            }
            *seq = s;
        }
        if n < 10_000 {
            return Ok(());
        }
    }
}

/// Removes each of `patrons`' oldest audit entries beyond `cap` (one index scan of the
/// patron's history each: done every so many commits, not in each).
fn rotate(
    tx: &mut Transaction<'_>,
    rotate_audit: &Statement,
    patrons: &std::collections::BTreeSet<u64>,
    cap: i64,
) -> Result<(), Error> {
    for p in patrons {
        let (from, to) = patron_range(*p);
        tx.execute(rotate_audit, &[&from, &to, &cap]).map_err(|e| db_error("cannot rotate the history", &e))?;
    }
    Ok(())
}

/// A patron's stored audit history with each entry's key, oldest first.
fn read_history(tx: &mut Transaction<'_>, patron: u64) -> Result<Vec<(Vec<u8>, AuditEntry)>, Error> {
    let (from, to) = patron_range(patron);
    let rows = tx
        .query("SELECT key, value FROM audit WHERE key >= $1 AND key < $2 ORDER BY key", &[&from, &to])
        .map_err(|e| db_error("cannot read the history", &e))?;
    rows.iter().map(|r| Ok((r.get::<_, Vec<u8>>(0), store::decode("audit entry", r.get::<_, &[u8]>(1))?))).collect()
}

/// The keys of one patron's records in a table keyed by patron first.
fn patron_range(patron: u64) -> (Vec<u8>, Vec<u8>) {
    let to = match patron.checked_add(1) {
        Some(n) => n.to_be_bytes().to_vec(),
        None => vec![0xff; 9],
    };
    (patron.to_be_bytes().to_vec(), to)
}

/// Writes one batch: its `commits` row, and the record rows it put or removed; notes in
/// `audited` the patrons it wrote history for.
#[allow(clippy::too_many_arguments)]
fn write_batch(
    tx: &mut Transaction<'_>,
    seq: u64,
    node: &str,
    writes: &[Write],
    insert_commit: &Statement,
    upsert: &[Statement],
    delete: &[Statement],
    audited: &mut std::collections::BTreeSet<u64>,
) -> Result<(), Error> {
    let mut payload = Payload::default();
    payload.encode(writes);
    tx.execute(insert_commit, &[&(seq as i64), &node, &payload.bytes])
        .map_err(|e| db_error("cannot write the commit", &e))?;
    let mut pending = store::Pending::default();
    pending.fold(writes, Some(&payload));
    for (i, (table, changes)) in pending.take_sorted().into_trees().enumerate() {
        let (mut keys, mut values, mut gone) = (Vec::new(), Vec::new(), Vec::new());
        for (k, v) in changes {
            match v {
                Some(v) => {
                    if table == "audit" {
                        if let Some(p) = k.first_chunk::<8>() {
                            audited.insert(u64::from_be_bytes(*p));
                        }
                    }
                    keys.push(k);
                    values.push(v);
                }
                None => gone.push(k),
            }
        }
        if !keys.is_empty() {
            tx.execute(&upsert[i], &[&keys, &values]).map_err(|e| db_error(&format!("cannot write {table}"), &e))?;
        }
        if !gone.is_empty() {
            tx.execute(&delete[i], &[&gone]).map_err(|e| db_error(&format!("cannot write {table}"), &e))?;
        }
    }
    Ok(())
}

/// The thread that hears other nodes' commits announced and has the writer read them.
struct Listener {
    settings: PgSettings,
    jobs: SyncSender<Job>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Listener {
    fn run(self) {
        let mut wait = Duration::from_millis(100);
        while !self.stop.load(Ordering::SeqCst) {
            match self.listen() {
                Ok(()) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "not listening for other nodes' commits; the writer looks every poll_interval");
                    let until = Instant::now() + wait;
                    while Instant::now() < until && !self.stop.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Listens until stopped (Ok) or the connection breaks.
    fn listen(&self) -> Result<(), Error> {
        let mut client = connect(&self.settings)?;
        client.batch_execute(&format!("LISTEN {CHANNEL}")).map_err(|e| db_error("cannot listen", &e))?;
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            let mut heard = false;
            {
                let mut notes = client.notifications();
                let mut it = notes.timeout_iter(Duration::from_millis(200));
                while let Some(n) = postgres::fallible_iterator::FallibleIterator::next(&mut it)
                    .map_err(|e| db_error("lost the announcements", &e))?
                {
                    heard |= n.payload() != self.settings.node;
                }
            }
            if heard {
                match self.jobs.try_send(Job::Refresh) {
                    Ok(()) | Err(TrySendError::Full(_)) => {}
                    Err(TrySendError::Disconnected(_)) => return Ok(()),
                }
            }
            if client.is_closed() {
                return Err(Error::NotDone(Arc::from("the listening connection closed")));
            }
        }
    }
}

impl Engine for PgEngine {
    fn run(&self, op: Operation, by: By) -> Pending<Receipt> {
        let (reply, rx) = oneshot::channel();
        let job = if seam::may_read(&op) { Job::Peek { op, by, reply } } else { Job::Run { op, by, reply } };
        match self.send(job) {
            Ok(()) => Pending::waiting(rx),
            Err(e) => Pending::ready(Err(e)),
        }
    }

    fn query(&self, query: Query) -> Pending<Answer> {
        if matches!(query, Query::History(_) | Query::Outbox | Query::File { .. }) {
            let (reply, rx) = oneshot::channel();
            return match self.send(Job::Cold { query, reply }) {
                Ok(()) => Pending::waiting(rx),
                Err(e) => Pending::ready(Err(e)),
            };
        }
        self.read(move |s| super::view::answer(s, query))
    }

    fn check(&self, ops: Vec<Operation>, by: By) -> Pending<Vec<Result<Receipt, Error>>> {
        let key = self.inner.key.clone();
        self.read(move |s| Ok(seam::dry_run(s, &key, ops, &by)))
    }

    fn export(&self, sink: &mut dyn FnMut(&Line) -> std::io::Result<()>) -> Result<usize, Error> {
        // The register as it is now on every node.
        let view = self.read(|s| Ok(s.clone())).wait()?;
        seam::export(self, &view, &self.inner.key, sink)
    }

    fn pin_key_fingerprint(&self) -> Result<String, Error> {
        Ok(self.inner.key.fingerprint())
    }

    fn link_token(&self, serial: u64) -> Result<String, Error> {
        Ok(self.inner.key.link_token(serial))
    }

    fn stats(&self) -> Stats {
        let s = &self.inner.shared;
        Stats {
            batches: s.batches.load(Ordering::Relaxed),
            units: s.units.load(Ordering::Relaxed),
            reads: s.reads.load(Ordering::Relaxed),
            sync_micros: s.sync_micros.load(Ordering::Relaxed),
            checkpoints: 0,
            checkpoint_failures: 0,
        }
    }

    fn healthy(&self) -> bool {
        self.inner.shared.down().is_none()
    }

    fn observe(&self, observer: Observer) {
        if let Ok(mut o) = self.inner.shared.observer.lock() {
            *o = Some(observer);
        }
    }
}

/// A database of its own for one test, made on a server the tests may use and migrated;
/// dropped (with any connection still open to it) when this is.
#[cfg(test)]
pub struct TestDb {
    server: String,
    name: String,
}

#[cfg(test)]
impl TestDb {
    /// `server`: a key=value connection string to the server (its `postgres` database).
    pub fn create(server: &str) -> Result<TestDb, Error> {
        use std::sync::atomic::AtomicU32;
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let name = format!("sip2d_test_{}_{}_{nanos}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let db = TestDb { server: server.into(), name };
        let mut admin = connect(&PgSettings::new(format!("{server} dbname=postgres")))?;
        admin.batch_execute(&format!("CREATE DATABASE {}", db.name)).map_err(|e| db_error("cannot create", &e))?;
        migrate(&PgSettings::new(db.url()))?;
        Ok(db)
    }

    pub fn url(&self) -> String {
        format!("{} dbname={}", self.server, self.name)
    }
}

#[cfg(test)]
impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = connect(&PgSettings::new(format!("{} dbname=postgres", self.server))) {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}
