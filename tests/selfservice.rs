//! Issue 17, patrons helping themselves: a patron is registered, the welcome arrives by SMTP
//! with a link to choose a PIN, the link's page sets it, and a kiosk's 23 on a live SIP
//! connection then accepts that PIN. The link used again is refused, and the page never
//! takes a guessable PIN.

mod common;

use std::time::{Duration, Instant};

use common::smtp::SmtpSink;
use common::{form_post, http, http_as};

#[test]
fn a_new_patron_chooses_a_pin_from_the_welcome_link_and_borrows_with_it() {
    let sink = SmtpSink::start();
    let d = common::demo_with(&format!(
        "[mail]\nrelay = \"{}\"\nfrom = \"library@example.org\"\ninterval = \"200ms\"\n",
        sink.relay()
    ));
    let (sip, console, admin, system, data) = (d.sip, d.console, d.admin, d.system.clone(), d.data.clone());

    // Registered at the desk (here through the API), with an e-mail address and no PIN.
    let new = r#"{"institution":"MAIN","primary_id":"S100","first_name":"Sam","last_name":"Self","birth_date":"1995-03-04","email":"sam@example.org","barcodes":["29990000000001"]}"#;
    let r = http(admin, "POST", "/api/v1/patrons", Some(&system), "", new);
    assert_eq!(r.status, 201, "{}", r.raw);

    // The welcome arrives, with the link; the outbox keeps only a marker in its place.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mail = loop {
        if let Some(m) = sink.received().into_iter().find(|m| m.to == ["sam@example.org"]) {
            break m;
        }
        assert!(Instant::now() < deadline, "no welcome came");
        std::thread::sleep(Duration::from_millis(100));
    };
    let body = mail.data.replace("=\r\n", "").replace("\r\n", "\n");
    let prefix = format!("http://{console}/pin/");
    let at = body.find(&prefix).unwrap_or_else(|| panic!("no link in {body}"));
    let token: String = body[at + prefix.len()..].chars().take_while(char::is_ascii_hexdigit).collect();
    assert_eq!(token.len(), 64, "{body}");
    let (status, outbox) = common::admin_socket(&data, "POST", "/v1/queries", r#"{"query":"outbox"}"#).unwrap();
    assert_eq!(status, 200, "{outbox}");
    assert!(outbox.contains("{pin-link:") && !outbox.contains(&token), "{outbox}");

    // The link's page, as a phone opens it; a guessable PIN and two that differ are refused.
    let link = format!("/pin/{token}");
    let page = http_as(console, "GET", &link, "text/plain", "", "");
    assert_eq!(page.status, 200, "{}", page.raw);
    assert!(page.raw.contains("name=\"viewport\"") && page.raw.contains("Choose your PIN"), "{}", page.raw);
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    let r = form_post(console, &link, "", "pin=1995&again=1995");
    assert_eq!(r.status, 422, "{}", r.raw);
    assert!(r.raw.contains("too easy to guess"), "{}", r.raw);
    let r = form_post(console, &link, "", "pin=4821&again=4812");
    assert_eq!(r.status, 422, "{}", r.raw);
    let r = form_post(console, &link, "Accept-Language: sv\r\n", "pin=4821&again=4821");
    assert_eq!(r.status, 200, "{}", r.raw);
    assert!(r.raw.contains("Din PIN-kod är sparad"), "{}", r.raw);

    // A kiosk on a live SIP connection takes that PIN.
    let mut k = common::Kiosk::connect(sip);
    assert_eq!(k.ask("9300CNkiosk1|COkiosk1-secret|"), "941");
    let status = k.ask("2300120261203    120000AOMAIN|AA29990000000001|AC|AD4821|");
    assert!(status.contains("|BLY|") && status.contains("|CQY|"), "{status}");
    let wrong = k.ask("2300120261203    120000AOMAIN|AA29990000000001|AC|AD1111|");
    assert!(wrong.contains("|CQN|"), "{wrong}");

    // The link works once.
    let r = form_post(console, &link, "", "pin=5930&again=5930");
    assert_eq!(r.status, 404, "{}", r.raw);
    assert!(r.raw.contains("does not work"), "{}", r.raw);
    let status = k.ask("2300120261203    120000AOMAIN|AA29990000000001|AC|AD4821|");
    assert!(status.contains("|CQY|"), "the PIN stands: {status}");
    // The history says the patron set it.
    let id = http(admin, "GET", "/api/v1/patrons?institution=MAIN&q=29990000000001", Some(&system), "", "");
    let id = id.body["patrons"][0]["id"].as_u64().unwrap();
    let h = http(admin, "GET", &format!("/api/v1/patrons/{id}/history"), Some(&system), "", "");
    assert!(h.raw.contains("pin-by-link") && h.raw.contains("the patron (self-service)"), "{}", h.raw);
}
