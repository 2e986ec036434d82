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
