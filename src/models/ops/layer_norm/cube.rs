//! Layer normalization on the cubecl backend (wgpu): one kernel launch forward, two backward —
//! where burn's composition launched about four forward (two reductions and fused element-wise
//! chains) and a dozen backward per layer.
//!
//! Forward, one workgroup per row: the row's mean and `1/√(var + ε)` (tree sums in shared
//! memory), then the output; in training both numbers are kept per row. Backward, one workgroup
//! per row writes `dx = rstd · (dy·γ − mean(dy·γ) − x̂ · mean(dy·γ·x̂))`, and one unit per
//! column sums `dγ = Σ_rows dy · x̂` and `dβ = Σ_rows dy` (a second launch: wgpu has no portable
//! float atomics to add rows into a column from many workgroups).

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

use super::{sizes, LayerNormBackend};
use crate::models::ops::cube::{cube_sum, empty, f32_contiguous, UNITS};

/// One row per workgroup: `out` and, with `save`, the row's mean and rstd in `stats` `[rows, 2]`.
#[cube(launch)]
// A compile-time `if` (which code the kernel has) around a runtime one: not one condition.
#[allow(clippy::too_many_arguments, clippy::collapsible_if)]
fn layer_norm_kernel(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    out: &mut [f32],
    stats: &mut [f32],
    d: u32,
    epsilon: f32,
    #[comptime] units: usize,
    #[comptime] save: bool,
) {
    let d = d as usize;
    let row = CUBE_POS_X as usize;
    let unit = UNIT_POS_X as usize;
    let base = row * d;
    let mut acc = 0.0;
    for j in range_stepped(unit, d, CUBE_DIM_X as usize) {
        acc += x[base + j];
    }
    let n = d as f32;
    let mean = cube_sum(acc, units) / n;
    let mut dev = 0.0;
    for j in range_stepped(unit, d, CUBE_DIM_X as usize) {
        let v = x[base + j] - mean;
        dev += v * v;
    }
    let rstd = 1.0 / f32::sqrt(cube_sum(dev, units) / n + epsilon);
    for j in range_stepped(unit, d, CUBE_DIM_X as usize) {
        out[base + j] = (x[base + j] - mean) * rstd * gamma[j] + beta[j];
    }
    if comptime![save] {
        if unit == 0 {
            stats[2 * row] = mean;
            stats[2 * row + 1] = rstd;
        }
    }
}

/// One row per workgroup: the input's gradient.
#[cube(launch)]
fn layer_norm_dx_kernel(
    x: &[f32],
    grad: &[f32],
    stats: &[f32],
    gamma: &[f32],
    dx: &mut [f32],
    d: u32,
    #[comptime] units: usize,
) {
    let d = d as usize;
    let row = CUBE_POS_X as usize;
    let unit = UNIT_POS_X as usize;
    let base = row * d;
    let mean = stats[2 * row];
    let rstd = stats[2 * row + 1];
    let mut a = 0.0;
    let mut b = 0.0;
    for j in range_stepped(unit, d, CUBE_DIM_X as usize) {
        let gy = grad[base + j] * gamma[j];
        a += gy;
        b += gy * (x[base + j] - mean) * rstd;
    }
    let n = d as f32;
    let a = cube_sum(a, units) / n;
    let b = cube_sum(b, units) / n;
    for j in range_stepped(unit, d, CUBE_DIM_X as usize) {
        let xhat = (x[base + j] - mean) * rstd;
        dx[base + j] = rstd * (grad[base + j] * gamma[j] - a - xhat * b);
    }
}

/// One unit per column: `dγ` and `dβ`, summed over the rows.
#[cube(launch)]
fn layer_norm_params_kernel(
    x: &[f32],
    grad: &[f32],
    stats: &[f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    rows: u32,
    d: u32,
) {
    let d = d as usize;
    let j = ABSOLUTE_POS_X as usize;
    if j < d {
        let mut dg = 0.0;
        let mut db = 0.0;
        for r in 0..rows as usize {
            let dy = grad[r * d + j];
            dg += dy * (x[r * d + j] - stats[2 * r]) * stats[2 * r + 1];
            db += dy;
        }
        dgamma[j] = dg;
        dbeta[j] = db;
    }
}

/// The output and, with `save`, the rows' stats `[rows, 2]`.
fn forward(
    x: CubeTensor,
    gamma: CubeTensor,
    beta: CubeTensor,
    epsilon: f64,
    save: bool,
) -> (CubeTensor, CubeTensor) {
    let shape = x.shape();
    let (rows, d) = sizes(&shape, &gamma.shape(), &beta.shape());
    let c = |t| f32_contiguous(t, "layer_norm");
    let (x, gamma, beta) = (c(x), c(gamma), c(beta));
    let out = empty(&x, shape);
    let stats = empty(&x, [if save { rows } else { 1 }, 2]);
    if rows > 0 {
        layer_norm_kernel::launch(
            &out.client,
            CubeCount::Static(rows as u32, 1, 1),
            CubeDim::new_1d(UNITS as u32),
            x.into_buffer_arg(),
            gamma.into_buffer_arg(),
            beta.into_buffer_arg(),
            out.clone().into_buffer_arg(),
            stats.clone().into_buffer_arg(),
            d as u32,
            epsilon as f32,
            UNITS,
            save,
        );
    }
    (out, stats)
}

impl LayerNormBackend for CubeBackend {
    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        forward(x, gamma, beta, epsilon, false).0
    }
}

/// Layer normalization's training operations on the cubecl backend: the forward pass that keeps
/// each row's mean and rstd, and the backward pass. Used by the autodiff implementation of
/// [`LayerNormBackend`] on [`Cube`].
#[backend_extension(Cube, Fusion)]
pub trait LayerNormTrainBackend: Backend {
    /// The output, and each row's mean and rstd `[rows, 2]`.
    #[fusion(meta = |x: &burn::backend::fusion::custom::TensorSpec, _g: &burn::backend::fusion::custom::TensorSpec, _b: &burn::backend::fusion::custom::TensorSpec, _e: &f64| {
        let d = x.shape[x.shape.num_dims() - 1];
        let rows = x.shape.num_elements() / d;
        (x.clone(), burn::backend::fusion::custom::TensorSpec::new(Shape::from([rows, 2]), x.dtype))
    })]
    fn layer_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// `dx`, `dγ`, `dβ` from the input, the output's gradient and the rows' stats.
    #[fusion(meta = |x: &burn::backend::fusion::custom::TensorSpec, _d: &burn::backend::fusion::custom::TensorSpec, _s: &burn::backend::fusion::custom::TensorSpec, g: &burn::backend::fusion::custom::TensorSpec| (x.clone(), g.clone(), g.clone()))]
    fn layer_norm_grad(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl LayerNormTrainBackend for CubeBackend {
    fn layer_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        forward(x, gamma, beta, epsilon, true)
    }

    fn layer_norm_grad(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let shape = x.shape();
        let (rows, d) = sizes(&shape, &gamma.shape(), &gamma.shape());
        let c = |t| f32_contiguous(t, "layer_norm");
        let (x, grad, stats, gamma) = (c(x), c(grad), c(stats), c(gamma));
        let dx = empty(&x, shape);
        let (dgamma, dbeta) = (empty(&x, [d]), empty(&x, [d]));
        let client = x.client.clone();
        if rows > 0 {
            layer_norm_dx_kernel::launch(
                &client,
                CubeCount::Static(rows as u32, 1, 1),
                CubeDim::new_1d(UNITS as u32),
                x.clone().into_buffer_arg(),
                grad.clone().into_buffer_arg(),
                stats.clone().into_buffer_arg(),
                gamma.into_buffer_arg(),
                dx.clone().into_buffer_arg(),
                d as u32,
                UNITS,
            );
        }
        layer_norm_params_kernel::launch(
            &client,
            CubeCount::Static(d.div_ceil(UNITS) as u32, 1, 1),
            CubeDim::new_1d(UNITS as u32),
            x.into_buffer_arg(),
            grad.into_buffer_arg(),
            stats.into_buffer_arg(),
            dgamma.clone().into_buffer_arg(),
            dbeta.clone().into_buffer_arg(),
            rows as u32,
            d as u32,
        );
        (dx, dgamma, dbeta)
    }
}

impl<C: CheckpointStrategy> LayerNormBackend for Autodiff<Cube, C> {
    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        let (x, x_node) = x.into_parts();
        let (gamma, gamma_node) = gamma.into_parts();
        let (beta, beta_node) = beta.into_parts();
        match LayerNormCubeBackward
            .prepare::<C>([x_node, gamma_node, beta_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (out, stats) = Cube::layer_norm_train(x.clone(), gamma.clone(), beta, epsilon);
                prep.finish(LayerNormSaved { x, gamma, stats }, out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(Cube::fused_layer_norm(x, gamma, beta, epsilon))
            }
        }
    }
}

#[derive(Debug)]
struct LayerNormCubeBackward;

/// What the backward pass reads: the input, γ and each row's mean and rstd.
#[derive(Debug, Clone)]
struct LayerNormSaved {
    x: FloatTensor<Cube>,
    gamma: FloatTensor<Cube>,
    stats: FloatTensor<Cube>,
}

impl Backward<Cube, 3> for LayerNormCubeBackward {
    type State = LayerNormSaved;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<Cube>(&ops.node);
        let LayerNormSaved { x, gamma, stats } = ops.state;
        let (dx, dgamma, dbeta) = Cube::layer_norm_grad(x, grad, stats, gamma);
        for (node, g) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
            if let Some(node) = node {
                grads.register::<Cube>(node.id, g);
            }
        }
    }
}
