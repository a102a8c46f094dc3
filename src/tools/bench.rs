//! A closed-loop SIP2 load generator, and a canned responder to measure its ceiling.
//!
//! Each connection logs in once, then loops its mix of requests until the run ends; results
//! recorded during the warm-up are dropped. A reply that refuses what should succeed (a
//! checkout that is not `121`, say) counts as an error.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::conn::{ClientTls, SipConn, Wire};
use crate::proto::{
    self, Algorithm, Checkin, Checkout, DateTime, FrameDecoder, FrameEvent, Language, Login, Message,
    PatronStatusRequest, Secret, SipDate,
};

/// One kind of request in the mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    /// 23 for the connection's patron, with PIN: must say valid patron and PIN.
    Status,
    /// 11 of the connection's own item: must be `121`.
    Checkout,
    /// 09 of the connection's own item: must be `101`.
    Checkin,
}

impl Op {
    pub fn code(self) -> &'static str {
        match self {
            Op::Status => "23",
            Op::Checkout => "11",
            Op::Checkin => "09",
        }
    }

    pub fn parse(s: &str) -> Option<Op> {
        match s {
            "status" | "23" => Some(Op::Status),
            "checkout" | "11" => Some(Op::Checkout),
            "checkin" | "09" => Some(Op::Checkin),
            _ => None,
        }
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub host: String,
    pub port: u16,
    pub tls: Option<ClientTls>,
    pub wire: Wire,
    pub login: Option<(String, String)>,
    pub institution: String,
    pub connections: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub mix: Vec<Op>,
    /// Patron barcodes with their PINs; connection `i` uses patron `i % len`.
    pub patrons: Vec<(String, String)>,
    /// Item barcodes; connection `i` uses item `i % len` (give at least one per connection).
    pub items: Vec<String>,
    /// How long to wait for one reply.
    pub timeout: Duration,
    /// How long one connection may take to open and log in (logins queue behind each other's
    /// Argon2 hashes when thousands start at once).
    pub connect_timeout: Duration,
    /// A server process on this machine whose CPU time over the measured window is reported.
    pub server_pid: Option<u32>,
}

/// Latency and counts of one kind of request.
#[derive(Clone, Debug)]
pub struct Stats {
    pub hist: Histogram<u64>,
    pub errors: u64,
}

impl Stats {
    fn new() -> Stats {
        Stats { hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"), errors: 0 }
    }
}

/// What a run measured.
#[derive(Debug)]
pub struct Report {
    pub connections: usize,
    /// Connections that could not be opened or logged in.
    pub failed_connections: usize,
    pub measured: Duration,
    pub per_op: BTreeMap<Op, Stats>,
    /// Requests not answered (timeouts, closes) during the measured window.
    pub io_errors: u64,
    /// A few examples of what went wrong.
    pub samples: Vec<String>,
    /// The server's CPU time (user and system) over the measured window, when asked for.
    pub server_cpu: Option<Duration>,
}

impl Report {
    /// The server's CPU time per request measured, in microseconds.
    pub fn server_cpu_per_request(&self) -> Option<f64> {
        let n = self.requests();
        self.server_cpu.filter(|_| n > 0).map(|c| c.as_secs_f64() * 1e6 / n as f64)
    }

    pub fn requests(&self) -> u64 {
        self.per_op.values().map(|s| s.hist.len()).sum()
    }

    pub fn errors(&self) -> u64 {
        self.per_op.values().map(|s| s.errors).sum::<u64>() + self.io_errors + self.failed_connections as u64
    }

    pub fn throughput(&self) -> f64 {
        self.requests() as f64 / self.measured.as_secs_f64().max(1e-9)
    }

    pub fn overall(&self) -> Histogram<u64> {
        let mut all = Stats::new().hist;
        for s in self.per_op.values() {
            let _ = all.add(&s.hist);
        }
        all
    }
}

fn date() -> SipDate {
    DateTime::local(2026, 1, 1, 12, 0, 0).map_or(SipDate::Zeros, SipDate::At)
}

fn request(op: Op, inst: &str, patron: &(String, String), item: &str) -> Message<'static> {
    let o = |s: &str| Cow::Owned(s.to_string());
    match op {
        Op::Status => PatronStatusRequest {
            language: Language::from_code(1),
            transaction_date: date(),
            institution_id: o(inst),
            patron_identifier: o(&patron.0),
            patron_password: Secret::new(patron.1.clone()),
            ..Default::default()
        }
        .into(),
        Op::Checkout => Checkout {
            sc_renewal_policy: false,
            transaction_date: date(),
            institution_id: o(inst),
            patron_identifier: o(&patron.0),
            item_identifier: o(item),
            patron_password: Some(Secret::new(patron.1.clone())),
            ..Default::default()
        }
        .into(),
        Op::Checkin => Checkin {
            transaction_date: date(),
            return_date: date(),
            institution_id: o(inst),
            item_identifier: o(item),
            ..Default::default()
        }
        .into(),
    }
}

/// Whether a reply is the success `op` expects, judged from the fixed part alone.
fn succeeded(op: Op, reply: &[u8]) -> bool {
    match op {
        // 24: BL Y and CQ Y (or no CQ).
        Op::Status => {
            reply.starts_with(b"24")
                && reply.windows(4).any(|w| w == b"|BLY")
                && !reply.windows(4).any(|w| w == b"|CQN")
        }
        Op::Checkout => reply.starts_with(b"121"),
        Op::Checkin => reply.starts_with(b"101"),
    }
}

struct Local {
    per_op: BTreeMap<Op, Stats>,
    io_errors: u64,
    samples: Vec<String>,
    failed: bool,
    /// Passed the start line.
    waited: bool,
}

async fn one_connection(
    plan: Arc<Plan>,
    i: usize,
    tls: Option<Arc<rustls::ClientConfig>>,
    ready: Arc<tokio::sync::Barrier>,
) -> Local {
    let mut local = connect_and_run(&plan, i, tls, &ready).await;
    if local.failed && !local.waited {
        // Every connection reaches the start line, failed or not, so that none waits forever.
        ready.wait().await;
        local.waited = true;
    }
    local
}

async fn connect_and_run(
    plan: &Plan,
    i: usize,
    tls: Option<Arc<rustls::ClientConfig>>,
    ready: &tokio::sync::Barrier,
) -> Local {
    let mut local = Local { per_op: BTreeMap::new(), io_errors: 0, samples: Vec::new(), failed: false, waited: false };
    let tls_pair = plan.tls.as_ref().zip(tls);
    let conn = SipConn::connect(&plan.host, plan.port, tls_pair, plan.wire, plan.connect_timeout).await;
    let mut conn = match conn {
        Ok(c) => c,
        Err(e) => {
            local.failed = true;
            local.samples.push(format!("connection {i}: {e}"));
            return local;
        }
    };
    if let Some((user, password)) = &plan.login {
        let login = Login {
            uid_algorithm: Algorithm::Plain,
            pwd_algorithm: Algorithm::Plain,
            login_user_id: Cow::Owned(user.clone()),
            login_password: Secret::new(password.clone()),
            ..Default::default()
        };
        match conn.ask(&login.into(), plan.connect_timeout).await {
            Ok(r) if r.starts_with(b"941") => {}
            other => {
                local.failed = true;
                local.samples.push(format!("connection {i}: login refused: {other:?}"));
                return local;
            }
        }
    }
    // The clock starts when every connection is open and logged in: logins (an Argon2 hash
    // each, on purpose slow) are not part of the load.
    ready.wait().await;
    local.waited = true;
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.duration;
    let patron = plan.patrons.get(i % plan.patrons.len().max(1)).cloned().unwrap_or_default();
    let item = plan.items.get(i % plan.items.len().max(1)).cloned().unwrap_or_default();
    let mut frames: Vec<(Op, Message<'static>)> =
        plan.mix.iter().map(|op| (*op, request(*op, &plan.institution, &patron, &item))).collect();
    let mut round = 0usize;
    'run: while Instant::now() < end {
        // Status requests walk through every patron (connection i asks for i, i + N, i + 2N...),
        // so a large register is read across, not through one hot record.
        round += 1;
        if plan.patrons.len() > plan.connections {
            let k = (i + round * plan.connections) % plan.patrons.len();
            let who = plan.patrons.get(k).cloned().unwrap_or_default();
            for (op, msg) in frames.iter_mut().filter(|(op, _)| *op == Op::Status) {
                *msg = request(*op, &plan.institution, &who, &item);
            }
        }
        for (op, msg) in &frames {
            let t = Instant::now();
            let reply = conn.ask(msg, plan.timeout).await;
            let done = Instant::now();
            let measured = t >= measure_from && done <= end;
            match reply {
                Ok(r) => {
                    if measured {
                        let s = local.per_op.entry(*op).or_insert_with(Stats::new);
                        let _ =
                            s.hist.record(u64::try_from(done.duration_since(t).as_micros()).unwrap_or(u64::MAX).max(1));
                        if !succeeded(*op, &r) {
                            s.errors += 1;
                            if local.samples.len() < 3 {
                                local.samples.push(format!(
                                    "connection {i}: {} refused: {}",
                                    op.code(),
                                    proto::escape::escape(&proto::redact(&r))
                                ));
                            }
                        }
                    }
                }
                Err(e) => {
                    if done <= end {
                        local.io_errors += 1;
                        if local.samples.len() < 3 {
                            local.samples.push(format!("connection {i}: {}: {e}", op.code()));
                        }
                    }
                    break 'run;
                }
            }
            if done >= end {
                break 'run;
            }
        }
    }
    local
}

/// Runs a plan and gathers its report.
pub async fn run(plan: Plan) -> std::io::Result<Report> {
    let tls = match &plan.tls {
        Some(t) => Some(super::conn::tls_config(t)?),
        None => None,
    };
    let plan = Arc::new(plan);
    let sampled = usize::from(plan.server_pid.is_some());
    let ready = Arc::new(tokio::sync::Barrier::new(plan.connections + sampled));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..plan.connections {
        tasks.spawn(one_connection(plan.clone(), i, tls.clone(), ready.clone()));
    }
    // The server's CPU over the measured window only: not the logins, not the warm-up.
    let cpu = plan.server_pid.map(|pid| {
        let (plan, ready) = (plan.clone(), ready.clone());
        tokio::spawn(async move {
            ready.wait().await;
            tokio::time::sleep(plan.warmup).await;
            let before = cpu_time(pid)?;
            tokio::time::sleep(plan.duration).await;
            Some(cpu_time(pid)?.saturating_sub(before))
        })
    });
    let mut report = Report {
        connections: plan.connections,
        failed_connections: 0,
        measured: plan.duration,
        per_op: BTreeMap::new(),
        io_errors: 0,
        samples: Vec::new(),
        server_cpu: None,
    };
    while let Some(r) = tasks.join_next().await {
        let Ok(local) = r else { continue };
        report.failed_connections += usize::from(local.failed);
        report.io_errors += local.io_errors;
        for (op, s) in local.per_op {
            let e = report.per_op.entry(op).or_insert_with(Stats::new);
            let _ = e.hist.add(&s.hist);
            e.errors += s.errors;
        }
        if report.samples.len() < 5 {
            report.samples.extend(local.samples.into_iter().take(5 - report.samples.len()));
        }
    }
    if let Some(cpu) = cpu {
        report.server_cpu = cpu.await.ok().flatten();
    }
    Ok(report)
}

/// A process's CPU time so far, user and system, from `/proc/PID/stat` (Linux).
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), in parentheses: utime and stime
    // are the 12th and 13th from there, in clock ticks of 1/100 s (Linux's USER_HZ).
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut f = rest.split_whitespace().skip(11);
    let ticks = f.next()?.parse::<u64>().ok()? + f.next()?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// The canned responder: frames in, a fixed success reply per request code out. No register,
/// no parsing beyond framing, so a run against it measures the machine and the generator.
pub async fn null_responder(listener: TcpListener, shutdown: CancellationToken) {
    let canned = |code: &[u8]| -> &'static [u8] {
        match code {
            b"93" => b"941\r",
            b"23" => b"24              00120260101    120000AOMAIN|AA0|AEBench|BLY|CQY|\r",
            b"11" => b"121NNY20260101    120000AOMAIN|AA0|AB0|AJBench|AH20260122    235900|\r",
            b"09" => b"101YNN20260101    120000AOMAIN|AB0|AQ|\r",
            b"99" => b"98YYYYNN99900320260101    1200002.00AOMAIN|BXYYYYYYYYYYYYYYYY|\r",
            _ => b"96\r",
        }
    };
    loop {
        let (mut s, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r { Ok(a) => a, Err(_) => continue },
        };
        let _ = s.set_nodelay(true);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut decoder = FrameDecoder::new(8192);
            let mut buf = BytesMut::with_capacity(1024);
            let mut out = Vec::with_capacity(256);
            loop {
                while let Some(ev) = decoder.decode(&mut buf) {
                    let FrameEvent::Frame(f) = ev else { return };
                    out.extend_from_slice(canned(f.get(..2).unwrap_or_default()));
                }
                if !out.is_empty() {
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                    out.clear();
                }
                let n = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = s.read_buf(&mut buf) => r,
                };
                if !matches!(n, Ok(n) if n > 0) {
                    return;
                }
            }
        });
    }
}

/// Starts the canned responder on a free loopback port.
pub async fn start_null(shutdown: CancellationToken) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(null_responder(listener, shutdown));
    Ok(addr)
}
