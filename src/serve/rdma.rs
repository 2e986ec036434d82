//! The server's half of the RDMA path: its queue pair and buffers, set up from the client's
//! endpoint; the data loops run on a blocking thread while the control connection waits.

use std::os::fd::AsRawFd;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use super::Shared;
use super::session::{self, Receiving, Sending};
use crate::control::{
    Connection, NetDone, RdmaEndpoint, RdmaFileRequest, RdmaNetRequest, RdmaSlot, Reply, Request,
};
use crate::disk::{ALIGN, AlignedBuf};
use crate::measure::{Counter, CpuClock};
use crate::transport::pipeline::ChunkPlan;
use crate::transport::rdma::copy::{self, Ring, Side};
use crate::transport::rdma::verbs::Device;
use crate::transport::rdma::verbs::Link;
use crate::transport::rdma::{self as path, Pulse, net};

/// How long the client has to say its queue pair is up.
const BEGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Most latency round trips a client may ask for.
const MAX_ROUND_TRIPS: u32 = 1_000_000;

/// This server's device, named in errors as the server's.
fn device(shared: &Shared) -> Result<Device> {
    Device::open(&shared.rdma).context("on the server")
}

/// Runs a data loop on a blocking thread: it polls, it never awaits.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| anyhow!("the RDMA loop failed: {err}"))?
}

/// Memory to memory: answer the latency test, offer buffers to the bandwidth test, wait for the end.
pub(super) async fn net(
    shared: &Shared,
    control: &mut Connection,
    request: RdmaNetRequest,
) -> Result<Reply> {
    let size = request.size as usize;
    if size == 0 || size > path::MAX_SIZE {
        bail!("an RDMA write of {size} bytes is out of range (1 to 64M)");
    }
    if request.depth == 0 || request.depth as usize > path::MAX_DEPTH {
        bail!("a queue depth of {} is out of range", request.depth);
    }
    if request
        .round_trips
        .is_some_and(|count| count > MAX_ROUND_TRIPS)
        || !(0.0..=24.0 * 3600.0).contains(&request.secs)
    {
        bail!(
            "a test of {} s and {} round trips is out of range",
            request.secs,
            request.round_trips.unwrap_or_default()
        );
    }
    let peer_probe = *request
        .endpoint
        .slots
        .first()
        .ok_or_else(|| anyhow!("the client offered no buffer for the latency test"))?;
    let device = device(shared)?;
    let mut link = device.queue_pair(4, 1)?;
    let mut probe = AlignedBuf::new(ALIGN);
    let slots = path::target_slots(size, request.depth as usize);
    let mut target = AlignedBuf::new(size * slots);
    // SAFETY: both buffers move into the loop's thread with their regions and come back with
    // them; an AlignedBuf's heap memory does not move when the buffer does.
    let probe_region = unsafe { device.register(probe.as_mut_ptr(), probe.capacity(), true)? };
    // SAFETY: as above, for the target.
    let target_region = unsafe { device.register(target.as_mut_ptr(), target.capacity(), true)? };
    let mut offered = vec![probe_region.slot()];
    let whole = target_region.slot();
    offered.extend((0..slots).map(|i| RdmaSlot {
        addr: whole.addr + (i * size) as u64,
        rkey: whole.rkey,
        len: size as u32,
    }));
    link.connect(&request.endpoint)?;
    control
        .write(&Reply::RdmaReady {
            endpoint: link.endpoint(offered),
            size: None,
        })
        .await?;
    let fd = control.stream().as_raw_fd();
    let cpu = CpuClock::start();
    let rounds = request.round_trips;
    let kept = blocking(move || {
        let mut pulse = Pulse::new(fd);
        net::answer_latency(&mut link, &probe_region, &peer_probe, rounds, &mut pulse)?;
        Ok((link, probe_region, probe, target_region, target))
    })
    .await?;
    let wait = Duration::from_secs_f64(request.secs + 60.0);
    match control.read::<Request>(wait).await {
        Ok(Request::Finished) => {}
        Ok(other) => bail!("expected the end of the test, got {other:?}"),
        Err(err) => bail!("the client did not finish the test: {err}"),
    }
    drop(kept);
    Ok(Reply::NetDone(NetDone {
        received: None,
        sent: None,
        cpu: cpu.finish(),
    }))
}

/// This end of a copy, connected to the client's `peer`, and said ready: a receiver offers its
/// slots, a sender the file's size.
async fn connect_copy(
    shared: &Shared,
    control: &mut Connection,
    plan: ChunkPlan,
    size: u64,
    peer: &RdmaEndpoint,
    receiving: bool,
) -> Result<(Link, Ring)> {
    copy::chunk_count(size, plan.chunk)?;
    let device = device(shared)?;
    let (mut link, ring) = copy::prepare(&device, plan, receiving)?;
    link.connect(peer)?;
    let (slots, size) = match receiving {
        true => (ring.slots(), None),
        false => (Vec::new(), Some(size)),
    };
    control
        .write(&Reply::RdmaReady {
            endpoint: link.endpoint(slots),
            size,
        })
        .await?;
    Ok((link, ring))
}

/// Runs `work` on this end of a connected copy, on a blocking thread that keeps an eye on the
/// control connection.
async fn copy_side<T: Send + 'static>(
    control: &Connection,
    (mut link, mut ring): (Link, Ring),
    size: u64,
    plan: ChunkPlan,
    work: impl FnOnce(Side<'_>, &mut Pulse) -> Result<T> + Send + 'static,
) -> Result<T> {
    let fd = control.stream().as_raw_fd();
    blocking(move || {
        let mut pulse = Pulse::new(fd);
        let side = Side {
            link: &mut link,
            ring: &mut ring,
            size,
            plan,
        };
        work(side, &mut pulse)
    })
    .await
}

/// Receives a file the client writes into this server's slots.
pub(super) async fn receive(
    shared: &Shared,
    control: &mut Connection,
    request: RdmaFileRequest,
) -> Result<Reply> {
    let Receiving {
        plan,
        landing,
        engine,
        warnings,
        ..
    } = session::prepare_receive(shared, &request.file)?;
    let size = request.file.size;
    let connected = connect_copy(shared, control, plan, size, &request.endpoint, true).await?;
    let cpu = CpuClock::start();
    let received = copy_side(control, connected, size, plan, move |side, pulse| {
        copy::receive_file(side, engine, &Counter::new(), pulse)
    })
    .await?;
    if let Some(arrived) = &received.digest {
        session::source_digest_matches(control, &arrived.hex(), shared.idle_timeout).await?;
    }
    session::land(landing, size, received, cpu, warnings)
}

/// Sends a file into the client's slots once its queue pair is up.
pub(super) async fn send(
    shared: &Shared,
    control: &mut Connection,
    request: RdmaFileRequest,
) -> Result<Reply> {
    let Sending {
        plan,
        engine,
        size,
        direct,
        warnings,
        ..
    } = session::prepare_send(shared, &request.file)?;
    let connected = connect_copy(shared, control, plan, size, &request.endpoint, false).await?;
    match control.read::<Request>(BEGIN_TIMEOUT).await {
        Ok(Request::Begin) => {}
        Ok(other) => bail!("expected the client's go-ahead, got {other:?}"),
        Err(err) => bail!("the client did not start the copy: {err}"),
    }
    let cpu = CpuClock::start();
    let targets = request.endpoint.slots;
    let done = copy_side(control, connected, size, plan, move |side, pulse| {
        copy::send_file(side, engine, &targets, &Counter::new(), pulse)
    })
    .await?;
    Ok(session::sent(done, direct, cpu, warnings))
}
