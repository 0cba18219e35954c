//! `kdrun status --retry-failed`: run again only the trials of a sweep that failed, were
//! interrupted, or that Slurm never ran (their array cancelled with its shared job), on the same store (their stages shared with the finished trials are reused), then
//! render the sweep's report again. A sweep submitted to Slurm gets a job array of just those
//! trials and a report job after it; a local sweep runs them here, one after another. A failed
//! attempt's folder stays beside, as `trial-NNN.failed`.

use crate::store::status::{SweepStatus, TrialState, SLURM_JOBS_FILE};
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::Path;
use std::process::Command;

/// What a retry did.
#[derive(Debug, Clone, PartialEq)]
pub enum Retried {
    /// No trial had failed.
    Nothing,
    /// Submitted to Slurm: the array's and the report's job ids, and the trials (from 1).
    Submitted {
        array: String,
        report: String,
        trials: Vec<usize>,
    },
    /// Run here: the trials (from 1) that failed again.
    Ran {
        trials: Vec<usize>,
        failed_again: Vec<usize>,
    },
}

/// The trials (from 1) of `s` that failed, were interrupted, or that Slurm never ran.
pub fn failed_trials(s: &SweepStatus) -> Vec<usize> {
    s.trials
        .iter()
        .enumerate()
        .filter(|(_, (_, t))| {
            matches!(
                t,
                TrialState::Failed(_) | TrialState::Interrupted | TrialState::NotRun
            )
        })
        .map(|(i, _)| i + 1)
        .collect()
}

/// The base job ids (`%F`: an array's own id) of this user's jobs in Slurm's queue, or `None`
/// where `squeue` cannot be asked (not on a cluster).
fn queued_jobs() -> Option<std::collections::HashSet<String>> {
    let out = Command::new("squeue")
        .args(["--me", "-h", "-o", "%F"])
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .collect()
    })
}

/// The job id of a `slurm-jobs.txt` entry (`102`, or `104 (trials 2,3)`).
fn job_id(entry: &str) -> &str {
    entry.split_whitespace().next().unwrap_or("")
}

/// Mark as [`TrialState::NotRun`] the pending trials of Slurm sweeps none of whose jobs is
/// queued or running any more (asks `squeue`; where it cannot, nothing changes).
pub fn mark_not_run(sweeps: &mut [SweepStatus]) {
    let submitted = |s: &SweepStatus| {
        !s.slurm_jobs.is_empty() && s.trials.iter().any(|(_, t)| *t == TrialState::Pending)
    };
    if !sweeps.iter().any(submitted) {
        return;
    }
    let Some(queued) = queued_jobs() else {
        return;
    };
    for s in sweeps.iter_mut().filter(|s| submitted(s)) {
        if s.slurm_jobs
            .iter()
            .any(|(_, id)| queued.contains(job_id(id)))
        {
            continue;
        }
        for (_, t) in &mut s.trials {
            if *t == TrialState::Pending {
                *t = TrialState::NotRun;
            }
        }
    }
}

/// The `%N` of a trials script's `#SBATCH --array=1-M%N` line, if it has one.
fn array_limit(script: &str) -> Option<&str> {
    script
        .lines()
        .find_map(|l| l.strip_prefix("#SBATCH --array="))
        .and_then(|a| a.split_once('%'))
        .map(|(_, limit)| limit.trim())
}

/// Run or submit again the failed trials of sweep `s` with the `kdrun` binary `exe`.
pub fn retry_failed(s: &SweepStatus, exe: &Path) -> Result<Retried> {
    let trials = failed_trials(s);
    if trials.is_empty() {
        return Ok(Retried::Nothing);
    }
    let Some(plan) = s.plan.as_ref().filter(|p| !p.args.is_empty()) else {
        bail!(
            "{}: the sweep's plan does not say how to load its trials (an older kdrun wrote it); run its recipe again instead",
            s.dir.display()
        );
    };
    // Each failed attempt's folder is kept as `trial-NNN.failed` (the last one only), so that the
    // trial reads as pending until it ends again; the sweep is unfinished until its report is
    // rendered again.
    for t in &trials {
        let dir = s.dir.join(format!("trial-{t:03}"));
        let kept = s.dir.join(format!("trial-{t:03}.failed"));
        if dir.exists() {
            if kept.exists() {
                std::fs::remove_dir_all(&kept)
                    .with_context(|| format!("cannot remove {}", kept.display()))?;
            }
            std::fs::rename(&dir, &kept).with_context(|| {
                format!("cannot rename {} to {}", dir.display(), kept.display())
            })?;
        }
    }
    let trials_script = s.dir.join("trials.sbatch");
    if trials_script.is_file() {
        let text = std::fs::read_to_string(&trials_script)
            .with_context(|| format!("cannot read {}", trials_script.display()))?;
        let indices = trials
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let limit = array_limit(&text)
            .map(|l| format!("%{l}"))
            .unwrap_or_default();
        let sweep_json = s.dir.join("sweep.json");
        if sweep_json.exists() {
            std::fs::remove_file(&sweep_json)
                .with_context(|| format!("cannot remove {}", sweep_json.display()))?;
        }
        let array = super::slurm::sbatch(&trials_script, &[format!("--array={indices}{limit}")])?;
        let report = super::slurm::sbatch(
            &s.dir.join("report.sbatch"),
            &[format!("--dependency=afterany:{array}")],
        )?;
        let jobs = s.dir.join(SLURM_JOBS_FILE);
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&jobs)
            .and_then(|mut f| writeln!(f, "retry {array} (trials {indices})\nreport {report}"))
            .with_context(|| format!("cannot write {}", jobs.display()))?;
        return Ok(Retried::Submitted {
            array,
            report,
            trials,
        });
    }
    let run = |extra: &[std::ffi::OsString]| -> Result<bool> {
        let status = Command::new(exe)
            .args(&plan.args)
            .args(extra)
            .current_dir(&plan.workdir)
            .status()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        if status.code() == Some(130) {
            bail!(crate::runtime::interrupt::Interrupted);
        }
        Ok(status.success())
    };
    let mut failed_again = Vec::new();
    for &t in &trials {
        crate::runtime::progress::note(&format!("\n=== retrying trial {t}: {}", s.trials[t - 1].0));
        let dir = s.dir.join(format!("trial-{t:03}"));
        if !run(&[
            "--trial".into(),
            t.to_string().into(),
            "--trial-dir".into(),
            dir.into(),
        ])? {
            failed_again.push(t);
        }
    }
    if !run(&[
        "--sweep-report".into(),
        "--sweep-dir".into(),
        s.dir.clone().into(),
    ])? {
        bail!("rendering the report of {} failed", s.dir.display());
    }
    Ok(Retried::Ran {
        trials,
        failed_again,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_array_limit_is_read_from_the_trials_script() {
        let script = "#!/bin/bash\n#SBATCH --job-name=x\n#SBATCH --array=1-8%2\nexec kdrun\n";
        assert_eq!(array_limit(script), Some("2"));
        assert_eq!(array_limit("#SBATCH --array=1-8\n"), None);
    }

    #[test]
    fn job_ids_are_read_from_the_jobs_file_entries() {
        assert_eq!(job_id("102"), "102");
        assert_eq!(job_id("104 (trials 2,3)"), "104");
    }
}
