//! `xferbench net HOST`: memory to memory, iperf3-like. Server and client run in two network
//! namespaces of a lab of the test's own when root, else on loopback. No figure is compared
//! with a speed: the tests pin down what is counted and how it adds up.

mod common;

use std::ffi::OsStr;

use common::{Hosts, Run, Server, assert_failed_cleanly, json_report, temp_dir};
use serde_json::Value;

/// Runs `net SERVER EXTRA... -J` against a server of its own (in a lab when possible) and
/// returns the report, after the checks every report must pass.
fn net_json(hosts: &Hosts, extra: &[&str]) -> Value {
    let root = temp_dir();
    let server = hosts.serve(root.path(), &[]);
    let report = json_report(&net(&server, extra, true));
    assert_eq!(report["schema"], 1, "{report:#}");
    assert_eq!(report["command"], "net", "{report:#}");
    assert_eq!(report["server"], server.addr.as_str(), "{report:#}");
    assert_eq!(report["path"], "tcp", "{report:#}");
    for side in ["local", "remote"] {
        let cpu = &report["cpu"][side];
        for field in ["user_secs", "system_secs", "percent"] {
            assert!(
                cpu[field].as_f64().is_some_and(|v| v >= 0.0),
                "cpu.{side}.{field}: {report:#}"
            );
        }
    }
    let loopback_warned = report["warnings"]
        .as_array()
        .expect("a warnings array")
        .iter()
        .any(|w| w["kind"] == "loopback");
    assert_eq!(loopback_warned, hosts.lab().is_none(), "{report:#}");
    report
}

fn net(server: &Server, extra: &[&str], json: bool) -> Run {
    let mut args: Vec<&OsStr> = vec!["net".as_ref(), server.addr.as_ref()];
    args.extend(extra.iter().map(OsStr::new));
    if json {
        args.push("-J".as_ref());
    }
    server.run(&args)
}

fn directions(report: &Value) -> Vec<&str> {
    report["directions"]
        .as_array()
        .expect("a directions array")
        .iter()
        .map(|d| d["direction"].as_str().expect("a direction name"))
        .collect()
}

fn direction<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["directions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["direction"] == name)
        .unwrap_or_else(|| panic!("no {name} direction: {report:#}"))
}

fn u64_of(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("not a count: {value}"))
}

fn f64_of(value: &Value) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("not a number: {value}"))
}

/// Figures that must hold for any direction of any run: both ends counted bytes, the receiver
/// no more than was sent, rates are bytes over seconds, streams add up to the direction.
fn assert_plausible(dir: &Value, streams: usize) {
    let sender = &dir["sender"];
    let receiver = &dir["receiver"];
    assert_eq!(sender["stage"], "net_send", "{dir:#}");
    assert_eq!(receiver["stage"], "net_receive", "{dir:#}");
    let sent = u64_of(&sender["bytes"]);
    let received = u64_of(&receiver["bytes"]);
    assert!(received > 0, "nothing received: {dir:#}");
    assert!(
        received <= sent,
        "received {received} bytes, more than the {sent} sent: {dir:#}"
    );
    for m in [sender, receiver] {
        let bytes = f64_of(&m["bytes"]);
        let secs = f64_of(&m["secs"]);
        let rate = f64_of(&m["bytes_per_sec"]);
        assert!(secs > 0.0, "{dir:#}");
        assert!(
            (rate - bytes / secs).abs() <= 1e-6 * rate,
            "bytes_per_sec {rate} is not bytes / secs = {}: {dir:#}",
            bytes / secs
        );
        assert_eq!(m["conditions"]["path"], "tcp", "{dir:#}");
        assert_eq!(m["conditions"]["streams"], streams, "{dir:#}");
    }
    let stream_reports = dir["streams"].as_array().expect("a streams array");
    assert_eq!(stream_reports.len(), streams, "{dir:#}");
    let ids: Vec<u64> = stream_reports.iter().map(|s| u64_of(&s["id"])).collect();
    assert_eq!(ids, (1..=streams as u64).collect::<Vec<_>>(), "{dir:#}");
    let sum = |field: &str| -> u64 { stream_reports.iter().map(|s| u64_of(&s[field])).sum() };
    assert_eq!(sum("sender_bytes"), sent, "streams do not add up: {dir:#}");
    assert_eq!(
        sum("receiver_bytes"),
        received,
        "streams do not add up: {dir:#}"
    );
    for stream in stream_reports {
        assert!(
            u64_of(&stream["receiver_bytes"]) <= u64_of(&stream["sender_bytes"]),
            "a stream received more than was sent: {dir:#}"
        );
    }
}

#[test]
fn net_upload_reports_plausible_figures_for_one_stream() {
    let report = net_json(&Hosts::two(), &["-t", "1"]);
    assert_eq!(directions(&report), ["upload"]);
    assert_eq!(report["streams"], 1, "{report:#}");
    assert_eq!(report["secs"], 1.0, "{report:#}");
    assert_eq!(report["len"], 128 * 1024, "{report:#}");
    assert_eq!(report["window"], Value::Null, "{report:#}");
    assert_plausible(direction(&report, "upload"), 1);
}

#[test]
fn net_with_three_streams_reports_three_streams_that_add_up() {
    let report = net_json(&Hosts::two(), &["-t", "1", "-P", "3"]);
    assert_eq!(report["streams"], 3, "{report:#}");
    assert_plausible(direction(&report, "upload"), 3);
}

#[test]
fn net_reverse_reports_only_a_download() {
    let report = net_json(&Hosts::two(), &["-t", "1", "-R"]);
    assert_eq!(directions(&report), ["download"]);
    assert_plausible(direction(&report, "download"), 1);
}

#[test]
fn net_bidir_reports_an_upload_and_a_download() {
    let report = net_json(&Hosts::two(), &["-t", "1", "--bidir", "-P", "2"]);
    let mut names = directions(&report);
    names.sort();
    assert_eq!(names, ["download", "upload"]);
    assert_plausible(direction(&report, "upload"), 2);
    assert_plausible(direction(&report, "download"), 2);
}

#[test]
fn net_reports_an_interval_every_half_second_per_stream() {
    let report = net_json(&Hosts::two(), &["-t", "2", "-i", "0.5", "-P", "2"]);
    let upload = direction(&report, "upload");
    for stream in upload["streams"].as_array().unwrap() {
        let intervals = stream["intervals"].as_array().unwrap();
        // Four of 0.5 s, maybe a sliver at the end.
        assert!(
            (3..=5).contains(&intervals.len()),
            "{} intervals: {stream:#}",
            intervals.len()
        );
        let mut next_start = 0.0;
        for (n, interval) in intervals.iter().enumerate() {
            let start = f64_of(&interval["start_secs"]);
            let secs = f64_of(&interval["secs"]);
            assert!(
                (start - next_start).abs() < 1e-6,
                "intervals are not back to back: {stream:#}"
            );
            // The last one may be a sliver, or have the sliver folded in.
            if n + 1 < intervals.len() {
                assert!((secs - 0.5).abs() < 1e-6, "{stream:#}");
            } else {
                assert!(secs > 0.0 && secs < 0.75, "{stream:#}");
            }
            next_start = start + secs;
        }
        // The client sends the upload: its intervals count what it sent.
        let counted: u64 = intervals.iter().map(|i| u64_of(&i["bytes"])).sum();
        assert_eq!(counted, u64_of(&stream["sender_bytes"]), "{stream:#}");
    }
}

#[test]
fn net_omit_leaves_the_first_seconds_out_of_the_counted_time() {
    let report = net_json(&Hosts::two(), &["-t", "1", "-O", "1"]);
    assert_eq!(report["omit_secs"], 1.0, "{report:#}");
    assert_eq!(report["secs"], 1.0, "{report:#}");
    let upload = direction(&report, "upload");
    for side in ["sender", "receiver"] {
        // Counted from the end of the omitted second: about 1 s, not the 2 s the test ran.
        let secs = f64_of(&upload[side]["secs"]);
        assert!(
            (0.9..1.8).contains(&secs),
            "{side} counted {secs} s of a 1 s test after 1 s omitted: {report:#}"
        );
        let first = &upload[side]["intervals"][0];
        assert_eq!(f64_of(&first["start_secs"]), 0.0, "{report:#}");
    }
    // The receiver's cut is aligned to the sender's, so it never counts more than was sent.
    assert_plausible(upload, 1);
}

#[test]
fn net_reverse_with_omit_never_receives_more_than_was_sent() {
    let report = net_json(&Hosts::two(), &["-t", "1", "-O", "1", "-R", "-P", "2"]);
    assert_plausible(direction(&report, "download"), 2);
}

#[test]
fn net_on_loopback_warns_that_the_figure_is_not_a_networks() {
    // net_json checks the warning is there on loopback (and absent between namespaces).
    let report = net_json(&Hosts::loopback(), &["-t", "1"]);
    assert_plausible(direction(&report, "upload"), 1);
}

#[test]
fn net_text_output_has_interval_lines_per_stream_and_a_summary() {
    let hosts = Hosts::two();
    let root = temp_dir();
    let server = hosts.serve(root.path(), &[]);
    let out = net(&server, &["-t", "1", "-i", "0.5", "-P", "2"], false);
    common::assert_success(out.code, &out.stdout, &out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    for id in ["[  1]", "[  2]", "[SUM]"] {
        let count = lines.iter().filter(|line| line.starts_with(id)).count();
        assert!(
            (2..=3).contains(&count),
            "{count} lines of {id}:\n{}",
            out.stdout
        );
    }
    assert!(
        lines
            .iter()
            .any(|line| line.trim_start().starts_with("sender"))
            && lines
                .iter()
                .any(|line| line.trim_start().starts_with("receiver")),
        "no sender/receiver summary:\n{}",
        out.stdout
    );
}

// ---- Bad input and faults ----

#[test]
fn net_to_an_unknown_host_fails_cleanly() {
    // .invalid never resolves (RFC 6761): the lookup fails locally, nothing is sent.
    let out = common::run_command(common::command([
        "-q",
        "net",
        "no-such-host.invalid",
        "-t",
        "1",
    ]));
    assert_failed_cleanly(&out);
    assert!(
        out.stderr.contains("no-such-host.invalid"),
        "{}",
        out.stderr
    );
}

#[test]
fn net_to_a_port_nothing_listens_on_fails_cleanly() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let out = common::run_command(common::command(["-q", "net", &addr, "-t", "1"]));
    assert_failed_cleanly(&out);
    assert!(
        out.stderr.contains(&addr) && out.stderr.contains("refused"),
        "{}",
        out.stderr
    );
}

#[test]
fn net_with_a_wrong_token_is_refused_and_the_server_keeps_serving() {
    let hosts = Hosts::two();
    let root = temp_dir();
    let server = hosts.serve(root.path(), &[]);
    let out = common::run_command(server.client(&[
        "net".as_ref(),
        server.addr.as_ref(),
        "-t".as_ref(),
        "1".as_ref(),
        "--token".as_ref(),
        "not-the-token".as_ref(),
    ]));
    assert_failed_cleanly(&out);
    assert!(
        out.stderr.contains(&server.addr) && out.stderr.contains("wrong token"),
        "{}",
        out.stderr
    );
    server.assert_serves();
}

#[test]
fn net_rejects_zero_and_too_many_streams_as_usage_errors() {
    for streams in ["0", "129", "10000"] {
        // Rejected before any connection: the address is never dialled.
        let out = common::run_command(common::command(["net", "127.0.0.1:9", "-P", streams]));
        assert_eq!(out.code, 2, "-P {streams}: {out:?}");
        assert!(
            out.stderr.starts_with("error: ") && out.stderr.contains("--parallel"),
            "-P {streams}: {}",
            out.stderr
        );
    }
}
