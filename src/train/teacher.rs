//! The teacher: a BERT classifier, trained from scratch or started from a Hugging Face
//! checkpoint, optionally further pre-trained with masked-LM, partly frozen, then fine-tuned with
//! cross-entropy.

use super::{fit, FitSettings, Fitted};
use crate::data::batch::{Batcher, Encoded};
use crate::data::{CharVocab, HfTokenizer, TeacherTokenizer};
use crate::distill::cross_entropy;
use crate::models::bert::mlm::BertMaskedLm;
use crate::models::hf::Checkpoint;
use crate::models::{BertClassifier, BertConfig, Classifier};
use crate::recipe::{Freeze, Recipe};
use anyhow::{bail, Result};
use burn::module::Module;
use burn::nn::DropoutConfig;
use burn::tensor::Device;

/// Where the teacher starts: its tokenizer, configuration and (for a checkpoint) weights.
pub struct TeacherSetup {
    pub tokenizer: TeacherTokenizer,
    pub config: BertConfig,
    pub checkpoint: Option<Checkpoint>,
}

/// The BERT configuration a recipe describes, for a vocabulary and a list of class names.
pub fn bert_config(recipe: &Recipe, vocab_size: usize, class_names: &[String]) -> BertConfig {
    let t = &recipe.teacher;
    BertConfig::new(
        vocab_size,
        t.hidden,
        t.layers,
        t.heads,
        t.intermediate(),
        recipe.data.max_len,
        t.dropout,
        class_names,
    )
}

/// Open the checkpoint (if the recipe names one) or describe a teacher from scratch over the
/// character vocabulary.
pub fn setup(recipe: &Recipe, vocab: &CharVocab, class_names: &[String]) -> Result<TeacherSetup> {
    let dir = &recipe.teacher.checkpoint;
    if dir.as_os_str().is_empty() {
        return Ok(TeacherSetup {
            tokenizer: TeacherTokenizer::Chars(vocab.clone()),
            config: bert_config(recipe, vocab.len(), class_names),
            checkpoint: None,
        });
    }
    let checkpoint = Checkpoint::open(dir)?;
    let tokenizer = HfTokenizer::open(dir)?;
    let mut config = checkpoint.config.clone();
    if recipe.data.max_len > config.max_position_embeddings {
        bail!(
            "data.max_len = {} but the checkpoint {} takes at most {} positions",
            recipe.data.max_len,
            dir.display(),
            config.max_position_embeddings
        );
    }
    config.id2label = class_names
        .iter()
        .enumerate()
        .map(|(i, n)| (i.to_string(), n.clone()))
        .collect();
    Ok(TeacherSetup {
        tokenizer: TeacherTokenizer::WordPiece(Box::new(tokenizer)),
        config,
        checkpoint: Some(checkpoint),
    })
}

impl TeacherSetup {
    /// The classifier to fine-tune: the checkpoint's (with a new head where needed) or a new one.
    pub fn classifier(&self, device: &Device) -> Result<(BertClassifier, Vec<String>)> {
        let labels = self.config.num_labels();
        match &self.checkpoint {
            Some(c) => BertClassifier::load(&self.config, &c.weights, labels, device),
            None => Ok((self.config.init_classifier(device), Vec::new())),
        }
    }

    /// The masked-LM model to further pre-train.
    pub fn masked_lm(&self, device: &Device) -> Result<(BertMaskedLm, Vec<String>)> {
        match &self.checkpoint {
            Some(c) => BertMaskedLm::load(&self.config, &c.weights, device),
            None => Ok((BertMaskedLm::new(&self.config, device), Vec::new())),
        }
    }

    /// A classifier over a pre-trained encoder, with a new head.
    pub fn classifier_over(&self, mlm: BertMaskedLm, device: &Device) -> BertClassifier {
        let c = &self.config;
        BertClassifier {
            bert: mlm.bert,
            dropout: DropoutConfig::new(c.classifier_dropout.unwrap_or(c.hidden_dropout_prob))
                .init(),
            classifier: c.linear(c.hidden_size, c.num_labels(), device),
        }
    }
}

/// Freeze what `freeze` says; returns the model and its trainable parameter count.
pub fn apply_freeze(mut model: BertClassifier, freeze: Freeze) -> Result<(BertClassifier, usize)> {
    let total = model.num_params();
    let mut frozen = 0;
    match freeze {
        Freeze::None => {}
        Freeze::Embeddings => {
            frozen += model.bert.embeddings.num_params();
            model.bert.embeddings = model.bert.embeddings.freeze();
        }
        Freeze::AllButLast(k) => {
            let n = model.bert.encoder.layer.len();
            if k > n {
                bail!("teacher.freeze = {{ all-but-last = {k} }} but the teacher has {n} layers");
            }
            frozen += model.bert.embeddings.num_params();
            model.bert.embeddings = model.bert.embeddings.freeze();
            let layers = std::mem::take(&mut model.bert.encoder.layer);
            model.bert.encoder.layer = layers
                .into_iter()
                .enumerate()
                .map(|(i, l)| {
                    if i < n - k {
                        frozen += l.num_params();
                        l.freeze()
                    } else {
                        l
                    }
                })
                .collect();
        }
    }
    Ok((model, total - frozen))
}

pub fn fit_settings(recipe: &Recipe, stage: &str) -> FitSettings {
    let t = &recipe.teacher;
    FitSettings {
        stage: stage.into(),
        epochs: t.epochs,
        lr: t.lr,
        batch_size: t.batch_size,
        warmup: t.warmup,
        weight_decay: t.weight_decay,
        grad_clip: Some(1.0),
        seed: recipe.runtime.seed,
    }
}

/// Fine-tune `model` with cross-entropy on `train`, selecting on `valid`.
pub fn fine_tune(
    recipe: &Recipe,
    stage: &str,
    model: BertClassifier,
    batcher: &Batcher,
    train: &[Encoded],
    valid: &[Encoded],
    device: &Device,
) -> Result<Fitted<BertClassifier>> {
    fit(
        model,
        batcher,
        train,
        valid,
        device,
        &fit_settings(recipe, stage),
        |m, b| Ok(cross_entropy(m.logits(b), b.labels.clone())),
    )
}
