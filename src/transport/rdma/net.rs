//! Memory to memory over RDMA: write latency by ping-pong (like ib_write_lat: each side polls
//! its own memory for the round's number, then writes it back), and write bandwidth (like
//! ib_write_bw: a window of WRITEs kept in flight, counted as the peer's adapter acknowledges them).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use hdrhistogram::Histogram;

use super::Pulse;
use super::verbs::{Completion, Finished, Link, Region};
use crate::control::RdmaSlot;
use crate::measure::{Interval, Latency};
use crate::transport::memory::{Role, Tick, TickStream};

/// The number the peer last wrote into `probe`: its first 8 bytes, read as the adapter left them.
fn read_round(probe: &Region) -> u64 {
    // The adapter writes this memory behind the compiler's back.
    let value = unsafe { std::ptr::read_volatile(probe.addr() as *const u64) };
    u64::from_le(value)
}

/// Our writes of a ping-pong, by round: the last one the peer's adapter acknowledged.
#[derive(Default)]
struct Acks(u64);

impl Acks {
    /// Reaps completions; true when there were some.
    fn reap(&mut self, link: &Link) -> Result<bool> {
        let mut done: Vec<Completion> = Vec::new();
        link.poll(&mut done)?;
        for completion in &done {
            if completion.finished == Finished::Write {
                self.0 = self.0.max(completion.wr_id);
            }
        }
        Ok(!done.is_empty())
    }

    /// Waits for the acknowledgment of the write of `round`.
    fn wait(&mut self, link: &Link, round: u64, pulse: &mut Pulse) -> Result<()> {
        while self.0 < round {
            let moved = self.reap(link)?;
            pulse.pass(moved)?;
        }
        Ok(())
    }
}

/// Waits until the peer has written round `round` into `probe`, reaping our own completions.
fn await_round(
    link: &Link,
    probe: &Region,
    round: u64,
    acks: &mut Acks,
    pulse: &mut Pulse,
) -> Result<()> {
    loop {
        let seen = read_round(probe);
        if seen == round {
            return Ok(());
        }
        if seen > round {
            bail!("the peer answered round {seen} while round {round} was expected");
        }
        let moved = acks.reap(link)?;
        pulse.pass(moved)?;
    }
}

/// The initiator's side of the latency test: `warmup + rounds` ping-pongs; each sample is half
/// a round trip.
pub fn latency(
    link: &mut Link,
    probe: &Region,
    peer_probe: &RdmaSlot,
    warmup: u32,
    rounds: u32,
    pulse: &mut Pulse,
) -> Result<Latency> {
    let mut nanos = Histogram::<u64>::new(3).expect("3 significant digits is valid");
    let mut acks = Acks::default();
    for round in 1..=u64::from(warmup + rounds) {
        let started = Instant::now();
        link.write_inline(round, &round.to_le_bytes(), peer_probe)?;
        await_round(link, probe, round, &mut acks, pulse)?;
        let one_way = started.elapsed().as_nanos() as u64 / 2;
        if round > u64::from(warmup) {
            nanos.saturating_record(one_way.max(1));
        }
    }
    // The answer can land before our last write's acknowledgment is polled: take it now, so
    // the bandwidth test after this counts only its own completions.
    acks.wait(link, u64::from(warmup + rounds), pulse)?;
    Ok(Latency::of(
        format!(
            "{}-byte RDMA WRITE, polled; one way = half the round trip",
            super::LATENCY_SIZE
        ),
        &nanos,
    ))
}

/// The responder's side: writes each round's number back as soon as it lands.
pub fn answer_latency(
    link: &mut Link,
    probe: &Region,
    peer_probe: &RdmaSlot,
    rounds: u32,
    pulse: &mut Pulse,
) -> Result<()> {
    let mut acks = Acks::default();
    for round in 1..=u64::from(rounds) {
        await_round(link, probe, round, &mut acks, pulse)?;
        link.write_inline(round, &round.to_le_bytes(), peer_probe)?;
    }
    // Our last write must be acknowledged before the initiator moves on and we stop polling.
    acks.wait(link, u64::from(rounds), pulse)
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
    /// Bytes acknowledged after the omitted start.
    pub bytes: u64,
    /// From the end of the omitted start to the last acknowledgment.
    pub secs: f64,
    pub intervals: Vec<Interval>,
}

/// Keeps `load.depth` WRITEs of `load.size` bytes from `local` in flight into the peer's
/// `targets` (in turn) for the test's time, then waits for the last ones. `tick` hears each
/// interval.
pub fn write_bandwidth(
    link: &mut Link,
    local: &Region,
    targets: &[RdmaSlot],
    load: &Load,
    pulse: &mut Pulse,
    mut tick: impl FnMut(&Tick),
) -> Result<Written> {
    let (size, depth, timing) = (load.size, load.depth, load);
    if targets.is_empty() {
        bail!("the server offered no buffer to write into");
    }
    let start = Instant::now();
    let counted_from = start + timing.omit;
    let stop_at = counted_from + timing.secs;
    let (mut posted, mut in_flight) = (0u64, 0usize);
    let (mut bytes, mut omitted_bytes) = (0u64, 0u64);
    let mut last_ack = counted_from;
    let mut intervals = Vec::new();
    let mut mark = (start, 0u64, true);
    let mut done: Vec<Completion> = Vec::with_capacity(depth);
    loop {
        let now = Instant::now();
        let sending = now < stop_at;
        if !sending && in_flight == 0 {
            break;
        }
        while sending && in_flight < depth {
            let target = &targets[(posted % targets.len() as u64) as usize];
            link.write(posted, local, 0, size, target, None)?;
            posted += 1;
            in_flight += 1;
        }
        done.clear();
        link.poll(&mut done)?;
        for completion in &done {
            if completion.finished == Finished::Write {
                in_flight -= 1;
            }
        }
        let acked = done
            .iter()
            .filter(|c| c.finished == Finished::Write)
            .count() as u64;
        if acked > 0 {
            let now = Instant::now();
            if now < counted_from {
                omitted_bytes += acked * u64::from(size);
            } else {
                bytes += acked * u64::from(size);
                last_ack = now;
            }
            // An interval closes every `every`, and at the end of the omitted start.
            let (mark_at, mark_bytes, omitted) = mark;
            let total = bytes + omitted_bytes;
            let crossed_omit = omitted && now >= counted_from;
            if now.duration_since(mark_at) >= timing.every || crossed_omit {
                let interval = Tick {
                    start_secs: mark_at
                        .saturating_duration_since(if omitted { start } else { counted_from })
                        .as_secs_f64(),
                    secs: now.duration_since(mark_at).as_secs_f64(),
                    omitted,
                    streams: vec![TickStream {
                        role: Role::Send,
                        bytes: total - mark_bytes,
                        retransmits: None,
                        cwnd_bytes: None,
                    }],
                };
                tick(&interval);
                if !omitted {
                    intervals.push(Interval {
                        start_secs: interval.start_secs,
                        secs: interval.secs,
                        bytes: total - mark_bytes,
                    });
                }
                mark = (now, total, now < counted_from);
            }
        }
        pulse.pass(acked > 0)?;
    }
    let (mark_at, mark_bytes, omitted) = mark;
    let total = bytes + omitted_bytes;
    if total > mark_bytes && !omitted {
        let interval = Tick {
            start_secs: mark_at
                .saturating_duration_since(counted_from)
                .as_secs_f64(),
            secs: last_ack.saturating_duration_since(mark_at).as_secs_f64(),
            omitted: false,
            streams: vec![TickStream {
                role: Role::Send,
                bytes: total - mark_bytes,
                retransmits: None,
                cwnd_bytes: None,
            }],
        };
        tick(&interval);
        intervals.push(Interval {
            start_secs: interval.start_secs,
            secs: interval.secs,
            bytes: total - mark_bytes,
        });
    }
    Ok(Written {
        bytes,
        secs: last_ack
            .saturating_duration_since(counted_from)
            .as_secs_f64(),
        intervals,
    })
}
