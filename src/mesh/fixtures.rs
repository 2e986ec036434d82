//! Made-up mesh reports for the unit tests of the mesh and its renderings.

use std::time::Duration;

use super::schedule::Schedule;
use super::{MeshReport, Outcome, PairTest, TestKind};
use crate::control::MeasuredTo;
use crate::measure::{Conditions, CpuUse, Latency, Measurement, TransportKind, Workload};

/// A measured test: the receiver's figure of 1 s at `bytes_per_sec`, and/or a latency whose
/// median is `median_us`.
pub fn measured(bytes_per_sec: Option<f64>, median_us: Option<f64>) -> Outcome {
    let measurements = bytes_per_sec
        .map(|bytes_per_sec| {
            Measurement::new(
                Workload::NetReceive,
                bytes_per_sec as u64,
                Duration::from_secs(1),
                Conditions::default(),
                Vec::new(),
            )
        })
        .into_iter()
        .collect();
    let latency = median_us.map(|median_us| Latency {
        what: "8-byte message, one way = half the round trip".into(),
        samples: 1000,
        min_us: median_us / 2.0,
        median_us,
        p99_us: median_us * 2.0,
        p999_us: median_us * 3.0,
        max_us: median_us * 4.0,
        mean_us: median_us,
        quantile_precision_percent: 0.1,
    });
    Outcome::Measured(Box::new(MeasuredTo {
        peer: String::new(),
        path: TransportKind::Tcp,
        measurements,
        latency,
        retransmits: None,
        datagrams: None,
        cpu: CpuUse::default(),
        peer_cpu: None,
        warnings: Vec::new(),
    }))
}

/// `from` → `to` over tcp in round 0, from 0 to 1 s.
pub fn test(from: &str, to: &str, kind: TestKind, outcome: Outcome) -> PairTest {
    PairTest {
        from: from.into(),
        to: to.into(),
        test: kind,
        via: TransportKind::Tcp,
        round: 0,
        start: 0.0,
        end: 1.0,
        outcome,
    }
}

/// A finished mesh of `tests` between `hosts` in rounds of 1 s tests over tcp, with no verdict
/// or fan-in worked out.
pub fn report(hosts: &[&str], tests: Vec<PairTest>) -> MeshReport {
    MeshReport {
        hosts: hosts.iter().map(|host| host.to_string()).collect(),
        schedule: Schedule::Rounds,
        vias: vec![TransportKind::Tcp],
        secs: 1.0,
        tests,
        slow_hosts: Vec::new(),
        fan_in: Vec::new(),
        interrupted: false,
    }
}
