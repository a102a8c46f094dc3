//! One entry point for every request a logged-in terminal sends, and the refusal each
//! request gets when it may not be served.

use std::borrow::Cow;

use jiff::Timestamp;

use super::{Service, Terminal};
use crate::engine::Error;
use crate::proto::{
    AcsStatus, CheckinResponse, CheckoutResponse, CirculationStatus, Count, EndSessionResponse, FeePaidResponse,
    FeeType, HoldResponse, ItemInformationResponse, ItemStatusUpdateResponse, Message, PatronEnableResponse,
    PatronInformationResponse, PatronStatus, PatronStatusResponse, ProtocolVersion, RenewAllResponse, RenewResponse,
    SecurityMarker, SipDate, SupportedMessages, Tristate,
};

fn own(s: &str) -> Cow<'static, str> {
    Cow::Owned(s.to_string())
}

impl Service<'_> {
    /// Answers a request from a logged-in terminal. `None` for what is not a request this
    /// layer answers: 93 and 97 belong to the session, responses are never answered.
    pub async fn answer(
        &self,
        terminal: &Terminal,
        request: &Message<'_>,
        supported: SupportedMessages,
        now: Timestamp,
    ) -> Result<Option<Message<'static>>, Error> {
        Ok(Some(match request {
            Message::ScStatus(_) => self.sc_status(terminal, supported, now).into(),
            Message::PatronStatusRequest(r) => self.patron_status(terminal, r, now).await?.into(),
            Message::PatronInformation(r) => self.patron_information(terminal, r, now).await?.into(),
            Message::Checkout(r) => self.checkout(terminal, r, now).await?.into(),
            Message::Checkin(r) => self.checkin(terminal, r, now).await?.into(),
            Message::Renew(r) => self.renew(terminal, r, now).await?.into(),
            Message::RenewAll(r) => self.renew_all(terminal, r, now).await?.into(),
            Message::ItemInformation(r) => self.item_information(terminal, r, now).await?.into(),
            Message::ItemStatusUpdate(r) => self.item_status_update(terminal, r, now).await?.into(),
            Message::EndPatronSession(r) => self.end_session(terminal, r, now).into(),
            Message::FeePaid(r) => self.fee_paid(terminal, r, now).await?.into(),
            Message::Hold(r) => self.hold(terminal, r, now).await?.into(),
            Message::BlockPatron(r) => self.block_patron(terminal, r, now).await?.into(),
            Message::PatronEnable(r) => self.patron_enable(terminal, r, now).await?.into(),
            _ => return Ok(None),
        }))
    }
}

/// The reply a request gets when it may not be served (no login yet, or a message the
/// terminal may not use): the request's own response with ok 0 / valid patron N, its
/// identifiers echoed, and `why` as the screen message. `None` for 93 and 97, which always
/// get their own handling, and for anything that is not a request.
///
/// `institution` is the logged-in terminal's; before login the request's own `AO` is echoed.
pub fn refusal(request: &Message<'_>, institution: Option<&str>, date: SipDate, why: &str) -> Option<Message<'static>> {
    let screen = vec![own(why)];
    let inst = own(institution.unwrap_or_else(|| request_institution(request)));
    // A refusal says nothing about the patron: every privilege denied, unknown to us.
    let denied = PatronStatus::UNKNOWN_PATRON;
    Some(match request {
        Message::ScStatus(_) => AcsStatus {
            online_status: false,
            date_time_sync: date,
            protocol_version: ProtocolVersion::V2_00,
            institution_id: inst,
            supported_messages: SupportedMessages::from_wire("NNNNYYYNNNNNNNNN"),
            screen_message: screen,
            ..Default::default()
        }
        .into(),
        Message::PatronStatusRequest(r) => PatronStatusResponse {
            patron_status: denied,
            language: r.language,
            transaction_date: date,
            institution_id: inst,
            patron_identifier: own(&r.patron_identifier),
            valid_patron: Some(false),
            valid_patron_password: Some(false),
            screen_message: screen,
            ..Default::default()
        }
        .into(),
        Message::BlockPatron(r) => PatronStatusResponse {
            patron_status: denied,
            transaction_date: date,
            institution_id: inst,
            patron_identifier: own(&r.patron_identifier),
            valid_patron: Some(false),
            screen_message: screen,
            ..Default::default()
        }
        .into(),
        Message::PatronInformation(r) => PatronInformationResponse {
            patron_status: denied,
            language: r.language,
            transaction_date: date,
            hold_items_count: Count::new(0),
            overdue_items_count: Count::new(0),
            charged_items_count: Count::new(0),
            fine_items_count: Count::new(0),
            recall_items_count: Count::new(0),
            unavailable_holds_count: Count::new(0),
            institution_id: inst,
            patron_identifier: own(&r.patron_identifier),
            valid_patron: Some(false),
            valid_patron_password: r.patron_password.as_ref().map(|_| false),
            screen_message: screen,
            ..Default::default()
        }
        .into(),
        Message::Checkout(r) => CheckoutResponse {
            ok: false,
            renewal_ok: false,
            magnetic_media: Tristate::Unknown,
            desensitize: Tristate::No,
            transaction_date: date,
            institution_id: inst,
            patron_identifier: own(&r.patron_identifier),
            item_identifier: own(&r.item_identifier),
            screen_message: screen,
            ..Default::default()
        }
        .into(),
        Message::Checkin(r) => CheckinResponse {
            ok: false,
            resensitize: false,
            magnetic_media: Tristate::Unknown,
            alert: true,
            transaction_date: date,
            institution_id: inst,
            item_identifier: own(&r.item_identifier),
            screen_message: screen,
            ..Default::default()
        }
        .into(),
        Message::Renew(r) => RenewResponse {
            ok: false,
            renewal_ok: false,
            magnetic_media: Tristate::Unknown,
            desensitize: Tristate::No,
            transaction_date: date,
            institution_id: inst,
            patron_identifier: own(&r.patron_identifier),
            item_identifier: own(r.item_identifier.as_deref().unwrap_or("")),
            title_identifier: own(r.title_identifier.as_deref().unwrap_or("")),
            screen_message: screen,
            ..Default::default()
        }
        .into(),
        Message::RenewAll(_) => RenewAllResponse {
            ok: false,
            renewed_count: Count::new(0),
            unrenewed_count: Count::new(0),
            transaction_date: date,
            institution_id: inst,
            screen_message: screen,
            ..Default::default()
        }
        .into(),
        Message::ItemInformation(r) => ItemInformationResponse {
            circulation_status: CirculationStatus::Other,
            security_marker: SecurityMarker::None,
            fee_type: FeeType::OtherUnknown,
            transaction_date: date,
            item_identifier: own(&r.item_identifier),
            screen_message: screen,
            ..Default::default()
        }
        .into(),
        Message::ItemStatusUpdate(r) => ItemStatusUpdateResponse {
            item_properties_ok: false,
            transaction_date: date,
            item_identifier: own(&r.item_identifier),
            screen_message: screen,
            ..Default::default()
        }
        .into(),
        Message::EndPatronSession(r) => EndSessionResponse {
            end_session: false,
            transaction_date: date,
            institution_id: inst,
            patron_identifier: own(&r.patron_identifier),
            screen_message: screen,
            ..Default::default()
        }
        .into(),
        Message::FeePaid(r) => FeePaidResponse {
            payment_accepted: false,
            transaction_date: date,
            institution_id: inst,
            patron_identifier: own(&r.patron_identifier),
            screen_message: screen,
            ..Default::default()
        }
        .into(),
        Message::Hold(r) => HoldResponse {
            ok: false,
            available: false,
            transaction_date: date,
            institution_id: inst,
            patron_identifier: own(&r.patron_identifier),
            item_identifier: r.item_identifier.as_deref().map(own),
            title_identifier: r.title_identifier.as_deref().map(own),
            screen_message: screen,
            ..Default::default()
        }
        .into(),
        Message::PatronEnable(r) => PatronEnableResponse {
            patron_status: denied,
            transaction_date: date,
            institution_id: inst,
            patron_identifier: own(&r.patron_identifier),
            valid_patron: Some(false),
            screen_message: screen,
            ..Default::default()
        }
        .into(),
        _ => return None,
    })
}

/// The `AO` a request carries (empty for those without one).
fn request_institution<'m>(request: &'m Message<'_>) -> &'m str {
    match request {
        Message::PatronStatusRequest(r) => &r.institution_id,
        Message::PatronInformation(r) => &r.institution_id,
        Message::Checkout(r) => &r.institution_id,
        Message::Checkin(r) => &r.institution_id,
        Message::Renew(r) => &r.institution_id,
        Message::RenewAll(r) => &r.institution_id,
        Message::ItemInformation(r) => &r.institution_id,
        Message::ItemStatusUpdate(r) => &r.institution_id,
        Message::EndPatronSession(r) => &r.institution_id,
        Message::FeePaid(r) => &r.institution_id,
        Message::Hold(r) => &r.institution_id,
        Message::BlockPatron(r) => &r.institution_id,
        Message::PatronEnable(r) => &r.institution_id,
        _ => "",
    }
}
