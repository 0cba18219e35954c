//! The Markdown page (`README.md`, which GitHub renders); plots are the SVG files beside it.

use super::{templates, Exporter, Report};
use crate::store::write_atomic;
use anyhow::Result;
use std::path::{Path, PathBuf};

pub struct MarkdownExporter;

impl Exporter for MarkdownExporter {
    fn export(&self, report: &Report, dir: &Path) -> Result<Vec<PathBuf>> {
        let md = templates::render(&report.env, "report.md", &report.page)?;
        Ok(vec![write_atomic(&dir.join("README.md"), md.as_bytes())?])
    }
}
