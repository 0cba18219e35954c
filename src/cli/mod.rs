//! The command line: raw arguments (clap, `args`) → a recipe's trials loaded and checked once
//! (`run`) → a run, a sweep or Slurm jobs; the other subcommands (`tools`, `status`).

mod args;
mod run;
mod status;
mod tools;

use crate::backend;
use args::{Cli, Command, RecipeArgs};
use clap::Parser;
use std::process::ExitCode;

/// Entry point of the `kdrun` binary.
pub fn main() -> ExitCode {
    backend::install_gpu_fault_hook();
    let cli = Cli::parse();
    let overrides = match &cli.command {
        Some(Command::Run(args) | Command::Check(args)) => &args.overrides,
        _ => &cli.overrides,
    };
    if let Err(message) = overrides.check_flags() {
        use clap::CommandFactory;
        Cli::command()
            .error(clap::error::ErrorKind::ArgumentConflict, message)
            .exit();
    }
    match (&cli.command, &cli.recipe) {
        (Some(Command::Run(args)), _) => run::run(args),
        (Some(Command::Check(args)), _) => run::check(args),
        (Some(Command::Forward(args)), _) => tools::forward(args),
        (Some(Command::Report(args)), _) => tools::rerender(args),
        (Some(Command::Publish(args)), _) => tools::publish(args),
        (Some(Command::Bench(args)), _) => tools::bench(args),
        (Some(Command::Status(args)), _) => status::status(args),
        (Some(Command::Predict(args)), _) => tools::predict(args),
        (Some(Command::Fetch(args)), _) => tools::fetch(args),
        (Some(Command::Schema(args)), _) => tools::schema(args),
        (Some(Command::Export(args)), _) => tools::export(args),
        (Some(Command::ProbeWgpu), _) => match backend::probe_main() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e:#}");
                ExitCode::FAILURE
            }
        },
        (None, Some(recipe)) => run::run(&RecipeArgs {
            recipe: recipe.clone(),
            overrides: cli.overrides.clone(),
        }),
        (None, None) => {
            use clap::CommandFactory;
            let _ = Cli::command().print_help();
            ExitCode::from(2)
        }
    }
}

/// Exit code of a run that failed: 130 after Ctrl-C, else 1.
fn failure(e: &anyhow::Error) -> ExitCode {
    let message = format!("{e:#}");
    eprintln!("error: {message}");
    if let Some(hint) = backend::gpu_fault(&message) {
        eprintln!("{hint}");
    } else if crate::files::disk_full(e) && !message.contains("space ran out") {
        eprintln!(
            "space ran out on the disk of the file named above: free space there, or set \
             runtime.store / report.dir to a folder on another disk (the store keeps only whole \
             stages: an unfinished one's temporary folder is removed)"
        );
    }
    if e.downcast_ref::<crate::runtime::interrupt::Interrupted>()
        .is_some()
    {
        ExitCode::from(130)
    } else {
        ExitCode::FAILURE
    }
}

/// Exit code of a subcommand's result: 0, or `failure`'s.
fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failure(&e),
    }
}
