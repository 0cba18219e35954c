//! From read frames to the run's splits: class filter, seeded per-class downsampling, a
//! stratified validation split carved from train. The test file is only filtered by class.
//!
//! Selection works on the frames' columns (`id`, `line`, `text`, `label`, `name`, see
//! [`super::read`]):
//! rows are picked by position and only the picked ones become [`Example`]s.

use super::{Class, Dataset, Example, Skipped, SplitCounts};
use crate::recipe::{shown, DataFormat, DataSection, OnError};
use anyhow::{bail, Result};
use polars::prelude::*;
use rand::rngs::ChaCha8Rng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::{BTreeMap, HashSet};

/// The columns of a read frame.
struct Columns<'a> {
    id: &'a UInt32Chunked,
    /// The physical line (from 1) each row starts on, for messages.
    line: &'a UInt32Chunked,
    text: &'a StringChunked,
    label: &'a StringChunked,
    name: &'a StringChunked,
}

impl<'a> Columns<'a> {
    fn of(df: &'a DataFrame) -> Result<Self> {
        Ok(Self {
            id: df.column("id")?.u32()?,
            line: df.column("line")?.u32()?,
            text: df.column("text")?.str()?,
            label: df.column("label")?.str()?,
            name: df.column("name")?.str()?,
        })
    }

    /// The class (index into `classes`) of every row; `None`: a class the recipe drops.
    fn class_of(&self, classes: &[Class]) -> Vec<Option<usize>> {
        self.label
            .iter()
            .map(|l| {
                let l = l.unwrap_or_default();
                classes.iter().position(|c| c.label == l)
            })
            .collect()
    }

    /// The example of row `row`, of class `label`.
    fn example(&self, row: usize, label: usize) -> Example {
        Example {
            id: self.id.get(row).unwrap_or_default(),
            text: self.text.get(row).unwrap_or_default().to_string(),
            label,
        }
    }
}

/// The classes the recipe keeps, in the recipe's order (label index = position). A class is named
/// by its label value (`"103"`), its display name (`"sports"`) or, for TNEWS, its full
/// `label_desc` (`"news_sports"`). No classes listed: every label of the training file, sorted.
pub fn resolve_classes(
    wanted: &[String],
    train: &DataFrame,
    data: &DataSection,
) -> Result<Vec<Class>> {
    let cols = Columns::of(train)?;
    let mut available: BTreeMap<&str, &str> = BTreeMap::new();
    for (label, name) in cols.label.iter().zip(cols.name.iter()) {
        available
            .entry(label.unwrap_or_default())
            .or_insert(name.unwrap_or_default());
    }
    let class = |(label, name): (&&str, &&str)| Class {
        label: label.to_string(),
        name: name.to_string(),
    };
    if wanted.is_empty() {
        return Ok(available.iter().map(class).collect());
    }
    let mut classes = Vec::new();
    for w in wanted {
        let w = w.trim();
        let found = available.iter().find(|(label, name)| {
            **label == w
                || **name == w
                || (data.format == DataFormat::Tnews && format!("news_{name}") == w)
        });
        match found {
            Some(found) => classes.push(class(found)),
            None => bail!(
                "data.classes: no class `{}` in {}; its classes are: {}",
                shown(w),
                data.train.display(),
                super::listed(available.iter().map(|(l, n)| if l == n {
                    shown(l)
                } else {
                    format!("{} ({})", shown(n), shown(l))
                }))
            ),
        }
    }
    Ok(classes)
}

/// Build the splits from the read train and test frames.
pub fn select(train: &DataFrame, test: &DataFrame, data: &DataSection) -> Result<Dataset> {
    let classes = resolve_classes(&data.classes, train, data)?;
    let (tr, te) = (Columns::of(train)?, Columns::of(test)?);
    let test_classes = te.class_of(&classes);
    let mut skipped = Vec::new();
    // With every class of the training file kept, a test label outside them is a bad row (with
    // classes listed, other labels are simply not kept).
    let strangers: Vec<usize> = (0..test_classes.len())
        .filter(|&row| test_classes[row].is_none())
        .collect();
    if data.classes.is_empty() && !strangers.is_empty() {
        let first = strangers[0];
        let line = te.line.get(first).unwrap_or_default();
        match data.on_error {
            OnError::Fail => bail!(
                "{}:{line}: label \"{}\" is not a class of the training file {} ({} test row(s) like it; data.on_error = \"skip\" leaves them out)",
                data.test.display(),
                shown(te.label.get(first).unwrap_or_default()),
                data.train.display(),
                strangers.len()
            ),
            OnError::Skip => skipped.push(Skipped {
                file: data.test.display().to_string(),
                reason: "label not a class of the training file".into(),
                rows: strangers.len(),
                first_at: format!("line {line}"),
            }),
        }
    }
    let test: Vec<Example> = test_classes
        .into_iter()
        .enumerate()
        .filter_map(|(row, k)| k.map(|k| te.example(row, k)))
        .collect();
    if test.is_empty() {
        bail!(
            "{}: no test examples of the classes {}",
            data.test.display(),
            classes
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    // Rows of each class in file order, shuffled with one generator, class after class.
    let class_of = tr.class_of(&classes);
    let mut rng = ChaCha8Rng::seed_from_u64(data.seed);
    let mut train_split = Vec::new();
    let mut valid_split = Vec::new();
    for (k, class) in classes.iter().enumerate() {
        let mut rows: Vec<usize> = (0..class_of.len())
            .filter(|&row| class_of[row] == Some(k))
            .collect();
        rows.shuffle(&mut rng);
        if data.max_per_class > 0 {
            rows.truncate(data.max_per_class);
        }
        if rows.len() < 2 {
            bail!(
                "{}: class `{}` has {} training example(s); at least 2 are needed (one for validation)",
                data.train.display(),
                shown(&class.name),
                rows.len()
            );
        }
        let n_valid =
            ((rows.len() as f64 * data.valid_fraction).round() as usize).clamp(1, rows.len() - 1);
        valid_split.extend(rows[..n_valid].iter().map(|&row| tr.example(row, k)));
        train_split.extend(rows[n_valid..].iter().map(|&row| tr.example(row, k)));
    }
    train_split.sort_by_key(|e| e.id);
    valid_split.sort_by_key(|e| e.id);
    let held_out: HashSet<u32> = valid_split.iter().map(|e| e.id).collect();
    let unlabeled = tr
        .id
        .iter()
        .zip(tr.text.iter())
        .filter(|(id, _)| !held_out.contains(&id.unwrap_or_default()))
        .map(|(_, text)| text.unwrap_or_default().to_string())
        .collect();
    let counts = SplitCounts::of(classes.len(), &train_split, &valid_split, &test);
    Ok(Dataset {
        classes,
        train: train_split,
        valid: valid_split,
        test,
        unlabeled,
        counts,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(labels: &[(&str, usize)]) -> DataFrame {
        let mut ids = Vec::new();
        let mut lines = Vec::new();
        let mut texts = Vec::new();
        let mut ls = Vec::new();
        for (label, n) in labels {
            for _ in 0..*n {
                lines.push(ids.len() as u32 + 1);
                ids.push(ids.len() as u32);
                texts.push(format!("text {}", ids.len()));
                ls.push(label.to_string());
            }
        }
        let names = ls.clone();
        df!("id" => ids, "line" => lines, "text" => texts, "label" => ls, "name" => names).unwrap()
    }

    fn section(classes: &[&str], max_per_class: usize) -> DataSection {
        DataSection {
            format: DataFormat::Jsonl,
            classes: classes.iter().map(|s| s.to_string()).collect(),
            max_per_class,
            valid_fraction: 0.1,
            ..DataSection::default()
        }
    }

    #[test]
    fn downsampling_counts_and_split() {
        let train = frame(&[("a", 500), ("b", 80), ("c", 300)]);
        let test = frame(&[("a", 5), ("b", 5), ("c", 5)]);
        let ds = select(&train, &test, &section(&["a", "b"], 100)).unwrap();
        assert_eq!(ds.classes.len(), 2);
        let count = |xs: &[Example], k| xs.iter().filter(|e| e.label == k).count();
        // 100 of a (90 train + 10 valid), all 80 of b (72 + 8); c dropped everywhere.
        assert_eq!((count(&ds.train, 0), count(&ds.valid, 0)), (90, 10));
        assert_eq!((count(&ds.train, 1), count(&ds.valid, 1)), (72, 8));
        assert_eq!(ds.test.len(), 10);
        // Counted once, in class order; the table adds the totals.
        let counts = SplitCounts {
            train: vec![90, 72],
            valid: vec![10, 8],
            test: vec![5, 5],
        };
        assert_eq!(ds.class_counts(), &counts);
        let table = ds.counts().unwrap();
        let train: Vec<u32> = table
            .column("train")
            .unwrap()
            .u32()
            .unwrap()
            .into_no_null_iter()
            .collect();
        assert_eq!(train, [90, 72, 162]);
        // No example in both splits.
        assert!(ds
            .train
            .iter()
            .all(|t| ds.valid.iter().all(|v| v.id != t.id)));
    }

    #[test]
    fn downsampling_is_deterministic_per_seed() {
        let train = frame(&[("a", 500), ("b", 400)]);
        let test = frame(&[("a", 5)]);
        let ids = |seed| {
            let mut s = section(&[], 50);
            s.seed = seed;
            let ds = select(&train, &test, &s).unwrap();
            ds.train.iter().map(|e| e.id).collect::<Vec<_>>()
        };
        assert_eq!(ids(1), ids(1));
        assert_ne!(ids(1), ids(2));
    }

    #[test]
    fn unknown_class_lists_available() {
        let train = frame(&[("a", 5), ("b", 5)]);
        let err = select(&train, &train, &section(&["z"], 0))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("data.classes") && err.contains("`z`") && err.contains("a, b"),
            "{err}"
        );
    }
}
