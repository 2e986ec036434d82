//! The plain TCP path: a control connection to `xferbench serve`, then N data connections.
//! `tree` is `copy -r` over it.

mod tree;

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use super::memory::{self, Flow, Role, Timing};
use super::pipeline::{self, ChunkPlan, DIGEST_ALGORITHM, Start};
use super::{
    CopyPlan, CopyReport, CpuBoth, Direction, DirectionReport, LatPlan, LatReport, Location,
    NetPlan, NetReport, Peer, StreamReport, TimeSplit, Transport, TransportKind, Verification,
};
use crate::control::client::{HANDSHAKE_TIMEOUT, PREFIX_TIMEOUT, RemoteBaseline};
use crate::control::frame::FrameError;
use crate::control::{
    Client, Connection, EchoRequest, FileRequest, NetDone, NetRequest, Opening, Partial, Reply,
    Request,
};
use crate::disk;
use crate::interrupt::Interrupted;
use crate::measure::{
    Conditions, Counter, CpuClock, CpuUse, Interval, Latency, Measurement, Watcher, Workload,
    granted_window, path_mtu,
};
use crate::warning::Warning;

/// How long after its own streams ended a `net` client waits for the server's figures: the
/// server's receivers may drain for [`memory::END_GRACE`] past the end, on a clock started a
/// round trip later.
const NET_RESULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Streams quiet this long before a test's end, then no figures: the path went dark.
const DARK_BEFORE_END: Duration = Duration::from_secs(3);
/// How long a stopped (Ctrl-C) test waits for the server's figures so far.
const STOPPED_RESULT_TIMEOUT: Duration = Duration::from_secs(1);

/// The TCP path to one server.
pub struct Tcp {
    client: Client,
}

impl Tcp {
    /// The TCP path to serve at `peer`, with a runtime of its own (a single command's).
    pub fn new(peer: Peer, token: Option<String>) -> Result<Tcp> {
        Ok(Tcp::with_client(super::serve_client(peer, token)?))
    }

    /// The TCP path through `client`, sharing its runtime with the other paths of a run.
    pub fn with_client(client: Client) -> Tcp {
        Tcp { client }
    }

    /// The server this path talks to, as its sentences name it.
    pub fn server(&self) -> &str {
        self.client.name()
    }
}

impl Transport for Tcp {
    fn kind(&self) -> TransportKind {
        TransportKind::Tcp
    }

    fn mem_to_mem(&self, plan: &NetPlan, watcher: &dyn Watcher) -> Result<NetReport> {
        self.client.block_on(self.net(plan, watcher))
    }

    fn latency(&self, plan: &LatPlan) -> Result<LatReport> {
        self.client.block_on(self.round_trips(plan))
    }

    fn copy(&self, plan: &CopyPlan, watcher: &dyn Watcher) -> Result<CopyReport> {
        let chunks = plan.chunks()?;
        match (&plan.source, &plan.destination) {
            (Location::Local(source), Location::Remote { path, .. }) => self
                .client
                .block_on(self.upload(plan, source, path, chunks, watcher)),
            (Location::Remote { path, .. }, Location::Local(destination)) => self
                .client
                .block_on(self.download(plan, path, destination, chunks, watcher)),
            _ => bail!("one side of a copy must be local and the other host:path"),
        }
    }

    fn copy_tree(
        &self,
        plan: &super::tree::TreePlan,
        watcher: &dyn Watcher,
    ) -> Result<super::tree::TreeReport> {
        self.tree(plan, watcher)
    }
}

impl Tcp {
    /// Asks the server to measure its own disk, so a verdict can know the far side's write rate.
    pub fn remote_baseline(&self, size: u64, pattern: disk::Pattern) -> Result<RemoteBaseline> {
        self.client.remote_baseline(size, pattern)
    }

    /// Asks the server to remove a file of its root that this client made (`run`'s copy);
    /// true when there was one.
    pub fn remove_remote(&self, path: &str) -> Result<bool> {
        self.client.remove_remote(path)
    }

    /// Removes a directory tree of serve's root that this client made (`run`'s small files).
    pub fn remove_remote_tree(&self, path: &str) -> Result<bool> {
        self.client.remove_remote_tree(path)
    }
}

/// A session the server made ready, with its data connections joined.
struct Session {
    control: Connection,
    streams: Vec<TcpStream>,
    /// The file's size, for a download.
    size: Option<u64>,
    /// An upload with `--resume`: the temporary file the server took up.
    partial: Option<Partial>,
    id: String,
    port: u16,
    window: Option<usize>,
}

impl Tcp {
    /// Connects, says hello, sends `request`, and joins `streams` data connections.
    async fn open(
        &self,
        request: Request,
        streams: usize,
        window: Option<usize>,
    ) -> Result<Session> {
        let session = self.ready(&request, window, HANDSHAKE_TIMEOUT).await?;
        self.start(session, streams).await
    }

    /// Sends `request` and waits up to `wait` for the server to make the session ready.
    async fn ready(
        &self,
        request: &Request,
        window: Option<usize>,
        wait: Duration,
    ) -> Result<Session> {
        match self.client.open_within(request, wait).await? {
            (
                control,
                Reply::Ready {
                    session,
                    port,
                    size,
                    partial,
                },
            ) => Ok(Session {
                control,
                streams: Vec::new(),
                size,
                partial,
                id: session,
                port,
                window,
            }),
            (_, other) => Err(self.client.unexpected(other)),
        }
    }

    /// Joins the data connections and waits until the server has them all.
    async fn start(&self, mut session: Session, streams: usize) -> Result<Session> {
        let mut data_addr = session.control.stream().peer_addr()?;
        data_addr.set_port(session.port);
        for stream in 0..streams {
            let joined = self
                .join(data_addr, &session.id, stream as u32, session.window)
                .await?;
            session.streams.push(joined);
        }
        match self
            .client
            .reply(&mut session.control, HANDSHAKE_TIMEOUT)
            .await?
        {
            Reply::Started => Ok(session),
            other => Err(self.client.unexpected(other)),
        }
    }

    async fn join(
        &self,
        addr: SocketAddr,
        session: &str,
        stream: u32,
        window: Option<usize>,
    ) -> Result<TcpStream> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(window) = window {
            socket.set_send_buffer_size(window as u32)?;
            socket.set_recv_buffer_size(window as u32)?;
        }
        let mut data = tokio::time::timeout(HANDSHAKE_TIMEOUT, socket.connect(addr))
            .await
            .map_err(|_| anyhow!("data connection {} to {addr}: timed out", stream + 1))?
            .with_context(|| format!("data connection {} to {addr}", stream + 1))?;
        crate::control::frame::write(
            &mut data,
            &Opening::Join {
                session: session.to_string(),
                stream,
            },
        )
        .await?;
        Ok(data)
    }

    async fn round_trips(&self, plan: &LatPlan) -> Result<LatReport> {
        let request = Request::Echo(EchoRequest {
            size: plan.size as u32,
        });
        let mut session = self.open(request, 1, None).await?;
        let warnings: Vec<Warning> = loopback_warning(&session.control).into_iter().collect();
        let stream = session
            .streams
            .pop()
            .expect("one stream joined")
            .into_std()?;
        let peer = self.server().to_string();
        let (rounds, warmup, size) = (plan.rounds, super::rdma::LATENCY_WARMUP, plan.size);
        // Blocking calls on a thread of their own: no runtime between the two syscalls timed.
        let ((latency, cut_short), local_cpu) = tokio::task::spawn_blocking(move || {
            stream.set_nonblocking(false)?;
            stream.set_nodelay(true)?;
            let cpu = CpuClock::start();
            let timed = echo_round_trips(stream, size, warmup, rounds, &peer)?;
            Ok::<_, anyhow::Error>((timed, cpu.finish()))
        })
        .await
        .map_err(|err| anyhow!("the latency test failed: {err}"))??;
        let done = match cut_short {
            None => {
                self.client
                    .net_done(&mut session.control, NET_RESULT_TIMEOUT)
                    .await?
            }
            // Stopped by Ctrl-C: the server's figures if they come at once, else none at all.
            Some(_) => match session.control.read::<Reply>(STOPPED_RESULT_TIMEOUT).await {
                Ok(Reply::NetDone(done)) => done,
                _ => return Err(Interrupted.into()),
            },
        };
        let mut warnings = warnings;
        if let Some(counted_secs) = cut_short {
            warnings.push(Warning::Interrupted {
                counted_secs,
                asked_secs: match plan.rounds {
                    super::Rounds::Secs(secs) => secs,
                    super::Rounds::Count(_) => 0.0,
                },
            });
        }
        let cpu = (local_cpu, done.cpu);
        Ok(lat_report(
            &self.client,
            TransportKind::Tcp,
            plan,
            latency,
            cpu,
            warnings,
        ))
    }

    async fn net(&self, plan: &NetPlan, watcher: &dyn Watcher) -> Result<NetReport> {
        let uploads = if plan.directions.uploads() {
            plan.streams
        } else {
            0
        };
        let downloads = if plan.directions.downloads() {
            plan.streams
        } else {
            0
        };
        let request = NetRequest {
            upload_streams: uploads as u32,
            download_streams: downloads as u32,
            secs: plan.secs,
            omit_secs: plan.omit_secs,
            len: plan.len as u32,
            window: plan.window.map(|w| w as u32),
            interval_secs: plan.interval_secs,
            zerocopy: plan.zerocopy,
        };
        let mut session = self
            .open(Request::Net(request), uploads + downloads, plan.window)
            .await?;
        let warnings: Vec<Warning> = loopback_warning(&session.control).into_iter().collect();
        let peer_addr = session.control.stream().peer_addr()?;
        let mtu = session
            .streams
            .first()
            .and_then(|s| path_mtu(s.as_raw_fd(), peer_addr.is_ipv6()));

        let timing = Timing {
            start: Instant::now(),
            omit: Duration::from_secs_f64(plan.omit_secs),
            secs: Duration::from_secs_f64(plan.secs),
            every: Duration::from_secs_f64(plan.interval_secs),
            len: plan.len,
            stall: memory::STALL_TIMEOUT,
            zerocopy: plan.zerocopy,
        };
        let window = session
            .streams
            .first()
            .and(plan.window)
            .and_then(|_| granted_window(session.streams[0].as_raw_fd()));
        let cpu = CpuClock::start();
        let streams = session
            .streams
            .drain(..)
            .enumerate()
            .map(|(index, stream)| {
                let role = if index < uploads {
                    Role::Send
                } else {
                    Role::Receive
                };
                Ok((stream.into_std()?, role))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let peer = self.server().to_string();
        let control = &session.control;
        // On Ctrl-C the server is asked to stop too, so that both ends count to the same end.
        let stop = async {
            crate::interrupt::wait().await;
            let _ = control.try_write(&Request::Finished);
        };
        let exchanged =
            memory::exchange(streams, timing, &peer, |tick| watcher.tick(tick), stop).await;
        let exchanged = self
            .client
            .explained(&mut session.control, exchanged)
            .await?;
        let local_cpu = cpu.finish();
        let stopped = exchanged.stopped;
        let exchanged_quiet = exchanged.quiet;
        let (sent_here, received_here) = (exchanged.sent, exchanged.received);
        let warnings = with_stop(warnings, stopped, &sent_here, &received_here, plan.secs);
        let wait = if stopped {
            STOPPED_RESULT_TIMEOUT
        } else {
            NET_RESULT_TIMEOUT
        };
        let answer = tokio::select! {
            read = session.control.read::<Reply>(wait) => read,
            // A second look at Ctrl-C only when the test ran to its end.
            _ = crate::interrupt::wait(), if !stopped => return Err(Interrupted.into()),
        };
        let quiet = exchanged_quiet;
        let done = match answer {
            Ok(Reply::NetDone(done)) => done,
            // Stopped, and no figures from the far side: nothing whole to report.
            _ if stopped => return Err(Interrupted.into()),
            // The streams went quiet before the end, and then the figures did not come: the
            // path went dark, whatever the control connection says about it.
            _ if quiet >= DARK_BEFORE_END => {
                bail!(
                    "no data for {} s {} {} before the test's end, and no figures after it: the path stopped carrying data",
                    quiet.as_secs(),
                    if uploads > 0 { "to" } else { "from" },
                    self.server()
                )
            }
            Ok(Reply::Error { message }) => bail!("{}: {message}", self.server()),
            Ok(other) => bail!("{}: unexpected answer {other:?}", self.server()),
            Err(FrameError::Closed) => bail!(
                "{} closed the connection before sending its figures: the server stopped (see its log)",
                self.server()
            ),
            Err(FrameError::Io(err)) if err.kind() == std::io::ErrorKind::TimedOut => bail!(
                "no data for {} s from {}: the path stopped carrying data, or the server stopped answering",
                wait.as_secs(),
                self.server()
            ),
            Err(err) => bail!("{}: {err}", self.server()),
        };
        let NetDone {
            received: received_there,
            sent: sent_there,
            cpu: remote_cpu,
        } = done;
        let conditions = Conditions {
            path: Some(TransportKind::Tcp),
            streams: Some(plan.streams),
            mtu,
            window,
            zerocopy: plan.zerocopy,
            ..Conditions::default()
        };
        let mut directions = Vec::new();
        if uploads > 0 {
            let mut there =
                received_there.ok_or_else(|| anyhow!("{}: no upload figures", self.server()))?;
            there.align_to_sender(&sent_here);
            directions.push(direction_report(
                Direction::Upload,
                &sent_here,
                &there,
                true,
                &conditions,
            ));
        }
        if downloads > 0 {
            let there =
                sent_there.ok_or_else(|| anyhow!("{}: no download figures", self.server()))?;
            let mut received_here = received_here;
            received_here.align_to_sender(&there);
            directions.push(direction_report(
                Direction::Download,
                &there,
                &received_here,
                false,
                &conditions,
            ));
        }
        Ok(NetReport {
            server: self.server().to_string(),
            path: TransportKind::Tcp,
            streams: plan.streams,
            secs: plan.secs,
            omit_secs: plan.omit_secs,
            len: plan.len,
            window: plan.window,
            directions,
            cpu: CpuBoth {
                local: local_cpu,
                remote: Some(remote_cpu),
            },
            latency: None,
            warnings,
        })
    }

    async fn upload(
        &self,
        plan: &CopyPlan,
        source: &Path,
        remote_path: &str,
        chunks: ChunkPlan,
        watcher: &dyn Watcher,
    ) -> Result<CopyReport> {
        let mut warnings = Vec::new();
        let (engine, size, direct) = pipeline::open_source(source, chunks.depth, &mut warnings)?;
        let engine_kind = engine.kind();
        let remote_path = super::address::with_file_name(remote_path, source);
        let request = Request::Receive(FileRequest {
            path: remote_path.clone(),
            size,
            streams: plan.streams as u32,
            chunk: chunks.chunk as u32,
            iodepth: chunks.depth as u32,
            verify: chunks.verify,
            force: plan.force,
            name: source.file_name().map(|n| n.to_string_lossy().into_owned()),
            resume: plan.resume,
        });
        // With --resume the server digests what it took up before it is ready.
        let wait = match plan.resume {
            true => PREFIX_TIMEOUT,
            false => HANDSHAKE_TIMEOUT,
        };
        let mut session = self.ready(&request, None, wait).await?;
        let (resumed, from) = match plan.resume {
            true => self
                .resume_upload(&mut session, source, size, chunks)
                .await
                .with_context(|| {
                    format!(
                        "{}:{remote_path}: checking the partial copy for --resume",
                        self.server()
                    )
                })?,
            false => (None, Start::default()),
        };
        let mut session = self.start(session, plan.streams).await?;
        warnings.extend(loopback_warning(&session.control));
        let cpu = CpuClock::start();
        let start = Instant::now();
        let moved = async {
            let (sent, intervals) = self
                .moving(
                    &mut session,
                    size - from.start,
                    watcher,
                    async |streams, counter| {
                        pipeline::send_file(engine, size, streams, chunks, from, counter).await
                    },
                )
                .await?;
            // serve holds what arrived to this before its rename (`--verify`).
            if let Some(digest) = &sent.digest {
                let control = &mut session.control;
                self.client.source_digest(control, digest.hex()).await?;
            }
            let done = self.client.copy_done(&mut session.control).await?;
            Ok::<_, anyhow::Error>((sent, intervals, done))
        };
        let (sent, intervals, done) = moved.await.map_err(|err| match plan.resume {
            true => err.context(format!(
                "{}:{remote_path}: the copy failed; the server keeps its temporary file: the same copy with --resume goes on from it",
                self.server()
            )),
            false => err,
        })?;
        warnings.extend(done.warnings.iter().cloned());
        let elapsed = start.elapsed();
        let verify = verification(sent.digest, done.digest.as_deref(), false, self.server())?;
        let conditions = copy_conditions(plan, chunks, direct && done.direct, engine_kind);
        Ok(CopyReport {
            source: source.display().to_string(),
            destination: format!("{}:{remote_path}", self.server()),
            path: TransportKind::Tcp,
            measurement: Measurement::new(
                Workload::Copy,
                size - from.start,
                elapsed,
                conditions,
                intervals,
            ),
            split: TimeSplit::uploaded(&sent, &done),
            verify,
            resumed,
            cpu: CpuBoth {
                local: cpu.finish(),
                remote: Some(done.cpu),
            },
            warnings,
        })
    }

    /// `--resume` of an upload, after Ready: holds the prefix of the server's temporary file
    /// it checked to the same bytes of `source` (of `size`), and says where the copy goes on
    /// from. None when the server found no temporary file. Errors: the source cannot be read,
    /// the server checked another prefix than this side would, the control connection fails.
    async fn resume_upload(
        &self,
        session: &mut Session,
        source: &Path,
        size: u64,
        chunks: ChunkPlan,
    ) -> Result<(Option<super::Resumed>, Start)> {
        let started = std::time::Instant::now();
        let checked = match &session.partial {
            Some(partial) => {
                let expected =
                    super::resumable_prefix(partial.found, size, chunks.chunk, chunks.depth);
                if partial.checked != expected {
                    bail!(
                        "the server checked {} bytes of a {}-byte partial copy, this side expected {expected}",
                        partial.checked,
                        partial.found
                    );
                }
                Some(partial.checked)
            }
            None => None,
        };
        let ours = match checked {
            Some(len) => Some(source_prefix_digest(source, len, chunks.chunk).await?),
            None => None,
        };
        let (resumed, from) = match (session.partial.take(), ours) {
            (Some(partial), Some(ours)) => {
                let resumed = super::Resumed {
                    found: partial.found,
                    checked: partial.checked,
                    matched: partial.checked > 0 && ours.hex() == partial.digest,
                    algorithm: DIGEST_ALGORITHM.to_string(),
                    secs: started.elapsed().as_secs_f64(),
                };
                let from = Start::after(&resumed, ours);
                (Some(resumed), from)
            }
            _ => (None, Start::default()),
        };
        session
            .control
            .write(&Request::ResumeFrom { offset: from.start })
            .await?;
        Ok((resumed, from))
    }

    async fn download(
        &self,
        plan: &CopyPlan,
        remote_path: &str,
        destination: &Path,
        chunks: ChunkPlan,
        watcher: &dyn Watcher,
    ) -> Result<CopyReport> {
        let mut warnings = Vec::new();
        let destination = super::address::local_destination(destination, remote_path)?;
        let request = Request::Send(FileRequest {
            path: remote_path.to_string(),
            size: 0,
            streams: plan.streams as u32,
            chunk: chunks.chunk as u32,
            iodepth: chunks.depth as u32,
            verify: chunks.verify,
            force: false,
            name: None,
            resume: plan.resume,
        });
        // The destination is checked before the server starts sending.
        let mut session = self.ready(&request, None, HANDSHAKE_TIMEOUT).await?;
        let size = session
            .size
            .ok_or_else(|| anyhow!("{}: the server did not say the file's size", self.server()))?;
        let (mut landing, engine, found) =
            pipeline::open_landing(&destination, size, plan, chunks, &mut warnings)?;
        if plan.resume {
            landing.keep_on_failure();
        }
        let kept = |err: anyhow::Error| {
            match plan.resume {
            true => err.context(format!(
                "{}:{remote_path}: the copy failed; {} is kept: the same copy with --resume goes on from it",
                self.server(),
                landing.temp_path.display()
            )),
            false => err,
        }
        };
        let (resumed, from) = match plan.resume {
            true => self
                .resume_download(&mut session, &landing, found, size, chunks)
                .await
                .map_err(|err| {
                    kept(err.context(format!(
                        "{}:{remote_path}: checking the partial copy for --resume",
                        self.server()
                    )))
                })?,
            false => (None, Start::default()),
        };
        let engine_kind = engine.kind();
        let landing_direct = landing.direct;
        let mut session = self.start(session, plan.streams).await.map_err(kept)?;
        warnings.extend(loopback_warning(&session.control));
        let cpu = CpuClock::start();
        let start = Instant::now();
        let moved = async {
            let (received, intervals) = self
                .moving(
                    &mut session,
                    size - from.start,
                    watcher,
                    async |streams, counter| {
                        pipeline::receive_file(engine, size, streams, chunks, from, counter).await
                    },
                )
                .await?;
            let fsync = landing.flush(size)?;
            let done = self.client.copy_done(&mut session.control).await?;
            Ok::<_, anyhow::Error>((received, intervals, fsync, done))
        };
        let (received, intervals, fsync, done) = moved.await.map_err(kept)?;
        warnings.extend(done.warnings.iter().cloned());
        let verify = verification(received.digest, done.digest.as_deref(), true, self.server())?;
        let elapsed = start.elapsed();
        landing.commit()?;
        let conditions = copy_conditions(plan, chunks, landing_direct && done.direct, engine_kind);
        Ok(CopyReport {
            source: format!("{}:{remote_path}", self.server()),
            destination: destination.display().to_string(),
            path: TransportKind::Tcp,
            measurement: Measurement::new(
                Workload::Copy,
                size - from.start,
                elapsed,
                conditions,
                intervals,
            ),
            split: TimeSplit::downloaded(&received, fsync, &done),
            verify,
            resumed,
            cpu: CpuBoth {
                local: cpu.finish(),
                remote: Some(done.cpu),
            },
            warnings,
        })
    }

    /// `--resume` of a download, after Ready: holds the checked prefix of the temporary file
    /// taken up (`found` bytes) to the server's source (of `size`), both digested at once, cuts
    /// the temporary file to where the copy goes on (all of it when they differ), and says so.
    /// None when there was no temporary file. Errors: it cannot be read or cut, the control
    /// connection fails.
    async fn resume_download(
        &self,
        session: &mut Session,
        landing: &crate::file::Landing,
        found: u64,
        size: u64,
        chunks: ChunkPlan,
    ) -> Result<(Option<super::Resumed>, Start)> {
        let started = std::time::Instant::now();
        let (resumed, from) = match found {
            0 => (None, Start::default()),
            found => {
                let checked = super::resumable_prefix(found, size, chunks.chunk, chunks.depth);
                let matched = match checked {
                    0 => None,
                    len => {
                        let (theirs, ours) = tokio::join!(
                            self.client.prefix_digest(&mut session.control, len),
                            source_prefix_digest(&landing.temp_path, len, chunks.chunk)
                        );
                        let ours = ours?;
                        Some((theirs? == ours.hex(), ours))
                    }
                };
                let resumed = super::Resumed {
                    found,
                    checked,
                    matched: matched.is_some_and(|(matched, _)| matched),
                    algorithm: DIGEST_ALGORITHM.to_string(),
                    secs: started.elapsed().as_secs_f64(),
                };
                let from =
                    matched.map_or_else(Start::default, |(_, ours)| Start::after(&resumed, ours));
                (Some(resumed), from)
            }
        };
        // The unchecked tail goes (a prefix that did not match: all of it).
        landing
            .file
            .set_len(from.start)
            .context("cutting the partial copy to where the copy goes on")?;
        session
            .control
            .write(&Request::ResumeFrom { offset: from.start })
            .await?;
        Ok((resumed, from))
    }
}

/// The digest of the first `len` bytes of the file at `path` (`pipeline::prefix_digest`), read
/// off the runtime's threads. Errors: the file cannot be read or is shorter than `len`.
async fn source_prefix_digest(path: &Path, len: u64, chunk: usize) -> Result<pipeline::Digest> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path)
            .with_context(|| format!("reading {} to check the partial copy", path.display()))?;
        pipeline::prefix_digest(&file, len, chunk)
            .with_context(|| format!("reading {} to check the partial copy", path.display()))
    })
    .await
    .map_err(|err| anyhow!("checking the partial copy failed: {err}"))?
}

impl Tcp {
    /// Moves a copy's `size` bytes on the session's streams with `work`, under the watcher
    /// (progress, intervals); a broken stream is explained by what the server said.
    async fn moving<T>(
        &self,
        session: &mut Session,
        size: u64,
        watcher: &dyn Watcher,
        work: impl AsyncFnOnce(Vec<TcpStream>, &Counter) -> Result<T>,
    ) -> Result<(T, Vec<Interval>)> {
        let streams = std::mem::take(&mut session.streams);
        let counter = Counter::new();
        let (moved, intervals) =
            pipeline::watched(watcher, size, &counter, work(streams, &counter)).await;
        let moved = self.client.explained(&mut session.control, moved).await?;
        Ok((moved, intervals))
    }
}

/// The report of `plan`'s round trips over `path` to `client`'s server, with the CPU of this
/// end and the server's.
pub(super) fn lat_report(
    client: &Client,
    path: TransportKind,
    plan: &LatPlan,
    latency: Latency,
    (local, remote): (CpuUse, CpuUse),
    warnings: Vec<Warning>,
) -> LatReport {
    LatReport {
        server: client.name().to_string(),
        path,
        size: plan.size,
        latency,
        cpu: CpuBoth {
            local,
            remote: Some(remote),
        },
        warnings,
    }
}

/// `warmup` untimed then `rounds` timed round trips of `size` random bytes on a blocking socket.
/// Ctrl-C after the warmup ends them early: the figures so far and the seconds they took.
/// Errors: a stall of [`memory::STALL_TIMEOUT`] (a sentence naming `peer`), the socket's own.
fn echo_round_trips(
    mut stream: std::net::TcpStream,
    size: usize,
    warmup: u32,
    rounds: super::Rounds,
    peer: &str,
) -> Result<(Latency, Option<f64>)> {
    let mut message = vec![0u8; size];
    crate::payload::RandomFill::new().fill(&mut message);
    let mut back = vec![0u8; size];
    // A blocked call wakes to look at Ctrl-C and the stall clock; a timed one is never cut.
    stream.set_read_timeout(Some(memory::WAKE))?;
    stream.set_write_timeout(Some(memory::WAKE))?;
    let (one_way, _, cut_short) =
        crate::measure::OneWay::time_until_interrupted(warmup, rounds, |_| {
            crate::interrupt::check()?;
            let started = std::time::Instant::now();
            bounded_io(&mut stream, &mut message, true, peer)?;
            bounded_io(&mut stream, &mut back, false, peer)?;
            Ok(Some(started.elapsed()))
        })?;
    // Closing our side ends the server's echo loop; it then sends its figures.
    stream.shutdown(std::net::Shutdown::Write)?;
    let latency = one_way.latency(format!(
        "{size}-byte TCP message and its echo; one way = half the round trip"
    ));
    Ok((latency, cut_short))
}

/// Writes all of `buf` (`write`), or reads it all, on a socket whose calls wake every
/// [`memory::WAKE`]. Errors: Ctrl-C ([`Interrupted`]), no byte moved for
/// [`memory::STALL_TIMEOUT`] (a sentence), the peer's close, the socket's own.
fn bounded_io(
    stream: &mut std::net::TcpStream,
    buf: &mut [u8],
    write: bool,
    peer: &str,
) -> Result<()> {
    use std::io::{ErrorKind, Read, Write};
    let mut done = 0;
    let mut quiet_since = None;
    while done < buf.len() {
        let moved = match write {
            true => stream.write(&buf[done..]),
            false => stream.read(&mut buf[done..]),
        };
        match moved {
            Ok(0) => bail!("{peer} closed the connection in the middle of a round trip"),
            Ok(n) => {
                done += n;
                quiet_since = None;
            }
            Err(err)
                if matches!(
                    err.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                crate::interrupt::check()?;
                let since = *quiet_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() + memory::WAKE >= memory::STALL_TIMEOUT {
                    bail!(
                        "no data for {} s {} {peer}: the path stopped carrying data",
                        memory::STALL_TIMEOUT.as_secs(),
                        if write { "to" } else { "from" }
                    );
                }
            }
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

/// Compares the digests of a verified copy; a mismatch is an error. `here_received` says which
/// side this one is (the destination of a download, or the source of an upload).
pub(super) fn verification(
    here: Option<pipeline::Digest>,
    there: Option<&str>,
    here_received: bool,
    peer: &str,
) -> Result<Option<Verification>> {
    let (Some(here), Some(there)) = (here, there) else {
        return Ok(None);
    };
    let here = here.hex();
    let (source, destination) = if here_received {
        (there.to_string(), here)
    } else {
        (here, there.to_string())
    };
    if source != destination {
        bail!(
            "verify failed: the source's digest is {source} but the destination's is {destination} \
             ({peer} is one side); the copy was discarded"
        );
    }
    Ok(Some(Verification {
        algorithm: DIGEST_ALGORITHM.into(),
        source,
        destination,
        matched: true,
        reread: None,
        far_reread: None,
    }))
}

pub(super) fn copy_conditions(
    plan: &CopyPlan,
    chunks: ChunkPlan,
    direct: bool,
    engine: disk::EngineKind,
) -> Conditions {
    Conditions {
        direct,
        fsync_included: true,
        engine: Some(engine),
        block_size: Some(chunks.chunk as u64),
        iodepth: Some(chunks.depth),
        path: Some(TransportKind::Tcp),
        streams: Some(plan.streams),
        mount: plan.local_mount(),
        ..Conditions::default()
    }
}

/// Puts the two sides' flows of one direction together.
fn direction_report(
    direction: Direction,
    sender: &Flow,
    receiver: &Flow,
    sender_is_here: bool,
    conditions: &Conditions,
) -> DirectionReport {
    let here = if sender_is_here { sender } else { receiver };
    let streams = (0..sender.stream_bytes.len().max(receiver.stream_bytes.len()))
        .map(|i| StreamReport {
            id: i + 1,
            sender_bytes: sender.stream_bytes.get(i).copied().unwrap_or(0),
            receiver_bytes: receiver.stream_bytes.get(i).copied().unwrap_or(0),
            retransmits: sender.stream_retransmits.get(i).copied().flatten(),
            intervals: here.stream_intervals.get(i).cloned().unwrap_or_default(),
        })
        .collect();
    let measurement = |stage, flow: &Flow| {
        Measurement::new(
            stage,
            flow.bytes(),
            Duration::from_secs_f64(flow.secs),
            conditions.clone(),
            sum_intervals(&flow.stream_intervals),
        )
    };
    DirectionReport {
        direction,
        sender: measurement(Workload::NetSend, sender),
        receiver: measurement(Workload::NetReceive, receiver),
        retransmits: sender.retransmits(),
        streams,
        datagrams: None,
    }
}

/// Adds the streams' intervals up, interval by interval (they share one clock).
pub fn sum_intervals(streams: &[Vec<Interval>]) -> Vec<Interval> {
    let mut sum: Vec<Interval> = streams.first().cloned().unwrap_or_default();
    for stream in streams.iter().skip(1) {
        for (total, interval) in sum.iter_mut().zip(stream) {
            total.bytes += interval.bytes;
        }
    }
    sum
}

/// A test stopped early (Ctrl-C) says so, with how much of its time the figures cover.
fn with_stop(
    mut warnings: Vec<Warning>,
    stopped: bool,
    sent: &Flow,
    received: &Flow,
    asked_secs: f64,
) -> Vec<Warning> {
    if stopped {
        warnings.push(Warning::Interrupted {
            counted_secs: sent.secs.max(received.secs).max(0.0),
            asked_secs,
        });
    }
    warnings
}

/// A server on this machine measures memory and CPU, not a network: say so.
pub(super) fn loopback_warning(control: &Connection) -> Option<Warning> {
    super::loopback_warning(control.stream().peer_addr().ok()?)
}
