//! The io_uring engine, and the only file that knows io_uring.
//!
//! One ring on a thread of its own, set up as fio sets up its ring where the kernel allows it
//! (`COOP_TASKRUN`, `SINGLE_ISSUER`, `DEFER_TASKRUN`: no interrupt or task-work signal per
//! completion; the ring's thread runs the completions when it asks for them), with the file
//! registered. The thread is the ring's only issuer: callers hand it requests over a channel and
//! ring an eventfd, whose read the ring keeps in flight beside the I/O, so one `io_uring_enter`
//! waits for either a completion or new work.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::thread::JoinHandle;

use io_uring::{IoUring, opcode, squeue, types};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::buffer::AlignedBuf;
use super::engine::{Completion, Op, Request};

/// The user_data of the eventfd read; I/O uses its slot index.
const WAKE: u64 = u64::MAX;

/// Rings the ring's thread: a caller has queued a request, or hung up.
#[derive(Debug)]
pub(super) struct Doorbell(OwnedFd);

impl Doorbell {
    fn new() -> io::Result<Doorbell> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a new descriptor we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
        Ok(Doorbell(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub(super) fn ring(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live local array to an eventfd we own.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }

    fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// The setup flags the ring got, in the kernel's words, as fio's `--debug` shows its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingFlags {
    pub coop_taskrun: bool,
    pub single_issuer: bool,
    pub defer_taskrun: bool,
}

impl RingFlags {
    /// "COOP_TASKRUN|SINGLE_ISSUER|DEFER_TASKRUN", or "none".
    pub fn names(&self) -> String {
        let names: Vec<&str> = [
            (self.coop_taskrun, "COOP_TASKRUN"),
            (self.single_issuer, "SINGLE_ISSUER"),
            (self.defer_taskrun, "DEFER_TASKRUN"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join("|")
        }
    }
}

/// Sets a ring up with the most of fio's flags this kernel takes: all three (6.1+), then
/// COOP_TASKRUN and SINGLE_ISSUER (6.0), then COOP_TASKRUN (5.19), then none.
fn build(entries: u32) -> io::Result<(IoUring, RingFlags)> {
    let tries = [
        RingFlags {
            coop_taskrun: true,
            single_issuer: true,
            defer_taskrun: true,
        },
        RingFlags {
            coop_taskrun: true,
            single_issuer: true,
            defer_taskrun: false,
        },
        RingFlags {
            coop_taskrun: true,
            single_issuer: false,
            defer_taskrun: false,
        },
        RingFlags {
            coop_taskrun: false,
            single_issuer: false,
            defer_taskrun: false,
        },
    ];
    let mut last = None;
    for flags in tries {
        let mut builder = IoUring::builder();
        if flags.coop_taskrun {
            builder.setup_coop_taskrun();
        }
        if flags.single_issuer {
            builder.setup_single_issuer();
        }
        if flags.defer_taskrun {
            builder.setup_defer_taskrun();
        }
        match builder.build(entries) {
            Ok(ring) => return Ok((ring, flags)),
            // EINVAL: an older kernel that does not know a flag; try with fewer.
            Err(err) if err.raw_os_error() == Some(libc::EINVAL) => last = Some(err),
            Err(err) => return Err(err),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no ring setup was tried")))
}

/// The engine's handle on its ring thread.
pub(super) struct Ring {
    pub worker: JoinHandle<()>,
    pub doorbell: Arc<Doorbell>,
    pub flags: RingFlags,
}

/// Starts the ring's thread; returns once the ring is set up, or with the kernel's refusal.
pub(super) fn spawn(
    file: File,
    depth: usize,
    requests: UnboundedReceiver<Request>,
    completions: UnboundedSender<Completion>,
) -> io::Result<Ring> {
    let doorbell = Arc::new(Doorbell::new()?);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    // Room for every request in flight, plus the doorbell's read.
    let entries = (depth.max(1) + 1).next_power_of_two().clamp(8, 4096) as u32;
    let bell = doorbell.clone();
    let worker = std::thread::Builder::new()
        .name("io_uring".into())
        .spawn(move || {
            // SINGLE_ISSUER binds the ring to the thread that made it: this one.
            let (ring, flags) = match build(entries) {
                Ok(built) => built,
                Err(err) => {
                    let _ = ready_tx.send(Err(err));
                    return;
                }
            };
            if let Err(err) = ring.submitter().register_files(&[file.as_raw_fd()]) {
                let _ = ready_tx.send(Err(err));
                return;
            }
            let _ = ready_tx.send(Ok(flags));
            Worker {
                ring,
                doorbell: bell,
                slots: Vec::new(),
                free: Vec::new(),
                in_flight: 0,
                requests,
                completions,
            }
            .run();
            drop(file);
        })?;
    match ready_rx.recv() {
        Ok(Ok(flags)) => Ok(Ring {
            worker,
            doorbell,
            flags,
        }),
        Ok(Err(err)) => {
            let _ = worker.join();
            Err(err)
        }
        Err(_) => Err(io::Error::other("the io_uring thread died while starting")),
    }
}

/// A request in the kernel's hands, and how much of it is done.
struct InFlight {
    op: Op,
    offset: u64,
    buf: AlignedBuf,
    done: usize,
}

impl InFlight {
    /// The bytes this request must move in all.
    fn total(&self) -> usize {
        match self.op {
            Op::Write => self.buf.len(),
            Op::Read { len } => len,
        }
    }

    /// The submission entry for what is left of it.
    fn entry(&mut self, slot: usize) -> squeue::Entry {
        let file = types::Fixed(0);
        let offset = self.offset + self.done as u64;
        let left = (self.total() - self.done) as u32;
        let entry = match self.op {
            // SAFETY (for the pointers): the buffer is owned by this slot until its completion
            // is reaped, and a heap allocation that does not move.
            Op::Write => opcode::Write::new(file, self.buf.as_ptr().wrapping_add(self.done), left)
                .offset(offset)
                .build(),
            Op::Read { .. } => {
                opcode::Read::new(file, self.buf.as_mut_ptr().wrapping_add(self.done), left)
                    .offset(offset)
                    .build()
            }
        };
        entry.user_data(slot as u64)
    }
}

struct Worker {
    ring: IoUring,
    doorbell: Arc<Doorbell>,
    slots: Vec<Option<InFlight>>,
    free: Vec<usize>,
    in_flight: usize,
    requests: UnboundedReceiver<Request>,
    completions: UnboundedSender<Completion>,
}

impl Worker {
    fn run(mut self) {
        // On the heap, so that a ring that breaks can be left holding it (leaked).
        let mut bell = Box::new([0u8; 8]);
        let mut listening = false;
        let mut open = true;
        loop {
            if open && !listening {
                let read = opcode::Read::new(types::Fd(self.doorbell.fd()), bell.as_mut_ptr(), 8)
                    .build()
                    .user_data(WAKE);
                self.push(read);
                listening = true;
            }
            while open {
                match self.requests.try_recv() {
                    Ok(request) => self.start(request),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => open = false,
                }
            }
            if !open && self.in_flight == 0 {
                break;
            }
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(err) if matches!(err.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
                Err(err) => {
                    self.fail_all(&err);
                    return;
                }
            }
            let reaped: Vec<(u64, i32)> = self
                .ring
                .completion()
                .map(|cqe| (cqe.user_data(), cqe.result()))
                .collect();
            for (user_data, result) in reaped {
                if user_data == WAKE {
                    listening = false;
                } else {
                    self.finish(user_data as usize, result);
                }
            }
        }
        // The doorbell's read must not outlive `bell`: ring it and reap it before leaving.
        while listening {
            self.doorbell.ring();
            if self.ring.submit_and_wait(1).is_err() {
                // A ring that cannot wait any more: `bell` is left to the kernel for good.
                Box::leak(bell);
                return;
            }
            listening = !self.ring.completion().any(|cqe| cqe.user_data() == WAKE);
        }
    }

    fn start(&mut self, request: Request) {
        let Request {
            op,
            offset,
            mut buf,
        } = request;
        if matches!(op, Op::Read { .. }) {
            buf.set_len(0);
        }
        let mut in_flight = InFlight {
            op,
            offset,
            buf,
            done: 0,
        };
        if in_flight.total() == 0 {
            self.complete(in_flight, Ok(0));
            return;
        }
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let entry = in_flight.entry(slot);
        self.slots[slot] = Some(in_flight);
        self.in_flight += 1;
        self.push(entry);
    }

    /// Queues an entry, submitting what is queued first if the ring is full.
    fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: every entry's buffer lives in a slot (or, for the doorbell, in `run`'s
            // frame) until its completion is reaped.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return;
            }
            let _ = self.ring.submit();
        }
    }

    fn finish(&mut self, slot: usize, result: i32) {
        let Some(mut in_flight) = self.slots.get_mut(slot).and_then(Option::take) else {
            return;
        };
        match result {
            n if n > 0 => {
                in_flight.done += n as usize;
                if in_flight.done < in_flight.total() {
                    // A short read or write: the rest goes in again.
                    let entry = in_flight.entry(slot);
                    self.slots[slot] = Some(in_flight);
                    self.push(entry);
                    return;
                }
                let done = in_flight.done;
                self.release(slot);
                self.complete(in_flight, Ok(done));
            }
            0 => {
                let done = in_flight.done;
                let outcome = match in_flight.op {
                    Op::Read { .. } => Ok(done),
                    Op::Write => Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the disk accepted no bytes",
                    )),
                };
                self.release(slot);
                self.complete(in_flight, outcome);
            }
            n if -n == libc::EINTR || -n == libc::EAGAIN => {
                let entry = in_flight.entry(slot);
                self.slots[slot] = Some(in_flight);
                self.push(entry);
            }
            n => {
                self.release(slot);
                self.complete(in_flight, Err(io::Error::from_raw_os_error(-n)));
            }
        }
    }

    fn release(&mut self, slot: usize) {
        self.free.push(slot);
        self.in_flight -= 1;
    }

    fn complete(&self, in_flight: InFlight, result: io::Result<usize>) {
        let InFlight {
            op,
            offset,
            mut buf,
            done,
        } = in_flight;
        if matches!(op, Op::Read { .. }) {
            buf.set_len(done);
        }
        let _ = self.completions.send(Completion {
            op,
            offset,
            buf,
            result,
        });
    }

    /// The ring itself failed: every request in flight fails with its error. Their buffers
    /// stay with the kernel (leaked), which may still be using them; callers get fresh ones.
    fn fail_all(&mut self, err: &io::Error) {
        let slots = std::mem::take(&mut self.slots);
        for mut in_flight in slots.into_iter().flatten() {
            let fresh = AlignedBuf::new(in_flight.buf.capacity());
            let lent = std::mem::replace(&mut in_flight.buf, fresh);
            std::mem::forget(lent);
            in_flight.done = 0;
            self.complete(
                in_flight,
                Err(io::Error::new(err.kind(), format!("io_uring_enter: {err}"))),
            );
        }
    }
}
