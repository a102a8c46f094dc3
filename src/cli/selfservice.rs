//! The patron's own pages (issue 17), apart from the staff console: no staff session or cookie
//! opens them, and they open nothing of the console. First, choosing a PIN from the link the
//! welcome e-mail carries. English or Swedish, by the browser's language; usable on a phone.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use super::admin::AdminState;
use super::console::Lang;
use crate::engine::{By, Error, Operation, Pin, Receipt, Refusal};

/// Who the audit history names for what patrons do on these pages.
const ACTOR: &str = "the patron (self-service)";

fn t(lang: Lang, en: &'static str, sv: &'static str) -> &'static str {
    if lang == Lang::Sv { sv } else { en }
}

/// A page of its own look; the token in the address is kept from other sites and caches.
fn page(lang: Lang, status: StatusCode, title: &str, body: Markup) -> Response {
    let code = if lang == Lang::Sv { "sv" } else { "en" };
    let markup = html! {
        (DOCTYPE)
        html lang=(code) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { "body{font:1.05rem/1.5 system-ui,sans-serif;max-width:32rem;margin:1rem auto;padding:0 1rem;color:#111;background:#fff}label{display:block;margin-top:1rem;font-weight:600}input{font:inherit;padding:.5rem;width:100%;box-sizing:border-box}button{font:inherit;margin-top:1rem;padding:.6rem 1.2rem;background:#0b3d91;color:#fff;border:0;border-radius:.3rem}:focus-visible{outline:3px solid #f90;outline-offset:2px}.error{color:#8b0000;font-weight:600}" }
            }
            body { main { h1 { (title) } (body) } }
        }
    };
    let headers = [
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    ];
    (status, headers, Html(markup.into_string())).into_response()
}

fn pin_form(lang: Lang, status: StatusCode, error: Option<&str>) -> Response {
    let title = t(lang, "Choose your PIN", "Välj din PIN-kod");
    let body = html! {
        @if let Some(e) = error { p.error role="alert" { (e) } }
        p { (t(lang, "Your PIN is four digits you use with your library card at the self-service machines. Choose one that is hard to guess: not 0000, 1234 or your birth year.", "PIN-koden är fyra siffror som du använder med ditt lånekort i automaterna. Välj en som är svår att gissa: inte 0000, 1234 eller ditt födelseår.")) }
        form method="post" {
            label for="pin" { (t(lang, "New PIN", "Ny PIN-kod")) }
            input #pin name="pin" type="password" inputmode="numeric" autocomplete="new-password" required autofocus;
            label for="again" { (t(lang, "The same PIN again", "Samma PIN-kod igen")) }
            input #again name="again" type="password" inputmode="numeric" autocomplete="new-password" required;
            button type="submit" { (t(lang, "Save my PIN", "Spara min PIN-kod")) }
        }
    };
    page(lang, status, title, body)
}

async fn show(headers: HeaderMap) -> Response {
    pin_form(Lang::of(&headers), StatusCode::OK, None)
}

#[derive(Deserialize)]
struct PinForm {
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
                "This link has expired. Ask the library to send you a new one.",
                "Länken har gått ut. Be biblioteket skicka en ny.",
            ),
        ),
        Error::Refused(Refusal::LinkUnusable { expired: false }) => (
            StatusCode::NOT_FOUND,
            t(
                lang,
                "This link does not work: it was used already, or a newer one was sent. Ask the library for a new one.",
                "Länken fungerar inte: den har redan använts, eller så har en nyare skickats. Be biblioteket om en ny.",
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
            t(lang, "A PIN is exactly four digits.", "En PIN-kod är exakt fyra siffror."),
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

async fn choose(
    State(state): State<AdminState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    form: Result<Form<PinForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let lang = Lang::of(&headers);
    let Ok(Form(f)) = form else {
        return pin_form(lang, StatusCode::BAD_REQUEST, Some(t(lang, "Fill in both fields.", "Fyll i båda fälten.")));
    };
    if f.pin != f.again {
        let differ = t(
            lang,
            "The two PINs differ. Type the same PIN twice.",
            "PIN-koderna skiljer sig åt. Skriv samma PIN-kod två gånger.",
        );
        return pin_form(lang, StatusCode::UNPROCESSABLE_ENTITY, Some(differ));
    }
    let op = Operation::RedeemPinLink { token: Pin(token), pin: Pin(f.pin) };
    match state.engine.run(op, By::new(ACTOR, jiff::Timestamp::now())).await {
        Ok(Receipt::Patron(_)) => {
            let title = t(lang, "Your PIN is saved", "Din PIN-kod är sparad");
            let body = html! { p role="status" { (t(lang, "Use it with your library card at the self-service machines. This link now no longer works.", "Använd den med ditt lånekort i automaterna. Länken fungerar inte längre.")) } };
            page(lang, StatusCode::OK, title, body)
        }
        Ok(_) => pin_form(lang, StatusCode::SERVICE_UNAVAILABLE, None),
        Err(e) => {
            let (status, text) = told(lang, &e);
            match status {
                // The link is gone: no form to fill again.
                StatusCode::GONE | StatusCode::NOT_FOUND => page(
                    lang,
                    status,
                    t(lang, "Choose your PIN", "Välj din PIN-kod"),
                    html! { p.error role="alert" { (text) } },
                ),
                _ => pin_form(lang, status, Some(text)),
            }
        }
    }
}

/// The patron pages' routes (served on the console's listener, under their own paths).
pub fn routes() -> axum::Router<AdminState> {
    use axum::routing::get;
    axum::Router::new().route("/pin/{token}", get(show).post(choose))
}
