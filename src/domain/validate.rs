//! Checks on values staff enter: names, national identity numbers, institution patterns, PINs,
//! minors. Each refusal says what is wrong in words staff can act on.

use jiff::civil::Date;
use regex::Regex;

use super::records::{FieldFormats, PinPolicy};

/// A value that may not be stored, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Invalid {
    #[error("{field} is required")]
    Missing {
        #[serde(deserialize_with = "super::refusal::word")]
        field: super::refusal::Word,
    },
    #[error("{field} may not contain '|' or control characters")]
    BadCharacters {
        #[serde(deserialize_with = "super::refusal::word")]
        field: super::refusal::Word,
    },
    #[error("{field} '{value}' does not match the institution's pattern {pattern}")]
    Pattern {
        #[serde(deserialize_with = "super::refusal::word")]
        field: super::refusal::Word,
        value: String,
        pattern: String,
    },
    #[error("the institution's pattern for {field} is not a valid regular expression: {error}")]
    BadPattern {
        #[serde(deserialize_with = "super::refusal::word")]
        field: super::refusal::Word,
        error: String,
    },
    #[error("'{0}' is not a valid personnummer or samordningsnummer: {1}")]
    NationalId(String, #[serde(deserialize_with = "super::refusal::word")] super::refusal::Word),
    #[error("e-mail '{0}' is not an address")]
    Email(String),
    #[error("{0}")]
    Pin(#[serde(deserialize_with = "super::refusal::word")] super::refusal::Word),
    #[error("a patron under 18 needs a guardian's name and contact, and the date the terms were accepted")]
    MinorWithoutGuardian,
    #[error("that PIN is too easy to guess ({0}); choose another")]
    TrivialPin(#[serde(deserialize_with = "super::refusal::word")] super::refusal::Word),
    #[error("{0} notices go out only when the patron asks for them: there is no opting out of them")]
    NotOptional(#[serde(deserialize_with = "super::refusal::word")] super::refusal::Word),
    #[error("{field} '{value}' is not a date such as 2027-06-30")]
    NotADate {
        #[serde(deserialize_with = "super::refusal::word")]
        field: super::refusal::Word,
        value: String,
    },
}

/// A required text field: present, not blank, and safe to send in a SIP field.
pub fn required(field: &'static str, value: &str) -> Result<(), Invalid> {
    if value.trim().is_empty() {
        return Err(Invalid::Missing { field });
    }
    plain(field, value)
}

/// An optional text field: no `|` (the SIP delimiter) and no control characters.
pub fn plain(field: &'static str, value: &str) -> Result<(), Invalid> {
    if value.chars().any(|c| c == '|' || c.is_control()) {
        return Err(Invalid::BadCharacters { field });
    }
    Ok(())
}

/// A value against the institution's pattern for that field, if it has one. The pattern must
/// match the whole value.
pub fn pattern(field: &'static str, value: &str, pattern: Option<&str>) -> Result<(), Invalid> {
    let Some(p) = pattern else { return Ok(()) };
    let re = Regex::new(&format!("^(?:{p})$")).map_err(|e| Invalid::BadPattern { field, error: e.to_string() })?;
    if re.is_match(value) {
        Ok(())
    } else {
        Err(Invalid::Pattern { field, value: value.to_string(), pattern: p.to_string() })
    }
}

/// The primary id, e-mail, phone and postal code against the institution's patterns.
pub fn formats(
    formats: &FieldFormats,
    primary_id: &str,
    email: Option<&str>,
    phone: Option<&str>,
    postal_code: Option<&str>,
) -> Result<(), Invalid> {
    pattern("primary id", primary_id, formats.primary_id.as_deref())?;
    if let Some(e) = email {
        email_shape(e)?;
        pattern("e-mail", e, formats.email.as_deref())?;
    }
    if let Some(p) = phone {
        pattern("phone", p, formats.phone.as_deref())?;
    }
    if let Some(p) = postal_code {
        pattern("postal code", p, formats.postal_code.as_deref())?;
    }
    Ok(())
}

/// The least an e-mail address must look like: one `@` with text on both sides, a dot after it.
pub fn email_shape(e: &str) -> Result<(), Invalid> {
    let ok = match e.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        }
        None => false,
    } && !e.contains(char::is_whitespace)
        && e.matches('@').count() == 1;
    if ok { Ok(()) } else { Err(Invalid::Email(e.to_string())) }
}

/// A Swedish personnummer or samordningsnummer (coordination number: day + 60), in any of the
/// usual forms: `YYMMDD-NNNC`, `YYMMDD+NNNC` (over 100), `YYYYMMDDNNNC`, `YYYYMMDD-NNNC`.
/// Returns the normalised 12-digit form `YYYYMMDDNNNC`. `today` places a two-digit year.
pub fn swedish_national_id(input: &str, today: Date) -> Result<String, Invalid> {
    let bad = |why| Invalid::NationalId(input.to_string(), why);
    let centenarian = input.contains('+');
    let digits: String = input.chars().filter(|c| *c != '-' && *c != '+').collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad("only digits, '-' and '+' are allowed"));
    }
    let full = match digits.len() {
        12 => digits,
        10 => {
            let yy: i16 = digits.get(0..2).and_then(|s| s.parse().ok()).ok_or_else(|| bad("no year"))?;
            let this_year = today.year();
            let mut year = this_year - (this_year % 100) + yy;
            if year > this_year {
                year -= 100;
            }
            if centenarian {
                year -= 100;
            }
            format!("{year:04}{}", digits.get(2..).unwrap_or_default())
        }
        _ => return Err(bad("it must have 10 or 12 digits")),
    };
    let num = |from: usize, to: usize| full.get(from..to).and_then(|s| s.parse::<i16>().ok());
    let (year, month, mut day) = (num(0, 4), num(4, 6), num(6, 8));
    let (Some(year), Some(month), Some(d)) = (year, month, day.take()) else {
        return Err(bad("no date"));
    };
    let day = if d > 60 { d - 60 } else { d };
    let month = i8::try_from(month).map_err(|_| bad("the month is out of range"))?;
    let day = i8::try_from(day).map_err(|_| bad("the day is out of range"))?;
    if Date::new(year, month, day).is_err() {
        return Err(bad("the date does not exist"));
    }
    // Luhn over the last ten digits.
    let ten = full.get(2..).ok_or_else(|| bad("too short"))?;
    let sum: u32 = ten
        .bytes()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0') * if i % 2 == 0 { 2 } else { 1 };
            if d > 9 { d - 9 } else { d }
        })
        .sum();
    if sum % 10 != 0 {
        return Err(bad("the check digit is wrong"));
    }
    Ok(full)
}

/// A new PIN against the institution's policy.
pub fn pin(policy: &PinPolicy, pin: &str) -> Result<(), Invalid> {
    match policy {
        PinPolicy::FourDigits => {
            if pin.len() == 4 && pin.bytes().all(|b| b.is_ascii_digit()) {
                Ok(())
            } else {
                Err(Invalid::Pin("a PIN is exactly four digits"))
            }
        }
        PinPolicy::Password { min_len } => {
            if pin.chars().count() < usize::from(*min_len) {
                Err(Invalid::Pin("the password is shorter than the institution allows"))
            } else if pin.chars().any(|c| c == '|' || c.is_control()) {
                Err(Invalid::Pin("a password may not contain '|' or control characters"))
            } else {
                Ok(())
            }
        }
    }
}

/// A PIN a patron chooses for themself, beyond the policy: not one anyone could guess first.
/// Refused: one digit repeated (0000), a run up or down (1234, 9876, 0123), the birth year
/// (1990), and the birthday as month and day or day and month (0517, 1705). Staff setting a
/// PIN at the desk are not held to this (the patron is there to choose). docs/self-service.md.
pub fn trivial_pin(pin: &str, birth: Option<Date>) -> Result<(), Invalid> {
    let digits: Vec<i16> = pin.bytes().filter(u8::is_ascii_digit).map(|b| i16::from(b - b'0')).collect();
    if digits.len() != pin.len() || digits.len() < 2 {
        // Passwords, and what the policy refuses anyway.
        return Ok(());
    }
    let steps: Vec<i16> = digits.windows(2).map(|w| w[1] - w[0]).collect();
    if steps.iter().all(|s| *s == 0) {
        return Err(Invalid::TrivialPin("one digit repeated"));
    }
    if steps.iter().all(|s| *s == 1) || steps.iter().all(|s| *s == -1) {
        return Err(Invalid::TrivialPin("a run of digits"));
    }
    if let Some(b) = birth {
        if pin == format!("{:04}", b.year()) {
            return Err(Invalid::TrivialPin("the birth year"));
        }
        let (m, d) = (b.month(), b.day());
        if pin == format!("{m:02}{d:02}") || pin == format!("{d:02}{m:02}") {
            return Err(Invalid::TrivialPin("the birthday"));
        }
    }
    Ok(())
}

/// Whether someone born on `birth` is under 18 on `today`.
pub fn is_minor(birth: Date, today: Date) -> bool {
    birth.checked_add(jiff::Span::new().years(18)).is_ok_and(|adult| today < adult)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    const TODAY: Date = date(2026, 11, 22);

    #[test]
    fn personnummer_in_every_form() {
        // 811218-9876 is the Tax Agency's published example with a valid check digit.
        assert_eq!(swedish_national_id("811218-9876", TODAY).unwrap(), "198112189876");
        assert_eq!(swedish_national_id("198112189876", TODAY).unwrap(), "198112189876");
        assert_eq!(swedish_national_id("19811218-9876", TODAY).unwrap(), "198112189876");
        assert_eq!(swedish_national_id("811218+9876", TODAY).unwrap(), "188112189876");
    }

    #[test]
    fn samordningsnummer_adds_sixty_to_the_day() {
        // 701063-2391: born 1970-10-03 with a coordination number.
        assert_eq!(swedish_national_id("701063-2391", TODAY).unwrap(), "197010632391");
    }

    #[test]
    fn bad_national_ids_say_why() {
        let why = |s| match swedish_national_id(s, TODAY) {
            Err(Invalid::NationalId(_, why)) => why,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(why("811218-9877"), "the check digit is wrong");
        assert_eq!(why("811318-9876"), "the date does not exist");
        assert_eq!(why("8112189"), "it must have 10 or 12 digits");
        assert_eq!(why("81121x-9876"), "only digits, '-' and '+' are allowed");
    }

    #[test]
    fn patterns_match_whole_values_and_name_the_pattern() {
        assert!(pattern("primary id", "S12345", Some("S[0-9]{5}")).is_ok());
        let err = pattern("primary id", "S12345x", Some("S[0-9]{5}")).unwrap_err();
        assert_eq!(err.to_string(), "primary id 'S12345x' does not match the institution's pattern S[0-9]{5}");
        assert!(matches!(pattern("phone", "1", Some("(")), Err(Invalid::BadPattern { .. })));
    }

    #[test]
    fn pins_follow_the_policy() {
        assert!(pin(&PinPolicy::FourDigits, "1234").is_ok());
        for bad in ["123", "12345", "12a4", ""] {
            assert!(pin(&PinPolicy::FourDigits, bad).is_err(), "{bad}");
        }
        let six = PinPolicy::Password { min_len: 6 };
        assert!(pin(&six, "secret").is_ok());
        assert!(pin(&six, "short").is_err());
        assert!(pin(&six, "has|pipe").is_err());
    }

    #[test]
    fn emails_and_text() {
        assert!(email_shape("avery@example.org").is_ok());
        for bad in ["avery", "a@b", "@example.org", "a b@example.org", "a@@example.org", "a@example."] {
            assert!(email_shape(bad).is_err(), "{bad}");
        }
        assert!(required("first name", "  ").is_err());
        assert!(plain("address", "12 Elm|St").is_err());
    }

    #[test]
    fn minors() {
        assert!(is_minor(date(2010, 1, 1), TODAY));
        assert!(!is_minor(date(2008, 11, 22), TODAY));
        assert!(is_minor(date(2008, 11, 23), TODAY));
    }
}

#[cfg(test)]
mod trivial_pin_tests {
    use super::*;

    #[test]
    fn guessable_pins_are_refused_and_others_pass() {
        let born = Some(jiff::civil::date(1990, 5, 17));
        for (pin, why) in [
            ("0000", "one digit repeated"),
            ("7777", "one digit repeated"),
            ("1234", "a run of digits"),
            ("0123", "a run of digits"),
            ("9876", "a run of digits"),
            ("1990", "the birth year"),
            ("0517", "the birthday"),
            ("1705", "the birthday"),
        ] {
            assert_eq!(trivial_pin(pin, born), Err(Invalid::TrivialPin(why)), "{pin}");
        }
        for pin in ["4821", "1357", "2468", "1991", "0518", "9012"] {
            assert_eq!(trivial_pin(pin, born), Ok(()), "{pin}");
        }
        assert_eq!(trivial_pin("1990", None), Ok(()), "no birth date, no birth year");
        assert_eq!(trivial_pin("aaaa-password", born), Ok(()), "passwords are the policy's");
    }
}
