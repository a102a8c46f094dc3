//! Units on staff accounts, and the check every staff member's request passes first: their
//! role allows the operation, and what it names belongs to their institutions.

use crate::domain::staff::{self, LoginVerdict};
use crate::domain::*;

use super::super::ops::Operation;
use super::super::store::Write;
use super::super::unit::Unit;

fn member(u: &Unit<'_>, login: &str) -> Result<Staff, Refusal> {
    u.state.staff(login).cloned().ok_or_else(|| Refusal::NoStaff(login.into()))
}

/// The member the unit runs for, as their account is now, if a member asks.
fn asking(u: &Unit<'_>) -> Result<Option<Staff>, Refusal> {
    match u.by.staff.as_deref() {
        None => Ok(None),
        // Removed since they logged in: nothing more is theirs to do.
        Some(login) => member(u, login).map(Some),
    }
}

/// Checks a staff member's request before it runs (a request of the system passes): the
/// role, then that each patron, fee, hold, item, account or institution it names is one of
/// theirs. What is not theirs is "not there", as if it were not in the register. Sets the
/// unit's scope, which every later patron read of the unit keeps to.
pub fn authorise(u: &mut Unit<'_>, op: &Operation) -> Result<(), Refusal> {
    let Some(actor) = asking(u)? else { return Ok(()) };
    let (needs, what) = op.needs();
    staff::permits(actor.role, needs, what)?;
    u.scope = Some(actor.institutions.clone());
    let covered = |code: &str| if actor.covers(code) { Ok(()) } else { Err(Refusal::NoInstitution(code.into())) };
    use Operation as O;
    match op {
        O::AddPatron { new, .. } => covered(&new.institution),
        O::EditPatron { patron, .. }
        | O::AddIdentifier { patron, .. }
        | O::SetIdentifierActive { patron, .. }
        | O::AddNote { patron, .. }
        | O::RemoveNote { patron, .. }
        | O::SetActive { patron, .. }
        | O::SetPin { patron, .. }
        | O::CheckPin { patron, .. }
        | O::Unlock { patron }
        | O::Block { patron, .. }
        | O::Unblock { patron, .. }
        | O::AddFee { patron, .. }
        | O::RequestTransfer { patron, .. }
        | O::DeletePatron { patron }
        | O::RestorePatron { patron }
        | O::Report { patron }
        | O::Invite { patron }
        | O::SetOptout { patron, .. }
        | O::AddContact { patron, .. }
        | O::RemoveContact { patron, .. }
        | O::PreferContact { patron, .. }
        | O::AddStatistic { patron, .. }
        | O::RemoveStatistic { patron, .. }
        | O::AddAttachment { patron, .. }
        | O::RemoveAttachment { patron, .. }
        | O::SetPicture { patron, .. } => u.patron(*patron).map(drop),
        // The item is theirs too: another institution's copies are not there for them.
        O::Lend { patron, item, .. } => {
            u.patron(*patron)?;
            ours_item(u, &actor, item)
        }
        O::PlaceHold { patron, target, .. } => {
            u.patron(*patron)?;
            match target {
                crate::engine::HoldTarget::Item(item) => ours_item(u, &actor, item),
                crate::engine::HoldTarget::Title(_) => Ok(()),
            }
        }
        O::SetProxy { proxy, for_whom, .. } => u.patron(*proxy).and_then(|_| u.patron(*for_whom)).map(drop),
        // The institution asked to take the patron decides, and for that unit only the
        // patron's own institution is theirs too.
        O::DecideTransfer { patron, .. } => {
            match u.state.patron(*patron).map(|p| (p.transfer.as_ref(), &p.institution)) {
                Some((Some(t), home)) if actor.covers(&t.to) => {
                    let home = home.clone();
                    if let Some(scope) = u.scope.as_mut() {
                        scope.push(home);
                    }
                    Ok(())
                }
                _ => Err(Refusal::NoPatron(format!("#{patron} with a transfer to your institution"))),
            }
        }
        O::PayFee { fee, .. } | O::WaiveFee { fee, .. } | O::DisputeFee { fee } | O::RestoreFee { fee } => {
            match u.state.fee(*fee).map(|f| f.patron) {
                Some(p) if u.patron(p).is_ok() => Ok(()),
                _ => Err(Refusal::NoFee(*fee)),
            }
        }
        O::CancelHold { hold } => match u.state.hold(*hold).map(|h| h.patron) {
            Some(p) if u.patron(p).is_ok() => Ok(()),
            _ => Err(Refusal::NoHold(*hold)),
        },
        O::Return { item } | O::EditItem { barcode: item, .. } | O::DeleteItem { barcode: item } => {
            ours_item(u, &actor, item)
        }
        O::AddItem(new) => covered(&new.institution),
        O::AddAccount { institution, .. } => covered(institution),
        O::SetAccountPassword { login, .. } | O::SetAccountProfile { login, .. } | O::RemoveAccount { login } => {
            match u.state.account(login) {
                Some(a) if actor.covers(&a.institution) => Ok(()),
                _ => Err(Refusal::NoAccount(login.clone())),
            }
        }
        O::ChangeInstitution { code, .. } => covered(code),
        O::AddStaff { role, institutions, .. } => staff::may_manage(&actor, *role, institutions),
        // A member's own password is theirs to change, given the one they have (a session
        // left open must not be enough to lock its owner out).
        O::SetStaffPassword { login, matched, .. } if *login == actor.login => {
            if matched.as_deref() == Some(actor.password_hash.as_str()) {
                Ok(())
            } else {
                Err(Refusal::WrongPassword { remaining: 1 })
            }
        }
        // A token acts as its owner, so only the owner makes one; revoking is also for those
        // who manage them.
        O::AddStaffToken { login, .. } if *login == actor.login => Ok(()),
        O::AddStaffToken { .. } => {
            Err(Refusal::NotPermitted { role: actor.role, needs: None, what: "make a token for someone else" })
        }
        O::RevokeStaffToken { login, .. } if *login == actor.login => Ok(()),
        O::ChangeStaff { login, role, institutions, .. } => {
            let target = manageable(u, &actor, login)?;
            staff::may_manage(
                &actor,
                role.unwrap_or(target.role),
                institutions.as_deref().unwrap_or(&target.institutions),
            )
        }
        O::SetStaffPassword { login, .. }
        | O::RevokeStaffToken { login, .. }
        | O::UnlockStaff { login }
        | O::RemoveStaff { login } => manageable(u, &actor, login).map(drop),
        // The rest needs the system, which `permits` refused above.
        O::KioskPatron { .. }
        | O::KioskCheckout(_)
        | O::KioskCheckin { .. }
        | O::KioskRenew { .. }
        | O::KioskRenewAll { .. }
        | O::KioskPay { .. }
        | O::KioskHold { .. }
        | O::KioskBlock { .. }
        | O::KioskEnable { .. }
        | O::KioskItemProperties { .. }
        | O::AddInstitution { .. }
        | O::Purge { .. }
        | O::StaffLogin { .. }
        | O::Import { .. }
        | O::Delivered { .. }
        | O::RedeemPinLink { .. }
        | O::PatronLogin { .. }
        | O::ForgotPin { .. }
        | O::AsPatron { .. }
        | O::ConfirmEmail { .. } => Err(Refusal::NotPermitted { role: actor.role, needs: None, what }),
    }
}

/// The member `login`, if `actor` may manage them (a member of another institution is "not
/// there").
fn manageable(u: &Unit<'_>, actor: &Staff, login: &str) -> Result<Staff, Refusal> {
    let target = member(u, login)?;
    if !target.institutions.iter().all(|i| actor.covers(i)) {
        return Err(Refusal::NoStaff(login.into()));
    }
    staff::may_manage(actor, target.role, &target.institutions)?;
    Ok(target)
}

/// Item `barcode`, if it is of `actor`'s institutions.
fn ours_item(u: &Unit<'_>, actor: &Staff, barcode: &str) -> Result<(), Refusal> {
    match u.state.item(barcode) {
        Some(i) if actor.covers(&i.institution) => Ok(()),
        _ => Err(Refusal::NoItem(barcode.into())),
    }
}

fn check_institutions(u: &Unit<'_>, institutions: &[String]) -> Result<(), Refusal> {
    if institutions.is_empty() {
        return Err(Refusal::rule("a staff account works for at least one institution"));
    }
    for i in institutions {
        u.institution(i)?;
    }
    Ok(())
}

fn save(u: &mut Unit<'_>, mut m: Staff, what: String) -> Result<Staff, Refusal> {
    let (now, by) = (u.now(), u.actor().to_string());
    m.record(now, &by, what);
    u.put(Write::Staff(Box::new(m.clone())))?;
    Ok(m)
}

pub fn add(
    u: &mut Unit<'_>,
    login: &str,
    name: &str,
    password_hash: String,
    role: Role,
    institutions: Vec<String>,
) -> Result<Staff, Refusal> {
    staff::check_login(login)?;
    validate::required("name", name)?;
    validate::plain("name", name)?;
    check_institutions(u, &institutions)?;
    if u.state.staff(login).is_some() {
        return Err(Refusal::Exists { what: "staff account", key: login.into() });
    }
    let m = Staff {
        login: login.into(),
        name: name.into(),
        password_hash,
        role,
        institutions,
        failures: 0,
        locked_until: None,
        tokens: vec![],
        last_login: None,
        history: vec![],
    };
    let what = format!("created as {} for {}", role.code(), m.institutions.join(", "));
    save(u, m, what)
}

pub fn change(
    u: &mut Unit<'_>,
    login: &str,
    name: Option<String>,
    role: Option<Role>,
    institutions: Option<Vec<String>>,
) -> Result<Staff, Refusal> {
    let mut m = member(u, login)?;
    let mut said = Vec::new();
    if let Some(n) = name {
        validate::required("name", &n)?;
        validate::plain("name", &n)?;
        said.push(format!("name {} -> {n}", m.name));
        m.name = n;
    }
    if let Some(r) = role {
        said.push(format!("role {} -> {}", m.role.code(), r.code()));
        m.role = r;
    }
    if let Some(i) = institutions {
        check_institutions(u, &i)?;
        said.push(format!("institutions {} -> {}", m.institutions.join(","), i.join(",")));
        m.institutions = i;
    }
    if said.is_empty() {
        return Ok(m);
    }
    save(u, m, said.join("; "))
}

pub fn set_password(u: &mut Unit<'_>, login: &str, password_hash: String) -> Result<Staff, Refusal> {
    let mut m = member(u, login)?;
    m.password_hash = password_hash;
    // A new password is a fresh start.
    m.failures = 0;
    m.locked_until = None;
    save(u, m, "password changed".into())
}

/// Decides a login attempt: what it writes (a count, a lock, the time of the login) stands
/// whether the attempt is refused or not.
pub fn login(u: &mut Unit<'_>, login: &str, matched: Option<&str>) -> Result<Result<Staff, Refusal>, Refusal> {
    // An unknown login is answered as a wrong password is, so that logins cannot be probed.
    let Some(m) = u.state.staff(login).cloned() else { return Ok(Err(Refusal::WrongPassword { remaining: 1 })) };
    // A password checked against a hash replaced since is not this account's password.
    let password_ok = matched == Some(m.password_hash.as_str());
    let rule = u.state.limits().lockout();
    let (next, verdict) = staff::login(&m, password_ok, u.now(), rule);
    if next != m {
        u.put(Write::Staff(Box::new(next.clone())))?;
    }
    Ok(match verdict {
        LoginVerdict::Welcome => Ok(next),
        LoginVerdict::Locked(until) => Err(Refusal::StaffLocked(until)),
        LoginVerdict::Wrong { remaining } => Err(Refusal::WrongPassword { remaining }),
    })
}

pub fn unlock(u: &mut Unit<'_>, login: &str) -> Result<Staff, Refusal> {
    let mut m = member(u, login)?;
    m.failures = 0;
    m.locked_until = None;
    save(u, m, "unlocked".into())
}

pub fn add_token(u: &mut Unit<'_>, login: &str, label: &str, digest: String) -> Result<Staff, Refusal> {
    validate::required("label", label)?;
    validate::plain("label", label)?;
    let mut m = member(u, login)?;
    if m.tokens.len() >= 20 {
        return Err(Refusal::Full { what: "tokens", limit: 20 });
    }
    let id = m.tokens.iter().map(|t| t.id).max().unwrap_or(0) + 1;
    m.tokens.push(staff::StaffToken { id, label: label.into(), digest, created: u.now() });
    save(u, m, format!("token {id} ({label}) added"))
}

pub fn revoke_token(u: &mut Unit<'_>, login: &str, token: u32) -> Result<Staff, Refusal> {
    let mut m = member(u, login)?;
    let before = m.tokens.len();
    m.tokens.retain(|t| t.id != token);
    if m.tokens.len() == before {
        return Err(Refusal::rule(format!("{login} has no token {token}")));
    }
    save(u, m, format!("token {token} revoked"))
}

pub fn remove(u: &mut Unit<'_>, login: &str) -> Result<(), Refusal> {
    member(u, login)?;
    if u.by.staff.as_deref() == Some(login) {
        return Err(AsItStands::OwnAccount.into());
    }
    u.put(Write::RemoveStaff(login.into()))
}
