//! Hugging Face folders, whatever the architecture: weights read (`model.safetensors` or
//! `pytorch_model.bin`, [`weights`]) and written with `config.json`, and a module tree mapped to
//! and from HF names ([`tree`]). What a folder's `config.json` means is the architectures' part
//! (`models::checkpoint`, `models::teacher`); its tokenizer is read by `data::hf_tokenizer`.

pub mod tree;
pub mod weights;

use anyhow::{anyhow, Context, Result};
use std::path::Path;

pub use weights::{RawTensor, Weights};

/// Write a Hugging Face model folder: `config.json` (with `architectures` = `[architecture]`)
/// and `model.safetensors`, as `from_pretrained` reads them (the tokenizer's files are written
/// by `data`).
pub fn save_folder<C: serde::Serialize>(
    dir: &Path,
    config: &C,
    architecture: &str,
    tensors: &tree::Tensors,
) -> Result<()> {
    write_config(dir, config, architecture)?;
    write_safetensors(&dir.join("model.safetensors"), tensors)
}

/// Write `tensors` as `model.safetensors` (f32).
pub fn write_safetensors(path: &Path, tensors: &tree::Tensors) -> Result<()> {
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
    crate::files::write_with(path, |tmp| {
        std::fs::write(tmp, &data).map_err(|e| crate::files::write_error(path, e))
    })?;
    Ok(())
}

/// Start a Hugging Face folder: create `dir` and write `config.json` (the architecture's config
/// with `architectures` = `[architecture]`), as `from_pretrained` reads it.
pub fn write_config<C: serde::Serialize>(dir: &Path, config: &C, architecture: &str) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut json = serde_json::to_value(config)?;
    json["architectures"] = serde_json::json!([architecture]);
    json["transformers_version"] = serde_json::Value::from("4.0.0");
    crate::files::write_atomic(
        &dir.join("config.json"),
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    Ok(())
}
