use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use xferbench::cli::{Cli, Command, DiskArgs, GenArgs};
use xferbench::disk::{self, BaselineOptions};
use xferbench::file::{self, GenOptions};
use xferbench::interrupt::{self, Interrupted};
use xferbench::progress::{Progress, Style};
use xferbench::report;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(err) = interrupt::install() {
        eprintln!(
            "xferbench: cannot catch Ctrl-C ({err}); an interrupted run may leave temporary files"
        );
    }
    let progress = Progress::new(Style::detect(cli.quiet));
    let outcome = match &cli.command {
        Command::Gen(args) => generate(args, &progress),
        Command::Disk(args) => disk(args, &progress),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.chain().any(|cause| cause.is::<Interrupted>()) => {
            eprintln!("xferbench: interrupted; temporary files removed");
            ExitCode::from(130)
        }
        Err(err) => {
            eprintln!("xferbench: {err:#}");
            ExitCode::FAILURE
        }
    }
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
    let made = file::generate(&options, progress)?;
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
