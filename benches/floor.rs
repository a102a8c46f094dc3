//! The durable floor: the least a durable SIP2 server can do, as the second ceiling of the
//! published benchmark (docs/BENCHMARKS.md), beside the canned responder (`sip2d serve --null`).
//!
//! One writer thread decides each 11 and 09 against a map of loans in memory, appends the
//! batch of decisions to a file (over zeros laid down ahead), fdatasyncs it, and only then
//! replies; a 23 reads memory. No register, no PINs, no parsing beyond finding AA and AB, fixed
//! replies: what is left is the sockets, the wake-ups and the disk sync a durable answer cannot
//! do without.
//!
//! ```sh
//! cargo bench --bench floor -- 127.0.0.1:16102 /tmp/floor-dir   # serves until killed
//! sip2d bench --port 16102 --connections 16
//! ```

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, RwLock};

use bytes::BytesMut;
use sip2d::proto::{FrameDecoder, FrameEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

const MAX_BATCH: usize = 1024;

enum Change {
    Checkout { patron: String, item: String },
    Checkin { item: String },
}

struct Job {
    change: Change,
    reply: oneshot::Sender<&'static [u8]>,
}

/// Loans per patron, as the writer last made them durable: what a 23 reads.
type Counts = Arc<RwLock<HashMap<String, u32>>>;

fn field(frame: &[u8], tag: &[u8; 2]) -> String {
    frame
        .split(|b| *b == b'|')
        .find_map(|f| f.strip_prefix(&tag[..]))
        .or_else(|| {
            // The first field follows the fixed part, so it is not after a '|'.
            let at = frame.windows(2).position(|w| w == tag)?;
            frame[at + 2..].split(|b| *b == b'|').next()
        })
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .unwrap_or_default()
}

fn writer(jobs: Receiver<Job>, log: std::fs::File, counts: Counts) {
    let (mut at, mut zeroed) = (0u64, 0u64);
    let mut loans: HashMap<String, String> = HashMap::new();
    let mut record = Vec::new();
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        record.clear();
        let mut replies = Vec::with_capacity(batch.len());
        let mut changed: Vec<(String, i32)> = Vec::new();
        for job in batch {
            let reply: &'static [u8] = match &job.change {
                Change::Checkout { patron, item } => {
                    if loans.contains_key(item) {
                        b"120NNY20260101    120000AOMAIN|AA0|AB0|AJBench|AFOn loan.|\r"
                    } else {
                        loans.insert(item.clone(), patron.clone());
                        changed.push((patron.clone(), 1));
                        writeln!(record, "out {item} {patron}").ok();
                        b"121NNY20260101    120000AOMAIN|AA0|AB0|AJBench|AH20260122    235900|\r"
                    }
                }
                Change::Checkin { item } => match loans.remove(item) {
                    Some(patron) => {
                        changed.push((patron, -1));
                        writeln!(record, "in {item}").ok();
                        b"101YNN20260101    120000AOMAIN|AB0|AQ|\r"
                    }
                    None => b"100NNN20260101    120000AOMAIN|AB0|AQ|\r",
                },
            };
            replies.push((job.reply, reply));
        }
        if !record.is_empty() {
            record.splice(0..0, (record.len() as u32).to_le_bytes());
            let end = at + record.len() as u64;
            // Over zeros laid down ahead, as sip2d's log and PostgreSQL's WAL are written: the
            // sync then carries no change of the file's size.
            if end > zeroed {
                let to = end.max(zeroed + (1 << 20));
                while zeroed < to {
                    log.write_all_at(&[0; 1 << 16], zeroed).expect("zeros");
                    zeroed += 1 << 16;
                }
            }
            log.write_all_at(&record, at).expect("append");
            log.sync_data().expect("fdatasync");
            at = end;
        }
        if let Ok(mut c) = counts.write() {
            for (patron, d) in changed {
                let n = c.entry(patron).or_insert(0);
                *n = n.saturating_add_signed(d);
            }
        }
        for (tx, reply) in replies {
            let _ = tx.send(reply);
        }
    }
}

async fn connection(mut s: tokio::net::TcpStream, jobs: SyncSender<Job>, counts: Counts) {
    let _ = s.set_nodelay(true);
    let mut decoder = FrameDecoder::new(8192);
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        while let Some(FrameEvent::Frame(f)) = decoder.decode(&mut buf) {
            let reply: &'static [u8] = match f.get(..2).unwrap_or_default() {
                b"93" => b"941\r",
                b"23" => {
                    let patron = field(&f, b"AA");
                    let loans = counts.read().map(|c| c.get(&patron).copied().unwrap_or(0)).unwrap_or(0);
                    std::hint::black_box(loans);
                    b"24              00120260101    120000AOMAIN|AA0|AEBench|BLY|CQY|\r"
                }
                code @ (b"11" | b"09") => {
                    let change = if code == b"11" {
                        Change::Checkout { patron: field(&f, b"AA"), item: field(&f, b"AB") }
                    } else {
                        Change::Checkin { item: field(&f, b"AB") }
                    };
                    let (tx, rx) = oneshot::channel();
                    if jobs.send(Job { change, reply: tx }).is_err() {
                        return;
                    }
                    match rx.await {
                        Ok(r) => r,
                        Err(_) => return,
                    }
                }
                _ => b"96\r",
            };
            if s.write_all(reply).await.is_err() {
                return;
            }
        }
        match s.read_buf(&mut buf).await {
            Ok(n) if n > 0 => {}
            _ => return,
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; the address and directory are the other arguments.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let addr = args.first().cloned().unwrap_or_else(|| "127.0.0.1:16102".into());
    let dir =
        std::path::PathBuf::from(args.get(1).cloned().unwrap_or_else(|| std::env::temp_dir().display().to_string()));
    std::fs::create_dir_all(&dir).expect("the directory");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(dir.join("floor.log"))
        .expect("the log file");
    let counts: Counts = Arc::default();
    let (tx, rx) = std::sync::mpsc::sync_channel(16 * 1024);
    let c = counts.clone();
    // Named, so that a per-thread measure (benches/ab.sh THREADS=1) tells it from the listener.
    std::thread::Builder::new()
        .name("floor-writer".into())
        .spawn(move || writer(rx, log, c))
        .expect("the writer thread");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
        println!("floor listening on {}", listener.local_addr().expect("address"));
        loop {
            let Ok((s, _)) = listener.accept().await else { continue };
            tokio::spawn(connection(s, tx.clone(), counts.clone()));
        }
    });
}
