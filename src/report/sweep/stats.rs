//! The sweep's tables: every trial as a row, and — when `runtime.seed` is swept — mean ± std over
//! seeds per setting with the paired gain of distillation and its 95 % interval (Student's t).

use super::show;
use crate::store::{SweepResults, TrialOutcome};
use polars::prelude::*;
use statrs::distribution::{ContinuousCDF, StudentsT};
use std::collections::BTreeMap;

pub(super) fn metric(
    t: &TrialOutcome,
    key: &str,
    f: fn(&crate::store::ModelResult) -> f64,
) -> Option<f64> {
    t.results.as_ref().and_then(|r| r.model(key)).map(f)
}

/// A model's validation accuracy in a trial, where it has one.
pub(super) fn valid_metric(t: &TrialOutcome, key: &str) -> Option<f64> {
    metric(t, key, |r| r.best_valid_accuracy).filter(|x| x.is_finite())
}

/// All trials as a table: test columns with their validation columns beside them.
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
    let valid = |key: &str| -> Vec<Option<f64>> {
        s.trials
            .iter()
            .map(|t| valid_metric(t, key))
            .collect::<Vec<_>>()
    };
    // Each model's test accuracy with its validation accuracy beside it (empty where a model
    // has none); the optional models only where a trial has them.
    for (key, always) in [
        ("teacher", true),
        ("student", true),
        ("distilled", true),
        ("baseline", false),
        ("textgcn", false),
    ] {
        let test = m(key, |r| r.report.accuracy);
        if !always && test.iter().all(Option::is_none) {
            continue;
        }
        cols.push(Column::new(format!("{key}_accuracy").into(), test));
        cols.push(Column::new(
            format!("{key}_valid_accuracy").into(),
            valid(key),
        ));
        if key == "distilled" {
            cols.push(Column::new(
                "distilled_macro_f1".into(),
                m("distilled", |r| r.report.macro_avg.f1),
            ));
        }
    }
    let gain = |f: fn(&TrialOutcome, &str) -> Option<f64>| -> Vec<Option<f64>> {
        s.trials
            .iter()
            .map(|t| Some(f(t, "distilled")? - f(t, "student")?))
            .collect()
    };
    cols.push(Column::new(
        "kd_gain".into(),
        gain(|t, k| metric(t, k, |r| r.report.accuracy)),
    ));
    cols.push(Column::new("kd_gain_valid".into(), gain(valid_metric)));
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

/// Per setting (all swept keys but the seed): mean ± std over seeds of each model's test and
/// validation accuracy, and the paired gain on test.
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
    let pm = |xs: &[f64]| {
        let (m, sd) = mean_std(xs);
        format!("{m:.4} ± {sd:.4}")
    };
    let mut cols: Vec<Column> = vec![
        Column::new(
            "setting".into(),
            groups
                .keys()
                .map(|k| {
                    if k.is_empty() {
                        "(all)".to_string()
                    } else {
                        k.join(", ")
                    }
                })
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "seeds".into(),
            groups
                .values()
                .map(|ts| ts.len() as u32)
                .collect::<Vec<_>>(),
        ),
    ];
    // Each model's test accuracy, its validation accuracy beside it (the linear baseline only
    // where the trials have one); blank where a setting's trials lack the score.
    for (key, name, always) in [
        ("teacher", "teacher", true),
        ("student", "student alone", true),
        ("distilled", "distilled", true),
        ("baseline", "baseline", false),
    ] {
        let test: Vec<Option<String>> = groups
            .values()
            .map(|ts| {
                let xs: Vec<f64> = ts
                    .iter()
                    .filter_map(|t| metric(t, key, |r| r.report.accuracy))
                    .collect();
                (!xs.is_empty()).then(|| pm(&xs))
            })
            .collect();
        if !always && test.iter().all(Option::is_none) {
            continue;
        }
        let valid: Vec<Option<String>> = groups
            .values()
            .map(|ts| {
                let xs: Option<Vec<f64>> = ts.iter().map(|t| valid_metric(t, key)).collect();
                xs.filter(|xs| !xs.is_empty()).map(|xs| pm(&xs))
            })
            .collect();
        cols.push(Column::new(name.into(), test));
        cols.push(Column::new(format!("{name} (valid)").into(), valid));
    }
    let (mut gain, mut lo, mut hi) = (Vec::new(), Vec::new(), Vec::new());
    for ts in groups.values() {
        let acc = |t: &&TrialOutcome, key| metric(t, key, |r| r.report.accuracy);
        let gains: Vec<f64> = ts
            .iter()
            .filter_map(|t| Some(acc(t, "distilled")? - acc(t, "student")?))
            .collect();
        let (g, sd) = mean_std(&gains);
        let half = t975(gains.len().saturating_sub(1)) * sd / (gains.len() as f64).sqrt();
        gain.push(g);
        lo.push(Some(g - half).filter(|x| x.is_finite()));
        hi.push(Some(g + half).filter(|x| x.is_finite()));
    }
    cols.push(Column::new("kd_gain".into(), gain));
    cols.push(Column::new("ci95_low".into(), lo));
    cols.push(Column::new("ci95_high".into(), hi));
    Some(DataFrame::new_infer_height(cols))
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
