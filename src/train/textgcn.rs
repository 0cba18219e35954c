//! TextGCN's training: full-batch — every epoch one forward pass over the whole graph, the
//! cross-entropy of the training documents' logits (logits, not softmax outputs: burn's loss
//! takes the log-softmax itself), one Adam step; the validation documents' accuracy after each
//! epoch (dropout off), the best epoch by validation accuracy kept, and training stopped once
//! `patience` epochs in a row brought neither a better validation accuracy nor a lower validation
//! loss ([`EarlyStop`]). (The paper stops on the validation loss. Accuracy alone stopped two of three
//! seeds on TNEWS-5 at epochs 11–12, in the first epochs' plateau where the small Glorot weights
//! of 32,000 nodes keep every logit near 0 and the accuracy flat while the loss already falls.)

use super::{optimizer_step, EpochRecord, Epochs, Fitted};
use crate::distill::DistillLoss;
use crate::models::textgcn::spmm::SparseAdj;
use crate::models::textgcn::TextGcn;
use crate::runtime::interrupt;
use crate::runtime::progress::Progress;
use anyhow::{anyhow, bail, Result};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::AdamConfig;
use burn::tensor::{Device, Int, Tensor, TensorData};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone, PartialEq)]
pub struct GcnSettings {
    pub hidden: usize,
    pub dropout: f64,
    pub lr: f64,
    pub epochs: usize,
    pub patience: usize,
    /// L2 penalty added to every weight's gradient by Adam (0: none).
    pub weight_decay: f64,
    pub seed: u64,
}

/// Labelled document nodes: node ids and their classes.
#[derive(Debug, Clone, Default)]
pub struct Labelled {
    pub nodes: Vec<usize>,
    pub labels: Vec<usize>,
}

fn ints(v: &[usize], device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = v.iter().map(|&x| x as i64).collect();
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

/// Predicted class of each of `nodes` (argmax of their logits) with `model` in inference mode on
/// its (non-autodiff) device.
pub fn predict_nodes(model: &TextGcn, adj: &Arc<SparseAdj>, nodes: &[usize]) -> Result<Vec<usize>> {
    let logits = model.forward(adj);
    let device = logits.device();
    let picked = logits.select(0, ints(nodes, &device)).argmax(1);
    let v: Vec<i64> = picked
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .map_err(|e| anyhow!("cannot read predictions: {e:?}"))?;
    Ok(v.into_iter().map(|p| p as usize).collect())
}

/// The logits of `nodes` (rows in that order, `classes` values each), `model` in inference mode.
pub fn node_logits(
    model: &TextGcn,
    adj: &Arc<SparseAdj>,
    nodes: &[usize],
) -> Result<Vec<Vec<f32>>> {
    let logits = model.forward(adj);
    let device = logits.device();
    let picked = logits.select(0, ints(nodes, &device));
    let [_, k] = picked.dims();
    let v: Vec<f32> = picked
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow!("cannot read logits: {e:?}"))?;
    Ok(v.chunks_exact(k.max(1)).map(<[f32]>::to_vec).collect())
}

/// Cross-entropy and predicted classes of `nodes` (with their `labels`), `model` in inference
/// mode on its (non-autodiff) device.
fn score_nodes(
    model: &TextGcn,
    adj: &Arc<SparseAdj>,
    nodes: &[usize],
    labels: &[usize],
) -> Result<(f64, Vec<usize>)> {
    let logits = model.forward(adj);
    let device = logits.device();
    let picked = logits.select(0, ints(nodes, &device));
    let loss = CrossEntropyLossConfig::new()
        .init(&device)
        .forward(picked.clone(), ints(labels, &device))
        .into_scalar::<f32>() as f64;
    let v: Vec<i64> = picked
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .map_err(|e| anyhow!("cannot read predictions: {e:?}"))?;
    Ok((loss, v.into_iter().map(|p| p as usize).collect()))
}

/// Early stopping: an epoch counts as progress when it brings the best validation accuracy so
/// far or the lowest validation loss so far; `patience` epochs in a row without progress stop
/// training.
#[derive(Debug, Clone)]
pub struct EarlyStop {
    patience: usize,
    best_accuracy: f64,
    best_loss: f64,
    since: usize,
}

impl EarlyStop {
    pub fn new(patience: usize) -> Self {
        Self {
            patience,
            best_accuracy: f64::NEG_INFINITY,
            best_loss: f64::INFINITY,
            since: 0,
        }
    }

    /// Record one epoch: (a new best accuracy, stop now).
    pub fn update(&mut self, accuracy: f64, loss: f64) -> (bool, bool) {
        let better_accuracy = accuracy > self.best_accuracy;
        let lower_loss = loss < self.best_loss;
        if better_accuracy {
            self.best_accuracy = accuracy;
        }
        if lower_loss {
            self.best_loss = loss;
        }
        if better_accuracy || lower_loss {
            self.since = 0;
        } else {
            self.since += 1;
        }
        (better_accuracy, self.since >= self.patience)
    }
}

fn accuracy(predicted: &[usize], truth: &[usize]) -> f64 {
    if truth.is_empty() {
        return 0.0;
    }
    let right = predicted.iter().zip(truth).filter(|(p, t)| p == t).count();
    right as f64 / truth.len() as f64
}

/// Train TextGCN on `adj` (`nodes` nodes) on `device` (an autodiff device): cross-entropy on the
/// training documents, or, with `distill`, that loss with the teacher's logits of the training
/// documents (rows in `train.nodes` order) as soft targets.
pub fn train_textgcn(
    adj: &Arc<SparseAdj>,
    classes: usize,
    train: &Labelled,
    valid: &Labelled,
    device: &Device,
    s: &GcnSettings,
    distill: Option<(DistillLoss, Tensor<2>)>,
) -> Result<Fitted<TextGcn>> {
    let mut epochs = Epochs::start();
    device.seed(s.seed);
    let mut model = TextGcn::new(adj.a.n, s.hidden, classes, s.dropout, device);
    let mut optim = AdamConfig::new()
        .with_weight_decay(
            (s.weight_decay > 0.0).then(|| WeightDecayConfig::new(s.weight_decay as f32)),
        )
        .init();
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let train_nodes = ints(&train.nodes, device);
    let train_labels = ints(&train.labels, device);
    let progress = Progress::new("textgcn", s.epochs, 1);
    let mut early = EarlyStop::new(s.patience);
    for epoch in 0..s.epochs {
        if interrupt::requested() {
            progress.finish();
            return Err(interrupt::Interrupted.into());
        }
        let epoch_start = Instant::now();
        let logits = model.forward(adj).select(0, train_nodes.clone());
        let loss = match &distill {
            Some((kd, teacher)) => kd.forward(logits, train_labels.clone(), Some(teacher.clone())),
            None => loss_fn.forward(logits, train_labels.clone()),
        };
        let value = loss.clone().into_scalar::<f32>() as f64;
        if !value.is_finite() {
            progress.finish();
            bail!(
                "textgcn: loss is {value} at epoch {} — training diverged; lower textgcn.lr",
                epoch + 1
            );
        }
        model = optimizer_step(model, &mut optim, loss, s.lr);
        progress.step(epoch, Some(value));
        let (valid_loss, predicted) =
            score_nodes(&model.valid(), adj, &valid.nodes, &valid.labels)?;
        let valid_accuracy = accuracy(&predicted, &valid.labels);
        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss: value,
            valid_accuracy,
            seconds: epoch_start.elapsed().as_secs_f64(),
        };
        let (improved, stop) = early.update(valid_accuracy, valid_loss);
        progress.epoch(&format!(
            "epoch {}/{}: train loss {:.4}, valid loss {:.4}, valid accuracy {:.4}{} ({:.2} s)",
            record.epoch,
            s.epochs,
            value,
            valid_loss,
            valid_accuracy,
            if improved { " *" } else { "" },
            record.seconds
        ));
        epochs.push(record, &model, improved);
        if stop {
            break;
        }
    }
    progress.finish();
    epochs.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::textgcn::graph::build_from_tokens;

    /// A flat accuracy while the loss falls is progress; neither for `patience` epochs stops.
    #[test]
    fn early_stop_counts_accuracy_or_loss_progress() {
        let mut e = EarlyStop::new(2);
        assert_eq!(e.update(0.5, 1.6), (true, false));
        assert_eq!(e.update(0.5, 1.5), (false, false), "loss fell");
        assert_eq!(e.update(0.4, 1.4), (false, false), "loss fell");
        assert_eq!(
            e.update(0.5, 1.4),
            (false, false),
            "first epoch without progress"
        );
        assert_eq!(
            e.update(0.6, 1.45),
            (true, false),
            "better accuracy resets the count"
        );
        assert_eq!(e.update(0.6, 1.5), (false, false));
        assert_eq!(
            e.update(0.55, 1.41),
            (false, true),
            "two epochs without progress"
        );
    }

    /// Two topics of made-up words; every document names its topic's words. A few documents of
    /// each topic are labelled; the others are told apart through the words they share.
    #[test]
    fn learns_two_topics_from_a_few_labels() {
        let topic = |t: usize, i: usize| -> Vec<String> {
            (0..4).map(|k| format!("t{t}w{}", (i + k) % 6)).collect()
        };
        let docs: Vec<Vec<String>> = (0..40).map(|i| topic(i % 2, i)).collect();
        let g = build_from_tokens(&docs, 1, 20, &[]);
        let adj = SparseAdj::new(g.adj.clone());
        let split = |r: std::ops::Range<usize>| Labelled {
            nodes: r.clone().collect(),
            labels: r.map(|i| i % 2).collect(),
        };
        let settings = GcnSettings {
            hidden: 16,
            dropout: 0.5,
            lr: 0.02,
            epochs: 60,
            patience: 10,
            weight_decay: 0.0,
            seed: 1,
        };
        let fitted = train_textgcn(
            &adj,
            2,
            &split(0..8),
            &split(8..16),
            &Device::flex().autodiff(),
            &settings,
            None,
        )
        .unwrap();
        let test = split(16..40);
        let predicted = predict_nodes(&fitted.model.valid(), &adj, &test.nodes).unwrap();
        assert_eq!(accuracy(&predicted, &test.labels), 1.0, "{predicted:?}");
        assert!(fitted.history.len() <= 60);
        let first = fitted.history[0].train_loss;
        let last = fitted.history.last().unwrap().train_loss;
        assert!(last < first, "loss {first} → {last}");
    }
}
