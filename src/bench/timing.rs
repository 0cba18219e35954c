//! The timing: a workload's model and batch built on the device, its iterations run (warm-up
//! apart) as the [`Policy`] says, and the median taken.

use super::{Model, Task, Workload, WorkloadResult, CLASSES, SEED};
use crate::backend::Compute;
use crate::data::batch::{Batcher, Encoded, InputKind, TokenBatch};
use crate::distill::DistillLoss;
use crate::eval::timing::run_batch;
use crate::models::{Classifier, TeacherConfig};
use crate::recipe::Recipe;
use crate::train;
use anyhow::{anyhow, Result};
use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// How many iterations are timed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// Warm-up iterations: at least `warmup_min`; more (up to `warmup_max`) until one is within
    /// 10% of the one before.
    pub warmup_min: usize,
    pub warmup_max: usize,
    /// Timed iterations: at least `min_iters`, then more until `budget_s` seconds of timed
    /// iterations or `max_iters`.
    pub min_iters: usize,
    pub max_iters: usize,
    pub budget_s: f64,
}

impl Policy {
    pub fn new(gpu: bool, quick: bool) -> Self {
        match (quick, gpu) {
            (true, _) => Self {
                warmup_min: 1,
                warmup_max: 1,
                min_iters: 1,
                max_iters: 1,
                budget_s: 0.0,
            },
            (false, false) => Self {
                warmup_min: 1,
                warmup_max: 1,
                min_iters: 3,
                max_iters: 20,
                budget_s: 15.0,
            },
            (false, true) => Self {
                warmup_min: 3,
                warmup_max: 15,
                min_iters: 10,
                max_iters: 50,
                budget_s: 15.0,
            },
        }
    }
}

/// Counts the kernels cubecl issues while installed (every launch of the process, on any
/// thread): fused kernels count once, as they reach the device.
#[derive(Default)]
struct LaunchCount(std::sync::atomic::AtomicUsize);

impl burn::cubecl::logging::LaunchObserver for LaunchCount {
    fn launched(&self, _kernel: &'static str) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Kernel launches of one more call of `f` (after its warm-up and timed calls, so compilation
/// and autotuning are done); `f` ends by waiting for the device, so every launch it caused has
/// been issued when it returns. The CPU backend launches no kernels: `None` there.
pub fn launches(counted: bool, f: &mut impl FnMut() -> Result<()>) -> Result<Option<usize>> {
    if !counted {
        return Ok(None);
    }
    let count = std::sync::Arc::new(LaunchCount::default());
    let watching = burn::cubecl::logging::LaunchObservation::new(count.clone());
    let done = f();
    drop(watching);
    done?;
    Ok(Some(count.0.load(std::sync::atomic::Ordering::Relaxed)))
}

/// Milliseconds of one call of `f`.
fn time_ms(f: &mut impl FnMut() -> Result<()>) -> Result<f64> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

/// Warm-up and timed iterations of `f`, each in milliseconds.
pub fn measure(policy: &Policy, mut f: impl FnMut() -> Result<()>) -> Result<(Vec<f64>, Vec<f64>)> {
    let mut warmup: Vec<f64> = Vec::new();
    while warmup.len() < policy.warmup_max {
        warmup.push(time_ms(&mut f)?);
        let n = warmup.len();
        if n >= policy.warmup_min.max(2)
            && (warmup[n - 1] - warmup[n - 2]).abs() <= 0.1 * warmup[n - 2]
        {
            break;
        }
    }
    let budget = Duration::from_secs_f64(policy.budget_s);
    let start = Instant::now();
    let mut timed: Vec<f64> = Vec::new();
    while timed.len() < policy.max_iters.max(1) {
        timed.push(time_ms(&mut f)?);
        if timed.len() >= policy.min_iters && start.elapsed() >= budget {
            break;
        }
    }
    Ok((warmup, timed))
}

pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Token batch of `w` on `device`: seeded random ids in `1..vocab`, full-length rows.
fn batch(w: &Workload, vocab: usize, kind: InputKind, device: &Device) -> TokenBatch {
    let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(SEED);
    let items: Vec<Encoded> = (0..w.batch)
        .map(|i| Encoded {
            id: i as u32,
            tokens: (0..w.tokens)
                .map(|_| rng.random_range(1..vocab as u32))
                .collect(),
            label: rng.random_range(0..CLASSES),
        })
        .collect();
    let refs: Vec<&Encoded> = items.iter().collect();
    Batcher::new(kind, w.tokens, 0).batch(&refs, device)
}

fn sync(device: &Device) -> Result<()> {
    device
        .sync()
        .map_err(|e| anyhow!("the device failed: {e:?}"))
}

/// Time one workload on `compute`.
pub fn run_workload(
    w: &Workload,
    recipe: &Recipe,
    compute: &Compute,
    policy: &Policy,
) -> Result<WorkloadResult> {
    let device = match w.task {
        Task::Train => compute.device.clone().autodiff(),
        Task::Infer => compute.device.clone(),
    };
    device.seed(SEED);
    // Kernel launches are cubecl's: counted on wgpu, not on the CPU backend.
    let counted = compute.backend.starts_with("wgpu");
    let (params, (warmup, timed), launches) = match (&w.model, w.task) {
        (Model::Teacher(config, freeze), Task::Train) => {
            let b = batch(w, vocab_of(&w.model), InputKind::Teacher, &device);
            let settings = train::teacher::fit_settings("bench", recipe.teacher.optim(), SEED);
            let mut optim = train::optimizer(&settings);
            let (start, _) = config.init_classifier(&device).freeze(*freeze)?;
            let mut model = Some(start);
            let params = model.as_ref().map_or(0, |m| m.num_params());
            let mut step = || {
                let m = model.take().expect("the model is put back after each step");
                let loss = train::teacher::fine_tune_loss(&m, &b);
                model = Some(train::optimizer_step(m, &mut optim, loss, settings.lr));
                sync(&device)
            };
            let times = measure(policy, &mut step)?;
            (params, times, launches(counted, &mut step)?)
        }
        (Model::Student(config), Task::Train) => {
            let b = batch(w, vocab_of(&w.model), InputKind::Student, &device);
            let settings = train::student::fit_settings("bench", recipe.student.optim(), SEED);
            let loss = DistillLoss::new(&recipe.distill, recipe.soft_targets());
            let teacher_logits =
                Tensor::<2>::random([w.batch, CLASSES], Distribution::Normal(0.0, 1.0), &device);
            let mut optim = train::optimizer(&settings);
            let mut model = Some(config.init(&device));
            let params = model.as_ref().map_or(0, |m| m.num_params());
            let mut step = || {
                let m = model.take().expect("the model is put back after each step");
                let value =
                    loss.forward(m.logits(&b), b.labels.clone(), Some(teacher_logits.clone()));
                model = Some(train::optimizer_step(m, &mut optim, value, settings.lr));
                sync(&device)
            };
            let times = measure(policy, &mut step)?;
            (params, times, launches(counted, &mut step)?)
        }
        (Model::Teacher(config, _), Task::Infer) => {
            let b = batch(w, vocab_of(&w.model), InputKind::Teacher, &device);
            let model = config.init_classifier(&device).valid();
            let mut step = || run_batch(&model, &b);
            let times = measure(policy, &mut step)?;
            (model.num_params(), times, launches(counted, &mut step)?)
        }
        (Model::Student(config), Task::Infer) => {
            let b = batch(w, vocab_of(&w.model), InputKind::Student, &device);
            let model = config.init(&device).valid();
            let mut step = || run_batch(&model, &b);
            let times = measure(policy, &mut step)?;
            (model.num_params(), times, launches(counted, &mut step)?)
        }
    };
    let median_ms = median(&timed);
    Ok(WorkloadResult {
        name: w.name.clone(),
        model: w.model_name.clone(),
        task: w.task,
        batch: w.batch,
        tokens: w.tokens,
        shape: w.shape(),
        params,
        step: w.step(recipe),
        warmup_ms: warmup,
        iterations_ms: timed,
        median_ms,
        samples_per_s: w.batch as f64 / (median_ms / 1e3),
        launches,
    })
}

fn vocab_of(model: &Model) -> usize {
    match model {
        Model::Teacher(t, _) => match t.as_ref() {
            TeacherConfig::Bert(c) => c.vocab_size,
            TeacherConfig::Xlnet(c) => c.vocab_size,
        },
        Model::Student(c) => c.vocab_size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn warm_up_stops_once_steady_and_timing_takes_the_minimum() {
        let policy = Policy {
            warmup_min: 2,
            warmup_max: 10,
            min_iters: 4,
            max_iters: 50,
            budget_s: 0.0,
        };
        let mut calls = 0;
        let (warm, timed) = measure(&policy, || {
            calls += 1;
            Ok(())
        })
        .unwrap();
        assert!(warm.len() >= 2 && warm.len() <= 10);
        assert_eq!(timed.len(), 4);
        assert_eq!(calls, warm.len() + 4);
    }
}
