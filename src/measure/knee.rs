//! A rate that fell for good after a burst: a write cache filling (a NAS's RAM, an SSD's SLC
//! cache), found in a measurement's per-interval series.
//!
//! The series is fitted with one step: two flat segments at their medians, each interval's
//! distance from its segment's median weighted by its length (so a lone spike, such as the last
//! buffers flushing at the end, moves nothing). The best step is a knee only when it explains most
//! of the variation, the later median is at most 1/[`FALL`] of the earlier, and both hold: few
//! intervals of the burst fall below the midpoint and few after it climb back above. The burst's
//! rate is its bytes over its time; the sustained rate is the median after the fall, so neither
//! the interval the fall happened in nor a final flush moves it.

use serde::{Deserialize, Serialize};

use super::Interval;

/// The burst must run at least this many times the sustained rate.
pub const FALL: f64 = 1.5;
/// The step must leave at most this fraction of the series' distance from one median.
const UNEXPLAINED: f64 = 0.5;
/// At most this fraction of the burst's time may run below the midpoint of the two rates, and of
/// the time after it above.
const STRAY: f64 = 0.2;
/// Intervals on each side of a knee, at the least.
const MIN_INTERVALS: usize = 2;
/// Longer series are fitted on this many merged intervals: each split sorts both segments, so
/// a day-long copy's 86,400 seconds would otherwise cost hours of CPU at its end.
const MAX_FITTED: usize = 512;

/// Where and how a rate fell for good.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Knee {
    /// Seconds from the start to the fall.
    pub at_secs: f64,
    /// Bytes moved before it.
    pub burst_bytes: u64,
    pub burst_bytes_per_sec: f64,
    /// The rate from the fall to the end: the median of its intervals' rates.
    pub sustained_bytes_per_sec: f64,
}

/// The knee of `intervals`, if it has one (None for fewer than 4 intervals).
pub fn find(intervals: &[Interval]) -> Option<Knee> {
    let merged = coarse(intervals);
    let timed: Vec<&Interval> = merged.iter().filter(|i| i.secs > 0.0).collect();
    if timed.len() < 2 * MIN_INTERVALS {
        return None;
    }
    let one_step = Segment::of(&timed).distance(&timed);
    if one_step <= 0.0 {
        return None;
    }
    let (split, two_steps) = (MIN_INTERVALS..=timed.len() - MIN_INTERVALS)
        .map(|k| {
            let (before, after) = timed.split_at(k);
            let distance =
                Segment::of(before).distance(before) + Segment::of(after).distance(after);
            (k, distance)
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))?;
    let (before, after) = timed.split_at(split);
    let (burst, sustained) = (Segment::of(before), Segment::of(after));
    if burst.median < FALL * sustained.median || two_steps > UNEXPLAINED * one_step {
        return None;
    }
    let midpoint = (burst.median + sustained.median) / 2.0;
    let stray = |side: &[&Interval], out: &dyn Fn(f64) -> bool| {
        side.iter()
            .filter(|i| out(rate(i)))
            .map(|i| i.secs)
            .sum::<f64>()
            / side.iter().map(|i| i.secs).sum::<f64>()
    };
    if stray(before, &|r| r < midpoint) > STRAY || stray(after, &|r| r > midpoint) > STRAY {
        return None;
    }
    Some(Knee {
        at_secs: after[0].start_secs,
        burst_bytes: burst.bytes,
        burst_bytes_per_sec: burst.rate,
        sustained_bytes_per_sec: sustained.median,
    })
}

/// `intervals`, adjacent ones merged so that at most [`MAX_FITTED`] remain (bytes and time kept).
fn coarse(intervals: &[Interval]) -> Vec<Interval> {
    let group = intervals.len().div_ceil(MAX_FITTED).max(1);
    intervals
        .chunks(group)
        .map(|run| Interval {
            start_secs: run[0].start_secs,
            secs: run.iter().map(|i| i.secs).sum(),
            bytes: run.iter().map(|i| i.bytes).sum(),
        })
        .collect()
}

fn rate(interval: &Interval) -> f64 {
    interval.bytes as f64 / interval.secs
}

/// A flat segment: its bytes over its time, and the median of its intervals' rates (each
/// weighted by its length).
struct Segment {
    bytes: u64,
    rate: f64,
    median: f64,
}

impl Segment {
    fn of(intervals: &[&Interval]) -> Segment {
        let bytes = intervals.iter().map(|i| i.bytes).sum();
        let secs: f64 = intervals.iter().map(|i| i.secs).sum();
        let mut by_rate: Vec<&&Interval> = intervals.iter().collect();
        by_rate.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
        let mut passed = 0.0;
        let median = by_rate
            .iter()
            .find(|i| {
                passed += i.secs;
                passed >= secs / 2.0
            })
            .map_or(0.0, |i| rate(i));
        Segment {
            bytes,
            rate: bytes as f64 / secs,
            median,
        }
    }

    /// How far the intervals' rates lie from the segment's median, weighted by their lengths.
    fn distance(&self, intervals: &[&Interval]) -> f64 {
        intervals
            .iter()
            .map(|i| i.secs * (rate(i) - self.median).abs())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One-second intervals at these MB/s.
    fn series(mb_s: &[f64]) -> Vec<Interval> {
        mb_s.iter()
            .enumerate()
            .map(|(i, &r)| Interval {
                start_secs: i as f64,
                secs: 1.0,
                bytes: (r * 1e6) as u64,
            })
            .collect()
    }

    /// One-second intervals at these MB/s, then a short last one of `secs` and `bytes`.
    fn ending_in(mb_s: &[f64], secs: f64, bytes: u64) -> Vec<Interval> {
        let mut intervals = series(mb_s);
        intervals.push(Interval {
            start_secs: mb_s.len() as f64,
            secs,
            bytes,
        });
        intervals
    }

    #[test]
    fn a_burst_then_a_lower_rate_for_good_is_a_knee_where_it_fell() {
        let mut rates = vec![1100.0; 14];
        rates.extend([280.0, 275.0, 290.0, 281.0, 284.0, 279.0]);
        let knee = find(&series(&rates)).expect("a knee");
        assert_eq!(knee.at_secs, 14.0);
        assert_eq!(knee.burst_bytes, 14 * 1_100_000_000);
        assert!((knee.burst_bytes_per_sec - 1.1e9).abs() < 1.0);
        assert!(
            (knee.sustained_bytes_per_sec / 1e6 - 280.0).abs() < 0.5,
            "{knee:?}"
        );
    }

    #[test]
    fn buffers_flushed_at_the_end_do_not_hide_a_knee() {
        // A TCP upload through tbf with a 100 MB burst: its last chunks are counted at once.
        let rates = [
            49.2, 47.1, 18.1, 5.7, 4.8, 4.2, 5.2, 4.8, 4.2, 4.8, 5.2, 0.0, 0.0, 0.0,
        ];
        let knee = find(&ending_in(&rates, 0.197, 16_777_216)).expect("a knee");
        assert_eq!(knee.at_secs, 2.0);
        assert!(
            (knee.sustained_bytes_per_sec / 1e6 - 4.8).abs() < 0.1,
            "{knee:?}"
        );
    }

    #[test]
    fn a_noisy_steady_rate_has_no_knee() {
        let rates = [
            500.0, 620.0, 410.0, 590.0, 450.0, 610.0, 400.0, 560.0, 480.0, 600.0,
        ];
        assert_eq!(find(&series(&rates)), None);
    }

    #[test]
    fn a_rate_that_dips_and_recovers_has_no_knee() {
        let rates = [
            900.0, 910.0, 905.0, 300.0, 310.0, 895.0, 900.0, 905.0, 300.0, 910.0,
        ];
        assert_eq!(find(&series(&rates)), None);
    }

    #[test]
    fn a_rise_or_a_small_fall_is_not_a_knee() {
        assert_eq!(
            find(&series(&[100.0, 110.0, 900.0, 910.0, 905.0, 900.0])),
            None
        );
        assert_eq!(
            find(&series(&[600.0, 610.0, 605.0, 450.0, 455.0, 450.0])),
            None
        );
    }

    #[test]
    fn a_day_long_series_finds_its_knee_within_one_merged_interval() {
        let mut rates = vec![900.0; 30_000];
        rates.extend(vec![300.0; 56_400]);
        let knee = find(&series(&rates)).expect("a knee");
        assert!((knee.at_secs - 30_000.0).abs() <= 170.0, "{knee:?}");
        assert!(
            (knee.sustained_bytes_per_sec / 1e6 - 300.0).abs() < 1.0,
            "{knee:?}"
        );
    }

    #[test]
    fn too_few_intervals_say_nothing() {
        assert_eq!(find(&series(&[1000.0, 1000.0, 100.0])), None);
        assert_eq!(find(&[]), None);
    }

    #[test]
    fn a_short_last_interval_weighs_little() {
        let rates = [800.0, 800.0, 800.0, 200.0, 200.0, 200.0];
        let knee = find(&ending_in(&rates, 0.05, 50_000_000)).expect("a knee");
        assert_eq!(knee.at_secs, 3.0);
    }
}
