//! Checks shared by the fuzz targets.

use bytes::BytesMut;
use sip2d::proto::{Decoded, Encoding, Message, redact};

/// Decodes `frame` with `decode` in both encodings: nothing panics, and whatever parses
/// re-encodes to something that parses to the same message and the same bytes.
pub fn check_parse(frame: &[u8], decode: for<'a> fn(&'a [u8], Encoding) -> Decoded<'a>) {
    let _ = redact(frame);
    for encoding in [Encoding::Utf8, Encoding::Cp850] {
        if let Ok(m) = decode(frame, encoding).message {
            let _ = m.describe();
            let mut once = BytesMut::new();
            m.encode(&mut once, encoding);
            let again = Message::parse(&once, encoding).expect("our own encoding parses");
            let mut twice = BytesMut::new();
            again.encode(&mut twice, encoding);
            assert_eq!(once, twice, "encoding is stable after one normalisation");
        }
    }
}
