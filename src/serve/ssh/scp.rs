//! The SCP protocol's two ends as OpenSSH's `scp -O` and the SSH path's client speak it:
//! the sink (`scp -t`), which lands each file under a temporary name and renames it once
//! complete, and the source (`scp -f`).

use std::fs::FileTimes;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use russh::server::Msg;
use russh::{ChannelReadHalf, ChannelWriteHalf};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::commands::{Done, Told, shown};
use super::disk::{DiskWriter, send_range};
use crate::file::{self, Landing};
use crate::serve::Shared;
use crate::serve::session::hide_root;
use crate::transport::ssh::scp::{FileHeader, Status, read_line, read_status, write_status};
use crate::units::format_bytes;

/// Sends an SCP status on the channel.
async fn say(write: &ChannelWriteHalf<Msg>, status: &Status) -> Result<()> {
    let mut line = Vec::new();
    write_status(&mut line, status).await?;
    write.data_bytes(line).await?;
    Ok(())
}

/// Tells the client an SCP step failed (status 2 and the message), and marks the error as told.
async fn refuse_scp(
    shared: &Shared,
    write: &ChannelWriteHalf<Msg>,
    err: anyhow::Error,
) -> anyhow::Error {
    let message = hide_root(&format!("{err:#}"), shared);
    let _ = say(write, &Status::Fatal(message)).await;
    anyhow::Error::new(Told(err))
}

/// `scp -t PATH`: the SCP sink. Each `C` line's file is written to a temporary name beside its
/// destination and renamed only once complete and fsynced; a directory destination keeps the
/// header's name. `T` lines (scp -p) set the times of the next file.
pub(super) async fn scp_sink(
    shared: &Shared,
    target: &str,
    read: &mut ChannelReadHalf,
    write: &ChannelWriteHalf<Msg>,
) -> Result<Done> {
    let mut input = read.make_reader();
    say(write, &Status::Ok).await?;
    let (mut bytes, mut times) = (0u64, None);
    loop {
        let mut kind = [0u8];
        // The client closing its side after the last file is the normal end.
        if input
            .read(&mut kind)
            .await
            .context("reading from the client")?
            == 0
        {
            break;
        }
        match kind[0] {
            b'T' => {
                let line = read_line(&mut input).await?;
                match parse_times(&line) {
                    Some(parsed) => times = Some(parsed),
                    None => {
                        let err = anyhow!("a malformed SCP time line: {:?}", shown(&line));
                        return Err(refuse_scp(shared, write, err).await);
                    }
                }
                say(write, &Status::Ok).await?;
            }
            b'C' => {
                let line = read_line(&mut input).await?;
                let header = match FileHeader::parse(&format!("C{line}")) {
                    Ok(header) => header,
                    Err(err) => return Err(refuse_scp(shared, write, err).await),
                };
                bytes +=
                    receive_file(shared, target, &header, times.take(), &mut input, write).await?;
            }
            b'D' | b'E' => {
                let err = anyhow!("directories (scp -r) are not served: copy files one by one");
                return Err(refuse_scp(shared, write, err).await);
            }
            // The client could not read one of its files: it says so and goes on, or stops.
            code @ (1 | 2) => {
                let message = read_line(&mut input).await?;
                if code == 2 {
                    return Err(anyhow::Error::new(Told(anyhow!(
                        "the client gave up: {}",
                        shown(&message)
                    ))));
                }
            }
            other => {
                let err = anyhow!("a byte {other:#04x} where an SCP line was expected");
                return Err(refuse_scp(shared, write, err).await);
            }
        }
    }
    Ok(Done::moved(bytes))
}

/// `T<mtime> 0 <atime> 0` (seconds since the epoch).
fn parse_times(line: &str) -> Option<FileTimes> {
    let fields: Vec<&str> = line.split(' ').collect();
    let [mtime, "0", atime, "0"] = fields.as_slice() else {
        return None;
    };
    let at = |secs: &str| Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs.parse().ok()?));
    Some(
        FileTimes::new()
            .set_modified(at(mtime)?)
            .set_accessed(at(atime)?),
    )
}

/// One file of the SCP sink: checks, go-ahead, data, the client's trailing status, fsync,
/// rename, our final status. Returns the bytes written.
async fn receive_file(
    shared: &Shared,
    target: &str,
    header: &FileHeader,
    times: Option<FileTimes>,
    input: &mut (impl AsyncRead + Unpin),
    write: &ChannelWriteHalf<Msg>,
) -> Result<u64> {
    let prepared = prepare_landing(shared, target, header);
    let landing = match prepared {
        Ok(landing) => landing,
        Err(err) => return Err(refuse_scp(shared, write, err).await),
    };
    let mut writer = match DiskWriter::start(&landing.file, landing.direct, &landing.temp_path, 0) {
        Ok(writer) => writer,
        Err(err) => return Err(refuse_scp(shared, write, err).await),
    };
    say(write, &Status::Ok).await?;
    // From here the client is busy sending and reads no status until the end: errors go to
    // stderr, and the dropped landing removes the temporary file.
    let mut left = header.size;
    while left > 0 {
        let spare = writer.spare();
        let want = spare.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = input
            .read(&mut spare[..want])
            .await
            .context("reading from the client")?;
        if n == 0 {
            bail!(
                "the client stopped after {} of {} bytes",
                header.size - left,
                header.size
            );
        }
        writer.advance(n).await?;
        left -= n as u64;
    }
    writer.finish().await?;
    match read_status(input)
        .await
        .context("reading the client's end of file")?
    {
        Status::Ok => {}
        Status::Warning(message) | Status::Fatal(message) => {
            return Err(anyhow::Error::new(Told(anyhow!(
                "the client could not read its file: {}",
                shown(&message)
            ))));
        }
    }
    let synced = tokio::task::block_in_place(|| -> Result<()> {
        landing.file.sync_all().context("fsync")?;
        if let Some(times) = times {
            landing
                .file
                .set_times(times)
                .context("setting the file's times")?;
        }
        landing.commit()
    });
    if let Err(err) = synced {
        return Err(refuse_scp(shared, write, err).await);
    }
    say(write, &Status::Ok).await?;
    Ok(header.size)
}

/// Where an uploaded file lands, checked before any byte is accepted: confined to the root,
/// within `--max-bytes` and the free space.
fn prepare_landing(shared: &Shared, target: &str, header: &FileHeader) -> Result<Landing> {
    let requested = if shared.root.is_dir(target) {
        format!("{}/{}", target.trim_end_matches('/'), header.name)
    } else {
        target.to_string()
    };
    let path = shared.root.new_file(&requested)?;
    if let Some(max) = shared.max_bytes
        && header.size > max
    {
        bail!(
            "{} is more than this server accepts (--max-bytes {})",
            format_bytes(header.size),
            format_bytes(max)
        );
    }
    // Like scp, an existing file is replaced; it is removed first, so a failed upload leaves
    // nothing under the final name.
    Landing::prepare(&path, header.size, true, true)
}

/// `scp -f PATH`: the SCP source. Sends `C0644 SIZE NAME`, the data and a 0 byte, waiting for
/// the client's status after the header and after the data.
pub(super) async fn scp_source(
    shared: &Shared,
    requested: &str,
    read: &mut ChannelReadHalf,
    write: &ChannelWriteHalf<Msg>,
) -> Result<Done> {
    let mut input = read.make_reader();
    expect_ready(&mut input).await?;
    let opened = (|| -> Result<_> {
        let path = shared.root.existing_file(requested)?;
        let (handle, direct) = file::open_read(&path, true)?;
        let size = handle.metadata()?.len();
        // The name the client asked for: OpenSSH's scp checks the header against it.
        let name = Path::new(requested)
            .file_name()
            .and_then(|name| name.to_str())
            .ok_or_else(|| anyhow!("'{requested}' does not name a file"))?
            .to_string();
        let line = FileHeader {
            mode: 0o644,
            size,
            name,
        }
        .line()?;
        Ok((path, handle, direct, size, line))
    })();
    let (path, handle, direct, size, line) = match opened {
        Ok(opened) => opened,
        Err(err) => return Err(refuse_scp(shared, write, err).await),
    };
    write.data_bytes(line.into_bytes()).await?;
    expect_ready(&mut input).await?;
    send_range(&handle, direct, &path, 0, size, write).await?;
    write.data_bytes(&[0u8][..]).await?;
    expect_ready(&mut input).await?;
    Ok(Done::moved(size))
}

/// Waits for the client's 0 status; its refusal ends the command (it printed why already).
async fn expect_ready(input: &mut (impl AsyncRead + Unpin)) -> Result<()> {
    match read_status(input).await.context("waiting for the client")? {
        Status::Ok => Ok(()),
        Status::Warning(message) | Status::Fatal(message) => Err(anyhow::Error::new(Told(
            anyhow!("the client refused: {}", shown(&message)),
        ))),
    }
}
