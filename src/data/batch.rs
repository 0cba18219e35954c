//! Token ids → padded batches on a device, and the order batches are drawn in.
//!
//! Batches are padded to the longest example *in the batch*, on the right (on the left for a
//! teacher that reads its last position, as XLNet does); training batches are
//! drawn from length buckets (shuffle, sort pools of 50 batches by length, shuffle the batches),
//! so little time goes into padding while every epoch still sees a fresh order.

use super::Example;
use anyhow::Result;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::Rng;

/// Which model reads the tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// `[CLS] tokens [SEP]`, with segment ids and an attention mask (BERT).
    Teacher,
    /// The bare tokens (BiLSTM).
    Student,
}

/// One tokenized example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub id: u32,
    pub tokens: Vec<u32>,
    pub label: usize,
}

/// A padded batch.
#[derive(Debug, Clone)]
pub struct TokenBatch {
    /// Example ids, in batch row order.
    pub ids: Vec<u32>,
    /// `[batch, time]` token ids, padded with `[PAD]`.
    pub tokens: Tensor<2, Int>,
    /// `[batch, time]`: 1.0 on tokens, 0.0 on padding.
    pub mask: Tensor<2>,
    /// `[batch, time]` segment ids: 0 for a sentence's tokens; in a left-padded teacher batch
    /// (XLNet's `A <sep> <cls>`) 2 on the last position (`<cls>`) and 3 on padding, as
    /// XLNetTokenizer writes them.
    pub segments: Tensor<2, Int>,
    /// Unpadded length of each row.
    pub lengths: Vec<usize>,
    /// `[batch]` class indices.
    pub labels: Tensor<1, Int>,
}

impl TokenBatch {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Anything that turns text into a model's token ids: kdrun's character vocabulary, or a
/// checkpoint's own tokenizer.
pub trait TextEncoder {
    /// Ids of `text` as a `kind` model reads them (the teacher's with `[CLS]` … `[SEP]`), at most
    /// `max_len` of them, never none.
    fn encode_text(&self, text: &str, kind: InputKind, max_len: usize) -> Result<Vec<u32>>;
    /// The padding id.
    fn pad_id(&self) -> u32;
    /// How many ids there are.
    fn vocab_size(&self) -> usize;
    /// Whether the teacher's batches are padded on the left (a model that reads its
    /// classification token last, as XLNet does).
    fn pad_left(&self) -> bool {
        false
    }
}

/// Turns examples into encoded items and items into batches for one kind of model.
#[derive(Debug, Clone)]
pub struct Batcher {
    pub kind: InputKind,
    pub max_len: usize,
    pub pad_id: u32,
    /// Pad on the left (rows end together) rather than on the right.
    pub pad_left: bool,
}

impl Batcher {
    pub fn new(kind: InputKind, max_len: usize, pad_id: u32) -> Self {
        Self {
            kind,
            max_len,
            pad_id,
            pad_left: false,
        }
    }

    /// A batcher padding with `encoder`'s padding id, on the side its teacher reads from.
    pub fn for_encoder(kind: InputKind, max_len: usize, encoder: &dyn TextEncoder) -> Self {
        Self {
            pad_left: kind == InputKind::Teacher && encoder.pad_left(),
            ..Self::new(kind, max_len, encoder.pad_id())
        }
    }

    /// Tokenize and truncate every example.
    pub fn encode(&self, encoder: &dyn TextEncoder, examples: &[Example]) -> Result<Vec<Encoded>> {
        examples
            .iter()
            .map(|e| {
                Ok(Encoded {
                    id: e.id,
                    tokens: encoder.encode_text(&e.text, self.kind, self.max_len)?,
                    label: e.label,
                })
            })
            .collect()
    }

    /// Pad `items` into one batch on `device`.
    pub fn batch(&self, items: &[&Encoded], device: &Device) -> TokenBatch {
        let b = items.len();
        let t = items
            .iter()
            .map(|e| e.tokens.len())
            .max()
            .unwrap_or(1)
            .max(1);
        let mut tokens = vec![self.pad_id as i64; b * t];
        let mut mask = vec![0f32; b * t];
        let mut segments = vec![0i64; b * t];
        for (r, e) in items.iter().enumerate() {
            let start = if self.pad_left { t - e.tokens.len() } else { 0 };
            for (c, &tok) in e.tokens.iter().enumerate() {
                tokens[r * t + start + c] = tok as i64;
                mask[r * t + start + c] = 1.0;
            }
            if self.pad_left {
                segments[r * t..r * t + start].fill(3);
                segments[r * t + t - 1] = 2;
            }
        }
        let labels: Vec<i64> = items.iter().map(|e| e.label as i64).collect();
        TokenBatch {
            ids: items.iter().map(|e| e.id).collect(),
            tokens: Tensor::from_data(TensorData::new(tokens, [b, t]), device),
            mask: Tensor::from_data(TensorData::new(mask, [b, t]), device),
            segments: Tensor::from_data(TensorData::new(segments, [b, t]), device),
            lengths: items.iter().map(|e| e.tokens.len()).collect(),
            labels: Tensor::from_data(TensorData::new(labels, [b]), device),
        }
    }
}

/// Batches of item indices for one training epoch: shuffled, bucketed by length.
pub fn train_order(lengths: &[usize], batch_size: usize, rng: &mut impl Rng) -> Vec<Vec<usize>> {
    let mut idx: Vec<usize> = (0..lengths.len()).collect();
    idx.shuffle(rng);
    let pool = batch_size * 50;
    let mut batches: Vec<Vec<usize>> = Vec::new();
    for chunk in idx.chunks_mut(pool) {
        chunk.sort_by_key(|&i| lengths[i]);
        batches.extend(chunk.chunks(batch_size).map(<[usize]>::to_vec));
    }
    batches.shuffle(rng);
    batches
}

/// Batches of item indices for inference: sorted by length (least padding); callers put
/// predictions back by index.
pub fn eval_order(lengths: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let mut idx: Vec<usize> = (0..lengths.len()).collect();
    idx.sort_by_key(|&i| lengths[i]);
    idx.chunks(batch_size).map(<[usize]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::vocab::{CharVocab, CLS, SEP};
    use rand::SeedableRng;

    #[test]
    fn teacher_inputs_are_wrapped_and_truncated() {
        let vocab = CharVocab::build(["abcdef"], 1, true);
        let ex = [Example {
            id: 7,
            text: "abcdef".into(),
            label: 1,
        }];
        let t = Batcher::for_encoder(InputKind::Teacher, 5, &vocab)
            .encode(&vocab, &ex)
            .unwrap();
        assert_eq!(t[0].tokens.len(), 5);
        assert_eq!(t[0].tokens[0], CLS);
        assert_eq!(t[0].tokens[4], SEP);
        let s = Batcher::for_encoder(InputKind::Student, 5, &vocab)
            .encode(&vocab, &ex)
            .unwrap();
        assert_eq!(s[0].tokens.len(), 5);
        assert_eq!(s[0].id, 7);
    }

    #[test]
    fn batch_pads_and_masks() {
        let device = Device::flex();
        let a = Encoded {
            id: 1,
            tokens: vec![5, 6, 7],
            label: 0,
        };
        let b = Encoded {
            id: 2,
            tokens: vec![8],
            label: 1,
        };
        let batch = Batcher::new(InputKind::Student, 10, 0).batch(&[&a, &b], &device);
        assert_eq!(batch.tokens.dims(), [2, 3]);
        let toks: Vec<i64> = batch
            .tokens
            .to_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .unwrap();
        assert_eq!(toks, vec![5, 6, 7, 8, 0, 0]);
        let mask: Vec<f32> = batch.mask.to_data().try_to_vec::<f32>().unwrap();
        assert_eq!(mask, vec![1., 1., 1., 1., 0., 0.]);
        assert_eq!(batch.lengths, vec![3, 1]);
    }

    #[test]
    fn left_padding_puts_cls_last_in_segment_two() {
        let device = Device::flex();
        let a = Encoded {
            id: 1,
            tokens: vec![5, 6, 3, 2],
            label: 0,
        };
        let b = Encoded {
            id: 2,
            tokens: vec![8, 3, 2],
            label: 1,
        };
        let mut batcher = Batcher::new(InputKind::Teacher, 10, 0);
        batcher.pad_left = true;
        let batch = batcher.batch(&[&a, &b], &device);
        let ints = |t: Tensor<2, Int>| t.to_data().convert::<i64>().try_to_vec::<i64>().unwrap();
        assert_eq!(ints(batch.tokens.clone()), vec![5, 6, 3, 2, 0, 8, 3, 2]);
        assert_eq!(ints(batch.segments.clone()), vec![0, 0, 0, 2, 3, 0, 0, 2]);
        let mask: Vec<f32> = batch.mask.to_data().try_to_vec::<f32>().unwrap();
        assert_eq!(mask, vec![1., 1., 1., 1., 0., 1., 1., 1.]);
        batcher.pad_left = false;
        let right = batcher.batch(&[&a, &b], &device);
        assert_eq!(ints(right.segments), vec![0; 8]);
    }

    #[test]
    fn train_order_covers_every_item_once() {
        let lengths: Vec<usize> = (0..1000).map(|i| i % 37).collect();
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(3);
        let order = train_order(&lengths, 32, &mut rng);
        let mut all: Vec<usize> = order.concat();
        all.sort();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert!(order.iter().all(|b| b.len() <= 32));
    }
}
