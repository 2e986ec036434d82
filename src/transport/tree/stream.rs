//! `copy -r` between two machines: a tree as a stream of records on each data connection.
//!
//! The sender walks the tree once and hands its entries to one thread per data connection;
//! each writes records back to back (no round trip per file):
//!
//! ```text
//! record  = kind u8, then (unless end) path_len u16, path bytes (relative, '/'-separated,
//!           "" for the tree's root), mode u32, mtime secs i64 + nanos u32, atime secs i64 +
//!           nanos u32, size u64 (a file's size when walked, a link's target length)
//! dir     = the header alone                       (made as it comes)
//! symlink = the header, then `size` bytes of target (landed as a link, never followed)
//! file    = the header, then chunks {len u32 > 0, len bytes}, a 0 length, and a trailer
//!           {flags u8 (changed, failed, digest), [xxh3-128 u128], [reason_len u16, reason]}
//! end     = kind 0                                 (this connection's entries are all sent)
//! ```
//!
//! All integers are big-endian. Chunked content lets a file that grows, shrinks or fails to
//! read half way be sent as read (or abandoned) without holding the stream. After its `end`,
//! connection 0 carries the directories once more, deepest first (`dir_done` records, then
//! `end`): the receiver reads them only after every connection ended and every file landed,
//! and gives each directory its mode and times then (a read-only directory is made so only
//! once its files are in).
//!
//! The receiver reads each connection on a thread of its own and lands with the local copy's
//! landing (partial name, fsync per policy, rename): a small file is read whole and handed to
//! one of a few landing threads of that connection (their fsyncs overlap), a big one lands as
//! it arrives. Memory is bounded by the connections, never by the number of files. It trusts nothing on the wire: every path
//! is checked (relative, no `..`, `.` or empty component, no NUL), and every directory on the
//! way to an entry must be a real directory below the landing root (a link there is never
//! followed: a link `a -> /etc` then a file `a/passwd` fails, and `/etc` is not touched).

use std::ffi::OsStr;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};

use super::{
    CHANGED, FileSource, Listed, Rules, SPECIAL, SourceEnd, finish_dir, join, land_file,
    land_symlink, make_dir, may_replace, open_source, read_ahead, read_error, sync_end,
};
use crate::file::tree::{self, Attributes, Kind, Totals};
use crate::interrupt::{self, Interrupted};
use crate::measure::Counter;

/// Longest path or link target a record carries (Linux's PATH_MAX).
pub const MAX_PATH: usize = 4096;
/// Largest chunk of a file's content on the wire.
const MAX_CHUNK: u32 = 64 << 20;
/// Longest reason a failed file's trailer carries.
const MAX_REASON: usize = 1024;
/// Buffered bytes per data connection, each way: many small records per segment.
const STREAM_BUFFER: usize = 256 << 10;
/// Largest buffer a receiver lands through, whatever block the sender reads in.
const MAX_LANDING_BUFFER: usize = 4 << 20;
/// Files up to this size are read off the wire whole and landed by a connection's landing
/// threads; bigger ones land as they arrive.
const SMALL_FILE: u64 = 256 << 10;
/// Landing threads of small files on each connection, at most.
const LANDERS_PER_STREAM: usize = 4;
/// Landing threads of small files in all, at least one per connection.
const LANDERS: usize = 16;
/// How often a blocked read or write wakes to look at Ctrl-C, the stall clock and the others.
const WAKE: Duration = Duration::from_millis(200);

const END: u8 = 0;
const DIR: u8 = 1;
const FILE: u8 = 2;
const SYMLINK: u8 = 3;
const DIR_DONE: u8 = 4;

const CHANGED_FLAG: u8 = 1;
const FAILED_FLAG: u8 = 2;
const DIGEST_FLAG: u8 = 4;

/// One data connection of a tree copy: blocking, each call bounded. A read or write that moves
/// nothing for `stall` fails; so does every call once Ctrl-C was pressed or `abort` was set
/// (another connection of the same copy failed).
pub struct Wire {
    stream: std::net::TcpStream,
    stall: Duration,
    peer: String,
    abort: Arc<AtomicBool>,
}

impl Wire {
    pub fn new(
        stream: std::net::TcpStream,
        stall: Duration,
        peer: &str,
        abort: Arc<AtomicBool>,
    ) -> io::Result<Wire> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(WAKE))?;
        stream.set_write_timeout(Some(WAKE))?;
        stream.set_nodelay(true)?;
        Ok(Wire {
            stream,
            stall,
            peer: peer.to_string(),
            abort,
        })
    }

    fn bounded<T>(
        &mut self,
        writing: bool,
        mut op: impl FnMut(&mut std::net::TcpStream) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut quiet_since: Option<Instant> = None;
        loop {
            match op(&mut self.stream) {
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if interrupt::requested() {
                        return Err(io::Error::other(Interrupted));
                    }
                    if self.abort.load(Ordering::Relaxed) {
                        return Err(io::Error::other(
                            "stopped: another data connection of the copy failed",
                        ));
                    }
                    let since = *quiet_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= self.stall {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "no data for {} s {} {}: the path stopped carrying data, or the peer stopped",
                                self.stall.as_secs(),
                                if writing { "to" } else { "from" },
                                self.peer
                            ),
                        ));
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.bounded(false, |stream| stream.read(buf))
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bounded(true, |stream| stream.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A record's header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Header {
    kind: u8,
    relative: PathBuf,
    kept: Attributes,
    size: u64,
}

fn write_header(out: &mut impl Write, header: &Header) -> io::Result<()> {
    let path = header.relative.as_os_str().as_bytes();
    let mut bytes = Vec::with_capacity(48 + path.len());
    bytes.push(header.kind);
    bytes.extend_from_slice(&(path.len() as u16).to_be_bytes());
    bytes.extend_from_slice(path);
    bytes.extend_from_slice(&header.kept.mode.to_be_bytes());
    bytes.extend_from_slice(&header.kept.mtime.0.to_be_bytes());
    bytes.extend_from_slice(&header.kept.mtime.1.to_be_bytes());
    bytes.extend_from_slice(&header.kept.atime.0.to_be_bytes());
    bytes.extend_from_slice(&header.kept.atime.1.to_be_bytes());
    bytes.extend_from_slice(&header.size.to_be_bytes());
    out.write_all(&bytes)
}

fn write_end(out: &mut impl Write) -> io::Result<()> {
    out.write_all(&[END])
}

fn read_array<const N: usize>(input: &mut impl Read) -> io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    input.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// The next header, None at `end`. Errors: the connection broke, or the record is malformed
/// (a path that could lead anywhere but below the root included).
fn read_header(input: &mut impl Read) -> Result<Option<Header>> {
    let [kind] = read_array::<1>(input).map_err(broke)?;
    if kind == END {
        return Ok(None);
    }
    if !matches!(kind, DIR | FILE | SYMLINK | DIR_DONE) {
        bail!("the peer sent a record of unknown kind {kind}: is it the same xferbench version?");
    }
    let len = u16::from_be_bytes(read_array(input).map_err(broke)?) as usize;
    if len > MAX_PATH {
        bail!("the peer sent a path of {len} bytes (at most {MAX_PATH})");
    }
    let mut path = vec![0u8; len];
    input.read_exact(&mut path).map_err(broke)?;
    let relative = checked_relative(&path, matches!(kind, DIR | DIR_DONE))?;
    let mut rest = [0u8; 4 + 12 + 12 + 8];
    input.read_exact(&mut rest).map_err(broke)?;
    let u32_at = |at: usize| u32::from_be_bytes(rest[at..at + 4].try_into().expect("4 bytes"));
    let i64_at = |at: usize| i64::from_be_bytes(rest[at..at + 8].try_into().expect("8 bytes"));
    let kept = Attributes {
        mode: u32_at(0) & 0o7777,
        mtime: (i64_at(4), u32_at(12).min(999_999_999)),
        atime: (i64_at(16), u32_at(24).min(999_999_999)),
    };
    let size = u64::from_be_bytes(rest[28..36].try_into().expect("8 bytes"));
    Ok(Some(Header {
        kind,
        relative,
        kept,
        size,
    }))
}

fn broke(err: io::Error) -> anyhow::Error {
    if err.kind() == io::ErrorKind::UnexpectedEof {
        anyhow!("the peer closed a data connection in the middle of the tree (stopped or killed?)")
    } else {
        anyhow!(err)
    }
}

/// A path from the wire, as a path below the landing root: relative, '/'-separated, every
/// component a plain name (no `..`, no `.`, none empty), no NUL. The root itself ("") only
/// where `root_allowed` (a directory record).
pub fn checked_relative(bytes: &[u8], root_allowed: bool) -> Result<PathBuf> {
    let shown = || String::from_utf8_lossy(bytes).into_owned();
    if bytes.is_empty() {
        return match root_allowed {
            true => Ok(PathBuf::new()),
            false => bail!("the peer sent an entry with an empty path"),
        };
    }
    if bytes.contains(&0) {
        bail!("the peer sent a path with a NUL byte: {:?}", shown());
    }
    if bytes[0] == b'/' {
        bail!("the peer sent an absolute path {:?}: refused", shown());
    }
    for component in bytes.split(|byte| *byte == b'/') {
        match component {
            b"" => bail!(
                "the peer sent a path with an empty component {:?}: refused",
                shown()
            ),
            b"." | b".." => bail!(
                "the peer sent a path with a '{}' component {:?}: paths must stay below the tree's root",
                String::from_utf8_lossy(component),
                shown()
            ),
            _ => {}
        }
    }
    let path = PathBuf::from(OsStr::from_bytes(bytes));
    debug_assert!(path.components().all(|c| matches!(c, Component::Normal(_))));
    Ok(path)
}

/// Makes sure every directory on the way from `root` to `relative`'s parent is a real directory
/// (never a link): made when missing, refused when something else has its name. `checked`
/// remembers the last parent found good, so a run of files in one directory checks it once
/// (nothing this copy does turns a directory into anything else).
pub fn safe_parents(
    root: &Path,
    relative: &Path,
    create: bool,
    checked: &mut PathBuf,
) -> Result<()> {
    let Some(parent) = relative.parent() else {
        return Ok(());
    };
    if parent.as_os_str().is_empty() || parent == checked.as_path() {
        return Ok(());
    }
    let mut path = root.to_path_buf();
    for component in parent.components() {
        path.push(component);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => continue,
            Ok(_) => bail!(
                "{} is not a directory (a link or a file): nothing lands through it",
                path.display()
            ),
            Err(err) if err.kind() == io::ErrorKind::NotFound && create => make_dir(&path)?,
            Err(err) => bail!("{}", crate::file::describe_path_error(&path, err)),
        }
    }
    *checked = parent.to_path_buf();
    Ok(())
}

/// How a tree is sent.
#[derive(Debug, Clone, Copy)]
pub struct SendOptions {
    /// Bytes per read of a file, and most per chunk.
    pub block: usize,
    /// Each file's xxh3-128 goes in its trailer, for the receiver to hold the landed file to.
    pub verify: bool,
}

/// What the sender could not send (read failures) or left out (special files).
#[derive(Debug, Default)]
pub struct Sent {
    pub failed: Listed,
    pub skipped: Listed,
}

/// An entry of the walk for a sending thread.
struct Outgoing {
    relative: PathBuf,
    kind: Kind,
    meta: std::fs::Metadata,
}

/// Sends the tree at `source` on `streams` (one thread each) as records, then its directories
/// again on the first. `bytes` counts file bytes sent, `files` files sent; `named` says how a
/// path below the source is named in the lists. Errors: a connection failed (the copy is cut
/// short), Ctrl-C ([`Interrupted`]).
pub fn send(
    source: &Path,
    streams: Vec<Wire>,
    options: SendOptions,
    bytes: &Counter,
    files: &Counter,
    named: &(dyn Fn(&Path) -> String + Sync),
) -> Result<Sent> {
    let Some(abort) = streams.first().map(|wire| wire.abort.clone()) else {
        bail!("no data connection to send the tree on");
    };
    let lists = Mutex::new(Sent::default());
    let (jobs, queue) = mpsc::sync_channel::<Outgoing>(streams.len() * 16);
    let queue = Mutex::new(queue);
    let sent = std::thread::scope(|scope| {
        let senders: Vec<_> = streams
            .into_iter()
            .map(|wire| {
                let (queue, lists, abort) = (&queue, &lists, &abort);
                scope.spawn(move || {
                    let mut out = BufWriter::with_capacity(STREAM_BUFFER, wire);
                    let sent =
                        send_stream(&mut out, source, queue, options, bytes, files, lists, named);
                    if sent.is_err() {
                        abort.store(true, Ordering::Relaxed);
                        // The walk may be waiting on a full queue: empty it until the walk,
                        // seeing the abort, closes it.
                        while queue.lock().expect("queue").recv().is_ok() {}
                    }
                    sent.map(|()| out)
                })
            })
            .collect();
        for entry in tree::walk(source, false) {
            if interrupt::requested() || abort.load(Ordering::Relaxed) {
                break;
            }
            match entry {
                Err(err) => {
                    let relative = err.path.strip_prefix(source).unwrap_or(&err.path);
                    let reason = read_error(&err.path, err.error);
                    lists
                        .lock()
                        .expect("lists")
                        .failed
                        .add_named(named(relative), reason);
                }
                Ok(entry) if entry.kind == Kind::Special => {
                    let name = named(&entry.relative);
                    lists
                        .lock()
                        .expect("lists")
                        .skipped
                        .add_named(name, SPECIAL.into());
                }
                Ok(entry) => {
                    if entry.kind == Kind::File {
                        read_ahead(&source.join(&entry.relative), entry.meta.len());
                    }
                    let job = Outgoing {
                        relative: entry.relative,
                        kind: entry.kind,
                        meta: entry.meta,
                    };
                    if jobs.send(job).is_err() {
                        break;
                    }
                }
            }
        }
        drop(jobs);
        let mut first = None;
        let mut failure = None;
        for (index, sender) in senders.into_iter().enumerate() {
            match sender.join().expect("a sending thread") {
                Ok(out) if index == 0 => first = Some(out),
                Ok(_) => {}
                Err(err) => {
                    failure.get_or_insert(err);
                }
            }
        }
        interrupt::check()?;
        if let Some(err) = failure {
            return Err(err);
        }
        let mut first = first.expect("the first connection's writer");
        for entry in tree::walk(source, true).flatten() {
            if entry.kind != Kind::Dir {
                continue;
            }
            let header = Header {
                kind: DIR_DONE,
                relative: entry.relative,
                kept: Attributes::of(&entry.meta),
                size: 0,
            };
            write_header(&mut first, &header)?;
        }
        write_end(&mut first)?;
        first.flush()?;
        Ok(())
    });
    sent?;
    Ok(lists.into_inner().expect("lists"))
}

/// One sending thread: records for the walk's entries until the queue closes, then `end`.
#[allow(clippy::too_many_arguments)]
fn send_stream(
    out: &mut BufWriter<Wire>,
    source: &Path,
    queue: &Mutex<mpsc::Receiver<Outgoing>>,
    options: SendOptions,
    bytes: &Counter,
    files: &Counter,
    lists: &Mutex<Sent>,
    named: &(dyn Fn(&Path) -> String + Sync),
) -> Result<()> {
    let mut buf = vec![0u8; options.block.clamp(4096, MAX_CHUNK as usize)];
    loop {
        let job = match queue.lock().expect("queue").recv() {
            Ok(job) => job,
            Err(_) => break,
        };
        interrupt::check()?;
        let path = source.join(&job.relative);
        let failed = |reason: String| {
            let name = named(&job.relative);
            lists.lock().expect("lists").failed.add_named(name, reason);
        };
        if job.relative.as_os_str().len() > MAX_PATH {
            failed(format!("its path is longer than {MAX_PATH} bytes"));
            continue;
        }
        let mut header = Header {
            kind: DIR,
            relative: job.relative.clone(),
            kept: Attributes::of(&job.meta),
            size: 0,
        };
        match job.kind {
            Kind::Dir => write_header(out, &header)?,
            Kind::Symlink => {
                let link = match std::fs::read_link(&path) {
                    Ok(link) => link,
                    Err(err) => {
                        failed(read_error(&path, err));
                        continue;
                    }
                };
                let link = link.as_os_str().as_bytes();
                if link.len() > MAX_PATH {
                    failed(format!("its target is longer than {MAX_PATH} bytes"));
                    continue;
                }
                header.kind = SYMLINK;
                header.size = link.len() as u64;
                write_header(out, &header)?;
                out.write_all(link)?;
            }
            Kind::File => {
                let mut file = match open_source(&path) {
                    Ok(file) => file,
                    Err(err) => {
                        failed(format!("{err:#}"));
                        continue;
                    }
                };
                header.kind = FILE;
                header.size = job.meta.len();
                write_header(out, &header)?;
                send_content(out, &mut file, &path, &job.meta, options, &mut buf, bytes)?;
                files.add(1);
            }
            Kind::Special => {}
        }
    }
    write_end(out)?;
    out.flush()?;
    Ok(())
}

/// A file's chunks, the 0 length and the trailer. A read that fails half way ends the content
/// there with a trailer that says so (the receiver discards the file; the stream goes on).
fn send_content(
    out: &mut impl Write,
    file: &mut std::fs::File,
    path: &Path,
    walked: &std::fs::Metadata,
    options: SendOptions,
    buf: &mut [u8],
    bytes: &Counter,
) -> Result<()> {
    let mut digest = options.verify.then(xxhash_rust::xxh3::Xxh3::new);
    let mut failure = None;
    loop {
        let n = match file.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                failure = Some(read_error(path, err));
                break;
            }
        };
        out.write_all(&(n as u32).to_be_bytes())?;
        out.write_all(&buf[..n])?;
        if let Some(digest) = digest.as_mut() {
            digest.update(&buf[..n]);
        }
        bytes.add(n as u64);
    }
    out.write_all(&0u32.to_be_bytes())?;
    let changed = match (&failure, file.metadata()) {
        (Some(_), _) => false,
        (None, Ok(after)) => tree::stamp(&after) != tree::stamp(walked),
        (None, Err(err)) => {
            failure = Some(read_error(path, err));
            false
        }
    };
    let mut flags = 0;
    if changed {
        flags |= CHANGED_FLAG;
    }
    if failure.is_some() {
        flags |= FAILED_FLAG;
    }
    if digest.is_some() {
        flags |= DIGEST_FLAG;
    }
    out.write_all(&[flags])?;
    if let Some(digest) = digest {
        out.write_all(&digest.digest128().to_be_bytes())?;
    }
    if let Some(reason) = failure {
        let mut reason = reason.into_bytes();
        reason.truncate(MAX_REASON);
        out.write_all(&(reason.len() as u16).to_be_bytes())?;
        out.write_all(&reason)?;
    }
    Ok(())
}

/// What landed, and what did not.
#[derive(Debug, Default)]
pub struct Received {
    pub landed: Totals,
    pub failed: Listed,
    pub changed: Listed,
}

/// Lands the records of `streams` (one thread each) into `target` (made here if missing; its
/// parent is the caller's to check), then the directories' modes and times from the first
/// connection, then `--fsync end`'s syncfs. `bytes` counts file bytes landed, `files` files
/// landed; `named` says how a path below the target is named in the lists. Errors: a
/// connection failed or carried a malformed record (the copy is cut short; what landed stays),
/// Ctrl-C ([`Interrupted`]).
#[allow(clippy::too_many_arguments)]
pub fn receive(
    target: &Path,
    streams: Vec<Wire>,
    rules: Rules,
    limit: Option<u64>,
    block: usize,
    bytes: &Counter,
    files: &Counter,
    named: &(dyn Fn(&Path) -> String + Sync),
) -> Result<Received> {
    let Some(abort) = streams.first().map(|wire| wire.abort.clone()) else {
        bail!("no data connection to receive the tree on");
    };
    make_dir(target)?;
    let state = Mutex::new(Received::default());
    let block = block.clamp(4096, MAX_LANDING_BUFFER);
    let landing = Landers {
        target,
        rules,
        limit: limit.map(|limit| (AtomicU64::new(0), limit)),
        bytes,
        files,
        state: &state,
        named,
    };
    let landers = (LANDERS / streams.len()).clamp(1, LANDERS_PER_STREAM);
    let landed = std::thread::scope(|scope| {
        let receivers: Vec<_> = streams
            .into_iter()
            .map(|wire| {
                let (landing, abort) = (&landing, &abort);
                scope.spawn(move || {
                    let mut input = BufReader::with_capacity(STREAM_BUFFER, wire);
                    let landed = landing.receive_stream(&mut input, block, landers);
                    if landed.is_err() {
                        abort.store(true, Ordering::Relaxed);
                    }
                    landed.map(|()| input)
                })
            })
            .collect();
        let mut first = None;
        let mut failure = None;
        for (index, receiver) in receivers.into_iter().enumerate() {
            match receiver.join().expect("a landing thread") {
                Ok(input) if index == 0 => first = Some(input),
                Ok(_) => {}
                Err(err) => {
                    failure.get_or_insert(err);
                }
            }
        }
        interrupt::check()?;
        if let Some(err) = failure {
            return Err(err);
        }
        Ok(first.expect("the first connection's reader"))
    });
    let mut first = landed?;
    let mut checked = PathBuf::new();
    while let Some(header) = read_header(&mut first)? {
        if header.kind != DIR_DONE {
            bail!("the peer sent an entry after the tree's end");
        }
        let relative = &header.relative;
        let finished = safe_parents(target, relative, false, &mut checked)
            .and_then(|()| finish_dir(&join(target, relative), &header.kept, rules.fsync));
        let mut state = state.lock().expect("state");
        match finished {
            Ok(true) => state.landed.directories += 1,
            Ok(false) => {}
            Err(err) => state.failed.add_named(named(relative), format!("{err:#}")),
        }
    }
    let mut state = state.into_inner().expect("state");
    if rules.fsync == super::FsyncPolicy::End
        && let Err(err) = sync_end(target)
    {
        state
            .failed
            .add_named(named(Path::new("")), format!("{err:#}"));
    }
    Ok(state)
}

/// What every landing thread of a tree copy shares.
struct Landers<'a> {
    target: &'a Path,
    rules: Rules,
    /// File bytes that arrived so far, and the most that may (serve's `--max-bytes`).
    limit: Option<(AtomicU64, u64)>,
    bytes: &'a Counter,
    files: &'a Counter,
    state: &'a Mutex<Received>,
    named: &'a (dyn Fn(&Path) -> String + Sync),
}

/// A small file read off the wire whole, for a landing thread.
struct Small {
    relative: PathBuf,
    kept: Attributes,
    content: Vec<u8>,
    end: SourceEnd,
}

impl Landers<'_> {
    fn failed(&self, relative: &Path, reason: String) {
        let name = (self.named)(relative);
        self.state
            .lock()
            .expect("state")
            .failed
            .add_named(name, reason);
    }

    fn landed(&self, relative: &Path, size: u64, changed: bool) {
        self.files.add(1);
        let mut state = self.state.lock().expect("state");
        state.landed.files += 1;
        state.landed.bytes += size;
        if changed {
            state
                .changed
                .add_named((self.named)(relative), CHANGED.into());
        }
    }

    /// The records of one connection until its `end`: small files are read whole and landed
    /// by `landers` threads of this connection (so a connection's files land concurrently,
    /// fsyncs overlapping), bigger ones here as they arrive.
    fn receive_stream(
        &self,
        input: &mut BufReader<Wire>,
        block: usize,
        landers: usize,
    ) -> Result<()> {
        let (small, queue) = mpsc::sync_channel::<Small>(landers);
        let queue = Mutex::new(queue);
        std::thread::scope(|scope| {
            let threads: Vec<_> = (0..landers)
                .map(|_| scope.spawn(|| self.land_small(&queue, block)))
                .collect();
            let read = self.read_records(input, block, small);
            for thread in threads {
                thread.join().expect("a landing thread");
            }
            read
        })
    }

    /// Lands the small files of `queue` until it closes.
    fn land_small(&self, queue: &Mutex<mpsc::Receiver<Small>>, block: usize) {
        let mut buf = vec![0u8; block.min(SMALL_FILE as usize)];
        loop {
            let Ok(job) = queue.lock().expect("queue").recv() else {
                return;
            };
            let destination = join(self.target, &job.relative);
            let mut source = Held {
                content: &job.content,
                at: 0,
                end: job.end,
            };
            let size = job.content.len() as u64;
            match land_file(
                &destination,
                &job.kept,
                self.rules,
                &mut source,
                &mut buf,
                self.bytes,
            ) {
                Ok(changed) => self.landed(&job.relative, size, changed),
                Err(err) => self.failed(&job.relative, format!("{err:#}")),
            }
        }
    }

    fn read_records(
        &self,
        input: &mut BufReader<Wire>,
        block: usize,
        small: mpsc::SyncSender<Small>,
    ) -> Result<()> {
        let (target, rules) = (self.target, self.rules);
        let mut buf = vec![0u8; block];
        let mut checked = PathBuf::new();
        while let Some(header) = read_header(input)? {
            let relative = &header.relative;
            let destination = join(target, relative);
            match header.kind {
                DIR => {
                    let made = safe_parents(target, relative, true, &mut checked)
                        .and_then(|()| make_dir(&destination));
                    if let Err(err) = made {
                        self.failed(relative, format!("{err:#}"));
                    }
                }
                SYMLINK => {
                    if header.size > MAX_PATH as u64 {
                        bail!("the peer sent a link target of {} bytes", header.size);
                    }
                    let mut link = vec![0u8; header.size as usize];
                    input.read_exact(&mut link).map_err(broke)?;
                    let link = Path::new(OsStr::from_bytes(&link));
                    let landed = safe_parents(target, relative, true, &mut checked)
                        .and_then(|()| land_symlink(&destination, link, &header.kept, rules.force));
                    match landed {
                        Ok(()) => self.state.lock().expect("state").landed.symlinks += 1,
                        Err(err) => self.failed(relative, format!("{err:#}")),
                    }
                }
                FILE => {
                    let ready = safe_parents(target, relative, true, &mut checked)
                        .and_then(|()| may_replace(&destination, rules.force));
                    let mut incoming = Incoming::new(input, self.limit.as_ref());
                    if let Err(err) = ready {
                        incoming.drain(&mut buf)?;
                        self.failed(relative, format!("{err:#}"));
                        continue;
                    }
                    let mut held = Vec::new();
                    if header.size <= SMALL_FILE {
                        held.reserve(header.size as usize);
                        while held.len() <= SMALL_FILE as usize {
                            let n = incoming.next(&mut buf).map_err(broke)?;
                            if n == 0 {
                                break;
                            }
                            held.extend_from_slice(&buf[..n]);
                        }
                        if incoming.finished {
                            match incoming.trailer()? {
                                Ok(end) => {
                                    let job = Small {
                                        relative: header.relative,
                                        kept: header.kept,
                                        content: held,
                                        end,
                                    };
                                    if small.send(job).is_err() {
                                        bail!("the landing threads stopped");
                                    }
                                }
                                Err(reason) => {
                                    self.failed(relative, format!("{reason} (on the sending side)"))
                                }
                            }
                            continue;
                        }
                        // It grew past what is held: it lands from what arrived, then the rest.
                    }
                    let mut source = Held {
                        content: &held,
                        at: 0,
                        end: SourceEnd::default(),
                    }
                    .then(incoming);
                    let landed = land_file(
                        &destination,
                        &header.kept,
                        rules,
                        &mut source,
                        &mut buf,
                        self.bytes,
                    );
                    let incoming = &mut source.rest;
                    match landed {
                        Ok(changed) => self.landed(relative, incoming.received, changed),
                        Err(err) if err.is::<Interrupted>() => return Err(err),
                        Err(err) => {
                            if let Some(broken) = incoming.broken.take() {
                                return Err(broken);
                            }
                            incoming.drain(&mut buf)?;
                            self.failed(relative, format!("{err:#}"));
                        }
                    }
                }
                _ => bail!("the peer sent a directory's times before the tree's end"),
            }
        }
        Ok(())
    }
}

/// A file's content held in memory, and how its source ended.
struct Held<'a> {
    content: &'a [u8],
    at: usize,
    end: SourceEnd,
}

impl<'a> Held<'a> {
    /// What is held, then the rest as it arrives.
    fn then<'b>(self, rest: Incoming<'b>) -> Chained<'a, 'b> {
        Chained { held: self, rest }
    }
}

impl Read for Held<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.content.len() - self.at);
        buf[..n].copy_from_slice(&self.content[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl FileSource for Held<'_> {
    fn end(&mut self) -> Result<SourceEnd> {
        Ok(self.end)
    }

    fn read_failed(&self, err: io::Error) -> anyhow::Error {
        anyhow!(err)
    }
}

/// The start of a file held in memory, then the rest of it from the wire.
struct Chained<'a, 'b> {
    held: Held<'a>,
    rest: Incoming<'b>,
}

impl Read for Chained<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.held.read(buf)? {
            0 => self.rest.read(buf),
            n => Ok(n),
        }
    }
}

impl FileSource for Chained<'_, '_> {
    fn end(&mut self) -> Result<SourceEnd> {
        self.rest.end()
    }

    fn read_failed(&self, err: io::Error) -> anyhow::Error {
        self.rest.read_failed(err)
    }
}

/// A file's content as it arrives: its chunks, then its trailer.
struct Incoming<'a> {
    input: &'a mut BufReader<Wire>,
    /// Bytes left in the current chunk.
    left: u32,
    /// The 0 length was read.
    finished: bool,
    /// The trailer was read.
    ended: bool,
    received: u64,
    /// The bytes of every file so far, and the most the receiver takes.
    limit: Option<&'a (AtomicU64, u64)>,
    /// The connection itself failed: the copy cannot go on.
    broken: Option<anyhow::Error>,
}

impl<'a> Incoming<'a> {
    fn new(input: &'a mut BufReader<Wire>, limit: Option<&'a (AtomicU64, u64)>) -> Incoming<'a> {
        Incoming {
            input,
            limit,
            left: 0,
            finished: false,
            ended: false,
            received: 0,
            broken: None,
        }
    }

    fn next(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.finished {
            return Ok(0);
        }
        if self.left == 0 {
            let len = u32::from_be_bytes(read_array(self.input)?);
            if len == 0 {
                self.finished = true;
                return Ok(0);
            }
            if len > MAX_CHUNK {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the peer sent a chunk of {len} bytes (at most {MAX_CHUNK})"),
                ));
            }
            self.left = len;
        }
        let want = buf.len().min(self.left as usize);
        let n = self.input.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.left -= n as u32;
        self.received += n as u64;
        if let Some((arrived, limit)) = self.limit
            && arrived.fetch_add(n as u64, Ordering::Relaxed) + n as u64 > *limit
        {
            return Err(io::Error::other(format!(
                "the tree is more than this side accepts ({limit} bytes, serve's --max-bytes)"
            )));
        }
        Ok(n)
    }

    /// The trailer: how the sender's read ended, or why it failed (a sentence of the
    /// sender's). Errors: the connection failed.
    fn trailer(&mut self) -> Result<Result<SourceEnd, String>> {
        self.ended = true;
        let [flags] = read_array::<1>(self.input).map_err(broke)?;
        let digest = match flags & DIGEST_FLAG {
            0 => None,
            _ => Some(u128::from_be_bytes(read_array(self.input).map_err(broke)?)),
        };
        if flags & FAILED_FLAG != 0 {
            let len = u16::from_be_bytes(read_array(self.input).map_err(broke)?) as usize;
            if len > MAX_REASON {
                bail!("the peer sent a reason of {len} bytes");
            }
            let mut reason = vec![0u8; len];
            self.input.read_exact(&mut reason).map_err(broke)?;
            return Ok(Err(String::from_utf8_lossy(&reason).into_owned()));
        }
        Ok(Ok(SourceEnd {
            changed: flags & CHANGED_FLAG != 0,
            digest,
        }))
    }

    /// Reads past the rest of a file that was not landed, so the next record can be read.
    /// Errors: the connection failed.
    fn drain(&mut self, buf: &mut [u8]) -> Result<()> {
        while self.next(buf).map_err(broke)? > 0 {}
        if !self.ended {
            // The sender's own failure, if any, is not this one's: the file is listed already.
            let _ = self.trailer()?;
        }
        Ok(())
    }
}

impl Read for Incoming<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.next(buf).inspect_err(|err| {
            let err = io::Error::new(err.kind(), err.to_string());
            self.broken = Some(broke(err));
        })
    }
}

impl FileSource for Incoming<'_> {
    fn end(&mut self) -> Result<SourceEnd> {
        match self.trailer() {
            Ok(Ok(end)) => Ok(end),
            Ok(Err(reason)) => bail!("{reason} (on the sending side)"),
            Err(err) => {
                self.broken = Some(anyhow!("{err:#}"));
                Err(err)
            }
        }
    }

    fn read_failed(&self, err: io::Error) -> anyhow::Error {
        anyhow!("the data connection failed in the middle of it: {err}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_from_the_wire_must_stay_below_the_root() {
        assert_eq!(
            checked_relative(b"a/b c/\xc3\xa9", false).unwrap(),
            PathBuf::from("a/b c/é")
        );
        assert_eq!(checked_relative(b"", true).unwrap(), PathBuf::new());
        for bad in [
            &b""[..],
            b"/etc/passwd",
            b"..",
            b"../x",
            b"a/../../x",
            b"a/..",
            b"./a",
            b"a/./b",
            b"a//b",
            b"a/",
            b"a\0b",
        ] {
            assert!(
                checked_relative(bad, false).is_err(),
                "{:?} was accepted",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_link_on_the_way_is_never_followed() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("a")).unwrap();
        std::fs::write(root.path().join("f"), b"x").unwrap();
        let mut checked = PathBuf::new();
        for relative in ["a/passwd", "a/b/c", "f/x"] {
            let err = safe_parents(root.path(), Path::new(relative), true, &mut checked)
                .expect_err(relative);
            assert!(err.to_string().contains("is not a directory"), "{err:#}");
        }
        safe_parents(
            root.path(),
            Path::new("new/deeper/file"),
            true,
            &mut checked,
        )
        .unwrap();
        assert!(root.path().join("new/deeper").is_dir());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    /// A file record whose sender failed half way: some content, then a failed trailer.
    fn failed_file(relative: &str, content: &[u8], reason: &str) -> Vec<u8> {
        let mut bytes = Vec::new();
        let header = Header {
            kind: FILE,
            relative: PathBuf::from(relative),
            kept: Attributes {
                mode: 0o644,
                atime: (0, 0),
                mtime: (0, 0),
            },
            size: content.len() as u64 * 2,
        };
        write_header(&mut bytes, &header).unwrap();
        bytes.extend_from_slice(&(content.len() as u32).to_be_bytes());
        bytes.extend_from_slice(content);
        bytes.extend_from_slice(&0u32.to_be_bytes());
        bytes.push(FAILED_FLAG);
        bytes.extend_from_slice(&(reason.len() as u16).to_be_bytes());
        bytes.extend_from_slice(reason.as_bytes());
        bytes
    }

    fn whole_file(relative: &str, content: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        let header = Header {
            kind: FILE,
            relative: PathBuf::from(relative),
            kept: Attributes {
                mode: 0o600,
                atime: (1_000_000_000, 0),
                mtime: (1_000_000_000, 0),
            },
            size: content.len() as u64,
        };
        write_header(&mut bytes, &header).unwrap();
        for chunk in content.chunks(100_000) {
            bytes.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
            bytes.extend_from_slice(chunk);
        }
        bytes.extend_from_slice(&0u32.to_be_bytes());
        bytes.push(CHANGED_FLAG);
        bytes
    }

    #[test]
    fn a_file_the_sender_could_not_finish_is_listed_and_the_stream_goes_on() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("landing");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut sender = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let big = vec![5u8; 600 << 10];
        let mut records = Vec::new();
        // Small (held whole) and big (landed as it arrives), each failed then whole.
        records.extend(failed_file("small-failed", b"half", "cannot read it: EIO"));
        records.extend(whole_file("small", b"whole"));
        records.extend(failed_file(
            "big-failed",
            &big[..300 << 10],
            "cannot read it: EIO",
        ));
        records.extend(whole_file("dir/big", &big));
        records.push(END);
        records.push(END);
        let writer = std::thread::spawn(move || sender.write_all(&records).unwrap());
        let wire = Wire::new(
            accepted,
            Duration::from_secs(10),
            "the test",
            Arc::new(AtomicBool::new(false)),
        )
        .unwrap();
        let rules = Rules {
            force: false,
            fsync: super::super::FsyncPolicy::End,
            verify: false,
        };
        let (bytes, files) = (Counter::new(), Counter::new());
        let named = |relative: &Path| relative.display().to_string();
        let received = receive(
            &target,
            vec![wire],
            rules,
            None,
            1 << 20,
            &bytes,
            &files,
            &named,
        )
        .unwrap();
        writer.join().unwrap();
        assert_eq!(received.landed.files, 2);
        assert_eq!(received.landed.bytes, 5 + (600 << 10));
        assert_eq!(received.failed.total, 2, "{:?}", received.failed);
        for problem in &received.failed.shown {
            assert!(
                problem.reason.contains("EIO (on the sending side)"),
                "{problem:?}"
            );
        }
        assert_eq!(received.changed.total, 2);
        assert_eq!(std::fs::read(target.join("small")).unwrap(), b"whole");
        assert_eq!(std::fs::read(target.join("dir/big")).unwrap(), big);
        let mut names: Vec<_> = std::fs::read_dir(&target)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["dir", "small"]);
    }

    #[test]
    fn a_header_reads_back_as_written() {
        let header = Header {
            kind: FILE,
            relative: PathBuf::from("dir/with space é"),
            kept: Attributes {
                mode: 0o4755,
                atime: (1_600_000_000, 12),
                mtime: (-5, 999_999_999),
            },
            size: 1 << 40,
        };
        let mut bytes = Vec::new();
        write_header(&mut bytes, &header).unwrap();
        write_end(&mut bytes).unwrap();
        let mut input = &bytes[..];
        assert_eq!(read_header(&mut input).unwrap(), Some(header));
        assert_eq!(read_header(&mut input).unwrap(), None);
        assert!(input.is_empty());
    }
}
