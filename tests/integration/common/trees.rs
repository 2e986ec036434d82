//! Trees as a copy must keep them: every entry's kind, bytes, mode, modification time and
//! link target, compared entry by entry; and a tree with every kind of entry to copy.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use super::make_file;

/// One entry of a tree as a copy must keep it.
#[derive(Debug, PartialEq)]
pub enum Kept {
    Dir {
        mode: u32,
        mtime: (i64, i64),
    },
    File {
        mode: u32,
        mtime: (i64, i64),
        bytes: Vec<u8>,
    },
    Link {
        target: std::path::PathBuf,
    },
}

/// Every entry below `root` (sorted by path, the root left out), as [`Kept`].
pub fn tree(root: &Path) -> Vec<(String, Kept)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Kept)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            let mode = meta.mode() & 0o7777;
            let mtime = (meta.mtime(), meta.mtime_nsec());
            let kept = if meta.file_type().is_symlink() {
                Kept::Link {
                    target: std::fs::read_link(&path).unwrap(),
                }
            } else if meta.is_dir() {
                walk(root, &path, out);
                Kept::Dir { mode, mtime }
            } else {
                Kept::File {
                    mode,
                    mtime,
                    bytes: std::fs::read(&path).unwrap(),
                }
            };
            out.push((name, kept));
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Asserts two trees hold the same entries, entry by entry, naming the first that differs.
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    assert_same_entries(tree(expected), tree(actual));
}

/// [`assert_same_tree`] for a path that keeps files' times to the microsecond (SCP's `T`
/// records): files' modification times compared at that precision.
pub fn assert_same_tree_to_the_microsecond(expected: &Path, actual: &Path) {
    let micros = |tree: Vec<(String, Kept)>| {
        tree.into_iter()
            .map(|(name, kept)| match kept {
                Kept::File { mode, mtime, bytes } => (
                    name,
                    Kept::File {
                        mode,
                        mtime: (mtime.0, mtime.1 / 1000 * 1000),
                        bytes,
                    },
                ),
                other => (name, other),
            })
            .collect()
    };
    assert_same_entries(micros(tree(expected)), micros(tree(actual)));
}

fn assert_same_entries(expected: Vec<(String, Kept)>, actual: Vec<(String, Kept)>) {
    let names = |t: &[(String, Kept)]| t.iter().map(|e| e.0.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&expected),
        names(&actual),
        "the trees list other entries"
    );
    for (want, got) in expected.iter().zip(&actual) {
        assert!(
            want == got,
            "{} differs: {:?} vs {:?}",
            want.0,
            summary(&want.1),
            summary(&got.1)
        );
    }
}

/// A [`Kept`] without its bytes, for a readable failure.
fn summary(kept: &Kept) -> String {
    match kept {
        Kept::File { mode, mtime, bytes } => {
            format!("file mode {mode:o} mtime {mtime:?} {} bytes", bytes.len())
        }
        other => format!("{other:?}"),
    }
}

pub fn set_mtime(path: &Path, secs: u64) {
    let time = std::time::UNIX_EPOCH + Duration::from_secs(secs);
    let file = std::fs::File::open(path).unwrap();
    file.set_times(
        std::fs::FileTimes::new()
            .set_modified(time)
            .set_accessed(time),
    )
    .unwrap();
}

/// A tree with every kind of entry a copy must keep: nested and empty directories, a file of
/// several blocks, an empty file, names with spaces and non-ASCII, a link inside the tree, a
/// link loop, a link out of the tree, odd modes and old times.
pub fn varied_tree(root: &Path) {
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    make_file(&root.join("a/big.data"), "3M");
    std::fs::write(root.join("a/b/with space é.txt"), b"hello, tree\n").unwrap();
    std::fs::write(root.join("a/b/c/empty"), b"").unwrap();
    std::fs::write(root.join("top"), b"top\n").unwrap();
    std::os::unix::fs::symlink("../../top", root.join("a/b/to-top")).unwrap();
    std::os::unix::fs::symlink("..", root.join("a/b/c/loop")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("out-of-tree")).unwrap();
    std::fs::set_permissions(root.join("a/big.data"), PermissionsExt::from_mode(0o640)).unwrap();
    std::fs::set_permissions(root.join("top"), PermissionsExt::from_mode(0o755)).unwrap();
    set_mtime(&root.join("a/big.data"), 1_500_000_000);
    set_mtime(&root.join("top"), 1_600_000_000);
    // Directories last: making their entries moved their times.
    set_mtime(&root.join("a/b"), 1_400_000_000);
    std::fs::set_permissions(root.join("a/b/c"), PermissionsExt::from_mode(0o555)).unwrap();
}
