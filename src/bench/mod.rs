//! `kdrun bench`: how fast kdrun's own models train and infer on a backend, at fixed shapes, for
//! side-by-side numbers with PyTorch (`bench/pytorch_bench.py` runs the same workloads).
//!
//! Every workload builds kdrun's model types (the teacher seam's BERT, the BiLSTM student) and runs
//! the calls the training loop and the inference timing run: a training iteration is the forward
//! pass, the loss the pipeline trains that model on (teacher: cross-entropy; student: the default
//! recipe's distillation loss, MSE to teacher logits), backward and one step of [`train::optimizer`]
//! (AdamW with the default recipe's weight decay and gradient clipping), then a device sync; an
//! inference iteration is [`run_batch`] on the model in inference mode (logits, argmax, read back).
//!
//! Inputs: token ids drawn uniformly from `1..vocab` by a seeded generator, every row full length
//! (all-ones masks, no padding), random labels and, for the student, random N(0, 1) teacher
//! logits. One batch is put on the device before timing and reused: batching is not timed.
//!
//! Timing: the first iterations (warm-up: allocation; shader compilation and autotuning on a GPU)
//! are timed one by one and reported apart; then iterations are timed one by one until enough are
//! taken ([`Policy`]) and the median is reported.

mod output;
mod timing;

pub use output::{table, BenchReport, WorkloadResult};
pub use timing::{measure, median, run_workload, Policy};

use crate::backend::Compute;
use crate::build_info;
use crate::models::bilstm::{BiLstmHead, BiLstmInput};
use crate::models::{BertConfig, BiLstmConfig, FreezePlan, TeacherConfig};
use crate::recipe::Recipe;
use crate::runtime::machine::Machine;
use crate::train;
use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

/// burn's version, as pinned in Cargo.toml (`tests/bench.rs` checks the pin).
pub const BURN_VERSION: &str = "0.22.1";
/// Classes of every workload's classifier.
pub const CLASSES: usize = 5;
/// Seed of the weights, the token ids and the targets.
pub const SEED: u64 = 0;
/// Vocabulary of the default recipe's workloads: about the TNEWS-5 character vocabulary's size.
pub const DEFAULT_VOCAB: usize = 4000;

/// multilingual-e5-small's vocabulary (XLM-R's SentencePiece pieces and its specials).
pub const E5_VOCAB: usize = 250_037;
/// What every workload feeds its model.
pub const INPUTS: &str = "random token ids (uniform over 1..vocab, seed 0), every row full length \
                          (all-ones attention masks, no padding); random labels; for the student \
                          random N(0,1) teacher logits";

/// A model a workload runs.
#[derive(Debug, Clone)]
pub enum Model {
    /// A transformer teacher, and what its training leaves frozen (the embeddings of a
    /// pretrained teacher).
    Teacher(Box<TeacherConfig>, FreezePlan),
    Student(BiLstmConfig),
}

/// What one iteration does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Forward, loss, backward, optimizer step.
    Train,
    /// Forward in inference mode, predictions read back.
    Infer,
}

/// One thing to time.
#[derive(Debug, Clone)]
pub struct Workload {
    /// `family/task`, e.g. `bert-base/train`; the PyTorch twin uses the same names.
    pub name: String,
    /// The model in words.
    pub model_name: String,
    pub model: Model,
    pub task: Task,
    pub batch: usize,
    /// Tokens per row.
    pub tokens: usize,
}

impl Workload {
    pub fn shape(&self) -> String {
        format!("{} × {}", self.batch, self.tokens)
    }

    /// What one iteration runs, in words.
    fn step(&self, recipe: &Recipe) -> String {
        match (&self.model, self.task) {
            (Model::Teacher(..), Task::Train) => {
                let s = train::teacher::fit_settings("bench", recipe.teacher.optim(), SEED);
                format!(
                    "forward (dropout {}) + cross-entropy + backward + AdamW (weight decay {}, grad-norm clip {} per tensor)",
                    recipe.teacher.dropout,
                    s.weight_decay,
                    s.grad_clip.unwrap_or(0.0)
                )
            }
            (Model::Student(_), Task::Train) => {
                let s = train::student::fit_settings("bench", recipe.student.optim(), SEED);
                format!(
                    "forward (dropout {}) + MSE to teacher logits + backward + AdamW (weight decay {}, grad-norm clip {} per tensor)",
                    recipe.student.dropout,
                    s.weight_decay,
                    s.grad_clip.unwrap_or(0.0)
                )
            }
            (_, Task::Infer) => "forward in inference mode, argmax read back".into(),
        }
    }
}

fn labels() -> Vec<String> {
    (0..CLASSES).map(|i| format!("class{i}")).collect()
}

/// BERT of the given sizes (vocab 21128 as bert-base-chinese, 512 positions, dropout 0.1).
fn bert(hidden: usize, layers: usize, heads: usize, ffn: usize) -> TeacherConfig {
    bert_vocab(21128, hidden, layers, heads, ffn)
}

/// BERT of the given sizes over `vocab` tokens (512 positions, dropout 0.1).
fn bert_vocab(
    vocab: usize,
    hidden: usize,
    layers: usize,
    heads: usize,
    ffn: usize,
) -> TeacherConfig {
    TeacherConfig::Bert(BertConfig::new(
        vocab,
        hidden,
        layers,
        heads,
        ffn,
        512,
        0.1,
        &labels(),
    ))
}

/// The default recipe's teacher over a [`DEFAULT_VOCAB`]-character vocabulary, as the pipeline
/// builds it (`recipes/tnews.toml` states the same sizes; `tests/bench.rs` checks); a recipe
/// whose teacher is not a transformer (linear, BiLSTM) gets a BERT of its `[teacher]` sizes.
pub fn default_teacher(recipe: &Recipe) -> TeacherConfig {
    let mut r = recipe.clone();
    if !r.teacher.arch.is_transformer() {
        r.teacher.arch = crate::recipe::TeacherArch::Bert;
    }
    train::teacher::scratch_config(&r.teacher, r.data.max_len, DEFAULT_VOCAB, &labels())
        .expect("a BERT or XLNet teacher always has a scratch configuration")
}

/// The default recipe's student over a [`DEFAULT_VOCAB`]-character vocabulary.
pub fn default_student(recipe: &Recipe) -> BiLstmConfig {
    train::student::bilstm_config(&recipe.student, DEFAULT_VOCAB, CLASSES)
}

/// The workloads, in order. Inference batches are larger on a GPU (`gpu`); `quick` cuts every
/// batch to at most 8 rows (a smoke test: its numbers describe nothing).
pub fn workloads(recipe: &Recipe, gpu: bool, quick: bool) -> Vec<Workload> {
    let (bert_infer, lstm_infer) = if gpu { (512, 1024) } else { (256, 256) };
    // Tang et al.'s student at the PyTorch reference's sizes: 300-d embedding over 50,000 tokens,
    // 150 hidden each way, ReLU 200.
    let tang = BiLstmConfig::new(
        50_000,
        CLASSES,
        300,
        150,
        BiLstmHead::Tang,
        200,
        BiLstmInput::Sequence,
    )
    .with_dropout(recipe.student.dropout);
    let t = &recipe.teacher;
    let s = &recipe.student;
    let families: Vec<(&str, String, Model, usize, usize, usize)> = vec![
        (
            "bert-base",
            "BERT-base: 12 layers, 768 hidden, 12 heads, FFN 3072, vocab 21128".into(),
            Model::Teacher(Box::new(bert(768, 12, 12, 3072)), FreezePlan::None),
            32,
            64,
            bert_infer,
        ),
        (
            "bert-small",
            "BERT-small: 4 layers, 256 hidden, 4 heads, FFN 1024, vocab 21128".into(),
            Model::Teacher(Box::new(bert(256, 4, 4, 1024)), FreezePlan::None),
            32,
            64,
            bert_infer,
        ),
        (
            "e5-small",
            "multilingual-e5-small's shape: BERT 12 layers, 384 hidden, 12 heads, FFN 1536, vocab 250037, embeddings frozen".into(),
            Model::Teacher(
                Box::new(bert_vocab(E5_VOCAB, 384, 12, 12, 1536)),
                FreezePlan::Embeddings,
            ),
            32,
            32,
            bert_infer,
        ),
        (
            "bilstm-ref",
            "BiLSTM (Tang): 300-d embedding, vocab 50000, 150 hidden ×2, ReLU 200".into(),
            Model::Student(tang),
            32,
            64,
            lstm_infer,
        ),
        (
            "default-bert",
            format!(
                "default recipe's BERT: {} layers, {} hidden, {} heads, FFN {}, vocab {DEFAULT_VOCAB}",
                t.layers,
                t.hidden,
                t.heads,
                t.intermediate()
            ),
            Model::Teacher(Box::new(default_teacher(recipe)), FreezePlan::None),
            recipe.data.max_len,
            t.batch_size,
            recipe.report.timing_batch,
        ),
        (
            "default-bilstm",
            format!(
                "default recipe's BiLSTM: {}-d embedding, vocab {DEFAULT_VOCAB}, {} hidden ×2, ReLU {}",
                s.embedding_dim, s.hidden, s.fc_hidden
            ),
            Model::Student(default_student(recipe)),
            recipe.data.max_len,
            s.batch_size,
            recipe.report.timing_batch,
        ),
    ];
    let cut = |b: usize| if quick { b.min(8) } else { b };
    families
        .into_iter()
        .flat_map(|(family, model_name, model, tokens, train_b, infer_b)| {
            [(Task::Train, train_b), (Task::Infer, infer_b)].map(|(task, batch)| Workload {
                name: format!(
                    "{family}/{}",
                    match task {
                        Task::Train => "train",
                        Task::Infer => "infer",
                    }
                ),
                model_name: model_name.clone(),
                model: model.clone(),
                task,
                batch: cut(batch),
                tokens,
            })
        })
        .collect()
}

/// CPU threads the CPU backend may use.
pub fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
}

/// Options of `kdrun bench`.
#[derive(Debug, Clone, Default)]
pub struct BenchOptions {
    pub quick: bool,
    /// Run only workloads whose name contains one of these (all if empty).
    pub only: Vec<String>,
}

/// Run every workload (printing progress to stderr) and describe the run.
pub fn run(compute: &Compute, options: &BenchOptions) -> Result<BenchReport> {
    let recipe = Recipe::default();
    let policy = Policy::new(compute.is_gpu, options.quick);
    let chosen: Vec<Workload> = workloads(&recipe, compute.is_gpu, options.quick)
        .into_iter()
        .filter(|w| options.only.is_empty() || options.only.iter().any(|o| w.name.contains(o)))
        .collect();
    if chosen.is_empty() {
        return Err(anyhow!(
            "no workload matches --only {}",
            options.only.join(", ")
        ));
    }
    let mut results = Vec::with_capacity(chosen.len());
    for (i, w) in chosen.iter().enumerate() {
        eprintln!(
            "bench [{}/{}] {} ({}) …",
            i + 1,
            chosen.len(),
            w.name,
            w.shape()
        );
        let r = run_workload(w, &recipe, compute, &policy)?;
        eprintln!(
            "  warm-up {} ms; median {:.1} ms of {} iterations, {:.1} samples/s",
            r.warmup_ms
                .iter()
                .map(|t| format!("{t:.0}"))
                .collect::<Vec<_>>()
                .join(", "),
            r.median_ms,
            r.iterations_ms.len(),
            r.samples_per_s
        );
        results.push(r);
    }
    Ok(BenchReport {
        tool: "kdrun".into(),
        version: build_info::VERSION.into(),
        commit: build_info::git_commit().map(String::from),
        framework: format!("burn {BURN_VERSION}"),
        date: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        machine: Machine::detect(),
        backend: compute.backend.clone(),
        adapter: compute.adapter.clone(),
        threads: threads(),
        quick: options.quick,
        inputs: INPUTS.into(),
        policy,
        workloads: results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_a_training_and_an_inference_workload() {
        let r = Recipe::default();
        let cpu = workloads(&r, false, false);
        assert_eq!(cpu.len(), 12);
        let find = |ws: &[Workload], n: &str| ws.iter().find(|w| w.name == n).unwrap().shape();
        assert_eq!(find(&cpu, "bert-base/train"), "64 × 32");
        assert_eq!(find(&cpu, "bert-base/infer"), "256 × 32");
        assert_eq!(find(&cpu, "bilstm-ref/infer"), "256 × 32");
        assert_eq!(find(&cpu, "default-bert/train"), "64 × 48");
        assert_eq!(find(&cpu, "e5-small/train"), "32 × 32");
        // Only the pretrained teacher's shape trains with its embeddings frozen.
        let frozen: Vec<&str> = cpu
            .iter()
            .filter(|w| matches!(w.model, Model::Teacher(_, FreezePlan::Embeddings)))
            .map(|w| w.name.as_str())
            .collect();
        assert_eq!(frozen, ["e5-small/train", "e5-small/infer"]);
        let gpu = workloads(&r, true, false);
        assert_eq!(find(&gpu, "bert-base/infer"), "512 × 32");
        assert_eq!(find(&gpu, "bilstm-ref/infer"), "1024 × 32");
        assert!(workloads(&r, false, true).iter().all(|w| w.batch <= 8));
    }
}
