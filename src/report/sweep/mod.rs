//! The sweep report: one table of all trials (every swept key a column, test and validation
//! accuracy side by side), the setting chosen on the validation split marked (see [`select`]),
//! accuracy and macro-F1 against each swept key, and — when `runtime.seed` is swept — mean ± std
//! over seeds with the gain of distillation over the student alone and its 95 % confidence
//! interval, paired over seeds (Student's t).

mod plots;
pub mod select;
mod stats;

pub use plots::{pareto, plots};
pub use select::{choose, selection, Choice};
pub use stats::{mean_std, seeds_frame, t975, trials_frame};

use super::table::Table;
use super::{templates, Nav, Plot};
use crate::store::{write_atomic, write_with, RunResults, SweepResults};
use anyhow::{Context, Result};
use polars::prelude::*;
use serde::Serialize;
use std::path::Path;

/// A TOML value as a table cell: strings bare, the rest as TOML.
pub fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What the trials ran on, from the first one that finished.
#[derive(Serialize)]
struct RunContext {
    recipe_toml: String,
    data: Table,
    classes: Vec<String>,
    machine: String,
    backend: String,
    adapter: String,
    kdrun_version: String,
    git_commit: String,
    finished: String,
}

#[derive(Serialize)]
struct SweepPage {
    title: String,
    keys: Vec<String>,
    trials: usize,
    failed: usize,
    minutes: String,
    /// The setting chosen on the validation split (none where no trial finished).
    choice: Option<Choice>,
    /// For each trial row: whether it belongs to the chosen setting (highlighted).
    chosen_rows: Vec<bool>,
    table: Table,
    /// Each row's report folder (`trial-001`, …); none for a failed trial.
    trial_dirs: Vec<Option<String>>,
    seeds: Option<Table>,
    plots: Vec<Plot>,
    sweep_dir: String,
    context: Option<RunContext>,
    nav: Option<Nav>,
    csv_files: Vec<String>,
}

/// Write `df` as CSV to `path` (through a temporary file).
pub(crate) fn write_csv(df: &DataFrame, path: &Path) -> Result<()> {
    write_with(path, |tmp| {
        let mut f = std::fs::File::create(tmp)?;
        CsvWriter::new(&mut f).finish(&mut df.clone())?;
        Ok(())
    })?;
    Ok(())
}

fn write_parquet(df: &DataFrame, path: &Path) -> Result<()> {
    write_with(path, |tmp| {
        let f = std::fs::File::create(tmp)?;
        ParquetWriter::new(f).finish(&mut df.clone())?;
        Ok(())
    })?;
    Ok(())
}

/// The trial table as CSV and Parquet in `dir` (the sweep's folder in the store).
pub fn write_tables(s: &SweepResults, dir: &Path) -> Result<()> {
    let frame = trials_frame(s)?;
    write_csv(&frame, &dir.join("trials.csv"))?;
    write_parquet(&frame, &dir.join("trials.parquet"))
}

/// Every finished trial's own pages, in `<report_dir>/trial-NNN/`, linked back to the sweep.
pub fn write_trial_pages(s: &SweepResults, report_dir: &Path) -> Result<()> {
    for t in &s.trials {
        if let Some(r) = &t.results {
            let dir = report_dir.join(SweepResults::trial_dir(t));
            super::write_all(r, &dir, Some(trial_nav()))
                .with_context(|| format!("writing the report to {}", dir.display()))?;
        }
    }
    Ok(())
}

/// The link from a trial's page back to its sweep.
pub fn trial_nav() -> Nav {
    Nav {
        text: "the sweep".into(),
        html: "../index.html".into(),
        md: "../README.md".into(),
    }
}

/// The sweep's pages in `report_dir`: `index.html`, `README.md`, the trial table (CSV, Parquet),
/// the seed table (CSV) and the plots (SVG). `nav` links them back up.
pub fn write(s: &SweepResults, report_dir: &Path, nav: Option<Nav>) -> Result<()> {
    std::fs::create_dir_all(report_dir)
        .with_context(|| format!("cannot create {}", report_dir.display()))?;
    let frame = trials_frame(s)?;
    write_csv(&frame, &report_dir.join("trials.csv"))?;
    write_parquet(&frame, &report_dir.join("trials.parquet"))?;
    let mut csv_files = vec!["trials.csv".to_string(), "trials.parquet".to_string()];
    let seeds = seeds_frame(s).transpose()?;
    if let Some(df) = &seeds {
        write_csv(df, &report_dir.join("seeds.csv"))?;
        csv_files.push("seeds.csv".into());
    }
    let mut plot_pages = Vec::new();
    for (i, (title, svg)) in plots(s)?.into_iter().enumerate() {
        plot_pages.push(Plot {
            title,
            svg,
            file: format!("plot-{}.svg", i + 1),
        });
    }
    plot_pages.extend(pareto(s)?);
    for p in &plot_pages {
        write_atomic(&report_dir.join(&p.file), p.svg.as_bytes())?;
    }
    let choice = choose(s, selection(s)?);
    let first = s.first_ok();
    let context = first
        .map(|r| -> Result<RunContext> {
            Ok(RunContext {
                recipe_toml: r.recipe_for_pages(),
                data: Table::from_df(&super::tables::data_counts(r)?),
                classes: r.classes.iter().map(|c| c.name.clone()).collect(),
                machine: r.machine.describe(),
                backend: r.backend.clone(),
                adapter: r.adapter.clone(),
                kdrun_version: r.kdrun_version.clone(),
                git_commit: r.git_commit.clone().unwrap_or_else(|| "unknown".into()),
                finished: s
                    .trials
                    .iter()
                    .filter_map(|t| t.results.as_ref().map(|r| r.finished.clone()))
                    .max()
                    .unwrap_or_default(),
            })
        })
        .transpose()?;
    let page = SweepPage {
        title: format!("kdrun sweep: {}", s.recipe_name),
        keys: s.keys.clone(),
        trials: s.trials.len(),
        failed: s.trials.iter().filter(|t| t.results.is_none()).count(),
        minutes: format!("{:.1}", s.seconds / 60.0),
        chosen_rows: choice
            .as_ref()
            .map_or_else(|| vec![false; s.trials.len()], |c| c.rows.clone()),
        choice,
        table: Table::from_df(&frame),
        trial_dirs: s
            .trials
            .iter()
            .map(|t| t.results.as_ref().map(|_| SweepResults::trial_dir(t)))
            .collect(),
        seeds: seeds.as_ref().map(Table::from_df),
        plots: plot_pages,
        sweep_dir: s.sweep_in_store(),
        context,
        nav,
        csv_files,
    };
    let env = templates::environment(first.and_then(RunResults::templates_dir).as_deref())?;
    let html = templates::render(&env, "sweep.html", &page)?;
    write_atomic(&report_dir.join("index.html"), html.as_bytes())?;
    let md = templates::render(&env, "sweep.md", &page)?;
    write_atomic(&report_dir.join("README.md"), md.as_bytes())?;
    Ok(())
}
