//! The servers of a `run` without HOST, inside this process on loopback: serve's TCP server
//! always, its SSH server for `--via ssh`, logged into with a key made for the run.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};

use crate::serve;
use crate::transport::Peer;
use crate::transport::rdma::RdmaOptions;
use crate::transport::ssh::login::LoginOptions;

/// The servers of a run without HOST, inside this process on loopback: TCP always, SSH for
/// `--via ssh`, logged into with a key made for the run.
pub(super) struct EmbeddedServers {
    tcp: std::net::SocketAddr,
    ssh: Option<std::net::SocketAddr>,
    pub(super) login: LoginOptions,
    /// The run's key, authorized_keys and known_hosts; removed at the end.
    _keys: Option<tempfile::TempDir>,
    _tcp: Option<serve::EmbeddedServer>,
    _ssh: Option<serve::ssh::EmbeddedSshServer>,
}

impl EmbeddedServers {
    pub(super) fn start(
        root: &Path,
        with_ssh: bool,
        login: &LoginOptions,
        rdma: &RdmaOptions,
    ) -> Result<EmbeddedServers> {
        if !with_ssh {
            let tcp = serve::EmbeddedServer::start(root.to_path_buf(), rdma.clone())?;
            return Ok(EmbeddedServers {
                tcp: tcp.addr,
                ssh: None,
                login: login.clone(),
                _keys: None,
                _tcp: Some(tcp),
                _ssh: None,
            });
        }
        let keys = tempfile::tempdir().context("a directory for the run's SSH key")?;
        let key =
            russh::keys::PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519)
                .map_err(|err| anyhow!("making an SSH key for the run: {err}"))?;
        let (identity, authorized_keys, known_hosts) = (
            keys.path().join("id_ed25519"),
            keys.path().join("authorized_keys"),
            keys.path().join("known_hosts"),
        );
        let private = key
            .to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .map_err(|err| anyhow!("writing the run's SSH key: {err}"))?;
        std::fs::write(&identity, private.as_bytes())?;
        let public = key
            .public_key()
            .to_openssh()
            .map_err(|err| anyhow!("writing the run's SSH key: {err}"))?;
        std::fs::write(&authorized_keys, format!("{public}\n"))?;
        let ssh = serve::ssh::EmbeddedSshServer::start(root.to_path_buf(), &authorized_keys, None)?;
        std::fs::write(&known_hosts, format!("{}\n", ssh.known_hosts_line()))?;
        Ok(EmbeddedServers {
            tcp: ssh.tcp_addr,
            ssh: Some(ssh.addr),
            login: LoginOptions {
                cipher: login.cipher.clone(),
                identities: vec![identity],
                config: Some(PathBuf::from("/dev/null")),
                known_hosts: Some(known_hosts),
                accept_new_host_key: false,
            },
            _keys: Some(keys),
            _tcp: None,
            _ssh: Some(ssh),
        })
    }

    pub(super) fn tcp_peer(&self) -> Peer {
        Peer {
            user: None,
            host: self.tcp.ip().to_string(),
            port: Some(self.tcp.port()),
        }
    }

    pub(super) fn ssh_peer(&self) -> Peer {
        let addr = self.ssh.unwrap_or(self.tcp);
        Peer {
            user: None,
            host: addr.ip().to_string(),
            port: Some(addr.port()),
        }
    }
}
