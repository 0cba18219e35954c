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

mod csv;
mod jsonl;
#[cfg(test)]
mod tests;

use super::Skipped;
use crate::recipe::{DataFormat, DataSection, OnError};
use anyhow::{bail, Context, Result};
use csv::read_csv;
use jsonl::read_jsonl;
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

/// The file's bytes without a leading byte order mark.
fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let mut bytes =
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.starts_with(BOM) {
        bytes.drain(..BOM.len());
    }
    Ok(bytes)
}
