//! Helpers shared by the integration tests: run the built binary, make scratch directories.
//!
//! Scratch directories go under `$XFERBENCH_TEST_DIR` when set, else under the system temp dir.
//! Point that at a disk-backed file system: tmpfs has no O_DIRECT and no FIEMAP, and several
//! tests pin down behaviour that only a real disk file system shows.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Longest a single run of the binary may take before the test fails (and the run is killed).
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The `xferbench` binary cargo built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_xferbench"))
}

/// What one run of the binary produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `xferbench ARGS...` and returns (exit code, stdout, stderr).
pub fn run<I, S>(args: I) -> (i32, String, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = run_command(command(args));
    (out.code, out.stdout, out.stderr)
}

/// A `Command` for `xferbench ARGS...`, for tests that need to adjust it before running.
pub fn command<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(bin());
    cmd.args(args);
    cmd
}

/// Runs a prepared command with captured output, failing the test if it outlives [`RUN_TIMEOUT`].
pub fn run_command(mut cmd: Command) -> Run {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start xferbench");
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let status = wait_bounded(&mut child, RUN_TIMEOUT)
        .unwrap_or_else(|| panic!("{cmd:?} ran longer than {RUN_TIMEOUT:?} and was killed"));
    Run {
        code: exit_code(status),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Reads a pipe to the end on a thread, so a chatty child never blocks on a full pipe.
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits at most `limit` for the child; on timeout kills it, reaps it and returns None.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for xferbench") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The exit code, or 128 + the signal number when the process was killed by a signal (as a shell shows it).
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Where scratch directories are made: `$XFERBENCH_TEST_DIR`, else the system temp dir.
pub fn test_root() -> PathBuf {
    match std::env::var_os("XFERBENCH_TEST_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => std::env::temp_dir(),
    }
}

/// A fresh, empty scratch directory, removed when dropped.
pub fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("xferbench-test-")
        .tempdir_in(test_root())
        .expect("create a scratch directory")
}

/// The names in `dir`, sorted (hidden ones included).
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("listing {}: {err}", dir.display()))
        .map(|entry| {
            entry
                .expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Temporary files xferbench makes: `gen`'s `.NAME.xferbench-partial` and `disk`'s `.xferbench-disk-PID.tmp`.
pub fn leftovers(dir: &Path) -> Vec<String> {
    entries(dir)
        .into_iter()
        .filter(|name| {
            (name.starts_with('.') && name.ends_with(".xferbench-partial"))
                || (name.starts_with(".xferbench-disk-") && name.ends_with(".tmp"))
        })
        .collect()
}

/// Asserts that `dir` holds no temporary file of xferbench's.
pub fn assert_no_leftovers(dir: &Path) {
    let left = leftovers(dir);
    assert!(
        left.is_empty(),
        "temporary files left in {}: {left:?}",
        dir.display()
    );
}

/// Asserts a run succeeded, showing its output if not.
pub fn assert_success(code: i32, stdout: &str, stderr: &str) {
    assert_eq!(
        code, 0,
        "exit code {code}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "panic on stderr:\n{stderr}");
}

/// Bytes free for an unprivileged user where the scratch directories go.
pub fn free_space() -> u64 {
    xferbench::file::free_space(&test_root()).expect("statvfs of the test directory")
}

/// Makes file writes past `bytes` fail with EFBIG in the child (RLIMIT_FSIZE), to provoke a
/// failure after the output file was created.
pub fn limit_file_size(cmd: &mut Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    unsafe {
        cmd.pre_exec(move || {
            // Ignored, SIGXFSZ would kill the process instead of failing the call.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A failure as the tool promises it: exit 1, one "xferbench: ..." line, no panic.
pub fn assert_failed_cleanly(out: &Run) {
    assert_eq!(
        out.code, 1,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    assert!(
        out.stderr.starts_with("xferbench: "),
        "stderr: {}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "stderr: {}", out.stderr);
    assert!(!out.stderr.contains("panicked"));
}
