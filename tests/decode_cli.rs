//! `sip2d decode` as a user runs it: stdin or files, text or JSON, never failing on bad input.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn sip2d(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sip2d"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sip2d");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn json_reports_code_checksum_and_error_for_every_message() {
    let input = b"9300CNkiosk1|COs3cret|CPmain-lobby|AY0AZF215\r\n\
        2300120250114    093015AOMAIN|AA21234000012345|AC|AD4321|AY2AZF1A0\n\
        XX000120250114    093015AOMAIN|AY8AZF7B0\r\
        2300120250114    0930\r\
        \x8F\x01\xEE\r\
        2025-01-14 09:30:40 kiosk1 -> 11YN20250114    093040                  AOMAIN|AA21234000012345|AB31234000098765|AC|AY3AZED57\n";
    let out = sip2d(&["decode", "--json"], input);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = json_lines(&out);
    assert_eq!(v.len(), 6);

    assert_eq!(v[0]["code"], "93");
    assert_eq!(v[0]["checksum"], "ok");
    assert_eq!(v[0]["sequence"], 0);
    assert!(v[0]["error"].is_null());
    // The password is never printed.
    assert!(!out.stdout.windows(6).any(|w| w == b"s3cret"));

    assert_eq!(v[1]["code"], "23");
    assert_eq!(v[1]["checksum"], "bad");
    assert_eq!(v[1]["line"], 2);

    assert_eq!(v[2]["code"], "XX");
    assert!(v[2]["error"].as_str().unwrap().contains("unknown command"));

    assert_eq!(v[3]["code"], "23");
    assert_eq!(v[3]["checksum"], "absent");
    assert!(v[3]["error"].as_str().unwrap().contains("truncated"));

    assert!(v[4]["code"].is_null() || v[4]["code"].is_string());
    assert!(v[4]["error"].is_string());

    assert_eq!(v[5]["code"], "11");
    assert_eq!(v[5]["checksum"], "ok");
    assert_eq!(v[5]["prefix"], "2025-01-14 09:30:40 kiosk1 -> ");
    let fields = v[5]["fields"].as_array().unwrap();
    assert!(
        fields.iter().any(|f| f["id"] == "AB" && f["label"] == "item identifier" && f["value"] == "31234000098765")
    );
}

#[test]
fn text_output_labels_every_field() {
    let out = sip2d(&["decode"], b"24YY Y      Y   00120250114    093001AOMAIN|AA21234000054321|AEDebtor, Dana|BLY|CQY|BHUSD|BV27.50|AFFines of 27.50 block borrowing|AY5AZDAB8\r");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("24 Patron Status Response (ACS->SC), checksum ok (AY5, AZDAB8)"), "{text}");
    assert!(text.contains("charge privileges denied"), "{text}");
    assert!(text.contains("AE personal name"), "{text}");
    assert!(text.contains("Debtor, Dana"), "{text}");
    assert!(text.contains("1 message(s) decoded"), "{text}");
}

#[test]
fn oversize_lines_are_reported_and_decoding_carries_on() {
    let mut input = vec![b'A'; 100];
    input.extend_from_slice(b"\r9900302.00AY1AZFCA5\r");
    let out = sip2d(&["decode", "--json", "--max-length", "64"], &input);
    assert!(out.status.success());
    let v = json_lines(&out);
    assert_eq!(v.len(), 2);
    assert!(v[0]["error"].as_str().unwrap().contains("longer than 64"));
    assert_eq!(v[1]["code"], "99");
    assert_eq!(v[1]["checksum"], "ok");
}

#[test]
fn escaped_vector_files_decode_with_cp850() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/conformance/vectors/00_framing.txt");
    let out = sip2d(&["decode", "--escaped", "--json", "--encoding", "cp850", file], b"");
    assert!(out.status.success());
    let v = json_lines(&out);
    assert!(v.iter().all(|m| m["checksum"] != "bad"), "every framing vector verifies");
    let last = v.last().unwrap();
    let name = last["fields"].as_array().unwrap().iter().find(|f| f["id"] == "AE").unwrap();
    assert_eq!(name["value"], "M\u{fc}ller, J\u{f6}rg");
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let out = sip2d(&["decode", "/nonexistent/kiosk.log"], b"");
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("cannot read /nonexistent/kiosk.log"), "{err}");
}

#[test]
fn a_bad_encoding_name_is_refused_by_the_parser() {
    let out = sip2d(&["decode", "--encoding", "latin9"], b"");
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr).unwrap().contains("unknown encoding 'latin9'"));
}

#[test]
fn a_pin_never_appears_even_when_the_checksum_is_bad_and_a_prefix_hides_the_code() {
    let line = b"2025-01-14 09:30:15 kiosk1 -> 2300120250114    093015AOMAIN|AA21234000012345|AC|AD4321|AY2AZF1A0\r";
    for args in [&["decode"][..], &["decode", "--json"][..]] {
        let out = sip2d(args, line);
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(!text.contains("4321"), "{text}");
        assert!(text.contains("23 Patron Status Request") || text.contains("\"code\":\"23\""), "{text}");
    }
}

/// Lines from other servers and kiosks decode as meant, with what was tolerated named; every
/// deviation vector's wire column decodes without an error.
#[test]
fn deviations_are_read_and_named() {
    let input = b"23eng20250114    093015AOMAIN|AA21234000012345|AC|AD4321|\r\
        24              00120250114    093016AOMAIN^AA21234000012345^AEReader, Avery^BLY^CQY^\r\
        990302.00\r";
    let out = sip2d(&["decode", "--json"], input);
    let v = json_lines(&out);
    assert_eq!(v.len(), 3);
    assert_eq!(v[0]["code"], "23");
    assert_eq!(v[0]["deviations"][0]["kind"], "language-letters");
    assert_eq!(v[0]["deviations"][0]["at"], 2);
    assert_eq!(v[1]["fields"].as_array().unwrap().iter().filter(|f| f["id"] == "AE").count(), 1, "{}", v[1]);
    assert_eq!(v[1]["deviations"][0]["kind"], "caret-delimiter");
    assert_eq!(v[2]["code"], "99");
    assert!(v.iter().all(|m| m["error"].is_null()), "{v:?}");

    let text = sip2d(&["decode"], b"990302.00\r");
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("tolerated at byte 3: sc-status-short-width"), "{text}");

    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/conformance/vectors/deviations");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let out = sip2d(&["decode", "--json", "--escaped", path.to_str().unwrap()], b"");
        for m in json_lines(&out) {
            assert!(m["error"].is_null(), "{}: {m}", path.display());
        }
    }
}
