//! `xferbench serve`: the peer that receives, sends and measures its own disk.
//!
//! Shaped like tokio's mini-redis: `control` has the frames, this file the accept loop and its
//! limits, `session` one control connection and the request it carries, `root` the confinement
//! of every path to the served directory, `peer` the tests a coordinator asks it to run toward
//! another serve, `ssh` the embedded SSH server (`--ssh-listen`) beside the TCP listener.
//! Ctrl-C or SIGTERM stops it; sessions under way are dropped, which removes their partial
//! files (but for uploads with `--resume`: kept for the next one).

mod peer;
pub use peer::{PeerOutcome, run_job as run_peer_job};
#[cfg(feature = "rdma")]
mod rdma;
#[cfg(not(feature = "rdma"))]
#[path = "no_rdma.rs"]
mod rdma;
mod root;
mod session;
pub mod ssh;
mod tree;
mod udp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

pub use root::Root;

use crate::interrupt::{self, Interrupted};

/// Clients served at once by default: each copy holds `iodepth` chunk buffers and a disk's
/// attention, and a benchmark wants the machine to itself anyway.
pub const DEFAULT_MAX_CLIENTS: usize = 4;
/// How long a control connection may stay silent before a request; a stuck or hostile client
/// cannot keep a slot forever.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the data connections of a session have to join once it is ready.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server's threads get to finish once it stops.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);
/// Most data streams one request may ask for.
pub const MAX_STREAMS: u32 = 128;

/// What `xferbench serve` was asked to do.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    /// None: a fresh temporary directory.
    pub root: Option<PathBuf>,
    /// None: no token on loopback, a generated one otherwise.
    pub token: Option<String>,
    pub max_bytes: Option<u64>,
    pub max_clients: usize,
    pub idle_timeout: Duration,
    /// The embedded SSH server too, when asked.
    pub ssh: Option<ssh::SshOptions>,
    /// The RDMA device and GID for `--via rdma` clients.
    pub rdma: crate::transport::rdma::RdmaOptions,
}

/// What the server tells its operator as it starts.
#[derive(Debug, Clone)]
pub struct Announcement {
    pub addr: SocketAddr,
    pub root: PathBuf,
    /// A token was generated here (the operator must hand it to clients).
    pub token: Option<String>,
    pub token_generated: bool,
    /// The embedded SSH server, when one runs.
    pub ssh: Option<ssh::SshAnnouncement>,
}

/// State every connection shares.
pub(crate) struct Shared {
    root: Root,
    token: Option<String>,
    max_bytes: Option<u64>,
    idle_timeout: Duration,
    port: u16,
    clients: Arc<Semaphore>,
    max_clients: usize,
    /// Sessions waiting for their data connections, by session id.
    pending: Mutex<HashMap<String, mpsc::Sender<(u32, TcpStream)>>>,
    #[cfg_attr(not(feature = "rdma"), allow(dead_code))]
    rdma: crate::transport::rdma::RdmaOptions,
    /// The UDP socket on the same port number, for `--via udp`.
    udp: udp::UdpPort,
    log: Box<dyn Fn(&str) + Send + Sync>,
}

/// Runs the server until Ctrl-C or SIGTERM, then fails with [`Interrupted`] (exit 130, like
/// every command stopped that way). `announce` hears where it listens before any client is
/// served; `log` gets one line per session.
pub fn run(
    options: ServeOptions,
    announce: impl FnOnce(&Announcement),
    log: impl Fn(&str) + Send + Sync + 'static,
) -> Result<()> {
    serve_until(options, announce, log, interrupt::wait())?;
    Err(Interrupted.into())
}

/// A server running inside this process on loopback: `run`'s default peer, so a first run
/// needs nothing else installed. Stopped (and its sessions dropped) when this is dropped.
pub struct EmbeddedServer {
    pub addr: SocketAddr,
    _running: Stopper,
}

impl EmbeddedServer {
    /// Starts a server on 127.0.0.1 (any free port) serving `root`, its RDMA path on `rdma`.
    pub fn start(
        root: PathBuf,
        rdma: crate::transport::rdma::RdmaOptions,
    ) -> Result<EmbeddedServer> {
        let options = ServeOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            root: Some(root),
            token: None,
            max_bytes: None,
            max_clients: DEFAULT_MAX_CLIENTS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            ssh: None,
            rdma,
        };
        let (listening, running) = start_in_thread(options)?;
        Ok(EmbeddedServer {
            addr: listening.addr,
            _running: running,
        })
    }
}

/// Stops a server started by [`start_in_thread`] when dropped, and waits for it.
struct Stopper {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Drop for Stopper {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs a server on a thread of its own; returns once it listens.
fn start_in_thread(options: ServeOptions) -> Result<(Announcement, Stopper)> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (listening_tx, listening_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("xferbench-embedded-serve".into())
        .spawn(move || {
            serve_until(
                options,
                |listening| {
                    let _ = listening_tx.send(listening.clone());
                },
                |_| {},
                async {
                    let _ = stopped.await;
                },
            )
        })
        .context("starting the embedded server")?;
    match listening_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(listening) => Ok((
            listening,
            Stopper {
                stop: Some(stop),
                thread: Some(thread),
            },
        )),
        Err(_) => Err(match thread.join() {
            Ok(Err(err)) => err.context("the embedded server did not start"),
            _ => anyhow!("the embedded server did not start"),
        }),
    }
}

/// Binds a listener; the error says which address, and for a port in use which flag picks another.
async fn listen(addr: SocketAddr, what: &str, flag: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|err| {
        anyhow!(
            "cannot {what} on {addr}: {err}{}",
            if err.kind() == std::io::ErrorKind::AddrInUse {
                format!(": another server has the port; pick another with {flag} ADDR:PORT")
            } else {
                String::new()
            }
        )
    })
}

/// Serves until `stop` resolves.
fn serve_until(
    options: ServeOptions,
    announce: impl FnOnce(&Announcement),
    log: impl Fn(&str) + Send + Sync + 'static,
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let (root_dir, _temp_root) = match &options.root {
        Some(dir) => (dir.clone(), None),
        None => {
            let temp = tempfile::Builder::new()
                .prefix("xferbench-serve-")
                .tempdir()
                .context("creating a temporary root directory")?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    let root = Root::new(&root_dir)?;
    let (token, token_generated) = match options.token.clone() {
        Some(token) => (Some(token), false),
        None if options.listen.ip().is_loopback() => (None, false),
        None => (Some(format!("{:032x}", rand::random::<u128>())), true),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("xferbench-serve")
        .build()
        .context("starting the server runtime")?;
    let served = runtime.block_on(async move {
        let listener = listen(options.listen, "listen", "--listen").await?;
        let addr = listener.local_addr()?;
        let ssh_server = match &options.ssh {
            Some(ssh_options) => {
                Some(ssh::SshServer::bind(ssh_options, options.idle_timeout).await?)
            }
            None => None,
        };
        announce(&Announcement {
            addr,
            root: root.dir().to_path_buf(),
            token: token.clone(),
            token_generated,
            ssh: ssh_server.as_ref().map(|server| server.listening().clone()),
        });
        let shared = Arc::new(Shared {
            root,
            token,
            max_bytes: options.max_bytes,
            idle_timeout: options.idle_timeout,
            port: addr.port(),
            clients: Arc::new(Semaphore::new(options.max_clients)),
            max_clients: options.max_clients,
            pending: Mutex::new(HashMap::new()),
            rdma: options.rdma.clone(),
            udp: udp::UdpPort::bind(addr),
            log: Box::new(log),
        });
        if let Some(reason) = shared.udp.unavailable() {
            (shared.log)(&format!("no UDP: {reason}"));
        }
        // Dropped (aborted) at the end with every SSH connection and command it holds.
        let ssh_task =
            ssh_server.map(|server| AbortOnDrop(tokio::spawn(server.serve(shared.clone()))));
        let mut connections = JoinSet::new();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        connections.spawn(session::serve_connection(shared.clone(), stream, peer));
                    }
                    // Out of file descriptors and the like: keep serving, after a breath.
                    Err(err) => {
                        (shared.log)(&format!("accept failed: {err}"));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = connections.join_next() => {}
                _ = &mut stop => break,
            }
        }
        // Dropping the sessions removes their partial files.
        drop(ssh_task);
        connections.shutdown().await;
        Ok(())
    });
    // Every data loop wakes to look at Ctrl-C within a fraction of a second; one that does not
    // must not keep the process alive.
    runtime.shutdown_timeout(SHUTDOWN_TIMEOUT);
    served
}

/// A task aborted when dropped, e.g. when the server's loop ends with an error.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
