//! The sled engine: the register in memory, one writer thread that runs every unit in order
//! against the current state, a write-ahead log that makes each batch durable, and sled
//! underneath as the store of record, brought up to date from the log behind the writer.
//!
//! The writer takes whatever units are waiting as one batch. Each unit runs on the writer's
//! working copy and sees what the units before it in the batch did; a refused unit's changes
//! are dropped. The batch's writes are written to the log as one record and handed to the
//! syncer thread, and the writer goes on with the next batch. The syncer syncs the log once
//! for every batch waiting, then publishes the state the last one left as the view readers see,
//! and only then answers their units. No timer waits for a batch to fill: one kiosk waits for
//! one sync, a hundred share one. The checkpointer (`checkpoint.rs`) then writes the batches to
//! sled.
//!
//! A patron status or information with nothing to write is answered from the view without the
//! writer. Audit history and the outbox stay in sled only; they are read once sled holds every
//! batch published before the read.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::oneshot;

use crate::domain::secret::PinKey;

use super::checkpoint::{self, Checkpointer, Counters, ToCheckpointer};
use super::exchange::Line;
use super::ops::*;
use super::seam::{self, Queue};
use super::state::State;
use super::store::{Payload, StoreConfig, StoreError, Write};
use super::unit::Unit;
use super::wal::{self, AppendError, Durable, Log, Written};
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
    /// Where the log was last known whole: set by the syncer, used by a reopen.
    durable: Mutex<Durable>,
}

impl Shared {
    fn stopped(&self) -> Option<Arc<str>> {
        self.stopped.lock().ok().and_then(|s| s.clone())
    }
}

struct Inner {
    shared: Arc<Shared>,
    key: PinKey,
    jobs: Queue<Job>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The writer commits what it holds and ends when its queue closes.
        self.jobs.close();
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
        // sled starts its own threads (its flusher, its I/O pool) from the thread that first
        // opens it, and they take that thread's niceness: opened on a thread lowered as the
        // checkpointer's is, they too leave the cores to the threads answering kiosks.
        let opened = std::thread::scope(|s| {
            s.spawn(|| {
                checkpoint::lower_priority(settings.checkpoint_nice);
                let (store, log) = checkpoint::recover(dir, settings)?;
                let state = State::load(&store)?.with_limits(settings.limits);
                Ok::<_, Error>((store, log, state))
            })
            .join()
        });
        let (store, log, state) = opened.unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
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
            durable: Mutex::new(log.durable()),
        });
        let (to_syncer, from_writer) = std::sync::mpsc::channel();
        let syncer = Arc::new(Syncer {
            checkpointer,
            shared: shared.clone(),
            faults: log.faults().clone(),
            in_flight: std::sync::atomic::AtomicUsize::new(0),
        });
        let inline = syncer.clone();
        let syncer = std::thread::Builder::new()
            .name("sip2d-sync".into())
            .spawn(move || syncer.run(from_writer))
            .map_err(spawn_error)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let writer = Writer {
            log,
            syncer: Some((to_syncer, syncer)),
            inline,
            jobs: rx,
            carried: None,
            retry_interval: settings.retry_interval,
            payload: Payload::default(),
            key: key.clone(),
            shared: shared.clone(),
            written: state.clone(),
            working: state,
        };
        let handle =
            std::thread::Builder::new().name("sip2d-writer".into()).spawn(move || writer.run()).map_err(spawn_error)?;
        Ok(SledEngine {
            inner: Arc::new(Inner { shared, key, jobs: Queue::new(tx), writer: Mutex::new(Some(handle)) }),
        })
    }

    /// The committed view: what the last durable batch left.
    fn view(&self) -> Arc<State> {
        self.inner.shared.view.load_full()
    }

    fn send(&self, job: Job) -> Result<(), Error> {
        self.inner.jobs.send(job)
    }

    /// The number of patrons in the view (for start-up messages and benchmarks).
    pub fn patron_count(&self) -> usize {
        self.view().patron_count()
    }
}

impl Engine for SledEngine {
    fn run(&self, op: Operation, by: By) -> Pending<Receipt> {
        if let Some(why) = self.inner.shared.stopped() {
            return Pending::ready(Err(Error::Stopped(why)));
        }
        if seam::may_read(&op) {
            let view = self.inner.shared.view.load();
            let mut unit = Unit::reading(&view, &self.inner.key, &by);
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
        if matches!(query, Query::History(_) | Query::Outbox | Query::File { .. }) {
            let (reply, rx) = oneshot::channel();
            return match self.send(Job::Cold { query, reply }) {
                Ok(()) => Pending::waiting(rx),
                Err(e) => Pending::ready(Err(e)),
            };
        }
        Pending::ready(super::view::answer(&self.view(), query))
    }

    fn check(&self, ops: Vec<Operation>, by: By) -> Pending<Vec<Result<Receipt, Error>>> {
        Pending::ready(Ok(seam::dry_run(&self.view(), &self.inner.key, ops, &by)))
    }

    fn export(&self, sink: &mut dyn FnMut(&Line) -> std::io::Result<()>) -> Result<usize, Error> {
        let view = self.view();
        // The files are read from the store, a batch behind the view at most: one removed
        // since is left out, as the view's record still names it.
        seam::export(self, &view, &self.inner.key, sink)
    }

    fn link_token(&self, serial: u64) -> Result<String, Error> {
        Ok(self.inner.key.link_token(serial))
    }

    fn pin_key_fingerprint(&self) -> Result<String, Error> {
        Ok(self.inner.key.fingerprint())
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

/// The writer thread's state. It decides and writes each batch to the log, then hands it to
/// the syncer and goes on with the next: the next batch is decided while the last one's sync
/// runs, on the state that batch left, and is answered only after its own sync (so after that
/// one's too).
struct Writer {
    log: Log,
    /// The way to the syncer, and its thread (joined when the writer ends).
    syncer: Option<(Sender<ToSyncer>, std::thread::JoinHandle<()>)>,
    /// The syncer itself, for rounds the writer runs on its own thread.
    inline: Arc<Syncer>,
    jobs: Receiver<Job>,
    /// A job taken from the queue to see whether any waited, to be run next.
    carried: Option<Job>,
    retry_interval: Duration,
    /// The batch's log record, its buffers reused.
    payload: Payload,
    key: PinKey,
    shared: Arc<Shared>,
    /// The state with the batch so far applied.
    working: State,
    /// The state as the batches written to the log (synced or not) left it.
    written: State,
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
    fn run(mut self) {
        loop {
            // A failed sync is found by the syncer, maybe while the writer waits here: it looks
            // every `retry_interval`, and while stopped tries to reopen the log each time,
            // refusing what arrives meanwhile.
            let waited = match self.carried.take() {
                Some(job) => Ok(job),
                None => self.jobs.recv_timeout(self.retry_interval),
            };
            let first = match waited {
                Ok(job) => job,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if self.shared.stopped().is_some() {
                        self.try_reopen();
                    }
                    continue;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    // Closing: cut a batch in doubt from the log if the disk lets us, so that
                    // what the next open finds is exactly what was acknowledged.
                    self.settle();
                    if self.shared.stopped().is_some() {
                        self.try_reopen();
                    }
                    break;
                }
            };
            let mut batch = Batch::default();
            let mut job = Some(first);
            let mut taken = 0;
            while let Some(j) = job.take() {
                taken += 1;
                self.take(j, &mut batch);
                if taken < MAX_BATCH {
                    // A job carried by a commit inside this batch (before a cold read, say)
                    // came before any still queued.
                    job = self.carried.take().or_else(|| self.jobs.try_recv().ok());
                }
            }
            self.commit(&mut batch);
        }
        // The syncer answers what it holds, the checkpointer (which it owns) makes its last
        // checkpoint, and both end.
        if let Some((tx, handle)) = self.syncer.take() {
            drop(tx);
            let _ = handle.join();
        }
    }

    fn send(&self, m: ToSyncer) {
        if let Some((tx, _)) = &self.syncer {
            self.inline.in_flight.fetch_add(1, Ordering::AcqRel);
            // The syncer ends only after the writer has let it go.
            let _ = tx.send(m);
        }
    }

    /// Hands a batch to the syncer, or, when the syncer has nothing before it and no job waits
    /// for the writer, syncs (if it wrote) and answers it on this thread: with nothing to decide
    /// meanwhile, the syncer's thread would only add a crossing (two wake-ups) to every reply.
    fn hand_on(&mut self, m: ToSyncer) {
        if self.carried.is_none() && self.inline.in_flight.load(Ordering::Acquire) == 0 {
            match self.jobs.try_recv() {
                Ok(job) => self.carried = Some(job),
                Err(_) => return self.inline.round(vec![m]),
            }
        }
        self.send(m);
    }

    /// Waits until the syncer has answered everything sent to it so far.
    fn settle(&self) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.send(ToSyncer::Settled(tx));
        let _ = rx.recv();
    }

    fn try_reopen(&mut self) {
        // Every batch written before the failure has been answered (as not done) first.
        self.settle();
        let durable = self.shared.durable.lock().map(|d| d.clone()).unwrap_or_else(|_| self.log.durable());
        match self.log.reopen_at(&durable) {
            Ok(()) => {
                // What is durable is what was last published: decide from there.
                self.working = State::clone(&self.shared.view.load());
                self.written = self.working.clone();
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
                // Answered from sled once it holds every batch before the read.
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
                    // A purge reads stored history: sled, once it holds every batch before.
                    self.settle();
                    let (tx, rx) = std::sync::mpsc::sync_channel(1);
                    self.send(ToSyncer::Checkpointer(Box::new(move |c: &Checkpointer| {
                        let _ = tx.send(c.handle());
                    })));
                    match rx.recv().ok().and_then(|h| h.read_blocking(|_| Ok(())).ok().map(|()| h)) {
                        Some(h) => store = Some(h),
                        None => {
                            let _ = reply.send(Err(Error::NotDone(Arc::from("sled cannot be read now"))));
                            return;
                        }
                    }
                }
                let history = |patron: u64| {
                    store.as_ref().and_then(|c| c.read_blocking(move |s| s.history(patron)).ok()).unwrap_or_default()
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

    /// Writes the batch to the log and hands it to the syncer, which answers its units once
    /// it is durable.
    fn commit(&mut self, batch: &mut Batch) {
        if batch.replies.is_empty() && batch.writes.is_empty() {
            return;
        }
        let mut writes = std::mem::take(&mut batch.writes);
        if self.working.last_id() != self.written.last_id() {
            writes.push(Write::LastId(self.working.last_id()));
        }
        if self.working.audit_seq() != self.written.audit_seq() {
            writes.push(Write::AuditSeq(self.working.audit_seq()));
        }
        let replies = std::mem::take(&mut batch.replies);
        if writes.is_empty() {
            // Every unit wrote nothing; still, each was decided on what the batches before
            // left, so it is answered after their sync.
            let synced = Synced { written: None, state: None, replies, writes, payload: None, bytes: 0 };
            self.hand_on(ToSyncer::Batch(Box::new(synced)));
            return;
        }
        self.payload.encode(&writes);
        match self.log.write(&self.payload.bytes) {
            Ok(w) => {
                self.written = self.working.clone();
                let bytes = self.payload.bytes.len() as u64;
                let state = Some(self.written.clone());
                // The checkpointer copies the records out of the log record: a copy of a few
                // kilobytes instead of encoding each again.
                let payload = Some(Box::new(self.payload.clone()));
                let synced = Synced { written: Some(w), state, replies, writes, payload, bytes };
                self.hand_on(ToSyncer::Batch(Box::new(synced)));
                if let Some((path, last)) = self.log.rotate_if_full() {
                    self.send(ToSyncer::Sealed { path, last });
                }
            }
            Err(AppendError::NotWritten(e)) => {
                // Nothing of the batch reached the log (a full disk): refused, and the next
                // batch tries again.
                let why: Arc<str> = Arc::from(format!("could not write to the log: {e}"));
                tracing::error!(error = %why, units = replies.len(), "a batch was refused: nothing of it was changed");
                self.working = self.written.clone();
                for (reply, _) in replies {
                    let _ = reply.send(Err(Error::NotDone(why.clone())));
                }
            }
            Err(e @ AppendError::InDoubt(_)) => {
                let why: Arc<str> = Arc::from(e.to_string());
                tracing::error!(error = %why, "the write-ahead log could not be written; taking no changes until it is reopened");
                if let Ok(mut s) = self.shared.stopped.lock() {
                    *s = Some(why.clone());
                }
                self.working = self.written.clone();
                for (reply, _) in replies {
                    let _ = reply.send(Err(Error::Stopped(why.clone())));
                }
            }
        }
    }

    /// Reads of what only sled holds, answered by the checkpointer once sled holds every batch
    /// before them (the syncer passes them on after those batches).
    fn cold(&self, query: Query, reply: oneshot::Sender<Result<Answer, Error>>) {
        let not_done = |why: Arc<str>| Error::NotDone(why);
        match query {
            Query::History(id) => {
                let created = match seam::creation(&self.written, id) {
                    Ok(c) => c,
                    Err(r) => {
                        let _ = reply.send(Err(r.into()));
                        return;
                    }
                };
                self.send(ToSyncer::Read(Box::new(move |store| {
                    let r = store.map_err(not_done).and_then(|s| {
                        let mut out = vec![created];
                        out.extend(s.history(id)?.into_iter().map(|(_, e)| e));
                        Ok(Answer::History(out))
                    });
                    let _ = reply.send(r);
                })));
            }
            Query::File { patron, file } => {
                let info = match seam::file_info(&self.written, patron, file) {
                    Ok(i) => i,
                    Err(r) => {
                        let _ = reply.send(Err(r.into()));
                        return;
                    }
                };
                self.send(ToSyncer::Read(Box::new(move |store| {
                    let r = store.map_err(not_done).and_then(|s| match s.file(patron, file)? {
                        Some(bytes) => Ok(Answer::File(Box::new(info), FileBytes(bytes))),
                        None => Err(Error::NotDone(format!("the store lacks file {file} of patron {patron}").into())),
                    });
                    let _ = reply.send(r);
                })));
            }
            Query::Outbox => {
                self.send(ToSyncer::Read(Box::new(move |store| {
                    let _ = reply.send(store.map_err(not_done).and_then(|s| Ok(Answer::Outbox(s.notices()?))));
                })));
            }
            other => {
                let _ = reply.send(super::view::answer(&self.written, other));
            }
        }
    }
}

/// A batch written to the log, on its way to being answered.
struct Synced {
    /// The record, when the batch wrote anything.
    written: Option<Written>,
    /// The state the batch left, to publish once it is durable.
    state: Option<State>,
    replies: Vec<(Reply, Result<Receipt, Error>)>,
    writes: Vec<Write>,
    /// The batch's log record, when it wrote one.
    payload: Option<Box<Payload>>,
    bytes: u64,
}

enum ToSyncer {
    Batch(Box<Synced>),
    Sealed {
        path: std::path::PathBuf,
        last: u64,
    },
    Read(checkpoint::Read),
    /// Runs with the checkpointer, once every batch before is answered.
    Checkpointer(Box<dyn FnOnce(&Checkpointer) + Send>),
    /// Answered once every batch before is.
    Settled(std::sync::mpsc::SyncSender<()>),
}

/// Batches waiting for the syncer at most, taken into one round of syncs.
const MAX_GROUP: usize = 4096;

/// The syncer thread: takes every batch the writer has written, syncs the log once for all
/// of them, then publishes the state the last one left, answers their units, and hands their
/// writes to the checkpointer.
struct Syncer {
    checkpointer: Checkpointer,
    shared: Arc<Shared>,
    faults: wal::Faults,
    /// Messages the writer has sent that the syncer has not finished yet.
    in_flight: std::sync::atomic::AtomicUsize,
}

impl Syncer {
    fn run(self: Arc<Self>, from_writer: Receiver<ToSyncer>) {
        while let Ok(first) = from_writer.recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match from_writer.try_recv() {
                    Ok(m) => group.push(m),
                    Err(_) => break,
                }
            }
            let n = group.len();
            self.round(group);
            self.in_flight.fetch_sub(n, Ordering::AcqRel);
        }
    }

    fn round(&self, group: Vec<ToSyncer>) {
        let started = Instant::now();
        // One sync per segment written to (a group spans two when the writer began a new one).
        let mut last: Option<&Written> = None;
        let mut synced: Result<(), Arc<str>> = match self.shared.stopped() {
            Some(why) => Err(why),
            None => Ok(()),
        };
        for m in &group {
            if let ToSyncer::Batch(b) = m {
                if let Some(w) = &b.written {
                    if synced.is_ok() && last.is_some_and(|l| !Arc::ptr_eq(&l.file, &w.file)) {
                        synced = last.map_or(Ok(()), |l| wal::sync(l, &self.faults)).map_err(|e| self.failed(&e));
                    }
                    last = Some(w);
                }
            }
        }
        if synced.is_ok() {
            if let Some(l) = last {
                synced = wal::sync(l, &self.faults).map_err(|e| self.failed(&e));
                if synced.is_ok() {
                    if let Ok(mut d) = self.shared.durable.lock() {
                        *d = Durable { path: l.path.clone(), end: l.end, seq: l.seq };
                    }
                }
            }
        }
        let took = started.elapsed();
        let units: usize = group.iter().map(|m| if let ToSyncer::Batch(b) = m { b.replies.len() } else { 0 }).sum();
        if synced.is_ok() {
            // The view readers see: what the last batch of the round left.
            let newest = group.iter().rev().find_map(|m| match m {
                ToSyncer::Batch(b) => b.state.as_ref(),
                _ => None,
            });
            if let Some(state) = newest {
                let old = self.shared.view.swap(Arc::new(state.clone()));
                self.checkpointer.send(ToCheckpointer::Retire(Box::new(old)));
                self.shared.batches.fetch_add(1, Ordering::Relaxed);
                self.shared.sync_micros.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
                if let Some(o) = self.shared.observer.lock().ok().as_ref().and_then(|o| o.as_ref()) {
                    o(took, units);
                }
            }
        }
        for m in group {
            match m {
                ToSyncer::Batch(b) => {
                    let Synced { written, state, replies, writes, payload, bytes } = *b;
                    drop(state);
                    match &synced {
                        Ok(()) => {
                            for (reply, r) in replies {
                                let _ = reply.send(r);
                            }
                            if let Some(w) = written {
                                self.checkpointer.send(ToCheckpointer::Batch { seq: w.seq, writes, payload, bytes });
                            }
                        }
                        Err(why) => {
                            for (reply, _) in replies {
                                let _ = reply.send(Err(Error::Stopped(why.clone())));
                            }
                        }
                    }
                }
                // A segment is given up to removal only when what it holds is durable: after a
                // failure its record numbers are given out again.
                ToSyncer::Sealed { path, last } if synced.is_ok() => {
                    self.checkpointer.send(ToCheckpointer::Sealed { path, last })
                }
                ToSyncer::Sealed { .. } => {}
                ToSyncer::Read(f) => self.checkpointer.send(ToCheckpointer::Read(f)),
                ToSyncer::Checkpointer(f) => f(&self.checkpointer),
                ToSyncer::Settled(tx) => {
                    let _ = tx.send(());
                }
            }
        }
    }

    /// A sync failed: nothing of this round is acknowledged, and no change is taken until the
    /// writer has reopened the log and cut it back to where it was whole (a failed sync may
    /// have lost what it was given; trying again could acknowledge a change the disk does not
    /// have: PostgreSQL's 2018 lesson).
    fn failed(&self, e: &std::io::Error) -> Arc<str> {
        let why: Arc<str> = Arc::from(format!("could not sync the log: {e}"));
        tracing::error!(error = %why, "the write-ahead log could not be synced; taking no changes until it is reopened");
        if let Ok(mut s) = self.shared.stopped.lock() {
            *s = Some(why.clone());
        }
        why
    }
}
