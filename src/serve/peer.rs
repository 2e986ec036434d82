//! A serve measuring toward another serve when its coordinator asks ([`Request::MeasureTo`]):
//! it becomes that serve's client on the paths `net`, `lat` and `copy` take (no engine of its
//! own), on a blocking thread, bounded in time, holding its client slot until the test ends.
//!
//! [`Request::MeasureTo`]: crate::control::Request::MeasureTo

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, anyhow, bail};
use tokio::sync::OwnedSemaphorePermit;

use super::session::{MAX_LEN, hide_root};
use super::{MAX_STREAMS, Shared};
use crate::control::{DatagramLoss, MAX_PEER_SECS, MeasureToRequest, MeasuredTo, PeerTest, Reply};
use crate::disk::{self, EngineChoice, FillMode, GenOptions, Pattern};
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

/// Runs `request`'s test toward its peer and answers with the figures. `slot` is this
/// session's client slot: the test's thread holds it until the test ends, even one given up
/// after [`PeerTest::bound`].
/// Errors: a request out of range, the test's failure in its words (paths relative to the root).
pub(super) async fn measure_to(
    shared: &Arc<Shared>,
    request: MeasureToRequest,
    slot: OwnedSemaphorePermit,
) -> Result<Reply> {
    check(&request.test, shared.max_bytes)?;
    let peer = Peer::parse(&request.peer)?;
    peer.without_user("tcp")?;
    let bound = request.test.bound();
    let job = {
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            run(&shared, peer, request.token, request.test)
        })
    };
    let measured = match tokio::time::timeout(bound, job).await {
        Ok(Ok(measured)) => measured,
        Ok(Err(failed)) => bail!("the test's thread failed: {failed}"),
        Err(_) => bail!(
            "the test did not end within {} s: the peer or the path stopped; given up",
            bound.as_secs()
        ),
    };
    let mut measured = measured.map_err(|err| anyhow!(hide_root(&format!("{err:#}"), shared)))?;
    for warning in &mut measured.warnings {
        if let Some(path) = warning.path_mut() {
            *path = relative_to(shared.root.dir(), path);
        }
    }
    Ok(Reply::MeasuredTo(measured))
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
fn run(shared: &Shared, peer: Peer, token: Option<String>, test: PeerTest) -> Result<MeasuredTo> {
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
        PeerTest::Copy { size, streams } => copy(shared, name, peer, token, size, streams),
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
    shared: &Shared,
    name: String,
    peer: Peer,
    token: Option<String>,
    size: u64,
    streams: u32,
) -> Result<MeasuredTo> {
    let file = format!("xferbench-peer-{:016x}.data", rand::random::<u64>());
    let path = shared.root.new_file(&file)?;
    // Made (and left, on a failure) under the root only; gone when this returns.
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
