//! Frames over a TCP connection, with a deadline on every read so no peer can hold us forever.

use std::time::Duration;

use anyhow::{Result, anyhow};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;

use super::frame::{self, FrameError};

/// One control connection.
pub struct Connection {
    stream: TcpStream,
    /// Largest frame accepted from the peer.
    limit: usize,
}

impl Connection {
    pub fn new(stream: TcpStream, limit: usize) -> Connection {
        let _ = stream.set_nodelay(true);
        Connection { stream, limit }
    }

    /// Reads one frame, failing if none arrives within `timeout`.
    pub async fn read<T: DeserializeOwned>(&mut self, timeout: Duration) -> Result<T, FrameError> {
        match tokio::time::timeout(timeout, frame::read(&mut self.stream, self.limit)).await {
            Ok(result) => result,
            Err(_) => Err(FrameError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("nothing received for {} s", timeout.as_secs()),
            ))),
        }
    }

    pub async fn write<T: Serialize>(&mut self, message: &T) -> Result<()> {
        frame::write(&mut self.stream, message)
            .await
            .map_err(|err| anyhow!(err))
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    pub fn into_stream(self) -> TcpStream {
        self.stream
    }
}

/// What waits on a control socket, seen without taking it: how a data loop running on a thread
/// of its own learns that its peer spoke (its results, or an error) or went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peeked {
    Nothing,
    Message,
    Closed,
}

/// Looks at the control socket `fd` without taking anything from it.
pub fn peek(fd: std::os::fd::RawFd) -> Peeked {
    let mut byte = 0u8;
    let got = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match got {
        0 => Peeked::Closed,
        n if n > 0 => Peeked::Message,
        _ => match std::io::Error::last_os_error().kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Peeked::Nothing,
            _ => Peeked::Closed,
        },
    }
}
