//! The student: embeddings → one bidirectional LSTM layer → a head (Tang et al. 2019,
//! "Distilling Task-Specific Knowledge from BERT into Simple Neural Networks").
//!
//! burn's own `BiLstm` has no length mask (with right padding its reverse direction starts on
//! padding and its forward final state ends on it), so the recurrence is written here with one:
//! on a padded step the state is carried unchanged. The forward direction's final state is
//! therefore the state at each row's last token, and the reverse direction starts, at zero, on
//! each row's last token — what PyTorch's packed sequences give. The input projection of all
//! time steps is one matrix product; each step adds one `[batch, H] × [H, 4H]` product.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig,
};
use burn::tensor::activation::{relu, sigmoid, tanh};
use burn::tensor::{Device, Int, Tensor};

/// One direction of an LSTM. Gates in PyTorch's order: input, forget, cell, output.
#[derive(Module, Debug)]
pub struct LstmDirection {
    /// x → 4H (PyTorch `weight_ih`, with the bias).
    pub input: Linear,
    /// h → 4H (PyTorch `weight_hh`).
    pub hidden: Linear,
    pub d_hidden: usize,
}

impl LstmDirection {
    pub fn new(d_input: usize, d_hidden: usize, device: &Device) -> Self {
        // PyTorch's LSTM initialization: U(-1/sqrt(H), 1/sqrt(H)) for every weight and bias.
        let k = 1.0 / (d_hidden as f64).sqrt();
        let init = Initializer::Uniform { min: -k, max: k };
        Self {
            input: LinearConfig::new(d_input, 4 * d_hidden)
                .with_initializer(init.clone())
                .init(device),
            hidden: LinearConfig::new(d_hidden, 4 * d_hidden)
                .with_bias(false)
                .with_initializer(init)
                .init(device),
            d_hidden,
        }
    }

    /// Run over `x` `[batch, time, d_input]` with `mask` `[batch, time]` (1 on tokens, 0 on
    /// padding). Returns every step's hidden state `[batch, time, H]` and the final one `[batch, H]`.
    pub fn forward(&self, x: Tensor<3>, mask: Tensor<2>, reverse: bool) -> (Tensor<3>, Tensor<2>) {
        let [b, t, _] = x.dims();
        let h_dim = self.d_hidden;
        let device = x.device();
        let gates_x = self.input.forward(x);
        let mut h = Tensor::<2>::zeros([b, h_dim], &device);
        let mut c = Tensor::<2>::zeros([b, h_dim], &device);
        let mut outputs: Vec<Option<Tensor<2>>> = vec![None; t];
        for step in 0..t {
            let s = if reverse { t - 1 - step } else { step };
            let g = gates_x
                .clone()
                .slice([0..b, s..s + 1, 0..4 * h_dim])
                .reshape([b, 4 * h_dim])
                + self.hidden.forward(h.clone());
            let act = sigmoid(g.clone());
            let i = act.clone().slice([0..b, 0..h_dim]);
            let f = act.clone().slice([0..b, h_dim..2 * h_dim]);
            let o = act.slice([0..b, 3 * h_dim..4 * h_dim]);
            let cand = tanh(g.slice([0..b, 2 * h_dim..3 * h_dim]));
            let c_new = f * c.clone() + i * cand;
            let h_new = o * tanh(c_new.clone());
            let m = mask.clone().slice([0..b, s..s + 1]);
            c = c.clone() + (c_new - c) * m.clone();
            h = h.clone() + (h_new - h) * m;
            outputs[s] = Some(h.clone());
        }
        let outputs: Vec<Tensor<2>> = outputs.into_iter().flatten().collect();
        (Tensor::stack(outputs, 1), h)
    }
}

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

    /// Logits `[batch, classes]` of `tokens` `[batch, time]` with `mask` `[batch, time]`.
    pub fn forward(&self, tokens: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<2> {
        let emb = self.dropout.forward(self.embedding.forward(tokens));
        let (emb, mask) = if self.mean_input {
            // Mean over the real tokens, fed as one step.
            let [b, t] = mask.dims();
            let device = mask.device();
            let m = mask.reshape([b, t, 1]);
            let sum = (emb * m.clone()).sum_dim(1);
            let count = m.sum_dim(1).clamp_min(1.0);
            (sum / count, Tensor::ones([b, 1], &device))
        } else {
            (emb, mask)
        };
        let (seq_f, h_f) = self.forward_lstm.forward(emb.clone(), mask.clone(), false);
        let (seq_b, h_b) = self.backward_lstm.forward(emb, mask.clone(), true);
        if self.max_over_time {
            let [b, t] = mask.dims();
            let seq = self.dropout.forward(Tensor::cat(vec![seq_f, seq_b], 2));
            let per_step = self.out.forward(seq);
            // Padding steps get a large negative logit so the maximum ignores them.
            let pad = mask
                .neg()
                .add_scalar(1.0)
                .mul_scalar(-1e9)
                .reshape([b, t, 1]);
            let [_, _, k] = per_step.dims();
            (per_step + pad).max_dim(1).reshape([b, k])
        } else {
            let feat = Tensor::cat(vec![h_f, h_b], 1);
            let fc = self.fc.as_ref().expect("tang head has an fc layer");
            self.out
                .forward(self.dropout.forward(relu(fc.forward(feat))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    fn logits_of(model: &BiLstmClassifier, tokens: Vec<i64>, mask: Vec<f32>, t: usize) -> Vec<f32> {
        let d = Device::flex();
        let tok = Tensor::<2, Int>::from_data(TensorData::new(tokens, [1, t]), &d);
        let m = Tensor::<2>::from_data(TensorData::new(mask, [1, t]), &d);
        model
            .forward(tok, m)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    }

    #[test]
    fn mean_input_reads_one_step_of_the_mean_embedding() {
        let d = Device::flex();
        let model = BiLstmConfig::new(10, 2, 4, 3, BiLstmHead::Tang, 8, BiLstmInput::Mean)
            .with_dropout(0.0)
            .init(&d);
        // The mean ignores padding and order.
        let a = logits_of(&model, vec![3, 7, 0], vec![1., 1., 0.], 3);
        let b = logits_of(&model, vec![7, 3], vec![1., 1.], 2);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn padding_does_not_change_the_output() {
        for head in [BiLstmHead::Tang, BiLstmHead::MaxOverTime] {
            let d = Device::flex();
            d.seed(11);
            let model = BiLstmConfig::new(20, 3, 6, 5, head, 32, BiLstmInput::Sequence)
                .with_dropout(0.0)
                .init(&d);
            let short = logits_of(&model, vec![3, 7, 9], vec![1.0; 3], 3);
            let padded = logits_of(
                &model,
                vec![3, 7, 9, 0, 0, 0],
                vec![1., 1., 1., 0., 0., 0.],
                6,
            );
            for (a, b) in short.iter().zip(&padded) {
                assert!((a - b).abs() < 1e-5, "{head:?}: {short:?} vs {padded:?}");
            }
            // Without the mask the padding would change the result.
            let unmasked = logits_of(&model, vec![3, 7, 9, 0, 0, 0], vec![1.0; 6], 6);
            assert!(
                short
                    .iter()
                    .zip(&unmasked)
                    .any(|(a, b)| (a - b).abs() > 1e-4),
                "{head:?}: {short:?} vs unmasked {unmasked:?}"
            );
        }
    }
}
