//! Moving a register between the embedded store (sled) and PostgreSQL, entry for entry, with
//! the counts and a checksum of what each side holds compared after the move.

use std::path::Path;

use postgres::Client;
use sha2::{Digest, Sha256};

use super::{PIN_KEY_META, PgSettings, check_schema, connect, db_error, snapshot};
use crate::domain::Refusal;
use crate::engine::store::{APPLIED, Store, StoreConfig, TREE_NAMES};
use crate::engine::{Error, PIN_KEY, STORE_DIR};

/// Entries written to the database in one statement.
const CHUNK: usize = 1000;

/// What a register holds: entries per kind, and a checksum over every one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contents {
    /// Entries per table, in the order of the tables; empty ones left out.
    pub counts: Vec<(&'static str, u64)>,
    /// SHA-256 over every table's name and its entries (key and value) in key order.
    pub checksum: String,
}

/// The checksum and counts of entries, fed table by table in key order.
struct Tally {
    hash: Sha256,
    counts: Vec<(&'static str, u64)>,
}

impl Tally {
    fn new() -> Tally {
        Tally { hash: Sha256::new(), counts: Vec::new() }
    }

    fn table(&mut self, name: &'static str) {
        self.hash.update((name.len() as u64).to_be_bytes());
        self.hash.update(name.as_bytes());
        self.counts.push((name, 0));
    }

    fn entry(&mut self, key: &[u8], value: &[u8]) {
        for part in [key, value] {
            self.hash.update((part.len() as u64).to_be_bytes());
            self.hash.update(part);
        }
        if let Some(c) = self.counts.last_mut() {
            c.1 += 1;
        }
    }

    fn done(self) -> Contents {
        let checksum = format!("sha256:{}", crate::domain::secret::hex(&self.hash.finalize()));
        Contents { counts: self.counts.into_iter().filter(|(_, n)| *n > 0).collect(), checksum }
    }
}

/// Entries each engine keeps for itself and the other has no use for: where sled's log was
/// applied to, the database's record of the PIN key.
fn own(table: &str, key: &[u8]) -> bool {
    table == "meta" && (key == APPLIED || key == PIN_KEY_META)
}

/// What the sled register in `store` holds.
fn sled_contents(store: &Store) -> Result<Contents, Error> {
    let mut t = Tally::new();
    for name in TREE_NAMES {
        t.table(name);
        for kv in store.raw(name) {
            let (k, v) = kv?;
            if !own(name, &k) {
                t.entry(&k, &v);
            }
        }
    }
    Ok(t.done())
}

/// What the database holds, read in one snapshot.
fn postgres_contents(client: &mut Client) -> Result<Contents, Error> {
    let read = |e: postgres::Error| db_error("cannot read the register", &e);
    let mut tx = snapshot(client)?;
    let mut t = Tally::new();
    for name in TREE_NAMES {
        t.table(name);
        for row in tx.query(&format!("SELECT key, value FROM {name} ORDER BY key"), &[]).map_err(read)? {
            let (k, v): (&[u8], &[u8]) = (row.get(0), row.get(1));
            if !own(name, k) {
                t.entry(k, v);
            }
        }
    }
    tx.commit().map_err(read)?;
    Ok(t.done())
}

/// Whether the database holds anything of a register.
fn empty(client: &mut Client) -> Result<bool, Error> {
    for name in TREE_NAMES.into_iter().chain(["commits"]) {
        // The PIN key's fingerprint is recorded by the first node to open the database.
        let read = |e: postgres::Error| db_error("cannot read the register", &e);
        let any: bool = if name == "meta" {
            client.query_one("SELECT EXISTS (SELECT 1 FROM meta WHERE key <> $1)", &[&PIN_KEY_META]).map_err(read)?
        } else {
            client.query_one(&format!("SELECT EXISTS (SELECT 1 FROM {name})"), &[]).map_err(read)?
        }
        .get(0);
        if any {
            return Ok(false);
        }
    }
    Ok(true)
}

/// What a move did: the source's contents, which the target was found to hold.
#[derive(Debug)]
pub struct Moved {
    pub contents: Contents,
}

/// Copies the sled register in `dir` (its log first brought into sled; no server may hold it)
/// into the database `pg`, which must have the schema and no register yet; then reads the
/// database back and compares.
pub fn sled_to_postgres(dir: &Path, pg: &PgSettings) -> Result<Moved, Error> {
    if !dir.join(STORE_DIR).is_dir() {
        return Err(Refusal::rule(format!("no register at {}", dir.display())).into());
    }
    let key = crate::engine::data_dir::load_key(dir)?;
    let (store, log) = crate::engine::checkpoint::recover(dir, &StoreConfig::default())?;
    drop(log);
    let source = sled_contents(&store)?;
    let mut client = connect(pg)?;
    check_schema(&mut client, pg)?;
    if !empty(&mut client)? {
        return Err(Refusal::rule(format!(
            "the database at {} holds a register already: move into a new database (`sip2d migrate` on it first)",
            pg.shown()
        ))
        .into());
    }
    let write = |e: postgres::Error| db_error("cannot write the register", &e);
    let mut tx = client.transaction().map_err(write)?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&PIN_KEY_META, &key.fingerprint().as_bytes()],
    )
    .map_err(write)?;
    for name in TREE_NAMES {
        let insert = tx
            .prepare(&format!("INSERT INTO {name} (key, value) SELECT * FROM unnest($1::bytea[], $2::bytea[])"))
            .map_err(write)?;
        let (mut keys, mut values): (Vec<Vec<u8>>, Vec<Vec<u8>>) = (Vec::new(), Vec::new());
        for kv in store.raw(name) {
            let (k, v) = kv?;
            if own(name, &k) {
                continue;
            }
            keys.push(k);
            values.push(v);
            if keys.len() == CHUNK {
                tx.execute(&insert, &[&keys, &values]).map_err(write)?;
                keys.clear();
                values.clear();
            }
        }
        if !keys.is_empty() {
            tx.execute(&insert, &[&keys, &values]).map_err(write)?;
        }
    }
    tx.commit().map_err(write)?;
    let target = postgres_contents(&mut client)?;
    compare(source, target, &pg.shown())
}

/// Copies the register in the database `pg` into a new sled register in `dir`, with the PIN
/// key in `key_dir` (which must be the database's); then reads sled back and compares.
pub fn postgres_to_sled(pg: &PgSettings, key_dir: &Path, dir: &Path) -> Result<Moved, Error> {
    if dir.join(STORE_DIR).exists() || dir.join(PIN_KEY).exists() {
        return Err(
            Refusal::rule(format!("{} holds a register already: move into a new directory", dir.display())).into()
        );
    }
    let key = crate::engine::data_dir::load_key(key_dir)?;
    let mut client = connect(pg)?;
    check_schema(&mut client, pg)?;
    if empty(&mut client)? {
        return Err(Refusal::rule(format!("the database at {} holds no register", pg.shown())).into());
    }
    let theirs: Option<Vec<u8>> = client
        .query_opt("SELECT value FROM meta WHERE key = $1", &[&PIN_KEY_META])
        .map_err(|e| db_error("cannot read the register", &e))?
        .map(|r| r.get(0));
    if theirs.as_deref().is_some_and(|t| t != key.fingerprint().as_bytes()) {
        return Err(Refusal::rule(format!(
            "the PIN key in {} is not the database's: give the key of a node of this register",
            key_dir.display()
        ))
        .into());
    }
    crate::engine::data_dir::private_dir(dir)?;
    let read = |e: postgres::Error| db_error("cannot read the register", &e);
    let store = Store::open(dir, &StoreConfig::default())?;
    let mut tx = snapshot(&mut client)?;
    let mut source = Tally::new();
    for name in TREE_NAMES {
        source.table(name);
        let mut chunk = Vec::with_capacity(CHUNK);
        for row in tx.query(&format!("SELECT key, value FROM {name} ORDER BY key"), &[]).map_err(read)? {
            let (k, v): (Vec<u8>, Vec<u8>) = (row.get(0), row.get(1));
            if own(name, &k) {
                continue;
            }
            source.entry(&k, &v);
            chunk.push((k, v));
            if chunk.len() == CHUNK {
                store.put_raw(name, &chunk)?;
                chunk.clear();
            }
        }
        store.put_raw(name, &chunk)?;
    }
    tx.commit().map_err(read)?;
    // Durable, and marked as holding the whole (empty) log.
    store.checkpoint(0)?;
    let target = sled_contents(&store)?;
    drop(store);
    key.write_new(&dir.join(PIN_KEY)).map_err(|e| Refusal::rule(format!("cannot write the PIN key: {e}")))?;
    compare(source.done(), target, &dir.display().to_string())
}

fn compare(source: Contents, target: Contents, at: &str) -> Result<Moved, Error> {
    if source != target {
        return Err(Error::NotDone(std::sync::Arc::from(format!(
            "{at} does not hold what was copied: {:?} ({}) were copied, {:?} ({}) are there",
            source.counts, source.checksum, target.counts, target.checksum
        ))));
    }
    Ok(Moved { contents: source })
}
