//! Stage `eval`: one model scored on the test split (per-class scores, predictions) and its
//! inference timed. Keyed by the model's stage and the timing settings, the backend, the adapter
//! and the processor — a timing is only reused on the machine that measured it.

use super::super::context::{Context, Encodings};
use super::read_json;
use crate::eval::{evaluate, Evaluation};
use crate::models::Classifier;
use crate::runtime::progress::note;
use crate::store::stage::{Stage, StageWriter};
use crate::store::ModelResult;
use crate::train::FitInfo;
use anyhow::Result;
use serde::Serialize;
use std::path::Path;

/// Which tokenization a model reads.
#[derive(Debug, Clone, Copy)]
pub enum Reads {
    Teacher,
    Student,
}

pub struct EvalStage<'m, M> {
    /// The key of the model's stage.
    pub model_key: String,
    pub model: &'m M,
    pub reads: Reads,
    pub fit: &'m FitInfo,
    pub trainable: usize,
    /// The row's key and label in the results (`teacher`, "Teacher (BERT)").
    pub key: &'m str,
    pub label: &'m str,
}

impl<M> EvalStage<'_, M> {
    fn inputs<'c>(&self, cx: &'c Context) -> Result<&'c Encodings> {
        match self.reads {
            Reads::Teacher => cx.teacher_inputs(),
            Reads::Student => cx.student_inputs(),
        }
    }
}

/// How a stage times inference: the recipe's `report.timing_*` on this processor (a timing is
/// only reused on the machine that measured it).
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    #[serde(rename = "timing_batch")]
    pub batch: usize,
    #[serde(rename = "timing_repeats")]
    pub repeats: usize,
    pub cpu: String,
}

impl Timing {
    pub fn of(cx: &Context) -> Self {
        Self {
            batch: cx.r.report.timing_batch,
            repeats: cx.r.report.timing_repeats,
            cpu: cx.machine().cpu.clone(),
        }
    }
}

/// What an evaluation depends on besides the model.
#[derive(Debug, Clone, Serialize)]
pub struct EvalSpec {
    #[serde(flatten)]
    pub timing: Timing,
    pub backend: String,
    pub adapter: String,
    /// 2: results carry per-example predictions (error analysis).
    pub outputs: u32,
}

impl<M: Classifier> Stage<Context<'_>> for EvalStage<'_, M> {
    type Output = ModelResult;
    type Spec = EvalSpec;

    fn name(&self) -> &str {
        "eval"
    }

    fn spec(&self, cx: &Context) -> Result<EvalSpec> {
        Ok(EvalSpec {
            timing: Timing::of(cx),
            backend: cx.compute.backend.clone(),
            adapter: cx.compute.adapter.clone(),
            outputs: 2,
        })
    }

    fn inputs(&self) -> Vec<String> {
        vec![self.model_key.clone()]
    }

    fn compute(&self, cx: &Context, spec: &EvalSpec, out: &StageWriter) -> Result<ModelResult> {
        let inputs = self.inputs(cx)?;
        let e = evaluate(
            self.model,
            &inputs.batcher,
            &inputs.test,
            cx.data()?.classes.len(),
            spec.timing.batch,
            spec.timing.repeats,
            &cx.compute.device,
        )?;
        let result = result_row(self.key, self.label, e, self.trainable, self.fit);
        out.write_json("result.json", &result)?;
        Ok(result)
    }

    fn load(&self, _cx: &Context, dir: &Path) -> Result<ModelResult> {
        // One evaluation may serve rows of several names (the same stage in two runs).
        load_result_row(dir, self.key, self.label)
    }
}

/// A model's row of the results: its evaluation on the test split with what its fit recorded;
/// its scores said as a progress note.
pub fn result_row(
    key: &str,
    label: &str,
    e: Evaluation,
    trainable: usize,
    fit: &FitInfo,
) -> ModelResult {
    note(&format!(
        "{label}: test accuracy {:.4}, macro-F1 {:.4}, {:.0} samples/s",
        e.report.accuracy, e.report.macro_avg.f1, e.timing.samples_per_sec
    ));
    ModelResult {
        predictions: e.predictions,
        key: key.into(),
        label: label.into(),
        params: e.params,
        trainable_params: trainable,
        report: e.report,
        timing: e.timing,
        train_seconds: fit.seconds,
        best_epoch: fit.best_epoch,
        best_valid_accuracy: fit.best_valid_accuracy,
        history: fit.history.clone(),
    }
}

/// A stored row (`result.json`) under the name it has in this run, its scores said again.
pub fn load_result_row(dir: &Path, key: &str, label: &str) -> Result<ModelResult> {
    let mut result: ModelResult = read_json(&dir.join("result.json"))?;
    note(&format!(
        "{label}: test accuracy {:.4}, macro-F1 {:.4}, {:.0} samples/s (measured before)",
        result.report.accuracy, result.report.macro_avg.f1, result.timing.samples_per_sec
    ));
    result.key = key.into();
    result.label = label.into();
    Ok(result)
}
