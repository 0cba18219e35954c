//! One AdamW update of one parameter tensor on the cubecl backend (wgpu): one kernel launch for a
//! tensor of up to [`ONE_CUBE`] elements, two for a larger one — where burn's AdamW with its
//! clipping launched about four (a reduction and fused element-wise chains) per tensor, 185 for
//! the default teacher's step on lavapipe.
//!
//! - Up to [`ONE_CUBE`] elements, one workgroup does it all: the gradient's sum of squares
//!   (when clipping: each unit over its stride, then a tree in shared memory), the clipping
//!   factor, and every element's update.
//! - Larger tensors: a first launch writes one partial sum of squares per workgroup; in the
//!   second every workgroup adds the partial sums up (a few hundred numbers) before it updates
//!   its own elements.
//!
//! The arithmetic per element is [`super::update_generic`]'s (burn's order of operations); the
//! norm is summed in f32 in another order than burn's, so the results agree with burn's within
//! rounding, not to the bit.

use burn::backend::tensor::FloatTensor;
use burn::backend::TensorMetadata;
use burn_cubecl::CubeBackend;
use cubecl::prelude::*;

use super::{AdamWBackend, AdamWStep};
use crate::models::ops::cube::{cube_sum, empty, f32_contiguous, UNITS};

/// The largest tensor one workgroup updates alone, in one launch.
pub const ONE_CUBE: usize = 1 << 16;
/// Elements a unit updates at least in the two-launch case.
const PER_UNIT: usize = 4;
/// At most this many partial sums (workgroups of the first launch).
const MAX_PARTIALS: usize = 256;
/// At most this many workgroups update a large tensor (a launch's limit in one dimension).
const MAX_CUBES: usize = 65_535;

/// The step's constants (see `Coefs`), but the clipping factor, computed on the device.
#[derive(CubeLaunch, CubeType)]
struct Constants {
    clip: f32,
    beta_1: f32,
    beta_2: f32,
    factor_1: f32,
    factor_2: f32,
    correction_1: f32,
    correction_2: f32,
    epsilon: f32,
    decay: f32,
    lr: f32,
}

/// burn's clipping factor, `clip / (norm + min_positive)` at most 1.
#[cube]
fn clip_scale(sum_squares: f32, clip: f32) -> f32 {
    let scale = clip / (f32::sqrt(sum_squares) + 1.175_494_4e-38);
    f32::min(scale, 1.0)
}

/// One partial sum of squares of `grad` per workgroup, each over a contiguous block.
#[cube(launch)]
fn sum_squares_kernel(
    grad: &[f32],
    partials: &mut [f32],
    elements: u32,
    block: u32,
    #[comptime] units: usize,
) {
    let n = elements as usize;
    let block = block as usize;
    let start = CUBE_POS_X as usize * block;
    let end = usize::min(start + block, n);
    let mut acc = 0.0;
    for i in range_stepped(start + UNIT_POS_X as usize, end, CUBE_DIM_X as usize) {
        let g = grad[i];
        acc += g * g;
    }
    let total = cube_sum(acc, units);
    if UNIT_POS_X == 0 {
        partials[CUBE_POS_X as usize] = total;
    }
}

/// The update of each element. With `clipping`, the gradient's sum of squares is the sum of
/// `partials` (the first launch's), or, with `one_cube`, summed here first.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn adamw_kernel(
    param: &[f32],
    grad: &[f32],
    moment_1: &[f32],
    moment_2: &[f32],
    partials: &[f32],
    param_out: &mut [f32],
    moment_1_out: &mut [f32],
    moment_2_out: &mut [f32],
    k: Constants,
    elements: u32,
    parts: u32,
    #[comptime] units: usize,
    #[comptime] clipping: bool,
    #[comptime] one_cube: bool,
) {
    let n = elements as usize;
    let unit = UNIT_POS_X as usize;
    let mut scale = 1.0;
    if comptime![clipping] {
        let mut acc = 0.0;
        if comptime![one_cube] {
            for i in range_stepped(unit, n, CUBE_DIM_X as usize) {
                let g = grad[i];
                acc += g * g;
            }
        } else {
            for i in range_stepped(unit, parts as usize, CUBE_DIM_X as usize) {
                acc += partials[i];
            }
        }
        scale = clip_scale(cube_sum(acc, units), k.clip);
    }
    let stride = CUBE_COUNT_X as usize * CUBE_DIM_X as usize;
    for i in range_stepped(CUBE_POS_X as usize * CUBE_DIM_X as usize + unit, n, stride) {
        let g = grad[i] * scale;
        let m = moment_1[i] * k.beta_1 + g * k.factor_1;
        let v = moment_2[i] * k.beta_2 + (g * g) * k.factor_2;
        let delta = (m / k.correction_1) / (f32::sqrt(v / k.correction_2) + k.epsilon);
        moment_1_out[i] = m;
        moment_2_out[i] = v;
        param_out[i] = param[i] * k.decay - delta * k.lr;
    }
}

impl AdamWBackend for CubeBackend {
    fn adamw_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: AdamWStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let shape = param.shape();
        for t in [&grad, &moment_1, &moment_2] {
            assert_eq!(t.shape(), shape, "adamw: the shapes differ");
        }
        let c = |t| f32_contiguous(t, "adamw");
        let (param, grad, moment_1, moment_2) = (c(param), c(grad), c(moment_1), c(moment_2));
        let (param_out, m_out, v_out) = (
            empty(&param, shape.clone()),
            empty(&param, shape.clone()),
            empty(&param, shape.clone()),
        );
        let n = shape.num_elements();
        if n == 0 {
            return (param_out, m_out, v_out);
        }
        let k = super::Coefs::new(&step, None);
        let constants = ConstantsLaunch::new(
            step.clip_norm.unwrap_or(f32::INFINITY),
            k.beta_1,
            k.beta_2,
            k.factor_1,
            k.factor_2,
            k.correction_1,
            k.correction_2,
            k.epsilon,
            k.decay,
            k.lr,
        );
        let clipping = step.clip_norm.is_some();
        let one_cube = n <= ONE_CUBE;
        let client = param.client.clone();
        let dim = CubeDim::new_1d(UNITS as u32);
        let mut parts = 1;
        let partials = if clipping && !one_cube {
            let blocks = n.div_ceil(UNITS * PER_UNIT).min(MAX_PARTIALS);
            parts = blocks;
            let partials = empty(&param, [blocks]);
            sum_squares_kernel::launch(
                &client,
                CubeCount::Static(blocks as u32, 1, 1),
                dim,
                grad.clone().into_buffer_arg(),
                partials.clone().into_buffer_arg(),
                n as u32,
                n.div_ceil(blocks) as u32,
                UNITS,
            );
            partials
        } else {
            // Not read: one element stands in.
            empty(&param, [1])
        };
        // The update strides over the tensor: a count within the launch limit covers any size.
        let cubes = if one_cube {
            1
        } else {
            n.div_ceil(UNITS * PER_UNIT).min(MAX_CUBES)
        };
        adamw_kernel::launch(
            &client,
            CubeCount::Static(cubes as u32, 1, 1),
            dim,
            param.into_buffer_arg(),
            grad.into_buffer_arg(),
            moment_1.into_buffer_arg(),
            moment_2.into_buffer_arg(),
            partials.into_buffer_arg(),
            param_out.clone().into_buffer_arg(),
            m_out.clone().into_buffer_arg(),
            v_out.clone().into_buffer_arg(),
            constants,
            n as u32,
            parts as u32,
            UNITS,
            clipping,
            one_cube,
        );
        (param_out, m_out, v_out)
    }
}
