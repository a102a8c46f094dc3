//! Text on the wire: the per-connection character encoding and the rules for writing values.

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};

/// Longest value, in encoded bytes, that we ever put in one field (SIP2 caps variable fields at 255).
pub const MAX_VALUE_LEN: usize = 255;

/// Character encoding of free text on one connection. Codes, fixed fields and field ids are ASCII
/// either way; the checksum always covers the encoded bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// UTF-8. On input a value that is not valid UTF-8 is read as CP850 instead, so that no byte
    /// sequence is ever rejected (docs/protocol.md section 1.3).
    #[default]
    Utf8,
    /// IBM code page 850, the spec's default character set.
    Cp850,
}

impl Encoding {
    /// The name used in configuration and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Cp850 => "cp850",
        }
    }

    /// Parses `utf-8`/`utf8` or `cp850`/`ibm850`, ignoring case.
    pub fn from_name(name: &str) -> Option<Encoding> {
        match name.to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Some(Encoding::Utf8),
            "cp850" | "ibm850" | "850" => Some(Encoding::Cp850),
            _ => None,
        }
    }
}

/// Code page 850, bytes 0x80..=0xFF (the lower half is ASCII).
const CP850_HIGH: [char; 128] = [
    '\u{00C7}', '\u{00FC}', '\u{00E9}', '\u{00E2}', '\u{00E4}', '\u{00E0}', '\u{00E5}', '\u{00E7}', '\u{00EA}',
    '\u{00EB}', '\u{00E8}', '\u{00EF}', '\u{00EE}', '\u{00EC}', '\u{00C4}', '\u{00C5}', '\u{00C9}', '\u{00E6}',
    '\u{00C6}', '\u{00F4}', '\u{00F6}', '\u{00F2}', '\u{00FB}', '\u{00F9}', '\u{00FF}', '\u{00D6}', '\u{00DC}',
    '\u{00F8}', '\u{00A3}', '\u{00D8}', '\u{00D7}', '\u{0192}', '\u{00E1}', '\u{00ED}', '\u{00F3}', '\u{00FA}',
    '\u{00F1}', '\u{00D1}', '\u{00AA}', '\u{00BA}', '\u{00BF}', '\u{00AE}', '\u{00AC}', '\u{00BD}', '\u{00BC}',
    '\u{00A1}', '\u{00AB}', '\u{00BB}', '\u{2591}', '\u{2592}', '\u{2593}', '\u{2502}', '\u{2524}', '\u{00C1}',
    '\u{00C2}', '\u{00C0}', '\u{00A9}', '\u{2563}', '\u{2551}', '\u{2557}', '\u{255D}', '\u{00A2}', '\u{00A5}',
    '\u{2510}', '\u{2514}', '\u{2534}', '\u{252C}', '\u{251C}', '\u{2500}', '\u{253C}', '\u{00E3}', '\u{00C3}',
    '\u{255A}', '\u{2554}', '\u{2569}', '\u{2566}', '\u{2560}', '\u{2550}', '\u{256C}', '\u{00A4}', '\u{00F0}',
    '\u{00D0}', '\u{00CA}', '\u{00CB}', '\u{00C8}', '\u{0131}', '\u{00CD}', '\u{00CE}', '\u{00CF}', '\u{2518}',
    '\u{250C}', '\u{2588}', '\u{2584}', '\u{00A6}', '\u{00CC}', '\u{2580}', '\u{00D3}', '\u{00DF}', '\u{00D4}',
    '\u{00D2}', '\u{00F5}', '\u{00D5}', '\u{00B5}', '\u{00FE}', '\u{00DE}', '\u{00DA}', '\u{00DB}', '\u{00D9}',
    '\u{00FD}', '\u{00DD}', '\u{00AF}', '\u{00B4}', '\u{00AD}', '\u{00B1}', '\u{2017}', '\u{00BE}', '\u{00B6}',
    '\u{00A7}', '\u{00F7}', '\u{00B8}', '\u{00B0}', '\u{00A8}', '\u{00B7}', '\u{00B9}', '\u{00B3}', '\u{00B2}',
    '\u{25A0}', '\u{00A0}',
];

/// `bytes` as text when every byte is ASCII. `is_ascii` checks a word at a time, which on frames
/// of a few dozen bytes is much cheaper than full UTF-8 validation; this is the hot path.
pub(crate) fn ascii_str(bytes: &[u8]) -> Option<&str> {
    if bytes.is_ascii() {
        // SAFETY: a sequence of ASCII bytes is valid UTF-8.
        #[allow(unsafe_code)]
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        None
    }
}

/// Reads a field value. Borrows when the bytes are already valid UTF-8 in the chosen reading.
pub fn decode(raw: &[u8], encoding: Encoding) -> Cow<'_, str> {
    match encoding {
        Encoding::Utf8 => match std::str::from_utf8(raw) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => Cow::Owned(cp850_to_string(raw)),
        },
        Encoding::Cp850 => {
            if raw.is_ascii() {
                // ASCII is valid UTF-8, so this cannot fail; the fallback keeps it panic-free.
                std::str::from_utf8(raw).map_or_else(|_| Cow::Owned(cp850_to_string(raw)), Cow::Borrowed)
            } else {
                Cow::Owned(cp850_to_string(raw))
            }
        }
    }
}

fn cp850_to_string(raw: &[u8]) -> String {
    raw.iter().map(|&b| cp850_char(b)).collect()
}

fn cp850_char(b: u8) -> char {
    if b < 0x80 { char::from(b) } else { CP850_HIGH.get(usize::from(b - 0x80)).copied().unwrap_or('?') }
}

fn cp850_byte(c: char) -> u8 {
    if c.is_ascii() {
        // Lossless: `c` is below 0x80.
        c as u8
    } else {
        CP850_HIGH.iter().position(|&x| x == c).map_or(b'?', |i| 0x80 | (i as u8))
    }
}

/// Whether every character of `s` has a CP850 byte.
pub fn representable(s: &str, encoding: Encoding) -> bool {
    match encoding {
        Encoding::Utf8 => true,
        Encoding::Cp850 => s.chars().all(|c| c.is_ascii() || CP850_HIGH.contains(&c)),
    }
}

/// A byte that may not appear inside a value: the delimiter and C0 controls (CR among them).
fn is_forbidden(b: u8) -> bool {
    b < 0x20 || b == b'|'
}

/// Writes `s` as one value: `|`, CR, LF and other C0 controls become a space and the result is
/// cut at [`MAX_VALUE_LEN`] bytes on a character boundary. Returns how many bytes of `s` were
/// consumed, so a caller can continue a long screen message in a further field.
pub fn write_value(s: &str, encoding: Encoding, out: &mut BytesMut) -> usize {
    match encoding {
        Encoding::Utf8 => {
            let mut end = s.len().min(MAX_VALUE_LEN);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            let bytes = s.as_bytes().get(..end).unwrap_or_default();
            if bytes.iter().any(|&b| is_forbidden(b)) {
                // Forbidden bytes are ASCII, so replacing them byte by byte keeps UTF-8 intact.
                out.reserve(bytes.len());
                for &b in bytes {
                    out.put_u8(if is_forbidden(b) { b' ' } else { b });
                }
            } else {
                out.put_slice(bytes);
            }
            end
        }
        Encoding::Cp850 => {
            // One byte per character in CP850, so the cut falls after MAX_VALUE_LEN characters.
            let mut consumed = 0;
            for c in s.chars().take(MAX_VALUE_LEN) {
                let b = cp850_byte(c);
                out.put_u8(if is_forbidden(b) { b' ' } else { b });
                consumed += c.len_utf8();
            }
            consumed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cp850_reads_the_vector_name() {
        assert_eq!(decode(b"M\x81ller, J\x94rg", Encoding::Cp850), "M\u{fc}ller, J\u{f6}rg");
    }

    #[test]
    fn invalid_utf8_falls_back_to_cp850_and_never_fails() {
        let v = decode(b"2123\xFF\xFE40", Encoding::Utf8);
        assert_eq!(v, "2123\u{a0}\u{25a0}40");
    }

    #[test]
    fn every_cp850_byte_round_trips() {
        for b in 0u8..=255 {
            let s = cp850_to_string(&[b]);
            let c = s.chars().next().unwrap();
            assert_eq!(cp850_byte(c), b, "byte {b:#04x}");
        }
    }

    #[test]
    fn values_are_sanitised_and_cut_on_a_char_boundary() {
        let mut out = BytesMut::new();
        write_value("a|b\rc\nd", Encoding::Utf8, &mut out);
        assert_eq!(&out[..], b"a b c d");

        let long = "\u{e9}".repeat(300); // 600 bytes in UTF-8
        let mut out = BytesMut::new();
        let used = write_value(&long, Encoding::Utf8, &mut out);
        assert_eq!(out.len(), 254);
        assert_eq!(used, 254);
        assert!(std::str::from_utf8(&out).is_ok());

        let mut out = BytesMut::new();
        let used = write_value(&long, Encoding::Cp850, &mut out);
        assert_eq!(out.len(), 255);
        assert_eq!(used, 510);
        assert!(out.iter().all(|&b| b == 0x82));
    }
}
