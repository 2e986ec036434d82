//! The directory `serve` works in: every path a client names must stay inside it.

use std::path::{Component, Path, PathBuf};

use anyhow::{Result, anyhow, bail};

/// The canonical root of a server.
#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
}

impl Root {
    pub fn new(dir: &Path) -> Result<Root> {
        let dir = dir
            .canonicalize()
            .map_err(|err| anyhow!("--root {}: {err}", dir.display()))?;
        if !dir.is_dir() {
            bail!("--root {} is not a directory", dir.display());
        }
        Ok(Root { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A file to create: relative, no `..`, its directory existing inside the root, and not a
    /// symlink itself (a rename would replace the link, but refusing is plainer).
    pub fn new_file(&self, requested: &str) -> Result<PathBuf> {
        let relative = plain_relative(requested)?;
        let name = relative
            .file_name()
            .ok_or_else(|| anyhow!("'{requested}' does not name a file"))?;
        let parent = self.dir.join(relative.parent().unwrap_or(Path::new("")));
        let parent = parent.canonicalize().map_err(|_| {
            anyhow!(
                "the directory of '{requested}' does not exist on the server: create it under the server's root first"
            )
        })?;
        if !parent.starts_with(&self.dir) {
            bail!("'{requested}' leads outside the server's root (through a symlink): refused");
        }
        if !parent.is_dir() {
            bail!("the directory of '{requested}' is not a directory on the server");
        }
        let path = parent.join(name);
        if path.is_symlink() {
            bail!("'{requested}' is a symlink on the server: refused");
        }
        Ok(path)
    }

    /// True when `requested` is a directory inside the root (a copy into it keeps the source's name).
    pub fn is_dir(&self, requested: &str) -> bool {
        plain_relative(requested).is_ok_and(|relative| {
            self.dir
                .join(relative)
                .canonicalize()
                .is_ok_and(|path| path.starts_with(&self.dir) && path.is_dir())
        })
    }

    /// Whatever is at `requested` (file, directory, symlink; not followed), for commands that
    /// test for or remove it: None when its directory does not exist, so nothing can be there.
    pub fn entry(&self, requested: &str) -> Result<Option<PathBuf>> {
        let relative = plain_relative(requested)?;
        let Some(name) = relative.file_name() else {
            bail!("'{requested}' names the server's root, not an entry in it");
        };
        let parent = self.dir.join(relative.parent().unwrap_or(Path::new("")));
        let Ok(parent) = parent.canonicalize() else {
            return Ok(None);
        };
        if !parent.starts_with(&self.dir) {
            bail!("'{requested}' leads outside the server's root (through a symlink): refused");
        }
        Ok(Some(parent.join(name)))
    }

    /// An existing regular file to read, inside the root after following symlinks.
    pub fn existing_file(&self, requested: &str) -> Result<PathBuf> {
        let relative = plain_relative(requested)?;
        let path = self
            .dir
            .join(relative)
            .canonicalize()
            .map_err(|_| anyhow!("'{requested}' does not exist on the server"))?;
        if !path.starts_with(&self.dir) {
            bail!("'{requested}' leads outside the server's root (through a symlink): refused");
        }
        if path.is_dir() {
            bail!("'{requested}' is a directory on the server: copy takes one file");
        }
        if !path.is_file() {
            bail!("'{requested}' is not a regular file on the server");
        }
        Ok(path)
    }
}

impl Root {
    /// An existing directory to send (`copy -r` down), inside the root after following
    /// symlinks (below it, the walk follows none).
    pub fn existing_dir(&self, requested: &str) -> Result<PathBuf> {
        let relative = plain_relative(requested)?;
        let path = self
            .dir
            .join(relative)
            .canonicalize()
            .map_err(|_| anyhow!("'{requested}' does not exist on the server"))?;
        if !path.starts_with(&self.dir) {
            bail!("'{requested}' leads outside the server's root (through a symlink): refused");
        }
        if !path.is_dir() {
            bail!(
                "'{requested}' is not a directory on the server: copy -r copies a directory tree; leave out -r to copy a file"
            );
        }
        Ok(path)
    }
}

/// Accepts only plain relative paths: no root, no `..`, not empty.
fn plain_relative(requested: &str) -> Result<&Path> {
    let path = Path::new(requested);
    if requested.is_empty() {
        bail!("an empty path: name a file under the server's root");
    }
    for component in path.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                bail!("'{requested}' contains '..': paths must stay under the server's root")
            }
            Component::RootDir | Component::Prefix(_) => bail!(
                "'{requested}' is absolute: paths are relative to the server's root (drop the leading '/')"
            ),
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_the_root_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("in")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("passwd")).unwrap();
        let root = Root::new(dir.path()).unwrap();

        assert!(root.new_file("in/x").unwrap().starts_with(root.dir()));
        assert!(root.new_file("x").unwrap().starts_with(root.dir()));
        for bad in [
            "../x",
            "in/../../x",
            "/etc/x",
            "out/x",
            "passwd",
            "",
            "missing/x",
        ] {
            assert!(root.new_file(bad).is_err(), "{bad} was accepted");
        }
        assert!(root.is_dir("in") && root.is_dir(".") && !root.is_dir("out") && !root.is_dir("x"));
        assert_eq!(root.entry("in/x").unwrap(), Some(root.dir().join("in/x")));
        assert_eq!(
            root.entry("passwd").unwrap(),
            Some(root.dir().join("passwd"))
        );
        assert_eq!(root.entry("missing/x").unwrap(), None);
        for bad in ["../x", "/etc/x", "out/x", "", "."] {
            assert!(root.entry(bad).is_err(), "{bad} was accepted");
        }

        for bad in ["passwd", "../x", "/etc/passwd", "in", "missing"] {
            assert!(root.existing_file(bad).is_err(), "{bad} was accepted");
        }
    }
}
