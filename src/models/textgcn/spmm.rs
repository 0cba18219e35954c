//! The sparse × dense product `Â · X` (`Â` a [`Csr`] constant, `X` `[n, k]` dense), differentiable
//! in `X`: `∂L/∂X = Âᵀ · ∂L/∂Y`.
//!
//! On the CPU backend (burn flex) it is one operation ([`SpmmBackend`], for `Flex` and
//! `Autodiff<Flex>`): each output row is a weighted sum of the rows of `X` its entries name
//! (rows split over rayon's pool), and the backward pass is the same product with the transpose
//! (kept beside `Â`; for TextGCN's symmetric `Â` it equals `Â`). Other backends (wgpu) compose it
//! from tensor operations — gather the rows (`select`), scale them, add them into their output
//! rows (`select_assign` with `Add`) — which autodiff differentiates itself but which holds an
//! `[nnz, k]` intermediate.

use super::graph::Csr;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, Flex};
use burn::tensor::{DType, Device, IndexingUpdateOp, Int, Shape, Tensor, TensorData};
use rayon::prelude::*;
use std::sync::Arc;

/// `Â` and its transpose, shared by the forward and backward passes.
#[derive(Debug)]
pub struct SparseAdj {
    pub a: Csr,
    pub at: Csr,
}

impl SparseAdj {
    pub fn new(a: Csr) -> Arc<Self> {
        let at = a.transpose();
        Arc::new(Self { a, at })
    }
}

#[backend_extension(Flex, Autodiff)]
pub trait SpmmBackend: Backend {
    /// `adj.a · x`, `x` `[n, k]`.
    fn spmm(adj: Arc<SparseAdj>, x: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// `Â · x` on any device: the CPU operation on flex, a composition of tensor operations
/// elsewhere.
pub fn spmm(adj: &Arc<SparseAdj>, x: Tensor<2>) -> Tensor<2> {
    if x.device().clone().inner() == Device::flex() {
        let out = <Dispatch as SpmmBackend>::spmm(adj.clone(), x.into_dispatch());
        Tensor::from_dispatch(out)
    } else {
        spmm_composed(&adj.a, x)
    }
}

/// `a · x` from tensor operations: gather `x`'s rows by column index, scale by the values, add
/// into the output rows by row index.
pub fn spmm_composed(a: &Csr, x: Tensor<2>) -> Tensor<2> {
    let device = x.device();
    let [n, k] = x.dims();
    assert_eq!(n, a.n, "spmm: x has {n} rows, Â is {0} × {0}", a.n);
    let mut rows = Vec::with_capacity(a.nnz());
    for i in 0..a.n {
        rows.extend(std::iter::repeat_n(i as i64, a.indptr[i + 1] - a.indptr[i]));
    }
    let cols: Vec<i64> = a.indices.iter().map(|&c| c as i64).collect();
    let nnz = a.nnz();
    let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [nnz]), &device);
    let cols = Tensor::<1, Int>::from_data(TensorData::new(cols, [nnz]), &device);
    let values = Tensor::<1>::from_data(TensorData::new(a.values.clone(), [nnz]), &device);
    let gathered = x.select(0, cols) * values.unsqueeze_dim::<2>(1);
    Tensor::<2>::zeros([n, k], &device).select_assign(0, rows, gathered, IndexingUpdateOp::Add)
}

/// `a · x` on host memory, `x` row-major `[a.n, k]`.
pub fn spmm_host(a: &Csr, x: &[f32], k: usize) -> Vec<f32> {
    assert_eq!(x.len(), a.n * k, "spmm: x is not [{}, {k}]", a.n);
    let mut out = vec![0f32; a.n * k];
    if k == 0 {
        return out;
    }
    out.par_chunks_mut(k)
        .with_min_len(64)
        .enumerate()
        .for_each(|(i, row)| {
            for p in a.indptr[i]..a.indptr[i + 1] {
                let v = a.values[p];
                let src = &x[a.indices[p] as usize * k..][..k];
                for (o, s) in row.iter_mut().zip(src) {
                    *o += v * s;
                }
            }
        });
    out
}

fn product(a: &Csr, x: FlexTensor) -> FlexTensor {
    assert_eq!(x.dtype(), DType::F32, "spmm: f32 tensors only");
    let shape = x.layout().shape();
    assert_eq!(shape.num_dims(), 2, "spmm: x is [n, k]");
    let (n, k) = (shape[0], shape[1]);
    assert_eq!(n, a.n, "spmm: x has {n} rows, Â is {0} × {0}", a.n);
    let x = x.to_contiguous();
    let values = spmm_host(a, x.as_slice::<f32>().expect("contiguous f32"), k);
    FlexTensor::from_data(TensorData::new(values, Shape::from([n, k])))
}

impl SpmmBackend for Flex {
    fn spmm(adj: Arc<SparseAdj>, x: FloatTensor<Self>) -> FloatTensor<Self> {
        product(&adj.a, x)
    }
}

impl<C: CheckpointStrategy> SpmmBackend for Autodiff<Flex, C> {
    fn spmm(adj: Arc<SparseAdj>, x: FloatTensor<Self>) -> FloatTensor<Self> {
        let (x, node) = x.into_parts();
        let out = product(&adj.a, x);
        match SpmmBackward.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(SpmmState(adj), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}

#[derive(Debug)]
struct SpmmBackward;

#[derive(Debug, Clone)]
struct SpmmState(Arc<SparseAdj>);

impl Backward<Flex, 1> for SpmmBackward {
    type State = SpmmState;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        if let Some(node) = node {
            grads.register::<Flex>(node.id, product(&ops.state.0.at, grad));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    /// A random sparse `n × n` matrix (about a quarter of the entries), not symmetric, and its
    /// dense copy.
    fn random(n: usize, seed: u64) -> (Csr, Vec<f32>) {
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(seed);
        let mut dense = vec![0f32; n * n];
        let mut triplets = Vec::new();
        for i in 0..n {
            for j in 0..n {
                if rng.random::<f32>() < 0.25 {
                    let v = rng.random::<f32>() * 2.0 - 1.0;
                    dense[i * n + j] = v;
                    triplets.push((i as u32, j as u32, v));
                }
            }
        }
        (Csr::from_triplets(n, triplets), dense)
    }

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    fn assert_close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() < 1e-5, "{what}[{i}]: {g} vs {w}");
        }
    }

    /// The sparse product (the flex operation and the composition) against the dense one on a
    /// random 13-node graph: values, and gradients of a loss that weighs every output entry
    /// differently (`sum(Â·X ⊙ G)`, so `∂/∂X = Âᵀ G`), through a second layer as TextGCN has.
    #[test]
    fn sparse_product_matches_dense_values_and_gradients() {
        let (n, k) = (13, 4);
        let (csr, dense) = random(n, 3);
        let adj = SparseAdj::new(csr.clone());
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(4);
        let x: Vec<f32> = (0..n * k).map(|_| rng.random::<f32>() - 0.5).collect();
        let w: Vec<f32> = (0..k * 3).map(|_| rng.random::<f32>() - 0.5).collect();
        let g: Vec<f32> = (0..n * 3).map(|_| rng.random::<f32>() - 0.5).collect();
        let device = Device::flex().autodiff();
        let run = |how: &dyn Fn(Tensor<2>) -> Tensor<2>| {
            let x =
                Tensor::<2>::from_data(TensorData::new(x.clone(), [n, k]), &device).require_grad();
            let w =
                Tensor::<2>::from_data(TensorData::new(w.clone(), [k, 3]), &device).require_grad();
            let g = Tensor::<2>::from_data(TensorData::new(g.clone(), [n, 3]), &device);
            // Two layers: Â · relu(Â · X) · W.
            let y = how(burn::tensor::activation::relu(how(x.clone())).matmul(w.clone()));
            let loss = (y.clone() * g).sum();
            let grads = loss.backward();
            (
                values(y.inner()),
                values(x.grad(&grads).unwrap()),
                values(w.grad(&grads).unwrap()),
            )
        };
        let a_dense = Tensor::<2>::from_data(TensorData::new(dense.clone(), [n, n]), &device);
        let want = run(&|x| a_dense.clone().matmul(x));
        let op = run(&|x| spmm(&adj, x));
        let composed = run(&|x| spmm_composed(&csr, x));
        for (got, name) in [(&op, "flex operation"), (&composed, "composition")] {
            assert_close(&got.0, &want.0, &format!("{name}: values"));
            assert_close(&got.1, &want.1, &format!("{name}: ∂/∂X"));
            assert_close(&got.2, &want.2, &format!("{name}: ∂/∂W"));
        }
        // Without autodiff too.
        let plain = Device::flex();
        let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [n, k]), &plain);
        let a_plain = Tensor::<2>::from_data(TensorData::new(dense, [n, n]), &plain);
        assert_close(
            &values(spmm(&adj, xt.clone())),
            &values(a_plain.matmul(xt)),
            "inference values",
        );
    }
}
