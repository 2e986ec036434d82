//! `xferbench copy -r` between local paths: trees compared entry by entry (kind, bytes, mode,
//! modification time, link target), the files that cannot be read, the ones that change while
//! they are read, and a copy stopped half way.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::common::trees::{assert_same_tree, varied_tree};
use crate::common::{
    assert_failed_cleanly, assert_success, assert_usage_error, json_report, make_file, run_command,
    spawn_here, temp_dir, wait_until,
};

fn copy_tree(args: &[&OsStr]) -> crate::common::Run {
    let mut all: Vec<&OsStr> = vec!["copy".as_ref(), "-r".as_ref()];
    all.extend_from_slice(args);
    run_command(crate::common::command(all))
}

#[test]
fn a_tree_lands_byte_for_byte_with_modes_times_links_and_empty_directories() {
    let (from, to) = (temp_dir(), temp_dir());
    let source = from.path().join("tree");
    varied_tree(&source);
    let out = copy_tree(&[source.as_os_str(), to.path().as_os_str(), "-J".as_ref()]);
    assert_success(out.code, &out.stdout, &out.stderr);
    let landed = to.path().join("tree");
    assert_same_tree(&source, &landed);
    let report = json_report(&out);
    assert_eq!(report["command"], "copy", "{report:#}");
    assert_eq!(report["path"], "local", "{report:#}");
    assert_eq!(report["destination"], landed.display().to_string());
    assert_eq!(report["landed"]["files"], 4, "{report:#}");
    assert_eq!(report["landed"]["symlinks"], 3, "{report:#}");
    assert_eq!(report["landed"]["directories"], 5, "{report:#}");
    let bytes = 3 * 1024 * 1024 + 12 + 4;
    assert_eq!(report["landed"]["bytes"], bytes, "{report:#}");
    assert_eq!(report["measurement"]["bytes"], bytes, "{report:#}");
    assert_eq!(report["fsync"], "each", "{report:#}");
    assert_eq!(report["failed"]["total"], 0, "{report:#}");
    assert!(
        report["files_per_sec"].as_f64().unwrap() > 0.0,
        "{report:#}"
    );
    // The loop was kept as a link, not followed: nothing below it was made.
    assert!(
        std::fs::symlink_metadata(landed.join("a/b/c/loop"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn a_tree_onto_a_new_name_lands_as_it_and_onto_that_directory_again_lands_inside_it() {
    let (from, to) = (temp_dir(), temp_dir());
    let source = from.path().join("tree");
    varied_tree(&source);
    let landed = to.path().join("renamed");
    let out = copy_tree(&[source.as_os_str(), landed.as_os_str()]);
    assert_success(out.code, &out.stdout, &out.stderr);
    assert_same_tree(&source, &landed);
    assert!(
        out.stdout.contains("4 files, 5 directories, 3 links"),
        "{}",
        out.stdout
    );
    // As cp -r does: DEST now exists, so the tree goes inside it under its own name.
    let again = copy_tree(&[source.as_os_str(), landed.as_os_str()]);
    assert_success(again.code, &again.stdout, &again.stderr);
    assert_same_tree(&source, &landed.join("tree"));
}

#[test]
fn a_tree_copied_again_replaces_nothing_without_force_and_everything_with_it() {
    let (from, to) = (temp_dir(), temp_dir());
    let source = from.path().join("tree");
    varied_tree(&source);
    let out = copy_tree(&[source.as_os_str(), to.path().as_os_str()]);
    assert_success(out.code, &out.stdout, &out.stderr);
    let landed = to.path().join("tree");
    // Its read-only directory opened again, so that the forced copy can write in it without
    // root's powers.
    std::fs::write(landed.join("top"), b"changed\n").unwrap();
    std::fs::set_permissions(landed.join("a/b/c"), PermissionsExt::from_mode(0o755)).unwrap();

    let again = copy_tree(&[source.as_os_str(), to.path().as_os_str()]);
    assert_eq!(again.code, 1, "{again:?}");
    assert!(
        again.stdout.contains("already exists: add --force"),
        "{}",
        again.stdout
    );
    assert!(
        again.stderr.contains("7 of the tree's entries failed"),
        "{}",
        again.stderr
    );
    assert_eq!(std::fs::read(landed.join("top")).unwrap(), b"changed\n");

    let forced = copy_tree(&[
        source.as_os_str(),
        to.path().as_os_str(),
        "--force".as_ref(),
    ]);
    assert_success(forced.code, &forced.stdout, &forced.stderr);
    assert_same_tree(&source, &landed);
}

#[test]
fn ten_thousand_small_files_land_with_one_syncfs_and_are_counted() {
    let (from, to) = (temp_dir(), temp_dir());
    let source = from.path().join("many");
    for dir in 0..100 {
        let dir_path = source.join(format!("d{dir:03}"));
        std::fs::create_dir_all(&dir_path).unwrap();
        for file in 0..100 {
            std::fs::write(
                dir_path.join(format!("f{file:03}")),
                format!("{dir}/{file}\n"),
            )
            .unwrap();
        }
    }
    let out = copy_tree(&[
        source.as_os_str(),
        to.path().as_os_str(),
        "--fsync".as_ref(),
        "end".as_ref(),
        "-J".as_ref(),
    ]);
    assert_success(out.code, &out.stdout, &out.stderr);
    assert_same_tree(&source, &to.path().join("many"));
    let report = json_report(&out);
    assert_eq!(report["landed"]["files"], 10_000, "{report:#}");
    assert_eq!(report["landed"]["directories"], 101, "{report:#}");
    assert_eq!(report["fsync"], "end", "{report:#}");
}

#[test]
fn an_empty_tree_and_a_one_file_tree_land() {
    let (from, to) = (temp_dir(), temp_dir());
    let empty = from.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = copy_tree(&[empty.as_os_str(), to.path().as_os_str(), "-J".as_ref()]);
    assert_success(out.code, &out.stdout, &out.stderr);
    assert!(to.path().join("empty").is_dir());
    assert_eq!(json_report(&out)["landed"]["files"], 0);

    let one = from.path().join("one");
    std::fs::create_dir(&one).unwrap();
    make_file(&one.join("f"), "100K");
    let out = copy_tree(&[one.as_os_str(), to.path().as_os_str(), "--verify".as_ref()]);
    assert_success(out.code, &out.stdout, &out.stderr);
    assert_same_tree(&one, &to.path().join("one"));
    assert!(out.stdout.contains("verified:"), "{}", out.stdout);
}

/// Runs `xferbench ARGS` as a user who cannot read what root can (root reads everything),
/// or as this user when not root.
fn as_unprivileged(args: &[&OsStr]) -> crate::common::Run {
    // SAFETY: geteuid takes nothing and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return copy_tree(args);
    }
    let mut command = std::process::Command::new("setpriv");
    command.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
    command
        .arg(crate::common::bin())
        .args(["copy", "-r"])
        .args(args);
    run_command(command)
}

/// Opens `dir` and its parents to everyone, so the unprivileged user can reach it.
fn open_to_all(dir: &Path) {
    std::fs::set_permissions(dir, PermissionsExt::from_mode(0o777)).unwrap();
}

#[test]
fn an_unreadable_file_is_named_the_rest_land_and_the_exit_is_1() {
    let (from, to) = (temp_dir(), temp_dir());
    open_to_all(from.path());
    open_to_all(to.path());
    let source = from.path().join("tree");
    std::fs::create_dir_all(source.join("sub")).unwrap();
    std::fs::write(source.join("readable"), b"yes\n").unwrap();
    std::fs::write(source.join("sub/secret"), b"no\n").unwrap();
    std::fs::write(source.join("sub/after"), b"also yes\n").unwrap();
    std::fs::set_permissions(source.join("sub/secret"), PermissionsExt::from_mode(0o000)).unwrap();
    for dir in [&source, &source.join("sub")] {
        std::fs::set_permissions(dir, PermissionsExt::from_mode(0o755)).unwrap();
    }
    let out = as_unprivileged(&[source.as_os_str(), to.path().as_os_str()]);
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
    let landed = to.path().join("tree");
    assert_eq!(std::fs::read(landed.join("readable")).unwrap(), b"yes\n");
    assert_eq!(
        std::fs::read(landed.join("sub/after")).unwrap(),
        b"also yes\n"
    );
    assert!(!landed.join("sub/secret").exists());
    assert!(crate::common::leftovers(&landed.join("sub")).is_empty());
}

#[test]
fn a_fifo_is_skipped_and_listed_without_failing_the_copy() {
    let (from, to) = (temp_dir(), temp_dir());
    let source = from.path().join("tree");
    std::fs::create_dir(&source).unwrap();
    std::fs::write(source.join("file"), b"x").unwrap();
    let fifo = std::ffi::CString::new(source.join("pipe").to_str().unwrap()).unwrap();
    // SAFETY: a valid C string mkfifo only reads.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let out = copy_tree(&[source.as_os_str(), to.path().as_os_str()]);
    assert_success(out.code, &out.stdout, &out.stderr);
    assert!(out.stdout.contains("skipped: 1"), "{}", out.stdout);
    assert!(
        out.stdout.contains("pipe: not a file, directory or link"),
        "{}",
        out.stdout
    );
    assert!(!to.path().join("tree/pipe").exists());
}

#[test]
fn copy_r_refuses_a_file_a_tree_into_itself_and_a_stall_bound() {
    let dir = temp_dir();
    let source = dir.path().join("tree");
    std::fs::create_dir(&source).unwrap();
    std::fs::write(source.join("f"), b"x").unwrap();

    let out = copy_tree(&[
        source.join("f").as_os_str(),
        dir.path().join("g").as_os_str(),
    ]);
    assert_failed_cleanly(&out);
    assert!(
        out.stderr
            .contains("is not a directory: copy -r copies a directory tree"),
        "{}",
        out.stderr
    );

    let out = copy_tree(&[source.as_os_str(), source.join("inside").as_os_str()]);
    assert_failed_cleanly(&out);
    assert!(
        out.stderr.contains("lies inside the tree being copied"),
        "{}",
        out.stderr
    );
    assert_eq!(crate::common::entries(&source), vec!["f"]);

    let out = copy_tree(&[
        source.as_os_str(),
        dir.path().join("x").as_os_str(),
        "--timeout".as_ref(),
        "5".as_ref(),
    ]);
    assert_usage_error(&out);
}

#[test]
fn a_file_that_grows_while_it_is_read_is_reported_as_changed() {
    let (from, to) = (temp_dir(), temp_dir());
    let source = from.path().join("tree");
    std::fs::create_dir(&source).unwrap();
    let growing = source.join("growing");
    make_file(&growing, "64M");
    let client = spawn_here(&[
        "copy".as_ref(),
        "-r".as_ref(),
        source.as_os_str(),
        to.path().as_os_str(),
        "--bs".as_ref(),
        "4K".as_ref(),
        "-J".as_ref(),
    ]);
    let partial = to.path().join("tree/.growing.xferbench-partial");
    assert!(
        wait_until(Duration::from_secs(30), || partial.exists()),
        "the copy never began"
    );
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&growing)
        .unwrap();
    std::io::Write::write_all(&mut file, b"more").unwrap();
    drop(file);
    let out = client.finish(Duration::from_secs(120));
    if out.code == 0 && json_report(&out)["changed"]["total"] == 0 {
        // The copy had read the whole file before the append: nothing to say about it.
        let landed = std::fs::metadata(to.path().join("tree/growing"))
            .unwrap()
            .len();
        assert_eq!(landed, 64 << 20, "the append landed without being reported");
        return;
    }
    assert_success(out.code, &out.stdout, &out.stderr);
    let report = json_report(&out);
    assert_eq!(report["changed"]["total"], 1, "{report:#}");
    assert!(
        report["changed"]["shown"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with("growing")
    );
}

#[test]
fn a_tree_copy_killed_half_way_leaves_only_whole_files_under_final_names() {
    let (from, to) = (temp_dir(), temp_dir());
    let source = from.path().join("tree");
    let (seed_dir, seed) = crate::common::scratch_path("seed");
    make_file(&seed, "4M");
    for dir in 0..4 {
        std::fs::create_dir_all(source.join(format!("d{dir}"))).unwrap();
        for file in 0..12 {
            std::fs::copy(&seed, source.join(format!("d{dir}/f{file}"))).unwrap();
        }
    }
    drop(seed_dir);
    let mut client = spawn_here(&[
        "copy".as_ref(),
        "-r".as_ref(),
        source.as_os_str(),
        to.path().as_os_str(),
        "--bs".as_ref(),
        "4K".as_ref(),
        "-P".as_ref(),
        "1".as_ref(),
    ]);
    let first = to.path().join("tree/d0/f0");
    assert!(
        wait_until(Duration::from_secs(60), || first.exists()),
        "no file landed"
    );
    assert!(client.running(), "the copy ended before it could be killed");
    crate::common::send_signal(client.pid(), libc::SIGKILL);
    let _ = client.0.wait();
    let mut whole = 0;
    for dir in 0..4 {
        let landed = to.path().join(format!("tree/d{dir}"));
        let Ok(names) = std::fs::read_dir(&landed) else {
            continue;
        };
        for name in names {
            let name = name.unwrap().file_name().to_string_lossy().into_owned();
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
}
