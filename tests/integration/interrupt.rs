//! Ctrl-C and SIGTERM, for every command: exit 130 within about a second of the signal, the
//! figures so far where a command has them (net, lat), and no temporary file left behind.

use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{
    Background, Hosts, Run, Server, Way, assert_empty_dir, assert_no_leftovers, scratch_path,
    spawn_here, temp_dir,
};

/// How long after the signal a command may take to exit: "about a second", with room for a
/// busy test machine.
const EXIT_AFTER_SIGNAL: Duration = Duration::from_millis(2500);

/// Sends `signal` to `client` and returns what it printed, failing the test unless it exited
/// with 130 within [`EXIT_AFTER_SIGNAL`].
fn signal_and_finish(client: Background, signal: libc::c_int) -> Run {
    crate::common::send_signal(client.pid(), signal);
    let sent = Instant::now();
    let out = client.finish(Duration::from_secs(30));
    let took = sent.elapsed();
    assert_eq!(out.code, 130, "{out:?}");
    assert!(
        took <= EXIT_AFTER_SIGNAL,
        "exited {took:?} after signal {signal}: {out:?}"
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert!(
        out.stderr
            .lines()
            .last()
            .unwrap_or("")
            .starts_with("xferbench: interrupted"),
        "{}",
        out.stderr
    );
    out
}

/// Runs `xferbench -q ARGS...` where `server`'s clients run, lets it run for `running`, then
/// sends `signal` (see [`signal_and_finish`]).
fn interrupted_after(
    server: &Server,
    args: &[&str],
    running: Duration,
    signal: libc::c_int,
) -> Run {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let client = server.spawn(&args);
    std::thread::sleep(running);
    signal_and_finish(client, signal)
}

/// Waits until `path` exists (a command got under way), failing the test after 30 s.
fn wait_for(path: &Path, client: &mut Background) {
    assert!(
        crate::common::wait_until(Duration::from_secs(30), || path.exists()
            || !client.running()),
        "no {} within 30 s",
        path.display()
    );
    assert!(client.running(), "ended before it could be interrupted");
}

fn net_interrupted_prints_the_intervals_so_far_and_a_summary_marked_interrupted(
    signal: libc::c_int,
) {
    let server = Hosts::two().served(&[]);
    let out = interrupted_after(
        &server,
        &["net", &server.addr, "-t", "30", "-i", "0.5", "--bidir"],
        Duration::from_millis(2500),
        signal,
    );
    let intervals = out
        .stdout
        .lines()
        .filter(|line| line.starts_with("[  1]"))
        .count();
    assert!(
        intervals >= 2,
        "no intervals before the signal:\n{}",
        out.stdout
    );
    for side in ["sender", "receiver"] {
        assert!(
            out.stdout.lines().any(|l| l.trim_start().starts_with(side)),
            "no {side} summary:\n{}",
            out.stdout
        );
    }
    assert!(
        out.stdout.contains("interrupted after") && out.stdout.contains("of the 30 s asked"),
        "{}",
        out.stdout
    );
    // The server was asked to stop its side too, and serves on.
    server.assert_serves();
}

#[test]
fn net_ctrl_c_prints_the_figures_so_far_and_exits_130() {
    net_interrupted_prints_the_intervals_so_far_and_a_summary_marked_interrupted(libc::SIGINT);
}

#[test]
fn net_sigterm_prints_the_figures_so_far_and_exits_130() {
    net_interrupted_prints_the_intervals_so_far_and_a_summary_marked_interrupted(libc::SIGTERM);
}

#[test]
fn net_ctrl_c_json_carries_an_interrupted_warning() {
    let server = Hosts::two().served(&[]);
    let out = interrupted_after(
        &server,
        &["net", &server.addr, "-t", "30", "-R", "-J"],
        Duration::from_millis(2000),
        libc::SIGINT,
    );
    let report: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|err| panic!("not JSON ({err}):\n{}", out.stdout));
    let warning = report["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .find(|w| w["kind"] == "interrupted")
        .unwrap_or_else(|| panic!("no interrupted warning: {report:#}"));
    let counted = warning["counted_secs"].as_f64().expect("counted_secs");
    assert!(counted > 1.0 && counted < 30.0, "{report:#}");
    assert_eq!(warning["asked_secs"], 30.0, "{report:#}");
    let download = &report["directions"][0];
    assert!(
        download["receiver"]["bytes"].as_u64().unwrap_or(0) > 0,
        "{report:#}"
    );
}

#[test]
fn lat_ctrl_c_prints_the_round_trips_so_far_and_exits_130() {
    let server = Hosts::two().served(&[]);
    let out = interrupted_after(
        &server,
        &["lat", &server.addr, "-t", "30"],
        Duration::from_millis(2000),
        libc::SIGINT,
    );
    assert!(
        out.stdout.contains("latency (") && out.stdout.contains("median"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("interrupted after"), "{}", out.stdout);
    server.assert_serves();
}

#[test]
fn copy_ctrl_c_mid_upload_exits_130_within_a_second() {
    let server = Hosts::shaped("200mbit").served(&[]);
    let local = temp_dir();
    let (client, final_path, partial) = server.copy_under_way(local.path(), Way::Upload);
    signal_and_finish(client, libc::SIGINT);
    assert!(
        !final_path.exists(),
        "a final file from an interrupted copy"
    );
    // The server removes its partial file when the session ends.
    assert!(
        crate::common::wait_until(Duration::from_secs(10), || !partial.exists()),
        "the server left its partial file"
    );
    server.assert_serves();
}

#[test]
fn disk_ctrl_c_exits_130_within_a_second_and_removes_its_test_file() {
    let dir = temp_dir();
    // Long enough to be under way at 300 ms, within what the disk has free (half of it).
    let size = format!(
        "{}M",
        (crate::common::free_space() / 2 / (1 << 20)).min(16 << 10)
    );
    let mut client = spawn_here(&[
        "disk".as_ref(),
        dir.path().as_os_str(),
        "--size".as_ref(),
        size.as_ref(),
    ]);
    let started = Instant::now();
    assert!(
        crate::common::wait_until(Duration::from_secs(30), || {
            !crate::common::leftovers(dir.path()).is_empty() || !client.running()
        }),
        "no test file within 30 s"
    );
    assert!(
        client.running(),
        "disk ended before it could be interrupted"
    );
    std::thread::sleep(Duration::from_millis(300).saturating_sub(started.elapsed()));
    signal_and_finish(client, libc::SIGINT);
    assert_no_leftovers(dir.path());
}

#[test]
fn run_ctrl_c_exits_130_within_a_second_and_leaves_no_partial_file() {
    let dir = temp_dir();
    let mut client = spawn_here(&[
        "run".as_ref(),
        "--dir".as_ref(),
        dir.path().as_os_str(),
        "--size".as_ref(),
        "64M".as_ref(),
        "-t".as_ref(),
        "30".as_ref(),
        "--files".as_ref(),
        "20".as_ref(),
        "--file-size".as_ref(),
        "16K".as_ref(),
    ]);
    // The test file is made first; then the stages run (the memory-to-memory one for 30 s).
    let test_file = dir.path().join(".xferbench-run-67108864.data");
    wait_for(&test_file, &mut client);
    std::thread::sleep(Duration::from_secs(3));
    signal_and_finish(client, libc::SIGINT);
    assert_no_leftovers(dir.path());
}

#[test]
fn serve_sigterm_while_a_net_test_runs_exits_130_within_a_second() {
    let mut server = Hosts::two().served(&[]);
    let client = server.spawn(&[
        "net".as_ref(),
        server.addr.as_ref(),
        "-t".as_ref(),
        "30".as_ref(),
        "--bidir".as_ref(),
    ]);
    std::thread::sleep(Duration::from_millis(1500));
    server.signal(libc::SIGTERM);
    let sent = Instant::now();
    let status = server
        .wait_exit(Duration::from_secs(30))
        .expect("serve did not stop within 30 s of SIGTERM");
    let took = sent.elapsed();
    assert_eq!(
        crate::common::exit_code(status),
        130,
        "{}",
        server.stderr_text()
    );
    assert!(
        took <= EXIT_AFTER_SIGNAL,
        "serve exited {took:?} after SIGTERM"
    );
    // Its client is told, and ends on its own.
    let out = client.finish(Duration::from_secs(30));
    assert_ne!(out.code, 0, "{out:?}");
}

#[test]
fn gen_ctrl_c_exits_130_within_a_second_and_removes_the_partial_file() {
    const NEEDED: u64 = 20_000_000_000;
    if crate::common::free_space() < NEEDED {
        eprintln!("skipping: the Ctrl-C test of gen needs 20 GB free under the test directory");
        return;
    }
    let (dir, path) = scratch_path("big.data");
    let mut client = spawn_here(&[
        "gen".as_ref(),
        path.as_os_str(),
        "--size".as_ref(),
        "16G".as_ref(),
    ]);
    wait_for(&dir.path().join(".big.data.xferbench-partial"), &mut client);
    std::thread::sleep(Duration::from_millis(300));
    signal_and_finish(client, libc::SIGINT);
    assert_empty_dir(dir.path());
}

/// Starts a slow copy between two local paths (64 MiB, 4 KiB at a time: a few seconds) onto
/// `existing` when given (with --force), interrupts it with `signal` once its partial file
/// exists, and checks that nothing is left under the final name but the old file, whole.
fn local_copy_interrupted_leaves_only_what_was_there(signal: libc::c_int, existing: Option<&[u8]>) {
    let (from, to) = (temp_dir(), temp_dir());
    let source = from.path().join("big.data");
    crate::common::make_file(&source, "64M");
    let destination = to.path().join("big.data");
    let mut args: Vec<&OsStr> = vec![
        "copy".as_ref(),
        source.as_os_str(),
        destination.as_os_str(),
        "--bs".as_ref(),
        "4K".as_ref(),
        "--iodepth".as_ref(),
        "1".as_ref(),
    ];
    if let Some(existing) = existing {
        std::fs::write(&destination, existing).unwrap();
        args.push("--force".as_ref());
    }
    let mut client = spawn_here(&args);
    wait_for(&to.path().join(".big.data.xferbench-partial"), &mut client);
    std::thread::sleep(Duration::from_millis(300));
    signal_and_finish(client, signal);
    assert_no_leftovers(to.path());
    match existing {
        Some(existing) => assert!(
            std::fs::read(&destination).unwrap() == existing,
            "the old file changed"
        ),
        None => assert_empty_dir(to.path()),
    }
}

#[test]
fn local_copy_interrupted_by_ctrl_c_exits_130_and_leaves_nothing_under_the_final_name() {
    local_copy_interrupted_leaves_only_what_was_there(libc::SIGINT, None);
}

#[test]
fn local_copy_forced_and_interrupted_keeps_the_old_file_whole() {
    let old: Vec<u8> = (0..100_000u32).flat_map(|n| n.to_le_bytes()).collect();
    local_copy_interrupted_leaves_only_what_was_there(libc::SIGTERM, Some(&old));
}
