//! A data directory on disk: the store and, beside it, the PIN key. Made, opened, and given
//! another key only here.

use std::path::Path;

use crate::domain::Refusal;
use crate::domain::secret::PinKey;

use super::store::{self, StoreConfig, StoreError};
use super::{Error, SledEngine};

/// The store's directory inside a data directory; its presence is what makes a register.
pub const STORE_DIR: &str = store::DIR;
/// The PIN key's file in a data directory.
pub const PIN_KEY: &str = "pin.key";

fn open_error(dir: &Path, e: std::io::Error) -> Error {
    Error::Store(StoreError::Open { path: dir.to_path_buf(), source: e.into() })
}

/// Makes `dir` (and its parents) if missing, and readable by its owner alone.
pub(crate) fn private_dir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| open_error(dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| open_error(dir, e))?;
    }
    Ok(())
}

/// Opens the register in `dir`, creating it (store and PIN key, readable by their owner only)
/// if there is none. The command line creates registers only with `sip2d init` and opens them
/// with [`open_existing`]; tests and the demo use this.
pub fn open_or_create(dir: &Path, settings: &StoreConfig) -> Result<SledEngine, Error> {
    std::fs::create_dir_all(dir).map_err(|e| open_error(dir, e))?;
    let key = PinKey::load_or_create(&dir.join(PIN_KEY)).map_err(|e| open_error(dir, e))?;
    SledEngine::open(dir, key, settings)
}

/// Creates an empty register in `dir` (which may exist, but must hold no register): the
/// directory owner-only, the store, a new PIN key.
pub fn init(dir: &Path) -> Result<SledEngine, Error> {
    if dir.join(STORE_DIR).exists() {
        return Err(Refusal::rule(format!("a register exists already at {}", dir.display())).into());
    }
    if dir.join(PIN_KEY).exists() {
        return Err(Refusal::rule(format!(
            "{} holds a PIN key but no store; move it away or restore the store beside it",
            dir.display()
        ))
        .into());
    }
    private_dir(dir)?;
    open_or_create(dir, &StoreConfig::default())
}

/// Opens the register that is in `dir`; refuses, without creating anything, when there is
/// none or its PIN key is missing (a new key would make every stored PIN wrong).
pub fn open_existing(dir: &Path, settings: &StoreConfig) -> Result<SledEngine, Error> {
    if !dir.join(STORE_DIR).is_dir() {
        return Err(Refusal::rule(format!("no register at {}", dir.display())).into());
    }
    SledEngine::open(dir, load_key(dir)?, settings)
}

/// Opens the register `settings` name for the data directory `dir`: the sled register in it,
/// or, with `settings.postgres`, the database's, with the PIN key in `dir`. Creates nothing.
pub fn open_register(dir: &Path, settings: &StoreConfig) -> Result<super::Shared, Error> {
    let Some(pg) = &settings.postgres else { return Ok(std::sync::Arc::new(open_existing(dir, settings)?)) };
    let key = load_key(dir)?;
    Ok(std::sync::Arc::new(super::pg::PgEngine::open(pg, key, settings.limits)?))
}

/// The PIN key in `dir`, refused when missing (a new key would make every stored PIN wrong).
pub(crate) fn load_key(dir: &Path) -> Result<PinKey, Error> {
    let path = dir.join(PIN_KEY);
    PinKey::load(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::Refused(Refusal::rule(format!(
            "the PIN key {} is missing, and every stored PIN depends on it; put the register's key back with `sip2d key import FILE`",
            path.display()
        ))),
        _ => open_error(dir, e),
    })
}

/// `sip2d init` for a register on PostgreSQL: `dir` (owner-only) gets a new PIN key, which the
/// database adopts if it has none yet. A database that has another refuses it, and the new
/// key is removed again: the nodes after the first import the first one's key.
pub fn init_postgres(dir: &Path, settings: &StoreConfig) -> Result<super::Shared, Error> {
    let path = dir.join(PIN_KEY);
    if path.exists() {
        return Err(Refusal::rule(format!(
            "{} holds a PIN key already: this node is set up (`sip2d serve`), or remove the key first",
            dir.display()
        ))
        .into());
    }
    private_dir(dir)?;
    PinKey::load_or_create(&path).map_err(|e| open_error(dir, e))?;
    let opened = open_register(dir, settings);
    if opened.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    opened
}

/// Gives a node of a register on PostgreSQL the register's PIN key: `dir` (made owner-only if
/// new) gets `key` unless it has a key already (`Ok(false)` when that is this one; refused
/// when another: every PIN in the database depends on one key).
pub fn install_node_key(dir: &Path, key: &PinKey) -> Result<bool, Error> {
    let path = dir.join(PIN_KEY);
    match PinKey::load(&path) {
        Ok(current) if current.fingerprint() == key.fingerprint() => return Ok(false),
        Ok(current) => {
            return Err(Refusal::rule(format!(
                "this node has PIN key {} already; remove {} first if it is not the register's",
                current.fingerprint(),
                path.display()
            ))
            .into());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Refusal::rule(format!("cannot read the PIN key {}: {e}", path.display())).into()),
    }
    private_dir(dir)?;
    key.replace(&path).map_err(|e| open_error(dir, e))?;
    Ok(true)
}

/// Makes `key` the PIN key of the register in `dir`, when no stored PIN depends on another:
/// the register has that key already (`Ok(false)`), has no key (a lost one being put back),
/// or holds no PIN. The file is replaced atomically, owner-only. Refused while another process
/// (a server) has the store open. A `dry_run` checks and writes nothing.
pub fn install_pin_key(dir: &Path, key: &PinKey, dry_run: bool) -> Result<bool, Error> {
    let path = dir.join(PIN_KEY);
    let current = match PinKey::load(&path) {
        Ok(k) => Some(k),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Refusal::rule(format!("cannot read the PIN key {}: {e}", path.display())).into()),
    };
    if current.as_ref().is_some_and(|c| c.fingerprint() == key.fingerprint()) {
        return Ok(false);
    }
    if !dir.join(STORE_DIR).is_dir() {
        return Err(Refusal::rule(format!("no register at {}", dir.display())).into());
    }
    if let Some(current) = &current {
        let (store, _log) = super::checkpoint::recover(dir, &StoreConfig::default())?;
        let mut holds_pins = false;
        for p in store.records::<crate::domain::Patron>(store::Kind::Patron) {
            holds_pins |= p?.pin.is_some();
        }
        if holds_pins {
            return Err(Refusal::rule(format!(
                "this register holds PINs made with its own PIN key {}; another key is accepted only into a register without PINs, or one that has it already",
                current.fingerprint()
            ))
            .into());
        }
    }
    if !dry_run {
        key.replace(&path).map_err(|e| open_error(dir, e))?;
    }
    Ok(true)
}

/// What `sip2d log verify` found: the log read back whole (every record checked and decoded)
/// and the last batch sled holds.
pub struct LogReport {
    pub applied: u64,
    pub replayed: super::wal::Replayed,
}

/// Reads the register's write-ahead log back and checks every record (the ones sled lacks also
/// decoded), changing nothing.
/// A damaged log is the error [`super::wal::LogError::Damaged`], with the file and byte.
pub fn verify_log(dir: &Path) -> Result<LogReport, Error> {
    let store = store::Store::open(dir, &StoreConfig::default())?;
    let applied = store.applied()?;
    let replayed =
        super::wal::replay(&dir.join(super::wal::DIR), applied, |_, payload| store::decode_batch(payload).map(drop))?;
    Ok(LogReport { applied, replayed })
}

/// Cuts the register's write-ahead log at its first bad record (`sip2d log repair`); refused
/// while a server has the register open.
pub fn repair_log(dir: &Path) -> Result<super::wal::Repaired, Error> {
    // Holding sled's lock keeps a server from starting meanwhile, and fails if one runs.
    let _store = store::Store::open(dir, &StoreConfig::default())?;
    Ok(super::wal::repair(&dir.join(super::wal::DIR)).map_err(StoreError::from)?)
}
