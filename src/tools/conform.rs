//! The conformance checker: runs transcripts (what to send, what to expect, why) against a
//! SIP2 server and grades every reply. Format: `conformance/README.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use super::conn::SipConn;
use crate::proto::{self, Encoding, Trailer, escape};

/// What the server is known to hold: named values (`patron.good`, `item.available`...) that
/// transcripts refer to as `{name}`.
pub type Fixture = BTreeMap<String, String>;

/// One step of a transcript.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Log in with the checker's credentials; a refusal fails the transcript.
    Login,
    /// Send a message (placeholders filled in; trailer, terminator as configured).
    Send(String),
    /// Send bytes exactly as written (escape notation), no trailer added.
    SendRaw(String),
    /// Expectations on the last reply.
    Expect(Expectation),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expectation {
    /// The reply's command code.
    Code(String),
    /// A field's value (`ID = value`), that it contains text (`ID ~ text`), or is present/absent.
    Field { id: String, op: FieldOp, value: String },
    /// The character at a position of the reply (0-based, the code included).
    At { pos: usize, value: String },
    /// No reply within the wait.
    Silence,
    /// No reply, or a 96: what the spec says (ignore an unknown command) or what most servers
    /// do (say at once that it could not be read).
    SilenceOr96,
    /// The server closes the connection.
    Close,
    /// The exact reply bytes (escape notation, terminator excluded).
    Exact(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldOp {
    Equals,
    Contains,
    Present,
    Absent,
}

/// A transcript: a name, the docs/protocol.md sections it tests, why, its steps, and the fixture
/// values it needs (missing ones skip it).
#[derive(Clone, Debug, PartialEq)]
pub struct Transcript {
    pub name: String,
    pub tests: String,
    pub why: String,
    pub steps: Vec<Step>,
}

/// A transcript file could not be read.
#[derive(Debug)]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Reads a transcript file: transcripts begin with `transcript NAME`.
pub fn parse(text: &str) -> Result<Vec<Transcript>, SyntaxError> {
    let mut out: Vec<Transcript> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim_end();
        if l.trim().is_empty() || l.trim_start().starts_with('#') {
            continue;
        }
        let err = |m: &str| SyntaxError { line, message: m.to_string() };
        let (word, rest) = l.trim_start().split_once(' ').map_or((l.trim(), ""), |(w, r)| (w, r.trim()));
        if word == "transcript" {
            if rest.is_empty() {
                return Err(err("transcript needs a name"));
            }
            out.push(Transcript { name: rest.into(), tests: String::new(), why: String::new(), steps: vec![] });
            continue;
        }
        let Some(t) = out.last_mut() else { return Err(err("a step before the first `transcript NAME`")) };
        match word {
            "tests" => t.tests = rest.into(),
            "why" => {
                if !t.why.is_empty() {
                    t.why.push(' ');
                }
                t.why.push_str(rest);
            }
            "login" => t.steps.push(Step::Login),
            "send" => t.steps.push(Step::Send(rest.into())),
            "send-raw" => t.steps.push(Step::SendRaw(rest.into())),
            "expect" => {
                let (kind, arg) = rest.split_once(' ').map_or((rest, ""), |(k, a)| (k, a.trim()));
                let e = match kind {
                    "code" => Expectation::Code(arg.into()),
                    "silence" => Expectation::Silence,
                    "silence-or-96" => Expectation::SilenceOr96,
                    "close" => Expectation::Close,
                    "exact" => Expectation::Exact(arg.into()),
                    "at" => {
                        let (pos, value) = arg.split_once(' ').ok_or_else(|| err("expect at POS CHARS"))?;
                        let pos = pos.parse().map_err(|_| err("expect at: POS is a number"))?;
                        Expectation::At { pos, value: value.trim().into() }
                    }
                    "field" => {
                        let mut parts = arg.splitn(3, ' ');
                        let id = parts.next().unwrap_or("").to_string();
                        let op = match parts.next() {
                            Some("=") => FieldOp::Equals,
                            Some("~") => FieldOp::Contains,
                            Some("present") => FieldOp::Present,
                            Some("absent") => FieldOp::Absent,
                            _ => return Err(err("expect field ID (= VALUE | ~ TEXT | present | absent)")),
                        };
                        if id.len() != 2 {
                            return Err(err("a field id has two characters"));
                        }
                        Expectation::Field { id, op, value: parts.next().unwrap_or("").to_string() }
                    }
                    _ => return Err(err("expect code|field|at|silence|close|exact")),
                };
                t.steps.push(Step::Expect(e));
            }
            _ => return Err(err(&format!("unknown step '{word}'"))),
        }
    }
    Ok(out)
}

/// The verdict of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail(String),
    Skip(String),
}

/// One graded check.
#[derive(Clone, Debug)]
pub struct Check {
    pub transcript: String,
    pub check: String,
    pub tests: String,
    pub verdict: Verdict,
}

/// How the checker talks to the server.
pub struct Settings {
    pub login: Option<(String, String)>,
    pub encoding: Encoding,
    pub timeout: Duration,
    /// How long "no reply" is waited for.
    pub silence: Duration,
}

/// Fills `{name}` placeholders from the fixture; the first missing name is the error.
pub fn fill(template: &str, fixture: &Fixture) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(rest.get(..open).unwrap_or(""));
        let after = rest.get(open + 1..).unwrap_or("");
        let Some(close) = after.find('}') else {
            out.push_str(rest.get(open..).unwrap_or(""));
            return Ok(out);
        };
        let name = after.get(..close).unwrap_or("");
        let value = fixture.get(name).ok_or_else(|| name.to_string())?;
        out.push_str(value);
        rest = after.get(close + 1..).unwrap_or("");
    }
    out.push_str(rest);
    Ok(out)
}

/// The response code a request code is answered with.
fn response_to(code: &[u8]) -> Option<&'static [u8; 2]> {
    Some(match code {
        b"93" => b"94",
        b"99" => b"98",
        b"23" | b"01" => b"24",
        b"63" => b"64",
        b"11" => b"12",
        b"09" => b"10",
        b"29" => b"30",
        b"65" => b"66",
        b"17" => b"18",
        b"19" => b"20",
        b"35" => b"36",
        b"37" => b"38",
        b"15" => b"16",
        b"25" => b"26",
        _ => return None,
    })
}

struct Runner<'a> {
    settings: &'a Settings,
    out: Vec<Check>,
    name: String,
    tests: String,
}

impl Runner<'_> {
    fn record(&mut self, check: impl Into<String>, verdict: Verdict) {
        self.out.push(Check { transcript: self.name.clone(), check: check.into(), tests: self.tests.clone(), verdict });
    }

    fn pass_if(&mut self, check: impl Into<String>, ok: bool, why: impl FnOnce() -> String) {
        self.record(check, if ok { Verdict::Pass } else { Verdict::Fail(why()) });
    }

    /// The checks every reply gets: framing, checksum and sequence, fixed widths, required
    /// fields, the right response code.
    fn wellformed(&mut self, sent: &[u8], reply: &[u8], sealed: bool) {
        let body = reply;
        let mut scratch = bytes::BytesMut::new();
        let d = proto::decode_lenient(body, self.settings.encoding, &mut scratch).only(proto::Direction::AcsToSc);
        let shown = escape::escape(&proto::redact(body));
        let sent_code = sent.get(..2).unwrap_or_default();
        if let Some(want) = response_to(sent_code) {
            let got = body.get(..2).unwrap_or_default();
            // 96 is a legal answer to anything the server could not read.
            self.pass_if("response code", got == want || got == b"96", || {
                format!("expected {} (or 96), got {}", String::from_utf8_lossy(want), String::from_utf8_lossy(got))
            });
        }
        match &d.message {
            Ok(m) => {
                // Read leniently so that one deviation does not make every later check a
                // misreading; the deviation itself fails this check, by name.
                self.pass_if("fixed fields parse", d.deviations.is_empty(), || {
                    format!(
                        "read only by tolerating {} (docs/protocol.md; strict clients refuse it): {shown}",
                        d.deviations
                    )
                });
                let missing = m.missing_required();
                self.pass_if("required fields present", missing.is_empty(), || {
                    let ids: Vec<String> = missing.iter().map(|i| String::from_utf8_lossy(i).into_owned()).collect();
                    format!("missing {} in {shown}", ids.join(", "))
                });
            }
            Err(e) => self.record("fixed fields parse", Verdict::Fail(format!("{e}: {shown}"))),
        }
        let sent_trailer = proto::split_trailer(sent.strip_suffix(b"\r").unwrap_or(sent)).1;
        match (sealed, sent_trailer.sequence(), d.trailer) {
            (true, _, Trailer::Present { valid: false, .. } | Trailer::Malformed(_)) => {
                self.record("checksum", Verdict::Fail(format!("reply checksum wrong: {shown}")))
            }
            (true, Some(seq), t) if body.get(..2) != Some(b"96") => {
                self.pass_if("checksum", t.is_valid(), || format!("no valid AY/AZ trailer on {shown}"));
                self.pass_if("sequence echoed", t.sequence() == Some(seq), || {
                    format!("sent AY{seq}, got {:?}", t.sequence().map(|s| s.get()))
                });
            }
            _ => {}
        }
    }
}

/// The values of field `id` in a reply, as written on the wire (all occurrences).
fn field_values(reply: &[u8], id: &str, _encoding: Encoding) -> Vec<String> {
    let body = proto::split_trailer(reply).0;
    let Some(fixed) = body.first_chunk::<2>().and_then(|c| proto::lookup(*c)).map(|i| i.fixed_len) else {
        return Vec::new();
    };
    body.get(fixed..)
        .unwrap_or_default()
        .split(|&b| b == b'|')
        .filter_map(|f| {
            let (fid, value) = f.split_at_checked(2)?;
            (fid == id.as_bytes()).then(|| String::from_utf8_lossy(value).into_owned())
        })
        .collect()
}

/// Runs transcripts against a server, each on a fresh connection made by `connect`.
pub async fn run<F, Fut>(transcripts: &[Transcript], fixture: &Fixture, settings: &Settings, connect: F) -> Vec<Check>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<SipConn>>,
{
    let mut r = Runner { settings, out: Vec::new(), name: String::new(), tests: String::new() };
    'transcripts: for t in transcripts {
        r.name = t.name.clone();
        r.tests = t.tests.clone();
        // Skip, with the reason, when the fixture lacks a value the transcript needs.
        for s in &t.steps {
            let text = match s {
                Step::Send(x) | Step::SendRaw(x) => x.clone(),
                Step::Expect(Expectation::Field { value, .. }) => value.clone(),
                Step::Expect(Expectation::Exact(x)) => x.clone(),
                _ => continue,
            };
            if let Err(missing) = fill(&text, fixture) {
                r.record("transcript", Verdict::Skip(format!("the fixture has no '{missing}'")));
                continue 'transcripts;
            }
        }
        if t.steps.contains(&Step::Login) && settings.login.is_none() {
            r.record("transcript", Verdict::Skip("needs --login".into()));
            continue;
        }
        let mut conn = match connect().await {
            Ok(c) => c,
            Err(e) => {
                r.record("connect", Verdict::Fail(e.to_string()));
                continue;
            }
        };
        let sealed = conn.wire.checksums;
        let mut last: Option<(Bytes, Option<Bytes>)> = None;
        for s in &t.steps {
            match s {
                Step::Login => {
                    let (u, p) = settings.login.clone().unwrap_or_default();
                    let msg = format!("9300CN{u}|CO{p}|");
                    let reply = send_template(&mut conn, &msg, settings).await;
                    let ok = matches!(&reply, Ok((_, Some(b))) if b.starts_with(b"941"));
                    r.pass_if("login", ok, || format!("login as {u} refused: {reply:?}"));
                    if !ok {
                        continue 'transcripts;
                    }
                }
                Step::Send(template) => {
                    let filled = fill(template, fixture).unwrap_or_default();
                    match send_template(&mut conn, &filled, settings).await {
                        Ok((sent, reply)) => {
                            if let Some(b) = &reply {
                                r.wellformed(&sent, b, sealed);
                            }
                            last = Some((sent, reply));
                        }
                        Err(e) => {
                            r.record("send", Verdict::Fail(e.to_string()));
                            continue 'transcripts;
                        }
                    }
                }
                Step::SendRaw(text) => {
                    let filled = fill(text, fixture).unwrap_or_default();
                    let Some(bytes) = escape::unescape(&filled) else {
                        r.record("send-raw", Verdict::Fail("bad escapes in the transcript".into()));
                        continue 'transcripts;
                    };
                    if let Err(e) = conn.send_raw(&bytes).await {
                        r.record("send-raw", Verdict::Fail(e.to_string()));
                        continue 'transcripts;
                    }
                    let reply = conn.recv_within(settings.silence).await.ok().flatten();
                    last = Some((Bytes::from(bytes), reply));
                }
                Step::Expect(e) => {
                    let reply = last.as_ref().and_then(|(_, r)| r.clone());
                    expect(&mut r, e, reply.as_deref(), fixture, &mut conn).await;
                }
            }
        }
    }
    r.out
}

async fn send_template(conn: &mut SipConn, text: &str, settings: &Settings) -> std::io::Result<(Bytes, Option<Bytes>)> {
    // A message is sent parsed and re-encoded, so the trailer and terminator are the
    // checker's; text that does not parse is sent as it is.
    let msg = proto::decode_request(text.as_bytes(), Encoding::Utf8).message;
    let sent = match msg {
        Ok(m) => conn.send(&m).await?,
        Err(_) => {
            let mut b = text.as_bytes().to_vec();
            b.push(b'\r');
            conn.send_raw(&b).await?;
            Bytes::from(b)
        }
    };
    let reply = match conn.recv_within(settings.silence.max(settings.timeout)).await {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => None,
        Err(e) => return Err(e),
    };
    Ok((sent, reply))
}

async fn expect(r: &mut Runner<'_>, e: &Expectation, reply: Option<&[u8]>, fixture: &Fixture, conn: &mut SipConn) {
    let shown = reply.map(|b| escape::escape(&proto::redact(b))).unwrap_or_else(|| "no reply".into());
    match e {
        Expectation::Code(c) => {
            let got = reply.and_then(|b| b.get(..2)).map(|b| String::from_utf8_lossy(b).into_owned());
            r.pass_if(format!("code {c}"), got.as_deref() == Some(c), || format!("got {shown}"));
        }
        Expectation::At { pos, value } => {
            let got = reply.and_then(|b| b.get(*pos..*pos + value.len()));
            r.pass_if(format!("position {pos} = '{value}'"), got == Some(value.as_bytes()), || format!("got {shown}"));
        }
        Expectation::Exact(x) => {
            let want = fill(x, fixture).unwrap_or_default();
            let ok = reply.is_some_and(|b| escape::escape(b) == want);
            r.pass_if("exact reply", ok, || format!("expected {want}, got {shown}"));
        }
        Expectation::Field { id, op, value } => {
            let want = fill(value, fixture).unwrap_or_default();
            let values = reply.map(|b| field_values(b, id, r.settings.encoding)).unwrap_or_default();
            let (label, ok) = match op {
                FieldOp::Equals => (format!("{id} = {want}"), values.contains(&want)),
                FieldOp::Contains => (format!("{id} ~ {want}"), values.iter().any(|v| v.contains(&want))),
                FieldOp::Present => (format!("{id} present"), !values.is_empty()),
                FieldOp::Absent => (format!("{id} absent"), values.is_empty()),
            };
            r.pass_if(label, ok, || format!("got {shown}"));
        }
        Expectation::Silence => {
            r.pass_if("no reply", reply.is_none(), || format!("got {shown}"));
        }
        Expectation::SilenceOr96 => {
            let ok = reply.is_none_or(|b| b.starts_with(b"96"));
            r.pass_if("no reply, or 96", ok, || format!("got {shown}"));
        }
        Expectation::Close => {
            let closed = reply.is_none() && matches!(conn.recv_within(r.settings.silence).await, Ok(None) | Err(_));
            r.pass_if("connection closed", closed, || format!("still open; last reply {shown}"));
        }
    }
}

/// The standard checks the CLI runs, from the `conformance/transcripts` files built in.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("framing.sip", include_str!("../../conformance/transcripts/framing.sip")),
    ("session.sip", include_str!("../../conformance/transcripts/session.sip")),
    ("patron.sip", include_str!("../../conformance/transcripts/patron.sip")),
    ("circulation.sip", include_str!("../../conformance/transcripts/circulation.sip")),
];

/// Every message's id as `decode` shows it, for reports.
pub fn message_name(frame: &[u8]) -> String {
    match proto::decode(frame, Encoding::Utf8).message {
        Ok(m) => format!("{} {}", String::from_utf8_lossy(&m.code()), m.name()),
        Err(_) => "unreadable".into(),
    }
}

/// Grades the requests a kiosk sends (the checker acting as the ACS): each must be a
/// well-formed SIP2 request with its required fields, a right checksum when it has one, a
/// sequence number that advances by one (or repeats, for a retransmission), and the session
/// must begin with a login (93, or 99 then 93).
#[derive(Default)]
pub struct KioskGrader {
    peers: std::collections::HashMap<std::net::SocketAddr, PeerState>,
}

#[derive(Default)]
struct PeerState {
    requests: u64,
    last_sequence: Option<u8>,
    logged_in: bool,
}

impl KioskGrader {
    pub fn new() -> KioskGrader {
        KioskGrader::default()
    }

    /// The checks one request frame (terminator removed) gets.
    pub fn grade(&mut self, peer: std::net::SocketAddr, frame: &[u8], encoding: Encoding) -> Vec<Check> {
        let st = self.peers.entry(peer).or_default();
        st.requests += 1;
        let mut scratch = bytes::BytesMut::new();
        let d = proto::decode_lenient(frame, encoding, &mut scratch).only(proto::Direction::ScToAcs);
        let code = frame.get(..2).map(|c| String::from_utf8_lossy(c).into_owned()).unwrap_or_default();
        let name = format!("{peer} #{} {}", st.requests, message_name(frame));
        let mut out = Vec::new();
        let mut add = |check: &str, verdict: Verdict| {
            out.push(Check { transcript: name.clone(), check: check.into(), tests: String::new(), verdict })
        };
        let shown = escape::escape(&proto::redact(frame));
        match &d.message {
            Ok(m) => {
                add(
                    "well-formed request",
                    if d.deviations.is_empty() {
                        Verdict::Pass
                    } else {
                        Verdict::Fail(format!(
                            "read only by tolerating {} (docs/protocol.md; strict servers answer 96): {shown}",
                            d.deviations
                        ))
                    },
                );
                let missing = m.missing_required();
                add(
                    "required fields present",
                    if missing.is_empty() {
                        Verdict::Pass
                    } else {
                        let ids: Vec<String> =
                            missing.iter().map(|i| String::from_utf8_lossy(i).into_owned()).collect();
                        Verdict::Fail(format!("missing {} in {shown}", ids.join(", ")))
                    },
                );
            }
            Err(e) => add("well-formed request", Verdict::Fail(format!("{e}: {shown}"))),
        }
        match d.trailer {
            Trailer::Absent => add("checksum", Verdict::Skip("no error detection".into())),
            Trailer::Present { valid: true, .. } => add("checksum", Verdict::Pass),
            Trailer::Present { expected, .. } => {
                add("checksum", Verdict::Fail(format!("wrong checksum, should be {expected:04X}: {shown}")))
            }
            Trailer::Malformed(e) => add("checksum", Verdict::Fail(format!("{e}: {shown}"))),
        }
        if let Some(seq) = d.trailer.sequence().map(|s| s.get()) {
            let ok = match st.last_sequence {
                None => true,
                Some(last) => seq == (last + 1) % 10 || seq == last,
            };
            add(
                "sequence",
                if ok {
                    Verdict::Pass
                } else {
                    Verdict::Fail(format!("AY went from {} to {seq}", st.last_sequence.unwrap_or(0)))
                },
            );
            st.last_sequence = Some(seq);
        }
        let login_first = match code.as_str() {
            "93" => {
                st.logged_in = true;
                true
            }
            "99" | "97" => true,
            _ => st.logged_in,
        };
        add("login first", if login_first { Verdict::Pass } else { Verdict::Fail(format!("{code} before any 93")) });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcripts_parse_and_bad_ones_are_refused_with_their_line() {
        for (name, text) in BUILT_IN {
            let ts = parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!ts.is_empty() && ts.iter().all(|t| !t.tests.is_empty() && !t.why.is_empty()), "{name}");
        }
        let e = parse("transcript x\nexpect field ABC = 1\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(parse("send 23\n").is_err(), "a step before a transcript");
        assert!(parse("transcript x\nfrobnicate\n").is_err());
    }

    #[test]
    fn placeholders_fill_from_the_fixture_and_a_missing_one_is_named() {
        let mut f = Fixture::new();
        f.insert("patron.good".into(), "P1".into());
        assert_eq!(fill("AA{patron.good}|AD{x}", &f), Err("x".to_string()));
        assert_eq!(fill("AA{patron.good}|", &f), Ok("AAP1|".to_string()));
    }

    #[test]
    fn the_kiosk_grader_finds_what_a_kiosk_gets_wrong() {
        let mut g = KioskGrader::new();
        let peer: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
        let fails = |checks: Vec<Check>| -> Vec<String> {
            checks.into_iter().filter(|c| matches!(c.verdict, Verdict::Fail(_))).map(|c| c.check).collect()
        };
        assert_eq!(fails(g.grade(peer, b"2300120250114    093015AOMAIN|AA1|AC|AD|", Encoding::Utf8)), ["login first"]);
        assert!(fails(g.grade(peer, b"9300CNkiosk1|COpw|AY1AZF6B2", Encoding::Utf8)).contains(&"checksum".to_string()));
        let good = {
            let head = "9900302.00AY2AZ";
            format!("{head}{:04X}", proto::checksum(head.as_bytes()))
        };
        assert!(fails(g.grade(peer, good.as_bytes(), Encoding::Utf8)).is_empty());
        let jump = {
            let head = "9900302.00AY7AZ";
            format!("{head}{:04X}", proto::checksum(head.as_bytes()))
        };
        assert_eq!(fails(g.grade(peer, jump.as_bytes(), Encoding::Utf8)), ["sequence"]);
        assert_eq!(fails(g.grade(peer, b"2300120250114    0930", Encoding::Utf8)), ["well-formed request"]);
        // A deviation fails the one check, by name; the rest is graded on what was meant.
        let checks = g.grade(peer, b"23eng20250114    093015AOMAIN|AA1|AC|AD|", Encoding::Utf8);
        let failed: Vec<_> = checks.iter().filter(|c| matches!(c.verdict, Verdict::Fail(_))).collect();
        assert_eq!(failed.len(), 1, "{checks:?}");
        assert!(matches!(&failed[0].verdict, Verdict::Fail(why) if why.contains("language-letters")), "{failed:?}");
    }
}
