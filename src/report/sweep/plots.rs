//! The sweep's plots: metrics against each swept key, and accuracy against speed.

use super::super::plot::{line_plot, pareto_plot, Point, Series};
use super::super::Plot;
use super::show;
use super::stats::metric;
use crate::store::{SweepResults, TrialOutcome};
use anyhow::Result;
use std::collections::BTreeMap;

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

/// Teacher, student alone, the linear baseline and every trial's distilled student: accuracy
/// against speed.
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
