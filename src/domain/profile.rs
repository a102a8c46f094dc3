//! A self-check account's profile: how the server treats that terminal.

use super::records::Account;

/// What an account's profile says about how its terminal is served. Read from the account's
/// profile settings (`sip2d account profile LOGIN --set KEY=VALUE`); unknown keys are refused
/// when the profile is read, so a typo does not pass silently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// `pin-required` (default yes): when no, `CQ` is left out and no PIN is checked.
    pub pin_required: bool,
    /// `empty-pin-ok` (default no): an empty `AD` counts as a right PIN.
    pub empty_pin_ok: bool,
    /// `renewals` (default yes): the 98 renewal policy.
    pub renewals: bool,
    /// `status-update` (default no): the kiosk may block a card (01).
    pub status_update: bool,
    /// `patron-enable` (default no): the kiosk may lift the blocks kiosks placed (25).
    pub patron_enable: bool,
}

impl Default for Profile {
    fn default() -> Profile {
        Profile { pin_required: true, empty_pin_ok: false, renewals: true, status_update: false, patron_enable: false }
    }
}

impl Profile {
    /// The keys a profile may hold.
    pub const KEYS: &'static [&'static str] =
        &["pin-required", "empty-pin-ok", "renewals", "status-update", "patron-enable"];

    /// Reads an account's profile settings.
    pub fn of(account: &Account) -> Result<Profile, String> {
        let mut p = Profile::default();
        for (k, v) in &account.profile {
            let yes = match v.as_str() {
                "yes" | "y" | "true" | "1" => true,
                "no" | "n" | "false" | "0" => false,
                _ => return Err(format!("profile {k}={v}: the value must be yes or no")),
            };
            match k.as_str() {
                "pin-required" => p.pin_required = yes,
                "empty-pin-ok" => p.empty_pin_ok = yes,
                "renewals" => p.renewals = yes,
                "status-update" => p.status_update = yes,
                "patron-enable" => p.patron_enable = yes,
                _ => return Err(format!("profile key '{k}' is unknown; known keys: {}", Profile::KEYS.join(", "))),
            }
        }
        Ok(p)
    }
}
