//! The service's limits, and the tally of PIN refusals for metrics. (The per-terminal PIN
//! budget is the register's: `engine::terminals`, decided in the unit that checks the PIN.)

use std::sync::atomic::{AtomicU64, Ordering};

/// Circulation limits the service applies to every terminal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceLimits {
    /// How far ahead a kiosk's no-block due date may lie, in days (default 90). A no-block
    /// checkout whose due date is later, earlier than the checkout, or unreadable is recorded
    /// with the due date our loan policy gives instead.
    pub no_block_max_days: u32,
}

impl ServiceLimits {
    pub const DEFAULT: ServiceLimits = ServiceLimits { no_block_max_days: 90 };
}

impl Default for ServiceLimits {
    fn default() -> ServiceLimits {
        ServiceLimits::DEFAULT
    }
}

/// Wrong PINs and locked-card refusals this node has answered, all terminals (for metrics).
#[derive(Debug, Default)]
pub struct PinTally {
    failures: AtomicU64,
    lockouts: AtomicU64,
}

impl PinTally {
    pub fn new() -> PinTally {
        PinTally::default()
    }

    /// Counts a wrong PIN.
    pub fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a PIN check refused because the card is locked.
    pub fn locked_out(&self) {
        self.lockouts.fetch_add(1, Ordering::Relaxed);
    }

    /// Wrong PINs and locked-card refusals so far.
    pub fn totals(&self) -> (u64, u64) {
        (self.failures.load(Ordering::Relaxed), self.lockouts.load(Ordering::Relaxed))
    }
}
