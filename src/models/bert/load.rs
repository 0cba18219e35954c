//! Building the BERT modules from a checkpoint's tensors, by Hugging Face names
//! (`transformers/models/bert/modeling_bert.py` state dicts of `BertModel`,
//! `BertForSequenceClassification`, `BertForMaskedLM` and `BertForPreTraining`, with or without
//! the `bert.` prefix). PyTorch `Linear` weights are `[out, in]` and are transposed to burn's
//! `[in, out]`; LayerNorm `weight`/`bias` (or the legacy `gamma`/`beta`) become `gamma`/`beta`.
//!
//! A missing or mis-shaped tensor is an error naming it. Tensors of heads that the requested model
//! does not have (`cls.*`, a classifier with another label count) are skipped and said once in the
//! returned notes; any other tensor left over is an error.

use super::mlm::{BertMaskedLm, BertMlmHead};
use super::{
    BertAttention, BertClassifier, BertConfig, BertEmbeddings, BertEncoder, BertIntermediate,
    BertLayer, BertModel, BertOutput, BertPooler, BertSelfAttention, BertSelfOutput,
};
use crate::models::hf::Weights;
use anyhow::{bail, Result};
use burn::module::Param;
use burn::nn::{DropoutConfig, Embedding, LayerNorm, Linear};
use burn::tensor::Device;

/// `bert.` when the checkpoint nests the encoder (task models), else empty (`BertModel`).
pub fn encoder_prefix(w: &Weights) -> &'static str {
    if w.names().any(|n| n.starts_with("bert.")) {
        "bert."
    } else {
        ""
    }
}

fn linear(w: &Weights, name: &str, d_in: usize, d_out: usize, device: &Device) -> Result<Linear> {
    let weight = w.tensor(&format!("{name}.weight"), [d_out, d_in], device)?;
    let bias = w.tensor(&format!("{name}.bias"), [d_out], device)?;
    Ok(Linear {
        weight: Param::from_tensor(weight.transpose()),
        bias: Some(Param::from_tensor(bias)),
    })
}

fn layer_norm(w: &Weights, c: &BertConfig, name: &str, device: &Device) -> Result<LayerNorm> {
    let h = c.hidden_size;
    let (gamma, beta) = match w.first_of(&[&format!("{name}.weight"), &format!("{name}.gamma")]) {
        Some(g) if g.ends_with(".gamma") => (g.to_string(), format!("{name}.beta")),
        _ => (format!("{name}.weight"), format!("{name}.bias")),
    };
    let mut ln = c.layer_norm(device);
    ln.gamma = Param::from_tensor(w.tensor(&gamma, [h], device)?);
    ln.beta = Some(Param::from_tensor(w.tensor(&beta, [h], device)?));
    Ok(ln)
}

fn embedding(w: &Weights, name: &str, n: usize, d: usize, device: &Device) -> Result<Embedding> {
    Ok(Embedding {
        weight: Param::from_tensor(w.tensor(&format!("{name}.weight"), [n, d], device)?),
    })
}

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
        let h = c.hidden_size;
        let p = |s: &str| format!("{prefix}{s}");
        let embeddings = BertEmbeddings {
            word_embeddings: embedding(
                w,
                &p("embeddings.word_embeddings"),
                c.vocab_size,
                h,
                device,
            )?,
            position_embeddings: embedding(
                w,
                &p("embeddings.position_embeddings"),
                c.max_position_embeddings,
                h,
                device,
            )?,
            token_type_embeddings: embedding(
                w,
                &p("embeddings.token_type_embeddings"),
                c.type_vocab_size,
                h,
                device,
            )?,
            layer_norm: layer_norm(w, c, &p("embeddings.LayerNorm"), device)?,
            dropout: DropoutConfig::new(c.hidden_dropout_prob).init(),
        };
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let l = |s: &str| p(&format!("encoder.layer.{i}.{s}"));
            layers.push(BertLayer {
                attention: BertAttention {
                    self_attn: BertSelfAttention {
                        query: linear(w, &l("attention.self.query"), h, h, device)?,
                        key: linear(w, &l("attention.self.key"), h, h, device)?,
                        value: linear(w, &l("attention.self.value"), h, h, device)?,
                        dropout: DropoutConfig::new(c.attention_probs_dropout_prob).init(),
                        num_heads: c.num_attention_heads,
                    },
                    output: BertSelfOutput {
                        dense: linear(w, &l("attention.output.dense"), h, h, device)?,
                        layer_norm: layer_norm(w, c, &l("attention.output.LayerNorm"), device)?,
                        dropout: DropoutConfig::new(c.hidden_dropout_prob).init(),
                    },
                },
                intermediate: BertIntermediate {
                    dense: linear(w, &l("intermediate.dense"), h, c.intermediate_size, device)?,
                    activation: c.activation().init(device),
                },
                output: BertOutput {
                    dense: linear(w, &l("output.dense"), c.intermediate_size, h, device)?,
                    layer_norm: layer_norm(w, c, &l("output.LayerNorm"), device)?,
                    dropout: DropoutConfig::new(c.hidden_dropout_prob).init(),
                },
            });
        }
        let pooler = if w.contains(&p("pooler.dense.weight")) {
            BertPooler {
                dense: linear(w, &p("pooler.dense"), h, h, device)?,
            }
        } else {
            notes.push("the checkpoint has no pooler (pooler.dense): initialized anew".into());
            BertPooler {
                dense: c.linear(h, h, device),
            }
        };
        // A position-id buffer is not a parameter.
        w.skip(&p("embeddings.position_ids"));
        Ok(Self {
            embeddings,
            encoder: BertEncoder { layer: layers },
            pooler,
        })
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
        let bert = BertModel::load(c, w, encoder_prefix(w), device, &mut notes)?;
        let classifier = match w.shape("classifier.weight") {
            Some([n, _]) if *n == labels => linear(w, "classifier", c.hidden_size, labels, device)?,
            Some(shape) => {
                let n = shape[0];
                skip_head(
                    w,
                    "classifier.",
                    &format!("its {n} labels are not the {labels} classes of the recipe; a new head is initialized"),
                    &mut notes,
                );
                c.linear(c.hidden_size, labels, device)
            }
            None => {
                notes.push(format!(
                    "no classifier in the checkpoint: a new {labels}-class head is initialized"
                ));
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
                dropout: DropoutConfig::new(c.classifier_dropout.unwrap_or(c.hidden_dropout_prob))
                    .init(),
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
        let mut notes = Vec::new();
        let bert = BertModel::load(c, w, encoder_prefix(w), device, &mut notes)?;
        let h = c.hidden_size;
        let cls = if w.contains("cls.predictions.transform.dense.weight") {
            let bias_name = w
                .first_of(&["cls.predictions.bias", "cls.predictions.decoder.bias"])
                .unwrap_or("cls.predictions.bias");
            let head = BertMlmHead {
                dense: linear(w, "cls.predictions.transform.dense", h, h, device)?,
                activation: c.activation().init(device),
                layer_norm: layer_norm(w, c, "cls.predictions.transform.LayerNorm", device)?,
                bias: Param::from_tensor(w.tensor(bias_name, [c.vocab_size], device)?),
            };
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
