//! The sending end of a UDP test: numbered, timestamped datagrams, paced to `-b` or as fast as
//! the socket takes them, a batch per system call.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::DatagramsSent;
use super::wire::{self, BATCH, Batch, Header, Kind};
use crate::control::connection::{Peeked, peek};
use crate::interrupt;
use crate::measure::{Interval, IntervalClock};
use crate::transport::memory::{Role, Tick};

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
pub fn send(sending: &Sending, on_tick: &mut dyn FnMut(Tick)) -> Result<DatagramsSent> {
    let fd = sending.socket.as_raw_fd();
    sending.socket.set_write_timeout(Some(SEND_TIMEOUT))?;
    let mut batch = Batch::new(sending.len);
    let started = Instant::now();
    let end = sending.omit + sending.secs;
    let mut omitted_sent: u64 = 0;
    let mut counted_sent: u64 = 0;
    let mut counting_since: Option<Instant> = None;
    let mut last_send = started;
    let len = sending.len as u64;
    // The omitted start's intervals, then the counted ones': shown as each closes.
    let mut clock = IntervalClock::start(sending.every);
    let mut shown = 0;
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
            if !sending.omit.is_zero() {
                let (_, omitted) = clock.finish(omitted_sent * len);
                show(&omitted[shown..], true, on_tick);
            }
            clock = IntervalClock::start(sending.every);
            shown = 0;
        }
        // What the pace is held against: everything sent, omitted start included.
        let all_sent = omitted_sent + counted_sent;
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
            if counting {
                counted_sent += sent;
            } else {
                omitted_sent += sent;
            }
            if sent > 0 {
                last_send = Instant::now();
            }
        }
        if last_check.elapsed() >= CHECK_EVERY {
            last_check = Instant::now();
            interrupt::check()?;
            clock.observe(len * if counting { counted_sent } else { omitted_sent });
            show(&clock.intervals()[shown..], !counting, on_tick);
            shown = clock.intervals().len();
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
    let counted = counting_since.is_some();
    let (_, mut intervals) = clock.finish(len * if counted { counted_sent } else { omitted_sent });
    show(&intervals[shown..], !counted, on_tick);
    if !counted {
        intervals.clear();
    }
    end_datagrams(sending, &mut batch, counted_sent)?;
    Ok(DatagramsSent {
        datagrams: counted_sent,
        bytes: counted_sent * len,
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

/// Shows intervals of what was sent as `net`'s live lines.
fn show(intervals: &[Interval], omitted: bool, on_tick: &mut dyn FnMut(Tick)) {
    for interval in intervals {
        on_tick(super::receive::tick(interval, Role::Send, omitted));
    }
}
