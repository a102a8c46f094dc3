//! A staff session through the `sip2d` binary, as library staff run it.

use std::path::Path;
use std::process::{Command, Output};

fn sip2d(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sip2d"))
        .arg("--data")
        .arg(data)
        .args(["--as", "desk-1"])
        .args(args)
        .output()
        .expect("run sip2d")
}

fn ok(data: &Path, args: &[&str]) -> String {
    let out = sip2d(data, args);
    assert!(
        out.status.success(),
        "sip2d {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn refused(data: &Path, args: &[&str]) -> String {
    let out = sip2d(data, args);
    assert!(!out.status.success(), "sip2d {args:?} should have been refused");
    String::from_utf8(out.stderr).unwrap()
}

fn with_stdin(data: &Path, args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sip2d"))
        .arg("--data")
        .arg(data)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run sip2d");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn json(data: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(ok(data, &all).lines().next().unwrap()).unwrap()
}

/// Every string and number in a JSON value, as text.
fn strings(value: &serde_json::Value) -> Vec<String> {
    match value {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Number(n) => vec![n.to_string()],
        serde_json::Value::Array(items) => items.iter().flat_map(strings).collect(),
        serde_json::Value::Object(fields) => fields.values().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn a_staff_session() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    ok(d, &["init"]);
    assert!(refused(d, &["patron", "show", "P1"]).contains("no institution yet"));
    ok(d, &["institution", "add", "--code", "MAIN", "--name", "Main Library"]);
    ok(d, &["institution", "add", "--code", "BRANCH2", "--name", "Branch 2"]);
    assert!(refused(d, &["institution", "add", "--code", "MAIN", "--name", "again"]).contains("exists already"));

    // Register without a PIN.
    let add = [
        "patron",
        "add",
        "-i",
        "MAIN",
        "--first-name",
        "Avery",
        "--last-name",
        "Reader",
        "--primary-id",
        "P1",
        "--barcode",
        "21234000012345",
        "--birth-date",
        "1990-05-17",
        "--email",
        "avery@example.org",
    ];
    let out = ok(d, &add);
    assert!(out.contains("Reader, Avery"), "{out}");
    let card = json(d, &["patron", "show", "-i", "MAIN", "21234000012345"]);
    let id = card["id"].as_u64().unwrap();
    assert_eq!(card["pin_set"], false);

    // The same person again: a warning, nothing added, then --force.
    let mut twin = add.to_vec();
    twin[9] = "P2";
    twin[11] = "B2";
    twin[15] = "other@example.org";
    let out = sip2d(d, &twin);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("same names and birth date"));
    assert!(refused(d, &["patron", "show", "-i", "MAIN", "P2"]).contains("no patron"));
    twin.push("--force");
    ok(d, &twin);
    // Unique values are refused with the owner named.
    let mut clash = twin.clone();
    clash[9] = "P3";
    clash[11] = "21234000012345";
    assert!(refused(d, &clash).contains(&format!("already used by patron {id}")));

    // A PIN given at registration is checked first: a bad one adds nothing. A generated one is
    // shown once and works at once.
    let mut third = add.to_vec();
    (third[5], third[9], third[11], third[15]) = ("Casey", "P4", "B4", "casey@example.org");
    let bad = [&third[..], &["--pin", "12"]].concat();
    assert!(refused(d, &bad).contains("four digits"));
    assert!(refused(d, &["patron", "show", "-i", "MAIN", "P4"]).contains("no patron"), "nothing was added");
    let out = ok(d, &[&["--json"][..], &third, &["--generate-pin"]].concat());
    let shown: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let pin = shown["generated_pin"].as_str().unwrap().to_string();
    assert_eq!(json(d, &["patron", "show", "-i", "MAIN", "P4"])["pin_set"], true);
    assert_eq!(sip2d(d, &["patron", "pin", "-i", "MAIN", "P4", "--check", &pin]).status.code(), Some(0));

    // PIN: set, five wrong tries lock, staff unlock.
    assert!(refused(d, &["patron", "pin", "-i", "MAIN", "P1", "--set", "12a4"]).contains("four digits"));
    ok(d, &["patron", "pin", "-i", "MAIN", "P1", "--set", "4321"]);
    // A wrong PIN and a locked card are refusals (exit 3); the words say which.
    let check = |pin: &str| {
        let o = sip2d(d, &["patron", "pin", "-i", "MAIN", "P1", "--check", pin]);
        (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned())
    };
    for _ in 0..4 {
        let (code, said) = check("0000");
        assert!(code == Some(3) && said.contains("wrong PIN"), "{code:?} {said}");
    }
    for pin in ["0000", "4321"] {
        let (code, said) = check(pin);
        assert!(code == Some(3) && said.contains("locked"), "{code:?} {said}");
    }
    assert_eq!(json(d, &["patron", "show", "-i", "MAIN", "P1"])["locked"], true);
    ok(d, &["patron", "unlock", "-i", "MAIN", "P1"]);
    assert_eq!(sip2d(d, &["patron", "pin", "-i", "MAIN", "P1", "--check", "4321"]).status.code(), Some(0));

    // Block and unblock.
    ok(d, &["patron", "block", "-i", "MAIN", "P1", "--type", "general", "--note", "see staff"]);
    assert_eq!(json(d, &["patron", "show", "-i", "MAIN", "P1"])["blocks"][0]["type"], "general");
    ok(d, &["patron", "unblock", "-i", "MAIN", "P1"]);

    // Fees: dispute leaves the balance, waive is final.
    let fee = json(d, &["patron", "fee", "add", "-i", "MAIN", "P1", "--type", "overdue", "--amount", "2.50"]);
    let fee_id = fee["id"].as_u64().unwrap().to_string();
    assert_eq!(json(d, &["patron", "show", "-i", "MAIN", "P1"])["balance"], "2.50");
    ok(d, &["patron", "fee", "dispute", &fee_id]);
    assert_eq!(json(d, &["patron", "show", "-i", "MAIN", "P1"])["balance"], "0.00");
    ok(d, &["patron", "fee", "restore", &fee_id]);
    assert!(refused(d, &["patron", "delete", "-i", "MAIN", "P1"]).contains("balance of 2.50 is due"));
    ok(d, &["patron", "fee", "waive", &fee_id, "--reason", "first time"]);
    assert!(refused(d, &["patron", "fee", "restore", &fee_id]).contains("only a disputed fee"));

    // Transfer, accepted at the other library.
    ok(d, &["patron", "transfer", "request", "-i", "MAIN", "P1", "--to", "BRANCH2"]);
    assert!(ok(d, &["patron", "transfer", "list", "--to", "BRANCH2"]).contains("Reader, Avery"));
    ok(d, &["patron", "transfer", "accept", &format!("#{id}")]);
    assert_eq!(json(d, &["patron", "show", &format!("#{id}")])["institution"], "BRANCH2");

    // Loans: the item out blocks deletion, with the reason given.
    let who = format!("#{id}");
    ok(d, &["item", "add", "-i", "BRANCH2", "30001", "--title", "Dune", "--author", "Herbert"]);
    ok(d, &["loan", "checkout", &who, "30001"]);
    assert_eq!(json(d, &["item", "show", "30001"])["status"], "on-loan");
    assert!(ok(d, &["loan", "list", "--patron", &who]).contains("30001"));
    assert!(refused(d, &["patron", "delete", &who]).contains("1 item is on loan"));
    ok(d, &["loan", "return", "30001"]);

    // Edit, note, search, proxy: each checked and in the history.
    assert!(refused(d, &["patron", "edit", &who, "--set", "email=nope"]).contains("not an address"));
    ok(d, &["patron", "edit", &who, "--set", "phone=+46701234567", "--set", "group=adult"]);
    ok(d, &["patron", "note", "add", &who, "Prefers large print", "--public"]);
    let found = ok(d, &["patron", "search", "-i", "BRANCH2", "reader, av"]);
    assert!(found.contains(&format!("#{id} ")), "{found}");
    ok(d, &["patron", "proxy", "add", "-i", "MAIN", "P2", "--for", &who]);
    ok(d, &["patron", "deactivate", &who]);
    assert_eq!(json(d, &["patron", "show", &who])["may_borrow"], false);
    ok(d, &["patron", "activate", &who]);

    // A self-check account; its password comes on standard input and is never shown.
    let out =
        with_stdin(d, &["account", "add", "kiosk-1", "-i", "BRANCH2", "--location", "ENTRANCE"], "s3cret-kiosk\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!ok(d, &["account", "list"]).contains("s3cret"));

    // Export, import into an empty store: the same register. Importing again changes nothing.
    let export = ok(d, &["export"]);
    assert!(export.lines().count() >= 6, "{export}");
    // Matched as whole field values: a nanosecond timestamp or a hash may hold "4321" by chance.
    let values: Vec<String> = export.lines().flat_map(|l| strings(&serde_json::from_str(l).unwrap())).collect();
    assert!(values.iter().all(|v| v != "4321" && !v.contains("s3cret")), "no secrets in clear");
    assert!(export.contains("\"pin_hash\":\""), "the PIN is exported as its hash");
    let file = dir.path().join("register.jsonl");
    std::fs::write(&file, &export).unwrap();
    let copy = tempfile::tempdir().unwrap();
    ok(copy.path(), &["init"]);
    let key = d.join("pin.key");
    let imported = ok(copy.path(), &["import", "--pin-key", key.to_str().unwrap(), file.to_str().unwrap()]);
    assert!(imported.contains(" 0 rejected"), "{imported}");
    assert_eq!(ok(copy.path(), &["export"]), export);
    let again = ok(copy.path(), &["import", file.to_str().unwrap()]);
    assert!(again.contains(" 0 created, 0 updated"), "{again}");
    assert_eq!(sip2d(copy.path(), &["patron", "pin", &who, "--check", "4321"]).status.code(), Some(0));

    // A bad line is reported with its number; --dry-run writes nothing.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"type\":\"item\",\"barcode\":\"30002\",\"institution\":\"MAIN\",\"title\":\"Emma\"}\n{\"type\":\"item\",\"barcode\":\"30003\"}\n",
    )
    .unwrap();
    let out = sip2d(d, &["import", "--dry-run", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "rejected lines are refusals");
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2: missing field"));
    assert!(refused(d, &["item", "show", "30002"]).contains("no item"));

    // Delete now allowed; restore brings the patron back.
    ok(d, &["patron", "delete", &format!("#{id}")]);
    assert!(json(d, &["patron", "show", &format!("#{id}")])["deleted"].is_string());
    ok(d, &["patron", "restore", &format!("#{id}")]);

    // The history names the desk and never the PIN.
    let history = ok(d, &["patron", "history", &format!("#{id}")]);
    for action in [
        "register",
        "pin",
        "locked",
        "unlock",
        "block",
        "fee-waive",
        "transfer-accept",
        "checkout",
        "edit",
        "note-add",
        "deactivate",
        "delete",
        "restore",
    ] {
        assert!(history.contains(action), "{action} missing:\n{history}");
    }
    assert!(history.contains("desk-1"));
    assert!(!history.contains("4321"));

    // Purge: the deleted patron goes for good.
    ok(d, &["patron", "delete", &who]);
    assert!(ok(d, &["purge", "--dry-run"]).contains("would remove 1 patrons"));
    assert!(ok(d, &["purge"]).contains(&format!("removed #{id}")));
    assert!(refused(d, &["patron", "show", &who]).contains("no patron"));
}

/// The details tabs from the command line, with no server: contacts (one made preferred),
/// a statistical category, the picture set from a file and written back, each in the card.
#[test]
fn contacts_statistics_and_the_picture_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["init"]);
    ok(d, &["institution", "add", "--code", "MAIN", "--name", "Main Library"]);
    let add = ["patron", "add", "-i", "MAIN", "--first-name", "Avery", "--last-name", "Reader", "--primary-id", "P1"];
    ok(d, &add);
    let who = ["-i", "MAIN", "P1"];
    let with = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        // After the command's words (`patron contact add`, `patron history`).
        let words = if args.get(1) == Some(&"history") { 2 } else { 3 };
        all.splice(words..words, who.iter().map(|s| s.to_string()));
        all
    };
    let run = |args: &[&str]| {
        let all = with(args);
        ok(d, &all.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let out = run(&["patron", "contact", "add", "email", "avery@work.example", "--use", "work"]);
    assert!(out.contains("contact 1     email avery@work.example (work)"), "{out}");
    let out = run(&["patron", "contact", "add", "address", "Storgatan 1, Lund", "--postal-code", "222 22"]);
    assert!(out.contains("address Storgatan 1, Lund, 222 22 (other)"), "{out}");
    let out = run(&["patron", "contact", "prefer", "1"]);
    assert!(out.contains("e-mail        avery@work.example"), "{out}");
    let all = with(&["patron", "contact", "add", "fax", "1"]);
    let err = refused(d, &all.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.contains("not email, phone or address"), "{err}");

    let out = run(&["patron", "statistic", "add", "distance-student", "--note", "2026"]);
    assert!(out.contains("statistic 1   distance-student: 2026"), "{out}");
    let all = with(&["patron", "statistic", "add", "two words"]);
    assert!(refused(d, &all.iter().map(String::as_str).collect::<Vec<_>>()).contains("must be 1-64 letters"));

    let gif = d.join("me.gif");
    std::fs::write(&gif, b"GIF89a\x01\x00\x01\x00").unwrap();
    let out = run(&["patron", "picture", "set", gif.to_str().unwrap()]);
    assert!(out.contains("picture       image/gif, 10 bytes"), "{out}");
    let page = d.join("page.html");
    std::fs::write(&page, "<html></html>").unwrap();
    let all = with(&["patron", "picture", "set", page.to_str().unwrap()]);
    assert!(refused(d, &all.iter().map(String::as_str).collect::<Vec<_>>()).contains("PNG, JPEG, GIF or WebP"));
    let back = d.join("back.gif");
    run(&["patron", "picture", "get", "-o", back.to_str().unwrap()]);
    assert_eq!(std::fs::read(&back).unwrap(), std::fs::read(&gif).unwrap());
    let out = run(&["patron", "picture", "remove"]);
    assert!(!out.contains("picture "), "{out}");
    let history = run(&["patron", "history"]);
    for action in ["contact-add", "contact-prefer", "statistic-add", "picture-set", "picture-remove"] {
        assert!(history.contains(action), "{action}: {history}");
    }
}
