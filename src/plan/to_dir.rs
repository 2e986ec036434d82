//! `run --to DIR`: the far side is a directory on this machine, on a mounted SMB or NFS share
//! or on another local disk. Its write and cold read are measured here with the disk engine, the
//! copy is the local path (the kernel's share client carries the bytes), and a `serve` on the
//! NAS (`--net`) measures the network and the NAS's own disk, so the verdict can tell the link
//! from the NAS's disk and from the sharing protocol. Without `--net`, a share's network stands
//! at its link's negotiated speed, labelled as not measured.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use super::steps::{Far, FarWrite, Paths};
use super::verdict::Destination;
use super::{REMOTE_COPY, REMOTE_TREE, RunOptions};
use crate::ceiling::Ceiling;
use crate::disk::{self, BaselineOptions, Passes};
use crate::file;
use crate::measure::{Watcher, Workload};
use crate::mounts::{self, MountFacts};
use crate::transport::local::LocalCopy;
use crate::transport::tcp::Tcp;
use crate::transport::tree::{TreePlan, TreeReport};
use crate::transport::{Location, Peer, Transport, TransportKind, serve_client};

/// A directory as the far side of a run.
pub(crate) struct DirFar {
    dir: PathBuf,
    mount: MountFacts,
    local: LocalCopy,
    /// `--net`: the `serve` on the NAS, as given and as a client.
    net: Option<(String, Tcp)>,
}

impl DirFar {
    /// The far side of a run to `dir`, its one path (the local copy). Errors: `dir` is not a
    /// directory, `--net` given for a directory on a local file system or naming a bad host.
    pub(crate) fn start(options: &RunOptions, dir: &Path) -> Result<(DirFar, Paths)> {
        let meta =
            std::fs::metadata(dir).map_err(|err| anyhow!(file::describe_path_error(dir, err)))?;
        if !meta.is_dir() {
            bail!(
                "--to {} is not a directory: give the directory copies go to",
                dir.display()
            );
        }
        let mount = mounts::facts(dir);
        let net = match &options.net {
            Some(_) if !mount.is_network() => bail!(
                "--net measures the network to a share's server, but --to {} is on {}, a local \
                 file system: leave --net out",
                dir.display(),
                mount.fs_type
            ),
            Some(host) => {
                let client = serve_client(Peer::parse(host)?, options.token.clone())?;
                Some((host.clone(), Tcp::with_client(client)))
            }
            None => None,
        };
        let far = DirFar {
            dir: dir.to_path_buf(),
            mount,
            local: LocalCopy,
            net,
        };
        let paths = Paths {
            wanted: vec![TransportKind::Local],
            skipped: Vec::new(),
        };
        Ok((far, paths))
    }

    fn copy_path(&self) -> PathBuf {
        self.dir.join(REMOTE_COPY)
    }

    fn tree_path(&self) -> PathBuf {
        self.dir.join(REMOTE_TREE)
    }
}

impl Far for DirFar {
    fn name(&self) -> String {
        self.dir.display().to_string()
    }

    fn copy_destination(&self, _: TransportKind, _: &RunOptions) -> Location {
        Location::Local(self.copy_path())
    }

    fn transport(&self, _: TransportKind) -> &dyn Transport {
        &self.local
    }

    fn network(&self, _: TransportKind) -> Result<&dyn Transport, String> {
        match (&self.net, self.mount.is_network()) {
            (Some((_, tcp)), _) => Ok(tcp),
            (None, true) => Err(format!(
                "not measured: give --net HOST with `xferbench serve` running on {}",
                self.mount.server.as_deref().unwrap_or("the NAS")
            )),
            (None, false) => Err(format!(
                "none ({} is on {}, a local file system)",
                self.dir.display(),
                self.mount.fs_type
            )),
        }
    }

    /// The directory's write (through fsync) and cold read, O_DIRECT where the file system
    /// takes it; with `--net`, the NAS's own disk writing, measured by its `serve`.
    fn disk_write(&self, options: &RunOptions, watcher: &dyn Watcher) -> Result<FarWrite> {
        let baseline = disk::baseline(
            &BaselineOptions {
                path: self.dir.clone(),
                size: Some(options.size),
                pattern: options.pattern,
                direct: true,
                evict: true,
                engine: options.engine,
                passes: Passes::WriteThenRead,
            },
            watcher,
        )
        .with_context(|| format!("the baseline of {}", self.dir.display()))?;
        let (writes, reads) = baseline
            .measurements
            .into_iter()
            .map(|placed| placed.measurement)
            .partition(|m| m.workload == Workload::DiskWrite);
        let nas_disk = match &self.net {
            Some((host, tcp)) => tcp
                .remote_baseline(options.size, options.pattern)
                .with_context(|| format!("the NAS's own disk, by the serve at {host}"))?
                .measurements
                .into_iter()
                .filter(|m| m.workload == Workload::DiskWrite)
                .collect(),
            None => Vec::new(),
        };
        Ok(FarWrite {
            measurements: writes,
            reads,
            nas_disk,
            warnings: baseline.warnings,
            device: None,
        })
    }

    fn remove_copy(&self, _: TransportKind, _: &RunOptions) -> Result<()> {
        match std::fs::remove_file(self.copy_path()) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(anyhow!(file::describe_path_error(&self.copy_path(), err)))
            }
            _ => Ok(()),
        }
    }

    fn tree_destination(&self, _: TransportKind, _: &RunOptions) -> Location {
        Location::Local(self.tree_path())
    }

    /// `copy -r` onto the directory, as the local path copies a tree; a tree some earlier run
    /// left there is removed first, so this one lands as itself and not inside it.
    fn copy_tree(
        &self,
        _: TransportKind,
        plan: &TreePlan,
        watcher: &dyn Watcher,
    ) -> Result<TreeReport> {
        super::steps::remove_local_tree(&self.tree_path())?;
        crate::transport::tree::copy(plan, watcher)
    }

    fn remove_tree(&self, _: TransportKind, _: &RunOptions) -> Result<()> {
        super::steps::remove_local_tree(&self.tree_path())
    }

    fn landing_here(&self) -> Option<&Path> {
        Some(&self.dir)
    }

    fn link_ceiling(&self) -> Option<Ceiling> {
        self.mount.link_ceiling()
    }

    fn destination(&self) -> Destination {
        match self.mount.is_network() {
            true => Destination::Share {
                fs_type: self.mount.fs_type.clone(),
            },
            false => Destination::LocalDir,
        }
    }

    fn baselines_words(&self) -> String {
        match (&self.net, self.mount.is_network()) {
            (Some((host, _)), _) => format!(
                "source read here, share write and read (cold) in {}, the NAS's own disk by the \
                 serve at {host}",
                self.dir.display()
            ),
            (None, true) => format!(
                "source read here, share write and read (cold) in {}",
                self.dir.display()
            ),
            (None, false) => format!(
                "source read here, write and read (cold) in {}",
                self.dir.display()
            ),
        }
    }

    /// Only asked when `--net` gave a serve to measure against.
    fn network_words(&self, _: TransportKind) -> String {
        let host = self.net.as_ref().map_or("", |(host, _)| host.as_str());
        format!("to the serve at {host} over tcp")
    }

    fn copy_words(&self, _: TransportKind) -> String {
        format!("to {}", self.dir.display())
    }
}
