//! The sweep report: one table of all trials (every swept key a column), the best trial marked,
//! accuracy and macro-F1 against each swept key, and — when `runtime.seed` is swept — mean ± std
//! over seeds with the gain of distillation over the student alone and its 95 % confidence
//! interval, paired over seeds (Student's t).

use super::plot::{line_plot, Series};
use super::table::Table;
use crate::store::{write_atomic, write_with, RunResults};
use anyhow::{Context, Result};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

const TEMPLATE_HTML: &str = include_str!("../../templates/sweep.html");
const TEMPLATE_MD: &str = include_str!("../../templates/sweep.md");

/// One trial's end: its results, or why it failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialOutcome {
    pub index: usize,
    pub values: Vec<(String, toml::Value)>,
    pub results: Option<RunResults>,
    pub error: Option<String>,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepResults {
    pub recipe_name: String,
    pub keys: Vec<String>,
    pub trials: Vec<TrialOutcome>,
    pub seconds: f64,
    pub sweep_dir: String,
}

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

/// Student's t quantile for a two-sided 95 % interval with `df` degrees of freedom.
pub fn t975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        d if d <= 30 => T[d - 1],
        _ => 1.96,
    }
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

#[derive(Serialize)]
struct Plot {
    title: String,
    svg: String,
    file: String,
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
    /// Each row's report folder (`trial-001`, …).
    trial_dirs: Vec<String>,
    seeds: Option<Table>,
    plots: Vec<Plot>,
    sweep_dir: String,
}

fn write_csv(df: &DataFrame, path: &Path) -> Result<()> {
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

/// Write the trial table (CSV and Parquet) to the sweep's folder and the report folder, and the
/// sweep pages (`index.html`, `README.md`, plots as SVG) to the report folder.
pub fn write(s: &SweepResults, sweep_dir: &Path, report_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(report_dir)
        .with_context(|| format!("cannot create {}", report_dir.display()))?;
    let frame = trials_frame(s)?;
    for dir in [sweep_dir, report_dir] {
        write_csv(&frame, &dir.join("trials.csv"))?;
        write_parquet(&frame, &dir.join("trials.parquet"))?;
    }
    let seeds = seeds_frame(s).transpose()?;
    if let Some(df) = &seeds {
        write_csv(df, &report_dir.join("seeds.csv"))?;
    }
    let plots = plots(s)?;
    let mut plot_pages = Vec::new();
    for (i, (title, svg)) in plots.into_iter().enumerate() {
        let file = format!("plot-{}.svg", i + 1);
        write_atomic(&report_dir.join(&file), svg.as_bytes())?;
        plot_pages.push(Plot { title, svg, file });
    }
    let best = s
        .trials
        .iter()
        .enumerate()
        .filter_map(|(row, t)| metric(t, "distilled", |r| r.report.accuracy).map(|a| (row, a, t)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
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
            .map(|t| format!("trial-{:03}", t.index + 1))
            .collect(),
        seeds: seeds.as_ref().map(Table::from_df),
        plots: plot_pages,
        sweep_dir: s.sweep_dir.clone(),
    };
    let mut env = super::environment();
    env.add_template("sweep.html", TEMPLATE_HTML)?;
    env.add_template("sweep.md", TEMPLATE_MD)?;
    let ctx = minijinja::context! { page => minijinja::value::Serde(&page) };
    let html = env
        .get_template("sweep.html")?
        .render(&ctx)
        .context("cannot render templates/sweep.html")?;
    write_atomic(&report_dir.join("index.html"), html.as_bytes())?;
    let md = env
        .get_template("sweep.md")?
        .render(&ctx)
        .context("cannot render templates/sweep.md")?;
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
        assert_eq!(t975(100), 1.96);
    }
}
