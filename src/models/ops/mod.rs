//! The transformer's and the student's hot paths as CPU operations of their own (burn backend
//! extensions for `Flex` and `Autodiff<Flex>`, each with a handwritten backward pass; some also as
//! wgpu kernels, below), as the
//! LSTM recurrence already is ([`super::lstm_op`]): one pass over the data where burn composes
//! several operations, each allocating its output (and autodiff recording each).
//!
//! - [`dropout`]: masks from a counter-based generator ([`philox`]: Philox4x32-10, keyed once per
//!   call from the device's seeded stream), regenerated in the backward pass instead of stored.
//! - [`attention`]: multi-head self-attention (scores, mask, softmax, dropout, context), one task
//!   per sequence and head, read from and written to `[batch, time, hidden]` directly.
//! - [`linear`]: a linear layer with the leading dimensions folded into one product's rows, the
//!   bias added by the product itself, the rows split over the threads.
//! - [`layer_norm`]: with autodiff, each row's mean and `1/√(var + ε)` and the output in one pass
//!   (the input and those two numbers a row kept), and `dx`, `dγ`, `dβ` in one more (without
//!   autodiff, burn-flex's own fused kernel).
//! - [`gelu`]: the exact GELU with a branch-free, vectorizable `erf` (burn calls libm's scalar
//!   `erff`); [`activation`] takes it for burn's exact-GELU activation.
//! - [`adamw`]: one AdamW update of one parameter tensor (clipping, moments, decay) in two passes,
//!   for the optimizer `train::adamw::FusedAdamW`; no autodiff (an optimizer steps the
//!   inner tensors), and the fallback for other float types is the optimizer's (burn's AdamW).
//!
//! On wgpu, attention, layer normalization and AdamW are cubecl kernels of their own (the `cube`
//! module of each, sharing [`cube`]'s workgroup sums and Philox): one launch forward, two
//! backward, one per parameter tensor — through the same extensions (`Cube`, `Fusion`, and an
//! autodiff implementation on `Cube`). Dropout, linear layers and GELU are burn's there (its
//! fusion puts their element-wise parts into neighbouring kernels). The tests compare every
//! operation with the composition of burn's tensor operations it replaces, on each backend.

pub mod adamw;
pub mod attention;
pub(crate) mod cube;
pub mod dropout;
pub mod gelu;
pub mod kernels;
pub mod layer_norm;
pub mod linear;
pub mod philox;

pub use attention::attention;
pub use dropout::dropout;
pub use gelu::{activation, gelu};
pub use layer_norm::layer_norm;
pub use linear::linear;

use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Device, Shape, TensorData};

/// A buffer the tasks write in parallel, each to its own part.
#[derive(Clone, Copy)]
pub(crate) struct Shared(pub *mut f32);

// SAFETY: the operations that use it give every task a disjoint part of the buffer, and join
// the tasks before the buffer is read or dropped.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// The buffer (a method, so that a closure captures the whole `Shared`, which is `Send`).
    pub fn ptr(self) -> *mut f32 {
        self.0
    }
}

/// Whether `device` is the CPU backend (burn flex), with or without autodiff.
pub fn on_flex(device: &Device) -> bool {
    device.clone().inner() == Device::flex()
}

/// A contiguous f32 tensor (`what` names the operation in the panic message).
pub(crate) fn f32s(t: FlexTensor, what: &str) -> FlexTensor {
    assert_eq!(t.dtype(), DType::F32, "{what}: f32 tensors only");
    t.to_contiguous()
}

/// The elements of a contiguous f32 tensor.
pub(crate) fn slice(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("a contiguous f32 tensor")
}

/// A flex tensor of `values` in `shape`.
pub(crate) fn tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// Test inputs that do not draw from a device's seeded stream (which other tests seed).
#[cfg(test)]
pub(crate) mod test_values {
    /// `n` standard normal numbers from `seed` (SplitMix64, Box–Muller).
    pub fn normal(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        let mut uniform = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| {
                let (u, v) = (1.0 - uniform(), uniform());
                ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
            })
            .collect()
    }
}
