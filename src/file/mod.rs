//! File-system primitives: files made under a temporary name and renamed into place when
//! complete ([`Landing`]), opened with O_DIRECT where the file system takes it, allocated up
//! front; free space, tmpfs, extents and the page cache. Nothing here drives a disk engine.

pub mod cache;
pub mod extents;
pub mod tree;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use crate::units::format_bytes;
use crate::warning::Warning;

/// Alignment that satisfies O_DIRECT on every Linux block device and file system we target.
pub const ALIGN: usize = 4096;

/// A file being made under a temporary name beside its final path (`.NAME.xferbench-partial`):
/// renamed into place by [`Landing::commit`], removed if dropped before that.
#[derive(Debug)]
pub struct Landing {
    pub path: PathBuf,
    pub temp_path: PathBuf,
    pub file: File,
    /// O_DIRECT is on.
    pub direct: bool,
    guard: PartialFile,
}

impl Landing {
    /// Checks the directory, an existing file (replaced only with `force`, and only by
    /// [`Landing::commit`]'s rename: until then it stays as it was) and free space, then creates
    /// the temporary file and allocates `size` bytes.
    pub fn prepare(path: &Path, size: u64, force: bool, direct: bool) -> Result<Landing> {
        Landing::open(path, size, force, direct, false).map(|(landing, _)| landing)
    }

    /// [`Landing::prepare`] for `--resume`: the temporary file a copy left is opened as it is
    /// (never truncated), and none is allocated, so its length stays what was written. The
    /// landing, and the length the temporary file had (0 when there was none).
    pub fn resume(path: &Path, size: u64, force: bool, direct: bool) -> Result<(Landing, u64)> {
        Landing::open(path, size, force, direct, true)
    }

    fn open(
        path: &Path,
        size: u64,
        force: bool,
        direct: bool,
        resume: bool,
    ) -> Result<(Landing, u64)> {
        if path.is_dir() {
            bail!(
                "{} is a directory: give a file name, e.g. {}",
                path.display(),
                path.join("bigfile.data").display()
            );
        }
        let temp_path =
            partial_path(path).ok_or_else(|| anyhow!("{} does not name a file", path.display()))?;
        let dir = parent_dir(path);
        match std::fs::metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => bail!(
                "cannot create {}: {} is not a directory",
                path.display(),
                dir.display()
            ),
            Err(err) => {
                return Err(anyhow!(
                    "cannot create {}: {}",
                    path.display(),
                    describe_path_error(&dir, err)
                ));
            }
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) if !force => bail!(
                "{} already exists ({}): add --force to replace it",
                path.display(),
                format_bytes(meta.len())
            ),
            Ok(meta) if !meta.is_file() => bail!(
                "{} exists and is not a regular file: refusing to replace it",
                path.display()
            ),
            // The old file stays under its name until the new one is complete, fsynced and
            // renamed over it, so both must fit at once.
            Ok(meta) => ensure_room_beside(&dir, path, size, meta.len())?,
            Err(err) if err.kind() == io::ErrorKind::NotFound => ensure_room(&dir, size)?,
            Err(err) => return Err(anyhow!(describe_path_error(path, err))),
        }
        let guard = PartialFile::new(temp_path.clone());
        let existing = match std::fs::symlink_metadata(&temp_path) {
            Ok(meta) if resume && meta.is_file() => Some(meta.len()),
            _ => None,
        };
        let (file, direct) = match existing {
            Some(_) => open_partial(&temp_path, direct),
            None => create_new(&temp_path, direct),
        }
        .map_err(|err| anyhow!("cannot create {}: {err:#}", path.display()))?;
        // A resumable file's length is how far it got: nothing is allocated ahead of it.
        if size > 0 && !resume {
            allocate(&file, path, size)?;
        }
        let landing = Landing {
            path: path.to_path_buf(),
            temp_path,
            file,
            direct,
            guard,
        };
        Ok((landing, existing.unwrap_or(0)))
    }

    /// Keeps the temporary file whatever happens short of [`Landing::commit`] (a failure, a
    /// stop, a dropped session), for a later `--resume`.
    pub fn keep_on_failure(&mut self) {
        self.guard.keep = true;
    }

    /// Gives up the landing but keeps its temporary file for a later `--resume`.
    pub fn keep_partial(self) {
        let Landing { file, guard, .. } = self;
        drop(file);
        guard.keep();
    }

    /// Cuts the file back to `size` (the padding of an O_DIRECT tail; past the prefix a
    /// `--resume` took up, what a longer partial copy held) and fsyncs: how long that took.
    pub fn flush(&self, size: u64) -> Result<std::time::Duration> {
        let start = std::time::Instant::now();
        let longer = || self.file.metadata().is_ok_and(|meta| meta.len() > size);
        if !size.is_multiple_of(ALIGN as u64) || longer() {
            self.file
                .set_len(size)
                .context("truncating the padded tail")?;
        }
        self.file
            .sync_all()
            .with_context(|| format!("fsync of {}", self.path.display()))?;
        Ok(start.elapsed())
    }

    /// Renames the finished file into place (the caller has written and fsynced it).
    pub fn commit(self) -> Result<()> {
        let Landing {
            path,
            temp_path,
            file,
            guard,
            ..
        } = self;
        drop(file);
        std::fs::rename(&temp_path, &path)
            .with_context(|| format!("renaming the finished file to {}", path.display()))?;
        guard.keep();
        sync_dir(&parent_dir(&path));
        Ok(())
    }
}

/// The temporary name a file is made under beside `path` before it is renamed into place:
/// `.NAME.xferbench-partial`. None when `path` names no file.
pub fn partial_path(path: &Path) -> Option<PathBuf> {
    let mut temp = std::ffi::OsString::from(".");
    temp.push(path.file_name()?);
    temp.push(".xferbench-partial");
    Some(path.with_file_name(temp))
}

/// Removes a file when dropped, unless told to keep it: the cleanup for errors and Ctrl-C.
#[derive(Debug)]
pub struct PartialFile {
    path: PathBuf,
    keep: bool,
}

impl PartialFile {
    pub fn new(path: PathBuf) -> PartialFile {
        PartialFile { path, keep: false }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file is complete: leave it.
    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Creates a new file, with O_DIRECT when asked and supported; says whether O_DIRECT is on.
pub fn create_new(path: &Path, direct: bool) -> Result<(File, bool)> {
    open_with(path, direct, |options| {
        options.read(true).write(true).create_new(true);
    })
}

/// Creates a new file whose every write is stable when it returns (O_DSYNC), through the page
/// cache: the writes a durability probe times.
pub fn create_new_dsync(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_DSYNC)
        .open(path)
        .map_err(|err| anyhow!(describe_path_error(path, err)))
}

/// Opens an existing file for reading, with O_DIRECT when asked and supported.
pub fn open_read(path: &Path, direct: bool) -> Result<(File, bool)> {
    open_with(path, direct, |options| {
        options.read(true);
    })
}

/// Opens a file for writing in place, created if missing and never truncated, with O_DIRECT
/// when asked and supported: several writers can each fill their own range of it.
pub fn open_write(path: &Path, direct: bool) -> Result<(File, bool)> {
    open_with(path, direct, |options| {
        options.write(true).create(true);
    })
}

/// Opens the temporary file a copy left for writing in place (`--resume`), never through a
/// symlink put in its place, with O_DIRECT when asked and supported.
fn open_partial(path: &Path, direct: bool) -> Result<(File, bool)> {
    open_flagged(path, direct, libc::O_NOFOLLOW, |options| {
        options.write(true);
    })
}

fn open_with(path: &Path, direct: bool, set: impl Fn(&mut OpenOptions)) -> Result<(File, bool)> {
    open_flagged(path, direct, 0, set)
}

/// [`open_with`] with `flags` (`O_*`) added to the open.
fn open_flagged(
    path: &Path,
    direct: bool,
    flags: libc::c_int,
    set: impl Fn(&mut OpenOptions),
) -> Result<(File, bool)> {
    let mut options = OpenOptions::new();
    set(&mut options);
    options.custom_flags(flags);
    if direct {
        match options
            .clone()
            .custom_flags(flags | libc::O_DIRECT)
            .open(path)
        {
            Ok(file) => return Ok((file, true)),
            // EINVAL: the file system has no O_DIRECT; the file may have been created.
            Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
                if path.exists() {
                    options.create_new(false);
                }
            }
            Err(err) => return Err(anyhow!(describe_path_error(path, err))),
        }
    }
    let file = options
        .open(path)
        .map_err(|err| anyhow!(describe_path_error(path, err)))?;
    Ok((file, false))
}

/// Reserves `size` bytes for the file up front, so a full disk fails now, not half-way through.
pub fn allocate(file: &File, path: &Path, size: u64) -> Result<()> {
    let Err(err) = crate::sys::fs::fallocate(file, size) else {
        return Ok(());
    };
    match err.raw_os_error() {
        Some(libc::ENOSPC) => bail!(
            "not enough free space for {} of {}: {} free; free some space or use a smaller --size",
            format_bytes(size),
            path.display(),
            free_space(&parent_dir(path))
                .map(format_bytes)
                .unwrap_or_else(|_| "unknown".into())
        ),
        Some(libc::EFBIG) => bail!(
            "{} is larger than the file system allows for {}",
            format_bytes(size),
            path.display()
        ),
        // No fallocate on this file system: set the length; writes allocate as they go.
        Some(libc::EOPNOTSUPP) => file
            .set_len(size)
            .with_context(|| format!("setting the length of {}", path.display())),
        _ => Err(anyhow!(err).context(format!(
            "allocating {} for {}",
            format_bytes(size),
            path.display()
        ))),
    }
}

/// Fails with a clear message when `dir` has less than `size` bytes free.
pub fn ensure_room(dir: &Path, size: u64) -> Result<()> {
    let Some(free) = counted_free_space(dir)? else {
        return Ok(());
    };
    if size > free {
        bail!(
            "not enough free space in {}: {} needed, {} free; free some space or use a smaller --size",
            dir.display(),
            format_bytes(size),
            format_bytes(free)
        );
    }
    Ok(())
}

/// Like [`ensure_room`] for a file that replaces `old` (of `old_len` bytes): the old file is kept
/// until the new one is complete, so the new one must fit beside it, and the message says so.
fn ensure_room_beside(dir: &Path, old: &Path, size: u64, old_len: u64) -> Result<()> {
    let Some(free) = counted_free_space(dir)? else {
        return Ok(());
    };
    if size > free {
        bail!(
            "not enough free space in {} to write the new {} beside the old one: {} needed, {} free \
             (the old file, {}, is kept until the new one is complete); free some space, or remove \
             the old file first if losing it is acceptable",
            dir.display(),
            old.display(),
            format_bytes(size),
            format_bytes(free),
            format_bytes(old_len)
        );
    }
    Ok(())
}

/// Like [`free_space`], but None on a file system that counts no blocks at all (ramfs: it grows
/// until memory runs out), where a check of room would refuse every file.
fn counted_free_space(dir: &Path) -> Result<Option<u64>> {
    let stat =
        crate::sys::fs::statvfs(dir).map_err(|err| anyhow!(describe_path_error(dir, err)))?;
    Ok((stat.f_blocks != 0).then(|| stat.f_bavail as u64 * stat.f_frsize as u64))
}

/// Bytes an unprivileged user may still write on the file system holding `path`.
pub fn free_space(path: &Path) -> io::Result<u64> {
    let stat = crate::sys::fs::statvfs(path)?;
    Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// Which file system of which running machine holds a path: two paths with equal ids are on one
/// device of one machine (the boot id tells machines apart, the device number file systems).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceId {
    pub boot_id: String,
    pub dev: u64,
}

/// The [`DeviceId`] of `path`; None where the boot id or the path cannot be read.
pub fn device_id(path: &Path) -> Option<DeviceId> {
    use std::os::unix::fs::MetadataExt;
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(DeviceId {
        boot_id: boot_id.trim().to_string(),
        dev: std::fs::metadata(path).ok()?.dev(),
    })
}

/// True when `path` lives on tmpfs or ramfs: memory, not a disk.
pub fn is_tmpfs(path: &Path) -> bool {
    const TMPFS_MAGIC: libc::c_long = 0x0102_1994;
    const RAMFS_MAGIC: libc::c_long = 0x8584_58f6;
    let Ok(stat) = crate::sys::fs::statfs(path) else {
        return false;
    };
    matches!(stat.f_type as libc::c_long, TMPFS_MAGIC | RAMFS_MAGIC)
}

/// The warning for a file whose reads would skip the disk, if it has unwritten extents or holes.
pub fn unwritten_warning(file: &File, path: &Path) -> Option<Warning> {
    let map = extents::map_extents(file).ok()?;
    let fraction = map.zero_fraction();
    (fraction > 0.001).then(|| Warning::UnwrittenExtents {
        path: path.to_path_buf(),
        percent: fraction * 100.0,
    })
}

/// "cannot ...: X does not exist" style text for an error on a path, with what to do.
pub fn describe_path_error(path: &Path, err: io::Error) -> String {
    let shown = path.display();
    match err.kind() {
        io::ErrorKind::NotFound => {
            format!("{shown} does not exist: check the path, or create the directory first")
        }
        io::ErrorKind::PermissionDenied => {
            format!("{shown}: permission denied (a read-only or protected location?)")
        }
        io::ErrorKind::ReadOnlyFilesystem => format!("{shown}: the file system is read-only"),
        io::ErrorKind::IsADirectory => format!("{shown} is a directory: give a file name"),
        io::ErrorKind::NotADirectory => format!("{shown}: a part of the path is not a directory"),
        _ => format!("{shown}: {err}"),
    }
}

/// The directory holding `path`: "." for a bare file name.
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Makes a rename durable; best effort, since some file systems refuse fsync on directories.
pub fn sync_dir(dir: &Path) {
    if let Ok(handle) = File::open(dir) {
        let _ = handle.sync_all();
    }
}
