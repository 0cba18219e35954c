//! Multi-head self-attention on the cubecl backend (wgpu): one kernel launch forward, two
//! backward per layer — where burn's composition launched about eight forward (the heads' copies,
//! two products, the scaling, the mask, the softmax's reductions, the dropout's random draw and
//! mask) and a dozen backward.
//!
//! Forward, one workgroup per (sequence, head, query): its scores against every key read straight
//! from the `[batch, time, hidden]` projections, the keys' bias, the softmax (tree reductions in
//! shared memory), the dropout and the context row written into the merged output. In training
//! it keeps the probabilities before dropout, as the CPU operation does; the dropout mask is the
//! CPU operation's (the same Philox stream per (sequence, head), element `query · t + key`) and is
//! drawn again in the backward pass. Backward: per (sequence, head, query) the scores' gradient
//! and the query's; then per (sequence, head, key) the key's and the value's, summing over the
//! queries (a second launch: wgpu has no portable float atomics).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};

use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Cube, TensorMetadata};
use burn::tensor::Shape;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeBackend;
use cubecl::prelude::*;

use super::{AttentionBackend, Dims};
use crate::models::ops::cube::{cube_max, cube_sum, empty, f32_contiguous, philox_word};

/// Units of a workgroup (a power of two, for the tree reductions).
const UNITS: usize = 64;

/// The sizes and the dropout, as the kernels read them.
#[derive(CubeLaunch, CubeType)]
struct Layout {
    t: u32,
    hidden: u32,
    heads: u32,
    /// `1/√d`.
    scale: f32,
    key_lo: u32,
    key_hi: u32,
    /// Drop where the stream's number is below this.
    threshold: u32,
    /// `1 / (1 − p)`.
    keep_scale: f32,
}

/// The dropout factor of element `index` of task `task`: 0 where dropped, `1/(1 − p)` elsewhere.
#[cube]
fn keep(index: u32, task: u32, l: &Layout) -> f32 {
    let word = philox_word(index, task, l.key_lo, l.key_hi);
    let mut factor = l.keep_scale;
    if word < l.threshold {
        factor = 0.0;
    }
    factor
}

/// Where a workgroup's row is: workgroup `task · t + pos` is position `pos` of task `task`
/// (sequence `task / heads`, head `task % heads`, whose columns start at `col`).
#[derive(CubeType)]
struct Place {
    t: usize,
    hidden: usize,
    d: usize,
    row: usize,
    task: usize,
    pos: usize,
    seq: usize,
    col: usize,
}

#[cube]
fn place(l: &Layout) -> Place {
    let t = l.t as usize;
    let hidden = l.hidden as usize;
    let heads = l.heads as usize;
    let d = hidden / heads;
    let row = CUBE_POS_X as usize;
    let task = row / t;
    Place {
        t,
        hidden,
        d,
        row,
        task,
        pos: row % t,
        seq: task / heads,
        col: (task % heads) * d,
    }
}

/// Workgroup `task · t + i`: query `i` of task `task`.
#[cube(launch)]
#[allow(clippy::too_many_arguments, clippy::collapsible_if)]
fn attention_kernel(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    bias: &[f32],
    out: &mut [f32],
    probs: &mut [f32],
    l: Layout,
    #[comptime] max_t: usize,
    #[comptime] save: bool,
    #[comptime] dropping: bool,
) {
    let at = place(&l);
    let (t, hidden, d, row) = (at.t, at.hidden, at.d, at.row);
    let (task, i, seq, col) = (at.task, at.pos, at.seq, at.col);
    let unit = UNIT_POS_X as usize;
    let units = CUBE_DIM_X as usize;
    let mut p = Shared::<[f32]>::new_slice(max_t);
    let qo = (seq * t + i) * hidden + col;
    let mut local_max = f32::new(-3.0e38);
    for j in range_stepped(unit, t, units) {
        let ko = (seq * t + j) * hidden + col;
        let mut s = 0.0;
        for c in 0..d {
            s += q[qo + c] * k[ko + c];
        }
        let s = s * l.scale + bias[seq * t + j];
        p[j] = s;
        local_max = f32::max(local_max, s);
    }
    let max = cube_max(local_max, UNITS);
    let mut local_sum = 0.0;
    for j in range_stepped(unit, t, units) {
        let e = f32::exp(p[j] - max);
        p[j] = e;
        local_sum += e;
    }
    let inv = 1.0 / cube_sum(local_sum, UNITS);
    for j in range_stepped(unit, t, units) {
        let pj = p[j] * inv;
        if comptime![save] {
            probs[row * t + j] = pj;
        }
        if comptime![dropping] {
            p[j] = pj * keep((i * t + j) as u32, task as u32, &l);
        } else {
            p[j] = pj;
        }
    }
    sync_cube();
    for c in range_stepped(unit, d, units) {
        let mut acc = 0.0;
        for j in 0..t {
            acc += p[j] * v[(seq * t + j) * hidden + col + c];
        }
        out[qo + c] = acc;
    }
}

/// Workgroup `task · t + i`: the scores' gradient `ds` `[tasks, t, t]` of query `i` and the
/// query's gradient.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn attention_dq_kernel(
    k: &[f32],
    v: &[f32],
    probs: &[f32],
    grad: &[f32],
    ds: &mut [f32],
    dq: &mut [f32],
    l: Layout,
    #[comptime] max_t: usize,
    #[comptime] dropping: bool,
) {
    let at = place(&l);
    let (t, hidden, d, row) = (at.t, at.hidden, at.d, at.row);
    let (task, i, seq, col) = (at.task, at.pos, at.seq, at.col);
    let unit = UNIT_POS_X as usize;
    let units = CUBE_DIM_X as usize;
    let mut dp = Shared::<[f32]>::new_slice(max_t);
    let go = (seq * t + i) * hidden + col;
    // dP (through the dropout) and Σ dP ⊙ P.
    let mut local = 0.0;
    for j in range_stepped(unit, t, units) {
        let vo = (seq * t + j) * hidden + col;
        let mut s = 0.0;
        for c in 0..d {
            s += grad[go + c] * v[vo + c];
        }
        if comptime![dropping] {
            s *= keep((i * t + j) as u32, task as u32, &l);
        }
        dp[j] = s;
        local += s * probs[row * t + j];
    }
    let dot = cube_sum(local, UNITS);
    for j in range_stepped(unit, t, units) {
        let g = probs[row * t + j] * (dp[j] - dot);
        dp[j] = g;
        ds[row * t + j] = g;
    }
    sync_cube();
    for c in range_stepped(unit, d, units) {
        let mut acc = 0.0;
        for j in 0..t {
            acc += dp[j] * k[(seq * t + j) * hidden + col + c];
        }
        dq[go + c] = acc * l.scale;
    }
}

/// Workgroup `task · t + j`: the gradients of key `j` and value `j`, summed over the queries.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn attention_dkv_kernel(
    q: &[f32],
    probs: &[f32],
    ds: &[f32],
    grad: &[f32],
    dk: &mut [f32],
    dv: &mut [f32],
    l: Layout,
    #[comptime] max_t: usize,
    #[comptime] dropping: bool,
) {
    let at = place(&l);
    let (t, hidden, d) = (at.t, at.hidden, at.d);
    let (task, j, seq, col) = (at.task, at.pos, at.seq, at.col);
    let unit = UNIT_POS_X as usize;
    let units = CUBE_DIM_X as usize;
    // Column j of the dropped probabilities and of the scores' gradient.
    let mut pd = Shared::<[f32]>::new_slice(max_t);
    let mut g = Shared::<[f32]>::new_slice(max_t);
    for i in range_stepped(unit, t, units) {
        let at = (task * t + i) * t + j;
        let mut pij = probs[at];
        if comptime![dropping] {
            pij *= keep((i * t + j) as u32, task as u32, &l);
        }
        pd[i] = pij;
        g[i] = ds[at];
    }
    sync_cube();
    let ko = (seq * t + j) * hidden + col;
    for c in range_stepped(unit, d, units) {
        let mut acc_k = 0.0;
        let mut acc_v = 0.0;
        for i in 0..t {
            let o = (seq * t + i) * hidden + col + c;
            acc_k += g[i] * q[o];
            acc_v += pd[i] * grad[o];
        }
        dk[ko + c] = acc_k * l.scale;
        dv[ko + c] = acc_v;
    }
}

fn layout(t: usize, h: usize, heads: usize, p: f64, key: u64) -> LayoutLaunch {
    LayoutLaunch::new(
        t as u32,
        h as u32,
        heads as u32,
        1.0 / ((h / heads) as f32).sqrt(),
        key as u32,
        (key >> 32) as u32,
        super::super::dropout::threshold(p),
        (1.0 / (1.0 - p)) as f32,
    )
}

/// Shared memory for `t` scores: a power of two at least 32 (few kernel variants).
fn max_t(t: usize) -> usize {
    t.next_power_of_two().max(32)
}

/// The context and, with `save`, the probabilities before dropout `[b · heads, t, t]`.
#[allow(clippy::too_many_arguments)]
fn forward(
    q: CubeTensor,
    k: CubeTensor,
    v: CubeTensor,
    bias: CubeTensor,
    heads: usize,
    p: f64,
    key: u64,
    save: bool,
) -> (CubeTensor, CubeTensor) {
    let shape = q.shape();
    let biases = bias.shape().num_elements();
    let Dims { b, t, h, .. } = Dims::of(&shape, &k.shape(), &v.shape(), biases, heads);
    let c = |x| f32_contiguous(x, "attention");
    let (q, k, v) = (c(q), c(k), c(v));
    let bias = c(bias);
    let out = empty(&q, shape);
    let probs = empty(&q, if save { [b * heads, t, t] } else { [1, 1, 1] });
    let rows = b * heads * t;
    if rows > 0 {
        attention_kernel::launch(
            &out.client,
            CubeCount::Static(rows as u32, 1, 1),
            CubeDim::new_1d(UNITS as u32),
            q.into_buffer_arg(),
            k.into_buffer_arg(),
            v.into_buffer_arg(),
            bias.into_buffer_arg(),
            out.clone().into_buffer_arg(),
            probs.clone().into_buffer_arg(),
            layout(t, h, heads, p, key),
            max_t(t),
            save,
            p > 0.0,
        );
    }
    (out, probs)
}

impl AttentionBackend for CubeBackend {
    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        heads: usize,
        p: f64,
        key: u64,
    ) -> FloatTensor<Self> {
        forward(q, k, v, bias, heads, p, key, false).0
    }
}

/// Attention's training operations on the cubecl backend: the forward pass that keeps the
/// probabilities, and the backward pass. Used by the autodiff implementation of
/// [`AttentionBackend`] on [`Cube`].
#[backend_extension(Cube, Fusion)]
pub trait AttentionTrainBackend: Backend {
    /// The context and the probabilities before dropout `[batch · heads, t, t]`.
    #[fusion(meta = |q: &burn::backend::fusion::custom::TensorSpec, _k: &burn::backend::fusion::custom::TensorSpec, _v: &burn::backend::fusion::custom::TensorSpec, _b: &burn::backend::fusion::custom::TensorSpec, heads: &usize, _p: &f64, _key: &u64| {
        let s = &q.shape;
        let probs = Shape::from([s[0] * *heads, s[1], s[1]]);
        (q.clone(), burn::backend::fusion::custom::TensorSpec::new(probs, q.dtype))
    })]
    fn attention_train(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        heads: usize,
        p: f64,
        key: u64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// The gradients of q, k and v from the context's `grad`.
    #[fusion(meta = |q: &burn::backend::fusion::custom::TensorSpec, _k: &burn::backend::fusion::custom::TensorSpec, _v: &burn::backend::fusion::custom::TensorSpec, _p: &burn::backend::fusion::custom::TensorSpec, _g: &burn::backend::fusion::custom::TensorSpec, _h: &usize, _dp: &f64, _key: &u64| (q.clone(), q.clone(), q.clone()))]
    #[allow(clippy::too_many_arguments)]
    fn attention_grad(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        probs: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        heads: usize,
        p: f64,
        key: u64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl AttentionTrainBackend for CubeBackend {
    fn attention_train(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        heads: usize,
        p: f64,
        key: u64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        forward(q, k, v, bias, heads, p, key, true)
    }

    fn attention_grad(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        probs: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        heads: usize,
        p: f64,
        key: u64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let shape = q.shape();
        let bias = shape[0] * shape[1];
        let Dims { b, t, h, .. } = Dims::of(&shape, &k.shape(), &v.shape(), bias, heads);
        let c = |x| f32_contiguous(x, "attention");
        let (q, k, v, probs, grad) = (c(q), c(k), c(v), c(probs), c(grad));
        let (dq, dk, dv) = (
            empty(&q, shape.clone()),
            empty(&q, shape.clone()),
            empty(&q, shape),
        );
        let ds = empty(&q, [b * heads, t, t]);
        let rows = b * heads * t;
        if rows > 0 {
            let client = q.client.clone();
            let count = || CubeCount::Static(rows as u32, 1, 1);
            let dim = CubeDim::new_1d(UNITS as u32);
            attention_dq_kernel::launch(
                &client,
                count(),
                dim,
                k.into_buffer_arg(),
                v.into_buffer_arg(),
                probs.clone().into_buffer_arg(),
                grad.clone().into_buffer_arg(),
                ds.clone().into_buffer_arg(),
                dq.clone().into_buffer_arg(),
                layout(t, h, heads, p, key),
                max_t(t),
                p > 0.0,
            );
            attention_dkv_kernel::launch(
                &client,
                count(),
                dim,
                q.into_buffer_arg(),
                probs.into_buffer_arg(),
                ds.into_buffer_arg(),
                grad.into_buffer_arg(),
                dk.clone().into_buffer_arg(),
                dv.clone().into_buffer_arg(),
                layout(t, h, heads, p, key),
                max_t(t),
                p > 0.0,
            );
        }
        (dq, dk, dv)
    }
}

impl<C: CheckpointStrategy> AttentionBackend for Autodiff<Cube, C> {
    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        heads: usize,
        p: f64,
        key: u64,
    ) -> FloatTensor<Self> {
        let (q, q_node) = q.into_parts();
        let (k, k_node) = k.into_parts();
        let (v, v_node) = v.into_parts();
        // The mask's bias is a constant: no gradient.
        let (bias, _) = bias.into_parts();
        match AttentionCubeBackward
            .prepare::<C>([q_node, k_node, v_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (out, probs) =
                    Cube::attention_train(q.clone(), k.clone(), v.clone(), bias, heads, p, key);
                let saved = AttentionSaved {
                    q,
                    k,
                    v,
                    probs,
                    heads,
                    p,
                    key,
                };
                prep.finish(saved, out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(Cube::fused_attention(q, k, v, bias, heads, p, key))
            }
        }
    }
}

#[derive(Debug)]
struct AttentionCubeBackward;

/// What the backward pass reads: the inputs, the probabilities before dropout, and the dropout.
#[derive(Debug, Clone)]
struct AttentionSaved {
    q: FloatTensor<Cube>,
    k: FloatTensor<Cube>,
    v: FloatTensor<Cube>,
    probs: FloatTensor<Cube>,
    heads: usize,
    p: f64,
    key: u64,
}

impl Backward<Cube, 3> for AttentionCubeBackward {
    type State = AttentionSaved;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_q, node_k, node_v] = ops.parents;
        let grad = grads.consume::<Cube>(&ops.node);
        let s = ops.state;
        let (dq, dk, dv) = Cube::attention_grad(s.q, s.k, s.v, s.probs, grad, s.heads, s.p, s.key);
        for (node, g) in [(node_q, dq), (node_k, dk), (node_v, dv)] {
            if let Some(node) = node {
                grads.register::<Cube>(node.id, g);
            }
        }
    }
}
