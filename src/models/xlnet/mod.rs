//! XLNet (Yang et al. 2019) as in Hugging Face transformers' `modeling_xlnet.py`: relative
//! multi-head attention with `rel_shift`, the segment term, post-LN layers, the two-stream
//! (content h / query g) attention of permutation-LM pre-training, the "last"-token sequence
//! summary of `XLNetForSequenceClassification` and the tied LM head of `XLNetLMHeadModel`.
//!
//! Tensors are batch-first here (`[batch, time, d_model]`; transformers computes sequence-first
//! and permutes back). Inference without memories (`mems`), `attn_type = "bi"`, `bi_data = false`.
//! The module tree is built once ([`skeleton`]); from-scratch initialisation, loading a checkpoint
//! and exporting `model.safetensors` follow it through `models::hf::tree`, the one mechanism
//! that maps burn modules to Hugging Face names (BERT's too).

mod attention;
mod checkpoint;
mod heads;
mod layer;
mod skeleton;

pub use crate::models::hf::save_folder;
pub use attention::{rel_shift, relative_positional_encoding, XlnetRelativeAttention};
pub use checkpoint::{body_prefix, open_folder, Tensors};
pub use heads::{
    XlnetForSequenceClassification, XlnetLmHead, XlnetLmHeadModel, XlnetSequenceSummary,
};
pub use layer::{
    attention_masks, XlnetFeedForward, XlnetForward, XlnetLayer, XlnetModel, XlnetTwoStream,
};
pub use skeleton::XLNET_NAMES;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The fields of a Hugging Face `XLNetConfig` (`config.json`) that the model reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct XlnetConfig {
    pub vocab_size: usize,
    pub d_model: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub d_head: usize,
    pub d_inner: usize,
    /// `gelu` (exact, erf) or `relu`.
    #[serde(default = "default_act")]
    pub ff_activation: String,
    /// Read for completeness: transformers' modules (and so its checkpoints) carry
    /// `r_w_bias`/`r_r_bias`/`r_s_bias` in every layer either way.
    #[serde(default = "yes")]
    pub untie_r: bool,
    /// Only `"bi"` (bidirectional, as pre-trained XLNets and hfl's Chinese ones).
    #[serde(default = "default_attn_type")]
    pub attn_type: String,
    /// Only `false`.
    #[serde(default)]
    pub bi_data: bool,
    /// Relative distances are clamped to ±`clamp_len` when it is positive.
    #[serde(default = "default_clamp")]
    pub clamp_len: i64,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_dropout")]
    pub dropout: f64,
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    /// `"last"` (XLNet's `<cls>` is the last token) or `"first"`.
    #[serde(default = "default_summary_type")]
    pub summary_type: String,
    #[serde(default = "yes")]
    pub summary_use_proj: bool,
    /// `"tanh"` or none (identity).
    #[serde(default = "default_summary_activation")]
    pub summary_activation: Option<String>,
    #[serde(default = "default_dropout")]
    pub summary_last_dropout: f64,
    /// Class index → name; its size is the number of labels unless `num_labels` says otherwise.
    #[serde(default)]
    pub id2label: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_labels: Option<usize>,
    /// The LM head's weight is the word embedding (only `true` is supported).
    #[serde(default = "yes")]
    pub tie_word_embeddings: bool,
    #[serde(default = "default_pad")]
    pub pad_token_id: usize,
    #[serde(default = "default_model_type")]
    pub model_type: String,
    #[serde(default)]
    pub architectures: Vec<String>,
}

fn default_act() -> String {
    "gelu".into()
}
fn yes() -> bool {
    true
}
fn default_attn_type() -> String {
    "bi".into()
}
fn default_clamp() -> i64 {
    -1
}
fn default_eps() -> f64 {
    1e-12
}
fn default_dropout() -> f64 {
    0.1
}
fn default_init_range() -> f64 {
    0.02
}
fn default_summary_type() -> String {
    "last".into()
}
fn default_summary_activation() -> Option<String> {
    Some("tanh".into())
}
fn default_pad() -> usize {
    5
}
fn default_model_type() -> String {
    "xlnet".into()
}

impl XlnetConfig {
    /// An XLNet of the given sizes (`d_head = d_model / n_head`) for `labels` classes, with
    /// transformers' defaults otherwise.
    pub fn new(
        vocab_size: usize,
        d_model: usize,
        n_layer: usize,
        n_head: usize,
        d_inner: usize,
        labels: &[String],
    ) -> Self {
        Self {
            vocab_size,
            d_model,
            n_layer,
            n_head,
            d_head: d_model / n_head.max(1),
            d_inner,
            ff_activation: default_act(),
            untie_r: true,
            attn_type: default_attn_type(),
            bi_data: false,
            clamp_len: -1,
            layer_norm_eps: default_eps(),
            dropout: default_dropout(),
            initializer_range: default_init_range(),
            summary_type: default_summary_type(),
            summary_use_proj: true,
            summary_activation: default_summary_activation(),
            summary_last_dropout: default_dropout(),
            id2label: labels
                .iter()
                .enumerate()
                .map(|(i, l)| (i.to_string(), l.clone()))
                .collect(),
            num_labels: None,
            tie_word_embeddings: true,
            pad_token_id: default_pad(),
            model_type: default_model_type(),
            architectures: vec!["XLNetForSequenceClassification".into()],
        }
    }

    /// Read and check `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let config: Self = serde_json::from_str(&text)
            .map_err(|e| anyhow!("{}: not an XLNet config: {e}", path.display()))?;
        config
            .check()
            .with_context(|| format!("{}", path.display()))?;
        Ok(config)
    }

    pub fn num_labels(&self) -> usize {
        self.num_labels.unwrap_or(self.id2label.len())
    }

    /// Refuse what this port does not implement, rather than compute something else.
    pub fn check(&self) -> Result<()> {
        if self.model_type != "xlnet" {
            bail!(
                "model_type is {:?}; an XLNet config has \"xlnet\"",
                self.model_type
            );
        }
        if self.attn_type != "bi" {
            bail!(
                "attn_type {:?} is not supported (only \"bi\")",
                self.attn_type
            );
        }
        if self.bi_data {
            bail!("bi_data = true is not supported");
        }
        if !matches!(self.ff_activation.as_str(), "gelu" | "relu") {
            bail!(
                "ff_activation {:?} is not supported (gelu or relu)",
                self.ff_activation
            );
        }
        if !matches!(self.summary_type.as_str(), "last" | "first") {
            bail!(
                "summary_type {:?} is not supported (last or first)",
                self.summary_type
            );
        }
        if !matches!(self.summary_activation.as_deref(), None | Some("tanh")) {
            bail!(
                "summary_activation {:?} is not supported (tanh or none)",
                self.summary_activation
            );
        }
        if !self.tie_word_embeddings {
            bail!("tie_word_embeddings = false is not supported");
        }
        if !self.d_model.is_multiple_of(2) || self.n_head == 0 || self.d_head == 0 {
            bail!(
                "d_model must be even and n_head, d_head positive (d_model {}, n_head {}, d_head {})",
                self.d_model,
                self.n_head,
                self.d_head
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hfl_config_reads_with_defaults() {
        let c: XlnetConfig = serde_json::from_str(
            r#"{"vocab_size": 32000, "d_model": 768, "n_layer": 12, "n_head": 12, "d_head": 64,
                "d_inner": 3072, "ff_activation": "relu", "untie_r": true, "attn_type": "bi",
                "bi_data": false, "clamp_len": -1, "mem_len": null, "model_type": "xlnet",
                "layer_norm_eps": 1e-12, "summary_type": "last", "summary_use_proj": true,
                "summary_activation": "tanh"}"#,
        )
        .unwrap();
        c.check().unwrap();
        assert_eq!(c.num_labels(), 0);
        assert_eq!(c.dropout, 0.1);
        let back: XlnetConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let mut uni = c.clone();
        uni.attn_type = "uni".into();
        assert!(uni.check().unwrap_err().to_string().contains("attn_type"));
    }
}
