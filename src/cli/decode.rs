//! `sip2d decode`: raw SIP2 from kiosk logs, shown field by field with a checksum verdict.

use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use bytes::BytesMut;
use serde_json::{Value, json};

use crate::proto::{self, DEFAULT_MAX_FRAME, Decoded, Deviation, Encoding, FrameDecoder, FrameEvent, Trailer, escape};

/// Decode raw SIP2 messages, one per line, from files or standard input.
///
/// Every message is printed with its code and name, each field with its label, and the checksum
/// verdict (ok, bad, or absent). Lines may end in CR, LF or CRLF. A log prefix in front of a
/// message (a timestamp, a terminal name, an arrow) is found and skipped, but only when the line
/// does not read as a message on its own. PINs and passwords
/// are never printed. The command exits 0 whenever it could read its input, whatever it found
/// in it.
///
/// Messages are read as sip2d reads them from kiosks: the variants real clients and servers send
/// (a language as letters, a date without zone, a ^ delimiter...) are read as meant and listed
/// as "tolerated" (docs/protocol.md, "Deviations").
///
/// With --json it prints one JSON object per message instead of text, with the keys line, code
/// (or null), name, direction, checksum ("ok", "bad", "absent"), sequence, error (or null),
/// fields, missing_required, deviations (kind, at, what), prefix and raw.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  sip2d decode kiosk.log
  printf '9300CNkiosk1|COs3cret|CPmain-lobby|AY0AZF215\\r' | sip2d decode
  sip2d decode --json kiosk.log | jq 'select(.checksum == \"bad\")'
  sip2d decode --escaped conformance/vectors/11_checkout.txt")]
pub struct DecodeArgs {
    /// Files to read; standard input when none is given or for "-".
    files: Vec<PathBuf>,

    /// Character encoding of text fields: utf-8 (invalid bytes are read as cp850) or cp850.
    #[arg(long, default_value = "utf-8", value_parser = parse_encoding)]
    encoding: Encoding,

    /// Read the escaped notation of the test vectors: \r, \n, \t, \\ and \xHH escapes; text
    /// after a TAB is a note; lines starting with # are comments.
    #[arg(long)]
    escaped: bool,

    /// Longest message accepted, in bytes. A longer one is reported and skipped.
    #[arg(long, default_value_t = DEFAULT_MAX_FRAME, value_parser = parse_max_length)]
    max_length: usize,
}

fn parse_max_length(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (16..=1_048_576).contains(&n) => Ok(n),
        _ => Err(format!("'{s}' is not a length from 16 to 1048576 bytes")),
    }
}

fn parse_encoding(s: &str) -> Result<Encoding, String> {
    Encoding::from_name(s).ok_or_else(|| format!("unknown encoding '{s}': use utf-8 or cp850"))
}

/// Runs `sip2d decode`.
pub fn run(args: &DecodeArgs, json: bool) -> Result<ExitCode> {
    let stdout = io::stdout();
    let mut out = Output { w: BufWriter::new(stdout.lock()), json, count: 0 };
    let inputs: Vec<Option<&PathBuf>> = if args.files.is_empty() {
        vec![None]
    } else {
        args.files.iter().map(|f| (f.as_os_str() != "-").then_some(f)).collect()
    };

    let result = (|| -> Result<()> {
        for input in inputs {
            let (name, bytes) = match input {
                Some(path) => (
                    path.display().to_string(),
                    fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
                ),
                None => {
                    let mut buf = Vec::new();
                    io::stdin().lock().read_to_end(&mut buf).context("cannot read standard input")?;
                    ("-".to_string(), buf)
                }
            };
            if args.escaped {
                decode_escaped(&bytes, &name, args, &mut out)?;
            } else {
                decode_raw(&bytes, args, &mut out)?;
            }
        }
        if !out.json {
            writeln!(out.w, "{} message(s) decoded", out.count)?;
        }
        out.w.flush()?;
        Ok(())
    })();

    match result {
        Err(e) if e.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe) => {
            Ok(ExitCode::SUCCESS)
        }
        other => other.map(|()| ExitCode::SUCCESS),
    }
}

/// A raw log: frames end at CR, LF or CRLF.
fn decode_raw(input: &[u8], args: &DecodeArgs, out: &mut Output<'_>) -> Result<()> {
    let mut lines = LineCounter::new(input);
    let mut decoder = FrameDecoder::new(args.max_length);
    let mut buf = BytesMut::from(input);
    while let Some(event) = decoder.decode(&mut buf) {
        // The terminator (one byte) has been consumed; the frame ends just before it.
        let end = input.len() - buf.len() - 1;
        match event {
            FrameEvent::Frame(frame) => {
                let line = lines.line_at(end - frame.len());
                out.message(line, &frame, args.encoding)?;
            }
            FrameEvent::Oversize => {
                let line = lines.line_at(end);
                out.oversize(line, args.max_length)?;
            }
        }
    }
    if let Some(rest) = decoder.decode_eof(&mut buf) {
        let line = lines.line_at(input.len() - rest.len());
        out.message(line, &rest, args.encoding)?;
    }
    Ok(())
}

/// The escaped notation of the vectors: one message (or several, or a fragment) per line.
fn decode_escaped(input: &[u8], name: &str, args: &DecodeArgs, out: &mut Output<'_>) -> Result<()> {
    let text = String::from_utf8_lossy(input);
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let wire = line.split('\t').next().unwrap_or_default();
        let Some(bytes) = escape::unescape(wire) else {
            out.error(line_no, &format!("{name}:{line_no}: not valid escaped notation"))?;
            continue;
        };
        let mut decoder = FrameDecoder::new(args.max_length);
        let mut buf = BytesMut::from(&bytes[..]);
        while let Some(event) = decoder.decode(&mut buf) {
            match event {
                FrameEvent::Frame(frame) => out.message(line_no, &frame, args.encoding)?,
                FrameEvent::Oversize => out.oversize(line_no, args.max_length)?,
            }
        }
        if let Some(rest) = decoder.decode_eof(&mut buf) {
            out.message(line_no, &rest, args.encoding)?;
        }
    }
    Ok(())
}

/// Maps byte offsets to 1-based line numbers; a line ends at LF, CR or CRLF. Offsets are asked
/// in increasing order, so the input is scanned once.
struct LineCounter<'a> {
    input: &'a [u8],
    scanned: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(input: &'a [u8]) -> Self {
        LineCounter { input, scanned: 0, line: 1 }
    }

    fn line_at(&mut self, offset: usize) -> usize {
        let upto = offset.min(self.input.len());
        while self.scanned < upto {
            let b = self.input.get(self.scanned).copied();
            let next = self.input.get(self.scanned + 1).copied();
            if b == Some(b'\n') || (b == Some(b'\r') && next != Some(b'\n')) {
                self.line += 1;
            }
            self.scanned += 1;
        }
        self.line
    }
}

/// Where the message starts in a line that may carry a log prefix. A line that reads as a
/// message on its own (leniently, with real dates and every required field) is that message. Otherwise a prefix is skipped only when it
/// has the shape of a log's (see [`log_shaped`]) and ends at a boundary; of those candidates
/// the one that reads best wins, earliest first: a valid checksum counts most, then a clean
/// parse, plausible fixed fields and no missing required field.
fn locate<'a>(frame: &'a [u8], encoding: Encoding, scratch: &'a mut BytesMut) -> (usize, Decoded<'a>) {
    let score = |d: &Decoded<'_>| match &d.message {
        Ok(m) => {
            1 + 4 * u8::from(d.trailer.is_valid())
                + u8::from(m.is_plausible())
                + u8::from(m.missing_required().is_empty())
        }
        Err(_) => 0,
    };
    const BEST: u8 = 7;
    let mut whole_scratch = BytesMut::new();
    let whole = proto::decode_lenient(frame, encoding, &mut whole_scratch);
    let stands = whole.message.as_ref().is_ok_and(|m| m.is_plausible() && m.missing_required().is_empty())
        && !whole.deviations.kinds().any(|d| matches!(d, Deviation::DateUnreadable | Deviation::FixedFieldsMissing));
    let mut best = (score(&whole), 0usize);
    if !stands {
        for i in 1..frame.len().saturating_sub(1) {
            let boundary =
                frame.get(i - 1).is_some_and(|b| matches!(b, b' ' | b'\t' | b'>' | b':' | b']' | b'"' | b'\'' | b'='));
            let code = frame.get(i..i + 2).and_then(|c| <[u8; 2]>::try_from(c).ok());
            if !boundary
                || code.is_none_or(|c| proto::lookup(c).is_none())
                || !log_shaped(frame.get(..i).unwrap_or_default())
            {
                continue;
            }
            let s = score(&proto::decode_lenient(frame.get(i..).unwrap_or_default(), encoding, &mut BytesMut::new()));
            if s > best.0 {
                best = (s, i);
                if s == BEST {
                    break;
                }
            }
        }
    }
    let start = best.1;
    (start, proto::decode_lenient(frame.get(start..).unwrap_or_default(), encoding, scratch))
}

/// Whether `prefix` looks like what logs put before a message: a time (`09:30:40`), a date
/// (`2025-01-14`, `14/01/2025`), an arrow (`->`, `<-`, `>>`, `<<`, `=>`), a bracketed tag
/// (`[kiosk1]`), or a direction word (send, recv, sent, received, request, response, in, out,
/// tx, rx).
fn log_shaped(prefix: &[u8]) -> bool {
    let text = String::from_utf8_lossy(prefix).to_ascii_lowercase();
    let time_or_date = prefix
        .windows(3)
        .any(|w| matches!(w, [a, b':' | b'-' | b'/' | b'.', c] if a.is_ascii_digit() && c.is_ascii_digit()));
    let arrow = ["->", "<-", ">>", "<<", "=>"].iter().any(|a| text.contains(a));
    let tag = text.contains('[') && text.contains(']');
    let word = text.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| {
        matches!(w, "send" | "sent" | "recv" | "received" | "request" | "response" | "in" | "out" | "tx" | "rx")
    });
    time_or_date || arrow || tag || word
}

fn code_text(frame: &[u8]) -> Option<String> {
    match frame {
        [a, b, ..] if a.is_ascii_graphic() && b.is_ascii_graphic() => {
            Some(format!("{}{}", char::from(*a), char::from(*b)))
        }
        _ => None,
    }
}

fn id_text(id: [u8; 2]) -> String {
    String::from_utf8_lossy(&id).into_owned()
}

fn checksum_detail(trailer: &Trailer) -> String {
    match trailer {
        Trailer::Absent => "absent".to_string(),
        Trailer::Present { sequence, checksum, expected, valid } => {
            let seq = sequence.map(|s| format!("AY{s}, ")).unwrap_or_default();
            if *valid {
                format!("ok ({seq}AZ{checksum:04X})")
            } else {
                format!("BAD ({seq}AZ{checksum:04X}, should be {expected:04X})")
            }
        }
        Trailer::Malformed(e) => format!("BAD ({e})"),
    }
}

struct Output<'a> {
    w: BufWriter<io::StdoutLock<'a>>,
    json: bool,
    count: usize,
}

impl Output<'_> {
    fn message(&mut self, line: usize, frame: &[u8], encoding: Encoding) -> Result<()> {
        self.count += 1;
        let mut scratch = BytesMut::new();
        let (start, decoded) = locate(frame, encoding, &mut scratch);
        let body = frame.get(start..).unwrap_or_default();
        let prefix = (start > 0).then(|| String::from_utf8_lossy(frame.get(..start).unwrap_or_default()).into_owned());
        let (name, direction) = match &decoded.message {
            Ok(m) => (Some(m.name()), Some(m.direction().to_string())),
            Err(_) => (None, None),
        };
        let code = match &decoded.message {
            Ok(m) => code_text(&m.code()),
            Err(e) if matches!(e.kind, proto::ParseErrorKind::NoCommand) => None,
            Err(_) => code_text(body),
        };
        let fields = decoded.message.as_ref().map(|m| m.describe()).unwrap_or_default();
        let missing: Vec<String> = decoded
            .message
            .as_ref()
            .map(|m| m.missing_required().into_iter().map(id_text).collect())
            .unwrap_or_default();
        let deviations: Vec<_> = decoded.deviations.iter().collect();
        let trailer_error = match decoded.trailer {
            Trailer::Malformed(e) => Some(e.to_string()),
            _ => None,
        };

        if self.json {
            let obj = json!({
                "line": line,
                "code": code,
                "name": name,
                "direction": direction,
                "checksum": decoded.trailer.verdict(),
                "checksum_error": trailer_error,
                "sequence": decoded.trailer.sequence().map(|s| s.get()),
                "error": decoded.message.as_ref().err().map(|e| e.to_string()),
                "fields": fields.iter().map(|f| json!({
                    "id": f.id.map(id_text),
                    "label": f.label,
                    "value": f.value,
                })).collect::<Vec<Value>>(),
                "missing_required": missing,
                "deviations": deviations.iter().map(|(d, at)| json!({
                    "kind": d.name(), "at": at, "what": d.describe(),
                })).collect::<Vec<Value>>(),
                "prefix": prefix,
                "raw": escape::escape(&proto::redact(body)),
            });
            writeln!(self.w, "{obj}")?;
            return Ok(());
        }

        let w = &mut self.w;
        match &decoded.message {
            Ok(m) => {
                let c = code_text(&m.code()).unwrap_or_default();
                writeln!(
                    w,
                    "line {line}: {c} {} ({}), checksum {}",
                    m.name(),
                    m.direction(),
                    checksum_detail(&decoded.trailer)
                )?;
            }
            Err(e) => {
                let what = if e.is_unknown_command() { "not a SIP2 message" } else { "cannot be read" };
                writeln!(w, "line {line}: {what}: {e}; checksum {}", checksum_detail(&decoded.trailer))?;
            }
        }
        if let Some(p) = &prefix {
            writeln!(w, "    (log prefix skipped: {:?})", p)?;
        }
        let width = fields.iter().map(|f| f.label.len()).max().unwrap_or(0);
        for f in &fields {
            let id = f.id.map(id_text).unwrap_or_else(|| "  ".to_string());
            writeln!(w, "    {id} {:<width$}  {}", f.label, f.value)?;
        }
        if !missing.is_empty() {
            writeln!(w, "    missing required field(s): {}", missing.join(", "))?;
        }
        for (d, at) in &deviations {
            writeln!(w, "    tolerated at byte {at}: {d} ({})", d.describe())?;
        }
        if decoded.message.is_err() || !decoded.trailer.is_valid() && decoded.trailer != Trailer::Absent {
            writeln!(w, "    raw: {}", escape::escape(&proto::redact(body)))?;
        }
        writeln!(w)?;
        Ok(())
    }

    fn oversize(&mut self, line: usize, max: usize) -> Result<()> {
        self.count += 1;
        let msg = format!("message longer than {max} bytes; skipped to the next line");
        self.error(line, &msg)
    }

    fn error(&mut self, line: usize, msg: &str) -> Result<()> {
        if self.json {
            let obj = json!({
                "line": line, "code": null, "name": null, "direction": null, "checksum": "absent",
                "checksum_error": null, "sequence": null, "error": msg, "fields": [],
                "missing_required": [], "deviations": [], "prefix": null, "raw": null,
            });
            writeln!(self.w, "{obj}")?;
        } else {
            writeln!(self.w, "line {line}: {msg}\n")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_prefixes_are_skipped() {
        let line = b"2025-01-14 09:30:40 kiosk1 -> 11YN20250114    093040                  AOMAIN|AA21234000012345|AB31234000098765|AC|AY3AZED57";
        let mut scratch = BytesMut::new();
        let (start, d) = locate(line, Encoding::Utf8, &mut scratch);
        assert_eq!(line.get(start..start + 4), Some(&b"11YN"[..]));
        assert!(d.trailer.is_valid());

        // With a bad checksum, or none, the plausible parse wins over the timestamp read as a '20'.
        let line = b"2025-01-14 09:30:15 kiosk1 -> 2300120250114    093015AOMAIN|AA21234000012345|AC|AD4321|AY2AZF1A0";
        let mut scratch = BytesMut::new();
        let (start, d) = locate(line, Encoding::Utf8, &mut scratch);
        assert_eq!(line.get(start..start + 2), Some(&b"23"[..]));
        assert_eq!(d.trailer.verdict(), "bad");
        let line = b"2025-01-14 09:30:40 [kiosk1] 9300CNkiosk1|COs3cret|";
        let mut scratch = BytesMut::new();
        let (start, d) = locate(line, Encoding::Utf8, &mut scratch);
        assert_eq!(line.get(start..start + 4), Some(&b"9300"[..]));
        assert!(d.message.is_ok());
    }

    #[test]
    fn a_message_that_merely_looks_like_a_prefix_is_read_as_it_stands() {
        // A 64 with five counts, from another server: after the blanks, "0930..." starts
        // like a 09. The line reads as a 64 on its own, so nothing is skipped.
        let line = b"64              00120250114    09301700000001000000000000AOMAIN|AA21234000012345|AEReader, Avery|";
        let mut scratch = BytesMut::new();
        let (start, d) = locate(line, Encoding::Utf8, &mut scratch);
        assert_eq!(start, 0);
        assert!(matches!(d.message, Ok(proto::Message::PatronInformationResponse(_))), "{d:?}");
        assert!(d.deviations.contains(proto::Deviation::FixedFieldsMissing));
        // A 24 whose name holds an arrow and a code-like word is still the 24.
        let line = b"24              00120250114    093016AOMAIN|AA2|AEX -> 09 Y|BLY|";
        let mut scratch = BytesMut::new();
        assert_eq!(locate(line, Encoding::Utf8, &mut scratch).0, 0);
        // Garbage before a message without the shape of a log is not skipped.
        let line = b"xyz 9300CNkiosk1|COs3cret|";
        let mut scratch = BytesMut::new();
        let (start, d) = locate(line, Encoding::Utf8, &mut scratch);
        assert_eq!(start, 0);
        assert!(d.message.is_err());
    }

    #[test]
    fn recognised_log_shapes() {
        for p in ["12:00:01 ", "2025-01-14 ", "kiosk1 -> ", "[kiosk1] ", "SEND: ", "rx ", "<< "] {
            assert!(log_shaped(p.as_bytes()), "{p}");
        }
        for p in ["xyz ", "kiosk1 ", "AB ", "24              001"] {
            assert!(!log_shaped(p.as_bytes()), "{p}");
        }
    }

    #[test]
    fn lines_count_cr_lf_and_crlf_once_each() {
        let input = b"a\rb\nc\r\nd";
        let mut l = LineCounter::new(input);
        assert_eq!([l.line_at(0), l.line_at(2), l.line_at(4), l.line_at(7)], [1, 2, 3, 4]);
    }
}
