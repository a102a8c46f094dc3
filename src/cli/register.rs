//! The register commands: `sip2d institution ...` and `sip2d patron ...`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use jiff::Timestamp;
use jiff::civil::Date;
use serde_json::{Value, json};

use crate::domain::rules::PinCheck;
use crate::domain::{FeeKind, Guardian, Money, Patron, RecordType};
use crate::register::{Added, NewPatron, Register};

/// Where the register lives and who is acting; shared by every register command.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// The data directory holding the store and its PIN key.
    /// Default: the per-user data directory (e.g. ~/.local/share/sip2d).
    #[arg(long, global = true, value_name = "DIR", env = "SIP2D_DATA")]
    pub data: Option<PathBuf>,
    /// Print JSON instead of a readable card or table.
    #[arg(long, global = true)]
    pub json: bool,
    /// The name the audit history records for changes (default: the login name).
    #[arg(long = "as", global = true, value_name = "NAME")]
    pub actor: Option<String>,
}

impl Common {
    fn open(&self) -> Result<Register> {
        let dir = match &self.data {
            Some(d) => d.clone(),
            None => {
                dirs::data_dir().context("no per-user data directory on this system; pass --data DIR")?.join("sip2d")
            }
        };
        let actor = self.actor.clone().or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "staff".into());
        Ok(Register::open(&dir, &actor)?)
    }
}

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
}

/// Manage patrons. PATRON is a register id (#12), or a primary id, barcode, other identifier or
/// e-mail at the institution.
#[derive(Debug, clap::Subcommand)]
pub enum PatronCmd {
    /// Register a patron.
    Add(Box<AddPatron>),
    /// Show a patron's card: identifiers, standing, blocks, fees.
    Show {
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
    /// Move a patron to the bank of deleted users (refused while a balance is due).
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

fn parse_fee_kind(s: &str) -> Result<FeeKind, String> {
    FeeKind::parse(s).ok_or_else(|| {
        let names: Vec<_> = FeeKind::ALL.iter().map(|k| k.name()).collect();
        format!("'{s}' is not a fee type; use one of {}", names.join(", "))
    })
}

fn parse_money(s: &str) -> Result<Money, String> {
    Money::parse(s).ok_or_else(|| format!("'{s}' is not an amount such as 2.50"))
}

fn institution_of(reg: &Register, at: &At) -> Result<String> {
    if let Some(i) = &at.institution {
        return Ok(i.clone());
    }
    let all = reg.store.institutions()?;
    match all.as_slice() {
        [only] => Ok(only.code.clone()),
        [] => bail!("no institution yet: add one with `sip2d institution add --code CODE --name NAME`"),
        _ => bail!("several institutions exist; say which with --institution"),
    }
}

fn find(reg: &Register, key: &str, at: &At) -> Result<Patron> {
    if key.starts_with('#') {
        return Ok(reg.find("", key)?);
    }
    Ok(reg.find(&institution_of(reg, at)?, key)?)
}

fn patron_json(p: &Patron, balance: Money) -> Value {
    json!({
        "id": p.id, "institution": p.institution, "primary_id": p.primary_id,
        "first_name": p.first_name, "last_name": p.last_name, "birth_date": p.birth_date.map(|d| d.to_string()),
        "email": p.email, "phone": p.phone, "group": p.user_group,
        "identifiers": p.identifiers.iter().map(|i| json!({"type": i.kind, "value": i.value, "active": i.active})).collect::<Vec<_>>(),
        "active": p.active, "expiry": p.expiry.map(|d| d.to_string()), "locked": p.locked, "failed_pins": p.failed_pins,
        "pin_set": p.pin.is_some(), "deleted": p.deleted.map(|t| t.to_string()),
        "blocks": p.blocks.iter().filter(|b| b.active).map(|b| json!({"type": b.kind, "note": b.note})).collect::<Vec<_>>(),
        "transfer_to": p.transfer.as_ref().map(|t| t.to.clone()),
        "balance": balance.to_string(),
    })
}

fn print_patron(p: &Patron, balance: Money, json: bool) {
    if json {
        println!("{}", patron_json(p, balance));
        return;
    }
    println!("#{} {} ({})", p.id, p.display_name(), p.institution);
    println!("  primary id    {}", p.primary_id);
    for i in &p.identifiers {
        println!("  {:<13} {}{}", i.kind, i.value, if i.active { "" } else { " (inactive)" });
    }
    if let Some(e) = &p.email {
        println!("  e-mail        {e}");
    }
    if let Some(b) = p.birth_date {
        println!("  born          {b}");
    }
    let status = match (p.deleted.is_some(), p.active, p.locked) {
        (true, _, _) => "deleted",
        (_, false, _) => "inactive",
        (_, _, true) => "locked (too many wrong PINs)",
        _ => "active",
    };
    println!("  status        {status}");
    println!("  PIN           {}", if p.pin.is_some() { "set" } else { "not set" });
    for b in p.blocks.iter().filter(|b| b.active) {
        println!("  block         {}{}", b.kind, b.note.as_ref().map(|n| format!(": {n}")).unwrap_or_default());
    }
    if let Some(t) = &p.transfer {
        println!("  transfer      to {} (pending)", t.to);
    }
    println!("  balance       {balance}");
}

/// Runs `sip2d institution ...`.
pub fn institution(cmd: &InstitutionCmd, common: &Common) -> Result<ExitCode> {
    let reg = common.open()?;
    match cmd {
        InstitutionCmd::Add { code, name, currency, timezone } => {
            let inst = reg.add_institution(code, name, currency, timezone)?;
            if common.json {
                println!(
                    "{}",
                    json!({"code": inst.code, "name": inst.name, "currency": inst.currency, "timezone": inst.timezone})
                );
            } else {
                println!("added institution {} ({})", inst.code, inst.name);
            }
        }
        InstitutionCmd::List => {
            for i in reg.store.institutions()? {
                if common.json {
                    println!(
                        "{}",
                        json!({"code": i.code, "name": i.name, "currency": i.currency, "timezone": i.timezone})
                    );
                } else {
                    println!("{:<10} {:<30} {} {}", i.code, i.name, i.currency, i.timezone);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `sip2d patron ...`.
pub fn patron(cmd: &PatronCmd, common: &Common) -> Result<ExitCode> {
    let reg = common.open()?;
    let now = Timestamp::now();
    let today = now.to_zoned(jiff::tz::TimeZone::system()).date();
    let show = |p: &Patron| -> Result<()> {
        print_patron(p, reg.balance(p.id)?, common.json);
        Ok(())
    };
    match cmd {
        PatronCmd::Add(a) => {
            let institution = institution_of(&reg, &a.at)?;
            let guardian = match (&a.guardian_name, &a.guardian_contact) {
                (Some(name), Some(contact)) => Some(Guardian { name: name.clone(), contact: contact.clone() }),
                (None, None) => None,
                _ => bail!("give both --guardian-name and --guardian-contact"),
            };
            let new = NewPatron {
                institution,
                primary_id: a.primary_id.clone(),
                first_name: a.first_name.clone(),
                last_name: a.last_name.clone(),
                birth_date: a.birth_date,
                email: a.email.clone(),
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
                ..Default::default()
            };
            let p = match reg.add_patron(new, a.force, today, now)? {
                Added::Patron(p) => *p,
                Added::PossibleDuplicate(ids) => {
                    let ids: Vec<String> = ids.iter().map(|i| format!("#{i}")).collect();
                    eprintln!(
                        "sip2d: a patron with the same names and birth date exists already ({}); nothing was added. Check, then pass --force to add anyway.",
                        ids.join(", ")
                    );
                    return Ok(ExitCode::from(3));
                }
            };
            if let Some(pin) = &a.pin {
                reg.set_pin(p.id, pin, now)?;
            }
            let generated = if a.generate_pin { Some(reg.generate_pin(p.id, now)?) } else { None };
            let p = reg.store.patron(p.id)?;
            show(&p)?;
            if let Some(pin) = generated {
                if common.json {
                    println!("{}", json!({"generated_pin": pin}));
                } else {
                    println!("  new PIN       {pin}   (shown once: give it to the patron now)");
                }
            }
        }
        PatronCmd::Show { patron, at } => show(&find(&reg, patron, at)?)?,
        PatronCmd::Pin { patron, at, set, generate, check } => {
            let p = find(&reg, patron, at)?;
            if let Some(pin) = set {
                reg.set_pin(p.id, pin, now)?;
                println!("PIN set for #{}", p.id);
            } else if *generate {
                let pin = reg.generate_pin(p.id, now)?;
                println!("new PIN for #{}: {pin}   (shown once)", p.id);
            } else if let Some(pin) = check {
                let outcome = reg.check_pin(p.id, pin, now)?;
                let (text, code) = match outcome {
                    PinCheck::Accepted => ("PIN accepted".to_string(), 0),
                    PinCheck::Wrong { remaining } => {
                        (format!("wrong PIN; {remaining} more wrong tries lock the card"), 4)
                    }
                    PinCheck::LockedOut => {
                        ("the card is locked after too many wrong PINs; `sip2d patron unlock` lifts it".into(), 5)
                    }
                };
                println!("{text}");
                return Ok(ExitCode::from(code));
            } else {
                bail!("say what to do: --set PIN, --generate or --check PIN");
            }
        }
        PatronCmd::Unlock { patron, at } => show(&reg.unlock(find(&reg, patron, at)?.id, now)?)?,
        PatronCmd::Block { patron, at, kind, note } => {
            show(&reg.block(find(&reg, patron, at)?.id, kind, note.as_deref(), now)?)?
        }
        PatronCmd::Unblock { patron, at, kind } => {
            show(&reg.unblock(find(&reg, patron, at)?.id, kind.as_deref(), now)?)?
        }
        PatronCmd::Fee(f) => fee(&reg, f, common, now)?,
        PatronCmd::Transfer(t) => match t {
            TransferCmd::Request { patron, at, to } => {
                show(&reg.request_transfer(find(&reg, patron, at)?.id, to, now)?)?
            }
            TransferCmd::Accept { patron, at } => show(&reg.decide_transfer(find(&reg, patron, at)?.id, true, now)?)?,
            TransferCmd::Decline { patron, at } => {
                show(&reg.decide_transfer(find(&reg, patron, at)?.id, false, now)?)?
            }
            TransferCmd::List { to } => {
                for p in reg.pending_transfers(to)? {
                    if common.json {
                        println!("{}", patron_json(&p, reg.balance(p.id)?));
                    } else {
                        println!("#{:<6} {:<30} from {}", p.id, p.display_name(), p.institution);
                    }
                }
            }
        },
        PatronCmd::Delete { patron, at } => {
            let p = reg.delete(find(&reg, patron, at)?.id, now)?;
            println!("patron #{} moved to the deleted users; `sip2d patron restore #{}` brings them back", p.id, p.id);
        }
        PatronCmd::Restore { patron, at } => show(&reg.restore(find(&reg, patron, at)?.id, now)?)?,
        PatronCmd::History { patron, at } => {
            let p = find(&reg, patron, at)?;
            for e in reg.store.history(p.id)? {
                if common.json {
                    println!(
                        "{}",
                        json!({"at": e.at.to_string(), "by": e.by, "action": e.action, "changes": e.changes})
                    );
                } else {
                    let changes: Vec<String> = e.changes.iter().map(|(f, o, n)| format!("{f}: {o} -> {n}")).collect();
                    println!("{}  {:<10} {:<18} {}", e.at, e.by, e.action, changes.join("; "));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn fee(reg: &Register, cmd: &FeeCmd, common: &Common, now: Timestamp) -> Result<()> {
    let print = |f: &crate::domain::Fee| {
        if common.json {
            println!(
                "{}",
                json!({"id": f.id, "patron": f.patron, "type": f.kind.name(), "amount": f.amount.to_string(),
                       "paid": f.paid.to_string(), "status": format!("{:?}", f.status).to_lowercase(),
                       "item": f.item, "comment": f.comment})
            );
        } else {
            println!(
                "fee {:<6} {:<12} {:>9} paid {:>9}  {:<9} {}",
                f.id,
                f.kind.name(),
                f.amount.to_string(),
                f.paid.to_string(),
                format!("{:?}", f.status).to_lowercase(),
                f.comment.clone().unwrap_or_default()
            );
        }
    };
    match cmd {
        FeeCmd::Add { patron, at, kind, amount, item, comment } => {
            let p = find(reg, patron, at)?;
            print(&reg.add_fee(p.id, *kind, *amount, item.as_deref(), comment.as_deref(), now)?);
        }
        FeeCmd::List { patron, at } => {
            let p = find(reg, patron, at)?;
            for f in reg.store.fees_of(p.id)? {
                print(&f);
            }
            if !common.json {
                println!("balance {}", reg.balance(p.id)?);
            }
        }
        FeeCmd::Pay { fee, amount, transaction } => print(&reg.pay_fee(*fee, *amount, transaction.as_deref(), now)?),
        FeeCmd::Waive { fee, reason } => print(&reg.waive_fee(*fee, reason, now)?),
        FeeCmd::Dispute { fee } => print(&reg.dispute_fee(*fee, now)?),
        FeeCmd::Restore { fee } => print(&reg.restore_fee(*fee, now)?),
    }
    Ok(())
}
