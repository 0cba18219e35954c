//! Dropout as one CPU operation: a mask from Philox4x32-10 ([`super::philox`]) applied in the same
//! pass that reads the input, and regenerated (never stored) in the backward pass.
//!
//! burn's [`Dropout`] draws a float tensor of Bernoulli samples (one ChaCha draw and one
//! distribution sample per element), then multiplies twice, allocating each result; autodiff keeps
//! the mask. Here one keyed stream covers the call: element `i` is dropped when the `i`-th number
//! of the stream is below `p · 2³²`, so the same elements are dropped in the forward and backward
//! pass, whichever thread computes them. The key is drawn from the device's seeded stream (three
//! uniform draws per call), so `Device::seed` makes runs reproducible as before — with other masks
//! than burn's (a different generator), hence other numbers than before this operation.

use super::kernels::multiversioned;
use super::philox::{Stream, LANES};
use super::{f32s, on_flex, slice, tensor};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, Flex, TensorMetadata};
use burn::nn::Dropout;
use burn::tensor::{Device, Distribution, Tensor};
use rayon::prelude::*;

/// Elements a parallel task gets (a multiple of 4 · [`LANES`]: whole groups of Philox blocks).
const CHUNK: usize = 1 << 15;

#[backend_extension(Flex, Autodiff)]
pub trait DropoutBackend: Backend {
    /// `x` with each element zeroed with probability `p` (the `i`-th number of the stream `key`
    /// below `p · 2³²`) and the others scaled by `1 / (1 − p)`.
    fn philox_dropout(x: FloatTensor<Self>, p: f64, key: u64) -> FloatTensor<Self>;
}

/// `layer` applied to `x`: on the CPU backend in training, this module's operation; elsewhere
/// burn's [`Dropout::forward`] (on wgpu, or nothing outside training, as burn's).
pub fn dropout<const D: usize>(layer: &Dropout, x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if !layer.training.is_enabled() || !device.is_autodiff() || layer.prob == 0.0 {
        return x;
    }
    if !on_flex(&device) {
        return layer.forward(x);
    }
    let key = draw_key(&device);
    Tensor::from_dispatch(<Dispatch as DropoutBackend>::philox_dropout(
        x.into_dispatch(),
        layer.prob,
        key,
    ))
}

/// A 64-bit key from three uniform draws of the device's seeded stream.
pub(super) fn draw_key(device: &Device) -> u64 {
    let u = Tensor::<1>::random(
        [3],
        Distribution::Uniform(0.0, 1.0),
        &device.clone().inner(),
    )
    .into_data()
    .try_to_vec::<f32>()
    .expect("f32 draws");
    let bits = |u: f32| ((u as f64 * 16_777_216.0) as u64).min(0xFF_FFFF);
    bits(u[0]) | bits(u[1]) << 24 | (bits(u[2]) & 0xFFFF) << 48
}

/// `p · 2³²` (at most 2³² − 1): a number below it drops its element.
pub(super) fn threshold(p: f64) -> u32 {
    (p * 4_294_967_296.0).round().min(u32::MAX as f64) as u32
}

/// `out[i] = x[i] · scale` where the stream keeps element `i`, else 0, in parallel chunks.
fn apply(x: &[f32], p: f64, key: u64) -> Vec<f32> {
    let stream = Stream { key, id: 0 };
    let (thr, scale) = (threshold(p), (1.0 / (1.0 - p)) as f32);
    let mut out = vec![0.0f32; x.len()];
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .enumerate()
        .for_each(|(c, (out, x))| masked(x, out, (c * CHUNK / 4) as u64, stream, thr, scale));
    out
}

multiversioned!(pub(super) masked, masked_generic(
    x: &[f32],
    out: &mut [f32],
    first_block: u64,
    stream: Stream,
    thr: u32,
    scale: f32,
));

#[inline(always)]
fn masked_generic(
    x: &[f32],
    out: &mut [f32],
    first_block: u64,
    stream: Stream,
    thr: u32,
    scale: f32,
) {
    const N: usize = 4 * LANES;
    for (g, (out, x)) in out.chunks_mut(N).zip(x.chunks(N)).enumerate() {
        let words = stream.words(first_block + (g * LANES) as u64);
        for ((o, &v), &w) in out.iter_mut().zip(x).zip(&words) {
            *o = if w < thr { 0.0 } else { v * scale };
        }
    }
}

impl DropoutBackend for Flex {
    fn philox_dropout(x: FloatTensor<Self>, p: f64, key: u64) -> FloatTensor<Self> {
        let shape = x.shape();
        let x = f32s(x, "dropout");
        tensor(apply(slice(&x), p, key), shape)
    }
}

impl<C: CheckpointStrategy> DropoutBackend for Autodiff<Flex, C> {
    fn philox_dropout(x: FloatTensor<Self>, p: f64, key: u64) -> FloatTensor<Self> {
        let (x, node) = x.into_parts();
        let out = Flex::philox_dropout(x, p, key);
        match DropoutBackward
            .prepare::<C>([node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((p, key), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}

#[derive(Debug)]
struct DropoutBackward;

impl Backward<Flex, 1> for DropoutBackward {
    /// The probability and the stream's key: the mask is drawn again.
    type State = (f64, u64);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        if let Some(node) = node {
            let (p, key) = ops.state;
            grads.register::<Flex>(node.id, Flex::philox_dropout(grad, p, key));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::nn::DropoutConfig;
    use burn::tensor::TensorData;

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn drops_about_p_scales_the_rest_and_passes_the_same_mask_back() {
        let device = Device::flex().autodiff();
        device.seed(11);
        let layer = DropoutConfig::new(0.25).init();
        let (rows, cols) = (97, 1031); // not a multiple of 4, several chunks
        let x: Vec<f32> = (0..rows * cols).map(|i| 1.0 + (i % 13) as f32).collect();
        let x = Tensor::<2>::from_data(TensorData::new(x.clone(), [rows, cols]), &device)
            .require_grad();
        let y = dropout(&layer, x.clone());
        let out = values(y.clone());
        let xs = values(x.clone());
        let dropped = out.iter().filter(|&&v| v == 0.0).count() as f64 / out.len() as f64;
        assert!((dropped - 0.25).abs() < 0.01, "{dropped}");
        for (o, v) in out.iter().zip(&xs) {
            assert!(*o == 0.0 || (o - v / 0.75).abs() < 1e-5, "{o} from {v}");
        }
        // d(sum(y · w))/dx = w · mask / (1 − p): zero exactly where y is.
        let w: Vec<f32> = (0..rows * cols).map(|i| (i % 7) as f32 - 3.0).collect();
        let wt = Tensor::<2>::from_data(TensorData::new(w.clone(), [rows, cols]), &device);
        let grads = (y * wt).sum().backward();
        let gx = values(x.grad(&grads).unwrap());
        for i in 0..out.len() {
            let want = if out[i] == 0.0 { 0.0 } else { w[i] / 0.75 };
            assert!(
                (gx[i] - want).abs() < 1e-5,
                "element {i}: {} vs {want}",
                gx[i]
            );
        }
    }

    #[test]
    fn the_key_decides_the_mask_and_each_call_draws_a_key() {
        // (The device's seeded stream is shared by the tests running in parallel, so the seed's
        // part is checked by the recipe-level reproducibility tests, each in its own process.)
        let x = vec![1.0f32; 10_000];
        let a = apply(&x, 0.5, 7);
        assert_eq!(a, apply(&x, 0.5, 7));
        assert_ne!(a, apply(&x, 0.5, 8));
        // A prefix of the input gets a prefix of the mask, whatever the chunking.
        assert_eq!(apply(&x[..4099], 0.5, 7), a[..4099]);
        let device = Device::flex().autodiff();
        let layer = DropoutConfig::new(0.5).init();
        let ones = Tensor::<2>::ones([8, 64], &device);
        assert_ne!(
            values(dropout(&layer, ones.clone())),
            values(dropout(&layer, ones))
        );
    }

    #[test]
    fn nothing_is_dropped_outside_training() {
        let layer = DropoutConfig::new(0.5).init();
        let x = Tensor::<2>::ones([4, 4], &Device::flex());
        assert_eq!(values(dropout(&layer, x)), vec![1.0; 16]);
        let x = Tensor::<2>::ones([4, 4], &Device::flex().autodiff());
        let frozen = layer.freeze();
        assert_eq!(values(dropout(&frozen, x)), vec![1.0; 16]);
    }
}
