//! Times the default recipe's BiLSTM student on the real data: one training epoch through
//! `train::fit` (with its validation pass) and inference over the test split in batches of 256
//! sorted by length, each the median of 3 runs, with the process's CPU time per wall second.
//!
//!     cargo run --release --example bench_student -- [recipe] [--set key=value]...
//!
//! Defaults to `recipes/tnews.toml`. `--set student.head=seed` times the other head;
//! `--set runtime.threads=1` one thread; `--only infer` / `--only train` one half.

use anyhow::{anyhow, Result};
use burn::module::Module;
use kdrun::data::batch::{eval_order, Batcher, Encoded, InputKind, TokenBatch};
use kdrun::data::{CharVocab, Dataset, StudentVocab};
use kdrun::distill::DistillLoss;
use kdrun::models::Classifier;
use kdrun::recipe::{load_with_env, parse_set};
use kdrun::train::student::{student_init, train_student};
use std::path::PathBuf;
use std::time::Instant;

/// (user + system CPU seconds of this process, wall clock).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are at 11 and 12 after the ')'.
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| f.get(i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    ticks / 100.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let mut recipe = PathBuf::from("recipes/tnews.toml");
    let mut sets = Vec::new();
    let mut only = String::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--set" => sets.push(
                parse_set(&args.next().ok_or_else(|| anyhow!("--set needs a value"))?)
                    .map_err(|e| anyhow!(e))?,
            ),
            "--only" => only = args.next().unwrap_or_default(),
            _ => recipe = PathBuf::from(a),
        }
    }
    let mut r = load_with_env(&recipe, &sets, false)
        .map_err(|e| anyhow!("{e}"))?
        .recipe;
    kdrun::backend::limit_threads(r.runtime.threads);
    r.student.epochs = 1;
    let compute = kdrun::backend::cpu();
    let device = compute.device.clone();
    let ad = device.clone().autodiff();

    let data = Dataset::load(&r.data)?;
    let vocab = StudentVocab::Chars(CharVocab::build(
        data.train.iter().map(|e| e.text.as_str()),
        r.data.min_count,
        r.data.lowercase,
    ));
    let batcher = Batcher::for_encoder(InputKind::Student, r.data.max_len, &vocab);
    let train = batcher.encode(&vocab, &data.train)?;
    let valid = batcher.encode(&vocab, &data.valid)?;
    let test = batcher.encode(&vocab, &data.test)?;
    let (init, _) = student_init(
        &r.student,
        r.runtime.seed,
        &vocab,
        &train,
        data.classes.len(),
    )?;
    println!(
        "student {:?} head, emb {}, hidden {}, batch {}; {} train / {} valid / {} test; threads {}",
        r.student.head,
        r.student.embedding_dim,
        r.student.hidden,
        r.student.batch_size,
        train.len(),
        valid.len(),
        test.len(),
        r.runtime.threads
    );

    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut model = init.model(&r.student, &device);
    if only != "infer" {
        let mut walls = Vec::new();
        let mut cpus = Vec::new();
        for run in 0..runs {
            let (c0, t0) = (cpu_seconds(), Instant::now());
            let fitted = train_student(
                &r.student,
                &kdrun::train::student::fit_settings("student", r.student.optim(), r.runtime.seed),
                &init,
                &batcher,
                &train,
                &valid,
                &ad,
                DistillLoss::hard_only(),
                None,
            )?;
            let wall = t0.elapsed().as_secs_f64();
            let cpu = cpu_seconds() - c0;
            println!(
                "  epoch {}: {:.2} s wall, {:.2} s CPU ({:.2} cores), valid accuracy {:.4}",
                run + 1,
                wall,
                cpu,
                cpu / wall,
                fitted.best_valid_accuracy
            );
            walls.push(wall);
            cpus.push(cpu / wall);
            model = fitted.model.valid();
        }
        println!(
            "training epoch: median {:.2} s, {:.2} cores",
            median(walls),
            median(cpus)
        );
    }
    if only != "train" {
        let model = model.valid();
        let lengths: Vec<usize> = test.iter().map(|e| e.tokens.len()).collect();
        let batches: Vec<TokenBatch> = eval_order(&lengths, 256)
            .iter()
            .map(|idx| {
                let b: Vec<&Encoded> = idx.iter().map(|&i| &test[i]).collect();
                batcher.batch(&b, &device)
            })
            .collect();
        let pass = |model: &kdrun::models::BiLstmClassifier| -> Result<()> {
            for b in &batches {
                model
                    .logits(b)
                    .argmax(1)
                    .into_data()
                    .convert::<i64>()
                    .try_to_vec::<i64>()
                    .map_err(|e| anyhow!("{e:?}"))?;
            }
            Ok(())
        };
        pass(&model)?; // warm-up
        let mut rates = Vec::new();
        let mut cpus = Vec::new();
        for _ in 0..runs {
            let (c0, t0) = (cpu_seconds(), Instant::now());
            pass(&model)?;
            let wall = t0.elapsed().as_secs_f64();
            let cpu = cpu_seconds() - c0;
            println!(
                "  inference: {:.3} s, {:.0} samples/s, {:.2} cores",
                wall,
                test.len() as f64 / wall,
                cpu / wall
            );
            rates.push(test.len() as f64 / wall);
            cpus.push(cpu / wall);
        }
        println!(
            "inference: median {:.0} samples/s, {:.2} cores",
            median(rates),
            median(cpus)
        );
    }
    Ok(())
}
