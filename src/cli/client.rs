//! `sip2d client`: talk SIP2 to any server, one request or interactively.

use std::borrow::Cow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::proto::{
    self, Algorithm, BlockPatron, Checkin, Checkout, Encoding, EndPatronSession, FeePaid, FeeType, Hold, HoldMode,
    ItemInformation, ItemStatusUpdate, Login, Message, PatronEnable, PatronInformation, PatronStatusRequest,
    PaymentType, Renew, RenewAll, RequestAcsResend, ScStatus, Secret, SipDate, Summary, Terminator, Trailer, escape,
};
use crate::tools::conn::{ClientTls, SipConn, Wire};

/// Where to connect and how to write frames; shared by `client`, `conform` and `bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The server's host name or address.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The server's port.
    #[arg(long, default_value_t = 6001)]
    pub port: u16,
    /// Log in (93) first as USER:PASSWORD.
    #[arg(long, value_name = "USER:PASSWORD")]
    pub login: Option<String>,
    /// The location code sent with the login (CP).
    #[arg(long, value_name = "CODE")]
    pub location: Option<String>,
    /// The institution id (AO) to send. Default: the one the server's 98 names.
    #[arg(long, value_name = "AO")]
    pub institution: Option<String>,
    /// Connect with TLS.
    #[arg(long)]
    pub tls: bool,
    /// PEM CA certificates that may sign the server's certificate (with --tls).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with --key).
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Accept any server certificate (testing only).
    #[arg(long)]
    pub insecure: bool,
    /// Send no AY/AZ checksum trailer.
    #[arg(long)]
    pub no_checksums: bool,
    /// End frames with CR LF instead of CR.
    #[arg(long)]
    pub crlf: bool,
    /// Text encoding on the wire: utf-8 or cp850.
    #[arg(long, default_value = "utf-8", value_parser = parse_encoding)]
    pub encoding: Encoding,
    /// How long to wait for each reply, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = humantime_serde::re::humantime::parse_duration)]
    pub timeout: Duration,
}

fn parse_encoding(s: &str) -> Result<Encoding, String> {
    Encoding::from_name(s).ok_or_else(|| format!("'{s}' is not an encoding: utf-8 or cp850"))
}

impl Target {
    pub fn wire(&self) -> Wire {
        Wire {
            checksums: !self.no_checksums,
            terminator: if self.crlf { Terminator::CrLf } else { Terminator::Cr },
            encoding: self.encoding,
        }
    }

    /// The `--login` pair.
    pub fn credentials(&self) -> Result<Option<(String, String)>> {
        match &self.login {
            None => Ok(None),
            Some(l) => match l.split_once(':') {
                Some((u, p)) => Ok(Some((u.to_string(), p.to_string()))),
                None => Err(super::exit::usage("--login takes USER:PASSWORD")),
            },
        }
    }

    pub async fn connect(&self) -> Result<SipConn> {
        let tls = if self.tls {
            let settings = ClientTls {
                ca: self.ca.clone(),
                cert: self.cert.clone().zip(self.key.clone()),
                insecure: self.insecure,
                server_name: None,
            };
            let config = crate::tools::conn::tls_config(&settings)?;
            Some((settings, config))
        } else {
            None
        };
        SipConn::connect(&self.host, self.port, tls.as_ref().map(|(s, c)| (s, c.clone())), self.wire(), self.timeout)
            .await
            .with_context(|| format!("cannot reach {}:{}", self.host, self.port))
    }
}

/// One request, by the name of its message.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Request {
    /// 99 SC Status: what the server supports.
    ScStatus,
    /// 23 Patron Status.
    PatronStatus {
        patron: String,
        #[arg(long)]
        pin: Option<String>,
    },
    /// 63 Patron Information, with one item list (--summary).
    PatronInfo {
        patron: String,
        #[arg(long)]
        pin: Option<String>,
        /// holds, overdue, charged, fines, recalls or unavailable.
        #[arg(long)]
        summary: Option<String>,
        /// First item of the list (BP), 1-based.
        #[arg(long)]
        start: Option<u32>,
        /// Last item of the list (BQ).
        #[arg(long)]
        end: Option<u32>,
    },
    /// 11 Checkout.
    Checkout {
        patron: String,
        item: String,
        #[arg(long)]
        pin: Option<String>,
        /// Accept the item's fee (BO Y).
        #[arg(long)]
        fee_ack: bool,
        /// An off-line checkout, already made (no block).
        #[arg(long)]
        no_block: bool,
        /// Cancel a checkout the kiosk could not finish (BI Y).
        #[arg(long)]
        cancel: bool,
    },
    /// 09 Checkin.
    Checkin {
        item: String,
        /// Where the item is returned (AP).
        #[arg(long, default_value = "")]
        location: String,
    },
    /// 29 Renew.
    Renew {
        patron: String,
        item: String,
        #[arg(long)]
        pin: Option<String>,
    },
    /// 65 Renew All.
    RenewAll {
        patron: String,
        #[arg(long)]
        pin: Option<String>,
    },
    /// 17 Item Information.
    ItemInfo { item: String },
    /// 19 Item Status Update: store the item's properties.
    ItemStatus { item: String, properties: String },
    /// 35 End Patron Session.
    EndSession {
        patron: String,
        #[arg(long)]
        pin: Option<String>,
    },
    /// 37 Fee Paid.
    FeePaid {
        patron: String,
        /// The amount, e.g. 2.50.
        amount: String,
        #[arg(long, default_value = "USD")]
        currency: String,
        /// The fee to pay (CG); default: the oldest.
        #[arg(long)]
        fee_id: Option<String>,
        /// The kiosk's own transaction id (BK).
        #[arg(long)]
        transaction: Option<String>,
        #[arg(long)]
        pin: Option<String>,
    },
    /// 15 Hold: place, cancel or change a hold on an item (--item) or title (--title).
    Hold {
        patron: String,
        /// place, cancel or change.
        #[arg(default_value = "place")]
        mode: String,
        #[arg(long)]
        item: Option<String>,
        #[arg(long)]
        title: Option<String>,
        #[arg(long)]
        pickup: Option<String>,
        #[arg(long)]
        pin: Option<String>,
    },
    /// 01 Block Patron.
    Block {
        patron: String,
        message: String,
        #[arg(long)]
        card_retained: bool,
    },
    /// 25 Patron Enable.
    Enable {
        patron: String,
        #[arg(long)]
        pin: Option<String>,
    },
    /// 97 Request ACS Resend: the server's last reply again.
    Resend,
    /// Send a frame as written, in the vectors' escape notation (\r is added when missing).
    Raw { frame: String },
}

/// The command names, for completion in the interactive client.
pub const COMMANDS: &[&str] = &[
    "sc-status",
    "patron-status",
    "patron-info",
    "checkout",
    "checkin",
    "renew",
    "renew-all",
    "item-info",
    "item-status",
    "end-session",
    "fee-paid",
    "hold",
    "block",
    "enable",
    "resend",
    "raw",
    "help",
    "quit",
];

/// `sip2d client`.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    #[command(flatten)]
    pub target: Target,
    /// Show frames as sent and received, instead of decoded fields.
    #[arg(long)]
    raw: bool,
    /// The request to send; without one, an interactive prompt.
    #[command(subcommand)]
    request: Option<Request>,
}

/// The current time as a local SIP date.
pub fn now_date() -> SipDate {
    crate::service::sip_date_in(jiff::Timestamp::now(), &jiff::tz::TimeZone::system(), proto::Zone::Local)
}

fn pin(p: &Option<String>) -> Option<Secret<'static>> {
    p.clone().map(Secret::new)
}

/// The message a request names. `None` for `raw`, which is sent as written.
pub fn message(req: &Request, inst: &str) -> Result<Option<Message<'static>>> {
    let ao = || Cow::Owned(inst.to_string());
    let s = |v: &str| Cow::Owned(v.to_string());
    let date = now_date();
    Ok(Some(match req {
        Request::ScStatus => {
            ScStatus { max_print_width: 80, protocol_version: proto::ProtocolVersion::V2_00, ..Default::default() }
                .into()
        }
        Request::PatronStatus { patron, pin: p } => PatronStatusRequest {
            language: proto::Language::from_code(1),
            transaction_date: date,
            institution_id: ao(),
            patron_identifier: s(patron),
            patron_password: Secret::new(p.clone().unwrap_or_default()),
            ..Default::default()
        }
        .into(),
        Request::PatronInfo { patron, pin: p, summary, start, end } => {
            let mut sum = Summary::default();
            if let Some(name) = summary {
                sum.insert(match name.as_str() {
                    "holds" => Summary::HOLD_ITEMS,
                    "overdue" => Summary::OVERDUE_ITEMS,
                    "charged" => Summary::CHARGED_ITEMS,
                    "fines" => Summary::FINE_ITEMS,
                    "recalls" => Summary::RECALL_ITEMS,
                    "unavailable" => Summary::UNAVAILABLE_HOLDS,
                    other => {
                        return Err(super::exit::usage(format!(
                            "--summary {other}: holds, overdue, charged, fines, recalls or unavailable"
                        )));
                    }
                });
            }
            PatronInformation {
                language: proto::Language::from_code(1),
                transaction_date: date,
                summary: sum,
                institution_id: ao(),
                patron_identifier: s(patron),
                terminal_password: Some(Secret::new(String::new())),
                patron_password: pin(p),
                start_item: start.map(|v| Cow::Owned(v.to_string())),
                end_item: end.map(|v| Cow::Owned(v.to_string())),
                ..Default::default()
            }
            .into()
        }
        Request::Checkout { patron, item, pin: p, fee_ack, no_block, cancel } => Checkout {
            sc_renewal_policy: true,
            no_block: *no_block,
            transaction_date: date,
            institution_id: ao(),
            patron_identifier: s(patron),
            item_identifier: s(item),
            patron_password: pin(p),
            fee_acknowledged: fee_ack.then_some(true),
            cancel: cancel.then_some(true),
            ..Default::default()
        }
        .into(),
        Request::Checkin { item, location } => Checkin {
            transaction_date: date,
            return_date: date,
            current_location: s(location),
            institution_id: ao(),
            item_identifier: s(item),
            ..Default::default()
        }
        .into(),
        Request::Renew { patron, item, pin: p } => Renew {
            transaction_date: date,
            institution_id: ao(),
            patron_identifier: s(patron),
            patron_password: pin(p),
            item_identifier: Some(s(item)),
            ..Default::default()
        }
        .into(),
        Request::RenewAll { patron, pin: p } => RenewAll {
            transaction_date: date,
            institution_id: ao(),
            patron_identifier: s(patron),
            patron_password: pin(p),
            ..Default::default()
        }
        .into(),
        Request::ItemInfo { item } => ItemInformation {
            transaction_date: date,
            institution_id: ao(),
            item_identifier: s(item),
            ..Default::default()
        }
        .into(),
        Request::ItemStatus { item, properties } => ItemStatusUpdate {
            transaction_date: date,
            institution_id: ao(),
            item_identifier: s(item),
            item_properties: s(properties),
            ..Default::default()
        }
        .into(),
        Request::EndSession { patron, pin: p } => EndPatronSession {
            transaction_date: date,
            institution_id: ao(),
            patron_identifier: s(patron),
            patron_password: pin(p),
            ..Default::default()
        }
        .into(),
        Request::FeePaid { patron, amount, currency, fee_id, transaction, pin: p } => FeePaid {
            transaction_date: date,
            fee_type: FeeType::OtherUnknown,
            payment_type: PaymentType::Cash,
            currency_type: proto::Currency::new(currency).context("--currency takes three letters, e.g. SEK")?,
            fee_amount: s(amount),
            institution_id: ao(),
            patron_identifier: s(patron),
            patron_password: pin(p),
            fee_identifier: fee_id.as_deref().map(s),
            transaction_id: transaction.as_deref().map(s),
            ..Default::default()
        }
        .into(),
        Request::Hold { patron, mode, item, title, pickup, pin: p } => Hold {
            hold_mode: match mode.as_str() {
                "place" | "+" => HoldMode::Add,
                "cancel" | "-" => HoldMode::Delete,
                "change" | "*" => HoldMode::Change,
                other => return Err(super::exit::usage(format!("hold mode {other}: place, cancel or change"))),
            },
            transaction_date: date,
            pickup_location: pickup.as_deref().map(s),
            institution_id: ao(),
            patron_identifier: s(patron),
            patron_password: pin(p),
            item_identifier: item.as_deref().map(s),
            title_identifier: title.as_deref().map(s),
            ..Default::default()
        }
        .into(),
        Request::Block { patron, message, card_retained } => BlockPatron {
            card_retained: *card_retained,
            transaction_date: date,
            institution_id: ao(),
            blocked_card_msg: s(message),
            patron_identifier: s(patron),
            ..Default::default()
        }
        .into(),
        Request::Enable { patron, pin: p } => PatronEnable {
            transaction_date: date,
            institution_id: ao(),
            patron_identifier: s(patron),
            patron_password: pin(p),
            ..Default::default()
        }
        .into(),
        Request::Resend => RequestAcsResend::default().into(),
        Request::Raw { .. } => return Ok(None),
    }))
}

/// A frame as the client shows it: decoded with labels, or raw (PINs masked either way).
pub fn show(frame: &[u8], encoding: Encoding, raw: bool, arrow: &str) -> String {
    if raw {
        return format!("{arrow} {}", escape::escape(&proto::redact(frame)));
    }
    let mut scratch = bytes::BytesMut::new();
    let d = proto::decode_lenient(frame, encoding, &mut scratch);
    let sum = match d.trailer {
        Trailer::Absent => "no checksum".to_string(),
        Trailer::Present { valid: true, sequence, .. } => {
            format!("checksum ok{}", sequence.map(|s| format!(", AY{s}")).unwrap_or_default())
        }
        _ => "checksum BAD".to_string(),
    };
    match &d.message {
        Ok(m) => {
            let code = String::from_utf8_lossy(&m.code()).into_owned();
            let mut out = format!("{arrow} {code} {} ({sum})", m.name());
            let fields = m.describe();
            let width = fields.iter().map(|f| f.label.len()).max().unwrap_or(0);
            for f in fields {
                let id = f.id.map(|i| String::from_utf8_lossy(&i).into_owned()).unwrap_or_else(|| "  ".into());
                out.push_str(&format!("\n    {id} {:<width$}  {}", f.label, f.value));
            }
            for (dev, at) in d.deviations.iter() {
                out.push_str(&format!("\n    tolerated at byte {at}: {dev} ({})", dev.describe()));
            }
            out
        }
        Err(e) => format!("{arrow} cannot be read: {e} ({sum})\n    raw: {}", escape::escape(&proto::redact(frame))),
    }
}

/// A client session: connected, logged in, institution known.
pub struct ClientSession {
    pub conn: SipConn,
    pub institution: String,
}

impl ClientSession {
    /// Connects, logs in when asked (a refused login is an error), and learns the
    /// institution from a 99 unless it was given.
    pub async fn open(t: &Target, verbose: Option<bool>) -> Result<ClientSession> {
        let mut conn = t.connect().await?;
        if let Some((user, password)) = t.credentials()? {
            let login = Login {
                uid_algorithm: Algorithm::Plain,
                pwd_algorithm: Algorithm::Plain,
                login_user_id: Cow::Owned(user.clone()),
                login_password: Secret::new(password),
                location_code: t.location.clone().map(Cow::Owned),
                ..Default::default()
            };
            let reply = conn.ask(&login.into(), t.timeout).await?;
            if let Some(raw) = verbose {
                println!("{}", show(&reply, t.encoding, raw, "<"));
            }
            let mut scratch = bytes::BytesMut::new();
            match proto::decode_lenient(&reply, t.encoding, &mut scratch).only(proto::Direction::AcsToSc).message {
                Ok(Message::LoginResponse(r)) if r.ok => {}
                _ => bail!("the server refused the login as {user}"),
            }
        }
        let institution = match &t.institution {
            Some(i) => i.clone(),
            None => {
                let status = message(&Request::ScStatus, "")?.context("99")?;
                let reply = conn.ask(&status, t.timeout).await?;
                let mut scratch = bytes::BytesMut::new();
                match proto::decode_lenient(&reply, t.encoding, &mut scratch).only(proto::Direction::AcsToSc).message {
                    Ok(Message::AcsStatus(s)) => s.institution_id.into_owned(),
                    _ => String::new(),
                }
            }
        };
        Ok(ClientSession { conn, institution })
    }

    /// Sends one request and returns the reply frame.
    pub async fn request(&mut self, req: &Request, timeout: Duration) -> Result<(bytes::Bytes, bytes::Bytes)> {
        let sent = match message(req, &self.institution)? {
            Some(m) => self.conn.send(&m).await?,
            None => {
                let Request::Raw { frame } = req else { bail!("nothing to send") };
                let mut bytes = escape::unescape(frame).context("the frame's escapes are not valid (\\r, \\xHH)")?;
                if !bytes.ends_with(b"\r") && !bytes.ends_with(b"\n") {
                    bytes.push(b'\r');
                }
                self.conn.send_raw(&bytes).await?;
                bytes::Bytes::from(bytes)
            }
        };
        let reply = self.conn.recv_within(timeout).await?.context("the server closed the connection")?;
        Ok((sent, reply))
    }
}

/// `repl` lines: a request or a session command.
#[derive(Debug, clap::Parser)]
#[command(no_binary_name = true, name = "sip2>", disable_version_flag = true)]
struct Line {
    #[command(subcommand)]
    request: Request,
}

pub fn run(args: &ClientArgs) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let t = &args.target;
        match &args.request {
            Some(req) => {
                let mut s = ClientSession::open(t, None).await?;
                let (sent, reply) = s.request(req, t.timeout).await?;
                if args.raw {
                    println!("{}", show(&sent, t.encoding, true, ">"));
                }
                println!("{}", show(&reply, t.encoding, args.raw, "<"));
                Ok(ExitCode::SUCCESS)
            }
            None => interactive(t, args.raw).await,
        }
    })
}

struct Completion;

impl rustyline::completion::Completer for Completion {
    type Candidate = String;
    fn complete(&self, line: &str, pos: usize, _: &rustyline::Context<'_>) -> rustyline::Result<(usize, Vec<String>)> {
        let head = line.get(..pos).unwrap_or(line);
        if head.contains(' ') {
            return Ok((pos, Vec::new()));
        }
        Ok((0, COMMANDS.iter().filter(|c| c.starts_with(head)).map(|c| (*c).to_string()).collect()))
    }
}
impl rustyline::hint::Hinter for Completion {
    type Hint = String;
}
impl rustyline::highlight::Highlighter for Completion {}
impl rustyline::validate::Validator for Completion {}
impl rustyline::Helper for Completion {}

async fn interactive(t: &Target, raw: bool) -> Result<ExitCode> {
    let mut s = ClientSession::open(t, Some(raw)).await?;
    println!(
        "connected to {}:{}{} as institution '{}'. Commands: {} (help COMMAND for its options; Tab completes; Ctrl-D quits)",
        t.host,
        t.port,
        if t.tls { " (TLS)" } else { "" },
        s.institution,
        COMMANDS.join(", ")
    );
    let mut editor: rustyline::Editor<Completion, rustyline::history::DefaultHistory> = rustyline::Editor::new()?;
    editor.set_helper(Some(Completion));
    let history = dirs::data_dir().map(|d| d.join("sip2d").join("client-history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    loop {
        let line = match editor.readline("sip2> ") {
            Ok(l) => l,
            Err(rustyline::error::ReadlineError::Interrupted | rustyline::error::ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let words = match shlex::split(&line) {
            Some(w) if !w.is_empty() => w,
            Some(_) => continue,
            None => {
                println!("unbalanced quotes");
                continue;
            }
        };
        let _ = editor.add_history_entry(line.as_str());
        if let Some("quit" | "exit") = words.first().map(String::as_str) {
            break;
        }
        let req = match <Line as clap::Parser>::try_parse_from(&words) {
            Ok(l) => l.request,
            Err(e) => {
                println!("{e}");
                continue;
            }
        };
        match s.request(&req, t.timeout).await {
            Ok((sent, reply)) => {
                if raw {
                    println!("{}", show(&sent, t.encoding, true, ">"));
                }
                println!("{}", show(&reply, t.encoding, raw, "<"));
            }
            Err(e) => {
                println!("error: {e:#}");
                if s.conn.recv_within(Duration::from_millis(1)).await.is_ok_and(|r| r.is_none()) {
                    break;
                }
            }
        }
    }
    if let Some(h) = &history {
        if let Some(dir) = h.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = editor.save_history(h);
    }
    Ok(ExitCode::SUCCESS)
}
