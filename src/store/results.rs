//! What a run found, as saved in `results.json`: enough to re-render every report without
//! retraining.

use crate::data::Class;
use crate::eval::{ClassificationReport, InferenceTiming};
use crate::runtime::machine::Machine;
use crate::train::pretrain::PretrainReport;
use crate::train::EpochRecord;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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
    /// NaN where the model has none (written as `null`; a results file without the field, or
    /// with `null`, reads as NaN): a sweep then never chooses by it in silence.
    #[serde(default = "no_score", deserialize_with = "score_or_null")]
    pub best_valid_accuracy: f64,
    pub history: Vec<EpochRecord>,
    /// Predicted class of each test example, in test order (empty in results written before
    /// kdrun recorded them; the error analysis needs them).
    #[serde(default)]
    pub predictions: Vec<usize>,
}

/// Examples per class in each split (the data layer's counts, stored as they are).
pub use crate::data::SplitCounts;

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
    /// Rows of the data files left out (`data.on_error = "skip"`), by file and kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_rows: Vec<crate::data::Skipped>,
    /// The students' vocabulary.
    pub vocab_size: usize,
    /// The teacher's vocabulary (the same characters, or a checkpoint's WordPiece vocabulary).
    pub teacher_vocab_size: usize,
    pub teacher_logit_rows: usize,
    /// `character` or `word` (results from before word tokens existed: `character`).
    #[serde(default = "character")]
    pub student_tokens: String,
    /// Coverage of the students' pretrained vectors, if any.
    #[serde(default)]
    pub vectors_coverage: Option<crate::data::vectors::Coverage>,
    /// Examples the distilled student learned from (training split + synthetic ones; in results
    /// from before this was recorded, the training split: [`RunResults::load`] fills it in).
    #[serde(default)]
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
    #[serde(default)]
    pub stages: std::collections::BTreeMap<String, String>,
    pub models: Vec<ModelResult>,
    /// The test sentences, in test order (for the error analysis).
    #[serde(default)]
    pub test_texts: Vec<String>,
    /// The test examples' classes, in test order.
    #[serde(default)]
    pub test_labels: Vec<usize>,
    /// The folders `[export]` wrote for this run (`<run folder>/export/<model>-<format>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<String>,
    /// Where the run wrote its report pages (`report.dir/<name>`); `kdrun report` re-renders
    /// them there.
    #[serde(default)]
    pub report_dir: String,
}

fn no_score() -> f64 {
    f64::NAN
}

/// A number, or `null` (how JSON writes NaN) as NaN.
fn score_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

fn character() -> String {
    "character".into()
}

impl RunResults {
    /// Read a `results.json`, also one written by an earlier kdrun (fields it lacked get their
    /// defaults; the transfer set of such a run was its training split).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut r: Self = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a kdrun results file", path.display()))?;
        if r.transfer_set == 0 {
            r.transfer_set = r.counts.train.iter().sum();
        }
        Ok(r)
    }

    /// The store this run was written to (its recipe's `runtime.store`).
    pub fn store(&self) -> Option<PathBuf> {
        self.recipe_str("runtime.store").map(PathBuf::from)
    }

    /// The run's folder as pages name it, relative to its store ([`super::name_in_store`]).
    pub fn run_in_store(&self) -> String {
        super::name_in_store(self.store().as_deref(), Path::new(&self.run_dir))
    }

    /// The resolved recipe as pages show it: every absolute path in it (data, vectors,
    /// checkpoints, store, report folder) made relative to the project — the folder that holds
    /// the store — or, outside it, cut to `…/<folder>/<file>`, so a published page never names
    /// a machine's folders or its user. The run folder keeps the full recipe (`recipe.toml`).
    pub fn recipe_for_pages(&self) -> String {
        let Ok(root) = toml::from_str::<toml::Value>(&self.recipe_toml) else {
            return self.recipe_toml.clone();
        };
        let project = self.store().and_then(|s| s.parent().map(Path::to_path_buf));
        fn paths<'v>(v: &'v toml::Value, out: &mut Vec<&'v str>) {
            match v {
                toml::Value::String(s) if Path::new(s).is_absolute() => out.push(s),
                toml::Value::Array(items) => items.iter().for_each(|i| paths(i, out)),
                toml::Value::Table(t) => t.values().for_each(|i| paths(i, out)),
                _ => {}
            }
        }
        let mut found = Vec::new();
        paths(&root, &mut found);
        // Longest first, so a path is not cut by a shorter one it starts with.
        found.sort_by_key(|p| std::cmp::Reverse(p.len()));
        found.dedup();
        let mut text = self.recipe_toml.clone();
        for abs in found {
            let path = Path::new(abs);
            let short = match project.as_deref().and_then(|p| path.strip_prefix(p).ok()) {
                Some(rel) if rel.as_os_str().is_empty() => ".".to_string(),
                Some(rel) => rel.display().to_string(),
                None => format!("…/{}", super::name_in_store(None, path)),
            };
            text = text.replace(&format!("\"{abs}\""), &format!("\"{short}\""));
        }
        text
    }

    /// A string of the stored resolved recipe by dotted key (`report.templates`); `None` if
    /// absent or empty.
    pub fn recipe_str(&self, key: &str) -> Option<String> {
        let root: toml::Value = toml::from_str(&self.recipe_toml).ok()?;
        let mut value = &root;
        for part in key.split('.') {
            value = value.get(part)?;
        }
        let s = value.as_str()?;
        (!s.is_empty()).then(|| s.to_string())
    }

    /// The recipe's `report.templates` folder, if it names one.
    pub fn templates_dir(&self) -> Option<PathBuf> {
        self.recipe_str("report.templates").map(PathBuf::from)
    }

    /// `<report.dir>/<name>` of the recipe: where its pages go.
    pub fn recipe_report_dir(&self) -> Option<PathBuf> {
        Some(Path::new(&self.recipe_str("report.dir")?).join(self.recipe_str("name")?))
    }

    pub fn model(&self, key: &str) -> Option<&ModelResult> {
        self.models.iter().find(|m| m.key == key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_results_load_and_name_their_recipes_folders() {
        // The shape of a results file from before kdrun recorded tokens, stages, the transfer
        // set and per-example predictions.
        let mut v: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/results-min.json")).unwrap();
        for k in [
            "student_tokens",
            "stages",
            "transfer_set",
            "vectors_coverage",
        ] {
            v.as_object_mut().unwrap().remove(k);
        }
        v["recipe_toml"] =
            "name = \"tnews\"\n[report]\ndir = \"/r/reports\"\ntemplates = \"\"\n".into();
        // A model without a validation score (field missing, or `null` as JSON writes NaN).
        v["models"][0]
            .as_object_mut()
            .unwrap()
            .remove("best_valid_accuracy");
        v["models"][1]["best_valid_accuracy"] = serde_json::Value::Null;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.json");
        std::fs::write(&path, v.to_string()).unwrap();
        let r = RunResults::load(&path).unwrap();
        assert_eq!(r.student_tokens, "character");
        assert!(
            r.models[0].best_valid_accuracy.is_nan() && r.models[1].best_valid_accuracy.is_nan()
        );
        assert!(r.models[2].best_valid_accuracy.is_finite());
        assert_eq!(r.transfer_set, r.counts.train.iter().sum::<usize>());
        assert!(r.transfer_set > 0);
        assert_eq!(
            r.recipe_report_dir(),
            Some(PathBuf::from("/r/reports/tnews"))
        );
        assert_eq!(r.templates_dir(), None);
        assert_eq!(r.recipe_str("report.no_such_key"), None);
    }

    #[test]
    fn pages_show_the_recipe_without_the_machines_folders() {
        let mut r: RunResults =
            serde_json::from_str(include_str!("../../tests/fixtures/results-min.json")).unwrap();
        r.recipe_toml = "name = \"tnews\"\n\n[data]\ntrain = \"/home/ann/kd/data/train.json\"\n\
             classes = [\"car\", \"game\"]\n\n[teacher]\ncheckpoint = \"/mnt/models/bert-base\"\n\
             \n[teacher.pretrain]\nextra = [\"/home/ann/kd/extra.txt\"]\n\n[report]\n\
             dir = \"/home/ann/kd/reports\"\n\n[runtime]\nstore = \"/home/ann/kd/runs\"\n"
            .into();
        let shown = r.recipe_for_pages();
        assert!(
            !shown.contains("/home/ann") && !shown.contains("/mnt"),
            "{shown}"
        );
        for line in [
            "train = \"data/train.json\"",
            "checkpoint = \"…/models/bert-base\"",
            "extra = [\"extra.txt\"]",
            "dir = \"reports\"",
            "store = \"runs\"",
            "classes = [\"car\", \"game\"]",
        ] {
            assert!(shown.contains(line), "{line} in {shown}");
        }
        // The order of the keys is the recipe's.
        assert!(shown.find("[data]") < shown.find("[teacher]"));
        assert!(toml::from_str::<toml::Value>(&shown).is_ok());
    }
}
