//! Notifications to patrons: written to the outbox with the change they report, in the
//! patron's language, unless they opted out; delivered later with retries.

use jiff::{SignedDuration, Timestamp};

use crate::domain::{Delivery, Institution, Notice, NoticeKind, Patron, Refusal};

use super::store::Write;
use super::unit::Unit;

/// Attempts before a notice is given up.
pub const MAX_ATTEMPTS: u32 = 6;

/// Whether the patron reads Swedish (notices are written in Swedish or English).
pub fn swedish(p: &Patron) -> bool {
    p.language
        .as_deref()
        .is_some_and(|l| matches!(l.to_ascii_lowercase().as_str(), "sv" | "swe" | "swedish" | "svenska"))
}

/// Subject and body of a notice, in English or Swedish. `detail` is the kind's own part (the
/// report's lines, the balance, the other library).
fn compose(kind: NoticeKind, p: &Patron, inst: &Institution, detail: &str, sv: bool) -> (String, String) {
    let name = &p.first_name;
    let lib = &inst.name;
    let (subject, text) = match (kind, sv) {
        (NoticeKind::Welcome, false) if p.pin.is_some() => (
            format!("Welcome to {lib}"),
            format!(
                "Dear {name},\n\nwelcome to {lib}. Your library card is ready. At the self-service machines, \
                 borrow with your card and the PIN you were given when you registered. If you forget it, set \
                 a new one at any desk of the library with your card and an identity document.\n"
            ),
        ),
        (NoticeKind::Welcome, true) if p.pin.is_some() => (
            format!("Välkommen till {lib}"),
            format!(
                "Hej {name},\n\nvälkommen till {lib}. Ditt lånekort är klart. I automaterna lånar du med ditt \
                 kort och PIN-koden du fick när du skrev in dig. Om du glömmer den kan du välja en ny i \
                 informationsdisken med ditt kort och en legitimation.\n"
            ),
        ),
        // `detail` is the link to choose a PIN, when one was made.
        (NoticeKind::Welcome, false) if !detail.is_empty() => (
            format!("Welcome to {lib}"),
            format!(
                "Dear {name},\n\nwelcome to {lib}. Your library card is ready. To borrow at the self-service \
                 machines you need a PIN. Choose it here:\n\n{detail}\n\nThe link works once, for a few days. \
                 You can also set a PIN at any desk of the library with your card and an identity document.\n"
            ),
        ),
        (NoticeKind::Welcome, true) if !detail.is_empty() => (
            format!("Välkommen till {lib}"),
            format!(
                "Hej {name},\n\nvälkommen till {lib}. Ditt lånekort är klart. För att låna i automaterna behöver \
                 du en PIN-kod. Välj den här:\n\n{detail}\n\nLänken fungerar en gång, i några dagar. Du kan \
                 också välja en PIN-kod i informationsdisken med ditt kort och en legitimation.\n"
            ),
        ),
        (NoticeKind::Welcome, false) => (
            format!("Welcome to {lib}"),
            format!(
                "Dear {name},\n\nwelcome to {lib}. Your library card is ready. To borrow at the self-service \
                 machines you need a PIN: set it at any desk of the library with your card and an identity \
                 document.\n"
            ),
        ),
        (NoticeKind::Welcome, true) => (
            format!("Välkommen till {lib}"),
            format!(
                "Hej {name},\n\nvälkommen till {lib}. Ditt lånekort är klart. För att låna i automaterna behöver \
                 du en PIN-kod: välj den i informationsdisken med ditt kort och en legitimation.\n"
            ),
        ),
        (NoticeKind::TransferRequested, false) => (
            format!("Your move to {detail}"),
            format!(
                "Dear {name},\n\na transfer of your library account from {lib} to {detail} has been requested. You will hear when it is decided.\n"
            ),
        ),
        (NoticeKind::TransferRequested, true) => (
            format!("Din flytt till {detail}"),
            format!(
                "Hej {name},\n\nen flytt av ditt lånekonto från {lib} till {detail} har begärts. Du får besked när den är avgjord.\n"
            ),
        ),
        (NoticeKind::TransferAccepted, false) => (
            format!("Welcome to {lib}"),
            format!(
                "Dear {name},\n\nyour library account has moved to {lib}{detail}. Your card and PIN stay the same.\n"
            ),
        ),
        (NoticeKind::TransferAccepted, true) => (
            format!("Välkommen till {lib}"),
            format!(
                "Hej {name},\n\nditt lånekonto har flyttats till {lib}{detail}. Ditt kort och din PIN-kod är desamma.\n"
            ),
        ),
        (NoticeKind::TransferDeclined, false) => (
            format!("Your move to {detail}"),
            format!(
                "Dear {name},\n\nthe transfer of your library account to {detail} was declined. Your account stays at {lib}; staff can tell you more.\n"
            ),
        ),
        (NoticeKind::TransferDeclined, true) => (
            format!("Din flytt till {detail}"),
            format!(
                "Hej {name},\n\nflytten av ditt lånekonto till {detail} avslogs. Kontot finns kvar på {lib}; personalen berättar gärna mer.\n"
            ),
        ),
        (NoticeKind::Report, false) => (
            format!("Your loans and requests at {lib}"),
            format!("Dear {name},\n\nhere is what you have at {lib} today.\n\n{detail}"),
        ),
        (NoticeKind::Report, true) => (
            format!("Dina lån och reservationer på {lib}"),
            format!("Hej {name},\n\nså här ser det ut för dig på {lib} i dag.\n\n{detail}"),
        ),
        (NoticeKind::BalanceDue, false) => (
            format!("A balance is due at {lib}"),
            format!("Dear {name},\n\nyou owe {lib} {detail}. Please pay at a desk or a self-service machine.\n"),
        ),
        (NoticeKind::BalanceDue, true) => (
            format!("Obetalda avgifter på {lib}"),
            format!(
                "Hej {name},\n\ndu är skyldig {lib} {detail}. Betala gärna i informationsdisken eller i en automat.\n"
            ),
        ),
        // `detail` is the link.
        (NoticeKind::PinReset, false) => (
            format!("A new PIN for {lib}"),
            format!(
                "Dear {name},\n\nsomeone, we hope you, asked for a new PIN for your library card at {lib}. Choose \
                 it here:\n\n{detail}\n\nThe link works once, for a few days. If you did not ask, you need do \
                 nothing: your PIN stays as it is.\n"
            ),
        ),
        (NoticeKind::PinReset, true) => (
            format!("Ny PIN-kod för {lib}"),
            format!(
                "Hej {name},\n\nnågon, förhoppningsvis du, har bett om en ny PIN-kod till ditt lånekort på {lib}. \
                 Välj den här:\n\n{detail}\n\nLänken fungerar en gång, i några dagar. Om det inte var du behöver \
                 du inte göra något: din PIN-kod är oförändrad.\n"
            ),
        ),
        (NoticeKind::EmailCheck, false) => (
            format!("Confirm your e-mail address at {lib}"),
            format!(
                "Dear {name},\n\nthis address was given for your library account at {lib}. To start using it, \
                 follow this link:\n\n{detail}\n\nUntil then, the library writes to the address it had. If you \
                 did not ask for this, you need do nothing.\n"
            ),
        ),
        (NoticeKind::EmailCheck, true) => (
            format!("Bekräfta din e-postadress hos {lib}"),
            format!(
                "Hej {name},\n\nden här adressen har angetts för ditt lånekonto på {lib}. Följ länken för att \
                 börja använda den:\n\n{detail}\n\nTills dess skriver biblioteket till den adress det hade. \
                 Om det inte var du behöver du inte göra något.\n"
            ),
        ),
    };
    let sign = if sv { format!("\nVänliga hälsningar\n{lib}\n") } else { format!("\nKind regards,\n{lib}\n") };
    (subject, format!("{text}{sign}"))
}

/// What a notice needs, read before the change it reports; the notice is composed from the
/// changed record and committed with it.
pub struct Draft {
    id: u64,
    kind: NoticeKind,
    detail: String,
    opted_out: bool,
    /// The patron's institution before the change.
    home: Institution,
    /// The one a transfer moves them to, if any.
    moving_to: Option<Institution>,
    now: Timestamp,
}

impl Draft {
    /// The notice for the patron as `p` stands: pending, or skipped when they opted out of
    /// this kind or have no e-mail address.
    pub fn notice(&self, p: &Patron) -> Notice {
        let inst = self.moving_to.as_ref().filter(|i| i.code == p.institution).unwrap_or(&self.home);
        let sv = swedish(p);
        let (subject, body) = compose(self.kind, p, inst, &self.detail, sv);
        let note = if self.opted_out {
            Some(format!("the patron opted out of {} notices", self.kind.name()))
        } else if p.email.is_none() {
            Some("the patron has no e-mail address".to_string())
        } else {
            None
        };
        Notice {
            id: self.id,
            patron: p.id,
            kind: self.kind,
            to: p.email.clone(),
            language: if sv { "sv" } else { "en" }.into(),
            subject,
            body,
            created: self.now,
            delivery: if note.is_some() { Delivery::Skipped } else { Delivery::Pending },
            attempts: 0,
            next_attempt: note.is_none().then_some(self.now),
            last_error: None,
            sent: None,
            note,
        }
    }
}

/// What a notice of `kind` to patron `id`, now at `home`, needs; `moving_to` is the institution
/// a transfer may put them at by the time it is composed.
pub fn draft(
    u: &mut Unit<'_>,
    id: u64,
    kind: NoticeKind,
    detail: &str,
    home: &Institution,
    moving_to: Option<&Institution>,
) -> Draft {
    Draft {
        id: u.new_id(),
        kind,
        detail: detail.to_string(),
        opted_out: kind.optional() && u.state.optouts(id).contains(&kind),
        home: home.clone(),
        moving_to: moving_to.cloned(),
        now: u.now(),
    }
}

/// Writes a patron's report (loans, holds, balance) to the outbox and returns it.
pub fn report(u: &mut Unit<'_>, id: u64) -> Result<Notice, Refusal> {
    let p = u.patron(id)?;
    let inst = u.institution(&p.institution)?;
    let sv = swedish(&p);
    let mut lines = String::new();
    let loans: Vec<_> = u.state.loans_of(id).into_iter().cloned().collect();
    lines.push_str(if sv { "Lån:\n" } else { "Loans:\n" });
    if loans.is_empty() {
        lines.push_str(if sv { "  inga\n" } else { "  none\n" });
    }
    for l in &loans {
        let title = u.state.item(&l.item).map(|i| i.title.clone()).unwrap_or_default();
        let due = l.due.to_zoned(inst.time_zone()).date();
        lines.push_str(&format!("  {title} ({}), {} {due}\n", l.item, if sv { "åter" } else { "due" }));
    }
    let holds: Vec<_> = u.state.holds_of(id).into_iter().cloned().collect();
    lines.push_str(if sv { "Reservationer:\n" } else { "Requests:\n" });
    if holds.is_empty() {
        lines.push_str(if sv { "  inga\n" } else { "  none\n" });
    }
    for h in &holds {
        let what = h.item.clone().or_else(|| h.title.clone()).unwrap_or_default();
        lines.push_str(&format!("  {what} ({})\n", h.pickup));
    }
    let balance = u.state.balance(id);
    lines.push_str(&format!("{} {balance} {}\n", if sv { "Att betala:" } else { "Balance:" }, inst.currency));
    let n = draft(u, id, NoticeKind::Report, &lines, &inst, None).notice(&p);
    u.notice(n.clone());
    Ok(n)
}

/// Whether a notice is due for an attempt at `now`.
pub fn due(n: &Notice, now: Timestamp) -> bool {
    n.delivery == Delivery::Pending && n.next_attempt.is_none_or(|t| t <= now)
}

/// Records an attempt to deliver a notice (read by the deliverer from the outbox): sent, or
/// failed and retried with a backoff doubling from one minute, given up after `MAX_ATTEMPTS`.
pub fn attempted(mut n: Notice, result: Result<(), String>, now: Timestamp) -> Notice {
    n.attempts += 1;
    match result {
        Ok(()) => {
            n.delivery = Delivery::Sent;
            n.sent = Some(now);
            n.next_attempt = None;
            n.last_error = None;
        }
        Err(e) => {
            n.last_error = Some(e);
            if n.attempts >= MAX_ATTEMPTS {
                n.delivery = Delivery::Failed;
                n.next_attempt = None;
            } else {
                n.next_attempt = Some(now + SignedDuration::from_mins(1i64 << (n.attempts - 1).min(20)));
            }
        }
    }
    n
}

/// Writes what became of a delivery attempt; `notice` is the notice as it was attempted.
pub fn delivered(u: &mut Unit<'_>, notice: Notice, result: Result<(), String>) -> Result<(), Refusal> {
    let n = attempted(notice, result, u.now());
    u.put(Write::Notice(Box::new(n)))
}
