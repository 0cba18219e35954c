//! Layer normalization over the last dimension as one CPU operation, with its own backward pass.
//!
//! burn's [`LayerNorm`] on autodiff is the composition of its tensor operations (a mean, a
//! subtraction, a square, a second mean, a square root, a division, the scale and the shift),
//! each allocating its output and recorded by autodiff, which keeps several of them for the
//! backward pass (without autodiff, burn-flex has a fused kernel, which this operation uses
//! there). Here the forward pass reads each row, computes its mean and `1/√(var + ε)` (biased
//! variance, two passes over the row while it is in cache), and writes the output; it keeps the
//! input and those two numbers a row. The backward pass recomputes `x̂ = (x − mean) · rstd` and
//! writes
//!
//! `dx = rstd · (dy·γ − mean(dy·γ) − x̂ · mean(dy·γ·x̂))`, `dγ = Σ_rows dy · x̂`, `dβ = Σ_rows dy`
//!
//! for the parents that ask for a gradient (γ and β may be frozen, β absent). Rows are split into
//! parallel tasks of a fixed size (not a number of threads); a task sums `dγ`, `dβ` over blocks
//! of 8 rows in f32 and the blocks in f64, and the tasks' sums are added in task order, so that
//! the result does not depend on the number of threads (and is near the exact sums: tested in
//! f64). Sums over a row run in 16 lanes (then added up) so that they vectorize, the same way
//! on every target.
//!
//! On the cubecl backend (wgpu) the operation is one kernel launch forward and two backward
//! ([`cube`]).

mod cube;

use super::kernels::multiversioned;
use super::{f32s, slice, tensor};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, Flex, TensorMetadata};
use burn::nn::LayerNorm;
use burn::tensor::{Shape, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

/// Elements a parallel task gets (whole rows, at least one).
const TASK: usize = 1 << 14;

/// Rows whose `dγ`, `dβ` the backward pass sums in f32 before adding them up in f64.
const BLOCK: usize = 8;

/// Lanes of the row sums.
const LANES: usize = 16;

#[backend_extension(Flex, Cube, Fusion, Autodiff)]
pub trait LayerNormBackend: Backend {
    /// `(x − mean) / √(var + epsilon) · gamma + beta` over the last dimension of `x` (biased
    /// variance); `gamma` and `beta` have the last dimension's size. (A layer without β passes
    /// zeros that ask for no gradient: burn's extension macro does not pass optional tensors.)
    #[fusion(dtype = x, shape = x.clone())]
    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self>;
}

/// `layer` applied to `x` over its last dimension as this module's operation (the CPU
/// backend's, or wgpu's kernels).
pub fn layer_norm<const D: usize>(layer: &LayerNorm, x: Tensor<D>) -> Tensor<D> {
    let gamma = layer.gamma.val();
    let beta = match &layer.beta {
        Some(beta) => beta.val(),
        None => Tensor::zeros(gamma.shape(), &gamma.device()),
    };
    Tensor::from_dispatch(<Dispatch as LayerNormBackend>::fused_layer_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon(layer),
    ))
}

/// The layer's ε. burn-nn 0.22.1 keeps the field private; its display (`LayerNorm {d_model: 6,
/// epsilon: 0.00001, …}`) writes it with `f64`'s `Display`, which reads back exactly.
fn epsilon(layer: &LayerNorm) -> f64 {
    let shown = layer.to_string();
    shown
        .split_once("epsilon: ")
        .and_then(|(_, rest)| rest.split([',', '}', ' ', '\n']).next())
        .and_then(|eps| eps.parse().ok())
        .unwrap_or_else(|| panic!("layer_norm: no epsilon in `{shown}`"))
}

/// The rows and the last dimension of `x`, checked against γ's and β's shapes (on any backend).
fn sizes(x: &Shape, gamma: &Shape, beta: &Shape) -> (usize, usize) {
    let d = x[x.num_dims() - 1];
    assert!(d > 0, "layer_norm: an empty last dimension");
    for (name, s) in [("gamma", gamma), ("beta", beta)] {
        assert!(
            s.num_dims() == 1 && s[0] == d,
            "layer_norm: {name} is [{d}], not {s:?}"
        );
    }
    (x.num_elements() / d, d)
}

/// The operation's inputs as slices, checked.
struct Inputs<'a> {
    x: &'a [f32],
    gamma: &'a [f32],
    beta: &'a [f32],
    epsilon: f32,
}

impl<'a> Inputs<'a> {
    fn of(x: &'a FlexTensor, gamma: &'a FlexTensor, beta: &'a FlexTensor, eps: f64) -> Self {
        sizes(&x.shape(), &gamma.shape(), &beta.shape());
        Self {
            x: slice(x),
            gamma: slice(gamma),
            beta: slice(beta),
            epsilon: eps as f32,
        }
    }

    /// The output and, per row, its mean and `1/√(var + ε)`.
    fn forward(&self) -> (Vec<f32>, Vec<f32>) {
        let d = self.gamma.len();
        let rows = self.x.len() / d;
        let mut out = vec![0.0f32; self.x.len()];
        let mut stats = vec![0.0f32; 2 * rows];
        let per = rows_per_task(d);
        let task = |(x, out, stats): (&[f32], &mut [f32], &mut [f32])| {
            normalize(x, out, stats, self.gamma, self.beta, self.epsilon)
        };
        if rows <= per {
            task((self.x, &mut out, &mut stats));
        } else {
            self.x
                .par_chunks(per * d)
                .zip(out.par_chunks_mut(per * d))
                .zip(stats.par_chunks_mut(2 * per))
                .for_each(|((x, out), stats)| task((x, out, stats)));
        }
        (out, stats)
    }
}

/// Rows a parallel task gets.
fn rows_per_task(d: usize) -> usize {
    (TASK / d).max(1)
}

/// `Σ v`, in [`LANES`] lanes.
#[inline(always)]
fn sum(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = v.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    for (a, &v) in acc.iter_mut().zip(rest) {
        *a += v;
    }
    acc.iter().sum()
}

/// `Σ (v − mean)²`, in [`LANES`] lanes.
#[inline(always)]
fn squared_deviations(v: &[f32], mean: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = v.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += (v - mean) * (v - mean);
        }
    }
    for (a, &v) in acc.iter_mut().zip(rest) {
        *a += (v - mean) * (v - mean);
    }
    acc.iter().sum()
}

multiversioned!(normalize, normalize_generic(
    x: &[f32],
    out: &mut [f32],
    stats: &mut [f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f32,
));

/// Rows of `x` normalized into `out`, each row's mean and rstd into `stats`.
#[inline(always)]
fn normalize_generic(
    x: &[f32],
    out: &mut [f32],
    stats: &mut [f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f32,
) {
    let d = gamma.len();
    let n = d as f32;
    for ((x, out), stats) in x
        .chunks_exact(d)
        .zip(out.chunks_exact_mut(d))
        .zip(stats.chunks_exact_mut(2))
    {
        let mean = sum(x) / n;
        let rstd = 1.0 / (squared_deviations(x, mean) / n + epsilon).sqrt();
        for (((o, &v), &g), &b) in out.iter_mut().zip(x).zip(gamma).zip(beta) {
            *o = (v - mean) * rstd * g + b;
        }
        stats[0] = mean;
        stats[1] = rstd;
    }
}

multiversioned!(differentiate, differentiate_generic(
    x: &[f32],
    grad: &[f32],
    stats: &[f32],
    gamma: &[f32],
    dx: Option<&mut [f32]>,
    dgamma: &mut [f32],
    dbeta: &mut [f32],
));

/// The backward pass over some rows: `dx` (when asked for) written, `dgamma` and `dbeta` added to.
#[inline(always)]
fn differentiate_generic(
    x: &[f32],
    grad: &[f32],
    stats: &[f32],
    gamma: &[f32],
    mut dx: Option<&mut [f32]>,
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    let d = gamma.len();
    let n = d as f32;
    for (r, ((x, dy), stats)) in x
        .chunks_exact(d)
        .zip(grad.chunks_exact(d))
        .zip(stats.chunks_exact(2))
        .enumerate()
    {
        let (mean, rstd) = (stats[0], stats[1]);
        // Σ dy·γ and Σ dy·γ·x̂ in lanes; dγ += dy·x̂, dβ += dy.
        let (mut a, mut b) = ([0.0f32; LANES], [0.0f32; LANES]);
        let mut step = |at: usize, len: usize| {
            let lanes = a.iter_mut().zip(b.iter_mut());
            let params = dgamma[at..at + len]
                .iter_mut()
                .zip(&mut dbeta[at..at + len]);
            let row = x[at..at + len]
                .iter()
                .zip(&dy[at..at + len])
                .zip(&gamma[at..at + len]);
            for (((&v, &dy), &g), ((a, b), (dg, db))) in row.zip(lanes.zip(params)) {
                let xhat = (v - mean) * rstd;
                let gy = dy * g;
                *a += gy;
                *b += gy * xhat;
                *dg += dy * xhat;
                *db += dy;
            }
        };
        let full = d / LANES * LANES;
        for at in (0..full).step_by(LANES) {
            step(at, LANES);
        }
        step(full, d - full);
        let a: f32 = a.iter().sum::<f32>() / n;
        let b: f32 = b.iter().sum::<f32>() / n;
        if let Some(dx) = dx.as_deref_mut() {
            let dx = &mut dx[r * d..(r + 1) * d];
            for (((o, &v), &dy), &g) in dx.iter_mut().zip(x).zip(dy).zip(gamma) {
                let xhat = (v - mean) * rstd;
                *o = rstd * (dy * g - a - xhat * b);
            }
        }
    }
}

/// `dx` (when `want_dx`), `dγ`, `dβ` from the input, the incoming gradient and the rows' stats.
fn backward(
    x: &[f32],
    grad: &[f32],
    stats: &[f32],
    gamma: &[f32],
    want_dx: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let d = gamma.len();
    let per = rows_per_task(d);
    let task = |x: &[f32], grad: &[f32], stats: &[f32], mut dx: Option<&mut [f32]>| {
        // Blocks of rows sum dγ, dβ in f32, the task adds the blocks' sums up in f64.
        let mut sums = vec![0.0f64; 2 * d];
        let mut block = vec![0.0f32; 2 * d];
        let rows = x.len() / d;
        for first in (0..rows).step_by(BLOCK) {
            let span = first * d..(first + BLOCK).min(rows) * d;
            block.fill(0.0);
            let (dgamma, dbeta) = block.split_at_mut(d);
            let dx = dx.as_deref_mut().map(|dx| &mut dx[span.clone()]);
            let stats = &stats[2 * span.start / d..2 * span.end / d];
            differentiate(
                &x[span.clone()],
                &grad[span],
                stats,
                gamma,
                dx,
                dgamma,
                dbeta,
            );
            for (sum, &b) in sums.iter_mut().zip(&block) {
                *sum += f64::from(b);
            }
        }
        sums
    };
    let mut dx = vec![0.0f32; if want_dx { x.len() } else { 0 }];
    let parts: Vec<Vec<f64>> = if x.len() <= per * d {
        vec![task(x, grad, stats, want_dx.then_some(&mut dx[..]))]
    } else {
        let inputs = x
            .par_chunks(per * d)
            .zip(grad.par_chunks(per * d))
            .zip(stats.par_chunks(2 * per));
        if want_dx {
            inputs
                .zip(dx.par_chunks_mut(per * d))
                .map(|(((x, g), s), dx)| task(x, g, s, Some(dx)))
                .collect()
        } else {
            inputs.map(|((x, g), s)| task(x, g, s, None)).collect()
        }
    };
    // The tasks' sums, in task order.
    let mut sums = parts[0].clone();
    for part in &parts[1..] {
        for (sum, &p) in sums.iter_mut().zip(part) {
            *sum += p;
        }
    }
    let mut params: Vec<f32> = sums.into_iter().map(|s| s as f32).collect();
    let dbeta = params.split_off(d);
    (dx, params, dbeta)
}

impl LayerNormBackend for Flex {
    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        // Without autodiff, burn-flex's own kernel: one pass already, and faster than
        // [`Inputs::forward`], which also keeps the rows' statistics.
        let [x, gamma, beta] = [x, gamma, beta].map(|t| f32s(t, "layer_norm"));
        <Flex as ModuleOps<Flex>>::layer_norm(x, gamma, Some(beta), epsilon)
    }
}

impl<C: CheckpointStrategy> LayerNormBackend for Autodiff<Flex, C> {
    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        let (x, x_node) = x.into_parts();
        let (gamma, gamma_node) = gamma.into_parts();
        let (beta, beta_node) = beta.into_parts();
        let shape = x.shape();
        let [x, gamma, beta] = [x, gamma, beta].map(|t| f32s(t, "layer_norm"));
        let (out, stats) = Inputs::of(&x, &gamma, &beta, epsilon).forward();
        let out = tensor(out, shape);
        match LayerNormBackward
            .prepare::<C>([x_node, gamma_node, beta_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(Arc::new(Saved { x, gamma, stats }), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}

#[derive(Debug)]
struct LayerNormBackward;

/// What the backward pass reads.
#[derive(Debug)]
struct Saved {
    /// The input (contiguous).
    x: FlexTensor,
    gamma: FlexTensor,
    /// Per row, the mean and `1/√(var + ε)`.
    stats: Vec<f32>,
}

impl Backward<Flex, 3> for LayerNormBackward {
    type State = Arc<Saved>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node, gamma_node, beta_node] = ops.parents;
        let grad = f32s(grads.consume::<Flex>(&ops.node), "layer_norm");
        let saved = &ops.state;
        let (dx, dgamma, dbeta) = backward(
            slice(&saved.x),
            slice(&grad),
            &saved.stats,
            slice(&saved.gamma),
            x_node.is_some(),
        );
        let params = saved.gamma.shape();
        if let Some(node) = x_node {
            grads.register::<Flex>(node.id, tensor(dx, saved.x.shape()));
        }
        if let Some(node) = gamma_node {
            grads.register::<Flex>(node.id, tensor(dgamma, params.clone()));
        }
        if let Some(node) = beta_node {
            grads.register::<Flex>(node.id, tensor(dbeta, params));
        }
    }
}

#[cfg(test)]
mod tests;
