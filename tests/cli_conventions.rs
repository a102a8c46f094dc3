//! What a new user and an operator meet first: how every command finds the register, that a
//! command which only reads creates none, the PIN key travelling with an export, times in the
//! institution's zone, and one meaning per exit code.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A sip2d command in a clean environment: no SIP2D_* variables, HOME and the XDG data
/// directory inside `home`, so the per-user default is the test's own.
fn cmd(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sip2d"));
    c.env_remove("SIP2D_DATA")
        .env_remove("SIP2D_CONFIG")
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("share"))
        .env("TZ", "America/Los_Angeles");
    c
}

fn run<S: AsRef<std::ffi::OsStr>>(home: &Path, args: &[S]) -> Output {
    cmd(home).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn ok<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(home: &Path, args: &[S]) -> String {
    let o = run(home, args);
    assert!(o.status.success(), "sip2d {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs a command that must fail with `code`; returns its standard error, which must be one
/// line naming each cause once.
fn fails<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(home: &Path, args: &[S], code: i32) -> String {
    let o = run(home, args);
    assert_eq!(o.status.code(), Some(code), "sip2d {args:?}: {}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    one_line_each_cause_once(&err);
    err
}

fn one_line_each_cause_once(err: &str) {
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    let parts: Vec<&str> = lines[0].split(": ").collect();
    for (i, a) in parts.iter().enumerate() {
        assert!(!parts[i + 1..].contains(a), "'{a}' said twice: {err}");
    }
}

fn d(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A register with one institution and Avery (card 21000000000001, PIN 4321).
fn register(home: &Path, data: &Path) {
    ok(home, &["--data", d(data), "init"]);
    ok(home, &["--data", d(data), "institution", "add", "--code", "MAIN", "--name", "Main Library"]);
    ok(
        home,
        &[
            "--data",
            d(data),
            "patron",
            "add",
            "--first-name",
            "Avery",
            "--last-name",
            "Reader",
            "--primary-id",
            "P1",
            "--barcode",
            "21000000000001",
            "--pin",
            "4321",
        ],
    );
}

#[test]
fn every_command_finds_the_register_flag_first_then_environment_then_configuration_then_default() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let (flag, env, conf) = (h.join("flag"), h.join("env"), h.join("conf"));
    for (dir, code) in [(&flag, "FLAG"), (&env, "ENV"), (&conf, "CONF")] {
        ok(h, &["--data", d(dir), "init"]);
        ok(h, &["--data", d(dir), "institution", "add", "--code", code, "--name", code]);
    }
    let config = h.join("sip2d.toml");
    std::fs::write(&config, format!("data = \"{}\"\n", conf.display())).unwrap();
    let listed = |c: &mut Command| {
        let o = c.args(["institution", "list"]).output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).split_whitespace().next().unwrap_or_default().to_string()
    };
    // The configuration's data, by --config or $SIP2D_CONFIG: what the server would open.
    assert_eq!(listed(cmd(h).args(["--config", d(&config)])), "CONF");
    assert_eq!(listed(cmd(h).env("SIP2D_CONFIG", &config)), "CONF");
    // $SIP2D_DATA before the configuration; --data before both.
    assert_eq!(listed(cmd(h).env("SIP2D_CONFIG", &config).env("SIP2D_DATA", &env)), "ENV");
    assert_eq!(listed(cmd(h).env("SIP2D_CONFIG", &config).env("SIP2D_DATA", &env).args(["--data", d(&flag)])), "FLAG");
    // Nothing named: the per-user directory, which `init` creates and then every command uses.
    let user = h.join("share").join("sip2d");
    assert!(!user.exists());
    let made = ok(h, &["init"]);
    assert!(made.contains(d(&user)) && made.contains("per-user default"), "{made}");
    ok(h, &["institution", "add", "--code", "HOME", "--name", "Home"]);
    assert_eq!(listed(&mut cmd(h)), "HOME");
}

#[test]
fn a_command_on_a_missing_register_says_so_and_creates_nothing() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let missing = h.join("nowhere");
    for args in [&["patron", "list"][..], &["institution", "list"], &["export"], &["item", "show", "1"]] {
        let err = fails(h, &[&["--data", d(&missing)][..], args].concat(), 4);
        assert!(err.contains(&format!("no register at {}", missing.display())), "{err}");
        assert!(err.contains(&format!("sip2d --data {} init", missing.display())), "how to make one: {err}");
        assert!(!missing.exists(), "{args:?} created {}", missing.display());
    }
    // The per-user default is not created behind the user's back either.
    let err = fails(h, &["patron", "list"], 4);
    assert!(err.contains("per-user default"), "it says where it looked and why: {err}");
    assert!(!h.join("share").exists());
    // A configuration naming a register that is not there: the message names the file.
    let config = h.join("sip2d.toml");
    std::fs::write(&config, format!("data = \"{}\"\n", missing.display())).unwrap();
    let err = fails(h, &["--config", d(&config), "patron", "list"], 4);
    assert!(err.contains(&format!("the `data` of {}", config.display())), "{err}");
    // A broken configuration is one clear line.
    std::fs::write(&config, "data = 12\n").unwrap();
    let err = fails(h, &["--config", d(&config), "patron", "list"], 1);
    assert!(err.contains(d(&config)), "{err}");

    // init makes an owner-only register once.
    let data = h.join("reg");
    ok(h, &["--data", d(&data), "init"]);
    assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(data.join("pin.key")).unwrap().permissions().mode() & 0o777, 0o600);
    let err = fails(h, &["--data", d(&data), "init"], 3);
    assert!(err.contains("exists already"), "{err}");
    // A register whose PIN key is gone is not opened with a new one (every PIN would break).
    std::fs::rename(data.join("pin.key"), h.join("saved.key")).unwrap();
    let err = fails(h, &["--data", d(&data), "patron", "list"], 3);
    assert!(err.contains("pin.key is missing") && err.contains("key import"), "{err}");
    assert!(!data.join("pin.key").exists());
    ok(h, &["--data", d(&data), "key", "import", d(&h.join("saved.key"))]);
    ok(h, &["--data", d(&data), "patron", "list"]);
}

#[test]
fn an_export_carries_its_pin_key_and_an_import_with_another_key_is_refused_unless_told() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let (a, b, c) = (h.join("a"), h.join("b"), h.join("c"));
    register(h, &a);
    let file = h.join("a.jsonl");
    ok(h, &["--data", d(&a), "export", "-o", d(&file)]);
    let export = std::fs::read_to_string(&file).unwrap();
    let first: serde_json::Value = serde_json::from_str(export.lines().next().unwrap()).unwrap();
    let fingerprint = ok(h, &["--data", d(&a), "key", "show"]).split_whitespace().next().unwrap().to_string();
    assert_eq!((first["type"].as_str(), first["pin_key"].as_str()), (Some("register"), Some(fingerprint.as_str())));
    assert!(
        !export.contains(
            &std::fs::read(a.join("pin.key")).unwrap().iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    );

    // Into a register with its own key: refused with the reason and the ways out, nothing written.
    ok(h, &["--data", d(&b), "init"]);
    let err = fails(h, &["--data", d(&b), "import", d(&file)], 3);
    assert!(err.contains(&fingerprint) && err.contains("--pin-key") && err.contains("--reset-pins"), "{err}");
    assert_eq!(ok(h, &["--data", d(&b), "institution", "list"]), "", "nothing was imported");
    let err = fails(h, &["--data", d(&b), "import", "--dry-run", d(&file)], 3);
    assert!(err.contains("--pin-key"), "a dry run says the same: {err}");

    // Deliberately without the PINs.
    let out = ok(h, &["--data", d(&b), "import", "--reset-pins", d(&file)]);
    assert!(out.contains(" 0 rejected"), "{out}");
    let shown: serde_json::Value =
        serde_json::from_str(&ok(h, &["--data", d(&b), "--json", "patron", "show", "P1"])).unwrap();
    assert_eq!(shown["pin_set"], false);

    // With the key: export it (owner-only, never over an existing file), import with it.
    let key = h.join("a.key");
    ok(h, &["--data", d(&a), "key", "export", "-o", d(&key)]);
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let err = fails(h, &["--data", d(&a), "key", "export", "-o", d(&key)], 3);
    assert!(err.contains("exists already"), "{err}");
    ok(h, &["--data", d(&c), "init"]);
    let dry = ok(h, &["--data", d(&c), "import", "--dry-run", "--pin-key", d(&key), d(&file)]);
    assert!(dry.contains("dry run"), "{dry}");
    assert_ne!(ok(h, &["--data", d(&c), "key", "show"]).split_whitespace().next(), Some(fingerprint.as_str()));
    let out = ok(h, &["--data", d(&c), "import", "--pin-key", d(&key), d(&file)]);
    assert!(out.contains(" 0 rejected"), "{out}");
    assert_eq!(ok(h, &["--data", d(&c), "key", "show"]).split_whitespace().next(), Some(fingerprint.as_str()));
    assert!(ok(h, &["--data", d(&c), "patron", "pin", "P1", "--check", "4321"]).contains("PIN accepted"));

    // A register holding PINs of its own keeps its key.
    ok(h, &["--data", d(&b), "patron", "pin", "P1", "--set", "1111"]);
    let err = fails(h, &["--data", d(&b), "key", "import", d(&key)], 3);
    assert!(err.contains("holds PINs"), "{err}");
    let err = fails(h, &["--data", d(&b), "import", "--pin-key", d(&key), d(&file)], 3);
    assert!(err.contains("holds PINs"), "{err}");
    assert!(ok(h, &["--data", d(&b), "patron", "pin", "P1", "--check", "1111"]).contains("PIN accepted"));

    // PIN hashes with no register line naming their key: only with the key given.
    let bare = h.join("bare.jsonl");
    std::fs::write(&bare, export.lines().skip(1).map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let err = fails(h, &["--data", d(&c), "import", d(&bare)], 3);
    assert!(err.contains("no register line"), "{err}");
    ok(h, &["--data", d(&c), "import", "--pin-key", d(&key), d(&bare)]);
}

#[test]
fn times_are_shown_in_the_institutions_zone_and_the_desk_lends_by_its_day() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let data = h.join("reg");
    let dir = d(&data).to_string();
    let at =
        |args: &[&str]| -> Vec<String> { ["--data", dir.as_str()].iter().chain(args).map(|s| s.to_string()).collect() };
    ok(h, &at(&["init"]));
    // Auckland is 20-21 hours ahead of the machine's zone (TZ=America/Los_Angeles).
    ok(h, &at(&["institution", "add", "--code", "AKL", "--name", "Auckland", "--timezone", "Pacific/Auckland"]));
    ok(h, &at(&["patron", "add", "--first-name", "Kiri", "--last-name", "Reader", "--primary-id", "K1"]));
    ok(h, &at(&["item", "add", "31000000000001", "--title", "Dune"]));
    let zone = jiff::tz::TimeZone::get("Pacific/Auckland").unwrap();
    let before = jiff::Timestamp::now().to_zoned(zone.clone()).date();
    let lent: serde_json::Value =
        serde_json::from_str(&ok(h, &at(&["--json", "loan", "checkout", "K1", "31000000000001"]))).unwrap();
    let after = jiff::Timestamp::now().to_zoned(zone.clone()).date();
    // JSON carries RFC 3339; the due date ends a day at the institution, 21 days after its today.
    let due: jiff::Timestamp = lent["due"].as_str().unwrap().parse().expect("RFC 3339");
    let due_there = due.to_zoned(zone.clone());
    assert_eq!((due_there.hour(), due_there.minute()), (23, 59), "{due_there}");
    let expect = |today: jiff::civil::Date| today.checked_add(jiff::Span::new().days(21)).unwrap();
    assert!(due_there.date() == expect(before) || due_there.date() == expect(after), "{due_there} vs {before}");
    // The text names the zone; --utc shows UTC.
    let shown = ok(h, &at(&["loan", "list"]));
    let zoned = due_there.strftime("%Y-%m-%d %H:%M %Z").to_string();
    assert!(shown.contains(&zoned), "{zoned} in {shown}");
    let utc = ok(h, &at(&["--utc", "loan", "list"]));
    assert!(utc.contains(&due.to_zoned(jiff::tz::TimeZone::UTC).strftime("%Y-%m-%d %H:%M UTC").to_string()), "{utc}");
    let card = ok(h, &at(&["patron", "show", "K1"]));
    assert!(card.contains(&zoned), "{card}");
    let history = ok(h, &at(&["patron", "history", "K1"]));
    assert!(history.contains(&format!(" {}", due_there.strftime("%Z"))), "{history}");
}

#[test]
fn each_exit_code_means_one_thing_across_commands() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let data = h.join("reg");
    register(h, &data);
    let dir = d(&data).to_string();
    let at =
        |args: &[&str]| -> Vec<String> { ["--data", dir.as_str()].iter().chain(args).map(|s| s.to_string()).collect() };
    // 2: usage.
    assert_eq!(run(h, &at(&["patron", "show"])).status.code(), Some(2));
    assert_eq!(run(h, &at(&["patron", "list", "--no-such-flag"])).status.code(), Some(2));
    assert_eq!(run(h, &["bench", "--connections", "many"]).status.code(), Some(2));
    fails(h, &at(&["patron", "pin", "P1"]), 2);
    // 3: refused by a rule.
    fails(h, &at(&["institution", "add", "--code", "MAIN", "--name", "Again"]), 3);
    ok(h, &at(&["patron", "fee", "add", "P1", "--type", "damage", "--amount", "5.00"]));
    let err = fails(h, &at(&["patron", "delete", "P1"]), 3);
    assert!(err.contains("balance"), "{err}");
    fails(h, &at(&["patron", "add", "--first-name", "A", "--last-name", "B", "--primary-id", "P2", "--pin", "12"]), 3);
    assert_eq!(run(h, &at(&["patron", "pin", "P1", "--check", "0000"])).status.code(), Some(3));
    let bad = h.join("bad.jsonl");
    std::fs::write(&bad, "{\"type\":\"item\"}\n").unwrap();
    assert_eq!(run(h, &at(&["import", d(&bad)])).status.code(), Some(3));
    // 4: not found.
    fails(h, &at(&["patron", "show", "NOBODY"]), 4);
    fails(h, &at(&["patron", "search", "Nobody"]), 4);
    fails(h, &at(&["item", "show", "39999"]), 4);
    fails(h, &at(&["patron", "fee", "pay", "99999", "--amount", "1.00"]), 4);
    fails(h, &at(&["account", "show", "nokiosk"]), 4);
    // 1: failed: nothing listens there, for the client, the checker and the bench alike.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    fails(h, &["client", "--port", &closed, "sc-status"], 1);
    let bench = run(h, &["bench", "--port", &closed, "--connections", "1", "--duration", "1s"]);
    assert_eq!(bench.status.code(), Some(1), "{}", text(&bench));
    assert!(text(&bench).contains("1 connections failed"), "{}", text(&bench));
    // 0, and the table is in --help.
    let help = ok(h, &["--help"]);
    for line in ["0  done", "1  failed", "2  usage", "3  refused", "4  not found"] {
        assert!(help.contains(line), "{line} missing from --help:\n{help}");
    }
}

fn owners(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut all = vec![(dir.to_path_buf(), std::fs::metadata(dir).unwrap().uid())];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            all.extend(owners(&p));
        } else {
            all.push((p.clone(), std::fs::symlink_metadata(&p).unwrap().uid()));
        }
    }
    all
}

/// As root: a register another user owns is used as that user, so it never gains root-owned
/// files; a user who may not read a register is told whose it is and how to run as them. As
/// another user: the same message for a register they may not enter.
#[test]
fn a_register_is_used_as_its_owner_and_a_user_without_access_is_told_whose_it_is() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    std::fs::set_permissions(h, std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
    if root {
        let nobody = 65534;
        let data = h.join("reg");
        std::fs::create_dir(&data).unwrap();
        std::os::unix::fs::chown(&data, Some(nobody), Some(nobody)).unwrap();
        register(h, &data);
        ok(h, &["--data", d(&data), "item", "add", "31000000000009", "--title", "Emma"]);
        let wrong: Vec<_> = owners(&data).into_iter().filter(|(_, uid)| *uid != nobody).collect();
        assert!(wrong.is_empty(), "files not owned by the register's owner: {wrong:?}");

        // Root's own register, and a user who may not enter it.
        let mine = h.join("mine");
        register(h, &mine);
        let o = cmd(h).uid(nobody).gid(nobody).args(["--data", d(&mine), "patron", "list"]).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        one_line_each_cause_once(&err);
        assert!(err.contains("ermission denied") && err.contains("belongs to root"), "{err}");
        assert!(err.contains(&format!("sudo -u root sip2d --data {} patron list", mine.display())), "{err}");
    } else {
        let data = h.join("reg");
        register(h, &data);
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o000)).unwrap();
        let o = run(h, &["--data", d(&data), "patron", "list"]);
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("ermission denied") && err.contains("belongs to"), "{err}");
    }
}

#[test]
fn completions_man_pages_and_the_version_come_from_the_same_commands() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let bash = ok(h, &["completions", "bash"]);
    assert!(bash.contains("_sip2d") && bash.contains("institution") && bash.contains("--pin-key"), "bash");
    for shell in ["zsh", "fish"] {
        assert!(ok(h, &["completions", shell]).contains("import"), "{shell}");
    }
    assert_eq!(run(h, &["completions", "tcsh-or-so"]).status.code(), Some(2));
    let out = h.join("man");
    ok(h, &["man", "--out", d(&out)]);
    let main = std::fs::read_to_string(out.join("sip2d.1")).unwrap();
    assert!(main.starts_with(".ie") || main.contains(".TH sip2d 1"), "{}", &main[..200.min(main.len())]);
    for part in [".SH \"EXIT STATUS\"", "refused by a rule", ".SH FILES", "/etc/sip2d/sip2d.toml", "SIP2D_DATA"] {
        assert!(main.contains(part), "{part} missing from sip2d.1");
    }
    for page in ["sip2d-serve.1", "sip2d-init.1", "sip2d-patron-fee-pay.1", "sip2d-key-export.1"] {
        assert!(out.join(page).is_file(), "{page}");
    }
    let version = ok(h, &["--version"]);
    let version = version.trim();
    let inner =
        version.strip_prefix(&format!("sip2d {} (", env!("CARGO_PKG_VERSION"))).and_then(|v| v.strip_suffix(')'));
    let commit = inner.unwrap_or_else(|| panic!("{version}"));
    let (hash, date) = commit.split_once(' ').unwrap();
    let hash = hash.trim_end_matches("-modified");
    assert!(
        commit == "commit unknown"
            || (hash.len() == 10
                && hash.bytes().all(|b| b.is_ascii_hexdigit())
                && date.parse::<jiff::civil::Date>().is_ok()),
        "{version}"
    );
}
