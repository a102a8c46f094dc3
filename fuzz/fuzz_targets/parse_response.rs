//! Any frame a server might send to a kiosk (what `sip2d client` and `conform` read).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| sip2d_fuzz::check_parse(frame, sip2d::proto::decode_response));
