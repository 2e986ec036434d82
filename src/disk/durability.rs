//! Whether a write is on the disk when it returns. The same amount is written three ways: through
//! the page cache then one fsync, with O_DIRECT then fsync, and with O_DSYNC (each write stable
//! before it returns). Stable writes that run as fast as the others mean nothing waited for the
//! medium: an NFS `async` export, a write-back cache, or a disk whose cache survives power loss.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;

use super::{EngineChoice, Pattern, start_blocking_engine, write_sequential};
use crate::file::{self, PartialFile};
use crate::measure::{Conditions, Measurement, Watcher, Workload, watch};
use crate::payload::StampedFill;
use crate::warning::Warning;

/// Stable writes at this fraction of the buffered rate or more count as not waiting for the
/// medium. From this probe on the lab VM's NFS 4.2 export (ext4 on a loop device whose writes
/// take 10 ms more, `--nas-disk-delay 10`; emulated CPU), 4 MiB blocks, 64–256 MiB, 9 runs
/// each: a `sync` export ran O_DSYNC at 0.24–0.48 of fsync-at-end, an `async` one at 0.73–1.42
/// (the client still waits for each stable write's reply in turn). 0.6 sits in the middle of
/// the gap; the earlier 0.7, from single dd runs (0.43 sync, 1.23 async), did not reproduce
/// (dd gave 0.48 and 0.44 in one pair of runs on the undelayed export).
pub const STABLE_AS_FAST: f64 = 0.6;

/// The most a probe writes each way: three writes of it come after a baseline's own.
pub const DURABILITY_MAX_SIZE: u64 = 1 << 30;

/// What a durability probe writes.
#[derive(Debug, Clone)]
pub struct DurabilityOptions {
    /// The directory the probe's files are written in (and removed from).
    pub dir: PathBuf,
    /// Bytes written each way.
    pub size: u64,
    pub pattern: Pattern,
    pub engine: EngineChoice,
}

/// The three writes and what they say together.
#[derive(Debug, Clone, Serialize)]
pub struct Durability {
    /// Through the page cache, then one fsync (timed through it).
    pub fsync_at_end: Measurement,
    /// O_DIRECT, then fsync; None where the file system refuses O_DIRECT.
    pub direct: Option<Measurement>,
    /// O_DSYNC through the page cache: each write stable before it returns.
    pub dsync: Measurement,
    /// O_DSYNC's rate ÷ fsync-at-end's.
    pub stable_ratio: f64,
    /// Stable writes ran at [`STABLE_AS_FAST`] of the others or faster: the medium was not
    /// waited for (or its cache is protected).
    pub stable_as_fast: bool,
    pub warnings: Vec<Warning>,
}

/// Writes `options.size` bytes three ways in `options.dir`, each to a file of its own that is
/// removed after. Errors: the directory cannot take the files, or a write fails.
pub fn probe(options: &DurabilityOptions, watcher: &dyn Watcher) -> Result<Durability> {
    options.pattern.validate(true)?;
    if !options.dir.is_dir() {
        anyhow::bail!(
            "{} is not a directory: the durability probe writes files of its own in a directory",
            options.dir.display()
        );
    }
    file::ensure_room(&options.dir, options.size)?;
    let mut warnings = Vec::new();
    let fsync_at_end = write_once(options, Way::Buffered, watcher, &mut warnings)?
        .expect("buffered writes are always possible");
    let direct = write_once(options, Way::Direct, watcher, &mut warnings)?;
    let dsync = write_once(options, Way::Dsync, watcher, &mut warnings)?
        .expect("O_DSYNC writes are always possible");
    let stable_ratio = if fsync_at_end.bytes_per_sec > 0.0 {
        dsync.bytes_per_sec / fsync_at_end.bytes_per_sec
    } else {
        0.0
    };
    Ok(Durability {
        fsync_at_end,
        direct,
        dsync,
        stable_ratio,
        stable_as_fast: stable_ratio >= STABLE_AS_FAST,
        warnings,
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Way {
    Buffered,
    Direct,
    Dsync,
}

/// One way's write, None for O_DIRECT where the file system refuses it.
fn write_once(
    options: &DurabilityOptions,
    way: Way,
    watcher: &dyn Watcher,
    warnings: &mut Vec<Warning>,
) -> Result<Option<Measurement>> {
    let path = options.dir.join(format!(
        ".xferbench-durability-{}-{way:?}.tmp",
        std::process::id()
    ));
    let _guard = PartialFile::new(path.clone());
    let (handle, direct) = match way {
        Way::Dsync => (file::create_new_dsync(&path)?, false),
        _ => file::create_new(&path, way == Way::Direct)?,
    };
    if way == Way::Direct && !direct {
        return Ok(None);
    }
    let mut engine = start_blocking_engine(
        options.engine,
        &handle,
        &path,
        options.pattern.depth,
        warnings,
    )?;
    let conditions = Conditions {
        dsync: way == Way::Dsync,
        ..options.pattern.conditions(direct, true, &engine, &path)
    };
    let mut payload = StampedFill::new(options.pattern.block);
    let label = match way {
        Way::Buffered => "write, fsync at end",
        Way::Direct => "write, O_DIRECT",
        Way::Dsync => "write, O_DSYNC",
    };
    let written = watch(watcher, label, options.size, |counter| {
        write_sequential(
            &mut engine,
            &handle,
            options.size,
            options.pattern,
            &mut |b| payload.fill(b),
            counter,
        )
    })
    .with_context(|| format!("durability probe ({label}) on {}", path.display()))?;
    let mut measurement = written.into_measurement(Workload::DiskWrite, conditions);
    super::hold_to_the_disk(&mut measurement, &options.dir);
    Ok(Some(measurement))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Unwatched;

    fn options(dir: &std::path::Path) -> DurabilityOptions {
        DurabilityOptions {
            dir: dir.to_path_buf(),
            size: 4 << 20,
            pattern: Pattern {
                block: 1 << 20,
                depth: 2,
            },
            engine: EngineChoice::Auto,
        }
    }

    #[test]
    fn a_probe_writes_three_ways_says_which_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let probe = probe(&options(dir.path()), &Unwatched).unwrap();
        assert!(!probe.fsync_at_end.conditions.direct && !probe.fsync_at_end.conditions.dsync);
        assert!(probe.dsync.conditions.dsync && !probe.dsync.conditions.direct);
        if let Some(direct) = &probe.direct {
            assert!(direct.conditions.direct && !direct.conditions.dsync);
        }
        for m in [&probe.fsync_at_end, &probe.dsync] {
            assert_eq!(m.bytes, 4 << 20);
            assert!(m.conditions.fsync_included);
        }
        let ratio = probe.dsync.bytes_per_sec / probe.fsync_at_end.bytes_per_sec;
        assert!((probe.stable_ratio - ratio).abs() < 1e-9);
        assert_eq!(probe.stable_as_fast, ratio >= STABLE_AS_FAST);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
