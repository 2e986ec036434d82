//! The client's end of the control protocol: connect and say hello, send one request, read the
//! server's replies with a deadline (Ctrl-C ends any wait), and ask why a data stream broke.
//!
//! Every path that talks to `xferbench serve` (tcp, udp, rdma) holds a [`Client`]; clones share
//! one tokio runtime, so a `run` over every path holds one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::net::TcpStream;

use super::frame::{FrameError, MAX_RESULT_FRAME};
use super::{
    Connection, CopyDone, DiskRequest, MeasureToRequest, MeasuredTo, NetDone, Opening,
    PROTOCOL_NAME, PROTOCOL_VERSION, RemoveRequest, Reply, Request, UdpDone,
};
use crate::disk;
use crate::interrupt::Interrupted;
use crate::measure::Measurement;

/// How long to wait for a connection or a handshake answer before calling the server unreachable.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the results of a copy may take after the last byte: the far side fsyncs first.
pub const RESULT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long one side of a `--resume` copy waits while the other digests a prefix: it may read
/// up to the whole file.
pub const PREFIX_TIMEOUT: Duration = Duration::from_secs(600);
/// How long to wait for the server's explanation after a data stream broke.
const EXPLANATION_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the runtime's threads get to finish when the last client is dropped: each wakes at
/// least every `transport::memory::WAKE`, so more than this means one is stuck, and the process
/// must not wait.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_millis(500);

/// Where a client dials, and how the server is named in its sentences.
#[derive(Debug, Clone)]
pub struct Server {
    /// The server as the user gave it, for messages.
    pub name: String,
    /// The host alone, for a failed name lookup.
    pub host: String,
    /// `HOST:PORT` of serve's control port (brackets around IPv6).
    pub authority: String,
}

/// The network runtime, shut down with a bound (not waited for) when the last client goes.
struct Runtime(Option<tokio::runtime::Runtime>);

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_timeout(SHUTDOWN_TIMEOUT);
        }
    }
}

/// The control-protocol client of one server; clones share the runtime.
#[derive(Clone)]
pub struct Client {
    server: Arc<Server>,
    token: Option<String>,
    runtime: Arc<Runtime>,
}

/// A baseline of the server's disk, measured there in its root (write then read, O_DIRECT).
#[derive(Debug, Clone)]
pub struct RemoteBaseline {
    pub measurements: Vec<Measurement>,
    /// The server's warnings, in words.
    pub warnings: Vec<String>,
    /// The device of the server's root, when it says.
    pub device: Option<crate::file::DeviceId>,
}

impl Client {
    /// A client of `server` with its own runtime; clone it to share that runtime.
    pub fn new(server: Server, token: Option<String>) -> Result<Client> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("xferbench-net")
            .build()
            .context("starting the network runtime")?;
        Ok(Client {
            server: Arc::new(server),
            token,
            runtime: Arc::new(Runtime(Some(runtime))),
        })
    }

    /// The server, as its sentences name it.
    pub fn name(&self) -> &str {
        &self.server.name
    }

    /// Runs a step of the protocol (or a path's data plane) on the shared runtime.
    pub fn block_on<F: Future>(&self, step: F) -> F::Output {
        self.runtime
            .0
            .as_ref()
            .expect("the runtime lives until the last client is dropped")
            .block_on(step)
    }

    /// Connects (every address of the name in turn) and says hello; the server's welcome
    /// must speak our protocol version.
    pub async fn handshake(&self) -> Result<Connection> {
        let Server {
            name,
            host,
            authority,
        } = &*self.server;
        let addrs: Vec<SocketAddr> =
            tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio::net::lookup_host(authority))
                .await
                .map_err(|_| anyhow!("cannot resolve {host}: timed out"))?
                .map_err(|err| anyhow!("cannot resolve {host}: {err}: check the host name"))?
                .collect();
        // Every address tried is named in the error, with why it failed.
        let mut tried = Vec::new();
        let mut connected = None;
        for addr in addrs {
            let connect = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(addr));
            let connected_or = tokio::select! {
                connected = connect => connected,
                _ = crate::interrupt::wait() => return Err(Interrupted.into()),
            };
            match connected_or {
                Ok(Ok(stream)) => {
                    connected = Some(stream);
                    break;
                }
                Ok(Err(err)) => tried.push(format!("{addr} ({err})")),
                Err(_) => tried.push(format!("{addr} (timed out)")),
            }
        }
        let Some(stream) = connected else {
            let tried = match tried.is_empty() {
                true => "no address".to_string(),
                false => tried.join(", "),
            };
            bail!(
                "cannot connect to {name}: tried {tried}: is `xferbench serve` running there, on that port?"
            );
        };
        let mut control = Connection::new(stream, MAX_RESULT_FRAME);
        control
            .write(&Opening::Hello {
                protocol: PROTOCOL_NAME.into(),
                version: PROTOCOL_VERSION,
                token: self.token.clone(),
            })
            .await?;
        match self.reply(&mut control, HANDSHAKE_TIMEOUT).await? {
            Reply::Welcome { version, .. } if version == PROTOCOL_VERSION => Ok(control),
            Reply::Welcome { version, server } => bail!(
                "{name} runs xferbench {server} speaking protocol {version}, this one speaks {PROTOCOL_VERSION}: use the same version on both sides"
            ),
            other => Err(self.unexpected(other)),
        }
    }

    /// Says hello, sends `request`, and returns the connection with the server's first answer
    /// (its `ready` of the request's kind, for the caller to take apart).
    pub async fn open(&self, request: &Request) -> Result<(Connection, Reply)> {
        self.open_within(request, HANDSHAKE_TIMEOUT).await
    }

    /// [`Client::open`], waiting up to `timeout` for the first answer (serve digests a partial
    /// copy before a `--resume` upload's ready).
    pub async fn open_within(
        &self,
        request: &Request,
        timeout: Duration,
    ) -> Result<(Connection, Reply)> {
        let mut control = self.handshake().await?;
        control.write(request).await?;
        let ready = self.reply(&mut control, timeout).await?;
        Ok((control, ready))
    }

    /// `--resume` of a download: the digest (hex) of the first `len` bytes of the file the
    /// server sends, which may take [`PREFIX_TIMEOUT`].
    pub async fn prefix_digest(&self, control: &mut Connection, len: u64) -> Result<String> {
        control.write(&Request::PrefixDigest { len }).await?;
        match self.reply(control, PREFIX_TIMEOUT).await? {
            Reply::PrefixDigest { digest } => Ok(digest),
            other => Err(self.unexpected(other)),
        }
    }

    /// `--verify` of an upload, after its last byte: the digest of what was read (`hex`), which
    /// serve holds what arrived to before its rename.
    pub async fn source_digest(&self, control: &mut Connection, hex: String) -> Result<()> {
        control.write(&Request::SourceDigest { digest: hex }).await
    }

    /// Reads the next reply, for at most `timeout`; Ctrl-C ends the wait at once; a server
    /// error becomes ours, with the server named.
    /// Errors: the server's refusal, a closed connection, or silence, each as a sentence.
    pub async fn reply(&self, control: &mut Connection, timeout: Duration) -> Result<Reply> {
        let read = tokio::select! {
            read = control.read::<Reply>(timeout) => read,
            _ = crate::interrupt::wait() => return Err(Interrupted.into()),
        };
        self.answer(read, timeout)
    }

    /// A reply read as [`Client::reply`] reads it, or the sentence saying why none came.
    fn answer(&self, read: Result<Reply, FrameError>, timeout: Duration) -> Result<Reply> {
        let name = self.name();
        match read {
            Ok(Reply::Error { message }) => bail!("{name}: {message}"),
            Ok(reply) => Ok(reply),
            Err(FrameError::Closed) => bail!(
                "{name} closed the connection: the server stopped or refused us (see its log)"
            ),
            // Our own deadline: nothing came at all.
            Err(FrameError::Io(err))
                if err.kind() == std::io::ErrorKind::TimedOut && err.raw_os_error().is_none() =>
            {
                bail!(
                    "no data for {} s from {name}: the path stopped carrying data, or the server stopped answering",
                    timeout.as_secs()
                )
            }
            // The kernel's: keepalive probes went unanswered.
            Err(FrameError::Io(err)) if err.kind() == std::io::ErrorKind::TimedOut => bail!(
                "no answer from {name}: the path stopped carrying data (the connection's keepalive probes went unanswered)"
            ),
            Err(err) => bail!("{name}: {err}"),
        }
    }

    /// A reply that has no place at this step of the flow.
    pub fn unexpected(&self, reply: Reply) -> anyhow::Error {
        anyhow!("{}: unexpected answer {reply:?}", self.name())
    }

    /// The server's figures of a copy, which may take [`RESULT_TIMEOUT`] (it fsyncs first).
    pub async fn copy_done(&self, control: &mut Connection) -> Result<CopyDone> {
        match self.reply(control, RESULT_TIMEOUT).await? {
            Reply::CopyDone(done) => Ok(done),
            other => Err(self.unexpected(other)),
        }
    }

    /// The server's figures of a memory-to-memory test or round trips, within `timeout`.
    pub async fn net_done(&self, control: &mut Connection, timeout: Duration) -> Result<NetDone> {
        match self.reply(control, timeout).await? {
            Reply::NetDone(done) => Ok(done),
            other => Err(self.unexpected(other)),
        }
    }

    /// The server's figures of a UDP test.
    pub async fn udp_done(&self, control: &mut Connection) -> Result<UdpDone> {
        match self.reply(control, RESULT_TIMEOUT).await? {
            Reply::UdpDone(done) => Ok(done),
            other => Err(self.unexpected(other)),
        }
    }

    /// After a data stream broke, the server usually said why on the control connection.
    pub async fn explain(&self, control: &mut Connection, err: anyhow::Error) -> anyhow::Error {
        if err.chain().any(|cause| cause.is::<Interrupted>()) {
            return err;
        }
        match control.read::<Reply>(EXPLANATION_TIMEOUT).await {
            Ok(Reply::Error { message }) => anyhow!("{}: {message}", self.name()),
            Err(FrameError::Closed) => err.context(format!(
                "{} went away in the middle of the transfer (server stopped or killed?)",
                self.name()
            )),
            _ => err,
        }
    }

    /// `outcome` as it is, or its error with the server's word on it (see [`Client::explain`]).
    pub async fn explained<T>(&self, control: &mut Connection, outcome: Result<T>) -> Result<T> {
        match outcome {
            Ok(value) => Ok(value),
            Err(err) => Err(self.explain(control, err).await),
        }
    }

    /// Asks the server to measure its own disk, so a verdict can know the far side's write rate.
    pub fn remote_baseline(&self, size: u64, pattern: disk::Pattern) -> Result<RemoteBaseline> {
        let request = Request::Disk(DiskRequest {
            size,
            block: pattern.block as u32,
            iodepth: pattern.depth as u32,
        });
        match self.ask(&request)? {
            Reply::DiskDone(done) => Ok(RemoteBaseline {
                measurements: done.measurements,
                warnings: done.warnings,
                device: done.device,
            }),
            other => Err(self.unexpected(other)),
        }
    }

    /// Asks the server to remove a file of its root that this client made (`run`'s copy);
    /// true when there was one.
    pub fn remove_remote(&self, path: &str) -> Result<bool> {
        self.remove(path, false)
    }

    /// Asks the server to remove a directory tree of its root that this client made (`run`'s
    /// tree of small files); true when there was one.
    pub fn remove_remote_tree(&self, path: &str) -> Result<bool> {
        self.remove(path, true)
    }

    fn remove(&self, path: &str, tree: bool) -> Result<bool> {
        let request = Request::Remove(RemoveRequest {
            path: path.to_string(),
            tree,
        });
        match self.ask(&request)? {
            Reply::Removed { existed } => Ok(existed),
            other => Err(self.unexpected(other)),
        }
    }

    /// Asks the server to measure toward another serve ([`Request::MeasureTo`]), waiting
    /// [`super::PeerTest::bound`] plus a handshake for its figures. Once asked, Ctrl-C does not
    /// end the wait: the test runs to its end there anyway, and its figures are what a
    /// coordinator stops for (a second Ctrl-C ends the process).
    /// Errors: this server's refusal (token, busy), or why the test failed there (the peer
    /// unreachable, refusing its token), with both servers named.
    pub fn measure_to(&self, request: MeasureToRequest) -> Result<MeasuredTo> {
        let wait = request.test.bound().saturating_add(HANDSHAKE_TIMEOUT);
        let reply = self.block_on(async {
            let mut control = self.handshake().await?;
            control.write(&Request::MeasureTo(request)).await?;
            let read = control.read::<Reply>(wait).await;
            self.answer(read, wait)
        })?;
        match reply {
            Reply::MeasuredTo(measured) => Ok(measured),
            other => Err(self.unexpected(other)),
        }
    }

    /// One request answered by one reply, which may take [`RESULT_TIMEOUT`].
    fn ask(&self, request: &Request) -> Result<Reply> {
        self.ask_within(request, RESULT_TIMEOUT)
    }

    /// One request answered by one reply, which may take `timeout`.
    fn ask_within(&self, request: &Request, timeout: Duration) -> Result<Reply> {
        self.block_on(async {
            let mut control = self.handshake().await?;
            control.write(request).await?;
            self.reply(&mut control, timeout).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local_client() -> Client {
        let server = Server {
            name: "127.0.0.1:9".into(),
            host: "127.0.0.1".into(),
            authority: "127.0.0.1:9".into(),
        };
        Client::new(server, None).unwrap()
    }

    #[test]
    fn clones_share_one_runtime_that_lives_until_the_last_is_dropped() {
        let first = local_client();
        let second = first.clone();
        assert!(Arc::ptr_eq(&first.runtime, &second.runtime));
        drop(first);
        assert_eq!(second.block_on(async { 7 }), 7);
    }

    #[test]
    fn an_unexpected_reply_names_the_server() {
        let client = local_client();
        let err = client.unexpected(Reply::Started);
        assert_eq!(err.to_string(), "127.0.0.1:9: unexpected answer Started");
    }
}
