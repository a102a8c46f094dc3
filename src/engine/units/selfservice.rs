//! Units of patrons' self-service: set-PIN links (with the welcome, or asked for), logging in
//! to their own pages, what they do there, and confirming a new e-mail address.

use jiff::SignedDuration;

use crate::domain::secret::{same_secret, token_digest};
use crate::domain::validate;
use crate::domain::*;

use super::super::Error;
use super::super::kiosk::card_holder;
use super::super::notices::draft;
use super::super::ops::{OwnAct, Receipt, pin_session_tag};
use super::super::store::Write;
use super::super::unit::Unit;
use super::circulation::{self as circ, Lend};
use super::patrons;

/// What a notice holds in place of a set-PIN link: `{pin-link:SERIAL}`. The mailer puts the
/// link there as it sends (`[mail] self_service_url`, `/pin/`, the token the PIN key derives
/// from the serial), so the token is stored nowhere, the outbox included.
pub const MARKER: &str = "{pin-link:";

/// What a notice holds in place of the link that confirms a new e-mail address (`/email/`).
pub const EMAIL_MARKER: &str = "{email-link:";

/// The marker of link `serial` in a notice.
pub fn link_marker(serial: u64) -> String {
    format!("{MARKER}{serial}}}")
}

/// When a link made now stops working, `hours` on.
fn expiry(u: &Unit<'_>, hours: u32) -> jiff::Timestamp {
    let now = u.now();
    now.saturating_add(SignedDuration::from_hours(i64::from(hours))).unwrap_or(now)
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
    let (now, expires) = (u.now(), expiry(u, u.state.limits().pin_link_hours));
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

/// A login to the patron's own pages: the card (an active identifier or the primary id) at the
/// institution, and the PIN, checked as a kiosk checks it, on the same counter. The outer
/// error is for an institution that is not there; the inner refusal is the patron's answer
/// (what it wrote, a wrong PIN counted, stands).
pub fn login(u: &mut Unit<'_>, institution: &str, card: &str, pin: &str) -> Result<Result<Patron, Refusal>, Refusal> {
    u.institution(institution)?;
    let Some(p) = card_holder(u, institution, card.trim()) else { return Ok(Err(Refusal::UnknownCard)) };
    Ok(match patrons::attempt_pin(u, &p, pin)? {
        rules::PinCheck::Accepted => Ok(u.patron(p.id)?),
        rules::PinCheck::Wrong { remaining } => Err(Refusal::WrongPin { remaining }),
        rules::PinCheck::LockedOut => Err(Refusal::LockedOut),
    })
}

/// "Forgot PIN": sends a set-PIN link to the patron that `given` (a card, the primary id or an
/// e-mail address) names at the institution, if any, with an e-mail address, and sent no link
/// in the last `[register] forgot_pin_minutes`. Whatever it finds, it answers nothing: the
/// page says the same for every input.
pub fn forgot_pin(u: &mut Unit<'_>, institution: &str, given: &str) -> Result<(), Refusal> {
    let given = given.trim();
    let found = card_holder(u, institution, given).or_else(|| {
        let id = u.state.email_owner(institution, given)?;
        u.state.patron_shared(id).filter(|p| p.deleted.is_none())
    });
    let Some(p) = found.filter(|p| p.email.as_deref().is_some_and(|e| !e.trim().is_empty())) else { return Ok(()) };
    let quiet = SignedDuration::from_mins(i64::from(u.state.limits().forgot_pin_minutes));
    let since = u.now().checked_sub(quiet).unwrap_or(u.now());
    if u.state.links_of(p.id).any(|l| l.created > since) {
        return Ok(());
    }
    let inst = u.institution(&p.institution)?;
    let marker = link_marker(issue_link(u, p.id)?);
    let notice = draft(u, p.id, NoticeKind::PinReset, &marker, &inst, None).notice(&p);
    u.notice(notice);
    Ok(())
}

/// What a logged-in patron does on their own pages. The session holds while the patron is
/// there, not locked out, and has the PIN they logged in with.
pub fn act(u: &mut Unit<'_>, patron: u64, session: &str, act: OwnAct) -> Result<Receipt, Error> {
    let p = u.patron(patron)?;
    if p.deleted.is_some() {
        return Err(Refusal::NoPatron(format!("#{patron}")).into());
    }
    if p.locked {
        return Err(Refusal::LockedOut.into());
    }
    if pin_session_tag(&p).is_none_or(|tag| !same_secret(&tag, session)) {
        return Err(Refusal::PinNeeded.into());
    }
    Ok(match act {
        OwnAct::Renew { item } => {
            if u.state.loan(&item).is_none_or(|l| l.patron != p.id) {
                return Err(Refusal::NotOnLoanToPatron.into());
            }
            let renewal = Lend { accept_fee: false, renewal_allowed: true, no_block: None };
            Receipt::Loan(circ::lend(u, p.id, &item, &renewal)?.loan)
        }
        OwnAct::CancelHold { hold } => {
            if u.state.hold(hold).is_none_or(|h| h.patron != p.id) {
                return Err(Refusal::NoHold(hold).into());
            }
            Receipt::Hold(Box::new(circ::cancel_hold(u, hold)?))
        }
        OwnAct::Contact { phone, address, postal_code } => {
            let now = [("phone", &p.phone), ("address", &p.address), ("postal-code", &p.postal_code)];
            let given = [phone, address, postal_code];
            let sets: Vec<(String, String)> = now
                .iter()
                .zip(given)
                .filter(|((_, had), new)| had.as_deref().unwrap_or("") != new.trim())
                .map(|((field, _), new)| ((*field).to_string(), new))
                .collect();
            if sets.is_empty() {
                return Err(Refusal::from(AsItStands::NothingChanged(p.id)).into());
            }
            Receipt::Patron(Box::new(patrons::edit(u, p.id, &sets, None)?))
        }
        OwnAct::ChangeEmail { email } => {
            ask_email(u, &p, email.trim())?;
            Receipt::Done
        }
        OwnAct::OptOut { kinds, out } => {
            let mut now = u.state.optouts(p.id).to_vec();
            for kind in kinds {
                now = patrons::set_optout(u, p.id, kind, out)?;
            }
            Receipt::Optouts(now)
        }
        OwnAct::RequestMove { to } => Receipt::Patron(Box::new(patrons::request_transfer(u, p.id, &to)?)),
    })
}

/// A new e-mail address for the patron: a link goes to it (their earlier such links stop
/// working), and the record keeps the old address until it is followed. An address another
/// patron has gets no link, and the patron is told the same (no one learns who has it): the
/// notice is written all the same, skipped, so both commit alike; confirming refuses it in any
/// case.
fn ask_email(u: &mut Unit<'_>, p: &Patron, email: &str) -> Result<(), Refusal> {
    if let AccountType::External { source } = &p.account_type {
        return Err(Refusal::Synced { field: "email", source: source.clone() });
    }
    validate::email_shape(email)?;
    if p.email.as_deref() == Some(email) {
        return Err(AsItStands::NothingChanged(p.id).into());
    }
    let earlier: Vec<String> = u.state.email_checks_of(p.id).map(|c| c.digest.clone()).collect();
    for digest in earlier {
        u.put(Write::RemoveEmailCheck(digest))?;
    }
    let taken = u.state.email_owner(&p.institution, email).is_some_and(|other| other != p.id);
    let serial = u.new_id();
    let token = u.key.link_token(serial);
    let (now, expires) = (u.now(), expiry(u, u.state.limits().email_link_hours));
    if !taken {
        let check =
            EmailCheck { digest: token_digest(&token), patron: p.id, email: email.into(), created: now, expires };
        u.put(Write::EmailCheck(Box::new(check)))?;
    }
    let inst = u.institution(&p.institution)?;
    // Written to the new address, in the patron's language.
    let mut to = p.clone();
    to.email = Some(email.into());
    let mut notice =
        draft(u, p.id, NoticeKind::EmailCheck, &format!("{EMAIL_MARKER}{serial}}}"), &inst, None).notice(&to);
    if taken {
        notice.delivery = Delivery::Skipped;
        notice.next_attempt = None;
        notice.note = Some("the address is another patron's at the library: no link was sent".into());
    }
    u.notice(notice);
    Ok(())
}

/// A patron follows the link sent to a new e-mail address: it becomes the record's, by the
/// rules staff edits keep (unique at the institution; an external account's is its sync's).
pub fn confirm_email(u: &mut Unit<'_>, token: &str) -> Result<Patron, Refusal> {
    let digest = token_digest(token);
    let Some(check) = u.state.email_check(&digest).cloned() else {
        return Err(Refusal::LinkUnusable { expired: false });
    };
    if check.expires <= u.now() {
        return Err(Refusal::LinkUnusable { expired: true });
    }
    let p = u.patron(check.patron)?;
    if p.deleted.is_some() {
        return Err(Refusal::LinkUnusable { expired: false });
    }
    u.put(Write::RemoveEmailCheck(digest))?;
    patrons::edit(u, p.id, &[("email".into(), check.email)], None)
}
