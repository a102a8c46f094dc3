//! The service's limits, and the per-terminal PIN rate limit.

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};

/// Circulation and PIN limits the service applies to every terminal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceLimits {
    /// How far ahead a kiosk's no-block due date may lie, in days (default 90). A no-block
    /// checkout whose due date is later, earlier than the checkout, or unreadable is recorded
    /// with the due date our loan policy gives instead.
    pub no_block_max_days: u32,
    /// Wrong PINs one terminal may send within `pin_window_secs` (default 20). Beyond that its
    /// PIN checks are refused without being tried, so one kiosk cannot walk the 10,000
    /// four-digit PINs of many patrons; each patron's own lockout (five in a row) still holds.
    pub pin_failures_per_window: u32,
    /// The window for `pin_failures_per_window`, in seconds (default 600).
    pub pin_window_secs: u32,
}

impl ServiceLimits {
    pub const DEFAULT: ServiceLimits =
        ServiceLimits { no_block_max_days: 90, pin_failures_per_window: 20, pin_window_secs: 600 };
}

impl Default for ServiceLimits {
    fn default() -> ServiceLimits {
        ServiceLimits::DEFAULT
    }
}

/// Counts wrong PINs per terminal (account login) in fixed windows. Shared by every
/// connection, since a kiosk can reconnect.
#[derive(Debug, Default)]
pub struct PinGuard {
    windows: Mutex<HashMap<String, (Timestamp, u32)>>,
    /// Wrong PINs seen, all terminals (for metrics).
    failures: std::sync::atomic::AtomicU64,
    /// PIN checks refused because the card is locked (for metrics).
    lockouts: std::sync::atomic::AtomicU64,
}

impl PinGuard {
    pub fn new() -> PinGuard {
        PinGuard::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, (Timestamp, u32)>) -> T) -> T {
        let mut map = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut map)
    }

    /// Whether this terminal may have a PIN checked now.
    pub fn allows(&self, terminal: &str, limits: &ServiceLimits, now: Timestamp) -> bool {
        let window = SignedDuration::from_secs(i64::from(limits.pin_window_secs));
        self.with(|m| match m.get(terminal) {
            Some((start, n)) => now.duration_since(*start) >= window || *n < limits.pin_failures_per_window,
            None => true,
        })
    }

    /// Records a PIN check refused because the card is locked.
    pub fn locked_out(&self) {
        self.lockouts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Wrong PINs and locked-card refusals so far.
    pub fn totals(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.failures.load(Relaxed), self.lockouts.load(Relaxed))
    }

    /// Records a wrong PIN from this terminal.
    pub fn failed(&self, terminal: &str, limits: &ServiceLimits, now: Timestamp) {
        self.failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let window = SignedDuration::from_secs(i64::from(limits.pin_window_secs));
        self.with(|m| {
            // Windows that ended are dropped, so the map holds only terminals failing lately.
            if m.len() > 1024 {
                m.retain(|_, (start, _)| now.duration_since(*start) < window);
            }
            let e = m.entry(terminal.to_string()).or_insert((now, 0));
            if now.duration_since(e.0) >= window {
                *e = (now, 0);
            }
            e.1 += 1;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_is_stopped_after_its_budget_until_the_window_ends() {
        let limits = ServiceLimits { pin_failures_per_window: 3, pin_window_secs: 60, ..ServiceLimits::DEFAULT };
        let g = PinGuard::new();
        let t0: Timestamp = "2026-11-22T10:00:00Z".parse().unwrap();
        for _ in 0..3 {
            assert!(g.allows("kiosk1", &limits, t0));
            g.failed("kiosk1", &limits, t0);
        }
        assert!(!g.allows("kiosk1", &limits, t0));
        assert!(g.allows("kiosk2", &limits, t0), "other terminals are not held back");
        assert!(!g.allows("kiosk1", &limits, t0 + SignedDuration::from_secs(59)));
        assert!(g.allows("kiosk1", &limits, t0 + SignedDuration::from_secs(60)));
    }
}
