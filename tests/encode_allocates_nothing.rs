//! Encoding appends to the caller's buffer and allocates nothing else: a counting allocator
//! watches every vector message being encoded into a buffer that already has room.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::BytesMut;
use sip2d::proto::{self, Encoding, FrameDecoder, FrameEvent, Seal, Sequence, Terminator, escape};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn encoding_every_vector_message_allocates_nothing() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/conformance/vectors");
    let mut frames = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        // Deviations are what we read, not what we write.
        if path.ends_with("malformed.txt") || path.is_dir() {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines().filter(|l| !l.starts_with('#')) {
            let Some((wire, _)) = line.split_once('\t') else { continue };
            let mut buf = BytesMut::from(&escape::unescape(wire).unwrap()[..]);
            let mut d = FrameDecoder::default();
            while let Some(FrameEvent::Frame(f)) = d.decode(&mut buf) {
                frames.push(f);
            }
        }
    }
    let messages: Vec<_> = frames.iter().map(|f| proto::decode(f, Encoding::Utf8).message.unwrap()).collect();
    assert!(messages.len() > 100);

    let mut out = BytesMut::with_capacity(1 << 20);
    let seal = Seal::Sequenced(Sequence::new(5).unwrap());
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    for m in &messages {
        for encoding in [Encoding::Utf8, Encoding::Cp850] {
            proto::encode_frame(m, &mut out, encoding, seal, Terminator::CrLf);
        }
    }
    COUNTING.store(false, Ordering::Relaxed);
    assert!(out.len() > 10_000);
    assert_eq!(ALLOCATIONS.load(Ordering::Relaxed), 0, "encoding allocated");
}
