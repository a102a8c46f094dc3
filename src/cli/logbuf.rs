//! The server's log writer: lines are gathered in memory and written to standard error in one
//! write every few milliseconds, so a busy server spends no thread wake-up and no system call
//! per request logged (a channel to a writer thread cost both, for every line).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How often gathered lines are written out.
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Written out early once this much is gathered.
const EARLY: usize = 256 * 1024;
/// Beyond this (standard error not keeping up), lines are dropped and counted, rather than
/// holding up requests or growing without bound.
const MAX: usize = 16 * 1024 * 1024;

#[derive(Default)]
struct Shared {
    lines: Mutex<Pending>,
    wake: Condvar,
    dropped: AtomicU64,
}

impl Shared {
    /// Gathers one whole line.
    fn append(&self, bytes: &[u8]) {
        let Ok(mut p) = self.lines.lock() else { return };
        if p.buf.len() + bytes.len() > MAX {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            let before = p.buf.len();
            p.buf.extend_from_slice(bytes);
            if before < EARLY && p.buf.len() >= EARLY {
                self.wake.notify_one();
            }
        }
    }
}

#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    closed: bool,
}

/// Gives the log layer a writer per line; see [`LogBuffer::start`].
#[derive(Clone)]
pub struct LogBuffer {
    shared: Arc<Shared>,
}

/// Writes out what is gathered, and stops the writer thread, when dropped.
pub struct Flusher {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LogBuffer {
    /// Starts the thread that writes gathered lines to `out`.
    pub fn start(mut out: impl Write + Send + 'static) -> (LogBuffer, Flusher) {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("sip2d-log".into())
            .spawn(move || {
                let mut spare = Vec::new();
                loop {
                    let closed = {
                        let Ok(mut p) = s.lines.lock() else { return };
                        if p.buf.len() < EARLY && !p.closed {
                            p = match s.wake.wait_timeout(p, FLUSH_EVERY) {
                                Ok((p, _)) => p,
                                Err(_) => return,
                            };
                        }
                        std::mem::swap(&mut p.buf, &mut spare);
                        p.closed
                    };
                    if !spare.is_empty() {
                        let _ = out.write_all(&spare);
                        spare.clear();
                    }
                    let dropped = s.dropped.swap(0, Ordering::Relaxed);
                    if dropped > 0 {
                        let _ = writeln!(out, "sip2d: {dropped} log line(s) dropped: standard error did not keep up");
                    }
                    let _ = out.flush();
                    if closed {
                        return;
                    }
                }
            })
            .ok();
        (LogBuffer { shared: shared.clone() }, Flusher { shared, thread })
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        if let Ok(mut p) = self.shared.lines.lock() {
            p.closed = true;
        }
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The log's clock: RFC 3339 in UTC with microseconds, as tracing's own `SystemTime` writes
/// it, but the date and time to the second are formatted once a second per thread instead of
/// for every line (that formatting was a tenth of a busy server's log cost).
#[derive(Clone, Copy, Debug, Default)]
pub struct Clock;

impl tracing_subscriber::fmt::time::FormatTime for Clock {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write_now(w)
    }
}

/// Writes the time now as [`Clock`] does.
fn write_now(w: &mut impl std::fmt::Write) -> std::fmt::Result {
    use std::cell::RefCell;
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let (secs, micros) = (since.as_secs(), since.subsec_micros());
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            let at = i64::try_from(secs).ok().and_then(|s| jiff::Timestamp::from_second(s).ok());
            cached.1 = at.map(|t| t.strftime("%Y-%m-%dT%H:%M:%S").to_string()).unwrap_or_default();
            cached.0 = secs;
        }
        let mut tail = *b".000000Z";
        let mut rest = micros;
        for d in tail[1..7].iter_mut().rev() {
            *d = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        w.write_str(&cached.1)?;
        w.write_str(std::str::from_utf8(&tail).unwrap_or(".000000Z"))
    })
}

impl LogBuffer {
    /// The serve loop's request line written straight into the buffer: the bytes tracing's
    /// text (without colour) or JSON format writes for that event, without going through its
    /// layers (which took about 1.5 µs a request: a fifth of a patron status's CPU).
    pub fn request_log(&self, json: bool) -> crate::net::RequestLog {
        let shared = self.shared.clone();
        std::sync::Arc::new(move |r: &crate::net::RequestLine<'_>| {
            use std::cell::RefCell;
            thread_local! {
                static LINE: RefCell<String> = const { RefCell::new(String::new()) };
            }
            LINE.with(|cell| {
                let Ok(mut s) = cell.try_borrow_mut() else { return };
                s.clear();
                if json {
                    s.push_str("{\"timestamp\":\"");
                    let _ = write_now(&mut *s);
                    s.push_str("\",\"level\":\"INFO\",\"message\":\"request\",\"peer\":");
                    json_str(&mut s, r.peer);
                    s.push_str(",\"account\":");
                    json_str(&mut s, r.account);
                    s.push_str(",\"code\":");
                    json_str(&mut s, r.code);
                    s.push_str(",\"outcome\":");
                    json_str(&mut s, r.outcome);
                    s.push_str(",\"latency_us\":");
                    push_u64(&mut s, r.latency_us);
                    s.push_str(",\"target\":\"sip2d::net\"}\n");
                } else {
                    let _ = write_now(&mut *s);
                    s.push_str("  INFO sip2d::net: request peer=");
                    s.push_str(r.peer);
                    s.push_str(" account=");
                    debug_str(&mut s, r.account);
                    s.push_str(" code=");
                    s.push_str(r.code);
                    s.push_str(" outcome=");
                    debug_str(&mut s, r.outcome);
                    s.push_str(" latency_us=");
                    push_u64(&mut s, r.latency_us);
                    s.push('\n');
                }
                shared.append(s.as_bytes());
            })
        })
    }
}

/// Whether `v` is written the same quoted in JSON and by `{:?}`: printable ASCII without
/// quotes or backslashes (logins, codes and outcomes are).
fn plain(v: &str) -> bool {
    v.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' && b != b'\'')
}

/// `v` as `{:?}` writes it.
fn debug_str(s: &mut String, v: &str) {
    use std::fmt::Write as _;
    if plain(v) {
        s.push('"');
        s.push_str(v);
        s.push('"');
    } else {
        let _ = write!(s, "{v:?}");
    }
}

/// `n` in decimal, without the formatting machinery.
fn push_u64(s: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    s.extend(digits[at..].iter().map(|&d| char::from(d)));
}

/// `v` as a JSON string.
fn json_str(s: &mut String, v: &str) {
    if plain(v) {
        s.push('"');
        s.push_str(v);
        s.push('"');
    } else if let Ok(quoted) = serde_json::to_string(v) {
        s.push_str(&quoted);
    }
}

/// One line's writer (the log layer formats a line, then writes it whole).
pub struct Line {
    shared: Arc<Shared>,
}

impl Write for Line {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.shared.append(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = Line;
    fn make_writer(&'a self) -> Line {
        Line { shared: self.shared.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_clock_writes_what_tracing_s_own_does() {
        use tracing_subscriber::fmt::time::FormatTime;
        let mut ours = String::new();
        Clock.format_time(&mut tracing_subscriber::fmt::format::Writer::new(&mut ours)).unwrap();
        let mut theirs = String::new();
        tracing_subscriber::fmt::time::SystemTime
            .format_time(&mut tracing_subscriber::fmt::format::Writer::new(&mut theirs))
            .unwrap();
        assert_eq!(ours.len(), theirs.len(), "{ours} / {theirs}");
        // The same second (or the next, if the clock ticked between the two calls).
        let second = |s: &str| s.get(..19).map(str::to_string);
        let ok = second(&ours) == second(&theirs) || ours.get(..17) == theirs.get(..17);
        assert!(ok, "{ours} / {theirs}");
        assert!(ours.ends_with('Z') && ours.as_bytes().get(19) == Some(&b'.'), "{ours}");
    }

    #[test]
    fn the_request_line_is_what_tracing_writes_for_it() {
        use tracing_subscriber::prelude::*;
        let accounts = ["kiosk1", "-", "we\"ird \\ one\u{1}", "Åsa"];
        for json in [false, true] {
            let (ours, theirs) = (Sink::default(), Sink::default());
            let (buf, flusher) = LogBuffer::start(ours.clone());
            let (tbuf, tflusher) = LogBuffer::start(theirs.clone());
            let fmt = tracing_subscriber::fmt::layer().with_writer(tbuf).with_timer(Clock).with_ansi(false);
            let format: Box<dyn tracing_subscriber::Layer<_> + Send + Sync> =
                if json { Box::new(fmt.json().flatten_event(true)) } else { Box::new(fmt) };
            let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(format));
            let write = buf.request_log(json);
            for account in accounts {
                let line = crate::net::RequestLine {
                    peer: "127.0.0.1:4100",
                    account,
                    code: "23",
                    outcome: "ok",
                    latency_us: 17,
                };
                tracing::dispatcher::with_default(&dispatch, || line.trace());
                write(&line);
            }
            drop((flusher, tflusher));
            // Alike but for the time (the first 27 characters, or 41 in JSON).
            let skip = if json { 41 } else { 27 };
            let lines = |s: &Sink| {
                let text = String::from_utf8(s.0.lock().unwrap().clone()).unwrap();
                text.lines().map(|l| l.get(skip..).unwrap_or_default().to_string()).collect::<Vec<_>>()
            };
            assert_eq!(lines(&ours), lines(&theirs), "json: {json}");
            assert_eq!(lines(&ours).len(), accounts.len());
        }
    }

    #[test]
    fn lines_come_out_whole_in_order_and_all_of_them_by_the_time_it_is_dropped() {
        use tracing_subscriber::fmt::MakeWriter;
        let sink = Sink::default();
        let (buf, flusher) = LogBuffer::start(sink.clone());
        std::thread::scope(|s| {
            for t in 0..4 {
                let buf = buf.clone();
                s.spawn(move || {
                    for i in 0..1000 {
                        buf.make_writer().write_all(format!("thread {t} line {i}\n").as_bytes()).unwrap();
                    }
                });
            }
        });
        drop(flusher);
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(out.lines().count(), 4000);
        for t in 0..4 {
            let mine: Vec<&str> = out.lines().filter(|l| l.starts_with(&format!("thread {t} "))).collect();
            let want: Vec<String> = (0..1000).map(|i| format!("thread {t} line {i}")).collect();
            assert_eq!(mine, want);
        }
    }

    #[test]
    fn a_line_is_out_within_the_flush_interval_without_more_coming() {
        use tracing_subscriber::fmt::MakeWriter;
        let sink = Sink::default();
        let (buf, _flusher) = LogBuffer::start(sink.clone());
        buf.make_writer().write_all(b"alone\n").unwrap();
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while sink.0.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < until, "the line was never written");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(&sink.0.lock().unwrap()[..], b"alone\n");
    }
}
