//! `xferbench diff` in words: a line per figure (old, new, the change, the verdict), the
//! conditions that differ under it, and the count of what got worse.

use std::fmt::Write;

use crate::diff::{
    Basis, DiffReport, FigureDiff, MIN_RUNS_FOR_TEST, SIGNIFICANCE, TrendReport, Unit, Verdict,
};
use crate::units::Rate;

/// The whole comparison.
pub fn diff(report: &DiffReport) -> String {
    let mut out = String::new();
    let side = |source: &crate::diff::Source| {
        format!(
            "{} ({}, kernel {}, xferbench {})",
            source.file, source.hostname, source.kernel, source.xferbench
        )
    };
    let _ = writeln!(
        out,
        "diff of two `{}` reports: {} -> {}",
        report.of,
        side(&report.old),
        side(&report.new)
    );
    let _ = writeln!(out, "{}", noise_rule(report.threshold_percent));
    if !report.changes.is_empty() {
        let _ = writeln!(out, "differs: {}", changes(&report.changes));
    }
    let width = name_width(report.figures.iter().map(|figure| figure.figure.as_str()));
    let _ = writeln!(
        out,
        "\n{:<width$}  {:>14}  {:>14}  {:>8}  verdict",
        "figure", "old", "new", "change"
    );
    for figure in &report.figures {
        let _ = writeln!(
            out,
            "{:<width$}  {:>14}  {:>14}  {:>8}  {}",
            figure.figure,
            value(figure, figure.old),
            value(figure, figure.new),
            change(figure),
            verdict(figure)
        );
        if !figure.conditions.is_empty() {
            let _ = writeln!(out, "  conditions differ: {}", changes(&figure.conditions));
        }
    }
    let count = |verdict: Verdict| {
        report
            .figures
            .iter()
            .filter(|figure| figure.verdict == verdict)
            .count()
    };
    let _ = writeln!(
        out,
        "\n{} worse beyond noise, {} better, {} within noise{}",
        count(Verdict::Worse),
        count(Verdict::Better),
        count(Verdict::WithinNoise),
        match count(Verdict::OnlyOld) + count(Verdict::OnlyNew) {
            0 => String::new(),
            n => format!(", {n} in one report only"),
        }
    );
    out
}

/// Several reports: a column per report (`#1` the first), the change from the first value to
/// the last, and the last step's verdict.
pub fn trend(report: &TrendReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "trend of {} `{}` reports, oldest first:",
        report.reports.len(),
        report.of
    );
    for (n, source) in report.reports.iter().enumerate() {
        let _ = writeln!(
            out,
            "  #{} {} ({}, kernel {}, xferbench {})",
            n + 1,
            source.file,
            source.hostname,
            source.kernel,
            source.xferbench
        );
    }
    let _ = writeln!(
        out,
        "last step (#{} against #{}): {}",
        report.reports.len(),
        report.reports.len() - 1,
        noise_rule(report.threshold_percent)
    );
    if !report.changes.is_empty() {
        let _ = writeln!(
            out,
            "differs (#1 -> #{}): {}",
            report.reports.len(),
            changes(&report.changes)
        );
    }
    let width = name_width(report.figures.iter().map(|figure| figure.figure.as_str()));
    let _ = write!(out, "\n{:<width$}", "figure");
    for n in 1..=report.reports.len() {
        let _ = write!(out, "  {:>12}", format!("#{n}"));
    }
    let _ = writeln!(out, "  {:>10}  last step", "first→last");
    for figure in &report.figures {
        let _ = write!(out, "{:<width$}", figure.figure);
        for value in &figure.values {
            let _ = write!(out, "  {:>12}", self::value(&figure.last_step, *value));
        }
        let change = figure
            .change_percent
            .map_or("-".to_string(), |percent| format!("{percent:+.1}%"));
        let _ = writeln!(out, "  {change:>10}  {}", verdict(&figure.last_step));
    }
    let _ = writeln!(
        out,
        "\n{} worse beyond noise in the last step",
        report.regressions
    );
    out
}

/// The width of the figure column: its longest name, or its heading.
fn name_width<'a>(names: impl Iterator<Item = &'a str>) -> usize {
    names
        .map(|name| name.chars().count())
        .max()
        .unwrap_or(0)
        .max("figure".len())
}

/// How noise was told from change.
pub(crate) fn noise_rule(threshold_percent: f64) -> String {
    format!(
        "noise: Welch's t-test (two-sided, p < {SIGNIFICANCE}) where both reports have {MIN_RUNS_FOR_TEST} or more runs of a figure (run --repeat), else a change beyond ±{threshold_percent}% (--threshold)"
    )
}

/// `field old -> new; ...`.
pub(crate) fn changes(changes: &[crate::diff::Change]) -> String {
    changes
        .iter()
        .map(|change| format!("{} {} -> {}", change.field, change.old, change.new))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A figure's value in its unit, or `-` where its report has none.
pub(crate) fn value(figure: &FigureDiff, value: Option<f64>) -> String {
    match (value, figure.unit) {
        (None, _) => "-".into(),
        (Some(bytes_per_sec), Unit::BytesPerSec) => Rate { bytes_per_sec }.bytes_text(),
        (Some(us), Unit::Microseconds) => format!("{us:.1} µs"),
    }
}

/// The change in percent, signed.
pub(crate) fn change(figure: &FigureDiff) -> String {
    match figure.change_percent {
        Some(percent) if percent.is_finite() => format!("{percent:+.1}%"),
        Some(_) => "new".into(),
        None => "-".into(),
    }
}

/// The verdict in words, with what decided it.
pub(crate) fn verdict(figure: &FigureDiff) -> String {
    let word = match figure.verdict {
        Verdict::Better => "better",
        Verdict::Worse => "worse",
        Verdict::WithinNoise => "within noise",
        Verdict::OnlyOld => "old only",
        Verdict::OnlyNew => "new only",
    };
    match figure.basis {
        Some(Basis::WelchT { p_value }) => format!(
            "{word} (p = {p_value:.3}, {} and {} runs)",
            figure.old_runs, figure.new_runs
        ),
        _ => word.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::{Better, Change, Source};

    fn source(file: &str) -> Source {
        Source {
            file: file.into(),
            hostname: "lab".into(),
            kernel: "6.18".into(),
            xferbench: "0.1.0".into(),
        }
    }

    #[test]
    fn each_figure_has_its_line_with_old_new_change_and_verdict_and_its_conditions_under_it() {
        let report = DiffReport {
            of: "net".into(),
            old: source("old.json"),
            new: source("new.json"),
            threshold_percent: 5.0,
            changes: vec![Change {
                field: "host.kernel".into(),
                old: "6.1".into(),
                new: "6.18".into(),
            }],
            figures: vec![FigureDiff {
                figure: "directions[upload] · receiver".into(),
                unit: Unit::BytesPerSec,
                better: Better::Higher,
                old: Some(117e6),
                new: Some(23.4e6),
                change_percent: Some(-80.0),
                verdict: Verdict::Worse,
                basis: Some(Basis::Threshold),
                old_runs: 1,
                new_runs: 1,
                conditions: vec![Change {
                    field: "mtu".into(),
                    old: "1500".into(),
                    new: "9000".into(),
                }],
            }],
            regressions: 1,
        };
        let text = diff(&report);
        assert!(text.contains("differs: host.kernel 6.1 -> 6.18"), "{text}");
        let line = text
            .lines()
            .find(|line| line.starts_with("directions[upload]"))
            .unwrap();
        assert!(
            line.contains("117 MB/s") && line.contains("23.4 MB/s"),
            "{line}"
        );
        assert!(line.contains("-80.0%") && line.ends_with("worse"), "{line}");
        assert!(
            text.contains("  conditions differ: mtu 1500 -> 9000"),
            "{text}"
        );
        assert!(
            text.contains("1 worse beyond noise, 0 better, 0 within noise"),
            "{text}"
        );
    }
}
