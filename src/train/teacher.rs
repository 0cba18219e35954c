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
    let arch = arch_of(&checkpoint.config);
    if arch != t.arch {
        bail!(
            "teacher.arch = {:?} but the checkpoint {} is {} (set teacher.arch = {:?})",
            t.arch.name(),
            dir.display(),
            checkpoint.config.arch_name(),
            arch.name()
        );
    }
    let tokenizer = HfTokenizer::open(dir)?;
    if tokenizer.layout() != checkpoint.config.layout() {
        bail!(
            "{}: the tokenizer puts its classification token {} but {} reads it {}",
            dir.display(),
            if tokenizer.cls_last { "last" } else { "first" },
            checkpoint.config.arch_name(),
            if tokenizer.cls_last { "first" } else { "last" },
        );
    }
    let mut config = checkpoint.config.clone();
    if max_len > config.max_positions() {
        bail!(
            "data.max_len = {} but the checkpoint {} takes at most {} positions",
            max_len,
            dir.display(),
            config.max_positions()
        );
    }
    config.set_labels(class_names);
    Ok(TeacherSetup {
        tokenizer: TeacherTokenizer::WordPiece(Box::new(tokenizer)),
        config,
        checkpoint: Some(checkpoint),
    })
}

/// The recipe's name for a checkpoint's architecture.
fn arch_of(config: &TeacherConfig) -> TeacherArch {
    match config {
        TeacherConfig::Bert(_) => TeacherArch::Bert,
        TeacherConfig::Xlnet(_) => TeacherArch::Xlnet,
    }
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
