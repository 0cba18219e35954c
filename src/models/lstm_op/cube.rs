//! The BiLSTM recurrence on the cubecl backend (wgpu): one kernel launch for every time step of
//! both directions, forward and backward.
//!
//! Composed from tensor operations the recurrence launched about 23 kernels a time step in
//! inference and 57 in training (BENCHMARKS.md, "Kernel launches on wgpu"), each a round trip
//! through the driver. Here one workgroup (cube) carries one row of the batch in one direction
//! through every step: its units each own some of the H hidden units, the state `h` lives in
//! shared memory (every unit reads all of it for the recurrent product), and a step is the
//! `h · w_hh` product for the unit's four gates, the gates' activations and the cell update,
//! between two barriers. The backward pass is the same loop in reverse (backpropagation through
//! time), reading the gate activations and cell states the training forward pass kept, and
//! writes the gradient of the input projection `gates_x`; the recurrent weights' gradient is one
//! product over all steps afterwards, from the hidden states and that gradient.
//!
//! Layout as in [`super`]: `gates_x` `[b, t, 8H]` (forward direction's gates i, f, g, o, then the
//! backward direction's), `w_hh` `[2, H, 4H]`, the output `[b, t, 2H]` (each direction's state
//! after reading the position; a padded position keeps the state), `valid` `[b, t]` 1.0 on tokens.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Cube, TensorMetadata};
use burn::tensor::{Shape, Slice};
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeBackend;
use cubecl::prelude::*;

use super::{Dims, LstmBackend};
use crate::models::ops::cube::{empty, f32_contiguous};

/// Most units a workgroup gets (wgpu's default limit is 256 invocations).
const MAX_UNITS: usize = 256;

/// The logistic function.
#[cube]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + f32::exp(-x))
}

/// Every step of one direction for one row: cube `(row, direction)`, units striding over the H
/// hidden units. With `save`, the gate activations at each position (`acts`, laid out as
/// `gates_x`) and the cell state after it (`cs`, laid out as the output) are kept for the
/// backward pass; without `keep_steps` only the final states are written, to `out[row, 0, ·]`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn lstm_forward_kernel(
    gates_x: &[f32],
    w_hh: &[f32],
    valid: &[f32],
    out: &mut [f32],
    acts: &mut [f32],
    cs: &mut [f32],
    steps: u32,
    #[comptime] h: usize,
    #[comptime] save: bool,
    #[comptime] keep_steps: bool,
) {
    let row = CUBE_POS_X as usize;
    let dir = CUBE_POS_Y as usize;
    let t = steps as usize;
    let unit = UNIT_POS_X as usize;
    let units = CUBE_DIM_X as usize;
    let g4 = 4 * h;
    let mut state = Shared::<[f32]>::new_slice(h);
    let mut next = Shared::<[f32]>::new_slice(h);
    let mut cell = Shared::<[f32]>::new_slice(h);
    for j in range_stepped(unit, h, units) {
        state[j] = 0.0;
        cell[j] = 0.0;
    }
    sync_cube();
    for s in 0..t {
        let pos = if dir == 0 { s } else { t - 1 - s };
        let at = row * t + pos;
        let on = valid[at] > 0.5;
        if on {
            let base = at * 2 * g4 + dir * g4;
            for j in range_stepped(unit, h, units) {
                let mut gi = gates_x[base + j];
                let mut gf = gates_x[base + h + j];
                let mut gg = gates_x[base + 2 * h + j];
                let mut go = gates_x[base + 3 * h + j];
                for k in 0..h {
                    let hk = state[k];
                    let w = (dir * h + k) * g4 + j;
                    gi += hk * w_hh[w];
                    gf += hk * w_hh[w + h];
                    gg += hk * w_hh[w + 2 * h];
                    go += hk * w_hh[w + 3 * h];
                }
                let i = sigmoid(gi);
                let f = sigmoid(gf);
                let g = f32::tanh(gg);
                let o = sigmoid(go);
                let c = f * cell[j] + i * g;
                cell[j] = c;
                next[j] = o * f32::tanh(c);
                if comptime![save] {
                    acts[base + j] = i;
                    acts[base + h + j] = f;
                    acts[base + 2 * h + j] = g;
                    acts[base + 3 * h + j] = o;
                }
            }
        }
        // Every unit has read the whole state before any writes it.
        sync_cube();
        let o = at * 2 * h + dir * h;
        for j in range_stepped(unit, h, units) {
            if on {
                state[j] = next[j];
            }
            if comptime![save] {
                cs[o + j] = cell[j];
            }
            if comptime![keep_steps] {
                out[o + j] = state[j];
            }
        }
        sync_cube();
    }
    if comptime![!keep_steps] {
        for j in range_stepped(unit, h, units) {
            out[row * 2 * h + dir * h + j] = state[j];
        }
    }
}

/// Backpropagation through time for one row and direction: from the gradient of every step's
/// output `grad` `[b, t, 2H]` and what the training forward pass kept, the gradient of the input
/// projection `dgates` `[b, t, 8H]` (zero on padding).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn lstm_backward_kernel(
    acts: &[f32],
    cs: &[f32],
    w_hh: &[f32],
    valid: &[f32],
    grad: &[f32],
    dgates: &mut [f32],
    steps: u32,
    #[comptime] h: usize,
) {
    let row = CUBE_POS_X as usize;
    let dir = CUBE_POS_Y as usize;
    let t = steps as usize;
    let unit = UNIT_POS_X as usize;
    let units = CUBE_DIM_X as usize;
    let g4 = 4 * h;
    // The gradient reaching the state (from the later steps) and the cell, and this step's gates.
    let mut dh = Shared::<[f32]>::new_slice(h);
    let mut dc = Shared::<[f32]>::new_slice(h);
    let mut dg = Shared::<[f32]>::new_slice(4 * h);
    for j in range_stepped(unit, h, units) {
        dh[j] = 0.0;
        dc[j] = 0.0;
    }
    sync_cube();
    for back in 0..t {
        let s = t - 1 - back;
        let pos = if dir == 0 { s } else { t - 1 - s };
        let at = row * t + pos;
        let on = valid[at] > 0.5;
        let base = at * 2 * g4 + dir * g4;
        let o = at * 2 * h + dir * h;
        for j in range_stepped(unit, h, units) {
            let dh_j = dh[j] + grad[o + j];
            if on {
                let i = acts[base + j];
                let f = acts[base + h + j];
                let g = acts[base + 2 * h + j];
                let og = acts[base + 3 * h + j];
                let c = cs[o + j];
                let mut c_prev = 0.0;
                if s > 0 {
                    let prev = if dir == 0 { pos - 1 } else { pos + 1 };
                    c_prev = cs[(row * t + prev) * 2 * h + dir * h + j];
                }
                let tc = f32::tanh(c);
                let dct = dc[j] + dh_j * og * (1.0 - tc * tc);
                let di = dct * g * i * (1.0 - i);
                let df = dct * c_prev * f * (1.0 - f);
                let dgg = dct * i * (1.0 - g * g);
                let dgo = dh_j * tc * og * (1.0 - og);
                dg[j] = di;
                dg[h + j] = df;
                dg[2 * h + j] = dgg;
                dg[3 * h + j] = dgo;
                dgates[base + j] = di;
                dgates[base + h + j] = df;
                dgates[base + 2 * h + j] = dgg;
                dgates[base + 3 * h + j] = dgo;
                dc[j] = dct * f;
            } else {
                // A padded position's output is the carried state: its gradient joins the state's.
                dh[j] = dh_j;
                dgates[base + j] = 0.0;
                dgates[base + h + j] = 0.0;
                dgates[base + 2 * h + j] = 0.0;
                dgates[base + 3 * h + j] = 0.0;
            }
        }
        sync_cube();
        if on {
            // The previous state's gradient: dgates · w_hhᵀ.
            for k in range_stepped(unit, h, units) {
                let w = (dir * h + k) * g4;
                let mut acc = 0.0;
                for m in 0..g4 {
                    acc += dg[m] * w_hh[w + m];
                }
                dh[k] = acc;
            }
        }
        sync_cube();
    }
}

fn cube_for(b: usize, h: usize) -> (CubeCount, CubeDim) {
    (
        CubeCount::Static(b as u32, 2, 1),
        CubeDim::new_1d(h.clamp(1, MAX_UNITS) as u32),
    )
}

/// What the forward kernel returns: the states, and with `save` the activations and cells.
struct Forward {
    out: CubeTensor,
    saved: Option<(CubeTensor, CubeTensor)>,
}

fn forward(
    gates_x: CubeTensor,
    w_hh: CubeTensor,
    valid: CubeTensor,
    save: bool,
    keep_steps: bool,
) -> Forward {
    let mask_values = valid.meta.shape().num_elements();
    let Dims { b, t, h } = Dims::of(gates_x.meta.shape(), w_hh.meta.shape(), mask_values);
    let (gx, w) = (
        f32_contiguous(gates_x, "lstm"),
        f32_contiguous(w_hh, "lstm"),
    );
    let valid = f32_contiguous(valid, "lstm");
    let out = empty(&gx, [b, if keep_steps { t } else { 1 }, 2 * h]);
    // Without `save` the kernel writes neither; one element each stands in.
    let (acts, cs) = if save {
        (empty(&gx, [b, t, 8 * h]), empty(&gx, [b, t, 2 * h]))
    } else {
        (empty(&gx, [1, 1, 1]), empty(&gx, [1, 1, 1]))
    };
    if b > 0 && t > 0 {
        let (count, dim) = cube_for(b, h);
        lstm_forward_kernel::launch(
            &out.client,
            count,
            dim,
            gx.into_buffer_arg(),
            w.into_buffer_arg(),
            valid.into_buffer_arg(),
            out.clone().into_buffer_arg(),
            acts.clone().into_buffer_arg(),
            cs.clone().into_buffer_arg(),
            t as u32,
            h,
            save,
            keep_steps,
        );
    }
    Forward {
        out,
        saved: save.then_some((acts, cs)),
    }
}

/// The recurrence's training operations on the cubecl backend: the forward pass that keeps what
/// backpropagation reads, and backpropagation itself. Used by the autodiff implementation of
/// [`LstmBackend`] on [`Cube`].
#[backend_extension(Cube, Fusion)]
pub trait LstmTrainBackend: Backend {
    /// The states `[b, t, 2H]`, the gate activations `[b, t, 8H]` and the cell states
    /// `[b, t, 2H]`.
    #[fusion(meta = |g: &burn::backend::fusion::custom::TensorSpec, _w: &burn::backend::fusion::custom::TensorSpec, _v: &burn::backend::fusion::custom::TensorSpec| {
        let s = &g.shape;
        let states = Shape::from([s[0], s[1], s[2] / 4]);
        (
            burn::backend::fusion::custom::TensorSpec::new(states.clone(), g.dtype),
            burn::backend::fusion::custom::TensorSpec::new(s.clone(), g.dtype),
            burn::backend::fusion::custom::TensorSpec::new(states, g.dtype),
        )
    })]
    fn lstm_train(
        gates_x: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        valid: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// The gradient of `gates_x` `[b, t, 8H]` from that of the states `grad` `[b, t, 2H]`.
    #[fusion(dtype = acts, shape = acts.clone())]
    fn lstm_grad(
        acts: FloatTensor<Self>,
        cs: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        valid: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

impl LstmTrainBackend for CubeBackend {
    fn lstm_train(
        gates_x: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        valid: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let Forward { out, saved } = forward(gates_x, w_hh, valid, true, true);
        let (acts, cs) = saved.expect("saved for training");
        (out, acts, cs)
    }

    fn lstm_grad(
        acts: FloatTensor<Self>,
        cs: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        valid: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let mask_values = valid.meta.shape().num_elements();
        let Dims { b, t, h } = Dims::of(acts.meta.shape(), w_hh.meta.shape(), mask_values);
        let c = |t| f32_contiguous(t, "lstm");
        let (acts, cs, w, grad) = (c(acts), c(cs), c(w_hh), c(grad));
        let valid = f32_contiguous(valid, "lstm");
        let dgates = empty(&acts, [b, t, 8 * h]);
        if b > 0 && t > 0 {
            let (count, dim) = cube_for(b, h);
            lstm_backward_kernel::launch(
                &dgates.client,
                count,
                dim,
                acts.into_buffer_arg(),
                cs.into_buffer_arg(),
                w.into_buffer_arg(),
                valid.into_buffer_arg(),
                grad.into_buffer_arg(),
                dgates.clone().into_buffer_arg(),
                t as u32,
                h,
            );
        }
        dgates
    }
}

impl LstmBackend for CubeBackend {
    fn lstm_recurrence(
        gates_x: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        valid: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        forward(gates_x, w_hh, valid, false, true).out
    }

    fn lstm_projected(
        x: FloatTensor<Self>,
        w_ih: FloatTensor<Self>,
        b_ih: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        valid: FloatTensor<Self>,
        keep_steps: bool,
    ) -> FloatTensor<Self> {
        let gates = super::project::<Self>(x, w_ih, b_ih);
        forward(gates, w_hh, valid, false, keep_steps).out
    }
}

impl<C: CheckpointStrategy> LstmBackend for Autodiff<Cube, C> {
    fn lstm_recurrence(
        gates_x: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        valid: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (gx, gx_node) = gates_x.into_parts();
        let (w, w_node) = w_hh.into_parts();
        // The mask is a constant: no gradient.
        let (valid, _) = valid.into_parts();
        match LstmCubeBackward
            .prepare::<C>([gx_node, w_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (hs, acts, cs) = Cube::lstm_train(gx, w.clone(), valid.clone());
                let state = CubeSaved {
                    hs: hs.clone(),
                    acts,
                    cs,
                    w,
                    valid,
                };
                prep.finish(state, hs)
            }
            OpsKind::UnTracked(prep) => prep.finish(Cube::lstm_recurrence(gx, w, valid)),
        }
    }

    fn lstm_projected(
        x: FloatTensor<Self>,
        w_ih: FloatTensor<Self>,
        b_ih: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        valid: FloatTensor<Self>,
        _keep_steps: bool,
    ) -> FloatTensor<Self> {
        // One product, differentiated by burn, then the recurrence (every step's states).
        let gates = super::project::<Self>(x, w_ih, b_ih);
        Self::lstm_recurrence(gates, w_hh, valid)
    }
}

#[derive(Debug)]
struct LstmCubeBackward;

/// What the backward pass reads.
#[derive(Debug, Clone)]
struct CubeSaved {
    hs: FloatTensor<Cube>,
    acts: FloatTensor<Cube>,
    cs: FloatTensor<Cube>,
    w: FloatTensor<Cube>,
    valid: FloatTensor<Cube>,
}

impl Backward<Cube, 2> for LstmCubeBackward {
    type State = CubeSaved;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_gx, node_w] = ops.parents;
        let grad = grads.consume::<Cube>(&ops.node);
        let CubeSaved {
            hs,
            acts,
            cs,
            w,
            valid,
        } = ops.state;
        let shape = hs.shape();
        let (b, t, h) = (shape[0], shape[1], shape[2] / 2);
        let dgates = Cube::lstm_grad(acts, cs, w, grad, valid);
        if let Some(node) = node_w {
            grads.register::<Cube>(node.id, recurrent_grad(&hs, &dgates, b, t, h));
        }
        if let Some(node) = node_gx {
            grads.register::<Cube>(node.id, dgates);
        }
    }
}

/// The recurrent weights' gradient `[2, H, 4H]`: per direction, the sum over rows and steps of
/// the state before the step times the step's gate gradient. The forward direction reads position
/// p after p − 1, the backward one p after p + 1; a first step has no previous state.
fn recurrent_grad(
    hs: &FloatTensor<Cube>,
    dgates: &FloatTensor<Cube>,
    b: usize,
    t: usize,
    h: usize,
) -> FloatTensor<Cube> {
    if t < 2 {
        return Cube::float_zeros(
            Shape::from([2, h, 4 * h]),
            &hs.device(),
            burn::tensor::FloatDType::F32,
        );
    }
    let part = |prev: std::ops::Range<usize>, now: std::ops::Range<usize>, dir: usize| {
        let states = Cube::float_slice(
            hs.clone(),
            &[
                Slice::from(0..b),
                Slice::from(prev),
                Slice::from(dir * h..(dir + 1) * h),
            ],
        );
        let gates = Cube::float_slice(
            dgates.clone(),
            &[
                Slice::from(0..b),
                Slice::from(now),
                Slice::from(dir * 4 * h..(dir + 1) * 4 * h),
            ],
        );
        let rows = b * (t - 1);
        let states = Cube::float_reshape(states, Shape::from([rows, h]));
        let gates = Cube::float_reshape(gates, Shape::from([rows, 4 * h]));
        let grad = Cube::float_matmul(Cube::float_transpose(states), gates);
        Cube::float_reshape(grad, Shape::from([1, h, 4 * h]))
    };
    Cube::float_cat(vec![part(0..t - 1, 1..t, 0), part(1..t, 0..t - 1, 1)], 0)
}
