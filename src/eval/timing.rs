//! Inference time over the test split. Batches are padded and placed on the device first (not
//! timed); one untimed pass warms up (kernel compilation and autotuning on a GPU); then each of
//! `repeats` passes is timed batch by batch, reading the predictions back so the device has
//! finished. The fastest pass is reported.

use crate::data::batch::{eval_order, Batcher, Encoded, TokenBatch};
use crate::models::Classifier;
use anyhow::{anyhow, Result};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use std::time::Instant;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferenceTiming {
    pub batch_size: usize,
    pub samples: usize,
    pub batches: usize,
    pub repeats: usize,
    /// Wall time of the fastest pass over all batches, seconds.
    pub seconds: f64,
    pub samples_per_sec: f64,
    /// Mean wall time of one batch in the fastest pass, milliseconds.
    pub batch_latency_ms: f64,
    /// Slowest batch of the fastest pass, milliseconds.
    pub max_batch_latency_ms: f64,
}

/// One timed inference batch: the logits, their argmax, read back to the host (so the device
/// has finished).
pub fn run_batch<M: Classifier>(model: &M, batch: &TokenBatch) -> Result<()> {
    model
        .logits(batch)
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .map_err(|e| anyhow!("cannot read predictions: {e:?}"))?;
    Ok(())
}

pub fn time_inference<M: Classifier>(
    model: &M,
    batcher: &Batcher,
    items: &[Encoded],
    batch_size: usize,
    repeats: usize,
    device: &Device,
) -> Result<InferenceTiming> {
    let lengths: Vec<usize> = items.iter().map(|e| e.tokens.len()).collect();
    let batches: Vec<TokenBatch> = eval_order(&lengths, batch_size)
        .iter()
        .map(|idx| {
            let b: Vec<&Encoded> = idx.iter().map(|&i| &items[i]).collect();
            batcher.batch(&b, device)
        })
        .collect();
    timed_passes(&batches, batch_size, items.len(), repeats, |b| {
        run_batch(model, b)
    })
}

/// One untimed pass over `batches` (warm-up), then the fastest of `repeats` timed passes, batch
/// by batch.
fn timed_passes<T, E>(
    batches: &[T],
    batch_size: usize,
    samples: usize,
    repeats: usize,
    run: impl Fn(&T) -> Result<(), E>,
) -> Result<InferenceTiming, E> {
    for b in batches {
        run(b)?;
    }
    let mut best: Option<(f64, Vec<f64>)> = None;
    for _ in 0..repeats.max(1) {
        let mut latencies = Vec::with_capacity(batches.len());
        let start = Instant::now();
        for b in batches {
            let t0 = Instant::now();
            run(b)?;
            latencies.push(t0.elapsed().as_secs_f64());
        }
        let total = start.elapsed().as_secs_f64();
        if best.as_ref().is_none_or(|(t, _)| total < *t) {
            best = Some((total, latencies));
        }
    }
    let (seconds, latencies) = best.expect("at least one pass");
    let n = latencies.len().max(1) as f64;
    Ok(InferenceTiming {
        batch_size,
        samples,
        batches: batches.len(),
        repeats: repeats.max(1),
        seconds,
        samples_per_sec: samples as f64 / seconds.max(1e-12),
        batch_latency_ms: latencies.iter().sum::<f64>() / n * 1e3,
        max_batch_latency_ms: latencies.iter().cloned().fold(0.0, f64::max) * 1e3,
    })
}

/// Inference time of a model that reads raw text (the linear baseline: n-gram extraction,
/// TF-IDF and the class scores all timed), over `texts` in batches of `batch_size` in test
/// order; one untimed warm-up pass, then the fastest of `repeats` passes, as above.
pub fn time_text_inference<T>(
    predict: impl Fn(&[&str]) -> Vec<T>,
    texts: &[&str],
    batch_size: usize,
    repeats: usize,
) -> InferenceTiming {
    let batches: Vec<&[&str]> = texts.chunks(batch_size.max(1)).collect();
    let run = |b: &&[&str]| -> Result<(), std::convert::Infallible> {
        std::hint::black_box(predict(b));
        Ok(())
    };
    let Ok(timing) = timed_passes(&batches, batch_size, texts.len(), repeats, run);
    timing
}
