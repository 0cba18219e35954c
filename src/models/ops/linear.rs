//! A linear layer over the last dimension as one `[rows, in] × [in, out]` product with its bias.
//!
//! burn's `Linear::forward` keeps the leading dimensions of a `[batch, time, in]` input whenever
//! its transform policy judges the batched product to tile well, and then runs a batched product
//! that packs the shared weight again for every sequence (flex: 27 % of a BERT-small training
//! step was that packing); the bias is a broadcast addition of its own, single-threaded, and its
//! gradient a reduction of its own. On the CPU backend this module's operation folds the leading
//! dimensions into the rows and splits the rows over the threads: each part of the output starts
//! as the bias and takes its product in place (`gemm`, accumulating); the backward pass splits the
//! input's gradient by rows, the weight's by its rows (the input's columns), and sums the bias's
//! gradient by columns, all on rayon's pool.

use super::kernels::{gemm, Mat};
use super::{f32s, on_flex, slice, tensor, Shared};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, Flex};
use burn::nn::Linear;
use burn::tensor::{Shape, Tensor};
use rayon::prelude::*;

/// A part of the rows gets at least this many.
const MIN_ROWS: usize = 16;

#[backend_extension(Flex, Autodiff)]
pub trait LinearBackend: Backend {
    /// `x` `[rows, in]` · `w` `[in, out]` + `b` `[out]`.
    fn fused_linear(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// `layer` applied to `x` `[…, in]`: with the leading dimensions folded into the rows, on the CPU
/// backend this module's operation, elsewhere burn's `Linear::forward` on the folded input.
pub fn linear<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    let dims = x.dims();
    let rows = dims[..D - 1].iter().product::<usize>();
    let x2 = x.reshape([rows, dims[D - 1]]);
    let y = match &layer.bias {
        Some(bias) if on_flex(&x2.device()) => {
            Tensor::<2>::from_dispatch(<Dispatch as LinearBackend>::fused_linear(
                x2.into_dispatch(),
                layer.weight.val().into_dispatch(),
                bias.val().into_dispatch(),
            ))
        }
        _ => layer.forward(x2),
    };
    let mut out = dims;
    out[D - 1] = y.dims()[1];
    y.reshape(out)
}

/// The row ranges the tasks take.
fn parts(rows: usize) -> Vec<(usize, usize)> {
    let n = rayon::current_num_threads().min(rows / MIN_ROWS).max(1);
    (0..n)
        .map(|p| (p * rows / n, (p + 1) * rows / n))
        .filter(|(a, b)| b > a)
        .collect()
}

fn forward(x: &[f32], w: &[f32], b: &[f32], rows: usize, d_in: usize, d_out: usize) -> Vec<f32> {
    let mut y = vec![0.0f32; rows * d_out];
    for row in y.chunks_mut(d_out) {
        row.copy_from_slice(b);
    }
    let dst = Shared(y.as_mut_ptr());
    parts(rows).into_par_iter().for_each(|(r0, r1)| {
        // SAFETY: rows r0..r1 of y and x are within the buffers and this task's own.
        unsafe {
            gemm(
                r1 - r0,
                d_out,
                d_in,
                Mat::rows(dst.ptr().add(r0 * d_out), d_out),
                true,
                Mat::rows(x[r0 * d_in..].as_ptr(), d_in),
                Mat::rows(w.as_ptr(), d_out),
                1.0,
            )
        }
    });
    y
}

/// `dy · wᵀ`: the input's gradient `[rows, in]`.
fn grad_x(dy: &[f32], w: &[f32], rows: usize, d_in: usize, d_out: usize) -> Vec<f32> {
    let mut dx = vec![0.0f32; rows * d_in];
    let dst = Shared(dx.as_mut_ptr());
    parts(rows).into_par_iter().for_each(|(r0, r1)| {
        // SAFETY: rows r0..r1 of dx and dy are within the buffers and this task's own.
        unsafe {
            gemm(
                r1 - r0,
                d_in,
                d_out,
                Mat::rows(dst.ptr().add(r0 * d_in), d_in),
                false,
                Mat::rows(dy[r0 * d_out..].as_ptr(), d_out),
                Mat::transposed(w.as_ptr(), d_out),
                1.0,
            )
        }
    });
    dx
}

/// `xᵀ · dy`: the weight's gradient `[in, out]`, split by the input's columns.
fn grad_w(x: &[f32], dy: &[f32], rows: usize, d_in: usize, d_out: usize) -> Vec<f32> {
    let mut dw = vec![0.0f32; d_in * d_out];
    let dst = Shared(dw.as_mut_ptr());
    parts(d_in).into_par_iter().for_each(|(c0, c1)| {
        // SAFETY: rows c0..c1 of dw are this task's own; x and dy are read only.
        unsafe {
            gemm(
                c1 - c0,
                d_out,
                rows,
                Mat::rows(dst.ptr().add(c0 * d_out), d_out),
                false,
                Mat::transposed(x[c0..].as_ptr(), d_in),
                Mat::rows(dy.as_ptr(), d_out),
                1.0,
            )
        }
    });
    dw
}

/// The column sums of `dy`: the bias's gradient `[out]`.
fn grad_b(dy: &[f32], d_out: usize) -> Vec<f32> {
    let rows = dy.len() / d_out;
    let sums = parts(rows)
        .into_par_iter()
        .map(|(r0, r1)| {
            let mut s = vec![0.0f32; d_out];
            for row in dy[r0 * d_out..r1 * d_out].chunks(d_out) {
                for (s, &g) in s.iter_mut().zip(row) {
                    *s += g;
                }
            }
            s
        })
        .collect::<Vec<_>>();
    let mut db = vec![0.0f32; d_out];
    for s in sums {
        for (d, v) in db.iter_mut().zip(s) {
            *d += v;
        }
    }
    db
}

/// Rows, input and output sizes, checked.
fn sizes(x: &FlexTensor, w: &FlexTensor, b: &FlexTensor) -> (usize, usize, usize) {
    let (xs, ws) = (x.layout().shape(), w.layout().shape());
    assert!(
        xs.num_dims() == 2 && ws.num_dims() == 2 && xs[1] == ws[0],
        "linear: x {xs:?} and w {ws:?}"
    );
    assert_eq!(b.layout().shape()[0], ws[1], "linear: one bias an output");
    (xs[0], ws[0], ws[1])
}

impl LinearBackend for Flex {
    fn fused_linear(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (x, w, b) = (f32s(x, "linear"), f32s(w, "linear"), f32s(b, "linear"));
        let (rows, d_in, d_out) = sizes(&x, &w, &b);
        let y = forward(slice(&x), slice(&w), slice(&b), rows, d_in, d_out);
        tensor(y, Shape::from([rows, d_out]))
    }
}

impl<C: CheckpointStrategy> LinearBackend for Autodiff<Flex, C> {
    fn fused_linear(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (x, x_node) = x.into_parts();
        let (w, w_node) = w.into_parts();
        let (b, b_node) = b.into_parts();
        let (x, w, b) = (f32s(x, "linear"), f32s(w, "linear"), f32s(b, "linear"));
        let (rows, d_in, d_out) = sizes(&x, &w, &b);
        let y = tensor(
            forward(slice(&x), slice(&w), slice(&b), rows, d_in, d_out),
            Shape::from([rows, d_out]),
        );
        match LinearBackward
            .prepare::<C>([x_node, w_node, b_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((x, w), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}

#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 3> for LinearBackward {
    /// The input and the weight.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let dy = f32s(grads.consume::<Flex>(&ops.node), "linear");
        let (x, w) = &ops.state;
        let (rows, d_in) = (x.layout().shape()[0], x.layout().shape()[1]);
        let d_out = w.layout().shape()[1];
        let dy = slice(&dy);
        if let Some(node) = node_x {
            let dx = grad_x(dy, slice(w), rows, d_in, d_out);
            grads.register::<Flex>(node.id, tensor(dx, Shape::from([rows, d_in])));
        }
        if let Some(node) = node_w {
            let dw = grad_w(slice(x), dy, rows, d_in, d_out);
            grads.register::<Flex>(node.id, tensor(dw, Shape::from([d_in, d_out])));
        }
        if let Some(node) = node_b {
            grads.register::<Flex>(node.id, tensor(grad_b(dy, d_out), Shape::from([d_out])));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::nn::LinearConfig;
    use burn::tensor::{Device, TensorData, Tolerance};

    fn close<const D: usize>(a: Tensor<D>, b: Tensor<D>) {
        a.into_data()
            .assert_approx_eq::<f32>(&b.into_data(), Tolerance::absolute(1e-5));
    }

    /// Outputs and every gradient equal burn's `Linear::forward`, for a shape that splits the rows
    /// over the threads and one that does not; with the layer frozen, the input's gradient only.
    #[test]
    fn equals_burns_linear_with_its_gradients() {
        let device = Device::flex().autodiff();
        for (b, t, d_in, d_out) in [(4, 3, 6, 5), (5, 31, 17, 23)] {
            let layer = LinearConfig::new(d_in, d_out).init(&device);
            let n = b * t * d_in;
            let values: Vec<f32> = (0..n).map(|i| ((i * 37 % 19) as f32 - 9.0) / 7.0).collect();
            let x = || {
                Tensor::<3>::from_data(TensorData::new(values.clone(), [b, t, d_in]), &device)
                    .require_grad()
            };
            let w: Vec<f32> = (0..b * t * d_out).map(|i| (i % 5) as f32 - 2.0).collect();
            let w = Tensor::<3>::from_data(TensorData::new(w, [b, t, d_out]), &device);
            let (xa, xb) = (x(), x());
            let ya = linear(&layer, xa.clone());
            let yb = layer.forward(xb.clone());
            close(ya.clone(), yb.clone());
            let (ga, gb) = (
                (ya * w.clone()).sum().backward(),
                (yb * w.clone()).sum().backward(),
            );
            close(xa.grad(&ga).unwrap(), xb.grad(&gb).unwrap());
            close(
                layer.weight.val().grad(&ga).unwrap(),
                layer.weight.val().grad(&gb).unwrap(),
            );
            let bias = layer.bias.as_ref().unwrap().val();
            close(bias.grad(&ga).unwrap(), bias.grad(&gb).unwrap());

            let frozen = layer.clone().no_grad();
            let xc = x();
            let gc = (linear(&frozen, xc.clone()) * w).sum().backward();
            close(xc.grad(&gc).unwrap(), xb.grad(&gb).unwrap());
            assert!(frozen.weight.val().grad(&gc).is_none());
        }
    }

    #[test]
    fn inference_equals_burns_linear() {
        let device = Device::flex();
        let layer = LinearConfig::new(7, 3).init(&device);
        let x = Tensor::<3>::from_data(
            TensorData::new(
                (0..2 * 40 * 7).map(|i| (i % 11) as f32 * 0.1).collect(),
                [2, 40, 7],
            ),
            &device,
        );
        close(linear(&layer, x.clone()), layer.forward(x));
    }
}
