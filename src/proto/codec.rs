//! How each kind of field value is read from and written to the wire.
//!
//! Message structs are generated from tables (see `message.rs`); every column of such a table
//! names a codec, which is one of the traits below. Reading never panics: a value that does not
//! fit is `None`, and the caller turns that into a [`ParseError`](super::ParseError).

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};

use super::text::{self, Encoding};

/// A fixed field: no id, no delimiter, an exact width in ASCII bytes.
pub trait FixedCodec {
    /// The typed value.
    type Value;
    /// Width on the wire in bytes.
    const WIDTH: usize;
    /// What a valid value looks like, for error messages.
    const EXPECTS: &'static str;
    /// Which variants the lenient reader recognises in this field (see `lenient.rs`).
    const SHAPE: Shape = Shape::Plain;
    /// Reads exactly `WIDTH` ASCII bytes.
    fn read(raw: &[u8]) -> Option<Self::Value>;
    /// Writes exactly `WIDTH` bytes.
    fn write(value: &Self::Value, out: &mut BytesMut);
    /// A human-readable rendering for tools.
    fn show(value: &Self::Value) -> String;
    /// False for values that parsed only leniently (an impossible date, say). Used by tools that
    /// guess where a message starts in a log line.
    fn plausible(_value: &Self::Value) -> bool {
        true
    }
    /// A random valid value, for fuzzing and property tests.
    #[cfg(any(test, feature = "arbitrary"))]
    fn arbitrary(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<Self::Value>;
}

/// What the lenient reader knows about a fixed field's variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// No variants: read exactly as the spec says.
    Plain,
    /// A date: also without zone or with the zone letter after the time.
    Date,
    /// A language: also as three letters or three blanks.
    Language,
}

/// One fixed field of a message, for the lenient reader: its shape, its width, and how to
/// write its default value when a sender left it out.
#[derive(Clone, Copy)]
pub struct FixedSlot {
    /// Which variants are recognised.
    pub shape: Shape,
    /// Width on the wire.
    pub width: usize,
    /// Writes the field's default (blank date, unknown count, `N`...).
    pub fill: fn(&mut BytesMut),
}

impl PartialEq for FixedSlot {
    fn eq(&self, other: &FixedSlot) -> bool {
        self.shape == other.shape && self.width == other.width
    }
}

impl Eq for FixedSlot {}

impl std::fmt::Debug for FixedSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}({})", self.shape, self.width)
    }
}

/// The raw value of an identified field, with its text when the whole frame was already known
/// to be valid in the connection's encoding (then no field is decoded twice).
#[derive(Clone, Copy, Debug)]
pub struct RawValue<'a> {
    /// The bytes between the id and the delimiter.
    pub bytes: &'a [u8],
    /// The same bytes as text, when already validated.
    pub text: Option<&'a str>,
}

impl<'a> RawValue<'a> {
    /// The value as text: borrowed when possible.
    #[inline]
    pub fn decode(self, encoding: Encoding) -> Cow<'a, str> {
        match self.text {
            Some(t) => Cow::Borrowed(t),
            None => text::decode(self.bytes, encoding),
        }
    }
}

/// The value of an identified field (the part between the two-letter id and the `|`).
pub trait FieldCodec<'a> {
    /// The typed value.
    type Value;
    /// What a valid value looks like, for error messages.
    const EXPECTS: &'static str;
    /// True for dates, whose variants the lenient reader recognises.
    const IS_DATE: bool = false;
    /// Reads a value; `None` if it does not fit the type.
    fn read(raw: RawValue<'a>, encoding: Encoding) -> Option<Self::Value>;
    /// Writes `id`, the value and the delimiter. Text longer than a field allows is cut, or for
    /// screen and print lines continued in further fields with the same id.
    fn write_field(id: &[u8; 2], value: &Self::Value, out: &mut BytesMut, encoding: Encoding);
    /// A human-readable rendering for tools.
    fn show(value: &Self::Value) -> String;
    /// A random valid value, for fuzzing and property tests.
    #[cfg(any(test, feature = "arbitrary"))]
    fn arbitrary(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<Self::Value>;
}

/// Every fixed-width type also serves as an identified field of the same width (`BW`, `CK`, ...).
impl<'a, T: FixedCodec> FieldCodec<'a> for T {
    type Value = T::Value;
    const EXPECTS: &'static str = T::EXPECTS;
    const IS_DATE: bool = matches!(T::SHAPE, Shape::Date);

    fn read(raw: RawValue<'a>, _encoding: Encoding) -> Option<Self::Value> {
        let bytes = raw.bytes;
        if bytes.len() == T::WIDTH && bytes.is_ascii() { T::read(bytes) } else { None }
    }

    fn write_field(id: &[u8; 2], value: &Self::Value, out: &mut BytesMut, _encoding: Encoding) {
        out.put_slice(id);
        T::write(value, out);
        out.put_u8(b'|');
    }

    fn show(value: &Self::Value) -> String {
        T::show(value)
    }

    #[cfg(any(test, feature = "arbitrary"))]
    fn arbitrary(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<Self::Value> {
        T::arbitrary(u)
    }
}

/// Free text: names, titles, barcodes, messages.
pub struct Text;

impl<'a> FieldCodec<'a> for Text {
    type Value = Cow<'a, str>;
    const EXPECTS: &'static str = "text";

    fn read(raw: RawValue<'a>, encoding: Encoding) -> Option<Self::Value> {
        Some(raw.decode(encoding))
    }

    fn write_field(id: &[u8; 2], value: &Self::Value, out: &mut BytesMut, encoding: Encoding) {
        write_text_field(id, value, out, encoding);
    }

    fn show(value: &Self::Value) -> String {
        value.to_string()
    }

    #[cfg(any(test, feature = "arbitrary"))]
    fn arbitrary(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<Self::Value> {
        arb::text(u).map(Cow::Owned)
    }
}

/// Writes one text field; screen (`AF`) and print (`AG`) lines that are too long for one field
/// continue in further fields, anything else is cut (docs/protocol.md section 1.1).
pub(crate) fn write_text_field(id: &[u8; 2], value: &str, out: &mut BytesMut, encoding: Encoding) {
    let continues = id == b"AF" || id == b"AG";
    let mut rest = value;
    loop {
        out.put_slice(id);
        let used = text::write_value(rest, encoding, out);
        out.put_u8(b'|');
        rest = rest.get(used..).unwrap_or_default();
        if !continues || rest.is_empty() || used == 0 {
            break;
        }
    }
}

/// Y/N flag. On input `Y` or `y` is yes and anything else no (the FOLIO rule); output is upper case.
pub struct YesNo;

impl FixedCodec for YesNo {
    type Value = bool;
    const WIDTH: usize = 1;
    const EXPECTS: &'static str = "Y or N";

    fn read(raw: &[u8]) -> Option<bool> {
        Some(matches!(raw, [b'Y' | b'y']))
    }

    fn write(value: &bool, out: &mut BytesMut) {
        out.put_u8(if *value { b'Y' } else { b'N' });
    }

    fn show(value: &bool) -> String {
        if *value { "Y (yes)" } else { "N (no)" }.to_string()
    }

    #[cfg(any(test, feature = "arbitrary"))]
    fn arbitrary(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<bool> {
        u.arbitrary()
    }
}

/// The `ok` flag of responses: `1` done, anything else refused.
pub struct OneZero;

impl FixedCodec for OneZero {
    type Value = bool;
    const WIDTH: usize = 1;
    const EXPECTS: &'static str = "1 or 0";

    fn read(raw: &[u8]) -> Option<bool> {
        Some(raw == b"1")
    }

    fn write(value: &bool, out: &mut BytesMut) {
        out.put_u8(if *value { b'1' } else { b'0' });
    }

    fn show(value: &bool) -> String {
        if *value { "1 (ok)" } else { "0 (refused)" }.to_string()
    }

    #[cfg(any(test, feature = "arbitrary"))]
    fn arbitrary(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<bool> {
        u.arbitrary()
    }
}

/// A three-digit zero-padded number (print width, timeout period, retries allowed).
pub struct Number3;

impl FixedCodec for Number3 {
    type Value = u16;
    const WIDTH: usize = 3;
    const EXPECTS: &'static str = "3 digits";

    fn read(raw: &[u8]) -> Option<u16> {
        parse_digits(raw)
    }

    fn write(value: &u16, out: &mut BytesMut) {
        put_digits(out, (*value).min(999), 3);
    }

    fn show(value: &u16) -> String {
        format!("{value:03}")
    }

    #[cfg(any(test, feature = "arbitrary"))]
    fn arbitrary(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<u16> {
        u.int_in_range(0..=999)
    }
}

/// Reads 1 to 4 ASCII digits.
#[inline]
pub(crate) fn parse_digits(raw: &[u8]) -> Option<u16> {
    if raw.is_empty() || raw.len() > 4 {
        return None;
    }
    raw.iter().try_fold(0u16, |acc, &b| b.is_ascii_digit().then(|| acc * 10 + u16::from(b - b'0')))
}

/// Writes `value` as exactly `width` zero-padded digits (`value` must fit).
pub(crate) fn put_digits(out: &mut BytesMut, value: u16, width: usize) {
    let mut digits = [b'0'; 5];
    let mut v = value;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.put_slice(digits.get(5 - width.min(5)..).unwrap_or_default());
}

/// Generators for property tests and fuzzing: values that the encoder writes unchanged.
#[cfg(any(test, feature = "arbitrary"))]
pub(crate) mod arb {
    use arbitrary::{Result, Unstructured};

    /// Characters that exist in both UTF-8 and CP850, including some outside ASCII.
    const ALPHABET: &[char] = &[
        'a', 'b', 'k', 'z', 'A', 'M', 'Q', 'Y', 'Z', '0', '1', '7', '9', ' ', '-', '.', ',', ':', '/', '#', '\u{e9}',
        '\u{fc}', '\u{f6}', '\u{c5}', '\u{df}', '\u{f1}', '\u{c7}', '\u{a3}',
    ];

    /// Text of up to 40 characters: never a delimiter, control, or more than a field holds.
    pub fn text(u: &mut Unstructured<'_>) -> Result<String> {
        let len = u.int_in_range(0..=40)?;
        (0..len).map(|_| u.choose(ALPHABET).copied()).collect()
    }

    /// `n` ASCII bytes from `set`.
    pub fn bytes_from<const N: usize>(u: &mut Unstructured<'_>, set: &[u8]) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        for b in out.iter_mut() {
            *b = *u.choose(set)?;
        }
        Ok(out)
    }
}
