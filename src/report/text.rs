//! The human report: short lines, every figure in bytes and bits with the conditions it was taken under.

use std::fmt::Write;

use crate::disk::{Baseline, PlacedMeasurement};
use crate::file::{FillMode, Generated};
use crate::measure::Conditions;
use crate::units::{format_block, format_bytes};
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
    for placed in &result.measurements {
        let _ = writeln!(out, "{}", measurement_line(placed));
    }
    out
}

fn measurement_line(placed: &PlacedMeasurement) -> String {
    let m = &placed.measurement;
    let fsync = if m.conditions.fsync_included {
        ", fsync included"
    } else {
        ""
    };
    format!(
        "  {:<5} {:>22} in {:.2} s{fsync} — {}, {}",
        m.stage.label(),
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
    out
}

/// "O_DIRECT, 1 MiB blocks, iodepth 16, io_uring".
pub fn conditions(c: &Conditions) -> String {
    let mut parts = vec![if c.direct {
        "O_DIRECT".to_string()
    } else {
        "buffered (page cache)".to_string()
    }];
    if let Some(block) = c.block_size {
        parts.push(format!("{} blocks", format_block(block)));
    }
    if let Some(depth) = c.iodepth {
        parts.push(format!("iodepth {depth}"));
    }
    if let Some(engine) = c.engine {
        parts.push(engine.to_string());
    }
    parts.join(", ")
}

/// One "warning: ..." line per warning, each shown once.
pub fn warnings(warnings: &[Warning]) -> String {
    let mut seen: Vec<&Warning> = Vec::new();
    let mut out = String::new();
    for warning in warnings {
        if !seen.contains(&warning) {
            seen.push(warning);
            let _ = writeln!(out, "warning: {warning}");
        }
    }
    out
}

fn fill_name(fill: FillMode) -> &'static str {
    match fill {
        FillMode::Random => "random",
        FillMode::Zero => "zero",
        FillMode::None => "no",
    }
}
