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

use super::kernels::multiversioned;
use super::{f32s, on_flex, slice, tensor};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, Flex, TensorMetadata};
use burn::nn::LayerNorm;
use burn::tensor::Tensor;
use rayon::prelude::*;
use std::sync::Arc;

/// Elements a parallel task gets (whole rows, at least one).
const TASK: usize = 1 << 14;

/// Rows whose `dγ`, `dβ` the backward pass sums in f32 before adding them up in f64.
const BLOCK: usize = 8;

/// Lanes of the row sums.
const LANES: usize = 16;

#[backend_extension(Flex, Autodiff)]
pub trait LayerNormBackend: Backend {
    /// `(x − mean) / √(var + epsilon) · gamma + beta` over the last dimension of `x` (biased
    /// variance); `gamma` and `beta` have the last dimension's size. (A layer without β passes
    /// zeros that ask for no gradient: burn's extension macro does not pass optional tensors.)
    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self>;
}

/// `layer` applied to `x` over its last dimension: on the CPU backend this module's operation,
/// elsewhere burn's [`LayerNorm::forward`].
pub fn layer_norm<const D: usize>(layer: &LayerNorm, x: Tensor<D>) -> Tensor<D> {
    if !on_flex(&x.device()) {
        return layer.forward(x);
    }
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

/// The operation's inputs as slices, checked.
struct Inputs<'a> {
    x: &'a [f32],
    gamma: &'a [f32],
    beta: &'a [f32],
    epsilon: f32,
}

impl<'a> Inputs<'a> {
    fn of(x: &'a FlexTensor, gamma: &'a FlexTensor, beta: &'a FlexTensor, eps: f64) -> Self {
        let shape = x.shape();
        let d = shape[shape.num_dims() - 1];
        assert!(d > 0, "layer_norm: an empty last dimension");
        for (name, t) in [("gamma", gamma), ("beta", beta)] {
            let s = t.shape();
            assert!(
                s.num_dims() == 1 && s[0] == d,
                "layer_norm: {name} is [{d}], not {s:?}"
            );
        }
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
mod tests {
    use super::*;
    use crate::models::ops::test_values::normal;
    use burn::module::{Module, Param};
    use burn::nn::LayerNormConfig;
    use burn::tensor::{Device, TensorData};

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    fn assert_close(what: &str, got: &[f32], want: &[f32]) {
        assert_within(what, got, want, 1e-5)
    }

    fn assert_within(what: &str, got: &[f32], want: &[f32], tolerance: f32) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tolerance * w.abs().max(1.0),
                "{what}[{i}]: {g} vs {w}"
            );
        }
    }

    fn data(shape: [usize; 3], seed: u64, scale: f32, shift: f32) -> TensorData {
        let v = normal(shape.iter().product(), seed);
        TensorData::new(v.into_iter().map(|v| v * scale + shift).collect(), shape)
    }

    /// A layer over `d` with random γ (around 1) and β, or none.
    fn layer(d: usize, bias: bool, epsilon: f64, seed: u64, device: &Device) -> LayerNorm {
        let mut layer = LayerNormConfig::new(d)
            .with_bias(bias)
            .with_epsilon(epsilon)
            .init(device);
        let v = |seed, shift| {
            let v: Vec<f32> = normal(d, seed)
                .into_iter()
                .map(|v| v * 0.5 + shift)
                .collect();
            Param::from_tensor(Tensor::<1>::from_data(TensorData::new(v, [d]), device))
        };
        layer.gamma = v(seed, 1.0);
        layer.beta = bias.then(|| v(seed + 1, 0.0));
        layer
    }

    /// Output and gradients (x, γ, β; `None` where none was asked for) of `sum(y · w)`, through
    /// this module's operation or burn's layer.
    type Run = (Vec<f32>, [Option<Vec<f32>>; 3]);

    fn run(layer: &LayerNorm, x: &TensorData, w: &TensorData, ours: bool) -> Run {
        let device = Device::flex().autodiff();
        let x = Tensor::<3>::from_data(x.clone(), &device).require_grad();
        let y = if ours {
            layer_norm(layer, x.clone())
        } else {
            layer.forward(x.clone())
        };
        let w = Tensor::<3>::from_data(w.clone(), &device);
        let grads = (y.clone() * w).sum().backward();
        let grad = |t: Option<Tensor<1>>| t.and_then(|t| t.grad(&grads)).map(values);
        (
            values(y),
            [
                x.grad(&grads).map(values),
                grad(Some(layer.gamma.val())),
                grad(layer.beta.as_ref().map(|b| b.val())),
            ],
        )
    }

    fn compare(layer: &LayerNorm, shape: [usize; 3], seed: u64) -> Run {
        // Rows far from zero and spread: the mean and the scale matter.
        let x = data(shape, seed, 3.0, 2.0);
        let w = data(shape, seed + 50, 1.0, 0.0);
        let ours = run(layer, &x, &w, true);
        let burns = run(layer, &x, &w, false);
        assert_close("y", &ours.0, &burns.0);
        // dγ and dβ are sums over the rows, in f32 in both: beyond 100 rows, the rounding of those
        // sums (about √rows · 1e-6 in burn's) is allowed for (and the sums checked in f64 below).
        let rows = (shape[0] * shape[1]) as f32;
        let sums = 1e-5 * (rows / 100.0).sqrt().max(1.0);
        for ((name, tolerance), (got, want)) in [("dx", 1e-5), ("dgamma", sums), ("dbeta", sums)]
            .into_iter()
            .zip(ours.1.iter().zip(&burns.1))
        {
            assert_eq!(got.is_some(), want.is_some(), "{name} asked for");
            if let (Some(got), Some(want)) = (got, want) {
                assert_within(name, got, want, tolerance);
            }
        }
        ours
    }

    #[test]
    fn the_output_and_every_gradient_match_burns_layer() {
        let device = Device::flex().autodiff();
        // One task; several tasks (dγ, dβ summed over them); no β; a larger ε.
        for (shape, bias, eps) in [
            ([3, 5, 37], true, 1e-5),
            ([16, 70, 41], true, 1e-12),
            ([3, 5, 37], false, 1e-5),
            ([2, 9, 16], true, 0.5),
        ] {
            let layer = layer(shape[2], bias, eps, 3, &device);
            assert_eq!(epsilon(&layer), eps);
            let (y, [dx, dgamma, dbeta]) = compare(&layer, shape, 7);
            assert!(dx.is_some() && dgamma.is_some() && dbeta.is_some() == bias);
            // Not a trivial comparison: the output is normalized (not the input) and dγ is not 0.
            assert!(y.iter().any(|v| v.abs() > 1.5) && y.iter().all(|v| v.abs() < 20.0));
            assert!(dgamma.unwrap().iter().any(|v| v.abs() > 1e-2));
        }
    }

    /// dγ and dβ of `sum(y · w)` in f64.
    fn exact_params(layer: &LayerNorm, x: &TensorData, w: &TensorData) -> (Vec<f64>, Vec<f64>) {
        let gamma = layer.gamma.val();
        let d = gamma.dims()[0];
        let eps = epsilon(layer);
        let (x, w) = (
            x.try_to_vec::<f32>().unwrap(),
            w.try_to_vec::<f32>().unwrap(),
        );
        let (mut dgamma, mut dbeta) = (vec![0.0; d], vec![0.0; d]);
        for (x, w) in x.chunks(d).zip(w.chunks(d)) {
            let x: Vec<f64> = x.iter().map(|&v| v.into()).collect();
            let mean = x.iter().sum::<f64>() / d as f64;
            let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
            for j in 0..d {
                dgamma[j] += f64::from(w[j]) * (x[j] - mean) / (var + eps).sqrt();
                dbeta[j] += f64::from(w[j]);
            }
        }
        (dgamma, dbeta)
    }

    #[test]
    fn parameter_gradients_over_many_rows_are_near_the_exact_sums() {
        let device = Device::flex().autodiff();
        let shape = [16, 70, 41];
        let layer = layer(41, true, 1e-12, 3, &device);
        let (x, w) = (data(shape, 7, 3.0, 2.0), data(shape, 57, 1.0, 0.0));
        let (_, [_, dgamma, dbeta]) = run(&layer, &x, &w, true);
        let (exact_dgamma, exact_dbeta) = exact_params(&layer, &x, &w);
        for (name, got, exact) in [
            ("dgamma", dgamma.unwrap(), exact_dgamma),
            ("dbeta", dbeta.unwrap(), exact_dbeta),
        ] {
            for (j, (&g, &e)) in got.iter().zip(&exact).enumerate() {
                // burn's own sums are 1.1e-5 off here.
                assert!(
                    (f64::from(g) - e).abs() <= 1.5e-5,
                    "{name}[{j}]: {g} vs {e}"
                );
            }
        }
    }

    #[test]
    fn a_frozen_layer_passes_only_the_inputs_gradient() {
        let device = Device::flex().autodiff();
        let frozen = layer(37, true, 1e-5, 5, &device).freeze();
        let (_, [dx, dgamma, dbeta]) = compare(&frozen, [3, 5, 37], 9);
        assert!(dx.is_some() && dgamma.is_none() && dbeta.is_none());
        // Nothing asks for a gradient: the same output, untracked.
        let x = Tensor::<3>::from_data(data([3, 5, 37], 8, 2.0, 1.0), &device);
        let y = layer_norm(&frozen, x.clone());
        assert!(!y.is_require_grad());
        assert_close("y", &values(y), &values(frozen.forward(x)));
        // Trainable γ and β, an input that asks for no gradient.
        let layer = layer(37, true, 1e-5, 5, &device);
        let x = Tensor::<3>::from_data(data([3, 5, 37], 1, 1.0, 0.0), &device);
        let w = Tensor::<3>::from_data(data([3, 5, 37], 2, 1.0, 0.0), &device);
        let grads = |ours: bool| {
            let y = if ours {
                layer_norm(&layer, x.clone())
            } else {
                layer.forward(x.clone())
            };
            let grads = (y * w.clone()).sum().backward();
            let gamma = values(layer.gamma.val().grad(&grads).unwrap());
            let beta = values(layer.beta.as_ref().unwrap().val().grad(&grads).unwrap());
            (gamma, beta)
        };
        let ((gamma, beta), (gamma_burn, beta_burn)) = (grads(true), grads(false));
        assert_close("dgamma", &gamma, &gamma_burn);
        assert_close("dbeta", &beta, &beta_burn);
    }

    #[test]
    fn inference_matches_burns_layer() {
        let device = Device::flex();
        for (shape, bias) in [([3, 5, 37], true), ([8, 64, 96], false)] {
            let layer = layer(shape[2], bias, 1e-5, 11, &device);
            let x = Tensor::<3>::from_data(data(shape, 4, 3.0, -1.0), &device);
            let y = values(layer_norm(&layer, x.clone()));
            assert_close("y", &y, &values(layer.forward(x)));
        }
    }

    #[test]
    fn the_result_does_not_depend_on_the_number_of_threads() {
        let device = Device::flex().autodiff();
        let layer = layer(48, true, 1e-5, 2, &device);
        let x = data([32, 40, 48], 3, 1.0, 0.0);
        let w = data([32, 40, 48], 4, 1.0, 0.0);
        let on = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| run(&layer, &x, &w, true))
        };
        assert_eq!(on(1), on(3));
    }
}
