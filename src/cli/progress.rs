//! Progress of long commands (import, export, bench) on standard error: a bar (indicatif) when
//! it is a terminal, otherwise a plain line every few seconds, so a log or a pipe gets a
//! readable record and a short run prints nothing. Nothing is shown for a command the server
//! runs for an admin client.

use std::io::{BufRead, IsTerminal, Read, Seek, SeekFrom};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a plain line is written when standard error is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// What is counted: bytes of a file, or things (lines, seconds) with a unit name.
#[derive(Clone, Copy)]
pub enum Unit {
    Bytes,
    Count(&'static str),
}

pub struct Progress {
    what: String,
    unit: Unit,
    total: Option<u64>,
    bar: Option<ProgressBar>,
    /// For plain lines: when the last was written.
    plain: Option<Mutex<Instant>>,
}

impl Progress {
    /// A progress display for `what` (e.g. "import"), of `total` units when known.
    pub fn new(what: &str, unit: Unit, total: Option<u64>) -> Progress {
        let (bar, plain) = if std::io::stderr().is_terminal() {
            let bar = match total {
                Some(n) => ProgressBar::new(n),
                None => ProgressBar::new_spinner(),
            };
            let pos = match unit {
                Unit::Bytes => "{bytes}/{total_bytes}",
                Unit::Count(_) if total.is_some() => "{human_pos}/{human_len}",
                Unit::Count(_) => "{human_pos}",
            };
            let unit_name = match unit {
                Unit::Count(u) => u,
                Unit::Bytes => "",
            };
            let template = if total.is_some() {
                format!("{{msg}} [{{bar:40}}] {pos} {unit_name} ({{eta}} left)")
            } else {
                format!("{{msg}} {{spinner}} {pos} {unit_name} ({{elapsed}})")
            };
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(what.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            (Some(bar), None)
        } else {
            (None, Some(Mutex::new(Instant::now())))
        };
        Progress { what: what.to_string(), unit, total, bar, plain }
    }

    /// Changes what the bar says is being done (e.g. "import: checking" to "import").
    pub fn phase(&self, what: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(what.to_string());
        }
    }

    fn amount(&self, n: u64) -> String {
        match self.unit {
            Unit::Bytes => format!("{:.1} MiB", n as f64 / 1_048_576.0),
            Unit::Count(u) => format!("{n} {u}"),
        }
    }

    /// Sets how far it has come.
    pub fn set(&self, pos: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(pos);
            return;
        }
        let Some(last) = &self.plain else { return };
        let Ok(mut last) = last.lock() else { return };
        if last.elapsed() < PLAIN_EVERY {
            return;
        }
        *last = Instant::now();
        let line = match self.total {
            Some(t) if t > 0 => {
                format!("{}: {}% ({} of {})", self.what, pos * 100 / t, self.amount(pos), self.amount(t))
            }
            _ => format!("{}: {}", self.what, self.amount(pos)),
        };
        eprintln!("sip2d: {line}");
    }

    /// Clears the bar (the command's own summary follows).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A reader that reports how far into the file it is (an import reads its file twice: first
/// to check it, then to apply it).
pub struct Reading<'a, R> {
    inner: R,
    pos: u64,
    progress: &'a Progress,
}

impl<'a, R> Reading<'a, R> {
    pub fn new(inner: R, progress: &'a Progress) -> Reading<'a, R> {
        Reading { inner, pos: 0, progress }
    }
}

impl<R: Read> Read for Reading<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        self.progress.set(self.pos);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Reading<'_, R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, n: usize) {
        self.inner.consume(n);
        self.pos += n as u64;
        self.progress.set(self.pos);
    }
}

impl<R: Seek> Seek for Reading<'_, R> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.pos = self.inner.seek(to)?;
        if self.pos == 0 {
            self.progress.phase(&self.progress.what.clone());
        }
        self.progress.set(self.pos);
        Ok(self.pos)
    }
}

/// A writer that counts the lines written through it.
pub struct Writing<'a, W> {
    inner: W,
    lines: u64,
    progress: &'a Progress,
}

impl<'a, W> Writing<'a, W> {
    pub fn new(inner: W, progress: &'a Progress) -> Writing<'a, W> {
        Writing { inner, lines: 0, progress }
    }
}

impl<W: std::io::Write> std::io::Write for Writing<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        let lines = buf.get(..n).unwrap_or_default().iter().filter(|b| **b == b'\n').count() as u64;
        if lines > 0 {
            self.lines += lines;
            self.progress.set(self.lines);
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reading_and_writing_pass_everything_through_and_count() {
        let progress = Progress::new("test", Unit::Bytes, Some(10));
        let mut r = Reading::new(std::io::Cursor::new(b"one\ntwo\n".to_vec()), &progress);
        let lines: Vec<_> = (&mut r).lines().map(Result::unwrap).collect();
        assert_eq!((lines, r.pos), (vec!["one".to_string(), "two".to_string()], 8));
        r.rewind().unwrap();
        let mut all = String::new();
        r.read_to_string(&mut all).unwrap();
        assert_eq!((all.as_str(), r.pos), ("one\ntwo\n", 8));

        let counted = Progress::new("test", Unit::Count("lines"), None);
        let mut w = Writing::new(Vec::new(), &counted);
        w.write_all(b"a\nb\nc").unwrap();
        assert_eq!((w.inner.as_slice(), w.lines), (&b"a\nb\nc"[..], 2));
    }
}
