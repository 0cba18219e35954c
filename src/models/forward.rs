//! `kdrun forward`: run a checkpoint on given token ids and write what transformers reports
//! (`embedding_output` = `hidden_states[0]`, `last_hidden_state`, `logits`), in the JSON layout of
//! the conformance fixtures, so a user can compare kdrun with transformers on their own
//! checkpoint.
//!
//! Input: `{"inputs": {"input_ids": T, "attention_mask": T, "token_type_ids": T}}` (or the inner
//! object alone) where `T = {"shape": [batch, time], "data": [row-major numbers]}`;
//! `attention_mask` defaults to ones and `token_type_ids` to zeros.

use super::hf::Weights;
use super::Checkpoint;
use crate::models::bert::mlm::BertMaskedLm;
use crate::models::bert::{BertClassifier, BertConfig, BertModel};
use crate::models::xlnet::{
    XlnetConfig, XlnetForSequenceClassification, XlnetLmHeadModel, XlnetModel,
};
use crate::models::TeacherConfig;
use anyhow::{anyhow, bail, Context, Result};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// A tensor in the fixtures' JSON layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

impl JsonTensor {
    fn from_tensor<const D: usize>(t: Tensor<D>) -> Result<Self> {
        let shape = t.dims().to_vec();
        let data = t
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow!("cannot read output: {e:?}"))?;
        Ok(Self {
            shape,
            data: data.into_iter().map(|v| v as f64).collect(),
        })
    }

    /// Largest absolute difference to `other` (infinite if the shapes differ).
    pub fn max_abs_diff(&self, other: &JsonTensor) -> f64 {
        if self.shape != other.shape || self.data.len() != other.data.len() {
            return f64::INFINITY;
        }
        self.data
            .iter()
            .zip(&other.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max)
    }
}

/// Token ids and masks of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Inputs {
    pub input_ids: JsonTensor,
    pub attention_mask: JsonTensor,
    pub token_type_ids: JsonTensor,
}

impl Inputs {
    /// Read an inputs file (a fixture's `reference.json` works as it is).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| anyhow!("{}: not JSON: {e}", path.display()))?;
        let obj = v.get("inputs").unwrap_or(&v);
        let get = |key: &str| -> Result<Option<JsonTensor>> {
            obj.get(key)
                .map(|t| {
                    serde_json::from_value::<JsonTensor>(t.clone()).map_err(|e| {
                        anyhow!(
                            "{}: `{key}` is not {{\"shape\": [..], \"data\": [..]}}: {e}",
                            path.display()
                        )
                    })
                })
                .transpose()
        };
        let input_ids =
            get("input_ids")?.ok_or_else(|| anyhow!("{}: no `input_ids`", path.display()))?;
        if input_ids.shape.len() != 2
            || input_ids.shape.iter().product::<usize>() != input_ids.data.len()
        {
            bail!(
                "{}: `input_ids` must be [batch, time] with batch × time values",
                path.display()
            );
        }
        let ones = JsonTensor {
            shape: input_ids.shape.clone(),
            data: vec![1.0; input_ids.data.len()],
        };
        let zeros = JsonTensor {
            shape: input_ids.shape.clone(),
            data: vec![0.0; input_ids.data.len()],
        };
        let attention_mask = get("attention_mask")?.unwrap_or(ones);
        let token_type_ids = get("token_type_ids")?.unwrap_or(zeros);
        for (name, t) in [
            ("attention_mask", &attention_mask),
            ("token_type_ids", &token_type_ids),
        ] {
            if t.shape != input_ids.shape {
                bail!(
                    "{}: `{name}` has shape {:?}, `input_ids` {:?}",
                    path.display(),
                    t.shape,
                    input_ids.shape
                );
            }
        }
        Ok(Self {
            input_ids,
            attention_mask,
            token_type_ids,
        })
    }

    /// `input_ids`, `token_type_ids` and `attention_mask` as tensors on `device`.
    fn tensors(&self, device: &Device) -> (Tensor<2, Int>, Tensor<2, Int>, Tensor<2>) {
        (
            Self::int(&self.input_ids, device),
            Self::int(&self.token_type_ids, device),
            Self::float(&self.attention_mask, device),
        )
    }

    fn int(t: &JsonTensor, device: &Device) -> Tensor<2, Int> {
        let data: Vec<i64> = t.data.iter().map(|v| *v as i64).collect();
        Tensor::from_data(TensorData::new(data, [t.shape[0], t.shape[1]]), device)
    }

    fn float(t: &JsonTensor, device: &Device) -> Tensor<2> {
        let data: Vec<f32> = t.data.iter().map(|v| *v as f32).collect();
        Tensor::from_data(TensorData::new(data, [t.shape[0], t.shape[1]]), device)
    }
}

/// The head a checkpoint carries, read from its tensor names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// `classifier.*`: `BertForSequenceClassification` with this many labels.
    Classifier(usize),
    /// `cls.predictions.*`: `BertForMaskedLM` / `BertForPreTraining`.
    MaskedLm,
    /// No head: `BertModel`.
    None,
}

pub fn detect_head(config: &BertConfig, w: &Weights) -> Head {
    let (_, out) = config.family().head_names();
    if let Some(shape) = w.shape(&format!("{out}weight")) {
        Head::Classifier(shape[0])
    } else if w.contains("cls.predictions.transform.dense.weight") {
        Head::MaskedLm
    } else {
        Head::None
    }
}

/// An encoder's outputs by transformers' names (`hidden_states[0]` and `[-1]`).
fn insert_body(
    out: &mut BTreeMap<String, JsonTensor>,
    embedding_output: Tensor<3>,
    last_hidden_state: Tensor<3>,
) -> Result<()> {
    out.insert(
        "embedding_output".into(),
        JsonTensor::from_tensor(embedding_output)?,
    );
    out.insert(
        "last_hidden_state".into(),
        JsonTensor::from_tensor(last_hidden_state)?,
    );
    Ok(())
}

/// Run the model `config` + `weights` describe on `inputs`; outputs by transformers' names.
pub fn forward(
    config: &BertConfig,
    weights: &Weights,
    inputs: &Inputs,
    device: &Device,
) -> Result<BTreeMap<String, JsonTensor>> {
    let (ids, types, mask) = inputs.tensors(device);
    let [_, t] = ids.dims();
    if t > config.max_positions() {
        bail!(
            "inputs have {t} tokens, the model at most {} (max_position_embeddings)",
            config.max_positions()
        );
    }
    let mut out = BTreeMap::new();
    let (encoder, logits) = match detect_head(config, weights) {
        Head::Classifier(labels) => {
            let (model, _) = BertClassifier::load(config, weights, labels, device)?;
            let (logits, enc) = model.forward_all(ids, types, mask);
            (enc, Some(JsonTensor::from_tensor(logits)?))
        }
        Head::MaskedLm => {
            let (model, _) = BertMaskedLm::load(config, weights, device)?;
            let (logits, enc) = model.forward_all(ids, types, mask);
            (enc, Some(JsonTensor::from_tensor(logits)?))
        }
        Head::None => {
            let mut notes = Vec::new();
            let prefix = crate::models::bert::load::encoder_prefix(config, weights);
            let model = BertModel::load(config, weights, prefix, device, &mut notes)?;
            let unused = weights.unused();
            if !unused.is_empty() {
                bail!(
                    "{}: unexpected tensor(s): {}",
                    weights.source.display(),
                    unused.join(", ")
                );
            }
            let enc = model.forward(ids, types, mask);
            out.insert(
                "pooler_output".into(),
                JsonTensor::from_tensor(enc.pooled.clone())?,
            );
            (enc, None)
        }
    };
    insert_body(
        &mut out,
        encoder.embedding_output,
        encoder.last_hidden_state,
    )?;
    if let Some(l) = logits {
        out.insert("logits".into(), l);
    }
    Ok(out)
}

/// An XLNet checkpoint on `inputs` (`XLNetForSequenceClassification`, `XLNetLMHeadModel` or the
/// bare `XLNetModel`, by the tensors it holds); outputs by transformers' names.
pub fn forward_xlnet(
    config: &XlnetConfig,
    weights: &Weights,
    inputs: &Inputs,
    device: &Device,
) -> Result<BTreeMap<String, JsonTensor>> {
    let (ids, types, mask) = inputs.tensors(device);
    let mut out = BTreeMap::new();
    let body = if weights.contains("logits_proj.weight") {
        let (model, _) = XlnetForSequenceClassification::load(config, weights, device)?;
        let (logits, body) = model.forward_all(ids, types, mask);
        out.insert("logits".into(), JsonTensor::from_tensor(logits)?);
        body
    } else if weights.contains("lm_loss.bias") {
        let (model, _) = XlnetLmHeadModel::load(config, weights, device)?;
        let (logits, body) = model.forward_all(ids, types, mask);
        out.insert("logits".into(), JsonTensor::from_tensor(logits)?);
        body
    } else {
        let (model, _) = XlnetModel::load(config, weights, device)?;
        model.forward(ids, types, mask)
    };
    insert_body(&mut out, body.embedding_output, body.last_hidden_state)?;
    Ok(out)
}

/// `kdrun forward --checkpoint DIR --input FILE`: the outputs as JSON text (BERT or XLNet).
pub fn forward_folder(dir: &Path, input: &Path, device: &Device) -> Result<String> {
    let ckpt = Checkpoint::open(dir)?;
    let inputs = Inputs::load(input)?;
    let out = match &ckpt.config {
        TeacherConfig::Bert(c) => forward(c, ckpt.weights()?, &inputs, device)?,
        TeacherConfig::Xlnet(c) => forward_xlnet(c, ckpt.weights()?, &inputs, device)?,
    };
    Ok(serde_json::to_string(&out)?)
}
