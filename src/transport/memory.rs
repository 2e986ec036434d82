//! Memory to memory: random bytes written as fast as a stream takes them, counted and thrown
//! away on arrival, sampled every interval like iperf3.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use tokio::time::Instant;

pub use crate::control::Flow;
use crate::measure::{Counter, Interval, set_socket_option, tcp_facts};
pub use crate::measure::{Role, Tick, TickStream};
use crate::payload::RandomFill;

/// One buffer of random bytes, made once and written over and over: incompressible, and cheap.
pub fn payload(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    RandomFill::new().fill(&mut bytes);
    bytes
}

/// How often a blocked read or write on a data stream wakes up (SO_RCVTIMEO/SO_SNDTIMEO) to
/// look at the clock and at Ctrl-C: a test ends within a fraction of a second of either.
pub const WAKE: Duration = Duration::from_millis(200);

/// How long a data stream may move no byte before its peer counts as gone (stopped, frozen or
/// cut off): longer than the retransmission backoff of a path that still carries data.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long after the test's end receivers wait for their senders to close (bytes still in
/// flight drain); past it they stop reading.
pub const END_GRACE: Duration = Duration::from_secs(5);

/// How long after a stop (Ctrl-C here, or the client's request) receivers wait for the peer to
/// close its side, so both ends still count the same bytes.
pub const STOP_GRACE: Duration = Duration::from_millis(700);

/// What ends the loops of one test's streams besides their own data: the clock, a stop, and a
/// peer that stopped moving bytes. Shared by every stream of one test.
#[derive(Debug)]
pub struct Ending {
    /// Senders stop when the test's time is up.
    until: std::time::Instant,
    /// When the test was stopped early; senders stop at once, receivers after [`STOP_GRACE`].
    stopped: std::sync::OnceLock<std::time::Instant>,
    /// No byte moved for this long: the stream fails with a sentence.
    stall: Duration,
    /// The peer, as error messages name it.
    peer: String,
}

impl Ending {
    pub fn new(until: std::time::Instant, stall: Duration, peer: impl Into<String>) -> Ending {
        Ending {
            until,
            stopped: std::sync::OnceLock::new(),
            stall,
            peer: peer.into(),
        }
    }

    /// Ends the test early: senders stop, receivers wait a short grace for the peer's close.
    pub fn stop(&self) {
        let _ = self.stopped.set(std::time::Instant::now());
    }

    /// Whether the test was stopped early (Ctrl-C in this process counts).
    pub fn stopped(&self) -> bool {
        if crate::interrupt::requested() {
            self.stop();
        }
        self.stopped.get().is_some()
    }

    fn senders_done(&self) -> bool {
        self.stopped() || std::time::Instant::now() >= self.until
    }

    fn receivers_done(&self) -> bool {
        let deadline = match self.stopped() {
            true => *self.stopped.get().expect("set by stopped()") + STOP_GRACE,
            false => self.until + END_GRACE,
        };
        std::time::Instant::now() >= deadline
    }

    fn stalled(&self, sending: bool) -> io::Error {
        let (way, who) = match sending {
            true => ("to", "it stopped reading, or the network drops everything"),
            false => (
                "from",
                "it stopped sending, or the network drops everything",
            ),
        };
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "no data for {} s {way} {}: the path stopped carrying data ({who})",
                self.stall.as_secs(),
                self.peer
            ),
        )
    }
}

/// A read or write that returned because its SO_RCVTIMEO/SO_SNDTIMEO ran out, or a signal came.
fn woke(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Tells a stream that stopped moving bytes from one that moves: the first wake after progress
/// starts the clock, so a stall is measured to within [`WAKE`].
struct Stall {
    moved: bool,
    since: std::time::Instant,
}

impl Stall {
    fn new() -> Stall {
        Stall {
            moved: true,
            since: std::time::Instant::now(),
        }
    }

    /// After a wake with nothing moved: whether nothing moved for `limit`.
    fn over(&mut self, limit: Duration) -> bool {
        if std::mem::take(&mut self.moved) {
            self.since = std::time::Instant::now();
            return false;
        }
        self.since.elapsed() >= limit
    }
}

/// Writes `payload` over and over until the test's time is up or it is stopped; the caller then
/// closes the sending half so the receiver sees the end. Blocking I/O on a thread per stream: no
/// reactor round trips or cross-thread wakeups between writes, which is what lets one stream
/// keep up with iperf3. The socket must wake a blocked write (SO_SNDTIMEO, see [`WAKE`]).
/// Errors: the peer took nothing for the stall time (a sentence naming it), or the socket's own.
pub fn source<W: Write + ?Sized>(
    stream: &mut W,
    payload: &[u8],
    ending: &Ending,
    counter: &Counter,
) -> io::Result<()> {
    let mut at = 0;
    sending(ending, counter, || {
        let n = stream.write(&payload[at..])?;
        // A write cut short by the timeout goes on where it stopped.
        at = (at + n) % payload.len();
        Ok(n)
    })?;
    stream.flush()
}

/// [`source`] by sendfile(2) from `file`, which holds the payload (`len` bytes, in a memfd):
/// the socket takes the file's pages without a copy from this process's memory, as iperf3's
/// -Z does. Same stop, stall and error rules as [`source`].
pub fn source_sendfile(
    stream: &TcpStream,
    file: &std::fs::File,
    len: usize,
    ending: &Ending,
    counter: &Counter,
) -> io::Result<()> {
    use std::os::fd::AsFd;
    let mut at = 0u64;
    sending(ending, counter, || {
        let left = len - at as usize;
        let n = crate::sys::fs::sendfile(stream.as_fd(), file, &mut at, left)?;
        if at as usize == len {
            at = 0;
        }
        Ok(n)
    })
}

/// The loop of both sources: `send` once, count what went, until the test's time is up or it
/// is stopped. Errors: nothing went for the stall time, a send of 0 bytes, or `send`'s own.
fn sending(
    ending: &Ending,
    counter: &Counter,
    mut send: impl FnMut() -> io::Result<usize>,
) -> io::Result<()> {
    let mut stall = Stall::new();
    while !ending.senders_done() {
        match send() {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                counter.add(n as u64);
                stall.moved = true;
            }
            Err(err) if woke(&err) => {
                if stall.over(ending.stall) {
                    return Err(ending.stalled(true));
                }
            }
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// The payload in a memfd, for [`source_sendfile`].
fn payload_file(payload: &[u8]) -> io::Result<std::fs::File> {
    let mut file = crate::sys::fs::memfd("xferbench-payload")?;
    file.write_all(payload)?;
    Ok(file)
}

/// Least bytes a sink asks for per read: large enough to keep syscalls few, small enough that the
/// buffer stays in the CPU cache (1 MiB reads measured ~10 % slower on loopback than 128 KiB).
const SINK_READ: usize = 128 << 10;

/// Reads between two looks at the clock while bytes flow.
const READS_PER_CLOCK: u32 = 64;

/// Reads and discards until the sender closes, or until the test's end plus [`END_GRACE`] (a
/// stop plus [`STOP_GRACE`]). The socket must wake a blocked read (SO_RCVTIMEO, see [`WAKE`]).
/// Errors: nothing arrived for the stall time (a sentence naming the peer), or the socket's own.
pub fn sink<R: Read + ?Sized>(
    stream: &mut R,
    len: usize,
    ending: &Ending,
    counter: &Counter,
) -> io::Result<()> {
    let mut buf = vec![0u8; len.max(SINK_READ)];
    let mut stall = Stall::new();
    let mut reads = 0u32;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                counter.add(n as u64);
                stall.moved = true;
                reads = reads.wrapping_add(1);
                if reads.is_multiple_of(READS_PER_CLOCK) && ending.receivers_done() {
                    return Ok(());
                }
            }
            Err(err) if woke(&err) => {
                if ending.receivers_done() {
                    return Ok(());
                }
                if stall.over(ending.stall) {
                    return Err(ending.stalled(false));
                }
            }
            Err(err) => return Err(err),
        }
    }
}

/// One stream a sampler watches.
#[derive(Debug, Clone)]
pub struct Tracked {
    pub counter: Counter,
    pub role: Role,
    /// The socket, for TCP_INFO; None where the path has no TCP socket of its own.
    pub fd: Option<RawFd>,
}

/// Cuts the streams' running counts into intervals; the omitted start is cut apart from the rest.
pub struct Sampler {
    tracked: Vec<Tracked>,
    start: Instant,
    omit_end: Instant,
    every: Duration,
    mark: Instant,
    mark_bytes: Vec<u64>,
    mark_retransmits: Vec<u64>,
    /// Counts at the end of the omitted start.
    base_bytes: Vec<u64>,
    base_retransmits: Vec<u64>,
    intervals: Vec<Vec<Interval>>,
}

impl Sampler {
    pub fn start(
        tracked: Vec<Tracked>,
        start: Instant,
        omit: Duration,
        every: Duration,
    ) -> Sampler {
        let n = tracked.len();
        let retransmits = retransmits_now(&tracked);
        Sampler {
            start,
            omit_end: start + omit,
            every,
            mark: start,
            mark_bytes: vec![0; n],
            mark_retransmits: retransmits.clone(),
            base_bytes: vec![0; n],
            base_retransmits: retransmits,
            intervals: vec![Vec::new(); n],
            tracked,
        }
    }

    /// When the next interval ends: every `every`, with an extra cut at the end of the omitted start.
    pub fn next_cut(&self) -> Instant {
        let next = self.mark + self.every;
        if self.mark < self.omit_end && next > self.omit_end {
            self.omit_end
        } else {
            next
        }
    }

    /// Closes the interval ending `now`.
    pub fn cut(&mut self, now: Instant) -> Tick {
        let omitted = self.mark < self.omit_end;
        let bytes: Vec<u64> = self.tracked.iter().map(|t| t.counter.get()).collect();
        let retransmits = retransmits_now(&self.tracked);
        let origin = if omitted { self.start } else { self.omit_end };
        let start_secs = self.mark.saturating_duration_since(origin).as_secs_f64();
        let secs = now.saturating_duration_since(self.mark).as_secs_f64();
        let streams = self
            .tracked
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let sender = t.role == Role::Send && t.fd.is_some();
                TickStream {
                    role: t.role,
                    bytes: bytes[i] - self.mark_bytes[i],
                    retransmits: sender
                        .then(|| retransmits[i].saturating_sub(self.mark_retransmits[i])),
                    cwnd_bytes: if sender {
                        t.fd.and_then(tcp_facts).map(|f| f.cwnd_bytes)
                    } else {
                        None
                    },
                }
            })
            .collect::<Vec<_>>();
        if omitted {
            if now >= self.omit_end {
                self.base_bytes = bytes.clone();
                self.base_retransmits = retransmits.clone();
            }
        } else {
            for (i, stream) in streams.iter().enumerate() {
                self.intervals[i].push(Interval {
                    start_secs,
                    secs,
                    bytes: stream.bytes,
                });
            }
        }
        self.mark = now;
        self.mark_bytes = bytes;
        self.mark_retransmits = retransmits;
        Tick {
            start_secs,
            secs,
            omitted,
            streams,
        }
    }

    /// Closes the last interval at `end` (when the last stream finished), if it holds anything.
    pub fn finish(&mut self, end: Instant) -> Option<Tick> {
        let pending = self
            .tracked
            .iter()
            .enumerate()
            .any(|(i, t)| t.counter.get() > self.mark_bytes[i]);
        (pending || self.intervals.iter().all(Vec::is_empty)).then(|| self.cut(end))
    }

    /// The flow of the streams with `role`, counted from the end of the omitted start to `end`.
    pub fn flow(&self, role: Role, end: Instant) -> Flow {
        let retransmits = retransmits_now(&self.tracked);
        let mut flow = Flow {
            secs: end.saturating_duration_since(self.omit_end).as_secs_f64(),
            ..Flow::default()
        };
        for (i, t) in self.tracked.iter().enumerate() {
            if t.role != role {
                continue;
            }
            flow.stream_bytes
                .push(t.counter.get().saturating_sub(self.base_bytes[i]));
            flow.stream_retransmits.push(
                (role == Role::Send && t.fd.is_some())
                    .then(|| retransmits[i].saturating_sub(self.base_retransmits[i])),
            );
            flow.stream_intervals.push(self.intervals[i].clone());
            flow.stream_omitted_bytes.push(self.base_bytes[i]);
        }
        flow
    }
}

fn retransmits_now(tracked: &[Tracked]) -> Vec<u64> {
    tracked
        .iter()
        .map(|t| t.fd.and_then(tcp_facts).map_or(0, |f| f.retransmits))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receiver_aligned_to_its_sender_never_counts_more_than_was_sent() {
        let interval = |bytes| Interval {
            start_secs: 0.0,
            secs: 1.0,
            bytes,
        };
        let sender = Flow {
            stream_bytes: vec![1000],
            stream_omitted_bytes: vec![500],
            ..Flow::default()
        };
        // 100 bytes sent during the omitted start arrived after the receiver's cut.
        let mut receiver = Flow {
            stream_bytes: vec![1080],
            stream_omitted_bytes: vec![400],
            stream_intervals: vec![vec![interval(60), interval(1020)]],
            ..Flow::default()
        };
        receiver.align_to_sender(&sender);
        assert_eq!(receiver.stream_bytes, vec![980]);
        let sum: u64 = receiver.stream_intervals[0].iter().map(|i| i.bytes).sum();
        assert_eq!(sum, 980);
        assert_eq!(receiver.stream_intervals[0][0].bytes, 0);
    }

    #[test]
    fn a_sink_counts_every_byte_a_source_sends() {
        let (mut client, mut server) = std::os::unix::net::UnixStream::pair().unwrap();
        let sent = Counter::new();
        let received = Counter::new();
        let until = std::time::Instant::now() + Duration::from_millis(50);
        let ending = std::sync::Arc::new(Ending::new(until, STALL_TIMEOUT, "the test's peer"));
        let receiver = {
            let (received, ending) = (received.clone(), ending.clone());
            std::thread::spawn(move || sink(&mut server, 8192, &ending, &received))
        };
        let data = payload(8192);
        source(&mut client, &data, &ending, &sent).unwrap();
        drop(client);
        receiver.join().unwrap().unwrap();
        assert!(sent.get() > 0);
        assert_eq!(sent.get(), received.get());
    }

    #[test]
    fn a_sendfile_source_sends_its_payload_over_and_over_byte_for_byte() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        // An odd length: every round ends mid-page and the next starts at the file's start.
        let data = payload(10_007);
        let file = payload_file(&data).unwrap();
        let sent = Counter::new();
        let until = std::time::Instant::now() + Duration::from_millis(50);
        let ending = Ending::new(until, STALL_TIMEOUT, "the test's peer");
        let receiver = std::thread::spawn(move || {
            let mut got = Vec::new();
            server.read_to_end(&mut got).map(|_| got)
        });
        source_sendfile(&client, &file, data.len(), &ending, &sent).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let got = receiver.join().unwrap().unwrap();
        assert_eq!(got.len() as u64, sent.get());
        assert!(
            got.len() > 3 * data.len(),
            "only {} bytes in 50 ms",
            got.len()
        );
        for (i, chunk) in got.chunks(data.len()).enumerate() {
            assert_eq!(chunk, &data[..chunk.len()], "round {i} differs");
        }
    }

    /// A socket pair whose blocked calls wake every 50 ms, like the data streams' do.
    fn waking_pair() -> (
        std::os::unix::net::UnixStream,
        std::os::unix::net::UnixStream,
    ) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        for end in [&a, &b] {
            end.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            end.set_write_timeout(Some(Duration::from_millis(50)))
                .unwrap();
        }
        (a, b)
    }

    fn far_future() -> std::time::Instant {
        std::time::Instant::now() + Duration::from_secs(3600)
    }

    #[test]
    fn a_sink_whose_sender_goes_quiet_fails_with_a_sentence_naming_the_peer() {
        let (_quiet_sender, mut receiving) = waking_pair();
        let ending = Ending::new(far_future(), Duration::from_secs(1), "10.0.0.2:5301");
        let err = sink(&mut receiving, 8192, &ending, &Counter::new()).unwrap_err();
        let said = err.to_string();
        assert!(
            said.contains("no data for 1 s from 10.0.0.2:5301")
                && said.contains("the path stopped carrying data"),
            "{said}"
        );
        assert!(err.raw_os_error().is_none(), "{err:?}");
    }

    #[test]
    fn a_source_whose_receiver_stops_reading_fails_with_a_sentence_not_eagain() {
        let (mut sending, _not_reading) = waking_pair();
        let ending = Ending::new(far_future(), Duration::from_secs(1), "10.0.0.2:5301");
        let sent = Counter::new();
        let err = source(&mut sending, &payload(1 << 16), &ending, &sent).unwrap_err();
        let said = err.to_string();
        assert!(
            said.contains("no data for 1 s to 10.0.0.2:5301") && !said.contains("os error"),
            "{said}"
        );
        assert!(sent.get() > 0, "the socket buffer took nothing");
    }

    #[test]
    fn a_stop_ends_a_blocked_source_within_a_wake_and_without_error() {
        let (mut sending, _not_reading) = waking_pair();
        let ending = std::sync::Arc::new(Ending::new(far_future(), STALL_TIMEOUT, "peer"));
        let stopper = {
            let ending = ending.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                ending.stop();
            })
        };
        let started = std::time::Instant::now();
        source(&mut sending, &payload(1 << 16), &ending, &Counter::new()).unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        stopper.join().unwrap();
    }

    #[test]
    fn the_payload_is_not_zeros() {
        let data = payload(1 << 16);
        assert!(data.iter().filter(|&&b| b == 0).count() < 1024);
    }

    #[tokio::test(start_paused = true)]
    async fn the_omitted_start_is_shown_but_not_counted() {
        let counter = Counter::new();
        let tracked = vec![Tracked {
            counter: counter.clone(),
            role: Role::Receive,
            fd: None,
        }];
        let start = Instant::now();
        let mut sampler = Sampler::start(
            tracked,
            start,
            Duration::from_millis(1500),
            Duration::from_secs(1),
        );
        let mut ticks = Vec::new();
        for _ in 0..4 {
            let at = sampler.next_cut();
            tokio::time::sleep_until(at).await;
            counter.add(100);
            ticks.push(sampler.cut(at));
        }
        let omitted: Vec<bool> = ticks.iter().map(|t| t.omitted).collect();
        assert_eq!(omitted, vec![true, true, false, false]);
        assert_eq!(ticks[1].secs, 0.5);
        let flow = sampler.flow(Role::Receive, start + Duration::from_millis(3500));
        assert_eq!(flow.stream_bytes, vec![200]);
        assert_eq!(flow.stream_omitted_bytes, vec![200]);
        assert_eq!(flow.secs, 2.0);
        assert_eq!(flow.stream_intervals[0].len(), 2);
    }
}

/// The timing of a memory-to-memory test, the same on both ends.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub start: Instant,
    pub omit: Duration,
    /// Counted time after the omitted start.
    pub secs: Duration,
    pub every: Duration,
    /// Bytes per write and per read.
    pub len: usize,
    /// How long a stream may move nothing before its peer counts as gone.
    pub stall: Duration,
    /// Send with sendfile(2) from a memfd holding the payload ([`source_sendfile`], iperf3's -Z).
    pub zerocopy: bool,
}

/// What one end of a memory-to-memory test saw.
#[derive(Debug, Clone)]
pub struct Exchanged {
    pub sent: Flow,
    pub received: Flow,
    /// Stopped before its time was up (Ctrl-C, or the peer asked): the figures are partial.
    pub stopped: bool,
    /// How long before its end no stream moved a byte (to an interval): a path gone dark.
    pub quiet: Duration,
}

/// Bytes a receiving socket gathers before it wakes its reader (SO_RCVLOWAT). Each wakeup of a
/// sleeping reader costs an inter-processor interrupt, dear in a VM; gathering 256 KiB first
/// measured +35 % at -P 1 and +20 % at -P 4 between namespaces, and at 1 GbE it is 2 ms.
const RECEIVE_LOW_WATER: libc::c_int = 256 << 10;

/// Stops every stream of a test when the test is dropped half-way (its session aborted), so no
/// thread outlives it by more than a wake.
struct StopOnDrop(std::sync::Arc<Ending>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Runs sources on the `Send` streams and sinks on the `Receive` streams, a thread each, until
/// the senders' time is up and every receiver saw its stream close; `on_tick` gets every
/// interval of the test's time (none after it). `stop` resolving ends the test early, as
/// Ctrl-C does: the figures so far come back, marked `stopped`.
/// Errors: a stream that failed or stalled ([`Timing::stall`]), named with `peer`.
pub async fn exchange(
    streams: Vec<(TcpStream, Role)>,
    timing: Timing,
    peer: &str,
    mut on_tick: impl FnMut(&Tick),
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Exchanged> {
    use anyhow::{Context, anyhow};
    let test_end = timing.start + timing.omit + timing.secs;
    let ending = std::sync::Arc::new(Ending::new(test_end.into_std(), timing.stall, peer));
    let _stop_on_drop = StopOnDrop(ending.clone());
    let payload: std::sync::Arc<[u8]> = payload(timing.len).into();
    let sends = streams.iter().any(|(_, role)| *role == Role::Send);
    let file = match timing.zerocopy && sends {
        true => Some(std::sync::Arc::new(
            payload_file(&payload).context("making the in-memory file for -Z (memfd_create)")?,
        )),
        false => None,
    };
    let mut tracked = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (mut stream, role) in streams {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(WAKE))?;
        stream.set_write_timeout(Some(WAKE))?;
        if role == Role::Receive {
            set_socket_option(stream.as_raw_fd(), libc::SO_RCVLOWAT, RECEIVE_LOW_WATER);
        }
        let counter = Counter::new();
        tracked.push(Tracked {
            counter: counter.clone(),
            role,
            fd: Some(stream.as_raw_fd()),
        });
        let (payload, len, ending) = (payload.clone(), timing.len, ending.clone());
        let file = file.clone();
        tasks.spawn_blocking(move || {
            let moved = match (role, file) {
                (Role::Send, Some(file)) => source_sendfile(&stream, &file, len, &ending, &counter)
                    .and_then(|()| stream.shutdown(Shutdown::Write)),
                (Role::Send, None) => source(&mut stream, &payload, &ending, &counter)
                    .and_then(|()| stream.shutdown(Shutdown::Write)),
                (Role::Receive, _) => sink(&mut stream, len, &ending, &counter),
            };
            // The stream is handed back, not dropped, so its socket stays open for TCP_INFO.
            (role, Instant::now(), moved.map(|()| stream))
        });
    }
    let mut sampler = Sampler::start(tracked, timing.start, timing.omit, timing.every);
    let (mut send_end, mut receive_end) = (timing.start, timing.start);
    let mut finished = Vec::new();
    tokio::pin!(stop);
    let mut stop_pending = true;
    let mut last_moved = timing.start;
    loop {
        let cut = sampler.next_cut();
        tokio::select! {
            _ = tokio::time::sleep_until(cut), if cut <= test_end && !ending.stopped() => {
                let tick = sampler.cut(cut);
                if tick.streams.iter().any(|s| s.bytes > 0) {
                    last_moved = cut;
                }
                on_tick(&tick);
            }
            ended = tasks.join_next() => match ended {
                None => break,
                Some(ended) => {
                    let (role, at, moved) = ended.map_err(|err| anyhow!("a stream failed: {err}"))?;
                    let stream = moved.with_context(|| match role {
                        Role::Send => "sending on a data stream",
                        Role::Receive => "receiving on a data stream",
                    })?;
                    match role {
                        Role::Send => send_end = send_end.max(at),
                        Role::Receive => receive_end = receive_end.max(at),
                    }
                    finished.push(stream);
                }
            },
            _ = &mut stop, if stop_pending => {
                stop_pending = false;
                ending.stop();
            }
            // Wakes the loop so that no interval is cut after Ctrl-C; the threads see it too.
            _ = crate::interrupt::wait(), if !ending.stopped() => {}
        }
    }
    let end = send_end.max(receive_end);
    if let Some(last) = sampler.finish(end) {
        if last.streams.iter().any(|s| s.bytes > 0) {
            last_moved = end;
        }
        on_tick(&last);
    }
    let exchanged = Exchanged {
        sent: sampler.flow(Role::Send, send_end),
        received: sampler.flow(Role::Receive, receive_end),
        stopped: ending.stopped(),
        quiet: end.saturating_duration_since(last_moved),
    };
    drop(finished);
    Ok(exchanged)
}
