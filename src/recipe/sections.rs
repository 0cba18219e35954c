//! The recipe's sections. Key names are a contract: docs, sweeps and other tools use them.
//! Every field has a default, so a recipe file only states what it changes.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A whole recipe. `name` defaults to the recipe file's stem.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Recipe {
    /// Names the report folder (`<report.dir>/<name>/`) and the run folder in the store.
    pub name: String,
    pub data: DataSection,
    pub teacher: TeacherSection,
    pub student: StudentSection,
    pub distill: DistillSection,
    pub report: ReportSection,
    pub runtime: RuntimeSection,
    /// A grid of trials over dotted keys (see `recipe::sweep`).
    pub sweep: super::sweep::SweepSection,
}

/// Input file layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataFormat {
    /// CLUE TNEWS json-lines: `{"label","label_desc","sentence","keywords"}`.
    Tnews,
    /// Any json-lines file with a text and a label field.
    Jsonl,
    /// Any CSV file with a header row naming a text and a label column.
    Csv,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSection {
    pub format: DataFormat,
    /// Training file; the validation split is carved from it.
    pub train: PathBuf,
    /// Test file (TNEWS dev in the reference's table). Used only for the final evaluation.
    pub test: PathBuf,
    /// Field or column holding the text. Empty: `sentence` for `tnews`, `text` otherwise.
    pub text_field: String,
    /// Field or column holding the label. Empty: `label`.
    pub label_field: String,
    /// Classes to keep, by label code (`"103"`) or name (`"sports"`, `"news_sports"`). Empty: all
    /// classes seen in the training file.
    pub classes: Vec<String>,
    /// Keep at most this many training examples per class (seeded draw). 0: keep all.
    pub max_per_class: usize,
    /// Fraction of each class of the training file held out for validation (model selection).
    pub valid_fraction: f64,
    /// Tokens per example at most (the teacher's `[CLS]`/`[SEP]` included).
    pub max_len: usize,
    /// Seed of downsampling and of the validation split.
    pub seed: u64,
    /// Characters seen fewer times than this in the training text map to `[UNK]`.
    pub min_count: usize,
    /// Lower-case the text before tokenization.
    pub lowercase: bool,
}

impl Default for DataSection {
    fn default() -> Self {
        Self {
            format: DataFormat::Tnews,
            train: PathBuf::from("data/tnews/train.json"),
            test: PathBuf::from("data/tnews/dev.json"),
            text_field: String::new(),
            label_field: String::new(),
            classes: Vec::new(),
            max_per_class: 0,
            valid_fraction: 0.1,
            max_len: 48,
            seed: 0,
            min_count: 1,
            lowercase: true,
        }
    }
}

impl DataSection {
    /// The text field, with the format's default when the recipe leaves it empty.
    pub fn text_field(&self) -> &str {
        match (self.text_field.as_str(), self.format) {
            ("", DataFormat::Tnews) => "sentence",
            ("", _) => "text",
            (field, _) => field,
        }
    }

    /// The label field, `label` when the recipe leaves it empty.
    pub fn label_field(&self) -> &str {
        match self.label_field.as_str() {
            "" => "label",
            field => field,
        }
    }
}

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
    /// Feed-forward width. 0: 4 × hidden.
    pub intermediate: usize,
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
            intermediate: 0,
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
    pub fn intermediate(&self) -> usize {
        if self.intermediate == 0 {
            4 * self.hidden
        } else {
            self.intermediate
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StudentArch {
    Bilstm,
}

/// How the BiLSTM's states become logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StudentHead {
    /// Tang et al. 2019: final forward and backward states → ReLU FC → logits.
    Tang,
    /// The reference project: a per-step FC to logits, then the maximum over time.
    Seed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StudentTokens {
    /// One token per character.
    Char,
    /// jieba-rs words.
    Word,
}

/// What the BiLSTM reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StudentInput {
    /// The token embeddings, one step per token.
    Sequence,
    /// The mean of the sentence's token embeddings, as a sequence of length 1 (the reference
    /// project's first student).
    Mean,
}

/// How tokens without a pretrained vector start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StudentSection {
    pub arch: StudentArch,
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
    pub embedding_dim: usize,
    /// Hidden size of each direction.
    pub hidden: usize,
    pub head: StudentHead,
    /// Width of the ReLU layer of the `tang` head.
    pub fc_hidden: usize,
    pub dropout: f64,
    pub epochs: usize,
    pub lr: f64,
    pub batch_size: usize,
    pub warmup: f64,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SoftLoss {
    /// Mean squared error between student and teacher logits, both divided by T.
    Mse,
    /// KL(softmax(teacher/T) ‖ softmax(student/T)) × T², averaged over the batch.
    Kl,
}

/// The augmented transfer set of Tang et al. 2019 (§3.2), off while `n_iter` is 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentSection {
    /// Synthetic variants drawn per training sentence (duplicates dropped).
    pub n_iter: usize,
    /// Per word: replace by `[MASK]`.
    pub p_mask: f64,
    /// Per word, if not masked: replace by a random training word of the same part of speech.
    pub p_pos: f64,
    /// Per sentence: keep only a random n-gram, n uniform in 1..=5.
    pub p_ng: f64,
}

impl Default for AugmentSection {
    fn default() -> Self {
        Self {
            n_iter: 0,
            p_mask: 0.1,
            p_pos: 0.1,
            p_ng: 0.25,
        }
    }
}

/// Distillation: `loss = alpha · CE(student, label) + soft_weight · soft(student, teacher)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistillSection {
    /// Weight of the hard-label cross-entropy.
    pub alpha: f64,
    /// Weight of the soft loss. Negative (the default): 1 − alpha.
    pub soft_weight: f64,
    pub soft_loss: SoftLoss,
    pub temperature: f64,
    pub augment: AugmentSection,
}

impl Default for DistillSection {
    fn default() -> Self {
        Self {
            alpha: 0.0,
            soft_weight: -1.0,
            soft_loss: SoftLoss::Mse,
            temperature: 1.0,
            augment: AugmentSection::default(),
        }
    }
}

impl DistillSection {
    pub fn soft_weight(&self) -> f64 {
        if self.soft_weight < 0.0 {
            1.0 - self.alpha
        } else {
            self.soft_weight
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportSection {
    /// Reports go to `<dir>/<recipe name>/`.
    pub dir: PathBuf,
    /// Page title. Empty: derived from the recipe name.
    pub title: String,
    /// Batch size of the inference-time measurement.
    pub timing_batch: usize,
    /// Timed passes over the test split (after one untimed warm-up pass); the best is reported.
    pub timing_repeats: usize,
    /// A folder of templates that replace kdrun's own (`report.html`, `report.md`, `sweep.html`,
    /// `sweep.md`, `index.html`, `index.md`, `style.css`; see `templates/`). Empty: kdrun's.
    pub templates: PathBuf,
}

impl Default for ReportSection {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("reports"),
            title: String::new(),
            timing_batch: 256,
            timing_repeats: 3,
            templates: PathBuf::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// A hardware GPU adapter through wgpu if one answers, else the CPU backend.
    Auto,
    Wgpu,
    Cpu,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSection {
    pub backend: BackendChoice,
    /// Seed of initialization, shuffling and dropout.
    pub seed: u64,
    /// CPU threads for the CPU backend. 0: all cores.
    pub threads: usize,
    /// Where results and artifacts go (a run folder per run).
    pub store: PathBuf,
}

impl Default for RuntimeSection {
    fn default() -> Self {
        Self {
            backend: BackendChoice::Auto,
            seed: 42,
            threads: 0,
            store: PathBuf::from("runs"),
        }
    }
}

/// The recipe keys that hold paths; they are resolved against the folder of the layer that set
/// them.
pub const PATH_KEYS: &[&str] = &[
    "data.train",
    "data.test",
    "report.dir",
    "report.templates",
    "runtime.store",
    "teacher.checkpoint",
    "student.vectors",
];

/// Recipe keys that hold lists of paths, resolved like [`PATH_KEYS`].
pub const PATH_LIST_KEYS: &[&str] = &["teacher.pretrain.extra"];
