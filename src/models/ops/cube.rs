//! What the cubecl (wgpu) kernels of these operations share: a workgroup's sum, and contiguous
//! f32 inputs and fresh outputs on the inputs' device.

use burn::tensor::{DType, Shape};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

/// Units of a workgroup where a kernel sums over it (a power of two, for the tree; wgpu's
/// default limit is 256 invocations).
pub const UNITS: usize = 256;

/// The sum of `value` over the workgroup's `units` units (every unit calls it; `units` is
/// `CUBE_DIM_X`, a power of two).
#[cube]
pub fn cube_sum(value: f32, #[comptime] units: usize) -> f32 {
    let mut tree = Shared::<[f32]>::new_slice(units);
    let unit = UNIT_POS_X as usize;
    tree[unit] = value;
    sync_cube();
    // A runtime value (CUBE_DIM_X is `units`): the loop changes it.
    let mut stride = CUBE_DIM_X as usize / 2;
    while stride > 0 {
        if unit < stride {
            let sum = tree[unit] + tree[unit + stride];
            tree[unit] = sum;
        }
        sync_cube();
        stride /= 2;
    }
    let total = tree[0];
    sync_cube();
    total
}

/// `t` as a contiguous f32 tensor (`what` names the operation in the panic message).
pub fn f32_contiguous(t: CubeTensor, what: &str) -> CubeTensor {
    assert_eq!(t.dtype, DType::F32, "{what}: f32 tensors only");
    into_contiguous(t)
}

/// A new f32 tensor of `shape` on `like`'s device (its values unwritten).
pub fn empty(like: &CubeTensor, shape: impl Into<Shape>) -> CubeTensor {
    empty_device_dtype(
        like.client.clone(),
        like.device.clone(),
        shape.into(),
        DType::F32,
    )
}
