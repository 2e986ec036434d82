//! Local disk baselines: sequential write (timed through fsync) and read, O_DIRECT by default.
//!
//! The sequential passes here also fill `gen`'s files, so a test file is written exactly the way
//! the write baseline writes.

pub mod buffer;
pub mod durability;
mod engine;
pub mod testfile;
mod uring;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;

pub use buffer::{ALIGN, AlignedBuf};
pub use engine::{Completion, Engine, EngineChoice, EngineKind, Op, Submission};
pub use testfile::{FillMode, GenOptions, Generated, generate};

use crate::classes::{self, Access, DevicePlacement, LinkPlacement};
use crate::file::{self, PartialFile};
use crate::interrupt::{self, Interrupted};
use crate::measure::{
    Conditions, Counter, DEFAULT_INTERVAL, Interval, IntervalClock, Measurement, Watcher, Workload,
    watch,
};
use crate::payload::StampedFill;
use crate::warning::Warning;

/// Block size and queue depth of a sequential pass (fio's `--bs` and `--iodepth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pattern {
    pub block: usize,
    pub depth: usize,
}

/// Largest block accepted: beyond this, bigger blocks buy nothing and cost memory.
pub const MAX_BLOCK: usize = 64 << 20;
/// Most blocks in flight; with MAX_BLOCK this bounds buffer memory too.
pub const MAX_DEPTH: usize = 1024;
/// Most buffer memory one pass may hold (block × depth).
pub const MAX_BUFFER_MEMORY: usize = 1 << 30;

impl Pattern {
    /// Refuses patterns that O_DIRECT cannot do or that would need unbounded memory.
    pub fn validate(&self, direct: bool) -> Result<()> {
        if self.depth == 0 {
            bail!("--iodepth 0: at least one block must be in flight; try --iodepth 8");
        }
        if self.depth > MAX_DEPTH {
            bail!("--iodepth {} is more than {MAX_DEPTH}", self.depth);
        }
        if self.block == 0 || self.block > MAX_BLOCK {
            bail!("--bs {} is out of range: give 4K to 64M", self.block);
        }
        if direct && !self.block.is_multiple_of(ALIGN) {
            bail!(
                "--bs {} is not a multiple of 4096, which O_DIRECT needs: try --bs 1M",
                self.block
            );
        }
        if self.block.saturating_mul(self.depth) > MAX_BUFFER_MEMORY {
            bail!(
                "--bs {} × --iodepth {} needs more than 1 GiB of buffers: lower one of them",
                self.block,
                self.depth
            );
        }
        Ok(())
    }

    /// The conditions of a pass driven with this pattern on a file at `on`.
    pub fn conditions(
        &self,
        direct: bool,
        fsync_included: bool,
        engine: &Engine,
        on: &Path,
    ) -> Conditions {
        Conditions {
            direct,
            fsync_included,
            engine: Some(engine.kind()),
            ring_flags: engine.ring_flags().map(|flags| flags.names()),
            block_size: Some(self.block as u64),
            iodepth: Some(self.depth),
            mount: Some(crate::mounts::facts(on)),
            ..Conditions::default()
        }
    }

    /// Bytes of I/O for a block of `len` bytes: O_DIRECT needs whole pages, so with page-sized
    /// blocks the tail block is padded (the file is truncated after writing; reads stop at EOF).
    fn io_len(&self, len: usize) -> usize {
        if self.block.is_multiple_of(ALIGN) {
            buffer::round_up(len, ALIGN)
        } else {
            len
        }
    }
}

/// Writes the payload into a block just before it is submitted.
pub type Fill<'a> = &'a mut dyn FnMut(&mut [u8]);

/// The outcome of one sequential pass.
#[derive(Debug, Clone)]
pub struct Pass {
    pub bytes: u64,
    pub elapsed: Duration,
    pub intervals: Vec<Interval>,
}

impl Pass {
    pub fn into_measurement(self, workload: Workload, conditions: Conditions) -> Measurement {
        Measurement::new(
            workload,
            self.bytes,
            self.elapsed,
            conditions,
            self.intervals,
        )
    }
}

/// Writes `size` bytes from offset 0, `depth` blocks in flight, then fsyncs; the time includes the fsync.
/// `fill` writes the payload into each block before it is submitted.
pub fn write_sequential(
    engine: &mut Engine,
    file: &File,
    size: u64,
    pattern: Pattern,
    fill: Fill<'_>,
    progress: &Counter,
) -> Result<Pass> {
    let clock = IntervalClock::start(DEFAULT_INTERVAL);
    let moved = sequential(engine, size, pattern, Some(fill), progress, clock)?;
    if !size.is_multiple_of(ALIGN as u64) {
        file.set_len(size)
            .context("truncating the padded tail block")?;
    }
    file.sync_all().context("fsync")?;
    Ok(moved.finish())
}

/// Reads up to `size` bytes from offset 0 (fewer if the file is shorter), `depth` blocks in flight.
pub fn read_sequential(
    engine: &mut Engine,
    size: u64,
    pattern: Pattern,
    progress: &Counter,
) -> Result<Pass> {
    let clock = IntervalClock::start(DEFAULT_INTERVAL);
    Ok(sequential(engine, size, pattern, None, progress, clock)?.finish())
}

/// Bytes moved by a sequential pass, with its clock still running (a write adds its fsync).
struct Moved {
    bytes: u64,
    clock: IntervalClock,
}

impl Moved {
    fn finish(self) -> Pass {
        let (elapsed, intervals) = self.clock.finish(self.bytes);
        Pass {
            bytes: self.bytes,
            elapsed,
            intervals,
        }
    }
}

/// The sequential pass behind both directions: writes when `fill` is given, reads otherwise.
/// Keeps `depth` blocks in flight, and refills every block that completed in one go, so the
/// io_uring engine submits them in one batch the block layer can merge, as fio does. A write
/// fills one block more while the others are in flight, so making random data overlaps the
/// disk's work instead of following it (at depth 1 it would cost a fifth of the rate).
fn sequential(
    engine: &mut Engine,
    size: u64,
    pattern: Pattern,
    mut fill: Option<Fill<'_>>,
    progress: &Counter,
    mut clock: IntervalClock,
) -> Result<Moved> {
    let spare = usize::from(fill.is_some());
    let mut pool: Vec<AlignedBuf> = (0..pattern.depth + spare)
        .map(|_| AlignedBuf::new(pattern.block))
        .collect();
    let (mut next_offset, mut in_flight, mut done) = (0u64, 0usize, 0u64);
    let mut failure: Option<anyhow::Error> = None;
    let mut end_of_file = false;
    // A block made ready (filled, for a write) but not yet submitted.
    let mut ready: Option<Submission> = None;
    loop {
        while failure.is_none() && !end_of_file && in_flight < pattern.depth {
            if interrupt::requested() {
                failure = Some(Interrupted.into());
                break;
            }
            let Some(request) = ready
                .take()
                .or_else(|| next_block(&mut pool, &mut next_offset, size, pattern, fill.as_mut()))
            else {
                break;
            };
            engine.submit(request)?;
            in_flight += 1;
            // A block goes to the kernel before the CPU turns to filling the next one.
            if fill.is_some() {
                engine.flush()?;
            }
        }
        if failure.is_none() && ready.is_none() && fill.is_some() {
            ready = next_block(&mut pool, &mut next_offset, size, pattern, fill.as_mut());
        }
        if in_flight == 0 {
            break;
        }
        let mut completion = Some(engine.wait()?);
        while let Some(finished) = completion {
            in_flight -= 1;
            match finished.result {
                Ok(n) => {
                    let counted = (n as u64).min(size - finished.offset);
                    end_of_file |= n == 0;
                    done += counted;
                    progress.add(counted);
                    clock.observe(done);
                }
                Err(err) => {
                    let (verb, offset) = (
                        if fill.is_some() { "writing" } else { "reading" },
                        finished.offset,
                    );
                    failure.get_or_insert_with(|| {
                        anyhow!(err).context(format!("{verb} at offset {offset}"))
                    });
                }
            }
            pool.push(finished.buf);
            completion = engine.try_next();
        }
    }
    match failure {
        Some(failure) => Err(failure),
        None => Ok(Moved { bytes: done, clock }),
    }
}

/// The next block of a sequential pass, from the pool: filled for a write (with `fill`), or
/// an empty read of its length. None at the end of the pass or with no buffer free.
fn next_block(
    pool: &mut Vec<AlignedBuf>,
    next_offset: &mut u64,
    size: u64,
    pattern: Pattern,
    fill: Option<&mut Fill<'_>>,
) -> Option<Submission> {
    if *next_offset >= size {
        return None;
    }
    let mut buf = pool.pop()?;
    let len = (size - *next_offset).min(pattern.block as u64) as usize;
    let io_len = pattern.io_len(len);
    let op = match fill {
        Some(fill) => {
            fill(&mut buf.full_mut()[..io_len]);
            buf.set_len(io_len);
            Op::Write
        }
        None => Op::Read { len: io_len },
    };
    let request = Submission {
        op,
        offset: *next_offset,
        buf,
    };
    *next_offset += len as u64;
    Some(request)
}

/// Which passes `xferbench disk` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passes {
    WriteThenRead,
    ReadOnly,
    WriteOnly,
}

/// What `xferbench disk` was asked to do.
#[derive(Debug, Clone)]
pub struct BaselineOptions {
    /// A directory to write a test file in, or an existing file to read.
    pub path: PathBuf,
    /// Test size; for an existing file, defaults to its length.
    pub size: Option<u64>,
    pub pattern: Pattern,
    pub direct: bool,
    /// A buffered read is preceded by dropping the file from the page cache (fio's
    /// `invalidate=1`); false keeps what is cached, and the figure is marked as the cache's.
    pub evict: bool,
    pub engine: EngineChoice,
    pub passes: Passes,
}

/// Default size of the test file written in a directory.
pub const DEFAULT_TEST_SIZE: u64 = 4 << 30;

/// A disk figure placed against the device and link classes.
#[derive(Debug, Clone, Serialize)]
pub struct PlacedMeasurement {
    #[serde(flatten)]
    pub measurement: Measurement,
    pub device_class: DevicePlacement,
    pub link_class: LinkPlacement,
}

impl PlacedMeasurement {
    pub fn new(measurement: Measurement) -> PlacedMeasurement {
        let access = if measurement.workload == Workload::DiskRead {
            Access::Read
        } else {
            Access::Write
        };
        PlacedMeasurement {
            device_class: classes::place_device(measurement.rate(), access),
            link_class: classes::place_link(measurement.rate()),
            measurement,
        }
    }
}

/// The result of `xferbench disk`.
#[derive(Debug, Clone, Serialize)]
pub struct Baseline {
    pub path: PathBuf,
    /// The file that was written and read (removed afterwards when it was a test file).
    pub test_file: PathBuf,
    pub engine: EngineKind,
    pub measurements: Vec<PlacedMeasurement>,
    /// The durability probe, when asked for (`disk --durability`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub durability: Option<durability::Durability>,
    pub warnings: Vec<Warning>,
}

/// Runs the local baseline the options ask for.
pub fn baseline(options: &BaselineOptions, watcher: &dyn Watcher) -> Result<Baseline> {
    options.pattern.validate(options.direct)?;
    let path = &options.path;
    let meta =
        std::fs::metadata(path).map_err(|err| anyhow!(file::describe_path_error(path, err)))?;
    let mut warnings = Vec::new();
    if file::is_tmpfs(path) {
        warnings.push(Warning::MemoryFileSystem { path: path.clone() });
    }
    if meta.is_dir() {
        if options.passes == Passes::ReadOnly {
            bail!(
                "{} is a directory: --read-only needs an existing file to read",
                path.display()
            );
        }
        baseline_in_dir(options, warnings, watcher)
    } else if meta.is_file() {
        if options.passes == Passes::WriteOnly {
            bail!(
                "{} is an existing file: a write test needs a directory to create its own file in (xferbench never overwrites your files)",
                path.display()
            );
        }
        baseline_of_file(options, meta.len(), warnings, watcher)
    } else {
        bail!(
            "{} is neither a directory nor a regular file",
            path.display()
        );
    }
}

fn baseline_in_dir(
    options: &BaselineOptions,
    mut warnings: Vec<Warning>,
    watcher: &dyn Watcher,
) -> Result<Baseline> {
    let size = options.size.unwrap_or(DEFAULT_TEST_SIZE);
    if size < options.pattern.block as u64 {
        bail!(
            "--size {size} is smaller than one block (--bs {}): give a larger --size",
            options.pattern.block
        );
    }
    let dir = &options.path;
    file::ensure_room(dir, size)?;
    let test_path = dir.join(format!(".xferbench-disk-{}.tmp", std::process::id()));
    let guard = PartialFile::new(test_path.clone());
    let (handle, direct) = file::create_new(&test_path, options.direct)?;
    if options.direct && !direct {
        warnings.push(Warning::DirectUnsupported { path: dir.clone() });
    }
    file::allocate(&handle, &test_path, size)?;
    let mut engine = start_blocking_engine(
        options.engine,
        &handle,
        &test_path,
        options.pattern.depth,
        &mut warnings,
    )?;
    let write_conditions = options.pattern.conditions(direct, true, &engine, dir);
    let mut payload = StampedFill::new(options.pattern.block);
    let written = watch(watcher, "write", size, |counter| {
        write_sequential(
            &mut engine,
            &handle,
            size,
            options.pattern,
            &mut |b| payload.fill(b),
            counter,
        )
    })
    .with_context(|| format!("write test on {}", test_path.display()))?;
    let mut measurements =
        vec![written.into_measurement(Workload::DiskWrite, write_conditions.clone())];

    if options.passes == Passes::WriteThenRead {
        let mut read_conditions = Conditions {
            fsync_included: false,
            ..write_conditions
        };
        if !direct {
            read_conditions.cached_before =
                Some(evict(&handle, &test_path, options.evict, &mut warnings)?);
        }
        let read = watch(watcher, "read", size, |counter| {
            read_sequential(&mut engine, size, options.pattern, counter)
        })
        .with_context(|| format!("read test on {}", test_path.display()))?;
        measurements.push(read.into_measurement(Workload::DiskRead, read_conditions));
    }
    for measurement in &mut measurements {
        hold_to_the_disk(measurement, dir);
    }
    let engine_kind = engine.kind();
    drop(engine);
    drop(handle);
    drop(guard); // removes the test file
    Ok(Baseline {
        path: options.path.clone(),
        test_file: test_path,
        engine: engine_kind,
        measurements: measurements
            .into_iter()
            .map(PlacedMeasurement::new)
            .collect(),
        durability: None,
        warnings,
    })
}

/// Reads `size` bytes of `source` and writes as many random bytes to a new file in `dir` at the
/// same time, each with its own engine (`pattern`'s block and depth, O_DIRECT), then fsyncs: how
/// one disk serves a copy whose two ends it holds. The figure is `size` over the time until both
/// are done (the write through its fsync); its intervals are the write's. The file is removed.
///
/// Errors: `source` shorter than `size` or unreadable, no room in `dir`, an I/O error.
pub fn read_while_writing(
    source: &Path,
    dir: &Path,
    size: u64,
    pattern: Pattern,
    watcher: &dyn Watcher,
) -> Result<Measurement> {
    pattern.validate(true)?;
    let (read_handle, read_direct) = file::open_read(source, true)?;
    let len = read_handle.metadata()?.len();
    if len < size {
        bail!(
            "{} holds {len} bytes, fewer than the {size} to read",
            source.display()
        );
    }
    file::ensure_room(dir, size)?;
    let test_path = dir.join(format!(".xferbench-disk-{}.tmp", std::process::id()));
    let guard = PartialFile::new(test_path.clone());
    let (write_handle, write_direct) = file::create_new(&test_path, true)?;
    file::allocate(&write_handle, &test_path, size)?;
    let mut ignored = Vec::new();
    let mut reader = start_blocking_engine(
        EngineChoice::Auto,
        &read_handle,
        source,
        pattern.depth,
        &mut ignored,
    )?;
    let mut writer = start_blocking_engine(
        EngineChoice::Auto,
        &write_handle,
        &test_path,
        pattern.depth,
        &mut ignored,
    )?;
    let conditions = Conditions {
        direct: read_direct && write_direct,
        ..pattern.conditions(true, true, &writer, dir)
    };
    let (read, written) = watch(watcher, "read+write", 2 * size, |counter| {
        std::thread::scope(|scope| {
            let reading = scope.spawn(|| read_sequential(&mut reader, size, pattern, counter));
            let mut payload = StampedFill::new(pattern.block);
            let written = write_sequential(
                &mut writer,
                &write_handle,
                size,
                pattern,
                &mut |b| payload.fill(b),
                counter,
            );
            let read = reading
                .join()
                .unwrap_or_else(|_| Err(anyhow!("the reading thread panicked")));
            (read, written)
        })
    });
    let read = read.with_context(|| format!("reading {} while writing", source.display()))?;
    let written =
        written.with_context(|| format!("writing {} while reading", test_path.display()))?;
    drop((reader, writer, write_handle));
    drop(guard);
    // Both started together: the pair took as long as the slower of the two.
    let elapsed = read.elapsed.max(written.elapsed);
    let mut measurement = Measurement::new(
        Workload::DiskReadWrite,
        size,
        elapsed,
        conditions,
        written.intervals,
    );
    hold_to_the_disk(&mut measurement, dir);
    Ok(measurement)
}

/// Marks a disk figure that cannot be the disk's: a file on tmpfs (memory), a buffered read
/// mostly answered by the page cache, a rate above the device's interface, or a write to a share
/// above the negotiated speed of the link to its server.
pub fn hold_to_the_disk(measurement: &mut Measurement, path: &Path) {
    // The null engine's figure is the engine's own: it never claims to be a disk's.
    if measurement.conditions.engine == Some(EngineKind::Null) {
        return;
    }
    // A write to a share crosses its link (never tmpfs, never a read the page cache answered).
    if let Some(link) = share_link(measurement) {
        measurement.hold_to(Some(&link), ACKNOWLEDGED_FASTER_THAN_THE_LINK);
        return;
    }
    let cached = measurement.conditions.cached_before.unwrap_or(0.0);
    if file::is_tmpfs(path) {
        measurement.suspect =
            Some("the file is on tmpfs: this is memory speed, not a disk's".into());
    } else if cached > 0.5 {
        measurement.suspect = Some(format!(
            "{:.0}% of the file was in the page cache before the read: this is mostly memory \
             speed, not the disk's",
            cached * 100.0
        ));
    } else {
        measurement.hold_to(
            crate::ceiling::of_path(path).as_ref(),
            "a cache answered, not the disk",
        );
    }
}

/// Why a write to a share that ran faster than the link to its server is not the NAS's disk.
pub const ACKNOWLEDGED_FASTER_THAN_THE_LINK: &str = "acknowledged by an async export or a \
    write-back cache; data is not on the NAS's disk when the write returns";

/// The link a write to a network share crosses, where it negotiated a known speed (the mount
/// facts the figure carries say which); None for reads, local disks and virtual links (veth).
fn share_link(measurement: &Measurement) -> Option<crate::ceiling::Ceiling> {
    if !matches!(
        measurement.workload,
        Workload::DiskWrite | Workload::DiskReadWrite
    ) {
        return None;
    }
    measurement.conditions.mount.as_ref()?.link_ceiling()
}

fn baseline_of_file(
    options: &BaselineOptions,
    len: u64,
    mut warnings: Vec<Warning>,
    watcher: &dyn Watcher,
) -> Result<Baseline> {
    let path = &options.path;
    let size = match options.size {
        Some(size) if size > len => bail!(
            "--size {size} is larger than {} ({len} bytes): leave --size out to read the whole file",
            path.display()
        ),
        Some(size) => size,
        None => len,
    };
    if size == 0 {
        bail!("{} is empty: nothing to read", path.display());
    }
    let (handle, direct) = file::open_read(path, options.direct)?;
    if options.direct && !direct {
        warnings.push(Warning::DirectUnsupported { path: path.clone() });
    }
    warnings.extend(file::unwritten_warning(&handle, path));
    let mut engine = start_blocking_engine(
        options.engine,
        &handle,
        path,
        options.pattern.depth,
        &mut warnings,
    )?;
    let mut conditions = options.pattern.conditions(direct, false, &engine, path);
    if !direct {
        conditions.cached_before = Some(evict(&handle, path, options.evict, &mut warnings)?);
    }
    let read = watch(watcher, "read", size, |counter| {
        read_sequential(&mut engine, size, options.pattern, counter)
    })
    .with_context(|| format!("reading {}", path.display()))?;
    let mut measurement = read.into_measurement(Workload::DiskRead, conditions);
    hold_to_the_disk(&mut measurement, path);
    Ok(Baseline {
        path: path.clone(),
        test_file: path.clone(),
        engine: engine.kind(),
        measurements: vec![PlacedMeasurement::new(measurement)],
        durability: None,
        warnings,
    })
}

/// [`start_engine`] for a caller that waits on one thread (the sequential passes): io_uring is
/// driven from that thread, as fio drives it.
pub fn start_blocking_engine(
    choice: EngineChoice,
    handle: &File,
    path: &Path,
    depth: usize,
    warnings: &mut Vec<Warning>,
) -> Result<Engine> {
    started(
        Engine::start_blocking(choice, handle, depth),
        path,
        warnings,
    )
}

/// Starts the engine on an open file; a fallback from io_uring to psync becomes a warning.
pub fn start_engine(
    choice: EngineChoice,
    handle: &File,
    path: &Path,
    depth: usize,
    warnings: &mut Vec<Warning>,
) -> Result<Engine> {
    started(Engine::start(choice, handle, depth), path, warnings)
}

fn started(
    started: std::io::Result<(Engine, Option<String>)>,
    path: &Path,
    warnings: &mut Vec<Warning>,
) -> Result<Engine> {
    let (engine, fallback) =
        started.with_context(|| format!("starting the disk engine on {}", path.display()))?;
    warnings.extend(fallback.map(|reason| Warning::EngineFallback { reason }));
    Ok(engine)
}

/// Drops a file from the page cache before a buffered read (unless told to keep it); warns
/// about what stayed cached, and returns that fraction.
fn evict(handle: &File, path: &Path, drop: bool, warnings: &mut Vec<Warning>) -> Result<f64> {
    if drop {
        file::cache::drop_from_cache(handle)
            .with_context(|| format!("dropping {} from the page cache", path.display()))?;
    }
    let cached = file::cache::cached_fraction(handle).unwrap_or(0.0);
    // tmpfs pages are the file itself: the tmpfs warning already says the figure is memory.
    if cached > 0.01 && !file::is_tmpfs(path) {
        warnings.push(Warning::Cached {
            path: path.to_path_buf(),
            percent: cached * 100.0,
        });
    }
    Ok(cached)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mounts::{Interface, MountFacts};

    /// A write of `mb_s` MB/s to a file system of `fs_type` whose link is at `speed_mbit_s`.
    fn write_to(fs_type: &str, speed_mbit_s: Option<u64>, mb_s: u64) -> Measurement {
        let mount = MountFacts {
            fs_type: fs_type.into(),
            interface: Some(Interface {
                name: "eth0".into(),
                mtu: Some(1500),
                speed_mbit_s,
            }),
            ..MountFacts::default()
        };
        let conditions = Conditions {
            fsync_included: true,
            mount: Some(mount),
            ..Conditions::default()
        };
        let elapsed = Duration::from_secs(4);
        Measurement::new(
            Workload::DiskWrite,
            mb_s * 4_000_000,
            elapsed,
            conditions,
            Vec::new(),
        )
    }

    #[test]
    fn a_share_write_faster_than_its_link_is_marked_as_a_cache_and_one_under_it_stands() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        // 1000 Mb/s carries 125 MB/s.
        let mut fast = write_to("nfs4", Some(1000), 400);
        hold_to_the_disk(&mut fast, dir);
        let said = fast.suspect.expect("a write above the link is marked");
        assert!(said.contains("eth0 at 1000 Mb/s"), "{said}");
        assert!(said.ends_with(ACKNOWLEDGED_FASTER_THAN_THE_LINK), "{said}");

        let mut slow = write_to("cifs", Some(1000), 110);
        hold_to_the_disk(&mut slow, dir);
        assert_eq!(slow.suspect, None);
    }

    #[test]
    fn a_share_write_on_a_link_of_unknown_speed_or_a_read_is_not_held_to_the_link() {
        assert!(share_link(&write_to("nfs4", None, 400)).is_none());

        let mut read = write_to("nfs4", Some(1000), 400);
        read.workload = Workload::DiskRead;
        assert!(share_link(&read).is_none());
        // A local file system's interface (none in real facts) is never a link to a server.
        assert!(share_link(&write_to("ext4", Some(1000), 400)).is_none());
    }
}
