//! What a sweep found, as saved in `sweep.json`: every trial's swept values and its results (or
//! why it failed), enough to re-render the sweep's pages without retraining.

use super::RunResults;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One trial's end: its results, or why it failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialOutcome {
    pub index: usize,
    pub values: Vec<(String, toml::Value)>,
    pub results: Option<RunResults>,
    pub error: Option<String>,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepResults {
    pub recipe_name: String,
    pub keys: Vec<String>,
    pub trials: Vec<TrialOutcome>,
    pub seconds: f64,
    pub sweep_dir: String,
    /// Where the sweep wrote its pages (`report.dir/<name>`).
    #[serde(default)]
    pub report_dir: String,
}

impl SweepResults {
    /// Read a `sweep.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not a kdrun sweep file", path.display()))
    }

    /// The sweep's folder as pages name it, relative to its store ([`super::name_in_store`]).
    pub fn sweep_in_store(&self) -> String {
        let store = self.first_ok().and_then(RunResults::store);
        super::name_in_store(store.as_deref(), Path::new(&self.sweep_dir))
    }

    /// The first trial that finished.
    pub fn first_ok(&self) -> Option<&RunResults> {
        self.trials.iter().find_map(|t| t.results.as_ref())
    }

    /// A trial's folder (`trial-001`, …): in the sweep's run folder, and its pages' folder
    /// relative to the sweep's page.
    pub fn trial_dir(t: &TrialOutcome) -> String {
        format!("trial-{:03}", t.index + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sweep.json` keeps its layout: a file written before the schema moved into the store
    /// loads, and writes back the same JSON.
    #[test]
    fn stored_sweeps_keep_their_layout() {
        let text = include_str!("../../tests/fixtures/sweep-min.json");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sweep.json");
        std::fs::write(&path, text).unwrap();
        let s = SweepResults::load(&path).unwrap();
        assert_eq!(s.keys, ["distill.temperature", "runtime.seed"]);
        assert_eq!(s.trials.len(), 6);
        assert_eq!(s.trials[0].values[0].1, toml::Value::Float(1.0));
        assert_eq!(s.trials[0].values[1].1, toml::Value::Integer(1));
        assert!(s.trials[5].results.is_none() && s.trials[5].error.is_some());
        assert_eq!(
            s.first_ok().unwrap().run_dir,
            s.trials[0].results.as_ref().unwrap().run_dir
        );
        assert_eq!(SweepResults::trial_dir(&s.trials[5]), "trial-006");
        let original: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_value(&s).unwrap(), original);
        // A sweep from before kdrun recorded its report folder.
        let mut old = original.clone();
        old.as_object_mut().unwrap().remove("report_dir");
        let s: SweepResults = serde_json::from_value(old).unwrap();
        assert_eq!(s.report_dir, "");
        std::fs::write(&path, "{\"trials\": 3}").unwrap();
        let err = format!("{:#}", SweepResults::load(&path).unwrap_err());
        assert!(err.contains("not a kdrun sweep file"), "{err}");
    }
}
