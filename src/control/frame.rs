//! The wire format of the control protocol: a 4-byte big-endian length, then that many bytes of JSON.
//!
//! JSON keeps the protocol readable in a packet capture and easy to extend; control traffic is a
//! handful of frames per test, so its cost does not matter.

use std::io;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame a server accepts from a client: requests are small, and an unauthenticated peer
/// must not make the server allocate much.
pub const MAX_REQUEST_FRAME: usize = 64 << 10;
/// Largest frame a client accepts from a server: results carry per-interval figures.
pub const MAX_RESULT_FRAME: usize = 16 << 20;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("the peer closed the connection")]
    Closed,
    #[error("a frame of {0} bytes is larger than the {1} allowed: not an xferbench peer?")]
    TooLarge(usize, usize),
    #[error("a malformed frame ({0}): not an xferbench peer, or a different version?")]
    Malformed(serde_json::Error),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Reads one frame and decodes it; `limit` bounds the memory a peer can make us allocate.
pub async fn read<T, R>(reader: &mut R, limit: usize) -> Result<T, FrameError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    let mut prefix = [0u8; 4];
    match reader.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(err) if err.kind() == io::ErrorKind::ConnectionReset => {
            return Err(FrameError::Closed);
        }
        Err(err) => return Err(err.into()),
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > limit {
        return Err(FrameError::TooLarge(len, limit));
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await.map_err(|err| {
        if err.kind() == io::ErrorKind::UnexpectedEof {
            FrameError::Closed
        } else {
            err.into()
        }
    })?;
    serde_json::from_slice(&body).map_err(FrameError::Malformed)
}

/// One frame's bytes: the length, then the JSON.
pub fn encode<T: Serialize>(message: &T) -> io::Result<Vec<u8>> {
    let body = serde_json::to_vec(message).map_err(io::Error::other)?;
    let len = u32::try_from(body.len()).map_err(|_| io::Error::other("frame too large"))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// Encodes and writes one frame.
pub async fn write<T, W>(writer: &mut W, message: &T) -> io::Result<()>
where
    T: Serialize,
    W: AsyncWrite + Unpin,
{
    writer.write_all(&encode(message)?).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_frame_round_trips() {
        let mut wire = Vec::new();
        write(&mut wire, &vec![1u32, 2, 3]).await.unwrap();
        let back: Vec<u32> = read(&mut wire.as_slice(), MAX_REQUEST_FRAME).await.unwrap();
        assert_eq!(back, vec![1, 2, 3]);
    }

    #[tokio::test]
    async fn an_oversized_length_is_refused_before_allocating() {
        let wire = b"GET / HTTP/1.1\r\n".to_vec();
        let err = read::<serde_json::Value, _>(&mut wire.as_slice(), MAX_REQUEST_FRAME)
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::TooLarge(_, _)), "{err}");
    }

    #[tokio::test]
    async fn a_truncated_frame_reads_as_closed() {
        let mut wire = Vec::new();
        write(&mut wire, &"hello").await.unwrap();
        wire.truncate(wire.len() - 2);
        let err = read::<String, _>(&mut wire.as_slice(), MAX_REQUEST_FRAME)
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::Closed), "{err}");
    }
}
