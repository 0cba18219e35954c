//! Evaluation: predictions on the test split, sklearn-style scores, inference timing.

pub mod metrics;
pub mod timing;

use crate::data::batch::{Batcher, Encoded};
use crate::models::Classifier;
use anyhow::Result;
use burn::tensor::Device;

pub use crate::models::{accuracy, predict};
pub use metrics::{ClassScores, ClassificationReport};
pub use timing::{time_inference, time_text_inference, InferenceTiming};

/// A model scored on the test split.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Predicted class of each test item, in item order.
    pub predictions: Vec<usize>,
    pub report: ClassificationReport,
    pub timing: InferenceTiming,
    pub params: usize,
}

/// Score `model` (switched to inference mode here) on `test` and time its inference.
pub fn evaluate<M: Classifier>(
    model: &M,
    batcher: &Batcher,
    test: &[Encoded],
    classes: usize,
    timing_batch: usize,
    timing_repeats: usize,
    device: &Device,
) -> Result<Evaluation> {
    let model = model.valid();
    let predictions = predict(&model, batcher, test, timing_batch, device)?;
    let truth: Vec<usize> = test.iter().map(|e| e.label).collect();
    let report = ClassificationReport::new(&truth, &predictions, classes);
    let timing = time_inference(&model, batcher, test, timing_batch, timing_repeats, device)?;
    Ok(Evaluation {
        predictions,
        report,
        timing,
        params: model.num_params(),
    })
}
