//! `serve`'s embedded SSH server (`--ssh-listen`): the far end of `--via ssh` and of OpenSSH's
//! own `scp -O`, with nothing but xferbench on the server.
//!
//! It runs no shell. An exec request is read with [`RemoteCommand::parse`], the very grammar the
//! SSH path's client renders, and each command is done here natively, every path confined to
//! `--root` by [`Root`] exactly as on the TCP path. Anything else is refused with a line on the
//! channel's stderr. Logins are by public key only, the keys of an OpenSSH `authorized_keys` file.
//!
//! Disk I/O goes through the disk engine with O_DIRECT where the file system allows it, in a
//! fixed set of page-aligned buffers per channel ([`DEPTH`] × [`BLOCK`]); only a range's last
//! partial page, which O_DIRECT cannot write, goes through the page cache (flushed by the fsync
//! before a rename). Bytes read from the disk are handed to the SSH layer without a copy.
//!
//! # Layout
//!
//! - `mod.rs`: what the rest of `serve` uses: the options, the listener and its accept loop, the
//!   russh configuration, and [`EmbeddedSshServer`] for tests and `run --via ssh`.
//! - `keys`: the host key (loaded or made) and the `authorized_keys` file.
//! - `handler`: one connection: authentication, channels, and the dispatch of exec requests.
//! - `commands`: one function per remote command (size, absent, finish, discard, sink, source,
//!   echo, write and read of a range), with their log lines and exit statuses.
//! - `scp`: the SCP sink (`scp -t`) and source (`scp -f`).
//! - `disk`: the disk I/O of a channel: a writer of a stream at increasing offsets, and a range
//!   sent to the SSH layer without a copy.
//!
//! [`RemoteCommand::parse`]: crate::transport::ssh::command::RemoteCommand::parse
//! [`Root`]: super::Root
//! [`DEPTH`]: disk::DEPTH
//! [`BLOCK`]: disk::BLOCK

mod commands;
mod disk;
mod handler;
mod keys;
mod scp;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow};
use russh::keys::{HashAlg, PrivateKey, PublicKey};
use russh::{MethodKind, MethodSet, Preferred, SshId, compression};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{
    Announcement, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CLIENTS, ServeOptions, Shared, Stopper,
};

/// SSH connections one client may hold: `copy --via ssh -P N` opens N of them, and those of a
/// test just finished may still be closing when the next test starts.
pub const CONNECTIONS_PER_CLIENT: usize = 32;

/// Each channel's receive window: OpenSSH's 2 MiB default leaves a fast link idle while it waits
/// for window adjustments; 16 MiB keeps a loopback or LAN path busy.
const WINDOW: u32 = 16 << 20;
/// Largest packet the client may send: the most russh accepts (a TCP segment's 64 KiB).
const MAX_PACKET: u32 = 65535;
/// Messages queued per channel before the connection stops reading: bounds a channel's memory
/// (here 128 × 64 KiB) while the disk catches up.
const CHANNEL_BUFFER: usize = 128;
/// No compression: payloads are random, and compressing zeros would inflate the figures.
const COMPRESSION: &[compression::Name] = &[compression::NONE];

/// The SSH side of `serve`, as asked on the command line.
#[derive(Debug, Clone)]
pub struct SshOptions {
    pub listen: SocketAddr,
    /// OpenSSH `authorized_keys`: the public keys allowed to log in.
    pub authorized_keys: PathBuf,
    /// An OpenSSH private key; None: a fresh ed25519 key for this run.
    pub host_key: Option<PathBuf>,
}

/// What the SSH server tells its operator as it starts.
#[derive(Debug, Clone)]
pub struct SshAnnouncement {
    pub addr: SocketAddr,
    pub host_key: PublicKey,
    /// The host key was made at start (clients cannot know it in advance).
    pub host_key_generated: bool,
    /// Keys accepted from the authorized_keys file.
    pub authorized: usize,
    /// Lines of the authorized_keys file that were skipped, and why.
    pub skipped: Vec<String>,
}

impl SshAnnouncement {
    /// `SHA256:...`, as `ssh-keygen -lf` and ssh's first-connection prompt show it.
    pub fn fingerprint(&self) -> String {
        self.host_key.fingerprint(HashAlg::Sha256).to_string()
    }

    /// `ssh-ed25519 AAAA...`: what a known_hosts line holds after the host.
    pub fn host_key_text(&self) -> String {
        self.host_key
            .to_openssh()
            .map(|text| {
                let mut fields = text.split_whitespace();
                format!(
                    "{} {}",
                    fields.next().unwrap_or_default(),
                    fields.next().unwrap_or_default()
                )
            })
            .unwrap_or_default()
    }

    /// The line for a client's known_hosts file.
    pub fn known_hosts_line(&self) -> String {
        let host = match self.addr.port() {
            22 => self.addr.ip().to_string(),
            port => format!("[{}]:{port}", self.addr.ip()),
        };
        format!("{host} {}", self.host_key_text())
    }
}

/// A bound SSH listener with its keys, ready to serve.
pub(super) struct SshServer {
    listener: TcpListener,
    config: Arc<russh::server::Config>,
    authorized: Arc<Vec<PublicKey>>,
    listening: SshAnnouncement,
}

impl SshServer {
    /// Loads the keys and binds the port; every error says which file or address failed.
    pub(super) async fn bind(options: &SshOptions, idle_timeout: Duration) -> Result<SshServer> {
        let (authorized, skipped) = keys::load_authorized_keys(&options.authorized_keys)?;
        let (host_key, host_key_generated) = keys::host_key(options.host_key.as_deref())?;
        let listener = super::listen(options.listen, "listen for SSH", "--ssh-listen").await?;
        let listening = SshAnnouncement {
            addr: listener.local_addr()?,
            host_key: host_key.public_key().clone(),
            host_key_generated,
            authorized: authorized.len(),
            skipped,
        };
        Ok(SshServer {
            listener,
            config: Arc::new(server_config(host_key, idle_timeout)),
            authorized: Arc::new(authorized),
            listening,
        })
    }

    pub(super) fn listening(&self) -> &SshAnnouncement {
        &self.listening
    }

    /// Accepts connections until dropped (which drops every connection and its commands, so
    /// their partial files are removed). Beyond `--max-clients` SSH connections at once, a new
    /// one is closed with a log line.
    pub(super) async fn serve(self, shared: Arc<Shared>) {
        let slots = Arc::new(Semaphore::new(shared.max_clients * CONNECTIONS_PER_CLIENT));
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => match slots.clone().try_acquire_owned() {
                        Ok(slot) => {
                            connections.spawn(handler::serve_connection(
                                self.config.clone(),
                                self.authorized.clone(),
                                shared.clone(),
                                stream,
                                peer,
                                slot,
                            ));
                        }
                        Err(_) => (shared.log)(&format!(
                            "{peer}: ssh: refused: busy: {} SSH connections are open already (--max-clients × {CONNECTIONS_PER_CLIENT})",
                            shared.max_clients * CONNECTIONS_PER_CLIENT
                        )),
                    },
                    // Out of file descriptors and the like: keep serving, after a breath.
                    Err(err) => {
                        (shared.log)(&format!("ssh: accept failed: {err}"));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = connections.join_next() => {}
            }
        }
    }
}

/// The russh configuration: public keys only, AES-GCM first, wide windows, `--idle-timeout`.
fn server_config(host_key: PrivateKey, idle_timeout: Duration) -> russh::server::Config {
    russh::server::Config {
        server_id: SshId::Standard(
            format!("SSH-2.0-xferbench_{}", env!("CARGO_PKG_VERSION")).into(),
        ),
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        // OpenSSH probes with "none" first: answering at once saves a second per login.
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![host_key],
        window_size: WINDOW,
        maximum_packet_size: MAX_PACKET,
        channel_buffer_size: CHANNEL_BUFFER,
        preferred: Preferred {
            // AES-GCM first, as the client offers: the fastest with AES-NI (russh's default puts
            // chacha20 first). The client's order decides (RFC 4253 §7.1).
            cipher: crate::transport::ssh::login::CIPHERS.to_vec().into(),
            compression: COMPRESSION.into(),
            ..Preferred::default()
        },
        inactivity_timeout: Some(idle_timeout),
        nodelay: true,
        ..Default::default()
    }
}

/// An SSH server (and the TCP server beside it) inside this process on 127.0.0.1: for tests,
/// and for `run --via ssh` against its own embedded peer. Stopped when dropped.
pub struct EmbeddedSshServer {
    /// Where the SSH server listens.
    pub addr: SocketAddr,
    /// Where the TCP control server listens (the disk baseline goes through it).
    pub tcp_addr: SocketAddr,
    /// The host key clients must expect.
    pub host_key: PublicKey,
    listening: SshAnnouncement,
    _running: Stopper,
}

impl EmbeddedSshServer {
    /// Serves `root` on free ports of 127.0.0.1 to the keys of `authorized_keys`, with the host
    /// key of `host_key` or a fresh ed25519 one.
    pub fn start(
        root: PathBuf,
        authorized_keys: &Path,
        host_key: Option<&Path>,
    ) -> Result<EmbeddedSshServer> {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let options = ServeOptions {
            listen: loopback,
            root: Some(root),
            token: None,
            max_bytes: None,
            max_clients: DEFAULT_MAX_CLIENTS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            ssh: Some(SshOptions {
                listen: loopback,
                authorized_keys: authorized_keys.to_path_buf(),
                host_key: host_key.map(Path::to_path_buf),
            }),
            rdma: Default::default(),
        };
        let (Announcement { addr, ssh, .. }, running) = super::start_in_thread(options)?;
        let listening = ssh.ok_or_else(|| anyhow!("the embedded SSH server did not start"))?;
        Ok(EmbeddedSshServer {
            addr: listening.addr,
            tcp_addr: addr,
            host_key: listening.host_key.clone(),
            listening,
            _running: running,
        })
    }

    /// `[127.0.0.1]:PORT ssh-ed25519 AAAA...`, for a client's known_hosts file.
    pub fn known_hosts_line(&self) -> String {
        self.listening.known_hosts_line()
    }

    /// The host key's `SHA256:...` fingerprint.
    pub fn fingerprint(&self) -> String {
        self.listening.fingerprint()
    }
}
