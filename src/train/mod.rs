//! Training: one loop for every model (AdamW, linear warm-up/decay, best epoch on validation),
//! and the teacher- and student-specific set-ups around it.

pub mod adamw;
pub mod plm;
pub mod pretrain;
pub mod schedule;
pub mod scores;
pub mod student;
pub mod teacher;
pub mod textgcn;

use crate::data::batch::{train_order, Batcher, Encoded, TokenBatch};
use crate::models::{accuracy, predict, Classifier};
use crate::runtime::interrupt;
use crate::runtime::progress::Progress;
use anyhow::{bail, Result};
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use schedule::LinearSchedule;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// How one model is trained.
#[derive(Debug, Clone, PartialEq)]
pub struct FitSettings {
    /// Stage name for progress lines (`teacher`, `student`, `distilled`).
    pub stage: String,
    pub epochs: usize,
    pub lr: f64,
    pub batch_size: usize,
    pub warmup: f64,
    pub weight_decay: f64,
    /// Clip the global gradient norm to this value.
    pub grad_clip: Option<f64>,
    /// Seed of the batch order.
    pub seed: u64,
}

impl FitSettings {
    /// The settings of a model trained with `optim`, named `stage` in progress lines.
    pub fn new(
        stage: &str,
        optim: crate::recipe::Optim,
        grad_clip: Option<f64>,
        seed: u64,
    ) -> Self {
        Self {
            stage: stage.into(),
            epochs: optim.epochs,
            lr: optim.lr,
            batch_size: optim.batch_size,
            warmup: optim.warmup,
            weight_decay: optim.weight_decay,
            grad_clip,
            seed,
        }
    }
}

/// Watches a training loop's loss as it is read: the last finite value, and an error that stops
/// the trial when the loss is NaN or infinite, naming the step, the learning rate there and the
/// last finite loss.
#[derive(Debug, Clone)]
pub struct LossWatch {
    stage: String,
    /// The recipe key of the learning rate, for the hint.
    lr_key: String,
    /// (step, loss) of the last finite loss read.
    last_finite: Option<(usize, f64)>,
}

impl LossWatch {
    pub fn new(stage: &str, lr_key: &str) -> Self {
        Self {
            stage: stage.to_string(),
            lr_key: lr_key.to_string(),
            last_finite: None,
        }
    }

    /// The loss read at optimizer step `step` (from 1), trained at learning rate `lr`: the
    /// loss if finite, else the error.
    pub fn check(&mut self, step: usize, lr: f64, loss: f64) -> Result<f64> {
        if loss.is_finite() {
            self.last_finite = Some((step, loss));
            return Ok(loss);
        }
        let last = match self.last_finite {
            Some((s, v)) => format!("the last finite loss was {v:.4} at step {s}"),
            None => "no finite loss was read before it".to_string(),
        };
        bail!(
            "{}: loss is {loss} at step {step} (learning rate {lr:.3e}); {last} — training diverged; lower {}",
            self.stage,
            self.lr_key
        )
    }
}

/// One finished epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub valid_accuracy: f64,
    pub seconds: f64,
}

/// What training found, without the model (stored beside a stage's weights).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitInfo {
    pub best_epoch: usize,
    pub best_valid_accuracy: f64,
    pub history: Vec<EpochRecord>,
    pub seconds: f64,
}

/// A trained model: the epoch with the best validation accuracy.
#[derive(Debug, Clone)]
pub struct Fitted<M> {
    pub model: M,
    pub best_epoch: usize,
    pub best_valid_accuracy: f64,
    pub history: Vec<EpochRecord>,
    pub seconds: f64,
}

/// A training loop's epochs so far and the best one's model: what every loop (the classifiers',
/// TextGCN's) turns into its [`Fitted`].
pub struct Epochs<M> {
    best: Option<(M, usize, f64)>,
    history: Vec<EpochRecord>,
    start: Instant,
}

impl<M: Clone> Epochs<M> {
    /// The clock of the whole fit starts now.
    pub fn start() -> Self {
        Self {
            best: None,
            history: Vec::new(),
            start: Instant::now(),
        }
    }

    /// Whether `valid_accuracy` beats every epoch so far (the first epoch always does).
    pub fn improves(&self, valid_accuracy: f64) -> bool {
        self.best
            .as_ref()
            .is_none_or(|(_, _, best)| valid_accuracy > *best)
    }

    /// Record an epoch, keeping `model` as the best one if it `improved`.
    pub fn push(&mut self, record: EpochRecord, model: &M, improved: bool) {
        if improved {
            self.best = Some((model.clone(), record.epoch, record.valid_accuracy));
        }
        self.history.push(record);
    }

    /// The best epoch's model with the history and the time since [`Epochs::start`].
    pub fn finish(self) -> Result<Fitted<M>> {
        let (model, best_epoch, best_valid_accuracy) = self
            .best
            .ok_or_else(|| anyhow::anyhow!("no epoch was trained"))?;
        Ok(Fitted {
            model,
            best_epoch,
            best_valid_accuracy,
            history: self.history,
            seconds: self.start.elapsed().as_secs_f64(),
        })
    }
}

impl<M> Fitted<M> {
    pub fn info(&self) -> FitInfo {
        FitInfo {
            best_epoch: self.best_epoch,
            best_valid_accuracy: self.best_valid_accuracy,
            history: self.history.clone(),
            seconds: self.seconds,
        }
    }
}

/// The optimizer [`fit`] trains with: AdamW (ε 1e-8) with the settings' weight decay and, if set,
/// gradient-norm clipping (each parameter tensor's gradient by its own norm, as burn clips) —
/// burn's `AdamWConfig::…with_grad_clipping(Norm(c))` in arithmetic and saved state, fused into
/// one operation per parameter tensor on the CPU backend ([`adamw::FusedAdamW`]).
pub fn optimizer(settings: &FitSettings) -> ModuleOptimizer {
    adamw::FusedAdamW::new(
        1e-8,
        settings.weight_decay as f32,
        settings.grad_clip.map(|c| c as f32),
    )
    .init()
}

/// One training step after the forward pass: backward from `loss`, the gradients by parameter,
/// one `optim` update at learning rate `lr`. [`fit`] runs it for every batch (and `kdrun bench`
/// times it).
pub fn optimizer_step<M: Module>(
    model: M,
    optim: &mut ModuleOptimizer,
    loss: Tensor<1>,
    lr: f64,
) -> M {
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    optim.step(lr, model, grads)
}

/// Train `model` on `train`, keeping the epoch that scores best on `valid`.
///
/// `device` is the autodiff device the model lives on; validation runs on its inner device in
/// inference mode. `loss` maps a batch (and the model) to the scalar to minimize.
pub fn fit<M, L>(
    mut model: M,
    batcher: &Batcher,
    train: &[Encoded],
    valid: &[Encoded],
    device: &Device,
    settings: &FitSettings,
    loss: L,
) -> Result<Fitted<M>>
where
    M: Classifier,
    L: Fn(&M, &TokenBatch) -> Result<Tensor<1>>,
{
    let mut epochs = Epochs::start();
    let inner = device.clone().inner();
    let lengths: Vec<usize> = train.iter().map(|e| e.tokens.len()).collect();
    let steps_per_epoch = train.len().div_ceil(settings.batch_size);
    let schedule = LinearSchedule::new(
        settings.lr,
        settings.warmup,
        settings.epochs * steps_per_epoch,
    );
    let mut optim = optimizer(settings);
    let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(settings.seed);
    let progress = Progress::new(&settings.stage, settings.epochs, steps_per_epoch);

    let mut step = 0usize;
    let lr_key = if settings.stage.starts_with("teacher") {
        "teacher.lr"
    } else {
        "student.lr"
    };
    let mut watch = LossWatch::new(&settings.stage, lr_key);
    for epoch in 0..settings.epochs {
        let epoch_start = Instant::now();
        let mut loss_sum = 0.0f64;
        let mut loss_count = 0usize;
        for (i, idx) in train_order(&lengths, settings.batch_size, &mut rng)
            .into_iter()
            .enumerate()
        {
            if interrupt::requested() {
                progress.finish();
                return Err(interrupt::Interrupted.into());
            }
            let items: Vec<&Encoded> = idx.iter().map(|&j| &train[j]).collect();
            let batch = batcher.batch(&items, device);
            let value = loss(&model, &batch)?;
            // Reading the loss waits for the device; every 10th step is enough to watch it.
            let read = (i % 10 == 0).then(|| value.clone().into_scalar::<f32>() as f64);
            if let Some(v) = read {
                let v = watch
                    .check(step + 1, schedule.at(step), v)
                    .inspect_err(|_| progress.finish())?;
                loss_sum += v;
                loss_count += 1;
            }
            model = optimizer_step(model, &mut optim, value, schedule.at(step));
            step += 1;
            progress.step(epoch, read);
        }
        let valid_model = model.valid();
        let predicted = predict(
            &valid_model,
            batcher,
            valid,
            settings.batch_size.max(256),
            &inner,
        )?;
        let valid_accuracy = accuracy(valid, &predicted);
        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss: loss_sum / loss_count.max(1) as f64,
            valid_accuracy,
            seconds: epoch_start.elapsed().as_secs_f64(),
        };
        let improved = epochs.improves(valid_accuracy);
        progress.epoch(&format!(
            "epoch {}/{}: train loss {:.4}, valid accuracy {:.4}{} ({:.1} s)",
            record.epoch,
            settings.epochs,
            record.train_loss,
            valid_accuracy,
            if improved { " *" } else { "" },
            record.seconds
        ));
        epochs.push(record, &model, improved);
    }
    progress.finish();
    epochs.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::batch::InputKind;
    use crate::data::{CharVocab, Example};
    use crate::distill::{cross_entropy, DistillLoss};
    use crate::models::bilstm::{BiLstmConfig, BiLstmHead, BiLstmInput};
    use crate::models::BertConfig;

    /// Two classes told apart by their characters, with a shared noise character.
    fn toy(n: usize) -> Vec<Example> {
        (0..n)
            .map(|i| {
                let label = i % 2;
                let pool = if label == 0 {
                    "甲乙丙丁"
                } else {
                    "子丑寅卯"
                };
                let chars: Vec<char> = pool.chars().collect();
                let text: String = (0..3 + i % 4)
                    .map(|j| if j == 1 { '的' } else { chars[(i + j) % 4] })
                    .collect();
                Example {
                    id: i as u32,
                    text,
                    label,
                }
            })
            .collect()
    }

    fn settings(stage: &str, epochs: usize, lr: f64) -> FitSettings {
        FitSettings {
            stage: stage.into(),
            epochs,
            lr,
            batch_size: 8,
            warmup: 0.0,
            weight_decay: 0.0,
            grad_clip: Some(1.0),
            seed: 1,
        }
    }

    #[test]
    fn a_loss_that_is_not_finite_names_step_rate_and_last_finite_loss() {
        let mut watch = LossWatch::new("teacher", "teacher.lr");
        assert_eq!(watch.check(1, 1e-3, 2.5).unwrap(), 2.5);
        assert_eq!(watch.check(11, 1e-3, 1.25).unwrap(), 1.25);
        let err = watch.check(21, 5e3, f64::NAN).unwrap_err().to_string();
        for part in [
            "NaN",
            "step 21",
            "5.000e3",
            "1.2500 at step 11",
            "teacher.lr",
        ] {
            assert!(err.contains(part), "{part}: {err}");
        }
        let err = LossWatch::new("pretrain", "teacher.pretrain.lr")
            .check(1, 1.0, f64::INFINITY)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("inf at step 1") && err.contains("no finite loss"),
            "{err}"
        );
    }

    #[test]
    fn teacher_loss_decreases_and_learns() {
        let data = toy(128);
        let vocab = CharVocab::build(data.iter().map(|e| e.text.as_str()), 1, true);
        let batcher = Batcher::for_encoder(InputKind::Teacher, 16, &vocab);
        let items = batcher.encode(&vocab, &data).unwrap();
        let device = Device::flex().autodiff();
        device.seed(3);
        let config = BertConfig::new(
            vocab.len(),
            16,
            1,
            2,
            32,
            16,
            0.0,
            &["a".into(), "b".into()],
        );
        let fitted = fit(
            config.init_classifier(&device),
            &batcher,
            &items,
            &items,
            &device,
            &settings("teacher", 8, 2e-3),
            |m, b| Ok(cross_entropy(m.logits(b), b.labels.clone())),
        )
        .unwrap();
        let h = &fitted.history;
        assert!(h.last().unwrap().train_loss < h[0].train_loss, "{h:?}");
        assert!(fitted.best_valid_accuracy > 0.9, "{h:?}");
    }

    #[test]
    fn student_loss_decreases_and_learns() {
        let data = toy(128);
        let vocab = CharVocab::build(data.iter().map(|e| e.text.as_str()), 1, true);
        let batcher = Batcher::for_encoder(InputKind::Student, 16, &vocab);
        let items = batcher.encode(&vocab, &data).unwrap();
        let device = Device::flex().autodiff();
        device.seed(3);
        let config = BiLstmConfig::new(
            vocab.len(),
            2,
            8,
            8,
            BiLstmHead::Tang,
            8,
            BiLstmInput::Sequence,
        )
        .with_dropout(0.0);
        let loss = DistillLoss::hard_only();
        let fitted = fit(
            config.init(&device),
            &batcher,
            &items,
            &items,
            &device,
            &settings("student", 8, 1e-2),
            |m, b| Ok(loss.forward(m.logits(b), b.labels.clone(), None)),
        )
        .unwrap();
        let h = &fitted.history;
        assert!(h.last().unwrap().train_loss < h[0].train_loss, "{h:?}");
        assert!(fitted.best_valid_accuracy > 0.9, "{h:?}");
    }
}
