//! The io_uring engine, and the only file that knows io_uring.
//!
//! A ring set up as fio sets up its own where the kernel allows it (`COOP_TASKRUN`,
//! `SINGLE_ISSUER`, `DEFER_TASKRUN`: no interrupt or task-work signal per completion; the
//! ring's one issuer runs the completions when it asks for them), with the file registered.
//! Two ways to drive it:
//! - [`Inline`], for blocking callers (the disk baselines, `gen`): the caller's own thread
//!   submits and reaps, as fio's does, with no thread between it and the kernel.
//! - [`spawn`], for async callers (the copy pipelines): the ring lives on a thread of its own,
//!   fed over a channel; callers ring an eventfd whose read the ring keeps in flight beside the
//!   I/O, so one `io_uring_enter` waits for either a completion or new work.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::thread::JoinHandle;

use io_uring::{IoUring, opcode, squeue, types};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::buffer::AlignedBuf;
use super::engine::{Completion, Op, Submission};

/// The user_data of the eventfd read; I/O uses its slot index.
const WAKE: u64 = u64::MAX;

/// Rings the ring's thread: a caller has queued a request, or hung up.
#[derive(Debug)]
pub(super) struct Doorbell(OwnedFd);

impl Doorbell {
    fn new() -> io::Result<Doorbell> {
        Ok(Doorbell(crate::sys::event::eventfd()?))
    }

    pub(super) fn ring(&self) {
        let _ = crate::sys::event::notify(self.0.as_fd());
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
/// `disabled`: made with `R_DISABLED`, so the thread that enables it becomes its one issuer.
fn build(entries: u32, disabled: bool) -> io::Result<(IoUring, RingFlags)> {
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
        if disabled {
            builder.setup_r_disabled();
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

/// `io_uring_enter`'s flag to reap completions (and, with `DEFER_TASKRUN`, run their task work).
const ENTER_GETEVENTS: u32 = 1;

/// A ring bound to one file, and the requests in the kernel's hands.
struct Core {
    ring: IoUring,
    flags: RingFlags,
    slots: Vec<Option<InFlight>>,
    free: Vec<usize>,
    in_flight: usize,
    /// The completions of one reap (user_data, result), kept so that reaping allocates nothing.
    reaped: Vec<(u64, i32)>,
}

impl Core {
    fn new(file: &File, depth: usize, disabled: bool) -> io::Result<Core> {
        // Room for every request in flight, plus the doorbell's read.
        let entries = (depth.max(1) + 1).next_power_of_two().clamp(8, 4096) as u32;
        let (ring, flags) = build(entries, disabled)?;
        ring.submitter().register_files(&[file.as_raw_fd()])?;
        Ok(Core {
            ring,
            flags,
            slots: Vec::new(),
            free: Vec::new(),
            in_flight: 0,
            reaped: Vec::new(),
        })
    }

    /// Queues a request; a zero-length one completes at once, through `done`.
    fn start(&mut self, request: Submission, done: &mut dyn FnMut(Completion)) {
        let Submission {
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
            done(in_flight.complete(Ok(0)));
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
            // SAFETY: every entry's buffer lives in a slot (or, for the doorbell, on the
            // worker's heap) until its completion is reaped.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return;
            }
            let _ = self.ring.submit();
        }
    }

    /// Submits what is queued and reaps, waiting for at least `min_complete` completions.
    fn enter(&mut self, min_complete: u32) -> io::Result<()> {
        let to_submit = self.ring.submission().len() as u32;
        // SAFETY: no argument is passed; the ring's fd and the counts are ours.
        let entered = unsafe {
            self.ring.submitter().enter::<libc::sigset_t>(
                to_submit,
                min_complete,
                ENTER_GETEVENTS,
                None,
            )
        };
        match entered {
            Ok(_) => Ok(()),
            // EINTR: a signal, try again; EBUSY: the completion queue is full, reaping makes room.
            Err(err) if matches!(err.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Takes every completion: finished requests go to `done`, short ones go in again, and
    /// any other entry's user_data (the doorbell's) to `other`.
    fn reap(&mut self, done: &mut dyn FnMut(Completion), other: &mut dyn FnMut(u64)) {
        // Taken first: going again (a short read or write) pushes onto the ring.
        let mut reaped = std::mem::take(&mut self.reaped);
        reaped.extend(
            self.ring
                .completion()
                .map(|cqe| (cqe.user_data(), cqe.result())),
        );
        for &(user_data, result) in &reaped {
            if user_data == WAKE {
                other(user_data);
                continue;
            }
            let slot = user_data as usize;
            let Some(mut in_flight) = self.slots.get_mut(slot).and_then(Option::take) else {
                continue;
            };
            let outcome = match result {
                n if n > 0 => {
                    in_flight.done += n as usize;
                    if in_flight.done < in_flight.total() {
                        None
                    } else {
                        Some(Ok(in_flight.done))
                    }
                }
                0 => Some(match in_flight.op {
                    Op::Read { .. } => Ok(in_flight.done),
                    Op::Write => Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the disk accepted no bytes",
                    )),
                }),
                n if -n == libc::EINTR || -n == libc::EAGAIN => None,
                n => Some(Err(io::Error::from_raw_os_error(-n))),
            };
            match outcome {
                // A short read or write, or one to try again: the rest goes in again.
                None => {
                    let entry = in_flight.entry(slot);
                    self.slots[slot] = Some(in_flight);
                    self.push(entry);
                }
                Some(result) => {
                    self.free.push(slot);
                    self.in_flight -= 1;
                    done(in_flight.complete(result));
                }
            }
        }
        reaped.clear();
        self.reaped = reaped;
    }

    /// The ring itself failed: every request in flight fails with its error. Their buffers
    /// stay with the kernel (leaked), which may still be using them; callers get fresh ones.
    fn fail_all(&mut self, err: &io::Error, done: &mut dyn FnMut(Completion)) {
        let slots = std::mem::take(&mut self.slots);
        self.in_flight = 0;
        for mut in_flight in slots.into_iter().flatten() {
            let fresh = AlignedBuf::new(in_flight.buf.capacity());
            let lent = std::mem::replace(&mut in_flight.buf, fresh);
            std::mem::forget(lent);
            in_flight.done = 0;
            done(in_flight.complete(Err(io::Error::new(
                err.kind(),
                format!("io_uring_enter: {err}"),
            ))));
        }
    }
}

/// A ring its caller drives from its own thread: submit queues, `wait` and `try_next` enter
/// the kernel. The thread that first uses it becomes its one issuer.
pub(super) struct Inline {
    core: Core,
    enabled: bool,
    ready: VecDeque<Completion>,
}

impl Inline {
    pub(super) fn new(file: &File, depth: usize) -> io::Result<Inline> {
        Ok(Inline {
            core: Core::new(file, depth, true)?,
            enabled: false,
            ready: VecDeque::new(),
        })
    }

    pub(super) fn flags(&self) -> RingFlags {
        self.core.flags
    }

    /// Makes the calling thread the ring's issuer, the first time.
    fn enable(&mut self) -> io::Result<()> {
        if !self.enabled {
            self.core.ring.submitter().register_enable_rings()?;
            self.enabled = true;
        }
        Ok(())
    }

    pub(super) fn submit(&mut self, request: Submission) -> io::Result<()> {
        self.enable()?;
        let ready = &mut self.ready;
        self.core.start(request, &mut |done| ready.push_back(done));
        Ok(())
    }

    /// The next completion, waiting for one if none is there.
    pub(super) fn wait(&mut self) -> io::Result<Completion> {
        loop {
            if let Some(done) = self.ready.pop_front() {
                return Ok(done);
            }
            if self.core.in_flight == 0 {
                return Err(io::Error::other("the disk engine has no request in flight"));
            }
            self.turn(1)?;
        }
    }

    /// Hands what is queued to the kernel now, without waiting.
    pub(super) fn flush(&mut self) -> io::Result<()> {
        if self.core.ring.submission().is_empty() {
            return Ok(());
        }
        self.turn(0)
    }

    /// A completion that is already there, after one look without waiting.
    pub(super) fn try_next(&mut self) -> Option<Completion> {
        if self.ready.is_empty() && self.core.in_flight > 0 {
            let _ = self.turn(0);
        }
        self.ready.pop_front()
    }

    fn turn(&mut self, min_complete: u32) -> io::Result<()> {
        self.enable()?;
        let ready = &mut self.ready;
        if let Err(err) = self.core.enter(min_complete) {
            self.core.fail_all(&err, &mut |done| ready.push_back(done));
            return Err(err);
        }
        self.core
            .reap(&mut |done| ready.push_back(done), &mut |_| {});
        Ok(())
    }
}

impl Drop for Inline {
    fn drop(&mut self) {
        // The kernel may still be writing into buffers of requests in flight: wait them out.
        while self.core.in_flight > 0 {
            if self.turn(1).is_err() {
                break;
            }
        }
    }
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
    requests: UnboundedReceiver<Submission>,
    completions: UnboundedSender<Completion>,
) -> io::Result<Ring> {
    let doorbell = Arc::new(Doorbell::new()?);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let bell = doorbell.clone();
    let worker = std::thread::Builder::new()
        .name("io_uring".into())
        .spawn(move || {
            // SINGLE_ISSUER binds the ring to the thread that made it: this one.
            let core = match Core::new(&file, depth, false) {
                Ok(core) => core,
                Err(err) => {
                    let _ = ready_tx.send(Err(err));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(core.flags));
            Worker {
                core,
                doorbell: bell,
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

    /// Hands the buffer back with the outcome (a read's length set to what arrived).
    fn complete(self, result: io::Result<usize>) -> Completion {
        let InFlight {
            op,
            offset,
            mut buf,
            done,
        } = self;
        if matches!(op, Op::Read { .. }) {
            buf.set_len(done);
        }
        Completion {
            op,
            offset,
            buf,
            result,
        }
    }
}

/// The ring's thread: takes requests off the channel, sends completions back.
struct Worker {
    core: Core,
    doorbell: Arc<Doorbell>,
    requests: UnboundedReceiver<Submission>,
    completions: UnboundedSender<Completion>,
}

impl Worker {
    fn run(mut self) {
        // On the heap, so that a ring that breaks can be left holding it (leaked).
        let mut bell = Box::new([0u8; 8]);
        let mut listening = false;
        let mut open = true;
        let completions = self.completions.clone();
        let mut send = |done: Completion| {
            let _ = completions.send(done);
        };
        loop {
            if open && !listening {
                let read = opcode::Read::new(types::Fd(self.doorbell.fd()), bell.as_mut_ptr(), 8)
                    .build()
                    .user_data(WAKE);
                self.core.push(read);
                listening = true;
            }
            while open {
                match self.requests.try_recv() {
                    Ok(request) => self.core.start(request, &mut send),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => open = false,
                }
            }
            if !open && self.core.in_flight == 0 {
                break;
            }
            if let Err(err) = self.core.enter(1) {
                self.core.fail_all(&err, &mut send);
                return;
            }
            self.core.reap(&mut send, &mut |_| listening = false);
        }
        // The doorbell's read must not outlive `bell`: ring it and reap it before leaving.
        while listening {
            self.doorbell.ring();
            if self.core.enter(1).is_err() {
                // A ring that cannot wait any more: `bell` is left to the kernel for good.
                Box::leak(bell);
                return;
            }
            self.core.reap(&mut send, &mut |_| listening = false);
        }
    }
}
