//! `[textgcn]`: TextGCN (Yao et al. 2019), a two-layer graph convolutional network over one graph
//! of every document (train, validation, test: transductive, only training labels used) and the
//! corpus's words, shown as a row of its own in the report. Off by default.

use super::StudentTokens;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TextGcnSection {
    /// Train TextGCN and show it in the report.
    pub enabled: bool,
    /// Word nodes: jieba-rs words (`"word"`) or characters (`"char"`).
    pub tokens: StudentTokens,
    /// Keep a token found at least this often in the whole corpus.
    pub min_count: usize,
    /// Tokens left out of the graph.
    pub stop_words: Vec<String>,
    /// Sliding window (tokens) of the word–word PMI.
    pub window: usize,
    /// Width of the graph convolution's hidden layer.
    pub hidden: usize,
    /// Dropout probability.
    pub dropout: f64,
    /// Adam's learning rate.
    pub lr: f64,
    /// At most this many epochs (one full-graph step each).
    pub epochs: usize,
    /// Stop after this many epochs without a better validation accuracy or a lower validation
    /// loss (the epoch with the best accuracy is kept).
    pub patience: usize,
    /// L2 penalty on the weights (0: none).
    pub weight_decay: f64,
    /// Also distil the trial's teacher onto TextGCN: a second TextGCN trained on the training
    /// documents against `[distill]`'s loss (soft targets: the teacher's logits of those
    /// documents), its own row in the report.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub distill: bool,
}

impl Default for TextGcnSection {
    fn default() -> Self {
        Self {
            enabled: false,
            tokens: StudentTokens::Word,
            min_count: 2,
            stop_words: Vec::new(),
            window: 20,
            hidden: 200,
            dropout: 0.5,
            lr: 0.02,
            epochs: 200,
            patience: 10,
            weight_decay: 0.0,
            distill: false,
        }
    }
}
