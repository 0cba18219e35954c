//! The sweep report: one table of all trials (every swept key a column), the best trial marked,
//! accuracy and macro-F1 against each swept key, and — when `runtime.seed` is swept — mean ± std
//! over seeds with the gain of distillation over the student alone and its 95 % confidence
//! interval, paired over seeds (Student's t).

use super::plot::{line_plot, pareto_plot, Point, Series};
use super::table::Table;
use super::{templates, Nav, Plot};
use crate::store::{write_atomic, write_with, RunResults, SweepResults, TrialOutcome};
use anyhow::{Context, Result};
use polars::prelude::*;
use serde::Serialize;
use statrs::distribution::{ContinuousCDF, StudentsT};
use std::collections::BTreeMap;
use std::path::Path;

/// A TOML value as a table cell: strings bare, the rest as TOML.
pub fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn metric(t: &TrialOutcome, key: &str, f: fn(&crate::store::ModelResult) -> f64) -> Option<f64> {
    t.results.as_ref().and_then(|r| r.model(key)).map(f)
}

/// All trials as a table.
pub fn trials_frame(s: &SweepResults) -> PolarsResult<DataFrame> {
    let mut cols: Vec<Column> = vec![Column::new(
        "trial".into(),
        s.trials
            .iter()
            .map(|t| t.index as u32 + 1)
            .collect::<Vec<_>>(),
    )];
    for (i, k) in s.keys.iter().enumerate() {
        let vals: Vec<String> = s.trials.iter().map(|t| show(&t.values[i].1)).collect();
        cols.push(Column::new(k.as_str().into(), vals));
    }
    let m = |key: &str, f: fn(&crate::store::ModelResult) -> f64| -> Vec<Option<f64>> {
        s.trials.iter().map(|t| metric(t, key, f)).collect()
    };
    cols.push(Column::new(
        "teacher_accuracy".into(),
        m("teacher", |r| r.report.accuracy),
    ));
    cols.push(Column::new(
        "student_accuracy".into(),
        m("student", |r| r.report.accuracy),
    ));
    cols.push(Column::new(
        "distilled_accuracy".into(),
        m("distilled", |r| r.report.accuracy),
    ));
    cols.push(Column::new(
        "distilled_macro_f1".into(),
        m("distilled", |r| r.report.macro_avg.f1),
    ));
    let gain: Vec<Option<f64>> = s
        .trials
        .iter()
        .map(|t| {
            Some(
                metric(t, "distilled", |r| r.report.accuracy)?
                    - metric(t, "student", |r| r.report.accuracy)?,
            )
        })
        .collect();
    cols.push(Column::new("kd_gain".into(), gain));
    cols.push(Column::new(
        "seconds".into(),
        s.trials.iter().map(|t| t.seconds).collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "status".into(),
        s.trials
            .iter()
            .map(|t| match &t.error {
                None => "ok".to_string(),
                Some(e) => format!("failed: {}", e.lines().next().unwrap_or_default()),
            })
            .collect::<Vec<_>>(),
    ));
    DataFrame::new_infer_height(cols)
}

/// Student's t quantile for a two-sided 95 % interval with `df` degrees of freedom (NaN for
/// none).
pub fn t975(df: usize) -> f64 {
    if df == 0 {
        return f64::NAN;
    }
    StudentsT::new(0.0, 1.0, df as f64).map_or(f64::NAN, |t| t.inverse_cdf(0.975))
}

/// Mean and sample standard deviation.
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 {
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        f64::NAN
    };
    (mean, var.sqrt())
}

/// Per setting (all swept keys but the seed): mean ± std over seeds and the paired gain.
pub fn seeds_frame(s: &SweepResults) -> Option<PolarsResult<DataFrame>> {
    let seed_axis = s.keys.iter().position(|k| k == "runtime.seed")?;
    let mut groups: BTreeMap<Vec<String>, Vec<&TrialOutcome>> = BTreeMap::new();
    for t in s.trials.iter().filter(|t| t.results.is_some()) {
        let key: Vec<String> = t
            .values
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != seed_axis)
            .map(|(_, (k, v))| format!("{k}={}", show(v)))
            .collect();
        groups.entry(key).or_default().push(t);
    }
    let mut setting = Vec::new();
    let mut seeds = Vec::new();
    let (mut t_acc, mut s_acc, mut d_acc, mut gain, mut lo, mut hi) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let pm = |xs: &[f64]| {
        let (m, sd) = mean_std(xs);
        format!("{m:.4} ± {sd:.4}")
    };
    for (k, ts) in &groups {
        let get = |key: &str| -> Vec<f64> {
            ts.iter()
                .filter_map(|t| metric(t, key, |r| r.report.accuracy))
                .collect()
        };
        let (te, st, di) = (get("teacher"), get("student"), get("distilled"));
        let gains: Vec<f64> = di.iter().zip(&st).map(|(d, s)| d - s).collect();
        let (g, sd) = mean_std(&gains);
        let half = t975(gains.len().saturating_sub(1)) * sd / (gains.len() as f64).sqrt();
        setting.push(if k.is_empty() {
            "(all)".to_string()
        } else {
            k.join(", ")
        });
        seeds.push(ts.len() as u32);
        t_acc.push(pm(&te));
        s_acc.push(pm(&st));
        d_acc.push(pm(&di));
        gain.push(g);
        lo.push(Some(g - half).filter(|x| x.is_finite()));
        hi.push(Some(g + half).filter(|x| x.is_finite()));
    }
    Some(df!(
        "setting" => setting,
        "seeds" => seeds,
        "teacher" => t_acc,
        "student alone" => s_acc,
        "distilled" => d_acc,
        "kd_gain" => gain,
        "ci95_low" => lo,
        "ci95_high" => hi,
    ))
}

/// Accuracy and macro-F1 against each swept key but the seed, one line per combination of the
/// other keys, averaged over seeds.
pub fn plots(s: &SweepResults) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let ok: Vec<&TrialOutcome> = s.trials.iter().filter(|t| t.results.is_some()).collect();
    for (axis, key) in s.keys.iter().enumerate() {
        if key == "runtime.seed" {
            continue;
        }
        // Distinct values of this key, in trial order.
        let mut xs: Vec<String> = Vec::new();
        for t in &ok {
            let v = show(&t.values[axis].1);
            if !xs.contains(&v) {
                xs.push(v);
            }
        }
        let numeric: Option<Vec<f64>> = xs.iter().map(|x| x.parse::<f64>().ok()).collect();
        let xpos = |v: &str| -> f64 {
            match &numeric {
                Some(_) => v.parse().unwrap_or(0.0),
                None => xs.iter().position(|x| x == v).unwrap_or(0) as f64,
            }
        };
        for (metric_name, model, f) in [
            (
                "accuracy",
                "distilled",
                (|r: &crate::store::ModelResult| r.report.accuracy) as fn(&_) -> f64,
            ),
            ("macro-F1", "distilled", |r: &crate::store::ModelResult| {
                r.report.macro_avg.f1
            }),
        ] {
            let mut lines: BTreeMap<String, BTreeMap<String, Vec<f64>>> = BTreeMap::new();
            for t in &ok {
                let others: Vec<String> = t
                    .values
                    .iter()
                    .enumerate()
                    .filter(|(i, (k, _))| *i != axis && k != "runtime.seed")
                    .map(|(_, (k, v))| format!("{k}={}", show(v)))
                    .collect();
                if let Some(y) = metric(t, model, f) {
                    lines
                        .entry(others.join(", "))
                        .or_default()
                        .entry(show(&t.values[axis].1))
                        .or_default()
                        .push(y);
                }
            }
            let series: Vec<Series> = lines
                .into_iter()
                .map(|(name, pts)| {
                    let mut points: Vec<(f64, f64)> = pts
                        .iter()
                        .map(|(x, ys)| (xpos(x), ys.iter().sum::<f64>() / ys.len() as f64))
                        .collect();
                    points.sort_by(|a, b| a.0.total_cmp(&b.0));
                    Series { name, points }
                })
                .collect();
            if series.is_empty() {
                continue;
            }
            let svg = line_plot(
                &format!("distilled student: {metric_name} vs {key}"),
                key,
                &format!("test {metric_name}"),
                if numeric.is_some() { None } else { Some(&xs) },
                &series,
            )?;
            out.push((format!("{metric_name} vs {key}"), svg));
        }
    }
    Ok(out)
}

/// Teacher, student alone and every trial's distilled student: accuracy against speed.
pub fn pareto(s: &SweepResults) -> Result<Option<Plot>> {
    let mut points: Vec<Point> = Vec::new();
    for t in &s.trials {
        let Some(r) = &t.results else { continue };
        for m in &r.models {
            let (group, label) = match m.key.as_str() {
                "distilled" => (
                    "distilled (trial #)".to_string(),
                    format!("#{}", t.index + 1),
                ),
                other => (m.label.clone(), other.to_string()),
            };
            let dup = points.iter().any(|p| {
                p.group == group && p.x == m.timing.samples_per_sec && p.y == m.report.accuracy
            });
            if !dup {
                points.push(Point {
                    group,
                    label,
                    x: m.timing.samples_per_sec,
                    y: m.report.accuracy,
                });
            }
        }
    }
    if points.is_empty() {
        return Ok(None);
    }
    Ok(Some(Plot {
        title: "accuracy vs inference speed".into(),
        svg: pareto_plot(
            "test accuracy vs inference speed, every trial",
            "samples/s (log scale)",
            "test accuracy",
            &points,
        )?,
        file: "pareto.svg".into(),
    }))
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
    best: Option<String>,
    best_row: Option<usize>,
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
    let best = s
        .trials
        .iter()
        .enumerate()
        .filter_map(|(row, t)| metric(t, "distilled", |r| r.report.accuracy).map(|a| (row, a, t)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let first = s.first_ok();
    let context = first
        .map(|r| -> Result<RunContext> {
            Ok(RunContext {
                recipe_toml: r.recipe_toml.clone(),
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
        best: best.map(|(_, a, t)| {
            format!(
                "trial {} ({}): distilled accuracy {a:.4}",
                t.index + 1,
                t.values
                    .iter()
                    .map(|(k, v)| format!("{k}={}", show(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }),
        best_row: best.map(|(row, _, _)| row),
        table: Table::from_df(&frame),
        trial_dirs: s
            .trials
            .iter()
            .map(|t| t.results.as_ref().map(|_| SweepResults::trial_dir(t)))
            .collect(),
        seeds: seeds.as_ref().map(Table::from_df),
        plots: plot_pages,
        sweep_dir: s.sweep_dir.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_interval_by_hand() {
        // Gains 0.01, 0.03, 0.02: mean 0.02, sd 0.01, half-width 4.303 × 0.01 / √3.
        let (m, sd) = mean_std(&[0.01, 0.03, 0.02]);
        assert!((m - 0.02).abs() < 1e-12 && (sd - 0.01).abs() < 1e-12);
        assert!((t975(2) * sd / 3f64.sqrt() - 0.024844).abs() < 1e-5);
    }

    #[test]
    fn t_quantiles_match_the_tables() {
        // Two-sided 95 % critical values of Student's t, to 3 decimals (past 30 degrees of
        // freedom they keep falling towards 1.960).
        for (df, t) in [
            (1, 12.706),
            (2, 4.303),
            (10, 2.228),
            (30, 2.042),
            (40, 2.021),
            (100, 1.984),
            (1000, 1.962),
        ] {
            assert!((t975(df) - t).abs() < 5e-4, "t975({df}) = {}", t975(df));
        }
        assert!(t975(0).is_nan());
    }
}
