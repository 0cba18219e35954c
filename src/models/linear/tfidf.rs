//! TF-IDF features with scikit-learn's `TfidfVectorizer` semantics: character n-grams over the
//! raw text (`analyzer = "char"`: runs of two or more whitespace characters become one space,
//! then every n-gram of the range, spaces included), optionally jieba-rs word n-grams, terms kept
//! when they occur in at least `min_df` documents, then the `max_features` most frequent ones
//! (total count over the corpus), smooth idf `ln((1 + n) / (1 + df)) + 1`, sublinear tf
//! `1 + ln(tf)` and rows scaled to unit L2 norm.
//!
//! Character and word terms share one vocabulary (word terms carry a `\u{1}` tag so they never
//! meet a character n-gram) and one L2 norm per document.

use crate::data::words;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// What the vectorizer reads from a text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TfidfConfig {
    /// Character n-gram sizes, inclusive; `None`: no character terms.
    pub char_ngrams: Option<(usize, usize)>,
    /// jieba-rs word n-gram sizes, inclusive; `None`: no word terms.
    pub word_ngrams: Option<(usize, usize)>,
    /// Keep a term only if at least this many training documents contain it.
    pub min_df: usize,
    /// Keep at most this many terms, the most frequent over the corpus; 0: all.
    pub max_features: usize,
    /// `1 + ln(tf)` instead of the raw count.
    pub sublinear_tf: bool,
    /// Lower-case the text first (scikit-learn's default).
    pub lowercase: bool,
}

impl Default for TfidfConfig {
    fn default() -> Self {
        Self {
            char_ngrams: Some((1, 2)),
            word_ngrams: None,
            min_df: 1,
            max_features: 0,
            sublinear_tf: true,
            lowercase: true,
        }
    }
}

/// Rows of a sparse matrix (compressed sparse rows); each row's column indices ascend.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Csr {
    pub indptr: Vec<usize>,
    pub indices: Vec<u32>,
    pub values: Vec<f64>,
    pub cols: usize,
}

impl Csr {
    pub fn rows(&self) -> usize {
        self.indptr.len().saturating_sub(1)
    }

    /// Column indices and values of row `i`.
    pub fn row(&self, i: usize) -> (&[u32], &[f64]) {
        let (a, b) = (self.indptr[i], self.indptr[i + 1]);
        (&self.indices[a..b], &self.values[a..b])
    }

    /// The rows `rows`, in that order.
    pub fn select(&self, rows: &[usize]) -> Csr {
        let mut out = Csr {
            indptr: vec![0],
            cols: self.cols,
            ..Csr::default()
        };
        for &i in rows {
            let (idx, val) = self.row(i);
            out.indices.extend_from_slice(idx);
            out.values.extend_from_slice(val);
            out.indptr.push(out.indices.len());
        }
        out
    }
}

/// A fitted vectorizer: the vocabulary (term → column, terms in code-point order as
/// scikit-learn sorts them) and each column's idf.
#[derive(Debug, Clone, PartialEq)]
pub struct Tfidf {
    pub config: TfidfConfig,
    pub terms: Vec<String>,
    pub idf: Vec<f64>,
    index: HashMap<String, u32>,
}

/// Tag in front of a word n-gram, so word and character terms never collide.
const WORD_TAG: char = '\u{1}';

fn collapse_whitespace(text: &str) -> String {
    // scikit-learn: re.sub(r"\s\s+", " ", text) — a single whitespace character stays as it is.
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            if j - i >= 2 {
                out.push(' ');
            } else {
                out.push(chars[i]);
            }
            i = j;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

impl TfidfConfig {
    /// The terms of one document, with repeats (their counts are the term frequencies).
    pub fn analyze(&self, text: &str) -> Vec<String> {
        let text = if self.lowercase {
            text.to_lowercase()
        } else {
            text.to_string()
        };
        let mut out = Vec::new();
        if let Some((lo, hi)) = self.char_ngrams {
            let chars: Vec<char> = collapse_whitespace(&text).chars().collect();
            for n in lo..=hi.min(chars.len()) {
                for w in chars.windows(n) {
                    out.push(w.iter().collect());
                }
            }
        }
        if let Some((lo, hi)) = self.word_ngrams {
            let ws: Vec<String> = words::words(&text, false)
                .into_iter()
                .filter(|w| !w.trim().is_empty())
                .collect();
            for n in lo..=hi.min(ws.len()) {
                for w in ws.windows(n) {
                    let mut term = String::new();
                    term.push(WORD_TAG);
                    term.push_str(&w.join(" "));
                    out.push(term);
                }
            }
        }
        out
    }
}

impl Tfidf {
    /// Learn the vocabulary and idf from `texts` and return them with the texts' matrix.
    pub fn fit_transform(config: &TfidfConfig, texts: &[&str]) -> (Self, Csr) {
        let analyzed: Vec<Vec<String>> = texts.iter().map(|t| config.analyze(t)).collect();
        // term → (documents containing it, total count)
        let mut stats: HashMap<&str, (usize, usize)> = HashMap::new();
        for doc in &analyzed {
            let mut seen: HashMap<&str, ()> = HashMap::new();
            for t in doc {
                let e = stats.entry(t.as_str()).or_insert((0, 0));
                e.1 += 1;
                if seen.insert(t.as_str(), ()).is_none() {
                    e.0 += 1;
                }
            }
        }
        let mut kept: Vec<(&str, usize, usize)> = stats
            .into_iter()
            .filter(|(_, (df, _))| *df >= config.min_df.max(1))
            .map(|(t, (df, tf))| (t, df, tf))
            .collect();
        if config.max_features > 0 && kept.len() > config.max_features {
            // Most frequent first; ties by term, so the cut is deterministic.
            kept.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(b.0)));
            kept.truncate(config.max_features);
        }
        kept.sort_by(|a, b| a.0.cmp(b.0));
        let n = texts.len() as f64;
        let terms: Vec<String> = kept.iter().map(|k| k.0.to_string()).collect();
        let idf: Vec<f64> = kept
            .iter()
            .map(|k| ((1.0 + n) / (1.0 + k.1 as f64)).ln() + 1.0)
            .collect();
        let model = Self::from_parts(config.clone(), terms, idf);
        let matrix = model.matrix(analyzed.iter().map(|d| d.as_slice()));
        (model, matrix)
    }

    /// A vectorizer from stored parts.
    pub fn from_parts(config: TfidfConfig, terms: Vec<String>, idf: Vec<f64>) -> Self {
        let index = terms
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        Self {
            config,
            terms,
            idf,
            index,
        }
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.terms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The TF-IDF rows of `texts` (terms outside the vocabulary are dropped).
    pub fn transform(&self, texts: &[&str]) -> Csr {
        let analyzed: Vec<Vec<String>> = texts.iter().map(|t| self.config.analyze(t)).collect();
        self.matrix(analyzed.iter().map(|d| d.as_slice()))
    }

    fn matrix<'a>(&self, docs: impl Iterator<Item = &'a [String]>) -> Csr {
        let mut out = Csr {
            indptr: vec![0],
            cols: self.len(),
            ..Csr::default()
        };
        let mut counts: HashMap<u32, usize> = HashMap::new();
        for doc in docs {
            counts.clear();
            for t in doc {
                if let Some(&j) = self.index.get(t.as_str()) {
                    *counts.entry(j).or_insert(0) += 1;
                }
            }
            let mut row: Vec<(u32, f64)> = counts
                .iter()
                .map(|(&j, &c)| {
                    let tf = if self.config.sublinear_tf {
                        1.0 + (c as f64).ln()
                    } else {
                        c as f64
                    };
                    (j, tf * self.idf[j as usize])
                })
                .collect();
            row.sort_by_key(|r| r.0);
            let norm = row.iter().map(|r| r.1 * r.1).sum::<f64>().sqrt();
            for (j, v) in row {
                out.indices.push(j);
                out.values.push(if norm > 0.0 { v / norm } else { v });
            }
            out.indptr.push(out.indices.len());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dense(m: &Csr, tfidf: &Tfidf, i: usize) -> HashMap<String, f64> {
        let (idx, val) = m.row(i);
        idx.iter()
            .zip(val)
            .map(|(&j, &v)| (tfidf.terms[j as usize].clone(), v))
            .collect()
    }

    /// Three documents worked by hand: "ab", "abb", "c" with character unigrams, raw counts.
    /// n = 3; df(a) = df(b) = 2, df(c) = 1, so idf(a) = idf(b) = ln(4/3) + 1 and
    /// idf(c) = ln(4/2) + 1. "ab": (idf_a, idf_b) / norm → both 1/√2. "abb": (idf_a, 2 idf_b),
    /// so a = 1/√5 and b = 2/√5 (idf_a = idf_b cancels). "c": 1. With sublinear tf, "abb" has
    /// b's tf = 1 + ln 2.
    #[test]
    fn three_documents_by_hand() {
        let config = TfidfConfig {
            char_ngrams: Some((1, 1)),
            sublinear_tf: false,
            ..TfidfConfig::default()
        };
        let (tfidf, m) = Tfidf::fit_transform(&config, &["ab", "abb", "c"]);
        assert_eq!(tfidf.terms, vec!["a", "b", "c"]);
        let idf_ab = (4.0f64 / 3.0).ln() + 1.0;
        let idf_c = 2.0f64.ln() + 1.0;
        assert!((tfidf.idf[0] - idf_ab).abs() < 1e-12);
        assert!((tfidf.idf[1] - idf_ab).abs() < 1e-12);
        assert!((tfidf.idf[2] - idf_c).abs() < 1e-12);
        let d0 = dense(&m, &tfidf, 0);
        assert!((d0["a"] - 0.5f64.sqrt()).abs() < 1e-12);
        assert!((d0["b"] - 0.5f64.sqrt()).abs() < 1e-12);
        let d1 = dense(&m, &tfidf, 1);
        assert!((d1["a"] - 1.0 / 5.0f64.sqrt()).abs() < 1e-12);
        assert!((d1["b"] - 2.0 / 5.0f64.sqrt()).abs() < 1e-12);
        let d2 = dense(&m, &tfidf, 2);
        assert_eq!(d2.len(), 1);
        assert!((d2["c"] - 1.0).abs() < 1e-12);

        // Sublinear tf: "abb" → (1·idf, (1 + ln 2)·idf), normalised.
        let sub = TfidfConfig {
            sublinear_tf: true,
            ..config.clone()
        };
        let (tfidf, m) = Tfidf::fit_transform(&sub, &["ab", "abb", "c"]);
        let t = 1.0 + 2.0f64.ln();
        let norm = (1.0 + t * t).sqrt();
        let d1 = dense(&m, &tfidf, 1);
        assert!((d1["a"] - 1.0 / norm).abs() < 1e-12);
        assert!((d1["b"] - t / norm).abs() < 1e-12);
    }

    /// Bigrams, min_df and max_features on the same corpus, and a text outside the vocabulary.
    #[test]
    fn bigrams_min_df_and_max_features() {
        let config = TfidfConfig {
            char_ngrams: Some((1, 2)),
            sublinear_tf: false,
            ..TfidfConfig::default()
        };
        let (tfidf, _) = Tfidf::fit_transform(&config, &["ab", "abb", "c"]);
        assert_eq!(tfidf.terms, vec!["a", "ab", "b", "bb", "c"]);
        // "ab" in two documents, "bb" in one: idf(ab) = ln(4/3) + 1, idf(bb) = ln 2 + 1.
        assert!((tfidf.idf[1] - ((4.0f64 / 3.0).ln() + 1.0)).abs() < 1e-12);
        assert!((tfidf.idf[3] - (2.0f64.ln() + 1.0)).abs() < 1e-12);

        let min2 = TfidfConfig {
            min_df: 2,
            ..config.clone()
        };
        let (tfidf, _) = Tfidf::fit_transform(&min2, &["ab", "abb", "c"]);
        assert_eq!(tfidf.terms, vec!["a", "ab", "b"]);

        // Total counts: b 3, a 2, ab 2, bb 1, c 1 → the top two are b, then a (tie with ab
        // broken by the term).
        let top2 = TfidfConfig {
            max_features: 2,
            ..config
        };
        let (tfidf, _) = Tfidf::fit_transform(&top2, &["ab", "abb", "c"]);
        assert_eq!(tfidf.terms, vec!["a", "b"]);
        let m = tfidf.transform(&["zz"]);
        assert_eq!(m.rows(), 1);
        assert_eq!(m.row(0).0.len(), 0);
    }

    #[test]
    fn whitespace_like_scikit_learn() {
        assert_eq!(collapse_whitespace("a  b\tc \n d"), "a b\tc d");
        let config = TfidfConfig {
            char_ngrams: Some((2, 2)),
            ..TfidfConfig::default()
        };
        assert_eq!(config.analyze("A  b"), vec!["a ", " b"]);
    }
}
