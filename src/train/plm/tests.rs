//! Permutation LM: the drawn spans and orders, the masks they imply (no target sees itself, at
//! any depth), batches, and a loss that falls on a small corpus.

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
