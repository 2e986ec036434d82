//! A channel's disk I/O through the disk engine, O_DIRECT where the file system allows it, in a
//! fixed set of page-aligned buffers: [`DiskWriter`] writes what the client sends at increasing
//! offsets, and [`send_range`] lends what it reads to the SSH layer without a copy.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use russh::ChannelWriteHalf;
use russh::server::Msg;
use tokio::sync::mpsc;

use crate::disk::{self, ALIGN, AlignedBuf, Engine, EngineChoice, Op, Submission};
use crate::file;

/// Bytes per disk request: large enough for full disk speed with few requests.
pub(super) const BLOCK: usize = 1 << 20;
/// Disk requests in flight per channel; with [`BLOCK`], a channel's buffer memory (4 MiB).
pub(super) const DEPTH: usize = 4;

/// Writes a stream at increasing offsets through the disk engine: [`DEPTH`] aligned buffers of
/// [`BLOCK`] bytes, whatever the size. With O_DIRECT, the last partial page goes through a
/// second, buffered handle.
pub(super) struct DiskWriter {
    engine: Engine,
    tail_file: File,
    direct: bool,
    path: PathBuf,
    free: Vec<AlignedBuf>,
    allocated: usize,
    filling: AlignedBuf,
    /// File offset of `filling`'s first byte.
    start: u64,
    in_flight: usize,
}

impl DiskWriter {
    pub(super) fn start(
        handle: &File,
        direct: bool,
        path: &Path,
        start: u64,
    ) -> Result<DiskWriter> {
        let engine = disk::start_engine(EngineChoice::Auto, handle, path, DEPTH, &mut Vec::new())?;
        let tail_file = if direct {
            OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|err| anyhow!("cannot open {}", file::describe_path_error(path, err)))?
        } else {
            handle.try_clone()?
        };
        Ok(DiskWriter {
            engine,
            tail_file,
            direct,
            path: path.to_path_buf(),
            free: Vec::new(),
            allocated: 1,
            filling: AlignedBuf::new(BLOCK),
            start,
            in_flight: 0,
        })
    }

    /// Room left in the current buffer, to read into.
    pub(super) fn spare(&mut self) -> &mut [u8] {
        let len = self.filling.len();
        &mut self.filling.full_mut()[len..]
    }

    /// Counts `n` bytes read into [`DiskWriter::spare`]; a full buffer goes to the disk.
    pub(super) async fn advance(&mut self, n: usize) -> Result<()> {
        let len = self.filling.len() + n;
        self.filling.set_len(len);
        if len == self.filling.capacity() {
            let next = self.take_free().await?;
            let full = std::mem::replace(&mut self.filling, next);
            self.submit(full)?;
        }
        Ok(())
    }

    /// The file offset just past the bytes taken in.
    pub(super) fn end(&self) -> u64 {
        self.start + self.filling.len() as u64
    }

    fn submit(&mut self, buf: AlignedBuf) -> Result<()> {
        let len = buf.len() as u64;
        self.engine.submit(Submission {
            op: Op::Write,
            offset: self.start,
            buf,
        })?;
        self.in_flight += 1;
        self.start += len;
        Ok(())
    }

    async fn take_free(&mut self) -> Result<AlignedBuf> {
        if let Some(buf) = self.free.pop() {
            return Ok(buf);
        }
        if self.allocated < DEPTH {
            self.allocated += 1;
            return Ok(AlignedBuf::new(BLOCK));
        }
        self.reap().await?;
        self.free
            .pop()
            .ok_or_else(|| anyhow!("the disk engine returned no buffer"))
    }

    /// Waits for one write to complete and takes its buffer back.
    async fn reap(&mut self) -> Result<()> {
        let done = self.engine.next().await?;
        self.in_flight -= 1;
        let wanted = done.buf.len();
        match done.result {
            Ok(written) if written == wanted => {}
            Ok(written) => bail!(
                "writing {}: only {written} of {wanted} bytes written at offset {}",
                self.path.display(),
                done.offset
            ),
            Err(err) => bail!(
                "writing {} at offset {}: {err}{}",
                self.path.display(),
                done.offset,
                if err.raw_os_error() == Some(libc::ENOSPC) {
                    ": the server's disk is full"
                } else {
                    ""
                }
            ),
        }
        let mut buf = done.buf;
        buf.set_len(0);
        self.free.push(buf);
        Ok(())
    }

    /// Writes what is left and waits for every write; returns the offset just past the data.
    pub(super) async fn finish(mut self) -> Result<u64> {
        let len = self.filling.len();
        let whole = if self.direct {
            len / ALIGN * ALIGN
        } else {
            len
        };
        let tail = self.filling.as_slice()[whole..].to_vec();
        let tail_at = self.start + whole as u64;
        if whole > 0 {
            self.filling.set_len(whole);
            let last = std::mem::replace(&mut self.filling, AlignedBuf::new(ALIGN));
            self.submit(last)?;
        }
        while self.in_flight > 0 {
            self.reap().await?;
        }
        if !tail.is_empty() {
            self.tail_file
                .write_all_at(&tail, tail_at)
                .with_context(|| format!("writing {} at offset {tail_at}", self.path.display()))?;
        }
        Ok(tail_at + tail.len() as u64)
    }
}

/// A disk buffer lent to the SSH layer as `Bytes`; it comes home when the last slice is sent.
struct Lent {
    buf: Option<AlignedBuf>,
    home: mpsc::UnboundedSender<AlignedBuf>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        self.buf.as_ref().map_or(&[], |buf| buf.as_slice())
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            let _ = self.home.send(buf);
        }
    }
}

/// Sends `len` bytes of a file from `offset` on the channel: [`DEPTH`] reads in flight, sent in
/// order, each buffer handed over without a copy and reused once the SSH layer is done with it.
pub(super) async fn send_range(
    handle: &File,
    direct: bool,
    path: &Path,
    offset: u64,
    len: u64,
    write: &ChannelWriteHalf<Msg>,
) -> Result<()> {
    let end = offset + len;
    if len == 0 {
        return Ok(());
    }
    let mut engine = disk::start_engine(EngineChoice::Auto, handle, path, DEPTH, &mut Vec::new())?;
    let align = if direct { ALIGN as u64 } else { 1 };
    let first = offset / align * align;
    let (home, mut returned) = mpsc::unbounded_channel();
    // Two more than in flight: buffers lent to the SSH layer are still being encrypted.
    let mut free: Vec<AlignedBuf> = (0..DEPTH + 2).map(|_| AlignedBuf::new(BLOCK)).collect();
    let mut ready = BTreeMap::new();
    let (mut next_read, mut next_send, mut in_flight) = (first, first, 0usize);
    while next_send < end {
        while let Ok(buf) = returned.try_recv() {
            free.push(buf);
        }
        while in_flight < DEPTH && next_read < end {
            let Some(buf) = free.pop() else { break };
            let want = (end - next_read).div_ceil(align) * align;
            let read_len = want.min(BLOCK as u64) as usize;
            engine.submit(Submission {
                op: Op::Read { len: read_len },
                offset: next_read,
                buf,
            })?;
            in_flight += 1;
            next_read += read_len as u64;
        }
        if let Some(done) = ready.remove(&next_send) {
            next_send = send_block(done, offset, end, path, &home, write).await?;
        } else if in_flight > 0 {
            let done = engine.next().await?;
            in_flight -= 1;
            ready.insert(done.offset, done);
        } else {
            let buf = returned
                .recv()
                .await
                .ok_or_else(|| anyhow!("the SSH layer kept a buffer"))?;
            free.push(buf);
        }
    }
    Ok(())
}

/// Sends the part of one read block inside [`offset`, `end`); returns the next block's offset.
async fn send_block(
    done: disk::Completion,
    offset: u64,
    end: u64,
    path: &Path,
    home: &mpsc::UnboundedSender<AlignedBuf>,
    write: &ChannelWriteHalf<Msg>,
) -> Result<u64> {
    let read = done
        .result
        .with_context(|| format!("reading {} at offset {}", path.display(), done.offset))?;
    let block_end = done.offset + read as u64;
    if block_end < end && read < BLOCK {
        bail!(
            "{} ended at byte {block_end}, before the {end} expected (did it shrink?)",
            path.display()
        );
    }
    let from = offset.saturating_sub(done.offset) as usize;
    let upto = (end.min(block_end) - done.offset) as usize;
    let bytes = Bytes::from_owner(Lent {
        buf: Some(done.buf),
        home: home.clone(),
    })
    .slice(from..upto);
    write
        .data_bytes(bytes)
        .await
        .map_err(|err| anyhow!("sending to the client: {err}"))?;
    Ok(block_end)
}
