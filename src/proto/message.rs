//! Every SIP2 2.00 message as a typed struct, generated from one table per message.
//!
//! Each table lists the fixed fields in wire order (name, type, codec, label) and the identified
//! fields (name, required / optional / repeated, type, codec, id, label). From it come the
//! struct, its parser, its encoder, a labelled description for tools, and an `Arbitrary` impl
//! for fuzzing. Text fields borrow from the frame when they can, so parsing allocates only for
//! repeated fields, unknown fields and non-UTF-8 text.

use std::borrow::Cow;
use std::fmt;

use bytes::{BufMut, BytesMut};

use super::codec::{FieldCodec, FixedCodec, FixedSlot, OneZero, RawValue, Text, YesNo};
use super::error::{ParseError, ParseErrorKind};
use super::grammar;
use super::text::Encoding;
use super::types::*;

/// Which way a message travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// A request, from the self-check kiosk to the server.
    ScToAcs,
    /// A response, from the server to the kiosk.
    AcsToSc,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::ScToAcs => "SC->ACS",
            Direction::AcsToSc => "ACS->SC",
        })
    }
}

const ORDER_CAP: usize = 32;
/// Marks, in the received order, the place of the next field kept in `extra`.
const EXTRA_MARK: u8 = u8::MAX;

/// How a parsed message arrived: the order of its identified fields and which were present.
///
/// Encoding follows the received order, so a message re-encodes as it came even when the sender
/// used an unusual field order. A message built in code has an empty `Meta` and is written in
/// the spec's order. `Meta` is presentation, not content: it compares equal to every other.
#[derive(Clone, Copy, Default)]
pub struct Meta {
    /// Field slots (positions in the message's table) in the order received.
    order: [u8; ORDER_CAP],
    len: u8,
    /// More fields arrived than `order` holds; the message is then written in the spec's order.
    overflow: bool,
    parsed: bool,
    present: u32,
}

impl PartialEq for Meta {
    fn eq(&self, _other: &Meta) -> bool {
        true
    }
}

impl fmt::Debug for Meta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Meta")
    }
}

impl Meta {
    fn record(&mut self, slot: u8) {
        match self.order.get_mut(usize::from(self.len)) {
            Some(entry) => {
                *entry = slot;
                self.len += 1;
            }
            None => self.overflow = true,
        }
    }

    /// The received order to follow when encoding, given how many absent required fields the
    /// encoder will add. Empty (the spec's order) when the record is incomplete or would be on
    /// re-parsing: that way encoding, parsing and encoding again always give the same bytes.
    fn order_for_encoding(&self, added: u32) -> &[u8] {
        let fits = usize::from(self.len) + added as usize <= ORDER_CAP;
        if self.overflow || !fits { &[] } else { self.order.get(..usize::from(self.len)).unwrap_or_default() }
    }

    /// Forgets the received order, so the message is written in the spec's order.
    pub fn reset(&mut self) {
        *self = Meta::default();
    }
}

/// One line of a message's description, for tools.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldView {
    /// The field id; `None` for fixed fields.
    pub id: Option<[u8; 2]>,
    /// What the field is.
    pub label: &'static str,
    /// The value, rendered for people (secrets hidden).
    pub value: String,
}

fn is_tail(id: &[u8; 2]) -> bool {
    id == b"AF" || id == b"AG"
}

fn extra_label(known: &[[u8; 2]], id: &[u8; 2]) -> &'static str {
    if known.contains(id) { "repeated field (first one used)" } else { "field not defined for this message" }
}

/// The whole body as text when it is valid in `encoding` (almost always): fields then borrow
/// their text from it without being checked one by one.
fn valid_text(body: &[u8], encoding: Encoding) -> Option<&str> {
    super::text::ascii_str(body).or_else(|| match encoding {
        Encoding::Utf8 => std::str::from_utf8(body).ok(),
        Encoding::Cp850 => None,
    })
}

/// The offset of the first NUL, which the spec forbids anywhere. A min-fold vectorises; the
/// position is looked for only in the rare case that there is one.
#[inline]
fn find_nul(body: &[u8]) -> Option<usize> {
    if body.iter().fold(u8::MAX, |m, &b| m.min(b)) == 0 { body.iter().position(|&b| b == 0) } else { None }
}

/// Writes an unknown or repeated field as one field, cut at 255 bytes like any value. (Only
/// fields the message defines as screen or print lines continue in further fields: splitting an
/// unknown one would add fields, and the message would not re-encode the same.)
fn write_extra(field: &RawField<'_>, out: &mut BytesMut, encoding: Encoding) {
    out.put_slice(&field.id);
    super::text::write_value(&field.value, encoding, out);
    out.put_u8(b'|');
}

#[cfg(any(test, feature = "arbitrary"))]
fn arbitrary_extra(
    u: &mut arbitrary::Unstructured<'_>,
    known: &[[u8; 2]],
) -> arbitrary::Result<Vec<RawField<'static>>> {
    const POOL: [[u8; 2]; 5] = [*b"XI", *b"ZZ", *b"ZY", *b"PZ", *b"U1"];
    let n = u.int_in_range(0..=2)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let id = *u.choose(&POOL)?;
        if !known.contains(&id) {
            out.push(RawField { id, value: Cow::Owned(super::codec::arb::text(u)?) });
        }
    }
    Ok(out)
}

macro_rules! pick_codec {
    ($codec:ty; $ty:ty) => {
        $codec
    };
    (; $ty:ty) => {
        $ty
    };
}

macro_rules! kind_ty {
    (req, $t:ty) => { $t };
    (opt, $t:ty) => { Option<$t> };
    (rep, $t:ty) => { Vec<$t> };
}

macro_rules! kind_is_required {
    (req) => {
        true
    };
    (opt) => {
        false
    };
    (rep) => {
        false
    };
}

macro_rules! store {
    (req, $slot:expr, $v:expr) => {
        $slot = $v
    };
    (opt, $slot:expr, $v:expr) => {
        $slot = Some($v)
    };
    (rep, $slot:expr, $v:expr) => {
        $slot.push($v)
    };
}

macro_rules! kind_repeats {
    (rep) => {
        true
    };
    ($other:ident) => {
        false
    };
}

macro_rules! emit {
    (req, $v:expr, $codec:ty, $id:expr, $out:ident, $enc:ident) => {
        <$codec as FieldCodec<'_>>::write_field($id, &$v, $out, $enc)
    };
    (opt, $v:expr, $codec:ty, $id:expr, $out:ident, $enc:ident) => {
        if let Some(v) = &$v {
            <$codec as FieldCodec<'_>>::write_field($id, v, $out, $enc)
        }
    };
    (rep, $v:expr, $codec:ty, $id:expr, $out:ident, $enc:ident) => {
        for v in &$v {
            <$codec as FieldCodec<'_>>::write_field($id, v, $out, $enc)
        }
    };
}

macro_rules! view {
    (req, $v:expr, $codec:ty, $id:expr, $label:expr, $views:ident) => {
        $views.push(FieldView { id: Some(*$id), label: $label, value: <$codec as FieldCodec<'_>>::show(&$v) })
    };
    (opt, $v:expr, $codec:ty, $id:expr, $label:expr, $views:ident) => {
        if let Some(v) = &$v {
            $views.push(FieldView { id: Some(*$id), label: $label, value: <$codec as FieldCodec<'_>>::show(v) })
        }
    };
    (rep, $v:expr, $codec:ty, $id:expr, $label:expr, $views:ident) => {
        for v in &$v {
            $views.push(FieldView { id: Some(*$id), label: $label, value: <$codec as FieldCodec<'_>>::show(v) })
        }
    };
}

#[cfg(any(test, feature = "arbitrary"))]
macro_rules! arbitrary_value {
    (req, $codec:ty, $u:ident) => {
        <$codec as FieldCodec<'_>>::arbitrary($u)?
    };
    (opt, $codec:ty, $u:ident) => {
        if $u.arbitrary::<bool>()? { Some(<$codec as FieldCodec<'_>>::arbitrary($u)?) } else { None }
    };
    (rep, $codec:ty, $u:ident) => {{
        let n = $u.int_in_range(0..=3usize)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(<$codec as FieldCodec<'_>>::arbitrary($u)?);
        }
        v
    }};
}

macro_rules! sip_message {
    (
        $(#[$doc:meta])*
        $name:ident = $code:literal, $label:literal, $dir:ident;
        fixed { $( $fname:ident : $fty:ty $(as $fcodec:ty)? => $flabel:literal ),* $(,)? }
        fields { $( $vname:ident : $kind:ident $vty:ty $(as $vcodec:ty)? = $vid:literal => $vlabel:literal ),* $(,)? }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq)]
        pub struct $name<'a> {
            $( #[doc = concat!("Fixed: ", $flabel, ".")] pub $fname: $fty, )*
            $( #[doc = concat!("`", stringify!($vid), "` ", $vlabel, ".")] pub $vname: kind_ty!($kind, $vty), )*
            /// Fields this message does not define, and repeats of fields that may appear once.
            pub extra: Vec<RawField<'a>>,
            /// How the message arrived (field order); ignored by `==`.
            pub meta: Meta,
        }

        impl<'a> $name<'a> {
            /// The command code.
            pub const CODE: [u8; 2] = *$code;
            /// The message's name in the spec.
            pub const NAME: &'static str = $label;
            /// Which way it travels.
            pub const DIRECTION: Direction = Direction::$dir;
            /// Length of the command code and the fixed part.
            pub const FIXED_LEN: usize = 2 $( + <pick_codec!($($fcodec)?; $fty) as FixedCodec>::WIDTH )*;
            const FIELD_IDS: &'static [[u8; 2]] = &[ $( *$vid ),* ];
            /// The fixed fields, for the lenient reader.
            pub const FIXED_SLOTS: &'static [FixedSlot] = &[ $( FixedSlot {
                shape: <pick_codec!($($fcodec)?; $fty) as FixedCodec>::SHAPE,
                width: <pick_codec!($($fcodec)?; $fty) as FixedCodec>::WIDTH,
                fill: |out| <pick_codec!($($fcodec)?; $fty) as FixedCodec>::write(&Default::default(), out),
            } ),* ];
            /// The identified fields' ids, each with whether it holds a date.
            pub const FIELDS: &'static [([u8; 2], bool)] = &[ $( (*$vid, <pick_codec!($($vcodec)?; $vty) as FieldCodec<'a>>::IS_DATE) ),* ];
            // `Meta` keeps one bit per field in a u32 and EXTRA_MARK must not be a slot.
            const _FITS: () = assert!(Self::FIELD_IDS.len() <= 32);

            /// Parses a message body (a frame without its trailer) that starts with this code.
            pub fn parse(body: &'a [u8], encoding: Encoding) -> Result<Self, ParseError> {
                #[allow(non_camel_case_types, dead_code, clippy::enum_variant_names)]
                enum Slot { $( $vname, )* }

                #[allow(clippy::let_unit_value)]
                let () = Self::_FITS;
                if body.len() < Self::FIXED_LEN {
                    return Err(ParseError::new(body.len(), ParseErrorKind::TooShort { needed: Self::FIXED_LEN, got: body.len() }));
                }
                #[allow(unused_mut)]
                let (mut rest, _) = grammar::command_code(body).map_err(|_| ParseError::new(0, ParseErrorKind::NoCommand))?;
                #[allow(unused_mut)]
                let mut offset = 2usize;
                $(
                    let $fname = {
                        type C = pick_codec!($($fcodec)?; $fty);
                        let (next, raw) = grammar::fixed_field(rest, <C as FixedCodec>::WIDTH)
                            .map_err(|_| ParseError::new(offset, ParseErrorKind::TooShort { needed: Self::FIXED_LEN, got: body.len() }))?;
                        if !raw.is_ascii() {
                            let i = raw.iter().position(|b| !b.is_ascii()).unwrap_or(0);
                            return Err(ParseError::new(offset + i, ParseErrorKind::NonAsciiFixed { field: $flabel }));
                        }
                        let value = <C as FixedCodec>::read(raw)
                            .ok_or_else(|| ParseError::new(offset, ParseErrorKind::InvalidFixed { field: $flabel, expects: <C as FixedCodec>::EXPECTS }))?;
                        rest = next;
                        offset += <C as FixedCodec>::WIDTH;
                        value
                    };
                )*

                let mut msg = $name { $( $fname, )* ..Default::default() };
                msg.meta.parsed = true;
                let body_text = valid_text(body, encoding);
                for field in grammar::identified_fields(rest, offset) {
                    let value_at = field.offset + 2;
                    let raw = RawValue {
                        bytes: field.value,
                        text: body_text.and_then(|t| t.get(value_at..value_at + field.value.len())),
                    };
                    match &field.id {
                        $(
                            $vid => {
                                let bit = 1u32 << (Slot::$vname as u32);
                                if msg.meta.present & bit != 0 && !kind_repeats!($kind) {
                                    msg.extra.push(RawField { id: field.id, value: raw.decode(encoding) });
                                    msg.meta.record(EXTRA_MARK);
                                    continue;
                                }
                                let value = <pick_codec!($($vcodec)?; $vty) as FieldCodec<'a>>::read(raw, encoding)
                                    .ok_or_else(|| ParseError::new(
                                        field.offset,
                                        ParseErrorKind::InvalidField {
                                            id: field.id,
                                            expects: <pick_codec!($($vcodec)?; $vty) as FieldCodec<'a>>::EXPECTS,
                                        },
                                    ))?;
                                store!($kind, msg.$vname, value);
                                if msg.meta.present & bit == 0 {
                                    msg.meta.present |= bit;
                                    msg.meta.record(Slot::$vname as u8);
                                }
                            }
                        )*
                        _ => {
                            msg.extra.push(RawField { id: field.id, value: raw.decode(encoding) });
                            msg.meta.record(EXTRA_MARK);
                        }
                    }
                }
                Ok(msg)
            }

            /// Appends the message (code, fixed part, fields; no trailer, no terminator) to `out`.
            pub fn encode(&self, out: &mut BytesMut, encoding: Encoding) {
                #[allow(non_camel_case_types, dead_code, clippy::enum_variant_names)]
                enum Slot { $( $vname, )* }

                out.put_slice(&Self::CODE);
                $( <pick_codec!($($fcodec)?; $fty) as FixedCodec>::write(&self.$fname, out); )*

                // Fields in the order they arrived, then the rest in the spec's order with
                // unknown fields before the screen and print lines.
                #[allow(unused_mut, unused_variables)]
                let mut done = 0u32;
                let mut extras = self.extra.iter();
                // Required fields the sender left out are written too; count them, since they
                // become part of the order when the output is parsed again.
                #[allow(unused_mut)]
                let mut required = 0u32;
                $( if kind_is_required!($kind) { required |= 1u32 << (Slot::$vname as u32); } )*
                let added = if self.meta.parsed { (required & !self.meta.present).count_ones() } else { 0 };
                for &slot in self.meta.order_for_encoding(added) {
                    let Some(id) = Self::FIELD_IDS.get(usize::from(slot)) else {
                        // EXTRA_MARK: the next unknown or repeated field goes here.
                        if let Some(x) = extras.next() {
                            write_extra(x, out, encoding);
                        }
                        continue;
                    };
                    match id {
                        $( $vid => {
                            done |= 1u32 << (Slot::$vname as u32);
                            emit!($kind, self.$vname, pick_codec!($($vcodec)?; $vty), $vid, out, encoding);
                        } )*
                        _ => {}
                    }
                }
                $(
                    if !is_tail($vid) && done & (1u32 << (Slot::$vname as u32)) == 0 {
                        emit!($kind, self.$vname, pick_codec!($($vcodec)?; $vty), $vid, out, encoding);
                    }
                )*
                for x in extras {
                    write_extra(x, out, encoding);
                }
                $(
                    if is_tail($vid) && done & (1u32 << (Slot::$vname as u32)) == 0 {
                        emit!($kind, self.$vname, pick_codec!($($vcodec)?; $vty), $vid, out, encoding);
                    }
                )*
            }

            /// Every field with its label and a readable value, fixed fields first.
            pub fn describe(&self) -> Vec<FieldView> {
                #[allow(unused_mut)]
                let mut views = vec![
                    $( FieldView { id: None, label: $flabel, value: <pick_codec!($($fcodec)?; $fty) as FixedCodec>::show(&self.$fname) }, )*
                ];
                $( view!($kind, self.$vname, pick_codec!($($vcodec)?; $vty), $vid, $vlabel, views); )*
                for x in &self.extra {
                    let value = if is_secret_id(&x.id) { "(hidden)".to_string() } else { x.value.to_string() };
                    views.push(FieldView { id: Some(x.id), label: extra_label(Self::FIELD_IDS, &x.id), value });
                }
                views
            }

            /// For a parsed message: the required fields that were absent (their values were
            /// left empty). Empty for a message built in code.
            pub fn missing_required(&self) -> Vec<[u8; 2]> {
                #[allow(non_camel_case_types, dead_code, clippy::enum_variant_names)]
                enum Slot { $( $vname, )* }
                #[allow(unused_mut)]
                let mut missing = Vec::new();
                if self.meta.parsed {
                    $(
                        if kind_is_required!($kind) && self.meta.present & (1u32 << (Slot::$vname as u32)) == 0 {
                            missing.push(*$vid);
                        }
                    )*
                }
                missing
            }

            /// False when a fixed field parsed only leniently (an impossible date, say).
            pub fn is_plausible(&self) -> bool {
                true $( && <pick_codec!($($fcodec)?; $fty) as FixedCodec>::plausible(&self.$fname) )*
            }

            /// Whether every required field arrived ([`missing_required`](Self::missing_required)
            /// is empty), without building the list.
            pub fn has_required(&self) -> bool {
                #[allow(non_camel_case_types, dead_code, clippy::enum_variant_names)]
                enum Slot { $( $vname, )* }
                #[allow(unused_mut)]
                let mut required = 0u32;
                $( if kind_is_required!($kind) { required |= 1u32 << (Slot::$vname as u32); } )*
                !self.meta.parsed || self.meta.present & required == required
            }
        }

        #[cfg(any(test, feature = "arbitrary"))]
        impl<'a> arbitrary::Arbitrary<'a> for $name<'a> {
            #[allow(unused_variables)]
            fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
                Ok($name {
                    $( $fname: <pick_codec!($($fcodec)?; $fty) as FixedCodec>::arbitrary(u)?, )*
                    $( $vname: arbitrary_value!($kind, pick_codec!($($vcodec)?; $vty), u), )*
                    extra: arbitrary_extra(u, Self::FIELD_IDS)?,
                    meta: Meta::default(),
                })
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// The messages (docs/protocol.md section 3).

sip_message! {
    /// 93 Login: the kiosk authenticates with its self-check account.
    Login = b"93", "Login", ScToAcs;
    fixed {
        uid_algorithm: Algorithm => "UID algorithm",
        pwd_algorithm: Algorithm => "PWD algorithm",
    }
    fields {
        login_user_id: req Cow<'a, str> as Text = b"CN" => "login user id",
        login_password: req Secret<'a> = b"CO" => "login password",
        location_code: opt Cow<'a, str> as Text = b"CP" => "location code",
    }
}

sip_message! {
    /// 94 Login Response.
    LoginResponse = b"94", "Login Response", AcsToSc;
    fixed { ok: bool as OneZero => "ok" }
    fields {}
}

sip_message! {
    /// 99 SC Status: the kiosk reports its state and asks for the server's.
    ScStatus = b"99", "SC Status", ScToAcs;
    fixed {
        status_code: ScStatusCode => "status code",
        max_print_width: u16 as super::codec::Number3 => "max print width",
        protocol_version: ProtocolVersion => "protocol version",
    }
    fields {}
}

sip_message! {
    /// 98 ACS Status: what the server allows this kiosk to do.
    AcsStatus = b"98", "ACS Status", AcsToSc;
    fixed {
        online_status: bool as YesNo => "on-line status",
        checkin_ok: bool as YesNo => "checkin ok",
        checkout_ok: bool as YesNo => "checkout ok",
        acs_renewal_policy: bool as YesNo => "ACS renewal policy",
        status_update_ok: bool as YesNo => "status update ok",
        offline_ok: bool as YesNo => "off-line ok",
        timeout_period: u16 as super::codec::Number3 => "timeout period",
        retries_allowed: u16 as super::codec::Number3 => "retries allowed",
        date_time_sync: SipDate => "date / time sync",
        protocol_version: ProtocolVersion => "protocol version",
    }
    fields {
        institution_id: req Cow<'a, str> as Text = b"AO" => "institution id",
        library_name: opt Cow<'a, str> as Text = b"AM" => "library name",
        supported_messages: req SupportedMessages = b"BX" => "supported messages",
        terminal_location: opt Cow<'a, str> as Text = b"AN" => "terminal location",
        screen_message: rep Cow<'a, str> as Text = b"AF" => "screen message",
        print_line: rep Cow<'a, str> as Text = b"AG" => "print line",
    }
}

sip_message! {
    /// 97 Request ACS Resend: the kiosk asks for the last response again.
    RequestAcsResend = b"97", "Request ACS Resend", ScToAcs;
    fixed {}
    fields {}
}

sip_message! {
    /// 96 Request SC Resend: the server could not read the last request.
    RequestScResend = b"96", "Request SC Resend", AcsToSc;
    fixed {}
    fields {}
}

sip_message! {
    /// 23 Patron Status Request.
    PatronStatusRequest = b"23", "Patron Status Request", ScToAcs;
    fixed {
        language: Language => "language",
        transaction_date: SipDate => "transaction date",
    }
    fields {
        institution_id: req Cow<'a, str> as Text = b"AO" => "institution id",
        patron_identifier: req Cow<'a, str> as Text = b"AA" => "patron identifier",
        terminal_password: req Secret<'a> = b"AC" => "terminal password",
        patron_password: req Secret<'a> = b"AD" => "patron password",
    }
}

sip_message! {
    /// 24 Patron Status Response (also the answer to 01 Block Patron).
    PatronStatusResponse = b"24", "Patron Status Response", AcsToSc;
    fixed {
        patron_status: PatronStatus => "patron status",
        language: Language => "language",
        transaction_date: SipDate => "transaction date",
    }
    fields {
        institution_id: req Cow<'a, str> as Text = b"AO" => "institution id",
        patron_identifier: req Cow<'a, str> as Text = b"AA" => "patron identifier",
        personal_name: req Cow<'a, str> as Text = b"AE" => "personal name",
        valid_patron: opt bool as YesNo = b"BL" => "valid patron",
        valid_patron_password: opt bool as YesNo = b"CQ" => "valid patron password",
        currency_type: opt Cow<'a, str> as Text = b"BH" => "currency type",
        fee_amount: opt Cow<'a, str> as Text = b"BV" => "fee amount",
        screen_message: rep Cow<'a, str> as Text = b"AF" => "screen message",
        print_line: rep Cow<'a, str> as Text = b"AG" => "print line",
    }
}

sip_message! {
    /// 63 Patron Information: status plus counts and, optionally, one item list.
    PatronInformation = b"63", "Patron Information", ScToAcs;
    fixed {
        language: Language => "language",
        transaction_date: SipDate => "transaction date",
        summary: Summary => "summary",
    }
    fields {
        institution_id: req Cow<'a, str> as Text = b"AO" => "institution id",
        patron_identifier: req Cow<'a, str> as Text = b"AA" => "patron identifier",
        terminal_password: opt Secret<'a> = b"AC" => "terminal password",
        patron_password: opt Secret<'a> = b"AD" => "patron password",
        start_item: opt Cow<'a, str> as Text = b"BP" => "start item",
        end_item: opt Cow<'a, str> as Text = b"BQ" => "end item",
    }
}

impl PatronInformation<'_> {
    /// The 1-based window `BP..=BQ` of the selected list; a bound that is not a number is
    /// ignored (docs/protocol.md section 3.5).
    pub fn item_window(&self) -> (Option<u32>, Option<u32>) {
        let num = |v: &Option<Cow<'_, str>>| v.as_deref().and_then(|s| s.trim().parse::<u32>().ok());
        (num(&self.start_item), num(&self.end_item))
    }
}

sip_message! {
    /// 64 Patron Information Response.
    PatronInformationResponse = b"64", "Patron Information Response", AcsToSc;
    fixed {
        patron_status: PatronStatus => "patron status",
        language: Language => "language",
        transaction_date: SipDate => "transaction date",
        hold_items_count: Count => "hold items count",
        overdue_items_count: Count => "overdue items count",
        charged_items_count: Count => "charged items count",
        fine_items_count: Count => "fine items count",
        recall_items_count: Count => "recall items count",
        unavailable_holds_count: Count => "unavailable holds count",
    }
    fields {
        institution_id: req Cow<'a, str> as Text = b"AO" => "institution id",
        patron_identifier: req Cow<'a, str> as Text = b"AA" => "patron identifier",
        personal_name: req Cow<'a, str> as Text = b"AE" => "personal name",
        hold_items_limit: opt Cow<'a, str> as Text = b"BZ" => "hold items limit",
        overdue_items_limit: opt Cow<'a, str> as Text = b"CA" => "overdue items limit",
        charged_items_limit: opt Cow<'a, str> as Text = b"CB" => "charged items limit",
        valid_patron: opt bool as YesNo = b"BL" => "valid patron",
        valid_patron_password: opt bool as YesNo = b"CQ" => "valid patron password",
        currency_type: opt Cow<'a, str> as Text = b"BH" => "currency type",
        fee_amount: opt Cow<'a, str> as Text = b"BV" => "fee amount",
        fee_limit: opt Cow<'a, str> as Text = b"CC" => "fee limit",
        hold_items: rep Cow<'a, str> as Text = b"AS" => "hold item",
        overdue_items: rep Cow<'a, str> as Text = b"AT" => "overdue item",
        charged_items: rep Cow<'a, str> as Text = b"AU" => "charged item",
        fine_items: rep Cow<'a, str> as Text = b"AV" => "fine item",
        recall_items: rep Cow<'a, str> as Text = b"BU" => "recall item",
        unavailable_hold_items: rep Cow<'a, str> as Text = b"CD" => "unavailable hold item",
        home_address: opt Cow<'a, str> as Text = b"BD" => "home address",
        email_address: opt Cow<'a, str> as Text = b"BE" => "e-mail address",
        home_phone_number: opt Cow<'a, str> as Text = b"BF" => "home phone number",
        screen_message: rep Cow<'a, str> as Text = b"AF" => "screen message",
        print_line: rep Cow<'a, str> as Text = b"AG" => "print line",
    }
}

sip_message! {
    /// 11 Checkout: lend an item to a patron.
    Checkout = b"11", "Checkout", ScToAcs;
    fixed {
        sc_renewal_policy: bool as YesNo => "SC renewal policy",
        no_block: bool as YesNo => "no block",
        transaction_date: SipDate => "transaction date",
        nb_due_date: SipDate => "nb due date",
    }
    fields {
        institution_id: req Cow<'a, str> as Text = b"AO" => "institution id",
        patron_identifier: req Cow<'a, str> as Text = b"AA" => "patron identifier",
        item_identifier: req Cow<'a, str> as Text = b"AB" => "item identifier",
        terminal_password: req Secret<'a> = b"AC" => "terminal password",
        item_properties: opt Cow<'a, str> as Text = b"CH" => "item properties",
        patron_password: opt Secret<'a> = b"AD" => "patron password",
        fee_acknowledged: opt bool as YesNo = b"BO" => "fee acknowledged",
        cancel: opt bool as YesNo = b"BI" => "cancel",
    }
}

sip_message! {
    /// 12 Checkout Response.
    CheckoutResponse = b"12", "Checkout Response", AcsToSc;
    fixed {
        ok: bool as OneZero => "ok",
        renewal_ok: bool as YesNo => "renewal ok",
        magnetic_media: Tristate => "magnetic media",
        desensitize: Tristate => "desensitize",
        transaction_date: SipDate => "transaction date",
    }
    fields {
        institution_id: req Cow<'a, str> as Text = b"AO" => "institution id",
        patron_identifier: req Cow<'a, str> as Text = b"AA" => "patron identifier",
        item_identifier: req Cow<'a, str> as Text = b"AB" => "item identifier",
        title_identifier: req Cow<'a, str> as Text = b"AJ" => "title identifier",
        due_date: req Cow<'a, str> as Text = b"AH" => "due date",
        fee_type: opt FeeType = b"BT" => "fee type",
        security_inhibit: opt bool as YesNo = b"CI" => "security inhibit",
        currency_type: opt Cow<'a, str> as Text = b"BH" => "currency type",
        fee_amount: opt Cow<'a, str> as Text = b"BV" => "fee amount",
        media_type: opt MediaType = b"CK" => "media type",
        item_properties: opt Cow<'a, str> as Text = b"CH" => "item properties",
        transaction_id: opt Cow<'a, str> as Text = b"BK" => "transaction id",
        screen_message: rep Cow<'a, str> as Text = b"AF" => "screen message",
        print_line: rep Cow<'a, str> as Text = b"AG" => "print line",
    }
}

sip_message! {
    /// 09 Checkin: an item comes back.
    Checkin = b"09", "Checkin", ScToAcs;
    fixed {
        no_block: bool as YesNo => "no block",
        transaction_date: SipDate => "transaction date",
        return_date: SipDate => "return date",
    }
    fields {
        current_location: req Cow<'a, str> as Text = b"AP" => "current location",
        institution_id: req Cow<'a, str> as Text = b"AO" => "institution id",
        item_identifier: req Cow<'a, str> as Text = b"AB" => "item identifier",
        terminal_password: req Secret<'a> = b"AC" => "terminal password",
        item_properties: opt Cow<'a, str> as Text = b"CH" => "item properties",
        cancel: opt bool as YesNo = b"BI" => "cancel",
    }
}

sip_message! {
    /// 10 Checkin Response, with the 3M sorting extensions.
    CheckinResponse = b"10", "Checkin Response", AcsToSc;
    fixed {
        ok: bool as OneZero => "ok",
        resensitize: bool as YesNo => "resensitize",
        magnetic_media: Tristate => "magnetic media",
        alert: bool as YesNo => "alert",
        transaction_date: SipDate => "transaction date",
    }
    fields {
        institution_id: req Cow<'a, str> as Text = b"AO" => "institution id",
        item_identifier: req Cow<'a, str> as Text = b"AB" => "item identifier",
        permanent_location: req Cow<'a, str> as Text = b"AQ" => "permanent location",
        title_identifier: opt Cow<'a, str> as Text = b"AJ" => "title identifier",
        sort_bin: opt Cow<'a, str> as Text = b"CL" => "sort bin",
        patron_identifier: opt Cow<'a, str> as Text = b"AA" => "patron identifier",
        media_type: opt MediaType = b"CK" => "media type",
        item_properties: opt Cow<'a, str> as Text = b"CH" => "item properties",
        collection_code: opt Cow<'a, str> as Text = b"CR" => "collection code (3M extension)",
        call_number: opt Cow<'a, str> as Text = b"CS" => "call number (3M extension)",
        destination_location: opt Cow<'a, str> as Text = b"CT" => "destination location (3M extension)",
        alert_type: opt AlertType = b"CV" => "alert type (3M extension)",
        hold_patron_id: opt Cow<'a, str> as Text = b"CY" => "hold patron id (3M extension)",
        hold_patron_name: opt Cow<'a, str> as Text = b"DA" => "hold patron name (3M extension)",
        screen_message: rep Cow<'a, str> as Text = b"AF" => "screen message",
        print_line: rep Cow<'a, str> as Text = b"AG" => "print line",
    }
}

sip_message! {
    /// 29 Renew one item.
    Renew = b"29", "Renew", ScToAcs;
    fixed {
        third_party_allowed: bool as YesNo => "third party allowed",
        no_block: bool as YesNo => "no block",
        transaction_date: SipDate => "transaction date",
        nb_due_date: SipDate => "nb due date",
    }
    fields {
        institution_id: req Cow<'a, str> as Text = b"AO" => "institution id",
        patron_identifier: req Cow<'a, str> as Text = b"AA" => "patron identifier",
        patron_password: opt Secret<'a> = b"AD" => "patron password",
        item_identifier: opt Cow<'a, str> as Text = b"AB" => "item identifier",
        title_identifier: opt Cow<'a, str> as Text = b"AJ" => "title identifier",
        terminal_password: opt Secret<'a> = b"AC" => "terminal password",
        item_properties: opt Cow<'a, str> as Text = b"CH" => "item properties",
        fee_acknowledged: opt bool as YesNo = b"BO" => "fee acknowledged",
    }
}

sip_message! {
    /// 30 Renew Response (the layout of 12).
    RenewResponse = b"30", "Renew Response", AcsToSc;
    fixed {
        ok: bool as OneZero => "ok",
        renewal_ok: bool as YesNo => "renewal ok",
        magnetic_media: Tristate => "magnetic media",
        desensitize: Tristate => "desensitize",
        transaction_date: SipDate => "transaction date",
    }
    fields {
        institution_id: req Cow<'a, str> as Text = b"AO" => "institution id",
        patron_identifier: req Cow<'a, str> as Text = b"AA" => "patron identifier",
        item_identifier: req Cow<'a, str> as Text = b"AB" => "item identifier",
        title_identifier: req Cow<'a, str> as Text = b"AJ" => "title identifier",
        due_date: req Cow<'a, str> as Text = b"AH" => "due date",
        fee_type: opt FeeType = b"BT" => "fee type",
        security_inhibit: opt bool as YesNo = b"CI" => "security inhibit",
        currency_type: opt Cow<'a, str> as Text = b"BH" => "currency type",
        fee_amount: opt Cow<'a, str> as Text = b"BV" => "fee amount",
        media_type: opt MediaType = b"CK" => "media type",
        item_properties: opt Cow<'a, str> as Text = b"CH" => "item properties",
        transaction_id: opt Cow<'a, str> as Text = b"BK" => "transaction id",
        screen_message: rep Cow<'a, str> as Text = b"AF" => "screen message",
        print_line: rep Cow<'a, str> as Text = b"AG" => "print line",
    }
}

sip_message! {
    /// 65 Renew All of a patron's items.
    RenewAll = b"65", "Renew All", ScToAcs;
    fixed { transaction_date: SipDate => "transaction date" }
    fields {
        institution_id: req Cow<'a, str> as Text = b"AO" => "institution id",
        patron_identifier: req Cow<'a, str> as Text = b"AA" => "patron identifier",
        patron_password: opt Secret<'a> = b"AD" => "patron password",
        terminal_password: opt Secret<'a> = b"AC" => "terminal password",
        fee_acknowledged: opt bool as YesNo = b"BO" => "fee acknowledged",
    }
}

sip_message! {
    /// 66 Renew All Response.
    RenewAllResponse = b"66", "Renew All Response", AcsToSc;
    fixed {
        ok: bool as OneZero => "ok",
        renewed_count: Count => "renewed count",
        unrenewed_count: Count => "unrenewed count",
        transaction_date: SipDate => "transaction date",
    }
    fields {
        institution_id: req Cow<'a, str> as Text = b"AO" => "institution id",
        renewed_items: rep Cow<'a, str> as Text = b"BM" => "renewed item",
        unrenewed_items: rep Cow<'a, str> as Text = b"BN" => "unrenewed item",
        screen_message: rep Cow<'a, str> as Text = b"AF" => "screen message",
        print_line: rep Cow<'a, str> as Text = b"AG" => "print line",
    }
}

sip_message! {
    /// 17 Item Information.
    ItemInformation = b"17", "Item Information", ScToAcs;
    fixed { transaction_date: SipDate => "transaction date" }
    fields {
        institution_id: req Cow<'a, str> as Text = b"AO" => "institution id",
        item_identifier: req Cow<'a, str> as Text = b"AB" => "item identifier",
        terminal_password: opt Secret<'a> = b"AC" => "terminal password",
    }
}

sip_message! {
    /// 18 Item Information Response.
    ItemInformationResponse = b"18", "Item Information Response", AcsToSc;
    fixed {
        circulation_status: CirculationStatus => "circulation status",
        security_marker: SecurityMarker => "security marker",
        fee_type: FeeType => "fee type",
        transaction_date: SipDate => "transaction date",
    }
    fields {
        item_identifier: req Cow<'a, str> as Text = b"AB" => "item identifier",
        title_identifier: req Cow<'a, str> as Text = b"AJ" => "title identifier",
        hold_queue_length: opt Cow<'a, str> as Text = b"CF" => "hold queue length",
        due_date: opt Cow<'a, str> as Text = b"AH" => "due date",
        recall_date: opt SipDate = b"CJ" => "recall date",
        hold_pickup_date: opt SipDate = b"CM" => "hold pickup date",
        owner: opt Cow<'a, str> as Text = b"BG" => "owner",
        currency_type: opt Cow<'a, str> as Text = b"BH" => "currency type",
        fee_amount: opt Cow<'a, str> as Text = b"BV" => "fee amount",
        media_type: opt MediaType = b"CK" => "media type",
        permanent_location: opt Cow<'a, str> as Text = b"AQ" => "permanent location",
        current_location: opt Cow<'a, str> as Text = b"AP" => "current location",
        item_properties: opt Cow<'a, str> as Text = b"CH" => "item properties",
        collection_code: opt Cow<'a, str> as Text = b"CR" => "collection code (3M extension)",
        call_number: opt Cow<'a, str> as Text = b"CS" => "call number (3M extension)",
        screen_message: rep Cow<'a, str> as Text = b"AF" => "screen message",
        print_line: rep Cow<'a, str> as Text = b"AG" => "print line",
    }
}

sip_message! {
    /// 19 Item Status Update: store the kiosk's item properties.
    ItemStatusUpdate = b"19", "Item Status Update", ScToAcs;
    fixed { transaction_date: SipDate => "transaction date" }
    fields {
        institution_id: req Cow<'a, str> as Text = b"AO" => "institution id",
        item_identifier: req Cow<'a, str> as Text = b"AB" => "item identifier",
        terminal_password: opt Secret<'a> = b"AC" => "terminal password",
        item_properties: req Cow<'a, str> as Text = b"CH" => "item properties",
    }
}

sip_message! {
    /// 20 Item Status Update Response.
    ItemStatusUpdateResponse = b"20", "Item Status Update Response", AcsToSc;
    fixed {
        item_properties_ok: bool as OneZero => "item properties ok",
        transaction_date: SipDate => "transaction date",
    }
    fields {
        item_identifier: req Cow<'a, str> as Text = b"AB" => "item identifier",
        title_identifier: opt Cow<'a, str> as Text = b"AJ" => "title identifier",
        item_properties: opt Cow<'a, str> as Text = b"CH" => "item properties",
        screen_message: rep Cow<'a, str> as Text = b"AF" => "screen message",
        print_line: rep Cow<'a, str> as Text = b"AG" => "print line",
    }
}

sip_message! {
    /// 35 End Patron Session.
    EndPatronSession = b"35", "End Patron Session", ScToAcs;
    fixed { transaction_date: SipDate => "transaction date" }
    fields {
        institution_id: req Cow<'a, str> as Text = b"AO" => "institution id",
        patron_identifier: req Cow<'a, str> as Text = b"AA" => "patron identifier",
        terminal_password: opt Secret<'a> = b"AC" => "terminal password",
        patron_password: opt Secret<'a> = b"AD" => "patron password",
    }
}

sip_message! {
    /// 36 End Session Response.
    EndSessionResponse = b"36", "End Session Response", AcsToSc;
    fixed {
        end_session: bool as YesNo => "end session",
        transaction_date: SipDate => "transaction date",
    }
    fields {
        institution_id: req Cow<'a, str> as Text = b"AO" => "institution id",
        patron_identifier: req Cow<'a, str> as Text = b"AA" => "patron identifier",
        screen_message: rep Cow<'a, str> as Text = b"AF" => "screen message",
        print_line: rep Cow<'a, str> as Text = b"AG" => "print line",
    }
}

sip_message! {
    /// 37 Fee Paid.
    FeePaid = b"37", "Fee Paid", ScToAcs;
    fixed {
        transaction_date: SipDate => "transaction date",
        fee_type: FeeType => "fee type",
        payment_type: PaymentType => "payment type",
        currency_type: Currency => "currency type",
    }
    fields {
        fee_amount: req Cow<'a, str> as Text = b"BV" => "fee amount",
        institution_id: req Cow<'a, str> as Text = b"AO" => "institution id",
        patron_identifier: req Cow<'a, str> as Text = b"AA" => "patron identifier",
        terminal_password: opt Secret<'a> = b"AC" => "terminal password",
        patron_password: opt Secret<'a> = b"AD" => "patron password",
        fee_identifier: opt Cow<'a, str> as Text = b"CG" => "fee identifier",
        transaction_id: opt Cow<'a, str> as Text = b"BK" => "transaction id",
    }
}

sip_message! {
    /// 38 Fee Paid Response.
    FeePaidResponse = b"38", "Fee Paid Response", AcsToSc;
    fixed {
        payment_accepted: bool as YesNo => "payment accepted",
        transaction_date: SipDate => "transaction date",
    }
    fields {
        institution_id: req Cow<'a, str> as Text = b"AO" => "institution id",
        patron_identifier: req Cow<'a, str> as Text = b"AA" => "patron identifier",
        transaction_id: opt Cow<'a, str> as Text = b"BK" => "transaction id",
        screen_message: rep Cow<'a, str> as Text = b"AF" => "screen message",
        print_line: rep Cow<'a, str> as Text = b"AG" => "print line",
    }
}

sip_message! {
    /// 15 Hold: place, cancel or change a hold.
    Hold = b"15", "Hold", ScToAcs;
    fixed {
        hold_mode: HoldMode => "hold mode",
        transaction_date: SipDate => "transaction date",
    }
    fields {
        expiration_date: opt SipDate = b"BW" => "expiration date",
        pickup_location: opt Cow<'a, str> as Text = b"BS" => "pickup location",
        hold_type: opt HoldType = b"BY" => "hold type",
        institution_id: req Cow<'a, str> as Text = b"AO" => "institution id",
        patron_identifier: req Cow<'a, str> as Text = b"AA" => "patron identifier",
        patron_password: opt Secret<'a> = b"AD" => "patron password",
        item_identifier: opt Cow<'a, str> as Text = b"AB" => "item identifier",
        title_identifier: opt Cow<'a, str> as Text = b"AJ" => "title identifier",
        terminal_password: opt Secret<'a> = b"AC" => "terminal password",
        fee_acknowledged: opt bool as YesNo = b"BO" => "fee acknowledged",
    }
}

sip_message! {
    /// 16 Hold Response.
    HoldResponse = b"16", "Hold Response", AcsToSc;
    fixed {
        ok: bool as OneZero => "ok",
        available: bool as YesNo => "available",
        transaction_date: SipDate => "transaction date",
    }
    fields {
        expiration_date: opt SipDate = b"BW" => "expiration date",
        queue_position: opt Cow<'a, str> as Text = b"BR" => "queue position",
        pickup_location: opt Cow<'a, str> as Text = b"BS" => "pickup location",
        institution_id: req Cow<'a, str> as Text = b"AO" => "institution id",
        patron_identifier: req Cow<'a, str> as Text = b"AA" => "patron identifier",
        item_identifier: opt Cow<'a, str> as Text = b"AB" => "item identifier",
        title_identifier: opt Cow<'a, str> as Text = b"AJ" => "title identifier",
        screen_message: rep Cow<'a, str> as Text = b"AF" => "screen message",
        print_line: rep Cow<'a, str> as Text = b"AG" => "print line",
    }
}

sip_message! {
    /// 01 Block Patron (answered with 24).
    BlockPatron = b"01", "Block Patron", ScToAcs;
    fixed {
        card_retained: bool as YesNo => "card retained",
        transaction_date: SipDate => "transaction date",
    }
    fields {
        institution_id: req Cow<'a, str> as Text = b"AO" => "institution id",
        blocked_card_msg: req Cow<'a, str> as Text = b"AL" => "blocked card msg",
        patron_identifier: req Cow<'a, str> as Text = b"AA" => "patron identifier",
        terminal_password: req Secret<'a> = b"AC" => "terminal password",
    }
}

sip_message! {
    /// 25 Patron Enable.
    PatronEnable = b"25", "Patron Enable", ScToAcs;
    fixed { transaction_date: SipDate => "transaction date" }
    fields {
        institution_id: req Cow<'a, str> as Text = b"AO" => "institution id",
        patron_identifier: req Cow<'a, str> as Text = b"AA" => "patron identifier",
        terminal_password: opt Secret<'a> = b"AC" => "terminal password",
        patron_password: opt Secret<'a> = b"AD" => "patron password",
    }
}

sip_message! {
    /// 26 Patron Enable Response.
    PatronEnableResponse = b"26", "Patron Enable Response", AcsToSc;
    fixed {
        patron_status: PatronStatus => "patron status",
        language: Language => "language",
        transaction_date: SipDate => "transaction date",
    }
    fields {
        institution_id: req Cow<'a, str> as Text = b"AO" => "institution id",
        patron_identifier: req Cow<'a, str> as Text = b"AA" => "patron identifier",
        personal_name: req Cow<'a, str> as Text = b"AE" => "personal name",
        valid_patron: opt bool as YesNo = b"BL" => "valid patron",
        valid_patron_password: opt bool as YesNo = b"CQ" => "valid patron password",
        screen_message: rep Cow<'a, str> as Text = b"AF" => "screen message",
        print_line: rep Cow<'a, str> as Text = b"AG" => "print line",
    }
}

// ---------------------------------------------------------------------------------------------
// Any message.

macro_rules! variant_ty {
    ($lt:lifetime, boxed $v:ident) => { Box<$v<$lt>> };
    ($lt:lifetime, $v:ident) => { $v<$lt> };
}

macro_rules! wrap_variant {
    (boxed, $e:expr) => {
        Box::new($e)
    };
    (, $e:expr) => {
        $e
    };
}

macro_rules! message_set {
    ( $( $(#[$boxed:ident])? $variant:ident ),* $(,)? ) => {
        /// Any SIP2 2.00 message, either direction. The largest responses are boxed, so that
        /// the enum (moved on every parse) stays the size of the requests the server reads.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Message<'a> {
            $( #[doc = concat!("See [`", stringify!($variant), "`].")] $variant(variant_ty!('a, $($boxed)? $variant)), )*
        }

        /// Every message: code, name, direction and fixed length.
        pub const ALL_MESSAGES: &[MessageInfo] = &[
            $( MessageInfo {
                code: $variant::CODE, name: $variant::NAME, direction: $variant::DIRECTION, fixed_len: $variant::FIXED_LEN,
                fixed: $variant::FIXED_SLOTS, fields: $variant::FIELDS,
            }, )*
        ];

        impl<'a> Message<'a> {
            /// Parses a message body (a frame with its trailer removed) of either direction.
            pub fn parse(body: &'a [u8], encoding: Encoding) -> Result<Message<'a>, ParseError> {
                type Parser = for<'x> fn(&'x [u8], Encoding) -> Result<Message<'x>, ParseError>;
                const PARSERS: &[Parser] = &[ $( |b, e| $variant::parse(b, e).map(|m| Message::$variant(wrap_variant!($($boxed)?, m))), )* ];

                let (_, code) = grammar::command_code(body).map_err(|_| ParseError::new(body.len(), ParseErrorKind::NoCommand))?;
                let Some(parser) = index_of(code).and_then(|i| PARSERS.get(i)) else {
                    // Unknown before NUL: binary garbage is ignored as an unknown command, while a
                    // NUL inside a message we know is a line error (docs/protocol.md section 6).
                    return Err(ParseError::new(0, ParseErrorKind::UnknownCommand(code)));
                };
                if let Some(at) = find_nul(body) {
                    return Err(ParseError::new(at, ParseErrorKind::Nul));
                }
                parser(body, encoding)
            }

            /// The command code.
            pub fn code(&self) -> [u8; 2] {
                match self { $( Message::$variant(_) => $variant::CODE, )* }
            }

            /// A message with this code and every field at its default, for building the
            /// reply shape of a message that was not (or could not be) read.
            pub fn empty(code: [u8; 2]) -> Option<Message<'static>> {
                $( if code == $variant::CODE { return Some(Message::$variant(wrap_variant!($($boxed)?, $variant::default()))); } )*
                None
            }

            /// The spec's name for it.
            pub fn name(&self) -> &'static str {
                match self { $( Message::$variant(_) => $variant::NAME, )* }
            }

            /// Which way it travels.
            pub fn direction(&self) -> Direction {
                match self { $( Message::$variant(_) => $variant::DIRECTION, )* }
            }

            /// Appends code, fixed part and fields (no trailer, no terminator).
            pub fn encode(&self, out: &mut BytesMut, encoding: Encoding) {
                match self { $( Message::$variant(m) => m.encode(out, encoding), )* }
            }

            /// Every field with its label and a readable value.
            pub fn describe(&self) -> Vec<FieldView> {
                match self { $( Message::$variant(m) => m.describe(), )* }
            }

            /// Required fields absent from a parsed message.
            pub fn missing_required(&self) -> Vec<[u8; 2]> {
                match self { $( Message::$variant(m) => m.missing_required(), )* }
            }

            /// Unknown and repeated fields kept as received.
            pub fn extra(&self) -> &[RawField<'a>] {
                match self { $( Message::$variant(m) => &m.extra, )* }
            }

            /// False when a fixed field parsed only leniently.
            pub fn is_plausible(&self) -> bool {
                match self { $( Message::$variant(m) => m.is_plausible(), )* }
            }

            /// Whether every required field arrived.
            pub fn has_required(&self) -> bool {
                match self { $( Message::$variant(m) => m.has_required(), )* }
            }
        }

        $(
            impl<'a> From<$variant<'a>> for Message<'a> {
                fn from(m: $variant<'a>) -> Message<'a> {
                    Message::$variant(wrap_variant!($($boxed)?, m))
                }
            }
        )*

        #[cfg(any(test, feature = "arbitrary"))]
        impl<'a> Message<'a> {
            /// A random message with the given command code (a 96 for an unknown code).
            pub fn arbitrary_with_code(code: [u8; 2], u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
                $( if code == $variant::CODE { return Ok(Message::$variant(wrap_variant!($($boxed)?, u.arbitrary()?))); } )*
                Ok(Message::RequestScResend(RequestScResend::default()))
            }
        }

        #[cfg(any(test, feature = "arbitrary"))]
        impl<'a> arbitrary::Arbitrary<'a> for Message<'a> {
            fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
                let pick = u.choose_index(ALL_MESSAGES.len())?;
                let code = ALL_MESSAGES.get(pick).map_or(*b"96", |m| m.code);
                Message::arbitrary_with_code(code, u)
            }
        }
    };
}

message_set! {
    Login, LoginResponse, ScStatus, AcsStatus, RequestAcsResend, RequestScResend,
    PatronStatusRequest, PatronStatusResponse, PatronInformation, #[boxed] PatronInformationResponse,
    Checkout, #[boxed] CheckoutResponse, Checkin, #[boxed] CheckinResponse, Renew, #[boxed] RenewResponse,
    RenewAll, RenewAllResponse, ItemInformation, #[boxed] ItemInformationResponse,
    ItemStatusUpdate, ItemStatusUpdateResponse, EndPatronSession, EndSessionResponse,
    FeePaid, FeePaidResponse, Hold, #[boxed] HoldResponse, BlockPatron, PatronEnable, PatronEnableResponse,
}

/// What the protocol says about one command code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageInfo {
    /// The command code.
    pub code: [u8; 2],
    /// The spec's name.
    pub name: &'static str,
    /// Which way it travels.
    pub direction: Direction,
    /// Length of the code and the fixed part.
    pub fixed_len: usize,
    /// The fixed fields in order.
    pub fixed: &'static [FixedSlot],
    /// The identified fields' ids, each with whether it holds a date.
    pub fields: &'static [([u8; 2], bool)],
}

/// For each two-digit code `00`..`99`, 1 + its index in [`ALL_MESSAGES`], or 0.
const CODE_INDEX: [u8; 100] = {
    let mut table = [0u8; 100];
    let mut i = 0;
    while i < ALL_MESSAGES.len() {
        let [a, b] = ALL_MESSAGES[i].code;
        table[((a - b'0') * 10 + (b - b'0')) as usize] = i as u8 + 1;
        i += 1;
    }
    table
};

fn index_of(code: [u8; 2]) -> Option<usize> {
    let [a, b] = code;
    if !a.is_ascii_digit() || !b.is_ascii_digit() {
        return None;
    }
    let slot = CODE_INDEX.get(usize::from((a - b'0') * 10 + (b - b'0'))).copied()?;
    usize::from(slot).checked_sub(1)
}

/// The message with this command code, if it is a SIP2 2.00 message.
pub fn lookup(code: [u8; 2]) -> Option<&'static MessageInfo> {
    ALL_MESSAGES.get(index_of(code)?)
}

/// Field ids whose values are passwords or PINs.
fn is_secret_id(id: &[u8; 2]) -> bool {
    matches!(id, b"CO" | b"AC" | b"AD")
}

/// A copy of a frame fit for logs and screens: the values of `CO`, `AC` and `AD` (passwords and
/// PINs) become `***`. Fields are found after the fixed part of a known message and after every
/// `|` otherwise, so a frame with a log prefix or an unknown code is masked too.
pub fn redact(frame: &[u8]) -> Cow<'_, [u8]> {
    let fixed_end = grammar::command_code(frame).ok().and_then(|(_, code)| lookup(code)).map(|i| i.fixed_len);
    let mut out = Vec::new();
    let mut copied = 0;
    for start in 0..frame.len() {
        let field_start = Some(start) == fixed_end || (start > 0 && frame.get(start - 1) == Some(&b'|'));
        let Some(&[a, b]) = frame.get(start..start + 2) else { continue };
        if !field_start || start < copied || !is_secret_id(&[a, b]) {
            continue;
        }
        let end = frame.get(start..).and_then(|r| r.iter().position(|&b| b == b'|')).map_or(frame.len(), |i| start + i);
        if end > start + 2 {
            out.extend_from_slice(frame.get(copied..start + 2).unwrap_or_default());
            out.extend_from_slice(b"***");
            copied = end;
        }
    }
    if copied == 0 {
        return Cow::Borrowed(frame);
    }
    out.extend_from_slice(frame.get(copied..).unwrap_or_default());
    Cow::Owned(out)
}
