//! `--via ssh` against a real OpenSSH sshd of the test's own (tests/common/sshd.rs): copies
//! both ways byte for byte over the SCP protocol and over parallel connections, `net`, and
//! every refusal OpenSSH's client would make. Each test prints "skipped" and passes when
//! OpenSSH is not installed (`.ci/run` installs it).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::sshd::{Sshd, sshd_with_tools};
use crate::common::{
    Background, Run, assert_empty_dir, assert_failed_cleanly, assert_same_content, has_warning,
    json_report, make_file, run_command, scratch_path, temp_dir, wait_until,
};

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

/// `xferbench ARGS --via ssh` with the test's key and known_hosts, and a HOME of its own so
/// no ~/.ssh of the machine is read.
fn xferbench_ssh(sshd: &Sshd, home: &Path, args: &[&str]) -> std::process::Command {
    let mut cmd = crate::common::command(args);
    cmd.args(["--via", "ssh", "--identity"])
        .arg(sshd.client_key())
        .arg("--known-hosts")
        .arg(sshd.known_hosts())
        .env("HOME", home)
        .env_remove("SSH_AUTH_SOCK");
    cmd
}

fn copy(sshd: &Sshd, home: &Path, from: &str, to: &str, extra: &[&str]) -> Run {
    let mut args = vec!["copy", from, to];
    args.extend_from_slice(extra);
    run_command(xferbench_ssh(sshd, home, &args))
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

fn no_partial_files(dir: &Path) -> bool {
    crate::common::leftovers(dir).is_empty()
}

fn round_trip(streams: &str, size: &str) {
    let Some(sshd) = start() else { return };
    let (home, local, far) = (temp_dir(), temp_dir(), temp_dir());
    let source = local.path().join("big file.img");
    if size == "0" {
        std::fs::write(&source, b"").unwrap();
    } else {
        make_file(&source, size);
    }
    let landed = far.path().join("big file.img");
    let out = copy(
        &sshd,
        home.path(),
        source.to_str().unwrap(),
        &remote(&sshd, &landed),
        &["-P", streams],
    );
    assert_ok("upload", &out, &sshd);
    assert_same_content(&source, &landed);
    assert!(out.stdout.contains("over ssh"), "{}", out.stdout);
    assert!(
        out.stdout.contains("cipher aes128-gcm@openssh.com"),
        "{}",
        out.stdout
    );
    assert!(no_partial_files(far.path()));

    let back = local.path().join("back.img");
    let out = copy(
        &sshd,
        home.path(),
        &remote(&sshd, &landed),
        back.to_str().unwrap(),
        &["-P", streams],
    );
    assert_ok("download", &out, &sshd);
    assert_same_content(&source, &back);
    assert!(no_partial_files(local.path()));
}

#[test]
fn one_stream_speaks_scp_both_ways_byte_for_byte() {
    round_trip("1", "3145851");
}

#[test]
fn parallel_connections_carry_ranges_both_ways_byte_for_byte() {
    round_trip("3", "5243003");
}

#[test]
fn an_empty_file_crosses_both_ways() {
    round_trip("1", "0");
}

#[test]
fn copy_json_names_the_path_the_cipher_and_the_streams() {
    let Some(sshd) = start() else { return };
    let (home, local, far) = (temp_dir(), temp_dir(), temp_dir());
    let source = local.path().join("a.img");
    make_file(&source, "2M");
    let out = copy(
        &sshd,
        home.path(),
        source.to_str().unwrap(),
        &remote(&sshd, &far.path().join("a.img")),
        &["-P", "2", "--cipher", "chacha20-poly1305@openssh.com", "-J"],
    );
    let report = json_report(&out);
    let conditions = &report["measurement"]["conditions"];
    assert_eq!(report["path"], "ssh");
    assert_eq!(conditions["cipher"], "chacha20-poly1305@openssh.com");
    assert_eq!(conditions["streams"], 2);
    assert_eq!(conditions["fsync_included"], true);
    assert_eq!(report["measurement"]["bytes"], 2 << 20);
    assert!(report["cpu"]["remote"].is_null(), "{report}");
}

#[test]
fn an_existing_remote_file_is_kept_unless_forced() {
    let Some(sshd) = start() else { return };
    let (home, local, far) = (temp_dir(), temp_dir(), temp_dir());
    let source = local.path().join("a.img");
    make_file(&source, "1M");
    let landed = far.path().join("a.img");
    std::fs::write(&landed, b"keep me").unwrap();
    let out = copy(
        &sshd,
        home.path(),
        source.to_str().unwrap(),
        &remote(&sshd, &landed),
        &[],
    );
    assert_failed_cleanly(&out);
    assert!(out.stderr.contains("--force"), "{}", out.stderr);
    assert_eq!(std::fs::read(&landed).unwrap(), b"keep me");
    let out = copy(
        &sshd,
        home.path(),
        source.to_str().unwrap(),
        &remote(&sshd, &landed),
        &["-f"],
    );
    assert_ok("forced upload", &out, &sshd);
    assert_same_content(&source, &landed);
}

#[test]
fn a_missing_remote_directory_fails_cleanly() {
    let Some(sshd) = start() else { return };
    let (home, local, far) = (temp_dir(), temp_dir(), temp_dir());
    let source = local.path().join("a.img");
    make_file(&source, "1M");
    for streams in ["1", "2"] {
        let target = far.path().join("no/such/dir/a.img");
        let out = copy(
            &sshd,
            home.path(),
            source.to_str().unwrap(),
            &remote(&sshd, &target),
            &["-P", streams],
        );
        assert_failed_cleanly(&out);
        assert!(
            out.stderr.contains("No such file or directory"),
            "{}",
            out.stderr
        );
    }
    let out = copy(
        &sshd,
        home.path(),
        &remote(&sshd, &far.path().join("absent.img")),
        local.path().join("x").to_str().unwrap(),
        &["-P", "1"],
    );
    assert_failed_cleanly(&out);
    assert!(out.stderr.contains("absent.img"), "{}", out.stderr);
    assert!(!local.path().join("x").exists());
}

#[test]
fn an_unknown_host_key_is_refused_until_accepted_then_recorded() {
    let Some(sshd) = start() else { return };
    let (home, local, far) = (temp_dir(), temp_dir(), temp_dir());
    let source = local.path().join("a.img");
    make_file(&source, "1M");
    let known_hosts = home.path().join("known_hosts");
    let attempt = |extra: &[&str]| {
        let mut cmd = crate::common::command([
            "copy",
            source.to_str().unwrap(),
            &remote(&sshd, &far.path().join("a.img")),
            "-f",
        ]);
        cmd.args(["--via", "ssh", "--identity"])
            .arg(sshd.client_key())
            .arg("--known-hosts")
            .arg(&known_hosts)
            .args(extra)
            .env("HOME", home.path())
            .env_remove("SSH_AUTH_SOCK");
        run_command(cmd)
    };
    let out = attempt(&[]);
    assert_failed_cleanly(&out);
    assert!(
        out.stderr.contains("host key is not known"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("SHA256:"), "{}", out.stderr);
    assert!(!far.path().join("a.img").exists());

    let out = attempt(&["--accept-new-host-key"]);
    assert_ok("accept-new", &out, &sshd);
    let recorded = std::fs::read_to_string(&known_hosts).unwrap();
    assert!(
        recorded.contains(&format!("[127.0.0.1]:{}", sshd.port())),
        "{recorded}"
    );
    assert_ok("known now", &attempt(&[]), &sshd);
}

#[test]
fn a_changed_host_key_is_refused_like_openssh_even_with_accept_new() {
    let Some(sshd) = start() else { return };
    let (home, local, far) = (temp_dir(), temp_dir(), temp_dir());
    let source = local.path().join("a.img");
    make_file(&source, "1M");
    // Another ed25519 key recorded for this host and port.
    let other = home.path().join("other");
    crate::common::sshd::new_key(&other);
    let other_pub =
        std::fs::read_to_string(PathBuf::from(format!("{}.pub", other.display()))).unwrap();
    let mut fields = other_pub.split_whitespace();
    let (kind, blob) = (fields.next().unwrap(), fields.next().unwrap());
    let known_hosts = home.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!("[127.0.0.1]:{} {kind} {blob}\n", sshd.port()),
    )
    .unwrap();
    let mut cmd = crate::common::command([
        "copy",
        source.to_str().unwrap(),
        &remote(&sshd, &far.path().join("a.img")),
    ]);
    cmd.args(["--via", "ssh", "--accept-new-host-key", "--identity"])
        .arg(sshd.client_key())
        .arg("--known-hosts")
        .arg(&known_hosts)
        .env("HOME", home.path());
    let out = run_command(cmd);
    assert_failed_cleanly(&out);
    assert!(
        out.stderr
            .contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("ssh-keygen"), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("{}:1", known_hosts.display())),
        "{}",
        out.stderr
    );
    assert!(!far.path().join("a.img").exists());
}

#[test]
fn a_key_the_server_does_not_know_is_refused() {
    let Some(sshd) = start() else { return };
    let (home, local, far) = (temp_dir(), temp_dir(), temp_dir());
    let source = local.path().join("a.img");
    make_file(&source, "1M");
    let stranger = home.path().join("stranger");
    crate::common::sshd::new_key(&stranger);
    let mut cmd = crate::common::command([
        "copy",
        source.to_str().unwrap(),
        &remote(&sshd, &far.path().join("a.img")),
    ]);
    cmd.args(["--via", "ssh", "--identity"])
        .arg(&stranger)
        .arg("--known-hosts")
        .arg(sshd.known_hosts())
        .env("HOME", home.path())
        .env_remove("SSH_AUTH_SOCK");
    let out = run_command(cmd);
    assert_failed_cleanly(&out);
    assert!(
        out.stderr.contains("permission denied (publickey)"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("stranger"), "{}", out.stderr);

    // No key at all: nothing in -i, no ~/.ssh, no agent.
    let mut cmd = crate::common::command([
        "net",
        &format!("{}:{}", sshd.destination(), sshd.port()),
        "-t",
        "1",
    ]);
    cmd.args(["--via", "ssh", "--known-hosts"])
        .arg(sshd.known_hosts())
        .env("HOME", home.path())
        .env_remove("SSH_AUTH_SOCK");
    let out = run_command(cmd);
    assert_failed_cleanly(&out);
    assert!(out.stderr.contains("no key to offer"), "{}", out.stderr);
}

#[test]
fn ssh_config_supplies_host_name_port_user_and_identity() {
    let Some(sshd) = start() else { return };
    let (home, local, far) = (temp_dir(), temp_dir(), temp_dir());
    let source = local.path().join("a.img");
    make_file(&source, "1M");
    std::fs::create_dir(home.path().join(".ssh")).unwrap();
    std::fs::write(
        home.path().join(".ssh/config"),
        format!(
            "Host nas\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n",
            sshd.port(),
            sshd.user(),
            sshd.client_key().display()
        ),
    )
    .unwrap();
    std::fs::copy(sshd.known_hosts(), home.path().join(".ssh/known_hosts")).unwrap();
    let landed = far.path().join("a.img");
    let mut cmd = crate::common::command([
        "copy",
        source.to_str().unwrap(),
        &format!("nas:{}", landed.display()),
        "--via",
        "ssh",
    ]);
    cmd.env("HOME", home.path()).env_remove("SSH_AUTH_SOCK");
    let out = run_command(cmd);
    assert_ok("copy to a Host alias", &out, &sshd);
    assert_same_content(&source, &landed);
}

#[test]
fn net_sends_random_bytes_into_a_remote_sink_and_names_the_cipher() {
    let Some(sshd) = start() else { return };
    let home = temp_dir();
    let host = format!("{}:{}", sshd.destination(), sshd.port());
    let out = run_command(xferbench_ssh(
        &sshd,
        home.path(),
        &["net", &host, "-t", "1", "-P", "2", "-J"],
    ));
    let report = json_report(&out);
    let upload = &report["directions"][0];
    assert_eq!(report["path"], "ssh");
    assert_eq!(upload["direction"], "upload");
    assert_eq!(
        upload["receiver"]["conditions"]["cipher"],
        "aes128-gcm@openssh.com"
    );
    let bytes = upload["receiver"]["bytes"].as_u64().unwrap();
    assert!(bytes > 0);
    assert_eq!(upload["streams"].as_array().unwrap().len(), 2);

    let out = run_command(xferbench_ssh(
        &sshd,
        home.path(),
        &["net", &host, "-t", "1", "-R"],
    ));
    crate::common::assert_usage_error(&out);
    assert!(out.stderr.contains("uploads only"), "{}", out.stderr);
}

#[test]
fn lat_echoes_every_message_through_cat_and_names_the_cipher() {
    let Some(sshd) = start() else { return };
    let home = temp_dir();
    let host = format!("{}:{}", sshd.destination(), sshd.port());
    let out = run_command(xferbench_ssh(
        &sshd,
        home.path(),
        &["lat", &host, "-n", "300", "-s", "1K", "-J"],
    ));
    assert_ok("lat --via ssh", &out, &sshd);
    let report = json_report(&out);
    assert_eq!(report["path"], "ssh", "{report:#}");
    assert_eq!(report["size"], 1024);
    let latency = &report["latency"];
    assert_eq!(latency["samples"], 300, "{latency}");
    crate::common::assert_latency_ordered(latency);
    let what = latency["what"].as_str().unwrap();
    assert!(
        what.contains("1024-byte message over an SSH channel (cipher aes128-gcm@openssh.com)")
            && what.contains("`cat`"),
        "{what}"
    );
    // A stock server says nothing of its CPU.
    assert!(report["cpu"]["remote"].is_null(), "{report:#}");

    let out = run_command(xferbench_ssh(
        &sshd,
        home.path(),
        &[
            "lat",
            &host,
            "-t",
            "1",
            "--cipher",
            "chacha20-poly1305@openssh.com",
        ],
    ));
    assert_ok("lat --via ssh -t 1", &out, &sshd);
    assert!(
        out.stdout.contains("over ssh") && out.stdout.contains("cipher chacha20-poly1305"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains(", 1000 samples)"), "{}", out.stdout);
}

/// An sshd whose `cat` is `script`, first on the far side's PATH (then /usr/bin and /bin); the
/// directory that holds it is returned too, to live as long as the sshd.
fn sshd_with_cat(script: &str) -> Option<(Sshd, tempfile::TempDir)> {
    let (tools, cat) = scratch_path("cat");
    std::fs::write(&cat, script).unwrap();
    std::fs::set_permissions(&cat, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", tools.path().display());
    let sshd = Sshd::start_with(&format!("SetEnv PATH={path}\n"));
    if sshd.is_none() {
        eprintln!("skipped: OpenSSH is not installed");
    }
    Some((sshd?, tools))
}

#[test]
fn lat_fails_when_the_far_cat_sends_back_other_bytes() {
    let Some(perl) = ["/usr/bin/perl", "/bin/perl"]
        .into_iter()
        .find(|path| Path::new(path).exists())
    else {
        eprintln!("skipped: no perl for a `cat` that changes bytes");
        return;
    };
    // A `cat` that adds one to every byte.
    let Some((sshd, _tools)) = sshd_with_cat(&format!(
        "#!{perl}\n$| = 1;\nwhile (sysread(STDIN, my $buf, 65536)) {{ $buf =~ tr/\\x00-\\xff/\\x01-\\xff\\x00/; syswrite(STDOUT, $buf); }}\n"
    )) else {
        return;
    };
    let home = temp_dir();
    let host = format!("{}:{}", sshd.destination(), sshd.port());
    let out = run_command(xferbench_ssh(
        &sshd,
        home.path(),
        &["lat", &host, "-n", "10"],
    ));
    assert_failed_cleanly(&out);
    assert!(
        out.stderr
            .contains("sent back other bytes than it was sent (round 1)"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_server_killed_mid_upload_leaves_no_file_under_its_name() {
    let Some(mut sshd) = start() else { return };
    let (home, local, far) = (temp_dir(), temp_dir(), temp_dir());
    let source = local.path().join("a.img");
    make_file(&source, "1G");
    let landed = far.path().join("a.img");
    let mut cmd = xferbench_ssh(
        &sshd,
        home.path(),
        &[
            "copy",
            source.to_str().unwrap(),
            &remote(&sshd, &landed),
            "-P",
            "1",
            "--cipher",
            "chacha20-poly1305@openssh.com",
        ],
    );
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let copy = Background(cmd.spawn().unwrap());
    let partial = far.path().join(".a.img.xferbench-partial");
    let started = wait_until(Duration::from_secs(30), || {
        std::fs::metadata(&partial).is_ok_and(|m| m.len() > 0)
    });
    sshd.kill_all();
    let out = copy.finish(Duration::from_secs(90));
    assert!(started, "the upload never started: {}", out.stderr);
    assert_eq!(
        out.code, 1,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    assert!(out.stderr.starts_with("xferbench: "), "{}", out.stderr);
    assert!(
        !landed.exists(),
        "a file under the final name after a failed copy"
    );
}

#[test]
fn run_over_ssh_takes_the_far_baseline_with_dd_and_judges_the_path() {
    let Some(sshd) = start() else { return };
    let (home, local, far) = (temp_dir(), temp_dir(), temp_dir());
    let host = format!("{}:{}", sshd.destination(), sshd.port());
    let out = run_command(xferbench_ssh(
        &sshd,
        home.path(),
        &[
            "run",
            &host,
            "-s",
            "32M",
            "-t",
            "1",
            "-P",
            "2",
            "-J",
            "--dir",
            local.path().to_str().unwrap(),
            "--remote-dir",
            far.path().to_str().unwrap(),
            "--files",
            "20",
            "--file-size",
            "16K",
        ],
    ));
    let report = json_report(&out);
    let path = &report["paths"][0];
    assert_eq!(path["path"], "ssh", "{report}");
    // The small files went over scp -r, each fsynced, and their tree was removed after.
    assert_eq!(path["small_files"]["files"], 20, "{path}");
    assert!(path["small_files_failed"].is_null(), "{path}");
    assert!(path["copy"]["median_bytes_per_sec"].as_f64().unwrap() > 0.0);
    assert!(path["network"]["median_bytes_per_sec"].as_f64().unwrap() > 0.0);
    let baseline = &report["destination_write"]["measurements"][0];
    assert_eq!(baseline["bytes"], 32 << 20, "{report}");
    assert_eq!(baseline["conditions"]["direct"], true);
    assert!(has_warning(&report, "zero_baseline"), "{report}");
    // Round trips through the stock server's `cat`.
    assert_eq!(path["latency"]["samples"], 1000, "{path}");
    assert!(path["latency_failed"].is_null(), "{path}");
    assert!(
        path["latency"]["what"]
            .as_str()
            .unwrap()
            .contains("cipher aes128-gcm@openssh.com"),
        "{path}"
    );
    // The copies were measured, then removed with the baseline file: nothing is left on the far
    // disk.
    let names = crate::common::entries(far.path());
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn run_over_ssh_keeps_its_rates_and_verdict_when_the_far_cat_cannot_echo() {
    let Some(real_cat) = ["/usr/bin/cat", "/bin/cat"]
        .into_iter()
        .find(|path| Path::new(path).exists())
    else {
        eprintln!("skipped: no cat");
        return;
    };
    // A sink, never an echo: `cat > /dev/null` works, a bare `cat` fails.
    let Some((sshd, _tools)) = sshd_with_cat(&format!(
        "#!/bin/sh\nif [ /dev/stdout -ef /dev/null ]; then exec {real_cat} \"$@\"; fi\necho 'this cat only sinks' >&2\nexit 3\n"
    )) else {
        return;
    };
    let (home, local, far) = (temp_dir(), temp_dir(), temp_dir());
    let host = format!("{}:{}", sshd.destination(), sshd.port());
    let args = [
        "run",
        &host,
        "-s",
        "8M",
        "-t",
        "1",
        "--files",
        "0",
        "--dir",
        local.path().to_str().unwrap(),
        "--remote-dir",
        far.path().to_str().unwrap(),
    ];
    let mut json_args = args.to_vec();
    json_args.push("-J");
    let report = json_report(&run_command(xferbench_ssh(&sshd, home.path(), &json_args)));
    let path = &report["paths"][0];
    assert!(path["latency"].is_null(), "{path}");
    let why = path["latency_failed"].as_str().unwrap();
    assert!(
        why.contains("`cat` failed on the remote (exit 3)") && why.contains("this cat only sinks"),
        "{why}"
    );
    assert!(path["network"]["median_bytes_per_sec"].as_f64().unwrap() > 0.0);
    assert!(path["copy"]["median_bytes_per_sec"].as_f64().unwrap() > 0.0);
    assert!(path["verdict"].is_object(), "{path}");

    let out = run_command(xferbench_ssh(&sshd, home.path(), &args));
    assert_ok("run, text", &out, &sshd);
    assert!(
        out.stdout
            .lines()
            .any(|line| line.contains("ssh latency (one way)")
                && line.contains("not measured: ")
                && line.contains("exit 3")),
        "{}",
        out.stdout
    );
}

#[test]
fn a_remote_without_scp_takes_uploads_by_dd_and_names_scp_for_a_download() {
    // A PATH with every tool the SSH path uses but scp.
    let tools = temp_dir();
    for tool in [
        "dd", "stat", "truncate", "sync", "mv", "rm", "cat", "sh", "bash",
    ] {
        for dir in ["/usr/bin", "/bin"] {
            let found = Path::new(dir).join(tool);
            if found.exists() && !tools.path().join(tool).exists() {
                std::os::unix::fs::symlink(&found, tools.path().join(tool)).unwrap();
            }
        }
    }
    let Some(sshd) = Sshd::start_with(&format!("SetEnv PATH={}\n", tools.path().display())) else {
        eprintln!("skipped: OpenSSH is not installed");
        return;
    };
    let (home, local, far) = (temp_dir(), temp_dir(), temp_dir());
    let source = local.path().join("a.img");
    make_file(&source, "1M");
    let landed = far.path().join("a.img");
    for streams in ["1", "2"] {
        let out = copy(
            &sshd,
            home.path(),
            source.to_str().unwrap(),
            &remote(&sshd, &landed),
            &["-P", streams, "--force"],
        );
        assert_ok("upload with dd", &out, &sshd);
        assert_same_content(&source, &landed);
    }
    // One stream down speaks SCP's source.
    let back = local.path().join("back.img");
    let out = copy(
        &sshd,
        home.path(),
        &remote(&sshd, &landed),
        back.to_str().unwrap(),
        &["-P", "1"],
    );
    assert_failed_cleanly(&out);
    assert!(out.stderr.contains("`scp`"), "{}", out.stderr);
    assert!(!back.exists());
    assert!(
        no_partial_files(local.path()),
        "{:?}",
        crate::common::entries(local.path())
    );
}

#[test]
fn a_read_only_remote_directory_fails_at_once_naming_the_file_it_could_not_open() {
    let Some(sshd) = start() else { return };
    let (home, local, far) = (temp_dir(), temp_dir(), temp_dir());
    let locked = crate::common::ReadOnlyDir::new(far.path().join("locked"));
    if !locked.is_unwritable() {
        eprintln!("skipped: cannot make a directory read-only here");
        return;
    }
    let source = local.path().join("a.img");
    make_file(&source, "1M");
    for streams in ["1", "2"] {
        let out = copy(
            &sshd,
            home.path(),
            source.to_str().unwrap(),
            &remote(&sshd, &locked.path.join("a.img")),
            &["-P", streams],
        );
        assert_failed_cleanly(&out);
        // The far dd that would create the temporary file says why it could not.
        assert!(out.stderr.contains("failed to open"), "{}", out.stderr);
        assert!(
            out.stderr.contains(&*locked.path.to_string_lossy()),
            "{}",
            out.stderr
        );
        assert_empty_dir(&locked.path);
    }
}

/// A 2 MiB tmpfs mounted for the test (root only), unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path) -> Option<SmallDisk> {
        // SAFETY: geteuid takes nothing and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        std::fs::create_dir(dir).ok()?;
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "xferbench-test"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        mounted.then(|| SmallDisk(dir.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_remote_disk_fails_cleanly_and_leaves_nothing() {
    let Some(sshd) = start() else { return };
    let (home, local, far) = (temp_dir(), temp_dir(), temp_dir());
    let Some(disk) = SmallDisk::mount(&far.path().join("small")) else {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    };
    let source = local.path().join("a.img");
    make_file(&source, "6M");
    for streams in ["1", "3"] {
        let out = copy(
            &sshd,
            home.path(),
            source.to_str().unwrap(),
            &remote(&sshd, &disk.0.join("a.img")),
            &["-P", streams],
        );
        assert_failed_cleanly(&out);
        assert!(
            out.stderr.contains("No space left on device"),
            "-P {streams}: {}",
            out.stderr
        );
        assert_empty_dir(&disk.0);
    }
}

#[test]
fn the_agent_key_logs_in_when_no_key_file_is_given() {
    let Some(sshd) = start() else { return };
    let (home, local, far) = (temp_dir(), temp_dir(), temp_dir());
    let socket = home.path().join("agent.sock");
    let Ok(agent) = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdout(std::process::Stdio::null())
        .spawn()
    else {
        eprintln!("skipped: no ssh-agent");
        return;
    };
    let agent = Background(agent);
    assert!(
        wait_until(Duration::from_secs(10), || socket.exists()),
        "ssh-agent made no socket"
    );
    let added = std::process::Command::new("ssh-add")
        .arg(sshd.client_key())
        .env("SSH_AUTH_SOCK", &socket)
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "ssh-add: {}",
        String::from_utf8_lossy(&added.stderr)
    );
    let source = local.path().join("a.img");
    make_file(&source, "1M");
    let landed = far.path().join("a.img");
    let mut cmd = crate::common::command([
        "copy",
        source.to_str().unwrap(),
        &remote(&sshd, &landed),
        "--via",
        "ssh",
        "-P",
        "1",
    ]);
    cmd.arg("--known-hosts")
        .arg(sshd.known_hosts())
        .env("HOME", home.path())
        .env("SSH_AUTH_SOCK", &socket);
    let out = run_command(cmd);
    drop(agent);
    assert_ok("copy with the agent's key", &out, &sshd);
    assert_same_content(&source, &landed);
}

/// `xferbench lat HOST -n 1 --via ssh` with the client key, this known_hosts file and a config
/// that reads no global known_hosts file of the machine: one login, one round trip.
fn reach(sshd: &Sshd, home: &Path, known_hosts: &Path, extra: &[&str]) -> Run {
    let config = home.join("ssh_config");
    if !config.exists() {
        std::fs::write(&config, "GlobalKnownHostsFile /dev/null\n").unwrap();
    }
    let mut cmd = crate::common::command([
        "lat",
        &format!("{}:{}", sshd.destination(), sshd.port()),
        "-n",
        "1",
        "--via",
        "ssh",
        "-F",
    ]);
    cmd.arg(&config)
        .arg("--identity")
        .arg(sshd.client_key())
        .arg("--known-hosts")
        .arg(known_hosts)
        .args(extra)
        .env("HOME", home)
        .env_remove("SSH_AUTH_SOCK");
    run_command(cmd)
}

/// OpenSSH's own verdict on this known_hosts file: whether `ssh` logs in.
fn openssh_accepts(sshd: &Sshd, known_hosts: &Path) -> bool {
    let mut cmd = sshd.ssh_command_with(sshd.client_key(), known_hosts, "true");
    cmd.stdin(std::process::Stdio::null());
    let run =
        crate::common::sshd::run_bounded(cmd, None, Duration::from_secs(30)).expect("ssh hung");
    run.code == 0
}

/// An sshd with an ecdsa host key beside its ed25519 one; the key's directory lives with it.
fn sshd_with_ecdsa_host_key() -> Option<(Sshd, tempfile::TempDir, String)> {
    let keys = temp_dir();
    let ecdsa = keys
        .path()
        .canonicalize()
        .unwrap()
        .join("ssh_host_ecdsa_key");
    crate::common::sshd::new_key_of_type(&ecdsa, "ecdsa");
    let sshd = Sshd::start_with(&format!("HostKey {}\n", ecdsa.display()));
    if sshd.is_none() {
        eprintln!("skipped: OpenSSH is not installed");
    }
    let public = crate::common::sshd::public_key(&ecdsa);
    Some((sshd?, keys, public))
}

/// `ALGORITHM BASE64` of the sshd's ed25519 host key.
fn host_key(sshd: &Sshd) -> String {
    let text = std::fs::read_to_string(sshd.host_key_pub()).unwrap();
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn known_hosts_lines_are_judged_as_openssh_judges_them() {
    let Some((sshd, _keys, ecdsa)) = sshd_with_ecdsa_host_key() else {
        return;
    };
    let (home, other) = scratch_path("other");
    crate::common::sshd::new_key(&other);
    let other = crate::common::sshd::public_key(&other);
    let (ed, port) = (host_key(&sshd), sshd.port());
    let cases = [
        ("bracketed", format!("[127.0.0.1]:{port} {ed}\n"), true),
        ("hashed", format!("[127.0.0.1]:{port} {ed}\n"), true),
        ("wildcard", format!("[127.0.0.?]:{port} {ed}\n"), true),
        (
            "comma list",
            format!("nas,[127.0.0.1]:{port},10.0.0.2 {ed}\n"),
            true,
        ),
        (
            "comments",
            format!("# pinned\n\n  [127.0.0.1]:{port} {ed} a comment\n"),
            true,
        ),
        (
            "negated",
            format!("[127.0.0.*]:*,![127.0.0.1]:{port} {ed}\n"),
            false,
        ),
        ("no port", format!("127.0.0.1 {ed}\n"), true),
        ("no port, other key", format!("127.0.0.1 {other}\n"), false),
        ("ecdsa only", format!("[127.0.0.1]:{port} {ecdsa}\n"), true),
        ("changed", format!("[127.0.0.1]:{port} {other}\n"), false),
        (
            "revoked",
            format!("[127.0.0.1]:{port} {ed}\n@revoked * {ed}\n"),
            false,
        ),
        (
            "authority",
            format!("@cert-authority [127.0.0.1]:* {other}\n"),
            false,
        ),
    ];
    for (what, text, accepted) in cases {
        let known_hosts = home
            .path()
            .join(format!("known_hosts_{}", what.replace(' ', "_")));
        std::fs::write(&known_hosts, &text).unwrap();
        if what == "hashed" {
            let hashed = std::process::Command::new("ssh-keygen")
                .arg("-H")
                .arg("-f")
                .arg(&known_hosts)
                .output()
                .unwrap();
            assert!(hashed.status.success(), "ssh-keygen -H: {hashed:?}");
            let text = std::fs::read_to_string(&known_hosts).unwrap();
            assert!(text.starts_with("|1|"), "{text}");
        }
        assert_eq!(
            openssh_accepts(&sshd, &known_hosts),
            accepted,
            "OpenSSH, {what}"
        );
        let out = reach(&sshd, home.path(), &known_hosts, &[]);
        if accepted {
            assert_ok(what, &out, &sshd);
        } else {
            assert_failed_cleanly(&out);
        }
    }
}

#[test]
fn a_host_pinned_only_by_its_ecdsa_key_is_known_and_accept_new_appends_nothing() {
    let Some((sshd, _keys, ecdsa)) = sshd_with_ecdsa_host_key() else {
        return;
    };
    let (home, known_hosts) = scratch_path("known_hosts");
    let pinned = format!("[127.0.0.1]:{} {ecdsa}\n", sshd.port());
    std::fs::write(&known_hosts, &pinned).unwrap();
    let out = reach(&sshd, home.path(), &known_hosts, &["--accept-new-host-key"]);
    assert_ok("ecdsa pinned", &out, &sshd);
    assert_eq!(std::fs::read_to_string(&known_hosts).unwrap(), pinned);
}

#[test]
fn unknown_host_refusal_names_bracketed_known_hosts_entry() {
    let Some(sshd) = start() else { return };
    let (home, known_hosts) = scratch_path("known_hosts");
    let out = reach(&sshd, home.path(), &known_hosts, &[]);
    assert_failed_cleanly(&out);
    let line = format!("[127.0.0.1]:{} {}", sshd.port(), host_key(&sshd));
    assert!(
        out.stderr.contains(&format!(
            "add this line to {}: {line}",
            known_hosts.display()
        )),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("SHA256:"), "{}", out.stderr);
}

#[test]
fn accept_new_records_the_key_once_when_parallel_logins_meet_an_unknown_host() {
    let Some(sshd) = start() else { return };
    let (home, local, far) = (temp_dir(), temp_dir(), temp_dir());
    let source = local.path().join("a.img");
    make_file(&source, "1M");
    let known_hosts = home.path().join("known_hosts");
    let mut cmd = crate::common::command([
        "copy",
        source.to_str().unwrap(),
        &remote(&sshd, &far.path().join("a.img")),
        "-P",
        "4",
        "--via",
        "ssh",
        "--accept-new-host-key",
        "--identity",
    ]);
    cmd.arg(sshd.client_key())
        .arg("--known-hosts")
        .arg(&known_hosts)
        .env("HOME", home.path())
        .env_remove("SSH_AUTH_SOCK");
    assert_ok("accept-new -P 4", &run_command(cmd), &sshd);
    let recorded = std::fs::read_to_string(&known_hosts).unwrap();
    assert_eq!(
        recorded,
        format!("[127.0.0.1]:{} {}\n", sshd.port(), host_key(&sshd))
    );
}

#[test]
fn revoked_and_authority_lines_stop_the_login_and_accept_new_records_nothing() {
    let Some(sshd) = start() else { return };
    let (home, other) = scratch_path("other");
    crate::common::sshd::new_key(&other);
    let other = crate::common::sshd::public_key(&other);
    let ed = host_key(&sshd);
    for (text, said) in [
        (format!("@revoked * {ed}\n"), "is REVOKED"),
        (
            format!("@cert-authority [127.0.0.1]:* {other}\n"),
            "does not check host certificates",
        ),
    ] {
        let known_hosts = home.path().join("known_hosts");
        std::fs::write(&known_hosts, &text).unwrap();
        let out = reach(&sshd, home.path(), &known_hosts, &["--accept-new-host-key"]);
        assert_failed_cleanly(&out);
        assert!(out.stderr.contains(said), "{}", out.stderr);
        assert!(
            out.stderr.contains(&format!("{}:1", known_hosts.display())),
            "{}",
            out.stderr
        );
        assert_eq!(std::fs::read_to_string(&known_hosts).unwrap(), text);
    }
}

#[test]
fn ssh_config_tokens_and_known_hosts_files_are_expanded_like_openssh() {
    let Some(sshd) = start() else { return };
    let (home, local, far) = (temp_dir(), temp_dir(), temp_dir());
    let source = local.path().join("a.img");
    make_file(&source, "1M");
    std::fs::create_dir_all(home.path().join(".ssh/keys")).unwrap();
    std::fs::create_dir_all(home.path().join("hosts")).unwrap();
    // Host "1" is 127.0.0.%h; IdentityFile %d/.ssh/keys/%r@%h, UserKnownHostsFile ~/hosts/%n_%p.
    std::fs::copy(
        sshd.client_key(),
        home.path()
            .join(format!(".ssh/keys/{}@127.0.0.1", sshd.user())),
    )
    .unwrap();
    std::fs::copy(
        sshd.known_hosts(),
        home.path().join(format!("hosts/1_{}", sshd.port())),
    )
    .unwrap();
    std::fs::write(
        home.path().join(".ssh/config"),
        format!(
            "Host 1\n  HostName 127.0.0.%h\n  Port {}\n  User {}\n  IdentityFile %d/.ssh/keys/%r@%h\n  \
             UserKnownHostsFile ~/hosts/%n_%p\n  GlobalKnownHostsFile none\n  IdentitiesOnly yes\n",
            sshd.port(),
            sshd.user(),
        ),
    )
    .unwrap();
    let landed = far.path().join("a.img");
    let mut cmd = crate::common::command([
        "copy",
        source.to_str().unwrap(),
        &format!("1:{}", landed.display()),
        "--via",
        "ssh",
    ]);
    cmd.env("HOME", home.path()).env_remove("SSH_AUTH_SOCK");
    let out = run_command(cmd);
    assert_ok("copy with tokens in ssh_config", &out, &sshd);
    assert_same_content(&source, &landed);
}

#[test]
fn route_changing_ssh_config_directives_are_refused_not_ignored() {
    let Some(sshd) = start() else { return };
    let home = temp_dir();
    for (line, said) in [
        ("ProxyCommand nc %h %p", "ProxyCommand is not supported"),
        ("BindAddress 127.0.0.1", "BindAddress is not supported"),
        (
            "CanonicalizeHostname yes",
            "CanonicalizeHostname is not supported",
        ),
        ("User x\nMatch exec \"true\"", "Match is not supported"),
    ] {
        // The file `reach` gives as -F.
        std::fs::write(
            home.path().join("ssh_config"),
            format!("Host 127.0.0.1\n  {line}\n  GlobalKnownHostsFile /dev/null\n"),
        )
        .unwrap();
        let out = reach(&sshd, home.path(), sshd.known_hosts(), &[]);
        assert_failed_cleanly(&out);
        assert!(out.stderr.contains(said), "{line}: {}", out.stderr);
        assert!(
            out.stderr.contains("for 127.0.0.1"),
            "{line}: {}",
            out.stderr
        );
    }
}

#[test]
fn proxy_jump_reaches_the_second_sshd_through_the_first() {
    let Some(mut jump) = start() else { return };
    let Some(target) = start() else { return };
    let (home, local, far) = (temp_dir(), temp_dir(), temp_dir());
    let source = local.path().join("a.img");
    make_file(&source, "3M");
    let known_hosts = home.path().join("known_hosts");
    let both = std::fs::read_to_string(jump.known_hosts()).unwrap()
        + &std::fs::read_to_string(target.known_hosts()).unwrap();
    std::fs::write(&known_hosts, both).unwrap();
    let config = home.path().join("config");
    // The target's key is authorized on both (each sshd has its own client key).
    let key = home.path().join("id");
    std::fs::copy(target.client_key(), &key).unwrap();
    std::fs::write(
        &config,
        format!(
            "Host far\n  HostName 127.0.0.1\n  Port {}\n  ProxyJump %r@127.0.0.1:{}\nHost *\n  IdentityFile {}\n  IdentityFile {}\n",
            target.port(),
            jump.port(),
            jump.client_key().display(),
            key.display(),
        ),
    )
    .unwrap();
    let copy_via_jump = |streams: &str| {
        let landed = far.path().join("a.img");
        let mut cmd = crate::common::command([
            "copy",
            source.to_str().unwrap(),
            &format!("{}@far:{}", target.user(), landed.display()),
            "--via",
            "ssh",
            "-f",
            "-P",
            streams,
            "-F",
            config.to_str().unwrap(),
            "--known-hosts",
            known_hosts.to_str().unwrap(),
        ]);
        cmd.env("HOME", home.path()).env_remove("SSH_AUTH_SOCK");
        run_command(cmd)
    };
    for streams in ["1", "3"] {
        let out = copy_via_jump(streams);
        assert_ok(
            &format!("copy through a jump host, -P {streams}"),
            &out,
            &target,
        );
        assert_same_content(&source, &far.path().join("a.img"));
    }
    // Without the jump host the copy cannot go: it went through it.
    jump.kill_all();
    let out = copy_via_jump("1");
    assert_failed_cleanly(&out);
    assert!(
        out.stderr.contains(&format!("127.0.0.1:{}", jump.port())),
        "{}",
        out.stderr
    );
}

#[test]
fn a_server_without_public_key_logins_is_named_with_the_methods_it_offers() {
    let Some(sshd) = Sshd::start_without_login(
        "Match Address 127.0.0.1\n  PubkeyAuthentication no\n  PasswordAuthentication yes\n  KbdInteractiveAuthentication yes\n",
    ) else {
        eprintln!("skipped: OpenSSH is not installed");
        return;
    };
    let home = temp_dir();
    let out = reach(&sshd, home.path(), sshd.known_hosts(), &[]);
    assert_failed_cleanly(&out);
    assert!(
        out.stderr
            .contains("the server offers password, keyboard-interactive")
            || out
                .stderr
                .contains("the server offers keyboard-interactive, password"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("public key only"), "{}", out.stderr);
}

/// The home directory of the user the tests run as.
fn login_home() -> PathBuf {
    // SAFETY: getpwuid returns static storage or null; read at once.
    unsafe {
        let entry = libc::getpwuid(libc::geteuid());
        assert!(!entry.is_null(), "no passwd entry");
        let text =
            |p: *const libc::c_char| std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned();
        PathBuf::from(text((*entry).pw_dir))
    }
}

#[test]
fn a_noisy_remote_shell_start_up_is_named_for_downloads_and_harmless_to_uploads() {
    // A HOME whose .bashrc prints: bash run by sshd reads ~/.bashrc (Debian's and most builds).
    let rc = temp_dir();
    std::fs::write(rc.path().join(".bashrc"), "echo hello from bashrc\n").unwrap();
    std::fs::write(rc.path().join(".profile"), "echo hello from bashrc\n").unwrap();
    let Some(sshd) = Sshd::start_with(&format!("SetEnv HOME={}\n", rc.path().display())) else {
        eprintln!("skipped: OpenSSH is not installed");
        return;
    };
    let mut probe = sshd.ssh_command("true");
    probe.stdin(std::process::Stdio::null());
    let said =
        crate::common::sshd::run_bounded(probe, None, Duration::from_secs(30)).expect("ssh hung");
    if !said.stdout.contains("hello from bashrc") {
        eprintln!("skipped: this login shell reads no start-up file for a command over SSH");
        return;
    }
    let (home, local, far) = (temp_dir(), temp_dir(), temp_dir());
    let source = local.path().join("a.img");
    make_file(&source, "1M");
    let on_far = far.path().join("b.img");
    make_file(&on_far, "1M");
    let back = local.path().join("back.img");
    // An upload's far side answers on stdout with nothing the client reads: the noise is
    // harmless there.
    let landed = far.path().join("a.img");
    let out = copy(
        &sshd,
        home.path(),
        source.to_str().unwrap(),
        &remote(&sshd, &landed),
        &["-P", "1"],
    );
    assert_ok("upload under a noisy start-up", &out, &sshd);
    assert_same_content(&source, &landed);
    for (from, to, streams) in [
        (
            remote(&sshd, &on_far),
            back.to_str().unwrap().to_string(),
            "1",
        ),
        (
            remote(&sshd, &on_far),
            back.to_str().unwrap().to_string(),
            "2",
        ),
    ] {
        let out = copy(&sshd, home.path(), &from, &to, &["-P", streams]);
        assert_failed_cleanly(&out);
        assert!(
            out.stderr.contains("start-up files") && out.stderr.contains("hello from bashrc"),
            "{from} -> {to} -P {streams}: {}",
            out.stderr
        );
    }
    assert!(!back.exists());
}

#[test]
fn a_tilde_path_is_the_login_home_at_every_stream_count_both_ways() {
    let Some(sshd) = start() else { return };
    let login_home = login_home();
    // A scratch directory in the login's real home: where `~` leads on the far side.
    let in_home = tempfile::Builder::new()
        .prefix(".xferbench-test-")
        .tempdir_in(&login_home)
        .unwrap();
    let name = in_home
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let (home, local) = (temp_dir(), temp_dir());
    let source = local.path().join("f.bin");
    make_file(&source, "2M");
    let at = |path: &str| format!("{}:{}:{path}", sshd.destination(), sshd.port());
    for (streams, far) in [
        ("1", format!("~/{name}/f1.bin")),
        ("3", format!("~/{name}/f3.bin")),
        ("2", format!("~{}/{name}/f2.bin", sshd.user())),
    ] {
        let out = copy(
            &sshd,
            home.path(),
            source.to_str().unwrap(),
            &at(&far),
            &["-P", streams],
        );
        assert_ok(&format!("upload to {far} -P {streams}"), &out, &sshd);
        let landed = in_home.path().join(format!("f{streams}.bin"));
        assert_same_content(&source, &landed);
        let back = local.path().join(format!("back{streams}.bin"));
        let out = copy(
            &sshd,
            home.path(),
            &at(&far),
            back.to_str().unwrap(),
            &["-P", streams],
        );
        assert_ok(&format!("download of {far} -P {streams}"), &out, &sshd);
        assert_same_content(&source, &back);
    }
    // `~/dir/` keeps the file's name.
    let out = copy(
        &sshd,
        home.path(),
        source.to_str().unwrap(),
        &at(&format!("~/{name}/")),
        &[],
    );
    assert_ok("upload to ~/dir/", &out, &sshd);
    assert_same_content(&source, &in_home.path().join("f.bin"));
    let out = copy(
        &sshd,
        home.path(),
        &at("~nosuchuser-xferbench/x"),
        local.path().join("x").to_str().unwrap(),
        &[],
    );
    assert_failed_cleanly(&out);
    assert!(
        out.stderr.contains("no user 'nosuchuser-xferbench'"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_remote_source_that_is_not_a_regular_file_is_named_at_every_stream_count() {
    let Some(sshd) = start() else { return };
    let (home, local, far) = (temp_dir(), temp_dir(), temp_dir());
    let dir = far.path().join("d");
    std::fs::create_dir(&dir).unwrap();
    let fifo = far.path().join("fifo");
    let c_fifo = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string; mkfifo only makes the node.
    assert_eq!(unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o644) }, 0);
    for (source, said) in [(&dir, "directory"), (&fifo, "not a regular file")] {
        for streams in ["1", "2", "3"] {
            let out = copy(
                &sshd,
                home.path(),
                &remote(&sshd, source),
                local.path().join("x").to_str().unwrap(),
                &["-P", streams],
            );
            assert_failed_cleanly(&out);
            // scp -f (-P 1) says "not a regular file" for a directory too.
            let named = out.stderr.contains(said) || out.stderr.contains("not a regular file");
            assert!(
                named && !out.stderr.contains("stopped before"),
                "{} -P {streams}: {}",
                source.display(),
                out.stderr
            );
            assert!(!local.path().join("x").exists());
        }
    }
}

#[test]
fn a_local_name_that_reads_as_host_and_port_gets_the_dot_slash_hint() {
    let local = temp_dir();
    std::fs::write(local.path().join("lab:99999:x.bin"), b"x").unwrap();
    let mut cmd = crate::common::command(["copy", "lab:99999:x.bin", "out.bin", "--via", "ssh"]);
    cmd.current_dir(local.path());
    let out = run_command(cmd);
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("write it as ./lab:99999:x.bin"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_refused_connection_lists_every_address_tried_and_bare_ipv6_is_a_host() {
    // A port of loopback nothing listens on a moment later.
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let home = temp_dir();
    for (via, host) in [
        ("ssh", format!("127.0.0.1:{port}")),
        ("tcp", format!("127.0.0.1:{port}")),
        ("ssh", format!("[::1]:{port}")),
    ] {
        let mut cmd = crate::common::command(["net", &host, "-t", "1", "--via", via]);
        cmd.env("HOME", home.path()).env_remove("SSH_AUTH_SOCK");
        let out = run_command(cmd);
        assert_failed_cleanly(&out);
        assert!(
            out.stderr.contains(&format!("tried {host} (")),
            "--via {via} {host}: {}",
            out.stderr
        );
    }
    // A bare IPv6 address is a host (port 22 or ssh_config's), not "an empty host name".
    let config = home.path().join("config");
    std::fs::write(&config, format!("Host ::1\n  Port {port}\n")).unwrap();
    let mut cmd = crate::common::command([
        "net",
        "::1",
        "-t",
        "1",
        "--via",
        "ssh",
        "-F",
        config.to_str().unwrap(),
    ]);
    cmd.env("HOME", home.path()).env_remove("SSH_AUTH_SOCK");
    let out = run_command(cmd);
    assert_failed_cleanly(&out);
    assert!(
        out.stderr.contains(&format!("tried [::1]:{port} (")),
        "{}",
        out.stderr
    );
    let out = run_command(crate::common::command(["net", "::1:5301", "-t", "1"]));
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("[brackets]"), "{}", out.stderr);
}

/// Every tool an SSH upload and its check use, but the digest tools.
const UPLOAD_TOOLS: &[&str] = &[
    "scp", "dd", "stat", "truncate", "sync", "mv", "rm", "cat", "sh", "bash", "test",
];

#[test]
fn verify_over_ssh_matches_the_far_sha256sum_at_one_and_three_connections() {
    let Some(sshd) = start() else { return };
    let (home, local, far) = (temp_dir(), temp_dir(), temp_dir());
    let source = local.path().join("v.img");
    make_file(&source, "5M");
    for streams in ["1", "3"] {
        let landed = far.path().join(format!("v{streams}.img"));
        let out = copy(
            &sshd,
            home.path(),
            source.to_str().unwrap(),
            &remote(&sshd, &landed),
            &["-P", streams, "--verify", "-J"],
        );
        assert_ok("verified upload", &out, &sshd);
        assert_same_content(&source, &landed);
        let report = json_report(&out);
        let verify = &report["verify"];
        assert_eq!(verify["algorithm"], "sha256", "{report:#}");
        assert_eq!(verify["matched"], true, "{report:#}");
        assert_eq!(verify["source"], verify["destination"], "{report:#}");
        let parts = verify["source"].as_str().unwrap().split(' ').count();
        assert_eq!(
            parts.to_string(),
            streams,
            "one digest per range: {report:#}"
        );
        assert!(
            verify["far_reread"]["secs"].as_f64().unwrap() > 0.0,
            "{report:#}"
        );
    }
}

#[test]
fn verify_over_ssh_catches_a_file_changed_on_the_far_side_before_the_check() {
    // The far sha256sum first flips the landed file's first byte, as a disk or another
    // writer might, then reads it.
    let flip = "#!/bin/sh\nfor f; do p=$f; done\nprintf 'X' | dd of=\"$p\" bs=1 count=1 conv=notrunc status=none\nexec /usr/bin/sha256sum \"$@\"\n";
    let Some((sshd, _tools)) = sshd_with_tools(UPLOAD_TOOLS, &[("sha256sum", flip)]) else {
        return;
    };
    let (home, local, far) = (temp_dir(), temp_dir(), temp_dir());
    let source = local.path().join("c.img");
    make_file(&source, "1M");
    let landed = far.path().join("c.img");
    std::fs::write(&landed, b"the old file\n").unwrap();
    let out = copy(
        &sshd,
        home.path(),
        source.to_str().unwrap(),
        &remote(&sshd, &landed),
        &["--verify", "--force"],
    );
    assert_failed_cleanly(&out);
    assert!(out.stderr.contains("verification failed"), "{}", out.stderr);
    assert_eq!(std::fs::read(&landed).unwrap(), b"the old file\n");
    assert!(
        no_partial_files(far.path()),
        "{:?}",
        crate::common::entries(far.path())
    );
}

#[test]
fn verify_over_ssh_names_a_far_side_without_sha256sum_or_b2sum() {
    let Some((sshd, _tools)) = sshd_with_tools(UPLOAD_TOOLS, &[]) else {
        return;
    };
    let (home, local, far) = (temp_dir(), temp_dir(), temp_dir());
    let source = local.path().join("n.img");
    make_file(&source, "1M");
    let landed = far.path().join("n.img");
    let out = copy(
        &sshd,
        home.path(),
        source.to_str().unwrap(),
        &remote(&sshd, &landed),
        &["--verify"],
    );
    assert_failed_cleanly(&out);
    assert!(
        out.stderr.contains("needs sha256sum or b2sum") && out.stderr.lines().count() == 1,
        "{}",
        out.stderr
    );
    assert!(!landed.exists());
}

/// Uploads `source` over sshd with --resume (1 MiB chunks, 4 in flight) onto `landed`, whose
/// temporary file holds `partial`; the JSON report.
fn resume_upload(
    sshd: &Sshd,
    source: &Path,
    landed: &Path,
    partial: &[u8],
    streams: &str,
) -> serde_json::Value {
    let home = temp_dir();
    let temp = landed.with_file_name(format!(
        ".{}.xferbench-partial",
        landed.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&temp, partial).unwrap();
    let out = copy(
        sshd,
        home.path(),
        source.to_str().unwrap(),
        &remote(sshd, landed),
        &[
            "--resume",
            "--bs",
            "1M",
            "--iodepth",
            "4",
            "-P",
            streams,
            "-J",
        ],
    );
    assert_ok("resumed upload", &out, sshd);
    assert_same_content(source, landed);
    assert!(!temp.exists());
    json_report(&out)
}

#[test]
fn resume_over_ssh_sends_only_what_the_far_partial_lacks() {
    let Some(sshd) = start() else { return };
    let (local, far) = (temp_dir(), temp_dir());
    let source = local.path().join("r.img");
    make_file(&source, "20M");
    let bytes = std::fs::read(&source).unwrap();
    for streams in ["1", "3"] {
        let landed = far.path().join(format!("r{streams}.img"));
        let report = resume_upload(&sshd, &source, &landed, &bytes[..12 << 20], streams);
        assert_eq!(report["resumed"]["matched"], true, "{report:#}");
        assert_eq!(report["resumed"]["algorithm"], "sha256", "{report:#}");
        assert_eq!(report["resumed"]["checked"], 8u64 << 20, "{report:#}");
        assert_eq!(report["measurement"]["bytes"], 12u64 << 20, "{report:#}");
    }
}

#[test]
fn resume_over_ssh_sends_everything_when_the_far_partial_has_a_flipped_byte() {
    let Some(sshd) = start() else { return };
    let (local, far) = (temp_dir(), temp_dir());
    let source = local.path().join("f.img");
    make_file(&source, "20M");
    let mut partial = std::fs::read(&source).unwrap()[..12 << 20].to_vec();
    partial[5 << 20] ^= 0x80;
    let landed = far.path().join("f.img");
    let report = resume_upload(&sshd, &source, &landed, &partial, "1");
    assert_eq!(report["resumed"]["matched"], false, "{report:#}");
    assert_eq!(report["measurement"]["bytes"], 20u64 << 20, "{report:#}");
}

#[test]
fn resume_over_ssh_downloads_only_what_the_local_partial_lacks_and_all_of_a_damaged_one() {
    let Some(sshd) = start() else { return };
    let (home, local, far) = (temp_dir(), temp_dir(), temp_dir());
    let source = far.path().join("d.img");
    make_file(&source, "20M");
    let bytes = std::fs::read(&source).unwrap();
    let mut damaged = bytes[..12 << 20].to_vec();
    damaged[2 << 20] ^= 0x10;
    for (streams, partial, matched, moved) in [
        ("1", bytes[..12 << 20].to_vec(), true, 12u64 << 20),
        ("3", bytes[..12 << 20].to_vec(), true, 12u64 << 20),
        ("2", damaged, false, 20u64 << 20),
    ] {
        let landed = local.path().join(format!("d{streams}.img"));
        std::fs::write(
            local
                .path()
                .join(format!(".d{streams}.img.xferbench-partial")),
            &partial,
        )
        .unwrap();
        let out = copy(
            &sshd,
            home.path(),
            &remote(&sshd, &source),
            landed.to_str().unwrap(),
            &[
                "--resume",
                "--bs",
                "1M",
                "--iodepth",
                "4",
                "-P",
                streams,
                "-J",
            ],
        );
        assert_ok("resumed download", &out, &sshd);
        assert_same_content(&source, &landed);
        let report = json_report(&out);
        assert_eq!(report["resumed"]["matched"], matched, "{report:#}");
        assert_eq!(report["measurement"]["bytes"], moved, "{report:#}");
    }
    assert!(
        no_partial_files(local.path()),
        "{:?}",
        crate::common::entries(local.path())
    );
}
