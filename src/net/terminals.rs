//! The terminals connected now and what each did last, for the staff console's live view.
//!
//! Only what is safe to show staff is kept: the peer, the account, and per request its code,
//! outcome, latency and time. Never a PIN, a password, a patron or an item: the frames
//! themselves are not kept at all.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use jiff::Timestamp;
use serde::Serialize;

/// Requests remembered per connection.
pub const LAST_REQUESTS: usize = 10;

/// A two-byte command code, shown as text (kept without allocating, once per request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Code([u8; 2]);

impl Code {
    /// The two characters, `--` for a frame without a code.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("--")
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One request as the live view shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Seen {
    pub at: Timestamp,
    pub code: Code,
    pub outcome: &'static str,
    pub latency_us: u64,
}

/// One connection as the live view shows it.
#[derive(Clone, Debug, Serialize)]
pub struct TerminalView {
    pub connection: u64,
    pub peer: SocketAddr,
    pub listener: usize,
    pub connected: Timestamp,
    /// The terminal account once logged in.
    pub account: Option<String>,
    pub requests: u64,
    /// Oldest first.
    pub last: VecDeque<Seen>,
    /// The last store failure on this connection, if any.
    pub last_error: Option<String>,
}

/// Every open connection's view.
#[derive(Default)]
pub struct Terminals {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Mutex<TerminalView>>>>,
}

impl Terminals {
    /// Registers a new connection; it leaves the view when the registration is dropped.
    pub fn open(self: &Arc<Self>, peer: SocketAddr, listener: usize) -> Registration {
        let connection = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let view = Arc::new(Mutex::new(TerminalView {
            connection,
            peer,
            listener,
            connected: Timestamp::now(),
            account: None,
            requests: 0,
            last: VecDeque::with_capacity(LAST_REQUESTS),
            last_error: None,
        }));
        self.open.lock().unwrap_or_else(PoisonError::into_inner).insert(connection, view.clone());
        Registration { terminals: self.clone(), connection, view }
    }

    /// The connections open now, oldest first.
    pub fn snapshot(&self) -> Vec<TerminalView> {
        let open: Vec<_> = self.open.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
        let mut views: Vec<TerminalView> =
            open.iter().map(|v| v.lock().unwrap_or_else(PoisonError::into_inner).clone()).collect();
        views.sort_by_key(|v| v.connection);
        views
    }
}

/// A connection's place in the view; updated once per request (its own lock, not shared).
pub struct Registration {
    terminals: Arc<Terminals>,
    connection: u64,
    view: Arc<Mutex<TerminalView>>,
}

impl Registration {
    /// Records one request.
    pub fn seen(
        &self,
        at: Timestamp,
        account: Option<&str>,
        code: Option<[u8; 2]>,
        outcome: &'static str,
        latency_us: u64,
    ) {
        let code = Code(code.filter(|c| c.iter().all(u8::is_ascii_graphic)).unwrap_or(*b"--"));
        let mut v = self.view.lock().unwrap_or_else(PoisonError::into_inner);
        if v.account.as_deref() != account {
            v.account = account.map(str::to_string);
        }
        v.requests += 1;
        if v.last.len() == LAST_REQUESTS {
            v.last.pop_front();
        }
        v.last.push_back(Seen { at, code, outcome, latency_us });
    }

    /// Records a store failure (its message names no patron or secret).
    pub fn failed(&self, error: &str) {
        self.view.lock().unwrap_or_else(PoisonError::into_inner).last_error = Some(error.to_string());
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.terminals.open.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.connection);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_shows_its_last_requests_and_leaves_when_closed() {
        let t = Arc::new(Terminals::default());
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let r = t.open(peer, 0);
        for i in 0..15 {
            r.seen(Timestamp::now(), Some("kiosk1"), Some(if i % 2 == 0 { *b"23" } else { *b"11" }), "ok", i);
        }
        let views = t.snapshot();
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].requests, 15);
        assert_eq!(views[0].last.len(), LAST_REQUESTS);
        assert_eq!(views[0].last.back().map(|s| s.latency_us), Some(14));
        assert_eq!(views[0].account.as_deref(), Some("kiosk1"));
        r.seen(Timestamp::now(), None, Some([0xFF, b'x']), "unknown-code", 1);
        let shown = serde_json::to_string(&t.snapshot()[0].last.back().map(|s| s.code)).unwrap();
        assert_eq!(shown, "\"--\"", "a code that is not text is shown as --");
        drop(r);
        assert!(t.snapshot().is_empty());
    }
}
