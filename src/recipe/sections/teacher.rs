//! `[teacher]` and `[teacher.pretrain]`: the teacher model, where it starts, how it is further
//! pre-trained and fine-tuned.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TeacherArch {
    Bert,
    Xlnet,
    /// The TF-IDF n-gram linear model, with `[baseline]`'s settings (the same fit as the
    /// baseline row).
    Linear,
    /// The BiLSTM, with `[student]`'s settings, trained on the hard labels (the same fit as the
    /// "student alone" row).
    Bilstm,
    /// TextGCN, with `[textgcn]`'s settings (the same fit as the TextGCN row); transductive: it
    /// labels the documents of its graph only (an ensemble's other members label the synthetic
    /// sentences of an augmented transfer set).
    Textgcn,
}

impl TeacherArch {
    /// The recipe's spelling (`"bert"`, `"xlnet"`, `"linear"`, `"bilstm"`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Bert => "bert",
            Self::Xlnet => "xlnet",
            Self::Linear => "linear",
            Self::Bilstm => "bilstm",
            Self::Textgcn => "textgcn",
        }
    }

    /// A transformer of `models::TeacherConfig` (tokenizer, checkpoint, further pre-training),
    /// rather than one of the models kdrun also trains elsewhere.
    pub fn is_transformer(self) -> bool {
        matches!(self, Self::Bert | Self::Xlnet)
    }

    /// The further pre-training objective an architecture has (the transformers' only; the
    /// others are never further pre-trained, which validation enforces).
    pub fn objective(self) -> PretrainObjective {
        match self {
            Self::Xlnet => PretrainObjective::Plm,
            _ => PretrainObjective::Mlm,
        }
    }

    /// What the distillation loss compares when `distill.targets` is left out: logits for the
    /// networks, log-probabilities for the linear model (its scores have no comparable scale).
    pub fn default_targets(self) -> SoftTargets {
        match self {
            Self::Linear => SoftTargets::LogProbs,
            _ => SoftTargets::Logits,
        }
    }
}

/// How an ensemble's members' outputs are combined (weighted mean).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    /// Mean of the members' logits.
    Logits,
    /// Mean of the members' log-probabilities (log-softmax of their logits): members with
    /// scores on different scales weigh by their confidence, not their scale.
    #[default]
    LogProbs,
}

impl Combine {
    pub fn name(self) -> &'static str {
        match self {
            Self::Logits => "logits",
            Self::LogProbs => "log_probs",
        }
    }
}

/// What the distillation loss compares, student against teacher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SoftTargets {
    /// The raw logits (divided by the temperature).
    Logits,
    /// log-softmax of the logits divided by the temperature (the same for KL, which is
    /// shift-invariant; for MSE it removes each row's arbitrary offset).
    LogProbs,
}

/// How the teacher is further pre-trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PretrainObjective {
    /// Masked-LM (BERT).
    Mlm,
    /// Permutation-LM (XLNet).
    Plm,
}

impl PretrainObjective {
    pub fn name(self) -> &'static str {
        match self {
            Self::Mlm => "mlm",
            Self::Plm => "plm",
        }
    }
}

/// Which teacher parameters fine-tuning leaves unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Freeze {
    /// Everything trains.
    None,
    /// The embeddings stay fixed.
    Embeddings,
    /// `{ all-but-last = K }`: only the last K encoder layers, the pooler and the head train.
    AllButLast(usize),
}

/// Further pre-training of the teacher before fine-tuning (off while `steps` and `epochs` are
/// both 0): masked-LM for BERT, permutation-LM for XLNet. Keys of the other objective are
/// errors; left out, each objective's keys take their defaults when the recipe is resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainSection {
    /// `"mlm"` or `"plm"`. Left out: the architecture's (BERT: mlm, XLNet: plm).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objective: Option<PretrainObjective>,
    /// Optimizer steps (used when `epochs` is 0).
    pub steps: usize,
    /// Passes over the corpus (overrides `steps` when above 0).
    pub epochs: usize,
    /// Masked-LM: share of tokens selected for prediction; of those 80 % become `[MASK]`, 10 %
    /// a random token, 10 % stay. Left out: 0.15.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mask_prob: Option<f64>,
    /// Masked-LM: select whole words (jieba-rs segmentation) instead of single tokens. Left
    /// out: false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whole_word: Option<bool>,
    /// Permutation-LM: the share of tokens predicted (transformers'
    /// `DataCollatorForPermutationLanguageModeling`). Left out: 1/6.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plm_probability: Option<f64>,
    /// Permutation-LM: the longest span of tokens predicted together. Left out: 5.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_span_length: Option<usize>,
    /// Peak learning rate of pre-training (AdamW).
    pub lr: f64,
    /// Sequences per pre-training step.
    pub batch_size: usize,
    /// Fraction of pre-training steps spent warming the learning rate up.
    pub warmup: f64,
    /// AdamW weight decay of pre-training.
    pub weight_decay: f64,
    /// Extra corpus files, one sentence per line, beside the training texts.
    pub extra: Vec<PathBuf>,
    /// Share of the corpus held out to report the objective's loss and accuracy before and
    /// after.
    pub holdout: f64,
    /// Also fine-tune a teacher without further pre-training (same seed and sizes), for the
    /// report's comparison.
    pub compare: bool,
}

impl Default for PretrainSection {
    fn default() -> Self {
        Self {
            objective: None,
            steps: 0,
            epochs: 0,
            mask_prob: None,
            whole_word: None,
            plm_probability: None,
            max_span_length: None,
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

/// The objective-specific keys, by objective.
pub const MLM_KEYS: [&str; 2] = ["mask_prob", "whole_word"];
pub const PLM_KEYS: [&str; 2] = ["plm_probability", "max_span_length"];

impl PretrainSection {
    pub fn enabled(&self) -> bool {
        self.steps > 0 || self.epochs > 0
    }

    /// The objective: the recipe's, else the architecture's.
    pub fn objective(&self, arch: TeacherArch) -> PretrainObjective {
        self.objective.unwrap_or(arch.objective())
    }

    pub fn mask_prob(&self) -> f64 {
        self.mask_prob.unwrap_or(0.15)
    }

    pub fn whole_word(&self) -> bool {
        self.whole_word.unwrap_or(false)
    }

    pub fn plm_probability(&self) -> f64 {
        self.plm_probability.unwrap_or(1.0 / 6.0)
    }

    pub fn max_span_length(&self) -> usize {
        self.max_span_length.unwrap_or(5)
    }

    /// The objective's keys the recipe set, by objective.
    pub fn keys_set(&self) -> [(PretrainObjective, &'static str, bool); 4] {
        [
            (
                PretrainObjective::Mlm,
                MLM_KEYS[0],
                self.mask_prob.is_some(),
            ),
            (
                PretrainObjective::Mlm,
                MLM_KEYS[1],
                self.whole_word.is_some(),
            ),
            (
                PretrainObjective::Plm,
                PLM_KEYS[0],
                self.plm_probability.is_some(),
            ),
            (
                PretrainObjective::Plm,
                PLM_KEYS[1],
                self.max_span_length.is_some(),
            ),
        ]
    }

    /// Fill in the objective and its keys' defaults; the other objective's keys stay out.
    pub fn resolve(&mut self, arch: TeacherArch) {
        let objective = self.objective(arch);
        self.objective = Some(objective);
        match objective {
            PretrainObjective::Mlm => {
                self.mask_prob = Some(self.mask_prob());
                self.whole_word = Some(self.whole_word());
            }
            PretrainObjective::Plm => {
                self.plm_probability = Some(self.plm_probability());
                self.max_span_length = Some(self.max_span_length());
            }
        }
    }
}

/// The teacher: a BERT or XLNet encoder trained from scratch or loaded from a Hugging Face
/// checkpoint, optionally further pre-trained (masked-LM / permutation-LM), then fine-tuned and
/// selected on validation accuracy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TeacherSection {
    /// `"bert"` or `"xlnet"`.
    pub arch: TeacherArch,
    /// A Hugging Face folder of that architecture (config.json, tokenizer.json — or vocab.txt for
    /// BERT —, model.safetensors or pytorch_model.bin). Empty: train from scratch with the sizes
    /// below and a character vocabulary.
    pub checkpoint: PathBuf,
    pub freeze: Freeze,
    pub pretrain: PretrainSection,
    /// Save the fine-tuned teacher as a Hugging Face folder in the run folder.
    pub export: bool,
    /// Encoder layers (from scratch; a checkpoint brings its own).
    pub layers: usize,
    /// Hidden width (from scratch).
    pub hidden: usize,
    /// Attention heads (from scratch; a divisor of `hidden`).
    pub heads: usize,
    /// Feed-forward width. Left out: 4 × hidden (filled in when the recipe is resolved).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intermediate: Option<usize>,
    /// Dropout probability (from scratch; a checkpoint brings its own).
    pub dropout: f64,
    /// Fine-tuning epochs; the epoch with the best validation accuracy is kept.
    pub epochs: usize,
    /// Peak learning rate (AdamW).
    pub lr: f64,
    /// Examples per optimizer step.
    pub batch_size: usize,
    /// Fraction of all steps spent warming the learning rate up linearly; it then decays
    /// linearly to 0.
    pub warmup: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// An ensemble: `[[teacher.members]]`, each a whole teacher section of its own (its keys'
    /// defaults are the built-in ones, not this section's). Empty: the teacher is this section.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<TeacherSection>,
    /// A member's weight in the ensemble's mean.
    #[serde(skip_serializing_if = "is_one")]
    pub weight: f64,
    /// How the members are combined (with `members`).
    #[serde(skip_serializing_if = "is_default_combine")]
    pub combine: Combine,
    /// Scale each member's logits by the temperature that fits the validation split best
    /// (temperature scaling) before combining them (with `members`), so an over-confident member
    /// does not outvote a calibrated one.
    #[serde(skip_serializing_if = "is_true")]
    pub calibrate: bool,
}

/// `[teacher]` as a recipe prints it (the resolved TOML loads back to the same recipe): whole
/// for a single teacher; beside `[[teacher.members]]` only the ensemble's own keys, as the others
/// have no effect there (and are refused when a recipe sets them).
pub(super) fn serialize_in_recipe<S: serde::Serializer>(
    t: &TeacherSection,
    s: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Ensemble<'a> {
        combine: Combine,
        calibrate: bool,
        members: &'a [TeacherSection],
    }
    if t.members.is_empty() {
        t.serialize(s)
    } else {
        Ensemble {
            combine: t.combine,
            calibrate: t.calibrate,
            members: &t.members,
        }
        .serialize(s)
    }
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_one(x: &f64) -> bool {
    *x == 1.0
}

fn is_default_combine(c: &Combine) -> bool {
    *c == Combine::default()
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
            members: Vec::new(),
            weight: 1.0,
            combine: Combine::default(),
            calibrate: true,
        }
    }
}

impl TeacherSection {
    /// The feed-forward width: the recipe's, else 4 × hidden.
    pub fn intermediate(&self) -> usize {
        self.intermediate.unwrap_or(4 * self.hidden)
    }

    /// Fill in the derived keys (`intermediate`; the transformers' pre-training objective), of
    /// every member too.
    pub fn resolve(&mut self) {
        self.intermediate = Some(self.intermediate());
        if self.arch.is_transformer() {
            self.pretrain.resolve(self.arch);
        }
        self.members.iter_mut().for_each(Self::resolve);
    }

    /// What the distillation loss compares by default for this teacher: an ensemble that
    /// averages log-probabilities, or a linear teacher, gives log-probabilities.
    pub fn default_targets(&self) -> SoftTargets {
        if self.members.is_empty() {
            self.arch.default_targets()
        } else {
            match self.combine {
                Combine::LogProbs => SoftTargets::LogProbs,
                Combine::Logits => SoftTargets::Logits,
            }
        }
    }
}
