//! One run, stage by stage: data → teacher → teacher logits → students → evaluation → store →
//! report. Each stage's output is written to the run folder as soon as it exists.

use crate::backend::Compute;
use crate::data::batch::{Batcher, Encoded, InputKind};
use crate::data::vectors::{embedding_matrix, Coverage, Vectors};
use crate::data::{CharVocab, Dataset, StudentVocab, TextEncoder, WordVocab};
use crate::distill::augment::{self, AugmentRates, PosPool};
use crate::distill::{DistillLoss, TeacherLogits};
use crate::eval::{predict, time_inference, ClassificationReport};
use crate::models::{bert, Classifier};
use crate::recipe::{LoadedRecipe, Recipe, StudentTokens};
use crate::report;
use crate::store::machine::Machine;
use crate::store::results::SplitCounts;
use crate::store::{timestamp, write_atomic, ModelResult, RunDir, RunResults};
use crate::train::pretrain::{pretrain, Masker, PretrainReport};
use crate::train::progress::note;
use crate::train::student::StudentInit;
use crate::train::teacher::TeacherSetup;
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
#[allow(clippy::too_many_arguments)]
fn evaluate<M: Classifier>(
    key: &str,
    label: &str,
    fitted: &Fitted<M>,
    trainable_params: usize,
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
        trainable_params,
        report,
        timing,
        train_seconds: fitted.seconds,
        best_epoch: fitted.best_epoch,
        best_valid_accuracy: fitted.best_valid_accuracy,
        history: fitted.history.clone(),
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
    let wanted: std::collections::HashSet<String> = vocab.tokens()[5..].iter().cloned().collect();
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
        "student: vectors for {} of {} {} types ({:.1} %) and {:.1} % of training tokens, from {}",
        coverage.types_found,
        coverage.types,
        vocab.unit(),
        100.0 * coverage.types_found as f64 / coverage.types.max(1) as f64,
        100.0 * coverage.tokens_found as f64 / coverage.tokens.max(1) as f64,
        path.display()
    ));
    Ok((Some(matrix), Some(coverage)))
}

/// Ids of synthetic examples start here, above every row number of a file.
const SYNTHETIC_IDS: u32 = 1 << 31;

/// Tang et al.'s augmented examples of the training split, labelled by the teacher: their
/// logits are added to `logits` (soft targets), their argmax is their hard label. Also writes
/// `transfer_set.csv` (id, source id, text).
#[allow(clippy::too_many_arguments)]
fn augmented_examples(
    r: &Recipe,
    data: &Dataset,
    setup: &TeacherSetup,
    student_vocab: &StudentVocab,
    teacher_model: &bert::BertClassifier,
    tb: &Batcher,
    device: &burn::tensor::Device,
    logits: &mut TeacherLogits,
    run_dir: &RunDir,
) -> Result<Vec<Encoded>> {
    use rand::SeedableRng;
    let a = &r.distill.augment;
    let tagged: Vec<(u32, augment::Tagged)> = data
        .train
        .iter()
        .map(|e| (e.id, augment::tag(&e.text, r.data.lowercase)))
        .collect();
    let pool = PosPool::build(tagged.iter().map(|(_, t)| t));
    let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(r.runtime.seed ^ 0x0a06_0e17);
    let rates = AugmentRates {
        p_mask: a.p_mask,
        p_pos: a.p_pos,
        p_ng: a.p_ng,
    };
    let synthetic = augment::transfer_set(&tagged, &pool, rates, a.n_iter, &mut rng);
    let teacher_items = synthetic
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Ok(Encoded {
                id: SYNTHETIC_IDS + i as u32,
                tokens: setup.tokenizer.encode_pieces(&s.pieces, r.data.max_len)?,
                label: 0,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let synthetic_logits = TeacherLogits::compute(teacher_model, tb, &teacher_items, 256, device)?;
    let items: Vec<Encoded> = synthetic
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let id = SYNTHETIC_IDS + i as u32;
            Encoded {
                id,
                tokens: student_vocab.encode_pieces(&s.pieces, r.data.max_len),
                label: synthetic_logits.argmax(id).unwrap_or(0),
            }
        })
        .collect();
    logits.extend(synthetic_logits);
    let mut table = polars::df!(
        "id" => items.iter().map(|e| e.id).collect::<Vec<_>>(),
        "source" => synthetic.iter().map(|s| s.source).collect::<Vec<_>>(),
        "teacher_label" => items.iter().map(|e| e.label as u32).collect::<Vec<_>>(),
        "text" => synthetic.iter().map(|s| augment::render(&s.pieces)).collect::<Vec<_>>(),
    )?;
    crate::store::write_with(&run_dir.file("transfer_set.csv"), |tmp| {
        use polars::prelude::{CsvWriter, SerWriter};
        let mut f = std::fs::File::create(tmp)?;
        CsvWriter::new(&mut f).finish(&mut table)?;
        Ok(())
    })?;
    note(&format!(
        "transfer set: {} training examples + {} synthetic ones ({} rounds each, duplicates dropped), labelled by the teacher",
        data.train.len(),
        items.len(),
        a.n_iter
    ));
    Ok(items)
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
    let mut notes: Vec<String> = Vec::new();

    // Teacher: from scratch or a checkpoint, optionally further pre-trained, then fine-tuned.
    let setup = teacher::setup(r, &vocab, &data.class_names())?;
    let tb = Batcher::for_encoder(InputKind::Teacher, r.data.max_len, &setup.tokenizer);
    let (t_train, t_valid, t_test) = (
        tb.encode(&setup.tokenizer, &data.train)?,
        tb.encode(&setup.tokenizer, &data.valid)?,
        tb.encode(&setup.tokenizer, &data.test)?,
    );
    write_atomic(
        &run_dir.file("teacher_config.json"),
        serde_json::to_string_pretty(&setup.config)?.as_bytes(),
    )?;
    let mut say = |stage: &str, ns: Vec<String>| {
        for n in ns {
            note(&format!("{stage}: {n}"));
            notes.push(format!("{stage}: {n}"));
        }
    };
    let mut pretrain_report = None;
    ad.seed(r.runtime.seed);
    let start_model = if r.teacher.pretrain.enabled() {
        let (mlm, ns) = setup.masked_lm(&ad)?;
        say("pretrain", ns);
        let (mlm, report) = further_pretrain(r, &setup, &data, mlm, &ad)?;
        run_dir.write_json("pretrain.json", &report)?;
        pretrain_report = Some(report);
        setup.classifier_over(mlm, &ad)
    } else {
        let (model, ns) = setup.classifier(&ad)?;
        say("teacher", ns);
        model
    };
    let (start_model, teacher_trainable) = teacher::apply_freeze(start_model, r.teacher.freeze)?;
    let fitted_teacher =
        teacher::fine_tune(r, "teacher", start_model, &tb, &t_train, &t_valid, &ad)?;
    save_model(&fitted_teacher.model, &run_dir.file("teacher.bpk"))?;
    if r.teacher.export {
        let dir = run_dir.file("teacher_hf");
        bert::export::save_folder(
            &dir,
            &setup.config,
            "BertForSequenceClassification",
            &setup.tokenizer.vocab(),
            &fitted_teacher.model.valid().hf_tensors()?,
        )?;
        note(&format!(
            "teacher: saved as a Hugging Face folder in {}",
            dir.display()
        ));
    }
    // The same teacher without further pre-training, for comparison.
    let baseline = if r.teacher.pretrain.enabled() && r.teacher.pretrain.compare {
        ad.seed(r.runtime.seed);
        let (model, _) = setup.classifier(&ad)?;
        let (model, trainable) = teacher::apply_freeze(model, r.teacher.freeze)?;
        let fitted = teacher::fine_tune(
            r,
            "teacher (no pretraining)",
            model,
            &tb,
            &t_train,
            &t_valid,
            &ad,
        )?;
        Some((fitted, trainable))
    } else {
        None
    };

    // Teacher logits over the training examples, by id.
    let teacher_model = fitted_teacher.model.valid();
    let logits = TeacherLogits::compute(&teacher_model, &tb, &t_train, 256, &compute.device)?;
    logits.save(&run_dir.file("teacher_logits.csv"))?;

    // Students: characters or words, random or pretrained embeddings; alone, then distilled —
    // same initialization, same batch order.
    let student_vocab = match r.student.tokens {
        StudentTokens::Char => StudentVocab::Chars(vocab.clone()),
        StudentTokens::Word => StudentVocab::Words(WordVocab::build(
            data.train.iter().map(|e| e.text.as_str()),
            r.data.min_count,
            r.student.max_vocab,
            r.data.lowercase,
        )),
    };
    write_atomic(
        &run_dir.file("student_vocab.txt"),
        (student_vocab.tokens().join("\n") + "\n").as_bytes(),
    )?;
    let sb = Batcher::for_encoder(InputKind::Student, r.data.max_len, &student_vocab);
    let (s_train, s_valid, s_test) = (
        sb.encode(&student_vocab, &data.train)?,
        sb.encode(&student_vocab, &data.valid)?,
        sb.encode(&student_vocab, &data.test)?,
    );
    note(&format!(
        "student: {} {} tokens",
        student_vocab.len(),
        student_vocab.unit()
    ));
    let (embeddings, coverage) = student_embeddings(r, &student_vocab, &s_train)?;
    let init = StudentInit {
        vocab_size: student_vocab.len(),
        classes: k,
        embeddings,
        freeze_embeddings: r.student.freeze_vectors,
    };

    // The transfer set: the training examples and, with augmentation, synthetic ones labelled by
    // the teacher.
    let mut logits = logits;
    let mut transfer = s_train.clone();
    if r.distill.augment.n_iter > 0 {
        let synthetic = augmented_examples(
            r,
            &data,
            &setup,
            &student_vocab,
            &teacher_model,
            &tb,
            &compute.device,
            &mut logits,
            &run_dir,
        )?;
        transfer.extend(synthetic);
        logits.save(&run_dir.file("teacher_logits.csv"))?;
    }
    let transfer_size = transfer.len();

    let alone = student::train_student(
        r,
        "student",
        &init,
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
        &init,
        &sb,
        &transfer,
        &s_valid,
        &ad,
        DistillLoss::from_recipe(&r.distill),
        Some(&logits),
    )?;
    save_model(&distilled.model, &run_dir.file("distilled.bpk"))?;

    // Evaluation on the test split.
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
    let teacher_label = match (&setup.checkpoint, r.teacher.pretrain.enabled()) {
        (Some(_), true) => "Teacher (BERT checkpoint + MLM)",
        (Some(_), false) => "Teacher (BERT checkpoint)",
        (None, true) => "Teacher (BERT + MLM)",
        (None, false) => "Teacher (BERT)",
    };
    let mut models = vec![evaluate(
        "teacher",
        teacher_label,
        &fitted_teacher,
        teacher_trainable,
        &tb,
        &t_test,
        k,
        r,
        compute,
    )?];
    if let Some((fitted, trainable)) = &baseline {
        let label = if setup.checkpoint.is_some() {
            "Teacher (BERT checkpoint, no MLM)"
        } else {
            "Teacher (BERT, no MLM)"
        };
        models.push(evaluate(
            "teacher_base",
            label,
            fitted,
            *trainable,
            &tb,
            &t_test,
            k,
            r,
            compute,
        )?);
    }
    let student_params = alone.model.num_params();
    models.push(evaluate(
        "student",
        "Student alone (BiLSTM)",
        &alone,
        student_params,
        &sb,
        &s_test,
        k,
        r,
        compute,
    )?);
    models.push(evaluate(
        "distilled",
        &distill_label,
        &distilled,
        student_params,
        &sb,
        &s_test,
        k,
        r,
        compute,
    )?);

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
        teacher_vocab_size: setup.tokenizer.vocab_size(),
        teacher_logit_rows: logits.len(),
        pretrain: pretrain_report,
        student_tokens: student_vocab.unit().to_string(),
        vectors_coverage: coverage,
        transfer_set: transfer_size,
        notes,
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
