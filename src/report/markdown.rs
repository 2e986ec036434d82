//! The Markdown report: the verdict first, then the figures behind it, for a README or an issue.

use std::fmt::Write;

use anyhow::Result;

use super::export::Exporter;
use crate::classes::{self, Access};
use crate::mesh::verdict::Side;
use crate::mesh::{MeshReport, PairTest, TestKind};
use crate::plan::{PathResult, RunReport, Summary};
use crate::units::{Rate, format_block, format_bytes};

pub struct MarkdownExporter;

impl Exporter for MarkdownExporter {
    fn render(&self, report: &RunReport) -> Result<Vec<u8>> {
        Ok(render(report).into_bytes())
    }
}

/// `diff --markdown FILE`: the figures as a table (old, new, change, verdict, the conditions
/// that differ), with the noise rule and the differences of host and parameters above it.
pub fn diff(report: &crate::diff::DiffReport) -> String {
    use super::text::{diff_change, diff_changes, diff_noise_rule, diff_value, diff_verdict};
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# xferbench diff of two `{}` reports\n\n{} → {}\n\n{}\n",
        report.of,
        report.old.file,
        report.new.file,
        diff_noise_rule(report.threshold_percent)
    );
    if !report.changes.is_empty() {
        let _ = writeln!(out, "Differs: {}\n", diff_changes(&report.changes));
    }
    let _ = writeln!(
        out,
        "| figure | old | new | change | verdict | conditions that differ |\n|---|---:|---:|---:|---|---|"
    );
    for figure in &report.figures {
        let verdict = match figure.verdict {
            crate::diff::Verdict::Worse => format!("**{}**", diff_verdict(figure)),
            _ => diff_verdict(figure),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {verdict} | {} |",
            figure.figure.replace('|', "\\|"),
            diff_value(figure, figure.old),
            diff_value(figure, figure.new),
            diff_change(figure),
            diff_changes(&figure.conditions)
        );
    }
    let _ = writeln!(out, "\n{} worse beyond noise.", report.regressions);
    out
}

/// `diff --markdown FILE` of three reports or more: a column per report, the change from the
/// first value to the last, the last step's verdict.
pub fn trend(report: &crate::diff::TrendReport) -> String {
    use super::text::{diff_noise_rule, diff_value, diff_verdict};
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# xferbench trend of {} `{}` reports\n",
        report.reports.len(),
        report.of
    );
    for (n, source) in report.reports.iter().enumerate() {
        let _ = writeln!(out, "{}. {}", n + 1, source.file);
    }
    let _ = writeln!(
        out,
        "\nLast step: {}\n",
        diff_noise_rule(report.threshold_percent)
    );
    let _ = write!(out, "| figure |");
    for n in 1..=report.reports.len() {
        let _ = write!(out, " #{n} |");
    }
    let _ = writeln!(
        out,
        " first→last | last step |\n|---|{}---:|---|",
        "---:|".repeat(report.reports.len())
    );
    for figure in &report.figures {
        let _ = write!(out, "| {} |", figure.figure.replace('|', "\\|"));
        for value in &figure.values {
            let _ = write!(out, " {} |", diff_value(&figure.last_step, *value));
        }
        let _ = writeln!(
            out,
            " {} | {} |",
            figure
                .change_percent
                .map_or("-".to_string(), |percent| format!("{percent:+.1}%")),
            diff_verdict(&figure.last_step)
        );
    }
    out
}

/// `mesh --markdown FILE`: a table per test (rows send, columns receive), the failures, and
/// the verdict on a host that stands out.
pub fn mesh(report: &MeshReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# xferbench mesh of {} hosts\n", report.hosts.len());
    for (kind, via) in report.matrices() {
        let tests: Vec<&PairTest> = report.tests_of(kind, via).collect();
        let what = match kind {
            TestKind::Net => format!("net over {via}: the receiver's MB/s (Gb/s)"),
            TestKind::Lat => format!("lat over {via}: one way, median µs"),
            TestKind::Copy => "copy over tcp: MB/s (Gb/s), fsync included".to_string(),
        };
        let _ = writeln!(out, "## {what}\n");
        let _ = write!(out, "| from \\ to |");
        for host in &report.hosts {
            let _ = write!(out, " {host} |");
        }
        let _ = writeln!(out, "\n|---|{}", "---:|".repeat(report.hosts.len()));
        for from in &report.hosts {
            let _ = write!(out, "| **{from}** |");
            for to in &report.hosts {
                let cell = match tests.iter().find(|t| &t.from == from && &t.to == to) {
                    Some(test) => super::text::mesh_cell(kind, test),
                    None if from == to => "-".to_string(),
                    None => String::new(),
                };
                let _ = write!(out, " {cell} |");
            }
            out.push('\n');
        }
        out.push('\n');
    }
    for fan in &report.fan_in {
        let _ = writeln!(
            out,
            "**Fan-in into {}** ({} over {}): {} from {} senders at once, fairness (Jain's index) {:.2}\n",
            fan.to,
            fan.test,
            fan.via,
            Rate {
                bytes_per_sec: fan.aggregate_bytes_per_sec
            }
            .bits_text(),
            fan.shares.len(),
            fan.fairness
        );
        let _ = writeln!(out, "| from | MB/s | share |\n|---|---:|---:|");
        for share in &fan.shares {
            let _ = writeln!(
                out,
                "| {} | {:.1} | {:.1}% |",
                share.from,
                share.bytes_per_sec / 1e6,
                share.share * 100.0
            );
        }
        out.push('\n');
    }
    let failures: Vec<_> = report.failures().collect();
    if !failures.is_empty() {
        let _ = writeln!(out, "## Failed\n");
        for (test, why) in failures {
            let _ = writeln!(
                out,
                "- {} → {} ({} over {}): {why}",
                test.from, test.to, test.test, test.via
            );
        }
        out.push('\n');
    }
    for slow in &report.slow_hosts {
        let _ = writeln!(
            out,
            "**{}** {} at most {} ({} over {}; the others' median {})\n",
            slow.host,
            match slow.side {
                Side::Receives => "receives",
                Side::Sends => "sends",
            },
            Rate {
                bytes_per_sec: slow.best_bytes_per_sec
            }
            .bits_text(),
            slow.test,
            slow.via,
            Rate {
                bytes_per_sec: slow.others_median_bytes_per_sec
            }
            .bits_text(),
        );
    }
    if report.interrupted {
        let _ = writeln!(
            out,
            "Interrupted by Ctrl-C: the pairs left blank did not run."
        );
    }
    out
}

/// What a table row's figure is placed against: a disk against devices, a transfer against links.
#[derive(Clone, Copy)]
enum ClassKind {
    Device(Access),
    Link,
}

fn render(report: &RunReport) -> String {
    let p = &report.parameters;
    let mut out = String::new();
    let _ = writeln!(out, "# xferbench run to {}\n", p.server);
    let _ = writeln!(
        out,
        "Test file `{}` ({}, {}); {} stream{}, {} run{} per stage, {} blocks, iodepth {}.\n",
        report.test_file,
        format_bytes(p.size),
        if report.test_file_reused {
            "reused"
        } else {
            "written for this run"
        },
        p.streams,
        plural(p.streams),
        p.repeat,
        plural(p.repeat),
        format_block(p.block_size),
        p.iodepth
    );
    if let Some(tree) = &report.test_tree {
        let _ = writeln!(
            out,
            "Small files: `{tree}`, {} files of {} ({}), copied once per path after its big file.\n",
            p.files,
            format_block(p.file_size),
            if report.test_tree_reused {
                "reused"
            } else {
                "written for this run"
            },
        );
    }

    out.push_str("## Verdict\n\n");
    if report.paths.is_empty() {
        out.push_str("- No path was measured.\n");
    }
    for result in &report.paths {
        let _ = writeln!(out, "- {}", result.sentence);
    }

    out.push_str("\n## Figures\n\n");
    out.push_str(
        "| stage | path | median MB/s | median Gb/s | min | max | stddev | runs | class |\n",
    );
    out.push_str("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
    let read = ClassKind::Device(Access::Read);
    let write = ClassKind::Device(Access::Write);
    table_row(&mut out, "source read", "", &report.source_read, read);
    table_row(
        &mut out,
        "destination write",
        "",
        &report.destination_write,
        write,
    );
    if report.destination_read.is_some() {
        table_row(
            &mut out,
            "destination read (cold)",
            "",
            &report.destination_read,
            read,
        );
    }
    if report.nas_disk.is_some() {
        table_row(
            &mut out,
            "the NAS's own disk write (serve)",
            "",
            &report.nas_disk,
            write,
        );
    }
    if report.shared_disk.is_some() {
        table_row(
            &mut out,
            "one disk reading and writing at once",
            "",
            &report.shared_disk,
            write,
        );
    }
    for result in &report.paths {
        let path = result.path.to_string();
        table_row(
            &mut out,
            "network, memory to memory (received)",
            &path,
            &result.network,
            ClassKind::Link,
        );
        table_row(
            &mut out,
            "copy, disk to disk",
            &path,
            &result.copy,
            ClassKind::Link,
        );
        if report.test_tree.is_some() {
            small_files_row(&mut out, p, result);
        }
    }
    out.push_str(
        "\nMB/s = 10^6 B/s; min, max and stddev are MB/s over the runs. Memory to memory is what the \
         receiver got (for UDP, less the datagrams lost).\n",
    );
    let failures: Vec<_> = report.failures().collect();
    if !failures.is_empty() {
        out.push_str("\n## Failed\n\n");
        for (path, failure) in failures {
            let reason = failure.reason.replace('\n', " ");
            let _ = writeln!(out, "- {path}, stage {}: {reason}", failure.step);
        }
    }

    if !report.paths.is_empty() {
        let _ = writeln!(
            out,
            "\n## Latency\n\nOne way (half the round trip) in µs, from {} timed round trips of {}-byte messages per path.\n",
            p.latency_round_trips, p.latency_size
        );
        out.push_str("| path | median | min | mean | p99 | p99.9 | max | samples | test |\n");
        out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
        for result in &report.paths {
            latency_row(&mut out, result);
        }
    }

    if !report.skipped.is_empty() {
        out.push_str("\n## Skipped\n\n");
        for skipped in &report.skipped {
            let _ = writeln!(out, "- {}: {}", skipped.path, skipped.reason);
        }
    }
    if !report.warnings.is_empty() {
        out.push_str("\n## Warnings\n\n");
        for warning in &report.warnings {
            let _ = writeln!(out, "- {warning}");
        }
    }
    out
}

fn table_row(
    out: &mut String,
    stage: &str,
    path: &str,
    summary: &Option<Summary>,
    kind: ClassKind,
) {
    let Some(summary) = summary else {
        let _ = writeln!(out, "| {stage} | {path} | not measured | | | | | 0 | |");
        return;
    };
    let rate = summary.rate();
    let class = match (summary.suspect(), kind) {
        (Some(suspect), _) => format!("**marked**: {suspect}"),
        (None, ClassKind::Device(direction)) => classes::place_device(rate, direction).to_string(),
        (None, ClassKind::Link) => classes::place_link(rate).to_string(),
    };
    let _ = writeln!(
        out,
        "| {stage} | {path} | {:.1} | {:.2} | {:.1} | {:.1} | {:.1} | {} | {} |",
        rate.mb_per_sec(),
        rate.gbit_per_sec(),
        summary.min_bytes_per_sec / 1e6,
        summary.max_bytes_per_sec / 1e6,
        summary.stddev_bytes_per_sec / 1e6,
        summary.measurements.len(),
        cell(&class)
    );
}

/// A path's tree of small files as a row of the figures: MB/s, and files/s in its stage.
fn small_files_row(out: &mut String, p: &crate::plan::Parameters, result: &PathResult) {
    let path = result.path.to_string();
    let what = format!("small files, {} × {}", p.files, format_block(p.file_size));
    match (&result.small_files, &result.small_files_failed) {
        (Some(small), _) => {
            let stage = format!("{what}, {:.0} files/s, each fsynced", small.files_per_sec);
            let summary = Summary::of(vec![small.measurement.clone()]);
            table_row(out, &stage, &path, &summary, ClassKind::Link);
        }
        (None, Some(why)) => {
            let _ = writeln!(
                out,
                "| {what} | {path} | not measured | | | | | 0 | {} |",
                cell(&why.replace('\n', " "))
            );
        }
        (None, None) => table_row(out, &what, &path, &None, ClassKind::Link),
    }
}

fn latency_row(out: &mut String, result: &PathResult) {
    let path = result.path;
    let Some(l) = &result.latency else {
        let why = result.latency_failed.as_deref().unwrap_or("");
        let _ = writeln!(
            out,
            "| {path} | not measured | | | | | | 0 | {} |",
            cell(&why.replace('\n', " "))
        );
        return;
    };
    let _ = writeln!(
        out,
        "| {path} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} |",
        l.median_us,
        l.min_us,
        l.mean_us,
        l.p99_us,
        l.p999_us,
        l.max_us,
        l.samples,
        cell(&l.what)
    );
}

/// A table cell's text with pipes escaped, so it cannot split the row.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::export::sample_report;

    fn rendered() -> String {
        String::from_utf8(MarkdownExporter.render(&sample_report()).unwrap()).unwrap()
    }

    #[test]
    fn the_verdict_sentence_comes_before_the_figures() {
        let text = rendered();
        let report = sample_report();
        let sentence = &report.paths[0].sentence;
        assert!(sentence.starts_with("tcp: "), "{sentence}");
        let verdict = text
            .find(&format!("- {sentence}\n"))
            .expect("the sentence as a bullet");
        let table = text
            .find("| stage | path | median MB/s")
            .expect("the table");
        assert!(verdict < table, "{text}");
        assert!(
            text.starts_with("# xferbench run to peer-b:7766\n"),
            "{text}"
        );
    }

    #[test]
    fn the_table_has_a_row_per_stage_with_medians_and_classes() {
        let text = rendered();
        let figures = &text[text.find("## Figures").unwrap()..text.find("## Latency").unwrap()];
        let rows: Vec<&str> = figures
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| stage") && !l.starts_with("| ---"))
            .collect();
        assert_eq!(rows.len(), 4, "{text}");
        assert!(rows[0].starts_with("| source read |  | 1550.0 | 12.40 | 1480.0 | 1610.0 | 65.1 | 3 | between SATA SSD and NVMe Gen3 x4 class |"), "{}", rows[0]);
        assert!(
            rows[1].starts_with("| destination write |  | 415.0 | 3.32 | 402.0 | 431.0 |"),
            "{}",
            rows[1]
        );
        assert!(rows[1].ends_with("| 3 | SATA SSD class |"), "{}", rows[1]);
        assert!(
            rows[2].starts_with(
                "| network, memory to memory (received) | tcp | 1149.5 | 9.20 | 1149.5 | 1149.5 | 0.0 | 1 |"
            ),
            "{}",
            rows[2]
        );
        assert!(rows[2].ends_with("not 10 GbE (1170 MB/s) |"), "{}", rows[2]);
        assert!(
            rows[3].starts_with("| copy, disk to disk | tcp |"),
            "{}",
            rows[3]
        );
        assert!(
            rows[3].ends_with("| 2 | would saturate 2.5 GbE (294 MB/s), not 10 GbE (1170 MB/s) |"),
            "{}",
            rows[3]
        );
    }

    #[test]
    fn skipped_paths_and_warnings_follow_the_table_with_their_reasons() {
        let text = rendered();
        let table = text.find("## Figures").unwrap();
        let skipped = text
            .find("## Skipped\n\n- rdma: this build has no RDMA support")
            .unwrap();
        let warnings = text
            .find("## Warnings\n\n- the server is on this machine")
            .unwrap();
        assert!(table < skipped && skipped < warnings, "{text}");
    }

    #[test]
    fn latency_has_a_table_of_its_own_after_the_figures() {
        let text = rendered();
        let figures = text.find("## Figures").unwrap();
        let latency = text
            .find("## Latency\n\nOne way (half the round trip) in µs, from 1000 timed round trips of 8-byte messages per path.\n")
            .unwrap_or_else(|| panic!("{text}"));
        assert!(figures < latency, "{text}");
        assert!(
            text.contains("| tcp | 28.25 | 16.77 | 26.83 | 38.17 | 47.55 | 93.76 | 1000 | 8-byte TCP message and its echo; one way = half the round trip |"),
            "{text}"
        );
        let mut report = sample_report();
        report.paths[0].latency = None;
        report.paths[0].latency_failed = Some("the server | said\nno".into());
        let text = render(&report);
        assert!(
            text.contains("| tcp | not measured | | | | | | 0 | the server \\| said no |"),
            "{text}"
        );
    }

    #[test]
    fn a_stage_not_measured_says_so() {
        let mut report = sample_report();
        report.paths[0].copy = None;
        let text = render(&report);
        assert!(
            text.contains("| copy, disk to disk | tcp | not measured |"),
            "{text}"
        );
    }
}
