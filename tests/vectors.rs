//! The shared SIP2 vectors (copied into `conformance/vectors/`): every well-formed line parses,
//! verifies and re-encodes byte for byte; every malformed line gets the outcome its note asks for.

use std::path::PathBuf;

use bytes::BytesMut;
use sip2d::proto::{
    self, Direction, Encoding, FrameDecoder, FrameEvent, Message, ParseErrorKind, Seal, Terminator, Trailer, escape,
};

struct Line {
    file: String,
    number: usize,
    wire: Vec<u8>,
    note: String,
}

fn vector_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("conformance/vectors")
}

fn read_vectors(name: &str) -> Vec<Line> {
    let text = std::fs::read_to_string(vector_dir().join(name)).expect("vector file");
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.starts_with('#') && !l.is_empty())
        .map(|(i, l)| {
            let (wire, note) = l.split_once('\t').expect("wire TAB note");
            Line {
                file: name.to_string(),
                number: i + 1,
                wire: escape::unescape(wire).expect("escapes"),
                note: note.to_string(),
            }
        })
        .collect()
}

fn frames(wire: &[u8]) -> (Vec<FrameEvent>, Option<bytes::Bytes>) {
    let mut d = FrameDecoder::default();
    let mut buf = BytesMut::from(wire);
    let events: Vec<_> = std::iter::from_fn(|| d.decode(&mut buf)).collect();
    (events, d.decode_eof(&mut buf))
}

/// The canonical form of a frame: what we would write, given its trailer (checksum digits in
/// upper case, CR terminator).
fn canonical(frame: &[u8]) -> Vec<u8> {
    let mut c = frame.to_vec();
    if let (_, Trailer::Present { .. }) = proto::split_trailer(frame) {
        let n = c.len();
        if let Some(digits) = c.get_mut(n - 4..) {
            digits.make_ascii_uppercase();
        }
    }
    c.push(b'\r');
    c
}

#[test]
fn every_well_formed_vector_parses_verifies_and_re_encodes() {
    let mut files: Vec<String> = std::fs::read_dir(vector_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".txt") && n != "malformed.txt")
        .collect();
    files.sort();
    assert_eq!(files.len(), 17, "one file per message pair plus framing");

    let mut checked = 0;
    let mut codes = std::collections::BTreeSet::new();
    for file in &files {
        for line in read_vectors(file) {
            let at = format!("{}:{} ({})", line.file, line.number, line.note);
            let encoding = if line.note.contains("CP850") { Encoding::Cp850 } else { Encoding::Utf8 };
            let direction = if line.note.starts_with("SC->ACS") { Direction::ScToAcs } else { Direction::AcsToSc };
            let (events, rest) = frames(&line.wire);
            assert!(rest.is_none(), "{at}: unterminated");
            assert!(!events.is_empty(), "{at}: no frame");
            for event in events {
                let FrameEvent::Frame(frame) = event else { panic!("{at}: oversize") };
                let decoded = proto::decode(&frame, encoding);
                let message = decoded.message.unwrap_or_else(|e| panic!("{at}: {e}"));
                assert_eq!(message.direction(), direction, "{at}");
                assert!(
                    message.extra().iter().all(|x| x.id != *b"AY" && x.id != *b"AZ"),
                    "{at}: trailer parsed as a field"
                );
                let seal = match decoded.trailer {
                    Trailer::Absent => {
                        assert!(line.note.contains("NO-ED"), "{at}: no trailer but not marked NO-ED");
                        Seal::None
                    }
                    Trailer::Present { valid: true, sequence: Some(s), .. } => Seal::Sequenced(s),
                    Trailer::Present { valid: true, sequence: None, .. } => Seal::Checksum,
                    other => panic!("{at}: trailer {other:?}"),
                };
                let mut out = BytesMut::new();
                proto::encode_frame(&message, &mut out, encoding, seal, Terminator::Cr);
                assert_eq!(escape::escape(&out), escape::escape(&canonical(&frame)), "{at}: re-encoding differs");
                codes.insert(message.code());
                checked += 1;
            }
        }
    }
    assert!(checked >= 100, "only {checked} frames checked");
    assert_eq!(codes.len(), 31, "every message code appears in the vectors");
}

#[test]
fn text_decodes_the_same_in_utf8_and_cp850() {
    let lines = read_vectors("00_framing.txt");
    let names: Vec<String> = lines
        .iter()
        .filter(|l| l.note.contains("non-ASCII") || l.note.contains("CP850"))
        .map(|l| {
            let enc = if l.note.contains("CP850") { Encoding::Cp850 } else { Encoding::Utf8 };
            let (events, _) = frames(&l.wire);
            let Some(FrameEvent::Frame(f)) = events.into_iter().next() else { panic!() };
            let Ok(Message::PatronStatusResponse(m)) = proto::decode(&f, enc).message else { panic!() };
            m.personal_name.into_owned()
        })
        .collect();
    assert_eq!(names, vec!["M\u{fc}ller, J\u{f6}rg".to_string(), "M\u{fc}ller, J\u{f6}rg".to_string()]);
}

/// What the codec does with one input, in a form a line of `malformed.txt` can be checked against.
fn outcome(line: &Line) -> String {
    let (events, rest) = frames(&line.wire);
    let mut parts: Vec<String> = events
        .into_iter()
        .map(|e| match e {
            FrameEvent::Oversize => "oversize".to_string(),
            FrameEvent::Frame(f) => {
                let d = if line.note.starts_with("ACS->SC") {
                    proto::decode_response(&f, Encoding::Utf8)
                } else {
                    proto::decode_request(&f, Encoding::Utf8)
                };
                let result = match &d.message {
                    Ok(m) => format!("{}", String::from_utf8_lossy(&m.code())),
                    Err(e) => match e.kind {
                        ParseErrorKind::NoCommand => "no-command".into(),
                        ParseErrorKind::UnknownCommand(_) => "unknown".into(),
                        ParseErrorKind::WrongDirection(_) => "wrong-direction".into(),
                        ParseErrorKind::TooShort { .. } => "too-short".into(),
                        ParseErrorKind::NonAsciiFixed { .. } => "non-ascii-fixed".into(),
                        ParseErrorKind::InvalidFixed { .. } => "invalid-fixed".into(),
                        ParseErrorKind::InvalidField { .. } => "invalid-field".into(),
                        ParseErrorKind::Nul => "nul".into(),
                    },
                };
                let trailer = match d.trailer {
                    Trailer::Malformed(_) => "malformed",
                    t => t.verdict(),
                };
                format!("{result}/{trailer}")
            }
        })
        .collect();
    if rest.is_some() {
        parts.push("partial".into());
    }
    if parts.is_empty() { "nothing".into() } else { parts.join(" ") }
}

#[test]
fn every_malformed_vector_gets_its_outcome() {
    // One entry per line of malformed.txt, in order. "nothing" = no frame at all (ignored
    // silently); "partial" = bytes without a terminator (discarded at EOF, or closed by the
    // idle timeout); "X/ok" = frame parsed as code X with a valid trailer; "bad"/"malformed" =
    // the server answers 96; "unknown" and "wrong-direction" are ignored; a parse error with a
    // readable frame is answered 96.
    let expected = [
        "23/bad",                        // BADSUM: 96, not processed
        "93/bad",                        // BADSUM on a 93: 96, not a login attempt
        "23/malformed",                  // three hex digits: 96 when ED is on
        "23/malformed",                  // non-hex checksum: 96
        "23/malformed",                  // AYX: 96
        "23/ok",                         // AZ without AY: processed, AZ-only reply
        "97/ok",                         // 97 with AY: resend anyway
        "too-short/ok",                  // truncated fixed part, valid sum: 96
        "too-short/absent",              // same without ED: 96
        "too-short/absent",              // "11" alone
        "no-command/absent",             // "9"
        "nothing",                       // bare CR
        "nothing",                       // blanks only
        "99/absent",                     // LF terminator
        "partial",                       // no terminator
        "99/ok",                         // leading debris stripped
        "23/ok",                         // invalid UTF-8 in AA: parsed, unknown patron
        "non-ascii-fixed/ok",            // multi-byte char in fixed part: 96
        "23/ok",                         // AA of 300 chars: accepted
        "oversize",                      // 100 KB frame: close
        "partial",                       // TLS ClientHello: no terminator
        "unknown/absent unknown/absent", // HTTP request lines: ignored
        "unknown/absent",                // binary garbage ending in CR
        "nul/ok",                        // NUL inside a field: 96
        "23/absent unknown/absent",      // CR inside a value splits the frame
        "unknown/ok",                    // XX
        "unknown/ok",                    // 55
        "wrong-direction/ok",            // a 24 sent to the server
        "wrong-direction/ok",            // a 96 sent to the server
        "11/ok",                         // lenient flags
        "11/ok",                         // impossible dates
        "23/ok",                         // AO missing
        "63/ok",                         // AA missing
        "23/ok",                         // last field without '|'
        "23/ok",                         // AA twice
        "63/ok",                         // several Y in summary
        "63/ok",                         // bad BP/BQ
        "23/ok",                         // '^' delimiter
        "23/ok",                         // 23 before login (a server decision)
        "23/malformed",                  // text after the checksum
        "23/ok",                         // AY4, first of a pair
        "23/ok",                         // AY4 again, different checksum
        "15/ok",                         // hold mode '?'
        "11/ok",                         // empty AB
        "93/ok",                         // login attempt #4
        "94/ok",                         // 940 reply
    ];
    let lines = read_vectors("malformed.txt");
    assert_eq!(lines.len(), expected.len(), "malformed.txt changed: update this table");
    for (line, want) in lines.iter().zip(expected) {
        assert_eq!(outcome(line), want, "malformed.txt:{} ({})", line.number, line.note);
    }
}

fn request(line_containing: &str) -> Message<'static> {
    let line =
        read_vectors("malformed.txt").into_iter().find(|l| l.note.contains(line_containing)).expect(line_containing);
    let (events, _) = frames(&line.wire);
    let Some(FrameEvent::Frame(f)) = events.into_iter().next() else { panic!("no frame") };
    let f: &'static [u8] = Vec::leak(f.to_vec());
    proto::decode_request(f, Encoding::Utf8).message.expect("parses")
}

#[test]
fn malformed_vectors_that_parse_carry_the_right_values() {
    let Message::PatronStatusRequest(m) = request("invalid UTF-8") else { panic!() };
    assert_ne!(m.patron_identifier, "21234000012345");
    assert!(m.patron_identifier.starts_with("2123") && m.patron_identifier.ends_with("4000012345"));

    let Message::PatronStatusRequest(m) = request("AA is 300 chars") else { panic!() };
    assert_eq!(m.patron_identifier.len(), 300);

    let Message::Checkout(m) = request("renewal policy 'X'") else { panic!() };
    assert!(!m.sc_renewal_policy && !m.no_block);

    let Message::Checkout(m) = request("impossible transaction date") else { panic!() };
    assert!(matches!(m.transaction_date, proto::SipDate::Invalid(_)));
    assert!(matches!(m.nb_due_date, proto::SipDate::Invalid(_)));
    assert_eq!(m.item_identifier, "31234000098765");

    let Message::PatronStatusRequest(m) = request("required AO missing") else { panic!() };
    assert_eq!(m.missing_required(), vec![*b"AO"]);
    assert_eq!(m.institution_id, "");

    let Message::PatronInformation(m) = request("63 without AA") else { panic!() };
    assert_eq!(m.patron_identifier, "");
    assert_eq!(m.missing_required(), vec![*b"AA"]);

    let Message::PatronStatusRequest(m) = request("last field lacks") else { panic!() };
    assert_eq!(m.patron_password.expose(), "4321");

    let Message::PatronStatusRequest(m) = request("AA twice") else { panic!() };
    assert_eq!(m.patron_identifier, "21234000012345");
    assert_eq!(m.extra.len(), 1);
    assert_eq!(m.extra[0].value, "21234000099999");

    let Message::PatronInformation(m) = request("several Y") else { panic!() };
    assert_eq!(m.summary.selected(), Some(proto::Summary::HOLD_ITEMS));

    let Message::PatronInformation(m) = request("BQ not a number") else { panic!() };
    assert_eq!(m.item_window(), (Some(9), None));

    let Message::PatronStatusRequest(m) = request("'^' as delimiter") else { panic!() };
    assert!(m.institution_id.starts_with("MAIN^AA2123"));
    assert_eq!(m.patron_identifier, "");

    let Message::Hold(m) = request("hold mode '?'") else { panic!() };
    assert_eq!(m.hold_mode.byte(), b'?');

    let Message::Checkout(m) = request("empty AB") else { panic!() };
    assert_eq!(m.item_identifier, "");
    assert!(m.missing_required().is_empty());
}

#[test]
fn an_overlong_frame_never_holds_more_than_the_limit() {
    let line = read_vectors("malformed.txt").into_iter().find(|l| l.note.contains("100 KB")).unwrap();
    let mut d = FrameDecoder::default();
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    for chunk in line.wire.chunks(1500) {
        buf.extend_from_slice(chunk);
        while let Some(e) = d.decode(&mut buf) {
            events.push(e);
        }
        assert!(buf.len() <= proto::DEFAULT_MAX_FRAME + 1500);
    }
    assert_eq!(events, vec![FrameEvent::Oversize]);
}

/// `conformance/vectors/deviations/`: each frame a real client or server sends that departs from
/// the spec reads, leniently, as the message its canonical column writes exactly, with the
/// deviations its second column names; the exact reader does not give that message.
#[test]
fn deviation_vectors_read_as_their_canonical_form() {
    let dir = vector_dir().join("deviations");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 4, "one file per class");
    let mut seen = std::collections::BTreeSet::new();
    let mut checked = 0;
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, l) in text.lines().enumerate().filter(|(_, l)| !l.starts_with('#') && !l.is_empty()) {
            let at = format!("{}:{}", path.display(), i + 1);
            let [wire, devs, canon, note] = l.split('\t').collect::<Vec<_>>()[..] else { panic!("{at}: four columns") };
            let wire = escape::unescape(wire).unwrap();
            let canon = escape::unescape(canon).unwrap();
            let (wire, canon) = (wire.strip_suffix(b"\r").unwrap(), canon.strip_suffix(b"\r").unwrap());
            let direction = if note.starts_with("SC->ACS") { Direction::ScToAcs } else { Direction::AcsToSc };

            let expected = proto::decode(canon, Encoding::Utf8).only(direction);
            let expected = expected.message.unwrap_or_else(|e| panic!("{at}: canonical column does not parse: {e}"));
            let mut scratch = BytesMut::new();
            let got = proto::decode_lenient(wire, Encoding::Utf8, &mut scratch).only(direction);
            let names: Vec<_> = got.deviations.kinds().map(|d| d.name()).collect();
            assert_eq!(names.join(","), devs, "{at}: deviations");
            assert_eq!(got.message.as_ref().ok(), Some(&expected), "{at}: lenient reading");
            let exact = proto::decode(wire, Encoding::Utf8).message;
            assert!(exact.as_ref().map_or(true, |m| m != &expected || !m.is_plausible()), "{at}: exact reader agrees");
            // The canonical form needs no tolerance (but an unreadable date is kept as sent).
            let mut again = BytesMut::new();
            let canon_devs = proto::decode_lenient(canon, Encoding::Utf8, &mut again).deviations;
            assert!(canon_devs.is_empty() || canon == wire, "{at}: canonical column needs {canon_devs}");
            seen.extend(got.deviations.kinds());
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} vectors");
    let missing: Vec<_> = proto::Deviation::ALL.iter().filter(|d| !seen.contains(d)).collect();
    assert!(missing.is_empty(), "every deviation has a vector; none for {missing:?}");
}
