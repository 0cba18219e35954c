//! An ensemble's row in the report: its combined logits scored on the test split, its size and
//! timings its members' summed.

use super::Member;
use crate::distill::TeacherLogits;
use crate::eval::{ClassificationReport, InferenceTiming};
use crate::pipeline::context::Context;
use crate::pipeline::stages::logits::Logits;
use crate::recipe::Combine;
use crate::store::ModelResult;
use anyhow::Result;

/// Class predictions of `logits` for `ids`, in that order.
fn predictions(logits: &TeacherLogits, ids: impl Iterator<Item = u32>) -> Result<Vec<usize>> {
    ids.map(|id| {
        logits
            .argmax(id)
            .ok_or_else(|| anyhow::anyhow!("the ensemble has no logits for example id {id}"))
    })
    .collect()
}

/// The ensemble's row: scores from its combined logits on the test split, validation accuracy
/// from the validation split's; its size, training time and inference time are its members'
/// summed (the ensemble runs every member: its samples/s is 1 / Σ 1/(member samples/s), derived
/// from the members' measured timings, not timed as one).
pub(super) fn row(
    cx: &Context,
    ensemble: &Logits,
    members: &[(Member, f64)],
) -> Result<ModelResult> {
    let data = cx.data()?;
    let classes = data.classes.len();
    let eval = ensemble
        .eval
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("the ensemble stage kept no evaluation logits"))?;
    let truth: Vec<usize> = data.test.iter().map(|e| e.label).collect();
    let preds = predictions(&eval.test, data.test.iter().map(|e| e.id))?;
    let report = ClassificationReport::new(&truth, &preds, classes);
    let valid_truth: Vec<usize> = data.valid.iter().map(|e| e.label).collect();
    let valid_preds = predictions(&eval.valid, data.valid.iter().map(|e| e.id))?;
    let valid = ClassificationReport::new(&valid_truth, &valid_preds, classes);
    // Each member's own row (its `teacher_N` row, not a compared teacher's).
    let rows: Vec<&ModelResult> = members.iter().filter_map(|(m, _)| m.rows.first()).collect();
    let seconds: f64 = rows.iter().map(|m| m.timing.seconds).sum();
    let first = rows
        .first()
        .ok_or_else(|| anyhow::anyhow!("an ensemble without members"))?;
    let timing = InferenceTiming {
        batch_size: first.timing.batch_size,
        samples: first.timing.samples,
        batches: first.timing.batches,
        repeats: first.timing.repeats,
        seconds,
        samples_per_sec: 1.0
            / rows
                .iter()
                .map(|m| 1.0 / m.timing.samples_per_sec)
                .sum::<f64>(),
        batch_latency_ms: rows.iter().map(|m| m.timing.batch_latency_ms).sum(),
        max_batch_latency_ms: rows.iter().map(|m| m.timing.max_batch_latency_ms).sum(),
    };
    let t = &cx.r.teacher;
    let how = match (t.combine, t.calibrate) {
        (Combine::Logits, false) => "mean logits",
        (Combine::LogProbs, false) => "mean log-probabilities",
        (Combine::Logits, true) => "mean calibrated logits",
        (Combine::LogProbs, true) => "mean calibrated log-probabilities",
    };
    let weights: Vec<f64> = members.iter().map(|(_, w)| *w).collect();
    let weighted = if weights.iter().all(|w| *w == weights[0]) {
        String::new()
    } else {
        format!(
            ", weights {}",
            weights
                .iter()
                .map(|w| w.to_string())
                .collect::<Vec<_>>()
                .join(" : ")
        )
    };
    Ok(ModelResult {
        key: "teacher".into(),
        label: format!(
            "Teacher (ensemble of {} members, {how}{weighted})",
            members.len()
        ),
        params: rows.iter().map(|m| m.params).sum(),
        trainable_params: rows.iter().map(|m| m.trainable_params).sum(),
        report,
        timing,
        train_seconds: rows.iter().map(|m| m.train_seconds).sum(),
        best_epoch: 0,
        best_valid_accuracy: valid.accuracy,
        history: Vec::new(),
        predictions: preds,
    })
}
