//! Where the register is, found the same way by every command, and opened so that a command
//! that only reads never creates one and root never leaves files another user cannot use.
//!
//! The data directory is the first of: `--data`, `$SIP2D_DATA`, the configuration file's
//! `data` (the file being `--config`, `$SIP2D_CONFIG` or /etc/sip2d/sip2d.toml, the first
//! that is given or, for the last, exists), the per-user data directory.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};

use super::exit;
use crate::domain::{Institution, Patron};
use crate::engine::{Answer, Card, Desk, Engine, Operation, Query, Receipt, StoreConfig};
use crate::net::Config;

/// The configuration file read when neither `--config` nor `$SIP2D_CONFIG` names one.
pub const SYSTEM_CONFIG: &str = "/etc/sip2d/sip2d.toml";

/// Where the register lives, who is acting and how to print; shared by every command.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// The data directory holding the register (its store and PIN key). Default: $SIP2D_DATA,
    /// then the configuration file's `data`, then the per-user directory
    /// (~/.local/share/sip2d).
    #[arg(long, global = true, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// The configuration file (TOML; `sip2d serve --help` lists its keys). Default:
    /// $SIP2D_CONFIG, then /etc/sip2d/sip2d.toml if it exists.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print JSON instead of a readable card or table (moments in RFC 3339).
    #[arg(long, global = true)]
    pub json: bool,
    /// Show times in UTC instead of each institution's time zone.
    #[arg(long, global = true)]
    pub utc: bool,
    /// The name the audit history records for changes (default: the login name).
    #[arg(long = "as", global = true, value_name = "NAME")]
    pub actor: Option<String>,
}

/// Where the data directory was named: said in every message about it, so a user who meant
/// another register sees why this one was taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    Config(PathBuf),
    UserDefault,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag => f.write_str("given by --data"),
            Source::Env => f.write_str("from $SIP2D_DATA"),
            Source::Config(p) => write!(f, "the `data` of {}", p.display()),
            Source::UserDefault => {
                f.write_str("the per-user default; --data, $SIP2D_DATA or a configuration's `data` name another")
            }
        }
    }
}

/// A data directory and where it was named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDir {
    pub path: PathBuf,
    pub source: Source,
}

/// The lookup itself, over what was given: the first of flag, environment, configuration,
/// per-user default.
pub fn choose(
    flag: Option<PathBuf>,
    env: Option<PathBuf>,
    config: Option<(PathBuf, PathBuf)>,
    user_default: impl FnOnce() -> Option<PathBuf>,
) -> Option<DataDir> {
    if let Some(path) = flag {
        return Some(DataDir { path, source: Source::Flag });
    }
    if let Some(path) = env {
        return Some(DataDir { path, source: Source::Env });
    }
    if let Some((file, path)) = config {
        return Some(DataDir { path, source: Source::Config(file) });
    }
    user_default().map(|path| DataDir { path, source: Source::UserDefault })
}

/// The store's settings for a command that opens the register itself. No kiosk waits on this
/// process, so its checkpoints keep up with the command (an import writes as fast as it can) at
/// the priority the command was started with, whatever `checkpoint_nice` says for the server.
fn command_store_config(config: &Config) -> StoreConfig {
    StoreConfig { checkpoint_nice: 0, ..config.store_config() }
}

/// An environment variable naming a path; empty counts as unset.
fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

impl Common {
    /// The configuration file in force, if any.
    pub fn config_file(&self) -> Option<PathBuf> {
        self.config
            .clone()
            .or_else(|| env_path("SIP2D_CONFIG"))
            .or_else(|| Path::new(SYSTEM_CONFIG).exists().then(|| PathBuf::from(SYSTEM_CONFIG)))
    }

    /// The configuration: the file's, or the defaults when there is none.
    pub fn load_config(&self) -> Result<Config> {
        let Some(path) = self.config_file() else { return Ok(Config::default()) };
        Config::load(&path).map_err(|e| match &e {
            crate::net::ConfigError::Read { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
                anyhow::anyhow!("{e}{}", owner_hint(&path))
            }
            _ => anyhow::Error::new(e),
        })
    }

    /// The data directory these options name.
    pub fn data_dir(&self) -> Result<DataDir> {
        let (flag, env) = (self.data.clone(), env_path("SIP2D_DATA"));
        let config = if flag.is_none() && env.is_none() {
            match self.config_file() {
                Some(file) => self.load_config()?.data.map(|d| (file, d)),
                None => None,
            }
        } else {
            None
        };
        choose(flag, env, config, || dirs::data_dir().map(|d| d.join("sip2d")))
            .ok_or_else(|| exit::usage("no per-user data directory on this system; name one with --data DIR"))
    }

    /// The staff member acting: `--as`, or the login name.
    pub fn actor(&self) -> String {
        self.actor.clone().or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "staff".into())
    }

    /// The register: the running server's, through its admin socket, when `sip2d serve` holds
    /// the data directory; otherwise the existing one there, opened here.
    pub fn open(&self) -> Result<Opened> {
        let dir = self.data_dir()?;
        if let Some(remote) = super::remote::Remote::connect(&dir.path, &self.actor())? {
            return Ok(Opened { engine: Arc::new(remote), actor: self.actor(), served: true });
        }
        dir.enter_existing()?;
        let settings = command_store_config(&self.load_config()?);
        Ok(Opened { engine: dir.open(&settings)?, actor: self.actor(), served: false })
    }
}

/// The register a command works on, and who acts. Every change is an engine operation; every
/// read a query of its committed view.
pub struct Opened {
    pub engine: Arc<dyn Engine>,
    pub actor: String,
    /// Whether a running server holds the register (and answers for it).
    pub served: bool,
}

impl Opened {
    pub fn desk(&self) -> Desk<'_> {
        Desk::new(self.engine.as_ref(), &self.actor)
    }

    /// Runs an operation now and waits until it is durable.
    pub fn run(&self, op: Operation) -> Result<Receipt> {
        Ok(self.desk().run(op, jiff::Timestamp::now())?)
    }

    pub fn query(&self, q: Query) -> Result<Answer> {
        Ok(self.desk().query(q)?)
    }

    pub fn institutions(&self) -> Result<Vec<Institution>> {
        match self.query(Query::Institutions)? {
            Answer::Institutions(all) => Ok(all),
            other => Err(unexpected(&other)),
        }
    }

    /// The institution `--institution` names, or the only one there is.
    pub fn institution_of(&self, at: &super::register::At) -> Result<String> {
        if let Some(i) = &at.institution {
            return Ok(i.clone());
        }
        match self.institutions()?.as_slice() {
            [only] => Ok(only.code.clone()),
            [] => {
                Err(exit::not_found("no institution yet: add one with `sip2d institution add --code CODE --name NAME`"))
            }
            _ => Err(exit::usage("several institutions exist; say which with --institution")),
        }
    }

    /// The patron `key` names: `#id`, or a primary id, identifier or e-mail at the institution.
    pub fn find(&self, key: &str, at: &super::register::At) -> Result<Patron> {
        let institution = if key.starts_with('#') { String::new() } else { self.institution_of(at)? };
        match self.query(Query::FindPatron { institution, key: key.to_string() })? {
            Answer::Patron(p) => Ok(*p),
            other => Err(unexpected(&other)),
        }
    }

    /// A patron's card (balance, standing, loans) now.
    pub fn card(&self, id: u64) -> Result<Card> {
        match self.query(Query::Card { patron: id, now: jiff::Timestamp::now() })? {
            Answer::Card(c) => Ok(*c),
            other => Err(unexpected(&other)),
        }
    }
}

/// An answer of another kind than the query gives: a bug, said as one.
pub fn unexpected(a: &Answer) -> anyhow::Error {
    anyhow::anyhow!("unexpected answer {a:?}")
}

/// "; it belongs to NAME: run the command as NAME, e.g. `sudo -u NAME sip2d ...`", for a path
/// this user may not use.
fn owner_hint(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else { return String::new() };
    let owner = nix::unistd::User::from_uid(meta.uid().into())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| meta.uid().to_string());
    let args: Vec<String> = std::env::args().skip(1).collect();
    let line = shlex::try_join(args.iter().map(String::as_str)).unwrap_or_else(|_| args.join(" "));
    format!("; it belongs to {owner}: run the command as its owner, e.g. `sudo -u {owner} sip2d {line}`")
}

impl DataDir {
    /// Makes sure a register is here and this process may use it. As root, in a register
    /// another user owns, the process becomes that user first, so that nothing it writes
    /// (the store's files, a new PIN key) ends up owned by root.
    /// For the server: refuses a data directory others may write (they could replace the
    /// store or the PIN key under it), and makes everything in it owner-only (registers made by
    /// earlier versions had 0755 directories and 0644 files).
    pub fn secure(&self) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&self.path)?.permissions().mode();
        if mode & 0o022 != 0 {
            anyhow::bail!(
                "{} may be written by others (mode {:o}), who could replace the store or the PIN key: `chmod 700 {}` first",
                self.path.display(),
                mode & 0o777,
                self.path.display()
            );
        }
        fn tighten(path: &std::path::Path) -> std::io::Result<()> {
            let meta = std::fs::symlink_metadata(path)?;
            if meta.file_type().is_symlink() {
                return Ok(());
            }
            let want = if meta.is_dir() { 0o700 } else { 0o600 };
            if meta.permissions().mode() & 0o777 != want {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(want))?;
            }
            if meta.is_dir() {
                for e in std::fs::read_dir(path)? {
                    tighten(&e?.path())?;
                }
            }
            Ok(())
        }
        tighten(&self.path).with_context(|| format!("cannot make {} owner-only", self.path.display()))
    }

    pub fn enter_existing(&self) -> Result<()> {
        let shown = || format!("{} ({})", self.path.display(), self.source);
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(exit::not_found(format!(
                    "no register at {}; create one with `sip2d --data {} init`",
                    shown(),
                    self.path.display()
                )));
            }
            Err(e) => return Err(self.no_access(e)),
        };
        if !meta.is_dir() {
            return Err(exit::usage(format!("{} is not a directory", shown())));
        }
        become_owner(&meta)?;
        if let Err(e) = nix::unistd::access(
            &self.path,
            nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
        ) {
            return Err(self.no_access(std::io::Error::from(e)));
        }
        // A node of a register on PostgreSQL keeps only the PIN key here.
        let here = |f: &str| self.path.join(f).exists();
        if !here(crate::engine::STORE_DIR) && !here(crate::engine::PIN_KEY) {
            return Err(exit::not_found(format!(
                "no register at {} (the directory holds none); create one with `sip2d --data {} init`",
                shown(),
                self.path.display()
            )));
        }
        Ok(())
    }

    /// As [`DataDir::enter_existing`], for a directory that may not exist yet (`sip2d init`):
    /// become the owner of the directory, or of the nearest existing parent.
    pub fn enter_new(&self) -> Result<()> {
        let mut at = self.path.as_path();
        loop {
            match std::fs::metadata(at) {
                Ok(meta) => return become_owner(&meta),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => match at.parent() {
                    Some(p) if !p.as_os_str().is_empty() => at = p,
                    _ => return Ok(()),
                },
                Err(e) => return Err(self.no_access(e)),
            }
        }
    }

    /// Opens the register here (or, on PostgreSQL, the database's with the PIN key here), once
    /// checked with [`DataDir::enter_existing`].
    pub fn open(&self, settings: &StoreConfig) -> Result<crate::engine::Shared> {
        crate::engine::open_register(&self.path, settings)
            .with_context(|| format!("cannot open the register at {} ({})", self.path.display(), self.source))
    }

    fn no_access(&self, e: std::io::Error) -> anyhow::Error {
        anyhow::anyhow!(
            "cannot use the register at {} ({}): {e}{}",
            self.path.display(),
            self.source,
            owner_hint(&self.path)
        )
    }
}

/// As root, takes on the identity of the owner of `meta`'s file (unless root owns it too).
fn become_owner(meta: &std::fs::Metadata) -> Result<()> {
    use nix::unistd::{Gid, Uid};
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() || meta.uid() == 0 {
        return Ok(());
    }
    let (uid, gid) = (Uid::from_raw(meta.uid()), Gid::from_raw(meta.gid()));
    let user = nix::unistd::User::from_uid(uid).ok().flatten();
    let gid = user.as_ref().map_or(gid, |u| u.gid);
    let name = user.as_ref().map_or_else(|| uid.to_string(), |u| u.name.clone());
    let became = (|| {
        match &user {
            Some(u) => {
                let c = std::ffi::CString::new(u.name.clone()).map_err(|_| nix::Error::EINVAL)?;
                nix::unistd::initgroups(&c, gid)?
            }
            None => nix::unistd::setgroups(&[gid])?,
        }
        nix::unistd::setgid(gid)?;
        nix::unistd::setuid(uid)
    })();
    became.with_context(|| format!("cannot act as {name}, the owner of the register"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_directory_is_the_first_of_flag_environment_configuration_default() {
        let p = |s: &str| Some(PathBuf::from(s));
        let conf = || Some((PathBuf::from("/etc/sip2d/sip2d.toml"), PathBuf::from("/c")));
        let home = || Some(PathBuf::from("/home"));
        let dir = |path: &str, source| Some(DataDir { path: path.into(), source });
        assert_eq!(choose(p("/f"), p("/e"), conf(), home), dir("/f", Source::Flag));
        assert_eq!(choose(None, p("/e"), conf(), home), dir("/e", Source::Env));
        assert_eq!(choose(None, None, conf(), home), dir("/c", Source::Config("/etc/sip2d/sip2d.toml".into())));
        assert_eq!(choose(None, None, None, home), dir("/home", Source::UserDefault));
        assert_eq!(choose(None, None, None, || None), None);
    }

    #[test]
    fn a_command_checkpoints_at_its_own_priority_and_keeps_the_rest_of_the_store_settings() {
        let mut config = Config::default();
        config.store.checkpoint_nice = 15;
        config.store.checkpoint_mib = 8;
        let settings = command_store_config(&config);
        assert_eq!(settings.checkpoint_nice, 0);
        assert_eq!(settings.checkpoint_bytes, config.store_config().checkpoint_bytes);
        assert_eq!(config.store_config().checkpoint_nice, 15, "the server's setting stands");
    }
}
