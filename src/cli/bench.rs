//! `sip2d bench`: the closed-loop load generator, and the register file it runs against.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::progress::{Progress, Unit};

use super::client::Target;
use crate::tools::bench::{self, Op, Plan, Report};
use crate::tools::conn::ClientTls;
use crate::tools::logins;

/// Drive a SIP2 server with N connections, each logging in once and then looping a mix of
/// requests; report throughput and latency percentiles overall and per message.
///
/// The patrons and items it uses follow a naming scheme (`--patron-prefix`, `--item-prefix`);
/// `--write-register FILE` writes a register with exactly those for `sip2d import`:
///
///   sip2d bench --write-register bench.jsonl --register-patrons 1000 --register-items 2000
///   sip2d --data ./bench-data init
///   sip2d --data ./bench-data import bench.jsonl
///   sip2d --data ./bench-data serve &
///   sip2d bench --connections 16 --duration 10s
///
/// `--login-storm` opens `--connections` connections, then sends every login at the same
/// moment (over `--accounts` accounts) and reports how long the answers took.
/// `--wrong-logins N` floods the server with N wrong logins while a correct login probes it,
/// and with `--server-pid` reports the server's resident memory before, at most and after:
///
///   sip2d bench --login-storm --connections 500 --accounts 50
///   sip2d bench --wrong-logins 10000 --flood-from 127.0.0.2 --server-pid PID
///
/// `--null` runs against a canned responder in the same process (no register, no parsing
/// beyond framing): the ceiling of this machine and of the generator, to compare with.
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct BenchArgs {
    #[command(flatten)]
    target: Target,
    /// Connections, each a kiosk (1 to 10000).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connections: u32,
    /// How long to measure, after the warm-up.
    #[arg(long, default_value = "10s", value_parser = humantime_serde::re::humantime::parse_duration)]
    duration: Duration,
    /// How long to run before measuring.
    #[arg(long, default_value = "2s", value_parser = humantime_serde::re::humantime::parse_duration)]
    warmup: Duration,
    /// The requests each connection loops, in order: status (23), checkout (11), checkin (09).
    #[arg(long, default_value = "status,checkout,checkin", value_delimiter = ',')]
    mix: Vec<String>,
    /// Patron barcodes are this prefix and a 7-digit number from 0.
    #[arg(long, default_value = "B")]
    patron_prefix: String,
    /// How many patrons there are (default: one per connection).
    #[arg(long)]
    patrons: Option<usize>,
    /// Every patron's PIN.
    #[arg(long, default_value = "1234")]
    pin: String,
    /// Item barcodes are this prefix and a 7-digit number from 0; connection i uses item i.
    #[arg(long, default_value = "I")]
    item_prefix: String,
    /// Run against the built-in canned responder instead of --host/--port.
    #[arg(long)]
    null: bool,
    /// Also hold this many idle connections open (connected, never logged in) for the whole
    /// run, to see what they cost the busy ones; the server's limits must allow them.
    #[arg(long, default_value_t = 0)]
    idle: usize,
    /// The server's process id, when it runs on this machine: its CPU time over the measured
    /// window is reported per request (Linux; read from /proc/PID/stat).
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Send every connection's login at the same moment and time the answers (no requests).
    #[arg(long)]
    login_storm: bool,
    /// Accounts the logins use: the login itself when 1, else LOGIN-00, LOGIN-01... (as
    /// --write-register --register-accounts writes them).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    accounts: u32,
    /// Send this many wrong logins (each with a new password) as fast as they are answered,
    /// while a correct login probes the server every --probe-every.
    #[arg(long, value_name = "N")]
    wrong_logins: Option<usize>,
    /// Connections sending the wrong logins.
    #[arg(long, default_value_t = 50)]
    flooders: usize,
    /// The account the wrong logins name (default: the login of --user, or bench).
    #[arg(long)]
    flood_account: Option<String>,
    /// Send the wrong logins from this local address (e.g. 127.0.0.2: another client than
    /// the probe's, on loopback).
    #[arg(long, value_name = "IP")]
    flood_from: Option<std::net::IpAddr>,
    /// How often the correct login is tried during a flood.
    #[arg(long, default_value = "100ms", value_parser = humantime_serde::re::humantime::parse_duration)]
    probe_every: Duration,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Write a register for the bench to FILE (JSON Lines for `sip2d import`) and exit.
    #[arg(long, value_name = "FILE")]
    write_register: Option<PathBuf>,
    /// Patrons in the --write-register file.
    #[arg(long, default_value_t = 1000)]
    register_patrons: usize,
    /// Accounts in the --write-register file besides the login itself: LOGIN-00, LOGIN-01...
    /// (same password), for --login-storm --accounts.
    #[arg(long, default_value_t = 0)]
    register_accounts: usize,
    /// Items in the --write-register file.
    #[arg(long, default_value_t = 2000)]
    register_items: usize,
}

fn barcode(prefix: &str, n: usize) -> String {
    format!("{prefix}{n:07}")
}

/// The name of account `k` of `n` that --accounts and --register-accounts share.
fn account_name(user: &str, k: usize, n: usize) -> String {
    if n <= 1 && k == 0 { user.to_string() } else { format!("{user}-{k:02}") }
}

fn write_register(args: &BenchArgs, path: &PathBuf) -> Result<ExitCode> {
    let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let inst = args.target.institution.clone().unwrap_or_else(|| "BENCH".into());
    writeln!(
        w,
        "{}",
        json!({"type":"institution","code":inst,"name":"Bench Library","currency":"SEK","timezone":"Europe/Stockholm"})
    )?;
    let (user, password) = args.target.credentials()?.unwrap_or_else(|| ("bench".into(), "bench-password".into()));
    writeln!(w, "{}", json!({"type":"account","login":user,"password":password,"institution":inst}))?;
    for k in 0..args.register_accounts {
        let login = account_name(&user, k, args.register_accounts);
        writeln!(w, "{}", json!({"type":"account","login":login,"password":password,"institution":inst}))?;
    }
    for n in 0..args.register_patrons {
        let b = barcode(&args.patron_prefix, n);
        writeln!(
            w,
            "{}",
            json!({"type":"patron","institution":inst,"primary_id":format!("P{n:07}"),"first_name":"Bench",
                   "last_name":format!("Patron {n}"),"identifiers":[{"kind":"barcode","value":b}],"pin":args.pin})
        )?;
    }
    for n in 0..args.register_items {
        let b = barcode(&args.item_prefix, n);
        writeln!(
            w,
            "{}",
            json!({"type":"item","barcode":b,"institution":inst,"title":format!("Bench copy {n}"),"media_type":1,"security_marker":2})
        )?;
    }
    w.flush()?;
    println!(
        "wrote {} patrons ({}0000000...) and {} items ({}0000000...) for institution {inst}, account {user}, to {}",
        args.register_patrons,
        args.patron_prefix,
        args.register_items,
        args.item_prefix,
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn percentiles(h: &hdrhistogram::Histogram<u64>) -> serde_json::Value {
    json!({
        "count": h.len(),
        "p50_us": h.value_at_quantile(0.50),
        "p99_us": h.value_at_quantile(0.99),
        "p999_us": h.value_at_quantile(0.999),
        "max_us": h.max(),
    })
}

fn print(report: &Report, args: &BenchArgs, target: &str) {
    let all = report.overall();
    if args.json {
        let per: serde_json::Map<String, serde_json::Value> = report
            .per_op
            .iter()
            .map(|(op, s)| {
                let mut v = percentiles(&s.hist);
                v["errors"] = json!(s.errors);
                (op.code().to_string(), v)
            })
            .collect();
        let obj = json!({
            "target": target,
            "connections": report.connections,
            "duration_s": report.measured.as_secs_f64(),
            "checksums": !args.target.no_checksums,
            "tls": args.target.tls,
            "throughput": report.throughput(),
            "requests": report.requests(),
            "errors": report.errors(),
            "failed_connections": report.failed_connections,
            "io_errors": report.io_errors,
            "latency": percentiles(&all),
            "per_message": per,
            "idle_connections": args.idle,
            "server_cpu_us_per_request": report.server_cpu_per_request(),
            "error_samples": report.samples,
        });
        println!("{obj}");
        return;
    }
    println!(
        "{target}: {} connections, {:.1}s measured, checksums {}, TLS {}",
        report.connections,
        report.measured.as_secs_f64(),
        if args.target.no_checksums { "off" } else { "on" },
        if args.target.tls { "on" } else { "off" }
    );
    println!(
        "{:<8} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "message", "requests", "req/s", "p50 µs", "p99 µs", "p999 µs", "max µs", "errors"
    );
    let secs = report.measured.as_secs_f64().max(1e-9);
    for (op, s) in &report.per_op {
        let h = &s.hist;
        println!(
            "{:<8} {:>10} {:>10.0} {:>8} {:>8} {:>8} {:>8} {:>7}",
            op.code(),
            h.len(),
            h.len() as f64 / secs,
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max(),
            s.errors
        );
    }
    println!(
        "{:<8} {:>10} {:>10.0} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "all",
        all.len(),
        report.throughput(),
        all.value_at_quantile(0.5),
        all.value_at_quantile(0.99),
        all.value_at_quantile(0.999),
        all.max(),
        report.errors()
    );
    if let Some(cpu) = report.server_cpu_per_request() {
        println!("server CPU: {cpu:.1} µs per request (user and system, over the measured window)");
    }
    if report.failed_connections > 0 || report.io_errors > 0 {
        println!("{} connections failed, {} requests unanswered", report.failed_connections, report.io_errors);
    }
    for s in &report.samples {
        println!("  e.g. {s}");
    }
}

pub fn run(args: &BenchArgs) -> Result<ExitCode> {
    if let Some(path) = &args.write_register {
        return write_register(args, path);
    }
    if args.login_storm {
        return run_storm(args);
    }
    if let Some(n) = args.wrong_logins {
        return run_flood(args, n);
    }
    let mut mix = Vec::new();
    for m in &args.mix {
        mix.push(Op::parse(m).with_context(|| format!("--mix {m}: status, checkout or checkin"))?);
    }
    if mix.is_empty() {
        return Err(super::exit::usage("--mix names no request"));
    }
    let connections = args.connections as usize;
    let t = &args.target;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = rt.block_on(async {
        let shutdown = CancellationToken::new();
        let (host, port, target) = if args.null {
            let addr = bench::start_null(shutdown.clone()).await?;
            (addr.ip().to_string(), addr.port(), "null responder".to_string())
        } else {
            (t.host.clone(), t.port, format!("{}:{}", t.host, t.port))
        };
        let login = match t.credentials()? {
            Some(c) => Some(c),
            None if args.null => Some(("bench".into(), "bench-password".into())),
            None => Some(("bench".into(), "bench-password".into())),
        };
        let patrons = args.patrons.unwrap_or(connections).max(1);
        let plan = Plan {
            host,
            port,
            tls: (t.tls && !args.null).then(|| ClientTls {
                ca: t.ca.clone(),
                cert: t.cert.clone().zip(t.key.clone()),
                insecure: t.insecure,
                server_name: None,
            }),
            wire: t.wire(),
            login,
            institution: t.institution.clone().unwrap_or_else(|| "BENCH".into()),
            connections,
            duration: args.duration,
            warmup: args.warmup,
            mix,
            patrons: (0..patrons).map(|n| (barcode(&args.patron_prefix, n), args.pin.clone())).collect(),
            items: (0..connections).map(|n| barcode(&args.item_prefix, n)).collect(),
            timeout: t.timeout,
            connect_timeout: t.timeout.max(Duration::from_secs(300)),
            server_pid: args.server_pid,
        };
        let mut idle = Vec::with_capacity(args.idle);
        for _ in 0..args.idle {
            match tokio::net::TcpStream::connect((plan.host.as_str(), plan.port)).await {
                Ok(s) => idle.push(s),
                Err(e) => bail!("idle connection {} of {}: {e}", idle.len() + 1, args.idle),
            }
        }
        // Long runs show their progress (seconds of warm-up and measurement); short ones need none.
        let total = (args.warmup + args.duration).as_secs();
        let report = if total >= 10 {
            let progress = Progress::new("bench", Unit::Count("s"), Some(total));
            let run = bench::run(plan);
            tokio::pin!(run);
            let start = tokio::time::Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            let report = loop {
                tokio::select! {
                    r = &mut run => break r?,
                    _ = tick.tick() => progress.set(start.elapsed().as_secs().min(total)),
                }
            };
            progress.finish();
            report
        } else {
            bench::run(plan).await?
        };
        drop(idle);
        shutdown.cancel();
        anyhow::Ok((report, target))
    })?;
    rt.shutdown_timeout(Duration::from_secs(1));
    print(&report.0, args, &report.1);
    Ok(if report.0.errors() == 0 && report.0.requests() > 0 {
        ExitCode::SUCCESS
    } else {
        super::exit::Exit::Failure.into()
    })
}

fn credentials(args: &BenchArgs) -> Result<(String, String)> {
    Ok(args.target.credentials()?.unwrap_or_else(|| ("bench".into(), "bench-password".into())))
}

fn run_storm(args: &BenchArgs) -> Result<ExitCode> {
    let t = &args.target;
    let (user, password) = credentials(args)?;
    let n = args.accounts as usize;
    let plan = logins::Storm {
        host: t.host.clone(),
        port: t.port,
        tls: t.tls.then(|| ClientTls {
            ca: t.ca.clone(),
            cert: t.cert.clone().zip(t.key.clone()),
            insecure: t.insecure,
            server_name: None,
        }),
        wire: t.wire(),
        connections: args.connections as usize,
        accounts: (0..n).map(|k| (account_name(&user, k, n), password.clone())).collect(),
        timeout: t.timeout.max(Duration::from_secs(60)),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let r = rt.block_on(logins::storm(plan))?;
    rt.shutdown_timeout(Duration::from_secs(1));
    let h = &r.latency;
    if args.json {
        println!(
            "{}",
            json!({"target": format!("{}:{}", t.host, t.port), "login_storm": true, "connections": r.connections,
                   "accounts": n, "accepted": r.accepted, "refused": r.refused, "failed": r.failed,
                   "latency": percentiles(h), "slowest_ms": h.max() as f64 / 1000.0, "error_samples": r.samples})
        );
    } else {
        println!(
            "{}:{}: {} logins sent at once over {n} account(s): {} accepted, {} refused, {} unanswered",
            t.host, t.port, r.connections, r.accepted, r.refused, r.failed
        );
        println!(
            "answered in: p50 {:.1} ms, p99 {:.1} ms, slowest {:.1} ms",
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0
        );
        for s in &r.samples {
            println!("  e.g. {s}");
        }
    }
    Ok(if r.accepted == r.connections { ExitCode::SUCCESS } else { super::exit::Exit::Failure.into() })
}

fn run_flood(args: &BenchArgs, wrong: usize) -> Result<ExitCode> {
    let t = &args.target;
    let (user, password) = credentials(args)?;
    let plan = logins::Flood {
        host: t.host.clone(),
        port: t.port,
        wire: t.wire(),
        source: args.flood_from,
        flooders: args.flooders.max(1),
        wrong,
        account: args.flood_account.clone().unwrap_or_else(|| user.clone()),
        probe: (user, password),
        probe_every: args.probe_every,
        timeout: t.timeout.max(Duration::from_secs(60)),
        server_pid: args.server_pid,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let r = rt.block_on(logins::flood(plan))?;
    rt.shutdown_timeout(Duration::from_secs(1));
    let h = &r.probe;
    let rate = r.sent as f64 / r.elapsed.as_secs_f64().max(1e-9);
    let rss = r.rss_kib.map(|(b, p, a)| json!({"before_kib": b, "peak_kib": p, "after_kib": a}));
    if args.json {
        println!(
            "{}",
            json!({"target": format!("{}:{}", t.host, t.port), "wrong_logins": r.sent, "refused": r.refused,
                   "accepted": r.accepted, "seconds": r.elapsed.as_secs_f64(), "per_second": rate,
                   "probe": percentiles(h), "probe_failures": r.probe_failures, "server_rss": rss})
        );
    } else {
        println!(
            "{}:{}: {} wrong logins in {:.1}s ({rate:.0}/s): {} refused, {} accepted",
            t.host,
            t.port,
            r.sent,
            r.elapsed.as_secs_f64(),
            r.refused,
            r.accepted
        );
        println!(
            "a correct login meanwhile ({} tries): p50 {:.1} ms, slowest {:.1} ms, {} refused or unanswered",
            h.len(),
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.max() as f64 / 1000.0,
            r.probe_failures
        );
        if let Some((b, p, a)) = r.rss_kib {
            println!(
                "server resident memory: {:.1} MB before, {:.1} MB at most, {:.1} MB after",
                b as f64 / 1024.0,
                p as f64 / 1024.0,
                a as f64 / 1024.0
            );
        }
    }
    Ok(if r.accepted == 0 && r.probe_failures == 0 { ExitCode::SUCCESS } else { super::exit::Exit::Failure.into() })
}
