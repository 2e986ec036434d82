//! `copy -r` to a stock OpenSSH server: the SCP protocol's tree records, nothing of ours on the
//! far side.
//!
//! Each of the `-P` connections runs one `scp -r -p -d -t` sink inside the directory that takes
//! the tree. Files go to whichever connection's reader is free; each connection's stream walks
//! its sink through `D` (enter) and `E` (leave) records to the file's directory and sends `T`
//! (times) and `C` (mode, size, name) records with the bytes. The records are pipelined: the
//! sink's one-byte acknowledgements are counted by a task of their own, never waited for one by
//! one, so a small file costs no round trip.
//!
//! Nothing lands under a final name half written: each directory's files land in a hidden
//! staging directory inside it (`.xferbench-partial.TAG`), and only when every sink has ended
//! well does one `sh -s` (started with the sinks, and given the tree's links as they come, which
//! SCP cannot carry) fsync the staged files, move them into place, fsync each directory (or
//! syncfs once with `--fsync end`), and give every directory its mode and times, deepest first.
//! A copy that is killed leaves its staging directories, never a torn file under its name.

use std::collections::HashMap;
use std::fs::{Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc as channel;

use super::Ssh;
use super::command::{RemoteCommand, quote_bytes};
use super::exec::{Exec, Exit, input_writer};
use super::login::SshConnection;
use super::scp;
use crate::file::tree::{self, Kind, Totals};
use crate::interrupt;
use crate::measure::{Conditions, Counter, CpuClock, Interval, Measurement, Watcher, Workload};
use crate::transport::TransportKind;
use crate::transport::tree::{FsyncPolicy, Listed, TreePlan, TreeReport};

/// Messages in flight to each connection: with `--bs` bytes each, what a stream may hold.
const QUEUED: usize = 4;
/// Longest the far side's finishing script may run (fsync and rename of every file).
const FINISH_TIMEOUT: Duration = Duration::from_secs(3600);

/// Where the tree goes on the far side.
struct Remote {
    /// The directory the sinks run in (`.` for the login's home).
    parent: Vec<u8>,
    /// The tree's own name inside it.
    name: Vec<u8>,
    /// The staging directories' name (random per copy).
    stage: Vec<u8>,
    /// Nothing had the tree's name: the whole tree lands in one staging directory beside it,
    /// `PARENT/STAGE`, renamed to its name at the end (one rename, however many files).
    fresh: bool,
}

impl Remote {
    /// The first directory the sinks enter: the staging one (a fresh tree) or the tree's own.
    fn sink_root(&self) -> &[u8] {
        match self.fresh {
            true => &self.stage,
            false => &self.name,
        }
    }

    /// Where the directory `relative` is while the files arrive: in the staging tree (a fresh
    /// tree) or its final place.
    fn arriving(&self, relative: &Path) -> Vec<u8> {
        let mut path = self.parent.clone();
        path.push(b'/');
        path.extend_from_slice(self.sink_root());
        if !relative.as_os_str().is_empty() {
            path.push(b'/');
            path.extend_from_slice(relative.as_os_str().as_bytes());
        }
        path
    }

    /// The directory files of `relative` wait in: [`Remote::arriving`], or its staging
    /// directory inside it when the tree was there before.
    fn waiting(&self, relative: &Path) -> Vec<u8> {
        match self.fresh {
            true => self.arriving(relative),
            false => stage_in(&self.below(relative), &self.stage),
        }
    }

    /// The tree's root as the far shell reads it.
    fn root(&self) -> Vec<u8> {
        let mut root = self.parent.clone();
        root.push(b'/');
        root.extend_from_slice(&self.name);
        root
    }

    /// `relative` below the root, as the far shell reads it.
    fn below(&self, relative: &Path) -> Vec<u8> {
        let mut path = self.root();
        if !relative.as_os_str().is_empty() {
            path.push(b'/');
            path.extend_from_slice(relative.as_os_str().as_bytes());
        }
        path
    }
}

/// Uploads the local tree `source` into `destination` on the server.
pub(super) fn upload(
    ssh: &Ssh,
    plan: &TreePlan,
    source: &Path,
    destination: &str,
    watcher: &dyn Watcher,
) -> Result<TreeReport> {
    crate::transport::tree::check_source(source)?;
    if plan.verify {
        bail!(
            "--verify with copy -r over ssh: a stock server cannot re-read a tree for us; copy the tree to `serve` over --via tcp to verify it"
        );
    }
    let streams = plan.workers.max(1);
    // The tree is counted (for the progress bar) while the far side starts, which also warms
    // the walks after it.
    let counting = {
        let source = source.to_path_buf();
        std::thread::spawn(move || tree::count(&source))
    };
    let (connections, remote, sinks, side) = ssh
        .runtime
        .block_on(start(ssh, plan, source, destination, streams))
        .map_err(|err| err.context(format!("{}: copy -r failed", ssh.label())))?;
    let label = format!(
        "{}:{}",
        ssh.label(),
        String::from_utf8_lossy(&remote.root())
    );
    let totals = counting
        .join()
        .map_err(|_| anyhow!("counting the tree {} failed", source.display()))?;
    let (bytes, files) = (Counter::new(), Counter::new());
    watcher.begin_files("copy", totals.bytes, &bytes, totals.files, &files);
    let cpu = CpuClock::start();
    let start = Instant::now();
    let state = Mutex::new(State::default());
    let broken_stream = AtomicBool::new(false);
    // Each connection's stream and acknowledgements run on its own thread, as a single file's do.
    let (senders, tasks): (Vec<_>, Vec<_>) = connections
        .iter()
        .zip(sinks.execs)
        .map(|(connection, exec)| {
            let (tx, rx) = channel::channel::<Vec<u8>>(QUEUED);
            (
                tx,
                connection
                    .worker
                    .runtime()
                    .spawn(carry(exec, rx, sinks.tar)),
            )
        })
        .collect();
    let (side_tx, side_rx) = channel::channel::<Vec<u8>>(QUEUED * 64);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let side_task = connections[0]
        .worker
        .runtime()
        .spawn(script(side, side_rx, ready_tx));
    // Every directory (and its staging directory) is made before any sink writes into it:
    // two sinks making one directory at once fail ("File exists" from scp; GNU tar 1.34 gives up
    // a file with "Cannot open: No such file or directory" when another made its directory).
    make_directories(source, &remote, &side_tx)?;
    ssh.runtime
        .block_on(async { tokio::time::timeout(FINISH_TIMEOUT, ready_rx).await })
        .map_err(|_| {
            anyhow!(
                "{}: making the tree's directories took past {} s",
                ssh.label(),
                FINISH_TIMEOUT.as_secs()
            )
        })?
        .map_err(|_| {
            anyhow!(
                "{}: the far shell ended while making the tree's directories",
                ssh.label()
            )
        })?;
    let copying = Copying {
        plan,
        broken: &broken_stream,
        source,
        remote: &remote,
        bytes: &bytes,
        files: &files,
        state: &state,
        side: side_tx.clone(),
        tar: sinks.tar,
    };
    let sinks_tar = sinks.tar;
    let (walked, (_, intervals)) = copying.run(senders);
    let carried: Vec<Result<()>> = ssh.runtime.block_on(async {
        let mut all = Vec::new();
        for task in tasks {
            all.push(
                task.await
                    .unwrap_or_else(|err| Err(anyhow!("a stream task failed: {err}"))),
            );
        }
        all
    });
    let mut broken: Option<anyhow::Error> = carried.into_iter().find_map(Result::err);
    if interrupt::requested() {
        broken = Some(interrupt::Interrupted.into());
    }
    // Only a tree whose every sink ended well is moved into place.
    let finishing = match &broken {
        None => copying.finish(walked.removals, &side_tx),
        Some(_) => Ok(()),
    };
    if let (Err(err), None) = (finishing, &broken) {
        broken = Some(err);
    }
    drop(copying);
    drop(side_tx);
    // A copy already failed only waits for the shell to see the end of its input.
    let limit = match broken {
        Some(_) => Duration::from_secs(5),
        None => FINISH_TIMEOUT,
    };
    let said = ssh.runtime.block_on(async {
        tokio::select! {
            said = tokio::time::timeout(limit, side_task) => said
                .map_err(|_| {
                    anyhow!(
                        "the far side's finishing script ran past {} s",
                        limit.as_secs()
                    )
                })?
                .map_err(|err| anyhow!("the finishing task failed: {err}"))?,
            // Every file moved so far is whole: the far moves are renames.
            _ = interrupt::wait() => Err(interrupt::Interrupted.into()),
        }
    });
    if interrupt::requested() {
        broken = Some(interrupt::Interrupted.into());
    }
    let elapsed = start.elapsed();
    watcher.end();
    if let Some(err) = broken {
        if err.is::<interrupt::Interrupted>() {
            return Err(err);
        }
        return Err(err.context(format!(
            "{label}: copy -r failed; files sent so far wait in hidden .xferbench-partial.* directories, never under their names"
        )));
    }
    let said = said.with_context(|| format!("{label}: landing the tree"))?;
    let mut state = state.into_inner().expect("tree state");
    state.failed.total += said.total;
    let room = crate::transport::tree::LISTED.saturating_sub(state.failed.shown.len());
    state.failed.shown.extend(said.shown.into_iter().take(room));
    let conditions = Conditions {
        fsync_included: true,
        block_size: Some(plan.block as u64),
        path: Some(TransportKind::Ssh),
        streams: Some(streams),
        cipher: connections.first().map(|c| c.cipher.clone()),
        mount: Some(crate::mounts::facts(source)),
        ..Conditions::default()
    };
    let measurement = Measurement::new(
        Workload::Copy,
        state.landed.bytes,
        elapsed,
        conditions,
        intervals,
    );
    let mut warnings = Vec::new();
    warnings.extend(crate::transport::loopback_warning(connections[0].peer_addr));
    Ok(TreeReport {
        source: source.display().to_string(),
        destination: label,
        path: TransportKind::Ssh,
        files_per_sec: crate::transport::tree::per_sec(state.landed.files, elapsed),
        measurement,
        landed: state.landed,
        fsync: plan.fsync,
        workers: streams,
        verified: false,
        failed: state.failed,
        changed: state.changed,
        skipped: state.skipped,
        cpu: cpu.finish(),
        remote_cpu: None,
        far_tool: Some(
            match sinks_tar {
                true => "tar -x",
                false => "scp -t",
            }
            .to_string(),
        ),
        warnings,
    })
}

/// What the far shell prints once the directories are made.
const READY: &str = "xferbench: directories made";

/// Hands the shell `mkdir -p` lines (batches of about 32 KiB) that make every directory of the
/// tree with its staging directory inside, then a line that prints [`READY`]. A directory
/// whose path has a line break is left out (SCP cannot enter it; the walk lists it).
fn make_directories(source: &Path, remote: &Remote, side: &channel::Sender<Vec<u8>>) -> Result<()> {
    let send = |line: Vec<u8>| {
        side.blocking_send(line)
            .map_err(|_| anyhow!("the far shell ended early"))
    };
    let mut batch = Vec::new();
    for entry in tree::walk(source, false).flatten() {
        let path = entry.relative.as_os_str().as_bytes();
        if entry.kind != Kind::Dir || path.contains(&b'\n') || path.contains(&b'\r') {
            continue;
        }
        batch.push(b' ');
        batch.extend(quote_bytes(&remote.waiting(&entry.relative)));
        if batch.len() > 32 << 10 {
            send(mkdir(std::mem::take(&mut batch)))?;
        }
    }
    if !batch.is_empty() {
        send(mkdir(batch))?;
    }
    send(format!("printf '%s\\n' '{READY}'\n").into_bytes())
}

/// `mkdir -p -- DIRS` for a batch of quoted directories (each with its leading space).
fn mkdir(batch: Vec<u8>) -> Vec<u8> {
    let mut line = b"mkdir -p --".to_vec();
    line.extend(batch);
    line.extend_from_slice(b" || printf 'F\\t%s\\tcould not make some directories\\n' .\n");
    line
}

/// Connects, finds where the tree lands, and starts one sink per connection and the shell.
async fn start(
    ssh: &Ssh,
    plan: &TreePlan,
    source: &Path,
    destination: &str,
    streams: usize,
) -> Result<(Vec<SshConnection>, Remote, Sinks, Exec)> {
    let connections = ssh.connect(streams).await?;
    let first = &connections[0].handle;
    let destination = ssh.expand_home(first, destination).await?;
    let destination = destination.trim_end_matches('/');
    let name = crate::transport::tree::source_name(source)?
        .as_bytes()
        .to_vec();
    // The far shell answers where the tree goes: every far command costs the start of the
    // login's shell (and its start-up files), so the questions go to the one that stays, and a
    // GNU tar sink per connection starts beside it (its start-up then overlaps the probe's).
    let tar_sinks = futures::future::join_all(
        connections
            .iter()
            .map(|connection| Exec::start(&connection.handle, RemoteCommand::TarTreeSink)),
    );
    let (side, tar_sinks) = tokio::join!(Exec::start(first, RemoteCommand::Shell), tar_sinks);
    let mut side = side?;
    let probe = RemoteCommand::TreeProbe {
        destination: match destination {
            "" => ".".to_string(),
            path => path.to_string(),
        },
        name: String::from_utf8_lossy(&name).into_owned(),
    };
    let probed = ask(&mut side, &probe).await?;
    let into_dir = probed.lines().any(|line| line == "dir");
    let (parent, name) = if into_dir {
        (destination.as_bytes().to_vec(), name)
    } else {
        match destination.rsplit_once('/') {
            Some((parent, name)) => (parent.as_bytes().to_vec(), name.as_bytes().to_vec()),
            None => (Vec::new(), destination.as_bytes().to_vec()),
        }
    };
    let parent = match parent.is_empty() {
        true if destination.starts_with('/') => b"/".to_vec(),
        true => b".".to_vec(),
        false => parent,
    };
    let remote = Remote {
        parent,
        name,
        stage: format!(".xferbench-partial.{:016x}", rand::random::<u64>()).into_bytes(),
        fresh: !probed.lines().any(|line| line == "exists"),
    };
    scp::check_name(&String::from_utf8_lossy(&remote.name))?;
    let root = String::from_utf8_lossy(&remote.root()).into_owned();
    if !plan.force && !remote.fresh {
        bail!(
            "{root} already exists on the far side: give --force to copy into it (files of the same name are replaced)"
        );
    }
    if probed.lines().any(|line| line == "gnutar") {
        let sinks = tar_sinks.into_iter().collect::<Result<Vec<_>>>()?;
        return Ok((
            connections,
            remote,
            Sinks {
                execs: sinks,
                tar: true,
            },
            side,
        ));
    }
    // No GNU tar: its sinks are ended, and SCP's take the files.
    for exec in tar_sinks.into_iter().flatten() {
        let _ = exec.input.eof().await;
    }
    // The sinks start at once: each waits on the far login shell.
    let dir = String::from_utf8_lossy(&remote.parent).into_owned();
    let sinks = connections.iter().map(|connection| {
        let dir = dir.clone();
        async move {
            let mut exec =
                Exec::start(&connection.handle, RemoteCommand::ScpTreeSink { dir }).await?;
            scp::expect_ok(&mut exec.output)
                .await
                .map_err(|err| super::scp_refused(&exec, err))?;
            Ok::<_, anyhow::Error>(exec)
        }
    });
    let sinks = futures::future::join_all(sinks)
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    Ok((
        connections,
        remote,
        Sinks {
            execs: sinks,
            tar: false,
        },
        side,
    ))
}

/// One sink per connection: GNU tar's (`tar: true`), else SCP's.
struct Sinks {
    execs: Vec<Exec>,
    tar: bool,
}

/// What the far shell prints before the end of an answer to [`ask`].
const ANSWERED: &str = "xferbench: answered";

/// Runs `command` in the far shell `side` and reads what it printed up to [`ANSWERED`] (lines
/// a start-up file printed before are skipped by the caller's parsing). Errors: the shell ended.
async fn ask(side: &mut Exec, command: &RemoteCommand) -> Result<String> {
    let line = format!("{command}\nprintf '%s\\n' '{ANSWERED}'\n");
    input_writer(&side.input)
        .write_all(line.as_bytes())
        .await
        .map_err(|err| anyhow!("the far shell: {err}"))?;
    let mut said = String::new();
    let answered = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let line = scp::read_line(&mut side.output).await?;
            if line == ANSWERED {
                return Ok::<_, io::Error>(());
            }
            said.push_str(&line);
            said.push('\n');
        }
    })
    .await;
    match answered {
        Ok(Ok(())) => Ok(said),
        Ok(Err(_)) => {
            let exit = side.output.finish().await;
            side.output.check(&side.command, exit)?;
            bail!("the far shell ended before it answered `{command}`")
        }
        Err(_) => bail!("the far shell did not answer `{command}` within 120 s"),
    }
}

/// One connection's stream: writes what its reader hands over while a second future counts the
/// sink's acknowledgements; then closes the sink's input and checks how it ended. Errors: the
/// sink refused a record (its message), or ended badly.
async fn carry(mut exec: Exec, mut rx: channel::Receiver<Vec<u8>>, tar: bool) -> Result<()> {
    if tar {
        return carry_archive(exec, rx).await;
    }
    let mut input = input_writer(&exec.input);
    let ended_early = {
        let writing = async {
            while let Some(message) = rx.recv().await {
                stall_bounded("to scp on the far side", input.write_all(&message)).await?;
            }
            input.shutdown().await?;
            Ok::<_, io::Error>(())
        };
        let acknowledging = async {
            let mut buf = [0u8; 4096];
            loop {
                let n = exec.output.read(&mut buf).await?;
                if n == 0 {
                    return Ok(());
                }
                if let Some(at) = buf[..n].iter().position(|&b| b != 0) {
                    // A warning or fatal status: its message follows on the rest of the line.
                    let mut line = buf[at + 1..n].to_vec();
                    while !line.contains(&b'\n') && line.len() < 4096 {
                        match exec.output.read_u8().await {
                            Ok(byte) => line.push(byte),
                            Err(_) => break,
                        }
                    }
                    let text = String::from_utf8_lossy(&line);
                    let text = text.lines().next().unwrap_or_default();
                    return Err(anyhow!(
                        "scp on the far side: {}",
                        text.trim_start_matches("scp: ")
                    ));
                }
            }
        };
        let (mut writing, mut acknowledging) = (pin!(writing), pin!(acknowledging));
        // A refusal ends the stream at once: the sink's next acknowledgements would go unread, and
        // unread data on one channel stalls the whole connection.
        tokio::select! {
            written = &mut writing => {
                let acknowledged = match written {
                    Ok(()) => tokio::time::timeout(STALL, acknowledging).await.unwrap_or_else(|_| {
                        Err(anyhow!(
                            "scp on the far side did not end within {} s of its last data: the far side stopped (frozen, or the path went dark)",
                            STALL.as_secs()
                        ))
                    }),
                    Err(err) => match tokio::time::timeout(Duration::from_secs(2), acknowledging).await {
                        Ok(Err(refused)) => Err(refused),
                        _ => Err(anyhow!("sending to scp on the far side: {err}")),
                    },
                };
                acknowledged?;
                false
            }
            acknowledged = &mut acknowledging => {
                acknowledged?;
                true
            }
        }
    };
    if ended_early {
        bail!(
            "scp on the far side ended before the tree was sent: {}",
            exec_said(&exec.output)
        );
    }
    let exit = exec.output.finish().await;
    exec.output.check(&exec.command, exit)
}

/// [`carry`] to GNU tar: it acknowledges nothing (its errors come on standard error and in its
/// status, which rules), and may end as soon as it read the archive's last block, before the
/// close of its input.
async fn carry_archive(exec: Exec, mut rx: channel::Receiver<Vec<u8>>) -> Result<()> {
    let Exec {
        command,
        mut output,
        input,
    } = exec;
    // Read all along: unread output on one channel would stall the whole connection.
    let mut draining = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while matches!(output.read(&mut buf).await, Ok(n) if n > 0) {}
        let exit = output.finish().await;
        (output, exit)
    });
    let mut writer = input_writer(&input);
    let written = async {
        while let Some(message) = rx.recv().await {
            stall_bounded("to tar on the far side", writer.write_all(&message)).await?;
        }
        let _ = writer.shutdown().await;
        Ok::<_, io::Error>(())
    }
    .await;
    // After a failed write, tar's end is only waited for its message.
    let wait = match written {
        Ok(()) => STALL,
        Err(_) => Duration::from_secs(2),
    };
    let (output, exit) = match tokio::time::timeout(wait, &mut draining).await {
        Ok(ended) => ended.map_err(|err| anyhow!("reading tar on the far side failed: {err}"))?,
        Err(_) => {
            draining.abort();
            written.map_err(|err| anyhow!("sending to tar on the far side: {err}"))?;
            bail!(
                "tar on the far side did not end within {} s of its last data: the far side stopped (frozen, or the path went dark)",
                STALL.as_secs()
            );
        }
    };
    output.check(&command, exit)?;
    written.map_err(|err| anyhow!("sending to tar on the far side: {err}"))
}

/// How long a far sink may take nothing, or a far source send nothing, before the copy ends
/// (a frozen far side, or a path gone dark), as a single file's copy.
const STALL: Duration = crate::transport::pipeline::STALL_TIMEOUT;

/// `io` within [`STALL`], else a timed-out error naming `what` (where the data went or came
/// from).
async fn stall_bounded<T>(
    what: &str,
    io: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    tokio::time::timeout(STALL, io).await.unwrap_or_else(|_| {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "no data moved {what} for {} s: the far side stopped (frozen, or the path went dark)",
                STALL.as_secs()
            ),
        ))
    })
}

/// What a far command said on standard error, for a message.
fn exec_said(output: &super::exec::Output) -> String {
    match output.stderr() {
        said if said.is_empty() => "it said nothing".to_string(),
        said => said,
    }
}

/// The shell's side: writes its script as it comes, and reads its report lines: `F<TAB>path<TAB>
/// reason` for an entry that failed. The entries that failed, at most [`tree::LISTED`] of them.
async fn script(
    mut exec: Exec,
    mut rx: channel::Receiver<Vec<u8>>,
    ready: tokio::sync::oneshot::Sender<()>,
) -> Result<Listed> {
    let mut input = input_writer(&exec.input);
    let writing = async {
        while let Some(message) = rx.recv().await {
            input.write_all(&message).await?;
        }
        input.shutdown().await?;
        Ok::<_, io::Error>(())
    };
    let reading = async {
        let mut failed = Listed::default();
        let mut ready = Some(ready);
        let mut lines = BufReader::new(&mut exec.output).lines();
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.strip_prefix("F\t") {
                let (path, reason) = rest.split_once('\t').unwrap_or((rest, "failed"));
                failed.add(Path::new(path), reason.to_string());
            } else if line == READY
                && let Some(ready) = ready.take()
            {
                let _ = ready.send(());
            }
        }
        Ok::<_, io::Error>(failed)
    };
    let (written, failed) = tokio::join!(writing, reading);
    let failed = failed.map_err(|err| anyhow!("reading the far shell's report: {err}"))?;
    let exit = exec.output.finish().await;
    match exit {
        Exit::Status(0) => {}
        exit => exec.output.check(&exec.command, exit)?,
    }
    written.map_err(|err| anyhow!("sending the far shell its script: {err}"))?;
    Ok(failed)
}

/// What the walk and the readers found, behind one lock.
#[derive(Default)]
struct State {
    landed: Totals,
    failed: Listed,
    changed: Listed,
    skipped: Listed,
}

/// A file for a reader's stream.
struct Job {
    relative: PathBuf,
    meta: Metadata,
}

/// What the walk left for the end: staged files to remove (a file that failed half sent).
#[derive(Default)]
struct Walked {
    removals: Vec<Vec<u8>>,
}

/// One tree upload under way.
struct Copying<'a> {
    plan: &'a TreePlan,
    /// A stream broke: the copy fails, so the walk stops and the readers only drain the queue.
    broken: &'a AtomicBool,
    source: &'a Path,
    remote: &'a Remote,
    bytes: &'a Counter,
    files: &'a Counter,
    state: &'a Mutex<State>,
    side: channel::Sender<Vec<u8>>,
    /// The sinks are GNU tar's (else SCP's).
    tar: bool,
}

impl Copying<'_> {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("tree state")
    }

    /// The walk feeding one reader per stream; how long it ran, in 1 s intervals.
    fn run(&self, senders: Vec<channel::Sender<Vec<u8>>>) -> (Walked, (Duration, Vec<Interval>)) {
        let (jobs, queue) = mpsc::sync_channel::<Job>(senders.len() * 8);
        let queue = Mutex::new(queue);
        let removals = Mutex::new(Vec::new());
        let ((), elapsed, intervals) = crate::transport::tree::sampled(self.bytes, || {
            std::thread::scope(|scope| {
                let readers: Vec<_> = senders
                    .into_iter()
                    .map(|sender| {
                        let (queue, removals) = (&queue, &removals);
                        scope.spawn(move || {
                            self.read(
                                Stream::new(sender, self.plan.block, self.tar),
                                queue,
                                removals,
                            )
                        })
                    })
                    .collect();
                self.walk(jobs);
                for reader in readers {
                    let _ = reader.join();
                }
            })
        });
        let removals = removals.into_inner().expect("removals");
        (Walked { removals }, (elapsed, intervals))
    }

    /// The walk: directories and files handed to the readers, links to the shell.
    fn walk(&self, jobs: mpsc::SyncSender<Job>) {
        let mut refused_dir: Option<PathBuf> = None;
        for entry in tree::walk(self.source, false) {
            if interrupt::requested() || self.broken.load(Ordering::Relaxed) {
                return;
            }
            let entry = match entry {
                Ok(entry) => entry,
                Err(err) => {
                    let reason = crate::transport::tree::read_error(&err.path, err.error);
                    self.state().failed.add(&err.path, reason);
                    continue;
                }
            };
            if let Some(dir) = &refused_dir {
                if entry.relative.starts_with(dir) {
                    continue;
                }
                refused_dir = None;
            }
            let path = self.source.join(&entry.relative);
            let name = entry
                .relative
                .file_name()
                .map(|n| n.as_bytes())
                .unwrap_or_default();
            if name.contains(&b'\n') || name.contains(&b'\r') {
                let reason = "its name has a line break, which the far side's line-based tools (scp, the shell) cannot carry; rename it";
                match entry.kind {
                    Kind::Dir => {
                        self.state()
                            .failed
                            .add(&path, format!("{reason} (nothing under it was copied)"));
                        refused_dir = Some(entry.relative);
                    }
                    _ => self.state().failed.add(&path, reason.into()),
                }
                continue;
            }
            let job = match entry.kind {
                // Made before the files came (`make_directories`).
                Kind::Dir => continue,
                Kind::File => {
                    crate::transport::tree::read_ahead(&path, entry.meta.len());
                    Job {
                        relative: entry.relative,
                        meta: entry.meta,
                    }
                }
                Kind::Symlink => {
                    match self.link(&path, &entry.relative, &entry.meta) {
                        Ok(()) => self.state().landed.symlinks += 1,
                        Err(err) => self.state().failed.add(&path, format!("{err:#}")),
                    }
                    continue;
                }
                Kind::Special => {
                    self.state().skipped.add(
                        &path,
                        "not a file, directory or link (a fifo, socket or device)".into(),
                    );
                    continue;
                }
            };
            if jobs.send(job).is_err() {
                return;
            }
        }
    }

    /// Hands the shell a line that makes the link in its directory's staging directory.
    fn link(&self, path: &Path, relative: &Path, meta: &Metadata) -> Result<()> {
        let target = std::fs::read_link(path)
            .map_err(|err| anyhow!(crate::transport::tree::read_error(path, err)))?;
        let staged = self.staged(relative);
        let mut line = b"mkdir -p -- ".to_vec();
        line.extend(quote_bytes(
            &self
                .remote
                .waiting(relative.parent().unwrap_or(Path::new(""))),
        ));
        line.extend_from_slice(b" && ln -s -- ");
        line.extend(quote_bytes(target.as_os_str().as_bytes()));
        line.push(b' ');
        line.extend(quote_bytes(&staged));
        line.extend_from_slice(
            format!(
                " && {{ touch -h -m -d @{} -- ",
                time(meta.mtime(), meta.mtime_nsec())
            )
            .as_bytes(),
        );
        line.extend(quote_bytes(&staged));
        line.extend_from_slice(b" || :; } || ");
        line.extend(report_failure(relative, "the link could not be made"));
        line.push(b'\n');
        self.side
            .blocking_send(line)
            .map_err(|_| anyhow!("the far shell ended early"))
    }

    /// Where `relative` (a file or link) waits on the far side before its rename.
    fn staged(&self, relative: &Path) -> Vec<u8> {
        let parent = relative.parent().unwrap_or(Path::new(""));
        let mut path = self.remote.waiting(parent);
        path.push(b'/');
        path.extend_from_slice(
            relative
                .file_name()
                .map(|n| n.as_bytes())
                .unwrap_or_default(),
        );
        path
    }

    /// A reader: sends the jobs it takes through its stream until the queue closes, or the
    /// stream breaks (its task says why), or Ctrl-C.
    fn read(
        &self,
        mut stream: Stream,
        queue: &Mutex<mpsc::Receiver<Job>>,
        removals: &Mutex<Vec<Vec<u8>>>,
    ) {
        loop {
            let job = match queue.lock().expect("queue").recv() {
                Ok(job) => job,
                Err(_) => break,
            };
            if interrupt::requested() || self.broken.load(Ordering::Relaxed) {
                // Drained, so the walk never waits on a full queue.
                continue;
            }
            let Job { relative, meta } = job;
            let sent = {
                {
                    match self.send_file(&mut stream, &relative, &meta) {
                        Ok(Sent::Whole { changed }) => {
                            self.files.add(1);
                            let mut state = self.state();
                            state.landed.files += 1;
                            state.landed.bytes += meta.len();
                            if changed {
                                state.changed.add(
                                    &self.source.join(&relative),
                                    "its size or modification time moved while it was read: it \
                                     landed as read; copy it again for a settled version"
                                        .into(),
                                );
                            }
                            Ok(())
                        }
                        Ok(Sent::Not(reason)) => {
                            self.state()
                                .failed
                                .add(&self.source.join(&relative), reason);
                            Ok(())
                        }
                        Ok(Sent::Torn(reason)) => {
                            removals
                                .lock()
                                .expect("removals")
                                .push(self.staged(&relative));
                            self.state()
                                .failed
                                .add(&self.source.join(&relative), reason);
                            Ok(())
                        }
                        Err(err) => Err(err),
                    }
                }
            };
            if sent.is_err() {
                // The stream's task has the reason.
                self.broken.store(true, Ordering::Relaxed);
            }
        }
        if !self.broken.load(Ordering::Relaxed) && !interrupt::requested() {
            let _ = stream.close();
        }
    }

    /// The sink's path to the directory `relative` (its staging directory with `staged`).
    fn dirs(&self, relative: &Path, staged: bool) -> Vec<Vec<u8>> {
        let mut dirs = vec![self.remote.sink_root().to_vec()];
        dirs.extend(
            relative
                .components()
                .map(|c| c.as_os_str().as_bytes().to_vec()),
        );
        if staged && !self.remote.fresh {
            dirs.push(self.remote.stage.clone());
        }
        dirs
    }

    /// One file's records and bytes. Errors: the stream is gone (nothing more can go on it).
    fn send_file(&self, stream: &mut Stream, relative: &Path, meta: &Metadata) -> Result<Sent> {
        let path = self.source.join(relative);
        // O_NOFOLLOW: a file swapped for a link after the walk is not followed out of the tree.
        let mut file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(file) => file,
            Err(err) => {
                return Ok(Sent::Not(crate::transport::tree::read_error(&path, err)));
            }
        };
        let size = meta.len();
        if stream.tar {
            stream.data(&tar_file_header(&self.staged(relative), meta))?;
        } else {
            self.scp_headers(stream, relative, meta)?;
        }
        let mut left = size;
        let mut torn = None;
        while left > 0 {
            let (n, read) = stream.read_from(&mut file, left)?;
            left -= n as u64;
            self.bytes.add(n as u64);
            match read {
                Ok(()) if n == 0 => {
                    torn = Some(
                        "it shrank while it was read: it was not landed; copy it again".to_string(),
                    );
                    break;
                }
                Ok(()) => {}
                Err(err) => {
                    torn = Some(crate::transport::tree::read_error(&path, err));
                    break;
                }
            }
            if interrupt::requested() {
                return Err(interrupt::Interrupted.into());
            }
        }
        // Both sinks need the announced size: a torn file is padded, and removed before the
        // renames.
        stream.zeros(left)?;
        match stream.tar {
            true => stream.data(&[0; TAR_BLOCK][..tar_padding(size)])?,
            false => stream.record(&[0])?,
        }
        if let Some(reason) = torn {
            return Ok(Sent::Torn(reason));
        }
        let changed = file
            .metadata()
            .map(|after| tree::stamp(&after) != tree::stamp(meta))
            .unwrap_or(true);
        Ok(Sent::Whole { changed })
    }

    /// SCP's records before a file's bytes: into its directory, its times, its mode and size.
    fn scp_headers(&self, stream: &mut Stream, relative: &Path, meta: &Metadata) -> Result<()> {
        let parent = relative.parent().unwrap_or(Path::new(""));
        stream.enter(&self.dirs(parent, true))?;
        let size = meta.len();
        stream.record(
            format!(
                "T{} {} {} {}\n",
                meta.mtime(),
                meta.mtime_nsec() / 1000,
                meta.atime(),
                meta.atime_nsec() / 1000
            )
            .as_bytes(),
        )?;
        let mut header = format!("C{:04o} {size} ", tree::mode(meta)).into_bytes();
        header.extend_from_slice(
            relative
                .file_name()
                .map(|n| n.as_bytes())
                .unwrap_or_default(),
        );
        header.push(b'\n');
        stream.record(&header)
    }

    /// After every sink ended well: the shell removes torn files, moves each staging
    /// directory's files into place (fsynced first with `--fsync each`), gives every directory
    /// its mode and times deepest first, and syncs. Errors: the shell is gone.
    fn finish(&self, removals: Vec<Vec<u8>>, side: &channel::Sender<Vec<u8>>) -> Result<()> {
        let send = |line: Vec<u8>| {
            side.blocking_send(line)
                .map_err(|_| anyhow!("the far shell ended early"))
        };
        for staged in removals {
            let mut line = b"rm -f -- ".to_vec();
            line.extend(quote_bytes(&staged));
            line.push(b'\n');
            send(line)?;
        }
        let root = quote_bytes(&self.remote.root());
        let arriving = quote_bytes(&self.remote.arriving(Path::new("")));
        if self.remote.fresh && self.plan.fsync == FsyncPolicy::Each {
            let mut line = b"find ".to_vec();
            line.extend_from_slice(&arriving);
            line.extend_from_slice(b" -type f -exec sync -- {} + || printf 'F\\t%s\\tsync failed: what landed may not be on the disk\\n' .\n");
            send(line)?;
        }
        if !self.remote.fresh {
            self.move_staged_files(&root, &send)?;
        }
        self.finish_directories(&send)?;
        let mut line = match self.plan.fsync {
            FsyncPolicy::Each => {
                let mut line = b"find ".to_vec();
                line.extend_from_slice(&arriving);
                line.extend_from_slice(b" -type d -exec sync -- {} + && ");
                line
            }
            FsyncPolicy::End => Vec::new(),
        };
        if self.remote.fresh {
            // The whole tree takes its name at once, every file in it already whole.
            line.extend_from_slice(b"mv -T -- ");
            line.extend_from_slice(&arriving);
            line.push(b' ');
            line.extend_from_slice(&root);
            line.extend_from_slice(b" && ");
        }
        match self.plan.fsync {
            FsyncPolicy::Each => {
                line.extend_from_slice(b"sync -- ");
                line.extend(quote_bytes(&self.remote.parent));
            }
            FsyncPolicy::End => {
                line.extend_from_slice(b"sync -f -- ");
                line.extend_from_slice(&root);
            }
        }
        line.extend_from_slice(
            b" || printf 'F\\t%s\\tthe tree could not be moved into place or synced: look for a hidden .xferbench-partial.* beside it\\n' .\n",
        );
        send(line)
    }

    /// A tree that was there before: each staging directory's files are fsynced (`--fsync
    /// each`) and moved into the directory that holds it.
    fn move_staged_files(&self, root: &[u8], send: &dyn Fn(Vec<u8>) -> Result<()>) -> Result<()> {
        let stage = quote_bytes(&self.remote.stage);
        let sync_files = match self.plan.fsync {
            FsyncPolicy::Each => {
                "find \"$s\" -mindepth 1 -maxdepth 1 -type f -exec sync -- {} + && "
            }
            FsyncPolicy::End => "",
        };
        let mut line = b"find ".to_vec();
        line.extend_from_slice(root);
        line.extend_from_slice(b" -depth -type d -name ");
        line.extend_from_slice(&stage);
        // No line break in any name (refused above), so a name per line is safe to read.
        line.extend_from_slice(
            format!(
                " -print | while IFS= read -r s; do d=${{s%/*}}; {sync_files}find \"$s\" -mindepth 1 -maxdepth 1 -exec mv -f -t \"$d\" -- {{}} + && rmdir -- \"$s\" || printf 'F\\t%s\\tcould not move its files into place\\n' \"$d\"; done\n"
            )
            .as_bytes(),
        );
        send(line)
    }

    /// Every directory's mode (by batches) and times (one at a time: each its own), where it
    /// is now.
    fn finish_directories(&self, send: &dyn Fn(Vec<u8>) -> Result<()>) -> Result<()> {
        let mut by_mode: HashMap<u32, Vec<u8>> = HashMap::new();
        for entry in tree::walk(self.source, true).flatten() {
            if entry.kind != Kind::Dir || interrupt::requested() {
                continue;
            }
            let name = entry
                .relative
                .file_name()
                .map(|n| n.as_bytes())
                .unwrap_or_default();
            if name.contains(&b'\n') || name.contains(&b'\r') {
                continue;
            }
            let dir = quote_bytes(&self.remote.arriving(&entry.relative));
            let mut line = format!(
                "touch -m -d @{} -- ",
                time(entry.meta.mtime(), entry.meta.mtime_nsec())
            )
            .into_bytes();
            line.extend_from_slice(&dir);
            line.extend_from_slice(b" || ");
            line.extend(report_failure(&entry.relative, "could not set its time"));
            line.push(b'\n');
            send(line)?;
            let mode = tree::mode(&entry.meta);
            let batch = by_mode.entry(mode).or_default();
            batch.push(b' ');
            batch.extend_from_slice(&dir);
            if batch.len() > 32 << 10 {
                send(chmod(mode, std::mem::take(batch)))?;
            }
            self.state().landed.directories += 1;
        }
        for (mode, batch) in by_mode {
            if !batch.is_empty() {
                send(chmod(mode, batch))?;
            }
        }
        Ok(())
    }
}

/// `chmod MODE -- DIRS` for a batch of quoted directories (each with its leading space).
fn chmod(mode: u32, batch: Vec<u8>) -> Vec<u8> {
    let mut line = format!("chmod {mode:04o} --").into_bytes();
    line.extend(batch);
    line.extend_from_slice(
        b" || printf 'F\\t%s\\tcould not set the mode of some directories\\n' .\n",
    );
    line
}

/// `DIR/STAGE`.
fn stage_in(dir: &[u8], stage: &[u8]) -> Vec<u8> {
    let mut path = dir.to_vec();
    path.push(b'/');
    path.extend_from_slice(stage);
    path
}

/// A `touch -d @` or pax time from seconds and nanoseconds (st_mtime, st_mtime_nsec: the
/// nanoseconds count up from the seconds, before 1970 too).
fn time(secs: i64, nanos: i64) -> String {
    match (secs, nanos) {
        (secs, nanos) if secs < 0 && nanos > 0 => {
            format!("-{}.{:09}", -(secs + 1), 1_000_000_000 - nanos)
        }
        (secs, nanos) => format!("{secs}.{nanos:09}"),
    }
}

/// `printf` of a failure line for the client: `F<TAB>relative<TAB>reason`.
fn report_failure(relative: &Path, reason: &str) -> Vec<u8> {
    let mut line = b"printf 'F\\t%s\\t%s\\n' ".to_vec();
    line.extend(quote_bytes(relative.as_os_str().as_bytes()));
    line.push(b' ');
    line.extend(quote_bytes(reason.as_bytes()));
    line
}

/// How a file went.
enum Sent {
    /// All of it, as the sink announced.
    Whole { changed: bool },
    /// Nothing of it was sent (it could not be opened).
    Not(String),
    /// Sent padded after a read failed: removed before the renames.
    Torn(String),
}

/// A connection's stream as its reader sees it: where its sink is in the tree, and records
/// gathered into messages of up to `--bs` bytes for its task.
struct Stream {
    tx: channel::Sender<Vec<u8>>,
    pending: Vec<u8>,
    block: usize,
    /// The sink is GNU tar's: an archive, no directory records.
    tar: bool,
    /// The directories an SCP sink is in, below its own.
    at: Vec<Vec<u8>>,
}

impl Stream {
    fn new(tx: channel::Sender<Vec<u8>>, block: usize, tar: bool) -> Stream {
        Stream {
            tx,
            pending: Vec::with_capacity(block),
            block,
            tar,
            at: Vec::new(),
        }
    }

    /// Walks the sink to `dirs` with `E` and `D` records (a directory is made as it is
    /// entered; its real mode comes at the end).
    fn enter(&mut self, dirs: &[Vec<u8>]) -> Result<()> {
        let common = self.at.iter().zip(dirs).take_while(|(a, b)| a == b).count();
        while self.at.len() > common {
            self.at.pop();
            self.record(b"E\n")?;
        }
        for dir in &dirs[common..] {
            let mut line = b"D0700 0 ".to_vec();
            line.extend_from_slice(dir);
            line.push(b'\n');
            self.record(&line)?;
            self.at.push(dir.clone());
        }
        Ok(())
    }

    fn record(&mut self, bytes: &[u8]) -> Result<()> {
        self.data(bytes)
    }

    /// Reads up to `left` bytes of `file` straight into the message under way (never past
    /// `--bs`, so the message is not reallocated): how many, and how the read ended (Ok with 0
    /// bytes: the file ended). Errors: the stream is gone.
    fn read_from(
        &mut self,
        file: &mut std::fs::File,
        left: u64,
    ) -> Result<(usize, io::Result<()>)> {
        let before = self.pending.len();
        let room = (self.block - before) as u64;
        // read_to_end of a Take: no zero-filled buffer, and Interrupted is retried.
        let read = file
            .by_ref()
            .take(left.min(room))
            .read_to_end(&mut self.pending);
        let n = self.pending.len() - before;
        if self.pending.len() >= self.block {
            self.flush()?;
        }
        Ok((n, read.map(drop)))
    }

    /// `count` zeros (a torn file's padding), a message at a time.
    fn zeros(&mut self, mut count: u64) -> Result<()> {
        while count > 0 {
            let n = count.min((self.block - self.pending.len()) as u64);
            self.pending.resize(self.pending.len() + n as usize, 0);
            count -= n;
            if self.pending.len() >= self.block {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> Result<()> {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= self.block {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let message = std::mem::replace(&mut self.pending, Vec::with_capacity(self.block));
        self.tx
            .blocking_send(message)
            .map_err(|_| anyhow!("the stream ended"))
    }

    /// Leaves every directory, or ends the archive (two zero blocks: GNU tar ends there); the
    /// sink then ends at the close of its input.
    fn close(mut self) -> Result<()> {
        match self.tar {
            true => self.data(&[0; 2 * TAR_BLOCK])?,
            false => self.enter(&[])?,
        }
        self.flush()
    }
}

/// A tar block, bytes: headers and the padding of each file's bytes come in these.
const TAR_BLOCK: usize = 512;

/// Zeros after `size` bytes of a file to its archive's next block.
fn tar_padding(size: u64) -> usize {
    ((TAR_BLOCK as u64 - size % TAR_BLOCK as u64) % TAR_BLOCK as u64) as usize
}

/// A regular file's headers in a POSIX (pax) archive: an extended header with its path (any
/// length; GNU tar keeps a name's bytes as they are where they are not UTF-8) and times to the
/// nanosecond, then the ustar header
/// with its mode and size (its name there only the path's tail, which the extended one
/// overrides).
fn tar_file_header(path: &[u8], meta: &Metadata) -> Vec<u8> {
    let mut records = Vec::new();
    pax_record(&mut records, "path", path);
    let mtime = time(meta.mtime(), meta.mtime_nsec());
    pax_record(&mut records, "mtime", mtime.as_bytes());
    let atime = time(meta.atime(), meta.atime_nsec());
    pax_record(&mut records, "atime", atime.as_bytes());
    let mut out = Vec::with_capacity(3 * TAR_BLOCK + records.len());
    let extended = ustar_header(
        b"././@PaxHeader",
        tar::EntryType::XHeader,
        0o644,
        records.len() as u64,
        0,
    );
    out.extend_from_slice(extended.as_bytes());
    out.extend_from_slice(&records);
    out.resize(out.len() + tar_padding(records.len() as u64), 0);
    let file = ustar_header(
        path,
        tar::EntryType::Regular,
        tree::mode(meta),
        meta.len(),
        meta.mtime().max(0) as u64,
    );
    out.extend_from_slice(file.as_bytes());
    out
}

/// A ustar header; `name` cut to its last 99 bytes.
fn ustar_header(
    name: &[u8],
    kind: tar::EntryType,
    mode: u32,
    size: u64,
    mtime: u64,
) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    let name = &name[name.len().saturating_sub(99)..];
    if let Some(ustar) = header.as_ustar_mut() {
        ustar.name[..name.len()].copy_from_slice(name);
    }
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(mtime);
    header.set_uid(0);
    header.set_gid(0);
    header.set_cksum();
    header
}

/// Appends the pax record `LEN KEY=VALUE\n`, LEN counting the whole record, itself included.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let body = key.len() + value.len() + 3;
    let mut len = body + body.to_string().len();
    if len.to_string().len() > body.to_string().len() {
        len += 1;
    }
    out.extend_from_slice(format!("{len} {key}=").as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Downloads the tree `source` on the server into the local `destination`, through one
/// `tar -c` on the far side (stock tools: SCP's source follows links, which a tree copy never
/// does); each entry lands as a local copy's do (partial name, fsync per policy, rename), and the
/// directories get their modes and times at the end from a `find -depth` listing, deepest
/// first. Memory: one tar block and one landing buffer, whatever the number of files.
pub(super) fn download(
    ssh: &Ssh,
    plan: &TreePlan,
    source: &str,
    destination: &Path,
    watcher: &dyn Watcher,
) -> Result<TreeReport> {
    let (connection, source, totals) = ssh.runtime.block_on(async {
        let mut connections = ssh.connect(1).await?;
        let connection = connections.remove(0);
        let source = ssh.expand_home(&connection.handle, source).await?;
        let source = match source.trim_end_matches('/') {
            "" if source.starts_with('/') => "/".to_string(),
            "" => ".".to_string(),
            trimmed => trimmed.to_string(),
        };
        let is_dir = Exec::holds(
            &connection.handle,
            RemoteCommand::IsDir {
                path: source.clone(),
            },
        )
        .await?;
        if !is_dir {
            bail!(
                "{}:{source} is not a directory (or cannot be reached): copy -r copies a directory tree; leave out -r to copy a file",
                ssh.label()
            );
        }
        let said = Exec::run(
            &connection.handle,
            RemoteCommand::TreeTotals {
                dir: source.clone(),
            },
        )
        .await
        .unwrap_or_default();
        let mut words = said.split_whitespace().map(|w| w.parse::<u64>().unwrap_or(0));
        let totals = Totals {
            files: words.next().unwrap_or(0),
            bytes: words.next().unwrap_or(0),
            ..Totals::default()
        };
        Ok::<_, anyhow::Error>((connection, source, totals))
    })?;
    let name = match source.rsplit('/').next() {
        Some(name) if !name.is_empty() && name != "." && name != ".." => name.to_string(),
        _ => bail!(
            "{}:{source} has no name to copy under: name the directory (HOST:dir, not HOST:~ or HOST:.)",
            ssh.label()
        ),
    };
    let target = crate::transport::tree::landing_target(destination, std::ffi::OsStr::new(&name))?;
    let rules = crate::transport::tree::Rules::of(plan);
    let label = format!("{}:{source}", ssh.label());
    let (bytes, files) = (Counter::new(), Counter::new());
    watcher.begin_files("copy", totals.bytes, &bytes, totals.files, &files);
    let cpu = CpuClock::start();
    let tar = ssh.runtime.block_on(Exec::start(
        &connection.handle,
        RemoteCommand::TarSource {
            dir: source.clone(),
        },
    ));
    let landed = tar.and_then(|tar| {
        let (landed, elapsed, intervals) = crate::transport::tree::sampled(&bytes, || {
            let landed = land_archive(
                ssh,
                &connection,
                tar,
                &target,
                rules,
                plan.block,
                &bytes,
                &files,
            );
            landed.and_then(|mut landed| {
                finish_downloaded_dirs(ssh, &connection, &source, &target, rules, &mut landed)?;
                Ok(landed)
            })
        });
        landed.map(|landed| (landed, elapsed, intervals))
    });
    watcher.end();
    let (landed, elapsed, intervals) = match landed {
        Ok(done) => done,
        Err(err) if err.is::<interrupt::Interrupted>() => return Err(err),
        Err(err) => return Err(err.context(format!("copy -r from {label} failed"))),
    };
    let conditions = Conditions {
        fsync_included: true,
        block_size: Some(plan.block as u64),
        path: Some(TransportKind::Ssh),
        streams: Some(1),
        cipher: Some(connection.cipher.clone()),
        mount: Some(crate::mounts::facts(&target)),
        ..Conditions::default()
    };
    let measurement = Measurement::new(
        Workload::Copy,
        landed.landed.bytes,
        elapsed,
        conditions,
        intervals,
    );
    let mut warnings = Vec::new();
    warnings.extend(crate::transport::loopback_warning(connection.peer_addr));
    Ok(TreeReport {
        source: label,
        destination: target.display().to_string(),
        path: TransportKind::Ssh,
        files_per_sec: crate::transport::tree::per_sec(landed.landed.files, elapsed),
        measurement,
        landed: landed.landed,
        fsync: plan.fsync,
        workers: 1,
        verified: false,
        failed: landed.failed,
        changed: Listed::default(),
        skipped: landed.skipped,
        cpu: cpu.finish(),
        remote_cpu: None,
        far_tool: Some("tar -c".to_string()),
        warnings,
    })
}

/// What a download landed, and what it did not.
#[derive(Default)]
struct Downloaded {
    landed: Totals,
    failed: Listed,
    skipped: Listed,
}

/// A far command's standard output as a blocking reader: a task of the connection's thread
/// reads it into a bounded queue of blocks.
struct OutputReader {
    blocks: channel::Receiver<io::Result<Vec<u8>>>,
    pending: Vec<u8>,
    at: usize,
    done: bool,
}

impl OutputReader {
    /// Starts the task; it ends with the output (its [`Exec`] comes back through the handle).
    fn start(
        connection: &SshConnection,
        mut exec: Exec,
    ) -> (OutputReader, tokio::task::JoinHandle<Exec>) {
        let (tx, blocks) = channel::channel::<io::Result<Vec<u8>>>(QUEUED * 4);
        let task = connection.worker.runtime().spawn(async move {
            loop {
                let mut block = vec![0u8; 256 << 10];
                match stall_bounded("from tar on the far side", exec.output.read(&mut block)).await
                {
                    Ok(0) => break,
                    Ok(n) => {
                        block.truncate(n);
                        if tx.send(Ok(block)).await.is_err() {
                            break;
                        }
                    }
                    Err(err) => {
                        let _ = tx.send(Err(err)).await;
                        break;
                    }
                }
            }
            exec
        });
        (
            OutputReader {
                blocks,
                pending: Vec::new(),
                at: 0,
                done: false,
            },
            task,
        )
    }
}

impl Read for OutputReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.pending.len() {
            if self.done {
                return Ok(0);
            }
            match self.blocks.blocking_recv() {
                Some(Ok(block)) => (self.pending, self.at) = (block, 0),
                Some(Err(err)) => return Err(err),
                None => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// One file of a tar stream, as a landing reads it.
struct TarFile<'a, R: Read> {
    entry: tar::Entry<'a, R>,
    path: String,
}

impl<R: Read> Read for TarFile<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.entry.read(buf)
    }
}

impl<R: Read> crate::transport::tree::FileSource for TarFile<'_, R> {
    fn end(&mut self) -> Result<crate::transport::tree::SourceEnd> {
        Ok(crate::transport::tree::SourceEnd::default())
    }

    fn read_failed(&self, err: io::Error) -> anyhow::Error {
        anyhow!("the far tar stream broke in {}: {err}", self.path)
    }
}

/// A tar entry's mode and times; the times from its POSIX extended header when it has them
/// (to the nanosecond), else the header's whole seconds.
fn attributes<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<tree::Attributes> {
    let header = entry.header();
    let mode = header.mode().unwrap_or(0o644) & 0o7777;
    let seconds = header.mtime().unwrap_or(0) as i64;
    let (mut mtime, mut atime) = ((seconds, 0u32), (seconds, 0u32));
    if let Some(extensions) = entry.pax_extensions()? {
        for extension in extensions.flatten() {
            let value = extension.value().unwrap_or_default();
            match extension.key().unwrap_or_default() {
                "mtime" => mtime = parse_time(value).unwrap_or(mtime),
                "atime" => atime = parse_time(value).unwrap_or(atime),
                _ => {}
            }
        }
    }
    Ok(tree::Attributes { mode, atime, mtime })
}

/// `SECONDS[.FRACTION]` (tar's and find's `%T@`) as seconds and nanoseconds.
fn parse_time(text: &str) -> Option<(i64, u32)> {
    let (secs, fraction) = text.split_once('.').unwrap_or((text, ""));
    let secs: i64 = secs.parse().ok()?;
    let digits: String = fraction.chars().take(9).collect();
    let nanos = match digits.is_empty() {
        true => 0,
        false => format!("{digits:0<9}").parse().ok()?,
    };
    Some((secs, nanos))
}

/// Lands every entry of the far `tar -c` stream below `target` (made here); a far tar that
/// could not read an entry says so on its standard error, and those entries are listed.
#[allow(clippy::too_many_arguments)]
fn land_archive(
    ssh: &Ssh,
    connection: &SshConnection,
    tar: Exec,
    target: &Path,
    rules: crate::transport::tree::Rules,
    block: usize,
    bytes: &Counter,
    files: &Counter,
) -> Result<Downloaded> {
    use crate::transport::tree::stream::{checked_relative, safe_parents};
    use crate::transport::tree::{land_file, land_symlink, make_dir, may_replace};
    let (reader, task) = OutputReader::start(connection, tar);
    let mut done = Downloaded::default();
    let mut buf = vec![0u8; block.clamp(4096, 4 << 20)];
    let mut checked = PathBuf::new();
    let mut archive = tar::Archive::new(reader);
    let landed: Result<()> = (|| {
        for entry in archive.entries()? {
            interrupt::check()?;
            let mut entry = entry.map_err(|err| anyhow!("reading the far tar stream: {err}"))?;
            let raw = entry.path_bytes().into_owned();
            let raw = raw.strip_prefix(b"./").unwrap_or(&raw);
            let raw: &[u8] = if raw == b"." { b"" } else { raw };
            let raw = raw.strip_suffix(b"/").unwrap_or(raw);
            let relative = checked_relative(raw, true)?;
            let path = crate::transport::tree::join(target, &relative);
            let kind = entry.header().entry_type();
            let kept = attributes(&mut entry)?;
            if relative.as_os_str().is_empty() {
                make_dir(target)?;
                continue;
            }
            if let Err(err) = safe_parents(target, &relative, true, &mut checked) {
                done.failed.add(&path, format!("{err:#}"));
                continue;
            }
            let landed = match kind {
                tar::EntryType::Directory => make_dir(&path).map(|()| None),
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let size = entry.size();
                    let mut source = TarFile {
                        entry,
                        path: path.display().to_string(),
                    };
                    may_replace(&path, rules.force)
                        .and_then(|()| land_file(&path, &kept, rules, &mut source, &mut buf, bytes))
                        .map(|_| {
                            files.add(1);
                            done.landed.files += 1;
                            done.landed.bytes += size;
                            None
                        })
                }
                tar::EntryType::Symlink => {
                    let link = entry
                        .link_name_bytes()
                        .map(|link| PathBuf::from(std::ffi::OsStr::from_bytes(&link)))
                        .ok_or_else(|| anyhow!("a link without a target"))?;
                    land_symlink(&path, &link, &kept, rules.force).map(|()| {
                        done.landed.symlinks += 1;
                        None
                    })
                }
                _ => Ok(Some(
                    "not a file, directory or link (a fifo, socket or device)".to_string(),
                )),
            };
            match landed {
                Ok(None) => {}
                Ok(Some(reason)) => done.skipped.add(&path, reason),
                Err(err) if err.is::<interrupt::Interrupted>() => return Err(err),
                Err(err) => done.failed.add(&path, format!("{err:#}")),
            }
        }
        Ok(())
    })();
    drop(archive);
    let mut tar = ssh
        .runtime
        .block_on(task)
        .map_err(|err| anyhow!("the tar stream's task failed: {err}"))?;
    landed?;
    let exit = ssh.runtime.block_on(tar.output.finish());
    // GNU tar lists what it could not read and exits 2 at the end; the rest came through.
    let said = tar.output.stderr();
    let mut listed = false;
    for line in said.lines() {
        let Some(rest) = line.strip_prefix("tar: ") else {
            continue;
        };
        if rest.starts_with("Exiting with failure status") {
            continue;
        }
        let (path, reason) = rest.split_once(": ").unwrap_or((rest, "failed"));
        let path = path.strip_prefix("./").unwrap_or(path);
        done.failed
            .add(&target.join(path), format!("the far tar: {reason}"));
        listed = true;
    }
    if !listed {
        tar.output.check(&tar.command, exit)?;
    }
    Ok(done)
}

/// Gives each landed directory its far mode and times, deepest first, from `find -depth`; with
/// `--fsync end`, one syncfs at the end.
fn finish_downloaded_dirs(
    ssh: &Ssh,
    connection: &SshConnection,
    source: &str,
    target: &Path,
    rules: crate::transport::tree::Rules,
    done: &mut Downloaded,
) -> Result<()> {
    use crate::transport::tree::stream::{checked_relative, safe_parents};
    let find = ssh.runtime.block_on(Exec::start(
        &connection.handle,
        RemoteCommand::DirTimes {
            dir: source.to_string(),
        },
    ))?;
    let (reader, task) = OutputReader::start(connection, find);
    let mut checked = PathBuf::new();
    let mut reader = io::BufReader::new(reader);
    let mut record = Vec::new();
    loop {
        record.clear();
        if io::BufRead::read_until(&mut reader, 0, &mut record)? == 0 {
            break;
        }
        let record = record.strip_suffix(&[0]).unwrap_or(&record);
        let mut fields = record.splitn(4, |&b| b == b' ');
        let (Some(mode), Some(mtime), Some(atime), Some(relative)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            bail!(
                "the far find printed a line that is not a directory's: {:?}",
                String::from_utf8_lossy(record)
            );
        };
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let kept = tree::Attributes {
            mode: u32::from_str_radix(&text(mode), 8).unwrap_or(0o755),
            mtime: parse_time(&text(mtime)).unwrap_or((0, 0)),
            atime: parse_time(&text(atime)).unwrap_or((0, 0)),
        };
        let relative = checked_relative(relative, true)?;
        let path = crate::transport::tree::join(target, &relative);
        if !std::fs::symlink_metadata(&path).is_ok_and(|meta| meta.is_dir()) {
            continue;
        }
        let finished = safe_parents(target, &relative, false, &mut checked)
            .and_then(|()| crate::transport::tree::finish_dir(&path, &kept, rules.fsync));
        match finished {
            Ok(true) => done.landed.directories += 1,
            Ok(false) => {}
            Err(err) => done.failed.add(&path, format!("{err:#}")),
        }
    }
    let mut find = ssh
        .runtime
        .block_on(task)
        .map_err(|err| anyhow!("the listing task failed: {err}"))?;
    let exit = ssh.runtime.block_on(find.output.finish());
    find.output.check(&find.command, exit)?;
    if rules.fsync == FsyncPolicy::End
        && let Err(err) = crate::transport::tree::sync_end(target)
    {
        done.failed.add(target, format!("{err:#}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn pax_records_count_their_own_length() {
        for value in [&b""[..], b"x", b"1234567", &[b'y'; 95], &[b'z'; 994]] {
            let mut out = Vec::new();
            pax_record(&mut out, "path", value);
            let (len, _) =
                std::str::from_utf8(&out[..out.iter().position(|&b| b == b' ').unwrap()])
                    .map(|n| (n.parse::<usize>().unwrap(), ()))
                    .unwrap();
            assert_eq!(len, out.len(), "{}", String::from_utf8_lossy(&out));
            assert_eq!(out.last(), Some(&b'\n'));
        }
    }

    #[test]
    fn a_file_header_reads_back_with_its_long_path_mode_size_and_nanosecond_time() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::File::create(&file)
            .unwrap()
            .write_all(b"hello")
            .unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        let path = format!("/far/{}/{}/name", "d".repeat(120), "e".repeat(60));
        let mut archive = tar_file_header(path.as_bytes(), &meta);
        archive.extend_from_slice(b"hello");
        archive.resize(archive.len() + tar_padding(5), 0);
        archive.extend_from_slice(&[0; 2 * TAR_BLOCK]);
        let mut read = tar::Archive::new(&archive[..]);
        let mut entries = read.entries().unwrap();
        let mut entry = entries.next().unwrap().unwrap();
        assert_eq!(entry.path_bytes().as_ref(), path.as_bytes());
        assert_eq!(entry.header().size().unwrap(), 5);
        assert_eq!(entry.header().mode().unwrap(), tree::mode(&meta));
        let mtime = entry
            .pax_extensions()
            .unwrap()
            .unwrap()
            .flatten()
            .find(|e| e.key() == Ok("mtime"))
            .map(|e| e.value().unwrap().to_string())
            .unwrap();
        assert_eq!(mtime, time(meta.mtime(), meta.mtime_nsec()));
        let mut body = Vec::new();
        entry.read_to_end(&mut body).unwrap();
        assert_eq!(body, b"hello");
        drop(entry);
        assert!(entries.next().is_none());
    }

    #[test]
    fn times_before_1970_keep_their_fraction_below_the_second() {
        assert_eq!(time(-2, 500_000_000), "-1.500000000");
        assert_eq!(time(-2, 0), "-2.000000000");
        assert_eq!(time(1_700_000_000, 5), "1700000000.000000005");
    }
}
