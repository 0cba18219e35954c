//! The backward pass (backpropagation through time): per task and step, the gates'
//! pre-activation gradients and one product with the recurrent weights' transpose; the recurrent
//! weights' gradient is one product over all steps at the end.

use super::kernels::{cell_backward, matmul};
use super::{position, Dims, Shared, Task, TaskSaved};
use rayon::prelude::*;

/// The gradients of `gates_x` `[b, t, 8H]` and `w_hh` `[2, H, 4H]` given the output `hs`
/// `[b, t, 2H]` and its gradient `grad`.
pub(super) fn backward(
    dims: Dims,
    tasks: &[TaskSaved],
    valid: &[bool],
    w: &[f32],
    hs: &[f32],
    grad: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let Dims { b, t, h } = dims;
    let g4 = 4 * h;
    // Padded positions' rows stay zero.
    let mut dgx = vec![0f32; b * t * 8 * h];
    let out = Shared(dgx.as_mut_ptr());
    // Each direction's wᵀ `[4H, H]`, row-major: a product with it then reads rows, which the
    // gemm crate takes without repacking the weights at every step.
    let mut w_t = vec![0f32; 2 * g4 * h];
    for dir in 0..2 {
        for j in 0..h {
            for q in 0..g4 {
                w_t[(dir * g4 + q) * h + j] = w[(dir * h + j) * g4 + q];
            }
        }
    }
    let parts: Vec<Vec<f32>> = tasks
        .par_iter()
        .map(|saved| backward_task(dims, saved, valid, &w_t, hs, grad, out))
        .collect();
    let mut dw = vec![0f32; 2 * h * g4];
    for (saved, part) in tasks.iter().zip(&parts) {
        let dir = saved.task.dir;
        for (acc, v) in dw[dir * h * g4..(dir + 1) * h * g4].iter_mut().zip(part) {
            *acc += v;
        }
    }
    (dgx, dw)
}

/// One task's backward pass: its rows' pre-activation gradients written to `dgx` `[b, t, 8H]`;
/// returns its part of its direction's `w_hh` gradient `[H, 4H]`. `w_t`: both directions' wᵀ,
/// `[2, 4H, H]`.
fn backward_task(
    dims: Dims,
    saved: &TaskSaved,
    valid: &[bool],
    w_t: &[f32],
    hs: &[f32],
    grad: &[f32],
    dgx: Shared,
) -> Vec<f32> {
    let Dims { t, h, .. } = dims;
    let Task {
        dir,
        rows: (r0, r1),
    } = saved.task;
    let nb = r1 - r0;
    let g4 = 4 * h;
    let w_t = &w_t[dir * g4 * h..(dir + 1) * g4 * h];
    // Where row k's gradients at `pos` are in `dgx`.
    let at = |k: usize, pos: usize| ((r0 + k) * t + pos) * 8 * h + dir * g4;
    // The gradients of the state after the step being processed.
    let mut dh = vec![0f32; nb * h];
    let mut dc = vec![0f32; nb * h];
    for s in (0..t).rev() {
        let pos = position(dir, s, t);
        // Slot s of `c` is the state before step s.
        let c_prev = &saved.c[s * nb * h..(s + 1) * nb * h];
        let acts = &saved.acts[s * nb * g4..(s + 1) * nb * g4];
        let tanh_c = &saved.tanh_c[s * nb * h..(s + 1) * nb * h];
        let mut any_valid = false;
        for k in 0..nb {
            let row = k * h..(k + 1) * h;
            let src = ((r0 + k) * t + pos) * 2 * h + dir * h;
            for (d, g) in dh[row.clone()].iter_mut().zip(&grad[src..src + h]) {
                *d += g;
            }
            if valid[(r0 + k) * t + pos] {
                any_valid = true;
                cell_backward(
                    &acts[k * g4..(k + 1) * g4],
                    &c_prev[row.clone()],
                    &tanh_c[row.clone()],
                    &mut dh[row.clone()],
                    &mut dc[row],
                    // SAFETY: this task's row and direction at `pos`, written once.
                    unsafe { dgx.slice(at(k, pos), g4) },
                );
            }
            // On padding the state was kept: its gradient passes to the step before unchanged
            // (and dz stays zero).
        }
        if s > 0 && any_valid {
            // dh_prev += dz · wᵀ (cell_backward zeroed dh on the rows it read); dz read from
            // `dgx`, rows t · 8H apart.
            unsafe {
                matmul(
                    nb,
                    h,
                    g4,
                    dh.as_mut_ptr(),
                    h,
                    true,
                    dgx.0.add(at(0, pos)) as *const f32,
                    t * 8 * h,
                    1,
                    w_t.as_ptr(),
                    h,
                );
            }
        }
    }
    weight_gradient(dims, saved.task, hs, dgx)
}

/// The task's part of its direction's `w_hh` gradient `[H, 4H]`: Σ h_prevᵀ · dz over its rows
/// and positions, dz read from `dgx` (where its backward pass wrote it) and h_prev from `hs`.
fn weight_gradient(dims: Dims, task: Task, hs: &[f32], dgx: Shared) -> Vec<f32> {
    let Dims { t, h, .. } = dims;
    let Task {
        dir,
        rows: (r0, r1),
    } = task;
    let nb = r1 - r0;
    let g4 = 4 * h;
    // Where row k's gradients at `pos` are in `dgx`.
    let at = |k: usize, pos: usize| ((r0 + k) * t + pos) * 8 * h + dir * g4;
    // dw = Σ h_prevᵀ · dz over this task's rows and positions, in `dgx`'s order (row-major
    // (row, position), 8H apart); h_prev gathered in that order, zero before the first step.
    let mut h_prev = vec![0f32; nb * t * h];
    for k in 0..nb {
        for s in 1..t {
            let pos = position(dir, s, t);
            let src = ((r0 + k) * t + position(dir, s - 1, t)) * 2 * h + dir * h;
            let dst = (k * t + pos) * h;
            h_prev[dst..dst + h].copy_from_slice(&hs[src..src + h]);
        }
    }
    let mut dw = vec![0f32; h * g4];
    // SAFETY: the product reads only this task's rows and direction of `dgx` (other tasks may
    // still be writing theirs).
    unsafe {
        matmul(
            h,
            g4,
            nb * t,
            dw.as_mut_ptr(),
            g4,
            false,
            h_prev.as_ptr(),
            1,
            h,
            dgx.0.add(at(0, 0)) as *const f32,
            8 * h,
        );
    }
    dw
}
