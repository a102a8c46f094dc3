//! What the register keeps of each terminal between its connections, on every node that
//! serves it: its wrong PINs of late (the per-terminal PIN budget), and the receipt of the
//! last change it asked for from each address (so a request sent again on a new connection,
//! or to another node, is answered as it was and not run twice).

use std::sync::Arc;

use bincode::Options;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::RegisterLimits;
use super::ops::Receipt;

/// A terminal's wrong PINs in its current window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinWindow {
    /// The terminal's login.
    pub terminal: String,
    pub start: Timestamp,
    pub failures: u32,
}

impl PinWindow {
    fn length(limits: &RegisterLimits) -> SignedDuration {
        SignedDuration::from_secs(i64::from(limits.pin_window_secs.max(1)))
    }

    /// Whether the terminal may have a PIN tried at `now`.
    pub fn allows(window: Option<&PinWindow>, limits: &RegisterLimits, now: Timestamp) -> bool {
        window.is_none_or(|w| {
            now.duration_since(w.start) >= PinWindow::length(limits) || w.failures < limits.pin_failures_per_window
        })
    }

    /// The window after one more wrong PIN at `now` (a new window once the last has ended).
    pub fn after_failure(
        window: Option<&PinWindow>,
        terminal: &str,
        limits: &RegisterLimits,
        now: Timestamp,
    ) -> PinWindow {
        match window {
            Some(w) if now.duration_since(w.start) < PinWindow::length(limits) => {
                PinWindow { failures: w.failures.saturating_add(1), ..w.clone() }
            }
            _ => PinWindow { terminal: terminal.to_string(), start: now, failures: 1 },
        }
    }
}

/// The last change a terminal asked for from one address: the request's digest and the
/// receipt it was answered from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastChange {
    pub terminal: String,
    /// The address the request came from (empty when not known).
    pub from: String,
    pub request: [u8; 16],
    pub at: Timestamp,
    /// The receipt, as the store encodes it.
    pub receipt: Vec<u8>,
}

impl LastChange {
    pub fn key(&self) -> String {
        change_key(&self.terminal, &self.from)
    }

    /// The stored receipt; `None` when this build cannot read it (then the request runs).
    pub fn receipt(&self) -> Option<Receipt> {
        bincode::DefaultOptions::new().deserialize(&self.receipt).ok()
    }
}

/// The key of a terminal's last change from one address: login, NUL, address.
pub fn change_key(terminal: &str, from: &str) -> String {
    let mut k = String::with_capacity(terminal.len() + 1 + from.len());
    k.push_str(terminal);
    k.push('\0');
    k.push_str(from);
    k
}

/// A request as a terminal sent it, to know it if it comes again: where from, and a digest of
/// its exact bytes (sequence number and checksum included, so only a retransmission matches).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestMark {
    pub from: Arc<str>,
    pub digest: [u8; 16],
}

impl RequestMark {
    pub fn of(from: Arc<str>, frame: &[u8]) -> RequestMark {
        let full = sha2::Sha256::new().chain_update(b"sip2d request\0").chain_update(frame).finalize();
        let mut digest = [0; 16];
        digest.copy_from_slice(&full[..16]);
        RequestMark { from, digest }
    }
}

/// The receipt as kept for a retry, when it can be encoded (bincode with variable-length
/// integers, as the store's records: it is written with every change a kiosk makes).
pub fn encode_receipt(r: &Receipt) -> Option<Vec<u8>> {
    bincode::DefaultOptions::new().serialize(r).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_is_stopped_after_its_budget_until_the_window_ends() {
        let limits = RegisterLimits { pin_failures_per_window: 3, pin_window_secs: 60, ..RegisterLimits::default() };
        let t0: Timestamp = "2026-11-22T10:00:00Z".parse().unwrap();
        let mut w: Option<PinWindow> = None;
        for _ in 0..3 {
            assert!(PinWindow::allows(w.as_ref(), &limits, t0));
            w = Some(PinWindow::after_failure(w.as_ref(), "kiosk1", &limits, t0));
        }
        assert!(!PinWindow::allows(w.as_ref(), &limits, t0));
        assert!(!PinWindow::allows(w.as_ref(), &limits, t0 + SignedDuration::from_secs(59)));
        let later = t0 + SignedDuration::from_secs(60);
        assert!(PinWindow::allows(w.as_ref(), &limits, later));
        let next = PinWindow::after_failure(w.as_ref(), "kiosk1", &limits, later);
        assert_eq!((next.start, next.failures), (later, 1), "a new window starts");
    }

    #[test]
    fn only_the_same_bytes_make_the_same_request() {
        let a = RequestMark::of("10.0.0.5".into(), b"09N20261122    100000...AY1AZF000");
        assert_eq!(a, RequestMark::of("10.0.0.5".into(), b"09N20261122    100000...AY1AZF000"));
        assert_ne!(a.digest, RequestMark::of("10.0.0.5".into(), b"09N20261122    100000...AY2AZEFFF").digest);
    }
}
