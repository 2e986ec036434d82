//! The UDP path: memory-to-memory datagrams and round trips through `xferbench serve`, like
//! nuttcp -u, iperf3 -u and qperf's udp_lat. No file copies: UDP does not deliver every byte.
//!
//! The control steps go through serve's [`Client`]; the datagrams go to serve's UDP port (the
//! number of its TCP port). The client says Hello there with the session's key until the
//! server's Welcome comes back, so both ways are known open before anything is timed.

pub mod receive;
pub mod send;
pub mod wire;

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use super::{
    CopyPlan, CopyReport, CpuBoth, Direction, DirectionReport, Directions, LatPlan, LatReport,
    NetPlan, NetReport, Peer, StreamReport, Transport, TransportKind,
};
use crate::control::client::HANDSHAKE_TIMEOUT;
use crate::control::connection::{Peeked, peek};
use crate::control::{Client, Connection, EchoRequest, Reply, Request, UdpDone, UdpNetRequest};
pub use crate::control::{DatagramInterval, DatagramsReceived, DatagramsSent};
use crate::measure::{
    Conditions, CpuClock, Interval, Latency, Measurement, Watcher, Workload, path_mtu,
    set_socket_option,
};
use crate::warning::Warning;
use wire::{HEADER_LEN, Header, Kind, MAX_LEN};

/// How long a round trip of `lat --via udp` may take before it counts as lost.
const ECHO_TIMEOUT: Duration = Duration::from_secs(1);
/// Lost round trips in a row that mean the server is not answering at all.
const ECHOES_MISSED: u32 = 5;
/// How long a receiver goes on past the test's length before it stops by itself.
const RECEIVE_MARGIN: Duration = Duration::from_secs(10);

/// The datagram figures of one direction of a UDP test.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Datagrams {
    /// Bytes per datagram (UDP payload).
    pub len: usize,
    /// The rate `-b` held the sender to, in bits per second; None: as fast as it could.
    pub paced_bits_per_sec: Option<f64>,
    pub sent: u64,
    /// Distinct datagrams received.
    pub received: u64,
    pub lost: u64,
    pub loss_percent: f64,
    pub out_of_order: u64,
    pub duplicates: u64,
    pub jitter_us: f64,
    /// Datagrams from other senders that reached the receiver's port, ignored.
    pub foreign: u64,
    /// As the receiver counted them.
    pub intervals: Vec<DatagramInterval>,
}

impl Datagrams {
    fn of(
        len: usize,
        rate: Option<f64>,
        sent: &DatagramsSent,
        received: &DatagramsReceived,
        foreign: u64,
    ) -> Self {
        let lost = sent.datagrams.saturating_sub(received.datagrams);
        // Datagrams sent after the last one that arrived belong to no interval's range yet.
        let mut intervals = received.intervals.clone();
        if let Some(last) = intervals.last_mut() {
            let trailing = sent.datagrams.saturating_sub(received.expected);
            last.expected += trailing;
            last.lost += trailing;
        }
        Datagrams {
            len,
            paced_bits_per_sec: rate.map(|bytes| bytes * 8.0),
            sent: sent.datagrams,
            received: received.datagrams,
            lost,
            loss_percent: if sent.datagrams > 0 {
                lost as f64 * 100.0 / sent.datagrams as f64
            } else {
                0.0
            },
            out_of_order: received.out_of_order,
            duplicates: received.duplicates,
            jitter_us: received.jitter_us,
            foreign,
            intervals,
        }
    }
}

/// The UDP path to one server.
pub struct Udp {
    client: Client,
}

impl Udp {
    /// The UDP path to serve at `peer`, with a runtime of its own (a single command's).
    pub fn new(peer: Peer, token: Option<String>) -> Result<Udp> {
        Ok(Udp::with_client(super::serve_client(peer, token)?))
    }

    /// The UDP path whose control steps go through `client` (shared with a run's other paths).
    pub fn with_client(client: Client) -> Udp {
        Udp { client }
    }

    /// The server, as its sentences name it.
    fn server(&self) -> &str {
        self.client.name()
    }
}

impl Transport for Udp {
    fn kind(&self) -> TransportKind {
        TransportKind::Udp
    }

    fn mem_to_mem(&self, plan: &NetPlan, watcher: &dyn Watcher) -> Result<NetReport> {
        if plan.len != 0 && !(HEADER_LEN..=MAX_LEN).contains(&plan.len) {
            bail!(
                "-l {}: a UDP datagram here carries {HEADER_LEN} to {MAX_LEN} bytes (a {HEADER_LEN}-byte header numbers and stamps it)",
                plan.len
            );
        }
        if plan.streams != 1 {
            bail!(
                "--via udp sends one flow: leave -P out (to load the path harder, raise -b or use --max)"
            );
        }
        let direction = match plan.directions {
            Directions::Upload => Direction::Upload,
            Directions::Download => Direction::Download,
            Directions::Both => {
                bail!("--via udp runs one direction at a time: leave --bidir out (-R reverses)")
            }
        };
        let mut control = self.client.block_on(self.client.handshake())?;
        let server = control.stream().peer_addr()?;
        let socket = socket_towards(server, plan.window)?;
        let mtu = path_mtu(socket.as_raw_fd(), server.is_ipv6());
        let len = match plan.len {
            0 => wire::default_len(mtu.unwrap_or(1500), server.is_ipv6()),
            len => len,
        };
        let request = Request::UdpNet(UdpNetRequest {
            direction,
            len: len as u32,
            rate: plan.rate,
            secs: plan.omit_secs + plan.secs,
            omit_secs: plan.omit_secs,
            interval_secs: plan.interval_secs,
            window: plan.window.map(|w| w as u32),
        });
        let key = self.open(&mut control, request, &socket)?;
        let every = Duration::from_secs_f64(plan.interval_secs);
        let cpu = CpuClock::start();
        let mut on_tick = |tick: crate::transport::memory::Tick| watcher.tick(&tick);
        let (sent, received, done, foreign_here) = match direction {
            Direction::Upload => {
                let sending = send::Sending {
                    socket: &socket,
                    to: None,
                    key,
                    len,
                    rate: plan.rate,
                    omit: Duration::from_secs_f64(plan.omit_secs),
                    secs: Duration::from_secs_f64(plan.secs),
                    every,
                    control: control.stream().as_raw_fd(),
                };
                let sent = send::send(&sending, &mut on_tick)
                    .map_err(|err| self.explain(&mut control, err))?;
                self.client.block_on(control.write(&Request::Finished))?;
                let mut done = self.done(&mut control)?;
                let received = done.received.take().ok_or_else(|| {
                    anyhow!("{}: no figures of the datagrams received", self.server())
                })?;
                (sent, received, done, 0)
            }
            Direction::Download => {
                let listening = receive::Listening {
                    socket: &socket,
                    key,
                    from: None,
                    len,
                    every,
                    control: control.stream().as_raw_fd(),
                    limit: Duration::from_secs_f64(plan.omit_secs + plan.secs) + RECEIVE_MARGIN,
                };
                let mut foreign = 0;
                let (received, _) = receive::receive(&listening, &mut foreign, &mut on_tick)
                    .map_err(|err| self.explain(&mut control, err))?;
                let mut done = self.done(&mut control)?;
                let sent = done.sent.take().ok_or_else(|| {
                    anyhow!("{}: no figures of the datagrams sent", self.server())
                })?;
                (sent, received, done, foreign)
            }
        };
        let local_cpu = cpu.finish();
        let unfragmented = wire::default_len(mtu.unwrap_or(1500), server.is_ipv6());
        if sent.datagrams > 0 && received.datagrams == 0 {
            bail!(
                "{}: none of the {} datagrams sent {} arrived, so there is no figure to give. {}",
                self.server(),
                sent.datagrams,
                match direction {
                    Direction::Upload => "to the server",
                    Direction::Download => "by the server",
                },
                nothing_arrived_causes(len, unfragmented, mtu)
            );
        }
        let foreign = done.foreign + foreign_here;
        let conditions = Conditions {
            path: Some(TransportKind::Udp),
            streams: Some(1),
            mtu,
            window: plan.window.map(|w| w as u64),
            block_size: Some(len as u64),
            ..Conditions::default()
        };
        let receiver_intervals: Vec<Interval> = received
            .intervals
            .iter()
            .map(DatagramInterval::interval)
            .collect();
        let here_intervals = match direction {
            Direction::Upload => sent.intervals.clone(),
            Direction::Download => receiver_intervals.clone(),
        };
        let mut warnings = path_warnings(server, len, unfragmented, mtu);
        if foreign > 0 {
            warnings.push(Warning::ForeignDatagrams { count: foreign });
        }
        Ok(NetReport {
            server: self.server().to_string(),
            path: TransportKind::Udp,
            streams: 1,
            secs: plan.secs,
            omit_secs: plan.omit_secs,
            len,
            window: plan.window,
            directions: vec![DirectionReport {
                direction,
                sender: Measurement::new(
                    Workload::NetSend,
                    sent.bytes,
                    Duration::from_secs_f64(sent.secs),
                    conditions.clone(),
                    sent.intervals.clone(),
                ),
                receiver: Measurement::new(
                    Workload::NetReceive,
                    received.bytes,
                    Duration::from_secs_f64(received.secs),
                    conditions,
                    receiver_intervals,
                ),
                retransmits: None,
                streams: vec![StreamReport {
                    id: 1,
                    sender_bytes: sent.bytes,
                    receiver_bytes: received.bytes,
                    retransmits: None,
                    intervals: here_intervals,
                }],
                datagrams: Some(Datagrams::of(len, plan.rate, &sent, &received, foreign)),
            }],
            cpu: CpuBoth {
                local: local_cpu,
                remote: Some(done.cpu),
            },
            latency: None,
            warnings,
        })
    }

    fn copy(&self, _plan: &CopyPlan, _watcher: &dyn Watcher) -> Result<CopyReport> {
        bail!(
            "copy --via udp: UDP does not deliver every datagram, so it carries no files; copy over tcp, ssh or rdma"
        )
    }

    fn latency(&self, plan: &LatPlan) -> Result<LatReport> {
        if plan.size == 0 || plan.size > MAX_LEN {
            bail!(
                "-s {}: a UDP message carries 1 to {MAX_LEN} bytes",
                plan.size
            );
        }
        let mut control = self.client.block_on(self.client.handshake())?;
        let server = control.stream().peer_addr()?;
        let socket = socket_towards(server, None)?;
        let (len, mtu) = (plan.size, path_mtu(socket.as_raw_fd(), server.is_ipv6()));
        let unfragmented = wire::default_len(mtu.unwrap_or(1500), server.is_ipv6());
        let request = Request::UdpEcho(EchoRequest {
            size: plan.size as u32,
        });
        // Echoes carry no header: the key only opened the way.
        self.open(&mut control, request, &socket)?;
        let cpu = CpuClock::start();
        let fd = control.stream().as_raw_fd();
        let (latency, lost) =
            echo_round_trips(&socket, plan, fd).map_err(|err| self.explain(&mut control, err))?;
        let local_cpu = cpu.finish();
        self.client.block_on(control.write(&Request::Finished))?;
        let done = self.done(&mut control)?;
        let mut warnings = path_warnings(server, len, unfragmented, mtu);
        if lost > 0 {
            warnings.push(Warning::LostRoundTrips {
                lost,
                rounds: lost + latency.samples,
            });
        }
        if done.foreign > 0 {
            warnings.push(Warning::ForeignDatagrams {
                count: done.foreign,
            });
        }
        let cpu = (local_cpu, done.cpu);
        Ok(super::tcp::lat_report(
            &self.client,
            TransportKind::Udp,
            plan,
            latency,
            cpu,
            warnings,
        ))
    }
}

impl Udp {
    /// Sends `request`, points `socket` at the server's UDP port, and says Hello there until
    /// the server's Welcome (or its first datagram) comes back. Returns the session's key.
    fn open(&self, control: &mut Connection, request: Request, socket: &UdpSocket) -> Result<u64> {
        self.client.block_on(control.write(&request))?;
        let (port, key) = match self
            .client
            .block_on(self.client.reply(control, HANDSHAKE_TIMEOUT))?
        {
            Reply::UdpReady { port, key } => (port, key),
            other => bail!("{}: unexpected answer {other:?}", self.server()),
        };
        let mut server = control.stream().peer_addr()?;
        server.set_port(port);
        socket.connect(server)?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let closed = || {
            anyhow!(
                "{}: UDP port {port} answers \"port unreachable\": the server has no UDP socket there, or a firewall rejects UDP",
                self.server()
            )
        };
        let mut hello = [0u8; HEADER_LEN];
        let mut answer = [0u8; HEADER_LEN];
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        loop {
            Header {
                kind: Kind::Hello,
                key,
                seq: 0,
                sent_ns: wire::realtime_ns(),
            }
            .write(&mut hello);
            match socket.send(&hello) {
                Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Err(closed());
                }
                Err(err) if !receive::quiet(&err) => {
                    bail!("{}: sending to UDP port {port}: {err}", self.server())
                }
                _ => {}
            }
            match socket.recv(&mut answer) {
                // Data counts as a Welcome (the server sends as soon as it has answered), and so
                // does a Hello of ours sent back (an echo server answers a lost Welcome's retry so).
                Ok(_) => {
                    if let Some(header) = Header::read(&answer)
                        && header.key == key
                    {
                        return Ok(key);
                    }
                }
                Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Err(closed());
                }
                Err(err) if receive::quiet(&err) => {}
                Err(err) => bail!("{}: receiving on UDP: {err}", self.server()),
            }
            match peek(control.stream().as_raw_fd()) {
                Peeked::Nothing => {}
                _ => {
                    let reply = self
                        .client
                        .block_on(self.client.reply(control, HANDSHAKE_TIMEOUT))?;
                    bail!("{}: unexpected answer {reply:?}", self.server());
                }
            }
            crate::interrupt::check()?;
            if Instant::now() > deadline {
                bail!(
                    "no UDP answer from {} port {port} in {} s (the TCP control connection works): a firewall may drop UDP to that port",
                    self.server(),
                    HANDSHAKE_TIMEOUT.as_secs()
                );
            }
        }
    }

    /// The server's figures at the end of a test.
    fn done(&self, control: &mut Connection) -> Result<UdpDone> {
        self.client.block_on(self.client.udp_done(control))
    }

    /// The server's word on why a test broke off, when it has one.
    fn explain(&self, control: &mut Connection, err: anyhow::Error) -> anyhow::Error {
        self.client.block_on(self.client.explain(control, err))
    }
}

/// What every UDP test says of its path: a server on this machine, and datagrams of `len`
/// bytes larger than the `unfragmented` ones the path MTU carries in one packet.
fn path_warnings(
    server: SocketAddr,
    len: usize,
    unfragmented: usize,
    mtu: Option<u32>,
) -> Vec<Warning> {
    let mut warnings: Vec<Warning> = super::loopback_warning(server).into_iter().collect();
    if let Some(mtu) = mtu.filter(|_| len > unfragmented) {
        warnings.push(Warning::FragmentedDatagrams {
            len,
            mtu,
            largest: unfragmented,
        });
    }
    warnings
}

/// The likely reasons a UDP test's datagrams all went missing, most likely first.
fn nothing_arrived_causes(len: usize, unfragmented: usize, mtu: Option<u32>) -> String {
    let mut causes = Vec::new();
    if len > unfragmented {
        causes.push(format!(
            "each {len}-byte datagram is larger than the {unfragmented} bytes the path MTU ({}) carries in \
             one packet, so it went in fragments, which firewalls and some links drop: leave -l out \
             (or give -l {unfragmented})",
            mtu.map_or("unknown".to_string(), |mtu| mtu.to_string())
        ));
    }
    causes.push(
        "a firewall or security group that passed the test's small opening datagrams but drops these \
         (check UDP to the server's port, both ways)"
            .to_string(),
    );
    causes.push(
        "a path MTU lower somewhere along the way than at this host (a tunnel or VPN)".to_string(),
    );
    format!("Likely causes: {}.", causes.join("; or "))
}

/// A UDP socket connected towards `server` (its port is set once the server names it), so the
/// kernel knows the route and its MTU, and takes datagrams from the server only.
fn socket_towards(server: SocketAddr, window: Option<usize>) -> Result<UdpSocket> {
    let any: SocketAddr = if server.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(any)?;
    socket.connect(server)?;
    if let Some(window) = window {
        set_window(&socket, window);
    }
    Ok(socket)
}

/// Asks for `window` bytes of send and receive buffer (the kernel may cap or double it).
pub fn set_window(socket: &UdpSocket, window: usize) {
    let size = window.min(i32::MAX as usize) as libc::c_int;
    set_socket_option(socket.as_raw_fd(), libc::SO_SNDBUF, size);
    set_socket_option(socket.as_raw_fd(), libc::SO_RCVBUF, size);
}

/// Warm-up then timed round trips of `plan.size`-byte datagrams on a connected socket; the
/// first bytes carry the round's number, so a late echo of a lost round is not taken for this
/// one's. Returns the figures and how many timed rounds got no echo.
fn echo_round_trips(
    socket: &UdpSocket,
    plan: &LatPlan,
    control: std::os::fd::RawFd,
) -> Result<(Latency, u64)> {
    let size = plan.size;
    let mut message = vec![0u8; size];
    crate::payload::RandomFill::new().fill(&mut message);
    let mut back = vec![0u8; size + 1];
    let mut missed_in_a_row = 0;
    // Set once: a setsockopt in each round would be timed with it.
    socket.set_read_timeout(Some(ECHO_TIMEOUT))?;
    let warmup = crate::transport::rdma::LATENCY_WARMUP;
    let (one_way, lost) = crate::measure::OneWay::time(warmup, plan.rounds, |round| {
        if round.is_multiple_of(64) {
            crate::interrupt::check()?;
            if peek(control) != Peeked::Nothing {
                bail!("the server stopped the test");
            }
        }
        let number = round.to_le_bytes();
        let marked = size.min(8);
        message[..marked].copy_from_slice(&number[..marked]);
        let refused = |err: &std::io::Error| err.kind() == std::io::ErrorKind::ConnectionRefused;
        let unreachable =
            || anyhow!("the server's UDP port answers \"port unreachable\": it stopped listening");
        let started = Instant::now();
        socket.send(&message).map_err(|err| match refused(&err) {
            true => unreachable(),
            false => anyhow!("sending a UDP message: {err}"),
        })?;
        let took = loop {
            match socket.recv(&mut back) {
                Ok(got) if got == size && back[..size] == message[..] => {
                    break Some(started.elapsed());
                }
                Err(err) if refused(&err) => return Err(unreachable()),
                // An echo of an earlier round, not ours, or the timeout: on until the round's
                // second is up.
                Ok(_) => {}
                Err(err) if receive::quiet(&err) => {}
                Err(err) => bail!("receiving a UDP echo: {err}"),
            }
            if started.elapsed() >= ECHO_TIMEOUT {
                break None;
            }
        };
        if took.is_some() {
            missed_in_a_row = 0;
            return Ok(took);
        }
        missed_in_a_row += 1;
        if missed_in_a_row >= ECHOES_MISSED {
            bail!(
                "{ECHOES_MISSED} UDP messages in a row got no echo within {} s: the server stopped answering, or the path drops UDP",
                ECHO_TIMEOUT.as_secs()
            );
        }
        Ok(None)
    })?;
    Ok((
        one_way.latency(format!(
            "{size}-byte UDP datagram and its echo; one way = half the round trip"
        )),
        lost,
    ))
}
