//! Permutation language modelling (Yang et al. 2019, XLNet §2.2) as transformers'
//! `DataCollatorForPermutationLanguageModeling` prepares it: spans of tokens to predict, a
//! factorisation order, and the attention mask that order implies.
//!
//! Per sequence (its length must be even): repeatedly draw a span length in
//! `1..=max_span_length`, reserve `span / plm_probability` tokens of context and mark a span at a
//! random start inside it; special tokens and padding are never predicted. Predicted tokens read
//! `<mask>` in the input. The factorisation order splits the positions into two halves and
//! shuffles them together (position `k` and `k + L/2` keep their distance); tokens that are not
//! predicted get order −1, so every position sees them. `perm_mask[i][j]` is true where
//! position `i` may NOT attend to `j`: `j` is predicted and comes no earlier than `i` in the
//! order — so a predicted token never sees itself (through the query stream).
//!
//! One departure from transformers: there special tokens and padding keep their place in the
//! order (only ordinary context gets −1), so a `<sep>` or `<cls>` that comes after a target reads
//! the target's content stream, and the target's query stream reads it back one layer later: with
//! two layers or more a target sees its own input. Here special tokens and padding get −1 as
//! context does (they see no predicted token), which closes that path at any depth.

use super::scores::{MlmScores, ScoreSum};
use crate::models::xlnet::XlnetLmHeadModel;
use anyhow::{bail, Result};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::rngs::ChaCha8Rng;
use rand::seq::SliceRandom;
use rand::{Rng, RngExt, SeedableRng};

/// The collator's settings (transformers' defaults: 1/6 and 5).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlmSettings {
    pub plm_probability: f64,
    pub max_span_length: usize,
}

impl Default for PlmSettings {
    fn default() -> Self {
        Self {
            plm_probability: 1.0 / 6.0,
            max_span_length: 5,
        }
    }
}

/// One prepared sequence of length `L`.
#[derive(Debug, Clone, PartialEq)]
pub struct PlmExample {
    /// The input ids, predicted positions replaced by `<mask>`.
    pub input: Vec<u32>,
    /// The original id at each predicted position, `None` elsewhere (transformers' −100).
    pub labels: Vec<Option<u32>>,
    /// `L × L`, row-major: `perm_mask[i * L + j]` = position `i` may not attend to `j`.
    pub perm_mask: Vec<bool>,
}

impl PlmExample {
    /// The predicted positions, ascending (the rows of the identity `target_mapping` that carry
    /// a label).
    pub fn targets(&self) -> Vec<usize> {
        (0..self.labels.len())
            .filter(|&i| self.labels[i].is_some())
            .collect()
    }
}

/// Prepare one sequence. `special[i]` marks special tokens and padding (never predicted).
pub fn permute(
    ids: &[u32],
    special: &[bool],
    mask_id: u32,
    settings: PlmSettings,
    rng: &mut impl Rng,
) -> Result<PlmExample> {
    let len = ids.len();
    if !len.is_multiple_of(2) {
        bail!("permutation LM needs sequences of even length, found {len}");
    }
    if special.len() != len {
        bail!("{} special-token flags for {len} tokens", special.len());
    }
    if !(settings.plm_probability > 0.0 && settings.plm_probability <= 1.0)
        || settings.max_span_length == 0
    {
        bail!(
            "plm_probability must lie in (0, 1] and max_span_length be at least 1, found {} and {}",
            settings.plm_probability,
            settings.max_span_length
        );
    }
    // Spans to predict.
    let mut masked = vec![false; len];
    let mut cur = 0;
    while cur < len {
        let span = rng.random_range(1..=settings.max_span_length);
        let context = (span as f64 / settings.plm_probability) as usize;
        let start = cur + rng.random_range(0..=context.saturating_sub(span));
        for m in masked.iter_mut().skip(start).take(span) {
            *m = true;
        }
        cur += context.max(1);
    }
    for (m, s) in masked.iter_mut().zip(special) {
        if *s {
            *m = false;
        }
    }
    let input = ids
        .iter()
        .zip(&masked)
        .map(|(&id, &m)| if m { mask_id } else { id })
        .collect();
    let labels = ids
        .iter()
        .zip(&masked)
        .map(|(&id, &m)| m.then_some(id))
        .collect();
    // The factorisation order: the two halves shuffled together.
    let half = len / 2;
    let mut order: Vec<usize> = (0..half).collect();
    order.shuffle(rng);
    let mut rank: Vec<i64> = (0..len)
        .map(|p| {
            if p < half {
                order[p] as i64
            } else {
                (order[p - half] + half) as i64
            }
        })
        .collect();
    // Everything not predicted (context, special tokens, padding) comes first: seen by every
    // position, and seeing no predicted token (see the module's note on special tokens).
    for (r, m) in rank.iter_mut().zip(&masked) {
        if !m {
            *r = -1;
        }
    }
    let mut perm_mask = vec![false; len * len];
    for i in 0..len {
        for j in 0..len {
            perm_mask[i * len + j] = masked[j] && rank[i] <= rank[j];
        }
    }
    Ok(PlmExample {
        input,
        labels,
        perm_mask,
    })
}

/// Pads tokenized texts into permutation-LM batches, as transformers' collator does for a batch
/// (padding with the tokenizer's pad token, then [`permute`] per row).
#[derive(Debug, Clone, PartialEq)]
pub struct PlmBatcher {
    /// Padding id (XLNet's `<pad>`).
    pub pad_id: u32,
    /// What predicted positions read (`<mask>`).
    pub mask_id: u32,
    /// `<cls>`: its positions get token type 2 (XLNetTokenizer's `cls_segment_id`).
    pub cls_id: u32,
    /// Ids never predicted (besides padding): the tokenizer's special tokens.
    pub special_ids: Vec<u32>,
    /// Pad on the left (as XLNetTokenizer does, so that `<cls>` stays last) rather than the
    /// right.
    pub pad_left: bool,
    pub settings: PlmSettings,
}

/// A padded permutation-LM batch of `B` rows of even length `T`: the inputs of
/// `XLNetLMHeadModel` with `perm_mask` and `target_mapping`, and the `N` tokens to predict.
#[derive(Debug, Clone)]
pub struct PlmBatch {
    /// `[B, T]`: the ids, predicted positions replaced by `<mask>`.
    pub input_ids: Tensor<2, Int>,
    /// `[B, T]`: 2 at `<cls>`, 0 elsewhere.
    pub token_type_ids: Tensor<2, Int>,
    /// `[B, T]`: 1 on tokens, 0 on padding.
    pub attention_mask: Tensor<2>,
    /// `[B, T, T]`: 1 where position `i` may not attend to `j` (see [`permute`]).
    pub perm_mask: Tensor<3>,
    /// `[B, M, T]`, `M` the most predictions of a row (at least 1): row `k` of a sequence is
    /// one-hot at its `k`-th predicted position (ascending), all zero past its last.
    pub target_mapping: Tensor<3>,
    /// `[N]`: the original ids at the predicted positions, row by row.
    pub targets: Tensor<1, Int>,
    /// `[N]`: `b * M + k` of each prediction, to `select` from the `[B * M, vocab]` logits.
    pub rows: Tensor<1, Int>,
    /// The predicted positions of each row (in the padded row, ascending): the `k`-th is the
    /// one-hot of `target_mapping[b][k]`.
    pub positions: Vec<Vec<usize>>,
}

impl PlmBatch {
    /// `N`, the number of predictions (0 is possible: callers skip such a batch).
    pub fn predictions(&self) -> usize {
        self.positions.iter().map(Vec::len).sum()
    }
}

impl PlmBatcher {
    /// Pad `seqs` (each already `tokens <sep> <cls>`) to the longest length rounded up to even,
    /// then draw each row's predictions and factorisation order with [`permute`]. Padding and
    /// `special_ids` are never predicted; a row (or the whole batch) may have no predictions.
    pub fn batch(&self, seqs: &[&[u32]], rng: &mut impl Rng, device: &Device) -> Result<PlmBatch> {
        if seqs.is_empty() {
            bail!("permutation LM: a batch without sequences");
        }
        let b = seqs.len();
        let longest = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        let t = (longest + longest % 2).max(2);
        let mut input = Vec::with_capacity(b * t);
        let mut types = Vec::with_capacity(b * t);
        let mut mask = Vec::with_capacity(b * t);
        let mut perm = Vec::with_capacity(b * t * t);
        let mut positions = Vec::with_capacity(b);
        let mut targets = Vec::new();
        for seq in seqs {
            let start = if self.pad_left { t - seq.len() } else { 0 };
            let tokens = start..start + seq.len();
            let mut ids = vec![self.pad_id; t];
            ids[tokens.clone()].copy_from_slice(seq);
            let special: Vec<bool> = (0..t)
                .map(|i| !tokens.contains(&i) || self.special_ids.contains(&ids[i]))
                .collect();
            let ex = permute(&ids, &special, self.mask_id, self.settings, rng)?;
            input.extend(ex.input.iter().map(|&id| id as i64));
            types.extend((0..t).map(|i| {
                if tokens.contains(&i) && ids[i] == self.cls_id {
                    2i64
                } else {
                    0
                }
            }));
            mask.extend((0..t).map(|i| if tokens.contains(&i) { 1f32 } else { 0.0 }));
            perm.extend(ex.perm_mask.iter().map(|&p| if p { 1f32 } else { 0.0 }));
            let row = ex.targets();
            targets.extend(row.iter().map(|&p| ids[p] as i64));
            positions.push(row);
        }
        let m = positions.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let mut mapping = vec![0f32; b * m * t];
        let mut rows = Vec::with_capacity(targets.len());
        for (r, row) in positions.iter().enumerate() {
            for (k, &p) in row.iter().enumerate() {
                mapping[(r * m + k) * t + p] = 1.0;
                rows.push((r * m + k) as i64);
            }
        }
        let n = targets.len();
        Ok(PlmBatch {
            input_ids: Tensor::from_data(TensorData::new(input, [b, t]), device),
            token_type_ids: Tensor::from_data(TensorData::new(types, [b, t]), device),
            attention_mask: Tensor::from_data(TensorData::new(mask, [b, t]), device),
            perm_mask: Tensor::from_data(TensorData::new(perm, [b, t, t]), device),
            target_mapping: Tensor::from_data(TensorData::new(mapping, [b, m, t]), device),
            targets: Tensor::from_data(TensorData::new(targets, [n]), device),
            rows: Tensor::from_data(TensorData::new(rows, [n]), device),
            positions,
        })
    }
}

/// Permutation-LM logits `[N, vocab]` (the query stream of `XLNetLMHeadModel` at every
/// prediction), aligned with `b.targets`. Only for a batch with predictions.
pub fn plm_logits(model: &XlnetLmHeadModel, b: &PlmBatch) -> Tensor<2> {
    let (logits, _) = model.forward_plm(
        b.input_ids.clone(),
        b.token_type_ids.clone(),
        b.attention_mask.clone(),
        b.perm_mask.clone(),
        b.target_mapping.clone(),
    );
    let [bs, m, v] = logits.dims();
    logits.reshape([bs * m, v]).select(0, b.rows.clone())
}

/// Score `model` (inference mode) on `heldout` (each `tokens <sep> <cls>`) in batches of 128,
/// its predictions and orders drawn with a fixed seed so that "before" and "after" see the same
/// draws: the mean loss per prediction and the accuracy.
pub fn evaluate(
    model: &XlnetLmHeadModel,
    heldout: &[Vec<u32>],
    batcher: &PlmBatcher,
    device: &Device,
) -> Result<MlmScores> {
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
    let mut sum = ScoreSum::default();
    for chunk in heldout.chunks(128) {
        let seqs: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
        let b = batcher.batch(&seqs, &mut rng, device)?;
        if b.predictions() > 0 {
            sum.add(plm_logits(model, &b), b.targets)?;
        }
    }
    Ok(sum.scores())
}

#[cfg(test)]
mod tests;
