//! What every measurement records, whichever stage or path produced it.
//!
//! One [`Measurement`] type for disks, networks and copies, so they land in the same table and JSON.
//! Measuring code fills these and never prints; progress bars read a shared [`Counter`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::disk::EngineKind;
use crate::units::Rate;

/// What was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Sequential write of a test file, timed through fsync.
    DiskWrite,
    /// Sequential read of a file.
    DiskRead,
    /// `gen` filling a test file.
    Fill,
}

impl Stage {
    pub fn label(self) -> &'static str {
        match self {
            Stage::DiskWrite => "write",
            Stage::DiskRead => "read",
            Stage::Fill => "fill",
        }
    }
}

/// The conditions a figure was taken under, so that it says what it measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Conditions {
    /// O_DIRECT (true) or through the page cache (false).
    pub direct: bool,
    /// Whether the time includes the final fsync.
    pub fsync_included: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iodepth: Option<usize>,
    /// Fraction of the file in the page cache just before a buffered read (0 to 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_before: Option<f64>,
}

/// Bytes moved during one reporting interval, from the start of the measurement.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub start_secs: f64,
    pub secs: f64,
    pub bytes: u64,
}

/// One figure: so many bytes in so much time, under stated conditions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measurement {
    pub stage: Stage,
    pub bytes: u64,
    pub secs: f64,
    pub bytes_per_sec: f64,
    pub conditions: Conditions,
    pub intervals: Vec<Interval>,
}

impl Measurement {
    pub fn new(
        stage: Stage,
        bytes: u64,
        elapsed: Duration,
        conditions: Conditions,
        intervals: Vec<Interval>,
    ) -> Measurement {
        Measurement {
            stage,
            bytes,
            secs: elapsed.as_secs_f64(),
            bytes_per_sec: Rate::new(bytes, elapsed).bytes_per_sec,
            conditions,
            intervals,
        }
    }

    pub fn rate(&self) -> Rate {
        Rate {
            bytes_per_sec: self.bytes_per_sec,
        }
    }
}

/// Bytes done so far, shared between a measuring loop and whoever watches it.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn new() -> Counter {
        Counter::default()
    }

    pub fn add(&self, bytes: u64) {
        self.0.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Someone watching a measurement run (a progress bar); measuring code only announces and counts.
pub trait Watcher {
    /// A phase named `label` of `total` bytes begins; `counter` will count its bytes.
    fn begin(&self, label: &str, total: u64, counter: &Counter);
    /// The phase ended, well or not.
    fn end(&self);
}

/// Nobody watches: for tests, benches and `--quiet`.
pub struct Unwatched;

impl Watcher for Unwatched {
    fn begin(&self, _label: &str, _total: u64, _counter: &Counter) {}
    fn end(&self) {}
}

/// Runs one phase under a watcher: announces it, hands `run` the counter, and ends it either way.
pub fn watch<T>(
    watcher: &dyn Watcher,
    label: &str,
    total: u64,
    run: impl FnOnce(&Counter) -> T,
) -> T {
    let counter = Counter::new();
    watcher.begin(label, total, &counter);
    let outcome = run(&counter);
    watcher.end();
    outcome
}

/// How often intervals are cut, like iperf3's default `-i 1`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// Cuts a running byte total into [`Interval`]s as time passes.
#[derive(Debug)]
pub struct IntervalClock {
    start: Instant,
    every: Duration,
    mark: Instant,
    mark_bytes: u64,
    intervals: Vec<Interval>,
}

impl IntervalClock {
    pub fn start(every: Duration) -> IntervalClock {
        let now = Instant::now();
        IntervalClock {
            start: now,
            every,
            mark: now,
            mark_bytes: 0,
            intervals: Vec::new(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Records `total` bytes done so far; closes an interval when one is due.
    pub fn observe(&mut self, total: u64) {
        let now = Instant::now();
        if now.duration_since(self.mark) >= self.every {
            self.cut(now, total);
        }
    }

    /// Closes the last, possibly short, interval and returns the time since start and all intervals.
    pub fn finish(mut self, total: u64) -> (Duration, Vec<Interval>) {
        let now = Instant::now();
        if total > self.mark_bytes || self.intervals.is_empty() {
            self.cut(now, total);
        }
        (now.duration_since(self.start), self.intervals)
    }

    fn cut(&mut self, now: Instant, total: u64) {
        self.intervals.push(Interval {
            start_secs: self.mark.duration_since(self.start).as_secs_f64(),
            secs: now.duration_since(self.mark).as_secs_f64(),
            bytes: total - self.mark_bytes,
        });
        self.mark = now;
        self.mark_bytes = total;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_add_up_to_the_total() {
        let mut clock = IntervalClock::start(Duration::from_millis(5));
        for step in 1..=4u64 {
            std::thread::sleep(Duration::from_millis(6));
            clock.observe(step * 100);
        }
        let (elapsed, intervals) = clock.finish(450);
        assert!(intervals.len() >= 4, "{intervals:?}");
        assert_eq!(intervals.iter().map(|i| i.bytes).sum::<u64>(), 450);
        let covered: f64 = intervals.iter().map(|i| i.secs).sum();
        assert!((covered - elapsed.as_secs_f64()).abs() < 1e-6);
    }
}
