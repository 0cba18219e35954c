//! `[distill]` and `[distill.augment]`: the loss the distilled student learns from and its
//! transfer set.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SoftLoss {
    /// Mean squared error between student and teacher logits, both divided by T.
    Mse,
    /// KL(softmax(teacher/T) ‖ softmax(student/T)) × T², averaged over the batch.
    Kl,
}

/// The augmented transfer set of Tang et al. 2019 (§3.2), off while `n_iter` is 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DistillSection {
    /// Weight of the hard-label cross-entropy.
    pub alpha: f64,
    /// Weight of the soft loss. Left out: 1 − alpha (filled in when the recipe is resolved).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soft_weight: Option<f64>,
    /// The loss between the student's and the teacher's outputs: `"mse"` on logits (Tang et al.) or `"kl"` on temperature-softened probabilities.
    pub soft_loss: SoftLoss,
    /// Temperature T: both sides' logits are divided by it (`"kl"` is then scaled by T²).
    pub temperature: f64,
    /// What the soft loss compares: `"logits"` or `"log_probs"`. Left out: the teacher's
    /// default (logits for BERT, XLNet and the BiLSTM; log-probabilities for the linear model
    /// and for an ensemble that averages log-probabilities).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<super::SoftTargets>,
    pub augment: AugmentSection,
}

impl Default for DistillSection {
    fn default() -> Self {
        Self {
            alpha: 0.0,
            soft_weight: None,
            soft_loss: SoftLoss::Mse,
            temperature: 1.0,
            targets: None,
            augment: AugmentSection::default(),
        }
    }
}

impl DistillSection {
    /// The soft loss's weight: the recipe's, else 1 − alpha.
    pub fn soft_weight(&self) -> f64 {
        self.soft_weight.unwrap_or(1.0 - self.alpha)
    }
}

impl super::Recipe {
    /// What the soft loss compares: the recipe's `distill.targets`, else the teacher's default.
    pub fn soft_targets(&self) -> super::SoftTargets {
        self.distill
            .targets
            .unwrap_or_else(|| self.teacher.default_targets())
    }
}
