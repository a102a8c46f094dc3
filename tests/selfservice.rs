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
    let d = common::demo_with(&sink.mail_config());
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
    let opened = http_as(console, "GET", &link, "text/plain", "", "");
    assert_eq!(opened.status, 404, "said as it opens: {}", opened.raw);
    assert!(!opened.raw.contains("name=\"pin\""), "no form to fill in vain: {}", opened.raw);
    let status = k.ask("2300120261203    120000AOMAIN|AA29990000000001|AC|AD4821|");
    assert!(status.contains("|CQY|"), "the PIN stands: {status}");
    // The history says the patron set it.
    let id = http(admin, "GET", "/api/v1/patrons?institution=MAIN&q=29990000000001", Some(&system), "", "");
    let id = id.body["patrons"][0]["id"].as_u64().unwrap();
    let h = http(admin, "GET", &format!("/api/v1/patrons/{id}/history"), Some(&system), "", "");
    assert!(h.raw.contains("pin-by-link") && h.raw.contains("the patron (self-service)"), "{}", h.raw);
}

/// The patron pages' session cookie a login reply sets (`name=value`).
fn patron_cookie(r: &common::HttpReply) -> String {
    let set = r.head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim().eq_ignore_ascii_case("set-cookie") && v.contains("__Host-sip2d_patron=")).then(|| v.trim())
    });
    let set = set.unwrap_or_else(|| panic!("no patron cookie: {}", r.head));
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    set.split(';').next().unwrap().to_string()
}

/// The form token on a page of my pages.
fn csrf(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").unwrap_or_else(|| panic!("no form token: {page}"));
    page[at + 19..].split('"').next().unwrap().to_string()
}

fn log_in(console: std::net::SocketAddr, card: &str, pin: &str) -> common::HttpReply {
    form_post(console, "/my/login", "", &format!("library=MAIN&card={card}&pin={pin}"))
}

/// My pages after a login: the cookie, and the overview.
fn my_pages(console: std::net::SocketAddr, card: &str, pin: &str) -> (String, common::HttpReply) {
    let r = log_in(console, card, pin);
    assert_eq!(r.status, 303, "{}", r.raw);
    assert_eq!(r.header("location"), Some("/my"));
    let cookie = patron_cookie(&r);
    let page = http_as(console, "GET", "/my", "text/plain", &format!("Cookie: {cookie}\r\n"), "");
    assert_eq!(page.status, 200, "{}", page.raw);
    (cookie, page)
}

fn post_as(console: std::net::SocketAddr, cookie: &str, path: &str, body: &str) -> common::HttpReply {
    form_post(console, path, &format!("Cookie: {cookie}\r\n"), body)
}

/// My pages share the kiosks' lockout both ways, show loans, requests and fees (a disputed fee
/// apart from the balance), renew and cancel through the engine, and refuse a form without
/// the session's token.
#[test]
fn my_pages_share_the_kiosk_lockout_and_renew_cancel_and_show_fees() {
    let d = common::demo();
    let (sip, console) = (d.sip, d.console);
    let mut k = common::Kiosk::connect(sip);
    assert_eq!(k.ask("9300CNkiosk1|COkiosk1-secret|"), "941");
    let status = |k: &mut common::Kiosk, card: &str, pin: &str| {
        k.ask(&format!("2300120261203    120000AOMAIN|AA{card}|AC|AD{pin}|"))
    };

    // Four wrong PINs at the kiosk and one on the pages lock Blake's card, for both.
    for _ in 0..4 {
        assert!(status(&mut k, "21000000000002", "9999").contains("|CQN|"));
    }
    let r = log_in(console, "21000000000002", "9999");
    assert_eq!(r.status, 403, "{}", r.raw);
    assert!(r.raw.contains("locked"), "{}", r.raw);
    assert_eq!(log_in(console, "21000000000002", "1234").status, 403, "locked: the right PIN too");
    assert!(status(&mut k, "21000000000002", "1234").contains("|CQN|"), "and at the kiosk");
    // Five wrong on the pages lock Jörg's card at the kiosk; an unknown card reads the same
    // as a wrong PIN.
    let unknown = log_in(console, "29999999999999", "1234");
    let wrong = log_in(console, "21000000000009", "9999");
    assert_eq!((unknown.status, wrong.status), (401, 401));
    assert_eq!(unknown.raw, wrong.raw);
    for _ in 0..3 {
        assert_eq!(log_in(console, "21000000000009", "9999").status, 401);
    }
    assert_eq!(log_in(console, "21000000000009", "9999").status, 403);
    assert!(status(&mut k, "21000000000009", "1234").contains("|CQN|"));

    // Avery: the loan, the note shown to patrons, a renewal through the engine.
    let (avery, page) = my_pages(console, "21000000000001", "1234");
    assert!(page.raw.contains("Hello Avery") && page.raw.contains("31000000000003"), "{}", page.raw);
    assert!(page.raw.contains("Your library card renews in the spring."), "{}", page.raw);
    assert_eq!(page.header("cache-control"), Some("no-store"));
    let token = csrf(&page.raw);
    let forged = post_as(console, &avery, "/my/renew", "csrf=forged&item=31000000000003");
    assert_eq!(forged.status, 403, "{}", forged.raw);
    let r = post_as(console, &avery, "/my/renew", &format!("csrf={token}&item=31000000000003"));
    assert_eq!(r.status, 303, "{}", r.raw);
    assert_eq!(r.header("location"), Some("/my?done=renewed"));
    let another = post_as(console, &avery, "/my/renew", &format!("csrf={token}&item=31000000000004"));
    assert_eq!(another.status, 409, "{}", another.raw);
    assert!(another.raw.contains("no longer on loan to you"), "{}", another.raw);
    // The kiosk's 64 with the PIN sees the loan Avery has.
    let info = k.ask("6300120261203    120000  Y       AOMAIN|AA21000000000001|AC|AD1234|");
    assert!(info.contains("|AU31000000000003|"), "{info}");

    // Dana: the disputed fee is shown apart, and the balance leaves it out.
    let (_dana, page) = my_pages(console, "21000000000004", "1234");
    assert!(page.raw.contains("Disputed") && page.raw.contains("80.00"), "{}", page.raw);
    assert!(page.raw.contains("0.00 SEK"), "{}", page.raw);

    // Harper cancels the request waiting on the hold shelf; Avery's session cannot.
    let (harper, page) = my_pages(console, "21000000000008", "1234");
    assert!(page.raw.contains("Ready to pick up"), "{}", page.raw);
    let at = page.raw.find("name=\"hold\" value=\"").unwrap();
    let hold: String = page.raw[at + 19..].chars().take_while(char::is_ascii_digit).collect();
    let theirs = post_as(console, &avery, "/my/cancel", &format!("csrf={token}&hold={hold}"));
    assert_eq!(theirs.status, 409, "{}", theirs.raw);
    let r = post_as(console, &harper, "/my/cancel", &format!("csrf={}&hold={hold}", csrf(&page.raw)));
    assert_eq!(r.status, 303, "{}", r.raw);
    let page = http_as(console, "GET", "/my", "text/plain", &format!("Cookie: {harper}\r\n"), "");
    assert!(page.raw.contains("You have no requests."), "{}", page.raw);

    // A login form posted from another site is refused, PIN right or wrong, and counts nothing.
    for from in ["Origin: https://evil.example\r\n", "Sec-Fetch-Site: cross-site\r\n"] {
        let r = form_post(console, "/my/login", from, "library=MAIN&card=21000000000001&pin=9999");
        assert_eq!(r.status, 403, "{}", r.raw);
        assert!(r.raw.contains("another site"), "{}", r.raw);
    }
    let same =
        form_post(console, "/my/login", "Origin: http://localhost\r\n", "library=MAIN&card=21000000000001&pin=1234");
    assert_eq!(same.status, 303, "from the pages themselves: {}", same.raw);

    // Five wrong PINs at the kiosk end Avery's session on the pages.
    for _ in 0..5 {
        status(&mut k, "21000000000001", "9999");
    }
    let page = http_as(console, "GET", "/my", "text/plain", &format!("Cookie: {avery}\r\n"), "");
    assert_eq!(page.status, 303, "{}", page.raw);
    assert_eq!(page.header("location"), Some("/my/login?why=ended"));
    // A staff console session is not a patron's.
    let staff = http_as(console, "GET", "/my", "text/plain", "Cookie: __Host-sip2d_session=whatever\r\n", "");
    assert_eq!(staff.header("location"), Some("/my/login"));
}

/// Forgot PIN answers a known and an unknown card alike and mails the known one a link; the
/// patron then changes their e-mail address (in force once its link is followed), opts out of
/// reports and asks to move library.
#[test]
fn forgot_pin_answers_alike_and_a_new_email_waits_for_its_link() {
    let sink = SmtpSink::start();
    let d = common::demo_with(&sink.mail_config());
    let (console, admin, system) = (d.console, d.admin, d.system.clone());
    let new = r#"{"institution":"MAIN","primary_id":"S200","first_name":"Robin","last_name":"Self","birth_date":"1990-01-02","email":"robin@example.org","barcodes":["29990000000002"],"invite":false}"#;
    let r = http(admin, "POST", "/api/v1/patrons", Some(&system), "", new);
    assert_eq!(r.status, 201, "{}", r.raw);
    let id = r.body["id"].as_u64().unwrap();

    let known = form_post(console, "/forgot", "", "library=MAIN&given=29990000000002");
    let unknown = form_post(console, "/forgot", "", "library=MAIN&given=29990000009999");
    assert_eq!((known.status, unknown.status), (200, 200));
    assert_eq!(known.raw, unknown.raw, "no account discovery");
    let mail = wait_for_mail(&sink, "robin@example.org", "/pin/");
    let token = link_token(&mail, &format!("http://{console}/pin/"));
    let r = form_post(console, &format!("/pin/{token}"), "", "pin=4821&again=4821");
    assert_eq!(r.status, 200, "{}", r.raw);

    let (cookie, page) = my_pages(console, "29990000000002", "4821");
    let token = csrf(&page.raw);
    let r = post_as(console, &cookie, "/my/email", &format!("csrf={token}&email=robin.new%40example.org"));
    assert_eq!(r.status, 303, "{}", r.raw);
    let patron = || http(admin, "GET", &format!("/api/v1/patrons/{id}"), Some(&system), "", "").body;
    assert_eq!(patron()["email"], "robin@example.org", "not before the link is followed");
    let mail = wait_for_mail(&sink, "robin.new@example.org", "/email/");
    let link = format!("/email/{}", link_token(&mail, &format!("http://{console}/email/")));
    let shown = http_as(console, "GET", &link, "text/plain", "", "");
    assert_eq!(shown.status, 200, "{}", shown.raw);
    assert_eq!(patron()["email"], "robin@example.org", "opening the link (a mail scanner) changes nothing");
    let r = form_post(console, &link, "", "");
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(patron()["email"], "robin.new@example.org");
    assert_eq!(form_post(console, &link, "", "").status, 404, "once");

    let r = post_as(console, &cookie, "/my/notices", &format!("csrf={token}&kind=report&out=yes"));
    assert_eq!(r.status, 303, "{}", r.raw);
    let q = format!(r#"{{"query":{{"optouts":{id}}}}}"#);
    let (status, out) = common::admin_socket(&d.data, "POST", "/v1/queries", &q).unwrap();
    assert_eq!(status, 200, "{out}");
    assert!(out.contains("report"), "{out}");
    let r = post_as(console, &cookie, "/my/move", &format!("csrf={token}&to=BRANCH"));
    assert_eq!(r.status, 303, "{}", r.raw);
    assert_eq!(patron()["transfer"]["to"], "BRANCH");
    let page = http_as(console, "GET", "/my", "text/plain", &format!("Cookie: {cookie}\r\n"), "");
    assert!(page.raw.contains("waiting for the library"), "{}", page.raw);

    // Made an external account: the details are the student system's, shown read-only.
    let r = http(admin, "GET", &format!("/api/v1/patrons/{id}"), Some(&system), "", "");
    let etag = r.etag.unwrap();
    let body = r#"{"account-type":"external:ladok"}"#;
    let r =
        http(admin, "PATCH", &format!("/api/v1/patrons/{id}"), Some(&system), &format!("If-Match: {etag}\r\n"), body);
    assert_eq!(r.status, 200, "{}", r.raw);
    let page = http_as(console, "GET", "/my", "text/plain", &format!("Cookie: {cookie}\r\n"), "");
    assert!(page.raw.contains("Your details come from ladok; change them there."), "{}", page.raw);
    assert!(page.raw.contains("name=\"phone\" type=\"tel\" autocomplete=\"tel\" value=\"\" disabled"), "{}", page.raw);
    let r = post_as(console, &cookie, "/my/contact", &format!("csrf={token}&phone=123&address=&postal_code="));
    assert_eq!(r.status, 409, "{}", r.raw);
    assert!(r.raw.contains("change it there"), "{}", r.raw);
    let r = post_as(console, &cookie, "/my/email", &format!("csrf={token}&email=x%40example.org"));
    assert_eq!(r.status, 409, "{}", r.raw);
}

fn wait_for_mail(sink: &SmtpSink, to: &str, containing: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = sink.received().into_iter().find_map(|m| {
            let body = m.data.replace("=\r\n", "").replace("\r\n", "\n");
            (m.to == [to] && body.contains(containing)).then_some(body)
        });
        if let Some(body) = found {
            return body;
        }
        assert!(Instant::now() < deadline, "no mail with {containing} to {to}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn link_token(body: &str, prefix: &str) -> String {
    let at = body.find(prefix).unwrap_or_else(|| panic!("no link {prefix} in {body}"));
    body[at + prefix.len()..].chars().take_while(char::is_ascii_hexdigit).collect()
}

/// With `[patron_pages]`, the patron pages have a listener of their own: the console's pages
/// and the API are not there, and the console's listener no longer serves the patron pages.
/// The e-mailed links lead there.
#[test]
fn the_patron_pages_can_have_a_listener_of_their_own() {
    let sink = SmtpSink::start();
    let d = common::demo_with(&format!("[patron_pages]\nlisten = \"127.0.0.1:0\"\n{}", sink.mail_config()));
    let pages = d.pages.expect("announced");
    let (cookie, page) = my_pages(pages, "21000000000001", "1234");
    assert!(page.raw.contains("Hello Avery"), "{}", page.raw);
    assert!(!cookie.is_empty());
    for path in ["/login", "/patrons", "/api/v1/openapi.json", "/api/v1/patrons"] {
        let r = http_as(pages, "GET", path, "text/plain", "", "");
        assert_eq!(r.status, 404, "{path}: {}", r.raw);
    }
    let home = http_as(pages, "GET", "/", "text/plain", "", "");
    assert_eq!(home.header("location"), Some("/my"));
    assert_eq!(http_as(d.console, "GET", "/my/login", "text/plain", "", "").status, 404, "not on the console's");
    assert_eq!(http_as(d.console, "GET", "/login", "text/plain", "", "").status, 200);

    let new = r#"{"institution":"MAIN","primary_id":"S300","first_name":"Sky","last_name":"Self","email":"sky@example.org","barcodes":["29990000000003"]}"#;
    let r = http(d.admin, "POST", "/api/v1/patrons", Some(&d.system), "", new);
    assert_eq!(r.status, 201, "{}", r.raw);
    let mail = wait_for_mail(&sink, "sky@example.org", "/pin/");
    assert!(mail.contains(&format!("http://{pages}/pin/")), "{mail}");
}

/// A renewal on my pages and a checkin at a kiosk of the same item at the same moment, over
/// HTTP and SIP: each round ends as one of the two serial orders (renewed, then returned; or
/// returned, then the renewal refused as no longer on loan), and the item is back every time.
#[test]
fn a_renewal_on_my_pages_and_a_kiosk_checkin_at_once_end_serially() {
    let d = common::demo();
    let (sip, console) = (d.sip, d.console);
    let (avery, page) = my_pages(console, "21000000000001", "1234");
    let token = csrf(&page.raw);
    let mut lend = common::Kiosk::connect(sip);
    assert_eq!(lend.ask("9300CNkiosk1|COkiosk1-secret|"), "941");
    let mut back = common::Kiosk::connect(sip);
    assert_eq!(back.ask("9300CNkiosk1|COkiosk1-secret|"), "941");
    let (mut renewed_first, mut returned_first) = (0, 0);
    for round in 0..12 {
        let out =
            lend.ask("11YN20261203    120000                  AOMAIN|AA21000000000001|AB31000000000002|AC|AD1234|");
        assert!(out.starts_with("121"), "round {round}: {out}");
        let renew = {
            let (cookie, body) = (avery.clone(), format!("csrf={token}&item=31000000000002"));
            std::thread::spawn(move || post_as(console, &cookie, "/my/renew", &body).status)
        };
        let checkin = back.ask("09N20261203    12000020261203    120000APMAIN|AOMAIN|AB31000000000002|AC|");
        assert!(checkin.starts_with("101"), "round {round}: the checkin takes the item back: {checkin}");
        match renew.join().unwrap() {
            303 => renewed_first += 1,
            409 => returned_first += 1,
            other => panic!("round {round}: the renewal answered {other}"),
        }
        let info = lend.ask("6300120261203    120000  Y       AOMAIN|AA21000000000001|AC|AD1234|");
        assert!(!info.contains("|AU31000000000002|"), "round {round}: nothing left on loan: {info}");
    }
    assert_eq!(renewed_first + returned_first, 12);
}

/// A link past `[register] pin_link_hours` is refused as expired (here the hours are 0, so
/// every link has expired by the time it is opened).
#[test]
fn an_expired_link_is_refused() {
    let sink = SmtpSink::start();
    let d = common::demo_with(&format!("[register]\npin_link_hours = 0\n{}", sink.mail_config()));
    let new = r#"{"institution":"MAIN","primary_id":"S500","first_name":"Ola","last_name":"Late","email":"ola@example.org","barcodes":["29990000000005"]}"#;
    let r = http(d.admin, "POST", "/api/v1/patrons", Some(&d.system), "", new);
    assert_eq!(r.status, 201, "{}", r.raw);
    let mail = wait_for_mail(&sink, "ola@example.org", "/pin/");
    let token = link_token(&mail, &format!("http://{}/pin/", d.console));
    let r = form_post(d.console, &format!("/pin/{token}"), "", "pin=4821&again=4821");
    assert_eq!(r.status, 410, "{}", r.raw);
    assert!(r.raw.contains("expired") && r.raw.contains("href=\"/forgot\""), "{}", r.raw);
}

/// The patron pages behind a load balancer (`proxy_from`): each patron's address, from the
/// PROXY header, is throttled on its own, not all of them as the balancer's one address.
#[test]
fn behind_a_balancer_each_patrons_address_is_throttled_on_its_own() {
    let d = common::demo_with(
        "patron_pages_attempts = 2\n[patron_pages]\nlisten = \"127.0.0.1:0\"\nproxy_from = [\"127.0.0.1\"]\n",
    );
    let pages = d.pages.expect("announced");
    let ask = |from: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(pages).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let body = "library=MAIN&given=29990000000009";
        write!(
            s,
            "PROXY TCP4 {from} 127.0.0.1 40000 443\r\nPOST /forgot HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text.split_whitespace().nth(1).and_then(|c| c.parse::<u16>().ok()).unwrap_or(0)
    };
    assert_eq!([ask("192.0.2.7"), ask("192.0.2.7"), ask("192.0.2.7")], [200, 200, 429]);
    assert_eq!(ask("192.0.2.8"), 200, "another patron behind the same balancer");
    // Without the header, the balancer's connection is closed unanswered.
    assert_eq!(http_as(pages, "GET", "/my/login", "text/plain", "", "").status, 0);
}
