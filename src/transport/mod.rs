//! Transfer paths: how bytes cross the network. One small trait, one file per path.
//!
//! A path runs the two measurements every report needs: memory to memory (the network alone)
//! and a real copy (disk to network to disk). It moves and counts bytes and never prints; the
//! data plane shared by every stream-based path lives in `memory` and `pipeline`.

pub mod address;
#[cfg(test)]
pub mod fake;
pub mod local;
pub mod memory;
pub mod pipeline;
pub mod rdma;
pub mod ssh;
pub mod tcp;
pub mod tree;
pub mod udp;

use anyhow::Result;
use serde::{Deserialize, Serialize};

pub use crate::measure::{Direction, Rounds, TransportKind};
pub use address::{Location, Peer};

use crate::control::Client;
use crate::control::client::Server;
use crate::measure::{CpuUse, Interval, Latency, Measurement, Watcher};
use crate::warning::Warning;

/// The client of path `kind` to `peer`: the one place a path's name becomes its transport.
/// `token` is serve's (tcp, rdma, udp); `login` is how SSH logs in; `rdma` picks the device.
pub fn open(
    kind: TransportKind,
    peer: Peer,
    token: Option<String>,
    login: &ssh::login::LoginOptions,
    rdma: rdma::RdmaOptions,
) -> Result<Box<dyn Transport>> {
    Ok(match kind {
        TransportKind::Tcp => Box::new(tcp::Tcp::new(peer, token)?),
        TransportKind::Ssh => Box::new(ssh::Ssh::new(&peer, login)?),
        TransportKind::Rdma => Box::new(rdma::Rdma::new(peer, token, rdma)?),
        TransportKind::Udp => Box::new(udp::Udp::new(peer, token)?),
        TransportKind::Local => {
            anyhow::bail!("a local copy has no peer: it runs through local::copy")
        }
    })
}

/// The control-protocol client of `serve` at `peer` (on serve's port unless it names one),
/// for the paths that go through serve; its clones share one runtime.
pub fn serve_client(mut peer: Peer, token: Option<String>) -> Result<Client> {
    peer.without_user("tcp")?;
    peer.port = Some(peer.serve_port());
    let server = Server {
        name: peer.to_string(),
        host: peer.host.clone(),
        authority: peer.authority(),
    };
    Client::new(server, token)
}

/// A peer on this machine measures memory and CPU, not a network: say so.
pub fn loopback_warning(peer: std::net::SocketAddr) -> Option<Warning> {
    let loopback = match peer.ip() {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
        ip => ip.is_loopback(),
    };
    loopback.then_some(Warning::Loopback)
}

/// One transfer path to one peer.
pub trait Transport {
    fn kind(&self) -> TransportKind;
    /// Memory to memory: the network alone, like iperf3.
    fn mem_to_mem(&self, plan: &NetPlan, watcher: &dyn Watcher) -> Result<NetReport>;
    /// A real copy: read from one disk, sent, written and fsynced on the other.
    fn copy(&self, plan: &CopyPlan, watcher: &dyn Watcher) -> Result<CopyReport>;
    /// Round trips, like qperf's tcp_lat and ib_write_lat: one way is half a round trip.
    fn latency(&self, plan: &LatPlan) -> Result<LatReport>;
    /// `copy -r`: a directory tree between this machine and the server. Paths that carry no
    /// trees refuse with the paths that do.
    fn copy_tree(
        &self,
        _plan: &tree::TreePlan,
        _watcher: &dyn Watcher,
    ) -> Result<tree::TreeReport> {
        anyhow::bail!(
            "copy -r over {}: trees go over --via tcp (to serve) or --via ssh; this path carries one file at a time",
            self.kind()
        )
    }
}

/// What a latency test does.
#[derive(Debug, Clone)]
pub struct LatPlan {
    /// Bytes per message, each way.
    pub size: usize,
    /// How many timed round trips (after [`rdma::LATENCY_WARMUP`] untimed ones).
    pub rounds: Rounds,
}

/// The result of `xferbench lat`.
#[derive(Debug, Clone, Serialize)]
pub struct LatReport {
    pub server: String,
    pub path: TransportKind,
    pub size: usize,
    pub latency: Latency,
    pub cpu: CpuBoth,
    pub warnings: Vec<Warning>,
}

/// Which directions a memory-to-memory test runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directions {
    Upload,
    Download,
    /// Both at once (`--bidir`).
    Both,
}

impl Directions {
    pub fn uploads(self) -> bool {
        self != Directions::Download
    }

    pub fn downloads(self) -> bool {
        self != Directions::Upload
    }
}

/// Bytes per write of `net` over a stream path, like iperf3's 128 KiB.
pub const DEFAULT_NET_LEN: usize = 128 << 10;

/// What a memory-to-memory test does.
#[derive(Debug, Clone)]
pub struct NetPlan {
    /// Parallel streams in each direction.
    pub streams: usize,
    /// Counted seconds.
    pub secs: f64,
    /// Seconds at the start not counted.
    pub omit_secs: f64,
    /// Seconds between interval reports.
    pub interval_secs: f64,
    /// Bytes per write; for UDP bytes per datagram, 0 for the largest that fits the path MTU.
    pub len: usize,
    /// Socket buffer size to ask for.
    pub window: Option<usize>,
    pub directions: Directions,
    /// RDMA WRITEs kept in flight (`-Q`, the RDMA path only).
    pub queue_depth: usize,
    /// Bytes per second the UDP sender holds to (`-b`); None: as fast as it can (`--max`).
    pub rate: Option<f64>,
    /// TCP: send with sendfile(2) from an in-memory file (`-Z`, iperf3's zero-copy).
    pub zerocopy: bool,
}

/// The figures of one stream in one direction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamReport {
    /// 1-based, as printed.
    pub id: usize,
    pub sender_bytes: u64,
    pub receiver_bytes: u64,
    /// Retransmitted segments (TCP_INFO of the sender's socket).
    pub retransmits: Option<u64>,
    /// As counted on this (the client's) side.
    pub intervals: Vec<Interval>,
}

/// The figures of one direction of a memory-to-memory test.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirectionReport {
    pub direction: Direction,
    /// What the sender wrote, over the sending time.
    pub sender: Measurement,
    /// What the receiver read, over the receiving time: the figure to trust.
    pub receiver: Measurement,
    pub retransmits: Option<u64>,
    pub streams: Vec<StreamReport>,
    /// Sent, lost, late, duplicated datagrams and jitter (the UDP path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datagrams: Option<udp::Datagrams>,
}

/// CPU use on both ends.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct CpuBoth {
    pub local: CpuUse,
    /// None: the far side does not report it (a stock SSH server).
    pub remote: Option<CpuUse>,
}

/// The result of `xferbench net`.
#[derive(Debug, Clone, Serialize)]
pub struct NetReport {
    pub server: String,
    pub path: TransportKind,
    pub streams: usize,
    pub secs: f64,
    pub omit_secs: f64,
    pub len: usize,
    pub window: Option<usize>,
    pub directions: Vec<DirectionReport>,
    pub cpu: CpuBoth,
    /// Write latency (the RDMA path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
    pub warnings: Vec<Warning>,
}

/// What a copy does.
#[derive(Debug, Clone)]
pub struct CopyPlan {
    pub source: Location,
    pub destination: Location,
    pub streams: usize,
    /// Bytes per chunk on the wire and per disk I/O.
    pub chunk: usize,
    /// Disk I/Os in flight on each side.
    pub iodepth: usize,
    pub verify: bool,
    /// Replace an existing destination file.
    pub force: bool,
    /// Keep the temporary file of a copy that fails, and take up one left before: its prefix is
    /// checked against the source's (a digest on both sides) and only the rest is sent.
    pub resume: bool,
}

/// How a `--resume` copy took up the temporary file a copy left.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resumed {
    /// Bytes the temporary file held when the copy began.
    pub found: u64,
    /// Bytes of it held to the source's (the length less the last `--iodepth` chunks, which a
    /// killed copy may have left with holes, cut to whole chunks).
    pub checked: u64,
    /// The checked prefix matched the source's: the copy went on from its end. Else the copy
    /// started over.
    pub matched: bool,
    /// The digest both prefixes were held to.
    pub algorithm: String,
    /// How long the check took (both prefixes read and digested).
    pub secs: f64,
}

impl Resumed {
    /// Where the copy went on from.
    pub fn from(&self) -> u64 {
        if self.matched { self.checked } else { 0 }
    }
}

/// Bytes of a `found`-byte temporary file worth checking for `--resume`: whole chunks, less the
/// last `depth` (a killed copy with `depth` writes in flight may have left holes there), never
/// past `size`.
pub fn resumable_prefix(found: u64, size: u64, chunk: usize, depth: usize) -> u64 {
    let chunk = chunk as u64;
    let trusted = found.min(size).saturating_sub(chunk * depth as u64);
    trusted / chunk * chunk
}

impl CopyPlan {
    /// How the file is cut and carried, checked.
    pub fn chunks(&self) -> Result<pipeline::ChunkPlan> {
        let chunks = pipeline::ChunkPlan {
            chunk: self.chunk,
            depth: self.iodepth,
            verify: self.verify,
        };
        chunks.validate()?;
        Ok(chunks)
    }

    /// The file system of this side's file: the source's, or the destination's (which may not
    /// exist yet: its directory's).
    pub fn local_mount(&self) -> Option<crate::mounts::MountFacts> {
        [&self.source, &self.destination]
            .into_iter()
            .find_map(|location| match location {
                Location::Local(path) => Some(crate::mounts::facts(path)),
                Location::Remote { .. } => None,
            })
    }
}

/// Where the time of a copy went. The stages overlap, so each is the time that stage was busy;
/// the stage busy for nearly the whole copy is the one holding it back.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct TimeSplit {
    /// Seconds the source disk had a read in flight (None: not measurable there, e.g. a
    /// stock SSH server's disk).
    pub reading_secs: Option<f64>,
    /// Seconds at least one stream was sending a chunk (waiting on the network included).
    /// None: the far side sent (a stock SSH server), and did not say.
    pub sending_secs: Option<f64>,
    /// Seconds the destination disk had a write in flight (None: not measurable there).
    pub writing_secs: Option<f64>,
    /// Seconds of the final fsync on the destination.
    pub fsync_secs: f64,
}

impl TimeSplit {
    /// An upload to serve: this side read and sent, serve wrote and fsynced.
    pub fn uploaded(sent: &pipeline::CopySent, done: &crate::control::CopyDone) -> TimeSplit {
        TimeSplit {
            reading_secs: Some(sent.reading.as_secs_f64()),
            sending_secs: Some(sent.sending.as_secs_f64()),
            writing_secs: Some(done.disk_busy_secs),
            fsync_secs: done.fsync_secs,
        }
    }

    /// A download from serve: serve read and sent, this side wrote and fsynced.
    pub fn downloaded(
        received: &pipeline::CopyReceived,
        fsync: std::time::Duration,
        done: &crate::control::CopyDone,
    ) -> TimeSplit {
        TimeSplit {
            reading_secs: Some(done.disk_busy_secs),
            sending_secs: Some(done.stream_busy_secs),
            writing_secs: Some(received.writing.as_secs_f64()),
            fsync_secs: fsync.as_secs_f64(),
        }
    }
}

/// Both digests of a verified copy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verification {
    pub algorithm: String,
    pub source: String,
    pub destination: String,
    pub matched: bool,
    /// A local copy's re-read of the landed file (the network paths digest what arrives).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reread: Option<local::Reread>,
    /// A stock SSH server's re-read of the landed file by its own tool (`sha256sum`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub far_reread: Option<FarReread>,
}

/// The far side's re-read of a landed file over SSH, timed apart from the copy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FarReread {
    /// The command that read it: `sha256sum` or `b2sum`, one per range with `-P N`.
    pub tool: String,
    pub secs: f64,
    pub bytes_per_sec: f64,
}

/// The result of `xferbench copy`.
#[derive(Debug, Clone, Serialize)]
pub struct CopyReport {
    pub source: String,
    pub destination: String,
    pub path: TransportKind,
    pub measurement: Measurement,
    pub split: TimeSplit,
    pub verify: Option<Verification>,
    /// With `--resume`: how the copy took up what an earlier one left (None: nothing was left).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed: Option<Resumed>,
    pub cpu: CpuBoth,
    pub warnings: Vec<Warning>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumable_prefix_is_whole_chunks_less_the_ones_in_flight_and_never_past_the_file() {
        const MIB: u64 = 1 << 20;
        // 12.5 MiB found, 4 chunks of 1 MiB in flight: 8 MiB trusted.
        assert_eq!(
            resumable_prefix(12 * MIB + MIB / 2, 20 * MIB, 1 << 20, 4),
            8 * MIB
        );
        assert_eq!(resumable_prefix(3 * MIB, 20 * MIB, 1 << 20, 4), 0);
        // A partial longer than the source (it changed since): held to the source's size.
        assert_eq!(resumable_prefix(30 * MIB, 20 * MIB, 1 << 20, 4), 16 * MIB);
        assert_eq!(resumable_prefix(0, 0, 1 << 20, 1), 0);
    }
}
