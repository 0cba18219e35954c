//! `BertForMaskedLM`: the encoder with HF's `cls.predictions` head. The decoder is tied to the word
//! embeddings (it multiplies by their transpose), as `tie_word_embeddings` does in transformers.

use super::{BertConfig, BertForward, BertModel};
use crate::models::ops::{activation, layer_norm, linear};
use burn::module::{Module, Param};
use burn::nn::activation::Activation;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Device, Int, Tensor};

/// HF `cls.predictions`: transform (dense, activation, LayerNorm), then the tied decoder + bias.
#[derive(Module, Debug)]
pub struct BertMlmHead {
    /// HF: `transform.dense`.
    pub dense: Linear,
    pub activation: Activation,
    /// HF: `transform.LayerNorm`.
    pub layer_norm: LayerNorm,
    /// HF: `cls.predictions.bias` (`decoder.bias`).
    pub bias: Param<Tensor<1>>,
}

impl BertMlmHead {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        Self {
            dense: config.linear(config.hidden_size, config.hidden_size, device),
            activation: config.activation().init(device),
            layer_norm: config.layer_norm(device),
            bias: Param::from_tensor(Tensor::zeros([config.vocab_size], device)),
        }
    }

    /// Vocabulary logits `[batch, time, vocab]` of hidden states `[batch, time, hidden]`.
    pub fn forward(&self, hidden: Tensor<3>, word_embeddings: Tensor<2>) -> Tensor<3> {
        let [b, t, h] = hidden.dims();
        let [v, _] = word_embeddings.dims();
        self.forward_rows(hidden.reshape([b * t, h]), word_embeddings)
            .reshape([b, t, v])
    }

    /// Vocabulary logits `[rows, vocab]` of hidden states `[rows, hidden]` (only the positions
    /// that are predicted, in pre-training).
    pub fn forward_rows(&self, hidden: Tensor<2>, word_embeddings: Tensor<2>) -> Tensor<2> {
        let [v, _] = word_embeddings.dims();
        let x = layer_norm(
            &self.layer_norm,
            activation(&self.activation, linear(&self.dense, hidden)),
        );
        x.matmul(word_embeddings.transpose()) + self.bias.val().reshape([1, v])
    }
}

/// The encoder and its masked-LM head.
#[derive(Module, Debug)]
pub struct BertMaskedLm {
    pub bert: BertModel,
    pub cls: BertMlmHead,
}

impl BertMaskedLm {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        Self {
            bert: config.init_model(device),
            cls: BertMlmHead::new(config, device),
        }
    }

    /// Vocabulary logits and the encoder's outputs.
    pub fn forward_all(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        attention_mask: Tensor<2>,
    ) -> (Tensor<3>, BertForward) {
        let out = self.bert.forward(input_ids, token_type_ids, attention_mask);
        let logits = self.cls.forward(
            out.last_hidden_state.clone(),
            self.bert.embeddings.word_embeddings.weight.val(),
        );
        (logits, out)
    }
}
