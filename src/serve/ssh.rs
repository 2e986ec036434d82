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

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, FileTimes, OpenOptions};
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use russh::keys::{Algorithm, HashAlg, PrivateKey, PublicKey};
use russh::server::{Auth, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{
    Channel, ChannelId, ChannelMsg, ChannelOpenFailure, ChannelReadHalf, ChannelWriteHalf,
    MethodKind, MethodSet, Preferred, SshId, compression,
};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::{AbortHandle, JoinSet};

use super::session::hide_root;
use super::{DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CLIENTS, Listening, ServeOptions, Shared, Stopper};
use crate::disk::{self, ALIGN, AlignedBuf, Engine, EngineChoice, Op, Request};
use crate::file::{self, Landing};
use crate::transport::ssh::command::RemoteCommand;
use crate::transport::ssh::scp::{FileHeader, Status, read_line, read_status, write_status};
use crate::units::format_bytes;

/// SSH connections one client may hold: `copy --via ssh -P N` opens N of them, and those of a
/// test just finished may still be closing when the next test starts.
pub const CONNECTIONS_PER_CLIENT: usize = 32;

/// Bytes per disk request: large enough for full disk speed with few requests.
const BLOCK: usize = 1 << 20;
/// Disk requests in flight per channel; with [`BLOCK`], a channel's buffer memory (4 MiB).
const DEPTH: usize = 4;
/// Each channel's receive window: OpenSSH's 2 MiB default leaves a fast link idle while it waits
/// for window adjustments; 16 MiB keeps a loopback or LAN path busy.
const WINDOW: u32 = 16 << 20;
/// Largest packet the client may send: the most russh accepts (a TCP segment's 64 KiB).
const MAX_PACKET: u32 = 65535;
/// Messages queued per channel before the connection stops reading: bounds a channel's memory
/// (here 128 × 64 KiB) while the disk catches up.
const CHANNEL_BUFFER: usize = 128;
/// Channels one connection may hold at once; each command holds a channel's buffers.
const MAX_CHANNELS: usize = 8;
/// No compression: payloads are random, and compressing zeros would inflate the figures.
const COMPRESSION: &[compression::Name] = &[compression::NONE];
/// What `Source` sends: zeros, shared by every channel.
static ZERO_BLOCK: [u8; BLOCK] = [0; BLOCK];
/// Longest command line repeated in a log or error line.
const SHOWN_LINE: usize = 200;

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
pub struct SshListening {
    pub addr: SocketAddr,
    pub host_key: PublicKey,
    /// The host key was made at start (clients cannot know it in advance).
    pub host_key_generated: bool,
    /// Keys accepted from the authorized_keys file.
    pub authorized: usize,
    /// Lines of the authorized_keys file that were skipped, and why.
    pub skipped: Vec<String>,
}

impl SshListening {
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
    listening: SshListening,
}

impl SshServer {
    /// Loads the keys and binds the port; every error says which file or address failed.
    pub(super) async fn bind(options: &SshOptions, idle_timeout: Duration) -> Result<SshServer> {
        let (authorized, skipped) = load_authorized_keys(&options.authorized_keys)?;
        let (host_key, host_key_generated) = match &options.host_key {
            Some(path) => (load_host_key(path)?, false),
            None => (
                PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
                    .map_err(|err| anyhow!("generating an ed25519 host key: {err}"))?,
                true,
            ),
        };
        let listener = TcpListener::bind(options.listen).await.map_err(|err| {
            anyhow!(
                "cannot listen for SSH on {}: {err}{}",
                options.listen,
                if err.kind() == std::io::ErrorKind::AddrInUse {
                    ": another server has the port; pick another with --ssh-listen ADDR:PORT"
                } else {
                    ""
                }
            )
        })?;
        let listening = SshListening {
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

    pub(super) fn listening(&self) -> &SshListening {
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
                            connections.spawn(serve_connection(
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

/// The keys of an OpenSSH authorized_keys file; blank and `#` lines are skipped. A line with
/// options (`from=`, `command=`, `restrict`...) is skipped, said in the returned notes: this
/// server cannot honour options, and ignoring them would let a key do more than was meant.
fn load_authorized_keys(path: &Path) -> Result<(Vec<PublicKey>, Vec<String>)> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        anyhow!(
            "cannot read --authorized-keys: {}",
            file::describe_path_error(path, err)
        )
    })?;
    let (mut keys, mut skipped) = (Vec::new(), Vec::new());
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("{} line {}", path.display(), index + 1);
        match line.parse::<russh::keys::ssh_key::authorized_keys::Entry>() {
            Ok(entry) if entry.config_opts().is_empty() => keys.push(entry.public_key().clone()),
            Ok(entry) => skipped.push(format!(
                "{at}: key skipped: it has options ({}) this server cannot honour; remove them to let the key in",
                entry.config_opts().as_str()
            )),
            Err(err) => skipped.push(format!("{at}: not a public key ({err}): skipped")),
        }
    }
    if keys.is_empty() {
        bail!(
            "--authorized-keys {} has no usable public key: put the client's id_ed25519.pub (or another .pub) in it{}",
            path.display(),
            skipped
                .first()
                .map(|why| format!(" ({why})"))
                .unwrap_or_default()
        );
    }
    Ok((keys, skipped))
}

fn load_host_key(path: &Path) -> Result<PrivateKey> {
    if let Err(err) = std::fs::metadata(path) {
        bail!(
            "cannot read --host-key: {}",
            file::describe_path_error(path, err)
        );
    }
    russh::keys::load_secret_key(path, None).map_err(|err| {
        anyhow!(
            "cannot load the host key {}: {err}: give an OpenSSH private key without a passphrase (ssh-keygen -t ed25519 -N '' -f FILE)",
            path.display()
        )
    })
}

/// One SSH connection, from the handshake until it closes; holds its `--max-clients` slot.
async fn serve_connection(
    config: Arc<russh::server::Config>,
    authorized: Arc<Vec<PublicKey>>,
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    _slot: OwnedSemaphorePermit,
) {
    let handler = Connection {
        shared: shared.clone(),
        authorized,
        peer,
        user: String::new(),
        channels: HashMap::new(),
        commands: JoinSet::new(),
        running: HashMap::new(),
        refusal_logged: false,
    };
    let outcome = match russh::server::run_stream(config, stream, handler).await {
        Ok(session) => session.await,
        Err(err) => Err(err),
    };
    match outcome {
        Ok(()) => {}
        Err(russh::Error::InactivityTimeout) => (shared.log)(&format!(
            "{peer}: ssh: closed after {} s without a message (--idle-timeout)",
            shared.idle_timeout.as_secs_f64()
        )),
        // A client that goes away mid-session is not news: its commands say what they lost.
        Err(russh::Error::Disconnect | russh::Error::HUP | russh::Error::IO(_)) => {}
        Err(err) => (shared.log)(&format!("{peer}: ssh: {err}")),
    }
}

/// The russh handler of one connection: authentication, channels, and their requests.
struct Connection {
    shared: Arc<Shared>,
    authorized: Arc<Vec<PublicKey>>,
    peer: SocketAddr,
    user: String,
    /// Session channels opened and waiting for their request.
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// The commands running on this connection: dropped (and their partial files removed)
    /// when the connection ends.
    commands: JoinSet<()>,
    running: HashMap<ChannelId, AbortHandle>,
    refusal_logged: bool,
}

impl Connection {
    fn allows(&self, key: &PublicKey) -> bool {
        self.authorized
            .iter()
            .any(|allowed| allowed.key_data() == key.key_data())
    }

    fn refuse_key(&mut self, user: &str, key: &PublicKey) -> Auth {
        // A client may offer several keys: one line per connection is enough.
        if !self.refusal_logged {
            self.refusal_logged = true;
            (self.shared.log)(&format!(
                "{}: ssh: key {} of user '{user}' is not in --authorized-keys: refused",
                self.peer,
                key.fingerprint(HashAlg::Sha256)
            ));
        }
        Auth::reject()
    }

    /// Says why on the channel's stderr, then ends the channel with `status`, as a shell would
    /// for a command it cannot run. (A failed request instead would make the client hang up
    /// before it shows the message.)
    fn refuse(
        &mut self,
        session: &mut Session,
        channel: ChannelId,
        message: &str,
        status: u32,
    ) -> Result<(), russh::Error> {
        self.channels.remove(&channel);
        (self.shared.log)(&format!("{}: ssh {}: {message}", self.peer, self.user));
        session.channel_success(channel)?;
        session.extended_data(channel, 1, format!("{message}\n").into_bytes())?;
        session.exit_status_request(channel, status)?;
        session.eof(channel)?;
        session.close(channel)
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(if self.allows(offer.public_key) {
            Auth::Accept
        } else {
            self.refuse_key(user, offer.public_key)
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if !self.allows(key.public_key) {
            return Ok(self.refuse_key(user, key.public_key));
        }
        self.user = user.to_string();
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        while self.commands.try_join_next().is_some() {}
        self.running.retain(|_, command| !command.is_finished());
        if self.channels.len() + self.running.len() >= MAX_CHANNELS {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        reply.accept().await;
        self.channels.insert(channel.id(), channel);
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        // A command still sending to a closed channel would wait for window forever.
        if let Some(command) = self.running.remove(&channel) {
            command.abort();
        }
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // A second request on a channel whose command runs already.
        let Some(opened) = self.channels.remove(&channel) else {
            return session.channel_failure(channel);
        };
        let line = String::from_utf8_lossy(data);
        let Some(command) = RemoteCommand::parse(&line) else {
            let message = format!(
                "xferbench serve runs no shell: '{}' is not a command it knows (it understands scp -t/-f, and the SSH path's own commands)",
                shown(&line)
            );
            return self.refuse(session, channel, &message, 127);
        };
        session.channel_success(channel)?;
        let running = self.commands.spawn(run_command(
            self.shared.clone(),
            format!("{}: ssh {}", self.peer, self.user),
            opened,
            command,
        ));
        self.running.insert(channel, running);
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(
            session,
            channel,
            "xferbench serve runs no shell: it takes scp -t/-f and the SSH path's own commands only",
            1,
        )
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let message = format!(
            "xferbench serve has no '{}' subsystem: use scp -O (the legacy SCP protocol)",
            shown(name)
        );
        self.refuse(session, channel, &message, 1)
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _variable_name: &str,
        _variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }
}

/// A command line as it may be repeated: control characters escaped, long lines cut.
fn shown(line: &str) -> String {
    let escaped: String = line.chars().flat_map(char::escape_default).collect();
    match escaped.char_indices().nth(SHOWN_LINE) {
        Some((cut, _)) => format!("{}...", &escaped[..cut]),
        None => escaped,
    }
}

/// How a command ended: its exit status, and the payload bytes it moved.
struct Done {
    status: u32,
    bytes: Option<u64>,
}

impl Done {
    fn ok() -> Done {
        Done {
            status: 0,
            bytes: None,
        }
    }

    fn moved(bytes: u64) -> Done {
        Done {
            status: 0,
            bytes: Some(bytes),
        }
    }
}

/// A failure the client has been told of already (an SCP status): not repeated on stderr.
#[derive(Debug)]
struct Told(anyhow::Error);

impl std::fmt::Display for Told {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for Told {}

/// Runs one command on its channel, then sends its exit status and closes the channel. A
/// failure is one line on stderr (unless the SCP protocol carried it) and exit status 1.
async fn run_command(
    shared: Arc<Shared>,
    who: String,
    channel: Channel<Msg>,
    command: RemoteCommand,
) {
    let started = Instant::now();
    let what = describe(&command);
    let (mut read, write) = channel.split();
    let outcome = execute(&shared, command, &mut read, &write).await;
    let secs = started.elapsed().as_secs_f64();
    let status = match outcome {
        Ok(done) => {
            let moved = done
                .bytes
                .map(|bytes| format!(", {}", format_bytes(bytes)))
                .unwrap_or_default();
            (shared.log)(&format!(
                "{who}: {what}: done in {secs:.1} s{moved}{}",
                if done.status == 0 {
                    String::new()
                } else {
                    format!(" (exit {})", done.status)
                }
            ));
            done.status
        }
        Err(err) => {
            let message = hide_root(&format!("{err:#}"), &shared);
            (shared.log)(&format!(
                "{who}: {what}: failed after {secs:.1} s: {message}"
            ));
            if err.downcast_ref::<Told>().is_none() {
                let line = format!("xferbench serve: {what}: {message}\n");
                let _ = write.extended_data_bytes(1, line.into_bytes()).await;
            }
            1
        }
    };
    let _ = write.eof().await;
    let _ = write.exit_status(status).await;
    let _ = write.close().await;
}

/// What a command does, for log and error lines (paths as the client named them).
fn describe(command: &RemoteCommand) -> String {
    match command {
        RemoteCommand::ScpSink { path } => format!("scp upload to '{}'", shown(path)),
        RemoteCommand::ScpSinkThenFinish { temp, path, .. } => format!(
            "scp upload to '{}', landed as '{}'",
            shown(temp),
            shown(path)
        ),
        RemoteCommand::ScpSource { path } => format!("scp download of '{}'", shown(path)),
        RemoteCommand::WriteRange { path, offset } => {
            format!("writing '{}' from offset {offset}", shown(path))
        }
        RemoteCommand::ReadRange { path, offset, len } => {
            format!(
                "reading {len} bytes of '{}' from offset {offset}",
                shown(path)
            )
        }
        RemoteCommand::Size { path } => format!("size of '{}'", shown(path)),
        RemoteCommand::Absent { path } => format!("checking that '{}' is absent", shown(path)),
        RemoteCommand::Finish { temp, size, path } => format!(
            "finishing '{}' ({size} bytes) as '{}'",
            shown(temp),
            shown(path)
        ),
        RemoteCommand::Discard { path } => format!("removing '{}'", shown(path)),
        RemoteCommand::Sink => "memory sink".to_string(),
        RemoteCommand::Source => "memory source".to_string(),
        RemoteCommand::Echo => "echo (round trips)".to_string(),
        RemoteCommand::WriteBaseline { path, .. } => {
            format!("disk write baseline at '{}'", shown(path))
        }
        RemoteCommand::HomeOf { user } => format!("home of '{user}'"),
    }
}

/// [`finish`] off the runtime's threads: truncate, fsync and rename block on the disk.
async fn land(shared: &Arc<Shared>, temp: String, size: u64, path: String) -> Result<Done> {
    let (root, max_bytes) = (shared.root.clone(), shared.max_bytes);
    tokio::task::spawn_blocking(move || finish(&root, max_bytes, &temp, size, &path))
        .await
        .map_err(|err| anyhow!("the finishing step stopped: {err}"))??;
    Ok(Done::moved(size))
}

async fn execute(
    shared: &Arc<Shared>,
    command: RemoteCommand,
    read: &mut ChannelReadHalf,
    write: &ChannelWriteHalf<Msg>,
) -> Result<Done> {
    let root = &shared.root;
    match command {
        RemoteCommand::ScpSink { path } => scp_sink(shared, &path, read, write).await,
        RemoteCommand::ScpSinkThenFinish { temp, size, path } => {
            // As the shell's `&&`: the landing runs only after a successful scp.
            let done = scp_sink(shared, &temp, read, write).await?;
            if done.status != 0 {
                return Ok(done);
            }
            land(shared, temp, size, path).await
        }
        RemoteCommand::ScpSource { path } => scp_source(shared, &path, read, write).await,
        RemoteCommand::WriteRange { path, offset } => {
            write_range(shared, &path, offset, read).await
        }
        RemoteCommand::ReadRange { path, offset, len } => {
            let disk_path = root.existing_file(&path)?;
            let (handle, direct) = file::open_read(&disk_path, true)?;
            let size = handle.metadata()?.len();
            if offset.checked_add(len).is_none_or(|end| end > size) {
                bail!("'{path}' has {size} bytes: there are no {len} bytes from offset {offset}");
            }
            send_range(&handle, direct, &disk_path, offset, len, write).await?;
            Ok(Done::moved(len))
        }
        RemoteCommand::Size { path } => {
            let disk_path = root.existing_file(&path)?;
            let size = std::fs::metadata(&disk_path)
                .map_err(|err| anyhow!(file::describe_path_error(&disk_path, err)))?
                .len();
            write.data_bytes(format!("{size}\n").into_bytes()).await?;
            Ok(Done::ok())
        }
        RemoteCommand::Absent { path } => {
            let there = root
                .entry(&path)?
                .is_some_and(|entry| entry.symlink_metadata().is_ok());
            Ok(Done {
                status: there.into(),
                bytes: None,
            })
        }
        RemoteCommand::Finish { temp, size, path } => land(shared, temp, size, path).await,
        RemoteCommand::Discard { path } => {
            let Some(entry) = root.entry(&path)? else {
                return Ok(Done::ok());
            };
            match entry.symlink_metadata() {
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => bail!(file::describe_path_error(&entry, err)),
                Ok(meta) if meta.is_dir() => {
                    bail!("'{path}' is a directory: only files are removed")
                }
                Ok(_) => std::fs::remove_file(&entry).map_err(|err| {
                    anyhow!("cannot remove {}", file::describe_path_error(&entry, err))
                })?,
            }
            Ok(Done::ok())
        }
        RemoteCommand::Sink => {
            let mut bytes = 0u64;
            while let Some(message) = read.wait().await {
                match message {
                    ChannelMsg::Data { data } => bytes += data.len() as u64,
                    ChannelMsg::Eof => break,
                    _ => {}
                }
            }
            Ok(Done::moved(bytes))
        }
        RemoteCommand::Source => {
            let mut bytes = 0u64;
            loop {
                tokio::select! {
                    sent = write.data_bytes(Bytes::from_static(&ZERO_BLOCK)) => {
                        if sent.is_err() {
                            break;
                        }
                        bytes += BLOCK as u64;
                    }
                    // Only the channel's close ends it (the client's EOF on stdin does not).
                    message = read.wait() => if matches!(message, None | Some(ChannelMsg::Close)) {
                        break;
                    },
                }
            }
            Ok(Done::moved(bytes))
        }
        RemoteCommand::Echo => {
            let mut bytes = 0u64;
            while let Some(message) = read.wait().await {
                match message {
                    ChannelMsg::Data { data } => {
                        bytes += data.len() as u64;
                        write.data_bytes(data).await?;
                    }
                    ChannelMsg::Eof => break,
                    _ => {}
                }
            }
            Ok(Done::moved(bytes))
        }
        // The client asks xferbench's own server for its disk through the TCP control protocol.
        RemoteCommand::WriteBaseline { .. } => bail!(
            "the disk baseline is not run over SSH by xferbench serve: its TCP control protocol measures its disk"
        ),
        // No users, no shell: one root, which `~` and `~/x` already stand for.
        RemoteCommand::HomeOf { user } => bail!(
            "'~{user}' needs a shell to expand it and xferbench serve runs none: its paths are relative to its --root; give the path without ~{user}"
        ),
    }
}

/// `truncate -s SIZE TEMP && sync TEMP && mv -f TEMP PATH`, both paths confined to the root.
fn finish(
    root: &super::Root,
    max_bytes: Option<u64>,
    temp: &str,
    size: u64,
    path: &str,
) -> Result<()> {
    if let Some(max) = max_bytes
        && size > max
    {
        bail!(
            "{} is more than this server accepts (--max-bytes {})",
            format_bytes(size),
            format_bytes(max)
        );
    }
    let temp_path = root.existing_file(temp)?;
    let final_path = root.new_file(path)?;
    let handle = OpenOptions::new()
        .write(true)
        .open(&temp_path)
        .map_err(|err| anyhow!("cannot open {}", file::describe_path_error(&temp_path, err)))?;
    handle
        .set_len(size)
        .with_context(|| format!("cutting '{temp}' to {size} bytes"))?;
    handle
        .sync_all()
        .with_context(|| format!("fsync of '{temp}'"))?;
    drop(handle);
    std::fs::rename(&temp_path, &final_path)
        .with_context(|| format!("renaming '{temp}' to '{path}'"))?;
    if let Some(dir) = final_path.parent()
        && let Ok(dir) = File::open(dir)
    {
        // Makes the rename durable; some file systems refuse fsync on directories.
        let _ = dir.sync_all();
    }
    Ok(())
}

/// `dd of=PATH seek=OFFSET conv=notrunc`: standard input written at `offset`, the file created
/// if missing and never truncated. No fsync: `Finish` makes the whole file durable.
async fn write_range(
    shared: &Shared,
    requested: &str,
    offset: u64,
    read: &mut ChannelReadHalf,
) -> Result<Done> {
    let path = shared.root.new_file(requested)?;
    let over_limit = |end: u64| shared.max_bytes.filter(|&max| end > max);
    if let Some(max) = over_limit(offset) {
        bail!(
            "offset {offset} is beyond what this server accepts (--max-bytes {})",
            format_bytes(max)
        );
    }
    // O_DIRECT only from a page boundary: a range starting mid-page shares that page with its
    // neighbour, and the page cache and O_DIRECT must never both write one page.
    let (handle, direct) = file::open_write(&path, offset.is_multiple_of(ALIGN as u64))?;
    let mut writer = DiskWriter::start(&handle, direct, &path, offset)?;
    let mut input = read.make_reader();
    loop {
        let n = input
            .read(writer.spare())
            .await
            .context("reading from the client")?;
        if n == 0 {
            break;
        }
        writer.advance(n).await?;
        if let Some(max) = over_limit(writer.end()) {
            bail!(
                "the file grows past what this server accepts (--max-bytes {})",
                format_bytes(max)
            );
        }
    }
    let end = writer.finish().await?;
    Ok(Done::moved(end - offset))
}

/// Sends an SCP status on the channel.
async fn say(write: &ChannelWriteHalf<Msg>, status: &Status) -> Result<()> {
    let mut line = Vec::new();
    write_status(&mut line, status).await?;
    write.data_bytes(line).await?;
    Ok(())
}

/// Tells the client an SCP step failed (status 2 and the message), and marks the error as told.
async fn refuse_scp(
    shared: &Shared,
    write: &ChannelWriteHalf<Msg>,
    err: anyhow::Error,
) -> anyhow::Error {
    let message = hide_root(&format!("{err:#}"), shared);
    let _ = say(write, &Status::Fatal(message)).await;
    anyhow::Error::new(Told(err))
}

/// `scp -t PATH`: the SCP sink. Each `C` line's file is written to a temporary name beside its
/// destination and renamed only once complete and fsynced; a directory destination keeps the
/// header's name. `T` lines (scp -p) set the times of the next file.
async fn scp_sink(
    shared: &Shared,
    target: &str,
    read: &mut ChannelReadHalf,
    write: &ChannelWriteHalf<Msg>,
) -> Result<Done> {
    let mut input = read.make_reader();
    say(write, &Status::Ok).await?;
    let (mut bytes, mut times) = (0u64, None);
    loop {
        let mut kind = [0u8];
        // The client closing its side after the last file is the normal end.
        if input
            .read(&mut kind)
            .await
            .context("reading from the client")?
            == 0
        {
            break;
        }
        match kind[0] {
            b'T' => {
                let line = read_line(&mut input).await?;
                match parse_times(&line) {
                    Some(parsed) => times = Some(parsed),
                    None => {
                        let err = anyhow!("a malformed SCP time line: {:?}", shown(&line));
                        return Err(refuse_scp(shared, write, err).await);
                    }
                }
                say(write, &Status::Ok).await?;
            }
            b'C' => {
                let line = read_line(&mut input).await?;
                let header = match FileHeader::parse(&format!("C{line}")) {
                    Ok(header) => header,
                    Err(err) => return Err(refuse_scp(shared, write, err).await),
                };
                bytes +=
                    receive_file(shared, target, &header, times.take(), &mut input, write).await?;
            }
            b'D' | b'E' => {
                let err = anyhow!("directories (scp -r) are not served: copy files one by one");
                return Err(refuse_scp(shared, write, err).await);
            }
            // The client could not read one of its files: it says so and goes on, or stops.
            code @ (1 | 2) => {
                let message = read_line(&mut input).await?;
                if code == 2 {
                    return Err(anyhow::Error::new(Told(anyhow!(
                        "the client gave up: {}",
                        shown(&message)
                    ))));
                }
            }
            other => {
                let err = anyhow!("a byte {other:#04x} where an SCP line was expected");
                return Err(refuse_scp(shared, write, err).await);
            }
        }
    }
    Ok(Done::moved(bytes))
}

/// `T<mtime> 0 <atime> 0` (seconds since the epoch).
fn parse_times(line: &str) -> Option<FileTimes> {
    let fields: Vec<&str> = line.split(' ').collect();
    let [mtime, "0", atime, "0"] = fields.as_slice() else {
        return None;
    };
    let at = |secs: &str| Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs.parse().ok()?));
    Some(
        FileTimes::new()
            .set_modified(at(mtime)?)
            .set_accessed(at(atime)?),
    )
}

/// One file of the SCP sink: checks, go-ahead, data, the client's trailing status, fsync,
/// rename, our final status. Returns the bytes written.
async fn receive_file(
    shared: &Shared,
    target: &str,
    header: &FileHeader,
    times: Option<FileTimes>,
    input: &mut (impl AsyncRead + Unpin),
    write: &ChannelWriteHalf<Msg>,
) -> Result<u64> {
    let prepared = prepare_landing(shared, target, header);
    let landing = match prepared {
        Ok(landing) => landing,
        Err(err) => return Err(refuse_scp(shared, write, err).await),
    };
    let mut writer = match DiskWriter::start(&landing.file, landing.direct, &landing.temp_path, 0) {
        Ok(writer) => writer,
        Err(err) => return Err(refuse_scp(shared, write, err).await),
    };
    say(write, &Status::Ok).await?;
    // From here the client is busy sending and reads no status until the end: errors go to
    // stderr, and the dropped landing removes the temporary file.
    let mut left = header.size;
    while left > 0 {
        let spare = writer.spare();
        let want = spare.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = input
            .read(&mut spare[..want])
            .await
            .context("reading from the client")?;
        if n == 0 {
            bail!(
                "the client stopped after {} of {} bytes",
                header.size - left,
                header.size
            );
        }
        writer.advance(n).await?;
        left -= n as u64;
    }
    writer.finish().await?;
    match read_status(input)
        .await
        .context("reading the client's end of file")?
    {
        Status::Ok => {}
        Status::Warning(message) | Status::Fatal(message) => {
            return Err(anyhow::Error::new(Told(anyhow!(
                "the client could not read its file: {}",
                shown(&message)
            ))));
        }
    }
    let synced = tokio::task::block_in_place(|| -> Result<()> {
        landing.file.sync_all().context("fsync")?;
        if let Some(times) = times {
            landing
                .file
                .set_times(times)
                .context("setting the file's times")?;
        }
        landing.commit()
    });
    if let Err(err) = synced {
        return Err(refuse_scp(shared, write, err).await);
    }
    say(write, &Status::Ok).await?;
    Ok(header.size)
}

/// Where an uploaded file lands, checked before any byte is accepted: confined to the root,
/// within `--max-bytes` and the free space.
fn prepare_landing(shared: &Shared, target: &str, header: &FileHeader) -> Result<Landing> {
    let requested = if shared.root.is_dir(target) {
        format!("{}/{}", target.trim_end_matches('/'), header.name)
    } else {
        target.to_string()
    };
    let path = shared.root.new_file(&requested)?;
    if let Some(max) = shared.max_bytes
        && header.size > max
    {
        bail!(
            "{} is more than this server accepts (--max-bytes {})",
            format_bytes(header.size),
            format_bytes(max)
        );
    }
    // Like scp, an existing file is replaced; it is removed first, so a failed upload leaves
    // nothing under the final name.
    Landing::prepare(&path, header.size, true, true)
}

/// `scp -f PATH`: the SCP source. Sends `C0644 SIZE NAME`, the data and a 0 byte, waiting for
/// the client's status after the header and after the data.
async fn scp_source(
    shared: &Shared,
    requested: &str,
    read: &mut ChannelReadHalf,
    write: &ChannelWriteHalf<Msg>,
) -> Result<Done> {
    let mut input = read.make_reader();
    expect_ready(&mut input).await?;
    let opened = (|| -> Result<_> {
        let path = shared.root.existing_file(requested)?;
        let (handle, direct) = file::open_read(&path, true)?;
        let size = handle.metadata()?.len();
        // The name the client asked for: OpenSSH's scp checks the header against it.
        let name = Path::new(requested)
            .file_name()
            .and_then(|name| name.to_str())
            .ok_or_else(|| anyhow!("'{requested}' does not name a file"))?
            .to_string();
        let line = FileHeader {
            mode: 0o644,
            size,
            name,
        }
        .line()?;
        Ok((path, handle, direct, size, line))
    })();
    let (path, handle, direct, size, line) = match opened {
        Ok(opened) => opened,
        Err(err) => return Err(refuse_scp(shared, write, err).await),
    };
    write.data_bytes(line.into_bytes()).await?;
    expect_ready(&mut input).await?;
    send_range(&handle, direct, &path, 0, size, write).await?;
    write.data_bytes(&[0u8][..]).await?;
    expect_ready(&mut input).await?;
    Ok(Done::moved(size))
}

/// Waits for the client's 0 status; its refusal ends the command (it printed why already).
async fn expect_ready(input: &mut (impl AsyncRead + Unpin)) -> Result<()> {
    match read_status(input).await.context("waiting for the client")? {
        Status::Ok => Ok(()),
        Status::Warning(message) | Status::Fatal(message) => Err(anyhow::Error::new(Told(
            anyhow!("the client refused: {}", shown(&message)),
        ))),
    }
}

/// Writes a stream at increasing offsets through the disk engine: [`DEPTH`] aligned buffers of
/// [`BLOCK`] bytes, whatever the size. With O_DIRECT, the last partial page goes through a
/// second, buffered handle.
struct DiskWriter {
    engine: Engine,
    tail_file: File,
    direct: bool,
    path: PathBuf,
    free: Vec<AlignedBuf>,
    allocated: usize,
    filling: AlignedBuf,
    /// File offset of `filling`'s first byte.
    start: u64,
    in_flight: usize,
}

impl DiskWriter {
    fn start(handle: &File, direct: bool, path: &Path, start: u64) -> Result<DiskWriter> {
        let engine = disk::start_engine(EngineChoice::Auto, handle, path, DEPTH, &mut Vec::new())?;
        let tail_file = if direct {
            OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|err| anyhow!("cannot open {}", file::describe_path_error(path, err)))?
        } else {
            handle.try_clone()?
        };
        Ok(DiskWriter {
            engine,
            tail_file,
            direct,
            path: path.to_path_buf(),
            free: Vec::new(),
            allocated: 1,
            filling: AlignedBuf::new(BLOCK),
            start,
            in_flight: 0,
        })
    }

    /// Room left in the current buffer, to read into.
    fn spare(&mut self) -> &mut [u8] {
        let len = self.filling.len();
        &mut self.filling.full_mut()[len..]
    }

    /// Counts `n` bytes read into [`DiskWriter::spare`]; a full buffer goes to the disk.
    async fn advance(&mut self, n: usize) -> Result<()> {
        let len = self.filling.len() + n;
        self.filling.set_len(len);
        if len == self.filling.capacity() {
            let next = self.take_free().await?;
            let full = std::mem::replace(&mut self.filling, next);
            self.submit(full)?;
        }
        Ok(())
    }

    /// The file offset just past the bytes taken in.
    fn end(&self) -> u64 {
        self.start + self.filling.len() as u64
    }

    fn submit(&mut self, buf: AlignedBuf) -> Result<()> {
        let len = buf.len() as u64;
        self.engine.submit(Request {
            op: Op::Write,
            offset: self.start,
            buf,
        })?;
        self.in_flight += 1;
        self.start += len;
        Ok(())
    }

    async fn take_free(&mut self) -> Result<AlignedBuf> {
        if let Some(buf) = self.free.pop() {
            return Ok(buf);
        }
        if self.allocated < DEPTH {
            self.allocated += 1;
            return Ok(AlignedBuf::new(BLOCK));
        }
        self.reap().await?;
        self.free
            .pop()
            .ok_or_else(|| anyhow!("the disk engine returned no buffer"))
    }

    /// Waits for one write to complete and takes its buffer back.
    async fn reap(&mut self) -> Result<()> {
        let done = self.engine.next().await?;
        self.in_flight -= 1;
        let wanted = done.buf.len();
        match done.result {
            Ok(written) if written == wanted => {}
            Ok(written) => bail!(
                "writing {}: only {written} of {wanted} bytes written at offset {}",
                self.path.display(),
                done.offset
            ),
            Err(err) => bail!(
                "writing {} at offset {}: {err}{}",
                self.path.display(),
                done.offset,
                if err.raw_os_error() == Some(libc::ENOSPC) {
                    ": the server's disk is full"
                } else {
                    ""
                }
            ),
        }
        let mut buf = done.buf;
        buf.set_len(0);
        self.free.push(buf);
        Ok(())
    }

    /// Writes what is left and waits for every write; returns the offset just past the data.
    async fn finish(mut self) -> Result<u64> {
        let len = self.filling.len();
        let whole = if self.direct {
            len / ALIGN * ALIGN
        } else {
            len
        };
        let tail = self.filling.as_slice()[whole..].to_vec();
        let tail_at = self.start + whole as u64;
        if whole > 0 {
            self.filling.set_len(whole);
            let last = std::mem::replace(&mut self.filling, AlignedBuf::new(ALIGN));
            self.submit(last)?;
        }
        while self.in_flight > 0 {
            self.reap().await?;
        }
        if !tail.is_empty() {
            self.tail_file
                .write_all_at(&tail, tail_at)
                .with_context(|| format!("writing {} at offset {tail_at}", self.path.display()))?;
        }
        Ok(tail_at + tail.len() as u64)
    }
}

/// A disk buffer lent to the SSH layer as `Bytes`; it comes home when the last slice is sent.
struct Lent {
    buf: Option<AlignedBuf>,
    home: mpsc::UnboundedSender<AlignedBuf>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        self.buf.as_ref().map_or(&[], |buf| buf.as_slice())
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            let _ = self.home.send(buf);
        }
    }
}

/// Sends `len` bytes of a file from `offset` on the channel: [`DEPTH`] reads in flight, sent in
/// order, each buffer handed over without a copy and reused once the SSH layer is done with it.
async fn send_range(
    handle: &File,
    direct: bool,
    path: &Path,
    offset: u64,
    len: u64,
    write: &ChannelWriteHalf<Msg>,
) -> Result<()> {
    let end = offset + len;
    if len == 0 {
        return Ok(());
    }
    let mut engine = disk::start_engine(EngineChoice::Auto, handle, path, DEPTH, &mut Vec::new())?;
    let align = if direct { ALIGN as u64 } else { 1 };
    let first = offset / align * align;
    let (home, mut returned) = mpsc::unbounded_channel();
    // Two more than in flight: buffers lent to the SSH layer are still being encrypted.
    let mut free: Vec<AlignedBuf> = (0..DEPTH + 2).map(|_| AlignedBuf::new(BLOCK)).collect();
    let mut ready = BTreeMap::new();
    let (mut next_read, mut next_send, mut in_flight) = (first, first, 0usize);
    while next_send < end {
        while let Ok(buf) = returned.try_recv() {
            free.push(buf);
        }
        while in_flight < DEPTH && next_read < end {
            let Some(buf) = free.pop() else { break };
            let want = (end - next_read).div_ceil(align) * align;
            let read_len = want.min(BLOCK as u64) as usize;
            engine.submit(Request {
                op: Op::Read { len: read_len },
                offset: next_read,
                buf,
            })?;
            in_flight += 1;
            next_read += read_len as u64;
        }
        if let Some(done) = ready.remove(&next_send) {
            next_send = send_block(done, offset, end, path, &home, write).await?;
        } else if in_flight > 0 {
            let done = engine.next().await?;
            in_flight -= 1;
            ready.insert(done.offset, done);
        } else {
            let buf = returned
                .recv()
                .await
                .ok_or_else(|| anyhow!("the SSH layer kept a buffer"))?;
            free.push(buf);
        }
    }
    Ok(())
}

/// Sends the part of one read block inside [`offset`, `end`); returns the next block's offset.
async fn send_block(
    done: disk::Completion,
    offset: u64,
    end: u64,
    path: &Path,
    home: &mpsc::UnboundedSender<AlignedBuf>,
    write: &ChannelWriteHalf<Msg>,
) -> Result<u64> {
    let read = done
        .result
        .with_context(|| format!("reading {} at offset {}", path.display(), done.offset))?;
    let block_end = done.offset + read as u64;
    if block_end < end && read < BLOCK {
        bail!(
            "{} ended at byte {block_end}, before the {end} expected (did it shrink?)",
            path.display()
        );
    }
    let from = offset.saturating_sub(done.offset) as usize;
    let upto = (end.min(block_end) - done.offset) as usize;
    let bytes = Bytes::from_owner(Lent {
        buf: Some(done.buf),
        home: home.clone(),
    })
    .slice(from..upto);
    write
        .data_bytes(bytes)
        .await
        .map_err(|err| anyhow!("sending to the client: {err}"))?;
    Ok(block_end)
}

/// An SSH server (and the TCP server beside it) inside this process on 127.0.0.1: for tests,
/// and for `run --via ssh` against its own embedded peer. Stopped when dropped.
pub struct EmbeddedSsh {
    /// Where the SSH server listens.
    pub addr: SocketAddr,
    /// Where the TCP control server listens (the disk baseline goes through it).
    pub tcp_addr: SocketAddr,
    /// The host key clients must expect.
    pub host_key: PublicKey,
    listening: SshListening,
    _running: Stopper,
}

impl EmbeddedSsh {
    /// Serves `root` on free ports of 127.0.0.1 to the keys of `authorized_keys`, with the host
    /// key of `host_key` or a fresh ed25519 one.
    pub fn start(
        root: PathBuf,
        authorized_keys: &Path,
        host_key: Option<&Path>,
    ) -> Result<EmbeddedSsh> {
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
        let (Listening { addr, ssh, .. }, running) = super::start_in_thread(options)?;
        let listening = ssh.ok_or_else(|| anyhow!("the embedded SSH server did not start"))?;
        Ok(EmbeddedSsh {
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
