//! A far side for fast, deterministic tests of `run` and everything above it: fake paths that
//! report the rates given, a far disk writing at a given rate, and the null disk engine here.
//! Tests give rates of a few MB/s: far below what the null engine reads at on any machine,
//! loaded or not, so this side's disk never decides a fake verdict by chance.

use std::cell::RefCell;
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, anyhow};

use super::steps::{Far, FarWrite, Paths, run_against};
use super::{RunOptions, RunReport};
use crate::disk::{EngineChoice, Pattern};
use crate::measure::{Conditions, Measurement, Unwatched, Watcher, Workload};
use crate::transport::fake::Fake;
use crate::transport::{Location, Peer, Transport, TransportKind};

/// The far side of a fake run.
pub struct FakeFar {
    pub paths: Vec<Fake>,
    /// The far disk's write rate, in MB/s.
    pub disk_write_mb_s: f64,
    /// Removing a copy there fails.
    pub removal_fails: bool,
    /// The paths whose copy was removed, in order.
    pub removed: RefCell<Vec<TransportKind>>,
    /// The paths whose tree of small files was removed, in order.
    pub removed_trees: RefCell<Vec<TransportKind>>,
    pub peer: Peer,
}

impl FakeFar {
    pub fn new(paths: Vec<Fake>, disk_write_mb_s: f64) -> FakeFar {
        FakeFar {
            paths,
            disk_write_mb_s,
            removal_fails: false,
            removed: RefCell::new(Vec::new()),
            removed_trees: RefCell::new(Vec::new()),
            peer: Peer {
                user: None,
                host: "fake".into(),
                port: None,
            },
        }
    }
}

impl Far for FakeFar {
    fn name(&self) -> String {
        "fake".into()
    }

    fn copy_destination(&self, _: TransportKind, _: &RunOptions) -> Location {
        Location::Remote {
            peer: self.peer.clone(),
            path: super::REMOTE_COPY.into(),
        }
    }

    fn transport(&self, kind: TransportKind) -> &dyn Transport {
        self.paths
            .iter()
            .find(|path| path.kind == kind)
            .expect("a fake path for every wanted kind")
    }

    fn disk_write(&self, options: &RunOptions, _: &dyn Watcher) -> Result<FarWrite> {
        let secs = options.size as f64 / (self.disk_write_mb_s * 1e6);
        let conditions = Conditions {
            direct: true,
            fsync_included: true,
            ..Conditions::default()
        };
        let write = Measurement::new(
            Workload::DiskWrite,
            options.size,
            Duration::from_secs_f64(secs),
            conditions,
            Vec::new(),
        );
        Ok(FarWrite {
            measurements: vec![write],
            reads: Vec::new(),
            nas_disk: Vec::new(),
            warnings: Vec::new(),
            device: None,
        })
    }

    fn remove_copy(&self, kind: TransportKind, _options: &RunOptions) -> Result<()> {
        if self.removal_fails {
            return Err(anyhow!("the fake server refused to remove it"));
        }
        self.removed.borrow_mut().push(kind);
        Ok(())
    }

    fn tree_destination(&self, _: TransportKind, _: &RunOptions) -> Location {
        Location::Remote {
            peer: self.peer.clone(),
            path: super::REMOTE_TREE.into(),
        }
    }

    fn remove_tree(&self, kind: TransportKind, _options: &RunOptions) -> Result<()> {
        if self.removal_fails {
            return Err(anyhow!("the fake server refused to remove it"));
        }
        self.removed_trees.borrow_mut().push(kind);
        Ok(())
    }

    fn landing_here(&self) -> Option<&Path> {
        None
    }

    fn link_ceiling(&self) -> Option<crate::ceiling::Ceiling> {
        None
    }
}

/// Options of a small run in `dir` over `far`'s paths, its disk on the null engine.
pub fn options(dir: &Path, far: &FakeFar) -> RunOptions {
    RunOptions {
        host: None,
        to: None,
        net: None,
        token: None,
        paths: far.paths.iter().map(|path| path.kind.to_string()).collect(),
        dir: dir.to_path_buf(),
        size: 8 << 20,
        streams: 1,
        net_secs: 1.0,
        repeat: 1,
        pattern: Pattern {
            block: 1 << 20,
            depth: 4,
        },
        ssh: Default::default(),
        remote_dir: String::new(),
        rdma: Default::default(),
        engine: EngineChoice::Null,
        files: 30,
        file_size: 4096,
    }
}

/// A whole run over `far`, in a fresh directory (returned with the report, which names it).
pub fn run(far: &FakeFar) -> (tempfile::TempDir, RunReport) {
    run_with(far, |_| {})
}

/// [`run`] with its options changed by `change` first.
pub fn run_with(
    far: &FakeFar,
    change: impl FnOnce(&mut RunOptions),
) -> (tempfile::TempDir, RunReport) {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let mut options = options(dir.path(), far);
    change(&mut options);
    let paths = Paths {
        wanted: far.paths.iter().map(|path| path.kind).collect(),
        skipped: Vec::new(),
    };
    let report = run_against(&options, far, paths, &Unwatched).expect("a fake run");
    (dir, report)
}
