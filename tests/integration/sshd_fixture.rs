//! Pins down the test sshd of `crate::common::sshd` that the `--via ssh` tests stand on: a real
//! OpenSSH server that stores what it is sent byte for byte, and refuses what it should.
//! Each test prints "skipped" and passes when OpenSSH is not installed.

use std::path::Path;

use crate::common::sshd::{Sshd, new_key, random_bytes, run_bounded, shell_quote};
use crate::common::{RUN_TIMEOUT, Run, assert_same_content, scratch_path, temp_dir};

fn start() -> Option<Sshd> {
    let sshd = Sshd::start();
    match &sshd {
        Some(sshd) => eprintln!(
            "sshd on {}:{} accepted a login {:?} after it was started",
            sshd.host(),
            sshd.port(),
            sshd.started_in()
        ),
        None => eprintln!("skipped: OpenSSH is not installed"),
    }
    sshd
}

fn run(cmd: std::process::Command, input: Option<Vec<u8>>) -> Run {
    let shown = format!("{cmd:?}");
    run_bounded(cmd, input, RUN_TIMEOUT)
        .unwrap_or_else(|| panic!("{shown} ran longer than {RUN_TIMEOUT:?} and was killed"))
}

/// Runs `cmd`, which must be refused (`case` names why) saying `says`, its command (which makes
/// `marker`) not run.
fn assert_refused(case: &str, cmd: std::process::Command, says: &str, marker: &Path) {
    let out = run(cmd, None);
    assert_ne!(out.code, 0, "{case}: logged in anyway");
    assert!(out.stderr.contains(says), "{case}: stderr: {}", out.stderr);
    assert!(!marker.exists(), "{case}: the command ran");
}

fn assert_ok(what: &str, run: &Run, sshd: &Sshd) {
    assert_eq!(
        run.code,
        0,
        "{what}: exit {}\nstdout:\n{}\nstderr:\n{}\nsshd stderr:\n{}",
        run.code,
        run.stdout,
        run.stderr,
        sshd.log()
    );
}

#[test]
fn sshd_stores_bytes_sent_over_ssh_and_scp_byte_for_byte() {
    let Some(sshd) = start() else { return };
    let dir = temp_dir();
    let bytes = random_bytes(1 << 20);

    // Through an exec channel, as the SCP sink reads it.
    let landed = dir.path().join("piped.data");
    let out = run(
        sshd.ssh_command(&format!("cat > {}", shell_quote(&landed))),
        Some(bytes.clone()),
    );
    assert_ok("ssh 'cat > FILE'", &out, &sshd);
    let got = std::fs::read(&landed).expect("read the file cat wrote");
    assert_eq!(got.len(), bytes.len(), "cat wrote a file of another size");
    assert!(got == bytes, "cat wrote other bytes than were sent");

    // scp -O there and back, the legacy protocol the ssh path speaks.
    let source = dir.path().join("source.data");
    std::fs::write(&source, &bytes).expect("write the source");
    let there = dir
        .path()
        .join("there: with space, quote ' and {brace}.data");
    let out = run(sshd.scp_command(&source, sshd.remote(&there)), None);
    assert_ok("scp -O upload", &out, &sshd);
    assert_same_content(&source, &there);
    let back = dir.path().join("back.data");
    let out = run(sshd.scp_command(sshd.remote(&there), &back), None);
    assert_ok("scp -O download", &out, &sshd);
    assert_same_content(&source, &back);
    // Nor did the fixture's readiness probe leave errors in sshd's log.
    assert_eq!(sshd.log(), "", "sshd logged errors");
}

#[test]
fn sshd_refuses_an_unauthorized_key_and_an_unknown_host_key() {
    let Some(sshd) = start() else { return };
    let (dir, marker) = scratch_path("ran");
    let touch = format!("touch {}", shell_quote(&marker));

    // The fixture's own key and known_hosts get in: the refusals below are the point.
    let out = run(sshd.ssh_command("echo in"), None);
    assert_ok("ssh with the authorized key", &out, &sshd);
    assert_eq!(out.stdout, "in\n");

    let other = dir.path().join("other_ed25519");
    new_key(&other);
    assert_refused(
        "a key not in authorized_keys",
        sshd.ssh_command_with(&other, sshd.known_hosts(), &touch),
        "Permission denied",
        &marker,
    );

    let empty = dir.path().join("empty_known_hosts");
    std::fs::write(&empty, "").expect("write an empty known_hosts");
    assert_refused(
        "an unknown host key",
        sshd.ssh_command_with(sshd.client_key(), &empty, &touch),
        "Host key verification failed",
        &marker,
    );
    assert_eq!(
        std::fs::read_to_string(&empty).expect("read known_hosts"),
        "",
        "ssh wrote to known_hosts"
    );
    check_known_hosts_names_the_port(&sshd);
}

/// known_hosts holds sshd's host key under `[127.0.0.1]:PORT`, and only that.
fn check_known_hosts_names_the_port(sshd: &Sshd) {
    let known = std::fs::read_to_string(sshd.known_hosts()).expect("read known_hosts");
    let host_key = std::fs::read_to_string(sshd.host_key_pub()).expect("read the host key");
    let key: Vec<&str> = host_key.split_whitespace().take(2).collect();
    assert_eq!(
        known,
        format!("[127.0.0.1]:{} {} {}\n", sshd.port(), key[0], key[1])
    );
    assert!(Path::new(sshd.client_key()).exists());
}
