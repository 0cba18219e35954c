//! The transformer's and the student's hot paths as CPU operations of their own (burn backend
//! extensions for `Flex` and `Autodiff<Flex>`, each with a handwritten backward pass), as the
//! LSTM recurrence already is ([`super::lstm_op`]): one pass over the data where burn composes
//! several operations, each allocating its output (and autodiff recording each).
//!
//! - [`dropout`]: masks from a counter-based generator ([`philox`]: Philox4x32-10, keyed once per
//!   call from the device's seeded stream), regenerated in the backward pass instead of stored.
//! - [`adamw`]: one AdamW update of one parameter tensor (clipping, moments, decay) in two passes,
//!   for the optimizer [`crate::train::adamw::FusedAdamW`]; no autodiff (an optimizer steps the
//!   inner tensors), and the fallback elsewhere is the optimizer's (burn's AdamW).
//!
//! Every operation is called through a function that checks the device: on flex (with or without
//! autodiff) it runs the operation, elsewhere (wgpu) the composition of burn's tensor operations
//! it replaces, which the tests also compare it against.

pub mod adamw;
pub mod dropout;
pub mod kernels;
pub mod philox;

pub use dropout::dropout;

use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Device, Shape, TensorData};

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
