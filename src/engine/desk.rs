//! Operations as staff tools make them: run on a thread that may wait, with the receipt's
//! record taken out. The command line, the demo register and tests use it.

use jiff::Timestamp;

use crate::domain::rules::PinCheck;
use crate::domain::*;

use super::ops::*;
use super::{Engine, Error};

/// An engine, and the name the audit history records for what is done through it.
#[derive(Clone, Copy)]
pub struct Desk<'e> {
    pub engine: &'e dyn Engine,
    pub actor: &'e str,
}

/// A receipt of another kind than the operation gives: a bug, said as one.
fn unexpected(r: &Receipt) -> Error {
    match r {
        // Refused, though what the refusal wrote stands.
        Receipt::Refused(why) => Error::Refused(why.clone()),
        r => Error::Refused(Refusal::rule(format!("unexpected receipt {r:?}"))),
    }
}

macro_rules! take {
    ($name:ident, $variant:ident, $t:ty) => {
        pub fn $name(self) -> Result<$t, Error> {
            match self {
                Receipt::$variant(v) => Ok(*v),
                other => Err(unexpected(&other)),
            }
        }
    };
}

impl Receipt {
    take!(patron, Patron, Patron);
    take!(fee, Fee, Fee);
    take!(item, Item, Item);
    take!(hold, Hold, Hold);
    take!(account, Account, Account);
    take!(staff, Staff, Staff);
    take!(institution, Institution, Institution);
    take!(notice, Notice, Notice);

    pub fn loan(self) -> Result<Loan, Error> {
        match self {
            Receipt::Loan(l) => Ok(l),
            other => Err(unexpected(&other)),
        }
    }

    pub fn returned(self) -> Result<Option<Loan>, Error> {
        match self {
            Receipt::Returned(l) => Ok(l),
            other => Err(unexpected(&other)),
        }
    }

    pub fn pin(self) -> Result<PinCheck, Error> {
        match self {
            Receipt::Pin(p) => Ok(p),
            other => Err(unexpected(&other)),
        }
    }

    pub fn optouts(self) -> Result<Vec<NoticeKind>, Error> {
        match self {
            Receipt::Optouts(k) => Ok(k),
            other => Err(unexpected(&other)),
        }
    }

    pub fn purged(self) -> Result<PurgeReport, Error> {
        match self {
            Receipt::Purged(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    pub fn done(self) -> Result<(), Error> {
        match self {
            Receipt::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }
}

impl<'e> Desk<'e> {
    pub fn new(engine: &'e dyn Engine, actor: &'e str) -> Desk<'e> {
        Desk { engine, actor }
    }

    /// Runs an operation at `now` and waits until it is durable. A refusal whose writes stand
    /// comes back as the refusal.
    pub fn run(&self, op: Operation, now: Timestamp) -> Result<Receipt, Error> {
        match self.engine.run(op, By::new(self.actor, now)).wait()? {
            Receipt::Refused(r) => Err(Error::Refused(r)),
            r => Ok(r),
        }
    }

    pub fn query(&self, q: Query) -> Result<Answer, Error> {
        self.engine.query(q).wait()
    }

    pub fn add_institution(
        &self,
        code: &str,
        name: &str,
        currency: &str,
        timezone: &str,
        now: Timestamp,
    ) -> Result<Institution, Error> {
        let op = Operation::AddInstitution {
            code: code.into(),
            name: name.into(),
            currency: currency.into(),
            timezone: timezone.into(),
        };
        self.run(op, now)?.institution()
    }

    pub fn add_patron(&self, new: NewPatron, force: bool, now: Timestamp) -> Result<Patron, Error> {
        self.run(Operation::AddPatron { new: Box::new(new), force }, now)?.patron()
    }

    pub fn add_item(&self, new: NewItem, now: Timestamp) -> Result<Item, Error> {
        self.run(Operation::AddItem(Box::new(new)), now)?.item()
    }

    /// Adds a terminal account, hashing the password here (Argon2: slow on purpose).
    pub fn add_account(
        &self,
        login: &str,
        password: &str,
        institution: &str,
        location: Option<&str>,
        now: Timestamp,
    ) -> Result<Account, Error> {
        let password_hash = hash_password(password)?;
        let op = Operation::AddAccount {
            login: login.into(),
            password_hash,
            institution: institution.into(),
            location: location.map(Into::into),
        };
        self.run(op, now)?.account()
    }

    pub fn set_account_profile(&self, login: &str, sets: &[(&str, &str)], now: Timestamp) -> Result<Account, Error> {
        let sets = sets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.run(Operation::SetAccountProfile { login: login.into(), sets }, now)?.account()
    }

    pub fn add_fee(&self, patron: u64, kind: FeeKind, amount: Money, now: Timestamp) -> Result<Fee, Error> {
        self.run(Operation::AddFee { patron, kind, amount, item: None, comment: None }, now)?.fee()
    }

    // -- reads of the committed view ---------------------------------------------------------

    pub fn patron(&self, id: u64) -> Result<Patron, Error> {
        match self.query(Query::Patron(id))? {
            Answer::Patron(p) => Ok(*p),
            other => Err(unexpected_answer(&other)),
        }
    }

    /// The patron `key` names at the institution (`#id`, primary id, identifier, e-mail).
    pub fn find(&self, institution: &str, key: &str) -> Result<Patron, Error> {
        match self.query(Query::FindPatron { institution: institution.into(), key: key.into() })? {
            Answer::Patron(p) => Ok(*p),
            other => Err(unexpected_answer(&other)),
        }
    }

    pub fn item(&self, barcode: &str) -> Result<ItemFacts, Error> {
        match self.query(Query::Item(barcode.into()))? {
            Answer::Item(f) => Ok(*f),
            other => Err(unexpected_answer(&other)),
        }
    }

    /// An item's loan, if it is on loan.
    pub fn loan(&self, barcode: &str) -> Result<Option<Loan>, Error> {
        Ok(self.item(barcode)?.loan)
    }

    /// A patron's fees and balance.
    pub fn fees(&self, patron: u64) -> Result<(Vec<Fee>, Money), Error> {
        match self.query(Query::Fees(patron))? {
            Answer::Fees(f, b) => Ok((f, b)),
            other => Err(unexpected_answer(&other)),
        }
    }

    pub fn balance(&self, patron: u64) -> Result<Money, Error> {
        Ok(self.fees(patron)?.1)
    }

    pub fn holds_of(&self, patron: u64) -> Result<Vec<Hold>, Error> {
        match self.query(Query::Holds { patron: Some(patron), item: None })? {
            Answer::Holds(h) => Ok(h.into_iter().map(|q| q.hold).collect()),
            other => Err(unexpected_answer(&other)),
        }
    }

    pub fn history(&self, patron: u64) -> Result<Vec<AuditEntry>, Error> {
        match self.query(Query::History(patron))? {
            Answer::History(h) => Ok(h),
            other => Err(unexpected_answer(&other)),
        }
    }

    pub fn card(&self, patron: u64, now: Timestamp) -> Result<Card, Error> {
        match self.query(Query::Card { patron, now })? {
            Answer::Card(c) => Ok(*c),
            other => Err(unexpected_answer(&other)),
        }
    }
}

fn unexpected_answer(a: &Answer) -> Error {
    Error::Refused(Refusal::rule(format!("unexpected answer {a:?}")))
}

/// A terminal password as stored: an Argon2 hash, refused when shorter than 8 characters.
/// A staff password as stored: at least 10 characters, hashed with Argon2.
pub fn hash_staff_password(password: &str) -> Result<String, Error> {
    if password.chars().count() < 10 {
        return Err(Error::Refused(Refusal::rule("a staff password needs at least 10 characters")));
    }
    crate::domain::secret::hash_password(password)
        .map_err(|e| Error::Refused(Refusal::rule(format!("cannot hash the password: {e}"))))
}

pub fn hash_password(password: &str) -> Result<String, Error> {
    if password.chars().count() < 8 {
        return Err(Error::Refused(Refusal::rule("a terminal password needs at least 8 characters")));
    }
    crate::domain::secret::hash_password(password)
        .map_err(|e| Error::Refused(Refusal::rule(format!("cannot hash the password: {e}"))))
}
