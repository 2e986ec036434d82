//! `xferbench copy -r` over tcp to a real `serve` on loopback: trees up and down compared entry
//! by entry, many small files on several connections, a file that cannot be read, a client
//! killed half way, and a hostile client whose records try to leave the server's root.

use std::ffi::OsStr;
use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::trees::{assert_same_tree, varied_tree};
use crate::common::{
    Hosts, Run, Server, TEST_TOKEN, assert_success, json_report, leftovers, read_frame,
    run_command, send_frame, temp_dir, wait_until,
};

/// `copy -r ARGS...` against `server`, with its token.
fn copy_tree(server: &Server, args: &[&OsStr]) -> Run {
    let mut all: Vec<&OsStr> = vec!["copy".as_ref(), "-r".as_ref()];
    all.extend_from_slice(args);
    server.run(&all)
}

#[test]
fn a_tree_goes_up_and_comes_back_down_entry_for_entry() {
    let server = Hosts::loopback().served(&[]);
    let (from, back) = (temp_dir(), temp_dir());
    let source = from.path().join("tree");
    varied_tree(&source);
    let remote = server.remote(".");
    let out = copy_tree(
        &server,
        &[
            source.as_os_str(),
            remote.as_ref(),
            "-P".as_ref(),
            "3".as_ref(),
            "-J".as_ref(),
        ],
    );
    assert_success(out.code, &out.stdout, &out.stderr);
    let landed = server.root.join("tree");
    assert_same_tree(&source, &landed);
    let report = json_report(&out);
    assert_eq!(report["path"], "tcp", "{report:#}");
    assert_eq!(report["destination"], server.remote("tree"), "{report:#}");
    assert_eq!(report["workers"], 3, "{report:#}");
    assert_eq!(report["landed"]["files"], 4, "{report:#}");
    assert_eq!(report["landed"]["symlinks"], 3, "{report:#}");
    assert_eq!(report["landed"]["directories"], 5, "{report:#}");
    let bytes = 3 * 1024 * 1024 + 12 + 4;
    assert_eq!(report["measurement"]["bytes"], bytes, "{report:#}");
    assert_eq!(
        report["measurement"]["conditions"]["streams"], 3,
        "{report:#}"
    );
    assert_eq!(report["failed"]["total"], 0, "{report:#}");
    assert!(
        report["files_per_sec"].as_f64().unwrap() > 0.0,
        "{report:#}"
    );
    assert!(report["remote_cpu"].is_object(), "{report:#}");
    // The loop and the link out of the tree were kept as links, not followed.
    for link in ["a/b/c/loop", "out-of-tree"] {
        let meta = std::fs::symlink_metadata(landed.join(link)).unwrap();
        assert!(meta.file_type().is_symlink(), "{link}");
    }

    let remote_tree = server.remote("tree");
    let out = copy_tree(
        &server,
        &[
            remote_tree.as_ref(),
            back.path().as_os_str(),
            "-P".as_ref(),
            "2".as_ref(),
            "--verify".as_ref(),
            "-J".as_ref(),
        ],
    );
    assert_success(out.code, &out.stdout, &out.stderr);
    assert_same_tree(&source, &back.path().join("tree"));
    let report = json_report(&out);
    assert_eq!(report["source"], server.remote("tree"), "{report:#}");
    assert_eq!(report["verified"], true, "{report:#}");
    assert_eq!(report["landed"]["files"], 4, "{report:#}");
    assert_eq!(report["landed"]["directories"], 5, "{report:#}");
}

#[test]
fn a_tree_up_again_replaces_nothing_without_force_and_everything_with_it_and_verifies() {
    let server = Hosts::loopback().served(&[]);
    let from = temp_dir();
    let source = from.path().join("tree");
    varied_tree(&source);
    let remote = server.remote("renamed");
    let out = copy_tree(&server, &[source.as_os_str(), remote.as_ref()]);
    assert_success(out.code, &out.stdout, &out.stderr);
    assert_same_tree(&source, &server.root.join("renamed"));
    // As cp -r does: DEST now exists, so the tree goes inside it under its own name.
    let again = copy_tree(&server, &[source.as_os_str(), remote.as_ref()]);
    assert_success(again.code, &again.stdout, &again.stderr);
    let landed = server.root.join("renamed/tree");
    assert_same_tree(&source, &landed);
    std::fs::write(landed.join("top"), b"changed\n").unwrap();
    std::fs::set_permissions(landed.join("a/b/c"), PermissionsExt::from_mode(0o755)).unwrap();

    let refused = copy_tree(&server, &[source.as_os_str(), remote.as_ref()]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stdout.contains("already exists: add --force"),
        "{}",
        refused.stdout
    );
    assert!(
        refused.stderr.contains("7 of the tree's entries failed"),
        "{}",
        refused.stderr
    );
    assert_eq!(std::fs::read(landed.join("top")).unwrap(), b"changed\n");

    let forced = copy_tree(
        &server,
        &[
            source.as_os_str(),
            remote.as_ref(),
            "--force".as_ref(),
            "--verify".as_ref(),
        ],
    );
    assert_success(forced.code, &forced.stdout, &forced.stderr);
    assert!(forced.stdout.contains("verified:"), "{}", forced.stdout);
    assert_same_tree(&source, &landed);
}

#[test]
fn an_empty_tree_goes_up_and_down() {
    let server = Hosts::loopback().served(&[]);
    let (from, back) = (temp_dir(), temp_dir());
    let empty = from.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = copy_tree(
        &server,
        &[
            empty.as_os_str(),
            server.remote(".").as_ref(),
            "-J".as_ref(),
        ],
    );
    assert_success(out.code, &out.stdout, &out.stderr);
    assert!(server.root.join("empty").is_dir());
    assert_eq!(json_report(&out)["landed"]["files"], 0);
    assert_eq!(json_report(&out)["landed"]["directories"], 1);
    let out = copy_tree(
        &server,
        &[
            server.remote("empty").as_ref(),
            back.path().join("new").as_os_str(),
        ],
    );
    assert_success(out.code, &out.stdout, &out.stderr);
    assert_same_tree(&empty, &back.path().join("new"));
}

#[test]
fn a_fifo_in_the_servers_tree_is_skipped_and_listed_down() {
    let server = Hosts::loopback().served(&[]);
    let back = temp_dir();
    let source = server.root.join("tree");
    std::fs::create_dir(&source).unwrap();
    std::fs::write(source.join("file"), b"x").unwrap();
    let fifo = std::ffi::CString::new(source.join("pipe").to_str().unwrap()).unwrap();
    // SAFETY: a valid C string mkfifo only reads.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let out = copy_tree(
        &server,
        &[server.remote("tree").as_ref(), back.path().as_os_str()],
    );
    assert_success(out.code, &out.stdout, &out.stderr);
    assert!(out.stdout.contains("skipped: 1"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("tree/pipe: not a file, directory or link"),
        "{}",
        out.stdout
    );
    assert_eq!(std::fs::read(back.path().join("tree/file")).unwrap(), b"x");
    assert!(!back.path().join("tree/pipe").exists());
}

#[test]
fn two_thousand_small_files_land_over_four_connections_both_ways() {
    let server = Hosts::loopback().served(&[]);
    let (from, back) = (temp_dir(), temp_dir());
    let source = from.path().join("many");
    for dir in 0..20 {
        let dir_path = source.join(format!("d{dir:02}"));
        std::fs::create_dir_all(&dir_path).unwrap();
        for file in 0..100 {
            let body = format!("{dir}/{file}\n").repeat(file % 7 + 1);
            std::fs::write(dir_path.join(format!("f{file:03}")), body).unwrap();
        }
    }
    let started = Instant::now();
    let out = copy_tree(
        &server,
        &[
            source.as_os_str(),
            server.remote(".").as_ref(),
            "-P".as_ref(),
            "4".as_ref(),
            "-J".as_ref(),
        ],
    );
    assert_success(out.code, &out.stdout, &out.stderr);
    assert_same_tree(&source, &server.root.join("many"));
    let report = json_report(&out);
    assert_eq!(report["landed"]["files"], 2000, "{report:#}");
    assert_eq!(report["landed"]["directories"], 21, "{report:#}");
    let out = copy_tree(
        &server,
        &[
            server.remote("many").as_ref(),
            back.path().as_os_str(),
            "-P".as_ref(),
            "4".as_ref(),
            "--fsync".as_ref(),
            "end".as_ref(),
        ],
    );
    assert_success(out.code, &out.stdout, &out.stderr);
    assert_same_tree(&source, &back.path().join("many"));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "2 × 2,000 small files took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_file_that_grows_while_it_is_sent_is_reported_as_changed() {
    let server = Hosts::loopback().served(&[]);
    let from = temp_dir();
    let source = from.path().join("tree");
    std::fs::create_dir(&source).unwrap();
    let growing = source.join("growing");
    crate::common::make_file(&growing, "64M");
    let remote = server.remote(".");
    let client = server.spawn(&[
        "copy".as_ref(),
        "-r".as_ref(),
        source.as_os_str(),
        remote.as_ref(),
        "--bs".as_ref(),
        "4K".as_ref(),
        "-J".as_ref(),
    ]);
    let partial = server.root.join("tree/.growing.xferbench-partial");
    assert!(
        wait_until(Duration::from_secs(30), || partial.exists()),
        "the copy never began"
    );
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&growing)
        .unwrap();
    file.write_all(b"more").unwrap();
    drop(file);
    let out = client.finish(Duration::from_secs(120));
    assert_success(out.code, &out.stdout, &out.stderr);
    let report = json_report(&out);
    if report["changed"]["total"] == 0 {
        // The whole file was read before the append: nothing to say about it.
        let landed = std::fs::metadata(server.root.join("tree/growing"))
            .unwrap()
            .len();
        assert_eq!(landed, 64 << 20, "the append landed without being reported");
        return;
    }
    assert_eq!(report["changed"]["total"], 1, "{report:#}");
    assert!(
        report["changed"]["shown"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with("tree/growing"),
        "{report:#}"
    );
}

/// `copy -r ARGS... --token T` as a user who cannot read what root can, or as this user when
/// not root.
fn as_unprivileged(server: &Server, args: &[&OsStr]) -> Run {
    // SAFETY: geteuid takes nothing and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return copy_tree(server, args);
    }
    let mut command = std::process::Command::new("setpriv");
    command.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
    command
        .arg(crate::common::bin())
        .args(["-q", "copy", "-r"])
        .args(args)
        .args(["--token", TEST_TOKEN]);
    run_command(command)
}

#[test]
fn an_unreadable_file_up_is_named_the_rest_land_and_the_exit_is_1() {
    let server = Hosts::loopback().served(&[]);
    let from = temp_dir();
    std::fs::set_permissions(from.path(), PermissionsExt::from_mode(0o777)).unwrap();
    let source = from.path().join("tree");
    std::fs::create_dir_all(source.join("sub")).unwrap();
    std::fs::write(source.join("readable"), b"yes\n").unwrap();
    std::fs::write(source.join("sub/secret"), b"no\n").unwrap();
    std::fs::write(source.join("sub/after"), b"also yes\n").unwrap();
    std::fs::set_permissions(source.join("sub/secret"), PermissionsExt::from_mode(0o000)).unwrap();
    for dir in [&source, &source.join("sub")] {
        std::fs::set_permissions(dir, PermissionsExt::from_mode(0o755)).unwrap();
    }
    let out = as_unprivileged(&server, &[source.as_os_str(), server.remote(".").as_ref()]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains("sub/secret: permission denied"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("1 of the tree's entries failed"),
        "{}",
        out.stderr
    );
    let landed = server.root.join("tree");
    assert_eq!(std::fs::read(landed.join("readable")).unwrap(), b"yes\n");
    assert_eq!(
        std::fs::read(landed.join("sub/after")).unwrap(),
        b"also yes\n"
    );
    assert!(!landed.join("sub/secret").exists());
    assert!(leftovers(&landed.join("sub")).is_empty());
}

#[test]
fn a_client_killed_half_way_up_leaves_only_whole_files_under_final_names() {
    let mut server = Hosts::loopback().served(&[]);
    let from = temp_dir();
    let source = from.path().join("tree");
    let (seed_dir, seed) = crate::common::scratch_path("seed");
    crate::common::make_file(&seed, "2M");
    for dir in 0..4 {
        std::fs::create_dir_all(source.join(format!("d{dir}"))).unwrap();
        for file in 0..12 {
            std::fs::copy(&seed, source.join(format!("d{dir}/f{file}"))).unwrap();
        }
    }
    drop(seed_dir);
    let remote = server.remote(".");
    let mut client = server.spawn(&[
        "copy".as_ref(),
        "-r".as_ref(),
        source.as_os_str(),
        remote.as_ref(),
        "--bs".as_ref(),
        "4K".as_ref(),
        "-P".as_ref(),
        "1".as_ref(),
    ]);
    let first = server.root.join("tree/d0/f0");
    assert!(
        wait_until(Duration::from_secs(60), || first.exists()),
        "no file landed"
    );
    assert!(client.running(), "the copy ended before it could be killed");
    crate::common::send_signal(client.pid(), libc::SIGKILL);
    let _ = client.0.wait();
    assert!(
        server
            .wait_for_line("receive tree", Duration::from_secs(20))
            .is_some(),
        "the server did not end the session: {:?}",
        server.log()
    );
    let mut whole = 0;
    for dir in 0..4 {
        let landed = server.root.join(format!("tree/d{dir}"));
        let Ok(names) = std::fs::read_dir(&landed) else {
            continue;
        };
        for name in names {
            let name = name.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                !name.ends_with(".xferbench-partial"),
                "d{dir}/{name} was left"
            );
            let expected = std::fs::read(source.join(format!("d{dir}/{name}"))).unwrap();
            assert!(
                std::fs::read(landed.join(&name)).unwrap() == expected,
                "d{dir}/{name} is not whole"
            );
            whole += 1;
        }
    }
    assert!((1..48).contains(&whole), "{whole} files landed");
    server.assert_serves();
}

#[test]
fn a_client_killed_half_way_down_leaves_only_whole_files_under_final_names() {
    let mut server = Hosts::loopback().served(&[]);
    let back = temp_dir();
    let source = server.root.join("tree");
    let (seed_dir, seed) = crate::common::scratch_path("seed");
    crate::common::make_file(&seed, "2M");
    for dir in 0..4 {
        std::fs::create_dir_all(source.join(format!("d{dir}"))).unwrap();
        for file in 0..12 {
            std::fs::copy(&seed, source.join(format!("d{dir}/f{file}"))).unwrap();
        }
    }
    drop(seed_dir);
    let remote = server.remote("tree");
    let mut client = server.spawn(&[
        "copy".as_ref(),
        "-r".as_ref(),
        remote.as_ref(),
        back.path().as_os_str(),
        "--bs".as_ref(),
        "4K".as_ref(),
        "-P".as_ref(),
        "1".as_ref(),
    ]);
    let first = back.path().join("tree/d0/f0");
    assert!(
        wait_until(Duration::from_secs(60), || first.exists()),
        "no file landed"
    );
    assert!(client.running(), "the copy ended before it could be killed");
    crate::common::send_signal(client.pid(), libc::SIGKILL);
    let _ = client.0.wait();
    let mut whole = 0;
    for dir in 0..4 {
        let landed = back.path().join(format!("tree/d{dir}"));
        let Ok(names) = std::fs::read_dir(&landed) else {
            continue;
        };
        for name in names {
            let name = name.unwrap().file_name().to_string_lossy().into_owned();
            // Killed outright, the client could not remove the file it was landing.
            if name.ends_with(".xferbench-partial") {
                continue;
            }
            let expected = std::fs::read(source.join(format!("d{dir}/{name}"))).unwrap();
            assert!(
                std::fs::read(landed.join(&name)).unwrap() == expected,
                "d{dir}/{name} is not whole"
            );
            whole += 1;
        }
    }
    assert!((1..48).contains(&whole), "{whole} files landed");
    assert!(
        server
            .wait_for_line("send tree", Duration::from_secs(40))
            .is_some(),
        "the server did not end the session: {:?}",
        server.log()
    );
    server.assert_serves();
}

// ---- A hostile client, by hand ----

/// A record header as `transport::tree::stream` lays it out.
fn record(kind: u8, path: &str, mode: u32, size: u64) -> Vec<u8> {
    let mut bytes = vec![kind];
    bytes.extend_from_slice(&(path.len() as u16).to_be_bytes());
    bytes.extend_from_slice(path.as_bytes());
    bytes.extend_from_slice(&mode.to_be_bytes());
    for _ in 0..2 {
        bytes.extend_from_slice(&1_000_000_000i64.to_be_bytes());
        bytes.extend_from_slice(&0u32.to_be_bytes());
    }
    bytes.extend_from_slice(&size.to_be_bytes());
    bytes
}

/// A file record with its content in one chunk and a plain trailer.
fn file_record(path: &str, content: &[u8]) -> Vec<u8> {
    let mut bytes = record(2, path, 0o644, content.len() as u64);
    bytes.extend_from_slice(&(content.len() as u32).to_be_bytes());
    bytes.extend_from_slice(content);
    bytes.extend_from_slice(&0u32.to_be_bytes());
    bytes.push(0);
    bytes
}

/// Opens a tree upload to `server` by hand, sends `records` on its one data connection, and
/// returns the server's last frame (`tree_done` or `error`).
fn hostile_upload(server: &Server, records: &[u8]) -> Value {
    let mut control = TcpStream::connect(&server.addr).unwrap();
    control
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    send_frame(
        &mut control,
        &json!({"type": "hello", "protocol": "xferbench", "version": xferbench::control::PROTOCOL_VERSION, "token": TEST_TOKEN}),
    );
    assert_eq!(read_frame(&mut control)["type"], "welcome");
    send_frame(
        &mut control,
        &json!({
            "type": "tree_receive", "path": ".", "name": "landing", "totals": null,
            "streams": 1, "block": 65536, "verify": false, "force": false, "fsync": "end",
        }),
    );
    let ready = read_frame(&mut control);
    assert_eq!(ready["type"], "tree_ready", "{ready}");
    let mut data = TcpStream::connect(&server.addr).unwrap();
    send_frame(
        &mut data,
        &json!({"type": "join", "session": ready["session"], "stream": 0}),
    );
    assert_eq!(read_frame(&mut control)["type"], "started");
    data.write_all(records).unwrap();
    let answer = read_frame(&mut control);
    drop(data);
    answer
}

#[test]
fn a_hostile_client_cannot_write_through_a_link_or_out_of_the_root() {
    let server = Hosts::loopback().served(&[]);
    let outside = temp_dir();
    let outside_path = outside.path().display().to_string();
    let mode_before = std::fs::metadata(outside.path())
        .unwrap()
        .permissions()
        .mode();

    // A link to a directory outside, then entries through it: each refused, nothing written.
    let mut records = record(3, "evil", 0o777, outside_path.len() as u64);
    records.extend_from_slice(outside_path.as_bytes());
    records.extend(file_record("evil/passwd", b"owned\n"));
    records.extend(record(1, "evil/sub", 0o777, 0));
    records.extend(file_record("fine", b"fine\n"));
    records.push(0);
    records.extend(record(4, "evil", 0o777, 0));
    records.extend(record(4, "", 0o755, 0));
    records.push(0);
    let done = hostile_upload(&server, &records);
    assert_eq!(done["type"], "tree_done", "{done}");
    assert_eq!(done["failed"]["total"], 2, "{done}");
    assert!(
        done["failed"]["shown"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("is not a directory (a link or a file)"),
        "{done}"
    );
    assert_eq!(done["landed"]["files"], 1, "{done}");
    assert!(crate::common::entries(outside.path()).is_empty());
    let mode_after = std::fs::metadata(outside.path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode_before, mode_after,
        "a directory outside the root was chmodded"
    );
    let landed = server.root.join("landing");
    assert_eq!(std::fs::read(landed.join("fine")).unwrap(), b"fine\n");

    // A path with `..`, or an absolute one: the stream is refused as a whole.
    for bad in ["../escaped", "/tmp/escaped", "a/../../escaped"] {
        let mut records = file_record(bad, b"x");
        records.push(0);
        let answer = hostile_upload(&server, &records);
        assert_eq!(answer["type"], "error", "{bad}: {answer}");
        assert!(
            answer["message"].as_str().unwrap().contains("refused")
                || answer["message"]
                    .as_str()
                    .unwrap()
                    .contains("below the tree's root"),
            "{bad}: {answer}"
        );
    }
    assert!(!server.root.join("../escaped").exists());
    assert!(!Path::new("/tmp/escaped").exists());
    server.assert_serves();
}

#[test]
fn a_tree_is_held_to_serves_max_bytes_whatever_the_client_says_of_it() {
    let server = Hosts::loopback().served(&["--max-bytes", "4K"]);
    let from = temp_dir();
    let source = from.path().join("tree");
    std::fs::create_dir(&source).unwrap();
    std::fs::write(source.join("big"), vec![7u8; 8192]).unwrap();
    let out = copy_tree(&server, &[source.as_os_str(), server.remote(".").as_ref()]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("--max-bytes"), "{}", out.stderr);

    // A client that says nothing of its size is cut off as the bytes arrive.
    let mut records = file_record("big", &[7u8; 8192]);
    records.push(0);
    let answer = hostile_upload(&server, &records);
    assert_eq!(answer["type"], "error", "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("--max-bytes"),
        "{answer}"
    );
    assert!(!server.root.join("landing/big").exists());
    assert!(leftovers(&server.root.join("landing")).is_empty());
}
