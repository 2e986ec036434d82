//! The verdict: which stage bounds a copy, and how close the copy came to that bound.
//!
//! bound = min(source read, the path's memory-to-memory rate, destination write); the bottleneck
//! is the stage at that minimum; efficiency = disk-to-disk rate ÷ bound. A copy far below its
//! bound while one end's CPU is saturated is called CPU (or cipher) bound. A tree of small
//! files far slower than the big file over the same path is called per-file overhead.

use std::fmt;

use serde::Serialize;

use crate::classes::{self, Access};
use crate::measure::CpuUse;
use crate::transport::TransportKind;
use crate::units::{Rate, format_block};

/// A stage of a disk-to-disk copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    SourceDisk,
    Network,
    DestinationDisk,
    /// One disk serving both the reads and the writes of the copy (a copy within one machine).
    SharedDisk,
    /// A mounted share's write, when neither the link nor a measured NAS disk explains it: the
    /// NAS's disk or its sharing protocol.
    Share,
    /// The NAS's own disk (measured by a `serve` there) writes no faster than the share.
    NasDisk,
    /// The SMB or NFS client and server: the link and the NAS's own disk both carry more.
    ShareProtocol,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::SourceDisk => "the source disk",
            Stage::Network => "the network",
            Stage::DestinationDisk => "the destination disk",
            Stage::SharedDisk => "the one disk both ends share",
            Stage::Share => "the share",
            Stage::NasDisk => "the NAS's disk",
            Stage::ShareProtocol => "the sharing protocol",
        }
    }
}

/// Stages within this fraction of the slowest are named with it: a tie, not a single culprit.
pub const TIE: f64 = 0.05;
/// Below this efficiency, a saturated CPU explains the gap better than the bound does.
pub const LOW_EFFICIENCY: f64 = 0.7;
/// A CPU this busy (percent of one core, as measured) counts as saturated.
pub const SATURATED_CPU_PERCENT: f64 = 90.0;

/// Where a copy lands, which decides the stages it passes through.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Destination {
    /// A server's disk across the network (`serve`, SSH).
    #[default]
    Server,
    /// A directory on this machine's disks: no network stage.
    LocalDir,
    /// A mounted SMB or NFS share, of this file-system type (nfs4, cifs): the kernel's client
    /// carries the bytes, so its write figure holds the link, the protocol and the NAS's disk.
    Share { fs_type: String },
}

/// What one path's verdict is made from; any figure may be missing.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub destination: Destination,
    pub source_read: Option<Rate>,
    pub network: Option<Rate>,
    pub destination_write: Option<Rate>,
    pub copy: Option<Rate>,
    /// CPU use of each end during the copy.
    pub cpu: Vec<CpuUse>,
    /// Source and destination are one device: it must serve reads and writes at once.
    pub shared_disk: bool,
    /// That one device reading and writing at once, measured as the copy uses it.
    pub shared_disk_read_write: Option<Rate>,
    /// Why a figure above is not what it claims (above its device's or link's ceiling, a
    /// cache), by stage; such a figure cannot be judged from.
    pub suspect: Vec<String>,
    /// How far apart repeated runs fell, relative; below [`NOISE`] counts as [`NOISE`].
    pub spread: f64,
    /// `network` is the link's negotiated speed, not a measurement (a share run without a
    /// `serve` on the NAS).
    pub network_is_link_speed: bool,
    /// The NAS's own disk writing, as a `serve` there measured it.
    pub nas_disk: Option<Rate>,
    /// The same path copying the run's tree of small files.
    pub small_files: Option<SmallFilesFigure>,
}

/// A path copying many small files: how many, how big, and how fast.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmallFilesFigure {
    pub files: u64,
    pub file_size: u64,
    pub rate: Rate,
    pub files_per_sec: f64,
}

/// Small files reaching less than this fraction of the big file's copy rate over the same path
/// are held back by what each file costs (its open, fsync and rename, and the round trips that
/// announce and acknowledge it), not by bandwidth: the big copy showed the bandwidth is there.
pub const PER_FILE_OVERHEAD: f64 = 0.25;

/// Small files far below the big file's rate over the same path: what they reached.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PerFileOverhead {
    pub files: u64,
    pub file_size: u64,
    pub bytes_per_sec: f64,
    pub files_per_sec: f64,
    /// Their rate ÷ the big-file copy's.
    pub fraction_of_copy: f64,
}

impl PerFileOverhead {
    /// Some when the small files reach less than [`PER_FILE_OVERHEAD`] of the big copy.
    fn of(figures: &Figures) -> Option<PerFileOverhead> {
        let (small, copy) = (figures.small_files?, figures.copy?);
        if copy.bytes_per_sec <= 0.0 {
            return None;
        }
        let fraction = small.rate.bytes_per_sec / copy.bytes_per_sec;
        (fraction < PER_FILE_OVERHEAD).then_some(PerFileOverhead {
            files: small.files,
            file_size: small.file_size,
            bytes_per_sec: small.rate.bytes_per_sec,
            files_per_sec: small.files_per_sec,
            fraction_of_copy: fraction,
        })
    }
}

impl fmt::Display for PerFileOverhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "per-file overhead: {} files of {} reach {}, {:.0}% of the big-file copy ({:.0} \
             files/s): each file pays its open, fsync and rename and the round trips that carry \
             it, which bandwidth does not shorten",
            self.files,
            format_block(self.file_size),
            Rate {
                bytes_per_sec: self.bytes_per_sec
            },
            self.fraction_of_copy * 100.0,
            self.files_per_sec
        )
    }
}

/// The least relative noise assumed between a copy and its bound: runs on one machine differ
/// by this much at least.
pub const NOISE: f64 = 0.05;

/// Where the bound of a copy whose ends share one disk comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SharedDiskBound {
    /// The disk read and wrote at once, with the copy's block size and depth.
    Measured,
    /// No such figure: 1 / (1/read + 1/write), as if it served the two in turn.
    Modelled,
}

impl Figures {
    /// The rate of the one disk both ends share: measured reading and writing at once, or
    /// else modelled as serving them in turn, 1 / (1/read + 1/write).
    pub fn shared_disk_rate(&self) -> Option<(Rate, SharedDiskBound)> {
        if let Some(rate) = self.shared_disk_read_write {
            return Some((rate, SharedDiskBound::Measured));
        }
        let (read, write) = (self.source_read?, self.destination_write?);
        (read.bytes_per_sec > 0.0 && write.bytes_per_sec > 0.0).then(|| {
            let rate = Rate {
                bytes_per_sec: 1.0 / (1.0 / read.bytes_per_sec + 1.0 / write.bytes_per_sec),
            };
            (rate, SharedDiskBound::Modelled)
        })
    }
}

/// The verdict for one path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub path: TransportKind,
    /// The slowest stage, and any within [`TIE`] of it.
    pub bottleneck: Vec<Stage>,
    pub bound_bytes_per_sec: f64,
    /// Copy rate ÷ bound; None without a copy.
    pub efficiency: Option<f64>,
    /// Low efficiency with a saturated CPU on one end.
    pub cpu_bound: bool,
    /// Stages that were not measured, so the bound may be too high.
    pub missing: Vec<Stage>,
    /// For a disk both ends share: whether its figure was measured or modelled.
    pub shared_disk_bound: Option<SharedDiskBound>,
    /// Above 1 by at most this, the copy is at its bound within noise.
    pub noise: f64,
    /// Why these figures cannot be judged from: a figure above its ceiling, or a copy faster
    /// than its bound beyond noise. The bottleneck and efficiency are then not a verdict.
    pub doubt: Option<String>,
    /// Small files far slower than the big file over this path.
    pub per_file_overhead: Option<PerFileOverhead>,
}

/// The stages a copy to `figures.destination` passes through, each with its figure; a shared
/// disk replaces its two halves, being slower than either.
fn considered(figures: &Figures) -> Vec<(Stage, Option<Rate>)> {
    match (&figures.destination, shared(figures)) {
        (Destination::Share { .. }, _) => vec![
            (Stage::SourceDisk, figures.source_read),
            (Stage::Network, figures.network),
            (Stage::Share, figures.destination_write),
        ],
        (Destination::LocalDir, Some((rate, _))) => vec![(Stage::SharedDisk, Some(rate))],
        (Destination::Server, Some((rate, _))) => vec![
            (Stage::Network, figures.network),
            (Stage::SharedDisk, Some(rate)),
        ],
        (Destination::LocalDir, None) => vec![
            (Stage::SourceDisk, figures.source_read),
            (Stage::DestinationDisk, figures.destination_write),
        ],
        (Destination::Server, None) => vec![
            (Stage::SourceDisk, figures.source_read),
            (Stage::Network, figures.network),
            (Stage::DestinationDisk, figures.destination_write),
        ],
    }
}

/// The rate of the one disk both ends share, and how it was had; None when they share none.
fn shared(figures: &Figures) -> Option<(Rate, SharedDiskBound)> {
    figures
        .shared_disk
        .then(|| figures.shared_disk_rate())
        .flatten()
}

/// A share writing at this fraction of its slowest measured part (the network, the NAS's own
/// disk) or faster is held back by that part; slower, by its protocol. The sharing protocol
/// costs something on any link: in the lab VM, NFS 4.2 wrote at 0.82 and 0.98 of a 40 Mbit/s
/// `tbf` link in two runs (wsize 256 KiB), and SMB 3.1.1 at 0.81 of an export disk throttled to
/// 2 MB/s (1 MiB O_DIRECT writes through fsync); NFS and SMB3 on real 10 GbE reach 0.9 and more.
pub const SHARE_AT_ITS_LIMIT: f64 = 0.7;

/// A share's write crosses the link, the protocol and the NAS's disk: what holds it back. The
/// slowest of the network and the NAS's own disk (a `serve` there), when the share writes at
/// [`SHARE_AT_ITS_LIMIT`] of it or more; else the protocol, or "the share" when the NAS's disk
/// was not measured.
fn explain_share(bottleneck: &mut Vec<Stage>, figures: &Figures) {
    let Some(at) = bottleneck.iter().position(|s| *s == Stage::Share) else {
        return;
    };
    let share = figures.destination_write.map_or(0.0, |r| r.bytes_per_sec);
    let parts = [
        (Stage::Network, figures.network),
        (Stage::NasDisk, figures.nas_disk),
    ];
    let slowest = parts
        .iter()
        .filter_map(|&(stage, rate)| Some((stage, rate?.bytes_per_sec)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    let part = match slowest {
        Some((stage, rate)) if share >= SHARE_AT_ITS_LIMIT * rate => stage,
        _ if figures.nas_disk.is_some() => Stage::ShareProtocol,
        _ => Stage::Share,
    };
    if part != Stage::Share && bottleneck.contains(&part) {
        bottleneck.remove(at);
    } else {
        bottleneck[at] = part;
    }
}

/// Judges one path; None when no stage was measured at all.
pub fn judge(path: TransportKind, figures: &Figures) -> Option<Verdict> {
    let (considered, shared) = (considered(figures), shared(figures));
    let measured: Vec<(Stage, f64)> = considered
        .iter()
        .filter_map(|&(stage, rate)| rate.map(|r| (stage, r.bytes_per_sec)))
        .collect();
    let bound = measured
        .iter()
        .map(|&(_, rate)| rate)
        .min_by(f64::total_cmp)?;
    let mut bottleneck = measured
        .iter()
        .filter(|&&(_, rate)| rate <= bound * (1.0 + TIE))
        .map(|&(stage, _)| stage)
        .collect();
    explain_share(&mut bottleneck, figures);
    let efficiency = figures
        .copy
        .filter(|_| bound > 0.0)
        .map(|copy| copy.bytes_per_sec / bound);
    let noise = figures.spread.max(NOISE);
    let doubt = match (figures.suspect.first(), efficiency) {
        (Some(suspect), _) => Some(format!("a figure is marked: {suspect}")),
        (None, Some(e)) if e > 1.0 + noise => Some(format!(
            "the copy ran at {:.0}% of its bound, beyond the {:.0}% noise: faster than its slowest \
             stage allows, so a cache answered somewhere or a baseline reads low",
            e * 100.0,
            noise * 100.0
        )),
        _ => None,
    };
    let cpu_bound = efficiency.is_some_and(|e| e < LOW_EFFICIENCY)
        && figures
            .cpu
            .iter()
            .any(|cpu| cpu.percent >= SATURATED_CPU_PERCENT);
    // What was never measured, so the bound may be too high.
    let missing = considered_halves(figures)
        .iter()
        .filter(|(_, rate)| rate.is_none())
        .map(|&(stage, _)| stage)
        .collect();
    Some(Verdict {
        path,
        bottleneck,
        bound_bytes_per_sec: bound,
        efficiency,
        cpu_bound,
        missing,
        shared_disk_bound: shared.map(|(_, basis)| basis),
        noise,
        doubt,
        per_file_overhead: PerFileOverhead::of(figures),
    })
}

/// The stages of [`considered`] without a shared disk standing in for the two disks.
fn considered_halves(figures: &Figures) -> Vec<(Stage, Option<Rate>)> {
    considered(&Figures {
        shared_disk: false,
        ..figures.clone()
    })
}

impl Verdict {
    pub fn bound(&self) -> Rate {
        Rate {
            bytes_per_sec: self.bound_bytes_per_sec,
        }
    }
}

/// The verdict in one plain sentence, each figure placed against the classes.
pub struct Sentence<'a> {
    pub verdict: &'a Verdict,
    pub figures: &'a Figures,
}

impl fmt::Display for Sentence<'_> {
    /// The sentence, and under it the per-file overhead when there is one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.big_file(f)?;
        if let Some(overhead) = &self.verdict.per_file_overhead {
            write!(f, "\n  {}: {overhead}.", self.verdict.path)?;
        }
        Ok(())
    }
}

impl Sentence<'_> {
    /// The verdict on the big file's copy.
    fn big_file(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (verdict, figures) = (self.verdict, self.figures);
        match &figures.destination {
            Destination::Share { fs_type } => write!(f, "{fs_type} share: ")?,
            Destination::LocalDir | Destination::Server => write!(f, "{}: ", verdict.path)?,
        }
        match figures.copy {
            Some(copy) => write!(f, "{copy} disk to disk — ")?,
            None if verdict.path == TransportKind::Udp => write!(
                f,
                "carries no files (UDP loses datagrams), so a copy over it would be "
            )?,
            None => write!(f, "no copy measured — ")?,
        }
        if let Some(doubt) = &verdict.doubt {
            return write!(f, "cannot judge from these figures: {doubt}.");
        }
        match (verdict.cpu_bound, &figures.destination) {
            (true, Destination::Server) => write!(f, "CPU/cipher bound: ")?,
            // No cipher on a local path: the CPU that was saturated is this machine's.
            (true, _) => write!(f, "CPU bound (this machine's): ")?,
            (false, _) => {}
        }
        let names: Vec<&str> = verdict.bottleneck.iter().map(|s| s.name()).collect();
        write!(f, "limited by {}", names.join(" and "))?;
        for stage in &verdict.bottleneck {
            write!(f, " ({})", stage_figure(*stage, figures))?;
            if *stage == Stage::Share {
                // Nobody measured the NAS's disk alone: say what the figure cannot separate.
                write!(
                    f,
                    ": the NAS's disk or its sharing protocol, which a serve on the NAS (--net) \
                     tells apart"
                )?;
            }
        }
        let explained = |stage: &Stage| {
            // The NAS's disk and the protocol are what the share's write figure came down to.
            verdict.bottleneck.contains(stage)
                || (*stage == Stage::Share
                    && verdict
                        .bottleneck
                        .iter()
                        .any(|s| matches!(s, Stage::NasDisk | Stage::ShareProtocol)))
        };
        let others: Vec<String> = considered(figures)
            .into_iter()
            .map(|(stage, _)| stage)
            .filter(|s| !explained(s) && !verdict.missing.contains(s))
            .map(|s| format!("{} {}", s.name(), stage_figure(s, figures)))
            .collect();
        if !others.is_empty() {
            write!(f, "; {}", others.join(", "))?;
        }
        match verdict.efficiency {
            Some(e) if e > 1.0 => write!(
                f,
                ". Efficiency {:.0}%: at the bound (within the {:.0}% noise)",
                e * 100.0,
                verdict.noise * 100.0
            )?,
            Some(e) => write!(f, ". Efficiency {:.0}%", e * 100.0)?,
            None => {}
        }
        if !verdict.missing.is_empty() {
            let missing: Vec<&str> = verdict.missing.iter().map(|s| s.name()).collect();
            write!(f, " (not measured: {})", missing.join(", "))?;
        }
        f.write_str(".")
    }
}

/// "write 410 MB/s (3.28 Gb/s), SATA SSD class" and the like.
fn stage_figure(stage: Stage, figures: &Figures) -> String {
    match stage {
        Stage::SourceDisk => figures
            .source_read
            .map(|r| format!("read {r}, {}", classes::place_device(r, Access::Read))),
        Stage::DestinationDisk => figures
            .destination_write
            .map(|r| format!("write {r}, {}", classes::place_device(r, Access::Write))),
        Stage::Network => figures
            .network
            .map(|r| match figures.network_is_link_speed {
                true => format!("link speed {r}, not measured, {}", classes::place_link(r)),
                false => format!("carries {r}, {}", classes::place_link(r)),
            }),
        Stage::Share => figures.destination_write.map(|r| match figures.network {
            Some(net) if net.bytes_per_sec > 0.0 => format!(
                "writes {r}, {:.0}% of the {}",
                100.0 * r.bytes_per_sec / net.bytes_per_sec,
                match figures.network_is_link_speed {
                    true => "link speed",
                    false => "network",
                }
            ),
            _ => format!("writes {r}"),
        }),
        Stage::NasDisk => match (figures.nas_disk, figures.destination_write) {
            (Some(disk), Some(share)) => Some(format!(
                "writes {disk} on its own, {}; the share writes {share}",
                classes::place_device(disk, Access::Write)
            )),
            _ => None,
        },
        Stage::ShareProtocol => match (figures.destination_write, figures.nas_disk) {
            (Some(share), Some(disk)) => Some(format!(
                "the share writes {share} while the NAS's disk writes {disk} on its own"
            )),
            _ => None,
        },
        Stage::SharedDisk => figures.shared_disk_rate().map(|(r, basis)| match basis {
            SharedDiskBound::Measured => format!("reading and writing at once, measured: {r}"),
            SharedDiskBound::Modelled => format!(
                "read {} and write {} in turn: {r}, modelled, not measured",
                figures
                    .source_read
                    .map(|r| r.to_string())
                    .unwrap_or_default(),
                figures
                    .destination_write
                    .map(|r| r.to_string())
                    .unwrap_or_default()
            ),
        }),
    }
    .unwrap_or_else(|| "not measured".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(rate: f64) -> Option<Rate> {
        Some(Rate::from_mb_per_sec(rate))
    }

    fn cpu(percent: f64) -> CpuUse {
        CpuUse {
            percent,
            ..CpuUse::default()
        }
    }

    #[test]
    fn the_slowest_stage_is_the_bottleneck_and_efficiency_is_copy_over_it() {
        let figures = Figures {
            source_read: mb(3000.0),
            network: mb(2600.0),
            destination_write: mb(410.0),
            copy: mb(398.0),
            cpu: vec![cpu(20.0)],
            shared_disk: false,
            ..Figures::default()
        };
        let verdict = judge(TransportKind::Tcp, &figures).unwrap();
        assert_eq!(verdict.bottleneck, vec![Stage::DestinationDisk]);
        assert!((verdict.bound().mb_per_sec() - 410.0).abs() < 1e-9);
        assert!((verdict.efficiency.unwrap() - 398.0 / 410.0).abs() < 1e-9);
        assert!(!verdict.cpu_bound);
        let sentence = Sentence {
            verdict: &verdict,
            figures: &figures,
        }
        .to_string();
        assert!(
            sentence.starts_with("tcp: 398 MB/s (3.18 Gb/s) disk to disk — limited by the destination disk (write 410 MB/s"),
            "{sentence}"
        );
        assert!(sentence.contains("SATA SSD class"), "{sentence}");
        assert!(sentence.contains("Efficiency 97%"), "{sentence}");
    }

    #[test]
    fn stages_within_five_percent_of_the_slowest_tie() {
        let figures = Figures {
            source_read: mb(1000.0),
            network: mb(1040.0),
            destination_write: mb(2000.0),
            ..Figures::default()
        };
        let verdict = judge(TransportKind::Tcp, &figures).unwrap();
        assert_eq!(verdict.bottleneck, vec![Stage::SourceDisk, Stage::Network]);
        assert_eq!(verdict.efficiency, None);
    }

    #[test]
    fn a_missing_stage_is_named_and_the_bound_comes_from_the_rest() {
        let figures = Figures {
            source_read: mb(1000.0),
            network: None,
            destination_write: mb(500.0),
            copy: mb(450.0),
            cpu: Vec::new(),
            shared_disk: false,
            ..Figures::default()
        };
        let verdict = judge(TransportKind::Tcp, &figures).unwrap();
        assert_eq!(verdict.bottleneck, vec![Stage::DestinationDisk]);
        assert_eq!(verdict.missing, vec![Stage::Network]);
        let sentence = Sentence {
            verdict: &verdict,
            figures: &figures,
        }
        .to_string();
        assert!(sentence.contains("not measured: the network"), "{sentence}");
        assert_eq!(judge(TransportKind::Tcp, &Figures::default()), None);
    }

    #[test]
    fn one_disk_serving_both_ends_is_judged_at_its_read_and_write_in_turn() {
        let figures = Figures {
            source_read: mb(1300.0),
            network: mb(10_000.0),
            destination_write: mb(2600.0),
            copy: mb(800.0),
            cpu: Vec::new(),
            shared_disk: true,
            ..Figures::default()
        };
        let verdict = judge(TransportKind::Tcp, &figures).unwrap();
        assert_eq!(verdict.bottleneck, vec![Stage::SharedDisk]);
        let in_turn = 1.0 / (1.0 / 1300.0 + 1.0 / 2600.0);
        assert!((verdict.bound().mb_per_sec() - in_turn).abs() < 1e-6);
        assert!((verdict.efficiency.unwrap() - 800.0 / in_turn).abs() < 1e-9);
        assert!(verdict.missing.is_empty());
        let sentence = Sentence {
            verdict: &verdict,
            figures: &figures,
        }
        .to_string();
        assert!(
            sentence.contains("limited by the one disk both ends share"),
            "{sentence}"
        );
    }

    #[test]
    fn a_slow_copy_with_a_saturated_cpu_is_cpu_bound() {
        let mut figures = Figures {
            source_read: mb(3000.0),
            network: mb(2500.0),
            destination_write: mb(3000.0),
            copy: mb(600.0),
            cpu: vec![cpu(35.0), cpu(99.0)],
            shared_disk: false,
            ..Figures::default()
        };
        assert!(judge(TransportKind::Tcp, &figures).unwrap().cpu_bound);
        figures.cpu = vec![cpu(35.0), cpu(40.0)];
        assert!(!judge(TransportKind::Tcp, &figures).unwrap().cpu_bound);
    }

    /// Figures in MB/s with a CPU at 40% of a core, the rest default.
    fn figures(read: f64, network: f64, write: f64, copy: f64) -> Figures {
        Figures {
            source_read: mb(read),
            network: mb(network),
            destination_write: mb(write),
            copy: mb(copy),
            cpu: vec![cpu(40.0)],
            ..Figures::default()
        }
    }

    fn sentence(verdict: &Verdict, figures: &Figures) -> String {
        Sentence { verdict, figures }.to_string()
    }

    #[test]
    fn a_shared_disk_measured_at_once_is_the_bound_and_the_sentence_says_measured() {
        let figures = Figures {
            shared_disk: true,
            shared_disk_read_write: mb(720.0),
            ..figures(1300.0, 10_000.0, 2600.0, 700.0)
        };
        let verdict = judge(TransportKind::Tcp, &figures).unwrap();
        assert_eq!(verdict.bottleneck, vec![Stage::SharedDisk]);
        assert_eq!(verdict.shared_disk_bound, Some(SharedDiskBound::Measured));
        assert!((verdict.bound_bytes_per_sec - 720e6).abs() < 1.0);
        let sentence = sentence(&verdict, &figures);
        assert!(
            sentence.contains("reading and writing at once, measured"),
            "{sentence}"
        );
    }

    #[test]
    fn a_shared_disk_without_its_own_figure_is_modelled_and_the_sentence_says_so() {
        let shared = Figures {
            shared_disk: true,
            ..figures(1300.0, 10_000.0, 2600.0, 700.0)
        };
        let verdict = judge(TransportKind::Tcp, &shared).unwrap();
        assert_eq!(verdict.shared_disk_bound, Some(SharedDiskBound::Modelled));
        let sentence = sentence(&verdict, &shared);
        assert!(sentence.contains("modelled, not measured"), "{sentence}");
        let separate = judge(
            TransportKind::Tcp,
            &figures(1300.0, 10_000.0, 2600.0, 700.0),
        )
        .unwrap();
        assert_eq!(separate.shared_disk_bound, None);
    }

    fn judged(copy: f64, spread: f64, suspect: Vec<String>) -> (Verdict, String) {
        let figures = Figures {
            suspect,
            spread,
            ..figures(3000.0, 1170.0, 2000.0, copy)
        };
        let verdict = judge(TransportKind::Tcp, &figures).unwrap();
        let sentence = sentence(&verdict, &figures);
        (verdict, sentence)
    }

    #[test]
    fn a_copy_a_little_above_its_bound_is_at_the_bound_within_noise() {
        let (verdict, sentence) = judged(1200.0, 0.0, Vec::new());
        assert_eq!(verdict.doubt, None);
        assert!(
            sentence.contains("Efficiency 103%: at the bound (within the 5% noise)"),
            "{sentence}"
        );
        assert!(sentence.contains("limited by the network"), "{sentence}");
    }

    #[test]
    fn a_copy_well_above_its_bound_is_not_judged() {
        let (verdict, sentence) = judged(1290.0, 0.0, Vec::new());
        assert!(verdict.doubt.is_some());
        assert!(sentence.contains("cannot judge"), "{sentence}");
        assert!(sentence.contains("110% of its bound"), "{sentence}");
        assert!(!sentence.contains("limited by"), "{sentence}");
    }

    #[test]
    fn with_repeats_their_spread_decides_what_is_noise() {
        let (verdict, sentence) = judged(1290.0, 0.15, Vec::new());
        assert_eq!(verdict.doubt, None, "{sentence}");
        assert!(sentence.contains("within the 15% noise"), "{sentence}");
    }

    #[test]
    fn a_marked_figure_stops_the_verdict_and_is_named() {
        let (verdict, sentence) = judged(
            1000.0,
            0.0,
            vec!["the source read: 4000 MB/s is above what could carry it".into()],
        );
        assert!(verdict.doubt.is_some());
        assert!(
            sentence.contains("a figure is marked: the source read"),
            "{sentence}"
        );
    }

    /// A share's figures in MB/s: source read, network, share write, copy, NAS disk.
    fn share(network: f64, write: f64, nas_disk: Option<f64>) -> Figures {
        Figures {
            destination: Destination::Share {
                fs_type: "nfs4".into(),
            },
            nas_disk: nas_disk.and_then(mb),
            ..figures(2000.0, network, write, write * 0.95)
        }
    }

    #[test]
    fn a_share_writing_at_the_links_rate_is_limited_by_the_link_not_the_nas() {
        let figures = share(117.0, 113.0, None);
        let verdict = judge(TransportKind::Local, &figures).unwrap();
        assert_eq!(verdict.bottleneck, vec![Stage::Network]);
        let sentence = sentence(&verdict, &figures);
        assert!(sentence.starts_with("nfs4 share: "), "{sentence}");
        assert!(sentence.contains("limited by the network"), "{sentence}");
        assert!(sentence.contains("the share writes 113 MB/s"), "{sentence}");
        assert!(!sentence.contains("NAS"), "{sentence}");
    }

    #[test]
    fn a_share_losing_a_protocols_share_of_its_link_is_still_limited_by_the_link() {
        // The lab VM's NFS on a 40 Mbit/s tbf link: 3.83 MB/s of 4.68.
        let figures = share(4.68, 3.83, Some(9.1));
        let verdict = judge(TransportKind::Local, &figures).unwrap();
        assert_eq!(verdict.bottleneck, vec![Stage::Network]);
        let sentence = sentence(&verdict, &figures);
        assert!(
            sentence.contains("the share writes 3.83 MB/s (30.6 Mb/s), 82% of the network"),
            "{sentence}"
        );
        // Well below its link and its NAS's disk, it is the protocol.
        let slow = share(4.68, 3.0, Some(9.1));
        let verdict = judge(TransportKind::Local, &slow).unwrap();
        assert_eq!(verdict.bottleneck, vec![Stage::ShareProtocol]);
    }

    #[test]
    fn a_share_below_its_link_is_the_nass_disk_when_that_disk_writes_no_faster() {
        let figures = share(1170.0, 180.0, Some(185.0));
        let verdict = judge(TransportKind::Local, &figures).unwrap();
        assert_eq!(verdict.bottleneck, vec![Stage::NasDisk]);
        let sentence = sentence(&verdict, &figures);
        assert!(
            sentence.contains("limited by the NAS's disk (writes 185 MB/s"),
            "{sentence}"
        );
        assert!(sentence.contains("the share writes 180 MB/s"), "{sentence}");
    }

    #[test]
    fn a_share_below_both_its_link_and_the_nass_disk_is_the_sharing_protocol() {
        let figures = share(1170.0, 300.0, Some(2000.0));
        let verdict = judge(TransportKind::Local, &figures).unwrap();
        assert_eq!(verdict.bottleneck, vec![Stage::ShareProtocol]);
        let sentence = sentence(&verdict, &figures);
        assert!(
            sentence.contains("limited by the sharing protocol (the share writes 300 MB/s"),
            "{sentence}"
        );
        assert!(
            sentence.contains("the network carries 1.17 GB/s"),
            "{sentence}"
        );
    }

    #[test]
    fn a_share_without_a_serve_on_the_nas_names_the_share_and_an_unmeasured_link() {
        let figures = Figures {
            network_is_link_speed: true,
            ..share(1250.0, 300.0, None)
        };
        let verdict = judge(TransportKind::Local, &figures).unwrap();
        assert_eq!(verdict.bottleneck, vec![Stage::Share]);
        let sentence = sentence(&verdict, &figures);
        assert!(
            sentence.contains("limited by the share (writes 300 MB/s (2.40 Gb/s), 24% of the link speed): the NAS's disk or its sharing protocol"),
            "{sentence}"
        );
        assert!(
            sentence.contains("the network link speed 1.25 GB/s (10.0 Gb/s), not measured"),
            "{sentence}"
        );
    }

    #[test]
    fn a_local_directory_has_no_network_stage_to_miss() {
        let figures = Figures {
            destination: Destination::LocalDir,
            ..figures(2000.0, 0.0, 500.0, 480.0)
        };
        let figures = Figures {
            network: None,
            ..figures
        };
        let verdict = judge(TransportKind::Local, &figures).unwrap();
        assert_eq!(verdict.bottleneck, vec![Stage::DestinationDisk]);
        assert!(verdict.missing.is_empty(), "{verdict:?}");
        assert!(!sentence(&verdict, &figures).contains("network"));
    }

    /// A path's figures with its big copy at 400 MB/s and 1,000 files of 1 MiB at `small` MB/s.
    fn with_small_files(small: f64) -> Figures {
        let rate = Rate::from_mb_per_sec(small);
        Figures {
            small_files: Some(SmallFilesFigure {
                files: 1000,
                file_size: 1 << 20,
                rate,
                files_per_sec: rate.bytes_per_sec / (1 << 20) as f64,
            }),
            ..figures(3000.0, 1170.0, 410.0, 400.0)
        }
    }

    #[test]
    fn small_files_far_below_the_big_copy_are_called_per_file_overhead() {
        let figures = with_small_files(40.0);
        let verdict = judge(TransportKind::Tcp, &figures).unwrap();
        let overhead = verdict.per_file_overhead.expect("per-file overhead");
        assert!(
            (overhead.fraction_of_copy - 0.1).abs() < 1e-9,
            "{overhead:?}"
        );
        let sentence = sentence(&verdict, &figures);
        let (big, small) = sentence.split_once('\n').expect("a second line");
        assert!(
            big.contains("limited by the destination disk"),
            "{sentence}"
        );
        assert!(
            small.contains(
                "tcp: per-file overhead: 1000 files of 1 MiB reach 40.0 MB/s (320 Mb/s), 10% of \
                 the big-file copy (38 files/s)"
            ),
            "{sentence}"
        );
        assert!(small.contains("open, fsync and rename"), "{sentence}");
        // The bottleneck is still the big copy's: the overhead is said beside it.
        assert_eq!(verdict.bottleneck, vec![Stage::DestinationDisk]);
    }

    #[test]
    fn small_files_near_the_big_copy_are_not_called_overhead() {
        let figures = with_small_files(PER_FILE_OVERHEAD * 400.0 * 1.2);
        let verdict = judge(TransportKind::Tcp, &figures).unwrap();
        assert_eq!(verdict.per_file_overhead, None);
        assert!(!sentence(&verdict, &figures).contains("per-file"));
        // Without a big copy there is nothing to hold the small files to.
        let no_copy = Figures {
            copy: None,
            ..with_small_files(1.0)
        };
        let verdict = judge(TransportKind::Tcp, &no_copy).unwrap();
        assert_eq!(verdict.per_file_overhead, None);
    }
}
