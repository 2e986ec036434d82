//! `xferbench copy SRC DEST` through `xferbench serve`: round trips checked byte for byte, the
//! report, and every way a copy can go wrong. Server and client run in two network namespaces
//! of a lab of the test's own when root, else on loopback.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::Duration;

use crate::common::{
    Hosts, Run, Server, Way, assert_empty_dir, assert_failed_cleanly, assert_no_leftovers,
    assert_same_content, assert_success, entries, has_warning, json_report, make_file,
    scratch_path, temp_dir,
};
use serde_json::Value;

/// The longest a client may take to fail once its server is gone.
const FAIL_TIMEOUT: Duration = Duration::from_secs(10);

/// Copies a file of `size` (as gen takes it) one `way` with `-P streams` and maybe `--verify`,
/// checks the copy byte for byte and the report's figures, and that no temporary file is left.
fn round_trip(way: Way, size: &str, streams: u32, verify: bool) {
    let server = Hosts::two().served(&[]);
    let local = temp_dir();
    let (source, destination) = match way {
        Way::Upload => (local.path().join("a.data"), server.root.join("b.data")),
        Way::Download => (server.root.join("a.data"), local.path().join("b.data")),
    };
    make_file(&source, size);
    let (from, to) = match way {
        Way::Upload => (
            source.as_os_str().to_owned(),
            server.remote("b.data").into(),
        ),
        Way::Download => (
            server.remote("a.data").into(),
            destination.as_os_str().to_owned(),
        ),
    };
    let streams = streams.to_string();
    let mut args: Vec<&OsStr> = vec![
        "copy".as_ref(),
        &from,
        &to,
        "-P".as_ref(),
        streams.as_ref(),
        "-J".as_ref(),
    ];
    if verify {
        args.push("--verify".as_ref());
    }
    let report = json_report(&server.run(&args));
    assert_same_content(&source, &destination);

    let bytes = std::fs::metadata(&source).unwrap().len();
    assert_eq!(report["schema"], 1, "{report:#}");
    assert_eq!(report["command"], "copy", "{report:#}");
    assert_eq!(report["path"], "tcp", "{report:#}");
    assert_eq!(report["source"], from.to_str().unwrap(), "{report:#}");
    assert_eq!(report["destination"], to.to_str().unwrap(), "{report:#}");
    let measurement = &report["measurement"];
    assert_eq!(measurement["stage"], "copy", "{report:#}");
    assert_eq!(measurement["bytes"], bytes, "{report:#}");
    assert_eq!(
        measurement["conditions"]["streams"],
        streams.parse::<u64>().unwrap(),
        "{report:#}"
    );
    assert_eq!(
        measurement["conditions"]["fsync_included"], true,
        "{report:#}"
    );
    assert_rate_is_bytes_over_secs(measurement);
    // This side's file: its file system holds the local directory.
    let mount = &measurement["conditions"]["mount"];
    assert!(mount["fs_type"].is_string(), "{report:#}");
    let mount_point = mount["mount_point"].as_str().unwrap();
    let local_dir = std::fs::canonicalize(local.path()).unwrap();
    assert!(local_dir.starts_with(mount_point), "{report:#}");
    if verify {
        let check = &report["verify"];
        assert_eq!(check["matched"], true, "{report:#}");
        assert_eq!(check["source"], check["destination"], "{report:#}");
        assert!(
            check["source"].as_str().is_some_and(|d| !d.is_empty()),
            "{report:#}"
        );
    } else {
        assert_eq!(report["verify"], Value::Null, "{report:#}");
    }
    assert!(report["warnings"].is_array(), "{report:#}");
    assert_no_leftovers(&server.root);
    assert_no_leftovers(local.path());
}

fn assert_rate_is_bytes_over_secs(measurement: &Value) {
    let bytes = measurement["bytes"].as_f64().unwrap();
    let secs = measurement["secs"].as_f64().unwrap();
    let rate = measurement["bytes_per_sec"].as_f64().unwrap();
    assert!(secs > 0.0, "{measurement:#}");
    assert!(
        (rate - bytes / secs).abs() <= 1e-6 * rate.max(1.0),
        "bytes_per_sec {rate} is not bytes / secs = {}: {measurement:#}",
        bytes / secs
    );
}

#[test]
fn copy_upload_with_one_stream_arrives_byte_for_byte() {
    round_trip(Way::Upload, "16M", 1, false);
}

#[test]
fn copy_upload_with_one_stream_and_verify_arrives_byte_for_byte_with_matching_digests() {
    round_trip(Way::Upload, "16M", 1, true);
}

#[test]
fn copy_upload_with_four_streams_arrives_byte_for_byte() {
    round_trip(Way::Upload, "16M", 4, false);
}

#[test]
fn copy_upload_with_four_streams_and_verify_arrives_byte_for_byte_with_matching_digests() {
    round_trip(Way::Upload, "16M", 4, true);
}

#[test]
fn copy_download_with_one_stream_arrives_byte_for_byte() {
    round_trip(Way::Download, "16M", 1, false);
}

#[test]
fn copy_download_with_one_stream_and_verify_arrives_byte_for_byte_with_matching_digests() {
    round_trip(Way::Download, "16M", 1, true);
}

#[test]
fn copy_download_with_four_streams_arrives_byte_for_byte() {
    round_trip(Way::Download, "16M", 4, false);
}

#[test]
fn copy_download_with_four_streams_and_verify_arrives_byte_for_byte_with_matching_digests() {
    round_trip(Way::Download, "16M", 4, true);
}

/// 5 MiB + 123 bytes: the last chunk is short and not a multiple of 4096.
const ODD_SIZE: &str = "5243003";

#[test]
fn copy_upload_of_an_odd_size_arrives_to_the_last_byte() {
    round_trip(Way::Upload, ODD_SIZE, 4, true);
}

#[test]
fn copy_download_of_an_odd_size_arrives_to_the_last_byte() {
    round_trip(Way::Download, ODD_SIZE, 4, true);
}

#[test]
fn copy_of_an_empty_file_makes_an_empty_file_both_ways() {
    let server = Hosts::two().served(&[]);
    let (local, empty) = scratch_path("empty");
    std::fs::write(&empty, b"").unwrap();
    let up = server.run(&[
        "copy".as_ref(),
        empty.as_os_str(),
        server.remote("empty").as_ref(),
        "--verify".as_ref(),
    ]);
    assert_success(up.code, &up.stdout, &up.stderr);
    assert_eq!(std::fs::read(server.root.join("empty")).unwrap(), b"");

    let back = local.path().join("back");
    let down = server.run(&[
        "copy".as_ref(),
        server.remote("empty").as_ref(),
        back.as_os_str(),
        "--verify".as_ref(),
    ]);
    assert_success(down.code, &down.stdout, &down.stderr);
    assert_eq!(std::fs::read(&back).unwrap(), b"");
    assert_eq!(entries(&server.root), ["empty"]);
    assert_eq!(entries(local.path()), ["back", "empty"]);
}

#[test]
fn copy_into_a_remote_directory_or_the_root_keeps_the_source_name() {
    let hosts = Hosts::two();
    let root = temp_dir();
    std::fs::create_dir(root.path().join("in")).unwrap();
    std::fs::create_dir(root.path().join("deep")).unwrap();
    let server = hosts.serve(root.path(), &[]);
    let (_local, source) = scratch_path("named.data");
    make_file(&source, "1M");
    // A directory without its trailing slash works too, as with cp and scp.
    for (remote, landed) in [
        ("in/", "in/named.data"),
        ("", "named.data"),
        ("deep", "deep/named.data"),
    ] {
        let out = server.run(&[
            "copy".as_ref(),
            source.as_os_str(),
            server.remote(remote).as_ref(),
        ]);
        assert_success(out.code, &out.stdout, &out.stderr);
        assert_same_content(&source, &root.path().join(landed));
    }
}

#[test]
fn copy_download_into_a_local_directory_keeps_the_remote_name() {
    let hosts = Hosts::two();
    let root = temp_dir();
    std::fs::create_dir(root.path().join("in")).unwrap();
    let server = hosts.serve(root.path(), &[]);
    make_file(&root.path().join("in/remote.data"), "1M");
    let local = temp_dir();
    let out = server.run(&[
        "copy".as_ref(),
        server.remote("in/remote.data").as_ref(),
        local.path().as_os_str(),
    ]);
    assert_success(out.code, &out.stdout, &out.stderr);
    assert_same_content(
        &root.path().join("in/remote.data"),
        &local.path().join("remote.data"),
    );
    assert_eq!(entries(local.path()), ["remote.data"]);
}

#[test]
fn copy_replaces_an_existing_destination_only_with_force() {
    let server = Hosts::two().served(&[]);
    let existing = server.root.join("there.data");
    std::fs::write(&existing, b"keep me").unwrap();
    let (_local, source) = scratch_path("new.data");
    make_file(&source, "1M");
    let remote = server.remote("there.data");
    let refused = server.run(&["copy".as_ref(), source.as_os_str(), remote.as_ref()]);
    assert_failed_cleanly(&refused);
    assert!(
        refused.stderr.contains("already exists") && refused.stderr.contains("--force"),
        "{}",
        refused.stderr
    );
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");
    assert_no_leftovers(&server.root);

    let forced = server.run(&[
        "copy".as_ref(),
        source.as_os_str(),
        remote.as_ref(),
        "--force".as_ref(),
    ]);
    assert_success(forced.code, &forced.stdout, &forced.stderr);
    assert_same_content(&source, &existing);
    assert_eq!(entries(&server.root), ["there.data"]);
}

#[test]
fn copy_warns_about_a_source_with_unwritten_extents_and_still_copies_it() {
    let server = Hosts::two().served(&[]);
    let (_local, source) = scratch_path("fallocated.data");
    let out = crate::common::run_command(crate::common::command([
        "gen".as_ref(),
        source.as_os_str(),
        "--size".as_ref(),
        "8M".as_ref(),
        "--fill".as_ref(),
        "none".as_ref(),
        "-q".as_ref(),
    ]));
    assert_success(out.code, &out.stdout, &out.stderr);
    let remote = server.remote("fallocated.data");
    let out = server.run(&[
        "copy".as_ref(),
        source.as_os_str(),
        remote.as_ref(),
        "-J".as_ref(),
    ]);
    let report = json_report(&out);
    assert!(
        out.stderr.contains("unwritten extents"),
        "no warning on stderr: {}",
        out.stderr
    );
    assert!(has_warning(&report, "unwritten_extents"), "{report:#}");
    assert_same_content(&source, &server.root.join("fallocated.data"));
}

// ---- Bad input and faults: one clean line, nothing under the final name, server serving ----

/// A server of its own with an empty root, a local scratch dir and a 1 MiB source in it.
struct Setup {
    local: tempfile::TempDir,
    root: tempfile::TempDir,
    server: Server,
    source: PathBuf,
    _hosts: Hosts,
}

impl Setup {
    fn new(serve_args: &[&str]) -> Setup {
        let hosts = Hosts::two();
        let root = temp_dir();
        let server = hosts.serve(root.path(), serve_args);
        let (local, source) = scratch_path("source.data");
        make_file(&source, "1M");
        // Dropped last: the server dies before its lab.
        Setup {
            local,
            root,
            server,
            source,
            _hosts: hosts,
        }
    }

    /// `copy ARGS...` with the server's token, expected to fail cleanly saying all of `keys`;
    /// the root and the local dir must hold what they held before.
    fn fails(&self, args: &[&OsStr], keys: &[&str]) -> Run {
        let root_before = entries(self.root.path());
        let local_before = entries(self.local.path());
        let mut all: Vec<&OsStr> = vec!["copy".as_ref()];
        all.extend_from_slice(args);
        let out = self.server.run(&all);
        assert_failed_cleanly(&out);
        crate::common::assert_says_all("the error", &out.stderr, keys);
        assert_eq!(
            entries(self.root.path()),
            root_before,
            "the server's root changed"
        );
        assert_eq!(
            entries(self.local.path()),
            local_before,
            "the local dir changed"
        );
        out
    }
}

#[test]
fn copy_to_an_unknown_host_fails_cleanly() {
    // .invalid never resolves (RFC 6761): the lookup fails locally, nothing is sent.
    let (local, source) = scratch_path("source.data");
    make_file(&source, "1M");
    let out = crate::common::run_command(crate::common::command([
        "-q".as_ref(),
        "copy".as_ref(),
        source.as_os_str(),
        "no-such-host.invalid:x.data".as_ref(),
    ]));
    assert_failed_cleanly(&out);
    assert!(
        out.stderr.contains("no-such-host.invalid"),
        "{}",
        out.stderr
    );
    assert_eq!(entries(local.path()), ["source.data"]);
}

#[test]
fn copy_to_a_port_nothing_listens_on_fails_cleanly() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (local, source) = scratch_path("source.data");
    make_file(&source, "1M");
    let out = crate::common::run_command(crate::common::command([
        "-q".as_ref(),
        "copy".as_ref(),
        source.as_os_str(),
        format!("127.0.0.1:{port}:x.data").as_ref(),
    ]));
    assert_failed_cleanly(&out);
    assert!(
        out.stderr.contains(&format!("127.0.0.1:{port}")) && out.stderr.contains("refused"),
        "{}",
        out.stderr
    );
    assert_eq!(entries(local.path()), ["source.data"]);
}

#[test]
fn copy_with_a_wrong_token_is_refused_and_the_server_keeps_serving() {
    let setup = Setup::new(&[]);
    let remote = setup.server.remote("x.data");
    let out = crate::common::run_command(setup.server.client(&[
        "copy".as_ref(),
        setup.source.as_os_str(),
        remote.as_ref(),
        "--token".as_ref(),
        "not-the-token".as_ref(),
    ]));
    assert_failed_cleanly(&out);
    assert!(
        out.stderr.contains(&setup.server.addr) && out.stderr.contains("wrong token"),
        "{}",
        out.stderr
    );
    assert_empty_dir(setup.root.path());
    setup.server.assert_serves();
}

#[test]
fn copy_without_a_token_is_refused_and_the_server_keeps_serving() {
    let setup = Setup::new(&[]);
    let remote = setup.server.remote("x.data");
    let out = crate::common::run_command(setup.server.client(&[
        "copy".as_ref(),
        setup.source.as_os_str(),
        remote.as_ref(),
    ]));
    assert_failed_cleanly(&out);
    assert!(
        out.stderr.contains(&setup.server.addr) && out.stderr.contains("missing token"),
        "{}",
        out.stderr
    );
    assert_empty_dir(setup.root.path());
    setup.server.assert_serves();
}

#[test]
fn copy_of_a_missing_source_fails_cleanly_both_ways() {
    let setup = Setup::new(&[]);
    let missing = setup.local.path().join("missing.data");
    let remote = setup.server.remote("x.data");
    setup.fails(&[missing.as_os_str(), remote.as_ref()], &["missing.data"]);
    let remote_missing = setup.server.remote("missing.data");
    setup.fails(
        &[remote_missing.as_ref(), setup.local.path().as_os_str()],
        &[&setup.server.addr, "missing.data", "does not exist"],
    );
    setup.server.assert_serves();
}

#[test]
fn copy_of_a_directory_fails_cleanly_both_ways() {
    let setup = Setup::new(&[]);
    std::fs::create_dir(setup.root.path().join("dir")).unwrap();
    let remote = setup.server.remote("x.data");
    setup.fails(
        &[setup.local.path().as_os_str(), remote.as_ref()],
        &["is a directory"],
    );
    let remote_dir = setup.server.remote("dir");
    setup.fails(
        &[remote_dir.as_ref(), setup.local.path().as_os_str()],
        &[&setup.server.addr, "is a directory"],
    );
    setup.server.assert_serves();
}

#[test]
fn copy_into_a_missing_directory_fails_cleanly_both_ways() {
    let setup = Setup::new(&[]);
    let remote = setup.server.remote("no-dir/x.data");
    setup.fails(
        &[setup.source.as_os_str(), remote.as_ref()],
        &[&setup.server.addr, "no-dir", "does not exist"],
    );
    make_file(&setup.root.path().join("there.data"), "1M");
    let remote_file = setup.server.remote("there.data");
    let local_missing = setup.local.path().join("no-dir/x.data");
    setup.fails(
        &[remote_file.as_ref(), local_missing.as_os_str()],
        &["no-dir"],
    );
    setup.server.assert_serves();
}

#[test]
fn copy_refuses_paths_that_leave_the_servers_root() {
    let setup = Setup::new(&[]);
    let root = setup.root.path();
    let outside = temp_dir();
    std::fs::write(outside.path().join("secret"), b"outside the root").unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("out")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), root.join("secret-link")).unwrap();
    let root_before = entries(root);

    for path in [
        "../x.data",
        "/etc/x.data",
        "out/x.data",
        "secret-link",
        "out/",
    ] {
        let remote = setup.server.remote(path);
        let out = setup.fails(
            &[setup.source.as_os_str(), remote.as_ref()],
            &[&setup.server.addr],
        );
        assert!(
            out.stderr.contains("root") || out.stderr.contains("symlink"),
            "upload to {path}: {}",
            out.stderr
        );
    }
    for path in ["../etc/passwd", "/etc/passwd", "out/secret", "secret-link"] {
        let remote = setup.server.remote(path);
        let out = setup.fails(
            &[remote.as_ref(), setup.local.path().as_os_str()],
            &[&setup.server.addr],
        );
        assert!(
            out.stderr.contains("root") || out.stderr.contains("symlink"),
            "download of {path}: {}",
            out.stderr
        );
    }
    assert_eq!(entries(outside.path()), ["secret"]);
    assert_eq!(entries(root), root_before);
    assert_eq!(entries(setup.local.path()), ["source.data"]);
    setup.server.assert_serves();
}

#[test]
fn copy_larger_than_max_bytes_is_refused_and_the_server_keeps_serving() {
    let setup = Setup::new(&["--max-bytes", "2M"]);
    let big = setup.local.path().join("big.data");
    make_file(&big, "3M");
    let remote = setup.server.remote("big.data");
    setup.fails(
        &[big.as_os_str(), remote.as_ref()],
        &[&setup.server.addr, "--max-bytes"],
    );
    std::fs::remove_file(&big).unwrap();
    // The 1 MiB probe is under the limit.
    setup.server.assert_serves();
}

#[test]
fn copy_rejects_zero_and_too_many_streams_as_usage_errors() {
    let (local, source) = scratch_path("source.data");
    std::fs::write(&source, b"x").unwrap();
    for streams in ["0", "10000"] {
        // Rejected before any connection: the address is never dialled.
        let out = crate::common::run_command(crate::common::command([
            "copy".as_ref(),
            source.as_os_str(),
            "127.0.0.1:9:x".as_ref(),
            "-P".as_ref(),
            streams.as_ref(),
        ]));
        assert_eq!(out.code, 2, "-P {streams}: {out:?}");
        assert!(
            out.stderr.starts_with("error: ") && out.stderr.contains("--parallel"),
            "-P {streams}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("panicked"));
    }
    assert_eq!(entries(local.path()), ["source.data"]);
}

// ---- Interrupted copies ----

#[test]
fn copy_fails_within_seconds_when_the_server_is_killed_mid_upload() {
    let mut server = Hosts::shaped("200mbit").served(&[]);
    let local = temp_dir();
    let (client, final_path, _) = server.copy_under_way(local.path(), Way::Upload);

    server.signal(libc::SIGKILL);
    server
        .wait_exit(FAIL_TIMEOUT)
        .expect("the server outlived SIGKILL");
    let out = client.finish(FAIL_TIMEOUT);
    assert_failed_cleanly(&out);
    assert!(out.stderr.contains(&server.addr), "{}", out.stderr);
    // A killed server cannot clean up, but it never renames a partial file into place.
    assert!(
        !final_path.exists(),
        "a final file from an interrupted copy"
    );
    assert_eq!(entries(local.path()), ["big.data"]);
}

#[test]
fn copy_fails_within_seconds_and_removes_its_partial_file_when_the_server_is_killed_mid_download() {
    let mut server = Hosts::shaped("200mbit").served(&[]);
    let local = temp_dir();
    let (client, final_path, partial) = server.copy_under_way(local.path(), Way::Download);

    server.signal(libc::SIGKILL);
    server
        .wait_exit(FAIL_TIMEOUT)
        .expect("the server outlived SIGKILL");
    let out = client.finish(FAIL_TIMEOUT);
    assert_failed_cleanly(&out);
    assert!(out.stderr.contains(&server.addr), "{}", out.stderr);
    assert!(
        !final_path.exists(),
        "a final file from an interrupted copy"
    );
    assert!(!partial.exists(), "the client left its partial file");
    assert_empty_dir(local.path());
    assert_eq!(entries(&server.root), ["big.data"]);
}

#[test]
fn copy_interrupted_mid_download_exits_130_removes_its_partial_file_and_the_server_keeps_serving() {
    let server = Hosts::shaped("200mbit").served(&[]);
    let local = temp_dir();
    let (client, final_path, partial) = server.copy_under_way(local.path(), Way::Download);

    crate::common::send_signal(client.pid(), libc::SIGINT);
    let out = client.finish(FAIL_TIMEOUT);
    assert_eq!(out.code, 130, "{out:?}");
    assert!(out.stderr.contains("interrupted"), "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert!(
        !final_path.exists(),
        "a final file from an interrupted copy"
    );
    assert!(!partial.exists(), "the client left its partial file");
    assert_empty_dir(local.path());
    server.assert_serves();
    assert_eq!(entries(&server.root), ["big.data"]);
}

/// A forced copy onto an existing file, stopped half-way by `stop`: the old file is still
/// there, whole, under its name, both while the copy runs and after it failed.
fn forced_copy_stopped_half_way_keeps_the_old_file(way: Way, stop: &str) {
    let mut server = Hosts::shaped("200mbit").served(&[]);
    let local = temp_dir();
    let old: Vec<u8> = (0..100_000u32).flat_map(|n| n.to_le_bytes()).collect();
    let (client, final_path, partial) =
        crate::common::copy_over_under_way(&server.hosts, &server, local.path(), way, Some(&old));
    assert!(partial.exists(), "no partial file beside the old one");
    assert_eq!(
        std::fs::read(&final_path).unwrap(),
        old,
        "the old file changed while the new one was still arriving"
    );
    match stop {
        "interrupt" => crate::common::send_signal(client.pid(), libc::SIGINT),
        "server killed" => {
            server.signal(libc::SIGKILL);
            server
                .wait_exit(FAIL_TIMEOUT)
                .expect("the server outlived SIGKILL");
        }
        _ => unreachable!("no such stop: {stop}"),
    }
    let out = client.finish(FAIL_TIMEOUT);
    assert_ne!(out.code, 0, "{out:?}");
    assert_eq!(
        std::fs::read(&final_path).unwrap(),
        old,
        "a failed copy lost or changed the file it was to replace ({stop})"
    );
}

#[test]
fn copy_force_upload_interrupted_keeps_the_old_destination_whole() {
    forced_copy_stopped_half_way_keeps_the_old_file(Way::Upload, "interrupt");
}

#[test]
fn copy_force_download_interrupted_keeps_the_old_destination_whole() {
    forced_copy_stopped_half_way_keeps_the_old_file(Way::Download, "interrupt");
}

#[test]
fn copy_force_upload_with_the_server_killed_keeps_the_old_destination_whole() {
    forced_copy_stopped_half_way_keeps_the_old_file(Way::Upload, "server killed");
}

#[test]
fn copy_force_download_with_the_server_killed_keeps_the_old_destination_whole() {
    forced_copy_stopped_half_way_keeps_the_old_file(Way::Download, "server killed");
}

#[test]
fn copy_moves_tens_of_mib_intact_over_a_shaped_link_with_parallel_streams() {
    // Not a speed test: the shaped link drops packets (tbf), so TCP recovers losses across
    // several streams while chunks land out of order.
    let server = Hosts::shaped("1gbit").served(&[]);
    let (_local, source) = scratch_path("a.data");
    make_file(&source, "32M");
    let remote = server.remote("a.data");
    let out = server.run(&[
        "copy".as_ref(),
        source.as_os_str(),
        remote.as_ref(),
        "-P".as_ref(),
        "8".as_ref(),
        "--bs".as_ref(),
        "256K".as_ref(),
        "--verify".as_ref(),
    ]);
    assert_success(out.code, &out.stdout, &out.stderr);
    assert_same_content(&source, &server.root.join("a.data"));
}

// ---- Between two local paths (a disk, a mounted share): the kernel's client carries the bytes ----

/// A new file `a.data` of `size` (as gen takes it) in a scratch directory of its own.
fn new_source(size: &str) -> (tempfile::TempDir, PathBuf) {
    let (dir, source) = scratch_path("a.data");
    make_file(&source, size);
    (dir, source)
}

/// Runs `xferbench copy ARGS...` here, expecting it to fail cleanly with a line that `says`.
fn local_copy_fails(args: &[&OsStr], says: &str) {
    let out = copy_here(args);
    assert_failed_cleanly(&out);
    assert!(out.stderr.contains(says), "{}", out.stderr);
}

/// Runs `xferbench copy ARGS...` here.
fn copy_here(args: &[&OsStr]) -> Run {
    crate::common::run_command(crate::common::command(
        std::iter::once(OsStr::new("copy")).chain(args.iter().copied()),
    ))
}

/// Copies a new file of `size` from one scratch directory to another (into the directory when
/// `into_dir`, else to a file name) with `extra` flags, checks it byte for byte and the report,
/// and returns the report.
fn local_round_trip(size: &str, into_dir: bool, extra: &[&str]) -> Value {
    let (from, to) = (temp_dir(), temp_dir());
    let source = from.path().join("a.data");
    match size {
        // gen makes no empty file.
        "0" => std::fs::write(&source, b"").unwrap(),
        _ => make_file(&source, size),
    }
    let destination = to.path().join(if into_dir { "a.data" } else { "b.data" });
    let target = match into_dir {
        true => format!("{}/", to.path().display()),
        false => destination.display().to_string(),
    };
    let mut args: Vec<&OsStr> = vec![source.as_os_str(), target.as_ref(), "-J".as_ref()];
    args.extend(extra.iter().map(OsStr::new));
    let report = json_report(&copy_here(&args));
    assert_same_content(&source, &destination);
    assert_eq!(
        entries(to.path()),
        [destination.file_name().unwrap().to_str().unwrap()]
    );
    assert_eq!(entries(from.path()), ["a.data"]);

    let bytes = std::fs::metadata(&source).unwrap().len();
    assert_eq!(report["command"], "copy", "{report:#}");
    assert_eq!(report["path"], "local", "{report:#}");
    assert_eq!(
        report["destination"],
        destination.to_str().unwrap(),
        "{report:#}"
    );
    let measurement = &report["measurement"];
    assert_eq!(measurement["stage"], "copy", "{report:#}");
    assert_eq!(measurement["bytes"], bytes, "{report:#}");
    let conditions = &measurement["conditions"];
    assert_eq!(conditions["fsync_included"], true, "{report:#}");
    assert_eq!(conditions["path"], "local", "{report:#}");
    assert!(conditions["source_direct"].is_boolean(), "{report:#}");
    assert!(conditions["destination_direct"].is_boolean(), "{report:#}");
    if bytes > 0 {
        assert_rate_is_bytes_over_secs(measurement);
    }
    let split = &report["split"];
    assert!(split["reading_secs"].is_number(), "{report:#}");
    assert!(split["writing_secs"].is_number(), "{report:#}");
    assert!(split["fsync_secs"].is_number(), "{report:#}");
    if extra.contains(&"--verify") {
        let check = &report["verify"];
        assert_eq!(check["matched"], true, "{report:#}");
        assert_eq!(check["source"], check["destination"], "{report:#}");
        assert!(check["reread"]["direct"].is_boolean(), "{report:#}");
        assert!(check["reread"]["secs"].is_number(), "{report:#}");
    } else {
        assert_eq!(report["verify"], Value::Null, "{report:#}");
    }
    report
}

#[test]
fn local_copy_of_an_odd_size_to_a_file_name_arrives_byte_for_byte() {
    local_round_trip(ODD_SIZE, false, &[]);
}

#[test]
fn local_copy_of_an_odd_size_into_a_directory_keeps_the_name_and_arrives_byte_for_byte() {
    local_round_trip(ODD_SIZE, true, &[]);
}

#[test]
fn local_copy_with_verify_rereads_the_landed_file_and_the_digests_match() {
    let report = local_round_trip(ODD_SIZE, false, &["--verify"]);
    // The scratch directory is a disk file system (see common): O_DIRECT reads it back.
    if report["measurement"]["conditions"]["destination_direct"] == true {
        assert_eq!(report["verify"]["reread"]["direct"], true, "{report:#}");
    }
}

#[test]
fn local_copy_of_an_empty_file_with_verify_makes_an_empty_file() {
    local_round_trip("0", true, &["--verify"]);
}

#[test]
fn local_copy_larger_than_its_buffer_pool_arrives_byte_for_byte() {
    // 64K × 4 = 256 KiB of buffers for 5 MiB and 77 bytes: the pool turns over ~20 times.
    local_round_trip(
        "5242957",
        false,
        &["--bs", "64K", "--iodepth", "4", "--verify"],
    );
}

#[test]
fn local_copy_says_in_text_where_the_time_went_and_what_the_reread_came_from() {
    let (dir, source) = new_source("1M");
    let destination = dir.path().join("b.data");
    let out = copy_here(&[
        source.as_os_str(),
        destination.as_os_str(),
        "--verify".as_ref(),
    ]);
    assert_success(out.code, &out.stdout, &out.stderr);
    crate::common::assert_says_all(
        "the text report",
        &out.stdout,
        &[
            "on this machine",
            "fsync included",
            "busy: reading",
            "writing",
            "re-read",
        ],
    );
    assert!(!out.stdout.contains("sending"), "{}", out.stdout);
}

#[test]
fn local_copy_onto_an_existing_file_needs_force_and_then_replaces_it() {
    let (dir, source) = new_source(ODD_SIZE);
    let destination = dir.path().join("b.data");
    std::fs::write(&destination, b"old content").unwrap();
    local_copy_fails(&[source.as_os_str(), destination.as_os_str()], "--force");
    assert_eq!(std::fs::read(&destination).unwrap(), b"old content");

    let out = copy_here(&[
        source.as_os_str(),
        destination.as_os_str(),
        "--force".as_ref(),
    ]);
    assert_success(out.code, &out.stdout, &out.stderr);
    assert_same_content(&source, &destination);
    assert_no_leftovers(dir.path());
}

#[test]
fn local_copy_forced_onto_a_file_system_without_room_for_both_keeps_the_old_file_whole() {
    let Some(small) = crate::common::ScratchMount::new("tmpfs", "size=8M") else {
        return;
    };
    let (_dir, source) = new_source("5M");
    let destination = small.path().join("a.data");
    let old = vec![7u8; 5 << 20];
    std::fs::write(&destination, &old).unwrap();
    local_copy_fails(
        &[
            source.as_os_str(),
            destination.as_os_str(),
            "--force".as_ref(),
        ],
        "kept until the new one",
    );
    assert!(
        std::fs::read(&destination).unwrap() == old,
        "the old file changed"
    );
    assert_eq!(entries(small.path()), ["a.data"]);
}

#[test]
fn local_copy_to_a_tmpfs_arrives_and_says_when_o_direct_was_refused() {
    let Some(tmpfs) = crate::common::ScratchMount::new("tmpfs", "size=16M") else {
        return;
    };
    let (_dir, source) = new_source(ODD_SIZE);
    let out = copy_here(&[
        source.as_os_str(),
        tmpfs.path().as_os_str(),
        "-J".as_ref(),
        "--verify".as_ref(),
    ]);
    let report = json_report(&out);
    assert_same_content(&source, &tmpfs.path().join("a.data"));
    // Kernels before 6.6 refuse O_DIRECT on tmpfs; newer ones take it.
    if report["measurement"]["conditions"]["destination_direct"] == false {
        assert!(has_warning(&report, "direct_unsupported"), "{report:#}");
    }
}

#[test]
fn local_copy_where_o_direct_is_refused_falls_back_says_so_and_rereads_after_a_cache_drop() {
    // ramfs has no O_DIRECT on any kernel.
    let (Some(from), Some(to)) = (
        crate::common::ScratchMount::new("ramfs", ""),
        crate::common::ScratchMount::new("ramfs", ""),
    ) else {
        return;
    };
    let source = from.path().join("a.data");
    let bytes: Vec<u8> = (0..786_433u32)
        .flat_map(|n| n.wrapping_mul(2_654_435_761).to_le_bytes())
        .collect();
    std::fs::write(&source, &bytes).unwrap();
    let destination = to.path().join("b.data");
    let out = copy_here(&[
        source.as_os_str(),
        destination.as_os_str(),
        "-J".as_ref(),
        "--verify".as_ref(),
    ]);
    let report = json_report(&out);
    assert_same_content(&source, &destination);
    let conditions = &report["measurement"]["conditions"];
    assert_eq!(conditions["source_direct"], false, "{report:#}");
    assert_eq!(conditions["destination_direct"], false, "{report:#}");
    assert_eq!(conditions["direct"], false, "{report:#}");
    assert!(has_warning(&report, "direct_unsupported"), "{report:#}");
    let reread = &report["verify"]["reread"];
    assert_eq!(reread["direct"], false, "{report:#}");
    assert!(reread["cached_before"].is_number(), "{report:#}");
    assert!(
        out.stderr.contains("does not support O_DIRECT"),
        "{}",
        out.stderr
    );
}

/// `copy SOURCE DEST` where DEST is SOURCE under another name: refused, exit 1, one line
/// saying so, the file untouched and nothing made beside it.
fn refuses_the_same_file(
    dir: &std::path::Path,
    source: &std::path::Path,
    destination: &std::path::Path,
) {
    let before = std::fs::read(source).unwrap();
    for extra in [None, Some("--force")] {
        let mut args: Vec<&OsStr> = vec![source.as_os_str(), destination.as_os_str()];
        args.extend(extra.map(OsStr::new));
        local_copy_fails(&args, "the same file");
        assert_eq!(std::fs::read(source).unwrap(), before);
        assert_no_leftovers(dir);
    }
}

#[test]
fn local_copy_of_a_file_onto_itself_is_refused() {
    let (dir, source) = new_source("1M");
    refuses_the_same_file(dir.path(), &source, &source);
    refuses_the_same_file(dir.path(), &source, dir.path());
}

#[test]
fn local_copy_onto_a_symlink_or_a_hard_link_to_the_source_is_refused() {
    let (dir, source) = new_source("1M");
    let symlink = dir.path().join("sym.data");
    std::os::unix::fs::symlink(&source, &symlink).unwrap();
    refuses_the_same_file(dir.path(), &source, &symlink);
    refuses_the_same_file(dir.path(), &symlink, &source);
    let hard = dir.path().join("hard.data");
    std::fs::hard_link(&source, &hard).unwrap();
    refuses_the_same_file(dir.path(), &source, &hard);
    assert_eq!(entries(dir.path()), ["a.data", "hard.data", "sym.data"]);
}

#[test]
fn local_copy_of_a_missing_source_fails_cleanly() {
    let dir = temp_dir();
    let missing = dir.path().join("missing.data");
    local_copy_fails(
        &[missing.as_os_str(), dir.path().join("b.data").as_os_str()],
        "does not exist",
    );
    assert_empty_dir(dir.path());
}

#[test]
fn local_copy_into_a_missing_directory_fails_cleanly() {
    let (dir, source) = new_source("1M");
    let missing = dir.path().join("missing");
    for target in [
        missing.join("b.data"),
        PathBuf::from(format!("{}/", missing.display())),
    ] {
        local_copy_fails(&[source.as_os_str(), target.as_os_str()], "does not exist");
        assert_eq!(entries(dir.path()), ["a.data"]);
    }
}

#[test]
fn local_copy_into_a_directory_nobody_can_write_fails_cleanly_and_leaves_it_empty() {
    let (dir, source) = new_source("1M");
    let locked = crate::common::ReadOnlyDir::new(dir.path().join("locked"));
    if !locked.is_unwritable() {
        eprintln!("skipped: this process can write in a 0555 directory");
        return;
    }
    local_copy_fails(
        &[source.as_os_str(), locked.path.as_os_str()],
        "cannot create",
    );
    assert_empty_dir(&locked.path);
}

/// `copy SOURCE DEST --resume -J` with 1 MiB chunks, 4 in flight, and its JSON report.
fn resume_copy(source: &std::path::Path, destination: &std::path::Path) -> serde_json::Value {
    let out = crate::common::run_command(crate::common::command([
        "copy".as_ref(),
        source.as_os_str(),
        destination.as_os_str(),
        "--resume".as_ref(),
        "--bs".as_ref(),
        "1M".as_ref(),
        "--iodepth".as_ref(),
        "4".as_ref(),
        "--verify".as_ref(),
        "-J".as_ref(),
    ]));
    crate::common::assert_success(out.code, &out.stdout, &out.stderr);
    crate::common::json_report(&out)
}

#[test]
fn resume_takes_up_a_partial_copy_whose_prefix_matches_and_sends_only_the_rest() {
    let dir = crate::common::temp_dir();
    let source = dir.path().join("big.data");
    crate::common::make_file(&source, "20M");
    let destination = dir.path().join("copy.data");
    let bytes = std::fs::read(&source).unwrap();
    std::fs::write(
        dir.path().join(".copy.data.xferbench-partial"),
        &bytes[..12 << 20],
    )
    .unwrap();
    let report = resume_copy(&source, &destination);
    assert_eq!(std::fs::read(&destination).unwrap(), bytes);
    let resumed = &report["resumed"];
    assert_eq!(resumed["found"], 12u64 << 20, "{report:#}");
    // The last 4 chunks (--iodepth) of what was found are not trusted.
    assert_eq!(resumed["checked"], 8u64 << 20, "{report:#}");
    assert_eq!(resumed["matched"], true, "{report:#}");
    assert_eq!(report["measurement"]["bytes"], 12u64 << 20, "{report:#}");
    assert_eq!(report["verify"]["matched"], true, "{report:#}");
    crate::common::assert_no_leftovers(dir.path());
}

#[test]
fn resume_sends_everything_again_when_the_partial_has_one_flipped_byte() {
    let dir = crate::common::temp_dir();
    let source = dir.path().join("big.data");
    crate::common::make_file(&source, "20M");
    let destination = dir.path().join("copy.data");
    let bytes = std::fs::read(&source).unwrap();
    let mut partial = bytes[..12 << 20].to_vec();
    partial[3 << 20] ^= 0x01;
    std::fs::write(dir.path().join(".copy.data.xferbench-partial"), &partial).unwrap();
    let report = resume_copy(&source, &destination);
    assert_eq!(std::fs::read(&destination).unwrap(), bytes);
    assert_eq!(report["resumed"]["matched"], false, "{report:#}");
    assert_eq!(report["measurement"]["bytes"], 20u64 << 20, "{report:#}");
    crate::common::assert_no_leftovers(dir.path());
}

#[test]
fn resume_cuts_the_stale_tail_of_a_partial_longer_than_the_source() {
    let dir = crate::common::temp_dir();
    let source = dir.path().join("big.data");
    crate::common::make_file(&source, "20M");
    let destination = dir.path().join("copy.data");
    let mut partial = std::fs::read(&source).unwrap();
    // The source was 30 MiB when the partial was made, and is 20 MiB now.
    partial.extend(std::iter::repeat_n(0x5a, 10 << 20));
    std::fs::write(dir.path().join(".copy.data.xferbench-partial"), &partial).unwrap();
    let report = resume_copy(&source, &destination);
    assert_eq!(report["resumed"]["matched"], true, "{report:#}");
    assert_eq!(
        std::fs::read(&destination).unwrap(),
        std::fs::read(&source).unwrap()
    );
}

#[test]
fn a_copy_stopped_with_resume_keeps_its_partial_and_the_next_one_finishes_it() {
    stopped_then_resumed(libc::SIGINT);
}

#[test]
fn a_copy_killed_outright_leaves_a_partial_that_resume_checks_and_finishes_byte_for_byte() {
    stopped_then_resumed(libc::SIGKILL);
}

/// A local copy with `--resume` stopped by `signal` half way, then `--resume` again: the
/// partial is kept (SIGINT: by the copy; SIGKILL: nothing removes it), checked, and finished.
fn stopped_then_resumed(signal: libc::c_int) {
    let (from, to) = (crate::common::temp_dir(), crate::common::temp_dir());
    let source = from.path().join("big.data");
    crate::common::make_file(&source, "64M");
    let destination = to.path().join("big.data");
    let partial = to.path().join(".big.data.xferbench-partial");
    let args: Vec<&std::ffi::OsStr> = vec![
        "copy".as_ref(),
        source.as_os_str(),
        destination.as_os_str(),
        "--bs".as_ref(),
        "4K".as_ref(),
        "--iodepth".as_ref(),
        "1".as_ref(),
        "--resume".as_ref(),
    ];
    let mut client = crate::common::spawn_here(&args);
    let grew = crate::common::wait_until(Duration::from_secs(20), || {
        std::fs::metadata(&partial).is_ok_and(|meta| meta.len() >= 8 << 20)
    });
    assert!(
        grew,
        "the partial copy did not grow: {:?}",
        client.running()
    );
    crate::common::send_signal(client.pid(), signal);
    let out = client.finish(Duration::from_secs(10));
    if signal == libc::SIGINT {
        assert_eq!(out.code, 130, "{out:?}");
    }
    assert!(!destination.exists());
    let kept = std::fs::metadata(&partial)
        .expect("the partial copy is kept")
        .len();
    // More than the 4 chunks of 1 MiB the next run does not trust.
    assert!(kept >= 8 << 20, "{kept}");
    let report = resume_copy(&source, &destination);
    assert_eq!(
        std::fs::read(&destination).unwrap(),
        std::fs::read(&source).unwrap()
    );
    assert_eq!(report["resumed"]["matched"], true, "{report:#}");
    assert!(
        report["measurement"]["bytes"].as_u64().unwrap() < 64 << 20,
        "{report:#}"
    );
    crate::common::assert_no_leftovers(to.path());
}

// ---- --resume to and from serve ----

/// The partial copy a copy to `name` leaves in `dir`.
fn partial_in(dir: &std::path::Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.xferbench-partial"))
}

/// `copy FROM TO --resume -P 2 --bs 1M --iodepth 4 --verify -J` through `server`, and its report.
fn resume_over_tcp(server: &Server, from: &OsStr, to: &OsStr) -> Value {
    json_report(&server.run(&[
        "copy".as_ref(),
        from,
        to,
        "--resume".as_ref(),
        "-P".as_ref(),
        "2".as_ref(),
        "--bs".as_ref(),
        "1M".as_ref(),
        "--iodepth".as_ref(),
        "4".as_ref(),
        "--verify".as_ref(),
        "-J".as_ref(),
    ]))
}

/// A 20 MiB source and a 12 MiB partial copy of it (with byte 3 MiB flipped when `damaged`)
/// beside `destination`.
fn source_and_partial(source: &std::path::Path, partial: &std::path::Path, damaged: bool) {
    make_file(source, "20M");
    let mut prefix = std::fs::read(source).unwrap()[..12 << 20].to_vec();
    if damaged {
        prefix[3 << 20] ^= 0x01;
    }
    std::fs::write(partial, &prefix).unwrap();
}

/// The report of a resumed copy that found 12 MiB, checked 8 MiB (the last 4 chunks of 1 MiB
/// are not trusted) and `matched` or not, and moved what it had to.
fn assert_resumed(report: &Value, matched: bool) {
    let resumed = &report["resumed"];
    assert_eq!(resumed["found"], 12u64 << 20, "{report:#}");
    assert_eq!(resumed["checked"], 8u64 << 20, "{report:#}");
    assert_eq!(resumed["matched"], matched, "{report:#}");
    assert_eq!(
        resumed["algorithm"], "xxh3-128 per chunk, summed",
        "{report:#}"
    );
    let moved = if matched { 12u64 << 20 } else { 20u64 << 20 };
    assert_eq!(report["measurement"]["bytes"], moved, "{report:#}");
    assert_rate_is_bytes_over_secs(&report["measurement"]);
    assert_eq!(report["verify"]["matched"], true, "{report:#}");
}

fn resume_up(damaged: bool) {
    let server = Hosts::loopback().served(&[]);
    let local = temp_dir();
    let source = local.path().join("big.data");
    source_and_partial(&source, &partial_in(&server.root, "big.data"), damaged);
    let report = resume_over_tcp(
        &server,
        source.as_os_str(),
        server.remote("big.data").as_ref(),
    );
    assert_resumed(&report, !damaged);
    assert_same_content(&source, &server.root.join("big.data"));
    assert_no_leftovers(&server.root);
}

fn resume_down(damaged: bool) {
    let server = Hosts::loopback().served(&[]);
    let local = temp_dir();
    let source = server.root.join("big.data");
    let destination = local.path().join("big.data");
    source_and_partial(&source, &partial_in(local.path(), "big.data"), damaged);
    let report = resume_over_tcp(
        &server,
        server.remote("big.data").as_ref(),
        destination.as_os_str(),
    );
    assert_resumed(&report, !damaged);
    assert_same_content(&source, &destination);
    assert_no_leftovers(local.path());
}

#[test]
fn resume_up_to_serve_takes_up_a_far_partial_whose_prefix_matches_and_sends_only_the_rest() {
    resume_up(false);
}

#[test]
fn resume_up_to_serve_sends_everything_again_when_the_far_partial_has_one_flipped_byte() {
    resume_up(true);
}

#[test]
fn resume_down_from_serve_takes_up_a_local_partial_whose_prefix_matches_and_gets_only_the_rest() {
    resume_down(false);
}

#[test]
fn resume_down_from_serve_gets_everything_again_when_the_local_partial_has_one_flipped_byte() {
    resume_down(true);
}

#[test]
fn resume_up_to_serve_with_nothing_left_before_copies_everything_and_reports_no_resume() {
    let server = Hosts::loopback().served(&[]);
    let local = temp_dir();
    let source = local.path().join("big.data");
    make_file(&source, "5M");
    let report = resume_over_tcp(
        &server,
        source.as_os_str(),
        server.remote("big.data").as_ref(),
    );
    assert_eq!(report["resumed"], Value::Null, "{report:#}");
    assert_eq!(report["measurement"]["bytes"], 5u64 << 20, "{report:#}");
    assert_same_content(&source, &server.root.join("big.data"));
}

#[test]
fn resume_up_to_serve_never_writes_through_a_far_partial_that_is_a_link() {
    let server = Hosts::loopback().served(&[]);
    let (local, outside) = (temp_dir(), temp_dir());
    let source = local.path().join("big.data");
    make_file(&source, "2M");
    let target = outside.path().join("precious.data");
    std::fs::write(&target, b"not to be written").unwrap();
    std::os::unix::fs::symlink(&target, partial_in(&server.root, "big.data")).unwrap();
    let out = server.run(&[
        "copy".as_ref(),
        source.as_os_str(),
        server.remote("big.data").as_ref(),
        "--resume".as_ref(),
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(std::fs::read(&target).unwrap(), b"not to be written");
    assert!(!server.root.join("big.data").exists());
}

/// Stops (Ctrl-C) a slow `--resume` copy of 64 MiB `way` once its partial holds 8 MiB, checks
/// that the partial is kept, then finishes the copy with `--resume` and checks it byte for byte,
/// the text report saying how it went on.
fn stopped_with_resume_then_finished(way: Way) {
    let mut server = Hosts::loopback().served(&[]);
    let local = temp_dir();
    let (source, landing_dir) = match way {
        Way::Upload => (local.path().join("big.data"), server.root.clone()),
        Way::Download => (server.root.join("big.data"), local.path().to_path_buf()),
    };
    make_file(&source, "64M");
    let destination = landing_dir.join("big.data");
    let partial = partial_in(&landing_dir, "big.data");
    let remote = server.remote("big.data");
    let (from, to): (&OsStr, &OsStr) = match way {
        Way::Upload => (source.as_os_str(), remote.as_ref()),
        Way::Download => (remote.as_ref(), destination.as_os_str()),
    };
    let mut args = vec!["copy".as_ref(), from, to, "--resume".as_ref()];
    args.extend(server.hosts.slow_copy_args().iter().map(OsStr::new));
    let mut client = server.spawn(&args);
    let grew = crate::common::wait_until(Duration::from_secs(20), || {
        std::fs::metadata(&partial).is_ok_and(|meta| meta.len() >= 8 << 20)
    });
    assert!(
        grew,
        "the partial copy did not grow: {:?}",
        client.running()
    );
    crate::common::send_signal(client.pid(), libc::SIGINT);
    let out = client.finish(Duration::from_secs(10));
    assert_eq!(out.code, 130, "{out:?}");
    assert!(out.stderr.contains("--resume goes on from it"), "{out:?}");
    if way == Way::Upload {
        // The server's session ends once it sees the client gone; its partial stays.
        assert!(
            server
                .wait_for_line("big.data", Duration::from_secs(10))
                .is_some(),
            "{:?}",
            server.log()
        );
    }
    assert!(!destination.exists());
    let kept = std::fs::metadata(&partial)
        .expect("the partial copy is kept")
        .len();
    assert!(kept >= 8 << 20, "{kept}");
    let out = server.run(&[
        "copy".as_ref(),
        from,
        to,
        "--resume".as_ref(),
        "--bs".as_ref(),
        "1M".as_ref(),
        "--iodepth".as_ref(),
        "4".as_ref(),
    ]);
    assert_success(out.code, &out.stdout, &out.stderr);
    assert_same_content(&source, &destination);
    assert!(
        out.stdout.contains("resumed: the partial copy held") && out.stdout.contains("matched"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("did not match"), "{}", out.stdout);
    assert_no_leftovers(&landing_dir);
}

#[test]
fn a_copy_up_to_serve_stopped_with_resume_keeps_the_far_partial_and_the_next_one_finishes_it() {
    stopped_with_resume_then_finished(Way::Upload);
}

#[test]
fn a_copy_down_from_serve_stopped_with_resume_keeps_its_partial_and_the_next_one_finishes_it() {
    stopped_with_resume_then_finished(Way::Download);
}

#[test]
fn serve_lands_no_upload_whose_source_digest_differs_and_keeps_the_old_file() {
    use std::io::Write;
    let server = Hosts::loopback().served(&[]);
    let kept = server.root.join("kept.bin");
    std::fs::write(&kept, b"old\n").unwrap();
    let mut control = std::net::TcpStream::connect(&server.addr).unwrap();
    control
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    crate::common::send_frame(
        &mut control,
        &serde_json::json!({"type": "hello", "protocol": "xferbench", "version": xferbench::control::PROTOCOL_VERSION, "token": crate::common::TEST_TOKEN}),
    );
    assert_eq!(crate::common::read_frame(&mut control)["type"], "welcome");
    crate::common::send_frame(
        &mut control,
        &serde_json::json!({
            "type": "receive", "path": "kept.bin", "size": 4096, "streams": 1, "chunk": 4096,
            "iodepth": 1, "verify": true, "force": true, "name": null,
        }),
    );
    let ready = crate::common::read_frame(&mut control);
    assert_eq!(ready["type"], "ready", "{ready}");
    let mut data = std::net::TcpStream::connect(&server.addr).unwrap();
    crate::common::send_frame(
        &mut data,
        &serde_json::json!({"type": "join", "session": ready["session"], "stream": 0}),
    );
    assert_eq!(crate::common::read_frame(&mut control)["type"], "started");
    // One chunk: offset 0, 4096 bytes.
    let mut chunk = 0u64.to_be_bytes().to_vec();
    chunk.extend_from_slice(&4096u32.to_be_bytes());
    chunk.extend_from_slice(&[7u8; 4096]);
    data.write_all(&chunk).unwrap();
    drop(data);
    // A digest of other bytes than those sent.
    crate::common::send_frame(
        &mut control,
        &serde_json::json!({"type": "source_digest", "digest": "0".repeat(32)}),
    );
    let answer = crate::common::read_frame(&mut control);
    assert_eq!(answer["type"], "error", "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("verify failed"),
        "{answer}"
    );
    assert_eq!(std::fs::read(&kept).unwrap(), b"old\n");
    assert_eq!(crate::common::entries(&server.root), ["kept.bin"]);
}
