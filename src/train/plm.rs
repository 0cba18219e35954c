//! Permutation language modelling (Yang et al. 2019, XLNet §2.2) as transformers'
//! `DataCollatorForPermutationLanguageModeling` prepares it: spans of tokens to predict, a
//! factorisation order, and the attention mask that order implies.
//!
//! Per sequence (its length must be even): repeatedly draw a span length in
//! `1..=max_span_length`, reserve `span / plm_probability` tokens of context and mark a span at a
//! random start inside it; special tokens and padding are never predicted. Predicted tokens read
//! `<mask>` in the input. The factorisation order splits the positions into two halves and
//! shuffles them together (position `k` and `k + L/2` keep their distance); tokens that are
//! neither predicted nor special get order −1, so every position sees them. `perm_mask[i][j]` is
//! true where position `i` may NOT attend to `j`: `j` is predicted and comes no earlier than `i`
//! in the order — so a predicted token never sees itself (through the query stream).

use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use rand::{Rng, RngExt};

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
    for p in 0..len {
        if !masked[p] && !special[p] {
            rank[p] = -1;
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

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
}
