//! The SSH path: SCP-like copies over SSH, to a stock OpenSSH server (nothing of ours on the far
//! side) or to `serve`'s embedded SSH server.
//!
//! One stream is the SCP protocol (`scp -t` / `scp -f`). With `-P N` each of N connections
//! (each its own cipher, so its own CPU core) carries one contiguous range through `dd`. Uploads
//! land under a temporary name and are truncated, fsynced and renamed by a last command.
//! Latency is round trips through `cat` on one exec channel.

pub mod command;
pub mod config;
pub mod exec;
pub mod known_hosts;
pub mod login;
pub mod scp;
pub mod tree;
pub mod verify;
pub mod worker;

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures::future::select_all;
use russh::client;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;

use self::command::RemoteCommand;
use self::exec::{Exec, Output, input_writer};
use self::login::{LoginOptions, SshConnection, Target};
use super::memory::{self, Role, Sampler, Tracked};
use super::pipeline::{self, ChunkPlan};
use super::{
    CopyPlan, CopyReport, CpuBoth, Direction, DirectionReport, Directions, LatPlan, LatReport,
    Location, NetPlan, NetReport, Peer, Rounds, StreamReport, TimeSplit, Transport, TransportKind,
};
use crate::disk;
use crate::measure::{Conditions, Counter, CpuClock, Latency, Measurement, Watcher, Workload};
use crate::warning::Warning;

/// An SSH server reached by login.
pub struct Ssh {
    target: Arc<Target>,
    runtime: tokio::runtime::Runtime,
}

impl Ssh {
    pub fn new(peer: &Peer, options: &LoginOptions) -> Result<Ssh> {
        let target = Arc::new(Target::resolve(peer, options)?);
        // Each connection has a thread of its own (worker.rs); this one only hands chunks
        // between the disk engine and them, and idle work-stealing threads would cost CPU.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the network runtime")?;
        Ok(Ssh { target, runtime })
    }

    /// `user@host:port`, as reports name the far side.
    pub fn label(&self) -> String {
        self.target.label()
    }

    /// The far disk's write speed as a stock server can give it: `dd` writing zeros with
    /// O_DIRECT and a final fsync into `dir`, at most [`BASELINE_MAX`] bytes, its own summary
    /// line parsed. The file is removed whatever happens.
    pub fn remote_baseline(&self, size: u64, dir: &str) -> Result<(Measurement, Vec<Warning>)> {
        let count = size.clamp(1 << 20, BASELINE_MAX) >> 20;
        let path = match dir {
            "" => BASELINE_FILE.to_string(),
            dir => format!("{}/{BASELINE_FILE}", dir.trim_end_matches('/')),
        };
        let command = RemoteCommand::WriteBaseline { path, count };
        let said = self.runtime.block_on(async {
            let connection = login::connect(&self.target, 0).await?;
            Exec::run_within(&connection.handle, command, BASELINE_TIMEOUT).await
        })?;
        let (bytes, secs) = parse_dd_summary(&said).ok_or_else(|| {
            anyhow!(
                "{}: cannot read dd's summary ({:?}): the far side needs GNU coreutils' dd",
                self.label(),
                said.trim()
            )
        })?;
        let conditions = Conditions {
            direct: true,
            fsync_included: true,
            block_size: Some(1 << 20),
            iodepth: Some(1),
            path: Some(TransportKind::Ssh),
            ..Conditions::default()
        };
        let measurement = Measurement::new(
            Workload::DiskWrite,
            bytes,
            Duration::from_secs_f64(secs),
            conditions,
            Vec::new(),
        );
        Ok((
            measurement,
            vec![Warning::ZeroBaseline { host: self.label() }],
        ))
    }

    /// `rm -f -- PATH` on the far side: removes a file this client made there (`run`'s copy).
    pub fn remove_remote(&self, path: &str) -> Result<()> {
        let command = RemoteCommand::Discard {
            path: path.to_string(),
        };
        self.runtime.block_on(async {
            let connection = login::connect(&self.target, 0).await?;
            Exec::run(&connection.handle, command).await
        })?;
        Ok(())
    }

    /// `count` logged-in connections, set up in parallel.
    async fn connect(&self, count: usize) -> Result<Vec<SshConnection>> {
        let mut tasks = JoinSet::new();
        for index in 0..count {
            let target = self.target.clone();
            tasks.spawn(async move { login::connect(&target, index).await.map(|c| (index, c)) });
        }
        let mut connections = Vec::with_capacity(count);
        while let Some(joined) = tasks.join_next().await {
            connections.push(joined.map_err(|err| anyhow!("a login task failed: {err}"))??);
        }
        connections.sort_by_key(|(index, _)| *index);
        Ok(connections.into_iter().map(|(_, c)| c).collect())
    }

    async fn upload(
        &self,
        plan: &CopyPlan,
        source: &Path,
        remote_path: &str,
        chunks: ChunkPlan,
        watcher: &dyn Watcher,
    ) -> Result<CopyReport> {
        let mut warnings = Vec::new();
        let (engine, size, direct) = pipeline::open_source(source, chunks.depth, &mut warnings)?;
        let engine_kind = engine.kind();
        let planned = pipeline::split_ranges(size, plan.streams, chunks.chunk);
        let connections = self.connect(planned.len()).await?;
        let first = &connections[0].handle;
        warnings.extend(super::loopback_warning(connections[0].peer_addr));
        let tool = match plan.verify {
            true => Some(verify::find_tool(&connections[0], &self.label()).await?),
            false => None,
        };
        let remote_path = self.expand_home(first, remote_path).await?;
        let path = super::address::with_file_name(&remote_path, source);
        let temp = temp_name(&path)?;
        // One stream that lands the file checks that nothing is there in its own command.
        let guarded = !plan.force && !plan.resume && tool.is_none() && planned.len() == 1;
        let exists = || {
            anyhow!(
                "{}:{path} already exists: give --force to replace it",
                self.label()
            )
        };
        if !plan.force
            && !guarded
            && !Exec::holds(first, RemoteCommand::Absent { path: path.clone() }).await?
        {
            return Err(exists());
        }
        let resumed = match plan.resume {
            true => self
                .check_far_prefix(&connections[0], source, &temp, size, chunks)
                .await
                .with_context(|| format!("{}: checking {temp} for --resume", self.label()))?,
            false => None,
        };
        let from = resumed.as_ref().map_or(0, super::Resumed::from);
        // Whole chunks from where the copy goes on, cut as a copy from 0 would cut them.
        let ranges: Vec<Range<u64>> = match from {
            0 => planned,
            from => pipeline::split_ranges(size - from, plan.streams, chunks.chunk)
                .into_iter()
                .map(|range| range.start + from..range.end + from)
                .collect(),
        };
        let sent_ranges = ranges.clone();
        let cpu = CpuClock::start();
        let start = Instant::now();
        let sent = self
            .send(
                &connections,
                (&temp, &path),
                size,
                ranges,
                guarded,
                engine,
                chunks,
                tool,
                watcher,
            )
            .await;
        let mut verification = None;
        let finished = match sent {
            Ok((sent, intervals, Some(landed), _)) => Ok(((sent, intervals), landed)),
            Ok((sent, intervals, None, digests)) => {
                let sent = (sent, intervals);
                let fsync_start = Instant::now();
                match tool {
                    None => Exec::run(
                        first,
                        RemoteCommand::Finish {
                            temp: temp.clone(),
                            size,
                            path: path.clone(),
                        },
                    )
                    .await
                    .map(|_| (sent, fsync_start.elapsed())),
                    // Checked after its fsync and before its rename: a file that does not match
                    // never takes its name, and an old one there stays.
                    Some(tool) => {
                        let checked = async {
                            Exec::run(
                                first,
                                RemoteCommand::Flush {
                                    temp: temp.clone(),
                                    size,
                                },
                            )
                            .await?;
                            let fsync = fsync_start.elapsed();
                            let (far, took) =
                                verify::far_digests(&connections, tool, &temp, &sent_ranges)
                                    .await?;
                            verification = Some(verified(tool, digests, far, size, took)?);
                            Exec::run(
                                first,
                                RemoteCommand::Rename {
                                    temp: temp.clone(),
                                    path: path.clone(),
                                },
                            )
                            .await?;
                            Ok::<_, anyhow::Error>(fsync)
                        };
                        checked.await.map(|fsync| (sent, fsync))
                    }
                }
            }
            Err(err) => Err(err),
        };
        let (sent, fsync) = match finished {
            Ok(done) => done,
            // Refused before anything was written: nothing to remove.
            Err(err) if err.is::<command::Exists>() => return Err(exists()),
            Err(err) if plan.resume => {
                return Err(err.context(format!(
                    "{}: copy to {path} failed; {temp} is kept: the same copy with --resume goes on from it",
                    self.label()
                )));
            }
            Err(err) => {
                self.discard(&connections, &temp).await;
                return Err(err.context(format!("{}: copy to {path} failed", self.label())));
            }
        };
        let elapsed = start.elapsed();
        Ok(CopyReport {
            source: source.display().to_string(),
            destination: format!("{}:{path}", self.label()),
            path: TransportKind::Ssh,
            measurement: Measurement::new(
                Workload::Copy,
                size - from,
                elapsed,
                conditions(plan, chunks, direct, engine_kind, &connections),
                sent.1,
            ),
            split: TimeSplit {
                reading_secs: Some(sent.0.reading.as_secs_f64()),
                sending_secs: Some(sent.0.sending.as_secs_f64()),
                writing_secs: None,
                fsync_secs: fsync.as_secs_f64(),
            },
            verify: verification,
            resumed,
            cpu: CpuBoth {
                local: cpu.finish(),
                remote: None,
            },
            warnings,
        })
    }

    /// Sends the ranges (`fresh`: the one command refuses when the file is there, as
    /// [`command::Exists`]),
    /// `dd` on the far side per connection, the landing in the same exec
    /// when one stream carries the whole file unverified.
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        connections: &[SshConnection],
        (temp, path): (&str, &str),
        size: u64,
        ranges: Vec<Range<u64>>,
        fresh: bool,
        engine: disk::Engine,
        chunks: ChunkPlan,
        tool: Option<verify::Tool>,
        watcher: &dyn Watcher,
    ) -> Result<(
        pipeline::CopySent,
        Vec<crate::measure::Interval>,
        Option<Duration>,
        Vec<String>,
    )> {
        // One stream from the file's start lands the file in the same exec; a resumed copy and
        // several streams write ranges and land it afterwards.
        let whole = ranges.len() == 1 && ranges[0].start == 0;
        let moving: u64 = ranges.iter().map(|range| range.end - range.start).sum();
        let mut execs = Vec::with_capacity(ranges.len());
        for (connection, range) in connections.iter().zip(&ranges) {
            let command = if whole && tool.is_none() {
                RemoteCommand::WriteThenFinish {
                    temp: temp.to_string(),
                    size,
                    path: path.to_string(),
                    fresh,
                }
            } else {
                // Several ranges, a resumed or a verified copy: landed by separate commands
                // afterwards (a verified one once its digest matched).
                RemoteCommand::WriteRange {
                    path: temp.to_string(),
                    offset: range.start,
                }
            };
            execs.push(Exec::start(&connection.handle, command).await?);
        }
        let streams: Vec<_> = execs
            .iter()
            .map(|exec| {
                verify::Hashing::new(input_writer(&exec.input), tool.map(verify::Tool::hasher))
            })
            .zip(ranges.iter().cloned())
            .collect();
        let counter = Counter::new();
        let runtimes: Vec<_> = connections
            .iter()
            .map(|c| c.worker.runtime().clone())
            .collect();
        // Each far command is watched on its connection's thread while the data goes.
        let mut watched: Vec<_> = execs
            .drain(..)
            .zip(&runtimes)
            .map(|(exec, runtime)| {
                let Exec {
                    command,
                    output,
                    input,
                } = exec;
                (command, input, output.watch_on(runtime))
            })
            .collect();
        let data = async {
            let early = select_all(
                watched
                    .iter_mut()
                    .map(|(_, _, watch)| Box::pin(watch.ended())),
            );
            // Ok: the sending's outcome; Err: which far command ended first, and how.
            Ok(tokio::select! {
                sent = pipeline::send_ranges(engine, streams, &runtimes, chunks, &counter) => Ok(sent),
                (exit, index, _) = early => Err((exit, index)),
            })
        };
        let (outcome, intervals) = pipeline::watched(watcher, moving, &counter, data).await;
        for (command, input, watch) in watched {
            execs.push(Exec {
                command,
                output: watch.give_back().await?,
                input,
            });
        }
        let (sent, mut streams) = match outcome? {
            Ok(sent) => sent?,
            Err((exit, index)) => {
                let exec = &execs[index];
                return Err(exec
                    .output
                    .check(&exec.command, exit?)
                    .err()
                    .unwrap_or_else(|| {
                        anyhow!(
                            "`{}` ended before its part of the file was sent",
                            exec.command
                        )
                    }));
            }
        };
        let digests: Vec<String> = streams.iter_mut().filter_map(|s| s.take()).collect();
        drop(streams);
        // With one stream the command lands the file itself once dd has exited.
        let landing = Instant::now();
        for exec in execs {
            exec.finish().await?;
        }
        Ok((
            sent,
            intervals,
            (whole && tool.is_none()).then(|| landing.elapsed()),
            digests,
        ))
    }

    /// A remote path as the remote shell reads it (scp -O leaves `~` to the shell): `~` and
    /// `~/x` relative to the login's home, where every command starts; `~user/x` from the home
    /// the shell gives `~user` (a directory ends in `/`). Errors: a name the shell cannot take,
    /// a user the remote does not have, a server without a shell.
    async fn expand_home(
        &self,
        handle: &client::Handle<login::Client>,
        path: &str,
    ) -> Result<String> {
        if let Some(relative) = command::home_relative(path) {
            return Ok(relative.to_string());
        }
        let Some(rest) = path.strip_prefix('~') else {
            return Ok(path.to_string());
        };
        let (user, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let Some(user) = command::login_name(user) else {
            bail!(
                "{}: '{path}': '~{user}' is not a user name the remote shell can expand; write the path without it",
                self.label()
            );
        };
        let said = Exec::run(
            handle,
            RemoteCommand::HomeOf {
                user: user.to_string(),
            },
        )
        .await
        .with_context(|| format!("{}: expanding ~{user}", self.label()))?;
        let home = said
            .lines()
            .last()
            .unwrap_or_default()
            .trim_end_matches('/');
        if !home.starts_with('/') {
            bail!(
                "{}: no user '{user}' on the remote (its shell left ~{user} as {said:?})",
                self.label()
            );
        }
        Ok(format!("{home}/{tail}"))
    }

    /// `--resume`: holds the first bytes of the far temporary file (less the last `--iodepth`
    /// chunks) to the source's, `head -c | sha256sum` there and SHA-256 here. None when there
    /// is no such file. Errors: the far side cannot be asked, or the source cannot be read.
    async fn check_far_prefix(
        &self,
        connection: &SshConnection,
        source: &Path,
        temp: &str,
        size: u64,
        chunks: ChunkPlan,
    ) -> Result<Option<super::Resumed>> {
        let started = Instant::now();
        let said = Exec::run(
            &connection.handle,
            RemoteCommand::Size {
                path: temp.to_string(),
            },
        )
        .await;
        // No temporary file (stat fails): nothing to take up.
        let Some((found, _)) = said.ok().as_deref().and_then(parse_stat) else {
            return Ok(None);
        };
        self.prefixes_match(connection, temp, source, found, size, chunks, started)
            .await
            .map(Some)
    }

    /// `--resume` of a download: holds the first bytes of the local temporary file (less the last
    /// `--iodepth` chunks) to the far source's, SHA-256 here and `head -c | sha256sum` there; a
    /// prefix that differs is cut away. Errors: the far side cannot be asked, or the temporary
    /// file read.
    async fn check_local_prefix(
        &self,
        connection: &SshConnection,
        remote_path: &str,
        landing: &crate::file::Landing,
        found: u64,
        size: u64,
        chunks: ChunkPlan,
    ) -> Result<super::Resumed> {
        let resumed = self
            .prefixes_match(
                connection,
                remote_path,
                &landing.temp_path,
                found,
                size,
                chunks,
                Instant::now(),
            )
            .await?;
        if !resumed.matched {
            landing
                .file
                .set_len(0)
                .context("cutting the partial copy that did not match")?;
        }
        Ok(resumed)
    }

    /// The first bytes of a `found`-byte partial copy worth checking ([`super::resumable_prefix`])
    /// of `far` (read by the far side's `head -c | sha256sum`) and of the local `here` (SHA-256),
    /// held to each other. Errors: the far side cannot be asked, or `here` read.
    #[allow(clippy::too_many_arguments)]
    async fn prefixes_match(
        &self,
        connection: &SshConnection,
        far: &str,
        here: &Path,
        found: u64,
        size: u64,
        chunks: ChunkPlan,
        started: Instant,
    ) -> Result<super::Resumed> {
        let checked = super::resumable_prefix(found, size, chunks.chunk, chunks.depth);
        let tool = verify::find_tool(connection, &self.label()).await?;
        let matched = checked > 0 && {
            let said = Exec::run(
                &connection.handle,
                RemoteCommand::PrefixDigest {
                    tool: tool.program().to_string(),
                    path: far.to_string(),
                    len: checked,
                },
            )
            .await?;
            let theirs = said.split_whitespace().next().unwrap_or_default();
            theirs.eq_ignore_ascii_case(&verify::prefix_digest(here, checked, tool)?)
        };
        Ok(super::Resumed {
            found,
            checked,
            matched,
            algorithm: tool.algorithm().to_string(),
            secs: started.elapsed().as_secs_f64(),
        })
    }

    /// Best effort after a failed upload: no temporary file left behind.
    async fn discard(&self, connections: &[SshConnection], temp: &str) {
        let command = RemoteCommand::Discard {
            path: temp.to_string(),
        };
        for connection in connections {
            if Exec::run(&connection.handle, command.clone()).await.is_ok() {
                return;
            }
        }
    }

    async fn download(
        &self,
        plan: &CopyPlan,
        remote_path: &str,
        destination: &Path,
        chunks: ChunkPlan,
        watcher: &dyn Watcher,
    ) -> Result<CopyReport> {
        let mut warnings = Vec::new();
        let destination = super::address::local_destination(destination, remote_path)?;
        let connections = self.connect(plan.streams.max(1)).await?;
        let first = &connections[0].handle;
        warnings.extend(super::loopback_warning(connections[0].peer_addr));
        let remote_path = &self.expand_home(first, remote_path).await?;
        if remote_path.is_empty() {
            bail!(
                "{}: ~ is the login's home directory: copy takes one file; name it (~/FILE)",
                self.label()
            );
        }
        if remote_path.ends_with('/') {
            bail!(
                "{}:{remote_path} is a directory: copy takes one file",
                self.label()
            );
        }
        // A resumed copy reads from an offset, which SCP cannot: it asks for the size and uses dd.
        let scp = plan.streams == 1 && !plan.resume;
        // One stream learns the size from the SCP header; several ask for it first.
        let mut scp_exec = None;
        let size = if scp {
            let mut exec = Exec::start(
                first,
                RemoteCommand::ScpSource {
                    path: remote_path.to_string(),
                },
            )
            .await?;
            let mut input = input_writer(&exec.input);
            input.write_all(&[0]).await?;
            let header = read_scp_header(&mut exec).await?;
            scp_exec = Some(exec);
            header.size
        } else {
            let text = Exec::run(
                first,
                RemoteCommand::Size {
                    path: remote_path.to_string(),
                },
            )
            .await
            .with_context(|| format!("{}: cannot read {remote_path}", self.label()))?;
            let (size, kind) = parse_stat(&text).ok_or_else(|| {
                anyhow!(
                    "{}: `stat` answered {text:?} for the size of {remote_path}: {}",
                    self.label(),
                    scp::SHELL_NOISE
                )
            })?;
            match kind {
                None | Some("regular file" | "regular empty file") => {}
                Some("directory") => bail!(
                    "{}:{remote_path} is a directory: copy takes one file",
                    self.label()
                ),
                Some(kind) => bail!(
                    "{}:{remote_path} is a {kind}, not a regular file: copy takes one regular file",
                    self.label()
                ),
            }
            size
        };
        let (landing, engine, found) =
            pipeline::open_landing(&destination, size, plan, chunks, &mut warnings)?;
        let resumed = match found {
            0 => None,
            found => {
                let checked = self
                    .check_local_prefix(&connections[0], remote_path, &landing, found, size, chunks)
                    .await;
                match checked {
                    Ok(resumed) => Some(resumed),
                    Err(err) => {
                        landing.keep_partial();
                        return Err(err.context(format!(
                            "{}: checking the partial copy for --resume",
                            self.label()
                        )));
                    }
                }
            }
        };
        let from = resumed.as_ref().map_or(0, super::Resumed::from);
        let engine_kind = engine.kind();
        let landing_direct = landing.direct;
        let ranges: Vec<Range<u64>> = if scp {
            std::iter::once(0..size).collect()
        } else {
            pipeline::split_ranges(size - from, plan.streams, chunks.chunk)
                .into_iter()
                .map(|range| range.start + from..range.end + from)
                .collect()
        };
        let mut execs = Vec::with_capacity(ranges.len());
        match scp_exec {
            Some(exec) => execs.push(exec),
            None => {
                for (connection, range) in connections.iter().zip(&ranges) {
                    let command = RemoteCommand::ReadRange {
                        path: remote_path.to_string(),
                        offset: range.start,
                        len: range.end - range.start,
                    };
                    execs.push(Exec::start(&connection.handle, command).await?);
                }
            }
        }
        let cpu = CpuClock::start();
        let start = Instant::now();
        if scp {
            input_writer(&execs[0].input).write_all(&[0]).await?;
        }
        let commands: Vec<_> = execs.iter().map(|e| e.command.clone()).collect();
        let (outputs, inputs_back): (Vec<_>, Vec<_>) =
            execs.into_iter().map(|e| (e.output, e.input)).unzip();
        let inputs: Vec<_> = outputs.into_iter().zip(ranges.iter().cloned()).collect();
        let counter = Counter::new();
        let runtimes: Vec<_> = connections
            .iter()
            .map(|c| c.worker.runtime().clone())
            .collect();
        let (received, intervals) = pipeline::watched(
            watcher,
            size - from,
            &counter,
            pipeline::receive_ranges(engine, size, inputs, &runtimes, chunks, &counter),
        )
        .await;
        let (received, mut outputs) = match received {
            Ok(received) => received,
            Err(err) if plan.resume => {
                let temp = landing.temp_path.display().to_string();
                landing.keep_partial();
                return Err(err.context(format!(
                    "{}: copy of {remote_path} failed; {temp} is kept: the same copy with --resume goes on from it",
                    self.label()
                )));
            }
            Err(err) => {
                return Err(err.context(format!("{}: copy of {remote_path} failed", self.label())));
            }
        };
        if scp {
            let output = &mut outputs[0];
            match scp::read_status(output).await? {
                scp::Status::Ok => {}
                scp::Status::Warning(message) | scp::Status::Fatal(message) => {
                    bail!("{}: {message}", self.label())
                }
            }
            // The source waits for this last acknowledgement before it exits.
            let mut input = input_writer(&inputs_back[0]);
            input.write_all(&[0]).await?;
            input.shutdown().await?;
        }
        let fsync = landing.flush(size)?;
        let elapsed = start.elapsed();
        for (output, command) in outputs.iter_mut().zip(&commands) {
            let exit = output.finish().await;
            output.check(command, exit)?;
        }
        landing.commit()?;
        Ok(CopyReport {
            source: format!("{}:{remote_path}", self.label()),
            destination: destination.display().to_string(),
            path: TransportKind::Ssh,
            measurement: Measurement::new(
                Workload::Copy,
                size - from,
                elapsed,
                conditions(plan, chunks, landing_direct, engine_kind, &connections),
                intervals,
            ),
            split: TimeSplit {
                reading_secs: None,
                sending_secs: None,
                writing_secs: Some(received.writing.as_secs_f64()),
                fsync_secs: fsync.as_secs_f64(),
            },
            verify: None,
            resumed,
            cpu: CpuBoth {
                local: cpu.finish(),
                remote: None,
            },
            warnings,
        })
    }

    /// Memory to memory: random payload into `cat > /dev/null` on each connection, so the figure
    /// is the cipher and the network, no disk.
    async fn net(&self, plan: &NetPlan, watcher: &dyn Watcher) -> Result<NetReport> {
        if plan.directions != Directions::Upload {
            bail!(
                "--via ssh measures uploads only (a stock server has nothing of ours to send from): \
                 for the other direction run xferbench on the other machine"
            );
        }
        if plan.window.is_some() {
            bail!(
                "-w sets TCP socket buffers of `serve`; the SSH path uses the SSH channel window"
            );
        }
        let connections = self.connect(plan.streams).await?;
        let warnings: Vec<Warning> = super::loopback_warning(connections[0].peer_addr)
            .into_iter()
            .collect();
        let mut execs = Vec::with_capacity(connections.len());
        for connection in &connections {
            execs.push(Exec::start(&connection.handle, RemoteCommand::Sink).await?);
        }
        let payload = Arc::new(memory::payload(plan.len));
        let counters: Vec<Counter> = execs.iter().map(|_| Counter::new()).collect();
        let tracked = counters
            .iter()
            .map(|counter| Tracked {
                counter: counter.clone(),
                role: Role::Send,
                fd: None,
            })
            .collect();
        let omit = Duration::from_secs_f64(plan.omit_secs);
        let start = tokio::time::Instant::now();
        let end = start + omit + Duration::from_secs_f64(plan.secs);
        let mut sampler = Sampler::start(
            tracked,
            start,
            omit,
            Duration::from_secs_f64(plan.interval_secs),
        );
        let cpu = CpuClock::start();
        let mut writers = JoinSet::new();
        for ((exec, counter), connection) in execs.iter().zip(&counters).zip(&connections) {
            let (mut input, counter, payload) =
                (input_writer(&exec.input), counter.clone(), payload.clone());
            let writer = async move {
                while tokio::time::Instant::now() < end {
                    input.write_all(&payload).await?;
                    counter.add(payload.len() as u64);
                }
                input.flush().await?;
                Ok::<_, std::io::Error>((input, tokio::time::Instant::now()))
            };
            writers.spawn_on(writer, connection.worker.runtime());
        }
        let mut last_write = start;
        let mut inputs = Vec::new();
        // A channel that takes nothing (a frozen server, a path gone dark) must not hold us.
        let mut watch = tokio::time::interval(Duration::from_secs(1));
        let (mut moved, mut moved_at) = (0u64, Instant::now());
        let label = self.label();
        let sent = async {
            loop {
                let cut = sampler.next_cut().min(end);
                tokio::select! {
                    _ = tokio::time::sleep_until(cut), if cut < end => {
                        watcher.tick(&sampler.cut(cut));
                    }
                    _ = watch.tick() => {
                        let now: u64 = counters.iter().map(Counter::get).sum();
                        if now != moved {
                            (moved, moved_at) = (now, Instant::now());
                        } else if moved_at.elapsed() >= memory::STALL_TIMEOUT {
                            bail!(
                                "no data for {} s to {label}: the path stopped carrying data (the SSH channels took nothing)",
                                memory::STALL_TIMEOUT.as_secs()
                            );
                        }
                    }
                    joined = writers.join_next() => match joined {
                        Some(joined) => {
                            let (input, at) = joined.map_err(|err| anyhow!("a sending stream failed: {err}"))?
                                .map_err(|err| anyhow!("sending to `cat > /dev/null`: {err}"))?;
                            last_write = last_write.max(at);
                            inputs.push(input);
                        }
                        None => break,
                    },
                    _ = crate::interrupt::wait() => return Err(crate::interrupt::Interrupted.into()),
                }
            }
            Ok::<_, anyhow::Error>(())
        };
        let early = async {
            let mut outputs: Vec<_> = execs.iter_mut().map(|e| &mut e.output).collect();
            let (exit, index, _) =
                select_all(outputs.iter_mut().map(|o| Box::pin(o.ended_early()))).await;
            (exit, index)
        };
        tokio::select! {
            sent = sent => sent?,
            (exit, index) = early => {
                let exec = &execs[index];
                exec.output.check(&exec.command, exit)?;
                bail!("`{}` on the remote stopped reading", exec.command);
            }
        }
        if let Some(tick) = sampler.finish(last_write) {
            watcher.tick(&tick);
        }
        let sender = sampler.flow(Role::Send, last_write);
        drop(inputs);
        for exec in execs {
            exec.finish().await?;
        }
        // Every byte was read on the far side once `cat` has exited.
        let mut receiver = sender.clone();
        receiver.secs = tokio::time::Instant::now()
            .saturating_duration_since(start + omit)
            .as_secs_f64();
        let local_cpu = cpu.finish();
        let conditions = Conditions {
            path: Some(TransportKind::Ssh),
            streams: Some(plan.streams),
            cipher: connections.first().map(|c| c.cipher.clone()),
            ..Conditions::default()
        };
        let measurement = |stage, flow: &memory::Flow| {
            Measurement::new(
                stage,
                flow.bytes(),
                Duration::from_secs_f64(flow.secs),
                conditions.clone(),
                super::tcp::sum_intervals(&flow.stream_intervals),
            )
        };
        let streams = (0..sender.stream_bytes.len())
            .map(|i| StreamReport {
                id: i + 1,
                sender_bytes: sender.stream_bytes[i],
                receiver_bytes: receiver.stream_bytes[i],
                retransmits: None,
                intervals: sender.stream_intervals[i].clone(),
            })
            .collect();
        Ok(NetReport {
            server: self.label(),
            path: TransportKind::Ssh,
            streams: plan.streams,
            secs: plan.secs,
            omit_secs: plan.omit_secs,
            len: plan.len,
            window: None,
            directions: vec![DirectionReport {
                direction: Direction::Upload,
                sender: measurement(Workload::NetSend, &sender),
                receiver: measurement(Workload::NetReceive, &receiver),
                retransmits: None,
                streams,
                datagrams: None,
            }],
            cpu: CpuBoth {
                local: local_cpu,
                remote: None,
            },
            latency: None,
            warnings,
        })
    }
}

impl Ssh {
    /// Round trips through `cat` on the far side, on one connection; the loop runs on the
    /// connection's own thread, beside its cipher, so no wake-up crosses threads.
    async fn round_trips(&self, plan: &LatPlan) -> Result<LatReport> {
        let connections = self.connect(1).await?;
        let connection = &connections[0];
        let warnings: Vec<Warning> = super::loopback_warning(connection.peer_addr)
            .into_iter()
            .collect();
        let exec = Exec::start(&connection.handle, RemoteCommand::Echo).await?;
        let (size, rounds, cipher) = (plan.size, plan.rounds, connection.cipher.clone());
        let cpu = CpuClock::start();
        let latency = connection
            .worker
            .runtime()
            .spawn(echo_round_trips(exec, size, cipher, rounds))
            .await
            .map_err(|err| anyhow!("the latency test failed: {err}"))?
            .with_context(|| format!("round trips with {}", self.label()))?;
        Ok(LatReport {
            server: self.label(),
            path: TransportKind::Ssh,
            size,
            latency,
            cpu: CpuBoth {
                local: cpu.finish(),
                remote: None,
            },
            warnings,
        })
    }
}

/// [`LATENCY_WARMUP`](super::rdma::LATENCY_WARMUP) untimed round trips, then timed ones as long
/// as `rounds` says, each a message of `size` bytes into `cat` and as many bytes back; every
/// echo is checked against what was sent. Ends by closing `cat`'s input and checking its exit.
async fn echo_round_trips(
    mut exec: Exec,
    size: usize,
    cipher: String,
    rounds: Rounds,
) -> Result<Latency> {
    let mut input = input_writer(&exec.input);
    let mut message = vec![0u8; size];
    crate::payload::RandomFill::new().fill(&mut message);
    let mut back = vec![0u8; size];
    let mut one_way = crate::measure::OneWay::new();
    let warmup = u64::from(super::rdma::LATENCY_WARMUP);
    let echoed = async {
        let mut round = 0u64;
        let mut timed = Instant::now();
        loop {
            if round == warmup {
                timed = Instant::now();
            }
            if round >= warmup && !rounds.more(one_way.len(), timed.elapsed()) {
                return Ok(());
            }
            round += 1;
            // Each round's message differs, so a stale or repeated echo cannot pass the check.
            let stamp = round.to_le_bytes();
            let stamped = message.len().min(stamp.len());
            message[..stamped].copy_from_slice(&stamp[..stamped]);
            let took = tokio::time::timeout(
                memory::STALL_TIMEOUT,
                echo_once(&mut input, &mut exec.output, &message, &mut back),
            )
            .await
            .map_err(|_| {
                anyhow!(
                    "no echo for {} s: the path stopped carrying data (or `cat` on the far side stopped)",
                    memory::STALL_TIMEOUT.as_secs()
                )
            })??;
            if back != message {
                bail!(
                    "`cat` on the far side sent back other bytes than it was sent (round {round})"
                );
            }
            if round > warmup {
                one_way.record(took);
            }
        }
    };
    // Ctrl-C stops a far side that no longer answers, too.
    let echoed: Result<()> = tokio::select! {
        echoed = echoed => echoed,
        _ = crate::interrupt::wait() => Err(crate::interrupt::Interrupted.into()),
    };
    drop(input);
    // Closing `cat`'s input ends it; a `cat` that failed or is missing says so in its exit
    // status, which tells more than the end of its output.
    let finished = match &echoed {
        Ok(()) => exec.finish().await,
        // A far side that stopped answering cannot take the end of input either: do not wait.
        Err(_) => tokio::time::timeout(Duration::from_secs(2), exec.finish())
            .await
            .unwrap_or(Ok(())),
    };
    match echoed {
        Err(err) if err.is::<crate::interrupt::Interrupted>() => return Err(err),
        echoed => {
            finished?;
            echoed?;
        }
    }
    Ok(one_way.latency(format!(
            "{size}-byte message over an SSH channel (cipher {cipher}) and its echo by `cat`; one way = half the round trip"
        )))
}

/// One round trip: the message written while its echo is read (a large message comes back
/// before it is all sent), timed from the first byte out to the last byte back.
async fn echo_once(
    input: &mut (impl AsyncWrite + Unpin),
    output: &mut Output,
    message: &[u8],
    back: &mut [u8],
) -> std::io::Result<Duration> {
    use tokio::io::AsyncReadExt;
    let started = Instant::now();
    tokio::try_join!(input.write_all(message), output.read_exact(back))?;
    Ok(started.elapsed())
}

/// The verification of an upload: what was sent against what the far side read back, range by
/// range. Errors: a range whose digests differ (the file is not landed).
fn verified(
    tool: verify::Tool,
    sent: Vec<String>,
    far: Vec<String>,
    size: u64,
    took: Duration,
) -> Result<super::Verification> {
    if sent.len() != far.len() {
        bail!(
            "{} digests were sent and {} read back",
            sent.len(),
            far.len()
        );
    }
    for (index, (ours, theirs)) in sent.iter().zip(&far).enumerate() {
        if ours != theirs {
            let part = match sent.len() {
                1 => "the file".to_string(),
                n => format!("range {} of {n}", index + 1),
            };
            bail!(
                "verification failed: {part} was sent with {} {ours} but the far side's {} reads {theirs} from the landed copy; it was discarded, and a file already under the name was kept",
                tool.algorithm(),
                tool.program()
            );
        }
    }
    let secs = took.as_secs_f64();
    Ok(super::Verification {
        algorithm: tool.algorithm().to_string(),
        source: sent.join(" "),
        destination: far.join(" "),
        matched: true,
        reread: None,
        far_reread: Some(super::FarReread {
            tool: match far.len() {
                1 => tool.program().to_string(),
                n => format!("dd | {} on each of {n} connections", tool.program()),
            },
            secs,
            bytes_per_sec: if secs > 0.0 { size as f64 / secs } else { 0.0 },
        }),
    })
}

/// What a copy over SSH measured under: this side's I/O, the connections and their cipher.
fn conditions(
    plan: &CopyPlan,
    chunks: ChunkPlan,
    direct: bool,
    engine: disk::EngineKind,
    connections: &[SshConnection],
) -> Conditions {
    Conditions {
        direct,
        fsync_included: true,
        engine: Some(engine),
        block_size: Some(chunks.chunk as u64),
        iodepth: Some(chunks.depth),
        path: Some(TransportKind::Ssh),
        streams: Some(connections.len().min(plan.streams.max(1))),
        cipher: connections.first().map(|c| c.cipher.clone()),
        mount: plan.local_mount(),
        ..Conditions::default()
    }
}

impl Transport for Ssh {
    fn kind(&self) -> TransportKind {
        TransportKind::Ssh
    }

    fn mem_to_mem(&self, plan: &NetPlan, watcher: &dyn Watcher) -> Result<NetReport> {
        self.runtime.block_on(self.net(plan, watcher))
    }

    fn latency(&self, plan: &LatPlan) -> Result<LatReport> {
        self.runtime.block_on(self.round_trips(plan))
    }

    fn copy_tree(
        &self,
        plan: &super::tree::TreePlan,
        watcher: &dyn Watcher,
    ) -> Result<super::tree::TreeReport> {
        match (&plan.source, &plan.destination) {
            (Location::Local(source), Location::Remote { path, .. }) => {
                tree::upload(self, plan, source, path, watcher)
            }
            (Location::Remote { path, .. }, Location::Local(destination)) => {
                tree::download(self, plan, path, destination, watcher)
            }
            _ => bail!("copy -r goes between this machine and one server"),
        }
    }

    fn copy(&self, plan: &CopyPlan, watcher: &dyn Watcher) -> Result<CopyReport> {
        let chunks = plan.chunks()?;
        if plan.verify && matches!(plan.source, Location::Remote { .. }) {
            bail!(
                "--verify over ssh checks uploads (the far side's sha256sum re-reads what landed); for a download, copy from `serve` over --via tcp to verify it"
            );
        }
        let copied = self.runtime.block_on(async {
            match (&plan.source, &plan.destination) {
                (Location::Local(source), Location::Remote { path, .. }) => {
                    self.upload(plan, source, path, chunks, watcher).await
                }
                (Location::Remote { path, .. }, Location::Local(destination)) => {
                    self.download(plan, path, destination, chunks, watcher)
                        .await
                }
                _ => bail!("copy goes between this machine and one server"),
            }
        });
        copied.map_err(|err| {
            match super::address::local_twin_hint([&plan.source, &plan.destination]) {
                Some(hint) => anyhow!("{err:#}; {hint}"),
                None => err,
            }
        })
    }
}

/// Most bytes the far disk's write baseline writes over SSH: enough for a steady figure, bounded
/// in time on a slow disk.
pub const BASELINE_MAX: u64 = 2 << 30;
/// Longest the baseline may take (2 GiB at 4 MB/s).
const BASELINE_TIMEOUT: Duration = Duration::from_secs(600);
/// The baseline's file, in the remote directory given (removed at the end).
const BASELINE_FILE: &str = ".xferbench-baseline.data";

/// Bytes and seconds from GNU dd's last line: "N bytes (…) copied, S s, R MB/s".
fn parse_dd_summary(text: &str) -> Option<(u64, f64)> {
    let line = text
        .lines()
        .rev()
        .find(|line| line.contains(" bytes") && line.contains("copied"))?;
    let bytes = line.split_whitespace().next()?.parse().ok()?;
    let after = line.split("copied,").nth(1)?;
    let secs = after.split_whitespace().next()?.parse::<f64>().ok()?;
    (secs > 0.0).then_some((bytes, secs))
}

/// `N TYPE` from `stat -L -c '%s %F'` (`N` alone from `serve`): the size and the file type.
fn parse_stat(text: &str) -> Option<(u64, Option<&str>)> {
    let text = text.trim();
    if text.contains('\n') {
        return None;
    }
    let (size, kind) = match text.split_once(' ') {
        Some((size, kind)) => (size, Some(kind)),
        None => (text, None),
    };
    Some((size.parse().ok()?, kind))
}

/// `dir/.NAME.xferbench-partial` next to `path`, like a local copy's landing name.
fn temp_name(path: &str) -> Result<String> {
    let (dir, name) = match path.rsplit_once('/') {
        Some((dir, name)) => (format!("{dir}/"), name),
        None => (String::new(), path),
    };
    scp::check_name(name).with_context(|| format!("the remote path '{path}'"))?;
    Ok(format!("{dir}.{name}.xferbench-partial"))
}

/// An SCP refusal, with what the remote said on stderr when the status line was empty.
fn scp_refused(exec: &Exec, err: anyhow::Error) -> anyhow::Error {
    let said = exec.output.stderr();
    if said.contains("not found") {
        anyhow!(
            "the remote has no `scp` in the PATH of its login shell ({said}): install openssh-client there"
        )
    } else if said.is_empty() {
        anyhow!("scp on the remote: {err}")
    } else {
        anyhow!("scp on the remote: {err} ({said})")
    }
}

/// Reads `scp -f`'s answer up to its `C` line, skipping a `T` (times) line.
async fn read_scp_header(exec: &mut Exec) -> Result<scp::FileHeader> {
    use tokio::io::AsyncReadExt;
    loop {
        let first = match exec.output.read_u8().await {
            Ok(byte) => byte,
            Err(_) => {
                let exit = exec.output.finish().await;
                exec.output.check(&exec.command, exit.clone())?;
                bail!("`{}` sent nothing", exec.command);
            }
        };
        match first {
            b'C' => {
                let rest = scp::read_line(&mut exec.output).await?;
                return scp::FileHeader::parse(&format!("C{rest}"));
            }
            b'T' => {
                scp::read_line(&mut exec.output).await?;
                input_writer(&exec.input).write_all(&[0]).await?;
            }
            1 | 2 => {
                let message = scp::read_line(&mut exec.output).await?;
                bail!("{}", message.trim_start_matches("scp: "));
            }
            b'D' => bail!("the remote path is a directory: copy takes one file"),
            other => bail!(
                "`{}`: {}",
                exec.command,
                scp::unexpected(&mut exec.output, other, "an SCP file header").await
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dd_summaries_read_as_bytes_and_seconds() {
        let said = "2048+0 records in\n2048+0 records out\n2147483648 bytes (2.1 GB, 2.0 GiB) copied, 1.53412 s, 1.4 GB/s\n";
        assert_eq!(parse_dd_summary(said), Some((2147483648, 1.53412)));
        assert_eq!(
            parse_dd_summary("dd: failed to open 'x': Permission denied"),
            None
        );
    }

    #[test]
    fn stat_answers_read_as_size_and_type() {
        assert_eq!(
            parse_stat("4096 directory\n"),
            Some((4096, Some("directory")))
        );
        assert_eq!(
            parse_stat("0 regular empty file"),
            Some((0, Some("regular empty file")))
        );
        assert_eq!(parse_stat("77\n"), Some((77, None)));
        assert_eq!(parse_stat("hello from bashrc\n77 regular file"), None);
    }

    #[test]
    fn uploads_land_beside_their_target_under_a_hidden_name() {
        assert_eq!(temp_name("big.img").unwrap(), ".big.img.xferbench-partial");
        assert_eq!(
            temp_name("/tank/in/big.img").unwrap(),
            "/tank/in/.big.img.xferbench-partial"
        );
        assert!(temp_name("in/a\nb").is_err());
    }
}
