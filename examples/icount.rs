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

/// The smallest correct parser for a 23 body we could write: plain `&str` fields, no types, no
/// field-order record, the same NUL and UTF-8 checks. It measures the floor any parser of this
/// message pays, for docs/BENCHMARKS.md.
#[derive(Default)]
struct Floor23<'a> {
    language: u16,
    date: [u8; 6],
    fields: [&'a str; 4],
    extra: Vec<(&'a [u8], &'a str)>,
}

fn two(a: u8, b: u8) -> Option<u8> {
    (a.is_ascii_digit() && b.is_ascii_digit()).then(|| (a - b'0') * 10 + (b - b'0'))
}

fn floor23(body: &[u8]) -> Option<Floor23<'_>> {
    if body.len() < 23 || body.contains(&0) {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    let (head, mut rest) = body.split_at_checked(23)?;
    let &[_, _, l0, l1, l2, y0, y1, y2, y3, m0, m1, d0, d1, _, _, _, _, h0, h1, i0, i1, s0, s1] = head else {
        return None;
    };
    let language = u16::from(two(l0, l1)?) * 10 + u16::from(l2.checked_sub(b'0')?);
    let date = [two(y0, y1)?, two(y2, y3)?, two(m0, m1)?, two(d0, d1)?, two(h0, h1)?, two(i0, i1)? + two(s0, s1)?];
    let mut p = Floor23 { language, date, ..Default::default() };
    let mut at = 23;
    while !rest.is_empty() {
        let end = rest.iter().position(|&b| b == b'|').unwrap_or(rest.len());
        if let Some([a, b, ..]) = rest.get(..end) {
            let v = text.get(at + 2..at + end)?;
            match [*a, *b] {
                [b'A', b'O'] => p.fields[0] = v,
                [b'A', b'A'] => p.fields[1] = v,
                [b'A', b'C'] => p.fields[2] = v,
                [b'A', b'D'] => p.fields[3] = v,
                _ => p.extra.push((rest.get(..2).unwrap_or_default(), v)),
            }
        }
        at += end + 1;
        rest = rest.get(end + 1..).unwrap_or_default();
    }
    Some(p)
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
        "floor-23-body" => Box::new(|| {
            floor23(black_box(b"2300120250114    093015AOMAIN|AA21234000012345|AC|AD4321|"))
                .is_some_and(|p| p.language == 1 && p.date[0] == 20 && p.fields[1].len() == 14 && p.extra.is_empty())
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
