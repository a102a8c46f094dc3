//! One kiosk connection's protocol state: login, error detection, resend and duplicate
//! replay, refusals before login. Frames in, reply bytes out; no sockets, no clock.

use bytes::{Bytes, BytesMut};
use jiff::Timestamp;

use super::words::{self, Phrase};
use super::{Service, Terminal, refusal, sip_date};
use crate::domain::profile::{Charset, ErrorDetection, LineEnd, Profile};
use crate::engine::{Error, RequestMark};
use crate::proto::{
    self, AcsStatus, Decoded, Deviations, Direction, Encoding, LoginResponse, Message, ParseErrorKind, ProtocolVersion,
    RequestScResend, Seal, Sequence, SipDate, Strictness, SupportedMessages, Terminator, Trailer, Zone, ZoneLetter,
};

/// How sessions treat logins and unreadable input (from the server's configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRules {
    /// Refused logins on one connection before it is closed (default 3).
    pub max_login_attempts: u32,
    /// Unreadable or unknown frames in a row before the connection is closed (default 5).
    pub max_unreadable: u32,
    /// Whether a 99 before login is answered (with what any terminal may do) rather than refused.
    pub sc_status_before_login: bool,
    /// How frames are read before login (the listener's `strictness`); after it, the
    /// terminal's profile decides.
    pub strictness: Strictness,
}

impl Default for SessionRules {
    fn default() -> SessionRules {
        SessionRules {
            max_login_attempts: 3,
            max_unreadable: 5,
            sc_status_before_login: false,
            strictness: Strictness::Lenient,
        }
    }
}

/// What became of one frame, for the request log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Served, and the reply says yes (ok 1, valid patron, payment accepted...).
    Ok,
    /// Served, and the reply says no, with a screen message.
    Refused,
    /// A 93 that was refused.
    LoginRefused,
    /// Refused because the terminal has not logged in.
    NotLoggedIn,
    /// Refused because the terminal's profile does not allow the message.
    NotAllowed,
    /// A 97: the last reply sent again.
    Resent,
    /// The same request again (same AY and AZ): the stored reply, nothing run twice.
    Duplicate,
    /// The checksum trailer is wrong or missing where required: answered 96.
    BadChecksum,
    /// A known message that could not be read: answered 96.
    Unreadable,
    /// A frame the lenient reader would have read, refused because the listener or profile
    /// is strict: answered 96, with the deviations in the log.
    Deviant,
    /// An unknown code, a response sent to us, or a line too short for a code: answered 96,
    /// so that no client waits for a reply that never comes.
    UnknownCode,
    /// A 96 sent to us: no reply (answering it with 96 could loop between two peers).
    Ignored,
    /// The store failed: the request's refusal ("could not complete"), then the connection
    /// is closed.
    Failed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Refused => "refused",
            Verdict::LoginRefused => "login-refused",
            Verdict::NotLoggedIn => "not-logged-in",
            Verdict::NotAllowed => "not-allowed",
            Verdict::Resent => "resent",
            Verdict::Duplicate => "duplicate",
            Verdict::BadChecksum => "bad-checksum",
            Verdict::Unreadable => "unreadable",
            Verdict::Deviant => "deviation-refused",
            Verdict::UnknownCode => "unknown-code",
            Verdict::Ignored => "ignored",
            Verdict::Failed => "failed",
        }
    }
}

/// What to do after one frame.
#[derive(Debug)]
pub struct Outcome {
    /// The request's command code, when it has one.
    pub code: Option<[u8; 2]>,
    /// The bytes to send, terminator included; `None` sends nothing.
    pub reply: Option<Bytes>,
    pub verdict: Verdict,
    /// Close the connection once the reply is sent.
    pub close: bool,
    /// The engine failure behind a [`Verdict::Failed`], for the log.
    pub failure: Option<Error>,
    /// What the lenient reader tolerated to read the frame (or, for [`Verdict::Deviant`],
    /// what it would have tolerated).
    pub deviations: Deviations,
}

impl Outcome {
    /// `reply` (or silence) for the request `code`, with no failure behind it; the frame's
    /// deviations are added by [`Session::on_frame`].
    fn new(code: Option<[u8; 2]>, reply: Option<Bytes>, verdict: Verdict, close: bool) -> Outcome {
        Outcome { code, reply, verdict, close, failure: None, deviations: Deviations::default() }
    }
}

/// A connection's protocol state.
#[derive(Debug)]
pub struct Session {
    rules: SessionRules,
    terminal: Option<Terminal>,
    failed_logins: u32,
    unreadable: u32,
    /// The exact bytes of the last reply, for 97 and duplicates.
    last_reply: Option<Bytes>,
    /// `(AY, AZ)` of the last request served, to recognise a retransmission.
    last_request: Option<(Sequence, u16)>,
    /// The address the terminal connects from, as its requests are marked for the register
    /// (empty when not known).
    peer: std::sync::Arc<str>,
}

/// The SIP2 2.00 request whose code is numerically nearest to `code` (the lower one on a tie),
/// for two-digit codes; 93, 97 and 99 are left out, as their replies refuse nothing.
pub fn nearest_request(code: [u8; 2]) -> Option<[u8; 2]> {
    let n = |c: [u8; 2]| -> Option<i32> {
        let [a, b] = c;
        (a.is_ascii_digit() && b.is_ascii_digit()).then(|| i32::from(a - b'0') * 10 + i32::from(b - b'0'))
    };
    let want = n(code)?;
    proto::ALL_MESSAGES
        .iter()
        .filter(|m| m.direction == Direction::ScToAcs && !matches!(&m.code, b"93" | b"97" | b"99"))
        .filter_map(|m| Some((n(m.code)?, m.code)))
        .min_by_key(|&(c, _)| ((c - want).abs(), c))
        .map(|(_, c)| c)
}

/// Whether a terminal with this profile may send this request code: its `messages` list,
/// and for 01 and 25 the permissions that govern them.
pub fn may_use(profile: &Profile, code: [u8; 2]) -> bool {
    profile.allows(code) && (code != *b"01" || profile.status_update) && (code != *b"25" || profile.patron_enable)
}

/// The 98 `BX` for this profile: exactly what it may use.
pub fn supported(profile: &Profile) -> SupportedMessages {
    let mut bx = SupportedMessages::default();
    for code in SupportedMessages::REQUEST_CODES {
        if let Some(flag) = SupportedMessages::for_request(*code).filter(|_| may_use(profile, *code)) {
            bx.insert(flag);
        }
    }
    bx
}

/// The card verified on the connection once `request` got `reply`: set by a right PIN (a 23
/// or 63 answered `CQY`, or a circulation request that carried a PIN and succeeded), dropped
/// by a wrong PIN for it or by an end of patron session (35).
fn verified_after(
    before: Option<std::sync::Arc<str>>,
    request: &Message<'_>,
    reply: &Message<'_>,
) -> Option<std::sync::Arc<str>> {
    let with_pin = |pin: Option<&proto::Secret<'_>>| pin.is_some_and(|p| !p.is_empty());
    // Only a request that carried a PIN says anything of it: a 63 without one (a kiosk paging
    // through the loans it just showed) leaves the verification as it was.
    let (card, right) = match (request, reply) {
        (Message::PatronStatusRequest(r), Message::PatronStatusResponse(a)) if with_pin(Some(&r.patron_password)) => {
            (&r.patron_identifier, a.valid_patron_password)
        }
        (Message::PatronInformation(r), Message::PatronInformationResponse(a))
            if with_pin(r.patron_password.as_ref()) =>
        {
            (&r.patron_identifier, a.valid_patron_password)
        }
        (Message::Checkout(r), Message::CheckoutResponse(a)) if with_pin(r.patron_password.as_ref()) => {
            (&r.patron_identifier, a.ok.then_some(true))
        }
        (Message::Renew(r), Message::RenewResponse(a)) if with_pin(r.patron_password.as_ref()) => {
            (&r.patron_identifier, a.ok.then_some(true))
        }
        (Message::EndPatronSession(_), _) => return None,
        _ => return before,
    };
    match right {
        // The same card again (a kiosk's every request) keeps what it had, without a copy.
        Some(true) if before.as_deref() == Some(card.as_ref()) => before,
        Some(true) => Some(std::sync::Arc::from(card.as_ref())),
        Some(false) if before.as_deref() == Some(card.as_ref()) => None,
        _ => before,
    }
}

/// `now` in UTC, for replies sent before a login names the institution and its zone.
fn utc_date(now: Timestamp) -> SipDate {
    let zone = ZoneLetter::new(b'Z').map_or(Zone::Local, Zone::Letter);
    super::sip_date_in(now, &jiff::tz::TimeZone::UTC, zone)
}

fn refused_login() -> Message<'static> {
    LoginResponse { ok: false, ..Default::default() }.into()
}

/// Whether a reply says yes.
fn says_yes(reply: &Message<'_>) -> bool {
    match reply {
        Message::LoginResponse(m) => m.ok,
        Message::AcsStatus(m) => m.online_status,
        Message::PatronStatusResponse(m) => m.valid_patron == Some(true) && m.valid_patron_password != Some(false),
        Message::PatronInformationResponse(m) => m.valid_patron == Some(true) && m.valid_patron_password != Some(false),
        Message::PatronEnableResponse(m) => m.valid_patron == Some(true) && m.screen_message.is_empty(),
        Message::CheckoutResponse(m) => m.ok,
        Message::CheckinResponse(m) => m.ok,
        Message::RenewResponse(m) => m.ok,
        Message::RenewAllResponse(m) => m.ok,
        Message::ItemInformationResponse(m) => m.screen_message.is_empty(),
        Message::ItemStatusUpdateResponse(m) => m.item_properties_ok,
        Message::EndSessionResponse(m) => m.end_session,
        Message::FeePaidResponse(m) => m.payment_accepted,
        Message::HoldResponse(m) => m.ok,
        _ => true,
    }
}

impl Session {
    pub fn new(rules: SessionRules) -> Session {
        Session {
            rules,
            terminal: None,
            failed_logins: 0,
            unreadable: 0,
            last_reply: None,
            last_request: None,
            peer: std::sync::Arc::from(""),
        }
    }

    /// This session, for a terminal connecting from `peer` (its IP address): a change it asks
    /// for is kept with its receipt under that address, so the same request sent again on
    /// another connection, or to another node, is answered from it and not run twice.
    pub fn from_address(self, peer: std::net::IpAddr) -> Session {
        Session { peer: std::sync::Arc::from(peer.to_string()), ..self }
    }

    /// The logged-in terminal, if any.
    pub fn terminal(&self) -> Option<&Terminal> {
        self.terminal.as_ref()
    }

    fn profile(&self) -> Option<&Profile> {
        self.terminal.as_ref().map(|t| &t.profile)
    }

    /// The language of the terminal's screen messages (English before login).
    fn language(&self) -> crate::domain::profile::Language {
        self.profile().map(|p| p.language).unwrap_or_default()
    }

    fn encoding(&self) -> Encoding {
        match self.profile().map(|p| p.charset) {
            Some(Charset::Cp850) => Encoding::Cp850,
            _ => Encoding::Utf8,
        }
    }

    fn terminator(&self) -> Terminator {
        match self.profile().map(|p| p.line_end) {
            Some(LineEnd::CrLf) => Terminator::CrLf,
            _ => Terminator::Cr,
        }
    }

    fn encode(&self, reply: &Message<'_>, seal: Seal) -> Bytes {
        let mut out = BytesMut::with_capacity(256);
        proto::encode_frame(reply, &mut out, self.encoding(), seal, self.terminator());
        out.freeze()
    }

    /// Answers 96 ("could not read that"), with a checksum when error detection is on. The
    /// duplicate-detection state is left alone; a 97 after it gets the 96 again.
    fn resend_please(&mut self, code: Option<[u8; 2]>, sealed: bool, verdict: Verdict) -> Outcome {
        self.unreadable += 1;
        let seal = if sealed { Seal::Checksum } else { Seal::None };
        let bytes = self.encode(&RequestScResend::default().into(), seal);
        self.last_reply = Some(bytes.clone());
        Outcome::new(code, Some(bytes), verdict, self.unreadable >= self.rules.max_unreadable)
    }

    /// How frames are read now: by the profile once logged in, by the listener before.
    fn strictness(&self) -> Strictness {
        match self.profile() {
            Some(p) if p.strict => Strictness::Strict,
            Some(_) => Strictness::Lenient,
            None => self.rules.strictness,
        }
    }

    /// Handles one frame (terminator removed) at `now`.
    pub async fn on_frame(&mut self, svc: &Service<'_>, frame: &[u8], now: Timestamp) -> Outcome {
        // A frame that follows the spec never touches `scratch` (and so never allocates).
        let mut scratch = BytesMut::new();
        let decoded = proto::decode_lenient(frame, self.encoding(), &mut scratch).only(Direction::ScToAcs);
        let deviations = decoded.deviations;
        let mut outcome = self.answer(svc, frame, decoded, now).await;
        outcome.deviations = deviations;
        outcome
    }

    async fn answer(&mut self, svc: &Service<'_>, frame: &[u8], decoded: Decoded<'_>, now: Timestamp) -> Outcome {
        let detection = self.profile().map_or(ErrorDetection::Auto, |p| p.error_detection);
        let code = frame.first_chunk::<2>().copied();
        let seal = match (detection, decoded.trailer) {
            (ErrorDetection::Off, _) => Seal::None,
            (_, Trailer::Present { valid: true, sequence: Some(s), .. }) => Seal::Sequenced(s),
            (_, Trailer::Present { valid: true, sequence: None, .. }) => Seal::Checksum,
            (_, Trailer::Present { valid: false, .. } | Trailer::Malformed(_)) => {
                return self.resend_please(code, true, Verdict::BadChecksum);
            }
            (ErrorDetection::Required, Trailer::Absent) => {
                return self.resend_please(code, true, Verdict::BadChecksum);
            }
            (ErrorDetection::Auto, Trailer::Absent) => Seal::None,
        };
        let request = match decoded.message {
            Ok(m) => m,
            Err(e) if e.is_unknown_command() && code == Some(*b"96") => {
                self.unreadable += 1;
                let close = self.unreadable >= self.rules.max_unreadable;
                return Outcome::new(code, None, Verdict::Ignored, close);
            }
            // Never silent: what we cannot serve gets the one "could not read that" SIP has, or
            // where the profile asks, the refusal of the nearest message.
            Err(e) if e.is_unknown_command() => {
                if let (ParseErrorKind::UnknownCommand(unknown), Some(t)) = (e.kind, &self.terminal) {
                    let nearest = nearest_request(unknown).and_then(Message::empty);
                    if let Some(request) = nearest.filter(|_| t.profile.unknown_code_refusal) {
                        let inst = &t.institution;
                        let why = words::phrase(Phrase::NotServed, t.profile.language);
                        let reply = refusal(&request, Some(&inst.code), sip_date(now, inst), why);
                        if let Some(reply) = reply {
                            self.unreadable += 1;
                            // A real message, not a 96: it echoes the request's AY like any reply.
                            let bytes = self.encode(&reply, seal);
                            self.last_reply = Some(bytes.clone());
                            return Outcome::new(
                                code,
                                Some(bytes),
                                Verdict::UnknownCode,
                                self.unreadable >= self.rules.max_unreadable,
                            );
                        }
                    }
                }
                return self.resend_please(code, seal != Seal::None, Verdict::UnknownCode);
            }
            Err(_) => return self.resend_please(code, seal != Seal::None, Verdict::Unreadable),
        };
        if !decoded.deviations.is_empty() && self.strictness() == Strictness::Strict {
            return self.resend_please(code, seal != Seal::None, Verdict::Deviant);
        }
        self.unreadable = 0;
        let code = Some(request.code());
        if let Message::RequestAcsResend(_) = request {
            let bytes = match &self.last_reply {
                Some(b) => b.clone(),
                None => {
                    let b = self.encode(
                        &RequestScResend::default().into(),
                        if seal == Seal::None { Seal::None } else { Seal::Checksum },
                    );
                    self.last_reply = Some(b.clone());
                    b
                }
            };
            return Outcome::new(code, Some(bytes), Verdict::Resent, false);
        }
        let id = match (seal, decoded.trailer) {
            (Seal::Sequenced(s), Trailer::Present { checksum, .. }) => Some((s, checksum)),
            _ => None,
        };
        if let (Some(id), Some(last)) = (id, &self.last_reply) {
            if self.last_request == Some(id) {
                return Outcome::new(code, Some(last.clone()), Verdict::Duplicate, false);
            }
        }
        // Sequenced requests are marked, so that the register knows one sent again on another
        // connection (the duplicate check above only knows this one's).
        if let Some(t) = self.terminal.as_mut() {
            t.request = id.map(|_| RequestMark::of(self.peer.clone(), frame));
        }
        let (reply, verdict, close) = match self.serve(svc, &request, now).await {
            Ok(served) => served,
            Err(e) => {
                // Never silence: the request's own refusal. It is not kept for 97 or duplicate
                // replay, so a retry on a new connection runs afresh.
                let (inst, date) = match &self.terminal {
                    Some(t) => (Some(t.institution.code.as_str()), sip_date(now, &t.institution)),
                    None => (None, utc_date(now)),
                };
                let why = words::phrase(Phrase::Unavailable, self.language());
                let reply = refusal(&request, inst, date, why).unwrap_or_else(refused_login);
                let bytes = self.encode(&reply, seal);
                self.last_reply = None;
                self.last_request = None;
                return Outcome { failure: Some(e), ..Outcome::new(code, Some(bytes), Verdict::Failed, true) };
            }
        };
        let bytes = self.encode(&reply, seal);
        self.last_reply = Some(bytes.clone());
        self.last_request = id;
        Outcome::new(code, Some(bytes), verdict, close)
    }

    /// Runs one readable request: the reply, its verdict, and whether to close afterwards.
    async fn serve(
        &mut self,
        svc: &Service<'_>,
        request: &Message<'_>,
        now: Timestamp,
    ) -> Result<(Message<'static>, Verdict, bool), Error> {
        if let Message::Login(login) = request {
            let (reply, terminal) = svc.login(login).await?;
            // A new login replaces the old one, and a refused one leaves the terminal logged out.
            self.terminal = terminal;
            if self.terminal.is_some() {
                self.failed_logins = 0;
                return Ok((reply.into(), Verdict::Ok, false));
            }
            self.failed_logins += 1;
            let close = self.failed_logins >= self.rules.max_login_attempts;
            return Ok((refused_login(), Verdict::LoginRefused, close));
        }
        let Some(terminal) = &self.terminal else {
            let date = utc_date(now);
            if let (Message::ScStatus(_), true) = (request, self.rules.sc_status_before_login) {
                let mut bx = SupportedMessages::default();
                for flag in [SupportedMessages::SC_ACS_STATUS, SupportedMessages::RESEND, SupportedMessages::LOGIN] {
                    bx.insert(flag);
                }
                let status = AcsStatus {
                    online_status: true,
                    timeout_period: 999,
                    retries_allowed: 3,
                    date_time_sync: date,
                    protocol_version: ProtocolVersion::V2_00,
                    supported_messages: bx,
                    ..Default::default()
                };
                return Ok((status.into(), Verdict::Ok, false));
            }
            let reply = refusal(request, None, date, words::phrase(Phrase::NotLoggedIn, self.language()));
            return Ok((reply.unwrap_or_else(refused_login), Verdict::NotLoggedIn, false));
        };
        let inst = &terminal.institution;
        if !may_use(&terminal.profile, request.code()) {
            let why = words::phrase(Phrase::MayNotUse, terminal.profile.language);
            let reply = refusal(request, Some(&inst.code), sip_date(now, inst), why);
            return Ok((reply.unwrap_or_else(refused_login), Verdict::NotAllowed, false));
        }
        let bx = supported(&terminal.profile);
        match svc.answer(terminal, request, bx, now).await? {
            Some(reply) => {
                let verdict = if says_yes(&reply) { Verdict::Ok } else { Verdict::Refused };
                if let Some(t) = self.terminal.as_mut() {
                    t.verified = verified_after(t.verified.take(), request, &reply);
                }
                Ok((reply, verdict, false))
            }
            None => {
                // Every request code reaches `answer`; this is only for safety.
                let why = words::phrase(Phrase::NotServed, terminal.profile.language);
                let reply = refusal(request, Some(&inst.code), sip_date(now, inst), why);
                Ok((reply.unwrap_or_else(refused_login), Verdict::Refused, false))
            }
        }
    }
}
