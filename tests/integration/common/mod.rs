//! Helpers shared by the integration tests: run the built binary, make scratch directories.
//!
//! Scratch directories go under `$XFERBENCH_TEST_DIR` when set, else under the system temp dir.
//! Point that at a disk-backed file system: tmpfs has no O_DIRECT and no FIEMAP, and several
//! tests pin down behaviour that only a real disk file system shows.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub mod sshd;
pub mod trees;
pub mod vm;

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
    take_share();
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

// ---- Turns: the tests that compare real rates measure on a quiet machine ----
//
// In one test binary every test may run beside every other. A test that compares real rates
// (run's verdicts, UDP held to its rate, the RDMA VM) takes [`rates_lock`]: it waits until no
// other test has a process of ours running, and while it measures, other tests wait before they
// start one. Each other test thread takes a share on its first process (in [`command`], a lab or
// a namespace) and holds it until the thread ends, which is when its test ends.

#[derive(Default)]
struct Turns {
    /// Test threads holding a share.
    sharing: usize,
    /// Whether a test that compares rates is measuring.
    measuring: bool,
}

static TURNS: std::sync::Mutex<Turns> = std::sync::Mutex::new(Turns {
    sharing: 0,
    measuring: false,
});
static TURN_CHANGED: std::sync::Condvar = std::sync::Condvar::new();

/// The turns, poisoning ignored: a failed test must not fail the ones after it.
fn turns() -> std::sync::MutexGuard<'static, Turns> {
    TURNS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One test thread's share, given back when the thread ends.
struct Share;

impl Drop for Share {
    fn drop(&mut self) {
        turns().sharing -= 1;
        TURN_CHANGED.notify_all();
    }
}

thread_local! {
    static SHARE: std::cell::RefCell<Option<Share>> = const { std::cell::RefCell::new(None) };
    static MEASURING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Before this thread starts a process of ours: waits while a test compares rates, then holds a
/// share until the thread ends. Nothing to do on the measuring thread or with a share held.
fn take_share() {
    if MEASURING.get() {
        return;
    }
    SHARE.with_borrow_mut(|share| {
        if share.is_none() {
            let mut turns = TURN_CHANGED
                .wait_while(turns(), |turns| turns.measuring)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            turns.sharing += 1;
            *share = Some(Share);
        }
    });
}

/// The turn of a test that compares real rates; the next one may start when it is dropped.
pub struct RatesTurn(());

impl Drop for RatesTurn {
    fn drop(&mut self) {
        MEASURING.set(false);
        turns().measuring = false;
        TURN_CHANGED.notify_all();
    }
}

/// Waits until no other test compares rates or has a process of ours running, and keeps other
/// tests from starting one until the turn is dropped. For the tests that measure and compare
/// real rates or need the machine quiet.
pub fn rates_lock() -> RatesTurn {
    // This thread's own share, from processes it ran before, would wait on itself.
    drop(SHARE.with_borrow_mut(Option::take));
    let mut turns = TURN_CHANGED
        .wait_while(turns(), |turns| turns.measuring || turns.sharing > 0)
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    turns.measuring = true;
    MEASURING.set(true);
    RatesTurn(())
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

/// A fresh scratch directory and the path of `name` in it (not made).
pub fn scratch_path(name: &str) -> (TempDir, PathBuf) {
    let dir = temp_dir();
    let path = dir.path().join(name);
    (dir, path)
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

/// Asserts `dir` holds nothing at all, naming what was left in it.
pub fn assert_empty_dir(dir: &Path) {
    let left = entries(dir);
    assert!(left.is_empty(), "left in {}: {left:?}", dir.display());
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
    // SAFETY: the closure only makes async-signal-safe calls (signal, setrlimit) on plain values.
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

/// Runs `xferbench ARGS...` with file writes past 8 MiB failing (see [`limit_file_size`]) and
/// asserts it failed cleanly.
pub fn fails_cleanly_past_8_mib<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = command(args);
    limit_file_size(&mut cmd, 8 << 20);
    let out = run_command(cmd);
    assert_failed_cleanly(&out);
    out
}

/// Latency figures in order, min ≤ median ≤ p99 ≤ p99.9 ≤ max, and in microseconds: a round
/// trip through a kernel or an adapter takes microseconds, never nanoseconds.
pub fn assert_latency_ordered(latency: &serde_json::Value) {
    let at = |key: &str| {
        latency[key]
            .as_f64()
            .unwrap_or_else(|| panic!("no {key}: {latency}"))
    };
    assert!(at("min_us") >= 0.5, "{latency}");
    for (low, high) in [
        ("min_us", "median_us"),
        ("median_us", "p99_us"),
        ("p99_us", "p999_us"),
        ("p999_us", "max_us"),
    ] {
        assert!(at(low) <= at(high), "{low} > {high}: {latency}");
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

/// Asserts `text` contains every one of `keys`; `what` names it in the failure message.
pub fn assert_says_all(what: &str, text: &str, keys: &[&str]) {
    for key in keys {
        assert!(text.contains(key), "{what} does not say {key:?}: {text}");
    }
}

/// A usage error as the tool promises it: exit 2, an `error: ` line (and at most clap's hint).
pub fn assert_usage_error(out: &Run) {
    assert_eq!(
        out.code, 2,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    assert!(out.stderr.starts_with("error: "), "stderr: {}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "stderr: {}", out.stderr);
}

// ---- Files ----

/// Makes a file of random bytes with `xferbench gen` (SIZE as gen takes it: "16M", "5243003").
pub fn make_file(path: &Path, size: &str) {
    let out = run_command(command([
        "gen".as_ref(),
        path.as_os_str(),
        "--size".as_ref(),
        OsStr::new(size),
        "-q".as_ref(),
    ]));
    assert_success(out.code, &out.stdout, &out.stderr);
}

/// Asserts two files hold the same bytes; on a difference names the first offset, not megabytes.
pub fn assert_same_content(expected: &Path, actual: &Path) {
    let want = std::fs::read(expected)
        .unwrap_or_else(|err| panic!("reading {}: {err}", expected.display()));
    let got =
        std::fs::read(actual).unwrap_or_else(|err| panic!("reading {}: {err}", actual.display()));
    if want != got {
        let first = want.iter().zip(&got).position(|(a, b)| a != b);
        panic!(
            "{} ({} bytes) differs from {} ({} bytes), first at byte {}",
            actual.display(),
            got.len(),
            expected.display(),
            want.len(),
            first.map_or("(one is a prefix of the other)".into(), |at| at.to_string())
        );
    }
}

/// Parses the JSON report of a successful `-J` run.
pub fn json_report(out: &Run) -> serde_json::Value {
    assert_success(out.code, &out.stdout, &out.stderr);
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|err| panic!("stdout is not JSON ({err}):\n{}", out.stdout))
}

/// Whether a JSON report warns of `kind` (it must have a warnings array).
pub fn has_warning(report: &serde_json::Value, kind: &str) -> bool {
    report["warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("no warnings array: {report:#}"))
        .iter()
        .any(|w| w["kind"] == kind)
}

/// A count of a JSON report, failing the test if it is not one.
pub fn count(value: &serde_json::Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("not a count: {value}"))
}

/// A figure of a JSON report, failing the test if it is not a number.
pub fn number(value: &serde_json::Value) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("not a number: {value}"))
}

/// Waits at most `limit` for `condition`, checking every 10 ms; returns whether it held.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `signal` to a process the test started.
pub fn send_signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill takes no pointers; the process is one the test started.
    let sent = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(
        sent,
        0,
        "kill({pid}, {signal}): {}",
        std::io::Error::last_os_error()
    );
}

/// Makes the child die with the test thread that started it, so a test run killed half-way
/// leaves no server behind (in a namespace nobody would look in).
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure only calls prctl, which is async-signal-safe, with plain values.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Starts `xferbench -q ARGS...` here, in the background.
pub fn spawn_here(args: &[&OsStr]) -> Background {
    let mut cmd =
        crate::common::command(std::iter::once(OsStr::new("-q")).chain(args.iter().copied()));
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    Background(cmd.spawn().expect("start xferbench"))
}

/// A child killed and reaped on drop, for clients run in the background.
pub struct Background(pub Child);

impl Background {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }

    /// Waits at most `limit` for it to end and returns what it printed; fails the test if it
    /// is still running by then.
    pub fn finish(mut self, limit: Duration) -> Run {
        let stdout = drain(self.0.stdout.take().expect("piped stdout"));
        let stderr = drain(self.0.stderr.take().expect("piped stderr"));
        let status = wait_bounded(&mut self.0, limit)
            .unwrap_or_else(|| panic!("still running {limit:?} later; killed"));
        Run {
            code: exit_code(status),
            stdout: stdout.join().expect("stdout reader"),
            stderr: stderr.join().expect("stderr reader"),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

// ---- Two hosts: a lab of network namespaces when root, else loopback ----

/// The token servers get in tests unless a test says otherwise (off loopback one is required).
pub const TEST_TOKEN: &str = "xferbench-test-token";

/// Two network namespaces joined by veth, made by `scripts/lab.sh`, torn down on drop.
/// Each lab has its own names (from the pid and a counter), so tests run in parallel and
/// alongside other runs of the suite.
pub struct Lab {
    prefix: String,
    subnet: String,
}

/// Set (to anything) to run the network tests on loopback even as root.
const NO_NETNS_VAR: &str = "XFERBENCH_TEST_NO_NETNS";

impl Lab {
    /// A lab of its own, shaped by `lab_args` (e.g. `["--rate", "200mbit"]`), or None when the
    /// tests cannot make one here (not root, no iproute2, or XFERBENCH_TEST_NO_NETNS set).
    /// As root with iproute2, a lab that fails to come up fails the test.
    pub fn up(lab_args: &[&str]) -> Option<Lab> {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        if !namespaces_allowed() {
            return None;
        }
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        assert!(n < 100, "more than 100 labs in one test run");
        let pid = std::process::id();
        // At most 12 characters: "xt" + 7 digits of pid + "-" + 2 digits.
        let lab = Lab {
            prefix: format!("xt{}-{n}", pid % 10_000_000),
            subnet: format!("10.{}.{n}", 100 + pid % 100),
        };
        let out = run_command(lab.script(&["up"], lab_args));
        // From here on, drop tears down whatever `up` made.
        assert_eq!(
            out.code, 0,
            "scripts/lab.sh up failed (set {NO_NETNS_VAR}=1 to test on loopback):\n{}{}",
            out.stdout, out.stderr
        );
        Some(lab)
    }

    fn script(&self, command: &[&str], args: &[&str]) -> Command {
        take_share();
        let mut cmd = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lab.sh"));
        cmd.args(command)
            .args(args)
            .env("LAB_PREFIX", &self.prefix)
            .env("LAB_SUBNET", &self.subnet);
        cmd
    }

    /// The namespace clients run in.
    pub fn client_ns(&self) -> String {
        format!("{}-a", self.prefix)
    }

    /// The namespace the server runs in.
    pub fn server_ns(&self) -> String {
        format!("{}-b", self.prefix)
    }

    /// The server's address, inside its namespace.
    pub fn server_ip(&self) -> String {
        format!("{}.2", self.subnet)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let mut down = self.script(&["down"], &[]);
        down.stdout(Stdio::null()).stderr(Stdio::null());
        let _ = down.status();
    }
}

/// True when the tests may make network namespaces here: root, iproute2, and
/// XFERBENCH_TEST_NO_NETNS unset.
fn namespaces_allowed() -> bool {
    // SAFETY: geteuid takes nothing and cannot fail.
    if std::env::var_os(NO_NETNS_VAR).is_some() || unsafe { libc::geteuid() } != 0 {
        return false;
    }
    Command::new("ip")
        .args(["netns", "list"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Hosts on one bridge, each a network namespace with its own link (optionally shaped), made by
/// `scripts/mesh-lab.sh` and torn down on drop; the coordinator runs in the bridge's namespace.
pub struct MeshLab {
    prefix: String,
    subnet: String,
    hosts: usize,
}

impl MeshLab {
    /// `hosts` hosts (1-based), shaped by `lab_args` (e.g. `["--shape", "3=200mbit"]`), or None
    /// when the tests cannot make namespaces here. As root, a lab that fails to come up fails
    /// the test.
    pub fn up(hosts: usize, lab_args: &[&str]) -> Option<MeshLab> {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        if !namespaces_allowed() {
            return None;
        }
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        assert!(n < 100, "more than 100 mesh labs in one test run");
        let pid = std::process::id();
        // At most 9 characters: "m" + 5 digits of pid + "-" + 2 digits.
        let lab = MeshLab {
            prefix: format!("m{}-{n}", pid % 100_000),
            subnet: format!("10.{}.{n}", 200 + pid % 50),
            hosts,
        };
        let out = run_command(lab.script(&["up", "--hosts", &hosts.to_string()], lab_args));
        assert_eq!(
            out.code, 0,
            "scripts/mesh-lab.sh up failed (set {NO_NETNS_VAR}=1 to skip):\n{}{}",
            out.stdout, out.stderr
        );
        Some(lab)
    }

    fn script(&self, command: &[&str], args: &[&str]) -> Command {
        take_share();
        let mut cmd =
            Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/mesh-lab.sh"));
        cmd.args(command)
            .args(args)
            .env("LAB_PREFIX", &self.prefix)
            .env("LAB_SUBNET", &self.subnet);
        cmd
    }

    /// Host `k`'s address (1-based).
    pub fn ip(&self, k: usize) -> String {
        assert!((1..=self.hosts).contains(&k), "host {k} of {}", self.hosts);
        format!("{}.{k}", self.subnet)
    }

    /// `xferbench serve --listen IP:0 --root ROOT --token TOKEN EXTRA...` in host `k`'s
    /// namespace, on a scratch root of its own; its clients run in the bridge's namespace.
    pub fn serve(&self, k: usize, token: &str, extra: &[&str]) -> Served {
        let root = temp_dir();
        let ip = self.ip(k);
        let listen = format!("{ip}:0");
        let mut args: Vec<&OsStr> = vec![
            OsStr::new("serve"),
            OsStr::new("--listen"),
            OsStr::new(&listen),
            OsStr::new("--root"),
            root.path().as_os_str(),
            OsStr::new("--token"),
            OsStr::new(token),
        ];
        args.extend(extra.iter().map(OsStr::new));
        let ns = format!("{}-h{k}", self.prefix);
        let cmd = in_namespace(Some(&ns), &args);
        let server = Server::start(cmd, ip, root.path(), Some(self.coordinator_ns()));
        Served {
            server,
            _root: root,
            hosts: Hosts::loopback(),
        }
    }

    /// The namespace of the bridge, where a coordinator reaches every host.
    pub fn coordinator_ns(&self) -> String {
        format!("{}-br", self.prefix)
    }

    /// `xferbench -q ARGS...` in the bridge's namespace.
    pub fn command(&self, args: &[&OsStr]) -> Command {
        let mut all = vec![OsStr::new("-q")];
        all.extend_from_slice(args);
        in_namespace(Some(&self.coordinator_ns()), &all)
    }
}

impl Drop for MeshLab {
    fn drop(&mut self) {
        let mut down = self.script(&["down"], &[]);
        down.stdout(Stdio::null()).stderr(Stdio::null());
        let _ = down.status();
    }
}

/// Where a test's server and clients run: the two ends of a lab of its own when the machine
/// allows it, else both on loopback.
pub struct Hosts {
    lab: Option<Lab>,
}

impl Hosts {
    /// Two namespaces joined by an unshaped veth when possible, else loopback.
    pub fn two() -> Hosts {
        Hosts { lab: Lab::up(&[]) }
    }

    /// Two namespaces joined by a link shaped to `rate` (e.g. "200mbit") when possible, else
    /// loopback (unshaped: see [`Hosts::slow_copy_args`]).
    pub fn shaped(rate: &str) -> Hosts {
        Hosts {
            lab: Lab::up(&["--rate", rate]),
        }
    }

    /// Two namespaces joined by a link set up by `lab_args` (e.g. `["--mtu", "9000"]`) when
    /// possible, else loopback.
    pub fn with(lab_args: &[&str]) -> Hosts {
        Hosts {
            lab: Lab::up(lab_args),
        }
    }

    /// Both ends on loopback, whatever the machine allows.
    pub fn loopback() -> Hosts {
        Hosts { lab: None }
    }

    pub fn lab(&self) -> Option<&Lab> {
        self.lab.as_ref()
    }

    /// Copy options that slow a copy down enough to interrupt it: none on a shaped lab link,
    /// small synchronous chunks on one stream on loopback (~20 MB/s in a debug build).
    pub fn slow_copy_args(&self) -> &'static [&'static str] {
        match self.lab {
            Some(_) => &[],
            None => &["--bs", "4K", "--iodepth", "1", "-P", "1"],
        }
    }

    /// Starts `xferbench serve --listen IP:0 --root ROOT --token TEST_TOKEN EXTRA...` on the
    /// server's end (no --token added when EXTRA gives one).
    /// The lab, or None after printing `skipped` (why the test skips here).
    pub fn lab_or_skip(&self, skipped: &str) -> Option<&Lab> {
        let lab = self.lab();
        if lab.is_none() {
            eprintln!("{skipped}");
        }
        lab
    }

    /// [`Hosts::served`] in the lab, or None after printing `skipped` when there is no lab.
    pub fn served_in_lab(self, extra: &[&str], skipped: &str) -> Option<Served> {
        self.lab_or_skip(skipped)?;
        Some(self.served(extra))
    }

    /// `xferbench serve --root ROOT EXTRA...` (as [`Hosts::serve`]) on a scratch root of its own,
    /// held together with the hosts so that none is dropped early.
    pub fn served(self, extra: &[&str]) -> Served {
        let root = temp_dir();
        let server = self.serve(root.path(), extra);
        Served {
            server,
            _root: root,
            hosts: self,
        }
    }

    pub fn serve(&self, root: &Path, extra: &[&str]) -> Server {
        let gives_token = extra.iter().any(|arg| arg.starts_with("--token"));
        let mut args = Vec::new();
        if !gives_token {
            args.extend(["--token", TEST_TOKEN]);
        }
        args.extend_from_slice(extra);
        self.serve_tokenless(root, &args)
    }

    /// Starts `xferbench serve --listen IP:0 --root ROOT EXTRA...`: no token unless EXTRA gives
    /// one (so a generated one off loopback).
    pub fn serve_tokenless(&self, root: &Path, extra: &[&str]) -> Server {
        let ip = match &self.lab {
            Some(lab) => lab.server_ip(),
            None => "127.0.0.1".to_string(),
        };
        let listen = format!("{ip}:0");
        let mut args: Vec<&OsStr> = vec![
            OsStr::new("serve"),
            OsStr::new("--listen"),
            OsStr::new(&listen),
            OsStr::new("--root"),
            root.as_os_str(),
        ];
        args.extend(extra.iter().map(OsStr::new));
        let ns = self.lab.as_ref().map(Lab::server_ns);
        let cmd = in_namespace(ns.as_deref(), &args);
        Server::start(cmd, ip, root, self.lab.as_ref().map(Lab::client_ns))
    }
}

/// A server with its scratch root and its hosts, dropped in this order (the server first). It
/// derefs to the [`Server`]: `server.root` is the root's path.
pub struct Served {
    server: Server,
    _root: TempDir,
    pub hosts: Hosts,
}

impl Served {
    /// [`copy_under_way`] between `local` and this server's root.
    pub fn copy_under_way(&self, local: &Path, way: Way) -> (Background, PathBuf, PathBuf) {
        copy_under_way(&self.hosts, self, local, way)
    }
}

impl std::ops::Deref for Served {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

impl std::ops::DerefMut for Served {
    fn deref_mut(&mut self) -> &mut Server {
        &mut self.server
    }
}

/// `xferbench ARGS...`, inside network namespace `ns` when given.
fn in_namespace(ns: Option<&str>, args: &[&OsStr]) -> Command {
    match ns {
        Some(ns) => {
            take_share();
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns]).arg(bin()).args(args);
            cmd
        }
        None => command(args),
    }
}

/// How long a server may take to say where it listens.
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running `xferbench serve`, killed on drop.
pub struct Server {
    child: Child,
    /// `IP:PORT` as clients dial it.
    pub addr: String,
    pub port: u16,
    /// The --root it was given.
    pub root: PathBuf,
    /// The token clients must give: the one given, the one generated, or none.
    pub token: Option<String>,
    /// The three lines it printed on start.
    pub banner: Vec<String>,
    /// Lines it printed after those (one per finished session), as they come.
    lines: std::sync::mpsc::Receiver<String>,
    log: Vec<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
    client_ns: Option<String>,
}

impl Server {
    fn start(mut cmd: Command, ip: String, root: &Path, client_ns: Option<String>) -> Server {
        use std::io::BufRead;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().expect("start xferbench serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = drain(child.stderr.take().expect("piped stderr"));
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            addr: String::new(),
            port: 0,
            root: root.to_path_buf(),
            token: None,
            banner: Vec::new(),
            lines,
            log: Vec::new(),
            stderr: Some(stderr),
            client_ns,
        };
        let deadline = Instant::now() + SERVER_START_TIMEOUT;
        while server.banner.len() < 3 {
            let left = deadline.saturating_duration_since(Instant::now());
            match server.lines.recv_timeout(left) {
                Ok(line) => server.banner.push(line),
                Err(_) => {
                    let _ = server.child.kill();
                    let _ = server.child.wait();
                    let stderr = server.stderr_text();
                    panic!(
                        "serve did not announce itself within {SERVER_START_TIMEOUT:?}: {:?}\nstderr:\n{stderr}",
                        server.banner
                    );
                }
            }
        }
        let port = server.banner[0]
            .strip_prefix("listening on ")
            .and_then(|addr| addr.rsplit_once(':'))
            .and_then(|(_, port)| port.parse::<u16>().ok())
            .unwrap_or_else(|| {
                panic!(
                    "first line is not 'listening on ADDR:PORT': {:?}",
                    server.banner
                )
            });
        assert_ne!(port, 0, "serve announced port 0: {:?}", server.banner);
        server.port = port;
        server.addr = format!("{ip}:{port}");
        server.token = match server.banner[2].strip_prefix("token ") {
            Some("required (as given)") => Some(given_token(&cmd_args(&cmd))),
            Some(rest) => rest.split_whitespace().next().map(str::to_string),
            None => None,
        };
        server
    }

    /// `HOST:PORT:PATH`, PATH relative to the server's root.
    pub fn remote(&self, path: &str) -> String {
        format!("{}:{path}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `xferbench ARGS...` where clients run; no token added.
    pub fn client(&self, args: &[&OsStr]) -> Command {
        in_namespace(self.client_ns.as_deref(), args)
    }

    /// `xferbench -q ARGS... [--token T]` where clients run, with the server's token if it has one.
    pub fn client_with_token(&self, args: &[&OsStr]) -> Command {
        let mut all: Vec<&OsStr> = vec!["-q".as_ref()];
        all.extend_from_slice(args);
        if let Some(token) = &self.token {
            all.extend(["--token".as_ref(), OsStr::new(token.as_str())]);
        }
        self.client(&all)
    }

    /// Runs `xferbench -q ARGS... [--token T]` where clients run.
    pub fn run(&self, args: &[&OsStr]) -> Run {
        run_command(self.client_with_token(args))
    }

    /// Starts `xferbench -q ARGS... [--token T]` in the background where clients run.
    pub fn spawn(&self, args: &[&OsStr]) -> Background {
        let mut cmd = self.client_with_token(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        Background(cmd.spawn().expect("start an xferbench client"))
    }

    /// Proves the server still serves: uploads a small new file and reads it back from the root.
    pub fn assert_serves(&self) {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = temp_dir();
        let name = format!("still-serving-{n}.data");
        let source = dir.path().join(&name);
        make_file(&source, "1M");
        let out = self.run(&[
            "copy".as_ref(),
            source.as_os_str(),
            self.remote(&name).as_ref(),
            "-P".as_ref(),
            "2".as_ref(),
        ]);
        assert_success(out.code, &out.stdout, &out.stderr);
        assert_same_content(&source, &self.root.join(&name));
        std::fs::remove_file(self.root.join(&name)).expect("remove the probe file");
    }

    /// Waits at most `limit` for a log line (after the banner) containing `needle`.
    pub fn wait_for_line(&mut self, needle: &str, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self.log.iter().find(|line| line.contains(needle)) {
                return Some(line.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.log.push(line),
                Err(_) => return None,
            }
        }
    }

    /// The log lines seen so far (after the banner).
    pub fn log(&mut self) -> Vec<String> {
        while let Ok(line) = self.lines.try_recv() {
            self.log.push(line);
        }
        self.log.clone()
    }

    pub fn signal(&self, signal: libc::c_int) {
        send_signal(self.pid(), signal);
    }

    /// Waits at most `limit` for the server to exit; None (and the server killed) if it does not.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        wait_bounded(&mut self.child, limit)
    }

    /// What it printed on stderr; only once it has exited (or been killed).
    pub fn stderr_text(&mut self) -> String {
        self.stderr
            .take()
            .map(|handle| handle.join().expect("stderr reader"))
            .unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn cmd_args(cmd: &Command) -> Vec<String> {
    cmd.get_args()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect()
}

/// The token a serve command line gives, with --token or --token-file.
fn given_token(args: &[String]) -> String {
    let after = |flag: &str| {
        args.iter()
            .position(|arg| arg == flag)
            .and_then(|at| args.get(at + 1))
    };
    if let Some(token) = after("--token") {
        return token.clone();
    }
    let file = after("--token-file").expect("a token was required, but none was given");
    std::fs::read_to_string(file)
        .expect("read the token file")
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

// ---- Copies to interrupt ----

/// Which way a copy goes, seen from the client.
#[derive(Clone, Copy, PartialEq)]
pub enum Way {
    Upload,
    Download,
}

/// How long a slow copy may take to get under way.
const UNDER_WAY_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts a slow copy of a 64 MiB file `big.data` (`way`, between `local` and the server's
/// root) and waits until it is under way: its partial file exists at the destination and bytes
/// have flowed for a while. Slow means a lab link of [`Hosts::shaped`] at 200mbit (~3 s), or
/// [`Hosts::slow_copy_args`] on loopback. Returns the client, the final destination and the
/// partial file.
pub fn copy_under_way(
    hosts: &Hosts,
    server: &Server,
    local: &Path,
    way: Way,
) -> (Background, PathBuf, PathBuf) {
    copy_over_under_way(hosts, server, local, way, None)
}

/// Like [`copy_under_way`], onto a destination that already holds `existing`, with `--force`.
pub fn copy_over_under_way(
    hosts: &Hosts,
    server: &Server,
    local: &Path,
    way: Way,
    existing: Option<&[u8]>,
) -> (Background, PathBuf, PathBuf) {
    let (source, landing) = match way {
        Way::Upload => (local.join("big.data"), server.root.clone()),
        Way::Download => (server.root.join("big.data"), local.to_path_buf()),
    };
    make_file(&source, "64M");
    let remote = server.remote("big.data");
    let mut args: Vec<&OsStr> = match way {
        Way::Upload => vec!["copy".as_ref(), source.as_os_str(), remote.as_ref()],
        Way::Download => vec!["copy".as_ref(), remote.as_ref(), local.as_os_str()],
    };
    args.extend(hosts.slow_copy_args().iter().map(OsStr::new));
    let final_path = landing.join("big.data");
    if let Some(existing) = existing {
        std::fs::write(&final_path, existing).unwrap();
        args.push("--force".as_ref());
    }
    let partial = landing.join(".big.data.xferbench-partial");
    let mut client = server.spawn(&args);
    assert!(
        wait_until(UNDER_WAY_TIMEOUT, || partial.exists() || !client.running()),
        "no partial file at the destination within {UNDER_WAY_TIMEOUT:?}"
    );
    // Let bytes flow for a while, so the copy is well under way.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        client.running(),
        "the copy ended before it could be interrupted: {:?}",
        client.finish(UNDER_WAY_TIMEOUT)
    );
    (client, final_path, partial)
}

/// A directory nobody can write in, even root: mode 0555 and, for root, the immutable flag.
/// Drop clears the flag and restores the mode so that the scratch directory can be removed.
pub struct ReadOnlyDir {
    pub path: PathBuf,
    immutable: bool,
}

impl ReadOnlyDir {
    pub fn new(path: PathBuf) -> ReadOnlyDir {
        std::fs::create_dir(&path).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o555))
            .unwrap();
        let mut dir = ReadOnlyDir {
            path,
            immutable: false,
        };
        // SAFETY: geteuid takes nothing and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            // Set before chattr runs: if chattr half-succeeds, Drop still tries to undo it.
            dir.immutable = true;
            match std::process::Command::new("chattr")
                .arg("+i")
                .arg(&dir.path)
                .status()
            {
                Ok(status) if status.success() => {}
                other => eprintln!("chattr +i {}: {other:?}", dir.path.display()),
            }
        }
        dir
    }

    /// Whether this process really cannot create a file in it.
    pub fn is_unwritable(&self) -> bool {
        let probe = self.path.join("probe");
        match std::fs::File::create(&probe) {
            Ok(_) => {
                let _ = std::fs::remove_file(&probe);
                false
            }
            Err(_) => true,
        }
    }
}

impl Drop for ReadOnlyDir {
    fn drop(&mut self) {
        if self.immutable {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(&self.path)
                .status();
        }
        let _ = std::fs::set_permissions(
            &self.path,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        );
    }
}

/// `serve` on loopback whose UDP port (the number of its TCP port) is held by the returned
/// socket, so its UDP path fails with "could not open UDP port". Tries a few ports: one free
/// for UDP may be taken for TCP. Returns serve, the holder, and `127.0.0.1:PORT`.
pub fn serve_without_udp(root: &Path) -> (Background, std::net::UdpSocket, String) {
    for _ in 0..5 {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        let Ok(holder) = std::net::UdpSocket::bind(("127.0.0.1", port)) else {
            continue;
        };
        drop(probe);
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = command(["serve", "--listen", &listen, "--root"]);
        cmd.arg(root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut serve = Background(cmd.spawn().expect("start serve"));
        let up = wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(&listen).is_ok() || !serve.running()
        });
        if up && serve.running() {
            return (serve, holder, listen);
        }
    }
    panic!("no loopback port free for both TCP and UDP after 5 tries");
}

// ---- File systems of a test's own ----

/// A file system of `kind` (tmpfs, ramfs) mounted on a fresh scratch directory, unmounted when
/// dropped; None, and a line saying the test skipped, when this process cannot mount (not root).
pub struct ScratchMount {
    pub dir: TempDir,
}

impl ScratchMount {
    /// `options` as mount -o takes them ("size=8M"), or "" for none.
    pub fn new(kind: &str, options: &str) -> Option<ScratchMount> {
        let dir = temp_dir();
        let mut mount = Command::new("mount");
        mount.args(["-t", kind]);
        if !options.is_empty() {
            mount.args(["-o", options]);
        }
        let mounted = mount
            .arg(format!("xferbench-{kind}"))
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !mounted {
            eprintln!("skipped: mounting a {kind} needs root");
        }
        mounted.then_some(ScratchMount { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for ScratchMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Writes one control frame (as a hand-made client): a 4-byte big-endian length, then the JSON.
pub fn send_frame(stream: &mut std::net::TcpStream, message: &serde_json::Value) {
    let body = serde_json::to_vec(message).unwrap();
    stream
        .write_all(&(body.len() as u32).to_be_bytes())
        .unwrap();
    stream.write_all(&body).unwrap();
}

/// Reads one control frame (as a hand-made client).
pub fn read_frame(stream: &mut std::net::TcpStream) -> serde_json::Value {
    let mut prefix = [0u8; 4];
    stream
        .read_exact(&mut prefix)
        .expect("a frame from the server");
    let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
    stream.read_exact(&mut body).expect("the frame's body");
    serde_json::from_slice(&body).expect("a JSON frame")
}
