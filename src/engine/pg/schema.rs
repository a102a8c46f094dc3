//! The PostgreSQL engine's schema: versioned migrations kept in the repository
//! (`src/engine/pg/migrations`), applied by `sip2d migrate` and checked when a node opens.

use std::sync::Arc;

use postgres::Client;

use super::{PgSettings, connect, db_error};
use crate::engine::{Error, Refusal};

refinery::embed_migrations!("src/engine/pg/migrations");

/// The table that records which migrations a database has had.
const HISTORY: &str = "sip2d_schema_history";

/// What `sip2d migrate` did.
#[derive(Debug)]
pub struct Migrated {
    /// The migrations applied now, as `V1__register`.
    pub applied: Vec<String>,
    /// The schema the database has now.
    pub version: u32,
}

/// The schema a database has, beside the newest this build knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaState {
    /// None: no sip2d schema at all.
    pub current: Option<u32>,
    pub known: u32,
}

fn known() -> u32 {
    migrations::runner().get_migrations().iter().map(|m| m.version()).max().unwrap_or(0)
}

/// The lock `migrate` holds, so that two nodes migrating at once take turns ("sip2m").
const MIGRATE_LOCK: i64 = 0x0073_6970_326d;

/// Applies the migrations the database lacks, in order, each in its own transaction.
pub fn migrate(settings: &PgSettings) -> Result<Migrated, Error> {
    let mut client = connect(settings)?;
    // Held until the connection ends with this function.
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATE_LOCK]).map_err(|e| db_error("cannot lock", &e))?;
    let state = schema_state(&mut client)?;
    if state.current.is_some_and(|c| c > state.known) {
        return Err(newer(state));
    }
    let mut runner = migrations::runner();
    runner.set_migration_table_name(HISTORY);
    let report = runner
        .set_grouped(false)
        .run(&mut client)
        .map_err(|e| Error::NotDone(Arc::from(format!("the migration failed: {e}"))))?;
    let applied = report.applied_migrations().iter().map(|m| format!("V{}__{}", m.version(), m.name())).collect();
    let version = schema_state(&mut client)?.current.unwrap_or(0);
    Ok(Migrated { applied, version })
}

/// Which schema the database `settings` names has.
pub fn schema_of(settings: &PgSettings) -> Result<SchemaState, Error> {
    schema_state(&mut connect(settings)?)
}

/// Which schema the database has.
pub fn schema_state(client: &mut Client) -> Result<SchemaState, Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&HISTORY])
        .map_err(|e| db_error("cannot read the schema's version", &e))?
        .get(0);
    let current = if exists {
        let v: Option<i32> = client
            .query_one(&format!("SELECT max(version) FROM {HISTORY}"), &[])
            .map_err(|e| db_error("cannot read the schema's version", &e))?
            .get(0);
        v.map(|v| v as u32)
    } else {
        None
    };
    Ok(SchemaState { current, known: known() })
}

fn newer(s: SchemaState) -> Error {
    Refusal::rule(format!(
        "the database has sip2d schema {}, newer than the {} this sip2d knows: run a sip2d at least as new as the one that migrated it",
        s.current.unwrap_or(0),
        s.known
    ))
    .into()
}

/// Refuses to serve a database whose schema this build does not know.
pub(crate) fn check(client: &mut Client, settings: &PgSettings) -> Result<(), Error> {
    let s = schema_state(client)?;
    match s.current {
        Some(c) if c == s.known => Ok(()),
        Some(c) if c > s.known => Err(newer(s)),
        Some(c) => Err(Refusal::rule(format!(
            "the database at {} has sip2d schema {c}, and this sip2d needs {}: run `sip2d migrate` first",
            settings.shown(),
            s.known
        ))
        .into()),
        None => Err(Refusal::rule(format!(
            "the database at {} holds no sip2d register: run `sip2d migrate` to make one",
            settings.shown()
        ))
        .into()),
    }
}
