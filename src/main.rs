use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use xferbench::cli::{
    Cli, Command, CopyArgs, DiskArgs, GenArgs, LatArgs, NetArgs, RunArgs, ServeArgs, Usage,
};
use xferbench::disk::GenOptions;
use xferbench::disk::{self, BaselineOptions};
use xferbench::interrupt::{self, Interrupted};
use xferbench::plan::{self, RunOptions};
use xferbench::progress::{IntervalLines, Progress, Style};
use xferbench::report;
use xferbench::report::export::{ExportManager, Format};
use xferbench::serve::{self, ServeOptions};
use xferbench::transport::rdma::Rdma;
use xferbench::transport::ssh::Ssh;
use xferbench::transport::tcp::Tcp;
use xferbench::transport::udp::Udp;
use xferbench::transport::{CopyPlan, LatPlan, Location, NetPlan, Peer, Transport, TransportKind};
use xferbench::warning::Warning;

/// Bytes per write of `net` over a stream path, like iperf3's 128 KiB.
const DEFAULT_NET_LEN: usize = 128 << 10;

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
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.chain().any(|cause| cause.is::<Interrupted>()) => {
            match &cli.command {
                // Nothing of theirs lands on a disk.
                Command::Net(_) | Command::Lat(_) => eprintln!("xferbench: interrupted"),
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

/// Warnings on stderr; in text, a stop by Ctrl-C on stdout too, under the summary it qualifies.
fn print_warnings(warnings: &[Warning], json: bool) {
    if !json {
        for warning in warnings {
            if matches!(warning, Warning::Interrupted { .. }) {
                println!("{warning}");
            }
        }
    }
    eprint!("{}", report::text::warnings(warnings));
}

/// HOST[:PORT] as net and lat take it; a user@ only with --via ssh. Errors: [`Usage`].
fn peer_arg(text: &str, via: TransportKind) -> Result<Peer> {
    let peer = Peer::parse(text).map_err(as_usage)?;
    if via != TransportKind::Ssh {
        peer.without_user(&via.to_string()).map_err(as_usage)?;
    }
    Ok(peer)
}

/// An error in what the user typed, as a [`Usage`] error (exit 2).
fn as_usage(err: anyhow::Error) -> anyhow::Error {
    Usage(format!("{err:#}")).into()
}

/// A command line the command cannot run with: said the way clap says its own, exit 2.
fn usage_error(usage: &Usage) -> ExitCode {
    eprintln!("error: {usage}\n\nFor more information, try '--help'.");
    ExitCode::from(2)
}

fn generate(args: &GenArgs, progress: &Progress) -> Result<()> {
    let options = GenOptions {
        path: args.file.clone(),
        size: args.size,
        fill: args.fill,
        force: args.force,
        pattern: args.engine.pattern(),
        engine: args.engine.engine,
    };
    let made = disk::generate(&options, progress)?;
    print!("{}", report::text::generated(&made));
    eprint!("{}", report::text::warnings(&made.warnings));
    Ok(())
}

fn disk(args: &DiskArgs, progress: &Progress) -> Result<()> {
    let options = BaselineOptions {
        path: args.path.clone(),
        size: args.size,
        pattern: args.engine.pattern(),
        direct: args.direct(),
        evict: !args.keep_cache,
        engine: args.engine.engine,
        passes: args.passes(),
    };
    let result = disk::baseline(&options, progress)?;
    if args.json {
        println!("{}", report::json::render("disk", &result));
    } else {
        print!("{}", report::text::baseline(&result));
    }
    eprint!("{}", report::text::warnings(&result.warnings));
    Ok(())
}

fn serve(args: &ServeArgs) -> Result<()> {
    let options = ServeOptions {
        listen: args.listen,
        root: args.root.clone(),
        token: args.token()?,
        max_bytes: args.max_bytes,
        max_clients: args.max_clients,
        idle_timeout: std::time::Duration::from_secs_f64(args.idle_timeout),
        ssh: args.ssh(),
        rdma: args.rdma.options(),
    };
    serve::run(
        options,
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
    let peer = peer_arg(&args.host, args.via)?;
    let plan = NetPlan {
        streams: args.parallel,
        secs: args.secs,
        omit_secs: args.omit,
        interval_secs: args.interval,
        // UDP's 0: the largest datagram that fits the path MTU, known once connected.
        len: args.length.unwrap_or(match args.via {
            TransportKind::Udp => 0,
            _ => DEFAULT_NET_LEN,
        }),
        window: args.window,
        directions: args.directions(),
        queue_depth: args.queue_depth,
        rate: args.bitrate,
    };
    let transport: Box<dyn Transport> = match args.via {
        TransportKind::Tcp => Box::new(Tcp::new(peer, args.token.token()?)?),
        TransportKind::Ssh => Box::new(Ssh::new(&peer, &args.ssh.login(&[]))?),
        TransportKind::Rdma => Box::new(Rdma::new(peer, args.token.token()?, args.rdma.options())?),
        TransportKind::Udp => Box::new(Udp::new(peer, args.token.token()?)?),
    };
    let lines = IntervalLines::new(args.bidir, !args.json);
    let report = transport.mem_to_mem(&plan, &lines)?;
    if args.json {
        println!("{}", report::json::render("net", &report));
    } else {
        print!("{}", report::text::net_summary(&report));
    }
    print_warnings(&report.warnings, args.json);
    // The partial figures are out; the exit status still says the test was cut short.
    interrupt::check()?;
    Ok(())
}

fn lat(args: &LatArgs) -> Result<()> {
    let peer = peer_arg(&args.host, args.via)?;
    let transport: Box<dyn Transport> = match args.via {
        TransportKind::Tcp => Box::new(Tcp::new(peer, args.token.token()?)?),
        TransportKind::Ssh => Box::new(Ssh::new(&peer, &args.ssh.login(&[]))?),
        TransportKind::Rdma => Box::new(Rdma::new(peer, args.token.token()?, args.rdma.options())?),
        TransportKind::Udp => Box::new(Udp::new(peer, args.token.token()?)?),
    };
    let plan = LatPlan {
        size: args.size,
        rounds: args.rounds(),
    };
    let report = transport.latency(&plan)?;
    if args.json {
        println!("{}", report::json::render("lat", &report));
    } else {
        print!("{}", report::text::lat(&report));
    }
    print_warnings(&report.warnings, args.json);
    interrupt::check()?;
    Ok(())
}

fn copy(args: &CopyArgs, progress: &Progress) -> Result<()> {
    let source = Location::parse(&args.source).map_err(as_usage)?;
    let destination = Location::parse(&args.destination).map_err(as_usage)?;
    let peer = match (&source, &destination) {
        (Location::Local(_), Location::Remote { peer, .. }) => peer.clone(),
        (Location::Remote { peer, .. }, Location::Local(_)) => peer.clone(),
        (Location::Local(_), Location::Local(_)) => {
            return Err(Usage(format!(
                "both {} and {} are local: one of them must be HOST[:PORT]:PATH",
                args.source, args.destination
            ))
            .into());
        }
        (Location::Remote { .. }, Location::Remote { .. }) => {
            return Err(Usage(format!(
                "both {} and {} are remote: copy goes between this machine and one server",
                args.source, args.destination
            ))
            .into());
        }
    };
    if args.via != TransportKind::Ssh {
        peer.without_user(&args.via.to_string()).map_err(as_usage)?;
    }
    let plan = CopyPlan {
        source,
        destination,
        streams: args.parallel,
        chunk: args.block,
        iodepth: args.iodepth,
        verify: args.verify,
        force: args.force,
    };
    let transport: Box<dyn Transport> = match args.via {
        TransportKind::Tcp => Box::new(Tcp::new(peer, args.token.token()?)?),
        TransportKind::Ssh => Box::new(Ssh::new(&peer, &args.ssh.login(&args.identity_short))?),
        TransportKind::Rdma => Box::new(Rdma::new(peer, args.token.token()?, args.rdma.options())?),
        TransportKind::Udp => Box::new(Udp::new(peer, args.token.token()?)?),
    };
    let report = transport.copy(&plan, progress)?;
    if args.json {
        println!("{}", report::json::render("copy", &report));
    } else {
        print!("{}", report::text::copy(&report));
    }
    eprint!("{}", report::text::warnings(&report.warnings));
    Ok(())
}

fn run(args: &RunArgs, progress: &Progress) -> Result<()> {
    let options = RunOptions {
        host: args.host.clone(),
        token: args.token.token()?,
        paths: args.via.clone(),
        dir: args.dir.clone(),
        size: args.size,
        streams: args.parallel,
        net_secs: args.secs,
        repeat: args.repeat,
        pattern: args.engine.pattern(),
        ssh: args.ssh.login(&[]),
        remote_dir: args.remote_dir.clone(),
        rdma: args.rdma.options(),
    };
    // Files are created now, so a bad path fails before a long run, not after it.
    let mut exports = ExportManager::new();
    for (format, path) in [
        (Format::Json, &args.json),
        (Format::Csv, &args.csv),
        (Format::Markdown, &args.markdown),
        (Format::Svg, &args.plot),
    ] {
        if let Some(path) = path {
            exports.add(format, path)?;
        }
    }
    let report = plan::run(&options, progress).inspect_err(|_| exports.discard())?;
    // The report and every file are written even when a path failed or Ctrl-C stopped the run:
    // what was measured stands.
    let written = exports.write_all(&report);
    if args.json_stdout {
        println!("{}", report::json::render("run", &report));
        eprint!("{}", report::text::warnings(&report.warnings));
    } else {
        print!("{}", report::text::run(&report));
    }
    written?;
    if report.interrupted {
        return Err(Interrupted.into());
    }
    let failed: Vec<String> = report
        .failures()
        .map(|(path, failure)| format!("{path} ({})", failure.stage))
        .collect();
    if !failed.is_empty() {
        anyhow::bail!(
            "{} of {} paths failed: {}; the report holds their reasons and the other figures",
            failed.len(),
            report.paths.len(),
            failed.join(", ")
        );
    }
    Ok(())
}
