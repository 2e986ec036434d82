//! The mesh's verdict: a host whose every figure in (or out) stands below the others' is the
//! slow one, its link or NIC rather than its peers'.

use serde::Serialize;

/// A host is named slow when every rate into it (or out of it) is below this fraction of the
/// median of the rates that do not end (or start) there: 0.7 leaves the run-to-run noise of a
/// healthy link (a few percent) well inside, and catches a port at a lower speed or a bad cable.
pub const SLOW_HOST_RATIO: f64 = 0.7;

/// Which side of a host is slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Every sender reaches it slowly.
    Receives,
    /// It reaches every receiver slowly.
    Sends,
}

/// A host that stands out, with the figures that make it so, in bytes per second.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlowHost {
    /// Index into the mesh's host list.
    pub host: usize,
    pub side: Side,
    /// The fastest of its figures on that side: every one is at most this.
    pub best_bytes_per_sec: f64,
    /// The median of the figures not on that side of it.
    pub others_median_bytes_per_sec: f64,
}

/// The hosts whose every rate in, or every rate out, is below [`SLOW_HOST_RATIO`] × the
/// median of the others. `rates` are `(from, to, bytes per second)`; a side needs two figures
/// (with one, the sender and the receiver cannot be told apart) and the others three hosts.
pub fn slow_hosts(hosts: usize, rates: &[(usize, usize, f64)]) -> Vec<SlowHost> {
    let mut slow = Vec::new();
    if hosts < 3 {
        return slow;
    }
    for host in 0..hosts {
        for side in [Side::Receives, Side::Sends] {
            let on_side = |&&(from, to, _): &&(usize, usize, f64)| match side {
                Side::Receives => to == host,
                Side::Sends => from == host,
            };
            let mine: Vec<f64> = rates.iter().filter(on_side).map(|r| r.2).collect();
            let others: Vec<f64> = rates.iter().filter(|r| !on_side(r)).map(|r| r.2).collect();
            if mine.len() < 2 || others.is_empty() {
                continue;
            }
            let best = mine.iter().copied().fold(0.0, f64::max);
            let median = median(others);
            if median > 0.0 && best < SLOW_HOST_RATIO * median {
                slow.push(SlowHost {
                    host,
                    side,
                    best_bytes_per_sec: best,
                    others_median_bytes_per_sec: median,
                });
            }
        }
    }
    slow
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match values.len() % 2 {
        1 => values[mid],
        _ => (values[mid - 1] + values[mid]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every ordered pair of `hosts` at `rate`, except as `slow` says.
    fn mesh(hosts: usize, slow: impl Fn(usize, usize) -> Option<f64>) -> Vec<(usize, usize, f64)> {
        let mut rates = Vec::new();
        for from in 0..hosts {
            for to in (0..hosts).filter(|to| *to != from) {
                rates.push((from, to, slow(from, to).unwrap_or(1.17e9)));
            }
        }
        rates
    }

    #[test]
    fn a_host_every_sender_reaches_slowly_is_named_as_the_slow_receiver() {
        let rates = mesh(4, |_, to| (to == 2).then_some(0.117e9));
        let slow = slow_hosts(4, &rates);
        assert_eq!(slow.len(), 1, "{slow:?}");
        assert_eq!((slow[0].host, slow[0].side), (2, Side::Receives));
        assert_eq!(slow[0].best_bytes_per_sec, 0.117e9);
        assert_eq!(slow[0].others_median_bytes_per_sec, 1.17e9);
    }

    #[test]
    fn a_host_that_sends_slowly_to_every_receiver_is_named_as_the_slow_sender() {
        let rates = mesh(3, |from, _| (from == 0).then_some(0.5e9));
        let slow = slow_hosts(3, &rates);
        assert_eq!(slow.len(), 1, "{slow:?}");
        assert_eq!((slow[0].host, slow[0].side), (0, Side::Sends));
    }

    #[test]
    fn an_even_mesh_or_one_slow_pair_names_no_host() {
        assert!(slow_hosts(4, &mesh(4, |_, _| None)).is_empty());
        let one_pair = mesh(4, |from, to| (from == 1 && to == 3).then_some(0.1e9));
        assert!(slow_hosts(4, &one_pair).is_empty());
    }

    #[test]
    fn a_figure_just_above_the_ratio_names_no_host() {
        let rates = mesh(4, |_, to| {
            (to == 1).then_some(1.17e9 * (SLOW_HOST_RATIO + 0.01))
        });
        assert!(slow_hosts(4, &rates).is_empty());
    }

    #[test]
    fn two_hosts_cannot_tell_a_slow_sender_from_a_slow_receiver() {
        assert!(slow_hosts(2, &[(0, 1, 0.1e9), (1, 0, 1.17e9)]).is_empty());
    }
}
