//! The command line: parsing and validation, nothing else.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::disk::durability::{DURABILITY_MAX_SIZE, DurabilityOptions};
use crate::disk::{
    BaselineOptions, DEFAULT_TEST_SIZE, EngineChoice, FillMode, GenOptions, Passes, Pattern,
};
use crate::plan::RunOptions;
use crate::report::export::Format;
use crate::serve::ServeOptions;
use crate::transport::{
    CopyPlan, DEFAULT_NET_LEN, LatPlan, Location, NetPlan, Peer, Transport, TransportKind,
};
use crate::units::parse_size;

/// How fast does a file really go from this disk to that disk, and what holds it back?
///
/// Sizes take K, M, G, T (powers of 1024, like fallocate and fio) or KB, MB, GB, TB (powers of
/// 1000). Figures are printed in decimal units (1 MB/s = 10^6 bytes/s) and in bits (Gb/s).
///
/// Exit status: 0 success, 1 failure (one line on stderr says what and where), 2 bad usage,
/// 130 interrupted by Ctrl-C or SIGTERM, within about a second (partial files removed; net and
/// lat print the figures so far; mesh first waits for the tests under way, a second Ctrl-C ends
/// it at once).
#[derive(Debug, Parser)]
#[command(name = "xferbench", version, about, long_about, max_term_width = 100)]
pub struct Cli {
    /// No progress output on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Everything, then the verdict: which stage holds a copy back.
    ///
    /// Stages: (1) a random test file in --dir (reused when valid); (2) the source disk's read
    /// here and the destination disk's write on the server; (3) for each path, its latency (1000
    /// round trips of 8 bytes, like `lat`) and memory to memory; (4) a verified disk-to-disk copy
    /// for each path; (5) the verdict: bound = min(source read,
    /// network, destination write), the stage at the bound, and copy ÷ bound. Without HOST a
    /// server is started inside this process on loopback, its root a directory in --dir.
    Run(RunArgs),
    /// Make a test file: fallocate the full size, then fill it with random data (O_DIRECT).
    ///
    /// The file is written under a temporary name and renamed when complete, so an error or
    /// Ctrl-C never leaves a partial file behind.
    Gen(GenArgs),
    /// Measure a local disk: sequential write (timed through fsync) and read, O_DIRECT.
    ///
    /// PATH is a directory to write a test file in (removed afterwards), or an existing file
    /// to read. Each figure is placed against device classes (HDD, SATA SSD, NVMe) and link
    /// classes (1/10/25/40 GbE).
    Disk(DiskArgs),
    /// The peer daemon: receives and sends files, sinks and sources memory, measures its disk.
    ///
    /// Every path a client names stays inside --root. Off loopback a token is required: give one
    /// with --token or --token-file, or one is generated and printed. A client holding the token
    /// may ask it to measure toward another serve (net or lat over tcp or udp, or a copy of a
    /// test file made in --root and removed on both ends), within its --max-clients. Stops on
    /// Ctrl-C or SIGTERM, removing partial files.
    Serve(ServeArgs),
    /// Memory to memory over the network, like iperf3 (same flags): the network alone.
    ///
    /// Random payload, per-interval lines (per stream with -P, and SUM), sender and receiver
    /// rates, TCP retransmits and CPU use on both ends. Needs `xferbench serve` on HOST, or, with
    /// --via ssh, any SSH server (random bytes into `cat > /dev/null` per connection: the cipher
    /// and the network; uploads only). --via udp sends numbered datagrams to serve's UDP port and
    /// reports loss, out of order, duplicates and jitter, like nuttcp -u and iperf3 -u; it sends
    /// as fast as it can unless -b holds it to a rate (not 1 Mb/s by default, as they do).
    Net(NetArgs),
    /// Latency by round trips, like qperf's tcp_lat and perftest's ib_write_lat.
    ///
    /// Sends a message, waits for it to come back, and reports one way as half the round trip:
    /// min, median, mean, p99, p99.9 and max. Needs `xferbench serve` on HOST, or, with --via
    /// ssh, any SSH server (the message goes into `cat`, which sends it back).
    Lat(LatArgs),
    /// Copy a file disk to disk through `xferbench serve`, over SSH, or between two local paths,
    /// with a progress bar.
    ///
    /// One of SRC and DEST is HOST[:PORT]:PATH, PATH relative to the server's --root (scp-like:
    /// an existing directory, a trailing / or an empty PATH keeps the file's name), or neither is:
    /// a copy on this machine, e.g. to or from a mounted SMB or NFS share, where the kernel's
    /// file-system client carries the bytes (no --via, no -P). The file is read with O_DIRECT
    /// (where the file system takes it) into a fixed pool of buffers, spread over -P streams,
    /// written at its offsets, fsynced and renamed into place: an interrupted copy never leaves a
    /// file under the final name. With --via ssh, [USER@]HOST[:PORT]:PATH is any SSH server: an upload
    /// goes through a far dd (-P N: one range per connection), a -P 1 download through scp -f;
    /// host keys are checked against known_hosts like OpenSSH.
    Copy(CopyArgs),
    /// Measure between many serves, each pair from one toward the other, and find the slow host.
    ///
    /// HOST[:PORT] each run `xferbench serve`; this machine only coordinates: it asks each
    /// sender (with its token) to measure toward each receiver (with that one's token), so no
    /// test byte passes through here. By default every ordered pair is measured, in rounds of a
    /// round-robin tournament: the pairs of a round have no host in common and start together,
    /// so no test shares a host's link with another (n hosts: 2(n-1) rounds, 2n when n is odd).
    /// Prints a matrix per test (rows send, columns receive), the pairs that failed and why, and
    /// names a host whose every figure in (or out) is below 0.7x the others' median. A pair that
    /// fails keeps its error and the rest are measured; exit status 1 then. Ctrl-C: the tests
    /// under way are waited for (each within its bound), no more start, exit 130; a second
    /// Ctrl-C ends it at once, and each serve stops its test when the coordinator goes away.
    Mesh(MeshArgs),
    /// Two -J reports of one command compared, figure by figure: old, new, the change (three or
    /// more: a trend).
    ///
    /// Each throughput and latency figure of the reports (run, net, lat, disk, copy or mesh;
    /// a --json-stream file's last line counts as its report) is marked better, worse or within
    /// noise: by Welch's t-test (two-sided, p < 0.05) where both reports have 3 or more runs of
    /// it (run --repeat 3), else by --threshold. Conditions that differ (O_DIRECT, fsync,
    /// streams, MTU, cipher, block size, mount) are said under the figures they touch, and the
    /// host's (kernel, xferbench) and the command's parameters above. Reports of other
    /// commands or schemas are refused (exit 2). --fail-on-regression: exit 1 when a figure got
    /// worse beyond noise, for CI and cron. Three reports or more: each figure in every report,
    /// the change from the first to the last, and the last report judged against the one before
    /// (--fail-on-regression looks at that last step); --svg draws each figure over them.
    Diff(DiffArgs),
    /// Internal: one test a serve was asked to run toward another serve, as a child process of
    /// that serve (its job as JSON on stdin, its figures as JSON on stdout).
    #[command(hide = true, name = "peer-test")]
    PeerTest,
}

/// How a client proves itself to a server that requires a token.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The token `xferbench serve` printed (or was given).
    #[arg(long, value_name = "TOKEN", conflicts_with = "token_file")]
    pub token: Option<String>,

    /// Read the token from the first line of FILE.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

impl TokenArgs {
    /// The token given, read from its file if need be.
    pub fn token(&self) -> anyhow::Result<Option<String>> {
        read_token(self.token.as_deref(), self.token_file.as_deref())
    }
}

fn read_token(
    token: Option<&str>,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Option<String>> {
    if let Some(token) = token {
        return Ok(Some(token.to_string()));
    }
    let Some(file) = file else { return Ok(None) };
    let text = std::fs::read_to_string(file).map_err(|err| {
        anyhow::anyhow!(
            "cannot read the token: {}",
            crate::file::describe_path_error(file, err)
        )
    })?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        anyhow::bail!(
            "{} is empty: put the token on its first line",
            file.display()
        );
    }
    Ok(Some(token))
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on (port 0 picks a free one, printed at start); an address
    /// alone listens on port 5301, as iperf3's -B keeps its port.
    #[arg(long, value_name = "ADDR[:PORT]", default_value = "0.0.0.0:5301", value_parser = parse_listen)]
    pub listen: std::net::SocketAddr,

    /// Directory clients read from and write to [default: a fresh temporary directory].
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Token clients must give (required off loopback; generated if not given).
    #[arg(long, value_name = "TOKEN", conflicts_with = "token_file")]
    pub token: Option<String>,

    /// Read the token from the first line of FILE.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Refuse files (and disk tests) larger than SIZE.
    #[arg(long, value_name = "SIZE", value_parser = parse_size_arg)]
    pub max_bytes: Option<u64>,

    /// Clients served at once; more are told the server is busy.
    #[arg(long, value_name = "N", default_value_t = crate::serve::DEFAULT_MAX_CLIENTS,
          value_parser = parse_max_clients)]
    pub max_clients: usize,

    /// Seconds a control connection may stay silent before its request (an SSH connection:
    /// without any message), and a client's data may stop moving before its session ends
    /// (net: at most 10 s).
    #[arg(long, value_name = "SECS", default_value_t = 30.0, value_parser = parse_secs)]
    pub idle_timeout: f64,

    /// Also run an SSH server on ADDR:PORT, for `--via ssh` and OpenSSH's `scp -O`: public keys
    /// only, no shell (scp -t/-f and the SSH path's commands, paths confined to --root).
    /// Needs --authorized-keys. It takes --max-clients × 32 connections (a client's -P N opens N).
    #[arg(long, value_name = "ADDR:PORT", requires = "authorized_keys")]
    pub ssh_listen: Option<std::net::SocketAddr>,

    /// OpenSSH authorized_keys file: the public keys allowed to log in over SSH (lines with
    /// options such as from= or command= are skipped, said at start).
    #[arg(long, value_name = "FILE", requires = "ssh_listen")]
    pub authorized_keys: Option<PathBuf>,

    /// The SSH server's host key, an OpenSSH private key without passphrase
    /// [default: a fresh ed25519 key; its fingerprint is printed at start].
    #[arg(long, value_name = "FILE", requires = "ssh_listen")]
    pub host_key: Option<PathBuf>,

    #[command(flatten)]
    pub rdma: RdmaArgs,
}

impl ServeArgs {
    pub fn token(&self) -> anyhow::Result<Option<String>> {
        read_token(self.token.as_deref(), self.token_file.as_deref())
    }

    /// The SSH server asked for with --ssh-listen, if any.
    pub fn ssh(&self) -> Option<crate::serve::ssh::SshOptions> {
        let listen = self.ssh_listen?;
        Some(crate::serve::ssh::SshOptions {
            listen,
            // clap requires it with --ssh-listen.
            authorized_keys: self.authorized_keys.clone()?,
            host_key: self.host_key.clone(),
        })
    }
}

#[derive(Debug, Args)]
pub struct NetArgs {
    /// The server: HOST or HOST:PORT (port 5301 by default; with --via ssh [USER@]HOST[:PORT],
    /// port 22 or ~/.ssh/config's), [v6]:PORT for IPv6.
    pub host: String,

    /// Parallel streams (connections) in each direction.
    #[arg(short = 'P', long, value_name = "N", default_value_t = 1,
          value_parser = parse_streams)]
    pub parallel: usize,

    /// Seconds to transmit (after the omitted start).
    #[arg(short = 't', long = "time", value_name = "SECS", default_value_t = 10.0, value_parser = parse_secs)]
    pub secs: f64,

    /// Reverse: the server sends, the client receives.
    #[arg(short = 'R', long, conflicts_with = "bidir")]
    pub reverse: bool,

    /// Both directions at once.
    #[arg(long)]
    pub bidir: bool,

    /// Seconds at the start not counted (TCP slow start), shown as (omitted).
    #[arg(short = 'O', long, value_name = "SECS", default_value_t = 0.0, value_parser = parse_omit)]
    pub omit: f64,

    /// Seconds between interval lines.
    #[arg(short = 'i', long, value_name = "SECS", default_value_t = 1.0, value_parser = parse_interval)]
    pub interval: f64,

    /// Bytes per write, 128K by default (--via rdma: per RDMA WRITE, -s like ib_write_bw;
    /// --via udp: per datagram, by default the largest that fits the path MTU: 1472 at MTU 1500,
    /// 8972 at 9000).
    #[arg(short = 'l', visible_short_alias = 's', long, value_name = "LEN", value_parser = parse_len)]
    pub length: Option<usize>,

    /// --via udp: hold the sender to RATE bits/s (10G, 2.5G, 500M), like iperf3 -b.
    /// Without it the sender goes as fast as it can, and the loss shows what the path dropped.
    #[arg(short = 'b', long, value_name = "RATE", value_parser = crate::units::parse_bitrate,
          conflicts_with = "max")]
    pub bitrate: Option<f64>,

    /// --via udp: send as fast as the sender can (the default; says so explicitly).
    #[arg(long)]
    pub max: bool,

    /// RDMA WRITEs kept in flight (--via rdma), like ib_write_bw's --tx-depth (-q is --quiet).
    #[arg(
        short = 'Q',
        long,
        visible_alias = "tx-depth",
        value_name = "N",
        default_value_t = 128
    )]
    pub queue_depth: usize,

    /// Socket buffer size (SO_SNDBUF/SO_RCVBUF) on both ends; the size the kernel granted (it
    /// doubles what is asked, and has a floor) is shown beside it.
    #[arg(short = 'w', long, value_name = "SIZE", value_parser = parse_len)]
    pub window: Option<usize>,

    /// --via tcp: the sending end (the server's with -R, both with --bidir) sends with
    /// sendfile(2) from an in-memory file of the payload, like iperf3 -Z: the socket takes its
    /// pages without a copy from the sender's memory.
    #[arg(short = 'Z', long)]
    pub zerocopy: bool,

    /// Transfer path: tcp, ssh, rdma or udp.
    #[arg(long, value_enum, default_value_t = crate::transport::TransportKind::Tcp)]
    pub via: crate::transport::TransportKind,

    /// Print the result as one JSON object on stdout instead of text.
    #[arg(short = 'J', long)]
    pub json: bool,

    /// Print one JSON object a line as things happen (start, each interval, each phase's end,
    /// the end with the whole -J report), each flushed, like iperf3's --json-stream.
    #[arg(long, conflicts_with = "json")]
    pub json_stream: bool,

    #[command(flatten)]
    pub token: TokenArgs,

    #[command(flatten)]
    pub ssh: SshArgs,

    #[command(flatten)]
    pub rdma: RdmaArgs,
}

#[derive(Debug, Args)]
pub struct LatArgs {
    /// The server: HOST or HOST:PORT (port 5301 by default; with --via ssh [USER@]HOST[:PORT],
    /// port 22 or ~/.ssh/config's), [v6]:PORT for IPv6.
    pub host: String,

    /// Bytes per message, each way (--via rdma: 8, the round's number; --via udp: up to 65507).
    #[arg(short = 's', long, value_name = "SIZE", default_value = "8", value_parser = parse_len)]
    pub size: usize,

    /// Timed round trips, after 100 untimed ones.
    #[arg(short = 'n', long, value_name = "COUNT", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub count: u32,

    /// Seconds of timed round trips instead of a count (after 100 untimed ones), like iperf3's -t.
    #[arg(short = 't', long = "time", value_name = "SECS", conflicts_with = "count",
          value_parser = parse_secs)]
    pub secs: Option<f64>,

    /// Transfer path: tcp, udp, ssh or rdma.
    #[arg(long, value_enum, default_value_t = crate::transport::TransportKind::Tcp)]
    pub via: crate::transport::TransportKind,

    /// Print the result as one JSON object on stdout instead of text.
    #[arg(short = 'J', long)]
    pub json: bool,

    /// Print one JSON object a line as things happen (start, each interval, each phase's end,
    /// the end with the whole -J report), each flushed, like iperf3's --json-stream.
    #[arg(long, conflicts_with = "json")]
    pub json_stream: bool,

    #[command(flatten)]
    pub token: TokenArgs,

    #[command(flatten)]
    pub ssh: SshArgs,

    #[command(flatten)]
    pub rdma: RdmaArgs,
}

impl LatArgs {
    /// `-t SECS` when given, else `-n COUNT` (clap refuses both).
    pub fn rounds(&self) -> crate::transport::Rounds {
        use crate::transport::Rounds;
        self.secs.map_or(Rounds::Count(self.count), Rounds::Secs)
    }
}

/// Which RDMA device `--via rdma` uses, like perftest's -d and -x.
#[derive(Debug, Args)]
pub struct RdmaArgs {
    /// RDMA device (--via rdma), as `ibv_devices` lists it; the first one by default.
    #[arg(long, value_name = "DEV")]
    pub ib_dev: Option<String>,

    /// GID index (--via rdma); by default a RoCE v2 GID with an IPv4 address if there is one.
    #[arg(long, value_name = "N")]
    pub gid_index: Option<u8>,
}

impl RdmaArgs {
    pub fn options(&self) -> crate::transport::rdma::RdmaOptions {
        crate::transport::rdma::RdmaOptions {
            device: self.ib_dev.clone(),
            gid_index: self.gid_index,
        }
    }
}

/// How `--via ssh` logs in, like OpenSSH's client.
#[derive(Debug, Args)]
pub struct SshArgs {
    /// SSH cipher to use (--via ssh, mesh --ssh-launch): aes128-gcm@openssh.com (offered first by default),
    /// aes256-gcm@openssh.com, chacha20-poly1305@openssh.com, aes128-ctr, aes192-ctr, aes256-ctr.
    #[arg(long, value_name = "NAME", value_parser = parse_cipher)]
    pub cipher: Option<String>,

    /// SSH private key to log in with (--via ssh, mesh --ssh-launch), tried before ~/.ssh/config's IdentityFile,
    /// the default keys and ssh-agent.
    #[arg(long = "identity", value_name = "KEY")]
    pub identity: Vec<PathBuf>,

    /// SSH config file instead of ~/.ssh/config (Host, HostName, User, Port, IdentityFile,
    /// ProxyJump, HostKeyAlias, known_hosts files, %-tokens; ProxyCommand, Match, BindAddress
    /// and CanonicalizeHostname are refused, not ignored).
    #[arg(short = 'F', long = "ssh-config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// known_hosts file instead of ~/.ssh/known_hosts (or UserKnownHostsFile); read as OpenSSH
    /// reads it (hashed names, wildcards, @revoked; @cert-authority refuses).
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,

    /// Record the key of a host not yet in known_hosts instead of refusing it (a changed or
    /// revoked key, or one a @cert-authority line covers, is always refused).
    #[arg(long)]
    pub accept_new_host_key: bool,
}

impl SshArgs {
    pub fn login(
        &self,
        extra_identities: &[PathBuf],
    ) -> crate::transport::ssh::login::LoginOptions {
        crate::transport::ssh::login::LoginOptions {
            cipher: self.cipher.clone(),
            identities: extra_identities
                .iter()
                .chain(&self.identity)
                .cloned()
                .collect(),
            config: self.config.clone(),
            known_hosts: self.known_hosts.clone(),
            accept_new_host_key: self.accept_new_host_key,
        }
    }
}

fn parse_cipher(text: &str) -> Result<String, String> {
    crate::transport::ssh::login::parse_cipher(text)
        .map(|name| name.as_ref().to_string())
        .map_err(|err| err.to_string().replace(&format!("--cipher {text}: "), ""))
}

impl NetArgs {
    pub fn directions(&self) -> crate::transport::Directions {
        use crate::transport::Directions;
        match (self.reverse, self.bidir) {
            (_, true) => Directions::Both,
            (true, _) => Directions::Download,
            _ => Directions::Upload,
        }
    }
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The file to copy: a local path, or [USER@]HOST[:PORT]:PATH to download.
    pub source: String,

    /// Where to: [USER@]HOST[:PORT]:PATH to upload, or a local path (or directory: the file keeps
    /// its name) to download or copy into. With --via ssh, PATH is as scp reads it (relative to
    /// the login's home).
    pub destination: String,

    /// Parallel streams.
    #[arg(short = 'P', long, value_name = "N", default_value_t = 4,
          value_parser = parse_streams)]
    pub parallel: usize,

    /// Compute a digest of the data on both sides (xxh3-128) and fail on a mismatch. Between two
    /// local paths: the landed file is read back (O_DIRECT, or after dropping this machine's
    /// cache) before it is renamed into place; a share's server may still answer from its cache.
    /// Over --via ssh (uploads of one file): SHA-256 of what is sent against the far side's
    /// sha256sum (or BLAKE2b-512 and b2sum) of the landed file, before its rename.
    #[arg(long)]
    pub verify: bool,

    /// Replace the destination file if it exists (the old one stays whole until the new one is
    /// complete and fsynced, then is renamed over; both must fit).
    #[arg(short, long)]
    pub force: bool,

    /// Keep the temporary file (.NAME.xferbench-partial) of a copy that fails or is stopped, and
    /// take up one left before: its prefix is held to the source's (a digest on both sides:
    /// xxh3 here and on serve, sha256sum on an SSH server) and only the rest is sent; a prefix
    /// that differs is sent again. Between local paths, over --via tcp and --via ssh (both ways).
    #[arg(long)]
    pub resume: bool,

    /// Transfer path [default: tcp]; none between two local paths.
    #[arg(long, value_enum)]
    pub via: Option<crate::transport::TransportKind>,

    /// Copy a directory tree, like cp -r and scp -rp: files, directories (empty ones too),
    /// links kept as links (never followed, like rsync -l), modes and modification times kept.
    /// A file that fails is listed and the rest go on (exit 1 at the end). Between local paths
    /// (a mounted share included) -P files land at once; to or from serve (--via tcp) the tree
    /// goes as records on -P data connections; to a stock SSH server, one far tar -x (scp -t
    /// without GNU tar) on each of -P connections (files staged, then moved into place by a far
    /// sh); from one, a far tar -c.
    #[arg(short = 'r', long)]
    pub recursive: bool,

    /// When a tree's files are made durable: each (every file fsynced before its rename, every
    /// directory after its files) or end (one syncfs of the destination's file system at the
    /// end: faster for many small files, but a crash before it may lose files already in place).
    #[arg(long, value_enum, default_value_t = crate::transport::tree::FsyncPolicy::Each)]
    pub fsync: crate::transport::tree::FsyncPolicy,

    /// Chunk size: bytes per disk I/O and per message on a stream (a multiple of 4K).
    #[arg(long = "bs", value_name = "SIZE", default_value = "1M", value_parser = parse_block)]
    pub block: usize,

    /// Disk I/Os in flight on each side; with --bs this bounds buffer memory (16 × 1M = 16 MiB).
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub iodepth: usize,

    /// End the copy when no byte moves for SECS seconds, like rsync's --timeout (exit 1, nothing
    /// under the final name): a share whose server is gone, which a hard NFS mount waits on for
    /// ever. Between two local paths only (a copy through serve has its own bounds) [default: 60]
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    pub timeout: Option<u64>,

    /// Print the result as one JSON object on stdout instead of text.
    #[arg(short = 'J', long)]
    pub json: bool,

    /// Print one JSON object a line as things happen (start, each interval, each phase's end,
    /// the end with the whole -J report), each flushed, like iperf3's --json-stream.
    #[arg(long, conflicts_with = "json")]
    pub json_stream: bool,

    #[command(flatten)]
    pub token: TokenArgs,

    /// SSH private key, like scp -i (same as --identity).
    #[arg(short = 'i', value_name = "KEY")]
    pub identity_short: Vec<PathBuf>,

    #[command(flatten)]
    pub ssh: SshArgs,

    #[command(flatten)]
    pub rdma: RdmaArgs,
}

/// Options shared by everything that drives the disk engine.
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// Block size of each read or write (fio's --bs); a multiple of 4K with O_DIRECT.
    #[arg(long = "bs", value_name = "SIZE", default_value = "1M", value_parser = parse_block)]
    pub block: usize,

    /// Blocks in flight at once (fio's --iodepth).
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub iodepth: usize,

    /// Disk engine: io_uring, or psync (pread/pwrite on IODEPTH threads) where io_uring is disabled.
    #[arg(long, value_enum, default_value_t = EngineChoice::Auto)]
    pub engine: EngineChoice,
}

impl EngineArgs {
    pub fn pattern(&self) -> Pattern {
        Pattern {
            block: self.block,
            depth: self.iodepth,
        }
    }
}

#[derive(Debug, Args)]
pub struct GenArgs {
    /// The file to create.
    pub file: PathBuf,

    /// Size of the file, e.g. 50G (50 GiB), 8GB (8×10^9 bytes), 512M.
    #[arg(short, long, value_name = "SIZE", value_parser = parse_size_arg, allow_hyphen_values = true)]
    pub size: u64,

    /// What to write after allocating: random (default), zero, or none (fallocate only).
    #[arg(long, value_enum, default_value_t = FillMode::Random)]
    pub fill: FillMode,

    /// Replace FILE if it exists (the old one stays whole until the new one is filled and
    /// fsynced, then is renamed over; both must fit).
    #[arg(short, long)]
    pub force: bool,

    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Debug, Args)]
pub struct DiskArgs {
    /// A directory to test in, or an existing file to read.
    pub path: PathBuf,

    /// Test size [default: 4G for a directory, the whole file for a file].
    #[arg(short, long, value_name = "SIZE", value_parser = parse_size_arg, allow_hyphen_values = true)]
    pub size: Option<u64>,

    /// Bypass the page cache with O_DIRECT (the default).
    #[arg(long, overrides_with = "buffered")]
    pub direct: bool,

    /// Go through the page cache; the file is fsynced and dropped from the cache before reading.
    #[arg(long)]
    pub buffered: bool,

    /// With --buffered: read without dropping the file from the page cache first (fio's
    /// invalidate=0). This measures the cache, and the figure is marked as the cache's.
    #[arg(long, requires = "buffered")]
    pub keep_cache: bool,

    /// Only read (PATH must be an existing file).
    #[arg(long, conflicts_with = "write_only")]
    pub read_only: bool,

    /// Only write (PATH must be a directory).
    #[arg(long)]
    pub write_only: bool,

    /// Then write the same amount (at most 1 GiB) three ways: through the cache with one fsync at
    /// the end, with O_DIRECT, and with O_DSYNC (each write stable before it returns). Stable
    /// writes as fast as the others mean nothing waited for the medium: an NFS async export, a
    /// write-back cache, or a disk cache that survives power loss. PATH must be a directory.
    #[arg(long, conflicts_with = "read_only")]
    pub durability: bool,

    /// Print the result as one JSON object on stdout instead of text.
    #[arg(short = 'J', long)]
    pub json: bool,

    /// Print one JSON object a line as things happen (start, each interval, each phase's end,
    /// the end with the whole -J report), each flushed, like iperf3's --json-stream.
    #[arg(long, conflicts_with = "json")]
    pub json_stream: bool,

    #[command(flatten)]
    pub engine: EngineArgs,
}

impl DiskArgs {
    pub fn passes(&self) -> Passes {
        match (self.read_only, self.write_only) {
            (true, _) => Passes::ReadOnly,
            (_, true) => Passes::WriteOnly,
            _ => Passes::WriteThenRead,
        }
    }

    /// O_DIRECT unless --buffered came last.
    pub fn direct(&self) -> bool {
        !self.buffered
    }
}

fn parse_size_arg(text: &str) -> Result<u64, String> {
    parse_size(text).map_err(|err| err.to_string())
}

fn parse_block(text: &str) -> Result<usize, String> {
    parse_size_arg(text).and_then(|bytes| {
        usize::try_from(bytes).map_err(|_| format!("block size '{text}' is too large"))
    })
}

/// Seconds above 0, at most a day: -t of net, lat and run, and serve's --idle-timeout.
fn parse_secs(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs <= 86_400.0 => Ok(secs),
        _ => Err(format!(
            "'{text}' is not a number of seconds above 0 and at most 86400"
        )),
    }
}

/// Seconds from 0 to an hour: -O (0 omits nothing).
fn parse_omit(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if (0.0..=3600.0).contains(&secs) => Ok(secs),
        _ => Err(format!(
            "'{text}' is not a number of seconds from 0 to 3600"
        )),
    }
}

/// Seconds from 0.1 to an hour: -i.
fn parse_interval(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if (0.1..=3600.0).contains(&secs) => Ok(secs),
        _ => Err(format!(
            "'{text}' is not a number of seconds from 0.1 to 3600"
        )),
    }
}

fn parse_len(text: &str) -> Result<usize, String> {
    match parse_block(text)? {
        len @ 1..=0x400_0000 => Ok(len),
        _ => Err(format!("'{text}' is out of range: give 1 byte to 64M")),
    }
}

/// Most seconds `copy --timeout` takes: a day.
const MAX_TIMEOUT_SECS: u64 = 86_400;

fn parse_timeout(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(secs) if (1..=MAX_TIMEOUT_SECS).contains(&secs) => Ok(secs),
        _ => Err(format!(
            "'{text}': give a whole number of seconds, 1 to {MAX_TIMEOUT_SECS}"
        )),
    }
}

fn parse_streams(text: &str) -> Result<usize, String> {
    let limit = crate::serve::MAX_STREAMS as usize;
    match text.parse::<usize>() {
        Ok(n) if (1..=limit).contains(&n) => Ok(n),
        _ => Err(format!("'{text}' streams: give 1 to {limit}")),
    }
}

/// `mesh --via`: the paths one serve measures toward another over.
fn parse_mesh_via(text: &str) -> Result<TransportKind, String> {
    match text {
        "tcp" => Ok(TransportKind::Tcp),
        "udp" => Ok(TransportKind::Udp),
        _ => Err(format!(
            "'{text}': serves measure toward each other over tcp or udp"
        )),
    }
}

fn parse_max_clients(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=1024).contains(&n) => Ok(n),
        _ => Err(format!("'{text}': give 1 to 1024 clients")),
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A running `xferbench serve`: HOST or HOST:PORT [default: one inside this process, with
    /// an SSH server for --via ssh]; with --via ssh, the SSH server ([USER@]HOST; its port when
    /// ssh is the only path).
    pub host: Option<String>,

    /// Copy to DIR instead of a server: a directory on a mounted SMB or NFS share (the share's
    /// write and cold read, the copy, and whether the source disk, the network, the share or
    /// this machine's CPU limits it), or on another local disk.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["host", "via", "remote_dir"])]
    pub to: Option<PathBuf>,

    /// With --to on a share: an `xferbench serve` on the NAS (HOST or HOST:PORT), to measure
    /// the network and the NAS's own disk (its root on the exported file system) [default:
    /// the link's negotiated speed, labelled "not measured"].
    #[arg(long, value_name = "HOST[:PORT]", requires = "to")]
    pub net: Option<String>,

    /// Paths to measure, comma-separated: tcp, ssh, rdma, udp (those this build lacks are
    /// listed as skipped).
    #[arg(
        long,
        value_name = "PATHS",
        default_value = "tcp",
        value_delimiter = ','
    )]
    pub via: Vec<String>,

    /// Size of the test file and of each disk test.
    #[arg(short, long, value_name = "SIZE", default_value = "4G", value_parser = parse_size_arg)]
    pub size: u64,

    /// Directory of the test file (kept for the next run as .xferbench-run-SIZE.data) and of
    /// the tree of small files (kept as .xferbench-run-files-NxBYTES).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,

    /// After each path's big-file copy, copy a tree of N small random files over it (100 to a
    /// directory, each fsynced): files/s and MB/s beside the big file's rate, and "per-file
    /// overhead" in the verdict when they reach a small fraction of it; 0 skips the step.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub files: u64,

    /// Size of each of the --files small files.
    #[arg(long, value_name = "SIZE", default_value = "1M", value_parser = parse_size_arg)]
    pub file_size: u64,

    /// Parallel streams for the network and the copy.
    #[arg(short = 'P', long, value_name = "N", default_value_t = 4, value_parser = parse_streams)]
    pub parallel: usize,

    /// Seconds of each memory-to-memory test.
    #[arg(short = 't', long = "time", value_name = "SECS", default_value_t = 5.0, value_parser = parse_secs)]
    pub secs: f64,

    /// Run each measurement N times; report min / median / max / stddev (the verdict uses medians).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_repeat)]
    pub repeat: usize,

    /// Print the report as one JSON object on stdout instead of text.
    #[arg(short = 'J', long)]
    pub json_stdout: bool,

    /// Print one JSON object a line as things happen (start, each interval, each phase's end,
    /// the end with the whole -J report), each flushed, like iperf3's --json-stream.
    #[arg(long, conflicts_with = "json_stdout")]
    pub json_stream: bool,

    /// Also write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Also write every measurement as CSV to FILE.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,

    /// Also write the report as Markdown to FILE.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,

    /// Also plot throughput over time, with the baselines and link classes, to FILE.svg.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,

    /// With --via ssh: the directory on the far side for the copy and the disk baseline (like
    /// scp, relative to the login's home) [default: the home].
    #[arg(long, value_name = "DIR", default_value = "")]
    pub remote_dir: String,

    #[command(flatten)]
    pub engine: EngineArgs,

    #[command(flatten)]
    pub token: TokenArgs,

    #[command(flatten)]
    pub ssh: SshArgs,

    #[command(flatten)]
    pub rdma: RdmaArgs,
}

/// `ADDR:PORT`, `[V6]:PORT`, or an address alone on serve's port.
fn parse_listen(text: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::{IpAddr, SocketAddr};
    match (text.parse::<SocketAddr>(), text.parse::<IpAddr>()) {
        (Ok(address), _) => Ok(address),
        (_, Ok(ip)) => Ok(SocketAddr::new(ip, crate::control::DEFAULT_PORT)),
        _ => Err(format!(
            "'{text}': give an address and port (0.0.0.0:5301, [::1]:5301) or an address alone"
        )),
    }
}

fn parse_repeat(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=100).contains(&n) => Ok(n),
        _ => Err(format!("'{text}': give 1 to 100 repeats")),
    }
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The reports (-J output, or --json-stream files), oldest first: OLD NEW compares two; three
    /// or more give a trend (each figure in every report, and the last against the one before).
    #[arg(value_name = "REPORT.json", num_args = 2.., required = true)]
    pub reports: Vec<PathBuf>,

    /// Change in percent within which a figure is noise, where either report has fewer than 3
    /// runs of it.
    #[arg(long, value_name = "PCT", default_value_t = crate::diff::DEFAULT_THRESHOLD_PERCENT,
          value_parser = parse_threshold)]
    pub threshold: f64,

    /// Exit 1 when any figure got worse beyond noise.
    #[arg(long)]
    pub fail_on_regression: bool,

    /// Print the comparison as one JSON object on stdout instead of text.
    #[arg(short = 'J', long)]
    pub json: bool,

    /// Also write the comparison as a Markdown table to FILE.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,

    /// Also draw each figure over the reports as a small line chart, to FILE.svg.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
}

/// A percentage from 0 to 1000.
fn parse_threshold(text: &str) -> Result<f64, String> {
    match text.trim_end_matches('%').parse::<f64>() {
        Ok(percent) if (0.0..=1000.0).contains(&percent) => Ok(percent),
        _ => Err(format!("'{text}' is not a percentage from 0 to 1000")),
    }
}

#[derive(Debug, Args)]
pub struct MeshArgs {
    /// The serves: HOST or HOST:PORT each (port 5301 by default), [v6]:PORT for IPv6; ranges as
    /// pdsh writes them: node[01-08] (zero padding kept), 10.0.0.[1-4], node[1,3,5-7]. With
    /// --ssh-launch, USER@HOST[:PORT] logs in as USER (reports name the host without it).
    #[arg(
        value_name = "HOST[:PORT]",
        required_unless_present = "hosts_file",
        conflicts_with = "hosts_file"
    )]
    pub hosts: Vec<String>,

    /// Read the hosts from FILE: one `HOST [TOKEN]` a line (HOST may be a range; TOKEN is that
    /// serve's, else --token's; none with --ssh-launch), `#` starts a comment, blank lines are
    /// skipped.
    #[arg(long, value_name = "FILE")]
    pub hosts_file: Option<PathBuf>,

    /// Go on with more than 1000 hosts (ranges make many quickly).
    #[arg(long)]
    pub yes: bool,

    /// What each pair measures, comma-separated, run in this order: net (memory to memory),
    /// lat (round trips), copy (a random test file made in the sender's --root, removed after).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "net")]
    pub what: Vec<crate::mesh::TestKind>,

    /// Path of net and lat: tcp, udp, or tcp,udp for each over both in turn (a copy goes over
    /// tcp).
    #[arg(long, value_name = "tcp|udp|tcp,udp", default_value = "tcp", value_delimiter = ',',
          value_parser = parse_mesh_via)]
    pub via: Vec<TransportKind>,

    /// Seconds of each net and lat test.
    #[arg(short = 't', long = "time", value_name = "SECS", default_value_t = 3.0,
          value_parser = parse_secs)]
    pub secs: f64,

    /// Parallel streams of each net test over tcp and each copy (over udp, net sends one flow).
    #[arg(short = 'P', long, value_name = "N", default_value_t = 1,
          value_parser = parse_streams)]
    pub parallel: usize,

    /// Size of each copy's test file.
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = parse_size_arg)]
    pub size: u64,

    /// Only these hosts send (comma-separated, ranges allowed); without it, every host sends.
    #[arg(long, value_name = "HOSTS", conflicts_with = "ring")]
    pub from: Option<String>,

    /// Only these hosts receive (comma-separated, ranges allowed); without it, every host
    /// receives.
    #[arg(long, value_name = "HOSTS", conflicts_with = "ring")]
    pub to: Option<String>,

    /// Each host toward the next in the list, the last toward the first.
    #[arg(long)]
    pub ring: bool,

    /// One test at a time.
    #[arg(long, conflicts_with = "all_at_once")]
    pub serial: bool,

    /// Every selected pair at once (hosts then carry several tests together).
    #[arg(long)]
    pub all_at_once: bool,

    /// Print every pair's figures as one JSON object on stdout instead of text.
    #[arg(short = 'J', long)]
    pub json: bool,

    /// Also write one row per test as CSV to FILE.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,

    /// Also write the matrices, failures and verdict as Markdown to FILE.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,

    /// Also draw each matrix as an SVG heat map to FILE.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,

    /// Start `xferbench serve` on every host over SSH first, each with a fresh random token
    /// (sent over the SSH channel, never on a command line), and stop them all at the end.
    /// HOST is then also the SSH destination ([USER@]HOST, ~/.ssh/config's Host, HostName,
    /// User, Port, IdentityFile apply), PORT the port serve listens on there. Tokens are
    /// the launch's own: --token and a hosts file's tokens are refused.
    #[arg(long, conflicts_with_all = ["token", "token_file"])]
    pub ssh_launch: bool,

    /// With --ssh-launch: the xferbench binary on the far hosts (~/ is the login's home)
    /// [default: xferbench on the PATH of a command run there over SSH].
    #[arg(long, value_name = "PATH", requires = "ssh_launch")]
    pub remote_binary: Option<String>,

    #[command(flatten)]
    pub token: TokenArgs,

    #[command(flatten)]
    pub ssh: SshArgs,
}

impl MeshArgs {
    /// How `--ssh-launch` starts the serves; None without it.
    pub fn launch(&self) -> Option<crate::mesh::launch::LaunchOptions> {
        self.ssh_launch.then(|| crate::mesh::launch::LaunchOptions {
            login: self.ssh.login(&[]),
            remote_binary: self.remote_binary.clone(),
        })
    }

    /// The report files asked for, with their formats.
    pub fn exports(&self) -> Vec<(Format, &std::path::Path)> {
        [
            (Format::Csv, &self.csv),
            (Format::Markdown, &self.markdown),
            (Format::Svg, &self.svg),
        ]
        .into_iter()
        .filter_map(|(format, path)| Some((format, path.as_deref()?)))
        .collect()
    }
}

/// A command line clap accepted but the command cannot run with (flags that depend on each
/// other or on --via, sizes a disk cannot do): exit 2, like clap's own refusals.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

fn usage(message: impl std::fmt::Display) -> Usage {
    Usage(message.to_string())
}

impl Cli {
    /// Every check of the flags that clap's value parsers cannot make alone, done before the
    /// command touches a disk or a peer. Errors: [`Usage`], one sentence naming the flag.
    pub fn check(&self) -> Result<(), Usage> {
        match &self.command {
            Command::Gen(args) => args.engine.pattern().validate(true).map_err(usage),
            Command::Disk(args) => args.check(),
            Command::Serve(_) | Command::PeerTest | Command::Diff(_) => Ok(()),
            Command::Net(args) => args.check(),
            Command::Lat(args) => args.check(),
            Command::Copy(args) => args.check(),
            Command::Run(args) => args.check(),
            Command::Mesh(args) => args.check(),
        }
    }
}

impl DiskArgs {
    fn check(&self) -> Result<(), Usage> {
        self.engine
            .pattern()
            .validate(self.direct())
            .map_err(usage)?;
        // Said before the baseline runs, not after it.
        if self.durability && self.path.exists() && !self.path.is_dir() {
            return Err(usage(format!(
                "--durability writes files of its own: {} is not a directory; give one",
                self.path.display()
            )));
        }
        Ok(())
    }
}

impl NetArgs {
    fn check(&self) -> Result<(), Usage> {
        use crate::transport::TransportKind;
        use crate::transport::udp::wire;
        if self.via != TransportKind::Udp && (self.bitrate.is_some() || self.max) {
            return Err(usage(
                "-b and --max pace UDP datagrams: give them with --via udp",
            ));
        }
        if self.zerocopy && self.via != TransportKind::Tcp {
            return Err(usage(format!(
                "-Z sends TCP streams with sendfile(2): give it with --via tcp (--via {} has no zero-copy send)",
                self.via
            )));
        }
        match self.via {
            // Not a value of --via: clap never gives it.
            TransportKind::Tcp | TransportKind::Local => Ok(()),
            TransportKind::Udp => {
                if let Some(len) = self.length
                    && !(wire::HEADER_LEN..=wire::MAX_LEN).contains(&len)
                {
                    return Err(usage(format!(
                        "-l {len}: a UDP datagram here carries {} to {} bytes (a {}-byte header numbers and stamps it)",
                        wire::HEADER_LEN,
                        wire::MAX_LEN,
                        wire::HEADER_LEN
                    )));
                }
                if self.parallel != 1 {
                    return Err(usage(
                        "--via udp sends one flow: leave -P out (to load the path harder, raise -b or use --max)",
                    ));
                }
                if self.bidir {
                    return Err(usage(
                        "--via udp runs one direction at a time: leave --bidir out (-R reverses)",
                    ));
                }
                Ok(())
            }
            TransportKind::Ssh => {
                if self.reverse || self.bidir {
                    return Err(usage(
                        "--via ssh measures uploads only (a stock server has nothing of ours to send from): leave -R and --bidir out",
                    ));
                }
                if self.window.is_some() {
                    return Err(usage(
                        "-w sets TCP socket buffers of `serve`; the SSH path uses the SSH channel window: leave -w out",
                    ));
                }
                Ok(())
            }
            TransportKind::Rdma => {
                use crate::transport::rdma::{MAX_DEPTH, MAX_SIZE};
                if self.reverse || self.bidir {
                    return Err(usage(
                        "--via rdma measures WRITEs from here into the server: -R and --bidir are not supported (run `net --via rdma` on the other machine against a server here)",
                    ));
                }
                if self.parallel != 1 {
                    return Err(usage(format!(
                        "--via rdma uses one queue pair: -P {} is not supported; give -Q (--queue-depth) for more writes in flight",
                        self.parallel
                    )));
                }
                if self.window.is_some() {
                    return Err(usage(
                        "-w sets a TCP socket buffer: it has no meaning with --via rdma",
                    ));
                }
                if let Some(len) = self.length
                    && len > MAX_SIZE
                {
                    return Err(usage(format!(
                        "-l/-s {len} is out of range for RDMA: give 1 to 64M"
                    )));
                }
                if self.queue_depth == 0 || self.queue_depth > MAX_DEPTH {
                    return Err(usage(format!(
                        "-Q {} is out of range: give 1 to {MAX_DEPTH}",
                        self.queue_depth
                    )));
                }
                Ok(())
            }
        }
    }
}

impl LatArgs {
    fn check(&self) -> Result<(), Usage> {
        use crate::transport::TransportKind;
        match self.via {
            TransportKind::Rdma if self.size != crate::transport::rdma::LATENCY_SIZE => {
                Err(usage(format!(
                    "lat --via rdma writes {0}-byte messages (the round's number, polled in memory): give -s {0}",
                    crate::transport::rdma::LATENCY_SIZE
                )))
            }
            TransportKind::Udp if self.size > crate::transport::udp::wire::MAX_LEN => {
                Err(usage(format!(
                    "-s {}: a UDP message carries 1 to {} bytes",
                    self.size,
                    crate::transport::udp::wire::MAX_LEN
                )))
            }
            _ => Ok(()),
        }
    }
}

impl CopyArgs {
    /// `copy -r`: the path (none between two local paths) and the tree plan; the same checks as
    /// [`CopyArgs::plan`], and --timeout refused (a tree's stall bound is fixed).
    pub fn tree_plan(
        &self,
    ) -> anyhow::Result<(Option<Box<dyn Transport>>, crate::transport::tree::TreePlan)> {
        if let Some(secs) = self.timeout {
            return Err(Usage(format!(
                "--timeout {secs}: copy -r takes none (over tcp or ssh a tree ends after 60 s without progress; between local paths nothing bounds it); drop --timeout"
            ))
            .into());
        }
        let (transport, plan) = self.plan()?;
        Ok((
            transport,
            crate::transport::tree::TreePlan {
                source: plan.source,
                destination: plan.destination,
                workers: self.parallel,
                block: self.block,
                verify: self.verify,
                force: self.force,
                fsync: self.fsync,
            },
        ))
    }

    /// How long a local copy may move nothing before it ends (`--timeout`).
    pub fn stall(&self) -> std::time::Duration {
        self.timeout
            .map_or(crate::transport::pipeline::STALL_TIMEOUT, |secs| {
                std::time::Duration::from_secs(secs)
            })
    }

    /// The path asked for with --via, tcp if none.
    fn via(&self) -> TransportKind {
        self.via.unwrap_or(TransportKind::Tcp)
    }

    fn check(&self) -> Result<(), Usage> {
        if self.via() == TransportKind::Udp {
            return Err(usage(
                "copy --via udp: UDP does not deliver every datagram, so it carries no files; copy over tcp, ssh or rdma",
            ));
        }
        crate::transport::pipeline::ChunkPlan {
            chunk: self.block,
            depth: self.iodepth,
            verify: self.verify,
        }
        .validate()
        .map_err(usage)?;
        if self.verify && self.via() == TransportKind::Ssh {
            let download = matches!(Location::parse(&self.source), Ok(Location::Remote { .. }));
            if download || self.recursive {
                return Err(usage(
                    "--verify over --via ssh checks one uploaded file (the far side's sha256sum re-reads it); for a download or a tree, copy with `serve` over --via tcp to verify it",
                ));
            }
        }
        Ok(())
    }
}

impl RunArgs {
    fn check(&self) -> Result<(), Usage> {
        use crate::plan::PATH_NAMES;
        for name in &self.via {
            if !PATH_NAMES.contains(&name.as_str()) {
                return Err(usage(format!(
                    "--via {name}: unknown path; give a comma-separated list of {}",
                    PATH_NAMES.join(", ")
                )));
            }
        }
        for host in [&self.host, &self.net].into_iter().flatten() {
            crate::transport::Peer::parse(host).map_err(|err| usage(format!("{err:#}")))?;
        }
        let pattern = self.engine.pattern();
        pattern.validate(true).map_err(usage)?;
        if self.size < pattern.block as u64 {
            return Err(usage(format!(
                "--size {} is smaller than one block (--bs {}): give a larger --size",
                self.size, pattern.block
            )));
        }
        Ok(())
    }
}

impl MeshArgs {
    fn check(&self) -> Result<(), Usage> {
        use crate::mesh::TestKind;
        if self.via.contains(&TransportKind::Udp) {
            if self.what.contains(&TestKind::Copy) && !self.via.contains(&TransportKind::Tcp) {
                return Err(usage(
                    "--what copy with --via udp: UDP carries no files; a mesh's copy goes over tcp, so give --via tcp or tcp,udp",
                ));
            }
            if self.parallel != 1
                && self.what.contains(&TestKind::Net)
                && !self.via.contains(&TransportKind::Tcp)
            {
                return Err(usage("--via udp sends one flow: leave -P out"));
            }
        }
        if self.secs > crate::control::MAX_PEER_SECS {
            return Err(usage(format!(
                "-t {}: a serve measures toward another for at most {} s",
                self.secs,
                crate::control::MAX_PEER_SECS
            )));
        }
        if self.size == 0 && self.what.contains(&TestKind::Copy) {
            return Err(usage("--size 0: a copy needs at least one byte"));
        }
        let ssh = &self.ssh;
        if !self.ssh_launch
            && (ssh.cipher.is_some()
                || !ssh.identity.is_empty()
                || ssh.config.is_some()
                || ssh.known_hosts.is_some()
                || ssh.accept_new_host_key)
        {
            return Err(usage(
                "--identity, -F, --known-hosts, --cipher and --accept-new-host-key are for the SSH logins of --ssh-launch: give it, or leave them out",
            ));
        }
        Ok(())
    }

    /// The mesh to measure: hosts (given or from --hosts-file, ranges expanded), their tokens,
    /// pairs and schedule. Errors: [`Usage`] for a host list that cannot be used (a malformed
    /// range or hosts file, a duplicate host, one host only, more than 1000 without --yes,
    /// --from or --to naming a host not in the list, a user@ without --ssh-launch, a hosts
    /// file's token with it); a token file that cannot be read.
    pub fn options(&self) -> anyhow::Result<crate::mesh::MeshOptions> {
        use crate::mesh::hosts::{self, HostEntry, MANY_HOSTS};
        use crate::mesh::schedule::{Schedule, Selection};
        use crate::mesh::{MeshHost, MeshOptions};
        let limit = if self.yes { usize::MAX } else { MANY_HOSTS };
        let entries = match &self.hosts_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|err| {
                    Usage(format!(
                        "cannot read the hosts file: {}",
                        crate::file::describe_path_error(path, err)
                    ))
                })?;
                hosts::parse_hosts_file(&text, &path.display().to_string(), limit).map_err(usage)?
            }
            None => {
                let mut entries = Vec::new();
                for pattern in &self.hosts {
                    for host in hosts::expand(pattern, limit).map_err(usage)? {
                        entries.push(HostEntry { host, token: None });
                    }
                }
                if entries.len() > limit {
                    return Err(usage(format!(
                        "{} hosts, more than {limit}; give --yes if you mean it",
                        entries.len()
                    ))
                    .into());
                }
                entries
            }
        };
        let mut entries = entries;
        let mut logins = Vec::with_capacity(entries.len());
        for entry in &mut entries {
            if !self.ssh_launch {
                logins.push(None);
                continue;
            }
            if entry.token.is_some() {
                return Err(usage(format!(
                    "--ssh-launch gives each serve a fresh token: leave the TOKEN column out of the hosts file ({} has one)",
                    entry.host
                ))
                .into());
            }
            // The user logs in over SSH; the serve is named, and reached, without it.
            let login = Peer::parse(&entry.host).map_err(as_usage)?.user;
            if let Some(user) = &login {
                entry.host = entry.host[user.len() + 1..].to_string();
            }
            logins.push(login);
        }
        let mut authorities: Vec<String> = Vec::new();
        for entry in &entries {
            let authority = serve_authority(&entry.host)?;
            if let Some(at) = authorities.iter().position(|a| *a == authority) {
                return Err(usage(format!(
                    "{} is given twice (as {} and {}): list each serve once",
                    authority, entries[at].host, entry.host
                ))
                .into());
            }
            authorities.push(authority);
        }
        if entries.len() < 2 {
            return Err(usage(format!(
                "a mesh needs two serves or more, {} was given: add another HOST",
                entries.first().map_or("none", |e| e.host.as_str())
            ))
            .into());
        }
        let members = |flag: &str, list: &Option<String>| -> anyhow::Result<Vec<usize>> {
            let mut members = Vec::new();
            for pattern in list.as_deref().map(hosts::split_list).unwrap_or_default() {
                for host in hosts::expand(&pattern, limit).map_err(usage)? {
                    let authority = serve_authority(&host)?;
                    let Some(at) = authorities.iter().position(|a| *a == authority) else {
                        return Err(usage(format!(
                            "{flag} {host}: not one of the mesh's hosts; name hosts from its list"
                        ))
                        .into());
                    };
                    members.push(at);
                }
            }
            Ok(members)
        };
        let everyone: Vec<usize> = (0..entries.len()).collect();
        let selection = if self.ring {
            Selection::Ring
        } else if self.from.is_none() && self.to.is_none() {
            Selection::All
        } else {
            let from = members("--from", &self.from)?;
            let to = members("--to", &self.to)?;
            Selection::Between {
                from: if from.is_empty() {
                    everyone.clone()
                } else {
                    from
                },
                to: if to.is_empty() { everyone } else { to },
            }
        };
        if crate::mesh::schedule::select(entries.len(), &selection).is_empty() {
            return Err(usage(
                "--from and --to leave no pair: a host does not measure toward itself",
            )
            .into());
        }
        let token = self.token.token()?;
        Ok(MeshOptions {
            hosts: entries
                .into_iter()
                .zip(logins)
                .map(|(entry, login)| MeshHost {
                    host: entry.host,
                    token: entry.token.or_else(|| token.clone()),
                    login,
                })
                .collect(),
            selection,
            schedule: match (self.serial, self.all_at_once) {
                (true, _) => Schedule::Serial,
                (_, true) => Schedule::AllAtOnce,
                _ => Schedule::Rounds,
            },
            tests: self.what.iter().fold(Vec::new(), |mut tests, kind| {
                if !tests.contains(kind) {
                    tests.push(*kind);
                }
                tests
            }),
            vias: self.via.iter().fold(Vec::new(), |mut vias, via| {
                if !vias.contains(via) {
                    vias.push(*via);
                }
                vias
            }),
            secs: self.secs,
            streams: self.parallel as u32,
            copy_size: self.size,
            // lat's own default: the round trip of a message that fits any packet.
            lat_size: 8,
        })
    }
}

/// `HOST:PORT` of the serve a mesh's host names, to tell two spellings of one serve apart.
/// Errors: [`Usage`] for a host that does not parse or names a user.
fn serve_authority(host: &str) -> anyhow::Result<String> {
    let peer = peer_arg(host, TransportKind::Tcp)?;
    Ok(peer.authority())
}

/// An error in what the user typed, as a [`Usage`] error (exit 2).
pub fn as_usage(err: anyhow::Error) -> anyhow::Error {
    Usage(format!("{err:#}")).into()
}

/// HOST[:PORT] as net and lat take it; a user@ only with --via ssh. Errors: [`Usage`].
fn peer_arg(text: &str, via: TransportKind) -> anyhow::Result<Peer> {
    let peer = Peer::parse(text).map_err(as_usage)?;
    if via != TransportKind::Ssh {
        peer.without_user(&via.to_string()).map_err(as_usage)?;
    }
    Ok(peer)
}

/// The transport of `net` and `lat` to HOST[:PORT].
fn transport_to(
    host: &str,
    via: TransportKind,
    token: &TokenArgs,
    ssh: &SshArgs,
    rdma: &RdmaArgs,
) -> anyhow::Result<Box<dyn Transport>> {
    let peer = peer_arg(host, via)?;
    crate::transport::open(via, peer, token.token()?, &ssh.login(&[]), rdma.options())
}

impl GenArgs {
    pub fn options(&self) -> GenOptions {
        GenOptions {
            path: self.file.clone(),
            size: self.size,
            fill: self.fill,
            force: self.force,
            pattern: self.engine.pattern(),
            engine: self.engine.engine,
        }
    }
}

impl DiskArgs {
    pub fn options(&self) -> BaselineOptions {
        BaselineOptions {
            path: self.path.clone(),
            size: self.size,
            pattern: self.engine.pattern(),
            direct: self.direct(),
            evict: !self.keep_cache,
            engine: self.engine.engine,
            passes: self.passes(),
        }
    }

    /// The durability probe --durability asks for: the test's size, at most 1 GiB.
    pub fn durability(&self) -> Option<DurabilityOptions> {
        self.durability.then(|| DurabilityOptions {
            dir: self.path.clone(),
            size: self
                .size
                .unwrap_or(DEFAULT_TEST_SIZE)
                .min(DURABILITY_MAX_SIZE),
            pattern: self.engine.pattern(),
            engine: self.engine.engine,
        })
    }
}

impl ServeArgs {
    /// Errors: a token file that cannot be read.
    pub fn options(&self) -> anyhow::Result<ServeOptions> {
        Ok(ServeOptions {
            listen: self.listen,
            root: self.root.clone(),
            token: self.token()?,
            max_bytes: self.max_bytes,
            max_clients: self.max_clients,
            idle_timeout: std::time::Duration::from_secs_f64(self.idle_timeout),
            ssh: self.ssh(),
            rdma: self.rdma.options(),
        })
    }
}

impl NetArgs {
    /// The server, and the transport to it. Errors: [`Usage`] for a HOST that does not parse.
    pub fn transport(&self) -> anyhow::Result<Box<dyn Transport>> {
        transport_to(&self.host, self.via, &self.token, &self.ssh, &self.rdma)
    }

    pub fn plan(&self) -> NetPlan {
        NetPlan {
            streams: self.parallel,
            secs: self.secs,
            omit_secs: self.omit,
            interval_secs: self.interval,
            // UDP's 0: the largest datagram that fits the path MTU, known once connected.
            len: self.length.unwrap_or(match self.via {
                TransportKind::Udp => 0,
                _ => DEFAULT_NET_LEN,
            }),
            window: self.window,
            directions: self.directions(),
            queue_depth: self.queue_depth,
            rate: self.bitrate,
            zerocopy: self.zerocopy,
        }
    }
}

impl LatArgs {
    /// The server, and the transport to it. Errors: [`Usage`] for a HOST that does not parse.
    pub fn transport(&self) -> anyhow::Result<Box<dyn Transport>> {
        transport_to(&self.host, self.via, &self.token, &self.ssh, &self.rdma)
    }

    pub fn plan(&self) -> LatPlan {
        LatPlan {
            size: self.size,
            rounds: self.rounds(),
        }
    }
}

impl CopyArgs {
    /// The copy and the transport to its server; no transport when both sides are local (see
    /// `transport::local::copy`). Errors: [`Usage`] when SRC and DEST do not parse, are both
    /// remote, name a user off SSH, or are both local with --via.
    pub fn plan(&self) -> anyhow::Result<(Option<Box<dyn Transport>>, CopyPlan)> {
        let source = Location::parse(&self.source).map_err(as_usage)?;
        let destination = Location::parse(&self.destination).map_err(as_usage)?;
        let peer = match (&source, &destination) {
            (Location::Local(_), Location::Remote { peer, .. }) => Some(peer.clone()),
            (Location::Remote { peer, .. }, Location::Local(_)) => Some(peer.clone()),
            (Location::Local(_), Location::Local(_)) => match self.via {
                Some(via) => {
                    return Err(Usage(format!(
                        "--via {via}: both {} and {} are local, so no network path carries the \
                         copy (the kernel's file-system client does); drop --via, or make one \
                         side HOST[:PORT]:PATH",
                        self.source, self.destination
                    ))
                    .into());
                }
                None => None,
            },
            (Location::Remote { .. }, Location::Remote { .. }) => {
                return Err(Usage(format!(
                    "both {} and {} are remote: copy goes between this machine and one server",
                    self.source, self.destination
                ))
                .into());
            }
        };
        if let (Some(_), Some(secs)) = (&peer, self.timeout) {
            return Err(Usage(format!(
                "--timeout {secs}: only a copy between two local paths takes it (a share \
                 whose server is gone); a copy through a server is bounded by its own waits, so \
                 drop --timeout"
            ))
            .into());
        }
        let via = self.via();
        if let Some(peer) = &peer
            && via != TransportKind::Ssh
        {
            peer.without_user(&via.to_string()).map_err(as_usage)?;
        }
        // A local file whose name reads as host:path, on every path: scp's advice.
        if let Some(hint) = crate::transport::address::local_twin_hint([&source, &destination]) {
            return Err(Usage(hint).into());
        }
        let plan = CopyPlan {
            source,
            destination,
            streams: self.parallel,
            chunk: self.block,
            iodepth: self.iodepth,
            verify: self.verify,
            force: self.force,
            resume: self.resume,
        };
        if self.resume {
            if self.recursive {
                return Err(usage("--resume takes up one file: a tree copy (-r) starts each file over; drop --resume").into());
            }
            if peer.is_some() && !matches!(via, TransportKind::Ssh | TransportKind::Tcp) {
                return Err(Usage(format!(
                    "--resume over {via}: a copy over it starts over; --resume takes up local copies and --via tcp or --via ssh ones (both ways)"
                ))
                .into());
            }
        }
        let Some(peer) = peer else {
            return Ok((None, plan));
        };
        let login = self.ssh.login(&self.identity_short);
        let transport =
            crate::transport::open(via, peer, self.token.token()?, &login, self.rdma.options())?;
        Ok((Some(transport), plan))
    }
}

impl RunArgs {
    /// Errors: a token file that cannot be read.
    pub fn options(&self) -> anyhow::Result<RunOptions> {
        Ok(RunOptions {
            host: self.host.clone(),
            to: self.to.clone(),
            net: self.net.clone(),
            token: self.token.token()?,
            paths: self.via.clone(),
            dir: self.dir.clone(),
            size: self.size,
            streams: self.parallel,
            net_secs: self.secs,
            repeat: self.repeat,
            pattern: self.engine.pattern(),
            ssh: self.ssh.login(&[]),
            remote_dir: self.remote_dir.clone(),
            rdma: self.rdma.options(),
            engine: EngineChoice::Auto,
            files: self.files,
            file_size: self.file_size,
        })
    }

    /// The report files asked for, each with its format.
    pub fn exports(&self) -> Vec<(Format, &std::path::Path)> {
        [
            (Format::Json, &self.json),
            (Format::Csv, &self.csv),
            (Format::Markdown, &self.markdown),
            (Format::Svg, &self.plot),
        ]
        .into_iter()
        .filter_map(|(format, path)| Some((format, path.as_deref()?)))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mesh_args(args: &[&str]) -> MeshArgs {
        let cli = Cli::try_parse_from(["xferbench", "mesh"].iter().chain(args)).unwrap();
        match cli.command {
            Command::Mesh(args) => args,
            _ => unreachable!("parsed as mesh"),
        }
    }

    #[test]
    fn a_hosts_files_token_wins_over_token_which_is_for_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hosts");
        std::fs::write(&file, "a own-token\nb\n").unwrap();
        let args = mesh_args(&["--hosts-file", file.to_str().unwrap(), "--token", "shared"]);
        let hosts = args.options().unwrap().hosts;
        assert_eq!(hosts[0].token.as_deref(), Some("own-token"));
        assert_eq!(hosts[1].token.as_deref(), Some("shared"));
    }

    #[test]
    fn mesh_from_and_to_take_ranges_and_either_alone_means_every_host_on_the_other_side() {
        use crate::mesh::schedule::Selection;
        let args = mesh_args(&["n[1-4]", "--from", "n[1,2]"]);
        assert_eq!(
            args.options().unwrap().selection,
            Selection::Between {
                from: vec![0, 1],
                to: vec![0, 1, 2, 3]
            }
        );
        let args = mesh_args(&["n[1-3]", "--to", "n3:5301"]);
        assert_eq!(
            args.options().unwrap().selection,
            Selection::Between {
                from: vec![0, 1, 2],
                to: vec![2]
            }
        );
    }

    #[test]
    fn mesh_runs_each_test_and_path_once_in_the_order_given() {
        let args = mesh_args(&["a", "b", "--what", "lat,net,lat", "--via", "udp,tcp,udp"]);
        let options = args.options().unwrap();
        use crate::mesh::TestKind;
        assert_eq!(options.tests, [TestKind::Lat, TestKind::Net]);
        assert_eq!(options.vias, [TransportKind::Udp, TransportKind::Tcp]);
    }

    #[test]
    fn ssh_launch_logs_in_as_a_hosts_user_but_names_the_serve_without_it() {
        let args = mesh_args(&["ann@node1:5302", "node2", "--ssh-launch"]);
        let hosts = args.options().unwrap().hosts;
        assert_eq!(
            (hosts[0].host.as_str(), hosts[0].login.as_deref()),
            ("node1:5302", Some("ann"))
        );
        assert_eq!(
            (hosts[1].host.as_str(), hosts[1].login.as_deref()),
            ("node2", None)
        );
        assert!(args.launch().is_some());
        assert!(mesh_args(&["ann@node1", "node2"]).options().is_err());
    }

    #[test]
    fn ssh_launch_makes_the_tokens_so_none_may_be_given() {
        let given = Cli::try_parse_from([
            "xferbench",
            "mesh",
            "a",
            "b",
            "--ssh-launch",
            "--token",
            "t",
        ]);
        assert!(given.is_err());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hosts");
        std::fs::write(&file, "a own-token\nb\n").unwrap();
        let args = mesh_args(&["--hosts-file", file.to_str().unwrap(), "--ssh-launch"]);
        let err = format!("{:#}", args.options().unwrap_err());
        assert!(err.contains("leave the TOKEN column out"), "{err}");
    }

    #[test]
    fn mesh_takes_ssh_login_flags_and_a_remote_binary_only_with_ssh_launch() {
        let cli = Cli::try_parse_from(["xferbench", "mesh", "a", "b", "-F", "cfg"]).unwrap();
        assert!(cli.check().unwrap_err().0.contains("--ssh-launch"));
        let cli = Cli::try_parse_from(["xferbench", "mesh", "a", "b", "--ssh-launch", "-F", "cfg"]);
        assert!(cli.unwrap().check().is_ok());
        let bare = ["xferbench", "mesh", "a", "b", "--remote-binary", "/x"];
        assert!(Cli::try_parse_from(bare).is_err());
    }

    #[test]
    fn serve_listens_on_an_address_alone_at_its_own_port() {
        assert_eq!(
            parse_listen("198.51.100.2").unwrap(),
            "198.51.100.2:5301".parse().unwrap()
        );
        assert_eq!(parse_listen("[::1]:7").unwrap(), "[::1]:7".parse().unwrap());
        assert_eq!(parse_listen("::1").unwrap(), "[::1]:5301".parse().unwrap());
        assert!(
            parse_listen("nas.local")
                .unwrap_err()
                .contains("'nas.local'")
        );
    }
}
