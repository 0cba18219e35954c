//! Saving a BERT as a Hugging Face folder: `config.json`, `vocab.txt` and `model.safetensors`
//! with transformers' tensor names, so `AutoModel*.from_pretrained(folder)` loads it.

use super::mlm::BertMaskedLm;
use super::{BertClassifier, BertConfig, BertModel};
use crate::files::write_with;
use crate::models::hf::RawTensor;
use anyhow::{anyhow, Context, Result};
use burn::nn::{Embedding, LayerNorm, Linear};
use burn::tensor::Tensor;
use std::collections::BTreeMap;
use std::path::Path;

type Tensors = BTreeMap<String, RawTensor>;

fn raw<const D: usize>(t: Tensor<D>) -> Result<RawTensor> {
    let shape = t.dims().to_vec();
    let data = t
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow!("cannot read a tensor for export: {e:?}"))?;
    Ok(RawTensor { shape, data })
}

fn put_linear(out: &mut Tensors, name: &str, l: &Linear) -> Result<()> {
    // burn keeps [in, out]; PyTorch [out, in].
    out.insert(format!("{name}.weight"), raw(l.weight.val().transpose())?);
    if let Some(b) = &l.bias {
        out.insert(format!("{name}.bias"), raw(b.val())?);
    }
    Ok(())
}

fn put_layer_norm(out: &mut Tensors, name: &str, ln: &LayerNorm) -> Result<()> {
    out.insert(format!("{name}.weight"), raw(ln.gamma.val())?);
    if let Some(b) = &ln.beta {
        out.insert(format!("{name}.bias"), raw(b.val())?);
    }
    Ok(())
}

fn put_embedding(out: &mut Tensors, name: &str, e: &Embedding) -> Result<()> {
    out.insert(format!("{name}.weight"), raw(e.weight.val())?);
    Ok(())
}

impl BertModel {
    /// The encoder's tensors under `prefix` (`bert.` for task models).
    pub fn hf_tensors(&self, prefix: &str, out: &mut Tensors) -> Result<()> {
        let e = &self.embeddings;
        put_embedding(
            out,
            &format!("{prefix}embeddings.word_embeddings"),
            &e.word_embeddings,
        )?;
        put_embedding(
            out,
            &format!("{prefix}embeddings.position_embeddings"),
            &e.position_embeddings,
        )?;
        put_embedding(
            out,
            &format!("{prefix}embeddings.token_type_embeddings"),
            &e.token_type_embeddings,
        )?;
        put_layer_norm(out, &format!("{prefix}embeddings.LayerNorm"), &e.layer_norm)?;
        for (i, layer) in self.encoder.layer.iter().enumerate() {
            let l = format!("{prefix}encoder.layer.{i}.");
            let a = &layer.attention;
            put_linear(out, &format!("{l}attention.self.query"), &a.self_attn.query)?;
            put_linear(out, &format!("{l}attention.self.key"), &a.self_attn.key)?;
            put_linear(out, &format!("{l}attention.self.value"), &a.self_attn.value)?;
            put_linear(out, &format!("{l}attention.output.dense"), &a.output.dense)?;
            put_layer_norm(
                out,
                &format!("{l}attention.output.LayerNorm"),
                &a.output.layer_norm,
            )?;
            put_linear(
                out,
                &format!("{l}intermediate.dense"),
                &layer.intermediate.dense,
            )?;
            put_linear(out, &format!("{l}output.dense"), &layer.output.dense)?;
            put_layer_norm(
                out,
                &format!("{l}output.LayerNorm"),
                &layer.output.layer_norm,
            )?;
        }
        put_linear(out, &format!("{prefix}pooler.dense"), &self.pooler.dense)?;
        Ok(())
    }
}

impl BertClassifier {
    /// `BertForSequenceClassification`'s state dict.
    pub fn hf_tensors(&self) -> Result<Tensors> {
        let mut out = Tensors::new();
        self.bert.hf_tensors("bert.", &mut out)?;
        put_linear(&mut out, "classifier", &self.classifier)?;
        Ok(out)
    }
}

impl BertMaskedLm {
    /// `BertForMaskedLM`'s state dict; the decoder weight is tied to the word embeddings and is
    /// not stored twice (as transformers saves tied weights).
    pub fn hf_tensors(&self) -> Result<Tensors> {
        let mut out = Tensors::new();
        self.bert.hf_tensors("bert.", &mut out)?;
        put_linear(&mut out, "cls.predictions.transform.dense", &self.cls.dense)?;
        put_layer_norm(
            &mut out,
            "cls.predictions.transform.LayerNorm",
            &self.cls.layer_norm,
        )?;
        out.insert("cls.predictions.bias".into(), raw(self.cls.bias.val())?);
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
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut config = config.clone();
    config.architectures = vec![architecture.to_string()];
    let mut json = serde_json::to_value(&config)?;
    json["transformers_version"] = serde_json::Value::from("4.0.0");
    crate::files::write_atomic(
        &dir.join("config.json"),
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
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
