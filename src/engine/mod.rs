//! The engine: the one place the register changes. Every change is a unit of work: it reads
//! the records it needs, a pure rule of `domain` decides, and the writes it yields are
//! committed, atomically with respect to every other unit, before anyone hears "ok". Reads are
//! answered from a committed view, which holds only what a durable commit left.
//!
//! [`Engine`] is the seam every client uses (the SIP service, the command line, the admin API,
//! import): operations and queries are data ([`Operation`], [`Query`]), answers are
//! [`Receipt`]s and [`Answer`]s, and a rule's "no" is a typed [`Refusal`]. The sled engine
//! ([`SledEngine`]) runs every unit on one writer thread, in order, against the current state,
//! and makes each batch durable with one sync. `docs/engine.md` says what a read may see.

mod checkpoint;
pub(crate) mod data_dir;
mod demo_data;
mod desk;
pub mod exchange;
mod kiosk;
mod legacy;
mod notices;
pub mod ops;
pub mod pg;
mod seam;
mod sled_engine;
mod state;
pub mod store;
pub mod terminals;
mod unit;
mod units;
mod view;
pub mod wal;

#[cfg(test)]
pub(crate) mod testkit;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_details;
#[cfg(test)]
mod tests_selfservice;
#[cfg(test)]
mod tests_staff;

use std::future::Future;
use std::pin::Pin as StdPin;
use std::sync::Arc;
use std::task::{Context, Poll};

pub use crate::domain::Refusal;
pub use data_dir::{
    LogReport, PIN_KEY, STORE_DIR, init, init_postgres, install_node_key, install_pin_key, open_existing,
    open_or_create, open_register, repair_log, verify_log,
};
pub use demo_data::{DEMO_PIN, Demo, build as build_demo};
pub use desk::{Desk, hash_password, hash_staff_password};
pub use exchange::{ImportOptions, ImportReport, Line, PinHashes, RegisterLine};
pub use notices::{MAX_ATTEMPTS, due as notices_due};
pub use ops::*;
pub use sled_engine::{Observer, SledEngine, Stats};
pub use store::{RegisterLimits, StoreConfig, StoreError};
pub use terminals::RequestMark;
pub use units::patrons::SYNCED;
pub use units::selfservice::{EMAIL_MARKER as EMAIL_LINK_MARKER, MARKER as LINK_MARKER};
pub use wal::Faults;

/// Why an operation did not happen: a rule said no (nothing was written), or the engine
/// could not do it (then nothing that was not acknowledged may be assumed either way).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A batch could not be made durable: the engine takes no more changes until it has
    /// reopened the log (it tries by itself, every `retry_interval`).
    #[error("the register takes no changes after a failed write ({0}); it is reopening its log")]
    Stopped(Arc<str>),
    /// The operation could not be carried out (a full disk, sled unreadable); nothing of it
    /// was changed, and the next one may succeed.
    #[error("could not complete: {0}; nothing was changed")]
    NotDone(Arc<str>),
    #[error("the register has been closed")]
    Closed,
}

impl Error {
    /// The same failure, as "could not complete", for each of several waiting on it.
    pub fn clone_not_done(&self) -> Error {
        match self {
            Error::NotDone(w) | Error::Stopped(w) => Error::NotDone(w.clone()),
            other => Error::NotDone(Arc::from(other.to_string())),
        }
    }

    /// The refusal, when a rule decided.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Error::Refused(r) => Some(r),
            _ => None,
        }
    }
}

impl std::error::Error for Refusal {}

/// An answer that is ready, or that the writer will give once its batch is durable. Await
/// it, or [`Pending::wait`] for it on a thread that may block.
pub struct Pending<T> {
    inner: Inner<T>,
}

enum Inner<T> {
    Ready(Option<Result<T, Error>>),
    Waiting(tokio::sync::oneshot::Receiver<Result<T, Error>>),
}

impl<T> Pending<T> {
    pub fn ready(r: Result<T, Error>) -> Pending<T> {
        Pending { inner: Inner::Ready(Some(r)) }
    }

    pub fn waiting(rx: tokio::sync::oneshot::Receiver<Result<T, Error>>) -> Pending<T> {
        Pending { inner: Inner::Waiting(rx) }
    }

    /// Blocks this thread until the answer is there (not on an async runtime's thread).
    pub fn wait(self) -> Result<T, Error> {
        match self.inner {
            Inner::Ready(r) => r.unwrap_or(Err(Error::Closed)),
            Inner::Waiting(rx) => rx.blocking_recv().unwrap_or(Err(Error::Closed)),
        }
    }
}

impl<T: Unpin> Future for Pending<T> {
    type Output = Result<T, Error>;
    fn poll(self: StdPin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().inner {
            Inner::Ready(r) => Poll::Ready(r.take().unwrap_or(Err(Error::Closed))),
            Inner::Waiting(rx) => StdPin::new(rx).poll(cx).map(|r| r.unwrap_or(Err(Error::Closed))),
        }
    }
}

/// The engine seam. The sled engine implements it; an engine on a shared database (several
/// nodes) implements the same operations with the same rules inside a database transaction.
pub trait Engine: Send + Sync {
    /// Runs one unit of work. It is decided inside the commit that records it, and answered
    /// only once that commit is durable; a unit that writes nothing is answered at once.
    fn run(&self, op: Operation, by: By) -> Pending<Receipt>;

    /// Answers a read from a committed view.
    fn query(&self, q: Query) -> Pending<Answer>;

    /// Runs the units in order against the current state and keeps nothing (a dry run): each
    /// sees what the ones before it would have done.
    fn check(&self, ops: Vec<Operation>, by: By) -> Pending<Vec<Result<Receipt, Error>>>;

    /// Writes every record of one committed view, in an order an import can read back.
    fn export(&self, sink: &mut dyn FnMut(&Line) -> std::io::Result<()>) -> Result<usize, Error>;

    /// The fingerprint of the PIN key every PIN hash depends on (a remote engine may fail to
    /// say, and an import must not guess it).
    fn pin_key_fingerprint(&self) -> Result<String, Error>;

    /// The token of set-PIN link `serial`, for the e-mail that carries it (derived from the PIN
    /// key; the store keeps only its digest).
    fn link_token(&self, serial: u64) -> Result<String, Error>;

    /// Counters of the writer, for metrics.
    fn stats(&self) -> Stats;

    /// Whether the engine still takes changes (false after a write could not be made durable).
    fn healthy(&self) -> bool;

    /// Has `observer` told of every commit: the time it took to make durable and how many
    /// units it held (the server's metrics).
    fn observe(&self, observer: Observer);
}

/// An engine shared by every client.
pub type Shared = Arc<dyn Engine>;

/// Runs an operation and waits for it (for threads that may block: the command line).
pub fn run_blocking(engine: &dyn Engine, op: Operation, by: By) -> Result<Receipt, Error> {
    engine.run(op, by).wait()
}

/// Asks a query and waits for it.
pub fn query_blocking(engine: &dyn Engine, q: Query) -> Result<Answer, Error> {
    engine.query(q).wait()
}

/// A patron record's version tag, for staff edits that must not overwrite a change they did
/// not see (the resource API's `ETag`): a hash of the stored record, leaving out the count of
/// wrong PINs in a row, which kiosks change without anyone editing the patron. A tag is only
/// compared with tags from the same server build; a stale one fails safe (the edit is refused).
pub fn patron_tag(patron: &crate::domain::Patron) -> String {
    use std::hash::{Hash, Hasher};
    let mut stable = patron.clone();
    stable.failed_pins = 0;
    let bytes = bincode::serialize(&stable).unwrap_or_default();
    let mut h = std::hash::DefaultHasher::new();
    bytes.hash(&mut h);
    format!("{:016x}", h.finish())
}
