//! The sled engine: the register in memory, one writer thread that runs every unit in order
//! against the current state, a write-ahead log that makes each batch durable, and sled
//! underneath as the store of record, brought up to date from the log behind the writer.
//!
//! The writer takes whatever units are waiting as one batch. Each unit runs on the writer's
//! working copy and sees what the units before it in the batch did; a refused unit's changes
//! are dropped. The batch's writes are appended to the log as one record and synced; then the
//! new state is published as the view readers see, and only then is any unit of the batch
//! answered. No timer waits for a batch to fill: one kiosk waits for one sync, a hundred share
//! one. The checkpointer (`checkpoint.rs`) then writes the batch to sled.
//!
//! A unit that writes nothing (a status check with the right PIN, a refused checkout) is
//! answered from the view without the writer. Audit history and the outbox stay in sled
//! only; they are read once sled holds every batch published before the read.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::oneshot;

use crate::domain::secret::PinKey;
use crate::domain::*;

use super::checkpoint::{self, Checkpointer, Counters, ToCheckpointer};
use super::exchange::{self, Line};
use super::ops::*;
use super::state::State;
use super::store::{StoreConfig, StoreError, Write, encode_batch};
use super::unit::Unit;
use super::wal::{AppendError, Log};
use super::{Engine, Error, Pending, units};

/// Units the writer takes into one batch at most.
const MAX_BATCH: usize = 1024;
/// Units that may wait for the writer before senders wait for room.
const QUEUE: usize = 16 * 1024;

/// Counters of the writer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Batches committed (one sync each).
    pub batches: u64,
    /// Units run by the writer.
    pub units: u64,
    /// Units answered from the view, without the writer.
    pub reads: u64,
    /// Time spent in log appends and syncs, in microseconds.
    pub sync_micros: u64,
    /// Checkpoints made (sled brought up to date with the log and flushed).
    pub checkpoints: u64,
    /// Checkpoints that failed (sled is reopened and the log read back into it).
    pub checkpoint_failures: u64,
}

/// Called after each committed batch with the time its sync took and how many units it held.
pub type Observer = Box<dyn Fn(Duration, usize) + Send + Sync>;

enum Job {
    Run { op: Operation, by: By, reply: oneshot::Sender<Result<Receipt, Error>> },
    Cold { query: Query, reply: oneshot::Sender<Result<Answer, Error>> },
}

/// What the writer and the readers share.
struct Shared {
    view: ArcSwap<State>,
    stopped: Mutex<Option<Arc<str>>>,
    observer: Mutex<Option<Observer>>,
    batches: AtomicU64,
    units: AtomicU64,
    reads: AtomicU64,
    sync_micros: AtomicU64,
    checkpoints: Arc<Counters>,
}

impl Shared {
    fn stopped(&self) -> Option<Arc<str>> {
        self.stopped.lock().ok().and_then(|s| s.clone())
    }
}

struct Inner {
    shared: Arc<Shared>,
    key: PinKey,
    jobs: Mutex<Option<SyncSender<Job>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The writer commits what it holds and ends when its queue closes.
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        if let Some(h) = self.writer.lock().ok().and_then(|mut w| w.take()) {
            let _ = h.join();
        }
    }
}

/// The sled engine. Clones share it; the last one dropped stops the writer after its batch.
#[derive(Clone)]
pub struct SledEngine {
    inner: Arc<Inner>,
}

impl SledEngine {
    /// Opens the register in `dir` (the store, and the PIN key `key`) and starts its writer.
    pub fn open(dir: &Path, key: PinKey, settings: &StoreConfig) -> Result<SledEngine, Error> {
        let (store, log) = checkpoint::recover(dir, settings)?;
        let state = State::load(&store)?;
        let counters = Arc::new(Counters::default());
        let spawn_error =
            |e: std::io::Error| Error::Store(StoreError::Open { path: dir.to_path_buf(), source: e.into() });
        let checkpointer =
            Checkpointer::start(dir, store, log.next_seq() - 1, settings, counters.clone()).map_err(spawn_error)?;
        let shared = Arc::new(Shared {
            view: ArcSwap::from_pointee(state.clone()),
            stopped: Mutex::new(None),
            observer: Mutex::new(None),
            batches: AtomicU64::new(0),
            units: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            sync_micros: AtomicU64::new(0),
            checkpoints: counters,
        });
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let writer = Writer {
            log,
            checkpointer,
            retry_interval: settings.retry_interval,
            buf: Vec::new(),
            key: key.clone(),
            shared: shared.clone(),
            working: state.clone(),
            committed: state,
        };
        let handle = std::thread::Builder::new()
            .name("sip2d-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(spawn_error)?;
        Ok(SledEngine {
            inner: Arc::new(Inner { shared, key, jobs: Mutex::new(Some(tx)), writer: Mutex::new(Some(handle)) }),
        })
    }

    /// The committed view: what the last durable batch left.
    fn view(&self) -> Arc<State> {
        self.inner.shared.view.load_full()
    }

    fn send(&self, job: Job) -> Result<(), Error> {
        let jobs = self.inner.jobs.lock().map_err(|_| Error::Closed)?;
        let Some(tx) = jobs.as_ref() else { return Err(Error::Closed) };
        match tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job)) => {
                let tx = tx.clone();
                drop(jobs);
                tx.send(job).map_err(|_| Error::Closed)
            }
            Err(TrySendError::Disconnected(_)) => Err(Error::Closed),
        }
    }

    /// The number of patrons in the view (for start-up messages and benchmarks).
    pub fn patron_count(&self) -> usize {
        self.view().patron_count()
    }
}

/// Whether an operation is tried on the view first, to be answered there when it writes
/// nothing: the ones that usually only read (a patron status or information, a PIN test).
/// The rest go straight to the writer: trying them first would run a checkout twice.
fn may_read(op: &Operation) -> bool {
    matches!(op, Operation::KioskPatron { .. } | Operation::CheckPin { .. })
}

impl Engine for SledEngine {
    fn run(&self, op: Operation, by: By) -> Pending<Receipt> {
        if let Some(why) = self.inner.shared.stopped() {
            return Pending::ready(Err(Error::Stopped(why)));
        }
        if may_read(&op) {
            let mut scratch = State::clone(&self.view());
            let mut unit = Unit::new(&mut scratch, &self.inner.key, &by);
            let r = units::run(op.clone(), &mut unit);
            if unit.writes() == 0 {
                self.inner.shared.reads.fetch_add(1, Ordering::Relaxed);
                return Pending::ready(r);
            }
        }
        let (reply, rx) = oneshot::channel();
        match self.send(Job::Run { op, by, reply }) {
            Ok(()) => Pending::waiting(rx),
            Err(e) => Pending::ready(Err(e)),
        }
    }

    fn query(&self, query: Query) -> Pending<Answer> {
        if matches!(query, Query::History(_) | Query::Outbox) {
            let (reply, rx) = oneshot::channel();
            return match self.send(Job::Cold { query, reply }) {
                Ok(()) => Pending::waiting(rx),
                Err(e) => Pending::ready(Err(e)),
            };
        }
        Pending::ready(super::view::answer(&self.view(), query))
    }

    fn check(&self, ops: Vec<Operation>, by: By) -> Pending<Vec<Result<Receipt, Error>>> {
        let mut scratch = State::clone(&self.view());
        let out = ops
            .into_iter()
            .map(|op| {
                let mut unit = Unit::new(&mut scratch, &self.inner.key, &by);
                unit.attempt(|u| units::run(op, u))
            })
            .collect();
        Pending::ready(Ok(out))
    }

    fn export(&self, sink: &mut dyn FnMut(&Line) -> std::io::Result<()>) -> Result<usize, Error> {
        let view = self.view();
        exchange::export(&view, &self.inner.key.fingerprint(), sink)
            .map_err(|e| Error::Refused(Refusal::rule(format!("cannot write the export: {e}"))))
    }

    fn pin_key_fingerprint(&self) -> String {
        self.inner.key.fingerprint()
    }

    fn stats(&self) -> Stats {
        let s = &self.inner.shared;
        Stats {
            batches: s.batches.load(Ordering::Relaxed),
            units: s.units.load(Ordering::Relaxed),
            reads: s.reads.load(Ordering::Relaxed),
            sync_micros: s.sync_micros.load(Ordering::Relaxed),
            checkpoints: s.checkpoints.checkpoints.load(Ordering::Relaxed),
            checkpoint_failures: s.checkpoints.failures.load(Ordering::Relaxed),
        }
    }

    fn healthy(&self) -> bool {
        self.inner.shared.stopped().is_none()
    }

    fn observe(&self, observer: Observer) {
        if let Ok(mut o) = self.inner.shared.observer.lock() {
            *o = Some(observer);
        }
    }
}

/// The writer thread's state.
struct Writer {
    log: Log,
    checkpointer: Checkpointer,
    retry_interval: Duration,
    /// The batch's log record, reused.
    buf: Vec<u8>,
    key: PinKey,
    shared: Arc<Shared>,
    /// The state with the batch so far applied.
    working: State,
    /// The state as last made durable (and published).
    committed: State,
}

/// Where a unit's answer goes.
type Reply = oneshot::Sender<Result<Receipt, Error>>;

/// A batch in the making: the writes of its units and who waits for which answer.
#[derive(Default)]
struct Batch {
    writes: Vec<Write>,
    replies: Vec<(Reply, Result<Receipt, Error>)>,
}

impl Writer {
    fn run(mut self, jobs: Receiver<Job>) {
        loop {
            let first = if self.shared.stopped().is_some() {
                // Stopped by a failed sync: try to reopen the log now and then, meanwhile
                // refusing what still arrives.
                match jobs.recv_timeout(self.retry_interval) {
                    Ok(job) => job,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        self.try_reopen();
                        continue;
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                        // Closing: cut the batch in doubt from the log if the disk lets us, so
                        // that what the next open finds is exactly what was acknowledged.
                        self.try_reopen();
                        return;
                    }
                }
            } else {
                match jobs.recv() {
                    Ok(job) => job,
                    Err(_) => return,
                }
            };
            let mut batch = Batch::default();
            let mut job = Some(first);
            let mut taken = 0;
            while let Some(j) = job.take() {
                taken += 1;
                self.take(j, &mut batch);
                if taken < MAX_BATCH {
                    job = jobs.try_recv().ok();
                }
            }
            self.commit(&mut batch);
        }
    }

    fn try_reopen(&mut self) {
        match self.log.reopen() {
            Ok(()) => {
                tracing::info!(file = %self.log.path().display(), "write-ahead log reopened after a failed sync; taking changes again");
                if let Ok(mut s) = self.shared.stopped.lock() {
                    *s = None;
                }
            }
            Err(e) => tracing::error!(error = %e, "the write-ahead log cannot be reopened yet; taking no changes"),
        }
    }

    /// Runs one job into the batch (committing first when it must run alone).
    fn take(&mut self, job: Job, batch: &mut Batch) {
        match job {
            Job::Cold { query, reply } => {
                // Answered from sled once it holds every batch published so far.
                self.commit(batch);
                self.cold(query, reply);
            }
            Job::Run { op, by, reply } => {
                if let Some(why) = self.shared.stopped() {
                    let _ = reply.send(Err(Error::Stopped(why)));
                    return;
                }
                let alone = matches!(op, Operation::Purge { .. });
                let mut store = None;
                if alone {
                    self.commit(batch);
                    // A purge reads stored history: sled, holding every batch published.
                    match self.checkpointer.read_blocking(|_| Ok(())) {
                        Ok(()) => store = Some(&self.checkpointer),
                        Err(why) => {
                            let _ = reply.send(Err(Error::NotDone(why)));
                            return;
                        }
                    }
                }
                let history = |patron: u64| {
                    store.and_then(|c| c.read_blocking(move |s| s.history(patron)).ok()).unwrap_or_default()
                };
                let mut unit = Unit::new(&mut self.working, &self.key, &by).with_history(&history);
                let result = units::run(op, &mut unit);
                if result.is_err() {
                    unit.roll_back();
                }
                let writes = unit.into_writes();
                self.shared.units.fetch_add(1, Ordering::Relaxed);
                batch.writes.extend(writes);
                batch.replies.push((reply, result));
                if alone {
                    self.commit(batch);
                }
            }
        }
    }

    /// Makes the batch durable in the log, publishes the state it leaves, answers its units,
    /// then hands its writes to the checkpointer.
    fn commit(&mut self, batch: &mut Batch) {
        if batch.replies.is_empty() && batch.writes.is_empty() {
            return;
        }
        let mut writes = std::mem::take(&mut batch.writes);
        if self.working.last_id() != self.committed.last_id() {
            writes.push(Write::LastId(self.working.last_id()));
        }
        if self.working.audit_seq() != self.committed.audit_seq() {
            writes.push(Write::AuditSeq(self.working.audit_seq()));
        }
        let units = batch.replies.len();
        if writes.is_empty() {
            // Every unit was refused: nothing to make durable.
            for (reply, r) in batch.replies.drain(..) {
                let _ = reply.send(r);
            }
            return;
        }
        let started = Instant::now();
        encode_batch(&writes, &mut self.buf);
        let appended = self.log.append(&self.buf);
        let took = started.elapsed();
        match appended {
            Ok(seq) => {
                self.committed = self.working.clone();
                let old = self.shared.view.swap(Arc::new(self.committed.clone()));
                self.checkpointer.send(ToCheckpointer::Retire(Box::new(old)));
                self.shared.batches.fetch_add(1, Ordering::Relaxed);
                self.shared.sync_micros.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
                if let Some(o) = self.shared.observer.lock().ok().as_ref().and_then(|o| o.as_ref()) {
                    o(took, units);
                }
                for (reply, r) in batch.replies.drain(..) {
                    let _ = reply.send(r);
                }
                let bytes = self.buf.len() as u64;
                self.checkpointer.send(ToCheckpointer::Batch { seq, writes, bytes });
                if let Some((path, last)) = self.log.rotate_if_full() {
                    self.checkpointer.send(ToCheckpointer::Sealed { path, last });
                }
            }
            Err(AppendError::NotWritten(e)) => {
                // Nothing of the batch reached the log (a full disk): refused, and the next
                // batch tries again.
                let why: Arc<str> = Arc::from(format!("could not write to the log: {e}"));
                tracing::error!(error = %why, units, "a batch was refused: nothing of it was changed");
                self.working = self.committed.clone();
                for (reply, _) in batch.replies.drain(..) {
                    let _ = reply.send(Err(Error::NotDone(why.clone())));
                }
            }
            Err(e @ AppendError::InDoubt(_)) => {
                // Not known to be durable: nothing of the batch is acknowledged, and no write is
                // taken until the log is reopened and cut back to what was (a failed sync may
                // have lost what it was given; trying again could acknowledge a change the disk
                // does not have).
                let why: Arc<str> = Arc::from(e.to_string());
                tracing::error!(error = %why, "the write-ahead log could not be synced; taking no changes until it is reopened");
                if let Ok(mut s) = self.shared.stopped.lock() {
                    *s = Some(why.clone());
                }
                self.working = self.committed.clone();
                for (reply, _) in batch.replies.drain(..) {
                    let _ = reply.send(Err(Error::Stopped(why.clone())));
                }
            }
        }
    }

    /// Reads of what only sled holds, answered by the checkpointer once sled holds every batch
    /// published so far.
    fn cold(&self, query: Query, reply: oneshot::Sender<Result<Answer, Error>>) {
        let not_done = |why: Arc<str>| Error::NotDone(why);
        match query {
            Query::History(id) => {
                let Some(p) = self.committed.patron(id) else {
                    let _ = reply.send(Err(Refusal::NoPatron(format!("#{id}")).into()));
                    return;
                };
                let c = &p.created;
                let created =
                    AuditEntry { patron: id, at: c.at, by: c.by.clone(), action: c.via.clone(), changes: vec![] };
                self.checkpointer.send(ToCheckpointer::Read(Box::new(move |store| {
                    let r = store.map_err(not_done).and_then(|s| {
                        let mut out = vec![created];
                        out.extend(s.history(id)?.into_iter().map(|(_, e)| e));
                        Ok(Answer::History(out))
                    });
                    let _ = reply.send(r);
                })));
            }
            Query::Outbox => {
                self.checkpointer.send(ToCheckpointer::Read(Box::new(move |store| {
                    let _ = reply.send(store.map_err(not_done).and_then(|s| Ok(Answer::Outbox(s.notices()?))));
                })));
            }
            other => {
                let _ = reply.send(super::view::answer(&self.committed, other));
            }
        }
    }
}
