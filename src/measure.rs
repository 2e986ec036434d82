//! What every measurement records, whichever stage or path produced it.
//!
//! One [`Measurement`] type for disks, networks and copies, so they land in the same table and JSON.
//! Measuring code fills these and never prints; progress bars read a shared [`Counter`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::mounts::MountFacts;
use crate::units::Rate;

pub mod knee;
pub use knee::Knee;

/// What was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// Sequential write of a test file, timed through fsync.
    DiskWrite,
    /// Sequential read of a file.
    DiskRead,
    /// `gen` filling a test file.
    Fill,
    /// Memory to memory, as counted by the sender.
    NetSend,
    /// Memory to memory, as counted by the receiver.
    NetReceive,
    /// A file read from one disk, sent, written and fsynced on the other.
    Copy,
    /// One disk reading a file and writing another at once, as a copy whose two ends share it
    /// uses it: the measured bound of such a copy (bytes = the size read, and written).
    DiskReadWrite,
}

impl Workload {
    pub fn label(self) -> &'static str {
        match self {
            Workload::DiskWrite => "write",
            Workload::DiskRead => "read",
            Workload::Fill => "fill",
            Workload::NetSend => "sender",
            Workload::NetReceive => "receiver",
            Workload::Copy => "copy",
            Workload::DiskReadWrite => "read+write",
        }
    }

    /// Whether it writes to a disk, where a write cache can fill and the rate fall for good.
    pub fn writes(self) -> bool {
        matches!(
            self,
            Workload::DiskWrite | Workload::Fill | Workload::Copy | Workload::DiskReadWrite
        )
    }
}

/// The engine actually running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    IoUring,
    Psync,
    /// fio's `null`: no byte moved (tests of the layers above the disk).
    Null,
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EngineKind::IoUring => "io_uring",
            EngineKind::Psync => "psync",
            EngineKind::Null => "null",
        })
    }
}

/// The transfer paths xferbench knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TransportKind {
    /// Plain TCP to `xferbench serve`, parallel streams.
    Tcp,
    /// SCP-like over SSH: any OpenSSH server, or `serve --ssh-listen`.
    Ssh,
    /// RC RDMA WRITE to `xferbench serve` (builds with the `rdma` feature).
    Rdma,
    /// UDP datagrams to `xferbench serve`: net and lat only (UDP carries no files).
    Udp,
    /// A copy between two local paths (a local disk or a mounted share): the kernel's
    /// file-system client carries the bytes. Chosen by the paths, never by `--via`.
    #[value(skip)]
    Local,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportKind::Tcp => "tcp",
            TransportKind::Ssh => "ssh",
            TransportKind::Rdma => "rdma",
            TransportKind::Udp => "udp",
            TransportKind::Local => "local",
        })
    }
}

/// How long a latency test goes on: so many round trips (`-n`), or so many seconds (`-t`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rounds {
    Count(u32),
    Secs(f64),
}

impl Rounds {
    /// Whether another timed round trip is due, `done` of them having taken `elapsed`.
    pub fn more(self, done: u64, elapsed: std::time::Duration) -> bool {
        match self {
            Rounds::Count(count) => done < count as u64,
            Rounds::Secs(secs) => elapsed.as_secs_f64() < secs,
        }
    }
}

/// Which way the bytes of a memory-to-memory test go, seen from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Client to server (iperf3's default).
    Upload,
    /// Server to client (`-R`).
    Download,
}

/// Whether a stream sends or receives, from the side that samples it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Send,
    Receive,
}

/// One stream's share of one interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TickStream {
    pub role: Role,
    pub bytes: u64,
    /// Retransmits during the interval (senders only).
    pub retransmits: Option<u64>,
    /// Congestion window at the end of the interval (senders only).
    pub cwnd_bytes: Option<u64>,
}

/// One interval report, iperf3's per-second line.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    /// Seconds from the end of the omitted start (negative-free: omitted ticks count from 0 too).
    pub start_secs: f64,
    pub secs: f64,
    /// Inside the omitted start: shown, not counted.
    pub omitted: bool,
    pub streams: Vec<TickStream>,
}

/// The conditions a figure was taken under, so that it says what it measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Conditions {
    /// O_DIRECT (true) or through the page cache (false).
    pub direct: bool,
    /// Whether the time includes the final fsync.
    pub fsync_included: bool,
    /// Opened with O_DSYNC: each write stable before it returns (a durability probe).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dsync: bool,
    /// A local copy's source read with O_DIRECT (true) or through the page cache (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_direct: Option<bool>,
    /// A local copy's destination written with O_DIRECT (true) or through the page cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_direct: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineKind>,
    /// io_uring's ring setup flags, as fio's names them ("COOP_TASKRUN|SINGLE_ISSUER|DEFER_TASKRUN").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_flags: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iodepth: Option<usize>,
    /// Fraction of the file in the page cache just before a buffered read (0 to 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_before: Option<f64>,
    /// The transfer path (tcp, ssh, rdma, udp) for network figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<TransportKind>,
    /// Parallel streams (connections) of a network figure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streams: Option<usize>,
    /// MTU of the route to the peer, from the connected socket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Socket buffer size the kernel granted for -w, read back (Linux doubles what is asked,
    /// and has a floor of a few KiB); the size asked for is the report's `window`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<u64>,
    /// The SSH cipher the key exchange chose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cipher: Option<String>,
    /// The RDMA device, port and GID the figure was measured on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// RDMA work requests kept in flight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_depth: Option<usize>,
    /// The file system of the figure's file (this side's file, for a copy): a share's server,
    /// options and interface, or a disk's block device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<MountFacts>,
    /// Sent with sendfile(2) from a file in memory (`net -Z`): no copy from the sender's memory.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub zerocopy: bool,
}

/// Bytes moved during one reporting interval, from the start of the measurement.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub start_secs: f64,
    pub secs: f64,
    pub bytes: u64,
}

/// One figure: so many bytes in so much time, under stated conditions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// What was measured (`stage` in the JSON report).
    #[serde(rename = "stage")]
    pub workload: Workload,
    pub bytes: u64,
    pub secs: f64,
    pub bytes_per_sec: f64,
    pub conditions: Conditions,
    pub intervals: Vec<Interval>,
    /// Why this figure did not come from what it claims to measure (above its device's or
    /// link's ceiling, read from the page cache); None for a figure that holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspect: Option<String>,
    /// Where a write rate fell for good after a burst (a write cache filling), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knee: Option<Knee>,
}

impl Measurement {
    pub fn new(
        workload: Workload,
        bytes: u64,
        elapsed: Duration,
        conditions: Conditions,
        mut intervals: Vec<Interval>,
    ) -> Measurement {
        if workload == Workload::Copy {
            close_time_line(&mut intervals, elapsed);
        }
        Measurement {
            workload,
            bytes,
            secs: elapsed.as_secs_f64(),
            bytes_per_sec: Rate::new(bytes, elapsed).bytes_per_sec,
            knee: workload.writes().then(|| knee::find(&intervals)).flatten(),
            conditions,
            intervals,
            suspect: None,
        }
    }

    /// Marks the figure when it is above `ceiling` (`what_answered` says what must have).
    pub fn hold_to(&mut self, ceiling: Option<&crate::ceiling::Ceiling>, what_answered: &str) {
        if self.suspect.is_none() {
            self.suspect = ceiling.and_then(|c| c.exceeded_by(self.bytes_per_sec, what_answered));
        }
    }

    pub fn rate(&self) -> Rate {
        Rate {
            bytes_per_sec: self.bytes_per_sec,
        }
    }
}

/// A copy's timed span runs past its last byte (the fsync, the peer's answer, the rename): that
/// tail becomes an interval of its own, with no bytes, so the time line covers the whole copy
/// and its intervals average to the reported rate. Nothing is added to an empty time line.
fn close_time_line(intervals: &mut Vec<Interval>, elapsed: Duration) {
    let Some(last) = intervals.last() else {
        return;
    };
    let covered = last.start_secs + last.secs;
    let tail = elapsed.as_secs_f64() - covered;
    // Under a millisecond is the clocks' own skew, not a stage.
    if tail > 1e-3 {
        intervals.push(Interval {
            start_secs: covered,
            secs: tail,
            bytes: 0,
        });
    }
}

/// Bytes done so far, shared between a measuring loop and whoever watches it.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn new() -> Counter {
        Counter::default()
    }

    pub fn add(&self, bytes: u64) {
        self.0.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Someone watching a measurement run (a progress bar); measuring code only announces and counts.
pub trait Watcher {
    /// A phase named `label` of `total` bytes begins; `counter` will count its bytes.
    fn begin(&self, label: &str, total: u64, counter: &Counter);
    /// A phase of `total` bytes in `total_files` files begins (a tree copy); `files` will count
    /// the files done. Watchers that show no file count treat it as [`Watcher::begin`].
    fn begin_files(
        &self,
        label: &str,
        total: u64,
        counter: &Counter,
        _total_files: u64,
        _files: &Counter,
    ) {
        self.begin(label, total, counter)
    }
    /// The phase ended, well or not.
    fn end(&self);
    /// An interval of a network test closed (iperf3's per-second line).
    fn tick(&self, _tick: &Tick) {}
    /// A stage of a longer run begins (`run`'s numbered headings).
    fn heading(&self, _title: &str) {}
}

/// Nobody watches: for tests, benches and `--quiet`.
pub struct Unwatched;

impl Watcher for Unwatched {
    fn begin(&self, _label: &str, _total: u64, _counter: &Counter) {}
    fn end(&self) {}
}

/// Runs one phase under a watcher: announces it, hands `run` the counter, and ends it either way.
pub fn watch<T>(
    watcher: &dyn Watcher,
    label: &str,
    total: u64,
    run: impl FnOnce(&Counter) -> T,
) -> T {
    let counter = Counter::new();
    watcher.begin(label, total, &counter);
    let outcome = run(&counter);
    watcher.end();
    outcome
}

/// How often intervals are cut, like iperf3's default `-i 1`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// Cuts a running byte total into [`Interval`]s as time passes.
#[derive(Debug)]
pub struct IntervalClock {
    start: Instant,
    every: Duration,
    mark: Instant,
    mark_bytes: u64,
    intervals: Vec<Interval>,
}

impl IntervalClock {
    pub fn start(every: Duration) -> IntervalClock {
        let now = Instant::now();
        IntervalClock {
            start: now,
            every,
            mark: now,
            mark_bytes: 0,
            intervals: Vec::new(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Records `total` bytes done so far; closes an interval when one is due.
    pub fn observe(&mut self, total: u64) {
        let now = Instant::now();
        if now.duration_since(self.mark) >= self.every {
            self.cut(now, total);
        }
    }

    /// The intervals closed so far.
    pub fn intervals(&self) -> &[Interval] {
        &self.intervals
    }

    /// Closes the last, possibly short, interval and returns the time since start and all intervals.
    pub fn finish(mut self, total: u64) -> (Duration, Vec<Interval>) {
        let now = Instant::now();
        if total > self.mark_bytes || self.intervals.is_empty() {
            self.cut(now, total);
        }
        (now.duration_since(self.start), self.intervals)
    }

    fn cut(&mut self, now: Instant, total: u64) {
        self.intervals.push(Interval {
            start_secs: self.mark.duration_since(self.start).as_secs_f64(),
            secs: now.duration_since(self.mark).as_secs_f64(),
            bytes: total - self.mark_bytes,
        });
        self.mark = now;
        self.mark_bytes = total;
    }
}

/// Time during which at least one of several overlapping operations was under way: how busy a
/// pipeline stage was. Shared between the tasks of one stage.
#[derive(Debug, Clone, Default)]
pub struct BusyClock(Arc<std::sync::Mutex<Busy>>);

#[derive(Debug, Default)]
struct Busy {
    active: usize,
    since: Option<Instant>,
    total: Duration,
}

impl BusyClock {
    pub fn new() -> BusyClock {
        BusyClock::default()
    }

    /// One more operation under way.
    pub fn enter(&self) {
        let mut busy = self.0.lock().expect("busy clock lock");
        if busy.active == 0 {
            busy.since = Some(Instant::now());
        }
        busy.active += 1;
    }

    /// One operation done.
    pub fn leave(&self) {
        let mut busy = self.0.lock().expect("busy clock lock");
        busy.active = busy.active.saturating_sub(1);
        if busy.active == 0
            && let Some(since) = busy.since.take()
        {
            busy.total += since.elapsed();
        }
    }

    /// Busy time so far, an operation still under way counted up to now.
    pub fn total(&self) -> Duration {
        let busy = self.0.lock().expect("busy clock lock");
        busy.total + busy.since.map_or(Duration::ZERO, |since| since.elapsed())
    }
}

/// CPU time the process used during a measurement; 100 % is one core busy, as in iperf3.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuUse {
    pub user_secs: f64,
    pub system_secs: f64,
    pub percent: f64,
}

/// Reads the process's CPU time at the start of a measurement and again at its end.
#[derive(Debug, Clone, Copy)]
pub struct CpuClock {
    start: Instant,
    user: Duration,
    system: Duration,
}

impl CpuClock {
    pub fn start() -> CpuClock {
        let (user, system) = process_cpu_time();
        CpuClock {
            start: Instant::now(),
            user,
            system,
        }
    }

    pub fn finish(&self) -> CpuUse {
        let wall = self.start.elapsed().as_secs_f64();
        let (user, system) = process_cpu_time();
        let user_secs = user.saturating_sub(self.user).as_secs_f64();
        let system_secs = system.saturating_sub(self.system).as_secs_f64();
        CpuUse {
            user_secs,
            system_secs,
            percent: if wall > 0.0 {
                (user_secs + system_secs) * 100.0 / wall
            } else {
                0.0
            },
        }
    }
}

fn process_cpu_time() -> (Duration, Duration) {
    crate::sys::host::cpu_time().unwrap_or((Duration::ZERO, Duration::ZERO))
}

/// What the kernel knows of one TCP connection (TCP_INFO), for the figures iperf3 shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpFacts {
    /// Segments retransmitted since the connection opened.
    pub retransmits: u64,
    /// Congestion window in bytes.
    pub cwnd_bytes: u64,
}

/// Reads TCP_INFO of a connected socket; None where the kernel refuses.
pub fn tcp_facts(fd: std::os::fd::RawFd) -> Option<TcpFacts> {
    let info = crate::sys::socket::tcp_info(fd).ok()?;
    Some(TcpFacts {
        retransmits: info.tcpi_total_retrans as u64,
        cwnd_bytes: info.tcpi_snd_cwnd as u64 * info.tcpi_snd_mss as u64,
    })
}

/// Sets an integer SOL_SOCKET option (buffer sizes, low-water marks); best effort, since a
/// refused tuning changes the cost of a figure, not its truth.
pub fn set_socket_option(fd: std::os::fd::RawFd, option: libc::c_int, value: libc::c_int) {
    let _ = crate::sys::socket::set_option(fd, libc::SOL_SOCKET, option, value);
}

/// A SOL_SOCKET option's value as the kernel holds it (e.g. SO_SNDBUF after asking for one:
/// Linux doubles what is asked, within its floor and ceiling). None if the call fails.
pub fn socket_option(fd: std::os::fd::RawFd, option: libc::c_int) -> Option<libc::c_int> {
    crate::sys::socket::option(fd, libc::SOL_SOCKET, option).ok()
}

/// The socket buffer a window of -w came to: the smaller of the send and receive buffers the
/// kernel granted on `fd`.
pub fn granted_window(fd: std::os::fd::RawFd) -> Option<u64> {
    let send = socket_option(fd, libc::SO_SNDBUF)?;
    let receive = socket_option(fd, libc::SO_RCVBUF)?;
    u64::try_from(send.min(receive)).ok()
}

/// The path MTU the kernel holds for a connected socket (IP_MTU, or IPV6_MTU).
pub fn path_mtu(fd: std::os::fd::RawFd, ipv6: bool) -> Option<u32> {
    let (level, name) = if ipv6 {
        (libc::IPPROTO_IPV6, libc::IPV6_MTU)
    } else {
        (libc::IPPROTO_IP, libc::IP_MTU)
    };
    let mtu = crate::sys::socket::option(fd, level, name).ok()?;
    (mtu > 0).then_some(mtu as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copys_time_line_covers_its_fsync_tail_and_averages_to_its_rate() {
        let intervals = vec![
            Interval {
                start_secs: 0.0,
                secs: 0.5,
                bytes: 500,
            },
            Interval {
                start_secs: 0.5,
                secs: 0.2,
                bytes: 300,
            },
        ];
        let copy = Measurement::new(
            Workload::Copy,
            800,
            Duration::from_millis(1080),
            Conditions::default(),
            intervals.clone(),
        );
        let last = copy.intervals.last().unwrap();
        assert_eq!(copy.intervals.len(), 3);
        assert_eq!((last.start_secs, last.bytes), (0.7, 0));
        assert!((last.start_secs + last.secs - copy.secs).abs() < 1e-9);
        let drawn: f64 = copy.intervals.iter().map(|i| i.secs).sum();
        assert!((800.0 / drawn - copy.bytes_per_sec).abs() < 1e-6);
        // Other stages keep their intervals as measured.
        let net = Measurement::new(
            Workload::NetReceive,
            800,
            Duration::from_millis(1080),
            Conditions::default(),
            intervals,
        );
        assert_eq!(net.intervals.len(), 2);
    }

    #[test]
    fn one_latency_sample_agrees_with_itself() {
        let mut one_way = OneWay::new();
        one_way.record(Duration::from_nanos(40_352));
        let latency = one_way.latency("one");
        assert_eq!(latency.samples, 1);
        for figure in [
            latency.median_us,
            latency.mean_us,
            latency.p99_us,
            latency.p999_us,
            latency.max_us,
        ] {
            assert_eq!(figure, latency.min_us, "{latency:?}");
        }
        assert_eq!(latency.min_us, 20.176);
        assert_eq!(latency.quantile_precision_percent, 0.1);
    }

    #[test]
    fn latency_min_max_and_mean_are_exact_and_percentiles_stay_between_them() {
        let mut one_way = OneWay::new();
        for ns in [20_176u64, 20_190, 35_001, 99_999] {
            one_way.record(Duration::from_nanos(ns * 2));
        }
        let latency = one_way.latency("four");
        assert_eq!(latency.min_us, 20.176);
        assert_eq!(latency.max_us, 99.999);
        assert!((latency.mean_us - (20.176 + 20.19 + 35.001 + 99.999) / 4.0).abs() < 1e-9);
        assert!(latency.median_us >= latency.min_us && latency.p999_us <= latency.max_us);
        assert!(
            (latency.median_us - 20.19).abs() <= 20.19 * 0.001,
            "{latency:?}"
        );
    }

    #[test]
    fn intervals_add_up_to_the_total() {
        let mut clock = IntervalClock::start(Duration::from_millis(5));
        for step in 1..=4u64 {
            std::thread::sleep(Duration::from_millis(6));
            clock.observe(step * 100);
        }
        let (elapsed, intervals) = clock.finish(450);
        assert!(intervals.len() >= 4, "{intervals:?}");
        assert_eq!(intervals.iter().map(|i| i.bytes).sum::<u64>(), 450);
        let covered: f64 = intervals.iter().map(|i| i.secs).sum();
        assert!((covered - elapsed.as_secs_f64()).abs() < 1e-6);
    }
}

/// Round-trip-based latency figures, in microseconds, like ib_write_lat's and qperf's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// What one sample is, in words (e.g. "8-byte RDMA WRITE, one way = half the round trip").
    pub what: String,
    pub samples: u64,
    pub min_us: f64,
    pub median_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
    /// How far the median and percentiles may be from the exact sample, in percent (the
    /// histogram keeps 3 significant digits). Min, max and mean are exact, and no percentile
    /// lies outside min–max.
    #[serde(default)]
    pub quantile_precision_percent: f64,
}

/// Significant digits the latency histogram keeps: percentiles within 0.1 %.
const LATENCY_DIGITS: u8 = 3;

/// Round trips timed so far, kept as one-way times (half of each), like qperf and perftest
/// report them: bounded memory however many there are. Min, max and sum are kept exactly
/// beside the histogram, so one sample never disagrees with itself.
pub struct OneWay {
    histogram: hdrhistogram::Histogram<u64>,
    min_ns: u64,
    max_ns: u64,
    sum_ns: u128,
}

impl OneWay {
    pub fn new() -> OneWay {
        // Bounds fixed up front: a saturating record into an auto-resizing histogram clamps to
        // its first, tiny range. 1 ns to 60 s.
        OneWay {
            histogram: hdrhistogram::Histogram::new_with_bounds(1, 60_000_000_000, LATENCY_DIGITS)
                .expect("valid histogram bounds"),
            min_ns: u64::MAX,
            max_ns: 0,
            sum_ns: 0,
        }
    }

    /// One round trip that took `round_trip`.
    pub fn record(&mut self, round_trip: Duration) {
        let one_way = (round_trip.as_nanos() as u64 / 2).max(1);
        self.histogram.saturating_record(one_way);
        self.min_ns = self.min_ns.min(one_way);
        self.max_ns = self.max_ns.max(one_way);
        self.sum_ns += u128::from(one_way);
    }

    /// `warmup` untimed round trips, then timed ones while `rounds` wants more. `round_trip(n)`
    /// runs round `n` (from 1) and returns how long it took, or None when its answer never came:
    /// lost, left out of the figures but counted toward `rounds`. Returns the figures and how
    /// many timed round trips were lost.
    pub fn time(
        warmup: u32,
        rounds: Rounds,
        round_trip: impl FnMut(u64) -> anyhow::Result<Option<Duration>>,
    ) -> anyhow::Result<(OneWay, u64)> {
        let (one_way, lost, _) = OneWay::timed(warmup, rounds, round_trip, false)?;
        Ok((one_way, lost))
    }

    /// Like [`OneWay::time`], but a round trip failing with [`crate::interrupt::Interrupted`]
    /// after the warmup ends the timed ones early instead of failing: the figures so far, the
    /// lost ones, and the seconds they took when cut short (None when they all ran).
    pub fn time_until_interrupted(
        warmup: u32,
        rounds: Rounds,
        round_trip: impl FnMut(u64) -> anyhow::Result<Option<Duration>>,
    ) -> anyhow::Result<(OneWay, u64, Option<f64>)> {
        OneWay::timed(warmup, rounds, round_trip, true)
    }

    fn timed(
        warmup: u32,
        rounds: Rounds,
        mut round_trip: impl FnMut(u64) -> anyhow::Result<Option<Duration>>,
        partial: bool,
    ) -> anyhow::Result<(OneWay, u64, Option<f64>)> {
        for round in 1..=u64::from(warmup) {
            round_trip(round)?;
        }
        let mut one_way = OneWay::new();
        let mut lost = 0;
        let mut round = u64::from(warmup);
        let timed = Instant::now();
        while rounds.more(one_way.len() + lost, timed.elapsed()) {
            round += 1;
            match round_trip(round) {
                Ok(Some(took)) => one_way.record(took),
                Ok(None) => lost += 1,
                Err(err)
                    if partial
                        && !one_way.is_empty()
                        && err.is::<crate::interrupt::Interrupted>() =>
                {
                    return Ok((one_way, lost, Some(timed.elapsed().as_secs_f64())));
                }
                Err(err) => return Err(err),
            }
        }
        Ok((one_way, lost, None))
    }

    /// Round trips recorded.
    pub fn len(&self) -> u64 {
        self.histogram.len()
    }

    pub fn is_empty(&self) -> bool {
        self.histogram.is_empty()
    }

    /// The figures, `what` saying what one sample is.
    pub fn latency(&self, what: impl Into<String>) -> Latency {
        let us = |ns: u64| ns as f64 / 1000.0;
        let samples = self.histogram.len();
        if samples == 0 {
            return Latency {
                what: what.into(),
                samples,
                min_us: 0.0,
                median_us: 0.0,
                p99_us: 0.0,
                p999_us: 0.0,
                max_us: 0.0,
                mean_us: 0.0,
                quantile_precision_percent: 0.0,
            };
        }
        // The histogram gives a bucket's highest value: held within the exact bounds.
        let quantile = |q: f64| {
            us(self
                .histogram
                .value_at_quantile(q)
                .clamp(self.min_ns, self.max_ns))
        };
        Latency {
            what: what.into(),
            samples,
            min_us: us(self.min_ns),
            median_us: quantile(0.5),
            p99_us: quantile(0.99),
            p999_us: quantile(0.999),
            max_us: us(self.max_ns),
            mean_us: self.sum_ns as f64 / samples as f64 / 1000.0,
            quantile_precision_percent: 100.0 / 10f64.powi(i32::from(LATENCY_DIGITS)),
        }
    }
}

impl Default for OneWay {
    fn default() -> Self {
        OneWay::new()
    }
}
