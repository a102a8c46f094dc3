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

/// The lenient reader's promises on any frame: no panic; what it reads encodes to a frame the
/// exact reader reads as the same message; a frame the exact reader reads plausibly is read the
/// same way with nothing recorded (fields delimited by `^` aside, which read as one field).
pub fn check_lenient(frame: &[u8]) {
    use sip2d::proto::{Deviation, decode, decode_lenient};
    for encoding in [Encoding::Utf8, Encoding::Cp850] {
        let mut scratch = BytesMut::new();
        let lenient = decode_lenient(frame, encoding, &mut scratch);
        let exact = decode(frame, encoding);
        if let Ok(m) = &lenient.message {
            let _ = m.describe();
            let mut canonical = BytesMut::new();
            m.encode(&mut canonical, encoding);
            let again = Message::parse(&canonical, encoding).expect("what the lenient reader accepts is a message");
            let mut twice = BytesMut::new();
            again.encode(&mut twice, encoding);
            assert_eq!(canonical, twice, "and it is stable");
        }
        let plain = exact.message.as_ref().is_ok_and(|m| m.is_plausible() && m.missing_required().is_empty());
        if plain && !lenient.deviations.contains(Deviation::CaretDelimiter) {
            assert_eq!(lenient.message, exact.message);
            assert!(lenient.deviations.is_empty());
        }
    }
}
