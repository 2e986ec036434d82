//! Logging in like OpenSSH does for a person: `~/.ssh/config` (config.rs: Host, HostName,
//! User, Port, IdentityFile, ProxyJump, known_hosts files, tokens), keys from `-i` and the default
//! files, ssh-agent, and the host key checked against known_hosts (known_hosts.rs) before
//! anything is sent.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use russh::client::{self, Handle};
use russh::keys::{self, HashAlg, PrivateKeyWithHashAlg};
use russh::{MethodKind, cipher};
use tokio::io::{AsyncRead, AsyncWrite};

use super::config::{self, Config, Family, Tokens};
use super::known_hosts::{self, KnownHosts, Verdict};
use super::worker::Worker;
use crate::transport::Peer;

/// The port SSH servers listen on unless told otherwise.
pub const SSH_PORT: u16 = 22;
/// Longest a TCP connect plus key exchange and login may take.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Key files tried when neither `-i` nor IdentityFile names one, in OpenSSH's order.
const DEFAULT_KEYS: [&str; 3] = ["id_ed25519", "id_ecdsa", "id_rsa"];
/// known_hosts files read when ssh_config names none, as OpenSSH reads them.
const USER_KNOWN_HOSTS: [&str; 2] = ["~/.ssh/known_hosts", "~/.ssh/known_hosts2"];
const GLOBAL_KNOWN_HOSTS: [&str; 2] = ["/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"];
/// Most ProxyJump hops followed: a config that jumps through itself ends here.
const MAX_HOPS: usize = 8;
/// Bytes a channel may have in flight towards us: far above OpenSSH's 2 MiB so a download is
/// not capped by round trips.
const WINDOW: u32 = 32 << 20;

/// The cipher names `--cipher` accepts, fastest with AES-NI first: the order offered.
pub const CIPHERS: [cipher::Name; 6] = [
    cipher::AES_128_GCM,
    cipher::AES_256_GCM,
    cipher::CHACHA20_POLY1305,
    cipher::AES_128_CTR,
    cipher::AES_192_CTR,
    cipher::AES_256_CTR,
];

/// What the user asked for on the command line.
#[derive(Debug, Clone, Default)]
pub struct LoginOptions {
    /// `--cipher`: offer only this one.
    pub cipher: Option<String>,
    /// `-i`: key files tried first.
    pub identities: Vec<PathBuf>,
    /// `-F`: the ssh config file instead of `~/.ssh/config`.
    pub config: Option<PathBuf>,
    /// `--known-hosts`: instead of `~/.ssh/known_hosts` (or UserKnownHostsFile).
    pub known_hosts: Option<PathBuf>,
    /// Record an unknown host's key instead of refusing it (OpenSSH's `accept-new`).
    pub accept_new_host_key: bool,
}

/// Who to log in as, where, with which keys: the command line over `~/.ssh/config` over defaults.
#[derive(Debug, Clone)]
pub struct Target {
    pub user: String,
    /// Where to connect (HostName, else the name given).
    pub host: String,
    pub port: u16,
    pub identities: Vec<PathBuf>,
    /// The user's known_hosts files; a key accepted as new goes into the first.
    pub known_hosts: Vec<PathBuf>,
    /// Read too, never written.
    pub global_known_hosts: Vec<PathBuf>,
    /// RevokedHostKeys: a file of public keys never accepted.
    pub revoked_host_keys: Option<PathBuf>,
    /// HostKeyAlias: the name looked up in known_hosts instead of the host's.
    pub host_key_alias: Option<String>,
    pub accept_new_host_key: bool,
    pub cipher: Option<cipher::Name>,
    /// False with IdentitiesOnly: only key files are offered, not the agent's keys.
    pub use_agent: bool,
    pub family: Family,
    /// ProxyJump: the last hop before this host, itself perhaps reached through others.
    pub jump: Option<Arc<Target>>,
}

/// Whose ProxyJump a host takes.
enum Jump {
    /// Its own, from the config.
    FromConfig,
    /// The hops before it in a ProxyJump list (empty: dial directly).
    Hops(Vec<String>),
}

impl Target {
    /// The login for `peer`; an error names what in the config or the command line is wrong.
    pub fn resolve(peer: &Peer, options: &LoginOptions) -> Result<Target> {
        let home = home_dir();
        let config = Config::read(options.config.as_deref(), home.as_deref())?;
        Target::resolve_hop(
            peer,
            options,
            config.as_ref(),
            home.as_deref(),
            Jump::FromConfig,
            0,
        )
    }

    fn resolve_hop(
        peer: &Peer,
        options: &LoginOptions,
        config: Option<&Config>,
        home: Option<&Path>,
        jump: Jump,
        depth: usize,
    ) -> Result<Target> {
        let settings = config
            .map(|config| config.host(&peer.host))
            .transpose()?
            .unwrap_or_default();
        let host = settings
            .host_name
            .clone()
            .unwrap_or_else(|| peer.host.clone());
        let port = peer.port.or(settings.port).unwrap_or(SSH_PORT);
        let local_user = std::env::var("USER").ok().or_else(current_user);
        let hops = match jump {
            Jump::FromConfig => settings.proxy_jump.clone().unwrap_or_default(),
            Jump::Hops(hops) => hops,
        };
        let mut tokens = Tokens {
            home: home.map(|h| h.display().to_string()),
            host: host.clone(),
            original: peer.host.clone(),
            alias: settings
                .host_key_alias
                .clone()
                .unwrap_or_else(|| peer.host.clone()),
            port: Some(port),
            remote_user: None,
            local_user: local_user.clone(),
            jump: hops.join(","),
        };
        let user = match (&peer.user, &settings.user) {
            (Some(user), _) => user.clone(),
            (None, Some(user)) => config::expand(user, "User", config::USER_TOKENS, &tokens)?,
            (None, None) => local_user
                .clone()
                .ok_or_else(|| anyhow!("who to log in as? give user@{}", peer.host))?,
        };
        tokens.remote_user = Some(user.clone());
        let file = |text: &str, directive: &str| -> Result<PathBuf> {
            let expanded = config::expand(text, directive, config::FILE_TOKENS, &tokens)?;
            Ok(config::tilde(&expanded, home))
        };
        let mut identities = options.identities.clone();
        match &settings.identity_files {
            Some(files) => {
                for name in files {
                    identities.push(file(name, "IdentityFile")?);
                }
            }
            None => identities.extend(
                home.iter()
                    .flat_map(|home| {
                        DEFAULT_KEYS
                            .iter()
                            .map(move |name| home.join(".ssh").join(name))
                    })
                    .filter(|path| path.exists()),
            ),
        }
        let files = |given: &Option<Vec<String>>, defaults: &[&str], directive: &str| {
            let names: Vec<String> = match given {
                Some(names) => names.clone(),
                None => defaults.iter().map(|s| s.to_string()).collect(),
            };
            names
                .iter()
                .filter(|name| !name.eq_ignore_ascii_case("none"))
                .map(|name| file(name, directive))
                .collect::<Result<Vec<_>>>()
        };
        let known_hosts = match &options.known_hosts {
            Some(path) => vec![path.clone()],
            None if home.is_none() && settings.user_known_hosts.is_none() => {
                bail!("no home directory for ~/.ssh/known_hosts: give --known-hosts FILE")
            }
            None => files(
                &settings.user_known_hosts,
                &USER_KNOWN_HOSTS,
                "UserKnownHostsFile",
            )?,
        };
        let global_known_hosts = files(
            &settings.global_known_hosts,
            &GLOBAL_KNOWN_HOSTS,
            "GlobalKnownHostsFile",
        )?;
        let revoked_host_keys = settings
            .revoked_host_keys
            .as_deref()
            .filter(|name| !name.eq_ignore_ascii_case("none"))
            .map(|name| file(name, "RevokedHostKeys"))
            .transpose()?;
        let accept_new = options.accept_new_host_key
            || settings
                .strict_host_key_checking
                .as_deref()
                .is_some_and(|v| {
                    ["accept-new", "no", "off"].contains(&v.to_ascii_lowercase().as_str())
                });
        let cipher = options.cipher.as_deref().map(parse_cipher).transpose()?;
        let jump = match hops.split_last() {
            None => None,
            Some(_) if depth >= MAX_HOPS => bail!(
                "ProxyJump for {} goes through more than {MAX_HOPS} hops: does a jump host jump through itself? (exclude it: `Host * !gw`)",
                peer.host
            ),
            Some((last, before)) => {
                let hop_tokens = Tokens {
                    host: host.clone(),
                    ..tokens.clone()
                };
                let last = config::expand(last, "ProxyJump", config::JUMP_TOKENS, &hop_tokens)?;
                let spec = last.strip_prefix("ssh://").unwrap_or(&last);
                let hop = Peer::parse(spec.trim_end_matches('/'))
                    .with_context(|| format!("ProxyJump {last} for {}", peer.host))?;
                let rule = if before.is_empty() {
                    Jump::FromConfig
                } else {
                    Jump::Hops(before.to_vec())
                };
                Some(Arc::new(Target::resolve_hop(
                    &hop,
                    options,
                    config,
                    home,
                    rule,
                    depth + 1,
                )?))
            }
        };
        Ok(Target {
            user,
            host,
            port,
            identities,
            known_hosts,
            global_known_hosts,
            revoked_host_keys,
            host_key_alias: settings.host_key_alias,
            accept_new_host_key: accept_new,
            cipher,
            use_agent: !settings.identities_only,
            family: settings.family.unwrap_or(Family::Any),
            jump,
        })
    }

    /// `user@host:port`, as messages name the far side.
    pub fn label(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{}@{host}:{}", self.user, self.port)
    }

    /// How known_hosts and `ssh-keygen -R` name this host: HostKeyAlias, else `host` on port
    /// 22 and `[host]:port` elsewhere.
    pub fn known_hosts_name(&self) -> String {
        match &self.host_key_alias {
            Some(alias) => alias.clone(),
            None if self.port == SSH_PORT => self.host.clone(),
            None => format!("[{}]:{}", self.host, self.port),
        }
    }

    fn known_hosts_files(&self) -> Vec<PathBuf> {
        self.known_hosts
            .iter()
            .chain(&self.global_known_hosts)
            .cloned()
            .collect()
    }
}

/// A `--cipher` name, checked against what this build can do.
pub fn parse_cipher(name: &str) -> Result<cipher::Name> {
    CIPHERS
        .iter()
        .find(|cipher| cipher.as_ref() == name)
        .copied()
        .ok_or_else(|| {
            let known: Vec<&str> = CIPHERS.iter().map(|c| c.as_ref()).collect();
            anyhow!(
                "--cipher {name}: unknown cipher; give one of {}",
                known.join(", ")
            )
        })
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(PathBuf::from)
}

fn current_user() -> Option<String> {
    crate::sys::host::user_name()
}

/// Why a login stopped at the host key.
#[derive(Debug, Clone)]
enum HostKeyProblem {
    Unknown { line: String },
    Changed { place: String },
    Revoked { place: String },
    CertAuthority { place: String },
    OtherAlgorithms { known: Vec<String> },
    Unreadable(String),
}

/// What the connection learnt while it was set up.
#[derive(Debug, Clone, Default)]
struct Learnt {
    /// The problem and the offered key's `ALGORITHM SHA256:…`.
    host_key: Option<(HostKeyProblem, String)>,
    cipher: Option<String>,
}

/// Held while a new host key is checked again and recorded: `-P N` logs in N times at once,
/// and the key must be written once.
static RECORDING: Mutex<()> = Mutex::new(());

/// The client's side of russh: host-key checking and what the key exchange chose.
pub struct Client {
    target: Arc<Target>,
    known: Arc<KnownHosts>,
    learnt: Arc<Mutex<Learnt>>,
}

impl Client {
    /// The known_hosts verdict on `key`, a new key recorded when the user allows it.
    fn judge(&self, key: &keys::PublicKey) -> Result<(), HostKeyProblem> {
        let target = &self.target;
        let name = target.known_hosts_name();
        if let Some(file) = &target.revoked_host_keys {
            match known_hosts::revoked_in(file, key) {
                Ok(Some(line)) => {
                    return Err(HostKeyProblem::Revoked {
                        place: format!("{}:{line}", file.display()),
                    });
                }
                Ok(None) => {}
                Err(err) => return Err(HostKeyProblem::Unreadable(format!("{err:#}"))),
            }
        }
        let mut verdict = self.known.check(&name, key);
        // OpenSSH's fallback: off port 22, a host with no line for this key under `[host]:port`
        // is still known when its plain name's line holds this very key.
        if matches!(verdict, Verdict::Unknown | Verdict::OtherAlgorithms(_))
            && target.host_key_alias.is_none()
            && target.port != SSH_PORT
            && matches!(self.known.check(&target.host, key), Verdict::Known)
        {
            verdict = Verdict::Known;
        }
        match verdict {
            Verdict::Known => Ok(()),
            Verdict::Unknown if target.accept_new_host_key => {
                let _held = RECORDING.lock().unwrap_or_else(|p| p.into_inner());
                // Another connection of this run may have recorded it meanwhile.
                let now = KnownHosts::load(&target.known_hosts_files())
                    .map_err(|err| HostKeyProblem::Unreadable(format!("{err:#}")))?;
                match now.check(&name, key) {
                    Verdict::Known => Ok(()),
                    Verdict::Unknown => {
                        let file = target.known_hosts.first().ok_or_else(|| {
                            HostKeyProblem::Unreadable(
                                "UserKnownHostsFile is none: nowhere to record the host key".into(),
                            )
                        })?;
                        known_hosts::record(file, &name, key)
                            .map_err(|err| HostKeyProblem::Unreadable(format!("{err:#}")))
                    }
                    _ => Err(HostKeyProblem::Unreadable(
                        "known_hosts changed while logging in: run again".into(),
                    )),
                }
            }
            Verdict::Unknown => Err(HostKeyProblem::Unknown {
                line: known_hosts::line_for(&name, key)
                    .map_err(|err| HostKeyProblem::Unreadable(format!("{err:#}")))?,
            }),
            Verdict::Changed(entry) => Err(HostKeyProblem::Changed {
                place: entry.place(),
            }),
            Verdict::Revoked(entry) => Err(HostKeyProblem::Revoked {
                place: entry.place(),
            }),
            Verdict::CertAuthority(entry) => Err(HostKeyProblem::CertAuthority {
                place: entry.place(),
            }),
            Verdict::OtherAlgorithms(entries) => Err(HostKeyProblem::OtherAlgorithms {
                known: entries
                    .iter()
                    .map(|e| format!("{} at {}", e.key.algorithm(), e.place()))
                    .collect(),
            }),
        }
    }
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        offered: &keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let keys::PublicKeyOrCertificate::PublicKey { key, .. } = offered else {
            self.learnt.lock().expect("not poisoned").host_key = Some((
                HostKeyProblem::Unreadable(
                    "the server offers a host certificate; xferbench checks plain host keys only"
                        .into(),
                ),
                String::new(),
            ));
            return Ok(false);
        };
        let offered = format!("{} {}", key.algorithm(), key.fingerprint(HashAlg::Sha256));
        match self.judge(key) {
            Ok(()) => Ok(true),
            Err(problem) => {
                self.learnt.lock().expect("not poisoned").host_key = Some((problem, offered));
                Ok(false)
            }
        }
    }

    async fn kex_done(
        &mut self,
        _shared_secret: Option<&[u8]>,
        names: &russh::Names,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let mut learnt = self.learnt.lock().expect("not poisoned");
        learnt.cipher = Some(names.cipher.as_ref().to_string());
        Ok(())
    }
}

/// One logged-in SSH connection.
pub struct SshConnection {
    pub handle: Handle<Client>,
    /// The cipher the key exchange chose.
    pub cipher: String,
    /// The server's address; through ProxyJump, the host's own if it is an address, else the
    /// first hop's.
    pub peer_addr: SocketAddr,
    /// The ProxyJump hops' connections, first hop first: they carry this one.
    pub jumps: Vec<Handle<Client>>,
    /// The thread the session runs on; last, so it stops after the handles are gone.
    pub worker: Worker,
}

/// Connects, checks the host key, logs in; the connection's session runs on a thread of its own.
pub async fn connect(target: &Arc<Target>, index: usize) -> Result<SshConnection> {
    let worker = Worker::start(format!("xferbench-ssh-{}", index + 1))?;
    let login = worker.runtime().spawn({
        let target = target.clone();
        async move { tokio::time::timeout(LOGIN_TIMEOUT, connect_unbounded(target)).await }
    });
    let session = login
        .await
        .map_err(|err| anyhow!("the login task failed: {err}"))?
        .map_err(|_| {
            anyhow!(
                "{}: no login within {} s: is an SSH server answering there?",
                target.label(),
                LOGIN_TIMEOUT.as_secs()
            )
        })??;
    Ok(SshConnection {
        handle: session.handle,
        cipher: session.cipher,
        peer_addr: session.peer_addr,
        jumps: session.jumps,
        worker,
    })
}

/// A logged-in session before it is tied to its thread.
struct Session {
    handle: Handle<Client>,
    cipher: String,
    peer_addr: SocketAddr,
    jumps: Vec<Handle<Client>>,
}

/// What an SSH session runs over: a TCP stream, or a channel through a jump host.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A TCP stream that acknowledges at once the small messages it reads (TCP_QUICKACK after a
/// small read, as the kernel leaves quick-ACK mode on its own). sshd sets no TCP_NODELAY on a session without a
/// terminal, so each small message it sends after another (an exec's channel success, exit
/// status, EOF, close) waits under Nagle for the ACK of the one before, which the client's
/// delayed ACK holds for up to 40 ms (measured: 0.33 → 0.31 s for a 1 kB upload to sshd).
struct QuickAck(tokio::net::TcpStream);

impl AsyncRead for QuickAck {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = std::pin::Pin::new(&mut self.0).poll_read(cx, buf);
        // Only after a small read: a bulk download's segments are acknowledged every second
        // one anyway, and a system call per read would cost it.
        if matches!(read, std::task::Poll::Ready(Ok(()))) && buf.filled().len() - before < 4096 {
            // Best effort: a socket that refuses keeps the kernel's delayed ACK.
            let _ = crate::sys::socket::set_option(
                self.0.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                1,
            );
        }
        read
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Reaches the host (directly, or through its ProxyJump hops), checks its key and logs in.
fn connect_unbounded(
    target: Arc<Target>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Session>> + Send>> {
    Box::pin(async move {
        let (stream, peer_addr, jumps): (Box<dyn Stream>, SocketAddr, Vec<Handle<Client>>) =
            match &target.jump {
                None => {
                    let stream = dial(&target).await?;
                    let peer_addr = stream.peer_addr()?;
                    (Box::new(QuickAck(stream)), peer_addr, Vec::new())
                }
                Some(jump) => {
                    let hop = connect_unbounded(jump.clone()).await?;
                    let channel = hop
                        .handle
                        .channel_open_direct_tcpip(
                            target.host.as_str(),
                            u32::from(target.port),
                            "127.0.0.1",
                            0,
                        )
                        .await
                        .map_err(|err| {
                            anyhow!(
                                "{}: the jump host {} could not open a connection to {}:{} ({err}): does it allow TCP forwarding (AllowTcpForwarding), and reach that host?",
                                target.label(),
                                jump.label(),
                                target.host,
                                target.port
                            )
                        })?;
                    let peer_addr = target
                        .host
                        .parse::<std::net::IpAddr>()
                        .map(|ip| SocketAddr::new(ip, target.port))
                        .unwrap_or(hop.peer_addr);
                    let mut jumps = hop.jumps;
                    jumps.push(hop.handle);
                    (Box::new(channel.into_stream()), peer_addr, jumps)
                }
            };
        let known = Arc::new(
            KnownHosts::load(&target.known_hosts_files()).with_context(|| target.label())?,
        );
        // Algorithms pinned for this host go first, as OpenSSH orders them, so a host known
        // by one kind of key is not asked for another.
        let mut key = known.pinned_algorithms(&target.known_hosts_name());
        let fallback = if target.host_key_alias.is_none() && target.port != SSH_PORT {
            known.pinned_algorithms(&target.host)
        } else {
            Vec::new()
        };
        for algorithm in fallback.iter().chain(russh::Preferred::DEFAULT.key.iter()) {
            if !key.contains(algorithm) {
                key.push(algorithm.clone());
            }
        }
        let preferred = russh::Preferred {
            cipher: match target.cipher {
                Some(cipher) => vec![cipher].into(),
                None => CIPHERS.to_vec().into(),
            },
            key: key.into(),
            ..russh::Preferred::default()
        };
        let config = Arc::new(client::Config {
            preferred,
            window_size: WINDOW,
            nodelay: true,
            ..client::Config::default()
        });
        let learnt = Arc::new(Mutex::new(Learnt::default()));
        let client = Client {
            target: target.clone(),
            known,
            learnt: learnt.clone(),
        };
        let connected = client::connect_stream(config, stream, client).await;
        let problem = learnt.lock().expect("not poisoned").host_key.clone();
        let mut handle = match (connected, problem) {
            (_, Some((problem, offered))) => {
                return Err(host_key_error(&target, problem, &offered));
            }
            (Ok(handle), None) => handle,
            (Err(err), None) => bail!("{}: the SSH handshake failed: {err}", target.label()),
        };
        authenticate(&mut handle, &target).await?;
        let learnt = learnt.lock().expect("not poisoned").clone();
        Ok(Session {
            handle,
            cipher: learnt.cipher.unwrap_or_default(),
            peer_addr,
            jumps,
        })
    })
}

/// A TCP connection to the host: every address it resolves to (of the AddressFamily) tried in
/// turn; the error lists each address and why it failed.
async fn dial(target: &Target) -> Result<tokio::net::TcpStream> {
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|err| {
            anyhow!(
                "{}: cannot resolve {}: {err}: check the host name",
                target.label(),
                target.host
            )
        })?
        .filter(|addr| match target.family {
            Family::Any => true,
            Family::Inet => addr.is_ipv4(),
            Family::Inet6 => addr.is_ipv6(),
        })
        .collect();
    if addresses.is_empty() {
        bail!(
            "{}: {} has no address of the AddressFamily ssh_config asks for ({:?})",
            target.label(),
            target.host,
            target.family
        );
    }
    let mut tried = Vec::new();
    for address in &addresses {
        match tokio::net::TcpStream::connect(address).await {
            Ok(stream) => {
                // Protocol steps are small messages each waiting for an answer: no Nagle delay.
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(err) => tried.push(format!("{address} ({err})")),
        }
    }
    bail!(
        "cannot connect to {}: tried {}: is an SSH server listening there?",
        target.label(),
        tried.join(", ")
    )
}

/// OpenSSH's kind of refusal, in one line.
fn host_key_error(target: &Target, problem: HostKeyProblem, offered: &str) -> anyhow::Error {
    let name = target.known_hosts_name();
    let files: Vec<String> = target
        .known_hosts_files()
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    let first = target
        .known_hosts
        .first()
        .map(|f| f.display().to_string())
        .unwrap_or_else(|| "known_hosts".into());
    let label = target.label();
    match problem {
        HostKeyProblem::Unknown { line } => anyhow!(
            "{label}: the host key is not known: {name} offers {offered}, and no line of {} names it; \
             check that fingerprint out of band, then run again with --accept-new-host-key to record it, \
             or add this line to {first}: {line}",
            files.join(", ")
        ),
        HostKeyProblem::Changed { place } => {
            let file = place.rsplit_once(':').map_or(place.as_str(), |(f, _)| f);
            anyhow!(
                "WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED for {name}: it now offers {offered}, \
                 not the key at {place}; someone could be eavesdropping (man in the middle) or the \
                 host key was replaced; refused. If the change is expected: ssh-keygen -f {file} -R '{name}'"
            )
        }
        HostKeyProblem::Revoked { place } => anyhow!(
            "{label}: the host key {offered} of {name} is REVOKED ({place}); refused: someone may be \
             posing as the host, or it still uses a key that was withdrawn; ask its administrator"
        ),
        HostKeyProblem::CertAuthority { place } => anyhow!(
            "{label}: {place} trusts a certificate authority (@cert-authority) for {name}, and \
             xferbench does not check host certificates; refused rather than ignored: add the \
             host's own key as a plain line ({name} ALGORITHM KEY) to {first}"
        ),
        HostKeyProblem::OtherAlgorithms { known } => anyhow!(
            "{label}: {name} is known by other keys ({}) but now offers only {offered}; refused, \
             even with --accept-new-host-key: if its keys were replaced, remove the old lines \
             (ssh-keygen -f FILE -R '{name}') and run again",
            known.join(", ")
        ),
        HostKeyProblem::Unreadable(message) => anyhow!("{label}: {message}"),
    }
}

/// Public-key login: `-i`/IdentityFile/default key files, then the agent's keys. The server is
/// asked first which methods it takes (the `none` request, as OpenSSH does), so a server
/// without public keys is named as such.
async fn authenticate(handle: &mut Handle<Client>, target: &Target) -> Result<()> {
    let user = target.user.as_str();
    let offers = match handle
        .authenticate_none(user)
        .await
        .with_context(|| format!("{}: logging in", target.label()))?
    {
        russh::client::AuthResult::Success => return Ok(()),
        russh::client::AuthResult::Failure {
            remaining_methods, ..
        } => remaining_methods,
    };
    let offered: Vec<&str> = offers.iter().map(<&str>::from).collect();
    if !offers.contains(&MethodKind::PublicKey) {
        bail!(
            "{}: permission denied: the server offers {} for {user}, and xferbench logs in by \
             public key only; enable PubkeyAuthentication on the server and add your key's .pub \
             to {user}'s authorized_keys there",
            target.label(),
            if offered.is_empty() {
                "no login method".to_string()
            } else {
                offered.join(", ")
            }
        );
    }
    let mut tried = Vec::new();
    let mut skipped = Vec::new();
    for path in &target.identities {
        let key = match keys::load_secret_key(path, None) {
            Ok(key) => key,
            Err(keys::Error::KeyIsEncrypted) => {
                skipped.push(format!(
                    "{} is passphrase-protected: load it with ssh-add",
                    path.display()
                ));
                continue;
            }
            Err(err) => {
                skipped.push(format!("{}: {err}", path.display()));
                continue;
            }
        };
        let hash = handle.best_supported_rsa_hash().await?.flatten();
        let result = handle
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
            .with_context(|| format!("{}: logging in", target.label()))?;
        if result.success() {
            return Ok(());
        }
        tried.push(path.display().to_string());
    }
    if target.use_agent && std::env::var_os("SSH_AUTH_SOCK").is_some() {
        match keys::agent::client::AgentClient::connect_env().await {
            Ok(mut agent) => {
                let identities = agent.request_identities().await.unwrap_or_default();
                for identity in identities {
                    let key = identity.public_key().into_owned();
                    let hash = handle.best_supported_rsa_hash().await?.flatten();
                    let comment = key.comment().to_string();
                    match handle
                        .authenticate_publickey_with(user, key, hash, &mut agent)
                        .await
                    {
                        Ok(result) if result.success() => return Ok(()),
                        Ok(_) => tried.push(format!("agent key {comment}")),
                        Err(err) => skipped.push(format!("agent key {comment}: {err}")),
                    }
                }
            }
            Err(err) => skipped.push(format!("ssh-agent (SSH_AUTH_SOCK): {err}")),
        }
    }
    let mut message = format!("{}: permission denied (publickey)", target.label());
    if tried.is_empty() {
        message.push_str(": no key to offer");
    } else {
        message.push_str(&format!(": tried {}", tried.join(", ")));
    }
    if !skipped.is_empty() {
        message.push_str(&format!("; skipped {}", skipped.join("; ")));
    }
    message.push_str(&format!(
        "; the server offers {}; give the key with -i KEY, add it to ssh-agent, or add its .pub to the server's authorized_keys",
        offered.join(", ")
    ));
    Err(anyhow!(message))
}
