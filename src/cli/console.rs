//! The staff console: server-rendered pages over the engine operations the resource API and
//! the command line use, in English and Swedish.
//!
//! Pages are plain HTML forms (maud, compiled into the binary): every page works from the
//! keyboard and without scripts, a form that fails keeps what was typed, and there is no
//! front end to build or serve. Each form carries the session's CSRF token; a post without
//! it is refused. Staff see only their institutions' patrons, and their role bounds what the
//! engine lets them change, as through the API.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;

use super::admin::AdminState;
use super::api::{self, Caller};
use crate::domain::{AsItStands, ContactKind, ContactUse, Patron, RecordType, Refusal, Staff};
use crate::engine::{Answer, Error, Operation, Query as Read, Receipt, SYNCED, patron_tag};

/// The console's languages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    En,
    Sv,
}

impl Lang {
    fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Sv => "sv",
        }
    }

    fn other(self) -> Lang {
        match self {
            Lang::En => Lang::Sv,
            Lang::Sv => Lang::En,
        }
    }

    /// The `lang` cookie, else the browser's first choice, else English.
    pub(super) fn of(headers: &HeaderMap) -> Lang {
        let wanted = cookie(headers, "lang").or_else(|| {
            let accept = headers.get(header::ACCEPT_LANGUAGE)?.to_str().ok()?;
            Some(accept.split([',', ';', '-']).next()?.trim().to_lowercase())
        });
        if wanted.as_deref() == Some("sv") { Lang::Sv } else { Lang::En }
    }

    /// The text of `key` in this language.
    fn t(self, key: &str) -> &'static str {
        TEXTS.iter().find(|(k, _, _)| *k == key).map_or("?", |(_, en, sv)| if self == Lang::Sv { sv } else { en })
    }
}

/// The value of cookie `name`, if the request has it.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    super::sessions::cookies(headers, name).next().map(String::from)
}

/// Every text of the console: key, English, Swedish.
const TEXTS: &[(&str, &str, &str)] = &[
    ("title", "sip2d staff console", "sip2d personalkonsol"),
    ("skip", "Skip to content", "Hoppa till innehållet"),
    ("patrons", "Patrons", "Låntagare"),
    ("terminals", "Terminals", "Terminaler"),
    ("bank", "Deleted users", "Raderade användare"),
    ("turn_off", "Turn off", "Stäng av"),
    ("send_invitation", "Send the e-mail invitation (the welcome)", "Skicka inbjudan via e-post (välkomstbrevet)"),
    ("invitation", "Invitation", "Inbjudan"),
    (
        "invitation_hint",
        "The welcome, with how to get a PIN, is sent by e-mail to",
        "Välkomstbrevet, med hur man får en PIN-kod, skickas via e-post till",
    ),
    ("send_invitation_again", "Send the invitation again", "Skicka inbjudan igen"),
    ("staff_accounts", "Staff", "Personal"),
    ("members", "Members", "Medarbetare"),
    ("terminal_accounts", "Terminal accounts", "Terminalkonton"),
    ("role", "Role", "Roll"),
    ("institutions", "Libraries", "Bibliotek"),
    ("account_locked", "Locked", "Låst"),
    ("unlock", "Unlock", "Lås upp"),
    ("your_tokens", "Your tokens", "Dina nycklar"),
    (
        "tokens_hint",
        "A token lets an integration call the API as you, with your role.",
        "En nyckel låter en integration anropa API:t som du, med din roll.",
    ),
    ("token_label", "What it is for", "Vad den är till för"),
    ("make_token", "Make a token", "Skapa en nyckel"),
    ("token_once", "The new token, shown this once: copy it now.", "Den nya nyckeln visas bara nu: kopiera den."),
    ("revoke", "Revoke", "Återkalla"),
    ("new_member", "New staff member", "Ny medarbetare"),
    ("password_min", "Password (at least 10 characters)", "Lösenord (minst 10 tecken)"),
    ("add_member", "Add staff member", "Lägg till medarbetare"),
    ("location", "Location", "Plats"),
    ("profile", "Profile", "Profil"),
    ("new_password", "New password", "Nytt lösenord"),
    ("new_terminal", "New terminal account", "Nytt terminalkonto"),
    ("password_terminal", "Password (at least 8 characters)", "Lösenord (minst 8 tecken)"),
    ("add_terminal", "Add terminal account", "Lägg till terminalkonto"),
    ("turn_on", "Turn on", "Slå på"),
    ("identifier_kind", "Kind", "Typ"),
    ("value", "Value", "Värde"),
    ("note_optional", "Note (optional)", "Anteckning (valfri)"),
    ("add_identifier", "Add identifier", "Lägg till identifierare"),
    ("proxies", "May act for (proxy)", "Får agera för (ombud)"),
    ("no_proxies", "Acts for nobody.", "Agerar inte för någon."),
    ("remove", "Remove", "Ta bort"),
    (
        "proxy_card",
        "Card, primary id or e-mail of the one they act for",
        "Kort, primärt id eller e-post för den som ombudet agerar för",
    ),
    ("add_proxy", "Add", "Lägg till"),
    ("transfer", "Move to another library", "Flytta till ett annat bibliotek"),
    (
        "transfer_pending",
        "A move is waiting for the other library to accept:",
        "En flytt väntar på att det andra biblioteket godkänner:",
    ),
    ("transfer_to", "To library (code)", "Till bibliotek (kod)"),
    ("request_transfer", "Ask to move", "Begär flytt"),
    ("transfers", "Moves", "Flyttar"),
    ("no_transfers", "No users are waiting to move here.", "Inga användare väntar på att flytta hit."),
    ("from", "From", "Från"),
    ("accept", "Accept", "Godkänn"),
    ("decline", "Decline", "Avslå"),
    (
        "bank_hint",
        "Deleted users keep their primary id and identifiers until they are purged; a User Administrator can restore them.",
        "Raderade användare behåller sitt primära id och sina identifierare tills de rensas bort; en användaradministratör kan återställa dem.",
    ),
    ("bank_empty", "No deleted users.", "Inga raderade användare."),
    ("in_bank", "In the bank of deleted users", "Bland raderade användare"),
    ("deleted_on", "Deleted", "Raderad"),
    ("restore", "Restore", "Återställ"),
    ("show", "Show", "Visa"),
    ("log_in", "Log in", "Logga in"),
    ("log_out", "Log out", "Logga ut"),
    ("login", "User name", "Användarnamn"),
    ("password", "Password", "Lösenord"),
    ("other_language", "Svenska", "English"),
    ("signed_in_as", "Signed in as", "Inloggad som"),
    ("search", "Search", "Sök"),
    (
        "query",
        "Name (last, first), primary id, barcode, national id or e-mail",
        "Namn (efternamn, förnamn), primärt id, streckkod, personnummer eller e-post",
    ),
    ("institution", "Library", "Bibliotek"),
    ("record_types", "Record type", "Posttyp"),
    ("all", "All", "Alla"),
    ("public", "Public", "Allmänhet"),
    ("staff", "Staff", "Personal"),
    ("contact", "Contact", "Kontakt"),
    ("name", "Name", "Namn"),
    ("account_type", "Account type", "Kontotyp"),
    ("record_type", "Record type", "Posttyp"),
    ("user_group", "User group", "Användargrupp"),
    ("expiry", "Expiry date", "Giltig till"),
    ("purge", "Purge date", "Gallras"),
    ("status", "Status", "Status"),
    ("active", "Active", "Aktiv"),
    ("inactive", "Inactive", "Inaktiv"),
    ("blocked", "Blocked", "Spärrad"),
    ("deleted", "Deleted", "Raderad"),
    ("locked_pin", "Locked (wrong PINs)", "Låst (fel PIN-koder)"),
    ("internal", "Internal", "Intern"),
    ("external", "External", "Extern"),
    ("no_results", "No patrons found.", "Inga låntagare hittades."),
    ("found", "Patrons found:", "Hittade låntagare:"),
    ("general", "General", "Allmänt"),
    ("contact_info", "Contact information", "Kontaktuppgifter"),
    ("contact_kind", "Kind", "Typ"),
    ("contact_email", "E-mail", "E-post"),
    ("contact_phone", "Phone", "Telefon"),
    ("contact_address", "Address", "Adress"),
    ("contact_use", "Use", "Användning"),
    ("use_home", "Home", "Hem"),
    ("use_work", "Work", "Arbete"),
    ("use_school", "School", "Skola"),
    ("use_mobile", "Mobile", "Mobil"),
    ("use_other", "Other", "Annat"),
    ("preferred", "Preferred", "Förvald"),
    ("make_preferred", "Make preferred", "Gör förvald"),
    ("postal_code_optional", "Postal code (addresses)", "Postnummer (adresser)"),
    ("add_contact", "Add contact", "Lägg till kontaktuppgift"),
    ("statistics", "Statistics", "Statistik"),
    ("no_statistics", "No statistical categories.", "Inga statistikkategorier."),
    ("category", "Statistical category (such as distance-student)", "Statistikkategori (till exempel distansstudent)"),
    ("add_statistic", "Add category", "Lägg till kategori"),
    ("attachments", "Attachments", "Bilagor"),
    ("no_attachments", "No attachments.", "Inga bilagor."),
    ("file", "File", "Fil"),
    ("attach", "Attach file", "Bifoga fil"),
    ("bytes", "bytes", "byte"),
    ("picture", "Picture", "Bild"),
    ("no_picture", "No picture.", "Ingen bild."),
    ("picture_of", "Picture of", "Bild på"),
    ("set_picture", "Set picture", "Välj bild"),
    ("remove_picture", "Remove picture", "Ta bort bild"),
    ("no_file", "Choose a file first.", "Välj en fil först."),
    ("identifiers", "Identifiers", "Identifierare"),
    ("primary_id", "Primary id", "Primärt id"),
    ("blocks", "Blocks", "Spärrar"),
    ("no_blocks", "No blocks.", "Inga spärrar."),
    ("add_block", "Add block", "Lägg till spärr"),
    ("block_type", "Block type", "Spärrtyp"),
    ("reason", "Reason", "Orsak"),
    ("lift", "Lift", "Häv"),
    ("notes", "Notes", "Anteckningar"),
    ("no_notes", "No notes.", "Inga anteckningar."),
    ("add_note", "Add note", "Lägg till anteckning"),
    ("text", "Text", "Text"),
    ("shown_to_patron", "Shown to the patron", "Visas för låntagaren"),
    ("fees", "Fines and fees", "Avgifter"),
    ("balance", "Balance (disputed fees left out)", "Saldo (bestridda avgifter räknas inte)"),
    ("no_fees", "No fines or fees.", "Inga avgifter."),
    ("fee_kind", "Kind", "Typ"),
    ("amount", "Amount", "Belopp"),
    ("outstanding", "Outstanding", "Kvar att betala"),
    ("actions", "Actions", "Åtgärder"),
    ("pay", "Pay", "Betala"),
    ("waive", "Waive", "Efterskänk"),
    ("dispute", "Dispute", "Bestrid"),
    ("undispute", "End dispute", "Avsluta bestridande"),
    ("fee_active", "Open", "Öppen"),
    ("fee_disputed", "Disputed (left out of the balance)", "Bestridd (räknas inte i saldot)"),
    ("fee_waived", "Waived", "Efterskänkt"),
    ("fee_paid", "Paid", "Betald"),
    ("fee_closed", "Closed", "Stängd"),
    ("not_an_amount", "Not an amount like 5.00:", "Inte ett belopp som 5.00:"),
    ("renewals", "Renewals", "Förnyelser"),
    ("renew", "Renew", "Förnya"),
    ("check_in", "Check in", "Återlämna"),
    ("not_on_loan", "Not on loan to this patron:", "Inte utlånat till denna låntagare:"),
    ("loans", "Loans", "Lån"),
    ("no_loans", "No loans.", "Inga lån."),
    ("due", "Due", "Åter senast"),
    ("item", "Item", "Exemplar"),
    ("holds", "Requests", "Reservationer"),
    ("no_holds", "No requests.", "Inga reservationer."),
    ("hold_on", "Item or title", "Exemplar eller titel"),
    ("hold_by", "Request by", "Reservera"),
    ("hold_by_title", "Title (any copy)", "Titel (valfritt exemplar)"),
    ("hold_by_item", "Item barcode", "Exemplarets streckkod"),
    ("pickup", "Pick up at", "Hämtas vid"),
    ("queue_place", "Place in queue", "Plats i kön"),
    ("hold_waiting", "Waiting", "Väntar"),
    ("hold_available", "Ready to pick up", "Kan hämtas"),
    ("place_hold", "Place request", "Reservera"),
    ("cancel_hold", "Cancel", "Avbryt"),
    ("history", "History", "Historik"),
    ("when", "When", "När"),
    ("who", "Who", "Vem"),
    ("what", "What", "Vad"),
    ("edit", "Edit", "Redigera"),
    ("save", "Save", "Spara"),
    ("first_name", "First name", "Förnamn"),
    ("last_name", "Last name", "Efternamn"),
    ("email", "E-mail", "E-post"),
    ("phone", "Phone", "Telefon"),
    ("saved", "Saved.", "Sparat."),
    ("refused", "Not done", "Inte utfört"),
    ("conflict_title", "Someone else changed this patron", "Någon annan har ändrat låntagaren"),
    (
        "conflict_text",
        "Another staff member saved this patron after you opened it. Nothing has been lost: their version is shown below, and your changes are still in the form. Check them and save again.",
        "En kollega sparade låntagaren efter att du öppnade den. Inget har gått förlorat: kollegans version visas nedan och dina ändringar finns kvar i formuläret. Kontrollera dem och spara igen.",
    ),
    ("current_record", "The record as it is now", "Posten som den är nu"),
    ("your_changes", "Your changes", "Dina ändringar"),
    ("wrong_login", "Wrong user name or password.", "Fel användarnamn eller lösenord."),
    (
        "locked",
        "The account is locked after too many wrong passwords. Try again later, or ask an administrator to unlock it.",
        "Kontot är låst efter för många felaktiga lösenord. Försök igen senare eller be en administratör låsa upp det.",
    ),
    (
        "form_expired",
        "The form was out of date or came from another page. Reload the page and try again.",
        "Formuläret var inaktuellt eller kom från en annan sida. Ladda om sidan och försök igen.",
    ),
    ("connected", "Connected", "Ansluten"),
    ("account", "Account", "Konto"),
    ("requests", "Requests", "Förfrågningar"),
    ("last_requests", "Last requests", "Senaste förfrågningar"),
    ("last_error", "Last error", "Senaste fel"),
    ("address", "Address", "Adress"),
    ("no_terminals", "No terminal of yours is connected.", "Ingen av era terminaler är ansluten."),
    (
        "live",
        "This list updates by itself as terminals connect and send requests.",
        "Listan uppdateras av sig själv när terminaler ansluter och skickar förfrågningar.",
    ),
    ("not_found", "Not found", "Hittades inte"),
    ("delete", "Delete patron", "Radera låntagaren"),
    ("add_user", "Add a user", "Lägg till användare"),
    ("optional_fields", "Show optional fields", "Visa valfria fält"),
    ("required", "required", "obligatoriskt"),
    ("barcode", "Barcode", "Streckkod"),
    ("national_id", "National id (personnummer)", "Personnummer"),
    ("birth_date", "Birth date (YYYY-MM-DD)", "Födelsedatum (ÅÅÅÅ-MM-DD)"),
    ("postal_code", "Postal code", "Postnummer"),
    ("middle_name", "Middle name", "Mellannamn"),
    ("person_title", "Title", "Titel"),
    ("purge_field", "Purge date (YYYY-MM-DD)", "Gallras (ÅÅÅÅ-MM-DD)"),
    (
        "synced_fields",
        "The fields that cannot be changed here come from the student system's sync:",
        "Fälten som inte kan ändras här kommer från studentsystemets synkning:",
    ),
    ("language_field", "Language (en, sv)", "Språk (en, sv)"),
    ("expiry_field", "Expiry date (YYYY-MM-DD)", "Giltig till (ÅÅÅÅ-MM-DD)"),
    ("minor", "Under 18: guardian and consent", "Under 18 år: vårdnadshavare och samtycke"),
    ("guardian_name", "Guardian's name", "Vårdnadshavarens namn"),
    ("guardian_contact", "Guardian's phone or e-mail", "Vårdnadshavarens telefon eller e-post"),
    ("consent", "The guardian has consented to the terms today", "Vårdnadshavaren har godkänt villkoren i dag"),
    ("force", "Register anyway (not the same person)", "Registrera ändå (inte samma person)"),
    ("bad_date", "is not a date like 2027-01-31", "är inte ett datum som 2027-01-31"),
    (
        "delete_hint",
        "Refused while the patron owes money or has loans; a deleted patron goes to the bank of deleted users and can be restored.",
        "Nekas så länge låntagaren har skulder eller lån; en raderad låntagare hamnar bland raderade användare och kan återställas.",
    ),
];

/// Plain, high-contrast styles; focus is always visible.
const CSS: &str = "
body{font-family:system-ui,sans-serif;margin:0;color:#111;background:#fff;line-height:1.45}
header{background:#123;color:#fff;padding:.5rem 1rem;display:flex;gap:1.5rem;align-items:center;flex-wrap:wrap}
header a{color:#fff}
header button{color:#fff;background:transparent;border:1px solid #fff;border-radius:3px}
[aria-current]{font-weight:700;text-decoration:none}
nav a{margin-right:1rem}
main{padding:1rem;max-width:70rem}
a{color:#0645ad}
:focus-visible{outline:3px solid #f90;outline-offset:2px}
.skip{position:absolute;left:-999px}.skip:focus{left:.5rem;top:.5rem;background:#fff;color:#000;padding:.3rem}
table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #999;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#eee}
label{display:block;font-weight:600;margin-top:.5rem}
input,select,button{font:inherit;padding:.25rem .4rem}
button{cursor:pointer}
.flash{padding:.5rem 1rem;border:2px solid #060;background:#efe}
.error{padding:.5rem 1rem;border:2px solid #a00;background:#fee}
section{margin-top:1.5rem}
form.inline{display:inline}
";

/// A logged-in staff member as a page sees them.
pub struct Staffer {
    member: Arc<Staff>,
    csrf: String,
    lang: Lang,
}

impl FromRequestParts<AdminState> for Staffer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &AdminState) -> Result<Self, Response> {
        let lang = Lang::of(&parts.headers);
        match api::session_member(state, &parts.headers).await {
            Ok(Some((open, m))) => Ok(Staffer { member: Arc::new(m), csrf: open.csrf, lang }),
            _ => Err(Redirect::to("/login").into_response()),
        }
    }
}

impl Staffer {
    fn caller(&self) -> Caller {
        Caller::Staff(self.member.clone())
    }

    /// Whether a form carries this session's CSRF token.
    #[allow(clippy::result_large_err)] // the handler's early answer, made at most once a request
    fn check(&self, given: &str) -> Result<(), Response> {
        if super::sessions::same_secret(given, &self.csrf) {
            Ok(())
        } else {
            Err(message_page(self.lang, Some(self), StatusCode::FORBIDDEN, self.lang.t("form_expired")))
        }
    }
}

fn page(lang: Lang, who: Option<&Staffer>, title: &str, body: Markup) -> Markup {
    let t = |k| lang.t(k);
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " – " (t("title")) }
                style { (PreEscaped(CSS)) }
            }
            body {
                a.skip href="#main" { (t("skip")) }
                header {
                    strong { (t("title")) }
                    @if let Some(s) = who {
                        nav aria-label=(t("title")) {
                            a href="/patrons" { (t("patrons")) }
                            a href="/patrons/new" { (t("add_user")) }
                            a href="/terminals" { (t("terminals")) }
                            a href="/transfers" { (t("transfers")) }
                            a href="/deleted" { (t("bank")) }
                            a href="/staff" { (t("staff_accounts")) }
                            a href="/accounts" { (t("terminal_accounts")) }
                        }
                        span { (t("signed_in_as")) " " (s.member.name) " (" (s.member.role) ")" }
                        form.inline method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            button type="submit" { (t("log_out")) }
                        }
                    }
                    a href={ "/lang/" (lang.other().code()) } lang=(lang.other().code()) { (t("other_language")) }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

fn respond(status: StatusCode, markup: Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

fn message_page(lang: Lang, who: Option<&Staffer>, status: StatusCode, text: &str) -> Response {
    let title = if status == StatusCode::NOT_FOUND { lang.t("not_found") } else { lang.t("refused") };
    respond(status, page(lang, who, title, html! { p.error role="alert" { (text) } }))
}

/// What a refusal is, as a status and a sentence for the page.
fn refusal(lang: Lang, e: &Error) -> (StatusCode, String) {
    match e {
        Error::Refused(r) => {
            let status = api::status_of(e);
            let said = match lang {
                Lang::Sv => swedish(r).unwrap_or_else(|| r.to_string()),
                Lang::En => r.to_string(),
            };
            (status, format!("{}: {said}", lang.t("refused")))
        }
        other => (StatusCode::SERVICE_UNAVAILABLE, other.to_string()),
    }
}

/// A role as Swedish staff call it.
fn roll(r: crate::domain::Role) -> &'static str {
    use crate::domain::Role;
    match r {
        Role::Desk => "disk (endast läsning)",
        Role::UserManager => "användarhanterare",
        Role::UserAdministrator => "användaradministratör",
        Role::MainAdministrator => "huvudadministratör",
    }
}

/// A value that may not be stored, in Swedish; `None` for a PIN policy's own words.
fn ogiltigt(i: &crate::domain::validate::Invalid) -> Option<String> {
    use crate::domain::validate::Invalid as I;
    Some(match i {
        I::Missing { field } => format!("{} krävs", ord(field)),
        I::BadCharacters { field } => format!("{} får inte innehålla '|' eller styrtecken", ord(field)),
        I::Pattern { field, value, pattern } => {
            format!("{} '{value}' stämmer inte med bibliotekets mönster {pattern}", ord(field))
        }
        I::BadPattern { field, error } => {
            format!("bibliotekets mönster för {} är inget giltigt reguljärt uttryck: {error}", ord(field))
        }
        I::NationalId(value, _) => format!("'{value}' är inget giltigt personnummer eller samordningsnummer"),
        I::Email(e) => format!("e-postadressen '{e}' är ingen adress"),
        I::MinorWithoutGuardian => "en låntagare under 18 behöver en vårdnadshavares namn och kontaktuppgift, och datumet då villkoren godkändes".into(),
        I::NotADate { field, value } => format!("{} '{value}' är inget datum som 2027-06-30", ord(field)),
        I::NotOptional(kind) => format!("{kind}-meddelanden skickas bara när låntagaren ber om dem; de går inte att välja bort"),
        I::TrivialPin(_) => "den PIN-koden är för lätt att gissa; välj en annan".into(),
        I::Pin(_) => return None,
    })
}

/// A change the record does not take as it stands, in Swedish.
fn som_det_star(a: &AsItStands) -> String {
    use AsItStands as A;
    match a {
        A::AlreadyActive(id) => format!("låntagare {id} är redan aktiv"),
        A::AlreadyInactive(id) => format!("låntagare {id} är redan inaktiv"),
        A::NotLocked(id) => format!("låntagare {id} är inte låst"),
        A::AlreadyDeleted(id) => format!("låntagare {id} är redan raderad"),
        A::NotDeleted(id) => format!("låntagare {id} är inte raderad"),
        A::InTheBank(id) => format!("låntagare {id} finns bland raderade användare; återställ hen först"),
        A::NoEmail(id) => format!("låntagare {id} har ingen e-postadress att skicka inbjudan till"),
        A::NothingChanged(id) => format!("låntagare {id} har redan de värdena"),
        A::OwnProxy => "en låntagare kan inte vara sitt eget ombud".into(),
        A::AlreadyProxy { proxy, for_whom } => format!("låntagare {proxy} är redan ombud för {for_whom}"),
        A::NotProxy { proxy, for_whom } => format!("låntagare {proxy} är inte ombud för {for_whom}"),
        A::AlreadyAt { patron, institution } => format!("låntagare {patron} hör redan till {institution}"),
        A::TransferPending { patron, to } => format!("låntagare {patron} har redan en flytt till {to} som väntar"),
        A::NoTransfer(id) => format!("låntagare {id} har ingen flytt som väntar"),
        A::NoIdentifier { patron, value } => format!("låntagare {patron} har ingen identifierare '{value}'"),
        A::IdentifierAlready { value, active: true } => format!("identifieraren '{value}' är redan aktiv"),
        A::IdentifierAlready { value, active: false } => format!("identifieraren '{value}' är redan inaktiv"),
        A::NoActiveBlock { patron, kind: None } => format!("låntagare {patron} har ingen aktiv spärr"),
        A::NoActiveBlock { patron, kind: Some(k) } => {
            format!("låntagare {patron} har ingen aktiv spärr av typen '{k}'")
        }
        A::OwnAccount => "en anställd kan inte ta bort sitt eget konto".into(),
        A::EmptyFile => "filen är tom".into(),
    }
}

/// The register's fixed words in refusals (what a role may not do, what is taken), in Swedish.
fn ord(word: &str) -> &str {
    match word {
        "change patrons" => "ändra låntagare",
        "delete patrons" => "radera låntagare",
        "restore deleted patrons" => "återställa raderade låntagare",
        "change items" => "ändra exemplar",
        "manage terminal accounts" => "hantera terminalkonton",
        "manage staff accounts" => "hantera personalkonton",
        "give or change that role" => "ge eller ändra den rollen",
        "make a token for someone else" => "skapa en nyckel åt någon annan",
        "change the institution's settings" => "ändra bibliotekets inställningar",
        "primary id" | "primary-id" => "primärt id",
        "identifier" => "identifierare",
        "e-mail" => "e-postadress",
        "account" => "kontot",
        "staff account" => "personalkontot",
        "institution" => "biblioteket",
        "item" => "exemplaret",
        "notes" => "anteckningar",
        "holds" => "reservationer",
        "tokens" => "nycklar",
        "contact" => "kontaktuppgift",
        "contacts" => "kontaktuppgifter",
        "statistical category" => "statistikkategori",
        "statistical categories" => "statistikkategorier",
        "attachment" => "bilaga",
        "attachments" => "bilagor",
        "picture" => "bilden",
        "first name" => "förnamn",
        "last name" => "efternamn",
        "middle name" => "mellannamn",
        "phone" => "telefon",
        "postal code" => "postnummer",
        "user group" => "användargrupp",
        "language" => "språk",
        "identifier type" => "identifierartyp",
        "file name" => "filnamn",
        "birth date" => "födelsedatum",
        "purge date" => "gallringsdatum",
        "terms accepted" => "datum för godkända villkor",
        "first-name" => "förnamnet",
        "last-name" => "efternamnet",
        "middle-name" => "mellannamnet",
        "title" => "titeln",
        "birth-date" => "födelsedatumet",
        "email" => "e-postadressen",
        "address" => "adressen",
        "postal-code" => "postnumret",
        "group" => "användargruppen",
        "record-type" => "posttypen",
        "expiry" => "utgångsdatumet",
        "purge" => "gallringsdatumet",
        "note" => "anteckning",
        other => other,
    }
}

/// What the console tells Swedish staff for the refusals they meet at the desk; `None` for
/// the rest (kiosk-only refusals, and rules the engine words only in English), which are
/// shown as the engine says them.
fn swedish(r: &Refusal) -> Option<String> {
    Some(match r {
        Refusal::NoInstitution(c) => format!("det finns inget bibliotek '{c}'"),
        Refusal::NoPatron(p) => format!("det finns ingen låntagare {p}"),
        Refusal::NoItem(b) => format!("det finns inget exemplar '{b}'"),
        Refusal::NoStaff(l) => format!("det finns inget personalkonto '{l}'"),
        Refusal::NoFee(id) => format!("det finns ingen avgift {id}"),
        Refusal::NoHold(id) => format!("det finns ingen reservation {id}"),
        Refusal::NoAccount(l) => format!("det finns inget konto '{l}'"),
        Refusal::NoEntry { what, id } => format!("låntagaren har ingen {} {id}", ord(what)),
        Refusal::TooLarge { what, bytes, limit } => {
            format!("{} är {bytes} byte; registret tar högst {limit}", ord(what))
        }
        Refusal::NotAPicture => "en bild måste vara en PNG-, JPEG-, GIF- eller WebP-bild".into(),
        Refusal::Synced { field, source } => format!(
            "{} i ett externt konto kommer från {source}, vars synkning bestämmer det; ändra det där, eller gör kontot internt först",
            ord(field)
        ),
        Refusal::AsItStands(a) => som_det_star(a),
        Refusal::Invalid(i) => ogiltigt(i)?,
        Refusal::NoBlockType { code, known } => {
            format!("okänd spärrtyp '{code}'; kända: {}", known.join(", "))
        }
        Refusal::NotPermitted { role, needs: Some(needs), what } => {
            format!("en {} får inte {} (det kräver en {})", roll(*role), ord(what), roll(*needs))
        }
        Refusal::NotPermitted { role, needs: None, what } => format!("en {} får inte {}", roll(*role), ord(what)),
        Refusal::Taken { what, value, institution, patron } => {
            format!("{} '{value}' används redan av låntagare {patron} vid {institution}", ord(what))
        }
        Refusal::Exists { what, key } => format!("{} '{key}' finns redan", ord(what)),
        Refusal::PossibleDuplicate(ids) => {
            let ids: Vec<String> = ids.iter().map(|i| format!("#{i}")).collect();
            format!(
                "en låntagare med samma namn och födelsedatum finns redan ({}); inget lades till. Kontrollera, och registrera ändå om det är en annan person.",
                ids.join(", ")
            )
        }
        Refusal::Full { what, limit } => {
            format!("låntagaren har {limit} {}, så många som registret sparar; ta bort några först", ord(what))
        }
        Refusal::NotAnAmount(v) => format!("'{v}' är inte ett belopp"),
        Refusal::NotPositive => "en betalning måste vara mer än 0.00".into(),
        Refusal::Overpayment { amount, owed } => format!("{amount} är mer än de {owed} som är skuld"),
        Refusal::FeeNotOpen(id) => format!("avgift {id} är inte en öppen avgift för denna låntagare"),
        Refusal::WrongCurrency { accepted, given } => format!("betalningar görs i {accepted}, inte {given}"),
        Refusal::Changed(id) => format!(
            "låntagare {id} har ändrats av någon annan sedan du öppnade den; öppna den igen och gör om din ändring"
        ),
        Refusal::CannotDelete { balance, loans } => {
            let mut why = Vec::new();
            if balance.0 > 0 {
                why.push(format!("ett saldo på {balance} är obetalt"));
            }
            if *loans > 0 {
                why.push(format!("{loans} exemplar är utlånade"));
            }
            format!("låntagaren kan inte raderas: {}", why.join(" och "))
        }
        Refusal::NotOnLoanToPatron => "exemplaret är inte utlånat till denna låntagare".into(),
        Refusal::AlreadyHeld(b) => format!("låntagaren har redan en reservation på '{b}'"),
        Refusal::WrongPassword { remaining: 0 } => "fel användarnamn eller lösenord; kontot är nu låst en stund".into(),
        Refusal::WrongPassword { .. } => "fel användarnamn eller lösenord".into(),
        Refusal::Lending(d) => crate::service::words::denial(d, crate::domain::profile::Language::Swedish),
        Refusal::HoldsDenied(why) => format!(
            "låntagaren får inte reservera: {}",
            crate::service::words::reason(why, crate::domain::profile::Language::Swedish)
        ),
        _ => return None,
    })
}

// -- logging in and out ---------------------------------------------------------------------

/// The login form's own CSRF check: a random value in a cookie and in the form (a page of
/// another site can make the browser post, but cannot read the value to put in the form).
const LOGIN_COOKIE: &str = "sip2d_login";

fn login_page(lang: Lang, status: StatusCode, error: Option<&str>) -> Response {
    let token = crate::domain::secret::new_token().unwrap_or_default();
    let body = html! {
        @if let Some(e) = error { p.error role="alert" { (e) } }
        form method="post" action="/login" {
            input type="hidden" name="form" value=(token);
            label for="login" { (lang.t("login")) }
            input #login name="login" type="text" autocomplete="username" required autofocus;
            label for="password" { (lang.t("password")) }
            input #password name="password" type="password" autocomplete="current-password" required;
            p { button type="submit" { (lang.t("log_in")) } }
        }
    };
    let cookie = format!("{LOGIN_COOKIE}={token}; Path=/login; HttpOnly; Secure; SameSite=Strict");
    let mut r = respond(status, page(lang, None, lang.t("log_in"), body));
    if let Ok(v) = header::HeaderValue::from_str(&cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

async fn login_form(headers: HeaderMap) -> Response {
    login_page(Lang::of(&headers), StatusCode::OK, None)
}

#[derive(Deserialize)]
struct LoginForm {
    login: String,
    password: String,
    form: String,
}

async fn log_in(
    State(state): State<AdminState>,
    axum::Extension(peer): axum::Extension<crate::net::http::Peer>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let lang = Lang::of(&headers);
    let Ok(Form(f)) = form else { return login_page(lang, StatusCode::BAD_REQUEST, Some(lang.t("form_expired"))) };
    let cookie = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if cookie.is_empty() || !super::sessions::same_secret(&cookie, &f.form) {
        return login_page(lang, StatusCode::FORBIDDEN, Some(lang.t("form_expired")));
    }
    match api::authenticate(&state, peer, &f.login, &f.password).await {
        Ok(opened) => ([(header::SET_COOKIE, opened.set_cookie)], Redirect::to("/patrons")).into_response(),
        Err(Error::Refused(Refusal::StaffLocked(_))) => login_page(lang, StatusCode::LOCKED, Some(lang.t("locked"))),
        Err(Error::Refused(Refusal::WrongPassword { remaining: 0 })) => {
            login_page(lang, StatusCode::UNAUTHORIZED, Some(lang.t("locked")))
        }
        Err(Error::Refused(_)) => login_page(lang, StatusCode::UNAUTHORIZED, Some(lang.t("wrong_login"))),
        Err(e) => login_page(lang, StatusCode::SERVICE_UNAVAILABLE, Some(&e.to_string())),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    /// Missing, it is refused as a wrong one is.
    #[serde(default)]
    csrf: String,
}

async fn log_out(State(state): State<AdminState>, who: Staffer, headers: HeaderMap, form: Form<CsrfForm>) -> Response {
    if let Err(r) = who.check(&form.csrf) {
        return r;
    }
    for c in super::sessions::cookies(&headers, super::sessions::COOKIE) {
        state.sessions.close(c);
    }
    ([(header::SET_COOKIE, super::sessions::clear_cookie())], Redirect::to("/login")).into_response()
}

/// `/lang/sv`: the console in Swedish from now on (a cookie), back on the page it came from.
async fn set_language(Path(code): Path<String>, headers: HeaderMap) -> Response {
    let lang = if code == "sv" { "sv" } else { "en" };
    let back = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.split_once("://").map(|(_, rest)| rest))
        .and_then(|rest| rest.find('/').map(|i| rest[i..].to_string()))
        .filter(|p| p.starts_with('/') && !p.starts_with("//"))
        .unwrap_or_else(|| "/patrons".into());
    let cookie = format!("lang={lang}; Path=/; SameSite=Strict; Max-Age=31536000");
    ([(header::SET_COOKIE, cookie)], Redirect::to(&back)).into_response()
}

// -- finding patrons ------------------------------------------------------------------------

#[derive(Deserialize)]
struct SearchForm {
    #[serde(default)]
    institution: Option<String>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    r#type: Option<String>,
}

fn status_of(p: &Patron, lang: Lang) -> String {
    let mut s = vec![if p.active { lang.t("active") } else { lang.t("inactive") }];
    if p.deleted.is_some() {
        s.push(lang.t("deleted"));
    }
    if p.blocks.iter().any(|b| b.active) {
        s.push(lang.t("blocked"));
    }
    if p.locked {
        s.push(lang.t("locked_pin"));
    }
    s.join(", ")
}

fn account_type(p: &Patron, lang: Lang) -> String {
    match &p.account_type {
        crate::domain::AccountType::Internal => lang.t("internal").to_string(),
        crate::domain::AccountType::External { source } => format!("{} ({source})", lang.t("external")),
    }
}

fn record_type(r: RecordType, lang: Lang) -> &'static str {
    match r {
        RecordType::Public => lang.t("public"),
        RecordType::Staff => lang.t("staff"),
        RecordType::Contact => lang.t("contact"),
    }
}

async fn patrons(State(state): State<AdminState>, who: Staffer, Query(f): Query<SearchForm>) -> Response {
    let lang = who.lang;
    let institutions = &who.member.institutions;
    let institution = f.institution.filter(|i| who.member.covers(i)).unwrap_or_else(|| institutions[0].clone());
    let q = f.q.unwrap_or_default();
    let kind = f.r#type.unwrap_or_else(|| "all".into());
    let found = if q.trim().is_empty() {
        None
    } else {
        let read = Read::Search { institution: institution.clone(), query: q.clone(), now: jiff::Timestamp::now() };
        match state.engine.query(read).await {
            Ok(Answer::Patrons(ps)) => Some(
                ps.into_iter()
                    .filter(|p| kind == "all" || record_type(p.record_type, Lang::En).to_lowercase() == kind)
                    .take(api::MAX_PER_PAGE)
                    .collect::<Vec<_>>(),
            ),
            Ok(_) => Some(vec![]),
            Err(e) => {
                let (status, text) = refusal(lang, &e);
                return message_page(lang, Some(&who), status, &text);
            }
        }
    };
    let tab = |code: &str, key: &str| {
        let href = format!("/patrons?institution={}&q={}&type={code}", enc(&institution), enc(&q));
        html! { a href=(href) aria-current=[(kind == code).then_some("page")] { (lang.t(key)) } " " }
    };
    let body = html! {
        form method="get" action="/patrons" role="search" {
            label for="institution" { (lang.t("institution")) }
            select #institution name="institution" {
                @for i in institutions {
                    option value=(i) selected[*i == institution] { (i) }
                }
            }
            label for="q" { (lang.t("query")) }
            input #q name="q" type="search" value=(q) autofocus;
            input type="hidden" name="type" value=(kind);
            " " button type="submit" { (lang.t("search")) }
        }
        nav aria-label=(lang.t("record_types")) {
            (tab("all", "all")) (tab("public", "public")) (tab("staff", "staff")) (tab("contact", "contact"))
        }
        @if let Some(found) = &found {
            @if found.is_empty() {
                p { (lang.t("no_results")) }
            } @else {
                p { (lang.t("found")) " " (found.len()) }
                table {
                    thead { tr {
                        th scope="col" { (lang.t("name")) }
                        th scope="col" { (lang.t("primary_id")) }
                        th scope="col" { (lang.t("account_type")) }
                        th scope="col" { (lang.t("record_type")) }
                        th scope="col" { (lang.t("user_group")) }
                        th scope="col" { (lang.t("expiry")) }
                        th scope="col" { (lang.t("status")) }
                    } }
                    tbody {
                        @for p in found {
                            tr {
                                td { a href={ "/patrons/" (p.id) } { (p.display_name()) } }
                                td { (p.primary_id) }
                                td { (account_type(p, lang)) }
                                td { (record_type(p.record_type, lang)) }
                                td { (p.user_group.as_deref().unwrap_or("")) }
                                td { (p.expiry.map(|d| d.to_string()).unwrap_or_default()) }
                                td { (status_of(p, lang)) }
                            }
                        }
                    }
                }
            }
        }
    };
    respond(StatusCode::OK, page(lang, Some(&who), lang.t("patrons"), body))
}

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// -- adding a user --------------------------------------------------------------------------

/// The add form's fields: name, text key, input type; the first four are required.
const NEW_FIELDS: &[(&str, &str, &str)] = &[
    ("first_name", "first_name", "text"),
    ("last_name", "last_name", "text"),
    ("primary_id", "primary_id", "text"),
    ("barcode", "barcode", "text"),
    ("email", "email", "email"),
    ("phone", "phone", "tel"),
    ("address", "address", "text"),
    ("postal_code", "postal_code", "text"),
    ("birth_date", "birth_date", "text"),
    ("national_id", "national_id", "text"),
    ("user_group", "user_group", "text"),
    ("expiry", "expiry_field", "text"),
    ("language", "language_field", "text"),
];

fn new_patron_page(
    who: &Staffer,
    typed: &BTreeMap<String, String>,
    error: Option<&str>,
    duplicate: bool,
    status: StatusCode,
) -> Response {
    let lang = who.lang;
    let value = |k: &str| typed.get(k).cloned().unwrap_or_default();
    let field = |(name, key, kind): &(&str, &str, &str), required: bool| {
        html! {
            label for={ "new-" (name) } { (lang.t(key)) @if required { " (" (lang.t("required")) ")" } }
            input id={ "new-" (name) } type=(kind) name=(name) value=(value(name)) required[required];
        }
    };
    let body = html! {
        @if let Some(e) = error { p.error role="alert" { (e) } }
        form method="post" action="/patrons/new" {
            input type="hidden" name="csrf" value=(who.csrf);
            label for="new-institution" { (lang.t("institution")) }
            select #new-institution name="institution" {
                @for i in &who.member.institutions { option value=(i) selected[value("institution") == *i] { (i) } }
            }
            @for f in &NEW_FIELDS[..3] { (field(f, true)) }
            (field(&NEW_FIELDS[3], false))
            details open[NEW_FIELDS[4..].iter().any(|(n, _, _)| !value(n).is_empty())] {
                summary { (lang.t("optional_fields")) }
                @for f in &NEW_FIELDS[4..] { (field(f, false)) }
                label for="new-record-type" { (lang.t("record_type")) }
                select #new-record-type name="record_type" {
                    @for (code, key) in [("public", "public"), ("staff", "staff"), ("contact", "contact")] {
                        option value=(code) selected[value("record_type") == code] { (lang.t(key)) }
                    }
                }
                fieldset {
                    legend { (lang.t("minor")) }
                    label for="new-guardian-name" { (lang.t("guardian_name")) }
                    input #new-guardian-name type="text" name="guardian_name" value=(value("guardian_name"));
                    label for="new-guardian-contact" { (lang.t("guardian_contact")) }
                    input #new-guardian-contact type="text" name="guardian_contact" value=(value("guardian_contact"));
                    label { input type="checkbox" name="consent" value="yes" checked[!value("consent").is_empty()]; " " (lang.t("consent")) }
                }
            }
            @if duplicate {
                label { input type="checkbox" name="force" value="yes"; " " (lang.t("force")) }
            }
            // Checked on a fresh form; as the member left it on a form shown again.
            label { input type="checkbox" name="invite" value="yes" checked[typed.is_empty() || !value("invite").is_empty()]; " " (lang.t("send_invitation")) }
            p { button type="submit" { (lang.t("add_user")) } }
        }
    };
    respond(status, page(lang, Some(who), lang.t("add_user"), body))
}

async fn new_patron_form(who: Staffer) -> Response {
    new_patron_page(&who, &BTreeMap::new(), None, false, StatusCode::OK)
}

/// Registers the patron the form describes and opens their page; a refusal shows the form
/// again with everything as typed and the reason.
async fn add_patron(
    State(state): State<AdminState>,
    who: Staffer,
    Form(f): Form<BTreeMap<String, String>>,
) -> Response {
    let lang = who.lang;
    if let Err(r) = who.check(f.get("csrf").map_or("", String::as_str)) {
        return r;
    }
    let text = |k: &str| f.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let mut dates = BTreeMap::new();
    for k in ["birth_date", "expiry"] {
        match text(k).map(|v| v.parse::<jiff::civil::Date>().map_err(|_| v)) {
            Some(Ok(d)) => {
                dates.insert(k, d);
            }
            Some(Err(v)) => {
                let key = if k == "expiry" { "expiry_field" } else { k };
                let e = format!("{}: '{v}' {}", lang.t(key), lang.t("bad_date"));
                return new_patron_page(&who, &f, Some(&e), false, StatusCode::UNPROCESSABLE_ENTITY);
            }
            None => {}
        }
    }
    let guardian = match (text("guardian_name"), text("guardian_contact")) {
        (Some(name), Some(contact)) => Some(crate::domain::Guardian { name, contact }),
        _ => None,
    };
    let record_type = match text("record_type").as_deref() {
        Some("staff") => RecordType::Staff,
        Some("contact") => RecordType::Contact,
        _ => RecordType::Public,
    };
    // The consent is dated as the library's calendar has it, not the server's.
    let institution = text("institution").unwrap_or_default();
    let zone = institution_zone(&state, &institution).await;
    let body = api::PatronBody {
        institution,
        primary_id: text("primary_id").unwrap_or_default(),
        first_name: text("first_name").unwrap_or_default(),
        last_name: text("last_name").unwrap_or_default(),
        birth_date: dates.get("birth_date").copied(),
        email: text("email"),
        phone: text("phone"),
        address: text("address"),
        postal_code: text("postal_code"),
        language: text("language"),
        user_group: text("user_group"),
        record_type,
        expiry: dates.get("expiry").copied(),
        barcodes: text("barcode").into_iter().collect(),
        national_id: text("national_id"),
        guardian,
        terms_accepted: text("consent").map(|_| jiff::Timestamp::now().to_zoned(zone).date()),
        force: text("force").is_some(),
        invite: Some(text("invite").is_some()),
        ..Default::default()
    };
    match state.engine.run(body.operation(), who.caller().by()).await {
        Ok(Receipt::Patron(p)) => Redirect::to(&format!("/patrons/{}?done=1", p.id)).into_response(),
        Ok(_) => new_patron_page(&who, &f, Some("unexpected receipt"), false, StatusCode::SERVICE_UNAVAILABLE),
        Err(e) => {
            let duplicate = matches!(e, Error::Refused(Refusal::PossibleDuplicate(_)));
            let (status, text) = refusal(lang, &e);
            new_patron_page(&who, &f, Some(&text), duplicate, status)
        }
    }
}

// -- one patron -----------------------------------------------------------------------------

/// What a patron page says beside the record.
enum Flash {
    Saved,
    Refused(String),
    /// The edit met a newer version: the fields as the member typed them.
    Conflict(BTreeMap<String, String>),
}

/// The fields the console's edit form takes: the engine's name, the text's key, the input.
const EDIT_FIELDS: &[(&str, &str, &str)] = &[
    ("first-name", "first_name", "text"),
    ("last-name", "last_name", "text"),
    ("middle-name", "middle_name", "text"),
    ("title", "person_title", "text"),
    ("birth-date", "birth_date", "text"),
    ("email", "email", "email"),
    ("phone", "phone", "tel"),
    ("address", "address", "text"),
    ("postal-code", "postal_code", "text"),
    ("language", "language_field", "text"),
    ("group", "user_group", "text"),
    ("record-type", "record_type", "select"),
    ("expiry", "expiry_field", "text"),
    ("purge", "purge_field", "text"),
];

fn field_value(p: &Patron, field: &str) -> String {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let day = |d: Option<jiff::civil::Date>| d.map(|d| d.to_string()).unwrap_or_default();
    match field {
        "first-name" => p.first_name.clone(),
        "last-name" => p.last_name.clone(),
        "middle-name" => text(&p.middle_name),
        "title" => text(&p.title),
        "birth-date" => day(p.birth_date),
        "email" => text(&p.email),
        "phone" => text(&p.phone),
        "address" => text(&p.address),
        "postal-code" => text(&p.postal_code),
        "language" => text(&p.language),
        "group" => text(&p.user_group),
        "record-type" => kebab(&p.record_type),
        "expiry" => day(p.expiry),
        "purge" => day(p.purge),
        _ => String::new(),
    }
}

/// A field as the general table shows it (the record type in the member's language).
fn field_shown(p: &Patron, field: &str, lang: Lang) -> String {
    match field {
        "record-type" => record_type(p.record_type, lang).to_string(),
        _ => field_value(p, field),
    }
}

async fn patron_page(
    state: &AdminState,
    who: &Staffer,
    raw: &str,
    flash: Option<Flash>,
    status: StatusCode,
) -> Response {
    let lang = who.lang;
    let p = match api::visible(state, &who.caller(), raw).await {
        Ok(p) => p,
        Err(_) => {
            return message_page(lang, Some(who), StatusCode::NOT_FOUND, &format!("{} #{raw}", lang.t("not_found")));
        }
    };
    let institution = match state.engine.query(Read::Institution(p.institution.clone())).await {
        Ok(Answer::Institution(i)) => Some(*i),
        _ => None,
    };
    let zone =
        institution.as_ref().and_then(|i| jiff::tz::TimeZone::get(&i.timezone).ok()).unwrap_or(jiff::tz::TimeZone::UTC);
    let when = |t: jiff::Timestamp| t.to_zoned(zone.clone()).strftime("%Y-%m-%d %H:%M %Z").to_string();
    let (fees, balance) = match state.engine.query(Read::Fees(p.id)).await {
        Ok(Answer::Fees(f, b)) => (f, b.to_string()),
        _ => (vec![], String::new()),
    };
    let loans = match state.engine.query(Read::Loans { patron: Some(p.id) }).await {
        Ok(Answer::Loans(l)) => l,
        _ => vec![],
    };
    let holds = match state.engine.query(Read::Holds { patron: Some(p.id), item: None }).await {
        Ok(Answer::Holds(h)) => h,
        _ => vec![],
    };
    let mut history = match state.engine.query(Read::History(p.id)).await {
        Ok(Answer::History(h)) => h,
        _ => vec![],
    };
    history.reverse();
    history.truncate(20);
    let block_types: Vec<String> =
        institution.as_ref().map(|i| i.block_types.iter().map(|b| b.code.clone()).collect()).unwrap_or_default();
    let (typed, conflict) = match &flash {
        Some(Flash::Conflict(typed)) => (typed.clone(), true),
        _ => (BTreeMap::new(), false),
    };
    let path = format!("/patrons/{}", p.id);
    let csrf = &who.csrf;
    let synced_from = match &p.account_type {
        crate::domain::AccountType::External { source } => Some(source.clone()),
        crate::domain::AccountType::Internal => None,
    };
    let body = html! {
        @match &flash {
            Some(Flash::Saved) => p.flash role="status" { (lang.t("saved")) },
            Some(Flash::Refused(text)) => p.error role="alert" { (text) },
            Some(Flash::Conflict(_)) => div.error role="alert" {
                h2 { (lang.t("conflict_title")) }
                p { (lang.t("conflict_text")) }
            },
            None => {},
        }
        section aria-labelledby="general" {
            h2 #general { (lang.t("general")) }
            @if conflict { p { strong { (lang.t("current_record")) } } }
            table {
                tr { th scope="row" { (lang.t("primary_id")) } td { (p.primary_id) } }
                tr { th scope="row" { (lang.t("institution")) } td { (p.institution) } }
                tr { th scope="row" { (lang.t("account_type")) } td { (account_type(&p, lang)) } }
                tr { th scope="row" { (lang.t("status")) } td { (status_of(&p, lang)) } }
                @for (field, key, _) in EDIT_FIELDS {
                    tr { th scope="row" { (lang.t(key)) } td { (field_shown(&p, field, lang)) } }
                }
            }
        }
        section aria-labelledby="edit" {
            h2 #edit { @if conflict { (lang.t("your_changes")) } @else { (lang.t("edit")) } }
            form method="post" action={ (path) "/edit" } {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="version" value=(patron_tag(&p));
                @if let Some(source) = &synced_from {
                    p #synced-note { (lang.t("synced_fields")) " " strong { (source) } "." }
                }
                @for (field, key, kind) in EDIT_FIELDS {
                    @let shown = typed.get(*field).cloned().unwrap_or_else(|| field_value(&p, field));
                    // The sync's fields are shown, not sent: the engine would refuse them.
                    @let locked = synced_from.is_some() && SYNCED.contains(field);
                    label for=(field) { (lang.t(key)) }
                    @if *kind == "select" {
                        select id=(field) name=(field) disabled[locked] aria-describedby=[locked.then_some("synced-note")] {
                            @for (code, key) in [("public", "public"), ("staff", "staff"), ("contact", "contact")] {
                                option value=(code) selected[shown == code] { (lang.t(key)) }
                            }
                        }
                    } @else {
                        input id=(field) type=(kind) name=(field) value=(shown) disabled[locked]
                            aria-describedby=[locked.then_some("synced-note")];
                    }
                    // What the field showed: only what the member changes is sent.
                    input type="hidden" name={ "was-" (field) } value=(field_value(&p, field));
                }
                p { button type="submit" { (lang.t("save")) } }
            }
        }
        section aria-labelledby="identifiers" {
            h2 #identifiers { (lang.t("identifiers")) }
            ul {
                @for i in &p.identifiers {
                    li {
                        (i.kind) ": " (i.value)
                        @if let Some(n) = &i.note { " – " (n) }
                        @if !i.active { " (" (lang.t("inactive")) ")" }
                        " "
                        form.inline method="post" action={ (path) "/identifiers/" (enc(&i.value)) "/" (if i.active { "off" } else { "on" }) } {
                            input type="hidden" name="csrf" value=(csrf);
                            @let verb = if i.active { lang.t("turn_off") } else { lang.t("turn_on") };
                            button type="submit" aria-label={ (verb) " " (i.value) } { (verb) }
                        }
                    }
                }
            }
            form method="post" action={ (path) "/identifiers" } {
                input type="hidden" name="csrf" value=(csrf);
                label for="identifier-kind" { (lang.t("identifier_kind")) }
                select #identifier-kind name="kind" {
                    @for k in ["barcode", "student-id", "national-id", "other"] { option value=(k) { (k) } }
                }
                label for="identifier-value" { (lang.t("value")) }
                input #identifier-value name="value" type="text" required;
                label for="identifier-note" { (lang.t("note_optional")) }
                input #identifier-note name="note" type="text";
                p { button type="submit" { (lang.t("add_identifier")) } }
            }
        }
        section aria-labelledby="contacts" {
            h2 #contacts { (lang.t("contact_info")) }
            table {
                thead { tr {
                    th scope="col" { (lang.t("contact_kind")) }
                    th scope="col" { (lang.t("value")) }
                    th scope="col" { (lang.t("contact_use")) }
                    th scope="col" { (lang.t("actions")) }
                } }
                tbody {
                    @for (kind, value) in [(ContactKind::Email, p.email.clone()), (ContactKind::Phone, p.phone.clone()), (ContactKind::Address, p.address.clone().map(|a| match &p.postal_code { Some(pc) => format!("{a}, {pc}"), None => a }))] {
                        @if let Some(v) = value {
                            tr { td { (contact_kind(kind, lang)) } td { (v) } td { strong { (lang.t("preferred")) } } td {} }
                        }
                    }
                    @for c in &p.contacts {
                        tr {
                            td { (contact_kind(c.kind, lang)) }
                            td { (c.value) @if let Some(pc) = &c.postal_code { ", " (pc) } }
                            td { (contact_use(c.usage, lang)) }
                            td {
                                (action_button(&format!("{path}/contacts/{}/prefer", c.id), csrf, lang.t("make_preferred"), &c.value))
                                " "
                                (action_button(&format!("{path}/contacts/{}/remove", c.id), csrf, lang.t("remove"), &c.value))
                            }
                        }
                    }
                }
            }
            form method="post" action={ (path) "/contacts" } {
                input type="hidden" name="csrf" value=(csrf);
                label for="contact-kind" { (lang.t("contact_kind")) }
                select #contact-kind name="kind" {
                    @for k in ContactKind::ALL { option value=(k.name()) { (contact_kind(k, lang)) } }
                }
                label for="contact-value" { (lang.t("value")) }
                input #contact-value name="value" type="text" required;
                label for="contact-postal-code" { (lang.t("postal_code_optional")) }
                input #contact-postal-code name="postal_code" type="text";
                label for="contact-use" { (lang.t("contact_use")) }
                select #contact-use name="use" {
                    @for u in ContactUse::ALL { option value=(u.name()) selected[u == ContactUse::Other] { (contact_use(u, lang)) } }
                }
                p { button type="submit" { (lang.t("add_contact")) } }
            }
        }
        section aria-labelledby="statistics" {
            h2 #statistics { (lang.t("statistics")) }
            @if p.statistics.is_empty() { p { (lang.t("no_statistics")) } }
            ul {
                @for st in &p.statistics {
                    li {
                        strong { (st.category) } @if let Some(n) = &st.note { " – " (n) } " – " (st.by) ", " (when(st.at)) " "
                        (action_button(&format!("{path}/statistics/{}/remove", st.id), csrf, lang.t("remove"), &st.category))
                    }
                }
            }
            form method="post" action={ (path) "/statistics" } {
                input type="hidden" name="csrf" value=(csrf);
                label for="statistic-category" { (lang.t("category")) }
                input #statistic-category name="category" type="text" required;
                label for="statistic-note" { (lang.t("note_optional")) }
                input #statistic-note name="note" type="text";
                p { button type="submit" { (lang.t("add_statistic")) } }
            }
        }
        section aria-labelledby="attachments" {
            h2 #attachments { (lang.t("attachments")) }
            @if p.attachments.is_empty() { p { (lang.t("no_attachments")) } }
            ul {
                @for f in &p.attachments {
                    li {
                        a href={ (path) "/attachments/" (f.id) } download=(f.name) { (f.name) }
                        " (" (f.media_type) ", " (f.bytes) " " (lang.t("bytes")) ") – " (f.by) ", " (when(f.at)) " "
                        (action_button(&format!("{path}/attachments/{}/remove", f.id), csrf, lang.t("remove"), &f.name))
                    }
                }
            }
            form method="post" action={ (path) "/attachments" } enctype="multipart/form-data" {
                input type="hidden" name="csrf" value=(csrf);
                label for="attachment-file" { (lang.t("file")) }
                input #attachment-file name="file" type="file" required;
                p { button type="submit" { (lang.t("attach")) } }
            }
        }
        section aria-labelledby="picture" {
            h2 #picture { (lang.t("picture")) }
            @if let Some(f) = &p.picture {
                p { img src={ (path) "/picture?v=" (f.sha256) } alt={ (lang.t("picture_of")) " " (p.first_name) " " (p.last_name) } width="160"; }
                form.inline method="post" action={ (path) "/picture/remove" } {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" { (lang.t("remove_picture")) }
                }
            } @else {
                p { (lang.t("no_picture")) }
            }
            form method="post" action={ (path) "/picture" } enctype="multipart/form-data" {
                input type="hidden" name="csrf" value=(csrf);
                label for="picture-file" { (lang.t("file")) }
                input #picture-file name="file" type="file" accept="image/png,image/jpeg,image/gif,image/webp" required;
                p { button type="submit" { (lang.t("set_picture")) } }
            }
        }
        section aria-labelledby="proxies" {
            h2 #proxies { (lang.t("proxies")) }
            @if p.proxy_for.is_empty() { p { (lang.t("no_proxies")) } }
            ul {
                @for other in &p.proxy_for {
                    li {
                        a href={ "/patrons/" (other) } { "#" (other) } " "
                        form.inline method="post" action={ (path) "/proxy-for/" (other) "/remove" } {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" aria-label={ (lang.t("remove")) " #" (other) } { (lang.t("remove")) }
                        }
                    }
                }
            }
            form method="post" action={ (path) "/proxy-for" } {
                input type="hidden" name="csrf" value=(csrf);
                label for="proxy-card" { (lang.t("proxy_card")) }
                input #proxy-card name="card" type="text" required;
                p { button type="submit" { (lang.t("add_proxy")) } }
            }
        }
        section aria-labelledby="transfer" {
            h2 #transfer { (lang.t("transfer")) }
            @if let Some(t) = &p.transfer {
                p { (lang.t("transfer_pending")) " " strong { (t.to) } " – " (t.requested_by) ", " (when(t.at)) }
            } @else if p.deleted.is_none() {
                form method="post" action={ (path) "/transfer" } {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="transfer-to" { (lang.t("transfer_to")) }
                    input #transfer-to name="to" type="text" required;
                    p { button type="submit" { (lang.t("request_transfer")) } }
                }
            }
        }
        section aria-labelledby="blocks" {
            h2 #blocks { (lang.t("blocks")) }
            @let active: Vec<_> = p.blocks.iter().filter(|b| b.active).collect();
            @if active.is_empty() { p { (lang.t("no_blocks")) } }
            ul {
                @for b in &active {
                    li {
                        strong { (b.kind) } ": " (b.note.as_deref().unwrap_or("")) " – " (b.by) ", " (when(b.at)) " "
                        form.inline method="post" action={ (path) "/blocks/" (b.kind) "/lift" } {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" aria-label={ (lang.t("lift")) " " (b.kind) } { (lang.t("lift")) }
                        }
                    }
                }
            }
            form method="post" action={ (path) "/blocks" } {
                input type="hidden" name="csrf" value=(csrf);
                label for="block-type" { (lang.t("block_type")) }
                select #block-type name="type" {
                    @for b in &block_types { option value=(b) { (b) } }
                }
                label for="block-reason" { (lang.t("reason")) }
                input #block-reason name="reason" type="text" required;
                p { button type="submit" { (lang.t("add_block")) } }
            }
        }
        section aria-labelledby="notes" {
            h2 #notes { (lang.t("notes")) }
            @if p.notes.is_empty() { p { (lang.t("no_notes")) } }
            ul { @for n in &p.notes { li { (n.text) " – " (n.by) ", " (when(n.at)) @if n.public { " (" (lang.t("shown_to_patron")) ")" } } } }
            form method="post" action={ (path) "/notes" } {
                input type="hidden" name="csrf" value=(csrf);
                label for="note-text" { (lang.t("text")) }
                input #note-text name="text" type="text" required;
                label { input name="public" type="checkbox" value="yes"; " " (lang.t("shown_to_patron")) }
                p { button type="submit" { (lang.t("add_note")) } }
            }
        }
        section aria-labelledby="fees" {
            h2 #fees { (lang.t("fees")) }
            p { (lang.t("balance")) ": " strong { (balance) } }
            @if fees.is_empty() { p { (lang.t("no_fees")) } }
            @else {
                table {
                    thead { tr {
                        th scope="col" { "#" } th scope="col" { (lang.t("fee_kind")) } th scope="col" { (lang.t("amount")) }
                        th scope="col" { (lang.t("outstanding")) } th scope="col" { (lang.t("status")) } th scope="col" { (lang.t("actions")) }
                    } }
                    tbody {
                        @for f in &fees {
                            @let action = |a: &str| format!("{path}/fees/{}/{a}", f.id);
                            tr {
                                td { (f.id) }
                                td { (kebab(&f.kind)) @if let Some(item) = &f.item { " (" (item) ")" } }
                                td { (f.amount.to_string()) " " (f.currency) }
                                td { (f.outstanding().to_string()) }
                                td { (lang.t(fee_status_key(f.status))) }
                                td {
                                    @if f.status == crate::domain::FeeStatus::Active {
                                        form.inline method="post" action=(action("pay")) {
                                            input type="hidden" name="csrf" value=(csrf);
                                            label for={ "pay-" (f.id) } { (lang.t("amount")) }
                                            input id={ "pay-" (f.id) } name="amount" type="text" inputmode="decimal" size="8"
                                                value=(f.outstanding().to_string()) required;
                                            button type="submit" { (lang.t("pay")) }
                                        }
                                        form.inline method="post" action=(action("waive")) {
                                            input type="hidden" name="csrf" value=(csrf);
                                            label for={ "waive-" (f.id) } { (lang.t("reason")) }
                                            input id={ "waive-" (f.id) } name="reason" type="text" required;
                                            button type="submit" { (lang.t("waive")) }
                                        }
                                        form.inline method="post" action=(action("dispute")) {
                                            input type="hidden" name="csrf" value=(csrf);
                                            button type="submit" aria-label={ (lang.t("dispute")) " #" (f.id) } { (lang.t("dispute")) }
                                        }
                                    }
                                    @if f.status == crate::domain::FeeStatus::Disputed {
                                        form.inline method="post" action=(action("restore")) {
                                            input type="hidden" name="csrf" value=(csrf);
                                            button type="submit" aria-label={ (lang.t("undispute")) " #" (f.id) } { (lang.t("undispute")) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="loans" {
            h2 #loans { (lang.t("loans")) }
            @if loans.is_empty() { p { (lang.t("no_loans")) } }
            @else {
                table {
                    thead { tr {
                        th scope="col" { (lang.t("item")) } th scope="col" { (lang.t("due")) }
                        th scope="col" { (lang.t("renewals")) } th scope="col" { (lang.t("actions")) }
                    } }
                    tbody {
                        @for l in &loans {
                            tr {
                                td { (l.item) } td { (when(l.due)) } td { (l.renewals) }
                                td {
                                    form.inline method="post" action={ (path) "/loans/" (enc(&l.item)) "/renew" } {
                                        input type="hidden" name="csrf" value=(csrf);
                                        button type="submit" aria-label={ (lang.t("renew")) " " (l.item) } { (lang.t("renew")) }
                                    }
                                    form.inline method="post" action={ (path) "/loans/" (enc(&l.item)) "/checkin" } {
                                        input type="hidden" name="csrf" value=(csrf);
                                        button type="submit" aria-label={ (lang.t("check_in")) " " (l.item) } { (lang.t("check_in")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="holds" {
            h2 #holds { (lang.t("holds")) }
            @if holds.is_empty() { p { (lang.t("no_holds")) } }
            @else {
                table {
                    thead { tr {
                        th scope="col" { (lang.t("hold_on")) } th scope="col" { (lang.t("pickup")) }
                        th scope="col" { (lang.t("queue_place")) } th scope="col" { (lang.t("status")) }
                        th scope="col" { (lang.t("actions")) }
                    } }
                    tbody {
                        @for q in &holds {
                            @let on = q.hold.item.clone().or_else(|| q.hold.title.clone()).unwrap_or_default();
                            tr {
                                td { (on) } td { (q.hold.pickup) }
                                td { (q.position.map(|n| n.to_string()).unwrap_or_default()) }
                                td { @match q.hold.status {
                                    crate::domain::HoldStatus::Waiting => (lang.t("hold_waiting")),
                                    crate::domain::HoldStatus::Available => (lang.t("hold_available")),
                                } }
                                td { (action_button(&format!("{path}/holds/{}/cancel", q.hold.id), csrf, lang.t("cancel_hold"), &on)) }
                            }
                        }
                    }
                }
            }
            form method="post" action={ (path) "/holds" } {
                input type="hidden" name="csrf" value=(csrf);
                label for="hold-by" { (lang.t("hold_by")) }
                select #hold-by name="by" {
                    option value="title" { (lang.t("hold_by_title")) }
                    option value="item" { (lang.t("hold_by_item")) }
                }
                label for="hold-on" { (lang.t("hold_on")) }
                input #hold-on name="on" type="text" required;
                label for="hold-pickup" { (lang.t("pickup")) }
                input #hold-pickup name="pickup" type="text" value=(p.institution) required;
                p { button type="submit" { (lang.t("place_hold")) } }
            }
        }
        @if p.deleted.is_none() && p.email.is_some() {
            section aria-labelledby="invitation" {
                h2 #invitation { (lang.t("invitation")) }
                p { (lang.t("invitation_hint")) " " (p.email.as_deref().unwrap_or("")) }
                form method="post" action={ (path) "/invitation" } {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" { (lang.t("send_invitation_again")) }
                }
            }
        }
        @if let Some(at) = p.deleted {
            section aria-labelledby="deleted" {
                h2 #deleted { (lang.t("in_bank")) }
                p { (lang.t("deleted_on")) " " (when(at)) }
                @if who.member.role >= crate::domain::Role::UserAdministrator {
                    form method="post" action={ (path) "/restore" } {
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" { (lang.t("restore")) }
                    }
                }
            }
        }
        @if who.member.role >= crate::domain::Role::UserAdministrator && p.deleted.is_none() {
            section aria-labelledby="delete" {
                h2 #delete { (lang.t("delete")) }
                p { (lang.t("delete_hint")) }
                form method="post" action={ (path) "/delete" } {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" { (lang.t("delete")) }
                }
            }
        }
        section aria-labelledby="history" {
            h2 #history { (lang.t("history")) }
            table {
                thead { tr { th scope="col" { (lang.t("when")) } th scope="col" { (lang.t("who")) } th scope="col" { (lang.t("what")) } } }
                tbody {
                    @for e in &history {
                        tr {
                            td { (when(e.at)) }
                            td { (e.by) }
                            td {
                                (e.action)
                                @for (f, old, new) in &e.changes { " · " (f) ": " (old) " → " (new) }
                            }
                        }
                    }
                }
            }
        }
    };
    respond(status, page(lang, Some(who), &p.display_name(), body))
}

#[derive(Deserialize)]
struct Done {
    #[serde(default)]
    done: Option<String>,
}

async fn patron(
    State(state): State<AdminState>,
    who: Staffer,
    Path(id): Path<String>,
    Query(d): Query<Done>,
) -> Response {
    let flash = d.done.map(|_| Flash::Saved);
    patron_page(&state, &who, &id, flash, StatusCode::OK).await
}

/// Runs a change for the member and goes back to the patron's page: to a fresh one on
/// success (a reload then posts nothing again), or with the refusal said.
async fn change_then_show(state: &AdminState, who: &Staffer, id: &str, op: Operation, anchor: &str) -> Response {
    match state.engine.run(op, who.caller().by()).await {
        Ok(Receipt::Refused(r)) => {
            let (status, text) = refusal(who.lang, &Error::Refused(r));
            patron_page(state, who, id, Some(Flash::Refused(text)), status).await
        }
        Ok(_) => Redirect::to(&format!("/patrons/{id}?done=1#{anchor}")).into_response(),
        Err(e) => {
            let (status, text) = refusal(who.lang, &e);
            patron_page(state, who, id, Some(Flash::Refused(text)), status).await
        }
    }
}

/// The institution's time zone (UTC when it names none that exists): staff times are its.
async fn institution_zone(state: &AdminState, code: &str) -> jiff::tz::TimeZone {
    match state.engine.query(Read::Institution(code.to_string())).await {
        Ok(Answer::Institution(i)) => jiff::tz::TimeZone::get(&i.timezone).unwrap_or(jiff::tz::TimeZone::UTC),
        _ => jiff::tz::TimeZone::UTC,
    }
}

/// The patron a form on their page acts on, once the form's token is checked: the page's
/// handlers start here.
async fn acting_on(state: &AdminState, who: &Staffer, csrf: &str, id: &str) -> Result<u64, Response> {
    who.check(csrf)?;
    match patron_id(id) {
        Some(patron) => Ok(patron),
        None => Err(patron_page(state, who, id, None, StatusCode::NOT_FOUND).await),
    }
}

fn patron_id(raw: &str) -> Option<u64> {
    raw.parse().ok()
}

#[derive(Deserialize)]
struct BlockForm {
    #[serde(default)]
    csrf: String,
    r#type: String,
    #[serde(default)]
    reason: String,
}

async fn add_block(
    State(state): State<AdminState>,
    who: Staffer,
    Path(id): Path<String>,
    Form(f): Form<BlockForm>,
) -> Result<Response, Response> {
    let patron = acting_on(&state, &who, &f.csrf, &id).await?;
    let note = Some(f.reason).filter(|r| !r.trim().is_empty());
    Ok(change_then_show(&state, &who, &id, Operation::Block { patron, kind: f.r#type, note }, "blocks").await)
}

async fn lift_block(
    State(state): State<AdminState>,
    who: Staffer,
    Path((id, kind)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, Response> {
    let patron = acting_on(&state, &who, &f.csrf, &id).await?;
    Ok(change_then_show(&state, &who, &id, Operation::Unblock { patron, kind: Some(kind) }, "blocks").await)
}

#[derive(Deserialize)]
struct NoteForm {
    #[serde(default)]
    csrf: String,
    text: String,
    #[serde(default)]
    public: Option<String>,
}

async fn add_note(
    State(state): State<AdminState>,
    who: Staffer,
    Path(id): Path<String>,
    Form(f): Form<NoteForm>,
) -> Result<Response, Response> {
    let patron = acting_on(&state, &who, &f.csrf, &id).await?;
    let op = Operation::AddNote { patron, kind: "general".into(), text: f.text, public: f.public.is_some() };
    Ok(change_then_show(&state, &who, &id, op, "notes").await)
}

/// A value's name as the register writes it (`damage`, `lost`), for enums serde names.
fn kebab<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

fn fee_status_key(s: crate::domain::FeeStatus) -> &'static str {
    use crate::domain::FeeStatus as S;
    match s {
        S::Active => "fee_active",
        S::Disputed => "fee_disputed",
        S::Waived => "fee_waived",
        S::Paid => "fee_paid",
        S::Closed => "fee_closed",
    }
}

#[derive(Deserialize)]
struct FeeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    reason: String,
}

/// Pays (part of), waives with a reason, disputes, or takes back a dispute of one of the
/// patron's fees. The engine checks the fee is this patron's and the member may.
async fn fee_action(
    State(state): State<AdminState>,
    who: Staffer,
    Path((id, fee, action)): Path<(String, String, String)>,
    Form(f): Form<FeeForm>,
) -> Response {
    if let Err(r) = who.check(&f.csrf) {
        return r;
    }
    let (Some(patron), Ok(fee)) = (patron_id(&id), fee.parse::<u64>()) else {
        return patron_page(&state, &who, &id, None, StatusCode::NOT_FOUND).await;
    };
    // The fee must be this patron's: the page's forms never name another's.
    match state.engine.query(Read::Fees(patron)).await {
        Ok(Answer::Fees(fees, _)) if fees.iter().any(|x| x.id == fee) => {}
        _ => return patron_page(&state, &who, &id, None, StatusCode::NOT_FOUND).await,
    }
    let op = match action.as_str() {
        "pay" => match crate::domain::Money::parse(f.amount.trim()) {
            Some(amount) => Operation::PayFee { fee, amount, transaction: None },
            None => {
                let text = format!("{} {:?}", who.lang.t("not_an_amount"), f.amount);
                return patron_page(&state, &who, &id, Some(Flash::Refused(text)), StatusCode::UNPROCESSABLE_ENTITY)
                    .await;
            }
        },
        "waive" => Operation::WaiveFee { fee, reason: f.reason },
        "dispute" => Operation::DisputeFee { fee },
        "restore" => Operation::RestoreFee { fee },
        _ => return patron_page(&state, &who, &id, None, StatusCode::NOT_FOUND).await,
    };
    change_then_show(&state, &who, &id, op, "fees").await
}

/// Renews a loan at the desk (the one lending decision: lending an item the patron has
/// renews it), or checks the item in.
async fn loan_action(
    State(state): State<AdminState>,
    who: Staffer,
    Path((id, item, action)): Path<(String, String, String)>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, Response> {
    let patron = acting_on(&state, &who, &f.csrf, &id).await?;
    // The item must be on loan to this patron: a renewal would otherwise lend it anew.
    match state.engine.query(Read::Loans { patron: Some(patron) }).await {
        Ok(Answer::Loans(loans)) if loans.iter().any(|l| l.item == item) => {}
        _ => {
            let text = format!("{} {item}", who.lang.t("not_on_loan"));
            return Ok(patron_page(&state, &who, &id, Some(Flash::Refused(text)), StatusCode::NOT_FOUND).await);
        }
    }
    let op = match action.as_str() {
        "renew" => Operation::Lend { patron, item, accept_fee: false },
        "checkin" => Operation::Return { item },
        _ => return Ok(patron_page(&state, &who, &id, None, StatusCode::NOT_FOUND).await),
    };
    Ok(change_then_show(&state, &who, &id, op, "loans").await)
}

#[derive(Deserialize)]
struct HoldForm {
    #[serde(default)]
    csrf: String,
    by: String,
    on: String,
    pickup: String,
}

async fn place_hold(
    State(state): State<AdminState>,
    who: Staffer,
    Path(id): Path<String>,
    Form(f): Form<HoldForm>,
) -> Result<Response, Response> {
    let patron = acting_on(&state, &who, &f.csrf, &id).await?;
    let on = f.on.trim().to_string();
    let target = match f.by.as_str() {
        "item" => crate::engine::HoldTarget::Item(on),
        _ => crate::engine::HoldTarget::Title(on),
    };
    let op = Operation::PlaceHold { patron, target, pickup: f.pickup.trim().to_string(), expires: None };
    Ok(change_then_show(&state, &who, &id, op, "holds").await)
}

/// Cancels one of the patron's requests (one of another patron's is not there).
async fn cancel_hold(
    State(state): State<AdminState>,
    who: Staffer,
    Path((id, hold)): Path<(String, u64)>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, Response> {
    let patron = acting_on(&state, &who, &f.csrf, &id).await?;
    match state.engine.query(Read::Holds { patron: Some(patron), item: None }).await {
        Ok(Answer::Holds(holds)) if holds.iter().any(|q| q.hold.id == hold) => {}
        _ => return Ok(patron_page(&state, &who, &id, None, StatusCode::NOT_FOUND).await),
    }
    Ok(change_then_show(&state, &who, &id, Operation::CancelHold { hold }, "holds").await)
}

/// Deletes the patron (into the bank of deleted users); the engine refuses it to roles below
/// User Administrator, and while a balance or a loan remains.
async fn delete(
    State(state): State<AdminState>,
    who: Staffer,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, Response> {
    let patron = acting_on(&state, &who, &f.csrf, &id).await?;
    Ok(change_then_show(&state, &who, &id, Operation::DeletePatron { patron }, "general").await)
}

/// A one-button form posting to `action` with the page's token; the button's name says to a
/// screen reader what it acts on (`label` and `on`).
fn action_button(action: &str, csrf: &str, label: &str, on: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            input type="hidden" name="csrf" value=(csrf);
            button type="submit" aria-label={ (label) " " (on) } { (label) }
        }
    }
}

fn contact_kind(k: ContactKind, lang: Lang) -> &'static str {
    match k {
        ContactKind::Email => lang.t("contact_email"),
        ContactKind::Phone => lang.t("contact_phone"),
        ContactKind::Address => lang.t("contact_address"),
    }
}

fn contact_use(u: ContactUse, lang: Lang) -> &'static str {
    match u {
        ContactUse::Home => lang.t("use_home"),
        ContactUse::Work => lang.t("use_work"),
        ContactUse::School => lang.t("use_school"),
        ContactUse::Mobile => lang.t("use_mobile"),
        ContactUse::Other => lang.t("use_other"),
    }
}

#[derive(Deserialize)]
struct ContactForm {
    #[serde(default)]
    csrf: String,
    kind: String,
    value: String,
    #[serde(default)]
    postal_code: String,
    #[serde(default, rename = "use")]
    usage: String,
}

async fn add_contact(
    State(state): State<AdminState>,
    who: Staffer,
    Path(id): Path<String>,
    Form(f): Form<ContactForm>,
) -> Result<Response, Response> {
    let patron = acting_on(&state, &who, &f.csrf, &id).await?;
    let (Some(kind), Some(usage)) = (
        ContactKind::ALL.into_iter().find(|k| k.name() == f.kind),
        ContactUse::parse(&f.usage).or(Some(ContactUse::Other)),
    ) else {
        return Ok(patron_page(&state, &who, &id, None, StatusCode::BAD_REQUEST).await);
    };
    let postal_code = Some(f.postal_code).filter(|p| !p.trim().is_empty());
    let op = Operation::AddContact { patron, kind, value: f.value, postal_code, usage };
    Ok(change_then_show(&state, &who, &id, op, "contacts").await)
}

async fn contact_action(
    State(state): State<AdminState>,
    who: Staffer,
    Path((id, contact, action)): Path<(String, u32, String)>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, Response> {
    let patron = acting_on(&state, &who, &f.csrf, &id).await?;
    let op = match action.as_str() {
        "prefer" => Operation::PreferContact { patron, contact },
        "remove" => Operation::RemoveContact { patron, contact },
        _ => return Ok(patron_page(&state, &who, &id, None, StatusCode::NOT_FOUND).await),
    };
    Ok(change_then_show(&state, &who, &id, op, "contacts").await)
}

#[derive(Deserialize)]
struct StatisticForm {
    #[serde(default)]
    csrf: String,
    category: String,
    #[serde(default)]
    note: String,
}

async fn add_statistic(
    State(state): State<AdminState>,
    who: Staffer,
    Path(id): Path<String>,
    Form(f): Form<StatisticForm>,
) -> Result<Response, Response> {
    let patron = acting_on(&state, &who, &f.csrf, &id).await?;
    let note = Some(f.note).filter(|n| !n.trim().is_empty());
    Ok(change_then_show(
        &state,
        &who,
        &id,
        Operation::AddStatistic { patron, category: f.category, note },
        "statistics",
    )
    .await)
}

async fn remove_statistic(
    State(state): State<AdminState>,
    who: Staffer,
    Path((id, statistic)): Path<(String, u32)>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, Response> {
    let patron = acting_on(&state, &who, &f.csrf, &id).await?;
    Ok(change_then_show(&state, &who, &id, Operation::RemoveStatistic { patron, statistic }, "statistics").await)
}

/// A file form's fields (the page's token, then the file): read whole, within the
/// listener's body limit.
async fn file_form(mut form: axum::extract::Multipart) -> Result<(String, Option<(String, Vec<u8>)>), String> {
    let (mut csrf, mut file) = (String::new(), None);
    while let Some(field) = form.next_field().await.map_err(|e| e.body_text())? {
        match field.name() {
            Some("csrf") => csrf = field.text().await.map_err(|e| e.body_text())?,
            Some("file") => {
                let name = field.file_name().unwrap_or("file").to_string();
                let bytes = field.bytes().await.map_err(|e| e.body_text())?;
                if !bytes.is_empty() {
                    file = Some((name, bytes.to_vec()));
                }
            }
            _ => {}
        }
    }
    Ok((csrf, file))
}

/// The file a form sent, once its token is checked; the patron's page saying what is wrong
/// otherwise.
async fn uploaded(
    state: &AdminState,
    who: &Staffer,
    id: &str,
    form: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<(u64, String, Vec<u8>), Response> {
    let read = match form {
        Ok(f) => file_form(f).await,
        Err(e) => Err(e.body_text()),
    };
    let (csrf, file) = match read {
        Ok(r) => r,
        Err(why) => {
            return Err(patron_page(state, who, id, Some(Flash::Refused(why)), StatusCode::PAYLOAD_TOO_LARGE).await);
        }
    };
    let patron = acting_on(state, who, &csrf, id).await?;
    match file {
        Some((name, bytes)) => Ok((patron, name, bytes)),
        None => {
            let flash = Flash::Refused(who.lang.t("no_file").into());
            Err(patron_page(state, who, id, Some(flash), StatusCode::BAD_REQUEST).await)
        }
    }
}

async fn add_attachment(
    State(state): State<AdminState>,
    who: Staffer,
    Path(id): Path<String>,
    form: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, Response> {
    let (patron, name, bytes) = uploaded(&state, &who, &id, form).await?;
    let op = Operation::AddAttachment { patron, name, content: crate::engine::ops::FileBytes(bytes) };
    Ok(change_then_show(&state, &who, &id, op, "attachments").await)
}

async fn attachment(State(state): State<AdminState>, who: Staffer, Path((id, n)): Path<(String, u32)>) -> Response {
    if n == 0 {
        return message_page(who.lang, Some(&who), StatusCode::NOT_FOUND, who.lang.t("not_found"));
    }
    api::file_response(&state, &who.caller(), &id, n).await
}

async fn remove_attachment(
    State(state): State<AdminState>,
    who: Staffer,
    Path((id, attachment)): Path<(String, u32)>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, Response> {
    let patron = acting_on(&state, &who, &f.csrf, &id).await?;
    Ok(change_then_show(&state, &who, &id, Operation::RemoveAttachment { patron, attachment }, "attachments").await)
}

async fn picture(State(state): State<AdminState>, who: Staffer, Path(id): Path<String>) -> Response {
    api::file_response(&state, &who.caller(), &id, 0).await
}

async fn set_picture(
    State(state): State<AdminState>,
    who: Staffer,
    Path(id): Path<String>,
    form: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, Response> {
    let (patron, _, bytes) = uploaded(&state, &who, &id, form).await?;
    let op = Operation::SetPicture { patron, content: Some(crate::engine::ops::FileBytes(bytes)) };
    Ok(change_then_show(&state, &who, &id, op, "picture").await)
}

async fn remove_picture(
    State(state): State<AdminState>,
    who: Staffer,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, Response> {
    let patron = acting_on(&state, &who, &f.csrf, &id).await?;
    Ok(change_then_show(&state, &who, &id, Operation::SetPicture { patron, content: None }, "picture").await)
}

#[derive(Deserialize)]
struct IdentifierForm {
    #[serde(default)]
    csrf: String,
    kind: String,
    value: String,
    #[serde(default)]
    note: String,
}

async fn add_identifier(
    State(state): State<AdminState>,
    who: Staffer,
    Path(id): Path<String>,
    Form(f): Form<IdentifierForm>,
) -> Result<Response, Response> {
    let patron = acting_on(&state, &who, &f.csrf, &id).await?;
    let note = Some(f.note).filter(|n| !n.trim().is_empty());
    let op = Operation::AddIdentifier { patron, kind: f.kind, value: f.value.trim().to_string(), note };
    Ok(change_then_show(&state, &who, &id, op, "identifiers").await)
}

/// Turns an identifier off (it stops working at kiosks, and stays on the record) or on again.
async fn switch_identifier(
    State(state): State<AdminState>,
    who: Staffer,
    Path((id, value, switch)): Path<(String, String, String)>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, Response> {
    let patron = acting_on(&state, &who, &f.csrf, &id).await?;
    let active = match switch.as_str() {
        "on" => true,
        "off" => false,
        _ => return Ok(patron_page(&state, &who, &id, None, StatusCode::NOT_FOUND).await),
    };
    Ok(change_then_show(&state, &who, &id, Operation::SetIdentifierActive { patron, value, active }, "identifiers")
        .await)
}

#[derive(Deserialize)]
struct ProxyForm {
    #[serde(default)]
    csrf: String,
    card: String,
}

/// Lets this patron act for another, named by card, primary id or e-mail at this patron's
/// institution.
async fn add_proxy(
    State(state): State<AdminState>,
    who: Staffer,
    Path(id): Path<String>,
    Form(f): Form<ProxyForm>,
) -> Response {
    if let Err(r) = who.check(&f.csrf) {
        return r;
    }
    let proxy = match api::visible(&state, &who.caller(), &id).await {
        Ok(p) => p,
        Err(_) => return patron_page(&state, &who, &id, None, StatusCode::NOT_FOUND).await,
    };
    let find = Read::FindPatron { institution: proxy.institution.clone(), key: f.card.trim().to_string() };
    let other = match state.engine.query(find).await {
        Ok(Answer::Patron(other)) => other.id,
        Ok(_) => return patron_page(&state, &who, &id, None, StatusCode::NOT_FOUND).await,
        Err(e) => {
            let (status, text) = refusal(who.lang, &e);
            return patron_page(&state, &who, &id, Some(Flash::Refused(text)), status).await;
        }
    };
    change_then_show(
        &state,
        &who,
        &id,
        Operation::SetProxy { proxy: proxy.id, for_whom: other, allow: true },
        "proxies",
    )
    .await
}

async fn remove_proxy(
    State(state): State<AdminState>,
    who: Staffer,
    Path((id, other)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(r) = who.check(&f.csrf) {
        return r;
    }
    let (Some(proxy), Some(for_whom)) = (patron_id(&id), patron_id(&other)) else {
        return patron_page(&state, &who, &id, None, StatusCode::NOT_FOUND).await;
    };
    change_then_show(&state, &who, &id, Operation::SetProxy { proxy, for_whom, allow: false }, "proxies").await
}

#[derive(Deserialize)]
struct TransferForm {
    #[serde(default)]
    csrf: String,
    to: String,
}

/// Asks to move the patron to another library, whose staff then accept or decline.
async fn request_transfer(
    State(state): State<AdminState>,
    who: Staffer,
    Path(id): Path<String>,
    Form(f): Form<TransferForm>,
) -> Result<Response, Response> {
    let patron = acting_on(&state, &who, &f.csrf, &id).await?;
    let op = Operation::RequestTransfer { patron, to: f.to.trim().to_string() };
    Ok(change_then_show(&state, &who, &id, op, "transfer").await)
}

/// Patrons other libraries ask to move to the member's: who, from where, asked by whom; each
/// accepted or declined here (the patron's own page is not theirs to see until accepted).
async fn transfers(State(state): State<AdminState>, who: Staffer) -> Response {
    transfers_page(&state, &who, None, StatusCode::OK).await
}

async fn transfers_page(state: &AdminState, who: &Staffer, flash: Option<String>, status: StatusCode) -> Response {
    let lang = who.lang;
    let mut pending = Vec::new();
    for institution in &who.member.institutions {
        if let Ok(Answer::Patrons(ps)) = state.engine.query(Read::PendingTransfers(institution.clone())).await {
            pending.extend(ps);
        }
    }
    let body = html! {
        @if let Some(text) = &flash { p.error role="alert" { (text) } }
        @if pending.is_empty() { p { (lang.t("no_transfers")) } }
        @else {
            table {
                thead { tr {
                    th scope="col" { (lang.t("name")) } th scope="col" { (lang.t("primary_id")) }
                    th scope="col" { (lang.t("from")) } th scope="col" { (lang.t("transfer_to")) }
                    th scope="col" { (lang.t("who")) } th scope="col" { (lang.t("actions")) }
                } }
                tbody {
                    @for p in &pending {
                        @let t = p.transfer.as_ref();
                        tr {
                            td { (p.display_name()) } td { (p.primary_id) } td { (p.institution) }
                            td { (t.map(|t| t.to.as_str()).unwrap_or("")) } td { (t.map(|t| t.requested_by.as_str()).unwrap_or("")) }
                            td {
                                @for (decision, key) in [("accept", "accept"), ("decline", "decline")] {
                                    form.inline method="post" action={ "/transfers/" (p.id) "/" (decision) } {
                                        input type="hidden" name="csrf" value=(who.csrf);
                                        button type="submit" aria-label={ (lang.t(key)) " " (p.display_name()) } { (lang.t(key)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    respond(status, page(lang, Some(who), lang.t("transfers"), body))
}

async fn decide_transfer(
    State(state): State<AdminState>,
    who: Staffer,
    Path((id, decision)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(r) = who.check(&f.csrf) {
        return r;
    }
    let accept = match decision.as_str() {
        "accept" => true,
        "decline" => false,
        _ => return transfers_page(&state, &who, None, StatusCode::NOT_FOUND).await,
    };
    let Some(patron) = patron_id(&id) else { return transfers_page(&state, &who, None, StatusCode::NOT_FOUND).await };
    match state.engine.run(Operation::DecideTransfer { patron, accept }, who.caller().by()).await {
        Ok(Receipt::Refused(r)) => {
            let (status, text) = refusal(who.lang, &Error::Refused(r));
            transfers_page(&state, &who, Some(text), status).await
        }
        Ok(_) if accept => Redirect::to(&format!("/patrons/{patron}?done=1")).into_response(),
        Ok(_) => Redirect::to("/transfers").into_response(),
        Err(e) => {
            let (status, text) = refusal(who.lang, &e);
            transfers_page(&state, &who, Some(text), status).await
        }
    }
}

/// Writes the welcome (the e-mail invitation) to the outbox again.
async fn invite(
    State(state): State<AdminState>,
    who: Staffer,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, Response> {
    let patron = acting_on(&state, &who, &f.csrf, &id).await?;
    Ok(change_then_show(&state, &who, &id, Operation::Invite { patron }, "invitation").await)
}

/// Brings a patron back from the bank of deleted users (User Administrators and above; the
/// engine refuses it when their primary id or an identifier has been taken since).
async fn restore(
    State(state): State<AdminState>,
    who: Staffer,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, Response> {
    let patron = acting_on(&state, &who, &f.csrf, &id).await?;
    Ok(change_then_show(&state, &who, &id, Operation::RestorePatron { patron }, "general").await)
}

#[derive(Deserialize)]
struct BankForm {
    #[serde(default)]
    institution: Option<String>,
}

/// The bank of deleted users at one of the member's institutions: who, since when, and (for
/// User Administrators) a way back.
async fn bank(State(state): State<AdminState>, who: Staffer, Query(f): Query<BankForm>) -> Response {
    let lang = who.lang;
    let institutions = &who.member.institutions;
    let institution = f.institution.filter(|i| who.member.covers(i)).unwrap_or_else(|| institutions[0].clone());
    let filter = crate::engine::ListFilter {
        institution: Some(institution.clone()),
        deleted: true,
        limit: Some(api::MAX_PER_PAGE),
        ..Default::default()
    };
    let deleted = match state.engine.query(Read::Patrons(filter)).await {
        Ok(Answer::Patrons(ps)) => ps,
        Ok(_) => vec![],
        Err(e) => {
            let (status, text) = refusal(lang, &e);
            return message_page(lang, Some(&who), status, &text);
        }
    };
    let zone = institution_zone(&state, &institution).await;
    let may_restore = who.member.role >= crate::domain::Role::UserAdministrator;
    let body = html! {
        form method="get" action="/deleted" {
            label for="institution" { (lang.t("institution")) }
            select #institution name="institution" {
                @for i in institutions { option value=(i) selected[*i == institution] { (i) } }
            }
            " " button type="submit" { (lang.t("show")) }
        }
        p { (lang.t("bank_hint")) }
        @if deleted.is_empty() { p { (lang.t("bank_empty")) } }
        @else {
            table {
                thead { tr {
                    th scope="col" { (lang.t("name")) } th scope="col" { (lang.t("primary_id")) }
                    th scope="col" { (lang.t("deleted_on")) }
                    @if may_restore { th scope="col" { (lang.t("actions")) } }
                } }
                tbody {
                    @for p in &deleted {
                        tr {
                            td { a href={ "/patrons/" (p.id) } { (p.display_name()) } }
                            td { (p.primary_id) }
                            td { (p.deleted.map(|t| t.to_zoned(zone.clone()).strftime("%Y-%m-%d %H:%M %Z").to_string()).unwrap_or_default()) }
                            @if may_restore {
                                td {
                                    form.inline method="post" action={ "/patrons/" (p.id) "/restore" } {
                                        input type="hidden" name="csrf" value=(who.csrf);
                                        button type="submit" aria-label={ (lang.t("restore")) " " (p.display_name()) } { (lang.t("restore")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    respond(StatusCode::OK, page(lang, Some(&who), lang.t("bank"), body))
}

/// Saves the edit form against the version it was opened with. A newer version gets the
/// conflict page: the record as it is now, and the form as the member filled it in.
async fn edit(
    State(state): State<AdminState>,
    who: Staffer,
    Path(id): Path<String>,
    Form(mut f): Form<BTreeMap<String, String>>,
) -> Response {
    if let Err(r) = who.check(f.get("csrf").map_or("", String::as_str)) {
        return r;
    }
    let Some(patron) = patron_id(&id) else { return patron_page(&state, &who, &id, None, StatusCode::NOT_FOUND).await };
    let version = f.remove("version").unwrap_or_default();
    // What the member changed: a field they left alone does not overwrite a colleague's
    // change to it, now or after a conflict.
    let changed: BTreeMap<String, String> = EDIT_FIELDS
        .iter()
        .filter_map(|(field, _, _)| {
            let typed = f.get(*field)?;
            (f.get(&format!("was-{field}")) != Some(typed)).then(|| (field.to_string(), typed.clone()))
        })
        .collect();
    if changed.is_empty() {
        return Redirect::to(&format!("/patrons/{id}")).into_response();
    }
    let sets: Vec<(String, String)> = changed.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let op = Operation::EditPatron { patron, sets, expect: Some(version) };
    match state.engine.run(op, who.caller().by()).await {
        Ok(_) => Redirect::to(&format!("/patrons/{id}?done=1")).into_response(),
        Err(Error::Refused(Refusal::Changed(_))) => {
            patron_page(&state, &who, &id, Some(Flash::Conflict(changed)), StatusCode::CONFLICT).await
        }
        Err(e) => {
            let (status, text) = refusal(who.lang, &e);
            patron_page(&state, &who, &id, Some(Flash::Refused(text)), status).await
        }
    }
}

// -- staff and terminal accounts --------------------------------------------------------------

/// Runs a change from an accounts page and goes back to it, or shows it with the refusal.
async fn change_then_list(state: &AdminState, who: &Staffer, op: Result<Operation, Error>, to: &str) -> Response {
    let done = match op {
        Ok(op) => state.engine.run(op, who.caller().by()).await,
        Err(e) => Err(e),
    };
    match done {
        Ok(Receipt::Refused(r)) => refused_list(state, who, Error::Refused(r), to).await,
        Ok(_) => Redirect::to(&format!("{to}?done=1")).into_response(),
        Err(e) => refused_list(state, who, e, to).await,
    }
}

async fn refused_list(state: &AdminState, who: &Staffer, e: Error, to: &str) -> Response {
    let (status, text) = refusal(who.lang, &e);
    if to == "/staff" {
        staff_page(state, who, Some(Flash::Refused(text)), None, status).await
    } else {
        accounts_page(state, who, Some(Flash::Refused(text)), status).await
    }
}

async fn staff(State(state): State<AdminState>, who: Staffer, Query(d): Query<Done>) -> Response {
    staff_page(&state, &who, d.done.map(|_| Flash::Saved), None, StatusCode::OK).await
}

/// The staff accounts the member sees; their own tokens; and, for User Administrators and
/// above, new members (of a role below their own, at their institutions), unlocking and
/// removing. `token`: a token just made, shown this once.
async fn staff_page(
    state: &AdminState,
    who: &Staffer,
    flash: Option<Flash>,
    token: Option<String>,
    status: StatusCode,
) -> Response {
    let lang = who.lang;
    let members = match state.engine.query(Read::StaffList).await {
        Ok(Answer::StaffList(all)) => all.into_iter().filter(|m| api::sees_member(&who.caller(), m)).collect(),
        _ => vec![],
    };
    let me = &who.member;
    let manages = me.role >= crate::domain::Role::UserAdministrator;
    let now = jiff::Timestamp::now();
    let csrf = &who.csrf;
    let body = html! {
        @match &flash {
            Some(Flash::Saved) => p.flash role="status" { (lang.t("saved")) },
            Some(Flash::Refused(text)) => p.error role="alert" { (text) },
            _ => {},
        }
        @if let Some(t) = &token {
            div.flash role="status" { p { (lang.t("token_once")) } p { code { (t) } } }
        }
        section aria-labelledby="members" {
            h2 #members { (lang.t("members")) }
            table {
                thead { tr {
                    th scope="col" { (lang.t("login")) } th scope="col" { (lang.t("name")) } th scope="col" { (lang.t("role")) }
                    th scope="col" { (lang.t("institutions")) } th scope="col" { (lang.t("status")) }
                    @if manages { th scope="col" { (lang.t("actions")) } }
                } }
                tbody {
                    @for m in &members {
                        tr {
                            td { (m.login) } td { (m.name) } td { (m.role) } td { (m.institutions.join(", ")) }
                            td { @if m.locked(now) { (lang.t("account_locked")) } @else { (lang.t("active")) } }
                            @if manages {
                                td {
                                    @if m.role < me.role {
                                        @if m.locked(now) {
                                            form.inline method="post" action={ "/staff/" (enc(&m.login)) "/unlock" } {
                                                input type="hidden" name="csrf" value=(csrf);
                                                button type="submit" aria-label={ (lang.t("unlock")) " " (m.login) } { (lang.t("unlock")) }
                                            }
                                        }
                                        form.inline method="post" action={ "/staff/" (enc(&m.login)) "/remove" } {
                                            input type="hidden" name="csrf" value=(csrf);
                                            button type="submit" aria-label={ (lang.t("remove")) " " (m.login) } { (lang.t("remove")) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="tokens" {
            h2 #tokens { (lang.t("your_tokens")) }
            p { (lang.t("tokens_hint")) }
            ul {
                @for t in &me.tokens {
                    li {
                        (t.label) " (#" (t.id) ") "
                        form.inline method="post" action={ "/staff/tokens/" (t.id) "/revoke" } {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" aria-label={ (lang.t("revoke")) " " (t.label) } { (lang.t("revoke")) }
                        }
                    }
                }
            }
            form method="post" action="/staff/tokens" {
                input type="hidden" name="csrf" value=(csrf);
                label for="token-label" { (lang.t("token_label")) }
                input #token-label name="label" type="text" required;
                p { button type="submit" { (lang.t("make_token")) } }
            }
        }
        @if manages {
            section aria-labelledby="new-member" {
                h2 #new-member { (lang.t("new_member")) }
                form method="post" action="/staff" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="member-login" { (lang.t("login")) }
                    input #member-login name="login" type="text" required autocomplete="off";
                    label for="member-name" { (lang.t("name")) }
                    input #member-name name="name" type="text" required;
                    label for="member-password" { (lang.t("password_min")) }
                    input #member-password name="password" type="password" required minlength="10" autocomplete="new-password";
                    label for="member-role" { (lang.t("role")) }
                    select #member-role name="role" {
                        @for r in crate::domain::Role::ALL.iter().filter(|r| **r < me.role) { option value=(r.code()) { (r) } }
                    }
                    label for="member-institution" { (lang.t("institution")) }
                    select #member-institution name="institution" {
                        @for i in &me.institutions { option value=(i) { (i) } }
                    }
                    p { button type="submit" { (lang.t("add_member")) } }
                }
            }
        }
    };
    respond(status, page(lang, Some(who), lang.t("staff_accounts"), body))
}

#[derive(Deserialize)]
struct MemberForm {
    #[serde(default)]
    csrf: String,
    login: String,
    name: String,
    password: String,
    role: String,
    institution: String,
}

async fn add_member(State(state): State<AdminState>, who: Staffer, Form(f): Form<MemberForm>) -> Response {
    if let Err(r) = who.check(&f.csrf) {
        return r;
    }
    let op = match crate::domain::Role::parse(&f.role) {
        None => Err(Error::Refused(Refusal::rule(format!("no role {}", f.role)))),
        Some(role) => {
            api::hashed(f.password, crate::engine::hash_staff_password).await.map(|password_hash| Operation::AddStaff {
                login: f.login.trim().to_string(),
                name: f.name.trim().to_string(),
                password_hash,
                role,
                institutions: vec![f.institution],
            })
        }
    };
    change_then_list(&state, &who, op, "/staff").await
}

async fn member_action(
    State(state): State<AdminState>,
    who: Staffer,
    Path((login, action)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(r) = who.check(&f.csrf) {
        return r;
    }
    let op = match action.as_str() {
        "unlock" => Operation::UnlockStaff { login },
        "remove" => Operation::RemoveStaff { login },
        _ => return message_page(who.lang, Some(&who), StatusCode::NOT_FOUND, who.lang.t("not_found")),
    };
    change_then_list(&state, &who, Ok(op), "/staff").await
}

#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    csrf: String,
    label: String,
}

/// A bearer token of the member's own, for an integration: shown once, kept as a digest.
async fn make_token(State(state): State<AdminState>, who: Staffer, Form(f): Form<TokenForm>) -> Response {
    if let Err(r) = who.check(&f.csrf) {
        return r;
    }
    let token = match crate::domain::secret::new_token() {
        Ok(t) => t,
        Err(e) => return refused_list(&state, &who, Error::NotDone(e.to_string().into()), "/staff").await,
    };
    let digest = crate::domain::secret::token_digest(&token);
    let op = Operation::AddStaffToken { login: who.member.login.clone(), label: f.label.trim().to_string(), digest };
    match state.engine.run(op, who.caller().by()).await {
        Ok(Receipt::Refused(r)) => refused_list(&state, &who, Error::Refused(r), "/staff").await,
        Err(e) => refused_list(&state, &who, e, "/staff").await,
        Ok(_) => {
            // The page reads the member as they are now, with the new token listed.
            let who = match state.engine.query(Read::Staff(who.member.login.clone())).await {
                Ok(Answer::Staff(m)) => Staffer { member: std::sync::Arc::new(*m), ..who },
                _ => who,
            };
            staff_page(&state, &who, Some(Flash::Saved), Some(token), StatusCode::OK).await
        }
    }
}

async fn revoke_token(
    State(state): State<AdminState>,
    who: Staffer,
    Path(token): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(r) = who.check(&f.csrf) {
        return r;
    }
    let Ok(token) = token.parse::<u32>() else {
        return message_page(who.lang, Some(&who), StatusCode::NOT_FOUND, who.lang.t("not_found"));
    };
    let op = Operation::RevokeStaffToken { login: who.member.login.clone(), token };
    change_then_list(&state, &who, Ok(op), "/staff").await
}

async fn accounts(State(state): State<AdminState>, who: Staffer, Query(d): Query<Done>) -> Response {
    accounts_page(&state, &who, d.done.map(|_| Flash::Saved), StatusCode::OK).await
}

/// The self-check terminals' accounts at the member's institutions (never a password hash);
/// User Administrators add them, give them new passwords and remove them.
async fn accounts_page(state: &AdminState, who: &Staffer, flash: Option<Flash>, status: StatusCode) -> Response {
    let lang = who.lang;
    let list: Vec<crate::domain::Account> = match state.engine.query(Read::Accounts).await {
        Ok(Answer::Accounts(all)) => all.into_iter().filter(|a| who.member.covers(&a.institution)).collect(),
        _ => vec![],
    };
    let manages = who.member.role >= crate::domain::Role::UserAdministrator;
    let csrf = &who.csrf;
    let body = html! {
        @match &flash {
            Some(Flash::Saved) => p.flash role="status" { (lang.t("saved")) },
            Some(Flash::Refused(text)) => p.error role="alert" { (text) },
            _ => {},
        }
        table {
            thead { tr {
                th scope="col" { (lang.t("login")) } th scope="col" { (lang.t("institution")) }
                th scope="col" { (lang.t("location")) } th scope="col" { (lang.t("profile")) }
                @if manages { th scope="col" { (lang.t("actions")) } }
            } }
            tbody {
                @for a in &list {
                    tr {
                        td { (a.login) } td { (a.institution) } td { (a.location.as_deref().unwrap_or("")) }
                        td { @for (k, v) in &a.profile { (k) "=" (v) " " } }
                        @if manages {
                            td {
                                form.inline method="post" action={ "/accounts/" (enc(&a.login)) "/password" } {
                                    input type="hidden" name="csrf" value=(csrf);
                                    label for={ "pw-" (a.login) } { (lang.t("new_password")) }
                                    input id={ "pw-" (a.login) } name="password" type="password" required minlength="8" autocomplete="new-password";
                                    button type="submit" { (lang.t("save")) }
                                }
                                form.inline method="post" action={ "/accounts/" (enc(&a.login)) "/remove" } {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button type="submit" aria-label={ (lang.t("remove")) " " (a.login) } { (lang.t("remove")) }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if manages {
            section aria-labelledby="new-terminal" {
                h2 #new-terminal { (lang.t("new_terminal")) }
                form method="post" action="/accounts" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="terminal-login" { (lang.t("login")) }
                    input #terminal-login name="login" type="text" required autocomplete="off";
                    label for="terminal-password" { (lang.t("password_terminal")) }
                    input #terminal-password name="password" type="password" required minlength="8" autocomplete="new-password";
                    label for="terminal-institution" { (lang.t("institution")) }
                    select #terminal-institution name="institution" {
                        @for i in &who.member.institutions { option value=(i) { (i) } }
                    }
                    label for="terminal-location" { (lang.t("location")) }
                    input #terminal-location name="location" type="text";
                    p { button type="submit" { (lang.t("add_terminal")) } }
                }
            }
        }
    };
    respond(status, page(lang, Some(who), lang.t("terminal_accounts"), body))
}

#[derive(Deserialize)]
struct TerminalForm {
    #[serde(default)]
    csrf: String,
    login: String,
    password: String,
    institution: String,
    #[serde(default)]
    location: String,
}

async fn add_terminal(State(state): State<AdminState>, who: Staffer, Form(f): Form<TerminalForm>) -> Response {
    if let Err(r) = who.check(&f.csrf) {
        return r;
    }
    let op = api::hashed(f.password, crate::engine::hash_password).await.map(|password_hash| Operation::AddAccount {
        login: f.login.trim().to_string(),
        password_hash,
        institution: f.institution,
        location: Some(f.location.trim().to_string()).filter(|l| !l.is_empty()),
    });
    change_then_list(&state, &who, op, "/accounts").await
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
}

async fn terminal_action(
    State(state): State<AdminState>,
    who: Staffer,
    Path((login, action)): Path<(String, String)>,
    Form(f): Form<PasswordForm>,
) -> Response {
    if let Err(r) = who.check(&f.csrf) {
        return r;
    }
    let op = match action.as_str() {
        "password" => api::hashed(f.password, crate::engine::hash_password)
            .await
            .map(|password_hash| Operation::SetAccountPassword { login, password_hash }),
        "remove" => Ok(Operation::RemoveAccount { login }),
        _ => return message_page(who.lang, Some(&who), StatusCode::NOT_FOUND, who.lang.t("not_found")),
    };
    change_then_list(&state, &who, op, "/accounts").await
}

// -- terminals ------------------------------------------------------------------------------

async fn terminals(State(state): State<AdminState>, who: Staffer) -> Response {
    let lang = who.lang;
    let all = match api::visible_terminals(&state, &who.caller()).await {
        Ok(all) => all,
        Err(r) => return r,
    };
    let body = html! {
        p { (lang.t("live")) }
        p #none hidden[!all.is_empty()] { (lang.t("no_terminals")) }
        {
            table #terminals hidden[all.is_empty()] {
                thead { tr {
                    th scope="col" { (lang.t("account")) }
                    th scope="col" { (lang.t("address")) }
                    th scope="col" { (lang.t("connected")) }
                    th scope="col" { (lang.t("requests")) }
                    th scope="col" { (lang.t("last_requests")) }
                    th scope="col" { (lang.t("last_error")) }
                } }
                tbody #live {
                    @for row in &all {
                        @let t = &row.view;
                        tr {
                            td { (t.account.as_deref().unwrap_or("-")) }
                            td { (t.peer) }
                            td { (row.connected_local) }
                            td { (t.requests) }
                            td { @for s in &t.last { (s.code.as_str()) " " (s.outcome) "; " } }
                            td { (t.last_error.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    };
    let body = html! { (body) script { (PreEscaped(LIVE_SCRIPT)) } };
    respond(StatusCode::OK, page(lang, Some(&who), lang.t("terminals"), body))
}

/// Keeps the terminals table current from the live view's events (text set as text, never
/// as markup). Without scripts the page still shows the table as it was when loaded.
const LIVE_SCRIPT: &str = r#"
(function () {
  const body = document.getElementById('live');
  const table = document.getElementById('terminals');
  const none = document.getElementById('none');
  const source = new EventSource('/api/v1/terminals/events');
  source.addEventListener('terminals', function (e) {
    const all = JSON.parse(e.data).terminals;
    body.replaceChildren();
    for (const t of all) {
      const row = document.createElement('tr');
      const last = t.last.map(function (s) { return s.code + ' ' + s.outcome; }).join('; ');
      for (const text of [t.account || '-', t.peer, t.connected_local, String(t.requests), last, t.last_error || '']) {
        const cell = document.createElement('td');
        cell.textContent = text;
        row.appendChild(cell);
      }
      body.appendChild(row);
    }
    table.hidden = all.length === 0;
    none.hidden = all.length !== 0;
  });
})();
"#;

/// The console's pages.
pub fn routes() -> axum::Router<AdminState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/", get(|| async { Redirect::to("/patrons") }))
        .route("/login", get(login_form).post(log_in))
        .route("/logout", post(log_out))
        .route("/lang/{code}", get(set_language))
        .route("/patrons", get(patrons))
        .route("/patrons/new", get(new_patron_form).post(add_patron))
        .route("/patrons/{id}", get(patron))
        .route("/patrons/{id}/edit", post(edit))
        .route("/patrons/{id}/blocks", post(add_block))
        .route("/patrons/{id}/blocks/{kind}/lift", post(lift_block))
        .route("/patrons/{id}/notes", post(add_note))
        .route("/patrons/{id}/delete", post(delete))
        .route("/patrons/{id}/restore", post(restore))
        .route("/patrons/{id}/invitation", post(invite))
        .route("/deleted", get(bank))
        .route("/patrons/{id}/identifiers", post(add_identifier))
        .route("/patrons/{id}/identifiers/{value}/{switch}", post(switch_identifier))
        .route("/patrons/{id}/holds", post(place_hold))
        .route("/patrons/{id}/holds/{hold}/cancel", post(cancel_hold))
        .route("/patrons/{id}/contacts", post(add_contact))
        .route("/patrons/{id}/contacts/{contact}/{action}", post(contact_action))
        .route("/patrons/{id}/statistics", post(add_statistic))
        .route("/patrons/{id}/statistics/{statistic}/remove", post(remove_statistic))
        .route("/patrons/{id}/attachments", post(add_attachment))
        .route("/patrons/{id}/attachments/{n}", get(attachment))
        .route("/patrons/{id}/attachments/{n}/remove", post(remove_attachment))
        .route("/patrons/{id}/picture", get(picture).post(set_picture))
        .route("/patrons/{id}/picture/remove", post(remove_picture))
        .route("/patrons/{id}/proxy-for", post(add_proxy))
        .route("/patrons/{id}/proxy-for/{other}/remove", post(remove_proxy))
        .route("/patrons/{id}/transfer", post(request_transfer))
        .route("/transfers", get(transfers))
        .route("/staff", get(staff).post(add_member))
        .route("/staff/tokens", post(make_token))
        .route("/staff/tokens/{token}/revoke", post(revoke_token))
        .route("/staff/{login}/{action}", post(member_action))
        .route("/accounts", get(accounts).post(add_terminal))
        .route("/accounts/{login}/{action}", post(terminal_action))
        .route("/transfers/{id}/{decision}", post(decide_transfer))
        .route("/patrons/{id}/fees/{fee}/{action}", post(fee_action))
        .route("/patrons/{id}/loans/{item}/{action}", post(loan_action))
        .route("/terminals", get(terminals))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_text_is_in_both_languages_and_every_key_used_exists() {
        for (k, en, sv) in TEXTS {
            assert!(!en.is_empty() && !sv.is_empty(), "{k}");
            assert_eq!(TEXTS.iter().filter(|(other, _, _)| other == k).count(), 1, "{k} twice");
        }
        let source = include_str!("console.rs");
        for part in source.split(".t(\"").skip(1) {
            let key = part.split('"').next().unwrap_or_default();
            assert!(TEXTS.iter().any(|(k, _, _)| *k == key), "no text for '{key}'");
        }
    }

    #[test]
    fn the_language_comes_from_the_cookie_then_the_browser() {
        let mut h = HeaderMap::new();
        assert_eq!(Lang::of(&h), Lang::En);
        h.insert(header::ACCEPT_LANGUAGE, "sv-SE,sv;q=0.9,en;q=0.5".parse().unwrap());
        assert_eq!(Lang::of(&h), Lang::Sv);
        h.insert(header::COOKIE, "a=1; lang=en".parse().unwrap());
        assert_eq!(Lang::of(&h), Lang::En);
        assert_eq!(Lang::Sv.t("patrons"), "Låntagare");
    }
}
