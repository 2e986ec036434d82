//! `gen`: test files done right. Allocated up front, filled with random data by O_DIRECT writes
//! through the disk engine, never left half-made under their final name.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;

use super::{EngineChoice, Pattern};
use crate::file::{self, Landing};
use crate::measure::{Measurement, Watcher, Workload, watch};
use crate::payload::RandomFill;
use crate::warning::Warning;

/// What `gen` writes into the file after allocating it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum FillMode {
    /// Fast pseudo-random data: incompressible, not dedupable, every read hits the disk.
    Random,
    /// Zeros, written for real (compressible: SSH and NAS figures will be inflated).
    Zero,
    /// Allocate only, like `fallocate -l`: reads return zeros without disk I/O.
    None,
}

/// What `xferbench gen` was asked to make.
#[derive(Debug, Clone)]
pub struct GenOptions {
    pub path: PathBuf,
    pub size: u64,
    pub fill: FillMode,
    pub force: bool,
    pub pattern: Pattern,
    pub engine: EngineChoice,
}

/// The file `gen` made, and how fast it was filled.
#[derive(Debug, Clone, Serialize)]
pub struct Generated {
    pub path: PathBuf,
    pub size: u64,
    pub fill: FillMode,
    pub measurement: Option<Measurement>,
    pub warnings: Vec<Warning>,
}

/// Makes a test file: checks room, allocates the full size, fills it, fsyncs, and renames it
/// into place. On error or Ctrl-C nothing is left under the final name or the temporary one.
pub fn generate(options: &GenOptions, watcher: &dyn Watcher) -> Result<Generated> {
    let path = &options.path;
    options.pattern.validate(true)?;
    let wants_direct = options.fill != FillMode::None;
    let landing = Landing::prepare(path, options.size, options.force, wants_direct)?;
    let mut warnings = Vec::new();
    if wants_direct && !landing.direct {
        warnings.push(Warning::DirectUnsupported {
            path: file::parent_dir(path),
        });
    }
    let handle = &landing.file;

    let measurement = match options.fill {
        FillMode::None => {
            handle
                .sync_all()
                .with_context(|| format!("fsync of {}", path.display()))?;
            warnings.push(Warning::UnfilledFile { path: path.clone() });
            None
        }
        fill => {
            let mut engine = super::start_blocking_engine(
                options.engine,
                handle,
                path,
                options.pattern.depth,
                &mut warnings,
            )?;
            // Buffers start zeroed and a zero fill never writes into them.
            let mut random = (fill == FillMode::Random).then(RandomFill::new);
            let mut fill_block = |block: &mut [u8]| {
                if let Some(random) = random.as_mut() {
                    random.fill(block);
                }
            };
            let pass = watch(watcher, "gen", options.size, |counter| {
                super::write_sequential(
                    &mut engine,
                    handle,
                    options.size,
                    options.pattern,
                    &mut fill_block,
                    counter,
                )
            })
            .with_context(|| format!("filling {}", path.display()))?;
            if fill == FillMode::Zero {
                warnings.push(Warning::ZeroFilled { path: path.clone() });
            }
            Some(
                pass.into_measurement(
                    Workload::Fill,
                    options
                        .pattern
                        .conditions(landing.direct, true, &engine, path),
                ),
            )
        }
    };
    landing.commit()?;
    Ok(Generated {
        path: path.clone(),
        size: options.size,
        fill: options.fill,
        measurement,
        warnings,
    })
}
