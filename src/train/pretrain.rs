//! Further pre-training of the teacher, by its architecture's objective.
//!
//! Masked-LM for BERT (Devlin et al. 2019, §3.1): a share `mask_prob` of the tokens (or of the
//! words, with whole-word masking) is selected; a selected token becomes `[MASK]` 80 % of the
//! time, a random token 10 %, and stays 10 %; the model predicts the original tokens at the
//! selected positions (cross-entropy there only).
//!
//! Permutation-LM for XLNet (Yang et al. 2019, §2.2): spans of tokens are predicted through the
//! query stream in a random factorisation order ([`super::plm`]).
//!
//! One loop serves both: the objective turns sampled sequences into logits and targets.

use super::plm::{PlmBatcher, PlmSettings};
use super::schedule::LinearSchedule;
pub use super::scores::{MlmScores, ScoreSum};
use crate::data::batch::train_order;
use crate::data::MlmSequence;
use crate::data::{TeacherTokenizer, TextEncoder};
use crate::distill::cross_entropy;
use crate::models::bert::mlm::BertMaskedLm;
use crate::models::PretrainModel;
use crate::recipe::{PretrainObjective, PretrainSection, TeacherArch};
use crate::runtime::progress::Progress;
use anyhow::{anyhow, bail, Result};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::rngs::ChaCha8Rng;
use rand::{Rng, RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;

/// How sequences are masked.
#[derive(Debug, Clone)]
pub struct Masker {
    pub mask_prob: f64,
    /// Padding id of batches.
    pub pad_id: u32,
    pub mask_id: u32,
    pub vocab_size: u32,
    pub special_ids: Vec<u32>,
}

/// One masked sequence: the model's input ids, and the positions to predict with their targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Masked {
    pub input: Vec<u32>,
    pub positions: Vec<usize>,
    pub targets: Vec<u32>,
}

impl Masker {
    /// Select groups with probability `mask_prob` (at least one per sequence), then replace each
    /// selected token 80/10/10.
    pub fn mask(&self, seq: &MlmSequence, rng: &mut impl Rng) -> Masked {
        let mut groups: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, g) in seq.groups.iter().enumerate() {
            if let Some(g) = g {
                if !self.special_ids.contains(&seq.ids[i]) {
                    groups.entry(*g).or_default().push(i);
                }
            }
        }
        let mut positions: Vec<usize> = Vec::new();
        for members in groups.values() {
            if rng.random::<f64>() < self.mask_prob {
                positions.extend(members);
            }
        }
        if positions.is_empty() && !groups.is_empty() {
            let k = rng.random_range(0..groups.len());
            positions.extend(groups.values().nth(k).expect("k < len"));
        }
        positions.sort_unstable();
        let mut input = seq.ids.clone();
        let targets: Vec<u32> = positions.iter().map(|&p| seq.ids[p]).collect();
        for &p in &positions {
            let r: f64 = rng.random();
            if r < 0.8 {
                input[p] = self.mask_id;
            } else if r < 0.9 {
                input[p] = self.random_token(rng);
            }
        }
        Masked {
            input,
            positions,
            targets,
        }
    }

    fn random_token(&self, rng: &mut impl Rng) -> u32 {
        loop {
            let t = rng.random_range(0..self.vocab_size);
            if !self.special_ids.contains(&t) {
                return t;
            }
        }
    }
}

/// A padded masked-LM batch.
struct MlmBatch {
    input: Tensor<2, Int>,
    mask: Tensor<2>,
    /// Flattened `row * time + position` of every prediction.
    positions: Tensor<1, Int>,
    targets: Tensor<1, Int>,
}

fn batch(items: &[Masked], pad: u32, device: &Device) -> MlmBatch {
    let b = items.len();
    let t = items.iter().map(|m| m.input.len()).max().unwrap_or(1);
    let mut input = vec![pad as i64; b * t];
    let mut mask = vec![0f32; b * t];
    let mut positions = Vec::new();
    let mut targets = Vec::new();
    for (r, m) in items.iter().enumerate() {
        for (c, &id) in m.input.iter().enumerate() {
            input[r * t + c] = id as i64;
            mask[r * t + c] = 1.0;
        }
        for (&p, &target) in m.positions.iter().zip(&m.targets) {
            positions.push((r * t + p) as i64);
            targets.push(target as i64);
        }
    }
    let n = positions.len();
    MlmBatch {
        input: Tensor::from_data(TensorData::new(input, [b, t]), device),
        mask: Tensor::from_data(TensorData::new(mask, [b, t]), device),
        positions: Tensor::from_data(TensorData::new(positions, [n]), device),
        targets: Tensor::from_data(TensorData::new(targets, [n]), device),
    }
}

/// Logits at the batch's prediction positions `[predictions, vocab]`.
fn predict(model: &BertMaskedLm, b: &MlmBatch) -> Tensor<2> {
    let out = model
        .bert
        .forward(b.input.clone(), b.input.zeros_like(), b.mask.clone());
    let [bs, t, h] = out.last_hidden_state.dims();
    let hidden = out
        .last_hidden_state
        .reshape([bs * t, h])
        .select(0, b.positions.clone());
    model
        .cls
        .forward_rows(hidden, model.bert.embeddings.word_embeddings.weight.val())
}

/// Score `model` (inference mode) on `heldout`, masked with a fixed seed so that "before" and
/// "after" see the same masks.
pub fn evaluate(
    model: &BertMaskedLm,
    heldout: &[MlmSequence],
    masker: &Masker,
    device: &Device,
) -> Result<MlmScores> {
    let pad = masker.pad_id;
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
    let masked: Vec<Masked> = heldout.iter().map(|s| masker.mask(s, &mut rng)).collect();
    let mut sum = ScoreSum::default();
    for chunk in masked.chunks(128) {
        let b = batch(chunk, pad, device);
        sum.add(predict(model, &b), b.targets)?;
    }
    Ok(sum.scores())
}

/// A further pre-training objective with its settings.
pub enum Objective {
    Mlm(Masker),
    Plm(PlmBatcher),
}

impl Objective {
    /// Its name in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Mlm(_) => "masked-LM",
            Self::Plm(_) => "permutation-LM",
        }
    }

    fn mismatch(&self) -> anyhow::Error {
        anyhow!(
            "the {} objective needs its own pre-training model",
            self.name()
        )
    }

    /// Logits `[predictions, vocab]` and targets of one training batch drawn from `seqs`; `None`
    /// when the batch has nothing to predict.
    fn predict(
        &self,
        model: &PretrainModel,
        seqs: &[&MlmSequence],
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Option<(Tensor<2>, Tensor<1, Int>)>> {
        match (self, model) {
            (Self::Mlm(masker), PretrainModel::Mlm(m)) => {
                let masked: Vec<Masked> = seqs.iter().map(|s| masker.mask(s, rng)).collect();
                let b = batch(&masked, masker.pad_id, device);
                Ok(Some((predict(m, &b), b.targets)))
            }
            (Self::Plm(batcher), PretrainModel::Plm(m)) => {
                let ids: Vec<&[u32]> = seqs.iter().map(|s| s.ids.as_slice()).collect();
                let b = batcher.batch(&ids, rng, device)?;
                if b.predictions() == 0 {
                    return Ok(None);
                }
                Ok(Some((super::plm::plm_logits(m, &b), b.targets.clone())))
            }
            _ => Err(self.mismatch()),
        }
    }

    /// Loss and accuracy on `heldout` (the same draws every time).
    fn evaluate(
        &self,
        model: &PretrainModel,
        heldout: &[MlmSequence],
        device: &Device,
    ) -> Result<MlmScores> {
        match (self, model) {
            (Self::Mlm(masker), PretrainModel::Mlm(m)) => evaluate(m, heldout, masker, device),
            (Self::Plm(batcher), PretrainModel::Plm(m)) => {
                let ids: Vec<Vec<u32>> = heldout.iter().map(|s| s.ids.clone()).collect();
                super::plm::evaluate(m, &ids, batcher, device)
            }
            _ => Err(self.mismatch()),
        }
    }
}

/// What further pre-training did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainReport {
    /// "masked-LM" or "permutation-LM" (results stored before XLNet are masked-LM).
    #[serde(default = "masked_lm")]
    pub objective: String,
    pub steps: usize,
    pub corpus: usize,
    pub heldout: usize,
    pub seconds: f64,
    pub before: MlmScores,
    pub after: MlmScores,
    /// (step, mean training loss over the steps since the last entry).
    pub curve: Vec<(usize, f64)>,
}

fn masked_lm() -> String {
    "masked-LM".into()
}

/// Pre-train `model` (on the autodiff `device`) on `corpus` with `objective`; score it on
/// `heldout` before and after.
pub fn pretrain(
    mut model: PretrainModel,
    corpus: &[MlmSequence],
    heldout: &[MlmSequence],
    objective: &Objective,
    p: &PretrainSection,
    seed: u64,
    device: &Device,
) -> Result<(PretrainModel, PretrainReport)> {
    if corpus.is_empty() {
        bail!("teacher.pretrain: the corpus is empty");
    }
    let name = objective.name();
    let start = Instant::now();
    let inner = device.clone().inner();
    let before = objective.evaluate(&model.valid(), heldout, &inner)?;
    let steps_per_epoch = corpus.len().div_ceil(p.batch_size);
    let steps = if p.epochs > 0 {
        p.epochs * steps_per_epoch
    } else {
        p.steps
    };
    let schedule = LinearSchedule::new(p.lr, p.warmup, steps);
    // AdamW (ε 1e-8) with each tensor's gradient clipped to norm 1.0, as in fine-tuning.
    let mut optim = super::adamw::FusedAdamW::new(1e-8, p.weight_decay as f32, Some(1.0)).init();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let lengths: Vec<usize> = corpus.iter().map(|s| s.ids.len()).collect();
    let progress = Progress::new("pretrain", 1, steps);
    let mut order: Vec<Vec<usize>> = Vec::new();
    let mut curve = Vec::new();
    let (mut window_sum, mut window_n) = (0.0f64, 0usize);
    let report_every = (steps / 20).max(1);
    // Reading the loss waits for the device: every 10th step, and at least once per report.
    let read_every = report_every.min(10);
    let mut watch = super::LossWatch::new("pretrain", "teacher.pretrain.lr");
    for step in 0..steps {
        if order.is_empty() {
            order = train_order(&lengths, p.batch_size, &mut rng);
            order.reverse();
        }
        if crate::runtime::interrupt::requested() {
            progress.finish();
            return Err(crate::runtime::interrupt::Interrupted.into());
        }
        let idx = order.pop().expect("refilled above");
        let seqs: Vec<&MlmSequence> = idx.iter().map(|&i| &corpus[i]).collect();
        let Some((logits, targets)) = objective.predict(&model, &seqs, &mut rng, device)? else {
            progress.step(0, None);
            continue;
        };
        let loss = cross_entropy(logits, targets);
        let read = (step % read_every == 0).then(|| loss.clone().into_scalar::<f32>() as f64);
        if let Some(v) = read {
            let v = watch
                .check(step + 1, schedule.at(step), v)
                .inspect_err(|_| progress.finish())?;
            window_sum += v;
            window_n += 1;
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(schedule.at(step), model, grads);
        progress.step(0, read);
        if (step + 1) % report_every == 0 || step + 1 == steps {
            let mean = window_sum / window_n.max(1) as f64;
            curve.push((step + 1, mean));
            (window_sum, window_n) = (0.0, 0);
            progress.epoch(&format!(
                "step {}/{steps}: {name} loss {mean:.4} ({:.0} s)",
                step + 1,
                start.elapsed().as_secs_f64()
            ));
        }
    }
    progress.finish();
    let after = objective.evaluate(&model.valid(), heldout, &inner)?;
    progress.epoch(&format!(
        "{steps} steps: held-out {name} loss {:.4} → {:.4}, accuracy {:.4} → {:.4} ({:.1} s)",
        before.loss,
        after.loss,
        before.accuracy,
        after.accuracy,
        start.elapsed().as_secs_f64()
    ));
    Ok((
        model,
        PretrainReport {
            objective: name.into(),
            steps,
            corpus: corpus.len(),
            heldout: heldout.len(),
            seconds: start.elapsed().as_secs_f64(),
            before,
            after,
            curve,
        },
    ))
}

/// Further pre-train `model` (of architecture `arch`) as `[teacher.pretrain]` says. The corpus: `texts` (the
/// training file's texts: all classes, validation split excluded) and the recipe's extra files,
/// one sentence per line; a seeded share is held out to measure the loss before and after.
#[allow(clippy::too_many_arguments)]
pub fn further_pretrain(
    p: &PretrainSection,
    arch: TeacherArch,
    max_len: usize,
    seed: u64,
    tokenizer: &TeacherTokenizer,
    texts: &[String],
    model: PretrainModel,
    device: &Device,
) -> Result<(PretrainModel, PretrainReport)> {
    use anyhow::Context as _;
    use rand::seq::SliceRandom;
    let mut texts: Vec<String> = texts.to_vec();
    for f in &p.extra {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("teacher.pretrain.extra: cannot read {}", f.display()))?;
        texts.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from),
        );
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x00ff_00ff);
    texts.shuffle(&mut rng);
    let objective = p.objective(arch);
    let whole_word = objective == PretrainObjective::Mlm && p.whole_word();
    let jieba = whole_word.then(jieba_rs::Jieba::new);
    let sequences = texts
        .iter()
        .map(|t| tokenizer.mlm_sequence(t, max_len, jieba.as_ref()))
        .collect::<Result<Vec<_>>>()?;
    let n_held =
        ((sequences.len() as f64 * p.holdout).round() as usize).clamp(1, sequences.len() / 2);
    let (heldout, corpus) = sequences.split_at(n_held);
    let objective = match objective {
        PretrainObjective::Mlm => Objective::Mlm(Masker {
            mask_prob: p.mask_prob(),
            pad_id: tokenizer.pad_id(),
            mask_id: tokenizer.mask_id(),
            vocab_size: tokenizer.vocab_size() as u32,
            special_ids: tokenizer.special_ids(),
        }),
        PretrainObjective::Plm => Objective::Plm(PlmBatcher {
            pad_id: tokenizer.pad_id(),
            mask_id: tokenizer.mask_id(),
            cls_id: tokenizer.cls_id(),
            special_ids: tokenizer.special_ids(),
            pad_left: tokenizer.pad_left(),
            settings: PlmSettings {
                plm_probability: p.plm_probability(),
                max_span_length: p.max_span_length(),
            },
        }),
    };
    crate::runtime::progress::note(&format!(
        "pretrain: {} sequences ({} held out), {}{}",
        corpus.len(),
        heldout.len(),
        objective.name(),
        match &objective {
            Objective::Mlm(_) if whole_word => " with whole-word masking",
            Objective::Mlm(_) => " with token masking",
            Objective::Plm(_) => "",
        }
    ));
    pretrain(model, corpus, heldout, &objective, p, seed, device)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masker() -> Masker {
        Masker {
            mask_prob: 0.15,
            pad_id: 0,
            mask_id: 4,
            vocab_size: 1000,
            special_ids: vec![0, 1, 2, 3, 4],
        }
    }

    fn seq(n: usize) -> MlmSequence {
        let mut ids = vec![2];
        ids.extend((0..n).map(|i| 5 + (i as u32 % 900)));
        ids.push(3);
        let mut groups = vec![None];
        groups.extend((0..n).map(|i| Some(i as u32)));
        groups.push(None);
        MlmSequence { ids, groups }
    }

    #[test]
    fn masking_rates_match_80_10_10() {
        let m = masker();
        let s = seq(200);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (mut selected, mut masked, mut random, mut kept, mut tokens) = (0, 0, 0, 0, 0);
        for _ in 0..500 {
            let out = m.mask(&s, &mut rng);
            tokens += 200;
            for (&p, &t) in out.positions.iter().zip(&out.targets) {
                assert_ne!(p, 0, "[CLS] is never selected");
                assert_ne!(p, 201, "[SEP] is never selected");
                selected += 1;
                match out.input[p] {
                    4 => masked += 1,
                    x if x == t => kept += 1,
                    _ => random += 1,
                }
            }
        }
        let rate = selected as f64 / tokens as f64;
        assert!((rate - 0.15).abs() < 0.01, "selection rate {rate}");
        let f = |n: usize| n as f64 / selected as f64;
        assert!((f(masked) - 0.8).abs() < 0.02, "mask {}", f(masked));
        // A random replacement can draw the original token (1 in 995): counted as kept.
        assert!((f(random) - 0.1).abs() < 0.015, "random {}", f(random));
        assert!((f(kept) - 0.1).abs() < 0.015, "kept {}", f(kept));
    }

    #[test]
    fn whole_words_are_masked_together_and_masking_is_seeded() {
        let m = Masker {
            mask_prob: 0.5,
            ..masker()
        };
        let mut s = seq(12);
        // Words of two tokens: groups 0,0,1,1,…
        for (i, g) in s.groups.iter_mut().enumerate().skip(1).take(12) {
            *g = Some(((i - 1) / 2) as u32);
        }
        let a = m.mask(&s, &mut ChaCha8Rng::seed_from_u64(9));
        let b = m.mask(&s, &mut ChaCha8Rng::seed_from_u64(9));
        assert_eq!(a, b);
        assert!(!a.positions.is_empty());
        for p in &a.positions {
            let partner = if (p - 1) % 2 == 0 { p + 1 } else { p - 1 };
            assert!(a.positions.contains(&partner), "{:?}", a.positions);
        }
    }

    #[test]
    fn short_sequences_always_get_a_prediction() {
        let m = Masker {
            mask_prob: 0.01,
            ..masker()
        };
        let s = seq(1);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for _ in 0..50 {
            assert_eq!(m.mask(&s, &mut rng).positions, vec![1]);
        }
    }
}
