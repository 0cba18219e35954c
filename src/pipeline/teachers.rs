//! The teacher side of a trial: one teacher, or an ensemble's members (`[[teacher.members]]`),
//! each trained or reused through stages of its own, each labelling the transfer set, and the
//! report's rows for each and for the ensemble.
//!
//! A teacher is a transformer (BERT, XLNet: stages `pretrain`, `teacher`), the linear n-gram
//! model (the `baseline` stage: the same fit as the baseline row) or a BiLSTM (the `student`
//! stage: the same fit as the "student alone" row). An ensemble's member is a recipe whose
//! teacher is that member, so each member's stages are keyed as the same teacher alone would
//! be, and a sweep over ensemble choices trains each member once.

use super::context::Context;
use super::stages::baseline::{linear_name, BaselineEvalStage, BaselineStage};
use super::stages::eval::{EvalStage, Reads};
use super::stages::logits::{EnsembleStage, Labeller, Logits, LogitsStage};
use super::stages::student::StudentStage;
use super::stages::teacher::TeacherStage;
use super::stages::textgcn::{textgcn_label, TextGcnStage};
use crate::data::TextEncoder;
use crate::distill::TeacherLogits;
use crate::eval::{ClassificationReport, InferenceTiming};
use crate::models::TeacherConfig;
use crate::recipe::{Combine, Recipe, TeacherArch};
use crate::runtime::progress::note;
use crate::store::stage::Done;
use crate::store::ModelResult;
use crate::train::pretrain::PretrainReport;
use anyhow::Result;

/// What the teacher side gives the rest of the trial.
pub struct TeacherSide {
    /// The transfer set's logits, for the distilled student.
    pub logits: Logits,
    pub logits_key: String,
    /// The report's rows: the teacher (key `teacher`); for an ensemble, its members first
    /// (`teacher_1`, …); with `teacher.pretrain.compare`, the teacher without pre-training.
    pub rows: Vec<ModelResult>,
    /// What loading the teachers said, for the report.
    pub notes: Vec<String>,
    /// The (first) transformer's further pre-training.
    pub pretrain: Option<PretrainReport>,
    /// The (first) transformer's vocabulary size; 0 without one.
    pub vocab_size: usize,
}

/// The teacher, or the ensemble of the recipe's members.
pub fn run(cx: &Context, data_key: &str) -> Result<TeacherSide> {
    let t = &cx.r.teacher;
    if t.members.is_empty() {
        let m = member(cx, data_key, None)?;
        return Ok(TeacherSide {
            logits: m.logits,
            logits_key: m.logits_key,
            rows: m.rows,
            notes: m.notes,
            pretrain: m.pretrain,
            vocab_size: m.vocab_size,
        });
    }
    // Read once here; every member's context shares it.
    cx.data()?;
    let mut members = Vec::with_capacity(t.members.len());
    for (i, m) in t.members.iter().enumerate() {
        let n = i + 1;
        note(&format!(
            "teacher member {n} of {}: {}",
            t.members.len(),
            m.arch.name()
        ));
        let r = member_recipe(cx.r, m);
        let mcx = cx.with_recipe(&r);
        let out = member(&mcx, data_key, Some(n))?;
        cx.absorb(mcx, &format!("member {n}"));
        members.push((out, m.weight));
    }
    let ensemble = cx.run(&EnsembleStage {
        members: members
            .iter()
            .map(|(m, w)| (m.logits_key.clone(), &m.logits, *w))
            .collect(),
        combine: t.combine,
        calibrate: t.calibrate,
    })?;
    let row = ensemble_row(cx, &ensemble.value, &members)?;
    note(&format!(
        "{}: test accuracy {:.4}, macro-F1 {:.4}",
        row.label, row.report.accuracy, row.report.macro_avg.f1
    ));
    let mut rows: Vec<ModelResult> = members
        .iter()
        .flat_map(|(m, _)| m.rows.iter().cloned())
        .collect();
    rows.insert(0, row);
    let first_transformer = members.iter().find(|(m, _)| m.vocab_size > 0);
    Ok(TeacherSide {
        notes: members
            .iter()
            .flat_map(|(m, _)| m.notes.iter().cloned())
            .collect(),
        pretrain: first_transformer.and_then(|(m, _)| m.pretrain.clone()),
        vocab_size: first_transformer.map_or(0, |(m, _)| m.vocab_size),
        logits: ensemble.value,
        logits_key: ensemble.key,
        rows,
    })
}

/// The recipe with `member` as its (sole) teacher.
pub fn member_recipe(r: &Recipe, member: &crate::recipe::TeacherSection) -> Recipe {
    let mut r = r.clone();
    r.teacher = member.clone();
    r.teacher.weight = 1.0;
    r.teacher.combine = Combine::default();
    r.teacher.calibrate = true;
    r
}

/// One teacher's stages and rows.
struct Member {
    logits: Logits,
    logits_key: String,
    rows: Vec<ModelResult>,
    notes: Vec<String>,
    pretrain: Option<PretrainReport>,
    vocab_size: usize,
}

impl Member {
    /// A teacher that is not a transformer: its logits stage and its one row.
    fn single(logits: Done<Logits>, row: ModelResult) -> Self {
        Self {
            logits: logits.value,
            logits_key: logits.key,
            rows: vec![row],
            notes: Vec::new(),
            pretrain: None,
            vocab_size: 0,
        }
    }
}

/// The teacher of `cx`'s recipe: trained (or reused), its logits on the transfer set (and, as
/// member `index` of an ensemble, on the validation and test splits), its evaluation.
fn member(cx: &Context, data_key: &str, index: Option<usize>) -> Result<Member> {
    let r = cx.r;
    let t = &r.teacher;
    let key = index.map_or("teacher".to_string(), |n| format!("teacher_{n}"));
    let label = |kind: &str| match index {
        None => format!("Teacher ({kind})"),
        Some(n) => format!("Teacher member {n}: {kind}"),
    };
    let eval = index.is_some();
    match t.arch {
        TeacherArch::Bert | TeacherArch::Xlnet => {
            let pretrain = t.pretrain.enabled();
            let teacher = cx.run(&TeacherStage::new(cx, data_key, pretrain)?)?;
            if !teacher.reused && t.export {
                note(&format!(
                    "teacher: saved as a Hugging Face folder in {}",
                    teacher.dir.join("teacher_hf").display()
                ));
            }
            // The teacher without further pre-training beside it (a lone teacher only).
            let compare = if pretrain && t.pretrain.compare && index.is_none() {
                Some(cx.run(&TeacherStage::new(cx, data_key, false)?)?)
            } else {
                None
            };
            let logits = cx.run(&LogitsStage {
                data_key: data_key.to_string(),
                teacher_key: teacher.key.clone(),
                teacher: Labeller::Transformer(&teacher.value),
                eval,
            })?;
            let setup = cx.setup()?;
            let mut evals = vec![(
                &teacher,
                key,
                label(&transformer_kind(r, &setup.config, pretrain)),
            )];
            if let Some(b) = &compare {
                evals.push((
                    b,
                    "teacher_base".to_string(),
                    label(&transformer_kind(r, &setup.config, false)),
                ));
            }
            let mut rows = Vec::new();
            for (stage, key, label) in evals {
                rows.push(
                    cx.run(&EvalStage {
                        model_key: stage.key.clone(),
                        model: &stage.value.model,
                        reads: Reads::Teacher,
                        fit: &stage.value.fit,
                        trainable: stage.value.trainable,
                        key: &key,
                        label: &label,
                    })?
                    .value,
                );
            }
            Ok(Member {
                logits: logits.value,
                logits_key: logits.key,
                rows,
                notes: teacher.value.notes.clone(),
                pretrain: teacher.value.pretrain.clone(),
                vocab_size: setup.tokenizer.vocab_size(),
            })
        }
        TeacherArch::Linear => {
            let fitted = cx.run(&BaselineStage {
                data_key: data_key.to_string(),
            })?;
            let logits = cx.run(&LogitsStage {
                data_key: data_key.to_string(),
                teacher_key: fitted.key.clone(),
                teacher: Labeller::Linear(&fitted.value),
                eval,
            })?;
            let row = cx
                .run(&BaselineEvalStage {
                    model_key: fitted.key.clone(),
                    baseline: &fitted.value,
                    key,
                    label: label(&linear_name(r)),
                })?
                .value;
            Ok(Member::single(logits, row))
        }
        TeacherArch::Textgcn => {
            let fitted = cx.run(&TextGcnStage {
                data_key: data_key.to_string(),
                teacher: None,
            })?;
            let logits = cx.run(&LogitsStage {
                data_key: data_key.to_string(),
                teacher_key: fitted.key.clone(),
                teacher: Labeller::TextGcn(&fitted.value),
                eval,
            })?;
            let mut row = fitted.value.result.clone();
            row.key = key;
            row.label = label(&textgcn_label(r));
            Ok(Member::single(logits, row))
        }
        TeacherArch::Bilstm => {
            let fitted = cx.run(&StudentStage {
                data_key: data_key.to_string(),
                teacher: None,
            })?;
            let logits = cx.run(&LogitsStage {
                data_key: data_key.to_string(),
                teacher_key: fitted.key.clone(),
                teacher: Labeller::Bilstm(&fitted.value),
                eval,
            })?;
            let kind = if r.student.vectors.as_os_str().is_empty() {
                "BiLSTM".to_string()
            } else {
                "BiLSTM with pretrained vectors".to_string()
            };
            let row = cx
                .run(&EvalStage {
                    model_key: fitted.key.clone(),
                    model: &fitted.value.model,
                    reads: Reads::Student,
                    fit: &fitted.value.fit,
                    trainable: fitted.value.trainable(r.student.freeze_vectors),
                    key: &key,
                    label: &label(&kind),
                })?
                .value;
            Ok(Member::single(logits, row))
        }
    }
}

/// A transformer teacher in words: its architecture and pre-training objective (from the seam,
/// `models::TeacherConfig`), from a checkpoint or not, further pre-trained or not ("BERT + MLM").
pub fn transformer_kind(r: &Recipe, config: &TeacherConfig, pretrained: bool) -> String {
    let arch = config.arch_name();
    let origin = if r.teacher.checkpoint.as_os_str().is_empty() {
        arch.to_string()
    } else {
        format!("{arch} checkpoint")
    };
    let objective = config.pretrain_name();
    match (pretrained, r.teacher.pretrain.enabled()) {
        (true, _) => format!("{origin} + {objective}"),
        (false, true) => format!("{origin}, no {objective}"),
        (false, false) => origin,
    }
}

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
fn ensemble_row(cx: &Context, ensemble: &Logits, members: &[(Member, f64)]) -> Result<ModelResult> {
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
