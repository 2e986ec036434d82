//! The human report: short lines, every figure in bytes and bits with the conditions it was taken under.

use std::fmt::Write;

use crate::disk::{Baseline, PlacedMeasurement};
use crate::disk::{FillMode, Generated};
use std::time::Duration;

use crate::measure::{Conditions, CpuUse, Workload};
use crate::mounts::{MountFacts, ShareOptions};
use crate::plan::PathStep;
use crate::transport::memory::{Role, Tick};
use crate::transport::{CopyReport, CpuBoth, Direction, DirectionReport, NetReport};
use crate::units::{Rate, format_block, format_bytes};
use crate::warning::Warning;

/// `xferbench disk`: one line per pass, placed against the classes.
pub fn baseline(result: &Baseline) -> String {
    let mut out = String::new();
    let first = &result.measurements[0].measurement;
    let _ = writeln!(
        out,
        "disk {}: {} {}, {}",
        result.path.display(),
        format_bytes(first.bytes),
        if result.test_file == result.path {
            "read of the file"
        } else {
            "test file"
        },
        conditions(&first.conditions)
    );
    if let Some(facts) = &first.conditions.mount {
        mount_lines(&mut out, "  ", "", facts);
    }
    for placed in &result.measurements {
        let _ = writeln!(out, "{}", measurement_line(placed));
        knee_line(&mut out, &placed.measurement);
    }
    if let Some(probe) = &result.durability {
        durability(&mut out, probe);
    }
    out
}

/// The durability probe: the three writes, and whether stable ones waited for the medium.
fn durability(out: &mut String, probe: &crate::disk::durability::Durability) {
    let _ = writeln!(
        out,
        "durability: {} written three ways, fsync included",
        format_bytes(probe.fsync_at_end.bytes)
    );
    let line = |out: &mut String, name: &str, m: Option<&crate::measure::Measurement>| {
        let figure = m.map_or("refused by the file system".to_string(), |m| {
            let marked = m
                .suspect
                .as_ref()
                .map(|why| format!(" — NOT THE DISK: {why}"))
                .unwrap_or_default();
            format!("{:>22} in {:.2} s{marked}", m.rate().to_string(), m.secs)
        });
        let _ = writeln!(out, "  {name:<26} {figure}");
    };
    line(out, "buffered, fsync at end", Some(&probe.fsync_at_end));
    line(out, "O_DIRECT", probe.direct.as_ref());
    line(out, "O_DSYNC (each write stable)", Some(&probe.dsync));
    let said = match probe.stable_as_fast {
        true => {
            "stable writes ran as fast as the others: nothing waited for the medium (an NFS \
                 async export, a write-back cache), or its cache survives power loss; data may \
                 not be on the disk when a write returns"
        }
        false => "stable writes waited for the medium, as a sync export or a plain disk does",
    };
    let _ = writeln!(
        out,
        "  O_DSYNC ran at {:.2}× fsync-at-end: {said}",
        probe.stable_ratio
    );
}

/// Under a figure whose rate fell for good after a burst: where, and the rate that lasted.
fn knee_line(out: &mut String, m: &crate::measure::Measurement) {
    let Some(knee) = &m.knee else { return };
    let rate = |bytes_per_sec| Rate { bytes_per_sec };
    let _ = writeln!(
        out,
        "    ran at {} for {:.0} s ({}), then {} to the end: a burst that ran out (a write cache \
         filling, an SSD's SLC cache, a link shaper's bucket); plan with the later rate",
        rate(knee.burst_bytes_per_sec),
        knee.at_secs,
        format_bytes(knee.burst_bytes),
        rate(knee.sustained_bytes_per_sec)
    );
}

fn measurement_line(placed: &PlacedMeasurement) -> String {
    let m = &placed.measurement;
    let fsync = if m.conditions.fsync_included {
        ", fsync included"
    } else {
        ""
    };
    if let Some(suspect) = &m.suspect {
        // Not placed against the classes: it is not the disk's figure.
        return format!(
            "  {:<5} {:>22} in {:.2} s{fsync} — NOT THE DISK: {suspect}",
            m.workload.label(),
            m.rate().to_string(),
            m.secs,
        );
    }
    format!(
        "  {:<5} {:>22} in {:.2} s{fsync} — {}, {}",
        m.workload.label(),
        m.rate().to_string(),
        m.secs,
        placed.device_class,
        placed.link_class
    )
}

/// `xferbench gen`: what was made and how fast.
pub fn generated(result: &Generated) -> String {
    let mut out = format!(
        "{}: {} ({} bytes)",
        result.path.display(),
        format_bytes(result.size),
        result.size
    );
    match &result.measurement {
        Some(m) => {
            let _ = write!(
                out,
                ", {} fill at {} in {:.2} s, fsync included ({})",
                fill_name(result.fill),
                m.rate(),
                m.secs,
                conditions(&m.conditions)
            );
        }
        None => out.push_str(", allocated only (not written)"),
    }
    out.push('\n');
    if let Some(m) = &result.measurement {
        knee_line(&mut out, m);
    }
    if let Some(facts) = result
        .measurement
        .as_ref()
        .and_then(|m| m.conditions.mount.as_ref())
    {
        mount_lines(&mut out, "  ", "", facts);
    }
    out
}

/// The file system a figure's file is on, in one line: "on /mnt/nas: nfs4 vers=4.2 from
/// 198.51.100.2:/ (nconnect=1, rsize=wsize=1 MiB, hard) via lab-nas (MTU 1500, speed unknown);
/// kernel 6.1.0-57-amd64", or "on /: ext4 on vda (virtio, non-rotational)".
/// The mount line under a figure, `indent`ed and after `prefix`, and a line for each hint.
fn mount_lines(out: &mut String, indent: &str, prefix: &str, facts: &MountFacts) {
    let _ = writeln!(out, "{indent}{prefix}{}", mount(facts));
    for hint in facts.hints() {
        let _ = writeln!(out, "{indent}  hint: {hint}");
    }
}

pub fn mount(facts: &MountFacts) -> String {
    let mut out = format!("on {}: {}", facts.mount_point.display(), facts.fs_type);
    if let Some(options) = &facts.options {
        if let Some(vers) = &options.vers {
            let _ = write!(out, " vers={vers}");
        }
        let _ = write!(out, " from {}", facts.source);
        let details = share_options(options);
        if !details.is_empty() {
            let _ = write!(out, " ({})", details.join(", "));
        }
    }
    if let Some(interface) = &facts.interface {
        let _ = write!(out, " via {}", interface.name);
        let mut link = Vec::new();
        if let Some(mtu) = interface.mtu {
            link.push(format!("MTU {mtu}"));
        }
        link.push(match interface.speed_mbit_s {
            Some(speed) => format!("{speed} Mb/s"),
            None => "speed unknown".into(),
        });
        let _ = write!(out, " ({})", link.join(", "));
    }
    if let Some(device) = &facts.device {
        let _ = write!(out, " on {} ({}", device.name, device.transport);
        match device.rotational {
            Some(true) => out.push_str(", rotational"),
            Some(false) => out.push_str(", non-rotational"),
            None => {}
        }
        if let Some(model) = &device.model {
            let _ = write!(out, ", {model}");
        }
        out.push(')');
    } else if facts.fs_type == "tmpfs" {
        out.push_str(" (memory)");
    }
    // A share's client is the kernel's: its release is part of the figure.
    if let Some(kernel) = facts.kernel.as_ref().filter(|_| facts.options.is_some()) {
        let _ = write!(out, "; kernel {kernel}");
    }
    out
}

/// "nconnect=1", "rsize=wsize=1 MiB", "cache=none", "no multichannel", "hard", "sync".
fn share_options(options: &ShareOptions) -> Vec<String> {
    let mut parts = Vec::new();
    if let Some(nconnect) = options.nconnect {
        parts.push(format!("nconnect={nconnect}"));
    }
    match (options.rsize, options.wsize) {
        (Some(r), Some(w)) if r == w => parts.push(format!("rsize=wsize={}", format_block(r))),
        (r, w) => {
            parts.extend(r.map(|r| format!("rsize={}", format_block(r))));
            parts.extend(w.map(|w| format!("wsize={}", format_block(w))));
        }
    }
    if let Some(cache) = &options.cache {
        parts.push(format!("cache={cache}"));
    }
    match (options.multichannel, options.max_channels) {
        (Some(true), Some(max)) => parts.push(format!("multichannel, max_channels={max}")),
        (Some(true), None) => parts.push("multichannel".into()),
        (Some(false), _) => parts.push("no multichannel".into()),
        (None, _) => {}
    }
    match options.hard {
        Some(true) => parts.push("hard".into()),
        Some(false) => parts.push("soft".into()),
        None => {}
    }
    if options.sync {
        parts.push("sync".into());
    }
    parts
}

/// "O_DIRECT, 1 MiB blocks, iodepth 16, io_uring".
pub fn conditions(c: &Conditions) -> String {
    let access = |direct: bool| match direct {
        true => "O_DIRECT",
        false => "buffered (page cache)",
    };
    let mut parts = match (c.source_direct, c.destination_direct) {
        (Some(source), Some(destination)) if source != destination => vec![format!(
            "source {}, destination {}",
            access(source),
            access(destination)
        )],
        _ => vec![access(c.direct).to_string()],
    };
    if let Some(block) = c.block_size {
        parts.push(format!("{} blocks", format_block(block)));
    }
    if let Some(depth) = c.iodepth {
        parts.push(format!("iodepth {depth}"));
    }
    if let Some(engine) = c.engine {
        parts.push(engine.to_string());
    }
    if let Some(cipher) = &c.cipher {
        parts.push(format!("cipher {cipher}"));
    }
    if let Some(device) = &c.device {
        parts.push(device.clone());
    }
    if let Some(mtu) = c.mtu.filter(|_| c.device.is_some()) {
        parts.push(format!("path MTU {mtu}"));
    }
    parts.join(", ")
}

/// One "warning: ..." line per warning, each shown once.
pub fn warnings(warnings: &[Warning]) -> String {
    let mut once = warnings.to_vec();
    crate::warning::dedup(&mut once);
    once.iter().map(|w| format!("warning: {w}\n")).collect()
}

fn fill_name(fill: FillMode) -> &'static str {
    match fill {
        FillMode::Random => "random",
        FillMode::Zero => "zero",
        FillMode::None => "no",
    }
}

/// The column header above `net`'s interval lines; Retr and Cwnd only where TCP_INFO has them.
pub fn net_header(bidir: bool, tcp_columns: bool) -> String {
    format!(
        "[ ID]{} Interval         Transfer      Bitrate{}\n",
        if bidir { " role" } else { "" },
        if tcp_columns {
            "                    Retr   Cwnd"
        } else {
            ""
        }
    )
}

/// One interval of `net`: a line per stream, and a SUM line per role with several streams.
pub fn net_tick(tick: &Tick, bidir: bool) -> String {
    let mut out = String::new();
    let span = format!(
        "{:6.2}-{:<6.2} s",
        tick.start_secs,
        tick.start_secs + tick.secs
    );
    let omitted = if tick.omitted { "  (omitted)" } else { "" };
    let role_name = |role: Role| match (bidir, role) {
        (false, _) => "",
        (true, Role::Send) => " send",
        (true, Role::Receive) => " recv",
    };
    for (i, stream) in tick.streams.iter().enumerate() {
        let _ = writeln!(
            out,
            "[{:>3}]{} {span} {}{}",
            i + 1,
            role_name(stream.role),
            interval_figures(
                stream.bytes,
                tick.secs,
                stream.retransmits,
                stream.cwnd_bytes
            ),
            omitted
        );
    }
    for role in [Role::Send, Role::Receive] {
        let streams: Vec<_> = tick.streams.iter().filter(|s| s.role == role).collect();
        if streams.len() > 1 {
            let bytes = streams.iter().map(|s| s.bytes).sum();
            let retransmits = streams
                .iter()
                .map(|s| s.retransmits)
                .try_fold(0u64, |sum, r| r.map(|r| sum + r));
            let _ = writeln!(
                out,
                "[SUM]{} {span} {}{}",
                role_name(role),
                interval_figures(bytes, tick.secs, retransmits, None),
                omitted
            );
        }
    }
    out
}

fn interval_figures(bytes: u64, secs: f64, retransmits: Option<u64>, cwnd: Option<u64>) -> String {
    let rate = Rate::new(bytes, Duration::from_secs_f64(secs.max(1e-9)));
    let mut text = format!("{:>9}  {:>26}", format_bytes(bytes), rate.to_string());
    if let Some(retransmits) = retransmits {
        let _ = write!(text, "  {retransmits:>5}");
    }
    if let Some(cwnd) = cwnd {
        let _ = write!(text, "  {:>8}", format_bytes(cwnd));
    }
    text
}

/// `net`'s summary: sender and receiver per direction, retransmits, CPU on both ends.
pub fn net_summary(report: &NetReport) -> String {
    let mut out = String::from("- - - - - - - - - - - - - - - - - - - - - - - - -\n");
    for direction in &report.directions {
        let name = match direction.direction {
            Direction::Upload => "upload (client → server)",
            Direction::Download => "download (server → client)",
        };
        let _ = writeln!(out, "{name}, {}:", net_conditions(report, direction));
        for m in [&direction.sender, &direction.receiver] {
            let retransmits = match (m.workload, direction.retransmits) {
                (Workload::NetSend, Some(r)) => format!(", {r} retransmits"),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "  {:<8} {:>9} in {:5.2} s  {:>26}{retransmits}",
                m.workload.label(),
                format_bytes(m.bytes),
                m.secs,
                m.rate().to_string()
            );
        }
        if let Some(datagrams) = &direction.datagrams {
            out.push_str(&datagram_lines(datagrams, direction.sender.rate()));
        }
        let _ = writeln!(
            out,
            "  {}",
            crate::classes::place_link(direction.receiver.rate())
        );
        if report.path == crate::transport::TransportKind::Rdma {
            let _ = writeln!(
                out,
                "  (RC: a WRITE counts once the receiver's adapter acknowledged it, so sender and receiver agree;\n   \
                 the rate runs from the first acknowledgment to the last: the first window fills the pipe)"
            );
        }
    }
    if let Some(latency) = &report.latency {
        let _ = writeln!(out, "{}", latency_line(latency));
    }
    // Every direction's bytes: CPU per GB of what the test moved, both ways with --bidir.
    let moved = report.directions.iter().map(|d| d.receiver.bytes).sum();
    let _ = writeln!(out, "{}", cpu_both_per(&report.cpu, Some(moved)));
    out
}

/// A UDP direction's datagram figures: the totals, the receiver's intervals, and what paced
/// the sender (the -b asked for, or its own limit when it fell short of it), in words.
fn datagram_lines(d: &crate::transport::udp::Datagrams, sent: Rate) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  datagrams: {} sent, {} received, {} lost ({}), {} out of order, {} duplicates; jitter {:.3} ms",
        d.sent,
        d.received,
        d.lost,
        percent(d.loss_percent),
        d.out_of_order,
        d.duplicates,
        d.jitter_us / 1000.0
    );
    if !d.intervals.is_empty() {
        let _ = writeln!(out, "  at the receiver:");
    }
    for interval in &d.intervals {
        let expected = interval.expected;
        let lost = if expected > 0 {
            interval.lost as f64 * 100.0 / expected as f64
        } else {
            0.0
        };
        let _ = writeln!(
            out,
            "  {:6.2}-{:<6.2} s {}  jitter {:.3} ms  lost {}/{} ({})",
            interval.start_secs,
            interval.start_secs + interval.secs,
            interval_figures(interval.bytes, interval.secs, None, None),
            interval.jitter_us / 1000.0,
            interval.lost,
            expected,
            percent(lost)
        );
    }
    let _ = match d.paced_bits_per_sec {
        // Within 5 %: pacing rounds per batch, so a held sender lands just under its -b.
        Some(bits) if sent.bytes_per_sec * 8.0 < bits * 0.95 => writeln!(
            out,
            "  the sender could not reach the {} asked by -b: it sent {} (its CPU or socket was the limit, \
             not -b; the path's limit may be higher still)",
            Rate {
                bytes_per_sec: bits / 8.0
            }
            .bits_text(),
            sent.bits_text()
        ),
        Some(bits) => writeln!(
            out,
            "  the sender was held to {} by -b: this is the rate asked for, not the path's limit (--max finds that)",
            Rate {
                bytes_per_sec: bits / 8.0
            }
            .bits_text()
        ),
        None => writeln!(
            out,
            "  the sender sent as fast as it could (--max): the loss is what the path and the receiver could not take"
        ),
    };
    out
}

/// A percentage with the precision small losses need: 0%, 0.0012%, 0.25%, 12%.
fn percent(value: f64) -> String {
    if value == 0.0 {
        "0%".into()
    } else if value < 0.01 {
        format!("{value:.4}%")
    } else if value < 10.0 {
        format!("{value:.2}%")
    } else {
        format!("{value:.0}%")
    }
}

/// `lat`'s result: where, over what, the figures, CPU on both ends.
pub fn lat(report: &crate::transport::LatReport) -> String {
    format!(
        "round trips to {} over {}, {} bytes each way\n{}\n{}\n",
        report.server,
        report.path,
        report.size,
        latency_line(&report.latency),
        cpu_both(&report.cpu)
    )
}

/// Latency figures the way ib_write_lat and qperf give them.
pub fn latency_line(latency: &crate::measure::Latency) -> String {
    format!(
        "latency ({}, {} samples): min {:.2} µs, median {:.2} µs, mean {:.2} µs, p99 {:.2} µs, p99.9 {:.2} µs, max {:.2} µs{}",
        latency.what,
        latency.samples,
        latency.min_us,
        latency.median_us,
        latency.mean_us,
        latency.p99_us,
        latency.p999_us,
        latency.max_us,
        match latency.quantile_precision_percent {
            0.0 => String::new(),
            precision => format!(" (percentiles within {precision}%; min, mean and max exact)"),
        }
    )
}

fn net_conditions(report: &NetReport, direction: &DirectionReport) -> String {
    let c = &direction.receiver.conditions;
    let mut parts = vec![report.path.to_string(), plural(report.streams, "stream")];
    parts.push(match direction.datagrams {
        Some(_) => format!("{}-byte datagrams", report.len),
        None => format!("{} writes", format_block(report.len as u64)),
    });
    if let Some(mtu) = c.mtu {
        parts.push(format!("MTU {mtu}"));
    }
    if c.zerocopy {
        parts.push("zero-copy send (sendfile)".to_string());
    }
    if let Some(cipher) = &c.cipher {
        parts.push(format!("cipher {cipher}"));
    }
    if let Some(device) = &c.device {
        parts.push(device.clone());
    }
    if let Some(depth) = c.queue_depth {
        parts.push(format!("{depth} WRITEs in flight"));
    }
    match (c.window, report.window) {
        // What the kernel granted, read back, beside what -w asked.
        (Some(granted), Some(asked)) => parts.push(format!(
            "window {} granted ({} asked)",
            format_block(granted),
            format_block(asked as u64)
        )),
        (None, Some(asked)) => parts.push(format!("window {}", format_block(asked as u64))),
        _ => {}
    }
    if report.omit_secs > 0.0 {
        parts.push(format!("first {} s omitted", report.omit_secs));
    }
    parts.join(", ")
}

fn cpu_both(both: &CpuBoth) -> String {
    cpu_both_per(both, None)
}

/// [`cpu_both`] with each end's CPU seconds per GB (10^9 bytes) of `bytes` moved, the figure
/// iperf3's CPU percentages and compare-*.sh are set against.
fn cpu_both_per(both: &CpuBoth, bytes: Option<u64>) -> String {
    let remote = both.remote.as_ref().map_or_else(
        || "not reported by the server".to_string(),
        |remote| cpu_per(remote, bytes),
    );
    format!(
        "CPU: local {}, remote {remote}",
        cpu_per(&both.local, bytes)
    )
}

fn cpu(cpu: &CpuUse) -> String {
    cpu_per(cpu, None)
}

fn cpu_per(cpu: &CpuUse, bytes: Option<u64>) -> String {
    let per_gb = match bytes {
        Some(bytes) if bytes > 0 => format!(
            "; {:.2} s/GB",
            (cpu.user_secs + cpu.system_secs) / (bytes as f64 / 1e9)
        ),
        _ => String::new(),
    };
    format!(
        "{:.0}% of a core (user {:.1} s, system {:.1} s{per_gb})",
        cpu.percent, cpu.user_secs, cpu.system_secs
    )
}

/// `copy`: the rate, where the time went, and the verification.
pub fn copy(report: &CopyReport) -> String {
    let m = &report.measurement;
    let local = report.path == crate::transport::TransportKind::Local;
    let mut out = String::new();
    let carried = match local {
        true => "on this machine (the kernel's file-system client carries the bytes)".to_string(),
        false => format!(
            "over {}, {}",
            report.path,
            plural(m.conditions.streams.unwrap_or(1), "stream")
        ),
    };
    let _ = writeln!(
        out,
        "copy {} → {} {carried}, {}, fsync included",
        report.source,
        report.destination,
        conditions(&m.conditions)
    );
    let _ = writeln!(
        out,
        "  {} in {:.2} s: {} — {}, {}",
        format_bytes(m.bytes),
        m.secs,
        m.rate(),
        crate::classes::place_device(m.rate(), crate::classes::Access::Write),
        crate::classes::place_link(m.rate())
    );
    knee_line(&mut out, m);
    if let Some(facts) = &m.conditions.mount {
        mount_lines(&mut out, "  ", "this side's file ", facts);
    }
    let busy = |secs: Option<f64>| {
        let Some(secs) = secs else {
            return "not measured (stock server)".to_string();
        };
        format!(
            "{secs:.2} s ({:.0}%)",
            if m.secs > 0.0 {
                secs * 100.0 / m.secs
            } else {
                0.0
            }
        )
    };
    let split = &report.split;
    let sending = match local {
        true => String::new(),
        false => format!("sending {}, ", busy(split.sending_secs)),
    };
    let _ = writeln!(
        out,
        "  busy: reading {}, {sending}writing {} + fsync {:.2} s (stages overlap; the busiest holds the copy back)",
        busy(split.reading_secs),
        busy(split.writing_secs),
        split.fsync_secs
    );
    if report.path == crate::transport::TransportKind::Ssh {
        let _ = writeln!(
            out,
            "  this side {}; the SSH server's side through its page cache (scp/dd), its fsync timed",
            if m.conditions.direct {
                "O_DIRECT"
            } else {
                "buffered"
            }
        );
    }
    if let Some(resumed) = &report.resumed {
        let _ = match resumed.matched {
            true => writeln!(
                out,
                "  resumed: the partial copy held {}; its first {} matched the source ({}, checked in {:.2} s), so this copy moved the remaining {}",
                format_bytes(resumed.found),
                format_bytes(resumed.checked),
                resumed.algorithm,
                resumed.secs,
                format_bytes(m.bytes)
            ),
            false => writeln!(
                out,
                "  resumed: the partial copy held {}, but its first {} did not match the source ({}): it was copied whole",
                format_bytes(resumed.found),
                format_bytes(resumed.checked),
                resumed.algorithm
            ),
        };
    }
    if let Some(verify) = &report.verify {
        match &verify.reread {
            Some(reread) => {
                let how = match reread.direct {
                    true => "re-read with O_DIRECT".to_string(),
                    false => format!(
                        "re-read after dropping this machine's cache ({:.0}% still cached)",
                        reread.cached_before.unwrap_or(0.0) * 100.0
                    ),
                };
                let _ = writeln!(
                    out,
                    "  verified: {} digests of what was read and of the landed file match ({}); {how} in {:.2} s at {}, not counted in the copy's rate",
                    verify.algorithm,
                    verify.source,
                    reread.secs,
                    crate::units::Rate {
                        bytes_per_sec: reread.bytes_per_sec
                    }
                );
                // A share's server has caches of its own that no client can drop.
                if let Some(fs) = &reread.network_fs {
                    let _ = writeln!(
                        out,
                        "  on {fs}, the re-read may have come from the server's own cache: it cannot be ruled out"
                    );
                }
            }
            None => match &verify.far_reread {
                Some(far) => {
                    let _ = writeln!(
                        out,
                        "  verified: the {} of what was sent matches `{}` reading the landed file on the far side (its page cache, most likely: a stock server's cache cannot be dropped) in {:.2} s at {}, not counted in the copy's rate",
                        verify.algorithm,
                        far.tool,
                        far.secs,
                        crate::units::Rate {
                            bytes_per_sec: far.bytes_per_sec
                        }
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "  verified: {} digests match on both sides ({})",
                        verify.algorithm, verify.source
                    );
                }
            },
        }
    }
    match local {
        true => {
            let _ = writeln!(out, "  CPU: {}", cpu_per(&report.cpu.local, Some(m.bytes)));
        }
        false => {
            let _ = writeln!(out, "  {}", cpu_both_per(&report.cpu, Some(m.bytes)));
        }
    }
    out
}

/// `copy -r`: the bytes and files, the rate and files/s, how it was made durable, then every
/// entry that failed, changed while it was read, or was skipped.
pub fn tree(report: &crate::transport::tree::TreeReport) -> String {
    use crate::transport::TransportKind;
    use crate::transport::tree::FsyncPolicy;
    let m = &report.measurement;
    let landed = &report.landed;
    let mut out = String::new();
    let durable = match report.fsync {
        FsyncPolicy::Each => "every file fsynced before its rename",
        FsyncPolicy::End => "one syncfs at the end (--fsync end)",
    };
    let how = match report.path {
        TransportKind::Local => format!(
            "on this machine, {} landing at once, buffered (page cache), {} blocks",
            plural(report.workers, "file"),
            format_block(m.conditions.block_size.unwrap_or(0)),
        ),
        TransportKind::Ssh => format!(
            "over SSH ({}, cipher {}), a far {}{}",
            plural(report.workers, "connection"),
            m.conditions.cipher.as_deref().unwrap_or("unknown"),
            report.far_tool.as_deref().unwrap_or("tool"),
            if report.workers > 1 { " on each" } else { "" },
        ),
        path => format!(
            "over {path}, {} (files back to back on each), buffered (page cache), {} blocks",
            plural(report.workers, "data connection"),
            format_block(m.conditions.block_size.unwrap_or(0)),
        ),
    };
    let _ = writeln!(
        out,
        "copy -r {} → {} {how}, {durable}",
        report.source, report.destination,
    );
    let _ = writeln!(
        out,
        "  {} in {}, {}, {} in {:.2} s: {} and {:.0} files/s — {}",
        format_bytes(m.bytes),
        plural(landed.files as usize, "file"),
        match landed.directories {
            1 => "1 directory".to_string(),
            n => format!("{n} directories"),
        },
        plural(landed.symlinks as usize, "link"),
        m.secs,
        m.rate(),
        report.files_per_sec,
        crate::classes::place_link(m.rate())
    );
    if let Some(facts) = &m.conditions.mount {
        let side = match report.path {
            TransportKind::Local => "the destination ",
            _ => "this side's tree ",
        };
        mount_lines(&mut out, "  ", side, facts);
    }
    if report.verified {
        let _ = writeln!(
            out,
            "  verified: every landed file was read back after its fsync and a cache drop, and its xxh3-128 matched what was read (not counted in the rate)"
        );
    }
    let lists = [
        ("changed while copied", &report.changed),
        ("skipped", &report.skipped),
        ("failed", &report.failed),
    ];
    for (what, listed) in lists {
        if listed.total == 0 {
            continue;
        }
        let _ = writeln!(out, "  {what}: {}", listed.total);
        for problem in &listed.shown {
            let _ = writeln!(out, "    {}: {}", problem.path, problem.reason);
        }
        let unshown = listed.total - listed.shown.len() as u64;
        if unshown > 0 {
            let _ = writeln!(out, "    … and {unshown} more");
        }
    }
    match &report.remote_cpu {
        Some(remote) => {
            let _ = writeln!(
                out,
                "  CPU: here {}; server {}",
                cpu(&report.cpu),
                cpu(remote)
            );
        }
        None => {
            let _ = writeln!(out, "  CPU: {}", cpu(&report.cpu));
        }
    }
    out
}

/// "1 stream", "4 streams".
fn plural(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// `run`: the verdict first, one sentence per path, then the figures behind it.
pub fn run(report: &crate::plan::RunReport) -> String {
    let mut out = String::new();
    for path in &report.paths {
        let _ = writeln!(out, "{}", path.sentence);
    }
    for skipped in &report.skipped {
        let _ = writeln!(out, "{}: skipped — {}", skipped.path, skipped.reason);
    }
    let p = &report.parameters;
    // A run to a directory names its destination in words of its own.
    let share = report
        .destination_write
        .iter()
        .flat_map(|summary| &summary.measurements)
        .filter_map(|m| m.conditions.mount.as_ref())
        .any(MountFacts::is_network);
    let far = match (&p.to, &p.net) {
        (Some(to), Some(net)) => format!("to {to}, serve on the NAS {net}"),
        (Some(to), None) => format!("to {to}"),
        (None, _) => format!("server {}", p.server),
    };
    let reused = |reused: bool| if reused { "reused" } else { "new" };
    let tree = match &report.test_tree {
        Some(tree) => format!(
            ", {} tree of {} files of {} ({tree})",
            reused(report.test_tree_reused),
            p.files,
            format_block(p.file_size)
        ),
        None => String::new(),
    };
    let _ = writeln!(
        out,
        "\n{} test file {} ({}){tree}, {far}{}, {} run{} each (medians; min–max):",
        reused(report.test_file_reused),
        report.test_file,
        format_bytes(report.parameters.size),
        // A copy to a directory is one file written at its offsets: streams are the network's.
        match (&p.to, &p.net) {
            (Some(_), None) => String::new(),
            _ => format!(", {}", plural(report.parameters.streams, "stream")),
        },
        report.parameters.repeat,
        if report.parameters.repeat == 1 {
            ""
        } else {
            "s"
        }
    );
    use crate::classes::{self, Access};
    let read_class = |r: Rate| classes::place_device(r, Access::Read).to_string();
    let write_class = |r: Rate| classes::place_device(r, Access::Write).to_string();
    let link_class = |r: Rate| classes::place_link(r).to_string();
    // Said as it was measured: O_DIRECT is asked for, and a file system may refuse it.
    let buffered = report
        .source_read
        .iter()
        .flat_map(|summary| &summary.measurements)
        .any(|m| !m.conditions.direct);
    rate_row(
        &mut out,
        if buffered {
            "source read (buffered)"
        } else {
            "source read (O_DIRECT)"
        },
        report.source_read.as_ref(),
        &read_class,
    );
    mount_row(&mut out, report.source_read.as_ref());
    let destination = if share { "share" } else { "destination" };
    rate_row(
        &mut out,
        &format!("{destination} write (+fsync)"),
        report.destination_write.as_ref(),
        &write_class,
    );
    mount_row(&mut out, report.destination_write.as_ref());
    if report.destination_read.is_some() {
        rate_row(
            &mut out,
            &format!("{destination} read (cold)"),
            report.destination_read.as_ref(),
            &read_class,
        );
    }
    if report.nas_disk.is_some() {
        rate_row(
            &mut out,
            "NAS's own disk write (serve)",
            report.nas_disk.as_ref(),
            &write_class,
        );
    }
    if p.to.is_some() && share {
        let link = match &report.link {
            Some(link) => format!(
                "{} — {}, negotiated, not measured",
                Rate {
                    bytes_per_sec: link.bytes_per_sec
                },
                link.what
            ),
            None => "unknown (a virtual interface, or none known): not measured".into(),
        };
        let _ = writeln!(out, "  {:<28} {link}", "link speed");
    }
    if report.shared_disk.is_some() {
        rate_row(
            &mut out,
            "one disk reading+writing",
            report.shared_disk.as_ref(),
            &write_class,
        );
    }
    for path in &report.paths {
        let udp = path.path == crate::transport::TransportKind::Udp;
        // A run to a directory measures its network with the serve on the NAS, if at all.
        let network = match (&p.to, &p.net) {
            (Some(_), Some(_)) => "network to the NAS (tcp)".to_string(),
            (Some(_), None) => String::new(),
            (None, _) => format!(
                "{} memory to memory{}",
                path.path,
                if udp { " (received)" } else { "" }
            ),
        };
        if !network.is_empty() {
            let latency = match p.to.is_some() {
                true => "network latency (one way)".to_string(),
                false => format!("{} latency (one way)", path.path),
            };
            latency_row(&mut out, &latency, path, &report.parameters);
            rate_row(&mut out, &network, path.network.as_ref(), &link_class);
            if path.network.is_none() {
                missing_row(&mut out, path, PathStep::Network);
            }
        }
        if udp {
            let _ = writeln!(
                out,
                "  {:<28} none: UDP carries no files",
                "udp disk to disk"
            );
            continue;
        }
        let copy = match p.to.is_some() {
            true if share => "copy to the share (verified)".to_string(),
            true => "copy (verified)".to_string(),
            false => format!(
                "{} disk to disk{}",
                path.path,
                // Only serve computes the far side's digest; a stock SSH server cannot.
                if path.path != crate::transport::TransportKind::Ssh {
                    " (verified)"
                } else {
                    " (+fsync)"
                }
            ),
        };
        rate_row(&mut out, &copy, path.copy.as_ref(), &link_class);
        if path.copy.is_none() {
            missing_row(&mut out, path, PathStep::Copy);
        }
        if report.test_tree.is_some() {
            let name = match p.to.is_some() {
                true if share => "small files to the share".to_string(),
                true => "small files".to_string(),
                false => format!("{} small files", path.path),
            };
            small_files_row(&mut out, &name, path);
        }
    }
    if report.interrupted {
        let _ = writeln!(
            out,
            "\ninterrupted: the paths after {} were not measured",
            report
                .paths
                .last()
                .map(|p| p.path.to_string())
                .unwrap_or_default()
        );
    }
    // Said in the result, not only on stderr: they change what the figures mean.
    if !report.warnings.is_empty() {
        let _ = writeln!(out);
        out.push_str(&warnings(&report.warnings));
    }
    out
}

/// A path's tree of small files in `run`'s figures: MB/s, files/s and how they were made
/// durable; or why there is no figure.
fn small_files_row(out: &mut String, name: &str, path: &crate::plan::PathResult) {
    use crate::transport::tree::FsyncPolicy;
    let Some(small) = &path.small_files else {
        match &path.small_files_failed {
            Some(why) => {
                let _ = writeln!(out, "  {name:<28} not measured: {why}");
            }
            None => {
                let _ = writeln!(out, "  {name:<28} not measured");
                missing_row(out, path, PathStep::SmallFiles);
            }
        }
        return;
    };
    let fsync = match small.fsync {
        FsyncPolicy::Each => "each fsynced before its rename",
        FsyncPolicy::End => "one syncfs at the end",
    };
    let marked = match &small.measurement.suspect {
        Some(suspect) => format!(" — MARKED: {suspect}"),
        None => String::new(),
    };
    let _ = writeln!(
        out,
        "  {name:<28} {:>26} — {:.0} files/s, {} files of {}, {fsync}{marked}",
        small.rate().to_string(),
        small.files_per_sec,
        small.files,
        format_block(small.file_size),
    );
}

/// Under a step `rate_row` found "not measured": why, when its path failed.
fn missing_row(out: &mut String, path: &crate::plan::PathResult, step: PathStep) {
    let Some(failed) = &path.failed else {
        return;
    };
    let words = step.describe();
    let why = match failed.step == step {
        true => format!("{} {words} failed (why is in its first line)", path.path),
        false => format!("{} {words} not run: an earlier stage failed", path.path),
    };
    let _ = writeln!(out, "    {why}");
}

/// Under a disk stage of `run`: the file system its figures were taken on.
fn mount_row(out: &mut String, summary: Option<&crate::plan::Summary>) {
    let facts = summary
        .and_then(|summary| summary.measurements.first())
        .and_then(|m| m.conditions.mount.as_ref());
    if let Some(facts) = facts {
        mount_lines(out, "    ", "", facts);
    }
}

/// One stage of `run`'s figures: its median rate, the spread of repeats, and its class.
fn rate_row(
    out: &mut String,
    name: &str,
    summary: Option<&crate::plan::Summary>,
    class: &dyn Fn(Rate) -> String,
) {
    let Some(summary) = summary else {
        let _ = writeln!(out, "  {name:<28} not measured");
        return;
    };
    if let Some(suspect) = summary.suspect() {
        let _ = writeln!(
            out,
            "  {name:<28} {:>26} — MARKED: {suspect}",
            summary.rate().to_string()
        );
        return;
    }
    let null = summary
        .measurements
        .iter()
        .any(|m| m.conditions.engine == Some(crate::measure::EngineKind::Null));
    let placed = match null {
        true => "null engine: no byte reached a device".to_string(),
        false => class(summary.rate()),
    };
    let spread = if summary.measurements.len() > 1 {
        format!(
            " ({:.0}–{:.0} MB/s, sd {:.0})",
            summary.min_bytes_per_sec / 1e6,
            summary.max_bytes_per_sec / 1e6,
            summary.stddev_bytes_per_sec / 1e6
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "  {name:<28} {:>26}{spread} — {}",
        summary.rate().to_string(),
        placed
    );
    // The first run whose rate fell is enough to say so.
    if let Some(m) = summary.measurements.iter().find(|m| m.knee.is_some()) {
        knee_line(out, m);
    }
}

/// A path's latency in `run`'s figures: the median one way, min–max and p99, or why not measured.
fn latency_row(
    out: &mut String,
    name: &str,
    path: &crate::plan::PathResult,
    p: &crate::plan::Parameters,
) {
    let Some(latency) = &path.latency else {
        let why = path.latency_failed.as_deref().unwrap_or("no figure");
        let _ = writeln!(out, "  {name:<28} not measured: {why}");
        return;
    };
    let _ = writeln!(
        out,
        "  {name:<28} {:>26} ({:.2}–{:.2} µs, p99 {:.2}) — {} round trips of {} bytes",
        format!("{:.2} µs", latency.median_us),
        latency.min_us,
        latency.max_us,
        latency.p99_us,
        latency.samples,
        p.latency_size
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mounts::{self, BlockDevice, Interface};
    use crate::transport::udp::Datagrams;

    #[test]
    fn a_durability_write_above_its_link_is_marked_in_the_text() {
        use crate::measure::{Measurement, Workload};
        let write = |mb: u64| {
            Measurement::new(
                Workload::DiskWrite,
                mb * 1_000_000,
                std::time::Duration::from_secs(1),
                Conditions::default(),
                Vec::new(),
            )
        };
        let mut fast = write(1400);
        fast.suspect = Some("above what could carry it".into());
        let probe = crate::disk::durability::Durability {
            fsync_at_end: fast,
            direct: None,
            dsync: write(300),
            stable_ratio: 0.21,
            stable_as_fast: false,
            warnings: Vec::new(),
        };
        let mut out = String::new();
        durability(&mut out, &probe);
        let line = out.lines().find(|l| l.contains("fsync at end")).unwrap();
        assert!(
            line.ends_with("— NOT THE DISK: above what could carry it"),
            "{out}"
        );
        let dsync = out.lines().find(|l| l.contains("O_DSYNC (each")).unwrap();
        assert!(!dsync.contains("NOT THE DISK"), "{out}");
    }

    #[test]
    fn a_write_that_fell_for_good_says_where_and_the_rate_that_lasted() {
        use crate::measure::{Interval, Measurement, Workload};
        let second = |i: usize, mb_s: f64| Interval {
            start_secs: i as f64,
            secs: 1.0,
            bytes: (mb_s * 1e6) as u64,
        };
        let intervals: Vec<Interval> = (0..20)
            .map(|i| second(i, if i < 14 { 1100.0 } else { 280.0 }))
            .collect();
        let bytes = intervals.iter().map(|i| i.bytes).sum();
        let elapsed = std::time::Duration::from_secs(20);
        let m = Measurement::new(
            Workload::DiskWrite,
            bytes,
            elapsed,
            Conditions::default(),
            intervals,
        );
        let mut out = String::new();
        knee_line(&mut out, &m);
        assert!(
            out.contains(
                "ran at 1.10 GB/s (8.80 Gb/s) for 14 s (15.4 GB), then 280 MB/s (2.24 Gb/s)"
            ),
            "{out}"
        );
        // Reads fill no write cache: the same series read is not said to have a knee.
        let read = Measurement::new(
            Workload::DiskRead,
            bytes,
            elapsed,
            Conditions::default(),
            m.intervals.clone(),
        );
        let mut none = String::new();
        knee_line(&mut none, &read);
        assert_eq!(none, "");
    }

    fn facts_of(line: &str) -> MountFacts {
        mounts::facts_of_entry(&mounts::parse_mountinfo(line)[0])
    }

    #[test]
    fn a_share_says_its_version_server_options_and_link_in_one_line() {
        let mut nfs = facts_of(
            "95 28 0:34 / /mnt/nas rw,relatime - nfs4 198.51.100.2:/ rw,vers=4.2,rsize=1048576,wsize=1048576,namlen=255,hard,proto=tcp,addr=198.51.100.2",
        );
        nfs.interface = Some(Interface {
            name: "lab-nas".into(),
            mtu: Some(1500),
            speed_mbit_s: None,
        });
        nfs.kernel = Some("6.1.0-57-amd64".into());
        assert_eq!(
            mount(&nfs),
            "on /mnt/nas: nfs4 vers=4.2 from 198.51.100.2:/ (nconnect=1, rsize=wsize=1 MiB, hard) \
             via lab-nas (MTU 1500, speed unknown); kernel 6.1.0-57-amd64"
        );
        let cifs = facts_of(
            "54 28 0:32 / /mnt/nas rw,relatime - cifs //198.51.100.2/share rw,vers=3.1.1,cache=none,addr=198.51.100.2,soft,rsize=4194304,wsize=65536",
        );
        assert_eq!(
            mount(&cifs),
            "on /mnt/nas: cifs vers=3.1.1 from //198.51.100.2/share (rsize=4 MiB, wsize=64 KiB, \
             cache=none, no multichannel, soft)"
        );
    }

    #[test]
    fn a_local_disk_says_its_device_and_tmpfs_says_memory() {
        let mut root = facts_of("27 1 254:0 / / rw,relatime - ext4 /dev/vda rw");
        root.device = Some(BlockDevice {
            name: "vda".into(),
            rotational: Some(false),
            transport: "virtio".into(),
            model: None,
        });
        root.kernel = Some("6.1.0".into());
        assert_eq!(mount(&root), "on /: ext4 on vda (virtio, non-rotational)");
        let tmp = facts_of("25 27 0:23 / /tmp rw - tmpfs tmpfs rw");
        assert_eq!(mount(&tmp), "on /tmp: tmpfs (memory)");
    }

    fn paced(gbit: f64) -> Datagrams {
        Datagrams {
            len: 8972,
            paced_bits_per_sec: Some(gbit * 1e9),
            sent: 1000,
            received: 1000,
            lost: 0,
            loss_percent: 0.0,
            out_of_order: 0,
            duplicates: 0,
            jitter_us: 1.0,
            foreign: 0,
            intervals: Vec::new(),
        }
    }

    /// The datagram lines of a sender paced to `paced_gbit` by -b that sent `sent_bits_per_sec`.
    fn paced_lines(paced_gbit: f64, sent_bits_per_sec: f64) -> String {
        let sent = Rate {
            bytes_per_sec: sent_bits_per_sec / 8.0,
        };
        datagram_lines(&paced(paced_gbit), sent)
    }

    #[test]
    fn a_sender_short_of_its_b_rate_is_not_said_to_be_held_to_it() {
        let text = paced_lines(100.0, 33.6e9);
        assert!(text.contains("could not reach the 100 Gb/s"), "{text}");
        assert!(text.contains("it sent 33.6 Gb/s"), "{text}");
        assert!(!text.contains("held to"), "{text}");
    }

    #[test]
    fn a_sender_at_its_b_rate_is_said_to_be_held_to_it() {
        let text = paced_lines(1.0, 0.99e9);
        assert!(text.contains("held to 1.00 Gb/s by -b"), "{text}");
    }
}

mod diff;
mod mesh;
pub(crate) use diff::{
    change as diff_change, changes as diff_changes, noise_rule as diff_noise_rule,
    value as diff_value, verdict as diff_verdict,
};
pub use diff::{diff, trend};
pub(crate) use mesh::cell as mesh_cell;
pub use mesh::mesh;
pub(crate) use mesh::summary as mesh_summary;
pub(crate) use mesh::verdict as mesh_verdict;
