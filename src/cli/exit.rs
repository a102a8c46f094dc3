//! Exit codes, one meaning each across every command, and the one-line error report.

use std::process::ExitCode;

use crate::domain::refusal::Kind;
use crate::engine::Error;

/// What a command's exit code says. `sip2d --help` and the man page list these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// 0: done.
    Ok = 0,
    /// 1: something failed: a file, the store, the network, a server that did not answer, a
    /// check that did not pass (conform, bench, a delivery).
    Failure = 1,
    /// 2: the command line is wrong: an unknown option, a bad value, a missing argument.
    Usage = 2,
    /// 3: a rule refused it: validation, a duplicate, a balance due, a wrong PIN, rejected
    /// import lines. Nothing refused is written.
    Refused = 3,
    /// 4: what was named does not exist: a patron, item, institution, fee, hold, account, a
    /// search without a match, or the register itself.
    NotFound = 4,
}

/// The table printed under `sip2d --help` and in the man page.
pub const EXIT_CODES_HELP: &str = "\
Exit codes (the same for every command):
  0  done
  1  failed: a file, the store, the network, a server that did not answer, a check that did
     not pass (conform, bench, outbox deliver)
  2  usage: an unknown option, a bad value, a missing argument
  3  refused by a rule: validation, a duplicate, a balance due, a wrong PIN, rejected import
     lines; nothing refused is written
  4  not found: the patron, item, institution, fee, hold, account or register named, or a
     search without a match";

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// An error that knows its exit code; any other error is a failure (1).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Fail {
    pub exit: Exit,
    pub message: String,
}

pub fn usage(message: impl Into<String>) -> anyhow::Error {
    Fail { exit: Exit::Usage, message: message.into() }.into()
}

pub fn refused(message: impl Into<String>) -> anyhow::Error {
    Fail { exit: Exit::Refused, message: message.into() }.into()
}

pub fn not_found(message: impl Into<String>) -> anyhow::Error {
    Fail { exit: Exit::NotFound, message: message.into() }.into()
}

/// The exit code an error means: the first cause in its chain that says.
pub fn of(e: &anyhow::Error) -> Exit {
    for cause in e.chain() {
        if let Some(f) = cause.downcast_ref::<Fail>() {
            return f.exit;
        }
        if let Some(s) = cause.downcast_ref::<Error>() {
            return of_engine(s);
        }
        if let Some(r) = cause.downcast_ref::<crate::domain::Refusal>() {
            return of_refusal(r);
        }
        if cause.downcast_ref::<clap::Error>().is_some() {
            return Exit::Usage;
        }
    }
    Exit::Failure
}

fn of_refusal(r: &crate::domain::Refusal) -> Exit {
    match r.kind() {
        Kind::NotFound => Exit::NotFound,
        Kind::Rule => Exit::Refused,
    }
}

fn of_engine(e: &Error) -> Exit {
    match e {
        Error::Refused(r) => of_refusal(r),
        Error::Store(_) | Error::Stopped(_) | Error::NotDone(_) | Error::Closed => Exit::Failure,
    }
}

/// The error as one line: each cause once. A message that already quotes its cause (as
/// "cannot open X: permission denied" does) is not followed by the cause again.
pub fn line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Reports an error on standard error (or the admin client's capture) and gives its code.
pub fn report(e: &anyhow::Error) -> ExitCode {
    errln!("sip2d: {}", line(e));
    of(e).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn a_cause_the_message_already_quotes_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "permission denied");
        let inner = anyhow::Error::new(io).context("cannot open /x/db: permission denied");
        let e = inner.context("cannot open the register in /x");
        assert_eq!(line(&e), "cannot open the register in /x: cannot open /x/db: permission denied");
        let plain: anyhow::Result<()> = Err(anyhow::anyhow!("disk full")).context("writing");
        assert_eq!(line(&plain.unwrap_err()), "writing: disk full");
    }

    #[test]
    fn each_error_kind_has_its_code() {
        use crate::domain::Refusal;
        assert_eq!(of(&Error::Refused(Refusal::NoPatron("P1".into())).into()), Exit::NotFound);
        assert_eq!(of(&Error::Refused(Refusal::NoItem("X".into())).into()), Exit::NotFound);
        assert_eq!(of(&Error::Refused(Refusal::rule("no")).into()), Exit::Refused);
        let wrapped = anyhow::Error::from(Error::Refused(Refusal::rule("no"))).context("while adding");
        assert_eq!(of(&wrapped), Exit::Refused);
        assert_eq!(of(&Error::Closed.into()), Exit::Failure);
        assert_eq!(of(&usage("say which")), Exit::Usage);
        assert_eq!(of(&anyhow::anyhow!("the network is down")), Exit::Failure);
        assert_eq!(ExitCode::from(Exit::NotFound), ExitCode::from(4));
    }
}
