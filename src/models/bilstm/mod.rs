//! The student: embeddings → one bidirectional LSTM layer → a head (Tang et al. 2019,
//! "Distilling Task-Specific Knowledge from BERT into Simple Neural Networks").
//!
//! burn's own `BiLstm` has no length mask (with right padding its reverse direction starts on
//! padding and its forward final state ends on it), so the recurrence is written here with one:
//! on a padded step the state is carried unchanged. The forward direction's final state is
//! therefore the state at each row's last token, and the reverse direction starts, at zero, on
//! each row's last token — what PyTorch's packed sequences give. The input projection of all
//! time steps is one matrix product; each step adds one `[batch, H] × [H, 4H]` product.

mod recurrence;
#[cfg(test)]
mod tests;

pub use recurrence::{bilstm, bilstm_composed, LstmDirection};

use crate::models::ops::{dropout, linear};
use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor};
use rayon::prelude::*;

/// Inference on the CPU backend gives each thread at least this many rows of a batch.
const MIN_ROWS_PER_THREAD: usize = 16;

/// Embedding → BiLSTM → head.
#[derive(Module, Debug)]
pub struct BiLstmClassifier {
    pub embedding: Embedding,
    pub forward_lstm: LstmDirection,
    pub backward_lstm: LstmDirection,
    pub dropout: Dropout,
    /// The `tang` head's ReLU layer (absent for `seed`).
    pub fc: Option<Linear>,
    /// To logits: from `fc` (`tang`) or from each step's `[fwd; bwd]` state (`seed`).
    pub out: Linear,
    /// `seed` head: per-step logits, then the maximum over time.
    pub max_over_time: bool,
    /// `mean` input: the mean token embedding as a sequence of length 1.
    pub mean_input: bool,
}

/// How the BiLSTM's states become logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BiLstmHead {
    /// Tang et al. 2019: final forward and backward states → ReLU FC → logits.
    Tang,
    /// A per-step FC to logits, then the maximum over time (the reference project's student).
    MaxOverTime,
}

/// What the BiLSTM reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BiLstmInput {
    /// One step per token.
    Sequence,
    /// The mean of the token embeddings, as a sequence of length 1.
    Mean,
}

/// The student's sizes and shape.
#[derive(Config, Debug)]
pub struct BiLstmConfig {
    pub vocab_size: usize,
    pub classes: usize,
    pub embedding_dim: usize,
    /// Hidden size of each direction.
    pub hidden: usize,
    pub head: BiLstmHead,
    /// Width of the `Tang` head's ReLU layer.
    pub fc_hidden: usize,
    pub input: BiLstmInput,
    #[config(default = 0.1)]
    pub dropout: f64,
}

impl BiLstmConfig {
    /// A new student with PyTorch's initializations, drawn from `device`'s seed.
    pub fn init(&self, device: &Device) -> BiLstmClassifier {
        let h = self.hidden;
        let (fc, out) = match self.head {
            BiLstmHead::Tang => (
                Some(LinearConfig::new(2 * h, self.fc_hidden).init(device)),
                LinearConfig::new(self.fc_hidden, self.classes).init(device),
            ),
            BiLstmHead::MaxOverTime => (None, LinearConfig::new(2 * h, self.classes).init(device)),
        };
        BiLstmClassifier {
            embedding: EmbeddingConfig::new(self.vocab_size, self.embedding_dim).init(device),
            forward_lstm: LstmDirection::new(self.embedding_dim, h, device),
            backward_lstm: LstmDirection::new(self.embedding_dim, h, device),
            dropout: DropoutConfig::new(self.dropout).init(),
            fc,
            out,
            max_over_time: self.head == BiLstmHead::MaxOverTime,
            mean_input: self.input == BiLstmInput::Mean,
        }
    }
}

impl BiLstmClassifier {
    /// Start from the embedding matrix `[vocab, dim]`; `freeze` keeps it fixed in training.
    pub fn with_embeddings(mut self, matrix: Tensor<2>, freeze: bool) -> Self {
        self.embedding.weight = Param::from_tensor(matrix);
        if freeze {
            self.embedding = self.embedding.freeze();
        }
        self
    }

    /// The embedded tokens (after dropout) and their mask: one step of the mean embedding with
    /// `mean` input.
    fn inputs(&self, tokens: Tensor<2, Int>, mask: Tensor<2>) -> (Tensor<3>, Tensor<2>) {
        let emb = dropout(&self.dropout, self.embedding.forward(tokens));
        if self.mean_input {
            // Mean over the real tokens, fed as one step.
            let [b, t] = mask.dims();
            let device = mask.device();
            let m = mask.reshape([b, t, 1]);
            let sum = (emb * m.clone()).sum_dim(1);
            let count = m.sum_dim(1).clamp_min(1.0);
            (sum / count, Tensor::ones([b, 1], &device))
        } else {
            (emb, mask)
        }
    }

    /// Logits `[batch, classes]` of `tokens` `[batch, time]` with `mask` `[batch, time]`.
    ///
    /// Inference on the CPU backend runs parts of the batch on parallel threads (rayon's pool,
    /// which `runtime.threads` sizes): flex runs an elementwise operation on one thread, and the
    /// recurrence is mostly small elementwise operations, so one batch alone keeps one core
    /// busy. (Training gained nothing from parts: its backward pass stays on one thread, and its
    /// forward pass's recording contends.)
    pub fn forward(&self, tokens: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<2> {
        let device = tokens.device();
        let [b, _] = tokens.dims();
        let parts = if !device.is_autodiff() && device == Device::flex() {
            rayon::current_num_threads().min(b / MIN_ROWS_PER_THREAD)
        } else {
            1
        };
        self.forward_in_parts(tokens, mask, parts)
    }

    /// [`Self::forward`] over `parts` parts of the batch's rows, in parallel.
    fn forward_in_parts(&self, tokens: Tensor<2, Int>, mask: Tensor<2>, parts: usize) -> Tensor<2> {
        let [b, _] = tokens.dims();
        let parts = parts.clamp(1, b.max(1));
        if parts == 1 {
            return self.forward_one(tokens, mask);
        }
        let logits: Vec<Tensor<2>> = (0..parts)
            .into_par_iter()
            .map(|p| {
                let rows = p * b / parts..(p + 1) * b / parts;
                self.forward_one(
                    tokens.clone().slice([rows.clone()]),
                    mask.clone().slice([rows]),
                )
            })
            .collect();
        Tensor::cat(logits, 0)
    }

    fn forward_one(&self, tokens: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<2> {
        let (emb, mask) = self.inputs(tokens, mask);
        let (last, seq) = bilstm(
            &self.forward_lstm,
            &self.backward_lstm,
            emb,
            mask.clone(),
            self.max_over_time,
        );
        self.head(last, seq, mask)
    }

    /// Logits from the final states `[batch, 2H]` (`tang`) or every step's `[batch, time, 2H]`
    /// (`seed`).
    fn head(&self, last: Tensor<2>, seq: Option<Tensor<3>>, mask: Tensor<2>) -> Tensor<2> {
        match seq {
            Some(seq) if self.max_over_time => {
                let [b, t] = mask.dims();
                let per_step = linear(&self.out, dropout(&self.dropout, seq));
                // Padding steps get a large negative logit so the maximum ignores them.
                let pad = mask
                    .neg()
                    .add_scalar(1.0)
                    .mul_scalar(-1e9)
                    .reshape([b, t, 1]);
                let [_, _, k] = per_step.dims();
                (per_step + pad).max_dim(1).reshape([b, k])
            }
            _ => {
                let fc = self.fc.as_ref().expect("tang head has an fc layer");
                self.out
                    .forward(dropout(&self.dropout, relu(fc.forward(last))))
            }
        }
    }

    /// [`Self::forward`] with each direction run alone by the reference recurrence.
    #[cfg(test)]
    pub fn forward_reference(&self, tokens: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<2> {
        let (emb, mask) = self.inputs(tokens, mask);
        let (seq_f, h_f) = self
            .forward_lstm
            .forward_reference(emb.clone(), mask.clone(), false);
        let (seq_b, h_b) = self
            .backward_lstm
            .forward_reference(emb, mask.clone(), true);
        let seq = self
            .max_over_time
            .then(|| Tensor::cat(vec![seq_f, seq_b], 2));
        self.head(Tensor::cat(vec![h_f, h_b], 1), seq, mask)
    }
}
