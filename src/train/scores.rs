//! Held-out scores of a language-model objective (masked-LM, permutation-LM): the loss and
//! accuracy of its predictions, summed batch by batch.

use crate::distill::cross_entropy;
use anyhow::{anyhow, Result};
use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

/// Masked-LM loss and accuracy on a held-out slice.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MlmScores {
    pub loss: f64,
    pub accuracy: f64,
    pub predictions: usize,
}

/// Loss and hits summed over held-out batches.
#[derive(Debug, Default)]
pub struct ScoreSum {
    loss: f64,
    correct: usize,
    total: usize,
}

impl ScoreSum {
    /// Add one batch's logits `[n, vocab]` against its targets `[n]`.
    pub fn add(&mut self, logits: Tensor<2>, targets: Tensor<1, Int>) -> Result<()> {
        let [n, _] = logits.dims();
        if n == 0 {
            return Ok(());
        }
        let loss: f32 = cross_entropy(logits.clone(), targets.clone()).into_scalar();
        let hits: Vec<i64> = logits
            .argmax(1)
            .reshape([n])
            .equal(targets)
            .int()
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .map_err(|e| anyhow!("cannot read predictions: {e:?}"))?;
        self.loss += loss as f64 * n as f64;
        self.correct += hits.iter().filter(|h| **h != 0).count();
        self.total += n;
        Ok(())
    }

    /// Mean loss and accuracy per prediction.
    pub fn scores(&self) -> MlmScores {
        MlmScores {
            loss: self.loss / self.total.max(1) as f64,
            accuracy: self.correct as f64 / self.total.max(1) as f64,
            predictions: self.total,
        }
    }
}
