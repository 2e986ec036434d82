//! `copy -r` between local paths: a directory tree onto another disk or a mounted share.
//!
//! The tree is walked once to count it (for the bar's ETA), once to copy it, and once, its
//! directories last, to give each directory its mode and times after everything inside it has
//! landed (and, with per-file durability, to fsync it so the renames in it are durable). No walk
//! holds every name: memory is one directory's listing per level, plus `workers` buffers of
//! `--bs` bytes, whatever the number of files.
//!
//! Files land concurrently: the walk hands each file to one of `workers` threads, which reads it
//! through the page cache in `--bs` blocks (as cp, tar and rsync do; a tree of small files gains
//! nothing from O_DIRECT, and a single big file has `copy` without -r for that), writes it under
//! a temporary name beside its final one, gives it the source's mode and times, fsyncs it (or
//! leaves that to one `syncfs` at the end with `--fsync end`), and renames it into place. A file
//! that fails is listed and the rest go on; nothing is ever left under a final name half written.
//!
//! The landing of one file from any [`FileSource`] ([`land_file`]), of a link, of a directory
//! and its finish are shared with `copy -r` over tcp ([`stream`]: the record stream both ends
//! of that path run).

pub mod stream;

use std::ffi::OsStr;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use super::{Location, TransportKind};
use crate::file::tree::{self, Attributes, Kind, Totals};
pub use crate::file::tree::{FsyncPolicy, LISTED, Listed, Problem};
use crate::file::{self, PartialFile};
use crate::interrupt::{self, Interrupted};
use crate::measure::{
    Conditions, Counter, CpuClock, CpuUse, Interval, IntervalClock, Measurement, Watcher, Workload,
};
use crate::warning::Warning;

/// A tree to copy: between two local paths (this module), or between this machine and a
/// server ([`super::Transport::copy_tree`]).
#[derive(Debug, Clone)]
pub struct TreePlan {
    pub source: Location,
    /// An existing directory (the tree lands inside it, under the source's name, as `cp -r`
    /// and `scp -r` do) or a new path (the tree lands as it).
    pub destination: Location,
    /// Files landing at once (locally, or on the server); over SSH, connections.
    pub workers: usize,
    /// Bytes per read and write.
    pub block: usize,
    /// Read each landed file back (after fsync and a cache drop) and compare digests.
    pub verify: bool,
    /// Replace files that exist under a final name.
    pub force: bool,
    pub fsync: FsyncPolicy,
}

/// What `copy -r` moved and how fast: the bytes of the files (the measurement, timed from the
/// first file to the last fsync), the entries, files/s, and every entry that failed, changed
/// while it was read, or was skipped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TreeReport {
    pub source: String,
    pub destination: String,
    pub path: TransportKind,
    pub measurement: Measurement,
    /// What landed.
    pub landed: Totals,
    pub files_per_sec: f64,
    pub fsync: FsyncPolicy,
    pub workers: usize,
    /// Every landed file was read back and matched (xxh3-128 of what was read).
    pub verified: bool,
    pub failed: Listed,
    /// Files whose size or modification time moved while they were read: they landed as read.
    pub changed: Listed,
    /// Fifos, sockets and devices, not copied.
    pub skipped: Listed,
    pub cpu: CpuUse,
    /// The server's CPU, when a server took part (`--via tcp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_cpu: Option<CpuUse>,
    /// The far tool that carried the files over SSH (`tar -x` or `scp -t` up, `tar -c` down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub far_tool: Option<String>,
    pub warnings: Vec<Warning>,
}

/// Copies the tree `plan.source` into `plan.destination` under one progress bar of bytes and
/// files. Errors (nothing copied): the source is not a directory, the destination cannot hold
/// it or lies inside it; Ctrl-C ([`Interrupted`], files already landed stay). A file that fails
/// does not stop the rest: it is in [`TreeReport::failed`].
pub fn copy(plan: &TreePlan, watcher: &dyn Watcher) -> Result<TreeReport> {
    let (Location::Local(source), Location::Local(destination)) = (&plan.source, &plan.destination)
    else {
        bail!("a local copy -r goes between two local paths");
    };
    check_source(source)?;
    let target = target(source, destination)?;
    let totals = tree::count(source);
    let (bytes, files) = (Counter::new(), Counter::new());
    watcher.begin_files("copy", totals.bytes, &bytes, totals.files, &files);
    let cpu = CpuClock::start();
    let landing = Landing {
        plan,
        source,
        target: &target,
        bytes: &bytes,
        files: &files,
        state: Mutex::new(State::default()),
    };
    let outcome = landing.run();
    watcher.end();
    let (elapsed, intervals) = outcome?;
    let state = landing.state.into_inner().expect("tree state");
    let mut warnings = Vec::new();
    if file::is_tmpfs(&target) {
        warnings.push(Warning::MemoryFileSystem {
            path: target.clone(),
        });
    }
    let conditions = Conditions {
        fsync_included: true,
        block_size: Some(plan.block as u64),
        path: Some(TransportKind::Local),
        streams: Some(plan.workers),
        mount: Some(crate::mounts::facts(&target)),
        ..Conditions::default()
    };
    let measurement = Measurement::new(
        Workload::Copy,
        state.landed.bytes,
        elapsed,
        conditions,
        intervals,
    );
    Ok(TreeReport {
        source: source.display().to_string(),
        destination: target.display().to_string(),
        path: TransportKind::Local,
        files_per_sec: per_sec(state.landed.files, elapsed),
        measurement,
        landed: state.landed,
        fsync: plan.fsync,
        workers: plan.workers,
        verified: plan.verify,
        failed: state.failed,
        changed: state.changed,
        skipped: state.skipped,
        cpu: cpu.finish(),
        remote_cpu: None,
        far_tool: None,
        warnings,
    })
}

/// Files (or any count) per second of `elapsed`; 0 for no time at all.
pub fn per_sec(count: u64, elapsed: Duration) -> f64 {
    match elapsed.as_secs_f64() {
        secs if secs > 0.0 => count as f64 / secs,
        _ => 0.0,
    }
}

/// Refuses a source that is not a directory (with the flag to use for a file).
pub fn check_source(source: &Path) -> Result<()> {
    let meta = std::fs::metadata(source)
        .map_err(|err| anyhow!("cannot copy: {}", file::describe_path_error(source, err)))?;
    if !meta.is_dir() {
        bail!(
            "{} is not a directory: copy -r copies a directory tree; leave out -r to copy a file",
            source.display()
        );
    }
    Ok(())
}

/// The name a tree is copied under: its own (resolved, so `.` has one).
pub fn source_name(source: &Path) -> Result<std::ffi::OsString> {
    std::fs::canonicalize(source)
        .ok()
        .and_then(|path| path.file_name().map(|name| name.to_os_string()))
        .ok_or_else(|| anyhow!("{} has no name to copy under", source.display()))
}

/// Where a tree named `name` lands: inside `destination` under `name` when it is an existing
/// directory, else as `destination` itself (whose parent must exist). Errors: the destination
/// is something else than a directory, or its parent is missing.
pub fn landing_target(destination: &Path, name: &OsStr) -> Result<PathBuf> {
    match std::fs::metadata(destination) {
        Ok(meta) if meta.is_dir() => Ok(destination.join(name)),
        Ok(_) => bail!(
            "{} exists and is not a directory: a tree lands in a directory or under a new name",
            destination.display()
        ),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            let parent = file::parent_dir(destination);
            std::fs::metadata(&parent).map_err(|err| {
                anyhow!("cannot copy: {}", file::describe_path_error(&parent, err))
            })?;
            Ok(destination.to_path_buf())
        }
        Err(err) => bail!(
            "cannot copy: {}",
            file::describe_path_error(destination, err)
        ),
    }
}

/// Where the tree lands ([`landing_target`]). Errors: also a destination inside the source
/// (the copy would copy itself).
fn target(source: &Path, destination: &Path) -> Result<PathBuf> {
    let target = landing_target(destination, &source_name(source)?)?;
    let source_real =
        std::fs::canonicalize(source).with_context(|| format!("resolving {}", source.display()))?;
    let parent_real = std::fs::canonicalize(file::parent_dir(&target))
        .with_context(|| format!("resolving {}", target.display()))?;
    if parent_real.starts_with(&source_real) {
        bail!(
            "cannot copy {} into {}: it lies inside the tree being copied",
            source.display(),
            target.display()
        );
    }
    Ok(target)
}

/// Runs `work`, sampling `bytes` into 1 s intervals meanwhile: what it returned, how long it
/// took, and the intervals. The sampler stops at once when the work ends, so the time ends with
/// the work's last fsync.
pub fn sampled<T>(bytes: &Counter, work: impl FnOnce() -> T) -> (T, Duration, Vec<Interval>) {
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let sampler = scope.spawn(move || {
            let mut clock = IntervalClock::start(crate::measure::DEFAULT_INTERVAL);
            while let Err(mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(Duration::from_millis(100))
            {
                clock.observe(bytes.get());
            }
            clock.finish(bytes.get())
        });
        let done = work();
        drop(stop);
        let (elapsed, intervals) = sampler.join().expect("the sampling thread");
        (done, elapsed, intervals)
    })
}

/// What the walk and the workers found, behind one lock (taken once per file).
#[derive(Default)]
struct State {
    landed: Totals,
    failed: Listed,
    changed: Listed,
    skipped: Listed,
}

/// One tree copy under way.
struct Landing<'a> {
    plan: &'a TreePlan,
    source: &'a Path,
    target: &'a Path,
    bytes: &'a Counter,
    files: &'a Counter,
    state: Mutex<State>,
}

/// A file for a worker to land.
struct Job {
    source: PathBuf,
    destination: PathBuf,
    meta: Metadata,
}

/// Why a file is listed as changed.
pub const CHANGED: &str = "its size or modification time moved while it was read: it landed as \
                           read; copy it again for a settled version";
/// Why a special file is listed as skipped.
pub const SPECIAL: &str = "not a file, directory or link (a fifo, socket or device)";

impl Landing<'_> {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("tree state")
    }

    /// The three walks; how long the copy took (to its last fsync), in 1 s intervals.
    fn run(&self) -> Result<(Duration, Vec<Interval>)> {
        let plan = self.plan;
        let (jobs, queue) = mpsc::sync_channel::<Job>(plan.workers * 8);
        let queue = Mutex::new(queue);
        let ((), elapsed, intervals) = sampled(self.bytes, || {
            std::thread::scope(|scope| {
                let workers: Vec<_> = (0..plan.workers)
                    .map(|_| scope.spawn(|| self.work(&queue)))
                    .collect();
                self.walk(jobs);
                for worker in workers {
                    let _ = worker.join();
                }
            });
            if !interrupt::requested() {
                self.finish_directories();
            }
        });
        interrupt::check()?;
        Ok((elapsed, intervals))
    }

    /// The copying walk: directories made as they come, links landed here, files handed on.
    fn walk(&self, jobs: mpsc::SyncSender<Job>) {
        let mut failed_dir: Option<PathBuf> = None;
        for entry in tree::walk(self.source, false) {
            if interrupt::requested() {
                return;
            }
            let entry = match entry {
                Ok(entry) => entry,
                Err(err) => {
                    let reason = read_error(&err.path, err.error);
                    self.state().failed.add(&err.path, reason);
                    continue;
                }
            };
            // Nothing lands under a directory that could not be made (it may be a link).
            if let Some(dir) = &failed_dir {
                if entry.relative.starts_with(dir) {
                    continue;
                }
                failed_dir = None;
            }
            let source = self.source.join(&entry.relative);
            let destination = join(self.target, &entry.relative);
            match entry.kind {
                Kind::Dir => {
                    if let Err(err) = make_dir(&destination) {
                        self.state()
                            .failed
                            .add(&source, format!("{err:#}; nothing under it was copied"));
                        failed_dir = Some(entry.relative);
                    }
                }
                Kind::File => {
                    read_ahead(&source, entry.meta.len());
                    let job = Job {
                        source,
                        destination,
                        meta: entry.meta,
                    };
                    if jobs.send(job).is_err() {
                        return;
                    }
                }
                Kind::Symlink => {
                    let landed = std::fs::read_link(&source)
                        .map_err(|err| anyhow!(read_error(&source, err)))
                        .and_then(|link| {
                            let kept = Attributes::of(&entry.meta);
                            land_symlink(&destination, &link, &kept, self.plan.force)
                        });
                    match landed {
                        Ok(()) => self.state().landed.symlinks += 1,
                        Err(err) => self.state().failed.add(&source, format!("{err:#}")),
                    }
                }
                Kind::Special => self.state().skipped.add(&source, SPECIAL.into()),
            }
        }
    }

    /// A worker: lands files from `queue` until it is empty and closed, or Ctrl-C.
    fn work(&self, queue: &Mutex<mpsc::Receiver<Job>>) {
        let mut buf = vec![0u8; self.plan.block];
        let rules = Rules::of(self.plan);
        loop {
            let job = match queue.lock().expect("queue").recv() {
                Ok(job) => job,
                Err(_) => return,
            };
            if interrupt::requested() {
                return;
            }
            let size = job.meta.len();
            match land_local(&job, rules, &mut buf, self.bytes) {
                Ok(changed) => {
                    self.files.add(1);
                    let mut state = self.state();
                    state.landed.files += 1;
                    state.landed.bytes += size;
                    if changed {
                        state.changed.add(&job.source, CHANGED.into());
                    }
                }
                Err(err) if err.is::<Interrupted>() => return,
                Err(err) => self.state().failed.add(&job.source, format!("{err:#}")),
            }
        }
    }

    /// Gives every directory its source's mode and times, deepest first (a read-only directory
    /// is made so only once its files are in), fsyncs it with per-file durability, and with
    /// `--fsync end` syncs the destination's file system once.
    fn finish_directories(&self) {
        for entry in tree::walk(self.source, true).flatten() {
            if entry.kind != Kind::Dir {
                continue;
            }
            let destination = join(self.target, &entry.relative);
            match finish_dir(&destination, &Attributes::of(&entry.meta), self.plan.fsync) {
                Ok(true) => self.state().landed.directories += 1,
                Ok(false) => {}
                Err(err) => self.state().failed.add(&destination, format!("{err:#}")),
            }
        }
        if self.plan.fsync == FsyncPolicy::End
            && let Err(err) = sync_end(self.target)
        {
            self.state().failed.add(self.target, format!("{err:#}"));
        }
    }
}

/// Gives a landed directory its mode and times (after everything inside it landed), fsynced
/// first with per-file durability. False when there is no directory there to finish (one that
/// could not be made is already listed).
pub fn finish_dir(destination: &Path, kept: &Attributes, fsync: FsyncPolicy) -> Result<bool> {
    if !std::fs::symlink_metadata(destination).is_ok_and(|meta| meta.is_dir()) {
        return Ok(false);
    }
    if fsync == FsyncPolicy::Each {
        file::sync_dir(destination);
    }
    tree::keep_dir_metadata(destination, kept)
        .map_err(|err| anyhow!("could not set its mode and times: {err}"))?;
    Ok(true)
}

/// `--fsync end`: one syncfs of the file system `target` is on, and its parent's entry.
pub fn sync_end(target: &Path) -> Result<()> {
    let synced = File::open(target).and_then(|dir| crate::sys::fs::syncfs(&dir));
    if let Err(err) = synced {
        bail!("syncfs failed: what landed may not be on the disk ({err})");
    }
    file::sync_dir(&file::parent_dir(target));
    Ok(())
}

/// `root` joined with a path below it; the root itself for "".
pub fn join(root: &Path, relative: &Path) -> PathBuf {
    match relative.as_os_str().is_empty() {
        true => root.to_path_buf(),
        false => root.join(relative),
    }
}

/// A reason a source entry could not be read, saying what to do.
pub fn read_error(path: &Path, err: io::Error) -> String {
    match err.kind() {
        io::ErrorKind::PermissionDenied => {
            "permission denied: it cannot be read by this user (run as its owner, or chmod it)"
                .into()
        }
        io::ErrorKind::NotFound => "it vanished while the tree was copied".into(),
        _ => format!("cannot read it: {err} ({})", path.display()),
    }
}

/// Makes a directory of the tree, or takes the one there. Errors: something else has the name.
pub fn make_dir(path: &Path) -> Result<()> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            match std::fs::symlink_metadata(path) {
                Ok(meta) if meta.is_dir() => Ok(()),
                _ => bail!(
                    "{} exists and is not a directory: move it away to copy the tree",
                    path.display()
                ),
            }
        }
        Err(err) => bail!(
            "cannot create the directory {}",
            file::describe_path_error(path, err)
        ),
    }
}

/// Whether `destination` may take a new file or link: absent, or present and `force`.
pub fn may_replace(destination: &Path, force: bool) -> Result<()> {
    match std::fs::symlink_metadata(destination) {
        Ok(meta) if meta.is_dir() => bail!(
            "{} exists and is a directory: it is not replaced",
            destination.display()
        ),
        Ok(_) if !force => bail!(
            "{} already exists: add --force to replace it",
            destination.display()
        ),
        Ok(_) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => bail!("{}", file::describe_path_error(destination, err)),
    }
}

/// The temporary name a file or link lands under beside `destination`, cleared of any left by a
/// copy that was killed.
fn partial(destination: &Path) -> Result<PartialFile> {
    let temp = file::partial_path(destination)
        .ok_or_else(|| anyhow!("{} does not name a file", destination.display()))?;
    match std::fs::remove_file(&temp) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => bail!("{}", file::describe_path_error(&temp, err)),
    }
    Ok(PartialFile::new(temp))
}

/// How files land: whether one already there is replaced, when they are made durable, whether
/// each is read back.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub force: bool,
    pub fsync: FsyncPolicy,
    pub verify: bool,
}

impl Rules {
    pub fn of(plan: &TreePlan) -> Rules {
        Rules {
            force: plan.force,
            fsync: plan.fsync,
            verify: plan.verify,
        }
    }
}

/// How the source of a file ended, once read to its end.
#[derive(Debug, Clone, Copy, Default)]
pub struct SourceEnd {
    /// Its size or modification time moved while it was read.
    pub changed: bool,
    /// The xxh3-128 its reader computed (a peer's), for the landed file to match; None: what
    /// arrived here is the reference.
    pub digest: Option<u128>,
}

/// Where the bytes of one file come from: a file here, or a peer's record of one.
pub trait FileSource: Read {
    /// Called once the reads reached the end: how the source ended. Errors: the source failed
    /// (the file is not landed).
    fn end(&mut self) -> Result<SourceEnd>;
    /// A read error, as a sentence about the source.
    fn read_failed(&self, err: io::Error) -> anyhow::Error;
}

/// A file of this machine being read for a copy.
struct LocalSource<'a> {
    file: File,
    path: &'a Path,
    meta: &'a Metadata,
}

impl Read for LocalSource<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

impl FileSource for LocalSource<'_> {
    fn end(&mut self) -> Result<SourceEnd> {
        let after = self.file.metadata().map_err(|err| self.read_failed(err))?;
        Ok(SourceEnd {
            changed: tree::stamp(&after) != tree::stamp(self.meta),
            digest: None,
        })
    }

    fn read_failed(&self, err: io::Error) -> anyhow::Error {
        anyhow!(read_error(self.path, err))
    }
}

/// Opens a file of a tree to read it; a file swapped for a link after the walk is not followed
/// out of the tree (O_NOFOLLOW).
pub fn open_source(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|err| anyhow!(read_error(path, err)))
}

/// Bytes of each queued file the walk asks the disk for ahead of its reader.
pub const READ_AHEAD: u64 = 1 << 20;

/// Asks the kernel to start reading the first [`READ_AHEAD`] bytes of the file at `path` of
/// `len` bytes (POSIX_FADV_WILLNEED), and returns at once: the walk calls it as it queues each
/// file, so a cold tree of small files is read as many files deep as the queue holds, not one
/// per reader (a disk answers several reads at once far sooner than one after another; a
/// larger file's rest is left to the kernel's own sequential read-ahead). Failures are
/// ignored: the reader opens the file again and reports them.
pub fn read_ahead(path: &Path, len: u64) {
    // O_NONBLOCK: a file swapped for a fifo after the walk does not hold the walk up.
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    if let Ok(file) = opened {
        let _ =
            crate::sys::fs::fadvise_range(&file, 0, len.min(READ_AHEAD), libc::POSIX_FADV_WILLNEED);
    }
}

/// Lands one file of a local copy: whether it changed while it was read.
fn land_local(job: &Job, rules: Rules, buf: &mut [u8], bytes: &Counter) -> Result<bool> {
    may_replace(&job.destination, rules.force)?;
    let mut source = LocalSource {
        file: open_source(&job.source)?,
        path: &job.source,
        meta: &job.meta,
    };
    let kept = Attributes::of(&job.meta);
    land_file(&job.destination, &kept, rules, &mut source, buf, bytes)
}

/// Lands one file (the caller checked [`may_replace`]): read from `source` in blocks of
/// `buf`, written under its temporary name, mode and times kept, fsynced (per `rules.fsync`),
/// read back and compared when `rules.verify`, renamed into place. Whether it changed while it
/// was read. Errors: the source failed, it cannot be written, Ctrl-C; nothing is left under
/// the final name or the temporary one.
pub fn land_file(
    destination: &Path,
    kept: &Attributes,
    rules: Rules,
    source: &mut dyn FileSource,
    buf: &mut [u8],
    bytes: &Counter,
) -> Result<bool> {
    let partial = partial(destination)?;
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(partial.path())
        .map_err(|err| {
            anyhow!(
                "cannot create {}",
                file::describe_path_error(partial.path(), err)
            )
        })?;
    let mut digest = rules.verify.then(xxhash_rust::xxh3::Xxh3::new);
    loop {
        let n = match source.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(source.read_failed(err)),
        };
        out.write_all(&buf[..n])
            .map_err(|err| anyhow!("writing {}: {err}", destination.display()))?;
        if let Some(digest) = digest.as_mut() {
            digest.update(&buf[..n]);
        }
        bytes.add(n as u64);
        interrupt::check()?;
    }
    let end = source.end()?;
    tree::keep_file_metadata(&out, kept).map_err(|err| {
        anyhow!(
            "setting the mode and times of {}: {err}",
            destination.display()
        )
    })?;
    if rules.fsync == FsyncPolicy::Each || rules.verify {
        out.sync_all()
            .map_err(|err| anyhow!("fsync of {}: {err}", destination.display()))?;
    }
    drop(out);
    if let Some(digest) = digest {
        let arrived = digest.digest128();
        let read = end.digest.unwrap_or(arrived);
        if read != arrived {
            bail!(
                "the sender read xxh3-128 {read:032x} but {arrived:032x} arrived; it was discarded"
            );
        }
        reread(partial.path(), read, buf)
            .with_context(|| format!("verifying {}", destination.display()))?;
    }
    std::fs::rename(partial.path(), destination)
        .map_err(|err| anyhow!("renaming into {}: {err}", destination.display()))?;
    partial.keep();
    Ok(end.changed)
}

/// Reads a landed (fsynced) file back past this machine's cache and compares its digest.
fn reread(path: &Path, read: u128, buf: &mut [u8]) -> Result<()> {
    let mut landed = File::open(path)?;
    crate::file::cache::drop_from_cache(&landed)?;
    let mut digest = xxhash_rust::xxh3::Xxh3::new();
    loop {
        match landed.read(buf) {
            Ok(0) => break,
            Ok(n) => digest.update(&buf[..n]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err.into()),
        }
    }
    let landed = digest.digest128();
    if landed != read {
        bail!(
            "what was read has xxh3-128 {read:032x} but the landed file reads back as \
             {landed:032x}; it was discarded"
        );
    }
    Ok(())
}

/// Lands a link as a link to `link` (its target as written, never followed), with its own
/// times: made under a temporary name, then renamed over the final one (which replaces a link
/// there rather than following it).
pub fn land_symlink(destination: &Path, link: &Path, kept: &Attributes, force: bool) -> Result<()> {
    may_replace(destination, force)?;
    let partial = partial(destination)?;
    std::os::unix::fs::symlink(link, partial.path())
        .map_err(|err| anyhow!("cannot create the link {}: {err}", destination.display()))?;
    // Not every file system keeps a link's own times; the link itself is what matters.
    let _ = tree::keep_symlink_times(partial.path(), kept);
    std::fs::rename(partial.path(), destination)
        .map_err(|err| anyhow!("renaming into {}: {err}", destination.display()))?;
    partial.keep();
    Ok(())
}
