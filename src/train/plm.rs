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

use super::pretrain::{MlmScores, ScoreSum};
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
mod tests {
    use super::*;
    use crate::distill::cross_entropy;
    use crate::models::xlnet::XlnetConfig;
    use burn::module::Module;
    use burn::optim::{AdamWConfig, GradientsParams};

    const MASK: u32 = 6;

    fn sequence(len: usize) -> (Vec<u32>, Vec<bool>) {
        // `A <sep> <cls>` with left padding, as XLNet reads it: pads, tokens, then 2 specials.
        let pads = 4;
        let ids: Vec<u32> = (0..len)
            .map(|i| match i {
                i if i < pads => 5,
                i if i == len - 2 => 4,
                i if i == len - 1 => 3,
                i => 100 + i as u32,
            })
            .collect();
        let special = (0..len).map(|i| i < pads || i >= len - 2).collect();
        (ids, special)
    }

    #[test]
    fn odd_lengths_and_bad_settings_are_errors() {
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(1);
        let (ids, special) = sequence(9);
        assert!(permute(&ids, &special, MASK, PlmSettings::default(), &mut rng).is_err());
        let (ids, special) = sequence(10);
        let bad = PlmSettings {
            plm_probability: 0.0,
            max_span_length: 5,
        };
        assert!(permute(&ids, &special, MASK, bad, &mut rng).is_err());
    }

    #[test]
    fn spans_specials_and_the_masked_share() {
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(7);
        let (ids, special) = sequence(64);
        let (mut predicted, mut candidates) = (0, 0);
        for _ in 0..300 {
            let ex = permute(&ids, &special, MASK, PlmSettings::default(), &mut rng).unwrap();
            for i in 0..ids.len() {
                match ex.labels[i] {
                    Some(original) => {
                        assert!(!special[i], "special or padding at {i} predicted");
                        assert_eq!(original, ids[i]);
                        assert_eq!(ex.input[i], MASK);
                    }
                    None => assert_eq!(ex.input[i], ids[i]),
                }
            }
            // No run of predicted tokens is longer than a span.
            let mut run = 0;
            for l in &ex.labels {
                run = if l.is_some() { run + 1 } else { 0 };
                assert!(run <= 5);
            }
            predicted += ex.targets().len();
            candidates += special.iter().filter(|s| !**s).count();
        }
        // About plm_probability of the ordinary tokens are predicted.
        let share = predicted as f64 / candidates as f64;
        assert!((0.12..0.22).contains(&share), "{share}");
    }

    #[test]
    fn no_predicted_token_sees_itself_and_the_order_is_strict() {
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(3);
        let (ids, special) = sequence(32);
        let n = ids.len();
        for _ in 0..50 {
            let ex = permute(&ids, &special, MASK, PlmSettings::default(), &mut rng).unwrap();
            let blocked = |i: usize, j: usize| ex.perm_mask[i * n + j];
            let targets = ex.targets();
            for j in 0..n {
                if ex.labels[j].is_none() {
                    // Context and special tokens are seen by everyone.
                    assert!((0..n).all(|i| !blocked(i, j)));
                } else {
                    assert!(blocked(j, j), "predicted token {j} sees itself");
                }
            }
            // Between two predicted tokens exactly one sees the other: a strict order.
            for &a in &targets {
                for &b in &targets {
                    if a != b {
                        assert_ne!(blocked(a, b), blocked(b, a), "{a} and {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn same_seed_same_draws() {
        let (ids, special) = sequence(16);
        let draw = |seed| {
            let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(seed);
            permute(&ids, &special, MASK, PlmSettings::default(), &mut rng).unwrap()
        };
        assert_eq!(draw(5), draw(5));
    }

    // XLNet's layout of special ids: <unk> 0, <s> 1, </s> 2, <cls> 3, <sep> 4, <pad> 5, <mask> 6.
    const CLS: u32 = 3;
    const SEP: u32 = 4;
    const PAD: u32 = 5;
    const VOCAB: usize = 40;

    fn batcher(settings: PlmSettings) -> PlmBatcher {
        PlmBatcher {
            pad_id: PAD,
            mask_id: MASK,
            cls_id: CLS,
            special_ids: (0..7).collect(),
            pad_left: true,
            settings,
        }
    }

    fn dense(plm_probability: f64) -> PlmSettings {
        PlmSettings {
            plm_probability,
            max_span_length: 2,
        }
    }

    /// `tokens <sep> <cls>`.
    fn text(tokens: &[u32]) -> Vec<u32> {
        let mut ids = tokens.to_vec();
        ids.extend([SEP, CLS]);
        ids
    }

    /// Arithmetic progressions (step 1 or 2, wrapping) over the ordinary ids 7..40, 6 to 11
    /// tokens: every token follows from its neighbours.
    fn progressions(n: usize, seed: u64) -> Vec<Vec<u32>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let len = rng.random_range(6..=11u32);
                let start = rng.random_range(0..33u32);
                let step = rng.random_range(1..=2u32);
                text(
                    &(0..len)
                        .map(|i| 7 + (start + i * step) % 33)
                        .collect::<Vec<_>>(),
                )
            })
            .collect()
    }

    fn ints<const D: usize>(t: Tensor<D, Int>) -> Vec<i64> {
        t.into_data().convert::<i64>().try_to_vec::<i64>().unwrap()
    }

    fn floats<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    fn tiny_lm(device: &Device, seed: u64) -> XlnetLmHeadModel {
        device.seed(seed);
        let mut c = XlnetConfig::new(VOCAB, 16, 2, 2, 32, &[]);
        c.dropout = 0.0;
        c.init_lm(device)
    }

    #[test]
    fn no_path_leads_a_target_back_to_itself() {
        // Through any number of layers: the query stream of p reads the content streams it may
        // attend to, each of those the content streams they may attend to (and themselves), …
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let (ids, special) = sequence(24);
        let n = ids.len();
        for _ in 0..100 {
            let ex = permute(&ids, &special, MASK, dense(0.5), &mut rng).unwrap();
            let sees = |i: usize, j: usize| !ex.perm_mask[i * n + j];
            for p in ex.targets() {
                let mut reached: Vec<bool> = (0..n).map(|j| sees(p, j)).collect();
                loop {
                    let next: Vec<bool> = (0..n)
                        .map(|j| reached[j] || (0..n).any(|i| reached[i] && sees(i, j)))
                        .collect();
                    if next == reached {
                        break;
                    }
                    reached = next;
                }
                assert!(!reached[p], "target {p} reaches its own content");
            }
        }
    }

    #[test]
    fn batches_pad_to_even_lengths_and_predict_only_tokens() {
        let texts = [
            text(&[10, 11, 12]),
            text(&[20, 21, 22, 23, 24, 25, 26]),
            text(&[30]),
        ];
        let seqs: Vec<&[u32]> = texts.iter().map(Vec::as_slice).collect();
        let d = Device::flex();
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for pad_left in [true, false] {
            let batcher = PlmBatcher {
                pad_left,
                ..batcher(dense(0.5))
            };
            for _ in 0..20 {
                let b = batcher.batch(&seqs, &mut rng, &d).unwrap();
                let [bs, t] = b.input_ids.dims();
                assert_eq!((bs, t), (3, 10), "9 rounded up to even");
                let m = b.positions.iter().map(Vec::len).max().unwrap().max(1);
                assert_eq!(b.perm_mask.dims(), [3, t, t]);
                assert_eq!(b.target_mapping.dims(), [3, m, t]);
                let input = ints(b.input_ids.clone());
                let types = ints(b.token_type_ids.clone());
                let mask = floats(b.attention_mask.clone());
                let mapping = floats(b.target_mapping.clone());
                let targets = ints(b.targets.clone());
                let rows = ints(b.rows.clone());
                assert_eq!(targets.len(), b.predictions());
                let mut n = 0;
                for (r, seq) in seqs.iter().enumerate() {
                    let start = if pad_left { t - seq.len() } else { 0 };
                    let original = |i: usize| {
                        (start..start + seq.len())
                            .contains(&i)
                            .then(|| seq[i - start])
                    };
                    for i in 0..t {
                        let at = r * t + i;
                        match original(i) {
                            None => {
                                assert_eq!(input[at], PAD as i64);
                                assert_eq!(mask[at], 0.0);
                            }
                            Some(id) => {
                                assert_eq!(mask[at], 1.0);
                                let predicted = b.positions[r].contains(&i);
                                let expected = if predicted { MASK } else { id };
                                assert_eq!(input[at], expected as i64);
                            }
                        }
                        assert_eq!(types[at] == 2, original(i) == Some(CLS), "type at {r},{i}");
                        assert!(types[at] == 0 || types[at] == 2);
                    }
                    if pad_left {
                        // <cls> last, as the "last" sequence summary reads it.
                        assert_eq!(original(t - 1), Some(CLS));
                    }
                    assert!(b.positions[r].windows(2).all(|w| w[0] < w[1]));
                    for k in 0..m {
                        let one_hot = &mapping[(r * m + k) * t..(r * m + k + 1) * t];
                        match b.positions[r].get(k) {
                            Some(&p) => {
                                let id = original(p).expect("padding is never predicted");
                                assert!(id >= 7, "special id {id} predicted");
                                assert_eq!(targets[n], id as i64);
                                assert_eq!(rows[n], (r * m + k) as i64);
                                for (i, &x) in one_hot.iter().enumerate() {
                                    assert_eq!(x, if i == p { 1.0 } else { 0.0 });
                                }
                                n += 1;
                            }
                            None => assert!(one_hot.iter().all(|&x| x == 0.0)),
                        }
                    }
                }
                assert_eq!(n, targets.len());
            }
        }
    }

    #[test]
    fn a_batch_without_predictions_is_scored_as_empty() {
        let d = Device::flex();
        let texts = vec![text(&[]), text(&[])];
        let seqs: Vec<&[u32]> = texts.iter().map(Vec::as_slice).collect();
        let b = batcher(PlmSettings::default());
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let batch = b.batch(&seqs, &mut rng, &d).unwrap();
        assert_eq!(batch.predictions(), 0);
        assert_eq!(batch.targets.dims(), [0]);
        assert_eq!(batch.target_mapping.dims(), [2, 1, 2]);
        let scores = evaluate(&tiny_lm(&d, 1), &texts, &b, &d).unwrap();
        assert_eq!(scores.predictions, 0);
        assert!(b.batch(&[], &mut rng, &d).is_err());
    }

    #[test]
    fn the_plm_loss_falls_on_a_small_corpus() {
        let device = Device::flex().autodiff();
        let inner = device.clone().inner();
        let corpus = progressions(48, 1);
        let heldout = progressions(32, 2);
        let b = batcher(dense(0.3));
        let mut model = tiny_lm(&device, 11);
        let before = evaluate(&model.valid(), &heldout, &b, &inner).unwrap();
        let mut optim = AdamWConfig::new().with_epsilon(1e-8).init();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for step in 0..80 {
            let seqs: Vec<&[u32]> = (0..16)
                .map(|i| corpus[(step * 16 + i) % corpus.len()].as_slice())
                .collect();
            let batch = b.batch(&seqs, &mut rng, &device).unwrap();
            if batch.predictions() == 0 {
                continue;
            }
            let loss = cross_entropy(plm_logits(&model, &batch), batch.targets.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-2, model, grads);
        }
        let after = evaluate(&model.valid(), &heldout, &b, &inner).unwrap();
        eprintln!("held-out PLM: {before:?} → {after:?}");
        assert_eq!(before.predictions, after.predictions);
        assert!(before.predictions > 30, "{before:?}");
        // From ln 40 at the start; 0.8 of it is below ln 33 (the 33 ordinary ids, uniformly), so
        // only context passes.
        assert!(
            after.loss < 0.8 * before.loss,
            "loss {} → {}",
            before.loss,
            after.loss
        );
    }

    #[test]
    fn no_predicted_token_sees_its_own_input_through_the_query_stream() {
        let d = Device::flex();
        let mut c = XlnetConfig::new(VOCAB, 16, 2, 2, 32, &[]);
        c.dropout = 0.0;
        c.initializer_range = 0.3;
        d.seed(5);
        let model = c.init_lm(&d);
        let texts = progressions(4, 9);
        let seqs: Vec<&[u32]> = texts.iter().map(Vec::as_slice).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let b = batcher(dense(0.5)).batch(&seqs, &mut rng, &d).unwrap();
        let [bs, t] = b.input_ids.dims();
        let m = b.target_mapping.dims()[1];
        let input = ints(b.input_ids.clone());
        let perm = floats(b.perm_mask.clone());
        let targets = ints(b.targets.clone());
        let run = |ids: Vec<i64>| {
            let (logits, _) = model.forward_plm(
                Tensor::from_data(TensorData::new(ids, [bs, t]), &d),
                b.token_type_ids.clone(),
                b.attention_mask.clone(),
                b.perm_mask.clone(),
                b.target_mapping.clone(),
            );
            floats(logits)
        };
        let base = run(input.clone());
        let at = |all: &[f32], r: usize, k: usize| all[(r * m + k) * VOCAB..][..VOCAB].to_vec();
        let (mut hidden, mut later, mut changed) = (0, 0, 0);
        let mut n = 0;
        for r in 0..bs {
            for &p in &b.positions[r] {
                // Leak the answer: the target's own token instead of <mask> at p.
                let mut leaked = input.clone();
                assert_eq!(leaked[r * t + p], MASK as i64);
                leaked[r * t + p] = targets[n];
                n += 1;
                let out = run(leaked);
                for (k, &q) in b.positions[r].iter().enumerate() {
                    let diff = max_diff(&at(&base, r, k), &at(&out, r, k));
                    if perm[(r * t + q) * t + p] == 1.0 {
                        // p itself, and the targets before p in the order.
                        assert!(diff <= 1e-5, "target {q} of row {r} sees {p}: {diff}");
                        hidden += 1;
                    } else {
                        // A later target reads p's content stream.
                        later += 1;
                        if diff > 1e-4 {
                            changed += 1;
                        }
                    }
                }
            }
        }
        eprintln!("{hidden} unchanged; {changed} of {later} later targets changed");
        assert!(later > 0 && changed == later, "{changed} of {later}");
    }
}
