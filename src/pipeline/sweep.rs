//! Running a grid of trials. Trials share the store, so the stages they have in common (data,
//! teacher, teacher logits, the student alone) are computed once. A trial that fails (a diverged
//! loss, out of memory) is recorded with its reason and the sweep goes on; Ctrl-C stops the sweep
//! after the stage in progress is cleaned up.

use super::run_in;
use crate::backend::Compute;
use crate::recipe::sweep::{SweepMode, Trial};
use crate::recipe::LoadedRecipe;
use crate::report;
use crate::store::stage::{Stages, StoreLock};
use crate::store::RunDir;
use crate::store::{SweepResults, TrialOutcome};
use crate::train::interrupt::Interrupted;
use crate::train::progress::note;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

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

/// Run every trial of a sweep.
pub fn run_sweep(
    mode: SweepMode,
    trials: &[(Trial, LoadedRecipe)],
    compute: &Compute,
) -> Result<SweepOutput> {
    let base = &trials[0].1.recipe;
    for (t, l) in trials {
        let r = &l.recipe;
        if r.runtime.store != base.runtime.store
            || r.report.dir != base.report.dir
            || r.name != base.name
        {
            bail!(
                "trial {}: a sweep cannot vary runtime.store, report.dir or name (they place the sweep itself)",
                t.label()
            );
        }
        if r.runtime.backend != base.runtime.backend || r.runtime.threads != base.runtime.threads {
            bail!(
                "trial {}: a sweep cannot vary runtime.backend or runtime.threads (the device is chosen once)",
                t.label()
            );
        }
    }
    let _lock = StoreLock::acquire(&base.runtime.store)?;
    let stages = Stages::new(&base.runtime.store);
    let cleaned = stages.clean_stale()?;
    if cleaned > 0 {
        note(&format!(
            "kdrun: removed {cleaned} unfinished stage folder(s) of an interrupted run"
        ));
    }
    let sweep_dir = RunDir::create(&base.runtime.store, &base.name)?;
    let report_dir = base.report.dir.join(&base.name);
    let keys: Vec<String> = trials[0].0.values.iter().map(|(k, _)| k.clone()).collect();
    note(&format!(
        "sweep: {} trials over {} ({})",
        trials.len(),
        keys.join(", "),
        match mode {
            SweepMode::Cartesian => "cartesian",
            SweepMode::Zip => "zip",
        }
    ));
    let started = std::time::Instant::now();
    let mut outcomes = Vec::with_capacity(trials.len());
    for (trial, loaded) in trials {
        note(&format!(
            "\n=== trial {}/{}: {}",
            trial.index + 1,
            trials.len(),
            trial.label()
        ));
        let dir = RunDir {
            path: sweep_dir.path.join(format!("trial-{:03}", trial.index + 1)),
        };
        std::fs::create_dir_all(&dir.path)
            .with_context(|| format!("cannot create {}", dir.path.display()))?;
        let clock = std::time::Instant::now();
        match run_in(loaded, compute, &stages, &dir) {
            Ok(mut results) => {
                let page_dir = report_dir.join(format!("trial-{:03}", trial.index + 1));
                results.report_dir = page_dir.display().to_string();
                dir.write_json("results.json", &results)?;
                report::write_all(&results, &page_dir, Some(report::sweep::trial_nav()))
                    .with_context(|| format!("writing the report to {}", page_dir.display()))?;
                outcomes.push(TrialOutcome {
                    index: trial.index,
                    values: trial.values.clone(),
                    results: Some(results),
                    error: None,
                    seconds: clock.elapsed().as_secs_f64(),
                });
            }
            Err(e) if e.downcast_ref::<Interrupted>().is_some() => return Err(e),
            Err(e) => {
                let reason = format!("{e:#}");
                eprintln!("trial {} failed: {reason}", trial.label());
                dir.write_text("error.txt", &reason)?;
                outcomes.push(TrialOutcome {
                    index: trial.index,
                    values: trial.values.clone(),
                    results: None,
                    error: Some(reason),
                    seconds: clock.elapsed().as_secs_f64(),
                });
            }
        }
    }
    let results = SweepResults {
        recipe_name: base.name.clone(),
        keys,
        trials: outcomes,
        seconds: started.elapsed().as_secs_f64(),
        sweep_dir: sweep_dir.path.display().to_string(),
        report_dir: report_dir.display().to_string(),
    };
    sweep_dir.write_json("sweep.json", &results)?;
    report::sweep::write_tables(&results, &sweep_dir.path)?;
    report::sweep::write(&results, &report_dir, None)?;
    Ok(SweepOutput {
        results,
        sweep_dir: sweep_dir.path,
        report_dir,
    })
}
