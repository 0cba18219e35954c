//! The report's tables as polars DataFrames, built from a run's results.

use crate::store::{ModelResult, RunResults};
use anyhow::Result;
use polars::prelude::*;

/// Every table of one run's report, by file stem (`comparison`, `per_class_teacher`, …).
pub struct Frames {
    pub comparison: DataFrame,
    /// (model key, table) in model order.
    pub per_class: Vec<(String, DataFrame)>,
    pub confusion: Vec<(String, DataFrame)>,
    pub data: DataFrame,
    pub history: DataFrame,
    /// Each model's most frequent confusions with example sentences (when the results carry
    /// per-example predictions).
    pub errors: Vec<(String, DataFrame)>,
    /// Test sentences where the teacher and the distilled student disagree.
    pub disagreements: Option<DataFrame>,
}

impl Frames {
    pub fn build(results: &RunResults) -> Result<Self> {
        let names: Vec<String> = results.classes.iter().map(|c| c.name.clone()).collect();
        Ok(Self {
            comparison: comparison(results)?,
            per_class: results
                .models
                .iter()
                .map(|m| Ok((m.key.clone(), per_class(m, &names)?)))
                .collect::<Result<_>>()?,
            confusion: results
                .models
                .iter()
                .map(|m| Ok((m.key.clone(), confusion(m, &names)?)))
                .collect::<Result<_>>()?,
            data: data_counts(results)?,
            history: history(results)?,
            errors: if super::errors::available(results) {
                results
                    .models
                    .iter()
                    .map(|m| Ok((m.key.clone(), super::errors::confusions(results, m)?)))
                    .collect::<Result<_>>()?
            } else {
                Vec::new()
            },
            disagreements: if super::errors::available(results) {
                super::errors::disagreements(results).transpose()?
            } else {
                None
            },
        })
    }

    /// All tables with their file stems, for writers.
    pub fn all(&self) -> Vec<(String, &DataFrame)> {
        let mut out = vec![("comparison".to_string(), &self.comparison)];
        for (k, df) in &self.per_class {
            out.push((format!("per_class_{k}"), df));
        }
        for (k, df) in &self.confusion {
            out.push((format!("confusion_{k}"), df));
        }
        out.push(("data".to_string(), &self.data));
        out.push(("history".to_string(), &self.history));
        for (k, df) in &self.errors {
            out.push((format!("errors_{k}"), df));
        }
        if let Some(df) = &self.disagreements {
            out.push(("disagreements".to_string(), df));
        }
        out
    }
}

/// One row per model: accuracy, macro/weighted F1, size, speed and speed-up over the teacher.
pub fn comparison(results: &RunResults) -> PolarsResult<DataFrame> {
    let teacher_speed = results
        .model("teacher")
        .map(|t| t.timing.samples_per_sec)
        .unwrap_or(f64::NAN);
    let m = &results.models;
    df!(
        "model" => m.iter().map(|x| x.label.clone()).collect::<Vec<_>>(),
        "accuracy" => m.iter().map(|x| x.report.accuracy).collect::<Vec<_>>(),
        "macro_f1" => m.iter().map(|x| x.report.macro_avg.f1).collect::<Vec<_>>(),
        "weighted_f1" => m.iter().map(|x| x.report.weighted_avg.f1).collect::<Vec<_>>(),
        "params" => m.iter().map(|x| x.params as u64).collect::<Vec<_>>(),
        "samples_per_s" => m.iter().map(|x| x.timing.samples_per_sec).collect::<Vec<_>>(),
        "batch_latency_ms" => m.iter().map(|x| x.timing.batch_latency_ms).collect::<Vec<_>>(),
        "speedup" => m.iter().map(|x| x.timing.samples_per_sec / teacher_speed).collect::<Vec<_>>(),
        "train_s" => m.iter().map(|x| x.train_seconds).collect::<Vec<_>>(),
        // Blank for a model trained without epochs (the linear baseline: epoch 0).
        "best_epoch" => m
            .iter()
            .map(|x| (x.best_epoch > 0).then_some(x.best_epoch as u32))
            .collect::<Vec<_>>(),
    )
}

/// scikit-learn's `classification_report` layout: a row per class, then `accuracy` (F1 column
/// only), `macro avg` and `weighted avg`.
pub fn per_class(m: &ModelResult, names: &[String]) -> PolarsResult<DataFrame> {
    let r = &m.report;
    let mut label: Vec<String> = names.to_vec();
    let mut precision: Vec<Option<f64>> = r.per_class.iter().map(|c| Some(c.precision)).collect();
    let mut recall: Vec<Option<f64>> = r.per_class.iter().map(|c| Some(c.recall)).collect();
    let mut f1: Vec<Option<f64>> = r.per_class.iter().map(|c| Some(c.f1)).collect();
    let mut support: Vec<u64> = r.per_class.iter().map(|c| c.support as u64).collect();
    label.push("accuracy".into());
    precision.push(None);
    recall.push(None);
    f1.push(Some(r.accuracy));
    support.push(r.macro_avg.support as u64);
    for (name, avg) in [
        ("macro avg", &r.macro_avg),
        ("weighted avg", &r.weighted_avg),
    ] {
        label.push(name.into());
        precision.push(Some(avg.precision));
        recall.push(Some(avg.recall));
        f1.push(Some(avg.f1));
        support.push(avg.support as u64);
    }
    df!(
        "class" => label,
        "precision" => precision,
        "recall" => recall,
        "f1-score" => f1,
        "support" => support,
    )
}

/// Rows: true class; columns: predicted class.
pub fn confusion(m: &ModelResult, names: &[String]) -> PolarsResult<DataFrame> {
    let mut columns: Vec<Column> = vec![Column::new("true \\ predicted".into(), names.to_vec())];
    for (k, name) in names.iter().enumerate() {
        let col: Vec<u64> = m.report.confusion.iter().map(|row| row[k] as u64).collect();
        columns.push(Column::new(name.as_str().into(), col));
    }
    DataFrame::new_infer_height(columns)
}

pub fn data_counts(results: &RunResults) -> PolarsResult<DataFrame> {
    let c = &results.counts;
    let mut class: Vec<String> = results.classes.iter().map(|c| c.name.clone()).collect();
    let mut label: Vec<String> = results.classes.iter().map(|c| c.label.clone()).collect();
    let as_u64 = |v: &Vec<usize>| v.iter().map(|x| *x as u64).collect::<Vec<_>>();
    let (mut train, mut valid, mut test) = (as_u64(&c.train), as_u64(&c.valid), as_u64(&c.test));
    class.push("total".into());
    label.push(String::new());
    train.push(c.train.iter().sum::<usize>() as u64);
    valid.push(c.valid.iter().sum::<usize>() as u64);
    test.push(c.test.iter().sum::<usize>() as u64);
    df!("class" => class, "label" => label, "train" => train, "valid" => valid, "test" => test)
}

pub fn history(results: &RunResults) -> PolarsResult<DataFrame> {
    let rows: Vec<(&str, &crate::train::EpochRecord)> = results
        .models
        .iter()
        .flat_map(|m| m.history.iter().map(move |h| (m.key.as_str(), h)))
        .collect();
    df!(
        "model" => rows.iter().map(|(k, _)| k.to_string()).collect::<Vec<_>>(),
        "epoch" => rows.iter().map(|(_, h)| h.epoch as u32).collect::<Vec<_>>(),
        "train_loss" => rows.iter().map(|(_, h)| h.train_loss).collect::<Vec<_>>(),
        "valid_accuracy" => rows.iter().map(|(_, h)| h.valid_accuracy).collect::<Vec<_>>(),
        "seconds" => rows.iter().map(|(_, h)| h.seconds).collect::<Vec<_>>(),
    )
}
