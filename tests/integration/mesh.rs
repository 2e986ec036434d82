//! A serve measuring toward another serve when its coordinator asks (`measure_to`): two real
//! serves on loopback, each with a token of its own, and a coordinator that is the crate's own
//! control client; then `xferbench mesh` itself over three or four such serves.

use std::time::Duration;

use xferbench::control::{Client, MeasureToRequest, MeasuredTo, PeerTest};
use xferbench::measure::{Direction, TransportKind, Workload};
use xferbench::transport::{Peer, serve_client};

use std::ffi::OsStr;

use crate::common::{
    Hosts, Run, Served, assert_empty_dir, assert_usage_error, command, json_report, run_command,
    send_signal, spawn_here, temp_dir, wait_until,
};

const TOKEN_A: &str = "token-of-serve-a";
const TOKEN_B: &str = "token-of-serve-b";

/// Serve A (asked) and serve B (its peer), each on a scratch root with its own token.
fn two_serves() -> (Served, Served) {
    let a = Hosts::loopback().served(&["--token", TOKEN_A]);
    let b = Hosts::loopback().served(&["--token", TOKEN_B]);
    (a, b)
}

/// The coordinator's client of `server`, holding `token`.
fn coordinator(server: &Served, token: Option<&str>) -> Client {
    client_of(&server.addr, token)
}

/// A control client of the serve at `addr`, holding `token`.
fn client_of(addr: &str, token: Option<&str>) -> Client {
    serve_client(Peer::parse(addr).unwrap(), token.map(str::to_string)).unwrap()
}

/// Asks A, with A's token, to run `test` toward B, holding B's `token`.
fn ask(a: &Served, b: &Served, token: Option<&str>, test: PeerTest) -> anyhow::Result<MeasuredTo> {
    coordinator(a, Some(TOKEN_A)).measure_to(MeasureToRequest {
        peer: b.addr.clone(),
        token: token.map(str::to_string),
        test,
    })
}

fn net(via: TransportKind, streams: u32, direction: Direction) -> PeerTest {
    PeerTest::Net {
        via,
        streams,
        secs: 1.0,
        len: None,
        direction,
    }
}

/// Asserts the sender's then the receiver's figure of a net test moved bytes in time.
fn assert_net_figures(measured: &MeasuredTo) {
    let workloads: Vec<Workload> = measured.measurements.iter().map(|m| m.workload).collect();
    assert_eq!(
        workloads,
        vec![Workload::NetSend, Workload::NetReceive],
        "{measured:?}"
    );
    for m in &measured.measurements {
        assert!(
            m.bytes > 0 && m.secs > 0.0 && m.bytes_per_sec > 0.0,
            "{m:?}"
        );
    }
}

#[test]
fn a_serve_measures_net_over_tcp_toward_another_serve_when_its_coordinator_asks() {
    let (mut a, b) = two_serves();
    let measured = ask(
        &a,
        &b,
        Some(TOKEN_B),
        net(TransportKind::Tcp, 2, Direction::Upload),
    )
    .unwrap();
    assert_eq!(measured.peer, b.addr);
    assert_eq!(measured.path, TransportKind::Tcp);
    assert_net_figures(&measured);
    assert_eq!(measured.measurements[1].conditions.streams, Some(2));
    assert!(measured.peer_cpu.is_some(), "{measured:?}");
    let line = a
        .wait_for_line("measure net", Duration::from_secs(5))
        .expect("a log line for the peer test");
    assert!(line.contains(&b.addr) && line.contains("done in"), "{line}");
}

#[test]
fn a_serve_measures_net_over_udp_from_its_peer_when_asked_for_the_download() {
    let (a, b) = two_serves();
    let measured = ask(
        &a,
        &b,
        Some(TOKEN_B),
        net(TransportKind::Udp, 1, Direction::Download),
    )
    .unwrap();
    assert_eq!(measured.path, TransportKind::Udp);
    assert_net_figures(&measured);
    let datagrams = measured.datagrams.expect("a UDP test's losses");
    assert!(datagrams.sent > 0, "{datagrams:?}");
}

#[test]
fn a_serve_measures_latency_toward_another_serve() {
    let (a, b) = two_serves();
    let measured = ask(
        &a,
        &b,
        Some(TOKEN_B),
        PeerTest::Lat {
            via: TransportKind::Tcp,
            size: 8,
            secs: 0.5,
        },
    )
    .unwrap();
    let latency = measured.latency.as_ref().expect("round trips");
    assert!(latency.samples > 0 && latency.min_us > 0.0, "{latency:?}");
    assert!(measured.measurements.is_empty(), "{measured:?}");
}

#[test]
fn a_peer_copy_lands_its_figure_and_leaves_no_file_in_either_root() {
    let (a, b) = two_serves();
    let measured = ask(
        &a,
        &b,
        Some(TOKEN_B),
        PeerTest::Copy {
            size: 8 << 20,
            streams: 2,
        },
    )
    .unwrap();
    assert_eq!(measured.measurements.len(), 1, "{measured:?}");
    let copy = &measured.measurements[0];
    assert_eq!(copy.workload, Workload::Copy);
    assert_eq!(copy.bytes, 8 << 20);
    assert!(copy.secs > 0.0, "{copy:?}");
    assert_empty_dir(&a.root);
    assert_empty_dir(&b.root);
}

#[test]
fn a_wrong_token_at_the_peer_is_an_error_naming_the_peer() {
    let (a, b) = two_serves();
    let err = ask(
        &a,
        &b,
        Some("not-b-s-token"),
        net(TransportKind::Tcp, 1, Direction::Upload),
    )
    .unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains(&b.addr) && message.contains("wrong token"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");
    a.assert_serves();
}

#[test]
fn a_peer_test_without_the_asked_serves_token_is_refused_and_reaches_no_peer() {
    let (a, mut b) = two_serves();
    let err = coordinator(&a, None)
        .measure_to(MeasureToRequest {
            peer: b.addr.clone(),
            token: Some(TOKEN_B.into()),
            test: net(TransportKind::Tcp, 1, Direction::Upload),
        })
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("missing token"), "{message}");
    assert!(
        b.wait_for_line("", Duration::from_millis(500)).is_none(),
        "the peer heard from it: {:?}",
        b.log()
    );
}

#[test]
fn an_unreachable_peer_is_an_error_naming_it() {
    let (a, _b) = two_serves();
    // Port 1 on loopback: nothing listens there.
    let err = coordinator(&a, Some(TOKEN_A))
        .measure_to(MeasureToRequest {
            peer: "127.0.0.1:1".into(),
            token: None,
            test: net(TransportKind::Tcp, 1, Direction::Upload),
        })
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("cannot connect to 127.0.0.1:1"),
        "{message}"
    );
    a.assert_serves();
}

#[test]
fn a_peer_test_holds_one_of_the_asked_serves_client_slots_until_it_ends() {
    let a = Hosts::loopback().served(&["--token", TOKEN_A, "--max-clients", "1"]);
    let b = Hosts::loopback().served(&["--token", TOKEN_B]);
    let (a_addr, b_addr) = (a.addr.clone(), b.addr.clone());
    let test = std::thread::spawn(move || {
        let request = MeasureToRequest {
            peer: b_addr,
            token: Some(TOKEN_B.into()),
            test: PeerTest::Net {
                via: TransportKind::Tcp,
                streams: 1,
                secs: 3.0,
                len: None,
                direction: Direction::Upload,
            },
        };
        let client = client_of(&a_addr, Some(TOKEN_A));
        // The probe below may hold the one slot for a moment first: then ask again.
        let mut measured = client.measure_to(request.clone());
        for _ in 0..100 {
            match &measured {
                Err(err) if format!("{err:#}").contains("busy") => {
                    std::thread::sleep(Duration::from_millis(20));
                    measured = client.measure_to(request.clone());
                }
                _ => break,
            }
        }
        measured
    });
    // A request that holds a slot only for a moment, until one finds the slot taken.
    let other = coordinator(&a, Some(TOKEN_A));
    let busy = wait_until(Duration::from_secs(10), || {
        other
            .remove_remote("nothing-here")
            .is_err_and(|err| format!("{err:#}").contains("busy"))
    });
    assert!(busy, "a second client was served during the peer test");
    let measured = test.join().unwrap().unwrap();
    assert_net_figures(&measured);
    assert!(!other.remove_remote("nothing-here").unwrap());
}

// ---- `xferbench mesh` ----

/// `n` serves on loopback, the i-th with token `mesh-token-i`.
fn serves(n: usize) -> Vec<Served> {
    (0..n)
        .map(|i| Hosts::loopback().served(&["--token", &format!("mesh-token-{i}")]))
        .collect()
}

/// A hosts file naming each serve with its own token.
fn hosts_file(serves: &[Served]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = temp_dir();
    let path = dir.path().join("hosts");
    let mut text = String::from("# the serves of this test\n\n");
    for (i, served) in serves.iter().enumerate() {
        text.push_str(&format!("{}  mesh-token-{i}\n", served.addr));
    }
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// `xferbench -q mesh --hosts-file FILE ARGS...`.
fn mesh(file: &std::path::Path, args: &[&str]) -> Run {
    let mut all: Vec<&OsStr> = vec![
        OsStr::new("-q"),
        OsStr::new("mesh"),
        OsStr::new("--hosts-file"),
    ];
    all.push(file.as_os_str());
    all.extend(args.iter().map(OsStr::new));
    run_command(command(all))
}

/// A JSON mesh's tests as (from, to, start, end).
fn intervals(report: &serde_json::Value) -> Vec<(String, String, f64, f64)> {
    report["tests"]
        .as_array()
        .expect("a tests array")
        .iter()
        .map(|t| {
            (
                t["from"].as_str().unwrap().to_string(),
                t["to"].as_str().unwrap().to_string(),
                t["start"].as_f64().unwrap(),
                t["end"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn overlap(a: &(String, String, f64, f64), b: &(String, String, f64, f64)) -> bool {
    a.2 < b.3 && b.2 < a.3
}

/// Fails when two tests with a host in common ran at the same time (by their JSON start and end).
pub(crate) fn assert_no_host_in_two_tests_at_once(report: &serde_json::Value) {
    let intervals = intervals(report);
    for (i, a) in intervals.iter().enumerate() {
        for b in &intervals[i + 1..] {
            let shared = [&a.0, &a.1]
                .iter()
                .any(|host| *host == &b.0 || *host == &b.1);
            assert!(!(shared && overlap(a, b)), "{a:?} and {b:?} ran together");
        }
    }
}

/// The receiver's bytes of a measured net test.
pub(crate) fn received_bytes(test: &serde_json::Value) -> u64 {
    let measurements = test["measured"]["measurements"]
        .as_array()
        .unwrap_or_else(|| panic!("no figures: {test:#}"));
    measurements
        .iter()
        .find(|m| m["stage"] == "net_receive")
        .and_then(|m| m["bytes"].as_u64())
        .unwrap_or_else(|| panic!("no receiver's figure: {test:#}"))
}

/// The receiver's bytes per second of a measured net test.
fn received_bytes_per_sec(test: &serde_json::Value) -> f64 {
    test["measured"]["measurements"]
        .as_array()
        .and_then(|all| all.iter().find(|m| m["stage"] == "net_receive"))
        .and_then(|m| m["bytes_per_sec"].as_f64())
        .unwrap_or_else(|| panic!("no receiver's figure: {test:#}"))
}

#[test]
fn mesh_measures_every_ordered_pair_and_never_puts_a_host_in_two_tests_at_once() {
    let serves = serves(4);
    let (_dir, file) = hosts_file(&serves);
    let report = json_report(&mesh(&file, &["-t", "1", "-J"]));
    assert_eq!(report["command"], "mesh");
    let tests = report["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 12, "{report:#}");
    for from in &serves {
        for to in serves.iter().filter(|to| to.addr != from.addr) {
            let test = tests
                .iter()
                .find(|t| t["from"] == from.addr.as_str() && t["to"] == to.addr.as_str())
                .unwrap_or_else(|| panic!("no test {} -> {}", from.addr, to.addr));
            assert_eq!(test["test"], "net");
            assert!(received_bytes(test) > 0, "{test:#}");
        }
    }
    assert_no_host_in_two_tests_at_once(&report);
    let rounds: std::collections::HashSet<u64> =
        tests.iter().map(|t| t["round"].as_u64().unwrap()).collect();
    assert_eq!(rounds.len(), 6, "4 hosts: 2(n-1) rounds");
}

#[test]
fn mesh_prints_a_matrix_with_a_row_per_sender_and_a_column_per_receiver() {
    let serves = serves(3);
    let (_dir, file) = hosts_file(&serves);
    let out = mesh(&file, &["-t", "0.5"]);
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("from \\ to"))
        .unwrap_or_else(|| panic!("no matrix: {}", out.stdout));
    for (i, served) in serves.iter().enumerate() {
        assert!(lines[header].contains(&served.addr), "{}", out.stdout);
        let row = lines[header + 1 + i];
        assert!(row.starts_with(&served.addr), "{}", out.stdout);
        // Its own column is a dash, the two others a figure in MB/s (Gb/s).
        assert_eq!(
            row.matches(" - ").count() + row.ends_with(" -") as usize,
            1,
            "{row}"
        );
        assert_eq!(
            row.matches(") ").count() + row.ends_with(')') as usize,
            2,
            "{row}"
        );
    }
    assert!(!out.stdout.contains("failed"), "{}", out.stdout);
}

#[test]
fn mesh_serial_runs_one_test_at_a_time_and_writes_its_csv_and_markdown_files() {
    let serves = serves(3);
    let (dir, file) = hosts_file(&serves);
    let (csv, markdown) = (dir.path().join("mesh.csv"), dir.path().join("mesh.md"));
    let report = json_report(&mesh(
        &file,
        &[
            "-t",
            "0.5",
            "--serial",
            "-J",
            "--csv",
            csv.to_str().unwrap(),
            "--markdown",
            markdown.to_str().unwrap(),
        ],
    ));
    let intervals = intervals(&report);
    assert_eq!(intervals.len(), 6);
    for (i, a) in intervals.iter().enumerate() {
        for b in &intervals[i + 1..] {
            assert!(!overlap(a, b), "{a:?} and {b:?} ran together");
        }
    }
    let csv = std::fs::read_to_string(csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "from,to,test,path,round,start,end,bytes,secs,bytes_per_sec,mb_per_sec,gbit_per_sec,retransmits,loss_percent,median_us,p99_us,error"
    );
    assert_eq!(lines.len(), 7, "a header and a row per test: {csv}");
    for (row, (from, to, ..)) in lines[1..].iter().zip(&intervals) {
        assert!(row.starts_with(&format!("{from},{to},net,tcp,")), "{csv}");
        assert!(row.ends_with(','), "no error: {row}");
    }
    let markdown = std::fs::read_to_string(markdown).unwrap();
    assert!(markdown.contains("| from \\ to |"), "{markdown}");
    for served in &serves {
        assert!(
            markdown.contains(&format!("| **{}** |", served.addr)),
            "{markdown}"
        );
    }
}

#[test]
fn mesh_svg_draws_a_heat_map_per_matrix_with_every_host_and_figure_and_marks_the_failed_pairs() {
    let serves = serves(3);
    let dir = temp_dir();
    let file = dir.path().join("hosts");
    // Port 1 on loopback: nothing listens there, so its pairs fail.
    let mut text: String = serves
        .iter()
        .enumerate()
        .map(|(i, served)| format!("{} mesh-token-{i}\n", served.addr))
        .collect();
    text.push_str("127.0.0.1:1 whatever\n");
    std::fs::write(&file, text).unwrap();
    let svg = dir.path().join("mesh.svg");
    let out = mesh(
        &file,
        &[
            "-t",
            "0.5",
            "--what",
            "net,lat",
            "-J",
            "--svg",
            svg.to_str().unwrap(),
        ],
    );
    assert_eq!(
        out.code, 1,
        "the pairs of the host that is down failed: {out:?}"
    );
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let svg = std::fs::read_to_string(&svg).unwrap();
    let document = roxmltree::Document::parse(&svg).expect("well-formed XML");
    assert_eq!(document.root_element().tag_name().name(), "svg");
    let texts: Vec<&str> = document
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or("").trim())
        .collect();
    assert!(
        texts.iter().any(|t| t.starts_with("net over tcp"))
            && texts.iter().any(|t| t.starts_with("lat over tcp")),
        "{texts:?}"
    );
    for host in serves
        .iter()
        .map(|s| s.addr.as_str())
        .chain(["127.0.0.1:1"])
    {
        // A row and a column in each of the two matrices.
        assert_eq!(texts.iter().filter(|t| **t == host).count(), 4, "{texts:?}");
    }
    // Every pair between two serves that are up shows the figure the JSON holds.
    for test in report["tests"].as_array().unwrap() {
        if test["error"].is_string() {
            continue;
        }
        let figure = match test["test"].as_str().unwrap() {
            "net" => format!("{:.2}", received_bytes_per_sec(test) * 8.0 / 1e9),
            _ => format!(
                "{:.1}",
                test["measured"]["latency"]["median_us"].as_f64().unwrap()
            ),
        };
        assert!(
            texts.contains(&figure.as_str()),
            "{figure} of {test:#} in {texts:?}"
        );
    }
    // 6 of each test's 12 pairs have the host that is down at one end.
    let failed = texts.iter().filter(|t| **t == "failed").count();
    assert_eq!(
        failed,
        2 * 6 + 2,
        "a cell each and a legend's swatch each: {texts:?}"
    );
}

#[test]
fn mesh_all_at_once_starts_every_pair_together() {
    let serves = serves(3);
    let (_dir, file) = hosts_file(&serves);
    let report = json_report(&mesh(&file, &["-t", "1", "--all-at-once", "-J"]));
    let intervals = intervals(&report);
    assert_eq!(intervals.len(), 6);
    let last_start = intervals.iter().map(|i| i.2).fold(0.0, f64::max);
    let first_end = intervals.iter().map(|i| i.3).fold(f64::MAX, f64::min);
    assert!(last_start < first_end, "not all together: {intervals:?}");
    for test in report["tests"].as_array().unwrap() {
        assert!(received_bytes(test) > 0, "{test:#}");
    }
}

#[test]
fn mesh_over_tcp_and_udp_measures_each_pair_on_both_paths() {
    let serves = serves(3);
    let (_dir, file) = hosts_file(&serves);
    let report = json_report(&mesh(
        &file,
        &["-t", "0.5", "--ring", "--via", "tcp,udp", "-J"],
    ));
    assert_eq!(report["vias"], serde_json::json!(["tcp", "udp"]));
    let tests = report["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 6, "{report:#}");
    for via in ["tcp", "udp"] {
        let over: Vec<_> = tests.iter().filter(|t| t["via"] == via).collect();
        assert_eq!(over.len(), 3, "{report:#}");
        for test in over {
            assert_eq!(test["measured"]["path"], via, "{test:#}");
            assert!(received_bytes(test) > 0, "{test:#}");
        }
    }
    assert!(
        tests
            .iter()
            .filter(|t| t["via"] == "udp")
            .all(|t| t["measured"]["datagrams"]["sent"].as_u64() > Some(0))
    );
}

#[test]
fn mesh_keeps_measuring_past_a_host_that_is_down_and_one_with_a_wrong_token() {
    let serves = serves(3);
    let dir = temp_dir();
    let file = dir.path().join("hosts");
    // Port 1 on loopback: nothing listens there.
    let text = format!(
        "{} mesh-token-0\n{} mesh-token-1\n{} not-its-token\n127.0.0.1:1 whatever\n",
        serves[0].addr, serves[1].addr, serves[2].addr
    );
    std::fs::write(&file, text).unwrap();
    let out = mesh(&file, &["-t", "0.5", "-J"]);
    assert_eq!(out.code, 1, "{out:?}");
    // The loopback warning, then the one line of the failure.
    let last = out.stderr.lines().last().unwrap_or("");
    assert!(
        last.starts_with("xferbench: 10 of 12 tests failed"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let (good, wrong) = (&serves[0].addr, &serves[2].addr);
    for test in report["tests"].as_array().unwrap() {
        let (from, to) = (test["from"].as_str().unwrap(), test["to"].as_str().unwrap());
        let error = test["error"].as_str();
        match (from, to) {
            // The sender refuses the coordinator before it tries anything.
            (f, _) if f == wrong => {
                let why = error.unwrap_or_else(|| panic!("{test:#}"));
                assert!(
                    why.contains("wrong token") && why.contains(wrong.as_str()),
                    "{why}"
                );
            }
            (f, t) if f == "127.0.0.1:1" || t == "127.0.0.1:1" => {
                let why = error.unwrap_or_else(|| panic!("{test:#}"));
                assert!(why.contains("cannot connect to 127.0.0.1:1"), "{why}");
            }
            (f, t) if f == wrong || t == wrong => {
                let why = error.unwrap_or_else(|| panic!("{test:#}"));
                assert!(
                    why.contains("wrong token") && why.contains(wrong.as_str()),
                    "{why}"
                );
            }
            _ => {
                assert!(error.is_none(), "{test:#}");
                assert!(from == good || to == good);
                assert!(received_bytes(test) > 0, "{test:#}");
            }
        }
    }
}

#[test]
fn mesh_interrupted_waits_for_the_test_under_way_and_starts_no_other() {
    let serves = serves(2);
    let (_dir, file) = hosts_file(&serves);
    let args: Vec<&OsStr> = vec![
        OsStr::new("mesh"),
        OsStr::new("--hosts-file"),
        file.as_os_str(),
        OsStr::new("-t"),
        OsStr::new("2"),
        OsStr::new("-J"),
    ];
    let mesh = spawn_here(&args);
    // Into the first round's 2 s test.
    std::thread::sleep(Duration::from_millis(1000));
    send_signal(mesh.pid(), libc::SIGINT);
    let out = mesh.finish(Duration::from_secs(15));
    assert_eq!(out.code, 130, "{out:?}");
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["interrupted"], true);
    let tests = report["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 1, "a second round started: {report:#}");
    assert!(received_bytes(&tests[0]) > 0, "{report:#}");
}

#[test]
fn a_coordinator_killed_mid_copy_leaves_both_serves_free_and_both_roots_empty() {
    let mut serves: Vec<Served> = (0..2)
        .map(|i| {
            let token = format!("mesh-token-{i}");
            Hosts::loopback().served(&["--token", &token, "--max-clients", "1"])
        })
        .collect();
    let (_dir, file) = hosts_file(&serves);
    let args: Vec<&OsStr> = vec![
        OsStr::new("mesh"),
        OsStr::new("--hosts-file"),
        file.as_os_str(),
        OsStr::new("--what"),
        OsStr::new("copy"),
        OsStr::new("--size"),
        OsStr::new("1G"),
    ];
    let mesh = spawn_here(&args);
    // The copy is under way once the receiver's landing file is there.
    let receiving = wait_until(Duration::from_secs(60), || {
        !crate::common::entries(&serves[1].root).is_empty()
    });
    assert!(receiving, "the first copy never began landing");
    send_signal(mesh.pid(), libc::SIGKILL);
    let _ = mesh.finish(Duration::from_secs(5));
    let stopped = serves[0].wait_for_line("the coordinator went away", Duration::from_secs(15));
    assert!(stopped.is_some(), "log: {:?}", serves[0].log());
    for served in &serves {
        let emptied = wait_until(Duration::from_secs(10), || {
            crate::common::entries(&served.root).is_empty()
        });
        assert!(emptied, "left: {:?}", crate::common::entries(&served.root));
        // --max-clients 1: served only if the dropped test gave its slot back.
        served.assert_serves();
    }
}

#[test]
fn mesh_refuses_a_host_list_it_cannot_use_in_one_line_with_exit_2() {
    let dir = temp_dir();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "# nobody\n\n").unwrap();
    let three = dir.path().join("three");
    std::fs::write(&three, "a token\nb token extra\n").unwrap();
    let (empty, three) = (empty.to_str().unwrap(), three.to_str().unwrap());
    let cases: &[(&[&str], &str)] = &[
        (&["127.0.0.1:5301", "127.0.0.1"], "given twice"),
        (&["node1"], "two serves or more"),
        (&["--hosts-file", empty], "names no host"),
        (&["--hosts-file", three], ":2: 3 columns"),
        (&["node[1-1001]"], "give --yes"),
        (&["node[3-1]"], "runs backwards"),
        (&["node[1-"], "without its ']'"),
        (
            &["a", "b", "--from", "c"],
            "--from c: not one of the mesh's hosts",
        ),
        (&["a", "b", "--to", "a", "--from", "a"], "leave no pair"),
        (
            &["a", "b", "--what", "copy", "--via", "udp"],
            "UDP carries no files",
        ),
    ];
    for (args, says) in cases {
        let out = run_command(command(std::iter::once("mesh").chain(args.iter().copied())));
        assert_usage_error(&out);
        let first = out.stderr.lines().next().unwrap_or("");
        assert!(first.contains(says), "{args:?}: {}", out.stderr);
        assert_eq!(
            out.stderr.lines().filter(|l| !l.is_empty()).count(),
            2,
            "{args:?}: {}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
    }
}
