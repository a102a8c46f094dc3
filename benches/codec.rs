//! Codec benchmarks: parse and encode of every message, the checksum, framing a 64 KiB
//! pipelined stream, and the registry's `sip2` crate on the same messages as a baseline.
//!
//! Run: `cargo bench --bench codec`; then `python3 benches/ratios.py` prints the ratios that
//! docs/BENCHMARKS.md records.

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use sip2d::proto::{self, Encoding, FrameDecoder, FrameEvent, Message, Seal, Terminator, Trailer, escape};

/// The first vector frame of every message code, in code order.
fn sample_frames() -> Vec<([u8; 2], &'static str, Vec<u8>)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/conformance/vectors");
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut out: Vec<([u8; 2], &'static str, Vec<u8>)> = Vec::new();
    for path in files {
        if path.ends_with("malformed.txt") || path.is_dir() {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((wire, _)) = line.split_once('\t') else { continue };
            let bytes = escape::unescape(wire).unwrap();
            let Some(frame) = bytes.split(|&b| b == b'\r').next() else { continue };
            let frame = frame.to_vec();
            let Ok(m) = proto::decode(&frame, Encoding::Utf8).message else { continue };
            if !out.iter().any(|(c, _, _)| *c == m.code()) {
                out.push((m.code(), m.name(), frame));
            }
        }
    }
    out.sort_by_key(|(c, _, _)| *c);
    out
}

fn seal_of(frame: &[u8]) -> Seal {
    match proto::split_trailer(frame).1 {
        Trailer::Present { sequence: Some(s), .. } => Seal::Sequenced(s),
        Trailer::Present { .. } => Seal::Checksum,
        _ => Seal::None,
    }
}

fn label(code: [u8; 2], name: &str) -> String {
    format!("{}_{}", String::from_utf8_lossy(&code), name.to_lowercase().replace(' ', "_"))
}

fn parse_and_encode(c: &mut Criterion) {
    let samples = sample_frames();
    assert_eq!(samples.len(), 31, "a sample of every message");

    let mut group = c.benchmark_group("parse");
    for (code, name, frame) in &samples {
        group.bench_function(label(*code, name), |b| {
            b.iter(|| {
                let d = proto::decode(black_box(frame), Encoding::Utf8);
                black_box(d.message.is_ok() && d.trailer.is_valid())
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("encode");
    for (code, name, frame) in &samples {
        let message = proto::decode(frame, Encoding::Utf8).message.unwrap();
        let seal = seal_of(frame);
        let mut out = BytesMut::with_capacity(4096);
        group.bench_function(label(*code, name), |b| {
            b.iter(|| {
                out.clear();
                proto::encode_frame(black_box(&message), &mut out, Encoding::Utf8, seal, Terminator::Cr);
                black_box(out.len())
            })
        });
    }
    group.finish();
}

/// Issue 15: what the lenient reader costs. A frame that follows the spec is read once, as
/// `decode` reads it (the baseline); a deviant one is read, rewritten and read again.
fn lenient(c: &mut Criterion) {
    let canonical_23 = b"2300120250114    093015AOMAIN|AA21234000012345|AC|AD4321|AY2AZF1AD".to_vec();
    let deviant_23 = b"23eng20250114    093015AOMAIN|AA21234000012345|AC|AD4321|".to_vec();
    let zoneless_11 = b"11YN20250110081500                  AOMAIN|AA21234000012345|AB39012000001|AC|".to_vec();
    let mut group = c.benchmark_group("lenient_23");
    group.bench_function("exact_decode_baseline", |b| {
        b.iter(|| black_box(proto::decode(black_box(&canonical_23), Encoding::Utf8).message.is_ok()))
    });
    group.bench_function("lenient_canonical", |b| {
        b.iter(|| {
            let mut scratch = BytesMut::new();
            black_box(proto::decode_lenient(black_box(&canonical_23), Encoding::Utf8, &mut scratch).message.is_ok())
        })
    });
    group.bench_function("lenient_language_letters", |b| {
        b.iter(|| {
            let mut scratch = BytesMut::new();
            black_box(proto::decode_lenient(black_box(&deviant_23), Encoding::Utf8, &mut scratch).message.is_ok())
        })
    });
    group.bench_function("lenient_11_date_without_zone", |b| {
        b.iter(|| {
            let mut scratch = BytesMut::new();
            black_box(proto::decode_lenient(black_box(&zoneless_11), Encoding::Utf8, &mut scratch).message.is_ok())
        })
    });
    group.finish();
}

/// Our codec and the `sip2` crate on the same bytes, in the same run.
fn baseline(c: &mut Criterion) {
    let samples = sample_frames();
    let frame_of = |code: &[u8; 2]| samples.iter().find(|s| &s.0 == code).unwrap().2.clone();

    // Like for like: both parse the message body, and neither verifies a checksum (the crate
    // never does).
    for code in [*b"11", *b"23"] {
        let frame = frame_of(&code);
        let body = proto::split_trailer(&frame).0.to_vec();
        let mut group = c.benchmark_group(format!("baseline_parse_body_{}", String::from_utf8_lossy(&code)));
        group.bench_function("sip2d", |b| {
            b.iter(|| black_box(Message::parse(black_box(&body), Encoding::Utf8).is_ok()))
        });
        group.bench_function("sip2_crate", |b| {
            b.iter(|| {
                let text = std::str::from_utf8(black_box(&body)).unwrap();
                black_box(sip2::Message::from_sip(text).is_ok())
            })
        });
        group.finish();
    }

    // The whole frame: ours also splits and verifies the AY/AZ trailer, theirs reads it as a field.
    for code in [*b"11", *b"23"] {
        let frame = frame_of(&code);
        let mut group = c.benchmark_group(format!("baseline_parse_{}", String::from_utf8_lossy(&code)));
        group.bench_function("sip2d", |b| {
            b.iter(|| {
                let d = proto::decode(black_box(&frame), Encoding::Utf8);
                black_box(d.message.is_ok())
            })
        });
        group.bench_function("sip2_crate", |b| {
            b.iter(|| {
                // The crate takes text, so the UTF-8 check is part of its parse.
                let text = std::str::from_utf8(black_box(&frame)).unwrap();
                black_box(sip2::Message::from_sip(text).is_ok())
            })
        });
        group.finish();
    }

    let frame = frame_of(b"12");
    let ours = proto::decode(&frame, Encoding::Utf8).message.unwrap();
    let theirs = sip2::Message::from_sip(std::str::from_utf8(&frame).unwrap()).unwrap();
    let seal = seal_of(&frame);
    let mut group = c.benchmark_group("baseline_encode_12");
    let mut out = BytesMut::with_capacity(1024);
    group.bench_function("sip2d", |b| {
        b.iter(|| {
            out.clear();
            proto::encode_frame(black_box(&ours), &mut out, Encoding::Utf8, seal, Terminator::Cr);
            black_box(out.len())
        })
    });
    group.bench_function("sip2_crate", |b| b.iter(|| black_box(black_box(&theirs).to_sip().len())));
    group.finish();
}

fn checksum_and_framing(c: &mut Criterion) {
    let samples = sample_frames();
    let big = samples.iter().find(|s| s.0 == *b"64").unwrap().2.clone();
    let mut group = c.benchmark_group("checksum");
    group.bench_function(format!("{}_bytes", big.len()), |b| b.iter(|| proto::checksum(black_box(&big))));
    group.finish();

    // 64 KiB of the vectors' frames, CR-terminated, back to back.
    let mut stream = Vec::with_capacity(70 * 1024);
    'fill: loop {
        for (_, _, f) in &samples {
            if stream.len() + f.len() + 1 > 64 * 1024 {
                break 'fill;
            }
            stream.extend_from_slice(f);
            stream.push(b'\r');
        }
    }
    let frames = {
        let mut d = FrameDecoder::default();
        let mut buf = BytesMut::from(&stream[..]);
        std::iter::from_fn(|| d.decode(&mut buf)).count()
    };
    let mut group = c.benchmark_group("framing");
    group.throughput(criterion::Throughput::Bytes(stream.len() as u64));
    group.bench_function(format!("64KiB_pipelined_{frames}_frames"), |b| {
        b.iter_batched(
            || BytesMut::from(&stream[..]),
            |mut buf| {
                let mut d = FrameDecoder::default();
                let mut n = 0usize;
                while let Some(FrameEvent::Frame(f)) = d.decode(&mut buf) {
                    n += f.len();
                }
                black_box(n)
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function(format!("64KiB_pipelined_{frames}_frames_and_parse"), |b| {
        b.iter_batched(
            || BytesMut::from(&stream[..]),
            |mut buf| {
                let mut d = FrameDecoder::default();
                let mut ok = 0usize;
                while let Some(FrameEvent::Frame(f)) = d.decode(&mut buf) {
                    ok += usize::from(matches!(proto::decode(&f, Encoding::Utf8).message, Ok(Message::Checkout(_))));
                }
                black_box(ok)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(40)
        .configure_from_args()
}

criterion_group! { name = benches; config = config(); targets = baseline, parse_and_encode, checksum_and_framing, lenient }
criterion_main!(benches);
