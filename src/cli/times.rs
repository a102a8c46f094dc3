//! How staff views show a moment: in its institution's time zone, with the zone named, or in
//! UTC with `--utc`. (JSON output always carries RFC 3339 instead.)

use std::cell::RefCell;
use std::collections::HashMap;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::engine::{Answer, Engine, Query};

/// Zones looked up once per command.
pub struct Times<'a> {
    engine: &'a dyn Engine,
    utc: bool,
    zones: RefCell<HashMap<String, TimeZone>>,
    patrons: RefCell<HashMap<u64, String>>,
}

impl<'a> Times<'a> {
    pub fn new(engine: &'a dyn Engine, utc: bool) -> Times<'a> {
        Times { engine, utc, zones: RefCell::default(), patrons: RefCell::default() }
    }

    /// The zone moments at this institution are shown in (UTC when it is unknown).
    pub fn zone(&self, institution: &str) -> TimeZone {
        if self.utc {
            return TimeZone::UTC;
        }
        self.zones
            .borrow_mut()
            .entry(institution.to_string())
            .or_insert_with(|| match self.engine.query(Query::Institution(institution.to_string())).wait() {
                Ok(Answer::Institution(i)) => i.time_zone(),
                _ => TimeZone::UTC,
            })
            .clone()
    }

    /// The institution of a patron (where their loans' due dates were worked out).
    fn institution_of(&self, patron: u64) -> String {
        self.patrons
            .borrow_mut()
            .entry(patron)
            .or_insert_with(|| match self.engine.query(Query::Patron(patron)).wait() {
                Ok(Answer::Patron(p)) => p.institution,
                _ => String::new(),
            })
            .clone()
    }

    fn format(&self, institution: &str, t: Timestamp, pattern: &str) -> String {
        t.to_zoned(self.zone(institution)).strftime(pattern).to_string()
    }

    /// `2026-12-13 23:59 CET`.
    pub fn minute(&self, institution: &str, t: Timestamp) -> String {
        self.format(institution, t, "%Y-%m-%d %H:%M %Z")
    }

    /// `2026-12-13 23:59:05 CET`.
    pub fn second(&self, institution: &str, t: Timestamp) -> String {
        self.format(institution, t, "%Y-%m-%d %H:%M:%S %Z")
    }

    /// `2026-12-13`, the day at the institution.
    pub fn day(&self, institution: &str, t: Timestamp) -> String {
        self.format(institution, t, "%Y-%m-%d")
    }

    /// As [`Times::minute`], at the patron's institution.
    pub fn minute_for(&self, patron: u64, t: Timestamp) -> String {
        self.minute(&self.institution_of(patron), t)
    }

    /// As [`Times::day`], at the patron's institution.
    pub fn day_for(&self, patron: u64, t: Timestamp) -> String {
        self.day(&self.institution_of(patron), t)
    }
}
