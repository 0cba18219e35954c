//! Loading the BERT modules from a checkpoint's tensors, by Hugging Face names
//! (`transformers/models/bert/modeling_bert.py` state dicts of `BertModel`,
//! `BertForSequenceClassification`, `BertForMaskedLM` and `BertForPreTraining`, with or without
//! the `bert.` prefix). The module tree is the one `BertConfig::init_model` builds; the names
//! follow it through [`ENCODER_NAMES`] and [`MLM_HEAD_NAMES`] (`models::hf::tree`), which export
//! uses too.
//!
//! A missing or mis-shaped tensor is an error naming it. Tensors of heads that the requested model
//! does not have (`cls.*`, a classifier with another label count) are skipped and said once in the
//! returned notes; any other tensor left over is an error.

use super::mlm::{BertMaskedLm, BertMlmHead};
use super::{BertClassifier, BertConfig, BertModel};
use crate::models::hf::tree::{self, HfNames};
use crate::models::hf::Weights;
use anyhow::{bail, Result};
use burn::nn::DropoutConfig;
use burn::tensor::Device;

/// `bert.` (`roberta.`) when the checkpoint nests the encoder (task models), else empty
/// (`BertModel`, `RobertaModel`).
pub fn encoder_prefix(c: &BertConfig, w: &Weights) -> &'static str {
    let prefix = c.family().encoder_prefix();
    if w.names().any(|n| n.starts_with(prefix)) {
        prefix
    } else {
        ""
    }
}

/// BERT's encoder (and `classifier`) by Hugging Face name: burn's field names but for
/// `self_attn` (HF `self`) and LayerNorm's `gamma`/`beta` (HF `LayerNorm.weight`/`.bias`, in
/// older checkpoints `LayerNorm.gamma`/`.beta`).
pub const ENCODER_NAMES: HfNames = HfNames {
    renames: &[
        ("self_attn.", "self."),
        ("layer_norm.gamma", "LayerNorm.weight"),
        ("layer_norm.beta", "LayerNorm.bias"),
    ],
    aliases: &[
        ("LayerNorm.weight", "LayerNorm.gamma"),
        ("LayerNorm.bias", "LayerNorm.beta"),
    ],
};

/// The masked-LM head under `cls.predictions.`: `transform.dense`, `transform.LayerNorm`, and the
/// decoder's `bias` (stored as `bias` or `decoder.bias`).
pub const MLM_HEAD_NAMES: HfNames = HfNames {
    renames: &[
        ("dense.", "transform.dense."),
        ("layer_norm.gamma", "transform.LayerNorm.weight"),
        ("layer_norm.beta", "transform.LayerNorm.bias"),
    ],
    aliases: &[
        ("LayerNorm.weight", "LayerNorm.gamma"),
        ("LayerNorm.bias", "LayerNorm.beta"),
        ("predictions.bias", "predictions.decoder.bias"),
    ],
};

impl BertModel {
    /// The encoder under `prefix`. A missing pooler (masked-LM checkpoints have none) is
    /// initialized anew and noted.
    pub fn load(
        c: &BertConfig,
        w: &Weights,
        prefix: &str,
        device: &Device,
        notes: &mut Vec<String>,
    ) -> Result<Self> {
        let has_pooler = w.contains(&format!("{prefix}pooler.dense.weight"));
        // RoBERTa's classifiers have no pooler: their head says what it reads.
        if !has_pooler && !c.family().is_roberta() {
            notes.push("the checkpoint has no pooler (pooler.dense): initialized anew".into());
        }
        let keep = |path: &str| !has_pooler && path.starts_with("pooler.");
        let skeleton = c.skeleton().init_model(device);
        let mut model = tree::load(skeleton, w, &ENCODER_NAMES, prefix, &keep, device)?;
        if !has_pooler {
            model.pooler.dense = c.linear(c.hidden_size, c.hidden_size, device);
        }
        // A position-id buffer is not a parameter.
        w.skip(&format!("{prefix}embeddings.position_ids"));
        Ok(model)
    }
}

/// Skip every tensor starting with `head` and say so once.
fn skip_head(w: &Weights, head: &str, why: &str, notes: &mut Vec<String>) {
    let names: Vec<String> = w
        .names()
        .filter(|n| n.starts_with(head))
        .map(str::to_string)
        .collect();
    if !names.is_empty() {
        for n in &names {
            w.skip(n);
        }
        notes.push(format!(
            "skipped {} tensor(s) of `{head}*`: {why}",
            names.len()
        ));
    }
}

fn check_unused(w: &Weights) -> Result<()> {
    let unused = w.unused();
    if !unused.is_empty() {
        bail!(
            "{}: {} unexpected tensor(s), not part of a BERT model: {}",
            w.source.display(),
            unused.len(),
            unused.join(", ")
        );
    }
    Ok(())
}

impl BertClassifier {
    /// A sequence classifier with `labels` classes. The checkpoint's `classifier` is kept when it
    /// has that many labels; otherwise a new head is initialized (and noted).
    pub fn load(
        c: &BertConfig,
        w: &Weights,
        labels: usize,
        device: &Device,
    ) -> Result<(Self, Vec<String>)> {
        let mut notes = Vec::new();
        let family = c.family();
        let prefix = encoder_prefix(c, w);
        let mut bert = BertModel::load(c, w, prefix, device, &mut notes)?;
        let (dense, out) = family.head_names();
        if family.is_roberta() {
            // RobertaClassificationHead's dense layer plays the pooler's part; a base
            // checkpoint's own pooler is not read by it (as in transformers).
            bert.pooler.dense = if w.contains(&format!("{dense}weight")) {
                tree::load(
                    c.skeleton().linear(c.hidden_size, c.hidden_size, device),
                    w,
                    &ENCODER_NAMES,
                    dense,
                    &|_| false,
                    device,
                )?
            } else {
                c.linear(c.hidden_size, c.hidden_size, device)
            };
        }
        let classifier = match w.shape(&format!("{out}weight")) {
            Some([n, _]) if *n == labels => tree::load(
                c.skeleton().linear(c.hidden_size, labels, device),
                w,
                &ENCODER_NAMES,
                out,
                &|_| false,
                device,
            )?,
            Some(shape) => {
                let n = shape[0];
                skip_head(
                    w,
                    out,
                    &format!("its {n} labels are not the {labels} classes of the recipe; a new head is initialized"),
                    &mut notes,
                );
                c.linear(c.hidden_size, labels, device)
            }
            None => {
                notes.push(format!(
                    "no classifier in the checkpoint: a new {labels}-class head is initialized"
                ));
                if family.is_roberta() {
                    skip_head(
                        w,
                        &format!("{prefix}pooler."),
                        "RoBERTa's classification head (classifier.dense, classifier.out_proj) \
                         does not read the pooler",
                        &mut notes,
                    );
                }
                c.linear(c.hidden_size, labels, device)
            }
        };
        skip_head(
            w,
            "cls.",
            "pre-training heads are not used by a classifier",
            &mut notes,
        );
        check_unused(w)?;
        Ok((
            Self {
                bert,
                dropout: DropoutConfig::new(c.classifier_dropout()).init(),
                classifier,
            },
            notes,
        ))
    }
}

impl BertMaskedLm {
    /// The encoder and its masked-LM head. A checkpoint without `cls.predictions` gets a new head
    /// (noted); the decoder weight, if stored, is the tied word-embedding matrix.
    pub fn load(c: &BertConfig, w: &Weights, device: &Device) -> Result<(Self, Vec<String>)> {
        if !c.family().has_mlm_head() {
            bail!(
                "further pre-training (masked LM) of a {} checkpoint is not supported: its \
                 lm_head is not read",
                c.model_type
            );
        }
        let mut notes = Vec::new();
        let bert = BertModel::load(c, w, encoder_prefix(c, w), device, &mut notes)?;
        let cls = if w.contains("cls.predictions.transform.dense.weight") {
            let head = tree::load(
                BertMlmHead::new(&c.skeleton(), device),
                w,
                &MLM_HEAD_NAMES,
                "cls.predictions.",
                &|_| false,
                device,
            )?;
            w.skip("cls.predictions.decoder.weight");
            w.skip("cls.predictions.decoder.bias");
            head
        } else {
            notes.push(
                "no masked-LM head (cls.predictions) in the checkpoint: initialized anew".into(),
            );
            BertMlmHead::new(c, device)
        };
        skip_head(
            w,
            "cls.seq_relationship.",
            "the next-sentence head is not used",
            &mut notes,
        );
        skip_head(
            w,
            "classifier.",
            "a classification head is not used by masked-LM pre-training",
            &mut notes,
        );
        check_unused(w)?;
        Ok((Self { bert, cls }, notes))
    }
}
