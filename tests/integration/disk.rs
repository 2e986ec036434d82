//! `xferbench disk PATH ...`: the local disk baseline.

use std::ffi::OsStr;
use std::path::Path;

use crate::common::{
    assert_empty_dir, assert_no_leftovers, assert_success, assert_usage_error, command, entries,
    has_warning, run, run_command, scratch_path, temp_dir,
};
use serde_json::Value;

const MIB: u64 = 1 << 20;

/// `xferbench -q disk PATH EXTRA... -J`, asserted successful; returns the parsed report and stderr.
fn disk_json(path: &Path, extra: &[&str]) -> (Value, String) {
    let mut args: Vec<&OsStr> = vec![
        "-q".as_ref(),
        "disk".as_ref(),
        path.as_os_str(),
        "-J".as_ref(),
    ];
    args.extend(extra.iter().map(OsStr::new));
    let (code, stdout, stderr) = run(&args);
    assert_success(code, &stdout, &stderr);
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|err| panic!("stdout is not JSON ({err}):\n{stdout}"));
    assert_eq!(report["schema"], 1, "{report:#}");
    assert_eq!(report["command"], "disk", "{report:#}");
    (report, stderr)
}

fn measurements(report: &Value) -> &Vec<Value> {
    report["measurements"]
        .as_array()
        .unwrap_or_else(|| panic!("no measurements array: {report:#}"))
}

/// Both passes of a 16 MiB run in `dir` went through `engine`, the report says so, and the test
/// file is gone.
fn assert_both_passes_went_through(report: &Value, engine: &str, dir: &Path) {
    assert_eq!(report["engine"], engine);
    let passes = measurements(report);
    assert_eq!(passes.len(), 2);
    for m in passes {
        assert_eq!(m["conditions"]["engine"], engine, "{m:#}");
        assert_eq!(m["bytes"].as_u64(), Some(16 * MIB), "{m:#}");
    }
    assert_no_leftovers(dir);
}

/// Makes a file with `xferbench gen`.
fn make_file(path: &Path, size: &str, fill: &str) {
    let (code, stdout, stderr) = run([
        OsStr::new("gen"),
        path.as_os_str(),
        "--size".as_ref(),
        size.as_ref(),
        "--fill".as_ref(),
        fill.as_ref(),
        "-q".as_ref(),
    ]);
    assert_success(code, &stdout, &stderr);
}

#[test]
fn disk_json_reports_a_direct_write_then_read_of_the_requested_size() {
    let dir = temp_dir();
    let (report, _) = disk_json(dir.path(), &["--size", "64M", "--iodepth", "4"]);
    let passes = measurements(&report);
    assert_eq!(passes.len(), 2, "{report:#}");
    let stages: Vec<&str> = passes
        .iter()
        .map(|m| m["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["disk_write", "disk_read"]);
    for m in passes {
        assert_eq!(m["bytes"].as_u64(), Some(64 * MIB), "{m:#}");
        assert!(m["bytes_per_sec"].as_f64().unwrap() > 0.0, "{m:#}");
        assert_eq!(m["conditions"]["direct"], true, "{m:#}");
        assert_eq!(m["conditions"]["iodepth"], 4, "{m:#}");
        assert_eq!(m["conditions"]["block_size"].as_u64(), Some(MIB), "{m:#}");
    }
    assert_eq!(passes[0]["conditions"]["fsync_included"], true);
    assert_eq!(passes[1]["conditions"]["fsync_included"], false);
    assert_empty_dir(dir.path());
    let test_file = report["test_file"]
        .as_str()
        .expect("test_file in the report");
    assert!(
        !Path::new(test_file).exists(),
        "{test_file} was not removed"
    );
}

#[test]
fn disk_psync_engine_is_used_and_reported() {
    let dir = temp_dir();
    let (report, _) = disk_json(dir.path(), &["--size", "16M", "--engine", "psync"]);
    assert_both_passes_went_through(&report, "psync", dir.path());
}

#[test]
fn disk_io_uring_engine_is_used_and_reported() {
    let dir = temp_dir();
    let (code, stdout, stderr) = run([
        OsStr::new("-q"),
        "disk".as_ref(),
        dir.path().as_os_str(),
        "-J".as_ref(),
        "--size".as_ref(),
        "16M".as_ref(),
        "--engine".as_ref(),
        "io_uring".as_ref(),
    ]);
    if code != 0 && stderr.contains("io_uring is unavailable") {
        eprintln!("skipping: the kernel refuses io_uring here: {stderr}");
        return;
    }
    assert_success(code, &stdout, &stderr);
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_both_passes_went_through(&report, "io_uring", dir.path());
}

#[test]
fn disk_buffered_goes_through_the_page_cache_and_drops_the_file_before_reading() {
    let dir = temp_dir();
    let (report, _) = disk_json(dir.path(), &["--size", "64M", "--buffered"]);
    let passes = measurements(&report);
    assert_eq!(passes.len(), 2, "{report:#}");
    for m in passes {
        assert_eq!(m["conditions"]["direct"], false, "{m:#}");
        assert_eq!(m["bytes"].as_u64(), Some(64 * MIB), "{m:#}");
    }
    let read = &passes[1];
    assert_eq!(read["stage"], "disk_read");
    let cached = read["conditions"]["cached_before"]
        .as_f64()
        .unwrap_or_else(|| panic!("no cached_before: {read:#}"));
    assert!(
        cached < 0.05,
        "{:.0}% of the file was still cached before the read",
        cached * 100.0
    );
    assert!(!has_warning(&report, "cached"), "{report:#}");
    assert_no_leftovers(dir.path());
}

#[test]
fn disk_direct_after_buffered_means_direct() {
    let dir = temp_dir();
    let (report, _) = disk_json(dir.path(), &["--size", "8M", "--buffered", "--direct"]);
    for m in measurements(&report) {
        assert_eq!(m["conditions"]["direct"], true, "{m:#}");
    }
}

#[test]
fn disk_buffered_with_an_unaligned_block_size_moves_exactly_the_requested_bytes() {
    // The --bs error for O_DIRECT advises "or --buffered": buffered I/O takes any block size,
    // and must still write and read --size bytes, not blocks rounded up to 4 KiB each.
    let dir = temp_dir();
    let (report, _) = disk_json(dir.path(), &["--size", "8M", "--bs", "5000", "--buffered"]);
    let passes = measurements(&report);
    assert_eq!(passes.len(), 2, "{report:#}");
    for m in passes {
        assert_eq!(m["conditions"]["block_size"], 5000, "{m:#}");
        assert_eq!(
            m["bytes"].as_u64(),
            Some(8 * MIB),
            "{} pass reports the wrong byte count",
            m["stage"]
        );
    }
    assert_no_leftovers(dir.path());
}

#[test]
fn disk_buffered_read_of_a_file_with_an_unaligned_block_size_reads_the_file_once() {
    let (_dir, path) = scratch_path("input.data");
    make_file(&path, "1000001", "random");
    let (report, _) = disk_json(&path, &["--bs", "5000", "--buffered"]);
    assert_one_read_of_the_whole_file(&report, &path, 1_000_001);
}

#[test]
fn disk_write_only_runs_just_the_write_pass() {
    let dir = temp_dir();
    let (report, _) = disk_json(dir.path(), &["--size", "16M", "--write-only"]);
    let passes = measurements(&report);
    assert_eq!(passes.len(), 1, "{report:#}");
    assert_eq!(passes[0]["stage"], "disk_write");
    assert_eq!(passes[0]["bytes"].as_u64(), Some(16 * MIB));
    assert_empty_dir(dir.path());
}

fn assert_one_read_of_the_whole_file(report: &Value, path: &Path, len: u64) {
    let passes = measurements(report);
    assert_eq!(passes.len(), 1, "{report:#}");
    assert_eq!(passes[0]["stage"], "disk_read");
    assert_eq!(passes[0]["bytes"].as_u64(), Some(len), "{report:#}");
    assert_eq!(passes[0]["conditions"]["fsync_included"], false);
    assert_eq!(report["test_file"].as_str(), path.to_str());
}

#[test]
fn disk_read_only_reads_an_existing_file_whole_and_leaves_it_alone() {
    let (dir, path) = scratch_path("input.data");
    make_file(&path, "1000001", "random");
    let before = std::fs::read(&path).unwrap();
    let (report, stderr) = disk_json(&path, &["--read-only"]);
    assert_one_read_of_the_whole_file(&report, &path, 1_000_001);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "reading changed the file"
    );
    assert!(!stderr.contains("unwritten extents"), "stderr: {stderr}");
    assert!(!has_warning(&report, "unwritten_extents"), "{report:#}");
    assert_eq!(entries(dir.path()), ["input.data"]);
}

#[test]
fn disk_on_a_file_path_reads_the_file() {
    let (dir, path) = scratch_path("input.data");
    make_file(&path, "16M", "random");
    let (report, _) = disk_json(&path, &[]);
    assert_one_read_of_the_whole_file(&report, &path, 16 * MIB);
    assert_eq!(entries(dir.path()), ["input.data"]);
}

#[test]
fn disk_warns_about_unwritten_extents_in_a_fallocated_file() {
    let (_dir, path) = scratch_path("fallocated.data");
    make_file(&path, "64M", "none");
    let (report, stderr) = disk_json(&path, &["--read-only"]);
    assert_one_read_of_the_whole_file(&report, &path, 64 * MIB);
    assert!(
        stderr
            .lines()
            .any(|line| line.starts_with("warning:") && line.contains("unwritten extents")),
        "stderr: {stderr}"
    );
    assert!(has_warning(&report, "unwritten_extents"), "{report:#}");
}

#[test]
fn disk_text_output_gives_rates_in_bytes_and_bits_placed_against_classes() {
    let dir = temp_dir();
    let (code, stdout, stderr) = run([
        OsStr::new("-q"),
        "disk".as_ref(),
        dir.path().as_os_str(),
        "--size".as_ref(),
        "16M".as_ref(),
    ]);
    assert_success(code, &stdout, &stderr);
    assert!(
        serde_json::from_str::<Value>(&stdout).is_err(),
        "text output parsed as JSON"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        4,
        "a heading, the file system and one line per pass:\n{stdout}"
    );
    assert!(lines[0].contains("O_DIRECT"), "{stdout}");
    assert!(lines[1].trim_start().starts_with("on /"), "{stdout}");
    for (line, label) in lines[2..].iter().zip(["write", "read"]) {
        assert!(line.trim_start().starts_with(label), "{line}");
        // Rates print in bytes (kB/s, MB/s or GB/s) and in bits (Mb/s or Gb/s, Gb/s from 125 MB/s up).
        assert!(
            ["MB/s", "GB/s", "kB/s"]
                .iter()
                .any(|unit| line.contains(unit)),
            "no byte rate: {line}"
        );
        assert!(
            ["Gb/s", "Mb/s"].iter().any(|unit| line.contains(unit)),
            "no bit rate: {line}"
        );
        assert!(
            ["HDD", "SATA SSD", "NVMe"]
                .iter()
                .any(|class| line.contains(class)),
            "no device class: {line}"
        );
        assert!(line.contains("GbE"), "no link class: {line}");
    }
    assert!(stdout.contains("Gb/s") || stdout.contains("Mb/s"));
    assert_no_leftovers(dir.path());
}

#[test]
fn disk_removes_its_test_file_when_the_write_fails() {
    // A file size limit (RLIMIT_FSIZE) makes the allocation fail after the test file was created.
    let dir = temp_dir();
    crate::common::fails_cleanly_past_8_mib([
        OsStr::new("disk"),
        dir.path().as_os_str(),
        "--size".as_ref(),
        "64M".as_ref(),
    ]);
    assert_empty_dir(dir.path());
}

#[test]
fn a_read_answered_by_the_page_cache_is_marked_not_printed_clean() {
    let (_dir, path) = scratch_path("cached.data");
    // Written through the page cache, not evicted: every page is still in memory.
    let bytes: Vec<u8> = (0..32 * MIB)
        .map(|i| ((i * 2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &bytes).unwrap();
    let (report, _) = disk_json(&path, &["--buffered", "--keep-cache"]);
    let read = &measurements(&report)[0];
    let suspect = read["suspect"]
        .as_str()
        .unwrap_or_else(|| panic!("not marked: {report:#}"));
    assert!(
        suspect.contains("page cache") || suspect.contains("tmpfs"),
        "{suspect}"
    );
    let (code, stdout, stderr) = run([
        "-q".as_ref(),
        "disk".as_ref(),
        path.as_os_str(),
        "--buffered".as_ref(),
        "--keep-cache".as_ref(),
    ]);
    assert_success(code, &stdout, &stderr);
    assert!(stdout.contains("NOT THE DISK"), "{stdout}");
    assert!(
        !stdout.contains("class"),
        "placed against a class: {stdout}"
    );
}

#[test]
fn a_read_after_the_cache_was_dropped_is_not_marked() {
    let dir = temp_dir();
    if xferbench::file::is_tmpfs(dir.path()) {
        eprintln!("skipped: the test dir is tmpfs, where every read is memory");
        return;
    }
    let path = dir.path().join("evicted.data");
    make_file(&path, "32M", "random");
    let (report, _) = disk_json(&path, &["--buffered"]);
    let read = &measurements(&report)[0];
    assert!(read["suspect"].is_null(), "{report:#}");
}

#[test]
fn keep_cache_without_buffered_is_a_usage_error() {
    let (code, _, stderr) = run(["disk", ".", "--keep-cache"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--buffered"), "{stderr}");
}

#[test]
fn disk_durability_writes_three_ways_says_whether_stable_writes_waited_and_leaves_nothing() {
    let dir = temp_dir();
    let (report, _) = disk_json(
        dir.path(),
        &["--size", "8M", "--write-only", "--durability"],
    );
    let probe = &report["durability"];
    let (cached, dsync) = (&probe["fsync_at_end"], &probe["dsync"]);
    for (m, direct, dsynced) in [(cached, false, false), (dsync, false, true)] {
        assert_eq!(m["bytes"], 8 * MIB, "{probe:#}");
        assert_eq!(m["conditions"]["direct"], direct, "{probe:#}");
        assert_eq!(
            m["conditions"]["dsync"].as_bool().unwrap_or(false),
            dsynced,
            "{probe:#}"
        );
        assert_eq!(m["conditions"]["fsync_included"], true, "{probe:#}");
    }
    // O_DIRECT where the file system takes it (not tmpfs), else null.
    let direct = &probe["direct"];
    assert!(
        direct.is_null() || direct["conditions"]["direct"] == true,
        "{probe:#}"
    );
    let ratio =
        dsync["bytes_per_sec"].as_f64().unwrap() / cached["bytes_per_sec"].as_f64().unwrap();
    assert!(
        (probe["stable_ratio"].as_f64().unwrap() - ratio).abs() < 1e-9,
        "{probe:#}"
    );
    assert_eq!(probe["stable_as_fast"], ratio >= 0.6, "{probe:#}");
    assert_empty_dir(dir.path());
}

#[test]
fn disk_durability_of_a_file_is_refused_before_anything_runs() {
    let (_dir, file) = scratch_path("a.data");
    std::fs::write(&file, b"x").unwrap();
    let out = run_command(command([
        "disk".as_ref(),
        file.as_os_str(),
        "--durability".as_ref(),
    ]));
    assert_usage_error(&out);
    assert!(out.stderr.contains("is not a directory"), "{}", out.stderr);
}

#[test]
fn disk_json_says_which_file_system_the_test_file_was_on() {
    let dir = temp_dir();
    let (report, _) = disk_json(dir.path(), &["--size", "16M"]);
    let findmnt = std::process::Command::new("findmnt")
        .args(["-no", "FSTYPE,TARGET", "-T"])
        .arg(dir.path())
        .output()
        .expect("findmnt (util-linux) says what the file system is");
    assert!(findmnt.status.success(), "{findmnt:?}");
    let said = String::from_utf8_lossy(&findmnt.stdout);
    let (fs_type, target) = said.trim().split_once(' ').unwrap();
    for m in measurements(&report) {
        let mount = &m["conditions"]["mount"];
        assert_eq!(mount["fs_type"], fs_type, "{m:#}");
        assert_eq!(mount["mount_point"], target.trim(), "{m:#}");
        // A host fact: the report's host.kernel says it once.
        assert!(mount.get("kernel").is_none(), "{mount:#}");
        assert!(mount["server"].is_null(), "a local disk: {mount:#}");
        if let Some(device) = mount.get("device").filter(|d| !d.is_null()) {
            assert!(
                device["name"].is_string() && device["transport"].is_string(),
                "{device:#}"
            );
        }
    }
}
