//! The client's end of the RDMA path: the control steps go through serve's control client
//! ([`Client`]); the data moves by RDMA WRITE on one RC queue pair.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};

use super::copy::{self, Side};
use super::net::{self, Load};
use super::verbs::{Device, Link};
use super::{
    LATENCY_ROUND_TRIPS, LATENCY_SIZE, LATENCY_WARMUP, MAX_DEPTH, MAX_SIZE, Pulse, RdmaOptions,
};
use crate::control::client::RESULT_TIMEOUT;
use crate::control::{
    Client, Connection, FileRequest, NetDone, RdmaEndpoint, RdmaFileRequest, RdmaNetRequest, Reply,
    Request,
};
use crate::disk::{ALIGN, AlignedBuf};
use crate::measure::{Conditions, Counter, CpuClock, Interval, Measurement, Watcher, Workload};
use crate::payload::RandomFill;
use crate::transport::tcp::{self, copy_conditions, verification};
use crate::transport::{
    CopyPlan, CopyReport, CpuBoth, Direction, DirectionReport, Directions, LatPlan, LatReport,
    Location, NetPlan, NetReport, Peer, Rounds, StreamReport, TimeSplit, Transport, TransportKind,
    address, pipeline,
};

/// The RDMA path to one server.
pub struct Rdma {
    client: Client,
    /// Opened once: a missing device fails before any server is asked.
    device: Device,
}

impl Rdma {
    /// Checks this machine has the device first: no server is bothered when it does not.
    pub fn new(peer: Peer, token: Option<String>, options: RdmaOptions) -> Result<Rdma> {
        let device = Device::open(&options)?;
        Ok(Rdma {
            client: crate::transport::serve_client(peer, token)?,
            device,
        })
    }

    /// The RDMA path whose control steps go through `client` (shared with a run's other
    /// paths); fails when this machine has no such device.
    pub fn with_client(client: Client, options: RdmaOptions) -> Result<Rdma> {
        Ok(Rdma {
            device: Device::open(&options)?,
            client,
        })
    }

    /// The server, as its sentences name it.
    fn server(&self) -> &str {
        self.client.name()
    }

    /// Says hello, sends `request` and waits for the server's end of the connection.
    fn open(&self, request: &Request) -> Result<(Connection, RdmaEndpoint, Option<u64>)> {
        match self.client.block_on(self.client.open(request))? {
            (control, Reply::RdmaReady { endpoint, size }) => Ok((control, endpoint, size)),
            (_, other) => Err(self.client.unexpected(other)),
        }
    }

    /// `outcome`, or its error with what the server said on the control connection.
    fn explained<T>(&self, control: &mut Connection, outcome: Result<T>) -> Result<T> {
        self.client
            .block_on(self.client.explained(control, outcome))
    }

    /// Runs a copy's data loop under the watcher (progress, 1 s intervals); a failure is
    /// explained by what the server said, when it said something.
    fn moving<T>(
        &self,
        control: &mut Connection,
        size: u64,
        watcher: &dyn Watcher,
        work: impl FnOnce(&Counter, &mut Pulse) -> Result<T>,
    ) -> Result<(T, Vec<Interval>)> {
        let counter = Counter::new();
        let mut pulse = Pulse::new(control.stream().as_raw_fd()).sampling(&counter);
        watcher.begin("copy", size, &counter);
        let outcome = work(&counter, &mut pulse);
        watcher.end();
        let intervals = pulse.intervals();
        Ok((self.explained(control, outcome)?, intervals))
    }

    /// Says the memory-to-memory test is over and reads the server's figures.
    fn finish(&self, control: &mut Connection) -> Result<NetDone> {
        self.client.block_on(async {
            control.write(&Request::Finished).await?;
            self.client.net_done(control, RESULT_TIMEOUT).await
        })
    }

    fn copy_done(&self, control: &mut Connection) -> Result<crate::control::CopyDone> {
        self.client.block_on(self.client.copy_done(control))
    }
}

impl Transport for Rdma {
    fn kind(&self) -> TransportKind {
        TransportKind::Rdma
    }

    fn mem_to_mem(&self, plan: &NetPlan, watcher: &dyn Watcher) -> Result<NetReport> {
        if plan.directions != Directions::Upload {
            bail!(
                "--via rdma measures WRITEs from here into the server: -R and --bidir are not supported (run `net --via rdma` on the other machine against a server here)"
            );
        }
        if plan.streams != 1 {
            bail!(
                "--via rdma uses one queue pair: -P {} is not supported; give -Q (--queue-depth) for more writes in flight",
                plan.streams
            );
        }
        if plan.window.is_some() {
            bail!("-w sets a TCP socket buffer: it has no meaning with --via rdma");
        }
        if plan.len == 0 || plan.len > MAX_SIZE {
            bail!("-l/-s {} is out of range for RDMA: give 1 to 64M", plan.len);
        }
        if plan.queue_depth == 0 || plan.queue_depth > MAX_DEPTH {
            bail!(
                "-Q {} is out of range: give 1 to {MAX_DEPTH}",
                plan.queue_depth
            );
        }
        let device = &self.device;
        let mut link = device.queue_pair(plan.queue_depth as u32 + 2, 1)?;
        let mut payload = AlignedBuf::new(plan.len);
        RandomFill::new().fill(payload.full_mut());
        let mut probe = AlignedBuf::new(ALIGN);
        // SAFETY: both buffers live, unmoved, until the end of this function, past the queue
        // pair's last use.
        let local = unsafe { device.register(payload.as_mut_ptr(), payload.capacity(), false)? };
        // SAFETY: as above, for the probe.
        let probe_region = unsafe { device.register(probe.as_mut_ptr(), probe.capacity(), true)? };
        let request = Request::RdmaNet(RdmaNetRequest {
            size: plan.len as u32,
            depth: plan.queue_depth as u32,
            round_trips: Some(LATENCY_WARMUP + LATENCY_ROUND_TRIPS),
            secs: plan.omit_secs + plan.secs,
            endpoint: link.endpoint(vec![probe_region.slot()]),
        });
        let (mut control, peer_end, _) = self.open(&request)?;
        let warnings: Vec<_> = tcp::loopback_warning(&control).into_iter().collect();
        link.connect(&peer_end)?;
        let mut pulse = Pulse::new(control.stream().as_raw_fd());
        let cpu = CpuClock::start();
        let measured = (|| {
            let (peer_probe, targets) = peer_end
                .slots
                .split_first()
                .ok_or_else(|| anyhow!("the server offered no buffer for the latency test"))?;
            let latency = net::latency(
                &mut link,
                &probe_region,
                peer_probe,
                LATENCY_WARMUP,
                Rounds::Count(LATENCY_ROUND_TRIPS),
                &mut pulse,
            )?;
            let load = Load {
                size: plan.len as u32,
                depth: plan.queue_depth,
                omit: Duration::from_secs_f64(plan.omit_secs),
                secs: Duration::from_secs_f64(plan.secs),
                every: Duration::from_secs_f64(plan.interval_secs),
            };
            let written =
                net::write_bandwidth(&mut link, &local, targets, &load, &mut pulse, |tick| {
                    watcher.tick(tick)
                })?;
            Ok((latency, written))
        })();
        let (latency, written) = self.explained(&mut control, measured)?;
        let local_cpu = cpu.finish();
        let done = self.finish(&mut control)?;
        let conditions = Conditions {
            path: Some(TransportKind::Rdma),
            streams: Some(1),
            mtu: link.mtu(),
            block_size: Some(plan.len as u64),
            device: Some(device.describe()),
            queue_depth: Some(plan.queue_depth),
            ..Conditions::default()
        };
        let figure = |stage| {
            Measurement::new(
                stage,
                written.bytes,
                Duration::from_secs_f64(written.secs),
                conditions.clone(),
                written.intervals.clone(),
            )
        };
        // RC acknowledges a WRITE once the bytes are in the receiver's memory: the sender's
        // count is the receiver's too.
        let direction = DirectionReport {
            direction: Direction::Upload,
            sender: figure(Workload::NetSend),
            receiver: figure(Workload::NetReceive),
            retransmits: None,
            streams: vec![StreamReport {
                id: 1,
                sender_bytes: written.acknowledged,
                receiver_bytes: written.acknowledged,
                retransmits: None,
                intervals: written.intervals.clone(),
            }],
            datagrams: None,
        };
        Ok(NetReport {
            server: self.server().to_string(),
            path: TransportKind::Rdma,
            streams: 1,
            secs: plan.secs,
            omit_secs: plan.omit_secs,
            len: plan.len,
            window: None,
            directions: vec![direction],
            cpu: CpuBoth {
                local: local_cpu,
                remote: Some(done.cpu),
            },
            latency: Some(latency),
            warnings,
        })
    }

    fn latency(&self, plan: &LatPlan) -> Result<LatReport> {
        if plan.size != LATENCY_SIZE {
            bail!(
                "lat --via rdma writes {LATENCY_SIZE}-byte messages (the round's number, polled in memory): give -s {LATENCY_SIZE}"
            );
        }
        let device = &self.device;
        let mut link = device.queue_pair(4, 1)?;
        let mut probe = AlignedBuf::new(ALIGN);
        // SAFETY: the buffer lives, unmoved, until the end of this function, past the queue
        // pair's last use.
        let probe_region = unsafe { device.register(probe.as_mut_ptr(), probe.capacity(), true)? };
        let request = Request::RdmaNet(RdmaNetRequest {
            size: LATENCY_SIZE as u32,
            depth: 1,
            // -t: the server answers until the round with the stop mark.
            round_trips: match plan.rounds {
                Rounds::Count(count) => Some(LATENCY_WARMUP + count),
                Rounds::Secs(_) => None,
            },
            secs: 0.0,
            endpoint: link.endpoint(vec![probe_region.slot()]),
        });
        let (mut control, peer_end, _) = self.open(&request)?;
        let warnings: Vec<_> = tcp::loopback_warning(&control).into_iter().collect();
        link.connect(&peer_end)?;
        let mut pulse = Pulse::new(control.stream().as_raw_fd());
        let cpu = CpuClock::start();
        let measured = peer_end
            .slots
            .first()
            .ok_or_else(|| anyhow!("the server offered no buffer for the latency test"))
            .and_then(|peer_probe| {
                net::latency(
                    &mut link,
                    &probe_region,
                    peer_probe,
                    LATENCY_WARMUP,
                    plan.rounds,
                    &mut pulse,
                )
            });
        let latency = self.explained(&mut control, measured)?;
        let local_cpu = cpu.finish();
        let done = self.finish(&mut control)?;
        let cpu = (local_cpu, done.cpu);
        Ok(tcp::lat_report(
            &self.client,
            TransportKind::Rdma,
            plan,
            latency,
            cpu,
            warnings,
        ))
    }

    fn copy(&self, plan: &CopyPlan, watcher: &dyn Watcher) -> Result<CopyReport> {
        match (&plan.source, &plan.destination) {
            (Location::Local(source), Location::Remote { path, .. }) => {
                self.upload(plan, source, path, watcher)
            }
            (Location::Remote { path, .. }, Location::Local(destination)) => {
                self.download(plan, path, destination, watcher)
            }
            _ => bail!("one side of a copy must be local and the other host:path"),
        }
    }
}

impl Rdma {
    fn upload(
        &self,
        plan: &CopyPlan,
        source: &Path,
        remote_path: &str,
        watcher: &dyn Watcher,
    ) -> Result<CopyReport> {
        let chunks = plan.chunks()?;
        let mut warnings = Vec::new();
        let (engine, size, direct) = pipeline::open_source(source, chunks.depth, &mut warnings)?;
        let engine_kind = engine.kind();
        copy::chunk_count(size, chunks.chunk)?;
        let device = &self.device;
        let (mut link, mut ring) = copy::prepare(device, chunks, false)?;
        let remote_path = address::with_file_name(remote_path, source);
        let request = Request::RdmaReceive(RdmaFileRequest {
            file: file_request(plan, chunks, &remote_path, size, source),
            endpoint: link.endpoint(Vec::new()),
        });
        let (mut control, peer_end, _) = self.open(&request)?;
        warnings.extend(tcp::loopback_warning(&control));
        link.connect(&peer_end)?;
        let cpu = CpuClock::start();
        let start = Instant::now();
        let side = Side {
            link: &mut link,
            ring: &mut ring,
            size,
            plan: chunks,
        };
        let (sent, intervals) = self.moving(&mut control, size, watcher, |counter, pulse| {
            copy::send_file(side, engine, &peer_end.slots, counter, pulse)
        })?;
        // serve holds what arrived to this before its rename (`--verify`).
        if let Some(digest) = &sent.digest {
            let sending = self.client.source_digest(&mut control, digest.hex());
            self.client.block_on(sending)?;
        }
        // Our queue pair stays up until the server is done: its last credits are still coming.
        let done = self.copy_done(&mut control)?;
        let elapsed = start.elapsed();
        warnings.extend(done.warnings.iter().cloned());
        let verify = verification(sent.digest, done.digest.as_deref(), false, self.server())?;
        Ok(CopyReport {
            source: source.display().to_string(),
            destination: format!("{}:{remote_path}", self.server()),
            path: TransportKind::Rdma,
            measurement: Measurement::new(
                Workload::Copy,
                size,
                elapsed,
                self.conditions(
                    plan,
                    chunks,
                    direct && done.direct,
                    engine_kind,
                    device,
                    &link,
                ),
                intervals,
            ),
            split: TimeSplit::uploaded(&sent, &done),
            verify,
            resumed: None,
            cpu: CpuBoth {
                local: cpu.finish(),
                remote: Some(done.cpu),
            },
            warnings,
        })
    }

    fn download(
        &self,
        plan: &CopyPlan,
        remote_path: &str,
        destination: &Path,
        watcher: &dyn Watcher,
    ) -> Result<CopyReport> {
        let chunks = plan.chunks()?;
        let mut warnings = Vec::new();
        let destination = address::local_destination(destination, remote_path)?;
        let device = &self.device;
        let (mut link, mut ring) = copy::prepare(device, chunks, true)?;
        let request = Request::RdmaSend(RdmaFileRequest {
            file: FileRequest {
                force: false,
                name: None,
                ..file_request(plan, chunks, remote_path, 0, Path::new(""))
            },
            endpoint: link.endpoint(ring.slots()),
        });
        let (mut control, peer_end, size) = self.open(&request)?;
        let size = size
            .ok_or_else(|| anyhow!("{}: the server did not say the file's size", self.server()))?;
        copy::chunk_count(size, chunks.chunk)?;
        let (landing, engine) =
            pipeline::open_destination(&destination, size, plan, chunks, &mut warnings)?;
        let engine_kind = engine.kind();
        let landing_direct = landing.direct;
        warnings.extend(tcp::loopback_warning(&control));
        link.connect(&peer_end)?;
        self.client.block_on(control.write(&Request::Begin))?;
        let cpu = CpuClock::start();
        let start = Instant::now();
        let side = Side {
            link: &mut link,
            ring: &mut ring,
            size,
            plan: chunks,
        };
        let (received, intervals) =
            self.moving(&mut control, size, watcher, |counter, pulse| {
                copy::receive_file(side, engine, counter, pulse)
            })?;
        let fsync = landing.flush(size)?;
        let done = self.copy_done(&mut control)?;
        warnings.extend(done.warnings.iter().cloned());
        let verify = verification(received.digest, done.digest.as_deref(), true, self.server())?;
        let elapsed = start.elapsed();
        landing.commit()?;
        Ok(CopyReport {
            source: format!("{}:{remote_path}", self.server()),
            destination: destination.display().to_string(),
            path: TransportKind::Rdma,
            measurement: Measurement::new(
                Workload::Copy,
                size,
                elapsed,
                self.conditions(
                    plan,
                    chunks,
                    landing_direct && done.direct,
                    engine_kind,
                    device,
                    &link,
                ),
                intervals,
            ),
            split: TimeSplit::downloaded(&received, fsync, &done),
            verify,
            resumed: None,
            cpu: CpuBoth {
                local: cpu.finish(),
                remote: Some(done.cpu),
            },
            warnings,
        })
    }

    fn conditions(
        &self,
        plan: &CopyPlan,
        chunks: pipeline::ChunkPlan,
        direct: bool,
        engine: crate::disk::EngineKind,
        device: &Device,
        link: &Link,
    ) -> Conditions {
        Conditions {
            path: Some(TransportKind::Rdma),
            streams: Some(1),
            mtu: link.mtu(),
            device: Some(device.describe()),
            queue_depth: Some(chunks.depth),
            ..copy_conditions(plan, chunks, direct, engine)
        }
    }
}

/// The file part of a copy request; one queue pair carries it.
fn file_request(
    plan: &CopyPlan,
    chunks: pipeline::ChunkPlan,
    path: &str,
    size: u64,
    source: &Path,
) -> FileRequest {
    FileRequest {
        path: path.to_string(),
        size,
        streams: 1,
        chunk: chunks.chunk as u32,
        iodepth: chunks.depth as u32,
        verify: chunks.verify,
        force: plan.force,
        name: source.file_name().map(|n| n.to_string_lossy().into_owned()),
        // An RDMA copy starts over (`copy` refuses --resume over rdma).
        resume: false,
    }
}
