//! Framing: cuts a growing byte buffer into SIP2 frames (docs/protocol.md sections 1.2 and 1.4).

use bytes::{Buf, Bytes, BytesMut};

/// Default cap on one frame, terminator excluded.
pub const DEFAULT_MAX_FRAME: usize = 8 * 1024;

/// What the decoder found in the buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameEvent {
    /// One message, without its terminator and without leading blanks or control bytes.
    Frame(Bytes),
    /// A frame longer than the limit. Its bytes up to the next terminator are dropped as they
    /// arrive; the server closes the connection, a log reader carries on.
    Oversize,
}

/// Splits SIP2 frames out of a byte stream, one call per frame.
///
/// * A frame ends at CR, or at a bare LF unless that is turned off.
/// * Bytes `<= 0x20` before a frame are dropped, so the LF of a CRLF pair, NULs and blank
///   lines never become frames of their own.
/// * At most `max_len` bytes of one frame are ever held: past that the decoder reports
///   [`FrameEvent::Oversize`] once and discards through the next terminator.
///
/// Like a tokio-util decoder it is driven by the caller: feed bytes into the buffer, call
/// [`FrameDecoder::decode`] until it returns `None` ("need more bytes").
#[derive(Clone, Debug)]
pub struct FrameDecoder {
    max_len: usize,
    accept_lf: bool,
    /// Bytes of the buffer already searched for a terminator, so that a frame arriving in many
    /// small reads is scanned once.
    scanned: usize,
    discarding: bool,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(DEFAULT_MAX_FRAME)
    }
}

impl FrameDecoder {
    /// A decoder with the given frame cap that accepts CR and bare LF as terminators.
    pub fn new(max_len: usize) -> FrameDecoder {
        FrameDecoder { max_len: max_len.max(1), accept_lf: true, scanned: 0, discarding: false }
    }

    /// Whether a bare LF ends a frame (default true). CR always does.
    pub fn accept_lf(mut self, accept: bool) -> FrameDecoder {
        self.accept_lf = accept;
        self
    }

    /// The frame cap in bytes.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    fn is_terminator(&self, b: u8) -> bool {
        b == b'\r' || (self.accept_lf && b == b'\n')
    }

    /// Takes the next event out of `buf`, or `None` when more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Option<FrameEvent> {
        if self.discarding {
            match buf.iter().position(|&b| self.is_terminator(b)) {
                Some(end) => {
                    buf.advance(end + 1);
                    self.discarding = false;
                }
                None => {
                    buf.clear();
                    return None;
                }
            }
        }

        if self.scanned == 0 {
            // Leading debris: blanks, controls, and the LF of a CRLF pair.
            let start = buf.iter().position(|&b| b > 0x20).unwrap_or(buf.len());
            buf.advance(start);
            if buf.is_empty() {
                return None;
            }
        }

        let window_end = buf.len().min(self.max_len + 1);
        let from = self.scanned.min(window_end);
        let found =
            buf.get(from..window_end).and_then(|w| w.iter().position(|&b| self.is_terminator(b))).map(|i| from + i);

        match found {
            // The window stops at `max_len`, so a terminator found in it ends a legal frame.
            Some(end) => {
                self.scanned = 0;
                let frame = buf.split_to(end).freeze();
                buf.advance(1);
                Some(FrameEvent::Frame(frame))
            }
            None if buf.len() > self.max_len => {
                self.scanned = 0;
                self.discarding = true;
                // Drop what is held now; the rest of the frame is dropped as it arrives.
                let keep_from = self.max_len + 1;
                buf.advance(keep_from.min(buf.len()));
                Some(FrameEvent::Oversize)
            }
            None => {
                self.scanned = buf.len();
                None
            }
        }
    }

    /// At end of input: the unterminated remainder, if any, without leading debris. A server
    /// discards it; a log reader may still want to look at a last line with no newline.
    pub fn decode_eof(&mut self, buf: &mut BytesMut) -> Option<Bytes> {
        let rest = if self.discarding { None } else { Some(buf.split().freeze()) };
        buf.clear();
        self.scanned = 0;
        self.discarding = false;
        rest.and_then(|b| {
            let start = b.iter().position(|&x| x > 0x20)?;
            Some(b.slice(start..))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(decoder: &mut FrameDecoder, input: &[u8]) -> Vec<FrameEvent> {
        let mut buf = BytesMut::from(input);
        std::iter::from_fn(|| decoder.decode(&mut buf)).collect()
    }

    fn frame(b: &'static [u8]) -> FrameEvent {
        FrameEvent::Frame(Bytes::from_static(b))
    }

    #[test]
    fn cr_lf_and_crlf_end_frames_and_the_lf_of_crlf_is_not_a_frame() {
        let got = frames(&mut FrameDecoder::default(), b"99a\r99b\n99c\r\n99d\r\r\n\n");
        assert_eq!(got, vec![frame(b"99a"), frame(b"99b"), frame(b"99c"), frame(b"99d")]);
    }

    #[test]
    fn bare_lf_can_be_turned_off() {
        let got = frames(&mut FrameDecoder::default().accept_lf(false), b"99a\n99b\r");
        assert_eq!(got, vec![frame(b"99a\n99b")]);
    }

    #[test]
    fn leading_debris_is_dropped() {
        let got = frames(&mut FrameDecoder::default(), b"\n\x00  9900302.00AY1AZFCA5\r     \r");
        assert_eq!(got, vec![frame(b"9900302.00AY1AZFCA5")]);
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let mut d = FrameDecoder::default();
        let mut buf = BytesMut::from(&b"9900"[..]);
        assert_eq!(d.decode(&mut buf), None);
        buf.extend_from_slice(b"302.00\r23");
        assert_eq!(d.decode(&mut buf), Some(frame(b"9900302.00")));
        assert_eq!(d.decode(&mut buf), None);
        assert_eq!(d.decode_eof(&mut buf), Some(Bytes::from_static(b"23")));
    }

    #[test]
    fn oversize_is_reported_once_and_decoding_recovers() {
        let mut d = FrameDecoder::new(8);
        let mut input = b"99ok\r".to_vec();
        input.extend(std::iter::repeat_n(b'A', 100));
        input.extend_from_slice(b"\r99next\r");
        assert_eq!(frames(&mut d, &input), vec![frame(b"99ok"), FrameEvent::Oversize, frame(b"99next")]);
    }

    #[test]
    fn a_frame_of_exactly_the_limit_passes() {
        let mut d = FrameDecoder::new(4);
        assert_eq!(frames(&mut d, b"1234\r12345\r99\r"), vec![frame(b"1234"), FrameEvent::Oversize, frame(b"99")]);
    }

    #[test]
    fn memory_stays_bounded_while_discarding() {
        let mut d = FrameDecoder::new(16);
        let mut buf = BytesMut::new();
        for _ in 0..1000 {
            buf.extend_from_slice(&[b'A'; 64]);
            while d.decode(&mut buf).is_some() {}
            assert!(buf.len() <= 16, "held {} bytes", buf.len());
        }
    }
}
