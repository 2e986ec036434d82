//! `run` as its steps: set up the server and the paths; the test file; the baselines (and the
//! shared disk reading and writing at once); for each path its latency, memory to memory, copy
//! and verdict; then the copies removed and the report made. Each step's heading is made in
//! [`Step`], and a step that fails for one path is kept in that path's row.

use std::fmt;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};

use super::embedded::Embedded;
use super::verdict::{self, Figures, Sentence};
use super::{
    FailedStage, LATENCY_ROUND_TRIPS, LATENCY_SIZE, Parameters, PathFailure, PathResult,
    REMOTE_COPY, RunOptions, RunReport, Skipped, Summary, choose_paths, peer_ceiling,
    remote_copy_path, reusable, test_file_path,
};
use crate::disk::{self, BaselineOptions, EngineChoice, FillMode, GenOptions, Passes};
use crate::file;
use crate::interrupt::Interrupted;
use crate::measure::{Stage as MeasuredStage, Watcher};
use crate::transport::rdma::Rdma;
use crate::transport::ssh::Ssh;
use crate::transport::tcp::Tcp;
use crate::transport::udp::Udp;
use crate::transport::{
    CopyPlan, Directions, LatPlan, Location, NetPlan, Peer, Rounds, Transport, TransportKind,
    serve_client,
};
use crate::warning::Warning;

/// A step of `run`, as its heading on stderr says it.
enum Step {
    TestFile,
    Baselines,
    SharedDisk,
    Network {
        kind: TransportKind,
        index: usize,
        count: usize,
    },
    Copy {
        kind: TransportKind,
        verified: bool,
    },
    Verdict,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::TestFile => f.write_str("1/5 test file"),
            Step::Baselines => {
                f.write_str("2/5 disk baselines: source read here, destination write on the server")
            }
            Step::SharedDisk => {
                f.write_str("2/5 the one disk both ends share, reading and writing at once")
            }
            Step::Network { kind, index, count } => write!(
                f,
                "3/5 round trips and memory to memory over {kind} ({}/{count})",
                index + 1
            ),
            Step::Copy { kind, verified } => write!(
                f,
                "4/5 disk to disk over {kind}{}",
                if *verified { ", verified" } else { "" }
            ),
            Step::Verdict => f.write_str("5/5 verdict"),
        }
    }
}

fn announce(watcher: &dyn Watcher, step: Step) {
    watcher.heading(&step.to_string());
}

/// Runs everything, step by step, and judges each path.
pub fn run(options: &RunOptions, watcher: &dyn Watcher) -> Result<RunReport> {
    check(options)?;
    let mut setup = Setup::start(options)?;
    let test_file = make_test_file(options, watcher, &mut setup.warnings)?;
    let baselines = measure_baselines(options, &mut setup, &test_file, watcher)?;
    let mut paths = Vec::new();
    let count = setup.wanted.len();
    for (index, kind) in setup.wanted.clone().into_iter().enumerate() {
        let result = measure_path(
            options, &mut setup, &baselines, &test_file, kind, index, count, watcher,
        );
        let interrupted = result.failed.as_ref().is_some_and(|f| f.interrupted);
        paths.push(result);
        if interrupted {
            break;
        }
    }
    remove_copies(options, &mut setup, &paths);
    Ok(finish(options, setup, test_file, baselines, paths, watcher))
}

/// What the options ask that cannot be run, said before anything is measured.
fn check(options: &RunOptions) -> Result<()> {
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
    Ok(())
}

/// The server and a transport for each path to run.
struct Setup {
    wanted: Vec<TransportKind>,
    skipped: Vec<Skipped>,
    /// serve's address (the SSH server's may differ).
    peer: Peer,
    /// `HOST:PORT`, or "embedded".
    server_name: String,
    tcp: Option<Tcp>,
    ssh: Option<Ssh>,
    rdma: Option<Rdma>,
    udp: Option<Udp>,
    /// The embedded server's root: where the shared disk's write half lands.
    embedded_dir: Option<PathBuf>,
    warnings: Vec<Warning>,
    // Kept alive for the run: the embedded servers and their root.
    _embedded: Option<(tempfile::TempDir, Embedded)>,
}

impl Setup {
    /// The server: the one given, or one in this process whose root is a directory beside the
    /// test file (on one machine, the destination disk is this disk); then the transports.
    fn start(options: &RunOptions) -> Result<Setup> {
        let (mut wanted, mut skipped) = choose_paths(&options.paths)?;
        let wants = |kind| wanted.contains(&kind);
        let (wants_tcp, wants_ssh, wants_rdma, wants_udp) = (
            wants(TransportKind::Tcp),
            wants(TransportKind::Ssh),
            wants(TransportKind::Rdma),
            wants(TransportKind::Udp),
        );
        let mut embedded = None;
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
                let root = tempfile::Builder::new()
                    .prefix(".xferbench-run-")
                    .tempdir_in(&options.dir)
                    .with_context(|| {
                        format!("creating a destination root in {}", options.dir.display())
                    })?;
                let servers = Embedded::start(root.path(), wants_ssh, &options.ssh, &options.rdma)?;
                let found = (
                    servers.tcp_peer(),
                    servers.ssh_peer(),
                    servers.login.clone(),
                    "embedded".to_string(),
                );
                embedded = Some((root, servers));
                found
            }
        };
        let ssh = match wants_ssh {
            true => Some(Ssh::new(&ssh_peer, &ssh_login)?),
            false => None,
        };
        // One client of serve, shared by tcp, rdma and udp: a run holds one network runtime.
        let client = match wants_tcp || wants_rdma || wants_udp || options.host.is_none() {
            true => Some(serve_client(peer.clone(), options.token.clone())?),
            false => None,
        };
        let shared = || client.clone().expect("made for tcp, rdma and udp");
        // A machine without an RDMA device still measures the other paths; the reason is shown.
        let rdma = match wants_rdma {
            true => match Rdma::with_client(shared(), options.rdma.clone()) {
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
        let udp = match wants_udp {
            true => Some(Udp::with_client(shared())),
            false => None,
        };
        // serve takes the far disk's baseline for the TCP, RDMA and UDP paths, and without HOST.
        let tcp = match wants_tcp || wants_rdma || wants_udp || options.host.is_none() {
            true => Some(Tcp::with_client(shared())),
            false => None,
        };
        Ok(Setup {
            wanted,
            skipped,
            peer,
            server_name,
            tcp,
            ssh,
            rdma,
            udp,
            embedded_dir: embedded.as_ref().map(|(root, _)| root.path().to_path_buf()),
            warnings: Vec::new(),
            _embedded: embedded,
        })
    }

    fn transport(&self, kind: TransportKind) -> &dyn Transport {
        match kind {
            TransportKind::Tcp => self.tcp.as_ref().expect("made for tcp"),
            TransportKind::Rdma => self.rdma.as_ref().expect("made for rdma"),
            TransportKind::Udp => self.udp.as_ref().expect("made for udp"),
            TransportKind::Ssh => self.ssh.as_ref().expect("made for ssh"),
        }
    }
}

/// The random test file, made unless a fully written one of the size is there. Returns its
/// path and whether it was reused.
fn make_test_file(
    options: &RunOptions,
    watcher: &dyn Watcher,
    warnings: &mut Vec<Warning>,
) -> Result<(PathBuf, bool)> {
    announce(watcher, Step::TestFile);
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
    Ok((test_file, reused))
}

/// The disks' figures every path's verdict shares.
struct Baselines {
    source_read: Option<Summary>,
    destination_write: Option<Summary>,
    /// One disk serves both ends.
    shared: bool,
    /// That disk reading and writing at once.
    shared_read_write: Option<Summary>,
}

/// The source disk's read here and the destination disk's write on the server; when one disk
/// serves both ends (the embedded server, or a far serve whose root is on this machine's same
/// file system), that disk reading and writing at once, as the copy uses it.
fn measure_baselines(
    options: &RunOptions,
    setup: &mut Setup,
    (test_file, _): &(PathBuf, bool),
    watcher: &dyn Watcher,
) -> Result<Baselines> {
    announce(watcher, Step::Baselines);
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
        setup.warnings.extend(read.warnings);
        reads.extend(read.measurements.into_iter().map(|p| p.measurement));
        match (&setup.tcp, &setup.ssh) {
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
                setup.warnings.extend(said);
                writes.push(write);
            }
            (None, None) => unreachable!("a run has at least one path"),
        }
    }
    let write_dir = match &setup.embedded_dir {
        Some(root) => Some(root.clone()),
        None => far_device
            .filter(|far| file::device_id(&options.dir).as_ref() == Some(far))
            .map(|_| options.dir.clone()),
    };
    let mut read_writes = Vec::new();
    if let Some(write_dir) = &write_dir {
        announce(watcher, Step::SharedDisk);
        for _ in 0..options.repeat {
            read_writes.push(
                disk::read_while_writing(
                    test_file,
                    write_dir,
                    options.size,
                    options.pattern,
                    watcher,
                )
                .context("the shared disk reading and writing at once")?,
            );
        }
    }
    Ok(Baselines {
        source_read: Summary::of(reads),
        destination_write: Summary::of(writes),
        shared: write_dir.is_some(),
        shared_read_write: Summary::of(read_writes),
    })
}

/// One path: its latency, memory to memory and verified copy, then its verdict. A step that
/// fails keeps what the path measured before it and shows why; Ctrl-C ends it the same way.
#[allow(clippy::too_many_arguments)]
fn measure_path(
    options: &RunOptions,
    setup: &mut Setup,
    baselines: &Baselines,
    (test_file, _): &(PathBuf, bool),
    kind: TransportKind,
    index: usize,
    count: usize,
    watcher: &dyn Watcher,
) -> PathResult {
    let transport = setup.transport(kind);
    let mut warnings = Vec::new();
    announce(watcher, Step::Network { kind, index, count });
    // A path whose round trips fail still has its rates and verdict; the reason is shown.
    let lat_plan = LatPlan {
        size: LATENCY_SIZE,
        rounds: Rounds::Count(LATENCY_ROUND_TRIPS),
    };
    let mut failed = None;
    let (latency, latency_failed) = match transport.latency(&lat_plan) {
        Ok(report) => {
            warnings.extend(report.warnings);
            (Some(report.latency), None)
        }
        Err(err) if err.chain().any(|cause| cause.is::<Interrupted>()) => {
            failed = Some(PathFailure::new(FailedStage::Latency, &err));
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
                failed = Some(PathFailure::new(FailedStage::Network, &err));
                break;
            }
        }
    }
    // UDP does not deliver every datagram: no file goes over it. Only serve computes a digest
    // on the far side.
    let copies_files = kind != TransportKind::Udp && failed.is_none();
    let verify = kind != TransportKind::Ssh;
    if copies_files {
        announce(
            watcher,
            Step::Copy {
                kind,
                verified: verify,
            },
        );
    }
    let copy_plan = CopyPlan {
        source: Location::Local(test_file.clone()),
        destination: Location::Remote {
            peer: setup.peer.clone(),
            path: remote_copy_path(kind, &options.remote_dir),
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
                failed = Some(PathFailure::new(FailedStage::Copy, &err));
                break;
            }
        }
    }
    // A network figure cannot beat the interface it left through, nor can a copy over it.
    let link = peer_ceiling(&setup.peer);
    for measurement in nets.iter_mut().chain(copies.iter_mut()) {
        measurement.hold_to(
            link.as_ref(),
            "it did not all cross that interface (the peer is on this machine?)",
        );
    }
    setup.warnings.extend(warnings);
    let (network, copy) = (Summary::of(nets), Summary::of(copies));
    let (verdict, sentence) = judge(kind, baselines, &network, &copy, &copy_cpu, &failed);
    PathResult {
        path: kind,
        latency,
        latency_failed,
        network,
        copy,
        copy_cpu,
        verdict,
        sentence,
        failed,
    }
}

/// A path's verdict and its sentence: none for a path that failed (its figures are incomplete,
/// and judging them would name the wrong stage).
fn judge(
    kind: TransportKind,
    baselines: &Baselines,
    network: &Option<Summary>,
    copy: &Option<Summary>,
    copy_cpu: &[crate::measure::CpuUse],
    failed: &Option<PathFailure>,
) -> (Option<verdict::Verdict>, String) {
    let stages = [
        ("the source read", &baselines.source_read),
        ("the network", network),
        ("the destination write", &baselines.destination_write),
        ("the shared disk", &baselines.shared_read_write),
        ("the copy", copy),
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
        source_read: baselines.source_read.as_ref().map(Summary::rate),
        network: network.as_ref().map(Summary::rate),
        destination_write: baselines.destination_write.as_ref().map(Summary::rate),
        copy: copy.as_ref().map(Summary::rate),
        cpu: copy_cpu.to_vec(),
        shared_disk: baselines.shared,
        shared_disk_read_write: baselines.shared_read_write.as_ref().map(Summary::rate),
        suspect,
        spread,
    };
    let verdict = match failed {
        None => verdict::judge(kind, &figures),
        Some(_) => None,
    };
    let sentence = match (failed, &verdict) {
        (Some(failure), _) => format!(
            "{kind}: failed in {}: {} (its other figures below stand; no verdict)",
            failure.stage.describe(),
            failure.reason
        ),
        (None, Some(verdict)) => Sentence {
            verdict,
            figures: &figures,
        }
        .to_string(),
        (None, None) => format!("{kind}: nothing measured"),
    };
    (verdict, sentence)
}

/// The copies served their purpose: a far disk is not left holding a test-file-sized file.
fn remove_copies(options: &RunOptions, setup: &mut Setup, paths: &[PathResult]) {
    for result in paths {
        if result.copy.is_none()
            && result
                .failed
                .as_ref()
                .is_none_or(|f| f.stage != FailedStage::Copy)
        {
            continue;
        }
        let (removed, path) = match result.path {
            TransportKind::Ssh => {
                let path = remote_copy_path(result.path, &options.remote_dir);
                (setup.ssh.as_ref().map(|ssh| ssh.remove_remote(&path)), path)
            }
            _ => (
                setup
                    .tcp
                    .as_ref()
                    .map(|tcp| tcp.remove_remote(REMOTE_COPY).map(drop)),
                REMOTE_COPY.to_string(),
            ),
        };
        if let Some(Err(err)) = removed {
            setup.warnings.push(Warning::RemoteCopyLeft {
                host: setup.server_name.clone(),
                path,
                reason: format!("{err:#}"),
            });
        }
    }
}

/// The report: what was asked, every figure, every path's verdict, what was skipped.
fn finish(
    options: &RunOptions,
    mut setup: Setup,
    (test_file, reused): (PathBuf, bool),
    baselines: Baselines,
    paths: Vec<PathResult>,
    watcher: &dyn Watcher,
) -> RunReport {
    let interrupted = paths
        .last()
        .and_then(|path| path.failed.as_ref())
        .is_some_and(|failed| failed.interrupted);
    if !interrupted {
        announce(watcher, Step::Verdict);
    }
    crate::warning::dedup(&mut setup.warnings);
    RunReport {
        parameters: Parameters {
            server: setup.server_name.clone(),
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
        source_read: baselines.source_read,
        destination_write: baselines.destination_write,
        shared_disk: baselines.shared_read_write,
        paths,
        skipped: std::mem::take(&mut setup.skipped),
        warnings: std::mem::take(&mut setup.warnings),
        interrupted,
    }
}
