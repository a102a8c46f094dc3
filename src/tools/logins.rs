//! Login load: a storm of simultaneous correct logins, and a flood of wrong ones with a
//! correct login probing the server meanwhile (`sip2d bench --login-storm`, `--wrong-logins`).

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::net::TcpSocket;

use super::conn::{ClientTls, SipConn, Wire};
use crate::proto::{Algorithm, Login, Message, Secret};

fn login(user: &str, password: &str) -> Message<'static> {
    Login {
        uid_algorithm: Algorithm::Plain,
        pwd_algorithm: Algorithm::Plain,
        login_user_id: Cow::Owned(user.to_string()),
        login_password: Secret::new(password.to_string()),
        ..Default::default()
    }
    .into()
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Many kiosks logging in at the same moment.
#[derive(Clone, Debug)]
pub struct Storm {
    pub host: String,
    pub port: u16,
    pub tls: Option<ClientTls>,
    pub wire: Wire,
    pub connections: usize,
    /// Login and password; connection `i` uses account `i % len`.
    pub accounts: Vec<(String, String)>,
    /// How long to wait to connect, and then for each login's answer.
    pub timeout: Duration,
}

/// What a storm measured: each login's time from the moment all were sent together.
#[derive(Debug)]
pub struct StormReport {
    pub connections: usize,
    pub accepted: usize,
    pub refused: usize,
    /// Not connected, or no answer within the timeout.
    pub failed: usize,
    pub latency: Histogram<u64>,
    pub samples: Vec<String>,
}

enum Answer {
    Accepted(Duration),
    Refused(Duration),
    Failed(String),
}

/// Opens every connection first, then sends every login at once and times each answer.
pub async fn storm(plan: Storm) -> std::io::Result<StormReport> {
    let tls = match &plan.tls {
        Some(t) => Some(super::conn::tls_config(t)?),
        None => None,
    };
    let plan = Arc::new(plan);
    let start = Arc::new(tokio::sync::Barrier::new(plan.connections));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..plan.connections {
        let (plan, start, tls) = (plan.clone(), start.clone(), tls.clone());
        tasks.spawn(async move {
            let pair = plan.tls.as_ref().zip(tls);
            let conn = SipConn::connect(&plan.host, plan.port, pair, plan.wire, plan.timeout).await;
            // Every connection reaches the start line, connected or not, so none waits forever.
            start.wait().await;
            let mut conn = match conn {
                Ok(c) => c,
                Err(e) => return Answer::Failed(format!("connection {i}: {e}")),
            };
            let (user, password) = plan.accounts.get(i % plan.accounts.len().max(1)).cloned().unwrap_or_default();
            let t = Instant::now();
            match conn.ask(&login(&user, &password), plan.timeout).await {
                Ok(r) if r.starts_with(b"941") => Answer::Accepted(t.elapsed()),
                Ok(_) => Answer::Refused(t.elapsed()),
                Err(e) => Answer::Failed(format!("connection {i}: {e}")),
            }
        });
    }
    let mut report = StormReport {
        connections: plan.connections,
        accepted: 0,
        refused: 0,
        failed: 0,
        latency: histogram(),
        samples: Vec::new(),
    };
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Answer::Accepted(d)) => {
                report.accepted += 1;
                let _ = report.latency.record(micros(d));
            }
            Ok(Answer::Refused(d)) => {
                report.refused += 1;
                let _ = report.latency.record(micros(d));
            }
            Ok(Answer::Failed(e)) => {
                report.failed += 1;
                if report.samples.len() < 5 {
                    report.samples.push(e);
                }
            }
            Err(e) => {
                report.failed += 1;
                report.samples.push(e.to_string());
            }
        }
    }
    Ok(report)
}

/// Wrong logins sent as fast as the server answers them, while a correct login probes how
/// long a real kiosk would wait.
#[derive(Clone, Debug)]
pub struct Flood {
    pub host: String,
    pub port: u16,
    pub wire: Wire,
    /// The address the flood's connections come from (e.g. 127.0.0.2, to be another client
    /// than the probe on loopback); the probe connects from the default.
    pub source: Option<IpAddr>,
    /// Connections sending wrong logins at once.
    pub flooders: usize,
    /// Wrong logins to send in all; each has a password not sent before.
    pub wrong: usize,
    /// The account the wrong passwords are for.
    pub account: String,
    /// A correct login, tried every `probe_every` on a new connection.
    pub probe: (String, String),
    pub probe_every: Duration,
    pub timeout: Duration,
    /// A server process on this machine whose resident memory is sampled.
    pub server_pid: Option<u32>,
}

/// What a flood measured.
#[derive(Debug)]
pub struct FloodReport {
    pub sent: u64,
    pub refused: u64,
    /// Wrong logins the server answered with anything but 940 (none should be accepted).
    pub accepted: u64,
    pub elapsed: Duration,
    /// The correct login's time, each probe.
    pub probe: Histogram<u64>,
    /// Probes refused or unanswered.
    pub probe_failures: u64,
    /// The server's resident memory in KiB: before, the highest sampled, and after.
    pub rss_kib: Option<(u64, u64, u64)>,
}

async fn connect_from(addr: SocketAddr, source: Option<IpAddr>, wire: Wire) -> std::io::Result<SipConn> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(SipConn::over(stream, wire))
}

/// The resident memory of a process in KiB, from `/proc/PID/status` (Linux).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs a flood to its end and gathers its report.
pub async fn flood(plan: Flood) -> std::io::Result<FloodReport> {
    let addr = tokio::net::lookup_host((plan.host.as_str(), plan.port))
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{} has no address", plan.host)))?;
    let plan = Arc::new(plan);
    let next = Arc::new(AtomicUsize::new(0));
    let (refused, accepted) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let before = plan.server_pid.and_then(rss_kib);
    let started = Instant::now();
    let mut flooders = tokio::task::JoinSet::new();
    for _ in 0..plan.flooders {
        let (plan, next, refused, accepted) = (plan.clone(), next.clone(), refused.clone(), accepted.clone());
        flooders.spawn(async move {
            let mut conn: Option<SipConn> = None;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= plan.wrong {
                    return;
                }
                // A connection closed after its refused logins is replaced, and the login sent
                // again on the new one; a server that stops answering ends the flood.
                for _attempt in 0..5 {
                    let c = match conn.as_mut() {
                        Some(c) => c,
                        None => match connect_from(addr, plan.source, plan.wire).await {
                            Ok(c) => conn.insert(c),
                            Err(_) => {
                                // Refused at the door (a connection limit): try again shortly.
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                continue;
                            }
                        },
                    };
                    match c.ask(&login(&plan.account, &format!("wrong-{n}")), plan.timeout).await {
                        Ok(r) => {
                            let counter = if r.starts_with(b"940") { &refused } else { &accepted };
                            counter.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Err(_) => conn = None,
                    }
                }
            }
        });
    }
    let done = Arc::new(tokio::sync::Notify::new());
    let prober = {
        let (plan, done) = (plan.clone(), done.clone());
        tokio::spawn(async move {
            let (mut hist, mut failures) = (histogram(), 0u64);
            let mut peak = 0u64;
            loop {
                tokio::select! {
                    _ = done.notified() => break,
                    _ = tokio::time::sleep(plan.probe_every) => {}
                }
                if let Some(kib) = plan.server_pid.and_then(rss_kib) {
                    peak = peak.max(kib);
                }
                let t = Instant::now();
                let answer = match connect_from(addr, None, plan.wire).await {
                    Ok(mut c) => c.ask(&login(&plan.probe.0, &plan.probe.1), plan.timeout).await,
                    Err(e) => Err(e),
                };
                match answer {
                    Ok(r) if r.starts_with(b"941") => {
                        let _ = hist.record(micros(t.elapsed()));
                    }
                    _ => failures += 1,
                }
            }
            (hist, failures, peak)
        })
    };
    while flooders.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    done.notify_one();
    let (probe, probe_failures, peak) = prober.await.map_err(std::io::Error::other)?;
    // Whatever the flood left behind, once it has ended.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = plan.server_pid.and_then(rss_kib);
    Ok(FloodReport {
        sent: refused.load(Ordering::Relaxed) + accepted.load(Ordering::Relaxed),
        refused: refused.load(Ordering::Relaxed),
        accepted: accepted.load(Ordering::Relaxed),
        elapsed,
        probe,
        probe_failures,
        rss_kib: before.zip(after).map(|(b, a)| (b, peak.max(a), a)),
    })
}
