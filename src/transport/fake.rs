//! A path that moves no byte and reports the rates it is given: for fast, deterministic tests
//! of what sits above the transports (`run`, the verdict, the exporters). Never a real figure.

use std::time::Duration;

use anyhow::{Result, anyhow};

use super::tree::{Listed, TreePlan, TreeReport};
use super::{
    CopyPlan, CopyReport, CpuBoth, DirectionReport, LatPlan, LatReport, Location, NetPlan,
    NetReport, StreamReport, TimeSplit, Transport, TransportKind, Verification,
};
use crate::measure::{Conditions, CpuUse, Direction, Measurement, OneWay, Watcher, Workload};

/// A step of a path that the fake fails, with the error it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailAt {
    Latency,
    Network,
    Copy,
    /// A tree copy (`copy_tree`) fails as a whole.
    Tree,
}

/// A transport of `kind` whose memory-to-memory and copy figures are the rates given, in
/// bytes per second, and whose round trip is `round_trip`.
#[derive(Debug, Clone)]
pub struct Fake {
    pub kind: TransportKind,
    pub network_bytes_per_sec: f64,
    pub copy_bytes_per_sec: f64,
    pub round_trip: Duration,
    /// Where it fails, with "the fake path failed here" as the error.
    pub fail: Option<FailAt>,
    /// The rate of a tree copy, in bytes per second; None: it refuses trees, as a path
    /// without them does.
    pub tree_bytes_per_sec: Option<f64>,
    /// Files of a tree copy listed as failed (the first ones walked); the rest land.
    pub tree_files_failing: u64,
}

impl Fake {
    pub fn new(kind: TransportKind, network_mb_s: f64, copy_mb_s: f64) -> Fake {
        Fake {
            kind,
            network_bytes_per_sec: network_mb_s * 1e6,
            copy_bytes_per_sec: copy_mb_s * 1e6,
            round_trip: Duration::from_micros(50),
            fail: None,
            tree_bytes_per_sec: Some(copy_mb_s * 1e6),
            tree_files_failing: 0,
        }
    }

    /// This fake with trees copied at `mb_s`, or refused (None).
    pub fn with_trees(self, mb_s: Option<f64>) -> Fake {
        Fake {
            tree_bytes_per_sec: mb_s.map(|mb_s| mb_s * 1e6),
            ..self
        }
    }

    fn fails(&self, at: FailAt) -> Result<()> {
        match self.fail == Some(at) {
            true => Err(anyhow!("the fake {} path failed in {at:?}", self.kind)),
            false => Ok(()),
        }
    }

    fn conditions(&self, streams: usize) -> Conditions {
        Conditions {
            path: Some(self.kind),
            streams: Some(streams),
            ..Conditions::default()
        }
    }

    fn no_cpu() -> CpuBoth {
        CpuBoth {
            local: CpuUse::default(),
            remote: Some(CpuUse::default()),
        }
    }
}

/// `bytes` taking as long as they would at `bytes_per_sec`.
fn at_rate(
    workload: Workload,
    bytes: u64,
    bytes_per_sec: f64,
    conditions: Conditions,
) -> Measurement {
    let elapsed = Duration::from_secs_f64(bytes as f64 / bytes_per_sec);
    Measurement::new(workload, bytes, elapsed, conditions, Vec::new())
}

impl Transport for Fake {
    fn kind(&self) -> TransportKind {
        self.kind
    }

    fn mem_to_mem(&self, plan: &NetPlan, _watcher: &dyn Watcher) -> Result<NetReport> {
        self.fails(FailAt::Network)?;
        let bytes = (self.network_bytes_per_sec * plan.secs) as u64;
        let conditions = self.conditions(plan.streams);
        let measured = |workload| {
            at_rate(
                workload,
                bytes,
                self.network_bytes_per_sec,
                conditions.clone(),
            )
        };
        Ok(NetReport {
            server: "fake".into(),
            path: self.kind,
            streams: plan.streams,
            secs: plan.secs,
            omit_secs: plan.omit_secs,
            len: plan.len,
            window: plan.window,
            directions: vec![DirectionReport {
                direction: Direction::Upload,
                sender: measured(Workload::NetSend),
                receiver: measured(Workload::NetReceive),
                retransmits: None,
                streams: vec![StreamReport {
                    id: 1,
                    sender_bytes: bytes,
                    receiver_bytes: bytes,
                    retransmits: None,
                    intervals: Vec::new(),
                }],
                datagrams: None,
            }],
            cpu: Fake::no_cpu(),
            latency: None,
            warnings: Vec::new(),
        })
    }

    fn copy(&self, plan: &CopyPlan, _watcher: &dyn Watcher) -> Result<CopyReport> {
        self.fails(FailAt::Copy)?;
        let Location::Local(source) = &plan.source else {
            return Err(anyhow!("the fake path uploads only"));
        };
        let bytes = std::fs::metadata(source)?.len();
        let measurement = at_rate(
            Workload::Copy,
            bytes,
            self.copy_bytes_per_sec,
            self.conditions(plan.streams),
        );
        let digest = "0".repeat(16);
        Ok(CopyReport {
            source: source.display().to_string(),
            destination: "fake".into(),
            path: self.kind,
            split: TimeSplit {
                fsync_secs: 0.0,
                ..TimeSplit::default()
            },
            measurement,
            verify: plan.verify.then(|| Verification {
                algorithm: "fake".into(),
                source: digest.clone(),
                destination: digest,
                matched: true,
                reread: None,
                far_reread: None,
            }),
            resumed: None,
            cpu: Fake::no_cpu(),
            warnings: Vec::new(),
        })
    }

    fn latency(&self, plan: &LatPlan) -> Result<LatReport> {
        self.fails(FailAt::Latency)?;
        let mut one_way = OneWay::new();
        one_way.record(self.round_trip);
        Ok(LatReport {
            server: "fake".into(),
            path: self.kind,
            size: plan.size,
            latency: one_way.latency("fake round trip"),
            cpu: Fake::no_cpu(),
            warnings: Vec::new(),
        })
    }

    fn copy_tree(&self, plan: &TreePlan, _watcher: &dyn Watcher) -> Result<TreeReport> {
        self.fails(FailAt::Tree)?;
        let Some(bytes_per_sec) = self.tree_bytes_per_sec else {
            return Err(anyhow!(
                "copy -r over {}: the fake path carries one file at a time",
                self.kind
            ));
        };
        let Location::Local(source) = &plan.source else {
            return Err(anyhow!("the fake path uploads only"));
        };
        let totals = crate::file::tree::count(source);
        let failing = self.tree_files_failing.min(totals.files);
        let mut failed = Listed::default();
        for n in 0..failing {
            failed.add(
                &source.join(format!("file-{n}")),
                "the fake path failed this file".into(),
            );
        }
        let mut landed = totals;
        landed.files -= failing;
        if let Some(per_file) = totals.bytes.checked_div(totals.files) {
            landed.bytes -= per_file * failing;
        }
        let measurement = at_rate(
            Workload::Copy,
            landed.bytes,
            bytes_per_sec,
            self.conditions(plan.workers),
        );
        let files_per_sec = match measurement.secs {
            secs if secs > 0.0 => landed.files as f64 / secs,
            _ => 0.0,
        };
        Ok(TreeReport {
            source: source.display().to_string(),
            destination: "fake".into(),
            path: self.kind,
            measurement,
            landed,
            files_per_sec,
            fsync: plan.fsync,
            workers: plan.workers,
            verified: plan.verify,
            failed,
            changed: Listed::default(),
            skipped: Listed::default(),
            cpu: CpuUse::default(),
            remote_cpu: None,
            far_tool: None,
            warnings: Vec::new(),
        })
    }
}
