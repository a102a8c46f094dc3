//! An SMTP sink for the notification tests: it accepts every message on a loopback port and
//! keeps it, so the tests need nothing beyond what cargo fetches. It speaks the part of RFC 5321
//! a relay client uses (EHLO/HELO, MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One message as the sink received it.
#[derive(Clone, Debug)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// Headers and body, as sent (CRLF line ends, dots unstuffed).
    pub data: String,
}

/// A running sink; it stops when dropped.
pub struct SmtpSink {
    pub port: u16,
    received: Arc<Mutex<Vec<Mail>>>,
    stop: Arc<AtomicBool>,
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let r = r.clone();
                std::thread::spawn(move || {
                    let _ = session(stream, &r);
                });
            }
        });
        SmtpSink { port, received, stop }
    }

    /// `127.0.0.1:PORT`, as `--smtp` and `[mail] relay` take it.
    pub fn relay(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A `[mail]` section that delivers here, looking at the outbox every 200 ms.
    pub fn mail_config(&self) -> String {
        format!("[mail]\nrelay = \"{}\"\nfrom = \"library@example.org\"\ninterval = \"200ms\"\n", self.relay())
    }

    /// The messages received so far.
    pub fn received(&self) -> Vec<Mail> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn session(stream: TcpStream, received: &Mutex<Vec<Mail>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = stream.try_clone()?;
    let mut lines = BufReader::new(stream);
    let mut reply = |text: &str| out.write_all(format!("{text}\r\n").as_bytes());
    reply("220 sink ESMTP")?;
    let (mut from, mut to) = (String::new(), Vec::new());
    loop {
        let mut line = String::new();
        if lines.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end_matches(['\r', '\n']);
        let verb = line.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
        let argument = |prefix: &str| {
            line.get(prefix.len()..)
                .unwrap_or_default()
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        };
        match verb.as_str() {
            "EHLO" => reply("250-sink\r\n250 8BITMIME")?,
            "HELO" | "NOOP" => reply("250 OK")?,
            "MAIL" => {
                from = argument("MAIL FROM:");
                to.clear();
                reply("250 OK")?
            }
            "RCPT" => {
                to.push(argument("RCPT TO:"));
                reply("250 OK")?
            }
            "DATA" => {
                reply("354 end with <CRLF>.<CRLF>")?;
                let mut data = String::new();
                loop {
                    let mut l = String::new();
                    if lines.read_line(&mut l)? == 0 {
                        return Ok(());
                    }
                    if l == ".\r\n" || l == ".\n" {
                        break;
                    }
                    data.push_str(l.strip_prefix('.').unwrap_or(&l));
                }
                received.lock().unwrap().push(Mail { from: from.clone(), to: std::mem::take(&mut to), data });
                reply("250 OK queued")?
            }
            "RSET" => {
                (from, to) = (String::new(), Vec::new());
                reply("250 OK")?
            }
            "QUIT" => {
                reply("221 bye")?;
                return Ok(());
            }
            _ => reply("502 command not implemented")?,
        }
    }
}
