//! The BiLSTM recurrence as one operation — on the CPU backend (burn flex) and, as two kernels,
//! on wgpu ([`cube`]) — with a handwritten backward pass (backpropagation through time) for
//! autodiff.
//!
//! Composed from tensor operations, an LSTM step is about fifteen small operations per time step,
//! each paying flex's per-operation cost (and autodiff's per-node cost twice). Here a step is, per
//! direction, one `[rows, H] × [H, 4H]` product (the `gemm` crate, which flex itself uses) and one
//! fused loop over the gates; the backward pass is, per step, one `[rows, 4H] × [4H, H]` product and
//! one fused loop, and the recurrent weights' gradient one product over all steps at the end.
//! Directions and parts of the batch's rows are independent, so they run as parallel tasks on
//! rayon's pool (the one flex uses, sized by `runtime.threads`).
//!
//! The operation is a burn backend extension ([`LstmBackend`]) implemented for `Flex` and for
//! `Autodiff<Flex>`, and on the cubecl backend (wgpu) as two kernels, one launch for all the
//! steps forward and one backward ([`cube`]); fusion takes it as one opaque operation.
//!
//! Inference (no autodiff) goes through [`lstm_projected`]: the operation also computes each
//! step's input projection (one more `[rows, in] × [in, 4H]` product per step and direction), so
//! the `[batch, time, 8H]` projection is never stored, and unless every step's states are asked
//! for it keeps only the final ones. The gates' sigmoid and tanh use a polynomial `exp` (Cephes'
//! `expf`, within 4 ulp; tested) that vectorizes; the gate loops are compiled for AVX-512 and for
//! AVX2 + FMA, chosen at run time.
//!
//! Layout. `gates_x` `[batch, time, 2 · 4H]`: each position's input projection with its bias, the
//! forward direction's four gates (PyTorch's order i, f, g, o) then the backward direction's.
//! `w_hh` `[2, H, 4H]`: the directions' recurrent weights (`h · w_hh[d]`). `valid` `[batch, time]`:
//! 1 on tokens, 0 on padding (the batch's mask, a constant: no gradient). The output `[batch, time, 2H]` holds, at each position, each
//! direction's state after reading it (the forward direction reads positions 0, 1, …, the backward
//! one t − 1, t − 2, …); on a padded position a direction keeps its state. The forward direction's
//! final state is therefore at position t − 1 and the backward one's at position 0.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, Flex, TensorMetadata};
use burn::tensor::{DType, Shape, Tensor, TensorData};
use std::sync::Arc;

mod backward;
mod cube;
mod forward;
mod kernels;

use backward::backward;
use forward::forward;

/// A part of the batch gets at least this many rows.
const MIN_ROWS_PER_TASK: usize = 8;

#[backend_extension(Flex, Cube, Fusion, Autodiff)]
pub trait LstmBackend: Backend {
    /// Both directions' recurrence; see the module documentation for the layout.
    #[fusion(dtype = gates_x, shape = Shape::from([gates_x[0], gates_x[1], gates_x[2] / 4]))]
    fn lstm_recurrence(
        gates_x: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        valid: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// [`Self::lstm_recurrence`] of `x` `[batch, time, in]`'s projection by `w_ih` `[in, 8H]`
    /// and `b_ih` `[8H]`. Without autodiff, flex projects step by step inside the recurrence
    /// (the `[batch, time, 8H]` projection is never stored) and, unless `keep_steps`, returns
    /// only the final states, `[batch, 1, 2H]` (forward direction's, backward direction's);
    /// with autodiff it is one product, then the recurrence, and every step's states. On the
    /// cubecl backend without autodiff: one product, then the recurrence, its final states only
    /// unless `keep_steps`.
    #[fusion(dtype = x, shape = Shape::from([x[0], if *keep_steps { x[1] } else { 1 }, 2 * w_hh[1]]))]
    fn lstm_projected(
        x: FloatTensor<Self>,
        w_ih: FloatTensor<Self>,
        b_ih: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        valid: FloatTensor<Self>,
        keep_steps: bool,
    ) -> FloatTensor<Self>;
}

/// [`lstm_recurrence`] of `x` `[batch, time, in]` projected by `w_ih` `[in, 8H]` and `b_ih`
/// `[8H]` (see [`LstmBackend::lstm_projected`]): `[batch, time, 2H]`, or `[batch, 1, 2H]` (the
/// final states) where that is all it computed (inference without `keep_steps`). On the flex and
/// the wgpu device.
pub fn lstm_projected(
    x: Tensor<3>,
    w_ih: Tensor<2>,
    b_ih: Tensor<1>,
    w_hh: Tensor<3>,
    valid: Tensor<2>,
    keep_steps: bool,
) -> Tensor<3> {
    let out = <Dispatch as LstmBackend>::lstm_projected(
        x.into_dispatch(),
        w_ih.into_dispatch(),
        b_ih.into_dispatch(),
        w_hh.into_dispatch(),
        valid.into_dispatch(),
        keep_steps,
    );
    Tensor::from_dispatch(out)
}

/// Both directions' states `[batch, time, 2H]` of `gates_x` `[batch, time, 8H]` with `w_hh`
/// `[2, H, 4H]` and `valid` `[batch, time]`, on the flex or the wgpu device (with or without
/// autodiff).
pub fn lstm_recurrence(gates_x: Tensor<3>, w_hh: Tensor<3>, valid: Tensor<2>) -> Tensor<3> {
    let out = <Dispatch as LstmBackend>::lstm_recurrence(
        gates_x.into_dispatch(),
        w_hh.into_dispatch(),
        valid.into_dispatch(),
    );
    Tensor::from_dispatch(out)
}

impl LstmBackend for Flex {
    fn lstm_recurrence(
        gates_x: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        valid: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let valid = tokens(valid);
        let dims = Dims::of(gates_x.layout().shape(), w_hh.layout().shape(), valid.len());
        let (gx, w) = (f32s(gates_x), f32s(w_hh));
        let (hs, _) = forward(
            dims,
            Input::Gates(slice(&gx)),
            slice(&w),
            &valid,
            Keep::Steps,
            rayon::current_num_threads(),
        );
        tensor(hs, [dims.b, dims.t, 2 * dims.h])
    }

    fn lstm_projected(
        x: FloatTensor<Self>,
        w_ih: FloatTensor<Self>,
        b_ih: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        valid: FloatTensor<Self>,
        keep_steps: bool,
    ) -> FloatTensor<Self> {
        let valid = tokens(valid);
        let xs = x.layout().shape();
        assert_eq!(xs.num_dims(), 3, "lstm_projected: x is [batch, time, in]");
        let (b, t, d) = (xs[0], xs[1], xs[2]);
        let h = w_hh.layout().shape()[1];
        assert_eq!(
            (
                w_ih.layout().shape()[0],
                w_ih.layout().shape()[1],
                b_ih.layout().shape()[0]
            ),
            (d, 8 * h, 8 * h),
            "lstm_projected: w_ih is [in, 8H], b_ih [8H]"
        );
        assert_eq!(
            valid.len(),
            b * t,
            "lstm_projected: one mask value a position"
        );
        let dims = Dims { b, t, h };
        let (x, w_ih, b_ih, w) = (f32s(x), f32s(w_ih), f32s(b_ih), f32s(w_hh));
        let input = Input::Project {
            x: slice(&x),
            d,
            w_ih: slice(&w_ih),
            b_ih: slice(&b_ih),
        };
        let threads = rayon::current_num_threads();
        let keep = if keep_steps { Keep::Steps } else { Keep::Last };
        let (hs, _) = forward(dims, input, slice(&w), &valid, keep, threads);
        let steps = if keep_steps { t } else { 1 };
        tensor(hs, [b, steps, 2 * h])
    }
}

impl<C: CheckpointStrategy> LstmBackend for Autodiff<Flex, C> {
    fn lstm_recurrence(
        gates_x: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        valid: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (gx, gx_node) = gates_x.into_parts();
        let (w, w_node) = w_hh.into_parts();
        let valid = tokens(valid.into_parts().0);
        let dims = Dims::of(gx.layout().shape(), w.layout().shape(), valid.len());
        let (gx, w) = (f32s(gx), f32s(w));
        let threads = rayon::current_num_threads();
        match LstmBackward
            .prepare::<C>([gx_node, w_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let gates = Input::Gates(slice(&gx));
                let (hs, saved) = forward(dims, gates, slice(&w), &valid, Keep::Saved, threads);
                let hs = tensor(hs, [dims.b, dims.t, 2 * dims.h]);
                let state = LstmState {
                    saved: Arc::new(Saved {
                        dims,
                        tasks: saved,
                        valid,
                        w,
                        hs: hs.clone(),
                    }),
                };
                prep.finish(state, hs)
            }
            OpsKind::UnTracked(prep) => {
                let gates = Input::Gates(slice(&gx));
                let (hs, _) = forward(dims, gates, slice(&w), &valid, Keep::Steps, threads);
                prep.finish(tensor(hs, [dims.b, dims.t, 2 * dims.h]))
            }
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
        let gates = project::<Self>(x, w_ih, b_ih);
        Self::lstm_recurrence(gates, w_hh, valid)
    }
}

/// The input projection `x · w_ih + b_ih` `[batch, time, 8H]` of `x` `[batch, time, in]` as one
/// product.
fn project<B: Backend>(
    x: FloatTensor<B>,
    w_ih: FloatTensor<B>,
    b_ih: FloatTensor<B>,
) -> FloatTensor<B> {
    let shape = x.shape();
    let (b, t, d) = (shape[0], shape[1], shape[2]);
    let g = w_ih.shape()[1];
    let x = B::float_reshape(x, Shape::from([b * t, d]));
    let bias = B::float_reshape(b_ih, Shape::from([1, g]));
    let gates = B::float_add(B::float_matmul(x, w_ih), bias);
    B::float_reshape(gates, Shape::from([b, t, g]))
}

#[derive(Debug)]
struct LstmBackward;

/// What the backward pass reads: the forward pass's activations, per task.
#[derive(Debug, Clone)]
struct LstmState {
    saved: Arc<Saved>,
}

#[derive(Debug)]
struct Saved {
    dims: Dims,
    tasks: Vec<TaskSaved>,
    valid: Vec<bool>,
    w: FlexTensor,
    /// The output: the hidden states.
    hs: FlexTensor,
}

impl Backward<Flex, 2> for LstmBackward {
    type State = LstmState;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_gx, node_w] = ops.parents;
        let grad = f32s(grads.consume::<Flex>(&ops.node));
        let saved = &ops.state.saved;
        let Dims { b, t, h } = saved.dims;
        let (dgx, dw) = backward(
            saved.dims,
            &saved.tasks,
            &saved.valid,
            slice(&saved.w),
            slice(&saved.hs),
            slice(&grad),
        );
        if let Some(node) = node_gx {
            grads.register::<Flex>(node.id, tensor(dgx, [b, t, 8 * h]));
        }
        if let Some(node) = node_w {
            grads.register::<Flex>(node.id, tensor(dw, [2, h, 4 * h]));
        }
    }
}

/// Sizes: batch rows, time steps, hidden units per direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub b: usize,
    pub t: usize,
    pub h: usize,
}

impl Dims {
    /// The sizes of `gates_x` `[b, t, 8H]` and `w_hh` `[2, H, 4H]` (checked against each other
    /// and the mask's number of values), on any backend.
    fn of(g: &Shape, w: &Shape, mask_values: usize) -> Self {
        assert_eq!(
            g.num_dims(),
            3,
            "lstm_recurrence: gates_x is [batch, time, 8H]"
        );
        assert_eq!(w.num_dims(), 3, "lstm_recurrence: w_hh is [2, H, 4H]");
        let (b, t, h) = (g[0], g[1], w[1]);
        assert_eq!(
            (g[2], w[0], w[2]),
            (8 * h, 2, 4 * h),
            "lstm_recurrence: gates_x {g:?} and w_hh {w:?} disagree"
        );
        assert_eq!(
            mask_values,
            b * t,
            "lstm_recurrence: one mask value a position"
        );
        Self { b, t, h }
    }
}

/// Which positions of the mask `[batch, time]` are tokens, row-major.
fn tokens(mask: FlexTensor) -> Vec<bool> {
    slice(&f32s(mask)).iter().map(|&v| v > 0.5).collect()
}

/// A contiguous f32 tensor.
fn f32s(t: FlexTensor) -> FlexTensor {
    assert_eq!(t.dtype(), DType::F32, "lstm_recurrence: f32 tensors only");
    t.to_contiguous()
}

fn slice(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("a contiguous f32 tensor")
}

fn tensor<const N: usize>(values: Vec<f32>, shape: [usize; N]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, Shape::from(shape)))
}

/// One direction over some of the batch's rows: a task of its own.
#[derive(Debug, Clone, Copy)]
struct Task {
    dir: usize,
    rows: (usize, usize),
}

/// The tasks: both directions, each over parts of the rows (as many as the threads allow, each at
/// least [`MIN_ROWS_PER_TASK`] rows).
fn tasks(b: usize, threads: usize) -> Vec<Task> {
    let parts = threads.div_ceil(2).min(b / MIN_ROWS_PER_TASK).max(1);
    (0..2)
        .flat_map(|dir| {
            (0..parts).map(move |p| Task {
                dir,
                rows: (p * b / parts, (p + 1) * b / parts),
            })
        })
        .filter(|task| task.rows.1 > task.rows.0)
        .collect()
}

/// What one task keeps for the backward pass, in the order it read the steps: `[t, rows, ·]`.
/// (Its hidden states are in the operation's output.)
#[derive(Debug)]
struct TaskSaved {
    task: Task,
    /// Gate activations i, f, g, o: `[t, rows, 4H]`.
    acts: Vec<f32>,
    /// Cell state after each step and its tanh: `[t, rows, H]`.
    c: Vec<f32>,
    tanh_c: Vec<f32>,
}

/// A buffer the tasks write in parallel, each to its own rows and direction.
#[derive(Clone, Copy)]
struct Shared(*mut f32);

// SAFETY: the tasks write disjoint elements (their rows, their direction), and the buffer
// outlives them (they are joined before it is read).
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// `len` elements from `offset`.
    ///
    /// # Safety
    /// Within the buffer, and no other live slice overlaps them.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice(&self, offset: usize, len: usize) -> &mut [f32] {
        unsafe { std::slice::from_raw_parts_mut(self.0.add(offset), len) }
    }
}

/// What the recurrence reads at each step.
#[derive(Clone, Copy)]
enum Input<'a> {
    /// The input projection, `[b, t, 8H]`.
    Gates(&'a [f32]),
    /// The inputs `x` `[b, t, d]`, projected at each step by `w_ih` `[d, 8H]` and `b_ih` `[8H]`.
    Project {
        x: &'a [f32],
        d: usize,
        w_ih: &'a [f32],
        b_ih: &'a [f32],
    },
}

/// What the forward pass keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// The final states only: the output is `[b, 1, 2H]`.
    Last,
    /// Every step's states: `[b, t, 2H]`.
    Steps,
    /// Every step's states, and what the backward pass reads.
    Saved,
}

/// The position a direction reads at its `s`-th step.
fn position(dir: usize, s: usize, t: usize) -> usize {
    if dir == 0 {
        s
    } else {
        t - 1 - s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_cover_every_row_of_both_directions_once() {
        for (b, threads) in [(1, 2), (7, 2), (64, 2), (64, 16), (256, 16), (9, 16)] {
            let tasks = tasks(b, threads);
            for dir in 0..2 {
                let mut rows: Vec<usize> = tasks
                    .iter()
                    .filter(|task| task.dir == dir)
                    .flat_map(|task| task.rows.0..task.rows.1)
                    .collect();
                rows.sort_unstable();
                assert_eq!(rows, (0..b).collect::<Vec<_>>(), "b {b}, {threads} threads");
            }
        }
    }
}
