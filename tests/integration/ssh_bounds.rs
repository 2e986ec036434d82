//! `--via ssh` against a server that stops answering: every wait on it is bounded. The server is
//! `serve --ssh-listen` on loopback, frozen with SIGSTOP mid-test.

use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{Hosts, assert_failed_cleanly, temp_dir};

/// An ed25519 key pair KEY, KEY.pub in `dir`, made with ssh-keygen; None (said) without it.
fn client_key(dir: &Path) -> Option<std::path::PathBuf> {
    let key = dir.join("key");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status();
    match made {
        Ok(status) if status.success() => Some(key),
        other => {
            eprintln!("skipping: ssh-keygen did not make a key ({other:?})");
            None
        }
    }
}

/// Runs `xferbench ARGS... --via ssh` against a serve of its own and freezes the server 2 s in:
/// the client must end within 20 s with a sentence saying the path stopped carrying data.
fn ssh_client_gives_up_on_a_frozen_server(args: &[&str]) {
    let dir = temp_dir();
    let Some(key) = client_key(dir.path()) else {
        return;
    };
    let authorized = dir.path().join("key.pub");
    let root = temp_dir();
    let hosts = Hosts::loopback();
    let server = hosts.serve_tokenless(
        root.path(),
        &[
            "--ssh-listen",
            "127.0.0.1:0",
            "--authorized-keys",
            authorized.to_str().unwrap(),
        ],
    );
    let mut server = server;
    let ssh_addr = server
        .wait_for_line("ssh listening on ", Duration::from_secs(10))
        .and_then(|line| line.strip_prefix("ssh listening on ").map(str::to_string))
        .expect("serve says where its SSH server listens");
    let known_hosts = dir.path().join("known_hosts");
    let host = format!("root@{ssh_addr}");
    let mut all: Vec<&OsStr> = vec![args[0].as_ref(), host.as_ref()];
    all.extend(args[1..].iter().map(OsStr::new));
    all.extend(
        [
            "--via".as_ref(),
            "ssh".as_ref(),
            "--identity".as_ref(),
            key.as_os_str(),
            "--known-hosts".as_ref(),
            known_hosts.as_os_str(),
            "--accept-new-host-key".as_ref(),
        ]
        .iter()
        .copied(),
    );
    let client = server.spawn(&all);
    std::thread::sleep(Duration::from_secs(2));
    server.signal(libc::SIGSTOP);
    let froze = Instant::now();
    let out = client.finish(Duration::from_secs(60));
    let took = froze.elapsed();
    server.signal(libc::SIGCONT);
    assert_failed_cleanly(&out);
    assert!(
        out.stderr.contains("the path stopped carrying data"),
        "{}",
        out.stderr
    );
    assert!(took < Duration::from_secs(20), "gave up after {took:?}");
}

#[test]
fn net_over_ssh_gives_up_on_a_frozen_server_with_a_sentence() {
    ssh_client_gives_up_on_a_frozen_server(&["net", "-t", "60"]);
}

#[test]
fn lat_over_ssh_gives_up_on_a_frozen_server_with_a_sentence() {
    ssh_client_gives_up_on_a_frozen_server(&["lat", "-t", "60"]);
}
