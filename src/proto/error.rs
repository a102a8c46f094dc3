//! Parse errors: what is wrong with a frame and at which byte.

use std::fmt;

/// A frame that could not be read as a message. Always a value, never a panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// What is wrong.
    pub kind: ParseErrorKind,
    /// Byte offset in the frame where the problem starts.
    pub offset: usize,
}

/// The kinds of [`ParseError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// Fewer than two bytes: no command code.
    NoCommand,
    /// A command code that is not a SIP2 2.00 message.
    UnknownCommand([u8; 2]),
    /// A known message sent the wrong way (a response sent to the server, say).
    WrongDirection([u8; 2]),
    /// The fixed part is shorter than the message needs.
    TooShort { needed: usize, got: usize },
    /// A fixed field holds a byte outside ASCII (a multi-byte character shifts every field).
    NonAsciiFixed { field: &'static str },
    /// A fixed field's value does not fit its type.
    InvalidFixed { field: &'static str, expects: &'static str },
    /// An identified field's value does not fit its type.
    InvalidField { id: [u8; 2], expects: &'static str },
    /// A NUL byte, which the spec forbids anywhere.
    Nul,
}

impl ParseError {
    pub(crate) fn new(offset: usize, kind: ParseErrorKind) -> ParseError {
        ParseError { kind, offset }
    }

    /// True when the frame does not name a message we answer (unknown code, or a response sent
    /// to the server): the server ignores such frames rather than answering 96.
    pub fn is_unknown_command(&self) -> bool {
        matches!(
            self.kind,
            ParseErrorKind::NoCommand | ParseErrorKind::UnknownCommand(_) | ParseErrorKind::WrongDirection(_)
        )
    }
}

fn show_code(code: &[u8; 2]) -> String {
    code.iter().map(|&b| if b.is_ascii_graphic() { char::from(b).to_string() } else { format!("\\x{b:02X}") }).collect()
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.offset;
        match self.kind {
            ParseErrorKind::NoCommand => write!(f, "too short for a command code ({at} bytes)"),
            ParseErrorKind::UnknownCommand(c) => {
                write!(f, "unknown command code '{}'", show_code(&c))
            }
            ParseErrorKind::WrongDirection(c) => {
                write!(f, "message '{}' is not expected in this direction", show_code(&c))
            }
            ParseErrorKind::TooShort { needed, got } => {
                write!(
                    f,
                    "fixed part truncated at byte {at}: the message needs {needed} bytes before its fields, got {got}"
                )
            }
            ParseErrorKind::NonAsciiFixed { field } => {
                write!(f, "fixed field '{field}' at byte {at} holds a non-ASCII byte")
            }
            ParseErrorKind::InvalidFixed { field, expects } => {
                write!(f, "fixed field '{field}' at byte {at} is not valid (expected {expects})")
            }
            ParseErrorKind::InvalidField { id, expects } => {
                write!(f, "field {} at byte {at} is not valid (expected {expects})", show_code(&id))
            }
            ParseErrorKind::Nul => write!(f, "NUL byte at byte {at}"),
        }
    }
}

impl std::error::Error for ParseError {}
