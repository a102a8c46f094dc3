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
            write!(w, "{}.{micros:06}Z", cached.1)
        })
    }
}

/// One line's writer (the log layer formats a line, then writes it whole).
pub struct Line {
    shared: Arc<Shared>,
}

impl Write for Line {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let Ok(mut p) = self.shared.lines.lock() else { return Ok(bytes.len()) };
        if p.buf.len() + bytes.len() > MAX {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            let before = p.buf.len();
            p.buf.extend_from_slice(bytes);
            if before < EARLY && p.buf.len() >= EARLY {
                self.shared.wake.notify_one();
            }
        }
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
