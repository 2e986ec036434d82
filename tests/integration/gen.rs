//! `xferbench gen FILE --size SIZE [--fill random|zero|none] [--force] [-q]`.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::{
    assert_empty_dir, assert_no_leftovers, assert_success, command, entries, run, scratch_path,
    temp_dir, wait_bounded,
};
use xferbench::file::extents::map_extents;
use xferbench::file::unwritten_warning;

const MIB: u64 = 1 << 20;

/// Runs `gen` quietly and asserts it succeeded; returns stdout and stderr.
fn gen_ok(path: &Path, size: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec![
        "gen".as_ref(),
        path.as_os_str(),
        "--size".as_ref(),
        size.as_ref(),
        "-q".as_ref(),
    ];
    args.extend(extra.iter().map(|arg| std::ffi::OsStr::new(*arg)));
    let (code, stdout, stderr) = run(&args);
    assert_success(code, &stdout, &stderr);
    (stdout, stderr)
}

fn assert_all_4k_blocks_differ(data: &[u8]) {
    let blocks: Vec<&[u8]> = data.chunks(4096).collect();
    let distinct: HashSet<&[u8]> = blocks.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        blocks.len(),
        "{} of {} 4 KiB blocks are repeats",
        blocks.len() - distinct.len(),
        blocks.len()
    );
}

#[test]
fn gen_makes_a_file_of_exactly_the_requested_round_size() {
    let (dir, path) = scratch_path("round.data");
    let (stdout, _) = gen_ok(&path, "8M", &[]);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 8 * MIB);
    assert!(stdout.contains("(8388608 bytes)"), "stdout: {stdout}");
    assert_eq!(entries(dir.path()), ["round.data"]);
}

#[test]
fn gen_makes_a_file_of_exactly_the_requested_odd_size_filled_to_the_last_byte() {
    // 1000001 = 244 × 4096 + 577: the last O_DIRECT write is padded and the file truncated after.
    let (dir, path) = scratch_path("odd.data");
    gen_ok(&path, "1000001", &[]);
    let data = std::fs::read(&path).unwrap();
    assert_eq!(data.len(), 1_000_001);
    assert_all_4k_blocks_differ(&data);
    let tail = &data[999_424..];
    assert_eq!(tail.len(), 577);
    assert!(
        tail.iter().any(|&b| b != 0),
        "the short tail block was not filled"
    );
    assert_eq!(entries(dir.path()), ["odd.data"]);
}

#[test]
fn gen_takes_decimal_units_as_powers_of_1000() {
    let (_dir, path) = scratch_path("decimal.data");
    gen_ok(&path, "8MB", &[]);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 8_000_000);
}

#[test]
fn gen_random_fill_has_no_repeated_4k_blocks() {
    let (_dir, path) = scratch_path("random.data");
    gen_ok(&path, "8M", &["--fill", "random"]);
    let data = std::fs::read(&path).unwrap();
    assert_eq!(data.len() as u64, 8 * MIB);
    assert_all_4k_blocks_differ(&data);
}

#[test]
fn gen_random_fill_does_not_compress() {
    let (_dir, path) = scratch_path("random.data");
    // The default fill is random.
    gen_ok(&path, "8M", &[]);
    let data = std::fs::read(&path).unwrap();
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&data).unwrap();
    let compressed = encoder.finish().unwrap();
    assert!(
        compressed.len() as f64 >= 0.99 * data.len() as f64,
        "{} bytes deflated to {} ({:.1}%)",
        data.len(),
        compressed.len(),
        100.0 * compressed.len() as f64 / data.len() as f64
    );
}

#[test]
fn gen_zero_fill_writes_zeros_and_warns_about_them() {
    let (_dir, path) = scratch_path("zero.data");
    let (_, stderr) = gen_ok(&path, "8M", &["--fill", "zero"]);
    let data = std::fs::read(&path).unwrap();
    assert_eq!(data.len() as u64, 8 * MIB);
    assert!(
        data.iter().all(|&b| b == 0),
        "--fill zero wrote non-zero bytes"
    );
    assert!(
        stderr
            .lines()
            .any(|line| line.starts_with("warning:") && line.contains("zeros")),
        "stderr: {stderr}"
    );
    // Zeros are written for real, not left as unwritten extents.
    match map_extents(&File::open(&path).unwrap()) {
        Ok(map) => assert_eq!((map.unwritten_bytes, map.hole_bytes), (0, 0), "{map:?}"),
        Err(err) => eprintln!("skipping the extent check: FIEMAP unsupported here ({err})"),
    }
}

#[test]
fn gen_fill_none_leaves_the_file_unwritten_and_warns() {
    let (_dir, path) = scratch_path("none.data");
    let (stdout, stderr) = gen_ok(&path, "64M", &["--fill", "none"]);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 64 * MIB);
    assert!(stdout.contains("allocated only"), "stdout: {stdout}");
    assert!(
        stderr
            .lines()
            .any(|line| line.starts_with("warning:") && line.contains("never written")),
        "no --fill none warning on stderr: {stderr}"
    );
    let file = File::open(&path).unwrap();
    let map =
        map_extents(&file).expect("FIEMAP on the test directory (is XFERBENCH_TEST_DIR on tmpfs?)");
    assert_eq!(map.size, 64 * MIB);
    assert_eq!(map.unwritten_bytes, 64 * MIB, "{map:?}");
    assert_eq!(map.zero_fraction(), 1.0);
    assert!(unwritten_warning(&file, &path).is_some());
}

#[test]
fn gen_random_fill_leaves_no_unwritten_extents_or_holes() {
    let (_dir, path) = scratch_path("random.data");
    gen_ok(&path, "8M", &[]);
    let file = File::open(&path).unwrap();
    let map =
        map_extents(&file).expect("FIEMAP on the test directory (is XFERBENCH_TEST_DIR on tmpfs?)");
    assert_eq!(
        map,
        xferbench::file::extents::ExtentMap {
            size: 8 * MIB,
            unwritten_bytes: 0,
            hole_bytes: 0
        }
    );
    assert_eq!(unwritten_warning(&file, &path), None);
}

#[test]
fn gen_refuses_to_overwrite_without_force() {
    let (dir, path) = scratch_path("precious.data");
    std::fs::write(&path, b"keep me").unwrap();
    let (code, stdout, stderr) = run([
        "gen".as_ref(),
        path.as_os_str(),
        "--size".as_ref(),
        "8M".as_ref(),
    ]);
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.starts_with("xferbench: "), "stderr: {stderr}");
    assert!(
        stderr.contains("already exists") && stderr.contains("--force"),
        "stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"));
    assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
    assert_eq!(entries(dir.path()), ["precious.data"]);
}

#[test]
fn gen_replaces_an_existing_file_with_force() {
    let (dir, path) = scratch_path("old.data");
    std::fs::write(&path, b"old content").unwrap();
    gen_ok(&path, "8M", &["--force"]);
    let data = std::fs::read(&path).unwrap();
    assert_eq!(data.len() as u64, 8 * MIB);
    assert_ne!(&data[..11], b"old content");
    assert_all_4k_blocks_differ(&data);
    assert_eq!(entries(dir.path()), ["old.data"]);
}

#[test]
fn gen_force_that_fails_keeps_the_old_file_whole() {
    // A file size limit below --size makes the new file's allocation fail half-way through
    // the replacement: the old file must still be there, unchanged.
    let (dir, path) = scratch_path("old.data");
    std::fs::write(&path, b"old content").unwrap();
    crate::common::fails_cleanly_past_8_mib([
        "gen".as_ref(),
        path.as_os_str(),
        "--size".as_ref(),
        "64M".as_ref(),
        "--force".as_ref(),
    ]);
    assert_eq!(std::fs::read(&path).unwrap(), b"old content");
    assert_eq!(entries(dir.path()), ["old.data"]);
}

/// A tmpfs of `size` mounted on a new directory (root only), unmounted when dropped.
struct SmallFileSystem {
    dir: tempfile::TempDir,
}

impl SmallFileSystem {
    fn mount(size: &str) -> Option<SmallFileSystem> {
        let dir = temp_dir();
        let mounted = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "xferbench-test",
            ])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        mounted.then_some(SmallFileSystem { dir })
    }
}

impl Drop for SmallFileSystem {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn gen_force_without_room_beside_the_old_file_refuses_and_keeps_it() {
    let Some(small) = SmallFileSystem::mount("24M") else {
        eprintln!("skipping: mounting a small tmpfs needs root");
        return;
    };
    let path = small.dir.path().join("old.data");
    let old = vec![7u8; 16 << 20];
    std::fs::write(&path, &old).unwrap();
    let (code, stdout, stderr) = run([
        "gen".as_ref(),
        path.as_os_str(),
        "--size".as_ref(),
        "16M".as_ref(),
        "--force".as_ref(),
    ]);
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.contains("beside the old one") && stderr.contains("kept until the new one"),
        "stderr: {stderr}"
    );
    assert!(std::fs::read(&path).unwrap() == old, "the old file changed");
    assert_eq!(entries(small.dir.path()), ["old.data"]);
}

#[test]
fn gen_leaves_no_partial_file_after_success() {
    let dir = temp_dir();
    for (name, fill) in [("a", "random"), ("b", "zero"), ("c", "none")] {
        gen_ok(&dir.path().join(name), "8M", &["--fill", fill]);
        assert_no_leftovers(dir.path());
    }
    assert_eq!(entries(dir.path()), ["a", "b", "c"]);
}

#[test]
fn gen_leaves_no_partial_file_when_allocation_fails() {
    // A file size limit (RLIMIT_FSIZE) below --size makes fallocate fail with EFBIG after the
    // partial file was created: the failure path must remove it.
    let (dir, path) = scratch_path("limited.data");
    crate::common::fails_cleanly_past_8_mib([
        "gen".as_ref(),
        path.as_os_str(),
        "--size".as_ref(),
        "64M".as_ref(),
    ]);
    assert_no_leftovers(dir.path());
    assert_empty_dir(dir.path());
}

/// Kills the child if the test fails while it runs.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn gen_ctrl_c_exits_130_and_removes_the_partial_file() {
    const NEEDED: u64 = 20_000_000_000;
    let free = crate::common::free_space();
    if free < NEEDED {
        eprintln!(
            "skipping: {free} bytes free under {}, the Ctrl-C test needs 20 GB",
            crate::common::test_root().display()
        );
        return;
    }
    let (dir, path) = scratch_path("big.data");
    let partial = dir.path().join(".big.data.xferbench-partial");
    let child = command([
        "gen".as_ref(),
        path.as_os_str(),
        "--size".as_ref(),
        "8G".as_ref(),
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start xferbench gen");
    let mut child = KillOnDrop(child);

    let deadline = Instant::now() + Duration::from_secs(10);
    while !partial.exists() {
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!("gen ended ({status}) before its partial file was seen");
        }
        assert!(
            Instant::now() < deadline,
            "no {} within 10 s",
            partial.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "gen finished before it could be interrupted"
    );
    assert_eq!(
        // SAFETY: kill takes no pointers; the child is ours and still running.
        unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGINT) },
        0
    );

    let status = wait_bounded(&mut child.0, Duration::from_secs(30))
        .expect("gen did not stop within 30 s of SIGINT");
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(crate::common::exit_code(status), 130, "stderr: {stderr}");
    assert!(stderr.contains("interrupted"), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
    assert!(!path.exists(), "the final file exists after Ctrl-C");
    assert!(!partial.exists(), "the partial file was left after Ctrl-C");
    assert_empty_dir(dir.path());
}
