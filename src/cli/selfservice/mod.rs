//! The patron's own pages (issue 17), apart from the staff console: their own paths, their own
//! session and cookie; no staff session opens them, and they open nothing of the console.
//! English or Swedish, by the browser's language; laid out for a phone. docs/self-service.md
//! tells what each page does and keeps.

mod mine;
mod pin;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::admin::AdminState;
use super::console::Lang;
use super::sessions::{SessionLimits, Sessions};

/// Who the audit history names for what patrons do on these pages.
const ACTOR: &str = "the patron (self-service)";

/// The patron pages' session cookie, apart from the console's. `__Host-`: only from this host,
/// over HTTPS (or loopback), for the whole site.
pub const COOKIE: &str = "__Host-sip2d_patron";

/// What the patron pages keep between requests: patrons' sessions, and how often each client
/// address has tried to log in or asked for a PIN lately.
pub struct PatronPages {
    pub sessions: Sessions,
    pub throttle: Throttle,
    /// How long every refused login takes, counted from its start (`[limits]
    /// login_failure_delay`): a known card with a wrong PIN, whose count is written, and an
    /// unknown card, which writes nothing, are answered after the same time.
    pub refusal_time: Duration,
    /// Forgot-PIN asks being looked up at once; more are answered alike and dropped (with a
    /// warning in the log), so a flood holds a bounded number of tasks.
    pub lookups: std::sync::Arc<tokio::sync::Semaphore>,
}

/// Forgot-PIN asks looked up at once.
const LOOKUPS: usize = 64;

impl PatronPages {
    pub fn new(limits: &crate::net::config::Limits) -> PatronPages {
        PatronPages {
            sessions: Sessions::new(SessionLimits {
                idle: limits.patron_session_idle,
                max_age: limits.patron_session_max_age,
                max: limits.max_patron_sessions,
            }),
            throttle: Throttle::new(limits.patron_pages_attempts, limits.patron_pages_window),
            refusal_time: limits.login_failure_delay,
            lookups: std::sync::Arc::new(tokio::sync::Semaphore::new(LOOKUPS)),
        }
    }
}

/// The body the patron pages' own listener takes: their forms are a few short fields.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Addresses whose attempts are counted at once; beyond this the oldest are forgotten first.
const ADDRESSES_KEPT: usize = 65_536;

/// At most `attempts` logins and forgot-PIN asks from one client address per `window`.
pub struct Throttle {
    attempts: u32,
    window: Duration,
    /// Address -> (start of its window, attempts in it).
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Throttle {
    pub fn new(attempts: u32, window: Duration) -> Throttle {
        Throttle { attempts: attempts.max(1), window, seen: Mutex::default() }
    }

    /// Counts an attempt from `from` (an IPv6 address by its /64, which one subscriber
    /// holds); refused, says how long until the address may try again.
    pub fn admit(&self, from: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        let from = match from.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)) {
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !(u128::MAX >> 64)).into()),
            v4 => v4,
        };
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() >= ADDRESSES_KEPT && !seen.contains_key(&from) {
            let (window, attempts) = (self.window, self.attempts);
            seen.retain(|_, (start, _)| now.saturating_duration_since(*start) < window);
            // Still full: forget the oldest address that is not held back, so cycling through
            // addresses does not free the ones that are.
            if seen.len() >= ADDRESSES_KEPT {
                let oldest = |held: bool| {
                    seen.iter()
                        .filter(|(_, (_, n))| (*n >= attempts) == held)
                        .min_by_key(|(_, (s, _))| *s)
                        .map(|(a, _)| *a)
                };
                if let Some(a) = oldest(false).or_else(|| oldest(true)) {
                    seen.remove(&a);
                }
            }
        }
        let (start, count) = seen.entry(from).or_insert((now, 0));
        if now.saturating_duration_since(*start) >= self.window {
            (*start, *count) = (now, 0);
        }
        if *count >= self.attempts {
            return Err(self.window.saturating_sub(now.saturating_duration_since(*start)));
        }
        *count += 1;
        Ok(())
    }
}

fn t(lang: Lang, en: &'static str, sv: &'static str) -> &'static str {
    if lang == Lang::Sv { sv } else { en }
}

/// A page of the patron pages' own look. Nothing on them is cached or sent on as a referrer
/// (the set-PIN and e-mail links carry their token in the address).
fn page(lang: Lang, status: StatusCode, title: &str, body: Markup) -> Response {
    page_with(lang, status, title, body, None)
}

fn page_with(lang: Lang, status: StatusCode, title: &str, body: Markup, set_cookie: Option<String>) -> Response {
    let code = if lang == Lang::Sv { "sv" } else { "en" };
    let markup = html! {
        (DOCTYPE)
        html lang=(code) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (STYLE) }
            }
            body {
                header {
                    @if lang == Lang::Sv {
                        a href="?lang=en" lang="en" hreflang="en" { "In English" }
                    } @else {
                        a href="?lang=sv" lang="sv" hreflang="sv" { "På svenska" }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    };
    let mut response = (status, Html(markup.into_string())).into_response();
    let h = response.headers_mut();
    h.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    if let Some(c) = set_cookie.and_then(|c| header::HeaderValue::from_str(&c).ok()) {
        h.insert(header::SET_COOKIE, c);
    }
    response
}

const STYLE: &str = "body{font:1.05rem/1.5 system-ui,sans-serif;max-width:40rem;margin:1rem auto;padding:0 1rem;color:#111;background:#fff}\
label{display:block;margin-top:1rem;font-weight:600}input,select{font:inherit;padding:.5rem;width:100%;box-sizing:border-box}\
input:disabled{background:#eee;color:#333}button{font:inherit;margin-top:1rem;padding:.6rem 1.2rem;background:#0b3d91;color:#fff;border:0;border-radius:.3rem}\
button.small{margin-top:0;padding:.3rem .8rem}:focus-visible{outline:3px solid #f90;outline-offset:2px}.error{color:#8b0000;font-weight:600}\
.done{color:#0a5c2b;font-weight:600}table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.4rem .3rem;border-bottom:1px solid #ccc;vertical-align:top}\
header{text-align:right}section{margin-top:2rem}.visually-hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}a{color:#0b3d91}.note{background:#fff4ce;padding:.5rem;border-left:4px solid #8a6d00}";

/// The client's address, as the listener saw it.
fn peer(request: &axum::http::Extensions) -> Option<IpAddr> {
    request.get::<crate::net::http::Peer>().and_then(|p| p.0)
}

/// The answer to an address that tried too often.
fn too_many(lang: Lang, wait: Duration) -> Response {
    let minutes = wait.as_secs().div_ceil(60).max(1);
    let text = match lang {
        Lang::Sv => format!("För många försök härifrån. Försök igen om {minutes} minuter."),
        Lang::En => format!("Too many tries from here. Try again in {minutes} minutes."),
    };
    let mut r = page(
        lang,
        StatusCode::TOO_MANY_REQUESTS,
        t(lang, "Please wait", "Vänta lite"),
        html! {
            p.error role="alert" { (text) }
        },
    );
    if let Ok(v) = header::HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// Any other path on the patron pages' own listener.
pub async fn not_here(headers: HeaderMap) -> Response {
    let lang = lang(&headers);
    page(
        lang,
        StatusCode::NOT_FOUND,
        t(lang, "Not here", "Finns inte här"),
        html! {
            p { (t(lang, "There is no such page.", "Den sidan finns inte.")) " " a href="/my" { (t(lang, "To my pages", "Till mina sidor")) } }
        },
    )
}

fn lang(headers: &HeaderMap) -> Lang {
    Lang::of(headers)
}

/// `?lang=sv` (or `en`) on any patron page: that language from now on (a cookie, as the
/// console's), and the same page again without it.
async fn language(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let wanted = request.uri().query().into_iter().flat_map(|q| q.split('&')).find_map(|pair| match pair {
        "lang=sv" => Some("sv"),
        "lang=en" => Some("en"),
        _ => None,
    });
    match wanted {
        Some(code) if request.method() == axum::http::Method::GET => {
            let cookie = format!("lang={code}; Path=/; SameSite=Strict; Max-Age=31536000");
            // A page answering a form (`/my/renew`) is not there to get again: back to `/my`.
            let path = request.uri().path();
            let pages = ["/my/login", "/forgot"];
            let here = if path.starts_with("/my/") && !pages.contains(&path) { "/my" } else { path };
            ([(header::SET_COOKIE, cookie)], axum::response::Redirect::to(here)).into_response()
        }
        _ => next.run(request).await,
    }
}

/// Forms posted from another site are refused: the login and forgot-PIN forms need no
/// session, so a hostile page could otherwise make its visitors' browsers guess PINs (spread
/// past the per-address throttle) or log them in as someone else. Browsers say where a form
/// came from (`Sec-Fetch-Site`, `Origin`); a client that says nothing is let through.
async fn same_site(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if request.method() == axum::http::Method::POST && from_elsewhere(request.headers()) {
        let lang = lang(request.headers());
        let text = t(
            lang,
            "That form came from another site. Open this site's page and try again.",
            "Formuläret kom från en annan webbplats. Öppna den här webbplatsens sida och försök igen.",
        );
        return page(
            lang,
            StatusCode::FORBIDDEN,
            t(lang, "Please try again", "Försök igen"),
            html! {
                p.error role="alert" { (text) }
            },
        );
    }
    next.run(request).await
}

fn from_elsewhere(headers: &HeaderMap) -> bool {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = value("sec-fetch-site") {
        return !matches!(site, "same-origin" | "none");
    }
    match (value("origin"), value("host")) {
        (Some("null"), _) => true,
        (Some(origin), Some(host)) => origin.split_once("://").is_none_or(|(_, h)| h != host),
        _ => false,
    }
}

/// The patron pages' routes.
pub fn routes() -> axum::Router<AdminState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/pin/{token}", get(pin::show).post(pin::choose))
        .route("/forgot", get(pin::forgot_form).post(pin::forgot))
        .route("/email/{token}", get(pin::email_form).post(pin::confirm_email))
        .route("/my", get(mine::overview))
        .route("/my/login", get(mine::login_form).post(mine::login))
        .route("/my/logout", post(mine::logout))
        .route("/my/renew", post(mine::renew))
        .route("/my/cancel", post(mine::cancel_hold))
        .route("/my/contact", post(mine::save_contact))
        .route("/my/email", post(mine::email))
        .route("/my/notices", post(mine::set_notices))
        .route("/my/move", post(mine::request_move))
        .layer(axum::middleware::from_fn(language))
        .layer(axum::middleware::from_fn(same_site))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_from_another_site_are_told_apart() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            from_elsewhere(&h)
        };
        assert!(!h(&[]), "a client that says nothing");
        assert!(!h(&[("sec-fetch-site", "same-origin"), ("origin", "https://evil.example")]));
        assert!(h(&[("sec-fetch-site", "cross-site")]));
        assert!(h(&[("sec-fetch-site", "same-site")]), "a neighbouring subdomain is another site");
        assert!(!h(&[("origin", "https://library.example"), ("host", "library.example")]));
        assert!(h(&[("origin", "https://evil.example"), ("host", "library.example")]));
        assert!(h(&[("origin", "null"), ("host", "library.example")]));
    }

    #[test]
    fn an_ipv6_subscriber_is_one_address() {
        let t = Throttle::new(2, Duration::from_secs(600));
        let t0 = Instant::now();
        assert!(t.admit(Some("2001:db8:1:2::1".parse().unwrap()), t0).is_ok());
        assert!(t.admit(Some("2001:db8:1:2:ffff::9".parse().unwrap()), t0).is_ok());
        assert!(t.admit(Some("2001:db8:1:2::77".parse().unwrap()), t0).is_err(), "the same /64");
        assert!(t.admit(Some("2001:db8:1:3::1".parse().unwrap()), t0).is_ok(), "another /64");
    }

    #[test]
    fn an_address_gets_so_many_tries_a_window_and_others_are_not_held_up() {
        let t = Throttle::new(3, Duration::from_secs(600));
        let (a, b) = (Some("192.0.2.1".parse().unwrap()), Some("192.0.2.2".parse().unwrap()));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(t.admit(a, t0).is_ok());
        }
        assert_eq!(t.admit(a, t0 + Duration::from_secs(60)), Err(Duration::from_secs(540)));
        assert!(t.admit(b, t0 + Duration::from_secs(60)).is_ok(), "another address");
        assert!(t.admit(a, t0 + Duration::from_secs(600)).is_ok(), "a new window");
    }
}
