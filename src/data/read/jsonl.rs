//! JSON lines, TNEWS's and any other: one JSON object per non-blank line, its text and label
//! fields named by the recipe (TNEWS also has `label_desc`, the label's name).

use super::{examples, read_bytes, BadRows, ReadFile};
use crate::recipe::{shown, DataSection};
use anyhow::{bail, Result};
use std::path::Path;

/// The line scan: every non-blank line must be a JSON object with a non-empty string text field,
/// a label (string, number or boolean) and, for TNEWS, a string `label_desc`.
pub(super) fn read_jsonl(path: &Path, data: &DataSection, tnews: bool) -> Result<ReadFile> {
    let (text_field, label_field) = (data.text_field(), data.label_field());
    let bytes = read_bytes(path)?;
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        bail!(
            "{}: a JSON array, expected JSON lines (one object per line; `jq -c '.[]'` converts it)",
            path.display()
        );
    }
    let mut bad = BadRows::new(path, data.on_error);
    let (mut ids, mut lines, mut texts, mut labels, mut names) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut row = 0u32;
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let lineno = i + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let id = row;
        row += 1;
        let Some(Row { text, label, name }) =
            jsonl_row(line, lineno, (text_field, label_field), tnews, &mut bad)?
        else {
            continue;
        };
        ids.push(id);
        lines.push(lineno as u32);
        texts.push(text);
        labels.push(label);
        names.push(name);
    }
    if ids.is_empty() {
        if row == 0 {
            bail!("{}: no examples (empty file)", path.display());
        }
        bail!(
            "{}: no examples left ({row} rows, all bad: {})",
            path.display(),
            bad.skipped()
                .iter()
                .map(|s| format!("{} × {}", s.rows, s.reason))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(ReadFile {
        frame: examples(ids, lines, texts, labels, names)?,
        skipped: bad.skipped(),
    })
}

/// One good line's example.
struct Row {
    text: String,
    label: String,
    /// The label's display name.
    name: String,
}

/// The example of the non-blank line `line` (physical line `lineno`, from 1), or `None` for a bad
/// row that `bad` leaves out (`data.on_error = "skip"`). `fields`: the text and label fields.
fn jsonl_row(
    line: &[u8],
    lineno: usize,
    fields: (&str, &str),
    tnews: bool,
    bad: &mut BadRows<'_>,
) -> Result<Option<Row>> {
    let (text_field, label_field) = fields;
    let line = match std::str::from_utf8(line) {
        Ok(l) => l,
        Err(e) => {
            bad.bad(lineno, "not UTF-8 text", &format!(": {e}"))?;
            return Ok(None);
        }
    };
    let v: serde_json::Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => {
            bad.bad(
                lineno,
                "not a JSON object",
                &format!(": {e}; the line starts \"{}\"", shown(line)),
            )?;
            return Ok(None);
        }
    };
    let Some(obj) = v.as_object() else {
        bad.bad(
            lineno,
            "not a JSON object",
            &format!(": found {}", json_kind(&v)),
        )?;
        return Ok(None);
    };
    let fields = || obj.keys().map(|k| shown(k)).collect::<Vec<_>>().join(", ");
    let text = match obj.get(text_field) {
        Some(serde_json::Value::String(t)) => t,
        Some(other) => {
            bad.bad(
                lineno,
                &format!("no string field `{text_field}` (data.text_field)"),
                &format!(": found {}", json_kind(other)),
            )?;
            return Ok(None);
        }
        None => {
            bad.bad(
                lineno,
                &format!("no string field `{text_field}` (data.text_field)"),
                &format!("; fields here: {}", fields()),
            )?;
            return Ok(None);
        }
    };
    if text.trim().is_empty() {
        bad.bad(
            lineno,
            &format!("empty text in `{text_field}`"),
            &format!(": \"{}\"", shown(text)),
        )?;
        return Ok(None);
    }
    let Some(label) = obj.get(label_field).and_then(label_string) else {
        let found = match obj.get(label_field) {
            Some(v) => format!(": found {}", json_kind(v)),
            None => format!("; fields here: {}", fields()),
        };
        bad.bad(
            lineno,
            &format!("no label field `{label_field}` (data.label_field)"),
            &found,
        )?;
        return Ok(None);
    };
    if label.trim().is_empty() {
        bad.bad(lineno, &format!("empty label in `{label_field}`"), "")?;
        return Ok(None);
    }
    let name = if tnews {
        match obj.get("label_desc") {
            Some(serde_json::Value::String(d)) => d.strip_prefix("news_").unwrap_or(d).to_string(),
            _ => {
                bad.bad(
                    lineno,
                    "TNEWS line without a string `label_desc`",
                    " (use data.format = \"jsonl\" for other files)",
                )?;
                return Ok(None);
            }
        }
    } else {
        label.clone()
    };
    Ok(Some(Row {
        text: text.clone(),
        label,
        name,
    }))
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

/// What a JSON value is, in words.
fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "true or false",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}
