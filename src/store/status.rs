//! Where the sweeps of a store stand (`kdrun status`): each trial done, running, failed (why),
//! interrupted or pending, read from the sweep's folder while it runs — locally or on Slurm.

use super::sweep::SweepResults;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

/// Written into a sweep's folder when it starts: its trials' labels, in order.
pub const PLAN_FILE: &str = "sweep-plan.json";
/// A Slurm sweep's job ids, a line each: `shared 101`, `trials 102`, `report 103`, then
/// `retry 104 (trials 2,3)` and `report 105` for each `--retry-failed`.
pub const SLURM_JOBS_FILE: &str = "slurm-jobs.txt";
/// Held (an OS lock) by the process running a trial, in the trial's folder.
pub const RUNNING_LOCK: &str = ".running.lock";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub labels: Vec<String>,
    /// The `kdrun` arguments that load the same trials (recipe, `--set`, `--backend`), run in
    /// `workdir`; empty in the plans of older kdruns.
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub workdir: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TrialState {
    Done,
    Running,
    Failed(String),
    /// Started, but its process is gone without results (killed, or the machine went down).
    Interrupted,
    Pending,
    /// Never started, and the Slurm jobs that were to run it have all left the queue (its array
    /// was cancelled: the shared job was killed, hit its time limit, or was cancelled).
    NotRun,
}

pub struct SweepStatus {
    pub dir: PathBuf,
    pub finished: bool,
    pub trials: Vec<(String, TrialState)>,
    /// The sweep's plan (none in sweeps of older kdruns that finished).
    pub plan: Option<Plan>,
    /// Its Slurm jobs (`slurm-jobs.txt`: `shared 101`, `trials 102`, …), if it was submitted.
    pub slurm_jobs: Vec<(String, String)>,
}

/// The lock a trial's process holds while it runs (released when it ends, however it ends).
pub fn hold_running(trial_dir: &Path) -> Result<File> {
    let path = trial_dir.join(RUNNING_LOCK);
    let f = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    f.lock()
        .with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(f)
}

fn state(dir: &Path) -> TrialState {
    if dir.join("results.json").is_file() {
        return TrialState::Done;
    }
    if let Ok(reason) = std::fs::read_to_string(dir.join("error.txt")) {
        let first = reason.lines().next().unwrap_or("").to_string();
        return TrialState::Failed(first);
    }
    if !dir.is_dir() {
        return TrialState::Pending;
    }
    match File::open(dir.join(RUNNING_LOCK)).map(|f| f.try_lock()) {
        Ok(Err(TryLockError::WouldBlock)) => TrialState::Running,
        _ => TrialState::Interrupted,
    }
}

/// Every sweep of `store` (oldest first within a recipe): those with a plan or a `sweep.json`.
pub fn sweeps(store: &Path) -> Result<Vec<SweepStatus>> {
    let mut out = Vec::new();
    let mut recipes: Vec<PathBuf> = std::fs::read_dir(store)
        .with_context(|| format!("cannot read store {}", store.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    recipes.sort();
    for recipe in recipes {
        let mut runs: Vec<PathBuf> = std::fs::read_dir(&recipe)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        runs.sort();
        for dir in runs {
            let finished = SweepResults::load(&dir.join("sweep.json")).ok();
            let mut plan = None;
            let labels = match (&finished, std::fs::read_to_string(dir.join(PLAN_FILE))) {
                (_, Ok(text)) => match serde_json::from_str::<Plan>(&text) {
                    Ok(p) => {
                        let labels = p.labels.clone();
                        plan = Some(p);
                        labels
                    }
                    Err(_) => continue,
                },
                (Some(s), _) => s
                    .trials
                    .iter()
                    .map(|t| {
                        t.values
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .collect(),
                (None, Err(_)) => continue,
            };
            let trials = labels
                .into_iter()
                .enumerate()
                .map(|(i, l)| (l, state(&dir.join(format!("trial-{:03}", i + 1)))))
                .collect();
            let slurm_jobs = std::fs::read_to_string(dir.join(SLURM_JOBS_FILE))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.split_once(' '))
                .map(|(what, id)| (what.to_string(), id.trim().to_string()))
                .collect();
            out.push(SweepStatus {
                dir,
                finished: finished.is_some(),
                trials,
                plan,
                slurm_jobs,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trials_are_told_apart_by_their_folders_and_lock() {
        let store = tempfile::tempdir().unwrap();
        let sweep = store.path().join("quick/2026-01-01T00-00-00Z");
        for t in 1..=4 {
            std::fs::create_dir_all(sweep.join(format!("trial-{t:03}"))).unwrap();
        }
        let labels = (1..=5).map(|t| format!("x={t}")).collect();
        std::fs::write(
            sweep.join(PLAN_FILE),
            serde_json::to_string(&Plan {
                labels,
                args: Vec::new(),
                workdir: String::new(),
            })
            .unwrap(),
        )
        .unwrap();
        std::fs::write(sweep.join("trial-001/results.json"), "{}").unwrap();
        std::fs::write(sweep.join("trial-002/error.txt"), "diverged\nmore").unwrap();
        let _running = hold_running(&sweep.join("trial-003")).unwrap();
        drop(hold_running(&sweep.join("trial-004")).unwrap());
        let s = sweeps(store.path()).unwrap();
        assert_eq!(s.len(), 1);
        assert!(!s[0].finished);
        let states: Vec<_> = s[0].trials.iter().map(|(_, st)| st.clone()).collect();
        assert_eq!(
            states,
            [
                TrialState::Done,
                TrialState::Failed("diverged".into()),
                TrialState::Running,
                TrialState::Interrupted,
                TrialState::Pending
            ]
        );
    }
}
