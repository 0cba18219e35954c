//! The BiLSTM layer's recurrence, both directions with a length mask: one operation with a
//! handwritten backward pass ([`lstm_op`]: a CPU operation on flex, two kernels on wgpu); the
//! same recurrence composed from tensor operations with the directions' weights stacked (what
//! wgpu ran before, about 23 kernel launches a time step); and the straightforward per-direction
//! recurrence both are tested against.

use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};

use crate::models::lstm_op;

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
    if t == 0 {
        return bilstm_composed(fwd, bwd, x, mask, keep_steps);
    }
    bilstm_op(fwd, bwd, x, mask, keep_steps)
}

/// [`bilstm`] composed from tensor operations: the reference the operation is tested against on
/// each backend (and what an empty sequence takes).
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

/// [`bilstm`] as one operation with a handwritten backward pass
/// ([`lstm_op::lstm_recurrence`]). In training the input projection of every position and both
/// directions is one product before it (an ordinary tensor operation, as is everything after the
/// recurrence); in inference the operation projects the inputs itself
/// ([`lstm_op::lstm_projected`]: flex step by step, wgpu as one product).
fn bilstm_op(
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
    // [b, t, 2H], or [b, 1, 2H]: the final states (inference without keep_steps).
    let states = lstm_op::lstm_projected(x, w_ih, b_ih, w_hh, mask, keep_steps);
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
