//! `diff` between two real reports, and `--json-stream` read by a consumer as it runs.

use std::ffi::OsStr;
use std::io::BufRead;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{
    Hosts, Run, assert_usage_error, command, json_report, make_file, rates_lock, run_command,
    temp_dir,
};

/// `xferbench -q diff ARGS...`.
fn diff(args: &[&OsStr]) -> Run {
    let mut all = vec![OsStr::new("-q"), OsStr::new("diff")];
    all.extend_from_slice(args);
    run_command(command(all))
}

/// `run` over a lab link shaped to `rate`, its test file (in `dir`) reused from run to run;
/// None where no lab can be made.
fn run_at(rate: &str, dir: &std::path::Path) -> Option<String> {
    let hosts = Hosts::shaped(rate);
    hosts.lab()?;
    let root = temp_dir();
    let server = hosts.serve(root.path(), &[]);
    let args: Vec<&OsStr> = vec![
        "run".as_ref(),
        server.addr.as_ref(),
        "--size".as_ref(),
        "64M".as_ref(),
        "-t".as_ref(),
        "2".as_ref(),
        "-P".as_ref(),
        "1".as_ref(),
        "--files".as_ref(),
        "0".as_ref(),
        "--dir".as_ref(),
        dir.as_os_str(),
        "-J".as_ref(),
    ];
    let out = server.run(&args);
    json_report(&out);
    Some(out.stdout)
}

#[test]
fn diff_of_a_run_at_1_gbit_then_at_200_mbit_says_the_network_got_worse_and_the_disks_did_not() {
    let _turn = rates_lock();
    let dir = temp_dir();
    let Some(fast) = run_at("1gbit", dir.path()) else {
        eprintln!("skipped: needs root and iproute2 for a lab");
        return;
    };
    let slow = run_at("200mbit", dir.path()).expect("a second lab");
    let files = temp_dir();
    let (old, new) = (files.path().join("old.json"), files.path().join("new.json"));
    std::fs::write(&old, fast).unwrap();
    std::fs::write(&new, slow).unwrap();
    // A shared 2-core machine's disks wander by more than 5% from run to run; the network falls
    // by 80%.
    let args = [
        old.as_os_str(),
        new.as_os_str(),
        OsStr::new("--threshold"),
        OsStr::new("40"),
        OsStr::new("--fail-on-regression"),
        OsStr::new("-J"),
    ];
    let out = diff(&args);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("got worse beyond noise"),
        "{}",
        out.stderr
    );
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["command"], "diff");
    assert_eq!(report["of"], "run");
    let figures = report["figures"].as_array().unwrap();
    let verdict_of = |name: &str| -> Vec<&str> {
        figures
            .iter()
            .filter(|figure| figure["figure"].as_str().unwrap().contains(name))
            .map(|figure| figure["verdict"].as_str().unwrap())
            .collect()
    };
    let network = verdict_of("network");
    assert!(
        !network.is_empty() && network.iter().all(|v| *v == "worse"),
        "{report:#}"
    );
    for disk in ["source_read", "destination_write"] {
        let verdicts = verdict_of(disk);
        assert!(!verdicts.is_empty(), "no {disk}: {report:#}");
        assert!(
            verdicts.iter().all(|v| *v == "within_noise"),
            "{disk}: {report:#}"
        );
    }
    // Text: the same, a line a figure.
    let text = diff(&[
        old.as_os_str(),
        new.as_os_str(),
        OsStr::new("--threshold"),
        OsStr::new("40"),
    ]);
    assert_eq!(text.code, 0, "{text:?}");
    assert!(
        text.stdout
            .lines()
            .any(|line| line.contains("network") && line.ends_with("worse")),
        "{}",
        text.stdout
    );
}

#[test]
fn diff_refuses_reports_it_cannot_compare_in_one_line() {
    let dir = temp_dir();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let net = write("net.json", r#"{"schema": 1, "command": "net", "host": {}}"#);
    let copy = write(
        "copy.json",
        r#"{"schema": 1, "command": "copy", "host": {}}"#,
    );
    let newer = write(
        "newer.json",
        r#"{"schema": 2, "command": "net", "host": {}}"#,
    );
    let prose = write("notes.txt", "not a report\n");
    for (other, says) in [
        (&copy, "a `net` report and"),
        (&newer, "of report schema 1 and"),
        (&prose, "not JSON"),
    ] {
        let out = diff(&[net.as_os_str(), other.as_os_str()]);
        assert_usage_error(&out);
        assert!(out.stderr.contains(says), "{}", out.stderr);
        assert_eq!(
            out.stderr.lines().filter(|l| !l.is_empty()).count(),
            2,
            "{}",
            out.stderr
        );
    }
    let missing = dir.path().join("missing.json");
    let out = diff(&[net.as_os_str(), missing.as_os_str()]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("cannot read"), "{}", out.stderr);
}

/// Lines of a process's stdout, each with when it came.
fn timed_lines(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<(Instant, String)> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn a_stream_consumer_reads_the_first_interval_within_1_5_s_of_a_5_s_net_and_every_line_parses() {
    let served = Hosts::loopback().served(&[]);
    let mut cmd = served.client_with_token(&[
        "net".as_ref(),
        served.addr.as_ref(),
        "-t".as_ref(),
        "5".as_ref(),
        "--json-stream".as_ref(),
    ]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let started = Instant::now();
    let mut child = cmd.spawn().expect("start xferbench net");
    let lines = timed_lines(child.stdout.take().unwrap());
    let mut events = Vec::new();
    let mut first_interval = None;
    while let Ok((at, line)) = lines.recv_timeout(Duration::from_secs(20)) {
        let event: Value =
            serde_json::from_str(&line).unwrap_or_else(|err| panic!("{err}: {line}"));
        if event["event"] == "interval" && first_interval.is_none() {
            first_interval = Some(at - started);
        }
        events.push(event);
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let first = first_interval.expect("no interval line");
    assert!(
        first <= Duration::from_millis(1500),
        "first interval after {first:?}"
    );
    assert_eq!(events[0]["event"], "start");
    assert_eq!(events[0]["command"], "net");
    let intervals = events.iter().filter(|e| e["event"] == "interval").count();
    assert!(
        (4..=6).contains(&intervals),
        "{intervals} intervals: {events:#?}"
    );
    let last = events.last().unwrap();
    assert_eq!(last["event"], "end");
    assert_eq!(last["report"]["command"], "net");
    assert!(
        last["report"]["directions"][0]["receiver"]["bytes"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[test]
fn a_copy_streams_its_phases_and_ends_with_the_report_it_would_print_with_j() {
    let dir = temp_dir();
    let source = dir.path().join("source.data");
    make_file(&source, "8M");
    let destination = dir.path().join("copy.data");
    let out = run_command(command([
        "-q".as_ref(),
        "copy".as_ref(),
        source.as_os_str(),
        destination.as_os_str(),
        "--json-stream".as_ref(),
    ]));
    assert_eq!(out.code, 0, "{out:?}");
    let events: Vec<Value> = out
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}")))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"start"), "{kinds:?}");
    assert!(
        kinds.contains(&"begin") && kinds.contains(&"end_phase"),
        "{kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&"end"), "{kinds:?}");
    let report = &events.last().unwrap()["report"];
    assert_eq!(report["command"], "copy");
    assert_eq!(report["measurement"]["bytes"], 8 << 20);
}

#[test]
fn three_reports_give_a_trend_table_and_a_chart_and_fail_on_the_last_steps_regression() {
    let dir = temp_dir();
    let report = |name: &str, rate: f64| {
        let path = dir.path().join(name);
        let text = serde_json::json!({
            "schema": 1,
            "command": "copy",
            "host": {"hostname": "lab", "kernel": "6.18", "xferbench": "0.1.0"},
            "measurement": {"stage": "copy", "bytes": 1, "secs": 1.0, "bytes_per_sec": rate,
                            "conditions": {"direct": true}, "intervals": []}
        });
        std::fs::write(&path, text.to_string()).unwrap();
        path
    };
    let (mon, tue, wed) = (
        report("mon.json", 100e6),
        report("tue.json", 120e6),
        report("wed.json", 60e6),
    );
    let svg = dir.path().join("trend.svg");
    let out = diff(&[
        mon.as_os_str(),
        tue.as_os_str(),
        wed.as_os_str(),
        OsStr::new("--svg"),
        svg.as_os_str(),
        OsStr::new("--fail-on-regression"),
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains("trend of 3 `copy` reports"),
        "{}",
        out.stdout
    );
    let line = out
        .stdout
        .lines()
        .find(|line| line.starts_with("copy "))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    for figure in ["100 MB/s", "120 MB/s", "60.0 MB/s", "-40.0%", "worse"] {
        assert!(line.contains(figure), "{figure}: {line}");
    }
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(
        drawn.contains("copy (MB/s)") && drawn.contains("#3"),
        "{drawn}"
    );
}
