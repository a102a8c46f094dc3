//! Operations endpoints over HTTP: `/metrics` (Prometheus text), `/health` and `/ready`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::proto::SupportedMessages;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    code: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeviationLabels {
    kind: &'static str,
}

/// A request's code as a label; anything but a SIP2 request is `other`, so labels stay bounded.
fn code_label(code: Option<[u8; 2]>) -> &'static str {
    let known = code.and_then(|c| SupportedMessages::REQUEST_CODES.iter().find(|k| **k == c));
    known.and_then(|k| std::str::from_utf8(k).ok()).unwrap_or("other")
}

/// Code and outcome pairs a connection keeps handles for (a kiosk uses a few).
const METER_SLOTS: usize = 8;

/// A connection's handles on the request counters it has used; see [`Metrics::request_on`].
#[derive(Default)]
pub struct RequestMeter {
    seen: Vec<(&'static str, &'static str, Counter, Histogram)>,
}

/// Everything the server counts.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<CodeLabels, Histogram>,
    connections: Gauge,
    logins: Family<OutcomeLabels, Counter>,
    pin_failures: Counter,
    pin_lockouts: Counter,
    sync_seconds: Histogram,
    sync_batch: Histogram,
    bytes_in: Counter,
    bytes_out: Counter,
    checkpoints: Counter,
    checkpoint_failures: Counter,
    login_hashes: Counter,
    logins_remembered: Counter,
    deviations: Family<DeviationLabels, Counter>,
    /// Listeners accepting, store open, not draining.
    pub ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("sip2d");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "SIP2 requests by message code and outcome", requests.clone());
        let latency = Family::<CodeLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_025, 2.0, 16))
        });
        registry.register(
            "request_seconds",
            "Time from a frame read to its reply ready, by message code",
            latency.clone(),
        );
        let connections = Gauge::default();
        registry.register("connections", "Open SIP2 connections", connections.clone());
        let logins = Family::<OutcomeLabels, Counter>::default();
        registry.register("logins", "Terminal logins (93) by outcome", logins.clone());
        let pin_failures = Counter::default();
        registry.register("pin_failures", "Wrong PINs sent by terminals", pin_failures.clone());
        let pin_lockouts = Counter::default();
        registry.register("pin_lockouts", "PIN checks refused because the card is locked", pin_lockouts.clone());
        let sync_seconds = Histogram::new(exponential_buckets(0.000_025, 2.0, 16));
        registry.register("store_sync_seconds", "Time of one disk sync of the store", sync_seconds.clone());
        let sync_batch = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register("store_sync_batch", "Requests served by one disk sync (group commit)", sync_batch.clone());
        let bytes_in = Counter::default();
        registry.register("bytes_in", "Bytes read from SIP2 connections", bytes_in.clone());
        let bytes_out = Counter::default();
        registry.register("bytes_out", "Bytes written to SIP2 connections", bytes_out.clone());
        let checkpoints = Counter::default();
        registry.register(
            "store_checkpoints",
            "Checkpoints: sled brought up to date with the write-ahead log and flushed",
            checkpoints.clone(),
        );
        let checkpoint_failures = Counter::default();
        registry.register(
            "store_checkpoint_failures",
            "Checkpoints that failed (sled reopened, the log read back into it; nothing is lost)",
            checkpoint_failures.clone(),
        );
        let login_hashes = Counter::default();
        registry.register(
            "login_hashes",
            "Argon2 password hashes run for logins (an account's first login since start, or a new password)",
            login_hashes.clone(),
        );
        let logins_remembered = Counter::default();
        registry.register(
            "logins_remembered",
            "Logins answered from a verified password's keyed digest, without a hash",
            logins_remembered.clone(),
        );
        let deviations = Family::<DeviationLabels, Counter>::default();
        registry.register(
            "deviations",
            "Frames read leniently (or refused under strictness = strict), by deviation (docs/protocol.md)",
            deviations.clone(),
        );
        Metrics {
            registry,
            deviations,
            login_hashes,
            logins_remembered,
            requests,
            latency,
            connections,
            logins,
            pin_failures,
            pin_lockouts,
            sync_seconds,
            sync_batch,
            bytes_in,
            bytes_out,
            checkpoints,
            checkpoint_failures,
            ready: AtomicBool::new(false),
        }
    }

    pub fn request(&self, code: Option<[u8; 2]>, outcome: &'static str, elapsed: Duration) {
        self.request_on(&mut RequestMeter::default(), code, outcome, elapsed)
    }

    /// Counts a request through a connection's own handles: the shared families are looked
    /// up (a lock and a hash of the labels) only the first time a connection sees a code and
    /// outcome.
    pub fn request_on(
        &self,
        meter: &mut RequestMeter,
        code: Option<[u8; 2]>,
        outcome: &'static str,
        elapsed: Duration,
    ) {
        let code = code_label(code);
        let found = meter.seen.iter().position(|(c, o, _, _)| *c == code && *o == outcome);
        let at = match found {
            Some(at) => at,
            None => {
                if meter.seen.len() == METER_SLOTS {
                    meter.seen.remove(0);
                }
                let counter = self.requests.get_or_create(&RequestLabels { code, outcome }).clone();
                let histogram = self.latency.get_or_create(&CodeLabels { code }).clone();
                meter.seen.push((code, outcome, counter, histogram));
                meter.seen.len() - 1
            }
        };
        if let Some((_, _, counter, histogram)) = meter.seen.get(at) {
            counter.inc();
            histogram.observe(elapsed.as_secs_f64());
        }
        if code == "93" {
            let outcome = if outcome == "ok" { "accepted" } else { "refused" };
            self.logins.get_or_create(&OutcomeLabels { outcome }).inc();
        }
    }

    /// Counts what the lenient reader tolerated in one frame.
    pub fn deviations(&self, seen: &crate::proto::Deviations) {
        for kind in seen.kinds() {
            self.deviations.get_or_create(&DeviationLabels { kind: kind.name() }).inc();
        }
    }

    pub fn connection_opened(&self) {
        self.connections.inc();
    }

    pub fn connection_closed(&self) {
        self.connections.dec();
    }

    pub fn sync(&self, elapsed: Duration, batch: usize) {
        self.sync_seconds.observe(elapsed.as_secs_f64());
        self.sync_batch.observe(batch as f64);
    }

    pub fn read(&self, n: usize) {
        self.bytes_in.inc_by(n as u64);
    }

    pub fn wrote(&self, n: usize) {
        self.bytes_out.inc_by(n as u64);
    }

    /// Brings the login counters up to the login gate's.
    pub fn logins(&self, hashed: u64, remembered: u64) {
        self.login_hashes.inc_by(hashed.saturating_sub(self.login_hashes.get()));
        self.logins_remembered.inc_by(remembered.saturating_sub(self.logins_remembered.get()));
    }

    /// Brings the checkpoint counters up to the engine's.
    pub fn checkpoints(&self, done: u64, failed: u64) {
        self.checkpoints.inc_by(done.saturating_sub(self.checkpoints.get()));
        self.checkpoint_failures.inc_by(failed.saturating_sub(self.checkpoint_failures.get()));
    }

    /// Brings the PIN counters up to the guard's totals.
    pub fn pins(&self, failures: u64, lockouts: u64) {
        let f = failures.saturating_sub(self.pin_failures.get());
        self.pin_failures.inc_by(f);
        let l = lockouts.saturating_sub(self.pin_lockouts.get());
        self.pin_lockouts.inc_by(l);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// What the endpoints read.
pub struct OpsState {
    pub metrics: Arc<Metrics>,
    /// Called before rendering, to copy counters kept elsewhere.
    pub refresh: Box<dyn Fn() + Send + Sync>,
    /// Whether the register takes changes (false while it reopens its log after a failed sync).
    pub healthy: Box<dyn Fn() -> bool + Send + Sync>,
}

async fn metrics(State(s): State<Arc<OpsState>>) -> impl IntoResponse {
    (s.refresh)();
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.metrics.render())
}

async fn health() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

async fn ready(State(s): State<Arc<OpsState>>) -> impl IntoResponse {
    if s.metrics.ready.load(Ordering::Relaxed) && (s.healthy)() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Serves `/metrics`, `/health` and `/ready` on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<OpsState>,
    limits: super::http::HttpLimits,
    shutdown: CancellationToken,
) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(state);
    let listener = super::http::HttpListener::Tcp(listener);
    super::http::serve(listener, app, limits, "ops", shutdown, Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line of `render` for `sip2d_requests_total` with these labels, and its value.
    fn requests(m: &Metrics, code: &str, outcome: &str) -> Option<u64> {
        let want = format!("code=\"{code}\",outcome=\"{outcome}\"");
        m.render()
            .lines()
            .find(|l| l.starts_with("sip2d_requests_total{") && l.contains(&want))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    #[test]
    fn a_connection_s_handles_count_into_the_shared_families() {
        let m = Metrics::new();
        let mut meter = RequestMeter::default();
        let mut other = RequestMeter::default();
        // More pairs than a meter keeps, so handles are dropped and taken again.
        let codes = SupportedMessages::REQUEST_CODES;
        assert!(codes.len() > METER_SLOTS);
        for round in 1..=3 {
            for (i, c) in codes.iter().enumerate() {
                let outcome = if i % 2 == 0 { "ok" } else { "refused" };
                m.request_on(&mut meter, Some(*c), outcome, Duration::from_micros(10));
                m.request_on(&mut other, Some(*c), outcome, Duration::from_micros(10));
            }
            assert_eq!(requests(&m, "23", "ok").or(requests(&m, "23", "refused")), Some(2 * round));
        }
        let first = std::str::from_utf8(&codes[0]).unwrap();
        assert_eq!(requests(&m, first, "ok"), Some(6));
        m.request(Some(codes[0]), "ok", Duration::from_micros(10));
        assert_eq!(requests(&m, first, "ok"), Some(7));
        assert!(meter.seen.len() <= METER_SLOTS);
    }
}
