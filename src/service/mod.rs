//! The service layer: one SIP request to one engine operation, and its receipt to the reply,
//! worded in the terminal's language.
//!
//! It has no sockets and reads no clock: the network layer hands it a decoded request, the
//! terminal it came from and `now`, and sends back the reply it returns. Every fact a reply
//! reports comes from the receipt of the unit that decided it. Refusals are replies (ok 0, a
//! status flag, a screen message); only an engine that fails is an error.

use std::borrow::Cow;
use std::sync::Arc;

use jiff::Timestamp;

use crate::domain::profile::Language;
use crate::domain::rules::{Denial, Standing};
use crate::domain::{Account, Fee, HoldStatus, Institution, ItemStatus, Profile};
use crate::engine::{
    Answer, By, CheckoutDone, Engine, Error, HoldAction, HoldTarget, Kiosk, KioskCheckout, KioskPatron, Lent,
    Operation, Pin, PinVerdict, Query, Receipt, Refusal,
};
use crate::proto::{
    AcsStatus, AlertType, Algorithm, Checkin, CheckinResponse, Checkout, CheckoutResponse, CirculationStatus, Count,
    DateTime, EndPatronSession, EndSessionResponse, FeePaid, FeePaidResponse, FeeType, FixedCodec, ItemInformation,
    ItemInformationResponse, Login, LoginResponse, MediaType, PatronInformation, PatronInformationResponse,
    PatronStatus, PatronStatusRequest, PatronStatusResponse, ProtocolVersion, Renew, RenewResponse, Secret,
    SecurityMarker, SipDate, Summary, SupportedMessages, Tristate, Zone,
};
use crate::proto::{
    BlockPatron, Hold as HoldRequest, HoldMode, HoldResponse, ItemStatusUpdate, ItemStatusUpdateResponse, PatronEnable,
    PatronEnableResponse, RenewAll, RenewAllResponse,
};

mod answer;
mod guard;
mod session;
pub mod words;

pub use answer::refusal;
pub use guard::{PinTally, ServiceLimits};
pub use session::{Outcome, Session, SessionRules, Verdict, nearest_request};
pub use words::Phrase;

/// A logged-in terminal: its account, profile and institution.
#[derive(Clone, Debug)]
pub struct Terminal {
    pub account: Account,
    pub profile: Profile,
    pub institution: Institution,
    /// The card whose PIN was verified on this connection (by a 23 or 63 answered `CQY`, or
    /// a circulation request with a right PIN), until another patron's is or a 35 ends it.
    pub verified: Option<Arc<str>>,
    /// What [`Terminal::kiosk`] names but the verified card, made once at login.
    kiosk: Kiosk,
    /// The request being served, when it carries a sequence number: the engine keeps a
    /// change's receipt under it (see `engine::By::request`).
    pub request: Option<crate::engine::RequestMark>,
}

impl Terminal {
    /// A terminal logged in as `account`, with its profile, at its institution.
    pub fn new(account: Account, profile: Profile, institution: Institution) -> Terminal {
        let p = &profile;
        let kiosk = Kiosk {
            login: account.login.as_str().into(),
            institution: institution.code.as_str().into(),
            location: account.location.as_deref().map(Arc::from),
            pin_required: p.pin_required,
            empty_pin_ok: p.empty_pin_ok,
            renewals: p.renewals,
            status_update: p.status_update,
            patron_enable: p.patron_enable,
            verification: p.verification,
            verified_card: None,
        };
        Terminal { account, profile, institution, verified: None, kiosk, request: None }
    }

    /// The terminal as the engine's kiosk operations name it (copied without allocating).
    pub fn kiosk(&self) -> Kiosk {
        Kiosk { verified_card: self.verified.clone(), ..self.kiosk.clone() }
    }

    fn language(&self) -> Language {
        self.profile.language
    }

    fn say(&self, p: Phrase) -> Cow<'static, str> {
        Cow::Borrowed(words::phrase(p, self.language()))
    }

    fn refusal(&self, r: &Refusal) -> Cow<'static, str> {
        Cow::Owned(words::refusal(r, self.language()))
    }
}

/// Translates requests into engine operations and receipts into replies.
pub struct Service<'r> {
    engine: &'r dyn Engine,
    limits: &'r ServiceLimits,
    /// Wrong PINs this node answered, for metrics.
    tally: Option<&'r PinTally>,
    /// How a login's password is checked; `None` runs Argon2 here, every time.
    passwords: Option<&'r dyn Passwords>,
}

/// Checks a terminal's password against its account's Argon2 hash. The network layer's
/// checker remembers verified passwords and bounds the hashing (`net::logins`); the service
/// only asks.
pub trait Passwords: Send + Sync {
    fn check<'a>(
        &'a self,
        login: &'a str,
        password: &'a str,
        hash: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>>;
}

/// `now` as a SIP date in the institution's time zone (local time, blank zone).
pub fn sip_date(now: Timestamp, institution: &Institution) -> SipDate {
    sip_date_in(now, &institution.time_zone(), Zone::Local)
}

/// `now` as a SIP date: the wall-clock time in `tz`, written with the zone field `zone`.
pub fn sip_date_in(now: Timestamp, tz: &jiff::tz::TimeZone, zone: Zone) -> SipDate {
    let t = tz.to_datetime(now);
    let part = |v: i8| u8::try_from(v).unwrap_or(0);
    let year = u16::try_from(t.year()).unwrap_or(0);
    DateTime::new(year, part(t.month()), part(t.day()), part(t.hour()), part(t.minute()), part(t.second()), zone)
        .map_or(SipDate::Zeros, SipDate::At)
}

/// A kiosk's date (an 11's no-block due date) as a moment, reading a local date in the
/// institution's zone; `None` when it is blank or impossible.
pub fn moment(date: &SipDate, institution: &Institution) -> Option<Timestamp> {
    let SipDate::At(d) = date else { return None };
    let civil = jiff::civil::DateTime::new(
        i16::try_from(d.year()).ok()?,
        i8::try_from(d.month()).ok()?,
        i8::try_from(d.day()).ok()?,
        i8::try_from(d.hour()).ok()?,
        i8::try_from(d.minute()).ok()?,
        i8::try_from(d.second()).ok()?,
        0,
    )
    .ok()?;
    civil.to_zoned(institution.time_zone()).ok().map(|z| z.timestamp())
}

/// A due date as kiosks print it: the 18-character SIP form, local to the institution.
fn due_text(due: Timestamp, institution: &Institution) -> String {
    let date = sip_date(due, institution);
    if !matches!(date, SipDate::At(_)) {
        return String::new();
    }
    let mut out = bytes::BytesMut::new();
    <SipDate as FixedCodec>::write(&date, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether an item is audio-visual media, which the kiosk handles its own way (12's
/// "magnetic media").
fn magnetic(media: MediaType) -> bool {
    matches!(media, MediaType::AudioTape | MediaType::VideoTape | MediaType::CdRom | MediaType::Diskette)
        || matches!(media, MediaType::BookWithDiskette | MediaType::BookWithCd | MediaType::BookWithAudioTape)
}

fn tristate(on: bool) -> Tristate {
    if on { Tristate::Yes } else { Tristate::No }
}

/// The 14 patron status flags a standing comes to.
pub fn status_flags(s: &Standing) -> PatronStatus {
    let mut f = PatronStatus::default();
    let mut set = |on: bool, flag: PatronStatus| {
        if on {
            f.insert(flag);
        }
    };
    set(s.denied.borrow, PatronStatus::CHARGE_DENIED);
    set(s.denied.renew, PatronStatus::RENEWAL_DENIED);
    set(s.denied.hold, PatronStatus::RECALL_DENIED);
    set(s.denied.hold, PatronStatus::HOLD_DENIED);
    set(s.card_invalid, PatronStatus::CARD_REPORTED_LOST);
    set(s.too_many_loans, PatronStatus::TOO_MANY_CHARGED);
    set(s.over_fine_threshold, PatronStatus::EXCESSIVE_FINES);
    f
}

/// Whether a PIN verdict goes in `CQ`: none when no PIN was checked.
fn cq(v: PinVerdict) -> Option<bool> {
    match v {
        PinVerdict::NotChecked => None,
        PinVerdict::Right => Some(true),
        _ => Some(false),
    }
}

/// What a kiosk is told of a PIN that did not pass.
fn pin_phrase(v: PinVerdict) -> Option<Phrase> {
    match v {
        PinVerdict::Wrong => Some(Phrase::WrongPin),
        PinVerdict::Locked => Some(Phrase::LockedOut),
        PinVerdict::Throttled => Some(Phrase::PinThrottled),
        PinVerdict::NotChecked | PinVerdict::Right => None,
    }
}

impl<'r> Service<'r> {
    /// A service with the default limits and no PIN rate limit (staff tools and tests).
    pub fn new(engine: &'r dyn Engine) -> Service<'r> {
        Service { engine, limits: &ServiceLimits::DEFAULT, tally: None, passwords: None }
    }

    /// A service as the server runs it: these limits, and wrong PINs counted in `tally`.
    pub fn with_limits(engine: &'r dyn Engine, limits: &'r ServiceLimits, tally: &'r PinTally) -> Service<'r> {
        Service { engine, limits, tally: Some(tally), passwords: None }
    }

    /// This service, checking login passwords with `passwords`.
    pub fn with_passwords(self, passwords: &'r dyn Passwords) -> Service<'r> {
        Service { passwords: Some(passwords), ..self }
    }

    pub fn engine(&self) -> &'r dyn Engine {
        self.engine
    }

    async fn run(&self, terminal: &Terminal, op: Operation, now: Timestamp) -> Result<Receipt, Error> {
        self.engine.run(op, By::new(terminal.account.login.clone(), now).marked(terminal.request.clone())).await
    }

    /// The PIN to send to the engine.
    fn pin(pin: Option<&Secret<'_>>) -> Option<Pin> {
        pin.map(|p| Pin(p.expose().to_string()))
    }

    /// Counts a wrong PIN, or a locked card's, for metrics.
    fn note_pin(&self, verdict: PinVerdict) {
        match (self.tally, verdict) {
            (Some(t), PinVerdict::Wrong) => t.failed(),
            (Some(t), PinVerdict::Locked) => {
                t.failed();
                t.locked_out();
            }
            _ => {}
        }
    }

    /// Counts a PIN refusal from a receipt, for metrics.
    fn note_refusal(&self, r: &Refusal) {
        match r {
            Refusal::WrongPin { .. } => self.note_pin(PinVerdict::Wrong),
            Refusal::LockedOut => self.note_pin(PinVerdict::Locked),
            _ => {}
        }
    }

    /// 93: checks the terminal's login. A refused login is `940` and no terminal. The
    /// password is checked by the service's `Passwords` (without one, by an Argon2 hash run
    /// on this thread: slow on purpose).
    pub async fn login(&self, req: &Login<'_>) -> Result<(LoginResponse<'static>, Option<Terminal>), Error> {
        let refused = (LoginResponse { ok: false, ..Default::default() }, None);
        // Plain text only: no vendor encryption is agreed.
        if !matches!((req.uid_algorithm, req.pwd_algorithm), (Algorithm::Plain, Algorithm::Plain)) {
            return Ok(refused);
        }
        let account = match self.engine.query(Query::Account(req.login_user_id.to_string())).await {
            Ok(Answer::Account(a)) => *a,
            Ok(_) | Err(Error::Refused(_)) => return Ok(refused),
            Err(e) => return Err(e),
        };
        let password = req.login_password.expose();
        let verified = match self.passwords {
            Some(p) => p.check(&account.login, password, &account.password_hash).await,
            None => crate::domain::secret::verify_password(password, &account.password_hash),
        };
        if !verified {
            return Ok(refused);
        }
        // A profile that cannot be read refuses the login rather than serving with defaults.
        let Ok(profile) = Profile::of(&account) else { return Ok(refused) };
        let institution = match self.engine.query(Query::Institution(account.institution.clone())).await? {
            Answer::Institution(i) => *i,
            _ => return Ok(refused),
        };
        Ok((LoginResponse { ok: true, ..Default::default() }, Some(Terminal::new(account, profile, institution))))
    }

    /// 99: what this terminal may do, and our clock.
    pub fn sc_status(&self, terminal: &Terminal, supported: SupportedMessages, now: Timestamp) -> AcsStatus<'static> {
        AcsStatus {
            online_status: true,
            checkin_ok: true,
            checkout_ok: true,
            acs_renewal_policy: terminal.profile.renewals,
            status_update_ok: terminal.profile.status_update,
            offline_ok: false,
            timeout_period: 999,
            retries_allowed: 3,
            date_time_sync: sip_date(now, &terminal.institution),
            protocol_version: ProtocolVersion::V2_00,
            institution_id: Cow::Owned(terminal.institution.code.clone()),
            library_name: Some(Cow::Owned(terminal.institution.name.clone())),
            supported_messages: supported,
            terminal_location: terminal.account.location.clone().map(Cow::Owned),
            ..Default::default()
        }
    }

    /// Runs a kiosk's patron report (23, 63): the receipt, and the PIN verdict as the kiosk is
    /// told it.
    async fn assess(
        &self,
        terminal: &Terminal,
        card: &str,
        pin: Option<&Secret<'_>>,
        detail: bool,
        now: Timestamp,
    ) -> Result<Option<(Box<KioskPatron>, PinVerdict)>, Error> {
        let op =
            Operation::KioskPatron { at: terminal.kiosk(), card: card.to_string(), pin: Service::pin(pin), detail };
        match self.run(terminal, op, now).await? {
            Receipt::KioskPatron(Ok(report), _) => {
                self.note_pin(report.pin);
                let pinned = report.pin;
                Ok(Some((report, pinned)))
            }
            _ => Ok(None),
        }
    }

    /// Whether a 23 or 63 may show the patron's details: their PIN was right on this very
    /// request, or the terminal uses no PINs (`pin-required = no`: the library lets the card
    /// alone identify its holder).
    fn verified(terminal: &Terminal, pinned: PinVerdict) -> bool {
        !terminal.profile.pin_required || pinned == PinVerdict::Right
    }

    /// What a 23 or 63 shows of a patron whose PIN was not verified on this request: only
    /// what the profile lets an unverified terminal see (the status flags and the reason not
    /// to lend by default, the name if `unverified-name`); never contacts, fees, item lists or
    /// public notes.
    fn unverified(terminal: &Terminal, a: &KioskPatron, pinned: PinVerdict) -> Unverified {
        let p = &terminal.profile;
        Unverified {
            status: if p.unverified_status { status_flags(&a.standing) } else { PatronStatus::default() },
            name: if p.unverified_name { Cow::Owned(a.patron.display_name()) } else { Cow::Borrowed("") },
            screen: Service::warnings(terminal, a, pinned, p.unverified_status),
        }
    }

    /// The screen messages for an assessed patron: the warnings, then their public notes
    /// (staff notes stay with staff).
    fn screen(terminal: &Terminal, a: &KioskPatron, pinned: PinVerdict) -> Vec<Cow<'static, str>> {
        let mut out = Service::warnings(terminal, a, pinned, true);
        out.extend(a.patron.notes.iter().filter(|n| n.public).map(|n| Cow::Owned(n.text.clone())));
        out
    }

    /// A PIN refusal, then (with `reason`) the first reason the patron may not borrow.
    fn warnings(terminal: &Terminal, a: &KioskPatron, pinned: PinVerdict, reason: bool) -> Vec<Cow<'static, str>> {
        let mut out = Vec::new();
        let lang = terminal.language();
        let refusal = pin_phrase(pinned).map(|p| words::phrase(p, lang).to_string());
        out.extend(refusal.clone().map(Cow::Owned));
        // A lockout is both a PIN refusal and a reason not to lend: said once.
        if let Some(r) = a
            .standing
            .first_reason()
            .filter(|_| reason)
            .map(|r| words::reason(r, lang))
            .filter(|r| Some(r) != refusal.as_ref())
        {
            out.push(Cow::Owned(r));
        }
        out
    }

    /// 23: the patron's standing as status flags, whether the barcode and PIN are valid, what
    /// they owe, and why they may not borrow.
    pub async fn patron_status(
        &self,
        terminal: &Terminal,
        req: &PatronStatusRequest<'_>,
        now: Timestamp,
    ) -> Result<PatronStatusResponse<'static>, Error> {
        let inst = &terminal.institution;
        let mut reply = PatronStatusResponse {
            language: req.language,
            transaction_date: sip_date(now, inst),
            institution_id: Cow::Owned(inst.code.clone()),
            patron_identifier: Cow::Owned(req.patron_identifier.to_string()),
            ..Default::default()
        };
        let Some((a, pinned)) =
            self.assess(terminal, &req.patron_identifier, Some(&req.patron_password), false, now).await?
        else {
            reply.patron_status = PatronStatus::UNKNOWN_PATRON;
            reply.valid_patron = Some(false);
            reply.valid_patron_password = terminal.profile.pin_required.then_some(false);
            reply.screen_message.push(terminal.say(Phrase::UnknownCard));
            return Ok(reply);
        };
        reply.valid_patron = Some(true);
        if !Service::verified(terminal, pinned) {
            let shown = Service::unverified(terminal, &a, pinned);
            reply.patron_status = shown.status;
            reply.personal_name = shown.name;
            reply.valid_patron_password = Some(false);
            reply.screen_message = shown.screen;
            return Ok(reply);
        }
        reply.patron_status = status_flags(&a.standing);
        reply.personal_name = Cow::Owned(a.patron.display_name());
        reply.valid_patron_password = cq(pinned);
        if a.balance.0 != 0 {
            reply.currency_type = Some(Cow::Owned(a.currency.clone()));
            reply.fee_amount = Some(Cow::Owned(a.balance.to_string()));
        }
        reply.screen_message = Service::screen(terminal, &a, pinned);
        Ok(reply)
    }

    /// 11: lends the item by the engine's one lending decision (renewing it if the patron
    /// already has it, asking for the rental fee to be accepted, recording a no-block checkout
    /// as it was made), answered only after the loan is committed.
    pub async fn checkout(
        &self,
        terminal: &Terminal,
        req: &Checkout<'_>,
        now: Timestamp,
    ) -> Result<CheckoutResponse<'static>, Error> {
        let inst = &terminal.institution;
        let mut reply = CheckoutResponse {
            ok: false,
            renewal_ok: false,
            magnetic_media: Tristate::Unknown,
            desensitize: Tristate::No,
            transaction_date: sip_date(now, inst),
            institution_id: Cow::Owned(inst.code.clone()),
            patron_identifier: Cow::Owned(req.patron_identifier.to_string()),
            item_identifier: Cow::Owned(req.item_identifier.to_string()),
            ..Default::default()
        };
        let pin = Service::pin(req.patron_password.as_ref());
        let latest = now + jiff::SignedDuration::from_hours(24 * i64::from(self.limits.no_block_max_days));
        let no_block = req.no_block.then(|| moment(&req.nb_due_date, inst).filter(|due| *due > now && *due <= latest));
        let op = Operation::KioskCheckout(Box::new(KioskCheckout {
            at: terminal.kiosk(),
            card: req.patron_identifier.to_string(),
            pin,
            item: req.item_identifier.to_string(),
            fee_acknowledged: req.fee_acknowledged == Some(true),
            renewal_allowed: req.sc_renewal_policy,
            no_block,
            cancel: req.cancel == Some(true),
        }));
        let Receipt::Checkout(c) = self.run(terminal, op, now).await? else { return Err(unexpected("11")) };
        if let Some(item) = &c.item {
            reply.title_identifier = Cow::Owned(item.title.clone());
            reply.media_type = Some(MediaType::from_code(item.media_type));
        }
        match c.result {
            Ok(CheckoutDone::Cancelled) => {
                reply.ok = true;
                reply.screen_message.push(terminal.say(Phrase::CheckoutCancelled));
            }
            Ok(CheckoutDone::Lent(lent)) => {
                let Lent { loan, item, fee, renewed } = *lent;
                reply.ok = true;
                reply.renewal_ok = renewed;
                reply.magnetic_media = tristate(magnetic(MediaType::from_code(item.media_type)));
                reply.desensitize = Tristate::Yes;
                reply.due_date = Cow::Owned(due_text(loan.due, inst));
                if let Some(fee) = fee {
                    reply.fee_type = Some(FeeType::Rental);
                    reply.currency_type = Some(Cow::Owned(fee.currency.clone()));
                    reply.fee_amount = Some(Cow::Owned(fee.amount.to_string()));
                    reply.transaction_id = Some(Cow::Owned(fee.id.to_string()));
                }
            }
            Err(r) => {
                self.note_refusal(&r);
                if let Refusal::Lending(Denial::FeeNotAcknowledged { fee }) = &r {
                    reply.fee_type = Some(FeeType::Rental);
                    reply.currency_type = Some(Cow::Owned(inst.currency.clone()));
                    reply.fee_amount = Some(Cow::Owned(fee.to_string()));
                }
                reply.screen_message.push(terminal.refusal(&r));
            }
        }
        Ok(reply)
    }

    /// 09: takes the item back (answered after the commit). An item someone waits for is
    /// sent to the hold shelf: alert, the hold's pickup location and who it is for. The sort
    /// bin (`CL`) tells a sorter where it goes: `HOLD`, `TRANSIT` (another institution's
    /// item) or the item's shelf location. A no-block checkin (made off line) is recorded
    /// at the kiosk's return date when that is a readable date in the past.
    pub async fn checkin(
        &self,
        terminal: &Terminal,
        req: &Checkin<'_>,
        now: Timestamp,
    ) -> Result<CheckinResponse<'static>, Error> {
        let inst = &terminal.institution;
        let mut reply = CheckinResponse {
            ok: false,
            resensitize: false,
            magnetic_media: Tristate::Unknown,
            alert: true,
            transaction_date: sip_date(now, inst),
            institution_id: Cow::Owned(inst.code.clone()),
            item_identifier: Cow::Owned(req.item_identifier.to_string()),
            ..Default::default()
        };
        let returned = req.no_block.then(|| moment(&req.return_date, inst)).flatten();
        let op = Operation::KioskCheckin { at: terminal.kiosk(), item: req.item_identifier.to_string(), returned };
        let Receipt::Checkin(c) = self.run(terminal, op, now).await? else { return Err(unexpected("09")) };
        let Some(item) = c.item else {
            reply.screen_message.push(terminal.say(Phrase::NotInCatalogue));
            return Ok(reply);
        };
        let av = magnetic(MediaType::from_code(item.media_type));
        reply.sort_bin = Some(Cow::Owned(if item.institution != inst.code {
            "TRANSIT".to_string()
        } else {
            item.location.clone().unwrap_or_else(|| "SHELF".into())
        }));
        reply.ok = true;
        reply.alert = false;
        reply.resensitize = !av;
        reply.magnetic_media = tristate(av);
        reply.permanent_location = Cow::Owned(item.location.clone().unwrap_or_default());
        reply.title_identifier = Some(Cow::Owned(item.title.clone()));
        reply.media_type = Some(MediaType::from_code(item.media_type));
        reply.call_number = item.call_number.clone().map(Cow::Owned);
        match c.ended {
            Some((_, card)) => reply.patron_identifier = Some(Cow::Owned(card)),
            None => reply.screen_message.push(terminal.say(Phrase::WasNotOnLoan)),
        }
        if let Some(w) = c.waiting {
            reply.alert = true;
            reply.sort_bin = Some(Cow::Borrowed("HOLD"));
            let here = w.hold.pickup == inst.code || Some(&w.hold.pickup) == terminal.account.location.as_ref();
            reply.alert_type = Some(if here { AlertType::HoldHere } else { AlertType::HoldElsewhere });
            reply.destination_location = Some(Cow::Owned(w.hold.pickup.clone()));
            reply.hold_patron_id = Some(Cow::Owned(w.primary_id));
            reply.hold_patron_name = Some(Cow::Owned(w.name));
            let pickup = &w.hold.pickup;
            reply.screen_message.push(Cow::Owned(match terminal.language() {
                Language::Swedish => format!("Reserverad: lägg undan för avhämtning vid {pickup}."),
                Language::English => format!("On hold: put it aside for pickup at {pickup}."),
            }));
        }
        Ok(reply)
    }

    /// 17: what the item is, where, whether it is out and until when, and its holds.
    pub async fn item_information(
        &self,
        terminal: &Terminal,
        req: &ItemInformation<'_>,
        now: Timestamp,
    ) -> Result<ItemInformationResponse<'static>, Error> {
        let inst = &terminal.institution;
        let mut reply = ItemInformationResponse {
            circulation_status: CirculationStatus::Other,
            security_marker: SecurityMarker::None,
            fee_type: FeeType::OtherUnknown,
            transaction_date: sip_date(now, inst),
            item_identifier: Cow::Owned(req.item_identifier.to_string()),
            ..Default::default()
        };
        let q = Query::KioskItem { at: terminal.kiosk(), item: req.item_identifier.to_string() };
        let Answer::KioskItem(Some(facts)) = self.engine.query(q).await? else {
            reply.screen_message.push(terminal.say(Phrase::NotInCatalogueShort));
            return Ok(reply);
        };
        let item = &facts.item;
        reply.circulation_status = match item.status {
            ItemStatus::Available => CirculationStatus::Available,
            ItemStatus::OnLoan => CirculationStatus::Charged,
            ItemStatus::OnHoldShelf => CirculationStatus::WaitingOnHoldShelf,
            ItemStatus::InTransit => CirculationStatus::InTransit,
            ItemStatus::InProcess => CirculationStatus::InProcess,
            ItemStatus::Lost => CirculationStatus::Lost,
            ItemStatus::Missing => CirculationStatus::Missing,
            ItemStatus::ClaimedReturned => CirculationStatus::ClaimedReturned,
        };
        reply.security_marker = SecurityMarker::from_code(u16::from(item.security_marker));
        reply.title_identifier = Cow::Owned(item.title.clone());
        reply.hold_queue_length = Some(Cow::Owned(facts.holds.len().to_string()));
        if let Some(loan) = &facts.loan {
            reply.due_date = Some(Cow::Owned(due_text(loan.due, inst)));
        }
        if let Some(fee) = item.rental_fee.filter(|f| f.0 > 0) {
            reply.fee_type = FeeType::Rental;
            reply.currency_type = Some(Cow::Owned(inst.currency.clone()));
            reply.fee_amount = Some(Cow::Owned(fee.to_string()));
        }
        reply.owner = Some(Cow::Owned(item.institution.clone()));
        reply.media_type = Some(MediaType::from_code(item.media_type));
        reply.permanent_location = item.location.clone().map(Cow::Owned);
        reply.call_number = item.call_number.clone().map(Cow::Owned);
        reply.item_properties = item.properties.clone().map(Cow::Owned);
        Ok(reply)
    }

    /// 29: renews one of the patron's loans by the lending rules.
    pub async fn renew(
        &self,
        terminal: &Terminal,
        req: &Renew<'_>,
        now: Timestamp,
    ) -> Result<RenewResponse<'static>, Error> {
        let inst = &terminal.institution;
        let mut reply = RenewResponse {
            ok: false,
            renewal_ok: false,
            magnetic_media: Tristate::Unknown,
            desensitize: Tristate::No,
            transaction_date: sip_date(now, inst),
            institution_id: Cow::Owned(inst.code.clone()),
            patron_identifier: Cow::Owned(req.patron_identifier.to_string()),
            item_identifier: Cow::Owned(req.item_identifier.as_deref().unwrap_or("").to_string()),
            ..Default::default()
        };
        let pin = Service::pin(req.patron_password.as_ref());
        let op = Operation::KioskRenew {
            at: terminal.kiosk(),
            card: req.patron_identifier.to_string(),
            pin,
            item: req.item_identifier.as_deref().map(str::to_string),
            fee_acknowledged: req.fee_acknowledged == Some(true),
            no_block_due: req.no_block.then(|| moment(&req.nb_due_date, inst)).flatten(),
        };
        let Receipt::Renew(r) = self.run(terminal, op, now).await? else { return Err(unexpected("29")) };
        if let Some(item) = &r.item {
            reply.title_identifier = Cow::Owned(item.title.clone());
            reply.media_type = Some(MediaType::from_code(item.media_type));
        }
        match r.result {
            Ok(lent) => {
                reply.ok = true;
                reply.renewal_ok = true;
                reply.magnetic_media = tristate(magnetic(MediaType::from_code(lent.item.media_type)));
                reply.due_date = Cow::Owned(due_text(lent.loan.due, inst));
            }
            Err(r) => {
                self.note_refusal(&r);
                reply.screen_message.push(terminal.refusal(&r));
            }
        }
        Ok(reply)
    }

    /// 35: the kiosk is done with this patron. Nothing is cached per patron, so this only
    /// confirms (for any patron, known or not, as other servers do).
    pub fn end_session(
        &self,
        terminal: &Terminal,
        req: &EndPatronSession<'_>,
        now: Timestamp,
    ) -> EndSessionResponse<'static> {
        EndSessionResponse {
            end_session: true,
            transaction_date: sip_date(now, &terminal.institution),
            institution_id: Cow::Owned(terminal.institution.code.clone()),
            patron_identifier: Cow::Owned(req.patron_identifier.to_string()),
            ..Default::default()
        }
    }

    /// 37: takes a payment, on the fee named in `CG` or on the oldest open fees; refuses
    /// another currency, an amount that is not money, and more than is owed. Accepted only
    /// after the commit; `BK` is our receipt number.
    pub async fn fee_paid(
        &self,
        terminal: &Terminal,
        req: &FeePaid<'_>,
        now: Timestamp,
    ) -> Result<FeePaidResponse<'static>, Error> {
        let inst = &terminal.institution;
        let mut reply = FeePaidResponse {
            payment_accepted: false,
            transaction_date: sip_date(now, inst),
            institution_id: Cow::Owned(inst.code.clone()),
            patron_identifier: Cow::Owned(req.patron_identifier.to_string()),
            ..Default::default()
        };
        let op = Operation::KioskPay {
            at: terminal.kiosk(),
            card: req.patron_identifier.to_string(),
            currency: req.currency_type.as_str().to_string(),
            amount: req.fee_amount.to_string(),
            fee: req.fee_identifier.as_deref().map(str::to_string),
            transaction: req.transaction_id.as_deref().map(str::to_string),
        };
        match self.run(terminal, op, now).await? {
            Receipt::Paid(Ok(payment)) => {
                reply.payment_accepted = true;
                reply.transaction_id = Some(Cow::Owned(payment.receipt.to_string()));
            }
            Receipt::Paid(Err(r)) => reply.screen_message.push(terminal.refusal(&r)),
            _ => return Err(unexpected("37")),
        }
        Ok(reply)
    }

    /// 65: renews every loan the patron has, each by the rules; lists what was and was not
    /// renewed (with the reason).
    pub async fn renew_all(
        &self,
        terminal: &Terminal,
        req: &RenewAll<'_>,
        now: Timestamp,
    ) -> Result<RenewAllResponse<'static>, Error> {
        let inst = &terminal.institution;
        let mut reply = RenewAllResponse {
            ok: false,
            renewed_count: Count::new(0),
            unrenewed_count: Count::new(0),
            transaction_date: sip_date(now, inst),
            institution_id: Cow::Owned(inst.code.clone()),
            ..Default::default()
        };
        let pin = Service::pin(req.patron_password.as_ref());
        let op = Operation::KioskRenewAll {
            at: terminal.kiosk(),
            card: req.patron_identifier.to_string(),
            pin,
            fee_acknowledged: req.fee_acknowledged == Some(true),
        };
        let Receipt::RenewAll(r) = self.run(terminal, op, now).await? else { return Err(unexpected("65")) };
        match r.result {
            Err(r) => {
                self.note_refusal(&r);
                reply.screen_message.push(terminal.refusal(&r));
            }
            Ok(each) => {
                for (item, result) in each {
                    match result {
                        Ok(_) => reply.renewed_items.push(Cow::Owned(item)),
                        Err(r) => reply.unrenewed_items.push(Cow::Owned(format!("{item} {}", terminal.refusal(&r)))),
                    }
                }
                reply.ok = true;
                reply.renewed_count = Count::new(reply.renewed_items.len());
                reply.unrenewed_count = Count::new(reply.unrenewed_items.len());
            }
        }
        Ok(reply)
    }

    /// 15: places (`+`), cancels (`-`) or changes (`*`) a hold on an item or a title.
    pub async fn hold(
        &self,
        terminal: &Terminal,
        req: &HoldRequest<'_>,
        now: Timestamp,
    ) -> Result<HoldResponse<'static>, Error> {
        let inst = &terminal.institution;
        let mut reply = HoldResponse {
            ok: false,
            available: false,
            transaction_date: sip_date(now, inst),
            institution_id: Cow::Owned(inst.code.clone()),
            patron_identifier: Cow::Owned(req.patron_identifier.to_string()),
            item_identifier: req.item_identifier.clone().map(|c| Cow::Owned(c.into_owned())),
            title_identifier: req.title_identifier.clone().map(|c| Cow::Owned(c.into_owned())),
            ..Default::default()
        };
        let pin = Service::pin(req.patron_password.as_ref());
        let item = req.item_identifier.as_deref().filter(|v| !v.is_empty());
        let title = req.title_identifier.as_deref().filter(|v| !v.is_empty());
        let target = match (item, title) {
            (Some(i), _) => Some(HoldTarget::Item(i.to_string())),
            (None, Some(t)) => Some(HoldTarget::Title(t.to_string())),
            (None, None) => None,
        };
        let action = match req.hold_mode {
            HoldMode::Add => HoldAction::Place,
            HoldMode::Delete => HoldAction::Cancel,
            HoldMode::Change => HoldAction::Change,
            HoldMode::Unlisted(_) => HoldAction::Unknown,
        };
        let op = Operation::KioskHold {
            at: terminal.kiosk(),
            card: req.patron_identifier.to_string(),
            pin,
            action,
            target,
            pickup: req.pickup_location.as_deref().map(str::to_string),
            expires: req.expiration_date.as_ref().and_then(|d| moment(d, inst)).map(|t| inst.today(t)),
        };
        let Receipt::KioskHold(h) = self.run(terminal, op, now).await? else { return Err(unexpected("15")) };
        match h.result {
            Ok(done) => {
                reply.ok = true;
                if !done.cancelled {
                    reply.queue_position = done.queue_position.map(|p| Cow::Owned(p.to_string()));
                    reply.pickup_location = Some(Cow::Owned(done.hold.pickup.clone()));
                    reply.expiration_date = done.hold.expires.and_then(|d| {
                        DateTime::local(
                            u16::try_from(d.year()).ok()?,
                            d.month().try_into().ok()?,
                            d.day().try_into().ok()?,
                            23,
                            59,
                            59,
                        )
                        .map(SipDate::At)
                    });
                }
                reply.available = done.available.unwrap_or(false);
            }
            Err(r) => {
                self.note_refusal(&r);
                reply.screen_message.push(terminal.refusal(&r));
            }
        }
        Ok(reply)
    }

    /// The 24 that answers 01 and 25: the patron as they now stand (no PIN checked: the kiosk
    /// may never have asked for one).
    fn status_reply(
        terminal: &Terminal,
        card: &str,
        report: Result<Box<KioskPatron>, Refusal>,
        refused: Option<Refusal>,
        now: Timestamp,
    ) -> PatronStatusResponse<'static> {
        let inst = &terminal.institution;
        let mut reply = PatronStatusResponse {
            transaction_date: sip_date(now, inst),
            institution_id: Cow::Owned(inst.code.clone()),
            patron_identifier: Cow::Owned(card.to_string()),
            ..Default::default()
        };
        match report {
            Err(_) => {
                reply.patron_status = PatronStatus::UNKNOWN_PATRON;
                reply.valid_patron = Some(false);
                reply.screen_message.push(terminal.say(Phrase::UnknownCard));
            }
            Ok(a) => {
                reply.patron_status = status_flags(&a.standing);
                reply.personal_name = Cow::Owned(a.patron.display_name());
                reply.valid_patron = Some(true);
                if a.balance.0 != 0 {
                    reply.currency_type = Some(Cow::Owned(a.currency.clone()));
                    reply.fee_amount = Some(Cow::Owned(a.balance.to_string()));
                }
                reply.screen_message.extend(refused.map(|r| terminal.refusal(&r)));
                reply.screen_message.extend(Service::screen(terminal, &a, PinVerdict::NotChecked));
            }
        }
        reply
    }

    /// 01: the kiosk blocks the card (a `self-check` block with its message), when the
    /// profile allows it; answered with a 24 describing the patron after the block.
    pub async fn block_patron(
        &self,
        terminal: &Terminal,
        req: &BlockPatron<'_>,
        now: Timestamp,
    ) -> Result<PatronStatusResponse<'static>, Error> {
        let message = if req.card_retained {
            format!("{} (card retained)", req.blocked_card_msg)
        } else {
            req.blocked_card_msg.to_string()
        };
        let op = Operation::KioskBlock { at: terminal.kiosk(), card: req.patron_identifier.to_string(), message };
        let Receipt::KioskPatron(report, refused) = self.run(terminal, op, now).await? else {
            return Err(unexpected("01"));
        };
        Ok(Service::status_reply(terminal, &req.patron_identifier, report, refused, now))
    }

    /// 25: lifts the blocks kiosks placed, when the profile allows it (and the PIN, if sent,
    /// is right).
    pub async fn patron_enable(
        &self,
        terminal: &Terminal,
        req: &PatronEnable<'_>,
        now: Timestamp,
    ) -> Result<PatronEnableResponse<'static>, Error> {
        let pin = Service::pin(req.patron_password.as_ref());
        let op = Operation::KioskEnable { at: terminal.kiosk(), card: req.patron_identifier.to_string(), pin };
        let Receipt::KioskPatron(report, refused) = self.run(terminal, op, now).await? else {
            return Err(unexpected("25"));
        };
        if let Some(r) = &refused {
            self.note_refusal(r);
        }
        let s = Service::status_reply(terminal, &req.patron_identifier, report, refused, now);
        Ok(PatronEnableResponse {
            patron_status: s.patron_status,
            language: s.language,
            transaction_date: s.transaction_date,
            institution_id: s.institution_id,
            patron_identifier: s.patron_identifier,
            personal_name: s.personal_name,
            valid_patron: s.valid_patron,
            screen_message: s.screen_message,
            ..Default::default()
        })
    }

    /// 19: stores the item properties the kiosk keeps.
    pub async fn item_status_update(
        &self,
        terminal: &Terminal,
        req: &ItemStatusUpdate<'_>,
        now: Timestamp,
    ) -> Result<ItemStatusUpdateResponse<'static>, Error> {
        let mut reply = ItemStatusUpdateResponse {
            item_properties_ok: false,
            transaction_date: sip_date(now, &terminal.institution),
            item_identifier: Cow::Owned(req.item_identifier.to_string()),
            ..Default::default()
        };
        let op = Operation::KioskItemProperties {
            at: terminal.kiosk(),
            item: req.item_identifier.to_string(),
            properties: req.item_properties.to_string(),
        };
        match self.run(terminal, op, now).await? {
            Receipt::ItemProperties(Ok(item)) => {
                reply.item_properties_ok = true;
                reply.title_identifier = Some(Cow::Owned(item.title));
                reply.item_properties = item.properties.map(Cow::Owned);
            }
            Receipt::ItemProperties(Err(r)) => {
                let why = terminal.refusal(&r);
                reply.screen_message.push(Cow::Owned(match terminal.language() {
                    Language::Swedish => format!("Sparades inte: {why}"),
                    Language::English => format!("Not stored: {why}"),
                }));
            }
            _ => return Err(unexpected("19")),
        }
        Ok(reply)
    }

    /// 63: what 23 says, plus counts, limits, contact details and the one item list the
    /// summary asks for (barcodes; titles for title holds; fines as "amount type item").
    pub async fn patron_information(
        &self,
        terminal: &Terminal,
        req: &PatronInformation<'_>,
        now: Timestamp,
    ) -> Result<PatronInformationResponse<'static>, Error> {
        let inst = &terminal.institution;
        let mut reply = PatronInformationResponse {
            language: req.language,
            transaction_date: sip_date(now, inst),
            institution_id: Cow::Owned(inst.code.clone()),
            patron_identifier: Cow::Owned(req.patron_identifier.to_string()),
            ..Default::default()
        };
        let Some((a, pinned)) =
            self.assess(terminal, &req.patron_identifier, req.patron_password.as_ref(), true, now).await?
        else {
            reply.patron_status = PatronStatus::UNKNOWN_PATRON;
            set_counts(&mut reply, Count::new(0));
            reply.valid_patron = Some(false);
            reply.valid_patron_password =
                (req.patron_password.is_some() && terminal.profile.pin_required).then_some(false);
            reply.screen_message.push(terminal.say(Phrase::UnknownCard));
            return Ok(reply);
        };
        if !Service::verified(terminal, pinned) {
            let shown = Service::unverified(terminal, &a, pinned);
            reply.patron_status = shown.status;
            reply.personal_name = shown.name;
            reply.valid_patron = Some(true);
            reply.valid_patron_password = Some(false);
            reply.screen_message = shown.screen;
            // Counts unknown (four blanks): how much someone borrows is theirs to see.
            set_counts(&mut reply, Count::UNKNOWN);
            return Ok(reply);
        }
        let p = &a.patron;
        let hold_name = |h: &crate::domain::Hold| h.item.clone().or_else(|| h.title.clone()).unwrap_or_default();
        let ready: Vec<String> = a.holds.iter().filter(|h| h.status == HoldStatus::Available).map(hold_name).collect();
        let waiting: Vec<String> = a.holds.iter().filter(|h| h.status == HoldStatus::Waiting).map(hold_name).collect();
        let overdue: Vec<String> = a.loans.iter().filter(|l| l.due < now).map(|l| l.item.clone()).collect();
        let charged: Vec<String> = a.loans.iter().map(|l| l.item.clone()).collect();
        let fines: Vec<String> = a
            .fees
            .iter()
            .map(|f: &Fee| {
                format!("{} {} {}", f.outstanding(), f.kind.name(), f.item.as_deref().unwrap_or(""))
                    .trim_end()
                    .to_string()
            })
            .collect();
        reply.patron_status = status_flags(&a.standing);
        reply.hold_items_count = Count::new(ready.len());
        reply.overdue_items_count = Count::new(overdue.len());
        reply.charged_items_count = Count::new(charged.len());
        reply.fine_items_count = Count::new(fines.len());
        reply.recall_items_count = Count::new(0);
        reply.unavailable_holds_count = Count::new(waiting.len());
        reply.charged_items_limit = Some(Cow::Owned(format!("{:04}", a.policy.max_loans.min(9999))));
        reply.personal_name = Cow::Owned(p.display_name());
        reply.valid_patron = Some(true);
        reply.valid_patron_password = cq(pinned);
        reply.currency_type = Some(Cow::Owned(a.currency.clone()));
        reply.fee_amount = Some(Cow::Owned(a.balance.to_string()));
        reply.fee_limit = Some(Cow::Owned(a.policy.fine_threshold.to_string()));
        reply.home_address = p.address.clone().map(Cow::Owned);
        reply.email_address = p.email.clone().map(Cow::Owned);
        reply.home_phone_number = p.phone.clone().map(Cow::Owned);
        let window = |list: Vec<String>| -> Vec<Cow<'static, str>> {
            // BP/BQ are 1-based and inclusive; a bound that is not a number is ignored.
            let start = req.start_item.as_deref().and_then(|v| v.trim().parse::<usize>().ok()).unwrap_or(1).max(1);
            let end = req.end_item.as_deref().and_then(|v| v.trim().parse::<usize>().ok()).unwrap_or(usize::MAX);
            list.into_iter().skip(start - 1).take(end.saturating_sub(start - 1)).map(Cow::Owned).collect()
        };
        match req.summary.selected() {
            Some(Summary::HOLD_ITEMS) => reply.hold_items = window(ready),
            Some(Summary::OVERDUE_ITEMS) => reply.overdue_items = window(overdue),
            Some(Summary::CHARGED_ITEMS) => reply.charged_items = window(charged),
            Some(Summary::FINE_ITEMS) => reply.fine_items = window(fines),
            Some(Summary::UNAVAILABLE_HOLDS) => reply.unavailable_hold_items = window(waiting),
            _ => {}
        }
        reply.screen_message = Service::screen(terminal, &a, pinned);
        Ok(reply)
    }
}

/// What a 23 or 63 shows of a patron not verified on the request.
struct Unverified {
    status: PatronStatus,
    name: Cow<'static, str>,
    screen: Vec<Cow<'static, str>>,
}

/// Sets all six item counts of a 64.
fn set_counts(reply: &mut PatronInformationResponse<'_>, count: Count) {
    for c in [
        &mut reply.hold_items_count,
        &mut reply.overdue_items_count,
        &mut reply.charged_items_count,
        &mut reply.fine_items_count,
        &mut reply.recall_items_count,
        &mut reply.unavailable_holds_count,
    ] {
        *c = count;
    }
}

/// A receipt of the wrong kind: a bug in the engine, failed as one.
fn unexpected(code: &str) -> Error {
    Error::Refused(Refusal::rule(format!("the engine answered a {code} with another kind of receipt")))
}

#[cfg(test)]
mod tests;
