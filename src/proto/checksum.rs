//! Error detection: the `AY` sequence number and `AZ` checksum trailer (docs/protocol.md section 1.5).

use std::fmt;

use bytes::{BufMut, BytesMut};

/// The SIP2 checksum of `data`: the 16-bit two's complement of the byte sum.
///
/// `data` runs from the first byte of the command code through the `AZ` of the trailer.
pub fn checksum(data: &[u8]) -> u16 {
    // u32 cannot overflow below 16 MiB of 0xFF bytes, far beyond any frame limit; wrapping keeps
    // it panic-free regardless.
    let sum = data.iter().fold(0u32, |acc, &b| acc.wrapping_add(u32::from(b)));
    (sum as u16).wrapping_neg()
}

/// A sequence number, `0` to `9`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sequence(u8);

impl Sequence {
    /// `0`, where a session's numbering starts.
    pub const ZERO: Sequence = Sequence(0);

    /// `Some` for `0..=9`.
    pub const fn new(n: u8) -> Option<Sequence> {
        if n <= 9 { Some(Sequence(n)) } else { None }
    }

    /// The digit's value.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// The next number, wrapping 9 to 0, as a kiosk advances it.
    pub const fn next(self) -> Sequence {
        Sequence((self.0 + 1) % 10)
    }

    fn from_ascii(b: u8) -> Option<Sequence> {
        if b.is_ascii_digit() { Some(Sequence(b - b'0')) } else { None }
    }
}

impl fmt::Display for Sequence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a frame's error-detection trailer says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trailer {
    /// No `AZ` trailer: the sender does not use error detection.
    Absent,
    /// `[AY<d>]AZ<hhhh>` with four hex digits; `valid` tells whether the arithmetic checks out.
    Present {
        sequence: Option<Sequence>,
        /// The four digits received.
        checksum: u16,
        /// What they should have been.
        expected: u16,
        valid: bool,
    },
    /// Something that starts like a trailer but is not one; treated as a checksum failure.
    Malformed(TrailerError),
}

impl Trailer {
    /// True for a present trailer whose checksum is right.
    pub fn is_valid(&self) -> bool {
        matches!(self, Trailer::Present { valid: true, .. })
    }

    /// The sequence number of a valid trailer.
    pub fn sequence(&self) -> Option<Sequence> {
        match *self {
            Trailer::Present { sequence, valid: true, .. } => sequence,
            _ => None,
        }
    }

    /// `"ok"`, `"bad"` or `"absent"`: the verdict tools print.
    pub fn verdict(&self) -> &'static str {
        match self {
            Trailer::Absent => "absent",
            Trailer::Present { valid: true, .. } => "ok",
            Trailer::Present { valid: false, .. } | Trailer::Malformed(_) => "bad",
        }
    }
}

/// Why a trailer could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrailerError {
    /// `AZ` is not followed by exactly four hex digits and nothing else.
    ChecksumDigits { offset: usize },
    /// `AY` is followed by something other than one digit.
    SequenceDigit { offset: usize },
}

impl fmt::Display for TrailerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrailerError::ChecksumDigits { offset } => {
                write!(f, "AZ at byte {offset} is not followed by exactly four hex digits")
            }
            TrailerError::SequenceDigit { offset } => {
                write!(f, "AY at byte {offset} is not followed by one digit")
            }
        }
    }
}

/// Splits a frame (without terminator) into its message body and its trailer.
///
/// The trailer is looked for after the last `|`, since every identified field ends in one and
/// fixed fields never hold `AZ`; a value that merely contains `AZ` is therefore never mistaken
/// for a trailer.
pub fn split_trailer(frame: &[u8]) -> (&[u8], Trailer) {
    // Fast path for the usual ending `[AY<d>]AZhhhh`: that `AZ` is the last one in the frame (hex
    // digits never contain `Z`) and `AY<d>` holds no `|`, so this is what the general search
    // below would find.
    if let Some((head, [b'A', b'Z', digits @ ..])) = frame.split_last_chunk::<6>() {
        if let Some(value) = parse_hex4(digits) {
            let expected = checksum(frame.get(..head.len() + 2).unwrap_or_default());
            let (body, sequence) = match head.split_last_chunk::<3>() {
                Some((before, [b'A', b'Y', d])) => match Sequence::from_ascii(*d) {
                    Some(seq) => (before, Some(seq)),
                    None => return split_trailer_general(frame),
                },
                _ => (head, None),
            };
            return (body, Trailer::Present { sequence, checksum: value, expected, valid: expected == value });
        }
    }
    split_trailer_general(frame)
}

fn split_trailer_general(frame: &[u8]) -> (&[u8], Trailer) {
    let tail_start = frame.iter().rposition(|&b| b == b'|').map_or(0, |i| i + 1);
    let tail = frame.get(tail_start..).unwrap_or_default();
    let Some(az_in_tail) = tail.windows(2).rposition(|w| w == b"AZ") else {
        return (frame, Trailer::Absent);
    };
    let az = tail_start + az_in_tail;
    let (before_digits, digits) = frame.split_at((az + 2).min(frame.len()));

    // A sequence number, if any, sits immediately before AZ as `AY<d>`, also after the last
    // `|` (a value may end in "AY").
    let ay_at = az.checked_sub(3).filter(|&ay| ay >= tail_start);
    let (body, sequence) = match ay_at.and_then(|ay| frame.get(ay..az).map(|s| (ay, s))) {
        Some((ay, [b'A', b'Y', d])) => match Sequence::from_ascii(*d) {
            Some(seq) => (frame.get(..ay).unwrap_or_default(), Some(seq)),
            None => {
                return (
                    frame.get(..ay).unwrap_or_default(),
                    Trailer::Malformed(TrailerError::SequenceDigit { offset: ay }),
                );
            }
        },
        _ => (frame.get(..az).unwrap_or_default(), None),
    };

    match parse_hex4(digits) {
        Some(value) => {
            let expected = checksum(before_digits);
            (body, Trailer::Present { sequence, checksum: value, expected, valid: expected == value })
        }
        None => (body, Trailer::Malformed(TrailerError::ChecksumDigits { offset: az })),
    }
}

/// Hex digit values, either case; 0xFF for anything else. A table: this runs on every frame.
const HEX_VALUE: [u8; 256] = {
    let mut t = [0xFFu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

#[inline]
fn parse_hex4(digits: &[u8]) -> Option<u16> {
    let &[a, b, c, d] = digits else { return None };
    let v = |x: u8| HEX_VALUE.get(usize::from(x)).copied().unwrap_or(0xFF);
    let (a, b, c, d) = (v(a), v(b), v(c), v(d));
    if (a | b | c | d) & 0xF0 != 0 {
        return None;
    }
    Some(u16::from(a) << 12 | u16::from(b) << 8 | u16::from(c) << 4 | u16::from(d))
}

/// Appends `[AY<d>]AZ<hhhh>` to `out`, with the checksum computed over `out[start..]`, where
/// `start` is the offset at which the message's command code was written.
pub fn seal(out: &mut BytesMut, start: usize, sequence: Option<Sequence>) {
    if let Some(seq) = sequence {
        out.put_slice(b"AY");
        out.put_u8(b'0' + seq.get());
    }
    out.put_slice(b"AZ");
    let sum = checksum(out.get(start..).unwrap_or_default());
    put_hex4(out, sum);
}

/// Writes four upper-case, zero-padded hex digits.
pub fn put_hex4(out: &mut BytesMut, value: u16) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for shift in [12u16, 8, 4, 0] {
        out.put_u8(HEX[usize::from((value >> shift) & 0xF)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_examples_from_the_reference() {
        assert_eq!(checksum(b"9300CNuser_id|COpassw0rd|AY1AZ"), 0xF594);
        assert_eq!(
            checksum(b"11YN20250114    093040                  AOMAIN|AA21234000012345|AB31234000098765|AC|AY3AZ"),
            0xED57
        );
        assert_eq!(checksum(b"97AZ"), 0xFEF5);
        assert_eq!(checksum(b"96AZ"), 0xFEF6);
    }

    #[test]
    fn trailer_is_split_and_verified() {
        let (body, t) = split_trailer(b"9300CNuser_id|COpassw0rd|AY1AZF594");
        assert_eq!(body, b"9300CNuser_id|COpassw0rd|");
        assert_eq!(t, Trailer::Present { sequence: Sequence::new(1), checksum: 0xF594, expected: 0xF594, valid: true });
        let (_, t) = split_trailer(b"9300CNuser_id|COpassw0rd|AY1AZF595");
        assert_eq!(t.verdict(), "bad");
    }

    #[test]
    fn lower_case_digits_are_accepted() {
        let (_, t) = split_trailer(b"9900302.00AY7AZfc9f");
        assert!(t.is_valid());
    }

    #[test]
    fn az_only_and_absent() {
        let (body, t) = split_trailer(b"97AZFEF5");
        assert_eq!(body, b"97");
        assert!(t.is_valid());
        assert_eq!(t.sequence(), None);
        let (body, t) = split_trailer(b"941");
        assert_eq!((body, t), (&b"941"[..], Trailer::Absent));
        // `AZ` inside a value followed by `|` is data, not a trailer.
        let (_, t) = split_trailer(b"24AEAZTEC1234|");
        assert_eq!(t, Trailer::Absent);
    }

    #[test]
    fn malformed_trailers() {
        let (_, t) = split_trailer(b"23AOMAIN|AY2AZ594");
        assert!(matches!(t, Trailer::Malformed(TrailerError::ChecksumDigits { .. })));
        let (_, t) = split_trailer(b"23AOMAIN|AY2AZ12G4");
        assert!(matches!(t, Trailer::Malformed(TrailerError::ChecksumDigits { .. })));
        let (_, t) = split_trailer(b"23AOMAIN|AY1AZF1AEXYZ");
        assert!(matches!(t, Trailer::Malformed(TrailerError::ChecksumDigits { .. })));
        let (body, t) = split_trailer(b"23AOMAIN|AYXAZF187");
        assert_eq!(body, b"23AOMAIN|");
        assert_eq!(t, Trailer::Malformed(TrailerError::SequenceDigit { offset: 9 }));
        // A value ending in "AY" is data, not a sequence number.
        let (body, t) = split_trailer(b"93COxAY|AZFCD9");
        assert_eq!(body, b"93COxAY|");
        assert_eq!(t, Trailer::Present { sequence: None, checksum: 0xFCD9, expected: 0xFCD9, valid: true });
        // Degenerate inputs never panic.
        for f in [&b""[..], b"AZ", b"AYAZ", b"|AZ", b"YAZ0000", b"AY1AZ"] {
            let _ = split_trailer(f);
        }
    }

    #[test]
    fn seal_pads_and_upper_cases() {
        let mut out = BytesMut::from(&b"97"[..]);
        seal(&mut out, 0, None);
        assert_eq!(&out[..], b"97AZFEF5");
        let mut out = BytesMut::from(&b"xx941"[..]);
        seal(&mut out, 2, Sequence::new(0));
        assert_eq!(&out[..], b"xx941AY0AZFDFD");
    }
}
