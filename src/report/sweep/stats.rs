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
    let baseline = m("baseline", |r| r.report.accuracy);
    if baseline.iter().any(Option::is_some) {
        cols.push(Column::new("baseline_accuracy".into(), baseline));
    }
    let textgcn = m("textgcn", |r| r.report.accuracy);
    if textgcn.iter().any(Option::is_some) {
        cols.push(Column::new("textgcn_accuracy".into(), textgcn));
    }
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
    let mut b_acc: Vec<Option<String>> = Vec::new();
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
        let ba = get("baseline");
        b_acc.push((!ba.is_empty()).then(|| pm(&ba)));
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
    let frame = df!(
        "setting" => setting,
        "seeds" => seeds,
        "teacher" => t_acc,
        "student alone" => s_acc,
        "distilled" => d_acc,
        "kd_gain" => gain,
        "ci95_low" => lo,
        "ci95_high" => hi,
    );
    // The linear baseline beside the networks, where the trials have one.
    if b_acc.iter().any(Option::is_some) {
        return Some(frame.and_then(|mut f| {
            f.insert_column(5, Column::new("baseline".into(), b_acc))?;
            Ok(f)
        }));
    }
    Some(frame)
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
