//! The server's configuration: listeners, TLS files and every limit, read from TOML.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::proto::Strictness;
use crate::service::{ServiceLimits, SessionRules};

/// Everything `sip2d serve` is told, with documented defaults. A file names only what it
/// changes; unknown keys are refused so that a typo is not silently ignored.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The data directory (store and PIN key). Default: `--data`, or the per-user data directory.
    pub data: Option<PathBuf>,
    /// Where to listen. Default: one plain listener on 127.0.0.1:6001 (loopback only).
    pub listen: Vec<Listener>,
    /// Whether a 99 SC Status before login is answered (default false: refused like any other
    /// message before login).
    pub sc_status_before_login: bool,
    /// Whether a bare LF ends a frame as CR does (default true; some kiosks send LF alone).
    pub accept_lf: bool,
    /// Bytes of the store's page cache, in MiB (default 64: the engine keeps the register it
    /// reads in memory; the cache serves the writer and the audit history).
    pub cache_mib: u64,
    /// Where to serve `/metrics`, `/health` and `/ready` over HTTP (default: not served). Keep
    /// it on loopback or a management network: it has no authentication.
    pub ops_listen: Option<SocketAddr>,
    /// Where to serve the admin API over TCP as well as on `DATA/admin.sock` (default: not
    /// served). Every request needs the bearer token in `DATA/admin.token`.
    pub admin_listen: Option<SocketAddr>,
    /// The staff console, with the resource API, on an HTTP listener of its own (default: not
    /// served; `serve --demo` serves it on 127.0.0.1:9104).
    pub console: Option<Console>,
    /// The patron pages (set a PIN, forgot PIN, my pages) on a listener of their own, apart
    /// from the staff console, to face the public (default: not on their own; the console's
    /// listener serves them). Keys as for `[console]`.
    pub patron_pages: Option<Console>,
    pub limits: Limits,
    pub log: Log,
    pub store: Store,
    /// Caps on what requests can add to one patron's record.
    pub register: crate::engine::RegisterLimits,
    /// Deliberate faults for testing kiosks' retry logic; all off by default.
    pub faults: Faults,
    /// The SMTP relay that delivers patron notifications; without it they wait in the outbox.
    pub mail: Option<Mail>,
}

/// Delivery of patron notifications.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Mail {
    /// The relay, `HOST:PORT` (plain SMTP).
    pub relay: String,
    /// The sender address.
    pub from: String,
    /// How often the outbox is looked at (default 30s).
    #[serde(default = "Mail::default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Where patrons reach the self-service pages, for the links in welcomes (default: the
    /// staff console's listener, which serves them).
    #[serde(default)]
    pub self_service_url: Option<String>,
}

impl Mail {
    fn default_interval() -> Duration {
        Duration::from_secs(30)
    }
}

/// Faults injected into replies, so kiosk makers can test their retry logic. Counts are per
/// connection: "every 5th reply". 0 (the default) turns a fault off.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Corrupt the checksum of every Nth reply (the kiosk should send 97).
    pub corrupt_checksum_every: u32,
    /// Answer every Nth request with 96 instead of its reply (the request has run; the
    /// kiosk's resend is answered from the stored reply and not run twice).
    pub answer_96_every: u32,
    /// Send only half of every Nth reply, then close the connection.
    pub drop_mid_reply_every: u32,
    /// Wait this long before every reply.
    #[serde(with = "humantime_serde")]
    pub delay: Duration,
}

impl Faults {
    pub fn is_off(&self) -> bool {
        *self == Faults::default()
    }

    /// Reads `NAME=VALUE` (`corrupt-checksum=5`, `answer-96=7`, `drop=11`, `delay=200ms`).
    pub fn set(&mut self, spec: &str) -> Result<(), String> {
        let (name, value) = spec.split_once('=').ok_or_else(|| format!("--fault {spec}: NAME=VALUE"))?;
        let every = || value.parse::<u32>().map_err(|_| format!("--fault {spec}: a count, e.g. {name}=5"));
        match name {
            "corrupt-checksum" => self.corrupt_checksum_every = every()?,
            "answer-96" => self.answer_96_every = every()?,
            "drop" => self.drop_mid_reply_every = every()?,
            "delay" => {
                self.delay =
                    humantime_serde::re::humantime::parse_duration(value).map_err(|e| format!("--fault {spec}: {e}"))?
            }
            _ => return Err(format!("--fault {name}: one of corrupt-checksum, answer-96, drop, delay")),
        }
        Ok(())
    }
}

/// Where the staff console listens (`[console]`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Console {
    pub listen: SocketAddr,
    /// HTTPS only, with these files (read again on a reload, as the SIP listeners' are).
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Plain HTTP on an address other than loopback (default false: refused, since staff
    /// passwords and session cookies would cross the network in clear).
    #[serde(default)]
    pub allow_plain_http: bool,
    /// Load balancers whose connections start with a PROXY header naming the client, as for
    /// a SIP listener's `proxy_from` (the client's address is the one the per-address limits
    /// use). Default: none.
    #[serde(default)]
    pub proxy_from: Vec<String>,
}

/// One listening address, plain TCP or TLS-only.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub address: SocketAddr,
    /// When present the listener speaks TLS only.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// How frames before login (93, 99) are read (default lenient); after login the
    /// terminal's profile decides. docs/protocol.md lists what `strict` refuses.
    #[serde(default)]
    pub strictness: ListenerStrictness,
    /// Whether a connection may log in the way older kiosks do over telnet (`login:` and
    /// `password:` prompts, then SIP on the same connection). Default off: the prompts go out
    /// before any credentials, in clear unless the listener is TLS.
    #[serde(default)]
    pub telnet_login: bool,
    /// Load balancers whose connections start with a PROXY protocol header (v1 or v2) naming
    /// the kiosk's address: addresses or networks ("10.0.0.5", "10.0.0.0/24"). From these the
    /// header is required, and the kiosk's address is the one every per-address limit and log
    /// line uses; from anyone else it is never read. Default: none.
    #[serde(default)]
    pub proxy_from: Vec<String>,
}

impl Listener {
    /// A plain TCP listener with the defaults.
    pub fn plain(address: SocketAddr) -> Listener {
        Listener {
            address,
            tls: None,
            strictness: ListenerStrictness::Lenient,
            telnet_login: false,
            proxy_from: Vec::new(),
        }
    }

    /// A TLS-only listener with the defaults.
    pub fn tls(address: SocketAddr, files: TlsFiles) -> Listener {
        Listener { tls: Some(files), ..Listener::plain(address) }
    }
}

/// A listener's `strictness`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ListenerStrictness {
    /// Tolerate the recognised deviations (the default).
    #[default]
    Lenient,
    /// Answer 96 to a frame that needs one.
    Strict,
}

impl ListenerStrictness {
    /// The protocol layer's setting.
    pub fn get(self) -> Strictness {
        match self {
            ListenerStrictness::Lenient => Strictness::Lenient,
            ListenerStrictness::Strict => Strictness::Strict,
        }
    }
}

/// A TLS listener's PEM files.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// When set, clients must present a certificate issued by one of these CAs (mutual TLS).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// Every limit the server applies, in one place. Durations are written like "30s" or "10m".
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Longest frame accepted, terminator excluded (default 8192 bytes). A longer one closes
    /// the connection without a reply.
    pub max_message_bytes: usize,
    /// Connections open at once, all listeners together (default 512). Further ones are
    /// closed at once.
    pub max_connections: usize,
    /// Connections open at once from one client address (default 64).
    pub max_connections_per_address: usize,
    /// Time from connecting to a successful login (default 30s).
    #[serde(with = "humantime_serde")]
    pub login_timeout: Duration,
    /// Time a logged-in connection may stay silent (default 10m; kiosks stay connected all day).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Time to deliver one reply to a client that is not reading (default 10s).
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Time for a TLS handshake (default 10s).
    #[serde(with = "humantime_serde")]
    pub tls_handshake_timeout: Duration,
    /// On SIGINT/SIGTERM, how long requests in flight may take to finish (default 10s).
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Unreadable or unknown frames in a row before the connection is closed (default 5).
    pub max_unreadable_frames: u32,
    /// Refused logins on one connection before it is closed (default 3).
    pub max_login_attempts: u32,
    /// Pause before answering a refused login, to slow guessing (default 1s). It doubles for
    /// each failure beyond `login_backoff_after` of the same address or account within
    /// `login_backoff_window`, up to `login_backoff_max`.
    #[serde(with = "humantime_serde")]
    pub login_failure_delay: Duration,
    /// Refused logins of an address or account before its pauses grow (default 5).
    pub login_backoff_after: u32,
    /// The longest pause before a refused login's answer (default 30s).
    #[serde(with = "humantime_serde")]
    pub login_backoff_max: Duration,
    /// How long an address's or account's failures are remembered after its last one
    /// (default 10m).
    #[serde(with = "humantime_serde")]
    pub login_backoff_window: Duration,
    /// Argon2 password hashes run at once (default: the machine's CPU cores; at least 1).
    /// An account's first login since start runs one (about 19 MiB and some tens of
    /// milliseconds); later logins compare a keyed digest instead. Read at start only.
    pub login_hashes: usize,
    /// Connections open at once on each HTTP listener: the admin socket, `admin_listen` and
    /// `ops_listen` (default 64). Further ones are closed at once, so a flood on them holds a
    /// bounded number of descriptors and the SIP listeners keep theirs.
    pub max_http_connections: usize,
    /// The longest HTTP request head, request line and headers, in bytes (default 16384); a
    /// longer one gets 431 and a close.
    pub max_http_header_bytes: usize,
    /// Time an HTTP connection may take to send a request's head, from connecting or from its
    /// last reply (default 30s); then it is closed.
    #[serde(with = "humantime_serde")]
    pub http_idle_timeout: Duration,
    /// A staff member's console session ends after this long without a request (default
    /// 30m).
    #[serde(with = "humantime_serde")]
    pub staff_session_idle: Duration,
    /// ... and after this long in any case (default 12h).
    #[serde(with = "humantime_serde")]
    pub staff_session_max_age: Duration,
    /// Staff sessions open at once (default 10000); a new one beyond ends the oldest.
    pub max_staff_sessions: usize,
    /// A patron's session on their own pages ends after this long without a request
    /// (default 15m).
    #[serde(with = "humantime_serde")]
    pub patron_session_idle: Duration,
    /// ... and after this long in any case (default 2h).
    #[serde(with = "humantime_serde")]
    pub patron_session_max_age: Duration,
    /// Patron sessions open at once (default 10000); a new one beyond ends the oldest.
    pub max_patron_sessions: usize,
    /// Logins and forgot-PIN requests on the patron pages from one client address per
    /// `patron_pages_window` (default 30); more are answered 429 until the window has passed.
    pub patron_pages_attempts: u32,
    /// The window of `patron_pages_attempts` (default 15m).
    #[serde(with = "humantime_serde")]
    pub patron_pages_window: Duration,
    /// Latest no-block due date accepted, in days after the checkout (default 90).
    pub no_block_max_days: u32,
    /// Wrong PINs one terminal may send per `pin_window` before its PIN checks are refused
    /// untried (default 20).
    pub pin_failures_per_window: u32,
    /// The window of `pin_failures_per_window` (default 10m).
    #[serde(with = "humantime_serde")]
    pub pin_window: Duration,
}

impl Limits {
    /// The limits of the HTTP listeners.
    pub fn http(&self) -> super::http::HttpLimits {
        super::http::HttpLimits {
            max_connections: self.max_http_connections,
            max_header_bytes: self.max_http_header_bytes,
            idle_timeout: self.http_idle_timeout,
            max_body_bytes: crate::engine::RegisterLimits::default().request_body_bytes(),
        }
    }
}

/// The register's storage: the embedded engine's write-ahead log and sled's checkpoints
/// (docs/engine.md), or the PostgreSQL database several nodes share (docs/deploy.md).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Store {
    /// `sled` (default: the register in the data directory, one node) or `postgres` (the
    /// register in the database `url` names, shared by every node given the same `url`).
    pub engine: EngineKind,
    /// The PostgreSQL database: a URL (`postgresql://sip2d@db1/sip2d`) or key=value string
    /// (`host=db1 user=sip2d dbname=sip2d`). Needed with `engine = "postgres"`. It is never
    /// logged whole; a password in it makes this file a secret, to be readable by sip2d alone.
    pub url: Option<DbUrl>,
    /// This node's name in the database's commits and in the log (default: host name:pid).
    pub node: Option<String>,
    /// Commits the database keeps for nodes to catch up from (default 100000); a node further
    /// behind reloads the register.
    pub commits_kept: u64,
    /// How long connecting to the database may take (default 5s).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long one statement may take, waiting for the register's lock included (default
    /// 10s); the units of a transaction past it are answered "could not complete".
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// How often an idle node looks for other nodes' commits when none was announced
    /// (default 1s).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// The CA certificates (PEM) the database's certificate must chain to, for the host name in
    /// `url`. Given, every connection to the database is TLS, and one that is not is refused
    /// (default: none, plain TCP: a database on this host or a private network).
    pub ca_file: Option<PathBuf>,
    /// A log segment is closed and a new one begun at this size, in MiB (default 64).
    pub log_segment_mib: u64,
    /// sled is brought up to date with the log when this much log awaits it, in MiB (default
    /// 64), or `checkpoint_interval` after the last time (default 30s). Start-up reads back at
    /// most about this much log.
    pub checkpoint_mib: u64,
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// After a failed log sync, or a failed checkpoint, how long before the log (or sled) is
    /// reopened and tried again (default 5s). Until the log is reopened no change is taken.
    #[serde(with = "humantime_serde")]
    pub retry_interval: Duration,
    /// The niceness of the thread that brings sled up to date (0-19, default 10): on a busy
    /// machine the threads answering kiosks get the cores first. 0 runs it as they run.
    /// `sip2d serve` only: a command that opens the register itself (an import) has no kiosks
    /// to give way to and checkpoints at its own priority (start it under `nice` to lower it).
    pub checkpoint_nice: u8,
}

/// Which engine keeps the register.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    #[default]
    Sled,
    Postgres,
}

/// A database connection string, never shown whole (it may hold a password).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct DbUrl(pub String);

impl std::fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::engine::pg::PgSettings::new(self.0.clone()).shown())
    }
}

impl Default for Store {
    fn default() -> Store {
        Store {
            engine: EngineKind::Sled,
            url: None,
            node: None,
            commits_kept: 100_000,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            ca_file: None,
            log_segment_mib: 64,
            checkpoint_mib: 64,
            checkpoint_interval: Duration::from_secs(30),
            retry_interval: Duration::from_secs(5),
            checkpoint_nice: 10,
        }
    }
}

/// How the server logs.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// `text` (default) or `json`: one object per line.
    pub format: LogFormat,
    /// A tracing filter such as `info` (default) or `sip2d=debug`; `RUST_LOG` overrides it.
    pub level: String,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<LogFormat, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("'{s}' is not a log format: text or json")),
        }
    }
}

/// The SIP2 port kiosks are usually set to.
pub const DEFAULT_PORT: u16 = 6001;

impl Default for Config {
    fn default() -> Config {
        Config {
            data: None,
            listen: vec![Listener::plain(SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)))],
            sc_status_before_login: false,
            accept_lf: true,
            cache_mib: 64,
            ops_listen: None,
            admin_listen: None,
            console: None,
            patron_pages: None,
            limits: Limits::default(),
            log: Log::default(),
            store: Store::default(),
            register: Default::default(),
            faults: Faults::default(),
            mail: None,
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message_bytes: crate::proto::DEFAULT_MAX_FRAME,
            max_connections: 512,
            max_connections_per_address: 64,
            login_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            write_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            max_unreadable_frames: 5,
            max_login_attempts: 3,
            login_failure_delay: Duration::from_secs(1),
            login_backoff_after: 5,
            login_backoff_max: Duration::from_secs(30),
            login_backoff_window: Duration::from_secs(600),
            login_hashes: std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            max_http_connections: 64,
            max_http_header_bytes: 16 * 1024,
            http_idle_timeout: Duration::from_secs(30),
            staff_session_idle: Duration::from_secs(30 * 60),
            staff_session_max_age: Duration::from_secs(12 * 3600),
            max_staff_sessions: 10_000,
            patron_session_idle: Duration::from_secs(15 * 60),
            patron_session_max_age: Duration::from_secs(2 * 3600),
            max_patron_sessions: 10_000,
            patron_pages_attempts: 30,
            patron_pages_window: Duration::from_secs(15 * 60),
            no_block_max_days: ServiceLimits::DEFAULT.no_block_max_days,
            pin_failures_per_window: crate::engine::RegisterLimits::default().pin_failures_per_window,
            pin_window: Duration::from_secs(u64::from(crate::engine::RegisterLimits::default().pin_window_secs)),
        }
    }
}

impl Default for Log {
    fn default() -> Log {
        Log { format: LogFormat::Text, level: "info".into() }
    }
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// Said on one line: where in the file, and what is wrong there.
    #[error("the configuration {path}, line {line}, column {column}: {message}")]
    Parse { path: PathBuf, line: usize, column: usize, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Reads a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let config: Config = toml::from_str(&text).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start).min(text.len());
            let before = text.get(..at).unwrap_or_default();
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            ConfigError::Parse { path: path.to_path_buf(), line, column, message: e.message().trim().to_string() }
        })?;
        config.check().map_err(|e| match e {
            ConfigError::Invalid(what) => ConfigError::Invalid(format!("the configuration {}: {what}", path.display())),
            e => e,
        })?;
        Ok(config)
    }

    /// Refuses settings the server cannot run with.
    pub fn check(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let bad = |what: &str| Err(ConfigError::Invalid(what.to_string()));
        if self.listen.is_empty() {
            return bad("no listener: give at least one [[listen]] address or --listen");
        }
        if l.max_message_bytes < 64 {
            return bad("limits.max_message_bytes must be at least 64");
        }
        if l.max_connections == 0 || l.max_connections_per_address == 0 {
            return bad("limits.max_connections and max_connections_per_address must be at least 1");
        }
        if l.max_unreadable_frames == 0 || l.max_login_attempts == 0 {
            return bad("limits.max_unreadable_frames and max_login_attempts must be at least 1");
        }
        if l.pin_window.is_zero() || l.pin_window.as_secs() > u64::from(u32::MAX) {
            return bad("limits.pin_window must be between 1s and about 136 years");
        }
        if let Some(c) = &self.console {
            if c.tls.is_none() && !c.listen.ip().is_loopback() && !c.allow_plain_http {
                return Err(ConfigError::Invalid(format!(
                    "console.listen {} is not loopback: give the console tls = {{ cert, key }}, or allow_plain_http = true to send staff passwords in clear",
                    c.listen
                )));
            }
        }
        for l in &self.listen {
            super::proxy::networks(&l.proxy_from)
                .map_err(|e| ConfigError::Invalid(format!("listen {}: {e}", l.address)))?;
        }
        for (name, c) in [("console", &self.console), ("patron_pages", &self.patron_pages)] {
            if let Some(c) = c {
                super::proxy::networks(&c.proxy_from).map_err(|e| ConfigError::Invalid(format!("{name}: {e}")))?;
            }
        }
        if let Some(c) = &self.patron_pages {
            if c.tls.is_none() && !c.listen.ip().is_loopback() && !c.allow_plain_http {
                return Err(ConfigError::Invalid(format!(
                    "patron_pages.listen {} is not loopback: give it tls = {{ cert, key }}, or allow_plain_http = true to send patrons' PINs in clear",
                    c.listen
                )));
            }
            if c.listen.port() != 0 && self.console.as_ref().is_some_and(|console| console.listen == c.listen) {
                return bad(
                    "patron_pages.listen is the console's address: give it one of its own, or leave [patron_pages] out",
                );
            }
        }
        let s = &self.store;
        if s.log_segment_mib == 0 || s.checkpoint_mib == 0 {
            return bad("store.log_segment_mib and checkpoint_mib must be at least 1");
        }
        if s.checkpoint_interval.is_zero() || s.retry_interval.is_zero() {
            return bad("store.checkpoint_interval and retry_interval must be more than 0s");
        }
        if s.checkpoint_nice > 19 {
            return bad("store.checkpoint_nice is a niceness from 0 to 19");
        }
        if s.engine == EngineKind::Postgres {
            match &s.url {
                None => return bad("store.engine = \"postgres\" needs store.url, the database's connection string"),
                Some(u) => {
                    if let Err(e) = u.0.parse::<postgres::Config>() {
                        return bad(&format!("store.url is not a PostgreSQL connection string: {e}"));
                    }
                }
            }
            if s.connect_timeout.is_zero() || s.statement_timeout.is_zero() || s.poll_interval.is_zero() {
                return bad("store.connect_timeout, statement_timeout and poll_interval must be more than 0s");
            }
            if s.commits_kept < 1000 {
                return bad("store.commits_kept must be at least 1000");
            }
        }
        Ok(())
    }

    /// The database these settings name, when the register is on PostgreSQL.
    pub fn postgres(&self) -> Option<crate::engine::pg::PgSettings> {
        let s = &self.store;
        let url = s.url.as_ref().filter(|_| s.engine == EngineKind::Postgres)?;
        let mut pg = crate::engine::pg::PgSettings::new(url.0.clone());
        if let Some(node) = &s.node {
            pg.node = node.clone();
        }
        pg.commits_kept = s.commits_kept;
        pg.connect_timeout = s.connect_timeout;
        pg.statement_timeout = s.statement_timeout;
        pg.poll_interval = s.poll_interval;
        pg.ca_file = s.ca_file.clone();
        Some(pg)
    }

    /// The storage settings these give the engine.
    pub fn store_config(&self) -> crate::engine::StoreConfig {
        let mib = |n: u64| n.saturating_mul(1024 * 1024);
        crate::engine::StoreConfig {
            cache_bytes: mib(self.cache_mib),
            segment_bytes: mib(self.store.log_segment_mib),
            checkpoint_bytes: mib(self.store.checkpoint_mib),
            checkpoint_interval: self.store.checkpoint_interval,
            retry_interval: self.store.retry_interval,
            checkpoint_nice: self.store.checkpoint_nice,
            faults: Default::default(),
            limits: crate::engine::RegisterLimits {
                pin_failures_per_window: self.limits.pin_failures_per_window,
                pin_window_secs: u32::try_from(self.limits.pin_window.as_secs().max(1)).unwrap_or(u32::MAX),
                ..self.register
            },
            postgres: self.postgres(),
        }
    }

    /// The session rules these settings give.
    pub fn session_rules(&self) -> SessionRules {
        SessionRules {
            max_login_attempts: self.limits.max_login_attempts,
            max_unreadable: self.limits.max_unreadable_frames,
            sc_status_before_login: self.sc_status_before_login,
            strictness: Strictness::Lenient,
        }
    }

    /// The service limits these settings give.
    pub fn service_limits(&self) -> ServiceLimits {
        ServiceLimits { no_block_max_days: self.limits.no_block_max_days }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Staff passwords and cookies do not cross a network in clear unless the configuration
    /// says so.
    #[test]
    fn the_console_is_plain_http_only_on_loopback() {
        let with = |toml: &str| {
            let c: Config = toml::from_str(toml).unwrap();
            c.check().map_err(|e| e.to_string())
        };
        assert!(with("[console]\nlisten = \"127.0.0.1:9104\"").is_ok());
        assert!(with("[console]\nlisten = \"[::1]:9104\"").is_ok());
        let e = with("[console]\nlisten = \"0.0.0.0:9104\"").unwrap_err();
        assert!(e.contains("not loopback") && e.contains("tls"), "{e}");
        assert!(with("[console]\nlisten = \"0.0.0.0:9104\"\nallow_plain_http = true").is_ok());
        let tls = "[console]\nlisten = \"0.0.0.0:9104\"\ntls = { cert = \"c.pem\", key = \"k.pem\" }";
        assert!(with(tls).is_ok());
        let e = with("[patron_pages]\nlisten = \"0.0.0.0:443\"").unwrap_err();
        assert!(e.contains("not loopback") && e.contains("PINs"), "{e}");
        assert!(with("[patron_pages]\nlisten = \"0.0.0.0:443\"\ntls = { cert = \"c.pem\", key = \"k.pem\" }").is_ok());
    }

    #[test]
    fn a_file_names_only_what_it_changes_and_typos_are_refused() {
        let c: Config = toml::from_str(
            r#"
            [[listen]]
            address = "0.0.0.0:6001"
            [[listen]]
            address = "0.0.0.0:6002"
            tls = { cert = "server.pem", key = "server.key", client_ca = "ca.pem" }
            [limits]
            idle_timeout = "2m"
            max_connections = 10
            "#,
        )
        .unwrap();
        assert_eq!(c.listen.len(), 2);
        assert_eq!(c.listen[1].tls.as_ref().unwrap().client_ca.as_deref(), Some(Path::new("ca.pem")));
        assert_eq!(c.limits.idle_timeout, Duration::from_secs(120));
        assert_eq!(c.limits.max_connections, 10);
        assert_eq!(c.limits.login_timeout, Duration::from_secs(30), "defaults fill the rest");
        let e = toml::from_str::<Config>("[limits]\nidle_timout = \"2m\"").unwrap_err();
        assert!(e.to_string().contains("idle_timout"), "{e}");
        let none = Config { listen: vec![], ..Config::default() };
        assert!(none.check().is_err());
        assert_eq!(Config::default().listen[0].address.ip().to_string(), "127.0.0.1");
    }

    /// The checkpointer's niceness reaches the engine, and one no system has is refused.
    #[test]
    fn the_checkpointer_niceness_is_a_niceness() {
        let with = |toml: &str| toml::from_str::<Config>(toml).unwrap();
        assert_eq!(Config::default().store_config().checkpoint_nice, 10);
        let c = with("[store]\ncheckpoint_nice = 0");
        assert!(c.check().is_ok());
        assert_eq!(c.store_config().checkpoint_nice, 0);
        let e = with("[store]\ncheckpoint_nice = 20").check().unwrap_err().to_string();
        assert!(e.contains("checkpoint_nice"), "{e}");
    }
}
