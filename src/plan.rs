//! `xferbench run`: what is measured, in which order, and the result every exporter reads.
//!
//! Test file → source read and destination write baselines → round trips and memory to memory
//! for each path → disk to disk for each path (verified) → the verdict. Paths this build or peer
//! cannot do are listed as skipped with the reason, never dropped.

pub mod verdict;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;

use crate::disk::{self, BaselineOptions, EngineChoice, Passes, Pattern};
use crate::disk::{FillMode, GenOptions};
use crate::file;
use crate::interrupt::Interrupted;
use crate::measure::{CpuUse, Latency, Measurement, Stage as MeasuredStage, Watcher};
use crate::serve;
use crate::transport::rdma::{Rdma, RdmaOptions};
use crate::transport::ssh::Ssh;
use crate::transport::ssh::login::LoginOptions;
use crate::transport::tcp::Tcp;
use crate::transport::udp::Udp;
use crate::transport::{
    CopyPlan, Directions, LatPlan, Location, NetPlan, Peer, Rounds, Transport, TransportKind,
};
use crate::units::Rate;
use crate::warning::Warning;
use verdict::{Figures, Sentence, Verdict};

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
    /// `HOST:PORT`, or "embedded" for the in-process server on loopback.
    pub server: String,
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
    pub verdict: Option<Verdict>,
    /// The verdict as a sentence, figures placed against the classes; or why the path failed.
    pub sentence: String,
    /// The stage this path failed in and why; the figures measured before it stand, the
    /// stages after it were not run, and there is no verdict.
    pub failed: Option<PathFailure>,
}

/// Where and why one path's measurements stopped.
#[derive(Debug, Clone, Serialize)]
pub struct PathFailure {
    /// `latency` (only when interrupted: a latency failure alone is `latency_failed`), `network`
    /// (memory to memory) or `copy` (disk to disk), as in the stages of the report.
    pub stage: &'static str,
    pub reason: String,
    /// Ctrl-C, not the path, stopped it.
    #[serde(skip)]
    pub interrupted: bool,
}

impl PathFailure {
    fn new(stage: &'static str, err: &anyhow::Error) -> PathFailure {
        PathFailure {
            stage,
            reason: format!("{err:#}"),
            interrupted: err.chain().any(|cause| cause.is::<Interrupted>()),
        }
    }

    fn describe(&self) -> &'static str {
        match self.stage {
            "latency" => "round trips",
            "network" => "memory to memory",
            _ => "disk to disk",
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
    pub source_read: Option<Summary>,
    pub destination_write: Option<Summary>,
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
    use crate::measure::{Conditions, Stage};
    use std::time::Duration;

    fn measured(mb_per_sec: f64) -> Measurement {
        Measurement::new(
            Stage::Copy,
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
}

/// Where a run keeps its test file, so the next run can reuse it.
pub fn test_file_path(dir: &Path, size: u64) -> PathBuf {
    dir.join(format!(".xferbench-run-{size}.data"))
}

/// Name of the copy on the server, inside its root (removed at the end of the run).
pub const REMOTE_COPY: &str = ".xferbench-run-copy.data";

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
        | (TransportKind::Tcp | TransportKind::Rdma | TransportKind::Udp, _) => {
            REMOTE_COPY.to_string()
        }
        (TransportKind::Ssh, dir) => format!("{}/{REMOTE_COPY}", dir.trim_end_matches('/')),
    }
}

/// Runs everything, stage by stage, and judges each path.
pub fn run(options: &RunOptions, watcher: &dyn Watcher) -> Result<RunReport> {
    let (mut wanted, mut skipped) = choose_paths(&options.paths)?;
    options.pattern.validate(true)?;
    if options.size < options.pattern.block as u64 {
        bail!(
            "--size {} is smaller than one block (--bs {}): give a larger --size",
            options.size,
            options.pattern.block
        );
    }
    if options.repeat == 0 {
        bail!("--repeat 0: give at least 1");
    }
    let meta = std::fs::metadata(&options.dir)
        .map_err(|err| anyhow!(file::describe_path_error(&options.dir, err)))?;
    if !meta.is_dir() {
        bail!("--dir {} is not a directory", options.dir.display());
    }
    let mut warnings = Vec::new();

    // The server: the one given, or one in this process whose root is a directory beside the
    // test file (on one machine, the destination disk is this disk).
    let wants_tcp = wanted.contains(&TransportKind::Tcp);
    let wants_ssh = wanted.contains(&TransportKind::Ssh);
    let wants_rdma = wanted.contains(&TransportKind::Rdma);
    let wants_udp = wanted.contains(&TransportKind::Udp);
    let embedded_root;
    // The embedded server's root: where the shared disk's write half lands.
    let mut embedded_dir: Option<PathBuf> = None;
    let embedded;
    let (peer, ssh_peer, ssh_login, server_name) = match &options.host {
        Some(host) => {
            let peer = Peer::parse(host)?;
            // With both paths, a HOST:PORT's port is serve's; SSH then uses 22 or ~/.ssh/config.
            let ssh_peer = match wants_tcp {
                true => Peer {
                    port: None,
                    ..peer.clone()
                },
                false => peer.clone(),
            };
            (peer, ssh_peer, options.ssh.clone(), host.clone())
        }
        None => {
            embedded_root = tempfile::Builder::new()
                .prefix(".xferbench-run-")
                .tempdir_in(&options.dir)
                .with_context(|| {
                    format!("creating a destination root in {}", options.dir.display())
                })?;
            embedded =
                Embedded::start(embedded_root.path(), wants_ssh, &options.ssh, &options.rdma)?;
            embedded_dir = Some(embedded_root.path().to_path_buf());
            (
                embedded.tcp_peer(),
                embedded.ssh_peer(),
                embedded.login.clone(),
                "embedded".to_string(),
            )
        }
    };
    let ssh = match wants_ssh {
        true => Some(Ssh::new(&ssh_peer, &ssh_login)?),
        false => None,
    };
    // A machine without an RDMA device still measures the other paths; the reason is shown.
    let rdma = match wants_rdma {
        true => match Rdma::new(peer.clone(), options.token.clone(), options.rdma.clone()) {
            Ok(rdma) => Some(rdma),
            Err(err) if wanted.len() > 1 => {
                wanted.retain(|kind| *kind != TransportKind::Rdma);
                skipped.push(Skipped {
                    path: "rdma".into(),
                    reason: format!("{err:#}"),
                });
                None
            }
            Err(err) => return Err(err),
        },
        false => None,
    };
    // serve takes the far disk's baseline for the TCP and RDMA paths, and for any path without HOST.
    let udp = match wants_udp {
        true => Some(Udp::new(peer.clone(), options.token.clone())?),
        false => None,
    };
    let tcp = match wants_tcp || wants_rdma || wants_udp || options.host.is_none() {
        true => Some(Tcp::new(peer.clone(), options.token.clone())?),
        false => None,
    };

    watcher.heading("1/5 test file");
    let test_file = test_file_path(&options.dir, options.size);
    let reused = reusable(&test_file, options.size);
    if !reused {
        let made = disk::generate(
            &GenOptions {
                path: test_file.clone(),
                size: options.size,
                fill: FillMode::Random,
                force: true,
                pattern: options.pattern,
                engine: EngineChoice::Auto,
            },
            watcher,
        )?;
        warnings.extend(made.warnings);
    }

    watcher.heading("2/5 disk baselines: source read here, destination write on the server");
    let mut reads = Vec::new();
    let mut writes = Vec::new();
    let mut far_device = None;
    for _ in 0..options.repeat {
        let read = disk::baseline(
            &BaselineOptions {
                path: test_file.clone(),
                size: None,
                pattern: options.pattern,
                direct: true,
                evict: true,
                engine: EngineChoice::Auto,
                passes: Passes::ReadOnly,
            },
            watcher,
        )?;
        warnings.extend(read.warnings);
        reads.extend(read.measurements.into_iter().map(|p| p.measurement));
        match (&tcp, &ssh) {
            (Some(tcp), _) => {
                let far = tcp
                    .remote_baseline(options.size, options.pattern)
                    .context("the server's disk baseline")?;
                far_device = far.device.clone();
                writes.extend(
                    far.measurements
                        .into_iter()
                        .filter(|m| m.stage == MeasuredStage::DiskWrite),
                );
            }
            (None, Some(ssh)) => {
                let (write, said) = ssh
                    .remote_baseline(options.size, &options.remote_dir)
                    .context("the far disk's baseline over SSH")?;
                warnings.extend(said);
                writes.push(write);
            }
            (None, None) => unreachable!("a run has at least one path"),
        }
    }
    let source_read = Summary::of(reads);
    let destination_write = Summary::of(writes);
    // One disk serving both ends is measured reading and writing at once, as the copy uses it:
    // the embedded server's root sits beside the test file, and a far serve may say its root
    // is on this machine's same file system.
    let shared_disk = match &embedded_dir {
        Some(root) => Some(root.clone()),
        None => far_device
            .filter(|far| file::device_id(&options.dir).as_ref() == Some(far))
            .map(|_| options.dir.clone()),
    };
    let mut read_writes = Vec::new();
    if let Some(write_dir) = &shared_disk {
        watcher.heading("2/5 the one disk both ends share, reading and writing at once");
        for _ in 0..options.repeat {
            read_writes.push(
                disk::read_while_writing(
                    &test_file,
                    write_dir,
                    options.size,
                    options.pattern,
                    watcher,
                )
                .context("the shared disk reading and writing at once")?,
            );
        }
    }
    let shared_disk_read_write = Summary::of(read_writes);

    let mut paths = Vec::new();
    let mut interrupted = false;
    for (index, kind) in wanted.iter().enumerate() {
        let transport: &dyn Transport = match kind {
            TransportKind::Tcp => tcp.as_ref().expect("made for tcp"),
            TransportKind::Rdma => rdma.as_ref().expect("made for rdma"),
            TransportKind::Udp => udp.as_ref().expect("made for udp"),
            TransportKind::Ssh => ssh.as_ref().expect("made for ssh"),
        };
        let remote_copy = remote_copy_path(*kind, &options.remote_dir);
        // Only serve computes a digest on the far side.
        let verify = *kind != TransportKind::Ssh;
        watcher.heading(&format!(
            "3/5 round trips and memory to memory over {kind} ({}/{})",
            index + 1,
            wanted.len()
        ));
        // A path whose round trips fail still has its rates and verdict; the reason is shown.
        let lat_plan = LatPlan {
            size: LATENCY_SIZE,
            rounds: Rounds::Count(LATENCY_ROUND_TRIPS),
        };
        // A path that fails keeps what it measured and shows why; the other paths still run.
        let mut failed = None;
        let (latency, latency_failed) = match transport.latency(&lat_plan) {
            Ok(report) => {
                warnings.extend(report.warnings);
                (Some(report.latency), None)
            }
            Err(err) if err.chain().any(|cause| cause.is::<Interrupted>()) => {
                failed = Some(PathFailure::new("latency", &err));
                (None, None)
            }
            Err(err) => (None, Some(format!("{err:#}"))),
        };
        let net_plan = NetPlan {
            // RDMA runs one queue pair; its depth gives the parallelism.
            streams: match kind {
                TransportKind::Rdma | TransportKind::Udp => 1,
                _ => options.streams,
            },
            secs: options.net_secs,
            omit_secs: 0.0,
            interval_secs: 1.0,
            // UDP: the largest datagram that fits the path MTU, sent as fast as it goes.
            len: match kind {
                TransportKind::Udp => 0,
                _ => 128 << 10,
            },
            window: None,
            directions: Directions::Upload,
            queue_depth: 128,
            rate: None,
        };
        let mut nets = Vec::new();
        let net_runs = if failed.is_none() { options.repeat } else { 0 };
        for _ in 0..net_runs {
            match transport.mem_to_mem(&net_plan, watcher) {
                Ok(report) => {
                    warnings.extend(report.warnings);
                    nets.extend(report.directions.into_iter().map(|d| d.receiver));
                }
                Err(err) => {
                    failed = Some(PathFailure::new("network", &err));
                    break;
                }
            }
        }
        // UDP does not deliver every datagram: no file goes over it.
        let copies_files = *kind != TransportKind::Udp && failed.is_none();
        if copies_files {
            watcher.heading(&format!(
                "4/5 disk to disk over {kind}{}",
                if verify { ", verified" } else { "" }
            ));
        }
        let copy_plan = CopyPlan {
            source: Location::Local(test_file.clone()),
            destination: Location::Remote {
                peer: peer.clone(),
                path: remote_copy,
            },
            streams: options.streams,
            chunk: options.pattern.block,
            iodepth: options.pattern.depth,
            verify,
            force: true,
        };
        let mut copies = Vec::new();
        let mut copy_cpu = Vec::new();
        let copy_runs = if copies_files { options.repeat } else { 0 };
        for _ in 0..copy_runs {
            match transport.copy(&copy_plan, watcher) {
                Ok(report) => {
                    warnings.extend(report.warnings);
                    copy_cpu = std::iter::once(report.cpu.local)
                        .chain(report.cpu.remote)
                        .collect();
                    copies.push(report.measurement);
                }
                Err(err) => {
                    failed = Some(PathFailure::new("copy", &err));
                    break;
                }
            }
        }
        // A network figure cannot beat the interface it left through, nor can a copy over it.
        let link = peer_ceiling(&peer);
        for measurement in nets.iter_mut().chain(copies.iter_mut()) {
            measurement.hold_to(
                link.as_ref(),
                "it did not all cross that interface (the peer is on this machine?)",
            );
        }
        let network = Summary::of(nets);
        let copy = Summary::of(copies);
        let stages = [
            ("the source read", &source_read),
            ("the network", &network),
            ("the destination write", &destination_write),
            ("the shared disk", &shared_disk_read_write),
            ("the copy", &copy),
        ];
        let suspect = stages
            .iter()
            .filter_map(|(name, summary)| {
                let reason = summary.as_ref()?.suspect()?;
                Some(format!("{name}: {reason}"))
            })
            .collect();
        // With repeats, their spread is the noise a copy and its bound are compared within.
        let spread = stages
            .iter()
            .filter_map(|(_, summary)| summary.as_ref().map(Summary::spread))
            .fold(0.0, f64::max);
        let figures = Figures {
            source_read: source_read.as_ref().map(Summary::rate),
            network: network.as_ref().map(Summary::rate),
            destination_write: destination_write.as_ref().map(Summary::rate),
            copy: copy.as_ref().map(Summary::rate),
            cpu: copy_cpu.clone(),
            shared_disk: shared_disk.is_some(),
            shared_disk_read_write: shared_disk_read_write.as_ref().map(Summary::rate),
            suspect,
            spread,
        };
        // A failed path's figures are incomplete: judging them would name the wrong stage.
        let verdict = match failed {
            None => verdict::judge(*kind, &figures),
            Some(_) => None,
        };
        let sentence = match (&failed, &verdict) {
            (Some(failure), _) => format!(
                "{kind}: failed in {}: {} (its other figures below stand; no verdict)",
                failure.describe(),
                failure.reason
            ),
            (None, Some(verdict)) => Sentence {
                verdict,
                figures: &figures,
            }
            .to_string(),
            (None, None) => format!("{kind}: nothing measured"),
        };
        paths.push(PathResult {
            path: *kind,
            latency,
            latency_failed,
            network,
            copy,
            copy_cpu,
            verdict,
            sentence,
            failed,
        });
        if paths
            .last()
            .and_then(|path: &PathResult| path.failed.as_ref())
            .is_some_and(|failed| failed.interrupted)
        {
            interrupted = true;
            break;
        }
    }
    // The copies served their purpose: a far disk is not left holding a test-file-sized file.
    for result in &paths {
        if result.copy.is_none() && result.failed.as_ref().is_none_or(|f| f.stage != "copy") {
            continue;
        }
        let (removed, path) = match result.path {
            TransportKind::Ssh => {
                let path = remote_copy_path(result.path, &options.remote_dir);
                (ssh.as_ref().map(|ssh| ssh.remove_remote(&path)), path)
            }
            _ => (
                tcp.as_ref()
                    .map(|tcp| tcp.remove_remote(REMOTE_COPY).map(drop)),
                REMOTE_COPY.to_string(),
            ),
        };
        if let Some(Err(err)) = removed {
            warnings.push(Warning::RemoteCopyLeft {
                host: server_name.clone(),
                path,
                reason: format!("{err:#}"),
            });
        }
    }
    if !interrupted {
        watcher.heading("5/5 verdict");
    }
    crate::warning::dedup(&mut warnings);
    Ok(RunReport {
        parameters: Parameters {
            server: server_name,
            paths: options.paths.clone(),
            size: options.size,
            streams: options.streams,
            net_secs: options.net_secs,
            repeat: options.repeat,
            block_size: options.pattern.block as u64,
            iodepth: options.pattern.depth,
            latency_size: LATENCY_SIZE,
            latency_round_trips: LATENCY_ROUND_TRIPS,
        },
        test_file: test_file.display().to_string(),
        test_file_reused: reused,
        source_read,
        destination_write,
        shared_disk: shared_disk_read_write,
        paths,
        skipped,
        warnings,
        interrupted,
    })
}

/// The servers of a run without HOST, inside this process on loopback: TCP always, SSH for
/// `--via ssh`, logged into with a key made for the run.
struct Embedded {
    tcp: std::net::SocketAddr,
    ssh: Option<std::net::SocketAddr>,
    login: LoginOptions,
    /// The run's key, authorized_keys and known_hosts; removed at the end.
    _keys: Option<tempfile::TempDir>,
    _tcp: Option<serve::Embedded>,
    _ssh: Option<serve::ssh::EmbeddedSsh>,
}

impl Embedded {
    fn start(
        root: &Path,
        with_ssh: bool,
        login: &LoginOptions,
        rdma: &RdmaOptions,
    ) -> Result<Embedded> {
        if !with_ssh {
            let tcp = serve::Embedded::start(root.to_path_buf(), rdma.clone())?;
            return Ok(Embedded {
                tcp: tcp.addr,
                ssh: None,
                login: login.clone(),
                _keys: None,
                _tcp: Some(tcp),
                _ssh: None,
            });
        }
        let keys = tempfile::tempdir().context("a directory for the run's SSH key")?;
        let key =
            russh::keys::PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519)
                .map_err(|err| anyhow!("making an SSH key for the run: {err}"))?;
        let (identity, authorized_keys, known_hosts) = (
            keys.path().join("id_ed25519"),
            keys.path().join("authorized_keys"),
            keys.path().join("known_hosts"),
        );
        let private = key
            .to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .map_err(|err| anyhow!("writing the run's SSH key: {err}"))?;
        std::fs::write(&identity, private.as_bytes())?;
        let public = key
            .public_key()
            .to_openssh()
            .map_err(|err| anyhow!("writing the run's SSH key: {err}"))?;
        std::fs::write(&authorized_keys, format!("{public}\n"))?;
        let ssh = serve::ssh::EmbeddedSsh::start(root.to_path_buf(), &authorized_keys, None)?;
        std::fs::write(&known_hosts, format!("{}\n", ssh.known_hosts_line()))?;
        Ok(Embedded {
            tcp: ssh.tcp_addr,
            ssh: Some(ssh.addr),
            login: LoginOptions {
                cipher: login.cipher.clone(),
                identities: vec![identity],
                config: Some(PathBuf::from("/dev/null")),
                known_hosts: Some(known_hosts),
                accept_new_host_key: false,
            },
            _keys: Some(keys),
            _tcp: None,
            _ssh: Some(ssh),
        })
    }

    fn tcp_peer(&self) -> Peer {
        Peer {
            user: None,
            host: self.tcp.ip().to_string(),
            port: Some(self.tcp.port()),
        }
    }

    fn ssh_peer(&self) -> Peer {
        let addr = self.ssh.unwrap_or(self.tcp);
        Peer {
            user: None,
            host: addr.ip().to_string(),
            port: Some(addr.port()),
        }
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
