//! The register commands: `sip2d institution ...` and `sip2d patron ...`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use jiff::Timestamp;
use jiff::civil::Date;
use serde_json::{Value, json};

use crate::domain::rules::PinCheck;
use crate::domain::{FeeKind, Guardian, Institution, Money, NoticeKind, Patron, PinPolicy, Privileges, RecordType};
use crate::engine::{Answer, Card, InstitutionChange, ListFilter, NewPatron, Operation, Pin, Query, Refusal};

use super::location::{Opened, unexpected};

use super::times::Times;

pub use super::location::Common;

/// Manage institutions (libraries): each has a code (the SIP AO), currency and time zone.
#[derive(Debug, clap::Subcommand)]
pub enum InstitutionCmd {
    /// Add an institution.
    Add {
        /// The code kiosks send as the institution id (AO), e.g. MAIN.
        #[arg(long)]
        code: String,
        #[arg(long)]
        name: String,
        /// ISO 4217 currency code.
        #[arg(long, default_value = "SEK")]
        currency: String,
        /// IANA time zone; due dates end the day there.
        #[arg(long, default_value = "Europe/Stockholm")]
        timezone: String,
    },
    /// List institutions.
    List,
    /// Show an institution's settings: loan policies, block types, patterns, PIN policy.
    Show { code: String },
    /// Change an institution's settings. A pattern is a regular expression the whole value must
    /// match; an empty one removes it.
    Set {
        code: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, value_name = "REGEX")]
        pattern_primary_id: Option<String>,
        #[arg(long, value_name = "REGEX")]
        pattern_email: Option<String>,
        #[arg(long, value_name = "REGEX")]
        pattern_phone: Option<String>,
        #[arg(long, value_name = "REGEX")]
        pattern_postal_code: Option<String>,
        /// four-digits, or password:N for a password of at least N characters.
        #[arg(long, value_parser = parse_pin_policy)]
        pin_policy: Option<PinPolicy>,
        /// Audit entries older than this are pruned by `sip2d purge` (0: keep for ever).
        #[arg(long, value_name = "DAYS")]
        audit_retention_days: Option<u32>,
    },
    /// Set the loan policy for a user group (or the default policy, without --group).
    Policy {
        code: String,
        #[arg(long)]
        group: Option<String>,
        #[arg(long)]
        loan_days: Option<u32>,
        #[arg(long)]
        max_loans: Option<u32>,
        #[arg(long)]
        max_renewals: Option<u32>,
        /// A balance above this blocks borrowing, e.g. 50.00.
        #[arg(long, value_parser = parse_money)]
        fine_threshold: Option<Money>,
    },
    /// Add (or change) a block type and what it denies, or remove one.
    BlockType {
        code: String,
        /// The block type's name, e.g. lost-card.
        name: String,
        /// What it denies: borrow, renew, hold, all, or a list such as borrow,hold.
        #[arg(long, value_parser = parse_privileges, required_unless_present = "remove")]
        denies: Option<Privileges>,
        #[arg(long)]
        remove: bool,
    },
}

/// Manage patrons. PATRON is a register id (#12), or a primary id, barcode, other identifier or
/// e-mail at the institution.
#[derive(Debug, clap::Subcommand)]
pub enum PatronCmd {
    /// Register a patron.
    Add(Box<AddPatron>),
    /// Show a patron's card: identifiers, standing, blocks, notes, fees.
    Show {
        patron: String,
        #[command(flatten)]
        at: At,
    },
    /// List patrons (deleted ones only with --deleted).
    List {
        #[command(flatten)]
        at: At,
        #[arg(long)]
        group: Option<String>,
        /// The bank of deleted users.
        #[arg(long)]
        deleted: bool,
        /// Only inactive patrons.
        #[arg(long)]
        inactive: bool,
        /// Only patrons whose card expired before this date (YYYY-MM-DD).
        #[arg(long, value_name = "DATE")]
        expired_before: Option<Date>,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Find patrons by name ("last" or "last, first", a prefix), primary id, barcode, other
    /// identifier, national id or e-mail.
    Search {
        query: String,
        #[command(flatten)]
        at: At,
    },
    /// Change fields: --set FIELD=VALUE, repeatable; an empty VALUE clears an optional field.
    /// Fields: first-name, last-name, middle-name, title, primary-id, birth-date, email, phone,
    /// address, postal-code, language, group, record-type, account-type (internal or
    /// external:SOURCE), expiry, purge, terms-accepted, guardian (NAME;CONTACT).
    Edit {
        patron: String,
        #[command(flatten)]
        at: At,
        #[arg(long = "set", value_name = "FIELD=VALUE", value_parser = parse_assignment, required = true)]
        sets: Vec<(String, String)>,
    },
    /// Add an identifier, or turn one off or on.
    #[command(subcommand)]
    Identifier(IdentifierCmd),
    /// Add or remove notes; --public notes are shown to the patron at the kiosk.
    #[command(subcommand)]
    Note(NoteCmd),
    /// E-mail addresses, phones and postal addresses besides the preferred ones.
    #[command(subcommand)]
    Contact(ContactCmd),
    /// Statistical categories the library counts the patron under.
    #[command(subcommand)]
    Statistic(StatisticCmd),
    /// Small files on the record (a signed form, a copy of an ID).
    #[command(subcommand)]
    Attachment(AttachmentCmd),
    /// The patron's picture (PNG, JPEG, GIF or WebP).
    #[command(subcommand)]
    Picture(PictureCmd),
    /// Let one patron act for another (or stop it).
    #[command(subcommand)]
    Proxy(ProxyCmd),
    /// Make a patron active again.
    Activate {
        patron: String,
        #[command(flatten)]
        at: At,
    },
    /// Make a patron inactive: kiosks refuse them until activated.
    Deactivate {
        patron: String,
        #[command(flatten)]
        at: At,
    },
    /// Set, generate or test a PIN (a test counts toward the lockout, as at a kiosk).
    Pin {
        patron: String,
        #[command(flatten)]
        at: At,
        /// Set this PIN.
        #[arg(long, conflicts_with_all = ["generate", "check"])]
        set: Option<String>,
        /// Generate a four-digit PIN and show it once.
        #[arg(long, conflicts_with = "check")]
        generate: bool,
        /// Test this PIN.
        #[arg(long)]
        check: Option<String>,
    },
    /// Lift a PIN lockout.
    Unlock {
        patron: String,
        #[command(flatten)]
        at: At,
    },
    /// Block a patron.
    Block {
        patron: String,
        #[command(flatten)]
        at: At,
        /// Block type, e.g. general, lost-card, overdue.
        #[arg(long = "type", default_value = "general")]
        kind: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Lift blocks (all, or those of one type).
    Unblock {
        patron: String,
        #[command(flatten)]
        at: At,
        #[arg(long = "type")]
        kind: Option<String>,
    },
    /// Fines and fees.
    #[command(subcommand)]
    Fee(FeeCmd),
    /// Move a patron to another institution.
    #[command(subcommand)]
    Transfer(TransferCmd),
    /// Move a patron to the bank of deleted users (refused while a balance is due or items are
    /// on loan).
    Delete {
        patron: String,
        #[command(flatten)]
        at: At,
    },
    /// Bring a patron back from the bank of deleted users.
    Restore {
        patron: String,
        #[command(flatten)]
        at: At,
    },
    /// Show the audit history of a patron.
    History {
        patron: String,
        #[command(flatten)]
        at: At,
    },
    /// Write a report of the patron's loans, requests and balance to the outbox (sent by
    /// e-mail when an SMTP relay is configured) and show it.
    Report {
        patron: String,
        #[command(flatten)]
        at: At,
    },
    /// Write the welcome (the e-mail invitation) to the outbox again, or for the first time
    /// for a patron registered with --no-invitation, and show it.
    Invite {
        patron: String,
        #[command(flatten)]
        at: At,
    },
    /// Opt a patron out of (or back into) a kind of notification: welcome,
    /// transfer-requested, transfer-accepted, transfer-declined, report, balance-due.
    Notices {
        patron: String,
        #[command(flatten)]
        at: At,
        #[arg(long, value_name = "KIND")]
        opt_out: Vec<String>,
        #[arg(long, value_name = "KIND")]
        opt_in: Vec<String>,
    },
}

/// Which institution PATRON is looked up at (default: the only one, if there is one).
#[derive(Debug, Clone, clap::Args)]
pub struct At {
    #[arg(long, short = 'i')]
    pub institution: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct AddPatron {
    #[command(flatten)]
    at: At,
    #[arg(long)]
    first_name: String,
    #[arg(long)]
    last_name: String,
    /// Unique within the institution.
    #[arg(long)]
    primary_id: String,
    /// A card barcode; repeatable.
    #[arg(long)]
    barcode: Vec<String>,
    /// Swedish personnummer or samordningsnummer (checked).
    #[arg(long)]
    national_id: Option<String>,
    #[arg(long)]
    email: Option<String>,
    /// Preferred language, e.g. sv or en: notifications are written in it.
    #[arg(long)]
    language: Option<String>,
    #[arg(long)]
    phone: Option<String>,
    #[arg(long)]
    address: Option<String>,
    #[arg(long)]
    postal_code: Option<String>,
    /// YYYY-MM-DD.
    #[arg(long)]
    birth_date: Option<Date>,
    #[arg(long)]
    group: Option<String>,
    /// staff, public or contact.
    #[arg(long, default_value = "public", value_parser = parse_record_type)]
    record_type: RecordType,
    /// YYYY-MM-DD.
    #[arg(long)]
    expiry: Option<Date>,
    /// For a patron under 18.
    #[arg(long)]
    guardian_name: Option<String>,
    #[arg(long)]
    guardian_contact: Option<String>,
    /// The date the terms of use were accepted (YYYY-MM-DD).
    #[arg(long)]
    terms_accepted: Option<Date>,
    /// Add even when a patron with the same names and birth date exists.
    #[arg(long)]
    force: bool,
    /// Register only: no welcome to the outbox (send it later with `patron invite`).
    #[arg(long)]
    no_invitation: bool,
    /// Set this PIN.
    #[arg(long, conflicts_with = "generate_pin")]
    pin: Option<String>,
    /// Generate a PIN and show it once.
    #[arg(long)]
    generate_pin: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum FeeCmd {
    /// Charge a fee, or record a credit with a negative amount (needs --comment).
    Add {
        patron: String,
        #[command(flatten)]
        at: At,
        /// other, administrative, damage, overdue, processing, rental, replacement, computer-access, hold.
        #[arg(long = "type", value_parser = parse_fee_kind)]
        kind: FeeKind,
        /// e.g. 2.50
        #[arg(long, allow_hyphen_values = true, value_parser = parse_money)]
        amount: Money,
        #[arg(long)]
        item: Option<String>,
        #[arg(long)]
        comment: Option<String>,
    },
    /// List a patron's fees and balance.
    List {
        patron: String,
        #[command(flatten)]
        at: At,
    },
    /// Record a payment on a fee.
    Pay {
        fee: u64,
        #[arg(long, value_parser = parse_money)]
        amount: Money,
        #[arg(long)]
        transaction: Option<String>,
    },
    /// Waive a fee (cannot be undone).
    Waive {
        fee: u64,
        #[arg(long)]
        reason: String,
    },
    /// Mark a fee disputed: it stops counting toward the balance that blocks borrowing.
    Dispute { fee: u64 },
    /// Return a disputed fee to active.
    Restore { fee: u64 },
}

#[derive(Debug, clap::Subcommand)]
pub enum IdentifierCmd {
    /// Add an identifier: --type barcode, student-id, national-id (checked), ...
    Add {
        patron: String,
        #[command(flatten)]
        at: At,
        #[arg(long = "type", default_value = "barcode")]
        kind: String,
        value: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Stop an identifier being accepted (it stays on record).
    Deactivate {
        patron: String,
        value: String,
        #[command(flatten)]
        at: At,
    },
    /// Accept an identifier again.
    Activate {
        patron: String,
        value: String,
        #[command(flatten)]
        at: At,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum NoteCmd {
    /// Add a note.
    Add {
        patron: String,
        #[command(flatten)]
        at: At,
        text: String,
        #[arg(long = "type", default_value = "general")]
        kind: String,
        /// Show it to the patron at the kiosk.
        #[arg(long)]
        public: bool,
    },
    /// Remove a note by its number.
    Remove {
        patron: String,
        note: u32,
        #[command(flatten)]
        at: At,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ContactCmd {
    /// Add a contact; an e-mail address must be no other patron's at the institution.
    Add {
        patron: String,
        #[command(flatten)]
        at: At,
        /// email, phone or address.
        #[arg(value_parser = parse_contact_kind)]
        kind: crate::domain::ContactKind,
        value: String,
        /// An address's postal code.
        #[arg(long)]
        postal_code: Option<String>,
        /// home, work, school, mobile or other.
        #[arg(long = "use", default_value = "other", value_parser = parse_contact_use)]
        usage: crate::domain::ContactUse,
    },
    /// Remove a contact by its number.
    Remove {
        patron: String,
        contact: u32,
        #[command(flatten)]
        at: At,
    },
    /// Make a contact the preferred one of its kind (notices and kiosks use it); the one it
    /// replaces becomes a contact.
    Prefer {
        patron: String,
        contact: u32,
        #[command(flatten)]
        at: At,
    },
}

fn parse_contact_kind(s: &str) -> Result<crate::domain::ContactKind, String> {
    crate::domain::ContactKind::ALL
        .into_iter()
        .find(|k| k.name() == s)
        .ok_or_else(|| format!("'{s}' is not email, phone or address"))
}

fn parse_contact_use(s: &str) -> Result<crate::domain::ContactUse, String> {
    crate::domain::ContactUse::parse(s).ok_or_else(|| format!("'{s}' is not home, work, school, mobile or other"))
}

#[derive(Debug, clap::Subcommand)]
pub enum StatisticCmd {
    /// Add a category (letters, digits, '-' and '_', such as distance-student).
    Add {
        patron: String,
        #[command(flatten)]
        at: At,
        category: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Remove a category by its number.
    Remove {
        patron: String,
        statistic: u32,
        #[command(flatten)]
        at: At,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum AttachmentCmd {
    /// Attach a file (at most [register] max_attachment_bytes); its type is found from it.
    Add {
        patron: String,
        #[command(flatten)]
        at: At,
        file: std::path::PathBuf,
        /// The name it is kept under (default: the file's own).
        #[arg(long)]
        name: Option<String>,
    },
    /// Write an attachment's bytes to a file, or to standard output with `-`.
    Get {
        patron: String,
        attachment: u32,
        #[command(flatten)]
        at: At,
        #[arg(long, short)]
        output: std::path::PathBuf,
    },
    /// Remove an attachment by its number.
    Remove {
        patron: String,
        attachment: u32,
        #[command(flatten)]
        at: At,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum PictureCmd {
    /// Set the picture from an image file (at most [register] max_picture_bytes).
    Set {
        patron: String,
        #[command(flatten)]
        at: At,
        file: std::path::PathBuf,
    },
    /// Write the picture to a file, or to standard output with `-`.
    Get {
        patron: String,
        #[command(flatten)]
        at: At,
        #[arg(long, short)]
        output: std::path::PathBuf,
    },
    /// Remove the picture.
    Remove {
        patron: String,
        #[command(flatten)]
        at: At,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ProxyCmd {
    /// PATRON may act for FOR.
    Add {
        patron: String,
        #[arg(long = "for", value_name = "PATRON")]
        for_whom: String,
        #[command(flatten)]
        at: At,
    },
    /// PATRON may no longer act for FOR.
    Remove {
        patron: String,
        #[arg(long = "for", value_name = "PATRON")]
        for_whom: String,
        #[command(flatten)]
        at: At,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum TransferCmd {
    /// Ask for the patron to move to another institution.
    Request {
        patron: String,
        #[command(flatten)]
        at: At,
        #[arg(long)]
        to: String,
    },
    /// Accept a pending transfer: the patron moves.
    Accept {
        patron: String,
        #[command(flatten)]
        at: At,
    },
    /// Decline a pending transfer.
    Decline {
        patron: String,
        #[command(flatten)]
        at: At,
    },
    /// Patrons waiting to move to an institution.
    List {
        #[arg(long)]
        to: String,
    },
}

fn parse_record_type(s: &str) -> Result<RecordType, String> {
    match s {
        "staff" => Ok(RecordType::Staff),
        "public" => Ok(RecordType::Public),
        "contact" => Ok(RecordType::Contact),
        _ => Err(format!("'{s}' is not staff, public or contact")),
    }
}

fn parse_pin_policy(s: &str) -> Result<PinPolicy, String> {
    match s.split_once(':') {
        None if s == "four-digits" => Ok(PinPolicy::FourDigits),
        Some(("password", n)) => match n.parse::<u8>() {
            Ok(min_len) if min_len >= 4 => Ok(PinPolicy::Password { min_len }),
            _ => Err(format!("'{n}' is not a minimum length of 4 to 255")),
        },
        _ => Err(format!("'{s}' is not four-digits or password:N")),
    }
}

fn parse_privileges(s: &str) -> Result<Privileges, String> {
    Privileges::parse(s).ok_or_else(|| format!("'{s}' is not borrow, renew, hold, all or a list of them"))
}

/// `FIELD=VALUE`.
pub(super) fn parse_assignment(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((f, v)) if !f.trim().is_empty() => Ok((f.trim().to_string(), v.to_string())),
        _ => Err(format!("'{s}' is not FIELD=VALUE")),
    }
}

fn parse_fee_kind(s: &str) -> Result<FeeKind, String> {
    FeeKind::parse(s).ok_or_else(|| {
        let names: Vec<_> = FeeKind::ALL.iter().map(|k| k.name()).collect();
        format!("'{s}' is not a fee type; use one of {}", names.join(", "))
    })
}

pub(super) fn parse_money(s: &str) -> Result<Money, String> {
    Money::parse(s).ok_or_else(|| format!("'{s}' is not an amount such as 2.50"))
}

pub(super) fn patron_json(p: &Patron, card: &Card) -> Value {
    json!({
        "id": p.id, "institution": p.institution, "primary_id": p.primary_id,
        "first_name": p.first_name, "last_name": p.last_name, "middle_name": p.middle_name, "title": p.title,
        "birth_date": p.birth_date.map(|d| d.to_string()),
        "email": p.email, "phone": p.phone, "address": p.address, "postal_code": p.postal_code,
        "language": p.language, "group": p.user_group, "record_type": p.record_type, "account_type": p.account_type,
        "identifiers": p.identifiers.iter().map(|i| json!({"type": i.kind, "value": i.value, "active": i.active, "note": i.note, "internal": i.internal})).collect::<Vec<_>>(),
        "active": p.active, "status_changed": p.status_changed.to_string(),
        "expiry": p.expiry.map(|d| d.to_string()), "purge": p.purge.map(|d| d.to_string()),
        "terms_accepted": p.terms_accepted.map(|d| d.to_string()), "guardian": p.guardian,
        "locked": p.locked, "failed_pins": p.failed_pins,
        "pin_set": p.pin.is_some(), "deleted": p.deleted.map(|t| t.to_string()),
        "blocks": p.blocks.iter().filter(|b| b.active).map(|b| json!({"type": b.kind, "note": b.note, "by": b.by, "at": b.at.to_string()})).collect::<Vec<_>>(),
        "notes": p.notes.iter().map(|n| json!({"number": n.id, "type": n.kind, "text": n.text, "public": n.public, "by": n.by, "at": n.at.to_string()})).collect::<Vec<_>>(),
        "proxy_for": p.proxy_for,
        "transfer_to": p.transfer.as_ref().map(|t| t.to.clone()),
        "loans": card.loans.iter().map(|l| json!({"item": l.item, "due": l.due.to_string(), "renewals": l.renewals})).collect::<Vec<_>>(),
        "balance": card.balance.to_string(),
        "may_borrow": !card.standing.denied.borrow, "may_renew": !card.standing.denied.renew, "may_hold": !card.standing.denied.hold,
        "reasons": card.standing.reasons.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

/// Prints a patron's card as the register has it now.
pub(super) fn print_patron(reg: &Opened, id: u64, times: &Times<'_>, json: bool) -> Result<()> {
    let card = reg.card(id)?;
    let p = &card.patron;
    if json {
        outln!("{}", patron_json(p, &card));
        return Ok(());
    }
    outln!("#{} {} ({})", p.id, p.display_name(), p.institution);
    outln!("  primary id    {}", p.primary_id);
    for i in &p.identifiers {
        outln!("  {:<13} {}{}", i.kind, i.value, if i.active { "" } else { " (inactive)" });
    }
    let line = |label: &str, v: Option<String>| {
        if let Some(v) = v {
            outln!("  {label:<13} {v}");
        }
    };
    line("e-mail", p.email.clone());
    line("phone", p.phone.clone());
    line("address", p.address.clone());
    line("born", p.birth_date.map(|b| b.to_string()));
    line("group", p.user_group.clone());
    line("expires", p.expiry.map(|d| d.to_string()));
    line("purge on", p.purge.map(|d| d.to_string()));
    line("guardian", p.guardian.as_ref().map(|g| format!("{} ({})", g.name, g.contact)));
    if let crate::domain::AccountType::External { source } = &p.account_type {
        line("synced from", Some(source.clone()));
    }
    let status = match (p.deleted.is_some(), p.active, p.locked) {
        (true, _, _) => "deleted",
        (_, false, _) => "inactive",
        (_, _, true) => "locked (too many wrong PINs)",
        _ => "active",
    };
    outln!("  status        {status} since {}", times.day(&p.institution, p.status_changed));
    outln!("  PIN           {}", if p.pin.is_some() { "set" } else { "not set" });
    for b in p.blocks.iter().filter(|b| b.active) {
        outln!("  block         {}{}", b.kind, b.note.as_ref().map(|n| format!(": {n}")).unwrap_or_default());
    }
    for n in &p.notes {
        outln!("  note {:<8} [{}{}] {}", n.id, n.kind, if n.public { ", shown to patron" } else { "" }, n.text);
    }
    for c in &p.contacts {
        let postal = c.postal_code.as_ref().map(|pc| format!(", {pc}")).unwrap_or_default();
        outln!("  contact {:<5} {} {}{postal} ({})", c.id, c.kind.name(), c.value, c.usage.name());
    }
    for st in &p.statistics {
        outln!(
            "  statistic {:<3} {}{}",
            st.id,
            st.category,
            st.note.as_ref().map(|n| format!(": {n}")).unwrap_or_default()
        );
    }
    for f in &p.attachments {
        outln!("  attachment {:<2} {} ({}, {} bytes)", f.id, f.name, f.media_type, f.bytes);
    }
    if let Some(f) = &p.picture {
        outln!("  picture       {}, {} bytes", f.media_type, f.bytes);
    }
    for id in &p.proxy_for {
        outln!("  may act for   #{id}");
    }
    if let Some(t) = &p.transfer {
        outln!("  transfer      to {} (pending)", t.to);
    }
    for l in &card.loans {
        outln!("  on loan       {} due {}", l.item, times.minute(&p.institution, l.due));
    }
    outln!("  balance       {}", card.balance);
    let may = |denied: bool| if denied { "no" } else { "yes" };
    let denied = &card.standing.denied;
    outln!("  may borrow    {}, renew {}, hold {}", may(denied.borrow), may(denied.renew), may(denied.hold));
    for r in &card.standing.reasons {
        outln!("  because       {r}");
    }
    Ok(())
}

/// A file to put on a record, read whole (the engine refuses one over its limit).
fn read_file(path: &std::path::Path) -> Result<crate::engine::ops::FileBytes> {
    std::fs::read(path).map(crate::engine::ops::FileBytes).with_context(|| format!("cannot read {}", path.display()))
}

/// Writes one of a patron's files (the picture is 0) to `output`, or to standard output.
fn write_file(reg: &Opened, patron: u64, file: u32, output: &std::path::Path) -> Result<()> {
    let Answer::File(info, bytes) = reg.query(Query::File { patron, file })? else {
        anyhow::bail!("unexpected answer");
    };
    if output == std::path::Path::new("-") {
        use std::io::Write as _;
        std::io::stdout().lock().write_all(&bytes.0).context("cannot write to standard output")?;
    } else {
        std::fs::write(output, &bytes.0).with_context(|| format!("cannot write {}", output.display()))?;
        eprintln!("wrote {} ({}, {} bytes) to {}", info.name, info.media_type, info.bytes, output.display());
    }
    Ok(())
}

fn list_patrons(patrons: &[Patron], json: bool) {
    for p in patrons {
        if json {
            outln!(
                "{}",
                json!({"id": p.id, "institution": p.institution, "primary_id": p.primary_id,
                "first_name": p.first_name, "last_name": p.last_name, "birth_date": p.birth_date.map(|d| d.to_string()),
                "active": p.active, "deleted": p.deleted.is_some()})
            );
        } else {
            let born = p.birth_date.map(|d| d.to_string()).unwrap_or_default();
            let state = match (p.deleted.is_some(), p.active) {
                (true, _) => "deleted",
                (_, false) => "inactive",
                _ => "",
            };
            outln!(
                "#{:<7} {:<32} {:<16} {:<10} {:<6} {}",
                p.id,
                p.display_name(),
                p.primary_id,
                born,
                p.institution,
                state
            );
        }
    }
}

fn privileges_text(p: Privileges) -> String {
    let mut v = Vec::new();
    if p.borrow {
        v.push("borrow");
    }
    if p.renew {
        v.push("renew");
    }
    if p.hold {
        v.push("hold");
    }
    if v.is_empty() { "nothing".into() } else { v.join(",") }
}

fn print_institution(i: &Institution, json: bool) {
    if json {
        outln!("{}", serde_json::to_string(i).unwrap_or_default());
        return;
    }
    outln!("{} {} ({}, {})", i.code, i.name, i.currency, i.timezone);
    let policy = |name: &str, p: &crate::domain::LoanPolicy| {
        outln!(
            "  policy {:<12} {} days, {} loans, {} renewals, fines over {} block",
            name,
            p.loan_days,
            p.max_loans,
            p.max_renewals,
            p.fine_threshold
        );
    };
    policy("(default)", &i.default_policy);
    for (g, p) in &i.policies {
        policy(g, p);
    }
    for t in &i.block_types {
        outln!("  block type   {:<14} denies {}", t.code, privileges_text(t.denies));
    }
    for (f, p) in [
        ("primary id", &i.formats.primary_id),
        ("e-mail", &i.formats.email),
        ("phone", &i.formats.phone),
        ("postal code", &i.formats.postal_code),
    ] {
        if let Some(p) = p {
            outln!("  pattern      {f:<14} {p}");
        }
    }
    match &i.pin_policy {
        PinPolicy::FourDigits => outln!("  PIN          four digits"),
        PinPolicy::Password { min_len } => outln!("  PIN          a password of at least {min_len} characters"),
    }
    match i.audit_retention_days {
        Some(d) => outln!("  audit kept   {d} days"),
        None => outln!("  audit kept   for ever"),
    }
}

/// Runs `sip2d institution ...`.
pub fn institution(cmd: &InstitutionCmd, common: &Common) -> Result<ExitCode> {
    let reg = common.open()?;
    let change = |code: &str, change: InstitutionChange| -> Result<Institution> {
        Ok(reg.run(Operation::ChangeInstitution { code: code.to_string(), change })?.institution()?)
    };
    match cmd {
        InstitutionCmd::Add { code, name, currency, timezone } => {
            let op = Operation::AddInstitution {
                code: code.clone(),
                name: name.clone(),
                currency: currency.clone(),
                timezone: timezone.clone(),
            };
            print_institution(&reg.run(op)?.institution()?, common.json);
        }
        InstitutionCmd::Show { code } => match reg.query(Query::Institution(code.clone()))? {
            Answer::Institution(i) => print_institution(&i, common.json),
            other => return Err(unexpected(&other)),
        },
        InstitutionCmd::Set {
            code,
            name,
            pattern_primary_id,
            pattern_email,
            pattern_phone,
            pattern_postal_code,
            pin_policy,
            audit_retention_days,
        } => {
            let c = InstitutionChange::Settings {
                name: name.clone(),
                patterns: [
                    pattern_primary_id.clone(),
                    pattern_email.clone(),
                    pattern_phone.clone(),
                    pattern_postal_code.clone(),
                ],
                pin_policy: pin_policy.clone(),
                audit_retention_days: *audit_retention_days,
            };
            print_institution(&change(code, c)?, common.json);
        }
        InstitutionCmd::Policy { code, group, loan_days, max_loans, max_renewals, fine_threshold } => {
            let c = InstitutionChange::Policy {
                group: group.clone(),
                loan_days: *loan_days,
                max_loans: *max_loans,
                max_renewals: *max_renewals,
                fine_threshold: *fine_threshold,
            };
            print_institution(&change(code, c)?, common.json);
        }
        InstitutionCmd::BlockType { code, name, denies, remove } => {
            let denies = if *remove { None } else { Some(denies.unwrap_or(Privileges::ALL)) };
            print_institution(&change(code, InstitutionChange::BlockType { code: name.clone(), denies })?, common.json);
        }
        InstitutionCmd::List => {
            for i in reg.institutions()? {
                if common.json {
                    outln!(
                        "{}",
                        json!({"code": i.code, "name": i.name, "currency": i.currency, "timezone": i.timezone})
                    );
                } else {
                    outln!("{:<10} {:<30} {} {}", i.code, i.name, i.currency, i.timezone);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn patrons_of(a: Answer) -> Result<Vec<Patron>> {
    match a {
        Answer::Patrons(p) => Ok(p),
        other => Err(unexpected(&other)),
    }
}

/// Runs `sip2d patron ...`.
pub fn patron(cmd: &PatronCmd, common: &Common) -> Result<ExitCode> {
    let reg = common.open()?;
    let now = Timestamp::now();
    let times = Times::new(reg.engine.as_ref(), common.utc);
    let show = |p: &Patron| -> Result<()> { print_patron(&reg, p.id, &times, common.json) };
    let change = |op: Operation| -> Result<()> { show(&reg.run(op)?.patron()?) };
    let id = |key: &String, at: &At| -> Result<u64> { Ok(reg.find(key, at)?.id) };
    match cmd {
        PatronCmd::Add(a) => {
            let institution = reg.institution_of(&a.at)?;
            let guardian = match (&a.guardian_name, &a.guardian_contact) {
                (Some(name), Some(contact)) => Some(Guardian { name: name.clone(), contact: contact.clone() }),
                (None, None) => None,
                _ => return Err(super::exit::usage("give both --guardian-name and --guardian-contact")),
            };
            let generated = if a.generate_pin {
                Some(crate::domain::secret::generate_pin().context("no randomness")?)
            } else {
                None
            };
            let new = NewPatron {
                institution,
                primary_id: a.primary_id.clone(),
                first_name: a.first_name.clone(),
                last_name: a.last_name.clone(),
                birth_date: a.birth_date,
                email: a.email.clone(),
                language: a.language.clone(),
                phone: a.phone.clone(),
                address: a.address.clone(),
                postal_code: a.postal_code.clone(),
                user_group: a.group.clone(),
                record_type: a.record_type,
                expiry: a.expiry,
                barcodes: a.barcode.clone(),
                national_id: a.national_id.clone(),
                guardian,
                terms_accepted: a.terms_accepted,
                // --pin and --generate-pin exclude each other.
                pin: a.pin.clone().or_else(|| generated.clone()).map(Pin),
                no_invitation: a.no_invitation,
                ..Default::default()
            };
            let p = reg.desk().add_patron(new, a.force, now)?;
            show(&p)?;
            if let Some(pin) = generated {
                if common.json {
                    outln!("{}", json!({"generated_pin": pin}));
                } else {
                    outln!("  new PIN       {pin}   (shown once: give it to the patron now)");
                }
            }
        }
        PatronCmd::Show { patron, at } => show(&reg.find(patron, at)?)?,
        PatronCmd::List { at, group, deleted, inactive, expired_before, limit } => {
            let filter = ListFilter {
                institution: at.institution.clone(),
                group: group.clone(),
                deleted: *deleted,
                inactive_only: *inactive,
                expired_by: *expired_before,
                limit: Some(*limit),
            };
            list_patrons(&patrons_of(reg.query(Query::Patrons(filter))?)?, common.json);
        }
        PatronCmd::Search { query, at } => {
            let found = if query.starts_with('#') {
                vec![reg.find(query, at)?]
            } else {
                let institution = reg.institution_of(at)?;
                patrons_of(reg.query(Query::Search { institution, query: query.clone(), now })?)?
            };
            if found.is_empty() {
                return Err(super::exit::not_found(format!("no patron matches '{query}'")));
            }
            list_patrons(&found, common.json);
        }
        PatronCmd::Edit { patron, at, sets } => {
            change(Operation::EditPatron { patron: id(patron, at)?, sets: sets.clone(), expect: None })?
        }
        PatronCmd::Identifier(c) => match c {
            IdentifierCmd::Add { patron, at, kind, value, note } => change(Operation::AddIdentifier {
                patron: id(patron, at)?,
                kind: kind.clone(),
                value: value.clone(),
                note: note.clone(),
            })?,
            IdentifierCmd::Deactivate { patron, value, at } => {
                change(Operation::SetIdentifierActive { patron: id(patron, at)?, value: value.clone(), active: false })?
            }
            IdentifierCmd::Activate { patron, value, at } => {
                change(Operation::SetIdentifierActive { patron: id(patron, at)?, value: value.clone(), active: true })?
            }
        },
        PatronCmd::Note(c) => match c {
            NoteCmd::Add { patron, at, text, kind, public } => change(Operation::AddNote {
                patron: id(patron, at)?,
                kind: kind.clone(),
                text: text.clone(),
                public: *public,
            })?,
            NoteCmd::Remove { patron, note, at } => {
                change(Operation::RemoveNote { patron: id(patron, at)?, note: *note })?
            }
        },
        PatronCmd::Contact(c) => match c {
            ContactCmd::Add { patron, at, kind, value, postal_code, usage } => change(Operation::AddContact {
                patron: id(patron, at)?,
                kind: *kind,
                value: value.clone(),
                postal_code: postal_code.clone(),
                usage: *usage,
            })?,
            ContactCmd::Remove { patron, contact, at } => {
                change(Operation::RemoveContact { patron: id(patron, at)?, contact: *contact })?
            }
            ContactCmd::Prefer { patron, contact, at } => {
                change(Operation::PreferContact { patron: id(patron, at)?, contact: *contact })?
            }
        },
        PatronCmd::Statistic(c) => match c {
            StatisticCmd::Add { patron, at, category, note } => change(Operation::AddStatistic {
                patron: id(patron, at)?,
                category: category.clone(),
                note: note.clone(),
            })?,
            StatisticCmd::Remove { patron, statistic, at } => {
                change(Operation::RemoveStatistic { patron: id(patron, at)?, statistic: *statistic })?
            }
        },
        PatronCmd::Attachment(c) => match c {
            AttachmentCmd::Add { patron, at, file, name } => {
                let content = read_file(file)?;
                let name = match name {
                    Some(n) => n.clone(),
                    None => file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into()),
                };
                change(Operation::AddAttachment { patron: id(patron, at)?, name, content })?
            }
            AttachmentCmd::Get { patron, attachment, at, output } => {
                write_file(&reg, id(patron, at)?, *attachment, output)?
            }
            AttachmentCmd::Remove { patron, attachment, at } => {
                change(Operation::RemoveAttachment { patron: id(patron, at)?, attachment: *attachment })?
            }
        },
        PatronCmd::Picture(c) => match c {
            PictureCmd::Set { patron, at, file } => {
                change(Operation::SetPicture { patron: id(patron, at)?, content: Some(read_file(file)?) })?
            }
            PictureCmd::Get { patron, at, output } => write_file(&reg, id(patron, at)?, 0, output)?,
            PictureCmd::Remove { patron, at } => {
                change(Operation::SetPicture { patron: id(patron, at)?, content: None })?
            }
        },
        PatronCmd::Proxy(c) => {
            let (patron, for_whom, at, allow) = match c {
                ProxyCmd::Add { patron, for_whom, at } => (patron, for_whom, at, true),
                ProxyCmd::Remove { patron, for_whom, at } => (patron, for_whom, at, false),
            };
            change(Operation::SetProxy { proxy: id(patron, at)?, for_whom: id(for_whom, at)?, allow })?
        }
        PatronCmd::Activate { patron, at } => change(Operation::SetActive { patron: id(patron, at)?, active: true })?,
        PatronCmd::Deactivate { patron, at } => {
            change(Operation::SetActive { patron: id(patron, at)?, active: false })?
        }
        PatronCmd::Pin { patron, at, set, generate, check } => {
            let p = id(patron, at)?;
            if let Some(pin) = set {
                reg.run(Operation::SetPin { patron: p, pin: Pin(pin.clone()) })?;
                outln!("PIN set for #{p}");
            } else if *generate {
                let pin = crate::domain::secret::generate_pin().context("no randomness")?;
                reg.run(Operation::SetPin { patron: p, pin: Pin(pin.clone()) })?;
                outln!("new PIN for #{p}: {pin}   (shown once)");
            } else if let Some(pin) = check {
                let outcome = reg.run(Operation::CheckPin { patron: p, pin: Pin(pin.clone()) })?.pin()?;
                let (text, code) = match outcome {
                    PinCheck::Accepted => ("PIN accepted".to_string(), super::exit::Exit::Ok),
                    PinCheck::Wrong { remaining } => {
                        (Refusal::WrongPin { remaining }.to_string(), super::exit::Exit::Refused)
                    }
                    PinCheck::LockedOut => (Refusal::LockedOut.to_string(), super::exit::Exit::Refused),
                };
                outln!("{text}");
                return Ok(code.into());
            } else {
                return Err(super::exit::usage("say what to do: --set PIN, --generate or --check PIN"));
            }
        }
        PatronCmd::Unlock { patron, at } => change(Operation::Unlock { patron: id(patron, at)? })?,
        PatronCmd::Block { patron, at, kind, note } => {
            change(Operation::Block { patron: id(patron, at)?, kind: kind.clone(), note: note.clone() })?
        }
        PatronCmd::Unblock { patron, at, kind } => {
            change(Operation::Unblock { patron: id(patron, at)?, kind: kind.clone() })?
        }
        PatronCmd::Fee(f) => fee(&reg, f, common)?,
        PatronCmd::Transfer(t) => match t {
            TransferCmd::Request { patron, at, to } => {
                change(Operation::RequestTransfer { patron: id(patron, at)?, to: to.clone() })?
            }
            TransferCmd::Accept { patron, at } => {
                change(Operation::DecideTransfer { patron: id(patron, at)?, accept: true })?
            }
            TransferCmd::Decline { patron, at } => {
                change(Operation::DecideTransfer { patron: id(patron, at)?, accept: false })?
            }
            TransferCmd::List { to } => {
                for p in patrons_of(reg.query(Query::PendingTransfers(to.clone()))?)? {
                    if common.json {
                        outln!("{}", patron_json(&p, &reg.card(p.id)?));
                    } else {
                        outln!("#{:<6} {:<30} from {}", p.id, p.display_name(), p.institution);
                    }
                }
            }
        },
        PatronCmd::Delete { patron, at } => {
            let p = reg.run(Operation::DeletePatron { patron: id(patron, at)? })?.patron()?;
            outln!("patron #{} moved to the deleted users; `sip2d patron restore #{}` brings them back", p.id, p.id);
        }
        PatronCmd::Restore { patron, at } => change(Operation::RestorePatron { patron: id(patron, at)? })?,
        PatronCmd::Report { patron, at } => {
            let n = reg.run(Operation::Report { patron: id(patron, at)? })?.notice()?;
            super::outbox::print_notice(&n, true, common.json);
        }
        PatronCmd::Invite { patron, at } => {
            let n = reg.run(Operation::Invite { patron: id(patron, at)? })?.notice()?;
            super::outbox::print_notice(&n, true, common.json);
        }
        PatronCmd::Notices { patron, at, opt_out, opt_in } => {
            let p = id(patron, at)?;
            let kind = |k: &String| {
                NoticeKind::parse(k).with_context(|| {
                    let all: Vec<&str> = NoticeKind::ALL.iter().map(|k| k.name()).collect();
                    format!("'{k}' is not a kind of notification: {}", all.join(", "))
                })
            };
            let mut kinds = match reg.query(Query::Optouts(p))? {
                Answer::Optouts(k) => k,
                other => return Err(unexpected(&other)),
            };
            for (k, out) in opt_out.iter().map(|k| (k, true)).chain(opt_in.iter().map(|k| (k, false))) {
                let kind = kind(k).map_err(|e| super::exit::usage(e.to_string()))?;
                kinds = reg.run(Operation::SetOptout { patron: p, kind, out })?.optouts()?;
            }
            let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
            if common.json {
                outln!("{}", json!({"patron": p, "opted_out": names}));
            } else {
                outln!(
                    "patron {p} opted out of: {}",
                    if names.is_empty() { "nothing".to_string() } else { names.join(", ") }
                );
            }
        }
        PatronCmd::History { patron, at } => {
            let p = reg.find(patron, at)?;
            let Answer::History(entries) = reg.query(Query::History(p.id))? else {
                return Err(anyhow::anyhow!("unexpected answer to a history"));
            };
            for e in entries {
                if common.json {
                    outln!("{}", json!({"at": e.at.to_string(), "by": e.by, "action": e.action, "changes": e.changes}));
                } else {
                    let changes: Vec<String> = e.changes.iter().map(|(f, o, n)| format!("{f}: {o} -> {n}")).collect();
                    let at = times.second(&p.institution, e.at);
                    outln!("{at}  {:<10} {:<18} {}", e.by, e.action, changes.join("; "));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn fee(reg: &Opened, cmd: &FeeCmd, common: &Common) -> Result<()> {
    let print = |f: &crate::domain::Fee| {
        if common.json {
            outln!(
                "{}",
                json!({"id": f.id, "patron": f.patron, "type": f.kind.name(), "amount": f.amount.to_string(),
                       "paid": f.paid.to_string(), "status": format!("{:?}", f.status).to_lowercase(),
                       "item": f.item, "comment": f.comment, "previous_id": f.previous_id})
            );
        } else {
            outln!(
                "fee {:<6} {:<12} {:>9} paid {:>9}  {:<9} {}",
                f.id,
                f.kind.name(),
                f.amount.to_string(),
                f.paid.to_string(),
                format!("{:?}", f.status).to_lowercase(),
                match &f.previous_id {
                    Some(p) => format!("(was {p}) {}", f.comment.as_deref().unwrap_or_default()),
                    None => f.comment.clone().unwrap_or_default(),
                }
            );
        }
    };
    let run = |op: Operation| -> Result<()> {
        print(&reg.run(op)?.fee()?);
        Ok(())
    };
    match cmd {
        FeeCmd::Add { patron, at, kind, amount, item, comment } => run(Operation::AddFee {
            patron: reg.find(patron, at)?.id,
            kind: *kind,
            amount: *amount,
            item: item.clone(),
            comment: comment.clone(),
        })?,
        FeeCmd::List { patron, at } => {
            let p = reg.find(patron, at)?;
            let Answer::Fees(fees, balance) = reg.query(Query::Fees(p.id))? else {
                return Err(anyhow::anyhow!("unexpected answer to a fee list"));
            };
            for f in &fees {
                print(f);
            }
            if !common.json {
                outln!("balance {balance}");
            }
        }
        FeeCmd::Pay { fee, amount, transaction } => {
            run(Operation::PayFee { fee: *fee, amount: *amount, transaction: transaction.clone() })?
        }
        FeeCmd::Waive { fee, reason } => run(Operation::WaiveFee { fee: *fee, reason: reason.clone() })?,
        FeeCmd::Dispute { fee } => run(Operation::DisputeFee { fee: *fee })?,
        FeeCmd::Restore { fee } => run(Operation::RestoreFee { fee: *fee })?,
    }
    Ok(())
}
