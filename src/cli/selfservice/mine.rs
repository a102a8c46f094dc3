//! My pages: a patron logs in with card and PIN (on the kiosks' lockout counter) and sees their
//! loans, requests and fees; renews, cancels, changes contact details and notices, and asks to
//! move library. Each change is one engine operation (`Operation::AsPatron`), decided by the
//! rules kiosks and staff use.

use axum::Form;
use axum::extract::{Query as UrlQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::pin::{libraries, library_field};
use super::{ACTOR, COOKIE, lang, page, page_with, t};
use crate::cli::admin::AdminState;
use crate::cli::console::Lang;
use crate::cli::sessions::{Open, clear_named_cookie, cookies, same_secret, set_named_cookie};
use crate::domain::profile::Language;
use crate::domain::{AccountType, FeeKind, FeeStatus, HoldStatus, NoticeKind, Patron};
use crate::engine::{
    Answer, By, Card, Error, Operation, OwnAct, Pin, Query, QueuedHold, Receipt, Refusal, pin_session_tag,
};

/// The patron a request's cookie opens a session for, with the cookie.
fn session(state: &AdminState, headers: &HeaderMap) -> Option<(Open, u64, String)> {
    let now = std::time::Instant::now();
    cookies(headers, COOKIE).find_map(|c| {
        let open = state.patrons.sessions.find(c, now)?;
        let id = open.login.parse().ok()?;
        Some((open, id, c.to_string()))
    })
}

/// Back to the login page, the session (if any) ended; `why` is said there.
fn to_login(state: &AdminState, cookie: Option<&str>, why: &str) -> Response {
    if let Some(c) = cookie {
        state.patrons.sessions.close(c);
    }
    let to = if why.is_empty() { "/my/login".to_string() } else { format!("/my/login?why={why}") };
    ([(header::SET_COOKIE, clear_named_cookie(COOKIE))], Redirect::to(&to)).into_response()
}

#[derive(Deserialize, Default)]
pub(super) struct Said {
    #[serde(default)]
    why: Option<String>,
    #[serde(default)]
    done: Option<String>,
}

fn login_page(
    lang: Lang,
    status: StatusCode,
    all: &[(String, String)],
    chosen: Option<&str>,
    said: Option<&str>,
) -> Response {
    let title = t(lang, "Log in to your library account", "Logga in på ditt lånekonto");
    let body = html! {
        @if let Some(s) = said { p.error role="alert" { (s) } }
        form method="post" action="/my/login" {
            (library_field(lang, all, chosen))
            label for="card" { (t(lang, "Library card number", "Lånekortsnummer")) }
            input #card name="card" autocomplete="username" required autofocus;
            label for="pin" { (t(lang, "PIN", "PIN-kod")) }
            input #pin name="pin" type="password" inputmode="numeric" autocomplete="current-password" required;
            button type="submit" { (t(lang, "Log in", "Logga in")) }
        }
        p { a href="/forgot" { (t(lang, "Forgot your PIN?", "Glömt din PIN-kod?")) } }
    };
    page(lang, status, title, body)
}

pub(super) async fn login_form(
    State(state): State<AdminState>,
    headers: HeaderMap,
    UrlQuery(said): UrlQuery<Said>,
) -> Response {
    let lang = lang(&headers);
    if session(&state, &headers).is_some() {
        return Redirect::to("/my").into_response();
    }
    let why = match said.why.as_deref() {
        Some("ended") => Some(t(
            lang,
            "You were logged out: your PIN changed, or your card was locked. Log in again.",
            "Du har loggats ut: din PIN-kod har ändrats eller ditt kort har spärrats. Logga in igen.",
        )),
        Some("out") => Some(t(lang, "You are logged out.", "Du är utloggad.")),
        _ => None,
    };
    login_page(lang, StatusCode::OK, &libraries(&state).await, None, why)
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    library: String,
    #[serde(default)]
    card: String,
    #[serde(default)]
    pin: String,
}

/// Card and PIN, checked by the engine on the counter kiosks use: five wrong ones in a row
/// lock the card wherever they were typed. An unknown card and a wrong PIN get the same words,
/// after the same time.
pub(super) async fn login(
    State(state): State<AdminState>,
    headers: HeaderMap,
    request: axum::http::Extensions,
    Form(f): Form<LoginForm>,
) -> Response {
    let lang = lang(&headers);
    let started = tokio::time::Instant::now();
    if let Err(wait) = state.patrons.throttle.admit(super::peer(&request), std::time::Instant::now()) {
        return super::too_many(lang, wait);
    }
    let all = libraries(&state).await;
    if f.library.trim().is_empty() {
        let choose = t(lang, "Choose your library.", "Välj ditt bibliotek.");
        return login_page(lang, StatusCode::UNPROCESSABLE_ENTITY, &all, None, Some(choose));
    }
    let op = Operation::PatronLogin { institution: f.library.trim().into(), card: f.card, pin: Pin(f.pin) };
    let refused = match state.engine.run(op, By::new(ACTOR, jiff::Timestamp::now())).await {
        Ok(Receipt::Patron(p)) => {
            let Some(tag) = pin_session_tag(&p) else {
                return login_page(lang, StatusCode::SERVICE_UNAVAILABLE, &all, Some(&p.institution), None);
            };
            let Ok((cookie, _csrf)) =
                state.patrons.sessions.open_bound(&p.id.to_string(), &tag, std::time::Instant::now())
            else {
                return login_page(lang, StatusCode::SERVICE_UNAVAILABLE, &all, Some(&p.institution), None);
            };
            tracing::info!(patron = p.id, "patron login");
            let set = set_named_cookie(COOKIE, &cookie, state.patrons.sessions.limits());
            return ([(header::SET_COOKIE, set)], Redirect::to("/my")).into_response();
        }
        Ok(Receipt::Refused(r)) | Err(Error::Refused(r)) => r,
        Ok(_) | Err(_) => {
            let busy = t(
                lang,
                "Logging in does not work just now. Please try again in a while.",
                "Det går inte att logga in just nu. Försök igen om en stund.",
            );
            return login_page(lang, StatusCode::SERVICE_UNAVAILABLE, &all, Some(f.library.trim()), Some(busy));
        }
    };
    // Every refusal is answered the same time after the login began, whatever it wrote.
    tokio::time::sleep_until(started + state.patrons.refusal_time).await;
    let (status, text) = match refused {
        Refusal::LockedOut => (
            StatusCode::FORBIDDEN,
            t(
                lang,
                "Your card is locked after too many wrong PINs. Choose a new PIN with the link below, or ask at the desk.",
                "Ditt kort är spärrat efter för många felaktiga PIN-koder. Välj en ny PIN-kod med länken nedan, eller fråga i informationsdisken.",
            ),
        ),
        _ => (
            StatusCode::UNAUTHORIZED,
            t(lang, "The card number or PIN is not right.", "Kortnumret eller PIN-koden stämmer inte."),
        ),
    };
    login_page(lang, status, &all, Some(f.library.trim()), Some(text))
}

pub(super) async fn logout(State(state): State<AdminState>, headers: HeaderMap, Form(f): Form<OwnForm>) -> Response {
    match session(&state, &headers) {
        Some((open, _, cookie)) if same_secret(&f.csrf, &open.csrf) => to_login(&state, Some(&cookie), "out"),
        Some(_) => forbidden(lang(&headers)),
        None => to_login(&state, None, ""),
    }
}

fn forbidden(lang: Lang) -> Response {
    let text = t(
        lang,
        "That form was out of date. Go back, reload the page and try again.",
        "Formuläret var inaktuellt. Gå tillbaka, ladda om sidan och försök igen.",
    );
    page(
        lang,
        StatusCode::FORBIDDEN,
        t(lang, "Please try again", "Försök igen"),
        html! {
            p.error role="alert" { (text) }
            p { a href="/my" { (t(lang, "To my pages", "Till mina sidor")) } }
        },
    )
}

/// Everything the overview shows, read from one patron's committed records.
struct Mine {
    card: Card,
    holds: Vec<QueuedHold>,
    fees: Vec<crate::domain::Fee>,
    optouts: Vec<NoticeKind>,
    libraries: Vec<(String, String)>,
    titles: std::collections::HashMap<String, String>,
    currency: String,
    zone: jiff::tz::TimeZone,
}

async fn read(state: &AdminState, id: u64) -> Result<Mine, Error> {
    let q = |q| state.engine.query(q);
    let Answer::Card(card) = q(Query::Card { patron: id, now: jiff::Timestamp::now() }).await? else {
        return Err(Error::Refused(Refusal::NoPatron(format!("#{id}"))));
    };
    let Answer::Holds(holds) = q(Query::Holds { patron: Some(id), item: None }).await? else {
        return Err(unexpected());
    };
    let Answer::Fees(fees, _) = q(Query::Fees(id)).await? else { return Err(unexpected()) };
    let Answer::Optouts(optouts) = q(Query::Optouts(id)).await? else { return Err(unexpected()) };
    let Answer::Institution(home) = q(Query::Institution(card.patron.institution.clone())).await? else {
        return Err(unexpected());
    };
    let mut titles = std::collections::HashMap::new();
    let barcodes = card.loans.iter().map(|l| l.item.clone()).chain(holds.iter().filter_map(|h| h.hold.item.clone()));
    for b in barcodes {
        if let Ok(Answer::Item(facts)) = q(Query::Item(b.clone())).await {
            titles.insert(b, facts.item.title);
        }
    }
    Ok(Mine {
        libraries: libraries(state).await,
        holds,
        fees,
        optouts,
        titles,
        currency: home.currency.clone(),
        zone: home.time_zone(),
        card: *card,
    })
}

fn unexpected() -> Error {
    Error::Refused(Refusal::rule("unexpected answer".to_string()))
}

pub(super) async fn overview(
    State(state): State<AdminState>,
    headers: HeaderMap,
    UrlQuery(said): UrlQuery<Said>,
) -> Response {
    let lang = lang(&headers);
    let Some((open, id, cookie)) = session(&state, &headers) else { return to_login(&state, None, "") };
    let done = said.done.as_deref().and_then(|d| done_text(lang, d));
    show(&state, lang, &open, id, &cookie, StatusCode::OK, done.map(Ok)).await
}

/// The overview, with what the last action came to.
async fn show(
    state: &AdminState,
    lang: Lang,
    open: &Open,
    id: u64,
    cookie: &str,
    status: StatusCode,
    said: Option<Result<&str, String>>,
) -> Response {
    let mine = match read(state, id).await {
        Ok(m) => m,
        Err(Error::Refused(_)) => return to_login(state, Some(cookie), "ended"),
        Err(_) => {
            let busy = t(
                lang,
                "Your pages cannot be shown just now. Please try again in a while.",
                "Dina sidor kan inte visas just nu. Försök igen om en stund.",
            );
            return page(
                lang,
                StatusCode::SERVICE_UNAVAILABLE,
                t(lang, "My pages", "Mina sidor"),
                html! { p.error { (busy) } },
            );
        }
    };
    // The session holds while the PIN it was opened with is the patron's and the card is open.
    let p = &mine.card.patron;
    if p.locked || p.deleted.is_some() || pin_session_tag(p).is_none_or(|tag| !same_secret(&tag, &open.bound)) {
        return to_login(state, Some(cookie), "ended");
    }
    let title = match lang {
        Lang::Sv => format!("Hej {}", p.first_name),
        Lang::En => format!("Hello {}", p.first_name),
    };
    let body = html! {
        @match &said {
            Some(Ok(text)) => p.done role="status" { (text) },
            Some(Err(text)) => p.error role="alert" { (text) },
            None => {},
        }
        @for n in p.notes.iter().filter(|n| n.public) { p.note { (n.text) } }
        (loans(lang, &mine, &open.csrf))
        (requests(lang, &mine, &open.csrf))
        (fees(lang, &mine))
        (contact(lang, p, &open.csrf))
        (notices(lang, &mine, &open.csrf))
        (moving(lang, &mine, &open.csrf))
        section {
            form method="post" action="/my/logout" {
                input type="hidden" name="csrf" value=(open.csrf);
                button type="submit" { (t(lang, "Log out", "Logga ut")) }
            }
        }
    };
    page_with(lang, status, &title, body, None)
}

fn date_in(zone: &jiff::tz::TimeZone, at: jiff::Timestamp) -> jiff::civil::Date {
    at.to_zoned(zone.clone()).date()
}

fn loans(lang: Lang, m: &Mine, csrf: &str) -> Markup {
    let now = jiff::Timestamp::now();
    html! {
        section aria-labelledby="loans" {
            h2 #loans { (t(lang, "Loans", "Lån")) }
            @if m.card.loans.is_empty() {
                p { (t(lang, "You have nothing on loan.", "Du har inga lån.")) }
            } @else {
                table {
                    thead { tr { th { (t(lang, "Title", "Titel")) } th { (t(lang, "Due", "Åter")) } th { span.visually-hidden { (t(lang, "Renew", "Låna om")) } } } }
                    tbody {
                        @for l in &m.card.loans {
                            tr {
                                td { (m.titles.get(&l.item).map_or(l.item.as_str(), String::as_str)) br; small { (l.item) } }
                                td {
                                    (date_in(&m.zone, l.due))
                                    @if l.due < now { " " strong { (t(lang, "overdue", "försenad")) } }
                                }
                                td {
                                    form method="post" action="/my/renew" {
                                        input type="hidden" name="csrf" value=(csrf);
                                        input type="hidden" name="item" value=(l.item);
                                        button.small type="submit" aria-label=(format!("{} {}", t(lang, "Renew", "Låna om"), l.item)) { (t(lang, "Renew", "Låna om")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn requests(lang: Lang, m: &Mine, csrf: &str) -> Markup {
    html! {
        section aria-labelledby="requests" {
            h2 #requests { (t(lang, "Requests", "Reservationer")) }
            @if m.holds.is_empty() {
                p { (t(lang, "You have no requests.", "Du har inga reservationer.")) }
            } @else {
                table {
                    thead { tr { th { (t(lang, "Title", "Titel")) } th { (t(lang, "Pick up at", "Hämtas på")) } th { (t(lang, "Status", "Status")) } th {} } }
                    tbody {
                        @for q in &m.holds {
                            @let h = &q.hold;
                            @let what = h.item.as_ref().and_then(|i| m.titles.get(i)).or(h.title.as_ref()).or(h.item.as_ref()).cloned().unwrap_or_default();
                            tr {
                                td { (what) }
                                td { (m.libraries.iter().find(|(code, _)| *code == h.pickup).map_or(h.pickup.as_str(), |(_, name)| name.as_str())) }
                                td {
                                    @match (h.status, q.position) {
                                        (HoldStatus::Available, _) => (t(lang, "Ready to pick up", "Klar att hämta")),
                                        (HoldStatus::Waiting, Some(n)) => (match lang { Lang::Sv => format!("Plats {n} i kön"), Lang::En => format!("Number {n} in the queue") }),
                                        (HoldStatus::Waiting, None) => (t(lang, "Waiting", "Väntar")),
                                    }
                                }
                                td {
                                    form method="post" action="/my/cancel" {
                                        input type="hidden" name="csrf" value=(csrf);
                                        input type="hidden" name="hold" value=(h.id);
                                        button.small type="submit" aria-label=(format!("{} {what}", t(lang, "Cancel the request for", "Avboka reservationen av"))) { (t(lang, "Cancel", "Avboka")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn fees(lang: Lang, m: &Mine) -> Markup {
    let owed: Vec<_> = m.fees.iter().filter(|f| f.status == FeeStatus::Active).collect();
    let disputed: Vec<_> = m.fees.iter().filter(|f| f.status == FeeStatus::Disputed).collect();
    let line = |f: &crate::domain::Fee| {
        let what = f.item.as_ref().and_then(|i| m.titles.get(i).or(Some(i))).cloned().unwrap_or_default();
        html! { li { (fee_name(lang, f.kind)) @if !what.is_empty() { ", " (what) } ": " (f.outstanding()) " " (f.currency) } }
    };
    html! {
        section aria-labelledby="fees" {
            h2 #fees { (t(lang, "Fees", "Avgifter")) }
            p { strong { (t(lang, "Balance: ", "Att betala: ")) (m.card.balance) " " (m.currency) } }
            @if owed.is_empty() {
                p { (t(lang, "You owe nothing.", "Du har inga obetalda avgifter.")) }
            } @else {
                ul { @for f in &owed { (line(f)) } }
                p { (t(lang, "Pay at the desk or at a self-service machine.", "Betala i informationsdisken eller i en automat.")) }
            }
            @if !disputed.is_empty() {
                h3 { (t(lang, "Disputed (not in your balance while the library looks into them)", "Bestridda (räknas inte med medan biblioteket utreder dem)")) }
                ul { @for f in &disputed { (line(f)) } }
            }
        }
    }
}

/// What a fee is for, in the patron's words.
fn fee_name(lang: Lang, kind: FeeKind) -> &'static str {
    match kind {
        FeeKind::Other => t(lang, "Fee", "Avgift"),
        FeeKind::Administrative => t(lang, "Administrative fee", "Administrativ avgift"),
        FeeKind::Damage => t(lang, "Damage", "Skada"),
        FeeKind::Overdue => t(lang, "Overdue fine", "Förseningsavgift"),
        FeeKind::Processing => t(lang, "Processing fee", "Hanteringsavgift"),
        FeeKind::Rental => t(lang, "Rental", "Hyra"),
        FeeKind::Replacement => t(lang, "Replacement", "Ersättning"),
        FeeKind::ComputerAccess => t(lang, "Computer use", "Datoranvändning"),
        FeeKind::Hold => t(lang, "Request fee", "Reservationsavgift"),
    }
}

fn contact(lang: Lang, p: &Patron, csrf: &str) -> Markup {
    let synced = match &p.account_type {
        AccountType::External { source } => Some(source.as_str()),
        AccountType::Internal => None,
    };
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    html! {
        section aria-labelledby="contact" {
            h2 #contact { (t(lang, "Contact details", "Kontaktuppgifter")) }
            @if let Some(source) = synced {
                p.note { (match lang {
                    Lang::Sv => format!("Dina uppgifter kommer från {source} och ändras där."),
                    Lang::En => format!("Your details come from {source}; change them there."),
                }) }
            }
            dl {
                dt { (t(lang, "Name", "Namn")) } dd { (p.first_name) " " (p.last_name) }
                dt { (t(lang, "Card number", "Kortnummer")) } dd { (p.primary_id) }
                @if let Some(e) = &p.expiry { dt { (t(lang, "Card valid until", "Kortet gäller till")) } dd { (e) } }
            }
            form method="post" action="/my/contact" {
                input type="hidden" name="csrf" value=(csrf);
                label for="phone" { (t(lang, "Phone", "Telefon")) }
                input #phone name="phone" type="tel" autocomplete="tel" value=(value(&p.phone)) disabled[synced.is_some()];
                label for="address" { (t(lang, "Address", "Adress")) }
                input #address name="address" autocomplete="street-address" value=(value(&p.address)) disabled[synced.is_some()];
                label for="postal_code" { (t(lang, "Postal code", "Postnummer")) }
                input #postal_code name="postal_code" autocomplete="postal-code" value=(value(&p.postal_code)) disabled[synced.is_some()];
                @if synced.is_none() { button type="submit" { (t(lang, "Save my details", "Spara mina uppgifter")) } }
            }
            form method="post" action="/my/email" {
                input type="hidden" name="csrf" value=(csrf);
                label for="email" { (t(lang, "E-mail address", "E-postadress")) }
                input #email name="email" type="email" autocomplete="email" value=(value(&p.email)) disabled[synced.is_some()];
                @if synced.is_none() {
                    p { small { (t(lang, "A new address is used once you follow the link we send to it.", "En ny adress används när du har följt länken vi skickar till den.")) } }
                    button type="submit" { (t(lang, "Change my e-mail address", "Byt e-postadress")) }
                }
            }
        }
    }
}

/// The e-mail a patron may stop, as they choose it: each a name on the form and its kinds
/// (a move's three notices are one choice).
const CHOICES: [(&str, &[NoticeKind]); 3] = [
    ("report", &[NoticeKind::Report]),
    ("balance-due", &[NoticeKind::BalanceDue]),
    ("transfer", &[NoticeKind::TransferRequested, NoticeKind::TransferAccepted, NoticeKind::TransferDeclined]),
];

fn choice_name(lang: Lang, choice: &str) -> &'static str {
    match choice {
        "report" => t(lang, "Reports of loans and requests", "Sammanställningar av lån och reservationer"),
        "balance-due" => t(lang, "Reminders of fees due", "Påminnelser om avgifter"),
        _ => t(lang, "News of moves between libraries", "Besked om flytt mellan bibliotek"),
    }
}

fn notices(lang: Lang, m: &Mine, csrf: &str) -> Markup {
    html! {
        section aria-labelledby="notices" {
            h2 #notices { (t(lang, "E-mail from the library", "E-post från biblioteket")) }
            table {
                tbody {
                    @for (choice, kinds) in CHOICES {
                        @let out = kinds.iter().all(|k| m.optouts.contains(k));
                        @let name = choice_name(lang, choice);
                        tr {
                            td { (name) }
                            td { (if out { t(lang, "Not sent", "Skickas inte") } else { t(lang, "Sent", "Skickas") }) }
                            td {
                                form method="post" action="/my/notices" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    input type="hidden" name="kind" value=(choice);
                                    input type="hidden" name="out" value=(if out { "no" } else { "yes" });
                                    button.small type="submit" aria-label=(format!("{name}: {}", if out { t(lang, "start", "starta") } else { t(lang, "stop", "stoppa") })) {
                                        (if out { t(lang, "Start", "Starta") } else { t(lang, "Stop", "Stoppa") })
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn moving(lang: Lang, m: &Mine, csrf: &str) -> Markup {
    let p = &m.card.patron;
    let name = |code: &str| m.libraries.iter().find(|(c, _)| c == code).map_or(code.to_string(), |(_, n)| n.clone());
    let others: Vec<&(String, String)> = m.libraries.iter().filter(|(c, _)| *c != p.institution).collect();
    html! {
        @if let Some(tr) = &p.transfer {
            section aria-labelledby="move" {
                h2 #move { (t(lang, "Moving to another library", "Flytta till ett annat bibliotek")) }
                p { (match lang {
                    Lang::Sv => format!("Din flytt till {} väntar på bibliotekets beslut.", name(&tr.to)),
                    Lang::En => format!("Your move to {} is waiting for the library's decision.", name(&tr.to)),
                }) }
            }
        } @else if !others.is_empty() {
            section aria-labelledby="move" {
                h2 #move { (t(lang, "Moving to another library", "Flytta till ett annat bibliotek")) }
                form method="post" action="/my/move" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="to" { (t(lang, "Move my account to", "Flytta mitt konto till")) }
                    select #to name="to" { @for (code, n) in &others { option value=(code) { (n) } } }
                    button type="submit" { (t(lang, "Ask to move", "Be om flytt")) }
                }
            }
        }
    }
}

/// What a done action says on the overview it leads back to.
fn done_text(lang: Lang, key: &str) -> Option<&'static str> {
    Some(match key {
        "renewed" => {
            t(lang, "Renewed. The new due date is in the list.", "Omlånat. Det nya återlämningsdatumet står i listan.")
        }
        "cancelled" => t(lang, "Your request is cancelled.", "Din reservation är avbokad."),
        "contact" => t(lang, "Your details are saved.", "Dina uppgifter är sparade."),
        "email" => t(
            lang,
            "We sent a link to the new address. Your address changes when you follow it.",
            "Vi har skickat en länk till den nya adressen. Adressen byts när du följer den.",
        ),
        "notices" => t(lang, "Saved.", "Sparat."),
        "move" => t(
            lang,
            "Your request to move is sent. The library decides, and you hear by e-mail.",
            "Din begäran om flytt är skickad. Biblioteket beslutar, och du får besked via e-post.",
        ),
        _ => return None,
    })
}

/// A refusal as the patron reads it (never a staff sentence).
fn refusal_text(lang: Lang, r: &Refusal) -> String {
    let language = if lang == Lang::Sv { Language::Swedish } else { Language::English };
    match r {
        Refusal::Lending(d) => {
            let why = crate::service::words::denial(d, language);
            match lang {
                Lang::Sv => format!("Det gick inte att låna om: {why}"),
                Lang::En => format!("That could not be renewed: {why}"),
            }
        }
        Refusal::NotOnLoanToPatron => t(
            lang,
            "That item is no longer on loan to you (it may just have been returned).",
            "Det exemplaret är inte längre utlånat till dig (det kan just ha lämnats tillbaka).",
        )
        .into(),
        Refusal::NoHold(_) => {
            t(lang, "That request is no longer there.", "Den reservationen finns inte längre.").into()
        }
        Refusal::Invalid(crate::domain::validate::Invalid::Email(_)) => {
            t(lang, "That is not an e-mail address.", "Det är ingen e-postadress.").into()
        }
        Refusal::Invalid(_) => t(
            lang,
            "Something in the form is not right. Check it and try again.",
            "Något i formuläret stämmer inte. Kontrollera och försök igen.",
        )
        .into(),
        Refusal::AsItStands(crate::domain::AsItStands::NothingChanged(_)) => {
            t(lang, "Nothing was changed: that is what we have already.", "Inget ändrades: så står det redan.").into()
        }
        Refusal::AsItStands(crate::domain::AsItStands::TransferPending { .. }) => t(
            lang,
            "A move is already waiting for the library's decision.",
            "En flytt väntar redan på bibliotekets beslut.",
        )
        .into(),
        Refusal::AsItStands(crate::domain::AsItStands::AlreadyAt { .. }) => {
            t(lang, "Your account is at that library already.", "Ditt konto finns redan på det biblioteket.").into()
        }
        Refusal::Synced { .. } => t(
            lang,
            "That comes from your school's or employer's system: change it there.",
            "Det kommer från skolans eller arbetsgivarens system: ändra det där.",
        )
        .into(),
        Refusal::NoInstitution(_) => t(lang, "There is no such library.", "Det biblioteket finns inte.").into(),
        _ => t(lang, "That could not be done. Ask at the desk.", "Det gick inte. Fråga i informationsdisken.").into(),
    }
}

/// Runs one of the patron's own actions for the session the request carries, then leads back
/// to the overview saying what it came to.
async fn act(state: &AdminState, headers: &HeaderMap, csrf: &str, act: OwnAct, done: &str) -> Response {
    let lang = lang(headers);
    let Some((open, id, cookie)) = session(state, headers) else { return to_login(state, None, "") };
    if !same_secret(csrf, &open.csrf) {
        return forbidden(lang);
    }
    let op = Operation::AsPatron { patron: id, session: open.bound.clone(), act };
    match state.engine.run(op, By::new(ACTOR, jiff::Timestamp::now())).await {
        Ok(_) => Redirect::to(&format!("/my?done={done}")).into_response(),
        Err(Error::Refused(Refusal::PinNeeded | Refusal::LockedOut | Refusal::NoPatron(_))) => {
            to_login(state, Some(&cookie), "ended")
        }
        Err(Error::Refused(r)) => {
            let status = match r {
                Refusal::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::CONFLICT,
            };
            show(state, lang, &open, id, &cookie, status, Some(Err(refusal_text(lang, &r)))).await
        }
        Err(e) => {
            tracing::warn!(error = %e, "a patron's action failed");
            let busy = t(
                lang,
                "That could not be saved just now. Please try again in a while.",
                "Det kunde inte sparas just nu. Försök igen om en stund.",
            );
            show(state, lang, &open, id, &cookie, StatusCode::SERVICE_UNAVAILABLE, Some(Err(busy.into()))).await
        }
    }
}

/// Any of my pages' forms: the session's token and the fields of the one posted (a missing
/// field is empty, and the engine's rules answer it).
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct OwnForm {
    csrf: String,
    item: String,
    /// A number; anything else is no request of theirs.
    hold: String,
    phone: String,
    address: String,
    postal_code: String,
    email: String,
    kind: String,
    out: String,
    to: String,
}

pub(super) async fn renew(State(state): State<AdminState>, headers: HeaderMap, Form(f): Form<OwnForm>) -> Response {
    act(&state, &headers, &f.csrf, OwnAct::Renew { item: f.item }, "renewed").await
}

pub(super) async fn cancel_hold(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Form(f): Form<OwnForm>,
) -> Response {
    let hold = f.hold.trim().parse().unwrap_or(0);
    act(&state, &headers, &f.csrf, OwnAct::CancelHold { hold }, "cancelled").await
}

pub(super) async fn save_contact(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Form(f): Form<OwnForm>,
) -> Response {
    let change = OwnAct::Contact { phone: f.phone, address: f.address, postal_code: f.postal_code };
    act(&state, &headers, &f.csrf, change, "contact").await
}

/// A new address sends an e-mail: counted with the address's logins and forgot-PIN asks.
pub(super) async fn email(
    State(state): State<AdminState>,
    headers: HeaderMap,
    request: axum::http::Extensions,
    Form(f): Form<OwnForm>,
) -> Response {
    if let Err(wait) = state.patrons.throttle.admit(super::peer(&request), std::time::Instant::now()) {
        return super::too_many(lang(&headers), wait);
    }
    act(&state, &headers, &f.csrf, OwnAct::ChangeEmail { email: f.email }, "email").await
}

pub(super) async fn set_notices(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Form(f): Form<OwnForm>,
) -> Response {
    let Some((_, kinds)) = CHOICES.iter().find(|(choice, _)| *choice == f.kind) else {
        let lang = lang(&headers);
        return page(
            lang,
            StatusCode::UNPROCESSABLE_ENTITY,
            t(lang, "Please try again", "Försök igen"),
            html! {
                p.error role="alert" { (t(lang, "There is no such kind of e-mail.", "Det finns ingen sådan sorts e-post.")) }
            },
        );
    };
    let choice = OwnAct::OptOut { kinds: kinds.to_vec(), out: f.out == "yes" };
    act(&state, &headers, &f.csrf, choice, "notices").await
}

pub(super) async fn request_move(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Form(f): Form<OwnForm>,
) -> Response {
    act(&state, &headers, &f.csrf, OwnAct::RequestMove { to: f.to }, "move").await
}
