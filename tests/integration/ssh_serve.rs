//! `xferbench serve --ssh-listen`: its embedded SSH server, driven by OpenSSH's own `ssh` and
//! `scp -O` on loopback. Each test prints "skipped" and passes when the OpenSSH client is not
//! installed.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::sshd::{backslash_escape, new_key, random_bytes, run_bounded};
use crate::common::{
    Hosts, RUN_TIMEOUT, Run, Server, assert_empty_dir, assert_no_leftovers, entries, scratch_path,
    temp_dir, wait_until,
};
use tempfile::TempDir;
use xferbench::serve::ssh::{CONNECTIONS_PER_CLIENT, EmbeddedSshServer};
use xferbench::transport::ssh::command::RemoteCommand;

/// Longest the server may take to print where its SSH server listens.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(15);
/// An odd size: not a multiple of a page, of a disk block or of an SSH packet.
const ODD_SIZE: usize = 3 * 1024 * 1024 + 123;

/// The OpenSSH client programs, found on PATH.
struct OpenSsh {
    ssh: PathBuf,
    scp: PathBuf,
}

impl OpenSsh {
    fn find() -> Option<OpenSsh> {
        let found = |name: &str| {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|path| path.is_file())
        };
        match (found("ssh"), found("scp"), found("ssh-keygen")) {
            (Some(ssh), Some(scp), Some(_)) => Some(OpenSsh { ssh, scp }),
            _ => {
                eprintln!("skipped: the OpenSSH client (ssh, scp, ssh-keygen) is not installed");
                None
            }
        }
    }
}

/// A client's keys and known_hosts in a scratch directory, and the commands to reach a server.
struct Client {
    tools: OpenSsh,
    port: u16,
    key: PathBuf,
    known_hosts: PathBuf,
    dir: TempDir,
}

impl Client {
    /// A client key pair (KEY, KEY.pub) and a host key pair made with ssh-keygen.
    fn new(tools: OpenSsh) -> Client {
        let (dir, key) = scratch_path("id_ed25519");
        new_key(&key);
        new_key(&dir.path().join("host_key"));
        Client {
            tools,
            port: 0,
            known_hosts: dir.path().join("known_hosts"),
            key,
            dir,
        }
    }

    fn host_key(&self) -> PathBuf {
        self.dir.path().join("host_key")
    }

    /// An authorized_keys file with the client's key (and a comment and a blank line).
    fn authorized_keys(&self) -> PathBuf {
        let path = self.dir.path().join("authorized_keys");
        let key = std::fs::read_to_string(self.dir.path().join("id_ed25519.pub")).unwrap();
        std::fs::write(&path, format!("# the test's client\n\n{key}")).unwrap();
        path
    }

    /// Trusts the server on `port` with the host key's public half, as `[127.0.0.1]:PORT`.
    fn trust(&mut self, port: u16, host_key_line: &str) {
        self.port = port;
        std::fs::write(
            &self.known_hosts,
            format!("[127.0.0.1]:{port} {host_key_line}\n"),
        )
        .unwrap();
    }

    fn options(&self, key: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["-F".into(), "/dev/null".into()];
        args.extend(["-i".into(), key.as_os_str().to_owned()]);
        for option in [
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "GlobalKnownHostsFile=/dev/null".to_string(),
            "StrictHostKeyChecking=yes".to_string(),
            "BatchMode=yes".to_string(),
            "IdentitiesOnly=yes".to_string(),
            "ConnectTimeout=5".to_string(),
        ] {
            args.extend(["-o".into(), option.into()]);
        }
        args
    }

    /// `ssh ... 127.0.0.1 REMOTE` with the client's key (or another).
    fn ssh_with(&self, key: &Path, remote: &str) -> Command {
        let mut cmd = Command::new(&self.tools.ssh);
        cmd.arg("-p")
            .arg(self.port.to_string())
            .args(self.options(key))
            .arg("127.0.0.1")
            .arg(remote);
        die_with_test(&mut cmd);
        cmd
    }

    fn ssh(&self, remote: &str) -> Command {
        self.ssh_with(&self.key, remote)
    }

    /// `scp -O ... FROM TO`; name the server's side with [`remote`].
    fn scp(
        &self,
        extra: &[&str],
        from: impl AsRef<std::ffi::OsStr>,
        to: impl AsRef<std::ffi::OsStr>,
    ) -> Command {
        let mut cmd = Command::new(&self.tools.scp);
        cmd.arg("-O")
            .arg("-P")
            .arg(self.port.to_string())
            .args(self.options(&self.key))
            .args(extra)
            .arg(from)
            .arg(to);
        die_with_test(&mut cmd);
        cmd
    }
}

/// `127.0.0.1:PATH`, PATH escaped for scp's remote side.
fn remote(path: &str) -> String {
    format!("127.0.0.1:{}", backslash_escape(Path::new(path)))
}

/// The ssh or scp dies with the test that started it.
fn die_with_test(cmd: &mut Command) {
    // SAFETY: the closure only calls prctl, which is async-signal-safe, with plain values.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

fn run(cmd: Command, input: Option<Vec<u8>>) -> Run {
    let shown = format!("{cmd:?}");
    run_bounded(cmd, input, RUN_TIMEOUT)
        .unwrap_or_else(|| panic!("{shown} ran longer than {RUN_TIMEOUT:?} and was killed"))
}

fn assert_ran(run: &Run, what: &str) {
    assert_eq!(
        run.code, 0,
        "{what} failed (exit {}):\nstdout: {}\nstderr: {}",
        run.code, run.stdout, run.stderr
    );
}

/// `xferbench serve --listen 127.0.0.1:0 --ssh-listen 127.0.0.1:0 --root ROOT ...` and a client
/// that trusts it; the root is `root` under a scratch directory, so `..` has somewhere to go.
struct Setup {
    server: Server,
    client: Client,
    root: PathBuf,
    /// The root's parent: where `../x` would land.
    outside: TempDir,
}

impl Setup {
    /// Starts scp of 32 MiB to `big.bin` at 16 Mbit/s (`-l 16000`, two seconds per 4 MB: time to
    /// stop it half-way) and waits at most 20 s for the partial file. Returns scp, the partial
    /// file and whether it appeared.
    fn slow_scp_upload(&self) -> (std::process::Child, PathBuf, bool) {
        let local = self.client.dir.path().join("big.bin");
        write_random(&local, 32 << 20);
        let mut cmd = self.client.scp(&["-l", "16000"], &local, remote("big.bin"));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let scp = cmd.spawn().expect("start scp");
        let partial = self.root.join(".big.bin.xferbench-partial");
        let started = wait_until(Duration::from_secs(20), || partial.exists());
        (scp, partial, started)
    }

    /// Kills and reaps the scp of [`Setup::slow_scp_upload`]; fails the test if it never started.
    fn stop_scp(&self, mut scp: std::process::Child, started: bool) {
        let _ = scp.kill();
        let _ = scp.wait();
        assert!(
            started,
            "the upload never started: {:?}",
            entries(&self.root)
        );
    }
}

fn start(extra: &[&str]) -> Option<Setup> {
    let client = Client::new(OpenSsh::find()?);
    let (outside, root) = scratch_path("root");
    std::fs::create_dir(&root).unwrap();
    let (authorized_keys, host_key) = (client.authorized_keys(), client.host_key());
    let mut args = vec![
        "--ssh-listen",
        "127.0.0.1:0",
        "--authorized-keys",
        authorized_keys.to_str().unwrap(),
        "--host-key",
        host_key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let mut server = Hosts::loopback().serve_tokenless(&root, &args);
    let line = server
        .wait_for_line("ssh listening on ", ANNOUNCE_TIMEOUT)
        .unwrap_or_else(|| panic!("serve did not announce its SSH server: {:?}", server.log()));
    let port = line
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("not 'ssh listening on ADDR:PORT': {line}"));
    let host_key_pub = std::fs::read_to_string(format!("{}.pub", host_key.display())).unwrap();
    let fields: Vec<&str> = host_key_pub.split_whitespace().collect();
    let fingerprint = server
        .wait_for_line("ssh host key SHA256:", ANNOUNCE_TIMEOUT)
        .expect("the host key's fingerprint is announced");
    assert!(
        fingerprint.contains(&format!("{} {}", fields[0], fields[1])),
        "{fingerprint}"
    );
    let mut client = client;
    client.trust(port, &format!("{} {}", fields[0], fields[1]));
    Some(Setup {
        server,
        client,
        root,
        outside,
    })
}

fn write_random(path: &Path, size: usize) -> Vec<u8> {
    let bytes = random_bytes(size);
    std::fs::write(path, &bytes).unwrap();
    bytes
}

fn assert_file(path: &Path, expected: &[u8]) {
    let got = std::fs::read(path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    assert!(
        got == expected,
        "{} differs: {} bytes, {} expected",
        path.display(),
        got.len(),
        expected.len()
    );
}

#[test]
fn scp_upload_is_byte_exact_under_a_name_with_a_space() {
    let Some(setup) = start(&[]) else { return };
    let local = setup.client.dir.path().join("odd size.bin");
    let sent = write_random(&local, ODD_SIZE);
    let out = run(setup.client.scp(&[], &local, remote("up load.bin")), None);
    assert_ran(&out, "scp upload");
    assert_file(&setup.root.join("up load.bin"), &sent);
    assert_eq!(entries(&setup.root), ["up load.bin"]);
}

#[test]
fn scp_download_is_byte_exact() {
    let Some(setup) = start(&[]) else { return };
    let stored = write_random(&setup.root.join("down load.bin"), ODD_SIZE);
    let local = setup.client.dir.path().join("fetched.bin");
    let out = run(setup.client.scp(&[], remote("down load.bin"), &local), None);
    assert_ran(&out, "scp download");
    assert_file(&local, &stored);
}

#[test]
fn scp_upload_into_a_directory_keeps_the_name() {
    let Some(setup) = start(&[]) else { return };
    std::fs::create_dir(setup.root.join("inbox")).unwrap();
    let local = setup.client.dir.path().join("kept name.bin");
    let sent = write_random(&local, 100_001);
    let out = run(setup.client.scp(&["-p"], &local, remote("inbox")), None);
    assert_ran(&out, "scp into a directory");
    assert_file(&setup.root.join("inbox/kept name.bin"), &sent);
    assert_no_leftovers(&setup.root.join("inbox"));
}

#[test]
fn scp_paths_outside_the_root_are_refused() {
    let Some(setup) = start(&[]) else { return };
    let local = setup.client.dir.path().join("x");
    write_random(&local, 4096);
    let escape = "/etc/xferbench-ssh-serve-test-escape";
    for (target, why) in [
        ("../x", "contains '..'"),
        (escape, "is absolute"),
        ("missing/x", "does not exist"),
    ] {
        let out = run(setup.client.scp(&[], &local, remote(target)), None);
        assert_ne!(out.code, 0, "scp to {target} succeeded: {}", out.stderr);
        assert!(out.stderr.contains(why), "scp to {target}: {}", out.stderr);
    }
    let out = run(setup.client.scp(&[], remote("../root/x"), &local), None);
    assert_ne!(out.code, 0, "a download through .. succeeded");
    assert!(!Path::new(escape).exists(), "{escape} was written");
    assert_eq!(entries(setup.outside.path()), ["root"]);
    assert_empty_dir(&setup.root);
}

#[test]
fn a_key_not_in_authorized_keys_is_refused() {
    let Some(mut setup) = start(&[]) else { return };
    let stranger = setup.client.dir.path().join("stranger");
    new_key(&stranger);
    let out = run(
        setup.client.ssh_with(&stranger, "cat > /dev/null"),
        Some(Vec::new()),
    );
    assert_ne!(out.code, 0, "a stranger's key got in");
    assert!(out.stderr.contains("Permission denied"), "{}", out.stderr);
    assert!(
        setup
            .server
            .wait_for_line("is not in --authorized-keys", ANNOUNCE_TIMEOUT)
            .is_some(),
        "{:?}",
        setup.server.log()
    );
}

#[test]
fn a_shell_command_is_refused_with_runs_no_shell() {
    let Some(setup) = start(&[]) else { return };
    let out = run(setup.client.ssh("cat /etc/passwd"), Some(Vec::new()));
    assert_eq!(out.code, 127, "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(
        out.stderr
            .contains("xferbench serve runs no shell: 'cat /etc/passwd' is not a command it knows"),
        "{}",
        out.stderr
    );
    let out = run(setup.client.ssh("scp -t -- x; touch y"), Some(Vec::new()));
    assert_eq!(out.code, 127, "{}", out.stderr);
    assert_empty_dir(&setup.root);
}

#[test]
fn the_memory_sink_takes_standard_input() {
    let Some(setup) = start(&[]) else { return };
    let out = run(
        setup.client.ssh(&RemoteCommand::Sink.render()),
        Some(random_bytes(5_000_001)),
    );
    assert_ran(&out, "cat > /dev/null");
}

#[test]
fn cat_sends_standard_input_back_byte_for_byte() {
    let Some(setup) = start(&[]) else { return };
    // Text, so the output reads back as a String; megabytes, so it spans many packets.
    let text: String = (0..200_000).map(|i| format!("line {i}\n")).collect();
    let out = run(
        setup.client.ssh(&RemoteCommand::Echo.render()),
        Some(text.clone().into_bytes()),
    );
    assert_ran(&out, "cat");
    assert!(
        out.stdout == text,
        "cat sent back {} bytes, not the {} sent",
        out.stdout.len(),
        text.len()
    );
}

#[test]
fn size_prints_the_size_and_absent_and_discard_act_on_the_root() {
    let Some(setup) = start(&[]) else { return };
    write_random(&setup.root.join("f"), ODD_SIZE);
    let out = run(setup.client.ssh("stat -L -c %s -- 'f'"), Some(Vec::new()));
    assert_ran(&out, "stat");
    assert_eq!(out.stdout, format!("{ODD_SIZE}\n"));

    let absent = |path: &str| {
        let line = RemoteCommand::Absent { path: path.into() }.render();
        run(setup.client.ssh(&line), Some(Vec::new())).code
    };
    assert_eq!((absent("f"), absent("g")), (1, 0));
    let discard = RemoteCommand::Discard { path: "f".into() }.render();
    assert_ran(&run(setup.client.ssh(&discard), Some(Vec::new())), "rm -f");
    assert_ran(
        &run(setup.client.ssh(&discard), Some(Vec::new())),
        "rm -f again",
    );
    assert_eq!(absent("f"), 0);
    let outside = RemoteCommand::Discard {
        path: "../root".into(),
    }
    .render();
    let out = run(setup.client.ssh(&outside), Some(Vec::new()));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("contains '..'"), "{}", out.stderr);
    assert!(setup.root.is_dir());
}

#[test]
fn ranges_written_over_two_connections_then_finished_make_the_file() {
    let Some(setup) = start(&[]) else { return };
    let data = random_bytes(ODD_SIZE);
    let split = 2 * 1024 * 1024;
    let temp = ".ranged.bin.partial";
    // The second range first: the file must be created at an offset and never truncated.
    for (offset, part) in [(split, &data[split..]), (0, &data[..split])] {
        let line = RemoteCommand::WriteRange {
            path: temp.into(),
            offset: offset as u64,
        }
        .render();
        assert_ran(&run(setup.client.ssh(&line), Some(part.to_vec())), &line);
    }
    let read_back = RemoteCommand::ReadRange {
        path: temp.into(),
        offset: 12_345,
        len: 2_000_000,
    }
    .render();
    let out = run_bytes(setup.client.ssh(&read_back));
    assert!(
        out == data[12_345..2_012_345],
        "the range read back differs"
    );
    let finish = RemoteCommand::Finish {
        temp: temp.into(),
        size: ODD_SIZE as u64,
        path: "ranged.bin".into(),
    }
    .render();
    assert_ran(&run(setup.client.ssh(&finish), Some(Vec::new())), &finish);
    assert_file(&setup.root.join("ranged.bin"), &data);
    assert_eq!(entries(&setup.root), ["ranged.bin"]);
}

/// Standard output of a command, as bytes.
fn run_bytes(mut cmd: Command) -> Vec<u8> {
    cmd.stdin(Stdio::null()).stderr(Stdio::inherit());
    let child = cmd.stdout(Stdio::piped()).spawn().expect("start ssh");
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(RUN_TIMEOUT);
        // SAFETY: kill takes no pointers; the ssh is one this test started.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    });
    let out = child.wait_with_output().expect("run ssh");
    drop(watchdog);
    assert!(out.status.success(), "{cmd:?} failed: {:?}", out.status);
    out.stdout
}

#[test]
fn a_killed_scp_upload_leaves_no_file_under_the_final_name() {
    let Some(setup) = start(&[]) else { return };
    let (scp, partial, started) = setup.slow_scp_upload();
    std::thread::sleep(Duration::from_millis(500));
    setup.stop_scp(scp, started);
    assert!(
        wait_until(Duration::from_secs(20), || !partial.exists()),
        "the partial file stayed: {:?}",
        entries(&setup.root)
    );
    assert!(!setup.root.join("big.bin").exists());
    assert_empty_dir(&setup.root);
}

#[test]
fn connections_beyond_max_clients_are_refused() {
    let Some(mut setup) = start(&["--max-clients", "1"]) else {
        return;
    };
    // Every connection one client may hold, held open: range writes whose standard input stays
    // open; the file each creates says its connection holds a slot.
    let mut held = Vec::new();
    for i in 0..CONNECTIONS_PER_CLIENT {
        let holding = RemoteCommand::WriteRange {
            path: format!("held-{i}"),
            offset: 0,
        }
        .render();
        let mut holder = setup.client.ssh(&holding);
        holder
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        held.push(holder.spawn().expect("start ssh"));
    }
    assert!(
        wait_until(Duration::from_secs(60), || {
            (0..CONNECTIONS_PER_CLIENT).all(|i| setup.root.join(format!("held-{i}")).exists())
        }),
        "the first connections did not all get in: {:?}",
        setup.server.log()
    );
    let probe = RemoteCommand::Absent { path: "x".into() }.render();
    let refused = run(setup.client.ssh(&probe), Some(Vec::new()));
    for mut holder in held {
        drop(holder.stdin.take());
        let _ = holder.wait();
    }
    assert_eq!(
        refused.code, 255,
        "a second connection was let in: {}",
        refused.stderr
    );
    assert!(
        setup
            .server
            .wait_for_line("refused: busy", ANNOUNCE_TIMEOUT)
            .is_some(),
        "{:?}",
        setup.server.log()
    );
    assert!(
        wait_until(Duration::from_secs(20), || {
            run(setup.client.ssh(&probe), Some(Vec::new())).code == 0
        }),
        "the slot was not freed"
    );
}

#[test]
fn the_in_process_server_takes_scp_and_says_its_host_key() {
    let Some(tools) = OpenSsh::find() else { return };
    let mut client = Client::new(tools);
    let root = temp_dir();
    let server =
        EmbeddedSshServer::start(root.path().to_path_buf(), &client.authorized_keys(), None)
            .expect("start the embedded SSH server");
    assert!(server.addr.ip().is_loopback() && server.tcp_addr.ip().is_loopback());
    assert!(server.fingerprint().starts_with("SHA256:"));
    let line = server.known_hosts_line();
    let (host, key) = line.split_once(' ').unwrap();
    assert_eq!(host, format!("[127.0.0.1]:{}", server.addr.port()));
    client.trust(server.addr.port(), key);
    let local = client.dir.path().join("in process.bin");
    let sent = write_random(&local, ODD_SIZE);
    let out = run(client.scp(&[], &local, remote("copy.bin")), None);
    assert_ran(&out, "scp to the in-process server");
    assert_file(&root.path().join("copy.bin"), &sent);
    drop(server);
    let out = run(client.ssh("test ! -e x"), Some(Vec::new()));
    assert_ne!(out.code, 0, "the server still answers after it was dropped");
}

#[test]
fn sigterm_during_an_scp_upload_stops_serve_and_removes_the_partial_file() {
    let Some(mut setup) = start(&[]) else { return };
    let (scp, _, started) = setup.slow_scp_upload();
    setup.server.signal(libc::SIGTERM);
    let status = setup.server.wait_exit(Duration::from_secs(20));
    setup.stop_scp(scp, started);
    let status = status.expect("serve did not stop within 20 s of SIGTERM");
    assert_eq!(status.code(), Some(130), "{}", setup.server.stderr_text());
    assert_empty_dir(&setup.root);
}

#[test]
fn authorized_keys_lines_with_options_are_skipped_and_said() {
    let Some(tools) = OpenSsh::find() else { return };
    let client = Client::new(tools);
    let key = std::fs::read_to_string(client.dir.path().join("id_ed25519.pub")).unwrap();
    let only_restricted = client.dir.path().join("restricted_keys");
    std::fs::write(&only_restricted, format!("from=\"10.9.9.9\" {key}")).unwrap();
    let root = temp_dir();
    let out = crate::common::run_command(crate::common::command([
        "serve".as_ref(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--ssh-listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--root".as_ref(),
        root.path().as_os_str(),
        "--authorized-keys".as_ref(),
        only_restricted.as_os_str(),
    ] as [&std::ffi::OsStr; 9]));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("has no usable public key")
            && out.stderr.contains("has options (from=\"10.9.9.9\")"),
        "{}",
        out.stderr
    );
    let out = crate::common::run_command(crate::common::command([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--ssh-listen",
        "127.0.0.1:0",
    ]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--authorized-keys"), "{}", out.stderr);
}

/// `xferbench ARGS --via ssh` with the test's key and known_hosts, as the server's client.
fn xferbench_to_own(setup: &Setup, args: &[&str]) -> Run {
    let mut cmd = crate::common::command(args);
    cmd.args(["--via", "ssh", "--identity"])
        .arg(&setup.client.key)
        .arg("--known-hosts")
        .arg(&setup.client.known_hosts)
        .args(["-F", "/dev/null"])
        .env("HOME", setup.client.dir.path())
        .env_remove("SSH_AUTH_SOCK");
    crate::common::run_command(cmd)
}

#[test]
fn xferbench_copies_to_and_from_its_own_ssh_server_byte_for_byte() {
    let Some(setup) = start(&[]) else { return };
    let (local, source) = scratch_path("a b.img");
    let bytes = write_random(&source, (5 << 20) + 77);
    let target = format!("127.0.0.1:{}:in.img", setup.client.port);
    for streams in ["1", "3"] {
        let out = xferbench_to_own(
            &setup,
            &[
                "copy",
                source.to_str().unwrap(),
                &target,
                "-P",
                streams,
                "-f",
            ],
        );
        assert_ran(&out, &format!("xferbench copy -P {streams} to serve"));
        assert_file(&setup.root.join("in.img"), &bytes);
        let back = local.path().join(format!("back-{streams}.img"));
        let out = xferbench_to_own(
            &setup,
            &["copy", &target, back.to_str().unwrap(), "-P", streams],
        );
        assert_ran(&out, &format!("xferbench copy -P {streams} from serve"));
        assert_file(&back, &bytes);
    }
    assert!(
        crate::common::leftovers(&setup.root).is_empty(),
        "{:?}",
        crate::common::entries(&setup.root)
    );
    let out = xferbench_to_own(
        &setup,
        &[
            "net",
            &format!("127.0.0.1:{}", setup.client.port),
            "-t",
            "1",
            "-P",
            "2",
            "-J",
        ],
    );
    let report = crate::common::json_report(&out);
    assert!(
        report["directions"][0]["receiver"]["bytes"]
            .as_u64()
            .unwrap()
            > 0,
        "{report}"
    );
}

#[test]
fn an_existing_file_on_its_own_ssh_server_is_kept_unless_forced_at_every_stream_count() {
    let Some(setup) = start(&[]) else { return };
    let (_local, source) = scratch_path("a.img");
    let bytes = write_random(&source, (3 << 20) + 5);
    let target = format!("127.0.0.1:{}:kept.img", setup.client.port);
    for streams in ["1", "2"] {
        std::fs::write(setup.root.join("kept.img"), b"keep me").unwrap();
        let args = ["copy", source.to_str().unwrap(), &target, "-P", streams];
        let out = xferbench_to_own(&setup, &args);
        assert_eq!(out.code, 1, "-P {streams}: {}", out.stderr);
        assert!(
            out.stderr.contains("--force"),
            "-P {streams}: {}",
            out.stderr
        );
        assert_file(&setup.root.join("kept.img"), b"keep me");
        assert!(
            crate::common::leftovers(&setup.root).is_empty(),
            "{:?}",
            crate::common::entries(&setup.root)
        );
        let out = xferbench_to_own(&setup, &[&args[..], &["--force"]].concat());
        assert_ran(
            &out,
            &format!("xferbench copy -P {streams} --force to serve"),
        );
        assert_file(&setup.root.join("kept.img"), &bytes);
    }
}

#[test]
fn xferbench_lat_round_trips_through_its_own_ssh_server() {
    let Some(setup) = start(&[]) else { return };
    let host = format!("127.0.0.1:{}", setup.client.port);
    let out = xferbench_to_own(&setup, &["lat", &host, "-n", "250", "-s", "100", "-J"]);
    assert_ran(&out, "xferbench lat --via ssh to serve");
    let report = crate::common::json_report(&out);
    assert_eq!(report["path"], "ssh", "{report:#}");
    assert_eq!(report["size"], 100);
    let latency = &report["latency"];
    assert_eq!(latency["samples"], 250, "{latency}");
    crate::common::assert_latency_ordered(latency);
    assert!(
        latency["what"]
            .as_str()
            .unwrap()
            .contains("(cipher aes128-gcm@openssh.com)"),
        "{latency}"
    );
}

#[test]
fn xferbench_tilde_paths_are_the_root_of_its_own_ssh_server_at_every_stream_count() {
    let Some(setup) = start(&[]) else { return };
    std::fs::create_dir(setup.root.join("in")).unwrap();
    let (local, source) = scratch_path("f.bin");
    let bytes = write_random(&source, (2 << 20) + 5);
    let at = |path: &str| format!("127.0.0.1:{}:{path}", setup.client.port);
    for streams in ["1", "3"] {
        let far = format!("~/in/f{streams}.bin");
        let out = xferbench_to_own(
            &setup,
            &["copy", source.to_str().unwrap(), &at(&far), "-P", streams],
        );
        assert_ran(&out, &format!("upload to {far} -P {streams}"));
        assert_file(&setup.root.join(format!("in/f{streams}.bin")), &bytes);
        let back = local.path().join(format!("back{streams}.bin"));
        let out = xferbench_to_own(
            &setup,
            &["copy", &at(&far), back.to_str().unwrap(), "-P", streams],
        );
        assert_ran(&out, &format!("download of {far} -P {streams}"));
        assert_file(&back, &bytes);
    }
    let out = xferbench_to_own(&setup, &["copy", source.to_str().unwrap(), &at("~/")]);
    assert_ran(&out, "upload to ~/");
    assert_file(&setup.root.join("f.bin"), &bytes);
    let out = xferbench_to_own(
        &setup,
        &[
            "copy",
            &at("~ann/x"),
            local.path().join("x").to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("runs none"), "{}", out.stderr);
}

#[test]
fn a_directory_as_source_on_its_own_ssh_server_is_named_at_every_stream_count() {
    let Some(setup) = start(&[]) else { return };
    std::fs::create_dir(setup.root.join("d")).unwrap();
    let local = temp_dir();
    for streams in ["1", "2", "3"] {
        let out = xferbench_to_own(
            &setup,
            &[
                "copy",
                &format!("127.0.0.1:{}:d", setup.client.port),
                local.path().join("x").to_str().unwrap(),
                "-P",
                streams,
            ],
        );
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(
            out.stderr.contains("is a directory"),
            "-P {streams}: {}",
            out.stderr
        );
        assert!(!local.path().join("x").exists());
    }
}
