//! Staff accounts: who may use the console and the resource API, in which role and for which
//! institutions, and the pure rules that decide a login, a permission and what a member sees.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::records::Patron;
use super::refusal::Refusal;

/// The roles the register's guides name, each allowing what the one before it does and more.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The desk's read-only role: find and look.
    Desk,
    /// Find, add, edit, block, notes, fees, loans and holds at the desk, proxies, transfers.
    UserManager,
    /// Also delete and restore patrons, terminal accounts, and the staff accounts of their
    /// institutions.
    UserAdministrator,
    /// An institution's main administrator: also the institution's settings.
    MainAdministrator,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Desk, Role::UserManager, Role::UserAdministrator, Role::MainAdministrator];

    /// The name the configuration, the command line and the API use.
    pub fn code(self) -> &'static str {
        match self {
            Role::Desk => "desk",
            Role::UserManager => "user-manager",
            Role::UserAdministrator => "user-administrator",
            Role::MainAdministrator => "main-administrator",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.code() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Desk => "desk (read-only)",
            Role::UserManager => "User Manager",
            Role::UserAdministrator => "User Administrator",
            Role::MainAdministrator => "main administrator",
        })
    }
}

/// A bearer token for an integration: only its SHA-256 digest is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaffToken {
    pub id: u32,
    pub label: String,
    /// SHA-256 of the token, in hex.
    pub digest: String,
    pub created: Timestamp,
}

/// One change to a staff account, kept with it (the newest [`Staff::HISTORY`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaffEvent {
    pub at: Timestamp,
    pub by: String,
    pub what: String,
}

/// A staff member's account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Staff {
    pub login: String,
    /// The name the audit history records beside the login.
    pub name: String,
    /// Argon2 PHC string.
    pub password_hash: String,
    pub role: Role,
    /// The institutions whose patrons this member sees and changes (at least one).
    pub institutions: Vec<String>,
    /// Wrong passwords since the last right one.
    pub failures: u32,
    /// Logins are refused until then, even with the right password.
    pub locked_until: Option<Timestamp>,
    pub tokens: Vec<StaffToken>,
    pub last_login: Option<Timestamp>,
    pub history: Vec<StaffEvent>,
}

/// How staff logins are limited (`[register]` in the configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lockout {
    /// Wrong passwords in a row that lock the account.
    pub failures: u32,
    /// How long it stays locked.
    pub duration: SignedDuration,
}

impl Staff {
    /// Events kept per account.
    pub const HISTORY: usize = 50;

    /// The name the audit history gives changes this member makes.
    pub fn actor(&self) -> String {
        format!("{} ({})", self.name, self.login)
    }

    pub fn locked(&self, now: Timestamp) -> bool {
        self.locked_until.is_some_and(|t| t > now)
    }

    /// Records an event, dropping the oldest beyond [`Staff::HISTORY`].
    pub fn record(&mut self, at: Timestamp, by: &str, what: impl Into<String>) {
        self.history.push(StaffEvent { at, by: by.into(), what: what.into() });
        let over = self.history.len().saturating_sub(Staff::HISTORY);
        self.history.drain(..over);
    }

    /// Whether this member sees patrons of `institution`.
    pub fn covers(&self, institution: &str) -> bool {
        self.institutions.iter().any(|i| i == institution)
    }
}

/// Whether a member working for `institutions` sees `p`: a patron of theirs, or one asked to
/// move to one of theirs (whose staff decide the move).
pub fn sees(institutions: &[String], p: &Patron) -> bool {
    let ours = |code: &str| institutions.iter().any(|i| i == code);
    ours(&p.institution) || p.transfer.as_ref().is_some_and(|t| ours(&t.to))
}

/// What an operation needs of the member asking for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    Role(Role),
    /// Only the system itself (the owner's command line, a kiosk, the server): no staff role.
    System,
}

/// Whether `role` may do what needs `needs`.
pub fn permits(role: Role, needs: Needs, what: &'static str) -> Result<(), Refusal> {
    match needs {
        Needs::Role(r) if role >= r => Ok(()),
        Needs::Role(r) => Err(Refusal::NotPermitted { role, needs: Some(r), what }),
        Needs::System => Err(Refusal::NotPermitted { role, needs: None, what }),
    }
}

/// Whether `actor` may give a member `role` for `institutions`, or change a member who has
/// them: only roles below their own (a peer could otherwise take over a peer's account, or
/// their own be taken), never beyond their own institutions.
pub fn may_manage(actor: &Staff, role: Role, institutions: &[String]) -> Result<(), Refusal> {
    permits(actor.role, Needs::Role(Role::UserAdministrator), "manage staff accounts")?;
    if role >= actor.role {
        return Err(Refusal::NotPermitted { role: actor.role, needs: Some(role), what: "give or change that role" });
    }
    // Another institution is not there for them.
    if let Some(other) = institutions.iter().find(|i| !actor.covers(i)) {
        return Err(Refusal::NoInstitution(other.clone()));
    }
    Ok(())
}

/// What a login attempt comes to, decided on the account as it is at `now`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoginVerdict {
    Welcome,
    /// Locked: refused whatever the password (until then).
    Locked(Timestamp),
    /// Wrong; so many tries are left before the account locks (0: it locks now).
    Wrong {
        remaining: u32,
    },
}

/// Decides a login: the account's new state, and the verdict. The password was checked
/// outside (Argon2 is slow); this decides what it means for the account.
pub fn login(s: &Staff, password_ok: bool, now: Timestamp, rule: Lockout) -> (Staff, LoginVerdict) {
    if let Some(until) = s.locked_until.filter(|t| *t > now) {
        return (s.clone(), LoginVerdict::Locked(until));
    }
    let mut s = s.clone();
    if password_ok {
        s.failures = 0;
        s.locked_until = None;
        s.last_login = Some(now);
        return (s, LoginVerdict::Welcome);
    }
    s.failures = s.failures.saturating_add(1);
    let remaining = rule.failures.saturating_sub(s.failures);
    if remaining == 0 {
        let until = now.saturating_add(rule.duration).unwrap_or(now);
        s.locked_until = Some(until);
        s.failures = 0;
        s.record(now, "sip2d", format!("locked after {} wrong passwords", rule.failures));
    }
    (s, LoginVerdict::Wrong { remaining })
}

/// A login name: 1-64 letters, digits, `.`, `_`, `-` or `@`.
pub fn check_login(login: &str) -> Result<(), Refusal> {
    let ok = !login.is_empty()
        && login.len() <= 64
        && login.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(Refusal::rule(format!("staff login '{login}' must be 1-64 letters, digits, '.', '_', '-' or '@'")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(role: Role, institutions: &[&str]) -> Staff {
        Staff {
            login: "anna".into(),
            name: "Anna Berg".into(),
            password_hash: String::new(),
            role,
            institutions: institutions.iter().map(|s| s.to_string()).collect(),
            failures: 0,
            locked_until: None,
            tokens: vec![],
            last_login: None,
            history: vec![],
        }
    }

    const RULE: Lockout = Lockout { failures: 5, duration: SignedDuration::from_mins(15) };

    #[test]
    fn five_wrong_passwords_lock_until_the_time_passes() {
        let now: Timestamp = "2026-12-03T10:00:00Z".parse().unwrap();
        let mut s = member(Role::Desk, &["MAIN"]);
        for left in (1..5).rev() {
            let (next, v) = login(&s, false, now, RULE);
            assert_eq!(v, LoginVerdict::Wrong { remaining: left });
            s = next;
        }
        let (locked, v) = login(&s, false, now, RULE);
        assert_eq!(v, LoginVerdict::Wrong { remaining: 0 });
        let until = now + SignedDuration::from_mins(15);
        assert_eq!(locked.locked_until, Some(until));
        // Even the right password is refused while locked.
        assert_eq!(login(&locked, true, now + SignedDuration::from_mins(14), RULE).1, LoginVerdict::Locked(until));
        let (open, v) = login(&locked, true, until, RULE);
        assert_eq!(v, LoginVerdict::Welcome);
        assert_eq!((open.failures, open.locked_until, open.last_login), (0, None, Some(until)));
    }

    #[test]
    fn a_right_password_clears_the_count() {
        let now: Timestamp = "2026-12-03T10:00:00Z".parse().unwrap();
        let s = member(Role::Desk, &["MAIN"]);
        let (s, _) = login(&s, false, now, RULE);
        let (s, _) = login(&s, true, now, RULE);
        assert_eq!(s.failures, 0);
    }

    #[test]
    fn roles_allow_what_those_below_them_do() {
        assert!(permits(Role::UserManager, Needs::Role(Role::UserManager), "x").is_ok());
        assert!(permits(Role::MainAdministrator, Needs::Role(Role::UserManager), "x").is_ok());
        assert!(permits(Role::UserManager, Needs::Role(Role::UserAdministrator), "x").is_err());
        assert!(permits(Role::Desk, Needs::Role(Role::UserManager), "x").is_err());
        assert!(permits(Role::MainAdministrator, Needs::System, "x").is_err());
        for r in Role::ALL {
            assert_eq!(Role::parse(r.code()), Some(r));
        }
    }

    #[test]
    fn nobody_grants_above_their_role_or_beyond_their_institutions() {
        let admin = member(Role::UserAdministrator, &["MAIN"]);
        assert!(may_manage(&admin, Role::UserManager, &["MAIN".into()]).is_ok());
        assert!(may_manage(&admin, Role::UserAdministrator, &["MAIN".into()]).is_err(), "no peers");
        assert!(may_manage(&admin, Role::MainAdministrator, &["MAIN".into()]).is_err());
        assert!(may_manage(&admin, Role::Desk, &["BRANCH".into()]).is_err());
        assert!(may_manage(&member(Role::UserManager, &["MAIN"]), Role::Desk, &["MAIN".into()]).is_err());
    }

    #[test]
    fn history_keeps_the_newest() {
        let now: Timestamp = "2026-12-03T10:00:00Z".parse().unwrap();
        let mut s = member(Role::Desk, &["MAIN"]);
        for i in 0..(Staff::HISTORY + 7) {
            s.record(now, "x", format!("{i}"));
        }
        assert_eq!(s.history.len(), Staff::HISTORY);
        assert_eq!(s.history[0].what, "7");
    }
}
