//! The remote commands, one function each, and how a command's run is reported: a log line,
//! its exit status, and its error on the channel's stderr. Each function does natively what the
//! shell command of the SSH path's client would do on an OpenSSH server.

use std::fs::OpenOptions;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use russh::server::Msg;
use russh::{Channel, ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::io::AsyncReadExt;

use super::disk::{BLOCK, DiskWriter, send_range};
use super::scp::{scp_sink, scp_source};
use crate::disk::ALIGN;
use crate::file;
use crate::serve::session::hide_root;
use crate::serve::{Root, Shared};
use crate::transport::ssh::command::RemoteCommand;
use crate::units::format_bytes;

/// What `Source` sends: zeros, shared by every channel.
static ZERO_BLOCK: [u8; BLOCK] = [0; BLOCK];
/// Longest command line repeated in a log or error line.
const SHOWN_LINE: usize = 200;

/// A command line as it may be repeated: control characters escaped, long lines cut.
pub(super) fn shown(line: &str) -> String {
    let escaped: String = line.chars().flat_map(char::escape_default).collect();
    match escaped.char_indices().nth(SHOWN_LINE) {
        Some((cut, _)) => format!("{}...", &escaped[..cut]),
        None => escaped,
    }
}

/// How a command ended: its exit status, and the payload bytes it moved.
pub(super) struct Done {
    pub(super) status: u32,
    pub(super) bytes: Option<u64>,
}

impl Done {
    pub(super) fn ok() -> Done {
        Done {
            status: 0,
            bytes: None,
        }
    }

    pub(super) fn moved(bytes: u64) -> Done {
        Done {
            status: 0,
            bytes: Some(bytes),
        }
    }
}

/// A failure the client has been told of already (an SCP status): not repeated on stderr.
#[derive(Debug)]
pub(super) struct Told(pub(super) anyhow::Error);

impl std::fmt::Display for Told {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for Told {}

/// Runs one command on its channel, then sends its exit status and closes the channel. A
/// failure is one line on stderr (unless the SCP protocol carried it) and exit status 1.
pub(super) async fn run_command(
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
        RemoteCommand::WriteThenFinish { temp, path, .. } => {
            format!("writing '{}', landed as '{}'", shown(temp), shown(path))
        }
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
        RemoteCommand::ScpTreeSink { dir } => format!("scp tree upload into '{}'", shown(dir)),
        RemoteCommand::Shell => "a shell".to_string(),
        RemoteCommand::Script { name, .. } => format!("the script {name}"),
        RemoteCommand::IsDir { path } => format!("checking that '{}' is a directory", shown(path)),
        RemoteCommand::HashTool => "finding sha256sum".to_string(),
        RemoteCommand::TreeProbe { destination, .. } => {
            format!("looking at '{}'", shown(destination))
        }
        RemoteCommand::TarSource { dir } => format!("tar of '{}'", shown(dir)),
        RemoteCommand::TarTreeSink => "tar tree upload".to_string(),
        RemoteCommand::TreeTotals { dir } => format!("counting the files of '{}'", shown(dir)),
        RemoteCommand::DirTimes { dir } => format!("listing the directories of '{}'", shown(dir)),
        RemoteCommand::Digest { path, .. } => format!("digest of '{}'", shown(path)),
        RemoteCommand::PrefixDigest { path, len, .. } => {
            format!("digest of the first {len} bytes of '{}'", shown(path))
        }
        RemoteCommand::Flush { temp, .. } => format!("flushing '{}'", shown(temp)),
        RemoteCommand::Rename { temp, path } => {
            format!("renaming '{}' to '{}'", shown(temp), shown(path))
        }
    }
}

/// Does one command on its channel.
async fn execute(
    shared: &Arc<Shared>,
    command: RemoteCommand,
    read: &mut ChannelReadHalf,
    write: &ChannelWriteHalf<Msg>,
) -> Result<Done> {
    match command {
        RemoteCommand::ScpSink { path } => scp_sink(shared, &path, read, write).await,
        RemoteCommand::WriteThenFinish {
            temp,
            size,
            path,
            fresh,
        } => {
            if fresh && absent(&shared.root, &path)?.status != 0 {
                return Ok(Done {
                    status: crate::transport::ssh::command::EXISTS,
                    bytes: None,
                });
            }
            // As the shell's `&&`: the landing runs only after a successful write.
            let done = write_range(shared, &temp, 0, read).await?;
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
            read_range(&shared.root, &path, offset, len, write).await
        }
        RemoteCommand::Size { path } => size(&shared.root, &path, write).await,
        RemoteCommand::Absent { path } => absent(&shared.root, &path),
        RemoteCommand::Finish { temp, size, path } => land(shared, temp, size, path).await,
        RemoteCommand::Discard { path } => discard(&shared.root, &path),
        RemoteCommand::Sink => sink(read).await,
        RemoteCommand::Source => source(read, write).await,
        RemoteCommand::Echo => echo(read, write).await,
        // The client asks xferbench's own server for its disk through the TCP control protocol.
        RemoteCommand::WriteBaseline { .. } => bail!(
            "the disk baseline is not run over SSH by xferbench serve: its TCP control protocol measures its disk"
        ),
        // A tree over SSH needs the far side's GNU tar (or scp -r) and a shell; serve carries
        // trees over TCP.
        RemoteCommand::ScpTreeSink { .. }
        | RemoteCommand::Shell
        | RemoteCommand::IsDir { .. }
        | RemoteCommand::TreeProbe { .. }
        | RemoteCommand::TarSource { .. }
        | RemoteCommand::TarTreeSink
        | RemoteCommand::TreeTotals { .. }
        | RemoteCommand::DirTimes { .. } => {
            bail!(
                "copy -r over ssh needs a stock OpenSSH server (GNU tar or scp, and a shell); to xferbench serve, copy the tree over --via tcp"
            )
        }
        // `parse` never gives it: a script needs a shell, and serve runs none.
        RemoteCommand::Script { .. } => bail!("xferbench serve's SSH server runs no shell"),
        // serve verifies a copy itself over its TCP control protocol.
        RemoteCommand::HashTool
        | RemoteCommand::Digest { .. }
        | RemoteCommand::PrefixDigest { .. }
        | RemoteCommand::Flush { .. }
        | RemoteCommand::Rename { .. } => bail!(
            "--verify over ssh needs a stock OpenSSH server with sha256sum; xferbench serve verifies copies over --via tcp"
        ),
        // No users, no shell: one root, which `~` and `~/x` already stand for.
        RemoteCommand::HomeOf { user } => bail!(
            "'~{user}' needs a shell to expand it and xferbench serve runs none: its paths are relative to its --root; give the path without ~{user}"
        ),
    }
}

/// `dd if=PATH skip=OFFSET count=LEN`: `len` bytes of the file from `offset`, all of them there.
async fn read_range(
    root: &Root,
    path: &str,
    offset: u64,
    len: u64,
    write: &ChannelWriteHalf<Msg>,
) -> Result<Done> {
    let disk_path = root.existing_file(path)?;
    let (handle, direct) = file::open_read(&disk_path, true)?;
    let size = handle.metadata()?.len();
    if offset.checked_add(len).is_none_or(|end| end > size) {
        bail!("'{path}' has {size} bytes: there are no {len} bytes from offset {offset}");
    }
    send_range(&handle, direct, &disk_path, offset, len, write).await?;
    Ok(Done::moved(len))
}

/// `stat -c %s PATH`: the file's size in bytes, on a line.
async fn size(root: &Root, path: &str, write: &ChannelWriteHalf<Msg>) -> Result<Done> {
    let disk_path = root.existing_file(path)?;
    let size = std::fs::metadata(&disk_path)
        .map_err(|err| anyhow!(file::describe_path_error(&disk_path, err)))?
        .len();
    write.data_bytes(format!("{size}\n").into_bytes()).await?;
    Ok(Done::ok())
}

/// `! test -e PATH`: exit status 0 when nothing is there, not even a dangling symlink.
fn absent(root: &Root, path: &str) -> Result<Done> {
    let there = root
        .entry(path)?
        .is_some_and(|entry| entry.symlink_metadata().is_ok());
    Ok(Done {
        status: there.into(),
        bytes: None,
    })
}

/// `rm -f PATH`: removes a file, if there is one; never a directory.
fn discard(root: &Root, path: &str) -> Result<Done> {
    let Some(entry) = root.entry(path)? else {
        return Ok(Done::ok());
    };
    match entry.symlink_metadata() {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => bail!(file::describe_path_error(&entry, err)),
        Ok(meta) if meta.is_dir() => {
            bail!("'{path}' is a directory: only files are removed")
        }
        Ok(_) => std::fs::remove_file(&entry)
            .map_err(|err| anyhow!("cannot remove {}", file::describe_path_error(&entry, err)))?,
    }
    Ok(Done::ok())
}

/// `cat > /dev/null`: counts what the client sends until its EOF.
async fn sink(read: &mut ChannelReadHalf) -> Result<Done> {
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

/// `cat /dev/zero`: zeros until the client closes the channel.
async fn source(read: &mut ChannelReadHalf, write: &ChannelWriteHalf<Msg>) -> Result<Done> {
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

/// `cat`: each message sent back as it comes, until the client's EOF (round trips).
async fn echo(read: &mut ChannelReadHalf, write: &ChannelWriteHalf<Msg>) -> Result<Done> {
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

/// [`finish`] off the runtime's threads: truncate, fsync and rename block on the disk.
async fn land(shared: &Arc<Shared>, temp: String, size: u64, path: String) -> Result<Done> {
    let (root, max_bytes) = (shared.root.clone(), shared.max_bytes);
    tokio::task::spawn_blocking(move || finish(&root, max_bytes, &temp, size, &path))
        .await
        .map_err(|err| anyhow!("the finishing step stopped: {err}"))??;
    Ok(Done::moved(size))
}

/// `truncate -s SIZE TEMP && sync TEMP && mv -f TEMP PATH`, both paths confined to the root.
fn finish(root: &Root, max_bytes: Option<u64>, temp: &str, size: u64, path: &str) -> Result<()> {
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
    if let Some(dir) = final_path.parent() {
        file::sync_dir(dir);
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
