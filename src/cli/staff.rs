//! `sip2d staff`: staff accounts for the console and the resource API, their roles,
//! institutions, lockouts and bearer tokens.

use std::process::ExitCode;

use anyhow::Result;
use jiff::Timestamp;
use serde_json::json;

use super::location::unexpected;
use super::register::Common;
use super::times::Times;
use crate::domain::{Role, Staff};
use crate::engine::{Answer, Operation, Query};

/// Staff accounts: who may use the console and the resource API, in which role and for which
/// institutions.
///
/// Roles, each allowing what the ones before it do:
///   desk                 read-only: find and look
///   user-manager         add, edit, block, notes, fees, loans and holds, proxies, transfers
///   user-administrator   also delete and restore patrons, terminal accounts, staff accounts
///   main-administrator   also the institution's settings
///
/// A member sees only the patrons of the institutions their account names. Five wrong
/// passwords in a row lock the account for 15 minutes (`[register]` in the configuration).
#[derive(Debug, clap::Subcommand)]
#[command(verbatim_doc_comment)]
pub enum StaffCmd {
    /// Add a staff account; the password (10 characters or more) is read from standard input.
    Add {
        login: String,
        /// The name the audit history shows for their changes.
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// An institution they work for (repeatable; at least one).
        #[arg(long = "institution", short = 'i', required = true)]
        institutions: Vec<String>,
    },
    /// List staff accounts.
    List,
    /// Show an account: role, institutions, lock, tokens (never their values), history.
    Show { login: String },
    /// Change the name, the role or the institutions (given ones replace all).
    Change {
        login: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, value_parser = parse_role)]
        role: Option<Role>,
        #[arg(long = "institution", short = 'i')]
        institutions: Vec<String>,
    },
    /// Set a new password (read from standard input); it also lifts a lock.
    Password { login: String },
    /// Lift a lock set by wrong passwords.
    Unlock { login: String },
    /// Bearer tokens for integrations.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Remove an account.
    Remove { login: String },
}

#[derive(Debug, clap::Subcommand)]
pub enum TokenCmd {
    /// Make a token; it is printed once and only its digest is kept.
    Add {
        login: String,
        /// What it is for (shown in `staff show`).
        #[arg(long)]
        label: String,
    },
    /// Revoke a token by its number.
    Revoke { login: String, token: u32 },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| {
        let all: Vec<&str> = Role::ALL.iter().map(|r| r.code()).collect();
        format!("one of {}", all.join(", "))
    })
}

fn print(m: &Staff, times: &Times<'_>, json: bool, full: bool) {
    let inst = m.institutions.first().map(String::as_str).unwrap_or_default();
    let when = |t: Timestamp| times.minute(inst, t);
    let now = Timestamp::now();
    if json {
        outln!(
            "{}",
            json!({
                "login": m.login, "name": m.name, "role": m.role, "institutions": m.institutions,
                "locked_until": m.locked_until.filter(|t| *t > now), "last_login": m.last_login,
                "tokens": m.tokens.iter().map(|t| json!({"id": t.id, "label": t.label, "created": t.created})).collect::<Vec<_>>(),
                "history": if full { json!(m.history) } else { json!(null) },
            })
        );
        return;
    }
    let lock = match m.locked_until.filter(|t| *t > now) {
        Some(t) => format!("  locked until {}", when(t)),
        None => String::new(),
    };
    outln!("{:<20} {:<20} {:<30} {}{lock}", m.login, m.role.code(), m.name, m.institutions.join(","));
    if !full {
        return;
    }
    if let Some(t) = m.last_login {
        outln!("  last login {}", when(t));
    }
    for t in &m.tokens {
        outln!("  token {} {} (made {})", t.id, t.label, when(t.created));
    }
    for e in &m.history {
        outln!("  {}  {}  {}", when(e.at), e.by, e.what);
    }
}

pub fn run(cmd: &StaffCmd, common: &Common) -> Result<ExitCode> {
    let reg = common.open()?;
    let times = Times::new(reg.engine.as_ref(), common.utc);
    let json = common.json;
    match cmd {
        StaffCmd::Add { login, name, role, institutions } => {
            let password_hash = crate::engine::hash_staff_password(&super::circulation::read_password()?)?;
            let op = Operation::AddStaff {
                login: login.clone(),
                name: name.clone(),
                password_hash,
                role: *role,
                institutions: institutions.clone(),
            };
            print(&reg.run(op)?.staff()?, &times, json, false);
        }
        StaffCmd::List => {
            let Answer::StaffList(all) = reg.query(Query::StaffList)? else {
                return Err(anyhow::anyhow!("unexpected answer to a staff list"));
            };
            for m in all {
                print(&m, &times, json, false);
            }
        }
        StaffCmd::Show { login } => match reg.query(Query::Staff(login.clone()))? {
            Answer::Staff(m) => print(&m, &times, json, true),
            other => return Err(unexpected(&other)),
        },
        StaffCmd::Change { login, name, role, institutions } => {
            let op = Operation::ChangeStaff {
                login: login.clone(),
                name: name.clone(),
                role: *role,
                institutions: (!institutions.is_empty()).then(|| institutions.clone()),
            };
            print(&reg.run(op)?.staff()?, &times, json, false);
        }
        StaffCmd::Password { login } => {
            let password_hash = crate::engine::hash_staff_password(&super::circulation::read_password()?)?;
            let op = Operation::SetStaffPassword { login: login.clone(), password_hash, matched: None };
            reg.run(op)?.staff()?;
            outln!("password changed for {login}");
        }
        StaffCmd::Unlock { login } => {
            reg.run(Operation::UnlockStaff { login: login.clone() })?.staff()?;
            outln!("{login} unlocked");
        }
        StaffCmd::Token(TokenCmd::Add { login, label }) => {
            let token = crate::domain::secret::new_token()?;
            let digest = crate::domain::secret::token_digest(&token);
            let m =
                reg.run(Operation::AddStaffToken { login: login.clone(), label: label.clone(), digest })?.staff()?;
            let id = m.tokens.last().map(|t| t.id).unwrap_or_default();
            if json {
                outln!("{}", json!({ "login": login, "id": id, "token": token }));
            } else {
                outln!("token {id} for {login} (shown only now; send it as 'Authorization: Bearer ...'):");
                outln!("{token}");
            }
        }
        StaffCmd::Token(TokenCmd::Revoke { login, token }) => {
            reg.run(Operation::RevokeStaffToken { login: login.clone(), token: *token })?.staff()?;
            outln!("token {token} of {login} revoked");
        }
        StaffCmd::Remove { login } => {
            reg.run(Operation::RemoveStaff { login: login.clone() })?.done()?;
            outln!("staff account {login} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}
