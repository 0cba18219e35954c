//! Reports: a run's results → polars tables → pages. One [`Exporter`] per output format
//! (HTML page, Markdown page, CSV tables), each in its own file.

pub mod csv;
pub mod html;
pub mod markdown;
pub mod plot;
pub mod sweep;
pub mod table;
pub mod tables;

use crate::eval::InferenceTiming;
use crate::store::RunResults;
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
pub use table::Table;
pub use tables::Frames;

/// One model's part of a page.
#[derive(Debug, Clone, Serialize)]
pub struct ModelPage {
    pub key: String,
    pub label: String,
    pub params: String,
    pub trainable_params: String,
    pub best_epoch: usize,
    pub best_valid_accuracy: String,
    pub train_seconds: String,
    pub timing: InferenceTiming,
    pub per_class: Table,
    pub confusion: Table,
}

/// Everything a page template reads, already formatted.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    pub title: String,
    pub recipe_name: String,
    pub finished: String,
    pub total_minutes: String,
    pub kdrun_version: String,
    pub git_commit: String,
    pub machine: String,
    pub backend: String,
    pub adapter: String,
    pub backend_reason: String,
    pub headline: Vec<String>,
    pub comparison: Table,
    pub models: Vec<ModelPage>,
    pub data: Table,
    pub vocab_size: usize,
    pub teacher_vocab_size: usize,
    pub teacher_logit_rows: usize,
    pub pretrain: Option<PretrainPage>,
    pub student_tokens: String,
    /// Pretrained-vector coverage of the students' vocabulary, in words.
    pub coverage: Option<String>,
    pub transfer_set: usize,
    pub notes: Vec<String>,
    pub history: Table,
    pub timing_note: String,
    pub recipe_toml: String,
    pub run_dir: String,
    pub csv_files: Vec<String>,
}

/// Further pre-training, formatted.
#[derive(Debug, Clone, Serialize)]
pub struct PretrainPage {
    pub steps: usize,
    pub corpus: usize,
    pub heldout: usize,
    pub minutes: String,
    pub loss_before: String,
    pub loss_after: String,
    pub accuracy_before: String,
    pub accuracy_after: String,
}

/// A run's report: its tables and its formatted page.
pub struct Report {
    pub frames: Frames,
    pub page: Page,
}

fn headline(results: &RunResults) -> Vec<String> {
    let teacher = results.model("teacher");
    results
        .models
        .iter()
        .map(|m| {
            let mut line = format!(
                "{}: accuracy {:.4}, macro-F1 {:.4}, {} parameters",
                m.label,
                m.report.accuracy,
                m.report.macro_avg.f1,
                table::thousands(m.params as u64)
            );
            if let Some(t) = teacher.filter(|t| t.key != m.key) {
                line.push_str(&format!(
                    ", {:+.2} points vs the teacher, {:.1}× its inference speed",
                    (m.report.accuracy - t.report.accuracy) * 100.0,
                    m.timing.samples_per_sec / t.timing.samples_per_sec
                ));
            }
            line
        })
        .collect()
}

impl Report {
    pub fn build(results: &RunResults) -> Result<Self> {
        let frames = Frames::build(results)?;
        let models = results
            .models
            .iter()
            .zip(frames.per_class.iter().zip(&frames.confusion))
            .map(|(m, ((_, pc), (_, cm)))| ModelPage {
                key: m.key.clone(),
                label: m.label.clone(),
                params: table::thousands(m.params as u64),
                trainable_params: table::thousands(m.trainable_params as u64),
                best_epoch: m.best_epoch,
                best_valid_accuracy: format!("{:.4}", m.best_valid_accuracy),
                train_seconds: format!("{:.1}", m.train_seconds),
                timing: m.timing.clone(),
                per_class: Table::from_df(pc),
                confusion: Table::from_df(cm),
            })
            .collect();
        let timing = results.models.first().map(|m| &m.timing);
        let timing_note = match timing {
            Some(t) => format!(
                "Inference time: the {} test examples in batches of {} (sorted by length, padded per batch, \
                 already on the device), {} timed pass(es) after one untimed warm-up pass — on a GPU the \
                 warm-up holds kernel compilation and autotuning; the fastest pass is reported. \
                 Speed-up = samples/s of a model ÷ samples/s of the teacher, same backend, same machine.",
                t.samples, t.batch_size, t.repeats
            ),
            None => String::new(),
        };
        let page = Page {
            title: results.title.clone(),
            recipe_name: results.recipe_name.clone(),
            finished: results.finished.clone(),
            total_minutes: format!("{:.1}", results.total_seconds / 60.0),
            kdrun_version: results.kdrun_version.clone(),
            git_commit: results
                .git_commit
                .clone()
                .unwrap_or_else(|| "unknown".into()),
            machine: results.machine.describe(),
            backend: results.backend.clone(),
            adapter: results.adapter.clone(),
            backend_reason: results.backend_reason.clone(),
            headline: headline(results),
            comparison: Table::from_df(&frames.comparison),
            models,
            data: Table::from_df(&frames.data),
            vocab_size: results.vocab_size,
            teacher_vocab_size: results.teacher_vocab_size,
            teacher_logit_rows: results.teacher_logit_rows,
            pretrain: results.pretrain.as_ref().map(|p| PretrainPage {
                steps: p.steps,
                corpus: p.corpus,
                heldout: p.heldout,
                minutes: format!("{:.1}", p.seconds / 60.0),
                loss_before: format!("{:.4}", p.before.loss),
                loss_after: format!("{:.4}", p.after.loss),
                accuracy_before: format!("{:.4}", p.before.accuracy),
                accuracy_after: format!("{:.4}", p.after.accuracy),
            }),
            student_tokens: results.student_tokens.clone(),
            coverage: results.vectors_coverage.map(|c| {
                format!(
                    "{} of {} types ({:.1} %), {:.1} % of training tokens",
                    c.types_found,
                    c.types,
                    100.0 * c.types_found as f64 / c.types.max(1) as f64,
                    100.0 * c.tokens_found as f64 / c.tokens.max(1) as f64
                )
            }),
            transfer_set: results.transfer_set,
            notes: results.notes.clone(),
            history: Table::from_df(&frames.history),
            timing_note,
            recipe_toml: results.recipe_toml.clone(),
            run_dir: results.run_dir.clone(),
            csv_files: frames
                .all()
                .iter()
                .map(|(n, _)| format!("{n}.csv"))
                .collect(),
        };
        Ok(Self { frames, page })
    }
}

/// One output format.
pub trait Exporter {
    /// Write this format of `report` into `dir`; returns the files written.
    fn export(&self, report: &Report, dir: &Path) -> Result<Vec<PathBuf>>;
}

/// The formats every run writes.
pub fn exporters() -> Vec<Box<dyn Exporter>> {
    vec![
        Box::new(html::HtmlExporter),
        Box::new(markdown::MarkdownExporter),
        Box::new(csv::CsvExporter),
    ]
}

/// Render every format of `results` into `dir` (created if needed).
pub fn write_all(results: &RunResults, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create report folder {}", dir.display()))?;
    let report = Report::build(results)?;
    let mut files = Vec::new();
    for e in exporters() {
        files.extend(e.export(&report, dir)?);
    }
    Ok(files)
}

/// A minijinja environment with the project's templates.
pub(crate) fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .expect("default delimiters are valid"),
    );
    // Markdown table cells: a `|` would end the cell, a newline the row.
    env.add_filter("md", |s: String| s.replace('|', "\\|").replace('\n', " "));
    env
}
