//! Any frame a kiosk might send to the server.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| sip2d_fuzz::check_parse(frame, sip2d::proto::decode_request));
