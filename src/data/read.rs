//! Reading example files with polars' own readers: TNEWS json-lines, any json-lines, any CSV.
//!
//! Every reader yields the same frame: `id` (the row's number in its file, from 0; blank lines do
//! not count), `text`, `label` (the label value as a string: JSON numbers and booleans printed)
//! and `name` (the label's display name: TNEWS's `label_desc` without its `news_` prefix, else the
//! label itself).
//!
//! Polars reads the whole file; a bad row is then found by [`scan_jsonl`], a line scan that names
//! the file, the line and the field. It runs only when polars fails or reads values it does not
//! keep apart from strings (a number where the text should be, a float label).

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

/// The example frame from its text and label columns (strings without nulls, in file order) and,
/// for TNEWS, the `label_desc` column.
fn examples(
    text: &StringChunked,
    label: &StringChunked,
    desc: Option<&StringChunked>,
) -> Result<DataFrame> {
    let name = match desc {
        Some(desc) => desc.apply_mut(|d| d.strip_prefix("news_").unwrap_or(d)),
        None => label.clone(),
    };
    let columns = vec![
        text.clone().with_name("text".into()).into_column(),
        label.clone().with_name("label".into()).into_column(),
        name.with_name("name".into()).into_column(),
    ];
    Ok(DataFrame::new(text.len(), columns)?.with_row_index("id".into(), None)?)
}

/// Whether a string could be polars' rendering of a JSON value that is not a string (a number, a
/// boolean, an object or an array read into a string column).
fn maybe_not_a_string(s: &str) -> bool {
    s == "true" || s == "false" || maybe_container(s) || s.parse::<f64>().is_ok()
}

/// Whether a string could be polars' rendering of a JSON object or array.
fn maybe_container(s: &str) -> bool {
    (s.starts_with('{') && s.ends_with('}')) || (s.starts_with('[') && s.ends_with(']'))
}

/// Whether a label string could be printed differently by polars than by the line scan: objects
/// and arrays (not labels at all) and numbers that are not integers.
fn maybe_misprinted_label(s: &str) -> bool {
    maybe_container(s)
        || (s.parse::<f64>().is_ok() && s.parse::<i64>().is_err() && s.parse::<u64>().is_err())
}

/// A string column of `df` without nulls and without values that may have been non-strings.
fn plain_strings<'a>(df: &'a DataFrame, field: &str) -> Option<&'a StringChunked> {
    let ca = df.column(field).ok()?.str().ok()?;
    (ca.null_count() == 0 && !ca.iter().flatten().any(maybe_not_a_string)).then_some(ca)
}

/// The label column as strings, if polars printed every label as the line scan does.
fn plain_labels(df: &DataFrame, field: &str) -> Option<StringChunked> {
    let col = df.column(field).ok()?;
    if col.null_count() > 0 {
        return None;
    }
    match col.dtype() {
        DataType::String => {
            let ca = col.str().ok()?;
            (!ca.iter().flatten().any(maybe_misprinted_label)).then(|| ca.clone())
        }
        DataType::Int64 | DataType::UInt64 | DataType::Boolean => {
            col.cast(&DataType::String).ok()?.str().ok().cloned()
        }
        _ => None,
    }
}

fn read_jsonl(path: &Path, text_field: &str, label_field: &str, tnews: bool) -> Result<DataFrame> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let df = match JsonReader::new(file)
        .with_json_format(JsonFormat::JsonLines)
        .infer_schema_len(None)
        .finish()
    {
        Ok(df) => df,
        Err(e) => {
            scan_jsonl(path, text_field, label_field, tnews)?;
            bail!("{}: cannot read json-lines: {e}", path.display());
        }
    };
    let text = plain_strings(&df, text_field);
    let desc = tnews.then(|| plain_strings(&df, "label_desc"));
    let label = plain_labels(&df, label_field);
    if let (Some(text), Some(label), None | Some(Some(_))) = (text, &label, desc) {
        return examples(text, label, desc.flatten());
    }
    // Something polars read is not what the line scan would keep: it names the bad line, or
    // (every line good: texts that look like numbers, float labels) gives the labels as printed.
    let labels = scan_jsonl(path, text_field, label_field, tnews)?;
    if labels.len() != df.height() {
        bail!(
            "{}: polars read {} rows, the line scan {}",
            path.display(),
            df.height(),
            labels.len()
        );
    }
    let label = StringChunked::from_iter_values("label".into(), labels.iter().map(String::as_str));
    let desc = match tnews {
        true => Some(df.column("label_desc")?.str()?),
        false => None,
    };
    examples(df.column(text_field)?.str()?, &label, desc)
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

/// The line scan: every non-blank line must be a JSON object with a string text field, a label
/// (string, number or boolean) and, for TNEWS, a string `label_desc`. The first line that is not
/// is an error naming the file, the line (from 1, blank lines counted) and the field. Returns the
/// labels, one per example.
fn scan_jsonl(
    path: &Path,
    text_field: &str,
    label_field: &str,
    tnews: bool,
) -> Result<Vec<String>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut labels = Vec::new();
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
        let fields = || obj.keys().cloned().collect::<Vec<_>>().join(", ");
        if !obj.get(text_field).is_some_and(|t| t.is_string()) {
            bail!(
                "{}:{lineno}: no string field `{text_field}` (data.text_field); fields here: {}",
                path.display(),
                fields()
            );
        }
        let label = obj.get(label_field).and_then(label_string).ok_or_else(|| {
            anyhow!(
                "{}:{lineno}: no label field `{label_field}` (data.label_field); fields here: {}",
                path.display(),
                fields()
            )
        })?;
        if tnews && !obj.get("label_desc").is_some_and(|d| d.is_string()) {
            bail!(
                "{}:{lineno}: TNEWS line without `label_desc` (use data.format = \"jsonl\" for other files)",
                path.display()
            );
        }
        labels.push(label);
    }
    if labels.is_empty() {
        bail!("{}: no examples (empty file)", path.display());
    }
    Ok(labels)
}

fn read_csv(path: &Path, text_field: &str, label_field: &str) -> Result<DataFrame> {
    let df = CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(1000))
        .try_into_reader_with_file_path(Some(path.to_path_buf()))
        .and_then(|r| r.finish())
        .map_err(|e| anyhow!("{}: cannot read CSV: {e}", path.display()))?;
    for (field, key) in [
        (text_field, "data.text_field"),
        (label_field, "data.label_field"),
    ] {
        if df.column(field).is_err() {
            bail!(
                "{}: no column `{field}` ({key}); columns: {}",
                path.display(),
                df.get_column_names()
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let text = df.column(text_field)?.cast(&DataType::String)?;
    let label = df.column(label_field)?.cast(&DataType::String)?;
    let (text, label) = (text.str()?, label.str()?);
    // The first data row (from 1) with an empty cell; row i is line i + 1 for one-line rows.
    let empty = text
        .iter()
        .zip(label.iter())
        .position(|(t, l)| t.is_none() || l.is_none());
    if let Some(i) = empty {
        let field = if text.get(i).is_none() {
            text_field
        } else {
            label_field
        };
        bail!(
            "{}: data row {} has an empty `{field}`",
            path.display(),
            i + 1
        );
    }
    if df.height() == 0 {
        bail!("{}: no examples (header only)", path.display());
    }
    examples(text, label, None)
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

    #[test]
    fn non_string_text_among_strings_names_its_line() {
        // Polars reads the number into the string column; the line scan finds it.
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, r#"{{"label": "1", "text": "ok"}}"#).unwrap();
        writeln!(f).unwrap();
        writeln!(f, r#"{{"label": "1", "text": 12}}"#).unwrap();
        let err = read_examples(f.path(), &data(DataFormat::Jsonl))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(":3:") && err.contains("no string field `text`"),
            "{err}"
        );
    }

    #[test]
    fn texts_that_look_like_numbers_and_float_labels_read_as_written() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, r#"{{"label": 2.0, "text": "12"}}"#).unwrap();
        writeln!(f, r#"{{"label": "x", "text": "[a] b"}}"#).unwrap();
        writeln!(f, r#"{{"label": 1e2, "text": "true"}}"#).unwrap();
        let df = read_examples(f.path(), &data(DataFormat::Jsonl)).unwrap();
        let strings = |c: &str| -> Vec<String> {
            let col = df.column(c).unwrap().str().unwrap().clone();
            col.iter().flatten().map(String::from).collect()
        };
        assert_eq!(strings("text"), ["12", "[a] b", "true"]);
        assert_eq!(strings("label"), ["2.0", "x", "100.0"]);
        assert_eq!(strings("name"), strings("label"));
        let ids: Vec<u32> = df
            .column("id")
            .unwrap()
            .u32()
            .unwrap()
            .into_no_null_iter()
            .collect();
        assert_eq!(ids, [0, 1, 2]);
    }
}
