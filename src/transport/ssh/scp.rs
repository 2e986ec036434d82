//! The SCP source/sink protocol (`scp -t` / `scp -f`), the part of it one file needs.
//!
//! The source sends `C<mode> <size> <name>\n`, the sink answers one status byte, the source sends
//! `size` bytes and a 0 byte, the sink answers again. A status is 0 (fine), or 1 (warning) or
//! 2 (fatal) followed by a message line. `scp -p` sends a `T<mtime> 0 <atime> 0\n` line first.

use std::io;

use anyhow::{Result, anyhow, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest protocol line accepted: a header with a long file name.
const MAX_LINE: usize = 8192;

/// The `C` line that announces one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHeader {
    /// Permission bits, e.g. 0o644.
    pub mode: u32,
    pub size: u64,
    /// A plain name: no '/', no newline, not "." or "..".
    pub name: String,
}

impl FileHeader {
    /// The line on the wire.
    pub fn line(&self) -> Result<String> {
        check_name(&self.name)?;
        Ok(format!(
            "C{:04o} {} {}\n",
            self.mode & 0o7777,
            self.size,
            self.name
        ))
    }

    /// Reads a `C` line (without its newline).
    pub fn parse(line: &str) -> Result<FileHeader> {
        let bad = || anyhow!("a malformed SCP file header: {line:?}");
        let rest = line.strip_prefix('C').ok_or_else(bad)?;
        let mut fields = rest.splitn(3, ' ');
        let mode = fields.next().ok_or_else(bad)?;
        let size = fields.next().ok_or_else(bad)?;
        let name = fields.next().ok_or_else(bad)?;
        if mode.len() != 4 {
            return Err(bad());
        }
        let header = FileHeader {
            mode: u32::from_str_radix(mode, 8).map_err(|_| bad())?,
            size: size.parse().map_err(|_| bad())?,
            name: name.to_string(),
        };
        check_name(&header.name)?;
        Ok(header)
    }
}

/// A name the protocol can carry in one line, and that cannot climb out of a directory.
pub fn check_name(name: &str) -> Result<()> {
    if name.contains('\n') || name.contains('\r') {
        bail!("the file name {name:?} has a line break: SCP cannot carry it; rename the file");
    }
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        bail!("{name:?} is not a plain file name");
    }
    Ok(())
}

/// What the far side said after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warning(String),
    Fatal(String),
}

/// Reads one status byte (and its message); the end of the channel is an error.
pub async fn read_status<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<Status> {
    let code = reader.read_u8().await?;
    match code {
        0 => Ok(Status::Ok),
        1 | 2 => {
            let message = read_line(reader).await?;
            let message = message.trim_start_matches("scp: ").to_string();
            Ok(if code == 1 {
                Status::Warning(message)
            } else {
                Status::Fatal(message)
            })
        }
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            unexpected(reader, other, "an SCP status").await,
        )),
    }
}

/// Longest stray text quoted in a message, and how long it is waited for.
const STRAY_MAX: usize = 120;
const STRAY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// What to say when `first` came where `expected` should have: the stray text (up to its line's
/// end) and its likely cause, as scp says it: output from the remote shell's start-up files.
pub async fn unexpected<R: AsyncRead + Unpin>(reader: &mut R, first: u8, expected: &str) -> String {
    let mut text = vec![first];
    let _ = tokio::time::timeout(STRAY_WAIT, async {
        while text.len() < STRAY_MAX && text.last() != Some(&b'\n') {
            match reader.read_u8().await {
                Ok(byte) => text.push(byte),
                Err(_) => break,
            }
        }
    })
    .await;
    let said = String::from_utf8_lossy(&text).trim_end().to_string();
    format!(
        "the far side answered {first:#04x} ({said:?}) where {expected} was expected: {SHELL_NOISE}"
    )
}

/// The likely cause of stray text before a command's own output, as scp's manual gives it.
pub const SHELL_NOISE: &str = "most likely the remote shell's start-up files (.bashrc, .profile, \
    BASH_ENV...) print on standard output; make them print nothing when the shell is not interactive";

/// Waits for a 0 status; a warning or fatal status becomes an error carrying its message.
pub async fn expect_ok<R: AsyncRead + Unpin>(reader: &mut R) -> Result<()> {
    match read_status(reader).await? {
        Status::Ok => Ok(()),
        Status::Warning(message) | Status::Fatal(message) => Err(anyhow!(message)),
    }
}

/// Sends a status: 0, or 1/2 and a message.
pub async fn write_status<W: AsyncWrite + Unpin>(
    writer: &mut W,
    status: &Status,
) -> io::Result<()> {
    match status {
        Status::Ok => writer.write_all(&[0]).await?,
        Status::Warning(message) | Status::Fatal(message) => {
            let code = if matches!(status, Status::Warning(_)) {
                1
            } else {
                2
            };
            let mut bytes = vec![code];
            bytes.extend_from_slice(b"scp: ");
            bytes.extend_from_slice(message.replace('\n', " ").as_bytes());
            bytes.push(b'\n');
            writer.write_all(&bytes).await?
        }
    }
    writer.flush().await
}

/// Reads one line without its newline, byte by byte: what follows it belongs to the file.
pub async fn read_line<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<String> {
    let mut line = Vec::new();
    loop {
        let byte = reader.read_u8().await?;
        if byte == b'\n' {
            break;
        }
        if line.len() == MAX_LINE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "an SCP protocol line is too long",
            ));
        }
        line.push(byte);
    }
    String::from_utf8(line)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "an SCP line is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_read_back_as_themselves() {
        let header = FileHeader {
            mode: 0o640,
            size: 1 << 33,
            name: "big file.img".into(),
        };
        let line = header.line().unwrap();
        assert_eq!(line, "C0640 8589934592 big file.img\n");
        assert_eq!(FileHeader::parse(line.trim_end()).unwrap(), header);
    }

    #[test]
    fn names_that_would_break_the_protocol_or_climb_out_are_refused() {
        for name in ["a\nb", "", ".", "..", "../etc/passwd", "a/b"] {
            let header = FileHeader {
                mode: 0o644,
                size: 1,
                name: name.into(),
            };
            assert!(header.line().is_err(), "{name:?}");
            assert!(
                FileHeader::parse(&format!("C0644 1 {name}")).is_err(),
                "{name:?}"
            );
        }
        for line in [
            "C644 1 x",
            "C0644 -1 x",
            "D0755 0 dir",
            "C0644 1",
            "C0999 1 x",
        ] {
            assert!(FileHeader::parse(line).is_err(), "{line}");
        }
    }

    #[tokio::test]
    async fn statuses_carry_their_message() {
        let mut wire = Vec::new();
        write_status(&mut wire, &Status::Fatal("x: No such file".into()))
            .await
            .unwrap();
        write_status(&mut wire, &Status::Ok).await.unwrap();
        let mut reader = wire.as_slice();
        assert_eq!(
            read_status(&mut reader).await.unwrap(),
            Status::Fatal("x: No such file".into())
        );
        assert_eq!(read_status(&mut reader).await.unwrap(), Status::Ok);
        assert!(read_status(&mut reader).await.is_err());
    }

    #[tokio::test]
    async fn text_where_a_status_belongs_is_quoted_and_blamed_on_shell_start_up_files() {
        let mut reader = &b"hello from bashrc\n\0"[..];
        let err = read_status(&mut reader).await.unwrap_err().to_string();
        assert!(err.contains("0x68 (\"hello from bashrc\")"), "{err}");
        assert!(err.contains("start-up files"), "{err}");
    }
}
