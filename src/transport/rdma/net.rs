//! Memory to memory over RDMA: write latency by ping-pong (like ib_write_lat: each side polls
//! its own memory for the round's number, then writes it back), and write bandwidth (like
//! ib_write_bw: a window of WRITEs kept in flight, counted as the peer's adapter acknowledges them).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::Pulse;
use super::verbs::{Completion, Finished, Link, Region};
use crate::control::RdmaSlot;
use crate::measure::{Interval, Latency};
use crate::transport::Rounds;
use crate::transport::memory::{Role, Tick, TickStream};

/// The number the peer last wrote into `probe`: its first 8 bytes, read as the adapter left them.
fn read_round(probe: &Region) -> u64 {
    // SAFETY: a probe is an aligned buffer of at least 8 bytes, alive while its region lives
    // (register's contract); volatile, as the adapter writes it behind the compiler's back.
    let value = unsafe { std::ptr::read_volatile(probe.addr() as *const u64) };
    u64::from_le(value)
}

/// Work request ids of the ping-pong's writes carry this bit, so that an acknowledgment polled
/// late is never counted by the bandwidth test that follows.
const PING: u64 = 1 << 63;

/// A round number with this bit is the last of a test that runs for so many seconds (`lat -t`):
/// the responder answers it like any other, then stops.
const STOP: u64 = 1 << 63;

/// Waits until the peer has written round `round` into `probe` and returns what it wrote (the
/// round's number, perhaps with [`STOP`]), reaping our own completions (the answer is what
/// matters; the acknowledgment of our write may come before or after it).
fn await_round(link: &Link, probe: &Region, round: u64, pulse: &mut Pulse) -> Result<u64> {
    let mut done: Vec<Completion> = Vec::new();
    loop {
        let seen = read_round(probe);
        if seen & !STOP == round {
            return Ok(seen);
        }
        if seen & !STOP > round {
            bail!(
                "the peer answered round {} while round {round} was expected",
                seen & !STOP
            );
        }
        done.clear();
        link.poll(&mut done)?;
        pulse.pass(!done.is_empty())?;
    }
}

/// One ping-pong: writes `number` (a round, perhaps with [`STOP`]) into the peer's probe and
/// waits for the peer to write it back; how long that took.
fn ping_pong(
    link: &mut Link,
    probe: &Region,
    peer_probe: &RdmaSlot,
    number: u64,
    pulse: &mut Pulse,
) -> Result<Duration> {
    let started = Instant::now();
    link.write_inline(PING | number, &number.to_le_bytes(), peer_probe)?;
    await_round(link, probe, number & !STOP, pulse)?;
    Ok(started.elapsed())
}

/// The initiator's side of the latency test: `warmup` untimed ping-pongs, then timed ones as
/// long as `rounds` says; each sample is half a round trip. A test of so many seconds ends with
/// an untimed ping-pong carrying [`STOP`], so the responder stops when the initiator does.
pub fn latency(
    link: &mut Link,
    probe: &Region,
    peer_probe: &RdmaSlot,
    warmup: u32,
    rounds: Rounds,
    pulse: &mut Pulse,
) -> Result<Latency> {
    let (one_way, _) = crate::measure::OneWay::time(warmup, rounds, |round| {
        ping_pong(link, probe, peer_probe, round, pulse).map(Some)
    })?;
    if let Rounds::Secs(_) = rounds {
        let next = u64::from(warmup) + one_way.len() + 1;
        ping_pong(link, probe, peer_probe, next | STOP, pulse)?;
    }
    Ok(one_way.latency(format!(
        "{}-byte RDMA WRITE, polled; one way = half the round trip",
        super::LATENCY_SIZE
    )))
}

/// The responder's side: writes each round's number back as soon as it lands, `rounds` of them,
/// or (None) until the initiator's round with [`STOP`].
pub fn answer_latency(
    link: &mut Link,
    probe: &Region,
    peer_probe: &RdmaSlot,
    rounds: Option<u32>,
    pulse: &mut Pulse,
) -> Result<()> {
    for round in 1.. {
        if rounds.is_some_and(|count| round > u64::from(count)) {
            break;
        }
        let seen = await_round(link, probe, round, pulse)?;
        link.write_inline(PING | round, &seen.to_le_bytes(), peer_probe)?;
        if seen & STOP != 0 {
            break;
        }
    }
    // The last acknowledgments stay in the completion queue: the queue pair lives on until the
    // client says it is done.
    Ok(())
}

/// What a bandwidth test writes, for how long, and how often it reports.
pub struct Load {
    /// Bytes per WRITE.
    pub size: u32,
    /// WRITEs in flight.
    pub depth: usize,
    pub omit: Duration,
    pub secs: Duration,
    pub every: Duration,
}

/// What the writer of a bandwidth test counted.
pub struct Written {
    /// Bytes acknowledged after the first acknowledgment of the counted time, up to its end.
    pub bytes: u64,
    /// From the first acknowledgment of the counted time to the last.
    pub secs: f64,
    /// Every byte acknowledged in the counted time, the first window included.
    pub acknowledged: u64,
    pub intervals: Vec<Interval>,
}

/// Keeps `load.depth` WRITEs of `load.size` bytes from `local` in flight into the peer's
/// `targets` (in turn) for the test's time (`load.secs`, like iperf3's -t), then drains the
/// last ones without counting them. `tick` hears each interval.
pub fn write_bandwidth(
    link: &mut Link,
    local: &Region,
    targets: &[RdmaSlot],
    load: &Load,
    pulse: &mut Pulse,
    mut tick: impl FnMut(&Tick),
) -> Result<Written> {
    if targets.is_empty() {
        bail!("the server offered no buffer to write into");
    }
    let start = Instant::now();
    let mut meter = Meter::new(start, load);
    let stop_at = meter.counted_from + load.secs;
    let (mut posted, mut in_flight) = (0u64, 0usize);
    let mut done: Vec<Completion> = Vec::with_capacity(load.depth);
    loop {
        let now = Instant::now();
        let sending = now < stop_at;
        if !sending && in_flight == 0 {
            break;
        }
        while sending && in_flight < load.depth {
            let target = &targets[(posted % targets.len() as u64) as usize];
            link.write(posted, local, 0, load.size, target, None)?;
            posted += 1;
            in_flight += 1;
        }
        done.clear();
        link.poll(&mut done)?;
        let acked = done
            .iter()
            .filter(|c| c.finished == Finished::Write && c.wr_id & PING == 0)
            .count();
        in_flight -= acked;
        let now = Instant::now();
        if now < stop_at {
            meter.cut_if_due(now, &mut tick);
            meter.add(now, acked as u64 * u64::from(load.size));
        }
        pulse.pass(acked > 0)?;
    }
    Ok(meter.finish(stop_at, &mut tick))
}

/// Cuts what a bandwidth test acknowledged into intervals, the omitted start apart.
struct Meter {
    start: Instant,
    counted_from: Instant,
    every: Duration,
    mark_at: Instant,
    mark_bytes: u64,
    total: u64,
    counted: u64,
    /// When the first and the latest acknowledgments of the counted time came, and the counted
    /// bytes then.
    first_ack: Option<(Instant, u64)>,
    last_ack: Option<(Instant, u64)>,
    omitting: bool,
    intervals: Vec<Interval>,
}

impl Meter {
    fn new(start: Instant, load: &Load) -> Meter {
        Meter {
            start,
            counted_from: start + load.omit,
            every: load.every,
            mark_at: start,
            mark_bytes: 0,
            total: 0,
            counted: 0,
            first_ack: None,
            last_ack: None,
            omitting: !load.omit.is_zero(),
            intervals: Vec::new(),
        }
    }

    fn add(&mut self, now: Instant, bytes: u64) {
        self.total += bytes;
        if now >= self.counted_from && bytes > 0 {
            self.counted += bytes;
            self.first_ack.get_or_insert((now, self.counted));
            self.last_ack = Some((now, self.counted));
        }
    }

    /// Closes the interval when it is due, and at the end of the omitted start.
    fn cut_if_due(&mut self, now: Instant, tick: &mut impl FnMut(&Tick)) {
        let omit_over = self.omitting && now >= self.counted_from;
        if now.duration_since(self.mark_at) >= self.every || omit_over {
            self.cut(now, tick);
        }
    }

    fn cut(&mut self, now: Instant, tick: &mut impl FnMut(&Tick)) {
        let origin = if self.omitting {
            self.start
        } else {
            self.counted_from
        };
        let interval = Tick {
            start_secs: self.mark_at.saturating_duration_since(origin).as_secs_f64(),
            secs: now.duration_since(self.mark_at).as_secs_f64(),
            omitted: self.omitting,
            streams: vec![TickStream {
                role: Role::Send,
                bytes: self.total - self.mark_bytes,
                retransmits: None,
                cwnd_bytes: None,
            }],
        };
        tick(&interval);
        if !self.omitting {
            self.intervals.push(Interval {
                start_secs: interval.start_secs,
                secs: interval.secs,
                bytes: self.total - self.mark_bytes,
            });
        }
        self.mark_at = now;
        self.mark_bytes = self.total;
        self.omitting = now < self.counted_from;
    }

    /// The last interval closes at the end of the counted time.
    fn finish(mut self, stop_at: Instant, tick: &mut impl FnMut(&Tick)) -> Written {
        if stop_at > self.mark_at && !self.omitting {
            self.cut(stop_at, tick);
        }
        // The rate runs from the first acknowledgment to the last: the first window of WRITEs
        // fills the pipe (soft-RoCE acknowledges it in one burst), as ib_write_bw leaves its
        // start out. With one burst only, the whole counted time is all there is.
        let (bytes, secs) = match (self.first_ack, self.last_ack) {
            (Some((first, at_first)), Some((last, at_last))) if last > first => {
                (at_last - at_first, last.duration_since(first).as_secs_f64())
            }
            _ => (
                self.counted,
                stop_at
                    .saturating_duration_since(self.counted_from)
                    .as_secs_f64(),
            ),
        };
        Written {
            bytes,
            secs,
            acknowledged: self.counted,
            intervals: self.intervals,
        }
    }
}
