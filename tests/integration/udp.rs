//! `xferbench net --via udp` and `lat --via udp`: datagrams through serve's UDP port. Server
//! and client run in two network namespaces of the test's own when root, else on loopback.
//! No figure is compared with a speed: the tests pin down what is counted, how it adds up, and
//! how the faults end.

use std::ffi::OsStr;
use std::time::{Duration, Instant};

use crate::common::{
    Hosts, Run, Server, assert_failed_cleanly, count, has_warning, json_report, number, temp_dir,
};
use serde_json::Value;

/// `COMMAND SERVER --via udp EXTRA...`, as the server's clients run.
fn udp_args<'a>(server: &'a Server, command: &'a str, extra: &'a [&'a str]) -> Vec<&'a OsStr> {
    let mut args: Vec<&OsStr> = [command, server.addr.as_str(), "--via", "udp"]
        .into_iter()
        .map(OsStr::new)
        .collect();
    args.extend(extra.iter().map(OsStr::new));
    args
}

fn client(server: &Server, command: &str, extra: &[&str]) -> Run {
    server.run(&udp_args(server, command, extra))
}

fn spawn(server: &Server, command: &str, extra: &[&str]) -> crate::common::Background {
    server.spawn(&udp_args(server, command, extra))
}

fn udp_net(server: &Server, extra: &[&str]) -> Value {
    let mut args = vec!["-J"];
    args.extend_from_slice(extra);
    let report = json_report(&client(server, "net", &args));
    assert_eq!(report["command"], "net", "{report:#}");
    assert_eq!(report["path"], "udp", "{report:#}");
    report
}

/// The one direction of a UDP report, after the checks every one must pass: every datagram
/// sent was received or lost, bytes are datagrams times their length, the receiver's intervals
/// add up to its total.
fn checked_direction<'a>(report: &'a Value, name: &str) -> &'a Value {
    let directions = report["directions"].as_array().expect("directions");
    assert_eq!(directions.len(), 1, "{report:#}");
    let direction = &directions[0];
    assert_eq!(direction["direction"], name, "{report:#}");
    let d = &direction["datagrams"];
    let len = count(&d["len"]);
    assert_eq!(count(&report["len"]), len, "{report:#}");
    let (sent, received, lost) = (count(&d["sent"]), count(&d["received"]), count(&d["lost"]));
    assert!(sent > 0, "{report:#}");
    assert!(received <= sent, "{report:#}");
    assert_eq!(received + lost, sent, "{report:#}");
    let loss = number(&d["loss_percent"]);
    assert!(
        (loss - lost as f64 * 100.0 / sent as f64).abs() < 1e-9,
        "{report:#}"
    );
    assert_eq!(
        count(&direction["sender"]["bytes"]),
        sent * len,
        "{report:#}"
    );
    assert_eq!(
        count(&direction["receiver"]["bytes"]),
        received * len,
        "{report:#}"
    );
    let intervals = d["intervals"].as_array().expect("intervals");
    assert!(!intervals.is_empty(), "{report:#}");
    let summed: u64 = intervals.iter().map(|i| count(&i["datagrams"])).sum();
    assert_eq!(summed, received, "{report:#}");
    // Late arrivals are counted back into the interval they belong to: losses and expected
    // datagrams add up to the totals.
    let summed_lost: u64 = intervals.iter().map(|i| count(&i["lost"])).sum();
    assert_eq!(summed_lost, lost, "{report:#}");
    let summed_expected: u64 = intervals.iter().map(|i| count(&i["expected"])).sum();
    assert_eq!(summed_expected, sent, "{report:#}");
    assert!(number(&d["jitter_us"]) >= 0.0, "{report:#}");
    assert_eq!(
        direction["receiver"]["conditions"]["path"], "udp",
        "{report:#}"
    );
    direction
}

#[test]
fn an_upload_counts_every_datagram_as_received_or_lost_and_holds_to_the_rate() {
    let _turn = crate::common::rates_lock();
    let server = Hosts::two().served(&[]);
    let report = udp_net(&server, &["-t", "2", "-b", "200M"]);
    let direction = checked_direction(&report, "upload");
    let d = &direction["datagrams"];
    assert_eq!(number(&d["paced_bits_per_sec"]), 200e6, "{report:#}");
    assert_eq!(count(&d["foreign"]), 0, "{report:#}");
    // Held to the rate: never above it (a batch of slack), and not far below on an idle path.
    let sent_bits = count(&direction["sender"]["bytes"]) as f64 * 8.0;
    let allowed = 200e6 * 2.0 + 64.0 * count(&d["len"]) as f64 * 8.0;
    assert!(sent_bits <= allowed, "{sent_bits} bits sent: {report:#}");
    assert!(
        sent_bits >= 0.5 * 200e6 * 2.0,
        "{sent_bits} bits sent: {report:#}"
    );
    // Loopback's MTU is 65536: the default datagram is the largest UDP payload.
    let expected_len = if server.hosts.lab().is_some() {
        1472
    } else {
        65507
    };
    assert_eq!(count(&d["len"]), expected_len, "{report:#}");
    assert_eq!(
        has_warning(&report, "loopback"),
        server.hosts.lab().is_none(),
        "{report:#}"
    );
}

#[test]
fn a_download_is_counted_by_the_client() {
    let server = Hosts::two().served(&[]);
    let report = udp_net(&server, &["-t", "1", "-R", "-l", "1000", "-b", "100M"]);
    let direction = checked_direction(&report, "download");
    assert_eq!(count(&direction["datagrams"]["len"]), 1000, "{report:#}");
    let text = client(&server, "net", &["-t", "1", "-R", "-b", "50M"]);
    assert_eq!(text.code, 0, "{}{}", text.stdout, text.stderr);
    assert!(
        text.stdout.contains("download (server → client), udp"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("held to 50.0 Mb/s by -b"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("lost"), "{}", text.stdout);
}

#[test]
fn the_default_datagram_fills_a_jumbo_frame() {
    let Some(server) = Hosts::with(&["--mtu", "9000"])
        .served_in_lab(&[], "skipped: needs root for a lab with MTU 9000")
    else {
        return;
    };
    let report = udp_net(&server, &["-t", "1", "-b", "100M"]);
    let direction = checked_direction(&report, "upload");
    assert_eq!(count(&direction["datagrams"]["len"]), 8972, "{report:#}");
    assert_eq!(
        count(&direction["receiver"]["conditions"]["mtu"]),
        9000,
        "{report:#}"
    );
}

#[test]
fn a_rate_beyond_the_link_ends_on_time_and_reports_the_loss() {
    let _turn = crate::common::rates_lock();
    let Some(server) =
        Hosts::shaped("50mbit").served_in_lab(&[], "skipped: needs root for a shaped lab link")
    else {
        return;
    };
    let started = Instant::now();
    let report = udp_net(&server, &["-t", "2", "-b", "500M"]);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    let direction = checked_direction(&report, "upload");
    let loss = number(&direction["datagrams"]["loss_percent"]);
    assert!(
        loss > 50.0,
        "a 50 Mb/s link took {loss}% less than 500 Mb/s: {report:#}"
    );
}

#[test]
fn bad_lengths_rates_and_shapes_get_one_line() {
    // Nothing listens on port 1: each is refused before any connection.
    for args in [
        &["net", "127.0.0.1:1", "--via", "udp", "-l", "65508"][..],
        &["net", "127.0.0.1:1", "--via", "udp", "-l", "31"],
        &["net", "127.0.0.1:1", "--via", "udp", "-b", "0"],
        &["net", "127.0.0.1:1", "-b", "1G"],
        &["net", "127.0.0.1:1", "--via", "udp", "-b", "1G", "--max"],
        &["net", "127.0.0.1:1", "--via", "udp", "-P", "2"],
        &["net", "127.0.0.1:1", "--via", "udp", "--bidir"],
        &["lat", "127.0.0.1:1", "--via", "udp", "-s", "65508"],
        &["copy", "Cargo.toml", "127.0.0.1:1:x", "--via", "udp"],
    ] {
        let out = crate::common::run(args.iter().map(OsStr::new));
        // Usage errors, clap's own or found after parsing: exit 2, one error line.
        assert_eq!(out.0, 2, "{args:?}: {}", out.2);
        assert!(out.2.starts_with("error: "), "{args:?}: {}", out.2);
        assert!(!out.2.contains("panicked"), "{args:?}: {}", out.2);
    }
    let too_long = crate::common::run(["net", "127.0.0.1:1", "--via", "udp", "-l", "65508"]);
    assert!(too_long.2.contains("65507"), "{}", too_long.2);
    let zero = crate::common::run(["net", "127.0.0.1:1", "--via", "udp", "-b", "0"]);
    assert!(zero.2.contains("--max"), "{}", zero.2);
}

#[test]
fn the_sender_stops_within_seconds_when_the_server_dies() {
    let mut server = Hosts::two().served(&[]);
    let sender = spawn(&server, "net", &["-t", "60", "-b", "50M"]);
    std::thread::sleep(Duration::from_millis(1500));
    server.signal(libc::SIGKILL);
    server.wait_exit(Duration::from_secs(5));
    let killed = Instant::now();
    let out = sender.finish(Duration::from_secs(10));
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "took {:?}",
        killed.elapsed()
    );
    assert_failed_cleanly(&out);
    assert!(
        out.stderr.contains(&server.addr) || out.stderr.contains("port unreachable"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_client_gone_mid_download_frees_the_port_for_the_next_test() {
    let server = Hosts::two().served(&[]);
    let mut receiver = spawn(&server, "net", &["-t", "60", "-R", "-b", "50M"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(receiver.running(), "the download ended early");
    crate::common::send_signal(receiver.pid(), libc::SIGKILL);
    drop(receiver);
    // The server notices within its 50 ms checks; the next test gets the port.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = client(&server, "net", &["-t", "1", "-b", "10M", "-J"]);
        if out.code == 0 {
            break;
        }
        assert!(out.stderr.contains("busy"), "{}", out.stderr);
        assert!(
            Instant::now() < deadline,
            "the port stayed busy: {}",
            out.stderr
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_second_udp_test_is_told_the_port_is_busy() {
    let server = Hosts::two().served(&[]);
    let first = spawn(&server, "net", &["-t", "4", "-b", "10M"]);
    std::thread::sleep(Duration::from_millis(1000));
    let second = client(&server, "net", &["-t", "1"]);
    assert_failed_cleanly(&second);
    assert!(second.stderr.contains("busy"), "{}", second.stderr);
    let first = first.finish(Duration::from_secs(30));
    assert_eq!(first.code, 0, "{}", first.stderr);
}

#[test]
fn datagrams_from_other_senders_are_ignored_and_counted() {
    // Loopback: the test itself is the other sender.
    let server = Hosts::loopback().served(&[]);
    let test = spawn(
        &server,
        "net",
        &["-t", "3", "-b", "20M", "-l", "1000", "-J"],
    );
    std::thread::sleep(Duration::from_millis(1000));
    let stranger = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = ("127.0.0.1", server.port);
    let mut forged = vec![0u8; 1000];
    forged[..4].copy_from_slice(b"xfbu");
    for n in 0..300 {
        // Junk, and datagrams that look like ours with a wrong key.
        let datagram: &[u8] = if n % 2 == 0 {
            b"not a datagram of yours"
        } else {
            &forged
        };
        stranger.send_to(datagram, port).unwrap();
    }
    let out = test.finish(Duration::from_secs(30));
    let report = json_report(&out);
    let direction = checked_direction(&report, "upload");
    let foreign = count(&direction["datagrams"]["foreign"]);
    assert!(foreign >= 300, "{foreign} foreign: {report:#}");
    assert!(has_warning(&report, "foreign_datagrams"), "{report:#}");
}

#[test]
fn lat_over_udp_times_every_round_trip() {
    let server = Hosts::two().served(&[]);
    let out = client(&server, "lat", &["-n", "500", "-s", "100", "-J"]);
    let report = json_report(&out);
    assert_eq!(report["path"], "udp", "{report:#}");
    assert_eq!(count(&report["size"]), 100, "{report:#}");
    let latency = &report["latency"];
    let lost = report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["kind"] == "lost_round_trips")
        .map_or(0, |w| count(&w["lost"]));
    assert_eq!(count(&latency["samples"]) + lost, 500, "{report:#}");
    crate::common::assert_latency_ordered(latency);
    // -t: round trips for a second instead of a count.
    let timed = json_report(&client(&server, "lat", &["-t", "1", "-J"]));
    let samples = count(&timed["latency"]["samples"]);
    assert!(samples > 0 && samples != 1000, "{timed:#}");
}

#[test]
fn a_server_without_its_udp_port_says_so_and_still_serves_tcp() {
    // serve's UDP port (the number of its TCP port) is held here.
    let root = temp_dir();
    let (mut serve, holder, listen) = crate::common::serve_without_udp(root.path());
    let started = Instant::now();
    let mut tcp = crate::common::run(["net", &listen, "-t", "1", "-J"]);
    while tcp.0 != 0 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
        tcp = crate::common::run(["net", &listen, "-t", "1", "-J"]);
    }
    assert_eq!(tcp.0, 0, "{}", tcp.2);
    let udp = crate::common::run(["net", &listen, "--via", "udp", "-t", "1"]);
    assert_eq!(udp.0, 1, "{}", udp.2);
    assert!(udp.2.contains("could not open UDP port"), "{}", udp.2);
    assert!(serve.running());
    // The operator was told too, in serve's log.
    crate::common::send_signal(serve.pid(), libc::SIGTERM);
    let stopped = serve.finish(Duration::from_secs(10));
    assert!(stopped.stdout.contains("no UDP: "), "{}", stopped.stdout);
    drop(holder);
}

#[test]
fn datagrams_larger_than_the_path_mtu_carries_are_warned_about() {
    let Some(server) = Hosts::two().served_in_lab(
        &[],
        "skipped: needs root for a lab link of MTU 1500 (loopback carries 65507)",
    ) else {
        return;
    };
    let report = udp_net(&server, &["-t", "1", "-b", "50M", "-l", "8000"]);
    checked_direction(&report, "upload");
    assert!(has_warning(&report, "fragmented_datagrams"), "{report:#}");
    let fitting = udp_net(&server, &["-t", "1", "-b", "50M", "-l", "1472"]);
    assert!(
        !has_warning(&fitting, "fragmented_datagrams"),
        "{fitting:#}"
    );
}

#[test]
fn a_test_where_no_datagram_arrived_fails_with_the_likely_causes() {
    let hosts = Hosts::two();
    let Some(lab) =
        hosts.lab_or_skip("skipped: needs root for a lab whose server drops IP fragments")
    else {
        return;
    };
    // The server's host drops every later IP fragment before reassembly (raw PREROUTING; INPUT
    // sees reassembled datagrams): the small opening datagrams pass, the 8000-byte ones never
    // arrive whole.
    let dropped = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.server_ns(), "iptables", "-t", "raw"])
        .args(["-A", "PREROUTING", "-f", "-j", "DROP"])
        .status()
        .is_ok_and(|status| status.success());
    if !dropped {
        eprintln!("skipped: iptables cannot drop fragments here");
        return;
    }
    let root = temp_dir();
    let server = hosts.serve(root.path(), &[]);
    let out = client(&server, "net", &["-t", "1", "-b", "50M", "-l", "8000"]);
    assert_failed_cleanly(&out);
    assert!(out.stderr.contains("none of the"), "{}", out.stderr);
    assert!(
        out.stderr.contains("in fragments") && out.stderr.contains("-l 1472"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("kB/s"), "{}", out.stdout);
}
