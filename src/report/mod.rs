//! Reports: a run's results → polars tables → pages. One [`Exporter`] per output format
//! (HTML page, Markdown page, CSV tables), each in its own file.

pub mod csv;
pub mod errors;
pub mod html;
pub mod markdown;
pub mod plot;
pub mod site;
pub mod svg;
pub mod sweep;
pub mod table;
pub mod tables;
pub mod templates;

use crate::eval::InferenceTiming;
use crate::store::RunResults;
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
pub use table::Table;
pub use tables::Frames;

/// A plot: inline SVG for the HTML page, the same SVG as a file for the Markdown page.
#[derive(Debug, Clone, Serialize)]
pub struct Plot {
    pub title: String,
    pub svg: String,
    pub file: String,
}

/// A link back up (to a site's index or a sweep's page), for pages that have one.
#[derive(Debug, Clone, Serialize)]
pub struct Nav {
    pub text: String,
    /// From the HTML page.
    pub html: String,
    /// From the Markdown page.
    pub md: String,
}

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
    pub heatmap: Option<Plot>,
    /// Most frequent confusions with example sentences.
    pub errors: Option<Table>,
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
    /// Rows of the data files left out (`data.on_error = "skip"`), one sentence per file and kind.
    pub skipped_rows: Vec<String>,
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
    /// The models `[export]` wrote: their folders in the store and links to them.
    pub exports: Vec<ExportLink>,
    pub csv_files: Vec<String>,
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// Training curves and the accuracy-vs-speed view.
    pub plots: Vec<Plot>,
    /// The first disagreements of the teacher and the distilled student, and how many there are.
    pub disagreements: Option<Table>,
    pub disagreement_count: usize,
    pub error_analysis: bool,
    pub nav: Option<Nav>,
}

/// Disagreements shown on a page (all of them are in `disagreements.csv`).
pub const DISAGREEMENTS_SHOWN: usize = 25;

/// An exported model's folder on a run's page.
#[derive(Debug, Clone, Serialize)]
pub struct ExportLink {
    /// The folder, relative to the store.
    pub path: String,
    /// A link from the page's folder to it (empty where none can be made).
    pub href: String,
}

/// `target` as a relative link from the folder `base` (both made absolute first).
fn relative_link(base: &Path, target: &Path) -> String {
    let abs = |p: &Path| std::path::absolute(p).ok();
    let (Some(base), Some(target)) = (abs(base), abs(target)) else {
        return String::new();
    };
    let b: Vec<_> = base.components().collect();
    let t: Vec<_> = target.components().collect();
    let common = b.iter().zip(&t).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = vec!["..".to_string(); b.len() - common];
    parts.extend(
        t[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}

/// Further pre-training, formatted.
#[derive(Debug, Clone, Serialize)]
pub struct PretrainPage {
    /// "masked-LM" or "permutation-LM".
    pub objective: String,
    pub steps: usize,
    pub corpus: usize,
    pub heldout: usize,
    pub minutes: String,
    pub loss_before: String,
    pub loss_after: String,
    pub accuracy_before: String,
    pub accuracy_after: String,
}

/// A run's report: its tables, its formatted page, and the templates to render it with.
pub struct Report {
    pub frames: Frames,
    pub page: Page,
    pub env: minijinja::Environment<'static>,
}

/// Training loss and validation accuracy per epoch, one line per model.
fn training_plots(results: &RunResults) -> Result<Vec<Plot>> {
    let mut out = Vec::new();
    for (i, (what, f)) in [
        (
            "training loss",
            (|h: &crate::train::EpochRecord| h.train_loss) as fn(&_) -> f64,
        ),
        ("validation accuracy", |h: &crate::train::EpochRecord| {
            h.valid_accuracy
        }),
    ]
    .into_iter()
    .enumerate()
    {
        let series: Vec<plot::Series> = results
            .models
            .iter()
            .filter(|m| !m.history.is_empty())
            .map(|m| plot::Series {
                name: m.label.clone(),
                points: m.history.iter().map(|h| (h.epoch as f64, f(h))).collect(),
            })
            .collect();
        if series.is_empty() {
            continue;
        }
        out.push(Plot {
            title: format!("{what} per epoch"),
            svg: plot::line_plot(&format!("{what} per epoch"), "epoch", what, None, &series)?,
            file: format!("curve-{}.svg", i + 1),
        });
    }
    Ok(out)
}

/// Test accuracy against inference speed for every model of a run.
fn pareto(results: &RunResults) -> Result<Plot> {
    let points: Vec<plot::Point> = results
        .models
        .iter()
        .map(|m| plot::Point {
            group: m.label.clone(),
            label: m.key.clone(),
            x: m.timing.samples_per_sec,
            y: m.report.accuracy,
        })
        .collect();
    Ok(Plot {
        title: "accuracy vs inference speed".into(),
        svg: plot::pareto_plot(
            "test accuracy vs inference speed",
            "samples/s (log scale)",
            "test accuracy",
            &points,
        )?,
        file: "pareto.svg".into(),
    })
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

/// Each model's part of the page: its figures, its per-class and confusion tables (from
/// `frames`), its confusion heatmap and its error analysis.
fn model_pages(results: &RunResults, frames: &Frames, names: &[String]) -> Result<Vec<ModelPage>> {
    results
        .models
        .iter()
        .zip(frames.per_class.iter().zip(&frames.confusion))
        .map(|(m, ((_, pc), (_, cm)))| -> Result<ModelPage> {
            Ok(ModelPage {
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
                heatmap: Some(Plot {
                    title: format!("confusion matrix: {}", m.label),
                    svg: plot::confusion_heatmap(&m.label, names, &m.report.confusion)?,
                    file: format!("confusion-{}.svg", m.key),
                }),
                errors: frames
                    .errors
                    .iter()
                    .find(|(k, _)| *k == m.key)
                    .map(|(_, df)| Table::from_df(df)),
            })
        })
        .collect()
}

/// How inference was timed, with what the baseline's and TextGCN's times include where the run
/// has them (empty without models).
fn timing_note(results: &RunResults) -> String {
    let timing = results.models.first().map(|m| &m.timing);
    let mut timing_note = match timing {
        Some(t) => format!(
            "Inference time: the {} test examples in batches of {} (sorted by length, padded per batch, \
             already on the device), {} timed pass(es) after one untimed warm-up pass — on a GPU the \
             warm-up holds kernel compilation and autotuning; the fastest pass is reported. \
             Speed-up = samples/s of a model ÷ samples/s of the teacher, same backend, same machine.",
            t.samples, t.batch_size, t.repeats
        ),
        None => String::new(),
    };
    if results.model("baseline").is_some() {
        timing_note.push_str(
            " The linear baseline (TF-IDF n-grams, C chosen on the validation split) runs on the \
             CPU from the raw text, in test order: its time includes n-gram extraction and \
             TF-IDF weighting; its parameters are its weights and biases.",
        );
    }
    if results.model("textgcn").is_some() {
        timing_note.push_str(
            " TextGCN classifies by one forward pass over its whole graph (every document and \
             word node, on the CPU operation for the sparse product): its time is that pass, its \
             samples/s the test documents ÷ that time; most of its parameters are the first \
             layer's row per node.",
        );
    }
    timing_note
}

impl Report {
    /// The report of `results`, rendered with the templates its recipe names (or kdrun's);
    /// `nav` links the pages back up when they are part of a site.
    pub fn build(results: &RunResults, nav: Option<Nav>) -> Result<Self> {
        let env = templates::environment(results.templates_dir().as_deref())?;
        let frames = Frames::build(results)?;
        let names: Vec<String> = results.classes.iter().map(|c| c.name.clone()).collect();
        let models = model_pages(results, &frames, &names)?;
        let mut plots = training_plots(results)?;
        if !results.models.is_empty() {
            plots.push(pareto(results)?);
        }
        let timing_note = timing_note(results);
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
            skipped_rows: results.skipped_rows.iter().map(|s| s.describe()).collect(),
            vocab_size: results.vocab_size,
            teacher_vocab_size: results.teacher_vocab_size,
            teacher_logit_rows: results.teacher_logit_rows,
            pretrain: results.pretrain.as_ref().map(|p| PretrainPage {
                objective: p.objective.clone(),
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
            coverage: results.vectors_coverage.map(|c| c.describe("")),
            transfer_set: results.transfer_set,
            notes: results.notes.clone(),
            history: Table::from_df(&frames.history),
            timing_note,
            recipe_toml: results.recipe_for_pages(),
            run_dir: results.run_in_store(),
            exports: results
                .exports
                .iter()
                .map(|e| ExportLink {
                    path: crate::store::name_in_store(results.store().as_deref(), Path::new(e)),
                    href: relative_link(Path::new(&results.report_dir), Path::new(e)),
                })
                .collect(),
            csv_files: frames
                .all()
                .iter()
                .map(|(n, _)| format!("{n}.csv"))
                .collect(),
            classes: names,
            plots,
            disagreements: frames
                .disagreements
                .as_ref()
                .map(|df| Table::from_df(&df.head(Some(DISAGREEMENTS_SHOWN)))),
            disagreement_count: frames.disagreements.as_ref().map_or(0, |d| d.height()),
            error_analysis: !frames.errors.is_empty(),
            nav,
        };
        Ok(Self { frames, page, env })
    }

    /// Every plot of the page (for writers of SVG files).
    pub fn plots(&self) -> Vec<&Plot> {
        self.page
            .plots
            .iter()
            .chain(self.page.models.iter().filter_map(|m| m.heatmap.as_ref()))
            .collect()
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
        Box::new(svg::SvgExporter),
    ]
}

/// Render every format of `results` into `dir` (created if needed).
pub fn write_all(results: &RunResults, dir: &Path, nav: Option<Nav>) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create report folder {}", dir.display()))?;
    let report = Report::build(results, nav)?;
    let mut files = Vec::new();
    for e in exporters() {
        files.extend(e.export(&report, dir)?);
    }
    Ok(files)
}
