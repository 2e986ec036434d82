//! How fast the payload is made, and how fast the disk engines move it.
//!
//! * `random_fill/1MiB`: [`RandomFill`] on one core; it must beat any disk, or `gen` and the
//!   write baseline would measure the CPU instead of the disk.
//! * `stamped_fill/1MiB`: [`StampedFill`], what `disk`'s write pass writes: a memory copy and
//!   a random word per 4 KiB page, so it should run at several times `random_fill`.
//! * `engine/{write,read}_64MiB/{io_uring,psync}`: one sequential pass of 64 MiB in 1 MiB blocks,
//!   depth 8, O_DIRECT, exactly as `xferbench disk` does it (the write is timed through fsync).
//!
//! The test files go in a temporary directory under `XFERBENCH_BENCH_DIR` if set, else under the
//! system temp directory: point it at the disk you care about (tmpfs would measure memory).

use std::env;
use std::fs::File;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use tempfile::TempDir;
use xferbench::disk::{self, Engine, EngineChoice, Pattern};
use xferbench::file;
use xferbench::measure::Counter;
use xferbench::payload::{RandomFill, StampedFill};

const FILL_SIZE: usize = 1 << 20;
const PASS_SIZE: u64 = 64 << 20;
const PATTERN: Pattern = Pattern {
    block: 1 << 20,
    depth: 8,
};
const SEED: u64 = 0x5eed_f111;

fn random_fill(c: &mut Criterion) {
    let mut group = c.benchmark_group("random_fill");
    group.throughput(Throughput::BytesDecimal(FILL_SIZE as u64));
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    let mut random = RandomFill::with_seed(SEED);
    let mut buf = vec![0u8; FILL_SIZE];
    group.bench_function("1MiB", |b| {
        b.iter(|| {
            random.fill(black_box(&mut buf));
            black_box(&buf);
        })
    });
    group.finish();
    let mut group = c.benchmark_group("stamped_fill");
    group.throughput(Throughput::BytesDecimal(FILL_SIZE as u64));
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    let mut stamped = StampedFill::new(FILL_SIZE);
    group.bench_function("1MiB", |b| {
        b.iter(|| {
            stamped.fill(black_box(&mut buf));
            black_box(&buf);
        })
    });
    group.finish();
}

/// The directory the test files go in: `XFERBENCH_BENCH_DIR`, else the system temp directory.
fn bench_dir() -> TempDir {
    let base = env::var_os("XFERBENCH_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("xferbench-bench-")
        .tempdir_in(&base)
        .unwrap_or_else(|err| {
            panic!(
                "cannot make a temporary directory in {}: {err}",
                base.display()
            )
        });
    if file::is_tmpfs(dir.path()) {
        eprintln!(
            "note: {} is tmpfs: the engine figures are memory, not a disk",
            base.display()
        );
    }
    dir
}

fn engine_name(choice: EngineChoice) -> &'static str {
    match choice {
        EngineChoice::IoUring => "io_uring",
        EngineChoice::Psync => "psync",
        EngineChoice::Auto => "auto",
        EngineChoice::Null => "null",
    }
}

/// Why `choice` cannot start here, if it cannot (io_uring may be off by sysctl or seccomp).
fn unavailable(choice: EngineChoice, dir: &Path) -> Option<String> {
    let probe = tempfile::tempfile_in(dir).expect("a probe file in the bench directory");
    Engine::start(choice, &probe, 1)
        .err()
        .map(|err| err.to_string())
}

/// One benchmark's test file and running engine, made once and reused by every iteration.
/// Fields drop in order: the engine stops before its file closes.
struct Setup {
    engine: Engine,
    file: File,
    counter: Counter,
}

impl Setup {
    /// Creates `name` in `dir` (O_DIRECT), allocates it, and starts the engine on it.
    fn new(dir: &Path, name: &str, choice: EngineChoice) -> Setup {
        let path = dir.join(name);
        let (file, direct) = file::create_new(&path, true).expect("creating the test file");
        if !direct {
            eprintln!(
                "note: no O_DIRECT in {}: the engine figures go through the page cache",
                dir.display()
            );
        }
        file::allocate(&file, &path, PASS_SIZE).expect("allocating the test file");
        let (engine, fallback) =
            Engine::start(choice, &file, PATTERN.depth).expect("starting the engine");
        assert!(fallback.is_none(), "{choice:?} fell back: {fallback:?}");
        Setup {
            engine,
            file,
            counter: Counter::new(),
        }
    }

    fn write(&mut self, random: &mut RandomFill) -> u64 {
        let pass = disk::write_sequential(
            &mut self.engine,
            &self.file,
            PASS_SIZE,
            PATTERN,
            &mut |b| random.fill(b),
            &self.counter,
        )
        .expect("write pass");
        assert_eq!(pass.bytes, PASS_SIZE);
        pass.bytes
    }

    fn read(&mut self) -> u64 {
        let pass = disk::read_sequential(&mut self.engine, PASS_SIZE, PATTERN, &self.counter)
            .expect("read pass");
        assert_eq!(pass.bytes, PASS_SIZE);
        pass.bytes
    }
}

fn engine(c: &mut Criterion) {
    PATTERN.validate(true).expect("a valid pattern");
    let dir = bench_dir();
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::BytesDecimal(PASS_SIZE));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    // Each pass takes tens of milliseconds or more: equal samples need far fewer passes than linear ones.
    group.sampling_mode(SamplingMode::Flat);

    // null (fio's): no I/O, so its figure is what the engine and the pass cost on their own.
    for choice in [
        EngineChoice::IoUring,
        EngineChoice::Psync,
        EngineChoice::Null,
    ] {
        let name = engine_name(choice);
        if let Some(reason) = unavailable(choice, dir.path()) {
            eprintln!("skipping engine/*/{name}: {reason}");
            continue;
        }

        // Made on first use, so that benchmarks filtered out on the command line cost nothing;
        // criterion calls the closure once per sample, so the file cannot be made inside it.
        let mut writer: Option<(Setup, RandomFill)> = None;
        group.bench_function(BenchmarkId::new("write_64MiB", name), |b| {
            let (setup, random) = writer.get_or_insert_with(|| {
                (
                    Setup::new(dir.path(), &format!("write-{name}.dat"), choice),
                    RandomFill::with_seed(SEED),
                )
            });
            b.iter(|| setup.write(random))
        });
        drop(writer);

        let mut reader: Option<Setup> = None;
        group.bench_function(BenchmarkId::new("read_64MiB", name), |b| {
            let setup = reader.get_or_insert_with(|| {
                let mut setup = Setup::new(dir.path(), &format!("read-{name}.dat"), choice);
                // Written for real: unwritten extents would read back as zeros without touching the disk.
                setup.write(&mut RandomFill::with_seed(SEED));
                setup
            });
            b.iter(|| setup.read())
        });
        drop(reader);
    }
    group.finish();
}

criterion_group!(benches, random_fill, engine);
criterion_main!(benches);
