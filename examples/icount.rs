//! Instruction-count probe for the codec: run one operation N times under
//! `valgrind --tool=callgrind` and divide. Counts are repeatable on a busy machine, unlike times.
//!
//! ```sh
//! cargo build --release --example icount
//! valgrind --tool=callgrind ./target/release/examples/icount 11 10000
//! ```
use std::hint::black_box;

use sip2d::proto::{self, Encoding, FixedCodec, SipDate};

const F11: &[u8] = b"11YN20250114    093040                  AOMAIN|AA21234000012345|AB31234000098765|AC|AY3AZED57";
const F23: &[u8] = b"2300120250114    093015AOMAIN|AA21234000012345|AC|AD4321|AY2AZF1AD";

fn ours(frame: &[u8]) -> bool {
    proto::decode(black_box(frame), Encoding::Utf8).message.is_ok()
}

fn theirs(frame: &[u8]) -> bool {
    std::str::from_utf8(black_box(frame)).is_ok_and(|t| sip2::Message::from_sip(t).is_ok())
}

fn main() {
    let what = std::env::args().nth(1).unwrap_or_default();
    let n: u64 = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let op: Box<dyn Fn() -> bool> = match what.as_str() {
        "11" => Box::new(|| ours(F11)),
        "23" => Box::new(|| ours(F23)),
        "97" => Box::new(|| ours(b"97AZFEF5")),
        "99" => Box::new(|| ours(b"9900302.00AY1AZFCA5")),
        "35" => Box::new(|| ours(b"3520250114    093000AOMAIN|AA21234000012345|AY9AZF23A")),
        "date" => Box::new(|| matches!(SipDate::read(black_box(b"20250114    093000")), Some(SipDate::At(_)))),
        "trailer" => Box::new(|| proto::split_trailer(black_box(F11)).1.is_valid()),
        "23-body" => Box::new(|| {
            proto::Message::parse(
                black_box(b"2300120250114    093015AOMAIN|AA21234000012345|AC|AD4321|"),
                Encoding::Utf8,
            )
            .is_ok()
        }),
        "sip2-23-body" => Box::new(|| theirs(b"2300120250114    093015AOMAIN|AA21234000012345|AC|AD4321|")),
        "sip2-11" => Box::new(|| theirs(F11)),
        "sip2-23" => Box::new(|| theirs(F23)),
        other => panic!("unknown operation {other}"),
    };
    let mut ok = 0u64;
    for _ in 0..n {
        ok += u64::from(op());
    }
    println!("{ok}");
}
