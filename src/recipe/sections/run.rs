//! `[report]` and `[runtime]`: where results go and what runs them.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportSection {
    /// Reports go to `<dir>/<recipe name>/`.
    pub dir: PathBuf,
    /// Page title. Empty: derived from the recipe name.
    pub title: String,
    /// Batch size of the inference-time measurement.
    pub timing_batch: usize,
    /// Timed passes over the test split (after one untimed warm-up pass); the best is reported.
    pub timing_repeats: usize,
    /// A folder of templates that replace kdrun's own (`report.html`, `report.md`, `sweep.html`,
    /// `sweep.md`, `index.html`, `index.md`, `style.css`; see `templates/`). Empty: kdrun's.
    pub templates: PathBuf,
}

impl Default for ReportSection {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("reports"),
            title: String::new(),
            timing_batch: 256,
            timing_repeats: 3,
            templates: PathBuf::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// A hardware GPU adapter through wgpu if one answers, else the CPU backend.
    Auto,
    Wgpu,
    Cpu,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSection {
    pub backend: BackendChoice,
    /// Seed of initialization, shuffling and dropout.
    pub seed: u64,
    /// CPU threads for the CPU backend. 0: all cores.
    pub threads: usize,
    /// Sweep trials run at once, each in a `kdrun --trial` process of its own with its share of
    /// `threads` (`--jobs` on the command line). 0 or 1: one after another.
    pub jobs: usize,
    /// Where results and artifacts go (a run folder per run).
    pub store: PathBuf,
}

impl Default for RuntimeSection {
    fn default() -> Self {
        Self {
            backend: BackendChoice::Auto,
            seed: 42,
            threads: 0,
            jobs: 1,
            store: PathBuf::from("runs"),
        }
    }
}
