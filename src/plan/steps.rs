//! `run` as its steps: set up the server and the paths; the test file and the tree of small
//! files; the baselines (and the shared disk reading and writing at once); for each path its
//! latency, memory to memory, copy, small files and verdict; then the copies removed and the
//! report made. Each step's heading is made in
//! [`Step`], and a step that fails for one path is kept in that path's row.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use super::embedded::EmbeddedServers;
use super::verdict::{self, Figures, Sentence};
use super::{
    LATENCY_ROUND_TRIPS, LATENCY_SIZE, Parameters, PathFailure, PathResult, PathStep, REMOTE_COPY,
    REMOTE_TREE, RunOptions, RunReport, Skipped, SmallFiles, Summary, choose_paths, peer_ceiling,
    remote_copy_path, remote_tree_path, reusable, test_file_path, test_tree, test_tree_path,
};
use crate::disk::{self, BaselineOptions, FillMode, GenOptions, Passes};
use crate::file;
use crate::interrupt::Interrupted;
use crate::measure::{Measurement, Watcher, Workload};
use crate::transport::rdma::Rdma;
use crate::transport::ssh::Ssh;
use crate::transport::ssh::login::LoginOptions;
use crate::transport::tcp::Tcp;
use crate::transport::tree::{FsyncPolicy, TreePlan, TreeReport};
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
    SmallFiles {
        /// Over which path, or to where, in the far side's words.
        words: String,
        files: u64,
        file_size: u64,
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
            Step::SmallFiles {
                words,
                files,
                file_size,
            } => write!(
                f,
                "4/5 small files {words}: {files} files of {}, each fsynced",
                crate::units::format_block(*file_size)
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
    let test_tree = run.make_test_tree()?;
    let baselines = run.measure_baselines(&test_file)?;
    let mut results = Vec::new();
    let count = paths.wanted.len();
    for (index, &kind) in paths.wanted.iter().enumerate() {
        let tree = test_tree.as_ref().map(|(tree, _)| tree.as_path());
        let result = run.measure_path(&baselines, &test_file, tree, kind, index, count);
        let interrupted = result.failed.as_ref().is_some_and(|f| f.interrupted);
        results.push(result);
        if interrupted {
            break;
        }
    }
    run.remove_copies(&results);
    Ok(run.finish(paths.skipped, test_file, test_tree, baselines, results))
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
    if options.files > 0 && options.file_size == 0 {
        bail!("--file-size 0: give the size of each small file, or --files 0 to skip them");
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
    /// Where path `kind`'s copy of the tree of small files lands (a new path: the tree lands
    /// as it).
    fn tree_destination(&self, kind: TransportKind, options: &RunOptions) -> Location;
    /// Copies the tree of small files over path `kind`: its transport's `copy_tree`, which
    /// refuses on a path that carries no trees.
    fn copy_tree(
        &self,
        kind: TransportKind,
        plan: &TreePlan,
        watcher: &dyn Watcher,
    ) -> Result<TreeReport> {
        self.transport(kind).copy_tree(plan, watcher)
    }
    /// Removes the tree path `kind` copied to the far side: the one path the run named, and
    /// nothing else.
    fn remove_tree(&self, kind: TransportKind, options: &RunOptions) -> Result<()>;
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

/// `rm -rf -- PATH` by a far shell, over a login of its own: the tree the run copied there over
/// SSH. Only a path naming the run's tree ([`REMOTE_TREE`]) is removed.
fn remove_tree_over_ssh(peer: &Peer, login: &LoginOptions, path: &str) -> Result<()> {
    use crate::transport::ssh::command::{RemoteCommand, home_relative, quote};
    use crate::transport::ssh::exec::{Exec, input_writer};
    use crate::transport::ssh::login::{Target, connect};
    use std::sync::Arc;
    use tokio::io::AsyncWriteExt;

    // The sinks start in the login's home, as this shell does: `~/x` is `x` to both.
    let path = home_relative(path).unwrap_or(path);
    if path.starts_with('~')
        || Path::new(path).file_name() != Some(std::ffi::OsStr::new(REMOTE_TREE))
    {
        bail!("'{path}' does not name the run's tree, so it is left alone");
    }
    let target = Arc::new(Target::resolve(peer, login)?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the network runtime")?;
    let script = format!("rm -rf -- {}\n", quote(path));
    runtime.block_on(async {
        let removal = async {
            let connection = connect(&target, 0).await?;
            let exec = Exec::start(&connection.handle, RemoteCommand::Shell).await?;
            let mut input = input_writer(&exec.input);
            input.write_all(script.as_bytes()).await?;
            input.shutdown().await?;
            exec.finish().await
        };
        tokio::time::timeout(std::time::Duration::from_secs(120), removal)
            .await
            .map_err(|_| anyhow!("`rm -rf` of '{path}' did not end within 120 s"))?
    })
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
    /// The SSH server and how to log in: a shell there removes the run's tree.
    ssh_login: (Peer, LoginOptions),
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
            ssh_login: (ssh_peer, ssh_login),
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

    fn tree_destination(&self, kind: TransportKind, options: &RunOptions) -> Location {
        Location::Remote {
            peer: self.peer.clone(),
            path: remote_tree_path(kind, &options.remote_dir),
        }
    }

    /// The embedded servers' root is a directory here: the tree is removed from it directly.
    /// Else over SSH a far shell removes it, and serve removes it when asked (`remove` with
    /// `tree`).
    fn remove_tree(&self, kind: TransportKind, options: &RunOptions) -> Result<()> {
        let path = remote_tree_path(kind, &options.remote_dir);
        if let Some(root) = &self.embedded_dir {
            let relative = Path::new(&path);
            let inside = relative
                .components()
                .all(|part| matches!(part, std::path::Component::Normal(_)));
            // Anywhere else, it is inside the root, which goes with the run.
            return match inside {
                true => remove_local_tree(&root.join(relative)),
                false => Ok(()),
            };
        }
        match (kind, &self.tcp) {
            (TransportKind::Ssh, _) => {
                let (peer, login) = &self.ssh_login;
                remove_tree_over_ssh(peer, login, &path)
            }
            (_, Some(tcp)) => tcp.remove_remote_tree(&path).map(drop),
            (_, None) => Ok(()),
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

    /// The tree of small files beside the test file, made unless a whole one of the same files
    /// is there; None with `--files 0`. Returns its path and whether it was reused.
    fn make_test_tree(&mut self) -> Result<Option<(PathBuf, bool)>> {
        let options = self.options;
        if options.files == 0 {
            return Ok(None);
        }
        let tree = test_tree_path(&options.dir, options.files, options.file_size);
        let reused = test_tree::make(&tree, options.files, options.file_size, self.watcher)
            .context("the tree of small files")?;
        Ok(Some((tree, reused)))
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
        test_tree: Option<&Path>,
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
            resume: false,
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
        let (mut small_files, small_files_failed) = match test_tree {
            Some(tree) if copies_files && failed.is_none() => {
                self.measure_small_files(kind, tree, &mut warnings, &mut failed)
            }
            _ => (None, None),
        };
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
        if let Some(small) = &mut small_files {
            small.measurement.hold_to(link.as_ref(), copy_reason);
        }
        self.warnings.extend(warnings);
        let (network, copy) = (Summary::of(nets), Summary::of(copies));
        let far = FarFacts {
            destination,
            link: link.map(|c| Rate {
                bytes_per_sec: c.bytes_per_sec,
            }),
        };
        let measured = Measured {
            network: &network,
            copy: &copy,
            copy_cpu: &copy_cpu,
            small_files: small_files.as_ref(),
        };
        let (verdict, sentence) = judge(kind, baselines, &far, &measured, &failed);
        PathResult {
            path: kind,
            latency,
            latency_failed,
            network,
            copy,
            copy_cpu,
            small_files,
            small_files_failed,
            verdict,
            sentence,
            failed,
        }
    }

    /// A path's copy of the tree of small files, once: its figure, or why there is none (the
    /// path carries no trees, a file failed: the path's other figures stand). Ctrl-C is put in
    /// `failed`.
    fn measure_small_files(
        &self,
        kind: TransportKind,
        tree: &Path,
        warnings: &mut Vec<Warning>,
        failed: &mut Option<PathFailure>,
    ) -> (Option<SmallFiles>, Option<String>) {
        let options = self.options;
        announce(
            self.watcher,
            Step::SmallFiles {
                words: self.far.copy_words(kind),
                files: options.files,
                file_size: options.file_size,
            },
        );
        test_tree::evict(tree, options.files);
        let plan = TreePlan {
            source: Location::Local(tree.to_path_buf()),
            destination: self.far.tree_destination(kind, options),
            workers: options.streams,
            block: 1 << 20,
            verify: false,
            force: true,
            // Durable as the big copy is: each file fsynced before its rename.
            fsync: FsyncPolicy::Each,
        };
        let report = match self.far.copy_tree(kind, &plan, self.watcher) {
            Ok(report) => report,
            Err(err) if err.chain().any(|cause| cause.is::<Interrupted>()) => {
                *failed = Some(PathFailure::new(PathStep::SmallFiles, &err));
                return (None, None);
            }
            Err(err) => return (None, Some(format!("{err:#}"))),
        };
        warnings.extend(report.warnings);
        if report.failed.total > 0 {
            let first = report
                .failed
                .shown
                .first()
                .map(|problem| format!(": {}: {}", problem.path, problem.reason))
                .unwrap_or_default();
            return (
                None,
                Some(format!(
                    "{} of {} files failed{first}",
                    report.failed.total, options.files
                )),
            );
        }
        let small = SmallFiles {
            measurement: report.measurement,
            files: report.landed.files,
            file_size: options.file_size,
            files_per_sec: report.files_per_sec,
            fsync: report.fsync,
        };
        (Some(small), None)
    }
}

/// Removes a directory tree the run made here, if it is there.
pub(crate) fn remove_local_tree(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(anyhow!(file::describe_path_error(path, err)))
        }
        _ => Ok(()),
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
            zerocopy: false,
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

/// What one path measured, for its verdict.
struct Measured<'a> {
    network: &'a Option<Summary>,
    copy: &'a Option<Summary>,
    copy_cpu: &'a [crate::measure::CpuUse],
    small_files: Option<&'a SmallFiles>,
}

/// A path's verdict and its sentence: none for a path that failed (its figures are incomplete,
/// and judging them would name the wrong stage).
fn judge(
    kind: TransportKind,
    baselines: &Baselines,
    far: &FarFacts,
    measured: &Measured,
    failed: &Option<PathFailure>,
) -> (Option<verdict::Verdict>, String) {
    let (network, copy, copy_cpu) = (measured.network, measured.copy, measured.copy_cpu);
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
        small_files: measured.small_files.map(|small| verdict::SmallFilesFigure {
            files: small.files,
            file_size: small.file_size,
            rate: small.rate(),
            files_per_sec: small.files_per_sec,
        }),
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
        self.remove_trees(paths);
    }

    /// The trees of small files, where a path tried to copy one (a path that refused trees
    /// left none, and its removal finds none).
    fn remove_trees(&mut self, paths: &[PathResult]) {
        for result in paths {
            let tried = result.small_files.is_some()
                || result.small_files_failed.is_some()
                || result
                    .failed
                    .as_ref()
                    .is_some_and(|f| f.step == PathStep::SmallFiles);
            if !tried {
                continue;
            }
            if let Err(err) = self.far.remove_tree(result.path, self.options) {
                self.warnings.push(Warning::RemoteCopyLeft {
                    host: self.far.name(),
                    path: remote_tree_path(result.path, &self.options.remote_dir),
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
        test_tree: Option<(PathBuf, bool)>,
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
                files: options.files,
                file_size: options.file_size,
            },
            test_file: test_file.display().to_string(),
            test_file_reused: reused,
            test_tree_reused: test_tree.as_ref().is_some_and(|(_, reused)| *reused),
            test_tree: test_tree.map(|(tree, _)| tree.display().to_string()),
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

    /// A run of tcp (copy 0.9 MB/s) whose small files go at `tree_mb_s`, or are refused.
    fn with_small_files(tree_mb_s: Option<f64>) -> (FakeFar, PathResult) {
        let tcp = Fake::new(TransportKind::Tcp, 1.0, 0.9).with_trees(tree_mb_s);
        let far = FakeFar::new(vec![tcp], 10.0);
        let (_dir, mut report) = fake::run(&far);
        (far, report.paths.remove(0))
    }

    #[test]
    fn small_files_at_a_tenth_of_the_big_copy_are_per_file_overhead_in_the_verdict() {
        let (far, tcp) = with_small_files(Some(0.09));
        let small = tcp.small_files.as_ref().expect("a small-files figure");
        assert_eq!((small.files, small.file_size), (30, 4096));
        assert_eq!(small.fsync, FsyncPolicy::Each);
        assert!((small.rate().mb_per_sec() - 0.09).abs() < 1e-6);
        let verdict = tcp.verdict.as_ref().expect("a verdict");
        let overhead = verdict.per_file_overhead.expect("per-file overhead");
        assert!(
            (overhead.fraction_of_copy - 0.1).abs() < 1e-6,
            "{overhead:?}"
        );
        assert!(
            tcp.sentence
                .contains("tcp: per-file overhead: 30 files of 4 KiB reach 90.0 kB/s"),
            "{}",
            tcp.sentence
        );
        assert!(
            tcp.sentence
                .contains("10% of the big-file copy (22 files/s)")
        );
        assert_eq!(*far.removed_trees.borrow(), vec![TransportKind::Tcp]);
    }

    #[test]
    fn small_files_near_the_big_copy_leave_the_verdict_as_it_was() {
        let (_, tcp) = with_small_files(Some(0.8));
        assert!(tcp.small_files.is_some());
        let verdict = tcp.verdict.as_ref().expect("a verdict");
        assert_eq!(verdict.per_file_overhead, None);
        assert_eq!(verdict.bottleneck, vec![Stage::Network]);
        assert!(!tcp.sentence.contains("per-file"), "{}", tcp.sentence);
    }

    #[test]
    fn a_path_refusing_trees_keeps_the_refusal_in_its_row_and_the_run_goes_on() {
        let far = FakeFar::new(
            vec![
                Fake::new(TransportKind::Tcp, 1.0, 0.9).with_trees(None),
                Fake::new(TransportKind::Ssh, 10.0, 2.8),
            ],
            3.0,
        );
        let (_dir, report) = fake::run(&far);
        let tcp = &report.paths[0];
        assert!(tcp.small_files.is_none());
        let why = tcp.small_files_failed.as_deref().expect("the refusal");
        assert!(why.contains("copy -r over tcp"), "{why}");
        // Not a failure of the path: its figures and verdict stand, and the next path runs.
        assert!(tcp.failed.is_none() && tcp.verdict.is_some() && tcp.copy.is_some());
        assert_eq!(report.failures().count(), 0);
        assert!(report.paths[1].small_files.is_some());
    }

    #[test]
    fn a_tree_copy_that_fails_or_loses_files_is_kept_in_its_row_with_the_reason() {
        let tcp = Fake {
            fail: Some(FailAt::Tree),
            ..Fake::new(TransportKind::Tcp, 1.0, 0.9)
        };
        let far = FakeFar::new(vec![tcp], 10.0);
        let (_dir, report) = fake::run(&far);
        let why = report.paths[0].small_files_failed.as_deref().unwrap();
        assert!(why.contains("failed in Tree"), "{why}");
        assert!(report.paths[0].verdict.is_some());
        // It may have left part of the tree: that is removed too.
        assert_eq!(*far.removed_trees.borrow(), vec![TransportKind::Tcp]);

        let tcp = Fake {
            tree_files_failing: 2,
            ..Fake::new(TransportKind::Tcp, 1.0, 0.9)
        };
        let (_dir, report) = fake::run(&FakeFar::new(vec![tcp], 10.0));
        let path = &report.paths[0];
        assert!(path.small_files.is_none());
        let why = path.small_files_failed.as_deref().unwrap();
        assert!(
            why.starts_with("2 of 30 files failed: ")
                && why.contains("the fake path failed this file"),
            "{why}"
        );
    }

    #[test]
    fn files_0_makes_no_tree_and_copies_none() {
        let far = FakeFar::new(vec![Fake::new(TransportKind::Tcp, 1.0, 0.9)], 10.0);
        let (dir, report) = fake::run_with(&far, |options| options.files = 0);
        assert!(report.test_tree.is_none());
        let tcp = &report.paths[0];
        assert!(tcp.small_files.is_none() && tcp.small_files_failed.is_none());
        assert!(far.removed_trees.borrow().is_empty());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "only the test file: {names:?}");
    }

    #[test]
    fn the_tree_of_small_files_is_reused_by_the_next_run_in_its_directory() {
        let far = FakeFar::new(vec![Fake::new(TransportKind::Tcp, 1.0, 0.9)], 10.0);
        let dir = tempfile::tempdir().unwrap();
        let options = fake::options(dir.path(), &far);
        let paths = || Paths {
            wanted: vec![TransportKind::Tcp],
            skipped: Vec::new(),
        };
        let first = run_against(&options, &far, paths(), &crate::measure::Unwatched).unwrap();
        assert!(!first.test_tree_reused);
        let tree = first.test_tree.clone().unwrap();
        assert!(tree.ends_with(".xferbench-run-files-30x4096"), "{tree}");
        let second = run_against(&options, &far, paths(), &crate::measure::Unwatched).unwrap();
        assert!(second.test_tree_reused);
        assert_eq!(second.test_tree, Some(tree));
    }

    #[test]
    fn a_tree_the_server_would_not_remove_is_a_warning_naming_it() {
        let far = FakeFar {
            removal_fails: true,
            ..FakeFar::new(vec![Fake::new(TransportKind::Tcp, 1.0, 0.9)], 10.0)
        };
        let (_dir, report) = fake::run(&far);
        let left: Vec<String> = report
            .warnings
            .iter()
            .filter_map(|warning| match warning {
                Warning::RemoteCopyLeft { path, .. } => Some(path.clone()),
                _ => None,
            })
            .collect();
        assert!(left.contains(&REMOTE_TREE.to_string()), "{left:?}");
    }

    #[test]
    fn over_ssh_only_a_path_naming_the_runs_tree_is_removed() {
        let peer = Peer::parse("nobody@192.0.2.1").unwrap();
        for path in [
            "",
            "~",
            "/",
            "/home/me",
            "dir/.xferbench-run-tree/..",
            "~other/x",
        ] {
            let err = remove_tree_over_ssh(&peer, &LoginOptions::default(), path).unwrap_err();
            assert!(
                format!("{err:#}").contains("does not name the run's tree"),
                "{path}: {err:#}"
            );
        }
    }
}
