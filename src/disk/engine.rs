//! The disk engine: positioned reads and writes of aligned buffers, many in flight.
//!
//! One small interface, two implementations: io_uring (the io-uring crate, in `uring.rs`) and a
//! `psync` fallback of worker threads doing pread/pwrite, for kernels where io_uring is disabled
//! by sysctl or seccomp; and fio's `null` engine for tests of the layers above. Callers submit owned buffers and get them back in completions, in any
//! order, so the number of buffers a caller owns bounds both memory and queue depth.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::buffer::AlignedBuf;
use super::uring;
pub use super::uring::RingFlags;
pub use crate::measure::EngineKind;

/// What the user asked for with `--engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineChoice {
    /// io_uring when the kernel allows it, else psync.
    Auto,
    /// io_uring, its ring set up as fio's; fails if the kernel refuses it.
    #[value(name = "io_uring")]
    IoUring,
    /// pread/pwrite on IODEPTH worker threads.
    Psync,
    /// fio's `null`: every request completes at once and no byte reaches the file. For fast
    /// tests of the layers above the disk; never offered on the command line.
    #[value(skip)]
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Write all of `buf.as_slice()` at the offset.
    Write,
    /// Read up to `len` bytes at the offset; fewer only at end of file.
    Read { len: usize },
}

/// A read or write handed to the engine, with the buffer it owns until its [`Completion`].
#[derive(Debug)]
pub struct Submission {
    pub op: Op,
    pub offset: u64,
    pub buf: AlignedBuf,
}

/// A finished request: the buffer comes back with the bytes moved (reads set its length).
#[derive(Debug)]
pub struct Completion {
    pub op: Op,
    pub offset: u64,
    pub buf: AlignedBuf,
    pub result: io::Result<usize>,
}

/// A running engine bound to one open file.
pub struct Engine {
    kind: EngineKind,
    requests: Option<UnboundedSender<Submission>>,
    completions: UnboundedReceiver<Completion>,
    workers: Vec<JoinHandle<()>>,
    /// io_uring: wakes the ring's thread for each request, and at the end.
    doorbell: Option<Arc<uring::Doorbell>>,
    ring_flags: Option<RingFlags>,
    /// io_uring driven by the caller's own thread (see [`Engine::start_blocking`]).
    inline: Option<uring::Inline>,
    /// The null engine: completes each request as it is submitted.
    null: Option<Null>,
}

/// fio's `null` engine: what a request would have moved, at once, with no I/O.
struct Null {
    completions: UnboundedSender<Completion>,
    /// The file's length at start: reads end there, as they would on the file.
    len: u64,
}

/// Most worker threads the psync engine starts, whatever the depth asked.
const MAX_PSYNC_THREADS: usize = 64;

impl Engine {
    /// Starts an engine on `file` for up to `depth` requests in flight.
    /// With [`EngineChoice::Auto`], a refused io_uring falls back to psync and the reason is returned.
    pub fn start(
        choice: EngineChoice,
        file: &File,
        depth: usize,
    ) -> io::Result<(Engine, Option<String>)> {
        Engine::start_with(choice, file, depth, Engine::start_uring)
    }

    /// Like [`Engine::start`], for a caller that blocks in [`Engine::wait`] and
    /// [`Engine::try_next`] on one thread: io_uring is then driven from that thread, as fio
    /// drives its ring, with no thread hop per request (the hop costs a fifth of a disk's rate
    /// at depth 1). Its `next().await` blocks: async callers use [`Engine::start`].
    pub fn start_blocking(
        choice: EngineChoice,
        file: &File,
        depth: usize,
    ) -> io::Result<(Engine, Option<String>)> {
        Engine::start_with(choice, file, depth, Engine::start_inline)
    }

    /// psync when asked; else io_uring started by `uring`, falling back to psync under `Auto`
    /// with the reason.
    fn start_with(
        choice: EngineChoice,
        file: &File,
        depth: usize,
        uring: fn(&File, usize) -> io::Result<Engine>,
    ) -> io::Result<(Engine, Option<String>)> {
        match choice {
            EngineChoice::Psync => return Ok((Engine::start_psync(file, depth)?, None)),
            EngineChoice::Null => return Ok((Engine::start_null(file)?, None)),
            EngineChoice::Auto | EngineChoice::IoUring => {}
        }
        match uring(file, depth) {
            Ok(engine) => Ok((engine, None)),
            Err(err) if choice == EngineChoice::Auto => {
                let reason =
                    format!("io_uring is unavailable ({err}); using psync (pread/pwrite threads)");
                Ok((Engine::start_psync(file, depth)?, Some(reason)))
            }
            Err(err) => Err(io::Error::new(
                err.kind(),
                format!("io_uring is unavailable: {err}; try --engine psync"),
            )),
        }
    }

    fn start_inline(file: &File, depth: usize) -> io::Result<Engine> {
        let inline = uring::Inline::new(file, depth)?;
        // No channel feeds an inline ring: the caller's thread is its one issuer.
        let (_, completions) = unbounded_channel();
        Ok(Engine {
            kind: EngineKind::IoUring,
            requests: None,
            completions,
            workers: Vec::new(),
            doorbell: None,
            ring_flags: Some(inline.flags()),
            inline: Some(inline),
            null: None,
        })
    }

    fn start_uring(file: &File, depth: usize) -> io::Result<Engine> {
        let (requests, request_rx) = unbounded_channel();
        let (completion_tx, completions) = unbounded_channel();
        let ring = uring::spawn(file.try_clone()?, depth, request_rx, completion_tx)?;
        Ok(Engine {
            kind: EngineKind::IoUring,
            requests: Some(requests),
            completions,
            workers: vec![ring.worker],
            doorbell: Some(ring.doorbell),
            ring_flags: Some(ring.flags),
            inline: None,
            null: None,
        })
    }

    fn start_psync(file: &File, depth: usize) -> io::Result<Engine> {
        let (requests, request_rx) = unbounded_channel::<Submission>();
        let (completion_tx, completions) = unbounded_channel();
        let shared_rx = Arc::new(Mutex::new(request_rx));
        let file = Arc::new(file.try_clone()?);
        let workers = (0..depth.clamp(1, MAX_PSYNC_THREADS))
            .map(|i| {
                let (rx, tx, file) = (shared_rx.clone(), completion_tx.clone(), file.clone());
                std::thread::Builder::new()
                    .name(format!("psync-{i}"))
                    .spawn(move || psync_worker(&file, &rx, &tx))
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Engine {
            kind: EngineKind::Psync,
            requests: Some(requests),
            completions,
            workers,
            doorbell: None,
            ring_flags: None,
            inline: None,
            null: None,
        })
    }

    fn start_null(file: &File) -> io::Result<Engine> {
        let (sender, completions) = unbounded_channel();
        Ok(Engine {
            kind: EngineKind::Null,
            requests: None,
            completions,
            workers: Vec::new(),
            doorbell: None,
            ring_flags: None,
            inline: None,
            null: Some(Null {
                completions: sender,
                len: file.metadata()?.len(),
            }),
        })
    }

    pub fn kind(&self) -> EngineKind {
        self.kind
    }

    /// The io_uring setup flags the ring got (None for psync).
    pub fn ring_flags(&self) -> Option<RingFlags> {
        self.ring_flags
    }

    pub fn submit(&mut self, request: Submission) -> io::Result<()> {
        if let Some(inline) = &mut self.inline {
            return inline.submit(request);
        }
        if let Some(null) = &self.null {
            return null.complete(request);
        }
        let sender = self.requests.as_ref().expect("requests open until drop");
        sender.send(request).map_err(|_| engine_stopped())?;
        if let Some(doorbell) = &self.doorbell {
            doorbell.ring();
        }
        Ok(())
    }

    /// Starts what [`Engine::submit`] queued now, without waiting for anything: a caller with
    /// other work to do before its next wait (filling the next block) calls it first. An engine
    /// whose requests start on submit has nothing to do here.
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.inline {
            Some(inline) => inline.flush(),
            None => Ok(()),
        }
    }

    /// Blocks until a request completes; for callers outside an async runtime.
    pub fn wait(&mut self) -> io::Result<Completion> {
        if let Some(inline) = &mut self.inline {
            return inline.wait();
        }
        self.completions.blocking_recv().ok_or_else(engine_stopped)
    }

    /// A completion that is already there, without waiting.
    pub fn try_next(&mut self) -> Option<Completion> {
        if let Some(inline) = &mut self.inline {
            return inline.try_next();
        }
        self.completions.try_recv().ok()
    }

    /// Waits for a request to complete; for async callers (of an engine from [`Engine::start`]).
    pub async fn next(&mut self) -> io::Result<Completion> {
        if let Some(inline) = &mut self.inline {
            return inline.wait();
        }
        self.completions.recv().await.ok_or_else(engine_stopped)
    }
}

impl Engine {
    /// Stops the engine without waiting for its workers: each finishes what is in flight (and
    /// frees its buffers) on its own, or never, when an I/O is stuck in the kernel on a share
    /// whose server is gone (a `hard` NFS mount retries for ever). Dropping would wait for them.
    pub fn abandon(mut self) {
        self.workers.clear();
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Closing the request channel lets the workers finish what is in flight and exit.
        self.requests = None;
        if let Some(doorbell) = &self.doorbell {
            doorbell.ring();
        }
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

impl Null {
    fn complete(
        &self,
        Submission {
            op,
            offset,
            mut buf,
        }: Submission,
    ) -> io::Result<()> {
        let moved = match op {
            Op::Write => buf.len(),
            Op::Read { len } => {
                let moved = len.min(self.len.saturating_sub(offset) as usize);
                buf.set_len(moved);
                moved
            }
        };
        self.completions
            .send(Completion {
                op,
                offset,
                buf,
                result: Ok(moved),
            })
            .map_err(|_| engine_stopped())
    }
}

fn engine_stopped() -> io::Error {
    io::Error::other("the disk engine stopped unexpectedly")
}

fn psync_worker(
    file: &File,
    requests: &Mutex<UnboundedReceiver<Submission>>,
    completions: &UnboundedSender<Completion>,
) {
    loop {
        let next = requests.lock().map(|mut rx| rx.blocking_recv());
        let Ok(Some(Submission {
            op,
            offset,
            mut buf,
        })) = next
        else {
            return;
        };
        let result = match op {
            Op::Write => file
                .write_all_at(buf.as_slice(), offset)
                .map(|()| buf.len()),
            Op::Read { len } => read_up_to(file, &mut buf, len, offset),
        };
        if completions
            .send(Completion {
                op,
                offset,
                buf,
                result,
            })
            .is_err()
        {
            return;
        }
    }
}

/// Reads until `len` bytes or end of file, like `read_exact_at` but a short tail is not an error.
fn read_up_to(file: &File, buf: &mut AlignedBuf, len: usize, offset: u64) -> io::Result<usize> {
    let mut done = 0;
    buf.set_len(0);
    while done < len {
        match file.read_at(&mut buf.full_mut()[done..len], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        }
    }
    buf.set_len(done);
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("engine.data"))
            .unwrap();
        (dir, file)
    }

    /// An engine of `choice`, its ring driven by the caller's thread (`inline`) or its own.
    fn start(choice: EngineChoice, inline: bool, file: &File, depth: usize) -> Engine {
        let started = match inline {
            true => Engine::start_blocking(choice, file, depth),
            false => Engine::start(choice, file, depth),
        };
        started.unwrap().0
    }

    /// Writes 32 blocks of 64 KiB, 8 in flight, then reads them back 8 at a time.
    fn round_trip(choice: EngineChoice, inline: bool) {
        const BLOCK: usize = 64 << 10;
        let (_dir, file) = scratch();
        let mut engine = start(choice, inline, &file, 8);
        let pattern = |index: usize, at: usize| (index * 31 + at / 4096) as u8;
        let mut pool: Vec<AlignedBuf> = (0..8).map(|_| AlignedBuf::new(BLOCK)).collect();
        let (mut next, mut in_flight) = (0usize, 0usize);
        while next < 32 || in_flight > 0 {
            while next < 32 {
                let Some(mut buf) = pool.pop() else { break };
                for (at, byte) in buf.full_mut().iter_mut().enumerate() {
                    *byte = pattern(next, at);
                }
                buf.set_len(BLOCK);
                let offset = (next * BLOCK) as u64;
                engine
                    .submit(Submission {
                        op: Op::Write,
                        offset,
                        buf,
                    })
                    .unwrap();
                (next, in_flight) = (next + 1, in_flight + 1);
            }
            let done = engine.wait().unwrap();
            assert_eq!(done.result.unwrap(), BLOCK);
            pool.push(done.buf);
            in_flight -= 1;
        }
        for index in 0..32 {
            let offset = (index * BLOCK) as u64;
            let buf = pool.pop().unwrap();
            engine
                .submit(Submission {
                    op: Op::Read { len: BLOCK },
                    offset,
                    buf,
                })
                .unwrap();
            let done = engine.wait().unwrap();
            assert_eq!(done.result.unwrap(), BLOCK);
            assert_eq!(done.buf.len(), BLOCK);
            let block = (done.offset as usize) / BLOCK;
            assert!(
                done.buf
                    .as_slice()
                    .iter()
                    .enumerate()
                    .all(|(at, b)| *b == pattern(block, at)),
                "block {block} read back wrong with {choice:?}"
            );
            pool.push(done.buf);
        }
    }

    #[test]
    fn io_uring_writes_and_reads_back_every_byte_with_many_in_flight() {
        round_trip(EngineChoice::IoUring, false);
    }

    #[test]
    fn io_uring_driven_by_the_callers_thread_writes_and_reads_back_every_byte() {
        round_trip(EngineChoice::IoUring, true);
    }

    #[test]
    fn psync_writes_and_reads_back_every_byte_with_many_in_flight() {
        round_trip(EngineChoice::Psync, false);
    }

    /// A write of `len` bytes of `byte` at offset 0.
    fn write_of(len: usize, byte: u8) -> Submission {
        let mut buf = AlignedBuf::new(len);
        buf.full_mut().fill(byte);
        buf.set_len(len);
        Submission {
            op: Op::Write,
            offset: 0,
            buf,
        }
    }

    /// Reads `len` bytes at `offset` and waits for the answer.
    fn read_at(engine: &mut Engine, offset: u64, len: usize) -> Completion {
        let buf = AlignedBuf::new(len);
        let op = Op::Read { len };
        engine.submit(Submission { op, offset, buf }).unwrap();
        engine.wait().unwrap()
    }

    #[test]
    fn a_read_past_the_end_of_the_file_is_short_not_an_error() {
        for (choice, inline) in [
            (EngineChoice::IoUring, false),
            (EngineChoice::IoUring, true),
            (EngineChoice::Psync, false),
        ] {
            let (_dir, file) = scratch();
            file.write_all_at(&[7u8; 5000], 0).unwrap();
            let mut engine = start(choice, inline, &file, 2);
            let done = read_at(&mut engine, 0, 8192);
            assert_eq!(done.result.unwrap(), 5000, "{choice:?}");
            assert_eq!(done.buf.len(), 5000);
            let past = read_at(&mut engine, 8192, 4096);
            assert_eq!(past.result.unwrap(), 0, "{choice:?}");
        }
    }

    #[test]
    fn the_null_engine_completes_at_once_and_moves_no_byte() {
        let (_dir, file) = scratch();
        file.set_len(100_000).unwrap();
        let mut engine = start(EngineChoice::Null, false, &file, 4);
        assert_eq!(engine.kind(), EngineKind::Null);
        engine.submit(write_of(65536, 0xa5)).unwrap();
        let written = engine.try_next().expect("complete on submit");
        assert_eq!(written.result.unwrap(), 65536);
        let mut on_disk = vec![0xffu8; 65536];
        file.read_exact_at(&mut on_disk, 0).unwrap();
        assert!(on_disk.iter().all(|&b| b == 0), "a byte reached the file");
        // Reads end where the file ends, as on a real file.
        assert_eq!(
            read_at(&mut engine, 65536, 65536).result.unwrap(),
            100_000 - 65536
        );
        assert_eq!(read_at(&mut engine, 200_000, 4096).result.unwrap(), 0);
    }

    #[test]
    fn an_engine_dropped_with_requests_in_flight_finishes_them_and_stops() {
        for inline in [false, true] {
            dropped_in_flight(inline);
        }
    }

    fn dropped_in_flight(inline: bool) {
        let (_dir, file) = scratch();
        let mut engine = start(EngineChoice::IoUring, inline, &file, 16);
        for index in 0..16u64 {
            let mut buf = AlignedBuf::new(1 << 20);
            buf.set_len(1 << 20);
            engine
                .submit(Submission {
                    op: Op::Write,
                    offset: index << 20,
                    buf,
                })
                .unwrap();
        }
        let started = std::time::Instant::now();
        drop(engine);
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
        assert_eq!(file.metadata().unwrap().len(), 16 << 20);
    }

    #[test]
    fn the_ring_is_set_up_with_fios_flags_where_the_kernel_takes_them() {
        for inline in [false, true] {
            let (_dir, file) = scratch();
            let engine = start(EngineChoice::IoUring, inline, &file, 4);
            let flags = engine
                .ring_flags()
                .expect("an io_uring engine has ring flags");
            // Every kernel this runs on since 6.1 takes all three, as fio asks for them.
            if kernel_version() >= (6, 1) {
                assert_eq!(flags.names(), "COOP_TASKRUN|SINGLE_ISSUER|DEFER_TASKRUN");
            }
        }
    }

    #[test]
    fn an_inline_ring_made_on_one_thread_serves_the_thread_that_uses_it() {
        // SINGLE_ISSUER: the ring belongs to the thread that first submits, not its maker.
        let (_dir, file) = scratch();
        let mut engine = start(EngineChoice::IoUring, true, &file, 2);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    engine.submit(write_of(4096, 0)).unwrap();
                    assert_eq!(engine.wait().unwrap().result.unwrap(), 4096);
                })
                .join()
                .unwrap();
        });
    }

    fn kernel_version() -> (u32, u32) {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut parts = release
            .trim()
            .split(['.', '-'])
            .map(|p| p.parse().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    }
}
