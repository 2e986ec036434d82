//! A directory tree as a stream of entries (walkdir: no link followed below the root, one open
//! directory per level, never every name at once), and the metadata a copy keeps: mode and
//! times, as `scp -p` and `rsync -a` keep them.

use std::fs::Metadata;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use filetime::FileTime;
use serde::{Deserialize, Serialize};

/// What an entry of a tree is. Links are never followed below the root: a link is copied as a
/// link, so a loop or a link out of the tree reads nothing outside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    /// A fifo, socket or device: not copied (as rsync without -D).
    Special,
}

impl Kind {
    pub fn of(meta: &Metadata) -> Kind {
        let kind = meta.file_type();
        if kind.is_dir() {
            Kind::Dir
        } else if kind.is_file() {
            Kind::File
        } else if kind.is_symlink() {
            Kind::Symlink
        } else {
            Kind::Special
        }
    }
}

/// One entry of a tree: its path below the root ("" for the root itself), and its own
/// metadata (a link's, not its target's).
#[derive(Debug)]
pub struct Entry {
    pub relative: PathBuf,
    pub kind: Kind,
    pub meta: Metadata,
}

/// An entry that could not be read: its path, and why.
#[derive(Debug)]
pub struct WalkError {
    pub path: PathBuf,
    pub error: io::Error,
}

/// The entries under `root` (the root first; a directory before what it holds, or after it
/// when `directories_last`), each with its metadata. A directory that cannot be read is one
/// error, and the walk goes on with the rest.
pub fn walk(
    root: &Path,
    directories_last: bool,
) -> impl Iterator<Item = Result<Entry, WalkError>> + use<> {
    let root = root.to_path_buf();
    walkdir::WalkDir::new(&root)
        .follow_links(false)
        .follow_root_links(true)
        .contents_first(directories_last)
        .into_iter()
        .map(move |entry| {
            let entry = entry.map_err(|err| WalkError {
                path: err.path().unwrap_or(&root).to_path_buf(),
                error: err
                    .into_io_error()
                    .unwrap_or_else(|| io::Error::other("a link loop")),
            })?;
            let meta = entry.metadata().map_err(|err| WalkError {
                path: entry.path().to_path_buf(),
                error: err
                    .into_io_error()
                    .unwrap_or_else(|| io::Error::other("a link loop")),
            })?;
            let relative = entry
                .path()
                .strip_prefix(&root)
                .unwrap_or(entry.path())
                .to_path_buf();
            Ok(Entry {
                relative,
                kind: Kind::of(&meta),
                meta,
            })
        })
}

/// How much a tree holds, counted before a copy for its progress bar and ETA.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub files: u64,
    pub bytes: u64,
    pub directories: u64,
    pub symlinks: u64,
}

/// Counts what `root` holds (unreadable parts are left out; the copy reports them).
pub fn count(root: &Path) -> Totals {
    let mut totals = Totals::default();
    for entry in walk(root, false).flatten() {
        match entry.kind {
            Kind::Dir => totals.directories += 1,
            Kind::File => {
                totals.files += 1;
                totals.bytes += entry.meta.len();
            }
            Kind::Symlink => totals.symlinks += 1,
            Kind::Special => {}
        }
    }
    totals
}

/// The permission bits of `meta` (setuid, setgid and sticky included), as `chmod` takes them.
pub fn mode(meta: &Metadata) -> u32 {
    meta.mode() & 0o7777
}

/// What a copy keeps of an entry besides its bytes: its mode, and its access and modification
/// times (seconds and nanoseconds since the epoch). Taken from a [`Metadata`] here, or from a
/// peer's record of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attributes {
    pub mode: u32,
    pub atime: (i64, u32),
    pub mtime: (i64, u32),
}

impl Attributes {
    pub fn of(meta: &Metadata) -> Attributes {
        Attributes {
            mode: mode(meta),
            atime: (meta.atime(), meta.atime_nsec() as u32),
            mtime: (meta.mtime(), meta.mtime_nsec() as u32),
        }
    }

    fn accessed(&self) -> FileTime {
        FileTime::from_unix_time(self.atime.0, self.atime.1)
    }

    fn modified(&self) -> FileTime {
        FileTime::from_unix_time(self.mtime.0, self.mtime.1)
    }
}

/// Gives the open file `file` the mode and times of `kept`.
pub fn keep_file_metadata(file: &std::fs::File, kept: &Attributes) -> io::Result<()> {
    file.set_permissions(std::fs::Permissions::from_mode(kept.mode & 0o7777))?;
    filetime::set_file_handle_times(file, Some(kept.accessed()), Some(kept.modified()))
}

/// Gives the directory `path` the mode and times of `kept`.
pub fn keep_dir_metadata(path: &Path, kept: &Attributes) -> io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(kept.mode & 0o7777))?;
    filetime::set_file_times(path, kept.accessed(), kept.modified())
}

/// Gives the link `path` itself (not its target) the times of `kept`.
pub fn keep_symlink_times(path: &Path, kept: &Attributes) -> io::Result<()> {
    filetime::set_symlink_file_times(path, kept.accessed(), kept.modified())
}

/// The size and modification time of a file, to tell whether it changed while it was read.
pub fn stamp(meta: &Metadata) -> (u64, i64, i64) {
    (meta.len(), meta.mtime(), meta.mtime_nsec())
}

/// When a tree's files are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Every file fsynced before its rename, every directory after its files: a crash loses
    /// nothing that was reported landed.
    #[default]
    Each,
    /// One syncfs of the destination's file system at the end: faster for many small files; a
    /// crash before it may lose files already renamed into place.
    End,
}

/// How many entries of each list a report keeps; the counts go on past it.
pub const LISTED: usize = 100;

/// Paths and what happened to them: the first [`LISTED`], and how many in all.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Listed {
    pub total: u64,
    pub shown: Vec<Problem>,
}

impl Listed {
    pub fn add(&mut self, path: &Path, reason: String) {
        self.add_named(path.display().to_string(), reason);
    }

    /// Adds an entry named as a peer named it (a path on another machine).
    pub fn add_named(&mut self, path: String, reason: String) {
        self.total += 1;
        if self.shown.len() < LISTED {
            self.shown.push(Problem { path, reason });
        }
    }

    /// Takes in another list of the same kind (the other side's), keeping the bound.
    pub fn merge(&mut self, other: Listed) {
        let unshown = other.total.saturating_sub(other.shown.len() as u64);
        for problem in other.shown {
            self.add_named(problem.path, problem.reason);
        }
        self.total += unshown;
    }
}

/// One path of a [`Listed`], and why it is there.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Problem {
    pub path: String,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_walk_lists_links_as_links_and_never_enters_a_loop() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f"), b"12345").unwrap();
        std::os::unix::fs::symlink("..", root.join("a/b/up")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("out")).unwrap();
        let mut seen: Vec<(String, Kind)> = walk(root, false)
            .map(|entry| {
                let entry = entry.unwrap();
                (entry.relative.display().to_string(), entry.kind)
            })
            .collect();
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            seen,
            vec![
                (String::new(), Kind::Dir),
                ("a".into(), Kind::Dir),
                ("a/b".into(), Kind::Dir),
                ("a/b/f".into(), Kind::File),
                ("a/b/up".into(), Kind::Symlink),
                ("out".into(), Kind::Symlink),
            ]
        );
        assert_eq!(
            count(root),
            Totals {
                files: 1,
                bytes: 5,
                directories: 3,
                symlinks: 2
            }
        );
    }

    #[test]
    fn merged_lists_keep_every_count_and_the_first_entries() {
        let mut here = Listed::default();
        let mut there = Listed::default();
        for n in 0..LISTED + 5 {
            here.add(Path::new(&format!("here/{n}")), "here".into());
            there.add_named(format!("there/{n}"), "there".into());
        }
        here.merge(there);
        assert_eq!(here.total, 2 * (LISTED as u64 + 5));
        assert_eq!(here.shown.len(), LISTED);
        assert!(here.shown.iter().all(|problem| problem.reason == "here"));
    }

    #[test]
    fn directories_last_puts_each_directory_after_what_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        let order: Vec<PathBuf> = walk(dir.path(), true)
            .map(|entry| entry.unwrap().relative)
            .collect();
        assert_eq!(
            order,
            vec![PathBuf::from("a/b"), PathBuf::from("a"), PathBuf::new()]
        );
    }
}
