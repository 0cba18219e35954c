//! `kdrun RECIPE` and `kdrun check RECIPE`: the recipe's trials loaded and checked once, then
//! run here — one run, a sweep, one trial of a sweep — or handed to Slurm.

use super::args::{Executor, RecipeArgs};
use super::{exit, failure};
use crate::backend::{self, Probe};
use crate::pipeline;
use crate::recipe;
use crate::recipe::sweep::{SweepMode, Trial};
use std::process::ExitCode;

/// `--trial I`: run trial I of the sweep on the shared store; exit 0 when it finished, 3 when it
/// failed (its reason in `error.txt`), 130 after Ctrl-C.
pub(super) fn run_one_trial(
    args: &RecipeArgs,
    trials: &[(Trial, recipe::LoadedRecipe)],
    i: usize,
    compute: &backend::Compute,
) -> ExitCode {
    let Some((trial, loaded)) = i.checked_sub(1).and_then(|i| trials.get(i)) else {
        eprintln!(
            "error: --trial {i}: the recipe has {} trial(s), numbered from 1",
            trials.len()
        );
        return ExitCode::FAILURE;
    };
    // In a sweep's folder (a worker, a Slurm task, a retry): still the trial the sweep planned.
    let plan = args
        .overrides
        .trial_dir
        .as_ref()
        .and_then(|d| d.parent())
        .and_then(|d| std::fs::read_to_string(d.join(crate::store::status::PLAN_FILE)).ok())
        .and_then(|t| serde_json::from_str::<crate::store::status::Plan>(&t).ok());
    if let Some(planned) = plan.as_ref().and_then(|p| p.labels.get(i - 1)) {
        if *planned != trial.label() {
            eprintln!(
                "error: --trial {i}: the sweep planned trial {i} as `{planned}`, the recipe and --set now make it `{}` (the recipe changed since the sweep started)",
                trial.label()
            );
            return ExitCode::FAILURE;
        }
    }
    let r = &loaded.recipe;
    let outcome = pipeline::sweep::open_stages(&r.runtime.store).and_then(|stages| {
        let dir = match &args.overrides.trial_dir {
            Some(d) => d.clone(),
            None => crate::store::RunDir::create(&r.runtime.store, &r.name)?.path,
        };
        let report_dir = r.report.dir.join(&r.name);
        pipeline::sweep::run_trial(trial, loaded, compute, &stages, &dir, &report_dir)
    });
    match outcome {
        Ok(t) if t.error.is_none() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(3),
        Err(e) => failure(&e),
    }
}

type Trials = (SweepMode, Vec<(Trial, recipe::LoadedRecipe)>);

pub(super) fn load(args: &RecipeArgs) -> Result<Trials, String> {
    let sets = args.overrides.sets()?;
    recipe::sweep::load_trials(&args.recipe, &sets, true, pipeline::RECIPE_CHECKS)
        .map_err(|e| e.to_string())
}

pub(super) fn check(args: &RecipeArgs) -> ExitCode {
    match load(args) {
        Ok((mode, trials)) => {
            let (first, loaded) = &trials[0];
            println!("# {} (resolved)", loaded.path.display());
            if trials.len() > 1 || !first.values.is_empty() {
                println!(
                    "# {} trial(s), {}:",
                    trials.len(),
                    match mode {
                        SweepMode::Cartesian => "cartesian",
                        SweepMode::Zip => "zip",
                    }
                );
                for (t, _) in &trials {
                    println!("#   {:>3}: {}", t.index + 1, t.label());
                }
                println!("# (the recipe below is trial 1's)");
            }
            print!("{}", loaded.resolved_toml);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `kdrun RECIPE`: the recipe and its trials loaded and checked, then what the flags ask for —
/// a Slurm submission, a Slurm sweep's report or shared stages, one trial, one run or a sweep.
pub(super) fn run(args: &RecipeArgs) -> ExitCode {
    let (mode, trials) = match load(args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let o = &args.overrides;
    if o.executor == Executor::Slurm {
        let submitted = std::env::current_exe()
            .map_err(anyhow::Error::from)
            .and_then(|exe| {
                pipeline::slurm::submit(&trials, &exe, &o.command_line(&args.recipe), o.dry_run)
            });
        return exit(submitted.map(|_| ()));
    }
    if let (true, Some(dir)) = (o.sweep_report, &o.sweep_dir) {
        return sweep_report(&trials, dir);
    }
    let base = &trials[0].1.recipe;
    crate::runtime::interrupt::install();
    backend::limit_threads(base.runtime.threads);
    let compute = match open_compute(base) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let (true, Some(dir)) = (o.shared_stages, &o.sweep_dir) {
        let done = pipeline::sweep::open_stages(&base.runtime.store).and_then(|stages| {
            pipeline::sweep::shared_stages(&trials, &compute, &stages, &dir.join(".shared"))
        });
        return exit(done);
    }
    if let Some(i) = o.trial {
        return run_one_trial(args, &trials, i, &compute);
    }
    if trials.len() == 1 && trials[0].0.values.is_empty() {
        return match pipeline::run(&trials[0].1, &compute) {
            Ok(out) => {
                print_run(&out);
                ExitCode::SUCCESS
            }
            Err(e) => failure(&e),
        };
    }
    run_sweep(args, mode, &trials, &compute)
}

/// The backend the recipe asks for (`runtime.backend`), with wgpu's kernel cache in the store.
fn open_compute(base: &recipe::Recipe) -> Result<backend::Compute, ExitCode> {
    let probe = match std::env::current_exe() {
        Ok(exe) => Probe::ChildProcess(exe),
        Err(_) => Probe::Skip,
    };
    let cache = backend::kernel_cache(&base.runtime.store.join(backend::KERNEL_CACHE_DIR));
    let compute = match backend::select(base.runtime.backend, &probe) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: runtime.backend: {e:#}");
            return Err(ExitCode::FAILURE);
        }
    };
    compute.say_kernel_cache(cache.as_deref());
    Ok(compute)
}

/// `--sweep-report`: the sweep's results and report from its trials' folders (the Slurm report
/// job, or after `kdrun status --retry-failed`).
fn sweep_report(trials: &[(Trial, recipe::LoadedRecipe)], dir: &std::path::Path) -> ExitCode {
    // A Slurm sweep: since it was submitted; a local one (after --retry-failed): as it took.
    let started = std::fs::metadata(dir.join("shared.sbatch"))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map(|d| d.as_secs_f64())
        .or_else(|| {
            crate::store::SweepResults::load(&dir.join("sweep.json"))
                .ok()
                .map(|r| r.seconds)
        })
        .unwrap_or(0.0);
    let done = pipeline::sweep::collect(trials, dir, &[], &[])
        .and_then(|outcomes| pipeline::sweep::finish(trials, dir, outcomes, started));
    match done {
        Ok(out) => {
            println!(
                "sweep report: {}",
                out.report_dir.join("index.html").display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => failure(&e),
    }
}

/// A run's models, one line each, and where its report and folder are.
fn print_run(out: &pipeline::RunOutput) {
    println!();
    for m in &out.results.models {
        println!(
            "{:<44} accuracy {:.4}  macro-F1 {:.4}  {:>10.0} samples/s",
            m.label, m.report.accuracy, m.report.macro_avg.f1, m.timing.samples_per_sec
        );
    }
    println!(
        "\nreport: {}\nrun folder: {}\ntotal time: {:.1} min",
        out.report_dir.join("index.html").display(),
        out.run_dir.display(),
        out.results.total_seconds / 60.0
    );
}

/// A sweep here: its trials one after another, or `runtime.jobs` worker processes at once.
fn run_sweep(
    args: &RecipeArgs,
    mode: SweepMode,
    trials: &[(Trial, recipe::LoadedRecipe)],
    compute: &backend::Compute,
) -> ExitCode {
    let base = &trials[0].1.recipe;
    let jobs = base.runtime.jobs;
    let workers = match std::env::current_exe() {
        Ok(exe) if jobs > 1 => {
            let total = if base.runtime.threads > 0 {
                base.runtime.threads
            } else {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            };
            Some(pipeline::sweep::Workers {
                jobs,
                exe,
                args: args.overrides.command_line(&args.recipe),
                threads: (total / jobs).max(1),
            })
        }
        _ => None,
    };
    let command = args.overrides.command_line(&args.recipe);
    match pipeline::sweep::run_sweep(mode, trials, compute, workers.as_ref(), &command) {
        Ok(out) => {
            print_sweep(&out);
            if out.failed() > 0 {
                eprintln!(
                    "{} of {} trials failed",
                    out.failed(),
                    out.results.trials.len()
                );
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => failure(&e),
    }
}

/// A sweep's trials, one line each (or why it failed), and where its report and folder are.
fn print_sweep(out: &pipeline::sweep::SweepOutput) {
    println!();
    for t in &out.results.trials {
        let label = Trial {
            index: t.index,
            values: t.values.clone(),
        }
        .label();
        match (&t.results, &t.error) {
            (Some(r), _) => {
                let acc = |k: &str| r.model(k).map(|m| m.report.accuracy).unwrap_or(f64::NAN);
                println!(
                    "trial {:>3} {label:<50} teacher {:.4}  student {:.4}  distilled {:.4}",
                    t.index + 1,
                    acc("teacher"),
                    acc("student"),
                    acc("distilled")
                );
            }
            (None, e) => println!(
                "trial {:>3} {label:<50} FAILED: {}",
                t.index + 1,
                e.as_deref().unwrap_or("unknown")
            ),
        }
    }
    println!(
        "\nsweep report: {}\nsweep folder: {}\ntotal time: {:.1} min",
        out.report_dir.join("index.html").display(),
        out.sweep_dir.display(),
        out.results.seconds / 60.0
    );
}
