//! The self-contained HTML page: inline CSS and SVG, no scripts, no network.

use super::{templates, Exporter, Report};
use crate::store::write_atomic;
use anyhow::Result;
use std::path::{Path, PathBuf};

pub struct HtmlExporter;

impl Exporter for HtmlExporter {
    fn export(&self, report: &Report, dir: &Path) -> Result<Vec<PathBuf>> {
        // The `.html` name turns on minijinja's HTML auto-escaping of every value.
        let html = templates::render(&report.env, "report.html", &report.page)?;
        Ok(vec![write_atomic(
            &dir.join("index.html"),
            html.as_bytes(),
        )?])
    }
}
