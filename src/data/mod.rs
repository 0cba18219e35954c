//! Data: files → polars frames → class filter, downsampling and splits → tokens → batches.

pub mod batch;
pub mod hf_tokenizer;
pub mod piece;
pub mod read;
pub mod select;
pub mod tokenizer;
pub mod vectors;
pub mod vocab;
pub mod words;

use crate::recipe::DataSection;
use anyhow::Result;
use polars::prelude::*;

pub use batch::{Batcher, InputKind, TextEncoder, TokenBatch};
pub use hf_tokenizer::HfTokenizer;
pub use piece::Piece;
pub use tokenizer::{MlmSequence, TeacherTokenizer};
pub use vocab::CharVocab;
pub use words::{StudentVocab, WordVocab};

/// A class kept by the recipe: its label value in the files and its display name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Class {
    pub label: String,
    pub name: String,
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
}

impl Dataset {
    /// Read and split the files a recipe's `data` section names.
    pub fn load(data: &DataSection) -> Result<Self> {
        let train = read::read_examples(&data.train, data)?;
        let test = read::read_examples(&data.test, data)?;
        select::select(&train, &test, data)
    }

    pub fn class_names(&self) -> Vec<String> {
        self.classes.iter().map(|c| c.name.clone()).collect()
    }

    /// Examples per class and split, as a table (`class`, `label`, `train`, `valid`, `test`).
    pub fn counts(&self) -> PolarsResult<DataFrame> {
        let count = |xs: &[Example], k: usize| xs.iter().filter(|e| e.label == k).count() as u32;
        let k = self.classes.len();
        let mut names: Vec<String> = self.class_names();
        let mut labels: Vec<String> = self.classes.iter().map(|c| c.label.clone()).collect();
        let mut train: Vec<u32> = (0..k).map(|i| count(&self.train, i)).collect();
        let mut valid: Vec<u32> = (0..k).map(|i| count(&self.valid, i)).collect();
        let mut test: Vec<u32> = (0..k).map(|i| count(&self.test, i)).collect();
        names.push("total".into());
        labels.push(String::new());
        train.push(self.train.len() as u32);
        valid.push(self.valid.len() as u32);
        test.push(self.test.len() as u32);
        df!("class" => names, "label" => labels, "train" => train, "valid" => valid, "test" => test)
    }
}
