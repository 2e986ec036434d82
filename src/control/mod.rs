//! The control protocol between a client and `xferbench serve`: versioned, length-prefixed frames.
//!
//! A client opens a control connection, says [`Opening::Hello`] with the protocol version and its
//! token, sends one [`Request`], and gets [`Reply::Ready`] with a session id and the data port.
//! It then opens the data connections (each starts with [`Opening::Join`]), waits for
//! [`Reply::Started`] once the server has them all, moves the bytes, and reads the results
//! ([`Reply::NetDone`], [`Reply::CopyDone`], [`Reply::DiskDone`]) on the control connection.
//! Anything the server refuses comes back as [`Reply::Error`] with a sentence for the user.

pub mod connection;
pub mod frame;

use serde::{Deserialize, Serialize};

pub use connection::Connection;

use crate::measure::{CpuUse, Measurement};
use crate::transport::Direction;
use crate::transport::memory::Flow;
use crate::transport::udp::{Received, Sent};
use crate::warning::Warning;

/// Bumped on any change a peer of the previous version would misread.
pub const PROTOCOL_VERSION: u32 = 2;
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
    /// After [`Reply::RdmaReady`]: the client's queue pair is connected, the server may write.
    Begin,
    /// After an RDMA or UDP test: the client is done; the server answers with its figures.
    /// During a TCP `net` test: the client stopped early (Ctrl-C); the server stops its streams
    /// and answers with its figures so far.
    Finished,
}

/// A file the client made on the server and no longer needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoveRequest {
    /// Relative to the server's root; a directory or a path leaving the root is refused.
    pub path: String,
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
    },
    /// Every data connection joined; bytes may flow.
    Started,
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
    /// The answer to [`Request::Remove`]: whether there was a file to remove.
    Removed {
        existed: bool,
    },
    /// A refusal or failure, in words for the user.
    Error {
        message: String,
    },
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
    pub received: Option<Received>,
    /// What the server sent (a download).
    pub sent: Option<Sent>,
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
