//! Saving a BERT as a Hugging Face folder: `config.json`, `vocab.txt` and `model.safetensors`
//! with transformers' tensor names, so `AutoModel*.from_pretrained(folder)` loads it.

use super::load::{ENCODER_NAMES, MLM_HEAD_NAMES};
use super::mlm::BertMaskedLm;
use super::{BertClassifier, BertConfig, BertModel};
use crate::files::write_with;
use crate::models::hf::tree::{self, Tensors};
use anyhow::{anyhow, Context, Result};
use std::path::Path;

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

/// Write `tensors` as `model.safetensors` (f32).
pub fn write_safetensors(path: &Path, tensors: &Tensors) -> Result<()> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| {
            let b: Vec<u8> = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name.clone(), t.shape.clone(), b)
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, shape, b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
                .map(|v| (name.clone(), v))
                .map_err(|e| anyhow!("tensor {name}: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    let data = safetensors::tensor::serialize(views, Some(meta))
        .map_err(|e| anyhow!("cannot serialize {}: {e}", path.display()))?;
    write_with(path, |tmp| {
        std::fs::write(tmp, &data).with_context(|| format!("cannot write {}", tmp.display()))
    })?;
    Ok(())
}

/// Write a Hugging Face folder: `config.json` (with `architectures` = `architecture`),
/// `vocab.txt` (one token per line), `model.safetensors` and, when given, the tokenizer as
/// `tokenizer.json` with `tokenizer_config.json` (`model_max_length` = the tokens kdrun read at
/// most) and `special_tokens_map.json` — what `AutoTokenizer.from_pretrained` reads.
pub fn save_folder(
    dir: &Path,
    config: &BertConfig,
    architecture: &str,
    vocab: &[String],
    tensors: &Tensors,
    tokenizer: Option<(&str, usize)>,
) -> Result<()> {
    crate::models::hf::write_config(dir, config, architecture)?;
    let mut text = vocab.join("\n");
    text.push('\n');
    crate::files::write_atomic(&dir.join("vocab.txt"), text.as_bytes())?;
    if let Some((json, max_len)) = tokenizer {
        write_tokenizer(dir, json, max_len)?;
    }
    write_safetensors(&dir.join("model.safetensors"), tensors)
}

/// `tokenizer.json` and the two small files that tell transformers which tokens are special.
fn write_tokenizer(dir: &Path, tokenizer_json: &str, max_len: usize) -> Result<()> {
    crate::files::write_atomic(&dir.join("tokenizer.json"), tokenizer_json.as_bytes())?;
    let specials = serde_json::json!({
        "unk_token": "[UNK]",
        "sep_token": "[SEP]",
        "pad_token": "[PAD]",
        "cls_token": "[CLS]",
        "mask_token": "[MASK]",
    });
    let mut config = specials.clone();
    config["tokenizer_class"] = "PreTrainedTokenizerFast".into();
    config["model_max_length"] = max_len.into();
    config["padding_side"] = "right".into();
    config["clean_up_tokenization_spaces"] = false.into();
    crate::files::write_atomic(
        &dir.join("tokenizer_config.json"),
        serde_json::to_string_pretty(&config)?.as_bytes(),
    )?;
    crate::files::write_atomic(
        &dir.join("special_tokens_map.json"),
        serde_json::to_string_pretty(&specials)?.as_bytes(),
    )?;
    Ok(())
}
