//! The staff console in a real browser (Debian's chromium, driven over WebDriver by its
//! chromedriver): a User Manager logs in, finds a patron and blocks them with a reason, and a
//! kiosk's 23 on a live SIP connection shows the block; a User Manager cannot delete; a form
//! posted without its CSRF token is refused; two staff members editing one patron: the second
//! save gets the conflict page and nothing is lost. A patron chooses a PIN from the welcome's
//! link and uses their own pages, on a phone-sized window.
//!
//! Not part of a plain `cargo test` (it needs chromium): `.ci/run` installs it and runs
//! `cargo test --test browser`. Where chromedriver is missing this test fails and says what to
//! install. With `SIP2D_SCREENSHOTS=DIR` it saves screenshots of the main pages there
//! (docs/screenshots holds the published ones).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Demo, demo};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

/// The browser's WebDriver, for as long as the test runs.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Driver {
    let program = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(&program)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {program} ({e}): the browser tests need Debian's chromium and chromium-driver \
                 (`apt-get install chromium chromium-driver`, as .ci/run does), or CHROMEDRIVER=/path/to/chromedriver"
            )
        });
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{program} did not start listening on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Driver { child, port }
}

async fn browser(driver: &Driver, lang: &str) -> Client {
    let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&binary).exists(),
        "no browser at {binary}: the browser tests need Debian's chromium and chromium-driver \
         (`apt-get install chromium chromium-driver`, as .ci/run does), or CHROMIUM=/path/to/chromium"
    );
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": binary,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1200,1000", format!("--lang={lang}")],
        }),
    );
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a browser session from chromedriver")
}

/// Saves a screenshot of the page as `name`.png when screenshots are asked for.
async fn snap(b: &Client, name: &str) {
    if let Ok(dir) = std::env::var("SIP2D_SCREENSHOTS") {
        let png = b.screenshot().await.unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }
}

async fn log_in(b: &Client, d: &Demo, login: &str, password: &str) {
    b.goto(&format!("http://{}/login", d.console)).await.unwrap();
    b.find(Locator::Id("login")).await.unwrap().send_keys(login).await.unwrap();
    b.find(Locator::Id("password")).await.unwrap().send_keys(password).await.unwrap();
    submit(b, "main button[type=submit]").await;
    let url = b.current_url().await.unwrap();
    assert!(url.path().starts_with("/patrons"), "logged in: {url}");
}

/// Finds a patron by card from the search page and opens their page; its path.
async fn open_patron(b: &Client, card: &str) -> String {
    let q = b.find(Locator::Id("q")).await.unwrap();
    q.clear().await.unwrap();
    q.send_keys(card).await.unwrap();
    submit(b, "form[role=search] button").await;
    submit(b, "tbody a").await;
    b.current_url().await.unwrap().path().to_string()
}

fn kiosk_status(d: &Demo) -> String {
    let mut k = common::Kiosk::connect(d.sip);
    assert_eq!(k.ask("9300CNkiosk1|COkiosk1-secret|"), "941");
    let r = k.ask("2300120261203    120000AOMAIN|AA21000000000001|AC|AD1234|");
    r[2..16].to_string()
}

/// The page's main text. A click that posts a form may still be loading the next page, so
/// an element gone stale is looked for again.
async fn text(b: &Client) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = match b.find(Locator::Css("main")).await {
            Ok(main) => main.text().await,
            Err(e) => Err(e),
        };
        match found {
            Ok(t) => return t,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("no page text: {e}"),
        }
    }
}

/// Clicks a button or link and waits for the page it leads to.
async fn submit(b: &Client, button: &str) {
    let before = b.find(Locator::Css("html")).await.unwrap();
    b.find(Locator::Css(button)).await.unwrap().click().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    // The old page's root goes stale once the new page has replaced it.
    while before.tag_name().await.is_ok() {
        assert!(Instant::now() < deadline, "{button} led nowhere");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_work_the_register_in_a_browser() {
    let driver = chromedriver();
    let d = demo();
    let b = browser(&driver, "en").await;
    snap_login(&b, &d).await;

    // A User Manager logs in, finds Avery and blocks them with a reason.
    log_in(&b, &d, "manager", "manager-password").await;
    assert!(!kiosk_status(&d).starts_with('Y'));
    let avery = open_patron(&b, "21000000000001").await;
    snap(&b, "patron").await;
    b.find(Locator::Id("block-type")).await.unwrap().select_by_value("general").await.unwrap();
    b.find(Locator::Id("block-reason")).await.unwrap().send_keys("Card reported stolen").await.unwrap();
    submit(&b, "form[action$='/blocks'] button").await;
    let page = text(&b).await;
    assert!(page.contains("Saved.") && page.contains("Card reported stolen"), "{page}");
    // A kiosk's 23 on a live SIP connection now shows the block.
    assert!(kiosk_status(&d).starts_with('Y'), "the kiosk sees the block");

    // A User Manager cannot delete: no button, and a post made from the page is refused.
    assert!(b.find(Locator::Css("form[action$='/delete']")).await.is_err(), "no delete button");
    let status = b
        .execute(
            "const csrf = document.querySelector('input[name=csrf]').value;
             return fetch(location.pathname + '/delete', {method: 'POST',
               headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: 'csrf=' + csrf})
               .then(r => r.status);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, 403, "the engine refuses a User Manager's delete");
    b.refresh().await.unwrap();
    assert!(!text(&b).await.contains("Deleted"));

    // A form posted without its CSRF token is refused, and nothing is written.
    b.execute(
        "const f = document.querySelector('form[action$=\"/notes\"]');
         f.querySelector('input[name=csrf]').remove();
         f.querySelector('#note-text').value = 'Forged note';
         f.submit();",
        vec![],
    )
    .await
    .unwrap();
    wait_for(&b, "The form was out of date").await;
    b.goto(&format!("http://{}{avery}", d.console)).await.unwrap();
    assert!(!text(&b).await.contains("Forged note"));

    // Two staff members edit Avery at once: the second save gets the conflict page.
    let other = browser(&driver, "en").await;
    log_in(&other, &d, "admin", "admin-password").await;
    other.goto(&format!("http://{}{avery}", d.console)).await.unwrap();
    b.refresh().await.unwrap();
    set_field(&b, "phone", "+46 8 555 0101").await;
    submit(&b, "form[action$='/edit'] button").await;
    assert!(text(&b).await.contains("Saved."));
    set_field(&other, "email", "avery@example.org").await;
    submit(&other, "form[action$='/edit'] button").await;
    let conflict = text(&other).await;
    assert!(conflict.contains("Someone else changed this patron"), "{conflict}");
    assert!(conflict.contains("+46 8 555 0101"), "the record as it is now: {conflict}");
    let email = other.find(Locator::Id("email")).await.unwrap().prop("value").await.unwrap();
    assert_eq!(email.as_deref(), Some("avery@example.org"), "the second member's change is kept in the form");
    snap(&other, "conflict").await;
    submit(&other, "form[action$='/edit'] button").await;
    let saved = text(&other).await;
    assert!(saved.contains("+46 8 555 0101") && saved.contains("avery@example.org"), "both changes: {saved}");

    // The search page and the terminals page, for the screenshots; then Swedish.
    b.goto(&format!("http://{}/patrons?institution=MAIN&q=Reader", d.console)).await.unwrap();
    snap(&b, "search").await;
    // The terminals page follows kiosks live, without a reload.
    b.goto(&format!("http://{}/terminals", d.console)).await.unwrap();
    assert!(!text(&b).await.contains("kiosk1"));
    let mut kiosk = common::Kiosk::connect(d.sip);
    assert_eq!(kiosk.ask("9300CNkiosk1|COkiosk1-secret|"), "941");
    kiosk.ask("9900302.00");
    wait_for(&b, "99 ").await;
    assert!(text(&b).await.contains("kiosk1"));
    snap(&b, "terminals").await;
    // A part payment at the desk: Casey owes 150.00.
    b.goto(&format!("http://{}/patrons?institution=MAIN&q=21000000000003", d.console)).await.unwrap();
    submit(&b, "tbody a").await;
    let amount = b.find(Locator::Css("form[action$='/pay'] input[name='amount']")).await.unwrap();
    amount.clear().await.unwrap();
    amount.send_keys("50.00").await.unwrap();
    submit(&b, "form[action$='/pay'] button").await;
    let paid = text(&b).await;
    assert!(paid.contains("Saved.") && paid.contains("100.00"), "{paid}");
    snap(&b, "fees").await;
    // Every field on every page has a label a screen reader reads, and every button a name.
    let casey = b.current_url().await.unwrap().path().to_string();
    for page in [
        casey.as_str(),
        avery.as_str(),
        "/patrons?institution=MAIN&q=Reader",
        "/patrons/new",
        "/staff",
        "/accounts",
        "/deleted",
        "/transfers",
        "/terminals",
    ] {
        b.goto(&format!("http://{}{page}", d.console)).await.unwrap();
        assert_eq!(unlabelled(&b).await, Vec::<String>::new(), "{page}");
        // Text stands out from its background (WCAG AA, 4.5:1), and the keyboard goes
        // through the page in its order, starting at the link that skips to the content.
        assert_eq!(low_contrast(&b).await, Vec::<String>::new(), "{page}");
        let jumps = b.execute(
            "return document.querySelectorAll('[tabindex]:not([tabindex=\"-1\"]):not([tabindex=\"0\"])').length",
            vec![],
        );
        assert_eq!(jumps.await.unwrap(), 0, "{page}: no tabindex reorders the keyboard's way");
        // A page that starts in its search field (autofocus) is already where the keyboard is
        // wanted; any other starts at the skip link.
        let autofocus = b.execute("return document.querySelector('[autofocus]') !== null", vec![]).await.unwrap();
        if autofocus == false {
            b.find(Locator::Css("body")).await.unwrap().send_keys("\u{E004}").await.unwrap();
            let first = b.execute(
                "return document.activeElement.className + ' ' + document.activeElement.getAttribute('href')",
                vec![],
            );
            assert_eq!(first.await.unwrap(), "skip #main", "{page}: the first Tab reaches the skip link");
        }
    }
    // The checks find what they look for: a field added without a label, grey on white.
    b.execute("document.querySelector('main').appendChild(document.createElement('input')).name = 'bare';", vec![])
        .await
        .unwrap();
    assert_eq!(unlabelled(&b).await, vec!["field bare".to_string()]);
    b.execute("const p = document.createElement('p'); p.textContent = 'faint'; p.style.color = '#aaa'; document.querySelector('main').appendChild(p);", vec![])
        .await
        .unwrap();
    let faint = low_contrast(&b).await;
    assert!(faint.len() == 1 && faint[0].starts_with("faint: 2.3"), "{faint:?}");
    b.goto(&format!("http://{}/staff", d.console)).await.unwrap();
    assert!(text(&b).await.contains("Demo User Manager"));
    snap(&b, "staff").await;
    submit(&b, "header a[lang=sv]").await;
    let swedish = text(&b).await;
    assert!(swedish.contains("Medarbetare") && swedish.contains("Dina nycklar"), "{swedish}");
    b.goto(&format!("http://{}{avery}", d.console)).await.unwrap();
    snap(&b, "patron-sv").await;
    other.close().await.unwrap();
    b.close().await.unwrap();
}

/// The fields without a label (by `for`, by nesting or `aria-label`) and the buttons without
/// a name, on the page shown.
async fn unlabelled(b: &Client) -> Vec<String> {
    let script = r#"
        const fields = Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea'))
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
            .map(e => 'field ' + (e.name || e.id));
        const buttons = Array.from(document.querySelectorAll('button'))
            .filter(e => !e.textContent.trim() && !e.getAttribute('aria-label'))
            .map(e => 'button in ' + (e.form ? e.form.getAttribute('action') : '?'));
        return fields.concat(buttons);
    "#;
    let v = b.execute(script, vec![]).await.unwrap();
    v.as_array().unwrap().iter().map(|x| x.as_str().unwrap_or_default().to_string()).collect()
}

/// The texts on the page shown whose contrast with the background behind them is under 4.5:1
/// (WCAG 2's ratio of relative luminances), each with its ratio.
async fn low_contrast(b: &Client) -> Vec<String> {
    let script = r#"
        const rgb = c => (c.match(/[\d.]+/g) || []).map(Number);
        const lum = ([r, g, b]) => {
            const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
            return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
        };
        const behind = e => {
            for (; e; e = e.parentElement) {
                const c = rgb(getComputedStyle(e).backgroundColor);
                if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
            }
            return [255, 255, 255];
        };
        const out = [];
        for (const e of document.querySelectorAll('body *')) {
            const own = Array.from(e.childNodes).some(n => n.nodeType === 3 && n.textContent.trim());
            const box = e.getBoundingClientRect();
            if (!own || box.width === 0 || box.height === 0) continue;
            const [a, b] = [lum(rgb(getComputedStyle(e).color)), lum(behind(e))];
            const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
            if (ratio < 4.5) out.push(e.textContent.trim().slice(0, 20) + ': ' + ratio.toFixed(2));
        }
        return out;
    "#;
    let v = b.execute(script, vec![]).await.unwrap();
    v.as_array().unwrap().iter().map(|x| x.as_str().unwrap_or_default().to_string()).collect()
}

async fn snap_login(b: &Client, d: &Demo) {
    b.goto(&format!("http://{}/login", d.console)).await.unwrap();
    snap(b, "login").await;
}

async fn set_field(b: &Client, id: &str, value: &str) {
    let field = b.find(Locator::Id(id)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

async fn wait_for(b: &Client, wanted: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = b.source().await.unwrap();
        if page.contains(wanted) {
            return;
        }
        assert!(Instant::now() < deadline, "no {wanted:?} in {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether the page needs sideways scrolling at the window's width (not usable on a phone).
async fn wider_than_window(b: &Client) -> bool {
    let v = b.execute("return document.documentElement.scrollWidth > window.innerWidth;", vec![]).await.unwrap();
    v.as_bool().unwrap_or(true)
}

/// The patron pages on a phone-sized window: the welcome's link opens the choose-a-PIN page, the
/// PIN works at a kiosk, the link does not work twice; forgot PIN says the same for a known and
/// an unknown card; my pages show the loan and renew it, take a new e-mail address through its
/// link, and are labelled, legible and not wider than the phone, in English and Swedish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patron_uses_the_patron_pages_in_a_browser() {
    use common::smtp::SmtpSink;
    let driver = chromedriver();
    let sink = SmtpSink::start();
    let d = common::demo_with(&sink.mail_config());
    let b = browser(&driver, "en").await;
    b.set_window_size(390, 844).await.unwrap();
    let mail_to = |to: &str, path: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = sink.received().into_iter().find_map(|m| {
                let body = m.data.replace("=\r\n", "").replace("\r\n", "\n");
                let at = body.find(&format!("http://{}{path}", d.console))?;
                (m.to == [to]).then(|| body[at..].split_whitespace().next().unwrap().to_string())
            });
            if let Some(link) = found {
                return link;
            }
            assert!(Instant::now() < deadline, "no mail to {to}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    // Registered at the desk with an e-mail address and no PIN: the welcome's link.
    let new = r#"{"institution":"MAIN","primary_id":"S400","first_name":"Noor","last_name":"Self","birth_date":"1988-08-08","email":"noor@example.org","barcodes":["29990000000004"]}"#;
    let r = common::http(d.admin, "POST", "/api/v1/patrons", Some(&d.system), "", new);
    assert_eq!(r.status, 201, "{}", r.raw);
    let link = mail_to("noor@example.org", "/pin/");
    b.goto(&link).await.unwrap();
    assert!(text(&b).await.contains("Choose your PIN"));
    assert!(unlabelled(&b).await.is_empty(), "{:?}", unlabelled(&b).await);
    assert!(!wider_than_window(&b).await);
    snap(&b, "patron-choose-pin").await;
    set_field(&b, "pin", "4821").await;
    set_field(&b, "again", "4821").await;
    submit(&b, "main button[type=submit]").await;
    assert!(text(&b).await.contains("Your PIN is saved"));
    let mut k = common::Kiosk::connect(d.sip);
    assert_eq!(k.ask("9300CNkiosk1|COkiosk1-secret|"), "941");
    let status = k.ask("2300120261203    120000AOMAIN|AA29990000000004|AC|AD4821|");
    assert!(status.contains("|CQY|"), "{status}");
    // The same link again: refused as it opens, with the way to a new one.
    b.goto(&link).await.unwrap();
    let page = text(&b).await;
    assert!(page.contains("does not work") && page.contains("Get a new link"), "{page}");

    // Forgot PIN: the same answer for a card that is there and one that is not.
    let mut answers = Vec::new();
    for card in ["29990000000004", "29990000009999"] {
        b.goto(&format!("http://{}/forgot", d.console)).await.unwrap();
        b.find(Locator::Id("library")).await.unwrap().select_by_value("MAIN").await.unwrap();
        set_field(&b, "given", card).await;
        submit(&b, "main button[type=submit]").await;
        answers.push(text(&b).await);
    }
    assert!(answers[0].contains("on its way"), "{}", answers[0]);
    assert_eq!(answers[0], answers[1]);

    // My pages, as Avery: the loan, renewed.
    b.goto(&format!("http://{}/my", d.console)).await.unwrap();
    assert!(b.current_url().await.unwrap().path().starts_with("/my/login"));
    b.find(Locator::Id("library")).await.unwrap().select_by_value("MAIN").await.unwrap();
    set_field(&b, "card", "21000000000001").await;
    set_field(&b, "pin", "1234").await;
    submit(&b, "main button[type=submit]").await;
    let page = text(&b).await;
    assert!(page.contains("Hello Avery") && page.contains("31000000000003"), "{page}");
    assert!(unlabelled(&b).await.is_empty(), "{:?}", unlabelled(&b).await);
    assert!(low_contrast(&b).await.is_empty(), "{:?}", low_contrast(&b).await);
    assert!(!wider_than_window(&b).await, "my pages fit a phone");
    snap(&b, "patron-my-pages").await;
    submit(&b, "form[action='/my/renew'] button").await;
    assert!(text(&b).await.contains("Renewed."));
    // A new e-mail address, in force once its link is followed.
    set_field(&b, "email", "avery@example.org").await;
    submit(&b, "form[action='/my/email'] button").await;
    assert!(text(&b).await.contains("We sent a link"));
    let confirm = mail_to("avery@example.org", "/email/");
    b.goto(&confirm).await.unwrap();
    submit(&b, "main button[type=submit]").await;
    assert!(text(&b).await.contains("now writes to avery@example.org"));
    b.goto(&format!("http://{}/my", d.console)).await.unwrap();
    submit(&b, "form[action='/my/logout'] button").await;
    assert!(text(&b).await.contains("You are logged out"));
    b.close().await.unwrap();

    // In Swedish, from the link on every page.
    let sv = browser(&driver, "en").await;
    sv.goto(&format!("http://{}/my/login", d.console)).await.unwrap();
    submit(&sv, "header a[lang=sv]").await;
    assert!(sv.current_url().await.unwrap().path() == "/my/login");
    let page = text(&sv).await;
    assert!(page.contains("Logga in på ditt lånekonto") && page.contains("Glömt din PIN-kod?"), "{page}");
    snap(&sv, "patron-login-sv").await;
    sv.close().await.unwrap();
}
