//! The recurrence's fused gate loops (forward and backward), compiled for AVX-512 and AVX2 + FMA
//! and chosen at run time ([`multiversioned`]), over the shared vectorizable `exp`, sigmoid and
//! tanh of [`crate::models::ops::kernels`].

use crate::models::ops::kernels::multiversioned;
use crate::models::ops::kernels::{sigmoid, tanh};

pub(super) use crate::models::ops::kernels::matmul;

// One row's step: `z` (pre-activations i, f, g, o, `4H`) becomes the activations; the new cell
// state, its tanh and the new hidden state are written.
multiversioned!(pub(super) cell_forward, cell_forward_generic(
    z: &mut [f32],
    c_prev: &[f32],
    c: &mut [f32],
    tanh_c: &mut [f32],
    h: &mut [f32],
));

#[inline(always)]
fn cell_forward_generic(
    z: &mut [f32],
    c_prev: &[f32],
    c: &mut [f32],
    tanh_c: &mut [f32],
    h: &mut [f32],
) {
    let n = h.len();
    let (zi, rest) = z.split_at_mut(n);
    let (zf, rest) = rest.split_at_mut(n);
    let (zg, zo) = rest.split_at_mut(n);
    let zo = &mut zo[..n];
    let (c_prev, c, tanh_c) = (&c_prev[..n], &mut c[..n], &mut tanh_c[..n]);
    for j in 0..n {
        let i = sigmoid(zi[j]);
        let f = sigmoid(zf[j]);
        let g = tanh(zg[j]);
        let o = sigmoid(zo[j]);
        let cj = f * c_prev[j] + i * g;
        let tc = tanh(cj);
        zi[j] = i;
        zf[j] = f;
        zg[j] = g;
        zo[j] = o;
        c[j] = cj;
        tanh_c[j] = tc;
        h[j] = o * tc;
    }
}

// One row's step backward: from the gradients of the state after the step (`dh`, `dc`), the
// pre-activations' gradient `dz` (`4H`); `dc` becomes the gradient of the cell state before the
// step and `dh` zero (the hidden state before the step reaches the output only through `dz`).
multiversioned!(pub(super) cell_backward, cell_backward_generic(
    acts: &[f32],
    c_prev: &[f32],
    tanh_c: &[f32],
    dh: &mut [f32],
    dc: &mut [f32],
    dz: &mut [f32],
));

#[inline(always)]
fn cell_backward_generic(
    acts: &[f32],
    c_prev: &[f32],
    tanh_c: &[f32],
    dh: &mut [f32],
    dc: &mut [f32],
    dz: &mut [f32],
) {
    let n = dh.len();
    let (ai, rest) = acts.split_at(n);
    let (af, rest) = rest.split_at(n);
    let (ag, ao) = rest.split_at(n);
    let ao = &ao[..n];
    let (zi, rest) = dz.split_at_mut(n);
    let (zf, rest) = rest.split_at_mut(n);
    let (zg, zo) = rest.split_at_mut(n);
    let zo = &mut zo[..n];
    let (c_prev, tanh_c, dc) = (&c_prev[..n], &tanh_c[..n], &mut dc[..n]);
    for j in 0..n {
        let (i, f, g, o) = (ai[j], af[j], ag[j], ao[j]);
        let tc = tanh_c[j];
        let d_h = dh[j];
        let d_c = dc[j] + d_h * o * (1.0 - tc * tc);
        zi[j] = d_c * g * i * (1.0 - i);
        zf[j] = d_c * c_prev[j] * f * (1.0 - f);
        zg[j] = d_c * i * (1.0 - g * g);
        zo[j] = d_h * tc * o * (1.0 - o);
        dc[j] = d_c * f;
        dh[j] = 0.0;
    }
}
