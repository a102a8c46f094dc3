//! Staff sessions: the console's cookie, its CSRF token, and how long it lasts. Kept in memory
//! (a restart logs staff out); only a digest of each cookie is held, so the table cannot be
//! used to take a session over.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::domain::secret;

/// The cookie's name. `__Host-`: browsers take it only from this host, over HTTPS (or
/// loopback), for the whole site, so a neighbouring subdomain cannot plant one.
pub const COOKIE: &str = "__Host-sip2d_session";

/// Sessions one member may have open at once; a new one beyond ends their oldest (so no one
/// account can crowd everyone else's out).
const PER_MEMBER: usize = 20;

/// How long sessions last and how many are kept (`[limits]` in the configuration).
#[derive(Clone, Copy, Debug)]
pub struct SessionLimits {
    pub idle: Duration,
    pub max_age: Duration,
    pub max: usize,
}

struct Session {
    login: String,
    /// A digest of the password hash the member logged in with: a new password ends every
    /// session opened with the old one, whoever set it and however.
    password: String,
    csrf: String,
    /// What the session acts with besides the login (a patron's PIN tag), if anything.
    bound: String,
    opened: Instant,
    last: Instant,
}

/// An open session as a request finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Open {
    pub login: String,
    pub csrf: String,
    /// What [`Sessions::open_bound`] bound the session to (empty for staff).
    pub bound: String,
    password: String,
}

impl Open {
    /// Whether the session was opened with this password hash (the member's current one).
    pub fn opened_with(&self, password_hash: &str) -> bool {
        same_secret(&self.password, &secret::token_digest(password_hash))
    }
}

pub struct Sessions {
    limits: SessionLimits,
    /// Cookie digest -> session.
    open: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    pub fn new(limits: SessionLimits) -> Sessions {
        Sessions { limits, open: Mutex::default() }
    }

    pub fn limits(&self) -> SessionLimits {
        self.limits
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Session>) -> T) -> T {
        f(&mut self.open.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Opens a session for `login`, who gave the password of `password_hash`: the cookie's
    /// value and the CSRF token, both random.
    pub fn open(&self, login: &str, password_hash: &str, now: Instant) -> std::io::Result<(String, String)> {
        self.open_with(login, password_hash, String::new(), now)
    }

    /// Opens a session that carries `bound` to every request (a patron's PIN tag, which the
    /// engine checks is still theirs).
    pub fn open_bound(&self, login: &str, bound: &str, now: Instant) -> std::io::Result<(String, String)> {
        self.open_with(login, bound, bound.to_string(), now)
    }

    fn open_with(&self, login: &str, secret: &str, bound: String, now: Instant) -> std::io::Result<(String, String)> {
        let cookie = secret::new_token()?;
        let csrf = secret::new_token()?;
        let password = secret::token_digest(secret);
        let session = Session { login: login.into(), password, csrf: csrf.clone(), bound, opened: now, last: now };
        let limits = self.limits;
        self.with(|open| {
            open.retain(|_, s| live(s, limits, now));
            let theirs: Vec<(&String, &Session)> = open.iter().filter(|(_, s)| s.login == login).collect();
            if theirs.len() >= PER_MEMBER {
                if let Some(oldest) = theirs.iter().min_by_key(|(_, s)| s.last).map(|(k, _)| (*k).clone()) {
                    open.remove(&oldest);
                }
            }
            if open.len() >= limits.max.max(1) {
                if let Some(oldest) = open.iter().min_by_key(|(_, s)| s.last).map(|(k, _)| k.clone()) {
                    open.remove(&oldest);
                }
            }
            open.insert(secret::token_digest(&cookie), session);
        });
        Ok((cookie, csrf))
    }

    /// The session a cookie opens, if it is still live (and now used).
    pub fn find(&self, cookie: &str, now: Instant) -> Option<Open> {
        let key = secret::token_digest(cookie);
        let limits = self.limits;
        self.with(|open| match open.get_mut(&key) {
            Some(s) if live(s, limits, now) => {
                s.last = now;
                Some(Open {
                    login: s.login.clone(),
                    csrf: s.csrf.clone(),
                    bound: s.bound.clone(),
                    password: s.password.clone(),
                })
            }
            Some(_) => {
                open.remove(&key);
                None
            }
            None => None,
        })
    }

    pub fn close(&self, cookie: &str) {
        let key = secret::token_digest(cookie);
        self.with(|open| open.remove(&key));
    }
}

fn live(s: &Session, limits: SessionLimits, now: Instant) -> bool {
    now.saturating_duration_since(s.last) < limits.idle && now.saturating_duration_since(s.opened) < limits.max_age
}

/// The values of cookie `name` a request carries, in its `Cookie` headers (a browser may send
/// more than one of a name).
pub fn cookies<'h>(headers: &'h axum::http::HeaderMap, name: &'h str) -> impl Iterator<Item = &'h str> + 'h {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .filter(move |(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

pub use crate::domain::secret::same_secret;

/// The `Set-Cookie` value that opens a session: not readable by scripts, sent only over
/// HTTPS (browsers count loopback as secure) and only with requests from the console's own
/// pages.
pub fn set_cookie(value: &str, limits: SessionLimits) -> String {
    set_named_cookie(COOKIE, value, limits)
}

/// The `Set-Cookie` value that ends one.
pub fn clear_cookie() -> String {
    clear_named_cookie(COOKIE)
}

/// [`set_cookie`] for another kind of session (the patron pages' own cookie).
pub fn set_named_cookie(name: &str, value: &str, limits: SessionLimits) -> String {
    format!("{name}={value}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}", limits.max_age.as_secs())
}

/// [`clear_cookie`] for another kind of session.
pub fn clear_named_cookie(name: &str) -> String {
    format!("{name}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: SessionLimits =
        SessionLimits { idle: Duration::from_secs(60), max_age: Duration::from_secs(600), max: 3 };

    #[test]
    fn sessions_end_when_idle_old_or_crowded_out() {
        let s = Sessions::new(LIMITS);
        let t0 = Instant::now();
        let (a, csrf) = s.open("anna", "h", t0).unwrap();
        let found = s.find(&a, t0 + Duration::from_secs(59)).unwrap();
        assert_eq!((found.login.as_str(), &found.csrf), ("anna", &csrf));
        assert!(found.opened_with("h") && !found.opened_with("h2"));
        // Used at 59 s: live until 119 s.
        assert!(s.find(&a, t0 + Duration::from_secs(118)).is_some());
        assert!(s.find(&a, t0 + Duration::from_secs(300)).is_none(), "idle too long");
        assert!(s.find(&a, t0).is_none(), "and gone");

        let (b, _) = s.open("bo", "h", t0).unwrap();
        let mut at = t0;
        while at < t0 + Duration::from_secs(600) {
            assert!(s.find(&b, at).is_some());
            at += Duration::from_secs(50);
        }
        assert!(s.find(&b, at).is_none(), "too old, however busy");

        let first = s.open("c1", "h", t0).unwrap().0;
        for n in 0..3 {
            s.open(&format!("c{n}"), "h", t0 + Duration::from_secs(1)).unwrap();
        }
        assert!(s.find(&first, t0 + Duration::from_secs(2)).is_none(), "the oldest made room");
        assert!(s.find("sip2d_forged", t0).is_none());

        // One member's logins end their own oldest session, nobody else's.
        let s = Sessions::new(SessionLimits { max: 100, ..LIMITS });
        let other = s.open("other", "h", t0).unwrap().0;
        let first = s.open("busy", "h", t0).unwrap().0;
        for n in 1..=PER_MEMBER as u64 {
            s.open("busy", "h", t0 + Duration::from_millis(n)).unwrap();
        }
        let later = t0 + Duration::from_secs(1);
        assert!(s.find(&first, later).is_none() && s.find(&other, later).is_some());
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let with = |cookie: &str| {
            let mut h = axum::http::HeaderMap::new();
            h.insert(axum::http::header::COOKIE, cookie.parse().unwrap());
            h
        };
        let h = with("a=1; __Host-sip2d_session=xyz; b=2; __Host-sip2d_session=w");
        assert_eq!(cookies(&h, COOKIE).collect::<Vec<_>>(), ["xyz", "w"]);
        assert_eq!(cookies(&with("sip2d_session=1; __Host-sip2d_sessionx=1"), COOKIE).count(), 0);
        assert!(set_cookie("v", LIMITS).contains("HttpOnly; Secure; SameSite=Strict"));
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("abc", "ab"));
    }
}
