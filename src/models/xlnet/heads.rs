//! Heads on the XLNet body: `XLNetForSequenceClassification` (sequence summary then
//! `logits_proj`) and `XLNetLMHeadModel` (logits over the vocabulary through the tied word
//! embedding plus the head's own bias).

use super::layer::{XlnetForward, XlnetModel, XlnetTwoStream};
use crate::models::ops::dropout;
use burn::module::{Module, Param};
use burn::nn::{Dropout, Linear};
use burn::tensor::activation::tanh;
use burn::tensor::{Int, Tensor};

/// transformers' `XLNetSequenceSummary`: one position (`last`, or `first`), an optional
/// projection `summary` (d_model → d_model), optional tanh, dropout. With "last", inputs must be
/// padded on the left (as XLNetTokenizer does), or a right-padded row is read at its padding.
#[derive(Module, Debug)]
pub struct XlnetSequenceSummary {
    pub summary: Option<Linear>,
    /// Take the last position (`summary_type = "last"`) rather than the first.
    pub last: bool,
    pub tanh: bool,
    pub last_dropout: Dropout,
}

impl XlnetSequenceSummary {
    /// `[B, T, d_model]` → `[B, d_model]`.
    pub fn forward(&self, hidden: Tensor<3>) -> Tensor<2> {
        let [b, t, d] = hidden.dims();
        let at = if self.last { t - 1 } else { 0 };
        let mut x = hidden.slice([0..b, at..at + 1, 0..d]).reshape([b, d]);
        if let Some(proj) = &self.summary {
            x = proj.forward(x);
        }
        if self.tanh {
            x = tanh(x);
        }
        dropout(&self.last_dropout, x)
    }
}

/// `XLNetForSequenceClassification`.
#[derive(Module, Debug)]
pub struct XlnetForSequenceClassification {
    pub transformer: XlnetModel,
    pub sequence_summary: XlnetSequenceSummary,
    pub logits_proj: Linear,
}

impl XlnetForSequenceClassification {
    /// Logits `[B, labels]` and the body's outputs.
    pub fn forward_all(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        attention_mask: Tensor<2>,
    ) -> (Tensor<2>, XlnetForward) {
        let out = self
            .transformer
            .forward(input_ids, token_type_ids, attention_mask);
        let logits = self
            .logits_proj
            .forward(self.sequence_summary.forward(out.last_hidden_state.clone()));
        (logits, out)
    }

    /// Logits `[B, labels]`.
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        attention_mask: Tensor<2>,
    ) -> Tensor<2> {
        self.forward_all(input_ids, token_type_ids, attention_mask)
            .0
    }
}

/// `lm_loss` of `XLNetLMHeadModel`: its weight is the word embedding (tied), its bias its own.
#[derive(Module, Debug)]
pub struct XlnetLmHead {
    /// `[vocab]`: `lm_loss.bias`.
    pub bias: Param<Tensor<1>>,
}

impl XlnetLmHead {
    /// `hidden` `[B, T, d_model]` → logits `[B, T, vocab]` with `word_embedding` `[vocab,
    /// d_model]`.
    pub fn forward(&self, hidden: Tensor<3>, word_embedding: Tensor<2>) -> Tensor<3> {
        let [b, t, d] = hidden.dims();
        let [v, _] = word_embedding.dims();
        (hidden
            .reshape([b * t, d])
            .matmul(word_embedding.transpose())
            + self.bias.val().unsqueeze::<2>())
        .reshape([b, t, v])
    }
}

/// `XLNetLMHeadModel`.
#[derive(Module, Debug)]
pub struct XlnetLmHeadModel {
    pub transformer: XlnetModel,
    pub lm_loss: XlnetLmHead,
}

impl XlnetLmHeadModel {
    /// Logits `[B, T, vocab]` over the content stream, and the body's outputs.
    pub fn forward_all(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        attention_mask: Tensor<2>,
    ) -> (Tensor<3>, XlnetForward) {
        let out = self
            .transformer
            .forward(input_ids, token_type_ids, attention_mask);
        let logits = self.lm_loss.forward(
            out.last_hidden_state.clone(),
            self.transformer.word_embedding.weight.val(),
        );
        (logits, out)
    }

    /// Permutation-LM logits `[B, M, vocab]` from the query stream at the `M` targets of
    /// `target_mapping` `[B, M, T]` (see [`XlnetModel::forward_two_stream`]), and both streams.
    pub fn forward_plm(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        attention_mask: Tensor<2>,
        perm_mask: Tensor<3>,
        target_mapping: Tensor<3>,
    ) -> (Tensor<3>, XlnetTwoStream) {
        let out = self.transformer.forward_two_stream(
            input_ids,
            token_type_ids,
            attention_mask,
            perm_mask,
            target_mapping,
        );
        let logits = self
            .lm_loss
            .forward(out.g.clone(), self.transformer.word_embedding.weight.val());
        (logits, out)
    }
}

#[cfg(test)]
mod tests {
    use crate::models::xlnet::XlnetConfig;
    use burn::optim::GradientsParams;
    use burn::tensor::{Device, Int, Tensor, TensorData};

    #[test]
    fn both_heads_train_every_parameter_they_use() {
        let d = Device::flex().autodiff();
        d.seed(3);
        let c = XlnetConfig::new(30, 8, 2, 2, 16, &["a".into(), "b".into(), "c".into()]);
        let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![7i64, 9, 4, 3], [1, 4]), &d);
        let types = ids.zeros_like();
        let mask = Tensor::<2>::ones([1, 4], &d);
        let tensors = 2 + 2 * 17;

        let cls = c.init_classifier(&d);
        let logits = cls.forward(ids.clone(), types.clone(), mask.clone());
        assert_eq!(logits.dims(), [1, 3]);
        let grads = GradientsParams::from_grads(logits.sum().backward(), &cls);
        // Everything but mask_emb (the query stream's start).
        assert_eq!(grads.len(), tensors + 4 - 1);

        let lm = c.init_lm(&d);
        let mut perm = vec![0f32; 16];
        for i in 0..4 {
            perm[i * 4 + 2] = 1.0;
        }
        let (logits, _) = lm.forward_plm(
            ids,
            types,
            mask,
            Tensor::from_data(TensorData::new(perm, [1, 4, 4]), &d),
            Tensor::from_data(TensorData::new(vec![0f32, 0., 1., 0.], [1, 1, 4]), &d),
        );
        assert_eq!(logits.dims(), [1, 1, 30]);
        let grads = GradientsParams::from_grads(logits.sum().backward(), &lm);
        assert_eq!(grads.len(), tensors + 1);
    }
}
