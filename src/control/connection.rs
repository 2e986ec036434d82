//! Frames over a TCP connection, with a deadline on every read so no peer can hold us forever.

use std::time::Duration;

use anyhow::{Result, anyhow};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;

use super::frame::{self, FrameError};

/// How long a frame may take to leave: a peer that stops reading cannot hold a writer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// TCP keepalive on control connections: a peer cut off while the other side waits for an
/// answer (a long fsync, the end of a test) is noticed in about IDLE + INTERVAL × COUNT.
const KEEPALIVE_IDLE_SECS: libc::c_int = 5;
const KEEPALIVE_INTERVAL_SECS: libc::c_int = 2;
const KEEPALIVE_COUNT: libc::c_int = 3;

/// One control connection.
pub struct Connection {
    stream: TcpStream,
    /// Largest frame accepted from the peer.
    limit: usize,
}

impl Connection {
    pub fn new(stream: TcpStream, limit: usize) -> Connection {
        let _ = stream.set_nodelay(true);
        keep_alive(&stream);
        Connection { stream, limit }
    }

    /// Resolves when the peer closes the connection, breaks it (keepalive gives up on a
    /// vanished host), or sends anything: for a side that expects nothing until it answers.
    pub async fn closed(&mut self) {
        use tokio::io::AsyncReadExt;
        let mut byte = [0u8; 1];
        let _ = self.stream.read(&mut byte).await;
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

    /// Writes one frame, failing if the peer takes none of it for [`WRITE_TIMEOUT`].
    pub async fn write<T: Serialize>(&mut self, message: &T) -> Result<()> {
        match tokio::time::timeout(WRITE_TIMEOUT, frame::write(&mut self.stream, message)).await {
            Ok(written) => written.map_err(|err| anyhow!(err)),
            Err(_) => Err(anyhow!(
                "could send nothing for {} s: the peer stopped reading, or the path stopped carrying data",
                WRITE_TIMEOUT.as_secs()
            )),
        }
    }

    /// Writes one small frame now if the socket takes it whole, without waiting: for a message
    /// sent from a place that cannot wait (a stop on Ctrl-C). Errors: the socket's, or a full one.
    pub fn try_write<T: Serialize>(&self, message: &T) -> Result<()> {
        let frame = frame::encode(message)?;
        match self.stream.try_write(&frame) {
            Ok(n) if n == frame.len() => Ok(()),
            Ok(_) => Err(anyhow!("the control connection took part of a frame")),
            Err(err) => Err(err.into()),
        }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    pub fn into_stream(self) -> TcpStream {
        self.stream
    }
}

/// Turns TCP keepalive on, probing after a few idle seconds; best effort.
fn keep_alive(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let fd = stream.as_raw_fd();
    let set = |level, option, value: libc::c_int| {
        let _ = crate::sys::socket::set_option(fd, level, option, value);
    };
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, KEEPALIVE_IDLE_SECS);
    set(
        libc::IPPROTO_TCP,
        libc::TCP_KEEPINTVL,
        KEEPALIVE_INTERVAL_SECS,
    );
    set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, KEEPALIVE_COUNT);
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
    match crate::sys::socket::peek(fd) {
        Ok(0) => Peeked::Closed,
        Ok(_) => Peeked::Message,
        Err(err) => match err.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Peeked::Nothing,
            _ => Peeked::Closed,
        },
    }
}
