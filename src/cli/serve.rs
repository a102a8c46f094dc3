//! `sip2d serve`: runs the SIP2 server until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use super::admin;
use super::register::Common;
use crate::engine::{self as demo, Engine};
use crate::net::{Config, Listener, LogFormat, Server, TlsFiles};

/// Serve kiosks over SIP2 (TCP and TLS) from the register.
///
/// Settings come from a TOML file (--config; every key and its default is below and in
/// docs/server.md) and the flags below, which override it. SIGHUP reads them again and applies
/// them to new connections (limits, TLS certificates, faults, log level); an unusable
/// configuration is refused and the old one kept. Without any, the server listens
/// on 127.0.0.1:6001 only. SIGINT or SIGTERM stops it cleanly: no new connections, requests
/// in flight finish within the grace period, the store is flushed, exit 0.
///
/// `sip2d serve --demo` starts on loopback with a demo register in a fresh data directory and
/// prints accounts, patron barcodes and PINs to try.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = CONFIG_HELP)]
pub struct ServeArgs {
    /// A plain TCP address to listen on (repeatable). Given with --tls-listen or alone, these
    /// replace the configuration file's listeners.
    #[arg(long = "listen", value_name = "ADDR")]
    listen: Vec<SocketAddr>,
    /// A TLS-only address to listen on (repeatable); needs --cert and --key.
    #[arg(long = "tls-listen", value_name = "ADDR", requires_all = ["cert", "key"])]
    tls_listen: Vec<SocketAddr>,
    /// PEM certificate chain for --tls-listen.
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// PEM private key for --tls-listen.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// PEM CA certificates: --tls-listen clients must present a certificate they issued.
    #[arg(long, value_name = "FILE")]
    client_ca: Option<PathBuf>,
    /// Start with the demo register in a fresh data directory (a new temporary one unless
    /// --data names an empty one).
    #[arg(long, conflicts_with = "null")]
    demo: bool,
    /// Serve no register: answer every request with a canned success reply (framing only, no
    /// parsing, no disk), on the listeners and runtime the server uses. The ceiling a server
    /// in its own process can reach on this machine, for `sip2d bench` to compare against
    /// (docs/BENCHMARKS.md). Not for kiosks: every patron is valid and every checkout succeeds.
    #[arg(long)]
    null: bool,
    /// Log format: text or json (one object per line).
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    /// Most connections open at once.
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Serve /metrics (Prometheus), /health and /ready over HTTP on this address; keep it on
    /// loopback or a management network (no authentication).
    #[arg(long, value_name = "ADDR")]
    ops_listen: Option<SocketAddr>,
    /// Serve the admin API on a TCP address too (127.0.0.1:9102 when none is given); every
    /// request needs the bearer token in DATA/admin.token (created owner-only). The Unix socket
    /// DATA/admin.sock is always on.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:9102")]
    admin_listen: Option<SocketAddr>,
    /// Serve the staff console (and the resource API, staff only) on this address; plain HTTP
    /// only on loopback unless the configuration's [console] says otherwise. --demo serves it
    /// on 127.0.0.1:9104 (or any free port there, if that one is taken).
    #[arg(long, value_name = "ADDR")]
    console_listen: Option<SocketAddr>,
    /// Inject a fault to test kiosks' retry logic (repeatable): corrupt-checksum=N (every Nth
    /// reply's checksum), answer-96=N (96 instead of every Nth reply), drop=N (close halfway
    /// through every Nth reply), delay=DURATION (before every reply).
    #[arg(long = "fault", value_name = "NAME=VALUE")]
    pub faults: Vec<String>,
    /// Close a logged-in connection silent this long, e.g. 10m.
    #[arg(long, value_name = "DURATION", value_parser = humantime_serde::re::humantime::parse_duration)]
    idle_timeout: Option<Duration>,
}

const CONFIG_HELP: &str = "\
The configuration file (TOML; every key optional, defaults shown):
  data = \"DIR\"                       the data directory, after --data and $SIP2D_DATA
                                     (default: the per-user one)
  sc_status_before_login = false     answer a 99 before login
  accept_lf = true                   a bare LF ends a frame as CR does
  cache_mib = 64                     the store's page cache
  ops_listen = \"127.0.0.1:9101\"      /metrics, /health, /ready over HTTP (default: off)
  admin_listen = \"127.0.0.1:9102\"    the admin API over TCP, bearer token in DATA/admin.token (default: off)
  [console]                          the staff console and resource API, staff only (default: off)
  listen = \"127.0.0.1:9104\"
  tls = { cert = \"console.pem\", key = \"console.key\" }   HTTPS; read again on SIGHUP
  allow_plain_http = false           plain HTTP beyond loopback is refused unless true
  [patron_pages]                     set PIN, forgot PIN, my pages on a listener of their own
  listen = \"0.0.0.0:443\"            (default: served on the console's listener)
  tls = { cert = \"pages.pem\", key = \"pages.key\" }   as for [console]; plain HTTP beyond
                                     loopback needs allow_plain_http = true;
                                     proxy_from as for [[listen]], here and in [console]
  [[listen]]                         repeatable; default one plain 127.0.0.1:6001
  address = \"0.0.0.0:6001\"
  tls = { cert = \"server.pem\", key = \"server.key\", client_ca = \"ca.pem\" }
                                     TLS-only listener; client_ca turns on mutual TLS
  proxy_from = [\"10.0.0.5\"]          load balancers sending a PROXY header (v1 or v2) first;
                                     the kiosk's address it names counts for every limit
  [limits]
  max_message_bytes = 8192           longer frame: closed, no reply
  max_connections = 512              all listeners together
  max_connections_per_address = 64
  login_timeout = \"30s\"              connect to successful login
  idle_timeout = \"10m\"               a logged-in connection silent this long is closed
  write_timeout = \"10s\"
  tls_handshake_timeout = \"10s\"
  shutdown_grace = \"10s\"             time for requests in flight on SIGINT/SIGTERM
  max_unreadable_frames = 5          unknown or unreadable frames in a row, then close
  max_login_attempts = 3             refused logins, then 940 and close
  login_failure_delay = \"1s\"         pause before a 940; doubles per failure of the address
  login_backoff_after = 5              or account beyond these,
  login_backoff_max = \"30s\"          up to this,
  login_backoff_window = \"10m\"       counting failures this recent
  login_hashes = 2                   Argon2 hashes at once (default: CPU cores); only an
                                     account's first login since start needs one
  max_http_connections = 64          per HTTP listener (admin socket, admin_listen,
                                     ops_listen); more are closed at once
  max_http_header_bytes = 16384      a longer HTTP request head gets 431
  http_idle_timeout = \"30s\"          an HTTP connection sending no request head is closed
  staff_session_idle = \"30m\"         a staff session without a request ends
  staff_session_max_age = \"12h\"      and ends in any case
  max_staff_sessions = 10000         at once; a new one ends the oldest
  patron_session_idle = \"15m\"        a patron's session on their pages without a request ends
  patron_session_max_age = \"2h\"      and ends in any case
  max_patron_sessions = 10000        at once; a new one ends the oldest
  patron_pages_attempts = 30         patron logins and forgot-PIN asks per client address,
  patron_pages_window = \"15m\"        in this window; more get 429
  no_block_max_days = 90             latest no-block due date accepted
  pin_failures_per_window = 20       wrong PINs per terminal before its PIN checks stop
  pin_window = \"10m\"
  [store]                            where the register is kept
  engine = \"sled\"                    or \"postgres\": nodes on one database (docs/deploy.md)
  url = ...                          the database, with engine = \"postgres\"
  node = ...                         this node's name (default host name:pid)
  commits_kept = 100000              commits kept for nodes to catch up from
  connect_timeout = \"5s\"             connecting to the database
  statement_timeout = \"10s\"          one statement, the wait for the lock included
  poll_interval = \"1s\"               an idle node looks for other nodes' commits
  ca_file = ...                      TLS to the database, its certificate verified
  log_segment_mib = 64               a new log segment at this size
  checkpoint_mib = 64                sled brought up to date when this much log awaits it,
  checkpoint_interval = \"30s\"        or this long after the last time
  retry_interval = \"5s\"              after a failed log sync or checkpoint: reopen and retry
  [register]                         caps on what requests can add to one patron
  max_notes_per_patron = 200         more notes are refused
  max_holds_per_patron = 100         more holds are refused
  max_history_per_patron = 10000     the oldest audit entries go beyond this
  max_contacts_per_patron = 20       contacts besides the preferred ones
  max_statistics_per_patron = 50     statistical categories
  max_attachments_per_patron = 20    files on one record
  max_attachment_bytes = 1048576     one attachment's size
  max_picture_bytes = 262144         a picture's size
  pin_link_hours = 72                how long a welcome's set-PIN link works
  forgot_pin_minutes = 15            forgot PIN mails a patron at most one link this often
  email_link_hours = 24              how long a new e-mail address's confirming link works
  staff_failures_before_lockout = 5  wrong staff passwords that lock the account
  staff_lockout_minutes = 15         for this long
  retry_receipt_hours = 24           a terminal's receipt kept per address, for a request sent again
  [log]
  format = \"text\"                    or \"json\"
  level = \"info\"                     a tracing filter; RUST_LOG overrides
  [mail]                             patron notifications by e-mail (default: kept in the outbox)
  relay = \"localhost:25\"             plain SMTP relay
  from = \"library@example.org\"
  interval = \"30s\"                   how often the outbox is delivered
  self_service_url = \"https://...\"   where e-mailed links lead (default: [patron_pages], else
                                     the console's listener)
  [faults]                           for testing kiosks' retry logic; all off by default
  corrupt_checksum_every = 0         every Nth reply's checksum corrupted
  answer_96_every = 0                96 instead of every Nth reply
  drop_mid_reply_every = 0           half of every Nth reply, then a close
  delay = \"0s\"                       before every reply

Terminals log in with accounts from `sip2d account add`; `sip2d account profile --help` lists
what a profile sets. docs/server.md tells what a terminal sees in each situation.";

fn config(args: &ServeArgs, common: &Common) -> Result<Config> {
    let mut c = common.load_config()?;
    if !args.listen.is_empty() || !args.tls_listen.is_empty() {
        c.listen = args.listen.iter().map(|a| Listener::plain(*a)).collect();
        for a in &args.tls_listen {
            let (Some(cert), Some(key)) = (&args.cert, &args.key) else {
                return Err(super::exit::usage("--tls-listen needs --cert and --key"));
            };
            let files = TlsFiles { cert: cert.clone(), key: key.clone(), client_ca: args.client_ca.clone() };
            c.listen.push(Listener::tls(*a, files));
        }
    } else if args.cert.is_some() || args.key.is_some() || args.client_ca.is_some() {
        return Err(super::exit::usage("--cert, --key and --client-ca belong to a --tls-listen address"));
    }
    if let Some(f) = args.log_format {
        c.log.format = f;
    }
    if let Some(n) = args.max_connections {
        c.limits.max_connections = n;
    }
    if let Some(d) = args.idle_timeout {
        c.limits.idle_timeout = d;
    }
    for f in &args.faults {
        c.faults.set(f).map_err(super::exit::usage)?;
    }
    if args.ops_listen.is_some() {
        c.ops_listen = args.ops_listen;
    }
    if args.admin_listen.is_some() {
        c.admin_listen = args.admin_listen;
    }
    match (args.console_listen, &mut c.console) {
        (Some(addr), Some(console)) => console.listen = addr,
        (Some(addr), None) => {
            c.console = Some(crate::net::config::Console {
                listen: addr,
                tls: None,
                allow_plain_http: false,
                proxy_from: Vec::new(),
            })
        }
        (None, None) if args.demo => {
            let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 9104));
            c.console = Some(crate::net::config::Console {
                listen,
                tls: None,
                allow_plain_http: false,
                proxy_from: Vec::new(),
            });
        }
        (None, _) => {}
    }
    if !args.demo {
        c.data = Some(common.data_dir()?.path);
    }
    c.check()?;
    Ok(c)
}

type FilterHandle = tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

/// The log filter a configuration asks for; `RUST_LOG` overrides it.
fn log_filter(c: &Config) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&c.log.level))
}

/// Sets up logging to standard error, lines gathered and written out together. The flusher
/// writes out what is gathered when it is dropped, so keep it until the server has stopped;
/// the handle changes the level on a reload. The request log writes its lines itself unless
/// standard error is a terminal (where tracing colours them).
fn init_logging(c: &Config) -> Logging {
    use std::io::IsTerminal;
    use tracing_subscriber::prelude::*;
    let (writer, flusher) = super::logbuf::LogBuffer::start(std::io::stderr());
    let (filter, handle) = tracing_subscriber::reload::Layer::new(log_filter(c));
    let ansi = std::io::stderr().is_terminal();
    let requests = (!ansi).then(|| writer.request_log(c.log.format == LogFormat::Json));
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer).with_timer(super::logbuf::Clock).with_ansi(ansi);
    let format: Box<dyn tracing_subscriber::Layer<_> + Send + Sync> = match c.log.format {
        LogFormat::Text => Box::new(fmt),
        LogFormat::Json => Box::new(fmt.json().flatten_event(true)),
    };
    let _ = tracing_subscriber::registry().with(filter).with(format).try_init();
    Logging { _flusher: flusher, handle, requests }
}

struct Logging {
    _flusher: super::logbuf::Flusher,
    handle: FilterHandle,
    requests: Option<crate::net::RequestLog>,
}

/// On SIGHUP: reads the configuration again (file and flags) and applies it to new
/// connections and the log level. A configuration that cannot be used is refused, with the
/// reason in the log, and the old one stays in force.
/// Delivers the outbox through the configured relay every `interval` until shutdown.
async fn deliver_mail(
    mail: crate::net::config::Mail,
    self_service_url: String,
    engine: std::sync::Arc<dyn Engine>,
    shutdown: CancellationToken,
) {
    let smtp = super::outbox::Smtp { smtp: mail.relay.clone(), from: mail.from.clone(), self_service_url };
    loop {
        let (engine, smtp2) = (engine.clone(), smtp.clone());
        match tokio::task::spawn_blocking(move || super::outbox::deliver(engine.as_ref(), &smtp2, "sip2d-serve")).await
        {
            Ok(Ok((0, 0, 0))) => {}
            Ok(Ok((sent, failed, pending))) => {
                tracing::info!(sent, failed, pending, relay = %mail.relay, "outbox delivered")
            }
            Ok(Err(e)) => tracing::error!(error = %e, "outbox delivery failed"),
            Err(e) => tracing::error!(error = %e, "outbox delivery task failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(mail.interval) => {}
        }
    }
}

/// Reads the configuration again and applies it (SIGHUP and the admin API's reload).
fn apply_config(
    args: &ServeArgs,
    common: &Common,
    server: &crate::net::Handle,
    log: &FilterHandle,
) -> Result<(), String> {
    let c = config(args, common).map_err(|e| format!("{e:#}"))?;
    server.reload(&c).map_err(|e| e.to_string())?;
    log.modify(|f| *f = log_filter(&c)).map_err(|e| e.to_string())?;
    tracing::info!("configuration reloaded");
    Ok(())
}

#[cfg(unix)]
async fn reload_on_hangup(args: ServeArgs, common: Common, server: crate::net::Handle, log: FilterHandle) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else { return };
    while hup.recv().await.is_some() {
        let applied = apply_config(&args, &common, &server, &log);
        match applied {
            Ok(()) => tracing::info!("SIGHUP: configuration reloaded"),
            Err(e) => tracing::error!(error = %e, "SIGHUP: configuration refused; the old one stays in force"),
        }
    }
}

/// A fresh directory for the demo register.
fn demo_dir(given: Option<&PathBuf>) -> Result<PathBuf> {
    match given {
        Some(d) => {
            let used = std::fs::read_dir(d).map(|mut r| r.next().is_some()).unwrap_or(false);
            if used {
                return Err(super::exit::usage(format!(
                    "--demo needs a fresh data directory, and {} is not empty",
                    d.display()
                )));
            }
            Ok(d.clone())
        }
        None => {
            let stamp = jiff::Timestamp::now().as_millisecond();
            let d = std::env::temp_dir().join(format!("sip2d-demo-{}-{stamp}", std::process::id()));
            std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
            Ok(d)
        }
    }
}

fn banner(data: &std::path::Path, server: &Server, d: &demo::Demo, console: Option<&str>, pages: Option<&str>) {
    println!("sip2d {} serving the demo register in {}", env!("CARGO_PKG_VERSION"), data.display());
    for (addr, tls) in server.addresses() {
        println!("  listening on {addr}{}", if tls { " (TLS)" } else { "" });
    }
    println!("\nself-check accounts (93 login):");
    for a in &d.accounts {
        println!("  {:<8} password {:<15} {:<7} {}", a.login, a.password, a.institution, a.shows);
    }
    if let Some(url) = console {
        println!("\nstaff console on {url} (log in as):");
        for s in d.staff {
            println!("  {:<8} password {:<17} {:<20} {}", s.login, s.password, s.role.code(), s.institutions.join(","));
        }
    }
    match pages {
        Some(url) => println!("\npatrons (PIN {} for all; their own pages on {url}my):", demo::DEMO_PIN),
        None => println!("\npatrons (PIN {} for all):", demo::DEMO_PIN),
    }
    for p in &d.patrons {
        println!("  {}  {}", p.barcode, p.shows);
    }
    println!("\nitems:");
    for (b, t) in &d.items {
        println!("  {b}  {t}");
    }
    if let Some((addr, _)) = server.addresses().into_iter().find(|(_, tls)| !tls) {
        println!("\ntry it from another terminal: log in, then ask for Avery's status with the PIN:");
        println!("  exec 3<>/dev/tcp/{}/{}", addr.ip(), addr.port());
        println!(
            "  printf '9300CNkiosk1|COkiosk1-secret|\\r2300120261122    120000AOMAIN|AA21000000000001|AC|AD1234|\\r' >&3"
        );
        println!("  timeout 1 cat <&3 | tr '\\r' '\\n'");
    }
    println!("\nstop with Ctrl-C");
}

pub fn run(args: &ServeArgs, common: &Common) -> Result<ExitCode> {
    let mut c = config(args, common)?;
    let logging = init_logging(&c);
    let log_handle = logging.handle.clone();
    if args.null {
        return run_null(&c);
    }
    let store = c.store_config();
    let (data, engine) = if args.demo {
        // --data, or the configuration's, when given; otherwise a new temporary directory.
        let d = demo_dir(common.data.as_ref())?;
        c.data = Some(d.clone());
        let engine = demo::open_or_create(&d, &crate::engine::StoreConfig { postgres: None, ..store.clone() })
            .with_context(|| format!("cannot create the demo register in {}", d.display()))?;
        (d, std::sync::Arc::new(engine) as std::sync::Arc<dyn Engine>)
    } else {
        let dir = common.data_dir()?;
        dir.enter_existing()?;
        dir.secure()?;
        let engine = dir.open(&store)?;
        (dir.path, engine)
    };
    let built = if args.demo { Some(demo::build_demo(engine.as_ref(), jiff::Timestamp::now())?) } else { None };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    let result = runtime.block_on(async {
        // Taken before anything is served: a SIGTERM as soon as a listener is announced (a
        // systemd stop, a test) stops the server cleanly instead of killing it.
        let signals = Signals::take();
        let mut server = Server::bind(&c, engine).await?;
        if let Some(write) = &logging.requests {
            server = server.with_request_log(write.clone());
        }
        // Register commands run meanwhile (`sip2d patron ...` on this data directory) come to
        // this server over the admin socket; it is open before the address is announced.
        let admin_stop = CancellationToken::new();
        let reload: admin::Reload = {
            let (args, common, handle, log) = (args.clone(), common.clone(), server.handle(), log_handle.clone());
            std::sync::Arc::new(move || apply_config(&args, &common, &handle, &log))
        };
        let http = crate::net::http::HttpLimits { max_body_bytes: c.register.request_body_bytes(), ..c.limits.http() };
        let sessions = std::sync::Arc::new(super::sessions::Sessions::new(super::sessions::SessionLimits {
            idle: c.limits.staff_session_idle,
            max_age: c.limits.staff_session_max_age,
            max: c.limits.max_staff_sessions,
        }));
        let state = admin::AdminState {
            engine: server.engine(),
            reload,
            gate: admin::Gate::Owner,
            server: server.handle(),
            sessions,
            patrons: std::sync::Arc::new(super::selfservice::PatronPages::new(&c.limits)),
        };
        admin::serve(&data, state.clone(), http, admin_stop.clone()).await?;
        if let Some(addr) = c.admin_listen {
            let bound = admin::serve_tcp(addr, &data, state.clone(), http, admin_stop.clone()).await?;
            println!("sip2d admin API on http://{bound} (bearer token in {})", data.join("admin.token").display());
        }
        let mut console_url = None;
        // The patron pages are on their own listener when one is configured, else the console's.
        let own_pages = c.patron_pages.is_some();
        if let Some(console) = &c.console {
            let stop = admin_stop.clone();
            let bound = match admin::serve_console(console.listen, state.clone(), http, !own_pages, stop).await {
                // The demo's usual port may be taken (another demo, a test): any free one.
                Err(_) if args.demo && args.console_listen.is_none() => {
                    let any = std::net::SocketAddr::new(console.listen.ip(), 0);
                    admin::serve_console(any, state.clone(), http, !own_pages, admin_stop.clone()).await?
                }
                bound => bound?,
            };
            let scheme = if console.tls.is_some() { "https" } else { "http" };
            let url = format!("{scheme}://{bound}/");
            if built.is_none() {
                println!("sip2d staff console on {url}");
            }
            console_url = Some(url);
        }
        let mut pages_url = if own_pages { None } else { console_url.clone() };
        if let Some(pages) = &c.patron_pages {
            let bound = admin::serve_patron_pages(pages.listen, state.clone(), http, admin_stop.clone()).await?;
            let scheme = if pages.tls.is_some() { "https" } else { "http" };
            let url = format!("{scheme}://{bound}/");
            println!("sip2d patron pages on {url}");
            pages_url = Some(url);
        }
        match &built {
            Some(d) => banner(&data, &server, d, console_url.as_deref(), pages_url.as_deref()),
            None => {
                for (addr, tls) in server.addresses() {
                    println!("sip2d listening on {addr}{}", if tls { " (TLS)" } else { "" });
                }
                if let Some(a) = server.ops_address() {
                    println!("sip2d operations endpoints on http://{a}/metrics, /health, /ready");
                }
            }
        }
        let shutdown = CancellationToken::new();
        if let Some(mail) = c.mail.clone() {
            // The links in welcomes lead to the patron pages: where the configuration says,
            // else their own listener, else the console's, which then serves them.
            let pages =
                mail.self_service_url.clone().or(pages_url.clone()).unwrap_or_else(|| "http://127.0.0.1:9104".into());
            tokio::spawn(deliver_mail(mail, pages, server.engine(), shutdown.clone()));
        }
        tokio::spawn(signals.stop(shutdown.clone()));
        #[cfg(unix)]
        tokio::spawn(reload_on_hangup(args.clone(), common.clone(), server.handle(), log_handle));
        let ran = server.run(shutdown).await;
        admin_stop.cancel();
        let _ = std::fs::remove_file(data.join(admin::SOCKET));
        ran.map_err(anyhow::Error::from)
    });
    // Requests still on the blocking pool have had the grace period; do not wait forever.
    runtime.shutdown_timeout(c.limits.shutdown_grace);
    result?;
    Ok(ExitCode::SUCCESS)
}

/// `serve --null`: the canned responder on the configured listeners (plain ones only).
fn run_null(c: &Config) -> Result<ExitCode> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    runtime.block_on(async {
        let signals = Signals::take();
        let shutdown = CancellationToken::new();
        for l in &c.listen {
            anyhow::ensure!(l.tls.is_none(), "serve --null answers plain TCP only; {} is a TLS listener", l.address);
            let listener = tokio::net::TcpListener::bind(l.address)
                .await
                .with_context(|| format!("cannot listen on {}", l.address))?;
            println!("sip2d listening on {} (canned responder: no register)", listener.local_addr()?);
            tokio::spawn(crate::tools::bench::null_responder(listener, shutdown.clone()));
        }
        signals.stop(shutdown).await;
        Ok(ExitCode::SUCCESS)
    })
}

/// SIGTERM and SIGINT, taken over from their default (ending the process at once) from the
/// moment this is made.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn take() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Signals { term: signal(SignalKind::terminate()).ok(), int: signal(SignalKind::interrupt()).ok() }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// Waits for one, then cancels `shutdown`.
    async fn stop(self, shutdown: CancellationToken) {
        #[cfg(unix)]
        {
            async fn next(s: Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            match (self.term.is_some(), self.int.is_some()) {
                (false, false) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
                _ => {
                    tokio::select! {
                        _ = next(self.term) => {}
                        _ = next(self.int) => {}
                    }
                }
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        shutdown.cancel();
    }
}
