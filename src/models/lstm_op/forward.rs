//! The forward recurrence: both directions' steps over parts of the batch as rayon tasks, each
//! step one product with the recurrent weights (and, when projecting, the input weights) and one
//! fused loop over the gates.

use super::kernels::{cell_forward, matmul};
use super::{position, tasks, Dims, Input, Keep, Shared, Task, TaskSaved};
use rayon::prelude::*;

/// The recurrence's output (see [`Keep`]) and, with [`Keep::Saved`], what each task keeps for
/// backward.
pub(super) fn forward(
    dims: Dims,
    input: Input<'_>,
    w: &[f32],
    valid: &[bool],
    keep: Keep,
    threads: usize,
) -> (Vec<f32>, Vec<TaskSaved>) {
    let Dims { b, t, h } = dims;
    let steps = if keep == Keep::Last { 1 } else { t };
    let mut hs = vec![0f32; b * steps * 2 * h];
    let out = Shared(hs.as_mut_ptr());
    let saved: Vec<TaskSaved> = tasks(b, threads)
        .into_par_iter()
        .map(|task| forward_task(dims, task, input, w, valid, out, keep))
        .collect();
    (
        hs,
        if keep == Keep::Saved {
            saved
        } else {
            Vec::new()
        },
    )
}

/// Slots `prev` and `next` (distinct) of a buffer of `len`-element slots.
fn two_slots(buf: &mut [f32], len: usize, prev: usize, next: usize) -> (&[f32], &mut [f32]) {
    if prev < next {
        let (a, b) = buf.split_at_mut(next * len);
        (&a[prev * len..(prev + 1) * len], &mut b[..len])
    } else {
        let (a, b) = buf.split_at_mut(prev * len);
        (&b[..len], &mut a[next * len..(next + 1) * len])
    }
}

/// One task's recurrence: its rows' states written to `out` (`[b, t, 2H]`, or `[b, 1, 2H]` with
/// [`Keep::Last`]); with [`Keep::Saved`], every step's activations and cell states kept (else
/// one or two steps' worth of buffers).
fn forward_task(
    dims: Dims,
    task: Task,
    input: Input<'_>,
    w: &[f32],
    valid: &[bool],
    out: Shared,
    keep: Keep,
) -> TaskSaved {
    let save = keep == Keep::Saved;
    let Dims { t, h, .. } = dims;
    let Task {
        dir,
        rows: (r0, r1),
    } = task;
    let nb = r1 - r0;
    let g4 = 4 * h;
    let w = &w[dir * h * g4..(dir + 1) * h * g4];
    let kept = if save { t } else { 1 };
    let mut acts = vec![0f32; kept * nb * g4];
    let mut tanh_all = vec![0f32; kept * nb * h];
    // One slot more than the kept steps: the state before the first step (zero).
    let mut c_all = vec![0f32; (if save { t } else { 1 } + 1) * nb * h];
    let zeros = vec![0f32; h];
    // Where row k's state after step s is: in `out` at the position read, or (Keep::Last) in
    // two alternating slots of a buffer of this task's.
    let mut local = vec![0f32; if keep == Keep::Last { 2 * nb * h } else { 0 }];
    let (states, row_stride) = match keep {
        Keep::Last => (Shared(local.as_mut_ptr()), h),
        _ => (out, t * 2 * h),
    };
    let at = |k: usize, s: usize| match keep {
        Keep::Last => ((s % 2) * nb + k) * h,
        _ => ((r0 + k) * t + position(dir, s, t)) * 2 * h + dir * h,
    };
    for s in 0..t {
        let pos = position(dir, s, t);
        let slot = if save { s } else { 0 };
        let z = &mut acts[slot * nb * g4..(slot + 1) * nb * g4];
        step_input(input, z, dims, task, pos);
        let prev_pos = (s > 0).then(|| position(dir, s - 1, t));
        if prev_pos.is_some() {
            // z += h_prev · w (h_prev's rows `row_stride` apart).
            unsafe {
                matmul(
                    nb,
                    g4,
                    h,
                    z.as_mut_ptr(),
                    g4,
                    true,
                    states.0.add(at(0, s - 1)) as *const f32,
                    row_stride,
                    1,
                    w.as_ptr(),
                    g4,
                );
            }
        }
        let (c_prev_slot, c_slot) = c_slots(save, s);
        let (c_prev, c_new) = two_slots(&mut c_all, nb * h, c_prev_slot, c_slot);
        let tanh_new = &mut tanh_all[slot * nb * h..(slot + 1) * nb * h];
        for k in 0..nb {
            let row = k * h..(k + 1) * h;
            // SAFETY: row k of this task's direction after step s: this task's alone, and not
            // overlapping the previous step's row read below.
            let h_new = unsafe { states.slice(at(k, s), h) };
            if valid[(r0 + k) * t + pos] {
                cell_forward(
                    &mut z[k * g4..(k + 1) * g4],
                    &c_prev[row.clone()],
                    &mut c_new[row.clone()],
                    &mut tanh_new[row],
                    h_new,
                );
            } else {
                // Padding: the state is kept (and the step's activations are never read).
                c_new[row.clone()].copy_from_slice(&c_prev[row]);
                match prev_pos {
                    // SAFETY: as above, a row this task wrote at the step before.
                    Some(_) => h_new.copy_from_slice(unsafe { states.slice(at(k, s - 1), h) }),
                    None => h_new.copy_from_slice(&zeros),
                }
            }
        }
    }
    if keep == Keep::Last {
        write_final_states(dims, task, &local, out);
    }
    TaskSaved {
        task,
        acts,
        c: c_all,
        tanh_c: tanh_all,
    }
}

/// The slots of `c` holding the cell state before and after step `s`: with `save`, slot s + 1
/// after step s (slot 0: zero); else alternating 0 and 1.
fn c_slots(save: bool, s: usize) -> (usize, usize) {
    if save {
        (s, s + 1)
    } else {
        (s % 2, (s + 1) % 2)
    }
}

/// With [`Keep::Last`]: the task's final states, from the slot of `local` its last step wrote,
/// into its rows and direction of `out` (`[b, 1, 2H]`).
fn write_final_states(dims: Dims, task: Task, local: &[f32], out: Shared) {
    let Dims { t, h, .. } = dims;
    let Task {
        dir,
        rows: (r0, r1),
    } = task;
    let nb = r1 - r0;
    for k in 0..nb {
        // SAFETY: this task's rows and direction of `out`.
        let last = unsafe { out.slice((r0 + k) * 2 * h + dir * h, h) };
        last.copy_from_slice(&local[((t - 1) % 2 * nb + k) * h..][..h]);
    }
}

/// The pre-activations `z` (`[rows, 4H]`) of the task's rows at position `pos` before the
/// recurrent term: its rows and direction of `gates_x`, or the bias plus `x` at `pos` projected
/// by the direction's columns of `w_ih`.
fn step_input(input: Input<'_>, z: &mut [f32], dims: Dims, task: Task, pos: usize) {
    let Dims { t, h, .. } = dims;
    let Task {
        dir,
        rows: (r0, r1),
    } = task;
    let nb = r1 - r0;
    let g4 = 4 * h;
    match input {
        Input::Gates(gx) => {
            for k in 0..nb {
                let src = ((r0 + k) * t + pos) * 8 * h + dir * g4;
                z[k * g4..(k + 1) * g4].copy_from_slice(&gx[src..src + g4]);
            }
        }
        Input::Project { x, d, w_ih, b_ih } => {
            // z = b + x_pos · w_ih (this direction's columns; x's rows t · d apart).
            for k in 0..nb {
                z[k * g4..(k + 1) * g4].copy_from_slice(&b_ih[dir * g4..(dir + 1) * g4]);
            }
            let x_pos = &x[((r0 * t) + pos) * d..];
            unsafe {
                matmul(
                    nb,
                    g4,
                    d,
                    z.as_mut_ptr(),
                    g4,
                    true,
                    x_pos.as_ptr(),
                    t * d,
                    1,
                    w_ih[dir * g4..].as_ptr(),
                    8 * h,
                );
            }
        }
    }
}
