//! `mesh`: the coordinator. It measures between every selected pair of serves, asking the
//! sending serve (with its token) to measure toward the receiving one (with that one's token)
//! over the control protocol's `measure_to`; this machine moves no test bytes itself.
//!
//! [`hosts`] reads the host list (ranges, hosts file), [`schedule`] picks the pairs and their
//! rounds, [`verdict`] names a host that stands out; [`run`] drives the rounds and returns a
//! [`MeshReport`] of every pair's figures or error; with `--ssh-launch`, [`launch`] starts the
//! serves over SSH first and stops them after. Nothing here prints.

pub mod hosts;
pub mod launch;
pub mod schedule;
pub mod verdict;

#[cfg(test)]
pub(crate) mod fixtures;

use std::sync::Barrier;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::control::{MeasureToRequest, MeasuredTo, PeerTest};
use crate::interrupt::{self, Interrupted};
use crate::measure::{Direction, TransportKind, Workload};
use crate::transport::{Peer, serve_client};

use schedule::{Pair, Schedule, Selection};
use verdict::Side;

/// What each pair measures, as the commands of the same name would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TestKind {
    /// Memory to memory (`net`), the sender toward the receiver.
    Net,
    /// Round trips (`lat -t`).
    Lat,
    /// A copy of a random test file made in the sender's root, landed in the receiver's.
    Copy,
}

impl std::fmt::Display for TestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TestKind::Net => "net",
            TestKind::Lat => "lat",
            TestKind::Copy => "copy",
        })
    }
}

/// One serve of the mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshHost {
    /// `HOST[:PORT]` as given, less `--ssh-launch`'s `user@` (port 5301 when left out); also
    /// how the other serves reach it.
    pub host: String,
    /// The token its serve wants, if any.
    pub token: Option<String>,
    /// `--ssh-launch`: the user to log in as (a `user@` before the host), else ssh_config's.
    pub login: Option<String>,
}

/// Everything a mesh measures, checked by the command line.
#[derive(Debug, Clone)]
pub struct MeshOptions {
    /// Two or more distinct serves.
    pub hosts: Vec<MeshHost>,
    pub selection: Selection,
    pub schedule: Schedule,
    /// Run in this order, each over every selected pair before the next.
    pub tests: Vec<TestKind>,
    /// tcp, udp or both for net and lat, each over every pair in turn; a copy goes over tcp.
    pub vias: Vec<TransportKind>,
    /// Seconds of each net and lat test.
    pub secs: f64,
    /// Streams (-P) of each net test over tcp and each copy.
    pub streams: u32,
    /// Bytes of each copy's test file.
    pub copy_size: u64,
    /// Bytes of each latency message, each way.
    pub lat_size: u32,
}

/// One test of one ordered pair.
#[derive(Debug, Clone, Serialize)]
pub struct PairTest {
    /// The sender, who was asked, as given.
    pub from: String,
    /// The receiver, as given.
    pub to: String,
    pub test: TestKind,
    /// The path it ran over: tcp or udp (a copy: tcp).
    pub via: TransportKind,
    /// Which round of its test it ran in, from 0.
    pub round: usize,
    /// Wall clock when the coordinator asked and when the answer came, in Unix seconds.
    pub start: f64,
    pub end: f64,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// A pair's figures, or why there are none.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Measured(Box<MeasuredTo>),
    /// One line: what failed, where.
    Error(String),
}

/// A host every figure into (or out of) is slow, in one test's terms.
#[derive(Debug, Clone, Serialize)]
pub struct SlowHost {
    pub test: TestKind,
    pub via: TransportKind,
    pub host: String,
    pub side: Side,
    /// Bytes per second: the best of its figures on that side.
    pub best_bytes_per_sec: f64,
    /// Bytes per second: the median of the figures not on that side of it.
    pub others_median_bytes_per_sec: f64,
}

/// Several senders into one receiver in one round, at once (`--to NAS --from A,B,C
/// --all-at-once`): what it took in all, each sender's share, and how evenly it was shared.
#[derive(Debug, Clone, Serialize)]
pub struct FanIn {
    pub test: TestKind,
    pub via: TransportKind,
    pub round: usize,
    pub to: String,
    /// Bytes per second: every sender's bytes into `to`, over the longest of their times (the
    /// tests start together at the round's barrier).
    pub aggregate_bytes_per_sec: f64,
    /// Each sender's figure and its fraction of the senders' summed figures, in host order.
    pub shares: Vec<FanInShare>,
    /// Jain's fairness index of the senders' figures, (Σx)² / (n·Σx²): 1 when they are equal,
    /// 1/n when one sender takes it all (Jain, Chiu and Hawe, DEC-TR-301, 1984).
    pub fairness: f64,
}

/// One sender's part of a [`FanIn`].
#[derive(Debug, Clone, Serialize)]
pub struct FanInShare {
    pub from: String,
    /// Bytes per second: its test's figure (the receiver's, for net).
    pub bytes_per_sec: f64,
    /// Its fraction of the senders' summed figures, 0 to 1.
    pub share: f64,
}

/// What a mesh measured.
#[derive(Debug, Clone, Serialize)]
pub struct MeshReport {
    pub hosts: Vec<String>,
    pub schedule: Schedule,
    /// The paths net and lat ran over.
    pub vias: Vec<TransportKind>,
    pub secs: f64,
    /// Every test that was asked for, in the order they ran.
    pub tests: Vec<PairTest>,
    /// Hosts that stand out ([`verdict::SLOW_HOST_RATIO`]); empty when none does.
    pub slow_hosts: Vec<SlowHost>,
    /// Receivers that took several tests at once (`--all-at-once`): their aggregate and each
    /// sender's share of it; empty when no round sent to a host from two senders.
    pub fan_in: Vec<FanIn>,
    /// Ctrl-C stopped the mesh: the tests under way were waited for, no more were started.
    pub interrupted: bool,
}

impl MeshReport {
    /// The tests that failed.
    pub fn failures(&self) -> impl Iterator<Item = (&PairTest, &str)> {
        self.tests.iter().filter_map(|test| match &test.outcome {
            Outcome::Error(why) => Some((test, why.as_str())),
            Outcome::Measured(_) => None,
        })
    }

    /// The tests of `kind` over `via`, in the order they ran: one matrix's cells.
    pub fn tests_of(
        &self,
        kind: TestKind,
        via: TransportKind,
    ) -> impl Iterator<Item = &PairTest> + '_ {
        self.tests
            .iter()
            .filter(move |test| test.test == kind && test.via == via)
    }

    /// Every figure of `kind` over `via` as `(from, to, bytes per second)`, hosts as indices.
    pub fn rates(&self, kind: TestKind, via: TransportKind) -> Vec<(usize, usize, f64)> {
        self.tests_of(kind, via)
            .filter_map(|test| {
                let Outcome::Measured(measured) = &test.outcome else {
                    return None;
                };
                Some((
                    self.index(&test.from)?,
                    self.index(&test.to)?,
                    rate(measured)?,
                ))
            })
            .collect()
    }

    /// The (test, path) of every matrix, in the order the report shows them: net, lat, copy,
    /// each over tcp then udp.
    pub fn matrices(&self) -> Vec<(TestKind, TransportKind)> {
        let mut matrices = Vec::new();
        for kind in [TestKind::Net, TestKind::Lat, TestKind::Copy] {
            for via in [TransportKind::Tcp, TransportKind::Udp] {
                if self.tests_of(kind, via).next().is_some() {
                    matrices.push((kind, via));
                }
            }
        }
        matrices
    }

    fn index(&self, host: &str) -> Option<usize> {
        self.hosts.iter().position(|h| h == host)
    }
}

/// The figure a pair's matrix shows, in bytes per second: the receiver's for net (the one
/// that counts what arrived), the copy's for copy; None for lat.
pub fn rate(measured: &MeasuredTo) -> Option<f64> {
    figure(measured).map(|m| m.bytes_per_sec)
}

/// The measurement behind [`rate`].
fn figure(measured: &MeasuredTo) -> Option<&crate::measure::Measurement> {
    measured
        .measurements
        .iter()
        .find(|m| matches!(m.workload, Workload::NetReceive | Workload::Copy))
}

/// Runs every test of `options` over its pairs, round by round; a round's tests start together
/// (a barrier) and the next round starts when the last of them has answered. A pair that fails
/// keeps its error and the rest go on. Ctrl-C: the tests under way are waited for (each within
/// its bound), no more start, and the report says `interrupted`.
pub fn run(options: &MeshOptions) -> MeshReport {
    let pairs = schedule::select(options.hosts.len(), &options.selection);
    let rounds = schedule::rounds(&pairs, options.schedule);
    let mut tests = Vec::new();
    'tests: for kind in &options.tests {
        for via in vias_of(options, *kind) {
            for (number, round) in rounds.iter().enumerate() {
                if interrupt::requested() {
                    break 'tests;
                }
                tests.extend(run_round(options, (*kind, via), number, round));
            }
        }
    }
    let mut report = MeshReport {
        hosts: options.hosts.iter().map(|h| h.host.clone()).collect(),
        schedule: options.schedule,
        vias: options.vias.clone(),
        secs: options.secs,
        tests,
        slow_hosts: Vec::new(),
        fan_in: Vec::new(),
        interrupted: interrupt::requested(),
    };
    report.fan_in = fan_in(&report);
    for (kind, via) in report.matrices() {
        if kind == TestKind::Lat {
            continue;
        }
        let rates = report.rates(kind, via);
        for slow in verdict::slow_hosts(report.hosts.len(), &rates) {
            report.slow_hosts.push(SlowHost {
                test: kind,
                via,
                host: report.hosts[slow.host].clone(),
                side: slow.side,
                best_bytes_per_sec: slow.best_bytes_per_sec,
                others_median_bytes_per_sec: slow.others_median_bytes_per_sec,
            });
        }
    }
    report
}

/// Every receiver that took measured net or copy tests from two or more senders in one round,
/// by test, path, round and host order.
pub fn fan_in(report: &MeshReport) -> Vec<FanIn> {
    let mut fans = Vec::new();
    for (kind, via) in report.matrices() {
        if kind == TestKind::Lat {
            continue;
        }
        let rounds = report.tests_of(kind, via).map(|test| test.round).max();
        for round in 0..=rounds.unwrap_or(0) {
            for to in &report.hosts {
                let received: Vec<(&str, &crate::measure::Measurement)> = report
                    .tests_of(kind, via)
                    .filter(|test| test.round == round && &test.to == to)
                    .filter_map(|test| match &test.outcome {
                        Outcome::Measured(measured) => {
                            Some((test.from.as_str(), figure(measured)?))
                        }
                        Outcome::Error(_) => None,
                    })
                    .collect();
                if received.len() < 2 {
                    continue;
                }
                let bytes: u64 = received.iter().map(|(_, m)| m.bytes).sum();
                let longest = received.iter().map(|(_, m)| m.secs).fold(0.0, f64::max);
                let rates: Vec<f64> = received.iter().map(|(_, m)| m.bytes_per_sec).collect();
                let sum: f64 = rates.iter().sum();
                let squares: f64 = rates.iter().map(|rate| rate * rate).sum();
                fans.push(FanIn {
                    test: kind,
                    via,
                    round,
                    to: to.clone(),
                    aggregate_bytes_per_sec: if longest > 0.0 {
                        bytes as f64 / longest
                    } else {
                        0.0
                    },
                    shares: received
                        .iter()
                        .map(|(from, m)| FanInShare {
                            from: from.to_string(),
                            bytes_per_sec: m.bytes_per_sec,
                            share: if sum > 0.0 {
                                m.bytes_per_sec / sum
                            } else {
                                0.0
                            },
                        })
                        .collect(),
                    fairness: if squares > 0.0 {
                        sum * sum / (rates.len() as f64 * squares)
                    } else {
                        0.0
                    },
                });
            }
        }
    }
    fans
}

/// The paths `kind` runs over: a copy over tcp alone.
fn vias_of(options: &MeshOptions, kind: TestKind) -> Vec<TransportKind> {
    match kind {
        TestKind::Copy => vec![TransportKind::Tcp],
        TestKind::Net | TestKind::Lat => options.vias.clone(),
    }
}

/// The tests of one round, each on a thread of its own, started together.
fn run_round(
    options: &MeshOptions,
    test: (TestKind, TransportKind),
    number: usize,
    round: &[Pair],
) -> Vec<PairTest> {
    let barrier = Barrier::new(round.len());
    std::thread::scope(|scope| {
        let running: Vec<_> = round
            .iter()
            .map(|pair| {
                let barrier = &barrier;
                scope.spawn(move || run_pair(options, test, number, *pair, barrier))
            })
            .collect();
        running
            .into_iter()
            .map(|test| test.join().expect("a pair's thread does not panic"))
            .collect()
    })
}

/// One pair's test: its client is made before the barrier, so the tests of a round are asked
/// for together.
fn run_pair(
    options: &MeshOptions,
    (kind, via): (TestKind, TransportKind),
    round: usize,
    pair: Pair,
    barrier: &Barrier,
) -> PairTest {
    let (from, to) = (&options.hosts[pair.from], &options.hosts[pair.to]);
    let client = Peer::parse(&from.host).and_then(|peer| serve_client(peer, from.token.clone()));
    barrier.wait();
    let start = unix_now();
    let measured = client.and_then(|client| {
        client.measure_to(MeasureToRequest {
            peer: to.host.clone(),
            token: to.token.clone(),
            test: peer_test(options, kind, via),
        })
    });
    let end = unix_now();
    let outcome = match measured {
        Ok(measured) => Outcome::Measured(Box::new(measured)),
        Err(err) if err.chain().any(|cause| cause.is::<Interrupted>()) => {
            Outcome::Error("not run: Ctrl-C came before it was asked for".into())
        }
        Err(err) => Outcome::Error(format!("{err:#}")),
    };
    PairTest {
        from: from.host.clone(),
        to: to.host.clone(),
        test: kind,
        via,
        round,
        start,
        end,
        outcome,
    }
}

/// The request's test for `kind` over `via` under `options`: net uploads from the asked serve,
/// on one flow over udp.
fn peer_test(options: &MeshOptions, kind: TestKind, via: TransportKind) -> PeerTest {
    match kind {
        TestKind::Net => PeerTest::Net {
            via,
            streams: match via {
                TransportKind::Udp => 1,
                _ => options.streams,
            },
            secs: options.secs,
            len: None,
            direction: Direction::Upload,
        },
        TestKind::Lat => PeerTest::Lat {
            via,
            size: options.lat_size,
            secs: options.secs,
        },
        TestKind::Copy => PeerTest::Copy {
            size: options.copy_size,
            streams: options.streams,
        },
    }
}

/// Seconds since the Unix epoch, with fractions.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(from: &str, to: &str, round: usize, mb_per_sec: u64) -> PairTest {
        let outcome = fixtures::measured(Some(mb_per_sec as f64 * 1e6), None);
        PairTest {
            round,
            ..fixtures::test(from, to, TestKind::Net, outcome)
        }
    }

    fn report(tests: Vec<PairTest>) -> MeshReport {
        MeshReport {
            schedule: Schedule::AllAtOnce,
            ..fixtures::report(&["a", "b", "c", "nas"], tests)
        }
    }

    #[test]
    fn three_equal_senders_into_one_host_share_it_in_thirds_with_a_fairness_of_one() {
        let fans = fan_in(&report(vec![
            received("a", "nas", 0, 40),
            received("b", "nas", 0, 40),
            received("c", "nas", 0, 40),
        ]));
        assert_eq!(fans.len(), 1);
        let fan = &fans[0];
        assert_eq!(fan.to, "nas");
        assert!((fan.aggregate_bytes_per_sec - 120e6).abs() < 1.0, "{fan:?}");
        for share in &fan.shares {
            assert!((share.share - 1.0 / 3.0).abs() < 1e-9, "{fan:?}");
        }
        assert!((fan.fairness - 1.0).abs() < 1e-9, "{fan:?}");
    }

    #[test]
    fn one_sender_taking_most_lowers_the_fairness_to_jains_index() {
        let fans = fan_in(&report(vec![
            received("a", "nas", 0, 80),
            received("b", "nas", 0, 20),
            received("c", "nas", 0, 20),
        ]));
        let fan = &fans[0];
        // (80+20+20)² / (3 (80²+20²+20²)) = 14400 / 21600.
        assert!((fan.fairness - 2.0 / 3.0).abs() < 1e-9, "{fan:?}");
        let shares: Vec<f64> = fan.shares.iter().map(|s| s.share).collect();
        assert!((shares[0] - 80.0 / 120.0).abs() < 1e-9, "{shares:?}");
    }

    #[test]
    fn a_host_with_one_sender_a_round_or_only_failed_ones_has_no_fan_in() {
        let mut failed = received("c", "nas", 0, 40);
        failed.outcome = Outcome::Error("cannot connect".into());
        let fans = fan_in(&report(vec![
            received("a", "nas", 0, 40),
            failed,
            received("b", "nas", 1, 40),
            received("a", "b", 2, 40),
        ]));
        assert!(fans.is_empty(), "{fans:?}");
    }
}
