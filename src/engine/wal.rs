//! The write-ahead log: every batch the writer commits, as one length-prefixed, checksummed
//! record appended to a segment file and synced before any unit of the batch is answered.
//! sled is brought up to date from it behind the writer (`checkpoint.rs`), and at start from
//! what it holds that sled lacks.
//!
//! A segment is `wal/NNNNNNNNNNNNNNNNNNNN.wal` (the sequence number it was opened at, so names
//! sort in log order): 16 bytes of header (`sip2dwal`, the format, zero), then records. A record
//! is 16 bytes of header (payload length and CRC-32, both little-endian u32, and the batch's
//! sequence number, u64) and the payload; the CRC covers the length, the sequence number and
//! the payload. Sequence numbers run on without a gap across segments.
//!
//! A segment is written over zeros laid down ahead of the records (a mebibyte at a time), as
//! PostgreSQL fills its WAL segments: a record then changes no file size, and its `fdatasync`
//! writes the data alone, not the inode as well, as it must when the file grew (what that
//! saves is in docs/BENCHMARKS.md). Zeros where a record header is due, and only zeros after
//! them, are the end of the log.
//!
//! Reading the log back, a record that does not check out is one of two things. If no valid
//! record follows it anywhere, it is the tail of an append a crash cut short: its sync never
//! returned, so it was never acknowledged, and it is dropped with a log line. If a valid record
//! follows it, the log is damaged where it was once whole: start-up refuses, naming the file
//! and byte, and `sip2d log repair` cuts the log there.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The log's directory inside a data directory.
pub const DIR: &str = "wal";
const MAGIC: &[u8; 8] = b"sip2dwal";
const FORMAT: u32 = 1;
/// Bytes of a segment's header.
pub const SEGMENT_HEADER: u64 = 16;
const RECORD_HEADER: usize = 16;
/// No batch is this large; a length field that says more is damaged.
const MAX_RECORD: usize = 1 << 30;
/// Zeros laid down ahead of the records at a time.
const ZEROS_AHEAD: u64 = 1 << 20;

fn segment_name(first: u64) -> String {
    format!("{first:020}.wal")
}

fn header() -> [u8; SEGMENT_HEADER as usize] {
    let mut h = [0u8; SEGMENT_HEADER as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT.to_le_bytes());
    h
}

fn crc(len: u32, seq: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(&seq.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Why the log could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("write-ahead log {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "the write-ahead log is damaged in {path} at byte {offset} ({why}), and valid records follow it; \
         sip2d will not guess past it. `sip2d log repair` cuts the log at that byte (it says how many \
         records that drops); docs/engine.md has more"
    )]
    Damaged { path: PathBuf, offset: u64, why: String },
    #[error("the write-ahead log is missing batches {from} to {to} (sled holds up to {applied}); docs/engine.md")]
    Gap { from: u64, to: u64, applied: u64 },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LogError + '_ {
    move |source| LogError::Io { path: path.to_path_buf(), source }
}

/// The record at `at` in `bytes`: its sequence number and where its payload is; `Ok(None)` at
/// the end; `Err` with what is wrong when the bytes there are not a whole, valid record.
fn record_at(bytes: &[u8], at: usize) -> Result<Option<(u64, std::ops::Range<usize>)>, String> {
    let rest = bytes.get(at..).unwrap_or_default();
    if rest.is_empty() {
        return Ok(None);
    }
    // Zeros to the end of the file: the end of the records, in a segment filled ahead.
    if rest.iter().all(|b| *b == 0) {
        return Ok(None);
    }
    let Some(head) = rest.get(..RECORD_HEADER) else {
        return Err(format!("{} bytes, less than a record header", rest.len()));
    };
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let sum = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    let seq = u64::from_le_bytes([head[8], head[9], head[10], head[11], head[12], head[13], head[14], head[15]]);
    let n = len as usize;
    if n > MAX_RECORD {
        return Err(format!("a length of {n} bytes"));
    }
    let Some(payload) = rest.get(RECORD_HEADER..RECORD_HEADER + n) else {
        return Err(format!("a record of {n} bytes with {} left in the file", rest.len() - RECORD_HEADER));
    };
    if crc(len, seq, payload) != sum {
        return Err("the checksum does not match".into());
    }
    let start = at + RECORD_HEADER;
    Ok(Some((seq, start..start + n)))
}

/// Whether a valid record numbered `seq` or later starts anywhere in `bytes` from `from` on.
fn valid_record_from(bytes: &[u8], from: usize, seq: u64) -> bool {
    (from..bytes.len().saturating_sub(RECORD_HEADER - 1)).any(|at| {
        let s = bytes.get(at + 8..at + 16).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes);
        // The sequence number is checked first: it rules out almost every offset cheaply.
        s.is_some_and(|s| s >= seq && s - seq < 1 << 40)
            && matches!(record_at(bytes, at), Ok(Some((s2, _))) if s2 >= seq)
    })
}

/// The segment files in `dir`, in log order.
fn segments(dir: &Path) -> Result<Vec<PathBuf>, LogError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LogError::Io { path: dir.to_path_buf(), source: e }),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(io_err(dir))?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.len() == 24 && name.ends_with(".wal") && name[..20].bytes().all(|b| b.is_ascii_digit()) {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

/// A record cut short by a crash, dropped when the log was read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Torn {
    pub path: PathBuf,
    pub offset: u64,
    /// Bytes from `offset` to the end of the file.
    pub bytes: u64,
    pub why: String,
}

/// What reading the log back found.
#[derive(Debug, Default)]
pub struct Replayed {
    /// The segment files read, in order.
    pub segments: Vec<PathBuf>,
    /// Records handed on (numbered after `after`).
    pub replayed: u64,
    /// Records read and passed over (sled had them).
    pub skipped: u64,
    /// The last sequence number in the log (or `after`, if the log holds none after it).
    pub last: u64,
    pub torn: Option<Torn>,
}

/// Reads the log in `dir`, checks every record, and hands each numbered after `after` to
/// `replay` in order. Read only: a torn tail is reported in the answer, not cut.
pub fn replay<E: From<LogError>>(
    dir: &Path,
    after: u64,
    mut replay: impl FnMut(u64, &[u8]) -> Result<(), E>,
) -> Result<Replayed, E> {
    let files = segments(dir)?;
    let mut out = Replayed { last: after, ..Replayed::default() };
    // The sequence number the next record must have, once one has been read.
    let mut next: Option<u64> = None;
    for (i, path) in files.iter().enumerate() {
        let bytes = &fs::read(path).map_err(io_err(path))?;
        // Whether a later segment starts with a valid record (read only after a bad one).
        let later_valid = |next: u64| -> Result<bool, LogError> {
            for p in &files[i + 1..] {
                let b = fs::read(p).map_err(io_err(p))?;
                if b.get(..SEGMENT_HEADER as usize) == Some(&header()[..])
                    && matches!(record_at(&b, SEGMENT_HEADER as usize), Ok(Some((s, _))) if s >= next)
                {
                    return Ok(true);
                }
            }
            Ok(false)
        };
        let mut at = SEGMENT_HEADER as usize;
        let bad = if bytes.get(..SEGMENT_HEADER as usize) != Some(&header()[..]) {
            at = 0;
            Some("not a segment header (sip2dwal, format 1)".to_string())
        } else {
            loop {
                match record_at(bytes, at) {
                    Ok(None) => break None,
                    Ok(Some((seq, payload))) => {
                        match next {
                            Some(n) if seq != n => {
                                return Err(LogError::Damaged {
                                    path: path.clone(),
                                    offset: at as u64,
                                    why: format!("batch {seq} where batch {n} was due"),
                                }
                                .into());
                            }
                            None if seq > after + 1 => {
                                return Err(LogError::Gap { from: after + 1, to: seq - 1, applied: after }.into());
                            }
                            _ => {}
                        }
                        next = Some(seq + 1);
                        if seq > after {
                            replay(seq, &bytes[payload.clone()])?;
                            out.replayed += 1;
                            out.last = seq;
                        } else {
                            out.skipped += 1;
                        }
                        at = payload.end;
                    }
                    Err(why) => break Some(why),
                }
            }
        };
        out.segments.push(path.clone());
        if let Some(why) = bad {
            let want = next.unwrap_or(after + 1);
            if valid_record_from(bytes, at + 1, want) || later_valid(want)? {
                return Err(LogError::Damaged { path: path.clone(), offset: at as u64, why }.into());
            }
            out.torn = Some(Torn { path: path.clone(), offset: at as u64, bytes: (bytes.len() - at) as u64, why });
            // Nothing valid follows: the later files (if any) hold no record either.
            out.segments.extend(files[i + 1..].iter().cloned());
            break;
        }
    }
    Ok(out)
}

/// What `sip2d log repair` did.
#[derive(Debug, Default)]
pub struct Repaired {
    /// Where the log was cut, and the bytes dropped from there.
    pub cut: Option<(PathBuf, u64)>,
    pub bytes_dropped: u64,
    /// Records that were valid but came after the cut.
    pub records_dropped: u64,
    /// Later segment files removed whole.
    pub files_removed: Vec<PathBuf>,
}

/// Cuts the log at the first record that does not check out, dropping everything after it
/// (the server must not be running). A log that reads back whole is left as it is.
pub fn repair(dir: &Path) -> Result<Repaired, LogError> {
    let files = segments(dir)?;
    let mut out = Repaired::default();
    let mut next: Option<u64> = None;
    for (i, path) in files.iter().enumerate() {
        let bytes = fs::read(path).map_err(io_err(path))?;
        let mut cut = None;
        if bytes.get(..SEGMENT_HEADER as usize) != Some(&header()[..]) {
            cut = Some(0);
        } else {
            let mut at = SEGMENT_HEADER as usize;
            loop {
                match record_at(&bytes, at) {
                    Ok(Some((seq, payload))) if next.is_none_or(|n| n == seq) => {
                        next = Some(seq + 1);
                        at = payload.end;
                    }
                    Ok(None) => break,
                    _ => {
                        cut = Some(at);
                        break;
                    }
                }
            }
        }
        let Some(at) = cut else { continue };
        out.records_dropped += count_records(&bytes[at.min(bytes.len())..]);
        out.bytes_dropped += (bytes.len() - at) as u64;
        if at == 0 {
            fs::remove_file(path).map_err(io_err(path))?;
            out.files_removed.push(path.clone());
        } else {
            let f = OpenOptions::new().write(true).open(path).map_err(io_err(path))?;
            f.set_len(at as u64).map_err(io_err(path))?;
            f.sync_all().map_err(io_err(path))?;
        }
        out.cut = Some((path.clone(), at as u64));
        for later in &files[i + 1..] {
            let b = fs::read(later).map_err(io_err(later))?;
            out.records_dropped += count_records(b.get(SEGMENT_HEADER as usize..).unwrap_or_default());
            out.bytes_dropped += b.len() as u64;
            fs::remove_file(later).map_err(io_err(later))?;
            out.files_removed.push(later.clone());
        }
        sync_dir(dir)?;
        break;
    }
    Ok(out)
}

/// Valid records in `bytes`, found wherever they start (for what a repair drops).
fn count_records(bytes: &[u8]) -> u64 {
    let mut n = 0;
    let mut at = 0;
    while at + RECORD_HEADER <= bytes.len() {
        match record_at(bytes, at) {
            Ok(Some((_, p))) => {
                n += 1;
                at = p.end;
            }
            // Only zeros are left.
            Ok(None) => break,
            Err(_) => at += 1,
        }
    }
    n
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// Removes segment files, then makes the removal durable.
pub fn remove(dir: &Path, files: &[PathBuf]) -> Result<(), LogError> {
    for f in files {
        match fs::remove_file(f) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(LogError::Io { path: f.clone(), source: e }),
        }
    }
    if !files.is_empty() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Faults the tests inject, as a failing disk would show them.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Appends fail with "no space left on device", after writing part of the record.
    pub full: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Syncs fail with an I/O error, after the record was written.
    pub fail_syncs: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// sled's flushes fail (so checkpoints do), as a full disk or a failing one would.
    pub fail_checkpoints: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

fn on(flag: &Option<std::sync::Arc<std::sync::atomic::AtomicBool>>) -> bool {
    flag.as_ref().is_some_and(|f| f.load(std::sync::atomic::Ordering::SeqCst))
}

/// Why an append did not make its record durable.
#[derive(Debug)]
pub enum AppendError {
    /// The record could not be written (a full disk): the segment is back as it was, nothing
    /// of the record is in the log, and the next append may succeed.
    NotWritten(io::Error),
    /// The record was written but its sync failed, or the segment could not be put back after
    /// a failed write: whether it is on disk is unknown. No append is taken until [`Log::reopen`].
    InDoubt(io::Error),
}

impl std::fmt::Display for AppendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppendError::NotWritten(e) => write!(f, "could not write to the log: {e}"),
            AppendError::InDoubt(e) => write!(f, "could not sync the log: {e}"),
        }
    }
}

/// A record written to the log and not yet synced: what the syncer needs to make it durable.
pub struct Written {
    pub seq: u64,
    /// The segment it went to, and the byte after it there.
    pub file: Arc<File>,
    pub path: PathBuf,
    pub end: u64,
}

/// Where the log is known to be whole: the last synced record's segment, the byte after it,
/// and its number. A reopen cuts the log back to it.
#[derive(Clone, Debug)]
pub struct Durable {
    pub path: PathBuf,
    pub end: u64,
    pub seq: u64,
}

/// Syncs a written record's segment (and with it every record written there before it).
/// After a failure nothing more may go through this file handle: see [`Log::reopen_at`].
pub fn sync(w: &Written, faults: &Faults) -> io::Result<()> {
    if on(&faults.fail_syncs) {
        return Err(io::Error::other("injected sync failure"));
    }
    w.file.sync_data()
}

/// The log as the writer appends to it.
pub struct Log {
    dir: PathBuf,
    path: PathBuf,
    file: Arc<File>,
    /// Bytes of the segment written (whole records; the last ones perhaps not yet synced).
    len: u64,
    /// Bytes of the segment that exist on disk (records, then zeros).
    zeroed: u64,
    next_seq: u64,
    /// Where the log was last known whole (for [`Log::append`] and [`Log::reopen`]).
    durable: Durable,
    segment_bytes: u64,
    faults: Faults,
    buf: Vec<u8>,
    /// Set after a record's fate became unknown; cleared by a reopen.
    in_doubt: bool,
}

impl Log {
    /// Starts a new segment in `dir` whose first record will be `next_seq`, made durable
    /// (file and directory) before it is used.
    pub fn create(dir: &Path, next_seq: u64, segment_bytes: u64, faults: Faults) -> Result<Log, LogError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
        }
        let path = dir.join(segment_name(next_seq));
        let (file, zeroed) = new_segment(&path, segment_bytes)?;
        sync_dir(dir)?;
        Ok(Log {
            dir: dir.to_path_buf(),
            durable: Durable { path: path.clone(), end: SEGMENT_HEADER, seq: next_seq - 1 },
            path,
            file: Arc::new(file),
            len: SEGMENT_HEADER,
            zeroed,
            next_seq,
            segment_bytes,
            faults,
            buf: Vec::new(),
            in_doubt: false,
        })
    }

    /// The number the next record will have.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Where the log is whole now (nothing written since the last sync).
    pub fn durable(&self) -> Durable {
        self.durable.clone()
    }

    /// The faults injected into this log.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Writes one record, not synced: [`sync`] makes it durable, or [`Log::append`] does both.
    pub fn write(&mut self, payload: &[u8]) -> Result<Written, AppendError> {
        if self.in_doubt {
            return Err(AppendError::InDoubt(io::Error::other("the log is not reopened since a failed sync")));
        }
        let seq = self.next_seq;
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|l| (*l as usize) <= MAX_RECORD)
            .ok_or_else(|| AppendError::NotWritten(io::Error::other("a batch too large for one log record")))?;
        self.buf.clear();
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(&crc(len, seq, payload).to_le_bytes());
        self.buf.extend_from_slice(&seq.to_le_bytes());
        self.buf.extend_from_slice(payload);
        let mut file = &*self.file;
        let end = self.len + self.buf.len() as u64;
        let written = if on(&self.faults.full) {
            let half = &self.buf[..self.buf.len() / 2];
            file.write_all(half).and(Err(io::Error::from_raw_os_error(28)))
        } else {
            // Past the zeros: lay down the next stretch first (the next sync carries the new
            // size once, and the syncs after it none).
            let ahead = if end > self.zeroed {
                zeros_to(file, self.zeroed, end.max((self.zeroed + ZEROS_AHEAD).min(self.segment_bytes)))
                    .map(|z| self.zeroed = z)
            } else {
                Ok(())
            };
            ahead.and_then(|()| file.write_all(&self.buf))
        };
        if let Err(e) = written {
            // Put the segment back as it was, so that the next record follows the last whole one.
            self.zeroed = self.len;
            return match file.set_len(self.len).and_then(|()| file.seek(SeekFrom::Start(self.len))) {
                Ok(_) => Err(AppendError::NotWritten(e)),
                Err(e2) => {
                    self.in_doubt = true;
                    Err(AppendError::InDoubt(io::Error::other(format!("{e}; then cutting it back: {e2}"))))
                }
            };
        }
        self.len += self.buf.len() as u64;
        self.next_seq += 1;
        Ok(Written { seq, file: self.file.clone(), path: self.path.clone(), end: self.len })
    }

    /// Appends one record and syncs it; its sequence number once durable.
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, AppendError> {
        let w = self.write(payload)?;
        if let Err(e) = sync(&w, &self.faults) {
            // PostgreSQL's lesson: after a failed fsync the kernel may have dropped the pages, and
            // a second fsync can succeed without them. Nothing more goes to this file handle.
            self.in_doubt = true;
            return Err(AppendError::InDoubt(e));
        }
        self.durable = Durable { path: w.path, end: w.end, seq: w.seq };
        Ok(w.seq)
    }

    /// Takes no more records until a reopen (a sync of what was written failed).
    pub fn set_in_doubt(&mut self) {
        self.in_doubt = true;
    }

    /// Starts a new segment if this one is full; the one closed, with its last record, for
    /// the checkpointer to remove once sled holds it. A failure leaves the log on the current
    /// segment (it tries again after the next append).
    pub fn rotate_if_full(&mut self) -> Option<(PathBuf, u64)> {
        if self.len < self.segment_bytes || self.in_doubt {
            return None;
        }
        let path = self.dir.join(segment_name(self.next_seq));
        let (file, zeroed) = match new_segment(&path, self.segment_bytes).and_then(|f| sync_dir(&self.dir).map(|()| f))
        {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "could not start a new log segment; going on in the current one");
                let _ = fs::remove_file(&path);
                return None;
            }
        };
        let closed = std::mem::replace(&mut self.path, path);
        self.file = Arc::new(file);
        self.len = SEGMENT_HEADER;
        self.zeroed = zeroed;
        Some((closed, self.next_seq - 1))
    }

    /// After a failed sync: cuts the log back to where [`Log::append`] last found it whole.
    pub fn reopen(&mut self) -> Result<(), LogError> {
        let d = self.durable.clone();
        self.reopen_at(&d)
    }

    /// After a failed sync: cuts the log back to `durable` through a new file handle (removing
    /// any segment begun after it, which holds only records in doubt) and syncs that. Once this
    /// succeeds the log holds exactly what was acknowledged, and records go on from there.
    pub fn reopen_at(&mut self, durable: &Durable) -> Result<(), LogError> {
        let later: Vec<PathBuf> = segments(&self.dir)?.into_iter().filter(|p| *p > durable.path).collect();
        let path = &durable.path;
        let mut file = OpenOptions::new().write(true).open(path).map_err(io_err(path))?;
        file.set_len(durable.end).map_err(io_err(path))?;
        file.seek(SeekFrom::Start(durable.end)).map_err(io_err(path))?;
        if on(&self.faults.fail_syncs) {
            return Err(LogError::Io { path: path.clone(), source: io::Error::other("injected sync failure") });
        }
        file.sync_all().map_err(io_err(path))?;
        remove(&self.dir, &later)?;
        self.file = Arc::new(file);
        self.path = path.clone();
        self.len = durable.end;
        self.zeroed = durable.end;
        self.next_seq = durable.seq + 1;
        self.durable = durable.clone();
        self.in_doubt = false;
        Ok(())
    }

    /// The segment being appended to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A new segment: its header, then zeros for the first records; synced. The file, and the
/// bytes of it on disk.
fn new_segment(path: &Path, segment_bytes: u64) -> Result<(File, u64), LogError> {
    let mut file = OpenOptions::new().create(true).truncate(true).write(true).open(path).map_err(io_err(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io_err(path))?;
    }
    file.write_all(&header()).map_err(io_err(path))?;
    let zeroed = zeros_to(&file, SEGMENT_HEADER, ZEROS_AHEAD.min(segment_bytes)).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))?;
    Ok((file, zeroed))
}

/// Writes zeros from `from` up to `to` (past the file's cursor, which it leaves where it is);
/// how far the file is on disk then (`from`, if `to` is not past it).
fn zeros_to(file: &File, from: u64, to: u64) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    static CHUNK: [u8; 64 * 1024] = [0; 64 * 1024];
    let mut at = from;
    while at < to {
        let n = (to - at).min(CHUNK.len() as u64) as usize;
        file.write_all_at(&CHUNK[..n], at)?;
        at += n as u64;
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Records = Vec<(u64, Vec<u8>)>;

    fn records(dir: &Path, after: u64) -> Result<(Records, Replayed), LogError> {
        let mut got = Vec::new();
        let r = replay(dir, after, |seq, p| {
            got.push((seq, p.to_vec()));
            Ok::<(), LogError>(())
        })?;
        Ok((got, r))
    }

    fn payload(n: u64) -> Vec<u8> {
        format!("batch number {n} with some bytes").into_bytes()
    }

    /// A log of `n` records (1..=n) in one segment; the segment's path and each record's end.
    fn written(dir: &Path, n: u64) -> (PathBuf, Vec<u64>) {
        let mut log = Log::create(dir, 1, 1 << 30, Faults::default()).unwrap();
        let mut ends = Vec::new();
        for i in 1..=n {
            assert_eq!(log.append(&payload(i)).unwrap(), i);
            ends.push(log.len);
        }
        (log.path().to_path_buf(), ends)
    }

    #[test]
    fn records_read_back_in_order_across_segments() {
        let d = tempfile::tempdir().unwrap();
        let mut log = Log::create(d.path(), 1, 200, Faults::default()).unwrap();
        let mut closed = Vec::new();
        for i in 1..=20 {
            log.append(&payload(i)).unwrap();
            closed.extend(log.rotate_if_full());
        }
        assert!(closed.len() > 3, "{closed:?}");
        let (got, r) = records(d.path(), 0).unwrap();
        assert_eq!(got, (1..=20).map(|i| (i, payload(i))).collect::<Vec<_>>());
        assert_eq!((r.replayed, r.last, r.torn), (20, 20, None));
        let (got, r) = records(d.path(), 12).unwrap();
        assert_eq!(got.first().map(|g| g.0), Some(13));
        assert_eq!((r.replayed, r.skipped), (8, 12));
        // What a closed segment says of itself is what the log holds.
        for (path, last) in closed {
            let bytes = fs::read(&path).unwrap();
            let mut at = SEGMENT_HEADER as usize;
            let mut seen = 0;
            while let Ok(Some((seq, p))) = record_at(&bytes, at) {
                seen = seq;
                at = p.end;
            }
            assert_eq!(seen, last);
        }
    }

    /// The log cut at every byte of its last record: every record before it comes back, the cut
    /// one is reported as torn and nothing else is.
    #[test]
    fn a_log_cut_anywhere_in_its_last_record_keeps_every_record_before_it() {
        let d = tempfile::tempdir().unwrap();
        let (path, ends) = written(d.path(), 5);
        let whole = fs::read(&path).unwrap();
        let (start, end) = (ends[3], ends[4]);
        fs::write(&path, &whole[..start as usize]).unwrap();
        assert_eq!(records(d.path(), 0).unwrap().1.torn, None, "cut between records: nothing torn");
        for cut in start + 1..end {
            fs::write(&path, &whole[..cut as usize]).unwrap();
            let (got, r) = records(d.path(), 0).unwrap();
            assert_eq!(got.len(), 4, "cut at {cut}");
            let torn = r.torn.unwrap_or_else(|| panic!("cut at {cut} not reported"));
            assert_eq!((torn.offset, torn.bytes), (start, cut - start), "cut at {cut}");
        }
        // Zeros where the last record was due are the zeros laid down ahead: a clean end.
        let mut zeros = whole[..start as usize].to_vec();
        zeros.resize(end as usize + 4096, 0);
        fs::write(&path, &zeros).unwrap();
        let (got, r) = records(d.path(), 0).unwrap();
        assert_eq!((got.len(), r.torn), (4, None));
        // A crash that wrote the record's header but not all of its payload leaves zeros in it.
        let mut half = whole[..start as usize + RECORD_HEADER + 3].to_vec();
        half.resize(end as usize + 4096, 0);
        fs::write(&path, &half).unwrap();
        let (got, r) = records(d.path(), 0).unwrap();
        assert_eq!((got.len(), r.torn.map(|t| (t.offset, t.bytes))), (4, Some((start, half.len() as u64 - start))));
        // And one that wrote the payload but not the header is torn too, not an end.
        let mut headless = whole.clone();
        headless[start as usize..start as usize + RECORD_HEADER].fill(0);
        fs::write(&path, &headless).unwrap();
        let (got, r) = records(d.path(), 0).unwrap();
        assert_eq!((got.len(), r.torn.map(|t| t.offset)), (4, Some(start)));
    }

    /// A segment lies on zeros laid down ahead of its records: appends leave the file's size
    /// alone until they reach the zeros' end, and the zeros read back as the log's end.
    #[test]
    fn records_are_written_over_zeros_laid_down_ahead() {
        let d = tempfile::tempdir().unwrap();
        let mut log = Log::create(d.path(), 1, 3 << 20, Faults::default()).unwrap();
        let path = log.path().to_path_buf();
        let size = || fs::metadata(&path).unwrap().len();
        assert_eq!(size(), ZEROS_AHEAD, "a new segment is a mebibyte of header and zeros");
        let big = vec![7u8; 300 << 10];
        for i in 1..=3 {
            log.append(&big).unwrap();
            assert_eq!(size(), ZEROS_AHEAD, "record {i} fits in the zeros");
        }
        log.append(&big).unwrap();
        assert_eq!(size(), 2 * ZEROS_AHEAD, "the fourth lays down the next mebibyte");
        let (got, r) = records(d.path(), 0).unwrap();
        assert_eq!((got.len(), r.last, r.torn), (4, 4, None));
        assert_eq!(repair(d.path()).unwrap().cut, None, "zeros are not damage");
    }

    /// A byte changed in a record that valid records follow: the log is refused with the file and
    /// offset, and repair cuts it there.
    #[test]
    fn damage_before_valid_records_is_refused_with_its_offset_and_repair_cuts_there() {
        let d = tempfile::tempdir().unwrap();
        let (path, ends) = written(d.path(), 6);
        let whole = fs::read(&path).unwrap();
        let (start, end) = (ends[1], ends[2]);
        for byte in start..end {
            let mut bad = whole.clone();
            bad[byte as usize] ^= 0x40;
            fs::write(&path, &bad).unwrap();
            match records(d.path(), 0) {
                Err(LogError::Damaged { path: p, offset, .. }) => assert_eq!((p, offset), (path.clone(), start)),
                other => panic!("byte {byte}: {other:?}"),
            }
        }
        let r = repair(d.path()).unwrap();
        assert_eq!(r.cut, Some((path.clone(), start)));
        assert_eq!(r.records_dropped, 3, "records 4, 5 and 6 were valid but followed the damage");
        let (got, r) = records(d.path(), 0).unwrap();
        assert_eq!((got.len(), r.torn), (2, None));
        assert_eq!(repair(d.path()).unwrap().cut, None, "a whole log is left alone");
    }

    #[test]
    fn damage_in_an_earlier_segment_is_refused_and_a_gap_is_named() {
        let d = tempfile::tempdir().unwrap();
        let mut log = Log::create(d.path(), 1, 100, Faults::default()).unwrap();
        for i in 1..=6 {
            log.append(&payload(i)).unwrap();
            log.rotate_if_full();
        }
        let first = segments(d.path()).unwrap()[0].clone();
        let mut bytes = fs::read(&first).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&first, &bytes).unwrap();
        assert!(matches!(records(d.path(), 0), Err(LogError::Damaged { path, .. }) if path == first));
        fs::remove_file(&first).unwrap();
        assert!(matches!(records(d.path(), 0), Err(LogError::Gap { from: 1, .. })));
    }

    #[test]
    fn a_full_disk_leaves_the_log_whole_and_the_next_append_goes_on() {
        let d = tempfile::tempdir().unwrap();
        let full = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let faults = Faults { full: Some(full.clone()), ..Faults::default() };
        let mut log = Log::create(d.path(), 1, 1 << 30, faults).unwrap();
        log.append(&payload(1)).unwrap();
        full.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(matches!(log.append(&payload(2)), Err(AppendError::NotWritten(e)) if e.raw_os_error() == Some(28)));
        full.store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(log.append(&payload(3)).unwrap(), 2, "the refused record took no number");
        let (got, r) = records(d.path(), 0).unwrap();
        assert_eq!(got, vec![(1, payload(1)), (2, payload(3))]);
        assert_eq!(r.torn, None);
    }

    #[test]
    fn after_a_failed_sync_nothing_is_appended_until_a_reopen_cuts_the_record_in_doubt() {
        let d = tempfile::tempdir().unwrap();
        let fail = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let faults = Faults { fail_syncs: Some(fail.clone()), ..Faults::default() };
        let mut log = Log::create(d.path(), 1, 1 << 30, faults).unwrap();
        log.append(&payload(1)).unwrap();
        fail.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(matches!(log.append(&payload(2)), Err(AppendError::InDoubt(_))));
        fail.store(false, std::sync::atomic::Ordering::SeqCst);
        assert!(matches!(log.append(&payload(3)), Err(AppendError::InDoubt(_))), "no append before the reopen");
        log.reopen().unwrap();
        assert_eq!(log.append(&payload(4)).unwrap(), 2);
        let (got, _) = records(d.path(), 0).unwrap();
        assert_eq!(got, vec![(1, payload(1)), (2, payload(4))], "the record in doubt is gone");
    }
}
