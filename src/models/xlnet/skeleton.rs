//! XLNet's module tree, built once: the `skeleton_*` constructors give every parameter its burn
//! shape (lazily: nothing is allocated), and [`XLNET_NAMES`] says how its paths read in
//! transformers' state dicts (`transformer.layer.{i}.rel_attn.q`, …). Filling a skeleton — from
//! scratch as transformers' `_init_weights` does, or from a checkpoint — and exporting it go
//! through `models::hf::tree`, as for BERT (see `checkpoint.rs`). The 3-D `q/k/v/o/r` and the
//! relative biases are plain parameters under their own names, laid out as in PyTorch.

use super::attention::XlnetRelativeAttention;
use super::heads::{
    XlnetForSequenceClassification, XlnetLmHead, XlnetLmHeadModel, XlnetSequenceSummary,
};
use super::layer::{XlnetFeedForward, XlnetLayer, XlnetModel};
use super::XlnetConfig;
use crate::models::hf::tree::HfNames;
use burn::module::{Param, ParamId};
use burn::nn::activation::ActivationConfig;
use burn::nn::{DropoutConfig, Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::{Device, Shape, Tensor};

/// XLNet by Hugging Face name: burn's field names, but for LayerNorm's `gamma`/`beta` (HF
/// `layer_norm.weight`/`.bias`).
pub const XLNET_NAMES: HfNames = HfNames {
    renames: &[
        ("layer_norm.gamma", "layer_norm.weight"),
        ("layer_norm.beta", "layer_norm.bias"),
    ],
    aliases: &[],
};

/// A parameter of `shape` that allocates nothing until it is used or replaced.
fn lazy<const D: usize>(shape: [usize; D], device: &Device) -> Param<Tensor<D>> {
    Param::uninitialized(
        ParamId::new(),
        move |d: &Device, grad: bool| Tensor::<D>::zeros(shape, d).set_require_grad(grad),
        device.clone(),
        true,
        Shape::from(shape),
    )
}

fn linear(d_in: usize, d_out: usize, device: &Device) -> Linear {
    Linear {
        weight: lazy([d_in, d_out], device),
        bias: Some(lazy([d_out], device)),
    }
}

impl XlnetConfig {
    fn layer_norm(&self, device: &Device) -> LayerNorm {
        LayerNormConfig::new(self.d_model)
            .with_epsilon(self.layer_norm_eps)
            .init(device)
    }

    /// The body with every parameter shaped but not yet filled.
    pub(crate) fn skeleton_model(&self, device: &Device) -> XlnetModel {
        let (d, n, h) = (self.d_model, self.n_head, self.d_head);
        let layer = (0..self.n_layer)
            .map(|_| XlnetLayer {
                rel_attn: XlnetRelativeAttention {
                    q: lazy([d, n, h], device),
                    k: lazy([d, n, h], device),
                    v: lazy([d, n, h], device),
                    o: lazy([d, n, h], device),
                    r: lazy([d, n, h], device),
                    r_r_bias: lazy([n, h], device),
                    r_s_bias: lazy([n, h], device),
                    r_w_bias: lazy([n, h], device),
                    seg_embed: lazy([2, n, h], device),
                    layer_norm: self.layer_norm(device),
                    dropout: DropoutConfig::new(self.dropout).init(),
                },
                ff: XlnetFeedForward {
                    layer_1: linear(d, self.d_inner, device),
                    layer_2: linear(self.d_inner, d, device),
                    layer_norm: self.layer_norm(device),
                    activation: match self.ff_activation.as_str() {
                        "relu" => ActivationConfig::Relu,
                        _ => ActivationConfig::Gelu,
                    }
                    .init(device),
                    dropout: DropoutConfig::new(self.dropout).init(),
                },
            })
            .collect();
        XlnetModel {
            word_embedding: Embedding {
                weight: lazy([self.vocab_size, d], device),
            },
            mask_emb: lazy([1, 1, d], device),
            layer,
            dropout: DropoutConfig::new(self.dropout).init(),
            clamp_len: self.clamp_len,
        }
    }

    pub(crate) fn skeleton_classifier(&self, device: &Device) -> XlnetForSequenceClassification {
        let d = self.d_model;
        XlnetForSequenceClassification {
            transformer: self.skeleton_model(device),
            sequence_summary: XlnetSequenceSummary {
                summary: self.summary_use_proj.then(|| linear(d, d, device)),
                last: self.summary_type == "last",
                tanh: self.summary_activation.as_deref() == Some("tanh"),
                last_dropout: DropoutConfig::new(self.summary_last_dropout).init(),
            },
            logits_proj: linear(d, self.num_labels(), device),
        }
    }

    pub(crate) fn skeleton_lm(&self, device: &Device) -> XlnetLmHeadModel {
        XlnetLmHeadModel {
            transformer: self.skeleton_model(device),
            lm_loss: XlnetLmHead {
                bias: lazy([self.vocab_size], device),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;

    /// The Hugging Face names a model exports and the number of values under them.
    fn exported(t: &super::super::Tensors) -> usize {
        t.values().map(|r| r.data.len()).sum()
    }

    #[test]
    fn the_tree_reaches_every_parameter_once_under_its_hugging_face_name() {
        let d = Device::flex();
        let mut c = XlnetConfig::new(30, 8, 3, 2, 16, &["a".into(), "b".into()]);
        for use_proj in [true, false] {
            c.summary_use_proj = use_proj;
            c.ff_activation = if use_proj { "gelu" } else { "relu" }.into();
            let m = c.init_classifier(&d);
            let t = m.hf_tensors().unwrap();
            assert_eq!(exported(&t), m.num_params());
            assert_eq!(t.contains_key("sequence_summary.summary.weight"), use_proj);
            // 2 body tensors + 17 per layer + the head.
            assert_eq!(t.len(), 2 + 3 * 17 + if use_proj { 4 } else { 2 });
            assert!(t.contains_key("transformer.layer.2.rel_attn.layer_norm.weight"));
            assert_eq!(t["logits_proj.weight"].shape, [2, 8]);
        }
        let lm = c.init_lm(&d);
        let t = lm.hf_tensors().unwrap();
        assert_eq!(exported(&t), lm.num_params());
        assert!(t.contains_key("lm_loss.bias") && !t.contains_key("lm_loss.weight"));
        let body = c.init_model(&d);
        let t = body.hf_tensors().unwrap();
        assert_eq!(exported(&t), body.num_params());
        assert_eq!(t["layer.2.rel_attn.seg_embed"].shape, [2, 2, 4]);
    }
}
