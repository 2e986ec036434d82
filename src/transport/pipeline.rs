//! A file over parallel streams: the disk, the network and the other disk all busy at once.
//!
//! The sender reads the file in chunks with the disk engine (O_DIRECT, many reads in flight) into
//! a fixed pool of aligned buffers and hands each chunk to whichever stream is free; the receiver
//! reads chunks from every stream into its own pool and writes each at its offset. So reading,
//! sending and writing overlap, and memory is `iodepth` chunks per side whatever the file size.
//!
//! On the wire each chunk is a 12-byte header (offset: u64, length: u32, big-endian) and its
//! bytes; a stream ends when its sender closes it.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinSet;

use crate::disk::{ALIGN, AlignedBuf, Engine, Op, Request, buffer::round_up};
use crate::interrupt::{self, Interrupted};
use crate::measure::{BusyClock, Counter};

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

/// The sender's side of a copy.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    pub bytes: u64,
    /// Time the disk had a read in flight.
    pub reading: Duration,
    /// Time at least one stream was writing a chunk.
    pub sending: Duration,
    pub digest: Option<Digest>,
}

/// The receiver's side of a copy (before its fsync).
#[derive(Debug, Clone, Copy)]
pub struct Received {
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

/// Reads `size` bytes of the engine's file and sends them over `streams`; closes each stream at the end.
pub async fn send_file<S>(
    mut engine: Engine,
    size: u64,
    streams: Vec<S>,
    plan: ChunkPlan,
    counter: &Counter,
) -> Result<Sent>
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

    let reading = BusyClock::new();
    let mut digest = plan.verify.then(Digest::default);
    let (mut next_offset, mut in_flight, mut done) = (0u64, 0usize, 0u64);
    while done < size {
        while next_offset < size
            && let Some(buf) = pool.pop()
        {
            let len = (size - next_offset).min(plan.chunk as u64) as usize;
            engine.submit(Request {
                op: Op::Read {
                    len: round_up(len, ALIGN),
                },
                offset: next_offset,
                buf,
            })?;
            if in_flight == 0 {
                reading.enter();
            }
            in_flight += 1;
            next_offset += len as u64;
        }
        tokio::select! {
            completion = engine.next(), if in_flight > 0 => {
                let completion = completion?;
                in_flight -= 1;
                if in_flight == 0 {
                    reading.leave();
                }
                let expected = (size - completion.offset).min(plan.chunk as u64) as usize;
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
                if let Some(digest) = digest.as_mut() {
                    digest.add(completion.offset, buf.as_slice());
                }
                done += expected as u64;
                ready_tx
                    .send(Chunk { offset: completion.offset, len: expected, buf })
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
    Ok(Sent {
        bytes: done,
        reading: reading.total(),
        sending: sending.total(),
        digest,
    })
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

/// Receives a file of `size` bytes from `streams` and writes it with the engine (no fsync: the
/// caller truncates a padded tail, fsyncs and renames).
pub async fn receive_file<S>(
    mut engine: Engine,
    size: u64,
    streams: Vec<S>,
    plan: ChunkPlan,
    counter: &Counter,
) -> Result<Received>
where
    S: AsyncRead + Unpin + Send + 'static,
{
    let (free_tx, free_rx) = mpsc::channel::<AlignedBuf>(plan.depth);
    for _ in 0..plan.depth {
        free_tx
            .try_send(AlignedBuf::new(plan.chunk))
            .expect("the pool has room for every buffer");
    }
    let free_rx = Arc::new(Mutex::new(free_rx));
    let (incoming_tx, mut incoming_rx) = mpsc::channel::<Chunk>(plan.depth);
    let mut tasks = JoinSet::new();
    for (index, stream) in streams.into_iter().enumerate() {
        let (free_rx, incoming_tx) = (free_rx.clone(), incoming_tx.clone());
        tasks.spawn(async move {
            receive_chunks(stream, size, plan, &free_rx, &incoming_tx)
                .await
                .with_context(|| format!("receiving on stream {}", index + 1))
        });
    }
    drop(incoming_tx);

    let writing = BusyClock::new();
    let (mut in_flight, mut done, mut streams_open) = (0usize, 0u64, true);
    let mut digest = plan.verify.then(Digest::default);
    while streams_open || in_flight > 0 {
        tokio::select! {
            chunk = incoming_rx.recv(), if streams_open => match chunk {
                Some(mut chunk) => {
                    if let Some(digest) = digest.as_mut() {
                        digest.add(chunk.offset, chunk.buf.as_slice());
                    }
                    chunk.buf.set_len(round_up(chunk.len, ALIGN));
                    engine.submit(Request { op: Op::Write, offset: chunk.offset, buf: chunk.buf })?;
                    if in_flight == 0 {
                        writing.enter();
                    }
                    in_flight += 1;
                }
                None => streams_open = false,
            },
            completion = engine.next(), if in_flight > 0 => {
                let completion = completion?;
                in_flight -= 1;
                if in_flight == 0 {
                    writing.leave();
                }
                completion
                    .result
                    .with_context(|| format!("writing at offset {}", completion.offset))?;
                let len = (size - completion.offset).min(plan.chunk as u64);
                done += len;
                counter.add(len);
                let _ = free_tx.try_send(completion.buf);
            }
            Some(ended) = tasks.join_next() => {
                ended.map_err(|err| anyhow!("a receiving stream failed: {err}"))??;
            }
            _ = interrupt::wait() => return Err(Interrupted.into()),
        }
    }
    while let Some(ended) = tasks.join_next().await {
        ended.map_err(|err| anyhow!("a receiving stream failed: {err}"))??;
    }
    if done != size {
        bail!(
            "the sender stopped after {done} of {size} bytes: the copy is incomplete and was discarded"
        );
    }
    Ok(Received {
        bytes: done,
        writing: writing.total(),
        digest,
    })
}

async fn receive_chunks<S: AsyncRead + Unpin>(
    mut stream: S,
    size: u64,
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
        if !offset.is_multiple_of(plan.chunk as u64) || len == 0 || len != expected {
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

#[cfg(test)]
mod tests {
    use super::*;

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
