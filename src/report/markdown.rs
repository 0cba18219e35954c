//! The Markdown page (`README.md`, which GitHub renders).

use super::{environment, Exporter, Report};
use crate::store::write_atomic;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

const TEMPLATE: &str = include_str!("../../templates/report.md");

pub struct MarkdownExporter;

impl Exporter for MarkdownExporter {
    fn export(&self, report: &Report, dir: &Path) -> Result<Vec<PathBuf>> {
        let mut env = environment();
        env.add_template("report.md", TEMPLATE)?;
        let md = env
            .get_template("report.md")?
            .render(minijinja::context! { page => minijinja::value::Serde(&report.page) })
            .context("cannot render templates/report.md")?;
        Ok(vec![write_atomic(&dir.join("README.md"), md.as_bytes())?])
    }
}
