//! One remote command on an exec channel: its standard output as an `AsyncRead`, its standard
//! input as an `AsyncWrite`, and what it said on standard error and how it exited, kept aside
//! for the error message.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use bytes::Bytes;
use russh::client::{Handle, Msg};
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use super::command::{self, RemoteCommand};
use super::login::Client;

/// Most of a command's standard error kept for a message.
const MAX_STDERR: usize = 4096;
/// Most standard output a short command (size, checks) may print.
const MAX_OUTPUT: usize = 64 * 1024;
/// Longest a short command may take.
const SHORT_TIMEOUT: Duration = Duration::from_secs(120);

/// How long an early-ended command's channel is read on after its exit status, for the rest of
/// its standard error (sshd may send the status first).
const AFTER_EXIT: Duration = Duration::from_secs(2);
/// Exit status a shell gives a command it cannot find.
const NOT_FOUND: u32 = 127;

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Status(u32),
    Signal(String),
    /// The channel closed without saying.
    Unknown,
}

/// The reading side of a running remote command.
pub struct Output {
    rx: ChannelReadHalf,
    pending: Bytes,
    stderr: Vec<u8>,
    exit: Option<Exit>,
    /// Standard output ended (EOF or close).
    eof: bool,
    /// The channel closed: nothing more will come.
    closed: bool,
}

/// A remote command that was started.
pub struct Exec {
    pub command: RemoteCommand,
    pub output: Output,
    pub input: ChannelWriteHalf<Msg>,
}

impl Exec {
    /// Opens a session channel and runs `command` in it.
    pub async fn start(handle: &Handle<Client>, command: RemoteCommand) -> Result<Exec> {
        let channel = handle
            .channel_open_session()
            .await
            .map_err(|err| anyhow!("opening an SSH channel: {err}"))?;
        channel
            .exec(true, command.render())
            .await
            .map_err(|err| anyhow!("starting `{command}`: {err}"))?;
        let (rx, input) = channel.split();
        Ok(Exec {
            command,
            output: Output {
                rx,
                pending: Bytes::new(),
                stderr: Vec::new(),
                exit: None,
                eof: false,
                closed: false,
            },
            input,
        })
    }

    /// Runs a short command to its end with no input: its standard output on success, else an
    /// error with what it said.
    pub async fn run(handle: &Handle<Client>, command: RemoteCommand) -> Result<String> {
        Exec::run_within(handle, command, SHORT_TIMEOUT).await
    }

    /// [`Exec::run`] for a command that may take up to `limit`.
    pub async fn run_within(
        handle: &Handle<Client>,
        command: RemoteCommand,
        limit: Duration,
    ) -> Result<String> {
        let (stdout, exit, output, command) = Exec::complete(handle, command, limit).await?;
        output.check(&command, exit)?;
        Ok(stdout)
    }

    /// Whether a test command (`test ! -e …`) held: exit 0 yes, 1 no; anything else is an error.
    pub async fn holds(handle: &Handle<Client>, command: RemoteCommand) -> Result<bool> {
        let (_, exit, output, command) = Exec::complete(handle, command, SHORT_TIMEOUT).await?;
        match exit {
            Exit::Status(0) => Ok(true),
            Exit::Status(1) => Ok(false),
            exit => output.check(&command, exit).map(|()| false),
        }
    }

    /// Runs a command with no input to its end: its standard output and how it ended.
    async fn complete(
        handle: &Handle<Client>,
        command: RemoteCommand,
        limit: Duration,
    ) -> Result<(String, Exit, Output, RemoteCommand)> {
        let mut exec = Exec::start(handle, command).await?;
        exec.input
            .eof()
            .await
            .map_err(|err| anyhow!("closing the input of `{}`: {err}", exec.command))?;
        let work = async {
            let mut stdout = Vec::new();
            (&mut exec.output)
                .take(MAX_OUTPUT as u64)
                .read_to_end(&mut stdout)
                .await?;
            let exit = exec.output.finish().await;
            Ok::<_, io::Error>((stdout, exit))
        };
        let (stdout, exit) = tokio::time::timeout(limit, work).await.map_err(|_| {
            anyhow!(
                "`{}` did not end within {} s",
                exec.command,
                limit.as_secs()
            )
        })??;
        let stdout = String::from_utf8_lossy(&stdout).into_owned();
        Ok((stdout, exit, exec.output, exec.command))
    }

    /// After the data: closes the input, waits for the command's end, fails with its message.
    pub async fn finish(mut self) -> Result<()> {
        let _ = self.input.eof().await;
        let exit = self.output.finish().await;
        self.output.check(&self.command, exit)
    }
}

/// An [`Output`] watched for an early end on its connection's own thread ([`Output::watch_on`]).
pub struct EarlyWatch {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<(Output, Option<Exit>)>,
    ended: Option<Output>,
}

impl EarlyWatch {
    /// Resolves when the command ended while its input was still being sent, with how.
    /// Cancel-safe: polled in a `select!` beside the sending.
    pub async fn ended(&mut self) -> Result<Exit> {
        let (output, exit) = (&mut self.task)
            .await
            .map_err(|err| anyhow!("watching the far command failed: {err}"))?;
        self.ended = Some(output);
        Ok(exit.unwrap_or(Exit::Unknown))
    }

    /// Stops watching and gives the output back, with what it kept.
    pub async fn give_back(mut self) -> Result<Output> {
        if let Some(output) = self.ended.take() {
            return Ok(output);
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let (output, _) = self
            .task
            .await
            .map_err(|err| anyhow!("watching the far command failed: {err}"))?;
        Ok(output)
    }
}

impl Output {
    /// Reads what is left (dropped: the caller took what it wanted) until the channel closes.
    pub async fn finish(&mut self) -> Exit {
        let _ = tokio::time::timeout(SHORT_TIMEOUT, async {
            while !self.closed {
                self.pending = Bytes::new();
                self.next_message().await;
            }
        })
        .await;
        self.exit.clone().unwrap_or(Exit::Unknown)
    }

    /// [`Output::ended_early`] on `runtime`, the connection's own thread, where its session
    /// task hands over the channel's messages: the far side's window adjusts (one every few
    /// packets) then wake no other thread. Measured: 24,000 wakeups a GB fewer, and about 15%
    /// less CPU on this side, for a 1 GiB upload to sshd.
    pub fn watch_on(mut self, runtime: &tokio::runtime::Handle) -> EarlyWatch {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = runtime.spawn(async move {
            let exit = tokio::select! {
                exit = self.ended_early() => Some(exit),
                _ = stopped => None,
            };
            (self, exit)
        });
        EarlyWatch {
            stop: Some(stop),
            task,
            ended: None,
        }
    }

    /// Waits until the command ends on its own while its input is still being sent: a command
    /// that stops early (disk full, no such directory) must stop the sender, not leave it
    /// waiting for window space forever. Standard output is kept for the reader; standard error
    /// is read to the channel's close (at most [`AFTER_EXIT`] past the exit status, which sshd
    /// may send before the last of it), so the error can quote all of it.
    pub async fn ended_early(&mut self) -> Exit {
        while !self.closed {
            if self.pending.len() > MAX_OUTPUT {
                break;
            }
            let message = match self.exit {
                None => self.rx.wait().await,
                Some(_) => match tokio::time::timeout(AFTER_EXIT, self.rx.wait()).await {
                    Ok(message) => message,
                    Err(_) => break,
                },
            };
            let Some(message) = message else {
                self.closed = true;
                break;
            };
            if let Some(data) = self.take_message(message) {
                let mut joined = Vec::with_capacity(self.pending.len() + data.len());
                joined.extend_from_slice(&self.pending);
                joined.extend_from_slice(&data);
                self.pending = joined.into();
            }
        }
        self.exit.clone().unwrap_or(Exit::Unknown)
    }

    /// What the command wrote on standard error, trimmed.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }

    /// An exit status other than 0 becomes the error the user sees.
    pub fn check(&self, command: &RemoteCommand, exit: Exit) -> Result<()> {
        let said = self.stderr();
        let said = if said.is_empty() {
            String::new()
        } else {
            format!(": {}", said.replace('\n', "; "))
        };
        match exit {
            Exit::Status(0) => Ok(()),
            Exit::Status(command::EXISTS)
                if matches!(command, RemoteCommand::WriteThenFinish { fresh: true, .. }) =>
            {
                Err(command::Exists.into())
            }
            Exit::Status(NOT_FOUND) => bail!(
                "the remote cannot run `{}`{said}: the SSH path needs {} in the PATH of the remote login shell",
                command.program(),
                command.program()
            ),
            Exit::Status(status) => bail!("`{command}` failed on the remote (exit {status}){said}"),
            Exit::Signal(signal) => {
                bail!("`{command}` was killed on the remote (signal {signal}){said}")
            }
            Exit::Unknown => bail!(
                "the remote `{command}` ended without an exit status (connection lost?){said}"
            ),
        }
    }

    async fn next_message(&mut self) -> Option<Bytes> {
        match self.rx.wait().await {
            Some(message) => self.take_message(message),
            None => {
                self.closed = true;
                self.eof = true;
                None
            }
        }
    }

    /// Keeps stderr and the exit aside; returns standard output.
    fn take_message(&mut self, message: ChannelMsg) -> Option<Bytes> {
        match message {
            ChannelMsg::Data { data } => return Some(data),
            ChannelMsg::ExtendedData { data, .. } => {
                let room = MAX_STDERR.saturating_sub(self.stderr.len());
                self.stderr.extend_from_slice(&data[..data.len().min(room)]);
            }
            ChannelMsg::ExitStatus { exit_status } => self.exit = Some(Exit::Status(exit_status)),
            ChannelMsg::ExitSignal { signal_name, .. } => {
                self.exit = Some(Exit::Signal(format!("{signal_name:?}")))
            }
            ChannelMsg::Eof => self.eof = true,
            ChannelMsg::Close => {
                self.eof = true;
                self.closed = true;
            }
            _ => {}
        }
        None
    }
}

impl AsyncRead for Output {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.pending.is_empty() {
                let n = buf.remaining().min(this.pending.len());
                buf.put_slice(&this.pending.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            // The receiver's future is cancel-safe: made anew on each poll, it loses nothing.
            let message = {
                let wait = pin!(this.rx.wait());
                ready!(wait.poll(cx))
            };
            match message {
                Some(message) => {
                    if let Some(data) = this.take_message(message) {
                        this.pending = data;
                    }
                }
                None => {
                    this.closed = true;
                    this.eof = true;
                }
            }
        }
    }
}

/// The input of a remote command as an `AsyncWrite` (closing it sends EOF).
pub fn input_writer(input: &ChannelWriteHalf<Msg>) -> impl AsyncWrite + Unpin + Send + 'static {
    Box::pin(input.make_writer())
}
