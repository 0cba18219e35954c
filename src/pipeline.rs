//! One run, stage by stage: data → teacher → teacher logits → students → evaluation → store →
//! report. Each stage's output is written to the run folder as soon as it exists.

use crate::backend::Compute;
use crate::data::batch::{Batcher, Encoded, InputKind};
use crate::data::{CharVocab, Dataset};
use crate::distill::{DistillLoss, TeacherLogits};
use crate::eval::{predict, time_inference, ClassificationReport};
use crate::models::Classifier;
use crate::recipe::{LoadedRecipe, Recipe};
use crate::report;
use crate::store::machine::Machine;
use crate::store::results::SplitCounts;
use crate::store::{timestamp, write_atomic, ModelResult, RunDir, RunResults};
use crate::train::progress::note;
use crate::train::{student, teacher, Fitted};
use anyhow::{anyhow, Context, Result};
use burn::module::Module;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

/// The commit kdrun was built from (set by build.rs).
pub const GIT_COMMIT: &str = env!("KDRUN_GIT_COMMIT");

/// What a finished run leaves behind.
#[derive(Debug, Clone)]
pub struct RunOutput {
    pub results: RunResults,
    pub run_dir: PathBuf,
    pub report_dir: PathBuf,
    pub report_files: Vec<PathBuf>,
}

fn save_model<M: Module>(model: &M, path: &Path) -> Result<()> {
    crate::store::write_with(path, |tmp| {
        model
            .clone()
            .into_record()
            .save(tmp)
            .map_err(|e| anyhow!("cannot save {}: {e:?}", path.display()))
    })?;
    Ok(())
}

/// Score `model` (inference mode) on the test items and time it.
fn evaluate<M: Classifier>(
    key: &str,
    label: &str,
    fitted: &Fitted<M>,
    batcher: &Batcher,
    test: &[Encoded],
    classes: usize,
    recipe: &Recipe,
    compute: &Compute,
) -> Result<ModelResult> {
    let model = fitted.model.valid();
    let predicted = predict(
        &model,
        batcher,
        test,
        recipe.report.timing_batch,
        &compute.device,
    )?;
    let truth: Vec<usize> = test.iter().map(|e| e.label).collect();
    let report = ClassificationReport::new(&truth, &predicted, classes);
    let timing = time_inference(
        &model,
        batcher,
        test,
        recipe.report.timing_batch,
        recipe.report.timing_repeats,
        &compute.device,
    )?;
    note(&format!(
        "{label}: test accuracy {:.4}, macro-F1 {:.4}, {:.0} samples/s",
        report.accuracy, report.macro_avg.f1, timing.samples_per_sec
    ));
    let params = model.num_params();
    Ok(ModelResult {
        key: key.into(),
        label: label.into(),
        params,
        trainable_params: params,
        report,
        timing,
        train_seconds: fitted.seconds,
        best_epoch: fitted.best_epoch,
        best_valid_accuracy: fitted.best_valid_accuracy,
        history: fitted.history.clone(),
    })
}

/// Run a loaded recipe on `compute`.
pub fn run(loaded: &LoadedRecipe, compute: &Compute) -> Result<RunOutput> {
    let clock = Instant::now();
    let started = timestamp(SystemTime::now());
    let r = &loaded.recipe;
    let run_dir = RunDir::create(&r.runtime.store, &r.name)?;
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

    // Data.
    let data = Dataset::load(&r.data)?;
    let k = data.classes.len();
    note(&format!(
        "data: {} classes ({}); {} train, {} valid, {} test examples",
        k,
        data.class_names().join(", "),
        data.train.len(),
        data.valid.len(),
        data.test.len()
    ));
    let vocab = CharVocab::build(
        data.train.iter().map(|e| e.text.as_str()),
        r.data.min_count,
        r.data.lowercase,
    );
    vocab.save(&run_dir.file("vocab.txt"))?;
    let ad = compute.device.clone().autodiff();

    // Teacher.
    let tb = Batcher::new(InputKind::Teacher, r.data.max_len);
    let (t_train, t_valid, t_test) = (
        tb.encode(&vocab, &data.train),
        tb.encode(&vocab, &data.valid),
        tb.encode(&vocab, &data.test),
    );
    let config = teacher::bert_config(r, vocab.len(), &data.class_names());
    let fitted_teacher = teacher::train_teacher(r, &config, &tb, &t_train, &t_valid, &ad)?;
    write_atomic(
        &run_dir.file("teacher_config.json"),
        serde_json::to_string_pretty(&config)?.as_bytes(),
    )?;
    save_model(&fitted_teacher.model, &run_dir.file("teacher.bpk"))?;

    // Teacher logits over the training examples, by id.
    let teacher_model = fitted_teacher.model.valid();
    let logits = TeacherLogits::compute(&teacher_model, &tb, &t_train, 256, &compute.device)?;
    logits.save(&run_dir.file("teacher_logits.csv"))?;

    // Students: alone, then distilled — same initialization, same batch order.
    let sb = Batcher::new(InputKind::Student, r.data.max_len);
    let (s_train, s_valid, s_test) = (
        sb.encode(&vocab, &data.train),
        sb.encode(&vocab, &data.valid),
        sb.encode(&vocab, &data.test),
    );
    let alone = student::train_student(
        r,
        "student",
        vocab.len(),
        k,
        &sb,
        &s_train,
        &s_valid,
        &ad,
        DistillLoss::hard_only(),
        None,
    )?;
    save_model(&alone.model, &run_dir.file("student.bpk"))?;
    let distilled = student::train_student(
        r,
        "distilled",
        vocab.len(),
        k,
        &sb,
        &s_train,
        &s_valid,
        &ad,
        DistillLoss::from_recipe(&r.distill),
        Some(&logits),
    )?;
    save_model(&distilled.model, &run_dir.file("distilled.bpk"))?;

    // Evaluation on the test split.
    let distill_label = format!(
        "Distilled student (α={}, {} T={})",
        r.distill.alpha,
        match r.distill.soft_loss {
            crate::recipe::SoftLoss::Mse => "MSE",
            crate::recipe::SoftLoss::Kl => "KL",
        },
        r.distill.temperature
    );
    let models = vec![
        evaluate(
            "teacher",
            "Teacher (BERT)",
            &fitted_teacher,
            &tb,
            &t_test,
            k,
            r,
            compute,
        )?,
        evaluate(
            "student",
            "Student alone (BiLSTM)",
            &alone,
            &sb,
            &s_test,
            k,
            r,
            compute,
        )?,
        evaluate(
            "distilled",
            &distill_label,
            &distilled,
            &sb,
            &s_test,
            k,
            r,
            compute,
        )?,
    ];

    let count = |xs: &[crate::data::Example]| {
        (0..k)
            .map(|c| xs.iter().filter(|e| e.label == c).count())
            .collect::<Vec<_>>()
    };
    let results = RunResults {
        recipe_name: r.name.clone(),
        title: if r.report.title.is_empty() {
            format!("kdrun: {}", r.name)
        } else {
            r.report.title.clone()
        },
        started,
        finished: timestamp(SystemTime::now()),
        total_seconds: clock.elapsed().as_secs_f64(),
        kdrun_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: Some(GIT_COMMIT.to_string()).filter(|c| c != "unknown"),
        backend: compute.backend.clone(),
        adapter: compute.adapter.clone(),
        backend_reason: compute.reason.clone(),
        machine: Machine::detect(),
        classes: data.classes.clone(),
        counts: SplitCounts {
            train: count(&data.train),
            valid: count(&data.valid),
            test: count(&data.test),
        },
        vocab_size: vocab.len(),
        teacher_logit_rows: logits.len(),
        recipe_toml: loaded.resolved_toml.clone(),
        run_dir: run_dir.path.display().to_string(),
        models,
    };
    run_dir.write_json("results.json", &results)?;

    let report_dir = r.report.dir.join(&r.name);
    let report_files = report::write_all(&results, &report_dir)
        .with_context(|| format!("writing the report to {}", report_dir.display()))?;
    Ok(RunOutput {
        results,
        run_dir: run_dir.path.clone(),
        report_dir,
        report_files,
    })
}
