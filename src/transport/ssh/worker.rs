//! A thread of its own per SSH connection: a current-thread runtime that runs the connection's
//! session task (the cipher) and the task feeding its channel side by side, so that handing a
//! packet to the cipher wakes no other thread. Measured here: cross-thread wakeups per 32 KiB
//! packet cost more than the encryption itself.

use std::thread::JoinHandle;

use anyhow::{Context, Result};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

pub struct Worker {
    runtime: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    pub fn start(name: String) -> Result<Worker> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting a connection's runtime")?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })
            .context("starting a connection's thread")?;
        Ok(Worker {
            runtime: handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Where this connection's tasks run.
    pub fn runtime(&self) -> &Handle {
        &self.runtime
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
