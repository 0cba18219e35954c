//! The BiLSTM recurrence as one operation on the CPU backend (burn flex), with a handwritten
//! backward pass (backpropagation through time) for autodiff.
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
//! `Autodiff<Flex>`. Other backends (wgpu) keep the composition of tensor operations in
//! [`super::bilstm`]; [`lstm_recurrence`] is called only on flex devices.
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
//! `w_hh` `[2, H, 4H]`: the directions' recurrent weights (`h · w_hh[d]`). `valid` `[batch · time]`
//! (row-major): true on tokens. The output `[batch, time, 2H]` holds, at each position, each
//! direction's state after reading it (the forward direction reads positions 0, 1, …, the backward
//! one t − 1, t − 2, …); on a padded position a direction keeps its state. The forward direction's
//! final state is therefore at position t − 1 and the backward one's at position 0.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, Flex, TensorMetadata};
use burn::tensor::{DType, Shape, Tensor, TensorData};
use rayon::prelude::*;
use std::sync::Arc;

/// A part of the batch gets at least this many rows.
const MIN_ROWS_PER_TASK: usize = 8;

#[backend_extension(Flex, Autodiff)]
pub trait LstmBackend: Backend {
    /// Both directions' recurrence; see the module documentation for the layout.
    fn lstm_recurrence(
        gates_x: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        valid: Vec<bool>,
    ) -> FloatTensor<Self>;

    /// [`Self::lstm_recurrence`] of `x` `[batch, time, in]`'s projection by `w_ih` `[in, 8H]`
    /// and `b_ih` `[8H]`. Without autodiff, flex projects step by step inside the recurrence
    /// (the `[batch, time, 8H]` projection is never stored) and, unless `keep_steps`, returns
    /// only the final states, `[batch, 1, 2H]` (forward direction's, backward direction's);
    /// with autodiff it is one product, then the recurrence, and every step's states.
    fn lstm_projected(
        x: FloatTensor<Self>,
        w_ih: FloatTensor<Self>,
        b_ih: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        valid: Vec<bool>,
        keep_steps: bool,
    ) -> FloatTensor<Self>;
}

/// [`lstm_recurrence`] of `x` `[batch, time, in]` projected by `w_ih` `[in, 8H]` and `b_ih`
/// `[8H]` (see [`LstmBackend::lstm_projected`]): `[batch, time, 2H]`, or `[batch, 1, 2H]` (the
/// final states) where that is all it computed (inference without `keep_steps`). Only on the
/// flex device.
pub fn lstm_projected(
    x: Tensor<3>,
    w_ih: Tensor<2>,
    b_ih: Tensor<1>,
    w_hh: Tensor<3>,
    valid: Vec<bool>,
    keep_steps: bool,
) -> Tensor<3> {
    let out = <Dispatch as LstmBackend>::lstm_projected(
        x.into_dispatch(),
        w_ih.into_dispatch(),
        b_ih.into_dispatch(),
        w_hh.into_dispatch(),
        valid,
        keep_steps,
    );
    Tensor::from_dispatch(out)
}

/// Both directions' states `[batch, time, 2H]` of `gates_x` `[batch, time, 8H]` with `w_hh`
/// `[2, H, 4H]` and `valid` `[batch · time]`. Only for tensors on the flex device (with or without
/// autodiff).
pub fn lstm_recurrence(gates_x: Tensor<3>, w_hh: Tensor<3>, valid: Vec<bool>) -> Tensor<3> {
    let out = <Dispatch as LstmBackend>::lstm_recurrence(
        gates_x.into_dispatch(),
        w_hh.into_dispatch(),
        valid,
    );
    Tensor::from_dispatch(out)
}

impl LstmBackend for Flex {
    fn lstm_recurrence(
        gates_x: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        valid: Vec<bool>,
    ) -> FloatTensor<Self> {
        let dims = Dims::of(&gates_x, &w_hh, &valid);
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
        valid: Vec<bool>,
        keep_steps: bool,
    ) -> FloatTensor<Self> {
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
        valid: Vec<bool>,
    ) -> FloatTensor<Self> {
        let (gx, gx_node) = gates_x.into_parts();
        let (w, w_node) = w_hh.into_parts();
        let dims = Dims::of(&gx, &w, &valid);
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
        valid: Vec<bool>,
        _keep_steps: bool,
    ) -> FloatTensor<Self> {
        // One product, differentiated by burn, then the recurrence (every step's states).
        let shape = x.shape();
        let (b, t, d) = (shape[0], shape[1], shape[2]);
        let g = w_ih.shape()[1];
        let x = Self::float_reshape(x, Shape::from([b * t, d]));
        let bias = Self::float_reshape(b_ih, Shape::from([1, g]));
        let gates = Self::float_add(Self::float_matmul(x, w_ih), bias);
        let gates = Self::float_reshape(gates, Shape::from([b, t, g]));
        Self::lstm_recurrence(gates, w_hh, valid)
    }
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
    fn of(gates_x: &FlexTensor, w_hh: &FlexTensor, valid: &[bool]) -> Self {
        let g = gates_x.layout().shape();
        let w = w_hh.layout().shape();
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
            valid.len(),
            b * t,
            "lstm_recurrence: one mask value a position"
        );
        Self { b, t, h }
    }
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

/// The recurrence's output (see [`Keep`]) and, with [`Keep::Saved`], what each task keeps for
/// backward.
fn forward(
    dims: Dims,
    input: Input<'_>,
    w: &[f32],
    valid: &[bool],
    keep: Keep,
    threads: usize,
) -> (Vec<f32>, Vec<TaskSaved>) {
    let Dims { b, t, h } = dims;
    let steps = if keep == Keep::Last { 1 } else { t };
    let mut hs = vec![0f32; b * steps * 2 * h];
    let out = Shared(hs.as_mut_ptr());
    let saved: Vec<TaskSaved> = tasks(b, threads)
        .into_par_iter()
        .map(|task| forward_task(dims, task, input, w, valid, out, keep))
        .collect();
    (
        hs,
        if keep == Keep::Saved {
            saved
        } else {
            Vec::new()
        },
    )
}

/// The position a direction reads at its `s`-th step.
fn position(dir: usize, s: usize, t: usize) -> usize {
    if dir == 0 {
        s
    } else {
        t - 1 - s
    }
}

/// Slots `prev` and `next` (distinct) of a buffer of `len`-element slots.
fn two_slots(buf: &mut [f32], len: usize, prev: usize, next: usize) -> (&[f32], &mut [f32]) {
    if prev < next {
        let (a, b) = buf.split_at_mut(next * len);
        (&a[prev * len..(prev + 1) * len], &mut b[..len])
    } else {
        let (a, b) = buf.split_at_mut(prev * len);
        (&b[..len], &mut a[next * len..(next + 1) * len])
    }
}

/// One task's recurrence: its rows' states written to `out` (`[b, t, 2H]`, or `[b, 1, 2H]` with
/// [`Keep::Last`]); with [`Keep::Saved`], every step's activations and cell states kept (else
/// one or two steps' worth of buffers).
fn forward_task(
    dims: Dims,
    task: Task,
    input: Input<'_>,
    w: &[f32],
    valid: &[bool],
    out: Shared,
    keep: Keep,
) -> TaskSaved {
    let save = keep == Keep::Saved;
    let Dims { t, h, .. } = dims;
    let Task {
        dir,
        rows: (r0, r1),
    } = task;
    let nb = r1 - r0;
    let g4 = 4 * h;
    let w = &w[dir * h * g4..(dir + 1) * h * g4];
    let kept = if save { t } else { 1 };
    let mut acts = vec![0f32; kept * nb * g4];
    let mut tanh_all = vec![0f32; kept * nb * h];
    // One slot more than the kept steps: the state before the first step (zero).
    let mut c_all = vec![0f32; (if save { t } else { 1 } + 1) * nb * h];
    let zeros = vec![0f32; h];
    // Where row k's state after step s is: in `out` at the position read, or (Keep::Last) in
    // two alternating slots of a buffer of this task's.
    let mut local = vec![0f32; if keep == Keep::Last { 2 * nb * h } else { 0 }];
    let (states, row_stride) = match keep {
        Keep::Last => (Shared(local.as_mut_ptr()), h),
        _ => (out, t * 2 * h),
    };
    let at = |k: usize, s: usize| match keep {
        Keep::Last => ((s % 2) * nb + k) * h,
        _ => ((r0 + k) * t + position(dir, s, t)) * 2 * h + dir * h,
    };
    for s in 0..t {
        let pos = position(dir, s, t);
        let slot = if save { s } else { 0 };
        let z = &mut acts[slot * nb * g4..(slot + 1) * nb * g4];
        match input {
            Input::Gates(gx) => {
                for k in 0..nb {
                    let src = ((r0 + k) * t + pos) * 8 * h + dir * g4;
                    z[k * g4..(k + 1) * g4].copy_from_slice(&gx[src..src + g4]);
                }
            }
            Input::Project { x, d, w_ih, b_ih } => {
                // z = b + x_pos · w_ih (this direction's columns; x's rows t · d apart).
                for k in 0..nb {
                    z[k * g4..(k + 1) * g4].copy_from_slice(&b_ih[dir * g4..(dir + 1) * g4]);
                }
                let x_pos = &x[((r0 * t) + pos) * d..];
                unsafe {
                    matmul(
                        nb,
                        g4,
                        d,
                        z.as_mut_ptr(),
                        g4,
                        true,
                        x_pos.as_ptr(),
                        t * d,
                        1,
                        w_ih[dir * g4..].as_ptr(),
                        8 * h,
                    );
                }
            }
        }
        let prev_pos = (s > 0).then(|| position(dir, s - 1, t));
        if prev_pos.is_some() {
            // z += h_prev · w (h_prev's rows `row_stride` apart).
            unsafe {
                matmul(
                    nb,
                    g4,
                    h,
                    z.as_mut_ptr(),
                    g4,
                    true,
                    states.0.add(at(0, s - 1)) as *const f32,
                    row_stride,
                    1,
                    w.as_ptr(),
                    g4,
                );
            }
        }
        // c slots: save: slot s + 1 after step s (slot 0: zero); else alternating 0 and 1.
        let (c_prev_slot, c_slot) = if save {
            (s, s + 1)
        } else {
            (s % 2, (s + 1) % 2)
        };
        let (c_prev, c_new) = two_slots(&mut c_all, nb * h, c_prev_slot, c_slot);
        let tanh_new = &mut tanh_all[slot * nb * h..(slot + 1) * nb * h];
        for k in 0..nb {
            let row = k * h..(k + 1) * h;
            // SAFETY: row k of this task's direction after step s: this task's alone, and not
            // overlapping the previous step's row read below.
            let h_new = unsafe { states.slice(at(k, s), h) };
            if valid[(r0 + k) * t + pos] {
                cell_forward(
                    &mut z[k * g4..(k + 1) * g4],
                    &c_prev[row.clone()],
                    &mut c_new[row.clone()],
                    &mut tanh_new[row],
                    h_new,
                );
            } else {
                // Padding: the state is kept (and the step's activations are never read).
                c_new[row.clone()].copy_from_slice(&c_prev[row]);
                match prev_pos {
                    // SAFETY: as above, a row this task wrote at the step before.
                    Some(_) => h_new.copy_from_slice(unsafe { states.slice(at(k, s - 1), h) }),
                    None => h_new.copy_from_slice(&zeros),
                }
            }
        }
    }
    if keep == Keep::Last {
        for k in 0..nb {
            // SAFETY: this task's rows and direction of `out`.
            let last = unsafe { out.slice((r0 + k) * 2 * h + dir * h, h) };
            last.copy_from_slice(&local[((t - 1) % 2 * nb + k) * h..][..h]);
        }
    }
    TaskSaved {
        task,
        acts,
        c: c_all,
        tanh_c: tanh_all,
    }
}

/// The gradients of `gates_x` `[b, t, 8H]` and `w_hh` `[2, H, 4H]` given the output `hs`
/// `[b, t, 2H]` and its gradient `grad`.
fn backward(
    dims: Dims,
    tasks: &[TaskSaved],
    valid: &[bool],
    w: &[f32],
    hs: &[f32],
    grad: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let Dims { b, t, h } = dims;
    let g4 = 4 * h;
    // Padded positions' rows stay zero.
    let mut dgx = vec![0f32; b * t * 8 * h];
    let out = Shared(dgx.as_mut_ptr());
    // Each direction's wᵀ `[4H, H]`, row-major: a product with it then reads rows, which the
    // gemm crate takes without repacking the weights at every step.
    let mut w_t = vec![0f32; 2 * g4 * h];
    for dir in 0..2 {
        for j in 0..h {
            for q in 0..g4 {
                w_t[(dir * g4 + q) * h + j] = w[(dir * h + j) * g4 + q];
            }
        }
    }
    let parts: Vec<Vec<f32>> = tasks
        .par_iter()
        .map(|saved| backward_task(dims, saved, valid, &w_t, hs, grad, out))
        .collect();
    let mut dw = vec![0f32; 2 * h * g4];
    for (saved, part) in tasks.iter().zip(&parts) {
        let dir = saved.task.dir;
        for (acc, v) in dw[dir * h * g4..(dir + 1) * h * g4].iter_mut().zip(part) {
            *acc += v;
        }
    }
    (dgx, dw)
}

/// One task's backward pass: its rows' pre-activation gradients written to `dgx` `[b, t, 8H]`;
/// returns its part of its direction's `w_hh` gradient `[H, 4H]`. `w_t`: both directions' wᵀ,
/// `[2, 4H, H]`.
fn backward_task(
    dims: Dims,
    saved: &TaskSaved,
    valid: &[bool],
    w_t: &[f32],
    hs: &[f32],
    grad: &[f32],
    dgx: Shared,
) -> Vec<f32> {
    let Dims { t, h, .. } = dims;
    let Task {
        dir,
        rows: (r0, r1),
    } = saved.task;
    let nb = r1 - r0;
    let g4 = 4 * h;
    let w_t = &w_t[dir * g4 * h..(dir + 1) * g4 * h];
    // Where row k's gradients at `pos` are in `dgx`.
    let at = |k: usize, pos: usize| ((r0 + k) * t + pos) * 8 * h + dir * g4;
    // The gradients of the state after the step being processed.
    let mut dh = vec![0f32; nb * h];
    let mut dc = vec![0f32; nb * h];
    for s in (0..t).rev() {
        let pos = position(dir, s, t);
        // Slot s of `c` is the state before step s.
        let c_prev = &saved.c[s * nb * h..(s + 1) * nb * h];
        let acts = &saved.acts[s * nb * g4..(s + 1) * nb * g4];
        let tanh_c = &saved.tanh_c[s * nb * h..(s + 1) * nb * h];
        let mut any_valid = false;
        for k in 0..nb {
            let row = k * h..(k + 1) * h;
            let src = ((r0 + k) * t + pos) * 2 * h + dir * h;
            for (d, g) in dh[row.clone()].iter_mut().zip(&grad[src..src + h]) {
                *d += g;
            }
            if valid[(r0 + k) * t + pos] {
                any_valid = true;
                cell_backward(
                    &acts[k * g4..(k + 1) * g4],
                    &c_prev[row.clone()],
                    &tanh_c[row.clone()],
                    &mut dh[row.clone()],
                    &mut dc[row],
                    // SAFETY: this task's row and direction at `pos`, written once.
                    unsafe { dgx.slice(at(k, pos), g4) },
                );
            }
            // On padding the state was kept: its gradient passes to the step before unchanged
            // (and dz stays zero).
        }
        if s > 0 && any_valid {
            // dh_prev += dz · wᵀ (cell_backward zeroed dh on the rows it read); dz read from
            // `dgx`, rows t · 8H apart.
            unsafe {
                matmul(
                    nb,
                    h,
                    g4,
                    dh.as_mut_ptr(),
                    h,
                    true,
                    dgx.0.add(at(0, pos)) as *const f32,
                    t * 8 * h,
                    1,
                    w_t.as_ptr(),
                    h,
                );
            }
        }
    }
    // dw = Σ h_prevᵀ · dz over this task's rows and positions, in `dgx`'s order (row-major
    // (row, position), 8H apart); h_prev gathered in that order, zero before the first step.
    let mut h_prev = vec![0f32; nb * t * h];
    for k in 0..nb {
        for s in 1..t {
            let pos = position(dir, s, t);
            let src = ((r0 + k) * t + position(dir, s - 1, t)) * 2 * h + dir * h;
            let dst = (k * t + pos) * h;
            h_prev[dst..dst + h].copy_from_slice(&hs[src..src + h]);
        }
    }
    let mut dw = vec![0f32; h * g4];
    // SAFETY: the product reads only this task's rows and direction of `dgx` (other tasks may
    // still be writing theirs).
    unsafe {
        matmul(
            h,
            g4,
            nb * t,
            dw.as_mut_ptr(),
            g4,
            false,
            h_prev.as_ptr(),
            1,
            h,
            dgx.0.add(at(0, 0)) as *const f32,
            8 * h,
        );
    }
    dw
}

/// `dst (+)= lhs · rhs` in f32 through `gemm` (single-threaded: the callers are rayon tasks
/// already): `dst` is `m × n` and `rhs` `k × n`, rows `dst_rs` / `rhs_rs` elements apart with
/// adjacent columns; `lhs` is `m × k` with element (i, p) at `lhs + i·lhs_rs + p·lhs_cs` (so a
/// transposed operand is a swap of its strides). `accumulate`: add to `dst`, else overwrite it.
///
/// # Safety
/// Every pointer must cover the elements its shape and strides address, and `dst` must not
/// overlap `lhs` or `rhs`.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: *const f32,
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: *const f32,
    rhs_rs: usize,
) {
    let alpha = if accumulate { 1.0 } else { 0.0 };
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        lhs,
        lhs_cs as isize,
        lhs_rs as isize,
        rhs,
        1,
        rhs_rs as isize,
        alpha,
        1.0f32,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

/// `fn $name(args)`: `$generic` compiled for AVX-512 and for AVX2 + FMA besides the baseline, the
/// best one the CPU has chosen at run time (the same loop; the compiler vectorizes it per target).
macro_rules! multiversioned {
    ($name:ident, $generic:ident($($arg:ident: $ty:ty),* $(,)?)) => {
        #[inline]
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) {
                    $generic($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    $generic($($arg),*)
                }
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features the function is compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $generic($($arg),*)
        }
    };
}

// One row's step: `z` (pre-activations i, f, g, o, `4H`) becomes the activations; the new cell
// state, its tanh and the new hidden state are written.
multiversioned!(cell_forward, cell_forward_generic(
    z: &mut [f32],
    c_prev: &[f32],
    c: &mut [f32],
    tanh_c: &mut [f32],
    h: &mut [f32],
));

#[inline(always)]
fn cell_forward_generic(
    z: &mut [f32],
    c_prev: &[f32],
    c: &mut [f32],
    tanh_c: &mut [f32],
    h: &mut [f32],
) {
    let n = h.len();
    let (zi, rest) = z.split_at_mut(n);
    let (zf, rest) = rest.split_at_mut(n);
    let (zg, zo) = rest.split_at_mut(n);
    let zo = &mut zo[..n];
    let (c_prev, c, tanh_c) = (&c_prev[..n], &mut c[..n], &mut tanh_c[..n]);
    for j in 0..n {
        let i = sigmoid(zi[j]);
        let f = sigmoid(zf[j]);
        let g = tanh(zg[j]);
        let o = sigmoid(zo[j]);
        let cj = f * c_prev[j] + i * g;
        let tc = tanh(cj);
        zi[j] = i;
        zf[j] = f;
        zg[j] = g;
        zo[j] = o;
        c[j] = cj;
        tanh_c[j] = tc;
        h[j] = o * tc;
    }
}

// One row's step backward: from the gradients of the state after the step (`dh`, `dc`), the
// pre-activations' gradient `dz` (`4H`); `dc` becomes the gradient of the cell state before the
// step and `dh` zero (the hidden state before the step reaches the output only through `dz`).
multiversioned!(cell_backward, cell_backward_generic(
    acts: &[f32],
    c_prev: &[f32],
    tanh_c: &[f32],
    dh: &mut [f32],
    dc: &mut [f32],
    dz: &mut [f32],
));

#[inline(always)]
fn cell_backward_generic(
    acts: &[f32],
    c_prev: &[f32],
    tanh_c: &[f32],
    dh: &mut [f32],
    dc: &mut [f32],
    dz: &mut [f32],
) {
    let n = dh.len();
    let (ai, rest) = acts.split_at(n);
    let (af, rest) = rest.split_at(n);
    let (ag, ao) = rest.split_at(n);
    let ao = &ao[..n];
    let (zi, rest) = dz.split_at_mut(n);
    let (zf, rest) = rest.split_at_mut(n);
    let (zg, zo) = rest.split_at_mut(n);
    let zo = &mut zo[..n];
    let (c_prev, tanh_c, dc) = (&c_prev[..n], &tanh_c[..n], &mut dc[..n]);
    for j in 0..n {
        let (i, f, g, o) = (ai[j], af[j], ag[j], ao[j]);
        let tc = tanh_c[j];
        let d_h = dh[j];
        let d_c = dc[j] + d_h * o * (1.0 - tc * tc);
        zi[j] = d_c * g * i * (1.0 - i);
        zf[j] = d_c * c_prev[j] * f * (1.0 - f);
        zg[j] = d_c * i * (1.0 - g * g);
        zo[j] = d_h * tc * o * (1.0 - o);
        dc[j] = d_c * f;
        dh[j] = 0.0;
    }
}

/// `e^x` to about 2 ulp for |x| < 87 (Cephes' polynomial after a reduction by ln 2), branch-free
/// so that loops over it vectorize; saturates beyond.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    // Round x·log2(e) to the nearest integer with the 1.5·2²³ trick.
    const MAGIC: f32 = 12_582_912.0;
    let n = (x * LOG2E + MAGIC) - MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5; // Cephes: 5.0000001201e-1, which is 0.5 in f32
    let e = p * r * r + r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    e * scale
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// tanh(x) = 2σ(2x) − 1.
#[inline(always)]
fn tanh(x: f32) -> f32 {
    2.0 / (1.0 + exp(-2.0 * x)) - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_exp_sigmoid_and_tanh_are_accurate() {
        let mut x = -30.0f32;
        while x <= 30.0 {
            let e = exp(x);
            let want = x.exp();
            assert!(
                (e - want).abs() <= 4.0 * f32::EPSILON * want,
                "exp({x}) = {e}, want {want}"
            );
            let s = sigmoid(x);
            let want = 1.0 / (1.0 + (-x as f64).exp());
            assert!((s as f64 - want).abs() <= 2e-7, "σ({x}) = {s}, want {want}");
            let th = tanh(x);
            let want = (x as f64).tanh();
            assert!(
                (th as f64 - want).abs() <= 4e-7,
                "tanh({x}) = {th}, want {want}"
            );
            x += 0.013;
        }
        assert!(sigmoid(-200.0) < 1e-30 && sigmoid(200.0) == 1.0);
        assert_eq!(tanh(100.0), 1.0);
        assert_eq!(tanh(-100.0), -1.0);
    }

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
