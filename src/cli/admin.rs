//! The admin API: while `sip2d serve` runs, it holds the store, so the register commands send
//! it the engine's typed operations and queries over HTTP on a Unix socket in the data
//! directory (owner-only), and print the answers themselves: the same operations, rules and
//! audit as when they open the store, with nothing of the command line run inside the server.
//!
//! - `POST /v1/operations` `{"operation": {...}, "actor": "NAME", "now": "..."}`: runs one unit
//!   of work and answers its receipt once it is durable;
//! - `POST /v1/check` `{"operations": [...], ...}`: the same as a dry run (nothing kept);
//! - `POST /v1/queries` `{"query": {...}}`: a read of the committed register;
//! - `GET /v1/export`: the register as JSON Lines; `GET /v1/pin-key`: the PIN key's fingerprint;
//! - `POST /v1/reload`: the configuration again, as SIGHUP.
//!
//! A refusal is 4xx (`api::status_of`) and a failure 503, each `{"error": "...", "failure": {...}}`.
//! Operations a kiosk makes come over SIP only: the API carries none. On TCP (`--admin-listen`)
//! every request needs the token in `DIR/admin.token`. The OpenAPI description is generated
//! from the handlers' annotations (`api::description`), served at `/api/v1/openapi.json` and
//! kept in `docs/openapi.json`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::api::Problem;
use crate::engine::{By, Engine, Error, Operation, Query, Receipt, Refusal};

/// The socket's name in the data directory.
pub const SOCKET: &str = "admin.sock";

/// One unit of work as the admin API carries it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OperationRequest {
    /// One of the engine's operations (`src/engine/ops.rs`), externally tagged in kebab-case.
    #[schema(value_type = Object)]
    pub operation: Operation,
    /// Who acts: recorded in the audit history as "NAME (admin API)".
    #[serde(default)]
    pub actor: String,
    /// The moment the rules read; the server's clock when absent.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub now: Option<jiff::Timestamp>,
}

/// Units of work tried in order and kept nowhere (a dry run).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    #[schema(value_type = Vec<Object>)]
    pub operations: Vec<Operation>,
    #[serde(default)]
    pub actor: String,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub now: Option<jiff::Timestamp>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// One of the engine's queries (`src/engine/ops.rs`), externally tagged in kebab-case.
    #[schema(value_type = Object)]
    pub query: Query,
}

/// Why an operation did not happen, as the API carries it ([`Error`] as data).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Failure {
    /// A rule said no; nothing was written.
    Refused(Refusal),
    /// The register takes no changes until it has reopened its log.
    Stopped(String),
    /// Not done (a full disk, an unreadable store); nothing was changed.
    NotDone(String),
    Closed,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        match e {
            Error::Refused(r) => Failure::Refused(r),
            Error::Stopped(why) => Failure::Stopped(why.to_string()),
            Error::NotDone(why) => Failure::NotDone(why.to_string()),
            e @ Error::Store(_) => Failure::NotDone(e.to_string()),
            Error::Closed => Failure::Closed,
        }
    }
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Error {
        match f {
            Failure::Refused(r) => Error::Refused(r),
            Failure::Stopped(why) => Error::Stopped(why.into()),
            Failure::NotDone(why) => Error::NotDone(why.into()),
            Failure::Closed => Error::Closed,
        }
    }
}

/// The body of an answer that is not a success.
#[derive(Debug, Serialize, Deserialize)]
pub struct FailureBody {
    pub error: String,
    pub failure: Failure,
}

fn failure(e: Error) -> Response {
    let status = super::api::status_of(&e);
    (status, Json(FailureBody { error: e.to_string(), failure: e.into() })).into_response()
}

/// Who asks, as the audit history names a change made through the admin API, and when.
fn by(name: &str, now: Option<jiff::Timestamp>) -> By {
    let name = name.trim();
    let actor = format!("{} (admin API)", if name.is_empty() { "admin" } else { name });
    By::new(actor, now.unwrap_or_else(jiff::Timestamp::now))
}

/// A request the system makes: on the owner's socket, or with the admin token on TCP. As an
/// extractor it runs before the body is read, so nobody else learns even what a body lacks.
pub struct System;

impl axum::extract::FromRequestParts<AdminState> for System {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &AdminState) -> Result<Self, Response> {
        if authorised(state, &parts.headers) {
            Ok(System)
        } else {
            Err((StatusCode::UNAUTHORIZED, "a bearer token is required\n").into_response())
        }
    }
}

#[utoipa::path(
    post,
    path = "/v1/operations",
    operation_id = "runOperation",
    tag = "system",
    summary = "Run one of the engine's operations (a unit of work)",
    description = "Runs the operation as one unit of work and answers its receipt once the change is\ndurable. Operations are the engine's own (`src/engine/ops.rs`), externally tagged in\nkebab-case: `{\"add-note\": {\"patron\": 1, \"kind\": \"general\", \"text\": \"...\", \"public\":\nfalse}}`. Operations a kiosk makes (SIP) are not taken: an unknown variant is 422.",
    request_body = OperationRequest,
    responses((status = 200, description = "Done and durable; the receipt, e.g. `{\"patron\": {...}}` or `\"done\"`."), (status = 404, description = "Refused, something named is not there.", body = Problem), (status = 409, description = "Refused, a primary id, identifier or e-mail is taken, or the record exists.", body = Problem), (status = 412, description = "Refused, the record changed since the version the operation expects.", body = Problem), (status = 422, description = "Refused by another rule (nothing written), or a body that is not an OperationRequest.", body = Problem), (status = 503, description = "Not done (the register could not make it durable); nothing of it was changed.", body = Problem), (status = 401, description = "On the TCP listener, without the right bearer token.", body = Problem))
)]
async fn operation(State(state): State<AdminState>, _: System, Json(req): Json<OperationRequest>) -> Response {
    match state.engine.run(req.operation, by(&req.actor, req.now)).await {
        Ok(receipt) => Json(receipt).into_response(),
        Err(e) => failure(e),
    }
}

#[utoipa::path(
    post,
    path = "/v1/check",
    operation_id = "checkOperations",
    tag = "system",
    summary = "Try operations in order and keep nothing (a dry run)",
    request_body = CheckRequest,
    responses((status = 200, description = "Each operation's receipt (`{\"Ok\": ...}`) or failure (`{\"Err\": ...}`), in order, each seeing what the ones before it would have done."), (status = 422, description = "A body that is not a list of operations.", body = Problem), (status = 401, description = "On the TCP listener, without the right bearer token.", body = Problem))
)]
async fn check(State(state): State<AdminState>, _: System, Json(req): Json<CheckRequest>) -> Response {
    match state.engine.check(req.operations, by(&req.actor, req.now)).await {
        Ok(all) => {
            let all: Vec<Result<Receipt, Failure>> = all.into_iter().map(|r| r.map_err(Failure::from)).collect();
            Json(all).into_response()
        }
        Err(e) => failure(e),
    }
}

#[utoipa::path(
    post,
    path = "/v1/queries",
    operation_id = "runQuery",
    tag = "system",
    summary = "Read the committed register",
    description = "A query of the engine's (`src/engine/ops.rs`), e.g. `{\"query\": {\"find-patron\":\n{\"institution\": \"MAIN\", \"key\": \"21000000000001\"}}}`; the answer is tagged the same way\n(`{\"patron\": {...}}`).",
    request_body = QueryRequest,
    responses((status = 200, description = "The answer."), (status = 404, description = "Something named is not there.", body = Problem), (status = 422, description = "A body that is not a query.", body = Problem), (status = 401, description = "On the TCP listener, without the right bearer token.", body = Problem))
)]
async fn query(State(state): State<AdminState>, _: System, Json(req): Json<QueryRequest>) -> Response {
    match state.engine.query(req.query).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => failure(e),
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PinKey {
    pub fingerprint: String,
}

#[utoipa::path(
    get,
    path = "/v1/pin-key",
    operation_id = "pinKey",
    tag = "system",
    summary = "The fingerprint of the register's PIN key",
    responses((status = 200, description = "The fingerprint an import of PIN hashes is checked against."), (status = 401, description = "On the TCP listener, without the right bearer token.", body = Problem), (status = 503, description = "The engine could not say.", body = Problem))
)]
async fn pin_key(State(state): State<AdminState>, _: System) -> Response {
    match state.engine.pin_key_fingerprint() {
        Ok(fingerprint) => Json(PinKey { fingerprint }).into_response(),
        Err(e) => failure(e),
    }
}

/// The register as JSON Lines, streamed as the engine writes it from one committed view.
#[utoipa::path(
    get,
    path = "/v1/export",
    operation_id = "export",
    tag = "system",
    summary = "The whole register as JSON Lines, from one committed view",
    responses((status = 200, description = "One record a line, in the format `sip2d import` reads (docs/import.md). A broken export ends the stream with an error rather than short.", content_type = "application/x-ndjson", body = String), (status = 401, description = "On the TCP listener, without the right bearer token.", body = Problem))
)]
async fn export(State(state): State<AdminState>, _: System) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(16);
    let engine = state.engine.clone();
    tokio::task::spawn_blocking(move || {
        let mut chunk = Vec::with_capacity(64 * 1024);
        let r = engine.export(&mut |line| {
            crate::engine::exchange::write_line(&mut chunk, line)?;
            if chunk.len() >= 60 * 1024 {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(64 * 1024));
                // The client went away: stop writing.
                tx.blocking_send(Ok(full.into())).map_err(|_| std::io::Error::other("the client left"))?;
            }
            Ok(())
        });
        let last = match r {
            Ok(_) => Ok(chunk.into()),
            // A broken export must not look like a short one: the stream ends in an error.
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
        let _ = tx.blocking_send(last);
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    ([(axum::http::header::CONTENT_TYPE, "application/x-ndjson")], axum::body::Body::from_stream(stream))
        .into_response()
}

/// A set-PIN link's token, for the mailer of a command run beside the server.
#[derive(Debug, Serialize, Deserialize)]
pub struct LinkToken {
    pub token: String,
}

#[utoipa::path(
    get,
    path = "/v1/link-token/{serial}",
    operation_id = "linkToken",
    tag = "system",
    summary = "The token of a patron's set-PIN link, for the e-mail that carries it",
    description = "Derived from the PIN key and the link's serial (the `{pin-link:SERIAL}` in a pending\nwelcome); the store keeps only the token's digest.",
    params(("serial" = u64, Path)),
    responses((status = 200, description = "`token`."), (status = 401, description = "On the TCP listener, without the right bearer token.", body = Problem))
)]
async fn link_token(
    State(state): State<AdminState>,
    _: System,
    axum::extract::Path(serial): axum::extract::Path<u64>,
) -> Response {
    match state.engine.link_token(serial) {
        Ok(token) => Json(LinkToken { token }).into_response(),
        Err(e) => failure(e),
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
    /// Patrons' sessions on their own pages, and how often addresses try them.
    pub patrons: Arc<super::selfservice::PatronPages>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ReloadResponse {
    pub reloaded: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How long an admin request in flight may take to finish when the server stops.
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

#[utoipa::path(
    post,
    path = "/v1/reload",
    operation_id = "reload",
    tag = "system",
    summary = "Reload the configuration, as SIGHUP does",
    description = "Reads the configuration file and the server's flags again and applies them to new\nconnections (limits, session rules, faults, TLS certificates, log level). Open\nconnections keep their settings. An unusable configuration is refused and the old one\nstays in force.",
    responses((status = 200, description = "Reloaded."), (status = 422, description = "Refused; `error` says why, and the old configuration stays in force.", body = Problem), (status = 401, description = "On the TCP listener, without the right bearer token.", body = Problem))
)]
async fn reload(State(state): State<AdminState>, _: System) -> Response {
    let f = state.reload.clone();
    let r = tokio::task::spawn_blocking(move || f()).await.unwrap_or_else(|e| Err(e.to_string()));
    let status = if r.is_ok() { axum::http::StatusCode::OK } else { axum::http::StatusCode::UNPROCESSABLE_ENTITY };
    (status, Json(ReloadResponse { reloaded: r.is_ok(), error: r.err() })).into_response()
}

/// `api` with the system's own endpoints (`/v1/...`: the socket's, and the admin token's).
pub fn with_system_routes(
    api: utoipa_axum::router::OpenApiRouter<AdminState>,
) -> utoipa_axum::router::OpenApiRouter<AdminState> {
    use utoipa_axum::routes;
    api.routes(routes!(operation))
        .routes(routes!(check))
        .routes(routes!(query))
        .routes(routes!(export))
        .routes(routes!(pin_key))
        .routes(routes!(link_token))
        .routes(routes!(reload))
}

/// The resource API (with or without the system's endpoints), its description at
/// `/api/v1/openapi.json`, and a JSON reason on every refusal.
fn api_router(api: utoipa_axum::router::OpenApiRouter<AdminState>) -> axum::Router<AdminState> {
    let (routes, _) = api.split_for_parts();
    routes.route("/api/v1/openapi.json", get(super::api::openapi))
}

fn router(state: AdminState) -> axum::Router {
    api_router(with_system_routes(super::api::routes()))
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
    with_patron_pages: bool,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    let server = state.server.clone();
    let mut app = axum::Router::new().merge(super::console::routes());
    if with_patron_pages {
        app = app.merge(super::selfservice::routes());
    }
    let app = app
        .merge(api_router(super::api::routes()))
        .fallback(super::api::no_route)
        .layer(axum::middleware::map_response(super::api::json_refusals))
        .with_state(AdminState { gate: Gate::StaffOnly, ..state });
    let listener = crate::net::http::HttpListener::Tls(listener, server, crate::net::http::Side::Console);
    tokio::spawn(crate::net::http::serve(listener, app, limits, "console", shutdown, GRACE));
    Ok(bound)
}

/// Serves the patron pages alone on `addr` (HTTPS when `[patron_pages]` gives TLS files):
/// nothing of the console or the API is there.
pub async fn serve_patron_pages(
    addr: std::net::SocketAddr,
    state: AdminState,
    limits: crate::net::http::HttpLimits,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    let server = state.server.clone();
    let app = super::selfservice::routes()
        .route("/", axum::routing::get(|| async { axum::response::Redirect::to("/my") }))
        .fallback(super::selfservice::not_here)
        .with_state(AdminState { gate: Gate::StaffOnly, ..state });
    let listener = crate::net::http::HttpListener::Tls(listener, server, crate::net::http::Side::PatronPages);
    let limits = crate::net::http::HttpLimits { max_body_bytes: super::selfservice::MAX_BODY_BYTES, ..limits };
    tokio::spawn(crate::net::http::serve(listener, app, limits, "patron pages", shutdown, GRACE));
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
