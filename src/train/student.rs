//! The student: a BiLSTM trained on hard labels, teacher logits, or both.

use super::{fit, FitSettings, Fitted};
use crate::data::batch::{Batcher, Encoded};
use crate::data::vectors::{embedding_matrix, wanted_tokens, Coverage, Vectors};
use crate::data::StudentVocab;
use crate::distill::{DistillLoss, TeacherLogits};
use crate::models::bilstm::{BiLstmHead, BiLstmInput};
use crate::models::{BiLstmClassifier, BiLstmConfig, Classifier};
use crate::recipe::{Optim, StudentHead, StudentInput, StudentSection};
use anyhow::{anyhow, bail, Result};
use burn::tensor::{Device, Tensor, TensorData};

/// How a student is trained: `optim`, the global gradient norm clipped to 5, its initialization
/// and batches drawn from the run's `seed` + 1.
pub fn fit_settings(stage: &str, optim: Optim, seed: u64) -> FitSettings {
    FitSettings::new(stage, optim, Some(5.0), seed.wrapping_add(1))
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
    pub fn model(&self, s: &StudentSection, device: &Device) -> BiLstmClassifier {
        let model = bilstm_config(s, self.vocab_size, self.classes).init(device);
        match &self.embeddings {
            Some(m) => {
                let d = s.embedding_dim;
                let t = Tensor::from_data(TensorData::new(m.clone(), [self.vocab_size, d]), device);
                model.with_embeddings(t, self.freeze_embeddings)
            }
            None => model,
        }
    }
}

/// What a recipe's students start from: sizes and, with `student.vectors`, the embedding matrix
/// (vectors the file lacks drawn from `seed`) and how much of the vocabulary it covers. `train`
/// (the encoded training split) gives the token counts the coverage is weighted by.
pub fn student_init(
    s: &StudentSection,
    seed: u64,
    vocab: &StudentVocab,
    train: &[Encoded],
    classes: usize,
) -> Result<(StudentInit, Option<Coverage>)> {
    let (embeddings, coverage) = embeddings(s, seed, vocab, train)?;
    let init = StudentInit {
        vocab_size: vocab.len(),
        classes,
        embeddings,
        freeze_embeddings: s.freeze_vectors,
    };
    Ok((init, coverage))
}

/// The students' embedding matrix from `student.vectors`, and its coverage.
fn embeddings(
    s: &StudentSection,
    seed: u64,
    vocab: &StudentVocab,
    train: &[Encoded],
) -> Result<(Option<Vec<f32>>, Option<Coverage>)> {
    let path = &s.vectors;
    if path.as_os_str().is_empty() {
        return Ok((None, None));
    }
    let wanted = wanted_tokens(vocab.tokens(), s.oov_init);
    let vectors = Vectors::load(path, Some(&wanted))?;
    if vectors.dim != s.embedding_dim {
        bail!(
            "student.vectors: {} has {}-d vectors but student.embedding_dim = {} (set it to {})",
            path.display(),
            vectors.dim,
            s.embedding_dim,
            vectors.dim
        );
    }
    let mut counts = vec![0usize; vocab.len()];
    for e in train {
        for &t in &e.tokens {
            counts[t as usize] += 1;
        }
    }
    let (matrix, coverage) = embedding_matrix(vocab.tokens(), &counts, &vectors, s.oov_init, seed);
    crate::runtime::progress::note(&format!(
        "student: vectors for {}, from {}",
        coverage.describe(vocab.unit()),
        path.display()
    ));
    Ok((Some(matrix), Some(coverage)))
}

/// Train one student of `[student]` as `settings` say. Both students of a run start from the same
/// seeded initialization (`settings.seed`) and see the same batch order, so they differ only in
/// what they learn from.
#[allow(clippy::too_many_arguments)]
pub fn train_student(
    s: &StudentSection,
    settings: &FitSettings,
    init: &StudentInit,
    batcher: &Batcher,
    train: &[Encoded],
    valid: &[Encoded],
    device: &Device,
    loss: DistillLoss,
    teacher: Option<&TeacherLogits>,
) -> Result<Fitted<BiLstmClassifier>> {
    if loss.needs_teacher() && teacher.is_none() {
        return Err(anyhow!(
            "{}: the soft loss needs teacher logits",
            settings.stage
        ));
    }
    device.seed(settings.seed);
    let model = init.model(s, device);
    fit(model, batcher, train, valid, device, settings, |m, b| {
        let student = m.logits(b);
        let soft_targets = match (loss.needs_teacher(), teacher) {
            (true, Some(t)) => Some(t.batch(&b.ids, device)?),
            _ => None,
        };
        Ok(loss.forward(student, b.labels.clone(), soft_targets))
    })
}
