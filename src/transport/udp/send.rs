//! The sending end of a UDP test: numbered, timestamped datagrams, paced to `-b` or as fast as
//! the socket takes them, a batch per system call.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::Sent;
use super::wire::{self, BATCH, Batch, Header, Kind};
use crate::control::connection::{Peeked, peek};
use crate::interrupt;
use crate::measure::Interval;
use crate::transport::memory::{Role, Tick, TickStream};

/// How often the loop looks at Ctrl-C, the control connection and the interval clock.
const CHECK_EVERY: Duration = Duration::from_millis(50);
/// Longest a send may block on a full socket buffer before the loop checks again.
const SEND_TIMEOUT: Duration = Duration::from_millis(100);
/// End datagrams sent, so one lost does not leave the receiver waiting.
const ENDS: usize = 3;

/// What a sending loop sends, to whom, for how long.
pub struct Sending<'a> {
    pub socket: &'a UdpSocket,
    /// None: the socket's connected peer.
    pub to: Option<SocketAddr>,
    pub key: u64,
    pub len: usize,
    /// Bytes per second to hold to (`-b`); None: as fast as the socket takes them.
    pub rate: Option<f64>,
    pub omit: Duration,
    pub secs: Duration,
    pub every: Duration,
    /// The control connection to the receiver, watched for an error or its end.
    pub control: RawFd,
}

/// Sends for the omitted start and the counted time, then the End datagrams.
pub fn send(sending: &Sending, on_tick: &mut dyn FnMut(Tick)) -> Result<Sent> {
    let fd = sending.socket.as_raw_fd();
    sending.socket.set_write_timeout(Some(SEND_TIMEOUT))?;
    let mut batch = Batch::new(sending.len);
    let started = Instant::now();
    let end = sending.omit + sending.secs;
    // Everything sent, omitted start included: what the pace is held against.
    let mut all_sent: u64 = 0;
    let mut omitted_sent: u64 = 0;
    let mut counted_sent: u64 = 0;
    let mut counting_since: Option<Instant> = None;
    let mut last_send = started;
    let mut clock = Clock::new(sending.every);
    let mut last_check = started;
    loop {
        let elapsed = started.elapsed();
        if elapsed >= end {
            break;
        }
        let counting = elapsed >= sending.omit;
        if counting && counting_since.is_none() {
            let now = Instant::now();
            counting_since = Some(now);
            clock.restart(now, on_tick);
        }
        let due = match sending.rate {
            None => BATCH,
            Some(rate) => {
                let allowed = (rate * elapsed.as_secs_f64() / sending.len as f64) as u64;
                if allowed <= all_sent {
                    let next = (all_sent + 1) as f64 * sending.len as f64 / rate;
                    let wait = Duration::from_secs_f64(next).saturating_sub(elapsed);
                    std::thread::sleep(wait.min(CHECK_EVERY).min(end - elapsed));
                    0
                } else {
                    ((allowed - all_sent) as usize).min(BATCH)
                }
            }
        };
        if due > 0 {
            let (kind, first_seq) = if counting {
                (Kind::Data, counted_sent)
            } else {
                (Kind::Omitted, omitted_sent)
            };
            for i in 0..due {
                Header {
                    kind,
                    key: sending.key,
                    seq: first_seq + i as u64,
                    sent_ns: wire::realtime_ns(),
                }
                .write(batch.slot(i));
            }
            let sent = match batch.send(fd, due, sending.to) {
                Ok(sent) => sent as u64,
                Err(err) => match err.kind() {
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => 0,
                    // The device queue is full (ENOBUFS): a breath, then on.
                    _ if err.raw_os_error() == Some(libc::ENOBUFS) => {
                        std::thread::sleep(Duration::from_micros(50));
                        0
                    }
                    std::io::ErrorKind::ConnectionRefused => bail!(
                        "the receiver's UDP port answers \"port unreachable\": it stopped listening"
                    ),
                    _ => bail!("sending datagrams: {err}"),
                },
            };
            all_sent += sent;
            if counting {
                counted_sent += sent;
            } else {
                omitted_sent += sent;
            }
            clock.add(sent * sending.len as u64);
            if sent > 0 {
                last_send = Instant::now();
            }
        }
        if last_check.elapsed() >= CHECK_EVERY {
            last_check = Instant::now();
            interrupt::check()?;
            clock.observe(!counting, on_tick);
            match peek(sending.control) {
                Peeked::Closed => {
                    bail!("the peer closed the control connection (stopped or killed?)")
                }
                Peeked::Message => bail!("the peer stopped the test"),
                Peeked::Nothing => {}
            }
        }
    }
    let since = counting_since.unwrap_or(last_send);
    let intervals = clock.finish(counting_since.is_none(), on_tick);
    end_datagrams(sending, &mut batch, counted_sent)?;
    Ok(Sent {
        datagrams: counted_sent,
        bytes: counted_sent * sending.len as u64,
        secs: last_send.saturating_duration_since(since).as_secs_f64(),
        intervals,
    })
}

/// Tells the receiver the sender is done, and how many counted datagrams it sent.
fn end_datagrams(sending: &Sending, batch: &mut Batch, counted: u64) -> Result<()> {
    for i in 0..ENDS {
        Header {
            kind: Kind::End,
            key: sending.key,
            seq: counted,
            sent_ns: wire::realtime_ns(),
        }
        .write(batch.slot(i));
    }
    match batch.send(sending.socket.as_raw_fd(), ENDS, sending.to) {
        Ok(_) => Ok(()),
        // The receiver learns the end from the control connection too.
        Err(err) if super::receive::quiet(&err) => Ok(()),
        Err(err) => bail!("sending the end of the test: {err}"),
    }
}

/// Cuts what was sent into intervals, and shows each as it closes.
struct Clock {
    every: Duration,
    start: Instant,
    mark: Instant,
    bytes: u64,
    intervals: Vec<Interval>,
}

impl Clock {
    fn new(every: Duration) -> Clock {
        let now = Instant::now();
        Clock {
            every,
            start: now,
            mark: now,
            bytes: 0,
            intervals: Vec::new(),
        }
    }

    fn add(&mut self, bytes: u64) {
        self.bytes += bytes;
    }

    /// Closes an interval when one is due.
    fn observe(&mut self, omitted: bool, on_tick: &mut dyn FnMut(Tick)) {
        let now = Instant::now();
        if now.duration_since(self.mark) >= self.every {
            self.cut(now, omitted, on_tick);
        }
    }

    /// The omitted start ended: shows what it sent, and counts from `now`.
    fn restart(&mut self, now: Instant, on_tick: &mut dyn FnMut(Tick)) {
        if self.bytes > 0 {
            self.cut(now, true, on_tick);
        }
        self.intervals.clear();
        self.start = now;
        self.mark = now;
        self.bytes = 0;
    }

    fn finish(mut self, omitted: bool, on_tick: &mut dyn FnMut(Tick)) -> Vec<Interval> {
        let now = Instant::now();
        if self.bytes > 0 || self.intervals.is_empty() {
            self.cut(now, omitted, on_tick);
        }
        if omitted { Vec::new() } else { self.intervals }
    }

    fn cut(&mut self, now: Instant, omitted: bool, on_tick: &mut dyn FnMut(Tick)) {
        let interval = Interval {
            start_secs: self.mark.duration_since(self.start).as_secs_f64(),
            secs: now.duration_since(self.mark).as_secs_f64(),
            bytes: self.bytes,
        };
        on_tick(Tick {
            start_secs: interval.start_secs,
            secs: interval.secs,
            omitted,
            streams: vec![TickStream {
                role: Role::Send,
                bytes: interval.bytes,
                retransmits: None,
                cwnd_bytes: None,
            }],
        });
        self.intervals.push(interval);
        self.mark = now;
        self.bytes = 0;
    }
}
