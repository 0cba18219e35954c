//! Teacher logits, computed once over the training examples and kept by example id, so a
//! student's shuffled batches fetch exactly their own rows.

use crate::data::batch::{eval_order, Batcher, Encoded};
use crate::models::Classifier;
use anyhow::{anyhow, bail, Context, Result};
use burn::tensor::{Device, Tensor, TensorData};
use std::collections::HashMap;
use std::io::Write;
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

    /// Write as CSV: `id,logit_0,…` sorted by id. Each value is written in the shortest form
    /// that reads back to the same `f32`, so a run that reuses stored logits trains exactly as
    /// the run that computed them.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut ids: Vec<&u32> = self.rows.keys().collect();
        ids.sort();
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        );
        let header: Vec<String> = (0..self.classes).map(|k| format!("logit_{k}")).collect();
        writeln!(out, "id,{}", header.join(","))?;
        for id in ids {
            let row: Vec<String> = self.rows[id].iter().map(|v| format!("{v}")).collect();
            writeln!(out, "{id},{}", row.join(","))?;
        }
        out.flush()?;
        Ok(())
    }

    /// Read a file written by [`TeacherLogits::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut lines = text.lines();
        let header = lines
            .next()
            .ok_or_else(|| anyhow!("{}: empty file", path.display()))?;
        let classes = header.split(',').count().saturating_sub(1);
        if classes == 0 {
            bail!("{}:1: expected header id,logit_0,…", path.display());
        }
        let mut rows = HashMap::new();
        for (i, line) in lines.enumerate() {
            let mut fields = line.split(',');
            let parse_err = || {
                anyhow!(
                    "{}:{}: expected id and {classes} numbers",
                    path.display(),
                    i + 2
                )
            };
            let id: u32 = fields
                .next()
                .and_then(|f| f.parse().ok())
                .ok_or_else(parse_err)?;
            let row: Vec<f32> = fields
                .map(|f| f.parse::<f32>())
                .collect::<Result<_, _>>()
                .map_err(|_| parse_err())?;
            if row.len() != classes {
                return Err(parse_err());
            }
            rows.insert(id, row);
        }
        Ok(Self { classes, rows })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let f = tempfile::NamedTempFile::new().unwrap();
        logits.save(f.path()).unwrap();
        // Bit for bit: reused logits must train exactly like freshly computed ones.
        assert_eq!(TeacherLogits::load(f.path()).unwrap(), logits);
    }
}
