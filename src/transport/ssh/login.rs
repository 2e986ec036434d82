//! Logging in like OpenSSH does for a person: `~/.ssh/config` (Host, HostName, User, Port,
//! IdentityFile), keys from `-i` and the default files, ssh-agent, and the host key checked
//! against `known_hosts` before anything is sent.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use russh::cipher;
use russh::client::{self, Handle};
use russh::keys::{self, HashAlg, PrivateKeyWithHashAlg};
use ssh2_config::{ParseRule, SshConfig};

use super::worker::Worker;
use crate::transport::Peer;

/// The port SSH servers listen on unless told otherwise.
pub const SSH_PORT: u16 = 22;
/// Longest a TCP connect plus key exchange and login may take.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Key files tried when neither `-i` nor IdentityFile names one, in OpenSSH's order.
const DEFAULT_KEYS: [&str; 3] = ["id_ed25519", "id_ecdsa", "id_rsa"];
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
    /// `--known-hosts`: instead of `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// Record an unknown host's key instead of refusing it (OpenSSH's `accept-new`).
    pub accept_new_host_key: bool,
}

/// Who to log in as, where, with which keys: the command line over `~/.ssh/config` over defaults.
#[derive(Debug, Clone)]
pub struct Target {
    pub user: String,
    /// Where to connect (HostName, else the name given); also the name in known_hosts.
    pub host: String,
    pub port: u16,
    pub identities: Vec<PathBuf>,
    pub known_hosts: PathBuf,
    pub accept_new_host_key: bool,
    pub cipher: Option<cipher::Name>,
}

impl Target {
    pub fn resolve(peer: &Peer, options: &LoginOptions) -> Result<Target> {
        let home = home_dir();
        let config = read_config(options.config.as_deref(), home.as_deref())?;
        let params = config.as_ref().map(|config| config.query(&peer.host));
        let user = peer
            .user
            .clone()
            .or_else(|| params.as_ref().and_then(|p| p.user.clone()))
            .or_else(|| std::env::var("USER").ok())
            .or_else(current_user)
            .ok_or_else(|| anyhow!("who to log in as? give user@{}", peer.host))?;
        let host = params
            .as_ref()
            .and_then(|p| p.host_name.clone())
            .unwrap_or_else(|| peer.host.clone());
        let port = peer
            .port
            .or_else(|| params.as_ref().and_then(|p| p.port))
            .unwrap_or(SSH_PORT);
        let ssh_dir = home.as_deref().map(|home| home.join(".ssh"));
        let mut identities = options.identities.clone();
        match params.as_ref().and_then(|p| p.identity_file.clone()) {
            Some(files) => identities.extend(files),
            None => identities.extend(
                ssh_dir
                    .iter()
                    .flat_map(|dir| DEFAULT_KEYS.iter().map(move |name| dir.join(name)))
                    .filter(|path| path.exists()),
            ),
        }
        let known_hosts = match &options.known_hosts {
            Some(path) => path.clone(),
            None => ssh_dir.map(|dir| dir.join("known_hosts")).ok_or_else(|| {
                anyhow!("no home directory for ~/.ssh/known_hosts: give --known-hosts FILE")
            })?,
        };
        let cipher = options.cipher.as_deref().map(parse_cipher).transpose()?;
        Ok(Target {
            user,
            host,
            port,
            identities,
            known_hosts,
            accept_new_host_key: options.accept_new_host_key,
            cipher,
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

    /// How known_hosts and `ssh-keygen -R` name this host.
    fn known_hosts_name(&self) -> String {
        if self.port == SSH_PORT {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        }
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
    // SAFETY: getpwuid returns a pointer into static storage or null; read at once.
    unsafe {
        let entry = libc::getpwuid(libc::getuid());
        if entry.is_null() {
            return None;
        }
        let name = std::ffi::CStr::from_ptr((*entry).pw_name);
        Some(name.to_string_lossy().into_owned())
    }
}

/// `-F FILE` must exist; `~/.ssh/config` may not.
fn read_config(explicit: Option<&Path>, home: Option<&Path>) -> Result<Option<SshConfig>> {
    let path = match explicit {
        Some(path) => path.to_path_buf(),
        None => match home {
            Some(home) => home.join(".ssh").join("config"),
            None => return Ok(None),
        },
    };
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(err) if explicit.is_none() && err.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None);
        }
        Err(err) => bail!("cannot read the ssh config {}: {err}", path.display()),
    };
    let mut config = SshConfig::default();
    if let Some(home) = home {
        config = config.home_dir(home);
    }
    let config = config
        .parse(&mut BufReader::new(file), ParseRule::ALLOW_UNKNOWN_FIELDS)
        .map_err(|err| anyhow!("{}: {err}: fix or move the file", path.display()))?;
    Ok(Some(config))
}

/// Why a login stopped at the host key.
#[derive(Debug, Clone)]
enum HostKeyProblem {
    Unknown { fingerprint: String },
    Changed { line: usize, fingerprint: String },
    Unreadable(String),
}

/// What the connection learnt while it was set up.
#[derive(Debug, Clone, Default)]
struct Learnt {
    host_key: Option<HostKeyProblem>,
    cipher: Option<String>,
}

/// The client's side of russh: host-key checking and what the key exchange chose.
pub struct Client {
    target: Arc<Target>,
    learnt: Arc<Mutex<Learnt>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        offered: &keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let keys::PublicKeyOrCertificate::PublicKey { key, .. } = offered else {
            self.learnt.lock().expect("not poisoned").host_key = Some(HostKeyProblem::Unreadable(
                "the server offers a host certificate; xferbench checks plain host keys only"
                    .into(),
            ));
            return Ok(false);
        };
        let target = &self.target;
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let problem =
            match keys::check_known_hosts_path(&target.host, target.port, key, &target.known_hosts)
            {
                Ok(true) => return Ok(true),
                Ok(false) if target.accept_new_host_key => {
                    return match keys::known_hosts::learn_known_hosts_path(
                        &target.host,
                        target.port,
                        key,
                        &target.known_hosts,
                    ) {
                        Ok(()) => Ok(true),
                        Err(err) => {
                            self.learnt.lock().expect("not poisoned").host_key =
                                Some(HostKeyProblem::Unreadable(format!(
                                    "cannot record the host key in {}: {err}",
                                    target.known_hosts.display()
                                )));
                            Ok(false)
                        }
                    };
                }
                Ok(false) => HostKeyProblem::Unknown { fingerprint },
                Err(keys::Error::KeyChanged { line }) => {
                    HostKeyProblem::Changed { line, fingerprint }
                }
                Err(err) => HostKeyProblem::Unreadable(format!(
                    "cannot read {}: {err}",
                    target.known_hosts.display()
                )),
            };
        self.learnt.lock().expect("not poisoned").host_key = Some(problem);
        Ok(false)
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
pub struct Connection {
    pub handle: Handle<Client>,
    /// The cipher the key exchange chose.
    pub cipher: String,
    pub peer_addr: std::net::SocketAddr,
    /// The thread the session runs on; last, so it stops after the handle is gone.
    pub worker: Worker,
}

/// Connects, checks the host key, logs in; the connection's session runs on a thread of its own.
pub async fn connect(target: &Arc<Target>, index: usize) -> Result<Connection> {
    let worker = Worker::start(format!("xferbench-ssh-{}", index + 1))?;
    let login = worker.runtime().spawn({
        let target = target.clone();
        async move { tokio::time::timeout(LOGIN_TIMEOUT, connect_unbounded(&target)).await }
    });
    let (handle, cipher, peer_addr) = login
        .await
        .map_err(|err| anyhow!("the login task failed: {err}"))?
        .map_err(|_| {
            anyhow!(
                "{}: no login within {} s: is an SSH server answering there?",
                target.label(),
                LOGIN_TIMEOUT.as_secs()
            )
        })??;
    Ok(Connection {
        handle,
        cipher,
        peer_addr,
        worker,
    })
}

async fn connect_unbounded(
    target: &Arc<Target>,
) -> Result<(Handle<Client>, String, std::net::SocketAddr)> {
    let preferred = russh::Preferred {
        cipher: match target.cipher {
            Some(cipher) => vec![cipher].into(),
            None => CIPHERS.to_vec().into(),
        },
        ..russh::Preferred::default()
    };
    let config = Arc::new(client::Config {
        preferred,
        window_size: WINDOW,
        nodelay: true,
        ..client::Config::default()
    });
    let addr = (target.host.as_str(), target.port);
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|err| anyhow!("cannot connect to {}: {err}", target.label()))?;
    let peer_addr = stream.peer_addr()?;
    // Protocol steps are small messages each waiting for an answer: no Nagle delay on them.
    stream.set_nodelay(true)?;
    let learnt = Arc::new(Mutex::new(Learnt::default()));
    let client = Client {
        target: target.clone(),
        learnt: learnt.clone(),
    };
    let connected = client::connect_stream(config, stream, client).await;
    let problem = learnt.lock().expect("not poisoned").host_key.clone();
    let mut handle = match (connected, problem) {
        (_, Some(problem)) => return Err(host_key_error(target, problem)),
        (Ok(handle), None) => handle,
        (Err(err), None) => bail!("{}: the SSH handshake failed: {err}", target.label()),
    };
    authenticate(&mut handle, target).await?;
    let learnt = learnt.lock().expect("not poisoned").clone();
    Ok((handle, learnt.cipher.unwrap_or_default(), peer_addr))
}

/// OpenSSH's kind of refusal, in one line.
fn host_key_error(target: &Target, problem: HostKeyProblem) -> anyhow::Error {
    let name = target.known_hosts_name();
    let file = target.known_hosts.display();
    match problem {
        HostKeyProblem::Unknown { fingerprint } => anyhow!(
            "{}: the host key is not known ({fingerprint}, not in {file}): check it out of band, \
             then run again with --accept-new-host-key to record it (or ssh to it once)",
            target.label()
        ),
        HostKeyProblem::Changed { line, fingerprint } => anyhow!(
            "WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED for {name}: it now offers {fingerprint}, \
             not the key at {file}:{line}; someone could be eavesdropping (man in the middle) or the \
             host key was replaced; refused. If the change is expected: ssh-keygen -f {file} -R '{name}'"
        ),
        HostKeyProblem::Unreadable(message) => anyhow!("{}: {message}", target.label()),
    }
}

/// Public-key login: `-i`/IdentityFile/default key files, then the agent's keys.
async fn authenticate(handle: &mut Handle<Client>, target: &Target) -> Result<()> {
    let user = target.user.as_str();
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
    if std::env::var_os("SSH_AUTH_SOCK").is_some() {
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
    message.push_str("; give the key with -i KEY, add it to ssh-agent, or add its .pub to the server's authorized_keys");
    Err(anyhow!(message))
}
