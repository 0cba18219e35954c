//! The top layer: one trial run stage by stage — data → teacher (pre-training, fine-tuning) →
//! teacher logits on the transfer set → students → evaluation — then its results and report,
//! and sweeps of trials ([`sweep`]). Each stage is a unit of its own ([`stages`]), computed or
//! reused from the content-addressed store; a trial's inputs are prepared lazily
//! ([`context`]), so a trial whose stages all come from the store starts at once.

pub mod context;
mod preflight;
pub mod retry;
pub mod slurm;
pub mod stages;
pub mod sweep;
pub mod teachers;

use crate::backend::Compute;
use crate::recipe::{LoadedRecipe, Recipe, SoftLoss};
use crate::report;
use crate::runtime::progress::note;
use crate::store::stage::{Done, Stages};
use crate::store::{timestamp, ModelResult, RunDir, RunResults};
use anyhow::{Context as _, Result};
use context::Context;
pub(crate) use preflight::check_data_files;
pub use preflight::{prepare, RECIPE_CHECKS};
use stages::baseline::{baseline_label, BaselineEvalStage, BaselineStage};
use stages::data::DataStage;
use stages::eval::{EvalStage, Reads};
use stages::student::{Student, StudentStage};
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

/// What a finished run leaves behind.
#[derive(Debug, Clone)]
pub struct RunOutput {
    pub results: RunResults,
    pub run_dir: PathBuf,
    pub report_dir: PathBuf,
    pub report_files: Vec<PathBuf>,
}

/// Run one loaded recipe (one trial) on `compute`: a run folder with the resolved recipe and
/// `results.json`, stages reused or computed in the store, and the report.
pub fn run(loaded: &LoadedRecipe, compute: &Compute) -> Result<RunOutput> {
    let r = &loaded.recipe;
    let stages = Stages::new(&r.runtime.store);
    let cleaned = stages.clean_stale()?;
    if cleaned > 0 {
        note(&format!(
            "kdrun: removed {cleaned} unfinished stage folder(s) of an interrupted run"
        ));
    }
    let run_dir = RunDir::create(&r.runtime.store, &r.name)?;
    let results = run_in(loaded, compute, &stages, &run_dir)?;
    let report_dir = r.report.dir.join(&r.name);
    let report_files = report::write_all(&results, &report_dir, None)
        .with_context(|| format!("writing the report to {}", report_dir.display()))?;
    Ok(RunOutput {
        results,
        run_dir: run_dir.path.clone(),
        report_dir,
        report_files,
    })
}

/// How the report names the distilled student.
fn distilled_label(r: &Recipe) -> String {
    format!(
        "Distilled student (α={}, {} T={}{})",
        r.distill.alpha,
        match r.distill.soft_loss {
            SoftLoss::Mse => "MSE",
            SoftLoss::Kl => "KL",
        },
        r.distill.temperature,
        if r.distill.augment.n_iter > 0 {
            ", augmented"
        } else {
            ""
        }
    )
}

/// The stages of one trial, in `run_dir`, with `stages` as the cache.
pub(crate) fn run_in(
    loaded: &LoadedRecipe,
    compute: &Compute,
    stages: &Stages,
    run_dir: &RunDir,
) -> Result<RunResults> {
    let clock = Instant::now();
    let started = timestamp(SystemTime::now());
    let r = &loaded.recipe;
    run_dir.write_text("recipe.toml", &loaded.resolved_toml)?;
    note(&format!("kdrun: run folder {}", run_dir.path.display()));
    note(&format!(
        "kdrun: backend {} on {}{}",
        compute.backend,
        compute.adapter,
        if compute.reason.is_empty() {
            String::new()
        } else {
            format!(" ({})", compute.reason)
        }
    ));
    let cx = Context::new(r, compute, stages);
    let data_key = cx.run(&DataStage)?.key;

    // The teacher (or the ensemble) the students learn from, and its rows in the report.
    let teacher = teachers::run(&cx, &data_key)?;
    if r.distill.augment.n_iter > 0 {
        note(&format!(
            "transfer set: {} training examples + {} synthetic ones ({} rounds each, duplicates dropped), labelled by the teacher",
            cx.data()?.train.len(),
            teacher.logits.synthetic.len(),
            r.distill.augment.n_iter
        ));
    }
    let (rows, coverage) = students(&cx, &data_key, &teacher)?;
    // The report's rows: the teacher's, the students, the baseline, TextGCN.
    let mut models = teacher.rows.clone();
    models.extend(rows);
    let mut results = results(
        &cx,
        loaded,
        run_dir,
        &teacher,
        models,
        coverage,
        (started, clock),
    )?;
    run_dir.write_json("results.json", &results)?;
    if r.export.is_empty() {
        return Ok(results);
    }
    // The run's results are saved first: an export that fails loses nothing.
    let run = crate::deploy::Run::new(&run_dir.path, results.clone(), r.clone())?;
    let models: Vec<_> = r.export.models.iter().map(|&m| m.into()).collect();
    let dirs = crate::deploy::export_run(&run, &models, &r.export.formats, &compute.device)?;
    for d in &dirs {
        note(&format!("export: {}", d.display()));
    }
    results.exports = dirs.iter().map(|d| d.display().to_string()).collect();
    run_dir.write_json("results.json", &results)?;
    Ok(results)
}

/// The rows of every model beside the teacher — the student alone, the baseline, TextGCN, the
/// distilled student, TextGCN distilled — and the distilled student's vectors coverage.
///
/// Every stage that does not depend on the distillation settings comes first (the student
/// alone, the baseline, TextGCN and their evaluations), then the distilled student: a sweep over
/// `distill.*` finds all of its shared stages before its trials part ways, so parallel trials
/// (`--jobs`) never wait on each other for one of them.
fn students(
    cx: &Context,
    data_key: &str,
    teacher: &teachers::TeacherSide,
) -> Result<(Vec<ModelResult>, Option<crate::data::vectors::Coverage>)> {
    let r = cx.r;
    let frozen = r.student.freeze_vectors;
    let student_row = |stage: &Done<Student>, key: &str, label: &str| {
        Ok::<_, anyhow::Error>(
            cx.run(&EvalStage {
                model_key: stage.key.clone(),
                model: &stage.value.model,
                reads: Reads::Student,
                fit: &stage.value.fit,
                trainable: stage.value.trainable(frozen),
                key,
                label,
            })?
            .value,
        )
    };
    let alone = cx.run(&StudentStage {
        data_key: data_key.to_string(),
        teacher: None,
    })?;
    let mut rows = vec![student_row(&alone, "student", "Student alone (BiLSTM)")?];

    // The linear baseline on the same split, unless the recipe turns it off.
    let baseline_row = if r.baseline.enabled {
        let baseline = cx.run(&BaselineStage {
            data_key: data_key.to_string(),
        })?;
        Some(
            cx.run(&BaselineEvalStage {
                model_key: baseline.key.clone(),
                baseline: &baseline.value,
                key: "baseline".into(),
                label: baseline_label(r),
            })?
            .value,
        )
    } else {
        None
    };

    // TextGCN on the same split, if the recipe turns it on.
    let textgcn_row = if r.textgcn.enabled {
        Some(stages::textgcn::textgcn_row(cx, data_key, None)?)
    } else {
        None
    };

    let distilled = cx.run(&StudentStage {
        data_key: data_key.to_string(),
        teacher: Some((&teacher.logits, teacher.logits_key.clone())),
    })?;
    rows.push(student_row(&distilled, "distilled", &distilled_label(r))?);
    rows.extend(baseline_row);
    rows.extend(textgcn_row);
    if r.textgcn.enabled && r.textgcn.distill {
        rows.push(stages::textgcn::textgcn_row(
            cx,
            data_key,
            Some((&teacher.logits, teacher.logits_key.clone())),
        )?);
    }
    Ok((rows, distilled.value.coverage))
}

/// The run's results, finished now (`started` when and at which instant), and its vocabularies
/// written to the run folder.
fn results(
    cx: &Context,
    loaded: &LoadedRecipe,
    run_dir: &RunDir,
    teacher: &teachers::TeacherSide,
    models: Vec<ModelResult>,
    vectors_coverage: Option<crate::data::vectors::Coverage>,
    (started, clock): (String, Instant),
) -> Result<RunResults> {
    let r = cx.r;
    let compute = cx.compute;
    let data = cx.data()?;
    let vocab = cx.vocab()?;
    vocab.save(&run_dir.file("vocab.txt"))?;
    let student_vocab = cx.student_vocab()?;
    run_dir.write_text(
        "student_vocab.txt",
        &(student_vocab.tokens().join("\n") + "\n"),
    )?;
    let mut notes = teacher.notes.clone();
    notes.extend(cx.notes.borrow().iter().cloned());
    Ok(RunResults {
        recipe_name: r.name.clone(),
        title: if r.report.title.is_empty() {
            format!("kdrun: {}", r.name)
        } else {
            r.report.title.clone()
        },
        started,
        finished: timestamp(SystemTime::now()),
        total_seconds: clock.elapsed().as_secs_f64(),
        kdrun_version: crate::build_info::VERSION.into(),
        git_commit: crate::build_info::git_commit().map(String::from),
        backend: compute.backend.clone(),
        adapter: compute.adapter.clone(),
        backend_reason: compute.reason.clone(),
        machine: cx.machine().clone(),
        classes: data.classes.clone(),
        counts: data.class_counts().clone(),
        skipped_rows: data.skipped.clone(),
        vocab_size: vocab.len(),
        teacher_vocab_size: teacher.vocab_size,
        teacher_logit_rows: teacher.logits.logits.len(),
        pretrain: teacher.pretrain.clone(),
        student_tokens: student_vocab.unit().to_string(),
        vectors_coverage,
        transfer_set: data.train.len() + teacher.logits.synthetic.len(),
        notes,
        recipe_toml: loaded.resolved_toml.clone(),
        run_dir: run_dir.path.display().to_string(),
        stages: cx.used(),
        models,
        test_texts: data.test.iter().map(|e| e.text.clone()).collect(),
        test_labels: data.test.iter().map(|e| e.label).collect(),
        report_dir: r.report.dir.join(&r.name).display().to_string(),
        exports: Vec::new(),
    })
}
