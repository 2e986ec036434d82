//! `run` over fake paths and the null disk engine, through every exporter: fast, and the same
//! on any machine.

use super::csv::CsvExporter;
use super::export::{Exporter, Format};
use super::markdown::MarkdownExporter;
use super::svg::SvgExporter;
use crate::plan::RunReport;
use crate::plan::fake::{self, FakeFar};
use crate::transport::TransportKind;
use crate::transport::fake::{FailAt, Fake};

/// tcp limited by the network (1 MB/s, copy 0.9), ssh by the far disk (3 MB/s, copy 2.8).
fn two_paths() -> RunReport {
    let far = FakeFar::new(
        vec![
            Fake::new(TransportKind::Tcp, 1.0, 0.9),
            Fake::new(TransportKind::Ssh, 10.0, 2.8),
        ],
        3.0,
    );
    fake::run(&far).1
}

/// tcp whose copy failed.
fn failed_copy() -> RunReport {
    let tcp = Fake {
        fail: Some(FailAt::Copy),
        ..Fake::new(TransportKind::Tcp, 1.0, 0.9)
    };
    fake::run(&FakeFar::new(vec![tcp], 10.0)).1
}

fn rendered(exporter: &dyn Exporter, report: &RunReport) -> String {
    String::from_utf8(exporter.render(report).unwrap()).unwrap()
}

#[test]
fn the_text_report_gives_each_paths_verdict_and_the_engine_of_the_disk_figures() {
    let text = super::text::run(&two_paths());
    assert!(text.contains("limited by the network (carries "), "{text}");
    assert!(
        text.contains("limited by the destination disk (write "),
        "{text}"
    );
    let source = text.lines().find(|l| l.contains("source read")).unwrap();
    assert!(
        source.contains("(O_DIRECT)") && source.ends_with("null engine: no byte reached a device"),
        "a null figure is not placed among devices: {source}"
    );
}

#[test]
fn the_text_report_of_a_failed_copy_says_where_and_gives_no_verdict() {
    let text = super::text::run(&failed_copy());
    assert!(text.contains("tcp: failed in disk to disk"), "{text}");
    assert!(!text.contains("limited by"), "{text}");
}

#[test]
fn the_csv_report_has_a_row_per_figure_in_order_with_the_given_rates() {
    let csv = rendered(&CsvExporter, &two_paths());
    let mut reader = ::csv::Reader::from_reader(csv.as_bytes());
    let header = reader.headers().unwrap().clone();
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<_> = reader.records().map(Result::unwrap).collect();
    let stages: Vec<(&str, &str)> = rows
        .iter()
        .map(|row| (&row[column("stage")], &row[column("path")]))
        .collect();
    assert_eq!(
        stages,
        [
            ("source_read", ""),
            ("destination_write", ""),
            ("latency", "tcp"),
            ("network", "tcp"),
            ("copy", "tcp"),
            ("latency", "ssh"),
            ("network", "ssh"),
            ("copy", "ssh"),
        ]
    );
    let mb_s = |row: usize| row_f64(&rows[row][column("mb_per_sec")]);
    assert!((mb_s(3) - 1.0).abs() < 1e-4 && (mb_s(4) - 0.9).abs() < 1e-4);
    assert!((mb_s(1) - 3.0).abs() < 1e-4);
}

fn row_f64(field: &str) -> f64 {
    field
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {field:?}"))
}

#[test]
fn the_csv_report_of_a_failed_copy_has_an_error_row_for_that_stage() {
    let csv = rendered(&CsvExporter, &failed_copy());
    let last = csv.lines().last().unwrap();
    assert!(last.starts_with("copy,tcp,1,"), "{csv}");
    assert!(last.contains("the fake tcp path failed in Copy"), "{csv}");
}

#[test]
fn the_markdown_report_has_a_row_per_path_and_each_verdict() {
    let markdown = rendered(&MarkdownExporter, &two_paths());
    for path in ["| tcp |", "| ssh |"] {
        assert!(markdown.contains(path), "{path} missing: {markdown}");
    }
    assert!(markdown.contains("limited by the network"), "{markdown}");
    assert!(
        markdown.contains("limited by the destination disk"),
        "{markdown}"
    );
}

#[test]
fn the_svg_report_is_well_formed_and_names_every_path() {
    let svg = rendered(&SvgExporter, &two_paths());
    let document = roxmltree::Document::parse(&svg).unwrap();
    let texts: Vec<&str> = document
        .descendants()
        .filter(|node| node.has_tag_name("text"))
        .filter_map(|node| node.text())
        .collect();
    for path in ["tcp", "ssh"] {
        assert!(
            texts.iter().any(|text| text.contains(path)),
            "{path} missing from {texts:?}"
        );
    }
}

#[test]
fn every_format_renders_a_run_with_a_failed_path() {
    let report = failed_copy();
    for format in [Format::Json, Format::Csv, Format::Markdown, Format::Svg] {
        let bytes = format.exporter().render(&report).unwrap();
        assert!(!bytes.is_empty(), "{format:?}");
    }
}
