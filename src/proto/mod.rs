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
mod lenient;
mod message;
mod text;
mod types;

use bytes::{BufMut, BytesMut};
use lenient::Reading;

pub use checksum::{Sequence, Trailer, TrailerError, checksum, seal, split_trailer};
pub use codec::{FieldCodec, FixedCodec, Number3, OneZero, Text, YesNo};
pub use error::{ParseError, ParseErrorKind};
pub use frame::{DEFAULT_MAX_FRAME, FrameDecoder, FrameEvent};
pub use lenient::{Deviation, Deviations, Strictness};
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
    /// What the lenient reader tolerated to read it (always empty from [`decode`]).
    pub deviations: Deviations,
}

impl<'a> Decoded<'a> {
    /// The same, with a message sent the other way reported as
    /// [`ParseErrorKind::WrongDirection`].
    pub fn only(self, direction: Direction) -> Decoded<'a> {
        only(self, direction)
    }
}

/// Reads one frame (terminator already removed) as a message of either direction, exactly as
/// the spec says.
pub fn decode(frame: &[u8], encoding: Encoding) -> Decoded<'_> {
    let (body, trailer) = split_trailer(frame);
    Decoded { trailer, message: Message::parse(body, encoding), deviations: Deviations::default() }
}

/// Reads one frame as [`decode`] does, and when that fails, or reads a date that is not one, or
/// misses a required field, or finds fields delimited by `^`, reads it again tolerating the variants real clients send
/// (`lenient.rs`). What was tolerated is in [`Decoded::deviations`]; a frame that follows the
/// spec is read once, exactly, and `scratch` is not touched. The rewritten frame is kept in
/// `scratch`, which the message may borrow from.
pub fn decode_lenient<'a>(frame: &'a [u8], encoding: Encoding, scratch: &'a mut BytesMut) -> Decoded<'a> {
    let (body, trailer) = split_trailer(frame);
    let exact = Message::parse(body, encoding);
    let info = body.first_chunk::<2>().and_then(|code| lookup(*code));
    // Read exactly, plausibly and whole: only a `^` delimiter can still be in question.
    let fixed_part_read = exact.as_ref().is_ok_and(|m| m.is_plausible() && m.has_required());
    let retry = match (&exact, info) {
        (_, None) => false,
        (Ok(_), Some(info)) => !fixed_part_read || lenient::caret_suspect(body, info.fixed_len),
        (Err(e), Some(_)) => e.kind != ParseErrorKind::Nul,
    };
    let exact = Decoded { trailer, message: exact, deviations: Deviations::default() };
    let Some(info) = info.filter(|_| retry) else { return exact };
    let first = if fixed_part_read { Reading::FieldsOnly } else { Reading::Spec };
    let (mut deviations, ambiguous) = lenient::normalize(body, info, scratch, first);
    // The spec's reading and the zoneless one: each parsed once, the better kept.
    if ambiguous {
        let first_fits = Message::parse(scratch, encoding).is_ok();
        if lenient::misfits(&deviations) > 0 || !first_fits {
            let mut other = BytesMut::new();
            let (second, _) = lenient::normalize(body, info, &mut other, Reading::ZonelessMidnight);
            let fits = Message::parse(&other, encoding).is_ok();
            if fits && (!first_fits || lenient::misfits(&second) < lenient::misfits(&deviations)) {
                *scratch = other;
                deviations = second;
            }
        }
    }
    if deviations.is_empty() {
        return exact;
    }
    let rewritten: &'a BytesMut = scratch;
    match Message::parse(rewritten, encoding) {
        Ok(message) => Decoded { trailer, message: Ok(message), deviations },
        Err(_) => exact,
    }
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
