//! `xferbench run`: what is measured, in which order, and the result every exporter reads.
//!
//! Test file → source read and destination write baselines → memory to memory for each path →
//! disk to disk for each path (verified) → the verdict. Paths this build or peer cannot do are
//! listed as skipped with the reason, never dropped.

use serde::Serialize;

use crate::measure::{CpuUse, Measurement};
use crate::report::verdict::Verdict;
use crate::transport::TransportKind;
use crate::units::Rate;
use crate::warning::Warning;

/// The paths `--via` may name, known to the design; the ones this build lacks are skipped.
pub const PATH_NAMES: [&str; 4] = ["tcp", "ssh", "rdma", "udp"];

/// Min, median, max and standard deviation of repeated figures of one stage (`--repeat`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub min_bytes_per_sec: f64,
    pub median_bytes_per_sec: f64,
    pub max_bytes_per_sec: f64,
    pub stddev_bytes_per_sec: f64,
    /// Every run, in order, with its conditions and intervals.
    pub measurements: Vec<Measurement>,
}

impl Summary {
    /// None for no measurements.
    pub fn of(measurements: Vec<Measurement>) -> Option<Summary> {
        if measurements.is_empty() {
            return None;
        }
        let mut rates: Vec<f64> = measurements.iter().map(|m| m.bytes_per_sec).collect();
        rates.sort_by(f64::total_cmp);
        let n = rates.len();
        let median = if n % 2 == 1 {
            rates[n / 2]
        } else {
            (rates[n / 2 - 1] + rates[n / 2]) / 2.0
        };
        let mean = rates.iter().sum::<f64>() / n as f64;
        let variance = if n > 1 {
            rates.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        Some(Summary {
            min_bytes_per_sec: rates[0],
            median_bytes_per_sec: median,
            max_bytes_per_sec: rates[n - 1],
            stddev_bytes_per_sec: variance.sqrt(),
            measurements,
        })
    }

    /// The figure the verdict uses: the median.
    pub fn rate(&self) -> Rate {
        Rate {
            bytes_per_sec: self.median_bytes_per_sec,
        }
    }
}

/// What `run` was asked to do.
#[derive(Debug, Clone, Serialize)]
pub struct Parameters {
    /// `HOST:PORT`, or "embedded" for the in-process server on loopback.
    pub server: String,
    pub paths: Vec<String>,
    pub size: u64,
    pub streams: usize,
    pub net_secs: f64,
    pub repeat: usize,
    pub block_size: u64,
    pub iodepth: usize,
}

/// One transfer path's figures and verdict.
#[derive(Debug, Clone, Serialize)]
pub struct PathResult {
    pub path: TransportKind,
    /// Memory to memory (the receiver's figure of the upload).
    pub network: Option<Summary>,
    /// Disk to disk, verified.
    pub copy: Option<Summary>,
    /// CPU use of the client and the server during the last copy.
    pub copy_cpu: Vec<CpuUse>,
    pub verdict: Option<Verdict>,
    /// The verdict as a sentence, figures placed against the classes.
    pub sentence: String,
}

/// A path that was not measured, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

/// The result of `xferbench run`: the one object every exporter renders.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub parameters: Parameters,
    /// The test file read on this side.
    pub test_file: String,
    /// Whether an existing, fully written test file was reused.
    pub test_file_reused: bool,
    pub source_read: Option<Summary>,
    pub destination_write: Option<Summary>,
    pub paths: Vec<PathResult>,
    pub skipped: Vec<Skipped>,
    pub warnings: Vec<Warning>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::{Conditions, Stage};
    use std::time::Duration;

    fn measured(mb_per_sec: f64) -> Measurement {
        Measurement::new(
            Stage::Copy,
            (mb_per_sec * 1e6) as u64,
            Duration::from_secs(1),
            Conditions::default(),
            Vec::new(),
        )
    }

    #[test]
    fn a_summary_gives_min_median_max_and_sample_stddev() {
        let summary = Summary::of(vec![measured(300.0), measured(100.0), measured(200.0)]).unwrap();
        assert_eq!(summary.min_bytes_per_sec, 100e6);
        assert_eq!(summary.median_bytes_per_sec, 200e6);
        assert_eq!(summary.max_bytes_per_sec, 300e6);
        assert!((summary.stddev_bytes_per_sec - 100e6).abs() < 1.0);
        assert_eq!(summary.measurements.len(), 3);
        assert!(Summary::of(Vec::new()).is_none());
        let even = Summary::of(vec![measured(100.0), measured(200.0)]).unwrap();
        assert_eq!(even.median_bytes_per_sec, 150e6);
    }
}
