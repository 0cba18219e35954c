//! One run, stage by stage: data → teacher (pre-training, fine-tuning) → teacher logits on the
//! transfer set → students → evaluation → store → report. Every stage is content-addressed in the
//! store (`store::stage`): a stage whose settings and inputs are unchanged is reused, so a sweep
//! over `distill.*` trains the teacher once, and a run that was interrupted resumes where it
//! stopped when the same command runs again.

mod stages;
pub mod sweep;

use crate::backend::Compute;
use crate::data::batch::{Batcher, Encoded};
use crate::data::vectors::{embedding_matrix, wanted_tokens, Coverage, Vectors};
use crate::data::{Dataset, StudentVocab, TextEncoder};
use crate::eval::{predict, time_inference, ClassificationReport};
use crate::models::{bert, Classifier};
use crate::recipe::{LoadedRecipe, Recipe};
use crate::report;
use crate::store::machine::Machine;
use crate::store::results::SplitCounts;
use crate::store::stage::{Stages, StoreLock};
use crate::store::{timestamp, ModelResult, RunDir, RunResults};
use crate::train::pretrain::{pretrain, Masker, PretrainReport};
use crate::train::progress::note;
use crate::train::teacher::TeacherSetup;
use crate::train::FitInfo;
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
#[allow(clippy::too_many_arguments)]
fn evaluate<M: Classifier>(
    key: &str,
    label: &str,
    model: &M,
    fit: &FitInfo,
    trainable_params: usize,
    batcher: &Batcher,
    test: &[Encoded],
    classes: usize,
    recipe: &Recipe,
    compute: &Compute,
) -> Result<ModelResult> {
    let model = model.valid();
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
        predictions: predicted,
        key: key.into(),
        label: label.into(),
        params,
        trainable_params,
        report,
        timing,
        train_seconds: fit.seconds,
        best_epoch: fit.best_epoch,
        best_valid_accuracy: fit.best_valid_accuracy,
        history: fit.history.clone(),
    })
}

/// The further pre-training corpus: the training file's texts (all classes, validation split
/// excluded) and the recipe's extra files, one sentence per line; a seeded share is held out.
fn further_pretrain(
    r: &Recipe,
    setup: &TeacherSetup,
    data: &Dataset,
    mlm: bert::mlm::BertMaskedLm,
    device: &burn::tensor::Device,
) -> Result<(bert::mlm::BertMaskedLm, PretrainReport)> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let p = &r.teacher.pretrain;
    let mut texts: Vec<String> = data.unlabeled.clone();
    for f in &p.extra {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("teacher.pretrain.extra: cannot read {}", f.display()))?;
        texts.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from),
        );
    }
    let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(r.runtime.seed ^ 0x00ff_00ff);
    texts.shuffle(&mut rng);
    let jieba = p.whole_word.then(jieba_rs::Jieba::new);
    let sequences = texts
        .iter()
        .map(|t| {
            setup
                .tokenizer
                .mlm_sequence(t, r.data.max_len, jieba.as_ref())
        })
        .collect::<Result<Vec<_>>>()?;
    let n_held =
        ((sequences.len() as f64 * p.holdout).round() as usize).clamp(1, sequences.len() / 2);
    let (heldout, corpus) = sequences.split_at(n_held);
    note(&format!(
        "pretrain: {} sequences ({} held out), {} masking",
        corpus.len(),
        heldout.len(),
        if p.whole_word { "whole-word" } else { "token" }
    ));
    let masker = Masker {
        mask_prob: p.mask_prob,
        pad_id: setup.tokenizer.pad_id(),
        mask_id: setup.tokenizer.mask_id(),
        vocab_size: setup.tokenizer.vocab_size() as u32,
        special_ids: setup.tokenizer.special_ids(),
    };
    pretrain(mlm, corpus, heldout, &masker, p, r.runtime.seed, device)
}

/// The students' embedding matrix from `student.vectors`, and how much of the vocabulary it
/// covers.
fn student_embeddings(
    r: &Recipe,
    vocab: &StudentVocab,
    train: &[Encoded],
) -> Result<(Option<Vec<f32>>, Option<Coverage>)> {
    let path = &r.student.vectors;
    if path.as_os_str().is_empty() {
        return Ok((None, None));
    }
    let wanted = wanted_tokens(vocab.tokens(), r.student.oov_init);
    let vectors = Vectors::load(path, Some(&wanted))?;
    if vectors.dim != r.student.embedding_dim {
        anyhow::bail!(
            "student.vectors: {} has {}-d vectors but student.embedding_dim = {} (set it to {})",
            path.display(),
            vectors.dim,
            r.student.embedding_dim,
            vectors.dim
        );
    }
    let mut counts = vec![0usize; vocab.len()];
    for e in train {
        for &t in &e.tokens {
            counts[t as usize] += 1;
        }
    }
    let (matrix, coverage) = embedding_matrix(
        vocab.tokens(),
        &counts,
        &vectors,
        r.student.oov_init,
        r.runtime.seed,
    );
    note(&format!(
        "student: vectors for {}, from {}",
        coverage.describe(vocab.unit()),
        path.display()
    ));
    Ok((Some(matrix), Some(coverage)))
}

/// Run one loaded recipe (one trial) on `compute`: a run folder with the resolved recipe and
/// `results.json`, stages reused or computed in the store, and the report.
pub fn run(loaded: &LoadedRecipe, compute: &Compute) -> Result<RunOutput> {
    let r = &loaded.recipe;
    let _lock = StoreLock::acquire(&r.runtime.store)?;
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
    let mut ctx = stages::Context::new(r, compute, stages, run_dir)?;
    let teacher = ctx.teacher(r.teacher.pretrain.enabled())?;
    let baseline = if r.teacher.pretrain.enabled() && r.teacher.pretrain.compare {
        Some(ctx.teacher(false)?)
    } else {
        None
    };
    let logits = ctx.logits(&teacher)?;
    let students = ctx.students(&logits)?;

    // Evaluation on the test split.
    let k = ctx.data.classes.len();
    let distill_label = format!(
        "Distilled student (α={}, {} T={}{})",
        r.distill.alpha,
        match r.distill.soft_loss {
            crate::recipe::SoftLoss::Mse => "MSE",
            crate::recipe::SoftLoss::Kl => "KL",
        },
        r.distill.temperature,
        if r.distill.augment.n_iter > 0 {
            ", augmented"
        } else {
            ""
        }
    );
    let from_checkpoint = ctx.setup.checkpoint.is_some();
    let teacher_label = match (from_checkpoint, r.teacher.pretrain.enabled()) {
        (true, true) => "Teacher (BERT checkpoint + MLM)",
        (true, false) => "Teacher (BERT checkpoint)",
        (false, true) => "Teacher (BERT + MLM)",
        (false, false) => "Teacher (BERT)",
    };
    let mut models = vec![ctx.evaluate_teacher("teacher", teacher_label, &teacher)?];
    if let Some(b) = &baseline {
        let label = if from_checkpoint {
            "Teacher (BERT checkpoint, no MLM)"
        } else {
            "Teacher (BERT, no MLM)"
        };
        models.push(ctx.evaluate_teacher("teacher_base", label, b)?);
    }
    models.push(ctx.evaluate_student("student", "Student alone (BiLSTM)", &students.alone)?);
    models.push(ctx.evaluate_student("distilled", &distill_label, &students.distilled)?);

    let count = |xs: &[crate::data::Example]| {
        (0..k)
            .map(|c| xs.iter().filter(|e| e.label == c).count())
            .collect::<Vec<_>>()
    };
    let data = &ctx.data;
    let mut notes = teacher.notes.clone();
    notes.extend(ctx.notes.iter().cloned());
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
        vocab_size: ctx.vocab.len(),
        teacher_vocab_size: ctx.setup.tokenizer.vocab_size(),
        teacher_logit_rows: logits.logits.len(),
        pretrain: teacher.pretrain.clone(),
        student_tokens: ctx.student_vocab.unit().to_string(),
        vectors_coverage: ctx.coverage,
        transfer_set: students.transfer_size,
        notes,
        recipe_toml: loaded.resolved_toml.clone(),
        run_dir: run_dir.path.display().to_string(),
        stages: ctx.used.clone(),
        models,
        test_texts: data.test.iter().map(|e| e.text.clone()).collect(),
        test_labels: data.test.iter().map(|e| e.label).collect(),
        report_dir: r.report.dir.join(&r.name).display().to_string(),
    };
    run_dir.write_json("results.json", &results)?;
    Ok(results)
}
