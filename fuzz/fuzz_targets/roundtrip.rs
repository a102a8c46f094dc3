//! Every message, built at random: encode then decode gives the same message, in both
//! encodings and with a sequenced checksum.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sip2d::proto::{self, Encoding, Message, Seal, Sequence, Terminator};

fuzz_target!(|message: Message<'_>| {
    for encoding in [Encoding::Utf8, Encoding::Cp850] {
        let mut out = BytesMut::new();
        let seal = Seal::Sequenced(Sequence::new(3).expect("3 is a digit"));
        proto::encode_frame(&message, &mut out, encoding, seal, Terminator::Cr);
        let frame = out.strip_suffix(b"\r").expect("terminated");
        let decoded = proto::decode(frame, encoding);
        assert!(decoded.trailer.is_valid());
        assert_eq!(decoded.message.as_ref(), Ok(&message));
    }
});
