//! `xferbench serve`: what it announces, its control protocol against bad peers, its limits,
//! and how it stops. Raw-socket tests talk to a server on loopback with std's TcpStream.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use crate::common::{
    Hosts, Server, TEST_TOKEN, Way, assert_empty_dir, assert_failed_cleanly, assert_no_leftovers,
    exit_code, make_file, run_command, scratch_path, temp_dir, wait_until,
};
use serde_json::{Value, json};

/// The longest a test waits for the server to answer or close a raw connection.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A control connection driven by hand, to send what no xferbench client would.
struct Raw {
    stream: TcpStream,
}

impl Raw {
    fn connect(server: &Server) -> Raw {
        let stream = TcpStream::connect(&server.addr)
            .unwrap_or_else(|err| panic!("connect to {}: {err}", server.addr));
        stream.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
        Raw { stream }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send to the server");
    }

    /// Sends one frame: a 4-byte big-endian length, then the JSON.
    fn send_frame(&mut self, message: &Value) {
        let body = serde_json::to_vec(message).unwrap();
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        self.send(&frame);
    }

    fn hello(&mut self, version: u32, token: Option<&str>) {
        self.send_frame(&json!({
            "type": "hello",
            "protocol": "xferbench",
            "version": version,
            "token": token,
        }));
    }

    /// Everything the server sends until it closes the connection, as frames; fails the test
    /// if it neither closes nor falls silent within [`ANSWER_TIMEOUT`]. A reset after the
    /// server's last frame counts as closing (it closes with our unread bytes in its buffer).
    fn frames_until_closed(&mut self) -> Vec<Value> {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            assert!(
                Instant::now() < deadline,
                "the server kept the connection open for {ANSWER_TIMEOUT:?}; got {bytes:?}"
            );
            match self.stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(err)
                    if matches!(
                        err.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!("the server neither answered nor closed within {ANSWER_TIMEOUT:?}")
                }
                Err(err) => panic!("reading from the server: {err}"),
            }
        }
        parse_frames(&bytes)
    }

    /// The next frame; fails the test if none comes within [`ANSWER_TIMEOUT`].
    fn read_frame(&mut self) -> Value {
        let mut prefix = [0u8; 4];
        self.stream
            .read_exact(&mut prefix)
            .expect("a frame from the server");
        let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
        self.stream.read_exact(&mut body).expect("the frame's body");
        serde_json::from_slice(&body).expect("a JSON frame")
    }
}

fn parse_frames(mut bytes: &[u8]) -> Vec<Value> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        assert!(bytes.len() >= 4, "a torn frame from the server: {bytes:?}");
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        assert!(
            bytes.len() >= 4 + len,
            "a torn frame from the server: {bytes:?}"
        );
        frames.push(serde_json::from_slice(&bytes[4..4 + len]).expect("a JSON frame"));
        bytes = &bytes[4 + len..];
    }
    frames
}

/// Asserts `frames` is one error frame and returns its message.
fn single_error(frames: &[Value]) -> String {
    assert_eq!(frames.len(), 1, "expected one error frame: {frames:?}");
    assert_eq!(frames[0]["type"], "error", "{frames:?}");
    frames[0]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("an error frame without a message: {frames:?}"))
        .to_string()
}

fn loopback_server(extra: &[&str]) -> (tempfile::TempDir, Server) {
    let root = temp_dir();
    let server = Hosts::loopback().serve(root.path(), extra);
    (root, server)
}

#[test]
fn serve_announces_a_real_port_its_root_and_that_loopback_needs_no_token() {
    let root = temp_dir();
    let server = Hosts::loopback().serve_tokenless(root.path(), &[]);
    assert_eq!(
        server.banner[0],
        format!("listening on 127.0.0.1:{}", server.port)
    );
    let canonical = root.path().canonicalize().unwrap();
    assert_eq!(server.banner[1], format!("root {}", canonical.display()));
    assert_eq!(server.banner[2], "no token required (loopback only)");
    assert_eq!(server.token, None);
    server.assert_serves();
}

#[test]
fn serve_with_a_token_file_requires_that_token() {
    let (_dir, token_file) = scratch_path("token");
    std::fs::write(&token_file, "from-a-file\nignored second line\n").unwrap();
    let root = temp_dir();
    let server =
        Hosts::loopback().serve(root.path(), &["--token-file", token_file.to_str().unwrap()]);
    assert_eq!(server.banner[2], "token required (as given)");
    assert_eq!(server.token.as_deref(), Some("from-a-file"));
    server.assert_serves();
}

#[test]
fn serve_off_loopback_without_a_token_generates_one_and_requires_it() {
    let hosts = Hosts::two();
    if hosts.lab().is_none() {
        eprintln!("skipping: needs a lab of network namespaces (root and iproute2)");
        return;
    }
    let root = temp_dir();
    let server = hosts.serve_tokenless(root.path(), &[]);
    let token = server.token.clone().expect("a generated token");
    assert!(
        server.banner[2].starts_with(&format!("token {token} (generated"))
            && server.banner[2].contains(&format!("--token {token}")),
        "{:?}",
        server.banner
    );
    assert!(token.len() >= 16, "a short token: {token}");

    let (_dir, source) = scratch_path("a.data");
    make_file(&source, "1M");
    let out = run_command(server.client(&[
        "-q".as_ref(),
        "copy".as_ref(),
        source.as_os_str(),
        server.remote("a.data").as_ref(),
    ]));
    assert_failed_cleanly(&out);
    assert!(out.stderr.contains("missing token"), "{}", out.stderr);
    assert_empty_dir(root.path());
    server.assert_serves();
}

#[test]
fn serve_logs_one_line_per_finished_session() {
    let (root, mut server) = loopback_server(&[]);
    let (dir, source) = scratch_path("logged.data");
    make_file(&source, "1M");
    let up = server.run(&[
        "copy".as_ref(),
        source.as_os_str(),
        server.remote("logged.data").as_ref(),
    ]);
    crate::common::assert_success(up.code, &up.stdout, &up.stderr);
    let back = dir.path().join("back.data");
    let down = server.run(&[
        "copy".as_ref(),
        server.remote("logged.data").as_ref(),
        back.as_os_str(),
    ]);
    crate::common::assert_success(down.code, &down.stdout, &down.stderr);
    let refused = server.run(&[
        "copy".as_ref(),
        server.remote("no-such.data").as_ref(),
        back.as_os_str(),
    ]);
    assert_failed_cleanly(&refused);

    let received = server
        .wait_for_line("receive logged.data", ANSWER_TIMEOUT)
        .expect("a line for the upload");
    let sent = server
        .wait_for_line("send logged.data", ANSWER_TIMEOUT)
        .expect("a line for the download");
    let failed = server
        .wait_for_line("no-such.data", ANSWER_TIMEOUT)
        .expect("a line for the refused download");
    for line in [&received, &sent] {
        assert!(
            line.starts_with("127.0.0.1:") && line.contains(": done in ") && line.ends_with(" s"),
            "{line}"
        );
    }
    assert!(
        failed.starts_with("127.0.0.1:") && failed.contains("does not exist"),
        "{failed}"
    );
    assert_eq!(server.log().len(), 3, "{:?}", server.log());
    assert_no_leftovers(root.path());
}

#[test]
fn serve_answers_a_protocol_version_mismatch_with_an_error_naming_the_versions() {
    let (_root, server) = loopback_server(&[]);
    let mut raw = Raw::connect(&server);
    raw.hello(999, Some(TEST_TOKEN));
    let message = single_error(&raw.frames_until_closed());
    assert!(
        message.contains("999") && message.contains("version"),
        "{message}"
    );
    server.assert_serves();
}

#[test]
fn serve_refuses_a_client_of_the_previous_protocol_version_with_one_line_naming_both() {
    let (_root, server) = loopback_server(&[]);
    let mut raw = Raw::connect(&server);
    let current = xferbench::control::PROTOCOL_VERSION;
    raw.hello(current - 1, Some(TEST_TOKEN));
    let message = single_error(&raw.frames_until_closed());
    assert!(
        message.contains(&format!("protocol {}", current - 1))
            && message.contains(&format!("speaks {current}")),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");
}

#[test]
fn serve_answers_a_hello_of_another_protocol_with_an_error() {
    let (_root, server) = loopback_server(&[]);
    let mut raw = Raw::connect(&server);
    raw.send_frame(
        &json!({"type": "hello", "protocol": "iperf", "version": 1, "token": TEST_TOKEN}),
    );
    let message = single_error(&raw.frames_until_closed());
    assert!(message.contains("not an xferbench client"), "{message}");
    server.assert_serves();
}

#[test]
fn serve_answers_an_http_request_with_an_error_closes_and_keeps_serving() {
    let (_root, mut server) = loopback_server(&[]);
    let mut raw = Raw::connect(&server);
    raw.send(b"GET / HTTP/1.1\r\n\r\n");
    // "GET " read as a length is ~1.2 GB: refused before anything is allocated.
    let frames = raw.frames_until_closed();
    if !frames.is_empty() {
        let message = single_error(&frames);
        assert!(message.contains("larger than"), "{message}");
    }
    let line = server
        .wait_for_line("refused", ANSWER_TIMEOUT)
        .expect("a log line for the refused connection");
    assert!(line.contains("larger than"), "{line}");
    server.assert_serves();
}

#[test]
fn serve_answers_malformed_json_with_an_error_and_keeps_serving() {
    let (_root, server) = loopback_server(&[]);
    let mut raw = Raw::connect(&server);
    raw.send(b"\x00\x00\x00\x05{{{{{");
    let message = single_error(&raw.frames_until_closed());
    assert!(message.contains("malformed"), "{message}");
    server.assert_serves();
}

#[test]
fn serve_drops_a_truncated_frame_and_keeps_serving() {
    let (_root, server) = loopback_server(&[]);
    let mut raw = Raw::connect(&server);
    // A length prefix promising 100 bytes, 10 bytes, then the end of the stream.
    raw.send(&100u32.to_be_bytes());
    raw.send(b"{\"type\":\"h");
    raw.stream.shutdown(Shutdown::Write).unwrap();
    let frames = raw.frames_until_closed();
    assert!(frames.is_empty(), "an answer to half a frame: {frames:?}");
    server.assert_serves();
}

#[test]
fn serve_closes_a_connection_that_sends_nothing_after_the_idle_timeout() {
    let (_root, mut server) = loopback_server(&["--idle-timeout", "1"]);
    let mut raw = Raw::connect(&server);
    let message = single_error(&raw.frames_until_closed());
    assert!(message.contains("nothing received"), "{message}");
    assert!(
        server
            .wait_for_line("nothing received", ANSWER_TIMEOUT)
            .is_some(),
        "{:?}",
        server.log()
    );
    server.assert_serves();
}

#[test]
fn serve_closes_a_connection_that_says_hello_but_asks_nothing_after_the_idle_timeout() {
    let (_root, server) = loopback_server(&["--idle-timeout", "1"]);
    let mut raw = Raw::connect(&server);
    raw.hello(xferbench::control::PROTOCOL_VERSION, Some(TEST_TOKEN));
    assert_eq!(raw.read_frame()["type"], "welcome");
    let message = single_error(&raw.frames_until_closed());
    assert!(message.contains("nothing received"), "{message}");
    server.assert_serves();
}

#[test]
fn serve_tells_a_client_beyond_max_clients_that_it_is_busy() {
    let (root, server) = loopback_server(&["--max-clients", "1"]);
    let mut holder = Raw::connect(&server);
    holder.hello(xferbench::control::PROTOCOL_VERSION, Some(TEST_TOKEN));
    // The slot is taken before the welcome is sent.
    assert_eq!(holder.read_frame()["type"], "welcome");

    let (_dir, source) = scratch_path("turned-away.data");
    make_file(&source, "1M");
    let remote = server.remote("turned-away.data");
    let copy_args = [OsStr::new("copy"), source.as_os_str(), remote.as_ref()];
    let out = server.run(&copy_args);
    assert_failed_cleanly(&out);
    assert!(
        out.stderr.contains(&server.addr) && out.stderr.contains("busy"),
        "{}",
        out.stderr
    );
    assert_empty_dir(root.path());

    // Once the holder leaves, its slot is free again.
    drop(holder);
    let mut last = None;
    let served = wait_until(ANSWER_TIMEOUT, || {
        let out = server.run(&copy_args);
        let done = out.code == 0;
        if !done {
            assert!(out.stderr.contains("busy"), "{}", out.stderr);
        }
        last = Some(out);
        done
    });
    assert!(served, "still busy after the holder left: {last:?}");
    crate::common::assert_same_content(&source, &root.path().join("turned-away.data"));
}

#[test]
fn serve_on_a_port_in_use_fails_cleanly() {
    let (_root, server) = loopback_server(&[]);
    let other_root = temp_dir();
    let out = run_command(crate::common::command([
        "serve",
        "--listen",
        &format!("127.0.0.1:{}", server.port),
        "--root",
        other_root.path().to_str().unwrap(),
    ]));
    assert_failed_cleanly(&out);
    assert!(
        out.stderr.contains("cannot listen") && out.stderr.contains(&server.addr),
        "{}",
        out.stderr
    );
    server.assert_serves();
}

#[test]
fn serve_with_a_missing_root_fails_cleanly() {
    let (_dir, missing) = scratch_path("missing");
    let out = run_command(crate::common::command([
        OsStr::new("serve"),
        OsStr::new("--listen"),
        OsStr::new("127.0.0.1:0"),
        OsStr::new("--root"),
        missing.as_os_str(),
    ]));
    assert_failed_cleanly(&out);
    assert!(out.stderr.contains("--root"), "{}", out.stderr);
    assert!(!missing.exists());
}

#[test]
fn serve_stops_on_ctrl_c_with_exit_130() {
    let (_root, mut server) = loopback_server(&[]);
    server.signal(libc::SIGINT);
    let status = server
        .wait_exit(ANSWER_TIMEOUT)
        .expect("serve did not stop within 10 s of SIGINT");
    let stderr = server.stderr_text();
    assert_eq!(exit_code(status), 130, "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn serve_stopped_by_sigterm_mid_copy_exits_130_and_removes_the_partial_file() {
    let mut server = Hosts::shaped("200mbit").served(&[]);
    let dir = temp_dir();
    let (client, final_path, partial) = server.copy_under_way(dir.path(), Way::Upload);

    server.signal(libc::SIGTERM);
    let status = server
        .wait_exit(ANSWER_TIMEOUT)
        .expect("serve did not stop within 10 s of SIGTERM");
    let stderr = server.stderr_text();
    assert_eq!(exit_code(status), 130, "stderr: {stderr}");
    assert!(!partial.exists(), "the partial file outlived the server");
    assert!(
        !final_path.exists(),
        "a final file from an interrupted copy"
    );
    assert_empty_dir(&server.root);

    let out = client.finish(ANSWER_TIMEOUT);
    assert_failed_cleanly(&out);
    assert!(out.stderr.contains(&server.addr), "{}", out.stderr);
}

#[test]
fn serve_removes_the_partial_file_of_a_client_killed_mid_copy_and_keeps_serving() {
    let mut server = Hosts::shaped("200mbit").served(&[]);
    let dir = temp_dir();
    let (client, final_path, partial) = server.copy_under_way(dir.path(), Way::Upload);

    crate::common::send_signal(client.pid(), libc::SIGKILL);
    let _ = client.finish(ANSWER_TIMEOUT);
    assert!(
        wait_until(ANSWER_TIMEOUT, || !partial.exists()),
        "the partial file is still there {ANSWER_TIMEOUT:?} after the client was killed"
    );
    assert!(
        !final_path.exists(),
        "a final file from an interrupted copy"
    );
    let line = server
        .wait_for_line("receive big.data", ANSWER_TIMEOUT)
        .expect("a log line for the broken session");
    assert!(!line.contains("done in"), "{line}");
    server.assert_serves();
    assert_empty_dir(&server.root);
}

#[test]
fn serve_measures_its_own_disk_for_a_client_and_leaves_nothing_in_its_root() {
    use xferbench::disk::Pattern;
    use xferbench::measure::Workload;
    use xferbench::transport::Peer;
    use xferbench::transport::tcp::Tcp;

    let server = Hosts::loopback().served(&["--max-bytes", "16M"]);
    let tcp = Tcp::new(Peer::parse(&server.addr).unwrap(), server.token.clone()).unwrap();
    let pattern = Pattern {
        block: 1 << 20,
        depth: 4,
    };
    let baseline = tcp.remote_baseline(8 << 20, pattern).unwrap();
    let workloads: Vec<Workload> = baseline.measurements.iter().map(|m| m.workload).collect();
    assert_eq!(workloads, vec![Workload::DiskWrite, Workload::DiskRead]);
    for m in &baseline.measurements {
        assert_eq!(m.bytes, 8 << 20);
        assert!(m.secs > 0.0 && m.bytes_per_sec > 0.0, "{m:?}");
    }
    assert!(baseline.measurements[0].conditions.fsync_included);
    assert_no_leftovers(&server.root);

    let refused = tcp.remote_baseline(32 << 20, pattern).unwrap_err();
    assert!(
        format!("{refused:#}").contains("--max-bytes"),
        "{refused:#}"
    );
    server.assert_serves();
}

// ---- A client that stops moving ----

/// Stops (SIGSTOP) a client and resumes it (SIGCONT) then kills it when dropped.
struct Frozen(crate::common::Background);

impl Frozen {
    fn freeze(client: crate::common::Background) -> Frozen {
        crate::common::send_signal(client.pid(), libc::SIGSTOP);
        Frozen(client)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        crate::common::send_signal(self.0.pid(), libc::SIGCONT);
    }
}

/// A server with one slot and a 2 s idle timeout, a client of `args` frozen once under way:
/// the server ends the session within the idle timeout plus a little, and serves the next.
fn serve_frees_the_slot_of_a_frozen_client(args: &[&str], under_way: Duration) {
    let mut server = Hosts::two().served(&["--max-clients", "1", "--idle-timeout", "2"]);
    let mut all: Vec<&OsStr> = vec![args[0].as_ref(), server.addr.as_ref()];
    all.extend(args[1..].iter().map(OsStr::new));
    let client = server.spawn(&all);
    std::thread::sleep(under_way);
    let frozen = Frozen::freeze(client);
    let froze = std::time::Instant::now();
    let line = server.wait_for_line(args[0], Duration::from_secs(20));
    assert!(
        line.is_some(),
        "the session never ended: {:?}",
        server.log()
    );
    assert!(
        froze.elapsed() < Duration::from_secs(2 + 10),
        "the server kept a frozen client's slot for {:?}",
        froze.elapsed()
    );
    server.assert_serves();
    drop(frozen);
}

#[test]
fn serve_frees_the_slot_of_a_net_client_that_froze() {
    serve_frees_the_slot_of_a_frozen_client(&["net", "-t", "60"], Duration::from_secs(1));
}

#[test]
fn serve_frees_the_slot_of_a_download_client_that_froze() {
    serve_frees_the_slot_of_a_frozen_client(&["net", "-t", "60", "-R"], Duration::from_secs(1));
}

#[test]
fn serve_frees_the_slot_of_a_latency_client_that_froze() {
    serve_frees_the_slot_of_a_frozen_client(&["lat", "-t", "60"], Duration::from_secs(1));
}

#[test]
fn serve_frees_the_slot_of_a_copy_client_that_froze_and_removes_its_partial_file() {
    let mut server =
        Hosts::shaped("200mbit").served(&["--max-clients", "1", "--idle-timeout", "2"]);
    let local = temp_dir();
    let (client, final_path, partial) = crate::common::copy_under_way(
        &server.hosts,
        &server,
        local.path(),
        crate::common::Way::Upload,
    );
    let frozen = Frozen::freeze(client);
    let froze = std::time::Instant::now();
    let line = server.wait_for_line("receive", Duration::from_secs(20));
    assert!(
        line.is_some(),
        "the session never ended: {:?}",
        server.log()
    );
    assert!(
        froze.elapsed() < Duration::from_secs(2 + 10),
        "the server kept a frozen client's slot for {:?}",
        froze.elapsed()
    );
    assert!(
        !partial.exists() && !final_path.exists(),
        "{:?}",
        crate::common::entries(&server.root)
    );
    server.assert_serves();
    drop(frozen);
}
