//! Models: the transformer teachers behind one seam ([`teacher`]: BERT and its RoBERTa / XLM-R
//! layouts, XLNet), the linear model, TextGCN and the BiLSTM student, each a Config/Module pair;
//! Hugging Face folders read and written by name whatever the architecture ([`hf`]), a checkpoint
//! folder opened as a teacher architecture ([`checkpoint`]), and `kdrun forward` ([`forward`]).

pub mod bert;
pub mod bilstm;
pub mod checkpoint;
pub mod forward;
pub mod hf;
pub mod linear;
pub mod lstm_op;
pub mod ops;
pub mod records;
pub mod teacher;
pub mod textgcn;
pub mod xlnet;

use crate::data::batch::{eval_order, Batcher, Encoded};
use crate::data::{InputKind, TokenBatch};
use anyhow::{anyhow, Result};
use burn::module::Module;
use burn::tensor::{Device, Tensor};

pub use bert::{BertClassifier, BertConfig};
pub use bilstm::{BiLstmClassifier, BiLstmConfig};
pub use checkpoint::Checkpoint;
pub use teacher::{FreezePlan, PretrainModel, TeacherConfig, TeacherModel};

/// A model that turns a padded batch into class logits.
pub trait Classifier: Module {
    /// The token layout the model reads.
    fn input_kind(&self) -> InputKind;
    /// Logits `[batch, classes]`.
    fn logits(&self, batch: &TokenBatch) -> Tensor<2>;
}

impl Classifier for BertClassifier {
    fn input_kind(&self) -> InputKind {
        InputKind::Teacher
    }

    fn logits(&self, batch: &TokenBatch) -> Tensor<2> {
        self.forward(batch.tokens.clone(), batch.mask.clone())
    }
}

impl Classifier for BiLstmClassifier {
    fn input_kind(&self) -> InputKind {
        InputKind::Student
    }

    fn logits(&self, batch: &TokenBatch) -> Tensor<2> {
        self.forward(batch.tokens.clone(), batch.mask.clone())
    }
}

/// Predicted class of each item (argmax of the logits), in item order. `model` should be in
/// inference mode (`Module::valid`) and `device` its (non-autodiff) device.
pub fn predict<M: Classifier>(
    model: &M,
    batcher: &Batcher,
    items: &[Encoded],
    batch_size: usize,
    device: &Device,
) -> Result<Vec<usize>> {
    let lengths: Vec<usize> = items.iter().map(|e| e.tokens.len()).collect();
    let mut out = vec![0usize; items.len()];
    for idx in eval_order(&lengths, batch_size) {
        let batch_items: Vec<&Encoded> = idx.iter().map(|&i| &items[i]).collect();
        let batch = batcher.batch(&batch_items, device);
        let predicted: Vec<i64> = model
            .logits(&batch)
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .map_err(|e| anyhow!("cannot read predictions: {e:?}"))?;
        for (slot, p) in idx.iter().zip(predicted) {
            out[*slot] = p as usize;
        }
    }
    Ok(out)
}

/// The softmax of one row of logits (shifted by its maximum, so large logits do not overflow).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

/// Share of items whose prediction equals their label.
pub fn accuracy(items: &[Encoded], predicted: &[usize]) -> f64 {
    if items.is_empty() {
        return 0.0;
    }
    let correct = items
        .iter()
        .zip(predicted)
        .filter(|(e, p)| e.label == **p)
        .count();
    correct as f64 / items.len() as f64
}
