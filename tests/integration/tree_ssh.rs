//! `xferbench copy -r --via ssh` against a real OpenSSH sshd of the test's own: trees landed
//! through far GNU `tar -x` sinks (one per connection; `scp -r -t` ones where the far side has
//! no GNU tar) and a far `sh` for links, renames and directory metadata, compared entry by
//! entry; names the far side's lists cannot carry; a copy killed half way.
//! Each test prints "skipped" and passes when OpenSSH is not installed (`.ci/run` installs it).

use std::path::Path;
use std::time::Duration;

use crate::common::sshd::{Sshd, sshd_with_tools};
use crate::common::trees::{assert_same_tree_to_the_microsecond, varied_tree};
use crate::common::{Run, json_report, run_command, spawn_here, temp_dir, wait_until};

fn start() -> Option<Sshd> {
    let sshd = Sshd::start();
    if sshd.is_none() {
        eprintln!("skipped: OpenSSH is not installed");
    }
    sshd
}

/// `user@127.0.0.1:PORT:PATH`.
fn remote(sshd: &Sshd, path: &Path) -> String {
    format!("{}:{}:{}", sshd.destination(), sshd.port(), path.display())
}

/// The arguments of `copy -r --via ssh FROM TO EXTRA…` with the test's key and known_hosts.
fn args<'a>(sshd: &'a Sshd, from: &'a str, to: &'a str, extra: &[&'a str]) -> Vec<String> {
    let mut all: Vec<String> = ["copy", "-r", from, to, "--via", "ssh", "--identity"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    all.push(sshd.client_key().display().to_string());
    all.push("--known-hosts".into());
    all.push(sshd.known_hosts().display().to_string());
    all.extend(extra.iter().map(|s| s.to_string()));
    all
}

fn copy_r(sshd: &Sshd, home: &Path, from: &str, to: &str, extra: &[&str]) -> Run {
    let mut cmd = crate::common::command(args(sshd, from, to, extra));
    cmd.env("HOME", home).env_remove("SSH_AUTH_SOCK");
    run_command(cmd)
}

fn assert_ok(what: &str, out: &Run, sshd: &Sshd) {
    assert_eq!(
        out.code,
        0,
        "{what}: exit {}\nstdout:\n{}\nstderr:\n{}\nsshd:\n{}",
        out.code,
        out.stdout,
        out.stderr,
        sshd.log()
    );
}

/// Every path below `dir` whose name marks a copy's leftovers.
fn staging_left(dir: &Path) -> Vec<String> {
    let mut left = Vec::new();
    for entry in walkdir::WalkDir::new(dir).into_iter().flatten() {
        let name = entry.file_name().to_string_lossy();
        if name.contains("xferbench-partial") {
            left.push(entry.path().display().to_string());
        }
    }
    left
}

fn upload_round_trip(streams: &str) {
    let Some(sshd) = start() else { return };
    upload_round_trip_to(&sshd, streams, "tar -x");
}

/// [`upload_round_trip`] to `sshd`, whose files should cross through the far `tool`.
fn upload_round_trip_to(sshd: &Sshd, streams: &str, tool: &str) {
    let (from, to, home) = (temp_dir(), temp_dir(), temp_dir());
    let source = from.path().join("tree");
    varied_tree(&source);
    let out = copy_r(
        sshd,
        home.path(),
        source.to_str().unwrap(),
        &remote(sshd, to.path()),
        &["-P", streams, "-J"],
    );
    assert_ok("copy -r to sshd", &out, sshd);
    let landed = to.path().join("tree");
    assert_same_tree_to_the_microsecond(&source, &landed);
    assert!(
        staging_left(to.path()).is_empty(),
        "{:?}",
        staging_left(to.path())
    );
    let report = json_report(&out);
    assert_eq!(report["path"], "ssh", "{report:#}");
    assert_eq!(report["landed"]["files"], 4, "{report:#}");
    assert_eq!(report["landed"]["symlinks"], 3, "{report:#}");
    assert_eq!(report["landed"]["directories"], 5, "{report:#}");
    assert_eq!(
        report["workers"],
        streams.parse::<u64>().unwrap(),
        "{report:#}"
    );
    assert_eq!(report["failed"]["total"], 0, "{report:#}");
    assert_eq!(report["far_tool"], tool, "{report:#}");
    assert!(
        report["measurement"]["conditions"]["cipher"].is_string(),
        "{report:#}"
    );
}

#[test]
fn one_connection_lands_a_tree_through_the_far_tar_with_modes_times_and_links() {
    upload_round_trip("1");
}

/// Every tool a tree upload uses on the far side but tar.
const TREE_TOOLS_BUT_TAR: &[&str] = &[
    "scp", "sh", "bash", "mkdir", "ln", "touch", "chmod", "find", "mv", "rmdir", "sync", "rm",
    "test", "grep", "cat", "readlink", "head",
];

#[test]
fn a_far_side_without_gnu_tar_takes_the_tree_through_scp_records() {
    let Some((sshd, _tools)) = sshd_with_tools(TREE_TOOLS_BUT_TAR, &[]) else {
        return;
    };
    upload_round_trip_to(&sshd, "1", "scp -t");
    upload_round_trip_to(&sshd, "2", "scp -t");
}

#[test]
fn long_and_non_utf8_names_cross_the_far_tar_byte_for_byte() {
    use std::os::unix::ffi::OsStrExt;
    let Some(sshd) = start() else { return };
    let (from, to, home) = (temp_dir(), temp_dir(), temp_dir());
    let source = from.path().join("tree");
    // Past ustar's 100-byte name and 155-byte prefix: the path crosses in the pax header.
    let deep = source.join("d".repeat(90)).join("e".repeat(90));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("f".repeat(120)), b"deep\n").unwrap();
    let latin1 = std::ffi::OsStr::from_bytes(b"caf\xe9 \xff");
    std::fs::write(source.join(latin1), b"bytes\n").unwrap();
    let out = copy_r(
        &sshd,
        home.path(),
        source.to_str().unwrap(),
        &remote(&sshd, to.path()),
        &["-P", "2"],
    );
    assert_ok("copy -r to sshd", &out, &sshd);
    assert_same_tree_to_the_microsecond(&source, &to.path().join("tree"));
    assert_eq!(
        std::fs::read(to.path().join("tree").join(latin1)).unwrap(),
        b"bytes\n"
    );
}

#[test]
fn three_connections_share_a_tree_and_land_the_same_entries() {
    upload_round_trip("3");
}

#[test]
fn an_existing_remote_tree_is_kept_unless_forced_then_merged() {
    let Some(sshd) = start() else { return };
    let (from, to, home) = (temp_dir(), temp_dir(), temp_dir());
    let source = from.path().join("tree");
    varied_tree(&source);
    let destination = remote(&sshd, &to.path().join("named"));
    let first = copy_r(
        &sshd,
        home.path(),
        source.to_str().unwrap(),
        &destination,
        &[],
    );
    assert_ok("first copy", &first, &sshd);
    // A new name: the tree lands as it.
    let landed = to.path().join("named");
    assert_same_tree_to_the_microsecond(&source, &landed);
    std::fs::write(landed.join("top"), b"changed\n").unwrap();
    // Now an existing directory: the tree goes inside it, as scp -r does.
    let inside = copy_r(
        &sshd,
        home.path(),
        source.to_str().unwrap(),
        &destination,
        &[],
    );
    assert_ok("copy into the directory", &inside, &sshd);
    assert_same_tree_to_the_microsecond(&source, &landed.join("tree"));
    let again = copy_r(
        &sshd,
        home.path(),
        source.to_str().unwrap(),
        &destination,
        &[],
    );
    assert_eq!(again.code, 1, "{again:?}");
    assert!(
        again.stderr.contains("already exists") && again.stderr.contains("--force"),
        "{}",
        again.stderr
    );
    assert_eq!(std::fs::read(landed.join("top")).unwrap(), b"changed\n");
    std::fs::write(landed.join("tree/top"), b"changed again\n").unwrap();
    let forced = copy_r(
        &sshd,
        home.path(),
        source.to_str().unwrap(),
        &destination,
        &["--force", "--fsync", "end"],
    );
    assert_ok("forced copy", &forced, &sshd);
    assert_same_tree_to_the_microsecond(&source, &landed.join("tree"));
    assert!(
        staging_left(to.path()).is_empty(),
        "{:?}",
        staging_left(to.path())
    );
}

#[test]
fn a_name_with_a_line_break_is_refused_with_the_reason_and_the_rest_land() {
    let Some(sshd) = start() else { return };
    let (from, to, home) = (temp_dir(), temp_dir(), temp_dir());
    let source = from.path().join("tree");
    std::fs::create_dir_all(source.join("bad\ndir")).unwrap();
    std::fs::write(source.join("bad\ndir/inside"), b"x").unwrap();
    std::fs::write(source.join("line\nbreak"), b"x").unwrap();
    std::fs::write(source.join("fine é"), b"fine\n").unwrap();
    let out = copy_r(
        &sshd,
        home.path(),
        source.to_str().unwrap(),
        &remote(&sshd, to.path()),
        &[],
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains("its name has a line break"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("2 of the tree's entries failed"),
        "{}",
        out.stderr
    );
    let landed = to.path().join("tree");
    assert_eq!(std::fs::read(landed.join("fine é")).unwrap(), b"fine\n");
    assert_eq!(crate::common::entries(&landed), vec!["fine é"]);
}

#[test]
fn many_small_files_cross_two_connections_byte_for_byte() {
    let Some(sshd) = start() else { return };
    let (from, to, home) = (temp_dir(), temp_dir(), temp_dir());
    let source = from.path().join("small");
    for dir in 0..10 {
        let dir_path = source.join(format!("d{dir}"));
        std::fs::create_dir_all(&dir_path).unwrap();
        for file in 0..200 {
            let bytes: Vec<u8> = (0..(file * 37 % 5000))
                .map(|i| (i * 7 + dir) as u8)
                .collect();
            std::fs::write(dir_path.join(format!("f{file}")), bytes).unwrap();
        }
    }
    let out = copy_r(
        &sshd,
        home.path(),
        source.to_str().unwrap(),
        &remote(&sshd, to.path()),
        &["-P", "2", "--fsync", "end", "-J"],
    );
    assert_ok("2,000 files", &out, &sshd);
    assert_same_tree_to_the_microsecond(&source, &to.path().join("small"));
    let report = json_report(&out);
    assert_eq!(report["landed"]["files"], 2000, "{report:#}");
    assert_eq!(report["fsync"], "end", "{report:#}");
}

#[test]
fn a_tree_upload_killed_half_way_leaves_no_torn_file_under_a_final_name() {
    let Some(sshd) = start() else { return };
    let (from, to) = (temp_dir(), temp_dir());
    let source = from.path().join("tree");
    std::fs::create_dir_all(&source).unwrap();
    for file in 0..40 {
        crate::common::make_file(&source.join(format!("f{file:02}")), "4M");
    }
    let all = args(
        &sshd,
        source.to_str().unwrap(),
        &remote(&sshd, to.path()),
        &["--bs", "64K"],
    );
    let all: Vec<&std::ffi::OsStr> = all.iter().map(|a| a.as_ref()).collect();
    let mut child = spawn_here(&all);
    let staged = wait_until(Duration::from_secs(30), || {
        walkdir::WalkDir::new(to.path())
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file())
            .count()
            >= 3
    });
    assert!(
        staged,
        "no file was staged within 30 s: {:?}",
        child.running()
    );
    crate::common::send_signal(child.pid(), libc::SIGKILL);
    let _ = child.finish(Duration::from_secs(10));
    // Give the far sink a moment to see the end of its input and stop writing.
    std::thread::sleep(Duration::from_millis(500));
    let landed = to.path().join("tree");
    // Killed half way, not after the end: files wait staged.
    assert!(
        !staging_left(to.path()).is_empty(),
        "the copy ended before the kill"
    );
    for entry in walkdir::WalkDir::new(&landed)
        .min_depth(1)
        .max_depth(1)
        .into_iter()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.contains("xferbench-partial") {
            continue;
        }
        assert_eq!(
            std::fs::read(entry.path()).unwrap(),
            std::fs::read(source.join(&name)).unwrap(),
            "{name} is under its final name but differs from its source"
        );
    }
}

fn download_round_trip(extra: &[&str]) {
    let Some(sshd) = start() else { return };
    let (from, to, home) = (temp_dir(), temp_dir(), temp_dir());
    let source = from.path().join("tree");
    varied_tree(&source);
    std::fs::write(source.join("a/b/hard"), b"one inode, two names\n").unwrap();
    std::fs::hard_link(source.join("a/b/hard"), source.join("a/hard-too")).unwrap();
    crate::common::trees::set_mtime(&source.join("a/b/hard"), 1_300_000_000);
    crate::common::trees::set_mtime(&source.join("a/b"), 1_400_000_000);
    crate::common::trees::set_mtime(&source.join("a"), 1_400_000_001);
    let mut args = vec!["-J"];
    args.extend_from_slice(extra);
    let out = copy_r(
        &sshd,
        home.path(),
        &remote(&sshd, &source),
        to.path().to_str().unwrap(),
        &args,
    );
    assert_ok("copy -r from sshd", &out, &sshd);
    let landed = to.path().join("tree");
    crate::common::trees::assert_same_tree(&source, &landed);
    assert!(crate::common::leftovers(&landed.join("a")).is_empty());
    let report = json_report(&out);
    assert_eq!(report["path"], "ssh", "{report:#}");
    assert_eq!(report["landed"]["files"], 6, "{report:#}");
    assert_eq!(report["landed"]["symlinks"], 3, "{report:#}");
    assert_eq!(report["landed"]["directories"], 5, "{report:#}");
    assert_eq!(report["failed"]["total"], 0, "{report:#}");
}

#[test]
fn a_tree_downloads_through_the_far_tar_with_modes_times_links_and_empty_directories() {
    download_round_trip(&[]);
}

#[test]
fn a_tree_downloads_with_one_syncfs_at_the_end() {
    download_round_trip(&["--fsync", "end"]);
}

#[test]
fn a_download_of_a_far_file_or_a_missing_directory_is_refused_plainly() {
    let Some(sshd) = start() else { return };
    let (from, to, home) = (temp_dir(), temp_dir(), temp_dir());
    std::fs::write(from.path().join("file"), b"x").unwrap();
    for far in [from.path().join("file"), from.path().join("missing")] {
        let out = copy_r(
            &sshd,
            home.path(),
            &remote(&sshd, &far),
            to.path().to_str().unwrap(),
            &[],
        );
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stderr.contains("is not a directory"), "{}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    }
    assert!(crate::common::entries(to.path()).is_empty());
}

#[test]
fn ctrl_c_during_a_tree_upload_exits_130_and_leaves_no_tree_under_its_name() {
    let Some(sshd) = start() else { return };
    let (from, to) = (temp_dir(), temp_dir());
    let source = from.path().join("tree");
    std::fs::create_dir_all(&source).unwrap();
    for file in 0..40 {
        crate::common::make_file(&source.join(format!("f{file:02}")), "4M");
    }
    let all = args(
        &sshd,
        source.to_str().unwrap(),
        &remote(&sshd, to.path()),
        &["--bs", "64K"],
    );
    let all: Vec<&std::ffi::OsStr> = all.iter().map(|a| a.as_ref()).collect();
    let mut child = spawn_here(&all);
    let staged = wait_until(Duration::from_secs(30), || {
        walkdir::WalkDir::new(to.path())
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file())
            .count()
            >= 2
    });
    assert!(
        staged,
        "no file was staged within 30 s: {:?}",
        child.running()
    );
    crate::common::send_signal(child.pid(), libc::SIGINT);
    let out = child.finish(Duration::from_secs(15));
    assert_eq!(out.code, 130, "{out:?}");
    assert!(
        !to.path().join("tree").exists(),
        "{:?}",
        crate::common::entries(to.path())
    );
}

#[test]
fn a_far_tar_that_stops_taking_data_ends_the_upload_within_the_stall_bound() {
    // A tar that answers the probe as GNU tar, then reads nothing.
    let frozen = "#!/bin/sh\ncase \"$1\" in --version) echo 'tar (GNU tar) 1.34'; exit 0;; esac\nexec sleep 150\n";
    let mut tools = TREE_TOOLS_BUT_TAR.to_vec();
    tools.push("sleep");
    let Some((sshd, _tools)) = sshd_with_tools(&tools, &[("tar", frozen)]) else {
        return;
    };
    let (from, to, home) = (temp_dir(), temp_dir(), temp_dir());
    let source = from.path().join("tree");
    std::fs::create_dir_all(&source).unwrap();
    // More than the SSH channel's window, so the writes wait on the far side.
    for file in 0..4 {
        crate::common::make_file(&source.join(format!("f{file}")), "8M");
    }
    let started = std::time::Instant::now();
    let out = copy_r(
        &sshd,
        home.path(),
        source.to_str().unwrap(),
        &remote(&sshd, to.path()),
        &[],
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("no data moved"), "{}", out.stderr);
    assert!(out.stderr.contains("60 s"), "{}", out.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "{:?}",
        started.elapsed()
    );
    assert!(!to.path().join("tree").exists());
}
