//! Reads of a committed view: each query answered from one state, so it is consistent.

use crate::domain::validate;
use crate::domain::*;

use super::Error;
use super::ops::*;
use super::state::State;

/// A patron by `#id` (or a bare register id), primary id, identifier or e-mail at the
/// institution.
pub fn find<'s>(s: &'s State, institution: &str, key: &str) -> Result<&'s Patron, Refusal> {
    if let Some(rest) = key.strip_prefix('#') {
        let id: u64 = rest.parse().map_err(|_| Refusal::rule(format!("'{key}' is not a register id such as #12")))?;
        return s.patron(id).ok_or_else(|| Refusal::NoPatron(key.into()));
    }
    if let Some(p) = s.patron_by_identifier(institution, key) {
        return Ok(p);
    }
    if key.contains('@') {
        if let Some(p) = s.patron_by_email(institution, key) {
            return Ok(p);
        }
    }
    if let Some(p) = key.parse::<u64>().ok().and_then(|id| s.patron(id)) {
        return Ok(p);
    }
    Err(Refusal::NoPatron(format!("'{key}' at {institution}")))
}

/// Patrons matching `query` at the institution: an exact primary id, identifier, e-mail or
/// national id first; otherwise names starting with it ("last" or "last, first").
fn search(s: &State, institution: &str, query: &str, now: jiff::Timestamp) -> Result<Vec<Patron>, Refusal> {
    let query = query.trim();
    if let Some(p) = s.patron_by_identifier(institution, query) {
        return Ok(vec![p.clone()]);
    }
    let inst = s.institution(institution).ok_or_else(|| Refusal::NoInstitution(institution.into()))?;
    if let Ok(n) = validate::swedish_national_id(query, inst.today(now)) {
        if let Some(p) = s.patron_by_identifier(institution, &n) {
            return Ok(vec![p.clone()]);
        }
    }
    if query.contains('@') {
        return Ok(s.patron_by_email(institution, query).into_iter().cloned().collect());
    }
    let prefix = match query.split_once(',') {
        Some((last, first)) => format!("{}\0{}", last.trim(), first.trim()),
        None => query.to_string(),
    };
    Ok(s.patrons_by_name(institution, &prefix).into_iter().cloned().collect())
}

fn list(s: &State, f: &ListFilter) -> Vec<Patron> {
    s.patrons()
        .filter(|p| {
            f.institution.as_ref().is_none_or(|i| *i == p.institution)
                && f.group.as_ref().is_none_or(|g| Some(g) == p.user_group.as_ref())
                && f.deleted == p.deleted.is_some()
                && (!f.inactive_only || !p.active)
                && f.expired_by.is_none_or(|d| p.expiry.is_some_and(|e| e < d))
        })
        .take(f.limit.unwrap_or(usize::MAX))
        .cloned()
        .collect()
}

fn item_facts(s: &State, barcode: &str) -> Option<ItemFacts> {
    let item = s.item(barcode)?.clone();
    Some(ItemFacts { loan: s.loan(barcode).cloned(), holds: s.holds_on(barcode).into_iter().cloned().collect(), item })
}

fn queued(s: &State, h: &Hold) -> QueuedHold {
    QueuedHold { position: s.queue_position(h), hold: h.clone() }
}

pub fn answer(s: &State, q: Query) -> Result<Answer, Error> {
    let patron = |id: u64| s.patron(id).cloned().ok_or_else(|| Refusal::NoPatron(format!("#{id}")));
    Ok(match q {
        Query::Institutions => Answer::Institutions(s.institutions().cloned().collect()),
        Query::Institution(code) => {
            Answer::Institution(Box::new(s.institution(&code).cloned().ok_or(Refusal::NoInstitution(code))?))
        }
        Query::Accounts => Answer::Accounts(s.accounts().cloned().collect()),
        Query::Account(login) => {
            Answer::Account(Box::new(s.account(&login).cloned().ok_or(Refusal::NoAccount(login))?))
        }
        Query::StaffList => Answer::StaffList(s.staff_list().cloned().collect()),
        Query::Staff(login) => Answer::Staff(Box::new(s.staff(&login).cloned().ok_or(Refusal::NoStaff(login))?)),
        Query::StaffByToken(digest) => Answer::Staff(Box::new(
            s.staff_by_token(&digest).cloned().ok_or_else(|| Refusal::NoStaff("for that token".into()))?,
        )),
        Query::Patron(id) => Answer::Patron(Box::new(patron(id)?)),
        Query::FindPatron { institution, key } => Answer::Patron(Box::new(find(s, &institution, &key)?.clone())),
        Query::Patrons(f) => Answer::Patrons(list(s, &f)),
        Query::Search { institution, query, now } => Answer::Patrons(search(s, &institution, &query, now)?),
        Query::PendingTransfers(to) => {
            Answer::Patrons(s.patrons().filter(|p| p.transfer.as_ref().is_some_and(|t| t.to == to)).cloned().collect())
        }
        Query::Card { patron: id, now } => {
            let p = patron(id)?;
            let inst = s.institution(&p.institution).ok_or_else(|| Refusal::NoInstitution(p.institution.clone()))?;
            Answer::Card(Box::new(Card {
                balance: s.balance(id),
                standing: s.standing(&p, inst, now),
                loans: s.loans_of(id).into_iter().cloned().collect(),
                patron: p,
            }))
        }
        Query::Item(b) => Answer::Item(Box::new(item_facts(s, &b).ok_or(Refusal::NoItem(b))?)),
        Query::Items { institution, limit } => Answer::Items(
            s.items()
                .filter(|i| institution.as_ref().is_none_or(|c| *c == i.institution))
                .take(limit)
                .cloned()
                .collect(),
        ),
        Query::Loans { patron: Some(id) } => {
            patron(id)?;
            Answer::Loans(s.loans_of(id).into_iter().cloned().collect())
        }
        Query::Loans { patron: None } => Answer::Loans(s.loans().cloned().collect()),
        Query::Holds { patron: Some(id), .. } => {
            patron(id)?;
            Answer::Holds(s.holds_of(id).into_iter().map(|h| queued(s, h)).collect())
        }
        Query::Holds { patron: None, item: Some(b) } => {
            Answer::Holds(s.holds_on(&b).into_iter().map(|h| queued(s, h)).collect())
        }
        Query::Holds { patron: None, item: None } => Answer::Holds(s.holds().map(|h| queued(s, h)).collect()),
        Query::Fees(id) => {
            patron(id)?;
            Answer::Fees(s.fees_of(id).into_iter().cloned().collect(), s.balance(id))
        }
        Query::Optouts(id) => {
            patron(id)?;
            Answer::Optouts(s.optouts(id).to_vec())
        }
        Query::KioskItem { item, .. } => Answer::KioskItem(item_facts(s, &item).map(Box::new)),
        Query::LinkPolicy { token, now } => {
            Answer::PinPolicy(match s.link(&crate::domain::secret::token_digest(&token.0)) {
                Some(l) if l.expires <= now => Err(Refusal::LinkUnusable { expired: true }),
                Some(l) => s
                    .patron(l.patron)
                    .filter(|p| p.deleted.is_none())
                    .and_then(|p| s.institution(&p.institution))
                    .map(|i| i.pin_policy.clone())
                    .ok_or(Refusal::LinkUnusable { expired: false }),
                None => Err(Refusal::LinkUnusable { expired: false }),
            })
        }
        // Only the writer holds these; an engine sends them there.
        Query::History(_) | Query::Outbox | Query::File { .. } => {
            return Err(Error::Refused(Refusal::rule("history, outbox and files are read by the writer")));
        }
    })
}
