//! Issue 16, staff accounts: members call the resource API with their own bearer tokens, and
//! their role and institutions bound every request. A member of the main library asks for a
//! branch patron through every route the API description lists: each answer is "not there",
//! and nothing of the patron shows. A member's role refuses what it does not allow; a revoked
//! token opens nothing.

mod common;

use common::api_operations as operations;
use common::http as request;
use common::{Demo, demo};

/// Adds a member with the system's token and makes them a bearer token.
fn member(d: &Demo, login: &str, name: &str, role: &str, institution: &str) -> String {
    let t = Some(d.system.as_str());
    let add = format!(
        r#"{{"login":"{login}","name":"{name}","password":"a long password","role":"{role}","institutions":["{institution}"]}}"#
    );
    let r = request(d.admin, "POST", "/api/v1/staff", t, "", &add);
    assert_eq!(r.status, 200, "{}", r.raw);
    assert!(!r.raw.contains("argon2") && !r.raw.contains("a long password"), "{}", r.raw);
    let r = request(d.admin, "POST", &format!("/api/v1/staff/{login}/tokens"), t, "", r#"{"label":"test"}"#);
    assert_eq!(r.status, 201, "{}", r.raw);
    r.body["token"].as_str().unwrap().to_string()
}

fn patron_id(d: &Demo, institution: &str, card: &str) -> u64 {
    let t = Some(d.system.as_str());
    let found = request(d.admin, "GET", &format!("/api/v1/patrons?institution={institution}&q={card}"), t, "", "");
    found.body["patrons"][0]["id"].as_u64().unwrap_or_else(|| panic!("{card}: {}", found.body))
}

#[test]
fn members_see_and_change_only_what_their_role_and_institutions_allow() {
    let d = demo();
    let manager = member(&d, "mia", "Mia Manager", "user-manager", "MAIN");
    let desk = member(&d, "dag", "Dag Desk", "desk", "MAIN");
    let admin = member(&d, "ada", "Ada Admin", "user-administrator", "MAIN");
    let branch = member(&d, "bo", "Bo Branch", "user-administrator", "BRANCH");
    let (m, k, a, b) = (Some(manager.as_str()), Some(desk.as_str()), Some(admin.as_str()), Some(branch.as_str()));
    let avery = patron_id(&d, "MAIN", "21000000000001");
    let kim = patron_id(&d, "BRANCH", "22000000000001");

    // Who am I.
    let me = request(d.admin, "GET", "/api/v1/me", m, "", "");
    assert_eq!((me.status, me.body["login"].as_str()), (200, Some("mia")), "{}", me.raw);
    assert!(!me.raw.contains("digest") && !me.raw.contains("argon2"), "{}", me.raw);

    // The desk looks, and may not change.
    let path = format!("/api/v1/patrons/{avery}");
    assert_eq!(request(d.admin, "GET", &path, k, "", "").status, 200);
    let block = r#"{"type":"general","reason":"Card reported stolen"}"#;
    let r = request(d.admin, "POST", &format!("{path}/blocks"), k, "", block);
    assert_eq!(r.status, 403, "{}", r.raw);
    assert!(r.body["error"].as_str().unwrap().contains("User Manager"), "{}", r.raw);

    // A User Manager blocks, and the history names them; they may not delete, nor manage
    // terminals or staff.
    let r = request(d.admin, "POST", &format!("{path}/blocks"), m, "", block);
    assert_eq!(r.status, 200, "{}", r.raw);
    let history = request(d.admin, "GET", &format!("{path}/history"), m, "", "");
    let last = history.body["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["by"], "Mia Manager (mia)", "{last}");
    assert_eq!(request(d.admin, "DELETE", &path, m, "", "").status, 403);
    let terminal = r#"{"login":"kiosk7","password":"long-enough","institution":"MAIN"}"#;
    assert_eq!(request(d.admin, "POST", "/api/v1/accounts", m, "", terminal).status, 403);
    let staff = r#"{"login":"x1","name":"X","password":"a long password","role":"desk","institutions":["MAIN"]}"#;
    assert_eq!(request(d.admin, "POST", "/api/v1/staff", m, "", staff).status, 403);

    // Registering: a User Manager of MAIN adds a MAIN patron; the same primary id again is
    // 409; the desk may not; another institution is not there.
    let new = |inst: &str, id: &str| {
        format!(r#"{{"institution":"{inst}","primary_id":"{id}","first_name":"Maja","last_name":"Nyberg{id}"}}"#)
    };
    let r = request(d.admin, "POST", "/api/v1/patrons", m, "", &new("MAIN", "U7001"));
    assert_eq!(r.status, 201, "{}", r.raw);
    assert!(r.etag.is_some() && r.body["created"]["by"] == "Mia Manager (mia)", "{}", r.raw);
    let taken = r#"{"institution":"MAIN","primary_id":"U7001","first_name":"Other","last_name":"Person"}"#;
    assert_eq!(request(d.admin, "POST", "/api/v1/patrons", m, "", taken).status, 409);
    let r = request(d.admin, "POST", "/api/v1/patrons", m, "", &new("MAIN", "U7001"));
    assert_eq!(r.status, 422, "same names: a possible duplicate: {}", r.raw);
    assert_eq!(request(d.admin, "POST", "/api/v1/patrons", k, "", &new("MAIN", "U7002")).status, 403);
    assert_eq!(request(d.admin, "POST", "/api/v1/patrons", m, "", &new("BRANCH", "U7003")).status, 404);

    // An administrator gives no role above their own, and none at another institution.
    let give = |role: &str, inst: &str| {
        format!(
            r#"{{"login":"n-{role}-{inst}","name":"N","password":"a long password","role":"{role}","institutions":["{inst}"]}}"#
        )
    };
    assert_eq!(request(d.admin, "POST", "/api/v1/staff", a, "", &give("user-manager", "MAIN")).status, 200);
    assert_eq!(request(d.admin, "POST", "/api/v1/staff", a, "", &give("main-administrator", "MAIN")).status, 403);
    assert_eq!(request(d.admin, "POST", "/api/v1/staff", a, "", &give("desk", "BRANCH")).status, 404);

    // A branch hold and a kiosk at the branch, for the routes below.
    let t = Some(d.system.as_str());
    let hold = request(
        d.admin,
        "POST",
        &format!("/api/v1/patrons/{kim}/holds"),
        t,
        "",
        r#"{"title":"Pippi Långstrump","pickup":"BRANCH"}"#,
    );
    assert_eq!(hold.status, 200, "{}", hold.raw);
    let hold = hold.body["id"].as_u64().unwrap();
    // Kim has a file and a picture, which the main library must not fetch either.
    let file = r#"{"name":"Harbour.txt","content":"SGFyYm91ciBzZWNyZXQ="}"#;
    let r = request(d.admin, "POST", &format!("/api/v1/patrons/{kim}/attachments"), t, "", file);
    assert_eq!(r.status, 200, "{}", r.raw);
    let picture = r#"{"content":"iVBORw0KGgoAAAANSGFyYm91cg=="}"#;
    let r = request(d.admin, "PUT", &format!("/api/v1/patrons/{kim}/picture"), t, "", picture);
    assert_eq!(r.status, 200, "{}", r.raw);
    let mut kiosk2 = common::Kiosk::connect(d.sip);
    assert_eq!(kiosk2.ask("9300CNkiosk2|COkiosk2-secret|"), "941");

    // Every route that names a patron, asked by the main library's administrator (whose role
    // allows all of them) for the branch patron: not there.
    let bodies = |method: &str, template: &str| -> Option<String> {
        Some(
            match (method, template.rsplit('/').next().unwrap_or_default()) {
                ("POST", "blocks") => block,
                ("POST", "notes") => r#"{"text":"hello"}"#,
                ("POST", "transfer") => r#"{"to":"MAIN"}"#,
                ("POST", "loans") => r#"{"item":"32000000000001"}"#,
                ("POST", "holds") => r#"{"title":"Dune","pickup":"MAIN"}"#,
                ("PATCH", "{id}") => r#"{"phone":"1"}"#,
                ("POST", "contacts") => r#"{"kind":"phone","value":"1"}"#,
                ("POST", "statistics") => r#"{"category":"x"}"#,
                ("POST", "attachments") | ("PUT", "picture") => picture,
                (_, _) => "",
            }
            .to_string(),
        )
    };
    let mut asked = 0;
    for (method, template) in operations().into_iter().filter(|(_, p)| p.contains("{id}")) {
        let body = bodies(&method, &template).unwrap();
        for (id, other) in [(kim, avery), (avery, kim)] {
            // Only the proxy routes name a second patron; for the rest, Kim is the one named.
            if id == avery && !template.contains("{other}") {
                continue;
            }
            let path = template
                .replace("{id}", &id.to_string())
                .replace("{other}", &other.to_string())
                .replace("{type}", "general")
                .replace("{note}", "1")
                .replace("{contact}", "1")
                .replace("{statistic}", "1")
                .replace("{attachment}", "1")
                .replace("{decision}", "accept");
            let r = request(d.admin, &method, &path, a, "If-Match: \"x\"\r\n", &body);
            assert_eq!(r.status, 404, "{method} {path}: {}", r.raw);
            assert!(!r.raw.contains("Harbour") && !r.raw.contains("22000000000001"), "{method} {path}: {}", r.raw);
            asked += 1;
        }
    }
    assert!(asked >= 20, "{asked} routes name a patron");
    // Nor by search, the bank, the branch's item, hold, institution, terminal or staff.
    for (method, path) in [
        ("GET", "/api/v1/patrons?institution=BRANCH&q=Harbour".to_string()),
        ("GET", "/api/v1/deleted-patrons?institution=BRANCH".to_string()),
        ("GET", "/api/v1/items/32000000000001".to_string()),
        ("POST", "/api/v1/items/32000000000001/checkin".to_string()),
        ("DELETE", format!("/api/v1/holds/{hold}")),
        ("GET", "/api/v1/staff/bo".to_string()),
        ("DELETE", "/api/v1/accounts/kiosk2".to_string()),
        ("PATCH", "/api/v1/accounts/kiosk2/profile".to_string()),
    ] {
        let body = if method == "PATCH" { r#"{"language":"sv"}"# } else { "" };
        let r = request(d.admin, method, &path, a, "", body);
        assert_eq!(r.status, 404, "{method} {path}: {}", r.raw);
    }
    let r = request(d.admin, "GET", "/api/v1/patrons?institution=MAIN&q=22000000000001", a, "", "");
    assert_eq!(r.body["total"], 0, "{}", r.raw);
    for (path, hidden) in [
        ("/api/v1/institutions", "BRANCH"),
        ("/api/v1/accounts", "kiosk2"),
        ("/api/v1/staff", "\"bo\""),
        ("/api/v1/terminals", "kiosk2"),
    ] {
        let r = request(d.admin, "GET", path, a, "", "");
        assert_eq!(r.status, 200, "{path}: {}", r.raw);
        assert!(!r.raw.contains(hidden), "{path} shows {hidden}: {}", r.raw);
        // The branch's own administrator and the system see them.
        let theirs = request(d.admin, "GET", path, b, "", "");
        assert!(theirs.raw.contains(hidden), "{path} hides {hidden} from the branch: {}", theirs.raw);
        assert!(request(d.admin, "GET", path, t, "", "").raw.contains(hidden), "{path}");
    }
    // The branch patron is as it was: no note, block, loan or phone from the main library.
    let kim_now = request(d.admin, "GET", &format!("/api/v1/patrons/{kim}"), b, "", "");
    assert_eq!(kim_now.status, 200);
    assert!(kim_now.body["blocks"].as_array().is_none_or(Vec::is_empty), "{}", kim_now.raw);
    assert!(kim_now.body["notes"].as_array().is_none_or(Vec::is_empty), "{}", kim_now.raw);
    assert_eq!(kim_now.body["attachments"].as_array().map(Vec::len), Some(1), "{}", kim_now.raw);
    assert!(kim_now.body["contacts"].as_array().is_some_and(Vec::is_empty), "{}", kim_now.raw);
    assert!(!kim_now.body["picture"].is_null(), "{}", kim_now.raw);
    let history = request(d.admin, "GET", &format!("/api/v1/patrons/{kim}/history"), b, "", "");
    assert!(!history.raw.contains("Ada Admin"), "{}", history.raw);

    // Tokens: a wrong one opens nothing; a revoked one stops at once.
    assert_eq!(request(d.admin, "GET", "/api/v1/me", Some("sip2d_0000"), "", "").status, 401);
    let r = request(d.admin, "DELETE", "/api/v1/staff/mia/tokens/1", a, "", "");
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(request(d.admin, "GET", &path, m, "", "").status, 401);
    // The branch's administrator cannot reach the main library's members.
    assert_eq!(request(d.admin, "DELETE", "/api/v1/staff/dot", b, "", "").status, 404);
    assert_eq!(request(d.admin, "GET", "/api/v1/me", k, "", "").status, 200, "dag is still there");
}

/// The console's way in: a password gives a session cookie (HttpOnly, Secure, SameSite=Strict)
/// and a CSRF token; a change with the cookie but without the token is refused, as a forged
/// request from another site's page would be. Wrong passwords sent at once lock the account
/// after five, as in a row; an unknown login is answered as a wrong password. A new password
/// and logging out end the session.
#[test]
fn sessions_need_the_csrf_token_and_wrong_passwords_lock() {
    let d = demo();
    member(&d, "mia", "Mia Manager", "user-manager", "MAIN");
    let t = Some(d.system.as_str());
    let log_in = |login: &str, password: &str| {
        let body = format!(r#"{{"login":"{login}","password":"{password}"}}"#);
        request(d.admin, "POST", "/api/v1/session", None, "", &body)
    };
    let r = log_in("mia", "a long password");
    assert_eq!(r.status, 200, "{}", r.raw);
    let set = r.header("set-cookie").expect("a session cookie").to_string();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(!r.raw.contains("argon2"), "{}", r.raw);
    let csrf = r.body["csrf"].as_str().unwrap().to_string();
    let cookie = format!("Cookie: {}\r\n", set.split(';').next().unwrap());
    let me = request(d.admin, "GET", "/api/v1/me", None, &cookie, "");
    assert_eq!((me.status, me.body["login"].as_str()), (200, Some("mia")), "{}", me.raw);

    let avery = patron_id(&d, "MAIN", "21000000000001");
    let blocks = format!("/api/v1/patrons/{avery}/blocks");
    let block = r#"{"type":"general","reason":"Card reported stolen"}"#;
    for forged in [cookie.clone(), format!("{cookie}X-CSRF-Token: sip2d_{}\r\n", "0".repeat(64))] {
        let r = request(d.admin, "POST", &blocks, None, &forged, block);
        assert_eq!(r.status, 403, "{}", r.raw);
        assert!(r.body["error"].as_str().unwrap().contains("x-csrf-token"), "{}", r.raw);
    }
    let history = request(d.admin, "GET", &format!("/api/v1/patrons/{avery}/history"), t, "", "");
    assert!(!history.raw.contains("Mia Manager"), "nothing forged was written: {}", history.raw);
    let with_token = format!("{cookie}X-CSRF-Token: {csrf}\r\n");
    let r = request(d.admin, "POST", &blocks, None, &with_token, block);
    assert_eq!(r.status, 200, "{}", r.raw);
    let history = request(d.admin, "GET", &format!("/api/v1/patrons/{avery}/history"), t, "", "");
    assert!(history.raw.contains("Mia Manager (mia)"), "{}", history.raw);

    // An unknown login and a wrong password are told apart by nothing.
    let (unknown, wrong) = (log_in("nobody", "a long password"), log_in("mia", "not the password"));
    assert_eq!((unknown.status, wrong.status), (401, 401));
    assert_eq!(unknown.body["error"], wrong.body["error"]);

    // Eight wrong passwords at once after that one: four more are counted, the fifth locks,
    // and the three after it are refused as locked.
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let tries: Vec<_> = (0..8).map(|_| s.spawn(|| log_in("mia", "still wrong").status)).collect();
        tries.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 4, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 423).count(), 4, "{statuses:?}");
    let r = log_in("mia", "a long password");
    assert_eq!(r.status, 423, "locked even with the right password: {}", r.raw);
    assert!(r.body["error"].as_str().unwrap().contains("locked"), "{}", r.raw);
    assert_eq!(request(d.admin, "POST", "/api/v1/staff/mia/unlock", t, "", "").status, 200);
    assert_eq!(log_in("mia", "a long password").status, 200);

    // A new password ends the sessions opened with the old one.
    let r = request(d.admin, "PUT", "/api/v1/staff/mia/password", t, "", r#"{"password":"another long one"}"#);
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(request(d.admin, "GET", "/api/v1/me", None, &cookie, "").status, 401);
    let r = log_in("mia", "another long one");
    let cookie = format!("Cookie: {}\r\n", r.header("set-cookie").unwrap().split(';').next().unwrap());
    let csrf = r.body["csrf"].as_str().unwrap().to_string();
    let session = request(d.admin, "GET", "/api/v1/session", None, &cookie, "");
    assert_eq!(session.body["csrf"].as_str(), Some(csrf.as_str()));
    // Logging out needs the token too, and ends the session.
    assert_eq!(request(d.admin, "DELETE", "/api/v1/session", None, &cookie, "").status, 403);
    let out = request(d.admin, "DELETE", "/api/v1/session", None, &format!("{cookie}X-CSRF-Token: {csrf}\r\n"), "");
    assert_eq!(out.status, 200, "{}", out.raw);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(request(d.admin, "GET", "/api/v1/me", None, &cookie, "").status, 401);
}

/// The live terminal view as server-sent events: the state at once, then an event when a
/// kiosk of the member's institution logs in; a kiosk of another institution never shows.
#[test]
fn the_live_view_streams_terminals_as_they_come() {
    use std::io::{BufRead, BufReader, Write};
    let d = demo();
    let token = member(&d, "lena", "Lena Live", "desk", "MAIN");
    let mut stream = std::net::TcpStream::connect(d.admin).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    write!(stream, "GET /api/v1/terminals/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\r\n")
        .unwrap();
    let mut events = BufReader::new(stream);
    let mut next_event = || -> String {
        let mut line = String::new();
        loop {
            line.clear();
            assert!(events.read_line(&mut line).unwrap() > 0, "the stream ended");
            if let Some(data) = line.strip_prefix("data: ") {
                return data.trim().to_string();
            }
        }
    };
    let first = next_event();
    assert_eq!(first, r#"{"terminals":[]}"#);
    // A branch kiosk logs in: nothing for a MAIN member. Then a MAIN kiosk: an event.
    let mut branch = common::Kiosk::connect(d.sip);
    assert_eq!(branch.ask("9300CNkiosk2|COkiosk2-secret|"), "941");
    let mut main = common::Kiosk::connect(d.sip);
    assert_eq!(main.ask("9300CNkiosk1|COkiosk1-secret|"), "941");
    let event = loop {
        let e = next_event();
        if e.contains("kiosk1") {
            break e;
        }
    };
    assert!(!event.contains("kiosk2"), "{event}");
    // When it connected, in its library's zone, named (the demo's MAIN keeps Stockholm time).
    let v: serde_json::Value = serde_json::from_str(&event).unwrap();
    let t = &v["terminals"][0];
    assert_eq!(t["institution"], "MAIN", "{event}");
    let local = t["connected_local"].as_str().unwrap();
    assert!(local.ends_with(" CET") || local.ends_with(" CEST"), "{event}");
    // Its requests show as they come.
    main.ask("9900302.00");
    loop {
        let e = next_event();
        assert!(!e.contains("kiosk2"), "{e}");
        if e.contains("\"code\":\"99\"") {
            break;
        }
    }
}

/// Every change the resource API takes, asked by each role below the one it needs, with a
/// body that would otherwise be taken: 403, and the reason names the role. Every unsafe
/// route of the description is in the table (a new route fails this test until it is), and
/// no staff token opens the system's `/v1` endpoints.
#[test]
fn every_change_is_refused_to_every_role_below_the_one_it_needs() {
    let d = demo();
    let t = Some(d.system.as_str());
    let desk = member(&d, "dag", "Dag Desk", "desk", "MAIN");
    let manager = member(&d, "mia", "Mia Manager", "user-manager", "MAIN");
    // The member the staff routes are asked about: a desk member each role is at or above.
    member(&d, "dot", "Dot Desk", "desk", "MAIN");
    let avery = patron_id(&d, "MAIN", "21000000000001");
    let blake = patron_id(&d, "MAIN", "21000000000002");
    let casey = patron_id(&d, "MAIN", "21000000000003");
    let fee = request(d.admin, "GET", &format!("/api/v1/patrons/{casey}/fees"), t, "", "");
    let fee = fee.body["fees"][0]["id"].as_u64().unwrap_or_else(|| panic!("{}", fee.raw));
    let hold = request(
        d.admin,
        "POST",
        &format!("/api/v1/patrons/{avery}/holds"),
        t,
        "",
        r#"{"title":"Dune","pickup":"MAIN"}"#,
    );
    let hold = hold.body["id"].as_u64().unwrap_or_else(|| panic!("{}", hold.raw));
    let new_patron = r#"{"institution":"MAIN","primary_id":"U8001","first_name":"Ola","last_name":"Roll"}"#;
    let new_staff = r#"{"login":"x9","name":"X","password":"a long password","role":"desk","institutions":["MAIN"]}"#;
    let terminal = r#"{"login":"kiosk9","password":"long-enough","institution":"MAIN"}"#;
    let (manager_role, administrator) = ("User Manager", "User Administrator");
    // (method, route in the description, path, body, the least role that may)
    let table: Vec<(&str, &str, String, &str, &str)> = vec![
        ("POST", "/api/v1/patrons", "/api/v1/patrons".into(), new_patron, manager_role),
        ("PATCH", "/api/v1/patrons/{id}", format!("/api/v1/patrons/{avery}"), r#"{"phone":"555"}"#, manager_role),
        ("DELETE", "/api/v1/patrons/{id}", format!("/api/v1/patrons/{blake}"), "", administrator),
        (
            "POST",
            "/api/v1/patrons/{id}/blocks",
            format!("/api/v1/patrons/{avery}/blocks"),
            r#"{"type":"general","reason":"x"}"#,
            manager_role,
        ),
        (
            "DELETE",
            "/api/v1/patrons/{id}/blocks/{type}",
            format!("/api/v1/patrons/{blake}/blocks/lost-card"),
            "",
            manager_role,
        ),
        (
            "POST",
            "/api/v1/patrons/{id}/notes",
            format!("/api/v1/patrons/{avery}/notes"),
            r#"{"text":"hello"}"#,
            manager_role,
        ),
        ("DELETE", "/api/v1/patrons/{id}/notes/{note}", format!("/api/v1/patrons/{avery}/notes/1"), "", manager_role),
        (
            "PUT",
            "/api/v1/patrons/{id}/proxy-for/{other}",
            format!("/api/v1/patrons/{avery}/proxy-for/{casey}"),
            "",
            manager_role,
        ),
        (
            "DELETE",
            "/api/v1/patrons/{id}/proxy-for/{other}",
            format!("/api/v1/patrons/{avery}/proxy-for/{casey}"),
            "",
            manager_role,
        ),
        (
            "POST",
            "/api/v1/patrons/{id}/transfer",
            format!("/api/v1/patrons/{avery}/transfer"),
            r#"{"to":"BRANCH"}"#,
            manager_role,
        ),
        (
            "POST",
            "/api/v1/patrons/{id}/transfer/{decision}",
            format!("/api/v1/patrons/{avery}/transfer/accept"),
            "",
            manager_role,
        ),
        (
            "POST",
            "/api/v1/patrons/{id}/loans",
            format!("/api/v1/patrons/{avery}/loans"),
            r#"{"item":"31000000000001"}"#,
            manager_role,
        ),
        ("POST", "/api/v1/items/{barcode}/checkin", "/api/v1/items/31000000000003/checkin".into(), "", manager_role),
        (
            "POST",
            "/api/v1/patrons/{id}/holds",
            format!("/api/v1/patrons/{avery}/holds"),
            r#"{"title":"Dune","pickup":"MAIN"}"#,
            manager_role,
        ),
        ("DELETE", "/api/v1/holds/{hold}", format!("/api/v1/holds/{hold}"), "", manager_role),
        (
            "POST",
            "/api/v1/fees/{fee}/{action}",
            format!("/api/v1/fees/{fee}/waive"),
            r#"{"reason":"goodwill"}"#,
            manager_role,
        ),
        ("POST", "/api/v1/patrons/{id}/invitation", format!("/api/v1/patrons/{avery}/invitation"), "", manager_role),
        (
            "POST",
            "/api/v1/patrons/{id}/contacts",
            format!("/api/v1/patrons/{avery}/contacts"),
            r#"{"kind":"phone","value":"555-1"}"#,
            manager_role,
        ),
        (
            "DELETE",
            "/api/v1/patrons/{id}/contacts/{contact}",
            format!("/api/v1/patrons/{avery}/contacts/1"),
            "",
            manager_role,
        ),
        (
            "POST",
            "/api/v1/patrons/{id}/contacts/{contact}/preferred",
            format!("/api/v1/patrons/{avery}/contacts/1/preferred"),
            "",
            manager_role,
        ),
        (
            "POST",
            "/api/v1/patrons/{id}/statistics",
            format!("/api/v1/patrons/{avery}/statistics"),
            r#"{"category":"c555"}"#,
            manager_role,
        ),
        (
            "DELETE",
            "/api/v1/patrons/{id}/statistics/{statistic}",
            format!("/api/v1/patrons/{avery}/statistics/1"),
            "",
            manager_role,
        ),
        (
            "POST",
            "/api/v1/patrons/{id}/attachments",
            format!("/api/v1/patrons/{avery}/attachments"),
            r#"{"name":"f555.txt","content":"NTU1"}"#,
            manager_role,
        ),
        (
            "DELETE",
            "/api/v1/patrons/{id}/attachments/{attachment}",
            format!("/api/v1/patrons/{avery}/attachments/1"),
            "",
            manager_role,
        ),
        (
            "PUT",
            "/api/v1/patrons/{id}/picture",
            format!("/api/v1/patrons/{avery}/picture"),
            r#"{"content":"iVBORw0KGgo="}"#,
            manager_role,
        ),
        ("DELETE", "/api/v1/patrons/{id}/picture", format!("/api/v1/patrons/{avery}/picture"), "", manager_role),
        ("POST", "/api/v1/patrons/{id}/restore", format!("/api/v1/patrons/{blake}/restore"), "", administrator),
        ("POST", "/api/v1/accounts", "/api/v1/accounts".into(), terminal, administrator),
        ("DELETE", "/api/v1/accounts/{login}", "/api/v1/accounts/kiosk1".into(), "", administrator),
        (
            "PUT",
            "/api/v1/accounts/{login}/password",
            "/api/v1/accounts/kiosk1/password".into(),
            r#"{"password":"long-enough"}"#,
            administrator,
        ),
        (
            "PATCH",
            "/api/v1/accounts/{login}/profile",
            "/api/v1/accounts/kiosk1/profile".into(),
            r#"{"language":"sv"}"#,
            administrator,
        ),
        ("POST", "/api/v1/staff", "/api/v1/staff".into(), new_staff, administrator),
        ("PATCH", "/api/v1/staff/{login}", "/api/v1/staff/dot".into(), r#"{"name":"Dag D"}"#, administrator),
        ("DELETE", "/api/v1/staff/{login}", "/api/v1/staff/dot".into(), "", administrator),
        (
            "PUT",
            "/api/v1/staff/{login}/password",
            "/api/v1/staff/dot/password".into(),
            r#"{"password":"another long one"}"#,
            administrator,
        ),
        ("POST", "/api/v1/staff/{login}/unlock", "/api/v1/staff/dot/unlock".into(), "", administrator),
        ("POST", "/api/v1/staff/{login}/tokens", "/api/v1/staff/dot/tokens".into(), r#"{"label":"x"}"#, administrator),
        ("DELETE", "/api/v1/staff/{login}/tokens/{token}", "/api/v1/staff/dot/tokens/1".into(), "", administrator),
    ];
    // Every unsafe route of the description is here, bar logging in and out (anyone's).
    for (method, path) in operations() {
        if method != "GET" && path.starts_with("/api/v1/") && path != "/api/v1/session" {
            let listed = table.iter().any(|(m, route, ..)| *m == method && *route == path);
            assert!(listed, "{method} {path} is not in the role table");
        }
    }
    let roles = [("desk", desk.as_str(), 0), ("user manager", manager.as_str(), 1)];
    let mut refused = 0;
    for (name, token, rank) in roles {
        for (method, route, path, body, needs) in &table {
            let need_rank = if *needs == manager_role { 1 } else { 2 };
            if rank >= need_rank {
                continue;
            }
            let r = request(d.admin, method, path, Some(token), "If-Match: \"x\"\r\n", body);
            assert_eq!(r.status, 403, "{name}: {method} {path}: {}", r.raw);
            let why = r.body["error"].as_str().unwrap_or_default();
            assert!(why.contains("may not"), "{name}: {method} {path}: the reason says so: {why}");
            // Staff accounts are managed by rank (strictly below one's own), not by a role.
            if !route.starts_with("/api/v1/staff") {
                assert!(why.contains(needs), "{name}: {method} {path}: the reason names {needs}: {why}");
            }
            refused += 1;
        }
        // The system's own endpoints are the system's alone.
        for (method, path) in operations().into_iter().filter(|(_, p)| p.starts_with("/v1/")) {
            let body = r#"{"operation":{"delete-patron":{"patron":1}},"query":"institutions","operations":[]}"#;
            let r = request(d.admin, &method, &path, Some(token), "", body);
            assert_eq!(r.status, 401, "{name}: {method} {path}: {}", r.raw);
        }
    }
    assert!(refused >= 40, "{refused}");
    // Nothing of it was written: Avery has no phone, no block, no new note; Blake is there.
    let avery_now = request(d.admin, "GET", &format!("/api/v1/patrons/{avery}"), t, "", "");
    assert!(!avery_now.raw.contains("555") && !avery_now.raw.contains("hello"), "{}", avery_now.raw);
    let p = &avery_now.body;
    assert!(
        p["contacts"].as_array().is_some_and(Vec::is_empty)
            && p["statistics"].as_array().is_some_and(Vec::is_empty)
            && p["attachments"].as_array().is_some_and(Vec::is_empty)
            && p["picture"].is_null(),
        "{}",
        avery_now.raw
    );
    let blake_now = request(d.admin, "GET", &format!("/api/v1/patrons/{blake}"), t, "", "");
    assert!(blake_now.body["deleted"].is_null() && blake_now.raw.contains("lost-card"), "{}", blake_now.raw);
    let accounts = request(d.admin, "GET", "/api/v1/accounts", t, "", "");
    assert!(accounts.raw.contains("kiosk1") && !accounts.raw.contains("kiosk9"), "{}", accounts.raw);
}

/// The details tabs through the API: contacts (one preferred), statistical categories,
/// attachments and the picture. Files are attacked as a browser would meet them: a page
/// uploaded as an attachment downloads as text and is never rendered or sniffed; a page is no
/// picture; a file over its limit, or a body over the listener's, is refused as too large.
#[test]
fn contacts_statistics_and_files_through_the_api_and_files_never_run_in_a_browser() {
    let d = demo();
    let manager = member(&d, "mia", "Mia Manager", "user-manager", "MAIN");
    let m = Some(manager.as_str());
    let avery = patron_id(&d, "MAIN", "21000000000001");
    let path = format!("/api/v1/patrons/{avery}");

    let r = request(
        d.admin,
        "POST",
        &format!("{path}/contacts"),
        m,
        "",
        r#"{"kind":"email","value":"avery@work.example","use":"work"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.body["contacts"][0]["use"], "work", "{}", r.raw);
    let id = r.body["contacts"][0]["id"].as_u64().unwrap();
    // The e-mail is Avery's now: no one else at the institution may take it.
    let blake = patron_id(&d, "MAIN", "21000000000002");
    let r = request(
        d.admin,
        "POST",
        &format!("/api/v1/patrons/{blake}/contacts"),
        m,
        "",
        r#"{"kind":"email","value":"AVERY@work.example"}"#,
    );
    assert_eq!(r.status, 409, "{}", r.raw);
    let r = request(d.admin, "POST", &format!("{path}/contacts/{id}/preferred"), m, "", "");
    assert_eq!((r.status, r.body["email"].as_str()), (200, Some("avery@work.example")), "{}", r.raw);
    let r = request(d.admin, "POST", &format!("{path}/contacts"), m, "", r#"{"kind":"fax","value":"1"}"#);
    assert_eq!(r.status, 400, "{}", r.raw);

    let r = request(
        d.admin,
        "POST",
        &format!("{path}/statistics"),
        m,
        "",
        r#"{"category":"distance-student","note":"2026"}"#,
    );
    assert_eq!((r.status, r.body["statistics"][0]["category"].as_str()), (200, Some("distance-student")), "{}", r.raw);
    let r = request(d.admin, "POST", &format!("{path}/statistics"), m, "", r#"{"category":"distance-student"}"#);
    assert_eq!(r.status, 409, "{}", r.raw);
    let r = request(d.admin, "DELETE", &format!("{path}/statistics/1"), m, "", "");
    assert!(r.status == 200 && r.body["statistics"].as_array().is_some_and(Vec::is_empty), "{}", r.raw);

    // A page with a script, uploaded as an attachment named as a page.
    let page = "<html><body><script>document.title='pwned'</script></body></html>";
    let b64 = base64_of(page.as_bytes());
    let r = request(
        d.admin,
        "POST",
        &format!("{path}/attachments"),
        m,
        "",
        &format!(r#"{{"name":"../../evil.html","content":"{b64}"}}"#),
    );
    assert_eq!(r.status, 200, "{}", r.raw);
    let a = &r.body["attachments"][0];
    assert_eq!((a["name"].as_str(), a["media_type"].as_str()), (Some("evil.html"), Some("text/plain")), "{}", r.raw);
    let got = request(d.admin, "GET", &format!("{path}/attachments/1"), m, "", "");
    assert_eq!(got.status, 200, "{}", got.head);
    assert_eq!(got.raw, page);
    assert_eq!(got.header("content-type"), Some("text/plain"));
    assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
    assert!(got.header("content-disposition").is_some_and(|v| v.starts_with("attachment;")), "{}", got.head);
    assert!(got.header("content-security-policy").is_some_and(|v| v.contains("sandbox")), "{}", got.head);
    // Not a picture.
    let r = request(d.admin, "PUT", &format!("{path}/picture"), m, "", &format!(r#"{{"content":"{b64}"}}"#));
    assert_eq!(r.status, 422, "{}", r.raw);
    assert!(r.body["error"].as_str().unwrap().contains("PNG"), "{}", r.raw);
    let png = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13];
    let r =
        request(d.admin, "PUT", &format!("{path}/picture"), m, "", &format!(r#"{{"content":"{}"}}"#, base64_of(&png)));
    assert_eq!((r.status, r.body["picture"]["media_type"].as_str()), (200, Some("image/png")), "{}", r.raw);
    let got = request(d.admin, "GET", &format!("{path}/picture"), m, "", "");
    assert_eq!((got.status, got.header("content-type")), (200, Some("image/png")), "{}", got.head);

    // Over the attachment limit (1 MiB by default): refused by the engine, as too large.
    let big = base64_of(&vec![b'a'; 1024 * 1024 + 1]);
    let r = request(
        d.admin,
        "POST",
        &format!("{path}/attachments"),
        m,
        "",
        &format!(r#"{{"name":"big.txt","content":"{big}"}}"#),
    );
    assert_eq!(r.status, 413, "{}", r.raw);
    assert!(r.body["error"].as_str().unwrap().contains("1048576"), "{}", r.raw);
    // Over what the listener reads at all: refused on the length it announces, unread.
    {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(d.admin).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        write!(
            c,
            "POST {path}/attachments HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {manager}\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            64 * 1024 * 1024
        )
        .unwrap();
        let mut answer = [0u8; 12];
        c.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"HTTP/1.1 413", "{}", String::from_utf8_lossy(&answer));
    }

    // The desk sees the files, and may not add one.
    let desk = member(&d, "dag", "Dag Desk", "desk", "MAIN");
    let k = Some(desk.as_str());
    assert_eq!(request(d.admin, "GET", &format!("{path}/attachments/1"), k, "", "").status, 200);
    let r = request(d.admin, "POST", &format!("{path}/attachments"), k, "", &format!(r#"{{"content":"{b64}"}}"#));
    assert_eq!(r.status, 403, "{}", r.raw);

    let r = request(d.admin, "DELETE", &format!("{path}/attachments/1"), m, "", "");
    assert!(r.status == 200 && r.body["attachments"].as_array().is_some_and(Vec::is_empty), "{}", r.raw);
    assert_eq!(request(d.admin, "GET", &format!("{path}/attachments/1"), m, "", "").status, 404);
    let history = request(d.admin, "GET", &format!("{path}/history"), m, "", "");
    for action in
        ["contact-add", "contact-prefer", "statistic-add", "attachment-add", "attachment-remove", "picture-set"]
    {
        assert!(history.raw.contains(action), "{action}: {}", history.raw);
    }
    assert!(history.raw.contains("Mia Manager"), "{}", history.raw);
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
