//! `xferbench run --to DIR`: the far side is a directory on this machine (the VM tests in
//! `share.rs` run it to real SMB and NFS shares). Here: a local directory, and the command
//! lines it refuses.

use crate::common::{
    assert_failed_cleanly, assert_usage_error, command, entries, json_report, rates_lock,
    run_command, temp_dir,
};

/// A few small files, so that a run stays quick.
const SMALL_FILES: [&str; 4] = ["--files", "20", "--file-size", "16K"];

fn run_to(source: &std::path::Path, to: &std::path::Path, extra: &[&str]) -> crate::common::Run {
    let mut cmd = command(["-q", "run", "--size", "16M", "--dir"]);
    cmd.arg(source)
        .arg("--to")
        .arg(to)
        .args(SMALL_FILES)
        .args(extra);
    run_command(cmd)
}

#[test]
fn run_to_a_local_directory_measures_its_write_and_read_copies_verified_and_leaves_nothing() {
    let _turn = rates_lock();
    let (source, to) = (temp_dir(), temp_dir());
    let result = json_report(&run_to(source.path(), to.path(), &["-J"]));
    assert_eq!(result["parameters"]["to"], to.path().display().to_string());
    assert_eq!(result["parameters"]["paths"], serde_json::json!(["local"]));
    for stage in ["source_read", "destination_write", "destination_read"] {
        assert!(
            result[stage]["median_bytes_per_sec"].as_f64().unwrap() > 0.0,
            "{stage}: {result:#}"
        );
    }
    assert_eq!(
        result["destination_read"]["measurements"][0]["stage"],
        "disk_read"
    );
    let path = &result["paths"][0];
    assert_eq!(path["path"], "local", "{path:#}");
    assert!(
        path["network"].is_null() && path["latency"].is_null(),
        "{path:#}"
    );
    assert!(
        path["latency_failed"]
            .as_str()
            .unwrap()
            .contains("a local file system"),
        "{path:#}"
    );
    let copy = &path["copy"]["measurements"][0];
    assert_eq!(copy["bytes"], 16 << 20, "{copy:#}");
    assert_eq!(copy["conditions"]["fsync_included"], true, "{copy:#}");
    // No network stands between two directories of one machine: none is missing.
    let verdict = &path["verdict"];
    assert_eq!(verdict["missing"], serde_json::json!([]), "{verdict:#}");
    assert!(
        !path["sentence"].as_str().unwrap().contains("network"),
        "{path:#}"
    );
    // Both directories are on the test root's disk: that disk serves both ends.
    assert!(result["shared_disk"].is_object(), "{result:#}");
    assert_eq!(verdict["bottleneck"], serde_json::json!(["shared_disk"]));
    // The tree of small files, copied onto the directory by the local copy -r, each fsynced.
    let small = &path["small_files"];
    assert_eq!(small["files"], 20, "{path:#}");
    assert_eq!(small["fsync"], "each", "{path:#}");
    assert_eq!(small["measurement"]["bytes"], 20 * 16384, "{path:#}");
    assert!(small["files_per_sec"].as_f64().unwrap() > 0.0, "{path:#}");
    assert!(entries(to.path()).is_empty(), "{:?}", entries(to.path()));
    assert_eq!(
        entries(source.path()),
        vec![
            ".xferbench-run-16777216.data",
            ".xferbench-run-files-20x16384"
        ]
    );
}

#[test]
fn run_to_a_directory_says_so_in_its_text_and_names_no_network() {
    let _turn = rates_lock();
    let (source, to) = (temp_dir(), temp_dir());
    let mut cmd = command(["run", "--size", "16M", "--dir"]);
    cmd.arg(source.path())
        .arg("--to")
        .arg(to.path())
        .args(SMALL_FILES);
    let out = run_command(cmd);
    crate::common::assert_success(out.code, &out.stdout, &out.stderr);
    let first = out.stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("local: ") && first.contains("limited by"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("to {}, 1 run each", to.path().display())),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("destination read (cold)"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("copy (verified)"), "{}", out.stdout);
    assert!(
        out.stdout
            .lines()
            .any(|line| line.trim_start().starts_with("small files ")
                && line.contains("20 files of 16 KiB")),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("memory to memory"), "{}", out.stdout);
    assert!(
        out.stderr.contains("3/5 network: none (") && out.stderr.contains("4/5 disk to disk to "),
        "{}",
        out.stderr
    );
}

#[test]
fn run_to_refuses_a_host_too_and_net_without_to_before_measuring() {
    let (source, to) = (temp_dir(), temp_dir());
    let both = run_to(source.path(), to.path(), &["127.0.0.1"]);
    assert_usage_error(&both);
    assert!(both.stderr.contains("--to"), "{}", both.stderr);
    let mut net_alone = command(["-q", "run", "--size", "16M", "--net", "127.0.0.1", "--dir"]);
    net_alone.arg(source.path());
    let net_alone = run_command(net_alone);
    assert_usage_error(&net_alone);
    assert!(net_alone.stderr.contains("--to"), "{}", net_alone.stderr);
    assert!(entries(source.path()).is_empty());
}

#[test]
fn run_to_a_missing_directory_or_with_net_on_a_local_one_fails_cleanly() {
    let (source, to) = (temp_dir(), temp_dir());
    let missing = to.path().join("nowhere");
    let out = run_to(source.path(), &missing, &[]);
    assert_failed_cleanly(&out);
    assert!(
        out.stderr.contains("nowhere") && out.stderr.contains("does not exist"),
        "{}",
        out.stderr
    );
    let out = run_to(source.path(), to.path(), &["--net", "127.0.0.1"]);
    assert_failed_cleanly(&out);
    assert!(
        out.stderr.contains("a local file system: leave --net out"),
        "{}",
        out.stderr
    );
    assert!(
        entries(source.path()).is_empty(),
        "{:?}",
        entries(source.path())
    );
}
