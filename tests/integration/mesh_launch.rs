//! `xferbench mesh --ssh-launch` against a real OpenSSH sshd of the test's own
//! (tests/common/sshd.rs): every host is a port of 127.0.0.1 that serve listens on, all logged
//! into through that one sshd (an ssh_config `Host 127.0.0.1` block names its port, user and
//! key), the far binary the one cargo built. The far side's TMPDIR is a scratch directory of the
//! test (sshd's `SetEnv`), so what the wrappers leave there is seen. Each test prints "skipped"
//! and passes when OpenSSH is not installed (`.ci/run` installs it).

use std::ffi::OsString;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tempfile::TempDir;

use crate::common::sshd::Sshd;
use crate::common::{
    Background, Run, assert_empty_dir, bin, command, json_report, run_command, send_signal,
    temp_dir, wait_until,
};

/// An sshd whose sessions make their temporary directories in `far_tmp`, and the client's
/// side: a HOME of its own and an ssh_config naming the sshd.
struct Far {
    sshd: Sshd,
    far_tmp: TempDir,
    home: TempDir,
    config: PathBuf,
}

/// An SSH destination of the config whose port nothing listens on.
const DEAD: &str = "deadnode";

fn start() -> Option<Far> {
    start_with("")
}

/// [`start`] with more lines for sshd_config.
fn start_with(extra_config: &str) -> Option<Far> {
    let far_tmp = temp_dir();
    let config = format!("SetEnv TMPDIR={}\n{extra_config}", far_tmp.path().display());
    let Some(sshd) = Sshd::start_with(&config) else {
        eprintln!("skipped: OpenSSH is not installed");
        return None;
    };
    let home = temp_dir();
    let config = home.path().join("ssh_config");
    std::fs::write(
        &config,
        format!(
            "Host {DEAD}\n  HostName 127.0.0.1\n  Port {dead}\n\n\
             Host 127.0.0.1 {DEAD}\n  Port {port}\n  User {user}\n  IdentityFile {key}\n",
            dead = free_port(),
            port = sshd.port(),
            user = sshd.user(),
            key = sshd.client_key().display()
        ),
    )
    .unwrap();
    Some(Far {
        sshd,
        far_tmp,
        home,
        config,
    })
}

/// A port of 127.0.0.1 free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port()
}

/// `n` free ports for the serves.
fn serve_ports(n: usize) -> Vec<u16> {
    // Held together, so no two are the same.
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

impl Far {
    /// `xferbench -q mesh HOSTS… --ssh-launch -F CONFIG --known-hosts FILE ARGS…`.
    fn mesh(&self, hosts: &[String], args: &[&str]) -> std::process::Command {
        let mut all: Vec<OsString> = vec!["-q".into(), "mesh".into()];
        all.extend(hosts.iter().map(OsString::from));
        all.extend([
            "--ssh-launch".into(),
            "-F".into(),
            self.config.clone().into(),
        ]);
        all.extend([
            "--known-hosts".into(),
            self.sshd.known_hosts().as_os_str().to_owned(),
        ]);
        all.extend(args.iter().map(OsString::from));
        let mut cmd = command(all);
        cmd.env("HOME", self.home.path())
            .env_remove("SSH_AUTH_SOCK");
        cmd
    }

    /// No serve listens on any of `ports`, no process runs from the far temporary directory,
    /// and nothing is left in it.
    fn assert_all_stopped(&self, ports: &[u16]) {
        for port in ports {
            assert!(
                TcpListener::bind((Ipv4Addr::LOCALHOST, *port)).is_ok(),
                "a serve still listens on 127.0.0.1:{port}"
            );
        }
        let running = processes_mentioning(self.far_tmp.path());
        assert!(running.is_empty(), "still running: {running:?}");
        assert_empty_dir(self.far_tmp.path());
    }
}

/// The command lines of the processes that name `dir` in theirs.
fn processes_mentioning(dir: &Path) -> Vec<String> {
    let needle = dir.to_str().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .map(|line| String::from_utf8_lossy(&line).replace('\0', " "))
        .filter(|line| line.contains(needle))
        .collect()
}

fn hosts(ports: &[u16]) -> Vec<String> {
    ports.iter().map(|p| format!("127.0.0.1:{p}")).collect()
}

fn remote_binary() -> String {
    bin().to_str().unwrap().to_string()
}

fn only_line(out: &Run) -> &str {
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {out:?}");
    lines[0]
}

#[test]
fn ssh_launch_starts_a_serve_on_every_host_measures_every_pair_and_stops_them_all() {
    let Some(far) = start() else { return };
    let ports = serve_ports(3);
    let mut given = hosts(&ports);
    // A user@ logs in as that user; the report names the serve without it.
    given[0] = format!("{}@{}", far.sshd.user(), given[0]);
    let binary = remote_binary();
    let out = run_command(far.mesh(&given, &["--remote-binary", &binary, "-t", "0.5", "-J"]));
    let report = json_report(&out);
    let tests = report["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 6, "{report:#}");
    let names = hosts(&ports);
    for from in &names {
        for to in names.iter().filter(|to| *to != from) {
            let test = tests
                .iter()
                .find(|t| t["from"] == from.as_str() && t["to"] == to.as_str())
                .unwrap_or_else(|| panic!("no test {from} -> {to}: {report:#}"));
            assert!(
                test["measured"]["measurements"]
                    .as_array()
                    .is_some_and(|m| !m.is_empty()),
                "{test:#}"
            );
        }
    }
    far.assert_all_stopped(&ports);
}

#[test]
fn ssh_launch_with_a_wrong_remote_binary_says_so_in_one_line_and_leaves_no_serve() {
    let Some(far) = start() else { return };
    let ports = serve_ports(2);
    let missing = far.home.path().join("no such dir/xferbench");
    let out = run_command(far.mesh(
        &hosts(&ports),
        &["--remote-binary", missing.to_str().unwrap(), "-t", "0.5"],
    ));
    assert_eq!(out.code, 1, "{out:?}");
    let line = only_line(&out);
    assert!(
        line.contains(&format!("127.0.0.1:{}", ports[0]))
            && line.contains(&format!(
                "no xferbench at {} on the far side (--remote-binary)",
                missing.display()
            )),
        "{line}"
    );
    far.assert_all_stopped(&ports);
}

#[test]
fn ssh_launch_without_xferbench_on_the_far_path_says_to_install_it_or_give_remote_binary() {
    // The far PATH holds the wrapper's tools only.
    let tools = temp_dir();
    for tool in ["sh", "mktemp", "rm", "grep", "sleep", "mkdir", "cat"] {
        for dir in ["/usr/bin", "/bin"] {
            let found = Path::new(dir).join(tool);
            if found.exists() && !tools.path().join(tool).exists() {
                std::os::unix::fs::symlink(&found, tools.path().join(tool)).unwrap();
            }
        }
    }
    let Some(far) = start_with(&format!("SetEnv PATH={}\n", tools.path().display())) else {
        return;
    };
    let ports = serve_ports(2);
    let out = run_command(far.mesh(&hosts(&ports), &["-t", "0.5"]));
    assert_eq!(out.code, 1, "{out:?}");
    let line = only_line(&out);
    assert!(
        line.contains("no xferbench on the far side's PATH") && line.contains("--remote-binary"),
        "{line}"
    );
    far.assert_all_stopped(&ports);
}

#[test]
fn ssh_launch_to_an_unreachable_host_names_it_and_stops_the_serves_it_started() {
    let Some(far) = start() else { return };
    let ports = serve_ports(3);
    let mut given = hosts(&ports[..2]);
    given.push(format!("{DEAD}:{}", ports[2]));
    let binary = remote_binary();
    let out = run_command(far.mesh(&given, &["--remote-binary", &binary, "-t", "0.5"]));
    assert_eq!(out.code, 1, "{out:?}");
    let line = only_line(&out);
    assert!(
        line.starts_with(&format!("xferbench: {DEAD}:{}: ", ports[2]))
            && line.contains("cannot connect"),
        "{line}"
    );
    far.assert_all_stopped(&ports);
}

/// A mesh of two launched serves whose net tests last `secs` each, once both serves listen.
fn running_mesh(far: &Far, ports: &[u16], secs: &str) -> Background {
    let binary = remote_binary();
    let mut cmd = far.mesh(&hosts(ports), &["--remote-binary", &binary, "-t", secs]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut mesh = Background(cmd.spawn().unwrap());
    let listening = wait_until(Duration::from_secs(30), || {
        ports
            .iter()
            .all(|p| TcpStream::connect((Ipv4Addr::LOCALHOST, *p)).is_ok())
    });
    assert!(listening && mesh.running(), "the serves never listened");
    mesh
}

#[test]
fn ctrl_c_stops_the_launched_serves_and_exits_130() {
    let Some(far) = start() else { return };
    let ports = serve_ports(2);
    let mesh = running_mesh(&far, &ports, "5");
    send_signal(mesh.pid(), libc::SIGINT);
    let out = mesh.finish(Duration::from_secs(30));
    assert_eq!(out.code, 130, "{out:?}");
    far.assert_all_stopped(&ports);
}

#[test]
fn a_coordinator_killed_outright_leaves_no_serve_running_once_its_channels_close() {
    let Some(far) = start() else { return };
    let ports = serve_ports(2);
    let mesh = running_mesh(&far, &ports, "10");
    send_signal(mesh.pid(), libc::SIGKILL);
    drop(mesh);
    let stopped = wait_until(Duration::from_secs(15), || {
        processes_mentioning(far.far_tmp.path()).is_empty()
            && std::fs::read_dir(far.far_tmp.path()).is_ok_and(|mut d| d.next().is_none())
    });
    assert!(stopped, "{:?}", processes_mentioning(far.far_tmp.path()));
    far.assert_all_stopped(&ports);
}

#[test]
fn each_token_is_in_a_private_file_of_its_own_and_on_no_command_line() {
    use std::os::unix::fs::PermissionsExt;
    let Some(far) = start() else { return };
    let ports = serve_ports(2);
    let mesh = running_mesh(&far, &ports, "5");
    let dirs: Vec<PathBuf> = std::fs::read_dir(far.far_tmp.path())
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .collect();
    assert_eq!(dirs.len(), 2, "one directory a serve: {dirs:?}");
    let mut tokens = Vec::new();
    for dir in &dirs {
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
        assert_eq!(mode(&dir.join("token")), 0o600, "{}", dir.display());
        let token = std::fs::read_to_string(dir.join("token")).unwrap();
        let token = token.trim().to_string();
        assert_eq!(token.len(), 32, "128 bits in hex: {token:?}");
        assert!(processes_mentioning(Path::new(&token)).is_empty());
        tokens.push(token);
    }
    assert_ne!(tokens[0], tokens[1]);
    send_signal(mesh.pid(), libc::SIGINT);
    assert_eq!(mesh.finish(Duration::from_secs(30)).code, 130);
    far.assert_all_stopped(&ports);
}
