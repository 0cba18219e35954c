//! Reading example files into polars: TNEWS json-lines, any json-lines, any CSV.
//!
//! Every reader yields the same frame: `id` (u32, the row's number in its file, from 0), `text`,
//! `label` (the raw label value as a string) and `name` (the label's display name: TNEWS's
//! `label_desc` without its `news_` prefix, else the label itself).

use crate::recipe::{DataFormat, DataSection};
use anyhow::{anyhow, bail, Context, Result};
use polars::prelude::*;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// Read one example file as the recipe's `data` section describes it.
pub fn read_examples(path: &Path, data: &DataSection) -> Result<DataFrame> {
    if !path.is_file() {
        bail!(
            "data file {} not found (set data.train / data.test in the recipe)",
            path.display()
        );
    }
    match data.format {
        DataFormat::Tnews => read_jsonl(path, data.text_field(), data.label_field(), true),
        DataFormat::Jsonl => read_jsonl(path, data.text_field(), data.label_field(), false),
        DataFormat::Csv => read_csv(path, data.text_field(), data.label_field()),
    }
}

/// A JSON value used as a label: strings as they are, numbers and booleans printed.
fn label_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn read_jsonl(path: &Path, text_field: &str, label_field: &str, tnews: bool) -> Result<DataFrame> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut ids = Vec::new();
    let mut texts = Vec::new();
    let mut labels = Vec::new();
    let mut names = Vec::new();
    let mut row = 0u32;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let lineno = i + 1;
        let line =
            line.with_context(|| format!("{}:{lineno}: cannot read line", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| anyhow!("{}:{lineno}: not a JSON object: {e}", path.display()))?;
        let obj = v.as_object().ok_or_else(|| {
            anyhow!(
                "{}:{lineno}: expected a JSON object per line",
                path.display()
            )
        })?;
        let text = obj
            .get(text_field)
            .and_then(|t| t.as_str())
            .ok_or_else(|| {
                anyhow!(
                "{}:{lineno}: no string field `{text_field}` (data.text_field); fields here: {}",
                path.display(),
                obj.keys().cloned().collect::<Vec<_>>().join(", ")
            )
            })?;
        let label = obj.get(label_field).and_then(label_string).ok_or_else(|| {
            anyhow!(
                "{}:{lineno}: no label field `{label_field}` (data.label_field); fields here: {}",
                path.display(),
                obj.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })?;
        let name = if tnews {
            let desc = obj.get("label_desc").and_then(|d| d.as_str()).ok_or_else(|| {
                anyhow!(
                    "{}:{lineno}: TNEWS line without `label_desc` (use data.format = \"jsonl\" for other files)",
                    path.display()
                )
            })?;
            desc.strip_prefix("news_").unwrap_or(desc).to_string()
        } else {
            label.clone()
        };
        ids.push(row);
        texts.push(text.to_string());
        labels.push(label);
        names.push(name);
        row += 1;
    }
    if ids.is_empty() {
        bail!("{}: no examples (empty file)", path.display());
    }
    Ok(df!("id" => ids, "text" => texts, "label" => labels, "name" => names)?)
}

fn read_csv(path: &Path, text_field: &str, label_field: &str) -> Result<DataFrame> {
    let df = CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(1000))
        .try_into_reader_with_file_path(Some(path.to_path_buf()))
        .and_then(|r| r.finish())
        .map_err(|e| anyhow!("{}: cannot read CSV: {e}", path.display()))?;
    let columns: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|c| c.to_string())
        .collect();
    for (field, key) in [
        (text_field, "data.text_field"),
        (label_field, "data.label_field"),
    ] {
        if !columns.iter().any(|c| c == field) {
            bail!(
                "{}: no column `{field}` ({key}); columns: {}",
                path.display(),
                columns.join(", ")
            );
        }
    }
    let text = df.column(text_field)?.cast(&DataType::String)?;
    let label = df.column(label_field)?.cast(&DataType::String)?;
    let (text, label) = (text.str()?, label.str()?);
    let mut ids = Vec::with_capacity(df.height());
    let mut texts = Vec::with_capacity(df.height());
    let mut labels = Vec::with_capacity(df.height());
    for (i, (t, l)) in text.iter().zip(label.iter()).enumerate() {
        // Row i of the data is line i + 2 of the file (after the header) for one-line rows.
        let t = t.ok_or_else(|| {
            anyhow!(
                "{}: data row {} has an empty `{text_field}`",
                path.display(),
                i + 1
            )
        })?;
        let l = l.ok_or_else(|| {
            anyhow!(
                "{}: data row {} has an empty `{label_field}`",
                path.display(),
                i + 1
            )
        })?;
        ids.push(i as u32);
        texts.push(t.to_string());
        labels.push(l.to_string());
    }
    if ids.is_empty() {
        bail!("{}: no examples (header only)", path.display());
    }
    let names = labels.clone();
    Ok(df!("id" => ids, "text" => texts, "label" => labels, "name" => names)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn data(format: DataFormat) -> DataSection {
        DataSection {
            format,
            ..DataSection::default()
        }
    }

    #[test]
    fn tnews_lines_read_with_names() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            f,
            r#"{{"label": "103", "label_desc": "news_sports", "sentence": "球赛", "keywords": ""}}"#
        )
        .unwrap();
        writeln!(
            f,
            r#"{{"label": "107", "label_desc": "news_car", "sentence": "新车", "keywords": "a,b"}}"#
        )
        .unwrap();
        let df = read_examples(f.path(), &data(DataFormat::Tnews)).unwrap();
        assert_eq!(df.height(), 2);
        let names: Vec<_> = df
            .column("name")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .flatten()
            .collect();
        assert_eq!(names, ["sports", "car"]);
    }

    #[test]
    fn bad_json_line_names_file_and_line() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, r#"{{"label": "1", "text": "ok"}}"#).unwrap();
        writeln!(f, r#"{{"label": "1", "text": "#).unwrap();
        let err = read_examples(f.path(), &data(DataFormat::Jsonl))
            .unwrap_err()
            .to_string();
        assert!(err.contains(":2:"), "{err}");
        assert!(err.contains(&f.path().display().to_string()), "{err}");
    }

    #[test]
    fn missing_field_is_named() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, r#"{{"label": "1", "body": "ok"}}"#).unwrap();
        let err = read_examples(f.path(), &data(DataFormat::Jsonl))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`text`") && err.contains("body"), "{err}");
    }

    #[test]
    fn csv_with_numeric_labels() {
        let mut f = tempfile::Builder::new().suffix(".csv").tempfile().unwrap();
        writeln!(f, "text,label\n\"hello, world\",1\nbye,2").unwrap();
        let df = read_examples(f.path(), &data(DataFormat::Csv)).unwrap();
        let labels: Vec<_> = df
            .column("label")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .flatten()
            .collect();
        assert_eq!(labels, ["1", "2"]);
        let texts: Vec<_> = df
            .column("text")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .flatten()
            .collect();
        assert_eq!(texts[0], "hello, world");
        let mut g = tempfile::Builder::new().suffix(".csv").tempfile().unwrap();
        writeln!(g, "body,label\nx,1").unwrap();
        let err = read_examples(g.path(), &data(DataFormat::Csv))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no column `text`"), "{err}");
    }
}
