//! A BERT's state dicts by transformers' tensor names, for `model.safetensors` (written with
//! `hf::save_folder`, so `AutoModel*.from_pretrained(folder)` loads it).

use super::load::{ENCODER_NAMES, MLM_HEAD_NAMES};
use super::mlm::BertMaskedLm;
use super::{BertClassifier, BertModel, Family};
use crate::models::hf::tree::{self, Tensors};
use anyhow::Result;

impl BertModel {
    /// The encoder's tensors under `prefix` (`bert.` for task models).
    pub fn hf_tensors(&self, prefix: &str, out: &mut Tensors) -> Result<()> {
        tree::export(self, &ENCODER_NAMES, prefix, out)
    }
}

impl BertClassifier {
    /// The sequence classifier's state dict under `family`'s names
    /// (`BertForSequenceClassification`, or RoBERTa's: no pooler, its dense layer as
    /// `classifier.dense` and the output layer as `classifier.out_proj`).
    pub fn hf_tensors(&self, family: Family) -> Result<Tensors> {
        let mut out = Tensors::new();
        let prefix = family.encoder_prefix();
        let (dense, head) = family.head_names();
        self.bert.hf_tensors(prefix, &mut out)?;
        let pooler = format!("{prefix}pooler.dense.");
        if dense != pooler {
            for (name, t) in std::mem::take(&mut out) {
                match name.strip_prefix(&pooler) {
                    Some(rest) => out.insert(format!("{dense}{rest}"), t),
                    None => out.insert(name, t),
                };
            }
        }
        tree::export(&self.classifier, &ENCODER_NAMES, head, &mut out)?;
        Ok(out)
    }
}

impl BertMaskedLm {
    /// `BertForMaskedLM`'s state dict; the decoder weight is tied to the word embeddings and is
    /// not stored twice (as transformers saves tied weights).
    pub fn hf_tensors(&self) -> Result<Tensors> {
        let mut out = Tensors::new();
        self.bert.hf_tensors("bert.", &mut out)?;
        tree::export(&self.cls, &MLM_HEAD_NAMES, "cls.predictions.", &mut out)?;
        Ok(out)
    }
}
