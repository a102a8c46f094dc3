//! Imports a large register (default 1 M patrons and 2 M items) from JSON Lines and reports the
//! time, peak memory, size on disk and the latency of patron lookup by barcode. The baseline,
//! measured in the same run, is sled itself storing the same records with no checks, no indexes
//! and no JSON: the floor any import on this store can reach.
//!
//! `cargo bench --bench import` (IMPORT_PATRONS and IMPORT_ITEMS change the scale).

use std::io::{BufReader, BufWriter, Write};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use sip2d::engine::{Answer, By, Engine, ImportOptions, Query, StoreConfig};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Peak resident memory of this process so far (Linux), in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

const FIRST: [&str; 8] = ["Ada", "Bo", "Cecilia", "Dag", "Elin", "Frans", "Greta", "Hugo"];
const LAST: [&str; 8] = ["Lind", "Berg", "Holm", "Ek", "Strand", "Nyström", "Sjöberg", "Wallin"];

fn patron_barcode(n: u64) -> String {
    format!("2{n:012}")
}

fn write_file(path: &std::path::Path, patrons: u64, items: u64) {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).expect("create import file"));
    writeln!(
        out,
        r#"{{"type":"institution","code":"MAIN","name":"Main Library","currency":"SEK","timezone":"Europe/Stockholm"}}"#
    )
    .expect("write");
    for n in 0..patrons {
        let (f, l) = (FIRST[(n % 8) as usize], LAST[((n / 8) % 8) as usize]);
        let year = 1940 + n % 60;
        let month = 1 + n % 12;
        let day = 1 + n % 28;
        writeln!(
            out,
            r#"{{"type":"patron","institution":"MAIN","primary_id":"U{n:09}","first_name":"{f}","last_name":"{l}","birth_date":"{year}-{month:02}-{day:02}","email":"user{n}@example.org","phone":"+4670{n:07}","address":"Storgatan {} , Uppsala","postal_code":"75{:03}","user_group":"adult","expiry":"2028-06-30","identifiers":[{{"kind":"barcode","value":"{}"}}],"pin":"{:04}"}}"#,
            n % 200,
            n % 1000,
            patron_barcode(n),
            n % 10_000
        )
        .expect("write");
    }
    for n in 0..items {
        writeln!(
            out,
            r#"{{"type":"item","barcode":"3{n:012}","institution":"MAIN","title":"Title number {n}","author":"{}, {}","call_number":"Hc.{:02}","location":"Floor {}","media_type":1,"security_marker":2}}"#,
            LAST[(n % 8) as usize],
            FIRST[((n / 8) % 8) as usize],
            n % 100,
            n % 4
        )
        .expect("write");
    }
    out.flush().expect("flush");
}

/// The floor: the same number of records, already encoded, stored by sled in large batches.
fn raw_sled(dir: &std::path::Path, patrons: u64, items: u64) -> Duration {
    let db = sled::Config::new().path(dir).cache_capacity(512 << 20).open().expect("open sled");
    let p = db.open_tree("patrons").expect("tree");
    let i = db.open_tree("items").expect("tree");
    let value = vec![7u8; 260];
    let ivalue = vec![9u8; 110];
    let start = Instant::now();
    for (tree, n, v) in [(&p, patrons, &value), (&i, items, &ivalue)] {
        let mut k = 0;
        while k < n {
            let mut batch = sled::Batch::default();
            for id in k..(k + 256).min(n) {
                batch.insert(&id.to_be_bytes(), v.clone());
            }
            tree.apply_batch(batch).expect("batch");
            k += 256;
        }
    }
    db.flush().expect("flush");
    start.elapsed()
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs us too: do a tiny run then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let patrons = env("IMPORT_PATRONS", if quick { 2_000 } else { 1_000_000 });
    let items = env("IMPORT_ITEMS", if quick { 4_000 } else { 2_000_000 });
    let work = tempfile::tempdir().expect("tempdir");
    let file = work.path().join("register.jsonl");
    write_file(&file, patrons, items);
    let file_mib = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0;
    let rss_before = peak_rss_mib();

    let store_dir = work.path().join("store");
    let engine = sip2d::engine::open_or_create(&store_dir, &StoreConfig::default()).expect("open register");
    let by = By::new("bench", Timestamp::now());
    let start = Instant::now();
    let input = BufReader::with_capacity(1 << 20, std::fs::File::open(&file).expect("open import file"));
    let report = sip2d::engine::exchange::import(&engine, input, &ImportOptions::default(), &by).expect("import");
    let import_time = start.elapsed();
    let peak = peak_rss_mib();
    assert!(report.rejected.is_empty(), "rejected: {:?}", report.rejected.first());
    assert_eq!(report.created as u64, 1 + patrons + items);
    let disk = dir_size(&store_dir) as f64 / 1048576.0;
    // The lookups run as a server would: the register reopened (the working set loaded).
    drop(engine);
    let serve_cache = env("LOOKUP_CACHE_MIB", 64);
    let settings = StoreConfig { cache_bytes: serve_cache << 20, ..Default::default() };
    let warm = Instant::now();
    let engine = sip2d::engine::open_or_create(&store_dir, &settings).expect("reopen register");
    let warm = warm.elapsed();

    // Lookup by barcode, the kiosk's first question: index, record, decode.
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % patrons
    };
    let samples = if quick { 2_000 } else { 200_000 };
    let mut lat: Vec<Duration> = (0..samples)
        .map(|_| {
            let b = patron_barcode(next());
            let t = Instant::now();
            let p = engine.query(Query::FindPatron { institution: "MAIN".into(), key: b }).wait().expect("lookup");
            let e = t.elapsed();
            assert!(matches!(p, Answer::Patron(_)));
            e
        })
        .collect();
    lat.sort();
    let pct = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    drop(engine);

    let raw = raw_sled(&work.path().join("raw"), patrons, items);
    println!("import: {patrons} patrons + {items} items ({file_mib:.0} MiB of JSON Lines)");
    println!(
        "  import time       {:.1} s  ({:.0} records/s)",
        import_time.as_secs_f64(),
        report.created as f64 / import_time.as_secs_f64()
    );
    println!(
        "  baseline          {:.1} s  (sled storing the same number of records, no checks or indexes)",
        raw.as_secs_f64()
    );
    println!("  ratio             {:.2}x the baseline", import_time.as_secs_f64() / raw.as_secs_f64());
    println!("  peak memory       {peak:.0} MiB (before the import: {rss_before:.0} MiB)");
    println!("  store on disk     {disk:.0} MiB");
    println!(
        "  lookup by barcode p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs ({samples} random lookups; opening the register took {:.1} s, cache {serve_cache} MiB)",
        pct(0.50).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6,
        pct(0.999).as_secs_f64() * 1e6,
        warm.as_secs_f64()
    );
}
