//! Bad input: a non-zero exit, one line on stderr that says what is wrong, no panic, no file left.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::Path;

use crate::common::{ReadOnlyDir, assert_empty_dir, entries, run, scratch_path, temp_dir};

const CLAP_HINT: &str = "For more information, try '--help'.";

/// Runs xferbench with `args`, expecting a failure whose first stderr line contains every one of
/// `keys`; returns that line. Our own errors exit 1 with exactly one `xferbench: ` line; clap's
/// usage errors exit 2 with an `error: ` line and maybe its "--help" hint.
fn fails_with(args: &[&OsStr], keys: &[&str]) -> String {
    let (code, stdout, stderr) = run(args);
    let shown =
        format!("xferbench {args:?}\nexit code {code}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert_ne!(code, 0, "{shown}");
    assert!(!stderr.contains("panicked"), "{shown}");
    let lines: Vec<&str> = stderr.lines().collect();
    let first = *lines
        .first()
        .unwrap_or_else(|| panic!("nothing on stderr\n{shown}"));
    if first.starts_with("xferbench: ") {
        assert_eq!(code, 1, "{shown}");
        assert_eq!(lines.len(), 1, "more than one line on stderr\n{shown}");
    } else if first.starts_with("error: ") {
        assert_eq!(code, 2, "{shown}");
        let rest: Vec<&str> = lines[1..]
            .iter()
            .copied()
            .filter(|line| !line.trim().is_empty())
            .collect();
        assert!(
            rest.is_empty() || rest == [CLAP_HINT],
            "more than the error and clap's hint on stderr\n{shown}"
        );
    } else {
        panic!("stderr does not start with 'xferbench: ' or 'error: '\n{shown}");
    }
    for key in keys {
        assert!(
            first.contains(key),
            "the error does not say {key:?}\n{shown}"
        );
    }
    first.to_string()
}

/// `xferbench gen DIR/NAME --size SIZE EXTRA...` in a fresh directory, which must stay empty.
fn gen_fails_with(size: &str, extra: &[&str], keys: &[&str]) -> String {
    let (dir, path) = scratch_path("out.data");
    let mut args: Vec<&OsStr> = vec![
        "gen".as_ref(),
        path.as_os_str(),
        "--size".as_ref(),
        size.as_ref(),
    ];
    args.extend(extra.iter().map(OsStr::new));
    let line = fails_with(&args, keys);
    assert_empty_dir(dir.path());
    line
}

/// `xferbench disk PATH EXTRA...`, after which `dir` must hold exactly what it held before.
fn disk_fails_with(dir: &Path, path: &Path, extra: &[&str], keys: &[&str]) -> String {
    let before = entries(dir);
    let mut args: Vec<&OsStr> = vec!["disk".as_ref(), path.as_os_str()];
    args.extend(extra.iter().map(OsStr::new));
    let line = fails_with(&args, keys);
    assert_eq!(entries(dir), before, "the directory changed");
    line
}

/// `disk DIR EXTRA...` of a directory, expected to fail as [`disk_fails_with`] says.
fn disk_of_dir_fails_with(dir: &Path, extra: &[&str], keys: &[&str]) -> String {
    disk_fails_with(dir, dir, extra, keys)
}

const PLENTY: &str = "900T";

fn assert_plenty_is_more_than_free() {
    let free = crate::common::free_space();
    assert!(
        free < 900 << 40,
        "the test directory has more than 900 TiB free ({free} bytes)"
    );
}

// gen

#[test]
fn gen_rejects_a_zero_size() {
    gen_fails_with("0", &[], &["--size", "zero"]);
}

#[test]
fn gen_rejects_a_negative_size() {
    gen_fails_with("-5G", &[], &["--size", "negative"]);
}

#[test]
fn gen_rejects_an_unknown_size_unit() {
    gen_fails_with("12XB", &[], &["--size", "unknown unit", "XB"]);
}

#[test]
fn gen_rejects_a_size_larger_than_the_free_space() {
    assert_plenty_is_more_than_free();
    gen_fails_with(PLENTY, &[], &["not enough free space", "smaller --size"]);
}

#[test]
fn gen_rejects_a_path_in_a_missing_directory() {
    let (dir, missing) = scratch_path("missing");
    let path = missing.join("out.data");
    fails_with(
        &[
            "gen".as_ref(),
            path.as_os_str(),
            "--size".as_ref(),
            "8M".as_ref(),
        ],
        &["missing", "does not exist"],
    );
    assert!(!missing.exists(), "the missing directory was created");
    assert_empty_dir(dir.path());
}

#[test]
fn gen_rejects_a_read_only_directory() {
    let dir = temp_dir();
    let locked = ReadOnlyDir::new(dir.path().join("locked"));
    if !locked.is_unwritable() {
        eprintln!(
            "skipping: cannot make {} unwritable for this user",
            locked.path.display()
        );
        return;
    }
    let path = locked.path.join("out.data");
    fails_with(
        &[
            "gen".as_ref(),
            path.as_os_str(),
            "--size".as_ref(),
            "8M".as_ref(),
        ],
        &["cannot create", "permission denied"],
    );
    assert_empty_dir(&locked.path);
}

#[test]
fn gen_rejects_a_directory_as_the_file() {
    let (dir, sub) = scratch_path("sub");
    std::fs::create_dir(&sub).unwrap();
    fails_with(
        &[
            "gen".as_ref(),
            sub.as_os_str(),
            "--size".as_ref(),
            "8M".as_ref(),
        ],
        &["is a directory", "give a file name"],
    );
    assert_empty_dir(&sub);
    assert_eq!(entries(dir.path()), ["sub"]);
}

#[test]
fn gen_rejects_a_block_size_that_is_not_a_multiple_of_4096() {
    gen_fails_with("8M", &["--bs", "5000"], &["--bs 5000", "multiple of 4096"]);
}

#[test]
fn gen_rejects_an_iodepth_of_zero() {
    gen_fails_with("8M", &["--iodepth", "0"], &["--iodepth 0"]);
}

/// The `--options` an error line mentions.
fn options_mentioned(line: &str) -> BTreeSet<String> {
    line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|word| word.len() > 2 && word.starts_with("--"))
        .map(str::to_string)
        .collect()
}

fn options_accepted(subcommand: &str) -> String {
    let (code, help, stderr) = run([subcommand, "--help"]);
    assert_eq!(code, 0, "{stderr}");
    help
}

fn assert_advice_uses_only_accepted_options(subcommand: &str, line: &str) {
    let help = options_accepted(subcommand);
    for option in options_mentioned(line) {
        assert!(
            help.contains(&format!("{option} "))
                || help.contains(&format!("{option},"))
                || help.contains(&format!("{option}\n")),
            "`xferbench {subcommand}` has no {option}, yet its error mentions it: {line}"
        );
    }
}

#[test]
fn gen_errors_only_suggest_options_gen_accepts() {
    let lines = [
        gen_fails_with("0", &[], &[]),
        gen_fails_with(PLENTY, &[], &[]),
        gen_fails_with("8M", &["--bs", "5000"], &[]),
        gen_fails_with("8M", &["--iodepth", "0"], &[]),
    ];
    for line in &lines {
        assert_advice_uses_only_accepted_options("gen", line);
    }
}

// disk

#[test]
fn disk_rejects_a_missing_path() {
    let (dir, missing) = scratch_path("missing");
    disk_fails_with(dir.path(), &missing, &[], &["missing", "does not exist"]);
    assert!(!missing.exists());
}

#[test]
fn disk_rejects_an_iodepth_of_zero() {
    disk_of_dir_fails_with(
        temp_dir().path(),
        &["--size", "8M", "--iodepth", "0"],
        &["--iodepth 0"],
    );
}

#[test]
fn disk_rejects_a_block_size_that_is_not_a_multiple_of_4096() {
    disk_of_dir_fails_with(
        temp_dir().path(),
        &["--size", "8M", "--bs", "5000"],
        &["--bs 5000", "multiple of 4096"],
    );
}

#[test]
fn disk_rejects_a_zero_size() {
    disk_of_dir_fails_with(temp_dir().path(), &["--size", "0"], &["--size", "zero"]);
}

#[test]
fn disk_read_only_rejects_a_directory() {
    disk_of_dir_fails_with(
        temp_dir().path(),
        &["--read-only"],
        &["is a directory", "--read-only", "existing file"],
    );
}

#[test]
fn disk_write_only_refuses_an_existing_file() {
    let (dir, path) = scratch_path("precious.data");
    std::fs::write(&path, b"keep me").unwrap();
    disk_fails_with(
        dir.path(),
        &path,
        &["--write-only"],
        &["is an existing file", "directory"],
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
}

#[test]
fn disk_rejects_a_size_larger_than_the_free_space() {
    assert_plenty_is_more_than_free();
    let dir = temp_dir();
    disk_of_dir_fails_with(
        dir.path(),
        &["--size", PLENTY],
        &["not enough free space", "smaller --size"],
    );
    assert_empty_dir(dir.path());
}

#[test]
fn disk_errors_only_suggest_options_disk_accepts() {
    let (dir, file) = scratch_path("file.data");
    std::fs::write(&file, b"data").unwrap();
    let lines = [
        disk_fails_with(dir.path(), &dir.path().join("missing"), &[], &[]),
        disk_of_dir_fails_with(dir.path(), &["--size", "8M", "--iodepth", "0"], &[]),
        disk_of_dir_fails_with(dir.path(), &["--size", "8M", "--bs", "5000"], &[]),
        disk_of_dir_fails_with(dir.path(), &["--read-only"], &[]),
        disk_fails_with(dir.path(), &file, &["--write-only"], &[]),
        disk_of_dir_fails_with(dir.path(), &["--size", PLENTY], &[]),
    ];
    for line in &lines {
        assert_advice_uses_only_accepted_options("disk", line);
    }
}

#[cfg(not(feature = "rdma"))]
#[test]
fn a_build_without_rdma_says_how_to_get_it() {
    let (_dir, file) = scratch_path("f.bin");
    std::fs::write(&file, b"x").unwrap();
    let rebuild = ["no RDMA support", "--features rdma", "libclang"];
    fails_with(
        &["net", "127.0.0.1:9", "--via", "rdma"].map(OsStr::new),
        &rebuild,
    );
    fails_with(
        &[
            OsStr::new("copy"),
            file.as_os_str(),
            OsStr::new("127.0.0.1:9:f.bin"),
            OsStr::new("--via"),
            OsStr::new("rdma"),
        ],
        &rebuild,
    );
    fails_with(
        &["run", "127.0.0.1:9", "--via", "rdma", "--size", "1M"].map(OsStr::new),
        &["--via rdma", "no RDMA support"],
    );
}

// Every build has tcp, ssh and udp; only one without the feature lacks a path.
#[cfg(not(feature = "rdma"))]
#[test]
fn run_with_only_paths_this_build_lacks_says_so() {
    fails_with(
        &["run", "127.0.0.1:9", "--via", "rdma", "--size", "1M"].map(OsStr::new),
        &["--via rdma", "no RDMA support", "--features rdma"],
    );
}

// Usage errors found after clap parsed the line: exit 2, like clap's own.

/// Runs xferbench with `args`, expecting a usage error: exit 2, an `error: ` line containing
/// every one of `keys`, at most clap's hint after it.
fn usage_error(args: &[&str], keys: &[&str]) {
    let line = fails_with(&args.iter().map(OsStr::new).collect::<Vec<_>>(), keys);
    assert!(
        line.starts_with("error: "),
        "xferbench {args:?} is a usage error, yet it says: {line}"
    );
}

#[test]
fn flag_checks_made_after_parsing_are_usage_errors_with_exit_2() {
    let (_dir, file) = scratch_path("f.data");
    std::fs::write(&file, b"x").unwrap();
    let file = file.to_str().unwrap();
    // Port 9 (discard): nothing is dialled, every one is refused before.
    for (args, keys) in [
        (
            &["net", "127.0.0.1:9", "--via", "udp", "-l", "31"][..],
            &["-l 31"][..],
        ),
        (&["net", "127.0.0.1:9", "--via", "udp", "-P", "2"], &["-P"]),
        (
            &["net", "127.0.0.1:9", "--via", "udp", "--bidir"],
            &["--bidir"],
        ),
        (&["net", "127.0.0.1:9", "-b", "1G"], &["--via udp"]),
        (&["net", "127.0.0.1:9", "--via", "rdma", "-R"], &["-R"]),
        (
            &["net", "127.0.0.1:9", "--via", "rdma", "-Q", "0"],
            &["-Q 0"],
        ),
        (&["net", "127.0.0.1:9", "--via", "ssh", "-w", "1M"], &["-w"]),
        (&["net", "ann@127.0.0.1:9"], &["--via ssh"]),
        (
            &["lat", "127.0.0.1:9", "--via", "rdma", "-s", "16"],
            &["-s 8"],
        ),
        (
            &["lat", "127.0.0.1:9", "--via", "udp", "-s", "65508"],
            &["65507"],
        ),
        (
            &["copy", file, "127.0.0.1:9:f", "--bs", "1MB"],
            &["--bs 1000000"],
        ),
        (
            &["copy", file, "127.0.0.1:9:f", "--iodepth", "0"],
            &["--iodepth 0"],
        ),
        (&["copy", file, "127.0.0.1:9:f", "--via", "udp"], &["udp"]),
        (
            &["copy", file, "127.0.0.1:9:f", "--via", "rdma", "--resume"],
            &["--resume over rdma", "--via tcp", "--via ssh"],
        ),
        (
            &["copy", "127.0.0.1:9:f", file, "--via", "ssh", "--verify"],
            &["--verify", "download"],
        ),
        (
            &[
                "copy",
                "-r",
                file,
                "127.0.0.1:9:f",
                "--via",
                "ssh",
                "--verify",
            ],
            &["--verify", "tree"],
        ),
        (
            &["copy", file, "elsewhere.data", "--via", "tcp"],
            &["--via tcp", "local"],
        ),
        (&["copy", "127.0.0.1:9:a", "127.0.0.1:9:b"], &["remote"]),
        (&["copy", file, "127.0.0.1:0:f"], &["port"]),
        (
            &["gen", file, "--size", "8M", "--bs", "5000"],
            &["--bs 5000"],
        ),
        (&["disk", file, "--iodepth", "0"], &["--iodepth 0"]),
        (
            &["run", "127.0.0.1:9", "--via", "tcp,carrier-pigeon"],
            &["carrier-pigeon"],
        ),
        (
            &["run", "127.0.0.1:9", "--size", "4K", "--bs", "1M"],
            &["--size"],
        ),
        (&["run", "127.0.0.1:0"], &["port"]),
        (
            &["run", "127.0.0.1:9", "--file-size", "0"],
            &["--file-size", "is zero"],
        ),
    ] {
        usage_error(args, keys);
    }
}

#[test]
fn seconds_flags_refuse_only_what_their_message_excludes() {
    // Refused: exit 2, and the message's range leaves the value out.
    for (args, range) in [
        (
            &["net", "127.0.0.1:9", "-t", "0"][..],
            "above 0 and at most 86400",
        ),
        (
            &["net", "127.0.0.1:9", "-t", "86401"],
            "above 0 and at most 86400",
        ),
        (
            &["lat", "127.0.0.1:9", "-t", "0"],
            "above 0 and at most 86400",
        ),
        (
            &["run", "127.0.0.1:9", "-t", "0"],
            "above 0 and at most 86400",
        ),
        (
            &["serve", "--idle-timeout", "0"],
            "above 0 and at most 86400",
        ),
        (&["net", "127.0.0.1:9", "-O", "3601"], "from 0 to 3600"),
        (&["net", "127.0.0.1:9", "-i", "0.05"], "from 0.1 to 3600"),
    ] {
        usage_error(args, &[range]);
    }
    // Accepted: the ends of each range get past parsing (and fail later, at the closed port).
    for args in [
        &["net", "127.0.0.1:9", "-t", "86400"][..],
        &["net", "127.0.0.1:9", "-t", "0.5", "-O", "0"],
        &["net", "127.0.0.1:9", "-t", "1", "-O", "3600", "-i", "0.1"],
        &["lat", "127.0.0.1:9", "-t", "0.5"],
    ] {
        let (code, _, stderr) = run(args);
        assert_eq!(code, 1, "xferbench {args:?}: {stderr}");
        assert!(stderr.contains("cannot connect"), "{args:?}: {stderr}");
    }
}
