//! The patron pages reached from an e-mail: choosing a PIN from a link (the welcome's, or one
//! asked for on the forgot-PIN page), and confirming a new e-mail address.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::{ACTOR, lang, page, t};
use crate::cli::admin::AdminState;
use crate::cli::console::Lang;
use crate::domain::PinPolicy;
use crate::engine::{Answer, By, Error, Operation, Pin, Query, Receipt, Refusal};

/// The policy the link's patron is held to, or why the link does not work now.
async fn policy(state: &AdminState, token: &str) -> Result<PinPolicy, Error> {
    let q = Query::LinkPolicy { token: Pin(token.to_string()), now: jiff::Timestamp::now() };
    match state.engine.query(q).await? {
        Answer::PinPolicy(p) => p.map_err(Error::Refused),
        _ => Err(Error::Refused(Refusal::LinkUnusable { expired: false })),
    }
}

/// The page of a link that does not work: why, and where to get a new one.
fn link_gone(lang: Lang, e: &Error) -> Response {
    let (status, text) = told(lang, e);
    page(
        lang,
        status,
        t(lang, "Choose your PIN", "Välj din PIN-kod"),
        html! {
            p.error role="alert" { (text) }
            p { a href="/forgot" { (t(lang, "Get a new link", "Få en ny länk")) } }
        },
    )
}

fn pin_form(lang: Lang, status: StatusCode, error: Option<&str>, policy: &PinPolicy) -> Response {
    let title = t(lang, "Choose your PIN", "Välj din PIN-kod");
    let (about, numeric) = match policy {
        PinPolicy::FourDigits => (t(lang, "Your PIN is four digits you use with your library card at the self-service machines. Choose one that is hard to guess: not 0000, 1234 or your birth year.", "PIN-koden är fyra siffror som du använder med ditt lånekort i automaterna. Välj en som är svår att gissa: inte 0000, 1234 eller ditt födelseår.").to_string(), true),
        PinPolicy::Password { min_len } => (match lang {
            Lang::Sv => format!("Ditt lösenord använder du med ditt lånekort i automaterna. Det ska ha minst {min_len} tecken."),
            Lang::En => format!("You use your password with your library card at the self-service machines. It has at least {min_len} characters."),
        }, false),
    };
    let body = html! {
        @if let Some(e) = error { p.error role="alert" { (e) } }
        p { (about) }
        form method="post" {
            label for="pin" { (t(lang, "New PIN", "Ny PIN-kod")) }
            input #pin name="pin" type="password" inputmode=[numeric.then_some("numeric")] autocomplete="new-password" required autofocus;
            label for="again" { (t(lang, "The same PIN again", "Samma PIN-kod igen")) }
            input #again name="again" type="password" inputmode=[numeric.then_some("numeric")] autocomplete="new-password" required;
            button type="submit" { (t(lang, "Save my PIN", "Spara min PIN-kod")) }
        }
    };
    page(lang, status, title, body)
}

/// The form, once the link is known to work (a used, replaced or expired link is said at
/// once: the patron types nothing in vain).
pub(super) async fn show(State(state): State<AdminState>, Path(token): Path<String>, headers: HeaderMap) -> Response {
    let lang = lang(&headers);
    match policy(&state, &token).await {
        Ok(rule) => pin_form(lang, StatusCode::OK, None, &rule),
        Err(e) => link_gone(lang, &e),
    }
}

#[derive(Deserialize)]
pub(super) struct PinForm {
    pin: String,
    again: String,
}

/// What a refusal of the link or the PIN tells the patron (never a staff sentence).
fn told(lang: Lang, e: &Error) -> (StatusCode, &'static str) {
    use crate::domain::validate::Invalid;
    match e {
        Error::Refused(Refusal::LinkUnusable { expired: true }) => (
            StatusCode::GONE,
            t(
                lang,
                "This link has expired. Get a new one below, or ask the library.",
                "Länken har gått ut. Få en ny nedan, eller fråga biblioteket.",
            ),
        ),
        Error::Refused(Refusal::LinkUnusable { expired: false } | Refusal::NoPatron(_)) => (
            StatusCode::NOT_FOUND,
            t(
                lang,
                "This link does not work: it was used already, or a newer one was sent. Get a new one below, or ask the library.",
                "Länken fungerar inte: den har redan använts, eller så har en nyare skickats. Få en ny nedan, eller fråga biblioteket.",
            ),
        ),
        Error::Refused(Refusal::Invalid(Invalid::TrivialPin(_))) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            t(
                lang,
                "That PIN is too easy to guess. Choose another.",
                "Den PIN-koden är för lätt att gissa. Välj en annan.",
            ),
        ),
        Error::Refused(Refusal::Invalid(Invalid::Pin(_))) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            t(
                lang,
                "That PIN does not follow the rule above. Choose another.",
                "PIN-koden följer inte regeln ovan. Välj en annan.",
            ),
        ),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            t(
                lang,
                "Your PIN could not be saved just now. Please try again in a while.",
                "Din PIN-kod kunde inte sparas just nu. Försök igen om en stund.",
            ),
        ),
    }
}

pub(super) async fn choose(
    State(state): State<AdminState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    form: Result<Form<PinForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let lang = lang(&headers);
    let rule = match policy(&state, &token).await {
        Ok(rule) => rule,
        Err(e) => return link_gone(lang, &e),
    };
    let Ok(Form(f)) = form else {
        let fill = t(lang, "Fill in both fields.", "Fyll i båda fälten.");
        return pin_form(lang, StatusCode::BAD_REQUEST, Some(fill), &rule);
    };
    if f.pin != f.again {
        let differ = t(
            lang,
            "The two PINs differ. Type the same PIN twice.",
            "PIN-koderna skiljer sig åt. Skriv samma PIN-kod två gånger.",
        );
        return pin_form(lang, StatusCode::UNPROCESSABLE_ENTITY, Some(differ), &rule);
    }
    let op = Operation::RedeemPinLink { token: Pin(token), pin: Pin(f.pin) };
    match state.engine.run(op, By::new(ACTOR, jiff::Timestamp::now())).await {
        Ok(Receipt::Patron(_)) => {
            let title = t(lang, "Your PIN is saved", "Din PIN-kod är sparad");
            let body = html! { p role="status" { (t(lang, "Use it with your library card at the self-service machines. This link now no longer works.", "Använd den med ditt lånekort i automaterna. Länken fungerar inte längre.")) } };
            page(lang, StatusCode::OK, title, body)
        }
        Ok(_) => pin_form(lang, StatusCode::SERVICE_UNAVAILABLE, None, &rule),
        Err(e) => {
            let (status, text) = told(lang, &e);
            match status {
                // The link is gone: no form to fill again.
                StatusCode::GONE | StatusCode::NOT_FOUND => link_gone(lang, &e),
                _ => pin_form(lang, status, Some(text), &rule),
            }
        }
    }
}

/// The libraries a patron picks from on the login and forgot-PIN pages (by code and name).
pub(super) async fn libraries(state: &AdminState) -> Vec<(String, String)> {
    match state.engine.query(Query::Institutions).await {
        Ok(Answer::Institutions(all)) => all.into_iter().map(|i| (i.code, i.name)).collect(),
        _ => Vec::new(),
    }
}

/// The library field: a choice where there are several, else the one, hidden.
pub(super) fn library_field(lang: Lang, all: &[(String, String)], chosen: Option<&str>) -> maud::Markup {
    html! {
        @if all.len() > 1 {
            label for="library" { (t(lang, "Library", "Bibliotek")) }
            select #library name="library" required {
                option value="" selected[chosen.is_none()] { (t(lang, "Choose your library", "Välj ditt bibliotek")) }
                @for (code, name) in all {
                    option value=(code) selected[chosen == Some(code.as_str())] { (name) }
                }
            }
        } @else if let Some((code, _)) = all.first() {
            input type="hidden" name="library" value=(code);
        }
    }
}

async fn forgot_page(state: &AdminState, lang: Lang, status: StatusCode, sent: bool, error: Option<&str>) -> Response {
    let all = libraries(state).await;
    let title = t(lang, "Forgot your PIN?", "Glömt din PIN-kod?");
    let body = html! {
        @if let Some(e) = error { p.error role="alert" { (e) } }
        @if sent {
            p.done role="status" { (t(lang, "Thank you. If the card number or e-mail address belongs to an account with an e-mail address, a link to choose a new PIN is on its way there. It works once, for a few days.", "Tack. Om kortnumret eller e-postadressen hör till ett konto med en e-postadress är en länk för att välja en ny PIN-kod på väg dit. Den fungerar en gång, i några dagar.")) }
        }
        p { (t(lang, "Give your library card number or the e-mail address your account has. We send a link to choose a new PIN to that account's e-mail address.", "Ange ditt lånekortsnummer eller e-postadressen som ditt konto har. Vi skickar en länk för att välja en ny PIN-kod till kontots e-postadress.")) }
        form method="post" action="/forgot" {
            (library_field(lang, &all, None))
            label for="given" { (t(lang, "Card number or e-mail address", "Kortnummer eller e-postadress")) }
            input #given name="given" autocomplete="username" required autofocus;
            button type="submit" { (t(lang, "Send me a link", "Skicka en länk")) }
        }
        p { a href="/my/login" { (t(lang, "Back to logging in", "Tillbaka till inloggningen")) } }
    };
    page(lang, status, title, body)
}

pub(super) async fn forgot_form(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    forgot_page(&state, lang(&headers), StatusCode::OK, false, None).await
}

#[derive(Deserialize)]
pub(super) struct ForgotForm {
    #[serde(default)]
    library: String,
    #[serde(default)]
    given: String,
}

/// Answers before the register is asked, and the same for every input: neither the words nor
/// the time of the answer tell whether an account was found (the unit runs after it, and a
/// patron gets at most one link a quarter hour however often they ask).
pub(super) async fn forgot(
    State(state): State<AdminState>,
    headers: HeaderMap,
    request: axum::http::Extensions,
    Form(f): Form<ForgotForm>,
) -> Response {
    let lang = lang(&headers);
    if let Err(wait) = state.patrons.throttle.admit(super::peer(&request), std::time::Instant::now()) {
        return super::too_many(lang, wait);
    }
    if f.library.trim().is_empty() {
        let choose = t(lang, "Choose your library.", "Välj ditt bibliotek.");
        return forgot_page(&state, lang, StatusCode::UNPROCESSABLE_ENTITY, false, Some(choose)).await;
    }
    if !f.given.trim().is_empty() {
        let op = Operation::ForgotPin { institution: f.library.trim().to_string(), given: f.given };
        let engine = state.engine.clone();
        match state.patrons.lookups.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(async move {
                    if let Err(e) = engine.run(op, By::new(ACTOR, jiff::Timestamp::now())).await {
                        tracing::warn!(error = %e, "a forgot-PIN request could not be recorded");
                    }
                    drop(permit);
                });
            }
            Err(_) => tracing::warn!("forgot-PIN asks are arriving faster than they are looked up; one was dropped"),
        }
    }
    forgot_page(&state, lang, StatusCode::OK, true, None).await
}

pub(super) async fn email_form(headers: HeaderMap) -> Response {
    let lang = lang(&headers);
    // Following the link only shows this: mail scanners open links, and must not confirm.
    let body = html! {
        p { (t(lang, "Confirm that this is your new e-mail address for your library account.", "Bekräfta att det här är din nya e-postadress för ditt lånekonto.")) }
        form method="post" {
            button type="submit" { (t(lang, "Confirm my e-mail address", "Bekräfta min e-postadress")) }
        }
    };
    page(lang, StatusCode::OK, t(lang, "Confirm your e-mail address", "Bekräfta din e-postadress"), body)
}

pub(super) async fn confirm_email(
    State(state): State<AdminState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let lang = lang(&headers);
    let title = t(lang, "Confirm your e-mail address", "Bekräfta din e-postadress");
    let op = Operation::ConfirmEmail { token: Pin(token) };
    let (status, text) = match state.engine.run(op, By::new(ACTOR, jiff::Timestamp::now())).await {
        Ok(Receipt::Patron(p)) => {
            let email = p.email.unwrap_or_default();
            let done = match lang {
                Lang::Sv => format!("Klart. Biblioteket skriver nu till {email}."),
                Lang::En => format!("Done. The library now writes to {email}."),
            };
            return page(lang, StatusCode::OK, title, html! { p.done role="status" { (done) } });
        }
        Err(Error::Refused(Refusal::Taken { .. })) => (
            StatusCode::CONFLICT,
            t(
                lang,
                "That address is in use on another account. Ask the library.",
                "Adressen används redan av ett annat konto. Fråga biblioteket.",
            ),
        ),
        Err(Error::Refused(Refusal::Invalid(_))) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            t(
                lang,
                "The library does not take that address. Ask at the desk.",
                "Biblioteket tar inte emot den adressen. Fråga i informationsdisken.",
            ),
        ),
        Err(Error::Refused(Refusal::Synced { .. })) => (
            StatusCode::CONFLICT,
            t(
                lang,
                "Your e-mail address comes from your school's or employer's system: change it there.",
                "Din e-postadress kommer från skolans eller arbetsgivarens system: ändra den där.",
            ),
        ),
        Err(Error::Refused(Refusal::LinkUnusable { expired })) => (
            if expired { StatusCode::GONE } else { StatusCode::NOT_FOUND },
            t(
                lang,
                "This link does not work any more: it was used, replaced by a newer one, or has expired. Give the address again on your pages.",
                "Länken fungerar inte längre: den har använts, ersatts av en nyare eller gått ut. Ange adressen igen på dina sidor.",
            ),
        ),
        Err(e) => told(lang, &e),
        Ok(_) => (StatusCode::SERVICE_UNAVAILABLE, t(lang, "Please try again in a while.", "Försök igen om en stund.")),
    };
    page(lang, status, title, html! { p.error role="alert" { (text) } })
}
