//! The frame decoder under random chunking: never panics, never holds more than the limit plus
//! one read, and yields the same events however the stream is cut.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sip2d::proto::{FrameDecoder, FrameEvent};

fuzz_target!(|input: (u8, Vec<u8>, Vec<u8>)| {
    let (max, cuts, data) = input;
    let max = usize::from(max).max(1);

    let whole: Vec<FrameEvent> = {
        let mut d = FrameDecoder::new(max);
        let mut buf = BytesMut::from(&data[..]);
        std::iter::from_fn(|| d.decode(&mut buf)).collect()
    };

    let mut d = FrameDecoder::new(max);
    let mut buf = BytesMut::new();
    let mut chunked = Vec::new();
    let mut rest = &data[..];
    let mut sizes = cuts.iter().map(|&c| usize::from(c).max(1)).chain(std::iter::repeat(7));
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(1).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        buf.extend_from_slice(chunk);
        while let Some(e) = d.decode(&mut buf) {
            if let FrameEvent::Frame(f) = &e {
                assert!(f.len() <= max);
            }
            chunked.push(e);
        }
        assert!(buf.len() <= max, "held {} bytes with a limit of {max}", buf.len());
    }
    assert_eq!(whole, chunked);
});
