//! Which ordered pairs of hosts a mesh measures, and in which rounds: pure, no I/O.
//!
//! Hosts are indices into the mesh's host list; a pair `(from, to)` is `from` measuring toward
//! `to`. The default schedule is a round-robin tournament (the circle method): no host is in two
//! tests of a round, so no test shares a link or NIC with another.

/// A test from one host toward another, as indices into the host list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pair {
    pub from: usize,
    pub to: usize,
}

/// Which ordered pairs to measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every host toward every other: n(n−1) pairs.
    All,
    /// Every host of `from` toward every host of `to` but itself.
    Between { from: Vec<usize>, to: Vec<usize> },
    /// Each host toward the next, the last toward the first.
    Ring,
}

/// How the selected pairs are spread over rounds; a round's tests start together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Disjoint pairs together, no host twice in a round.
    Rounds,
    /// One pair a round.
    Serial,
    /// Every pair in one round.
    AllAtOnce,
}

/// The ordered pairs `selection` names among `hosts` hosts, in the circle method's order.
pub fn select(hosts: usize, selection: &Selection) -> Vec<Pair> {
    let order = tournament(hosts);
    match selection {
        Selection::All => order,
        Selection::Between { from, to } => order
            .into_iter()
            .filter(|pair| from.contains(&pair.from) && to.contains(&pair.to))
            .collect(),
        Selection::Ring => {
            let ring: Vec<Pair> = (0..hosts)
                .map(|from| Pair {
                    from,
                    to: (from + 1) % hosts,
                })
                .filter(|pair| pair.from != pair.to)
                .collect();
            order
                .into_iter()
                .filter(|pair| ring.contains(pair))
                .collect()
        }
    }
}

/// The pairs grouped in rounds as `schedule` says; every pair is in exactly one round.
pub fn rounds(pairs: &[Pair], schedule: Schedule) -> Vec<Vec<Pair>> {
    match schedule {
        Schedule::Serial => pairs.iter().map(|pair| vec![*pair]).collect(),
        Schedule::AllAtOnce if pairs.is_empty() => Vec::new(),
        Schedule::AllAtOnce => vec![pairs.to_vec()],
        Schedule::Rounds => {
            // First fit in the circle method's order gives back its rounds for all pairs, and
            // no more rounds than it for any subset of them.
            let mut rounds: Vec<Vec<Pair>> = Vec::new();
            for pair in pairs {
                let free = rounds.iter_mut().find(|round| {
                    round.iter().all(|other| {
                        ![other.from, other.to].contains(&pair.from)
                            && ![other.from, other.to].contains(&pair.to)
                    })
                });
                match free {
                    Some(round) => round.push(*pair),
                    None => rounds.push(vec![*pair]),
                }
            }
            rounds
        }
    }
}

/// Every ordered pair of `hosts` hosts in the circle method's rounds: for n hosts (one more,
/// a bye, when n is odd) n−1 rounds of disjoint unordered pairs one way, then the same rounds
/// the other way.
fn tournament(hosts: usize) -> Vec<Pair> {
    if hosts < 2 {
        return Vec::new();
    }
    let seats = hosts + hosts % 2;
    let bye = hosts;
    let mut forward = Vec::new();
    for round in 0..seats - 1 {
        // Seat 0 stays; the others turn one place a round.
        let seat = |i: usize| match i {
            0 => 0,
            i => 1 + (i - 1 + round) % (seats - 1),
        };
        for i in 0..seats / 2 {
            let (a, b) = (seat(i), seat(seats - 1 - i));
            if a != bye && b != bye {
                // Alternate sides so no host sends in every forward round.
                forward.push(match round % 2 {
                    0 => Pair { from: a, to: b },
                    _ => Pair { from: b, to: a },
                });
            }
        }
    }
    let backward = forward.iter().map(|pair| Pair {
        from: pair.to,
        to: pair.from,
    });
    let mut all = forward.clone();
    all.extend(backward);
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn assert_no_host_twice_in_a_round(rounds: &[Vec<Pair>]) {
        for round in rounds {
            let mut busy = HashSet::new();
            for pair in round {
                assert!(busy.insert(pair.from), "{round:?}");
                assert!(busy.insert(pair.to), "{round:?}");
            }
        }
    }

    fn assert_each_once(pairs: &[Pair], expected: &[Pair]) {
        let mut got = pairs.to_vec();
        let mut want = expected.to_vec();
        got.sort();
        want.sort();
        assert_eq!(got, want);
    }

    fn every_ordered_pair(hosts: usize) -> Vec<Pair> {
        (0..hosts)
            .flat_map(|from| {
                (0..hosts)
                    .filter(move |to| *to != from)
                    .map(move |to| Pair { from, to })
            })
            .collect()
    }

    #[test]
    fn all_pairs_run_every_ordered_pair_exactly_once() {
        for hosts in 2..=9 {
            let pairs = select(hosts, &Selection::All);
            assert_each_once(&pairs, &every_ordered_pair(hosts));
            for schedule in [Schedule::Rounds, Schedule::Serial, Schedule::AllAtOnce] {
                let flat: Vec<Pair> = rounds(&pairs, schedule).concat();
                assert_each_once(&flat, &pairs);
            }
        }
    }

    #[test]
    fn the_default_schedule_never_puts_a_host_in_two_tests_of_a_round() {
        for hosts in 2..=9 {
            assert_no_host_twice_in_a_round(&rounds(
                &select(hosts, &Selection::All),
                Schedule::Rounds,
            ));
        }
        assert_no_host_twice_in_a_round(&rounds(&select(7, &Selection::Ring), Schedule::Rounds));
    }

    #[test]
    fn even_hosts_take_2_n_minus_1_full_rounds_and_odd_hosts_2_n_with_a_bye() {
        for hosts in [2, 4, 6, 8] {
            let all = rounds(&select(hosts, &Selection::All), Schedule::Rounds);
            assert_eq!(all.len(), 2 * (hosts - 1), "{hosts} hosts");
            assert!(all.iter().all(|round| round.len() == hosts / 2));
        }
        for hosts in [3, 5, 7] {
            let all = rounds(&select(hosts, &Selection::All), Schedule::Rounds);
            assert_eq!(all.len(), 2 * hosts, "{hosts} hosts");
            assert!(all.iter().all(|round| round.len() == hosts / 2));
        }
    }

    #[test]
    fn serial_runs_one_pair_a_round_and_all_at_once_one_round() {
        let pairs = select(4, &Selection::All);
        assert_eq!(rounds(&pairs, Schedule::Serial).len(), 12);
        assert_eq!(rounds(&pairs, Schedule::AllAtOnce), vec![pairs.clone()]);
    }

    #[test]
    fn from_to_selects_every_sender_toward_every_receiver_but_itself() {
        let selection = Selection::Between {
            from: vec![0, 1],
            to: vec![1, 2, 3],
        };
        let pairs = select(4, &selection);
        let expected: Vec<Pair> = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3)]
            .map(|(from, to)| Pair { from, to })
            .to_vec();
        assert_each_once(&pairs, &expected);
        assert_no_host_twice_in_a_round(&rounds(&pairs, Schedule::Rounds));
    }

    #[test]
    fn a_ring_runs_each_host_toward_the_next_in_two_or_three_rounds() {
        let pairs = select(5, &Selection::Ring);
        let expected: Vec<Pair> = (0..5)
            .map(|from| Pair {
                from,
                to: (from + 1) % 5,
            })
            .collect();
        assert_each_once(&pairs, &expected);
        assert!(rounds(&pairs, Schedule::Rounds).len() <= 3);
        assert_eq!(
            rounds(&select(4, &Selection::Ring), Schedule::Rounds).len(),
            2
        );
    }
}
