//! TextGCN (Yao et al. 2019): a two-layer graph convolutional network over one graph of all the
//! corpus's documents and words ([`graph`]), classifying the document nodes.
//!
//! `logits = Â · (dropout(relu(Â · X · W1)) · W2)` with `X = I` (one-hot node features): the first
//! layer's `Â · I · W1 = Â · W1` is the sparse product with `W1` itself (each output row gathers
//! the rows of `W1` its entries name), so the identity is never built. No biases, as the paper
//! (and Kipf and Welling's GCN) has it; Glorot-uniform weights.

pub mod graph;
pub mod spmm;

use crate::models::ops::dropout;
use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Initializer};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use spmm::{spmm, SparseAdj};
use std::sync::Arc;

pub use graph::{build_graph, Csr, GraphConfig, GraphSize, GraphTokens, TextGraph};

#[derive(Module, Debug)]
pub struct TextGcn {
    /// `[nodes, hidden]`: the first layer's weights (one row per node: the identity features).
    pub w1: Param<Tensor<2>>,
    /// `[hidden, classes]`.
    pub w2: Param<Tensor<2>>,
    pub dropout: Dropout,
}

impl TextGcn {
    pub fn new(nodes: usize, hidden: usize, classes: usize, dropout: f64, device: &Device) -> Self {
        let glorot = Initializer::XavierUniform { gain: 1.0 };
        Self {
            w1: glorot.init_with([nodes, hidden], Some(nodes), Some(hidden), device),
            w2: glorot.init_with([hidden, classes], Some(hidden), Some(classes), device),
            dropout: DropoutConfig::new(dropout).init(),
        }
    }

    /// Logits of every node `[nodes, classes]` (only the document rows mean anything).
    pub fn forward(&self, adj: &Arc<SparseAdj>) -> Tensor<2> {
        let h = relu(spmm(adj, self.w1.val()));
        let h = dropout(&self.dropout, h);
        spmm(adj, h.matmul(self.w2.val()))
    }

    pub fn parameters(&self) -> usize {
        self.num_params()
    }
}
