//! Every table as CSV, written by polars, full precision.

use super::{Exporter, Report};
use crate::store::write_with;
use anyhow::{Context, Result};
use polars::prelude::{CsvWriter, SerWriter};
use std::path::{Path, PathBuf};

pub struct CsvExporter;

impl Exporter for CsvExporter {
    fn export(&self, report: &Report, dir: &Path) -> Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for (name, df) in report.frames.all() {
            let path = dir.join(format!("{name}.csv"));
            files.push(write_with(&path, |tmp| {
                let mut file = std::fs::File::create(tmp)
                    .with_context(|| format!("cannot create {}", tmp.display()))?;
                let mut df = df.clone();
                CsvWriter::new(&mut file)
                    .include_header(true)
                    .finish(&mut df)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                Ok(())
            })?);
        }
        Ok(files)
    }
}
