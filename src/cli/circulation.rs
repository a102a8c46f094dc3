//! `sip2d item`, `loan`, `hold`, `account`, `purge`, `import` and `export`.

use std::io::{BufReader, Cursor};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use jiff::Timestamp;
use jiff::civil::Date;
use serde_json::json;

use super::location::{Opened, unexpected};
use super::progress::{Progress, Reading, Unit, Writing};
use super::register::{At, Common, parse_assignment, parse_money};
use super::times::Times;
use crate::domain::secret::PinKey;
use crate::domain::{Account, Loan, Money};
use crate::engine::{Answer, HoldTarget, ImportOptions, ItemFacts, NewItem, Operation, PinHashes, Query, QueuedHold};

/// Manage items (copies the library lends).
#[derive(Debug, clap::Subcommand)]
pub enum ItemCmd {
    /// Add an item.
    Add {
        barcode: String,
        #[command(flatten)]
        at: At,
        #[arg(long)]
        title: String,
        #[arg(long)]
        author: Option<String>,
        #[arg(long)]
        call_number: Option<String>,
        #[arg(long)]
        location: Option<String>,
        /// SIP media type: 000 other, 001 book, 002 magazine, 003 bound journal, 004 audio tape,
        /// 005 video tape, 006 CD/CDROM, 007 diskette, 008 book with diskette, 009 book with CD,
        /// 010 book with audio tape.
        #[arg(long, default_value_t = 1)]
        media_type: u16,
        /// SIP security marker: 00 other, 01 none, 02 3M Tattle-Tape, 03 3M Whisper Tape.
        #[arg(long, default_value_t = 2)]
        security_marker: u8,
        /// A fee charged at checkout, e.g. 20.00.
        #[arg(long, value_parser = parse_money)]
        rental_fee: Option<Money>,
        /// Overrides the patron's loan period.
        #[arg(long)]
        loan_days: Option<u32>,
    },
    /// Show an item, its loan and its holds.
    Show { barcode: String },
    /// Change fields: --set FIELD=VALUE (title, author, call-number, location, media-type,
    /// security-marker, loan-days, rental-fee, status).
    Edit {
        barcode: String,
        #[arg(long = "set", value_name = "FIELD=VALUE", value_parser = parse_assignment, required = true)]
        sets: Vec<(String, String)>,
    },
    /// List items.
    List {
        #[arg(long, short = 'i')]
        institution: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Remove an item that is not on loan.
    Delete { barcode: String },
}

/// Loans: list them, or lend and take back at the desk.
#[derive(Debug, clap::Subcommand)]
pub enum LoanCmd {
    /// List loans: a patron's, or all (optionally only overdue ones).
    List {
        #[arg(long)]
        patron: Option<String>,
        #[command(flatten)]
        at: At,
        /// Only loans past their due date.
        #[arg(long)]
        overdue: bool,
    },
    /// Lend an item, with the rules a kiosk applies (renews if the patron already has it).
    Checkout {
        patron: String,
        item: String,
        #[command(flatten)]
        at: At,
        /// The patron accepts the item's rental fee.
        #[arg(long)]
        accept_fee: bool,
    },
    /// Take an item back.
    Return { item: String },
}

/// Holds on items or titles.
#[derive(Debug, clap::Subcommand)]
pub enum HoldCmd {
    /// Place a hold on an item (--item) or any copy of a title (--title).
    Place {
        patron: String,
        #[command(flatten)]
        at: At,
        #[arg(long, required_unless_present = "title", conflicts_with = "title")]
        item: Option<String>,
        #[arg(long)]
        title: Option<String>,
        /// Where the patron collects it.
        #[arg(long)]
        pickup: String,
        /// YYYY-MM-DD.
        #[arg(long)]
        expires: Option<Date>,
    },
    /// List holds: a patron's, an item's queue, or all.
    List {
        #[arg(long)]
        patron: Option<String>,
        #[arg(long)]
        item: Option<String>,
        #[command(flatten)]
        at: At,
    },
    /// Cancel a hold by its number.
    Cancel { hold: u64 },
}

/// Self-check terminal accounts: the login a kiosk sends in its SIP login (93).
#[derive(Debug, clap::Subcommand)]
pub enum AccountCmd {
    /// Add a terminal account; the password is read from standard input (one line).
    Add {
        login: String,
        #[command(flatten)]
        at: At,
        /// Where the terminal stands (the SIP location code).
        #[arg(long)]
        location: Option<String>,
    },
    /// List terminal accounts.
    List,
    /// Show an account and its profile.
    Show { login: String },
    /// Change the password (read from standard input, one line).
    Password { login: String },
    /// Set profile settings the server applies to this terminal: --set KEY=VALUE (repeatable;
    /// an empty value removes the key, bringing back the default).
    ///
    /// Keys, default first:
    ///   pin-required     yes|no    no: no PIN is checked and no CQ sent
    ///   empty-pin-ok     no|yes    an empty PIN counts as right
    ///   renewals         yes|no    the 98 renewal policy; 11 on one's own item renews
    ///   status-update    no|yes    may block cards (01)
    ///   patron-enable    no|yes    may lift blocks kiosks placed (25)
    ///   terminator       cr|crlf   the end of every reply
    ///   encoding         utf-8|cp850
    ///   error-detection  auto|required|off   AY/AZ trailers; required: none gets 96
    ///   messages         all|CODES  the requests it may send, e.g. 09,17,19 (93, 97, 99 always)
    ///   language         en|sv     the language of screen messages
    #[command(verbatim_doc_comment)]
    Profile {
        login: String,
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_assignment, required = true)]
        sets: Vec<(String, String)>,
    },
    /// Remove an account.
    Remove { login: String },
}

/// `sip2d purge`.
#[derive(Debug, clap::Args)]
pub struct PurgeArgs {
    /// Show what would be removed, remove nothing.
    #[arg(long)]
    dry_run: bool,
}

/// `sip2d import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// A JSON Lines file (see docs/import.md), or - for standard input.
    pub(super) file: PathBuf,
    /// Check every line and report, write nothing.
    #[arg(long)]
    dry_run: bool,
    /// The PIN key of the register the file was exported from (`sip2d key export`): it
    /// becomes this register's key, which is accepted only when this register holds no PINs
    /// or has that key already. Without it, PIN hashes made with another key are refused.
    #[arg(long, value_name = "FILE", conflicts_with = "reset_pins")]
    pub(super) pin_key: Option<PathBuf>,
    /// Import without the file's PIN hashes: its patrons keep the PIN they have here, or get
    /// none and need a new one.
    #[arg(long)]
    reset_pins: bool,
}

/// `sip2d export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Where to write (default: standard output).
    #[arg(long, short = 'o')]
    pub(super) output: Option<PathBuf>,
}

fn facts(reg: &Opened, barcode: &str) -> Result<ItemFacts> {
    match reg.query(Query::Item(barcode.to_string()))? {
        Answer::Item(f) => Ok(*f),
        other => Err(unexpected(&other)),
    }
}

fn print_item(reg: &Opened, barcode: &str, times: &Times<'_>, json: bool) -> Result<()> {
    let f = facts(reg, barcode)?;
    let i = &f.item;
    if json {
        let mut v = serde_json::to_value(i)?;
        v["loan"] = serde_json::to_value(&f.loan)?;
        v["holds"] = serde_json::to_value(&f.holds)?;
        outln!("{v}");
        return Ok(());
    }
    outln!("{} {}{}", i.barcode, i.title, i.author.as_ref().map(|a| format!(" / {a}")).unwrap_or_default());
    outln!("  institution   {}", i.institution);
    outln!("  status        {}", serde_json::to_value(i.status)?.as_str().unwrap_or("?"));
    outln!("  media type    {:03}   security marker {:02}", i.media_type, i.security_marker);
    for (label, v) in [("call number", &i.call_number), ("location", &i.location)] {
        if let Some(v) = v {
            outln!("  {label:<13} {v}");
        }
    }
    if let Some(fee) = i.rental_fee {
        outln!("  rental fee    {fee}");
    }
    if let Some(d) = i.loan_days {
        outln!("  loan days     {d}");
    }
    if let Some(l) = &f.loan {
        outln!("  on loan to    #{} due {}", l.patron, times.minute_for(l.patron, l.due));
    }
    for (n, h) in f.holds.iter().enumerate() {
        outln!("  hold {:<8} #{} (queue {}, {:?})", h.id, h.patron, n + 1, h.status);
    }
    Ok(())
}

fn print_loan(l: &Loan, times: &Times<'_>, json: bool) {
    if json {
        outln!(
            "{}",
            json!({"item": l.item, "patron": l.patron, "out": l.out.to_string(), "due": l.due.to_string(), "renewals": l.renewals})
        );
    } else {
        outln!(
            "{:<16} #{:<7} out {}  due {}  renewed {}",
            l.item,
            l.patron,
            times.day_for(l.patron, l.out),
            times.minute_for(l.patron, l.due),
            l.renewals
        );
    }
}

fn print_hold(q: &QueuedHold, json: bool) -> Result<()> {
    let h = &q.hold;
    if json {
        let mut v = serde_json::to_value(h)?;
        v["queue_position"] = json!(q.position);
        outln!("{v}");
    } else {
        let what = h.item.as_deref().map(|i| format!("item {i}")).or(h.title.as_ref().map(|t| format!("title '{t}'")));
        outln!(
            "hold {:<6} #{:<7} {:<30} pickup {:<10} {:?}{}",
            h.id,
            h.patron,
            what.unwrap_or_default(),
            h.pickup,
            h.status,
            q.position.map(|p| format!(", queue {p}")).unwrap_or_default()
        );
    }
    Ok(())
}

fn print_account(a: &Account, json: bool) {
    if json {
        outln!(
            "{}",
            json!({"login": a.login, "institution": a.institution, "location": a.location, "profile": a.profile})
        );
    } else {
        outln!("{:<20} {:<10} {}", a.login, a.institution, a.location.clone().unwrap_or_default());
        for (k, v) in &a.profile {
            outln!("  {k} = {v}");
        }
    }
}

/// Reads a password: one line from standard input (never from the command line, where other
/// users could see it in the process list).
pub(super) fn read_password() -> Result<String> {
    let mut line = String::new();
    super::io::read_line(&mut line).context("cannot read the password from standard input")?;
    let pw = line.trim_end_matches(['\r', '\n']).to_string();
    if pw.is_empty() {
        return Err(super::exit::usage(
            "no password on standard input; e.g. `printf '%s\\n' \"$PW\" | sip2d account add LOGIN` (or `staff add`)",
        ));
    }
    Ok(pw)
}

pub fn item(cmd: &ItemCmd, common: &Common) -> Result<ExitCode> {
    let reg = common.open()?;
    let times = Times::new(reg.engine.as_ref(), common.utc);
    match cmd {
        ItemCmd::Add {
            barcode,
            at,
            title,
            author,
            call_number,
            location,
            media_type,
            security_marker,
            rental_fee,
            loan_days,
        } => {
            let new = NewItem {
                barcode: barcode.clone(),
                institution: reg.institution_of(at)?,
                title: title.clone(),
                author: author.clone(),
                call_number: call_number.clone(),
                location: location.clone(),
                media_type: *media_type,
                security_marker: *security_marker,
                rental_fee: *rental_fee,
                loan_days: *loan_days,
            };
            let item = reg.run(Operation::AddItem(Box::new(new)))?.item()?;
            print_item(&reg, &item.barcode, &times, common.json)?;
        }
        ItemCmd::Show { barcode } => print_item(&reg, barcode, &times, common.json)?,
        ItemCmd::Edit { barcode, sets } => {
            let item = reg.run(Operation::EditItem { barcode: barcode.clone(), sets: sets.clone() })?.item()?;
            print_item(&reg, &item.barcode, &times, common.json)?;
        }
        ItemCmd::List { institution, limit } => {
            let Answer::Items(items) = reg.query(Query::Items { institution: institution.clone(), limit: *limit })?
            else {
                return Err(anyhow::anyhow!("unexpected answer to an item list"));
            };
            for i in items {
                if common.json {
                    outln!("{}", serde_json::to_string(&i)?);
                } else {
                    outln!(
                        "{:<16} {:<8} {:<14} {}",
                        i.barcode,
                        i.institution,
                        serde_json::to_value(i.status)?.as_str().unwrap_or("?"),
                        i.title
                    );
                }
            }
        }
        ItemCmd::Delete { barcode } => {
            reg.run(Operation::DeleteItem { barcode: barcode.clone() })?.done()?;
            outln!("item {barcode} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn loans(reg: &Opened, patron: Option<u64>) -> Result<Vec<Loan>> {
    match reg.query(Query::Loans { patron })? {
        Answer::Loans(l) => Ok(l),
        other => Err(unexpected(&other)),
    }
}

pub fn loan(cmd: &LoanCmd, common: &Common) -> Result<ExitCode> {
    let reg = common.open()?;
    let times = Times::new(reg.engine.as_ref(), common.utc);
    let now = Timestamp::now();
    match cmd {
        LoanCmd::List { patron, at, overdue } => {
            let patron = match patron {
                Some(p) => Some(reg.find(p, at)?.id),
                None => None,
            };
            for l in loans(&reg, patron)?.iter().filter(|l| !*overdue || l.due < now) {
                print_loan(l, &times, common.json);
            }
        }
        LoanCmd::Checkout { patron, item, at, accept_fee } => {
            let op = Operation::Lend { patron: reg.find(patron, at)?.id, item: item.clone(), accept_fee: *accept_fee };
            print_loan(&reg.run(op)?.loan()?, &times, common.json);
        }
        LoanCmd::Return { item } => match reg.run(Operation::Return { item: item.clone() })?.returned()? {
            Some(l) => outln!("{item} returned by #{}", l.patron),
            None => outln!("{item} was not on loan; it is back on the shelf"),
        },
    }
    Ok(ExitCode::SUCCESS)
}

pub fn hold(cmd: &HoldCmd, common: &Common) -> Result<ExitCode> {
    let reg = common.open()?;
    match cmd {
        HoldCmd::Place { patron, at, item, title, pickup, expires } => {
            let target = match (item, title) {
                (Some(i), _) => HoldTarget::Item(i.clone()),
                (None, Some(t)) => HoldTarget::Title(t.clone()),
                (None, None) => return Err(super::exit::usage("give --item BARCODE or --title TITLE")),
            };
            let op = Operation::PlaceHold {
                patron: reg.find(patron, at)?.id,
                target,
                pickup: pickup.clone(),
                expires: *expires,
            };
            let h = reg.run(op)?.hold()?;
            holds(&reg, Some(h.patron), None)?
                .iter()
                .filter(|q| q.hold.id == h.id)
                .try_for_each(|q| print_hold(q, common.json))?;
        }
        HoldCmd::List { patron, item, at } => {
            let patron = match patron {
                Some(p) => Some(reg.find(p, at)?.id),
                None => None,
            };
            for q in holds(&reg, patron, item.clone())? {
                print_hold(&q, common.json)?;
            }
        }
        HoldCmd::Cancel { hold } => {
            let h = reg.run(Operation::CancelHold { hold: *hold })?.hold()?;
            outln!("hold {} for #{} cancelled", h.id, h.patron);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn holds(reg: &Opened, patron: Option<u64>, item: Option<String>) -> Result<Vec<QueuedHold>> {
    match reg.query(Query::Holds { patron, item })? {
        Answer::Holds(h) => Ok(h),
        other => Err(unexpected(&other)),
    }
}

pub fn account(cmd: &AccountCmd, common: &Common) -> Result<ExitCode> {
    let reg = common.open()?;
    let account = |login: &str| -> Result<Account> {
        match reg.query(Query::Account(login.to_string()))? {
            Answer::Account(a) => Ok(*a),
            other => Err(unexpected(&other)),
        }
    };
    match cmd {
        AccountCmd::Add { login, at, location } => {
            let institution = reg.institution_of(at)?;
            let pw = read_password()?;
            let a = reg.desk().add_account(login, &pw, &institution, location.as_deref(), Timestamp::now())?;
            print_account(&a, common.json);
        }
        AccountCmd::List => {
            let Answer::Accounts(all) = reg.query(Query::Accounts)? else {
                return Err(anyhow::anyhow!("unexpected answer to an account list"));
            };
            for a in all {
                print_account(&a, common.json);
            }
        }
        AccountCmd::Show { login } => print_account(&account(login)?, common.json),
        AccountCmd::Password { login } => {
            account(login)?;
            let password_hash = crate::engine::hash_password(&read_password()?)?;
            reg.run(Operation::SetAccountPassword { login: login.clone(), password_hash })?.account()?;
            outln!("password changed for {login}");
        }
        AccountCmd::Profile { login, sets } => {
            let op = Operation::SetAccountProfile { login: login.clone(), sets: sets.clone() };
            print_account(&reg.run(op)?.account()?, common.json);
        }
        AccountCmd::Remove { login } => {
            reg.run(Operation::RemoveAccount { login: login.clone() })?.done()?;
            outln!("account {login} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn purge(args: &PurgeArgs, common: &Common) -> Result<ExitCode> {
    let reg = common.open()?;
    let report = reg.run(Operation::Purge { dry_run: args.dry_run })?.purged()?;
    let verb = if args.dry_run { "would remove" } else { "removed" };
    if common.json {
        outln!(
            "{}",
            json!({"dry_run": args.dry_run, "removed": report.removed, "kept": report.kept, "audit_entries_pruned": report.audit_entries_pruned})
        );
    } else {
        for (_, what) in &report.removed {
            outln!("{verb} {what}");
        }
        for (id, why) in &report.kept {
            outln!("kept #{id}: {why}");
        }
        outln!(
            "{verb} {} patrons and {} audit entries past their retention",
            report.removed.len(),
            report.audit_entries_pruned
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn import(args: &ImportArgs, common: &Common) -> Result<ExitCode> {
    let mut pin_hashes = if args.reset_pins { PinHashes::Drop } else { PinHashes::Check };
    if let Some(file) = &args.pin_key {
        let key = PinKey::load(file).with_context(|| format!("cannot read the PIN key in {}", file.display()))?;
        let dir = common.data_dir()?;
        if super::remote::Remote::connect(&dir.path, &common.actor())?.is_some() {
            return Err(super::exit::refused(
                "a register's PIN key cannot change while `sip2d serve` runs on it; stop the server, import, start it again",
            ));
        }
        dir.enter_existing()?;
        if crate::engine::install_pin_key(&dir.path, &key, args.dry_run)? {
            let verb = if args.dry_run { "would install" } else { "installed" };
            errln!("{verb} PIN key {} from {}", key.fingerprint(), file.display());
        }
        pin_hashes = PinHashes::MadeWith(key.fingerprint());
    }
    let reg = common.open()?;
    let options = ImportOptions { dry_run: args.dry_run, pin_hashes };
    let by = crate::engine::By::new(reg.actor.clone(), Timestamp::now());
    let report = if args.file.as_os_str() == "-" {
        // Standard input cannot be read twice: hold it in memory.
        let mut all = Vec::new();
        super::io::read_all(&mut all).context("cannot read standard input")?;
        let progress = Progress::new("import", Unit::Bytes, Some(all.len() as u64));
        progress.phase("import: checking");
        crate::engine::exchange::import(reg.engine.as_ref(), Reading::new(Cursor::new(all), &progress), &options, &by)?
    } else {
        let f = std::fs::File::open(&args.file).with_context(|| format!("cannot open {}", args.file.display()))?;
        let progress = Progress::new("import", Unit::Bytes, f.metadata().ok().map(|m| m.len()));
        progress.phase("import: checking");
        let input = Reading::new(BufReader::with_capacity(1 << 20, f), &progress);
        crate::engine::exchange::import(reg.engine.as_ref(), input, &options, &by)?
    };
    if common.json {
        outln!("{}", serde_json::to_string(&report)?);
    } else {
        for (n, why) in &report.rejected {
            errln!("line {n}: {why}");
        }
        outln!(
            "{}{} lines: {} created, {} updated, {} unchanged, {} rejected",
            if args.dry_run { "dry run, nothing written. " } else { "" },
            report.lines,
            report.created,
            report.updated,
            report.unchanged,
            report.rejected.len()
        );
    }
    Ok(if report.rejected.is_empty() { ExitCode::SUCCESS } else { super::exit::Exit::Refused.into() })
}

pub fn export(args: &ExportArgs, common: &Common) -> Result<ExitCode> {
    let reg = common.open()?;
    let progress = Progress::new("export", Unit::Count("lines"), None);
    let write_all = |out: &mut dyn std::io::Write| -> Result<usize> {
        let n = reg.engine.export(&mut |line| crate::engine::exchange::write_line(&mut *out, line))?;
        out.flush()?;
        Ok(n)
    };
    match &args.output {
        Some(path) => {
            // Owner-only: an export holds every patron's personal data.
            let mut options = std::fs::OpenOptions::new();
            std::os::unix::fs::OpenOptionsExt::mode(options.write(true).create(true).truncate(true), 0o600);
            let f = options.open(path).with_context(|| format!("cannot create {}", path.display()))?;
            let n = write_all(&mut std::io::BufWriter::new(Writing::new(f, &progress)))?;
            progress.finish();
            errln!("exported {n} lines to {}", path.display());
        }
        None => {
            write_all(&mut std::io::BufWriter::new(Writing::new(super::io::Out, &progress)))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
