//! Report files: one small trait, one file per format, and a manager that writes every file the
//! user asked for (`--json`, `--csv`, `--markdown`, `--plot`), after hyperfine's `src/export/`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};

use crate::plan::RunReport;

/// Turns a run report into the bytes of one file.
pub trait Exporter {
    fn render(&self, report: &RunReport) -> Result<Vec<u8>>;
}

/// The file formats a run report can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The versioned JSON report (`schema: 1`), the contract for scripts.
    Json,
    /// One row per measurement, every repeat, for spreadsheets.
    Csv,
    /// The verdict and a table of medians, for a README or an issue.
    Markdown,
    /// Throughput over time per path against the baselines and link classes.
    Svg,
}

impl Format {
    pub fn exporter(self) -> Box<dyn Exporter> {
        match self {
            Format::Json => Box::new(JsonExporter),
            Format::Csv => Box::new(super::csv::CsvExporter),
            Format::Markdown => Box::new(super::markdown::MarkdownExporter),
            Format::Svg => Box::new(super::svg::SvgExporter),
        }
    }
}

/// The JSON report: the envelope of [`super::json::render`] around the run report.
pub struct JsonExporter;

impl Exporter for JsonExporter {
    fn render(&self, report: &RunReport) -> Result<Vec<u8>> {
        let mut text = super::json::render("run", report);
        text.push('\n');
        Ok(text.into_bytes())
    }
}

/// Every report file asked for, written together once the run is done.
#[derive(Default)]
pub struct ExportManager {
    exporters: Vec<Export>,
}

struct Export {
    format: Format,
    path: PathBuf,
    /// Made empty by [`ExportManager::add`], so [`ExportManager::discard`] may remove it; a file
    /// that was there before is never removed or emptied by a failed run.
    created: bool,
}

impl ExportManager {
    pub fn new() -> ExportManager {
        ExportManager::default()
    }

    /// Adds a file to write. A new one is created (empty) now, and an existing one is opened for
    /// writing without being changed, so that a path that cannot be written fails before a run
    /// of many minutes rather than after it.
    pub fn add(&mut self, format: Format, path: impl Into<PathBuf>) -> Result<()> {
        let path = path.into();
        if self.exporters.iter().any(|known| known.path == path) {
            bail!(
                "{} is named for two reports: give each report its own file",
                path.display()
            );
        }
        let created = match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(_) => true,
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|err| cannot_write(&path, err))?;
                false
            }
            Err(err) => return Err(cannot_write(&path, err)),
        };
        self.exporters.push(Export {
            format,
            path,
            created,
        });
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.exporters.is_empty()
    }

    /// Removes the empty files made by [`ExportManager::add`]: the run failed, so no report.
    /// Files that existed before are left as they were.
    pub fn discard(&self) {
        for export in self.exporters.iter().filter(|export| export.created) {
            let _ = std::fs::remove_file(&export.path);
        }
    }

    /// Writes every file; one that fails does not stop the others, and the error names each failure.
    pub fn write_all(&self, report: &RunReport) -> Result<()> {
        self.write_each(|format| format.exporter().render(report))
    }

    /// Writes every file with the bytes `render` gives for its format (a report other than a
    /// run's: `mesh`); as [`ExportManager::write_all`].
    pub fn write_each(&self, render: impl Fn(Format) -> Result<Vec<u8>>) -> Result<()> {
        let mut failures = Vec::new();
        for Export { format, path, .. } in &self.exporters {
            let written = render(*format)
                .map_err(|err| anyhow!("cannot write {}: {err:#}", path.display()))
                .and_then(|bytes| write_file(path, &bytes));
            if let Err(err) = written {
                failures.push(err.to_string());
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            bail!("{}", failures.join("; "))
        }
    }
}

/// Writes `bytes` under a temporary name beside `path`, then renames it over `path` (through
/// a symbolic link to its target): a failed write never leaves a half report or loses an old one.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let temp = crate::file::partial_path(&target)
        .ok_or_else(|| anyhow!("cannot write {}: it does not name a file", path.display()))?;
    let written = File::create(&temp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, &target)
    });
    written.map_err(|err| {
        let _ = std::fs::remove_file(&temp);
        cannot_write(path, err)
    })
}

/// "cannot write report.csv: permission denied", with the fix where there is one.
fn cannot_write(path: &Path, err: io::Error) -> anyhow::Error {
    let reason = match err.kind() {
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        io::ErrorKind::NotFound => match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => format!(
                "the directory {} does not exist: create it first",
                dir.display()
            ),
            _ => "no such file or directory".to_string(),
        },
        io::ErrorKind::IsADirectory => "it is a directory: give a file name".to_string(),
        io::ErrorKind::NotADirectory => "a part of the path is not a directory".to_string(),
        io::ErrorKind::ReadOnlyFilesystem => "the file system is read-only".to_string(),
        io::ErrorKind::StorageFull => "the disk is full".to_string(),
        _ => err.to_string(),
    };
    anyhow!("cannot write {}: {reason}", path.display())
}

/// A small run report with every part a renderer meets: baselines, one measured path with
/// intervals and a verdict, a skipped path, and a warning.
#[cfg(test)]
pub(crate) fn sample_report() -> RunReport {
    use crate::measure::{Conditions, CpuUse, Interval, Latency, Measurement, Workload};
    use crate::plan::verdict::{self, Figures, Sentence};
    use crate::plan::{Parameters, PathResult, Skipped, Summary};
    use crate::transport::TransportKind;
    use crate::warning::Warning;
    use std::time::Duration;

    const MIB: u64 = 1 << 20;
    let size: u64 = 2_000_000_000;
    let disk = |stage, mb_per_sec: f64| {
        let secs = size as f64 / (mb_per_sec * 1e6);
        Measurement::new(
            stage,
            size,
            Duration::from_secs_f64(secs),
            Conditions {
                direct: true,
                fsync_included: stage == Workload::DiskWrite,
                block_size: Some(MIB),
                iodepth: Some(32),
                ..Conditions::default()
            },
            Vec::new(),
        )
    };
    // One-second intervals whose rates follow `shape` (MB/s), the last one half a second.
    let over_time = |stage, shape: &[f64]| {
        let mut intervals = Vec::new();
        let mut start = 0.0;
        for (i, &mb_per_sec) in shape.iter().enumerate() {
            let secs = if i + 1 == shape.len() { 0.5 } else { 1.0 };
            intervals.push(Interval {
                start_secs: start,
                secs,
                bytes: (mb_per_sec * 1e6 * secs) as u64,
            });
            start += secs;
        }
        let bytes = intervals.iter().map(|i| i.bytes).sum();
        Measurement::new(
            stage,
            bytes,
            Duration::from_secs_f64(start),
            Conditions {
                direct: stage == Workload::Copy,
                fsync_included: stage == Workload::Copy,
                path: Some(TransportKind::Tcp),
                streams: Some(4),
                mtu: Some(9000),
                block_size: Some(MIB),
                iodepth: Some(16),
                ..Conditions::default()
            },
            intervals,
        )
    };

    let source_read = Summary::of(vec![
        disk(Workload::DiskRead, 1480.0),
        disk(Workload::DiskRead, 1610.0),
        disk(Workload::DiskRead, 1550.0),
    ]);
    let destination_write = Summary::of(vec![
        disk(Workload::DiskWrite, 402.0),
        disk(Workload::DiskWrite, 431.0),
        disk(Workload::DiskWrite, 415.0),
    ]);
    let network = Summary::of(vec![over_time(
        Workload::NetReceive,
        &[
            980.0, 1160.0, 1172.0, 1168.0, 1175.0, 1170.0, 1166.0, 1174.0, 1171.0, 1169.0,
        ],
    )]);
    let copy = Summary::of(vec![
        over_time(Workload::Copy, &[360.0, 402.0, 398.0, 405.0, 391.0, 400.0]),
        over_time(
            Workload::Copy,
            &[520.0, 410.0, 396.0, 401.0, 388.0, 399.0, 402.0, 210.0],
        ),
    ]);
    let cpu = vec![CpuUse {
        user_secs: 0.4,
        system_secs: 1.9,
        percent: 38.0,
    }];
    let figures = Figures {
        source_read: source_read.as_ref().map(Summary::rate),
        network: network.as_ref().map(Summary::rate),
        destination_write: destination_write.as_ref().map(Summary::rate),
        copy: copy.as_ref().map(Summary::rate),
        cpu: cpu.clone(),
        shared_disk: false,
        shared_disk_read_write: None,
        suspect: Vec::new(),
        spread: 0.0,
        ..Figures::default()
    };
    let verdict = verdict::judge(TransportKind::Tcp, &figures);
    let sentence = Sentence {
        verdict: verdict.as_ref().expect("stages were measured"),
        figures: &figures,
    }
    .to_string();

    RunReport {
        parameters: Parameters {
            server: "peer-b:7766".into(),
            to: None,
            net: None,
            paths: vec!["tcp".into(), "rdma".into()],
            size,
            streams: 4,
            net_secs: 10.0,
            repeat: 3,
            block_size: MIB,
            iodepth: 32,
            latency_size: 8,
            latency_round_trips: 1000,
            files: 0,
            file_size: MIB,
        },
        test_file: "/data/bench, fast/.xferbench-run-2000000000.data".into(),
        test_file_reused: false,
        test_tree: None,
        test_tree_reused: false,
        source_read,
        destination_write,
        destination_read: None,
        nas_disk: None,
        link: None,
        shared_disk: None,
        paths: vec![PathResult {
            path: TransportKind::Tcp,
            latency: Some(Latency {
                what: "8-byte TCP message and its echo; one way = half the round trip".into(),
                samples: 1000,
                min_us: 16.77,
                median_us: 28.25,
                p99_us: 38.17,
                p999_us: 47.55,
                max_us: 93.76,
                mean_us: 26.83,
                quantile_precision_percent: 0.1,
            }),
            latency_failed: None,
            network,
            copy,
            copy_cpu: cpu,
            small_files: None,
            small_files_failed: None,
            verdict,
            sentence,
            failed: None,
        }],
        skipped: vec![Skipped {
            path: "rdma".into(),
            reason: "this build has no RDMA support, rebuild with --features rdma".into(),
        }],
        warnings: vec![Warning::Loopback],
        interrupted: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> tempfile::TempDir {
        tempfile::tempdir().expect("a temporary directory")
    }

    #[test]
    fn the_json_report_is_the_versioned_run_envelope() {
        let bytes = JsonExporter.render(&sample_report()).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["schema"], 1);
        assert_eq!(json["command"], "run");
        assert!(json["host"]["hostname"].is_string());
        assert_eq!(json["paths"][0]["path"], "tcp");
        assert_eq!(
            json["paths"][0]["verdict"]["bottleneck"],
            serde_json::json!(["destination_disk"])
        );
        assert_eq!(json["skipped"][0]["path"], "rdma");
    }

    #[test]
    fn the_manager_writes_every_file_asked_for() {
        let dir = temp_dir();
        let mut manager = ExportManager::new();
        assert!(manager.is_empty());
        for (format, name) in [
            (Format::Json, "r.json"),
            (Format::Csv, "r.csv"),
            (Format::Markdown, "r.md"),
            (Format::Svg, "r.svg"),
        ] {
            manager.add(format, dir.path().join(name)).unwrap();
        }
        manager.write_all(&sample_report()).unwrap();
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert!(read("r.json").contains("\"schema\": 1"));
        assert!(read("r.csv").starts_with("stage,path,run,"));
        assert!(read("r.md").starts_with("# "));
        assert!(read("r.svg").contains("<svg"));
    }

    #[test]
    fn a_file_that_cannot_be_written_fails_when_added_and_names_the_directory() {
        let dir = temp_dir();
        let path = dir.path().join("missing").join("report.csv");
        let err = ExportManager::new()
            .add(Format::Csv, &path)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cannot write "), "{err}");
        assert!(err.contains("report.csv"), "{err}");
        assert!(err.contains("missing does not exist"), "{err}");
    }

    #[test]
    fn a_failed_file_is_named_and_the_others_are_still_written() {
        let dir = temp_dir();
        let mut manager = ExportManager::new();
        let doomed = dir.path().join("gone").join("report.md");
        std::fs::create_dir(dir.path().join("gone")).unwrap();
        manager.add(Format::Markdown, &doomed).unwrap();
        manager.add(Format::Csv, dir.path().join("r.csv")).unwrap();
        std::fs::remove_dir_all(dir.path().join("gone")).unwrap();
        let err = manager.write_all(&sample_report()).unwrap_err().to_string();
        assert!(err.contains("cannot write"), "{err}");
        assert!(err.contains("report.md"), "{err}");
        assert!(!err.contains("r.csv"), "{err}");
        assert!(dir.path().join("r.csv").metadata().unwrap().len() > 0);
    }

    #[test]
    fn an_existing_report_survives_a_failed_run_untouched() {
        let dir = temp_dir();
        let old = dir.path().join("old.json");
        std::fs::write(&old, b"last week's report").unwrap();
        let new = dir.path().join("new.csv");
        let mut manager = ExportManager::new();
        manager.add(Format::Json, &old).unwrap();
        manager.add(Format::Csv, &new).unwrap();
        assert_eq!(std::fs::read(&old).unwrap(), b"last week's report");
        manager.discard();
        assert_eq!(std::fs::read(&old).unwrap(), b"last week's report");
        assert!(!new.exists(), "discard left the empty file it made");
    }

    #[test]
    fn an_existing_report_is_replaced_whole_and_through_its_link() {
        let dir = temp_dir();
        let target = dir.path().join("target.json");
        std::fs::write(&target, b"old").unwrap();
        let link = dir.path().join("latest.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let mut manager = ExportManager::new();
        manager.add(Format::Json, &link).unwrap();
        manager.write_all(&sample_report()).unwrap();
        assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
        assert!(
            std::fs::read_to_string(&target)
                .unwrap()
                .contains("\"schema\": 1")
        );
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["latest.json", "target.json"]);
    }

    #[test]
    fn one_file_cannot_take_two_reports() {
        let dir = temp_dir();
        let mut manager = ExportManager::new();
        manager.add(Format::Json, dir.path().join("r.out")).unwrap();
        let err = manager
            .add(Format::Csv, dir.path().join("r.out"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("named for two reports"), "{err}");
    }
}
