//! Where the register commands print and read. Normally standard output, error and input;
//! while the server runs a command for an admin client, a per-thread capture instead, so the
//! same command code answers both.

use std::cell::RefCell;
use std::io::{Read, Write};

/// What a captured command printed, and the input it may read.
#[derive(Debug, Default)]
pub struct Captured {
    pub out: Vec<u8>,
    pub err: Vec<u8>,
    pub input: std::io::Cursor<Vec<u8>>,
}

thread_local! {
    static CAPTURE: RefCell<Option<Captured>> = const { RefCell::new(None) };
}

/// Runs `f` with its output captured and `input` as its standard input.
pub fn capture<T>(input: Vec<u8>, f: impl FnOnce() -> T) -> (T, Captured) {
    CAPTURE.with(|c| *c.borrow_mut() = Some(Captured { input: std::io::Cursor::new(input), ..Default::default() }));
    let r = f();
    let captured = CAPTURE.with(|c| c.borrow_mut().take()).unwrap_or_default();
    (r, captured)
}

/// Whether this thread's output is being captured (a command run for an admin client).
pub fn is_captured() -> bool {
    CAPTURE.with(|c| c.borrow().is_some())
}

fn with_capture<T>(f: impl FnOnce(&mut Captured) -> T) -> Option<T> {
    CAPTURE.with(|c| c.borrow_mut().as_mut().map(f))
}

pub fn write_out(args: std::fmt::Arguments<'_>) {
    if with_capture(|c| {
        let _ = c.out.write_fmt(args);
    })
    .is_none()
    {
        let _ = std::io::stdout().lock().write_fmt(args);
    }
}

pub fn write_err(args: std::fmt::Arguments<'_>) {
    if with_capture(|c| {
        let _ = c.err.write_fmt(args);
    })
    .is_none()
    {
        let _ = std::io::stderr().lock().write_fmt(args);
    }
}

/// One line of standard input.
pub fn read_line(line: &mut String) -> std::io::Result<usize> {
    match with_capture(|c| {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while c.input.read(&mut byte).unwrap_or(0) == 1 {
            buf.push(byte[0]);
            if byte[0] == b'\n' {
                break;
            }
        }
        line.push_str(&String::from_utf8_lossy(&buf));
        buf.len()
    }) {
        Some(n) => Ok(n),
        None => std::io::stdin().lock().read_line(line),
    }
}

/// All of standard input.
pub fn read_all(all: &mut Vec<u8>) -> std::io::Result<usize> {
    match with_capture(|c| c.input.read_to_end(all)) {
        Some(r) => r,
        None => std::io::stdin().lock().read_to_end(all),
    }
}

use std::io::BufRead;

/// Standard output as a writer (for exports).
pub struct Out;

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if with_capture(|c| c.out.extend_from_slice(buf)).is_none() {
            return std::io::stdout().lock().write(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().lock().flush()
    }
}

macro_rules! outln {
    () => { $crate::cli::io::write_out(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::cli::io::write_out(format_args!("{}\n", format_args!($($arg)*))) };
}

macro_rules! errln {
    ($($arg:tt)*) => { $crate::cli::io::write_err(format_args!("{}\n", format_args!($($arg)*))) };
}
