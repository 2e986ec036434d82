//! The io_uring engine, and the only file that knows tokio-uring.
//!
//! tokio-uring runs its own current-thread runtime and cannot start on a tokio worker thread,
//! so it lives on a dedicated thread fed by a channel. It is unmaintained since 2025: keeping it
//! here, behind `Engine`, means it can be swapped for the `io-uring` crate without touching callers.

use std::cell::Cell;
use std::fs::File;
use std::io;
use std::rc::Rc;
use std::thread::JoinHandle;

use tokio::sync::Notify;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio_uring::buf::{BoundedBuf, IoBuf, IoBufMut};

use super::buffer::AlignedBuf;
use super::engine::{Completion, Op, Request};

// The buffer's memory stays put while the kernel uses it: it is a heap allocation owned by value.
unsafe impl IoBuf for AlignedBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

unsafe impl IoBufMut for AlignedBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        if self.len() < pos {
            self.set_len(pos);
        }
    }
}

/// Starts the io_uring thread; returns once the ring is set up, or with the kernel's refusal.
pub(super) fn spawn(
    file: File,
    depth: usize,
    requests: UnboundedReceiver<Request>,
    completions: UnboundedSender<Completion>,
) -> io::Result<JoinHandle<()>> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let entries = (depth.max(1) * 2).next_power_of_two().clamp(8, 4096) as u32;
    let worker = std::thread::Builder::new()
        .name("io_uring".into())
        .spawn(move || {
            let runtime = match tokio_uring::Runtime::new(tokio_uring::builder().entries(entries)) {
                Ok(runtime) => runtime,
                Err(err) => {
                    let _ = ready_tx.send(Err(err));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            runtime.block_on(serve(file, requests, completions));
        })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(worker),
        Ok(Err(err)) => {
            let _ = worker.join();
            Err(err)
        }
        Err(_) => Err(io::Error::other("the io_uring thread died while starting")),
    }
}

async fn serve(
    file: File,
    mut requests: UnboundedReceiver<Request>,
    completions: UnboundedSender<Completion>,
) {
    let file = Rc::new(tokio_uring::fs::File::from_std(file));
    let in_flight = Rc::new(Cell::new(0usize));
    let drained = Rc::new(Notify::new());
    while let Some(request) = requests.recv().await {
        let (file, completions, in_flight, drained) = (
            file.clone(),
            completions.clone(),
            in_flight.clone(),
            drained.clone(),
        );
        in_flight.set(in_flight.get() + 1);
        tokio_uring::spawn(async move {
            let completion = execute(&file, request).await;
            let _ = completions.send(completion);
            in_flight.set(in_flight.get() - 1);
            drained.notify_one();
        });
    }
    // The caller hung up: let the kernel finish what it holds before the ring goes away.
    while in_flight.get() > 0 {
        drained.notified().await;
    }
}

async fn execute(file: &tokio_uring::fs::File, request: Request) -> Completion {
    let Request {
        op,
        offset,
        mut buf,
    } = request;
    let mut done = 0usize;
    let result = match op {
        Op::Write => loop {
            let total = buf.len();
            if done == total {
                break Ok(total);
            }
            let (result, slice) = file
                .write_at(buf.slice(done..total), offset + done as u64)
                .submit()
                .await;
            buf = slice.into_inner();
            match result {
                Ok(0) => {
                    break Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the disk accepted no bytes",
                    ));
                }
                Ok(n) => done += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => break Err(err),
            }
        },
        Op::Read { len } => {
            buf.set_len(0);
            loop {
                if done == len {
                    break Ok(done);
                }
                let (result, slice) = file
                    .read_at(buf.slice(done..len), offset + done as u64)
                    .await;
                buf = slice.into_inner();
                match result {
                    Ok(0) => break Ok(done),
                    Ok(n) => done += n,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) => break Err(err),
                }
            }
        }
    };
    Completion {
        op,
        offset,
        buf,
        result,
    }
}
