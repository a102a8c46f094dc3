//! What both engines do alike around their writers: the queue to the writer, which operations
//! are tried as reads first, the dry run and the export over a view, and the parts of the
//! reads of history and files that come from the register in memory.

use std::sync::Mutex;
use std::sync::mpsc::{SyncSender, TrySendError};

use crate::domain::secret::PinKey;
use crate::domain::{AuditEntry, FileInfo, Refusal};

use super::exchange::{self, Line};
use super::ops::{Answer, By, Operation, Query, Receipt};
use super::state::State;
use super::unit::Unit;
use super::{Engine, Error, units};

/// The way to a writer thread; closed (dropped) to stop it after what it holds.
pub(crate) struct Queue<J>(Mutex<Option<SyncSender<J>>>);

impl<J> Queue<J> {
    pub fn new(tx: SyncSender<J>) -> Queue<J> {
        Queue(Mutex::new(Some(tx)))
    }

    /// Queues `job`, waiting for room when the queue is full (outside the lock).
    pub fn send(&self, job: J) -> Result<(), Error> {
        let jobs = self.0.lock().map_err(|_| Error::Closed)?;
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

    /// Lets the writer go: it ends once it has done what it holds.
    pub fn close(&self) {
        if let Ok(mut jobs) = self.0.lock() {
            jobs.take();
        }
    }
}

/// Whether an operation is tried as a read first, answered without a commit when it writes
/// nothing: the ones that usually only read (a patron status or information, a PIN test).
/// The rest go straight to the writer: trying them first would run a checkout twice.
pub(crate) fn may_read(op: &Operation) -> bool {
    matches!(op, Operation::KioskPatron { .. } | Operation::CheckPin { .. })
}

/// Runs `ops` in order on a copy of `view` and keeps nothing: each sees what the ones before
/// it would have done.
pub(crate) fn dry_run(view: &State, key: &PinKey, ops: Vec<Operation>, by: &By) -> Vec<Result<Receipt, Error>> {
    let mut scratch = view.clone();
    ops.into_iter()
        .map(|op| {
            let mut unit = Unit::new(&mut scratch, key, by);
            unit.attempt(|u| units::run(op, u))
        })
        .collect()
}

/// Writes every record of `view`, with the files `engine` reads from its store.
pub(crate) fn export(
    engine: &dyn Engine,
    view: &State,
    key: &PinKey,
    sink: &mut dyn FnMut(&Line) -> std::io::Result<()>,
) -> Result<usize, Error> {
    // A file removed since the view is left out, as the view's record still names it.
    let files = |patron: u64, file: u32| match engine.query(Query::File { patron, file }).wait() {
        Ok(Answer::File(_, bytes)) => Ok(Some(bytes.0)),
        Err(Error::Refused(Refusal::NoEntry { .. } | Refusal::NoPatron(_))) => Ok(None),
        Ok(_) => Err(std::io::Error::other("unexpected answer")),
        Err(e) => Err(std::io::Error::other(e.to_string())),
    };
    exchange::export(view, &key.fingerprint(), &files, sink)
        .map_err(|e| Error::Refused(Refusal::rule(format!("cannot write the export: {e}"))))
}

/// The entry a patron's history opens with: the record's own creation (kept in the record, not
/// among the stored entries).
pub(crate) fn creation(state: &State, patron: u64) -> Result<AuditEntry, Refusal> {
    let p = state.patron(patron).ok_or_else(|| Refusal::NoPatron(format!("#{patron}")))?;
    let c = &p.created;
    Ok(AuditEntry { patron, at: c.at, by: c.by.clone(), action: c.via.clone(), changes: vec![] })
}

/// What the record says of a patron's file `file` (the picture is 0), whose bytes the store holds.
pub(crate) fn file_info(state: &State, patron: u64, file: u32) -> Result<FileInfo, Refusal> {
    let p = state.patron(patron).ok_or_else(|| Refusal::NoPatron(format!("#{patron}")))?;
    p.file(file).cloned().ok_or(Refusal::NoEntry { what: if file == 0 { "picture" } else { "attachment" }, id: file })
}
