//! Every plot of a page as an SVG file (the Markdown page shows them as images; the HTML page
//! has them inline).

use super::{Exporter, Report};
use crate::store::write_atomic;
use anyhow::Result;
use std::path::{Path, PathBuf};

pub struct SvgExporter;

impl Exporter for SvgExporter {
    fn export(&self, report: &Report, dir: &Path) -> Result<Vec<PathBuf>> {
        report
            .plots()
            .into_iter()
            .map(|p| write_atomic(&dir.join(&p.file), p.svg.as_bytes()))
            .collect()
    }
}
