//! Screen messages in the terminal's language. Messages are written in English where they
//! are made; a terminal whose profile asks for another language gets them translated here,
//! pattern by pattern (`{}` stands for a value carried over as it is).

use std::borrow::Cow;

use crate::domain::profile::Language;
use crate::proto::Message;

/// English pattern, Swedish pattern.
const SWEDISH: &[(&str, &str)] = &[
    ("Your library card number cannot be found. Please see staff.", "Lånekortsnumret finns inte. Kontakta personalen."),
    ("The PIN is not correct.", "Fel PIN-kod."),
    (
        "Too many wrong PINs at this terminal. Please wait a few minutes or see staff.",
        "För många felaktiga PIN-koder vid den här automaten. Vänta några minuter eller kontakta personalen.",
    ),
    ("Please log in first: this terminal is not logged in.", "Automaten är inte inloggad."),
    (
        "This terminal may not use this message. Please see staff.",
        "Automaten får inte utföra detta. Kontakta personalen.",
    ),
    ("This message is not served here.", "Detta utförs inte här."),
    ("This card is no longer valid. Please see staff.", "Kortet gäller inte längre. Kontakta personalen."),
    ("Your account is inactive. Please see staff.", "Ditt konto är inaktivt. Kontakta personalen."),
    ("Your card expired on {}. Please see staff.", "Ditt kort gick ut {}. Kontakta personalen."),
    (
        "Too many wrong PINs: your card is locked. Please see staff.",
        "För många felaktiga PIN-koder: kortet är spärrat. Kontakta personalen.",
    ),
    ("Your card is blocked: {}. Please see staff.", "Ditt kort är spärrat: {}. Kontakta personalen."),
    ("Your card is blocked ({}). Please see staff.", "Ditt kort är spärrat ({}). Kontakta personalen."),
    ("Fines of {} block borrowing.", "Avgifter på {} hindrar lån."),
    ("You have reached the limit of {} loans.", "Du har nått gränsen på {} lån."),
    ("This item cannot be borrowed now ({}).", "Exemplaret kan inte lånas nu ({})."),
    ("This item is on loan to another patron.", "Exemplaret är utlånat till någon annan."),
    ("This item is on hold for another patron.", "Exemplaret är reserverat för någon annan."),
    ("Renewal limit reached ({}).", "Max antal omlån uppnått ({})."),
    ("Renewal is not allowed from this terminal.", "Omlån går inte att göra vid den här automaten."),
    ("Rental fee {} - confirm to borrow.", "Hyresavgift {} - bekräfta för att låna."),
    (
        "This item is not in the library's catalogue. Please see staff.",
        "Exemplaret finns inte i bibliotekets katalog. Kontakta personalen.",
    ),
    ("This item is not in the library's catalogue.", "Exemplaret finns inte i bibliotekets katalog."),
    ("Checkout cancelled.", "Lånet är ångrat."),
    ("There is no checkout of this item to cancel.", "Det finns inget lån av exemplaret att ångra."),
    ("This item was not on loan.", "Exemplaret var inte utlånat."),
    ("On hold: put it aside for pickup at {}.", "Reserverad: lägg undan för avhämtning vid {}."),
    ("Renewing by title is not supported: scan the item.", "Omlån via titel stöds inte: skanna exemplaret."),
    ("This item is not on loan to you.", "Exemplaret är inte utlånat till dig."),
    ("Payments here are in {}, not {}.", "Betalningar här görs i {}, inte {}."),
    ("'{}' is not an amount.", "'{}' är inget belopp."),
    ("There is no fee '{}'.", "Det finns ingen avgift '{}'."),
    ("Payment refused: {}.", "Betalningen nekades: {}."),
    ("Say which item or title to hold.", "Ange vilket exemplar eller vilken titel som ska reserveras."),
    ("Hold refused: {}.", "Reservationen nekades: {}."),
    ("This terminal may not enable cards.", "Automaten får inte låsa upp kort."),
    ("This terminal may not block cards.", "Automaten får inte spärra kort."),
    ("Not stored: {}.", "Sparades inte: {}."),
];

/// The values a pattern's `{}` holes take in `text`, if it matches.
fn captures<'t>(pattern: &str, text: &'t str) -> Option<Vec<&'t str>> {
    let mut parts = pattern.split("{}");
    let first = parts.next().unwrap_or("");
    let mut rest = text.strip_prefix(first)?;
    let literals: Vec<&str> = parts.collect();
    let mut values = Vec::new();
    for (i, lit) in literals.iter().enumerate() {
        let last = i + 1 == literals.len();
        let at = if last {
            if !rest.ends_with(lit) {
                return None;
            }
            rest.len() - lit.len()
        } else if lit.is_empty() {
            return None;
        } else {
            rest.find(lit)?
        };
        values.push(rest.get(..at)?);
        rest = rest.get(at + lit.len()..)?;
    }
    (literals.is_empty() && rest.is_empty() || !literals.is_empty()).then_some(values)
}

/// One screen message in `language`; unknown texts (a staff note, say) pass unchanged.
pub fn translate(text: &str, language: Language) -> Cow<'_, str> {
    let table = match language {
        Language::English => return Cow::Borrowed(text),
        Language::Swedish => SWEDISH,
    };
    for (en, other) in table {
        if let Some(values) = captures(en, text) {
            let mut out = String::new();
            let mut holes = other.split("{}");
            out.push_str(holes.next().unwrap_or(""));
            for (v, lit) in values.iter().zip(holes) {
                out.push_str(v);
                out.push_str(lit);
            }
            return Cow::Owned(out);
        }
    }
    Cow::Borrowed(text)
}

/// Translates every screen message of a reply.
pub fn localise(reply: &mut Message<'_>, language: Language) {
    if language == Language::English {
        return;
    }
    let screen = match reply {
        Message::AcsStatus(m) => &mut m.screen_message,
        Message::PatronStatusResponse(m) => &mut m.screen_message,
        Message::PatronInformationResponse(m) => &mut m.screen_message,
        Message::CheckoutResponse(m) => &mut m.screen_message,
        Message::CheckinResponse(m) => &mut m.screen_message,
        Message::RenewResponse(m) => &mut m.screen_message,
        Message::RenewAllResponse(m) => &mut m.screen_message,
        Message::ItemInformationResponse(m) => &mut m.screen_message,
        Message::ItemStatusUpdateResponse(m) => &mut m.screen_message,
        Message::EndSessionResponse(m) => &mut m.screen_message,
        Message::FeePaidResponse(m) => &mut m.screen_message,
        Message::HoldResponse(m) => &mut m.screen_message,
        Message::PatronEnableResponse(m) => &mut m.screen_message,
        _ => return,
    };
    for line in screen.iter_mut() {
        if let Cow::Owned(t) = translate(line, language) {
            *line = Cow::Owned(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_and_patterned_messages_translate_and_others_pass() {
        let sv = Language::Swedish;
        assert_eq!(translate("The PIN is not correct.", sv), "Fel PIN-kod.");
        assert_eq!(translate("Fines of 150.00 block borrowing.", sv), "Avgifter på 150.00 hindrar lån.");
        assert_eq!(translate("Payments here are in SEK, not USD.", sv), "Betalningar här görs i SEK, inte USD.");
        assert_eq!(
            translate("Your card is blocked: Card reported lost. Please see staff.", sv),
            "Ditt kort är spärrat: Card reported lost. Kontakta personalen."
        );
        assert_eq!(translate("Remember the book sale on Friday!", sv), "Remember the book sale on Friday!");
        assert_eq!(translate("The PIN is not correct.", Language::English), "The PIN is not correct.");
    }

    #[test]
    fn every_english_pattern_is_distinct_and_has_as_many_holes_as_its_translation() {
        for (en, sv) in SWEDISH {
            assert_eq!(en.matches("{}").count(), sv.matches("{}").count(), "{en}");
            assert_eq!(SWEDISH.iter().filter(|(e, _)| e == en).count(), 1, "{en}");
        }
    }
}
