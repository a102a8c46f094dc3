//! The write-ahead log as an operator meets it: a server killed before sled caught up loses
//! nothing; a record a crash cut short is dropped with a line on standard error; a damaged log
//! stops the start with the file and byte, and `sip2d log repair` cuts it there.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn sip2d(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sip2d"))
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("SIP2D_DATA")
        .env_remove("SIP2D_CONFIG")
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn patrons(data: &Path) -> Vec<String> {
    let out = ok(&sip2d(data, &["--json", "patron", "list"]));
    let mut ids: Vec<String> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .flat_map(|v| match v {
            serde_json::Value::Array(a) => a,
            v => vec![v],
        })
        .filter_map(|p| p["primary_id"].as_str().map(String::from))
        .collect();
    ids.sort();
    ids
}

/// A register whose server added `n` patrons (P1..Pn) and was killed with SIGKILL before any
/// checkpoint: sled holds none of them, the log all.
fn killed_with_unapplied_log(n: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok(&sip2d(&data, &["init"]));
    ok(&sip2d(&data, &["institution", "add", "--code", "MAIN", "--name", "Main Library"]));
    let config = dir.path().join("sip2d.toml");
    std::fs::write(&config, "[store]\ncheckpoint_interval = \"1h\"\n").unwrap();
    let (mut child, _out, _addr) = common::spawn_sip2d(
        &["--data", data.to_str().unwrap(), "serve", "--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"],
        "warn",
        Stdio::null(),
        "listening on ",
    );
    for i in 1..=n {
        let args: Vec<String> = ["patron", "add", "--first-name", "Pat", "--last-name", &format!("Ron{i}")]
            .into_iter()
            .map(String::from)
            .chain(["--primary-id".to_string(), format!("P{i}")])
            .collect();
        // The command line sends it to the running server through its admin socket.
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(&sip2d(&data, &args));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    (dir, data)
}

fn segment(data: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("wal")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert_eq!(files.len(), 1, "{files:?}");
    files.remove(0)
}

/// The byte offsets where each record of a segment starts (up to the zeros laid down ahead).
fn record_starts(bytes: &[u8]) -> Vec<usize> {
    let mut at = 16;
    let mut starts = Vec::new();
    while at + 16 <= bytes.len() && bytes[at..at + 16] != [0; 16] {
        starts.push(at);
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 16 + len;
    }
    starts
}

#[test]
fn a_server_killed_before_sled_caught_up_loses_nothing() {
    let (_dir, data) = killed_with_unapplied_log(4);
    let verify = ok(&sip2d(&data, &["log", "verify"]));
    assert!(verify.contains("lacks 4 record(s)"), "{verify}");
    assert_eq!(patrons(&data), ["P1", "P2", "P3", "P4"]);
}

#[test]
fn a_record_cut_short_is_dropped_with_a_line_and_the_rest_kept() {
    let (_dir, data) = killed_with_unapplied_log(3);
    let file = segment(&data);
    let bytes = std::fs::read(&file).unwrap();
    let last = *record_starts(&bytes).last().unwrap();
    std::fs::write(&file, &bytes[..last + 20]).unwrap();
    let o = sip2d(&data, &["patron", "list"]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("dropped the end of the write-ahead log"), "{err}");
    assert!(err.contains(&format!("offset={last}")), "{err}");
    assert_eq!(patrons(&data), ["P1", "P2"], "the cut record's patron was never acknowledged");
}

#[test]
fn damage_with_valid_records_after_it_stops_the_start_until_repaired() {
    let (dir, data) = killed_with_unapplied_log(4);
    let file = segment(&data);
    let mut bytes = std::fs::read(&file).unwrap();
    let second = record_starts(&bytes)[1];
    bytes[second + 20] ^= 0x20;
    std::fs::write(&file, &bytes).unwrap();

    let o = sip2d(&data, &["log", "verify"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("at byte {second}")) && err.contains("sip2d log repair"), "{err}");

    let config = dir.path().join("sip2d.toml");
    let o = Command::new(env!("CARGO_BIN_EXE_sip2d"))
        .args(["--data", data.to_str().unwrap(), "serve", "--config", config.to_str().unwrap(), "--listen"])
        .arg("127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "the server does not start on a damaged log");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&file.display().to_string()) && err.contains(&format!("at byte {second}")), "{err}");

    let repaired = ok(&sip2d(&data, &["log", "repair"]));
    assert!(
        repaired.contains(&format!("at byte {second}")) && repaired.contains("holding 2 valid record(s)"),
        "{repaired}"
    );
    assert_eq!(patrons(&data), ["P1"], "what came before the damage is kept");
    let again = ok(&sip2d(&data, &["log", "repair"]));
    assert!(again.contains("nothing was changed"), "{again}");
}
