//! The SIP2 2.00 protocol layer: bytes in, typed messages out, and back. No I/O, no clock, no
//! storage; it depends on `bytes` and `nom` only, and builds alone with
//! `cargo build --lib --no-default-features`.
//!
//! A server drives it like this:
//! 1. feed socket bytes to a [`FrameDecoder`] and take [`FrameEvent`]s out;
//! 2. [`decode`] each frame: its [`Trailer`] verdict and the parsed [`Message`];
//! 3. build the reply struct and [`encode_frame`] it into the connection's write buffer.

mod checksum;
mod codec;
mod error;
pub mod escape;
mod frame;
mod grammar;
mod message;
mod text;
mod types;

use bytes::{BufMut, BytesMut};

pub use checksum::{Sequence, Trailer, TrailerError, checksum, seal, split_trailer};
pub use codec::{FieldCodec, FixedCodec, Number3, OneZero, Text, YesNo};
pub use error::{ParseError, ParseErrorKind};
pub use frame::{DEFAULT_MAX_FRAME, FrameDecoder, FrameEvent};
pub use message::*;
pub use text::{Encoding, MAX_VALUE_LEN, representable};
pub use types::*;

/// A frame read as a message: the trailer verdict and the parse result.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded<'a> {
    /// What the error-detection trailer says.
    pub trailer: Trailer,
    /// The message, or why it could not be read.
    pub message: Result<Message<'a>, ParseError>,
}

/// Reads one frame (terminator already removed) as a message of either direction.
pub fn decode(frame: &[u8], encoding: Encoding) -> Decoded<'_> {
    let (body, trailer) = split_trailer(frame);
    Decoded { trailer, message: Message::parse(body, encoding) }
}

/// Reads one frame as a request from a kiosk: a response code is reported as
/// [`ParseErrorKind::WrongDirection`], which a server ignores like an unknown code.
pub fn decode_request(frame: &[u8], encoding: Encoding) -> Decoded<'_> {
    only(decode(frame, encoding), Direction::ScToAcs)
}

/// Reads one frame as a response from a server.
pub fn decode_response(frame: &[u8], encoding: Encoding) -> Decoded<'_> {
    only(decode(frame, encoding), Direction::AcsToSc)
}

fn only(mut decoded: Decoded<'_>, direction: Direction) -> Decoded<'_> {
    if let Ok(m) = &decoded.message {
        if m.direction() != direction {
            decoded.message = Err(ParseError { kind: ParseErrorKind::WrongDirection(m.code()), offset: 0 });
        }
    }
    decoded
}

/// Which error-detection trailer to append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seal {
    /// No trailer.
    None,
    /// `AZ` only.
    Checksum,
    /// `AY<d>AZ`; 96 and 97 never carry `AY`, so for them this writes `AZ` only.
    Sequenced(Sequence),
}

/// The end of a frame on output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Terminator {
    /// CR, the spec's terminator.
    #[default]
    Cr,
    /// CR LF, for kiosks tuned to Koha's default.
    CrLf,
}

/// Appends a complete frame: message, trailer and terminator. Allocates nothing beyond what
/// `out` needs to grow.
pub fn encode_frame(message: &Message<'_>, out: &mut BytesMut, encoding: Encoding, seal: Seal, terminator: Terminator) {
    let start = out.len();
    message.encode(out, encoding);
    let no_sequence = matches!(message, Message::RequestAcsResend(_) | Message::RequestScResend(_));
    match seal {
        Seal::None => {}
        Seal::Checksum => checksum::seal(out, start, None),
        Seal::Sequenced(_) if no_sequence => checksum::seal(out, start, None),
        Seal::Sequenced(seq) => checksum::seal(out, start, Some(seq)),
    }
    match terminator {
        Terminator::Cr => out.put_u8(b'\r'),
        Terminator::CrLf => out.put_slice(b"\r\n"),
    }
}

#[cfg(test)]
mod tests;
