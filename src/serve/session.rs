//! One control connection: hello, one request, its data connections, the results.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::{JOIN_TIMEOUT, MAX_STREAMS, Shared};
use crate::control::client::PREFIX_TIMEOUT;
use crate::control::frame::{FrameError, MAX_REQUEST_FRAME};
use crate::control::{
    Connection, CopyDone, DiskDone, DiskRequest, EchoRequest, FileRequest, NetDone, NetRequest,
    Opening, PROTOCOL_NAME, PROTOCOL_VERSION, Partial, RemoveRequest, Reply, Request,
};
use crate::disk::{self, BaselineOptions, EngineChoice, Passes, Pattern};
use crate::file::{self, Landing};
use crate::measure::{Counter, CpuClock, Unwatched, set_socket_option};
use crate::transport::memory::{self, Role, Timing};
use crate::transport::pipeline::{self, ChunkPlan, Start};
use crate::units::format_bytes;
use crate::warning::Warning;

/// Longest memory-to-memory test a client may ask for.
const MAX_NET_SECS: f64 = 24.0 * 3600.0;
/// Longest a running test listens for the client's early stop: the test ends by itself long before.
const MAX_NET_WAIT: Duration = Duration::from_secs(2 * 24 * 3600);
/// Largest write length a client may ask for.
pub(super) const MAX_LEN: u32 = 64 << 20;

/// Serves one accepted connection: a control session, or a data connection joining one.
pub(crate) async fn serve_connection(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let mut control = Connection::new(stream, MAX_REQUEST_FRAME);
    let opening = match control.read::<Opening>(shared.idle_timeout).await {
        Ok(opening) => opening,
        Err(FrameError::Closed) => return,
        Err(err) => {
            (shared.log)(&format!("{peer}: refused: {err}"));
            let _ = control
                .write(&Reply::Error {
                    message: format!("{err}"),
                })
                .await;
            return;
        }
    };
    match opening {
        Opening::Join { session, stream } => join(&shared, &session, stream, control.into_stream()),
        Opening::Hello {
            protocol,
            version,
            token,
        } => {
            let outcome = session(&shared, &mut control, peer, &protocol, version, token).await;
            if let Err(err) = outcome {
                let message = format!("{err:#}");
                (shared.log)(&format!("{peer}: {message}"));
                let _ = control.write(&Reply::Error { message }).await;
            }
        }
    }
}

/// Hands a data connection to the session waiting for it; unknown sessions are dropped.
fn join(shared: &Shared, session: &str, stream: u32, data: TcpStream) {
    let waiting = shared
        .pending
        .lock()
        .expect("pending sessions lock")
        .get(session)
        .cloned();
    if let Some(waiting) = waiting {
        let _ = waiting.try_send((stream, data));
    }
}

async fn session(
    shared: &Arc<Shared>,
    control: &mut Connection,
    peer: SocketAddr,
    protocol: &str,
    version: u32,
    token: Option<String>,
) -> Result<()> {
    if protocol != PROTOCOL_NAME {
        bail!("not an xferbench client (protocol '{protocol}')");
    }
    if version != PROTOCOL_VERSION {
        bail!(
            "the client speaks protocol {version}, this server (xferbench {}) speaks {PROTOCOL_VERSION}: use the same xferbench version on both sides",
            env!("CARGO_PKG_VERSION")
        );
    }
    if let Some(expected) = &shared.token
        && token
            .as_deref()
            .map(|t| constant_time_eq(t.as_bytes(), expected.as_bytes()))
            != Some(true)
    {
        bail!(
            "{} token: pass the token this server printed at start with --token or --token-file",
            if token.is_some() { "wrong" } else { "missing" }
        );
    }
    // Held to the session's end; a peer test hands it to its thread.
    let Ok(slot) = shared.clients.clone().try_acquire_owned() else {
        bail!(
            "busy: {} clients are being served already; try again when they finish",
            shared.max_clients
        );
    };
    control
        .write(&Reply::Welcome {
            version: PROTOCOL_VERSION,
            server: env!("CARGO_PKG_VERSION").into(),
        })
        .await?;
    let request = match control.read::<Request>(shared.idle_timeout).await {
        Ok(request) => request,
        Err(FrameError::Closed) => return Ok(()),
        Err(err) => return Err(anyhow!(err)),
    };
    if let Request::RdmaReceive(rdma) | Request::RdmaSend(rdma) = &request
        && rdma.file.resume
    {
        bail!("--resume over rdma: an RDMA copy starts over; a resumed copy goes --via tcp");
    }
    let started = Instant::now();
    let what = match &request {
        Request::Net(net) => format!(
            "net {} up, {} down streams, {} s",
            net.upload_streams, net.download_streams, net.secs
        ),
        Request::Receive(file) => format!(
            "receive {} ({}){}",
            file.path,
            format_bytes(file.size),
            if file.resume { ", resumable" } else { "" }
        ),
        Request::Send(file) => format!(
            "send {}{}",
            file.path,
            if file.resume { ", resumable" } else { "" }
        ),
        Request::Disk(disk) => format!("disk baseline of {}", format_bytes(disk.size)),
        Request::Echo(echo) => format!("latency, {} B messages", echo.size),
        Request::RdmaNet(net) => format!("rdma net, {} B writes, {} s", net.size, net.secs),
        Request::RdmaReceive(rdma) => format!(
            "rdma receive {} ({})",
            rdma.file.path,
            format_bytes(rdma.file.size)
        ),
        Request::RdmaSend(rdma) => format!("rdma send {}", rdma.file.path),
        Request::UdpNet(udp) => format!(
            "udp {}, {} B datagrams, {} s",
            match udp.direction {
                crate::transport::Direction::Upload => "receive",
                crate::transport::Direction::Download => "send",
            },
            udp.len,
            udp.secs
        ),
        Request::UdpEcho(echo) => format!("udp latency, {} B messages", echo.size),
        Request::Remove(remove) => format!("remove {}", remove.path),
        Request::TreeReceive(tree) => format!("receive tree {}", tree.path),
        Request::TreeSend(tree) => format!("send tree {}", tree.path),
        Request::MeasureTo(measure) => super::peer::what(measure),
        Request::Begin
        | Request::Finished
        | Request::PrefixDigest { .. }
        | Request::ResumeFrom { .. }
        | Request::SourceDigest { .. } => bail!("a step of a session that was never opened"),
    };
    let reply = match request {
        Request::Net(net) => serve_net(shared, control, net).await,
        Request::Receive(file) => receive(shared, control, file).await,
        Request::Send(file) => send(shared, control, file).await,
        Request::Disk(disk) => baseline(shared, disk).await,
        Request::Echo(echo) => serve_echo(shared, control, echo).await,
        Request::RdmaNet(net) => super::rdma::net(shared, control, net).await,
        Request::RdmaReceive(rdma) => super::rdma::receive(shared, control, rdma).await,
        Request::RdmaSend(rdma) => super::rdma::send(shared, control, rdma).await,
        Request::UdpNet(udp) => super::udp::net(shared, control, udp).await,
        Request::UdpEcho(echo) => super::udp::echo(shared, control, echo).await,
        Request::Remove(remove) => remove_file(shared, remove),
        Request::TreeReceive(tree) => super::tree::receive(shared, control, tree).await,
        Request::TreeSend(tree) => super::tree::send(shared, control, tree).await,
        Request::MeasureTo(measure) => {
            super::peer::measure_to(shared, control, measure, slot).await
        }
        Request::Begin
        | Request::Finished
        | Request::PrefixDigest { .. }
        | Request::ResumeFrom { .. }
        | Request::SourceDigest { .. } => bail!("a step of a session that was never opened"),
    }
    .with_context(|| what.clone())?;
    control.write(&reply).await?;
    (shared.log)(&format!(
        "{peer}: {what}: done in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Says Ready, waits for `streams` data connections, says Started; returns them in stream order.
async fn ready_and_join(
    shared: &Shared,
    control: &mut Connection,
    streams: u32,
    window: Option<u32>,
    size: Option<u64>,
) -> Result<Vec<TcpStream>> {
    join_streams(shared, control, streams, window, |session, port| {
        Reply::Ready {
            session,
            port,
            size,
            partial: None,
        }
    })
    .await
}

/// Says `ready(session, port)`, waits for `streams` data connections, says Started; returns
/// them in stream order.
pub(super) async fn join_streams(
    shared: &Shared,
    control: &mut Connection,
    streams: u32,
    window: Option<u32>,
    ready: impl FnOnce(String, u16) -> Reply,
) -> Result<Vec<TcpStream>> {
    announce(shared, control, streams, ready)
        .await?
        .join(control, window)
        .await
}

/// A session its client was told of (`ready` written), whose data connections may join.
pub(super) struct Announced<'a> {
    pending: Pending<'a>,
    joins: mpsc::Receiver<(u32, TcpStream)>,
    streams: u32,
}

/// Registers a session for `streams` data connections and says `ready(session, port)`; what
/// comes before the joins (a `--resume` copy's offset) may be read next on `control`.
async fn announce<'a>(
    shared: &'a Shared,
    control: &mut Connection,
    streams: u32,
    ready: impl FnOnce(String, u16) -> Reply,
) -> Result<Announced<'a>> {
    if streams == 0 || streams > MAX_STREAMS {
        bail!("{streams} streams asked: give 1 to {MAX_STREAMS}");
    }
    let id = format!("{:032x}", rand::random::<u128>());
    let (tx, joins) = mpsc::channel(streams as usize);
    let pending = Pending::register(shared, id.clone(), tx);
    control.write(&ready(id, shared.port)).await?;
    Ok(Announced {
        pending,
        joins,
        streams,
    })
}

impl Announced<'_> {
    /// Waits for the data connections, [`JOIN_TIMEOUT`] from now, then says Started; returns
    /// them in stream order.
    async fn join(
        mut self,
        control: &mut Connection,
        window: Option<u32>,
    ) -> Result<Vec<TcpStream>> {
        let streams = self.streams;
        let mut joined: Vec<Option<TcpStream>> = (0..streams).map(|_| None).collect();
        let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
        let mut count = 0;
        while count < streams {
            match tokio::time::timeout_at(deadline, self.joins.recv()).await {
                Ok(Some((index, stream))) => {
                    if let Some(slot) = joined.get_mut(index as usize)
                        && slot.is_none()
                    {
                        if let Some(window) = window {
                            set_window(&stream, window);
                        }
                        *slot = Some(stream);
                        count += 1;
                    }
                }
                _ => bail!(
                    "only {count} of {streams} data connections arrived within {} s: is a firewall blocking port {}?",
                    JOIN_TIMEOUT.as_secs(),
                    self.pending.shared.port
                ),
            }
        }
        drop(self.pending);
        control.write(&Reply::Started).await?;
        Ok(joined.into_iter().flatten().collect())
    }
}

/// A session's entry in the table of sessions waiting for data connections, removed on drop.
struct Pending<'a> {
    shared: &'a Shared,
    id: String,
}

impl<'a> Pending<'a> {
    fn register(shared: &'a Shared, id: String, tx: mpsc::Sender<(u32, TcpStream)>) -> Pending<'a> {
        shared
            .pending
            .lock()
            .expect("pending sessions lock")
            .insert(id.clone(), tx);
        Pending { shared, id }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.shared
            .pending
            .lock()
            .expect("pending sessions lock")
            .remove(&self.id);
    }
}

async fn serve_net(shared: &Shared, control: &mut Connection, net: NetRequest) -> Result<Reply> {
    let in_range = |secs: f64, low: f64| secs >= low && secs <= MAX_NET_SECS;
    if net.secs <= 0.0
        || !in_range(net.secs, 0.0)
        || !in_range(net.omit_secs, 0.0)
        || !in_range(net.interval_secs, 0.1)
    {
        bail!(
            "a test of {} s (omit {} s) is out of range",
            net.secs,
            net.omit_secs
        );
    }
    if net.len == 0 || net.len > MAX_LEN {
        bail!(
            "a write length of {} bytes is out of range (1 to 64M)",
            net.len
        );
    }
    let total = net.upload_streams.saturating_add(net.download_streams);
    let streams = ready_and_join(shared, control, total, net.window, None).await?;
    let timing = Timing {
        start: tokio::time::Instant::now(),
        omit: Duration::from_secs_f64(net.omit_secs),
        secs: Duration::from_secs_f64(net.secs),
        every: Duration::from_secs_f64(net.interval_secs),
        len: net.len as usize,
        stall: shared.idle_timeout.min(memory::STALL_TIMEOUT),
        zerocopy: net.zerocopy,
    };
    let cpu = CpuClock::start();
    let streams = streams
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let role = if (i as u32) < net.upload_streams {
                Role::Receive
            } else {
                Role::Send
            };
            Ok((s.into_std()?, role))
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let peer = control
        .stream()
        .peer_addr()
        .map_or_else(|_| "the client".to_string(), |addr| addr.to_string());
    // The client asks to stop early (Ctrl-C there) with Finished; anything else, or its going
    // away, stops the test too.
    let mut heard = None;
    let stop = async {
        heard = Some(control.read::<Request>(MAX_NET_WAIT).await);
    };
    let exchanged = memory::exchange(streams, timing, &peer, |_| {}, stop).await?;
    match heard {
        None | Some(Ok(Request::Finished)) => {}
        Some(Ok(other)) => bail!("the client sent {other:?} in the middle of the test"),
        Some(Err(FrameError::Closed)) => bail!("the client went away in the middle of the test"),
        Some(Err(err)) => bail!(
            "lost the client's control connection in the middle of the test ({err}): the path stopped carrying data, or the client was stopped"
        ),
    }
    Ok(Reply::NetDone(NetDone {
        received: (net.upload_streams > 0).then_some(exchanged.received),
        sent: (net.download_streams > 0).then_some(exchanged.sent),
        cpu: cpu.finish(),
    }))
}

/// Sends every message of a latency test straight back, until the client closes the connection.
async fn serve_echo(shared: &Shared, control: &mut Connection, echo: EchoRequest) -> Result<Reply> {
    if echo.size == 0 || echo.size > MAX_LEN {
        bail!(
            "a message of {} bytes is out of range (1 to 64M)",
            echo.size
        );
    }
    let mut streams = ready_and_join(shared, control, 1, None, None).await?;
    let mut stream = streams.pop().expect("one stream joined");
    stream.set_nodelay(true)?;
    let cpu = CpuClock::start();
    let mut message = vec![0u8; echo.size as usize];
    loop {
        let read = tokio::time::timeout(shared.idle_timeout, stream.read_exact(&mut message)).await;
        match read {
            Ok(Ok(_)) => {
                tokio::time::timeout(shared.idle_timeout, stream.write_all(&message))
                    .await
                    .map_err(|_| {
                        anyhow!(
                            "the client took no echo for {} s: it stopped reading, or the path stopped carrying data",
                            shared.idle_timeout.as_secs()
                        )
                    })??
            }
            Ok(Err(err)) if err.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Ok(Err(err)) => return Err(err.into()),
            Err(_) => bail!(
                "the client sent nothing for {} s",
                shared.idle_timeout.as_secs()
            ),
        }
    }
    Ok(Reply::NetDone(NetDone {
        received: None,
        sent: None,
        cpu: cpu.finish(),
    }))
}

pub(super) fn chunk_plan(file: &FileRequest) -> Result<ChunkPlan> {
    let plan = ChunkPlan {
        chunk: file.chunk as usize,
        depth: file.iodepth as usize,
        verify: file.verify,
    };
    plan.validate()?;
    Ok(plan)
}

/// A file being received: where it lands, and the disk engine on it.
pub(super) struct Receiving {
    pub plan: ChunkPlan,
    pub landing: Landing,
    pub engine: disk::Engine,
    pub warnings: Vec<Warning>,
    /// With `--resume`: the length of the temporary file taken up (0: there was none).
    pub found: u64,
}

/// Checks a receive request and prepares its landing (a temporary name in the root; with
/// `--resume` the one a copy left, kept if this one fails).
pub(super) fn prepare_receive(shared: &Shared, request: &FileRequest) -> Result<Receiving> {
    let plan = chunk_plan(request)?;
    if let Some(max) = shared.max_bytes
        && request.size > max
    {
        bail!(
            "{} is more than this server accepts (--max-bytes {})",
            format_bytes(request.size),
            format_bytes(max)
        );
    }
    let requested = match &request.name {
        Some(name) if shared.root.is_dir(&request.path) => {
            format!("{}/{name}", request.path.trim_end_matches('/'))
        }
        _ => request.path.clone(),
    };
    let path = shared.root.new_file(&requested)?;
    let (mut landing, found) = match request.resume {
        true => Landing::resume(&path, request.size, request.force, true),
        false => Landing::prepare(&path, request.size, request.force, true).map(|l| (l, 0)),
    }
    .map_err(|err| anyhow!("{}", hide_root(&format!("{err:#}"), shared)))?;
    if request.resume {
        landing.keep_on_failure();
    }
    let mut warnings = Vec::new();
    if !landing.direct {
        warnings.push(Warning::DirectUnsupported {
            path: PathBuf::from(&request.path),
        });
    }
    let engine = disk::start_engine(
        EngineChoice::Auto,
        &landing.file,
        &path,
        plan.depth,
        &mut warnings,
    )?;
    Ok(Receiving {
        plan,
        landing,
        engine,
        warnings,
        found,
    })
}

/// Truncates the padded tail, fsyncs, renames: the received file under its name, and the figures.
pub(super) fn land(
    landing: Landing,
    size: u64,
    received: pipeline::CopyReceived,
    cpu: CpuClock,
    warnings: Vec<Warning>,
) -> Result<Reply> {
    let fsync_start = Instant::now();
    if !size.is_multiple_of(disk::ALIGN as u64) {
        landing
            .file
            .set_len(size)
            .context("truncating the padded tail")?;
    }
    landing.file.sync_all().context("fsync")?;
    let fsync = fsync_start.elapsed();
    let direct = landing.direct;
    landing.commit()?;
    Ok(Reply::CopyDone(CopyDone {
        bytes: received.bytes,
        disk_busy_secs: received.writing.as_secs_f64(),
        stream_busy_secs: 0.0,
        fsync_secs: fsync.as_secs_f64(),
        direct,
        digest: received.digest.map(|d| d.hex()),
        cpu: cpu.finish(),
        warnings,
    }))
}

async fn receive(shared: &Shared, control: &mut Connection, request: FileRequest) -> Result<Reply> {
    let Receiving {
        plan,
        landing,
        engine,
        warnings,
        found,
    } = prepare_receive(shared, &request)?;
    let partial = match request.resume && found > 0 {
        true => Some(check_partial(&landing, found, request.size, plan).await?),
        false => None,
    };
    let ready = partial.as_ref().map(|(partial, _)| partial.clone());
    let announced = announce(shared, control, request.streams, |session, port| {
        Reply::Ready {
            session,
            port,
            size: None,
            partial: ready,
        }
    })
    .await?;
    let from = match request.resume {
        true => {
            let offset = resume_from(control, partial.as_ref().map(|(p, _)| p.checked)).await?;
            // The unchecked tail goes (a partial that did not match: all of it).
            landing
                .file
                .set_len(offset)
                .context("cutting the partial copy to where the copy goes on")?;
            Start {
                start: offset,
                digest: partial.filter(|_| offset > 0).map(|(_, digest)| digest),
            }
        }
        false => Start::default(),
    };
    let streams = announced.join(control, None).await?;
    let cpu = CpuClock::start();
    let counter = Counter::new();
    let receiving = pipeline::receive_file(engine, request.size, streams, plan, from, &counter);
    let received = pipeline::bounded(shared.idle_timeout, &counter, receiving).await?;
    if let Some(arrived) = &received.digest {
        source_digest_matches(control, &arrived.hex(), shared.idle_timeout).await?;
    }
    land(landing, request.size, received, cpu, warnings)
}

/// `--verify` of an upload, before the rename: the client's [`Request::SourceDigest`] held to
/// the digest of what arrived. Errors (the landing is then dropped, so no file takes the name):
/// a mismatch, another request, the client's silence past `timeout`.
pub(super) async fn source_digest_matches(
    control: &mut Connection,
    arrived: &str,
    timeout: Duration,
) -> Result<()> {
    match control.read::<Request>(timeout).await {
        Ok(Request::SourceDigest { digest }) if digest == arrived => Ok(()),
        Ok(Request::SourceDigest { digest }) => bail!(
            "verify failed: the source's digest is {digest} but what arrived here digests to {arrived}; the copy was discarded"
        ),
        Ok(other) => bail!("expected the source's digest, got {other:?}"),
        Err(err) => bail!("the client did not send the source's digest: {err}"),
    }
}

/// `--resume` of a receive: what the temporary file taken up holds (`found` bytes of a file of
/// `size`), and the digest of its prefix worth checking, read off the runtime's threads.
/// Errors: the file cannot be read.
async fn check_partial(
    landing: &Landing,
    found: u64,
    size: u64,
    plan: ChunkPlan,
) -> Result<(Partial, pipeline::Digest)> {
    let checked = crate::transport::resumable_prefix(found, size, plan.chunk, plan.depth);
    let path = landing.temp_path.clone();
    let digest = tokio::task::spawn_blocking(move || {
        // Never through a link put in the temporary file's place.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)?;
        pipeline::prefix_digest(&file, checked, plan.chunk)
    })
    .await
    .map_err(|err| anyhow!("checking the partial copy failed: {err}"))?
    .context("reading the partial copy to check it for --resume")?;
    let partial = Partial {
        found,
        checked,
        digest: digest.hex(),
    };
    Ok((partial, digest))
}

/// `--resume`, after Ready: the client's [`Request::ResumeFrom`], which may come once it has
/// digested up to `checked` bytes of its own. Errors: another request, an offset other than 0
/// or `checked`, the client's silence past [`PREFIX_TIMEOUT`].
async fn resume_from(control: &mut Connection, checked: Option<u64>) -> Result<u64> {
    match control.read::<Request>(PREFIX_TIMEOUT).await {
        Ok(Request::ResumeFrom { offset }) if offset == 0 || Some(offset) == checked => Ok(offset),
        Ok(Request::ResumeFrom { offset }) => bail!(
            "resume from {offset}: the copy goes on from 0 or from the end of the prefix checked ({})",
            checked.unwrap_or(0)
        ),
        Ok(other) => bail!("expected where the resumed copy goes on from, got {other:?}"),
        Err(err) => bail!("the client did not say where the resumed copy goes on from: {err}"),
    }
}

/// A file being sent: the disk engine on it and its size.
pub(super) struct Sending {
    pub plan: ChunkPlan,
    pub engine: disk::Engine,
    pub size: u64,
    pub direct: bool,
    pub warnings: Vec<Warning>,
    /// The file opened (through the page cache), for a `--resume` prefix's digest.
    pub file: std::fs::File,
}

/// Checks a send request and opens the file (inside the root).
pub(super) fn prepare_send(shared: &Shared, request: &FileRequest) -> Result<Sending> {
    let plan = chunk_plan(request)?;
    let path = shared.root.existing_file(&request.path)?;
    let (handle, direct) = file::open_read(&path, true)?;
    let size = handle.metadata()?.len();
    let mut warnings = Vec::new();
    if !direct {
        warnings.push(Warning::DirectUnsupported {
            path: PathBuf::from(&request.path),
        });
    }
    warnings.extend(file::unwritten_warning(&handle, Path::new(&request.path)));
    let engine = disk::start_engine(
        EngineChoice::Auto,
        &handle,
        &path,
        plan.depth,
        &mut warnings,
    )?;
    Ok(Sending {
        plan,
        engine,
        size,
        direct,
        warnings,
        file: std::fs::File::open(&path)?,
    })
}

/// The figures of a file sent.
pub(super) fn sent(
    sent: pipeline::CopySent,
    direct: bool,
    cpu: CpuClock,
    warnings: Vec<Warning>,
) -> Reply {
    Reply::CopyDone(CopyDone {
        bytes: sent.bytes,
        disk_busy_secs: sent.reading.as_secs_f64(),
        stream_busy_secs: sent.sending.as_secs_f64(),
        fsync_secs: 0.0,
        direct,
        digest: sent.digest.map(|d| d.hex()),
        cpu: cpu.finish(),
        warnings,
    })
}

async fn send(shared: &Shared, control: &mut Connection, request: FileRequest) -> Result<Reply> {
    let Sending {
        plan,
        engine,
        size,
        direct,
        warnings,
        file,
    } = prepare_send(shared, &request)?;
    let announced = announce(shared, control, request.streams, |session, port| {
        Reply::Ready {
            session,
            port,
            size: Some(size),
            partial: None,
        }
    })
    .await?;
    let from = match request.resume {
        true => resume_send(control, file, size, plan).await?,
        false => Start::default(),
    };
    let streams = announced.join(control, None).await?;
    let cpu = CpuClock::start();
    let counter = Counter::new();
    let sending = pipeline::send_file(engine, size, streams, plan, from, &counter);
    let done = pipeline::bounded(shared.idle_timeout, &counter, sending).await?;
    Ok(sent(done, direct, cpu, warnings))
}

/// `--resume` of a send, after Ready: the digest of the prefix of `file` (`size` bytes) the
/// client asks for, if it asks, then where the copy goes on from. Errors: a prefix past the
/// file, a read that fails, an offset other than 0 or the prefix digested, the client's
/// silence past [`PREFIX_TIMEOUT`].
async fn resume_send(
    control: &mut Connection,
    file: std::fs::File,
    size: u64,
    plan: ChunkPlan,
) -> Result<Start> {
    let asked = match control.read::<Request>(PREFIX_TIMEOUT).await {
        Ok(Request::PrefixDigest { len }) if len <= size => len,
        Ok(Request::PrefixDigest { len }) => {
            bail!("the digest of the first {len} bytes of a file of {size} asked: refused")
        }
        Ok(Request::ResumeFrom { offset: 0 }) => return Ok(Start::default()),
        Ok(other) => bail!("expected the prefix a resumed copy checks, got {other:?}"),
        Err(err) => bail!("the client did not say what the resumed copy checks: {err}"),
    };
    let digest =
        tokio::task::spawn_blocking(move || pipeline::prefix_digest(&file, asked, plan.chunk))
            .await
            .map_err(|err| anyhow!("digesting the prefix failed: {err}"))?
            .context("reading the file to digest its prefix for --resume")?;
    control
        .write(&Reply::PrefixDigest {
            digest: digest.hex(),
        })
        .await?;
    let offset = resume_from(control, Some(asked)).await?;
    Ok(Start {
        start: offset,
        digest: (offset > 0).then_some(digest),
    })
}

/// Removes a regular file inside the root (never a directory, never through a symlink out of it).
fn remove_file(shared: &Shared, request: RemoveRequest) -> Result<Reply> {
    let Some(entry) = shared.root.entry(&request.path)? else {
        return Ok(Reply::Removed { existed: false });
    };
    match entry.symlink_metadata() {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            Ok(Reply::Removed { existed: false })
        }
        Err(err) => bail!(file::describe_path_error(&entry, err)),
        // A link is never followed, and the root itself is not removed.
        Ok(meta) if request.tree && meta.is_dir() && entry != shared.root.dir() => {
            std::fs::remove_dir_all(&entry).map_err(|err| {
                anyhow!("cannot remove {}", file::describe_path_error(&entry, err))
            })?;
            Ok(Reply::Removed { existed: true })
        }
        Ok(meta) if !meta.is_file() => {
            bail!(
                "'{}' is not a regular file on the server: only files are removed",
                request.path
            )
        }
        Ok(_) => {
            std::fs::remove_file(&entry).map_err(|err| {
                anyhow!("cannot remove {}", file::describe_path_error(&entry, err))
            })?;
            Ok(Reply::Removed { existed: true })
        }
    }
}

async fn baseline(shared: &Shared, request: DiskRequest) -> Result<Reply> {
    if let Some(max) = shared.max_bytes
        && request.size > max
    {
        bail!(
            "a {} test file is more than this server accepts (--max-bytes {})",
            format_bytes(request.size),
            format_bytes(max)
        );
    }
    let options = BaselineOptions {
        path: shared.root.dir().to_path_buf(),
        size: Some(request.size),
        pattern: Pattern {
            block: request.block as usize,
            depth: request.iodepth as usize,
        },
        direct: true,
        evict: true,
        engine: EngineChoice::Auto,
        passes: Passes::WriteThenRead,
    };
    let result = tokio::task::spawn_blocking(move || disk::baseline(&options, &Unwatched))
        .await
        .map_err(|err| anyhow!("the disk baseline failed: {err}"))??;
    Ok(Reply::DiskDone(DiskDone {
        measurements: result
            .measurements
            .into_iter()
            .map(|placed| placed.measurement)
            .collect(),
        warnings: result.warnings.iter().map(|w| w.to_string()).collect(),
        device: file::device_id(shared.root.dir()),
    }))
}

/// Paths in messages to clients are shown relative to the root.
pub(super) fn hide_root(message: &str, shared: &Shared) -> String {
    let root = shared.root.dir().display().to_string();
    message
        .replace(&format!("{root}/"), "")
        .replace(&root, "the server's root")
}

fn set_window(stream: &TcpStream, bytes: u32) {
    for option in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
        set_socket_option(stream.as_raw_fd(), option, bytes as libc::c_int);
    }
}

/// Compares tokens without leaking through timing how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
