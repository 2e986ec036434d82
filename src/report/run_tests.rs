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
            ("small_files", "tcp"),
            ("latency", "ssh"),
            ("network", "ssh"),
            ("copy", "ssh"),
            ("small_files", "ssh"),
        ]
    );
    let mb_s = |row: usize| row_f64(&rows[row][column("mb_per_sec")]);
    assert!((mb_s(3) - 1.0).abs() < 1e-4 && (mb_s(4) - 0.9).abs() < 1e-4);
    assert!((mb_s(1) - 3.0).abs() < 1e-4);
    // The fake lands the 30 files of 4 KiB at its copy's rate.
    assert!((mb_s(5) - 0.9).abs() < 1e-4);
    assert_eq!(&rows[5][column("files")], "30");
    let files_per_sec = row_f64(&rows[5][column("files_per_sec")]);
    assert!(
        (files_per_sec - 0.9e6 / 4096.0).abs() < 1e-3,
        "{files_per_sec}"
    );
}

/// tcp refusing trees, as a path without them does; ssh copying them at a tenth of its copy.
fn small_files_both_ways() -> RunReport {
    let far = FakeFar::new(
        vec![
            Fake::new(TransportKind::Tcp, 1.0, 0.9).with_trees(None),
            Fake::new(TransportKind::Ssh, 10.0, 2.8).with_trees(Some(0.28)),
        ],
        3.0,
    );
    fake::run(&far).1
}

#[test]
fn the_text_report_has_a_small_files_row_per_path_with_its_figure_or_why_not() {
    let text = super::text::run(&small_files_both_ways());
    let row = |name: &str| {
        text.lines()
            .find(|line| line.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row: {text}"))
            .to_string()
    };
    assert!(
        row("tcp small files").contains("not measured: copy -r over tcp"),
        "{text}"
    );
    let ssh = row("ssh small files");
    assert!(
        ssh.contains("280 kB/s") && ssh.contains("68 files/s, 30 files of 4 KiB, each fsynced"),
        "{ssh}"
    );
    assert!(text.contains("new tree of 30 files of 4 KiB"), "{text}");
    assert!(
        text.contains("ssh: per-file overhead: 30 files of 4 KiB reach 280 kB/s"),
        "{text}"
    );
    assert!(!text.contains("tcp: per-file overhead"), "{text}");
}

#[test]
fn the_csv_and_markdown_reports_carry_the_small_files_or_why_not() {
    let report = small_files_both_ways();
    let csv = rendered(&CsvExporter, &report);
    let refused = csv
        .lines()
        .find(|line| line.starts_with("small_files,tcp,1,"))
        .unwrap_or_else(|| panic!("no small_files row for tcp: {csv}"));
    assert!(refused.contains("copy -r over tcp"), "{csv}");
    assert!(
        csv.lines()
            .any(|line| line.starts_with("small_files,ssh,1,"))
    );
    let markdown = rendered(&MarkdownExporter, &report);
    assert!(
        markdown.contains("| small files, 30 × 4 KiB | tcp | not measured |"),
        "{markdown}"
    );
    assert!(
        markdown.contains("| small files, 30 × 4 KiB, 68 files/s, each fsynced | ssh | 0.3 |"),
        "{markdown}"
    );
    let json = rendered(Format::Json.exporter().as_ref(), &report);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let ssh = &json["paths"][1];
    assert_eq!(ssh["small_files"]["files"], 30, "{json:#}");
    assert_eq!(ssh["small_files"]["fsync"], "each", "{json:#}");
    assert!(
        ssh["verdict"]["per_file_overhead"]["fraction_of_copy"]
            .as_f64()
            .unwrap()
            < 0.25
    );
    assert!(
        json["paths"][0]["small_files_failed"].is_string(),
        "{json:#}"
    );
    assert_eq!(json["parameters"]["files"], 30, "{json:#}");
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
