//! `sip2d conform`: grade a SIP2 server against the conformance transcripts.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::client::{Target, now_date};
use crate::proto::{FixedCodec, SipDate};
use crate::tools::conform::{self, Fixture, Settings, Transcript, Verdict};

/// Run the conformance transcripts against a SIP2 server (sip2d or any other) and print one
/// line per check: PASS, FAIL or SKIP with the reason, then `N passed, M failed`. Exits 1 when
/// any check fails.
///
/// The checks: framing, checksum and sequence echo, fixed-field widths, required fields, the
/// right response code, and, given a fixture naming what the server holds (patrons, PINs,
/// items and their states), the semantics: valid patron and PIN flags, refusals, checkout and
/// checkin. The transcripts and their format are in conformance/ (README.md); the built-in set
/// is used unless --transcripts names files. conformance/fixtures/demo.toml describes
/// `sip2d serve --demo`.
#[derive(Debug, clap::Args)]
pub struct ConformArgs {
    #[command(flatten)]
    target: Target,
    /// What the server holds: a TOML file of names and values (see conformance/fixtures/demo.toml).
    #[arg(long, value_name = "FILE")]
    fixture: Option<PathBuf>,
    /// Transcript files to run instead of the built-in set (repeatable).
    #[arg(long = "transcripts", value_name = "FILE")]
    transcripts: Vec<PathBuf>,
    /// Run only transcripts whose name contains this.
    #[arg(long, value_name = "TEXT")]
    only: Option<String>,
    /// Print a JSON report instead of lines.
    #[arg(long)]
    json: bool,
    /// Act as the ACS instead: accept kiosks on this address, answer from a demo register,
    /// and grade every request they send (well-formed, required fields, checksum, sequence,
    /// login first); the report comes on Ctrl-C or after --duration.
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["fixture", "transcripts"])]
    listen: Option<std::net::SocketAddr>,
    /// With --listen: stop after this long.
    #[arg(long, value_parser = humantime_serde::re::humantime::parse_duration)]
    duration: Option<std::time::Duration>,
    /// With --listen: inject faults as `sip2d serve --fault` does (repeatable).
    #[arg(long = "fault", value_name = "NAME=VALUE")]
    faults: Vec<String>,
    /// How long to wait before deciding a server sends no reply.
    #[arg(long, default_value = "500ms", value_parser = humantime_serde::re::humantime::parse_duration)]
    silence: std::time::Duration,
}

fn load_fixture(path: Option<&PathBuf>) -> Result<Fixture> {
    let mut f = Fixture::new();
    if let Some(p) = path {
        let text = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        let table: toml::Table = toml::from_str(&text).with_context(|| format!("{} is not TOML", p.display()))?;
        for (k, v) in table {
            let value = match v {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                other => bail!("{}: {k} must be a string, not {other}", p.display()),
            };
            f.insert(k, value);
        }
    }
    let mut date = bytes::BytesMut::new();
    <SipDate as FixedCodec>::write(&now_date(), &mut date);
    f.entry("date".into()).or_insert_with(|| String::from_utf8_lossy(&date).into_owned());
    Ok(f)
}

fn load_transcripts(args: &ConformArgs) -> Result<Vec<(String, Transcript)>> {
    let mut out = Vec::new();
    let sources: Vec<(String, String)> = if args.transcripts.is_empty() {
        conform::BUILT_IN.iter().map(|(n, t)| ((*n).to_string(), (*t).to_string())).collect()
    } else {
        args.transcripts
            .iter()
            .map(|p| {
                Ok((
                    p.display().to_string(),
                    std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
                ))
            })
            .collect::<Result<_>>()?
    };
    for (name, text) in sources {
        let file = name.rsplit('/').next().unwrap_or(&name).trim_end_matches(".sip").to_string();
        for t in conform::parse(&text).map_err(|e| anyhow::anyhow!("{name}: {e}"))? {
            if args.only.as_ref().is_none_or(|o| t.name.contains(o.as_str())) {
                out.push((file.clone(), t));
            }
        }
    }
    Ok(out)
}

/// How many checks passed, failed and were skipped.
fn tally(checks: &[conform::Check]) -> (usize, usize, usize) {
    let count = |f: fn(&Verdict) -> bool| checks.iter().filter(|c| f(&c.verdict)).count();
    (count(|v| *v == Verdict::Pass), count(|v| matches!(v, Verdict::Fail(_))), count(|v| matches!(v, Verdict::Skip(_))))
}

/// A verdict for the JSON report: its name (`skip` names the third kind) and its reason.
fn verdict_parts<'a>(v: &Verdict, skip: &'a str) -> (&'a str, Option<String>) {
    match v {
        Verdict::Pass => ("pass", None),
        Verdict::Fail(r) => ("fail", Some(r.clone())),
        Verdict::Skip(r) => (skip, Some(r.clone())),
    }
}

pub fn run(args: &ConformArgs) -> Result<ExitCode> {
    if let Some(addr) = args.listen {
        return listen(args, addr);
    }
    let fixture = load_fixture(args.fixture.as_ref())?;
    let transcripts = load_transcripts(args)?;
    let t = &args.target;
    let settings =
        Settings { login: t.credentials()?, encoding: t.encoding, timeout: t.timeout, silence: args.silence };
    let named: Vec<Transcript> =
        transcripts.iter().map(|(file, tr)| Transcript { name: format!("{file}/{}", tr.name), ..tr.clone() }).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let checks = rt.block_on(async {
        conform::run(&named, &fixture, &settings, || async { t.connect().await.map_err(std::io::Error::other) }).await
    });
    let (passed, failed, skipped) = tally(&checks);
    if args.json {
        let list: Vec<_> = checks
            .iter()
            .map(|c| {
                let (verdict, reason) = verdict_parts(&c.verdict, "skip");
                json!({"transcript": c.transcript, "check": c.check, "tests": c.tests, "verdict": verdict, "reason": reason})
            })
            .collect();
        println!(
            "{}",
            json!({"target": format!("{}:{}", t.host, t.port), "passed": passed, "failed": failed, "skipped": skipped, "checks": list})
        );
    } else {
        for c in &checks {
            match &c.verdict {
                Verdict::Pass => println!("PASS {}: {}", c.transcript, c.check),
                Verdict::Fail(r) => println!("FAIL {}: {}: {r}  [{}]", c.transcript, c.check, c.tests),
                Verdict::Skip(r) => println!("SKIP {}: {r}", c.transcript),
            }
        }
        println!("{passed} passed, {failed} failed, {skipped} skipped");
    }
    Ok(if failed == 0 && passed > 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `--listen`: the checker as the ACS, grading a kiosk.
fn listen(args: &ConformArgs, addr: std::net::SocketAddr) -> Result<ExitCode> {
    use std::sync::{Arc, Mutex};

    use crate::engine::{self as demo, Engine};
    use crate::net::{Config, Listener, Server};
    use crate::tools::conform::{Check, KioskGrader};

    let dir = std::env::temp_dir().join(format!(
        "sip2d-conform-{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_millisecond()
    ));
    let engine = demo::open_or_create(&dir, &demo::StoreConfig::default())
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let d = demo::build_demo(&engine, jiff::Timestamp::now())?;
    let engine: Arc<dyn Engine> = Arc::new(engine);
    let mut config = Config { listen: vec![Listener::plain(addr)], ..Config::default() };
    for f in &args.faults {
        config.faults.set(f).map_err(super::exit::usage)?;
    }
    let encoding = args.target.encoding;
    let grader = Arc::new(Mutex::new(KioskGrader::new()));
    let checks: Arc<Mutex<Vec<Check>>> = Arc::new(Mutex::new(Vec::new()));
    let print_line = |c: &Check| match &c.verdict {
        Verdict::Pass => println!("PASS {}: {}", c.transcript, c.check),
        Verdict::Fail(r) => println!("FAIL {}: {}: {r}", c.transcript, c.check),
        Verdict::Skip(r) => println!("NOTE {}: {}: {r}", c.transcript, c.check),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let (g, all) = (grader.clone(), checks.clone());
        let json = args.json;
        let tap: crate::net::Tap = Arc::new(move |peer, frame: &[u8], _outcome: &crate::service::Outcome| {
            let new = g.lock().map(|mut g| g.grade(peer, frame, encoding)).unwrap_or_default();
            if !json {
                for c in &new {
                    print_line(c);
                }
            }
            if let Ok(mut a) = all.lock() {
                a.extend(new);
            }
        });
        let server = Server::bind(&config, engine).await?.with_tap(tap);
        for (a, _) in server.addresses() {
            println!("conform: acting as the ACS on {a} with the demo register; grading every request");
        }
        for a in &d.accounts {
            println!("  account {} / {} ({})", a.login, a.password, a.institution);
        }
        let shutdown = tokio_util::sync::CancellationToken::new();
        let stop = shutdown.clone();
        let duration = args.duration;
        tokio::spawn(async move {
            match duration {
                Some(d) => {
                    tokio::select! { _ = tokio::time::sleep(d) => {}, _ = tokio::signal::ctrl_c() => {} }
                }
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
            stop.cancel();
        });
        server.run(shutdown).await?;
        anyhow::Ok(())
    })?;
    let checks = checks.lock().map(|c| c.clone()).unwrap_or_default();
    let (passed, failed, _) = tally(&checks);
    let requests: std::collections::BTreeSet<&str> = checks.iter().map(|c| c.transcript.as_str()).collect();
    if args.json {
        let list: Vec<_> = checks
            .iter()
            .map(|c| {
                let (verdict, reason) = verdict_parts(&c.verdict, "note");
                json!({"request": c.transcript, "check": c.check, "verdict": verdict, "reason": reason})
            })
            .collect();
        println!("{}", json!({"requests": requests.len(), "passed": passed, "failed": failed, "checks": list}));
    } else {
        println!("{} requests graded: {passed} passed, {failed} failed", requests.len());
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
