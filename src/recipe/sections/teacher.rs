//! `[teacher]` and `[teacher.pretrain]`: the teacher model, where it starts, how it is further
//! pre-trained and fine-tuned.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TeacherArch {
    Bert,
}

/// Which teacher parameters fine-tuning leaves unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Freeze {
    /// Everything trains.
    None,
    /// The embeddings stay fixed.
    Embeddings,
    /// `{ all-but-last = K }`: only the last K encoder layers, the pooler and the head train.
    AllButLast(usize),
}

/// Further pre-training of the teacher with masked-LM before fine-tuning (off while `steps` and
/// `epochs` are both 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainSection {
    /// Optimizer steps (used when `epochs` is 0).
    pub steps: usize,
    /// Passes over the corpus (overrides `steps` when above 0).
    pub epochs: usize,
    /// Share of tokens selected for prediction; of those 80 % become `[MASK]`, 10 % a random
    /// token, 10 % stay.
    pub mask_prob: f64,
    /// Select whole words (jieba-rs segmentation) instead of single tokens.
    pub whole_word: bool,
    pub lr: f64,
    pub batch_size: usize,
    pub warmup: f64,
    pub weight_decay: f64,
    /// Extra corpus files, one sentence per line, beside the training texts.
    pub extra: Vec<PathBuf>,
    /// Share of the corpus held out to report masked-LM loss and accuracy before and after.
    pub holdout: f64,
    /// Also fine-tune a teacher without further pre-training (same seed and sizes), for the
    /// report's comparison.
    pub compare: bool,
}

impl Default for PretrainSection {
    fn default() -> Self {
        Self {
            steps: 0,
            epochs: 0,
            mask_prob: 0.15,
            whole_word: false,
            lr: 5e-4,
            batch_size: 64,
            warmup: 0.06,
            weight_decay: 0.01,
            extra: Vec::new(),
            holdout: 0.02,
            compare: true,
        }
    }
}

impl PretrainSection {
    pub fn enabled(&self) -> bool {
        self.steps > 0 || self.epochs > 0
    }
}

/// The teacher: a BERT encoder trained from scratch or loaded from a Hugging Face checkpoint,
/// optionally further pre-trained with masked-LM, then fine-tuned and selected on validation
/// accuracy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TeacherSection {
    pub arch: TeacherArch,
    /// A Hugging Face BERT folder (config.json, vocab.txt or tokenizer.json, model.safetensors or
    /// pytorch_model.bin). Empty: train from scratch with the sizes below and a character
    /// vocabulary.
    pub checkpoint: PathBuf,
    pub freeze: Freeze,
    pub pretrain: PretrainSection,
    /// Save the fine-tuned teacher as a Hugging Face folder in the run folder.
    pub export: bool,
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    /// Feed-forward width. Left out: 4 × hidden (filled in when the recipe is resolved).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intermediate: Option<usize>,
    pub dropout: f64,
    pub epochs: usize,
    pub lr: f64,
    pub batch_size: usize,
    /// Fraction of all steps spent warming the learning rate up linearly; it then decays
    /// linearly to 0.
    pub warmup: f64,
    pub weight_decay: f64,
}

impl Default for TeacherSection {
    fn default() -> Self {
        Self {
            arch: TeacherArch::Bert,
            checkpoint: PathBuf::new(),
            freeze: Freeze::None,
            pretrain: PretrainSection::default(),
            export: true,
            layers: 2,
            hidden: 128,
            heads: 2,
            intermediate: None,
            dropout: 0.1,
            epochs: 5,
            lr: 5e-4,
            batch_size: 64,
            warmup: 0.1,
            weight_decay: 0.01,
        }
    }
}

impl TeacherSection {
    /// The feed-forward width: the recipe's, else 4 × hidden.
    pub fn intermediate(&self) -> usize {
        self.intermediate.unwrap_or(4 * self.hidden)
    }
}
