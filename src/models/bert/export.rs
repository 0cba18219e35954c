//! A BERT's state dicts by transformers' tensor names, for `model.safetensors` (written with
//! `hf::save_folder`, so `AutoModel*.from_pretrained(folder)` loads it).

use super::load::{ENCODER_NAMES, MLM_HEAD_NAMES};
use super::mlm::BertMaskedLm;
use super::{BertClassifier, BertModel};
use crate::models::hf::tree::{self, Tensors};
use anyhow::Result;

impl BertModel {
    /// The encoder's tensors under `prefix` (`bert.` for task models).
    pub fn hf_tensors(&self, prefix: &str, out: &mut Tensors) -> Result<()> {
        tree::export(self, &ENCODER_NAMES, prefix, out)
    }
}

impl BertClassifier {
    /// `BertForSequenceClassification`'s state dict.
    pub fn hf_tensors(&self) -> Result<Tensors> {
        let mut out = Tensors::new();
        self.bert.hf_tensors("bert.", &mut out)?;
        tree::export(&self.classifier, &ENCODER_NAMES, "classifier.", &mut out)?;
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
