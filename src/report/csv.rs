//! The CSV report: one row per measurement, every repeat of every stage, and one per path's
//! latency test, for spreadsheets and scripts.

use anyhow::{Context, Result};
use serde::Serialize;

use super::export::Exporter;
use crate::measure::{Latency, Measurement, Workload};
use crate::mesh::{MeshReport, Outcome};
use crate::plan::{RunReport, Summary};

pub struct CsvExporter;

impl Exporter for CsvExporter {
    fn render(&self, report: &RunReport) -> Result<Vec<u8>> {
        write(&rows(report))
    }
}

/// One measurement; the header is the field names. Empty fields do not apply: conditions a
/// stage does not have, the rates of a latency row, the latency figures of a rate row.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
struct Row {
    /// source_read, destination_write, destination_read, nas_disk, shared_disk, latency, network,
    /// copy or small_files, as in the JSON report.
    stage: &'static str,
    /// The transfer path; empty for the disk baselines.
    path: String,
    /// 1-based repeat index within the stage.
    run: usize,
    bytes: Option<u64>,
    secs: Option<f64>,
    bytes_per_sec: Option<f64>,
    mb_per_sec: Option<f64>,
    gbit_per_sec: Option<f64>,
    direct: Option<bool>,
    fsync_included: Option<bool>,
    streams: Option<usize>,
    mtu: Option<u32>,
    /// Bytes per disk I/O and message; a latency row's message size.
    block_size: Option<u64>,
    iodepth: Option<usize>,
    /// A small_files row's count of files landed, and their rate.
    files: Option<u64>,
    files_per_sec: Option<f64>,
    /// A latency row's timed round trips, and one way (half a round trip) in microseconds.
    samples: Option<u64>,
    min_us: Option<f64>,
    median_us: Option<f64>,
    mean_us: Option<f64>,
    p99_us: Option<f64>,
    p999_us: Option<f64>,
    max_us: Option<f64>,
    /// Whose count a network row is: `receiver` (what arrived; for UDP, less what was lost).
    side: Option<&'static str>,
    /// Why this path failed in this stage; its rates are then empty.
    error: Option<String>,
    /// Why this figure is not what it claims (above its ceiling, a cache); empty if it holds.
    suspect: Option<String>,
}

/// One test of a mesh; the header is the field names. Empty fields do not apply: the rates of
/// a lat row or a failed one, the latency of a rate row.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct MeshRow<'a> {
    from: &'a str,
    to: &'a str,
    /// net, lat or copy.
    test: String,
    /// tcp or udp.
    path: String,
    round: usize,
    /// Wall clock in Unix seconds.
    start: f64,
    end: f64,
    /// The receiver's figure (net) or the copy's.
    bytes: Option<u64>,
    secs: Option<f64>,
    bytes_per_sec: Option<f64>,
    mb_per_sec: Option<f64>,
    gbit_per_sec: Option<f64>,
    retransmits: Option<u64>,
    loss_percent: Option<f64>,
    /// One way, half the round trip, in microseconds.
    median_us: Option<f64>,
    p99_us: Option<f64>,
    /// Why the test failed; its figures are then empty.
    error: Option<&'a str>,
}

const MESH_HEADER: [&str; 17] = [
    "from",
    "to",
    "test",
    "path",
    "round",
    "start",
    "end",
    "bytes",
    "secs",
    "bytes_per_sec",
    "mb_per_sec",
    "gbit_per_sec",
    "retransmits",
    "loss_percent",
    "median_us",
    "p99_us",
    "error",
];

/// `mesh --csv FILE`: one row per test, in the order they ran.
pub fn mesh(report: &MeshReport) -> Result<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    if report.tests.is_empty() {
        // serde writes the header with the first row; a mesh stopped before any test gets one.
        writer.write_record(MESH_HEADER)?;
    }
    for test in &report.tests {
        let (measured, error) = match &test.outcome {
            Outcome::Measured(measured) => (Some(measured.as_ref()), None),
            Outcome::Error(why) => (None, Some(why.as_str())),
        };
        let figure = measured.and_then(|m| {
            m.measurements
                .iter()
                .find(|m| matches!(m.workload, Workload::NetReceive | Workload::Copy))
        });
        let latency = measured.and_then(|m| m.latency.as_ref());
        writer
            .serialize(MeshRow {
                from: &test.from,
                to: &test.to,
                test: test.test.to_string(),
                path: test.via.to_string(),
                round: test.round,
                start: test.start,
                end: test.end,
                bytes: figure.map(|m| m.bytes),
                secs: figure.map(|m| m.secs),
                bytes_per_sec: figure.map(|m| m.bytes_per_sec),
                mb_per_sec: figure.map(|m| m.rate().mb_per_sec()),
                gbit_per_sec: figure.map(|m| m.rate().gbit_per_sec()),
                retransmits: measured.and_then(|m| m.retransmits),
                loss_percent: measured.and_then(|m| m.datagrams.as_ref().map(|d| d.loss_percent)),
                median_us: latency.map(|l| l.median_us),
                p99_us: latency.map(|l| l.p99_us),
                error,
            })
            .context("a CSV row")?;
    }
    writer.into_inner().context("the CSV report")
}

fn rows(report: &RunReport) -> Vec<Row> {
    // Every repeat of a stage, in order.
    let repeats = |stage, path: String, summary: &Option<Summary>| -> Vec<Row> {
        let measurements = summary.iter().flat_map(|s| &s.measurements);
        measurements
            .enumerate()
            .map(|(index, m)| row(stage, path.clone(), index + 1, m))
            .collect()
    };
    let mut rows = repeats("source_read", String::new(), &report.source_read);
    rows.extend(repeats(
        "destination_write",
        String::new(),
        &report.destination_write,
    ));
    rows.extend(repeats(
        "destination_read",
        String::new(),
        &report.destination_read,
    ));
    rows.extend(repeats("nas_disk", String::new(), &report.nas_disk));
    rows.extend(repeats("shared_disk", String::new(), &report.shared_disk));
    for result in &report.paths {
        let path = result.path.to_string();
        if let Some(latency) = &result.latency {
            let size = report.parameters.latency_size as u64;
            rows.push(latency_row(path.clone(), size, latency));
        }
        let mut network = repeats("network", path.clone(), &result.network);
        for row in &mut network {
            // run keeps the receiver's figure of each memory-to-memory test.
            row.side = Some("receiver");
        }
        rows.extend(network);
        rows.extend(repeats("copy", path.clone(), &result.copy));
        if let Some(small) = &result.small_files {
            rows.push(Row {
                files: Some(small.files),
                files_per_sec: Some(small.files_per_sec),
                ..row("small_files", path.clone(), 1, &small.measurement)
            });
        }
        if let Some(why) = &result.small_files_failed {
            rows.push(Row {
                stage: "small_files",
                path: path.clone(),
                run: 1,
                error: Some(why.clone()),
                ..Row::default()
            });
        }
        if let Some(failed) = &result.failed {
            rows.push(Row {
                stage: failed.step.name(),
                path,
                run: 1,
                error: Some(failed.reason.clone()),
                ..Row::default()
            });
        }
    }
    rows
}

fn latency_row(path: String, size: u64, latency: &Latency) -> Row {
    Row {
        stage: "latency",
        path,
        run: 1,
        block_size: Some(size),
        samples: Some(latency.samples),
        min_us: Some(latency.min_us),
        median_us: Some(latency.median_us),
        mean_us: Some(latency.mean_us),
        p99_us: Some(latency.p99_us),
        p999_us: Some(latency.p999_us),
        max_us: Some(latency.max_us),
        ..Row::default()
    }
}

fn row(stage: &'static str, path: String, run: usize, m: &Measurement) -> Row {
    let c = &m.conditions;
    Row {
        stage,
        path,
        run,
        bytes: Some(m.bytes),
        secs: Some(m.secs),
        bytes_per_sec: Some(m.bytes_per_sec),
        mb_per_sec: Some(m.rate().mb_per_sec()),
        gbit_per_sec: Some(m.rate().gbit_per_sec()),
        direct: Some(c.direct),
        fsync_included: Some(c.fsync_included),
        streams: c.streams,
        mtu: c.mtu,
        block_size: c.block_size,
        iodepth: c.iodepth,
        suspect: m.suspect.clone(),
        ..Row::default()
    }
}

/// The rows with a header, quoted where a field holds a comma, quote or line break.
fn write(rows: &[Row]) -> Result<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    if rows.is_empty() {
        // serde writes the header with the first row; a run that measured nothing still gets one.
        writer.write_record(HEADER)?;
    }
    for row in rows {
        writer.serialize(row).context("a CSV row")?;
    }
    writer.into_inner().context("the CSV report")
}

const HEADER: [&str; 26] = [
    "stage",
    "path",
    "run",
    "bytes",
    "secs",
    "bytes_per_sec",
    "mb_per_sec",
    "gbit_per_sec",
    "direct",
    "fsync_included",
    "streams",
    "mtu",
    "block_size",
    "iodepth",
    "files",
    "files_per_sec",
    "samples",
    "min_us",
    "median_us",
    "mean_us",
    "p99_us",
    "p999_us",
    "max_us",
    "side",
    "error",
    "suspect",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::export::sample_report;

    fn parse(bytes: &[u8]) -> (csv::StringRecord, Vec<csv::StringRecord>) {
        let mut reader = csv::Reader::from_reader(bytes);
        let header = reader.headers().unwrap().clone();
        let records = reader.records().collect::<Result<Vec<_>, _>>().unwrap();
        (header, records)
    }

    #[test]
    fn every_repeat_of_every_stage_is_one_row_after_the_header() {
        let report = sample_report();
        let bytes = CsvExporter.render(&report).unwrap();
        let (header, records) = parse(&bytes);
        assert_eq!(header.iter().collect::<Vec<_>>(), HEADER);
        let count = |s: &Option<Summary>| s.as_ref().map_or(0, |s| s.measurements.len());
        let expected = count(&report.source_read)
            + count(&report.destination_write)
            + report
                .paths
                .iter()
                .map(|p| usize::from(p.latency.is_some()) + count(&p.network) + count(&p.copy))
                .sum::<usize>();
        assert_eq!(records.len(), expected);
        assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), expected + 1);

        let stages: Vec<(&str, &str, &str)> =
            records.iter().map(|r| (&r[0], &r[1], &r[2])).collect();
        assert_eq!(
            stages,
            [
                ("source_read", "", "1"),
                ("source_read", "", "2"),
                ("source_read", "", "3"),
                ("destination_write", "", "1"),
                ("destination_write", "", "2"),
                ("destination_write", "", "3"),
                ("latency", "tcp", "1"),
                ("network", "tcp", "1"),
                ("copy", "tcp", "1"),
                ("copy", "tcp", "2"),
            ]
        );
    }

    #[test]
    fn a_row_carries_the_rate_in_three_units_and_its_conditions() {
        let bytes = CsvExporter.render(&sample_report()).unwrap();
        let (_, records) = parse(&bytes);
        let write = &records[3];
        let mb: f64 = write[6].parse().unwrap();
        let gbit: f64 = write[7].parse().unwrap();
        let bytes_per_sec: f64 = write[5].parse().unwrap();
        assert!((mb - 402.0).abs() < 1e-6, "{write:?}");
        assert!((gbit - 3.216).abs() < 1e-6, "{write:?}");
        assert!((bytes_per_sec - 402e6).abs() < 1.0, "{write:?}");
        assert_eq!(&write[8], "true");
        assert_eq!(&write[9], "true");
        assert_eq!(&write[10], "", "no streams on a disk");
        assert_eq!(&write[12], "1048576");
        let latency: Vec<&str> = write.iter().skip(HEADER.len() - 10).take(7).collect();
        assert_eq!(
            latency,
            ["", "", "", "", "", "", ""],
            "no latency on a disk"
        );
        let network = &records[7];
        assert_eq!((&network[10], &network[11]), ("4", "9000"));
        assert_eq!(&network[HEADER.len() - 3], "receiver");
        assert_eq!(&write[HEADER.len() - 3], "", "a disk row has no side");
    }

    #[test]
    fn a_failed_path_has_a_row_with_its_stage_and_reason_after_what_it_measured() {
        let mut report = sample_report();
        report.paths[0].copy = None;
        report.paths[0].failed = Some(crate::plan::PathFailure {
            step: crate::plan::PathStep::Copy,
            reason: "the server closed the connection".into(),
            interrupted: false,
        });
        let bytes = CsvExporter.render(&report).unwrap();
        let (header, records) = parse(&bytes);
        let last = records.last().unwrap();
        let field = |name: &str| &last[header.iter().position(|h| h == name).unwrap()];
        assert_eq!((&last[0], &last[1]), ("copy", "tcp"));
        assert_eq!(field("error"), "the server closed the connection");
        assert_eq!(field("bytes_per_sec"), "");
        assert_eq!(&records[records.len() - 2][0], "network");
    }

    #[test]
    fn a_latency_row_has_the_message_size_and_the_figures_in_microseconds_and_no_rate() {
        let bytes = CsvExporter.render(&sample_report()).unwrap();
        let (header, records) = parse(&bytes);
        let latency = &records[6];
        let field = |name: &str| &latency[header.iter().position(|h| h == name).unwrap()];
        assert_eq!((&latency[0], &latency[1]), ("latency", "tcp"));
        assert_eq!(field("block_size"), "8");
        assert_eq!(field("samples"), "1000");
        assert_eq!(field("median_us"), "28.25");
        assert_eq!(field("p999_us"), "47.55");
        for empty in [
            "bytes",
            "secs",
            "bytes_per_sec",
            "mb_per_sec",
            "direct",
            "streams",
        ] {
            assert_eq!(field(empty), "", "{empty}");
        }
    }

    #[test]
    fn fields_with_commas_quotes_and_line_breaks_round_trip() {
        let report = sample_report();
        let measurement = &report.paths[0].copy.as_ref().unwrap().measurements[0];
        let awkward = "tcp, \"jumbo\"\nvia br0";
        let bytes = write(&[row("copy", awkward.into(), 1, measurement)]).unwrap();
        let (_, records) = parse(&bytes);
        assert_eq!(records.len(), 1);
        assert_eq!(&records[0][1], awkward);
        assert_eq!(&records[0][0], "copy");
        assert_eq!(records[0].len(), HEADER.len());
    }

    #[test]
    fn a_run_that_measured_nothing_still_has_the_header() {
        let bytes = write(&[]).unwrap();
        assert_eq!(String::from_utf8(bytes).unwrap(), HEADER.join(",") + "\n");
    }

    #[test]
    fn a_mesh_stopped_before_any_test_still_gets_its_header() {
        let report = crate::mesh::MeshReport {
            interrupted: true,
            ..crate::mesh::fixtures::report(&["a", "b"], Vec::new())
        };
        let csv = String::from_utf8(mesh(&report).unwrap()).unwrap();
        assert_eq!(csv, format!("{}\n", MESH_HEADER.join(",")));
    }
}
