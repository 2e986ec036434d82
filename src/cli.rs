//! The command line: parsing and validation, nothing else.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::disk::{EngineChoice, Passes, Pattern};
use crate::file::FillMode;
use crate::units::parse_size;

/// How fast does a file really go from this disk to that disk, and what holds it back?
///
/// Sizes take K, M, G, T (powers of 1024, like fallocate and fio) or KB, MB, GB, TB (powers of
/// 1000). Figures are printed in decimal units (1 MB/s = 10^6 bytes/s) and in bits (Gb/s).
///
/// Exit status: 0 success, 1 failure (one line on stderr says what and where), 2 bad usage,
/// 130 interrupted (partial files removed).
#[derive(Debug, Parser)]
#[command(name = "xferbench", version, about, long_about, max_term_width = 100)]
pub struct Cli {
    /// No progress output on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make a test file: fallocate the full size, then fill it with random data (O_DIRECT).
    ///
    /// The file is written under a temporary name and renamed when complete, so an error or
    /// Ctrl-C never leaves a partial file behind.
    Gen(GenArgs),
    /// Measure a local disk: sequential write (timed through fsync) and read, O_DIRECT.
    ///
    /// PATH is a directory to write a test file in (removed afterwards), or an existing file
    /// to read. Each figure is placed against device classes (HDD, SATA SSD, NVMe) and link
    /// classes (1/10/25/40 GbE).
    Disk(DiskArgs),
}

/// Options shared by everything that drives the disk engine.
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// Block size of each read or write (fio's --bs); a multiple of 4K with O_DIRECT.
    #[arg(long = "bs", value_name = "SIZE", default_value = "1M", value_parser = parse_block)]
    pub block: usize,

    /// Blocks in flight at once (fio's --iodepth).
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub iodepth: usize,

    /// Disk engine: io_uring, or psync (pread/pwrite on IODEPTH threads) where io_uring is disabled.
    #[arg(long, value_enum, default_value_t = EngineChoice::Auto)]
    pub engine: EngineChoice,
}

impl EngineArgs {
    pub fn pattern(&self) -> Pattern {
        Pattern {
            block: self.block,
            depth: self.iodepth,
        }
    }
}

#[derive(Debug, Args)]
pub struct GenArgs {
    /// The file to create.
    pub file: PathBuf,

    /// Size of the file, e.g. 50G (50 GiB), 8GB (8×10^9 bytes), 512M.
    #[arg(short, long, value_name = "SIZE", value_parser = parse_size_arg, allow_hyphen_values = true)]
    pub size: u64,

    /// What to write after allocating: random (default), zero, or none (fallocate only).
    #[arg(long, value_enum, default_value_t = FillMode::Random)]
    pub fill: FillMode,

    /// Replace FILE if it exists.
    #[arg(short, long)]
    pub force: bool,

    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Debug, Args)]
pub struct DiskArgs {
    /// A directory to test in, or an existing file to read.
    pub path: PathBuf,

    /// Test size [default: 4G for a directory, the whole file for a file].
    #[arg(short, long, value_name = "SIZE", value_parser = parse_size_arg, allow_hyphen_values = true)]
    pub size: Option<u64>,

    /// Bypass the page cache with O_DIRECT (the default).
    #[arg(long, overrides_with = "buffered")]
    pub direct: bool,

    /// Go through the page cache; the file is fsynced and dropped from the cache before reading.
    #[arg(long)]
    pub buffered: bool,

    /// Only read (PATH must be an existing file).
    #[arg(long, conflicts_with = "write_only")]
    pub read_only: bool,

    /// Only write (PATH must be a directory).
    #[arg(long)]
    pub write_only: bool,

    /// Print the result as one JSON object on stdout instead of text.
    #[arg(short = 'J', long)]
    pub json: bool,

    #[command(flatten)]
    pub engine: EngineArgs,
}

impl DiskArgs {
    pub fn passes(&self) -> Passes {
        match (self.read_only, self.write_only) {
            (true, _) => Passes::ReadOnly,
            (_, true) => Passes::WriteOnly,
            _ => Passes::WriteThenRead,
        }
    }

    /// O_DIRECT unless --buffered came last.
    pub fn direct(&self) -> bool {
        !self.buffered
    }
}

fn parse_size_arg(text: &str) -> Result<u64, String> {
    parse_size(text).map_err(|err| err.to_string())
}

fn parse_block(text: &str) -> Result<usize, String> {
    parse_size_arg(text).and_then(|bytes| {
        usize::try_from(bytes).map_err(|_| format!("block size '{text}' is too large"))
    })
}
