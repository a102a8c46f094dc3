//! Telnet login, as older kiosks expect it on listeners that turn it on: a `login:` and a
//! `password:` prompt, then SIP on the same connection (docs/protocol.md, "Telnet login").
//!
//! Only the line handling lives here (no I/O): negotiation bytes are dropped, a line ends at
//! CR or LF, and the CR LF or CR NUL pair a telnet client sends counts once.

use bytes::{Buf, BytesMut};

/// The prompts and answers, as written on the wire.
pub const LOGIN_PROMPT: &[u8] = b"login: ";
pub const PASSWORD_PROMPT: &[u8] = b"password: ";
pub const ACCEPTED: &[u8] = b"Login OK. Initiating SIP\r\n";
pub const REFUSED: &[u8] = b"Invalid login\r\n";

/// Longest login or password line accepted; a longer one closes the connection.
pub const MAX_LINE: usize = 256;

/// Takes one line from `buf`, without its terminator and with telnet negotiation removed.
/// `None` until a whole line has arrived. A LF or NUL left over from the previous line's
/// terminator is skipped first.
pub fn take_line(buf: &mut BytesMut) -> Option<Vec<u8>> {
    while matches!(buf.first(), Some(b'\n' | 0)) {
        buf.advance(1);
    }
    let end = buf.iter().position(|&b| b == b'\r' || b == b'\n')?;
    let line = strip_negotiation(buf.get(..end).unwrap_or_default());
    buf.advance(end + 1);
    // The pair's second byte, when it has already arrived.
    if matches!(buf.first(), Some(b'\n' | 0)) {
        buf.advance(1);
    }
    Some(line)
}

/// The bytes of `raw` with telnet commands removed: `IAC x` and `IAC x opt` for the
/// negotiation verbs, `IAC SB ... IAC SE` for sub-negotiation; `IAC IAC` is a literal 0xFF.
pub fn strip_negotiation(raw: &[u8]) -> Vec<u8> {
    const IAC: u8 = 0xFF;
    const SB: u8 = 0xFA;
    const SE: u8 = 0xF0;
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b != IAC {
            out.push(b);
            i += 1;
            continue;
        }
        match raw.get(i + 1) {
            Some(&IAC) => {
                out.push(IAC);
                i += 2;
            }
            // WILL, WONT, DO, DONT carry an option byte.
            Some(0xFB..=0xFE) => i += 3,
            Some(&SB) => {
                let end = raw.get(i..).and_then(|r| r.windows(2).position(|w| w == [IAC, SE]));
                i = end.map_or(raw.len(), |e| i + e + 2);
            }
            Some(_) => i += 2,
            None => i += 1,
        }
    }
    out
}

/// A login and password that can go into a 93: printable, without the delimiter.
pub fn usable(text: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(text).ok()?;
    (!s.is_empty() && s.len() <= MAX_LINE && !s.contains('|') && !s.chars().any(char::is_control)).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_end_at_cr_or_lf_and_negotiation_is_dropped() {
        let mut buf = BytesMut::from(&b"\xFF\xFD\x18\xFF\xFB\x01kiosk1\r\0s3cret\r\n2300"[..]);
        assert_eq!(take_line(&mut buf).as_deref(), Some(&b"kiosk1"[..]));
        assert_eq!(take_line(&mut buf).as_deref(), Some(&b"s3cret"[..]));
        assert_eq!(&buf[..], b"2300");
        assert_eq!(take_line(&mut buf), None);
        let mut buf = BytesMut::from(&b"\xFF\xFA\x18\x00VT100\xFF\xF0a\xFF\xFFb\n"[..]);
        assert_eq!(take_line(&mut buf).as_deref(), Some(&b"a\xFFb"[..]));
        for junk in [&b"\xFF"[..], b"\xFF\xFA", b"\xFF\xFB", b"\xFF\xFA\x18"] {
            let _ = strip_negotiation(junk);
        }
    }

    #[test]
    fn only_plain_credentials_become_a_login() {
        assert_eq!(usable(b"kiosk1"), Some("kiosk1"));
        assert_eq!(usable(b"a|CO"), None);
        assert_eq!(usable(b""), None);
        assert_eq!(usable(b"a\x07"), None);
    }
}
