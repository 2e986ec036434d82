//! The receiving end of a UDP test: what arrived, what did not, in what order, how evenly.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::wire::{self, Batch, Header, Kind};
use super::{DatagramInterval, DatagramsReceived};
use crate::control::connection::{Peeked, peek};
use crate::interrupt;
use crate::measure::Interval;
use crate::transport::memory::{Role, Tick, TickStream};

/// Sequence numbers remembered to tell a duplicate from a late datagram.
const WINDOW: u64 = 1 << 16;
/// How often the loop looks at the clock, Ctrl-C and the control connection.
const CHECK_EVERY: Duration = Duration::from_millis(50);
/// After the sender says it is done: how long a silent socket is waited on for stragglers.
const STRAGGLERS: Duration = Duration::from_millis(20);

/// Counts datagrams as they arrive: unique, late, duplicated, and the RFC 3550 jitter
/// (the smoothed difference between consecutive transit times; the clocks need not agree).
#[derive(Debug)]
pub struct Tally {
    every_ns: u64,
    seen: Vec<u64>,
    max_seq: Option<u64>,
    datagrams: u64,
    bytes: u64,
    out_of_order: u64,
    duplicates: u64,
    jitter_ns: f64,
    last_transit: Option<i64>,
    first_arrival: Option<u64>,
    last_arrival: u64,
    /// The interval being filled: start (ns since the first arrival), and its counts.
    open: DatagramInterval,
    /// Sequence numbers expected before the open interval.
    expected_before: u64,
    /// Distinct datagrams of the open interval's own sequence range that have arrived.
    open_in_range: u64,
    /// The first sequence number of each closed interval's range, so that a late arrival
    /// takes its loss back from the interval it belongs to.
    range_starts: Vec<u64>,
    intervals: Vec<DatagramInterval>,
}

impl Tally {
    pub fn new(every: Duration) -> Tally {
        Tally {
            every_ns: every.as_nanos().max(1) as u64,
            seen: vec![0; (WINDOW / 64) as usize],
            max_seq: None,
            datagrams: 0,
            bytes: 0,
            out_of_order: 0,
            duplicates: 0,
            jitter_ns: 0.0,
            last_transit: None,
            first_arrival: None,
            last_arrival: 0,
            open: DatagramInterval::default(),
            expected_before: 0,
            open_in_range: 0,
            range_starts: Vec::new(),
            intervals: Vec::new(),
        }
    }

    /// One counted datagram of `len` bytes, numbered `seq`, sent at `sent_ns` and arrived at
    /// `arrival_ns` (each on its host's real-time clock). Returns the intervals it closed.
    pub fn record(&mut self, seq: u64, len: usize, sent_ns: u64, arrival_ns: u64) -> usize {
        let first = *self.first_arrival.get_or_insert(arrival_ns);
        let closed = self.close_until(arrival_ns.max(first));
        self.last_arrival = self.last_arrival.max(arrival_ns);
        let transit = arrival_ns as i64 - sent_ns as i64;
        if let Some(last) = self.last_transit {
            let d = (transit - last).unsigned_abs() as f64;
            self.jitter_ns += (d - self.jitter_ns) / 16.0;
        }
        self.last_transit = Some(transit);
        match self.max_seq {
            Some(max) if seq <= max => {
                if max - seq >= WINDOW {
                    // Too old to tell: late, not a duplicate we could prove.
                    self.late(seq, len);
                } else if self.mark(seq) {
                    self.duplicates += 1;
                } else {
                    self.late(seq, len);
                }
            }
            _ => {
                let from = self.max_seq.map_or(0, |max| max + 1);
                if seq - from >= WINDOW {
                    self.seen.fill(0);
                } else {
                    for skipped in from..seq {
                        self.clear(skipped);
                    }
                }
                self.mark(seq);
                self.max_seq = Some(seq);
                self.count(len);
                self.open_in_range += 1;
            }
        }
        closed
    }

    /// Closes the intervals that ended before `now_ns` (a real-time clock reading), even when
    /// nothing arrives. Returns how many it closed.
    pub fn close_until(&mut self, now_ns: u64) -> usize {
        let Some(first) = self.first_arrival else {
            return 0;
        };
        let mut closed = 0;
        while now_ns.saturating_sub(first) >= self.interval_end_ns() {
            let end = self.interval_end_ns();
            self.cut(end);
            closed += 1;
        }
        closed
    }

    /// The intervals closed so far.
    pub fn intervals(&self) -> &[DatagramInterval] {
        &self.intervals
    }

    /// Everything counted; the open interval closed at the last arrival.
    pub fn finish(mut self) -> DatagramsReceived {
        if let Some(first) = self.first_arrival {
            let end = self.last_arrival - first;
            if end > (self.open.start_secs * 1e9) as u64 || self.intervals.is_empty() {
                self.cut(end);
            }
        }
        DatagramsReceived {
            datagrams: self.datagrams,
            bytes: self.bytes,
            secs: self
                .first_arrival
                .map_or(0.0, |first| (self.last_arrival - first) as f64 / 1e9),
            out_of_order: self.out_of_order,
            duplicates: self.duplicates,
            jitter_us: self.jitter_ns / 1000.0,
            expected: self.max_seq.map_or(0, |max| max + 1),
            intervals: self.intervals,
        }
    }

    fn interval_end_ns(&self) -> u64 {
        (self.intervals.len() as u64 + 1) * self.every_ns
    }

    fn count(&mut self, len: usize) {
        self.datagrams += 1;
        self.bytes += len as u64;
        self.open.datagrams += 1;
        self.open.bytes += len as u64;
    }

    /// A datagram numbered below one that came before it: its bytes count where it arrived,
    /// and it is no longer lost from the interval whose range holds its number.
    fn late(&mut self, seq: u64, len: usize) {
        self.out_of_order += 1;
        self.open.out_of_order += 1;
        self.count(len);
        if seq >= self.expected_before {
            self.open_in_range += 1;
            return;
        }
        let owner = self.range_starts.partition_point(|&start| start <= seq);
        if let Some(interval) = owner.checked_sub(1).map(|k| &mut self.intervals[k]) {
            interval.lost = interval.lost.saturating_sub(1);
        }
    }

    /// Marks `seq` seen; true if it was already.
    fn mark(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq % WINDOW / 64) as usize, seq % 64);
        let was = self.seen[word] & (1 << bit) != 0;
        self.seen[word] |= 1 << bit;
        was
    }

    fn clear(&mut self, seq: u64) {
        let (word, bit) = ((seq % WINDOW / 64) as usize, seq % 64);
        self.seen[word] &= !(1 << bit);
    }

    /// Closes the open interval at `end_ns` after the first arrival.
    fn cut(&mut self, end_ns: u64) {
        let expected_now = self.max_seq.map_or(0, |max| max + 1);
        let start_ns = (self.open.start_secs * 1e9) as u64;
        let mut interval = std::mem::take(&mut self.open);
        interval.secs = end_ns.saturating_sub(start_ns) as f64 / 1e9;
        interval.expected = expected_now - self.expected_before;
        interval.lost = interval.expected.saturating_sub(self.open_in_range);
        interval.jitter_us = self.jitter_ns / 1000.0;
        self.range_starts.push(self.expected_before);
        self.expected_before = expected_now;
        self.open_in_range = 0;
        self.intervals.push(interval);
        self.open.start_secs = end_ns as f64 / 1e9;
    }
}

/// What a receiving loop listens for.
pub struct Listening<'a> {
    pub socket: &'a UdpSocket,
    pub key: u64,
    /// The sender's address; datagrams from elsewhere are foreign. None: the socket is
    /// connected, and the kernel already filters.
    pub from: Option<SocketAddr>,
    pub len: usize,
    pub every: Duration,
    /// The control connection to the peer, watched for its results, an error, or its end.
    pub control: RawFd,
    /// Longest the loop runs, whatever happens (the test's length and a margin).
    pub limit: Duration,
}

/// Why a receiving loop stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The sender's End datagram arrived.
    End,
    /// The peer spoke on the control connection (its results, or an error).
    Told,
    /// The time limit passed.
    Limit,
}

/// Receives until the sender is done; datagrams that are not the sender's are counted in
/// `foreign` and dropped. A Hello from the sender is answered (its Welcome may have been lost).
pub fn receive(
    listening: &Listening,
    foreign: &mut u64,
    on_tick: &mut dyn FnMut(Tick),
) -> Result<(DatagramsReceived, Stop)> {
    let fd = listening.socket.as_raw_fd();
    listening.socket.set_read_timeout(Some(CHECK_EVERY))?;
    wire::stamp_arrivals(fd);
    let mut batch = Batch::new(listening.len);
    let mut tally = Tally::new(listening.every);
    let mut reported = 0;
    let started = Instant::now();
    let mut last_check = started;
    let stop = loop {
        let got = match batch.receive(fd, true) {
            Ok(got) => got,
            Err(err) if quiet(&err) => 0,
            Err(err) => bail!("receiving datagrams: {err}"),
        };
        let mut ended = false;
        for i in 0..got {
            ended |= take(listening, &batch, i, &mut tally, foreign);
        }
        if ended {
            drain(listening, &mut batch, &mut tally, foreign)?;
            break Stop::End;
        }
        if last_check.elapsed() >= CHECK_EVERY {
            last_check = Instant::now();
            interrupt::check()?;
            tally.close_until(wire::realtime_ns());
            match peek(listening.control) {
                Peeked::Closed => {
                    bail!("the peer closed the control connection (stopped or killed?)")
                }
                Peeked::Message => {
                    drain(listening, &mut batch, &mut tally, foreign)?;
                    break Stop::Told;
                }
                Peeked::Nothing => {}
            }
            if started.elapsed() > listening.limit {
                break Stop::Limit;
            }
        }
        while reported < tally.intervals().len() {
            on_tick(tick(
                &tally.intervals()[reported].interval(),
                Role::Receive,
                false,
            ));
            reported += 1;
        }
    };
    let received = tally.finish();
    for interval in received.intervals.iter().skip(reported) {
        on_tick(tick(&interval.interval(), Role::Receive, false));
    }
    Ok((received, stop))
}

/// Reads what is still queued once the sender is done, until the socket stays quiet.
fn drain(
    listening: &Listening,
    batch: &mut Batch,
    tally: &mut Tally,
    foreign: &mut u64,
) -> Result<()> {
    let fd = listening.socket.as_raw_fd();
    listening.socket.set_read_timeout(Some(STRAGGLERS))?;
    loop {
        match batch.receive(fd, true) {
            Ok(0) => return Ok(()),
            Ok(got) => {
                for i in 0..got {
                    take(listening, batch, i, tally, foreign);
                }
            }
            Err(err) if quiet(&err) => return Ok(()),
            Err(err) => bail!("receiving datagrams: {err}"),
        }
    }
}

/// Counts datagram `i` of `batch`; true if it was the sender's End.
fn take(
    listening: &Listening,
    batch: &Batch,
    i: usize,
    tally: &mut Tally,
    foreign: &mut u64,
) -> bool {
    let (bytes, stamp) = batch.received(i);
    // A connected socket's kernel already filtered: no address to read per datagram then.
    if let Some(from) = listening.from
        && !batch
            .source(i)
            .is_some_and(|source| wire::same_peer(from, source))
    {
        *foreign += 1;
        return false;
    }
    let Some(header) = Header::read(bytes).filter(|h| h.key == listening.key) else {
        *foreign += 1;
        return false;
    };
    match header.kind {
        Kind::Data => {
            let arrival = stamp.unwrap_or_else(wire::realtime_ns);
            tally.record(header.seq, bytes.len(), header.sent_ns, arrival);
            false
        }
        Kind::Hello => {
            if let Some(source) = batch.source(i) {
                let _ = welcome(listening.socket, listening.key, source);
            }
            false
        }
        Kind::End => true,
        Kind::Omitted | Kind::Welcome => false,
    }
}

/// Answers a Hello, so the client knows both ways are open.
pub fn welcome(socket: &UdpSocket, key: u64, to: SocketAddr) -> std::io::Result<()> {
    let mut buf = [0u8; wire::HEADER_LEN];
    Header {
        kind: Kind::Welcome,
        key,
        seq: 0,
        sent_ns: wire::realtime_ns(),
    }
    .write(&mut buf);
    socket.send_to(&buf, to).map(|_| ())
}

/// Errors that only mean "nothing now": a timeout, a signal, or an ICMP error from an earlier
/// send on a connected socket.
pub(crate) fn quiet(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        err.kind(),
        WouldBlock | TimedOut | Interrupted | ConnectionRefused
    )
}

/// An interval as `net`'s live lines show it.
pub(super) fn tick(interval: &Interval, role: Role, omitted: bool) -> Tick {
    Tick {
        start_secs: interval.start_secs,
        secs: interval.secs,
        omitted,
        streams: vec![TickStream {
            role,
            bytes: interval.bytes,
            retransmits: None,
            cwnd_bytes: None,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn gaps_late_arrivals_and_duplicates_are_told_apart() {
        let mut tally = Tally::new(Duration::from_secs(1));
        for (i, seq) in [0u64, 1, 3, 2, 3, 5].into_iter().enumerate() {
            tally.record(seq, 100, 0, 1000 + i as u64);
        }
        let received = tally.finish();
        assert_eq!(received.datagrams, 5, "the second 3 is a duplicate");
        assert_eq!(received.duplicates, 1);
        assert_eq!(received.out_of_order, 1, "2 came after 3");
        assert_eq!(received.expected, 6);
        assert_eq!(received.bytes, 500);
        assert_eq!(received.intervals.len(), 1);
        assert_eq!(received.intervals[0].lost, 1, "4 never came");
    }

    #[test]
    fn even_transit_has_no_jitter_and_alternating_transit_has_some() {
        let mut even = Tally::new(Duration::from_secs(1));
        for seq in 0..100 {
            even.record(seq, 100, seq * MS, seq * MS + 50_000);
        }
        assert_eq!(even.finish().jitter_us, 0.0);
        let mut uneven = Tally::new(Duration::from_secs(1));
        for seq in 0..1000 {
            let transit = if seq % 2 == 0 { 50_000 } else { 150_000 };
            uneven.record(seq, 100, seq * MS, seq * MS + transit);
        }
        // Every transit differs from the last by 100 µs, so the smoothed jitter converges there.
        let jitter = uneven.finish().jitter_us;
        assert!((jitter - 100.0).abs() < 1.0, "{jitter}");
    }

    #[test]
    fn intervals_cut_on_arrival_time_and_count_their_losses() {
        let mut tally = Tally::new(Duration::from_millis(100));
        // 10 datagrams per 100 ms for 300 ms; the second interval loses seqs 12 and 13.
        for seq in (0..30u64).filter(|s| *s != 12 && *s != 13) {
            tally.record(seq, 1000, seq * 10 * MS, seq * 10 * MS + MS);
        }
        let received = tally.finish();
        let counts: Vec<_> = received
            .intervals
            .iter()
            .map(|i| (i.datagrams, i.lost))
            .collect();
        assert_eq!(counts, vec![(10, 0), (8, 2), (10, 0)]);
        assert_eq!(received.datagrams, 28);
        assert!((received.secs - 0.29).abs() < 1e-9, "{}", received.secs);
    }

    #[test]
    fn a_late_arrival_across_an_interval_boundary_is_not_lost_from_either() {
        let mut tally = Tally::new(Duration::from_millis(100));
        // Seq 9 belongs to the first interval's range but arrives in the second.
        for (seq, at_ms) in [
            (0u64, 1),
            (1, 2),
            (2, 3),
            (10, 50),
            (11, 120),
            (9, 130),
            (12, 140),
        ] {
            tally.record(seq, 100, 0, at_ms * MS);
        }
        let received = tally.finish();
        let counts: Vec<_> = received
            .intervals
            .iter()
            .map(|i| (i.datagrams, i.expected, i.lost))
            .collect();
        // First: seqs 0..=10 expected, 3..=8 never came (9 came late); second: 11 and 12.
        assert_eq!(counts, vec![(4, 11, 6), (3, 2, 0)]);
        let lost: u64 = received.intervals.iter().map(|i| i.lost).sum();
        assert_eq!(lost, received.expected - received.datagrams);
    }

    #[test]
    fn interval_losses_sum_to_the_total_whatever_the_reordering() {
        use rand::{RngExt, SeedableRng, seq::SliceRandom};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let mut seqs: Vec<u64> = (0..20_000).filter(|_| rng.random_bool(0.97)).collect();
        // Reorder within windows of 50, so late arrivals cross many interval boundaries.
        for window in seqs.chunks_mut(50) {
            window.shuffle(&mut rng);
        }
        let mut tally = Tally::new(Duration::from_millis(10));
        for (i, &seq) in seqs.iter().enumerate() {
            tally.record(seq, 100, 0, i as u64 * 20_000);
        }
        let received = tally.finish();
        let lost: u64 = received.intervals.iter().map(|i| i.lost).sum();
        let expected: u64 = received.intervals.iter().map(|i| i.expected).sum();
        assert!(received.out_of_order > 1000, "{}", received.out_of_order);
        assert_eq!(expected, received.expected);
        assert_eq!(lost, received.expected - received.datagrams);
    }

    #[test]
    fn a_sequence_far_ahead_resets_the_window_without_false_duplicates() {
        let mut tally = Tally::new(Duration::from_secs(1));
        tally.record(0, 10, 0, 1);
        tally.record(WINDOW * 3, 10, 0, 2);
        tally.record(WINDOW * 3 + 1, 10, 0, 3);
        let received = tally.finish();
        assert_eq!(received.duplicates, 0);
        assert_eq!(received.datagrams, 3);
    }
}
