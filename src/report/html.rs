//! The self-contained HTML page (inline CSS, no scripts, no network).

use super::{environment, Exporter, Report};
use crate::store::write_atomic;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

const TEMPLATE: &str = include_str!("../../templates/report.html");

pub struct HtmlExporter;

impl Exporter for HtmlExporter {
    fn export(&self, report: &Report, dir: &Path) -> Result<Vec<PathBuf>> {
        let mut env = environment();
        // The `.html` name turns on minijinja's HTML auto-escaping of every value.
        env.add_template("report.html", TEMPLATE)?;
        let html = env
            .get_template("report.html")?
            .render(minijinja::context! { page => minijinja::value::Serde(&report.page) })
            .context("cannot render templates/report.html")?;
        Ok(vec![write_atomic(
            &dir.join("index.html"),
            html.as_bytes(),
        )?])
    }
}
