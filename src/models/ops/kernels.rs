//! Numeric kernels the CPU operations share: `gemm` products, a macro that compiles a loop for
//! AVX-512 and AVX2 + FMA and picks one at run time, and a vectorizable `exp`, sigmoid and tanh.

/// `dst (+)= lhs · rhs` in f32 through `gemm` (single-threaded: the callers are rayon tasks
/// already): `dst` is `m × n` and `rhs` `k × n`, rows `dst_rs` / `rhs_rs` elements apart with
/// adjacent columns; `lhs` is `m × k` with element (i, p) at `lhs + i·lhs_rs + p·lhs_cs` (so a
/// transposed operand is a swap of its strides). `accumulate`: add to `dst`, else overwrite it.
///
/// # Safety
/// Every pointer must cover the elements its shape and strides address, and `dst` must not
/// overlap `lhs` or `rhs`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: *const f32,
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: *const f32,
    rhs_rs: usize,
) {
    let alpha = if accumulate { 1.0 } else { 0.0 };
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        lhs,
        lhs_cs as isize,
        lhs_rs as isize,
        rhs,
        1,
        rhs_rs as isize,
        alpha,
        1.0f32,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

/// A matrix operand for [`gemm`]: its first element and the strides (in elements) between rows
/// and between columns, so that a transposed operand is a swap of strides.
#[derive(Clone, Copy)]
pub(crate) struct Mat<P> {
    pub ptr: P,
    pub rs: usize,
    pub cs: usize,
}

impl<P> Mat<P> {
    /// Rows `rs` apart, adjacent columns.
    pub fn rows(ptr: P, rs: usize) -> Self {
        Self { ptr, rs, cs: 1 }
    }

    /// The transpose of a matrix with rows `rs` apart and adjacent columns.
    pub fn transposed(ptr: P, rs: usize) -> Self {
        Self { ptr, rs: 1, cs: rs }
    }
}

/// `dst = scale · lhs · rhs` (`accumulate`: `dst += …`), `m × k` by `k × n`, single-threaded
/// (the callers are rayon tasks already).
///
/// # Safety
/// Every operand must cover the elements its shape and strides address, and `dst` must not
/// overlap `lhs` or `rhs`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm(
    m: usize,
    n: usize,
    k: usize,
    dst: Mat<*mut f32>,
    accumulate: bool,
    lhs: Mat<*const f32>,
    rhs: Mat<*const f32>,
    scale: f32,
) {
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.ptr,
            dst.cs as isize,
            dst.rs as isize,
            accumulate,
            lhs.ptr,
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.ptr,
            rhs.cs as isize,
            rhs.rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// `$vis fn $name(args)`: `$generic` compiled for AVX-512 and for AVX2 + FMA besides the
/// baseline, the best one the CPU has chosen at run time (the same loop; the compiler vectorizes
/// it per target).
macro_rules! multiversioned {
    ($vis:vis $name:ident, $generic:ident($($arg:ident: $ty:ty),* $(,)?)) => {
        #[inline]
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) {
                    $generic($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    $generic($($arg),*)
                }
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features the function is compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $generic($($arg),*)
        }
    };
}

pub(crate) use multiversioned;

/// `e^x` to about 2 ulp for |x| < 87 (Cephes' polynomial after a reduction by ln 2), branch-free
/// so that loops over it vectorize; saturates beyond.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    // Round x·log2(e) to the nearest integer with the 1.5·2²³ trick.
    const MAGIC: f32 = 12_582_912.0;
    let shifted = x * LOG2E + MAGIC;
    let n = shifted - MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5; // Cephes: 5.0000001201e-1, which is 0.5 in f32
    let e = p * r * r + r + 1.0;
    // 2ⁿ: the low bits of `shifted` hold n (in [−126, 127]), and the shift drops the rest (an
    // integer operation where `n as i32`, a saturating conversion, would not vectorize).
    let scale = f32::from_bits(shifted.to_bits().wrapping_add(127) << 23);
    e * scale
}

#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// tanh(x) = 2σ(2x) − 1.
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    2.0 / (1.0 + exp(-2.0 * x)) - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_exp_sigmoid_and_tanh_are_accurate() {
        let mut x = -30.0f32;
        while x <= 30.0 {
            let e = exp(x);
            let want = x.exp();
            assert!(
                (e - want).abs() <= 4.0 * f32::EPSILON * want,
                "exp({x}) = {e}, want {want}"
            );
            let s = sigmoid(x);
            let want = 1.0 / (1.0 + (-x as f64).exp());
            assert!((s as f64 - want).abs() <= 2e-7, "σ({x}) = {s}, want {want}");
            let th = tanh(x);
            let want = (x as f64).tanh();
            assert!(
                (th as f64 - want).abs() <= 4e-7,
                "tanh({x}) = {th}, want {want}"
            );
            x += 0.013;
        }
        assert!(sigmoid(-200.0) < 1e-30 && sigmoid(200.0) == 1.0);
        assert_eq!(tanh(100.0), 1.0);
        assert_eq!(tanh(-100.0), -1.0);
    }
}
