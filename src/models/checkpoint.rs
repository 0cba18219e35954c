//! An opened Hugging Face checkpoint folder: its `config.json` read as a teacher architecture
//! (`TeacherConfig`), its weights ([`Weights`]) read on first use.

use super::hf::Weights;
use super::teacher::TeacherConfig;
use anyhow::{anyhow, Context, Result};
use std::path::{Path, PathBuf};

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
