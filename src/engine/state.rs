//! The register in memory: every record the hot path and staff views read, with the indexes
//! they search by. Persistent maps (imbl) make a copy O(1), so the writer can publish what a
//! durable batch left as the view readers see, and drop a failed batch's changes, without
//! copying the register; a refused unit is undone by the undos its writes left.

use std::sync::Arc;

use imbl::{HashMap, OrdMap, OrdSet};

use super::store::{Kind, Loaded, Store, StoreError, Write};
use super::terminals::{LastChange, PinWindow};
use crate::domain::*;

/// A key of the maps and indexes: shared text, so that copying an index node (each batch's
/// first change to it copies it, the published view keeping the old one) counts references
/// instead of copying every key in it.
type Key = Arc<str>;

fn key(s: &str) -> Key {
    Arc::from(s)
}

/// A unique value's key in the claims index: institution, NUL, value.
fn scoped(institution: &str, value: &str) -> String {
    let mut k = String::with_capacity(institution.len() + 1 + value.len());
    k.push_str(institution);
    k.push('\0');
    k.push_str(value);
    k
}

fn email_key(institution: &str, email: &str) -> String {
    scoped(institution, &email.to_lowercase())
}

/// The name index key: last and first name lower-cased and the birth date, then the id (so
/// that namesakes are apart); searched by prefix.
fn name_key(p: &Patron) -> String {
    let birth = p.birth_date.map(|d| d.to_string()).unwrap_or_default();
    let who = format!("{}\0{}\0{birth}\0", p.last_name.to_lowercase(), p.first_name.to_lowercase());
    format!("{}{:020}", scoped(&p.institution, &who), p.id)
}

/// The keys under which a patron claims unique values: (what, key, value).
fn claims(p: &Patron) -> impl Iterator<Item = (&'static str, String, &str)> {
    std::iter::once(("primary id", scoped(&p.institution, &p.primary_id), p.primary_id.as_str()))
        .chain(p.identifiers.iter().map(|i| ("identifier", scoped(&p.institution, &i.value), i.value.as_str())))
}

/// Puts `key`'s entry back as it was: `old`, or none.
fn put_back<K: Ord + Clone, V: Clone>(map: &mut OrdMap<K, V>, key: K, old: Option<V>) {
    match old {
        Some(v) => {
            map.insert(key, v);
        }
        None => {
            map.remove(&key);
        }
    }
}

/// A record as it was before a write: see [`State::undo_of`].
pub enum Undo {
    Nothing,
    Institution(String, Option<Arc<Institution>>),
    Patron(u64, Option<Arc<Patron>>),
    Item(String, Option<Arc<Item>>),
    Loan(String, Option<Arc<Loan>>),
    Fee(u64, Option<Arc<Fee>>),
    Hold(u64, Option<Arc<Hold>>),
    Account(String, Option<Arc<Account>>),
    Staff(String, Option<Arc<Staff>>),
    Optouts(u64, Option<Vec<NoticeKind>>),
    Link(String, Option<Arc<PinLink>>),
    EmailCheck(String, Option<Arc<EmailCheck>>),
    PinWindow(String, Option<Arc<PinWindow>>),
    LastChange(String, Option<Arc<LastChange>>),
}

#[derive(Clone, Default)]
pub struct State {
    institutions: OrdMap<String, Arc<Institution>>,
    accounts: OrdMap<String, Arc<Account>>,
    staff: OrdMap<String, Arc<Staff>>,
    /// Bearer token digest -> staff login.
    tokens: HashMap<String, String>,
    patrons: OrdMap<u64, Arc<Patron>>,
    /// Primary ids and identifiers -> patron.
    claims: HashMap<Key, u64>,
    emails: HashMap<Key, u64>,
    names: OrdSet<Key>,
    items: OrdMap<Key, Arc<Item>>,
    loans: OrdMap<Key, Arc<Loan>>,
    loans_by_patron: OrdSet<(u64, Key)>,
    fees: OrdMap<u64, Arc<Fee>>,
    fees_by_patron: OrdSet<(u64, u64)>,
    holds: OrdMap<u64, Arc<Hold>>,
    holds_by_patron: OrdSet<(u64, u64)>,
    /// (item, placed in µs, hold id): an item's queue in order.
    holds_by_item: OrdSet<(Key, i64, u64)>,
    optouts: OrdMap<u64, Vec<NoticeKind>>,
    /// Patrons' set-PIN links, by their token's digest.
    links: OrdMap<String, Arc<PinLink>>,
    /// New e-mail addresses waiting for their link, by the token's digest.
    email_checks: OrdMap<String, Arc<EmailCheck>>,
    /// Terminals' wrong PINs in their current window, by login.
    pin_windows: OrdMap<String, Arc<PinWindow>>,
    /// Terminals' last changes, by login and address (`terminals::change_key`).
    last_changes: OrdMap<String, Arc<LastChange>>,
    last_id: u64,
    audit_seq: u64,
    /// The caps units check (not stored: the server's configuration).
    limits: super::RegisterLimits,
}

impl State {
    /// The working set of a store as loaded. Indexes are rebuilt from the records; a record
    /// that breaks a uniqueness rule (which no writer of this version lets through) is
    /// reported rather than loaded over another.
    pub fn build(l: Loaded) -> Result<State, Refusal> {
        let mut s = State { last_id: l.last_id, audit_seq: l.audit_seq, ..State::default() };
        for i in l.institutions {
            s.institutions.insert(i.code.clone(), Arc::new(i));
        }
        for a in l.accounts {
            s.accounts.insert(a.login.clone(), Arc::new(a));
        }
        for m in l.staff {
            s.put_staff(Arc::new(m));
        }
        for p in l.patrons {
            s.put_patron(Arc::new(p))?;
        }
        for i in l.items {
            s.items.insert(key(&i.barcode), Arc::new(i));
        }
        for loan in l.loans {
            s.put_loan(Arc::new(loan));
        }
        for f in l.fees {
            s.put_fee(Arc::new(f));
        }
        for h in l.holds {
            s.put_hold(Arc::new(h));
        }
        for (p, kinds) in l.optouts {
            s.optouts.insert(p, kinds);
        }
        for link in l.links {
            s.links.insert(link.digest.clone(), Arc::new(link));
        }
        for c in l.email_checks {
            s.email_checks.insert(c.digest.clone(), Arc::new(c));
        }
        for w in l.pin_windows {
            s.pin_windows.insert(w.terminal.clone(), Arc::new(w));
        }
        for c in l.last_changes {
            s.last_changes.insert(c.key(), Arc::new(c));
        }
        Ok(s)
    }

    /// The working set of a store, read at start. Items (the most numerous records) are read
    /// on a second thread while patrons and their indexes are built on this one.
    pub fn load(store: &Store) -> Result<State, super::Error> {
        let (last_id, audit_seq) = store.counters()?;
        std::thread::scope(|scope| {
            let items = scope.spawn(|| {
                let mut items = OrdMap::new();
                for i in store.records::<Item>(Kind::Item) {
                    let i = i?;
                    items.insert(key(&i.barcode), Arc::new(i));
                }
                Ok::<_, StoreError>(items)
            });
            let mut s = State { last_id, audit_seq, ..State::default() };
            for i in store.records::<Institution>(Kind::Institution) {
                let i = i?;
                s.institutions.insert(i.code.clone(), Arc::new(i));
            }
            for a in store.records::<Account>(Kind::Account) {
                let a = a?;
                s.accounts.insert(a.login.clone(), Arc::new(a));
            }
            for m in store.records::<Staff>(Kind::Staff) {
                s.put_staff(Arc::new(m?));
            }
            for p in store.records::<Patron>(Kind::Patron) {
                s.put_patron(Arc::new(p?))?;
            }
            for l in store.records::<Loan>(Kind::Loan) {
                s.put_loan(Arc::new(l?));
            }
            for f in store.records::<Fee>(Kind::Fee) {
                s.put_fee(Arc::new(f?));
            }
            for h in store.records::<Hold>(Kind::Hold) {
                s.put_hold(Arc::new(h?));
            }
            for link in store.records::<PinLink>(Kind::Link) {
                let link = link?;
                s.links.insert(link.digest.clone(), Arc::new(link));
            }
            for c in store.records::<EmailCheck>(Kind::EmailCheck) {
                let c = c?;
                s.email_checks.insert(c.digest.clone(), Arc::new(c));
            }
            for w in store.records::<PinWindow>(Kind::PinWindow) {
                let w = w?;
                s.pin_windows.insert(w.terminal.clone(), Arc::new(w));
            }
            for c in store.records::<LastChange>(Kind::LastChange) {
                let c = c?;
                s.last_changes.insert(c.key(), Arc::new(c));
            }
            for (p, kinds) in store.optouts()? {
                s.optouts.insert(p, kinds);
            }
            s.items = items
                .join()
                .map_err(|_| StoreError::Corrupt { kind: "item", detail: "the loader stopped".into() })??;
            Ok(s)
        })
    }

    // -- reads ------------------------------------------------------------------------------

    pub fn institution(&self, code: &str) -> Option<&Institution> {
        self.institutions.get(code).map(Arc::as_ref)
    }

    /// The institution's record, shared rather than copied (every checkout reads it).
    pub fn institution_shared(&self, code: &str) -> Option<Arc<Institution>> {
        self.institutions.get(code).cloned()
    }

    pub fn institutions(&self) -> impl Iterator<Item = &Institution> {
        self.institutions.values().map(Arc::as_ref)
    }

    pub fn account(&self, login: &str) -> Option<&Account> {
        self.accounts.get(login).map(Arc::as_ref)
    }

    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.accounts.values().map(Arc::as_ref)
    }

    pub fn staff(&self, login: &str) -> Option<&Staff> {
        self.staff.get(login).map(Arc::as_ref)
    }

    pub fn staff_list(&self) -> impl Iterator<Item = &Staff> {
        self.staff.values().map(Arc::as_ref)
    }

    /// The member a bearer token (by its digest) belongs to.
    pub fn staff_by_token(&self, digest: &str) -> Option<&Staff> {
        self.tokens.get(digest).and_then(|login| self.staff(login))
    }

    fn put_staff(&mut self, m: Arc<Staff>) {
        self.remove_staff(&m.login);
        for t in &m.tokens {
            self.tokens.insert(t.digest.clone(), m.login.clone());
        }
        self.staff.insert(m.login.clone(), m);
    }

    fn remove_staff(&mut self, login: &str) {
        if let Some(old) = self.staff.remove(login) {
            for t in &old.tokens {
                self.tokens.remove(&t.digest);
            }
        }
    }

    pub fn patron(&self, id: u64) -> Option<&Patron> {
        self.patrons.get(&id).map(Arc::as_ref)
    }

    /// The patron's record itself, shared rather than copied (the kiosk's hot path reads it
    /// for every request).
    pub fn patron_shared(&self, id: u64) -> Option<Arc<Patron>> {
        self.patrons.get(&id).cloned()
    }

    pub fn patrons(&self) -> impl Iterator<Item = &Patron> {
        self.patrons.values().map(Arc::as_ref)
    }

    pub fn patron_count(&self) -> usize {
        self.patrons.len()
    }

    /// Who holds this primary id or identifier at the institution.
    pub fn identifier_owner(&self, institution: &str, value: &str) -> Option<u64> {
        self.claims.get(scoped(institution, value).as_str()).copied()
    }

    pub fn patron_by_identifier(&self, institution: &str, value: &str) -> Option<&Patron> {
        self.identifier_owner(institution, value).and_then(|id| self.patron(id))
    }

    pub fn email_owner(&self, institution: &str, email: &str) -> Option<u64> {
        self.emails.get(email_key(institution, email).as_str()).copied()
    }

    pub fn patron_by_email(&self, institution: &str, email: &str) -> Option<&Patron> {
        self.email_owner(institution, email).and_then(|id| self.patron(id))
    }

    /// Patrons whose lower-cased `last\0first` starts with `prefix`, in name order.
    pub fn patrons_by_name(&self, institution: &str, prefix: &str) -> Vec<&Patron> {
        let from = scoped(institution, &prefix.to_lowercase());
        self.names
            .range(key(&from)..)
            .take_while(|k| k.starts_with(from.as_str()))
            .filter_map(|k| k.get(k.len() - 20..).and_then(|id| id.parse().ok()))
            .filter_map(|id| self.patron(id))
            .collect()
    }

    /// Other patrons with the same names and birth date (likely the same person).
    pub fn same_person(&self, p: &Patron) -> Vec<u64> {
        let full = name_key(p);
        let prefix = full.get(..full.len() - 20).unwrap_or_default();
        self.names
            .range(key(prefix)..)
            .take_while(|k| k.starts_with(prefix))
            .filter_map(|k| k.get(k.len() - 20..).and_then(|id| id.parse().ok()))
            .filter(|id| *id != p.id)
            .collect()
    }

    pub fn item(&self, barcode: &str) -> Option<&Item> {
        self.items.get(barcode).map(Arc::as_ref)
    }

    pub fn items(&self) -> impl Iterator<Item = &Item> {
        self.items.values().map(Arc::as_ref)
    }

    pub fn loan(&self, item: &str) -> Option<&Loan> {
        self.loans.get(item).map(Arc::as_ref)
    }

    pub fn loans(&self) -> impl Iterator<Item = &Loan> {
        self.loans.values().map(Arc::as_ref)
    }

    pub fn loans_of(&self, patron: u64) -> Vec<&Loan> {
        self.loans_by_patron
            .range((patron, key(""))..)
            .take_while(|(p, _)| *p == patron)
            .filter_map(|(_, item)| self.loan(item))
            .collect()
    }

    pub fn loan_count(&self, patron: u64) -> u32 {
        let n = self.loans_by_patron.range((patron, key(""))..).take_while(|(p, _)| *p == patron).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    pub fn fee(&self, id: u64) -> Option<&Fee> {
        self.fees.get(&id).map(Arc::as_ref)
    }

    pub fn fees(&self) -> impl Iterator<Item = &Fee> {
        self.fees.values().map(Arc::as_ref)
    }

    /// A patron's fees, oldest first.
    pub fn fees_of(&self, patron: u64) -> Vec<&Fee> {
        self.fees_by_patron
            .range((patron, 0)..)
            .take_while(|(p, _)| *p == patron)
            .filter_map(|(_, id)| self.fee(*id))
            .collect()
    }

    /// What the patron owes: active fees less payments, disputed ones left out.
    pub fn balance(&self, patron: u64) -> Money {
        rules::balance(self.fees_of(patron))
    }

    pub fn hold(&self, id: u64) -> Option<&Hold> {
        self.holds.get(&id).map(Arc::as_ref)
    }

    pub fn holds(&self) -> impl Iterator<Item = &Hold> {
        self.holds.values().map(Arc::as_ref)
    }

    pub fn holds_of(&self, patron: u64) -> Vec<&Hold> {
        self.holds_by_patron
            .range((patron, 0)..)
            .take_while(|(p, _)| *p == patron)
            .filter_map(|(_, id)| self.hold(*id))
            .collect()
    }

    /// The holds on an item, the queue in order (oldest first).
    pub fn holds_on(&self, item: &str) -> Vec<&Hold> {
        self.holds_by_item
            .range((key(item), i64::MIN, 0)..)
            .take_while(|(i, _, _)| **i == *item)
            .filter_map(|(_, _, id)| self.hold(*id))
            .collect()
    }

    /// A hold's place in its item's queue (1 is next), or none for a title hold.
    pub fn queue_position(&self, hold: &Hold) -> Option<usize> {
        let item = hold.item.as_deref()?;
        self.holds_on(item).iter().position(|h| h.id == hold.id).map(|p| p + 1)
    }

    /// The set-PIN link whose token has this digest.
    pub fn link(&self, digest: &str) -> Option<&PinLink> {
        self.links.get(digest).map(Arc::as_ref)
    }

    /// Every set-PIN link.
    pub fn links(&self) -> impl Iterator<Item = &PinLink> {
        self.links.values().map(Arc::as_ref)
    }

    /// Every new e-mail address waiting for its link.
    pub fn email_checks(&self) -> impl Iterator<Item = &EmailCheck> {
        self.email_checks.values().map(Arc::as_ref)
    }

    /// A terminal's wrong PINs in its current window (or the last one).
    pub fn pin_window(&self, terminal: &str) -> Option<&PinWindow> {
        self.pin_windows.get(terminal).map(Arc::as_ref)
    }

    /// The last change a terminal asked for from an address.
    pub fn last_change(&self, terminal: &str, from: &str) -> Option<&LastChange> {
        self.last_changes.get(&super::terminals::change_key(terminal, from)).map(Arc::as_ref)
    }

    /// A terminal's last changes, one per address it asked from.
    pub fn last_changes_of(&self, terminal: &str) -> impl Iterator<Item = &LastChange> {
        let from = super::terminals::change_key(terminal, "");
        let to = format!("{terminal}\u{1}");
        self.last_changes.range(from..to).map(|(_, c)| c.as_ref())
    }

    /// A patron's set-PIN links.
    pub fn links_of(&self, patron: u64) -> impl Iterator<Item = &PinLink> {
        self.links.values().map(Arc::as_ref).filter(move |l| l.patron == patron)
    }

    /// The new e-mail address waiting for the link whose token has this digest.
    pub fn email_check(&self, digest: &str) -> Option<&EmailCheck> {
        self.email_checks.get(digest).map(Arc::as_ref)
    }

    /// A patron's new e-mail addresses waiting for their links.
    pub fn email_checks_of(&self, patron: u64) -> impl Iterator<Item = &EmailCheck> {
        self.email_checks.values().map(Arc::as_ref).filter(move |c| c.patron == patron)
    }

    pub fn optouts(&self, patron: u64) -> &[NoticeKind] {
        self.optouts.get(&patron).map_or(&[], Vec::as_slice)
    }

    /// What a patron may do now and why not, by the rules the kiosk answers with.
    pub fn standing(&self, p: &Patron, inst: &Institution, now: jiff::Timestamp) -> rules::Standing {
        rules::standing(p, inst, self.loan_count(p.id), self.balance(p.id), inst.today(now))
    }

    // -- writes -----------------------------------------------------------------------------

    /// A fresh record id: 1, 2, 3, ... (staff read and type patron numbers, so they stay short).
    pub fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }

    pub fn last_id(&self) -> u64 {
        self.last_id
    }

    pub fn audit_seq(&self) -> u64 {
        self.audit_seq
    }

    /// The caps on what one patron's record may hold.
    pub fn limits(&self) -> &super::RegisterLimits {
        &self.limits
    }

    /// This state, checking these caps.
    pub fn with_limits(mut self, limits: super::RegisterLimits) -> State {
        self.limits = limits;
        self
    }

    pub fn next_audit_seq(&mut self) -> u64 {
        self.audit_seq += 1;
        self.audit_seq
    }

    /// Applies one change. A patron is refused when it names no institution or claims a
    /// unique value another patron holds.
    pub fn apply(&mut self, w: &Write) -> Result<(), Refusal> {
        match w {
            Write::Institution(i) => {
                self.institutions.insert(i.code.clone(), Arc::new(i.as_ref().clone()));
            }
            Write::Patron(p) => self.put_patron(Arc::new(p.as_ref().clone()))?,
            Write::PatronV2(p) => self.put_patron(Arc::new(Patron::from(p.as_ref().clone())))?,
            Write::RemovePatron(id) => self.remove_patron(*id),
            Write::Item(i) => {
                self.items.insert(key(&i.barcode), Arc::clone(i));
            }
            Write::RemoveItem(b) => {
                self.items.remove(b.as_str());
            }
            Write::Loan(l) => self.put_loan(Arc::clone(l)),
            Write::EndLoan(item) => self.remove_loan(item),
            Write::Fee(f) => self.put_fee(Arc::new(f.as_ref().clone())),
            Write::RemoveFee(id) => self.remove_fee(*id),
            Write::Hold(h) => self.put_hold(Arc::new(h.as_ref().clone())),
            Write::RemoveHold(id) => self.remove_hold(*id),
            Write::Account(a) => {
                self.accounts.insert(a.login.clone(), Arc::new(a.as_ref().clone()));
            }
            Write::RemoveAccount(login) => {
                self.accounts.remove(login);
            }
            Write::Staff(m) => {
                if m.tokens.iter().any(|t| self.tokens.get(&t.digest).is_some_and(|l| *l != m.login)) {
                    return Err(Refusal::Exists { what: "token", key: m.login.clone() });
                }
                self.put_staff(Arc::new(m.as_ref().clone()));
            }
            Write::RemoveStaff(login) => self.remove_staff(login),
            Write::Optouts(p, kinds) => {
                if kinds.is_empty() {
                    self.optouts.remove(p);
                } else {
                    self.optouts.insert(*p, kinds.clone());
                }
            }
            Write::Link(l) => {
                self.links.insert(l.digest.clone(), Arc::new(l.as_ref().clone()));
            }
            Write::RemoveLink(digest) => {
                self.links.remove(digest);
            }
            Write::EmailCheck(c) => {
                self.email_checks.insert(c.digest.clone(), Arc::new(c.as_ref().clone()));
            }
            Write::RemoveEmailCheck(digest) => {
                self.email_checks.remove(digest);
            }
            Write::PinWindow(w) => {
                self.pin_windows.insert(w.terminal.clone(), Arc::new(w.as_ref().clone()));
            }
            Write::LastChange(c) => {
                self.last_changes.insert(c.key(), Arc::clone(c));
            }
            Write::RemoveLastChange(k) => {
                self.last_changes.remove(k);
            }
            Write::LastId(id) => self.last_id = self.last_id.max(*id),
            Write::AuditSeq(seq) => self.audit_seq = self.audit_seq.max(*seq),
            // Kept only in the store.
            Write::Audit(..) | Write::RemoveAudit(_) | Write::Notice(_) | Write::File(..) | Write::RemoveFile(..) => {}
        }
        Ok(())
    }

    fn put_patron(&mut self, p: Arc<Patron>) -> Result<(), Refusal> {
        if !self.institutions.contains_key(&p.institution) {
            return Err(Refusal::NoInstitution(p.institution.clone()));
        }
        let taken = |what, value: &str, patron| Refusal::Taken {
            what,
            value: value.to_string(),
            institution: p.institution.clone(),
            patron,
        };
        for (what, key, value) in claims(&p) {
            if let Some(owner) = self.claims.get(key.as_str()).filter(|o| **o != p.id) {
                return Err(taken(what, value, *owner));
            }
        }
        for e in p.emails() {
            if let Some(owner) = self.emails.get(email_key(&p.institution, e).as_str()).filter(|o| **o != p.id) {
                return Err(taken("e-mail", e, *owner));
            }
        }
        self.remove_patron(p.id);
        for (_, key, _) in claims(&p) {
            self.claims.insert(Key::from(key), p.id);
        }
        for e in p.emails() {
            self.emails.insert(Key::from(email_key(&p.institution, e)), p.id);
        }
        self.names.insert(Key::from(name_key(&p)));
        self.patrons.insert(p.id, p);
        Ok(())
    }

    fn remove_patron(&mut self, id: u64) {
        let Some(old) = self.patrons.remove(&id) else { return };
        for (_, key, _) in claims(&old) {
            if self.claims.get(key.as_str()) == Some(&id) {
                self.claims.remove(key.as_str());
            }
        }
        for e in old.emails() {
            let key = email_key(&old.institution, e);
            if self.emails.get(key.as_str()) == Some(&id) {
                self.emails.remove(key.as_str());
            }
        }
        self.names.remove(name_key(&old).as_str());
    }

    fn put_loan(&mut self, l: Arc<Loan>) {
        let item = match self.loans.get_key_value(l.item.as_str()) {
            Some((item, old)) => {
                let item = item.clone();
                self.loans_by_patron.remove(&(old.patron, item.clone()));
                item
            }
            None => key(&l.item),
        };
        self.loans_by_patron.insert((l.patron, item.clone()));
        self.loans.insert(item, l);
    }

    fn remove_loan(&mut self, item: &str) {
        if let Some((item, old)) = self.loans.remove_with_key(item) {
            self.loans_by_patron.remove(&(old.patron, item));
        }
    }

    fn put_fee(&mut self, f: Arc<Fee>) {
        if let Some(old) = self.fees.get(&f.id) {
            let key = (old.patron, old.id);
            self.fees_by_patron.remove(&key);
        }
        self.fees_by_patron.insert((f.patron, f.id));
        self.fees.insert(f.id, f);
    }

    fn remove_fee(&mut self, id: u64) {
        if let Some(old) = self.fees.remove(&id) {
            self.fees_by_patron.remove(&(old.patron, old.id));
        }
    }

    fn put_hold(&mut self, h: Arc<Hold>) {
        if let Some(old) = self.holds.get(&h.id).cloned() {
            self.unindex_hold(&old);
        }
        self.holds_by_patron.insert((h.patron, h.id));
        if let Some(item) = &h.item {
            self.holds_by_item.insert((key(item), h.placed.as_microsecond(), h.id));
        }
        self.holds.insert(h.id, h);
    }

    fn remove_hold(&mut self, id: u64) {
        if let Some(old) = self.holds.remove(&id) {
            self.unindex_hold(&old);
        }
    }

    // -- undo -------------------------------------------------------------------------------

    /// What puts back, as it is now, the record `w` is about to change: taken before a write,
    /// so that a refused unit is undone by its own writes' undos, in reverse, rather than by a
    /// copy of the state taken before it (which would make every write after it copy the
    /// paths it changes).
    pub fn undo_of(&self, w: &Write) -> Undo {
        match w {
            Write::Institution(i) => Undo::Institution(i.code.clone(), self.institutions.get(&i.code).cloned()),
            Write::Patron(p) => Undo::Patron(p.id, self.patrons.get(&p.id).cloned()),
            Write::PatronV2(p) => Undo::Patron(p.id(), self.patrons.get(&p.id()).cloned()),
            Write::RemovePatron(id) => Undo::Patron(*id, self.patrons.get(id).cloned()),
            Write::Item(i) => Undo::Item(i.barcode.clone(), self.items.get(i.barcode.as_str()).cloned()),
            Write::RemoveItem(b) => Undo::Item(b.clone(), self.items.get(b.as_str()).cloned()),
            Write::Loan(l) => Undo::Loan(l.item.clone(), self.loans.get(l.item.as_str()).cloned()),
            Write::EndLoan(item) => Undo::Loan(item.clone(), self.loans.get(item.as_str()).cloned()),
            Write::Fee(f) => Undo::Fee(f.id, self.fees.get(&f.id).cloned()),
            Write::RemoveFee(id) => Undo::Fee(*id, self.fees.get(id).cloned()),
            Write::Hold(h) => Undo::Hold(h.id, self.holds.get(&h.id).cloned()),
            Write::RemoveHold(id) => Undo::Hold(*id, self.holds.get(id).cloned()),
            Write::Account(a) => Undo::Account(a.login.clone(), self.accounts.get(&a.login).cloned()),
            Write::RemoveAccount(l) => Undo::Account(l.clone(), self.accounts.get(l).cloned()),
            Write::Staff(m) => Undo::Staff(m.login.clone(), self.staff.get(&m.login).cloned()),
            Write::RemoveStaff(l) => Undo::Staff(l.clone(), self.staff.get(l).cloned()),
            Write::Optouts(p, _) => Undo::Optouts(*p, self.optouts.get(p).cloned()),
            Write::Link(l) => Undo::Link(l.digest.clone(), self.links.get(&l.digest).cloned()),
            Write::RemoveLink(d) => Undo::Link(d.clone(), self.links.get(d).cloned()),
            Write::EmailCheck(c) => Undo::EmailCheck(c.digest.clone(), self.email_checks.get(&c.digest).cloned()),
            Write::RemoveEmailCheck(d) => Undo::EmailCheck(d.clone(), self.email_checks.get(d).cloned()),
            Write::PinWindow(w) => Undo::PinWindow(w.terminal.clone(), self.pin_windows.get(&w.terminal).cloned()),
            Write::LastChange(c) => {
                let k = c.key();
                let old = self.last_changes.get(&k).cloned();
                Undo::LastChange(k, old)
            }
            Write::RemoveLastChange(k) => Undo::LastChange(k.clone(), self.last_changes.get(k).cloned()),
            // Counters are put back by the unit; the rest is not in memory.
            Write::LastId(_)
            | Write::AuditSeq(_)
            | Write::Audit(..)
            | Write::RemoveAudit(_)
            | Write::Notice(_)
            | Write::File(..)
            | Write::RemoveFile(..) => Undo::Nothing,
        }
    }

    /// Puts a record back as an [`Undo`] says. Undone in the reverse order of the writes, each
    /// puts back a state that held together before, so nothing here can be refused.
    pub fn undo(&mut self, u: Undo) {
        match u {
            Undo::Nothing => {}
            Undo::Institution(code, old) => put_back(&mut self.institutions, code, old),
            Undo::Patron(id, old) => match old {
                Some(p) => {
                    let _ = self.put_patron(p);
                }
                None => self.remove_patron(id),
            },
            Undo::Item(b, old) => put_back(&mut self.items, key(&b), old),
            Undo::Loan(item, old) => match old {
                Some(l) => self.put_loan(l),
                None => self.remove_loan(&item),
            },
            Undo::Fee(id, old) => match old {
                Some(f) => self.put_fee(f),
                None => self.remove_fee(id),
            },
            Undo::Hold(id, old) => match old {
                Some(h) => self.put_hold(h),
                None => self.remove_hold(id),
            },
            Undo::Account(login, old) => put_back(&mut self.accounts, login, old),
            Undo::Staff(login, old) => match old {
                Some(m) => self.put_staff(m),
                None => self.remove_staff(&login),
            },
            Undo::Link(d, old) => put_back(&mut self.links, d, old),
            Undo::EmailCheck(d, old) => put_back(&mut self.email_checks, d, old),
            Undo::PinWindow(t, old) => put_back(&mut self.pin_windows, t, old),
            Undo::LastChange(k, old) => put_back(&mut self.last_changes, k, old),
            Undo::Optouts(p, old) => put_back(&mut self.optouts, p, old),
        }
    }

    /// The id and audit counters, to put back with [`State::set_counters`].
    pub fn counters(&self) -> (u64, u64) {
        (self.last_id, self.audit_seq)
    }

    pub fn set_counters(&mut self, (last_id, audit_seq): (u64, u64)) {
        self.last_id = last_id;
        self.audit_seq = audit_seq;
    }

    fn unindex_hold(&mut self, h: &Hold) {
        self.holds_by_patron.remove(&(h.patron, h.id));
        if let Some(item) = &h.item {
            self.holds_by_item.remove(&(key(item), h.placed.as_microsecond(), h.id));
        }
    }
}
