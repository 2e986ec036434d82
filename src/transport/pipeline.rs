//! A file over parallel streams: the disk, the network and the other disk all busy at once.
//!
//! The sender reads the file in chunks with the disk engine (O_DIRECT, many reads in flight) into
//! a fixed pool of aligned buffers and hands each chunk to whichever stream is free; the receiver
//! reads chunks from every stream into its own pool and writes each at its offset. So reading,
//! sending and writing overlap, and memory is `iodepth` chunks per side whatever the file size.
//!
//! On the wire each chunk is a 12-byte header (offset: u64, length: u32, big-endian) and its
//! bytes; a stream ends when its sender closes it.

use std::collections::BTreeMap;
use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinSet;

use crate::disk::{
    self, ALIGN, AlignedBuf, Engine, EngineChoice, Op, Submission, buffer::round_up,
};
use crate::file;
use crate::interrupt::{self, Interrupted};
use crate::measure::{BusyClock, Counter, DEFAULT_INTERVAL, Interval, IntervalClock, Watcher};
use crate::warning::Warning;
use tokio::time::Instant;

/// How a file is cut and carried.
#[derive(Debug, Clone, Copy)]
pub struct ChunkPlan {
    /// Bytes per chunk: a multiple of 4 KiB, for O_DIRECT.
    pub chunk: usize,
    /// Chunks in flight on the disk, and buffers in the pool.
    pub depth: usize,
    pub verify: bool,
}

impl ChunkPlan {
    pub fn validate(&self) -> Result<()> {
        if self.chunk == 0
            || !self.chunk.is_multiple_of(ALIGN)
            || self.chunk > crate::disk::MAX_BLOCK
        {
            bail!(
                "--bs {} must be a multiple of 4K between 4K and 64M (O_DIRECT): try --bs 1M",
                self.chunk
            );
        }
        if self.depth == 0 || self.depth > crate::disk::MAX_DEPTH {
            bail!("--iodepth {} is out of range: give 1 to 1024", self.depth);
        }
        if self.chunk.saturating_mul(self.depth) > crate::disk::MAX_BUFFER_MEMORY {
            bail!("--bs × --iodepth needs more than 1 GiB of buffers: lower one of them");
        }
        Ok(())
    }
}

/// What names the digest in reports.
pub const DIGEST_ALGORITHM: &str = "xxh3-128 per chunk, summed";

/// A digest of a whole file that chunks can add to in any order: the sum of each chunk's
/// xxh3-128 seeded with its offset. Order-free, so streams need not arrive in order and no
/// per-chunk list is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Digest(u128);

impl Digest {
    pub fn add(&mut self, offset: u64, data: &[u8]) {
        self.0 = self
            .0
            .wrapping_add(xxhash_rust::xxh3::xxh3_128_with_seed(data, offset));
    }

    pub fn merge(&mut self, other: Digest) {
        self.0 = self.0.wrapping_add(other.0);
    }

    pub fn hex(&self) -> String {
        format!("{:032x}", self.0)
    }
}

/// Opens the file a copy sends (O_DIRECT when the filesystem allows it) and starts the disk
/// engine on it: the engine, the size, and whether reads bypass the page cache.
pub fn open_source(
    source: &std::path::Path,
    depth: usize,
    warnings: &mut Vec<Warning>,
) -> Result<(Engine, u64, bool)> {
    let meta = std::fs::metadata(source)
        .map_err(|err| anyhow!("cannot copy: {}", file::describe_path_error(source, err)))?;
    if meta.is_dir() {
        bail!("{} is a directory: copy takes one file", source.display());
    }
    if !meta.is_file() {
        bail!("{} is not a regular file", source.display());
    }
    let (handle, direct) = file::open_read(source, true)?;
    if !direct {
        // Best effort: what stays cached is read from memory, and the warning says why.
        let _ = file::cache::drop_from_cache(&handle);
        warnings.push(Warning::DirectUnsupported {
            path: source.to_path_buf(),
        });
    }
    warnings.extend(file::unwritten_warning(&handle, source));
    let engine = disk::start_engine(EngineChoice::Auto, &handle, source, depth, warnings)?;
    Ok((engine, meta.len(), direct))
}

/// Prepares where `plan`'s copy lands (a temporary name, O_DIRECT when the filesystem allows
/// it; an existing file only with --force) and starts the disk engine on it, `chunks.depth`
/// I/Os deep.
pub fn open_destination(
    destination: &std::path::Path,
    size: u64,
    plan: &super::CopyPlan,
    chunks: ChunkPlan,
    warnings: &mut Vec<Warning>,
) -> Result<(file::Landing, Engine)> {
    open_landing(destination, size, plan, chunks, warnings)
        .map(|(landing, engine, _)| (landing, engine))
}

/// [`open_destination`], with `plan.resume` taking up a temporary file left before: also the
/// length that file had (0 when there was none, or without `--resume`).
pub fn open_landing(
    destination: &std::path::Path,
    size: u64,
    plan: &super::CopyPlan,
    chunks: ChunkPlan,
    warnings: &mut Vec<Warning>,
) -> Result<(file::Landing, Engine, u64)> {
    let (landing, found) = match plan.resume {
        true => file::Landing::resume(destination, size, plan.force, true)?,
        false => (
            file::Landing::prepare(destination, size, plan.force, true)?,
            0,
        ),
    };
    if !landing.direct {
        warnings.push(Warning::DirectUnsupported {
            path: destination.to_path_buf(),
        });
    }
    let engine = disk::start_engine(
        EngineChoice::Auto,
        &landing.file,
        destination,
        chunks.depth,
        warnings,
    )?;
    Ok((landing, engine, found))
}

/// Holds the first bytes of a temporary file left by a copy (`found` long) to the source's, in
/// `chunk` pieces digested as a copy digests them: how it went, and the source prefix's digest
/// (for `--verify` to go on from). A prefix that differs is cut away (the copy starts over).
/// Errors: either file cannot be read.
pub fn check_prefix(
    source: &std::path::Path,
    partial: &std::path::Path,
    found: u64,
    size: u64,
    chunks: ChunkPlan,
) -> Result<(super::Resumed, Digest)> {
    let started = std::time::Instant::now();
    let checked = super::resumable_prefix(found, size, chunks.chunk, chunks.depth);
    let ours = std::fs::File::open(source)
        .map_err(anyhow::Error::from)
        .and_then(|file| prefix_digest(&file, checked, chunks.chunk))
        .with_context(|| format!("reading {} to check the partial copy", source.display()))?;
    let theirs = std::fs::File::open(partial)
        .map_err(anyhow::Error::from)
        .and_then(|file| prefix_digest(&file, checked, chunks.chunk))
        .with_context(|| format!("reading the partial copy {}", partial.display()))?;
    let matched = checked > 0 && ours == theirs;
    if !matched {
        std::fs::OpenOptions::new()
            .write(true)
            .open(partial)
            .and_then(|file| file.set_len(0))
            .context("cutting the partial copy that did not match")?;
    }
    Ok((
        super::Resumed {
            found,
            checked,
            matched,
            algorithm: DIGEST_ALGORITHM.to_string(),
            secs: started.elapsed().as_secs_f64(),
        },
        ours,
    ))
}

/// The [`Digest`] of the first `len` bytes of `file`, cut in `chunk` pieces as a copy cuts it:
/// what `--resume` holds a partial copy's prefix to on either side, and what the copy's own
/// digest goes on from. Read through the page cache (O_DIRECT would need aligned buffers for a
/// one-off read). Errors: a read fails, the file is shorter than `len`, or Ctrl-C.
pub fn prefix_digest(file: &std::fs::File, len: u64, chunk: usize) -> Result<Digest> {
    use std::os::unix::fs::FileExt;
    let mut digest = Digest::default();
    let mut buf = vec![0u8; chunk];
    let mut offset = 0u64;
    while offset < len {
        let piece = (len - offset).min(chunk as u64) as usize;
        file.read_exact_at(&mut buf[..piece], offset)?;
        digest.add(offset, &buf[..piece]);
        offset += piece as u64;
        crate::interrupt::check()?;
    }
    Ok(digest)
}

/// Where a copy's bytes begin: 0, or the end of the prefix a resumed copy found whole, whose
/// digest the copy's own goes on from (for `--verify`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Start {
    pub start: u64,
    pub digest: Option<Digest>,
}

impl Start {
    /// Where a copy goes on after `resumed`, whose source prefix digested to `digest`: past the
    /// prefix when it matched, else from 0.
    pub fn after(resumed: &super::Resumed, digest: Digest) -> Start {
        Start {
            start: resumed.from(),
            digest: resumed.matched.then_some(digest),
        }
    }
}

/// The sender's side of a copy.
#[derive(Debug, Clone, Copy)]
pub struct CopySent {
    pub bytes: u64,
    /// Time the disk had a read in flight.
    pub reading: Duration,
    /// Time at least one stream was writing a chunk.
    pub sending: Duration,
    pub digest: Option<Digest>,
}

/// The receiver's side of a copy (before its fsync).
#[derive(Debug, Clone, Copy)]
pub struct CopyReceived {
    pub bytes: u64,
    /// Time the disk had a write in flight.
    pub writing: Duration,
    pub digest: Option<Digest>,
}

const HEADER_LEN: usize = 12;

struct Chunk {
    offset: u64,
    len: usize,
    buf: AlignedBuf,
}

/// Reads the engine's file of `size` bytes from `from` on and sends it over `streams`; closes
/// each stream at the end.
pub async fn send_file<S>(
    mut engine: Engine,
    size: u64,
    streams: Vec<S>,
    plan: ChunkPlan,
    from: Start,
    counter: &Counter,
) -> Result<CopySent>
where
    S: AsyncWrite + Unpin + Send + 'static,
{
    let mut pool: Vec<AlignedBuf> = (0..plan.depth)
        .map(|_| AlignedBuf::new(plan.chunk))
        .collect();
    let (ready_tx, ready_rx) = mpsc::channel::<Chunk>(plan.depth);
    let ready_rx = Arc::new(Mutex::new(ready_rx));
    let (free_tx, mut free_rx) = mpsc::unbounded_channel::<AlignedBuf>();
    let sending = BusyClock::new();
    let mut tasks = JoinSet::new();
    for (index, stream) in streams.into_iter().enumerate() {
        let (ready_rx, free_tx, sending) = (ready_rx.clone(), free_tx.clone(), sending.clone());
        tasks.spawn(async move {
            send_chunks(stream, &ready_rx, &free_tx, &sending)
                .await
                .with_context(|| format!("sending on stream {}", index + 1))
        });
    }
    drop(free_tx);

    let mut reads = ReadAhead::from(from.start);
    let mut digest = plan.verify.then(|| from.digest.unwrap_or_default());
    let mut done = 0u64;
    while done < size - from.start {
        reads.fill(&mut engine, &mut pool, size, plan.chunk)?;
        tokio::select! {
            completion = engine.next(), if reads.in_flight > 0 => {
                let completion = completion?;
                reads.completed();
                let offset = completion.offset;
                let buf = read_chunk(completion, size, size, plan.chunk, digest.as_mut())?;
                let len = buf.len();
                done += len as u64;
                ready_tx
                    .send(Chunk { offset, len, buf })
                    .await
                    .map_err(|_| anyhow!("every stream stopped"))?;
            }
            Some(buf) = free_rx.recv() => {
                counter.add(buf.len() as u64);
                pool.push(buf);
            }
            Some(ended) = tasks.join_next() => {
                ended.map_err(|err| anyhow!("a sending stream failed: {err}"))??;
                bail!("a stream ended before the file was sent");
            }
            _ = interrupt::wait() => return Err(Interrupted.into()),
        }
    }
    drop(ready_tx);
    while let Some(ended) = tasks.join_next().await {
        ended.map_err(|err| anyhow!("a sending stream failed: {err}"))??;
    }
    while let Ok(buf) = free_rx.try_recv() {
        counter.add(buf.len() as u64);
    }
    Ok(CopySent {
        bytes: done,
        reading: reads.busy.total(),
        sending: sending.total(),
        digest,
    })
}

/// Writes of chunks at their offsets kept in flight.
#[derive(Default)]
pub(super) struct WriteBehind {
    pub in_flight: usize,
    /// Time at least one write was in flight.
    pub busy: BusyClock,
}

impl WriteBehind {
    /// Submits a write of `len` bytes of `buf` at `offset`, padded to whole blocks for O_DIRECT
    /// (the landing cuts the file back to its size).
    pub fn submit(
        &mut self,
        engine: &mut Engine,
        offset: u64,
        mut buf: AlignedBuf,
        len: usize,
    ) -> io::Result<()> {
        buf.set_len(round_up(len, ALIGN));
        engine.submit(Submission {
            op: Op::Write,
            offset,
            buf,
        })?;
        if self.in_flight == 0 {
            self.busy.enter();
        }
        self.in_flight += 1;
        Ok(())
    }

    /// One write came back: the bytes of the file (of `size`) it wrote, and its buffer.
    /// Errors: the write's own.
    pub fn completed(
        &mut self,
        completion: crate::disk::Completion,
        size: u64,
        chunk: usize,
    ) -> Result<(u64, AlignedBuf)> {
        self.in_flight -= 1;
        if self.in_flight == 0 {
            self.busy.leave();
        }
        completion
            .result
            .with_context(|| format!("writing at offset {}", completion.offset))?;
        Ok(((size - completion.offset).min(chunk as u64), completion.buf))
    }
}

/// Sequential reads of a file kept in flight, one per free buffer of a pool.
#[derive(Default)]
pub(super) struct ReadAhead {
    /// The next offset to read.
    next_offset: u64,
    pub in_flight: usize,
    /// Time at least one read was in flight.
    pub busy: BusyClock,
}

impl ReadAhead {
    /// Reads that begin at `offset` (a resumed copy's first byte to move).
    pub fn from(offset: u64) -> ReadAhead {
        ReadAhead {
            next_offset: offset,
            ..ReadAhead::default()
        }
    }

    /// Submits a read of the next chunk (up to `size`) into each buffer `pool` has free.
    pub fn fill(
        &mut self,
        engine: &mut Engine,
        pool: &mut Vec<AlignedBuf>,
        size: u64,
        chunk: usize,
    ) -> io::Result<()> {
        while self.next_offset < size
            && let Some(buf) = pool.pop()
        {
            let len = (size - self.next_offset).min(chunk as u64) as usize;
            engine.submit(Submission {
                op: Op::Read {
                    len: round_up(len, ALIGN),
                },
                offset: self.next_offset,
                buf,
            })?;
            if self.in_flight == 0 {
                self.busy.enter();
            }
            self.in_flight += 1;
            self.next_offset += len as u64;
        }
        Ok(())
    }

    /// One read came back.
    pub fn completed(&mut self) {
        self.in_flight -= 1;
        if self.in_flight == 0 {
            self.busy.leave();
        }
    }
}

/// A finished read of the chunk at its offset, up to `end` (of its range): short means the file
/// shrank under the copy. Counted in the digest when there is one.
pub(super) fn read_chunk(
    completion: crate::disk::Completion,
    end: u64,
    size: u64,
    chunk: usize,
    digest: Option<&mut Digest>,
) -> Result<AlignedBuf> {
    let expected = (end - completion.offset).min(chunk as u64) as usize;
    let got = completion
        .result
        .with_context(|| format!("reading at offset {}", completion.offset))?;
    if got < expected {
        bail!(
            "the file ended at {} bytes, before its size of {size}: was it truncated during the copy?",
            completion.offset + got as u64
        );
    }
    let mut buf = completion.buf;
    buf.set_len(expected);
    if let Some(digest) = digest {
        digest.add(completion.offset, buf.as_slice());
    }
    Ok(buf)
}

async fn send_chunks<S: AsyncWrite + Unpin>(
    mut stream: S,
    ready: &Mutex<mpsc::Receiver<Chunk>>,
    free: &mpsc::UnboundedSender<AlignedBuf>,
    sending: &BusyClock,
) -> io::Result<()> {
    loop {
        let next = ready.lock().await.recv().await;
        let Some(chunk) = next else { break };
        sending.enter();
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(&chunk.offset.to_be_bytes());
        header[8..].copy_from_slice(&(chunk.len as u32).to_be_bytes());
        let sent = async {
            stream.write_all(&header).await?;
            stream.write_all(&chunk.buf.as_slice()[..chunk.len]).await
        }
        .await;
        sending.leave();
        sent?;
        let _ = free.send(chunk.buf);
    }
    stream.shutdown().await
}

/// Receives a file of `size` bytes, from `from` on, from `streams` and writes it with the engine
/// (no fsync: the caller truncates a padded tail, fsyncs and renames).
pub async fn receive_file<S>(
    engine: Engine,
    size: u64,
    streams: Vec<S>,
    plan: ChunkPlan,
    from: Start,
    counter: &Counter,
) -> Result<CopyReceived>
where
    S: AsyncRead + Unpin + Send + 'static,
{
    let (pool, free_rx) = receive_pool(plan);
    let (incoming_tx, incoming_rx) = mpsc::channel::<Chunk>(plan.depth);
    let mut tasks = JoinSet::new();
    for (index, stream) in streams.into_iter().enumerate() {
        let (free_rx, incoming_tx) = (free_rx.clone(), incoming_tx.clone());
        tasks.spawn(async move {
            receive_chunks(stream, size, from.start, plan, &free_rx, &incoming_tx)
                .await
                .with_context(|| format!("receiving on stream {}", index + 1))
        });
    }
    drop(incoming_tx);
    let (received, _) = write_incoming(
        engine,
        Incoming {
            size,
            expected: size - from.start,
            digest: from.digest.unwrap_or_default(),
            rx: incoming_rx,
        },
        plan,
        counter,
        pool,
        tasks,
    )
    .await?;
    Ok(received)
}

/// Like [`receive_file`], but each stream carries one contiguous range of the file as plain
/// bytes (what a remote `scp -f` or `dd` sends); the streams come back, in order, positioned
/// just after their range. Stream `i` is read on runtime `on[i]` when given (where its
/// connection lives), else on this one.
pub async fn receive_ranges<S>(
    engine: Engine,
    size: u64,
    streams: Vec<(S, Range<u64>)>,
    on: &[tokio::runtime::Handle],
    plan: ChunkPlan,
    counter: &Counter,
) -> Result<(CopyReceived, Vec<S>)>
where
    S: AsyncRead + Unpin + Send + 'static,
{
    let (pool, free_rx) = receive_pool(plan);
    let (incoming_tx, incoming_rx) = mpsc::channel::<Chunk>(plan.depth);
    // The ranges need not start at 0 (a resumed copy): they carry what is expected.
    let expected = streams
        .iter()
        .map(|(_, range)| range.end - range.start)
        .sum();
    let mut tasks = JoinSet::new();
    for (index, (stream, range)) in streams.into_iter().enumerate() {
        let (free_rx, incoming_tx) = (free_rx.clone(), incoming_tx.clone());
        let work = async move { receive_range(stream, range, plan, &free_rx, &incoming_tx).await };
        spawn_stream(&mut tasks, index, "receiving", work, on.get(index));
    }
    drop(incoming_tx);
    let incoming = Incoming {
        size,
        expected,
        digest: Digest::default(),
        rx: incoming_rx,
    };
    let (received, mut streams) =
        write_incoming(engine, incoming, plan, counter, pool, tasks).await?;
    streams.sort_by_key(|(index, _)| *index);
    Ok((received, streams.into_iter().map(|(_, s)| s).collect()))
}

type Pool = mpsc::Sender<AlignedBuf>;

/// The receiver's fixed pool: `depth` chunk buffers, whatever the file size.
fn receive_pool(plan: ChunkPlan) -> (Pool, Arc<Mutex<mpsc::Receiver<AlignedBuf>>>) {
    let (free_tx, free_rx) = mpsc::channel::<AlignedBuf>(plan.depth);
    for _ in 0..plan.depth {
        free_tx
            .try_send(AlignedBuf::new(plan.chunk))
            .expect("the pool has room for every buffer");
    }
    (free_tx, Arc::new(Mutex::new(free_rx)))
}

/// What the streams deliver to [`write_incoming`]: chunks of a file of `size` bytes,
/// `expected` of them in all.
struct Incoming {
    size: u64,
    expected: u64,
    /// What the digest (with `--verify`) goes on from: a resumed copy's prefix's.
    digest: Digest,
    rx: mpsc::Receiver<Chunk>,
}

/// Writes each chunk the streams deliver at its offset, while they go on receiving.
async fn write_incoming<T: Send + 'static>(
    mut engine: Engine,
    incoming: Incoming,
    plan: ChunkPlan,
    counter: &Counter,
    free_tx: Pool,
    mut tasks: JoinSet<Result<T>>,
) -> Result<(CopyReceived, Vec<T>)> {
    let Incoming {
        size,
        expected,
        digest: prefix,
        rx: mut incoming_rx,
    } = incoming;
    let mut writes = WriteBehind::default();
    let (mut done, mut streams_open) = (0u64, true);
    let mut digest = plan.verify.then_some(prefix);
    let mut finished = Vec::new();
    while streams_open || writes.in_flight > 0 {
        tokio::select! {
            chunk = incoming_rx.recv(), if streams_open => match chunk {
                Some(chunk) => {
                    if let Some(digest) = digest.as_mut() {
                        digest.add(chunk.offset, chunk.buf.as_slice());
                    }
                    writes.submit(&mut engine, chunk.offset, chunk.buf, chunk.len)?;
                }
                None => streams_open = false,
            },
            completion = engine.next(), if writes.in_flight > 0 => {
                let (len, buf) = writes.completed(completion?, size, plan.chunk)?;
                done += len;
                counter.add(len);
                let _ = free_tx.try_send(buf);
            }
            Some(ended) = tasks.join_next() => {
                finished.push(ended.map_err(|err| anyhow!("a receiving stream failed: {err}"))??);
            }
            _ = interrupt::wait() => return Err(Interrupted.into()),
        }
    }
    while let Some(ended) = tasks.join_next().await {
        finished.push(ended.map_err(|err| anyhow!("a receiving stream failed: {err}"))??);
    }
    if done != expected {
        bail!(
            "the sender stopped after {done} of {expected} bytes: the copy is incomplete and was discarded"
        );
    }
    Ok((
        CopyReceived {
            bytes: done,
            writing: writes.busy.total(),
            digest,
        },
        finished,
    ))
}

/// Reads one contiguous range, chunk by chunk, into buffers of the pool.
async fn receive_range<S: AsyncRead + Unpin>(
    mut stream: S,
    range: Range<u64>,
    plan: ChunkPlan,
    free: &Mutex<mpsc::Receiver<AlignedBuf>>,
    incoming: &mpsc::Sender<Chunk>,
) -> Result<S> {
    let mut offset = range.start;
    while offset < range.end {
        let len = (range.end - offset).min(plan.chunk as u64) as usize;
        let Some(mut buf) = free.lock().await.recv().await else {
            bail!("the buffer pool closed");
        };
        stream
            .read_exact(&mut buf.full_mut()[..len])
            .await
            .map_err(|err| match err.kind() {
                io::ErrorKind::UnexpectedEof => anyhow!(
                    "the sender stopped before offset {} (its range ends at {})",
                    offset + len as u64,
                    range.end
                ),
                _ => err.into(),
            })?;
        buf.set_len(len);
        incoming
            .send(Chunk { offset, len, buf })
            .await
            .map_err(|_| anyhow!("the disk writer stopped"))?;
        offset += len as u64;
    }
    Ok(stream)
}

/// Runs stream `index`'s half of a copy on `runtime` (this one when None); its error names
/// the stream and what it was `doing`.
fn spawn_stream<S, F>(
    tasks: &mut JoinSet<Result<(usize, S)>>,
    index: usize,
    doing: &'static str,
    work: F,
    runtime: Option<&tokio::runtime::Handle>,
) where
    S: Send + 'static,
    F: Future<Output = Result<S>> + Send + 'static,
{
    let task = async move {
        work.await
            .map(|stream| (index, stream))
            .with_context(|| format!("{doing} on stream {}", index + 1))
    };
    match runtime {
        Some(runtime) => tasks.spawn_on(task, runtime),
        None => tasks.spawn(task),
    };
}

/// Cuts a file into `streams` contiguous ranges that start on chunk boundaries (so per-chunk
/// digests match any other way of cutting it); never more ranges than chunks, at least one.
pub fn split_ranges(size: u64, streams: usize, chunk: usize) -> Vec<Range<u64>> {
    let chunk = chunk as u64;
    let chunks = size.div_ceil(chunk).max(1);
    let per_range = chunks.div_ceil(streams.max(1) as u64);
    (0..chunks.div_ceil(per_range))
        .map(|i| (i * per_range * chunk).min(size)..((i + 1) * per_range * chunk).min(size))
        .collect()
}

/// Reads `size` bytes of the engine's file and sends range `i` on stream `i`, in order, as plain
/// bytes (what a remote `scp -t` or `dd` reads). The streams come back, flushed but open.
/// Stream `i` is written on runtime `on[i]` when given, else on this one.
pub async fn send_ranges<S>(
    mut engine: Engine,
    streams: Vec<(S, Range<u64>)>,
    on: &[tokio::runtime::Handle],
    plan: ChunkPlan,
    counter: &Counter,
) -> Result<(CopySent, Vec<S>)>
where
    S: AsyncWrite + Unpin + Send + 'static,
{
    let count = streams.len();
    // Each range owns a share of the pool, so a slow stream cannot starve the others.
    let share = (plan.depth / count.max(1)).max(2);
    let (free_tx, mut free_rx) = mpsc::unbounded_channel::<(usize, AlignedBuf)>();
    let sending = BusyClock::new();
    let mut tasks = JoinSet::new();
    let mut ranges = Vec::with_capacity(count);
    for (index, (stream, range)) in streams.into_iter().enumerate() {
        let (ready_tx, ready_rx) = mpsc::channel::<Chunk>(share);
        let (free_tx, sending) = (free_tx.clone(), sending.clone());
        let work =
            async move { Ok(send_range(stream, ready_rx, index, &free_tx, &sending).await?) };
        spawn_stream(&mut tasks, index, "sending", work, on.get(index));
        ranges.push(RangeState {
            next_read: range.start,
            next_send: range.start,
            range,
            pool: (0..share).map(|_| AlignedBuf::new(plan.chunk)).collect(),
            arrived: BTreeMap::new(),
            ready: Some(ready_tx),
        });
    }
    drop(free_tx);

    let reading = BusyClock::new();
    let mut digest = plan.verify.then(Digest::default);
    let size: u64 = ranges.iter().map(|r| r.range.end - r.range.start).sum();
    let mut streams = Vec::with_capacity(count);
    let (mut in_flight, mut done) = (0usize, 0u64);
    while done < size {
        for state in ranges.iter_mut() {
            while state.next_read < state.range.end
                && let Some(buf) = state.pool.pop()
            {
                let len = (state.range.end - state.next_read).min(plan.chunk as u64) as usize;
                engine.submit(Submission {
                    op: Op::Read {
                        len: round_up(len, ALIGN),
                    },
                    offset: state.next_read,
                    buf,
                })?;
                if in_flight == 0 {
                    reading.enter();
                }
                in_flight += 1;
                state.next_read += len as u64;
            }
        }
        tokio::select! {
            completion = engine.next(), if in_flight > 0 => {
                let completion = completion?;
                in_flight -= 1;
                if in_flight == 0 {
                    reading.leave();
                }
                let index = ranges
                    .iter()
                    .position(|state| state.range.contains(&completion.offset))
                    .expect("every read lies in a range");
                let state = &mut ranges[index];
                let offset = completion.offset;
                let buf = read_chunk(completion, state.range.end, size, plan.chunk, digest.as_mut())?;
                done += buf.len() as u64;
                state.arrived.insert(offset, buf);
                // Completions come in any order; each stream must get its range in order.
                while let Some(buf) = state.arrived.remove(&state.next_send) {
                    let len = buf.len();
                    let ready = state.ready.as_ref().expect("open until its range is sent");
                    ready
                        .try_send(Chunk { offset: state.next_send, len, buf })
                        .map_err(|_| anyhow!("stream {} stopped", index + 1))?;
                    state.next_send += len as u64;
                }
                if state.next_send == state.range.end {
                    state.ready = None;
                }
            }
            Some((index, buf)) = free_rx.recv() => {
                counter.add(buf.len() as u64);
                ranges[index].pool.push(buf);
            }
            Some(ended) = tasks.join_next() => {
                // A stream whose whole range went out may finish before the others.
                let (index, stream) = ended.map_err(|err| anyhow!("a sending stream failed: {err}"))??;
                if ranges[index].ready.is_some() {
                    bail!("stream {} ended before its part of the file was sent", index + 1);
                }
                streams.push((index, stream));
            }
            _ = interrupt::wait() => return Err(Interrupted.into()),
        }
    }
    for state in ranges.iter_mut() {
        state.ready = None;
    }
    while let Some(ended) = tasks.join_next().await {
        streams.push(ended.map_err(|err| anyhow!("a sending stream failed: {err}"))??);
    }
    while let Ok((_, buf)) = free_rx.try_recv() {
        counter.add(buf.len() as u64);
    }
    streams.sort_by_key(|(index, _)| *index);
    Ok((
        CopySent {
            bytes: done,
            reading: reading.total(),
            sending: sending.total(),
            digest,
        },
        streams.into_iter().map(|(_, stream)| stream).collect(),
    ))
}

/// One range of [`send_ranges`] on its way.
struct RangeState {
    range: Range<u64>,
    /// The next offset to read from the disk.
    next_read: u64,
    /// The next offset the stream must get.
    next_send: u64,
    pool: Vec<AlignedBuf>,
    /// Chunks read ahead of `next_send`.
    arrived: BTreeMap<u64, AlignedBuf>,
    /// To the stream's task; dropped once the whole range went to it.
    ready: Option<mpsc::Sender<Chunk>>,
}

async fn send_range<S: AsyncWrite + Unpin>(
    mut stream: S,
    mut ready: mpsc::Receiver<Chunk>,
    index: usize,
    free: &mpsc::UnboundedSender<(usize, AlignedBuf)>,
    sending: &BusyClock,
) -> io::Result<S> {
    while let Some(chunk) = ready.recv().await {
        sending.enter();
        let sent = stream.write_all(&chunk.buf.as_slice()[..chunk.len]).await;
        sending.leave();
        sent?;
        let _ = free.send((index, chunk.buf));
    }
    stream.flush().await?;
    Ok(stream)
}

/// Reads chunks of a file of `size` bytes from `start` on until the sender closes the stream.
async fn receive_chunks<S: AsyncRead + Unpin>(
    mut stream: S,
    size: u64,
    start: u64,
    plan: ChunkPlan,
    free: &Mutex<mpsc::Receiver<AlignedBuf>>,
    incoming: &mpsc::Sender<Chunk>,
) -> Result<()> {
    loop {
        let Some(header) = read_header(&mut stream).await? else {
            return Ok(());
        };
        let offset = u64::from_be_bytes(header[..8].try_into().expect("8 bytes"));
        let len = u32::from_be_bytes(header[8..].try_into().expect("4 bytes")) as usize;
        let expected = if offset < size {
            (size - offset).min(plan.chunk as u64) as usize
        } else {
            0
        };
        if !offset.is_multiple_of(plan.chunk as u64)
            || offset < start
            || len == 0
            || len != expected
        {
            bail!("a malformed chunk (offset {offset}, {len} bytes) for a file of {size} bytes");
        }
        let Some(mut buf) = free.lock().await.recv().await else {
            bail!("the buffer pool closed");
        };
        stream
            .read_exact(&mut buf.full_mut()[..len])
            .await
            .map_err(truncated)?;
        buf.set_len(len);
        incoming
            .send(Chunk { offset, len, buf })
            .await
            .map_err(|_| anyhow!("the disk writer stopped"))?;
    }
}

/// The next chunk header, or None when the sender closed the stream between chunks; one read
/// per header in the usual case (a header never arrives split, but it may).
async fn read_header<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Option<[u8; HEADER_LEN]>> {
    let mut header = [0u8; HEADER_LEN];
    let mut filled = 0;
    while filled < HEADER_LEN {
        match stream.read(&mut header[filled..]).await? {
            0 if filled == 0 => return Ok(None),
            0 => bail!("the connection closed in the middle of a chunk header"),
            n => filled += n,
        }
    }
    Ok(Some(header))
}

fn truncated(err: io::Error) -> anyhow::Error {
    if err.kind() == io::ErrorKind::UnexpectedEof {
        anyhow!("the connection closed in the middle of a chunk")
    } else {
        err.into()
    }
}

/// How long a copy may make no progress at all before the peer counts as gone (stopped, or a
/// network that drops everything): long enough for any fsync, short enough not to hang.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs a copy's pipeline under the watcher (the progress bar, fed by `counter`), cutting its
/// progress into 1 s intervals, and fails it when nothing moves for [`STALL_TIMEOUT`].
pub async fn watched<T>(
    watcher: &dyn Watcher,
    size: u64,
    counter: &Counter,
    pipeline: impl Future<Output = Result<T>>,
) -> (Result<T>, Vec<Interval>) {
    watched_as("copy", STALL_TIMEOUT, watcher, size, counter, pipeline).await
}

/// Like [`watched`], with the progress bar labelled `label` (a local copy's "verify"), failing
/// when nothing moves for `stall` (`copy --timeout`).
pub async fn watched_as<T>(
    label: &str,
    stall: Duration,
    watcher: &dyn Watcher,
    size: u64,
    counter: &Counter,
    pipeline: impl Future<Output = Result<T>>,
) -> (Result<T>, Vec<Interval>) {
    watcher.begin(label, size, counter);
    let outcome = sampled(pipeline, counter, stall).await;
    watcher.end();
    outcome
}

/// Runs a copy's pipeline (the server's half), failing it when `counter` does not move for
/// `stall`: a client that stopped, froze or was cut off cannot hold the session.
pub async fn bounded<T>(
    stall: Duration,
    counter: &Counter,
    pipeline: impl Future<Output = Result<T>>,
) -> Result<T> {
    sampled(pipeline, counter, stall).await.0
}

/// A copy that moved nothing for its stall time (in the error chain, so a caller can tell it
/// from an I/O error and say what stopped).
#[derive(Debug, thiserror::Error)]
#[error("no progress for {secs} s: the peer stopped answering, or the path stopped carrying data")]
pub struct Stalled {
    pub secs: u64,
}

async fn sampled<T>(
    pipeline: impl Future<Output = Result<T>>,
    counter: &Counter,
    stall: Duration,
) -> (Result<T>, Vec<Interval>) {
    let mut clock = IntervalClock::start(DEFAULT_INTERVAL);
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    let (mut last, mut last_change) = (0, Instant::now());
    tokio::pin!(pipeline);
    let outcome = loop {
        tokio::select! {
            outcome = &mut pipeline => break outcome,
            _ = ticker.tick() => {
                let now = counter.get();
                clock.observe(now);
                if now != last {
                    (last, last_change) = (now, Instant::now());
                } else if last_change.elapsed() > stall {
                    break Err(Stalled { secs: stall.as_secs() }.into());
                }
            }
        }
    };
    let (_, intervals) = clock.finish(counter.get());
    (outcome, intervals)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_file_once_on_chunk_boundaries() {
        let chunk = 1 << 20;
        for (size, streams) in [
            (0u64, 4),
            (1, 4),
            (5 << 20, 3),
            ((5 << 20) + 77, 4),
            (3 << 20, 8),
        ] {
            let ranges = split_ranges(size, streams, chunk);
            assert!(
                !ranges.is_empty() && ranges.len() <= streams,
                "{size} {streams}: {ranges:?}"
            );
            assert_eq!(ranges[0].start, 0);
            assert_eq!(ranges.last().unwrap().end, size);
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].end, pair[1].start, "{ranges:?}");
                assert!(pair[1].start.is_multiple_of(chunk as u64), "{ranges:?}");
                assert!(pair[0].start < pair[0].end, "an empty range: {ranges:?}");
            }
        }
    }

    #[test]
    fn a_prefix_digest_is_what_a_copy_digests_of_those_chunks_and_a_short_file_fails() {
        use std::io::Write;
        let bytes: Vec<u8> = (0..3 * 4096 + 100).map(|i| (i % 251) as u8).collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&bytes).unwrap();
        let mut copied = Digest::default();
        copied.add(0, &bytes[..4096]);
        copied.add(4096, &bytes[4096..8192]);
        assert_eq!(prefix_digest(&file, 8192, 4096).unwrap(), copied);
        assert_eq!(prefix_digest(&file, 0, 4096).unwrap(), Digest::default());
        assert!(prefix_digest(&file, bytes.len() as u64 + 1, 4096).is_err());
    }

    #[test]
    fn the_digest_does_not_depend_on_chunk_order() {
        let (a, b) = (vec![1u8; 4096], vec![2u8; 4096]);
        let mut forward = Digest::default();
        forward.add(0, &a);
        forward.add(4096, &b);
        let mut backward = Digest::default();
        backward.add(4096, &b);
        backward.add(0, &a);
        assert_eq!(forward, backward);
        let mut swapped = Digest::default();
        swapped.add(0, &b);
        swapped.add(4096, &a);
        assert_ne!(forward, swapped);
    }
}
