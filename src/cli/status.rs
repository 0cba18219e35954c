//! `kdrun status [STORE]`: where each sweep of a store stands, and `--retry-failed`.

use super::args::StatusArgs;
use super::failure;
use crate::pipeline;
use crate::store::status::{SweepStatus, TrialState};
use std::process::ExitCode;

pub(super) fn status(args: &StatusArgs) -> ExitCode {
    let mut sweeps = match crate::store::status::sweeps(&args.store) {
        Ok(s) => s,
        Err(e) => return failure(&e),
    };
    pipeline::retry::mark_not_run(&mut sweeps);
    if sweeps.is_empty() {
        println!("no sweeps in {}", args.store.display());
    }
    for s in &sweeps {
        print_sweep(s);
    }
    if args.retry_failed {
        retry(&sweeps)
    } else {
        ExitCode::SUCCESS
    }
}

/// One sweep: its counts, each trial's state, its Slurm jobs.
fn print_sweep(s: &SweepStatus) {
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
            TrialState::NotRun => "not run (its Slurm jobs ended without running it)".to_string(),
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

/// `--retry-failed`: each sweep's failed, interrupted or never-run trials again, and its report.
fn retry(sweeps: &[SweepStatus]) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return failure(&e.into()),
    };
    let mut still_failing = false;
    let mut retried = 0;
    for s in sweeps {
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
