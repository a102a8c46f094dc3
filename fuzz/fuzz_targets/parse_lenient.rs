//! The lenient reader: never panics; what it accepts writes back as a message the exact reader
//! accepts; and a frame the exact reader reads plainly it reads the same, recording nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| sip2d_fuzz::check_lenient(frame));
