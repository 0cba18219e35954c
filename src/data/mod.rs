//! Data: files → polars frames → class filter, downsampling and splits → tokens → batches.

pub mod batch;
pub mod hf_tokenizer;
pub mod layout;
pub mod piece;
pub mod read;
pub mod select;
pub mod tokenizer;
pub mod tokenizer_json;
pub mod vectors;
pub mod vocab;
pub mod words;

use crate::recipe::DataSection;
use anyhow::Result;
use polars::prelude::*;

pub use batch::{Batcher, InputKind, TextEncoder, TokenBatch};
pub use hf_tokenizer::HfTokenizer;
pub use piece::Piece;
pub use read::ReadFile;
pub use tokenizer::{Layout, MlmSequence, TeacherTokenizer};
pub use vocab::CharVocab;
pub use words::{StudentVocab, WordVocab};

/// A class kept by the recipe: its label value in the files and its display name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Class {
    pub label: String,
    pub name: String,
}

/// Rows of one kind left out of a data file (`data.on_error = "skip"`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Skipped {
    /// The data file.
    pub file: String,
    /// What was wrong with them (`empty text in \`sentence\``).
    pub reason: String,
    pub rows: usize,
    /// Where the first one is (`line 4`: its physical line in the file, from 1).
    pub first_at: String,
}

impl Skipped {
    /// `3 rows of train.json left out: empty text in \`sentence\` (first at line 4)`.
    pub fn describe(&self) -> String {
        let file = std::path::Path::new(&self.file)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.file.clone());
        format!(
            "{} row{} of {file} left out: {} (first at {})",
            self.rows,
            if self.rows == 1 { "" } else { "s" },
            self.reason,
            self.first_at
        )
    }
}

/// One example. `id` is its row number in its file: teacher logits are stored under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub id: u32,
    pub text: String,
    /// Index into [`Dataset::classes`].
    pub label: usize,
}

/// The splits of a run. `valid` is carved from the training file; `test` is only ever used for
/// the final evaluation.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub classes: Vec<Class>,
    pub train: Vec<Example>,
    pub valid: Vec<Example>,
    pub test: Vec<Example>,
    /// Every text of the training file (all classes, before downsampling) except the validation
    /// split's: the default further pre-training corpus. The test file never contributes.
    pub unlabeled: Vec<String>,
    /// Examples per class in each split, counted when the splits were made.
    counts: SplitCounts,
    /// Rows of the files left out (`data.on_error = "skip"`), by file and kind.
    pub skipped: Vec<Skipped>,
}

/// Examples per class in each split: entry `k` counts the examples of [`Dataset::classes`]`[k]`.
/// Computed once, when the splits are made; read it with [`Dataset::class_counts`]. (The store
/// records the same three lists in its results.)
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SplitCounts {
    pub train: Vec<usize>,
    pub valid: Vec<usize>,
    pub test: Vec<usize>,
}

impl SplitCounts {
    /// Count the examples of each of `n_classes` classes in each split.
    pub fn of(n_classes: usize, train: &[Example], valid: &[Example], test: &[Example]) -> Self {
        let count = |xs: &[Example]| {
            let mut n = vec![0; n_classes];
            for e in xs {
                n[e.label] += 1;
            }
            n
        };
        Self {
            train: count(train),
            valid: count(valid),
            test: count(test),
        }
    }
}

impl Dataset {
    /// Read and split the files a recipe's `data` section names.
    pub fn load(data: &DataSection) -> Result<Self> {
        let train = read::read_file(&data.train, data)?;
        let test = read::read_file(&data.test, data)?;
        let mut skipped = train.skipped;
        skipped.extend(test.skipped);
        let mut dataset = select::select(&train.frame, &test.frame, data)?;
        skipped.append(&mut dataset.skipped);
        dataset.skipped = skipped;
        Ok(dataset)
    }

    pub fn class_names(&self) -> Vec<String> {
        self.classes.iter().map(|c| c.name.clone()).collect()
    }

    /// Examples per class in each split (counted once, when the splits were made).
    pub fn class_counts(&self) -> &SplitCounts {
        &self.counts
    }

    /// Examples per class and split, as a table (`class`, `label`, `train`, `valid`, `test`).
    pub fn counts(&self) -> PolarsResult<DataFrame> {
        let column = |per_class: &[usize], total: usize| -> Vec<u32> {
            per_class
                .iter()
                .chain([&total])
                .map(|&n| n as u32)
                .collect()
        };
        let mut names: Vec<String> = self.class_names();
        let mut labels: Vec<String> = self.classes.iter().map(|c| c.label.clone()).collect();
        names.push("total".into());
        labels.push(String::new());
        let c = &self.counts;
        df!(
            "class" => names,
            "label" => labels,
            "train" => column(&c.train, self.train.len()),
            "valid" => column(&c.valid, self.valid.len()),
            "test" => column(&c.test, self.test.len())
        )
    }
}

/// Items for a message, joined with commas: the first 20, then how many more.
pub(crate) fn listed(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    let mut out = items
        .iter()
        .take(20)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > 20 {
        out.push_str(&format!(" and {} more", items.len() - 20));
    }
    out
}
