//! CSV files, read by polars with every column as text; each row is named by the physical line
//! it starts on, found by a scan of its own that also says where polars cannot have read a file.

use super::{examples, read_bytes, BadRows, ReadFile};
use crate::recipe::{shown, DataSection};
use anyhow::{anyhow, bail, Result};
use polars::prelude::*;
use std::path::Path;

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
pub(super) fn record_starts(bytes: &[u8]) -> Vec<usize> {
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
pub(super) fn data_lines(starts: &[usize], rows: usize) -> Vec<usize> {
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

/// Read a CSV file with a header row.
pub(super) fn read_csv(path: &Path, data: &DataSection) -> Result<ReadFile> {
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
                crate::data::listed(df.get_column_names().iter().map(|c| shown(c.as_str())))
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
