//! A serve measuring toward another serve when its coordinator asks ([`Request::MeasureTo`]):
//! it becomes that serve's client on the paths `net`, `lat` and `copy` take (no engine of its
//! own), on a blocking thread, bounded in time, holding its client slot until the test ends.
//!
//! [`Request::MeasureTo`]: crate::control::Request::MeasureTo

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OwnedSemaphorePermit;

use super::session::{MAX_LEN, hide_root};
use super::{MAX_STREAMS, Root, Shared};
use crate::control::{
    Connection, DatagramLoss, MAX_PEER_SECS, MeasureToRequest, MeasuredTo, PeerTest, Reply,
};
use crate::disk::{self, EngineChoice, FillMode, GenOptions, Pattern};
use crate::interrupt::Interrupted;
use crate::measure::{Direction, Rounds, TransportKind, Unwatched};
use crate::transport::tcp::Tcp;
use crate::transport::udp::Udp;
use crate::transport::{
    CopyPlan, DEFAULT_NET_LEN, Directions, LatPlan, LatReport, Location, NetPlan, NetReport, Peer,
    Transport,
};
use crate::units::format_bytes;
use crate::warning::Warning;

/// Bytes per chunk and chunks in flight of a peer copy: `copy`'s defaults (--bs 1M --iodepth 16).
const COPY_PATTERN: Pattern = Pattern {
    block: 1 << 20,
    depth: 16,
};

/// The request in words, for serve's log line.
pub(super) fn what(request: &MeasureToRequest) -> String {
    let test = match &request.test {
        PeerTest::Net {
            via,
            streams,
            secs,
            direction,
            ..
        } => format!(
            "net over {via} (-P {streams}, -t {secs}), {}",
            match direction {
                Direction::Upload => "sending",
                Direction::Download => "receiving",
            }
        ),
        PeerTest::Lat { via, size, secs } => format!("lat over {via} (-s {size}, -t {secs})"),
        PeerTest::Copy { size, streams } => {
            format!("copy of {} (-P {streams})", format_bytes(*size))
        }
    };
    format!("measure {test} to {}", request.peer)
}

/// How long a peer test's process gets to stop after SIGINT before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The one peer test a serve hands its child process (`xferbench peer-test`), as JSON on its
/// stdin: the process is a client of the peer as `net`, `lat` and `copy` are, and it stops as
/// they stop on Ctrl-C when its serve sends SIGINT.
#[derive(Debug, Serialize, Deserialize)]
pub struct PeerJob {
    /// The serve's root (canonical): the copy's test file is made there.
    root: PathBuf,
    /// The copy's test file, named by the serve so that it removes it whatever becomes of the
    /// process.
    file: String,
    peer: String,
    token: Option<String>,
    test: PeerTest,
}

/// What the process says on stdout, as one JSON object.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerOutcome {
    Measured(Box<MeasuredTo>),
    /// The test's failure in its words (the serve hides its root in them).
    Error(String),
}

/// The body of `xferbench peer-test`: reads a [`PeerJob`] from `input`, runs it and returns
/// what to print, and whether SIGINT stopped it (exit 130).
pub fn run_job(input: impl std::io::Read) -> (PeerOutcome, bool) {
    let job: PeerJob = match serde_json::from_reader(input) {
        Ok(job) => job,
        Err(err) => {
            return (
                PeerOutcome::Error(format!(
                    "a peer test process takes its job from its serve: {err}"
                )),
                false,
            );
        }
    };
    let outcome = Root::new(&job.root).and_then(|root| {
        let peer = Peer::parse(&job.peer)?;
        run(&root, &job.file, peer, job.token, job.test)
    });
    let interrupted = outcome
        .as_ref()
        .err()
        .is_some_and(|err| err.chain().any(|cause| cause.is::<Interrupted>()));
    let outcome = match outcome {
        Ok(measured) => PeerOutcome::Measured(Box::new(measured)),
        Err(err) => PeerOutcome::Error(format!("{err:#}")),
    };
    (outcome, interrupted)
}

/// Runs `request`'s test toward its peer in a process of its own and answers with the
/// figures. The test stops (SIGINT, then SIGKILL after [`STOP_GRACE`]) when its coordinator
/// goes away (`control` closes) or after [`PeerTest::bound`]; its test file is removed in every
/// case. `slot` is this session's client slot, held until the process has ended.
/// Errors: a request out of range, the test's failure in its words (paths relative to the
/// root), the coordinator gone, the bound passed.
pub(super) async fn measure_to(
    shared: &Arc<Shared>,
    control: &mut Connection,
    request: MeasureToRequest,
    _slot: OwnedSemaphorePermit,
) -> Result<Reply> {
    check(&request.test, shared.max_bytes)?;
    Peer::parse(&request.peer)?.without_user("tcp")?;
    let bound = request.test.bound();
    let file = format!("xferbench-peer-{:016x}.data", rand::random::<u64>());
    // Whatever ends the test, its file does not outlive it (the process may be killed).
    let _made = Removed(shared.root.dir().join(&file));
    let job = PeerJob {
        root: shared.root.dir().to_path_buf(),
        file,
        peer: request.peer,
        token: request.token,
        test: request.test,
    };
    let mut child = tokio::process::Command::new(SELF_EXE)
        .arg(PEER_TEST_COMMAND)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start this serve's peer test process")?;
    let mut stdin = child
        .stdin
        .take()
        .context("the peer test process has no stdin")?;
    let (stdout, stderr) = (
        drain(
            child
                .stdout
                .take()
                .context("the peer test process has no stdout")?,
        ),
        drain(
            child
                .stderr
                .take()
                .context("the peer test process has no stderr")?,
        ),
    );
    stdin.write_all(&serde_json::to_vec(&job)?).await?;
    drop(stdin);
    let ended = tokio::select! {
        status = child.wait() => Some(status?),
        () = control.closed() => None,
        () = tokio::time::sleep(bound) => {
            stop(&mut child).await;
            bail!(
                "the test did not end within {} s: the peer or the path stopped; given up",
                bound.as_secs()
            )
        }
    };
    let Some(status) = ended else {
        stop(&mut child).await;
        bail!("the coordinator went away: the test was stopped");
    };
    let said = stdout.await.unwrap_or_default();
    let outcome = match serde_json::from_slice::<PeerOutcome>(&said) {
        Ok(outcome) => outcome,
        Err(_) => {
            let stderr = stderr.await.unwrap_or_default();
            let last = String::from_utf8_lossy(&stderr);
            bail!(
                "the peer test process ended ({status}) without an answer{}",
                last.lines()
                    .last()
                    .map(|line| format!(": {line}"))
                    .unwrap_or_default()
            )
        }
    };
    let mut measured = match outcome {
        PeerOutcome::Measured(measured) => *measured,
        PeerOutcome::Error(why) => bail!(hide_root(&why, shared)),
    };
    for warning in &mut measured.warnings {
        if let Some(path) = warning.path_mut() {
            *path = relative_to(shared.root.dir(), path);
        }
    }
    Ok(Reply::MeasuredTo(measured))
}

/// This serve's own executable, as the kernel holds it (still there if the file was replaced).
const SELF_EXE: &str = "/proc/self/exe";
/// The hidden command that runs one [`PeerJob`] (`Command::PeerTest` in `cli`).
const PEER_TEST_COMMAND: &str = "peer-test";

/// Reads all of `pipe` on a task of its own, so a large answer never blocks the process.
fn drain(
    mut pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> tokio::task::JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes).await;
        bytes
    })
}

/// Stops the test process as Ctrl-C stops a command (its sockets close, its partial files
/// go), killing it if it has not ended within [`STOP_GRACE`].
async fn stop(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = crate::sys::host::interrupt_process(pid);
    }
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// Refuses what serve would refuse from a client of its own, before connecting anywhere.
fn check(test: &PeerTest, max_bytes: Option<u64>) -> Result<()> {
    let via_ok = |via: &TransportKind| matches!(via, TransportKind::Tcp | TransportKind::Udp);
    let secs_ok = |secs: f64| secs > 0.0 && secs <= MAX_PEER_SECS;
    let streams_ok = |streams: u32| (1..=MAX_STREAMS).contains(&streams);
    match test {
        PeerTest::Net { via, .. } | PeerTest::Lat { via, .. } if !via_ok(via) => {
            bail!("--via {via}: a serve measures toward another over tcp or udp")
        }
        PeerTest::Net { secs, .. } | PeerTest::Lat { secs, .. } if !secs_ok(*secs) => {
            bail!("a test of {secs} s is out of range (above 0, at most {MAX_PEER_SECS} s)")
        }
        PeerTest::Net { streams, .. } | PeerTest::Copy { streams, .. } if !streams_ok(*streams) => {
            bail!("{streams} streams asked: give 1 to {MAX_STREAMS}")
        }
        PeerTest::Net { len: Some(len), .. } | PeerTest::Lat { size: len, .. }
            if *len == 0 || *len > MAX_LEN =>
        {
            bail!("a message of {len} bytes is out of range (1 to 64M)")
        }
        PeerTest::Copy { size: 0, .. } => bail!("a copy of 0 bytes measures nothing"),
        PeerTest::Copy { size, .. } if max_bytes.is_some_and(|max| *size > max) => bail!(
            "a {} test file is more than this server accepts (--max-bytes {})",
            format_bytes(*size),
            format_bytes(max_bytes.unwrap_or(0))
        ),
        _ => Ok(()),
    }
}

/// The test itself, on a blocking thread: the path's client toward `peer`, as `net`, `lat`
/// and `copy` run it.
fn run(
    root: &Root,
    file: &str,
    peer: Peer,
    token: Option<String>,
    test: PeerTest,
) -> Result<MeasuredTo> {
    let name = peer.to_string();
    match test {
        PeerTest::Net {
            via,
            streams,
            secs,
            len,
            direction,
        } => {
            let plan = NetPlan {
                streams: streams as usize,
                secs,
                omit_secs: 0.0,
                interval_secs: 1.0,
                // UDP's 0: the largest datagram that fits the path MTU.
                len: len.map_or(
                    match via {
                        TransportKind::Udp => 0,
                        _ => DEFAULT_NET_LEN,
                    },
                    |len| len as usize,
                ),
                window: None,
                directions: match direction {
                    Direction::Upload => Directions::Upload,
                    Direction::Download => Directions::Download,
                },
                queue_depth: 1,
                rate: None,
                zerocopy: false,
            };
            let report = open(via, peer, token)?.mem_to_mem(&plan, &Unwatched)?;
            Ok(net_figures(name, report))
        }
        PeerTest::Lat { via, size, secs } => {
            let plan = LatPlan {
                size: size as usize,
                rounds: Rounds::Secs(secs),
            };
            let report = open(via, peer, token)?.latency(&plan)?;
            Ok(lat_figures(name, report))
        }
        PeerTest::Copy { size, streams } => copy(root, file, name, peer, token, size, streams),
    }
}

fn open(via: TransportKind, peer: Peer, token: Option<String>) -> Result<Box<dyn Transport>> {
    Ok(match via {
        TransportKind::Udp => Box::new(Udp::new(peer, token)?),
        _ => Box::new(Tcp::new(peer, token)?),
    })
}

/// A random test file of `size` bytes made in the root, copied to the same new name in the
/// peer's root; both removed afterwards, whatever happened.
fn copy(
    root: &Root,
    file: &str,
    name: String,
    peer: Peer,
    token: Option<String>,
    size: u64,
    streams: u32,
) -> Result<MeasuredTo> {
    let path = root.new_file(file)?;
    let file = file.to_string();
    // Made under the root only; gone when this returns (and removed by the serve after).
    let _made = Removed(path.clone());
    disk::generate(
        &GenOptions {
            path: path.clone(),
            size,
            fill: FillMode::Random,
            force: false,
            pattern: COPY_PATTERN,
            engine: EngineChoice::Auto,
        },
        &Unwatched,
    )?;
    let tcp = Tcp::new(peer.clone(), token)?;
    let plan = CopyPlan {
        source: Location::Local(path),
        destination: Location::Remote {
            peer,
            path: file.clone(),
        },
        streams: streams as usize,
        chunk: COPY_PATTERN.block,
        iodepth: COPY_PATTERN.depth,
        verify: false,
        force: false,
        resume: false,
    };
    let copied = tcp.copy(&plan, &Unwatched);
    // A failed copy leaves nothing on the peer (its landing goes); a finished one is removed.
    let mut report = copied?;
    if let Err(err) = tcp.remove_remote(&file) {
        report.warnings.push(Warning::RemoteCopyLeft {
            host: name.clone(),
            path: file,
            reason: format!("{err:#}"),
        });
    }
    Ok(MeasuredTo {
        peer: name,
        path: TransportKind::Tcp,
        measurements: vec![report.measurement],
        latency: None,
        retransmits: None,
        datagrams: None,
        cpu: report.cpu.local,
        peer_cpu: report.cpu.remote,
        warnings: report.warnings,
    })
}

/// The sender's and the receiver's figures of the one direction a peer's `net` runs.
fn net_figures(peer: String, report: NetReport) -> MeasuredTo {
    let mut measured = MeasuredTo {
        peer,
        path: report.path,
        measurements: Vec::new(),
        latency: None,
        retransmits: None,
        datagrams: None,
        cpu: report.cpu.local,
        peer_cpu: report.cpu.remote,
        warnings: report.warnings,
    };
    for direction in report.directions {
        measured.measurements.push(direction.sender);
        measured.measurements.push(direction.receiver);
        measured.retransmits = direction.retransmits;
        measured.datagrams = direction.datagrams.map(|datagrams| DatagramLoss {
            sent: datagrams.sent,
            lost: datagrams.lost,
            loss_percent: datagrams.loss_percent,
            jitter_us: datagrams.jitter_us,
        });
    }
    measured
}

fn lat_figures(peer: String, report: LatReport) -> MeasuredTo {
    MeasuredTo {
        peer,
        path: report.path,
        measurements: Vec::new(),
        latency: Some(report.latency),
        retransmits: None,
        datagrams: None,
        cpu: report.cpu.local,
        peer_cpu: report.cpu.remote,
        warnings: report.warnings,
    }
}

/// `path` as the coordinator may see it: relative to the root.
fn relative_to(root: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(root).unwrap_or(path).to_path_buf()
}

/// A file removed when this is dropped (if it is there).
struct Removed(PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_test_over_a_path_that_carries_no_peer_test_is_refused_before_connecting() {
        let ssh = PeerTest::Lat {
            via: TransportKind::Ssh,
            size: 8,
            secs: 1.0,
        };
        let err = check(&ssh, None).unwrap_err().to_string();
        assert!(err.contains("tcp or udp"), "{err}");
    }

    #[test]
    fn a_peer_copy_above_max_bytes_is_refused() {
        let copy = PeerTest::Copy {
            size: 2 << 20,
            streams: 1,
        };
        let err = check(&copy, Some(1 << 20)).unwrap_err().to_string();
        assert!(err.contains("--max-bytes"), "{err}");
        assert!(check(&copy, None).is_ok());
    }

    #[test]
    fn a_peer_test_longer_than_an_hour_or_with_no_streams_is_refused() {
        let long = PeerTest::Net {
            via: TransportKind::Tcp,
            streams: 1,
            secs: MAX_PEER_SECS + 1.0,
            len: None,
            direction: Direction::Upload,
        };
        assert!(check(&long, None).is_err());
        let none = PeerTest::Copy {
            size: 1,
            streams: 0,
        };
        assert!(check(&none, None).is_err());
    }
}
