//! Sweeps: a grid over any dotted recipe key, from the recipe's `[sweep]` table
//! (`"distill.temperature" = [1, 2, 4, 8]`, `mode = "zip"` for paired lists) and from the command
//! line (`--set distill.temperature=1,2,4,8`: bare comma-separated values sweep). Each trial is
//! the recipe with one value per swept key, loaded (and validated) like any recipe, so a key that
//! does not exist is an error that names it.

use super::error::{Problem, RecipeError};
use super::load::{load_checked, load_parts, Check, LoadedRecipe, SWEEP_SET};
use super::set::SetArg;
use std::path::Path;

pub use super::sections::{SweepEntry, SweepMode, SweepSection};

/// One point of a grid: a value per swept key.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    pub index: usize,
    pub values: Vec<(String, toml::Value)>,
}

impl Trial {
    /// `distill.temperature=2, runtime.seed=1`.
    pub fn label(&self) -> String {
        if self.values.is_empty() {
            return "(single run)".into();
        }
        self.values
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The most trials one sweep may have (each is a training run).
pub const MAX_TRIALS: usize = 10_000;

/// The trials of `axes` (in order: later axes vary fastest).
pub fn expand(axes: &[(String, Vec<toml::Value>)], mode: SweepMode) -> Result<Vec<Trial>, String> {
    if axes.is_empty() {
        return Ok(vec![Trial {
            index: 0,
            values: Vec::new(),
        }]);
    }
    match mode {
        SweepMode::Zip => {
            let n = axes[0].1.len();
            if let Some((k, v)) = axes.iter().find(|(_, v)| v.len() != n) {
                return Err(format!(
                    "sweep mode \"zip\" pairs lists of equal length: `{}` has {n} values, `{k}` {}",
                    axes[0].0,
                    v.len()
                ));
            }
            Ok((0..n)
                .map(|i| Trial {
                    index: i,
                    values: axes
                        .iter()
                        .map(|(k, v)| (k.clone(), v[i].clone()))
                        .collect(),
                })
                .collect())
        }
        SweepMode::Cartesian => {
            // Counted before anything is made: `--set a=1,2,…` over a few keys multiplies fast.
            let n = axes
                .iter()
                .try_fold(1usize, |n, (_, v)| n.checked_mul(v.len()))
                .unwrap_or(usize::MAX);
            if n > MAX_TRIALS {
                return Err(format!(
                    "the sweep has {} trials ({}); at most {MAX_TRIALS}: sweep fewer values",
                    if n == usize::MAX {
                        "too many".to_string()
                    } else {
                        n.to_string()
                    },
                    axes.iter()
                        .map(|(k, v)| format!("{} values of `{k}`", v.len()))
                        .collect::<Vec<_>>()
                        .join(" × ")
                ));
            }
            let mut trials: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
            for (k, values) in axes {
                trials = trials
                    .into_iter()
                    .flat_map(|t| {
                        values.iter().map(move |v| {
                            let mut t = t.clone();
                            t.push((k.clone(), v.clone()));
                            t
                        })
                    })
                    .collect();
            }
            Ok(trials
                .into_iter()
                .enumerate()
                .map(|(index, values)| Trial { index, values })
                .collect())
        }
    }
}

/// Keys one sweep has one value of: where it goes and what it runs on.
pub const PER_SWEEP: &[&str] = &[
    "name",
    "report.dir",
    "runtime.store",
    "runtime.backend",
    "runtime.threads",
    "runtime.jobs",
];

/// A recipe's trials, each loaded: the `[sweep]` grid and the command line's multi-valued
/// `--set`s (which replace a grid axis of the same key) expanded, the single-valued `--set`s
/// applied to every trial.
pub fn load_trials(
    path: &Path,
    sets: &[SetArg],
    use_env: bool,
    checks: &[Check],
) -> Result<(SweepMode, Vec<(Trial, LoadedRecipe)>), RecipeError> {
    let (single, multi): (Vec<SetArg>, Vec<SetArg>) =
        sets.iter().cloned().partition(|s| s.values.len() == 1);
    let shown = super::load::absolute(path).display().to_string();
    // Every problem in one pass: the recipe's own (as its first layers give it), the sweep's,
    // then each trial's that the recipe did not already have.
    let (base, mut problems) = match load_parts(path, &single, use_env, checks) {
        Ok(loaded) => (loaded.recipe.clone(), Vec::new()),
        Err((e, Some(recipe))) => (*recipe, e.problems),
        Err((e, None)) => return Err(e),
    };
    let mode = base.sweep.mode;
    let mut axes: Vec<(String, Vec<toml::Value>)> = base
        .sweep
        .grid
        .iter()
        .filter(|(k, _)| !multi.iter().any(|m| &m.key == *k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    axes.extend(multi.iter().map(|m| (m.key.clone(), m.values.clone())));
    let problem = |key: &str, message: String| Problem {
        source: shown.clone(),
        key: Some(key.to_string()),
        message,
    };
    // An axis refused here is left out of the trials, whose other axes are still checked.
    let mut refused = Vec::new();
    for (k, _) in &axes {
        if k == "sweep" || k.starts_with("sweep.") {
            problems.push(problem(k, "a sweep cannot sweep the sweep".into()));
            refused.push(k.clone());
        } else if PER_SWEEP.contains(&k.as_str()) {
            // What places the sweep (its folders, its name) or chooses its device is the same
            // for every trial: a grid over it is refused here, where `check` sees it too.
            problems.push(problem(
                k,
                format!(
                    "a sweep cannot vary {k}: {} are one for the whole sweep (they place it and choose its device); run separate recipes instead",
                    PER_SWEEP.join(", ")
                ),
            ));
            refused.push(k.clone());
        }
    }
    axes.retain(|(k, _)| !refused.contains(k));
    let trials = match expand(&axes, mode) {
        Ok(trials) => trials,
        Err(e) => {
            problems.push(problem("sweep", e));
            Vec::new()
        }
    };
    let known = problems.clone();
    let mut out = Vec::with_capacity(trials.len());
    for trial in trials {
        let mut trial_sets = single.clone();
        for (k, v) in &trial.values {
            let from_cli = multi.iter().any(|m| &m.key == k);
            trial_sets.push(SetArg {
                source: if from_cli {
                    format!("--set {k}=… (swept)")
                } else {
                    format!("{SWEEP_SET}{k}")
                },
                key: k.clone(),
                values: vec![v.clone()],
            });
        }
        match load_checked(path, &trial_sets, use_env, checks) {
            Ok(loaded) => out.push((trial, loaded)),
            Err(e) => {
                for mut p in e.problems {
                    // The recipe's own problems again, or one an earlier trial reported.
                    let seen = |q: &Problem| {
                        q.key == p.key
                            && (q.message == p.message
                                || q.message.starts_with(&format!("{} (trial ", p.message)))
                    };
                    if known.iter().any(seen) || problems.iter().any(seen) {
                        continue;
                    }
                    p.message = format!("{} (trial {})", p.message, trial.label());
                    problems.push(p);
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(RecipeError { problems });
    }
    Ok((mode, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(v: &[i64]) -> Vec<toml::Value> {
        v.iter().map(|i| toml::Value::Integer(*i)).collect()
    }

    #[test]
    fn cartesian_and_zip() {
        let axes = vec![
            ("a".to_string(), ints(&[1, 2])),
            ("b".to_string(), ints(&[10, 20, 30])),
        ];
        let c = expand(&axes, SweepMode::Cartesian).unwrap();
        assert_eq!(c.len(), 6);
        assert_eq!(c[1].label(), "a=1, b=20");
        assert_eq!(c[5].label(), "a=2, b=30");
        assert!(expand(&axes, SweepMode::Zip)
            .unwrap_err()
            .contains("equal length"));
        let z = expand(
            &[axes[1].clone(), ("c".into(), ints(&[7, 8, 9]))],
            SweepMode::Zip,
        )
        .unwrap();
        assert_eq!(z.len(), 3);
        assert_eq!(z[2].label(), "b=30, c=9");
        assert_eq!(expand(&[], SweepMode::Cartesian).unwrap().len(), 1);
        // A grid too large to run is refused before it is expanded.
        let big: Vec<(String, Vec<toml::Value>)> = (0..5)
            .map(|i| (format!("k{i}"), ints(&(0..10).collect::<Vec<_>>())))
            .collect();
        let err = expand(&big, SweepMode::Cartesian).unwrap_err();
        assert!(
            err.contains("the sweep has 100000 trials (10 values of `k0` × ")
                && err.contains("at most 10000"),
            "{err}"
        );
    }
}
