//! BERT (Devlin et al. 2019) as in Hugging Face transformers' `modeling_bert.py`.
//!
//! Module and field names follow the Hugging Face tensor paths (`embeddings.word_embeddings`,
//! `encoder.layer.N.attention.self.query`, …) so checkpoints map onto them one to one; the only
//! renames are Rust's: `self` → `self_attn` and `LayerNorm` → `layer_norm`. Post-LN layers,
//! exact (erf) GELU, additive attention mask, tanh pooler over the first token.

pub mod export;
pub mod family;
pub mod load;
pub mod mlm;

use crate::models::ops::{activation, attention, dropout, layer_norm, linear};
use burn::module::Module;
use burn::nn::activation::{Activation, ActivationConfig};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig,
    Linear, LinearConfig,
};
use burn::tensor::activation::tanh;
use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use family::Family;

/// The fields of a Hugging Face `BertConfig` (`config.json`) that the model reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    #[serde(default)]
    pub classifier_dropout: Option<f64>,
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: usize,
    /// Class index → name; its size is the number of labels.
    #[serde(default)]
    pub id2label: BTreeMap<String, String>,
    #[serde(default = "default_model_type")]
    pub model_type: String,
    #[serde(default)]
    pub architectures: Vec<String>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_dropout() -> f64 {
    0.1
}
fn default_positions() -> usize {
    512
}
fn default_type_vocab() -> usize {
    2
}
fn default_init_range() -> f64 {
    0.02
}
fn default_eps() -> f64 {
    1e-12
}
fn default_model_type() -> String {
    "bert".into()
}

impl BertConfig {
    /// A BERT of the given sizes for `labels` classes.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        vocab_size: usize,
        hidden: usize,
        layers: usize,
        heads: usize,
        intermediate: usize,
        max_positions: usize,
        dropout: f64,
        labels: &[String],
    ) -> Self {
        Self {
            vocab_size,
            hidden_size: hidden,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            intermediate_size: intermediate,
            hidden_act: default_act(),
            hidden_dropout_prob: dropout,
            attention_probs_dropout_prob: dropout,
            classifier_dropout: None,
            max_position_embeddings: max_positions,
            type_vocab_size: 2,
            initializer_range: 0.02,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
            id2label: labels
                .iter()
                .enumerate()
                .map(|(i, l)| (i.to_string(), l.clone()))
                .collect(),
            model_type: default_model_type(),
            architectures: vec!["BertForSequenceClassification".into()],
        }
    }

    pub fn num_labels(&self) -> usize {
        self.id2label.len()
    }

    /// BERT, RoBERTa or XLM-RoBERTa (by `model_type`; a config that names another type is
    /// refused when the checkpoint is opened).
    pub fn family(&self) -> Family {
        Family::of(&self.model_type).unwrap_or(Family::Bert)
    }

    /// The row of the position table the first token reads.
    pub fn position_offset(&self) -> usize {
        self.family().position_offset(self.pad_token_id)
    }

    /// The longest input the position table covers.
    pub fn max_positions(&self) -> usize {
        self.max_position_embeddings
            .saturating_sub(self.position_offset())
    }

    pub(crate) fn classifier_dropout(&self) -> f64 {
        self.classifier_dropout.unwrap_or(self.hidden_dropout_prob)
    }

    pub(crate) fn activation(&self) -> ActivationConfig {
        match self.hidden_act.as_str() {
            "relu" => ActivationConfig::Relu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => ActivationConfig::GeluApproximate,
            _ => ActivationConfig::Gelu,
        }
    }

    /// BERT's initialization, N(0, initializer_range²); zeros (drawing nothing from the seeded
    /// stream) for a [`BertConfig::skeleton`].
    fn initializer(&self) -> Initializer {
        if self.initializer_range == 0.0 {
            Initializer::Zeros
        } else {
            Initializer::Normal {
                mean: 0.0,
                std: self.initializer_range,
            }
        }
    }

    /// This configuration with zero initialization: modules built from it are the tree that a
    /// checkpoint's weights are loaded into, and draw nothing from the device's seeded stream (so a
    /// new head drawn after loading is the same whatever was loaded).
    pub fn skeleton(&self) -> Self {
        Self {
            initializer_range: 0.0,
            ..self.clone()
        }
    }

    pub(crate) fn linear(&self, d_in: usize, d_out: usize, device: &Device) -> Linear {
        LinearConfig::new(d_in, d_out)
            .with_initializer(self.initializer())
            .init(device)
    }

    pub(crate) fn embedding(&self, n: usize, device: &Device) -> Embedding {
        EmbeddingConfig::new(n, self.hidden_size)
            .with_initializer(self.initializer())
            .init(device)
    }

    pub(crate) fn layer_norm(&self, device: &Device) -> LayerNorm {
        LayerNormConfig::new(self.hidden_size)
            .with_epsilon(self.layer_norm_eps)
            .init(device)
    }

    pub fn init_model(&self, device: &Device) -> BertModel {
        BertModel {
            embeddings: BertEmbeddings {
                word_embeddings: self.embedding(self.vocab_size, device),
                position_embeddings: self.embedding(self.max_position_embeddings, device),
                token_type_embeddings: self.embedding(self.type_vocab_size, device),
                layer_norm: self.layer_norm(device),
                dropout: DropoutConfig::new(self.hidden_dropout_prob).init(),
                position_offset: self.position_offset(),
            },
            encoder: BertEncoder {
                layer: (0..self.num_hidden_layers)
                    .map(|_| self.init_layer(device))
                    .collect(),
            },
            pooler: BertPooler {
                dense: self.linear(self.hidden_size, self.hidden_size, device),
                dropout: DropoutConfig::new(if self.family().is_roberta() {
                    self.classifier_dropout()
                } else {
                    0.0
                })
                .init(),
            },
        }
    }

    fn init_layer(&self, device: &Device) -> BertLayer {
        let h = self.hidden_size;
        BertLayer {
            attention: BertAttention {
                self_attn: BertSelfAttention {
                    query: self.linear(h, h, device),
                    key: self.linear(h, h, device),
                    value: self.linear(h, h, device),
                    dropout: DropoutConfig::new(self.attention_probs_dropout_prob).init(),
                    num_heads: self.num_attention_heads,
                },
                output: BertSelfOutput {
                    dense: self.linear(h, h, device),
                    layer_norm: self.layer_norm(device),
                    dropout: DropoutConfig::new(self.hidden_dropout_prob).init(),
                },
            },
            intermediate: BertIntermediate {
                dense: self.linear(h, self.intermediate_size, device),
                activation: self.activation().init(device),
            },
            output: BertOutput {
                dense: self.linear(self.intermediate_size, h, device),
                layer_norm: self.layer_norm(device),
                dropout: DropoutConfig::new(self.hidden_dropout_prob).init(),
            },
        }
    }

    /// `BertForSequenceClassification`: encoder, pooler, dropout, linear head.
    pub fn init_classifier(&self, device: &Device) -> BertClassifier {
        BertClassifier {
            bert: self.init_model(device),
            dropout: DropoutConfig::new(self.classifier_dropout()).init(),
            classifier: self.linear(self.hidden_size, self.num_labels(), device),
        }
    }
}

#[derive(Module, Debug)]
pub struct BertEmbeddings {
    pub word_embeddings: Embedding,
    pub position_embeddings: Embedding,
    pub token_type_embeddings: Embedding,
    /// HF: `LayerNorm`.
    pub layer_norm: LayerNorm,
    pub dropout: Dropout,
    /// 0 in BERT: the tokens read positions `0..time`. RoBERTa's `pad_token_id + 1`: the tokens
    /// read positions from there on and padding tokens row `pad_token_id` ([`Family`]).
    pub position_offset: usize,
}

impl BertEmbeddings {
    /// `[batch, time]` ids → `[batch, time, hidden]`.
    pub fn forward(&self, input_ids: Tensor<2, Int>, token_type_ids: Tensor<2, Int>) -> Tensor<3> {
        let [_, t] = input_ids.dims();
        let device = input_ids.device();
        let positions = if self.position_offset == 0 {
            Tensor::<1, Int>::arange(0..t as i64, &device).unsqueeze::<2>()
        } else {
            // transformers' create_position_ids_from_input_ids: the running count of non-padding
            // tokens, on non-padding tokens only, plus padding_idx.
            let pad = self.position_offset as i64 - 1;
            let tokens = input_ids.clone().not_equal_elem(pad).int();
            tokens.clone().cumsum(1).mul(tokens).add_scalar(pad)
        };
        let x = self.word_embeddings.forward(input_ids)
            + self.token_type_embeddings.forward(token_type_ids)
            + self.position_embeddings.forward(positions);
        dropout(&self.dropout, layer_norm(&self.layer_norm, x))
    }
}

#[derive(Module, Debug)]
pub struct BertSelfAttention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub dropout: Dropout,
    pub num_heads: usize,
}

impl BertSelfAttention {
    /// `x`: `[batch, time, hidden]`; `mask_bias`: `[batch, 1, 1, time]`, 0 on tokens and a large
    /// negative number on padding.
    pub fn forward(&self, x: Tensor<3>, mask_bias: Tensor<4>) -> Tensor<3> {
        attention(
            linear(&self.query, x.clone()),
            linear(&self.key, x.clone()),
            linear(&self.value, x),
            mask_bias,
            self.num_heads,
            &self.dropout,
        )
    }
}

#[derive(Module, Debug)]
pub struct BertSelfOutput {
    pub dense: Linear,
    pub layer_norm: LayerNorm,
    pub dropout: Dropout,
}

impl BertSelfOutput {
    pub fn forward(&self, hidden: Tensor<3>, input: Tensor<3>) -> Tensor<3> {
        layer_norm(
            &self.layer_norm,
            dropout(&self.dropout, linear(&self.dense, hidden)) + input,
        )
    }
}

#[derive(Module, Debug)]
pub struct BertAttention {
    /// HF: `self`.
    pub self_attn: BertSelfAttention,
    pub output: BertSelfOutput,
}

#[derive(Module, Debug)]
pub struct BertIntermediate {
    pub dense: Linear,
    pub activation: Activation,
}

#[derive(Module, Debug)]
pub struct BertOutput {
    pub dense: Linear,
    pub layer_norm: LayerNorm,
    pub dropout: Dropout,
}

#[derive(Module, Debug)]
pub struct BertLayer {
    pub attention: BertAttention,
    pub intermediate: BertIntermediate,
    pub output: BertOutput,
}

impl BertLayer {
    pub fn forward(&self, x: Tensor<3>, mask_bias: Tensor<4>) -> Tensor<3> {
        let attn = self.attention.self_attn.forward(x.clone(), mask_bias);
        let attn = self.attention.output.forward(attn, x);
        let inter = activation(
            &self.intermediate.activation,
            linear(&self.intermediate.dense, attn.clone()),
        );
        layer_norm(
            &self.output.layer_norm,
            dropout(&self.output.dropout, linear(&self.output.dense, inter)) + attn,
        )
    }
}

#[derive(Module, Debug)]
pub struct BertEncoder {
    pub layer: Vec<BertLayer>,
}

#[derive(Module, Debug)]
pub struct BertPooler {
    pub dense: Linear,
    /// RoBERTa's dropout before `classifier.dense`; none (p = 0) in BERT.
    pub dropout: Dropout,
}

impl BertPooler {
    /// tanh(dense(first token)).
    pub fn forward(&self, hidden: Tensor<3>) -> Tensor<2> {
        let [b, _, h] = hidden.dims();
        let first = hidden.slice([0..b, 0..1, 0..h]).reshape([b, h]);
        tanh(linear(&self.dense, dropout(&self.dropout, first)))
    }
}

/// What a forward pass yields: the tensors transformers reports (for conformance) and the pooled
/// first token.
#[derive(Debug, Clone)]
pub struct BertForward {
    /// `hidden_states[0]`: the embeddings after LayerNorm.
    pub embedding_output: Tensor<3>,
    pub last_hidden_state: Tensor<3>,
    pub pooled: Tensor<2>,
}

#[derive(Module, Debug)]
pub struct BertModel {
    pub embeddings: BertEmbeddings,
    pub encoder: BertEncoder,
    pub pooler: BertPooler,
}

/// Additive attention bias from a `[batch, time]` 1/0 mask: `[batch, 1, 1, time]`.
pub fn mask_bias(attention_mask: Tensor<2>) -> Tensor<4> {
    let [b, t] = attention_mask.dims();
    attention_mask
        .neg()
        .add_scalar(1.0)
        .mul_scalar(-1e9)
        .reshape([b, 1, 1, t])
}

impl BertModel {
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        attention_mask: Tensor<2>,
    ) -> BertForward {
        let embedding_output = self.embeddings.forward(input_ids, token_type_ids);
        let bias = mask_bias(attention_mask);
        let mut x = embedding_output.clone();
        for layer in &self.encoder.layer {
            x = layer.forward(x, bias.clone());
        }
        BertForward {
            embedding_output,
            pooled: self.pooler.forward(x.clone()),
            last_hidden_state: x,
        }
    }
}

/// `BertForSequenceClassification`.
#[derive(Module, Debug)]
pub struct BertClassifier {
    pub bert: BertModel,
    pub dropout: Dropout,
    pub classifier: Linear,
}

impl BertClassifier {
    /// Logits `[batch, labels]` and the encoder's outputs.
    pub fn forward_all(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        attention_mask: Tensor<2>,
    ) -> (Tensor<2>, BertForward) {
        let out = self.bert.forward(input_ids, token_type_ids, attention_mask);
        let logits = self
            .classifier
            .forward(dropout(&self.dropout, out.pooled.clone()));
        (logits, out)
    }

    /// Logits of a batch whose segment ids are all 0 (single sentences).
    pub fn forward(&self, input_ids: Tensor<2, Int>, attention_mask: Tensor<2>) -> Tensor<2> {
        let token_type_ids = input_ids.zeros_like();
        self.forward_all(input_ids, token_type_ids, attention_mask)
            .0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn padding_does_not_change_the_logits() {
        let d = Device::flex();
        d.seed(5);
        let config = BertConfig::new(
            30,
            16,
            2,
            4,
            32,
            16,
            0.0,
            &["a".into(), "b".into(), "c".into()],
        );
        let model = config.init_classifier(&d);
        let run = |ids: Vec<i64>, mask: Vec<f32>| -> Vec<f32> {
            let t = ids.len();
            let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, t]), &d);
            let mask = Tensor::<2>::from_data(TensorData::new(mask, [1, t]), &d);
            model
                .forward(ids, mask)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        let short = run(vec![2, 9, 14, 3], vec![1.0; 4]);
        let padded = run(vec![2, 9, 14, 3, 0, 0], vec![1., 1., 1., 1., 0., 0.]);
        for (a, b) in short.iter().zip(&padded) {
            assert!((a - b).abs() < 1e-5, "{short:?} vs {padded:?}");
        }
        assert_eq!(short.len(), 3);
    }
}
