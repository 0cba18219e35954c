//! `[data]`: which files, which classes, how they are split and read.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Input file layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DataFormat {
    /// CLUE TNEWS json-lines: `{"label","label_desc","sentence","keywords"}`.
    Tnews,
    /// Any json-lines file with a text and a label field.
    Jsonl,
    /// Any CSV file with a header row naming a text and a label column.
    Csv,
}

/// What reading a data file does with a row it cannot use (not a JSON object, no text or label,
/// an empty text, a test label that is not a class).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Stop before anything runs, naming the file, the line and the field.
    #[default]
    Fail,
    /// Leave the row out; how many rows of each kind were left out reaches the results and the
    /// report's data section.
    Skip,
}

impl OnError {
    fn is_fail(&self) -> bool {
        *self == OnError::Fail
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DataSection {
    pub format: DataFormat,
    /// Training file; the validation split is carved from it.
    pub train: PathBuf,
    /// Test file (TNEWS dev in the reference's table). Used only for the final evaluation.
    pub test: PathBuf,
    /// Field or column holding the text. Left out: `sentence` for `tnews`, `text` otherwise
    /// (filled in when the recipe is resolved).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_field: Option<String>,
    /// Field or column holding the label. Left out: `label`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_field: Option<String>,
    /// Classes to keep, by label code (`"103"`) or name (`"sports"`, `"news_sports"`). Empty: all
    /// classes seen in the training file.
    pub classes: Vec<String>,
    /// Keep at most this many training examples per class (seeded draw). 0: keep all.
    pub max_per_class: usize,
    /// Fraction of each class of the training file held out for validation (model selection).
    pub valid_fraction: f64,
    /// Tokens per example at most (the teacher's `[CLS]`/`[SEP]` included).
    pub max_len: usize,
    /// Seed of downsampling and of the validation split.
    pub seed: u64,
    /// Characters seen fewer times than this in the training text map to `[UNK]`.
    pub min_count: usize,
    /// Lower-case the text before tokenization.
    pub lowercase: bool,
    /// `"fail"` (default) or `"skip"`: what a bad row does. Left out of the resolved recipe while
    /// it is the default, so stores made before the key existed keep their stage keys.
    #[serde(skip_serializing_if = "OnError::is_fail")]
    pub on_error: OnError,
}

impl Default for DataSection {
    fn default() -> Self {
        Self {
            format: DataFormat::Tnews,
            train: PathBuf::from("data/tnews/train.json"),
            test: PathBuf::from("data/tnews/dev.json"),
            text_field: None,
            label_field: None,
            classes: Vec::new(),
            max_per_class: 0,
            valid_fraction: 0.1,
            max_len: 48,
            seed: 0,
            min_count: 1,
            lowercase: true,
            on_error: OnError::Fail,
        }
    }
}

impl DataSection {
    /// The text field: the recipe's, else the format's default.
    pub fn text_field(&self) -> &str {
        match (&self.text_field, self.format) {
            (Some(field), _) => field,
            (None, DataFormat::Tnews) => "sentence",
            (None, _) => "text",
        }
    }

    /// The label field: the recipe's, else `label`.
    pub fn label_field(&self) -> &str {
        self.label_field.as_deref().unwrap_or("label")
    }
}
