//! Reading example files: TNEWS json-lines, any json-lines, any CSV (polars' reader).
//!
//! Every reader yields the same frame: `id` (the row's number in its file, from 0; blank lines do
//! not count, bad rows left out with `data.on_error = "skip"` do), `line` (the physical line the
//! row starts on, from 1, as an editor counts: blank lines, a CSV header and the lines inside a
//! quoted CSV field count; a byte order mark is part of line 1), `text`, `label` (the label
//! value as a string: JSON numbers and booleans printed) and `name` (the label's display name:
//! TNEWS's `label_desc` without its `news_` prefix, else the label itself). A file's own `id`
//! field is not read: two rows with the same `id` value are two examples. Messages name rows by
//! `line`, never by `id`.
//!
//! What a normal editor writes is read: a UTF-8 byte order mark, CRLF line ends, blank lines,
//! lines of any length. A JSON array file is named as such. A bad row (not a JSON object, no
//! string text or no label, a text that is empty or only white space, TNEWS without
//! `label_desc`) stops the read naming file, line and field (`data.on_error = "fail"`), or is
//! left out and counted by kind (`"skip"`).

use super::Skipped;
use crate::recipe::{shown, DataFormat, DataSection, OnError};
use anyhow::{anyhow, bail, Context, Result};
use polars::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// A UTF-8 byte order mark, as some editors write at the start of a file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A read file: its examples' frame and the rows left out, by kind.
#[derive(Debug, Clone)]
pub struct ReadFile {
    pub frame: DataFrame,
    pub skipped: Vec<Skipped>,
}

/// Read one example file as the recipe's `data` section describes it.
pub fn read_examples(path: &Path, data: &DataSection) -> Result<DataFrame> {
    read_file(path, data).map(|r| r.frame)
}

/// Read one example file, with the rows `data.on_error = "skip"` left out.
pub fn read_file(path: &Path, data: &DataSection) -> Result<ReadFile> {
    if path.is_dir() {
        bail!(
            "data file {} is a folder, not a file (set data.train / data.test in the recipe)",
            path.display()
        );
    }
    if !path.is_file() {
        bail!(
            "data file {} not found (set data.train / data.test in the recipe)",
            path.display()
        );
    }
    match data.format {
        DataFormat::Tnews => read_jsonl(path, data, true),
        DataFormat::Jsonl => read_jsonl(path, data, false),
        DataFormat::Csv => read_csv(path, data),
    }
}

/// Bad rows of one file: the first is an error (`fail`), or each kind is counted (`skip`).
struct BadRows<'a> {
    path: &'a Path,
    on_error: OnError,
    /// Kind → (rows, first line).
    kinds: BTreeMap<String, (usize, usize)>,
}

impl<'a> BadRows<'a> {
    fn new(path: &'a Path, on_error: OnError) -> Self {
        Self {
            path,
            on_error,
            kinds: BTreeMap::new(),
        }
    }

    /// A bad row starting at physical line `line` (from 1) of kind `kind` (short, the same for every row of the kind); `detail`
    /// completes the error message.
    fn bad(&mut self, line: usize, kind: &str, detail: &str) -> Result<()> {
        match self.on_error {
            OnError::Fail => bail!(
                "{}:{line}: {kind}{detail} (data.on_error = \"skip\" leaves such rows out)",
                self.path.display()
            ),
            OnError::Skip => {
                let entry = self.kinds.entry(kind.to_string()).or_insert((0, line));
                entry.0 += 1;
                Ok(())
            }
        }
    }

    fn skipped(&self) -> Vec<Skipped> {
        let file = self.path.display().to_string();
        self.kinds
            .iter()
            .map(|(reason, (rows, first))| Skipped {
                file: file.clone(),
                reason: reason.clone(),
                rows: *rows,
                first_at: format!("line {first}"),
            })
            .collect()
    }
}

/// The example frame from its columns, in file order.
fn examples(
    ids: Vec<u32>,
    lines: Vec<u32>,
    text: Vec<String>,
    label: Vec<String>,
    name: Vec<String>,
) -> Result<DataFrame> {
    Ok(df!(
        "id" => ids,
        "line" => lines,
        "text" => text,
        "label" => label,
        "name" => name
    )?)
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

/// The file's bytes without a leading byte order mark.
fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let mut bytes =
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.starts_with(BOM) {
        bytes.drain(..BOM.len());
    }
    Ok(bytes)
}

/// The line scan: every non-blank line must be a JSON object with a non-empty string text field,
/// a label (string, number or boolean) and, for TNEWS, a string `label_desc`.
fn read_jsonl(path: &Path, data: &DataSection, tnews: bool) -> Result<ReadFile> {
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
        let line = match std::str::from_utf8(line) {
            Ok(l) => l,
            Err(e) => {
                bad.bad(lineno, "not UTF-8 text", &format!(": {e}"))?;
                continue;
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
                continue;
            }
        };
        let Some(obj) = v.as_object() else {
            bad.bad(
                lineno,
                "not a JSON object",
                &format!(": found {}", json_kind(&v)),
            )?;
            continue;
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
                continue;
            }
            None => {
                bad.bad(
                    lineno,
                    &format!("no string field `{text_field}` (data.text_field)"),
                    &format!("; fields here: {}", fields()),
                )?;
                continue;
            }
        };
        if text.trim().is_empty() {
            bad.bad(
                lineno,
                &format!("empty text in `{text_field}`"),
                &format!(": \"{}\"", shown(text)),
            )?;
            continue;
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
            continue;
        };
        if label.trim().is_empty() {
            bad.bad(lineno, &format!("empty label in `{label_field}`"), "")?;
            continue;
        }
        let name = if tnews {
            match obj.get("label_desc") {
                Some(serde_json::Value::String(d)) => {
                    d.strip_prefix("news_").unwrap_or(d).to_string()
                }
                _ => {
                    bad.bad(
                        lineno,
                        "TNEWS line without a string `label_desc`",
                        " (use data.format = \"jsonl\" for other files)",
                    )?;
                    continue;
                }
            }
        } else {
            label.clone()
        };
        ids.push(id);
        lines.push(lineno as u32);
        texts.push(text.clone());
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

/// Polars' CSV error in words: its column type `str` is text, its offset a byte, the quoted
/// input cut to `limit` characters with invisible characters shown.
fn csv_error(e: &PolarsError, limit: usize) -> String {
    let message = e
        .to_string()
        .replace("dtype `str`", "text")
        .replace("\n\nThe current offset in the file is ", " (at byte ")
        .replace(" bytes.", ")");
    crate::recipe::shown_up_to(message.trim(), limit)
}

/// The physical line (from 1) on which each CSV record of `bytes` starts, as polars splits them: a
/// record ends at a line feed outside double quotes (a quoted field may span lines; a blank line
/// is a record of its own; the line feed ending the file starts none). The first is the header.
fn record_starts(bytes: &[u8]) -> Vec<usize> {
    let mut starts = vec![1];
    let (mut line, mut quoted) = (1, false);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b'\n' => {
                line += 1;
                if !quoted && i + 1 < bytes.len() {
                    starts.push(line);
                }
            }
            _ => {}
        }
    }
    starts
}

/// The lines of `rows` data rows from [`record_starts`]: the records after the header or, were
/// polars to read fewer (blank lines before the header), the last `rows`.
fn data_lines(starts: &[usize], rows: usize) -> Vec<usize> {
    let data = &starts[1.min(starts.len())..];
    let mut out = data[data.len().saturating_sub(rows)..].to_vec();
    // Never short of rows: a record polars saw and the scan did not is put after the last.
    while out.len() < rows {
        out.push(out.last().map_or(2, |l| l + 1));
    }
    out
}

/// Where and why polars cannot have read a CSV file, as far as a scan can tell: the line of the
/// first row with more fields than the header, or of the row where a quote is opened and never
/// closed.
fn csv_trouble(bytes: &[u8]) -> Option<(usize, String)> {
    let (mut line, mut quoted) = (1, false);
    let (mut start, mut fields, mut blank) = (1, 1, true);
    let mut header = None;
    for &b in bytes {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => fields += 1,
            b'\n' => {
                line += 1;
                if quoted {
                    continue;
                }
                match header {
                    None if !blank => header = Some(fields),
                    Some(h) if !blank && fields > h => {
                        return Some((start, format!("{fields} fields, the header has {h}")));
                    }
                    _ => {}
                }
                (start, fields, blank) = (line, 1, true);
                continue;
            }
            _ => {}
        }
        blank = false;
    }
    if quoted {
        return Some((start, "a quote opened in this row is never closed".into()));
    }
    match header {
        Some(h) if !blank && fields > h => {
            Some((start, format!("{fields} fields, the header has {h}")))
        }
        _ => None,
    }
}

fn read_csv(path: &Path, data: &DataSection) -> Result<ReadFile> {
    let (text_field, label_field) = (data.text_field(), data.label_field());
    let mut bytes = read_bytes(path)?;
    if bytes.contains(&b'\r') {
        // CRLF line ends (also inside quoted fields) read as LF.
        let mut out = Vec::with_capacity(bytes.len());
        let mut it = bytes.iter().peekable();
        while let Some(&b) = it.next() {
            if b == b'\r' && it.peek() == Some(&&b'\n') {
                continue;
            }
            out.push(b);
        }
        bytes = out;
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        bail!("{}: no examples (empty file)", path.display());
    }
    let starts = record_starts(&bytes);
    let trouble = csv_trouble(&bytes);
    // Every column as strings: labels and texts read as written (`1.0` stays `1.0`).
    let df = CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .into_reader_with_file_handle(std::io::Cursor::new(bytes))
        .finish()
        .map_err(|e| match trouble {
            Some((line, what)) => anyhow!(
                "{}:{line}: cannot read CSV: {what} (polars: {})",
                path.display(),
                csv_error(&e, 120)
            ),
            None => anyhow!(
                "{}: cannot read CSV: {}",
                path.display(),
                csv_error(&e, 600)
            ),
        })?;
    for (field, key) in [
        (text_field, "data.text_field"),
        (label_field, "data.label_field"),
    ] {
        if df.column(field).is_err() {
            bail!(
                "{}: no column `{field}` ({key}); columns: {}",
                path.display(),
                super::listed(df.get_column_names().iter().map(|c| shown(c.as_str())))
            );
        }
    }
    if df.height() == 0 {
        bail!("{}: no examples (header only)", path.display());
    }
    let text = df.column(text_field)?.cast(&DataType::String)?;
    let label = df.column(label_field)?.cast(&DataType::String)?;
    let (text, label) = (text.str()?, label.str()?);
    let starts = data_lines(&starts, df.height());
    let mut bad = BadRows::new(path, data.on_error);
    let (mut ids, mut lines, mut texts, mut labels) = (vec![], vec![], vec![], vec![]);
    for (i, (t, l)) in text.iter().zip(label.iter()).enumerate() {
        let row = starts[i];
        if t.is_none() && l.is_none() {
            continue; // a blank line
        }
        let t = t.unwrap_or_default();
        let l = l.unwrap_or_default();
        if t.trim().is_empty() {
            bad.bad(
                row,
                &format!("empty text in `{text_field}`"),
                &format!(": \"{}\"", shown(t)),
            )?;
            continue;
        }
        if l.trim().is_empty() {
            bad.bad(row, &format!("empty label in `{label_field}`"), "")?;
            continue;
        }
        ids.push(i as u32);
        lines.push(row as u32);
        texts.push(t.to_string());
        labels.push(l.to_string());
    }
    if ids.is_empty() {
        bail!(
            "{}: no examples left (every data row is bad)",
            path.display()
        );
    }
    let names = labels.clone();
    Ok(ReadFile {
        frame: examples(ids, lines, texts, labels, names)?,
        skipped: bad.skipped(),
    })
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

    fn column_u32(df: &DataFrame, c: &str) -> Vec<u32> {
        df.column(c)
            .unwrap()
            .u32()
            .unwrap()
            .into_no_null_iter()
            .collect()
    }

    #[test]
    fn jsonl_lines_are_physical_lines_with_bom_and_blank_lines() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"\xEF\xBB\xBF{\"label\": \"1\", \"text\": \"a\"}\r\n\r\n  \n")
            .unwrap();
        writeln!(f, r#"{{"label": "2", "text": "b"}}"#).unwrap();
        let df = read_examples(f.path(), &data(DataFormat::Jsonl)).unwrap();
        assert_eq!(column_u32(&df, "id"), [0, 1]);
        assert_eq!(column_u32(&df, "line"), [1, 4]);
        writeln!(f).unwrap();
        writeln!(f, r#"{{"label": "3", "text": " "}}"#).unwrap();
        let err = read_examples(f.path(), &data(DataFormat::Jsonl))
            .unwrap_err()
            .to_string();
        let want = format!("{}:6: empty text in `text`", f.path().display());
        assert!(err.starts_with(&want), "{err}");
    }

    #[test]
    fn csv_rows_are_named_by_the_line_they_start_on() {
        let mut f = tempfile::Builder::new().suffix(".csv").tempfile().unwrap();
        f.write_all(b"\xEF\xBB\xBFtext,label\r\n\"two\r\nlines, \"\"q\"\"\",1\r\n\r\nb,2\r\n")
            .unwrap();
        let df = read_examples(f.path(), &data(DataFormat::Csv)).unwrap();
        assert_eq!(column_u32(&df, "id"), [0, 2]);
        assert_eq!(column_u32(&df, "line"), [2, 5]);
        writeln!(f, "\"\",3").unwrap();
        let err = read_examples(f.path(), &data(DataFormat::Csv))
            .unwrap_err()
            .to_string();
        let want = format!("{}:6: empty text in `text`", f.path().display());
        assert!(err.starts_with(&want), "{err}");
        let skip = DataSection {
            on_error: OnError::Skip,
            ..data(DataFormat::Csv)
        };
        let read = read_file(f.path(), &skip).unwrap();
        assert_eq!(read.skipped.len(), 1);
        assert_eq!(read.skipped[0].first_at, "line 6");
    }

    #[test]
    fn record_starts_follow_quotes_and_blank_lines() {
        let b = b"h,l\n\"a\n\nb\",1\n\nc,2";
        assert_eq!(data_lines(&record_starts(b), 3), [2, 5, 6]);
        // Polars skipping leading blank lines: the last records are the data rows.
        assert_eq!(data_lines(&record_starts(b"\n\nh,l\nx,1\n"), 1), [4]);
        assert_eq!(data_lines(&record_starts(b""), 0), Vec::<usize>::new());
        assert_eq!(data_lines(&record_starts(b"h,l"), 1), [2]);
    }

    #[test]
    fn record_starts_agree_with_polars() {
        // (file, data rows' lines), as polars reads the rows.
        let cases: [(&str, &[usize]); 4] = [
            ("text,label\n\"a\"\"\nb\",1\n\n\nc,2", &[2, 4, 5, 6]),
            ("text,label\r\na,1\r\n", &[2]),
            ("\n\ntext,label\na,1\n", &[4]),
            ("text,label\n\"\"\"\",1\n,\n", &[2, 3]),
        ];
        for (s, lines) in cases {
            let df = CsvReadOptions::default()
                .with_has_header(true)
                .with_infer_schema_length(Some(0))
                .into_reader_with_file_handle(std::io::Cursor::new(s.as_bytes().to_vec()))
                .finish()
                .unwrap();
            assert_eq!(
                data_lines(&record_starts(s.as_bytes()), df.height()),
                lines,
                "{s:?}"
            );
        }
    }

    #[test]
    fn csv_that_polars_refuses_names_the_line() {
        let cases = [
            (
                "text,label\na,1\nb,2,3\nc,4\n",
                ":3: cannot read CSV: 3 fields, the header has 2",
            ),
            (
                "text,label\na,1\n\"b\n\nc,2\n",
                ":3: cannot read CSV: a quote opened in this row is never closed",
            ),
            (
                "text,label\na,1\nb\"c,2\nd,3\n",
                ":3: cannot read CSV: a quote opened in this row is never closed",
            ),
        ];
        for (text, want) in cases {
            let mut f = tempfile::Builder::new().suffix(".csv").tempfile().unwrap();
            f.write_all(text.as_bytes()).unwrap();
            let err = read_examples(f.path(), &data(DataFormat::Csv))
                .unwrap_err()
                .to_string();
            let want = format!("{}{want}", f.path().display());
            assert!(err.starts_with(&want), "{err}");
        }
    }
}
