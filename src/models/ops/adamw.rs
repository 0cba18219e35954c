//! One AdamW update of one parameter tensor as one CPU operation: the gradient's L2 norm (when
//! clipping) in one pass, then, per element, the clipped gradient, both moments, the
//! bias-corrected update, the decoupled weight decay and the new parameter in a second — where
//! burn's AdamW (and its clipping) runs about twenty tensor operations over the whole tensor,
//! each a pass of its own (the element-wise ones on one thread), several into a fresh buffer.
//!
//! The parameter and the moments are updated in their own buffers when those are uniquely owned
//! (as they are in a training step: the tape is gone, the optimizer state moved out of its
//! record), else in a copy; large tensors are split into chunks updated in parallel.
//!
//! The arithmetic is burn 0.22's, operation for operation in f32 (burn's `AdamW` with
//! `GradientClipping::Norm`): the same roundings in the same order, so the results are burn's
//! to the last bit but for the gradient's norm, whose sum of squares is accumulated in f64 here
//! (in f32, in another order, by burn). The optimizer that uses it, with burn's composition where
//! the tensors are not f32, is `train::adamw` (a layer above this one).
//!
//! On the cubecl backend (wgpu) the same update is one kernel launch per tensor, two for a large
//! one ([`cube`]); fusion takes it as one opaque operation.

mod cube;

use super::kernels::multiversioned;
use super::{f32s, slice};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Backend, Dispatch, Flex, TensorMetadata};
use burn::tensor::{DType, Tensor};
use rayon::prelude::*;

/// Elements a parallel task gets at least.
const CHUNK: usize = 1 << 14;

/// The scalars of one AdamW step, as burn's `AdamW` uses them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWStep {
    /// The learning rate.
    pub lr: f64,
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub weight_decay: f32,
    /// The step number of this update, from 1 (the bias corrections' exponent).
    pub time: usize,
    /// Scale the gradient down to this L2 norm if its norm is larger.
    pub clip_norm: Option<f32>,
}

#[backend_extension(Flex, Cube, Fusion)]
pub trait AdamWBackend: Backend {
    /// The parameter, first and second moments after one AdamW `step` with gradient `grad`
    /// (the moments before it are `moment_1` and `moment_2`: zeros at the first step).
    #[fusion(meta = |p: &burn::backend::fusion::custom::TensorSpec, _g: &burn::backend::fusion::custom::TensorSpec, _m: &burn::backend::fusion::custom::TensorSpec, _v: &burn::backend::fusion::custom::TensorSpec, _s: &AdamWStep| (p.clone(), p.clone(), p.clone()))]
    fn adamw_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: AdamWStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// `(param, moment_1, moment_2)` after one AdamW `step` (see [`AdamWBackend::adamw_update`]).
/// The tensors must be f32 on the CPU or the wgpu backend without autodiff (what an optimizer is
/// given).
pub fn adamw_update<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    moment_1: Tensor<D>,
    moment_2: Tensor<D>,
    step: AdamWStep,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let (p, m, v) = <Dispatch as AdamWBackend>::adamw_update(
        param.into_dispatch(),
        grad.into_dispatch(),
        moment_1.into_dispatch(),
        moment_2.into_dispatch(),
        step,
    );
    (
        Tensor::from_dispatch(p),
        Tensor::from_dispatch(m),
        Tensor::from_dispatch(v),
    )
}

/// The per-element constants of a step, rounded to f32 where burn rounds them.
#[derive(Clone, Copy)]
struct Coefs {
    /// The clipping factor (1 without clipping: `g · 1 = g`).
    scale: f32,
    beta_1: f32,
    beta_2: f32,
    /// `1 − β₁`, `1 − β₂`.
    factor_1: f32,
    factor_2: f32,
    /// The bias corrections `1 − β₁ᵗ`, `1 − β₂ᵗ`.
    correction_1: f32,
    correction_2: f32,
    epsilon: f32,
    /// `1 − lr · weight decay` (1 without decay: `p · 1 = p`).
    decay: f32,
    lr: f32,
}

impl Coefs {
    fn new(step: &AdamWStep, grad_norm: Option<f32>) -> Self {
        // burn: `threshold / (norm + min_positive)`, clamped to at most 1.
        let scale = match (step.clip_norm, grad_norm) {
            (Some(clip), Some(norm)) => (clip / (norm + f32::MIN_POSITIVE)).min(1.0),
            _ => 1.0,
        };
        let time = step.time as i32;
        let decay_rate = step.lr * step.weight_decay as f64;
        Self {
            scale,
            beta_1: step.beta_1,
            beta_2: step.beta_2,
            factor_1: 1.0 - step.beta_1,
            factor_2: 1.0 - step.beta_2,
            correction_1: 1f32 - step.beta_1.powi(time),
            correction_2: 1f32 - step.beta_2.powi(time),
            epsilon: step.epsilon,
            decay: if decay_rate == 0.0 {
                1.0
            } else {
                (1.0 - decay_rate) as f32
            },
            lr: step.lr as f32,
        }
    }
}

multiversioned!(update, update_generic(
    param: &mut [f32],
    grad: &[f32],
    moment_1: &mut [f32],
    moment_2: &mut [f32],
    k: Coefs,
));

/// The AdamW update of each element, in burn's order of operations.
#[inline(always)]
fn update_generic(
    param: &mut [f32],
    grad: &[f32],
    moment_1: &mut [f32],
    moment_2: &mut [f32],
    k: Coefs,
) {
    for (((p, &g), m), v) in param
        .iter_mut()
        .zip(grad)
        .zip(moment_1.iter_mut())
        .zip(moment_2.iter_mut())
    {
        let g = g * k.scale;
        *m = *m * k.beta_1 + g * k.factor_1;
        *v = *v * k.beta_2 + (g * g) * k.factor_2;
        let delta = (*m / k.correction_1) / ((*v / k.correction_2).sqrt() + k.epsilon);
        *p = *p * k.decay - delta * k.lr;
    }
}

multiversioned!(sum_squares_into, sum_squares_generic(x: &[f32], out: &mut f64));

/// `Σ x²` accumulated in f64 over 8 lanes (so that the loop vectorizes).
#[inline(always)]
fn sum_squares_generic(x: &[f32], out: &mut f64) {
    let mut lanes = [0f64; 8];
    let mut blocks = x.chunks_exact(8);
    for block in &mut blocks {
        for (acc, &v) in lanes.iter_mut().zip(block) {
            *acc += v as f64 * v as f64;
        }
    }
    for (acc, &v) in lanes.iter_mut().zip(blocks.remainder()) {
        *acc += v as f64 * v as f64;
    }
    *out = lanes.iter().sum();
}

/// The L2 norm of `x`, summed per chunk in parallel, the chunks' sums added in order (so the
/// same whatever the number of threads).
fn l2_norm(x: &[f32]) -> f32 {
    let sums: Vec<f64> = x
        .par_chunks(CHUNK)
        .map(|c| {
            let mut s = 0.0;
            sum_squares_into(c, &mut s);
            s
        })
        .collect();
    sums.iter().sum::<f64>().sqrt() as f32
}

/// `t` as a contiguous f32 tensor covering exactly its own buffer (the tensor itself if it is
/// one already), whose storage can be written through (in place when uniquely owned).
fn writable(t: FlexTensor, what: &str) -> FlexTensor {
    assert_eq!(t.dtype(), DType::F32, "{what}: f32 tensors only");
    let n = t.shape().num_elements();
    if t.is_contiguous() && t.layout().start_offset() == 0 && t.bytes().len() == n * 4 {
        t
    } else {
        t.to_contiguous()
    }
}

impl AdamWBackend for Flex {
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
        let grad = f32s(grad, "adamw");
        let g = slice(&grad);
        let norm = step.clip_norm.map(|_| l2_norm(g));
        let k = Coefs::new(&step, norm);
        let (mut param, mut moment_1, mut moment_2) = (
            writable(param, "adamw"),
            writable(moment_1, "adamw"),
            writable(moment_2, "adamw"),
        );
        // Copy-on-write: each buffer is written in place unless it is shared.
        let (p, m, v) = (
            param.storage_mut::<f32>(),
            moment_1.storage_mut::<f32>(),
            moment_2.storage_mut::<f32>(),
        );
        if g.len() <= CHUNK {
            update(p, g, m, v, k);
        } else {
            p.par_chunks_mut(CHUNK)
                .zip(g.par_chunks(CHUNK))
                .zip(m.par_chunks_mut(CHUNK))
                .zip(v.par_chunks_mut(CHUNK))
                .for_each(|(((p, g), m), v)| update(p, g, m, v, k));
        }
        (param, moment_1, moment_2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn t(values: &[f32], device: &Device) -> Tensor<1> {
        Tensor::from_data(TensorData::new(values.to_vec(), [values.len()]), device)
    }

    fn values(t: Tensor<1>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    /// One element's step written out in f64 (the textbook AdamW with per-tensor clipping).
    #[test]
    fn one_step_is_the_textbook_update() {
        let device = Device::flex();
        let (n, clip) = (3 * CHUNK + 5, 1.0f32); // several chunks and a remainder
        let p: Vec<f32> = (0..n).map(|i| ((i % 17) as f32 - 8.0) * 0.1).collect();
        let g: Vec<f32> = (0..n).map(|i| ((i % 11) as f32 - 5.0) * 0.01).collect();
        let m: Vec<f32> = (0..n).map(|i| ((i % 7) as f32 - 3.0) * 0.001).collect();
        let v: Vec<f32> = (0..n).map(|i| (1 + i % 5) as f32 * 1e-5).collect();
        let step = AdamWStep {
            lr: 1e-3,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.01,
            time: 3,
            clip_norm: Some(clip),
        };
        let (p1, m1, v1) = adamw_update(
            t(&p, &device),
            t(&g, &device),
            t(&m, &device),
            t(&v, &device),
            step,
        );
        let (p1, m1, v1) = (values(p1), values(m1), values(v1));
        let norm = g.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
        assert!(norm > clip as f64, "the test must clip: norm {norm}");
        let scale = clip as f64 / norm;
        // The constants as the f32 numbers they are (0.999f32 is 0.99900001…).
        let (b1, b2, eps) = (0.9f32 as f64, 0.999f32 as f64, 1e-8f32 as f64);
        for i in 0..n {
            let g = g[i] as f64 * scale;
            let m = b1 * m[i] as f64 + (1.0 - b1) * g;
            let v = b2 * v[i] as f64 + (1.0 - b2) * g * g;
            let delta = (m / (1.0 - b1.powi(3))) / ((v / (1.0 - b2.powi(3))).sqrt() + eps);
            let p = p[i] as f64 * (1.0 - 1e-3 * 0.01f32 as f64) - 1e-3 * delta;
            assert!(
                (m1[i] as f64 - m).abs() <= 1e-6 * m.abs().max(1e-6),
                "m[{i}]"
            );
            assert!(
                (v1[i] as f64 - v).abs() <= 1e-6 * v.abs().max(1e-9),
                "v[{i}]"
            );
            assert!((p1[i] as f64 - p).abs() <= 1e-6, "p[{i}]: {} vs {p}", p1[i]);
        }
    }

    #[test]
    fn unique_buffers_are_updated_in_place_and_shared_ones_are_not() {
        let device = Device::flex();
        let step = AdamWStep {
            lr: 0.1,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.0,
            time: 1,
            clip_norm: None,
        };
        let param = t(&[1.0, 2.0], &device);
        let kept = param.clone(); // shares the buffer: must not change
        let (p, _, _) = adamw_update(
            param,
            t(&[1.0, -1.0], &device),
            t(&[0.0, 0.0], &device),
            t(&[0.0, 0.0], &device),
            step,
        );
        assert_eq!(values(kept), vec![1.0, 2.0]);
        // The first step moves each element by lr against its gradient's sign.
        let p = values(p);
        assert!(
            (p[0] - 0.9).abs() < 1e-6 && (p[1] - 2.1).abs() < 1e-6,
            "{p:?}"
        );

        let param = FlexTensor::from_data(TensorData::new(vec![1.0f32, 2.0], [2]));
        let address = param.bytes().as_ptr();
        let zeros = || FlexTensor::from_data(TensorData::new(vec![0.0f32; 2], [2]));
        let grad = FlexTensor::from_data(TensorData::new(vec![1.0f32, -1.0], [2]));
        let (p, _, _) = Flex::adamw_update(param, grad, zeros(), zeros(), step);
        assert_eq!(
            p.bytes().as_ptr(),
            address,
            "a unique parameter is updated in place"
        );
    }
}
