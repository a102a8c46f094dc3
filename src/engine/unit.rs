//! A unit of work as it runs on the writer: the state it reads and changes, and the writes it
//! yields for the commit. Refused, a unit's changes are dropped with it.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use crate::domain::secret::PinKey;
use crate::domain::*;

use super::By;
use super::state::{State, Undo};
use super::store::Write;

/// Reads a patron's stored audit history (which the working set does not hold), with each
/// entry's storage key.
pub type History<'a> = &'a dyn Fn(u64) -> Vec<(Vec<u8>, AuditEntry)>;

/// The state a unit runs on: the writer's own, changed in place, or a shared one (the view a
/// reader tries first) that is copied only when the unit first changes it. Copying the view
/// for every status request cost a count on each of its maps' shared roots, and back, on
/// cache lines every connection's thread touches.
pub enum Held<'a> {
    Own(&'a mut State),
    Shared(&'a State),
    /// The shared state, copied when the unit first changed it.
    Copied(Box<State>),
}

impl Deref for Held<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        match self {
            Held::Own(s) => s,
            Held::Shared(s) => s,
            Held::Copied(s) => s,
        }
    }
}

impl DerefMut for Held<'_> {
    fn deref_mut(&mut self) -> &mut State {
        if let Held::Shared(s) = *self {
            *self = Held::Copied(Box::new(s.clone()));
        }
        match self {
            Held::Own(s) => s,
            Held::Copied(s) => s,
            Held::Shared(_) => unreachable!("a shared state is replaced by its copy just above"),
        }
    }
}

pub struct Unit<'a> {
    pub state: Held<'a>,
    writes: Vec<Write>,
    /// How to put back what each applied write changed, in order.
    undos: Vec<Undo>,
    /// The id and audit counters before the unit.
    counters: (u64, u64),
    pub key: &'a PinKey,
    pub by: &'a By,
    history: Option<History<'a>>,
    /// The institutions of the staff member the unit runs for (set by `units::staff::
    /// authorise`): patrons of other institutions are not there for this unit (not even one
    /// asked to move to theirs, which they may see but not change). None: the system's.
    pub scope: Option<Vec<String>>,
}

impl<'a> Unit<'a> {
    pub fn new(state: &'a mut State, key: &'a PinKey, by: &'a By) -> Unit<'a> {
        Unit::on(Held::Own(state), key, by)
    }

    /// A unit that reads `state` and copies it only if it changes anything (then it is not
    /// kept: the caller runs the operation again on the writer).
    pub fn reading(state: &'a State, key: &'a PinKey, by: &'a By) -> Unit<'a> {
        Unit::on(Held::Shared(state), key, by)
    }

    fn on(state: Held<'a>, key: &'a PinKey, by: &'a By) -> Unit<'a> {
        let counters = state.counters();
        Unit { state, writes: Vec::new(), undos: Vec::new(), counters, key, by, history: None, scope: None }
    }

    /// Whether the unit has copied the shared state it was given (it changed something).
    pub fn copied(&self) -> bool {
        matches!(self.state, Held::Copied(_))
    }

    /// A unit that may read stored audit history (purge).
    pub fn with_history(mut self, history: History<'a>) -> Unit<'a> {
        self.history = Some(history);
        self
    }

    /// A patron's stored audit history (none when this unit was not given a reader).
    pub fn history(&self, patron: u64) -> Vec<(Vec<u8>, AuditEntry)> {
        self.history.map(|h| h(patron)).unwrap_or_default()
    }

    /// The writes to commit.
    pub fn into_writes(self) -> Vec<Write> {
        self.writes
    }

    /// Undoes everything the unit did to the state (it was refused), and drops its writes.
    pub fn roll_back(&mut self) {
        self.roll_back_to(0, 0, self.counters);
    }

    fn roll_back_to(&mut self, writes: usize, undos: usize, counters: (u64, u64)) {
        while self.undos.len() > undos {
            if let Some(u) = self.undos.pop() {
                self.state.undo(u);
            }
        }
        self.writes.truncate(writes);
        self.state.set_counters(counters);
    }

    pub fn writes(&self) -> usize {
        self.writes.len()
    }

    pub fn now(&self) -> jiff::Timestamp {
        self.by.now
    }

    pub fn actor(&self) -> &str {
        &self.by.actor
    }

    /// Applies a change to the state, to be committed with the unit.
    pub fn put(&mut self, w: Write) -> Result<(), Refusal> {
        // A write that is refused changes nothing (`State::apply` checks before it changes).
        let undo = self.state.undo_of(&w);
        self.state.apply(&w)?;
        self.undos.push(undo);
        self.writes.push(w);
        Ok(())
    }

    /// A fresh record id.
    pub fn new_id(&mut self) -> u64 {
        self.state.next_id()
    }

    /// Records an audit entry for a patron.
    pub fn audit(&mut self, patron: u64, action: &str, changes: Vec<(String, String, String)>) {
        self.audit_at(patron, action, changes, self.by.now);
    }

    /// Records an audit entry for what happened at `at` (a kiosk's off-line return).
    pub fn audit_at(&mut self, patron: u64, action: &str, changes: Vec<(String, String, String)>, at: jiff::Timestamp) {
        let seq = self.state.next_audit_seq();
        let entry = AuditEntry { patron, at, by: self.by.actor.clone(), action: action.into(), changes };
        self.writes.push(Write::Audit(seq, Box::new(entry)));
    }

    /// Writes a notice to the outbox with the unit.
    pub fn notice(&mut self, n: Notice) {
        self.writes.push(Write::Notice(Box::new(n)));
    }

    /// Runs `f` as a part that stands or falls alone: refused, it leaves nothing behind, and
    /// the rest of the unit goes on.
    pub fn attempt<T, E>(&mut self, f: impl FnOnce(&mut Unit<'_>) -> Result<T, E>) -> Result<T, E> {
        let (writes, undos, counters) = (self.writes.len(), self.undos.len(), self.state.counters());
        let r = f(self);
        if r.is_err() {
            self.roll_back_to(writes, undos, counters);
        }
        r
    }

    pub fn patron(&self, id: u64) -> Result<Patron, Refusal> {
        self.patron_shared(id).map(|p| Patron::clone(&p))
    }

    /// The patron's record shared, not copied, for a unit that reads it and writes others.
    pub fn patron_shared(&self, id: u64) -> Result<Arc<Patron>, Refusal> {
        match self.state.patron_shared(id) {
            Some(p) if self.scope.as_deref().is_none_or(|s| s.contains(&p.institution)) => Ok(p),
            _ => Err(Refusal::NoPatron(format!("#{id}"))),
        }
    }

    pub fn institution_shared(&self, code: &str) -> Result<Arc<Institution>, Refusal> {
        self.state.institution_shared(code).ok_or_else(|| Refusal::NoInstitution(code.into()))
    }

    pub fn institution(&self, code: &str) -> Result<Institution, Refusal> {
        self.institution_shared(code).map(|i| Institution::clone(&i))
    }

    pub fn item(&self, barcode: &str) -> Result<Item, Refusal> {
        self.state.item(barcode).cloned().ok_or_else(|| Refusal::NoItem(barcode.into()))
    }

    /// Changes a patron: `change` edits the record and says what changed for the audit
    /// history (entry `action`); the record and its entry are written together.
    pub fn update_patron(
        &mut self,
        id: u64,
        action: &str,
        change: impl FnOnce(&mut Patron) -> Result<Vec<(String, String, String)>, Refusal>,
    ) -> Result<Patron, Refusal> {
        let mut p = self.patron(id)?;
        let changes = change(&mut p)?;
        self.put(Write::Patron(Box::new(p.clone())))?;
        self.audit(id, action, changes);
        Ok(p)
    }
}
