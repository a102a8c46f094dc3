//! Tolerance: variants that real kiosks and servers send, recognised by their shape, rewritten
//! into the spec's form and recorded as named deviations (docs/protocol.md, "Deviations").
//!
//! Nothing here guesses. Fixed fields are walked at the spec's widths, and a field takes a
//! different width only when its bytes have one recognised shape (fourteen digits that make a
//! date, three letters that make a language). The rewrite runs only for frames the exact
//! parser refused or read with an unreadable date, so a frame that follows the spec costs
//! nothing and reads the same either way.

use std::fmt;

use bytes::{BufMut, BytesMut};

use super::codec::Shape;
use super::message::MessageInfo;
use super::types::SipDate;

/// Whether variants are accepted (and recorded) or refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Strictness {
    /// Accept every recognised deviation (the default).
    #[default]
    Lenient,
    /// Refuse a frame that needed any deviation to be read.
    Strict,
}

impl Strictness {
    /// The configuration word: `lenient` or `strict`.
    pub fn as_str(self) -> &'static str {
        match self {
            Strictness::Lenient => "lenient",
            Strictness::Strict => "strict",
        }
    }

    /// Reads `lenient` or `strict`.
    pub fn parse(word: &str) -> Option<Strictness> {
        match word {
            "lenient" => Some(Strictness::Lenient),
            "strict" => Some(Strictness::Strict),
            _ => None,
        }
    }
}

macro_rules! deviations {
    ( $( $variant:ident = $name:literal => $what:literal ),* $(,)? ) => {
        /// One way a frame departs from SIP2 2.00 that the reader tolerates.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Deviation {
            $( #[doc = $what] $variant, )*
        }

        impl Deviation {
            /// Every deviation, in the order of docs/protocol.md's table.
            pub const ALL: &'static [Deviation] = &[ $( Deviation::$variant ),* ];

            /// The name used in metrics, logs and `decode`.
            pub fn name(self) -> &'static str {
                match self { $( Deviation::$variant => $name, )* }
            }

            /// What was tolerated and what was assumed.
            pub fn describe(self) -> &'static str {
                match self { $( Deviation::$variant => $what, )* }
            }
        }
    };
}

deviations! {
    LanguageLetters = "language-letters" => "language as three letters (eng): read as its SIP code, 000 if not in the table",
    LanguageBlank = "language-blank" => "language as three blanks: read as 000 (unknown)",
    DateWithoutZone = "date-without-zone" => "date as YYYYMMDDHHMMSS without the four zone characters: read as local time",
    DateZoneAfterTime = "date-zone-after-time" => "date as YYYYMMDDHHMMSSZ: read as UTC",
    DateOnly = "date-only" => "date as YYYYMMDD where a day is enough (BW, CJ, CM): read as the end of that day, 23:59:59 local",
    DateUnreadable = "date-unreadable" => "an 18-character date that is not a date (a placeholder): kept as sent, read as no date",
    ShortStatus = "sc-status-short-width" => "99 with a two-digit print width (990302.00): read as 030",
    FixedFieldsMissing = "fixed-fields-missing" => "fixed fields left out before the first field id: read as their defaults (blank date, unknown count, N)",
    AcsFlagsMissing = "acs-status-four-flags" => "98 with four flags: status update ok and off-line ok read as N",
    ShortSupportedMessages = "supported-messages-short" => "98 BX shorter than 16 flags: the missing ones read as N",
    CaretDelimiter = "caret-delimiter" => "fields delimited by ^ instead of |",
}

impl fmt::Display for Deviation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

const MAX_KEPT: usize = 8;

/// The deviations one frame needed, each with the byte offset where it was seen.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Deviations {
    seen: [Option<(Deviation, u16)>; MAX_KEPT],
    len: u8,
}

impl Deviations {
    /// True when the frame followed the spec.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many were recorded (at most eight are kept).
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Each deviation with the byte offset in the frame where it starts.
    pub fn iter(&self) -> impl Iterator<Item = (Deviation, usize)> + '_ {
        self.seen.iter().flatten().map(|&(d, at)| (d, usize::from(at)))
    }

    /// The kinds, without offsets.
    pub fn kinds(&self) -> impl Iterator<Item = Deviation> + '_ {
        self.iter().map(|(d, _)| d)
    }

    /// Whether `kind` was recorded.
    pub fn contains(&self, kind: Deviation) -> bool {
        self.kinds().any(|d| d == kind)
    }

    fn push(&mut self, kind: Deviation, at: usize) {
        if let Some(slot) = self.seen.get_mut(usize::from(self.len)) {
            *slot = Some((kind, u16::try_from(at).unwrap_or(u16::MAX)));
            self.len += 1;
        }
    }
}

impl fmt::Debug for Deviations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl fmt::Display for Deviations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (d, at)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d} at byte {at}")?;
        }
        Ok(())
    }
}

/// Whether a frame the exact parser read without complaint still needs the lenient reader:
/// fields delimited by `^` read as one long field.
pub(crate) fn caret_suspect(body: &[u8], fixed_len: usize) -> bool {
    let fields = body.get(fixed_len..).unwrap_or_default();
    fields.contains(&b'^') && !fields.contains(&b'|')
}

/// Rewrites `body` into the spec's form in `out`, returning what was tolerated (empty when no
/// variant was recognised; `out` is then meaningless) and whether a date could also be read
/// the other way (see [`Reading`]).
pub(crate) fn normalize(body: &[u8], info: &MessageInfo, out: &mut BytesMut, reading: Reading) -> (Deviations, bool) {
    let mut ambiguous = false;
    let devs = rewrite(body, info, out, reading, &mut ambiguous);
    (devs, ambiguous)
}

/// How to read fourteen digits ending in `0000` where a date goes.
///
/// A zoneless midnight (`20250110000000`) also reads as a date with the zone `0000` whose time
/// is the next six bytes. The spec's reading comes first; when the rest of the frame then does
/// not fit, the caller tries the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reading {
    /// `0000` after the day is a zone.
    Spec,
    /// `0000` after the day is the hour and minute of a date without zone.
    ZonelessMidnight,
    /// The fixed part was read exactly (dates real, every field present); only the fields'
    /// delimiter is in question, so the fixed part is kept as it is.
    FieldsOnly,
}

/// How many of `devs` say the rest did not fit where it was read (fields missing, a date that
/// is not one): of two readings, the one with fewer is kept.
pub(crate) fn misfits(devs: &Deviations) -> usize {
    devs.kinds().filter(|k| matches!(k, Deviation::FixedFieldsMissing | Deviation::DateUnreadable)).count()
}

fn rewrite(body: &[u8], info: &MessageInfo, out: &mut BytesMut, reading: Reading, ambiguous: &mut bool) -> Deviations {
    let zoneless_midnight = reading == Reading::ZonelessMidnight;
    let mut devs = Deviations::default();
    out.clear();
    let Some((code, mut rest)) = body.split_first_chunk::<2>() else { return devs };
    out.put_slice(code);
    let mut slots = info.fixed;

    if reading == Reading::FieldsOnly {
        // Never re-read what the exact parser read without complaint (a 99 that happens to
        // look like a short one, say): only the fields after it.
        let (fixed, fields) = rest.split_at(rest.len().min(info.fixed_len.saturating_sub(2)));
        out.put_slice(fixed);
        rest = fields;
        slots = &[];
    } else if code == b"99" {
        if let Some(fixed) = short_sc_status(rest) {
            out.put_slice(&fixed);
            out.put_slice(rest.get(7..).unwrap_or_default());
            devs.push(Deviation::ShortStatus, 3);
            return devs;
        }
    }
    if code == b"98" && reading != Reading::FieldsOnly {
        if let Some((flags, after)) = four_acs_flags(rest) {
            out.put_slice(flags);
            out.put_slice(b"NN");
            devs.push(Deviation::AcsFlagsMissing, 6);
            rest = after;
            slots = slots.get(6..).unwrap_or_default();
        }
    }

    for (i, slot) in slots.iter().enumerate() {
        let at = body.len() - rest.len();
        if starts_with_field(rest, info) {
            for missing in slots.get(i..).unwrap_or_default() {
                (missing.fill)(out);
            }
            devs.push(Deviation::FixedFieldsMissing, at);
            break;
        }
        let used = match slot.shape {
            Shape::Date => fixed_date(rest, out, &mut devs, at, zoneless_midnight, ambiguous),
            Shape::Language => language(rest, out, &mut devs, at),
            Shape::Plain => {
                let field = rest.get(..slot.width).unwrap_or(rest);
                out.put_slice(field);
                field.len()
            }
        };
        rest = rest.get(used..).unwrap_or_default();
    }

    let fields_at = body.len() - rest.len();
    let delimiter = if !rest.contains(&b'|') && rest.contains(&b'^') {
        devs.push(Deviation::CaretDelimiter, fields_at + rest.iter().position(|&b| b == b'^').unwrap_or(0));
        b'^'
    } else {
        b'|'
    };
    let mut at = fields_at;
    let mut segments = rest.split(|&b| b == delimiter).peekable();
    while let Some(segment) = segments.next() {
        let delimited = segments.peek().is_some();
        field(segment, info, out, &mut devs, at);
        if delimited {
            out.put_u8(b'|');
        }
        at += segment.len() + 1;
    }
    devs
}

/// Whether `rest` starts with an id of one of the message's identified fields. No fixed value
/// starts with two upper-case letters that are a field id (flags are Y, N, U, 0 or 1; the rest
/// are digits or blanks), so this marks the end of a fixed part cut short.
fn starts_with_field(rest: &[u8], info: &MessageInfo) -> bool {
    rest.first_chunk::<2>().is_some_and(|id| info.fields.iter().any(|(known, _)| known == id))
}

/// `990302.00`: status, a two-digit print width and the version, seven bytes in all.
fn short_sc_status(rest: &[u8]) -> Option<[u8; 8]> {
    let &[status, w0, w1, v0, dot, v1, v2] = rest.get(..7)?.try_into().ok()?;
    let digits = [status, w0, w1, v0, v1, v2].iter().all(u8::is_ascii_digit);
    let ends = rest.len() == 7 || !rest.get(7).is_some_and(u8::is_ascii_digit);
    (digits && dot == b'.' && ends).then_some([status, b'0', w0, w1, v0, b'.', v1, v2])
}

/// `YYYY` then the timeout's first digit: four flags where the spec has six.
fn four_acs_flags(rest: &[u8]) -> Option<(&[u8], &[u8])> {
    let (flags, after) = rest.split_at_checked(4)?;
    let is_flag = |b: &u8| matches!(b, b'Y' | b'N' | b'y' | b'n');
    (flags.iter().all(is_flag) && after.first().is_some_and(u8::is_ascii_digit)).then_some((flags, after))
}

/// Fourteen digits that make a valid date and time, as the 18-byte form with a local zone.
fn zoneless(raw: &[u8]) -> Option<[u8; 18]> {
    let raw: &[u8; 14] = raw.get(..14)?.try_into().ok()?;
    let mut full = [b' '; 18];
    full[..8].copy_from_slice(&raw[..8]);
    full[12..].copy_from_slice(&raw[8..]);
    matches!(SipDate::parse(&full), Some(SipDate::At(_))).then_some(full)
}

/// A date written without its zone at the start of `raw` (14 digits and `Z`, or 14 digits
/// alone): its 18-byte form, the deviation, and how many bytes it took.
fn zoneless_date(raw: &[u8]) -> Option<([u8; 18], Deviation, usize)> {
    let mut full = zoneless(raw)?;
    if raw.get(14) == Some(&b'Z') {
        full[11] = b'Z';
        return Some((full, Deviation::DateZoneAfterTime, 15));
    }
    Some((full, Deviation::DateWithoutZone, 14))
}

/// A fixed date at the start of `rest`; returns how many bytes it took.
fn fixed_date(
    rest: &[u8],
    out: &mut BytesMut,
    devs: &mut Deviations,
    at: usize,
    zoneless_midnight: bool,
    ambiguous: &mut bool,
) -> usize {
    if let Some(raw) = rest.get(..18) {
        let midnight = raw.get(8..12) == Some(b"0000") && zoneless(rest).is_some();
        *ambiguous |= midnight;
        let exact = !matches!(SipDate::parse(raw), Some(SipDate::Invalid(_)) | None);
        if exact && !(midnight && zoneless_midnight) {
            out.put_slice(raw);
            return 18;
        }
    }
    if let Some((full, kind, took)) = zoneless_date(rest) {
        out.put_slice(&full);
        devs.push(kind, at);
        return took;
    }
    let raw = rest.get(..18).unwrap_or(rest);
    if raw.len() == 18 {
        devs.push(Deviation::DateUnreadable, at);
    }
    out.put_slice(raw);
    raw.len()
}

/// A language at the start of `rest`; always three bytes.
fn language(rest: &[u8], out: &mut BytesMut, devs: &mut Deviations, at: usize) -> usize {
    let Some(raw) = rest.get(..3) else {
        out.put_slice(rest);
        return rest.len();
    };
    if raw == b"   " {
        out.put_slice(b"000");
        devs.push(Deviation::LanguageBlank, at);
    } else if raw.iter().all(u8::is_ascii_alphabetic) {
        out.put_slice(language_code(raw));
        devs.push(Deviation::LanguageLetters, at);
    } else {
        out.put_slice(raw);
    }
    3
}

/// The SIP language code for an ISO 639-2 code (either form), `000` when it has none.
fn language_code(letters: &[u8]) -> &'static [u8] {
    const CODES: &[(&[u8], &[u8])] = &[
        (b"eng", b"001"),
        (b"fre", b"002"),
        (b"fra", b"002"),
        (b"ger", b"003"),
        (b"deu", b"003"),
        (b"ita", b"004"),
        (b"dut", b"005"),
        (b"nld", b"005"),
        (b"swe", b"006"),
        (b"fin", b"007"),
        (b"spa", b"008"),
        (b"dan", b"009"),
        (b"por", b"010"),
        (b"nor", b"012"),
        (b"nob", b"012"),
        (b"nno", b"012"),
        (b"heb", b"013"),
        (b"jpn", b"014"),
        (b"rus", b"015"),
        (b"ara", b"016"),
        (b"pol", b"017"),
        (b"gre", b"018"),
        (b"ell", b"018"),
        (b"chi", b"019"),
        (b"zho", b"019"),
        (b"kor", b"020"),
        (b"tam", b"022"),
        (b"may", b"023"),
        (b"msa", b"023"),
        (b"ice", b"025"),
        (b"isl", b"025"),
    ];
    let lower = letters.to_ascii_lowercase();
    CODES.iter().find(|(iso, _)| *iso == lower.as_slice()).map_or(b"000", |(_, sip)| sip)
}

/// One identified field (without its delimiter), with date and BX variants rewritten.
fn field(segment: &[u8], info: &MessageInfo, out: &mut BytesMut, devs: &mut Deviations, at: usize) {
    let Some((id, value)) = segment.split_first_chunk::<2>() else {
        out.put_slice(segment);
        return;
    };
    let is_date = info.fields.iter().any(|(known, date)| known == id && *date);
    if is_date && value.len() != 18 {
        let variant = if value.len() == 14 || value.len() == 15 {
            zoneless_date(value).filter(|(_, _, took)| *took == value.len()).map(|(full, kind, _)| (full, kind))
        } else if value.len() == 8 {
            let mut day = *b"00000000    235959";
            day[..8].copy_from_slice(value);
            matches!(SipDate::parse(&day), Some(SipDate::At(_))).then_some((day, Deviation::DateOnly))
        } else {
            None
        };
        if let Some((full, kind)) = variant {
            out.put_slice(id);
            out.put_slice(&full);
            devs.push(kind, at);
            return;
        }
    }
    if info.code == *b"98"
        && id == b"BX"
        && value.len() < 16
        && value.iter().all(|b| matches!(b, b'Y' | b'N' | b'y' | b'n'))
    {
        out.put_slice(segment);
        out.put_slice(&b"NNNNNNNNNNNNNNNN"[value.len()..]);
        devs.push(Deviation::ShortSupportedMessages, at);
        return;
    }
    out.put_slice(segment);
}
