//! The CSV report: one row per measurement, every repeat of every stage, for spreadsheets and scripts.

use anyhow::{Context, Result};
use serde::Serialize;

use super::export::Exporter;
use crate::measure::Measurement;
use crate::plan::{RunReport, Summary};

pub struct CsvExporter;

impl Exporter for CsvExporter {
    fn render(&self, report: &RunReport) -> Result<Vec<u8>> {
        write(&rows(report))
    }
}

/// One measurement; the header is the field names. Empty fields are conditions that do not apply.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Row {
    /// source_read, destination_write, network or copy, as in the JSON report.
    stage: &'static str,
    /// The transfer path; empty for the disk baselines.
    path: String,
    /// 1-based repeat index within the stage.
    run: usize,
    bytes: u64,
    secs: f64,
    bytes_per_sec: f64,
    mb_per_sec: f64,
    gbit_per_sec: f64,
    direct: bool,
    fsync_included: bool,
    streams: Option<usize>,
    mtu: Option<u32>,
    block_size: Option<u64>,
    iodepth: Option<usize>,
}

fn rows(report: &RunReport) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut add = |stage, path: String, summary: &Option<Summary>| {
        let measurements = summary.iter().flat_map(|s| &s.measurements);
        for (index, m) in measurements.enumerate() {
            rows.push(row(stage, path.clone(), index + 1, m));
        }
    };
    add("source_read", String::new(), &report.source_read);
    add(
        "destination_write",
        String::new(),
        &report.destination_write,
    );
    for result in &report.paths {
        add("network", result.path.to_string(), &result.network);
        add("copy", result.path.to_string(), &result.copy);
    }
    rows
}

fn row(stage: &'static str, path: String, run: usize, m: &Measurement) -> Row {
    let c = &m.conditions;
    Row {
        stage,
        path,
        run,
        bytes: m.bytes,
        secs: m.secs,
        bytes_per_sec: m.bytes_per_sec,
        mb_per_sec: m.rate().mb_per_sec(),
        gbit_per_sec: m.rate().gbit_per_sec(),
        direct: c.direct,
        fsync_included: c.fsync_included,
        streams: c.streams,
        mtu: c.mtu,
        block_size: c.block_size,
        iodepth: c.iodepth,
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

const HEADER: [&str; 14] = [
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
                .map(|p| count(&p.network) + count(&p.copy))
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
        let network = &records[6];
        assert_eq!((&network[10], &network[11]), ("4", "9000"));
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
}
