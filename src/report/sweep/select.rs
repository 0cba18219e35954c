//! Choosing a sweep's setting on the validation split (`report.select`). Trials that differ only
//! in `runtime.seed` form one setting; settings are compared by their mean validation score over
//! seeds, and no seed is ever named "best". The chosen setting's test accuracy is reported (mean ±
//! std over seeds, with the paired interval of the distilled student's gain over the student
//! alone), beside — labelled as such — the setting the test split itself would have picked, so
//! the optimism of choosing on test shows.

use super::show;
use super::stats::{mean_std, t975};
use crate::recipe::{model_name, Select};
use crate::store::{RunResults, SweepResults};
use serde::Serialize;

/// The recipe's `report.select` of a sweep (its first finished trial's), or the default.
/// A value this kdrun does not know (a hand-edited results file) is an error naming the key.
pub fn selection(s: &SweepResults) -> anyhow::Result<Select> {
    let raw = s
        .first_ok()
        .and_then(|r| r.recipe_str("report.select"))
        .unwrap_or_else(|| "distilled".into());
    Select::parse(&raw).ok_or_else(|| {
        anyhow::anyhow!(
            "report.select: expected one of {}, found {raw:?}",
            Select::VALUES.join(", ")
        )
    })
}

/// A finite validation score of a trial under `sel`.
pub fn valid_score(sel: Select, r: &RunResults) -> Option<f64> {
    let v = |k: &str| {
        r.model(k)
            .map(|m| m.best_valid_accuracy)
            .filter(|x| x.is_finite())
    };
    match sel {
        Select::Model(m) => v(m),
        Select::KdGain => Some(v("distilled")? - v("student")?),
    }
}

/// The test accuracy of `key` in a trial.
fn test_accuracy(r: &RunResults, key: &str) -> Option<f64> {
    r.model(key).map(|m| m.report.accuracy)
}

/// One setting: its label and the rows (trial indexes in the table) of its finished trials.
struct Setting<'a> {
    label: String,
    trials: Vec<&'a RunResults>,
    rows: Vec<usize>,
}

impl Setting<'_> {
    /// The mean validation score, if every finished trial of the setting has one.
    fn valid(&self, sel: Select) -> Option<Vec<f64>> {
        self.trials.iter().map(|r| valid_score(sel, r)).collect()
    }

    fn test(&self, key: &str) -> Option<Vec<f64>> {
        self.trials.iter().map(|r| test_accuracy(r, key)).collect()
    }
}

/// The settings of a sweep (all swept keys but the seed), in grid order, finished trials only.
fn settings(s: &SweepResults) -> Vec<Setting<'_>> {
    let mut out: Vec<Setting> = Vec::new();
    for (row, t) in s.trials.iter().enumerate() {
        let Some(r) = &t.results else { continue };
        let parts: Vec<String> = t
            .values
            .iter()
            .filter(|(k, _)| k != "runtime.seed")
            .map(|(k, v)| format!("{k}={}", show(v)))
            .collect();
        let label = if parts.is_empty() {
            "(all)".to_string()
        } else {
            parts.join(", ")
        };
        match out.iter_mut().find(|g| g.label == label) {
            Some(g) => {
                g.trials.push(r);
                g.rows.push(row);
            }
            None => out.push(Setting {
                label,
                trials: vec![r],
                rows: vec![row],
            }),
        }
    }
    out
}

fn mean(xs: &[f64]) -> f64 {
    mean_std(xs).0
}

/// `0.2380 ± 0.0042` (over several seeds) or `0.2380`.
fn pm(xs: &[f64]) -> String {
    let (m, sd) = mean_std(xs);
    if xs.len() > 1 {
        format!("{m:.4} ± {sd:.4}")
    } else {
        format!("{m:.4}")
    }
}

/// Scores closer than this are a tie (accuracies are ratios of counts: a smaller difference is
/// the rounding of a mean, e.g. of three equal numbers against two).
const TIE: f64 = 1e-9;

/// The first index with the highest value (ties go to the earlier setting in grid order).
fn argmax(xs: impl Iterator<Item = (usize, f64)>) -> Option<(usize, f64)> {
    xs.fold(None, |best, (i, x)| match best {
        Some((_, b)) if x <= b + TIE => best,
        _ => Some((i, x)),
    })
}

/// The setting the test split would have chosen, for comparison.
#[derive(Serialize, Debug, Clone)]
pub struct TestChosen {
    pub setting: String,
    pub seeds: usize,
    /// Its test accuracy, mean ± std over seeds.
    pub test: String,
    /// Its mean test accuracy minus that of the chosen setting.
    pub optimism: String,
}

/// The chosen setting, as the page shows it.
#[derive(Serialize, Debug, Clone)]
pub struct Choice {
    /// The setting (`distill.temperature=2.0`; `(all)` where only the seed is swept).
    pub setting: String,
    /// `validation`, or `test` where no setting has a validation score (then labelled so).
    pub split: String,
    /// What the settings were compared by ("validation accuracy of the distilled student").
    pub criterion: String,
    /// The `report.select` value.
    pub select: String,
    /// How many settings were compared.
    pub settings: usize,
    /// Finished trials (seeds) of the chosen setting.
    pub seeds: usize,
    /// Its validation score, mean ± std over seeds (none in the fallback to test).
    pub valid: Option<String>,
    /// The model whose test accuracy is reported ("distilled student").
    pub model: String,
    /// Its test accuracy, mean ± std over seeds.
    pub test: String,
    /// The distilled student's test gain over the student alone, paired over seeds, with its
    /// 95 % interval where there are two seeds or more.
    pub gain: Option<String>,
    /// The setting the test split would have chosen, where it is another one.
    pub test_chosen: Option<TestChosen>,
    /// Other settings whose validation score ties with the chosen one's (the earlier in grid
    /// order is chosen).
    pub tied: Vec<String>,
    /// Settings left out of the choice for want of a validation score.
    pub no_valid: Vec<String>,
    /// Whether the choice fell back to the test split.
    pub fallback: bool,
    /// For each trial row: whether it belongs to the chosen setting.
    #[serde(skip)]
    pub rows: Vec<bool>,
}

/// The paired gain of the distilled student over the student alone, on test.
fn gain(g: &Setting) -> Option<String> {
    let gains: Vec<f64> = g
        .trials
        .iter()
        .map(|r| Some(test_accuracy(r, "distilled")? - test_accuracy(r, "student")?))
        .collect::<Option<_>>()?;
    if gains.is_empty() {
        return None;
    }
    let (m, sd) = mean_std(&gains);
    let n = gains.len();
    if n < 2 {
        return Some(format!("{m:+.4} (one seed: no interval)"));
    }
    let half = t975(n - 1) * sd / (n as f64).sqrt();
    Some(format!(
        "{m:+.4}, 95 % CI [{:+.4}, {:+.4}] paired over {n} seeds",
        m - half,
        m + half
    ))
}

/// Choose the setting of a sweep by `sel` on the validation split.
pub fn choose(s: &SweepResults, sel: Select) -> Option<Choice> {
    let groups = settings(s);
    let model = sel.model();
    let valid: Vec<Option<Vec<f64>>> = groups.iter().map(|g| g.valid(sel)).collect();
    let tests: Vec<Option<Vec<f64>>> = groups.iter().map(|g| g.test(model)).collect();
    let by_valid = argmax(
        valid
            .iter()
            .enumerate()
            .filter(|(i, _)| tests[*i].is_some())
            .filter_map(|(i, v)| v.as_ref().map(|v| (i, mean(v)))),
    );
    let by_test = argmax(
        tests
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.as_ref().map(|t| (i, mean(t)))),
    )?;
    let (chosen, fallback) = match by_valid {
        Some((i, _)) => (i, false),
        None => (by_test.0, true),
    };
    let tied = match by_valid {
        Some((i, top)) => groups
            .iter()
            .zip(&valid)
            .enumerate()
            .filter(|(j, (_, v))| {
                *j != i
                    && tests[*j].is_some()
                    && v.as_ref().is_some_and(|v| (mean(v) - top).abs() <= TIE)
            })
            .map(|(_, (g, _))| g.label.clone())
            .collect(),
        None => Vec::new(),
    };
    let g = &groups[chosen];
    let test = tests[chosen].as_ref()?;
    let mut rows = vec![false; s.trials.len()];
    for r in &g.rows {
        rows[*r] = true;
    }
    let test_chosen = (!fallback && by_test.0 != chosen).then(|| {
        let t = &groups[by_test.0];
        let xs = tests[by_test.0].as_ref().expect("a test score");
        TestChosen {
            setting: t.label.clone(),
            seeds: t.trials.len(),
            test: pm(xs),
            optimism: format!("{:+.4}", mean(xs) - mean(test)),
        }
    });
    Some(Choice {
        setting: g.label.clone(),
        split: if fallback { "test" } else { "validation" }.into(),
        criterion: if fallback {
            format!("test accuracy of the {}", model_name(model))
        } else {
            sel.describe()
        },
        select: match sel {
            Select::Model(m) => m.into(),
            Select::KdGain => "kd_gain".into(),
        },
        settings: groups.len(),
        seeds: g.trials.len(),
        valid: valid[chosen].as_deref().map(pm),
        model: model_name(model).into(),
        test: pm(test),
        gain: gain(g),
        test_chosen,
        tied,
        no_valid: groups
            .iter()
            .zip(&valid)
            .filter(|(_, v)| v.is_none())
            .map(|(g, _)| g.label.clone())
            .collect(),
        fallback,
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_go_to_the_first_setting() {
        let xs = [(0, 0.5), (1, 0.7), (2, 0.7), (3, 0.1)];
        assert_eq!(argmax(xs.into_iter()), Some((1, 0.7)));
        // The mean of three equal accuracies and of two differ in the last bit: still a tie.
        let (three, two) = (mean(&[7.0 / 30.0; 3]), mean(&[7.0 / 30.0; 2]));
        assert_ne!(three, two);
        assert_eq!(argmax([(0, three), (1, two)].into_iter()).unwrap().0, 0);
        assert_eq!(argmax([(0, two), (1, three)].into_iter()).unwrap().0, 0);
        assert_eq!(argmax(std::iter::empty()), None);
    }

    #[test]
    fn one_seed_shows_no_spread() {
        assert_eq!(pm(&[0.25]), "0.2500");
        assert_eq!(pm(&[0.2, 0.3]), "0.2500 ± 0.0707");
    }
}
