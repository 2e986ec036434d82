//! Things that make a figure less true than it looks, in plain words with the fix.
//!
//! Measuring code returns these as data; the command line prints each once and JSON carries them.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Warning {
    /// Reads of unwritten extents or holes return zeros without touching the disk.
    UnwrittenExtents { path: PathBuf, percent: f64 },
    /// The file system refused O_DIRECT, so the figure went through the page cache.
    DirectUnsupported { path: PathBuf },
    /// tmpfs and ramfs are memory: their figures say nothing about a disk.
    MemoryFileSystem { path: PathBuf },
    /// io_uring was refused and the psync engine ran instead.
    EngineFallback { reason: String },
    /// `gen --fill none`: the file is allocated but never written.
    UnfilledFile { path: PathBuf },
    /// `gen --fill zero`: zeros compress and dedup on SSH, NAS and some SSDs.
    ZeroFilled { path: PathBuf },
    /// Part of a file was still in the page cache when a buffered read began.
    Cached { path: PathBuf, percent: f64 },
    /// The peer is this machine: the figure is memory and CPU, not a network.
    Loopback,
    /// The far disk's baseline over SSH is `dd` writing zeros, which a compressing or
    /// deduplicating filesystem stores for free.
    ZeroBaseline { host: String },
    /// Datagrams from other senders reached the test's UDP port.
    ForeignDatagrams { count: u64 },
    /// UDP round trips whose echo never came: not in the latency figures.
    LostRoundTrips { lost: u64, rounds: u64 },
    /// UDP datagrams larger than the path MTU carries in one packet: sent as IP fragments.
    FragmentedDatagrams {
        len: usize,
        mtu: u32,
        largest: usize,
    },
    /// `run`'s copy on the far host could not be removed at the end.
    RemoteCopyLeft {
        host: String,
        path: String,
        reason: String,
    },
    /// Stopped by Ctrl-C or SIGTERM before its end: the figures cover only the time it ran.
    Interrupted {
        /// Seconds the figures cover (round trips: how many were timed).
        counted_secs: f64,
        /// Seconds asked for (0 when a count was asked for instead).
        asked_secs: f64,
    },
}

impl Warning {
    /// The file it is about, for the warnings that name one.
    pub fn path_mut(&mut self) -> Option<&mut PathBuf> {
        match self {
            Warning::UnwrittenExtents { path, .. }
            | Warning::DirectUnsupported { path }
            | Warning::MemoryFileSystem { path }
            | Warning::UnfilledFile { path }
            | Warning::ZeroFilled { path }
            | Warning::Cached { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// Keeps the first of each repeated warning, in order: a run meets the same one many times.
pub fn dedup(warnings: &mut Vec<Warning>) {
    let mut seen: Vec<Warning> = Vec::new();
    warnings.retain(|w| {
        let first = !seen.contains(w);
        if first {
            seen.push(w.clone());
        }
        first
    });
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::UnwrittenExtents { path, percent } => write!(
                f,
                "{} has {percent:.0}% unwritten extents: reads return zeros without disk I/O; \
                 run `xferbench gen` with --fill random",
                path.display()
            ),
            Warning::DirectUnsupported { path } => write!(
                f,
                "{} does not support O_DIRECT: measured through the page cache, with fsync and a cache drop \
                 (fadvise DONTNEED) before reading",
                path.display()
            ),
            Warning::MemoryFileSystem { path } => write!(
                f,
                "{} is on tmpfs (memory): these figures are memory speed, not a disk's; point at a disk-backed directory",
                path.display()
            ),
            Warning::EngineFallback { reason } => f.write_str(reason),
            Warning::UnfilledFile { path } => write!(
                f,
                "{} is allocated but never written: reads of it return zeros without touching the disk; \
                 use --fill random for a file that measures the disk",
                path.display()
            ),
            Warning::ZeroFilled { path } => write!(
                f,
                "{} is all zeros: SSH compression, NAS dedup and some SSDs shrink zeros, inflating figures; \
                 use --fill random",
                path.display()
            ),
            Warning::Cached { path, percent } => write!(
                f,
                "{percent:.0}% of {} was in the page cache before the read: part of the read rate is memory speed; \
                 use --direct",
                path.display()
            ),
            Warning::Loopback => f.write_str(
                "the server is on this machine (loopback): the figure is memory and CPU speed, not a network's; \
                 run `xferbench serve` on the far host",
            ),
            Warning::ZeroBaseline { host } => write!(
                f,
                "the write baseline of {host}'s disk is dd writing zeros (oflag=direct, conv=fsync): on a \
                 compressing or deduplicating filesystem (ZFS with compression, many NAS) it shows more \
                 than the disk can do; run `xferbench serve` there for a random-data baseline"
            ),
            Warning::ForeignDatagrams { count } => write!(
                f,
                "{count} datagrams from other senders reached the test's UDP port: ignored, not in the figures"
            ),
            Warning::LostRoundTrips { lost, rounds } => write!(
                f,
                "{lost} of {rounds} UDP round trips got no echo within 1 s: they are not in the latency figures"
            ),
            Warning::FragmentedDatagrams { len, mtu, largest } => write!(
                f,
                "{len}-byte datagrams are larger than the {largest} bytes the path MTU ({mtu}) carries in one \
                 packet, so they went as IP fragments, and one lost fragment loses the whole datagram; give \
                 {largest} bytes or fewer (net: leave -l out) to measure without fragments"
            ),
            Warning::RemoteCopyLeft { host, path, reason } => write!(
                f,
                "the run's copy {path} on {host} could not be removed ({reason}): remove it by hand to free its space"
            ),
            Warning::Interrupted {
                counted_secs,
                asked_secs,
            } => {
                write!(f, "interrupted after {counted_secs:.2} s")?;
                if *asked_secs > 0.0 {
                    write!(f, " of the {asked_secs} s asked")?;
                }
                f.write_str(": the figures above cover only the time the test ran")
            }
        }
    }
}
