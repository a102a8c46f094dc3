//! `sip2d init` (a new, empty register), `sip2d key` (the PIN key: show, export, import),
//! `sip2d log` (the write-ahead log: verify, repair) and `sip2d migrate` (the PostgreSQL
//! database's schema).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::json;

use super::exit;
use super::location::Common;
use crate::domain::secret::PinKey;
use crate::engine::PIN_KEY;

/// The PIN key: every PIN in the register is a keyed hash under it, so exported PIN hashes are
/// of use only to a register with the same key. Key files are written owner-only.
#[derive(Debug, clap::Subcommand)]
pub enum KeyCmd {
    /// Show the key's fingerprint (exports carry it; it does not reveal the key).
    Show,
    /// Write the key to a new file (owner-only), for `key import` or `import --pin-key` on
    /// another machine. Keep it as safe as the register.
    Export {
        /// The file to create; an existing one is not overwritten.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: PathBuf,
    },
    /// Make the key in FILE this register's key: refused when the register holds PINs made
    /// with another key (they would all become wrong). Stop `sip2d serve` first.
    Import {
        /// A key written by `key export` (or a register's pin.key).
        file: PathBuf,
    },
}

/// `sip2d init`: an empty register with a new PIN key, the directory owner-only.
pub fn init(common: &Common) -> Result<ExitCode> {
    let dir = common.data_dir()?;
    dir.enter_new()?;
    let settings = common.load_config()?.store_config();
    let (reg, at): (crate::engine::Shared, String) = match &settings.postgres {
        Some(pg) => {
            let reg = crate::engine::init_postgres(&dir.path, &settings).with_context(|| {
                format!(
                    "cannot set up this node at {} ({}) for the database at {}",
                    dir.path.display(),
                    dir.source,
                    pg.shown()
                )
            })?;
            (reg, format!("the database at {}, PIN key in {} ({})", pg.shown(), dir.path.display(), dir.source))
        }
        None => {
            let reg = crate::engine::init(&dir.path)
                .with_context(|| format!("cannot create a register at {} ({})", dir.path.display(), dir.source))?;
            (std::sync::Arc::new(reg), format!("{} ({})", dir.path.display(), dir.source))
        }
    };
    let fingerprint = reg.pin_key_fingerprint()?;
    if common.json {
        outln!("{}", json!({"data": dir.path, "pin_key": fingerprint}));
    } else {
        outln!("created an empty register at {at}");
        outln!("  PIN key       {} (fingerprint {})", dir.path.join(PIN_KEY).display(), fingerprint);
        outln!("next: `sip2d --data {} institution add --code CODE --name NAME`", dir.path.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn key(cmd: &KeyCmd, common: &Common) -> Result<ExitCode> {
    let dir = common.data_dir()?;
    let key_path = dir.path.join(PIN_KEY);
    let load = || {
        PinKey::load(&key_path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => exit::not_found(format!(
                "no PIN key at {} ({}); `sip2d key import FILE` puts one there",
                key_path.display(),
                dir.source
            )),
            _ => anyhow::Error::new(e).context(format!("cannot read the PIN key {}", key_path.display())),
        })
    };
    match cmd {
        KeyCmd::Show => {
            let key = load()?;
            if common.json {
                outln!("{}", json!({"file": key_path, "fingerprint": key.fingerprint()}));
            } else {
                outln!("{}  {}", key.fingerprint(), key_path.display());
            }
        }
        KeyCmd::Export { output } => {
            let key = load()?;
            key.write_new(output).map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    exit::refused(format!("{} exists already; name a new file", output.display()))
                }
                _ => anyhow::Error::new(e).context(format!("cannot write {}", output.display())),
            })?;
            outln!("wrote PIN key {} to {} (owner-only)", key.fingerprint(), output.display());
        }
        KeyCmd::Import { file } => {
            let key = PinKey::load(file).with_context(|| format!("cannot read the key in {}", file.display()))?;
            let done = if common.load_config()?.postgres().is_some() {
                // A node of a register on PostgreSQL: the directory may be new.
                dir.enter_new()?;
                crate::engine::install_node_key(&dir.path, &key)?
            } else {
                dir.enter_existing()?;
                crate::engine::install_pin_key(&dir.path, &key, false)?
            };
            outln!(
                "{} {} at {}",
                if done { "installed PIN key" } else { "the register has PIN key" },
                key.fingerprint(),
                key_path.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Every change is synced to the write-ahead log (DATA/wal) before it is acknowledged, and
/// sled is brought up to date from it behind; at start sled takes what the log holds after it.
/// A record a crash cut short is dropped by itself; damage with valid records after it stops
/// the start, and `log repair` is the way past it (docs/engine.md).
#[derive(Debug, clap::Subcommand)]
pub enum LogCmd {
    /// Read the log back and check every record; changes nothing. Exit 1 if it is damaged.
    Verify,
    /// Cut the log at its first bad record, dropping it and everything after it (the output
    /// says how many valid records that is). Stop `sip2d serve` first. Changes acknowledged
    /// after the damage are lost: restore the register from a backup instead if you have one.
    Repair,
}

pub fn log(cmd: &LogCmd, common: &Common) -> Result<ExitCode> {
    if let Some(pg) = common.load_config()?.postgres() {
        return Err(exit::refused(format!(
            "the register is in the database at {}: its log is PostgreSQL's, and this node keeps none",
            pg.shown()
        )));
    }
    let dir = common.data_dir()?;
    dir.enter_existing()?;
    match cmd {
        LogCmd::Verify => {
            let r = crate::engine::verify_log(&dir.path)?;
            let p = &r.replayed;
            if common.json {
                outln!(
                    "{}",
                    json!({"segments": p.segments.len(), "records": p.replayed + p.skipped, "sled_lacks": p.replayed, "last": p.last, "sled_holds": r.applied,
                           "torn": p.torn.as_ref().map(|t| json!({"file": t.path, "offset": t.offset, "bytes": t.bytes, "why": t.why}))})
                );
            } else {
                outln!(
                    "the write-ahead log is whole: {} segment(s), {} record(s), the last batch {}; sled holds up to batch {} and lacks {} record(s), which the next start gives it",
                    p.segments.len(),
                    p.replayed + p.skipped,
                    p.last,
                    r.applied,
                    p.replayed
                );
                if let Some(t) = &p.torn {
                    outln!(
                        "its last {} byte(s), from byte {} of {}, are a record a crash cut short ({}); the next start drops them",
                        t.bytes,
                        t.offset,
                        t.path.display(),
                        t.why
                    );
                }
            }
        }
        LogCmd::Repair => {
            let r = crate::engine::repair_log(&dir.path)?;
            match &r.cut {
                None => outln!("the write-ahead log is whole; nothing was changed"),
                Some((path, at)) => {
                    outln!(
                        "cut the write-ahead log at byte {at} of {}: {} byte(s) dropped, holding {} valid record(s) that followed the damage; {} later file(s) removed",
                        path.display(),
                        r.bytes_dropped,
                        r.records_dropped,
                        r.files_removed.len()
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `sip2d migrate`: what the command line takes.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The database (a URL or key=value connection string); default: `[store] url` of the
    /// configuration.
    #[arg(long, value_name = "URL", env = "SIP2D_POSTGRES_URL", hide_env_values = true)]
    pub url: Option<String>,
    /// Only say which schema the database has and which this sip2d needs; change nothing.
    #[arg(long)]
    pub check: bool,
}

/// Applies the schema migrations the database lacks (or, with `--check`, reports them).
pub fn migrate(args: &MigrateArgs, common: &Common) -> Result<ExitCode> {
    let pg = match &args.url {
        Some(url) => database(url.clone(), common)?,
        None => common.load_config()?.postgres().ok_or_else(|| {
            exit::usage("no database: give --url, or set [store] engine = \"postgres\" and url in the configuration")
        })?,
    };
    let at = pg.shown();
    if args.check {
        let s = crate::engine::pg::schema_of(&pg)?;
        let current = s.current.map_or("no sip2d schema".to_string(), |c| format!("schema {c}"));
        if common.json {
            outln!("{}", json!({"database": at, "schema": s.current, "needed": s.known}));
        } else {
            outln!("the database at {at} has {current}; this sip2d needs schema {}", s.known);
        }
        return Ok(if s.current == Some(s.known) { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    let done = crate::engine::pg::migrate(&pg).with_context(|| format!("cannot migrate the database at {at}"))?;
    if common.json {
        outln!("{}", json!({"database": at, "applied": done.applied, "schema": done.version}));
    } else if done.applied.is_empty() {
        outln!("the database at {at} has sip2d schema {} already; nothing to do", done.version);
    } else {
        outln!("applied {} to the database at {at}; it has sip2d schema {}", done.applied.join(", "), done.version);
    }
    Ok(ExitCode::SUCCESS)
}

/// `sip2d migrate-store`: what the command line takes.
#[derive(Debug, clap::Args)]
pub struct MigrateStoreArgs {
    /// Where the register is: `sled:DIR` (a data directory; stop its server first) or
    /// `postgres:URL`.
    #[arg(long, value_name = "sled:DIR|postgres:URL")]
    pub from: String,
    /// Where it goes: `postgres:URL` (migrated, and holding no register yet) or `sled:DIR` (a
    /// new directory; the PIN key is taken from --data, a node of the register).
    #[arg(long, value_name = "sled:DIR|postgres:URL")]
    pub to: String,
}

/// The database at `url`, with the rest of the configuration's `[store]` (its CA, timeouts).
fn database(url: String, common: &Common) -> Result<crate::engine::pg::PgSettings> {
    Ok(match common.load_config()?.postgres() {
        Some(configured) => crate::engine::pg::PgSettings { url, ..configured },
        None => crate::engine::pg::PgSettings::new(url),
    })
}

/// One end of a move.
enum End {
    Sled(PathBuf),
    Postgres(String),
}

fn end(s: &str) -> Result<End> {
    if let Some(dir) = s.strip_prefix("sled:") {
        return Ok(End::Sled(PathBuf::from(dir)));
    }
    if let Some(url) = s.strip_prefix("postgres:").or_else(|| s.strip_prefix("postgresql:")) {
        // `postgres://...` is a URL as it stands; `postgres:host=...` a key=value string.
        let url = if url.starts_with("//") { s.to_string() } else { url.to_string() };
        return Ok(End::Postgres(url));
    }
    Err(exit::usage(format!("{s:?}: give sled:DIR or postgres:URL")))
}

/// Moves a register between sled and PostgreSQL, and says what it moved.
pub fn migrate_store(args: &MigrateStoreArgs, common: &Common) -> Result<ExitCode> {
    use crate::engine::pg;
    let (moved, to) = match (end(&args.from)?, end(&args.to)?) {
        (End::Sled(dir), End::Postgres(url)) => {
            let pg = database(url, common)?;
            let at = pg.shown();
            let m = pg::sled_to_postgres(&dir, &pg)
                .with_context(|| format!("cannot move the register at {} to {at}", dir.display()))?;
            (m, at)
        }
        (End::Postgres(url), End::Sled(dir)) => {
            let pg = database(url, common)?;
            let key_dir = common.data_dir()?.path;
            let m = pg::postgres_to_sled(&pg, &key_dir, &dir)
                .with_context(|| format!("cannot move the register at {} to {}", pg.shown(), dir.display()))?;
            (m, dir.display().to_string())
        }
        _ => return Err(exit::usage("move from sled to postgres, or from postgres to sled")),
    };
    let c = &moved.contents;
    if common.json {
        let counts: serde_json::Map<String, serde_json::Value> =
            c.counts.iter().map(|(t, n)| (t.to_string(), json!(n))).collect();
        outln!("{}", json!({"to": to, "counts": counts, "checksum": c.checksum}));
    } else {
        outln!("moved the register to {to}; read back, it holds the same entries:");
        for (table, n) in &c.counts {
            outln!("  {table:<14} {n}");
        }
        outln!("  checksum       {}", c.checksum);
    }
    Ok(ExitCode::SUCCESS)
}
