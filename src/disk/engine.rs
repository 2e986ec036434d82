//! The disk engine: positioned reads and writes of aligned buffers, many in flight.
//!
//! One small interface, two implementations: io_uring (through tokio-uring, in `uring.rs`) and a
//! `psync` fallback of worker threads doing pread/pwrite, for kernels where io_uring is disabled
//! by sysctl or seccomp. Callers submit owned buffers and get them back in completions, in any
//! order, so the number of buffers a caller owns bounds both memory and queue depth.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::buffer::AlignedBuf;
use super::uring;

/// What the user asked for with `--engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineChoice {
    /// io_uring when the kernel allows it, else psync.
    Auto,
    /// io_uring through tokio-uring; fails if the kernel refuses it.
    #[value(name = "io_uring")]
    IoUring,
    /// pread/pwrite on IODEPTH worker threads.
    Psync,
}

/// The engine actually running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    IoUring,
    Psync,
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EngineKind::IoUring => "io_uring",
            EngineKind::Psync => "psync",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Write all of `buf.as_slice()` at the offset.
    Write,
    /// Read up to `len` bytes at the offset; fewer only at end of file.
    Read { len: usize },
}

#[derive(Debug)]
pub struct Request {
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
    requests: Option<UnboundedSender<Request>>,
    completions: UnboundedReceiver<Completion>,
    workers: Vec<JoinHandle<()>>,
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
        if choice == EngineChoice::Psync {
            return Ok((Engine::start_psync(file, depth)?, None));
        }
        match Engine::start_uring(file, depth) {
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

    fn start_uring(file: &File, depth: usize) -> io::Result<Engine> {
        let (requests, request_rx) = unbounded_channel();
        let (completion_tx, completions) = unbounded_channel();
        let worker = uring::spawn(file.try_clone()?, depth, request_rx, completion_tx)?;
        Ok(Engine {
            kind: EngineKind::IoUring,
            requests: Some(requests),
            completions,
            workers: vec![worker],
        })
    }

    fn start_psync(file: &File, depth: usize) -> io::Result<Engine> {
        let (requests, request_rx) = unbounded_channel::<Request>();
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
        })
    }

    pub fn kind(&self) -> EngineKind {
        self.kind
    }

    pub fn submit(&self, request: Request) -> io::Result<()> {
        let sender = self.requests.as_ref().expect("requests open until drop");
        sender.send(request).map_err(|_| engine_stopped())
    }

    /// Blocks until a request completes; for callers outside an async runtime.
    pub fn wait(&mut self) -> io::Result<Completion> {
        self.completions.blocking_recv().ok_or_else(engine_stopped)
    }

    /// A completion that is already there, without waiting.
    pub fn try_next(&mut self) -> Option<Completion> {
        self.completions.try_recv().ok()
    }

    /// Waits for a request to complete; for async callers.
    pub async fn next(&mut self) -> io::Result<Completion> {
        self.completions.recv().await.ok_or_else(engine_stopped)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Closing the request channel lets the workers finish what is in flight and exit.
        self.requests = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn engine_stopped() -> io::Error {
    io::Error::other("the disk engine stopped unexpectedly")
}

fn psync_worker(
    file: &File,
    requests: &Mutex<UnboundedReceiver<Request>>,
    completions: &UnboundedSender<Completion>,
) {
    loop {
        let next = requests.lock().map(|mut rx| rx.blocking_recv());
        let Ok(Some(Request {
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
