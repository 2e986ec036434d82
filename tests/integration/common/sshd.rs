//! A real OpenSSH `sshd` of the test's own, on a free port of 127.0.0.1, for the `--via ssh`
//! tests: its own host key, client key, `authorized_keys`, `known_hosts` and `sshd_config` in
//! a scratch directory; nothing of the machine's SSH setup (`/etc/ssh`, `~/.ssh`) is read or
//! changed, and no system sshd is needed or touched.
//!
//! [`Sshd::start`] returns None when OpenSSH is not installed, so tests can skip; `.ci/run`
//! installs it. sshd dies with the test: killed on drop, and with the test thread that started
//! it should the test runner itself be killed.

use std::ffi::OsStr;
use std::io::{BufRead, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{RUN_TIMEOUT, Run, die_with_parent, drain, exit_code, temp_dir, wait_bounded};

/// Longest sshd may take to accept a login, per port tried.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Ports tried when the free port found is taken before sshd binds it.
const PORT_ATTEMPTS: u32 = 5;
/// Longest sshd may take to exit after SIGTERM on drop before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// The address sshd listens on and clients dial.
const HOST: &str = "127.0.0.1";
/// Where sshd looks for its privilege-separation directory when run as root (Debian's
/// build; the init script or systemd unit makes it, so it is missing when no system sshd ever
/// ran).
const PRIVSEP_DIR: &str = "/run/sshd";

/// A running sshd of the test's own; killed on drop, its scratch directory removed.
pub struct Sshd {
    child: Option<Child>,
    /// What sshd printed on stderr (`-e`, `LogLevel ERROR`), as it comes.
    log: Arc<Mutex<String>>,
    port: u16,
    user: String,
    ssh: PathBuf,
    scp: Option<PathBuf>,
    client_key: PathBuf,
    known_hosts: PathBuf,
    host_key_pub: PathBuf,
    /// An empty file given to ssh and scp as `-F`, so no ssh_config of the machine applies.
    client_config: PathBuf,
    /// How long the last start took, from spawning sshd to the first successful login.
    started_in: Duration,
    // Held only to be removed on drop; last, so it is removed after sshd is gone.
    _dir: TempDir,
}

/// Why one start of sshd did not come up.
enum Failure {
    /// The port was taken before sshd could bind it: worth another port.
    PortTaken(String),
    Other(String),
}

impl Sshd {
    /// Starts an sshd on a free port of 127.0.0.1 and waits until `ssh` logs in with the
    /// client key. None (saying why on stderr) when sshd, ssh or ssh-keygen is not installed;
    /// an sshd that is installed but does not come up fails the test.
    pub fn start() -> Option<Sshd> {
        Sshd::start_with("")
    }

    /// [`Sshd::start`] with extra lines appended to its sshd_config (e.g. `SetEnv PATH=...`).
    pub fn start_with(extra_config: &str) -> Option<Sshd> {
        Sshd::start_checked(extra_config, true)
    }

    /// [`Sshd::start_with`] for a config that refuses the client key (e.g. password logins
    /// only): waits until sshd speaks SSH, without logging in.
    pub fn start_without_login(extra_config: &str) -> Option<Sshd> {
        Sshd::start_checked(extra_config, false)
    }

    fn start_checked(extra_config: &str, login: bool) -> Option<Sshd> {
        let sshd = match find_sshd() {
            Some(path) => path,
            None => {
                eprintln!("sshd not found (install openssh-server)");
                return None;
            }
        };
        let mut tools = Vec::new();
        for name in ["ssh-keygen", "ssh"] {
            match find_in_path(name) {
                Some(path) => tools.push(path),
                None => {
                    eprintln!("{name} not found (install openssh-client)");
                    return None;
                }
            }
        }
        let (keygen, ssh) = (tools[0].clone(), tools[1].clone());
        // SAFETY: geteuid takes nothing and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            ensure_privsep_dir();
        }

        let dir = temp_dir();
        // Absolute, as sshd_config wants its paths.
        let base = dir
            .path()
            .canonicalize()
            .expect("canonicalize the sshd directory");
        let host_key = base.join("ssh_host_ed25519_key");
        let client_key = base.join("id_ed25519");
        make_key(&keygen, &host_key);
        make_key(&keygen, &client_key);
        let authorized_keys = base.join("authorized_keys");
        std::fs::copy(pub_path(&client_key), &authorized_keys).expect("write authorized_keys");
        let client_config = base.join("ssh_config");
        std::fs::write(&client_config, "").expect("write an empty ssh_config");

        let mut server = Sshd {
            child: None,
            log: Arc::new(Mutex::new(String::new())),
            port: 0,
            user: current_user(),
            ssh,
            scp: find_in_path("scp"),
            client_key,
            known_hosts: base.join("known_hosts"),
            host_key_pub: pub_path(&host_key),
            client_config,
            started_in: Duration::ZERO,
            _dir: dir,
        };
        let config = base.join("sshd_config");
        let pid_file = base.join("sshd.pid");
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            server.port = port;
            server.write_known_hosts();
            std::fs::write(
                &config,
                sshd_config(port, &host_key, &authorized_keys, &pid_file) + extra_config,
            )
            .expect("write sshd_config");
            match server.run_sshd(&sshd, &config, login) {
                Ok(()) => return Some(server),
                Err(Failure::PortTaken(log)) => last = log,
                Err(Failure::Other(why)) => panic!("{why}"),
            }
        }
        panic!("sshd could not bind any of {PORT_ATTEMPTS} free ports; last stderr:\n{last}");
    }

    /// Spawns `sshd -D -e -f CONFIG` and waits until it accepts connections and a login.
    fn run_sshd(&mut self, sshd: &Path, config: &Path, login: bool) -> Result<(), Failure> {
        let log = Arc::new(Mutex::new(String::new()));
        self.log = Arc::clone(&log);
        let mut cmd = Command::new(sshd);
        cmd.args(["-D", "-e", "-f"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        let spawned = Instant::now();
        let mut child = cmd.spawn().expect("start sshd");
        let stderr = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut log = log.lock().unwrap_or_else(|poison| poison.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        self.child = Some(child);

        let deadline = spawned + START_TIMEOUT;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let mut accepting = false;
        let mut last_login = None::<Run>;
        loop {
            let child = self.child.as_mut().expect("sshd child");
            if let Some(status) = child.try_wait().expect("wait for sshd") {
                self.child = None;
                // Let the reader thread take in the last lines.
                std::thread::sleep(Duration::from_millis(50));
                let log = self.log();
                if log.contains("Address already in use") || log.contains("Cannot bind") {
                    return Err(Failure::PortTaken(log));
                }
                return Err(Failure::Other(format!(
                    "sshd exited on start ({status}); stderr:\n{log}"
                )));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.stop();
                let why = match last_login {
                    None => format!("sshd accepted no connection on {addr}"),
                    Some(run) => format!(
                        "ssh could not log in as {} (exit {}): {}\
                         (with UsePAM no, sshd refuses accounts whose password is locked with \"!\" in /etc/shadow)",
                        self.user, run.code, run.stderr
                    ),
                };
                return Err(Failure::Other(format!(
                    "sshd did not come up within {START_TIMEOUT:?}: {why}\nsshd stderr:\n{}",
                    self.log()
                )));
            }
            if !accepting {
                accepting = speaks_ssh(addr, left.min(Duration::from_millis(500)));
                if !accepting {
                    std::thread::sleep(Duration::from_millis(10));
                }
                if accepting && !login {
                    self.started_in = spawned.elapsed();
                    return Ok(());
                }
                continue;
            }
            let mut probe = self.ssh_command("true");
            probe.stdin(Stdio::null());
            match run_bounded(probe, None, left) {
                Some(run) if run.code == 0 => {
                    self.started_in = spawned.elapsed();
                    return Ok(());
                }
                run => last_login = run,
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `[127.0.0.1]:PORT ssh-ed25519 KEY`, the only line of known_hosts.
    fn write_known_hosts(&self) {
        let key = std::fs::read_to_string(&self.host_key_pub).expect("read the host key");
        let mut fields = key.split_whitespace();
        let (kind, blob) = (
            fields.next().expect("host key type"),
            fields.next().expect("host key"),
        );
        std::fs::write(
            &self.known_hosts,
            format!("[{HOST}]:{} {kind} {blob}\n", self.port),
        )
        .expect("write known_hosts");
    }

    /// SIGKILL to sshd and every process under it (the sessions and the commands they run):
    /// the server machine dying mid-transfer.
    pub fn kill_all(&mut self) {
        let Some(child) = self.child.as_ref() else {
            return;
        };
        let mut doomed = vec![child.id()];
        let mut i = 0;
        while i < doomed.len() {
            doomed.extend(children_of(doomed[i]));
            i += 1;
        }
        for pid in doomed {
            // SAFETY: kill takes no pointers; these are the server's own session processes.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        self.stop();
    }

    /// SIGTERM, then SIGKILL when it lingers; reaps it.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take()
            && let Ok(None) = child.try_wait()
        {
            // SAFETY: kill takes no pointers; the child is ours and not yet reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            wait_bounded(&mut child, STOP_TIMEOUT);
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address sshd listens on: 127.0.0.1.
    pub fn host(&self) -> &'static str {
        HOST
    }

    /// The user the tests log in as: the one running them.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The client's private key (ed25519, OpenSSH format, no passphrase); `.pub` beside it.
    pub fn client_key(&self) -> &Path {
        &self.client_key
    }

    /// A known_hosts file with sshd's host key for `[127.0.0.1]:PORT`.
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }

    /// sshd's public host key (`ssh-ed25519 AAAA... comment`).
    pub fn host_key_pub(&self) -> &Path {
        &self.host_key_pub
    }

    /// How long sshd took to accept the first login.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// What sshd printed on stderr so far (errors only).
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    /// `user@127.0.0.1`.
    pub fn destination(&self) -> String {
        format!("{}@{HOST}", self.user)
    }

    /// `user@127.0.0.1:PATH` for scp, PATH escaped for the remote shell (the legacy protocol
    /// hands it to one) with backslashes, which scp's check of the names it receives also
    /// reads as escapes (quotes would make it refuse a download: "filename does not match
    /// request").
    pub fn remote(&self, path: &Path) -> String {
        format!("{}:{}", self.destination(), backslash_escape(path))
    }

    /// `ssh ... user@127.0.0.1 REMOTE_CMD` with the client key and known_hosts, strictly
    /// checked, no prompts. REMOTE_CMD goes to the remote shell: quote paths with
    /// [`shell_quote`]. The ssh dies with the thread that spawns it.
    pub fn ssh_command(&self, remote_cmd: &str) -> Command {
        self.ssh_command_with(&self.client_key, &self.known_hosts, remote_cmd)
    }

    /// [`Sshd::ssh_command`] with another key and known_hosts, e.g. to be refused.
    pub fn ssh_command_with(&self, key: &Path, known_hosts: &Path, remote_cmd: &str) -> Command {
        let mut cmd = Command::new(&self.ssh);
        cmd.arg("-p")
            .arg(self.port.to_string())
            .args(self.client_options(key, known_hosts))
            .arg(self.destination())
            .arg(remote_cmd);
        die_with_parent(&mut cmd);
        cmd
    }

    /// `scp -O ... FROM TO` (legacy SCP protocol over an exec channel, as xferbench's ssh path
    /// speaks it) with the client key and known_hosts; give the remote side as
    /// [`Sshd::remote`]. Panics when scp is not installed. The scp dies with the thread that
    /// spawns it.
    pub fn scp_command(&self, from: impl AsRef<OsStr>, to: impl AsRef<OsStr>) -> Command {
        let scp = self
            .scp
            .as_ref()
            .expect("scp not found (install openssh-client)");
        let mut cmd = Command::new(scp);
        cmd.arg("-O")
            .arg("-P")
            .arg(self.port.to_string())
            .args(self.client_options(&self.client_key, &self.known_hosts))
            .arg(from)
            .arg(to);
        die_with_parent(&mut cmd);
        cmd
    }

    fn client_options(&self, key: &Path, known_hosts: &Path) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> =
            vec!["-F".into(), self.client_config.clone().into()];
        args.extend(["-i".into(), key.as_os_str().to_owned()]);
        let mut option = |text: String| args.extend(["-o".into(), text.into()]);
        option(format!("UserKnownHostsFile={}", known_hosts.display()));
        option("GlobalKnownHostsFile=/dev/null".into());
        option("StrictHostKeyChecking=yes".into());
        option("BatchMode=yes".into());
        option("IdentitiesOnly=yes".into());
        option("ConnectTimeout=5".into());
        args
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The sshd config: this port of 127.0.0.1, this host key, public keys only.
fn sshd_config(port: u16, host_key: &Path, authorized_keys: &Path, pid_file: &Path) -> String {
    let path = |p: &Path| format!("\"{}\"", p.display());
    format!(
        "\
ListenAddress {HOST}
Port {port}
HostKey {host_key}
AuthorizedKeysFile {authorized_keys}
PidFile {pid_file}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
LogLevel ERROR
X11Forwarding no
PrintMotd no
PrintLastLog no
",
        host_key = path(host_key),
        authorized_keys = path(authorized_keys),
        pid_file = path(pid_file),
    )
}

/// Makes an ed25519 key pair without passphrase: KEY and KEY.pub.
pub fn make_key(keygen: &Path, key: &Path) {
    make_key_of_type(keygen, key, "ed25519");
}

/// Makes a key pair of `kind` (`ed25519`, `ecdsa`, `rsa`) without passphrase: KEY and KEY.pub.
pub fn make_key_of_type(keygen: &Path, key: &Path, kind: &str) {
    let mut cmd = Command::new(keygen);
    cmd.args(["-q", "-t", kind, "-N", "", "-C", "xferbench-test", "-f"])
        .arg(key);
    let run = run_bounded(cmd, None, RUN_TIMEOUT).expect("ssh-keygen took too long");
    assert_eq!(
        run.code,
        0,
        "ssh-keygen -f {}: {}{}",
        key.display(),
        run.stdout,
        run.stderr
    );
}

/// Makes an ed25519 key pair KEY and KEY.pub with the installed ssh-keygen.
pub fn new_key(key: &Path) {
    let keygen = find_in_path("ssh-keygen").expect("ssh-keygen not found");
    make_key(&keygen, key);
}

/// Makes a key pair of `kind` with the installed ssh-keygen.
pub fn new_key_of_type(key: &Path, kind: &str) {
    let keygen = find_in_path("ssh-keygen").expect("ssh-keygen not found");
    make_key_of_type(&keygen, key, kind);
}

/// `ALGORITHM BASE64` of the public key beside KEY (KEY.pub), without its comment.
pub fn public_key(key: &Path) -> String {
    let text = std::fs::read_to_string(pub_path(key)).expect("read the public key");
    let fields: Vec<&str> = text.split_whitespace().take(2).collect();
    fields.join(" ")
}

fn pub_path(key: &Path) -> PathBuf {
    let mut name = key.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// sshd by absolute path (it refuses to start otherwise): PATH, then the sbin directories
/// that are not on every user's PATH.
fn find_sshd() -> Option<PathBuf> {
    find_in_path("sshd").or_else(|| {
        ["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"]
            .iter()
            .map(PathBuf::from)
            .find(|path| is_executable(path))
    })
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|path| is_executable(path))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// sshd run as root chroots its unprivileged child into /run/sshd and refuses to start
/// without it.
fn ensure_privsep_dir() {
    use std::os::unix::fs::DirBuilderExt;
    if Path::new(PRIVSEP_DIR).is_dir() {
        return;
    }
    match std::fs::DirBuilder::new().mode(0o755).create(PRIVSEP_DIR) {
        Ok(()) => {}
        // Another test made it meanwhile.
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(err) => panic!("creating {PRIVSEP_DIR} for sshd: {err}"),
    }
}

/// Whether an SSH server answers on ADDR: connects, trades identification lines and hangs up
/// (a bare connect-and-close would make sshd log a kex_exchange_identification error).
fn speaks_ssh(addr: SocketAddr, limit: Duration) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, limit) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(limit));
    if stream.write_all(b"SSH-2.0-xferbench_probe\r\n").is_err() {
        return false;
    }
    let mut line = String::new();
    let _ = std::io::BufReader::new(stream)
        .take(256)
        .read_line(&mut line);
    line.starts_with("SSH-2.0-")
}

/// A port of 127.0.0.1 free a moment ago (sshd may still lose it to someone else: retried).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("find a free port on 127.0.0.1")
        .port()
}

/// The name of the user running the tests.
fn current_user() -> String {
    // SAFETY: geteuid takes nothing and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: passwd is pointers and integers: null and zero are valid values.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: pwd, buf (of the length given) and result are live for the call's writes.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc == 0 && !result.is_null() {
        // SAFETY: on success pw_name points to a NUL-terminated string inside `buf`, still alive.
        let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
        return name.to_string_lossy().into_owned();
    }
    std::env::var("USER").unwrap_or_else(|_| panic!("no user name for uid {uid}"))
}

fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"/._-+,=:@%".contains(&b)
}

/// PATH as a POSIX shell reads it: in single quotes unless it is plain.
pub fn shell_quote(path: &Path) -> String {
    let text = path.to_str().expect("a UTF-8 path");
    if !text.is_empty() && text.bytes().all(is_plain) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// PATH as a POSIX shell and fnmatch(3) both read it: a backslash before every character that
/// is not plain.
pub fn backslash_escape(path: &Path) -> String {
    let text = path.to_str().expect("a UTF-8 path");
    assert!(
        !text.chars().any(char::is_control),
        "no way to escape a control character for scp: {text:?}"
    );
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if !(c.is_ascii() && is_plain(c as u8)) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Runs CMD with INPUT on stdin (or what CMD says), output captured, for at most `limit`;
/// None (and the command killed) when it takes longer.
pub fn run_bounded(mut cmd: Command, input: Option<Vec<u8>>, limit: Duration) -> Option<Run> {
    if input.is_some() {
        cmd.stdin(Stdio::piped());
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|err| panic!("start {cmd:?}: {err}"));
    let writer = input.map(|bytes| {
        let mut stdin = child.stdin.take().expect("piped stdin");
        // On a thread, so a child that stops reading cannot block the test; closed when done.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        })
    });
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let status = wait_bounded(&mut child, limit);
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    // A grandchild (ssh under scp) may hold the pipes; a bounded child means bounded readers.
    let status = status?;
    Some(Run {
        code: exit_code(status),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    })
}

/// N bytes from /dev/urandom.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(n);
    std::fs::File::open("/dev/urandom")
        .and_then(|file| file.take(n as u64).read_to_end(&mut bytes))
        .expect("read /dev/urandom");
    assert_eq!(bytes.len(), n);
    bytes
}

/// The processes whose parent is `pid`, from /proc.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|stat| {
                // The field after the parenthesised name is the state, then the parent's pid.
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

/// An sshd whose far PATH holds only `tools` (each linked from /usr/bin or /bin) and the given
/// scripts; the directory lives as long as the sshd.
pub fn sshd_with_tools(tools: &[&str], scripts: &[(&str, &str)]) -> Option<(Sshd, TempDir)> {
    let dir = temp_dir();
    for tool in tools {
        for bin in ["/usr/bin", "/bin"] {
            let found = Path::new(bin).join(tool);
            if found.exists() && !dir.path().join(tool).exists() {
                std::os::unix::fs::symlink(&found, dir.path().join(tool)).unwrap();
            }
        }
    }
    for (name, script) in scripts {
        let path = dir.path().join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    let sshd = Sshd::start_with(&format!("SetEnv PATH={}\n", dir.path().display()));
    if sshd.is_none() {
        eprintln!("skipped: OpenSSH is not installed");
    }
    Some((sshd?, dir))
}
