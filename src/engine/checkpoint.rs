//! The checkpointer: brings sled up to date with the write-ahead log behind the writer, and
//! answers the reads only sled can (audit history, the outbox) once it holds every batch
//! before them. Start-up recovery (sled plus what the log holds after it) is here too.
//!
//! Batches arrive already durable in the log. Each is folded into [`Pending`], one change per
//! key; a checkpoint writes that to sled, flushes it, and records the last batch sled holds,
//! after which the log segments sled holds whole are removed. A crash at any point leaves sled
//! behind the log, never ahead of it, and the log's writes are whole records (a put or a
//! removal of a key), so replaying it over a checkpoint that was cut short puts sled right.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use super::store::{Payload, Pending, Store, StoreConfig, StoreError, Write, decode_batch};

/// Changes written to sled at a time during a checkpoint; between two such parts the
/// checkpointer takes in the batches that arrived meanwhile, so none pile up.
const PART: usize = 256;
/// How often the checkpointer takes the batches gathered for it while they come. Woken for
/// each batch instead, it cost a futex wake on the syncer's side and a context switch on its
/// own thousands of times a second: more than folding the batches in. Reads and sealed
/// segments still wake it at once.
const GATHER: Duration = Duration::from_millis(10);
/// Batches gathered that wake a checkpointer which found none at its last look (and so waits
/// for its next checkpoint instead of looking every `GATHER`).
const WAKE_AT: usize = 64;
use super::wal::{self, Log};

/// A read of sled, run once sled holds every batch sent before it (or with why it cannot be).
pub type Read = Box<dyn FnOnce(Result<&Store, Arc<str>>) + Send>;

pub enum ToCheckpointer {
    /// A durable batch: its number in the log, its writes, its log record (the records are
    /// copied out of it) and that record's length.
    Batch {
        seq: u64,
        writes: Vec<Write>,
        payload: Option<Box<Payload>>,
        bytes: u64,
    },
    /// A log segment the writer closed, holding records up to `last`.
    Sealed {
        path: PathBuf,
        last: u64,
    },
    Read(Read),
    /// Something to drop here rather than on the writer: a view readers no longer get, whose
    /// freeing (every node the next batch copied) is work the writer need not wait on.
    Retire(Box<dyn Send>),
    /// Batches are gathered: take them.
    Wake,
}

/// Counters of the checkpointer, for metrics.
#[derive(Default)]
pub struct Counters {
    pub checkpoints: AtomicU64,
    pub failures: AtomicU64,
}

/// Opens sled in `dir` and brings it up to date with the log: every record it lacks is
/// replayed, a torn tail is dropped with a log line, and the old segments are removed; then a
/// new segment is started. Returns the store and the log, ready for the writer.
pub fn recover(dir: &Path, settings: &StoreConfig) -> Result<(Store, Log), StoreError> {
    let store = Store::open(dir, settings)?;
    let applied = store.applied()?;
    let log_dir = dir.join(wal::DIR);
    let mut pending = Pending::default();
    let replayed = wal::replay(&log_dir, applied, |_, payload| {
        pending.fold(&decode_batch(payload)?, None);
        Ok::<(), StoreError>(())
    })?;
    if let Some(t) = &replayed.torn {
        warn!(
            file = %t.path.display(), offset = t.offset, bytes = t.bytes, why = %t.why,
            "dropped the end of the write-ahead log: a record a crash cut short (its sync never returned, so it was never acknowledged)"
        );
    }
    if replayed.replayed > 0 {
        info!(
            batches = replayed.replayed,
            from = applied + 1,
            to = replayed.last,
            "replayed the write-ahead log into sled"
        );
        store.apply(&mut pending)?;
        store.checkpoint(replayed.last)?;
    }
    // sled holds every record now: the segments read are no longer needed.
    wal::remove(&log_dir, &replayed.segments)?;
    let log = Log::create(&log_dir, replayed.last.max(applied) + 1, settings.segment_bytes, settings.faults.clone())?;
    Ok((store, log))
}

/// Lowers the calling thread's scheduling priority by `nice` (to 19 at most): checkpoints are
/// work that can wait, and on a busy machine the threads answering kiosks then get the cores
/// first. Linux keeps a niceness per thread; elsewhere it is the process's, so it is left.
pub(crate) fn lower_priority(nice: u8) {
    #[cfg(target_os = "linux")]
    if nice > 0 {
        // SAFETY: both calls only read their arguments; `who` 0 is the calling thread.
        let now = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let to = now.saturating_add(libc::c_int::from(nice)).min(19);
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, to) } != 0 {
            let e = std::io::Error::last_os_error();
            warn!(error = %e, nice = to, "could not lower the checkpointer's priority; it runs at the server's");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// Batches and retired views waiting for the checkpointer to take them, in order.
#[derive(Clone, Default)]
struct Gathered(Arc<Mutex<Vec<ToCheckpointer>>>);

impl Gathered {
    fn lock(&self) -> MutexGuard<'_, Vec<ToCheckpointer>> {
        // A panic while pushing or taking leaves a whole vector: nothing to repair.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The checkpointer thread and the way to it.
pub struct Checkpointer {
    tx: Option<Sender<ToCheckpointer>>,
    gathered: Gathered,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the checkpointer over `store`, which holds the log up to `applied`.
    pub fn start(
        dir: &Path,
        store: Store,
        applied: u64,
        settings: &StoreConfig,
        counters: Arc<Counters>,
    ) -> std::io::Result<Checkpointer> {
        let (tx, rx) = std::sync::mpsc::channel();
        let gathered = Gathered::default();
        let worker = Worker {
            rx,
            gathered: gathered.clone(),
            busy: false,
            deferred: Vec::new(),
            dir: dir.to_path_buf(),
            settings: settings.clone(),
            store: Some(store),
            pending: Pending::default(),
            received: applied,
            applied,
            log_bytes: 0,
            last: Instant::now(),
            sealed: Vec::new(),
            failing: None,
            counters,
        };
        let nice = settings.checkpoint_nice;
        let handle = std::thread::Builder::new().name("sip2d-checkpoint".into()).spawn(move || {
            lower_priority(nice);
            worker.run()
        })?;
        Ok(Checkpointer { tx: Some(tx), gathered, handle: Some(handle) })
    }

    /// Batches and retired views wait to be taken (within `GATHER`, or before the next message
    /// is handled); anything else wakes the checkpointer.
    pub fn send(&self, m: ToCheckpointer) {
        if matches!(m, ToCheckpointer::Batch { .. } | ToCheckpointer::Retire(_)) {
            let mut gathered = self.gathered.lock();
            gathered.push(m);
            if gathered.len() != WAKE_AT {
                return;
            }
            drop(gathered);
            return self.send(ToCheckpointer::Wake);
        }
        if let Some(tx) = &self.tx {
            // The checkpointer ends only after this side is dropped.
            let _ = tx.send(m);
        }
    }

    /// A way to send reads, for a thread that is not the one owning the checkpointer.
    pub fn handle(&self) -> Handle {
        Handle { tx: self.tx.clone() }
    }
}

/// Sends reads to the checkpointer (held briefly: while one is held the checkpointer runs on).
pub struct Handle {
    tx: Option<Sender<ToCheckpointer>>,
}

impl Handle {
    /// Runs `f` on sled once it holds every batch sent before, and waits for its answer.
    pub fn read_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Arc<str>> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let Some(to) = &self.tx else { return Err(Arc::from("the checkpointer has stopped")) };
        let _ = to.send(ToCheckpointer::Read(Box::new(move |store| {
            let _ = tx.send(store.and_then(|s| f(s).map_err(|e| Arc::from(e.to_string()))));
        })));
        rx.recv().unwrap_or_else(|_| Err(Arc::from("the checkpointer has stopped")))
    }
}

impl Drop for Checkpointer {
    /// The last checkpoint is made before this returns: sled then holds the whole log.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

struct Worker {
    rx: Receiver<ToCheckpointer>,
    /// Batches sent before any message on `rx` was, taken before it is handled.
    gathered: Gathered,
    /// Whether the last look at what was gathered found anything.
    busy: bool,
    /// Reads that arrived during a checkpoint, answered after it.
    deferred: Vec<Read>,
    dir: PathBuf,
    settings: StoreConfig,
    /// None after a failure, until sled is reopened.
    store: Option<Store>,
    pending: Pending,
    /// The last batch received.
    received: u64,
    /// The last batch sled holds durably.
    applied: u64,
    /// Log bytes received since the last checkpoint.
    log_bytes: u64,
    last: Instant,
    sealed: Vec<(PathBuf, u64)>,
    /// Why the last attempt failed, and when to try again.
    failing: Option<(String, Instant)>,
    counters: Arc<Counters>,
}

impl Worker {
    fn run(mut self) {
        loop {
            let due = match &self.failing {
                Some((_, retry)) => *retry,
                None => self.last + self.settings.checkpoint_interval,
            };
            let mut wait = due.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            if self.busy {
                wait = wait.min(GATHER);
            }
            let got = self.rx.recv_timeout(wait);
            // Whatever was gathered was sent before the message just taken.
            self.take_gathered();
            match got {
                // Outside a checkpoint, a read is answered and a sealed segment looked at now.
                Ok(ToCheckpointer::Read(f)) => self.read(f),
                Ok(ToCheckpointer::Sealed { path, last }) => {
                    self.sealed.push((path, last));
                    self.remove_sealed();
                }
                Ok(m) => self.arrived(m),
                Err(RecvTimeoutError::Timeout) if Instant::now() < due => {}
                Err(RecvTimeoutError::Timeout) => {
                    if self.received > self.applied || self.failing.is_some() {
                        self.checkpoint();
                    } else {
                        self.last = Instant::now();
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    if self.received > self.applied {
                        self.checkpoint();
                    }
                    return;
                }
            }
            if self.log_bytes >= self.settings.checkpoint_bytes && self.failing.is_none() {
                self.checkpoint();
            }
        }
    }

    /// Takes in the batches gathered so far, and drops the retired views.
    fn take_gathered(&mut self) {
        let gathered = std::mem::take(&mut *self.gathered.lock());
        self.busy = !gathered.is_empty();
        for m in gathered {
            self.arrived(m);
        }
    }

    /// Takes in a message (one that arrived during a checkpoint: a read waits for its end).
    fn arrived(&mut self, m: ToCheckpointer) {
        match m {
            ToCheckpointer::Batch { seq, writes, payload, bytes } => {
                self.take_batch(seq, &writes, payload.as_deref(), bytes)
            }
            ToCheckpointer::Sealed { path, last } => self.sealed.push((path, last)),
            ToCheckpointer::Read(f) => self.deferred.push(f),
            ToCheckpointer::Retire(old) => drop(old),
            ToCheckpointer::Wake => {}
        }
    }

    fn take_batch(&mut self, seq: u64, writes: &[Write], payload: Option<&Payload>, bytes: u64) {
        self.pending.fold(writes, payload);
        self.received = seq;
        self.log_bytes += bytes;
    }

    fn read(&mut self, f: Read) {
        match self.current() {
            Ok(()) => f(self.store.as_ref().ok_or_else(|| Arc::from("sled is closed"))),
            Err(why) => f(Err(why)),
        }
    }

    /// During a checkpoint: takes in what has arrived (reads wait for the checkpoint's end).
    fn take_arrived(&mut self) {
        self.take_gathered();
        while let Ok(m) = self.rx.try_recv() {
            self.take_gathered();
            self.arrived(m);
        }
    }

    /// Makes sled hold every batch received (applied, not necessarily flushed), reopening it
    /// first after a failure.
    fn current(&mut self) -> Result<(), Arc<str>> {
        if self.store.is_none() {
            self.reopen().map_err(|e| self.fail(e))?;
        }
        if !self.pending.is_empty() {
            let store = self.store.as_ref().ok_or_else(|| Arc::<str>::from("sled is closed"))?;
            if let Err(e) = store.apply(&mut self.pending) {
                return Err(self.fail(e));
            }
        }
        Ok(())
    }

    /// After a failure (sled keeps an I/O error until it is reopened): sled opened again, and
    /// every batch received since the last checkpoint read back from the log, which holds them
    /// durably, since some of them may have been applied to the sled that failed and not flushed.
    fn reopen(&mut self) -> Result<(), StoreError> {
        let store = Store::open(&self.dir, &self.settings)?;
        let mut pending = Pending::default();
        let received = self.received;
        wal::replay(&self.dir.join(wal::DIR), self.applied, |seq, payload| {
            if seq <= received {
                pending.fold(&decode_batch(payload)?, None);
            }
            Ok::<(), StoreError>(())
        })?;
        self.pending = pending;
        self.store = Some(store);
        info!("sled reopened; the write-ahead log since the last checkpoint read back into it");
        Ok(())
    }

    fn fail(&mut self, e: StoreError) -> Arc<str> {
        let why = e.to_string();
        error!(error = %why, "could not bring sled up to date with the write-ahead log; every change is kept in the log, and sled is reopened to try again");
        self.counters.failures.fetch_add(1, Ordering::Relaxed);
        self.store = None;
        self.pending.clear();
        self.failing = Some((why.clone(), Instant::now() + self.settings.retry_interval));
        Arc::from(why)
    }

    fn checkpoint(&mut self) {
        self.checkpoint_parts();
        for f in std::mem::take(&mut self.deferred) {
            self.read(f);
        }
    }

    /// Writes what is pending to sled a part at a time, flushes, and records the last batch
    /// sled then holds.
    fn checkpoint_parts(&mut self) {
        if self.store.is_none() {
            if let Err(e) = self.reopen() {
                self.fail(e);
                return;
            }
        }
        let upto = self.received;
        self.log_bytes = 0;
        let Some(store) = &self.store else { return };
        let mut sorted = store.take_sorted(&mut self.pending);
        while !sorted.is_empty() {
            let Some(store) = &self.store else { return };
            if let Err(e) = store.apply_some(&mut sorted, PART) {
                self.fail(e);
                return;
            }
            self.take_arrived();
        }
        let Some(store) = &self.store else { return };
        if let Err(e) = store.checkpoint(upto) {
            self.fail(e);
            return;
        }
        if self.failing.take().is_some() {
            info!(batch = upto, "sled is up to date with the write-ahead log again");
        }
        self.applied = upto;
        self.last = Instant::now();
        self.remove_sealed();
        self.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
    }

    /// Removes the closed segments sled holds whole.
    fn remove_sealed(&mut self) {
        let applied = self.applied;
        let (done, keep): (Vec<_>, Vec<_>) = self.sealed.drain(..).partition(|(_, last)| *last <= applied);
        self.sealed = keep;
        let paths: Vec<PathBuf> = done.into_iter().map(|(p, _)| p).collect();
        if let Err(e) = wal::remove(&self.dir.join(wal::DIR), &paths) {
            warn!(error = %e, "could not remove log segments sled holds; they are read (and passed over) at the next start");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AuditEntry;

    /// The calling thread's niceness, from /proc (field 19 of its stat).
    #[cfg(target_os = "linux")]
    fn niceness() -> i64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 1..];
        after_name.split_whitespace().nth(16).unwrap().parse().unwrap()
    }

    /// The checkpointer's thread lowers its own priority, and only its own: the threads that
    /// answer kiosks keep theirs.
    #[cfg(target_os = "linux")]
    #[test]
    fn lowering_the_priority_lowers_the_calling_thread_only() {
        let before = niceness();
        let (lowered, unchanged) = std::thread::spawn(move || {
            let start = niceness();
            lower_priority(3);
            let once = niceness();
            lower_priority(0);
            (once - start, niceness() - once)
        })
        .join()
        .unwrap();
        assert_eq!(lowered, 3.min(19 - before));
        assert_eq!(unchanged, 0);
        assert_eq!(niceness(), before);
    }

    /// Batches wait to be gathered rather than waking the checkpointer one by one; a read still
    /// sees every batch sent before it, and closing leaves sled holding them all.
    #[test]
    fn a_read_sees_every_batch_gathered_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let settings = StoreConfig::default();
        let store = Store::open(dir.path(), &settings).unwrap();
        let c = Checkpointer::start(dir.path(), store, 0, &settings, Arc::default()).unwrap();
        let at = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let entry =
            |seq: u64| AuditEntry { patron: 7, at, by: "desk".into(), action: format!("e{seq}"), changes: vec![] };
        // Fewer than wake it: they wait for its next look, or for the read.
        for seq in 1..WAKE_AT as u64 / 2 {
            c.send(ToCheckpointer::Batch {
                seq,
                writes: vec![Write::Audit(seq, Box::new(entry(seq)))],
                payload: None,
                bytes: 10,
            });
        }
        let seen = c.handle().read_blocking(|s| Ok(s.history(7)?.len())).unwrap();
        assert_eq!(seen, WAKE_AT / 2 - 1);
        c.send(ToCheckpointer::Batch {
            seq: 40,
            writes: vec![Write::Audit(40, Box::new(entry(40)))],
            payload: None,
            bytes: 10,
        });
        drop(c);
        let store = Store::open(dir.path(), &settings).unwrap();
        assert_eq!((store.applied().unwrap(), store.history(7).unwrap().len()), (40, WAKE_AT / 2));
    }
}
