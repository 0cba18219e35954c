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
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::{Device, Int, Tensor};
use rayon::prelude::*;

use super::lstm_op;

/// Inference on the CPU backend gives each thread at least this many rows of a batch.
const MIN_ROWS_PER_THREAD: usize = 16;

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

    /// The straightforward recurrence of one direction, the reference the fused [`bilstm`] is
    /// tested against: over `x` `[batch, time, d_input]` with `mask` `[batch, time]` (1 on
    /// tokens, 0 on padding), every step's hidden state `[batch, time, H]` and the final one
    /// `[batch, H]`.
    #[cfg(test)]
    pub fn forward_reference(
        &self,
        x: Tensor<3>,
        mask: Tensor<2>,
        reverse: bool,
    ) -> (Tensor<3>, Tensor<2>) {
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
            let cand = burn::tensor::activation::tanh(g.slice([0..b, 2 * h_dim..3 * h_dim]));
            let c_new = f * c.clone() + i * cand;
            let h_new = o * burn::tensor::activation::tanh(c_new.clone());
            let m = mask.clone().slice([0..b, s..s + 1]);
            c = c.clone() + (c_new - c) * m.clone();
            h = h.clone() + (h_new - h) * m;
            outputs[s] = Some(h.clone());
        }
        let outputs: Vec<Tensor<2>> = outputs.into_iter().flatten().collect();
        (Tensor::stack(outputs, 1), h)
    }
}

/// Both directions of the LSTM layer over `x` `[batch, time, d_input]` with `mask`
/// `[batch, time]` (1 on tokens, 0 on padding), as one recurrence: the final states
/// `[batch, 2H]` (`[forward; backward]`) and, with `keep_steps`, every step's states
/// `[batch, time, 2H]` (the backward direction's at the position it read).
///
/// What it computes is [`LstmDirection::forward_reference`] run in each direction; how differs,
/// to spend fewer and cheaper tensor operations per time step:
/// - the directions' weights are stacked (at each call: the stored parameters stay as they are),
///   gate-major, so one batched `[batch, H] × [H, H]` product per gate and direction and one
///   elementwise chain serve both directions, on contiguous blocks; the input projection of all
///   steps, gates and directions is one product, time-major, with the backward direction's
///   inputs reversed in time, so step `s` reads one contiguous block;
/// - one sigmoid covers all four gates: the cell candidate's columns are doubled (an exact
///   scaling) and `tanh(g) = 2σ(2g) − 1`; the cell state is carried doubled (`c2 = 2c`, again
///   exact) so that `tanh(c) = 2σ(c2) − 1`. glibc's `tanhf` costs several `expf`s, and flex runs
///   both element by element;
/// - a padded position keeps the state (`mask_where`), and steps where no row of either
///   direction is padding skip the mask altogether.
pub fn bilstm(
    fwd: &LstmDirection,
    bwd: &LstmDirection,
    x: Tensor<3>,
    mask: Tensor<2>,
    keep_steps: bool,
) -> (Tensor<2>, Option<Tensor<3>>) {
    let [_, t, _] = x.dims();
    if t > 0 && on_flex(&x.device()) {
        return bilstm_flex(fwd, bwd, x, mask, keep_steps);
    }
    bilstm_composed(fwd, bwd, x, mask, keep_steps)
}

/// Whether `device` is the CPU backend (burn flex), with or without autodiff.
fn on_flex(device: &Device) -> bool {
    device.clone().inner() == Device::flex()
}

/// [`bilstm`] composed from tensor operations: what every backend but flex runs.
pub fn bilstm_composed(
    fwd: &LstmDirection,
    bwd: &LstmDirection,
    x: Tensor<3>,
    mask: Tensor<2>,
    keep_steps: bool,
) -> (Tensor<2>, Option<Tensor<3>>) {
    let w = Stacked::new(fwd, bwd, &x.device());
    recurrence(&w, x, mask, keep_steps)
}

/// [`bilstm`] on the CPU backend: the recurrence is one operation with a handwritten backward
/// pass ([`lstm_op::lstm_recurrence`]). In training the input projection of every position and
/// both directions is one product before it (an ordinary tensor operation, as is everything after
/// the recurrence); in inference the operation projects each step itself
/// ([`lstm_op::lstm_projected`]).
fn bilstm_flex(
    fwd: &LstmDirection,
    bwd: &LstmDirection,
    x: Tensor<3>,
    mask: Tensor<2>,
    keep_steps: bool,
) -> (Tensor<2>, Option<Tensor<3>>) {
    let [b, t, _] = x.dims();
    let h_dim = fwd.d_hidden;
    let device = x.device();
    // The parameters in the order the reference reads them (see `Stacked::new`).
    let read = |d: &LstmDirection| {
        let w_ih = d.input.weight.val();
        let bias = d.input.bias.as_ref().map(|p| p.val());
        let bias = bias.unwrap_or_else(|| Tensor::zeros([4 * h_dim], &device));
        (w_ih, bias, d.hidden.weight.val())
    };
    let (w_ih_f, b_ih_f, w_hh_f) = read(fwd);
    let (w_ih_b, b_ih_b, w_hh_b) = read(bwd);
    // [in, 8H], [8H] and [2, H, 4H].
    let w_ih = Tensor::cat(vec![w_ih_f, w_ih_b], 1);
    let b_ih = Tensor::cat(vec![b_ih_f, b_ih_b], 0);
    let w_hh = Tensor::stack::<3>(vec![w_hh_f, w_hh_b], 0);
    // One step has no recurrent term: the recurrent weights get no gradient (as when composed).
    let w_hh = if t == 1 { w_hh.detach() } else { w_hh };
    let valid: Vec<bool> = mask
        .to_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("mask values")
        .into_iter()
        .map(|v| v > 0.5)
        .collect();
    // [b, t, 2H], or [b, 1, 2H]: the final states (inference without keep_steps).
    let states = lstm_op::lstm_projected(x, w_ih, b_ih, w_hh, valid, keep_steps);
    let [_, steps, _] = states.dims();
    if steps == 1 {
        return (
            states.clone().reshape([b, 2 * h_dim]),
            keep_steps.then_some(states),
        );
    }
    // The forward direction ends at position t − 1, the backward one at position 0.
    let last = Tensor::cat(
        vec![
            states
                .clone()
                .slice([0..b, t - 1..t, 0..h_dim])
                .reshape([b, h_dim]),
            states
                .clone()
                .slice([0..b, 0..1, h_dim..2 * h_dim])
                .reshape([b, h_dim]),
        ],
        1,
    );
    (last, keep_steps.then_some(states))
}

/// Both directions' weights, gate-major and stacked, the cell candidate's doubled.
struct Stacked {
    /// `[1, 4 gates, 2 directions, in, H]`.
    w_ih: Tensor<5>,
    /// `[1, 4, 2, 1, H]`.
    b_ih: Tensor<5>,
    /// `[4, 2, H, H]`.
    w_hh: Tensor<4>,
    h_dim: usize,
}

impl Stacked {
    fn new(fwd: &LstmDirection, bwd: &LstmDirection, device: &Device) -> Self {
        let h_dim = fwd.d_hidden;
        let scale = Tensor::<1>::from_floats([1.0, 1.0, 2.0, 1.0], device);
        let gate_major = |w: Tensor<2>| {
            let [d_in, _] = w.dims();
            w.reshape([d_in, 4, h_dim]).swap_dims(0, 1)
        };
        let bias = |l: &Linear| {
            l.bias
                .as_ref()
                .map(|p| p.val())
                .unwrap_or_else(|| Tensor::zeros([4 * h_dim], device))
                .reshape([4, h_dim])
        };
        // Read in the order the per-direction recurrence reads them (input weight, its bias,
        // hidden weight; forward direction first): burn initializes a new parameter lazily, from
        // the device's random state, when it is first read, so this order decides a new model's
        // initial weights.
        let read =
            |d: &LstmDirection| (d.input.weight.val(), bias(&d.input), d.hidden.weight.val());
        let (w_ih_f, b_ih_f, w_hh_f) = read(fwd);
        let (w_ih_b, b_ih_b, w_hh_b) = read(bwd);
        let stack = |f: Tensor<2>, b: Tensor<2>| -> Tensor<4> {
            Tensor::stack::<4>(vec![gate_major(f), gate_major(b)], 1)
                * scale.clone().reshape([4, 1, 1, 1])
        };
        let w_ih = stack(w_ih_f, w_ih_b).unsqueeze::<5>();
        let w_hh = stack(w_hh_f, w_hh_b);
        let b_ih = Tensor::<2>::stack::<3>(vec![b_ih_f, b_ih_b], 1).reshape([1, 4, 2, 1, h_dim])
            * scale.reshape([1, 4, 1, 1, 1]);
        Self {
            w_ih,
            b_ih,
            w_hh,
            h_dim,
        }
    }
}

/// [`bilstm`] with its weights stacked.
fn recurrence(
    w: &Stacked,
    x: Tensor<3>,
    mask: Tensor<2>,
    keep_steps: bool,
) -> (Tensor<2>, Option<Tensor<3>>) {
    let [b, t, _] = x.dims();
    let h_dim = w.h_dim;
    let device = x.device();
    let w_hh = w.w_hh.clone();

    // Time-major inputs, the backward direction's reversed: [t, 2, b, in] → gates
    // [t, 4, 2, b, H], so that each step and gate is one contiguous block.
    let x_tm = x.swap_dims(0, 1);
    let xs = Tensor::stack::<4>(vec![x_tm.clone(), x_tm.flip([0])], 1);
    let gates_x = xs.unsqueeze_dim::<5>(1).matmul(w.w_ih.clone()) + w.b_ih.clone();

    // Which steps have padding in either direction, and where.
    let valid: Vec<f32> = mask
        .to_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("mask values");
    let full = |s: usize| (0..b).all(|r| valid[r * t + s] > 0.5);
    let needs_mask: Vec<bool> = (0..t).map(|s| !(full(s) && full(t - 1 - s))).collect();
    let pads = needs_mask.iter().any(|&m| m).then(|| {
        let pad = mask.lower_elem(0.5).swap_dims(0, 1);
        Tensor::stack::<3>(vec![pad.clone(), pad.flip([0])], 1).reshape([t, 2, b, 1])
    });

    let mut h: Option<Tensor<3>> = None;
    let mut c2: Option<Tensor<3>> = None;
    let mut steps = Vec::with_capacity(if keep_steps { t } else { 0 });
    // The steps' blocks are sliced from chunks of about √t steps: the gradient of a slice is a
    // zero tensor of its source's size, so t slices of the whole would cost t² blocks in the
    // backward pass.
    let chunk = (t as f64).sqrt().ceil() as usize;
    let mut current: Option<(usize, Tensor<5>)> = None;
    for (s, &masked) in needs_mask.iter().enumerate() {
        if s % chunk == 0 {
            let end = (s + chunk).min(t);
            current = Some((s, gates_x.clone().slice(s..end)));
        }
        let (start, block) = current.as_ref().expect("a chunk");
        let gx = block
            .clone()
            .slice(s - start..s - start + 1)
            .reshape([4, 2, b, h_dim]);
        // The state starts at zero: the first step has no recurrent term.
        let g = match &h {
            Some(h) => h.clone().unsqueeze::<4>().matmul(w_hh.clone()) + gx,
            None => gx,
        };
        let act = sigmoid(g);
        let gate = |k: usize| act.clone().slice(k..k + 1).reshape([2, b, h_dim]);
        let (i, f, o) = (gate(0), gate(1), gate(3));
        // 2 tanh(g) = 4σ(2g) − 2.
        let cand2 = gate(2).mul_scalar(4.0).sub_scalar(2.0);
        let c2_new = match &c2 {
            Some(c2) => f * c2.clone() + i * cand2,
            None => i * cand2,
        };
        // tanh(c) = 2σ(2c) − 1.
        let h_new = o * sigmoid(c2_new.clone()).mul_scalar(2.0).sub_scalar(1.0);
        let (c2_next, h_next) = match (&pads, masked) {
            (Some(pads), true) => {
                let pad = pads
                    .clone()
                    .slice(s..s + 1)
                    .reshape([2, b, 1])
                    .expand([2, b, h_dim]);
                let zero = || Tensor::<3>::zeros([2, b, h_dim], &device);
                (
                    c2_new.mask_where(pad.clone(), c2.clone().unwrap_or_else(zero)),
                    h_new.mask_where(pad, h.clone().unwrap_or_else(zero)),
                )
            }
            _ => (c2_new, h_new),
        };
        if keep_steps {
            steps.push(h_next.clone());
        }
        c2 = Some(c2_next);
        h = Some(h_next);
    }
    let h = h.unwrap_or_else(|| Tensor::zeros([2, b, h_dim], &device));
    let last = h.swap_dims(0, 1).reshape([b, 2 * h_dim]);
    let seq = keep_steps.then(|| {
        let all = Tensor::stack::<4>(steps, 0); // [t, 2, b, H]
        let f = all.clone().slice([0..t, 0..1]).reshape([t, b, h_dim]);
        let r = all.slice([0..t, 1..2]).reshape([t, b, h_dim]).flip([0]);
        Tensor::cat(vec![f, r], 2).swap_dims(0, 1)
    });
    (last, seq)
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

    /// The embedded tokens (after dropout) and their mask: one step of the mean embedding with
    /// `mean` input.
    fn inputs(&self, tokens: Tensor<2, Int>, mask: Tensor<2>) -> (Tensor<3>, Tensor<2>) {
        let emb = self.dropout.forward(self.embedding.forward(tokens));
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
                let per_step = self.out.forward(self.dropout.forward(seq));
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
                    .forward(self.dropout.forward(relu(fc.forward(last))))
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

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap()
    }

    fn assert_close(what: &str, a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (k, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "{what}[{k}]: fused {x} vs reference {y}"
            );
        }
    }

    /// Every parameter's gradient of `sum(logits * weights)`, by name.
    fn gradients(
        model: &BiLstmClassifier,
        logits: Tensor<2>,
        weights: Tensor<2>,
    ) -> Vec<(&'static str, Vec<f32>)> {
        let grads = (logits * weights).sum().backward();
        let flat = |t: Option<Tensor<2>>| values(t.expect("a gradient"));
        let bias = |l: &Linear| {
            let g = l
                .bias
                .as_ref()
                .unwrap()
                .val()
                .grad(&grads)
                .expect("a gradient");
            g.into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap()
        };
        let mut out = vec![
            ("embedding", flat(model.embedding.weight.val().grad(&grads))),
            (
                "forward.input",
                flat(model.forward_lstm.input.weight.val().grad(&grads)),
            ),
            ("forward.input.bias", bias(&model.forward_lstm.input)),
            (
                "forward.hidden",
                flat(model.forward_lstm.hidden.weight.val().grad(&grads)),
            ),
            (
                "backward.input",
                flat(model.backward_lstm.input.weight.val().grad(&grads)),
            ),
            ("backward.input.bias", bias(&model.backward_lstm.input)),
            (
                "backward.hidden",
                flat(model.backward_lstm.hidden.weight.val().grad(&grads)),
            ),
            ("out", flat(model.out.weight.val().grad(&grads))),
        ];
        if let Some(fc) = &model.fc {
            out.push(("fc", flat(fc.weight.val().grad(&grads))));
        }
        out
    }

    #[test]
    fn fused_bilstm_equals_the_reference_recurrence() {
        // Both heads: logits and the gradients of every parameter, with padding at every step
        // (lengths 6, 4, 1, 6), at the ends only (6, 5: the middle steps skip the mask) and none.
        // Seven steps make chunks of 3, 3 and 1.
        for lengths in [[6usize, 4, 1, 6], [6, 5, 6, 5], [6; 4], [7, 2, 7, 3]] {
            fused_equals_reference(lengths);
        }
    }

    #[test]
    fn fused_bilstm_equals_the_reference_at_the_default_recipes_sizes() {
        // recipes/tnews.toml: embeddings 128, hidden 128 per direction, fc 200, batch 64, up to
        // 48 steps; rows of every length from 1 to 48.
        let lengths: Vec<usize> = (0..64).map(|r| 1 + (r * 37) % 48).collect();
        let sizes = Sizes {
            vocab: 300,
            embedding: 128,
            hidden: 128,
            fc: 200,
        };
        fused_equals_reference_with(&lengths, sizes, 1e-5);
    }

    struct Sizes {
        vocab: usize,
        embedding: usize,
        hidden: usize,
        fc: usize,
    }

    fn fused_equals_reference(lengths: [usize; 4]) {
        let sizes = Sizes {
            vocab: 20,
            embedding: 8,
            hidden: 5,
            fc: 7,
        };
        fused_equals_reference_with(&lengths, sizes, 1e-5);
    }

    fn fused_equals_reference_with(lengths: &[usize], sizes: Sizes, tol: f32) {
        let (b, t, classes) = (lengths.len(), *lengths.iter().max().unwrap(), 3);
        let mut tokens = vec![0i64; b * t];
        let mut mask = vec![0f32; b * t];
        for (r, &len) in lengths.iter().enumerate() {
            for c in 0..len {
                tokens[r * t + c] = 1 + ((r * 7 + c * 3) % (sizes.vocab - 1)) as i64;
                mask[r * t + c] = 1.0;
            }
        }
        for head in [BiLstmHead::Tang, BiLstmHead::MaxOverTime] {
            let d = Device::flex().autodiff();
            d.seed(5);
            let config = BiLstmConfig::new(
                sizes.vocab,
                classes,
                sizes.embedding,
                sizes.hidden,
                head,
                sizes.fc,
                BiLstmInput::Sequence,
            );
            let model = config.with_dropout(0.0).init(&d);
            let tok = || Tensor::<2, Int>::from_data(TensorData::new(tokens.clone(), [b, t]), &d);
            let m = || Tensor::<2>::from_data(TensorData::new(mask.clone(), [b, t]), &d);
            let weights = Tensor::<2>::from_data(
                TensorData::new(
                    (0..b * classes)
                        .map(|k| 0.3 + 0.1 * (k % 13) as f32)
                        .collect(),
                    [b, classes],
                ),
                &d,
            );
            let what = |x: &str| format!("{head:?} {}×{t} {x}", b);

            let fused = model.forward(tok(), m());
            let reference = model.forward_reference(tok(), m());
            assert_close(
                &what("logits"),
                &values(fused.clone()),
                &values(reference.clone()),
                tol,
            );
            let g_fused = gradients(&model, fused, weights.clone());
            let g_ref = gradients(&model, reference, weights);
            assert_eq!(g_fused.len(), g_ref.len());
            for ((name, a), (_, b)) in g_fused.iter().zip(&g_ref) {
                assert!(a.iter().any(|v| *v != 0.0), "{}: no gradient", what(name));
                assert_close(&what(&format!("{name} gradient")), a, b, tol);
            }

            // Inference (no autodiff, parts of the batch on threads) computes the same.
            let inner = d.clone().inner();
            let valid = model.valid();
            let tok_i =
                Tensor::<2, Int>::from_data(TensorData::new(tokens.clone(), [b, t]), &inner);
            let m_i = Tensor::<2>::from_data(TensorData::new(mask.clone(), [b, t]), &inner);
            assert_close(
                &what("inference logits"),
                &values(valid.forward(tok_i.clone(), m_i.clone())),
                &values(valid.forward_reference(tok_i, m_i)),
                tol,
            );
        }
    }

    /// The CPU operation ([`lstm_op`], with its handwritten backward pass) against the
    /// composition of tensor operations other backends run, on flex with autodiff: the final
    /// states, every step's states, and the gradients of the input and of every LSTM parameter,
    /// over rows of ragged lengths (one row all padding, one padded in the middle).
    #[test]
    fn the_cpu_recurrence_op_equals_the_composed_recurrence() {
        let (d_in, h) = (6, 5);
        let lengths = [7usize, 3, 0, 7, 1, 5];
        let (b, t) = (lengths.len(), 7);
        let mut mask = vec![0f32; b * t];
        for (r, &len) in lengths.iter().enumerate() {
            for c in 0..len {
                mask[r * t + c] = 1.0;
            }
        }
        // Row 5: a hole at position 2 (a mask the padding of a batch never makes; the
        // recurrence keeps the state there all the same).
        mask[5 * t + 2] = 0.0;
        let d = Device::flex().autodiff();
        d.seed(3);
        let fwd = LstmDirection::new(d_in, h, &d);
        let bwd = LstmDirection::new(d_in, h, &d);
        let x_values: Vec<f32> = (0..b * t * d_in)
            .map(|k| ((k * 7919) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let weights = |n: usize, k: usize| -> Vec<f32> {
            (0..n).map(|i| 0.2 + 0.1 * ((i * k) % 11) as f32).collect()
        };
        let run = |op: bool| {
            let x = Tensor::<3>::from_data(TensorData::new(x_values.clone(), [b, t, d_in]), &d)
                .require_grad();
            let m = Tensor::<2>::from_data(TensorData::new(mask.clone(), [b, t]), &d);
            let (last, seq) = if op {
                bilstm(&fwd, &bwd, x.clone(), m, true)
            } else {
                bilstm_composed(&fwd, &bwd, x.clone(), m, true)
            };
            let seq = seq.expect("steps");
            let w_last =
                Tensor::<2>::from_data(TensorData::new(weights(b * 2 * h, 3), [b, 2 * h]), &d);
            let w_seq = Tensor::<3>::from_data(
                TensorData::new(weights(b * t * 2 * h, 7), [b, t, 2 * h]),
                &d,
            );
            let loss = (last.clone() * w_last).sum() + (seq.clone() * w_seq).sum();
            let grads = loss.backward();
            let flat = |t: Tensor<2>| values(t);
            let mut out = vec![
                ("last", values(last)),
                ("steps", values(seq.reshape([b * t, 2 * h]))),
                (
                    "x gradient",
                    flat(x.grad(&grads).expect("x gradient").reshape([b * t, d_in])),
                ),
            ];
            for (name, dir) in [("forward", &fwd), ("backward", &bwd)] {
                let g = |p: Tensor<2>| flat(p.grad(&grads).expect("a gradient"));
                out.push((name, g(dir.input.weight.val())));
                out.push((name, g(dir.hidden.weight.val())));
                let bias = dir.input.bias.as_ref().unwrap().val();
                out.push((
                    name,
                    flat(bias.grad(&grads).expect("a gradient").unsqueeze()),
                ));
            }
            out
        };
        let (op, composed) = (run(true), run(false));
        for ((name, a), (_, b)) in op.iter().zip(&composed) {
            assert!(a.iter().any(|v| *v != 0.0), "{name}: all zero");
            assert_close(name, a, b, 1e-5);
        }
        // The all-padding row's final states are zero on both paths.
        assert!(op[0].1[2 * 2 * h..3 * 2 * h].iter().all(|v| *v == 0.0));

        // Inference (no autodiff: the operation projects each step itself).
        let (fwd, bwd) = (fwd.valid(), bwd.valid());
        let inner = d.clone().inner();
        let x = Tensor::<3>::from_data(TensorData::new(x_values.clone(), [b, t, d_in]), &inner);
        let m = Tensor::<2>::from_data(TensorData::new(mask.clone(), [b, t]), &inner);
        let (last, seq) = bilstm(&fwd, &bwd, x.clone(), m.clone(), true);
        let (last_c, seq_c) = bilstm_composed(&fwd, &bwd, x.clone(), m.clone(), true);
        assert_close(
            "inference last",
            &values(last),
            &values(last_c.clone()),
            1e-5,
        );
        let flat = |s: Option<Tensor<3>>| values(s.expect("steps").reshape([b * t, 2 * h]));
        assert_close("inference steps", &flat(seq), &flat(seq_c), 1e-5);
        // Without the steps, the operation keeps only the final states.
        let (last, seq) = bilstm(&fwd, &bwd, x, m, false);
        assert!(seq.is_none());
        assert_close(
            "inference final states only",
            &values(last),
            &values(last_c),
            1e-5,
        );
    }

    #[test]
    fn a_new_model_starts_from_the_weights_the_reference_gives_it() {
        // burn draws a parameter's initial value when it is first read; the fused recurrence
        // reads them in the reference's order, so a seeded new model trains from the same
        // weights (and the same dropout masks) as before.
        let logits = |reference: bool| {
            let d = Device::flex().autodiff();
            d.seed(21);
            let model =
                BiLstmConfig::new(20, 3, 8, 5, BiLstmHead::Tang, 7, BiLstmInput::Sequence).init(&d);
            let tok = Tensor::<2, Int>::from_data(
                TensorData::new((0..24).map(|k| (k % 19) as i64).collect(), [4, 6]),
                &d,
            );
            let mask = Tensor::<2>::ones([4, 6], &d);
            let out = if reference {
                model.forward_reference(tok, mask)
            } else {
                model.forward(tok, mask)
            };
            values(out)
        };
        // The random state is one for the process, and other tests draw from it in parallel:
        // a few tries, of which one must match (a wrong order never does).
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5);
        let tries: Vec<(Vec<f32>, Vec<f32>)> =
            (0..5).map(|_| (logits(false), logits(true))).collect();
        assert!(
            tries.iter().any(|(f, r)| close(f, r)),
            "fused vs reference first logits: {tries:?}"
        );
    }

    #[test]
    fn parts_of_a_batch_compute_what_the_whole_does() {
        let d = Device::flex();
        for head in [BiLstmHead::Tang, BiLstmHead::MaxOverTime] {
            d.seed(9);
            let model = BiLstmConfig::new(20, 3, 6, 5, head, 7, BiLstmInput::Sequence).init(&d);
            let (b, t) = (7, 5);
            let tokens: Vec<i64> = (0..b * t).map(|k| (k * 7 % 19) as i64).collect();
            // Row r has 1 + r % t tokens.
            let mask: Vec<f32> = (0..b * t)
                .map(|k| if k % t <= (k / t) % t { 1.0 } else { 0.0 })
                .collect();
            let tok = Tensor::<2, Int>::from_data(TensorData::new(tokens, [b, t]), &d);
            let mask = Tensor::<2>::from_data(TensorData::new(mask, [b, t]), &d);
            let whole = values(model.forward_in_parts(tok.clone(), mask.clone(), 1));
            let parts = values(model.forward_in_parts(tok, mask, 3));
            assert_close(&format!("{head:?}"), &parts, &whole, 1e-6);
        }
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
