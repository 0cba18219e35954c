//! Stages `baseline` (the linear n-gram model of `[baseline]`, fitted on the training split with
//! `C` chosen on the validation split) and `baseline_eval` (it on the test split: scores,
//! predictions, inference timed from raw text). Keyed by `[baseline]`, `data.lowercase` and, for
//! the SVM, the seed (its visiting order); the evaluation by the timing settings and the processor.

use super::super::context::Context;
use super::eval::{load_result_row, result_row, Timing};
use super::read_json;
use crate::eval::{time_text_inference, ClassificationReport, Evaluation};
use crate::models::linear::MODEL_FILE;
use crate::models::linear::{GridPoint, LinearConfig, LinearKind, LinearModel, TfidfConfig};
use crate::recipe::{ngram_range, BaselineModel, Recipe};
use crate::runtime::progress::note;
use crate::store::stage::{Stage, StageWriter};
use crate::store::ModelResult;
use crate::train::FitInfo;
use anyhow::Result;
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// The fit settings of a recipe's `[baseline]`.
pub fn linear_config(r: &Recipe) -> LinearConfig {
    let b = &r.baseline;
    LinearConfig {
        tfidf: TfidfConfig {
            char_ngrams: ngram_range(&b.char_ngrams),
            word_ngrams: ngram_range(&b.word_ngrams),
            min_df: b.min_df,
            max_features: b.max_features,
            sublinear_tf: b.sublinear_tf,
            lowercase: r.data.lowercase,
        },
        kind: match b.model {
            BaselineModel::Logreg => LinearKind::Logreg,
            BaselineModel::Svm => LinearKind::Svm,
        },
        c_grid: b.c.clone(),
        // Only the SVM draws (its visiting order): logistic regression is deterministic, so a
        // sweep over seeds fits it once.
        seed: match b.model {
            BaselineModel::Svm => r.runtime.seed,
            BaselineModel::Logreg => 0,
        },
        ..LinearConfig::default()
    }
}

/// How the report names the baseline.
pub fn baseline_label(r: &Recipe) -> String {
    format!("Baseline ({})", linear_name(r))
}

/// The linear model in words ("TF-IDF char 1–2, logistic regression").
pub fn linear_name(r: &Recipe) -> String {
    let b = &r.baseline;
    let mut grams = Vec::new();
    if let Some((lo, hi)) = ngram_range(&b.char_ngrams) {
        grams.push(format!("char {lo}–{hi}"));
    }
    if let Some((lo, hi)) = ngram_range(&b.word_ngrams) {
        grams.push(format!("word {lo}–{hi}"));
    }
    let model = match b.model {
        BaselineModel::Logreg => "logistic regression",
        BaselineModel::Svm => "linear SVM",
    };
    format!("TF-IDF {}, {model}", grams.join(" + "))
}

fn pairs(v: &[crate::data::Example]) -> Vec<(&str, usize)> {
    v.iter().map(|e| (e.text.as_str(), e.label)).collect()
}

/// A fitted baseline.
pub struct Baseline {
    pub model: LinearModel,
    pub fit: FitInfo,
    pub grid: Vec<GridPoint>,
}

pub struct BaselineStage {
    pub data_key: String,
}

/// What the baseline's fit depends on besides the data.
#[derive(Debug, Clone, Serialize)]
pub struct BaselineSpec {
    pub linear: LinearConfig,
}

impl Stage<Context<'_>> for BaselineStage {
    type Output = Baseline;
    type Spec = BaselineSpec;

    fn name(&self) -> &str {
        "baseline"
    }

    fn spec(&self, cx: &Context) -> Result<BaselineSpec> {
        Ok(BaselineSpec {
            linear: linear_config(cx.r),
        })
    }

    fn inputs(&self) -> Vec<String> {
        vec![self.data_key.clone()]
    }

    fn compute(&self, cx: &Context, spec: &BaselineSpec, out: &StageWriter) -> Result<Baseline> {
        let data = cx.data()?;
        let start = Instant::now();
        let (model, grid) = LinearModel::fit(
            &spec.linear,
            &pairs(&data.train),
            &pairs(&data.valid),
            data.classes.len(),
        )?;
        let seconds = start.elapsed().as_secs_f64();
        let chosen = grid.iter().find(|g| g.c == model.c).cloned();
        note(&format!(
            "baseline: {} features, C = {} (validation accuracy {:.4}; tried {}), {seconds:.1} s",
            model.features(),
            model.c,
            chosen.as_ref().map_or(f64::NAN, |g| g.valid_accuracy),
            grid.iter()
                .map(|g| format!("{} → {:.4}", g.c, g.valid_accuracy))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let fit = FitInfo {
            best_epoch: 0,
            best_valid_accuracy: chosen.map_or(f64::NAN, |g| g.valid_accuracy),
            history: Vec::new(),
            seconds,
        };
        model.save(&out.file(MODEL_FILE))?;
        out.write_json("fit.json", &fit)?;
        out.write_json("grid.json", &grid)?;
        Ok(Baseline { model, fit, grid })
    }

    fn load(&self, _cx: &Context, dir: &Path) -> Result<Baseline> {
        Ok(Baseline {
            model: LinearModel::load(&dir.join(MODEL_FILE))?,
            fit: read_json(&dir.join("fit.json"))?,
            grid: read_json(&dir.join("grid.json"))?,
        })
    }
}

/// The baseline on the test split.
pub struct BaselineEvalStage<'b> {
    pub model_key: String,
    pub baseline: &'b Baseline,
    /// The row's key and label in the results (`baseline`; `teacher` for a linear teacher).
    pub key: String,
    pub label: String,
}

impl Stage<Context<'_>> for BaselineEvalStage<'_> {
    type Output = ModelResult;
    type Spec = Timing;

    fn name(&self) -> &str {
        "baseline_eval"
    }

    fn spec(&self, cx: &Context) -> Result<Timing> {
        Ok(Timing::of(cx))
    }

    fn inputs(&self) -> Vec<String> {
        vec![self.model_key.clone()]
    }

    fn compute(&self, cx: &Context, timing: &Timing, out: &StageWriter) -> Result<ModelResult> {
        let data = cx.data()?;
        let model = &self.baseline.model;
        let texts: Vec<&str> = data.test.iter().map(|e| e.text.as_str()).collect();
        let truth: Vec<usize> = data.test.iter().map(|e| e.label).collect();
        let predictions = model.predict(&texts);
        let report = ClassificationReport::new(&truth, &predictions, data.classes.len());
        let timing =
            time_text_inference(|b| model.predict(b), &texts, timing.batch, timing.repeats);
        let e = Evaluation {
            predictions,
            report,
            timing,
            params: model.parameters(),
        };
        let result = result_row(
            &self.key,
            &self.label,
            e,
            model.parameters(),
            &self.baseline.fit,
        );
        out.write_json("result.json", &result)?;
        Ok(result)
    }

    fn load(&self, _cx: &Context, dir: &Path) -> Result<ModelResult> {
        // The same fit serves as baseline and as linear teacher.
        load_result_row(dir, &self.key, &self.label)
    }
}
