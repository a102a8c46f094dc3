//! The resource API: the register as JSON resources (patrons and their blocks, notes, fees,
//! loans, holds, proxies, moves and history; the bank of deleted users; items, institutions,
//! terminal and staff accounts; the terminals connected now, live), on the same typed engine
//! operations the command line and the console use. Each route's `utoipa::path` annotation
//! is its description: `description()` gathers them, served at `/api/v1/openapi.json` and
//! kept in `docs/openapi.json`.
//!
//! Who asks is a [`Caller`]: a staff member by their bearer token or console session (their
//! role and institutions bound every request: writes are checked by the engine inside the unit
//! of work, reads filtered here), or the system (the owner's socket, the admin token). A patron
//! edit needs `If-Match` with the record's `ETag`. Refusals are 4xx with `{"error": "..."}`
//! ([`status_of`]), never 500.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::admin::AdminState;
use crate::engine::{Answer, By, Error, Operation, Query as Read, Receipt, Refusal, patron_tag};

/// Most results one page holds.
pub const MAX_PER_PAGE: usize = 200;

/// The header that carries a session's CSRF token on a change.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The live session a request's cookie names, if any.
pub(super) fn session_of(state: &AdminState, headers: &HeaderMap) -> Option<super::sessions::Open> {
    session_cookie(state, headers).map(|(_, open)| open)
}

/// The live session a request's cookies name, with the cookie's value.
fn session_cookie<'h>(state: &AdminState, headers: &'h HeaderMap) -> Option<(&'h str, super::sessions::Open)> {
    let now = std::time::Instant::now();
    super::sessions::cookies(headers, super::sessions::COOKIE)
        .find_map(|c| state.sessions.find(c, now).map(|open| (c, open)))
}

/// The staff member whose live session a request's cookie names, as their account is now:
/// `None` without one; refused (`NoStaff`) when the account was removed or given a new
/// password since the session opened, which ends it.
pub(super) async fn session_member(
    state: &AdminState,
    headers: &HeaderMap,
) -> Result<Option<(super::sessions::Open, crate::domain::Staff)>, Error> {
    let Some(open) = session_of(state, headers) else { return Ok(None) };
    match state.engine.query(Read::Staff(open.login.clone())).await? {
        Answer::Staff(m) if open.opened_with(&m.password_hash) => Ok(Some((open, *m))),
        _ => Err(Error::Refused(Refusal::NoStaff(open.login))),
    }
}

/// Who the audit history names for changes made with the admin token or on the owner's socket.
const ACTOR: &str = "admin (resource API)";

/// Who asks. Every handler takes one, so none can forget to ask.
///
/// - A staff member, by a bearer token of theirs (`sip2d staff token add`): their role and
///   institutions bound what they may do. Writes are checked by the engine inside the unit
///   of work, against their account as it is then; reads are filtered here.
/// - The system: the owner-only socket, or the admin listener's own token on TCP.
#[derive(Clone)]
pub enum Caller {
    System,
    Staff(std::sync::Arc<crate::domain::Staff>),
}

impl axum::extract::FromRequestParts<AdminState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &AdminState) -> Result<Self, Response> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if let Some(token) = bearer.filter(|t| t.starts_with(crate::domain::secret::TOKEN_PREFIX)) {
            let digest = crate::domain::secret::token_digest(token);
            return match state.engine.query(Read::StaffByToken(digest)).await {
                Ok(Answer::Staff(m)) => Ok(Caller::Staff(std::sync::Arc::new(*m))),
                Ok(_) | Err(Error::Refused(_)) => Err(refused(StatusCode::UNAUTHORIZED, "that token is not valid")),
                Err(e) => Err(failed(e)),
            };
        }
        let session = match session_member(state, &parts.headers).await {
            Ok(s) => s,
            Err(Error::Refused(_)) => return Err(refused(StatusCode::UNAUTHORIZED, "the session has ended")),
            Err(e) => return Err(failed(e)),
        };
        if let Some((open, m)) = session {
            // A change needs the session's CSRF token beside the cookie, which another site's
            // page can make the browser send but cannot read.
            if !parts.method.is_safe() {
                let given = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
                if !super::sessions::same_secret(given, &open.csrf) {
                    return Err(refused(StatusCode::FORBIDDEN, format!("a change needs the session's {CSRF_HEADER}")));
                }
            }
            return Ok(Caller::Staff(std::sync::Arc::new(m)));
        }
        if super::admin::authorised(state, &parts.headers) {
            Ok(Caller::System)
        } else {
            Err(refused(StatusCode::UNAUTHORIZED, "a bearer token is required"))
        }
    }
}

impl Caller {
    /// Who the engine is told asks.
    pub(super) fn by(&self) -> By {
        let now = jiff::Timestamp::now();
        match self {
            Caller::System => By::new(ACTOR, now),
            Caller::Staff(m) => By::staff(m, now),
        }
    }

    /// Whether they see the patrons (items, terminals...) of `institution`.
    pub(super) fn covers(&self, institution: &str) -> bool {
        match self {
            Caller::System => true,
            Caller::Staff(m) => m.covers(institution),
        }
    }

    /// Whether they see this patron: one of their institutions', or one asked to move to one.
    fn sees(&self, p: &crate::domain::Patron) -> bool {
        match self {
            Caller::System => true,
            Caller::Staff(m) => crate::domain::staff::sees(&m.institutions, p),
        }
    }
}

/// Patron `raw` as `caller` may see it; a patron of another institution is "not there".
pub(super) async fn visible(state: &AdminState, caller: &Caller, raw: &str) -> Result<crate::domain::Patron, Response> {
    let id = number::<u64>(raw, "patron")?;
    match state.engine.query(Read::Patron(id)).await {
        Ok(Answer::Patron(p)) if caller.sees(&p) => Ok(*p),
        Ok(Answer::Patron(_)) => Err(refused(StatusCode::NOT_FOUND, format!("no patron #{id}"))),
        Ok(_) => Err(refused(StatusCode::SERVICE_UNAVAILABLE, "unexpected answer")),
        Err(e) => Err(failed(e)),
    }
}

/// An institution `caller` works for, or a 404 as if it were not there.
#[allow(clippy::result_large_err)] // the handler's early answer, made at most once a request
fn ours(caller: &Caller, institution: &str) -> Result<(), Response> {
    if caller.covers(institution) {
        Ok(())
    } else {
        Err(refused(StatusCode::NOT_FOUND, format!("no institution '{institution}'")))
    }
}

fn refused(status: StatusCode, why: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": why.to_string() }))).into_response()
}

/// The HTTP status a refusal or failure is answered with, by every listener and page: what
/// was named is not there 404, taken 409, changed since read 412, not the role's 403, a
/// wrong password 401, locked 423, another rule 422; the engine unable 503.
pub(super) fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::Refused(r) => match r {
            Refusal::NoPatron(_)
            | Refusal::NoInstitution(_)
            | Refusal::NoItem(_)
            | Refusal::NoFee(_)
            | Refusal::NoHold(_)
            | Refusal::NoAccount(_)
            | Refusal::NoStaff(_)
            | Refusal::NoEntry { .. } => StatusCode::NOT_FOUND,
            Refusal::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::LinkUnusable { expired: true } => StatusCode::GONE,
            Refusal::LinkUnusable { expired: false } => StatusCode::NOT_FOUND,
            Refusal::Exists { .. } | Refusal::Taken { .. } => StatusCode::CONFLICT,
            Refusal::Changed(_) => StatusCode::PRECONDITION_FAILED,
            Refusal::NotPermitted { .. } => StatusCode::FORBIDDEN,
            Refusal::WrongPassword { .. } => StatusCode::UNAUTHORIZED,
            Refusal::StaffLocked(_) => StatusCode::LOCKED,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        },
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn failed(e: Error) -> Response {
    let status = status_of(&e);
    match e {
        Error::Refused(r) => refused(status, r),
        other => refused(status, other),
    }
}

/// A patron as the API shows it: the record without its PIN hash.
fn patron_json(p: &crate::domain::Patron) -> Value {
    let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.remove("pin");
        o.insert("has_pin".into(), Value::Bool(p.pin.is_some()));
    }
    v
}

fn tagged(p: &crate::domain::Patron) -> Response {
    let etag = format!("\"{}\"", patron_tag(p));
    ([(header::ETAG, etag)], Json(patron_json(p))).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    institution: String,
    q: String,
    #[serde(default)]
    page: Option<usize>,
    #[serde(default)]
    per_page: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/api/v1/patrons",
    operation_id = "searchPatrons",
    tag = "patrons",
    summary = "Search patrons (issue 16, first step of the resource API)",
    description = "By exact identifier, national id or e-mail, else by a name prefix (\"last, first\"),\nat one institution. Paged.",
    params(("institution" = String, Query), ("q" = String, Query), ("page" = Option<u64>, Query), ("per_page" = Option<u64>, Query)),
    responses((status = 200, description = "`total`, `page`, `per_page` and `patrons` (id, primary_id, name, record_type, account_type, user_group, expiry, active)."), (status = 400, description = "A parameter missing or out of range; `error` says which.", body = Problem), (status = 401, description = "On the TCP listener, without the right bearer token.", body = Problem))
)]
async fn search(
    State(state): State<AdminState>,
    caller: Caller,
    params: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(p) = match params {
        Ok(p) => p,
        Err(e) => {
            return refused(
                StatusCode::BAD_REQUEST,
                format!("give institution and q, and page and per_page from 1: {e}"),
            );
        }
    };
    let per_page = p.per_page.unwrap_or(50);
    let page = p.page.unwrap_or(1);
    if !(1..=MAX_PER_PAGE).contains(&per_page) || page == 0 {
        return refused(StatusCode::BAD_REQUEST, format!("page from 1, per_page from 1 to {MAX_PER_PAGE}"));
    }
    if let Err(r) = ours(&caller, &p.institution) {
        return r;
    }
    let q = Read::Search { institution: p.institution, query: p.q, now: jiff::Timestamp::now() };
    match state.engine.query(q).await {
        Ok(Answer::Patrons(found)) => {
            let total = found.len();
            let items: Vec<Value> = found
                .iter()
                .skip((page - 1).saturating_mul(per_page))
                .take(per_page)
                .map(|p| {
                    json!({
                        "id": p.id, "primary_id": p.primary_id, "name": p.display_name(),
                        "record_type": p.record_type, "account_type": p.account_type,
                        "user_group": p.user_group, "expiry": p.expiry, "active": p.active,
                    })
                })
                .collect();
            Json(json!({ "total": total, "page": page, "per_page": per_page, "patrons": items })).into_response()
        }
        Ok(_) => refused(StatusCode::SERVICE_UNAVAILABLE, "unexpected answer"),
        Err(e) => failed(e),
    }
}

/// A patron to register, as the API and the console take one: the mandatory names and
/// primary id, the rest optional (no PIN: the patron sets it from the e-mailed link, or staff
/// at the desk).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatronBody {
    pub institution: String,
    pub primary_id: String,
    pub first_name: String,
    pub last_name: String,
    #[serde(default)]
    pub middle_name: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Date)]
    pub birth_date: Option<jiff::civil::Date>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub postal_code: Option<String>,
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub user_group: Option<String>,
    #[serde(default)]
    #[schema(value_type = String, example = "public")]
    pub record_type: crate::domain::RecordType,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Date)]
    pub expiry: Option<jiff::civil::Date>,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Date)]
    pub purge: Option<jiff::civil::Date>,
    #[serde(default)]
    pub barcodes: Vec<String>,
    /// A Swedish personnummer or samordningsnummer.
    #[serde(default)]
    pub national_id: Option<String>,
    /// Required for a patron under 18, with `terms_accepted` (the guardian's consent).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub guardian: Option<crate::domain::Guardian>,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Date)]
    pub terms_accepted: Option<jiff::civil::Date>,
    /// Register even though a patron of the same names and birth date exists.
    #[serde(default)]
    pub force: bool,
    /// Send the welcome (the e-mail invitation) with the registration; true when left out.
    #[serde(default)]
    pub invite: Option<bool>,
}

impl PatronBody {
    /// The engine's operation.
    pub fn operation(self) -> Operation {
        let none_if_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let new = crate::engine::NewPatron {
            no_invitation: !self.invite.unwrap_or(true),
            institution: self.institution,
            primary_id: self.primary_id,
            first_name: self.first_name,
            last_name: self.last_name,
            middle_name: none_if_empty(self.middle_name),
            title: none_if_empty(self.title),
            birth_date: self.birth_date,
            email: none_if_empty(self.email),
            phone: none_if_empty(self.phone),
            address: none_if_empty(self.address),
            postal_code: none_if_empty(self.postal_code),
            language: none_if_empty(self.language),
            user_group: none_if_empty(self.user_group),
            record_type: self.record_type,
            account_type: crate::domain::AccountType::Internal,
            expiry: self.expiry,
            purge: self.purge,
            barcodes: self.barcodes.into_iter().filter(|b| !b.trim().is_empty()).collect(),
            national_id: none_if_empty(self.national_id),
            guardian: self.guardian,
            terms_accepted: self.terms_accepted,
            pin: None,
        };
        Operation::AddPatron { new: Box::new(new), force: self.force }
    }
}

/// `POST /api/v1/patrons`: registers a patron (201 with the record and its ETag). A primary
/// id, identifier or e-mail another patron of the institution has is 409; the same names and
/// birth date as another patron is 422 naming them, unless `force`.
#[utoipa::path(
    post,
    path = "/api/v1/patrons",
    operation_id = "addPatron",
    tag = "patrons",
    summary = "Register a patron (`institution`, `primary_id`, `first_name`, `last_name`; optional `middle_name`, `title`, `birth_date`, `email`, `phone`, `address`, `postal_code`, `language`, `user_group`, `record_type`, `expiry`, `purge`, `barcodes`, `national_id`, `guardian` {name, contact} and `terms_accepted` for a minor, `force`)",
    request_body = PatronBody,
    responses((status = 201, description = "The patron"), (status = 403, description = "The caller's role may not add patrons.", body = Problem), (status = 404, description = "No such institution (or not one of the caller's).", body = Problem), (status = 409, description = "The primary id", body = Problem), (status = 422, description = "A missing or malformed field, a minor without guardian and consent, or a possible duplicate (same names and birth date; send `force`).", body = Problem))
)]
async fn add_patron(State(state): State<AdminState>, caller: Caller, b: Body<PatronBody>) -> Response {
    let n = match body(b) {
        Ok(n) => n,
        Err(r) => return r,
    };
    match state.engine.run(n.operation(), caller.by()).await {
        Ok(Receipt::Patron(p)) => {
            let mut r = tagged(&p);
            *r.status_mut() = StatusCode::CREATED;
            r
        }
        Ok(_) => refused(StatusCode::SERVICE_UNAVAILABLE, "unexpected receipt"),
        Err(e) => failed(e),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/patrons/{id}",
    operation_id = "getPatron",
    tag = "patrons",
    summary = "One patron, with its version in ETag",
    description = "The stored record without the PIN hash (`has_pin` says whether one is set).",
    params(("id" = u64, Path)),
    responses((status = 200, description = "The record; the `ETag` header is its version."), (status = 404, description = "No such patron.", body = Problem), (status = 401, description = "On the TCP listener, without the right bearer token.", body = Problem))
)]
async fn get_patron(State(state): State<AdminState>, caller: Caller, Path(id): Path<String>) -> Response {
    match visible(&state, &caller, &id).await {
        Ok(p) => tagged(&p),
        Err(r) => r,
    }
}

#[utoipa::path(
    patch,
    path = "/api/v1/patrons/{id}",
    operation_id = "editPatron",
    tag = "patrons",
    summary = "Change fields of a patron, if nobody changed it since it was read",
    description = "A JSON object of the fields to set, the ones `sip2d patron edit --set` takes, each with\na text value (null clears). `If-Match` must carry the ETag of the version the change\nwas made against; the check is made inside the engine's unit of work, so of two saves\nagainst one version exactly one is taken. Audited as \"admin (resource API)\".",
    params(("id" = u64, Path), ("If-Match" = String, Header)),
    request_body = PatronBody,
    responses((status = 200, description = "The changed record, with its new ETag."), (status = 400, description = "The body is not a JSON object of text values.", body = Problem), (status = 404, description = "No such patron.", body = Problem), (status = 412, description = "The patron changed since that version; nothing was written.", body = Problem), (status = 422, description = "A field that cannot be edited, or a value the register refuses; `error` says why.", body = Problem), (status = 428, description = "No If-Match.", body = Problem), (status = 401, description = "On the TCP listener, without the right bearer token.", body = Problem))
)]
async fn patch_patron(
    State(state): State<AdminState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<BTreeMap<String, Value>>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(id) = id.parse::<u64>() else { return refused(StatusCode::NOT_FOUND, format!("no patron {id}")) };
    let Some(tag) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) else {
        return refused(
            StatusCode::PRECONDITION_REQUIRED,
            "If-Match is required: send the ETag of the record you are changing",
        );
    };
    let tag = tag.trim().trim_start_matches("W/").trim_matches('"').to_string();
    let Json(fields) = match body {
        Ok(b) => b,
        Err(e) => return refused(StatusCode::BAD_REQUEST, format!("a JSON object of fields to set: {e}")),
    };
    let mut sets = Vec::with_capacity(fields.len());
    for (field, value) in fields {
        let value = match value {
            Value::String(s) => s,
            Value::Null => String::new(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            other => return refused(StatusCode::BAD_REQUEST, format!("{field}: a text value, not {other}")),
        };
        sets.push((field, value));
    }
    let op = Operation::EditPatron { patron: id, sets, expect: Some(tag) };
    match state.engine.run(op, caller.by()).await {
        Ok(Receipt::Patron(p)) => tagged(&p),
        Ok(_) => refused(StatusCode::SERVICE_UNAVAILABLE, "unexpected receipt"),
        Err(e) => failed(e),
    }
}

/// Runs a staff operation and shows what it changed: the patron (with its new ETag) or the fee.
async fn change(state: &AdminState, caller: &Caller, op: Operation) -> Response {
    match state.engine.run(op, caller.by()).await {
        Ok(Receipt::Patron(p)) => tagged(&p),
        Ok(Receipt::Fee(f)) => Json(json!(f)).into_response(),
        Ok(Receipt::Account(a)) => Json(account_json(&a)).into_response(),
        Ok(Receipt::Loan(l)) => Json(json!(l)).into_response(),
        // Refused, though what the refusal wrote stands (the patron told of a balance due).
        Ok(Receipt::Refused(r)) => failed(Error::Refused(r)),
        Ok(Receipt::Returned(loan)) => Json(json!({ "returned": loan })).into_response(),
        Ok(Receipt::Hold(h)) => Json(json!(h)).into_response(),
        Ok(Receipt::Staff(m)) => Json(staff_json(&m)).into_response(),
        Ok(Receipt::Notice(n)) => Json(json!(n)).into_response(),
        Ok(_) => Json(json!({ "done": true })).into_response(),
        Err(e) => failed(e),
    }
}

/// The body as `T`, or a 400 that says what is wrong with it.
#[allow(clippy::result_large_err)] // the handler's early answer, made at most once a request
fn body<T>(b: Result<Json<T>, axum::extract::rejection::JsonRejection>) -> Result<T, Response> {
    b.map(|Json(t)| t).map_err(|e| {
        // Too large is said as such (413); anything else wrong with the body is a 400.
        let status = if e.status() == StatusCode::PAYLOAD_TOO_LARGE { e.status() } else { StatusCode::BAD_REQUEST };
        refused(status, format!("the request body: {e}"))
    })
}

/// A numeric id from the path, or a 404 naming it.
#[allow(clippy::result_large_err)] // the handler's early answer, made at most once a request
fn number<T: std::str::FromStr>(raw: &str, what: &str) -> Result<T, Response> {
    raw.parse().map_err(|_| refused(StatusCode::NOT_FOUND, format!("no {what} {raw}")))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBlock {
    /// The block type (`sip2d institution block-type` lists them).
    r#type: String,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNote {
    #[serde(default = "general")]
    kind: String,
    text: String,
    /// Shown to the patron (on the kiosk screen, in self-service).
    #[serde(default)]
    public: bool,
}

fn general() -> String {
    "general".into()
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeeAction {
    #[serde(default)]
    amount: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

type Body<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

#[utoipa::path(
    post,
    path = "/api/v1/patrons/{id}/blocks",
    operation_id = "blockPatron",
    tag = "patrons",
    summary = "Block a patron (type and reason), audited",
    params(("id" = String, Path)),
    request_body = NewBlock,
    responses((status = 200, description = "The patron"), (status = 400, description = "The body is not an object with `type` and `reason`.", body = Problem), (status = 422, description = "An unknown block type (the known ones are named) or a reason the register refuses.", body = Problem))
)]
async fn add_block(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
    b: Body<NewBlock>,
) -> Response {
    let (id, b) = match (number::<u64>(&id, "patron"), body(b)) {
        (Ok(id), Ok(b)) => (id, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    change(&state, &caller, Operation::Block { patron: id, kind: b.r#type, note: b.reason }).await
}

#[utoipa::path(
    delete,
    path = "/api/v1/patrons/{id}/blocks/{type}",
    operation_id = "liftBlock",
    tag = "patrons",
    summary = "Lift the patron's active blocks of this type",
    params(("id" = String, Path), ("type" = String, Path)),
    responses((status = 200, description = "The patron"))
)]
async fn lift_block(
    State(state): State<AdminState>,
    caller: Caller,
    Path((id, kind)): Path<(String, String)>,
) -> Response {
    match number::<u64>(&id, "patron") {
        Ok(id) => change(&state, &caller, Operation::Unblock { patron: id, kind: Some(kind) }).await,
        Err(r) => r,
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/patrons/{id}/notes",
    operation_id = "addNote",
    tag = "patrons",
    summary = "Add a note (`kind`, `text`, `public`); public notes reach the kiosk screen",
    params(("id" = String, Path)),
    request_body = NewNote,
    responses((status = 200, description = "The patron"))
)]
async fn add_note(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
    b: Body<NewNote>,
) -> Response {
    let (id, n) = match (number::<u64>(&id, "patron"), body(b)) {
        (Ok(id), Ok(n)) => (id, n),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    change(&state, &caller, Operation::AddNote { patron: id, kind: n.kind, text: n.text, public: n.public }).await
}

#[utoipa::path(
    delete,
    path = "/api/v1/patrons/{id}/notes/{note}",
    operation_id = "removeNote",
    tag = "patrons",
    summary = "Remove a note",
    params(("id" = String, Path), ("note" = String, Path)),
    responses((status = 200, description = "The patron"), (status = 404, description = "No such patron or note.", body = Problem))
)]
async fn remove_note(
    State(state): State<AdminState>,
    caller: Caller,
    Path((id, note)): Path<(String, String)>,
) -> Response {
    match (number::<u64>(&id, "patron"), number::<u32>(&note, "note")) {
        (Ok(id), Ok(note)) => change(&state, &caller, Operation::RemoveNote { patron: id, note }).await,
        (Err(r), _) | (_, Err(r)) => r,
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewContact {
    /// `email`, `phone` or `address`.
    #[schema(value_type = String)]
    kind: crate::domain::ContactKind,
    value: String,
    /// Addresses only.
    #[serde(default)]
    postal_code: Option<String>,
    /// `home`, `work`, `school`, `mobile` or `other` (the default).
    #[serde(default, rename = "use")]
    #[schema(value_type = Option<String>)]
    usage: crate::domain::ContactUse,
}

/// Two numbers from the path (the patron's, and an entry's on them), or a 404 naming the bad one.
#[allow(clippy::result_large_err)] // the handler's early answer, made at most once a request
fn numbers(id: &str, entry: &str, what: &str) -> Result<(u64, u32), Response> {
    Ok((number::<u64>(id, "patron")?, number::<u32>(entry, what)?))
}

#[utoipa::path(
    post,
    path = "/api/v1/patrons/{id}/contacts",
    operation_id = "addContact",
    tag = "patrons",
    summary = "Add an e-mail address, phone number or postal address besides the preferred ones",
    description = "Checked as the preferred field of its kind is (the institution's patterns); an e-mail\naddress is unique in the institution, counting every patron's contacts.",
    params(("id" = String, Path)),
    request_body = NewContact,
    responses((status = 200, description = "The patron"), (status = 409, description = "The e-mail address is another patron's, or the patron has this contact already.", body = Problem), (status = 422, description = "Not a valid value, or as many contacts as `[register] max_contacts_per_patron`.", body = Problem))
)]
async fn add_contact(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
    b: Body<NewContact>,
) -> Response {
    let (id, c) = match (number::<u64>(&id, "patron"), body(b)) {
        (Ok(id), Ok(c)) => (id, c),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let op =
        Operation::AddContact { patron: id, kind: c.kind, value: c.value, postal_code: c.postal_code, usage: c.usage };
    change(&state, &caller, op).await
}

#[utoipa::path(
    delete,
    path = "/api/v1/patrons/{id}/contacts/{contact}",
    operation_id = "removeContact",
    tag = "patrons",
    summary = "Remove a contact",
    params(("id" = String, Path), ("contact" = String, Path)),
    responses((status = 200, description = "The patron"), (status = 404, description = "No such patron or contact.", body = Problem))
)]
async fn remove_contact(
    State(state): State<AdminState>,
    caller: Caller,
    Path((id, contact)): Path<(String, String)>,
) -> Response {
    match numbers(&id, &contact, "contact") {
        Ok((patron, contact)) => change(&state, &caller, Operation::RemoveContact { patron, contact }).await,
        Err(r) => r,
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/patrons/{id}/contacts/{contact}/preferred",
    operation_id = "preferContact",
    tag = "patrons",
    summary = "Make a contact the preferred one of its kind (notices and kiosks use it)",
    description = "The contact takes the record's `email`, `phone` or `address` (with `postal_code`), and\nthe value it replaces becomes the contact.",
    params(("id" = String, Path), ("contact" = String, Path)),
    responses((status = 200, description = "The patron"), (status = 404, description = "No such patron or contact.", body = Problem))
)]
async fn prefer_contact(
    State(state): State<AdminState>,
    caller: Caller,
    Path((id, contact)): Path<(String, String)>,
) -> Response {
    match numbers(&id, &contact, "contact") {
        Ok((patron, contact)) => change(&state, &caller, Operation::PreferContact { patron, contact }).await,
        Err(r) => r,
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewStatistic {
    /// A code of letters, digits, `-` and `_`, such as `distance-student`.
    category: String,
    #[serde(default)]
    note: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/patrons/{id}/statistics",
    operation_id = "addStatistic",
    tag = "patrons",
    summary = "Count the patron under a statistical category",
    params(("id" = String, Path)),
    request_body = NewStatistic,
    responses((status = 200, description = "The patron"), (status = 409, description = "The patron has this category already.", body = Problem), (status = 422, description = "Not a category code, or as many as `[register] max_statistics_per_patron`.", body = Problem))
)]
async fn add_statistic(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
    b: Body<NewStatistic>,
) -> Response {
    let (id, n) = match (number::<u64>(&id, "patron"), body(b)) {
        (Ok(id), Ok(n)) => (id, n),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    change(&state, &caller, Operation::AddStatistic { patron: id, category: n.category, note: n.note }).await
}

#[utoipa::path(
    delete,
    path = "/api/v1/patrons/{id}/statistics/{statistic}",
    operation_id = "removeStatistic",
    tag = "patrons",
    summary = "Remove a statistical category",
    params(("id" = String, Path), ("statistic" = String, Path)),
    responses((status = 200, description = "The patron"), (status = 404, description = "No such patron or category.", body = Problem))
)]
async fn remove_statistic(
    State(state): State<AdminState>,
    caller: Caller,
    Path((id, statistic)): Path<(String, String)>,
) -> Response {
    match numbers(&id, &statistic, "statistical category") {
        Ok((patron, statistic)) => change(&state, &caller, Operation::RemoveStatistic { patron, statistic }).await,
        Err(r) => r,
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFile {
    /// The file's name, for the download (a path is cut to its last part).
    #[serde(default)]
    name: Option<String>,
    /// The bytes, base64.
    #[schema(value_type = String, format = Byte)]
    content: crate::engine::ops::FileBytes,
}

#[utoipa::path(
    post,
    path = "/api/v1/patrons/{id}/attachments",
    operation_id = "addAttachment",
    tag = "patrons",
    summary = "Attach a small file to the record (its type is found from its bytes)",
    params(("id" = String, Path)),
    request_body = NewFile,
    responses((status = 200, description = "The patron, with the file under `attachments`"), (status = 413, description = "Larger than `[register] max_attachment_bytes`.", body = Problem), (status = 422, description = "Empty, or as many files as `[register] max_attachments_per_patron`.", body = Problem))
)]
async fn add_attachment(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
    b: Body<NewFile>,
) -> Response {
    let (id, f) = match (number::<u64>(&id, "patron"), body(b)) {
        (Ok(id), Ok(f)) => (id, f),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let name = f.name.unwrap_or_else(|| "attachment".into());
    change(&state, &caller, Operation::AddAttachment { patron: id, name, content: f.content }).await
}

/// A file's bytes, served so that no browser runs them: an attachment always downloads, a
/// picture is shown only as the image it was checked to be, and neither is sniffed.
pub(super) async fn file_response(state: &AdminState, caller: &Caller, id: &str, file: u32) -> Response {
    let p = match visible(state, caller, id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    match state.engine.query(Read::File { patron: p.id, file }).await {
        Ok(Answer::File(info, bytes)) => {
            let disposition = if file == 0 {
                "inline".to_string()
            } else {
                let safe: String = info
                    .name
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() || ".-_".contains(c) { c } else { '_' })
                    .collect();
                format!("attachment; filename=\"{safe}\"")
            };
            let headers = [
                (header::CONTENT_TYPE, info.media_type.clone()),
                (header::CONTENT_DISPOSITION, disposition),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff".into()),
                (header::CONTENT_SECURITY_POLICY, "default-src 'none'; sandbox".into()),
                (header::ETAG, format!("\"{}\"", info.sha256)),
                (header::CACHE_CONTROL, "private, no-store".into()),
            ];
            (headers, bytes.0).into_response()
        }
        Ok(_) => refused(StatusCode::SERVICE_UNAVAILABLE, "unexpected answer"),
        Err(e) => failed(e),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/patrons/{id}/attachments/{attachment}",
    operation_id = "getAttachment",
    tag = "patrons",
    summary = "Download an attachment",
    description = "Served as a download (`Content-Disposition: attachment`), with the type found from its\nbytes and `X-Content-Type-Options: nosniff`, so no browser runs what was uploaded.",
    params(("id" = String, Path), ("attachment" = String, Path)),
    responses((status = 200, description = "The file's bytes.", content_type = "application/octet-stream", body = String), (status = 404, description = "No such patron or attachment.", body = Problem))
)]
async fn get_attachment(
    State(state): State<AdminState>,
    caller: Caller,
    Path((id, attachment)): Path<(String, String)>,
) -> Response {
    match number::<u32>(&attachment, "attachment") {
        Ok(0) => refused(StatusCode::NOT_FOUND, "no attachment 0 (the picture is at .../picture)"),
        Ok(n) => file_response(&state, &caller, &id, n).await,
        Err(r) => r,
    }
}

#[utoipa::path(
    delete,
    path = "/api/v1/patrons/{id}/attachments/{attachment}",
    operation_id = "removeAttachment",
    tag = "patrons",
    summary = "Remove an attachment",
    params(("id" = String, Path), ("attachment" = String, Path)),
    responses((status = 200, description = "The patron"), (status = 404, description = "No such patron or attachment.", body = Problem))
)]
async fn remove_attachment(
    State(state): State<AdminState>,
    caller: Caller,
    Path((id, attachment)): Path<(String, String)>,
) -> Response {
    match numbers(&id, &attachment, "attachment") {
        Ok((_, 0)) => refused(StatusCode::NOT_FOUND, "no attachment 0 (the picture is at .../picture)"),
        Ok((patron, attachment)) => change(&state, &caller, Operation::RemoveAttachment { patron, attachment }).await,
        Err(r) => r,
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/patrons/{id}/picture",
    operation_id = "getPicture",
    tag = "patrons",
    summary = "The patron's picture",
    params(("id" = String, Path)),
    responses((status = 200, description = "The image.", content_type = "image/*", body = String), (status = 404, description = "No such patron, or no picture.", body = Problem))
)]
async fn get_picture(State(state): State<AdminState>, caller: Caller, Path(id): Path<String>) -> Response {
    file_response(&state, &caller, &id, 0).await
}

#[utoipa::path(
    put,
    path = "/api/v1/patrons/{id}/picture",
    operation_id = "setPicture",
    tag = "patrons",
    summary = "Set the patron's picture (a PNG, JPEG, GIF or WebP image)",
    params(("id" = String, Path)),
    request_body = NewFile,
    responses((status = 200, description = "The patron"), (status = 413, description = "Larger than `[register] max_picture_bytes`.", body = Problem), (status = 422, description = "Not an image of those kinds.", body = Problem))
)]
async fn set_picture(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
    b: Body<NewFile>,
) -> Response {
    let (id, f) = match (number::<u64>(&id, "patron"), body(b)) {
        (Ok(id), Ok(f)) => (id, f),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    change(&state, &caller, Operation::SetPicture { patron: id, content: Some(f.content) }).await
}

#[utoipa::path(
    delete,
    path = "/api/v1/patrons/{id}/picture",
    operation_id = "removePicture",
    tag = "patrons",
    summary = "Remove the patron's picture",
    params(("id" = String, Path)),
    responses((status = 200, description = "The patron"), (status = 404, description = "No such patron, or no picture.", body = Problem))
)]
async fn remove_picture(State(state): State<AdminState>, caller: Caller, Path(id): Path<String>) -> Response {
    match number::<u64>(&id, "patron") {
        Ok(id) => change(&state, &caller, Operation::SetPicture { patron: id, content: None }).await,
        Err(r) => r,
    }
}

/// Lets patron `id` act for `other` (a proxy: borrowing and collecting holds on their card).
#[utoipa::path(
    put,
    path = "/api/v1/patrons/{id}/proxy-for/{other}",
    operation_id = "allowProxy",
    tag = "patrons",
    summary = "Let patron `id` act for patron `other` (borrow and collect holds on their card)",
    params(("id" = String, Path), ("other" = String, Path)),
    responses((status = 200, description = "The proxy patron"), (status = 404, description = "No such patron.", body = Problem), (status = 422, description = "Refused: the patron themself, or one they already act for.", body = Problem))
)]
async fn allow_proxy(
    State(state): State<AdminState>,
    caller: Caller,
    Path((id, other)): Path<(String, String)>,
) -> Response {
    set_proxy(&state, &caller, &id, &other, true).await
}

#[utoipa::path(
    delete,
    path = "/api/v1/patrons/{id}/proxy-for/{other}",
    operation_id = "revokeProxy",
    tag = "patrons",
    summary = "Stop patron `id` acting for patron `other`",
    params(("id" = String, Path), ("other" = String, Path)),
    responses((status = 200, description = "The proxy patron"), (status = 422, description = "Refused: the patron does not act for them.", body = Problem))
)]
async fn revoke_proxy(
    State(state): State<AdminState>,
    caller: Caller,
    Path((id, other)): Path<(String, String)>,
) -> Response {
    set_proxy(&state, &caller, &id, &other, false).await
}

async fn set_proxy(state: &AdminState, caller: &Caller, id: &str, other: &str, allow: bool) -> Response {
    match (number::<u64>(id, "patron"), number::<u64>(other, "patron")) {
        (Ok(proxy), Ok(for_whom)) => change(state, caller, Operation::SetProxy { proxy, for_whom, allow }).await,
        (Err(r), _) | (_, Err(r)) => r,
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTransfer {
    /// The institution the patron moves to.
    to: String,
}

/// Asks to move patron `id` to another institution; that institution's staff decide.
#[utoipa::path(
    post,
    path = "/api/v1/patrons/{id}/transfer",
    operation_id = "requestTransfer",
    tag = "patrons",
    summary = "Ask to move the patron to the institution `to`; its staff accept or reject",
    params(("id" = String, Path)),
    request_body = NewTransfer,
    responses((status = 200, description = "The patron"), (status = 404, description = "No such patron or institution.", body = Problem), (status = 422, description = "Refused: the patron's own institution, or a move already waiting.", body = Problem))
)]
async fn request_transfer(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
    b: Body<NewTransfer>,
) -> Response {
    match (number::<u64>(&id, "patron"), body(b)) {
        (Ok(patron), Ok(t)) => change(&state, &caller, Operation::RequestTransfer { patron, to: t.to }).await,
        (Err(r), _) | (_, Err(r)) => r,
    }
}

/// Accepts or rejects the move asked for patron `id`.
#[utoipa::path(
    post,
    path = "/api/v1/patrons/{id}/transfer/{decision}",
    operation_id = "decideTransfer",
    tag = "patrons",
    summary = "Accept or reject (`decision`) the move waiting for the patron",
    params(("id" = String, Path), ("decision" = String, Path)),
    responses((status = 200, description = "The patron"), (status = 404, description = "A decision other than accept or reject.", body = Problem), (status = 422, description = "No move is waiting.", body = Problem))
)]
async fn decide_transfer(
    State(state): State<AdminState>,
    caller: Caller,
    Path((id, decision)): Path<(String, String)>,
) -> Response {
    let patron = match number::<u64>(&id, "patron") {
        Ok(p) => p,
        Err(r) => return r,
    };
    let accept = match decision.as_str() {
        "accept" => true,
        "reject" => false,
        other => return refused(StatusCode::NOT_FOUND, format!("no transfer decision {other}: accept or reject")),
    };
    change(&state, &caller, Operation::DecideTransfer { patron, accept }).await
}

#[utoipa::path(
    get,
    path = "/api/v1/patrons/{id}/fees",
    operation_id = "patronFees",
    tag = "patrons",
    summary = "The patron's fees and balance (a disputed fee is left out of the balance)",
    params(("id" = String, Path)),
    responses((status = 200, description = "`fees` and `balance`."))
)]
async fn fees(State(state): State<AdminState>, caller: Caller, Path(id): Path<String>) -> Response {
    let id = match visible(&state, &caller, &id).await {
        Ok(p) => p.id,
        Err(r) => return r,
    };
    match state.engine.query(Read::Fees(id)).await {
        Ok(Answer::Fees(fees, balance)) => {
            Json(json!({ "fees": fees, "balance": balance.to_string() })).into_response()
        }
        Ok(_) => refused(StatusCode::SERVICE_UNAVAILABLE, "unexpected answer"),
        Err(e) => failed(e),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/patrons/{id}/history",
    operation_id = "patronHistory",
    tag = "patrons",
    summary = "The audit history of the patron, oldest first, with who made each change",
    params(("id" = String, Path)),
    responses((status = 200, description = "`history`: entries with at, by, action and changes."))
)]
async fn history(State(state): State<AdminState>, caller: Caller, Path(id): Path<String>) -> Response {
    let id = match visible(&state, &caller, &id).await {
        Ok(p) => p.id,
        Err(r) => return r,
    };
    match state.engine.query(Read::History(id)).await {
        Ok(Answer::History(entries)) => Json(json!({ "history": entries })).into_response(),
        Ok(_) => refused(StatusCode::SERVICE_UNAVAILABLE, "unexpected answer"),
        Err(e) => failed(e),
    }
}

/// Answers a read: the engine's answer shaped by `show`, or the refusal.
async fn read(state: &AdminState, q: Read, show: impl FnOnce(Answer) -> Option<Value>) -> Response {
    match state.engine.query(q).await {
        Ok(a) => match show(a) {
            Some(v) => Json(v).into_response(),
            None => refused(StatusCode::SERVICE_UNAVAILABLE, "unexpected answer"),
        },
        Err(e) => failed(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankParams {
    institution: String,
}

/// `GET /api/v1/deleted-patrons?institution=MAIN`: the bank of deleted users, newest first
/// as the register lists them; `POST /api/v1/patrons/{id}/restore` brings one back.
#[utoipa::path(
    get,
    path = "/api/v1/deleted-patrons",
    operation_id = "deletedPatrons",
    tag = "patrons",
    summary = "The bank of deleted users at an institution",
    params(("institution" = String, Query)),
    responses((status = 200, description = "`patrons`, as `GET /api/v1/patrons/{id}` shows each."), (status = 400, description = "No institution given.", body = Problem))
)]
async fn deleted(
    State(state): State<AdminState>,
    caller: Caller,
    params: Result<Query<BankParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(p) = match params {
        Ok(p) => p,
        Err(e) => return refused(StatusCode::BAD_REQUEST, format!("give institution: {e}")),
    };
    if let Err(r) = ours(&caller, &p.institution) {
        return r;
    }
    let filter = crate::engine::ListFilter { institution: Some(p.institution), deleted: true, ..Default::default() };
    read(&state, Read::Patrons(filter), |a| match a {
        Answer::Patrons(ps) => Some(json!({ "patrons": ps.iter().map(patron_json).collect::<Vec<_>>() })),
        _ => None,
    })
    .await
}

/// `DELETE /api/v1/patrons/{id}`: into the bank of deleted users; refused while the patron
/// owes money or has a loan.
#[utoipa::path(
    delete,
    path = "/api/v1/patrons/{id}",
    operation_id = "deletePatron",
    tag = "patrons",
    summary = "Move a patron to the bank of deleted users",
    params(("id" = u64, Path)),
    responses((status = 200, description = "The patron as deleted."), (status = 422, description = "Refused while the patron owes money or has a loan; `error` says which.", body = Problem))
)]
async fn delete_patron(State(state): State<AdminState>, caller: Caller, Path(id): Path<String>) -> Response {
    match number::<u64>(&id, "patron") {
        Ok(id) => change(&state, &caller, Operation::DeletePatron { patron: id }).await,
        Err(r) => r,
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/patrons/{id}/restore",
    operation_id = "restorePatron",
    tag = "patrons",
    summary = "Bring a patron back from the bank of deleted users",
    params(("id" = String, Path)),
    responses((status = 200, description = "The patron"), (status = 422, description = "The register refuses (not deleted, its primary id taken meanwhile...).", body = Problem))
)]
async fn restore_patron(State(state): State<AdminState>, caller: Caller, Path(id): Path<String>) -> Response {
    match number::<u64>(&id, "patron") {
        Ok(id) => change(&state, &caller, Operation::RestorePatron { patron: id }).await,
        Err(r) => r,
    }
}

/// `POST /api/v1/patrons/{id}/invitation`: the welcome written to the outbox again.
#[utoipa::path(
    post,
    path = "/api/v1/patrons/{id}/invitation",
    operation_id = "invitePatron",
    tag = "patrons",
    summary = "Send the e-mail invitation (the welcome) again, or for the first time",
    params(("id" = u64, Path)),
    responses((status = 200, description = "The notice, as written to the outbox."), (status = 404, description = "No such patron.", body = Problem), (status = 422, description = "No e-mail address to send it to, or the patron is deleted.", body = Problem))
)]
async fn invite_patron(State(state): State<AdminState>, caller: Caller, Path(id): Path<String>) -> Response {
    match number::<u64>(&id, "patron") {
        Ok(id) => change(&state, &caller, Operation::Invite { patron: id }).await,
        Err(r) => r,
    }
}

/// `GET /api/v1/institutions`.
#[utoipa::path(
    get,
    path = "/api/v1/institutions",
    operation_id = "institutions",
    tag = "register",
    summary = "The institutions, with their policies and block types",
    responses((status = 200, description = "`institutions`."))
)]
async fn institutions(State(state): State<AdminState>, caller: Caller) -> Response {
    read(&state, Read::Institutions, |a| match a {
        Answer::Institutions(mut i) => {
            i.retain(|i| caller.covers(&i.code));
            Some(json!({ "institutions": i }))
        }
        _ => None,
    })
    .await
}

/// `GET /api/v1/accounts`: terminal accounts with their profiles, never the password hash.
#[utoipa::path(
    get,
    path = "/api/v1/accounts",
    operation_id = "accounts",
    tag = "terminal accounts",
    summary = "The terminal accounts with their profiles (never the password hash)",
    responses((status = 200, description = "`accounts`: login, institution, location, profile."))
)]
async fn accounts(State(state): State<AdminState>, caller: Caller) -> Response {
    read(&state, Read::Accounts, |a| match a {
        Answer::Accounts(list) => Some(json!({
            "accounts": list.iter().filter(|a| caller.covers(&a.institution)).map(account_json).collect::<Vec<_>>()
        })),
        _ => None,
    })
    .await
}

/// A terminal account as the API shows it: never its password hash.
fn account_json(a: &crate::domain::Account) -> Value {
    json!({ "login": a.login, "institution": a.institution, "location": a.location, "profile": a.profile })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    login: String,
    /// At least 8 characters; stored as an Argon2 hash.
    password: String,
    institution: String,
    location: Option<String>,
}

/// The password as stored by `hash` (Argon2, on the blocking pool: it takes tens of
/// milliseconds): a terminal's ([`crate::engine::hash_password`]) or a staff member's.
async fn password_hash(
    password: String,
    hash: fn(&str) -> Result<String, crate::engine::Error>,
) -> Result<String, Response> {
    hashed(password, hash).await.map_err(failed)
}

/// A password hashed by `hash` off the async threads (the API's and the console's forms).
pub(super) async fn hashed(password: String, hash: fn(&str) -> Result<String, Error>) -> Result<String, Error> {
    tokio::task::spawn_blocking(move || hash(&password))
        .await
        .unwrap_or_else(|e| Err(Error::NotDone(format!("hashing the password failed: {e}").into())))
}

/// `POST /api/v1/accounts`: a new self-check terminal account.
#[utoipa::path(
    post,
    path = "/api/v1/accounts",
    operation_id = "addAccount",
    tag = "terminal accounts",
    summary = "Add a self-check terminal account (`login`, `password` of at least 8 characters, `institution`, optional `location`)",
    request_body = NewAccount,
    responses((status = 200, description = "The account (never the password or its hash)."), (status = 404, description = "No such institution.", body = Problem), (status = 409, description = "The login is taken.", body = Problem), (status = 422, description = "Refused: a short password or a login with spaces.", body = Problem))
)]
async fn add_account(State(state): State<AdminState>, caller: Caller, b: Body<NewAccount>) -> Response {
    let n = match body(b) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let password_hash = match password_hash(n.password, crate::engine::hash_password).await {
        Ok(h) => h,
        Err(r) => return r,
    };
    let op = Operation::AddAccount { login: n.login, password_hash, institution: n.institution, location: n.location };
    change(&state, &caller, op).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    password: String,
}

/// `PUT /api/v1/accounts/{login}/password`.
#[utoipa::path(
    put,
    path = "/api/v1/accounts/{login}/password",
    operation_id = "setAccountPassword",
    tag = "terminal accounts",
    summary = "Set the account's password (`password`, at least 8 characters)",
    params(("login" = String, Path)),
    request_body = NewPassword,
    responses((status = 200, description = "The account."), (status = 404, description = "No such account.", body = Problem), (status = 422, description = "The password is too short.", body = Problem))
)]
async fn set_account_password(
    State(state): State<AdminState>,
    caller: Caller,
    Path(login): Path<String>,
    b: Body<NewPassword>,
) -> Response {
    let n = match body(b) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let password_hash = match password_hash(n.password, crate::engine::hash_password).await {
        Ok(h) => h,
        Err(r) => return r,
    };
    change(&state, &caller, Operation::SetAccountPassword { login, password_hash }).await
}

/// `PATCH /api/v1/accounts/{login}/profile` with `{"key": "value", ...}`: sets each key; an
/// empty value removes it. The profile must still be valid as a whole, or nothing changes.
#[utoipa::path(
    patch,
    path = "/api/v1/accounts/{login}/profile",
    operation_id = "setAccountProfile",
    tag = "terminal accounts",
    summary = "Set profile keys (`{\"key\": \"value\"}`; an empty value removes the key); the whole profile must stay valid",
    params(("login" = String, Path)),
    request_body = std::collections::BTreeMap<String, String>,
    responses((status = 200, description = "The account with its profile."), (status = 404, description = "No such account.", body = Problem), (status = 422, description = "An unknown key or value; nothing changed.", body = Problem))
)]
async fn set_account_profile(
    State(state): State<AdminState>,
    caller: Caller,
    Path(login): Path<String>,
    b: Body<std::collections::BTreeMap<String, String>>,
) -> Response {
    let sets = match body(b) {
        Ok(m) => m.into_iter().collect(),
        Err(r) => return r,
    };
    change(&state, &caller, Operation::SetAccountProfile { login, sets }).await
}

/// `GET /api/v1/patrons/{id}/loans`.
#[utoipa::path(
    get,
    path = "/api/v1/patrons/{id}/loans",
    operation_id = "patronLoans",
    tag = "patrons",
    summary = "The patron's loans",
    params(("id" = String, Path)),
    responses((status = 200, description = "`loans`."), (status = 404, description = "No such patron.", body = Problem))
)]
async fn loans(State(state): State<AdminState>, caller: Caller, Path(id): Path<String>) -> Response {
    let id = match visible(&state, &caller, &id).await {
        Ok(p) => p.id,
        Err(r) => return r,
    };
    read(&state, Read::Loans { patron: Some(id) }, |a| match a {
        Answer::Loans(loans) => Some(json!({ "loans": loans })),
        _ => None,
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLoan {
    /// The item's barcode.
    item: String,
    /// The patron accepts the item's rental fee.
    #[serde(default)]
    accept_fee: bool,
}

/// `POST /api/v1/patrons/{id}/loans`: lends an item at the desk by the one lending decision
/// kiosks get too (an item the patron has already is renewed).
#[utoipa::path(
    post,
    path = "/api/v1/patrons/{id}/loans",
    operation_id = "lend",
    tag = "patrons",
    summary = "Lend an item at the desk (`item`, `accept_fee`) by the same lending decision kiosks get; an item the patron has is renewed",
    params(("id" = String, Path)),
    request_body = NewLoan,
    responses((status = 200, description = "The loan."), (status = 404, description = "No such patron or item.", body = Problem), (status = 422, description = "Refused, with the reason (blocked, on loan to another, held for another, fee not accepted...).", body = Problem))
)]
async fn lend(State(state): State<AdminState>, caller: Caller, Path(id): Path<String>, b: Body<NewLoan>) -> Response {
    match (number::<u64>(&id, "patron"), body(b)) {
        (Ok(patron), Ok(n)) => {
            change(&state, &caller, Operation::Lend { patron, item: n.item, accept_fee: n.accept_fee }).await
        }
        (Err(r), _) | (_, Err(r)) => r,
    }
}

/// `POST /api/v1/items/{barcode}/checkin`: takes the item back at the desk.
#[utoipa::path(
    post,
    path = "/api/v1/items/{barcode}/checkin",
    operation_id = "checkIn",
    tag = "circulation",
    summary = "Take an item back at the desk",
    params(("barcode" = String, Path)),
    responses((status = 200, description = "`returned`: the loan it ended, or null when it was not on loan."), (status = 404, description = "No such item.", body = Problem))
)]
async fn check_in(State(state): State<AdminState>, caller: Caller, Path(barcode): Path<String>) -> Response {
    change(&state, &caller, Operation::Return { item: barcode }).await
}

/// `GET /api/v1/patrons/{id}/holds`: the patron's holds with their places in the queues.
#[utoipa::path(
    get,
    path = "/api/v1/patrons/{id}/holds",
    operation_id = "patronHolds",
    tag = "patrons",
    summary = "The patron's holds with their places in the queues",
    params(("id" = String, Path)),
    responses((status = 200, description = "`holds`: each `hold` with its `position`."), (status = 404, description = "No such patron.", body = Problem))
)]
async fn holds(State(state): State<AdminState>, caller: Caller, Path(id): Path<String>) -> Response {
    let id = match visible(&state, &caller, &id).await {
        Ok(p) => p.id,
        Err(r) => return r,
    };
    read(&state, Read::Holds { patron: Some(id), item: None }, |a| match a {
        Answer::Holds(list) => Some(json!({ "holds": list.iter().map(|q| json!({
            "hold": q.hold, "position": q.position,
        })).collect::<Vec<_>>() })),
        _ => None,
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewHold {
    /// One copy, by barcode; or `title`: any copy of it.
    item: Option<String>,
    title: Option<String>,
    /// Where the patron collects it.
    pickup: String,
    /// The last day the patron wants it (YYYY-MM-DD).
    #[schema(value_type = Option<String>, format = Date)]
    expires: Option<jiff::civil::Date>,
}

/// `POST /api/v1/patrons/{id}/holds`.
#[utoipa::path(
    post,
    path = "/api/v1/patrons/{id}/holds",
    operation_id = "placeHold",
    tag = "patrons",
    summary = "Place a hold (`item` or `title`, `pickup`, optional `expires` as YYYY-MM-DD)",
    params(("id" = String, Path)),
    request_body = NewHold,
    responses((status = 200, description = "The hold."), (status = 404, description = "No such patron or item.", body = Problem), (status = 422, description = "Refused: both or neither of item and title, or the rules refuse it.", body = Problem))
)]
async fn place_hold(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
    b: Body<NewHold>,
) -> Response {
    let (patron, n) = match (number::<u64>(&id, "patron"), body(b)) {
        (Ok(p), Ok(n)) => (p, n),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let target = match (n.item, n.title) {
        (Some(item), None) => crate::engine::HoldTarget::Item(item),
        (None, Some(title)) => crate::engine::HoldTarget::Title(title),
        _ => return refused(StatusCode::UNPROCESSABLE_ENTITY, "a hold names either an item or a title"),
    };
    change(&state, &caller, Operation::PlaceHold { patron, target, pickup: n.pickup, expires: n.expires }).await
}

/// `DELETE /api/v1/holds/{hold}`.
#[utoipa::path(
    delete,
    path = "/api/v1/holds/{hold}",
    operation_id = "cancelHold",
    tag = "circulation",
    summary = "Cancel a hold",
    params(("hold" = String, Path)),
    responses((status = 200, description = "Cancelled."), (status = 404, description = "No such hold.", body = Problem))
)]
async fn cancel_hold(State(state): State<AdminState>, caller: Caller, Path(hold): Path<String>) -> Response {
    match number::<u64>(&hold, "hold") {
        Ok(hold) => change(&state, &caller, Operation::CancelHold { hold }).await,
        Err(r) => r,
    }
}

/// A staff account as the API shows it: never its password hash or token digests; a lock
/// only while it holds.
fn staff_json(m: &crate::domain::Staff) -> Value {
    let now = jiff::Timestamp::now();
    json!({
        "login": m.login, "name": m.name, "role": m.role, "institutions": m.institutions,
        "locked_until": m.locked_until.filter(|t| *t > now), "last_login": m.last_login,
        "tokens": m.tokens.iter().map(|t| json!({ "id": t.id, "label": t.label, "created": t.created })).collect::<Vec<_>>(),
        "history": m.history,
    })
}

/// Whether `caller` sees staff member `m`: the system all; a member those whose institutions
/// are all theirs, and themselves.
pub(super) fn sees_member(caller: &Caller, m: &crate::domain::Staff) -> bool {
    match caller {
        Caller::System => true,
        Caller::Staff(me) => me.login == m.login || m.institutions.iter().all(|i| me.covers(i)),
    }
}

/// `GET /api/v1/me`: who the request is from.
#[utoipa::path(
    get,
    path = "/api/v1/me",
    operation_id = "me",
    tag = "staff",
    summary = "Who the request is from (a staff member's account, or `{\"system\": true}`)",
    responses((status = 200, description = "The staff account (no password hash"))
)]
async fn me(caller: Caller) -> Response {
    match caller {
        Caller::System => Json(json!({ "system": true })).into_response(),
        Caller::Staff(m) => Json(staff_json(&m)).into_response(),
    }
}

/// `GET /api/v1/staff`.
#[utoipa::path(
    get,
    path = "/api/v1/staff",
    operation_id = "staffList",
    tag = "staff",
    summary = "Staff accounts (a member sees those whose institutions are all theirs)",
    responses((status = 200, description = "`staff`: login, name, role, institutions, locked_until, last_login, tokens (id, label, created), history."))
)]
async fn staff_list(State(state): State<AdminState>, caller: Caller) -> Response {
    read(&state, Read::StaffList, |a| match a {
        Answer::StaffList(all) => Some(json!({
            "staff": all.iter().filter(|m| sees_member(&caller, m)).map(staff_json).collect::<Vec<_>>()
        })),
        _ => None,
    })
    .await
}

/// `GET /api/v1/staff/{login}`.
#[utoipa::path(
    get,
    path = "/api/v1/staff/{login}",
    operation_id = "staffMember",
    tag = "staff",
    summary = "One staff account",
    params(("login" = String, Path)),
    responses((status = 200, description = "The account."), (status = 404, description = "No such account (or not one the caller sees).", body = Problem))
)]
async fn staff_member(State(state): State<AdminState>, caller: Caller, Path(login): Path<String>) -> Response {
    match state.engine.query(Read::Staff(login.clone())).await {
        Ok(Answer::Staff(m)) if sees_member(&caller, &m) => Json(staff_json(&m)).into_response(),
        Ok(Answer::Staff(_)) => failed(Error::Refused(Refusal::NoStaff(login))),
        Ok(_) => refused(StatusCode::SERVICE_UNAVAILABLE, "unexpected answer"),
        Err(e) => failed(e),
    }
}

#[allow(clippy::result_large_err)] // the handler's early answer, made at most once a request
fn role(raw: &str) -> Result<crate::domain::Role, Response> {
    crate::domain::Role::parse(raw).ok_or_else(|| {
        let all: Vec<&str> = crate::domain::Role::ALL.iter().map(|r| r.code()).collect();
        refused(StatusCode::UNPROCESSABLE_ENTITY, format!("role '{raw}' is none of {}", all.join(", ")))
    })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewStaff {
    login: String,
    name: String,
    /// At least 10 characters; stored as an Argon2 hash.
    password: String,
    role: String,
    institutions: Vec<String>,
}

/// `POST /api/v1/staff`: a new staff account (a User Administrator gives at most their own
/// role, for their own institutions).
#[utoipa::path(
    post,
    path = "/api/v1/staff",
    operation_id = "addStaff",
    tag = "staff",
    summary = "Add a staff account (`login`, `name`, `password` of at least 10 characters, `role`, `institutions`)",
    request_body = NewStaff,
    responses((status = 200, description = "The account."), (status = 403, description = "The caller's role may not give that role (or manage staff at all).", body = Problem), (status = 404, description = "No such institution", body = Problem), (status = 409, description = "The login is taken.", body = Problem), (status = 422, description = "A short password", body = Problem))
)]
async fn add_staff(State(state): State<AdminState>, caller: Caller, b: Body<NewStaff>) -> Response {
    let n = match body(b) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let role = match role(&n.role) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let password_hash = match password_hash(n.password, crate::engine::hash_staff_password).await {
        Ok(h) => h,
        Err(r) => return r,
    };
    let op = Operation::AddStaff { login: n.login, name: n.name, password_hash, role, institutions: n.institutions };
    change(&state, &caller, op).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StaffChange {
    name: Option<String>,
    role: Option<String>,
    institutions: Option<Vec<String>>,
}

/// `PATCH /api/v1/staff/{login}`: name, role, institutions (given ones replace all).
#[utoipa::path(
    patch,
    path = "/api/v1/staff/{login}",
    operation_id = "changeStaff",
    tag = "staff",
    summary = "Change `name`, `role` or `institutions` (given ones replace all)",
    params(("login" = String, Path)),
    request_body = StaffChange,
    responses((status = 200, description = "The account."), (status = 403, description = "The caller may not give that role or manage this member.", body = Problem), (status = 404, description = "No such account or institution.", body = Problem))
)]
async fn change_staff(
    State(state): State<AdminState>,
    caller: Caller,
    Path(login): Path<String>,
    b: Body<StaffChange>,
) -> Response {
    let c = match body(b) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let role = match c.role.as_deref().map(role).transpose() {
        Ok(r) => r,
        Err(r) => return r,
    };
    change(&state, &caller, Operation::ChangeStaff { login, name: c.name, role, institutions: c.institutions }).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewStaffPassword {
    password: String,
    /// A member changing their own gives the one they have.
    #[serde(default)]
    current_password: Option<String>,
}

/// `PUT /api/v1/staff/{login}/password` `{"password", "current_password"}`: one's own (with
/// the current one), or that of a member one manages.
#[utoipa::path(
    put,
    path = "/api/v1/staff/{login}/password",
    operation_id = "setStaffPassword",
    tag = "staff",
    summary = "Set a staff password (`password`, at least 10 characters); one's own (with `current_password`), or a managed member's (a role below the caller's); lifts a lock",
    params(("login" = String, Path)),
    request_body = NewStaffPassword,
    responses((status = 200, description = "The account."), (status = 403, description = "Not the caller's to change.", body = Problem), (status = 404, description = "No such account.", body = Problem), (status = 422, description = "The password is too short.", body = Problem))
)]
async fn set_staff_password(
    State(state): State<AdminState>,
    caller: Caller,
    axum::Extension(peer): axum::Extension<crate::net::http::Peer>,
    Path(login): Path<String>,
    b: Body<NewStaffPassword>,
) -> Response {
    let n = match body(b) {
        Ok(n) => n,
        Err(r) => return r,
    };
    // Checked here like a login (Argon2 is slow); the engine checks the hash is still theirs.
    let matched = match (&caller, &n.current_password) {
        (Caller::Staff(me), Some(current)) if me.login == login => {
            let ip = peer.0.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
            let right = state.server.check_staff_password(current, &me.password_hash, ip).await;
            right.then(|| me.password_hash.clone())
        }
        _ => None,
    };
    let password_hash = match password_hash(n.password, crate::engine::hash_staff_password).await {
        Ok(h) => h,
        Err(r) => return r,
    };
    change(&state, &caller, Operation::SetStaffPassword { login, password_hash, matched }).await
}

/// `POST /api/v1/staff/{login}/unlock`.
#[utoipa::path(
    post,
    path = "/api/v1/staff/{login}/unlock",
    operation_id = "unlockStaff",
    tag = "staff",
    summary = "Lift the lock that wrong passwords set",
    params(("login" = String, Path)),
    responses((status = 200, description = "The account."), (status = 403, description = "The caller may not manage this member.", body = Problem), (status = 404, description = "No such account.", body = Problem))
)]
async fn unlock_staff(State(state): State<AdminState>, caller: Caller, Path(login): Path<String>) -> Response {
    change(&state, &caller, Operation::UnlockStaff { login }).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    label: String,
}

/// `POST /api/v1/staff/{login}/tokens` `{"label"}`: a bearer token, shown in this answer only.
#[utoipa::path(
    post,
    path = "/api/v1/staff/{login}/tokens",
    operation_id = "addStaffToken",
    tag = "staff",
    summary = "Make a bearer token for an integration (`label`); only for oneself (or by the system); the token is in this answer only",
    params(("login" = String, Path)),
    request_body = NewToken,
    responses((status = 201, description = "`id` and `token` (send it as `Authorization: Bearer sip2d_...`)."), (status = 403, description = "Not the caller's to give.", body = Problem), (status = 404, description = "No such account.", body = Problem))
)]
async fn add_staff_token(
    State(state): State<AdminState>,
    caller: Caller,
    Path(login): Path<String>,
    b: Body<NewToken>,
) -> Response {
    let n = match body(b) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let token = match crate::domain::secret::new_token() {
        Ok(t) => t,
        Err(e) => return refused(StatusCode::SERVICE_UNAVAILABLE, format!("no randomness for a token: {e}")),
    };
    let digest = crate::domain::secret::token_digest(&token);
    match state.engine.run(Operation::AddStaffToken { login, label: n.label, digest }, caller.by()).await {
        Ok(Receipt::Staff(m)) => {
            let id = m.tokens.last().map(|t| t.id).unwrap_or_default();
            (StatusCode::CREATED, Json(json!({ "id": id, "token": token }))).into_response()
        }
        Ok(_) => refused(StatusCode::SERVICE_UNAVAILABLE, "unexpected receipt"),
        Err(e) => failed(e),
    }
}

/// `DELETE /api/v1/staff/{login}/tokens/{id}`.
#[utoipa::path(
    delete,
    path = "/api/v1/staff/{login}/tokens/{token}",
    operation_id = "revokeStaffToken",
    tag = "staff",
    summary = "Revoke a bearer token by its number",
    params(("login" = String, Path), ("token" = String, Path)),
    responses((status = 200, description = "The account."), (status = 404, description = "No such account.", body = Problem), (status = 422, description = "No such token.", body = Problem))
)]
async fn revoke_staff_token(
    State(state): State<AdminState>,
    caller: Caller,
    Path((login, token)): Path<(String, String)>,
) -> Response {
    match number::<u32>(&token, "token") {
        Ok(token) => change(&state, &caller, Operation::RevokeStaffToken { login, token }).await,
        Err(r) => r,
    }
}

/// `DELETE /api/v1/staff/{login}`.
#[utoipa::path(
    delete,
    path = "/api/v1/staff/{login}",
    operation_id = "removeStaff",
    tag = "staff",
    summary = "Remove a staff account (not one's own)",
    params(("login" = String, Path)),
    responses((status = 200, description = "Removed."), (status = 403, description = "The caller may not manage this member.", body = Problem), (status = 404, description = "No such account.", body = Problem))
)]
async fn remove_staff(State(state): State<AdminState>, caller: Caller, Path(login): Path<String>) -> Response {
    change(&state, &caller, Operation::RemoveStaff { login }).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    login: String,
    password: String,
}

/// An Argon2 hash of nothing anyone knows, checked when the login names no account, so
/// that a wrong login takes as long as a wrong password (and names cannot be probed).
const NO_ACCOUNT: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2lwMmQtbm8tYWNjb3VudA$3ThZfH3SWp0wVtGcGXyLHPsmzDO6x6wJ05n3bRX0Dm0";

/// `POST /api/v1/session` `{"login", "password"}`: a staff member logs in. The password is
/// checked (Argon2, on the places kiosks' logins share), then the engine decides inside the
/// commit: five wrong in a row lock the account for a while, and a locked one is refused
/// even with the right password. A refusal comes after a pause that grows with the address's
/// failures. Opens a session: the cookie (HttpOnly, Secure, SameSite=Strict) and, in the
/// answer, the CSRF token every change must carry in `X-CSRF-Token`.
#[utoipa::path(
    post,
    path = "/api/v1/session",
    operation_id = "logIn",
    tag = "staff",
    summary = "Log in (`login`, `password`); opens a session",
    description = "The password is checked, then the engine decides inside the commit: five wrong ones\nin a row lock the account for `staff_lockout_minutes`, and a locked account is refused\neven the right password. A refusal comes after a pause that grows with the address's\nfailures. An unknown login is answered as a wrong password.",
    request_body = Login,
    responses((status = 200, description = "The account and `csrf`; `Set-Cookie: sip2d_session=...; HttpOnly; Secure; SameSite=Strict`. Every change made with the cookie must carry `X-CSRF-Token: CSRF`, or gets 403."), (status = 401, description = "Wrong login or password.", body = Problem), (status = 423, description = "The account is locked (until the time given).", body = Problem))
)]
async fn log_in(
    State(state): State<AdminState>,
    axum::Extension(peer): axum::Extension<crate::net::http::Peer>,
    b: Body<Login>,
) -> Response {
    let l = match body(b) {
        Ok(l) => l,
        Err(r) => return r,
    };
    match authenticate(&state, peer, &l.login, &l.password).await {
        Ok(opened) => {
            let mut shown = staff_json(&opened.member);
            shown["csrf"] = Value::String(opened.csrf);
            ([(header::SET_COOKIE, opened.set_cookie)], Json(shown)).into_response()
        }
        Err(e) => failed(e),
    }
}

/// A session a login opened.
pub struct Opened {
    pub member: crate::domain::Staff,
    pub csrf: String,
    /// The `Set-Cookie` value that carries it.
    pub set_cookie: String,
}

/// Logs a staff member in, for the API and the console alike: the password checked (Argon2
/// on the login places kiosks share; an unknown login checks a stand-in hash, so it takes as
/// long), then the engine decides in the commit (the lockout). A refusal comes after a pause
/// that grows with the address's failures.
pub async fn authenticate(
    state: &AdminState,
    peer: crate::net::http::Peer,
    login: &str,
    password: &str,
) -> Result<Opened, Error> {
    let peer = peer.0.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    let hash = match state.engine.query(Read::Staff(login.to_string())).await {
        Ok(Answer::Staff(m)) => Some(m.password_hash),
        Ok(_) | Err(Error::Refused(_)) => None,
        Err(e) => return Err(e),
    };
    let right = state.server.check_staff_password(password, hash.as_deref().unwrap_or(NO_ACCOUNT), peer).await;
    let matched = hash.filter(|_| right);
    let op = Operation::StaffLogin { login: login.to_string(), matched };
    match state.engine.run(op, By::new("sip2d", jiff::Timestamp::now())).await? {
        Receipt::Staff(m) => {
            let (cookie, csrf) = state
                .sessions
                .open(&m.login, &m.password_hash, std::time::Instant::now())
                .map_err(|e| Error::Refused(Refusal::rule(format!("no randomness for a session: {e}"))))?;
            tracing::info!(staff = %m.login, "staff login");
            let set_cookie = super::sessions::set_cookie(&cookie, state.sessions.limits());
            Ok(Opened { member: *m, csrf, set_cookie })
        }
        Receipt::Refused(r) => {
            tracing::info!(staff = ?login, refused = %r, "staff login refused");
            state.server.staff_login_refused(peer).await;
            Err(Error::Refused(r))
        }
        other => Err(Error::Refused(Refusal::rule(format!("unexpected receipt {other:?}")))),
    }
}

/// `GET /api/v1/session`: the member this cookie's session is for, with its CSRF token.
#[utoipa::path(
    get,
    path = "/api/v1/session",
    operation_id = "session",
    tag = "staff",
    summary = "The staff member of this cookie's session, with its CSRF token",
    responses((status = 200, description = "The account and `csrf`."), (status = 404, description = "No session (not logged in with a cookie).", body = Problem))
)]
async fn session(State(state): State<AdminState>, headers: HeaderMap, caller: Caller) -> Response {
    match (session_of(&state, &headers), caller) {
        (Some(open), Caller::Staff(m)) if open.login == m.login => {
            let mut shown = staff_json(&m);
            shown["csrf"] = Value::String(open.csrf);
            Json(shown).into_response()
        }
        _ => refused(StatusCode::NOT_FOUND, "no session: log in with POST /api/v1/session"),
    }
}

/// `DELETE /api/v1/session`: logs out (with the CSRF token, like every change). A cookie
/// whose session has ended already is just cleared.
#[utoipa::path(
    delete,
    path = "/api/v1/session",
    operation_id = "logOut",
    tag = "staff",
    summary = "Log out (with `X-CSRF-Token`)",
    responses((status = 200, description = "The session is ended and the cookie cleared."))
)]
async fn log_out(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some((cookie, open)) = session_cookie(&state, &headers) {
        let given = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !super::sessions::same_secret(given, &open.csrf) {
            return refused(StatusCode::FORBIDDEN, format!("a change needs the session's {CSRF_HEADER}"));
        }
        state.sessions.close(cookie);
    }
    ([(header::SET_COOKIE, super::sessions::clear_cookie())], Json(json!({ "done": true }))).into_response()
}

/// `DELETE /api/v1/accounts/{login}`.
#[utoipa::path(
    delete,
    path = "/api/v1/accounts/{login}",
    operation_id = "removeAccount",
    tag = "terminal accounts",
    summary = "Remove a terminal account",
    params(("login" = String, Path)),
    responses((status = 200, description = "Removed."), (status = 404, description = "No such account.", body = Problem))
)]
async fn remove_account(State(state): State<AdminState>, caller: Caller, Path(login): Path<String>) -> Response {
    change(&state, &caller, Operation::RemoveAccount { login }).await
}

/// `GET /api/v1/items/{barcode}`: the item with its loan and holds.
#[utoipa::path(
    get,
    path = "/api/v1/items/{barcode}",
    operation_id = "item",
    tag = "circulation",
    summary = "An item with its loan and its holds queue",
    params(("barcode" = String, Path)),
    responses((status = 200, description = "`item`, `loan` (or null), `holds`."), (status = 404, description = "No such item.", body = Problem))
)]
async fn item(State(state): State<AdminState>, caller: Caller, Path(barcode): Path<String>) -> Response {
    match state.engine.query(Read::Item(barcode.clone())).await {
        Ok(Answer::Item(facts)) if caller.covers(&facts.item.institution) => {
            let facts = *facts;
            // A loan or hold of another institution's patron (lent by a kiosk, say) shows
            // that it is there, not whose it is.
            let mut loan = facts.loan;
            if let Some(l) = &loan {
                if visible(&state, &caller, &l.patron.to_string()).await.is_err() {
                    loan = loan.map(|l| crate::domain::Loan { patron: 0, ..l });
                }
            }
            let mut holds = Vec::with_capacity(facts.holds.len());
            for h in facts.holds {
                let theirs = visible(&state, &caller, &h.patron.to_string()).await.is_ok();
                holds.push(if theirs { h } else { crate::domain::Hold { patron: 0, ..h } });
            }
            Json(json!({ "item": facts.item, "loan": loan, "holds": holds })).into_response()
        }
        Ok(Answer::Item(_)) => failed(Error::Refused(Refusal::NoItem(barcode))),
        Ok(_) => refused(StatusCode::SERVICE_UNAVAILABLE, "unexpected answer"),
        Err(e) => failed(e),
    }
}

/// `GET /api/v1/terminals`: the kiosks connected now, each with its last requests (code,
/// outcome, latency, time) and its last store failure; never a PIN, patron or item.
#[utoipa::path(
    get,
    path = "/api/v1/terminals",
    operation_id = "terminals",
    tag = "terminals",
    summary = "The terminals connected now, each with its last requests",
    description = "Per connection: peer, listener, connected since, the account once logged in, the\nnumber of requests, the last ten (code, outcome, latency in microseconds, time) and\nthe last store failure. No PIN, password, patron or item is ever kept or shown.",
    responses((status = 200, description = "`terminals`, oldest connection first."), (status = 401, description = "On the TCP listener", body = Problem))
)]
async fn terminals(State(state): State<AdminState>, caller: Caller) -> Response {
    match visible_terminals(&state, &caller).await {
        Ok(all) => Json(json!({ "terminals": all })).into_response(),
        Err(r) => r,
    }
}

/// How long one live view stream lasts; the browser's EventSource then reconnects, and the
/// request is authorised again (a session ended meanwhile gets no more).
const LIVE_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// How often the live view looks for changes.
const LIVE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// `GET /api/v1/terminals/events`: the live terminal view as server-sent events. An event
/// `terminals` carries what `GET /api/v1/terminals` answers, at once and then whenever it
/// changes (looked at every second, so the kiosks' path pays nothing for it). Never a PIN,
/// patron or item.
#[utoipa::path(
    get,
    path = "/api/v1/terminals/events",
    operation_id = "terminalEvents",
    tag = "terminals",
    summary = "The live terminal view as server-sent events",
    description = "An event `terminals` with what `GET /api/v1/terminals` answers, at once and then\nwhenever it changes (looked at every second). A stream lasts ten minutes; an\nEventSource reconnects by itself and is authorised again. Never a PIN, patron or item.",
    responses((status = 200, description = "`text/event-stream`."))
)]
async fn terminal_events(State(state): State<AdminState>, caller: Caller) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let start = tokio::time::Instant::now();
    let stream =
        futures_util::stream::unfold((state, caller, None::<String>), move |(state, caller, last)| async move {
            loop {
                if start.elapsed() > LIVE_FOR {
                    return None;
                }
                let now = visible_terminals(&state, &caller).await.ok()?;
                let json = json!({ "terminals": now }).to_string();
                if last.as_deref() != Some(json.as_str()) {
                    let event = Event::default().event("terminals").data(json.clone());
                    return Some((Ok::<_, std::convert::Infallible>(event), (state, caller, Some(json))));
                }
                tokio::time::sleep(LIVE_EVERY).await;
            }
        });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

/// The terminals connected now that `caller` sees: a member, those of their institutions
/// that have logged in.
/// A connected terminal as staff see it: its institution (once logged in) and when it
/// connected in that institution's zone, named (the server's zone before the login).
#[derive(serde::Serialize)]
pub(super) struct TerminalRow {
    #[serde(flatten)]
    pub view: crate::net::terminals::TerminalView,
    pub institution: Option<String>,
    pub connected_local: String,
}

pub(super) async fn visible_terminals(state: &AdminState, caller: &Caller) -> Result<Vec<TerminalRow>, Response> {
    let all = state.server.terminals();
    let accounts = match state.engine.query(Read::Accounts).await {
        Ok(Answer::Accounts(a)) => a,
        Ok(_) => return Err(refused(StatusCode::SERVICE_UNAVAILABLE, "unexpected answer")),
        Err(e) => return Err(failed(e)),
    };
    let institutions = match state.engine.query(Read::Institutions).await {
        Ok(Answer::Institutions(i)) => i,
        Ok(_) => return Err(refused(StatusCode::SERVICE_UNAVAILABLE, "unexpected answer")),
        Err(e) => return Err(failed(e)),
    };
    let institution_of = |login: &str| accounts.iter().find(|a| a.login == login).map(|a| a.institution.clone());
    let zone_of = |code: Option<&str>| {
        code.and_then(|c| institutions.iter().find(|i| i.code == c))
            .and_then(|i| jiff::tz::TimeZone::get(&i.timezone).ok())
            .unwrap_or_else(jiff::tz::TimeZone::system)
    };
    Ok(all
        .into_iter()
        .map(|view| {
            let institution = view.account.as_deref().and_then(institution_of);
            let zone = zone_of(institution.as_deref());
            let connected_local = view.connected.to_zoned(zone).strftime("%Y-%m-%d %H:%M:%S %Z").to_string();
            TerminalRow { view, institution, connected_local }
        })
        // A member sees the terminals logged in to their institutions' accounts.
        .filter(|t| match caller {
            Caller::System => true,
            Caller::Staff(_) => t.institution.as_deref().is_some_and(|i| caller.covers(i)),
        })
        .collect())
}

/// `POST /api/v1/fees/{fee}/{action}`: pay (`amount`), waive (`reason`), dispute, restore.
#[utoipa::path(
    post,
    path = "/api/v1/fees/{fee}/{action}",
    operation_id = "feeAction",
    tag = "fees",
    summary = "Pay (`amount`), waive (`reason`), dispute or restore a fee",
    params(("fee" = String, Path), ("action" = String, Path)),
    request_body = FeeAction,
    responses((status = 200, description = "The fee as it now stands."), (status = 404, description = "No such action.", body = Problem), (status = 422, description = "The register refuses: no such fee, more than is owed, a waive without a reason...", body = Problem))
)]
async fn fee_action(
    State(state): State<AdminState>,
    caller: Caller,
    Path((fee, action)): Path<(String, String)>,
    b: Body<FeeAction>,
) -> Response {
    let fee = match number::<u64>(&fee, "fee") {
        Ok(f) => f,
        Err(r) => return r,
    };
    let a = match body(b) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let op = match action.as_str() {
        "pay" => {
            let raw = a.amount.unwrap_or_default();
            let Some(amount) = crate::domain::Money::parse(&raw) else {
                return refused(StatusCode::UNPROCESSABLE_ENTITY, format!("amount {raw:?} is not an amount like 5.00"));
            };
            Operation::PayFee { fee, amount, transaction: None }
        }
        "waive" => Operation::WaiveFee { fee, reason: a.reason.unwrap_or_default() },
        "dispute" => Operation::DisputeFee { fee },
        "restore" => Operation::RestoreFee { fee },
        other => {
            return refused(StatusCode::NOT_FOUND, format!("no fee action {other}: pay, waive, dispute or restore"));
        }
    };
    change(&state, &caller, op).await
}

/// Every refusal says why in JSON, axum's own included (a path value it cannot read, a method
/// the route does not take): they come as plain text or with no body at all.
pub async fn json_refusals(r: Response) -> Response {
    let status = r.status();
    // JSON already, or one of the console's pages.
    let json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json") || v.as_bytes().starts_with(b"text/html"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return r;
    }
    let (parts, body) = r.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let said = String::from_utf8_lossy(&text).trim().to_string();
    let why = if said.is_empty() { status.canonical_reason().unwrap_or("refused").to_lowercase() } else { said };
    let mut out = refused(status, why);
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        out.headers_mut().insert(header::ALLOW, allow.clone());
    }
    out
}

/// What a path outside every route gets.
pub async fn no_route(uri: axum::http::Uri) -> Response {
    refused(StatusCode::NOT_FOUND, format!("no resource {}", uri.path()))
}

/// Every refusal's body: why, in staff words.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Describes `refused`'s JSON; never built as a value.
pub struct Problem {
    /// Why the request was refused.
    error: String,
}

/// The description's parts that are not a handler's: the introduction, the ways to
/// authenticate, and the schemas every refusal uses.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "sip2d admin and resource API", description = include_str!("../../docs/api-intro.md")),
    servers((url = "http://localhost", description = "DATA_DIR/admin.sock (the system, no token), the admin_listen address (the admin token or a staff token) or the console's listener (staff)")),
    modifiers(&Security),
    components(schemas(Problem))
)]
struct Description;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = api.components.get_or_insert_with(Default::default);
        let bearer = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "DATA_DIR/admin.token (the system; on the admin TCP listener), or a staff member's token \
                 (`sip2d staff token add`, starting `sip2d_`), whose role and institutions bound every request.",
            ))
            .build();
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        let session = ApiKey::Cookie(ApiKeyValue::with_description(
            super::sessions::COOKIE,
            "A console session (POST /api/v1/session); a change also needs the session's X-CSRF-Token header.",
        ));
        components.add_security_scheme("session", SecurityScheme::ApiKey(session));
        api.security = Some(vec![
            SecurityRequirement::default(),
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::new("session", Vec::<String>::new()),
        ]);
    }
}

/// The resource API's routes with their OpenAPI description, generated from the handlers'
/// annotations: a route and its description cannot part.
pub fn routes() -> utoipa_axum::router::OpenApiRouter<AdminState> {
    use utoipa::OpenApi;
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::with_openapi(Description::openapi())
        .routes(routes!(search, add_patron))
        .routes(routes!(get_patron, patch_patron, delete_patron))
        .routes(routes!(add_block))
        .routes(routes!(lift_block))
        .routes(routes!(add_note))
        .routes(routes!(remove_note))
        .routes(routes!(add_contact))
        .routes(routes!(remove_contact))
        .routes(routes!(prefer_contact))
        .routes(routes!(add_statistic))
        .routes(routes!(remove_statistic))
        .routes(routes!(add_attachment))
        .routes(routes!(get_attachment, remove_attachment))
        .routes(routes!(get_picture, set_picture, remove_picture))
        .routes(routes!(allow_proxy, revoke_proxy))
        .routes(routes!(request_transfer))
        .routes(routes!(decide_transfer))
        .routes(routes!(loans, lend))
        .routes(routes!(check_in))
        .routes(routes!(holds, place_hold))
        .routes(routes!(cancel_hold))
        .routes(routes!(fees))
        .routes(routes!(history))
        .routes(routes!(fee_action))
        .routes(routes!(terminals))
        .routes(routes!(terminal_events))
        .routes(routes!(deleted))
        .routes(routes!(restore_patron))
        .routes(routes!(invite_patron))
        .routes(routes!(institutions))
        .routes(routes!(accounts, add_account))
        .routes(routes!(remove_account))
        .routes(routes!(set_account_password))
        .routes(routes!(set_account_profile))
        .routes(routes!(item))
        .routes(routes!(me))
        .routes(routes!(session, log_in, log_out))
        .routes(routes!(staff_list, add_staff))
        .routes(routes!(staff_member, change_staff, remove_staff))
        .routes(routes!(set_staff_password))
        .routes(routes!(unlock_staff))
        .routes(routes!(add_staff_token))
        .routes(routes!(revoke_staff_token))
}

/// The whole description (the system's `/v1` endpoints and the resource API), as served at
/// `/api/v1/openapi.json`.
pub fn description() -> &'static utoipa::openapi::OpenApi {
    static DESCRIPTION: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    DESCRIPTION.get_or_init(|| super::admin::with_system_routes(routes()).split_for_parts().1)
}

/// `GET /api/v1/openapi.json`: the description, to anyone who may reach the listener (it
/// holds no register data).
pub async fn openapi() -> Response {
    Json(description()).into_response()
}

#[cfg(test)]
mod tests {
    /// The stand-in hash for unknown logins is a real Argon2 hash with the default cost, so
    /// checking it takes as long as checking a member's.
    #[test]
    fn an_unknown_login_costs_a_whole_hash() {
        let h = argon2::password_hash::PasswordHash::new(super::NO_ACCOUNT).unwrap();
        let params = argon2::Params::try_from(&h).unwrap();
        let ours = argon2::Params::default();
        assert_eq!((params.m_cost(), params.t_cost(), params.p_cost()), (ours.m_cost(), ours.t_cost(), ours.p_cost()));
        assert_eq!(h.hash.map(|o| o.len()), Some(32));
        let t = std::time::Instant::now();
        assert!(!crate::domain::secret::verify_password("anything", super::NO_ACCOUNT));
        let real = crate::domain::secret::hash_password("anything").unwrap();
        let t_none = t.elapsed();
        let t = std::time::Instant::now();
        assert!(crate::domain::secret::verify_password("anything", &real));
        // Both ran Argon2 (a parse failure would take microseconds, not milliseconds).
        assert!(t_none.as_micros() > 1000 && t.elapsed().as_micros() > 1000, "{t_none:?} {:?}", t.elapsed());
    }
    /// docs/openapi.json is the description the code generates (`SIP2D_WRITE_OPENAPI=1 cargo
    /// test openapi` writes it anew), and every route is in it.
    #[test]
    fn the_checked_in_openapi_json_is_the_generated_one() {
        let generated = serde_json::to_string_pretty(super::description()).unwrap() + "\n";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
        if std::env::var_os("SIP2D_WRITE_OPENAPI").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let doc: serde_json::Value = serde_json::from_str(&generated).unwrap();
        assert!(doc["paths"].as_object().unwrap().len() >= 40, "{doc}");
        assert!(doc["paths"]["/v1/operations"]["post"].is_object());
        assert!(doc["paths"]["/api/v1/patrons/{id}"]["patch"]["requestBody"].is_object());
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(on_disk == generated, "docs/openapi.json is stale: run SIP2D_WRITE_OPENAPI=1 cargo test openapi");
    }
}
