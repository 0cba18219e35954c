//! Running a grid of trials. Trials share the store, so the stages they have in common (data,
//! teacher, teacher logits, the student alone) are computed once. A trial that fails (a diverged
//! loss, out of memory) is recorded with its reason and the sweep goes on; Ctrl-C stops the sweep
//! after the stage in progress is cleaned up.
//!
//! With workers (`--jobs N`), the stages every trial shares are computed first, in this process
//! with all its threads; then up to N trials run at once, each as a `kdrun RECIPE --trial I`
//! process of its own (so each has burn's device and seeding exactly as a run of its own) with
//! its share of the threads, on the same store. Their lines are shown prefixed with the trial.

use super::run_in;
use crate::backend::Compute;
use crate::recipe::sweep::{SweepMode, Trial};
use crate::recipe::LoadedRecipe;
use crate::report;
use crate::runtime::interrupt::{self, Interrupted};
use crate::runtime::progress::note;
use crate::store::stage::{NotShared, Stages};
use crate::store::RunDir;
use crate::store::{RunResults, SweepResults, TrialOutcome};
use anyhow::{Context, Result};
use std::ffi::OsString;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct SweepOutput {
    pub results: SweepResults,
    pub sweep_dir: PathBuf,
    pub report_dir: PathBuf,
}

impl SweepOutput {
    pub fn failed(&self) -> usize {
        self.results
            .trials
            .iter()
            .filter(|t| t.results.is_none())
            .count()
    }
}

/// How to run trials in processes of their own: `exe args… --trial I --trial-dir DIR --set
/// runtime.threads=T`, `jobs` at once.
#[derive(Debug, Clone)]
pub struct Workers {
    pub jobs: usize,
    pub exe: PathBuf,
    /// The command line that loads the same trials (recipe, `--set`, `--backend`).
    pub args: Vec<OsString>,
    /// CPU threads of each worker.
    pub threads: usize,
}

/// A trial's folder in the sweep's run folder (`trial-001`, …).
pub fn trial_dir(sweep_dir: &Path, trial: &Trial) -> PathBuf {
    sweep_dir.join(format!("trial-{:03}", trial.index + 1))
}

/// Run one trial into `dir`: its results (and its pages in `report_dir/trial-NNN`), or the
/// reason it failed in `error.txt`. Only Ctrl-C and store errors are errors here.
pub fn run_trial(
    trial: &Trial,
    loaded: &LoadedRecipe,
    compute: &Compute,
    stages: &Stages,
    dir: &Path,
    report_dir: &Path,
) -> Result<TrialOutcome> {
    let dir = RunDir {
        path: dir.to_path_buf(),
    };
    std::fs::create_dir_all(&dir.path)
        .with_context(|| format!("cannot create {}", dir.path.display()))?;
    let _running = crate::store::status::hold_running(&dir.path)?;
    let clock = Instant::now();
    let (results, error) = match run_in(loaded, compute, stages, &dir) {
        Ok(mut results) => {
            let page_dir = report_dir.join(format!("trial-{:03}", trial.index + 1));
            results.report_dir = page_dir.display().to_string();
            dir.write_json("results.json", &results)?;
            report::write_all(&results, &page_dir, Some(report::sweep::trial_nav()))
                .with_context(|| format!("writing the report to {}", page_dir.display()))?;
            (Some(results), None)
        }
        Err(e) if e.downcast_ref::<Interrupted>().is_some() => return Err(e),
        Err(e) => {
            let reason = format!("{e:#}");
            eprintln!("trial {} failed: {reason}", trial.label());
            dir.write_text("error.txt", &reason)?;
            (None, Some(reason))
        }
    };
    Ok(TrialOutcome {
        index: trial.index,
        values: trial.values.clone(),
        results,
        error,
        seconds: clock.elapsed().as_secs_f64(),
    })
}

/// The store's stages, after removing what interrupted runs left.
pub fn open_stages(store: &Path) -> Result<Stages> {
    let stages = Stages::new(store);
    let cleaned = stages.clean_stale()?;
    if cleaned > 0 {
        note(&format!(
            "kdrun: removed {cleaned} unfinished stage folder(s) of an interrupted run"
        ));
    }
    Ok(stages)
}

/// Run every trial of a sweep: one after another, or with `workers` up to `workers.jobs` at once.
/// `args` load the same trials again (recipe, `--set`, `--backend`): kept in the sweep's plan.
pub fn run_sweep(
    mode: SweepMode,
    trials: &[(Trial, LoadedRecipe)],
    compute: &Compute,
    workers: Option<&Workers>,
    args: &[OsString],
) -> Result<SweepOutput> {
    // The trials share name, store, report folder and device: `recipe::sweep::load_trials`
    // refuses a grid over them (PER_SWEEP).
    let base = &trials[0].1.recipe;
    let stages = open_stages(&base.runtime.store)?;
    let sweep_dir = RunDir::create(&base.runtime.store, &base.name)?;
    let report_dir = base.report.dir.join(&base.name);
    let keys: Vec<String> = trials[0].0.values.iter().map(|(k, _)| k.clone()).collect();
    write_plan(trials, &sweep_dir, args)?;
    note(&format!(
        "sweep: {} trials over {} ({})",
        trials.len(),
        keys.join(", "),
        match mode {
            SweepMode::Cartesian => "cartesian",
            SweepMode::Zip => "zip",
        }
    ));
    let started = Instant::now();
    let outcomes = match workers.filter(|w| w.jobs > 1 && trials.len() > 1) {
        None => {
            let mut outcomes = Vec::with_capacity(trials.len());
            for (trial, loaded) in trials {
                note(&format!(
                    "\n=== trial {}/{}: {}",
                    trial.index + 1,
                    trials.len(),
                    trial.label()
                ));
                let dir = trial_dir(&sweep_dir.path, trial);
                outcomes.push(run_trial(
                    trial,
                    loaded,
                    compute,
                    &stages,
                    &dir,
                    &report_dir,
                )?);
            }
            outcomes
        }
        Some(w) => {
            shared_stages(trials, compute, &stages, &sweep_dir.path.join(".shared"))?;
            run_workers(trials, w, &sweep_dir.path)?
        }
    };
    finish(
        trials,
        &sweep_dir.path,
        outcomes,
        started.elapsed().as_secs_f64(),
    )
}

/// The sweep's trials, for `kdrun status` while it runs, and the `kdrun` arguments that load
/// them again (`args`, run in this working directory) for `kdrun status --retry-failed`.
pub fn write_plan(
    trials: &[(Trial, LoadedRecipe)],
    sweep_dir: &RunDir,
    args: &[OsString],
) -> Result<()> {
    let plan = crate::store::status::Plan {
        labels: trials.iter().map(|(t, _)| t.label()).collect(),
        args: args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        workdir: std::env::current_dir()?.display().to_string(),
    };
    sweep_dir.write_json(crate::store::status::PLAN_FILE, &plan)?;
    Ok(())
}

/// Write a sweep's `sweep.json`, tables and pages from its trials' outcomes.
pub fn finish(
    trials: &[(Trial, LoadedRecipe)],
    sweep_dir: &Path,
    outcomes: Vec<TrialOutcome>,
    seconds: f64,
) -> Result<SweepOutput> {
    let base = &trials[0].1.recipe;
    let report_dir = base.report.dir.join(&base.name);
    let results = SweepResults {
        recipe_name: base.name.clone(),
        keys: trials[0].0.values.iter().map(|(k, _)| k.clone()).collect(),
        trials: outcomes,
        seconds,
        sweep_dir: sweep_dir.display().to_string(),
        report_dir: report_dir.display().to_string(),
    };
    let dir = RunDir {
        path: sweep_dir.to_path_buf(),
    };
    dir.write_json("sweep.json", &results)?;
    report::sweep::write_tables(&results, sweep_dir)?;
    report::sweep::write(&results, &report_dir, None)?;
    Ok(SweepOutput {
        results,
        sweep_dir: sweep_dir.to_path_buf(),
        report_dir,
    })
}

/// Compute, with all of this process's threads, the stages every trial shares: the first trial's
/// run up to the first stage whose key differs between trials (its run folder `scratch`, removed
/// after).
pub fn shared_stages(
    trials: &[(Trial, LoadedRecipe)],
    compute: &Compute,
    stages: &Stages,
    scratch: &Path,
) -> Result<()> {
    note("\n=== the stages all trials share");
    let others = trials[1..].iter().map(|(_, l)| l.recipe.clone()).collect();
    let shared = stages.only_shared_with(others);
    let scratch = RunDir {
        path: scratch.to_path_buf(),
    };
    std::fs::create_dir_all(&scratch.path)?;
    let result = run_in(&trials[0].1, compute, &shared, &scratch);
    let _ = std::fs::remove_dir_all(&scratch.path);
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.downcast_ref::<NotShared>().is_some() => Ok(()),
        // A failing shared stage fails every trial; each worker records why.
        Err(e) if e.downcast_ref::<Interrupted>().is_none() => {
            note(&format!("shared stages: {e:#}"));
            Ok(())
        }
        Err(e) => Err(e),
    }
}

struct Running {
    index: usize,
    child: Child,
    started: Instant,
    echo: std::thread::JoinHandle<()>,
}

/// Run the trials as `kdrun --trial` processes, `w.jobs` at once, and read back their outcomes.
fn run_workers(
    trials: &[(Trial, LoadedRecipe)],
    w: &Workers,
    sweep_dir: &Path,
) -> Result<Vec<TrialOutcome>> {
    note(&format!(
        "\n=== {} trials, {} at once ({} thread(s) each)",
        trials.len(),
        w.jobs,
        w.threads
    ));
    let mut pending: std::collections::VecDeque<usize> = (0..trials.len()).collect();
    let mut running: Vec<Running> = Vec::new();
    let mut seconds = vec![0.0; trials.len()];
    let mut statuses = vec![None; trials.len()];
    loop {
        if interrupt::requested() {
            stop_all(&mut running);
            return Err(Interrupted.into());
        }
        while running.len() < w.jobs {
            let Some(i) = pending.pop_front() else { break };
            running.push(spawn(&trials[i].0, w, sweep_dir, trials.len())?);
        }
        if running.is_empty() {
            break;
        }
        let mut k = 0;
        while k < running.len() {
            if let Some(status) = running[k].child.try_wait()? {
                let done = running.swap_remove(k);
                let _ = done.echo.join();
                seconds[done.index] = done.started.elapsed().as_secs_f64();
                statuses[done.index] = Some(status);
                let trial = &trials[done.index].0;
                note(&format!(
                    "[trial {}] finished ({}), {:.1} s",
                    trial.index + 1,
                    if status.success() { "ok" } else { "failed" },
                    seconds[done.index]
                ));
            } else {
                k += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let statuses: Vec<String> = statuses
        .iter()
        .map(|s| s.map_or("not run".to_string(), |s| s.to_string()))
        .collect();
    collect(trials, sweep_dir, &seconds, &statuses)
}

/// The trials' outcomes from their folders in `sweep_dir` (written by `kdrun --trial`):
/// `results.json`, else the reason in `error.txt`, else how the worker ended (`ended[i]`).
pub fn collect(
    trials: &[(Trial, LoadedRecipe)],
    sweep_dir: &Path,
    seconds: &[f64],
    ended: &[String],
) -> Result<Vec<TrialOutcome>> {
    let mut outcomes = Vec::with_capacity(trials.len());
    for (i, (trial, _)) in trials.iter().enumerate() {
        let dir = trial_dir(sweep_dir, trial);
        let (results, error) = if dir.join("results.json").is_file() {
            (Some(RunResults::load(&dir.join("results.json"))?), None)
        } else if let Ok(reason) = std::fs::read_to_string(dir.join("error.txt")) {
            (None, Some(reason))
        } else {
            let how = ended.get(i).map_or("not run", String::as_str);
            (
                None,
                Some(format!("the worker process ended ({how}) without results")),
            )
        };
        let seconds = seconds
            .get(i)
            .copied()
            .or_else(|| results.as_ref().map(|r| r.total_seconds))
            .unwrap_or(0.0);
        outcomes.push(TrialOutcome {
            index: trial.index,
            values: trial.values.clone(),
            results,
            error,
            seconds,
        });
    }
    Ok(outcomes)
}

fn spawn(trial: &Trial, w: &Workers, sweep_dir: &Path, total: usize) -> Result<Running> {
    let dir = trial_dir(sweep_dir, trial);
    note(&format!(
        "[trial {}] started ({}/{}): {}",
        trial.index + 1,
        trial.index + 1,
        total,
        trial.label()
    ));
    let mut child = Command::new(&w.exe)
        .args(&w.args)
        .arg("--trial")
        .arg((trial.index + 1).to_string())
        .arg("--trial-dir")
        .arg(&dir)
        .args(["--set", &format!("runtime.threads={}", w.threads)])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", w.exe.display()))?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let prefix = format!("[trial {}] ", trial.index + 1);
    let echo = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if !line.trim().is_empty() {
                eprintln!("{prefix}{line}");
            }
        }
    });
    Ok(Running {
        index: trial.index,
        child,
        started: Instant::now(),
        echo,
    })
}

/// Ctrl-C: pass it on to every worker (each removes its unfinished stage) and wait for them.
fn stop_all(running: &mut Vec<Running>) {
    for r in running.iter() {
        let _ = Command::new("kill")
            .args(["-INT", &r.child.id().to_string()])
            .status();
    }
    for mut r in running.drain(..) {
        let _ = r.child.wait();
        let _ = r.echo.join();
    }
}
