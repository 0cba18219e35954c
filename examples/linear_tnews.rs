//! The linear n-gram model on a recipe's data, two ways:
//!
//! - `kdrun split`: fitted on the recipe's training split, `C` chosen on its validation split,
//!   scored on the test split (what the report's baseline row does);
//! - `like scikit-learn`: fitted on the whole training file (train + validation) with
//!   `../shared/bench/tfidf_baseline.py`'s fixed `C` (LinearSVC 0.5, LogisticRegression 10),
//!   scored on the test split.
//!
//!     cargo run --release --example linear_tnews -- [recipe] [--set key=value]...
//!
//! Defaults to `recipes/tnews.toml`; char 1–2-grams, sublinear tf, min_df 1.

use anyhow::{anyhow, Result};
use kdrun::data::Dataset;
use kdrun::eval::ClassificationReport;
use kdrun::models::linear::{LinearConfig, LinearKind, LinearModel};
use kdrun::recipe::{load_with_env, parse_set};
use std::path::PathBuf;
use std::time::Instant;

fn borrow(v: &[(String, usize)]) -> Vec<(&str, usize)> {
    v.iter().map(|(t, l)| (t.as_str(), *l)).collect()
}

fn main() -> Result<()> {
    let mut recipe = PathBuf::from("recipes/tnews.toml");
    let mut sets = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--set" => sets.push(
                parse_set(&args.next().ok_or_else(|| anyhow!("--set needs a value"))?)
                    .map_err(|e| anyhow!(e))?,
            ),
            _ => recipe = PathBuf::from(a),
        }
    }
    let r = load_with_env(&recipe, &sets, false)
        .map_err(|e| anyhow!("{e}"))?
        .recipe;
    let data = Dataset::load(&r.data)?;
    let k = data.classes.len();
    let pairs = |v: &[kdrun::data::Example]| -> Vec<(String, usize)> {
        v.iter().map(|e| (e.text.clone(), e.label)).collect()
    };
    let train = pairs(&data.train);
    let valid = pairs(&data.valid);
    let mut all = train.clone();
    all.extend(valid.iter().cloned());
    let test_texts: Vec<&str> = data.test.iter().map(|e| e.text.as_str()).collect();
    let truth: Vec<usize> = data.test.iter().map(|e| e.label).collect();
    println!(
        "{} train / {} valid / {} test, {k} classes",
        train.len(),
        valid.len(),
        test_texts.len()
    );
    let runs = [
        ("kdrun split", LinearKind::Logreg, None),
        ("kdrun split", LinearKind::Svm, None),
        ("like scikit-learn", LinearKind::Logreg, Some(10.0)),
        ("like scikit-learn", LinearKind::Svm, Some(0.5)),
    ];
    for (how, kind, fixed_c) in runs {
        let mut config = LinearConfig {
            kind,
            ..LinearConfig::default()
        };
        if kind == LinearKind::Svm {
            config.c_grid = vec![0.1, 0.3, 1.0, 3.0];
        }
        let (fit_on, check_on) = match fixed_c {
            Some(c) => {
                config.c_grid = vec![c];
                (borrow(&all), Vec::new())
            }
            None => (borrow(&train), borrow(&valid)),
        };
        let t0 = Instant::now();
        let (model, grid) = LinearModel::fit(&config, &fit_on, &check_on, k)?;
        let fit_s = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let predicted = model.predict(&test_texts);
        let infer_s = t1.elapsed().as_secs_f64();
        let rep = ClassificationReport::new(&truth, &predicted, k);
        let grid: Vec<String> = grid
            .iter()
            .map(|g| {
                format!(
                    "C={} valid {:.4} ({} it)",
                    g.c, g.valid_accuracy, g.iterations
                )
            })
            .collect();
        println!(
            "{how:18} {:6} C={:<5} features {:7}: accuracy {:.4}, macro-F1 {:.4}; fit {fit_s:.1} s \
             ({} fits), test inference {:.0} samples/s; grid: {}",
            kind.name(),
            model.c,
            model.features(),
            rep.accuracy,
            rep.macro_avg.f1,
            grid.len(),
            test_texts.len() as f64 / infer_s,
            grid.join(", ")
        );
    }
    Ok(())
}
