//! The staff console over HTTP, as a browser drives it: log in with the login form, find a
//! patron, block them (and a kiosk's 23 on a live SIP connection shows the block), a form
//! post without the session's CSRF token refused and not written, a desk member refused, two
//! staff members saving one patron (the second gets the conflict page and loses nothing),
//! another institution's patron not there, Swedish on request. (The same in a real browser is
//! `cargo test --test browser`.)

mod common;

use common::{Demo, demo};
use common::{form_post, http_as};

fn get(d: &Demo, path: &str, extra: &str) -> common::HttpReply {
    http_as(d.console, "GET", path, "text/plain", extra, "")
}

/// The value of the first `name="NAME" value="..."` in a page.
fn form_value(page: &str, name: &str) -> String {
    let at = page.find(&format!("name=\"{name}\" value=\"")).unwrap_or_else(|| panic!("no {name} in {page}"));
    let rest = &page[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// Logs in through the login form: the `Cookie:` header line the session then needs.
fn log_in(d: &Demo, login: &str, password: &str) -> String {
    let form = get(d, "/login", "");
    assert_eq!(form.status, 200, "{}", form.raw);
    let token = form_value(&form.raw, "form");
    let login_cookie = form.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    let r = form_post(
        d.console,
        "/login",
        &format!("Cookie: {login_cookie}\r\n"),
        &format!("login={login}&password={}&form={token}", password.replace(' ', "+")),
    );
    assert_eq!(r.status, 303, "{}", r.raw);
    assert_eq!(r.header("location"), Some("/patrons"));
    let set = r.header("set-cookie").unwrap();
    assert!(set.starts_with("__Host-sip2d_session=") && set.contains("HttpOnly") && set.contains("Secure"), "{set}");
    format!("Cookie: {}\r\n", set.split(';').next().unwrap())
}

fn patron_path(d: &Demo, cookie: &str, institution: &str, card: &str) -> String {
    let found = get(d, &format!("/patrons?institution={institution}&q={card}"), cookie);
    assert_eq!(found.status, 200, "{}", found.raw);
    let results = &found.raw[found.raw.find("<tbody>").unwrap_or_else(|| panic!("{card} not found: {}", found.raw))..];
    let at = results.find("href=\"/patrons/").unwrap();
    let rest = &results[at + 6..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// A kiosk's patron status for Avery: the 14 status flags of the 24.
fn kiosk_status(d: &Demo) -> String {
    let mut k = common::Kiosk::connect(d.sip);
    assert_eq!(k.ask("9300CNkiosk1|COkiosk1-secret|"), "941");
    let r = k.ask("2300120261203    120000AOMAIN|AA21000000000001|AC|AD1234|");
    assert!(r.starts_with("24"), "{r}");
    r[2..16].to_string()
}

#[test]
fn staff_block_a_patron_from_the_console_and_the_kiosk_sees_it() {
    let d = demo();
    // Not logged in: to the login page.
    let r = get(&d, "/patrons", "");
    assert_eq!((r.status, r.header("location")), (303, Some("/login")));
    // A login form posted from elsewhere (no login cookie) is refused.
    let r = form_post(d.console, "/login", "", "login=manager&password=manager-password&form=sip2d_x");
    assert_eq!(r.status, 403, "{}", r.raw);
    assert!(r.header("set-cookie").is_none_or(|c| !c.contains("__Host-sip2d_session=sip2d_")), "no session");

    let manager = log_in(&d, "manager", "manager-password");
    let avery = patron_path(&d, &manager, "MAIN", "21000000000001");
    let page = get(&d, &avery, &manager);
    assert_eq!(page.status, 200);
    assert!(page.raw.contains("Avery") && page.raw.contains("<label for=\"block-reason\">"), "{}", page.raw);
    let csrf = form_value(&page.raw, "csrf");
    let before = kiosk_status(&d);
    assert!(!before.starts_with('Y'), "not blocked yet: {before}");

    // Without the session's token (a forged post from another site's page): refused, unwritten.
    let blocks = format!("{avery}/blocks");
    let r = form_post(d.console, &blocks, &manager, "type=general&reason=Forged");
    assert_eq!(r.status, 403, "a form without its token: {}", r.raw);
    let r = form_post(d.console, &blocks, &manager, "csrf=sip2d_wrong&type=general&reason=Forged");
    assert_eq!(r.status, 403, "{}", r.raw);
    assert!(!get(&d, &avery, &manager).raw.contains("Forged"));
    assert!(!kiosk_status(&d).starts_with('Y'));

    // With it: blocked, and the kiosk's next 23 says so.
    let r = form_post(d.console, &blocks, &manager, &format!("csrf={csrf}&type=general&reason=Card+reported+stolen"));
    assert_eq!(r.status, 303, "{}", r.raw);
    let page = get(&d, &avery, &manager);
    assert!(
        page.raw.contains("Card reported stolen") && page.raw.contains("Demo User Manager (manager)"),
        "{}",
        page.raw
    );
    assert!(kiosk_status(&d).starts_with('Y'), "the kiosk sees the block");

    // The desk may look, not block.
    let desk = log_in(&d, "desk", "desk-password");
    let desk_csrf = form_value(&get(&d, &avery, &desk).raw, "csrf");
    let r = form_post(d.console, &blocks, &desk, &format!("csrf={desk_csrf}&type=general&reason=Desk+try"));
    assert_eq!(r.status, 403, "{}", r.raw);
    assert!(r.raw.contains("may not"), "{}", r.raw);
    assert!(!get(&d, &avery, &manager).raw.contains("Desk try"));

    // Lifting the block: the kiosk's 23 is clear again.
    let r = form_post(d.console, &format!("{avery}/blocks/general/lift"), &manager, &format!("csrf={csrf}"));
    assert_eq!(r.status, 303, "{}", r.raw);
    assert!(!kiosk_status(&d).starts_with('Y'));

    // Another institution's patron is not there; nor is it found.
    let branch = log_in(&d, "branch", "branch-password");
    let kim = patron_path(&d, &branch, "BRANCH", "22000000000001");
    let r = get(&d, &kim, &manager);
    assert_eq!(r.status, 404, "{}", r.raw);
    assert!(!r.raw.contains("Harbour"), "{}", r.raw);
    let r = get(&d, "/patrons?institution=BRANCH&q=22000000000001", &manager);
    assert!(!r.raw.contains("Harbour") && !r.raw.contains("<tbody>"), "{}", r.raw);

    // Logging out ends the session.
    let r = form_post(d.console, "/logout", &manager, &format!("csrf={csrf}"));
    assert_eq!(r.status, 303, "{}", r.raw);
    assert_eq!(get(&d, "/patrons", &manager).status, 303);
}

/// Two staff members open one patron; the first saves a new phone number, the second (who
/// still has the old version) a new e-mail: the second gets the conflict page, showing the
/// record as it is now and their e-mail still in the form; saving that keeps both changes.
#[test]
fn a_second_save_gets_the_conflict_page_and_nothing_is_lost() {
    let d = demo();
    let (one, two) = (log_in(&d, "manager", "manager-password"), log_in(&d, "admin", "admin-password"));
    let avery = patron_path(&d, &one, "MAIN", "21000000000001");
    let (page_one, page_two) = (get(&d, &avery, &one).raw, get(&d, &avery, &two).raw);
    let form = |page: &str, field: &str, value: &str| {
        let mut body = format!("csrf={}&version={}", form_value(page, "csrf"), form_value(page, "version"));
        let enc = |v: String| v.replace('+', "%2B").replace(' ', "+").replace('@', "%40");
        for f in ["first-name", "last-name", "email", "phone"] {
            let v = if f == field { value.to_string() } else { form_value(page, f) };
            body.push_str(&format!("&{f}={}&was-{f}={}", enc(v), enc(form_value(page, &format!("was-{f}")))));
        }
        body
    };
    let edit = format!("{avery}/edit");
    let r = form_post(d.console, &edit, &one, &form(&page_one, "phone", "+46 8 555 0101"));
    assert_eq!(r.status, 303, "{}", r.raw);
    let r = form_post(d.console, &edit, &two, &form(&page_two, "email", "avery@example.org"));
    assert_eq!(r.status, 409, "{}", r.raw);
    assert!(r.raw.contains("Someone else changed this patron"), "{}", r.raw);
    assert!(r.raw.contains("+46 8 555 0101"), "the record as it is now: {}", r.raw);
    assert_eq!(form_value(&r.raw, "email"), "avery@example.org", "their change is still in the form");
    // Saved from the conflict page (its version is the current one): both changes stand.
    let r = form_post(d.console, &edit, &two, &form(&r.raw, "email", "avery@example.org"));
    assert_eq!(r.status, 303, "{}", r.raw);
    let now = get(&d, &avery, &one).raw;
    assert_eq!(form_value(&now, "phone"), "+46 8 555 0101");
    assert_eq!(form_value(&now, "email"), "avery@example.org");
}

#[test]
fn the_console_speaks_swedish_when_asked() {
    let d = demo();
    let r = get(&d, "/login", "Accept-Language: sv-SE,sv;q=0.9\r\n");
    assert!(r.raw.contains("lang=\"sv\"") && r.raw.contains("Logga in") && r.raw.contains("Lösenord"), "{}", r.raw);
    let manager = log_in(&d, "manager", "manager-password");
    let r = get(&d, "/lang/sv", &manager);
    let lang = r.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    let both = format!("{}; {lang}\r\n", manager.trim_end());
    let page = get(&d, "/patrons?institution=MAIN&q=Reader", &both);
    assert!(page.raw.contains("Låntagare") && page.raw.contains("Användargrupp"), "{}", page.raw);
    // A wrong password says so, in Swedish.
    let form = get(&d, "/login", "Accept-Language: sv\r\n");
    let token = form_value(&form.raw, "form");
    let cookie = form.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    let r = form_post(
        d.console,
        "/login",
        &format!("Cookie: {cookie}\r\nAccept-Language: sv\r\n"),
        &format!("login=manager&password=fel&form={token}"),
    );
    assert_eq!(r.status, 401);
    assert!(r.raw.contains("Fel användarnamn eller lösenord"), "{}", r.raw);
    // The engine's refusals are said in Swedish too: a payment over what is owed, and the
    // desk's block.
    let casey = patron_path(&d, &both, "MAIN", "21000000000003");
    let page = get(&d, &casey, &both).raw;
    let csrf = form_value(&page, "csrf");
    let r = form_post(d.console, &action_ending(&page, "/pay"), &both, &format!("csrf={csrf}&amount=900.00"));
    assert!(r.raw.contains("900.00 är mer än de 150.00 som är skuld"), "{}", r.raw);
    let desk = log_in(&d, "desk", "desk-password");
    let desk_sv = format!("{}; {lang}\r\n", desk.trim_end());
    let desk_csrf = form_value(&get(&d, &casey, &desk_sv).raw, "csrf");
    let r =
        form_post(d.console, &format!("{casey}/blocks"), &desk_sv, &format!("csrf={desk_csrf}&type=general&reason=x"));
    assert_eq!(r.status, 403);
    assert!(
        r.raw.contains("en disk (endast läsning) får inte ändra låntagare (det kräver en användarhanterare)"),
        "{}",
        r.raw
    );
}

/// Adding a user: the mandatory fields, the optional ones behind "show optional fields", a
/// minor needs a guardian and consent, a taken primary id is refused with the form kept, and
/// a possible duplicate is registered only when staff say it is another person.
#[test]
fn staff_add_users_and_the_rules_are_said_in_the_form() {
    let d = demo();
    let manager = log_in(&d, "manager", "manager-password");
    let form = get(&d, "/patrons/new", &manager);
    assert_eq!(form.status, 200);
    assert!(form.raw.contains("<summary>Show optional fields</summary>"), "{}", form.raw);
    let csrf = form_value(&form.raw, "csrf");
    let post =
        |body: &str| form_post(d.console, "/patrons/new", &manager, &format!("csrf={csrf}&institution=MAIN&{body}"));

    let r = post("first_name=Maja&last_name=Nyberg&primary_id=U9001&barcode=21000000009001&email=maja%40example.org");
    assert_eq!(r.status, 303, "{}", r.raw);
    let page = get(&d, r.header("location").unwrap(), &manager);
    assert!(page.raw.contains("Nyberg, Maja") && page.raw.contains("21000000009001"), "{}", page.raw);
    assert!(page.raw.contains("Demo User Manager (manager)"), "the history names who added her");

    // The primary id is taken: refused, and what was typed is still there.
    let r = post("first_name=Other&last_name=Person&primary_id=U9001&phone=0701234567");
    assert_eq!(r.status, 409, "{}", r.raw);
    assert_eq!(form_value(&r.raw, "first_name"), "Other");
    assert_eq!(form_value(&r.raw, "phone"), "0701234567");
    // A missing last name, a bad date.
    assert_eq!(post("first_name=A&last_name=&primary_id=U9002").status, 422);
    let r = post("first_name=A&last_name=B&primary_id=U9002&birth_date=31%2F12%2F2001");
    assert_eq!(r.status, 422);
    assert!(r.raw.contains("is not a date like"), "{}", r.raw);
    // A minor: a guardian and consent are needed.
    let minor = "first_name=Liten&last_name=Läsare&primary_id=U9003&birth_date=2018-05-01";
    let r = post(minor);
    assert_eq!(r.status, 422, "{}", r.raw);
    let r = post(&format!("{minor}&guardian_name=Eva+L%C3%A4sare&guardian_contact=0709876543&consent=yes"));
    assert_eq!(r.status, 303, "{}", r.raw);
    // Same names and birth date as Liten: a possible duplicate, registered when forced.
    let twin = "first_name=Liten&last_name=Läsare&primary_id=U9004&birth_date=2018-05-01&guardian_name=E&guardian_contact=1&consent=yes";
    let r = post(twin);
    assert_eq!(r.status, 422, "{}", r.raw);
    assert!(r.raw.contains("name=\"force\""), "{}", r.raw);
    assert_eq!(post(&format!("{twin}&force=yes")).status, 303);
    // The desk may not add.
    let desk = log_in(&d, "desk", "desk-password");
    let desk_csrf = form_value(&get(&d, "/patrons/new", &desk).raw, "csrf");
    let r = form_post(
        d.console,
        "/patrons/new",
        &desk,
        &format!("csrf={desk_csrf}&institution=MAIN&first_name=X&last_name=Y&primary_id=U9005"),
    );
    assert_eq!(r.status, 403, "{}", r.raw);
}

/// The `action` of the first form whose action ends with `suffix`.
fn action_ending(page: &str, suffix: &str) -> String {
    let end = page.find(&format!("{suffix}\"")).unwrap_or_else(|| panic!("no form for {suffix} in {page}"));
    let start = page[..end].rfind("action=\"").unwrap() + 8;
    page[start..end + suffix.len()].to_string()
}

/// Fines and fees at the desk: a part payment, a payment that is not an amount, a waive with
/// a reason, a dispute taken back; a fee of another patron is not reachable through this one;
/// the desk role may not take money. Loans: a renewal and a check-in, and a renewal of an item
/// the patron does not have is refused (it would lend it).
#[test]
fn staff_take_payments_waive_and_dispute_fees_and_renew_and_check_in_loans() {
    let d = demo();
    let manager = log_in(&d, "manager", "manager-password");
    let casey = patron_path(&d, &manager, "MAIN", "21000000000003");
    let page = get(&d, &casey, &manager).raw;
    let csrf = form_value(&page, "csrf");
    assert!(page.contains("150.00") && page.contains("overdue"), "{page}");
    let pay = action_ending(&page, "/pay");

    let r = form_post(d.console, &pay, &manager, &format!("csrf={csrf}&amount=50.00"));
    assert_eq!(r.status, 303, "{}", r.raw);
    let page = get(&d, &casey, &manager).raw;
    assert!(page.contains("<strong>100.00</strong>"), "the balance after paying 50.00: {page}");
    let r = form_post(d.console, &pay, &manager, &format!("csrf={csrf}&amount=lots"));
    assert_eq!(r.status, 422, "{}", r.raw);
    assert!(r.raw.contains("Not an amount"), "{}", r.raw);
    let r = form_post(d.console, &pay, &manager, &format!("csrf={csrf}&amount=500.00"));
    assert!(r.status >= 400 && r.status < 500, "an overpayment is refused: {}", r.raw);

    // The desk may look at fees, not take money.
    let desk = log_in(&d, "desk", "desk-password");
    let desk_csrf = form_value(&get(&d, &casey, &desk).raw, "csrf");
    let r = form_post(d.console, &pay, &desk, &format!("csrf={desk_csrf}&amount=1.00"));
    assert_eq!(r.status, 403, "{}", r.raw);
    assert!(get(&d, &casey, &manager).raw.contains("<strong>100.00</strong>"), "nothing was paid");

    let waive = action_ending(&page, "/waive");
    let r = form_post(d.console, &waive, &manager, &format!("csrf={csrf}&reason=Goodwill"));
    assert_eq!(r.status, 303, "{}", r.raw);
    let page = get(&d, &casey, &manager).raw;
    assert!(page.contains("<strong>0.00</strong>") && page.contains("Waived"), "{page}");
    assert!(!page.contains("/pay\""), "a waived fee takes no payment: {page}");

    // Dana's disputed fee: left out of the balance until the dispute ends.
    let dana = patron_path(&d, &manager, "MAIN", "21000000000004");
    let page = get(&d, &dana, &manager).raw;
    assert!(page.contains("<strong>0.00</strong>") && page.contains("Disputed"), "{page}");
    let restore = action_ending(&page, "/restore");
    // Through Casey's page, Dana's fee is not there.
    let fee = restore.split('/').nth(4).unwrap();
    let r = form_post(d.console, &format!("{casey}/fees/{fee}/restore"), &manager, &format!("csrf={csrf}"));
    assert_eq!(r.status, 404, "{}", r.raw);
    assert!(get(&d, &dana, &manager).raw.contains("Disputed"));
    let r = form_post(d.console, &restore, &manager, &format!("csrf={csrf}"));
    assert_eq!(r.status, 303, "{}", r.raw);
    let page = get(&d, &dana, &manager).raw;
    assert!(page.contains("<strong>80.00</strong>"), "back in the balance: {page}");
    let dispute = action_ending(&page, "/dispute");
    assert_eq!(form_post(d.console, &dispute, &manager, &format!("csrf={csrf}")).status, 303);
    assert!(get(&d, &dana, &manager).raw.contains("<strong>0.00</strong>"));

    // Avery's loan: renewed once, then checked in.
    let avery = patron_path(&d, &manager, "MAIN", "21000000000001");
    let page = get(&d, &avery, &manager).raw;
    let renew = action_ending(&page, "/renew");
    let r = form_post(d.console, &renew, &manager, &format!("csrf={csrf}"));
    assert_eq!(r.status, 303, "{}", r.raw);
    assert!(get(&d, &avery, &manager).raw.contains("<td>1</td>"), "one renewal");
    let other = renew.replace("31000000000003", "31000000000001");
    let r = form_post(d.console, &other, &manager, &format!("csrf={csrf}"));
    assert_eq!(r.status, 404, "{}", r.raw);
    assert!(r.raw.contains("Not on loan"), "{}", r.raw);
    let checkin = action_ending(&page, "/checkin");
    let r = form_post(d.console, &checkin, &manager, &format!("csrf={csrf}"));
    assert_eq!(r.status, 303, "{}", r.raw);
    assert!(get(&d, &avery, &manager).raw.contains("No loans."));
}

/// The bank of deleted users: an administrator deletes Eli (no balance, no loan), who then
/// shows in the bank with the time of deletion; a User Manager sees the bank but no way back,
/// and a restore they post is refused; the administrator restores Eli, who leaves the bank.
#[test]
fn deleted_users_wait_in_the_bank_until_an_administrator_restores_them() {
    let d = demo();
    let admin = log_in(&d, "admin", "admin-password");
    let eli = patron_path(&d, &admin, "MAIN", "21000000000005");
    let page = get(&d, &eli, &admin).raw;
    let csrf = form_value(&page, "csrf");
    assert!(get(&d, "/deleted?institution=MAIN", &admin).raw.contains("No deleted users."));
    let r = form_post(d.console, &format!("{eli}/delete"), &admin, &format!("csrf={csrf}"));
    assert_eq!(r.status, 303, "{}", r.raw);
    let bank = get(&d, "/deleted?institution=MAIN", &admin).raw;
    assert!(bank.contains("Lapsed, Eli") && bank.contains(&format!("action=\"{eli}/restore\"")), "{bank}");
    assert!(bank.contains("CET"), "the time of deletion, in the institution's zone, named: {bank}");
    // Once deleted, the card is unknown to kiosks.
    let mut k = common::Kiosk::connect(d.sip);
    assert_eq!(k.ask("9300CNkiosk1|COkiosk1-secret|"), "941");
    assert!(k.ask("2300120261203    120000AOMAIN|AA21000000000005|AC|").contains("|BLN|"));

    let manager = log_in(&d, "manager", "manager-password");
    let bank = get(&d, "/deleted?institution=MAIN", &manager).raw;
    assert!(bank.contains("Lapsed, Eli") && !bank.contains("/restore\""), "no way back for a manager: {bank}");
    let manager_csrf = form_value(&get(&d, &eli, &manager).raw, "csrf");
    let r = form_post(d.console, &format!("{eli}/restore"), &manager, &format!("csrf={manager_csrf}"));
    assert_eq!(r.status, 403, "{}", r.raw);
    // Another institution's bank is not shown: the member's own is.
    let branch = log_in(&d, "branch", "branch-password");
    assert!(!get(&d, "/deleted?institution=MAIN", &branch).raw.contains("Eli"));

    let r = form_post(d.console, &format!("{eli}/restore"), &admin, &format!("csrf={csrf}"));
    assert_eq!(r.status, 303, "{}", r.raw);
    assert!(get(&d, "/deleted?institution=MAIN", &admin).raw.contains("No deleted users."));
    assert!(!get(&d, &eli, &admin).raw.contains("In the bank of deleted users"));
    assert!(k.ask("2300120261203    120000AOMAIN|AA21000000000005|AC|").contains("|BLY|"), "known again");
}

/// Identifiers, proxies and moves from the patron's page: an identifier added and turned
/// off (a kiosk no longer knows the card) and on again; a proxy added by card and removed; a
/// move to the branch asked for at the main library, seen and accepted only by the branch,
/// after which the patron is the branch's and no longer the main library's to see.
#[test]
fn identifiers_proxies_and_moves_between_libraries() {
    let d = demo();
    let manager = log_in(&d, "manager", "manager-password");
    let avery = patron_path(&d, &manager, "MAIN", "21000000000001");
    let page = get(&d, &avery, &manager).raw;
    let csrf = form_value(&page, "csrf");
    let post = |path: &str, body: &str| form_post(d.console, path, &manager, &format!("csrf={csrf}&{body}"));

    let r = post(&format!("{avery}/identifiers"), "kind=student-id&value=S-2026-17&note=From+the+student+office");
    assert_eq!(r.status, 303, "{}", r.raw);
    let page = get(&d, &avery, &manager).raw;
    assert!(page.contains("student-id: S-2026-17 – From the student office"), "{page}");
    let r = post(&format!("{avery}/identifiers"), "kind=barcode&value=21000000000003");
    assert_eq!(r.status, 409, "Casey's card is taken: {}", r.raw);

    let mut k = common::Kiosk::connect(d.sip);
    assert_eq!(k.ask("9300CNkiosk1|COkiosk1-secret|"), "941");
    let status = "2300120261203    120000AOMAIN|AA21000000000001|AC|";
    assert!(k.ask(status).contains("|BLY|"));
    let r = post(&format!("{avery}/identifiers/21000000000001/off"), "");
    assert_eq!(r.status, 303, "{}", r.raw);
    assert!(k.ask(status).contains("|BLN|"), "a card turned off is unknown at the kiosk");
    assert!(get(&d, &avery, &manager).raw.contains("21000000000001 (Inactive)"));
    assert_eq!(post(&format!("{avery}/identifiers/21000000000001/on"), "").status, 303);
    assert!(k.ask(status).contains("|BLY|"));

    let r = post(&format!("{avery}/proxy-for"), "card=21000000000003");
    assert_eq!(r.status, 303, "{}", r.raw);
    let casey = patron_path(&d, &manager, "MAIN", "21000000000003");
    let casey_id = casey.rsplit('/').next().unwrap();
    let page = get(&d, &avery, &manager).raw;
    assert!(page.contains(&format!("href=\"/patrons/{casey_id}\">#{casey_id}</a>")), "{page}");
    let r = post(&format!("{avery}/proxy-for"), "card=22000000000001");
    assert_eq!(r.status, 404, "the branch's patron is not there: {}", r.raw);
    assert_eq!(post(&format!("{avery}/proxy-for/{casey_id}/remove"), "").status, 303);
    assert!(get(&d, &avery, &manager).raw.contains("Acts for nobody."));

    // Dana moves to the branch: the main library asks, the branch decides.
    let dana = patron_path(&d, &manager, "MAIN", "21000000000004");
    let r = post(&format!("{dana}/transfer"), "to=BRANCH");
    assert_eq!(r.status, 303, "{}", r.raw);
    assert!(get(&d, &dana, &manager).raw.contains("A move is waiting"));
    assert!(get(&d, "/transfers", &manager).raw.contains("No users are waiting"), "not the main library's to decide");
    let r = form_post(d.console, &format!("/transfers/{}/accept", &dana[9..]), &manager, &format!("csrf={csrf}"));
    assert_eq!(r.status, 404, "{}", r.raw);
    let branch = log_in(&d, "branch", "branch-password");
    let list = get(&d, "/transfers", &branch).raw;
    assert!(list.contains("Disputes, Dana") && list.contains("MAIN"), "{list}");
    let branch_csrf = form_value(&list, "csrf");
    let r = form_post(d.console, &format!("/transfers/{}/accept", &dana[9..]), &branch, &format!("csrf={branch_csrf}"));
    assert_eq!(r.status, 303, "{}", r.raw);
    let page = get(&d, &dana, &branch);
    assert_eq!(page.status, 200, "the branch's now: {}", page.raw);
    assert!(page.raw.contains("<td>BRANCH</td>"), "{}", page.raw);
    assert_eq!(get(&d, &dana, &manager).status, 404, "no longer the main library's");
    assert!(get(&d, "/transfers", &branch).raw.contains("No users are waiting"));
}

/// Staff and terminal accounts from the console: an administrator adds a member (offered only
/// roles below their own), makes a token of their own that opens the API until revoked, and
/// removes the member; adds a terminal account a kiosk then logs in with, gives it a new
/// password (the old one stops working) and removes it. A User Manager sees both lists and no
/// forms, and what they post is refused.
#[test]
fn administrators_manage_staff_and_terminal_accounts() {
    let d = demo();
    let admin = log_in(&d, "admin", "admin-password");
    let page = get(&d, "/staff", &admin).raw;
    let csrf = form_value(&page, "csrf");
    assert!(page.contains("<td>desk</td>") && page.contains("<td>manager</td>"), "{page}");
    assert!(page.contains("value=\"user-manager\"") && !page.contains("value=\"main-administrator\""), "{page}");
    let post = |cookie: &str, path: &str, body: &str| form_post(d.console, path, cookie, body);
    let r = post(
        &admin,
        "/staff",
        &format!("csrf={csrf}&login=nora&name=Nora+New&password=a+long+password&role=user-manager&institution=MAIN"),
    );
    assert_eq!(r.status, 303, "{}", r.raw);
    assert!(get(&d, "/staff", &admin).raw.contains("Nora New"));
    let r =
        post(&admin, "/staff", &format!("csrf={csrf}&login=short&name=S&password=short&role=desk&institution=MAIN"));
    assert_eq!(r.status, 422, "a short password: {}", r.raw);

    let r = post(&admin, "/staff/tokens", &format!("csrf={csrf}&label=Reports"));
    assert_eq!(r.status, 200, "{}", r.raw);
    let at = r.raw.find("<code>sip2d_").unwrap_or_else(|| panic!("the token is shown: {}", r.raw)) + 6;
    let token = &r.raw[at..at + r.raw[at..].find('<').unwrap()];
    let me = common::http(d.console, "GET", "/api/v1/me", Some(token), "", "");
    assert_eq!((me.status, me.body["login"].as_str()), (200, Some("admin")), "{}", me.raw);
    assert!(!get(&d, "/staff", &admin).raw.contains(token), "shown once only");
    let revoke = action_ending(&r.raw, "/revoke");
    assert_eq!(post(&admin, &revoke, &format!("csrf={csrf}")).status, 303);
    assert_eq!(common::http(d.console, "GET", "/api/v1/me", Some(token), "", "").status, 401);

    // A User Manager: the lists, no forms, and a post refused.
    let manager = log_in(&d, "manager", "manager-password");
    let page = get(&d, "/staff", &manager).raw;
    assert!(page.contains("Nora New") && !page.contains("action=\"/staff\""), "{page}");
    let manager_csrf = form_value(&page, "csrf");
    let r = post(&manager, "/staff/nora/remove", &format!("csrf={manager_csrf}"));
    assert_eq!(r.status, 403, "{}", r.raw);
    assert_eq!(post(&admin, "/staff/nora/remove", &format!("csrf={csrf}")).status, 303);
    assert!(!get(&d, "/staff", &admin).raw.contains("Nora New"));

    // A terminal account, used by a kiosk.
    let r = post(
        &admin,
        "/accounts",
        &format!("csrf={csrf}&login=kiosk9&password=first-secret&institution=MAIN&location=Lobby"),
    );
    assert_eq!(r.status, 303, "{}", r.raw);
    let list = get(&d, "/accounts", &admin).raw;
    assert!(list.contains("<td>kiosk9</td>") && list.contains("Lobby") && !list.contains("argon2"), "{list}");
    let login = |password: &str| common::Kiosk::connect(d.sip).ask(&format!("9300CNkiosk9|CO{password}|"));
    assert_eq!(login("first-secret"), "941");
    assert_eq!(post(&admin, "/accounts/kiosk9/password", &format!("csrf={csrf}&password=second-secret")).status, 303);
    assert_eq!(login("first-secret"), "940");
    assert_eq!(login("second-secret"), "941");
    let page = get(&d, "/accounts", &manager).raw;
    assert!(page.contains("kiosk9") && !page.contains("action=\"/accounts\""), "{page}");
    assert_eq!(post(&manager, "/accounts/kiosk9/remove", &format!("csrf={manager_csrf}")).status, 403);
    assert_eq!(login("second-secret"), "941");
    assert_eq!(post(&admin, "/accounts/kiosk9/remove", &format!("csrf={csrf}")).status, 303);
    assert_eq!(login("second-secret"), "940");
}

/// The welcome, from the console: a user added with the invitation gets it in the outbox, one
/// added without does not until staff send it from their page; a patron without an e-mail
/// address is offered no invitation.
#[test]
fn staff_add_users_with_or_without_the_invitation_and_send_it_later() {
    let d = demo();
    let manager = log_in(&d, "manager", "manager-password");
    let form = get(&d, "/patrons/new", &manager).raw;
    assert!(form.contains("name=\"invite\" value=\"yes\" checked"), "checked by default: {form}");
    let csrf = form_value(&form, "csrf");
    let welcomes_to = |address: &str| {
        let r = common::http(d.admin, "POST", "/v1/queries", Some(&d.system), "", r#"{"query":"outbox"}"#);
        assert_eq!(r.status, 200, "{}", r.raw);
        r.body["outbox"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["kind"] == "welcome" && n["to"].as_str() == Some(address))
            .count()
    };
    let add = |id: &str, email: &str, invite: bool| {
        let invite = if invite { "&invite=yes" } else { "" };
        form_post(
            d.console,
            "/patrons/new",
            &manager,
            &format!(
                "csrf={csrf}&institution=MAIN&primary_id={id}&first_name=Ines&last_name=Inbjuden{id}&email={email}{invite}"
            ),
        )
    };
    let r = add("U9001", "ines1%40example.org", true);
    assert_eq!(r.status, 303, "{}", r.raw);
    assert_eq!(welcomes_to("ines1@example.org"), 1);
    let r = add("U9002", "ines2%40example.org", false);
    assert_eq!(r.status, 303, "{}", r.raw);
    assert_eq!(welcomes_to("ines2@example.org"), 0, "added without the invitation");
    let page = r.header("location").unwrap().split('?').next().unwrap().to_string();
    let r = form_post(d.console, &format!("{page}/invitation"), &manager, &format!("csrf={csrf}"));
    assert_eq!(r.status, 303, "{}", r.raw);
    assert_eq!(welcomes_to("ines2@example.org"), 1, "sent from the patron's page");
    // Eli has no e-mail address: no invitation offered, and one posted is refused.
    let eli = patron_path(&d, &manager, "MAIN", "21000000000005");
    assert!(!get(&d, &eli, &manager).raw.contains("/invitation\""));
    let r = form_post(d.console, &format!("{eli}/invitation"), &manager, &format!("csrf={csrf}"));
    assert_eq!(r.status, 422, "{}", r.raw);
    assert!(r.raw.contains("no e-mail address"), "{}", r.raw);
}

/// A multipart form post as a browser sends a file form: the token field (if given), then the
/// file.
fn upload(d: &Demo, path: &str, cookie: &str, csrf: Option<&str>, name: &str, bytes: &[u8]) -> common::HttpReply {
    let boundary = "----sip2dtestboundary";
    let mut body = String::new();
    if let Some(c) = csrf {
        body.push_str(&format!("--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{c}\r\n"));
    }
    body.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    ));
    // The tests' files are text (the picture's signature is written as the bytes it is).
    body.push_str(&String::from_utf8_lossy(bytes));
    body.push_str(&format!("\r\n--{boundary}--\r\n"));
    http_as(d.console, "POST", path, &format!("multipart/form-data; boundary={boundary}"), cookie, &body)
}

/// The details tabs in the console: contacts (one made preferred, which the record then
/// shows), a statistical category, an attachment uploaded as a file form (downloaded as it
/// was, never as a page), and the picture (a page is no picture). A file form without the
/// session's token is refused and writes nothing.
#[test]
fn contacts_statistics_attachments_and_the_picture_from_the_console() {
    let d = demo();
    let manager = log_in(&d, "manager", "manager-password");
    let avery = patron_path(&d, &manager, "MAIN", "21000000000001");
    let page = get(&d, &avery, &manager).raw;
    let csrf = form_value(&page, "csrf");
    let post = |path: &str, body: &str| form_post(d.console, path, &manager, &format!("csrf={csrf}&{body}"));

    let r = post(&format!("{avery}/contacts"), "kind=email&value=avery%40work.example&postal_code=&use=work");
    assert_eq!(r.status, 303, "{}", r.raw);
    let page = get(&d, &avery, &manager).raw;
    assert!(page.contains("<td>avery@work.example</td><td>Work</td>"), "{page}");
    let r = post(&format!("{avery}/contacts"), "kind=phone&value=07%7C1&use=mobile");
    assert_eq!(r.status, 422, "{}", r.raw);
    assert!(r.raw.contains("role=\"alert\""), "{}", r.raw);
    let r = post(&format!("{avery}/contacts/1/prefer"), "");
    assert_eq!(r.status, 303, "{}", r.raw);
    let page = get(&d, &avery, &manager).raw;
    assert!(page.contains("<td>avery@work.example</td><td><strong>Preferred</strong></td>"), "{page}");

    let r = post(&format!("{avery}/statistics"), "category=distance-student&note=Since+2026");
    assert_eq!(r.status, 303, "{}", r.raw);
    let page = get(&d, &avery, &manager).raw;
    assert!(page.contains("<strong>distance-student</strong> – Since 2026"), "{page}");
    assert_eq!(post(&format!("{avery}/statistics/1/remove"), "").status, 303);
    assert!(get(&d, &avery, &manager).raw.contains("No statistical categories."));

    // A file form without the token: refused, nothing attached.
    let form = "<form action=https://evil.example><input name=pin></form>";
    let r = upload(&d, &format!("{avery}/attachments"), &manager, None, "form.html", form.as_bytes());
    assert_eq!(r.status, 403, "{}", r.raw);
    assert!(get(&d, &avery, &manager).raw.contains("No attachments."));
    let r = upload(&d, &format!("{avery}/attachments"), &manager, Some(&csrf), "form.html", form.as_bytes());
    assert_eq!(r.status, 303, "{}", r.raw);
    let page = get(&d, &avery, &manager).raw;
    assert!(page.contains("form.html</a> (text/plain,"), "{page}");
    let got = get(&d, &format!("{avery}/attachments/1"), &manager);
    assert_eq!((got.status, got.raw.as_str()), (200, form));
    assert_eq!(got.header("content-type"), Some("text/plain"));
    assert!(got.header("content-disposition").is_some_and(|v| v.starts_with("attachment")), "{}", got.head);
    assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
    // Another institution's staff member: not there.
    let branch = log_in(&d, "branch", "branch-password");
    assert_eq!(get(&d, &format!("{avery}/attachments/1"), &branch).status, 404);

    let r = upload(&d, &format!("{avery}/picture"), &manager, Some(&csrf), "me.html", form.as_bytes());
    assert_eq!(r.status, 422, "{}", r.raw);
    assert!(r.raw.contains("PNG"), "{}", r.raw);
    let gif = b"GIF89a\x01\x00\x01\x00";
    let r = upload(&d, &format!("{avery}/picture"), &manager, Some(&csrf), "me.gif", gif);
    assert_eq!(r.status, 303, "{}", r.raw);
    let page = get(&d, &avery, &manager).raw;
    assert!(page.contains("alt=\"Picture of Avery Reader\""), "{page}");
    let got = get(&d, &format!("{avery}/picture"), &manager);
    assert_eq!((got.status, got.header("content-type")), (200, Some("image/gif")), "{}", got.head);
    assert_eq!(post(&format!("{avery}/picture/remove"), "").status, 303);
    assert!(get(&d, &avery, &manager).raw.contains("No picture."));
    assert_eq!(post(&format!("{avery}/attachments/1/remove"), "").status, 303);
    assert_eq!(get(&d, &format!("{avery}/attachments/1"), &manager).status, 404);
}

/// The general tab's fields are edited from the console; an external account's synced ones are
/// shown but not offered, and a forged post of one is refused, in the member's language, with
/// nothing written. The engine's "as it stands" refusals are said in Swedish too.
#[test]
fn external_accounts_keep_their_synced_fields_and_the_desk_hears_why_in_swedish() {
    let d = demo();
    let manager = log_in(&d, "manager", "manager-password");
    let avery = patron_path(&d, &manager, "MAIN", "21000000000001");
    let page = get(&d, &avery, &manager).raw;
    let (csrf, version) = (form_value(&page, "csrf"), form_value(&page, "version"));
    let edit = |cookie: &str, version: &str, body: &str| {
        form_post(d.console, &format!("{avery}/edit"), cookie, &format!("csrf={csrf}&version={version}&{body}"))
    };
    // The general tab's fields: group, expiry and record type, from the form.
    let r = edit(
        &manager,
        &version,
        "group=adult&was-group=&expiry=2029-06-30&was-expiry=&record-type=staff&was-record-type=public",
    );
    assert_eq!(r.status, 303, "{}", r.raw);
    let page = get(&d, &avery, &manager).raw;
    assert!(page.contains("<td>adult</td>") && page.contains("<td>2029-06-30</td>"), "{page}");
    assert!(page.contains("<option value=\"staff\" selected>"), "{page}");

    // Made an account of the student system (the account type is not the sync's).
    let version = form_value(&page, "version");
    let r = form_post(
        d.console,
        &format!("{avery}/edit"),
        &manager,
        &format!("csrf={csrf}&version={version}&account-type=external%3Aladok"),
    );
    // The console's form does not offer the account type; the API and the CLI do.
    assert_eq!(r.status, 303, "nothing it takes was changed: {}", r.raw);
    let t = Some(d.system.as_str());
    let id = avery.rsplit('/').next().unwrap();
    let r = common::http(d.admin, "GET", &format!("/api/v1/patrons/{id}"), t, "", "");
    let etag = r.etag.unwrap();
    let r = common::http(
        d.admin,
        "PATCH",
        &format!("/api/v1/patrons/{id}"),
        t,
        &format!("If-Match: {etag}\r\n"),
        r#"{"account-type":"external:ladok"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.raw);

    let page = get(&d, &avery, &manager).raw;
    assert!(page.contains("come from the student system's sync: <strong>ladok</strong>"), "{page}");
    assert!(page.contains("id=\"first-name\" type=\"text\" name=\"first-name\" value=\"Avery\" disabled"), "{page}");
    assert!(!page.contains("id=\"language\" type=\"text\" name=\"language\" value=\"\" disabled"), "{page}");
    let version = form_value(&page, "version");
    let r = edit(&manager, &version, "first-name=Ava&was-first-name=Avery");
    assert_eq!(r.status, 422, "{}", r.raw);
    assert!(r.raw.contains("first-name of an external account comes from ladok"), "{}", r.raw);
    let r = edit(&manager, &version, "language=sv&was-language=");
    assert_eq!(r.status, 303, "what the sync does not own is staff's: {}", r.raw);

    // In Swedish: the synced field, and lifting a block that is not there.
    let r = get(&d, "/lang/sv", &manager);
    let lang = r.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    let sv = format!("{}; {lang}\r\n", manager.trim_end());
    let version = form_value(&get(&d, &avery, &sv).raw, "version");
    let r = edit(&sv, &version, "last-name=Läsare&was-last-name=Reader");
    assert_eq!(r.status, 422, "{}", r.raw);
    assert!(r.raw.contains("efternamnet i ett externt konto kommer från ladok"), "{}", r.raw);
    let r = edit(&sv, &version, "language=s%7Cv&was-language=sv");
    assert_eq!(r.status, 422, "{}", r.raw);
    assert!(r.raw.contains("språk får inte innehålla"), "{}", r.raw);
    let r = form_post(d.console, &format!("{avery}/blocks/lost-card/lift"), &sv, &format!("csrf={csrf}"));
    assert_eq!(r.status, 422, "{}", r.raw);
    assert!(r.raw.contains("har ingen aktiv spärr av typen 'lost-card'"), "{}", r.raw);
    let page = get(&d, &avery, &manager).raw;
    assert!(page.contains("<td>Reader</td>") && page.contains("<td>Avery</td>"), "nothing synced was written: {page}");
}

/// Requests (holds) on the patron's page: placed on a title at the desk, listed, cancelled; refused to a patron whose fines block requests; another
/// patron's request cannot be cancelled from this page.
#[test]
fn staff_place_and_cancel_requests_from_the_patrons_page() {
    let d = demo();
    let manager = log_in(&d, "manager", "manager-password");
    let avery = patron_path(&d, &manager, "MAIN", "21000000000001");
    let casey = patron_path(&d, &manager, "MAIN", "21000000000003");
    let dana = patron_path(&d, &manager, "MAIN", "21000000000004");
    let page = get(&d, &avery, &manager).raw;
    assert!(page.contains("No requests."), "{page}");
    let csrf = form_value(&page, "csrf");
    let post = |path: &str, body: &str| form_post(d.console, path, &manager, &format!("csrf={csrf}&{body}"));
    let r = post(&format!("{avery}/holds"), "by=title&on=Dune&pickup=MAIN");
    assert_eq!(r.status, 303, "{}", r.raw);
    // Casey's fines block requests, and the page says so.
    let r = post(&format!("{casey}/holds"), "by=title&on=Dune&pickup=MAIN");
    assert_eq!(r.status, 422, "{}", r.raw);
    assert!(r.raw.contains("may not place holds"), "{}", r.raw);
    let r = post(&format!("{dana}/holds"), "by=title&on=Dune&pickup=MAIN");
    assert_eq!(r.status, 303, "{}", r.raw);
    let page = get(&d, &avery, &manager).raw;
    // A request on a title has no queue of one copy: its place is blank.
    assert!(page.contains("<td>Dune</td><td>MAIN</td><td></td><td>Waiting</td>"), "{page}");
    let dana_page = get(&d, &dana, &manager).raw;
    assert!(dana_page.contains("<td>Dune</td><td>MAIN</td>"), "{dana_page}");
    let cancel = action_ending(&page, "/cancel");
    let hold = cancel.rsplit('/').nth(1).unwrap();
    // From Dana's page, Avery's request is not there.
    let r = post(&format!("{dana}/holds/{hold}/cancel"), "");
    assert_eq!(r.status, 404, "{}", r.raw);
    let r = post(&cancel, "");
    assert_eq!(r.status, 303, "{}", r.raw);
    assert!(get(&d, &avery, &manager).raw.contains("No requests."));
    assert!(get(&d, &dana, &manager).raw.contains("<td>Dune</td><td>MAIN</td>"), "Dana's stays");
    let r = post(&format!("{avery}/holds"), "by=item&on=NO-SUCH-ITEM&pickup=MAIN");
    assert_eq!(r.status, 404, "{}", r.raw);
}
