//! A self-check account's profile: how the server treats that terminal.

use super::records::Account;

/// How a terminal's frames end on output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LineEnd {
    /// CR, the spec's terminator.
    #[default]
    Cr,
    /// CR LF, for kiosks tuned to servers that send it.
    CrLf,
}

/// The character set a terminal reads and writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Charset {
    #[default]
    Utf8,
    Cp850,
}

/// Whether a terminal's frames carry the checksum trailer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ErrorDetection {
    /// Per message: checked and answered with a trailer when the request has one.
    #[default]
    Auto,
    /// Every request must carry a valid trailer; one without is answered 96.
    Required,
    /// Trailers are neither checked nor sent.
    Off,
}

/// What an account's profile says about how its terminal is served. Read from the account's
/// profile settings (`sip2d account profile LOGIN --set KEY=VALUE`); unknown keys and values
/// are refused when the profile is set, so a typo does not pass silently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// `pin-required` (default yes): when no, `CQ` is left out and no PIN is checked.
    pub pin_required: bool,
    /// `empty-pin-ok` (default no): an empty `AD` counts as a right PIN.
    pub empty_pin_ok: bool,
    /// `renewals` (default yes): the 98 renewal policy.
    pub renewals: bool,
    /// `status-update` (default no): the kiosk may block a card (01).
    pub status_update: bool,
    /// `patron-enable` (default no): the kiosk may lift the blocks kiosks placed (25).
    pub patron_enable: bool,
    /// `terminator` (default cr): `cr` or `crlf` at the end of every reply.
    pub line_end: LineEnd,
    /// `encoding` (default utf-8): `utf-8` or `cp850`.
    pub charset: Charset,
    /// `error-detection` (default auto): `auto`, `required` or `off`.
    pub error_detection: ErrorDetection,
    /// `messages` (default all): the request codes this terminal may send, e.g. `23,63,11,09`.
    /// Login (93), status (99) and resend (97) are always allowed.
    pub messages: Option<Vec<[u8; 2]>>,
    /// `language` (default en): the language of screen messages, `en` or `sv`.
    pub language: Language,
    /// `patron-verification` (default session): `pin-each-request`, `session` or `none`.
    pub verification: Verification,
    /// `unverified-name` (default no): a 23 or 63 without a right PIN still shows the name.
    pub unverified_name: bool,
    /// `unverified-status` (default yes): a 23 or 63 without a right PIN still shows the
    /// status flags (blocked, too many items...) and why the patron may not borrow.
    pub unverified_status: bool,
    /// `strictness` (default lenient): `strict` answers 96 to a frame that departs from the
    /// spec in a way the lenient reader would tolerate (docs/protocol.md, "Deviations").
    pub strict: bool,
    /// `unknown-code` (default 96): `nearest-refusal` answers a request code SIP2 2.00 does
    /// not define with the refusal of the defined request whose code is nearest (a 38 "not
    /// served here" for a `39`, say), for kiosks that hang on a 96; `96` answers 96.
    pub unknown_code_refusal: bool,
}

/// How a terminal's circulation requests (11, 15, 29, 65) must show that the patron is
/// present, when the profile requires PINs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Verification {
    /// Every request carries the patron's PIN (`AD`).
    PinEachRequest,
    /// The request carries the PIN, or the patron's PIN was verified earlier on this
    /// connection (a 23 or 63 with the PIN, then 11 without it, as many kiosks do).
    #[default]
    Session,
    /// No PIN is asked for: any card number borrows. Only for trusted machines such as
    /// sorters, on a network no one else reaches.
    None,
}

/// The languages screen messages are written in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Language {
    #[default]
    English,
    Swedish,
}

impl Default for Profile {
    fn default() -> Profile {
        Profile {
            pin_required: true,
            empty_pin_ok: false,
            renewals: true,
            status_update: false,
            patron_enable: false,
            line_end: LineEnd::Cr,
            charset: Charset::Utf8,
            error_detection: ErrorDetection::Auto,
            messages: None,
            language: Language::English,
            verification: Verification::Session,
            unverified_name: false,
            unverified_status: true,
            strict: false,
            unknown_code_refusal: false,
        }
    }
}

/// The request codes a profile's `messages` may name: every SIP2 2.00 request but the three
/// that are always allowed.
const REQUESTS: &[&str] = &["01", "09", "11", "15", "17", "19", "23", "25", "29", "35", "37", "63", "65"];

impl Profile {
    /// The keys a profile may hold.
    pub const KEYS: &'static [&'static str] = &[
        "pin-required",
        "empty-pin-ok",
        "renewals",
        "status-update",
        "patron-enable",
        "terminator",
        "encoding",
        "error-detection",
        "messages",
        "language",
        "patron-verification",
        "unverified-name",
        "unverified-status",
        "strictness",
        "unknown-code",
    ];

    /// Reads an account's profile settings.
    pub fn of(account: &Account) -> Result<Profile, String> {
        let mut p = Profile::default();
        for (k, v) in &account.profile {
            p.set(k, v)?;
        }
        Ok(p)
    }

    /// Whether the terminal may send this request code.
    pub fn allows(&self, code: [u8; 2]) -> bool {
        matches!(&code, b"93" | b"99" | b"97") || self.messages.as_ref().is_none_or(|m| m.contains(&code))
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let v = value.trim().to_ascii_lowercase();
        let bad = |expects: &str| format!("profile {key}={value}: the value must be {expects}");
        let yes = || match v.as_str() {
            "yes" | "y" | "true" | "1" => Ok(true),
            "no" | "n" | "false" | "0" => Ok(false),
            _ => Err(bad("yes or no")),
        };
        match key {
            "pin-required" => self.pin_required = yes()?,
            "empty-pin-ok" => self.empty_pin_ok = yes()?,
            "renewals" => self.renewals = yes()?,
            "status-update" => self.status_update = yes()?,
            "patron-enable" => self.patron_enable = yes()?,
            "terminator" => {
                self.line_end = match v.as_str() {
                    "cr" => LineEnd::Cr,
                    "crlf" => LineEnd::CrLf,
                    _ => return Err(bad("cr or crlf")),
                }
            }
            "encoding" => {
                self.charset = match v.as_str() {
                    "utf-8" | "utf8" => Charset::Utf8,
                    "cp850" | "ibm850" => Charset::Cp850,
                    _ => return Err(bad("utf-8 or cp850")),
                }
            }
            "error-detection" => {
                self.error_detection = match v.as_str() {
                    "auto" => ErrorDetection::Auto,
                    "required" => ErrorDetection::Required,
                    "off" => ErrorDetection::Off,
                    _ => return Err(bad("auto, required or off")),
                }
            }
            "messages" => {
                if v == "all" {
                    self.messages = None;
                } else {
                    let mut codes = Vec::new();
                    for c in v.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                        let Some(code) = REQUESTS.iter().find(|r| **r == c) else {
                            return Err(bad(&format!("all, or request codes from {}", REQUESTS.join(","))));
                        };
                        let b = code.as_bytes();
                        codes.push([b.first().copied().unwrap_or(b'0'), b.get(1).copied().unwrap_or(b'0')]);
                    }
                    self.messages = Some(codes);
                }
            }
            "language" => {
                self.language = match v.as_str() {
                    "en" | "eng" | "english" => Language::English,
                    "sv" | "swe" | "swedish" => Language::Swedish,
                    _ => return Err(bad("en or sv")),
                }
            }
            "patron-verification" => {
                self.verification = match v.as_str() {
                    "pin-each-request" => Verification::PinEachRequest,
                    "session" => Verification::Session,
                    "none" => Verification::None,
                    _ => return Err(bad("pin-each-request, session or none")),
                }
            }
            "unverified-name" => self.unverified_name = yes()?,
            "unverified-status" => self.unverified_status = yes()?,
            "unknown-code" => {
                self.unknown_code_refusal = match v.as_str() {
                    "96" => false,
                    "nearest-refusal" => true,
                    _ => return Err(bad("96 or nearest-refusal")),
                }
            }
            "strictness" => {
                self.strict = match v.as_str() {
                    "lenient" => false,
                    "strict" => true,
                    _ => return Err(bad("lenient or strict")),
                }
            }
            _ => return Err(format!("profile key '{key}' is unknown; known keys: {}", Profile::KEYS.join(", "))),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(pairs: &[(&str, &str)]) -> Result<Profile, String> {
        let mut a = Account {
            login: "k".into(),
            password_hash: String::new(),
            institution: "MAIN".into(),
            location: None,
            profile: Default::default(),
        };
        for (k, v) in pairs {
            a.profile.insert((*k).into(), (*v).into());
        }
        Profile::of(&a)
    }

    #[test]
    fn every_key_reads_and_bad_values_are_refused() {
        let p = profile(&[
            ("terminator", "CRLF"),
            ("encoding", "cp850"),
            ("error-detection", "required"),
            ("messages", "23, 63,11"),
            ("language", "sv"),
        ])
        .unwrap();
        assert_eq!(p.line_end, LineEnd::CrLf);
        assert_eq!(p.charset, Charset::Cp850);
        assert_eq!(p.error_detection, ErrorDetection::Required);
        assert!(p.allows(*b"11") && p.allows(*b"93") && p.allows(*b"99") && !p.allows(*b"09"));
        assert_eq!(p.language, Language::Swedish);
        assert!(profile(&[]).unwrap().allows(*b"37"));
        assert!(profile(&[("messages", "23,42")]).unwrap_err().contains("request codes"));
        assert!(profile(&[("terminator", "lf")]).unwrap_err().contains("cr or crlf"));
        assert!(profile(&[("pin-requird", "no")]).unwrap_err().contains("known keys"));
    }
}
