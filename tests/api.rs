//! Issue 16, first step: the resource API for patrons over the admin listener. Search, read
//! with an ETag, edit with If-Match; two staff members saving the same patron at once: one
//! wins, the other gets 412 and loses nothing it did not mean to.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use common::spawn_sip2d;

use common::http as request;

#[test]
fn patrons_as_resources_with_etags_and_no_lost_updates() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let d = data.to_str().unwrap();
    let args = ["--data", d, "serve", "--demo", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
    let (mut child, mut stdout, admin) = spawn_sip2d(&args, "warn", Stdio::null(), "sip2d admin API on http://");
    let sip = common::address_after(&mut stdout, "listening on ");
    std::thread::spawn(move || {
        use std::io::BufRead;
        for _ in stdout.lines() {}
    });
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap().trim().to_string();
    let t = Some(token.as_str());

    // Without the token nothing is shown.
    assert_eq!(request(admin, "GET", "/api/v1/patrons?institution=MAIN&q=Reader", None, "", "").status, 401);

    // Search by barcode: Avery, by name prefix: Avery too.
    let found = request(admin, "GET", "/api/v1/patrons?institution=MAIN&q=21000000000001", t, "", "");
    assert_eq!(found.status, 200, "{}", found.body);
    assert_eq!(found.body["total"], 1, "{}", found.body);
    let id = found.body["patrons"][0]["id"].as_u64().unwrap();
    let by_name = request(admin, "GET", "/api/v1/patrons?institution=MAIN&q=Reader&per_page=1", t, "", "");
    assert!(by_name.body["patrons"].as_array().unwrap().iter().any(|p| p["id"] == id), "{}", by_name.body);
    for bad in [
        "/api/v1/patrons",
        "/api/v1/patrons?institution=MAIN&q=x&per_page=1000",
        "/api/v1/patrons?institution=MAIN&q=x&page=0",
    ] {
        let r = request(admin, "GET", bad, t, "", "");
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert!(r.body["error"].is_string(), "{bad}: a reason");
    }

    // Read: the record with its version, never the PIN hash.
    let path = format!("/api/v1/patrons/{id}");
    let got = request(admin, "GET", &path, t, "", "");
    assert_eq!(got.status, 200);
    assert!(got.body["primary_id"].as_str().is_some(), "{}", got.body);
    assert!(got.body.get("pin").is_none() && got.body["has_pin"] == true, "{}", got.body);
    let etag = got.etag.clone().expect("an ETag");
    assert_eq!(request(admin, "GET", "/api/v1/patrons/999999", t, "", "").status, 404);
    assert_eq!(request(admin, "GET", "/api/v1/patrons/x'", t, "", "").status, 404);

    // Edit: If-Match required; with it, the change and a new version.
    let phone = r#"{"phone":"+46 8 555 01 01"}"#;
    let r = request(admin, "PATCH", &path, t, "", phone);
    assert_eq!(r.status, 428, "{}", r.body);
    let r = request(admin, "PATCH", &path, t, &format!("If-Match: {etag}\r\n"), phone);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["phone"], "+46 8 555 01 01");
    let newer = r.etag.clone().unwrap();
    assert_ne!(newer, etag);
    // The old version is refused, and nothing of it is written.
    let r = request(admin, "PATCH", &path, t, &format!("If-Match: {etag}\r\n"), r#"{"phone":"0"}"#);
    assert_eq!(r.status, 412, "{}", r.body);
    assert!(r.body["error"].as_str().unwrap().contains("changed by someone else"), "{}", r.body);
    assert_eq!(request(admin, "GET", &path, t, "", "").body["phone"], "+46 8 555 01 01");
    // A field that cannot be edited, and a value that is not text: 4xx with the reason.
    let r = request(admin, "PATCH", &path, t, &format!("If-Match: {newer}\r\n"), r#"{"pin_hash":"x"}"#);
    assert_eq!(r.status, 422, "{}", r.body);
    let r = request(admin, "PATCH", &path, t, &format!("If-Match: {newer}\r\n"), r#"{"phone":[1]}"#);
    assert_eq!(r.status, 400, "{}", r.body);
    let r = request(admin, "PATCH", &path, t, &format!("If-Match: {newer}\r\n"), "not json");
    assert_eq!(r.status, 400, "{}", r.body);

    // Two staff members open the same patron and save at once, 20 times: each time exactly
    // one save is taken, the other gets 412, and the record holds the winner's value.
    for round in 0..20 {
        let current = request(admin, "GET", &path, t, "", "");
        let tag = current.etag.unwrap();
        let saves: Vec<_> = ["A", "B"]
            .into_iter()
            .map(|who| {
                let (tag, token) = (tag.clone(), token.clone());
                let path = path.clone();
                std::thread::spawn(move || {
                    let body = format!(r#"{{"email":"{who}{round}@example.org"}}"#);
                    let r = request(admin, "PATCH", &path, Some(&token), &format!("If-Match: {tag}\r\n"), &body);
                    (who, r.status)
                })
            })
            .collect();
        let results: Vec<(&str, u16)> = saves.into_iter().map(|h| h.join().unwrap()).collect();
        let won: Vec<_> = results.iter().filter(|(_, s)| *s == 200).collect();
        let lost: Vec<_> = results.iter().filter(|(_, s)| *s == 412).collect();
        assert_eq!((won.len(), lost.len()), (1, 1), "round {round}: {results:?}");
        let email = request(admin, "GET", &path, t, "", "").body["email"].clone();
        assert_eq!(email, format!("{}{round}@example.org", won[0].0), "round {round}");
    }

    sub_resources(admin, t, id);

    // A block placed through the API is what the next kiosk's 23 shows.
    let mut k = common::Kiosk::connect(sip);
    assert_eq!(k.ask("9300CNkiosk1|COkiosk1-secret|"), "941");
    let status = "2300120261122    120000AOMAIN|AA21000000000001|AC|AD1234|";
    assert!(k.ask(status).starts_with("24 "), "no block yet");
    let r = request(
        admin,
        "POST",
        &format!("/api/v1/patrons/{id}/blocks"),
        t,
        "",
        r#"{"type":"lost-card","reason":"Reported lost at the desk"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = k.ask(status);
    assert!(seen.starts_with("24YYYY"), "the kiosk sees the block: {seen}");

    // The live view: this kiosk, its account and last requests; never its PIN, password,
    // the patron's card or the item.
    assert!(k.ask("1720261122    120000AOMAIN|AB31000000000002|AC|").starts_with("18"));
    let live = request(admin, "GET", "/api/v1/terminals", t, "", "");
    assert_eq!(live.status, 200, "{}", live.body);
    let mine = live.body["terminals"].as_array().unwrap().iter().find(|v| v["account"] == "kiosk1").cloned();
    let mine = mine.unwrap_or_else(|| panic!("kiosk1 is connected: {}", live.body));
    let codes: Vec<_> =
        mine["last"].as_array().unwrap().iter().map(|r| r["code"].as_str().unwrap().to_string()).collect();
    assert_eq!(codes, ["93", "23", "23", "17"], "{mine}");
    assert_eq!(mine["requests"], 4);
    assert!(mine["last"][1]["outcome"].is_string() && mine["last"][1]["latency_us"].is_u64(), "{mine}");
    let text = live.body.to_string();
    for secret in ["AD1234", "kiosk1-secret", "21000000000001", "31000000000002"] {
        assert!(!text.contains(secret), "{secret} in the live view: {text}");
    }
    assert_eq!(request(admin, "GET", "/api/v1/terminals", None, "", "").status, 401);
    drop(k);

    bank_and_reads(admin, t, id);
    proxies_and_moves(admin, t, id);
    terminal_accounts(admin, sip, t);
    loans_and_holds(admin, sip, t);

    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert!(child.wait().unwrap().success());
}

/// Blocks, notes, fees and the history, on patron `id`.
fn sub_resources(admin: SocketAddr, t: Option<&str>, id: u64) {
    let blocks = format!("/api/v1/patrons/{id}/blocks");
    let r = request(admin, "POST", &blocks, t, "", r#"{"type":"no-such-type","reason":"x"}"#);
    assert_eq!(r.status, 422, "an unknown block type: {}", r.body);
    assert!(r.body["error"].as_str().unwrap().contains("general"), "the known types are named: {}", r.body);
    let r = request(admin, "POST", &blocks, t, "", r#"{"type":"general","reason":"Card reported stolen"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    let active: Vec<_> = r.body["blocks"].as_array().unwrap().iter().filter(|b| b["active"] == true).collect();
    assert_eq!(active.len(), 1, "{}", r.body);
    assert_eq!(active[0]["note"], "Card reported stolen");
    assert!(active[0]["by"].as_str().unwrap().contains("resource API"), "audited with who: {}", r.body);
    let r = request(admin, "POST", &blocks, t, "", r#"{"type":"general","colour":"red"}"#);
    assert_eq!(r.status, 400, "an unknown field: {}", r.body);

    let notes = format!("/api/v1/patrons/{id}/notes");
    let r = request(admin, "POST", &notes, t, "", r#"{"text":"Prefers large print","public":false}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    let note = r.body["notes"].as_array().unwrap().iter().find(|n| n["text"] == "Prefers large print").unwrap()["id"]
        .as_u64()
        .unwrap();
    assert_eq!(request(admin, "DELETE", &format!("{notes}/{note}"), t, "", "").status, 200);
    assert_eq!(request(admin, "DELETE", &format!("{notes}/{note}"), t, "", "").status, 404, "already gone");

    let fees = request(admin, "GET", &format!("/api/v1/patrons/{id}/fees"), t, "", "");
    assert_eq!(fees.status, 200, "{}", fees.body);
    assert!(fees.body["balance"].is_string(), "{}", fees.body);
    let r = request(admin, "POST", "/api/v1/fees/999999/pay", t, "", r#"{"amount":"1.00"}"#);
    assert!(r.status == 404 || r.status == 422, "{} {}", r.status, r.body);
    let r = request(admin, "POST", "/api/v1/fees/1/explode", t, "", "{}");
    assert_eq!(r.status, 404, "{}", r.body);

    let history = request(admin, "GET", &format!("/api/v1/patrons/{id}/history"), t, "", "");
    let actions: Vec<_> = history.body["history"].as_array().unwrap().iter().map(|e| e["action"].clone()).collect();
    for want in ["edit", "block", "note"] {
        assert!(actions.iter().any(|a| a.as_str().is_some_and(|a| a.starts_with(want))), "{want} in {actions:?}");
    }
    assert_eq!(request(admin, "DELETE", &format!("{blocks}/general"), t, "", "").status, 200);
}

/// Deletion (refused while a loan or balance remains), the bank of deleted users and restore;
/// institutions, terminal accounts (without password hashes) and items.
fn bank_and_reads(admin: SocketAddr, t: Option<&str>, avery: u64) {
    // Avery has a loan: refused, and still there.
    let r = request(admin, "DELETE", &format!("/api/v1/patrons/{avery}"), t, "", "");
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(
        request(admin, "GET", &format!("/api/v1/patrons/{avery}"), t, "", "").body["deleted"],
        serde_json::Value::Null
    );
    // A patron with fines: refused too (the refusal writes them a notice of what is owed, and
    // the answer still says refused), and still there.
    let fines = patron_id(admin, t, "MAIN", "21000000000003");
    let r = request(admin, "DELETE", &format!("/api/v1/patrons/{fines}"), t, "", "");
    assert_eq!(r.status, 422, "{}", r.raw);
    assert!(r.body["error"].as_str().unwrap_or_default().contains("balance"), "{}", r.raw);
    let still = request(admin, "GET", &format!("/api/v1/patrons/{fines}"), t, "", "");
    assert_eq!(still.body["deleted"], serde_json::Value::Null, "{}", still.raw);
    // The branch patron owes nothing and has no loan: deleted, in the bank, restored.
    let found = request(admin, "GET", "/api/v1/patrons?institution=BRANCH&q=22000000000001", t, "", "");
    let branch = found.body["patrons"][0]["id"].as_u64().unwrap_or_else(|| panic!("{}", found.body));
    let r = request(admin, "DELETE", &format!("/api/v1/patrons/{branch}"), t, "", "");
    assert_eq!(r.status, 200, "{}", r.body);
    let bank = request(admin, "GET", "/api/v1/deleted-patrons?institution=BRANCH", t, "", "");
    assert!(bank.body["patrons"].as_array().unwrap().iter().any(|p| p["id"] == branch), "{}", bank.body);
    assert!(!bank.body.to_string().contains("pin_hash"), "{}", bank.body);
    assert_eq!(request(admin, "GET", "/api/v1/deleted-patrons", t, "", "").status, 400);
    let r = request(admin, "POST", &format!("/api/v1/patrons/{branch}/restore"), t, "", "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["deleted"], serde_json::Value::Null);

    let inst = request(admin, "GET", "/api/v1/institutions", t, "", "");
    assert!(inst.body["institutions"].as_array().unwrap().iter().any(|i| i["code"] == "MAIN"), "{}", inst.body);
    let accounts = request(admin, "GET", "/api/v1/accounts", t, "", "");
    assert!(accounts.body["accounts"].as_array().unwrap().iter().any(|a| a["login"] == "kiosk1"), "{}", accounts.body);
    let text = accounts.body.to_string();
    assert!(!text.contains("argon2") && !text.contains("password"), "{text}");
    let item = request(admin, "GET", "/api/v1/items/31000000000002", t, "", "");
    assert_eq!(item.status, 200, "{}", item.body);
    assert_eq!(item.body["item"]["title"], "Dune", "{}", item.body);
    assert_eq!(request(admin, "GET", "/api/v1/items/nope", t, "", "").status, 404);
}

/// The patron id of `card` at `institution`.
fn patron_id(admin: SocketAddr, t: Option<&str>, institution: &str, card: &str) -> u64 {
    let found = request(admin, "GET", &format!("/api/v1/patrons?institution={institution}&q={card}"), t, "", "");
    found.body["patrons"][0]["id"].as_u64().unwrap_or_else(|| panic!("{card}: {}", found.body))
}

/// Proxies granted and revoked; a move between libraries asked for, and two staff members
/// accepting it at the same moment: it happens once, the other is told nothing waits.
fn proxies_and_moves(admin: SocketAddr, t: Option<&str>, avery: u64) {
    let fines = patron_id(admin, t, "MAIN", "21000000000003");
    let path = format!("/api/v1/patrons/{fines}/proxy-for/{avery}");
    let r = request(admin, "PUT", &path, t, "", "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["proxy_for"], serde_json::json!([avery]), "{}", r.body);
    assert_eq!(request(admin, "PUT", &path, t, "", "").status, 422, "already a proxy");
    let own = format!("/api/v1/patrons/{fines}/proxy-for/{fines}");
    assert_eq!(request(admin, "PUT", &own, t, "", "").status, 422, "their own proxy");
    assert_eq!(request(admin, "PUT", &format!("/api/v1/patrons/{fines}/proxy-for/987654"), t, "", "").status, 404);
    assert_eq!(request(admin, "PUT", &path, None, "", "").status, 401);
    let r = request(admin, "DELETE", &path, t, "", "");
    assert_eq!((r.status, r.body["proxy_for"].clone()), (200, serde_json::json!([])), "{}", r.body);
    assert_eq!(request(admin, "DELETE", &path, t, "", "").status, 422, "no longer a proxy");

    let inactive = patron_id(admin, t, "MAIN", "21000000000006");
    let transfer = format!("/api/v1/patrons/{inactive}/transfer");
    assert_eq!(request(admin, "POST", &transfer, t, "", r#"{"to":"MAIN"}"#).status, 422, "already there");
    assert_eq!(request(admin, "POST", &transfer, t, "", r#"{"to":"NOWHERE"}"#).status, 404);
    let r = request(admin, "POST", &transfer, t, "", r#"{"to":"BRANCH"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["transfer"]["to"], "BRANCH", "{}", r.body);
    assert_eq!(request(admin, "POST", &transfer, t, "", r#"{"to":"BRANCH"}"#).status, 422, "one move at a time");
    assert_eq!(request(admin, "POST", &format!("{transfer}/maybe"), t, "", "").status, 404);
    let accept = format!("{transfer}/accept");
    let token = t.map(str::to_string);
    // Back and forth, each move accepted by two staff members at once.
    for round in 0..6 {
        let to = if round % 2 == 0 { "BRANCH" } else { "MAIN" };
        if round > 0 {
            let r = request(admin, "POST", &transfer, t, "", &format!(r#"{{"to":"{to}"}}"#));
            assert_eq!(r.status, 200, "{}", r.body);
        }
        let answers: Vec<u16> = std::thread::scope(|s| {
            let both: Vec<_> = (0..2)
                .map(|_| {
                    let (accept, token) = (accept.clone(), token.clone());
                    s.spawn(move || request(admin, "POST", &accept, token.as_deref(), "", "").status)
                })
                .collect();
            both.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut sorted = answers.clone();
        sorted.sort();
        assert_eq!(sorted, [200, 422], "one accept moves the patron, the other finds nothing waiting: {answers:?}");
        let moved = request(admin, "GET", &format!("/api/v1/patrons/{inactive}"), t, "", "");
        assert_eq!(moved.body["institution"], to, "{}", moved.body);
        assert_eq!(moved.body["transfer"], serde_json::Value::Null, "{}", moved.body);
    }
    let history = request(admin, "GET", &format!("/api/v1/patrons/{inactive}/history"), t, "", "");
    let moves = history.body["history"].as_array().unwrap().iter().filter(|e| e["action"] == "transfer-accept").count();
    assert_eq!(moves, 6, "each move once: {}", history.body);
}

/// Terminal accounts made, changed and removed through the API, as a kiosk on the SIP port
/// then finds them; two staff members adding the same login at once: one gets it.
fn terminal_accounts(admin: SocketAddr, sip: SocketAddr, t: Option<&str>) {
    let login = |password: &str| {
        let mut k = common::Kiosk::connect(sip);
        k.ask(&format!("9300CNkiosk9|CO{password}|"))
    };
    let add = r#"{"login":"kiosk9","password":"first-secret","institution":"MAIN","location":"Floor 2"}"#;
    let r = request(admin, "POST", "/api/v1/accounts", t, "", add);
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.body["login"], "kiosk9");
    assert!(!r.raw.contains("argon2") && !r.raw.contains("first-secret"), "no password or hash shown: {}", r.raw);
    assert_eq!(login("first-secret"), "941");
    assert_eq!(request(admin, "POST", "/api/v1/accounts", t, "", add).status, 409, "the login is taken");
    let short = r#"{"login":"kiosk8","password":"short","institution":"MAIN"}"#;
    assert_eq!(request(admin, "POST", "/api/v1/accounts", t, "", short).status, 422);
    let nowhere = r#"{"login":"kiosk8","password":"long-enough","institution":"NOWHERE"}"#;
    assert_eq!(request(admin, "POST", "/api/v1/accounts", t, "", nowhere).status, 404);
    assert_eq!(request(admin, "POST", "/api/v1/accounts", None, "", add).status, 401);

    let r = request(admin, "PUT", "/api/v1/accounts/kiosk9/password", t, "", r#"{"password":"second-secret"}"#);
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(login("first-secret"), "940", "the old password no longer logs in");
    assert_eq!(login("second-secret"), "941");
    assert_eq!(
        request(admin, "PUT", "/api/v1/accounts/nobody/password", t, "", r#"{"password":"long-enough"}"#).status,
        404
    );

    let profile = "/api/v1/accounts/kiosk9/profile";
    let r = request(admin, "PATCH", profile, t, "", r#"{"language":"sv","renewals":"no"}"#);
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(
        (r.body["profile"]["language"].as_str(), r.body["profile"]["renewals"].as_str()),
        (Some("sv"), Some("no"))
    );
    let r = request(admin, "PATCH", profile, t, "", r#"{"renewals":"","colour":"red"}"#);
    assert_eq!(r.status, 422, "an unknown key: {}", r.raw);
    let accounts = request(admin, "GET", "/api/v1/accounts", t, "", "");
    let mine = accounts.body["accounts"].as_array().unwrap().iter().find(|a| a["login"] == "kiosk9").cloned().unwrap();
    assert_eq!(mine["profile"]["renewals"], "no", "nothing changed by the refused patch: {mine}");
    assert!(!accounts.raw.contains("argon2"), "{}", accounts.raw);
    let r = request(admin, "PATCH", profile, t, "", r#"{"renewals":""}"#);
    assert_eq!((r.status, r.body["profile"]["renewals"].clone()), (200, serde_json::Value::Null), "{}", r.raw);

    assert_eq!(request(admin, "DELETE", "/api/v1/accounts/kiosk9", t, "", "").status, 200);
    assert_eq!(login("second-secret"), "940", "a removed account no longer logs in");
    assert_eq!(request(admin, "DELETE", "/api/v1/accounts/kiosk9", t, "", "").status, 404);

    for round in 0..4 {
        let body = format!(r#"{{"login":"race{round}","password":"race-secret","institution":"MAIN"}}"#);
        let token = t.map(str::to_string);
        let mut answers: Vec<u16> = std::thread::scope(|s| {
            let both: Vec<_> = (0..2)
                .map(|_| {
                    let (body, token) = (body.clone(), token.clone());
                    s.spawn(move || request(admin, "POST", "/api/v1/accounts", token.as_deref(), "", &body).status)
                })
                .collect();
            both.into_iter().map(|h| h.join().unwrap()).collect()
        });
        answers.sort();
        assert_eq!(answers, [200, 409], "one add makes the account, the other finds it taken");
    }
}

/// Loans and holds at the desk through the API; and the desk lending an item while a kiosk
/// checks the same item out to someone else, at the same moment, round after round: one of
/// them gets it, and the register agrees with the answers.
fn loans_and_holds(admin: SocketAddr, sip: SocketAddr, t: Option<&str>) {
    // Avery is blocked by now (the steps before); Harper is in good standing.
    let harper = patron_id(admin, t, "MAIN", "21000000000008");
    let loans = format!("/api/v1/patrons/{harper}/loans");
    let before = request(admin, "GET", &loans, t, "", "").body["loans"].as_array().map_or(0, Vec::len);
    let r = request(admin, "POST", &loans, t, "", r#"{"item":"31000000000001"}"#);
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.body["item"], "31000000000001", "{}", r.raw);
    let now = request(admin, "GET", &loans, t, "", "");
    assert_eq!(now.body["loans"].as_array().map_or(0, Vec::len), before + 1, "{}", now.raw);
    assert_eq!(request(admin, "POST", &loans, t, "", r#"{"item":"39999999999999"}"#).status, 404);
    assert_eq!(request(admin, "POST", &loans, t, "", r#"{"barcode":"31000000000001"}"#).status, 400);
    let r = request(admin, "POST", "/api/v1/items/31000000000001/checkin", t, "", "");
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.body["returned"]["item"], "31000000000001", "{}", r.raw);

    let holds = format!("/api/v1/patrons/{harper}/holds");
    let r = request(admin, "POST", &holds, t, "", r#"{"title":"Dune","pickup":"MAIN"}"#);
    assert_eq!(r.status, 200, "{}", r.raw);
    let hold = r.body["id"].as_u64().unwrap_or_else(|| panic!("{}", r.raw));
    let list = request(admin, "GET", &holds, t, "", "");
    assert!(list.body["holds"].as_array().unwrap().iter().any(|h| h["hold"]["id"] == hold), "{}", list.raw);
    let both = r#"{"title":"Dune","item":"31000000000002","pickup":"MAIN"}"#;
    assert_eq!(request(admin, "POST", &holds, t, "", both).status, 422);
    assert_eq!(request(admin, "DELETE", &format!("/api/v1/holds/{hold}"), t, "", "").status, 200);
    assert_eq!(request(admin, "DELETE", &format!("/api/v1/holds/{hold}"), t, "", "").status, 404, "gone");

    // Not 31000000000004: it is held for Harper.
    let item = "31000000000006";
    let kiosk_card = "21000000000009";
    let mut k = common::Kiosk::connect(sip);
    assert_eq!(k.ask("9300CNkiosk1|COkiosk1-secret|"), "941");
    let checkout = format!("11YN20261122    120000                  AOMAIN|AA{kiosk_card}|AB{item}|AC|AD1234|");
    let token = t.map(str::to_string);
    for round in 0..5 {
        let (desk, kiosk) = std::thread::scope(|s| {
            let token = token.clone();
            let desk = s.spawn(move || {
                request(
                    admin,
                    "POST",
                    &format!("/api/v1/patrons/{harper}/loans"),
                    token.as_deref(),
                    "",
                    &format!(r#"{{"item":"{item}"}}"#),
                )
            });
            let kiosk = k.ask(&checkout);
            (desk.join().unwrap(), kiosk)
        });
        let kiosk_lent = kiosk.starts_with("121");
        let desk_lent = desk.status == 200;
        assert!(
            desk_lent != kiosk_lent,
            "round {round}: exactly one lends it: desk {} {}, kiosk {kiosk}",
            desk.status,
            desk.raw
        );
        let facts = request(admin, "GET", &format!("/api/v1/items/{item}"), t, "", "");
        let holder = facts.body["loan"]["patron"].as_u64();
        let kiosk_patron = patron_id(admin, t, "MAIN", kiosk_card);
        assert_eq!(holder, Some(if desk_lent { harper } else { kiosk_patron }), "round {round}: {}", facts.raw);
        let r = request(admin, "POST", &format!("/api/v1/items/{item}/checkin"), t, "", "");
        assert_eq!(r.status, 200, "{}", r.raw);
    }
}
