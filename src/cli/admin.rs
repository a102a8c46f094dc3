//! The admin API: while `sip2d serve` runs, it holds the store, so the register commands are
//! sent to it over HTTP on a Unix socket in the data directory (owner-only) and run there, with
//! the same code, validation and audit as when they open the store themselves.
//!
//! `POST /v1/run` with `{"args": [...], "stdin": "...", "actor": "..."}` runs one register
//! command (the arguments as after `sip2d`) and answers `{"code": N, "stdout": "...",
//! "stderr": "..."}`. `docs/admin-api.yaml` describes it.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use axum::Json;
use axum::extract::State;
use axum::routing::post;
use serde::{Deserialize, Serialize};

use crate::engine::Engine;

/// The socket's name in the data directory.
pub const SOCKET: &str = "admin.sock";

thread_local! {
    static SERVED: RefCell<Option<(Arc<dyn Engine>, String)>> = const { RefCell::new(None) };
}

/// The server's engine and who acts, while this thread runs a command for an admin client.
pub fn served() -> Option<(Arc<dyn Engine>, String)> {
    SERVED.with(|s| s.borrow().clone())
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// The command line after `sip2d`, e.g. `["patron", "show", "21000000000001"]`.
    pub args: Vec<String>,
    /// What the command reads from standard input (a password, an import).
    #[serde(default)]
    pub stdin: String,
    /// Who is asking: recorded in the audit history as "NAME (admin API)".
    #[serde(default)]
    pub actor: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RunResponse {
    pub code: u8,
    pub stdout: String,
    pub stderr: String,
}

fn exit_code(code: ExitCode) -> u8 {
    (0..=255u8).find(|c| ExitCode::from(*c) == code).unwrap_or(1)
}

/// Runs one register command against the server's register, capturing what it prints.
fn run_here(engine: &Arc<dyn Engine>, req: RunRequest) -> RunResponse {
    use clap::{CommandFactory, FromArgMatches};
    let args = std::iter::once("sip2d".to_string()).chain(req.args.iter().cloned());
    let refuse = |code: u8, stderr: String| RunResponse { code, stdout: String::new(), stderr };
    let parsed =
        super::Cli::command().try_get_matches_from(args).and_then(|m| Ok((super::Cli::from_arg_matches(&m)?, m)));
    let cli = match parsed {
        Ok((cli, m)) if m.subcommand_name().is_some_and(super::is_register) => cli,
        Ok(_) => {
            let names = super::REGISTER_COMMANDS.join(", ");
            return refuse(
                super::exit::Exit::Usage as u8,
                format!("sip2d: the admin API runs register commands only ({names})\n"),
            );
        }
        Err(e) => return refuse(super::exit::Exit::Usage as u8, e.to_string()),
    };
    if let Some(why) = super::names_a_server_file(&cli.command) {
        return refuse(super::exit::Exit::Usage as u8, format!("sip2d: {why}\n"));
    }
    let actor = if req.actor.is_empty() { "admin".to_string() } else { req.actor.clone() };
    SERVED.with(|s| *s.borrow_mut() = Some((engine.clone(), format!("{actor} (admin API)"))));
    let (code, captured) = super::io::capture(req.stdin.into_bytes(), || {
        exit_code(super::run_command(cli).unwrap_or_else(|e| super::exit::report(&e)))
    });
    SERVED.with(|s| *s.borrow_mut() = None);
    RunResponse {
        code,
        stdout: String::from_utf8_lossy(&captured.out).into_owned(),
        stderr: String::from_utf8_lossy(&captured.err).into_owned(),
    }
}

/// Reloads the server's configuration (as SIGHUP does); `Err` says why it was refused.
pub type Reload = Arc<dyn Fn() -> std::result::Result<(), String> + Send + Sync>;

/// What the admin endpoints share.
#[derive(Clone)]
pub struct AdminState {
    pub engine: Arc<dyn Engine>,
    pub reload: Reload,
    /// Who, besides staff members with a token or session, acts as the system here.
    pub gate: Gate,
    /// The running server, for what only it knows (the terminals connected now).
    pub server: crate::net::Handle,
    /// Staff members' console sessions.
    pub sessions: Arc<super::sessions::Sessions>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ReloadResponse {
    pub reloaded: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How long a register command in flight may take to finish when the server stops.
const GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Who may act as the system on a listener.
#[derive(Clone)]
pub enum Gate {
    /// Whoever can open the owner-only socket.
    Owner,
    /// Requests carrying this bearer token (the admin TCP listener).
    Token(Arc<String>),
    /// Nobody: staff members only, by their token or session (the console's listener).
    StaffOnly,
}

/// Whether a request may act as the system: always on the owner's socket, with the admin
/// token on the TCP listener, never on the console's.
pub(crate) fn authorised(state: &AdminState, headers: &axum::http::HeaderMap) -> bool {
    let token = match &state.gate {
        Gate::Owner => return true,
        Gate::StaffOnly => return false,
        Gate::Token(t) => t,
    };
    let given = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    // Compared in constant time: the token is a secret.
    super::sessions::same_secret(given, &format!("Bearer {token}"))
}

async fn run(
    State(state): State<AdminState>,
    headers: axum::http::HeaderMap,
    Json(req): Json<RunRequest>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !authorised(&state, &headers) {
        return (axum::http::StatusCode::UNAUTHORIZED, "a bearer token is required\n").into_response();
    }
    let engine = state.engine.clone();
    let answer = tokio::task::spawn_blocking(move || run_here(&engine, req)).await;
    Json(answer.unwrap_or_else(|e| RunResponse { code: 1, stdout: String::new(), stderr: format!("sip2d: {e}\n") }))
        .into_response()
}

async fn reload(State(state): State<AdminState>, headers: axum::http::HeaderMap) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !authorised(&state, &headers) {
        return (axum::http::StatusCode::UNAUTHORIZED, "a bearer token is required\n").into_response();
    }
    let f = state.reload.clone();
    let r = tokio::task::spawn_blocking(move || f()).await.unwrap_or_else(|e| Err(e.to_string()));
    let status = if r.is_ok() { axum::http::StatusCode::OK } else { axum::http::StatusCode::UNPROCESSABLE_ENTITY };
    (status, Json(ReloadResponse { reloaded: r.is_ok(), error: r.err() })).into_response()
}

fn router(state: AdminState) -> axum::Router {
    axum::Router::new()
        .route("/v1/run", post(run))
        .route("/v1/reload", post(reload))
        .merge(super::api::routes())
        .fallback(super::api::no_route)
        .layer(axum::middleware::map_response(super::api::json_refusals))
        .with_state(state)
}

/// Serves the staff console and the resource API on `addr` (HTTPS when the configuration
/// gives the console TLS files), staff members only.
pub async fn serve_console(
    addr: std::net::SocketAddr,
    state: AdminState,
    limits: crate::net::http::HttpLimits,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    let server = state.server.clone();
    let app = axum::Router::new()
        .merge(super::console::routes())
        .merge(super::api::routes())
        .fallback(super::api::no_route)
        .layer(axum::middleware::map_response(super::api::json_refusals))
        .with_state(AdminState { gate: Gate::StaffOnly, ..state });
    let listener = crate::net::http::HttpListener::Tls(listener, server);
    tokio::spawn(crate::net::http::serve(listener, app, limits, "console", shutdown, GRACE));
    Ok(bound)
}

/// The token file in the data directory, created (owner-only) with a random token if absent.
pub fn token(dir: &Path) -> Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("admin.token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        return Ok(t.trim().to_string());
    }
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("no randomness for the admin token: {e}"))?;
    let token = crate::domain::secret::hex(&raw);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(f, "{token}")?;
    Ok(token)
}

/// Serves the admin API on a TCP address, every request needing the token in
/// `DIR/admin.token` as `Authorization: Bearer TOKEN`.
pub async fn serve_tcp(
    addr: std::net::SocketAddr,
    dir: &Path,
    state: AdminState,
    limits: crate::net::http::HttpLimits,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<std::net::SocketAddr> {
    let gate = Gate::Token(Arc::new(token(dir)?));
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    let app = router(AdminState { gate, ..state });
    let listener = crate::net::http::HttpListener::Tcp(listener);
    tokio::spawn(crate::net::http::serve(listener, app, limits, "admin", shutdown, GRACE));
    Ok(bound)
}

/// Serves the admin API on `DIR/admin.sock` (owner-only) until `shutdown`.
pub async fn serve(
    dir: &Path,
    state: AdminState,
    limits: crate::net::http::HttpLimits,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(SOCKET);
    // A socket left by a server that was killed: nothing listens on it any more.
    if path.exists() && std::os::unix::net::UnixStream::connect(&path).is_err() {
        let _ = std::fs::remove_file(&path);
    }
    let listener =
        tokio::net::UnixListener::bind(&path).with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let app = router(AdminState { gate: Gate::Owner, ..state });
    let p = path.clone();
    let listener = crate::net::http::HttpListener::Unix(listener);
    tokio::spawn(async move {
        crate::net::http::serve(listener, app, limits, "admin socket", shutdown, GRACE).await;
        let _ = std::fs::remove_file(&p);
    });
    Ok(path)
}

/// Sends a register command to the server running on `dir`, if one is; `None` when none is.
pub fn forward(dir: &Path, args: Vec<String>, stdin: String, actor: String) -> Result<Option<RunResponse>> {
    let path = dir.join(SOCKET);
    if !path.exists() {
        return Ok(None);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let Ok(stream) = tokio::net::UnixStream::connect(&path).await else { return Ok(None) };
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.context("the admin socket")?;
        tokio::spawn(conn);
        let body = serde_json::to_vec(&RunRequest { args, stdin, actor })?;
        let req = hyper::Request::post("/v1/run")
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))?;
        let res = sender.send_request(req).await.context("the running server did not answer")?;
        if !res.status().is_success() {
            bail!("the running server refused the command: {}", res.status());
        }
        use http_body_util::BodyExt;
        let bytes = res.into_body().collect().await?.to_bytes();
        Ok(Some(serde_json::from_slice(&bytes).context("the running server's answer")?))
    })
}
