//! `diff`: two `-J` reports of one command, figure by figure: old, new, the change, and whether
//! it is better, worse or within noise.
//!
//! The reports are read as JSON, not as their types, so every report kind (`run`, `net`, `lat`,
//! `disk`, `copy`, `mesh`) is compared by one walk: a throughput figure is an object with a
//! `stage`, `bytes_per_sec` and `conditions` (a `Measurement`), or one with
//! `median_bytes_per_sec` and the `measurements` of its runs (`run --repeat`'s summary); a
//! latency is an object with `median_us` and `p99_us`. Each is named by where it stands in the
//! report (its keys, and in an array what its element is: a path, a direction, a pair), and the
//! two reports' figures of one name are compared. Nothing here prints.

use anyhow::{Context, Result};
use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;
use statrs::distribution::{ContinuousCDF, StudentsT};

/// Change below which a figure is within noise, in percent, when the runs give no spread of
/// their own.
pub const DEFAULT_THRESHOLD_PERCENT: f64 = 5.0;
/// Runs each report needs of a figure before its own spread decides (Welch's t-test).
pub const MIN_RUNS_FOR_TEST: usize = 3;
/// The t-test's level: a change is real below this p-value (two-sided).
pub const SIGNIFICANCE: f64 = 0.05;

/// Where a bad pair of reports comes from: the files, not the machine (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Mismatch(pub String);

/// What a report said of itself, as read from its envelope.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    /// The file, as given.
    pub file: String,
    pub hostname: String,
    pub kernel: String,
    pub xferbench: String,
}

/// Which way is better for a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Higher,
    Lower,
}

/// A figure's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    BytesPerSec,
    Microseconds,
}

/// How one figure moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Better,
    Worse,
    WithinNoise,
    /// In the old report only: that stage did not run (or failed) in the new one.
    OnlyOld,
    OnlyNew,
}

/// What told noise from change for one figure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Basis {
    /// Welch's t-test on both reports' runs (two-sided), with its p-value.
    WelchT { p_value: f64 },
    /// The change against `--threshold` (fewer than three runs on a side).
    Threshold,
}

/// One thing that differs between the two reports' conditions: a field, old and new.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub field: String,
    pub old: String,
    pub new: String,
}

/// One figure compared.
#[derive(Debug, Clone, Serialize)]
pub struct FigureDiff {
    /// Where it stands in the report, e.g. `paths[tcp] · mem_to_mem`.
    pub figure: String,
    pub unit: Unit,
    pub better: Better,
    /// The figure as its report gives it (the median of `--repeat`'s runs); None on one side.
    pub old: Option<f64>,
    pub new: Option<f64>,
    /// (new − old) ÷ old, in percent.
    pub change_percent: Option<f64>,
    pub verdict: Verdict,
    pub basis: Option<Basis>,
    pub old_runs: usize,
    pub new_runs: usize,
    /// Its conditions that differ (O_DIRECT, fsync, streams, MTU, cipher, block size, ...).
    pub conditions: Vec<Change>,
}

/// Two reports compared.
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    /// The command both reports are of.
    pub of: String,
    pub old: Source,
    pub new: Source,
    pub threshold_percent: f64,
    /// The host, kernel, xferbench version and the command's parameters that differ.
    pub changes: Vec<Change>,
    pub figures: Vec<FigureDiff>,
    /// Figures worse beyond noise.
    pub regressions: usize,
}

/// Reads a report: a `-J` object, or a `--json-stream` whose last line is one.
/// Errors: the file unreadable, or holding no report (a [`Mismatch`]).
pub fn read_report(path: &std::path::Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_report(&text).map_err(|why| Mismatch(format!("{}: {why}", path.display())).into())
}

/// The report in `text`: the whole of it, or its last non-empty line.
fn parse_report(text: &str) -> std::result::Result<Value, String> {
    let whole = serde_json::from_str::<Value>(text);
    let value = match whole {
        Ok(value) => value,
        Err(err) => {
            let last = text.lines().rev().find(|line| !line.trim().is_empty());
            match last.map(serde_json::from_str::<Value>) {
                Some(Ok(value)) => value,
                _ => return Err(format!("not JSON ({err}): give a report written with -J")),
            }
        }
    };
    let report = match value.get("report") {
        // A stream's last line wraps the report.
        Some(report) if value.get("event").is_some() => report.clone(),
        _ => value,
    };
    if report.get("schema").and_then(Value::as_u64).is_none()
        || report.get("command").and_then(Value::as_str).is_none()
    {
        return Err(
            "not an xferbench report (no schema or command): give a report written with -J".into(),
        );
    }
    Ok(report)
}

/// Compares `old` with `new` (reports read by [`read_report`], named by `files`).
/// Errors: a [`Mismatch`] when the schemas or the commands differ.
pub fn diff(
    (old, new): (&Value, &Value),
    files: (&str, &str),
    threshold_percent: f64,
) -> Result<DiffReport> {
    let schema = |report: &Value| report["schema"].as_u64().unwrap_or(0);
    if schema(old) != schema(new) {
        return Err(Mismatch(format!(
            "{} is of report schema {} and {} of schema {}: diff compares reports of one schema; run the older test again with this xferbench",
            files.0,
            schema(old),
            files.1,
            schema(new)
        ))
        .into());
    }
    let command = |report: &Value| report["command"].as_str().unwrap_or("").to_string();
    if command(old) != command(new) {
        return Err(Mismatch(format!(
            "{} is a `{}` report and {} a `{}` report: diff compares two reports of one command",
            files.0,
            command(old),
            files.1,
            command(new)
        ))
        .into());
    }
    let old_figures = figures(old);
    let new_figures = figures(new);
    let mut names: Vec<&String> = old_figures.keys().collect();
    names.extend(
        new_figures
            .keys()
            .filter(|name| !old_figures.contains_key(*name)),
    );
    let mut compared = Vec::new();
    for name in names {
        compared.push(compare(
            name,
            old_figures.get(name),
            new_figures.get(name),
            threshold_percent,
        ));
    }
    // In report order: the old report's walk, then what only the new one has.
    let regressions = compared
        .iter()
        .filter(|figure| figure.verdict == Verdict::Worse)
        .count();
    Ok(DiffReport {
        of: command(old),
        old: source(files.0, old),
        new: source(files.1, new),
        threshold_percent,
        changes: report_changes(old, new),
        figures: compared,
        regressions,
    })
}

/// Several reports of one command, in the order given (oldest first).
#[derive(Debug, Clone, Serialize)]
pub struct TrendReport {
    /// The command every report is of.
    pub of: String,
    pub reports: Vec<Source>,
    pub threshold_percent: f64,
    /// What differs between the first report and the last (host, parameters, server).
    pub changes: Vec<Change>,
    pub figures: Vec<TrendFigure>,
    /// Figures worse beyond noise in the last step (the last report against the one before).
    pub regressions: usize,
}

/// One figure across the reports.
#[derive(Debug, Clone, Serialize)]
pub struct TrendFigure {
    pub figure: String,
    pub unit: Unit,
    pub better: Better,
    /// Its value in each report, in order; None where a report has none.
    pub values: Vec<Option<f64>>,
    /// From its first value to its last, in percent.
    pub change_percent: Option<f64>,
    /// The last report against the one before, as [`diff`] judges two reports.
    pub last_step: FigureDiff,
}

/// Every figure of `reports` (two or more, oldest first, each with its file name) across
/// them, and the last step judged.
/// Errors: a [`Mismatch`] when a report's schema or command is not the first one's.
pub fn trend(reports: &[(&str, &Value)], threshold_percent: f64) -> Result<TrendReport> {
    let (first, last) = match reports {
        [first, .., last] => (first, last),
        _ => return Err(Mismatch("a trend takes two reports or more".into()).into()),
    };
    for report in &reports[1..] {
        // Checked pairwise, for the same words as a diff of two.
        diff((first.1, report.1), (first.0, report.0), threshold_percent)?;
    }
    let walked: Vec<IndexMap<String, Figure>> =
        reports.iter().map(|(_, report)| figures(report)).collect();
    // Every name once, in the order the reports first give it.
    let mut names: IndexMap<&String, ()> = IndexMap::new();
    for figures in &walked {
        for name in figures.keys() {
            names.entry(name).or_default();
        }
    }
    let names: Vec<&String> = names.into_keys().collect();
    let previous = &walked[walked.len() - 2];
    let latest = &walked[walked.len() - 1];
    let figures: Vec<TrendFigure> = names
        .into_iter()
        .map(|name| {
            let values: Vec<Option<f64>> = walked
                .iter()
                .map(|figures| figures.get(name).map(|figure| figure.value))
                .collect();
            let present: Vec<f64> = values.iter().flatten().copied().collect();
            let last_step = compare(
                name,
                previous.get(name),
                latest.get(name),
                threshold_percent,
            );
            let any = walked
                .iter()
                .find_map(|figures| figures.get(name))
                .expect("a name comes from a report");
            TrendFigure {
                figure: name.clone(),
                unit: any.unit,
                better: any.better,
                change_percent: match present.as_slice() {
                    [from, .., to] if *from != 0.0 => Some((to - from) / from * 100.0),
                    _ => None,
                },
                values,
                last_step,
            }
        })
        .collect();
    Ok(TrendReport {
        of: first.1["command"].as_str().unwrap_or("").to_string(),
        reports: reports
            .iter()
            .map(|(file, report)| source(file, report))
            .collect(),
        threshold_percent,
        changes: report_changes(first.1, last.1),
        regressions: figures
            .iter()
            .filter(|figure| figure.last_step.verdict == Verdict::Worse)
            .count(),
        figures,
    })
}

fn source(file: &str, report: &Value) -> Source {
    let host = |key: &str| report["host"][key].as_str().unwrap_or("").to_string();
    Source {
        file: file.to_string(),
        hostname: host("hostname"),
        kernel: host("kernel"),
        xferbench: host("xferbench"),
    }
}

/// The host's and the command's differences: `host.kernel`, `parameters.streams` (`run`), and
/// the report's own plain fields (`server`, `streams`, `secs` of `net`, ...).
fn report_changes(old: &Value, new: &Value) -> Vec<Change> {
    let mut changes = Vec::new();
    for key in ["host", "parameters"] {
        differences(key, &old[key], &new[key], &mut changes);
    }
    let (Some(a), Some(b)) = (old.as_object(), new.as_object()) else {
        return changes;
    };
    let plain = |value: &Value| !value.is_object() && !value.is_array();
    for (key, x) in a {
        let y = b.get(key).unwrap_or(&Value::Null);
        if plain(x) && plain(y) && x != y && !PER_RUN_FIELDS.contains(&key.as_str()) {
            changes.push(Change {
                field: key.clone(),
                old: shown(x),
                new: shown(y),
            });
        }
    }
    changes
}

/// A report's plain fields that differ from run to run by nature (a test file named after the
/// process).
const PER_RUN_FIELDS: [&str; 2] = ["test_file", "test_tree"];

/// Every leaf under `old` and `new` that differs, named from `prefix`.
fn differences(prefix: &str, old: &Value, new: &Value, out: &mut Vec<Change>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().collect();
            keys.extend(b.keys().filter(|key| !a.contains_key(*key)));
            for key in keys {
                if IGNORED_CONDITIONS.contains(&key.as_str()) {
                    continue;
                }
                let (x, y) = (
                    a.get(key).unwrap_or(&Value::Null),
                    b.get(key).unwrap_or(&Value::Null),
                );
                differences(&format!("{prefix}.{key}"), x, y, out);
            }
        }
        _ if old != new => out.push(Change {
            field: prefix.to_string(),
            old: shown(old),
            new: shown(new),
        }),
        _ => {}
    }
}

/// Conditions that vary from run to run without changing what was measured.
const IGNORED_CONDITIONS: [&str; 2] = ["cached_before", "hostname_is_loopback"];

fn shown(value: &Value) -> String {
    match value {
        Value::Null => "none".into(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// One figure of one report: its runs and its conditions.
#[derive(Debug, Clone)]
struct Figure {
    unit: Unit,
    better: Better,
    /// The figure as the report gives it.
    value: f64,
    /// Each run's figure (one without `--repeat`).
    runs: Vec<f64>,
    conditions: Value,
}

/// Every figure of `report` by its name, in the order the report gives them.
fn figures(report: &Value) -> IndexMap<String, Figure> {
    let mut found = IndexMap::new();
    walk(report, &mut Vec::new(), &mut found);
    found
}

/// Adds `figure` under `name`, or under `name #2`, `#3` when the name is taken.
fn insert(found: &mut IndexMap<String, Figure>, name: String, figure: Figure) {
    let mut key = name.clone();
    let mut n = 1;
    while found.contains_key(&key) {
        n += 1;
        key = format!("{name} #{n}");
    }
    found.insert(key, figure);
}

/// Keys that only wrap a figure: left out of its name.
const WRAPPERS: [&str; 4] = ["measured", "measurements", "measurement", "summary"];
/// Keys whose values hold no figure to compare (time lines, hosts, the command's flags).
const NOT_FIGURES: [&str; 5] = ["intervals", "host", "parameters", "knee", "cpu"];

fn walk(value: &Value, name: &mut Vec<String>, found: &mut IndexMap<String, Figure>) {
    match value {
        Value::Object(object) => {
            if let Some(figure) = summary(object).or_else(|| measurement(object)) {
                let mut label = name.clone();
                // A figure that stands alone (`copy`'s `measurement`) is named by its stage.
                if let Some(stage) = object.get("stage").and_then(Value::as_str)
                    && label.is_empty()
                {
                    label.push(stage.to_string());
                }
                insert(found, label.join(" · "), figure);
                return;
            }
            if let (Some(median), Some(p99)) = (
                object.get("median_us").and_then(Value::as_f64),
                object.get("p99_us").and_then(Value::as_f64),
            ) {
                for (what, figure) in [("median", median), ("p99", p99)] {
                    let mut label = name.clone();
                    // `latency` names the object already: `paths[tcp] · latency median`.
                    match label.last_mut() {
                        Some(last) if last == "latency" => *last = format!("latency {what}"),
                        _ => label.push(format!("latency {what}")),
                    }
                    insert(
                        found,
                        label.join(" · "),
                        Figure {
                            unit: Unit::Microseconds,
                            better: Better::Lower,
                            value: figure,
                            runs: vec![figure],
                            conditions: Value::Null,
                        },
                    );
                }
                return;
            }
            for (key, inner) in object {
                if NOT_FIGURES.contains(&key.as_str()) {
                    continue;
                }
                let wraps = WRAPPERS.contains(&key.as_str());
                if !wraps {
                    name.push(key.clone());
                }
                walk(inner, name, found);
                if !wraps {
                    name.pop();
                }
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                let element = identity(item).unwrap_or_else(|| index.to_string());
                match name.last_mut() {
                    Some(last) => {
                        let was = last.clone();
                        *last = format!("{was}[{element}]");
                        walk(item, name, found);
                        if let Some(last) = name.last_mut() {
                            *last = was;
                        }
                    }
                    None => {
                        name.push(format!("[{element}]"));
                        walk(item, name, found);
                        name.pop();
                    }
                }
            }
        }
        _ => {}
    }
}

/// What an array element is, by the keys that name it: a pair (`from → to`, its test and
/// path), a path, a direction, a stage.
fn identity(item: &Value) -> Option<String> {
    let text = |key: &str| item.get(key).and_then(Value::as_str);
    if let (Some(from), Some(to)) = (text("from"), text("to")) {
        let mut id = format!("{from} → {to}");
        for key in ["test", "via"] {
            if let Some(word) = text(key) {
                id.push(' ');
                id.push_str(word);
            }
        }
        return Some(id);
    }
    ["path", "direction", "stage", "name"]
        .iter()
        .find_map(|key| text(key))
        .map(str::to_string)
}

/// `run --repeat`'s summary: the median and each run.
fn summary(object: &serde_json::Map<String, Value>) -> Option<Figure> {
    let median = object.get("median_bytes_per_sec")?.as_f64()?;
    let runs: Vec<&Value> = object.get("measurements")?.as_array()?.iter().collect();
    Some(Figure {
        unit: Unit::BytesPerSec,
        better: Better::Higher,
        value: median,
        runs: runs
            .iter()
            .filter_map(|run| run.get("bytes_per_sec").and_then(Value::as_f64))
            .collect(),
        conditions: runs
            .first()
            .and_then(|run| run.get("conditions"))
            .cloned()
            .unwrap_or(Value::Null),
    })
}

/// One `Measurement`.
fn measurement(object: &serde_json::Map<String, Value>) -> Option<Figure> {
    object.get("stage")?.as_str()?;
    let rate = object.get("bytes_per_sec")?.as_f64()?;
    Some(Figure {
        unit: Unit::BytesPerSec,
        better: Better::Higher,
        value: rate,
        runs: vec![rate],
        conditions: object.get("conditions")?.clone(),
    })
}

/// One figure's old and new, and the verdict.
fn compare(
    name: &str,
    old: Option<&Figure>,
    new: Option<&Figure>,
    threshold_percent: f64,
) -> FigureDiff {
    let any = old.or(new).expect("a figure is in one report at least");
    let mut diff = FigureDiff {
        figure: name.to_string(),
        unit: any.unit,
        better: any.better,
        old: old.map(|figure| figure.value),
        new: new.map(|figure| figure.value),
        change_percent: None,
        verdict: Verdict::OnlyOld,
        basis: None,
        old_runs: old.map_or(0, |figure| figure.runs.len()),
        new_runs: new.map_or(0, |figure| figure.runs.len()),
        conditions: Vec::new(),
    };
    let (old, new) = match (old, new) {
        (Some(old), Some(new)) => (old, new),
        (Some(_), None) => return diff,
        _ => {
            diff.verdict = Verdict::OnlyNew;
            return diff;
        }
    };
    differences("", &old.conditions, &new.conditions, &mut diff.conditions);
    for change in &mut diff.conditions {
        change.field = change.field.trim_start_matches('.').to_string();
    }
    let change = if old.value != 0.0 {
        (new.value - old.value) / old.value * 100.0
    } else if new.value == 0.0 {
        0.0
    } else {
        f64::INFINITY
    };
    diff.change_percent = Some(change);
    let (real, basis) =
        if old.runs.len() >= MIN_RUNS_FOR_TEST && new.runs.len() >= MIN_RUNS_FOR_TEST {
            let p_value = welch_p_value(&old.runs, &new.runs);
            (p_value < SIGNIFICANCE, Basis::WelchT { p_value })
        } else {
            (change.abs() > threshold_percent, Basis::Threshold)
        };
    diff.basis = Some(basis);
    let higher = new.value > old.value;
    diff.verdict = match (real, higher, any.better) {
        (false, _, _) => Verdict::WithinNoise,
        (true, true, Better::Higher) | (true, false, Better::Lower) => Verdict::Better,
        _ => Verdict::Worse,
    };
    diff
}

/// Welch's t-test (unequal variances), two-sided: the chance of a difference of means at
/// least this large between `a` and `b` were they of one distribution. Both have two or more
/// values. Identical runs on both sides (no spread): 1 when the means are equal, else 0.
pub fn welch_p_value(a: &[f64], b: &[f64]) -> f64 {
    let (mean_a, var_a) = mean_and_variance(a);
    let (mean_b, var_b) = mean_and_variance(b);
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (sa, sb) = (var_a / na, var_b / nb);
    let standard_error = (sa + sb).sqrt();
    if standard_error == 0.0 {
        return if mean_a == mean_b { 1.0 } else { 0.0 };
    }
    let t = (mean_a - mean_b) / standard_error;
    // Welch–Satterthwaite degrees of freedom.
    let df = (sa + sb).powi(2) / (sa.powi(2) / (na - 1.0) + sb.powi(2) / (nb - 1.0));
    match StudentsT::new(0.0, 1.0, df) {
        Ok(distribution) => 2.0 * (1.0 - distribution.cdf(t.abs())),
        Err(_) => 1.0,
    }
}

/// The mean and the sample variance (n − 1).
fn mean_and_variance(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let variance = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, variance)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A `net` report whose receiver moved `rate` bytes a second under `conditions`.
    fn net(rate: f64, conditions: Value) -> Value {
        json!({
            "schema": 1,
            "command": "net",
            "host": {"hostname": "lab", "kernel": "6.18", "cpus": 2, "xferbench": "0.1.0"},
            "directions": [{
                "direction": "upload",
                "sender": {"stage": "net_send", "bytes": 1, "secs": 1.0, "bytes_per_sec": rate,
                           "conditions": conditions.clone(), "intervals": []},
                "receiver": {"stage": "net_receive", "bytes": 1, "secs": 1.0, "bytes_per_sec": rate,
                             "conditions": conditions, "intervals": []}
            }]
        })
    }

    /// A `run --repeat` report whose source read ran at each of `rates`.
    fn run(rates: &[f64]) -> Value {
        let mut sorted = rates.to_vec();
        sorted.sort_by(f64::total_cmp);
        let runs: Vec<Value> = rates
            .iter()
            .map(|rate| {
                json!({"stage": "source_read", "bytes_per_sec": rate,
                               "conditions": {"direct": true}, "intervals": []})
            })
            .collect();
        json!({
            "schema": 1,
            "command": "run",
            "host": {"hostname": "lab", "kernel": "6.18"},
            "parameters": {"streams": 4},
            "source_read": {"median_bytes_per_sec": sorted[sorted.len() / 2], "measurements": runs},
            "paths": [{"path": "tcp", "latency": {"median_us": 50.0, "p99_us": 90.0}}]
        })
    }

    fn compared(old: &Value, new: &Value) -> DiffReport {
        diff(
            (old, new),
            ("old.json", "new.json"),
            DEFAULT_THRESHOLD_PERCENT,
        )
        .unwrap()
    }

    fn figure<'a>(report: &'a DiffReport, name: &str) -> &'a FigureDiff {
        report
            .figures
            .iter()
            .find(|figure| figure.figure == name)
            .unwrap_or_else(|| panic!("no {name}: {:#?}", report.figures))
    }

    #[test]
    fn a_slower_network_is_worse_and_a_faster_one_better_by_the_threshold() {
        let conditions = json!({"streams": 1, "mtu": 1500});
        let slow = net(23e6, conditions.clone());
        let fast = net(117e6, conditions.clone());
        let report = compared(&fast, &slow);
        let receiver = figure(&report, "directions[upload] · receiver");
        assert_eq!(receiver.verdict, Verdict::Worse);
        assert!((receiver.change_percent.unwrap() + 80.34).abs() < 0.01);
        assert_eq!(receiver.basis, Some(Basis::Threshold));
        assert_eq!(report.regressions, 2, "sender and receiver");
        let report = compared(&slow, &fast);
        assert_eq!(
            figure(&report, "directions[upload] · sender").verdict,
            Verdict::Better
        );
        assert_eq!(report.regressions, 0);
    }

    #[test]
    fn a_change_inside_the_threshold_is_within_noise() {
        let conditions = json!({"streams": 1});
        let report = compared(
            &net(100e6, conditions.clone()),
            &net(96e6, conditions.clone()),
        );
        assert_eq!(
            figure(&report, "directions[upload] · receiver").verdict,
            Verdict::WithinNoise
        );
        let strict = diff(
            (&net(100e6, conditions.clone()), &net(96e6, conditions)),
            ("a", "b"),
            2.0,
        )
        .unwrap();
        assert_eq!(strict.regressions, 2);
    }

    #[test]
    fn three_runs_a_side_are_judged_by_welchs_t_test_not_by_the_threshold() {
        // 10% apart but spread widely: noise.
        let wide = compared(&run(&[100e6, 160e6, 70e6]), &run(&[90e6, 150e6, 60e6]));
        let read = figure(&wide, "source_read");
        assert_eq!(read.verdict, Verdict::WithinNoise, "{read:?}");
        assert!(matches!(read.basis, Some(Basis::WelchT { p_value }) if p_value > 0.5));
        // 3% apart but tight: a real change.
        let tight = compared(
            &run(&[100e6, 100.2e6, 99.8e6]),
            &run(&[97e6, 97.1e6, 96.9e6]),
        );
        let read = figure(&tight, "source_read");
        assert_eq!(read.verdict, Verdict::Worse, "{read:?}");
        assert!(matches!(read.basis, Some(Basis::WelchT { p_value }) if p_value < 0.001));
    }

    #[test]
    fn welchs_p_value_matches_a_worked_example() {
        // Welch's t-test's first example on Wikipedia: t = -2.46, df = 24.99, p = 0.021
        // (checked with the regularized incomplete beta of mpmath).
        let a = [
            27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7,
            21.4,
        ];
        let b = [
            27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5,
            24.4,
        ];
        let p = welch_p_value(&a, &b);
        assert!((p - 0.02138).abs() < 0.0001, "{p}");
    }

    #[test]
    fn latency_is_better_lower_and_conditions_that_differ_are_said_beside_the_figure() {
        let mut old = run(&[100e6]);
        let mut new = run(&[100e6]);
        new["paths"][0]["latency"]["median_us"] = json!(25.0);
        new["source_read"]["measurements"][0]["conditions"]["direct"] = json!(false);
        new["host"]["kernel"] = json!("6.19");
        old["parameters"]["streams"] = json!(1);
        let report = compared(&old, &new);
        assert_eq!(
            figure(&report, "paths[tcp] · latency median").verdict,
            Verdict::Better
        );
        let read = figure(&report, "source_read");
        assert_eq!(
            read.conditions,
            vec![Change {
                field: "direct".into(),
                old: "true".into(),
                new: "false".into()
            }]
        );
        let fields: Vec<&str> = report.changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["host.kernel", "parameters.streams"]);
    }

    #[test]
    fn another_server_is_said_above_the_figures() {
        let mut old = net(1e8, json!({}));
        let mut new = net(1e8, json!({}));
        old["server"] = json!("10.0.0.2:5301");
        new["server"] = json!("10.0.0.3:5301");
        new["test_file"] = json!("/tmp/.xferbench-disk-42.tmp");
        let report = compared(&old, &new);
        assert_eq!(
            report.changes,
            vec![Change {
                field: "server".into(),
                old: "10.0.0.2:5301".into(),
                new: "10.0.0.3:5301".into()
            }]
        );
    }

    #[test]
    fn a_trend_gives_each_figure_in_every_report_and_judges_the_last_step() {
        let conditions = json!({"streams": 1});
        let (a, b, c) = (
            net(100e6, conditions.clone()),
            net(110e6, conditions.clone()),
            net(50e6, conditions),
        );
        let trend = trend(&[("a", &a), ("b", &b), ("c", &c)], 5.0).unwrap();
        let receiver = trend
            .figures
            .iter()
            .find(|figure| figure.figure == "directions[upload] · receiver")
            .unwrap();
        assert_eq!(receiver.values, vec![Some(100e6), Some(110e6), Some(50e6)]);
        assert!((receiver.change_percent.unwrap() + 50.0).abs() < 1e-9);
        assert_eq!(receiver.last_step.verdict, Verdict::Worse);
        assert_eq!(trend.regressions, 2);
        let other = json!({"schema": 1, "command": "copy", "host": {}});
        let err = super::trend(&[("a", &a), ("b", &b), ("x", &other)], 5.0).unwrap_err();
        assert!(err.to_string().contains("x a `copy` report"), "{err}");
    }

    #[test]
    fn a_mesh_figure_is_named_by_its_pair_test_and_path() {
        let mesh = |rate: f64| {
            json!({
                "schema": 1,
                "command": "mesh",
                "host": {},
                "tests": [{
                    "from": "node1", "to": "node2", "test": "net", "via": "tcp",
                    "measured": {"measurements": [
                        {"stage": "net_send", "bytes_per_sec": rate, "conditions": {}},
                        {"stage": "net_receive", "bytes_per_sec": rate, "conditions": {}}
                    ]}
                }]
            })
        };
        let report = compared(&mesh(117e6), &mesh(11.7e6));
        let names: Vec<&str> = report.figures.iter().map(|f| f.figure.as_str()).collect();
        assert_eq!(
            names,
            [
                "tests[node1 → node2 net tcp][net_send]",
                "tests[node1 → node2 net tcp][net_receive]"
            ]
        );
        assert_eq!(report.regressions, 2);
    }

    #[test]
    fn a_figure_in_one_report_only_is_said_so_and_not_a_regression() {
        let old = run(&[100e6]);
        let mut new = run(&[100e6]);
        new.as_object_mut().unwrap().remove("paths");
        let report = compared(&old, &new);
        assert_eq!(
            figure(&report, "paths[tcp] · latency median").verdict,
            Verdict::OnlyOld
        );
        assert_eq!(report.regressions, 0);
    }

    #[test]
    fn reports_of_other_schemas_or_commands_are_refused_in_one_line() {
        let mut newer = run(&[1.0]);
        newer["schema"] = json!(2);
        let err = diff((&run(&[1.0]), &newer), ("a.json", "b.json"), 5.0).unwrap_err();
        assert!(err.is::<Mismatch>());
        assert!(
            err.to_string()
                .contains("a.json is of report schema 1 and b.json of schema 2")
        );
        let err = diff((&run(&[1.0]), &net(1.0, json!({}))), ("a", "b"), 5.0).unwrap_err();
        assert!(
            err.to_string()
                .contains("a is a `run` report and b a `net` report")
        );
    }

    #[test]
    fn a_stream_counts_by_its_last_line_and_other_text_is_no_report() {
        let report = net(1.0, json!({}));
        let stream = format!(
            "{}\n{}\n",
            json!({"event": "start"}),
            json!({"event": "end", "report": report})
        );
        assert_eq!(parse_report(&stream).unwrap(), report);
        assert!(parse_report("hello").unwrap_err().contains("not JSON"));
        assert!(
            parse_report("{\"a\": 1}")
                .unwrap_err()
                .contains("not an xferbench report")
        );
    }
}
