//! `xferbench run`: what is measured, in which order, and the result every exporter reads.
//!
//! Test file (and a tree of small files) → source read and destination write baselines → round
//! trips and memory to memory for each path → disk to disk for each path (verified), then the
//! small files → the verdict. Paths this build or peer cannot do are listed as skipped with the
//! reason, never dropped.

mod embedded;
#[cfg(test)]
pub(crate) mod fake;
mod steps;
mod test_tree;
mod to_dir;
pub mod verdict;

pub use steps::run;

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde::Serialize;

use crate::disk::{EngineChoice, Pattern};
use crate::file;
use crate::interrupt::Interrupted;
use crate::measure::{CpuUse, Latency, Measurement};
use crate::transport::rdma::RdmaOptions;
use crate::transport::ssh::login::LoginOptions;
use crate::transport::tree::FsyncPolicy;
use crate::transport::{Peer, TransportKind};
use crate::units::Rate;
use crate::warning::Warning;
use verdict::Verdict;

/// The paths `--via` may name, known to the design; the ones this build lacks are skipped.
pub const PATH_NAMES: [&str; 4] = ["tcp", "ssh", "rdma", "udp"];

/// Bytes per message of each path's latency test: `lat`'s default.
pub const LATENCY_SIZE: usize = 8;
/// Timed round trips of each path's latency test (`lat`'s default), once per path whatever
/// `--repeat`: the figure is a distribution already.
pub const LATENCY_ROUND_TRIPS: u32 = 1000;

/// Min, median, max and standard deviation of repeated figures of one stage (`--repeat`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub min_bytes_per_sec: f64,
    pub median_bytes_per_sec: f64,
    pub max_bytes_per_sec: f64,
    pub stddev_bytes_per_sec: f64,
    /// Every run, in order, with its conditions and intervals.
    pub measurements: Vec<Measurement>,
}

impl Summary {
    /// None for no measurements.
    pub fn of(measurements: Vec<Measurement>) -> Option<Summary> {
        if measurements.is_empty() {
            return None;
        }
        let mut rates: Vec<f64> = measurements.iter().map(|m| m.bytes_per_sec).collect();
        rates.sort_by(f64::total_cmp);
        let n = rates.len();
        let median = if n % 2 == 1 {
            rates[n / 2]
        } else {
            (rates[n / 2 - 1] + rates[n / 2]) / 2.0
        };
        let mean = rates.iter().sum::<f64>() / n as f64;
        let variance = if n > 1 {
            rates.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        Some(Summary {
            min_bytes_per_sec: rates[0],
            median_bytes_per_sec: median,
            max_bytes_per_sec: rates[n - 1],
            stddev_bytes_per_sec: variance.sqrt(),
            measurements,
        })
    }

    /// Why one of its runs is not the figure it claims to be, if one is not.
    pub fn suspect(&self) -> Option<&str> {
        self.measurements
            .iter()
            .find_map(|measurement| measurement.suspect.as_deref())
    }

    /// The relative spread of its runs, (max − min) ÷ median: 0 for one run.
    pub fn spread(&self) -> f64 {
        if self.median_bytes_per_sec > 0.0 {
            (self.max_bytes_per_sec - self.min_bytes_per_sec) / self.median_bytes_per_sec
        } else {
            0.0
        }
    }

    /// The figure the verdict uses: the median.
    pub fn rate(&self) -> Rate {
        Rate {
            bytes_per_sec: self.median_bytes_per_sec,
        }
    }
}

/// What `run` was asked to do.
#[derive(Debug, Clone, Serialize)]
pub struct Parameters {
    /// `HOST:PORT`, or "embedded" for the in-process server on loopback; with `--to`, the
    /// directory.
    pub server: String,
    /// `--to`: the directory copies go to (on a mounted share, or another local disk).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// `--net`: the `serve` on the NAS that measured the network and the NAS's own disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net: Option<String>,
    pub paths: Vec<String>,
    pub size: u64,
    pub streams: usize,
    pub net_secs: f64,
    pub repeat: usize,
    pub block_size: u64,
    pub iodepth: usize,
    /// Bytes per message of each path's latency test, each way.
    pub latency_size: usize,
    /// Timed round trips of each path's latency test.
    pub latency_round_trips: u32,
    /// Files of the small-files step (`--files`); 0: not run.
    pub files: u64,
    /// Bytes of each of them (`--file-size`).
    pub file_size: u64,
}

/// A path copying the run's tree of small files: its figures, once per path whatever
/// `--repeat` (a thousand files are many samples already).
#[derive(Debug, Clone, Serialize)]
pub struct SmallFiles {
    /// The bytes of the files over the time from the first file to the last fsync.
    pub measurement: Measurement,
    /// Files that landed.
    pub files: u64,
    /// Bytes of each.
    pub file_size: u64,
    pub files_per_sec: f64,
    /// When the files were made durable: each before its rename, as the big copy is.
    pub fsync: FsyncPolicy,
}

impl SmallFiles {
    pub fn rate(&self) -> Rate {
        self.measurement.rate()
    }
}

/// One transfer path's figures and verdict.
#[derive(Debug, Clone, Serialize)]
pub struct PathResult {
    pub path: TransportKind,
    /// Round trips of [`LATENCY_SIZE`]-byte messages; one way = half the round trip.
    pub latency: Option<Latency>,
    /// Why `latency` is missing; the path's other figures stand without it.
    pub latency_failed: Option<String>,
    /// Memory to memory (the receiver's figure of the upload).
    pub network: Option<Summary>,
    /// Disk to disk, verified.
    pub copy: Option<Summary>,
    /// CPU use of the client and the server during the last copy.
    pub copy_cpu: Vec<CpuUse>,
    /// The tree of small files copied after the big file (`--files`).
    pub small_files: Option<SmallFiles>,
    /// Why `small_files` is missing (the path carries no trees, a file failed); the path's
    /// other figures and verdict stand without it.
    pub small_files_failed: Option<String>,
    pub verdict: Option<Verdict>,
    /// The verdict as a sentence, figures placed against the classes; or why the path failed.
    pub sentence: String,
    /// The stage this path failed in and why; the figures measured before it stand, the
    /// stages after it were not run, and there is no verdict.
    pub failed: Option<PathFailure>,
}

/// A step of one path in `run` (its round trips, memory to memory, its copy); where a path
/// failed, named as the report names it (`stage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PathStep {
    /// Only when interrupted: a latency failure alone is `latency_failed`.
    Latency,
    /// Memory to memory.
    Network,
    /// Disk to disk.
    Copy,
    /// Only when interrupted: any other failure is `small_files_failed`.
    SmallFiles,
}

impl PathStep {
    /// The name the JSON and CSV give the step (`stage`).
    pub fn name(self) -> &'static str {
        match self {
            PathStep::Latency => "latency",
            PathStep::Network => "network",
            PathStep::Copy => "copy",
            PathStep::SmallFiles => "small_files",
        }
    }

    /// The step in words.
    pub fn describe(self) -> &'static str {
        match self {
            PathStep::Latency => "round trips",
            PathStep::Network => "memory to memory",
            PathStep::Copy => "disk to disk",
            PathStep::SmallFiles => "small files",
        }
    }
}

impl std::fmt::Display for PathStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where and why one path's measurements stopped.
#[derive(Debug, Clone, Serialize)]
pub struct PathFailure {
    /// `stage` in the JSON report.
    #[serde(rename = "stage")]
    pub step: PathStep,
    pub reason: String,
    /// Ctrl-C, not the path, stopped it.
    #[serde(skip)]
    pub interrupted: bool,
}

impl PathFailure {
    fn new(step: PathStep, err: &anyhow::Error) -> PathFailure {
        PathFailure {
            step,
            reason: format!("{err:#}"),
            interrupted: err.chain().any(|cause| cause.is::<Interrupted>()),
        }
    }
}

/// A path that was not measured, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

/// The result of `xferbench run`: the one object every exporter renders.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub parameters: Parameters,
    /// The test file read on this side.
    pub test_file: String,
    /// Whether an existing, fully written test file was reused.
    pub test_file_reused: bool,
    /// The tree of small files (`--files`), beside the test file; None with `--files 0`.
    pub test_tree: Option<String>,
    /// Whether an existing tree of the same files was reused.
    pub test_tree_reused: bool,
    pub source_read: Option<Summary>,
    pub destination_write: Option<Summary>,
    /// With `--to`: the directory's disk or share reading the write back cold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_read: Option<Summary>,
    /// With `--to` and `--net`: the NAS's own disk writing, as the `serve` there measured it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nas_disk: Option<Summary>,
    /// The negotiated speed of the interface towards the server or NAS, where the system
    /// says (a veth's or a loopback's is unknown): a network figure is held to it, and a
    /// share's unmeasured network stands at it.
    pub link: Option<crate::ceiling::Ceiling>,
    /// When one disk serves both ends: it reading the test file and writing a copy at once.
    pub shared_disk: Option<Summary>,
    pub paths: Vec<PathResult>,
    pub skipped: Vec<Skipped>,
    pub warnings: Vec<Warning>,
    /// Ctrl-C stopped the run: the paths after the one interrupted were not measured.
    pub interrupted: bool,
}

impl RunReport {
    /// The paths that failed, each with its failure.
    pub fn failures(&self) -> impl Iterator<Item = (TransportKind, &PathFailure)> {
        self.paths
            .iter()
            .filter_map(|path| path.failed.as_ref().map(|failed| (path.path, failed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::{Conditions, Workload};
    use std::time::Duration;

    fn measured(mb_per_sec: f64) -> Measurement {
        Measurement::new(
            Workload::Copy,
            (mb_per_sec * 1e6) as u64,
            Duration::from_secs(1),
            Conditions::default(),
            Vec::new(),
        )
    }

    #[test]
    fn a_summary_gives_min_median_max_and_sample_stddev() {
        let summary = Summary::of(vec![measured(300.0), measured(100.0), measured(200.0)]).unwrap();
        assert_eq!(summary.min_bytes_per_sec, 100e6);
        assert_eq!(summary.median_bytes_per_sec, 200e6);
        assert_eq!(summary.max_bytes_per_sec, 300e6);
        assert!((summary.stddev_bytes_per_sec - 100e6).abs() < 1.0);
        assert_eq!(summary.measurements.len(), 3);
        assert!(Summary::of(Vec::new()).is_none());
        let even = Summary::of(vec![measured(100.0), measured(200.0)]).unwrap();
        assert_eq!(even.median_bytes_per_sec, 150e6);
    }
}

/// What `xferbench run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `HOST[:PORT]` of a running `serve`; None starts one inside this process on loopback.
    pub host: Option<String>,
    /// Copy to this directory (a mounted share, or another local disk) instead of a server.
    pub to: Option<PathBuf>,
    /// With `to` on a share: `HOST[:PORT]` of a `serve` on the NAS, for the network's figure
    /// and the NAS's own disk.
    pub net: Option<String>,
    pub token: Option<String>,
    /// Names from `--via`, in order.
    pub paths: Vec<String>,
    /// Where the test file lives (and, with the embedded server, the destination root).
    pub dir: PathBuf,
    pub size: u64,
    pub streams: usize,
    pub net_secs: f64,
    pub repeat: usize,
    pub pattern: Pattern,
    /// How `--via ssh` logs in.
    pub ssh: LoginOptions,
    /// Where `--via ssh` writes on the far side (scp-like: relative to the login's home).
    pub remote_dir: String,
    /// Which RDMA device and GID `--via rdma` uses (and the server inside this process).
    pub rdma: RdmaOptions,
    /// The disk engine of the test file and the source read (`Null` in tests of the layers
    /// above the disk).
    pub engine: EngineChoice,
    /// Files of the small-files step; 0 turns it off.
    pub files: u64,
    /// Bytes of each of them.
    pub file_size: u64,
}

/// Where a run keeps its test file, so the next run can reuse it.
pub fn test_file_path(dir: &Path, size: u64) -> PathBuf {
    dir.join(format!(".xferbench-run-{size}.data"))
}

/// Where a run keeps its tree of small files, so the next run can reuse it.
pub fn test_tree_path(dir: &Path, files: u64, file_size: u64) -> PathBuf {
    dir.join(format!(".xferbench-run-files-{files}x{file_size}"))
}

/// Name of the copy on the server, inside its root (removed at the end of the run).
pub const REMOTE_COPY: &str = ".xferbench-run-copy.data";

/// Name of the copy of the tree of small files on the server (removed at the end of the run).
pub const REMOTE_TREE: &str = ".xferbench-run-tree";

/// The negotiated speed of the interface towards `peer`, where sysfs knows it.
fn peer_ceiling(peer: &Peer) -> Option<crate::ceiling::Ceiling> {
    use std::net::ToSocketAddrs;
    let address = (
        peer.host.as_str(),
        peer.port.unwrap_or(crate::control::DEFAULT_PORT),
    )
        .to_socket_addrs()
        .ok()?
        .next()?;
    crate::ceiling::towards(address.ip())
}

/// Where a path's copy lands on the far side: in serve's root, or (SSH) in `--remote-dir`.
fn remote_copy_path(kind: TransportKind, remote_dir: &str) -> String {
    match (kind, remote_dir) {
        (TransportKind::Ssh, "")
        | (
            TransportKind::Tcp | TransportKind::Rdma | TransportKind::Udp | TransportKind::Local,
            _,
        ) => REMOTE_COPY.to_string(),
        (TransportKind::Ssh, dir) => format!("{}/{REMOTE_COPY}", dir.trim_end_matches('/')),
    }
}

/// Where a path's copy of the tree of small files lands: in serve's root, or (SSH) in
/// `--remote-dir`.
fn remote_tree_path(kind: TransportKind, remote_dir: &str) -> String {
    match (kind, remote_dir) {
        (TransportKind::Ssh, dir) if !dir.is_empty() => {
            format!("{}/{REMOTE_TREE}", dir.trim_end_matches('/'))
        }
        _ => REMOTE_TREE.to_string(),
    }
}

/// The paths to run and the ones skipped with the reason; an unknown name is an error.
fn choose_paths(names: &[String]) -> Result<(Vec<TransportKind>, Vec<Skipped>)> {
    let mut wanted = Vec::new();
    let mut skipped = Vec::new();
    for name in names {
        match name.as_str() {
            "tcp" => wanted.push(TransportKind::Tcp),
            "ssh" => wanted.push(TransportKind::Ssh),
            "rdma" if cfg!(feature = "rdma") => wanted.push(TransportKind::Rdma),
            "udp" => wanted.push(TransportKind::Udp),
            "rdma" => skipped.push(Skipped {
                path: "rdma".into(),
                reason: crate::transport::rdma::NOT_BUILT.into(),
            }),
            unknown => bail!(
                "--via {unknown}: unknown path; give a comma-separated list of {}",
                PATH_NAMES.join(", ")
            ),
        }
    }
    if wanted.is_empty() {
        match skipped.first() {
            Some(skip) => bail!("--via {}: {}", skip.path, skip.reason),
            None => bail!("--via names no path: give e.g. --via tcp"),
        }
    }
    Ok((wanted, skipped))
}

/// A test file can be reused when it has the size asked for and every byte is written.
fn reusable(path: &Path, size: u64) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() || meta.len() != size {
        return false;
    }
    let Ok(handle) = std::fs::File::open(path) else {
        return false;
    };
    file::unwritten_warning(&handle, path).is_none()
}
