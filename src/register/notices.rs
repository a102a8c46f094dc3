//! Notifications to patrons: written to the outbox in the store, in the patron's language,
//! unless they opted out; delivered later with retries (`deliver`).

use jiff::{SignedDuration, Timestamp};

use super::Register;
use crate::domain::{Delivery, Institution, Notice, NoticeKind, Patron};
use crate::store::StoreError;

/// Attempts before a notice is given up.
pub const MAX_ATTEMPTS: u32 = 6;

fn swedish(p: &Patron) -> bool {
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
    };
    let sign = if sv { format!("\nVänliga hälsningar\n{lib}\n") } else { format!("\nKind regards,\n{lib}\n") };
    (subject, format!("{text}{sign}"))
}

/// What a notice needs from the store, read before the change it reports: the notice is then
/// composed from the changed record inside that change's transaction, which may not read or
/// have side effects, and committed with it.
pub(super) struct Draft {
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
    pub(super) fn notice(&self, p: &Patron) -> Notice {
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

impl Register {
    /// Reads what a notice of `kind` to patron `id`, now at `home`, needs; `moving_to` is the
    /// institution a transfer may put them at by the time it is composed.
    pub(super) fn draft(
        &self,
        id: u64,
        kind: NoticeKind,
        detail: &str,
        (home, moving_to): (&str, Option<&str>),
        now: Timestamp,
    ) -> Result<Draft, StoreError> {
        Ok(Draft {
            id: self.store.new_id()?,
            kind,
            detail: detail.to_string(),
            opted_out: self.store.optouts(id)?.contains(&kind),
            home: self.store.institution(home)?,
            moving_to: moving_to.map(|code| self.store.institution(code)).transpose()?,
            now,
        })
    }

    /// Writes a notice of `kind` for a patron to the outbox, on its own (for notices that no
    /// change comes with). Not flushed.
    pub(super) fn write_notice(
        &self,
        p: &Patron,
        kind: NoticeKind,
        detail: &str,
        now: Timestamp,
    ) -> Result<Notice, StoreError> {
        let notice = self.draft(p.id, kind, detail, (&p.institution, None), now)?.notice(p);
        self.store.put_notice(&notice)?;
        Ok(notice)
    }

    /// Writes a patron's report (loans, holds, balance) to the outbox and returns it.
    pub fn report(&self, id: u64, now: Timestamp) -> Result<Notice, StoreError> {
        let p = self.store.patron(id)?;
        let inst = self.store.institution(&p.institution)?;
        let sv = swedish(&p);
        let mut lines = String::new();
        let loans = self.store.loans_of(id)?;
        lines.push_str(if sv { "Lån:\n" } else { "Loans:\n" });
        if loans.is_empty() {
            lines.push_str(if sv { "  inga\n" } else { "  none\n" });
        }
        for l in &loans {
            let title = self.store.item(&l.item)?.map(|i| i.title).unwrap_or_default();
            let due = l.due.to_zoned(inst.time_zone()).date();
            lines.push_str(&format!("  {title} ({}), {} {due}\n", l.item, if sv { "åter" } else { "due" }));
        }
        let holds = self.store.holds_of(id)?;
        lines.push_str(if sv { "Reservationer:\n" } else { "Requests:\n" });
        if holds.is_empty() {
            lines.push_str(if sv { "  inga\n" } else { "  none\n" });
        }
        for h in &holds {
            let what = h.item.clone().or_else(|| h.title.clone()).unwrap_or_default();
            lines.push_str(&format!("  {what} ({})\n", h.pickup));
        }
        let balance = self.balance(id)?;
        lines.push_str(&format!("{} {balance} {}\n", if sv { "Att betala:" } else { "Balance:" }, inst.currency));
        let n = self.write_notice(&p, NoticeKind::Report, &lines, now)?;
        self.store.flush()?;
        Ok(n)
    }

    /// Opts a patron out of (or back into) a kind of notice.
    pub fn set_optout(&self, id: u64, kind: NoticeKind, out: bool) -> Result<Vec<NoticeKind>, StoreError> {
        self.store.patron(id)?;
        let mut kinds = self.store.optouts(id)?;
        kinds.retain(|k| *k != kind);
        if out {
            kinds.push(kind);
        }
        kinds.sort();
        self.store.set_optouts(id, &kinds)?;
        Ok(kinds)
    }

    /// Sends the notices that are due through `send` (which delivers one message or says
    /// why not). A failure is retried with a backoff doubling from one minute; after
    /// `MAX_ATTEMPTS` the notice is marked failed. Returns (sent, failed now, still pending).
    pub fn deliver(
        &self,
        now: Timestamp,
        mut send: impl FnMut(&Notice) -> Result<(), String>,
    ) -> Result<(usize, usize, usize), StoreError> {
        let due: Vec<Notice> = self
            .store
            .notices()
            .filter(|n| {
                n.as_ref().map_or(true, |n| n.delivery == Delivery::Pending && n.next_attempt.is_none_or(|t| t <= now))
            })
            .collect::<Result<_, _>>()?;
        let (mut sent, mut failed, mut pending) = (0, 0, 0);
        for mut n in due {
            n.attempts += 1;
            match send(&n) {
                Ok(()) => {
                    n.delivery = Delivery::Sent;
                    n.sent = Some(now);
                    n.next_attempt = None;
                    n.last_error = None;
                    sent += 1;
                }
                Err(e) => {
                    n.last_error = Some(e);
                    if n.attempts >= MAX_ATTEMPTS {
                        n.delivery = Delivery::Failed;
                        n.next_attempt = None;
                        failed += 1;
                    } else {
                        n.next_attempt = Some(now + SignedDuration::from_mins(1i64 << (n.attempts - 1).min(20)));
                        pending += 1;
                    }
                }
            }
            self.store.put_notice(&n)?;
            self.store.flush()?;
        }
        Ok((sent, failed, pending))
    }
}
