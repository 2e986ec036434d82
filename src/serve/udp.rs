//! The server's half of the UDP path: one UDP socket on the number of serve's TCP port, lent to
//! one UDP test at a time (a benchmark wants the port, and the machine, to itself).

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};

use super::Shared;
use crate::control::connection::{Peeked, peek};
use crate::control::{Connection, EchoRequest, Reply, Request, UdpDone, UdpNetRequest};
use crate::measure::CpuClock;
use crate::transport::Direction;
use crate::transport::udp::wire::{self, HEADER_LEN, Header, Kind, MAX_LEN};
use crate::transport::udp::{receive, send, set_window};

/// Longest UDP test a client may ask for.
const MAX_SECS: f64 = 24.0 * 3600.0;
/// How long the client has to say Hello on UDP once told the key.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a waiting loop looks at the control connection.
const CHECK_EVERY: Duration = Duration::from_millis(50);
/// How long a receiver goes on past the test's length before it stops by itself.
const RECEIVE_MARGIN: Duration = Duration::from_secs(10);
/// How long the client's Finished may take after its last datagram.
const FINISHED_TIMEOUT: Duration = Duration::from_secs(10);

/// serve's UDP socket, or why there is none.
pub(crate) struct UdpPort {
    socket: Arc<Mutex<Option<UdpSocket>>>,
    unavailable: Option<String>,
}

impl UdpPort {
    /// Binds UDP on `addr` (serve's TCP address and port). A failure is kept, to be told to
    /// `--via udp` clients, so the other paths still serve.
    pub fn bind(addr: SocketAddr) -> UdpPort {
        match UdpSocket::bind(addr) {
            Ok(socket) => UdpPort {
                socket: Arc::new(Mutex::new(Some(socket))),
                unavailable: None,
            },
            Err(err) => UdpPort {
                socket: Arc::new(Mutex::new(None)),
                unavailable: Some(format!(
                    "this server could not open UDP port {addr}: {err}; restart it with --listen on a port free for both TCP and UDP"
                )),
            },
        }
    }

    /// Why there is no UDP socket, if there is none.
    pub fn unavailable(&self) -> Option<&str> {
        self.unavailable.as_deref()
    }

    /// The socket, for one test; returned when the lease drops.
    fn lease(&self) -> Result<Lease> {
        if let Some(reason) = &self.unavailable {
            bail!("{reason}");
        }
        let socket = self
            .socket
            .lock()
            .expect("udp port lock")
            .take()
            .ok_or_else(|| {
                anyhow!(
                    "busy: another UDP test is using this server's UDP port; try again when it ends"
                )
            })?;
        Ok(Lease {
            socket: Some(socket),
            home: self.socket.clone(),
        })
    }
}

/// serve's UDP socket, lent to one test.
struct Lease {
    socket: Option<UdpSocket>,
    home: Arc<Mutex<Option<UdpSocket>>>,
}

impl Lease {
    fn socket(&self) -> &UdpSocket {
        self.socket.as_ref().expect("leased socket")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(socket) = self.socket.take() {
            *self.home.lock().expect("udp port lock") = Some(socket);
        }
    }
}

/// Memory to memory over UDP: receives the client's datagrams (upload) or sends to it.
pub(super) async fn net(
    shared: &Shared,
    control: &mut Connection,
    request: UdpNetRequest,
) -> Result<Reply> {
    let len = request.len as usize;
    if !(HEADER_LEN..=MAX_LEN).contains(&len) {
        bail!("a datagram of {len} bytes is out of range ({HEADER_LEN} to {MAX_LEN})");
    }
    let times_fit = request.secs > 0.0
        && request.secs <= MAX_SECS
        && (0.0..request.secs).contains(&request.omit_secs)
        && request.interval_secs > 0.0;
    if !times_fit {
        bail!("the test's times are out of range");
    }
    if request
        .rate
        .is_some_and(|rate| !(rate > 0.0 && rate.is_finite()))
    {
        bail!("the sending rate must be above 0");
    }
    let (lease, key, fd) = ready(shared, control, request.window).await?;
    let cpu = CpuClock::start();
    let secs = Duration::from_secs_f64(request.secs);
    let omit = Duration::from_secs_f64(request.omit_secs);
    let every = Duration::from_secs_f64(request.interval_secs);
    let done = tokio::task::spawn_blocking(move || -> Result<UdpDone> {
        let socket = lease.socket();
        let mut foreign = 0;
        let client = wait_for_hello(socket, key, fd, &mut foreign)?;
        match request.direction {
            Direction::Upload => {
                let listening = receive::Listening {
                    socket,
                    key,
                    from: Some(client),
                    len,
                    every,
                    control: fd,
                    limit: secs + RECEIVE_MARGIN,
                };
                let (received, _) = receive::receive(&listening, &mut foreign, &mut |_| {})?;
                Ok(UdpDone {
                    received: Some(received),
                    sent: None,
                    foreign,
                    cpu: Default::default(),
                })
            }
            Direction::Download => {
                let sending = send::Sending {
                    socket,
                    to: Some(client),
                    key,
                    len,
                    rate: request.rate,
                    omit,
                    secs: secs - omit,
                    every,
                    control: fd,
                };
                let sent = send::send(&sending, &mut |_| {})?;
                Ok(UdpDone {
                    received: None,
                    sent: Some(sent),
                    foreign,
                    cpu: Default::default(),
                })
            }
        }
    })
    .await
    .map_err(|err| anyhow!("the UDP test failed: {err}"))??;
    if request.direction == Direction::Upload {
        finished(control).await?;
    }
    Ok(Reply::UdpDone(UdpDone {
        cpu: cpu.finish(),
        ..done
    }))
}

/// UDP round trips: sends every datagram from the client back, until it says Finished.
pub(super) async fn echo(
    shared: &Shared,
    control: &mut Connection,
    request: EchoRequest,
) -> Result<Reply> {
    if request.size == 0 || request.size as usize > MAX_LEN {
        bail!(
            "a UDP message of {} bytes is out of range (1 to {MAX_LEN})",
            request.size
        );
    }
    let (lease, key, fd) = ready(shared, control, None).await?;
    let cpu = CpuClock::start();
    let idle_timeout = shared.idle_timeout;
    let foreign = tokio::task::spawn_blocking(move || -> Result<u64> {
        let socket = lease.socket();
        let mut foreign = 0;
        let client = wait_for_hello(socket, key, fd, &mut foreign)?;
        socket.set_read_timeout(Some(CHECK_EVERY))?;
        let mut message = vec![0u8; MAX_LEN];
        let mut last_check = Instant::now();
        // A client that stopped or froze keeps its control connection open: its silence ends it.
        let mut last_heard = Instant::now();
        loop {
            match socket.recv_from(&mut message) {
                Ok((got, from)) if wire::same_peer(from, client) => {
                    last_heard = Instant::now();
                    socket.send_to(&message[..got], client)?;
                }
                Ok(_) => foreign += 1,
                Err(err) if receive::quiet(&err) => {}
                Err(err) => return Err(err.into()),
            }
            if last_check.elapsed() >= CHECK_EVERY {
                last_check = Instant::now();
                crate::interrupt::check()?;
                if last_heard.elapsed() > idle_timeout {
                    bail!(
                        "no datagram from the client for {} s: it stopped, or the path stopped carrying data",
                        idle_timeout.as_secs()
                    );
                }
                match peek(fd) {
                    Peeked::Nothing => {}
                    Peeked::Message => return Ok(foreign),
                    Peeked::Closed => {
                        bail!("the client closed the control connection (stopped or killed?)")
                    }
                }
            }
        }
    })
    .await
    .map_err(|err| anyhow!("the UDP echo failed: {err}"))??;
    finished(control).await?;
    Ok(Reply::UdpDone(UdpDone {
        received: None,
        sent: None,
        foreign,
        cpu: cpu.finish(),
    }))
}

/// Takes the UDP socket, tunes it, empties it, and tells the client the port and the session's
/// key. Returns the lease, the key and the control connection's descriptor.
async fn ready(
    shared: &Shared,
    control: &mut Connection,
    window: Option<u32>,
) -> Result<(Lease, u64, RawFd)> {
    let lease = shared.udp.lease()?;
    let socket = lease.socket();
    // serve's default buffers, unless this test asks for others.
    set_window(socket, window.map_or(DEFAULT_WINDOW, |w| w as usize));
    // Left from before this test: not this test's foreign datagrams, but worth a line.
    let stale = drain_stale(socket)?;
    if stale > 0 {
        (shared.log)(&format!(
            "dropped {stale} datagrams that reached the UDP port between tests"
        ));
    }
    let key = rand::random::<u64>();
    control
        .write(&Reply::UdpReady {
            port: shared.port,
            key,
        })
        .await?;
    Ok((lease, key, control.stream().as_raw_fd()))
}

/// The socket buffers serve's UDP socket has between tests and by default.
const DEFAULT_WINDOW: usize = 4 << 20;

/// Drops what reached the port between tests; it is nobody's of this test.
fn drain_stale(socket: &UdpSocket) -> Result<u64> {
    socket.set_nonblocking(true)?;
    let mut buf = [0u8; 64];
    let mut stale = 0;
    while socket.recv_from(&mut buf).is_ok() {
        stale += 1;
    }
    socket.set_nonblocking(false)?;
    Ok(stale)
}

/// Waits for the client's Hello with `key`, answers it, and returns where it came from.
fn wait_for_hello(
    socket: &UdpSocket,
    key: u64,
    control: RawFd,
    foreign: &mut u64,
) -> Result<SocketAddr> {
    socket.set_read_timeout(Some(CHECK_EVERY))?;
    let mut buf = [0u8; HEADER_LEN];
    let started = Instant::now();
    loop {
        match socket.recv_from(&mut buf) {
            Ok((_, from)) => match Header::read(&buf) {
                Some(header) if header.key == key && header.kind == Kind::Hello => {
                    receive::welcome(socket, key, from)?;
                    return Ok(from);
                }
                _ => *foreign += 1,
            },
            Err(err) if receive::quiet(&err) => {}
            Err(err) => return Err(err.into()),
        }
        crate::interrupt::check()?;
        if peek(control) == Peeked::Closed {
            bail!("the client closed the control connection before saying hello on UDP");
        }
        if started.elapsed() > HELLO_TIMEOUT {
            bail!(
                "no hello from the client on UDP in {} s: a firewall between may drop UDP",
                HELLO_TIMEOUT.as_secs()
            );
        }
    }
}

/// Reads the client's Finished: it has stopped sending, or measuring.
async fn finished(control: &mut Connection) -> Result<()> {
    match control.read::<Request>(FINISHED_TIMEOUT).await {
        Ok(Request::Finished) => Ok(()),
        Ok(other) => bail!("expected the client's Finished, got {other:?}"),
        Err(err) => bail!("waiting for the client's Finished: {err}"),
    }
}
