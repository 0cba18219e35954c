//! What the cubecl (wgpu) kernels of these operations share: a workgroup's sum and maximum,
//! Philox's numbers, and contiguous f32 inputs and fresh outputs on the inputs' device.

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
    cube_reduce(value, units, false)
}

/// The maximum of `value` over the workgroup's `units` units (as [`cube_sum`]).
#[cube]
pub fn cube_max(value: f32, #[comptime] units: usize) -> f32 {
    cube_reduce(value, units, true)
}

/// A tree in shared memory over the workgroup: the maximum or the sum.
#[cube]
fn cube_reduce(value: f32, #[comptime] units: usize, #[comptime] max: bool) -> f32 {
    let mut tree = Shared::<[f32]>::new_slice(units);
    let unit = UNIT_POS_X as usize;
    tree[unit] = value;
    sync_cube();
    // A runtime value (CUBE_DIM_X is `units`): the loop changes it.
    let mut stride = CUBE_DIM_X as usize / 2;
    while stride > 0 {
        if unit < stride {
            let a = tree[unit];
            let b = tree[unit + stride];
            if comptime![max] {
                tree[unit] = f32::max(a, b);
            } else {
                tree[unit] = a + b;
            }
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

/// Word `index % 4` of Philox4x32-10 block `index / 4` of the stream `(key, id)` — the number
/// [`super::philox::Stream`] gives the CPU operations for element `index` (ids and indices below
/// 2³²).
#[cube]
pub fn philox_word(index: u32, id: u32, key_lo: u32, key_hi: u32) -> u32 {
    let mut c0 = index / 4;
    let mut c1 = 0u32;
    let mut c2 = id;
    let mut c3 = 0u32;
    let mut k0 = key_lo;
    let mut k1 = key_hi;
    for round in 0..10u32 {
        if round > 0 {
            k0 += 0x9E37_79B9u32;
            k1 += 0xBB67_AE85u32;
        }
        let hi0 = u32::mul_hi(0xD251_1F53u32, c0);
        let lo0 = 0xD251_1F53u32 * c0;
        let hi1 = u32::mul_hi(0xCD9E_8D57u32, c2);
        let lo1 = 0xCD9E_8D57u32 * c2;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    let word = index % 4;
    let mut out = c3;
    if word == 0 {
        out = c0;
    } else if word == 1 {
        out = c1;
    } else if word == 2 {
        out = c2;
    }
    out
}
