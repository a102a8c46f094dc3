//! Units of patrons' self-service: the set-PIN link sent with the welcome, and its use.

use jiff::SignedDuration;

use crate::domain::secret::token_digest;
use crate::domain::validate;
use crate::domain::*;

use super::super::store::Write;
use super::super::unit::Unit;

/// What a notice holds in place of a set-PIN link: `{pin-link:SERIAL}`. The mailer puts the
/// link there as it sends (`[mail] self_service_url`, `/pin/`, the token the PIN key derives
/// from the serial), so the token is stored nowhere, the outbox included.
pub const MARKER: &str = "{pin-link:";

/// The marker of link `serial` in a notice.
pub fn link_marker(serial: u64) -> String {
    format!("{MARKER}{serial}}}")
}

/// A new set-PIN link for the patron, good for `[register] pin_link_hours`; their earlier
/// links stop working. Returns its serial, from which the PIN key derives its token.
pub fn issue_link(u: &mut Unit<'_>, patron: u64) -> Result<u64, Refusal> {
    let serial = u.new_id();
    let token = u.key.link_token(serial);
    let earlier: Vec<String> = u.state.links_of(patron).map(|l| l.digest.clone()).collect();
    for digest in earlier {
        u.put(Write::RemoveLink(digest))?;
    }
    let hours = i64::from(u.state.limits().pin_link_hours);
    let now = u.now();
    let expires = now.saturating_add(SignedDuration::from_hours(hours)).unwrap_or(now);
    u.put(Write::Link(Box::new(PinLink { digest: token_digest(&token), patron, created: now, expires })))?;
    Ok(serial)
}

/// Sets the patron's PIN from a link: the link must be known and unexpired; the PIN must
/// meet the institution's policy and not be guessable (`validate::trivial_pin`). The link is
/// then used up; a refused PIN leaves it usable.
pub fn redeem(u: &mut Unit<'_>, token: &str, pin: &str) -> Result<Patron, Refusal> {
    let digest = token_digest(token);
    let Some(link) = u.state.link(&digest).cloned() else { return Err(Refusal::LinkUnusable { expired: false }) };
    if link.expires <= u.now() {
        return Err(Refusal::LinkUnusable { expired: true });
    }
    let p = u.patron(link.patron)?;
    if p.deleted.is_some() {
        return Err(Refusal::LinkUnusable { expired: false });
    }
    let inst = u.institution(&p.institution)?;
    validate::pin(&inst.pin_policy, pin)?;
    validate::trivial_pin(pin, p.birth_date)?;
    let hash = u.key.hash(p.id, pin);
    u.put(Write::RemoveLink(digest))?;
    u.update_patron(p.id, "pin-by-link", |p| {
        p.pin = Some(hash);
        p.failed_pins = 0;
        p.locked = false;
        Ok(vec![("pin".into(), String::new(), "set by the patron from the e-mailed link".into())])
    })
}
