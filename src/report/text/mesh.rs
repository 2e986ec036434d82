//! `xferbench mesh` in words: a matrix per test (rows send, columns receive), the pairs that
//! failed and why, and the verdict on a host that stands out.

use std::fmt::Write;

use crate::measure::TransportKind;
use crate::mesh::schedule::Schedule;
use crate::mesh::verdict::Side;
use crate::mesh::{FanIn, MeshReport, Outcome, PairTest, SlowHost, TestKind, rate};
use crate::units::Rate;

/// The whole mesh: one matrix per test that ran, then failures, then the verdict.
pub fn mesh(report: &MeshReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", summary(report));
    for (kind, via) in report.matrices() {
        let tests: Vec<&PairTest> = report.tests_of(kind, via).collect();
        let caption = match kind {
            TestKind::Net => format!(
                "net over {via}, {} s each, the receiver's figure in MB/s (Gb/s)",
                report.secs
            ),
            TestKind::Lat => format!(
                "lat over {via}, {} s each, one way (half the round trip), median in µs",
                report.secs
            ),
            TestKind::Copy => {
                "copy over tcp, fsync on the receiver included, in MB/s (Gb/s)".into()
            }
        };
        let _ = writeln!(out, "\n{caption}; rows send, columns receive");
        matrix(&mut out, &report.hosts, &tests, |test| cell(kind, test));
    }
    for fan in &report.fan_in {
        fan_in(&mut out, report, fan);
    }
    let mut failures: Vec<_> = report.failures().collect();
    // By test, then as the matrix reads: sender, then receiver.
    let place = |host: &str| report.hosts.iter().position(|h| h == host);
    failures.sort_by_key(|(test, _)| {
        (
            test.test as u8,
            test.via != TransportKind::Tcp,
            place(&test.from),
            place(&test.to),
        )
    });
    if !failures.is_empty() {
        let _ = writeln!(
            out,
            "\nfailed ({} of {}):",
            failures.len(),
            report.tests.len()
        );
        for (test, why) in failures {
            let _ = writeln!(
                out,
                "  {} -> {} ({} over {}): {why}",
                test.from, test.to, test.test, test.via
            );
        }
    }
    for slow in &report.slow_hosts {
        let _ = writeln!(
            out,
            "\nverdict ({} over {}): {}",
            slow.test,
            slow.via,
            verdict(slow)
        );
    }
    if report.interrupted {
        let _ = writeln!(
            out,
            "\ninterrupted: the tests under way were waited for; the rest did not run"
        );
    }
    out
}

/// A receiver that took several senders at once: the aggregate, then each sender's share.
fn fan_in(out: &mut String, report: &MeshReport, fan: &FanIn) {
    let aggregate = Rate {
        bytes_per_sec: fan.aggregate_bytes_per_sec,
    };
    let _ = writeln!(
        out,
        "\nfan-in ({} over {}{}): {} took {} ({}) from {} senders at once; fairness (Jain's index) {:.2}",
        fan.test,
        fan.via,
        match report.schedule {
            Schedule::AllAtOnce => String::new(),
            _ => format!(", round {}", fan.round + 1),
        },
        fan.to,
        aggregate.bytes_text(),
        aggregate.bits_text(),
        fan.shares.len(),
        fan.fairness,
    );
    let width = fan.shares.iter().map(|s| s.from.len()).max().unwrap_or(0);
    for share in &fan.shares {
        let rate = Rate {
            bytes_per_sec: share.bytes_per_sec,
        };
        let _ = writeln!(
            out,
            "  {:<width$}  {:>12}  {:>5.1}%",
            share.from,
            rate.bytes_text(),
            share.share * 100.0
        );
    }
}

/// The first line: how many hosts and tests, and how they were scheduled.
pub(crate) fn summary(report: &MeshReport) -> String {
    format!(
        "mesh of {} hosts, {} tests, {}",
        report.hosts.len(),
        report.tests.len(),
        match report.schedule {
            Schedule::Rounds => "in rounds, no host in two tests at once",
            Schedule::Serial => "one at a time",
            Schedule::AllAtOnce => "all at once",
        }
    )
}

/// What the verdict says of a slow host, after its test's name: which side, how slow, against
/// what.
pub(crate) fn verdict(slow: &SlowHost) -> String {
    let best = Rate {
        bytes_per_sec: slow.best_bytes_per_sec,
    };
    let others = Rate {
        bytes_per_sec: slow.others_median_bytes_per_sec,
    };
    let (verb, toward, other_side) = match slow.side {
        Side::Receives => ("receives", "from", "sender"),
        Side::Sends => ("sends", "to", "receiver"),
    };
    format!(
        "{} {verb} at most {} {toward} every {other_side}, against a median of {} between the others: its link or NIC, not theirs",
        slow.host,
        best.bits_text(),
        others.bits_text(),
    )
}

/// A matrix cell of a test that ran: MB/s (Gb/s) or the one-way median in µs, or `failed`.
pub(crate) fn cell(kind: TestKind, test: &PairTest) -> String {
    let Outcome::Measured(measured) = &test.outcome else {
        return "failed".into();
    };
    match kind {
        TestKind::Lat => measured
            .latency
            .as_ref()
            .map_or("?".into(), |latency| format!("{:.1}", latency.median_us)),
        TestKind::Net | TestKind::Copy => rate(measured).map_or("?".into(), |bytes_per_sec| {
            let rate = Rate { bytes_per_sec };
            format!("{:.0} ({:.2})", rate.mb_per_sec(), rate.gbit_per_sec())
        }),
    }
}

/// Rows are senders, columns receivers; a pair not measured is blank.
fn matrix(
    out: &mut String,
    hosts: &[String],
    tests: &[&PairTest],
    cell: impl Fn(&PairTest) -> String,
) {
    let corner = "from \\ to";
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header = vec![corner.to_string()];
    header.extend(hosts.iter().cloned());
    rows.push(header);
    for from in hosts {
        let mut row = vec![from.clone()];
        for to in hosts {
            let text = match tests.iter().find(|t| &t.from == from && &t.to == to) {
                Some(test) => cell(test),
                None if from == to => "-".into(),
                None => String::new(),
            };
            row.push(text);
        }
        rows.push(row);
    }
    let columns = hosts.len() + 1;
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|row| row[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (c, text) in row.iter().enumerate() {
            let pad = widths[c] - text.chars().count();
            match c {
                0 => line.push_str(&format!("{text}{}", " ".repeat(pad))),
                _ => line.push_str(&format!("  {}{text}", " ".repeat(pad))),
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::fixtures;

    fn report() -> MeshReport {
        let hosts = ["a", "b", "c"];
        let mut tests = Vec::new();
        for from in hosts {
            for to in hosts.into_iter().filter(|to| *to != from) {
                let outcome = match (from, to) {
                    ("a", "c") => Outcome::Error("cannot connect to c".into()),
                    (_, "b") => fixtures::measured(Some(117e6), None),
                    _ => fixtures::measured(Some(1170e6), None),
                };
                tests.push(fixtures::test(from, to, TestKind::Net, outcome));
            }
        }
        MeshReport {
            slow_hosts: vec![SlowHost {
                test: TestKind::Net,
                via: TransportKind::Tcp,
                host: "b".into(),
                side: Side::Receives,
                best_bytes_per_sec: 117e6,
                others_median_bytes_per_sec: 1170e6,
            }],
            ..fixtures::report(&hosts, tests)
        }
    }

    #[test]
    fn the_matrix_has_a_row_per_sender_and_a_column_per_receiver() {
        let text = mesh(&report());
        let lines: Vec<&str> = text.lines().collect();
        let header = lines
            .iter()
            .position(|l| l.starts_with("from \\ to"))
            .unwrap();
        assert!(lines[header].ends_with('c'), "{text}");
        assert!(lines[header + 1].starts_with("a "), "{text}");
        assert!(lines[header + 1].contains("117 (0.94)"), "{text}");
        assert!(lines[header + 1].ends_with("failed"), "{text}");
        assert!(lines[header + 2].contains(" - "), "{text}");
        assert!(lines[header + 3].contains("1170 (9.36)"), "{text}");
    }

    #[test]
    fn failures_say_why_and_the_verdict_names_the_slow_host() {
        let text = mesh(&report());
        assert!(
            text.contains("failed (1 of 6):\n  a -> c (net over tcp): cannot connect to c"),
            "{text}"
        );
        assert!(
            text.contains(
                "b receives at most 936 Mb/s from every sender, against a median of 9.36 Gb/s"
            ),
            "{text}"
        );
    }

    #[test]
    fn no_verdict_is_said_when_no_host_stands_out() {
        let mut quiet = report();
        quiet.slow_hosts.clear();
        assert!(!mesh(&quiet).contains("verdict"));
    }

    #[test]
    fn a_fan_in_gives_the_aggregate_each_senders_share_and_the_fairness() {
        let mut fanned = report();
        fanned.schedule = Schedule::AllAtOnce;
        fanned.fan_in = crate::mesh::fan_in(&fanned);
        let text = mesh(&fanned);
        // Into b: a and c at 117 MB/s each; into a: b and c at 1170 each; c: b alone (a failed).
        assert!(
            text.contains("fan-in (net over tcp): b took 234 MB/s (1.87 Gb/s) from 2 senders at once; fairness (Jain's index) 1.00"),
            "{text}"
        );
        assert!(text.contains("\n  a      117 MB/s   50.0%\n"), "{text}");
        assert_eq!(fanned.fan_in.len(), 2, "{text}");
    }
}
