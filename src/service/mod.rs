//! The service layer: the one place that translates between SIP messages and the register.
//!
//! It has no sockets and reads no clock: the network layer hands it a decoded request, the
//! terminal it came from and `now`, and sends back the reply it returns. Refusals are replies
//! (ok 0, a status flag, a screen message); only a failing store is an error.

use std::borrow::Cow;

use jiff::Timestamp;

use crate::domain::rules::{self, PinCheck, Refusal, Standing};
use crate::domain::{Account, Fee, FeeStatus, Hold, HoldStatus, Institution, ItemStatus, Money, Patron, Profile};
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
use crate::register::{HoldTarget, Lend, Lent, Register};
use crate::store::StoreError;

mod answer;
mod guard;
mod language;
mod session;

pub use answer::refusal;
pub use guard::{PinGuard, ServiceLimits};
pub use language::{localise, translate};
pub use session::{Outcome, Session, SessionRules, Verdict};

/// A logged-in terminal: its account, profile and institution.
#[derive(Clone, Debug)]
pub struct Terminal {
    pub account: Account,
    pub profile: Profile,
    pub institution: Institution,
}

/// What kiosks are told about a barcode that matches no one.
const UNKNOWN_CARD: &str = "Your library card number cannot be found. Please see staff.";

/// What kiosks are told when the PIN sent does not match.
const WRONG_PIN: &str = "The PIN is not correct.";

/// What kiosks are told when their terminal sent too many wrong PINs of late.
const PIN_THROTTLED: &str = "Too many wrong PINs at this terminal. Please wait a few minutes or see staff.";

/// What became of a PIN a kiosk sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PinVerdict {
    /// The profile asks for no PIN: no `CQ` is sent.
    NotChecked,
    Right,
    Wrong,
    /// The card is locked by wrong PINs (this one may have been the fifth): no PIN is accepted.
    Locked,
    /// Not tried: the terminal is over its budget of wrong PINs.
    Throttled,
}

impl PinVerdict {
    /// The `CQ` to send.
    fn cq(self) -> Option<bool> {
        match self {
            PinVerdict::NotChecked => None,
            PinVerdict::Right => Some(true),
            PinVerdict::Wrong | PinVerdict::Locked | PinVerdict::Throttled => Some(false),
        }
    }

    /// The screen message refusing the request, if the PIN refuses it.
    fn refusal(self) -> Option<&'static str> {
        match self {
            PinVerdict::Wrong => Some(WRONG_PIN),
            PinVerdict::Locked => Some(rules::LOCKED_OUT),
            PinVerdict::Throttled => Some(PIN_THROTTLED),
            PinVerdict::NotChecked | PinVerdict::Right => None,
        }
    }
}

/// A patron as 23 and 63 see them.
struct Assessment {
    patron: Patron,
    pin: PinVerdict,
    balance: Money,
    standing: Standing,
}

/// Translates requests into register operations and replies.
pub struct Service<'r> {
    reg: &'r Register,
    limits: &'r ServiceLimits,
    /// Wrong PINs per terminal, shared by all connections; `None` applies no rate limit.
    guard: Option<&'r PinGuard>,
}

/// `now` as a SIP date in the institution's time zone (local time, blank zone).
pub fn sip_date(now: Timestamp, institution: &Institution) -> SipDate {
    sip_date_in(now, &institution.time_zone(), Zone::Local)
}

/// `now` as a SIP date: the wall-clock time in `tz`, written with the zone field `zone`.
pub fn sip_date_in(now: Timestamp, tz: &jiff::tz::TimeZone, zone: Zone) -> SipDate {
    let t = now.to_zoned(tz.clone()).datetime();
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

impl<'r> Service<'r> {
    /// A service with the default limits and no PIN rate limit (staff tools and tests).
    pub fn new(reg: &'r Register) -> Service<'r> {
        Service { reg, limits: &ServiceLimits::DEFAULT, guard: None }
    }

    /// A service as the server runs it: these limits, and wrong PINs counted in `guard`.
    pub fn with_limits(reg: &'r Register, limits: &'r ServiceLimits, guard: &'r PinGuard) -> Service<'r> {
        Service { reg, limits, guard: Some(guard) }
    }

    /// The register it answers from.
    pub fn register(&self) -> &'r Register {
        self.reg
    }

    /// 93: checks the terminal's login. A refused login is `940` and no terminal.
    pub fn login(&self, req: &Login<'_>) -> Result<(LoginResponse<'static>, Option<Terminal>), StoreError> {
        let refused = (LoginResponse { ok: false, ..Default::default() }, None);
        // Plain text only: no vendor encryption is agreed.
        if !matches!((req.uid_algorithm, req.pwd_algorithm), (Algorithm::Plain, Algorithm::Plain)) {
            return Ok(refused);
        }
        let Some(account) = self.reg.verify_account(&req.login_user_id, req.login_password.expose())? else {
            return Ok(refused);
        };
        // A profile that cannot be read refuses the login rather than serving with defaults.
        let Ok(profile) = Profile::of(&account) else { return Ok(refused) };
        let institution = self.reg.store.institution(&account.institution)?;
        Ok((LoginResponse { ok: true, ..Default::default() }, Some(Terminal { account, profile, institution })))
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

    /// The patron a kiosk names, if the identifier is one of their active ones at the
    /// terminal's institution. Deleted patrons are unknown to kiosks.
    fn patron(&self, terminal: &Terminal, identifier: &str) -> Result<Option<Patron>, StoreError> {
        let found = self.reg.store.patron_by_identifier(&terminal.institution.code, identifier)?;
        Ok(found.filter(|p| {
            p.deleted.is_none() && (p.primary_id == identifier || p.active_identifiers().any(|v| v == identifier))
        }))
    }

    /// Checks the PIN a kiosk sent, as the profile asks. A check counts toward the patron's
    /// lockout and, when wrong, toward the terminal's rate limit.
    fn pin(
        &self,
        terminal: &Terminal,
        patron: &Patron,
        pin: &Secret<'_>,
        now: Timestamp,
    ) -> Result<PinVerdict, StoreError> {
        if !terminal.profile.pin_required {
            return Ok(PinVerdict::NotChecked);
        }
        if pin.is_empty() {
            return Ok(if terminal.profile.empty_pin_ok { PinVerdict::Right } else { PinVerdict::Wrong });
        }
        let login = &terminal.account.login;
        if let Some(g) = self.guard {
            if !g.allows(login, self.limits, now) {
                return Ok(PinVerdict::Throttled);
            }
        }
        let check = self.reg.check_pin(patron.id, pin.expose(), now)?;
        if check == PinCheck::Accepted {
            return Ok(PinVerdict::Right);
        }
        if let Some(g) = self.guard {
            g.failed(login, self.limits, now);
            if check == PinCheck::LockedOut {
                g.locked_out();
            }
        }
        // "Not correct" would mislead on a locked card, where even the right PIN is refused.
        Ok(if check == PinCheck::LockedOut { PinVerdict::Locked } else { PinVerdict::Wrong })
    }

    /// The patron a request acts for, or the screen message refusing it: an unknown card, or a
    /// PIN that was sent and is wrong (the check counts toward the lockout).
    fn authenticate(
        &self,
        terminal: &Terminal,
        identifier: &str,
        pin: Option<&Secret<'_>>,
        now: Timestamp,
    ) -> Result<Result<Patron, &'static str>, StoreError> {
        let Some(patron) = self.patron(terminal, identifier)? else { return Ok(Err(UNKNOWN_CARD)) };
        if let Some(pin) = pin {
            if let Some(why) = self.pin(terminal, &patron, pin, now)?.refusal() {
                return Ok(Err(why));
            }
        }
        Ok(Ok(patron))
    }

    /// Everything 23 and 63 report about a patron: found or not, the PIN verdict (checked
    /// first, so a lockout it causes shows at once), standing and balance.
    fn assess(
        &self,
        terminal: &Terminal,
        identifier: &str,
        pin: Option<&Secret<'_>>,
        now: Timestamp,
    ) -> Result<Option<Assessment>, StoreError> {
        let inst = &terminal.institution;
        let Some(patron) = self.patron(terminal, identifier)? else { return Ok(None) };
        let pin = match pin {
            Some(pin) => self.pin(terminal, &patron, pin, now)?,
            None => PinVerdict::NotChecked,
        };
        let patron = self.reg.store.patron(patron.id)?;
        let today = inst.today(now);
        let balance = self.reg.balance(patron.id)?;
        let standing = rules::standing(&patron, inst, self.reg.store.loan_count(patron.id), balance, today);
        Ok(Some(Assessment { patron, pin, balance, standing }))
    }

    /// The screen messages for an assessed patron: a wrong PIN, the first reason they may not
    /// borrow, then their public notes.
    fn screen(a: &Assessment) -> Vec<Cow<'static, str>> {
        let mut out = Vec::new();
        let refusal = a.pin.refusal();
        out.extend(refusal.map(Cow::Borrowed));
        // A lockout is both a PIN refusal and a reason not to lend: said once.
        if let Some(r) = a.standing.first_reason().map(|r| r.to_string()).filter(|r| Some(r.as_str()) != refusal) {
            out.push(Cow::Owned(r));
        }
        out.extend(a.patron.notes.iter().filter(|n| n.public).map(|n| Cow::Owned(n.text.clone())));
        out
    }

    /// 23: the patron's standing as status flags, whether the barcode and PIN are valid, what
    /// they owe, and why they may not borrow.
    pub fn patron_status(
        &self,
        terminal: &Terminal,
        req: &PatronStatusRequest<'_>,
        now: Timestamp,
    ) -> Result<PatronStatusResponse<'static>, StoreError> {
        let inst = &terminal.institution;
        let mut reply = PatronStatusResponse {
            language: req.language,
            transaction_date: sip_date(now, inst),
            institution_id: Cow::Owned(inst.code.clone()),
            patron_identifier: Cow::Owned(req.patron_identifier.to_string()),
            ..Default::default()
        };
        let Some(a) = self.assess(terminal, &req.patron_identifier, Some(&req.patron_password), now)? else {
            reply.patron_status = PatronStatus::UNKNOWN_PATRON;
            reply.valid_patron = Some(false);
            reply.valid_patron_password = terminal.profile.pin_required.then_some(false);
            reply.screen_message.push(Cow::Borrowed(UNKNOWN_CARD));
            return Ok(reply);
        };
        reply.patron_status = status_flags(&a.standing);
        reply.personal_name = Cow::Owned(a.patron.display_name());
        reply.valid_patron = Some(true);
        reply.valid_patron_password = a.pin.cq();
        if a.balance.0 != 0 {
            reply.currency_type = Some(Cow::Owned(inst.currency.clone()));
            reply.fee_amount = Some(Cow::Owned(a.balance.to_string()));
        }
        reply.screen_message = Service::screen(&a);
        Ok(reply)
    }

    /// 11: lends the item by the register's rules (renewing it if the patron already has it,
    /// asking for the rental fee to be accepted, recording a no-block checkout as it was made)
    /// and answers only after the loan is committed.
    pub fn checkout(
        &self,
        terminal: &Terminal,
        req: &Checkout<'_>,
        now: Timestamp,
    ) -> Result<CheckoutResponse<'static>, StoreError> {
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
        let patron = match self.authenticate(terminal, &req.patron_identifier, req.patron_password.as_ref(), now)? {
            Ok(p) => p,
            Err(why) => {
                reply.screen_message.push(Cow::Borrowed(why));
                return Ok(reply);
            }
        };
        let Some(item) = self.reg.store.item(&req.item_identifier)? else {
            reply.screen_message.push(Cow::Borrowed("This item is not in the library's catalogue. Please see staff."));
            return Ok(reply);
        };
        reply.title_identifier = Cow::Owned(item.title.clone());
        let media = MediaType::from_code(item.media_type);
        reply.media_type = Some(media);
        let tz = inst.time_zone();
        if req.cancel == Some(true) {
            return self.cancel_checkout(patron.id, &item.barcode, now, reply);
        }
        let no_block = req.no_block.then(|| {
            let policy = inst.policy_for(patron.user_group.as_deref());
            let latest = now + jiff::SignedDuration::from_hours(24 * i64::from(self.limits.no_block_max_days));
            moment(&req.nb_due_date, inst)
                .filter(|due| *due > now && *due <= latest)
                .unwrap_or_else(|| rules::due_date(policy, &item, now, &tz))
        });
        let lend = Lend {
            accept_fee: req.fee_acknowledged == Some(true),
            renewal_allowed: req.sc_renewal_policy && terminal.profile.renewals,
            no_block,
        };
        match self.reg.lend(patron.id, &item.barcode, &lend, now)? {
            Lent::Done { loan, item, fee, renewed } => {
                reply.ok = true;
                reply.renewal_ok = renewed;
                reply.magnetic_media =
                    if magnetic(MediaType::from_code(item.media_type)) { Tristate::Yes } else { Tristate::No };
                reply.desensitize = Tristate::Yes;
                reply.due_date = Cow::Owned(due_text(loan.due, inst));
                if let Some(fee) = fee {
                    reply.fee_type = Some(FeeType::Rental);
                    reply.currency_type = Some(Cow::Owned(fee.currency.clone()));
                    reply.fee_amount = Some(Cow::Owned(fee.amount.to_string()));
                    reply.transaction_id = Some(Cow::Owned(fee.id.to_string()));
                }
            }
            Lent::Refused(refusal) => {
                if let Refusal::FeeNotAcknowledged { fee } = &refusal {
                    reply.fee_type = Some(FeeType::Rental);
                    reply.currency_type = Some(Cow::Owned(inst.currency.clone()));
                    reply.fee_amount = Some(Cow::Owned(fee.to_string()));
                }
                reply.screen_message.push(Cow::Owned(refusal.to_string()));
            }
        }
        Ok(reply)
    }

    /// 11 with cancel `Y`: the kiosk could not finish the checkout it was granted (the
    /// security strip would not desensitise), so the loan it made is undone. Anything else
    /// is refused: a cancel never ends someone else's loan.
    fn cancel_checkout(
        &self,
        patron: u64,
        barcode: &str,
        now: Timestamp,
        mut reply: CheckoutResponse<'static>,
    ) -> Result<CheckoutResponse<'static>, StoreError> {
        match self.reg.store.loan(barcode)? {
            Some(loan) if loan.patron == patron => {
                self.reg.checkin(barcode, now)?;
                reply.ok = true;
                reply.screen_message.push(Cow::Borrowed("Checkout cancelled."));
            }
            _ => reply.screen_message.push(Cow::Borrowed("There is no checkout of this item to cancel.")),
        }
        Ok(reply)
    }

    /// 09: takes the item back (answered after the commit). An item someone waits for is
    /// sent to the hold shelf: alert, the hold's pickup location and who it is for. The sort
    /// bin (`CL`) tells a sorter where it goes: `HOLD`, `TRANSIT` (another institution's
    /// item) or the item's shelf location. A no-block checkin (made off line) is recorded
    /// at the kiosk's return date when that is a readable date in the past.
    pub fn checkin(
        &self,
        terminal: &Terminal,
        req: &Checkin<'_>,
        now: Timestamp,
    ) -> Result<CheckinResponse<'static>, StoreError> {
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
        let Some(item) = self.reg.store.item(&req.item_identifier)? else {
            reply.screen_message.push(Cow::Borrowed("This item is not in the library's catalogue. Please see staff."));
            return Ok(reply);
        };
        let out = self.reg.store.loan(&item.barcode)?.map(|l| l.out);
        let returned = req
            .no_block
            .then(|| moment(&req.return_date, inst))
            .flatten()
            .filter(|t| *t <= now && out.is_none_or(|o| o <= *t))
            .unwrap_or(now);
        let loan = self.reg.checkin(&item.barcode, returned)?;
        let av = magnetic(MediaType::from_code(item.media_type));
        reply.sort_bin = Some(Cow::Owned(if item.institution != inst.code {
            "TRANSIT".to_string()
        } else {
            item.location.clone().unwrap_or_else(|| "SHELF".into())
        }));
        reply.ok = true;
        reply.alert = false;
        reply.resensitize = !av;
        reply.magnetic_media = if av { Tristate::Yes } else { Tristate::No };
        reply.permanent_location = Cow::Owned(item.location.clone().unwrap_or_default());
        reply.title_identifier = Some(Cow::Owned(item.title.clone()));
        reply.media_type = Some(MediaType::from_code(item.media_type));
        reply.call_number = item.call_number.clone().map(Cow::Owned);
        match &loan {
            Some(l) => {
                let who = self.reg.store.patron(l.patron)?;
                let card = who.active_identifiers().next().unwrap_or(&who.primary_id).to_string();
                reply.patron_identifier = Some(Cow::Owned(card));
            }
            None => reply.screen_message.push(Cow::Borrowed("This item was not on loan.")),
        }
        if let Some(hold) = self.reg.store.holds_on(&item.barcode)?.into_iter().next() {
            let for_whom = self.reg.store.patron(hold.patron)?;
            reply.alert = true;
            reply.sort_bin = Some(Cow::Borrowed("HOLD"));
            reply.alert_type =
                Some(if hold.pickup == inst.code || Some(&hold.pickup) == terminal.account.location.as_ref() {
                    AlertType::HoldHere
                } else {
                    AlertType::HoldElsewhere
                });
            reply.destination_location = Some(Cow::Owned(hold.pickup.clone()));
            reply.hold_patron_id = Some(Cow::Owned(for_whom.primary_id.clone()));
            reply.hold_patron_name = Some(Cow::Owned(for_whom.display_name()));
            reply.screen_message.push(Cow::Owned(format!("On hold: put it aside for pickup at {}.", hold.pickup)));
        }
        Ok(reply)
    }

    /// 17: what the item is, where, whether it is out and until when, and its holds.
    pub fn item_information(
        &self,
        terminal: &Terminal,
        req: &ItemInformation<'_>,
        now: Timestamp,
    ) -> Result<ItemInformationResponse<'static>, StoreError> {
        let inst = &terminal.institution;
        let mut reply = ItemInformationResponse {
            circulation_status: CirculationStatus::Other,
            security_marker: SecurityMarker::None,
            fee_type: FeeType::OtherUnknown,
            transaction_date: sip_date(now, inst),
            item_identifier: Cow::Owned(req.item_identifier.to_string()),
            ..Default::default()
        };
        let Some(item) = self.reg.store.item(&req.item_identifier)? else {
            reply.screen_message.push(Cow::Borrowed("This item is not in the library's catalogue."));
            return Ok(reply);
        };
        let holds = self.reg.store.holds_on(&item.barcode)?;
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
        reply.hold_queue_length = Some(Cow::Owned(holds.len().to_string()));
        if let Some(loan) = self.reg.store.loan(&item.barcode)? {
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

    /// 29: renews one of the patron's loans by the register's rules.
    pub fn renew(
        &self,
        terminal: &Terminal,
        req: &Renew<'_>,
        now: Timestamp,
    ) -> Result<RenewResponse<'static>, StoreError> {
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
        let patron = match self.authenticate(terminal, &req.patron_identifier, req.patron_password.as_ref(), now)? {
            Ok(p) => p,
            Err(why) => {
                reply.screen_message.push(Cow::Borrowed(why));
                return Ok(reply);
            }
        };
        let Some(barcode) = req.item_identifier.as_deref().filter(|b| !b.is_empty()) else {
            reply.screen_message.push(Cow::Borrowed("Renewing by title is not supported: scan the item."));
            return Ok(reply);
        };
        let Some(loan) = self.reg.store.loan(barcode)?.filter(|l| l.patron == patron.id) else {
            reply.screen_message.push(Cow::Borrowed("This item is not on loan to you."));
            return Ok(reply);
        };
        if let Some(item) = self.reg.store.item(&loan.item)? {
            reply.title_identifier = Cow::Owned(item.title.clone());
            reply.media_type = Some(MediaType::from_code(item.media_type));
        }
        if !terminal.profile.renewals {
            reply.screen_message.push(Cow::Owned(Refusal::RenewalNotAllowed.to_string()));
            return Ok(reply);
        }
        let lend = Lend {
            accept_fee: req.fee_acknowledged == Some(true),
            renewal_allowed: true,
            no_block: req.no_block.then(|| moment(&req.nb_due_date, inst)).flatten(),
        };
        match self.reg.lend(patron.id, barcode, &lend, now)? {
            Lent::Done { loan, item, .. } => {
                reply.ok = true;
                reply.renewal_ok = true;
                reply.magnetic_media =
                    if magnetic(MediaType::from_code(item.media_type)) { Tristate::Yes } else { Tristate::No };
                reply.due_date = Cow::Owned(due_text(loan.due, inst));
            }
            Lent::Refused(r) => reply.screen_message.push(Cow::Owned(r.to_string())),
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
    pub fn fee_paid(
        &self,
        terminal: &Terminal,
        req: &FeePaid<'_>,
        now: Timestamp,
    ) -> Result<FeePaidResponse<'static>, StoreError> {
        let inst = &terminal.institution;
        let mut reply = FeePaidResponse {
            payment_accepted: false,
            transaction_date: sip_date(now, inst),
            institution_id: Cow::Owned(inst.code.clone()),
            patron_identifier: Cow::Owned(req.patron_identifier.to_string()),
            ..Default::default()
        };
        let mut refuse = |why: String| {
            reply.screen_message.push(Cow::Owned(why));
            Ok(reply.clone())
        };
        let Some(patron) = self.patron(terminal, &req.patron_identifier)? else {
            return refuse(UNKNOWN_CARD.into());
        };
        if req.currency_type.as_str() != inst.currency {
            return refuse(format!("Payments here are in {}, not {}.", inst.currency, req.currency_type.as_str()));
        }
        let Some(amount) = Money::parse(&req.fee_amount) else {
            return refuse(format!("'{}' is not an amount.", req.fee_amount));
        };
        let fee = match req.fee_identifier.as_deref().filter(|f| !f.is_empty()) {
            Some(f) => match f.trim().parse::<u64>() {
                Ok(id) => Some(id),
                Err(_) => return refuse(format!("There is no fee '{f}'.")),
            },
            None => None,
        };
        match self.reg.pay(patron.id, amount, fee, req.transaction_id.as_deref(), now) {
            Ok((_, receipt)) => {
                reply.payment_accepted = true;
                reply.transaction_id = Some(Cow::Owned(receipt.to_string()));
                Ok(reply)
            }
            Err(why @ (StoreError::Refused(_) | StoreError::NotFound(_))) => refuse(format!("Payment refused: {why}.")),
            Err(e) => Err(e),
        }
    }

    /// 65: renews every loan the patron has, each by the rules; lists what was and was not
    /// renewed (with the reason).
    pub fn renew_all(
        &self,
        terminal: &Terminal,
        req: &RenewAll<'_>,
        now: Timestamp,
    ) -> Result<RenewAllResponse<'static>, StoreError> {
        let inst = &terminal.institution;
        let mut reply = RenewAllResponse {
            ok: false,
            renewed_count: Count::new(0),
            unrenewed_count: Count::new(0),
            transaction_date: sip_date(now, inst),
            institution_id: Cow::Owned(inst.code.clone()),
            ..Default::default()
        };
        let patron = match self.authenticate(terminal, &req.patron_identifier, req.patron_password.as_ref(), now)? {
            Ok(p) => p,
            Err(why) => {
                reply.screen_message.push(Cow::Borrowed(why));
                return Ok(reply);
            }
        };
        let lend = Lend {
            accept_fee: req.fee_acknowledged == Some(true),
            renewal_allowed: terminal.profile.renewals,
            no_block: None,
        };
        for loan in self.reg.store.loans_of(patron.id)? {
            match self.reg.lend(patron.id, &loan.item, &lend, now)? {
                Lent::Done { .. } => reply.renewed_items.push(Cow::Owned(loan.item)),
                Lent::Refused(r) => reply.unrenewed_items.push(Cow::Owned(format!("{} {}", loan.item, r))),
            }
        }
        reply.ok = true;
        reply.renewed_count = Count::new(reply.renewed_items.len());
        reply.unrenewed_count = Count::new(reply.unrenewed_items.len());
        Ok(reply)
    }

    /// 15: places (`+`), cancels (`-`) or changes (`*`) a hold on an item or a title.
    pub fn hold(
        &self,
        terminal: &Terminal,
        req: &HoldRequest<'_>,
        now: Timestamp,
    ) -> Result<HoldResponse<'static>, StoreError> {
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
        let patron = match self.authenticate(terminal, &req.patron_identifier, req.patron_password.as_ref(), now)? {
            Ok(p) => p,
            Err(why) => {
                reply.screen_message.push(Cow::Borrowed(why));
                return Ok(reply);
            }
        };
        let item = req.item_identifier.as_deref().filter(|v| !v.is_empty());
        let title = req.title_identifier.as_deref().filter(|v| !v.is_empty());
        let target = match (item, title) {
            (Some(i), _) => HoldTarget::Item(i),
            (None, Some(t)) => HoldTarget::Title(t),
            (None, None) => {
                reply.screen_message.push(Cow::Borrowed("Say which item or title to hold."));
                return Ok(reply);
            }
        };
        let expires = req.expiration_date.as_ref().and_then(|d| moment(d, inst)).map(|t| inst.today(t));
        let pickup = req.pickup_location.as_deref().filter(|p| !p.is_empty());
        let existing = self.reg.store.holds_of(patron.id)?.into_iter().find(|h| match target {
            HoldTarget::Item(i) => h.item.as_deref() == Some(i),
            HoldTarget::Title(t) => h.item.is_none() && h.title.as_deref() == Some(t),
        });
        let result = match (req.hold_mode, existing) {
            (HoldMode::Add, _) => {
                let pickup = pickup.or(terminal.account.location.as_deref()).unwrap_or(&inst.code);
                self.reg.place_hold(patron.id, target, pickup, expires, now)
            }
            (HoldMode::Delete, Some(h)) => self.reg.cancel_hold(h.id, now),
            (HoldMode::Change, Some(h)) => self.reg.change_hold(h.id, pickup, expires, now),
            (HoldMode::Delete | HoldMode::Change, None) => Err(StoreError::Refused("you have no such hold".into())),
            (HoldMode::Unlisted(_), _) => Err(StoreError::Refused("the hold mode is not +, - or *".into())),
        };
        match result {
            Ok(h) => {
                reply.ok = true;
                if req.hold_mode != HoldMode::Delete {
                    reply.queue_position = self.reg.queue_position(&h)?.map(|p| Cow::Owned(p.to_string()));
                    reply.pickup_location = Some(Cow::Owned(h.pickup.clone()));
                    reply.expiration_date = h.expires.and_then(|d| {
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
                if let Some(i) = item {
                    reply.available = self.reg.store.item(i)?.is_some_and(|it| it.status == ItemStatus::Available);
                }
            }
            Err(why @ (StoreError::Refused(_) | StoreError::NotFound(_))) => {
                reply.screen_message.push(Cow::Owned(format!("Hold refused: {why}.")))
            }
            Err(e) => return Err(e),
        }
        Ok(reply)
    }

    /// A 24 describing the patron as they now stand, with no PIN checked (01 and 25 answer
    /// with it; the kiosk may never have asked for a PIN).
    fn status_now(
        &self,
        terminal: &Terminal,
        identifier: &str,
        now: Timestamp,
    ) -> Result<PatronStatusResponse<'static>, StoreError> {
        let status = PatronStatusRequest { patron_identifier: Cow::Borrowed(identifier), ..Default::default() };
        let without_pin =
            Terminal { profile: Profile { pin_required: false, ..terminal.profile.clone() }, ..terminal.clone() };
        self.patron_status(&without_pin, &status, now)
    }

    /// 01: the kiosk blocks the card (a `self-check` block with its message), when the
    /// profile allows it; answered with a 24 describing the patron after the block.
    pub fn block_patron(
        &self,
        terminal: &Terminal,
        req: &BlockPatron<'_>,
        now: Timestamp,
    ) -> Result<PatronStatusResponse<'static>, StoreError> {
        let patron = self.patron(terminal, &req.patron_identifier)?;
        let mut note = None;
        if let (Some(p), true) = (&patron, terminal.profile.status_update) {
            let msg = if req.card_retained {
                format!("{} (card retained)", req.blocked_card_msg)
            } else {
                req.blocked_card_msg.to_string()
            };
            self.reg.block(p.id, "self-check", Some(&msg), now)?;
        } else if patron.is_some() {
            note = Some("This terminal may not block cards.");
        }
        let mut reply = self.status_now(terminal, &req.patron_identifier, now)?;
        reply.screen_message.extend(note.map(Cow::Borrowed));
        Ok(reply)
    }

    /// 25: lifts the blocks kiosks placed, when the profile allows it (and the PIN, if sent,
    /// is right).
    pub fn patron_enable(
        &self,
        terminal: &Terminal,
        req: &PatronEnable<'_>,
        now: Timestamp,
    ) -> Result<PatronEnableResponse<'static>, StoreError> {
        let mut messages = Vec::new();
        if let Some(p) = self.patron(terminal, &req.patron_identifier)? {
            let pin = match &req.patron_password {
                Some(pin) => self.pin(terminal, &p, pin, now)?,
                None => PinVerdict::NotChecked,
            };
            if !terminal.profile.patron_enable {
                messages.push(Cow::Borrowed("This terminal may not enable cards."));
            } else if let Some(why) = pin.refusal() {
                messages.push(Cow::Borrowed(why));
            } else if p.blocks.iter().any(|b| b.active && b.kind == "self-check") {
                self.reg.unblock(p.id, Some("self-check"), now)?;
            }
        }
        let s = self.status_now(terminal, &req.patron_identifier, now)?;
        let mut screen = messages;
        screen.extend(s.screen_message);
        Ok(PatronEnableResponse {
            patron_status: s.patron_status,
            language: s.language,
            transaction_date: s.transaction_date,
            institution_id: s.institution_id,
            patron_identifier: s.patron_identifier,
            personal_name: s.personal_name,
            valid_patron: s.valid_patron,
            screen_message: screen,
            ..Default::default()
        })
    }

    /// 19: stores the item properties the kiosk keeps.
    pub fn item_status_update(
        &self,
        terminal: &Terminal,
        req: &ItemStatusUpdate<'_>,
        now: Timestamp,
    ) -> Result<ItemStatusUpdateResponse<'static>, StoreError> {
        let mut reply = ItemStatusUpdateResponse {
            item_properties_ok: false,
            transaction_date: sip_date(now, &terminal.institution),
            item_identifier: Cow::Owned(req.item_identifier.to_string()),
            ..Default::default()
        };
        match self.reg.set_item_properties(&req.item_identifier, &req.item_properties) {
            Ok(item) => {
                reply.item_properties_ok = true;
                reply.title_identifier = Some(Cow::Owned(item.title));
                reply.item_properties = item.properties.map(Cow::Owned);
            }
            Err(why @ (StoreError::Refused(_) | StoreError::NotFound(_))) => {
                reply.screen_message.push(Cow::Owned(format!("Not stored: {why}.")))
            }
            Err(e) => return Err(e),
        }
        Ok(reply)
    }

    /// 63: what 23 says, plus counts, limits, contact details and the one item list the
    /// summary asks for (barcodes; titles for title holds; fines as "amount type item").
    pub fn patron_information(
        &self,
        terminal: &Terminal,
        req: &PatronInformation<'_>,
        now: Timestamp,
    ) -> Result<PatronInformationResponse<'static>, StoreError> {
        let inst = &terminal.institution;
        let mut reply = PatronInformationResponse {
            language: req.language,
            transaction_date: sip_date(now, inst),
            institution_id: Cow::Owned(inst.code.clone()),
            patron_identifier: Cow::Owned(req.patron_identifier.to_string()),
            ..Default::default()
        };
        let Some(a) = self.assess(terminal, &req.patron_identifier, req.patron_password.as_ref(), now)? else {
            reply.patron_status = PatronStatus::UNKNOWN_PATRON;
            for c in [
                &mut reply.hold_items_count,
                &mut reply.overdue_items_count,
                &mut reply.charged_items_count,
                &mut reply.fine_items_count,
                &mut reply.recall_items_count,
                &mut reply.unavailable_holds_count,
            ] {
                *c = Count::new(0);
            }
            reply.valid_patron = Some(false);
            reply.valid_patron_password =
                (req.patron_password.is_some() && terminal.profile.pin_required).then_some(false);
            reply.screen_message.push(Cow::Borrowed(UNKNOWN_CARD));
            return Ok(reply);
        };
        let p = &a.patron;
        let loans = self.reg.store.loans_of(p.id)?;
        let holds = self.reg.store.holds_of(p.id)?;
        let fees: Vec<Fee> =
            self.reg.store.fees_of(p.id)?.into_iter().filter(|f| f.status == FeeStatus::Active).collect();
        let hold_name = |h: &Hold| h.item.clone().or_else(|| h.title.clone()).unwrap_or_default();
        let ready: Vec<String> = holds.iter().filter(|h| h.status == HoldStatus::Available).map(hold_name).collect();
        let waiting: Vec<String> = holds.iter().filter(|h| h.status == HoldStatus::Waiting).map(hold_name).collect();
        let overdue: Vec<String> = loans.iter().filter(|l| l.due < now).map(|l| l.item.clone()).collect();
        let charged: Vec<String> = loans.iter().map(|l| l.item.clone()).collect();
        let fines: Vec<String> = fees
            .iter()
            .map(|f| {
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
        let policy = inst.policy_for(p.user_group.as_deref());
        reply.charged_items_limit = Some(Cow::Owned(format!("{:04}", policy.max_loans.min(9999))));
        reply.personal_name = Cow::Owned(p.display_name());
        reply.valid_patron = Some(true);
        reply.valid_patron_password = a.pin.cq();
        reply.currency_type = Some(Cow::Owned(inst.currency.clone()));
        reply.fee_amount = Some(Cow::Owned(a.balance.to_string()));
        reply.fee_limit = Some(Cow::Owned(policy.fine_threshold.to_string()));
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
        reply.screen_message = Service::screen(&a);
        Ok(reply)
    }
}

#[cfg(test)]
mod tests;
