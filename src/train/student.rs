//! The student: a BiLSTM trained on hard labels, teacher logits, or both.

use super::{fit, FitSettings, Fitted};
use crate::data::batch::{Batcher, Encoded};
use crate::data::vectors::{embedding_matrix, wanted_tokens, Coverage, Vectors};
use crate::data::StudentVocab;
use crate::distill::{DistillLoss, TeacherLogits};
use crate::models::bilstm::{BiLstmHead, BiLstmInput};
use crate::models::{BiLstmClassifier, BiLstmConfig, Classifier};
use crate::recipe::{Recipe, StudentHead, StudentInput, StudentSection};
use anyhow::{anyhow, bail, Result};
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

/// The student's model configuration from the recipe's `[student]` section.
pub fn bilstm_config(s: &StudentSection, vocab_size: usize, classes: usize) -> BiLstmConfig {
    BiLstmConfig::new(
        vocab_size,
        classes,
        s.embedding_dim,
        s.hidden,
        match s.head {
            StudentHead::Tang => BiLstmHead::Tang,
            StudentHead::Seed => BiLstmHead::MaxOverTime,
        },
        s.fc_hidden,
        match s.input {
            StudentInput::Sequence => BiLstmInput::Sequence,
            StudentInput::Mean => BiLstmInput::Mean,
        },
    )
    .with_dropout(s.dropout)
}

impl StudentInit {
    pub fn model(&self, recipe: &Recipe, device: &Device) -> BiLstmClassifier {
        let model = bilstm_config(&recipe.student, self.vocab_size, self.classes).init(device);
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

/// What a recipe's students start from: sizes and, with `student.vectors`, the embedding matrix
/// and how much of the vocabulary it covers. `train` (the encoded training split) gives the token
/// counts the coverage is weighted by.
pub fn student_init(
    r: &Recipe,
    vocab: &StudentVocab,
    train: &[Encoded],
    classes: usize,
) -> Result<(StudentInit, Option<Coverage>)> {
    let (embeddings, coverage) = embeddings(r, vocab, train)?;
    let init = StudentInit {
        vocab_size: vocab.len(),
        classes,
        embeddings,
        freeze_embeddings: r.student.freeze_vectors,
    };
    Ok((init, coverage))
}

/// The students' embedding matrix from `student.vectors`, and its coverage.
fn embeddings(
    r: &Recipe,
    vocab: &StudentVocab,
    train: &[Encoded],
) -> Result<(Option<Vec<f32>>, Option<Coverage>)> {
    let path = &r.student.vectors;
    if path.as_os_str().is_empty() {
        return Ok((None, None));
    }
    let wanted = wanted_tokens(vocab.tokens(), r.student.oov_init);
    let vectors = Vectors::load(path, Some(&wanted))?;
    if vectors.dim != r.student.embedding_dim {
        bail!(
            "student.vectors: {} has {}-d vectors but student.embedding_dim = {} (set it to {})",
            path.display(),
            vectors.dim,
            r.student.embedding_dim,
            vectors.dim
        );
    }
    let mut counts = vec![0usize; vocab.len()];
    for e in train {
        for &t in &e.tokens {
            counts[t as usize] += 1;
        }
    }
    let (matrix, coverage) = embedding_matrix(
        vocab.tokens(),
        &counts,
        &vectors,
        r.student.oov_init,
        r.runtime.seed,
    );
    crate::runtime::progress::note(&format!(
        "student: vectors for {}, from {}",
        coverage.describe(vocab.unit()),
        path.display()
    ));
    Ok((Some(matrix), Some(coverage)))
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
