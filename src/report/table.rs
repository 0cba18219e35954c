//! A DataFrame turned into strings for templates: metrics with 4 decimals (the reference's
//! tables), speeds and times with fewer, counts with thousands separators, nulls blank.

use polars::prelude::*;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Right-align (numeric) per column.
    pub numeric: Vec<bool>,
}

/// Decimals shown for a column; metrics default to 4.
fn decimals(column: &str) -> usize {
    match column {
        "samples_per_s" | "train_s" | "seconds" | "speedup" => 1,
        "batch_latency_ms" => 2,
        _ => 4,
    }
}

/// Header text for a column name.
fn header(column: &str) -> String {
    match column {
        "accuracy" => "accuracy".into(),
        "macro_f1" => "macro-F1".into(),
        "weighted_f1" => "weighted-F1".into(),
        "samples_per_s" => "samples/s".into(),
        "batch_latency_ms" => "ms/batch".into(),
        "speedup" => "speed-up".into(),
        "train_s" => "train s".into(),
        "best_epoch" => "best epoch".into(),
        "train_loss" => "train loss".into(),
        "valid_accuracy" => "valid accuracy".into(),
        "best_accuracy" => "best accuracy".into(),
        "valid_chosen_test_accuracy" => "test accuracy (valid-chosen)".into(),
        "share_of_class" => "share of class".into(),
        other => other.into(),
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn cell(value: AnyValue, column: &str) -> (String, bool) {
    match value {
        AnyValue::Null => (String::new(), true),
        AnyValue::Float64(v) => (fmt_float(v, column), true),
        AnyValue::Float32(v) => (fmt_float(v as f64, column), true),
        AnyValue::UInt64(v) => (int_cell(v, column), true),
        AnyValue::UInt32(v) => (int_cell(v as u64, column), true),
        AnyValue::Int64(v) => (v.to_string(), true),
        AnyValue::Int32(v) => (v.to_string(), true),
        AnyValue::String(s) => (s.to_string(), false),
        AnyValue::StringOwned(s) => (s.to_string(), false),
        other => (other.to_string(), false),
    }
}

fn int_cell(v: u64, column: &str) -> String {
    if column == "params" {
        thousands(v)
    } else {
        v.to_string()
    }
}

fn fmt_float(v: f64, column: &str) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let s = format!("{v:.*}", decimals(column));
    if column == "speedup" {
        format!("{s}×")
    } else {
        s
    }
}

impl Table {
    pub fn from_df(df: &DataFrame) -> Self {
        let names: Vec<String> = df
            .get_column_names()
            .iter()
            .map(|c| c.to_string())
            .collect();
        let mut numeric = vec![false; names.len()];
        let mut rows = Vec::with_capacity(df.height());
        for i in 0..df.height() {
            let mut row = Vec::with_capacity(names.len());
            for (j, col) in df.columns().iter().enumerate() {
                let (text, is_num) = cell(col.get(i).unwrap_or(AnyValue::Null), &names[j]);
                if is_num && !text.is_empty() {
                    numeric[j] = true;
                }
                row.push(text);
            }
            rows.push(row);
        }
        Self {
            columns: names.iter().map(|n| header(n)).collect(),
            rows,
            numeric,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_metrics_counts_and_nulls() {
        let df = df!(
            "class" => ["car", "accuracy"],
            "precision" => [Some(0.81234f64), None],
            "params" => [1234567u64, 12],
            "speedup" => [12.345f64, f64::NAN],
        )
        .unwrap();
        let t = Table::from_df(&df);
        assert_eq!(t.columns, vec!["class", "precision", "params", "speed-up"]);
        assert_eq!(t.rows[0], vec!["car", "0.8123", "1,234,567", "12.3×"]);
        assert_eq!(t.rows[1], vec!["accuracy", "", "12", "–"]);
        assert_eq!(t.numeric, vec![false, true, true, true]);
    }
}
