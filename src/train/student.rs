//! The student: a BiLSTM trained on hard labels, teacher logits, or both.

use super::{fit, FitSettings, Fitted};
use crate::data::batch::{Batcher, Encoded};
use crate::distill::{DistillLoss, TeacherLogits};
use crate::models::{BiLstmClassifier, Classifier};
use crate::recipe::Recipe;
use anyhow::{anyhow, Result};
use burn::tensor::{Device, Tensor, TensorData};

pub fn fit_settings(recipe: &Recipe, stage: &str) -> FitSettings {
    let s = &recipe.student;
    FitSettings {
        stage: stage.into(),
        epochs: s.epochs,
        lr: s.lr,
        batch_size: s.batch_size,
        warmup: s.warmup,
        weight_decay: s.weight_decay,
        grad_clip: Some(5.0),
        seed: recipe.runtime.seed.wrapping_add(1),
    }
}

/// What a student starts from: its sizes and, with pretrained vectors, its embedding matrix.
#[derive(Debug, Clone)]
pub struct StudentInit {
    pub vocab_size: usize,
    pub classes: usize,
    /// Row-major `[vocab_size, embedding_dim]`.
    pub embeddings: Option<Vec<f32>>,
    pub freeze_embeddings: bool,
}

impl StudentInit {
    pub fn model(&self, recipe: &Recipe, device: &Device) -> BiLstmClassifier {
        let model = BiLstmClassifier::new(&recipe.student, self.vocab_size, self.classes, device);
        match &self.embeddings {
            Some(m) => {
                let d = recipe.student.embedding_dim;
                let t = Tensor::from_data(TensorData::new(m.clone(), [self.vocab_size, d]), device);
                model.with_embeddings(t, self.freeze_embeddings)
            }
            None => model,
        }
    }
}

/// Train one student. Both students of a run start from the same seeded initialization and see
/// the same batch order, so they differ only in what they learn from.
#[allow(clippy::too_many_arguments)]
pub fn train_student(
    recipe: &Recipe,
    stage: &str,
    init: &StudentInit,
    batcher: &Batcher,
    train: &[Encoded],
    valid: &[Encoded],
    device: &Device,
    loss: DistillLoss,
    teacher: Option<&TeacherLogits>,
) -> Result<Fitted<BiLstmClassifier>> {
    if loss.needs_teacher() && teacher.is_none() {
        return Err(anyhow!("{stage}: the soft loss needs teacher logits"));
    }
    device.seed(recipe.runtime.seed.wrapping_add(1));
    let model = init.model(recipe, device);
    fit(
        model,
        batcher,
        train,
        valid,
        device,
        &fit_settings(recipe, stage),
        |m, b| {
            let student = m.logits(b);
            let soft_targets = match (loss.needs_teacher(), teacher) {
                (true, Some(t)) => Some(t.batch(&b.ids, device)?),
                _ => None,
            };
            Ok(loss.forward(student, b.labels.clone(), soft_targets))
        },
    )
}
