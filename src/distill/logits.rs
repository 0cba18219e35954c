//! Teacher logits, computed once over the training examples and kept by example id, so a
//! student's shuffled batches fetch exactly their own rows.

use crate::data::batch::{eval_order, Batcher, Encoded};
use crate::models::Classifier;
use anyhow::{anyhow, bail, Context, Result};
use burn::tensor::{Device, Tensor, TensorData};
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct TeacherLogits {
    pub classes: usize,
    rows: HashMap<u32, Vec<f32>>,
}

impl TeacherLogits {
    /// Run `model` (in inference mode, on `device`) over `items` and keep each row under its id.
    pub fn compute<M: Classifier>(
        model: &M,
        batcher: &Batcher,
        items: &[Encoded],
        batch_size: usize,
        device: &Device,
    ) -> Result<Self> {
        let lengths: Vec<usize> = items.iter().map(|e| e.tokens.len()).collect();
        let mut rows = HashMap::with_capacity(items.len());
        let mut classes = 0;
        for idx in eval_order(&lengths, batch_size) {
            let batch_items: Vec<&Encoded> = idx.iter().map(|&i| &items[i]).collect();
            let batch = batcher.batch(&batch_items, device);
            let logits = model.logits(&batch);
            let [b, k] = logits.dims();
            classes = k;
            let values: Vec<f32> = logits
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| anyhow!("cannot read teacher logits: {e:?}"))?;
            for r in 0..b {
                rows.insert(batch.ids[r], values[r * k..(r + 1) * k].to_vec());
            }
        }
        Ok(Self { classes, rows })
    }

    /// Rows given by id (`classes` values each).
    pub fn from_rows(classes: usize, rows: impl IntoIterator<Item = (u32, Vec<f32>)>) -> Self {
        Self {
            classes,
            rows: rows.into_iter().collect(),
        }
    }

    /// An ensemble's rows: the weighted mean of its members' logits or, with `log_probs`, of
    /// their log-softmax (computed in f64, stored as f32). Every member must have the same ids and
    /// classes.
    pub fn combine(members: &[(&TeacherLogits, f64)], log_probs: bool) -> Result<Self> {
        let Some((first, _)) = members.first() else {
            bail!("an ensemble needs at least one member");
        };
        let total: f64 = members.iter().map(|(_, w)| w).sum();
        for (i, (m, _)) in members.iter().enumerate() {
            if m.classes != first.classes || m.rows.len() != first.rows.len() {
                bail!(
                    "ensemble member {} has {} rows of {} classes, member 1 has {} of {}",
                    i + 1,
                    m.rows.len(),
                    m.classes,
                    first.rows.len(),
                    first.classes
                );
            }
        }
        let mut rows = HashMap::with_capacity(first.rows.len());
        let mut sum = vec![0f64; first.classes];
        for &id in first.rows.keys() {
            sum.iter_mut().for_each(|v| *v = 0.0);
            for (i, (m, w)) in members.iter().enumerate() {
                let row = m
                    .rows
                    .get(&id)
                    .ok_or_else(|| anyhow!("ensemble member {} has no row for id {id}", i + 1))?;
                let offset = if log_probs { log_sum_exp(row) } else { 0.0 };
                for (s, v) in sum.iter_mut().zip(row) {
                    *s += w * (*v as f64 - offset);
                }
            }
            rows.insert(id, sum.iter().map(|s| (s / total) as f32).collect());
        }
        Ok(Self {
            classes: first.classes,
            rows,
        })
    }

    /// As [`Self::combine`], over the union of the members' ids: each row is the weighted mean
    /// of the members that have it (a transductive member such as TextGCN has no rows for the
    /// synthetic sentences of an augmented transfer set; the others label those alone).
    pub fn combine_available(members: &[(&TeacherLogits, f64)], log_probs: bool) -> Result<Self> {
        let Some((first, _)) = members.first() else {
            bail!("an ensemble needs at least one member");
        };
        if let Some((i, (m, _))) = members
            .iter()
            .enumerate()
            .find(|(_, (m, _))| m.classes != first.classes)
        {
            bail!(
                "ensemble member {} has {} classes, member 1 has {}",
                i + 1,
                m.classes,
                first.classes
            );
        }
        let mut ids: Vec<u32> = members
            .iter()
            .flat_map(|(m, _)| m.rows.keys().copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut rows = HashMap::with_capacity(ids.len());
        for id in ids {
            let mut sum = vec![0f64; first.classes];
            let mut total = 0.0;
            for (m, w) in members {
                if let Some(row) = m.rows.get(&id) {
                    let offset = if log_probs { log_sum_exp(row) } else { 0.0 };
                    for (s, v) in sum.iter_mut().zip(row) {
                        *s += w * (*v as f64 - offset);
                    }
                    total += w;
                }
            }
            rows.insert(id, sum.iter().map(|s| (s / total) as f32).collect());
        }
        Ok(Self {
            classes: first.classes,
            rows,
        })
    }

    /// The temperature `T` that makes `softmax(logits / T)` fit `labelled` (example id, class)
    /// best: the one minimising the mean negative log-likelihood (Guo et al. 2017's temperature
    /// scaling), by golden-section search over ln T in [ln 0.02, ln 50]. The NLL is convex in
    /// 1/T, so the search finds its minimum.
    pub fn fit_temperature(&self, labelled: &[(u32, usize)]) -> Result<f64> {
        let mut rows = Vec::with_capacity(labelled.len());
        for &(id, label) in labelled {
            let row = self
                .rows
                .get(&id)
                .ok_or_else(|| anyhow!("no logits for example id {id} to calibrate on"))?;
            if label >= self.classes {
                bail!(
                    "label {label} of example id {id} is not one of {} classes",
                    self.classes
                );
            }
            rows.push((row, label));
        }
        if rows.is_empty() {
            bail!("no labelled examples to calibrate on");
        }
        let nll = |ln_t: f64| {
            let t = ln_t.exp();
            rows.iter()
                .map(|(row, label)| {
                    let max = row.iter().fold(f64::NEG_INFINITY, |m, v| m.max(*v as f64)) / t;
                    let sum: f64 = row.iter().map(|v| (*v as f64 / t - max).exp()).sum();
                    max + sum.ln() - row[*label] as f64 / t
                })
                .sum::<f64>()
                / rows.len() as f64
        };
        let (mut a, mut b) = (0.02f64.ln(), 50f64.ln());
        let g = (5f64.sqrt() - 1.0) / 2.0;
        let (mut c, mut d) = (b - g * (b - a), a + g * (b - a));
        let (mut fc, mut fd) = (nll(c), nll(d));
        while b - a > 1e-6 {
            if fc < fd {
                (b, d, fd) = (d, c, fc);
                c = b - g * (b - a);
                fc = nll(c);
            } else {
                (a, c, fc) = (c, d, fd);
                d = a + g * (b - a);
                fd = nll(d);
            }
        }
        Ok(((a + b) / 2.0).exp())
    }

    /// Every row divided by `t`.
    pub fn scaled(&self, t: f64) -> Self {
        Self {
            classes: self.classes,
            rows: self
                .rows
                .iter()
                .map(|(id, row)| (*id, row.iter().map(|v| (*v as f64 / t) as f32).collect()))
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Add the rows of `other` (e.g. the transfer set's).
    pub fn extend(&mut self, other: TeacherLogits) {
        self.rows.extend(other.rows);
    }

    /// The teacher's predicted class for `id`.
    pub fn argmax(&self, id: u32) -> Option<usize> {
        self.rows.get(&id).map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (k, v)| {
                    if *v > best.1 {
                        (k, *v)
                    } else {
                        best
                    }
                })
                .0
        })
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn get(&self, id: u32) -> Option<&[f32]> {
        self.rows.get(&id).map(Vec::as_slice)
    }

    /// The logits of `ids`, in that order, as `[ids.len(), classes]`.
    pub fn batch(&self, ids: &[u32], device: &Device) -> Result<Tensor<2>> {
        let mut values = Vec::with_capacity(ids.len() * self.classes);
        for id in ids {
            let row = self
                .rows
                .get(id)
                .ok_or_else(|| anyhow!("no teacher logits for example id {id}"))?;
            values.extend_from_slice(row);
        }
        Ok(Tensor::from_data(
            TensorData::new(values, [ids.len(), self.classes]),
            device,
        ))
    }

    /// Write as safetensors: `ids` (u32 `[n]`, ascending) and `logits` (f32 `[n, classes]`, row i
    /// the logits of `ids[i]`). The bytes are the `f32`s themselves, so a run that reuses stored
    /// logits trains exactly as the run that computed them.
    pub fn save(&self, path: &Path) -> Result<()> {
        use safetensors::tensor::TensorView;
        use safetensors::Dtype;
        let mut ids: Vec<u32> = self.rows.keys().copied().collect();
        ids.sort_unstable();
        let id_bytes: Vec<u8> = ids.iter().flat_map(|v| v.to_le_bytes()).collect();
        let logit_bytes: Vec<u8> = ids
            .iter()
            .flat_map(|id| self.rows[id].iter().flat_map(|v| v.to_le_bytes()))
            .collect();
        let views = [
            (
                "ids",
                TensorView::new(Dtype::U32, vec![ids.len()], &id_bytes)
                    .map_err(|e| anyhow!("teacher logits ids: {e}"))?,
            ),
            (
                "logits",
                TensorView::new(Dtype::F32, vec![ids.len(), self.classes], &logit_bytes)
                    .map_err(|e| anyhow!("teacher logits: {e}"))?,
            ),
        ];
        let bytes = safetensors::tensor::serialize(views, None)
            .map_err(|e| anyhow!("cannot serialize {}: {e}", path.display()))?;
        crate::files::write_atomic(path, &bytes)?;
        Ok(())
    }

    /// Read a file written by [`TeacherLogits::save`].
    pub fn load(path: &Path) -> Result<Self> {
        use safetensors::Dtype;
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| anyhow!("{}: not a safetensors file: {e}", path.display()))?;
        let tensor = |name: &str, dtype: Dtype, rank: usize| {
            let view = st
                .tensor(name)
                .map_err(|e| anyhow!("{}: no tensor `{name}`: {e}", path.display()))?;
            if view.dtype() != dtype || view.shape().len() != rank {
                bail!(
                    "{}: tensor `{name}` is {:?} {:?}, expected {dtype:?} of rank {rank}",
                    path.display(),
                    view.dtype(),
                    view.shape()
                );
            }
            Ok(view)
        };
        let ids = tensor("ids", Dtype::U32, 1)?;
        let logits = tensor("logits", Dtype::F32, 2)?;
        let [n, classes] = [logits.shape()[0], logits.shape()[1]];
        if ids.shape()[0] != n || classes == 0 {
            bail!(
                "{}: {} ids for {n} rows of {classes} logits",
                path.display(),
                ids.shape()[0]
            );
        }
        let values: Vec<f32> = logits
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let rows = ids
            .data()
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .zip(values.chunks_exact(classes).map(<[f32]>::to_vec))
            .collect();
        Ok(Self { classes, rows })
    }
}

/// `ln Σ exp(v)`, computed stably.
fn log_sum_exp(row: &[f32]) -> f64 {
    let max = row.iter().fold(f64::NEG_INFINITY, |m, v| m.max(*v as f64));
    max + row
        .iter()
        .map(|v| (*v as f64 - max).exp())
        .sum::<f64>()
        .ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_rows(a: [f32; 3], b: [f32; 3]) -> TeacherLogits {
        TeacherLogits::from_rows(3, [(0, a.to_vec()), (7, b.to_vec())])
    }

    #[test]
    fn ensemble_of_identical_members_is_that_member() {
        let m = two_rows([1.0, -2.0, 0.5], [3.0, 3.0, -1.0]);
        // Mean logits: exactly the member, whatever the weights.
        let same = TeacherLogits::combine(&[(&m, 1.0), (&m, 3.0)], false).unwrap();
        assert_eq!(same, m);
        // Mean log-probabilities: the member's log-softmax (its predictions and soft targets).
        let lp = TeacherLogits::combine(&[(&m, 1.0), (&m, 1.0)], true).unwrap();
        let alone = TeacherLogits::combine(&[(&m, 1.0)], true).unwrap();
        assert_eq!(lp, alone);
        for id in [0, 7] {
            let row = lp.get(id).unwrap();
            let p: f32 = row.iter().map(|v| v.exp()).sum();
            assert!((p - 1.0).abs() < 1e-6, "{p}");
            assert_eq!(lp.argmax(id), m.argmax(id));
        }
    }

    #[test]
    fn temperature_scaling_finds_the_nll_minimum() {
        // Over-confident logits (right 3 times in 4): the fitted temperature softens them, and
        // its NLL is below that of nearby temperatures.
        let rows: Vec<(u32, Vec<f32>)> = (0..40)
            .map(|i| {
                (
                    i,
                    if i % 4 == 0 {
                        vec![0.0, 8.0]
                    } else {
                        vec![8.0, 0.0]
                    },
                )
            })
            .collect();
        let logits = TeacherLogits::from_rows(2, rows);
        let labelled: Vec<(u32, usize)> = (0..40).map(|i| (i, 0)).collect();
        let t = logits.fit_temperature(&labelled).unwrap();
        // Optimum: softmax(8/T) = 3/4 ⇒ 8/T = ln 3.
        assert!((t - 8.0 / 3f64.ln()).abs() < 1e-3, "{t}");
        let scaled = logits.scaled(t);
        let p = scaled.get(1).unwrap();
        assert!(((p[0] - p[1]) as f64 - 3f64.ln()).abs() < 1e-4);
        assert!(logits.fit_temperature(&[(99, 0)]).is_err());
        assert!(logits.fit_temperature(&[(0, 5)]).is_err());
    }

    #[test]
    fn ensemble_weights_by_hand() {
        let a = two_rows([1.0, 0.0, 0.0], [0.0, 0.0, 0.0]);
        let b = two_rows([0.0, 4.0, 0.0], [0.0, 0.0, 2.0]);
        let c = TeacherLogits::combine(&[(&a, 3.0), (&b, 1.0)], false).unwrap();
        assert_eq!(c.get(0).unwrap(), &[0.75, 1.0, 0.0]);
        assert_eq!(c.get(7).unwrap(), &[0.0, 0.0, 0.5]);
        let short = TeacherLogits::from_rows(3, [(0, vec![0.0; 3])]);
        assert!(TeacherLogits::combine(&[(&a, 1.0), (&short, 1.0)], false).is_err());
        let other_ids = TeacherLogits::from_rows(3, [(0, vec![0.0; 3]), (8, vec![0.0; 3])]);
        let err = TeacherLogits::combine(&[(&a, 1.0), (&other_ids, 1.0)], false).unwrap_err();
        assert!(err.to_string().contains("no row for id 7"), "{err}");
        // Over the rows each member has: id 7 from `a` alone, id 8 from `other_ids` alone.
        let some =
            TeacherLogits::combine_available(&[(&a, 1.0), (&other_ids, 3.0)], false).unwrap();
        assert_eq!(some.len(), 3);
        assert_eq!(some.get(0).unwrap(), &[0.25, 0.0, 0.0]);
        assert_eq!(some.get(7).unwrap(), a.get(7).unwrap());
        assert_eq!(some.get(8).unwrap(), &[0.0, 0.0, 0.0]);
        let full = TeacherLogits::combine_available(&[(&a, 3.0), (&b, 1.0)], false).unwrap();
        assert_eq!(full, c);
    }

    #[test]
    fn batch_follows_requested_id_order() {
        let mut rows = HashMap::new();
        rows.insert(10, vec![1.0, 2.0]);
        rows.insert(3, vec![3.0, 4.0]);
        let logits = TeacherLogits { classes: 2, rows };
        let t = logits.batch(&[3, 10, 3], &Device::flex()).unwrap();
        let v: Vec<f32> = t.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(v, vec![3.0, 4.0, 1.0, 2.0, 3.0, 4.0]);
        assert!(logits.batch(&[99], &Device::flex()).is_err());
    }

    #[test]
    fn save_load_roundtrip() {
        let mut rows = HashMap::new();
        rows.insert(1, vec![0.5, -1.25, 3.0]);
        rows.insert(0, vec![0.1234567_f32, 1.0e-9, -7.654321e3]);
        let logits = TeacherLogits { classes: 3, rows };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("teacher_logits.safetensors");
        logits.save(&path).unwrap();
        // Bit for bit: reused logits must train exactly like freshly computed ones.
        assert_eq!(TeacherLogits::load(&path).unwrap(), logits);
        std::fs::write(&path, b"not safetensors").unwrap();
        assert!(TeacherLogits::load(&path)
            .unwrap_err()
            .to_string()
            .contains("not a safetensors file"));
    }
}
