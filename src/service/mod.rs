//! The service layer: the one place that translates between SIP messages and the register.
//!
//! It has no sockets and reads no clock: the network layer hands it a decoded request, the
//! terminal it came from and `now`, and sends back the reply it returns. Refusals are replies
//! (ok 0, a status flag, a screen message); only a failing store is an error.

use std::borrow::Cow;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::domain::rules::{self, PinCheck, Standing};
use crate::domain::{Account, Institution, Patron, Profile};
use crate::proto::{
    AcsStatus, Algorithm, DateTime, Login, LoginResponse, PatronStatus, PatronStatusRequest, PatronStatusResponse,
    ProtocolVersion, SipDate, SupportedMessages,
};
use crate::register::Register;
use crate::store::StoreError;

/// A logged-in terminal: its account, profile and institution.
#[derive(Clone, Debug)]
pub struct Terminal {
    pub account: Account,
    pub profile: Profile,
    pub institution: Institution,
}

/// Translates requests into register operations and replies.
pub struct Service<'r> {
    reg: &'r Register,
}

/// `now` as a SIP date in the institution's time zone (local time, blank zone).
pub fn sip_date(now: Timestamp, institution: &Institution) -> SipDate {
    let tz = TimeZone::get(&institution.timezone).unwrap_or(TimeZone::UTC);
    let t = now.to_zoned(tz).datetime();
    let part = |v: i8| u8::try_from(v).unwrap_or(0);
    DateTime::local(
        u16::try_from(t.year()).unwrap_or(0),
        part(t.month()),
        part(t.day()),
        part(t.hour()),
        part(t.minute()),
        part(t.second()),
    )
    .map_or(SipDate::Zeros, SipDate::At)
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
    pub fn new(reg: &'r Register) -> Service<'r> {
        Service { reg }
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
            status_update_ok: false,
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

    /// Checks the PIN a kiosk sent, as the profile asks: `None` when no `CQ` is to be sent.
    /// A check counts toward the lockout.
    fn pin(
        &self,
        terminal: &Terminal,
        patron: &Patron,
        pin: &crate::proto::Secret<'_>,
        now: Timestamp,
    ) -> Result<Option<bool>, StoreError> {
        if !terminal.profile.pin_required {
            return Ok(None);
        }
        if pin.is_empty() {
            return Ok(Some(terminal.profile.empty_pin_ok));
        }
        Ok(Some(self.reg.check_pin(patron.id, pin.expose(), now)? == PinCheck::Accepted))
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
        let Some(patron) = self.patron(terminal, &req.patron_identifier)? else {
            reply.patron_status = PatronStatus::UNKNOWN_PATRON;
            reply.valid_patron = Some(false);
            reply.valid_patron_password = terminal.profile.pin_required.then_some(false);
            reply.screen_message.push(Cow::Borrowed("Your library card number cannot be found. Please see staff."));
            return Ok(reply);
        };
        let pin_ok = self.pin(terminal, &patron, &req.patron_password, now)?;
        // The PIN check may have locked the card: read the standing after it.
        let patron = self.reg.store.patron(patron.id)?;
        let today = now.to_zoned(TimeZone::get(&inst.timezone).unwrap_or(TimeZone::UTC)).date();
        let balance = self.reg.balance(patron.id)?;
        let standing = rules::standing(&patron, inst, self.reg.store.loan_count(patron.id), balance, today);
        reply.patron_status = status_flags(&standing);
        reply.personal_name = Cow::Owned(patron.display_name());
        reply.valid_patron = Some(true);
        reply.valid_patron_password = pin_ok;
        if balance.0 != 0 {
            reply.currency_type = Some(Cow::Owned(inst.currency.clone()));
            reply.fee_amount = Some(Cow::Owned(balance.to_string()));
        }
        if pin_ok == Some(false) {
            reply.screen_message.push(Cow::Borrowed("The PIN is not correct."));
        }
        if let Some(r) = standing.first_reason() {
            reply.screen_message.push(Cow::Owned(r.to_string()));
        }
        reply.screen_message.extend(patron.notes.iter().filter(|n| n.public).map(|n| Cow::Owned(n.text.clone())));
        Ok(reply)
    }
}

#[cfg(test)]
mod tests;
