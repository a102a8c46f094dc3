//! Terminal logins under load: Argon2 once per account and password, then a keyed digest;
//! the hashing bounded, and refusals slowed the more an address or an account fails.
//!
//! A fleet of kiosks reconnecting after a network blip sends hundreds of correct logins at
//! once, mostly for a few shared accounts. Each account's first login since start runs one
//! Argon2 hash (the others for that account wait for it, then compare digests); every later
//! login, right or wrong, costs one HMAC. Hashes run `login_hashes` at a time. Addresses that
//! have failed lately hash one at a time between them, so a flood of wrong passwords from
//! anywhere holds at most one of those places and the kiosks' first logins keep the rest.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::config::Limits;
use crate::domain::secret::{HashMemory, PasswordDigest, PasswordMemo, verify_password_in};
use crate::service::Passwords;

/// Wrong passwords remembered per account (so a kiosk retrying the same wrong one costs no
/// hash); older ones are forgotten first.
const WRONG_KEPT: usize = 8;

/// Addresses whose failures are counted at once; beyond this the oldest quiet ones are
/// forgotten first (about 64 bytes each).
const ADDRESSES_KEPT: usize = 65_536;

/// What is known of one account's password since start.
struct Known {
    /// The Argon2 hash the digests were checked against: a new password starts over.
    hash: String,
    right: Option<PasswordDigest>,
    wrong: VecDeque<PasswordDigest>,
}

/// Recent failures of one address or account.
#[derive(Clone, Copy)]
struct Strikes {
    last: Instant,
    count: u32,
}

#[derive(Default)]
struct Failures {
    by_address: HashMap<IpAddr, Strikes>,
    by_account: HashMap<String, Strikes>,
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoginStats {
    /// Argon2 hashes run.
    pub hashed: u64,
    /// Logins answered from a digest, without a hash.
    pub remembered: u64,
}

/// The server's login checker, shared by every connection.
pub struct LoginGate {
    memo: PasswordMemo,
    known: Mutex<HashMap<String, Known>>,
    /// One first login per account at a time: the rest wait and then use its digest.
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    hashing: Arc<Semaphore>,
    /// The one hash at a time that addresses with recent failures share.
    suspects: Arc<Semaphore>,
    failures: Mutex<Failures>,
    /// Argon2's working memory, one per hash running at once, kept from one to the next:
    /// the memory logins hold is `login_hashes` times the hash's cost, however many come.
    memory: Arc<Mutex<Vec<HashMemory>>>,
    hashed: AtomicU64,
    remembered: AtomicU64,
}

impl LoginGate {
    /// A gate that runs at most `hashes_at_once` Argon2 hashes at a time (at least one).
    pub fn new(hashes_at_once: usize) -> std::io::Result<LoginGate> {
        Ok(LoginGate {
            memo: PasswordMemo::new()?,
            known: Mutex::default(),
            flights: Mutex::default(),
            hashing: Arc::new(Semaphore::new(hashes_at_once.max(1))),
            suspects: Arc::new(Semaphore::new(1)),
            failures: Mutex::default(),
            memory: Arc::default(),
            hashed: AtomicU64::new(0),
            remembered: AtomicU64::new(0),
        })
    }

    pub fn stats(&self) -> LoginStats {
        LoginStats { hashed: self.hashed.load(Ordering::Relaxed), remembered: self.remembered.load(Ordering::Relaxed) }
    }

    /// What the digests already say of this password: `None` when only Argon2 can tell.
    fn recall(&self, login: &str, hash: &str, digest: &PasswordDigest) -> Option<bool> {
        let known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        let k = known.get(login).filter(|k| k.hash == hash)?;
        let verdict = match &k.right {
            // The right password is known, so any other is wrong: exact, with no hash.
            Some(right) => Some(right == digest),
            None => k.wrong.iter().any(|w| w == digest).then_some(false),
        };
        if verdict.is_some() {
            self.remembered.fetch_add(1, Ordering::Relaxed);
        }
        verdict
    }

    fn remember(&self, login: &str, hash: &str, digest: PasswordDigest, right: bool) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        let k = known.entry(login.to_string()).or_insert_with(|| Known {
            hash: hash.to_string(),
            right: None,
            wrong: VecDeque::new(),
        });
        if k.hash != hash {
            *k = Known { hash: hash.to_string(), right: None, wrong: VecDeque::new() };
        }
        if right {
            k.right = Some(digest);
            k.wrong.clear();
        } else {
            if k.wrong.len() >= WRONG_KEPT {
                k.wrong.pop_front();
            }
            k.wrong.push_back(digest);
        }
    }

    fn flight(&self, login: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        flights.entry(login.to_string()).or_default().clone()
    }

    /// Drops the account's flight lock when nobody else holds or awaits it.
    fn land(&self, login: &str) {
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        if flights.get(login).is_some_and(|f| Arc::strong_count(f) == 1) {
            flights.remove(login);
        }
    }

    fn with_failures<T>(&self, f: impl FnOnce(&mut Failures) -> T) -> T {
        f(&mut self.failures.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether this address failed a login within the window.
    fn suspect(&self, peer: IpAddr, limits: &Limits, now: Instant) -> bool {
        self.with_failures(|f| current(f.by_address.get(&peer), limits, now) > 0)
    }

    /// Checks `password`: from the digests when they can tell, else by one Argon2 hash.
    async fn check(&self, login: &str, password: &str, hash: &str, peer: IpAddr, limits: &Limits) -> bool {
        let digest = self.memo.digest(login, password);
        if let Some(v) = self.recall(login, hash, &digest) {
            return v;
        }
        let suspect = self.suspect(peer, limits, Instant::now());
        // A clean address waits for the account's first login in flight and uses its
        // digest; a failing one does not stand in that line, so it cannot hold kiosks up.
        let flight = (!suspect).then(|| self.flight(login));
        let _in_flight = match &flight {
            Some(f) => Some(f.clone().lock_owned().await),
            None => None,
        };
        let verdict = match self.recall(login, hash, &digest) {
            Some(v) => Some(v),
            None => {
                let v = self.hash(password, hash, suspect).await;
                if let Some(right) = v {
                    self.remember(login, hash, digest, right);
                }
                v
            }
        };
        drop(_in_flight);
        if flight.is_some() {
            drop(flight);
            self.land(login);
        }
        verdict.unwrap_or(false)
    }

    /// Runs one Argon2 verification when a place is free; `None` if it could not run.
    async fn hash(&self, password: &str, hash: &str, suspect: bool) -> Option<bool> {
        let queue = match suspect {
            true => Some(self.suspects.clone().acquire_owned().await.ok()?),
            false => None,
        };
        let permit = self.hashing.clone().acquire_owned().await.ok()?;
        self.hashed.fetch_add(1, Ordering::Relaxed);
        let (password, hash) = (password.to_string(), hash.to_string());
        let pool = self.memory.clone();
        // The places travel with the hash: if the connection goes away meanwhile, they are
        // still held until the hash ends, so the bound holds.
        tokio::task::spawn_blocking(move || {
            let mut memory = pool.lock().unwrap_or_else(PoisonError::into_inner).pop().unwrap_or_default();
            let ok = verify_password_in(&password, &hash, &mut memory);
            pool.lock().unwrap_or_else(PoisonError::into_inner).push(memory);
            drop((permit, queue));
            ok
        })
        .await
        .ok()
    }

    /// Checks a staff member's password against its Argon2 hash, on the same bounded places
    /// as terminal logins (an address failing lately waits for the one place such addresses
    /// share), so a flood of staff logins cannot take the kiosks' hashing from them.
    pub async fn check_staff(&self, password: &str, hash: &str, peer: IpAddr, limits: &Limits) -> bool {
        let suspect = self.suspect(peer, limits, Instant::now());
        self.hash(password, hash, suspect).await.unwrap_or(false)
    }

    /// Records a refused login from `peer` (whose account, if it exists, has failed
    /// `account_strikes` times lately) and returns the pause before its `940`:
    /// `login_failure_delay`, doubling for each failure of the address or the account beyond
    /// `login_backoff_after` within `login_backoff_window`, up to `login_backoff_max`.
    pub fn refused(&self, peer: IpAddr, account_strikes: u32, limits: &Limits) -> Duration {
        let now = Instant::now();
        let address = self.with_failures(|f| {
            if f.by_address.len() >= ADDRESSES_KEPT && !f.by_address.contains_key(&peer) {
                forget_oldest(&mut f.by_address, limits, now);
            }
            strike(f.by_address.entry(peer).or_insert(Strikes { last: now, count: 0 }), limits, now)
        });
        backoff(address.max(account_strikes), limits)
    }

    /// Records a wrong password for an existing account; its failures lately.
    fn account_failed(&self, login: &str, limits: &Limits) -> u32 {
        let now = Instant::now();
        self.with_failures(|f| {
            let s = f.by_account.entry(login.to_string()).or_insert(Strikes { last: now, count: 0 });
            strike(s, limits, now)
        })
    }
}

/// Failures within the window (0 once it has passed since the last one).
fn current(s: Option<&Strikes>, limits: &Limits, now: Instant) -> u32 {
    s.filter(|s| now.duration_since(s.last) < limits.login_backoff_window).map_or(0, |s| s.count)
}

fn strike(s: &mut Strikes, limits: &Limits, now: Instant) -> u32 {
    if now.duration_since(s.last) >= limits.login_backoff_window {
        s.count = 0;
    }
    s.count = s.count.saturating_add(1);
    s.last = now;
    s.count
}

/// Forgets addresses quiet for a window, or else the quieter half.
fn forget_oldest(map: &mut HashMap<IpAddr, Strikes>, limits: &Limits, now: Instant) {
    map.retain(|_, s| now.duration_since(s.last) < limits.login_backoff_window);
    if map.len() >= ADDRESSES_KEPT {
        let mut lasts: Vec<Instant> = map.values().map(|s| s.last).collect();
        lasts.sort_unstable();
        let cut = lasts[lasts.len() / 2];
        map.retain(|_, s| s.last > cut);
    }
}

/// The pause before a `940` after `failures` failures.
pub fn backoff(failures: u32, limits: &Limits) -> Duration {
    let base = limits.login_failure_delay;
    let beyond = failures.saturating_sub(limits.login_backoff_after);
    if beyond == 0 {
        return base;
    }
    let factor = 1u32.checked_shl(beyond.min(31)).unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(limits.login_backoff_max.max(base))
}

/// One connection's view of the gate: its address, and what its last check learnt.
pub struct PeerLogins<'a> {
    gate: &'a LoginGate,
    peer: IpAddr,
    limits: &'a Limits,
    account_strikes: AtomicU32,
}

impl<'a> PeerLogins<'a> {
    pub fn new(gate: &'a LoginGate, peer: IpAddr, limits: &'a Limits) -> PeerLogins<'a> {
        PeerLogins { gate, peer, limits, account_strikes: AtomicU32::new(0) }
    }

    /// The recent failures of the account the last wrong password was for (0 if none).
    pub fn account_strikes(&self) -> u32 {
        self.account_strikes.load(Ordering::Relaxed)
    }
}

impl Passwords for PeerLogins<'_> {
    fn check<'b>(
        &'b self,
        login: &'b str,
        password: &'b str,
        hash: &'b str,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'b>> {
        Box::pin(async move {
            let ok = self.gate.check(login, password, hash, self.peer, self.limits).await;
            if !ok {
                self.account_strikes.store(self.gate.account_failed(login, self.limits), Ordering::Relaxed);
            }
            ok
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits { login_failure_delay: Duration::from_secs(1), ..Limits::default() }
    }

    #[test]
    fn refusals_pause_longer_beyond_the_free_failures_up_to_the_cap() {
        let l = limits();
        assert_eq!(backoff(1, &l), Duration::from_secs(1));
        assert_eq!(backoff(l.login_backoff_after, &l), Duration::from_secs(1));
        assert_eq!(backoff(l.login_backoff_after + 1, &l), Duration::from_secs(2));
        assert_eq!(backoff(l.login_backoff_after + 2, &l), Duration::from_secs(4));
        assert_eq!(backoff(u32::MAX, &l), l.login_backoff_max);
        let off = Limits { login_failure_delay: Duration::ZERO, ..l };
        assert_eq!(backoff(1000, &off), Duration::ZERO, "no delay configured, no backoff");
    }

    #[tokio::test]
    async fn a_password_is_hashed_once_then_known_right_or_wrong_by_its_digest() {
        let gate = LoginGate::new(2).unwrap();
        let hash = crate::domain::secret::hash_password("s3cret").unwrap();
        let (l, peer) = (limits(), IpAddr::from([127, 0, 0, 1]));
        let c = PeerLogins::new(&gate, peer, &l);
        assert!(!c.check("k", "wrong", &hash).await);
        assert_eq!(gate.stats().hashed, 1);
        assert!(!c.check("k", "wrong", &hash).await, "a remembered wrong password costs no hash");
        assert_eq!(gate.stats().hashed, 1);
        assert_eq!(c.account_strikes(), 2);
        assert!(c.check("k", "s3cret", &hash).await);
        assert!(c.check("k", "s3cret", &hash).await);
        assert!(!c.check("k", "other", &hash).await, "once the right one is known, any other is wrong");
        assert_eq!(gate.stats(), LoginStats { hashed: 2, remembered: 3 });
        // A new password (a new hash) is checked again: the old one no longer opens.
        let new = crate::domain::secret::hash_password("n3w").unwrap();
        assert!(!c.check("k", "s3cret", &new).await);
        assert!(c.check("k", "n3w", &new).await);
        assert_eq!(gate.stats().hashed, 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_first_logins_of_one_account_run_one_hash() {
        let gate = Arc::new(LoginGate::new(2).unwrap());
        let hash = Arc::new(crate::domain::secret::hash_password("s3cret").unwrap());
        let l = Arc::new(limits());
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (gate, hash, l) = (gate.clone(), hash.clone(), l.clone());
            tasks.push(tokio::spawn(async move {
                PeerLogins::new(&gate, IpAddr::from([127, 0, 0, 1]), &l).check("k", "s3cret", &hash).await
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap());
        }
        assert_eq!(gate.stats().hashed, 1, "the others waited and used its digest");
        assert!(gate.flights.lock().unwrap().is_empty(), "no flight lock is left behind");
    }

    #[test]
    fn a_full_address_table_forgets_the_quiet_half() {
        let l = limits();
        let now = Instant::now();
        let mut map = HashMap::new();
        for i in 0..ADDRESSES_KEPT as u32 {
            let last = now - Duration::from_millis(u64::from(ADDRESSES_KEPT as u32 - i));
            map.insert(IpAddr::from(i.to_be_bytes()), Strikes { last, count: 1 });
        }
        forget_oldest(&mut map, &l, now);
        assert!(map.len() <= ADDRESSES_KEPT / 2 + 1 && !map.is_empty(), "{}", map.len());
    }
}
