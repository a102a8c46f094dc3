//! The resource API attacked from its own description: every route and method that
//! docs/openapi.json lists (the description generated from the handlers, served at
//! /api/v1/openapi.json; a unit test holds the file to it), with path values,
//! bodies and headers drawn at random from the valid, the odd and the hostile. Whatever comes,
//! the server answers: never a 5xx, never a dropped connection, and every refusal (4xx) says
//! why. Afterwards the server still serves and the kiosk side still answers.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::OnceLock;

use proptest::prelude::*;

use common::api_operations as operations;

struct Server {
    admin: SocketAddr,
    sip: SocketAddr,
    token: String,
    _dir: tempfile::TempDir,
}

/// One demo server for every case (cases change its register; that is part of the attack).
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("demo");
        let d = data.to_str().unwrap().to_string();
        // Short pauses after refused staff logins: the attack logs in wrong, now and then.
        let config = dir.path().join("sip2d.toml");
        std::fs::write(&config, "[limits]\nlogin_failure_delay = \"5ms\"\nlogin_backoff_max = \"20ms\"\n").unwrap();
        let c = config.to_str().unwrap().to_string();
        let args = [
            "--config",
            &c,
            "--data",
            &d,
            "serve",
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ];
        // Started on a thread that lives as long as the test process: the server is killed
        // when the thread that started it ends, and every case shares it.
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (_child, mut stdout, admin) =
                common::spawn_sip2d(&args, "warn", Stdio::null(), "sip2d admin API on http://");
            let sip = common::address_after(&mut stdout, "listening on ");
            tx.send((admin, sip)).unwrap();
            use std::io::BufRead;
            for _ in stdout.lines() {}
            loop {
                std::thread::park();
            }
        });
        let (admin, sip) = rx.recv().unwrap();
        let token = std::fs::read_to_string(data.join("admin.token")).unwrap().trim().to_string();
        Server { admin, sip, token, _dir: dir }
    })
}

/// Values for a path segment: real ids and names, and what should never be trusted.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        (1u64..40).prop_map(|n| n.to_string()),
        Just("MAIN".to_string()),
        Just("21000000000001".to_string()),
        Just("31000000000002".to_string()),
        Just("general".to_string()),
        Just("pay".to_string()),
        Just("accept".to_string()),
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("18446744073709551616".to_string()),
        Just("%2e%2e%2f%2e%2e".to_string()),
        Just("%ZZ".to_string()),
        Just("%00".to_string()),
        Just("%C3%85sa".to_string()),
        "[a-zA-Z0-9_-]{0,40}",
        "[a-z]{300}",
    ]
}

/// Bodies: well-formed ones with fields the routes take, wrong types, and things that are not
/// JSON at all.
fn body() -> impl Strategy<Value = String> {
    let field = prop_oneof![
        Just("type"),
        Just("reason"),
        Just("text"),
        Just("public"),
        Just("amount"),
        Just("to"),
        Just("first_name"),
        Just("last_name"),
        Just("email"),
        Just("expiry"),
        Just("user_group"),
        Just("kind"),
        Just("login"),
        Just("password"),
        Just("name"),
        Just("role"),
        Just("label"),
        Just("colour"),
    ];
    let value = prop_oneof![
        Just("\"\"".to_string()),
        Just("\"general\"".to_string()),
        Just("\"BRANCH\"".to_string()),
        Just("\"1.00\"".to_string()),
        Just("\"-5\"".to_string()),
        Just("\"2027-01-01\"".to_string()),
        Just("\"not a date\"".to_string()),
        Just("true".to_string()),
        Just("null".to_string()),
        Just("12345678901234567890".to_string()),
        Just("-0.0001".to_string()),
        Just("[1,2,3]".to_string()),
        Just("{\"a\":{\"b\":[]}}".to_string()),
        "\"[ -~]{0,60}\"".prop_map(|s| s.replace('\\', "\\\\")),
        "\"\\\\u00[0-1][0-9a-f]\"",
        "\"[a-z]{2000}\"",
    ];
    prop_oneof![
        Just(String::new()),
        Just("{}".to_string()),
        Just("null".to_string()),
        Just("[]".to_string()),
        Just("{\"a\":".to_string()),
        Just("\u{0}\u{1}binary".to_string()),
        "[ -~]{0,80}",
        proptest::collection::vec((field, value), 0..5).prop_map(|fields| {
            let inner: Vec<String> = fields.iter().map(|(f, v)| format!("\"{f}\":{v}")).collect();
            format!("{{{}}}", inner.join(","))
        }),
    ]
}

#[derive(Debug, Clone)]
enum Auth {
    Token,
    None,
    Wrong,
}

fn case() -> impl Strategy<Value = (usize, Option<String>, Vec<String>, String, Auth, Option<String>, String)> {
    let count = operations().len();
    (
        0..count,
        prop_oneof![3 => Just(None), 1 => prop::sample::select(vec!["GET", "POST", "PUT", "PATCH", "DELETE"]).prop_map(|m| Some(m.to_string()))],
        proptest::collection::vec(segment(), 3),
        body(),
        prop_oneof![8 => Just(Auth::Token), 1 => Just(Auth::None), 1 => Just(Auth::Wrong)],
        prop_oneof![
            Just(None),
            Just(Some("\"0\"".to_string())),
            Just(Some("garbage".to_string())),
            Just(Some("*".to_string()))
        ],
        prop_oneof![
            Just(String::new()),
            Just("?institution=MAIN&q=Reader".to_string()),
            // What a URL may carry (HTTP itself refuses the rest before the API sees it).
            "\\?[A-Za-z0-9=&%._~+-]{0,40}",
        ],
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_input_gets_a_server_error_and_every_refusal_says_why(
        (op, method, values, body, auth, if_match, query) in case()
    ) {
        let s = server();
        let (listed, template) = &operations()[op];
        let method = method.unwrap_or_else(|| listed.clone());
        // Each `{name}` of the template takes the next drawn value.
        let mut path = String::new();
        let mut values = values.iter();
        for part in template.split('/').skip(1) {
            path.push('/');
            if part.starts_with('{') {
                path.push_str(values.next().map_or("1", String::as_str));
            } else {
                path.push_str(part);
            }
        }
        path.push_str(&query);
        let token = match auth {
            Auth::Token => Some(s.token.clone()),
            Auth::None => None,
            Auth::Wrong => Some(format!("{}x", s.token)),
        };
        let extra = if_match.map(|v| format!("If-Match: {v}\r\n")).unwrap_or_default();
        let r = common::http(s.admin, &method, &path, token.as_deref(), &extra, &body);
        prop_assert!(r.status != 0, "no answer to {method} {path} {body:?}");
        prop_assert!(r.status < 500, "{method} {path} {body:?}: {} {}", r.status, r.raw);
        if r.status >= 400 {
            let reason = r.body["error"].as_str().map(str::trim).unwrap_or_default().to_string();
            prop_assert!(!reason.is_empty(), "{method} {path} {body:?}: {} without a reason: {:?}", r.status, r.raw);
        }
    }
}

#[test]
fn after_the_attack_the_api_and_the_kiosks_still_answer() {
    // Runs in its own process with its own server: a fresh one, attacked briefly here too.
    let s = server();
    for (method, template) in operations() {
        let path = template.replace("{id}", "999999").replace('{', "x").replace('}', "");
        let r = common::http(s.admin, &method, &path, Some(&s.token), "", "{\"a\":");
        assert!(r.status < 500 && r.status != 0, "{method} {path}: {} {}", r.status, r.raw);
    }
    let r = common::http(s.admin, "GET", "/api/v1/patrons?institution=MAIN&q=Reader", Some(&s.token), "", "");
    assert_eq!(r.status, 200, "{}", r.raw);
    // The description the attack was drawn from is the one the server serves, to anyone.
    let r = common::http(s.admin, "GET", "/api/v1/openapi.json", None, "", "");
    assert_eq!(r.status, 200, "{}", r.raw);
    let file: serde_json::Value = serde_json::from_str(include_str!("../docs/openapi.json")).unwrap();
    assert_eq!(r.body, file, "the served description differs from docs/openapi.json");
    let mut k = common::Kiosk::connect(s.sip);
    assert!(k.ask("9900302.00").starts_with("98"));
}
