//! The teacher architectures behind one seam, one enum per family (as rust-bert's
//! `pipelines/common.rs`): a teacher's configuration ([`TeacherConfig`]), its classifier
//! ([`TeacherModel`]) and its further pre-training model ([`PretrainModel`]) each have a variant
//! per architecture. Training, the pipeline and the store hold these and never an
//! architecture's own types, so a new architecture is its `models/<arch>/` folder and a variant
//! here.

use super::bert::mlm::BertMaskedLm;
use super::bert::{BertClassifier, BertConfig};
use super::hf::tree::Tensors;
use super::hf::{save_folder, Weights};
use super::xlnet::{XlnetConfig, XlnetForSequenceClassification, XlnetLmHeadModel};
use super::Classifier;
use crate::data::{InputKind, Layout, TokenBatch};
use anyhow::{bail, Result};
use burn::module::Module;
use burn::nn::DropoutConfig;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A teacher's configuration: the Hugging Face `config.json` of its architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TeacherConfig {
    Bert(BertConfig),
    Xlnet(XlnetConfig),
}

/// Which parameters fine-tuning leaves unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezePlan {
    /// Everything trains.
    None,
    /// The embeddings stay fixed.
    Embeddings,
    /// Only the last K encoder layers (and what follows them) train.
    AllButLast(usize),
}

/// A teacher classifier of any architecture. (One is held at a time, so the variants' sizes do
/// not matter; burn's `Module` derive does not box.)
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum TeacherModel {
    Bert(BertClassifier),
    Xlnet(XlnetForSequenceClassification),
}

/// A model for further pre-training, by objective: masked-LM (BERT) or permutation-LM (XLNet).
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum PretrainModel {
    Mlm(BertMaskedLm),
    Plm(XlnetLmHeadModel),
}

impl TeacherConfig {
    /// The architecture's name in reports ("BERT").
    pub fn arch_name(&self) -> &'static str {
        match self {
            Self::Bert(_) => "BERT",
            Self::Xlnet(_) => "XLNet",
        }
    }

    /// Where the architecture reads its special tokens (and so which side batches are padded).
    pub fn layout(&self) -> Layout {
        match self {
            Self::Bert(_) => Layout::ClsFirst,
            Self::Xlnet(_) => Layout::ClsLast,
        }
    }

    /// The further pre-training objective's name in reports ("MLM").
    pub fn pretrain_name(&self) -> &'static str {
        match self {
            Self::Bert(_) => "MLM",
            Self::Xlnet(_) => "PLM",
        }
    }

    /// The checkpoint `config.json` of `model_type`, as this architecture reads it.
    pub fn from_checkpoint(model_type: &str, json: &str) -> Result<Self> {
        match model_type {
            "bert" | "roberta" | "xlm-roberta" => Ok(Self::Bert(serde_json::from_str(json)?)),
            "xlnet" => {
                let c: XlnetConfig = serde_json::from_str(json)?;
                c.check()?;
                Ok(Self::Xlnet(c))
            }
            other => bail!(
                "model_type is {other:?}; kdrun's teachers are \"bert\", \"roberta\", \
                 \"xlm-roberta\" and \"xlnet\" (BertModel, RobertaModel, XLMRobertaModel, \
                 XLNetModel and their task models)"
            ),
        }
    }

    /// The largest input length the model takes.
    pub fn max_positions(&self) -> usize {
        match self {
            Self::Bert(c) => c.max_positions(),
            // Relative positions: any length.
            Self::Xlnet(_) => usize::MAX,
        }
    }

    /// Name the recipe's classes (`id2label`), which also sets the classifier's width.
    pub fn set_labels(&mut self, class_names: &[String]) {
        let id2label = class_names
            .iter()
            .enumerate()
            .map(|(i, n)| (i.to_string(), n.clone()))
            .collect();
        match self {
            Self::Bert(c) => c.id2label = id2label,
            Self::Xlnet(c) => {
                c.id2label = id2label;
                c.num_labels = None;
            }
        }
    }

    pub fn num_labels(&self) -> usize {
        match self {
            Self::Bert(c) => c.num_labels(),
            Self::Xlnet(c) => c.num_labels(),
        }
    }

    /// A new classifier, drawn from `device`'s seed.
    pub fn init_classifier(&self, device: &Device) -> TeacherModel {
        match self {
            Self::Bert(c) => TeacherModel::Bert(c.init_classifier(device)),
            Self::Xlnet(c) => TeacherModel::Xlnet(c.init_classifier(device)),
        }
    }

    /// The classifier from a checkpoint's weights (a head of another width is drawn anew); what
    /// loading noticed, to tell the user once.
    pub fn load_classifier(
        &self,
        weights: &Weights,
        device: &Device,
    ) -> Result<(TeacherModel, Vec<String>)> {
        match self {
            Self::Bert(c) => {
                let (m, notes) = BertClassifier::load(c, weights, c.num_labels(), device)?;
                Ok((TeacherModel::Bert(m), notes))
            }
            Self::Xlnet(c) => {
                let (m, notes) = XlnetForSequenceClassification::load(c, weights, device)?;
                Ok((TeacherModel::Xlnet(m), notes))
            }
        }
    }

    /// A new model for further pre-training.
    pub fn init_pretrain(&self, device: &Device) -> PretrainModel {
        match self {
            Self::Bert(c) => PretrainModel::Mlm(BertMaskedLm::new(c, device)),
            Self::Xlnet(c) => PretrainModel::Plm(c.init_lm(device)),
        }
    }

    /// The pre-training model from a checkpoint's weights.
    pub fn load_pretrain(
        &self,
        weights: &Weights,
        device: &Device,
    ) -> Result<(PretrainModel, Vec<String>)> {
        match self {
            Self::Bert(c) => {
                let (m, notes) = BertMaskedLm::load(c, weights, device)?;
                Ok((PretrainModel::Mlm(m), notes))
            }
            Self::Xlnet(c) => {
                let (m, notes) = XlnetLmHeadModel::load(c, weights, device)?;
                Ok((PretrainModel::Plm(m), notes))
            }
        }
    }

    /// A classifier over a pre-trained encoder, with a new head.
    pub fn classifier_over(
        &self,
        pretrained: PretrainModel,
        device: &Device,
    ) -> Result<TeacherModel> {
        Ok(match (self, pretrained) {
            (Self::Bert(c), PretrainModel::Mlm(mlm)) => TeacherModel::Bert(BertClassifier {
                bert: mlm.bert,
                dropout: DropoutConfig::new(c.classifier_dropout()).init(),
                classifier: c.linear(c.hidden_size, c.num_labels(), device),
            }),
            (Self::Xlnet(c), PretrainModel::Plm(lm)) => TeacherModel::Xlnet(
                XlnetForSequenceClassification::over(c, lm.transformer, device),
            ),
            (c, _) => bail!(
                "the pre-trained model is not a {} pre-training model",
                c.arch_name()
            ),
        })
    }

    /// Save `model` as a Hugging Face model folder transformers loads
    /// (`…ForSequenceClassification`: `config.json` and `model.safetensors`; the tokenizer
    /// writes its own files beside them).
    pub fn export(&self, dir: &Path, model: &TeacherModel) -> Result<()> {
        match (self, model) {
            (Self::Bert(c), TeacherModel::Bert(m)) => {
                let family = c.family();
                save_folder(
                    dir,
                    c,
                    family.classifier_architecture(),
                    &m.hf_tensors(family)?,
                )
            }
            (Self::Xlnet(c), TeacherModel::Xlnet(m)) => {
                save_folder(dir, c, "XLNetForSequenceClassification", &m.hf_tensors()?)
            }
            (c, _) => bail!("the model is not a {} classifier", c.arch_name()),
        }
    }

    /// `model`'s state dict by the Hugging Face names of this configuration's family.
    pub fn hf_tensors(&self, model: &TeacherModel) -> Result<Tensors> {
        match (self, model) {
            (Self::Bert(c), TeacherModel::Bert(m)) => m.hf_tensors(c.family()),
            (Self::Xlnet(_), TeacherModel::Xlnet(m)) => m.hf_tensors(),
            (c, _) => bail!("the model is not a {} classifier", c.arch_name()),
        }
    }
}

impl TeacherModel {
    /// Encoder layers (what `FreezePlan::AllButLast` counts).
    pub fn layers(&self) -> usize {
        match self {
            Self::Bert(m) => m.bert.encoder.layer.len(),
            Self::Xlnet(m) => m.transformer.layer.len(),
        }
    }

    /// Freeze what `plan` says; the model and its trainable parameter count.
    pub fn freeze(self, plan: FreezePlan) -> Result<(Self, usize)> {
        let total = self.num_params();
        let n = self.layers();
        if let FreezePlan::AllButLast(k) = plan {
            if k > n {
                bail!("teacher.freeze = {{ all-but-last = {k} }} but the teacher has {n} layers");
            }
        }
        let mut frozen = 0;
        let model = match self {
            Self::Bert(mut m) => {
                if plan != FreezePlan::None {
                    frozen += m.bert.embeddings.num_params();
                    m.bert.embeddings = m.bert.embeddings.freeze();
                }
                if let FreezePlan::AllButLast(k) = plan {
                    let layers = std::mem::take(&mut m.bert.encoder.layer);
                    m.bert.encoder.layer = freeze_all_but_last(layers, k, &mut frozen);
                }
                Self::Bert(m)
            }
            Self::Xlnet(mut m) => {
                let t = &mut m.transformer;
                if plan != FreezePlan::None {
                    // XLNet's embeddings: the word embedding and the query stream's start.
                    frozen += t.word_embedding.num_params() + t.mask_emb.num_params();
                    t.word_embedding = t.word_embedding.clone().freeze();
                    t.mask_emb = t.mask_emb.clone().freeze();
                }
                if let FreezePlan::AllButLast(k) = plan {
                    t.layer = freeze_all_but_last(std::mem::take(&mut t.layer), k, &mut frozen);
                }
                Self::Xlnet(m)
            }
        };
        Ok((model, total - frozen))
    }
}

/// `layers` with all but the last `k` frozen; their parameters are added to `frozen`.
fn freeze_all_but_last<M: Module>(layers: Vec<M>, k: usize, frozen: &mut usize) -> Vec<M> {
    let n = layers.len();
    layers
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            if i + k < n {
                *frozen += l.num_params();
                l.freeze()
            } else {
                l
            }
        })
        .collect()
}

impl Classifier for TeacherModel {
    fn input_kind(&self) -> InputKind {
        InputKind::Teacher
    }

    fn logits(&self, batch: &TokenBatch) -> Tensor<2> {
        match self {
            Self::Bert(m) => m.logits(batch),
            Self::Xlnet(m) => m.forward(
                batch.tokens.clone(),
                batch.segments.clone(),
                batch.mask.clone(),
            ),
        }
    }
}
