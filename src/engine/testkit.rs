//! For tests: staff operations and reads through the engine seam, shaped as staff tools use
//! them (one call, one answer, `now` given). Only [`Reg::open`] names an engine, so the suites
//! written on this run against any engine that implements [`Engine`].

use std::sync::Arc;

use jiff::Timestamp;
use jiff::civil::Date;

use crate::domain::rules::{PinCheck, Standing};
use crate::domain::secret;
use crate::domain::*;

use super::*;

/// A registration, or the look-alikes that stopped it.
#[derive(Debug)]
pub enum Added {
    Patron(Box<Patron>),
    PossibleDuplicate(Vec<u64>),
}

/// Reads of the committed view.
#[derive(Clone)]
pub struct View {
    engine: Arc<dyn Engine>,
}

impl View {
    fn answer(&self, q: Query) -> Result<Answer, Error> {
        self.engine.query(q).wait()
    }

    pub fn patron(&self, id: u64) -> Result<Patron, Error> {
        match self.answer(Query::Patron(id))? {
            Answer::Patron(p) => Ok(*p),
            other => panic!("{other:?}"),
        }
    }

    pub fn loan(&self, item: &str) -> Result<Option<Loan>, Error> {
        match self.answer(Query::Item(item.into()))? {
            Answer::Item(f) => Ok(f.loan),
            other => panic!("{other:?}"),
        }
    }

    pub fn fees_of(&self, patron: u64) -> Result<Vec<Fee>, Error> {
        match self.answer(Query::Fees(patron))? {
            Answer::Fees(f, _) => Ok(f),
            other => panic!("{other:?}"),
        }
    }

    /// A fee by id, whoever's it is.
    pub fn fee(&self, id: u64) -> Result<Option<Fee>, Error> {
        let Answer::Patrons(all) = self.answer(Query::Patrons(ListFilter::default()))? else { panic!() };
        let Answer::Patrons(deleted) =
            self.answer(Query::Patrons(ListFilter { deleted: true, ..Default::default() }))?
        else {
            panic!()
        };
        for p in all.iter().chain(&deleted) {
            if let Some(f) = self.fees_of(p.id)?.into_iter().find(|f| f.id == id) {
                return Ok(Some(f));
            }
        }
        Ok(None)
    }

    pub fn holds_of(&self, patron: u64) -> Result<Vec<Hold>, Error> {
        match self.answer(Query::Holds { patron: Some(patron), item: None })? {
            Answer::Holds(h) => Ok(h.into_iter().map(|q| q.hold).collect()),
            other => panic!("{other:?}"),
        }
    }

    pub fn hold(&self, id: u64) -> Result<Option<Hold>, Error> {
        match self.answer(Query::Holds { patron: None, item: None })? {
            Answer::Holds(h) => Ok(h.into_iter().map(|q| q.hold).find(|h| h.id == id)),
            other => panic!("{other:?}"),
        }
    }

    /// The stored audit entries (without the record's own creation).
    pub fn history(&self, patron: u64) -> Result<Vec<AuditEntry>, Error> {
        match self.answer(Query::History(patron)) {
            Ok(Answer::History(h)) => Ok(h.into_iter().skip(1).collect()),
            Err(Error::Refused(Refusal::NoPatron(_))) => Ok(Vec::new()),
            other => panic!("{other:?}"),
        }
    }

    pub fn notices(&self) -> Result<Vec<Notice>, Error> {
        match self.answer(Query::Outbox)? {
            Answer::Outbox(n) => Ok(n),
            other => panic!("{other:?}"),
        }
    }
}

/// A kiosk at MAIN that asks for PINs, with the connection's verification (`patron-
/// verification = session`), logged in as `login`.
pub fn kiosk(login: &str) -> Kiosk {
    Kiosk {
        login: login.into(),
        institution: "MAIN".into(),
        location: None,
        pin_required: true,
        empty_pin_ok: false,
        renewals: true,
        status_update: false,
        patron_enable: false,
        verification: crate::domain::profile::Verification::Session,
        verified_card: None,
    }
}

/// The register as tests drive it.
#[derive(Clone)]
pub struct Reg {
    pub engine: Arc<dyn Engine>,
    pub store: View,
    actor: String,
}

/// Set to a PostgreSQL server's connection string (key=value form, `host=127.0.0.1
/// user=postgres`), this runs the engine suite on the PostgreSQL engine: each [`Scratch`]
/// is then a database of its own on that server, made and migrated for the test and dropped
/// after it.
pub const POSTGRES_ENV: &str = "SIP2D_TEST_POSTGRES";

/// The file in a scratch directory that names its test database.
const POSTGRES_FILE: &str = "test-postgres";

/// A place for one test's register: a temporary directory (the PIN key), and, when the suite
/// runs on PostgreSQL, a database of its own, dropped with it.
pub struct Scratch {
    dir: tempfile::TempDir,
    /// Dropped after the directory's engine (tests drop their register first).
    _db: Option<pg::TestDb>,
}

impl Scratch {
    pub fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let db = std::env::var(POSTGRES_ENV).ok().filter(|s| !s.is_empty()).map(|server| {
            let db = pg::TestDb::create(&server).unwrap();
            std::fs::write(dir.path().join(POSTGRES_FILE), db.url()).unwrap();
            db
        });
        Scratch { dir, _db: db }
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Reg {
    /// The engine under test, over a register in `dir` (made if there is none): the
    /// PostgreSQL engine when `dir` is a [`Scratch`] on PostgreSQL, else the sled engine.
    pub fn open(dir: &std::path::Path, actor: &str) -> Result<Reg, Error> {
        Reg::open_with(dir, actor, &StoreConfig::default())
    }

    /// The same, with the store's settings (limits) given.
    pub fn open_with(dir: &std::path::Path, actor: &str, settings: &StoreConfig) -> Result<Reg, Error> {
        let engine: Arc<dyn Engine> = match std::fs::read_to_string(dir.join(POSTGRES_FILE)) {
            Ok(url) => {
                let key = secret::PinKey::load_or_create(&dir.join(PIN_KEY)).unwrap();
                Arc::new(pg::PgEngine::open(&pg::PgSettings::new(url), key, settings.limits)?)
            }
            Err(_) => Arc::new(open_or_create(dir, settings)?),
        };
        Ok(Reg { store: View { engine: engine.clone() }, engine, actor: actor.into() })
    }

    pub fn desk(&self) -> Desk<'_> {
        Desk::new(self.engine.as_ref(), &self.actor)
    }

    pub fn run(&self, op: Operation, now: Timestamp) -> Result<Receipt, Error> {
        self.desk().run(op, now)
    }

    fn patron_op(&self, op: Operation, now: Timestamp) -> Result<Patron, Error> {
        self.run(op, now)?.patron()
    }

    fn fee_op(&self, op: Operation, now: Timestamp) -> Result<Fee, Error> {
        self.run(op, now)?.fee()
    }

    pub fn add_institution(&self, code: &str, name: &str, currency: &str, tz: &str) -> Result<Institution, Error> {
        self.desk().add_institution(code, name, currency, tz, Timestamp::now())
    }

    pub fn change_institution(&self, code: &str, change: InstitutionChange) -> Result<Institution, Error> {
        self.run(Operation::ChangeInstitution { code: code.into(), change }, Timestamp::now())?.institution()
    }

    pub fn add_patron(&self, new: NewPatron, force: bool, now: Timestamp) -> Result<Added, Error> {
        match self.desk().add_patron(new, force, now) {
            Ok(p) => Ok(Added::Patron(Box::new(p))),
            Err(Error::Refused(Refusal::PossibleDuplicate(ids))) => Ok(Added::PossibleDuplicate(ids)),
            Err(e) => Err(e),
        }
    }

    pub fn find(&self, institution: &str, key: &str) -> Result<Patron, Error> {
        self.desk().find(institution, key)
    }

    pub fn search(&self, institution: &str, query: &str, now: Timestamp) -> Result<Vec<Patron>, Error> {
        match self.desk().query(Query::Search { institution: institution.into(), query: query.into(), now })? {
            Answer::Patrons(p) => Ok(p),
            other => panic!("{other:?}"),
        }
    }

    pub fn list(&self, f: &ListFilter) -> Result<Vec<Patron>, Error> {
        match self.desk().query(Query::Patrons(f.clone()))? {
            Answer::Patrons(p) => Ok(p),
            other => panic!("{other:?}"),
        }
    }

    pub fn pending_transfers(&self, to: &str) -> Result<Vec<Patron>, Error> {
        match self.desk().query(Query::PendingTransfers(to.into()))? {
            Answer::Patrons(p) => Ok(p),
            other => panic!("{other:?}"),
        }
    }

    pub fn standing(&self, p: &Patron, now: Timestamp) -> Result<Standing, Error> {
        Ok(self.desk().card(p.id, now)?.standing)
    }

    pub fn balance(&self, id: u64) -> Result<Money, Error> {
        self.desk().balance(id)
    }

    pub fn history(&self, id: u64) -> Result<Vec<AuditEntry>, Error> {
        self.desk().history(id)
    }

    pub fn edit(&self, id: u64, sets: &[(String, String)], now: Timestamp) -> Result<Patron, Error> {
        self.patron_op(Operation::EditPatron { patron: id, sets: sets.to_vec(), expect: None }, now)
    }

    pub fn set_pin(&self, id: u64, pin: &str, now: Timestamp) -> Result<Patron, Error> {
        self.patron_op(Operation::SetPin { patron: id, pin: Pin(pin.into()) }, now)
    }

    pub fn check_pin(&self, id: u64, pin: &str, now: Timestamp) -> Result<PinCheck, Error> {
        self.run(Operation::CheckPin { patron: id, pin: Pin(pin.into()) }, now)?.pin()
    }

    pub fn unlock(&self, id: u64, now: Timestamp) -> Result<Patron, Error> {
        self.patron_op(Operation::Unlock { patron: id }, now)
    }

    pub fn block(&self, id: u64, kind: &str, note: Option<&str>, now: Timestamp) -> Result<Patron, Error> {
        self.patron_op(Operation::Block { patron: id, kind: kind.into(), note: note.map(Into::into) }, now)
    }

    pub fn unblock(&self, id: u64, kind: Option<&str>, now: Timestamp) -> Result<Patron, Error> {
        self.patron_op(Operation::Unblock { patron: id, kind: kind.map(Into::into) }, now)
    }

    pub fn add_note(&self, id: u64, kind: &str, text: &str, public: bool, now: Timestamp) -> Result<Patron, Error> {
        self.patron_op(Operation::AddNote { patron: id, kind: kind.into(), text: text.into(), public }, now)
    }

    pub fn remove_note(&self, id: u64, note: u32, now: Timestamp) -> Result<Patron, Error> {
        self.patron_op(Operation::RemoveNote { patron: id, note }, now)
    }

    pub fn set_proxy(&self, proxy: u64, for_whom: u64, allow: bool, now: Timestamp) -> Result<Patron, Error> {
        self.patron_op(Operation::SetProxy { proxy, for_whom, allow }, now)
    }

    pub fn set_active(&self, id: u64, active: bool, now: Timestamp) -> Result<Patron, Error> {
        self.patron_op(Operation::SetActive { patron: id, active }, now)
    }

    pub fn add_identifier(
        &self,
        id: u64,
        kind: &str,
        value: &str,
        note: Option<&str>,
        now: Timestamp,
    ) -> Result<Patron, Error> {
        let op =
            Operation::AddIdentifier { patron: id, kind: kind.into(), value: value.into(), note: note.map(Into::into) };
        self.patron_op(op, now)
    }

    pub fn set_identifier_active(&self, id: u64, value: &str, active: bool, now: Timestamp) -> Result<Patron, Error> {
        self.patron_op(Operation::SetIdentifierActive { patron: id, value: value.into(), active }, now)
    }

    pub fn request_transfer(&self, id: u64, to: &str, now: Timestamp) -> Result<Patron, Error> {
        self.patron_op(Operation::RequestTransfer { patron: id, to: to.into() }, now)
    }

    pub fn decide_transfer(&self, id: u64, accept: bool, now: Timestamp) -> Result<Patron, Error> {
        self.patron_op(Operation::DecideTransfer { patron: id, accept }, now)
    }

    pub fn delete(&self, id: u64, now: Timestamp) -> Result<Patron, Error> {
        self.patron_op(Operation::DeletePatron { patron: id }, now)
    }

    pub fn restore(&self, id: u64, now: Timestamp) -> Result<Patron, Error> {
        self.patron_op(Operation::RestorePatron { patron: id }, now)
    }

    pub fn purge(&self, now: Timestamp, dry_run: bool) -> Result<PurgeReport, Error> {
        self.run(Operation::Purge { dry_run }, now)?.purged()
    }

    pub fn add_fee(
        &self,
        patron: u64,
        kind: FeeKind,
        amount: Money,
        item: Option<&str>,
        comment: Option<&str>,
        now: Timestamp,
    ) -> Result<Fee, Error> {
        let op =
            Operation::AddFee { patron, kind, amount, item: item.map(Into::into), comment: comment.map(Into::into) };
        self.fee_op(op, now)
    }

    pub fn pay_fee(&self, fee: u64, amount: Money, transaction: Option<&str>, now: Timestamp) -> Result<Fee, Error> {
        self.fee_op(Operation::PayFee { fee, amount, transaction: transaction.map(Into::into) }, now)
    }

    pub fn waive_fee(&self, fee: u64, reason: &str, now: Timestamp) -> Result<Fee, Error> {
        self.fee_op(Operation::WaiveFee { fee, reason: reason.into() }, now)
    }

    pub fn dispute_fee(&self, fee: u64, now: Timestamp) -> Result<Fee, Error> {
        self.fee_op(Operation::DisputeFee { fee }, now)
    }

    pub fn restore_fee(&self, fee: u64, now: Timestamp) -> Result<Fee, Error> {
        self.fee_op(Operation::RestoreFee { fee }, now)
    }

    pub fn add_item(&self, new: NewItem) -> Result<Item, Error> {
        self.desk().add_item(new, Timestamp::now())
    }

    pub fn item(&self, barcode: &str) -> Result<Item, Error> {
        Ok(self.desk().item(barcode)?.item)
    }

    pub fn delete_item(&self, barcode: &str) -> Result<(), Error> {
        self.run(Operation::DeleteItem { barcode: barcode.into() }, Timestamp::now())?.done()
    }

    pub fn checkout(&self, patron: u64, item: &str, accept_fee: bool, now: Timestamp) -> Result<Loan, Error> {
        self.run(Operation::Lend { patron, item: item.into(), accept_fee }, now)?.loan()
    }

    pub fn checkin(&self, item: &str, now: Timestamp) -> Result<Option<Loan>, Error> {
        self.run(Operation::Return { item: item.into() }, now)?.returned()
    }

    pub fn place_hold(
        &self,
        patron: u64,
        target: HoldTarget,
        pickup: &str,
        expires: Option<Date>,
        now: Timestamp,
    ) -> Result<Hold, Error> {
        self.run(Operation::PlaceHold { patron, target, pickup: pickup.into(), expires }, now)?.hold()
    }

    pub fn cancel_hold(&self, id: u64, now: Timestamp) -> Result<Hold, Error> {
        self.run(Operation::CancelHold { hold: id }, now)?.hold()
    }

    pub fn queue_position(&self, h: &Hold) -> Result<Option<usize>, Error> {
        let Some(item) = &h.item else { return Ok(None) };
        match self.desk().query(Query::Holds { patron: None, item: Some(item.clone()) })? {
            Answer::Holds(q) => Ok(q.into_iter().find(|q| q.hold.id == h.id).and_then(|q| q.position)),
            other => panic!("{other:?}"),
        }
    }

    pub fn add_account(&self, login: &str, pw: &str, inst: &str, loc: Option<&str>) -> Result<Account, Error> {
        self.desk().add_account(login, pw, inst, loc, Timestamp::now())
    }

    pub fn set_account_password(&self, login: &str, pw: &str) -> Result<Account, Error> {
        let op = Operation::SetAccountPassword { login: login.into(), password_hash: hash_password(pw)? };
        self.run(op, Timestamp::now())?.account()
    }

    pub fn set_account_profile(&self, login: &str, sets: &[(String, String)]) -> Result<Account, Error> {
        self.run(Operation::SetAccountProfile { login: login.into(), sets: sets.to_vec() }, Timestamp::now())?.account()
    }

    pub fn remove_account(&self, login: &str) -> Result<(), Error> {
        self.run(Operation::RemoveAccount { login: login.into() }, Timestamp::now())?.done()
    }

    /// The account, when the password is its password (the server's 93).
    pub fn verify_account(&self, login: &str, pw: &str) -> Result<Option<Account>, Error> {
        match self.desk().query(Query::Account(login.into())) {
            Ok(Answer::Account(a)) => Ok(secret::verify_password(pw, &a.password_hash).then_some(*a)),
            Err(Error::Refused(Refusal::NoAccount(_))) => Ok(None),
            other => panic!("{other:?}"),
        }
    }

    pub fn import<R: std::io::BufRead + std::io::Seek>(
        &self,
        input: R,
        options: &ImportOptions,
        now: Timestamp,
    ) -> Result<ImportReport, Error> {
        exchange::import(self.engine.as_ref(), input, options, &By::new(self.actor.clone(), now))
    }

    pub fn export(&self, out: &mut Vec<u8>) -> Result<usize, Error> {
        self.engine.export(&mut |line| exchange::write_line(out, line))
    }
}
