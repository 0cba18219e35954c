//! `[report]` and `[runtime]`: where results go and what runs them.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
    /// What a sweep's page chooses its setting by, always on the validation split: a model's
    /// validation accuracy (`distilled`, …) or `kd_gain` (see [`Select`]).
    pub select: String,
}

/// What a sweep chooses its setting by (`report.select`), on the validation split: the best
/// validation accuracy of one model (mean over seeds), or the distilled student's validation
/// gain over the student alone. kdrun records no validation macro-F1, so none is offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    /// The validation accuracy of the model of this key (`distilled`, `student`, …).
    Model(&'static str),
    /// Validation accuracy of the distilled student − that of the student alone, same trial.
    KdGain,
}

impl Select {
    /// The values `report.select` accepts.
    pub const VALUES: [&'static str; 7] = [
        "distilled",
        "student",
        "teacher",
        "baseline",
        "textgcn",
        "textgcn_distilled",
        "kd_gain",
    ];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "kd_gain" => Some(Self::KdGain),
            _ => Self::VALUES.into_iter().find(|v| *v == s).map(Self::Model),
        }
    }

    /// The model whose test accuracy the chosen setting reports.
    pub fn model(self) -> &'static str {
        match self {
            Self::Model(m) => m,
            Self::KdGain => "distilled",
        }
    }

    /// What the choice is made on, for the page.
    pub fn describe(self) -> String {
        match self {
            Self::Model(m) => format!("validation accuracy of the {}", model_name(m)),
            Self::KdGain => "validation gain of the distilled student over the student alone \
                             (validation accuracy, same trial)"
                .into(),
        }
    }
}

/// A model key as prose: `student` → "student alone".
pub fn model_name(key: &str) -> &str {
    match key {
        "distilled" => "distilled student",
        "student" => "student alone",
        "textgcn_distilled" => "distilled TextGCN",
        "textgcn" => "TextGCN",
        "baseline" => "linear baseline",
        other => other,
    }
}

impl Default for ReportSection {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("reports"),
            title: String::new(),
            timing_batch: 256,
            timing_repeats: 3,
            templates: PathBuf::new(),
            select: "distilled".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// A hardware GPU adapter through wgpu if one answers, else the CPU backend.
    Auto,
    Wgpu,
    Cpu,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSection {
    /// `"auto"`: a hardware GPU through wgpu if there is one, else the CPU; `"wgpu"` or `"cpu"` to insist.
    pub backend: BackendChoice,
    /// Seed of initialization, shuffling and dropout.
    pub seed: u64,
    /// CPU threads for the CPU backend. 0: all cores.
    pub threads: usize,
    /// Sweep trials run at once (≥ 1), each in a `kdrun --trial` process of its own with its
    /// share of `threads` (`--jobs` on the command line). 1: one after another.
    pub jobs: usize,
    /// Where results and artifacts go (a run folder per run).
    pub store: PathBuf,
    /// How a sweep's jobs are submitted with `--executor slurm` (no stage depends on it).
    pub slurm: SlurmSection,
}

/// `[runtime.slurm]`: what each sbatch script of a sweep asks of the cluster. Empty or 0: the
/// cluster's default. `--partition`, `--gpus-per-task`, `--time` and `--array-limit` override it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmSection {
    /// `--partition` (several: comma-separated).
    pub partition: String,
    /// `--account` to charge.
    pub account: String,
    /// `--time` of each job: `minutes`, `[hours:]minutes:seconds`, `days-hours[:minutes[:seconds]]`
    /// (a whole number: minutes).
    #[serde(deserialize_with = "text_or_minutes")]
    #[schemars(schema_with = "text_or_minutes_schema")]
    pub time: String,
    /// `--gpus-per-task` of each job.
    pub gpus_per_task: u32,
    /// `--cpus-per-task` of each job.
    pub cpus_per_task: u32,
    /// `--mem` of each job, e.g. `16G`.
    pub mem: String,
    /// Array tasks running at once (`--array=1-N%limit`).
    pub array_limit: usize,
    /// Further sbatch options, one `#SBATCH` line each, e.g. `["--qos=high", "--constraint=a100"]`.
    pub sbatch_options: Vec<String>,
    /// Shell lines each job runs before kdrun, e.g. `["module load cuda/12.4"]`.
    pub setup: Vec<String>,
}

impl Default for RuntimeSection {
    fn default() -> Self {
        Self {
            backend: BackendChoice::Auto,
            seed: 42,
            threads: 0,
            jobs: 1,
            store: PathBuf::from("runs"),
            slurm: SlurmSection::default(),
        }
    }
}

fn text_or_minutes_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": ["string", "integer"], "minimum": 0, "default": ""})
}

/// A string, or a whole number of minutes (`time = 90`) as its text.
fn text_or_minutes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a Slurm time limit such as \"2:00:00\", or a whole number of minutes")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
            u64::try_from(v)
                .map(|v| v.to_string())
                .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
        }
    }
    d.deserialize_any(V)
}

/// A model `[export]` can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportModel {
    Distilled,
    Student,
    /// A BERT teacher (not an ensemble, XLNet or a model kdrun also trains elsewhere).
    Teacher,
}

/// A format `[export]` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// ONNX (opset 17) with `tokenizer.json` and `config.json` (`kdrun export --format onnx`).
    Onnx,
}

/// `[export]`: the models each finished run (each trial of a sweep) writes into
/// `<run folder>/export/<model>-<format>/`, as `kdrun export` would; the report links them.
/// Part of no stage key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ExportSection {
    /// `"distilled"`, `"student"`, `"teacher"`. Empty: export nothing.
    pub models: Vec<ExportModel>,
    /// Formats to write each model in (ONNX).
    pub formats: Vec<ExportFormat>,
}

impl Default for ExportSection {
    fn default() -> Self {
        Self {
            models: Vec::new(),
            formats: vec![ExportFormat::Onnx],
        }
    }
}

impl ExportSection {
    /// Nothing to export (the section stays out of the resolved recipe).
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }
}
