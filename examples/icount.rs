//! Instruction-count probe: `valgrind --tool=callgrind` on one operation repeated N times.
use sip2d::proto::{self, Encoding};
fn main() {
    let what = std::env::args().nth(1).unwrap_or_default();
    let n: u64 = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let f11: &[u8] = b"11YN20250114    093040                  AOMAIN|AA21234000012345|AB31234000098765|AC|AY3AZED57";
    let f23: &[u8] = b"2300120250114    093015AOMAIN|AA21234000012345|AC|AD4321|AY2AZF1AD";
    let mut ok = 0u64;
    for _ in 0..n {
        ok += match what.as_str() {
            "11" => proto::decode(std::hint::black_box(f11), Encoding::Utf8).message.is_ok() as u64,
            "23" => proto::decode(std::hint::black_box(f23), Encoding::Utf8).message.is_ok() as u64,
            "sip2-11" => {
                sip2::Message::from_sip(std::str::from_utf8(std::hint::black_box(f11)).unwrap()).is_ok() as u64
            }
            "sip2-23" => {
                sip2::Message::from_sip(std::str::from_utf8(std::hint::black_box(f23)).unwrap()).is_ok() as u64
            }
            _ => 0,
        };
    }
    println!("{ok}");
}
