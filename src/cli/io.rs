//! Where the register commands print and read: standard output, error and input, with a
//! closed pipe (`sip2d patron list | head`) taken quietly rather than as a panic.

use std::io::{BufRead, Read, Write};

pub fn write_out(args: std::fmt::Arguments<'_>) {
    let _ = std::io::stdout().lock().write_fmt(args);
}

pub fn write_err(args: std::fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// One line of standard input.
pub fn read_line(line: &mut String) -> std::io::Result<usize> {
    std::io::stdin().lock().read_line(line)
}

/// All of standard input.
pub fn read_all(all: &mut Vec<u8>) -> std::io::Result<usize> {
    std::io::stdin().lock().read_to_end(all)
}

/// Standard output as a writer (for exports).
pub struct Out;

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stdout().lock().write(buf)
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
