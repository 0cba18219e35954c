//! The transfer set of Tang et al. 2019 (§3.2): synthetic sentences made from the training
//! sentences and labelled by the teacher. Per word (jieba-rs words with part-of-speech tags), a
//! uniform draw X: X < p_mask → `[MASK]`; else X < p_mask + p_pos → a random word of the same
//! part of speech (from the training text's words); else the word stays. Then, with probability
//! p_ng, only a random n-gram (n uniform in 1..=5) of the sentence is kept. `n_iter` rounds per
//! sentence; sentences equal to an original or to an earlier synthetic one are dropped.

use crate::data::vocab::normalize_chars;
use crate::data::words::jieba;
pub use crate::data::Piece;
use rand::seq::IndexedRandom;
use rand::{Rng, RngExt};
use std::collections::{BTreeMap, HashSet};

/// The probabilities of the three rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AugmentRates {
    pub p_mask: f64,
    pub p_pos: f64,
    pub p_ng: f64,
}

/// A sentence cut into (word, part-of-speech tag) pairs.
pub type Tagged = Vec<(String, String)>;

/// jieba-rs words and tags of normalized `text`.
pub fn tag(text: &str, lowercase: bool) -> Tagged {
    let normalized: String = normalize_chars(text, lowercase).collect();
    jieba()
        .tag(&normalized, true)
        .into_iter()
        .map(|t| (t.word.to_string(), t.tag.to_string()))
        .collect()
}

/// Words of the training text by part of speech (each distinct word once, sorted, so draws are
/// reproducible).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PosPool {
    by_tag: BTreeMap<String, Vec<String>>,
}

impl PosPool {
    pub fn build<'a>(sentences: impl IntoIterator<Item = &'a Tagged>) -> Self {
        let mut sets: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
        for s in sentences {
            for (w, t) in s {
                sets.entry(t.clone()).or_default().insert(w.clone());
            }
        }
        Self {
            by_tag: sets
                .into_iter()
                .map(|(t, ws)| (t, ws.into_iter().collect()))
                .collect(),
        }
    }

    pub fn words(&self, tag: &str) -> &[String] {
        self.by_tag.get(tag).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// One synthetic variant of `sentence`.
pub fn augment_once(
    sentence: &Tagged,
    pool: &PosPool,
    rates: AugmentRates,
    rng: &mut impl Rng,
) -> Vec<Piece> {
    let mut pieces: Vec<Piece> = sentence
        .iter()
        .map(|(w, t)| {
            let x: f64 = rng.random();
            if x < rates.p_mask {
                Piece::Mask
            } else if x < rates.p_mask + rates.p_pos {
                match pool.words(t).choose(rng) {
                    Some(other) => Piece::Word(other.clone()),
                    None => Piece::Word(w.clone()),
                }
            } else {
                Piece::Word(w.clone())
            }
        })
        .collect();
    if rng.random::<f64>() < rates.p_ng {
        let n = rng.random_range(1..=5usize);
        if n < pieces.len() {
            let start = rng.random_range(0..=pieces.len() - n);
            pieces = pieces[start..start + n].to_vec();
        }
    }
    pieces
}

/// A synthetic example: the pieces and the training example it came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Synthetic {
    pub source: u32,
    pub pieces: Vec<Piece>,
}

/// The text of pieces, `[MASK]` written out (for de-duplication and reports).
pub fn render(pieces: &[Piece]) -> String {
    pieces
        .iter()
        .map(|p| match p {
            Piece::Word(w) => w.as_str(),
            Piece::Mask => "[MASK]",
        })
        .collect()
}

/// `n_iter` variants of each (id, sentence), without duplicates of originals or of each other.
pub fn transfer_set(
    sentences: &[(u32, Tagged)],
    pool: &PosPool,
    rates: AugmentRates,
    n_iter: usize,
    rng: &mut impl Rng,
) -> Vec<Synthetic> {
    let mut seen: HashSet<String> = sentences
        .iter()
        .map(|(_, s)| s.iter().map(|(w, _)| w.as_str()).collect())
        .collect();
    let mut out = Vec::new();
    for (id, s) in sentences {
        for _ in 0..n_iter {
            let pieces = augment_once(s, pool, rates, rng);
            if pieces.is_empty() {
                continue;
            }
            if seen.insert(render(&pieces)) {
                out.push(Synthetic {
                    source: *id,
                    pieces,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::ChaCha8Rng;
    use rand::SeedableRng;

    fn sentence(n: usize) -> Tagged {
        (0..n)
            .map(|i| {
                (
                    format!("w{i}"),
                    if i % 2 == 0 { "n" } else { "v" }.to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn each_rule_fires_at_its_rate() {
        let s = sentence(20);
        let pool = PosPool::build([&s]);
        let rates = AugmentRates {
            p_mask: 0.1,
            p_pos: 0.1,
            p_ng: 0.0,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let (mut masked, mut swapped, mut total) = (0usize, 0usize, 0usize);
        for _ in 0..2000 {
            let out = augment_once(&s, &pool, rates, &mut rng);
            assert_eq!(out.len(), 20);
            for (p, (w, t)) in out.iter().zip(&s) {
                total += 1;
                match p {
                    Piece::Mask => masked += 1,
                    Piece::Word(x) if x != w => {
                        swapped += 1;
                        assert!(pool.words(t).contains(x), "a swap keeps the part of speech");
                    }
                    _ => {}
                }
            }
        }
        let f = |n: usize| n as f64 / total as f64;
        assert!((f(masked) - 0.1).abs() < 0.01, "mask {}", f(masked));
        // A swap draws the same word 1 time in 10 (10 words per tag): 0.1 × 0.9 visible.
        assert!((f(swapped) - 0.09).abs() < 0.01, "pos {}", f(swapped));

        let ng = AugmentRates {
            p_mask: 0.0,
            p_pos: 0.0,
            p_ng: 0.25,
        };
        let mut shortened = 0;
        let mut lengths = [0usize; 6];
        for _ in 0..4000 {
            let out = augment_once(&s, &pool, ng, &mut rng);
            if out.len() < 20 {
                shortened += 1;
                lengths[out.len()] += 1;
                // An n-gram is a contiguous run of the sentence.
                let first: usize = match &out[0] {
                    Piece::Word(w) => w[1..].parse().unwrap(),
                    Piece::Mask => unreachable!(),
                };
                for (k, p) in out.iter().enumerate() {
                    assert_eq!(p, &Piece::Word(format!("w{}", first + k)));
                }
            }
        }
        let rate = shortened as f64 / 4000.0;
        assert!((rate - 0.25).abs() < 0.02, "n-gram rate {rate}");
        for (n, count) in lengths.iter().enumerate().skip(1) {
            let share = *count as f64 / shortened as f64;
            assert!((share - 0.2).abs() < 0.04, "n = {n}: {share}");
        }
    }

    #[test]
    fn transfer_sets_are_seeded_and_free_of_duplicates() {
        let data: Vec<(u32, Tagged)> = (0..20).map(|i| (i, sentence(3 + i as usize % 5))).collect();
        let pool = PosPool::build(data.iter().map(|(_, s)| s));
        let rates = AugmentRates {
            p_mask: 0.1,
            p_pos: 0.1,
            p_ng: 0.25,
        };
        let a = transfer_set(&data, &pool, rates, 10, &mut ChaCha8Rng::seed_from_u64(1));
        let b = transfer_set(&data, &pool, rates, 10, &mut ChaCha8Rng::seed_from_u64(1));
        assert_eq!(a, b);
        let c = transfer_set(&data, &pool, rates, 10, &mut ChaCha8Rng::seed_from_u64(2));
        assert_ne!(a, c);
        let texts: HashSet<String> = a.iter().map(|s| render(&s.pieces)).collect();
        assert_eq!(texts.len(), a.len(), "no duplicates");
        for (_, s) in &data {
            let original: String = s.iter().map(|(w, _)| w.as_str()).collect();
            assert!(!texts.contains(&original), "no copy of an original");
        }
        assert!(a.len() > 20 && a.len() <= 200);
    }

    #[test]
    fn jieba_tags_chinese_words() {
        let t = tag("我们喜欢篮球", true);
        let words: Vec<&str> = t.iter().map(|(w, _)| w.as_str()).collect();
        assert_eq!(words.concat(), "我们喜欢篮球");
        assert!(t.iter().all(|(_, tag)| !tag.is_empty()));
    }
}
