//! Why the register says no, as data. Each caller words a refusal for its reader: a kiosk in
//! the terminal's language (`service`), staff in the command line's English (`Display` here).
//! A refusal is not a failure: nothing went wrong, a rule decided, and nothing was written.

use std::fmt;

use super::records::{FeeStatus, Money};
use super::rules::{Denial, Reason};
use super::validate::Invalid;

/// A fixed word of the register's (what is full, what a role may not do). An alias so that
/// serde reads it as an owned word (through `word`) rather than borrowing from its input.
pub type Word = &'static str;

/// One of the register's fixed words in a refusal (what is full, what a role may not do), read
/// back from the admin API: each distinct word is kept once for the life of the process, so a
/// client reading many refusals holds each word once.
pub(crate) fn word<'de, D: serde::Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static WORDS: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let text = <String as serde::Deserialize>::deserialize(d)?;
    let mut words = WORDS.lock().unwrap_or_else(|e| e.into_inner());
    let words = words.get_or_insert_with(HashSet::new);
    Ok(match words.get(text.as_str()) {
        Some(w) => w,
        None => {
            let w: &'static str = Box::leak(text.into_boxed_str());
            words.insert(w);
            w
        }
    })
}

/// Whether a refusal is about something that is not there, or a rule that says no (the
/// command line's exit codes 4 and 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    NotFound,
    Rule,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Refusal {
    // -- what is named is not there
    NoInstitution(String),
    /// No patron matches what was given (a register id, or an identifier at an institution).
    NoPatron(String),
    NoItem(String),
    NoFee(u64),
    NoHold(u64),
    NoAccount(String),
    NoStaff(String),
    /// A card a kiosk presented matches no active patron.
    UnknownCard,
    /// The patron has no contact, statistical category or attachment of this number.
    NoEntry {
        #[serde(deserialize_with = "word")]
        what: Word,
        id: u32,
    },
    /// The institution has no block type of this code.
    NoBlockType {
        code: String,
        known: Vec<String>,
    },

    // -- what was given is not acceptable
    Invalid(Invalid),
    /// A unique value (primary id, identifier, e-mail) another patron has.
    Taken {
        #[serde(deserialize_with = "word")]
        what: Word,
        value: String,
        institution: String,
        patron: u64,
    },
    Exists {
        #[serde(deserialize_with = "word")]
        what: Word,
        key: String,
    },
    /// Same names and birth date as these patrons: registered only when forced.
    PossibleDuplicate(Vec<u64>),

    // -- PINs
    WrongPin {
        remaining: u8,
    },
    /// Locked by wrong PINs: even the right one is refused until staff unlock.
    LockedOut,
    /// The request acts for a patron whose PIN it neither carries nor verified earlier on the
    /// connection, as the terminal's `patron-verification` requires.
    PinNeeded,

    /// What the record is now does not take the change: it is so already, or is not so.
    AsItStands(AsItStands),
    /// A field of an external account, which its sync (the student system) owns.
    Synced {
        #[serde(deserialize_with = "word")]
        field: Word,
        source: String,
    },
    /// A set-PIN link that is not (or no longer) good: used, replaced by a newer one, or
    /// unknown; or expired.
    LinkUnusable {
        expired: bool,
    },
    /// A file larger than the register takes (`[register]`).
    TooLarge {
        #[serde(deserialize_with = "word")]
        what: Word,
        bytes: u64,
        limit: u32,
    },
    /// A picture that is not a PNG, JPEG, GIF or WebP image.
    NotAPicture,
    /// A patron's record holds as many of these as the register allows (`[register]`).
    Full {
        #[serde(deserialize_with = "word")]
        what: Word,
        limit: u32,
    },

    // -- lending
    /// The lending rules said no.
    Lending(Denial),
    NotOnLoanToPatron,
    NothingToCancel,
    NotByTitle,

    // -- money
    WrongCurrency {
        accepted: String,
        given: String,
    },
    NotAnAmount(String),
    NotPositive,
    Overpayment {
        amount: Money,
        owed: Money,
    },
    /// The fee is not an open fee of this patron.
    FeeNotOpen(u64),
    /// A fee id a kiosk sent that is no fee of ours (not even a number).
    UnknownFee(String),
    /// A staff edit made against a version of the patron that is no longer the current one.
    Changed(u64),
    FeeStatus {
        fee: u64,
        status: FeeStatus,
        #[serde(deserialize_with = "word")]
        wanted: Word,
    },

    // -- holds
    HoldsDenied(Reason),
    AlreadyHeld(String),
    NoSuchHold,
    NoHoldTarget,
    HoldMode,

    // -- terminals
    /// The terminal's profile does not allow this (blocking or enabling cards).
    TerminalMayNot(#[serde(deserialize_with = "word")] Word),

    // -- staff
    /// The staff member's role does not allow this (`needs`: the least role that does;
    /// none: no staff role does, only the system).
    NotPermitted {
        role: super::staff::Role,
        needs: Option<super::staff::Role>,
        #[serde(deserialize_with = "word")]
        what: Word,
    },
    /// A wrong staff password; so many tries are left before the account locks.
    WrongPassword {
        remaining: u32,
    },
    /// Locked by wrong passwords until then.
    StaffLocked(jiff::Timestamp),

    // -- the register's own rules
    CannotDelete {
        balance: Money,
        loans: u32,
    },
    /// A rule of staff upkeep (an edit, a note, a proxy, a transfer...), in staff words. Kiosks
    /// never meet these.
    Rule(String),
    /// The terminal has sent as many wrong PINs as its window allows: the PIN was not tried.
    PinThrottled,
}

impl Refusal {
    pub fn kind(&self) -> Kind {
        match self {
            Refusal::NoInstitution(_)
            | Refusal::NoPatron(_)
            | Refusal::NoItem(_)
            | Refusal::NoFee(_)
            | Refusal::NoHold(_)
            | Refusal::NoAccount(_)
            | Refusal::NoStaff(_)
            | Refusal::UnknownCard
            | Refusal::NoEntry { .. }
            | Refusal::NoBlockType { .. } => Kind::NotFound,
            _ => Kind::Rule,
        }
    }

    /// A staff rule, said in staff words.
    pub fn rule(text: impl Into<String>) -> Refusal {
        Refusal::Rule(text.into())
    }
}

/// A change the record, as it stands, does not take. Said to staff in their language (the
/// console's Swedish), so each is a value, not a sentence.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AsItStands {
    AlreadyActive(u64),
    AlreadyInactive(u64),
    NotLocked(u64),
    AlreadyDeleted(u64),
    NotDeleted(u64),
    /// In the bank of deleted users: restored first.
    InTheBank(u64),
    NoEmail(u64),
    NothingChanged(u64),
    OwnProxy,
    AlreadyProxy {
        proxy: u64,
        for_whom: u64,
    },
    NotProxy {
        proxy: u64,
        for_whom: u64,
    },
    AlreadyAt {
        patron: u64,
        institution: String,
    },
    TransferPending {
        patron: u64,
        to: String,
    },
    NoTransfer(u64),
    NoIdentifier {
        patron: u64,
        value: String,
    },
    IdentifierAlready {
        value: String,
        active: bool,
    },
    NoActiveBlock {
        patron: u64,
        kind: Option<String>,
    },
    /// A staff member removing their own account.
    OwnAccount,
    EmptyFile,
}

impl fmt::Display for AsItStands {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use AsItStands as A;
        match self {
            A::AlreadyActive(id) => write!(f, "patron {id} is already active"),
            A::AlreadyInactive(id) => write!(f, "patron {id} is already inactive"),
            A::NotLocked(id) => write!(f, "patron {id} is not locked"),
            A::AlreadyDeleted(id) => write!(f, "patron {id} is already deleted"),
            A::NotDeleted(id) => write!(f, "patron {id} is not deleted"),
            A::InTheBank(id) => write!(f, "patron {id} is in the bank of deleted users; restore them first"),
            A::NoEmail(id) => write!(f, "patron {id} has no e-mail address to send the invitation to"),
            A::NothingChanged(id) => write!(f, "patron {id} already has those values"),
            A::OwnProxy => f.write_str("a patron cannot be their own proxy"),
            A::AlreadyProxy { proxy, for_whom } => write!(f, "patron {proxy} already acts for {for_whom}"),
            A::NotProxy { proxy, for_whom } => write!(f, "patron {proxy} does not act for {for_whom}"),
            A::AlreadyAt { patron, institution } => write!(f, "patron {patron} is already at {institution}"),
            A::TransferPending { patron, to } => write!(f, "patron {patron} already has a transfer to {to} pending"),
            A::NoTransfer(id) => write!(f, "patron {id} has no pending transfer"),
            A::NoIdentifier { patron, value } => write!(f, "patron {patron} has no identifier '{value}'"),
            A::IdentifierAlready { value, active } => {
                write!(f, "identifier '{value}' is already {}", if *active { "active" } else { "inactive" })
            }
            A::NoActiveBlock { patron, kind: None } => write!(f, "patron {patron} has no active block"),
            A::NoActiveBlock { patron, kind: Some(k) } => {
                write!(f, "patron {patron} has no active block of type '{k}'")
            }
            A::OwnAccount => f.write_str("a staff member cannot remove their own account"),
            A::EmptyFile => f.write_str("the file is empty"),
        }
    }
}

impl From<AsItStands> for Refusal {
    fn from(a: AsItStands) -> Refusal {
        Refusal::AsItStands(a)
    }
}

impl From<Denial> for Refusal {
    fn from(d: Denial) -> Refusal {
        Refusal::Lending(d)
    }
}

impl From<Invalid> for Refusal {
    fn from(e: Invalid) -> Refusal {
        Refusal::Invalid(e)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoInstitution(c) => write!(f, "no institution '{c}'"),
            Refusal::NoPatron(p) => write!(f, "no patron {p}"),
            Refusal::NoItem(b) => write!(f, "no item '{b}'"),
            Refusal::NoStaff(l) => write!(f, "no staff account '{l}'"),
            Refusal::NotPermitted { role, needs: Some(needs), what } => {
                write!(f, "a {role} may not {what} (it takes a {needs})")
            }
            Refusal::NotPermitted { role, needs: None, what } => write!(f, "a {role} may not {what}"),
            Refusal::WrongPassword { remaining: 0 } => {
                f.write_str("wrong user name or password; the account is now locked for a while")
            }
            Refusal::WrongPassword { .. } => f.write_str("wrong user name or password"),
            Refusal::StaffLocked(until) => {
                write!(f, "the account is locked after too many wrong passwords, until {until}")
            }
            Refusal::NoFee(id) => write!(f, "no fee {id}"),
            Refusal::NoHold(id) => write!(f, "no hold {id}"),
            Refusal::NoAccount(l) => write!(f, "no account '{l}'"),
            Refusal::UnknownCard => f.write_str("no active patron has this card"),
            Refusal::NoEntry { what, id } => write!(f, "the patron has no {what} {id}"),
            Refusal::TooLarge { what, bytes, limit } => write!(
                f,
                "the {what} is {bytes} bytes; the register takes at most {limit} ([register] in the configuration)"
            ),
            Refusal::NotAPicture => f.write_str("a picture must be a PNG, JPEG, GIF or WebP image"),
            Refusal::LinkUnusable { expired: true } => {
                f.write_str("this link has expired; ask the library to send a new one")
            }
            Refusal::LinkUnusable { expired: false } => f.write_str(
                "this link does not work (it was used already, or a newer one was sent); ask the library to send a new one",
            ),
            Refusal::AsItStands(a) => a.fmt(f),
            Refusal::Synced { field, source } => write!(
                f,
                "{field} of an external account comes from {source}, whose sync keeps it; change it there, or make the account internal first"
            ),
            Refusal::NoBlockType { code, known } => {
                write!(f, "unknown block type '{code}'; known: {}", known.join(", "))
            }
            Refusal::Invalid(e) => e.fmt(f),
            Refusal::Taken { what, value, institution, patron } => {
                write!(f, "{what} '{value}' is already used by patron {patron} at {institution}")
            }
            Refusal::Exists { what, key } => write!(f, "{what} '{key}' exists already"),
            Refusal::PossibleDuplicate(ids) => {
                let ids: Vec<String> = ids.iter().map(|i| format!("#{i}")).collect();
                write!(
                    f,
                    "a patron with the same names and birth date exists already ({}); nothing was added. Check, then pass --force to add anyway.",
                    ids.join(", ")
                )
            }
            Refusal::WrongPin { remaining } => write!(f, "wrong PIN; {remaining} more wrong tries lock the card"),
            Refusal::LockedOut => {
                f.write_str("the card is locked after too many wrong PINs; `sip2d patron unlock` lifts it")
            }
            Refusal::Full { what, limit } => write!(
                f,
                "the patron has {limit} {what}, as many as the register keeps ([register] in the configuration); remove some first"
            ),
            Refusal::PinThrottled => f.write_str(
                "the terminal has sent too many wrong PINs lately ([limits] pin_failures_per_window): the PIN was not tried",
            ),
            Refusal::PinNeeded => f.write_str(
                "the patron's PIN is needed: this terminal's patron-verification asks for it with the request, or earlier on the connection",
            ),
            Refusal::Lending(d) => d.fmt(f),
            Refusal::NotOnLoanToPatron => f.write_str("the item is not on loan to this patron"),
            Refusal::NothingToCancel => f.write_str("there is no checkout of this item to cancel"),
            Refusal::NotByTitle => f.write_str("renewing by title is not supported: name the item"),
            Refusal::WrongCurrency { accepted, given } => write!(f, "payments are in {accepted}, not {given}"),
            Refusal::NotAnAmount(v) => write!(f, "'{v}' is not an amount"),
            Refusal::NotPositive => f.write_str("a payment must be more than 0.00"),
            Refusal::Overpayment { amount, owed } => write!(f, "{amount} is more than the {owed} owed"),
            Refusal::FeeNotOpen(id) => write!(f, "fee {id} is not an open fee of this patron"),
            Refusal::UnknownFee(id) => write!(f, "there is no fee '{id}'"),
            Refusal::Changed(id) => {
                write!(f, "patron {id} was changed by someone else since you opened it; open it again and redo your change")
            }
            Refusal::FeeStatus { fee, status, wanted } => {
                write!(f, "fee {fee} is {}; only {wanted}", format!("{status:?}").to_lowercase())
            }
            Refusal::HoldsDenied(r) => write!(f, "the patron may not place holds: {r}"),
            Refusal::AlreadyHeld(b) => write!(f, "the patron already has a hold on '{b}'"),
            Refusal::NoSuchHold => f.write_str("the patron has no such hold"),
            Refusal::NoHoldTarget => f.write_str("say which item or title to hold"),
            Refusal::HoldMode => f.write_str("the hold mode is not +, - or *"),
            Refusal::TerminalMayNot(what) => write!(f, "this terminal may not {what}"),
            Refusal::CannotDelete { balance, loans } => {
                let mut why = Vec::new();
                if balance.0 > 0 {
                    why.push(format!("a balance of {balance} is due"));
                }
                if *loans > 0 {
                    why.push(format!("{loans} item{} on loan", if *loans == 1 { " is" } else { "s are" }));
                }
                write!(f, "the patron cannot be deleted: {}", why.join(" and "))
            }
            Refusal::Rule(text) => f.write_str(text),
        }
    }
}
