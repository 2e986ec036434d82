//! `run` as its steps: set up the server and the paths; the test file; the baselines (and the
//! shared disk reading and writing at once); for each path its latency, memory to memory, copy
//! and verdict; then the copies removed and the report made. Each step's heading is made in
//! [`Step`], and a step that fails for one path is kept in that path's row.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use super::embedded::EmbeddedServers;
use super::verdict::{self, Figures, Sentence};
use super::{
    LATENCY_ROUND_TRIPS, LATENCY_SIZE, Parameters, PathFailure, PathResult, PathStep, REMOTE_COPY,
    RunOptions, RunReport, Skipped, Summary, choose_paths, peer_ceiling, remote_copy_path,
    reusable, test_file_path,
};
use crate::disk::{self, BaselineOptions, FillMode, GenOptions, Passes};
use crate::file;
use crate::interrupt::Interrupted;
use crate::measure::{Measurement, Watcher, Workload};
use crate::transport::rdma::Rdma;
use crate::transport::ssh::Ssh;
use crate::transport::tcp::Tcp;
use crate::transport::udp::Udp;
use crate::transport::{
    CopyPlan, Directions, LatPlan, Location, NetPlan, Peer, Rounds, Transport, TransportKind,
    serve_client,
};
use crate::units::Rate;
use crate::warning::Warning;

/// A step of `run`, as its heading on stderr says it.
enum Step {
    TestFile,
    /// What is measured, in the far side's words.
    Baselines(String),
    SharedDisk,
    Network {
        /// Over which path, or to what, in the far side's words.
        words: String,
        index: usize,
        count: usize,
    },
    /// The network of a path nothing measures, and why.
    NoNetwork(String),
    Copy {
        /// Over which path, or to where, in the far side's words.
        words: String,
        verified: bool,
    },
    Verdict,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::TestFile => f.write_str("1/5 test file"),
            Step::Baselines(words) => write!(f, "2/5 disk baselines: {words}"),
            Step::SharedDisk => {
                f.write_str("2/5 the one disk both ends share, reading and writing at once")
            }
            Step::Network {
                words,
                index,
                count,
            } => write!(
                f,
                "3/5 round trips and memory to memory {words} ({}/{count})",
                index + 1
            ),
            Step::NoNetwork(why) => write!(f, "3/5 network: {why}"),
            Step::Copy { words, verified } => write!(
                f,
                "4/5 disk to disk {words}{}",
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
    if let Some(to) = &options.to {
        let (dir, paths) = super::to_dir::DirFar::start(options, to)?;
        return run_against(options, &dir, paths, watcher);
    }
    let (servers, paths) = Servers::start(options)?;
    run_against(options, &servers, paths, watcher)
}

/// The steps of a run against `far`, for the paths chosen: what [`run`] does once its
/// servers are up, and what tests drive with a fake far side.
pub(crate) fn run_against(
    options: &RunOptions,
    far: &dyn Far,
    paths: Paths,
    watcher: &dyn Watcher,
) -> Result<RunReport> {
    let mut run = Run {
        options,
        far,
        watcher,
        warnings: Vec::new(),
    };
    let test_file = run.make_test_file()?;
    let baselines = run.measure_baselines(&test_file)?;
    let mut results = Vec::new();
    let count = paths.wanted.len();
    for (index, &kind) in paths.wanted.iter().enumerate() {
        let result = run.measure_path(&baselines, &test_file, kind, index, count);
        let interrupted = result.failed.as_ref().is_some_and(|f| f.interrupted);
        results.push(result);
        if interrupted {
            break;
        }
    }
    run.remove_copies(&results);
    Ok(run.finish(paths.skipped, test_file, baselines, results))
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

/// The paths a run measures, in order, and the ones it cannot, with the reason.
pub(crate) struct Paths {
    pub(crate) wanted: Vec<TransportKind>,
    pub(crate) skipped: Vec<Skipped>,
}

/// The far disk writing a file of the run's size, as its server measured it.
pub(crate) struct FarWrite {
    pub(crate) measurements: Vec<Measurement>,
    /// The far disk reading it back cold, where that is measured (a directory given to --to).
    pub(crate) reads: Vec<Measurement>,
    /// A NAS's own disk writing, measured by a `serve` on it (`--to` with `--net`).
    pub(crate) nas_disk: Vec<Measurement>,
    pub(crate) warnings: Vec<Warning>,
    /// The device of the server's root, when it says: the same as this disk's means one
    /// disk serves both ends.
    pub(crate) device: Option<file::DeviceId>,
}

/// The far side of a run: a transport for each path, its disk's write figure, and removing
/// what the run left there. [`Servers`] is the real one; tests give a fake.
pub(crate) trait Far {
    /// `HOST:PORT`, "embedded", or the directory given to `--to`.
    fn name(&self) -> String;
    /// Where path `kind`'s copy lands.
    fn copy_destination(&self, kind: TransportKind, options: &RunOptions) -> Location;
    /// The transport of a path the run wants (every wanted path has one).
    fn transport(&self, kind: TransportKind) -> &dyn Transport;
    /// What measures path `kind`'s network (its round trips and memory to memory), or why
    /// nothing does.
    fn network(&self, kind: TransportKind) -> Result<&dyn Transport, String> {
        Ok(self.transport(kind))
    }
    /// The far disk's write baseline.
    fn disk_write(&self, options: &RunOptions, watcher: &dyn Watcher) -> Result<FarWrite>;
    /// Removes the copy path `kind` left on the far side.
    fn remove_copy(&self, kind: TransportKind, options: &RunOptions) -> Result<()>;
    /// Where copies land when that is on this machine (the embedded server's root, the
    /// directory given to `--to`): on the test file's disk, that disk serves both ends.
    fn landing_here(&self) -> Option<&Path>;
    /// What the interface towards the server or NAS can carry, where the system says.
    fn link_ceiling(&self) -> Option<crate::ceiling::Ceiling>;
    /// Where copies land, which decides the stages a verdict weighs.
    fn destination(&self) -> verdict::Destination {
        verdict::Destination::Server
    }
    /// What step 2 measures, in words.
    fn baselines_words(&self) -> String {
        "source read here, destination write on the server".into()
    }
    /// What step 3 measures path `kind` over, in words.
    fn network_words(&self, kind: TransportKind) -> String {
        format!("over {kind}")
    }
    /// Where step 4 copies path `kind`, in words.
    fn copy_words(&self, kind: TransportKind) -> String {
        format!("over {kind}")
    }
}

/// The real far side: `serve` (given, or embedded in this process) and a transport for each
/// path to run.
struct Servers {
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
    // Kept alive for the run: the embedded servers and their root.
    _embedded: Option<(tempfile::TempDir, EmbeddedServers)>,
}

impl Servers {
    /// The server: the one given, or one in this process whose root is a directory beside the
    /// test file (on one machine, the destination disk is this disk); then the transports.
    fn start(options: &RunOptions) -> Result<(Servers, Paths)> {
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
                let servers =
                    EmbeddedServers::start(root.path(), wants_ssh, &options.ssh, &options.rdma)?;
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
        let servers = Servers {
            peer,
            server_name,
            tcp,
            ssh,
            rdma,
            udp,
            embedded_dir: embedded.as_ref().map(|(root, _)| root.path().to_path_buf()),
            _embedded: embedded,
        };
        Ok((servers, Paths { wanted, skipped }))
    }
}

impl Far for Servers {
    fn name(&self) -> String {
        self.server_name.clone()
    }

    fn copy_destination(&self, kind: TransportKind, options: &RunOptions) -> Location {
        Location::Remote {
            peer: self.peer.clone(),
            path: remote_copy_path(kind, &options.remote_dir),
        }
    }

    fn transport(&self, kind: TransportKind) -> &dyn Transport {
        match kind {
            TransportKind::Tcp => self.tcp.as_ref().expect("made for tcp"),
            TransportKind::Rdma => self.rdma.as_ref().expect("made for rdma"),
            TransportKind::Udp => self.udp.as_ref().expect("made for udp"),
            TransportKind::Ssh => self.ssh.as_ref().expect("made for ssh"),
            TransportKind::Local => unreachable!("run offers no local path"),
        }
    }

    /// serve measures its own disk (write then read, O_DIRECT) for the TCP, RDMA and UDP
    /// paths and the embedded server; over SSH alone, a file is written there and timed.
    fn disk_write(&self, options: &RunOptions, _: &dyn Watcher) -> Result<FarWrite> {
        match (&self.tcp, &self.ssh) {
            (Some(tcp), _) => {
                let far = tcp
                    .remote_baseline(options.size, options.pattern)
                    .context("the server's disk baseline")?;
                Ok(FarWrite {
                    measurements: far
                        .measurements
                        .into_iter()
                        .filter(|m| m.workload == Workload::DiskWrite)
                        .collect(),
                    reads: Vec::new(),
                    nas_disk: Vec::new(),
                    warnings: Vec::new(),
                    device: far.device,
                })
            }
            (None, Some(ssh)) => {
                let (write, said) = ssh
                    .remote_baseline(options.size, &options.remote_dir)
                    .context("the far disk's baseline over SSH")?;
                Ok(FarWrite {
                    measurements: vec![write],
                    reads: Vec::new(),
                    nas_disk: Vec::new(),
                    warnings: said,
                    device: None,
                })
            }
            (None, None) => unreachable!("a run has at least one path"),
        }
    }

    fn remove_copy(&self, kind: TransportKind, options: &RunOptions) -> Result<()> {
        match (kind, &self.ssh, &self.tcp) {
            (TransportKind::Ssh, Some(ssh), _) => {
                ssh.remove_remote(&remote_copy_path(kind, &options.remote_dir))
            }
            (_, _, Some(tcp)) => tcp.remove_remote(REMOTE_COPY).map(drop),
            _ => Ok(()),
        }
    }

    fn landing_here(&self) -> Option<&Path> {
        self.embedded_dir.as_deref()
    }

    fn link_ceiling(&self) -> Option<crate::ceiling::Ceiling> {
        peer_ceiling(&self.peer)
    }
}

/// One run's state between its steps: what it measures against, and the warnings so far.
struct Run<'a> {
    options: &'a RunOptions,
    far: &'a dyn Far,
    watcher: &'a dyn Watcher,
    warnings: Vec<Warning>,
}

impl Run<'_> {
    /// The random test file, made unless a fully written one of the size is there. Returns
    /// its path and whether it was reused.
    fn make_test_file(&mut self) -> Result<(PathBuf, bool)> {
        let options = self.options;
        announce(self.watcher, Step::TestFile);
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
                    engine: options.engine,
                },
                self.watcher,
            )?;
            self.warnings.extend(made.warnings);
        }
        Ok((test_file, reused))
    }

    /// The source disk's read here and the destination disk's write on the server; when one
    /// disk serves both ends (the embedded server, or a far serve whose root is on this
    /// machine's same file system), that disk reading and writing at once, as the copy uses it.
    fn measure_baselines(&mut self, (test_file, _): &(PathBuf, bool)) -> Result<Baselines> {
        let (options, watcher) = (self.options, self.watcher);
        announce(watcher, Step::Baselines(self.far.baselines_words()));
        let mut reads = Vec::new();
        let mut writes = Vec::new();
        let (mut far_reads, mut nas_disk) = (Vec::new(), Vec::new());
        let mut far_device = None;
        for _ in 0..options.repeat {
            let read = disk::baseline(
                &BaselineOptions {
                    path: test_file.clone(),
                    size: None,
                    pattern: options.pattern,
                    direct: true,
                    evict: true,
                    engine: options.engine,
                    passes: Passes::ReadOnly,
                },
                watcher,
            )?;
            self.warnings.extend(read.warnings);
            reads.extend(read.measurements.into_iter().map(|p| p.measurement));
            let far = self.far.disk_write(options, watcher)?;
            self.warnings.extend(far.warnings);
            writes.extend(far.measurements);
            far_reads.extend(far.reads);
            nas_disk.extend(far.nas_disk);
            far_device = far.device;
        }
        let here = file::device_id(&options.dir);
        let write_dir = match self.far.landing_here() {
            Some(dir) => (file::device_id(dir) == here).then(|| dir.to_path_buf()),
            None => far_device
                .filter(|far| here.as_ref() == Some(far))
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
            destination_read: Summary::of(far_reads),
            nas_disk: Summary::of(nas_disk),
            shared: write_dir.is_some(),
            shared_read_write: Summary::of(read_writes),
        })
    }
}

/// The disks' figures every path's verdict shares.
struct Baselines {
    source_read: Option<Summary>,
    destination_write: Option<Summary>,
    /// The far disk reading back cold, where measured.
    destination_read: Option<Summary>,
    /// A NAS's own disk writing, where a `serve` on it measured it.
    nas_disk: Option<Summary>,
    /// One disk serves both ends.
    shared: bool,
    /// That disk reading and writing at once.
    shared_read_write: Option<Summary>,
}

impl Run<'_> {
    /// One path: its latency, memory to memory and verified copy, then its verdict. A step that
    /// fails keeps what the path measured before it and shows why; Ctrl-C ends it the same way.
    fn measure_path(
        &mut self,
        baselines: &Baselines,
        (test_file, _): &(PathBuf, bool),
        kind: TransportKind,
        index: usize,
        count: usize,
    ) -> PathResult {
        let (options, watcher) = (self.options, self.watcher);
        let mut warnings = Vec::new();
        let mut failed = None;
        let (latency, latency_failed, mut nets) = match self.far.network(kind) {
            Ok(network) => {
                let words = self.far.network_words(kind);
                announce(
                    watcher,
                    Step::Network {
                        words,
                        index,
                        count,
                    },
                );
                self.measure_network(network, kind, &mut warnings, &mut failed)
            }
            Err(why) => {
                announce(watcher, Step::NoNetwork(why.clone()));
                (None, Some(why), Vec::new())
            }
        };
        // UDP does not deliver every datagram: no file goes over it. Only serve computes a digest
        // on the far side.
        let copies_files = kind != TransportKind::Udp && failed.is_none();
        let verify = kind != TransportKind::Ssh;
        if copies_files {
            announce(
                watcher,
                Step::Copy {
                    words: self.far.copy_words(kind),
                    verified: verify,
                },
            );
        }
        let transport = self.far.transport(kind);
        let copy_plan = CopyPlan {
            source: Location::Local(test_file.clone()),
            destination: self.far.copy_destination(kind, options),
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
                    failed = Some(PathFailure::new(PathStep::Copy, &err));
                    break;
                }
            }
        }
        // A network figure cannot beat the interface it left through, nor can a copy over it;
        // a share's copy that does was acknowledged before it crossed.
        let link = self.far.link_ceiling();
        let destination = self.far.destination();
        let not_crossed = "it did not all cross that interface (the peer is on this machine?)";
        let copy_reason = match destination {
            verdict::Destination::Share { .. } => disk::ACKNOWLEDGED_FASTER_THAN_THE_LINK,
            _ => not_crossed,
        };
        for measurement in &mut nets {
            measurement.hold_to(link.as_ref(), not_crossed);
        }
        for measurement in &mut copies {
            measurement.hold_to(link.as_ref(), copy_reason);
        }
        self.warnings.extend(warnings);
        let (network, copy) = (Summary::of(nets), Summary::of(copies));
        let far = FarFacts {
            destination,
            link: link.map(|c| Rate {
                bytes_per_sec: c.bytes_per_sec,
            }),
        };
        let (verdict, sentence) = judge(kind, baselines, &far, &network, &copy, &copy_cpu, &failed);
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
}

impl Run<'_> {
    /// A path's round trips and memory-to-memory runs over `transport`: the latency, or why
    /// it failed (the rest stands without it), and the receiver's figures. A failure (or
    /// Ctrl-C) is put in `failed`.
    fn measure_network(
        &self,
        transport: &dyn Transport,
        kind: TransportKind,
        warnings: &mut Vec<Warning>,
        failed: &mut Option<PathFailure>,
    ) -> (
        Option<crate::measure::Latency>,
        Option<String>,
        Vec<Measurement>,
    ) {
        let (options, watcher) = (self.options, self.watcher);
        // A path whose round trips fail still has its rates and verdict; the reason is shown.
        let lat_plan = LatPlan {
            size: LATENCY_SIZE,
            rounds: Rounds::Count(LATENCY_ROUND_TRIPS),
        };
        let (latency, latency_failed) = match transport.latency(&lat_plan) {
            Ok(report) => {
                warnings.extend(report.warnings);
                (Some(report.latency), None)
            }
            Err(err) if err.chain().any(|cause| cause.is::<Interrupted>()) => {
                *failed = Some(PathFailure::new(PathStep::Latency, &err));
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
                    *failed = Some(PathFailure::new(PathStep::Network, &err));
                    break;
                }
            }
        }
        (latency, latency_failed, nets)
    }
}

/// What the far side adds to a verdict: where copies land, and the link's speed.
struct FarFacts {
    destination: verdict::Destination,
    /// The negotiated speed of the interface towards the server or NAS.
    link: Option<Rate>,
}

/// A path's verdict and its sentence: none for a path that failed (its figures are incomplete,
/// and judging them would name the wrong stage).
fn judge(
    kind: TransportKind,
    baselines: &Baselines,
    far: &FarFacts,
    network: &Option<Summary>,
    copy: &Option<Summary>,
    copy_cpu: &[crate::measure::CpuUse],
    failed: &Option<PathFailure>,
) -> (Option<verdict::Verdict>, String) {
    let stages = [
        ("the source read", &baselines.source_read),
        ("the network", network),
        ("the destination write", &baselines.destination_write),
        ("the NAS's disk", &baselines.nas_disk),
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
    // A share's network unmeasured stands at its link's speed, and says so.
    let link_speed = match (&far.destination, network) {
        (verdict::Destination::Share { .. }, None) => far.link,
        _ => None,
    };
    let figures = Figures {
        destination: far.destination.clone(),
        network_is_link_speed: link_speed.is_some(),
        nas_disk: baselines.nas_disk.as_ref().map(Summary::rate),
        source_read: baselines.source_read.as_ref().map(Summary::rate),
        network: network.as_ref().map(Summary::rate).or(link_speed),
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
            failure.step.describe(),
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

impl Run<'_> {
    /// The copies served their purpose: a far disk is not left holding a test-file-sized file.
    fn remove_copies(&mut self, paths: &[PathResult]) {
        for result in paths {
            let copied = result.copy.is_some()
                || result
                    .failed
                    .as_ref()
                    .is_some_and(|f| f.step == PathStep::Copy);
            if !copied {
                continue;
            }
            if let Err(err) = self.far.remove_copy(result.path, self.options) {
                self.warnings.push(Warning::RemoteCopyLeft {
                    host: self.far.name(),
                    path: remote_copy_path(result.path, &self.options.remote_dir),
                    reason: format!("{err:#}"),
                });
            }
        }
    }

    /// The report: what was asked, every figure, every path's verdict, what was skipped.
    fn finish(
        mut self,
        skipped: Vec<Skipped>,
        (test_file, reused): (PathBuf, bool),
        baselines: Baselines,
        paths: Vec<PathResult>,
    ) -> RunReport {
        let options = self.options;
        let interrupted = paths
            .last()
            .and_then(|path| path.failed.as_ref())
            .is_some_and(|failed| failed.interrupted);
        if !interrupted {
            announce(self.watcher, Step::Verdict);
        }
        crate::warning::dedup(&mut self.warnings);
        RunReport {
            parameters: Parameters {
                server: self.far.name(),
                to: options.to.as_ref().map(|to| to.display().to_string()),
                net: options.net.clone(),
                // A run to a directory has its one path, whatever --via says by default.
                paths: match options.to {
                    Some(_) => vec![TransportKind::Local.to_string()],
                    None => options.paths.clone(),
                },
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
            destination_read: baselines.destination_read,
            nas_disk: baselines.nas_disk,
            link: self.far.link_ceiling(),
            shared_disk: baselines.shared_read_write,
            paths,
            skipped,
            warnings: self.warnings,
            interrupted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::{self, FakeFar};
    use super::super::verdict::Stage;
    use super::*;
    use crate::transport::fake::{FailAt, Fake};

    /// A run of one tcp path that fails `at`: the far side (what it removed) and the path.
    fn failing_at(at: FailAt) -> (FakeFar, PathResult) {
        let tcp = Fake {
            fail: Some(at),
            ..Fake::new(TransportKind::Tcp, 1.0, 0.9)
        };
        let far = FakeFar::new(vec![tcp], 10.0);
        let (_dir, mut report) = fake::run(&far);
        (far, report.paths.remove(0))
    }

    #[test]
    fn a_path_slower_than_both_disks_is_limited_by_the_network() {
        let far = FakeFar::new(vec![Fake::new(TransportKind::Tcp, 1.0, 0.9)], 10.0);
        let (_dir, report) = fake::run(&far);
        let tcp = &report.paths[0];
        let verdict = tcp.verdict.as_ref().expect("a verdict");
        assert_eq!(verdict.bottleneck, vec![Stage::Network], "{}", tcp.sentence);
        assert!(
            (verdict.efficiency.unwrap() - 0.9).abs() < 1e-6,
            "{verdict:?}"
        );
        assert!(
            tcp.sentence.contains("limited by the network"),
            "{}",
            tcp.sentence
        );
        assert!(tcp.latency.is_some() && tcp.failed.is_none());
        assert_eq!(report.parameters.server, "fake");
        assert_eq!(*far.removed.borrow(), vec![TransportKind::Tcp]);
    }

    #[test]
    fn each_path_is_judged_on_its_own_figures() {
        let far = FakeFar::new(
            vec![
                Fake::new(TransportKind::Tcp, 1.0, 0.9),
                Fake::new(TransportKind::Ssh, 10.0, 2.8),
            ],
            3.0,
        );
        let (_dir, report) = fake::run(&far);
        let bottleneck = |i: usize| report.paths[i].verdict.as_ref().unwrap().bottleneck.clone();
        assert_eq!(bottleneck(0), vec![Stage::Network]);
        assert_eq!(bottleneck(1), vec![Stage::DestinationDisk]);
        let far_write = report.destination_write.as_ref().unwrap().rate();
        assert!((far_write.mb_per_sec() - 3.0).abs() < 1e-6, "{far_write}");
    }

    #[test]
    fn a_path_that_fails_its_copy_keeps_its_network_figure_and_has_no_verdict() {
        let (far, tcp) = failing_at(FailAt::Copy);
        assert_eq!(tcp.failed.as_ref().unwrap().step, PathStep::Copy);
        assert!(tcp.network.is_some() && tcp.copy.is_none() && tcp.verdict.is_none());
        assert!(
            tcp.sentence.contains("failed in disk to disk"),
            "{}",
            tcp.sentence
        );
        // A copy that failed may have left part of a file: it is removed too.
        assert_eq!(*far.removed.borrow(), vec![TransportKind::Tcp]);
    }

    #[test]
    fn a_path_that_fails_memory_to_memory_runs_no_copy() {
        let (far, tcp) = failing_at(FailAt::Network);
        assert_eq!(tcp.failed.as_ref().unwrap().step, PathStep::Network);
        assert!(tcp.network.is_none() && tcp.copy.is_none());
        assert!(far.removed.borrow().is_empty());
    }

    #[test]
    fn a_path_whose_round_trips_fail_is_still_judged() {
        let (_, tcp) = failing_at(FailAt::Latency);
        assert!(tcp.latency.is_none());
        assert!(
            tcp.latency_failed
                .as_ref()
                .unwrap()
                .contains("failed in Latency")
        );
        assert!(tcp.failed.is_none() && tcp.verdict.is_some());
    }

    #[test]
    fn a_copy_the_server_would_not_remove_is_a_warning_naming_it() {
        let far = FakeFar {
            removal_fails: true,
            ..FakeFar::new(vec![Fake::new(TransportKind::Tcp, 1.0, 0.9)], 10.0)
        };
        let (_dir, report) = fake::run(&far);
        let left = report.warnings.iter().find_map(|warning| match warning {
            Warning::RemoteCopyLeft { host, path, .. } => Some((host.clone(), path.clone())),
            _ => None,
        });
        assert_eq!(left, Some(("fake".to_string(), REMOTE_COPY.to_string())));
    }

    #[test]
    fn the_disk_figures_of_the_null_engine_say_so_and_are_not_held_to_a_device() {
        let far = FakeFar::new(vec![Fake::new(TransportKind::Tcp, 1.0, 0.9)], 10.0);
        let (_dir, report) = fake::run(&far);
        let read = &report.source_read.as_ref().unwrap().measurements[0];
        assert_eq!(
            read.conditions.engine,
            Some(crate::measure::EngineKind::Null)
        );
        assert_eq!(read.suspect, None);
    }
}
