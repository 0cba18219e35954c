//! Multi-head self-attention (scores, padding mask, softmax, dropout, context) as one CPU
//! operation with its own backward pass.
//!
//! burn composes it from about a dozen operations: the heads split off with a reshape and a
//! transpose (a copy each for queries, keys and values), the scores' product, a division, the
//! mask's addition, the softmax (five operations), dropout (three), the context's product and the
//! heads merged back (another copy), each allocating its result and autodiff recording each. Here
//! every (sequence, head) pair is a task of its own on rayon's pool (the one flex uses, so both
//! cores work): its scores are one `gemm` read straight from the `[batch, time, hidden]`
//! projections (a head is a column block, addressed by strides), the mask, softmax and dropout one
//! pass over them, its context one `gemm` written straight into the merged output. The backward
//! pass is four products and one pass per task. What it keeps: the softmax's probabilities
//! (`[batch, heads, time, time]`, as burn keeps them) and the inputs; the dropout mask is drawn
//! again (Philox, stream = the task, as [`super::dropout`]).
//!
//! On the cubecl backend (wgpu) the operation is one kernel launch forward and two backward
//! ([`cube`]), with the same dropout masks.

mod cube;

use super::kernels::{exp, gemm, multiversioned, Mat};
use super::philox::Stream;
use super::{f32s, slice, tensor, Shared};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, Flex, TensorMetadata};
use burn::nn::Dropout;
use burn::tensor::activation::softmax;
use burn::tensor::{Shape, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

#[backend_extension(Flex, Cube, Fusion, Autodiff)]
pub trait AttentionBackend: Backend {
    /// The context `[batch, time, hidden]` of queries, keys and values `[batch, time, hidden]`
    /// split into `heads` heads; `bias` (`batch · time` values, e.g. `[batch, 1, 1, time]`) is
    /// added to every score of a key position (0 on tokens, a large negative number on padding)
    /// and gets no gradient; the probabilities are dropped with probability `p` from the stream
    /// keyed `key` (none where `p` is 0).
    #[fusion(dtype = q, shape = q.clone())]
    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        heads: usize,
        p: f64,
        key: u64,
    ) -> FloatTensor<Self>;
}

/// Self-attention of the projections `q`, `k`, `v` `[batch, time, hidden]` over `heads` heads
/// with the additive mask `mask_bias` `[batch, 1, 1, time]` and `dropout` on the probabilities,
/// as this module's operation (the CPU backend's, or wgpu's kernels, which read the mask where it
/// is); [`attention_composed`] is the composition it replaces, which the tests compare it with.
pub fn attention(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    mask_bias: Tensor<4>,
    heads: usize,
    dropout: &Dropout,
) -> Tensor<3> {
    let device = q.device();
    let training = dropout.training.is_enabled() && device.is_autodiff() && dropout.prob > 0.0;
    let (p, key) = if training {
        (dropout.prob, super::dropout::draw_key(&device))
    } else {
        (0.0, 0)
    };
    Tensor::from_dispatch(<Dispatch as AttentionBackend>::fused_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        mask_bias.into_dispatch(),
        heads,
        p,
        key,
    ))
}

/// [`attention`] composed from burn's tensor operations.
pub fn attention_composed(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    mask_bias: Tensor<4>,
    heads: usize,
    dropout: &Dropout,
) -> Tensor<3> {
    let [b, t, h] = q.dims();
    let d = h / heads;
    let split = |y: Tensor<3>| y.reshape([b, t, heads, d]).swap_dims(1, 2);
    let scores = split(q)
        .matmul(split(k).swap_dims(2, 3))
        .div_scalar((d as f64).sqrt())
        + mask_bias;
    let probs = dropout.forward(softmax(scores, 3));
    probs.matmul(split(v)).swap_dims(1, 2).reshape([b, t, h])
}

/// Sizes: sequences, positions, hidden units, heads.
#[derive(Debug, Clone, Copy)]
struct Dims {
    b: usize,
    t: usize,
    h: usize,
    heads: usize,
}

impl Dims {
    /// The sizes of `q`, `k`, `v` `[batch, time, hidden]` with `heads` heads and `bias` values of
    /// the key positions, checked, on any backend.
    fn of(s: &Shape, k: &Shape, v: &Shape, bias: usize, heads: usize) -> Self {
        assert_eq!(s.num_dims(), 3, "attention: q is [batch, time, hidden]");
        let (b, t, h) = (s[0], s[1], s[2]);
        assert!(
            heads > 0 && h.is_multiple_of(heads),
            "attention: {h} hidden units in {heads} heads"
        );
        assert_eq!(k, s, "attention: k is shaped as q");
        assert_eq!(v, s, "attention: v is shaped as q");
        assert_eq!(bias, b * t, "attention: one bias a key position");
        Self { b, t, h, heads }
    }

    fn d(&self) -> usize {
        self.h / self.heads
    }

    fn tasks(&self) -> usize {
        self.b * self.heads
    }

    /// Where task `task`'s head starts in a `[batch, time, hidden]` buffer.
    fn offset(&self, task: usize) -> usize {
        (task / self.heads) * self.t * self.h + (task % self.heads) * self.d()
    }
}

/// The dropout on the probabilities: `p` and the stream's key.
#[derive(Debug, Clone, Copy)]
struct Drop {
    p: f64,
    key: u64,
}

impl Drop {
    /// `probs` (one task's `t × t`) with its mask applied: dropped entries 0, the others scaled.
    fn apply(&self, task: usize, probs: &[f32], out: &mut [f32]) {
        let stream = Stream {
            key: self.key,
            id: task as u64,
        };
        let thr = super::dropout::threshold(self.p);
        let scale = (1.0 / (1.0 - self.p)) as f32;
        super::dropout::masked(probs, out, 0, stream, thr, scale);
    }
}

/// The forward pass: the context `[b, t, h]`, and every task's probabilities `[b, heads, t, t]`
/// before dropout if `keep`.
fn forward(
    dims: Dims,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    bias: &[f32],
    drop: Option<Drop>,
    keep: bool,
) -> (Vec<f32>, Vec<f32>) {
    let Dims { t, h, .. } = dims;
    let d = dims.d();
    let scale = 1.0 / (d as f32).sqrt();
    let mut out = vec![0.0f32; dims.b * t * h];
    let mut kept = vec![0.0f32; if keep { dims.tasks() * t * t } else { 0 }];
    let dst = Shared(out.as_mut_ptr());
    let task = |task: usize, probs: &mut [f32], dropped: &mut [f32]| {
        let at = dims.offset(task);
        let row_bias = &bias[(task / dims.heads) * t..][..t];
        // SAFETY: the head's column block of q, k, v and out is within the buffers; probs is
        // the task's own t × t; out's block is written by this task only.
        unsafe {
            gemm(
                t,
                t,
                d,
                Mat::rows(probs.as_mut_ptr(), t),
                false,
                Mat::rows(q[at..].as_ptr(), h),
                Mat::transposed(k[at..].as_ptr(), h),
                scale,
            );
        }
        softmax_rows(probs, row_bias);
        let probs: &[f32] = match drop {
            Some(drop) => {
                drop.apply(task, probs, dropped);
                dropped
            }
            None => probs,
        };
        // SAFETY: as above.
        unsafe {
            gemm(
                t,
                d,
                t,
                Mat::rows(dst.ptr().add(at), h),
                false,
                Mat::rows(probs.as_ptr(), t),
                Mat::rows(v[at..].as_ptr(), h),
                1.0,
            );
        }
    };
    let scratch = || (vec![0.0f32; t * t], vec![0.0f32; t * t]);
    if keep {
        kept.par_chunks_mut(t * t)
            .enumerate()
            .for_each_init(scratch, |(_, dropped), (i, probs)| task(i, probs, dropped));
    } else {
        (0..dims.tasks())
            .into_par_iter()
            .for_each_init(scratch, |(probs, dropped), i| task(i, probs, dropped));
    }
    (out, kept)
}

// Each row of scores (`t` wide): the keys' bias added, then softmax in place.
multiversioned!(softmax_rows, softmax_rows_generic(scores: &mut [f32], bias: &[f32]));

#[inline(always)]
fn softmax_rows_generic(scores: &mut [f32], bias: &[f32]) {
    // The maximum and the sum are kept in LANES lanes over whole chunks of LANES, so that the
    // loops vectorize (a single running f32 sum would fix the order of the additions).
    const LANES: usize = 16;
    let t = bias.len();
    let whole = t - t % LANES;
    for row in scores.chunks_mut(t) {
        let mut max = [f32::NEG_INFINITY; LANES];
        for (c, b) in row[..whole]
            .chunks_exact_mut(LANES)
            .zip(bias.chunks_exact(LANES))
        {
            for l in 0..LANES {
                c[l] += b[l];
                max[l] = max[l].max(c[l]);
            }
        }
        let mut m = max.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        for (s, &b) in row[whole..].iter_mut().zip(&bias[whole..]) {
            *s += b;
            m = m.max(*s);
        }
        let mut sum = [0.0f32; LANES];
        for c in row[..whole].chunks_exact_mut(LANES) {
            for l in 0..LANES {
                c[l] = exp(c[l] - m);
                sum[l] += c[l];
            }
        }
        let mut total: f32 = sum.iter().sum();
        for s in row[whole..].iter_mut() {
            *s = exp(*s - m);
            total += *s;
        }
        let inv = 1.0 / total;
        for s in row.iter_mut() {
            *s *= inv;
        }
    }
}

// Through the softmax, each row (`t` wide): dS = P ⊙ (dP − Σ dP ⊙ P), `grad` from dP to dS.
multiversioned!(softmax_rows_backward, softmax_rows_backward_generic(
    grad: &mut [f32],
    probs: &[f32],
    t: usize,
));

#[inline(always)]
fn softmax_rows_backward_generic(grad: &mut [f32], probs: &[f32], t: usize) {
    const LANES: usize = 16;
    for (ds, p) in grad.chunks_mut(t).zip(probs.chunks(t)) {
        let mut dot = [0.0f32; LANES];
        for (i, (a, b)) in ds.iter().zip(p).enumerate() {
            dot[i % LANES] += a * b;
        }
        let dot: f32 = dot.iter().sum();
        for (g, &p) in ds.iter_mut().zip(p) {
            *g = p * (*g - dot);
        }
    }
}

/// What the backward pass reads.
#[derive(Debug)]
struct Saved {
    dims: Dims,
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    /// The probabilities before dropout, `[b, heads, t, t]`.
    probs: Vec<f32>,
    drop: Option<Drop>,
}

/// The gradients of q, k and v from the context's.
fn backward(saved: &Saved, grad: &[f32]) -> [Vec<f32>; 3] {
    let dims = saved.dims;
    let Dims { t, h, .. } = dims;
    let d = dims.d();
    let scale = 1.0 / (d as f32).sqrt();
    let (q, k, v) = (slice(&saved.q), slice(&saved.k), slice(&saved.v));
    let n = dims.b * t * h;
    let (mut dq, mut dk, mut dv) = (vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]);
    let (pq, pk, pv) = (
        Shared(dq.as_mut_ptr()),
        Shared(dk.as_mut_ptr()),
        Shared(dv.as_mut_ptr()),
    );
    (0..dims.tasks()).into_par_iter().for_each_init(
        || (vec![0.0f32; t * t], vec![0.0f32; t * t]),
        |(dropped, ds), task| {
            let at = dims.offset(task);
            let probs = &saved.probs[task * t * t..][..t * t];
            let used: &[f32] = match saved.drop {
                Some(drop) => {
                    drop.apply(task, probs, dropped);
                    dropped
                }
                None => probs,
            };
            let g = grad[at..].as_ptr();
            // SAFETY: the head's column blocks are within the buffers, the scratch is the
            // task's own, and each gradient block is written by this task only.
            unsafe {
                // dV = P_usedᵀ · dO; dP_used = dO · Vᵀ.
                gemm(
                    t,
                    d,
                    t,
                    Mat::rows(pv.ptr().add(at), h),
                    false,
                    Mat::transposed(used.as_ptr(), t),
                    Mat::rows(g, h),
                    1.0,
                );
                gemm(
                    t,
                    t,
                    d,
                    Mat::rows(ds.as_mut_ptr(), t),
                    false,
                    Mat::rows(g, h),
                    Mat::transposed(v[at..].as_ptr(), h),
                    1.0,
                );
            }
            if let Some(drop) = saved.drop {
                // Through the dropout: the same mask and scale.
                let dp = ds.clone();
                drop.apply(task, &dp, ds);
            }
            softmax_rows_backward(ds, probs, t);
            // SAFETY: as above.
            unsafe {
                // dQ = dS · K / √d; dK = dSᵀ · Q / √d.
                gemm(
                    t,
                    d,
                    t,
                    Mat::rows(pq.ptr().add(at), h),
                    false,
                    Mat::rows(ds.as_ptr(), t),
                    Mat::rows(k[at..].as_ptr(), h),
                    scale,
                );
                gemm(
                    t,
                    d,
                    t,
                    Mat::rows(pk.ptr().add(at), h),
                    false,
                    Mat::transposed(ds.as_ptr(), t),
                    Mat::rows(q[at..].as_ptr(), h),
                    scale,
                );
            }
        },
    );
    [dq, dk, dv]
}

fn drop_of(p: f64, key: u64) -> Option<Drop> {
    (p > 0.0).then_some(Drop { p, key })
}

impl AttentionBackend for Flex {
    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        heads: usize,
        p: f64,
        key: u64,
    ) -> FloatTensor<Self> {
        let shape = q.shape();
        let (q, k, v) = (
            f32s(q, "attention"),
            f32s(k, "attention"),
            f32s(v, "attention"),
        );
        let bias = f32s(bias, "attention");
        let bias = slice(&bias);
        let dims = Dims::of(&q.shape(), &k.shape(), &v.shape(), bias.len(), heads);
        let (q, k, v) = (slice(&q), slice(&k), slice(&v));
        let (out, _) = forward(dims, q, k, v, bias, drop_of(p, key), false);
        tensor(out, shape)
    }
}

impl<C: CheckpointStrategy> AttentionBackend for Autodiff<Flex, C> {
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
        let bias = f32s(bias, "attention");
        let bias = slice(&bias);
        let shape = q.shape();
        let (q, k, v) = (
            f32s(q, "attention"),
            f32s(k, "attention"),
            f32s(v, "attention"),
        );
        let dims = Dims::of(&q.shape(), &k.shape(), &v.shape(), bias.len(), heads);
        let drop = drop_of(p, key);
        let prep = AttentionBackward
            .prepare::<C>([q_node, k_node, v_node])
            .compute_bound()
            .stateful();
        // The probabilities are kept only where a backward pass will read them.
        let keep = matches!(prep, OpsKind::Tracked(_));
        let (out, probs) = forward(dims, slice(&q), slice(&k), slice(&v), bias, drop, keep);
        let out = tensor(out, shape);
        match prep {
            OpsKind::Tracked(prep) => {
                let saved = Saved {
                    dims,
                    q,
                    k,
                    v,
                    probs,
                    drop,
                };
                prep.finish(Arc::new(saved), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}

#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 3> for AttentionBackward {
    type State = Arc<Saved>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = f32s(grads.consume::<Flex>(&ops.node), "attention");
        let saved = &ops.state;
        let Dims { b, t, h, .. } = saved.dims;
        let shape = Shape::from([b, t, h]);
        let gradients = backward(saved, slice(&grad));
        for (node, g) in ops.parents.into_iter().zip(gradients) {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, tensor(g, shape.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests;
