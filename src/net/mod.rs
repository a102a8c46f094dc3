//! The network layer: listeners, TLS, one task per connection, limits and clean shutdown.
//! The only module that touches sockets; every request goes to a [`Session`] and back.

pub mod config;
pub mod http;
pub mod logins;
pub mod ops;
pub mod proxy;
pub mod telnet;
pub mod terminals;
mod tls;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::BytesMut;
use jiff::Timestamp;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

pub use config::{Config, ConfigError, Faults, Limits, Listener, ListenerStrictness, LogFormat, TlsFiles};
pub use tls::TlsError;

use crate::engine::Engine;
use crate::proto::{FrameDecoder, FrameEvent};
use crate::service::{PinTally, Service, ServiceLimits, Session, SessionRules, Verdict};

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {address}: {source}")]
    Bind { address: SocketAddr, source: std::io::Error },
    #[error("TLS listener {address}: {source}")]
    Tls { address: SocketAddr, source: TlsError },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot make a key for login digests: {0}")]
    Random(std::io::Error),
}

/// One answered request, as its log line says it (target `sip2d::net`, message `request`).
pub struct RequestLine<'a> {
    pub peer: &'a str,
    /// The logged-in account, `-` before login.
    pub account: &'a str,
    /// The request's two-character code, `--` when it had none.
    pub code: &'a str,
    pub outcome: &'static str,
    pub latency_us: u64,
}

impl RequestLine<'_> {
    /// Logs the line through `tracing`.
    pub fn trace(&self) {
        info!(
            peer = %self.peer,
            account = self.account,
            code = %self.code,
            outcome = self.outcome,
            latency_us = self.latency_us,
            "request"
        );
    }
}

/// Writes a request's log line: a server's log writer can format that one line itself, at a
/// fraction of what the general formatting costs (it is written for every request).
pub type RequestLog = Arc<dyn Fn(&RequestLine<'_>) + Send + Sync>;

/// What every connection shares.
struct Shared {
    engine: Arc<dyn Engine>,
    /// The settings a reload may change; each connection keeps the ones it started with.
    settings: std::sync::RwLock<Arc<Settings>>,
    pins: PinTally,
    logins: logins::LoginGate,
    /// Connections open now, all listeners together.
    open: std::sync::atomic::AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    tap: Option<Tap>,
    /// Writes the request log line itself; `None`: through `tracing` as every other line.
    request_log: Option<RequestLog>,
    metrics: Arc<ops::Metrics>,
    /// The connections open now, for the staff console's live view.
    terminals: Arc<terminals::Terminals>,
}

/// The reloadable settings: limits, session rules, faults, and each listener's TLS acceptor.
struct Settings {
    limits: Limits,
    rules: SessionRules,
    service_limits: ServiceLimits,
    accept_lf: bool,
    faults: Faults,
    /// By listener, in the configuration's order: `Some` for TLS listeners.
    tls: Vec<Option<TlsAcceptor>>,
    /// The listener addresses as configured (a reload may not change them).
    addresses: Vec<SocketAddr>,
    /// The console's TLS, when it has any (its files read again on a reload).
    console_tls: Option<TlsAcceptor>,
    /// The patron pages' listener's TLS, likewise.
    patron_tls: Option<TlsAcceptor>,
    /// The load balancers in front of the console's and the patron pages' listeners.
    console_proxies: Vec<ipnet::IpNet>,
    patron_proxies: Vec<ipnet::IpNet>,
    /// By listener: the session rules (its strictness before login) and whether telnet login
    /// is on.
    listeners: Vec<(SessionRules, bool)>,
    /// By listener: the load balancers whose connections start with a PROXY header.
    proxies: Vec<Vec<ipnet::IpNet>>,
}

impl Settings {
    /// The session rules and telnet switch of listener `index`.
    fn listener(&self, index: usize) -> (SessionRules, bool) {
        self.listeners.get(index).cloned().unwrap_or_else(|| (self.rules.clone(), false))
    }
}

impl Settings {
    /// Reads and checks everything a configuration sets (TLS files included).
    fn of(config: &Config) -> Result<Settings, ServeError> {
        config.check()?;
        let mut tls = Vec::new();
        for l in &config.listen {
            tls.push(match &l.tls {
                Some(files) => {
                    Some(tls::acceptor(files).map_err(|source| ServeError::Tls { address: l.address, source })?)
                }
                None => None,
            });
        }
        let console_tls = match config.console.as_ref().and_then(|c| c.tls.as_ref().map(|t| (c.listen, t))) {
            Some((address, files)) => Some(tls::acceptor(files).map_err(|source| ServeError::Tls { address, source })?),
            None => None,
        };
        let patron_tls = match config.patron_pages.as_ref().and_then(|c| c.tls.as_ref().map(|t| (c.listen, t))) {
            Some((address, files)) => Some(tls::acceptor(files).map_err(|source| ServeError::Tls { address, source })?),
            None => None,
        };
        let proxies = |c: &Option<config::Console>| {
            c.as_ref()
                .map_or(Ok(Vec::new()), |c| proxy::networks(&c.proxy_from))
                .map_err(|e| ServeError::Config(ConfigError::Invalid(e)))
        };
        Ok(Settings {
            console_proxies: proxies(&config.console)?,
            patron_proxies: proxies(&config.patron_pages)?,
            console_tls,
            patron_tls,
            limits: config.limits.clone(),
            rules: config.session_rules(),
            service_limits: config.service_limits(),
            accept_lf: config.accept_lf,
            faults: config.faults.clone(),
            tls,
            addresses: config.listen.iter().map(|l| l.address).collect(),
            listeners: config
                .listen
                .iter()
                .map(|l| (SessionRules { strictness: l.strictness.get(), ..config.session_rules() }, l.telnet_login))
                .collect(),
            proxies: config
                .listen
                .iter()
                .map(|l| proxy::networks(&l.proxy_from))
                .collect::<Result<_, _>>()
                .map_err(|e| ServeError::Config(ConfigError::Invalid(e)))?,
        })
    }
}

impl Shared {
    fn settings(&self) -> Arc<Settings> {
        self.settings.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// A handle to a running server, for reloading its configuration.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    /// Checks a staff password (Argon2, on the login places kiosks share; see
    /// [`logins::LoginGate::check_staff`]).
    pub async fn check_staff_password(&self, password: &str, hash: &str, peer: std::net::IpAddr) -> bool {
        let settings = self.shared.settings();
        self.shared.logins.check_staff(password, hash, peer, &settings.limits).await
    }

    /// Records a refused staff login from `peer` and waits the pause a refused terminal login
    /// from there would wait (growing with the address's failures).
    pub async fn staff_login_refused(&self, peer: std::net::IpAddr) {
        let settings = self.shared.settings();
        let pause = self.shared.logins.refused(peer, 0, &settings.limits);
        tokio::time::sleep(pause).await;
    }

    /// The console's TLS as the configuration now has it (none: plain HTTP).
    pub fn console_tls(&self) -> Option<TlsAcceptor> {
        self.shared.settings().console_tls.clone()
    }

    /// The patron pages' listener's TLS as the configuration now has it (none: plain HTTP).
    pub fn patron_tls(&self) -> Option<TlsAcceptor> {
        self.shared.settings().patron_tls.clone()
    }

    /// Whether a connection from `peer` to the console's (or the patron pages') listener comes
    /// from a load balancer that starts it with a PROXY header.
    pub fn behind_proxy(&self, side: http::Side, peer: std::net::IpAddr) -> bool {
        let settings = self.shared.settings();
        let proxies = match side {
            http::Side::Console => &settings.console_proxies,
            http::Side::PatronPages => &settings.patron_proxies,
        };
        proxy::trusted(proxies, peer)
    }

    /// The connections open now and each one's last requests (no PIN, patron or item).
    pub fn terminals(&self) -> Vec<terminals::TerminalView> {
        self.shared.terminals.snapshot()
    }

    /// Applies a new configuration to new connections: limits, session rules, faults, TLS
    /// certificates and keys (read again from their files). Open connections keep the settings
    /// they started with. A configuration that cannot be used (a bad value, an unreadable TLS
    /// file, changed listener addresses, which need a restart) is refused and the old one
    /// stays in force.
    pub fn reload(&self, config: &Config) -> Result<(), ServeError> {
        let new = Settings::of(config)?;
        let old = self.shared.settings();
        if new.addresses != old.addresses
            || new.tls.iter().map(Option::is_some).ne(old.tls.iter().map(Option::is_some))
            || new.console_tls.is_some() != old.console_tls.is_some()
            || new.patron_tls.is_some() != old.patron_tls.is_some()
        {
            return Err(ServeError::Config(ConfigError::Invalid(
                "the listeners (addresses, plain or TLS) changed: that needs a restart".into(),
            )));
        }
        *self.shared.settings.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(new);
        info!("configuration reloaded");
        Ok(())
    }
}

/// Sees every frame a connection reads and what became of it (the conformance checker's
/// kiosk mode grades requests through it).
pub type Tap = Arc<dyn Fn(SocketAddr, &[u8], &crate::service::Outcome) + Send + Sync>;

/// What the fault injection does to one reply.
enum Fault {
    None,
    Corrupt,
    Answer96,
    Drop,
}

fn fault_for(faults: &Faults, n: u64) -> Fault {
    let hit = |every: u32| every > 0 && n % u64::from(every) == 0;
    if hit(faults.drop_mid_reply_every) {
        Fault::Drop
    } else if hit(faults.answer_96_every) {
        Fault::Answer96
    } else if hit(faults.corrupt_checksum_every) {
        Fault::Corrupt
    } else {
        Fault::None
    }
}

/// A reply with one checksum digit changed (or its last byte, when it has no checksum).
fn corrupt(reply: &[u8]) -> Vec<u8> {
    let mut out = reply.to_vec();
    let end = out.iter().rposition(|&b| b != b'\r' && b != b'\n').unwrap_or(0);
    if let Some(b) = out.get_mut(end) {
        *b = if *b == b'0' { b'1' } else { b'0' };
    }
    out
}

/// One bound listener.
struct Bound {
    listener: TcpListener,
    address: SocketAddr,
    /// Its place in the configuration (and in `Settings::tls`).
    index: usize,
    tls: bool,
}

/// A server with its listeners bound, ready to run.
pub struct Server {
    shared: Arc<Shared>,
    bound: Vec<Bound>,
    ops: Option<TcpListener>,
}

/// A place among the open connections, given back when the connection ends.
struct Permit {
    shared: Arc<Shared>,
}

impl Permit {
    fn take(shared: &Arc<Shared>, max: usize) -> Option<Permit> {
        use std::sync::atomic::Ordering::SeqCst;
        shared.open.fetch_update(SeqCst, SeqCst, |n| (n < max).then_some(n + 1)).ok()?;
        Some(Permit { shared: shared.clone() })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.shared.open.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A slot in the per-address connection count, given back when the connection ends.
struct AddressSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl AddressSlot {
    fn take(shared: &Arc<Shared>, ip: IpAddr, max: usize) -> Option<AddressSlot> {
        let mut map = shared.per_address.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressSlot { shared: shared.clone(), ip })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = self.shared.per_address.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

impl Server {
    /// Binds every listener of `config` (port 0 picks a free port; see [`Server::addresses`]).
    pub async fn bind(config: &Config, engine: Arc<dyn Engine>) -> Result<Server, ServeError> {
        let settings = Settings::of(config)?;
        let metrics = Arc::new(ops::Metrics::new());
        let m = metrics.clone();
        engine.observe(Box::new(move |took, units| m.sync(took, units)));
        let shared = Arc::new(Shared {
            metrics,
            engine,
            settings: std::sync::RwLock::new(Arc::new(settings)),
            pins: PinTally::new(),
            logins: logins::LoginGate::new(config.limits.login_hashes).map_err(ServeError::Random)?,
            open: std::sync::atomic::AtomicUsize::new(0),
            per_address: Mutex::new(HashMap::new()),
            terminals: Arc::new(terminals::Terminals::default()),
            tap: None,
            request_log: None,
        });
        let mut bound = Vec::new();
        for (index, l) in config.listen.iter().enumerate() {
            let listener =
                TcpListener::bind(l.address).await.map_err(|source| ServeError::Bind { address: l.address, source })?;
            let address = listener.local_addr().map_err(|source| ServeError::Bind { address: l.address, source })?;
            bound.push(Bound { listener, address, index, tls: l.tls.is_some() });
        }
        let ops = match config.ops_listen {
            Some(a) => Some(TcpListener::bind(a).await.map_err(|source| ServeError::Bind { address: a, source })?),
            None => None,
        };
        Ok(Server { shared, bound, ops })
    }

    /// Sends every frame and its outcome to `tap` as well (call before [`Server::run`]).
    pub fn with_tap(mut self, tap: Tap) -> Server {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.tap = Some(tap);
        }
        self
    }

    /// Writes each request's log line with `write` (when `tracing` has this module's info
    /// lines enabled) instead of through `tracing`'s layers: see [`RequestLine`].
    pub fn with_request_log(mut self, write: RequestLog) -> Server {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.request_log = Some(write);
        }
        self
    }

    /// A handle to reload the configuration while the server runs.
    pub fn handle(&self) -> Handle {
        Handle { shared: self.shared.clone() }
    }

    /// The engine the server answers from.
    pub fn engine(&self) -> Arc<dyn Engine> {
        self.shared.engine.clone()
    }

    /// Where `/metrics`, `/health` and `/ready` are served, if anywhere.
    pub fn ops_address(&self) -> Option<SocketAddr> {
        self.ops.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The bound addresses, in the order of the configuration, with whether each is TLS.
    pub fn addresses(&self) -> Vec<(SocketAddr, bool)> {
        self.bound.iter().map(|b| (b.address, b.tls)).collect()
    }

    /// Serves until `shutdown` is cancelled; then stops accepting, lets requests in flight
    /// finish within the grace period, and flushes the store.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ServeError> {
        let tracker = TaskTracker::new();
        let ops_stop = CancellationToken::new();
        if let Some(listener) = self.ops {
            let (metrics, shared, engine) =
                (self.shared.metrics.clone(), self.shared.clone(), self.shared.engine.clone());
            let state = Arc::new(ops::OpsState {
                metrics,
                refresh: Box::new(move || {
                    let (failures, lockouts) = shared.pins.totals();
                    shared.metrics.pins(failures, lockouts);
                    let l = shared.logins.stats();
                    shared.metrics.logins(l.hashed, l.remembered);
                    let stats = shared.engine.stats();
                    shared.metrics.checkpoints(stats.checkpoints, stats.checkpoint_failures);
                }),
                // An engine that takes no changes (reopening its log) is not ready for kiosks.
                healthy: Box::new(move || engine.healthy()),
            });
            if let Ok(a) = listener.local_addr() {
                info!(address = %a, "serving /metrics, /health and /ready");
            }
            let limits = self.shared.settings().limits.http();
            tokio::spawn(ops::serve(listener, state, limits, ops_stop.clone()));
        }
        for b in self.bound {
            info!(address = %b.address, tls = b.tls, "listening");
            tracker.spawn(accept_loop(b, self.shared.clone(), shutdown.clone(), tracker.clone()));
        }
        self.shared.metrics.ready.store(true, std::sync::atomic::Ordering::Relaxed);
        shutdown.cancelled().await;
        self.shared.metrics.ready.store(false, std::sync::atomic::Ordering::Relaxed);
        info!("shutting down: no new connections; finishing requests in flight");
        tracker.close();
        let grace = self.shared.settings().limits.shutdown_grace;
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            warn!(?grace, "grace period over; closing the remaining connections");
        }
        ops_stop.cancel();
        // Every acknowledged change was durable before it was acknowledged.
        info!("stopped; the store is flushed");
        Ok(())
    }
}

async fn accept_loop(b: Bound, shared: Arc<Shared>, shutdown: CancellationToken, tracker: TaskTracker) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = b.listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off rather than spin.
                warn!(address = %b.address, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let settings = shared.settings();
        let Some(permit) = Permit::take(&shared, settings.limits.max_connections) else {
            warn!(%peer, limit = settings.limits.max_connections, "connection refused: server at its connection limit");
            continue;
        };
        if settings.proxies.get(b.index).is_some_and(|p| proxy::trusted(p, peer.ip())) {
            // The kiosk's address comes first, from the load balancer; its slot is taken then.
            let (shared, shutdown) = (shared.clone(), shutdown.child_token());
            let index = b.index;
            tracker.spawn(async move {
                proxied(stream, peer, index, shared, settings, shutdown, permit).await;
            });
            continue;
        }
        let Some(slot) = AddressSlot::take(&shared, peer.ip(), settings.limits.max_connections_per_address) else {
            warn!(%peer, limit = settings.limits.max_connections_per_address, "connection refused: too many from this address");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let _ = socket2::SockRef::from(&stream).set_keepalive(true);
        let tls = settings.tls.get(b.index).cloned().flatten();
        // A child token per connection: waiting on it takes the connection's own lock, not
        // one every connection's wait takes (the shared token's waiter list).
        let (shared, shutdown) = (shared.clone(), shutdown.child_token());
        let index = b.index;
        tracker.spawn(async move {
            connection(stream, peer, index, tls, shared, settings, shutdown, permit, slot).await;
        });
    }
}

/// A connection from a trusted load balancer: its PROXY header names the kiosk (within the
/// login timeout), whose address then counts toward the per-address limit, and the
/// connection goes on as the kiosk's. A LOCAL header (the balancer's own check) keeps the
/// balancer's address. Without a readable header the connection is closed.
async fn proxied(
    mut stream: TcpStream,
    proxy_peer: SocketAddr,
    listener: usize,
    shared: Arc<Shared>,
    settings: Arc<Settings>,
    shutdown: CancellationToken,
    permit: Permit,
) {
    let header = tokio::time::timeout(settings.limits.login_timeout, proxy::read_header(&mut stream));
    let peer = match tokio::select! { _ = shutdown.cancelled() => return, r = header => r } {
        Ok(Ok(Some(kiosk))) => kiosk,
        Ok(Ok(None)) => proxy_peer,
        Ok(Err(why)) => {
            warn!(proxy = %proxy_peer, %why, "closing a connection from a load balancer without a usable PROXY header");
            return;
        }
        Err(_) => {
            warn!(proxy = %proxy_peer, "closing a connection from a load balancer that sent no PROXY header in time");
            return;
        }
    };
    let limit = settings.limits.max_connections_per_address;
    let Some(slot) = AddressSlot::take(&shared, peer.ip(), limit) else {
        warn!(%peer, proxy = %proxy_peer, limit, "connection refused: too many from this address");
        return;
    };
    let _ = stream.set_nodelay(true);
    let _ = socket2::SockRef::from(&stream).set_keepalive(true);
    let tls = settings.tls.get(listener).cloned().flatten();
    connection(stream, peer, listener, tls, shared, settings, shutdown, permit, slot).await;
}

#[allow(clippy::too_many_arguments)] // one connection's whole context, passed once
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    listener: usize,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    settings: Arc<Settings>,
    shutdown: CancellationToken,
    _permit: Permit,
    _slot: AddressSlot,
) {
    debug!(%peer, "connected");
    shared.metrics.connection_opened();
    let started = tokio::time::Instant::now();
    match tls {
        None => serve(stream, peer, listener, &shared, &settings, &shutdown, started).await,
        Some(acceptor) => {
            let handshake = tokio::time::timeout(settings.limits.tls_handshake_timeout, acceptor.accept(stream));
            match tokio::select! { _ = shutdown.cancelled() => return, r = handshake => r } {
                Ok(Ok(s)) => serve(s, peer, listener, &shared, &settings, &shutdown, started).await,
                Ok(Err(e)) => info!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => info!(%peer, "TLS handshake timed out"),
            }
        }
    }
    shared.metrics.connection_closed();
    debug!(%peer, "disconnected");
}

/// Reads frames and answers them in order until the peer leaves, a limit closes the
/// connection, or the server shuts down (after the request in flight is answered).
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    peer: SocketAddr,
    listener: usize,
    shared: &Arc<Shared>,
    settings: &Arc<Settings>,
    shutdown: &CancellationToken,
    started: tokio::time::Instant,
) {
    let limits = &settings.limits;
    let mut decoder = FrameDecoder::new(limits.max_message_bytes).accept_lf(settings.accept_lf);
    let mut buf = BytesMut::with_capacity(1024);
    let (rules, telnet) = settings.listener(listener);
    let mut session = Some(Session::new(rules).from_address(peer.ip()));
    let peer_text = peer.to_string();
    let seen = shared.terminals.open(peer, listener);
    let mut replies: u64 = 0;
    // Until the first bytes have shown they could be SIP.
    let mut seen_sip = false;
    let mut meter = ops::RequestMeter::default();
    let stop = shutdown.cancelled();
    tokio::pin!(stop);
    let idle = tokio::time::sleep_until(started + limits.login_timeout);
    tokio::pin!(idle);
    if telnet {
        let Some(s) = session.as_mut() else { return };
        if !telnet_login(&mut io, peer, &mut buf, s, shared, settings, shutdown, started).await {
            let _ = tokio::time::timeout(limits.write_timeout, io.shutdown()).await;
            return;
        }
        seen_sip = true;
    }
    loop {
        while let Some(event) = decoder.decode(&mut buf) {
            let frame = match event {
                FrameEvent::Frame(f) => f,
                FrameEvent::Oversize => {
                    warn!(%peer, limit = limits.max_message_bytes, "frame over the size limit; closing");
                    return;
                }
            };
            let Some(mut s) = session.take() else { return };
            let clock = Instant::now();
            let tapped = shared.tap.as_ref().map(|_| frame.clone());
            // A read is answered from the engine's view at once; a change waits, without a
            // thread, for the writer's durable commit; a login's Argon2 hash, when one is
            // needed, runs on the blocking pool behind the login gate.
            let checker = logins::PeerLogins::new(&shared.logins, peer.ip(), limits);
            let svc = service(shared, settings, &checker);
            let now = Timestamp::now();
            let outcome = s.on_frame(&svc, &frame, now).await;
            session = Some(s);
            // Borrowed for the log lines and the live view below: nothing per request is copied
            // or formatted twice for them (the peer's text is made once per connection).
            let logged_in = session.as_ref().and_then(Session::terminal).map(|t| t.account.login.as_str());
            let account = logged_in.unwrap_or("-");
            if let (Some(tap), Some(f)) = (&shared.tap, &tapped) {
                tap(peer, f, &outcome);
            }
            if let Some(e) = &outcome.failure {
                // Refused, not acknowledged; the kiosk retries on a new connection.
                error!(%peer, account, error = %e, "store failure; closing");
                seen.failed(&e.to_string());
            }
            let elapsed = clock.elapsed();
            shared.metrics.request_on(&mut meter, outcome.code, outcome.verdict.as_str(), elapsed);
            if !outcome.deviations.is_empty() {
                shared.metrics.deviations(&outcome.deviations);
                if outcome.verdict == Verdict::Deviant {
                    info!(%peer, deviations = %outcome.deviations, "refused under strictness = strict (answered 96)");
                } else {
                    debug!(%peer, deviations = %outcome.deviations, "read leniently");
                }
            }
            let code = outcome.code.as_ref().and_then(|c| std::str::from_utf8(c).ok()).unwrap_or("--");
            seen.seen(now, logged_in, outcome.code, outcome.verdict.as_str(), elapsed.as_micros() as u64);
            let line = RequestLine {
                peer: &peer_text,
                account,
                code,
                outcome: outcome.verdict.as_str(),
                latency_us: elapsed.as_micros() as u64,
            };
            match &shared.request_log {
                Some(write) => {
                    if tracing::enabled!(tracing::Level::INFO) {
                        write(&line)
                    }
                }
                None => line.trace(),
            }
            if outcome.verdict == Verdict::LoginRefused {
                pause_after_refusal(shared, peer, &checker, limits).await;
            }
            if let Some(reply) = &outcome.reply {
                let faults = &settings.faults;
                let mut bytes = std::borrow::Cow::Borrowed(&reply[..]);
                if !faults.is_off() {
                    replies += 1;
                    if !faults.delay.is_zero() {
                        tokio::time::sleep(faults.delay).await;
                    }
                    match fault_for(faults, replies) {
                        Fault::None => {}
                        Fault::Corrupt => bytes = std::borrow::Cow::Owned(corrupt(reply)),
                        Fault::Answer96 => {
                            let sealed = reply.windows(2).any(|w| w == b"AZ");
                            bytes = std::borrow::Cow::Borrowed(if sealed { b"96AZFEF6\r" } else { b"96\r" });
                        }
                        Fault::Drop => {
                            let half = reply.get(..reply.len() / 2).unwrap_or_default();
                            let _ = tokio::time::timeout(limits.write_timeout, io.write_all(half)).await;
                            info!(%peer, "fault injection: dropped the connection mid-reply");
                            return;
                        }
                    }
                }
                match tokio::time::timeout(limits.write_timeout, io.write_all(&bytes)).await {
                    Ok(Ok(())) => shared.metrics.wrote(bytes.len()),
                    Ok(Err(e)) => {
                        debug!(%peer, error = %e, "write failed");
                        return;
                    }
                    Err(_) => {
                        info!(%peer, "write timed out; closing");
                        return;
                    }
                }
            }
            if outcome.close {
                info!(%peer, reason = outcome.verdict.as_str(), "closing the connection");
                let _ = tokio::time::timeout(limits.write_timeout, io.shutdown()).await;
                return;
            }
        }
        if shutdown.is_cancelled() {
            return;
        }
        let logged_in = session.as_ref().is_some_and(|s| s.terminal().is_some());
        let due =
            if logged_in { tokio::time::Instant::now() + limits.idle_timeout } else { started + limits.login_timeout };
        // One timer for the connection, moved only when it fires before the deadline now due
        // (or the deadline came nearer): a timer per read cost a timer-wheel insertion and
        // removal for every request.
        if due < idle.deadline() {
            idle.as_mut().reset(due);
        }
        let r = loop {
            tokio::select! {
                biased;
                r = io.read_buf(&mut buf) => break Some(r),
                _ = &mut stop => return,
                () = &mut idle => {
                    if tokio::time::Instant::now() >= due {
                        break None;
                    }
                    idle.as_mut().reset(due);
                }
            }
        };
        match r {
            None => {
                info!(%peer, reason = if logged_in { "idle" } else { "no login" }, "timed out; closing");
                let _ = tokio::time::timeout(limits.write_timeout, io.shutdown()).await;
                return;
            }
            // End of input: a frame without its terminator is dropped.
            Some(Ok(0)) => return,
            Some(Ok(n)) => {
                shared.metrics.read(n);
                if !seen_sip {
                    if let Some(what) = not_sip(&buf) {
                        info!(%peer, what, "not SIP; closing");
                        return;
                    }
                    // Judged once the longest marker could have arrived (or a frame has).
                    seen_sip = buf.len() >= 10 || buf.contains(&b'\r');
                }
            }
            Some(Err(e)) => {
                debug!(%peer, error = %e, "read failed");
                return;
            }
        }
    }
}

/// The service a request from one peer is answered by: passwords go through the login gate
/// for that peer.
fn service<'a>(shared: &'a Shared, settings: &'a Settings, checker: &'a logins::PeerLogins<'a>) -> Service<'a> {
    Service::with_limits(shared.engine.as_ref(), &settings.service_limits, &shared.pins).with_passwords(checker)
}

/// After a refused login, the pause the login gate asks of this peer and account (it doubles
/// past `login_backoff_after` refusals).
async fn pause_after_refusal(shared: &Shared, peer: SocketAddr, checker: &logins::PeerLogins<'_>, limits: &Limits) {
    let pause = shared.logins.refused(peer.ip(), checker.account_strikes(), limits);
    if !pause.is_zero() {
        tokio::time::sleep(pause).await;
    }
}

/// The telnet login dialogue (`telnet.rs`): prompts, then the credentials go through the
/// session as a 93 would, with the same login gate, refusal count and pause. True once the
/// terminal is logged in; false when the connection should close.
#[allow(clippy::too_many_arguments)] // one connection's whole context, passed once
async fn telnet_login<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    peer: SocketAddr,
    buf: &mut BytesMut,
    session: &mut Session,
    shared: &Arc<Shared>,
    settings: &Arc<Settings>,
    shutdown: &CancellationToken,
    started: tokio::time::Instant,
) -> bool {
    let limits = &settings.limits;
    let deadline = started + limits.login_timeout;
    loop {
        let mut answers = Vec::with_capacity(2);
        for prompt in [telnet::LOGIN_PROMPT, telnet::PASSWORD_PROMPT] {
            if !matches!(tokio::time::timeout(limits.write_timeout, io.write_all(prompt)).await, Ok(Ok(()))) {
                return false;
            }
            loop {
                if let Some(line) = telnet::take_line(buf) {
                    answers.push(line);
                    break;
                }
                if buf.len() > telnet::MAX_LINE {
                    info!(%peer, "telnet login: line too long; closing");
                    return false;
                }
                let read = tokio::time::timeout_at(deadline, io.read_buf(buf));
                match tokio::select! { _ = shutdown.cancelled() => return false, r = read => r } {
                    Ok(Ok(n)) if n > 0 => shared.metrics.read(n),
                    Err(_) => {
                        info!(%peer, reason = "no login", "timed out; closing");
                        return false;
                    }
                    _ => return false,
                }
            }
        }
        let (login, password) = (answers.first().map(Vec::as_slice), answers.get(1).map(Vec::as_slice));
        let (verdict, close) = match (login.and_then(telnet::usable), password.and_then(telnet::usable)) {
            (Some(user), Some(pw)) => {
                let clock = Instant::now();
                let frame = format!("9300CN{user}|CO{pw}|");
                let checker = logins::PeerLogins::new(&shared.logins, peer.ip(), limits);
                let svc = service(shared, settings, &checker);
                let outcome = session.on_frame(&svc, frame.as_bytes(), Timestamp::now()).await;
                shared.metrics.request(outcome.code, outcome.verdict.as_str(), clock.elapsed());
                info!(%peer, account = user, outcome = outcome.verdict.as_str(), "telnet login");
                if outcome.verdict == Verdict::LoginRefused {
                    pause_after_refusal(shared, peer, &checker, limits).await;
                }
                (outcome.verdict, outcome.close)
            }
            _ => {
                info!(%peer, "telnet login: not a usable login or password");
                (Verdict::LoginRefused, false)
            }
        };
        if verdict == Verdict::Ok {
            return matches!(
                tokio::time::timeout(limits.write_timeout, io.write_all(telnet::ACCEPTED)).await,
                Ok(Ok(()))
            );
        }
        let sent = tokio::time::timeout(limits.write_timeout, io.write_all(telnet::REFUSED)).await;
        if !matches!(sent, Ok(Ok(()))) || close {
            return false;
        }
    }
}

/// What a connection's first bytes are when they are plainly not SIP (a SIP frame starts
/// with a two-digit code): a TLS handshake on a plain port, an HTTP request, telnet
/// negotiation. Such a connection is closed at once rather than left to a timeout.
fn not_sip(first: &[u8]) -> Option<&'static str> {
    const HTTP: [&[u8]; 8] =
        [b"GET ", b"POST ", b"HEAD ", b"PUT ", b"OPTIONS ", b"CONNECT ", b"DELETE ", b"PRI * HTTP"];
    match first {
        [0x16, 0x03, ..] => Some("a TLS handshake (this listener is plain TCP)"),
        [0xFF, ..] => Some("telnet negotiation"),
        _ if HTTP.iter().any(|m| first.starts_with(m)) => Some("an HTTP request"),
        _ => None,
    }
}
