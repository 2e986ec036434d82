//! `copy -r` against serve: a tree received into the root, or one of its trees sent.
//!
//! The records and their landing are `transport::tree::stream`'s, the same code the client
//! runs the other way; this file checks the request against the root, joins the data
//! connections, and runs the blocking landing or sending off the runtime's threads. Every path
//! from the wire stays below the tree's root there, and no link on the way is followed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Result, anyhow, bail};
use tokio::net::TcpStream;

use super::Shared;
use super::session::{hide_root, join_streams};
use crate::control::{Connection, Reply, TreeDone, TreeRequest};
use crate::file::tree::{self, Listed, Totals};
use crate::interrupt::Interrupted;
use crate::measure::{Counter, CpuClock};
use crate::transport::tree::stream::{self, SendOptions, Wire};
use crate::transport::tree::{Rules, join};
use crate::units::format_bytes;
use crate::warning::Warning;

/// Smallest and largest block a client may ask for.
const BLOCK_RANGE: std::ops::RangeInclusive<u32> = 4096..=(64 << 20);

/// Receives a tree into the root: inside `path` under the client's name when `path` is a
/// directory, else as `path` (whose directory must exist).
pub(super) async fn receive(
    shared: &Shared,
    control: &mut Connection,
    request: TreeRequest,
) -> Result<Reply> {
    check_block(&request)?;
    if let (Some(max), Some(totals)) = (shared.max_bytes, request.totals)
        && totals.bytes > max
    {
        bail!(
            "a tree of {} is more than this server accepts (--max-bytes {})",
            format_bytes(totals.bytes),
            format_bytes(max)
        );
    }
    let name = request.name.as_deref().unwrap_or_default();
    let plain = stream::checked_relative(name.as_bytes(), false)
        .is_ok_and(|name| name.components().count() == 1);
    if !plain {
        bail!("'{name}' is not a plain name for the tree");
    }
    let requested = match shared.root.is_dir(&request.path) {
        true => format!("{}/{name}", request.path.trim_end_matches('/')),
        false => request.path.clone(),
    };
    let target = shared.root.new_file(&requested)?;
    if let Ok(meta) = std::fs::symlink_metadata(&target)
        && !meta.is_dir()
    {
        bail!(
            "'{requested}' exists on the server and is not a directory: a tree lands in a directory or under a new name"
        );
    }
    let shown = relative_to_root(shared, &target);
    let streams = join_streams(shared, control, request.streams, None, |session, port| {
        Reply::TreeReady {
            session,
            port,
            path: shown.display().to_string(),
            name: None,
            totals: None,
        }
    })
    .await?;
    let cpu = CpuClock::start();
    let wires = wires(shared, control, streams)?;
    let rules = Rules {
        force: request.force,
        fsync: request.fsync,
        verify: request.verify,
    };
    let block = request.block as usize;
    // The client's totals are its word; the bytes that arrive are held to the limit too.
    let limit = shared.max_bytes;
    let warnings: Vec<Warning> = crate::file::is_tmpfs(&target)
        .then(|| Warning::MemoryFileSystem {
            path: shown.clone(),
        })
        .into_iter()
        .collect();
    let received = tokio::task::spawn_blocking(move || {
        let named = |relative: &Path| join(&shown, relative).display().to_string();
        let (bytes, files) = (Counter::new(), Counter::new());
        stream::receive(&target, wires, rules, limit, block, &bytes, &files, &named)
    })
    .await
    .map_err(|err| anyhow!("the landing failed: {err}"))?
    .map_err(|err| failure(err, shared))?;
    Ok(Reply::TreeDone(TreeDone {
        landed: received.landed,
        failed: hidden(received.failed, shared),
        changed: received.changed,
        skipped: Listed::default(),
        cpu: cpu.finish(),
        warnings,
    }))
}

/// Sends the tree at `path` (a directory inside the root).
pub(super) async fn send(
    shared: &Shared,
    control: &mut Connection,
    request: TreeRequest,
) -> Result<Reply> {
    check_block(&request)?;
    let source = shared.root.existing_dir(&request.path)?;
    let name = source
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| anyhow!("'{}' has no name to copy under", request.path))?
        .to_string();
    let counted = source.clone();
    let totals: Totals = tokio::task::spawn_blocking(move || tree::count(&counted))
        .await
        .map_err(|err| anyhow!("counting the tree failed: {err}"))?;
    let shown = relative_to_root(shared, &source);
    let path = shown.display().to_string();
    let streams = join_streams(shared, control, request.streams, None, |session, port| {
        Reply::TreeReady {
            session,
            port,
            path,
            name: Some(name),
            totals: Some(totals),
        }
    })
    .await?;
    let cpu = CpuClock::start();
    let wires = wires(shared, control, streams)?;
    let options = SendOptions {
        block: request.block as usize,
        verify: request.verify,
    };
    let sent = tokio::task::spawn_blocking(move || {
        let named = |relative: &Path| join(&shown, relative).display().to_string();
        let (bytes, files) = (Counter::new(), Counter::new());
        stream::send(&source, wires, options, &bytes, &files, &named)
    })
    .await
    .map_err(|err| anyhow!("the sending failed: {err}"))?
    .map_err(|err| failure(err, shared))?;
    Ok(Reply::TreeDone(TreeDone {
        landed: Totals::default(),
        failed: hidden(sent.failed, shared),
        changed: Listed::default(),
        skipped: sent.skipped,
        cpu: cpu.finish(),
        warnings: Vec::new(),
    }))
}

fn check_block(request: &TreeRequest) -> Result<()> {
    if !BLOCK_RANGE.contains(&request.block) {
        bail!(
            "a block of {} bytes is out of range (4K to 64M)",
            request.block
        );
    }
    Ok(())
}

/// `path` (inside the root) as the client names it.
fn relative_to_root(shared: &Shared, path: &Path) -> PathBuf {
    match path.strip_prefix(shared.root.dir()) {
        Ok(relative) if relative.as_os_str().is_empty() => PathBuf::from("."),
        Ok(relative) => relative.to_path_buf(),
        Err(_) => path.to_path_buf(),
    }
}

/// The session's data connections as bounded blocking ones: a silent client fails them after
/// the server's idle timeout.
fn wires(shared: &Shared, control: &Connection, streams: Vec<TcpStream>) -> Result<Vec<Wire>> {
    let peer = control
        .stream()
        .peer_addr()
        .map_or_else(|_| "the client".to_string(), |addr| addr.to_string());
    let abort = Arc::new(AtomicBool::new(false));
    streams
        .into_iter()
        .map(|stream| {
            Ok(Wire::new(
                stream.into_std()?,
                shared.idle_timeout,
                &peer,
                abort.clone(),
            )?)
        })
        .collect()
}

/// Why a tree copy stopped, for the client: the server's root left out, and its own stop said
/// as such (not as the client's Ctrl-C).
fn failure(err: anyhow::Error, shared: &Shared) -> anyhow::Error {
    if err.is::<Interrupted>() {
        return anyhow!("the server is stopping (Ctrl-C or SIGTERM there); what landed stays");
    }
    anyhow!("{}", hide_root(&format!("{err:#}"), shared))
}

/// A list with the server's root left out of its reasons.
fn hidden(mut listed: Listed, shared: &Shared) -> Listed {
    for problem in &mut listed.shown {
        problem.reason = hide_root(&problem.reason, shared);
    }
    listed
}
