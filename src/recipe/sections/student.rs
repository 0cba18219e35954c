//! `[student]`: the BiLSTM student, its tokens, vectors and training.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StudentArch {
    Bilstm,
}

/// How the BiLSTM's states become logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StudentHead {
    /// Tang et al. 2019: final forward and backward states → ReLU FC → logits.
    Tang,
    /// The reference project: a per-step FC to logits, then the maximum over time.
    Seed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StudentTokens {
    /// One token per character.
    Char,
    /// jieba-rs words.
    Word,
}

/// What the BiLSTM reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StudentInput {
    /// The token embeddings, one step per token.
    Sequence,
    /// The mean of the sentence's token embeddings, as a sequence of length 1 (the reference
    /// project's first student).
    Mean,
}

/// How tokens without a pretrained vector start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OovInit {
    /// Seeded uniform draws with the spread of the pretrained vectors.
    Random,
    /// The mean pretrained vector.
    Mean,
    /// The mean of the vectors of the token's characters (a word missing from a word-vector file,
    /// or any word with a character-vector file); `random` where none of its characters has one.
    Chars,
}

/// The student: one BiLSTM layer over embedded tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StudentSection {
    /// The student: `"bilstm"`, one bidirectional LSTM layer (Tang et al. 2019).
    pub arch: StudentArch,
    /// What the student reads: characters, or jieba-rs words.
    pub tokens: StudentTokens,
    /// Keep at most this many words (the most frequent) with `tokens = "word"`; 0: all.
    pub max_vocab: usize,
    pub input: StudentInput,
    /// Pretrained vectors (word2vec text or binary, optionally gzip) for the student's tokens.
    /// Empty: random embeddings.
    pub vectors: PathBuf,
    pub oov_init: OovInit,
    /// Keep the embedding matrix fixed during training.
    pub freeze_vectors: bool,
    /// Width of the token embeddings (the vectors file's dimension when `vectors` is set).
    pub embedding_dim: usize,
    /// Hidden size of each direction.
    pub hidden: usize,
    pub head: StudentHead,
    /// Width of the ReLU layer of the `tang` head.
    pub fc_hidden: usize,
    /// Dropout probability.
    pub dropout: f64,
    /// Training epochs; the epoch with the best validation accuracy is kept.
    pub epochs: usize,
    /// Peak learning rate (AdamW).
    pub lr: f64,
    /// Examples per optimizer step.
    pub batch_size: usize,
    /// Fraction of all steps spent warming the learning rate up linearly (then linear decay).
    pub warmup: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
}

impl Default for StudentSection {
    fn default() -> Self {
        Self {
            arch: StudentArch::Bilstm,
            tokens: StudentTokens::Char,
            max_vocab: 0,
            input: StudentInput::Sequence,
            vectors: PathBuf::new(),
            oov_init: OovInit::Random,
            freeze_vectors: false,
            embedding_dim: 128,
            hidden: 128,
            head: StudentHead::Tang,
            fc_hidden: 200,
            dropout: 0.1,
            epochs: 5,
            lr: 2e-3,
            batch_size: 64,
            warmup: 0.0,
            weight_decay: 0.0,
        }
    }
}
