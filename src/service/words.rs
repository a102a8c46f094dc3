//! What kiosks are told, chosen from the typed refusal or fact and the terminal's language
//! (English or Swedish). Staff-facing text (a block's note, a rule's staff wording) never
//! reaches a kiosk from here; only notes staff marked public are shown, as staff wrote them.

use crate::domain::profile::Language;
use crate::domain::rules::{Denial, Reason};
use crate::domain::{ItemStatus, Refusal};

/// The fixed things a kiosk may be told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phrase {
    UnknownCard,
    WrongPin,
    LockedOut,
    PinThrottled,
    PinNeeded,
    NotLoggedIn,
    MayNotUse,
    NotServed,
    NotInCatalogue,
    NotInCatalogueShort,
    CheckoutCancelled,
    NothingToCancel,
    WasNotOnLoan,
    NotByTitle,
    NotOnLoanToYou,
    SayWhatToHold,
    MayNotEnable,
    MayNotBlock,
    Unavailable,
}

fn sv(language: Language) -> bool {
    language == Language::Swedish
}

pub fn phrase(p: Phrase, language: Language) -> &'static str {
    let (en, sv_) = match p {
        Phrase::UnknownCard => (
            "Your library card number cannot be found. Please see staff.",
            "Lånekortsnumret finns inte. Kontakta personalen.",
        ),
        Phrase::WrongPin => ("The PIN is not correct.", "Fel PIN-kod."),
        Phrase::LockedOut => {
            (crate::domain::rules::LOCKED_OUT, "För många felaktiga PIN-koder: kortet är spärrat. Kontakta personalen.")
        }
        Phrase::PinThrottled => (
            "Too many wrong PINs at this terminal. Please wait a few minutes or see staff.",
            "För många felaktiga PIN-koder vid den här automaten. Vänta några minuter eller kontakta personalen.",
        ),
        Phrase::PinNeeded => ("Please enter your PIN.", "Ange din PIN-kod."),
        Phrase::NotLoggedIn => ("Please log in first: this terminal is not logged in.", "Automaten är inte inloggad."),
        Phrase::MayNotUse => (
            "This terminal may not use this message. Please see staff.",
            "Automaten får inte utföra detta. Kontakta personalen.",
        ),
        Phrase::NotServed => ("This message is not served here.", "Detta utförs inte här."),
        Phrase::NotInCatalogue => (
            "This item is not in the library's catalogue. Please see staff.",
            "Exemplaret finns inte i bibliotekets katalog. Kontakta personalen.",
        ),
        Phrase::NotInCatalogueShort => {
            ("This item is not in the library's catalogue.", "Exemplaret finns inte i bibliotekets katalog.")
        }
        Phrase::CheckoutCancelled => ("Checkout cancelled.", "Lånet är ångrat."),
        Phrase::NothingToCancel => {
            ("There is no checkout of this item to cancel.", "Det finns inget lån av exemplaret att ångra.")
        }
        Phrase::WasNotOnLoan => ("This item was not on loan.", "Exemplaret var inte utlånat."),
        Phrase::NotByTitle => {
            ("Renewing by title is not supported: scan the item.", "Omlån via titel stöds inte: skanna exemplaret.")
        }
        Phrase::NotOnLoanToYou => ("This item is not on loan to you.", "Exemplaret är inte utlånat till dig."),
        Phrase::SayWhatToHold => {
            ("Say which item or title to hold.", "Ange vilket exemplar eller vilken titel som ska reserveras.")
        }
        Phrase::MayNotEnable => ("This terminal may not enable cards.", "Automaten får inte låsa upp kort."),
        Phrase::MayNotBlock => ("This terminal may not block cards.", "Automaten får inte spärra kort."),
        Phrase::Unavailable => (
            "The library system could not complete this. Please try again or see staff.",
            "Bibliotekssystemet kunde inte slutföra detta. Försök igen eller kontakta personalen.",
        ),
    };
    if sv(language) { sv_ } else { en }
}

/// Why a patron may not borrow, as a kiosk says it. A block is named by its type, never by the
/// note staff wrote on it.
pub fn reason(r: &Reason, language: Language) -> String {
    let s = sv(language);
    match r {
        Reason::Deleted => if s {
            "Kortet gäller inte längre. Kontakta personalen."
        } else {
            "This card is no longer valid. Please see staff."
        }
        .into(),
        Reason::Inactive => if s {
            "Ditt konto är inaktivt. Kontakta personalen."
        } else {
            "Your account is inactive. Please see staff."
        }
        .into(),
        Reason::Expired { on } => {
            if s {
                format!("Ditt kort gick ut {on}. Kontakta personalen.")
            } else {
                format!("Your card expired on {on}. Please see staff.")
            }
        }
        Reason::LockedOut => phrase(Phrase::LockedOut, language).into(),
        Reason::Blocked { kind, .. } if kind == "lost-card" => if s {
            "Kortet är anmält förlorat. Kontakta personalen."
        } else {
            "This card has been reported lost. Please see staff."
        }
        .into(),
        Reason::Blocked { .. } => {
            if s { "Ditt kort är spärrat. Kontakta personalen." } else { "Your card is blocked. Please see staff." }
                .into()
        }
        Reason::OverFineThreshold { balance, .. } => {
            if s {
                format!("Avgifter på {balance} hindrar lån.")
            } else {
                format!("Fines of {balance} block borrowing.")
            }
        }
        Reason::TooManyLoans { max, .. } => {
            if s {
                format!("Du har nått gränsen på {max} lån.")
            } else {
                format!("You have reached the limit of {max} loans.")
            }
        }
    }
}

fn status(st: ItemStatus, s: bool) -> &'static str {
    match (st, s) {
        (ItemStatus::Available, false) => "available",
        (ItemStatus::Available, true) => "tillgängligt",
        (ItemStatus::OnLoan, false) => "on loan",
        (ItemStatus::OnLoan, true) => "utlånat",
        (ItemStatus::OnHoldShelf, false) => "on the hold shelf",
        (ItemStatus::OnHoldShelf, true) => "på reservationshyllan",
        (ItemStatus::InTransit, false) => "in transit",
        (ItemStatus::InTransit, true) => "under transport",
        (ItemStatus::InProcess, false) => "being processed",
        (ItemStatus::InProcess, true) => "under bearbetning",
        (ItemStatus::Lost, false) => "lost",
        (ItemStatus::Lost, true) => "förlorat",
        (ItemStatus::Missing, false) => "missing",
        (ItemStatus::Missing, true) => "saknas",
        (ItemStatus::ClaimedReturned, false) => "claimed returned",
        (ItemStatus::ClaimedReturned, true) => "uppges återlämnat",
    }
}

/// Why an item cannot be lent or renewed, as a kiosk says it.
pub fn denial(d: &Denial, language: Language) -> String {
    let s = sv(language);
    match d {
        Denial::Patron(r) => reason(r, language),
        Denial::ItemNotAvailable(st) => {
            if s {
                format!("Exemplaret kan inte lånas nu ({}).", status(*st, s))
            } else {
                format!("This item cannot be borrowed now ({}).", status(*st, s))
            }
        }
        Denial::OnLoanToAnother => {
            if s { "Exemplaret är utlånat till någon annan." } else { "This item is on loan to another patron." }.into()
        }
        Denial::OnHoldForAnother => {
            if s { "Exemplaret är reserverat för någon annan." } else { "This item is on hold for another patron." }
                .into()
        }
        Denial::RenewalLimit { max } => {
            if s {
                format!("Max antal omlån uppnått ({max}).")
            } else {
                format!("Renewal limit reached ({max}).")
            }
        }
        Denial::RenewalNotAllowed => if s {
            "Omlån går inte att göra vid den här automaten."
        } else {
            "Renewal is not allowed from this terminal."
        }
        .into(),
        Denial::FeeNotAcknowledged { fee } => {
            if s {
                format!("Hyresavgift {fee} - bekräfta för att låna.")
            } else {
                format!("Rental fee {fee} - confirm to borrow.")
            }
        }
    }
}

/// A refusal as a kiosk is told it.
pub fn refusal(r: &Refusal, language: Language) -> String {
    let s = sv(language);
    let say = |en: String, sv_: String| if s { sv_ } else { en };
    match r {
        Refusal::UnknownCard | Refusal::NoPatron(_) => phrase(Phrase::UnknownCard, language).into(),
        Refusal::NoItem(_) => phrase(Phrase::NotInCatalogue, language).into(),
        Refusal::WrongPin { .. } => phrase(Phrase::WrongPin, language).into(),
        Refusal::LockedOut => phrase(Phrase::LockedOut, language).into(),
        Refusal::PinNeeded => phrase(Phrase::PinNeeded, language).into(),
        Refusal::PinThrottled => phrase(Phrase::PinThrottled, language).into(),
        Refusal::Lending(d) => denial(d, language),
        Refusal::NotOnLoanToPatron => phrase(Phrase::NotOnLoanToYou, language).into(),
        Refusal::NothingToCancel => phrase(Phrase::NothingToCancel, language).into(),
        Refusal::NotByTitle => phrase(Phrase::NotByTitle, language).into(),
        Refusal::WrongCurrency { accepted, given } => say(
            format!("Payments here are in {accepted}, not {given}."),
            format!("Betalningar här görs i {accepted}, inte {given}."),
        ),
        Refusal::NotAnAmount(v) => say(format!("'{v}' is not an amount."), format!("'{v}' är inget belopp.")),
        Refusal::UnknownFee(id) => say(format!("There is no fee '{id}'."), format!("Det finns ingen avgift '{id}'.")),
        Refusal::Changed(_) => say(
            "This record was changed at the same time. Please try again.".to_string(),
            "Uppgifterna ändrades samtidigt. Försök igen.".to_string(),
        ),
        Refusal::NoFee(id) => say(format!("There is no fee '{id}'."), format!("Det finns ingen avgift '{id}'.")),
        Refusal::NotPositive => say(
            "Payment refused: the amount must be more than 0.00.".into(),
            "Betalningen nekades: beloppet måste vara större än 0.00.".into(),
        ),
        Refusal::Overpayment { amount, owed } => say(
            format!("Payment refused: {amount} is more than the {owed} owed."),
            format!("Betalningen nekades: {amount} är mer än skulden {owed}."),
        ),
        Refusal::FeeNotOpen(id) => say(
            format!("Payment refused: fee {id} is not an open fee of yours."),
            format!("Betalningen nekades: avgift {id} är ingen öppen avgift för dig."),
        ),
        Refusal::HoldsDenied(reason_) => {
            let why = reason(reason_, language);
            say(format!("Hold refused: {why}"), format!("Reservationen nekades: {why}"))
        }
        Refusal::AlreadyHeld(_) => say(
            "Hold refused: you already have a hold on it.".into(),
            "Reservationen nekades: du har redan reserverat den.".into(),
        ),
        Refusal::NoSuchHold | Refusal::NoHold(_) => say(
            "Hold refused: you have no such hold.".into(),
            "Reservationen nekades: du har ingen sådan reservation.".into(),
        ),
        Refusal::Full { what: "holds", limit } => say(
            format!("Hold refused: you have {limit} holds, the most you may have."),
            format!("Reservationen nekades: du har {limit} reservationer, så många som tillåts."),
        ),
        Refusal::NoHoldTarget => phrase(Phrase::SayWhatToHold, language).into(),
        Refusal::HoldMode => {
            say("Hold refused: the hold mode is not +, - or *.".into(), "Reservationen nekades: okänt läge.".into())
        }
        Refusal::TerminalMayNot("block cards") => phrase(Phrase::MayNotBlock, language).into(),
        Refusal::TerminalMayNot(_) => phrase(Phrase::MayNotEnable, language).into(),
        Refusal::Invalid(_) => {
            say("Not stored: the value is not accepted.".into(), "Sparades inte: värdet godtas inte.".into())
        }
        // Staff-side refusals a kiosk cannot normally cause; said without their staff wording.
        _ => say(
            "This cannot be done here. Please see staff.".into(),
            "Detta går inte att göra här. Kontakta personalen.".into(),
        ),
    }
}
