//! A copy between two local paths: a file on this machine's disks, or on a mounted share (SMB/cifs
//! or NFS), where the kernel's file-system client carries the bytes.
//!
//! The same pieces as the network paths: the source read with the disk engine (O_DIRECT where the
//! file system takes it) into a fixed pool of aligned buffers, each chunk written at its offset
//! by a second engine on the destination's temporary name as soon as it is read, then fsync and
//! rename ([`file::Landing`]). Reads and writes overlap; memory is `iodepth` chunks whatever the
//! file size. `--verify` reads the landed file back with this machine's cache defeated.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::pipeline::{self, ChunkPlan, DIGEST_ALGORITHM, Digest, ReadAhead, Start, WriteBehind};
use super::{CopyPlan, CopyReport, CpuBoth, Location, TimeSplit, TransportKind, Verification};
use crate::disk::{self, AlignedBuf, Engine, EngineChoice};
use crate::file;
use crate::interrupt::{self, Interrupted};
use crate::measure::{Conditions, Counter, CpuClock, Measurement, Watcher, Workload};
use crate::units::Rate;

/// How `--verify` read the landed file back, and what that re-read could have come from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reread {
    /// O_DIRECT (true), or buffered after an fsync and a cache drop (false).
    pub direct: bool,
    /// Fraction of the file still in this machine's page cache when a buffered re-read began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_before: Option<f64>,
    /// The network file system (nfs, cifs, smb2) holding the file: its server has caches of its
    /// own that no client can drop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_fs: Option<String>,
    pub secs: f64,
    pub bytes_per_sec: f64,
}

/// The local path as a [`super::Transport`], for `run --to DIR`: it copies; it crosses no
/// network, so it has no memory-to-memory figure and no round trips. No progress for
/// [`super::pipeline::STALL_TIMEOUT`] ends its copy, as `copy`'s default `--timeout` does.
pub struct LocalCopy;

impl super::Transport for LocalCopy {
    fn kind(&self) -> TransportKind {
        TransportKind::Local
    }

    fn mem_to_mem(&self, _: &super::NetPlan, _: &dyn Watcher) -> Result<super::NetReport> {
        bail!("a local copy crosses no network: it has no memory-to-memory figure")
    }

    fn copy(&self, plan: &CopyPlan, watcher: &dyn Watcher) -> Result<CopyReport> {
        copy(plan, super::pipeline::STALL_TIMEOUT, watcher)
    }

    fn latency(&self, _: &super::LatPlan) -> Result<super::LatReport> {
        bail!("a local copy crosses no network: it has no round trips")
    }
}

/// Copies `plan.source` to `plan.destination`, both local, under `watcher`'s progress bar.
/// Errors: the same file on both sides, a source that is not a regular file, a destination
/// that cannot be made (the old file is kept), a failed read, write, fsync or verify, Ctrl-C,
/// or no byte moved for `stall` (`--timeout`: a share whose server is gone).
pub fn copy(plan: &CopyPlan, stall: Duration, watcher: &dyn Watcher) -> Result<CopyReport> {
    let (Location::Local(source), Location::Local(destination)) = (&plan.source, &plan.destination)
    else {
        bail!("a local copy goes between two local paths");
    };
    let destination = landing_path(destination, source)?;
    if same_file(source, &destination)
        .map_err(|err| anyhow!("cannot copy: {}", file::describe_path_error(source, err)))?
    {
        bail!(
            "{} and {} are the same file: give another destination",
            source.display(),
            destination.display()
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .context("starting the copy's runtime")?;
    let copying = Copying {
        source,
        destination: &destination,
        stall,
    };
    runtime.block_on(copy_file(plan, &copying, watcher))
}

/// What one local copy moves, and how long it may make no progress.
struct Copying<'a> {
    source: &'a Path,
    destination: &'a Path,
    stall: Duration,
}

impl Copying<'_> {
    /// A failed pump as one line naming both paths; a stall says what stopped and what to do.
    fn failed(&self, err: anyhow::Error) -> anyhow::Error {
        let (source, destination) = (self.source.display(), self.destination.display());
        match err.downcast_ref::<pipeline::Stalled>() {
            Some(stalled) => anyhow!(
                "copying {source} to {destination}: no byte moved for {} s: a file system stopped \
                 answering (a share whose server is gone or unreachable; on a hard mount the \
                 kernel retries for ever); check the server, or give a longer --timeout",
                stalled.secs
            ),
            None => err.context(format!("copying {source} to {destination}")),
        }
    }
}

/// How long a failed copy waits for its temporary file to be removed: on a share whose server
/// is gone the removal itself never returns.
const REMOVAL_WAIT: Duration = Duration::from_secs(2);

/// Fails a copy whose engines may have I/O stuck in the kernel: they are abandoned rather than
/// waited for, and the temporary file is removed on a thread of its own for at most
/// [`REMOVAL_WAIT`]; past that, `err` says it may be left (never under the final name).
fn give_up(
    err: anyhow::Error,
    landing: file::Landing,
    engines: Vec<Engine>,
    resume: bool,
) -> anyhow::Error {
    for engine in engines {
        engine.abandon();
    }
    if resume {
        let temp_path = landing.temp_path.clone();
        landing.keep_partial();
        // As context, so an interruption still reads as one (exit 130).
        return err.context(format!(
            "{} is kept: the same copy with --resume goes on from it",
            temp_path.display()
        ));
    }
    let temp_path = landing.temp_path.clone();
    let (removed, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(landing);
        let _ = removed.send(());
    });
    match done.recv_timeout(REMOVAL_WAIT) {
        Ok(()) => err,
        Err(_) => anyhow!(
            "{err:#}; {} may be left behind (its removal did not return): delete it once the \
             file system answers",
            temp_path.display()
        ),
    }
}

async fn copy_file(
    plan: &CopyPlan,
    copying: &Copying<'_>,
    watcher: &dyn Watcher,
) -> Result<CopyReport> {
    let (source, destination) = (copying.source, copying.destination);
    let mut warnings = Vec::new();
    let chunks = plan.chunks()?;
    let (mut reader, size, source_direct) =
        pipeline::open_source(source, chunks.depth, &mut warnings)?;
    let (landing, mut writer, found) =
        pipeline::open_landing(destination, size, plan, chunks, &mut warnings)?;
    let resumed = match found {
        0 => None,
        found => match pipeline::check_prefix(source, &landing.temp_path, found, size, chunks) {
            Ok(checked) => Some(checked),
            Err(err) => return Err(give_up(err, landing, vec![reader, writer], plan.resume)),
        },
    };
    let from = resumed
        .as_ref()
        .map_or_else(Start::default, |(resumed, digest)| {
            Start::after(resumed, *digest)
        });
    let resumed = resumed.map(|(resumed, _)| resumed);
    let engine = writer.kind();
    let destination_direct = landing.direct;
    let cpu = CpuClock::start();
    let start = Instant::now();
    let (pumped, intervals) = pump(
        "copy",
        &mut reader,
        Some(&mut writer),
        size,
        from,
        chunks,
        copying.stall,
        watcher,
    )
    .await;
    let pumped = match pumped {
        Ok(pumped) => pumped,
        Err(err) => {
            return Err(give_up(
                copying.failed(err),
                landing,
                vec![reader, writer],
                plan.resume,
            ));
        }
    };
    drop((reader, writer));
    let fsync = landing.flush(size)?;
    let elapsed = start.elapsed();
    // The destination's file system: where the copy lands and is fsynced, and is re-read.
    let mount = crate::mounts::facts(destination);
    let network_fs = mount.is_network().then(|| mount.fs_type.clone());
    let verify = match pumped.digest {
        Some(read) => {
            match verify(
                &landing.temp_path,
                copying,
                network_fs,
                size,
                read,
                chunks,
                watcher,
            )
            .await
            {
                Ok(verified) => Some(verified),
                Err((err, reader)) => {
                    return Err(give_up(err, landing, reader.into_iter().collect(), false));
                }
            }
        }
        None => None,
    };
    landing.commit()?;
    let conditions = Conditions {
        direct: source_direct && destination_direct,
        source_direct: Some(source_direct),
        destination_direct: Some(destination_direct),
        fsync_included: true,
        engine: Some(engine),
        block_size: Some(chunks.chunk as u64),
        iodepth: Some(chunks.depth),
        path: Some(TransportKind::Local),
        mount: Some(mount),
        ..Conditions::default()
    };
    Ok(CopyReport {
        source: source.display().to_string(),
        destination: destination.display().to_string(),
        path: TransportKind::Local,
        measurement: Measurement::new(
            Workload::Copy,
            size - from.start,
            elapsed,
            conditions,
            intervals,
        ),
        split: TimeSplit {
            reading_secs: Some(pumped.reading.as_secs_f64()),
            sending_secs: None,
            writing_secs: Some(pumped.writing.as_secs_f64()),
            fsync_secs: fsync.as_secs_f64(),
        },
        verify,
        resumed,
        cpu: CpuBoth {
            local: cpu.finish(),
            remote: None,
        },
        warnings,
    })
}

/// Where a copy to `destination` lands: inside it when it is a directory (keeping the source's
/// name, as cp and scp do); a trailing `/` names a directory, which must exist.
fn landing_path(destination: &Path, source: &Path) -> Result<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let names_dir = destination.as_os_str().as_bytes().ends_with(b"/");
    if names_dir && !destination.is_dir() {
        let err = std::fs::metadata(destination)
            .err()
            .unwrap_or_else(|| std::io::Error::from(std::io::ErrorKind::NotADirectory));
        bail!(
            "cannot copy: {}",
            file::describe_path_error(destination, err)
        );
    }
    super::address::local_destination(destination, &source.to_string_lossy())
}

/// Whether `a` and `b` are one file (one device and inode, after following links): false when
/// `b` does not exist. Errors: `a` cannot be looked at, or `b` for another reason than absence.
pub fn same_file(a: &Path, b: &Path) -> std::io::Result<bool> {
    let a = std::fs::metadata(a)?;
    match std::fs::metadata(b) {
        Ok(b) => Ok(a.dev() == b.dev() && a.ino() == b.ino()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err),
    }
}

/// Reads the landed file (its temporary name, fsynced) back with this machine's cache defeated
/// and compares its digest with the one of what was read from the source: a mismatch fails the
/// copy before the rename, so the old file (if any) stays.
///
/// Errors come with the reading engine, when there is one, for the caller to abandon.
async fn verify(
    temp_path: &Path,
    copying: &Copying<'_>,
    network_fs: Option<String>,
    size: u64,
    read: Digest,
    chunks: ChunkPlan,
    watcher: &dyn Watcher,
) -> Result<Verification, (anyhow::Error, Option<Engine>)> {
    let destination = copying.destination;
    let no_engine = |err: anyhow::Error| (err, None);
    let (handle, direct) = file::open_read(temp_path, true).map_err(no_engine)?;
    let cached_before = if direct {
        None
    } else {
        file::cache::drop_from_cache(&handle)
            .with_context(|| format!("dropping {} from the page cache", destination.display()))
            .map_err(no_engine)?;
        Some(file::cache::cached_fraction(&handle).unwrap_or(0.0))
    };
    let mut ignored = Vec::new();
    let mut reader = disk::start_engine(
        EngineChoice::Auto,
        &handle,
        destination,
        chunks.depth,
        &mut ignored,
    )
    .map_err(no_engine)?;
    let start = Instant::now();
    let (pumped, _) = pump(
        "verify",
        &mut reader,
        None,
        size,
        Start::default(),
        chunks,
        copying.stall,
        watcher,
    )
    .await;
    let elapsed = start.elapsed();
    let landed = match pumped {
        Ok(pumped) => pumped.digest.expect("a verifying pump digests"),
        Err(err) => return Err((copying.failed(err), Some(reader))),
    };
    drop(reader);
    let (source, landed) = (read.hex(), landed.hex());
    if source != landed {
        return Err(no_engine(anyhow!(
            "verify failed: what was read from the source has digest {source} but {} read back has {landed}; the copy was discarded",
            destination.display()
        )));
    }
    let reread = Reread {
        direct,
        cached_before,
        network_fs,
        secs: elapsed.as_secs_f64(),
        bytes_per_sec: Rate::new(size, elapsed).bytes_per_sec,
    };
    Ok(Verification {
        algorithm: DIGEST_ALGORITHM.into(),
        source,
        destination: landed,
        matched: true,
        reread: Some(reread),
        far_reread: None,
    })
}

/// What [`pump`] moved, and how long each side was busy.
struct Pumped {
    reading: Duration,
    writing: Duration,
    digest: Option<Digest>,
}

/// Reads `size` bytes with `reader`, `chunks.depth` reads in flight, and writes each chunk at
/// its offset with `writer` as soon as it is read (None: reads only, for a re-read), under
/// `watcher`'s progress bar labelled `label`, in 1 s intervals; fails when nothing moves for
/// `stall`.
#[allow(clippy::too_many_arguments)]
async fn pump(
    label: &str,
    reader: &mut Engine,
    writer: Option<&mut Engine>,
    size: u64,
    from: Start,
    chunks: ChunkPlan,
    stall: Duration,
    watcher: &dyn Watcher,
) -> (Result<Pumped>, Vec<crate::measure::Interval>) {
    let counter = Counter::new();
    let moving = moved(reader, writer, size, from, chunks, &counter);
    pipeline::watched_as(label, stall, watcher, size - from.start, &counter, moving).await
}

/// [`pump`]'s work, counted in `counter`. One pool of `depth` buffers serves both sides, so
/// memory stays bounded whatever the size.
async fn moved(
    reader: &mut Engine,
    mut writer: Option<&mut Engine>,
    size: u64,
    from: Start,
    chunks: ChunkPlan,
    counter: &Counter,
) -> Result<Pumped> {
    let mut pool: Vec<AlignedBuf> = (0..chunks.depth)
        .map(|_| AlignedBuf::new(chunks.chunk))
        .collect();
    let (mut reads, mut writes) = (ReadAhead::from(from.start), WriteBehind::default());
    let mut digest = chunks.verify.then(|| from.digest.unwrap_or_default());
    let mut done = 0u64;
    while done < size - from.start {
        reads.fill(reader, &mut pool, size, chunks.chunk)?;
        let written = async {
            match writer.as_mut() {
                Some(writer) => writer.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            completion = reader.next(), if reads.in_flight > 0 => {
                let completion = completion?;
                reads.completed();
                let offset = completion.offset;
                let buf =
                    pipeline::read_chunk(completion, size, size, chunks.chunk, digest.as_mut())?;
                let len = buf.len();
                match writer.as_mut() {
                    Some(writer) => writes.submit(writer, offset, buf, len)?,
                    None => {
                        done += len as u64;
                        counter.add(len as u64);
                        pool.push(buf);
                    }
                }
            }
            completion = written, if writes.in_flight > 0 => {
                let (len, buf) = writes.completed(completion?, size, chunks.chunk)?;
                done += len;
                counter.add(len);
                pool.push(buf);
            }
            _ = interrupt::wait() => return Err(Interrupted.into()),
        }
    }
    Ok(Pumped {
        reading: reads.busy.total(),
        writing: writes.busy.total(),
        digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_file_follows_symlinks_and_knows_hard_links() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"one").unwrap();
        std::fs::write(&b, b"one").unwrap();
        assert!(same_file(&a, &a).unwrap());
        assert!(!same_file(&a, &b).unwrap(), "same bytes, another file");
        assert!(!same_file(&a, &dir.path().join("missing")).unwrap());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&a, &link).unwrap();
        assert!(same_file(&a, &link).unwrap());
        assert!(same_file(&link, &a).unwrap());
        let hard = dir.path().join("hard");
        std::fs::hard_link(&a, &hard).unwrap();
        assert!(same_file(&hard, &a).unwrap());
    }

    #[test]
    fn a_directory_destination_keeps_the_source_name_and_a_slash_needs_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let source = Path::new("/somewhere/a.img");
        assert_eq!(
            landing_path(dir.path(), source).unwrap(),
            dir.path().join("a.img")
        );
        let named = dir.path().join("b.img");
        assert_eq!(landing_path(&named, source).unwrap(), named);
        let missing = format!("{}/missing/", dir.path().display());
        let err = landing_path(Path::new(&missing), source).unwrap_err();
        assert!(format!("{err}").contains("does not exist"), "{err}");
    }
}
