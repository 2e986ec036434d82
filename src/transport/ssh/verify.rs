//! `--verify` against a stock OpenSSH server: this side digests what it sends (SHA-256, with the
//! CPU's SHA instructions where it has them, or BLAKE2b-512 when the far side has only `b2sum`),
//! and the far side's own `sha256sum` (or `b2sum`) reads the landed file back. With `-P N` each
//! connection's range is digested apart (`dd … | sha256sum` on the far side), so no side has to
//! put the ranges back in order. The far re-read is timed apart from the copy.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use blake2::Digest as _;
use tokio::io::AsyncWrite;

use super::command::RemoteCommand;
use super::exec::Exec;
use super::login::SshConnection;

/// The far side's digest tool, and the digest this side computes to match it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Sha256sum,
    B2sum,
}

impl Tool {
    /// The command on the far side.
    pub fn program(self) -> &'static str {
        match self {
            Tool::Sha256sum => "sha256sum",
            Tool::B2sum => "b2sum",
        }
    }

    /// The digest's name in reports.
    pub fn algorithm(self) -> &'static str {
        match self {
            Tool::Sha256sum => "sha256",
            Tool::B2sum => "blake2b-512",
        }
    }

    pub fn hasher(self) -> Hasher {
        match self {
            Tool::Sha256sum => Hasher::Sha256(sha2::Sha256::new()),
            Tool::B2sum => Hasher::Blake2b(Box::new(blake2::Blake2b512::new())),
        }
    }

    /// What `command -v sha256sum || command -v b2sum` printed: the first it found.
    fn from_found(said: &str) -> Option<Tool> {
        let found = said.lines().map(str::trim).find(|line| !line.is_empty())?;
        match found.rsplit('/').next()? {
            "sha256sum" => Some(Tool::Sha256sum),
            "b2sum" => Some(Tool::B2sum),
            _ => None,
        }
    }
}

/// A running digest of one of [`Tool`]'s kinds.
pub enum Hasher {
    Sha256(sha2::Sha256),
    Blake2b(Box<blake2::Blake2b512>),
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(hasher) => hasher.update(bytes),
            Hasher::Blake2b(hasher) => hasher.update(bytes),
        }
    }

    /// The digest in lower-case hex, as the coreutils tools print it.
    pub fn hex(self) -> String {
        let bytes: Vec<u8> = match self {
            Hasher::Sha256(hasher) => hasher.finalize().to_vec(),
            Hasher::Blake2b(hasher) => hasher.finalize().to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A writer that digests every byte it writes, until [`Hashing::take`] takes the digest out
/// (what is written after, such as SCP's closing status byte, is not part of the file).
pub struct Hashing<W> {
    inner: W,
    hasher: Option<Hasher>,
}

impl<W> Hashing<W> {
    pub fn new(inner: W, hasher: Option<Hasher>) -> Hashing<W> {
        Hashing { inner, hasher }
    }

    /// The digest of what was written so far, in hex; None when none was kept.
    pub fn take(&mut self) -> Option<String> {
        self.hasher.take().map(Hasher::hex)
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Hashing<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        if let Some(hasher) = self.hasher.as_mut() {
            hasher.update(&buf[..n]);
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The digest of the first `len` bytes of the local file `path`, as `tool` prints it.
/// Errors: the file cannot be read that far.
pub fn prefix_digest(path: &std::path::Path, len: u64, tool: Tool) -> Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?.take(len);
    let mut hasher = tool.hasher();
    let mut buf = vec![0u8; 1 << 20];
    let mut read = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        read += n as u64;
        crate::interrupt::check()?;
    }
    if read != len {
        bail!("{} ended at {read} bytes, before {len}", path.display());
    }
    Ok(hasher.hex())
}

/// Which digest tool the far side has. Errors: neither, said in one line.
pub async fn find_tool(connection: &SshConnection, label: &str) -> Result<Tool> {
    let said = Exec::run(&connection.handle, RemoteCommand::HashTool)
        .await
        .unwrap_or_default();
    Tool::from_found(&said).ok_or_else(|| {
        anyhow!(
            "{label}: --verify needs sha256sum or b2sum (GNU coreutils) on the far side and it has neither; install coreutils there, or drop --verify"
        )
    })
}

/// The far side's digests of `path`: the whole file, or each range on its own connection, all
/// at once; and how long that re-read took. Errors: a tool that failed or printed no digest.
pub async fn far_digests(
    connections: &[SshConnection],
    tool: Tool,
    path: &str,
    ranges: &[std::ops::Range<u64>],
) -> Result<(Vec<String>, Duration)> {
    let started = Instant::now();
    let whole = ranges.len() == 1 && ranges[0].start == 0;
    let runs = connections.iter().zip(ranges).map(|(connection, range)| {
        let command = RemoteCommand::Digest {
            tool: tool.program().to_string(),
            path: path.to_string(),
            range: (!whole).then(|| (range.start, range.end - range.start)),
        };
        Exec::run_within(&connection.handle, command, REREAD_TIMEOUT)
    });
    let said = futures::future::join_all(runs).await;
    let mut digests = Vec::with_capacity(said.len());
    for said in said {
        let said = said?;
        let digest = said.split_whitespace().next().unwrap_or_default();
        let hex_len = match tool {
            Tool::Sha256sum => 64,
            Tool::B2sum => 128,
        };
        if digest.len() != hex_len || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!(
                "{} printed {:?}, not a digest: {}",
                tool.program(),
                said.trim(),
                super::scp::SHELL_NOISE
            );
        }
        digests.push(digest.to_ascii_lowercase());
    }
    Ok((digests, started.elapsed()))
}

/// Longest the far side's re-read may take.
const REREAD_TIMEOUT: Duration = Duration::from_secs(3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_what_the_coreutils_tools_print() {
        let mut sha = Tool::Sha256sum.hasher();
        sha.update(b"abc");
        assert_eq!(
            sha.hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut b2 = Tool::B2sum.hasher();
        b2.update(b"abc");
        assert_eq!(
            b2.hex(),
            "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923"
        );
    }

    #[test]
    fn the_tool_found_first_is_the_one_used() {
        assert_eq!(
            Tool::from_found("/usr/bin/sha256sum\n/usr/bin/b2sum\n"),
            Some(Tool::Sha256sum)
        );
        assert_eq!(Tool::from_found("/usr/bin/b2sum\n"), Some(Tool::B2sum));
        assert_eq!(Tool::from_found(""), None);
        assert_eq!(Tool::from_found("/usr/bin/md5sum"), None);
    }
}
