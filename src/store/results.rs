//! What a run found, as saved in `results.json`: enough to re-render every report without
//! retraining.

use super::machine::Machine;
use crate::data::Class;
use crate::eval::{ClassificationReport, InferenceTiming};
use crate::train::pretrain::PretrainReport;
use crate::train::EpochRecord;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One evaluated model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelResult {
    /// `teacher`, `student` or `distilled`.
    pub key: String,
    /// Display name, e.g. "Teacher (BERT)".
    pub label: String,
    pub params: usize,
    pub trainable_params: usize,
    pub report: ClassificationReport,
    pub timing: InferenceTiming,
    pub train_seconds: f64,
    pub best_epoch: usize,
    pub best_valid_accuracy: f64,
    pub history: Vec<EpochRecord>,
    /// Predicted class of each test example, in test order (empty in results written before
    /// kdrun recorded them; the error analysis needs them).
    #[serde(default)]
    pub predictions: Vec<usize>,
}

/// Examples per class in each split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitCounts {
    pub train: Vec<usize>,
    pub valid: Vec<usize>,
    pub test: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResults {
    pub recipe_name: String,
    pub title: String,
    pub started: String,
    pub finished: String,
    pub total_seconds: f64,
    pub kdrun_version: String,
    pub git_commit: Option<String>,
    pub backend: String,
    pub adapter: String,
    pub backend_reason: String,
    pub machine: Machine,
    pub classes: Vec<Class>,
    pub counts: SplitCounts,
    /// The students' character vocabulary.
    pub vocab_size: usize,
    /// The teacher's vocabulary (the same characters, or a checkpoint's WordPiece vocabulary).
    pub teacher_vocab_size: usize,
    pub teacher_logit_rows: usize,
    /// `character` or `word`.
    pub student_tokens: String,
    /// Coverage of the students' pretrained vectors, if any.
    pub vectors_coverage: Option<crate::data::vectors::Coverage>,
    /// Examples the distilled student learned from (training split + synthetic ones).
    pub transfer_set: usize,
    /// Further pre-training of the teacher, if the recipe asked for it.
    pub pretrain: Option<PretrainReport>,
    /// What loading and training said once (skipped checkpoint heads, new heads, …).
    pub notes: Vec<String>,
    /// The resolved recipe, TOML.
    pub recipe_toml: String,
    /// The run's folder in the store.
    pub run_dir: String,
    /// The stage folders this run used (computed or reused), by stage.
    pub stages: std::collections::BTreeMap<String, String>,
    pub models: Vec<ModelResult>,
    /// The test sentences, in test order (for the error analysis).
    #[serde(default)]
    pub test_texts: Vec<String>,
    /// The test examples' classes, in test order.
    #[serde(default)]
    pub test_labels: Vec<usize>,
    /// Where the run wrote its report pages (`report.dir/<name>`); `kdrun report` re-renders
    /// them there.
    #[serde(default)]
    pub report_dir: String,
}

impl RunResults {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not a kdrun results file", path.display()))
    }

    pub fn model(&self, key: &str) -> Option<&ModelResult> {
        self.models.iter().find(|m| m.key == key)
    }
}
