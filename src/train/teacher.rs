//! The teacher: a BERT classifier trained from scratch with cross-entropy.

use super::{fit, FitSettings, Fitted};
use crate::data::batch::{Batcher, Encoded};
use crate::distill::cross_entropy;
use crate::models::{BertClassifier, BertConfig, Classifier};
use crate::recipe::Recipe;
use anyhow::Result;
use burn::tensor::Device;

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

pub fn fit_settings(recipe: &Recipe) -> FitSettings {
    let t = &recipe.teacher;
    FitSettings {
        stage: "teacher".into(),
        epochs: t.epochs,
        lr: t.lr,
        batch_size: t.batch_size,
        warmup: t.warmup,
        weight_decay: t.weight_decay,
        grad_clip: Some(1.0),
        seed: recipe.runtime.seed,
    }
}

/// Initialize (seeded) and fine-tune a teacher on `train`, selecting on `valid`.
pub fn train_teacher(
    recipe: &Recipe,
    config: &BertConfig,
    batcher: &Batcher,
    train: &[Encoded],
    valid: &[Encoded],
    device: &Device,
) -> Result<Fitted<BertClassifier>> {
    device.seed(recipe.runtime.seed);
    let model = config.init_classifier(device);
    fit(
        model,
        batcher,
        train,
        valid,
        device,
        &fit_settings(recipe),
        |m, b| Ok(cross_entropy(m.logits(b), b.labels.clone())),
    )
}
