//! The teacher side of a trial: one teacher, or an ensemble's members (`[[teacher.members]]`),
//! each trained or reused through stages of its own, each labelling the transfer set, and the
//! report's rows for each and for the ensemble.
//!
//! A teacher is a transformer (BERT, XLNet: stages `pretrain`, `teacher`), the linear n-gram
//! model (the `baseline` stage: the same fit as the baseline row) or a BiLSTM (the `student`
//! stage: the same fit as the "student alone" row). An ensemble's member is a recipe whose
//! teacher is that member, so each member's stages are keyed as the same teacher alone would
//! be, and a sweep over ensemble choices trains each member once.

mod bilstm;
mod ensemble;
mod linear;
mod textgcn;
mod transformer;

use super::context::Context;
use super::stages::logits::{EnsembleStage, Labeller, Logits, LogitsStage};
use crate::recipe::{Combine, Recipe, TeacherArch};
use crate::runtime::progress::note;
use crate::store::stage::{Done, Stage};
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
    let row = ensemble::row(cx, &ensemble.value, &members)?;
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
    family(cx.r.teacher.arch).member(cx, data_key, &Slot { index })
}

/// The one place that maps the recipe's teacher kinds to their families.
fn family(arch: TeacherArch) -> &'static dyn Family {
    match arch {
        TeacherArch::Bert | TeacherArch::Xlnet => &transformer::Transformer,
        TeacherArch::Linear => &linear::Linear,
        TeacherArch::Bilstm => &bilstm::Bilstm,
        TeacherArch::Textgcn => &textgcn::TextGcn,
    }
}

/// A family of teachers: trains (or reuses) its stages, labels the transfer set through the
/// logits stage (its fitted model is a [`Labeller`]) and
/// evaluates itself into the report's rows. Adding a kind of teacher is one variant of
/// `recipe::TeacherArch`, its arm in [`family`] and one module here.
trait Family {
    fn member(&self, cx: &Context, data_key: &str, slot: &Slot) -> Result<Member>;
}

/// Fit (or reuse) a teacher's `stage`, then label the transfer set with what it fitted (and,
/// as an ensemble's member, the validation and test splits).
fn fit_and_label<'a, S>(
    cx: &Context<'a>,
    data_key: &str,
    stage: &S,
    slot: &Slot,
) -> Result<(Done<S::Output>, Done<Logits>)>
where
    S: Stage<Context<'a>>,
    S::Output: Labeller,
{
    let fitted = cx.run(stage)?;
    let logits = cx.run(&LogitsStage {
        data_key: data_key.to_string(),
        teacher_key: fitted.key.clone(),
        teacher: &fitted.value,
        eval: slot.eval(),
    })?;
    Ok((fitted, logits))
}

/// Where a teacher sits: alone (`index` None) or as member `index` (from 1) of an ensemble.
pub struct Slot {
    pub index: Option<usize>,
}

impl Slot {
    /// Its row's key: `teacher`, or `teacher_N` for member N.
    fn key(&self) -> String {
        self.index
            .map_or("teacher".to_string(), |n| format!("teacher_{n}"))
    }

    /// Its row's label, `kind` in words.
    fn label(&self, kind: &str) -> String {
        match self.index {
            None => format!("Teacher ({kind})"),
            Some(n) => format!("Teacher member {n}: {kind}"),
        }
    }

    /// An ensemble's member also labels the validation and test splits.
    fn eval(&self) -> bool {
        self.index.is_some()
    }
}
