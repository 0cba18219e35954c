//! The teacher, of any architecture behind `models::teacher` (BERT, XLNet): from the recipe's sizes
//! or a Hugging Face checkpoint, optionally further pre-trained, partly frozen, then fine-tuned
//! with cross-entropy.

use super::{fit, FitSettings, Fitted};
use crate::data::batch::{Batcher, Encoded, TokenBatch};
use crate::data::{CharVocab, HfTokenizer, TeacherTokenizer};
use crate::distill::cross_entropy;
use crate::models::xlnet::XlnetConfig;
use crate::models::Checkpoint;
use crate::models::{
    BertConfig, Classifier, FreezePlan, PretrainModel, TeacherConfig, TeacherModel,
};
use crate::recipe::{Freeze, Optim, TeacherArch, TeacherSection};
use anyhow::{bail, Result};
use burn::tensor::{Device, Tensor};

/// Where the teacher starts: its tokenizer, configuration and (for a checkpoint) weights.
pub struct TeacherSetup {
    pub tokenizer: TeacherTokenizer,
    pub config: TeacherConfig,
    pub checkpoint: Option<Checkpoint>,
}

/// The configuration a recipe describes for a teacher from scratch, for a vocabulary and a list
/// of class names.
pub fn scratch_config(
    t: &TeacherSection,
    max_len: usize,
    vocab_size: usize,
    class_names: &[String],
) -> Result<TeacherConfig> {
    Ok(match t.arch {
        TeacherArch::Bert => TeacherConfig::Bert(BertConfig::new(
            vocab_size,
            t.hidden,
            t.layers,
            t.heads,
            t.intermediate(),
            max_len,
            t.dropout,
            class_names,
        )),
        TeacherArch::Xlnet => {
            let mut c = XlnetConfig::new(
                vocab_size,
                t.hidden,
                t.layers,
                t.heads,
                t.intermediate(),
                class_names,
            );
            c.dropout = t.dropout;
            c.summary_last_dropout = t.dropout;
            c.pad_token_id = crate::data::vocab::PAD as usize;
            TeacherConfig::Xlnet(c)
        }
        other => bail!(
            "a {} teacher is not a transformer: it has no tokenizer or configuration of its own",
            other.name()
        ),
    })
}

/// Open the checkpoint (if the teacher section names one) or describe a teacher from scratch
/// over the character vocabulary; inputs of `max_len` tokens.
pub fn setup(
    t: &TeacherSection,
    max_len: usize,
    vocab: &CharVocab,
    class_names: &[String],
) -> Result<TeacherSetup> {
    let dir = &t.checkpoint;
    if dir.as_os_str().is_empty() {
        let config = scratch_config(t, max_len, vocab.len(), class_names)?;
        return Ok(TeacherSetup {
            tokenizer: TeacherTokenizer::Chars(vocab.clone(), config.layout()),
            config,
            checkpoint: None,
        });
    }
    let checkpoint = Checkpoint::open(dir)?;
    let (unfit, tokenizer) = unfit(t, max_len, &checkpoint);
    if let Some(u) = unfit.first() {
        bail!("{}: {}", u.key(), u.message(t, max_len, &checkpoint));
    }
    let tokenizer = tokenizer.ok_or_else(|| anyhow::anyhow!("{}: no tokenizer", dir.display()))?;
    let mut config = checkpoint.config.clone();
    config.set_labels(class_names);
    Ok(TeacherSetup {
        tokenizer: TeacherTokenizer::WordPiece(Box::new(tokenizer)),
        config,
        checkpoint: Some(checkpoint),
    })
}

/// What makes a checkpoint folder unfit for a teacher section: the one list the run's set-up
/// ([`setup`]) and `kdrun check`'s pre-flight (`pipeline::preflight`) both read.
#[derive(Debug, Clone, PartialEq)]
pub enum Unfit {
    /// The checkpoint is of another architecture (its name, lower case).
    Arch(String),
    /// A RoBERTa-layout checkpoint (its `model_type`) further pre-trained: kdrun does not read or
    /// write RoBERTa's masked-LM head.
    Pretrain(String),
    /// The tokenizer cannot be read, or lacks a role (why), or puts its classification token on
    /// the other side than the model reads it.
    Tokenizer(String),
    /// `data.max_len` beyond the checkpoint's positions (their count).
    Positions(usize),
}

impl Unfit {
    /// The key of the teacher's section it is about (`arch`, `pretrain`, `checkpoint`), or None
    /// for `data.max_len`.
    pub fn teacher_key(&self) -> Option<&'static str> {
        match self {
            Self::Arch(_) => Some("arch"),
            Self::Pretrain(_) => Some("pretrain"),
            Self::Tokenizer(_) => Some("checkpoint"),
            Self::Positions(_) => None,
        }
    }

    /// The recipe key it is about, in a lone teacher's section.
    pub fn key(&self) -> String {
        self.teacher_key()
            .map_or("data.max_len".into(), |k| format!("teacher.{k}"))
    }

    /// What was expected and what was found, for the checkpoint `c` of section `t`.
    pub fn message(&self, t: &TeacherSection, max_len: usize, c: &Checkpoint) -> String {
        let dir = c.dir.display();
        match self {
            Self::Arch(arch) => format!(
                "expected \"{arch}\" (the architecture of the checkpoint {dir}), found \"{}\"",
                t.arch.name()
            ),
            Self::Pretrain(model_type) => format!(
                "no further pre-training (teacher.pretrain.steps or epochs = 0) for the \
                 {model_type} checkpoint {dir}: kdrun does not read or write RoBERTa's masked-LM \
                 head (lm_head); fine-tune it directly"
            ),
            Self::Tokenizer(why) => why.clone(),
            Self::Positions(n) => {
                format!("at most {n} (the checkpoint's positions), found {max_len}")
            }
        }
    }
}

/// Everything that makes the opened checkpoint `c` unfit for `t` with inputs of `max_len` tokens
/// (another architecture is the only thing said then), and its tokenizer where it opens.
pub fn unfit(
    t: &TeacherSection,
    max_len: usize,
    c: &Checkpoint,
) -> (Vec<Unfit>, Option<HfTokenizer>) {
    let arch = c.config.arch_name();
    if !arch.eq_ignore_ascii_case(t.arch.name()) {
        return (vec![Unfit::Arch(arch.to_lowercase())], None);
    }
    let mut found = Vec::new();
    if let TeacherConfig::Bert(b) = &c.config {
        if t.pretrain.enabled() && !b.family().has_mlm_head() {
            found.push(Unfit::Pretrain(b.model_type.clone()));
        }
    }
    let tokenizer = match HfTokenizer::open(&c.dir) {
        Err(e) => {
            found.push(Unfit::Tokenizer(format!("{e:#}")));
            None
        }
        Ok(tok) => {
            if tok.layout() != c.config.layout() {
                found.push(Unfit::Tokenizer(format!(
                    "{}: the tokenizer puts its classification token {} but {arch} reads it {}",
                    c.dir.display(),
                    if tok.cls_last { "last" } else { "first" },
                    if tok.cls_last { "first" } else { "last" },
                )));
            }
            Some(tok)
        }
    };
    let positions = c.config.max_positions();
    if positions > 0 && max_len > positions {
        found.push(Unfit::Positions(positions));
    }
    (found, tokenizer)
}

impl TeacherSetup {
    /// The classifier to fine-tune: the checkpoint's (with a new head where needed) or a new one.
    pub fn classifier(&self, device: &Device) -> Result<(TeacherModel, Vec<String>)> {
        match &self.checkpoint {
            Some(c) => self.config.load_classifier(c.weights()?, device),
            None => Ok((self.config.init_classifier(device), Vec::new())),
        }
    }

    /// The model to further pre-train.
    pub fn pretrain_model(&self, device: &Device) -> Result<(PretrainModel, Vec<String>)> {
        match &self.checkpoint {
            Some(c) => self.config.load_pretrain(c.weights()?, device),
            None => Ok((self.config.init_pretrain(device), Vec::new())),
        }
    }

    /// A classifier over a pre-trained encoder, with a new head.
    pub fn classifier_over(
        &self,
        pretrained: PretrainModel,
        device: &Device,
    ) -> Result<TeacherModel> {
        self.config.classifier_over(pretrained, device)
    }
}

/// Freeze what the recipe's `teacher.freeze` says; the model and its trainable parameter count.
pub fn apply_freeze(model: TeacherModel, freeze: Freeze) -> Result<(TeacherModel, usize)> {
    model.freeze(match freeze {
        Freeze::None => FreezePlan::None,
        Freeze::Embeddings => FreezePlan::Embeddings,
        Freeze::AllButLast(k) => FreezePlan::AllButLast(k),
    })
}

/// How a teacher is fine-tuned: `optim`, the global gradient norm clipped to 1 (as BERT's
/// recipe does), batches drawn from `seed`.
pub fn fit_settings(stage: &str, optim: Optim, seed: u64) -> FitSettings {
    FitSettings::new(stage, optim, Some(1.0), seed)
}

/// Fine-tune `model` with cross-entropy on `train`, selecting on `valid`.
pub fn fine_tune(
    settings: &FitSettings,
    model: TeacherModel,
    batcher: &Batcher,
    train: &[Encoded],
    valid: &[Encoded],
    device: &Device,
) -> Result<Fitted<TeacherModel>> {
    fit(model, batcher, train, valid, device, settings, |m, b| {
        Ok(fine_tune_loss(m, b))
    })
}

/// The loss a teacher is fine-tuned on: cross-entropy of its logits against the batch's labels.
pub fn fine_tune_loss(model: &TeacherModel, batch: &TokenBatch) -> Tensor<1> {
    cross_entropy(model.logits(batch), batch.labels.clone())
}
