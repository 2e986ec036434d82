//! The control protocol between a client and `xferbench serve`: versioned, length-prefixed frames.
//!
//! A client opens a control connection, says [`Opening::Hello`] with the protocol version and its
//! token, sends one [`Request`], and gets [`Reply::Ready`] with a session id and the data port.
//! It then opens the data connections (each starts with [`Opening::Join`]), waits for
//! [`Reply::Started`] once the server has them all, moves the bytes, and reads the results
//! ([`Reply::NetDone`], [`Reply::CopyDone`], [`Reply::DiskDone`]) on the control connection.
//! Anything the server refuses comes back as [`Reply::Error`] with a sentence for the user.
//! A copy with `--resume` agrees where its bytes begin between the ready and the joins: an
//! upload's ready says what serve's temporary file holds ([`Partial`]), a download asks for the
//! digest of the source's prefix ([`Request::PrefixDigest`]), and the client then says
//! [`Request::ResumeFrom`].
//! A coordinator may ask a serve to measure toward another serve ([`Request::MeasureTo`]): that
//! serve becomes the other's client and answers with its figures ([`Reply::MeasuredTo`]).
//! [`Client`] is the client's end, shared by every path that goes through `serve`.

pub mod client;
pub mod connection;
pub mod frame;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use client::Client;
pub use connection::Connection;

use crate::file::tree::{FsyncPolicy, Listed, Totals};
use crate::measure::{CpuUse, Direction, Interval, Latency, Measurement, TransportKind};
use crate::warning::Warning;

/// Bumped on any change a peer of the previous version would misread.
pub const PROTOCOL_VERSION: u32 = 5;
/// Sent in every hello, so a stray client of another protocol is told apart from a version mismatch.
pub const PROTOCOL_NAME: &str = "xferbench";
/// The port `serve` listens on and clients dial when none is given.
pub const DEFAULT_PORT: u16 = 5301;

/// The first frame on every connection to the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Opening {
    /// Opens a control connection.
    Hello {
        protocol: String,
        version: u32,
        token: Option<String>,
    },
    /// Opens data connection `stream` (0-based) of a session the server made ready.
    Join { session: String, stream: u32 },
}

/// What a client asks of the server, one per control connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Memory to memory: the server sinks `upload_streams` and sources `download_streams`.
    Net(NetRequest),
    /// Receive a file into `path` (relative to the server's root), then fsync and rename it.
    Receive(FileRequest),
    /// Send the file at `path` (relative to the server's root).
    Send(FileRequest),
    /// Run a disk baseline in the server's root.
    Disk(DiskRequest),
    /// RDMA WRITE latency then bandwidth, memory to memory, from the client into the server.
    RdmaNet(RdmaNetRequest),
    /// Receive a file the client RDMA-WRITEs into the server's buffers.
    RdmaReceive(RdmaFileRequest),
    /// RDMA-WRITE the file at `path` into the client's buffers.
    RdmaSend(RdmaFileRequest),
    /// Round trips on one data connection: the server sends back every message of `size` bytes
    /// until the client closes it.
    Echo(EchoRequest),
    /// Memory to memory over UDP, through the server's UDP port (the same number as its TCP port).
    UdpNet(UdpNetRequest),
    /// UDP round trips: the server sends every datagram of the client back, until [`Request::Finished`].
    UdpEcho(EchoRequest),
    /// Remove the regular file at `path` (relative to the server's root), e.g. `run`'s copy
    /// once it is measured; answered with [`Reply::Removed`]. Added in protocol version 2.
    Remove(RemoveRequest),
    /// `copy -r` up: receive a tree into `path` (relative to the server's root) on the data
    /// connections, as records (`transport::tree::stream`); answered by [`Reply::TreeReady`],
    /// then [`Reply::TreeDone`] once every file landed. Added in protocol version 3.
    TreeReceive(TreeRequest),
    /// `copy -r` down: send the tree at `path` (relative to the server's root) on the data
    /// connections; [`Reply::TreeReady`] says its name and size, [`Reply::TreeDone`] what could
    /// not be sent. Added in protocol version 3.
    TreeSend(TreeRequest),
    /// `--resume` of a download, after [`Reply::Ready`]: the digest of the first `len` bytes of
    /// the file serve sends (`pipeline::prefix_digest` in `FileRequest::chunk` pieces), answered
    /// by [`Reply::PrefixDigest`]. At most once, before [`Request::ResumeFrom`]. Added in
    /// protocol version 4.
    PrefixDigest { len: u64 },
    /// `--resume`, after [`Reply::Ready`] (and a download's [`Request::PrefixDigest`]), before
    /// the data connections join: the bytes move from `offset` on. 0 (everything) or the end of
    /// the prefix checked: an upload's [`Partial::checked`], a download's digested `len`. Serve
    /// cuts its temporary file there. Added in protocol version 4.
    ResumeFrom { offset: u64 },
    /// `--verify` of an upload, after the client sent its last byte: the digest of what it read
    /// (`pipeline::Digest`, hex). serve holds what arrived to it before the rename, so a
    /// mismatch leaves no file. Added in protocol version 4.
    SourceDigest { digest: String },
    /// Measure toward another serve as its client (a mesh's pair): `net`, `lat` or a copy of a
    /// test file, from this serve to `peer`; answered by [`Reply::MeasuredTo`] within
    /// [`PeerTest::bound`]. Added in protocol version 5.
    MeasureTo(MeasureToRequest),
    /// After [`Reply::RdmaReady`]: the client's queue pair is connected, the server may write.
    Begin,
    /// After an RDMA or UDP test: the client is done; the server answers with its figures.
    /// During a TCP `net` test: the client stopped early (Ctrl-C); the server stops its streams
    /// and answers with its figures so far.
    Finished,
}

/// A test a serve runs toward another serve for its coordinator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasureToRequest {
    /// The other serve, `HOST:PORT` (port 5301 when left out; brackets around IPv6). The one
    /// host the asked serve connects to.
    pub peer: String,
    /// The other serve's token; None when it needs none.
    pub token: Option<String>,
    pub test: PeerTest,
}

/// Longest test one serve runs toward another: its figures (an interval a second) must fit
/// one result frame.
pub const MAX_PEER_SECS: f64 = 3600.0;
/// What a peer test takes beyond its own seconds: a handshake, the joins, the far figures.
const PEER_TEST_MARGIN: Duration = Duration::from_secs(30);
/// The slowest overall rate a peer copy is waited for (test file made, sent, landed), in
/// bytes per second: a copy has no -t, yet its wait must end.
pub const PEER_COPY_FLOOR: f64 = 1e6;

/// What a serve measures toward its peer, as `net`, `lat` and `copy` would from there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PeerTest {
    /// Memory to memory (`net`): over `via` tcp or udp, `streams` (-P; udp: 1), `secs` (-t),
    /// `len` bytes per write or datagram (-l; None: the path's default); `direction` upload:
    /// the asked serve sends, download: the peer sends (-R).
    Net {
        via: TransportKind,
        streams: u32,
        secs: f64,
        len: Option<u32>,
        direction: Direction,
    },
    /// Round trips (`lat -t`): `size`-byte messages over `via` tcp or udp for `secs` seconds.
    Lat {
        via: TransportKind,
        size: u32,
        secs: f64,
    },
    /// A copy over tcp on `streams` (-P) of a random test file of `size` bytes, made in the
    /// asked serve's root and landed in the peer's; both are removed afterwards.
    Copy { size: u64, streams: u32 },
}

impl PeerTest {
    /// How long the test may take from the request to its figures: the asked serve gives it
    /// up after that, and a coordinator waits that long plus its own handshake.
    pub fn bound(&self) -> Duration {
        let secs = match self {
            PeerTest::Net { secs, .. } | PeerTest::Lat { secs, .. } => *secs,
            PeerTest::Copy { size, .. } => *size as f64 / PEER_COPY_FLOOR,
        };
        Duration::try_from_secs_f64(secs)
            .unwrap_or(Duration::MAX)
            .saturating_add(PEER_TEST_MARGIN)
    }
}

/// A file the client made on the server and no longer needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoveRequest {
    /// Relative to the server's root; a directory (unless `tree`) or a path leaving the root is
    /// refused.
    pub path: String,
    /// Remove a directory and everything in it (`run`'s tree of small files), never through a
    /// link; not the root itself. Added in protocol version 3.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tree: bool,
}

/// The server's side of a latency test.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EchoRequest {
    /// Bytes per message, each way.
    pub size: u32,
}

/// One side of an RDMA connection, exchanged over the control connection the way perftest does
/// without rdma_cm.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RdmaEndpoint {
    pub lid: u16,
    /// Queue pair number.
    pub qpn: u32,
    /// First packet sequence number this side sends.
    pub psn: u32,
    pub gid: [u8; 16],
    /// The port's active MTU in bytes; the connection uses the smaller of the two.
    pub mtu: u32,
    /// Buffers the peer may write into.
    pub slots: Vec<RdmaSlot>,
}

/// A registered buffer a peer may RDMA-WRITE into.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RdmaSlot {
    pub addr: u64,
    pub rkey: u32,
    pub len: u32,
}

/// The server's side of an RDMA memory-to-memory test.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RdmaNetRequest {
    /// Bytes per RDMA WRITE of the bandwidth test.
    pub size: u32,
    /// WRITEs in flight.
    pub depth: u32,
    /// Round trips of the latency test the server answers; None: until the client's round
    /// with the stop mark (`lat -t`; an older server refuses that request as malformed).
    pub round_trips: Option<u32>,
    /// Seconds the bandwidth test lasts, omitted start included: the server waits that long.
    pub secs: f64,
    pub endpoint: RdmaEndpoint,
}

/// A file moved by RDMA WRITE, and the client's end of the connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RdmaFileRequest {
    pub file: FileRequest,
    pub endpoint: RdmaEndpoint,
}

/// The server's side of a memory-to-memory test.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetRequest {
    /// Streams the client sends on (the server counts and discards).
    pub upload_streams: u32,
    /// Streams the server sends on (after the upload streams, in join order).
    pub download_streams: u32,
    /// How long the server sends, omitted seconds included.
    pub secs: f64,
    /// Seconds at the start that are not counted (TCP slow start), like iperf3's -O.
    pub omit_secs: f64,
    /// Bytes per write.
    pub len: u32,
    /// Socket buffer size to set on the server's data sockets, like iperf3's -w.
    pub window: Option<u32>,
    /// Seconds between the server's interval samples, like iperf3's -i.
    pub interval_secs: f64,
    /// The sending end sends with sendfile(2) (`-Z`); absent from older clients: false.
    #[serde(default)]
    pub zerocopy: bool,
}

/// The server's side of a UDP memory-to-memory test.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UdpNetRequest {
    /// Upload: the client sends, the server receives; download: the other way.
    pub direction: Direction,
    /// Bytes per datagram.
    pub len: u32,
    /// Bytes per second the sender holds to; None: as fast as it can.
    pub rate: Option<f64>,
    /// How long the sender sends, omitted seconds included.
    pub secs: f64,
    /// Seconds at the start not counted.
    pub omit_secs: f64,
    pub interval_secs: f64,
    /// Socket buffer size to set on the server's UDP socket.
    pub window: Option<u32>,
}

/// A file to move, and how.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileRequest {
    pub path: String,
    /// File size (receive only; a send answers with the size in [`Reply::Ready`]).
    pub size: u64,
    pub streams: u32,
    /// Bytes per chunk on the wire and per disk I/O.
    pub chunk: u32,
    /// Disk I/Os in flight on the server.
    pub iodepth: u32,
    /// Compute a digest of the data as it passes.
    pub verify: bool,
    /// Replace an existing file at `path` (receive only).
    pub force: bool,
    /// The source's file name: when `path` is a directory, the file goes into it (like cp/scp).
    #[serde(default)]
    pub name: Option<String>,
    /// `--resume`: a receive takes up the temporary file a copy left (and keeps its own if it
    /// fails); either way [`Request::ResumeFrom`] follows [`Reply::Ready`]. Added in protocol
    /// version 4.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resume: bool,
}

/// What serve found of the temporary file a receive with `--resume` takes up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Partial {
    /// Its length.
    pub found: u64,
    /// The bytes of it worth checking (`transport::resumable_prefix` with the request's chunk
    /// and iodepth).
    pub checked: u64,
    /// The digest of those bytes (`pipeline::prefix_digest`, hex).
    pub digest: String,
}

/// A tree to move (`copy -r`), and how.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TreeRequest {
    /// Receive: where the tree lands (an existing directory: inside it under `name`; else as
    /// this new path). Send: the directory to send.
    pub path: String,
    /// Receive: the source's name (one plain name).
    pub name: Option<String>,
    /// Receive: what the client is about to send, for the server's limits.
    pub totals: Option<Totals>,
    /// Data connections.
    pub streams: u32,
    /// Bytes per read and write.
    pub block: u32,
    /// Receive: each landed file is read back and held to the sender's xxh3-128. Send: each
    /// file's digest goes in its trailer.
    pub verify: bool,
    /// Receive: replace existing files.
    pub force: bool,
    /// Receive: when the landed files are made durable.
    pub fsync: FsyncPolicy,
}

/// The server's side of a tree copy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TreeDone {
    /// What landed (receive); nothing (send: the client counts what landed).
    pub landed: Totals,
    /// Entries that failed on the server's side (paths relative to its root).
    pub failed: Listed,
    /// Files that moved while they were read (receive: as the client's trailers said).
    pub changed: Listed,
    /// Special files the server did not send.
    pub skipped: Listed,
    pub cpu: CpuUse,
    pub warnings: Vec<Warning>,
}

/// A disk baseline on the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiskRequest {
    pub size: u64,
    pub block: u32,
    pub iodepth: u32,
}

/// Everything the server says.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    Welcome {
        version: u32,
        server: String,
    },
    /// The session is set up: join `streams` data connections on `port` with `session`.
    Ready {
        session: String,
        port: u16,
        /// The file's size, for a send.
        size: Option<u64>,
        /// A receive with `--resume`: the temporary file serve found (None: there was none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partial: Option<Partial>,
    },
    /// Every data connection joined; bytes may flow.
    Started,
    /// A tree copy is set up: join `streams` data connections on `port` with `session`.
    TreeReady {
        session: String,
        port: u16,
        /// Where the tree lands or is, relative to the root (for the report).
        path: String,
        /// Send: the tree's name, for the client to land it under.
        name: Option<String>,
        /// Send: what the tree holds, for the client's progress bar.
        totals: Option<Totals>,
    },
    /// The server's end of an RDMA connection is up (its queue pair ready to receive).
    RdmaReady {
        endpoint: RdmaEndpoint,
        /// The file's size, for a send.
        size: Option<u64>,
    },
    /// The UDP session is set up: the client says Hello on UDP `port` with `key`.
    UdpReady {
        port: u16,
        key: u64,
    },
    NetDone(NetDone),
    UdpDone(UdpDone),
    CopyDone(CopyDone),
    DiskDone(DiskDone),
    TreeDone(TreeDone),
    /// The answer to [`Request::PrefixDigest`] (hex).
    PrefixDigest {
        digest: String,
    },
    /// The answer to [`Request::Remove`]: whether there was a file to remove.
    Removed {
        existed: bool,
    },
    /// The answer to [`Request::MeasureTo`].
    MeasuredTo(MeasuredTo),
    /// A refusal or failure, in words for the user.
    Error {
        message: String,
    },
}

/// What a serve measured toward its peer, as that peer's client: the figures `net`, `lat` and
/// `copy` report there.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeasuredTo {
    /// The peer, as asked.
    pub peer: String,
    pub path: TransportKind,
    /// Net: the sender's figure (`net_send`) then the receiver's (`net_receive`), the one to
    /// trust; copy: the copy's (`copy`, fsync on the peer included); lat: none.
    pub measurements: Vec<Measurement>,
    /// Lat: one way, half of each round trip, in microseconds.
    pub latency: Option<Latency>,
    /// Net over tcp: segments the sender retransmitted.
    pub retransmits: Option<u64>,
    /// Net over udp: what the receiver lost of what was sent.
    pub datagrams: Option<DatagramLoss>,
    /// CPU use of the asked serve's process during the test.
    pub cpu: CpuUse,
    /// The peer's, when it says.
    pub peer_cpu: Option<CpuUse>,
    /// Paths in them are relative to the asked serve's root.
    pub warnings: Vec<Warning>,
}

/// A UDP test's losses, as `net --via udp` reports them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatagramLoss {
    pub sent: u64,
    pub lost: u64,
    pub loss_percent: f64,
    /// RFC 3550 interarrival jitter at the end, in microseconds.
    pub jitter_us: f64,
}

/// The server's figures of a memory-to-memory test.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetDone {
    /// What the server received (the upload streams).
    pub received: Option<Flow>,
    /// What the server sent (the download streams).
    pub sent: Option<Flow>,
    pub cpu: CpuUse,
}

/// The server's figures of a UDP test.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UdpDone {
    /// What the server received (an upload).
    pub received: Option<DatagramsReceived>,
    /// What the server sent (a download).
    pub sent: Option<DatagramsSent>,
    /// Datagrams that reached the server's UDP port from other senders, ignored.
    pub foreign: u64,
    pub cpu: CpuUse,
}

/// The server's side of a file copy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CopyDone {
    /// Bytes written (receive) or read (send) on the server's disk.
    pub bytes: u64,
    /// Seconds the server's disk had at least one I/O in flight.
    pub disk_busy_secs: f64,
    /// Seconds at least one stream was sending (send only).
    pub stream_busy_secs: f64,
    /// Seconds of the final fsync (receive only).
    pub fsync_secs: f64,
    /// O_DIRECT on the server's file.
    pub direct: bool,
    pub digest: Option<String>,
    pub cpu: CpuUse,
    /// What makes the server's side of the figure less true (paths relative to its root).
    pub warnings: Vec<Warning>,
}

/// A baseline of the server's disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiskDone {
    pub measurements: Vec<Measurement>,
    pub warnings: Vec<String>,
    /// The device of the server's root, so a client on the same machine and file system knows
    /// one disk serves both ends.
    #[serde(default)]
    pub device: Option<crate::file::DeviceId>,
}

/// What one side saw of its streams, the omitted start left out.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Flow {
    pub stream_bytes: Vec<u64>,
    pub stream_retransmits: Vec<Option<u64>>,
    pub stream_intervals: Vec<Vec<Interval>>,
    /// Bytes each stream moved during the omitted start.
    pub stream_omitted_bytes: Vec<u64>,
    /// From the end of the omitted start to the last byte.
    pub secs: f64,
}

impl Flow {
    /// Moves the receiver's omitted-start cut to the sender's, by bytes: each end starts counting
    /// on its own clock, so bytes in flight when the sender's omitted start ended would otherwise
    /// count for the receiver only. Afterwards a receiver never counts more than its sender.
    pub fn align_to_sender(&mut self, sender: &Flow) {
        for i in 0..self
            .stream_bytes
            .len()
            .min(sender.stream_omitted_bytes.len())
        {
            let received =
                self.stream_omitted_bytes.get(i).copied().unwrap_or(0) + self.stream_bytes[i];
            let counted = received.saturating_sub(sender.stream_omitted_bytes[i]);
            let counted_here = self.stream_bytes[i];
            self.stream_bytes[i] = counted;
            let Some(intervals) = self.stream_intervals.get_mut(i) else {
                continue;
            };
            // The difference belongs to the first counted intervals.
            if counted >= counted_here {
                if let Some(first) = intervals.first_mut() {
                    first.bytes += counted - counted_here;
                }
            } else {
                let mut excess = counted_here - counted;
                for interval in intervals.iter_mut() {
                    let taken = excess.min(interval.bytes);
                    interval.bytes -= taken;
                    excess -= taken;
                }
            }
        }
    }

    pub fn bytes(&self) -> u64 {
        self.stream_bytes.iter().sum()
    }

    pub fn retransmits(&self) -> Option<u64> {
        self.stream_retransmits
            .iter()
            .copied()
            .try_fold(0u64, |sum, r| r.map(|r| sum + r))
    }
}

/// What the sender of a UDP test counted (the omitted start left out).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DatagramsSent {
    pub datagrams: u64,
    pub bytes: u64,
    /// From the first counted datagram to the last.
    pub secs: f64,
    pub intervals: Vec<Interval>,
}

/// What the receiver of a UDP test counted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DatagramsReceived {
    /// Distinct datagrams (a duplicate counts once).
    pub datagrams: u64,
    pub bytes: u64,
    /// From the first arrival to the last.
    pub secs: f64,
    /// Datagrams that arrived after one numbered higher.
    pub out_of_order: u64,
    pub duplicates: u64,
    /// RFC 3550 interarrival jitter at the end, in microseconds.
    pub jitter_us: f64,
    /// Highest sequence number seen, plus one.
    pub expected: u64,
    pub intervals: Vec<DatagramInterval>,
}

/// One interval at the receiver, iperf3 -u's server line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatagramInterval {
    pub start_secs: f64,
    pub secs: f64,
    pub bytes: u64,
    pub datagrams: u64,
    /// Sequence numbers that fell in this interval's range: from the one after the highest
    /// seen before it to the highest seen by its end; the last interval also takes the
    /// datagrams sent after the last arrival. The intervals' `expected` add up to `sent`.
    pub expected: u64,
    /// Sequence numbers of its range that never arrived: a late arrival is taken back from
    /// the interval its number belongs to, so the intervals' losses add up to the total.
    pub lost: u64,
    pub out_of_order: u64,
    /// RFC 3550 jitter at the end of the interval, in microseconds.
    pub jitter_us: f64,
}

impl DatagramInterval {
    /// Its bytes, as every path's intervals count them.
    pub fn interval(&self) -> Interval {
        Interval {
            start_secs: self.start_secs,
            secs: self.secs,
            bytes: self.bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_without_resume_says_nothing_of_it_on_the_wire() {
        let request = FileRequest {
            path: "a".into(),
            size: 1,
            streams: 1,
            chunk: 4096,
            iodepth: 1,
            verify: false,
            force: false,
            name: None,
            resume: false,
        };
        let json = serde_json::to_string(&request).unwrap();
        assert!(!json.contains("resume"), "{json}");
        let ready = Reply::Ready {
            session: "s".into(),
            port: 1,
            size: None,
            partial: None,
        };
        let json = serde_json::to_string(&ready).unwrap();
        assert!(!json.contains("partial"), "{json}");
    }

    #[test]
    fn a_resumed_upload_reads_back_what_serve_found() {
        let json = r#"{"type":"ready","session":"s","port":1,"size":null,
            "partial":{"found":12,"checked":8,"digest":"ab"}}"#;
        let Reply::Ready {
            partial: Some(partial),
            ..
        } = serde_json::from_str::<Reply>(json).unwrap()
        else {
            panic!("not a ready with a partial");
        };
        assert_eq!((partial.found, partial.checked), (12, 8));
        let from: Request = serde_json::from_str(r#"{"type":"resume_from","offset":8}"#).unwrap();
        assert!(matches!(from, Request::ResumeFrom { offset: 8 }));
    }

    #[test]
    fn a_measure_to_request_reads_back_as_sent_for_every_test() {
        let tests = [
            PeerTest::Net {
                via: TransportKind::Udp,
                streams: 1,
                secs: 2.5,
                len: Some(1472),
                direction: Direction::Download,
            },
            PeerTest::Lat {
                via: TransportKind::Tcp,
                size: 8,
                secs: 1.0,
            },
            PeerTest::Copy {
                size: 8 << 20,
                streams: 4,
            },
        ];
        for test in tests {
            let request = MeasureToRequest {
                peer: "[2001:db8::2]:5301".into(),
                token: Some("t".into()),
                test,
            };
            let json = serde_json::to_string(&Request::MeasureTo(request.clone())).unwrap();
            assert!(json.contains(r#""type":"measure_to""#), "{json}");
            let Request::MeasureTo(back) = serde_json::from_str(&json).unwrap() else {
                panic!("not a measure_to: {json}");
            };
            assert_eq!(back, request);
        }
    }

    #[test]
    fn a_measured_to_reply_reads_back_with_its_figures() {
        let receiver = Measurement::new(
            crate::measure::Workload::NetReceive,
            1_000_000,
            Duration::from_secs(1),
            Default::default(),
            Vec::new(),
        );
        let reply = Reply::MeasuredTo(MeasuredTo {
            peer: "10.0.0.2:5301".into(),
            path: TransportKind::Udp,
            measurements: vec![receiver.clone()],
            latency: None,
            retransmits: None,
            datagrams: Some(DatagramLoss {
                sent: 10,
                lost: 1,
                loss_percent: 10.0,
                jitter_us: 3.5,
            }),
            cpu: CpuUse::default(),
            peer_cpu: None,
            warnings: vec![Warning::Loopback],
        });
        let json = serde_json::to_string(&reply).unwrap();
        let Reply::MeasuredTo(back) = serde_json::from_str(&json).unwrap() else {
            panic!("not a measured_to: {json}");
        };
        assert_eq!(back.measurements, vec![receiver]);
        assert_eq!(back.datagrams.map(|d| d.lost), Some(1));
        assert_eq!(back.warnings, vec![Warning::Loopback]);
    }

    #[test]
    fn a_peer_test_is_bounded_by_its_seconds_or_its_size_plus_a_margin() {
        let lat = PeerTest::Lat {
            via: TransportKind::Tcp,
            size: 8,
            secs: 5.0,
        };
        assert_eq!(lat.bound(), Duration::from_secs(5) + PEER_TEST_MARGIN);
        let copy = PeerTest::Copy {
            size: 100_000_000,
            streams: 1,
        };
        assert_eq!(copy.bound(), Duration::from_secs(100) + PEER_TEST_MARGIN);
        let absurd = PeerTest::Net {
            via: TransportKind::Tcp,
            streams: 1,
            secs: f64::NAN,
            len: None,
            direction: Direction::Upload,
        };
        assert_eq!(absurd.bound(), Duration::MAX);
    }
}
