//! Models: the BERT teacher and the BiLSTM student, each a Config/Module pair.

pub mod bert;
pub mod bilstm;
pub mod hf;

use crate::data::{InputKind, TokenBatch};
use burn::module::Module;
use burn::tensor::Tensor;

pub use bert::{BertClassifier, BertConfig};
pub use bilstm::BiLstmClassifier;

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
