//! The typed values of SIP2 fields: dates, code tables, flag sets, counts and secrets.

use std::borrow::Cow;
use std::fmt;

use bytes::{BufMut, BytesMut};

use super::codec::{FieldCodec, FixedCodec, Shape, parse_digits, put_digits};
use super::text::Encoding;

// ---------------------------------------------------------------------------------------------
// Dates

/// A SIP date-time field, 18 characters `YYYYMMDDZZZZHHMMSS` (docs/protocol.md section 2.1).
///
/// Dates from kiosks are informational, so an impossible one still parses (as `Invalid`, with
/// its bytes kept) and never causes a refusal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SipDate {
    /// 18 blanks: no date (an unused `nb due date`).
    #[default]
    Blank,
    /// 18 zeros: "not supported" (the 98 clock-sync field).
    Zeros,
    /// A valid date and time.
    At(DateTime),
    /// 18 ASCII bytes that are not a valid date, kept as received.
    Invalid(InvalidDate),
}

/// The bytes of an unparseable date field.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct InvalidDate([u8; 18]);

impl InvalidDate {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 18] {
        &self.0
    }
}

impl fmt::Debug for InvalidDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InvalidDate({:?})", String::from_utf8_lossy(&self.0))
    }
}

/// A calendar date and wall-clock time with the SIP zone marker. Fields are checked on
/// construction: month 1-12, a day that exists in that month, hour < 24, minute and second < 60.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DateTime {
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    zone: Zone,
}

/// The four zone characters of a SIP date.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Zone {
    /// Four blanks: local time (the preferred form).
    #[default]
    Local,
    /// `0000`, which Sierra sends; read as local time and written back as it came.
    LocalZeros,
    /// Three blanks and a military zone letter; `Z` is UTC.
    Letter(ZoneLetter),
}

/// An upper-case ASCII letter naming a military time zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ZoneLetter(u8);

impl ZoneLetter {
    /// UTC.
    pub const UTC: ZoneLetter = ZoneLetter(b'Z');

    /// `Some` for `A` to `Z`.
    pub fn new(c: u8) -> Option<ZoneLetter> {
        c.is_ascii_uppercase().then_some(ZoneLetter(c))
    }

    /// The letter.
    pub fn get(self) -> char {
        char::from(self.0)
    }
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

impl DateTime {
    /// `Some` when every part is in range.
    #[inline]
    pub fn new(year: u16, month: u8, day: u8, hour: u8, minute: u8, second: u8, zone: Zone) -> Option<DateTime> {
        let ok = year <= 9999
            && (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month)
            && hour < 24
            && minute < 60
            && second < 60;
        ok.then_some(DateTime { year, month, day, hour, minute, second, zone })
    }

    /// A local-time date (four blank zone characters).
    pub fn local(year: u16, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> Option<DateTime> {
        DateTime::new(year, month, day, hour, minute, second, Zone::Local)
    }

    pub fn year(&self) -> u16 {
        self.year
    }
    pub fn month(&self) -> u8 {
        self.month
    }
    pub fn day(&self) -> u8 {
        self.day
    }
    pub fn hour(&self) -> u8 {
        self.hour
    }
    pub fn minute(&self) -> u8 {
        self.minute
    }
    pub fn second(&self) -> u8 {
        self.second
    }
    pub fn zone(&self) -> Zone {
        self.zone
    }
}

impl SipDate {
    /// The date, when there is a valid one.
    pub fn datetime(&self) -> Option<DateTime> {
        match self {
            SipDate::At(dt) => Some(*dt),
            _ => None,
        }
    }

    #[inline(always)]
    pub(crate) fn parse(raw: &[u8]) -> Option<SipDate> {
        let raw: &[u8; 18] = raw.try_into().ok()?;
        // A real date is the common case: try it first, and build the others only on failure.
        if let Some(dt) = SipDate::parse_datetime(raw) {
            return Some(SipDate::At(dt));
        }
        Some(if raw == &[b' '; 18] {
            SipDate::Blank
        } else if raw == &[b'0'; 18] {
            SipDate::Zeros
        } else {
            SipDate::Invalid(InvalidDate(*raw))
        })
    }

    #[inline(always)]
    fn parse_datetime(raw: &[u8; 18]) -> Option<DateTime> {
        let [y0, y1, y2, y3, mo0, mo1, d0, d1, z0, z1, z2, z3, h0, h1, mi0, mi1, s0, s1] = *raw;
        let zone = match [z0, z1, z2, z3] {
            [b' ', b' ', b' ', b' '] => Zone::Local,
            [b'0', b'0', b'0', b'0'] => Zone::LocalZeros,
            [b' ', b' ', b' ', c] => Zone::Letter(ZoneLetter::new(c)?),
            _ => return None,
        };
        let year = u16::from(two_digits(y0, y1)?) * 100 + u16::from(two_digits(y2, y3)?);
        DateTime::new(
            year,
            two_digits(mo0, mo1)?,
            two_digits(d0, d1)?,
            two_digits(h0, h1)?,
            two_digits(mi0, mi1)?,
            two_digits(s0, s1)?,
            zone,
        )
    }
}

#[inline]
fn two_digits(a: u8, b: u8) -> Option<u8> {
    (a.is_ascii_digit() && b.is_ascii_digit()).then(|| (a - b'0') * 10 + (b - b'0'))
}

impl FixedCodec for SipDate {
    type Value = SipDate;
    const WIDTH: usize = 18;
    const EXPECTS: &'static str = "an 18-character date YYYYMMDDZZZZHHMMSS";
    const SHAPE: Shape = Shape::Date;

    #[inline]
    fn read(raw: &[u8]) -> Option<SipDate> {
        SipDate::parse(raw)
    }

    fn write(value: &SipDate, out: &mut BytesMut) {
        match value {
            SipDate::Blank => out.put_slice(&[b' '; 18]),
            SipDate::Zeros => out.put_slice(&[b'0'; 18]),
            SipDate::Invalid(raw) => out.put_slice(&raw.0),
            SipDate::At(dt) => {
                put_digits(out, dt.year, 4);
                put_digits(out, u16::from(dt.month), 2);
                put_digits(out, u16::from(dt.day), 2);
                match dt.zone {
                    Zone::Local => out.put_slice(b"    "),
                    Zone::LocalZeros => out.put_slice(b"0000"),
                    Zone::Letter(z) => {
                        out.put_slice(b"   ");
                        out.put_u8(z.0);
                    }
                }
                put_digits(out, u16::from(dt.hour), 2);
                put_digits(out, u16::from(dt.minute), 2);
                put_digits(out, u16::from(dt.second), 2);
            }
        }
    }

    fn show(value: &SipDate) -> String {
        match value {
            SipDate::Blank => "(blank)".to_string(),
            SipDate::Zeros => "(zeros: not supported)".to_string(),
            SipDate::Invalid(raw) => {
                format!("{:?} (not a valid date)", String::from_utf8_lossy(&raw.0))
            }
            SipDate::At(dt) => {
                let zone = match dt.zone {
                    Zone::Local | Zone::LocalZeros => "local".to_string(),
                    Zone::Letter(z) if z == ZoneLetter::UTC => "UTC".to_string(),
                    Zone::Letter(z) => format!("zone {}", z.get()),
                };
                format!(
                    "{:04}-{:02}-{:02} {:02}:{:02}:{:02} {zone}",
                    dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second
                )
            }
        }
    }

    fn plausible(value: &SipDate) -> bool {
        !matches!(value, SipDate::Invalid(_))
    }

    #[cfg(any(test, feature = "arbitrary"))]
    fn arbitrary(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<SipDate> {
        Ok(match u.int_in_range(0..=5u8)? {
            0 => SipDate::Blank,
            1 => SipDate::Zeros,
            2 => {
                // A letter first, so the bytes can never read as a blank, zero or valid date.
                let mut raw: [u8; 18] = super::codec::arb::bytes_from(u, b"abcdefxyz-!? ")?;
                if let Some(first) = raw.first_mut() {
                    *first = *u.choose(b"nxq")?;
                }
                SipDate::Invalid(InvalidDate(raw))
            }
            _ => {
                let zone = match u.int_in_range(0..=2u8)? {
                    0 => Zone::Local,
                    1 => Zone::LocalZeros,
                    _ => Zone::Letter(ZoneLetter(u.int_in_range(b'A'..=b'Z')?)),
                };
                let month = u.int_in_range(1..=12)?;
                let year = u.int_in_range(1900..=2100)?;
                let day = u.int_in_range(1..=days_in_month(year, month))?;
                DateTime::new(
                    year,
                    month,
                    day,
                    u.int_in_range(0..=23)?,
                    u.int_in_range(0..=59)?,
                    u.int_in_range(0..=59)?,
                    zone,
                )
                .map_or(SipDate::Blank, SipDate::At)
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Code tables

/// A code that is not in its table, kept so that the message re-encodes as it came.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Unlisted(u16);

impl Unlisted {
    /// The numeric value received.
    pub fn value(self) -> u16 {
        self.0
    }
}

macro_rules! code_table {
    (
        $(#[$meta:meta])*
        $name:ident, width $width:literal, max $max:literal, default $default:ident $(, shape $shape:ident)? {
            $( $variant:ident = $code:literal => $label:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( #[doc = $label] $variant, )*
            /// A code outside the table.
            Unlisted(Unlisted),
        }

        impl $name {
            /// The variant for a numeric code; codes outside the table become `Unlisted`.
            pub fn from_code(code: u16) -> $name {
                match code {
                    $( $code => $name::$variant, )*
                    other => $name::Unlisted(Unlisted(other.min($max))),
                }
            }

            /// The numeric code.
            pub fn code(self) -> u16 {
                match self {
                    $( $name::$variant => $code, )*
                    $name::Unlisted(u) => u.0,
                }
            }

            /// What the code means, per the spec.
            pub fn label(self) -> &'static str {
                match self {
                    $( $name::$variant => $label, )*
                    $name::Unlisted(_) => "not in the table",
                }
            }
        }

        impl Default for $name {
            fn default() -> $name {
                $name::$default
            }
        }

        impl FixedCodec for $name {
            type Value = $name;
            const WIDTH: usize = $width;
            const EXPECTS: &'static str = concat!($width, " digits");
            $( const SHAPE: Shape = Shape::$shape; )?

            #[inline]
            fn read(raw: &[u8]) -> Option<$name> {
                (raw.len() == $width).then_some(())?;
                parse_digits(raw).map($name::from_code)
            }

            fn write(value: &$name, out: &mut BytesMut) {
                put_digits(out, value.code().min($max), $width);
            }

            fn show(value: &$name) -> String {
                format!("{:0w$} ({})", value.code(), value.label(), w = $width)
            }

            #[cfg(any(test, feature = "arbitrary"))]
            fn arbitrary(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<$name> {
                u.int_in_range(0..=$max).map($name::from_code)
            }
        }
    };
}

code_table! {
    /// Language (3 digits; 23, 24, 26, 63, 64).
    Language, width 3, max 999, default Unknown, shape Language {
        Unknown = 0 => "unknown", English = 1 => "English", French = 2 => "French",
        German = 3 => "German", Italian = 4 => "Italian", Dutch = 5 => "Dutch",
        Swedish = 6 => "Swedish", Finnish = 7 => "Finnish", Spanish = 8 => "Spanish",
        Danish = 9 => "Danish", Portuguese = 10 => "Portuguese",
        CanadianFrench = 11 => "Canadian French", Norwegian = 12 => "Norwegian",
        Hebrew = 13 => "Hebrew", Japanese = 14 => "Japanese", Russian = 15 => "Russian",
        Arabic = 16 => "Arabic", Polish = 17 => "Polish", Greek = 18 => "Greek",
        Chinese = 19 => "Chinese", Korean = 20 => "Korean",
        NorthAmericanSpanish = 21 => "North American Spanish", Tamil = 22 => "Tamil",
        Malay = 23 => "Malay", UnitedKingdom = 24 => "United Kingdom",
        Icelandic = 25 => "Icelandic", Belgian = 26 => "Belgian", Taiwanese = 27 => "Taiwanese",
    }
}

code_table! {
    /// Circulation status of an item (18).
    CirculationStatus, width 2, max 99, default Other {
        Other = 1 => "other", OnOrder = 2 => "on order", Available = 3 => "available",
        Charged = 4 => "charged",
        ChargedNotToBeRecalled = 5 => "charged; not to be recalled until earliest recall date",
        InProcess = 6 => "in process", Recalled = 7 => "recalled",
        WaitingOnHoldShelf = 8 => "waiting on hold shelf",
        WaitingToBeReshelved = 9 => "waiting to be re-shelved",
        InTransit = 10 => "in transit between library locations",
        ClaimedReturned = 11 => "claimed returned", Lost = 12 => "lost", Missing = 13 => "missing",
    }
}

code_table! {
    /// Security marker of an item (18).
    SecurityMarker, width 2, max 99, default None {
        Other = 0 => "other", None = 1 => "none", TattleTape = 2 => "3M Tattle-Tape security strip",
        WhisperTape = 3 => "3M Whisper Tape",
    }
}

code_table! {
    /// Fee type (18, 37, `BT`).
    FeeType, width 2, max 99, default OtherUnknown {
        OtherUnknown = 1 => "other/unknown", Administrative = 2 => "administrative",
        Damage = 3 => "damage", Overdue = 4 => "overdue", Processing = 5 => "processing",
        Rental = 6 => "rental", Replacement = 7 => "replacement",
        ComputerAccessCharge = 8 => "computer access charge", HoldFee = 9 => "hold fee",
    }
}

code_table! {
    /// Payment type (37).
    PaymentType, width 2, max 99, default Cash {
        Cash = 0 => "cash", Visa = 1 => "VISA", CreditCard = 2 => "credit card",
    }
}

code_table! {
    /// Media type (`CK`, 3 digits).
    MediaType, width 3, max 999, default Other {
        Other = 0 => "other", Book = 1 => "book", Magazine = 2 => "magazine",
        BoundJournal = 3 => "bound journal", AudioTape = 4 => "audio tape",
        VideoTape = 5 => "video tape", CdRom = 6 => "CD/CDROM", Diskette = 7 => "diskette",
        BookWithDiskette = 8 => "book with diskette", BookWithCd = 9 => "book with CD",
        BookWithAudioTape = 10 => "book with audio tape",
    }
}

code_table! {
    /// SC status code (99).
    ScStatusCode, width 1, max 9, default Ok {
        Ok = 0 => "SC ok", OutOfPaper = 1 => "printer out of paper",
        ShuttingDown = 2 => "SC about to shut down",
    }
}

code_table! {
    /// Hold type (`BY`).
    HoldType, width 1, max 9, default AnyCopy {
        Other = 1 => "other", AnyCopy = 2 => "any copy of a title",
        SpecificCopy = 3 => "a specific copy of a title",
        AnyCopyAtLocation = 4 => "any copy at a single branch or sublocation",
    }
}

code_table! {
    /// Checkin alert type (`CV`, a 3M extension).
    AlertType, width 2, max 99, default Unknown {
        Unknown = 0 => "unknown", HoldHere = 1 => "hold for this location",
        HoldElsewhere = 2 => "hold for another location", InterLibraryLoan = 3 => "inter-library loan",
        Transit = 4 => "send to another location", Other = 99 => "other",
    }
}

/// One fixed character with a small table of meanings, e.g. hold mode `+ - *`.
macro_rules! char_table {
    (
        $(#[$meta:meta])*
        $name:ident, default $default:ident { $( $variant:ident = $byte:literal => $label:literal ),* $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( #[doc = $label] $variant, )*
            /// Any other ASCII character, kept as received.
            Unlisted(UnlistedChar),
        }

        impl $name {
            /// The character on the wire.
            pub fn byte(self) -> u8 {
                match self {
                    $( $name::$variant => $byte, )*
                    $name::Unlisted(c) => c.0,
                }
            }

            fn from_byte(b: u8) -> $name {
                match b {
                    $( $byte => $name::$variant, )*
                    other => $name::Unlisted(UnlistedChar(other)),
                }
            }
        }

        impl Default for $name {
            fn default() -> $name {
                $name::$default
            }
        }

        impl FixedCodec for $name {
            type Value = $name;
            const WIDTH: usize = 1;
            const EXPECTS: &'static str = "one character";

            fn read(raw: &[u8]) -> Option<$name> {
                match raw {
                    [b] if b.is_ascii() => Some($name::from_byte(*b)),
                    _ => None,
                }
            }

            fn write(value: &$name, out: &mut BytesMut) {
                out.put_u8(value.byte());
            }

            fn show(value: &$name) -> String {
                let label = match value {
                    $( $name::$variant => $label, )*
                    $name::Unlisted(_) => "not in the table",
                };
                format!("{} ({label})", char::from(value.byte()))
            }

            #[cfg(any(test, feature = "arbitrary"))]
            fn arbitrary(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<$name> {
                u.choose(b"+-*0123?x").map(|b| $name::from_byte(*b))
            }
        }
    };
}

/// An ASCII character outside a [`HoldMode`] or [`Algorithm`] table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UnlistedChar(u8);

char_table! {
    /// Hold mode (15).
    HoldMode, default Add { Add = b'+' => "add", Delete = b'-' => "delete", Change = b'*' => "change" }
}

char_table! {
    /// UID / PWD algorithm (93). Only plain text is defined.
    Algorithm, default Plain { Plain = b'0' => "not encrypted" }
}

/// Y / N / U (magnetic media, desensitize). On input anything but Y or N reads as unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Tristate {
    Yes,
    No,
    #[default]
    Unknown,
}

impl FixedCodec for Tristate {
    type Value = Tristate;
    const WIDTH: usize = 1;
    const EXPECTS: &'static str = "Y, N or U";

    fn read(raw: &[u8]) -> Option<Tristate> {
        Some(match raw {
            [b'Y' | b'y'] => Tristate::Yes,
            [b'N' | b'n'] => Tristate::No,
            _ => Tristate::Unknown,
        })
    }

    fn write(value: &Tristate, out: &mut BytesMut) {
        out.put_u8(match value {
            Tristate::Yes => b'Y',
            Tristate::No => b'N',
            Tristate::Unknown => b'U',
        });
    }

    fn show(value: &Tristate) -> String {
        match value {
            Tristate::Yes => "Y (yes)",
            Tristate::No => "N (no)",
            Tristate::Unknown => "U (unknown)",
        }
        .to_string()
    }

    #[cfg(any(test, feature = "arbitrary"))]
    fn arbitrary(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<Tristate> {
        u.choose(&[Tristate::Yes, Tristate::No, Tristate::Unknown]).copied()
    }
}

// ---------------------------------------------------------------------------------------------
// Flag sets

macro_rules! flag_set {
    (
        $(#[$meta:meta])*
        $name:ident, width $width:literal, unset $unset:literal {
            $( $flag:ident = $pos:literal => $label:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
        pub struct $name(u16);

        impl $name {
            $( #[doc = $label] pub const $flag: $name = $name(1 << $pos); )*
            /// No flag set.
            pub const EMPTY: $name = $name(0);
            const LABELS: [(&'static str, $name); $width] = {
                let mut table = [("undefined", $name(0)); $width];
                $( table[$pos] = ($label, $name(1 << $pos)); )*
                let mut i = 0;
                while i < $width {
                    table[i].1 = $name(1 << i);
                    i += 1;
                }
                table
            };

            /// Reads the wire form, `Y` for a set position (e.g. `"YYYYYYYYYYYNNYYY"`).
            pub fn from_wire(s: &str) -> $name {
                <$name as FixedCodec>::read(s.as_bytes()).unwrap_or_default()
            }
            /// Whether every flag in `other` is set.
            pub fn contains(self, other: $name) -> bool {
                self.0 & other.0 == other.0
            }
            /// Sets the flags in `other`.
            pub fn insert(&mut self, other: $name) {
                self.0 |= other.0;
            }
            /// Clears the flags in `other`.
            pub fn remove(&mut self, other: $name) {
                self.0 &= !other.0;
            }
            /// Sets or clears the flags in `other`.
            pub fn set(&mut self, other: $name, on: bool) {
                if on { self.insert(other) } else { self.remove(other) }
            }
            /// True when no flag is set.
            pub fn is_empty(self) -> bool {
                self.0 == 0
            }
            /// Position by position, whether the flag is set.
            pub fn position(self, pos: usize) -> bool {
                pos < $width && self.0 & (1 << pos) != 0
            }
            /// The labels of the flags that are set.
            pub fn labels(self) -> Vec<&'static str> {
                Self::LABELS.iter().filter(|(_, f)| self.contains(*f)).map(|(l, _)| *l).collect()
            }
        }

        impl std::ops::BitOr for $name {
            type Output = $name;
            fn bitor(self, rhs: $name) -> $name {
                $name(self.0 | rhs.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{:?}", stringify!($name), self.labels())
            }
        }

        impl FixedCodec for $name {
            type Value = $name;
            const WIDTH: usize = $width;
            const EXPECTS: &'static str = concat!($width, " flag characters");

            fn read(raw: &[u8]) -> Option<$name> {
                let mut bits = 0u16;
                for (i, b) in raw.iter().enumerate().take($width) {
                    if matches!(b, b'Y' | b'y') {
                        bits |= 1 << i;
                    }
                }
                Some($name(bits))
            }

            fn write(value: &$name, out: &mut BytesMut) {
                for i in 0..$width {
                    out.put_u8(if value.0 & (1 << i) != 0 { b'Y' } else { $unset });
                }
            }

            fn show(value: &$name) -> String {
                let mut s = String::with_capacity($width + 2);
                for i in 0..$width {
                    s.push(if value.position(i) { 'Y' } else { '.' });
                }
                let set = value.labels();
                if !set.is_empty() {
                    s.push_str(" (");
                    s.push_str(&set.join("; "));
                    s.push(')');
                }
                s
            }

            #[cfg(any(test, feature = "arbitrary"))]
            fn arbitrary(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<$name> {
                let mask: u16 = if $width >= 16 { u16::MAX } else { (1u16 << ($width % 16)) - 1 };
                Ok($name(u.arbitrary::<u16>()? & mask))
            }
        }
    };
}

flag_set! {
    /// Patron status: 14 positions, `Y` where a privilege is denied or a condition holds.
    PatronStatus, width 14, unset b' ' {
        CHARGE_DENIED = 0 => "charge privileges denied",
        RENEWAL_DENIED = 1 => "renewal privileges denied",
        RECALL_DENIED = 2 => "recall privileges denied",
        HOLD_DENIED = 3 => "hold privileges denied",
        CARD_REPORTED_LOST = 4 => "card reported lost",
        TOO_MANY_CHARGED = 5 => "too many items charged",
        TOO_MANY_OVERDUE = 6 => "too many items overdue",
        TOO_MANY_RENEWALS = 7 => "too many renewals",
        TOO_MANY_CLAIMS_OF_RETURN = 8 => "too many claims of items returned",
        TOO_MANY_LOST = 9 => "too many items lost",
        EXCESSIVE_FINES = 10 => "excessive outstanding fines",
        EXCESSIVE_FEES = 11 => "excessive outstanding fees",
        RECALL_OVERDUE = 12 => "recall overdue",
        TOO_MANY_BILLED = 13 => "too many items billed",
    }
}

impl PatronStatus {
    /// The mask for an unknown patron: the first four privileges denied.
    pub const UNKNOWN_PATRON: PatronStatus = PatronStatus(0b1111);
}

flag_set! {
    /// Summary (63): the one item list the kiosk asks for.
    Summary, width 10, unset b' ' {
        HOLD_ITEMS = 0 => "hold items",
        OVERDUE_ITEMS = 1 => "overdue items",
        CHARGED_ITEMS = 2 => "charged items",
        FINE_ITEMS = 3 => "fine items",
        RECALL_ITEMS = 4 => "recall items",
        UNAVAILABLE_HOLDS = 5 => "unavailable holds",
    }
}

impl Summary {
    /// The list selected: the first `Y`, as Koha and Evergreen read it.
    pub fn selected(self) -> Option<Summary> {
        (0..6).find(|&i| self.position(i)).map(|i| Summary(1 << i))
    }
}

flag_set! {
    /// Supported messages (`BX` in 98): 16 positions, Y or N.
    SupportedMessages, width 16, unset b'N' {
        PATRON_STATUS = 0 => "23/24 patron status",
        CHECKOUT = 1 => "11/12 checkout",
        CHECKIN = 2 => "09/10 checkin",
        BLOCK_PATRON = 3 => "01 block patron",
        SC_ACS_STATUS = 4 => "99/98 status",
        RESEND = 5 => "97/96 resend",
        LOGIN = 6 => "93/94 login",
        PATRON_INFORMATION = 7 => "63/64 patron information",
        END_PATRON_SESSION = 8 => "35/36 end patron session",
        FEE_PAID = 9 => "37/38 fee paid",
        ITEM_INFORMATION = 10 => "17/18 item information",
        ITEM_STATUS_UPDATE = 11 => "19/20 item status update",
        PATRON_ENABLE = 12 => "25/26 patron enable",
        HOLD = 13 => "15/16 hold",
        RENEW = 14 => "29/30 renew",
        RENEW_ALL = 15 => "65/66 renew all",
    }
}

impl SupportedMessages {
    /// The request code each `BX` position stands for, in position order: every request of
    /// SIP2 2.00.
    pub const REQUEST_CODES: &'static [[u8; 2]; 16] = &[
        *b"23", *b"11", *b"09", *b"01", *b"99", *b"97", *b"93", *b"63", *b"35", *b"37", *b"17", *b"19", *b"25", *b"15",
        *b"29", *b"65",
    ];

    /// The position that advertises this request code, if it is a request.
    pub fn for_request(code: [u8; 2]) -> Option<SupportedMessages> {
        Self::REQUEST_CODES.iter().position(|c| *c == code).map(|i| SupportedMessages(1 << i))
    }
}

// ---------------------------------------------------------------------------------------------
// Small fixed values

/// A four-digit count (64, 66): `0000` to `9999`, or unknown (four blanks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Count(Option<u16>);

impl Count {
    /// Sent as four blanks: the server cannot supply this count.
    pub const UNKNOWN: Count = Count(None);

    /// A known count; values above 9999 are clamped, as the field cannot show them.
    pub fn new(n: usize) -> Count {
        Count(Some(n.min(9999) as u16))
    }

    /// The count, if known.
    pub fn get(self) -> Option<u16> {
        self.0
    }
}

impl FixedCodec for Count {
    type Value = Count;
    const WIDTH: usize = 4;
    const EXPECTS: &'static str = "4 digits or 4 blanks";

    fn read(raw: &[u8]) -> Option<Count> {
        if raw == b"    " { Some(Count::UNKNOWN) } else { parse_digits(raw).map(|n| Count(Some(n))) }
    }

    fn write(value: &Count, out: &mut BytesMut) {
        match value.0 {
            Some(n) => put_digits(out, n, 4),
            None => out.put_slice(b"    "),
        }
    }

    fn show(value: &Count) -> String {
        value.0.map_or_else(|| "(unknown)".to_string(), |n| n.to_string())
    }

    #[cfg(any(test, feature = "arbitrary"))]
    fn arbitrary(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<Count> {
        Ok(if u.arbitrary()? { Count::UNKNOWN } else { Count::new(u.int_in_range(0..=9999)?) })
    }
}

/// Fixed ASCII text of `N` printable bytes: protocol version (4), currency (3).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ascii<const N: usize>([u8; N]);

impl<const N: usize> Ascii<N> {
    /// `Some` when `s` is exactly `N` printable ASCII characters.
    pub fn new(s: &str) -> Option<Ascii<N>> {
        let bytes: [u8; N] = s.as_bytes().try_into().ok()?;
        bytes.iter().all(|b| (0x20..0x7F).contains(b)).then_some(Ascii(bytes))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only printable ASCII gets in, so this is always valid UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl<const N: usize> Default for Ascii<N> {
    fn default() -> Self {
        Ascii([b' '; N])
    }
}

impl<const N: usize> fmt::Debug for Ascii<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl<const N: usize> FixedCodec for Ascii<N> {
    type Value = Ascii<N>;
    const WIDTH: usize = N;
    const EXPECTS: &'static str = "printable ASCII";

    fn read(raw: &[u8]) -> Option<Ascii<N>> {
        let bytes: [u8; N] = raw.try_into().ok()?;
        bytes.iter().all(|b| (0x20..0x7F).contains(b)).then_some(Ascii(bytes))
    }

    fn write(value: &Ascii<N>, out: &mut BytesMut) {
        out.put_slice(&value.0);
    }

    fn show(value: &Ascii<N>) -> String {
        value.as_str().to_string()
    }

    #[cfg(any(test, feature = "arbitrary"))]
    fn arbitrary(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<Ascii<N>> {
        super::codec::arb::bytes_from(u, b"0123456789.USDEKR").map(Ascii)
    }
}

/// Protocol version, e.g. `2.00`.
pub type ProtocolVersion = Ascii<4>;
/// ISO 4217 currency code in the 37 fixed part.
pub type Currency = Ascii<3>;

impl ProtocolVersion {
    /// `2.00`, the version sip2d speaks.
    pub const V2_00: ProtocolVersion = Ascii(*b"2.00");
}

// ---------------------------------------------------------------------------------------------
// Secrets and unknown fields

/// A password or PIN (`CO`, `AC`, `AD`). Its `Debug` and `Display` never show the value; read it
/// with [`Secret::expose`] where it is checked.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<'a>(Cow<'a, str>);

impl<'a> Secret<'a> {
    /// Wraps a value.
    pub fn new(value: impl Into<Cow<'a, str>>) -> Secret<'a> {
        Secret(value.into())
    }

    /// The value itself. Call it only where the secret is checked or sent.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True for an empty field (a kiosk without a PIN pad sends `AD|`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A copy that owns its text.
    pub fn into_owned(self) -> Secret<'static> {
        Secret(Cow::Owned(self.0.into_owned()))
    }
}

impl fmt::Debug for Secret<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "Secret(empty)" } else { "Secret(***)" })
    }
}

impl fmt::Display for Secret<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "(empty)" } else { "***" })
    }
}

impl<'a> FieldCodec<'a> for Secret<'a> {
    type Value = Secret<'a>;
    const EXPECTS: &'static str = "text";

    fn read(raw: super::codec::RawValue<'a>, encoding: Encoding) -> Option<Secret<'a>> {
        Some(Secret(raw.decode(encoding)))
    }

    fn write_field(id: &[u8; 2], value: &Secret<'a>, out: &mut BytesMut, encoding: Encoding) {
        super::codec::write_text_field(id, &value.0, out, encoding);
    }

    fn show(value: &Secret<'a>) -> String {
        if value.is_empty() { "(empty)".to_string() } else { "(hidden)".to_string() }
    }

    #[cfg(any(test, feature = "arbitrary"))]
    fn arbitrary(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<Secret<'a>> {
        super::codec::arb::text(u).map(|s| Secret(Cow::Owned(s)))
    }
}

/// A field the message does not define (a vendor extension), or a repeat of a field that may
/// appear once, kept as received so that nothing is lost and it can be logged or re-sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawField<'a> {
    /// The two-byte id.
    pub id: [u8; 2],
    /// The value, decoded as text.
    pub value: Cow<'a, str>,
}

impl RawField<'_> {
    /// The id as text (lossy for non-ASCII ids).
    pub fn id_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.id)
    }

    /// A copy that owns its text.
    pub fn into_owned(self) -> RawField<'static> {
        RawField { id: self.id, value: Cow::Owned(self.value.into_owned()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read<T: FixedCodec>(s: &str) -> Option<T::Value> {
        T::read(s.as_bytes())
    }

    fn write<T: FixedCodec>(v: &T::Value) -> String {
        let mut out = BytesMut::new();
        T::write(v, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn dates_in_every_zone_form() {
        let d = read::<SipDate>("20250114    093015").unwrap();
        assert_eq!(d, SipDate::At(DateTime::local(2025, 1, 14, 9, 30, 15).unwrap()));
        let utc = read::<SipDate>("20250114   Z093000").unwrap();
        assert_eq!(utc.datetime().unwrap().zone(), Zone::Letter(ZoneLetter::UTC));
        for s in ["20250114   Z093000", "20250114000009300" /* 17 */, "202501140000093000"] {
            if let Some(v) = read::<SipDate>(s) {
                assert_eq!(write::<SipDate>(&v), s);
            }
        }
        assert_eq!(read::<SipDate>("                  "), Some(SipDate::Blank));
        assert_eq!(read::<SipDate>("000000000000000000"), Some(SipDate::Zeros));
    }

    #[test]
    fn impossible_dates_are_kept_not_refused() {
        for s in ["20251399    256161", "not-a-date-at-all!", "20250230    120000"] {
            let d = read::<SipDate>(s).unwrap();
            assert!(matches!(d, SipDate::Invalid(_)), "{s}");
            assert_eq!(write::<SipDate>(&d), s);
        }
        assert!(DateTime::local(2024, 2, 29, 0, 0, 0).is_some());
        assert!(DateTime::local(2025, 2, 29, 0, 0, 0).is_none());
    }

    #[test]
    fn code_tables_keep_unlisted_codes() {
        assert_eq!(read::<CirculationStatus>("03"), Some(CirculationStatus::Available));
        let odd = read::<CirculationStatus>("42").unwrap();
        assert_eq!(odd.code(), 42);
        assert_eq!(write::<CirculationStatus>(&odd), "42");
        assert_eq!(read::<Language>("0a1"), None);
        assert_eq!(read::<MediaType>("006"), Some(MediaType::CdRom));
        assert_eq!(read::<HoldMode>("?").map(|m| m.byte()), Some(b'?'));
    }

    #[test]
    fn flag_sets_read_and_write_by_position() {
        let s = read::<PatronStatus>("YY Y      Y   ").unwrap();
        assert!(s.contains(PatronStatus::CHARGE_DENIED | PatronStatus::HOLD_DENIED));
        assert!(s.contains(PatronStatus::EXCESSIVE_FINES));
        assert!(!s.contains(PatronStatus::CARD_REPORTED_LOST));
        assert_eq!(write::<PatronStatus>(&s), "YY Y      Y   ");
        let bx = read::<SupportedMessages>("YYYYYYYYYYYNNYYY").unwrap();
        assert!(!bx.contains(SupportedMessages::ITEM_STATUS_UPDATE));
        assert_eq!(write::<SupportedMessages>(&bx), "YYYYYYYYYYYNNYYY");
        assert_eq!(SupportedMessages::for_request(*b"19"), Some(SupportedMessages::ITEM_STATUS_UPDATE));
        assert_eq!(SupportedMessages::for_request(*b"65"), Some(SupportedMessages::RENEW_ALL));
        assert_eq!(SupportedMessages::for_request(*b"24"), None, "a response has no position");
        let requests = crate::proto::ALL_MESSAGES.iter().filter(|m| m.direction == crate::proto::Direction::ScToAcs);
        assert!(requests.clone().all(|m| SupportedMessages::for_request(m.code).is_some()));
        assert_eq!(requests.count(), SupportedMessages::REQUEST_CODES.len());
        let summary = read::<Summary>("YY Y      ").unwrap();
        assert_eq!(summary.selected(), Some(Summary::HOLD_ITEMS));
    }

    #[test]
    fn counts_clamp_and_blank() {
        assert_eq!(write::<Count>(&Count::new(123_456)), "9999");
        assert_eq!(write::<Count>(&Count::UNKNOWN), "    ");
        assert_eq!(read::<Count>("0002"), Some(Count::new(2)));
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("4321");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
        assert_eq!(s.expose(), "4321");
    }
}
