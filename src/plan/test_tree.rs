//! The tree of small files `run` copies over each path after the big file: `--files` files of
//! `--file-size` random bytes, [`PER_DIR`] to a directory, kept beside the test file for the
//! next run. It is made under a temporary name and renamed into place once synced, so a tree
//! found under the final name was made whole; it is reused when every file is there at its size.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use crate::file;
use crate::interrupt;
use crate::measure::{Counter, Watcher};
use crate::payload::StampedFill;

/// Files in each directory of the tree: a directory listing stays short, as in real trees.
pub const PER_DIR: u64 = 100;

/// The directory of file `index`, relative to the tree's root.
fn dir_name(index: u64) -> String {
    format!("d{:05}", index / PER_DIR)
}

/// File `index`, relative to the tree's root.
fn file_name(index: u64) -> PathBuf {
    Path::new(&dir_name(index)).join(format!("f{index:07}.data"))
}

/// The tree at `root`, made unless one of `files` files of `size` bytes is there whole.
/// Returns whether it was reused.
pub(crate) fn make(root: &Path, files: u64, size: u64, watcher: &dyn Watcher) -> Result<bool> {
    if reusable(root, files, size) {
        return Ok(true);
    }
    let partial = file::partial_path(root)
        .ok_or_else(|| anyhow!("{} does not name a directory", root.display()))?;
    // A tree of this name left half made, or no longer matching, is the run's own: replaced.
    for stale in [&partial, &root.to_path_buf()] {
        remove_dir(stale)?;
    }
    check_room(root, files, size)?;
    write_tree(&partial, files, size, watcher).inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&partial);
    })?;
    std::fs::rename(&partial, root)
        .with_context(|| format!("renaming the tree of small files to {}", root.display()))?;
    file::sync_dir(&file::parent_dir(root));
    Ok(false)
}

/// Errors: the tree's bytes do not fit in the free space of `root`'s file system.
fn check_room(root: &Path, files: u64, size: u64) -> Result<()> {
    let parent = file::parent_dir(root);
    let needed = files.checked_mul(size).ok_or_else(|| {
        anyhow!("--files {files} of --file-size {size} bytes is more than a disk holds")
    })?;
    let free = file::free_space(&parent)
        .map_err(|err| anyhow!(file::describe_path_error(&parent, err)))?;
    if needed > free {
        bail!(
            "not enough free space in {} for the tree of small files: {} needed, {} free; give \
             fewer --files, a smaller --file-size, or --files 0",
            parent.display(),
            crate::units::format_bytes(needed),
            crate::units::format_bytes(free)
        );
    }
    Ok(())
}

/// Removes a directory tree the run made, if it is there.
fn remove_dir(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            Err(anyhow!(file::describe_path_error(path, err)))
        }
        _ => Ok(()),
    }
}

/// Writes every file of the tree at `root` and syncs its file system.
fn write_tree(root: &Path, files: u64, size: u64, watcher: &dyn Watcher) -> Result<()> {
    std::fs::create_dir(root)
        .map_err(|err| anyhow!("cannot create {}", file::describe_path_error(root, err)))?;
    let (bytes, made) = (Counter::new(), Counter::new());
    watcher.begin_files("small files", files * size, &bytes, files, &made);
    let written = (|| {
        let mut payload = StampedFill::new(1 << 20);
        let mut block = vec![0u8; (size as usize).min(1 << 20)];
        for index in 0..files {
            if index % PER_DIR == 0 {
                let dir = root.join(dir_name(index));
                std::fs::create_dir(&dir).map_err(|err| {
                    anyhow!("cannot create {}", file::describe_path_error(&dir, err))
                })?;
            }
            let path = root.join(file_name(index));
            let mut out = File::create_new(&path).map_err(|err| {
                anyhow!("cannot create {}", file::describe_path_error(&path, err))
            })?;
            let mut left = size;
            while left > 0 {
                let n = left.min(block.len() as u64) as usize;
                payload.fill(&mut block[..n]);
                out.write_all(&block[..n])
                    .map_err(|err| anyhow!("writing {}: {err}", path.display()))?;
                bytes.add(n as u64);
                left -= n as u64;
            }
            made.add(1);
            interrupt::check()?;
        }
        // One sync for the lot: a tree found whole after a crash must hold its bytes.
        let handle = File::open(root)?;
        crate::sys::fs::syncfs(&handle)
            .map_err(|err| anyhow!("syncing {}: {err}", root.display()))?;
        Ok(())
    })();
    watcher.end();
    written
}

/// Whether the tree at `root` holds exactly the files asked for, each of its size and fully
/// written (no unwritten extents).
fn reusable(root: &Path, files: u64, size: u64) -> bool {
    let dirs = files.div_ceil(PER_DIR);
    let count = |path: &Path| std::fs::read_dir(path).map(|entries| entries.count() as u64);
    if count(root).ok() != Some(dirs) {
        return false;
    }
    for dir in 0..dirs {
        let in_dir = (files - dir * PER_DIR).min(PER_DIR);
        if count(&root.join(dir_name(dir * PER_DIR))).ok() != Some(in_dir) {
            return false;
        }
    }
    (0..files).all(|index| {
        let path = root.join(file_name(index));
        let Ok(handle) = File::open(&path) else {
            return false;
        };
        handle
            .metadata()
            .is_ok_and(|meta| meta.is_file() && meta.len() == size)
            && file::unwritten_warning(&handle, &path).is_none()
    })
}

/// Drops the tree's files from the page cache, so each path reads them from the disk as the
/// big copy reads its file (O_DIRECT): the first path does not pay for the others.
pub(crate) fn evict(root: &Path, files: u64) {
    for index in 0..files {
        if let Ok(handle) = File::open(root.join(file_name(index))) {
            let _ = file::cache::drop_from_cache(&handle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Unwatched;

    #[test]
    fn a_tree_is_made_a_hundred_files_to_a_directory_of_random_bytes_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        assert!(!make(&root, 250, 5000, &Unwatched).unwrap());
        let mut dirs: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        dirs.sort();
        assert_eq!(dirs, ["d00000", "d00001", "d00002"]);
        assert_eq!(std::fs::read_dir(root.join("d00002")).unwrap().count(), 50);
        let first = std::fs::read(root.join(file_name(0))).unwrap();
        let last = std::fs::read(root.join(file_name(249))).unwrap();
        assert_eq!((first.len(), last.len()), (5000, 5000));
        assert!(first.iter().filter(|&&b| b == 0).count() < 100, "zeros");
        assert_ne!(first, last);
        assert!(make(&root, 250, 5000, &Unwatched).unwrap(), "not reused");
        // Nothing but the tree is left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_tree_larger_than_the_free_space_is_refused_before_a_byte_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        let err = make(&root, 1 << 20, 1 << 40, &Unwatched).unwrap_err();
        assert!(
            format!("{err:#}").contains("not enough free space"),
            "{err:#}"
        );
        let err = make(&root, u64::MAX, 2, &Unwatched).unwrap_err();
        assert!(
            format!("{err:#}").contains("more than a disk holds"),
            "{err:#}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_tree_missing_a_file_or_of_another_size_is_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        make(&root, 120, 4096, &Unwatched).unwrap();
        std::fs::remove_file(root.join(file_name(119))).unwrap();
        assert!(!make(&root, 120, 4096, &Unwatched).unwrap());
        assert!(root.join(file_name(119)).is_file());
        std::fs::write(root.join(file_name(3)), b"short").unwrap();
        assert!(!make(&root, 120, 4096, &Unwatched).unwrap());
        assert_eq!(
            std::fs::metadata(root.join(file_name(3))).unwrap().len(),
            4096
        );
        // An extra file is not part of the tree asked for.
        std::fs::write(root.join("d00000").join("stray"), b"x").unwrap();
        assert!(!make(&root, 120, 4096, &Unwatched).unwrap());
        assert!(!root.join("d00000").join("stray").exists());
    }
}
