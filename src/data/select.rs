//! From read frames to the run's splits: class filter, seeded per-class downsampling, a
//! stratified validation split carved from train. The test file is only filtered by class.

use super::{Class, Dataset, Example};
use crate::recipe::{DataFormat, DataSection};
use anyhow::{bail, Result};
use polars::prelude::*;
use rand::rngs::ChaCha8Rng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::BTreeMap;

/// One row of a read frame.
struct Row {
    id: u32,
    text: String,
    label: String,
    name: String,
}

fn rows(df: &DataFrame) -> Result<Vec<Row>> {
    let id = df.column("id")?.u32()?;
    let text = df.column("text")?.str()?;
    let label = df.column("label")?.str()?;
    let name = df.column("name")?.str()?;
    Ok(id
        .into_no_null_iter()
        .zip(text.iter())
        .zip(label.iter())
        .zip(name.iter())
        .map(|(((id, text), label), name)| Row {
            id,
            text: text.unwrap_or_default().to_string(),
            label: label.unwrap_or_default().to_string(),
            name: name.unwrap_or_default().to_string(),
        })
        .collect())
}

/// The classes the recipe keeps, in the recipe's order (label index = position). A class is named
/// by its label value (`"103"`), its display name (`"sports"`) or, for TNEWS, its full
/// `label_desc` (`"news_sports"`). No classes listed: every label of the training file, sorted.
pub fn resolve_classes(
    wanted: &[String],
    train: &DataFrame,
    data: &DataSection,
) -> Result<Vec<Class>> {
    let mut available: BTreeMap<String, String> = BTreeMap::new();
    for r in rows(train)? {
        available.entry(r.label).or_insert(r.name);
    }
    if wanted.is_empty() {
        return Ok(available
            .into_iter()
            .map(|(label, name)| Class { label, name })
            .collect());
    }
    let mut classes = Vec::new();
    for w in wanted {
        let w = w.trim();
        let found = available.iter().find(|(label, name)| {
            *label == w
                || *name == w
                || (data.format == DataFormat::Tnews && format!("news_{name}") == w)
        });
        match found {
            Some((label, name)) => classes.push(Class {
                label: label.clone(),
                name: name.clone(),
            }),
            None => bail!(
                "data.classes: no class `{w}` in {}; its classes are: {}",
                data.train.display(),
                available
                    .iter()
                    .map(|(l, n)| if l == n {
                        l.clone()
                    } else {
                        format!("{n} ({l})")
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    Ok(classes)
}

fn keep(rows: Vec<Row>, classes: &[Class]) -> Vec<Example> {
    rows.into_iter()
        .filter_map(|r| {
            classes
                .iter()
                .position(|c| c.label == r.label)
                .map(|label| Example {
                    id: r.id,
                    text: r.text,
                    label,
                })
        })
        .collect()
}

/// Build the splits from the read train and test frames.
pub fn select(train: &DataFrame, test: &DataFrame, data: &DataSection) -> Result<Dataset> {
    let classes = resolve_classes(&data.classes, train, data)?;
    let train_rows = rows(train)?;
    let texts: Vec<(u32, String)> = train_rows.iter().map(|r| (r.id, r.text.clone())).collect();
    let all_train = keep(train_rows, &classes);
    let test = keep(rows(test)?, &classes);
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

    let mut rng = ChaCha8Rng::seed_from_u64(data.seed);
    let mut train_split = Vec::new();
    let mut valid_split = Vec::new();
    for (k, class) in classes.iter().enumerate() {
        let mut of_class: Vec<&Example> = all_train.iter().filter(|e| e.label == k).collect();
        of_class.shuffle(&mut rng);
        if data.max_per_class > 0 {
            of_class.truncate(data.max_per_class);
        }
        if of_class.len() < 2 {
            bail!(
                "{}: class `{}` has {} training example(s); at least 2 are needed (one for validation)",
                data.train.display(),
                class.name,
                of_class.len()
            );
        }
        let n_valid = ((of_class.len() as f64 * data.valid_fraction).round() as usize)
            .clamp(1, of_class.len() - 1);
        valid_split.extend(of_class[..n_valid].iter().map(|e| (*e).clone()));
        train_split.extend(of_class[n_valid..].iter().map(|e| (*e).clone()));
    }
    train_split.sort_by_key(|e| e.id);
    valid_split.sort_by_key(|e| e.id);
    let held_out: std::collections::HashSet<u32> = valid_split.iter().map(|e| e.id).collect();
    let unlabeled = texts
        .into_iter()
        .filter(|(id, _)| !held_out.contains(id))
        .map(|(_, t)| t)
        .collect();
    Ok(Dataset {
        classes,
        train: train_split,
        valid: valid_split,
        test,
        unlabeled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(labels: &[(&str, usize)]) -> DataFrame {
        let mut ids = Vec::new();
        let mut texts = Vec::new();
        let mut ls = Vec::new();
        for (label, n) in labels {
            for _ in 0..*n {
                ids.push(ids.len() as u32);
                texts.push(format!("text {}", ids.len()));
                ls.push(label.to_string());
            }
        }
        let names = ls.clone();
        df!("id" => ids, "text" => texts, "label" => ls, "name" => names).unwrap()
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
