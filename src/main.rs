use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use serde::Serialize;

use xferbench::cli::{
    Cli, Command, CopyArgs, DiffArgs, DiskArgs, GenArgs, LatArgs, MeshArgs, NetArgs, RunArgs,
    ServeArgs, Usage,
};
use xferbench::disk;
use xferbench::interrupt::{self, Interrupted};
use xferbench::measure::Watcher;
use xferbench::plan;
use xferbench::progress::{IntervalLines, Progress, Style};
use xferbench::report;
use xferbench::report::export::ExportManager;
use xferbench::serve;
use xferbench::warning::Warning;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(err) = cli.check() {
        return usage_error(&err);
    }
    if let Err(err) = interrupt::install() {
        eprintln!(
            "xferbench: cannot catch Ctrl-C ({err}); an interrupted run may leave temporary files"
        );
    }
    let progress = Progress::new(Style::detect(cli.quiet));
    let outcome = match &cli.command {
        Command::Gen(args) => generate(args, &progress),
        Command::Disk(args) => disk(args, &progress),
        Command::Serve(args) => serve(args),
        Command::Net(args) => net(args),
        Command::Lat(args) => lat(args),
        Command::Copy(args) => copy(args, &progress),
        Command::Run(args) => run(args, &progress),
        Command::Mesh(args) => mesh(args),
        Command::PeerTest => return peer_test(),
        Command::Diff(args) => match diff(args) {
            Ok(code) => return code,
            Err(err) => Err(err),
        },
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.chain().any(|cause| cause.is::<Interrupted>()) => {
            match &cli.command {
                // Nothing of theirs lands on a disk.
                Command::Net(_) | Command::Lat(_) | Command::Mesh(_) => {
                    eprintln!("xferbench: interrupted")
                }
                Command::Copy(args) if args.resume && !args.recursive => eprintln!(
                    "xferbench: interrupted; the temporary file is kept: the same copy with --resume goes on from it"
                ),
                _ => eprintln!("xferbench: interrupted; temporary files removed"),
            }
            ExitCode::from(130)
        }
        Err(err) => match err.chain().find_map(|cause| cause.downcast_ref::<Usage>()) {
            Some(usage) => usage_error(usage),
            None => {
                eprintln!("xferbench: {err:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// A serve's peer test in a process of its own: the job on stdin, the outcome on stdout;
/// SIGINT from the serve stops it as Ctrl-C stops a command (exit 130).
fn peer_test() -> ExitCode {
    let (outcome, interrupted) = serve::run_peer_job(std::io::stdin().lock());
    match serde_json::to_string(&outcome) {
        Ok(line) => println!("{line}"),
        Err(err) => eprintln!("xferbench peer-test: {err}"),
    }
    if interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    }
}

/// Where a command's report goes on stdout: text, one JSON object (`-J`), or a stream of JSON
/// lines as things happen (`--json-stream`), its last line the report.
enum Out {
    Text,
    Json,
    Stream(report::stream::JsonStream),
}

impl Out {
    /// Starts the stream (its `start` line) when asked for.
    fn new(command: &str, json: bool, json_stream: bool) -> Out {
        match (json, json_stream) {
            (_, true) => Out::Stream(report::stream::JsonStream::start(command)),
            (true, false) => Out::Json,
            (false, false) => Out::Text,
        }
    }

    /// `progress` and, when streaming, the stream beside it.
    fn watcher<'a>(&'a self, progress: &'a dyn Watcher) -> report::stream::Beside<'a> {
        report::stream::Beside {
            stream: match self {
                Out::Stream(stream) => Some(stream),
                _ => None,
            },
            watcher: progress,
        }
    }
}

/// A report as JSON (`-J`), as a stream's last line, or as text on stdout, then its warnings on
/// stderr; in text, a stop by Ctrl-C also on stdout, under the summary it qualifies.
fn print_report<T: Serialize>(
    command: &str,
    out: &Out,
    report: &T,
    text: impl FnOnce(&T) -> String,
    warnings: &[Warning],
) {
    match out {
        Out::Json => println!("{}", report::json::render(command, report)),
        Out::Stream(stream) => stream.end(report),
        Out::Text => {
            print!("{}", text(report));
            for warning in warnings {
                if matches!(warning, Warning::Interrupted { .. }) {
                    println!("{warning}");
                }
            }
        }
    }
    eprint!("{}", report::text::warnings(warnings));
}

/// A command line the command cannot run with: said the way clap says its own, exit 2.
fn usage_error(usage: &Usage) -> ExitCode {
    eprintln!("error: {usage}\n\nFor more information, try '--help'.");
    ExitCode::from(2)
}

fn generate(args: &GenArgs, progress: &Progress) -> Result<()> {
    let made = disk::generate(&args.options(), progress)?;
    print!("{}", report::text::generated(&made));
    eprint!("{}", report::text::warnings(&made.warnings));
    Ok(())
}

fn disk(args: &DiskArgs, progress: &Progress) -> Result<()> {
    let out = Out::new("disk", args.json, args.json_stream);
    let watcher = out.watcher(progress);
    let mut result = disk::baseline(&args.options(), &watcher)?;
    if let Some(options) = args.durability() {
        let probe = disk::durability::probe(&options, &watcher)?;
        result.warnings.extend(probe.warnings.iter().cloned());
        result.durability = Some(probe);
    }
    print_report(
        "disk",
        &out,
        &result,
        report::text::baseline,
        &result.warnings,
    );
    Ok(())
}

fn serve(args: &ServeArgs) -> Result<()> {
    serve::run(
        args.options()?,
        |listening| {
            use std::io::Write;
            println!("listening on {}", listening.addr);
            println!("root {}", listening.root.display());
            match (&listening.token, listening.token_generated) {
                (Some(token), true) => {
                    println!("token {token} (generated: clients pass --token {token})")
                }
                (Some(_), false) => println!("token required (as given)"),
                (None, _) => println!("no token required (loopback only)"),
            }
            if let Some(ssh) = &listening.ssh {
                println!("ssh listening on {}", ssh.addr);
                println!(
                    "ssh host key {} ({}): {}",
                    ssh.fingerprint(),
                    if ssh.host_key_generated {
                        "generated for this run; give --host-key FILE to keep one"
                    } else {
                        "from --host-key"
                    },
                    ssh.host_key_text()
                );
                println!("ssh authorized keys: {}", ssh.authorized);
                for skipped in &ssh.skipped {
                    println!("{skipped}");
                }
            }
            let _ = std::io::stdout().flush();
        },
        |line| {
            use std::io::Write;
            println!("{line}");
            let _ = std::io::stdout().flush();
        },
    )
}

fn net(args: &NetArgs) -> Result<()> {
    let transport = args.transport()?;
    let out = Out::new("net", args.json, args.json_stream);
    let lines = IntervalLines::new(args.bidir, matches!(out, Out::Text));
    let watcher: &dyn Watcher = match &out {
        Out::Stream(stream) => stream,
        _ => &lines,
    };
    let result = transport.mem_to_mem(&args.plan(), watcher)?;
    print_report(
        "net",
        &out,
        &result,
        report::text::net_summary,
        &result.warnings,
    );
    // The partial figures are out; the exit status still says the test was cut short.
    interrupt::check()?;
    Ok(())
}

fn lat(args: &LatArgs) -> Result<()> {
    let out = Out::new("lat", args.json, args.json_stream);
    let result = args.transport()?.latency(&args.plan())?;
    print_report("lat", &out, &result, report::text::lat, &result.warnings);
    interrupt::check()?;
    Ok(())
}

fn copy(args: &CopyArgs, progress: &Progress) -> Result<()> {
    let out = Out::new("copy", args.json, args.json_stream);
    let watcher = out.watcher(progress);
    if args.recursive {
        return copy_tree(args, &out, &watcher);
    }
    let result = match args.plan()? {
        (Some(transport), plan) => transport.copy(&plan, &watcher)?,
        (None, plan) => xferbench::transport::local::copy(&plan, args.stall(), &watcher)?,
    };
    print_report("copy", &out, &result, report::text::copy, &result.warnings);
    Ok(())
}

fn copy_tree(args: &CopyArgs, out: &Out, watcher: &dyn Watcher) -> Result<()> {
    let result = match args.tree_plan()? {
        (Some(transport), plan) => transport.copy_tree(&plan, watcher)?,
        (None, plan) => xferbench::transport::tree::copy(&plan, watcher)?,
    };
    print_report("copy", out, &result, report::text::tree, &result.warnings);
    if result.failed.total > 0 {
        anyhow::bail!(
            "{} of the tree's entries failed ({}); the rest landed",
            result.failed.total,
            match args.json {
                true => "the JSON's failed.shown lists them",
                false => "listed above",
            }
        );
    }
    Ok(())
}

fn run(args: &RunArgs, progress: &Progress) -> Result<()> {
    let options = args.options()?;
    // Files are created now, so a bad path fails before a long run, not after it.
    let mut exports = ExportManager::new();
    for (format, path) in args.exports() {
        exports.add(format, path)?;
    }
    let out = Out::new("run", args.json_stdout, args.json_stream);
    let watcher = out.watcher(progress);
    let result = plan::run(&options, &watcher).inspect_err(|_| exports.discard())?;
    if let Out::Stream(stream) = &out {
        for path in &result.paths {
            stream.verdict(&serde_json::json!({
                "path": path.path,
                "verdict": path.verdict,
                "sentence": path.sentence,
            }));
        }
    }
    // The report and every file are written even when a path failed or Ctrl-C stopped the run:
    // what was measured stands.
    let written = exports.write_all(&result);
    // The text report says its warnings itself.
    let warnings: &[Warning] = match out {
        Out::Text => &[],
        _ => &result.warnings,
    };
    print_report("run", &out, &result, report::text::run, warnings);
    written?;
    if result.interrupted {
        return Err(Interrupted.into());
    }
    let failed: Vec<String> = result
        .failures()
        .map(|(path, failure)| format!("{path} ({})", failure.step))
        .collect();
    if !failed.is_empty() {
        anyhow::bail!(
            "{} of {} paths failed: {}; the report holds their reasons and the other figures",
            failed.len(),
            result.paths.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// Compares two reports, or follows three or more; exit 1 with --fail-on-regression when a
/// figure got worse (in the last step of a trend). Reports that cannot be compared (other
/// commands, other schemas, not reports) are a usage error.
fn diff(args: &DiffArgs) -> Result<ExitCode> {
    use xferbench::diff::{self as compare, Mismatch};
    let as_usage = |err: anyhow::Error| match err.downcast::<Mismatch>() {
        Ok(mismatch) => anyhow::Error::new(Usage(mismatch.0)),
        Err(err) => err,
    };
    let mut reports = Vec::new();
    for path in &args.reports {
        let report = compare::read_report(path).map_err(as_usage)?;
        reports.push((path.display().to_string(), report));
    }
    let named: Vec<(&str, &serde_json::Value)> = reports
        .iter()
        .map(|(file, report)| (file.as_str(), report))
        .collect();
    let trend = compare::trend(&named, args.threshold).map_err(as_usage)?;
    let write = |path: &std::path::PathBuf, bytes: Vec<u8>| {
        std::fs::write(path, bytes)
            .map_err(|err| anyhow::anyhow!("cannot write {}: {err}", path.display()))
    };
    if let Some(path) = &args.svg {
        write(path, report::svg::trend(&trend)?.into_bytes())?;
    }
    let regressions = if let [(old_file, old), (new_file, new)] = named.as_slice() {
        let result =
            compare::diff((old, new), (old_file, new_file), args.threshold).map_err(as_usage)?;
        if let Some(path) = &args.markdown {
            write(path, report::markdown::diff(&result).into_bytes())?;
        }
        if args.json {
            println!("{}", report::json::render("diff", &result));
        } else {
            print!("{}", report::text::diff(&result));
        }
        result.regressions
    } else {
        if let Some(path) = &args.markdown {
            write(path, report::markdown::trend(&trend).into_bytes())?;
        }
        if args.json {
            println!("{}", report::json::render("diff", &trend));
        } else {
            print!("{}", report::text::trend(&trend));
        }
        trend.regressions
    };
    if args.fail_on_regression && regressions > 0 {
        eprintln!(
            "xferbench: {regressions} figure{} got worse beyond noise (--fail-on-regression)",
            if regressions == 1 { "" } else { "s" }
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn mesh(args: &MeshArgs) -> Result<()> {
    use xferbench::report::export::Format;
    let mut options = args.options()?;
    // Files are created now, so a bad path fails before the mesh runs, not after it.
    let mut exports = ExportManager::new();
    for (format, path) in args.exports() {
        exports.add(format, path)?;
    }
    // --ssh-launch: the serves are started now, each with a token of the launch's own, and
    // stopped as soon as the mesh is over, whatever it gave.
    let launched = match args.launch() {
        Some(launch) => Some(
            xferbench::mesh::launch::launch(&options.hosts, &launch)
                .inspect_err(|_| exports.discard())?,
        ),
        None => None,
    };
    if let Some(launched) = &launched {
        for (host, token) in options.hosts.iter_mut().zip(launched.tokens()) {
            host.token = Some(token);
        }
    }
    let result = xferbench::mesh::run(&options);
    let stopped = launched.map_or(Ok(()), |launched| launched.stop());
    if let Err(err) = &stopped {
        eprintln!("xferbench: {err:#}");
    }
    // Every file is written even when a pair failed or Ctrl-C stopped the mesh.
    let written = exports.write_each(|format| match format {
        Format::Csv => report::csv::mesh(&result),
        Format::Markdown => Ok(report::markdown::mesh(&result).into_bytes()),
        Format::Svg => report::svg::mesh(&result).map(String::into_bytes),
        Format::Json => anyhow::bail!("mesh writes no {format:?} file"),
    });
    // Each warning once, however many pairs gave it.
    let mut warnings: Vec<Warning> = Vec::new();
    for test in &result.tests {
        if let xferbench::mesh::Outcome::Measured(measured) = &test.outcome {
            for warning in &measured.warnings {
                if !warnings
                    .iter()
                    .any(|w| w.to_string() == warning.to_string())
                {
                    warnings.push(warning.clone());
                }
            }
        }
    }
    let out = if args.json { Out::Json } else { Out::Text };
    print_report("mesh", &out, &result, report::text::mesh, &warnings);
    written?;
    if result.interrupted {
        return Err(interrupt::Interrupted.into());
    }
    stopped.map_err(|_| anyhow::anyhow!("a serve started over SSH may still run: see above"))?;
    let failed = result.failures().count();
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} tests failed; {} says why{}",
            result.tests.len(),
            match args.json {
                true => "each one's error in the JSON",
                false => "the list above",
            },
            match failed == result.tests.len() {
                true => "",
                false => ", the other pairs were measured",
            }
        );
    }
    Ok(())
}
