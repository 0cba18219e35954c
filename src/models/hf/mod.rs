//! Hugging Face checkpoint folders: `config.json` and weights (`model.safetensors` or
//! `pytorch_model.bin`). The folder's tokenizer is read by `data::hf_tokenizer`.

pub mod forward;
pub mod tree;
pub mod weights;

use crate::models::teacher::TeacherConfig;
use anyhow::{anyhow, Context, Result};
use std::path::{Path, PathBuf};

pub use weights::{RawTensor, Weights};

/// An opened checkpoint folder: its configuration, and its weights read on first use (a run
/// whose teacher comes from the store never reads them).
pub struct Checkpoint {
    pub dir: PathBuf,
    pub config: TeacherConfig,
    /// The weights file (`model.safetensors`, else `pytorch_model.bin`).
    pub weights_file: PathBuf,
    weights: once_cell::unsync::OnceCell<Weights>,
}

impl Checkpoint {
    /// Read `config.json` and the weights of `dir` (the tokenizer is opened separately, only where
    /// text is tokenized).
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            anyhow::bail!("checkpoint folder {} not found", dir.display());
        }
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{}: cannot read (a checkpoint folder needs config.json)",
                path.display()
            )
        })?;
        let model_type = serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|e| anyhow!("{}: not JSON: {e}", path.display()))?
            .get("model_type")
            .and_then(|t| t.as_str())
            .unwrap_or_default()
            .to_string();
        let config = TeacherConfig::from_checkpoint(&model_type, &text)
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let weights_file = Weights::file_in(dir)?;
        // A cut-short or damaged safetensors file is refused here, before anything is built.
        Weights::check_file(&weights_file)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            weights_file,
            weights: once_cell::unsync::OnceCell::new(),
        })
    }

    /// The weights, read now if not yet.
    pub fn weights(&self) -> Result<&Weights> {
        self.weights.get_or_try_init(|| Weights::open(&self.dir))
    }
}

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
