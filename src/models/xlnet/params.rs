//! The one description of XLNet's module tree. `visit_params` walks every parameter of a model
//! and hands it to a visitor as an [`Entry`]: its Hugging Face name
//! (`transformer.layer.{i}.rel_attn.q`, …), how transformers initialises it, and how it is laid
//! out in a PyTorch state dict. From-scratch initialisation, loading a checkpoint and exporting
//! `model.safetensors` (see `checkpoint.rs`) are all visitors over this walk, so a parameter
//! cannot be loaded under one name and exported under another, or forgotten by one of them.
//!
//! The `skeleton_*` constructors give each parameter its burn shape (lazily: nothing is
//! allocated); the visitor then fills it in.

use super::attention::XlnetRelativeAttention;
use super::heads::{
    XlnetForSequenceClassification, XlnetLmHead, XlnetLmHeadModel, XlnetSequenceSummary,
};
use super::layer::{XlnetFeedForward, XlnetLayer, XlnetModel};
use super::XlnetConfig;
use anyhow::Result;
use burn::module::{Param, ParamId};
use burn::nn::activation::ActivationConfig;
use burn::nn::{DropoutConfig, Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::{Device, Shape, Tensor};

/// How transformers' `_init_weights` draws a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// `N(0, initializer_range²)`: weights, embeddings, `q/k/v/o/r`, the relative biases,
    /// `seg_embed`, `mask_emb`.
    Normal,
    /// Biases.
    Zeros,
    /// LayerNorm weights.
    Ones,
}

/// How the Hugging Face tensor relates to the burn parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Same shape and order.
    AsIs,
    /// A PyTorch `Linear` weight `[out, in]`; burn keeps `[in, out]`.
    Transposed,
}

/// The parameter itself, by rank.
pub enum Slot<'a> {
    D1(&'a mut Param<Tensor<1>>),
    D2(&'a mut Param<Tensor<2>>),
    D3(&'a mut Param<Tensor<3>>),
}

/// One parameter of the tree.
pub struct Entry<'a> {
    /// The Hugging Face state-dict name.
    pub name: String,
    pub init: Init,
    pub layout: Layout,
    pub slot: Slot<'a>,
}

impl Entry<'_> {
    /// The burn shape (without initialising a lazy parameter).
    pub fn shape(&self) -> Vec<usize> {
        match &self.slot {
            Slot::D1(p) => p.lazy_shape().to_vec(),
            Slot::D2(p) => p.lazy_shape().to_vec(),
            Slot::D3(p) => p.lazy_shape().to_vec(),
        }
    }

    /// The shape of the tensor in a Hugging Face checkpoint.
    pub fn hf_shape(&self) -> Vec<usize> {
        let mut s = self.shape();
        if self.layout == Layout::Transposed {
            s.reverse();
        }
        s
    }
}

/// What `visit_params` calls for each parameter.
pub type Visitor<'v> = dyn FnMut(Entry<'_>) -> Result<()> + 'v;

fn entry<'a>(name: String, init: Init, layout: Layout, slot: Slot<'a>) -> Entry<'a> {
    Entry {
        name,
        init,
        layout,
        slot,
    }
}

fn visit_linear(f: &mut Visitor, name: &str, l: &mut Linear) -> Result<()> {
    f(entry(
        format!("{name}.weight"),
        Init::Normal,
        Layout::Transposed,
        Slot::D2(&mut l.weight),
    ))?;
    if let Some(b) = &mut l.bias {
        f(entry(
            format!("{name}.bias"),
            Init::Zeros,
            Layout::AsIs,
            Slot::D1(b),
        ))?;
    }
    Ok(())
}

fn visit_layer_norm(f: &mut Visitor, name: &str, ln: &mut LayerNorm) -> Result<()> {
    f(entry(
        format!("{name}.weight"),
        Init::Ones,
        Layout::AsIs,
        Slot::D1(&mut ln.gamma),
    ))?;
    if let Some(b) = &mut ln.beta {
        f(entry(
            format!("{name}.bias"),
            Init::Zeros,
            Layout::AsIs,
            Slot::D1(b),
        ))?;
    }
    Ok(())
}

impl XlnetModel {
    /// Every parameter of the body, named as in `XLNetModel` under `prefix` (`transformer.` in
    /// the task models).
    pub fn visit_params(&mut self, prefix: &str, f: &mut Visitor) -> Result<()> {
        let normal = |name: String| (name, Init::Normal, Layout::AsIs);
        let (n, i, l) = normal(format!("{prefix}word_embedding.weight"));
        f(entry(n, i, l, Slot::D2(&mut self.word_embedding.weight)))?;
        let (n, i, l) = normal(format!("{prefix}mask_emb"));
        f(entry(n, i, l, Slot::D3(&mut self.mask_emb)))?;
        for (k, layer) in self.layer.iter_mut().enumerate() {
            let p = format!("{prefix}layer.{k}.");
            let a = &mut layer.rel_attn;
            for (s, param) in [
                ("q", &mut a.q),
                ("k", &mut a.k),
                ("v", &mut a.v),
                ("o", &mut a.o),
                ("r", &mut a.r),
            ] {
                let (n, i, l) = normal(format!("{p}rel_attn.{s}"));
                f(entry(n, i, l, Slot::D3(param)))?;
            }
            for (s, param) in [
                ("r_r_bias", &mut a.r_r_bias),
                ("r_s_bias", &mut a.r_s_bias),
                ("r_w_bias", &mut a.r_w_bias),
            ] {
                let (n, i, l) = normal(format!("{p}rel_attn.{s}"));
                f(entry(n, i, l, Slot::D2(param)))?;
            }
            let (n, i, l) = normal(format!("{p}rel_attn.seg_embed"));
            f(entry(n, i, l, Slot::D3(&mut a.seg_embed)))?;
            visit_layer_norm(f, &format!("{p}rel_attn.layer_norm"), &mut a.layer_norm)?;
            visit_linear(f, &format!("{p}ff.layer_1"), &mut layer.ff.layer_1)?;
            visit_linear(f, &format!("{p}ff.layer_2"), &mut layer.ff.layer_2)?;
            visit_layer_norm(f, &format!("{p}ff.layer_norm"), &mut layer.ff.layer_norm)?;
        }
        Ok(())
    }
}

impl XlnetForSequenceClassification {
    /// `XLNetForSequenceClassification`'s state dict: `transformer.*`,
    /// `sequence_summary.summary.*`, `logits_proj.*`.
    pub fn visit_params(&mut self, f: &mut Visitor) -> Result<()> {
        self.transformer.visit_params("transformer.", f)?;
        if let Some(s) = &mut self.sequence_summary.summary {
            visit_linear(f, "sequence_summary.summary", s)?;
        }
        visit_linear(f, "logits_proj", &mut self.logits_proj)
    }
}

impl XlnetLmHeadModel {
    /// `XLNetLMHeadModel`'s state dict: `transformer.*` and `lm_loss.bias` (`lm_loss.weight` is
    /// `transformer.word_embedding.weight`, tied, and not a parameter of its own).
    pub fn visit_params(&mut self, f: &mut Visitor) -> Result<()> {
        self.transformer.visit_params("transformer.", f)?;
        f(entry(
            "lm_loss.bias".into(),
            Init::Zeros,
            Layout::AsIs,
            Slot::D1(&mut self.lm_loss.bias),
        ))
    }
}

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
    use std::collections::BTreeSet;

    /// Names (unique) and the number of values the description visits.
    fn described(visit: impl FnOnce(&mut Visitor) -> Result<()>) -> (BTreeSet<String>, usize) {
        let mut names = BTreeSet::new();
        let mut values = 0;
        visit(&mut |e: Entry<'_>| {
            values += e.shape().iter().product::<usize>();
            assert!(names.insert(e.name.clone()), "{} twice", e.name);
            Ok(())
        })
        .unwrap();
        (names, values)
    }

    #[test]
    fn the_description_reaches_every_parameter_once() {
        let d = Device::flex();
        let mut c = XlnetConfig::new(30, 8, 3, 2, 16, &["a".into(), "b".into()]);
        for use_proj in [true, false] {
            c.summary_use_proj = use_proj;
            c.ff_activation = if use_proj { "gelu" } else { "relu" }.into();
            let mut m = c.skeleton_classifier(&d);
            let params = m.num_params();
            let (names, values) = described(|f| m.visit_params(f));
            assert_eq!(values, params);
            assert_eq!(names.contains("sequence_summary.summary.weight"), use_proj);
            // 2 body tensors + 17 per layer + the head.
            assert_eq!(names.len(), 2 + 3 * 17 + if use_proj { 4 } else { 2 });
        }
        let mut lm = c.skeleton_lm(&d);
        let params = lm.num_params();
        let (names, values) = described(|f| lm.visit_params(f));
        assert_eq!(values, params);
        assert!(names.contains("lm_loss.bias") && !names.contains("lm_loss.weight"));
        let mut body = c.skeleton_model(&d);
        let params = body.num_params();
        let (names, values) = described(|f| body.visit_params("", f));
        assert_eq!(values, params);
        assert!(names.contains("layer.2.rel_attn.seg_embed"));
    }
}
