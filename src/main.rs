use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use serde::Serialize;

use xferbench::cli::{
    Cli, Command, CopyArgs, DiskArgs, GenArgs, LatArgs, MeshArgs, NetArgs, RunArgs, ServeArgs,
    Usage,
};
use xferbench::disk;
use xferbench::interrupt::{self, Interrupted};
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

/// A report as JSON (`-J`) or text on stdout, then its warnings on stderr; in text, a stop by
/// Ctrl-C also on stdout, under the summary it qualifies.
fn print_report<T: Serialize>(
    command: &str,
    json: bool,
    report: &T,
    text: impl FnOnce(&T) -> String,
    warnings: &[Warning],
) {
    if json {
        println!("{}", report::json::render(command, report));
    } else {
        print!("{}", text(report));
        for warning in warnings {
            if matches!(warning, Warning::Interrupted { .. }) {
                println!("{warning}");
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
    let mut result = disk::baseline(&args.options(), progress)?;
    if let Some(options) = args.durability() {
        let probe = disk::durability::probe(&options, progress)?;
        result.warnings.extend(probe.warnings.iter().cloned());
        result.durability = Some(probe);
    }
    print_report(
        "disk",
        args.json,
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
    let lines = IntervalLines::new(args.bidir, !args.json);
    let result = transport.mem_to_mem(&args.plan(), &lines)?;
    print_report(
        "net",
        args.json,
        &result,
        report::text::net_summary,
        &result.warnings,
    );
    // The partial figures are out; the exit status still says the test was cut short.
    interrupt::check()?;
    Ok(())
}

fn lat(args: &LatArgs) -> Result<()> {
    let result = args.transport()?.latency(&args.plan())?;
    print_report(
        "lat",
        args.json,
        &result,
        report::text::lat,
        &result.warnings,
    );
    interrupt::check()?;
    Ok(())
}

fn copy(args: &CopyArgs, progress: &Progress) -> Result<()> {
    if args.recursive {
        return copy_tree(args, progress);
    }
    let result = match args.plan()? {
        (Some(transport), plan) => transport.copy(&plan, progress)?,
        (None, plan) => xferbench::transport::local::copy(&plan, args.stall(), progress)?,
    };
    print_report(
        "copy",
        args.json,
        &result,
        report::text::copy,
        &result.warnings,
    );
    Ok(())
}

fn copy_tree(args: &CopyArgs, progress: &Progress) -> Result<()> {
    let result = match args.tree_plan()? {
        (Some(transport), plan) => transport.copy_tree(&plan, progress)?,
        (None, plan) => xferbench::transport::tree::copy(&plan, progress)?,
    };
    print_report(
        "copy",
        args.json,
        &result,
        report::text::tree,
        &result.warnings,
    );
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
    let result = plan::run(&options, progress).inspect_err(|_| exports.discard())?;
    // The report and every file are written even when a path failed or Ctrl-C stopped the run:
    // what was measured stands.
    let written = exports.write_all(&result);
    // The text report says its warnings itself.
    let warnings: &[Warning] = match args.json_stdout {
        true => &result.warnings,
        false => &[],
    };
    print_report(
        "run",
        args.json_stdout,
        &result,
        report::text::run,
        warnings,
    );
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
    print_report("mesh", args.json, &result, report::text::mesh, &warnings);
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
