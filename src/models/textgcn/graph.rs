//! TextGCN's graph (Yao et al. 2019): one graph over every document of the corpus — training,
//! validation and test (transductive; only the training labels are used, by the trainer) — and
//! its words. Nodes: the documents first (in the order given), then the vocabulary (by descending
//! corpus count, ties by the word). Edges:
//!
//! - document–word: TF-IDF, `tf(d, w) · ln(N / df(w))` with `tf` the raw count of `w` in `d`, `N`
//!   the number of documents and `df(w)` the documents that contain `w` (the paper's and its
//!   code's weighting; a word in every document gets weight 0, and no edge);
//! - word–word: positive PMI over sliding windows of `window` tokens (a document no longer than
//!   the window is one window): `PMI(i, j) = ln(#W(i, j) · #W / (#W(i) · #W(j)))`, `#W` the number
//!   of windows, `#W(i)` those that contain `i`, `#W(i, j)` those that contain both; only
//!   `PMI > 0` is kept;
//! - self-loops, then the symmetric normalisation `Â = D^-1/2 (A + I) D^-1/2`, `D` the row sums of
//!   `A + I`.
//!
//! `Â` is stored sparse ([`Csr`]); nothing of size nodes × nodes is ever allocated.

use crate::data::vocab::normalize_chars;
use crate::data::words::words;
use std::collections::{HashMap, HashSet};

/// What a document is cut into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphTokens {
    /// jieba-rs words (see [`crate::data::words`]).
    Word,
    /// Normalised characters (whitespace dropped).
    Char,
}

/// How the graph is built.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphConfig {
    pub tokens: GraphTokens,
    /// Keep a token found at least this often in the whole corpus.
    pub min_count: usize,
    /// Sliding window size for PMI.
    pub window: usize,
    /// Tokens left out of the graph.
    pub stop_words: Vec<String>,
    pub lowercase: bool,
}

/// A sparse square matrix in compressed sparse row form: row `i`'s entries are
/// `indices[indptr[i]..indptr[i + 1]]` (columns, ascending) and the same range of `values`.
#[derive(Debug, Clone, PartialEq)]
pub struct Csr {
    pub n: usize,
    pub indptr: Vec<usize>,
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

impl Csr {
    /// From `(row, column, value)` triplets; duplicates are summed.
    pub fn from_triplets(n: usize, mut triplets: Vec<(u32, u32, f32)>) -> Self {
        triplets.sort_unstable_by_key(|&(r, c, _)| (r, c));
        let mut indptr = vec![0usize; n + 1];
        let mut indices = Vec::with_capacity(triplets.len());
        let mut values: Vec<f32> = Vec::with_capacity(triplets.len());
        let mut last: Option<(u32, u32)> = None;
        for (r, c, v) in triplets {
            assert!(
                (r as usize) < n && (c as usize) < n,
                "entry outside {n} × {n}"
            );
            if last == Some((r, c)) {
                *values.last_mut().expect("an entry") += v;
                continue;
            }
            last = Some((r, c));
            indptr[r as usize + 1] += 1;
            indices.push(c);
            values.push(v);
        }
        for i in 0..n {
            indptr[i + 1] += indptr[i];
        }
        Self {
            n,
            indptr,
            indices,
            values,
        }
    }

    /// Stored entries.
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// Entry `(i, j)` (0 where none is stored).
    pub fn get(&self, i: usize, j: usize) -> f32 {
        let range = self.indptr[i]..self.indptr[i + 1];
        match self.indices[range.clone()].binary_search(&(j as u32)) {
            Ok(k) => self.values[range.start + k],
            Err(_) => 0.0,
        }
    }

    /// The transpose, also in CSR form.
    pub fn transpose(&self) -> Self {
        let mut triplets = Vec::with_capacity(self.nnz());
        for i in 0..self.n {
            for k in self.indptr[i]..self.indptr[i + 1] {
                triplets.push((self.indices[k], i as u32, self.values[k]));
            }
        }
        Self::from_triplets(self.n, triplets)
    }
}

/// Sizes of a built graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GraphSize {
    pub docs: usize,
    pub words: usize,
    /// Document–word pairs with a positive TF-IDF (each one undirected edge).
    pub doc_word_edges: usize,
    /// Word pairs with a positive PMI (each one undirected edge).
    pub word_word_edges: usize,
    /// Stored entries of `Â` (both directions of every edge, and the self-loops).
    pub nnz: usize,
}

/// The graph: `adj` is `Â`, documents are nodes `0..docs`, word `k` is node `docs + k`.
#[derive(Debug, Clone)]
pub struct TextGraph {
    pub docs: usize,
    pub vocab: Vec<String>,
    pub adj: Csr,
    pub size: GraphSize,
}

impl TextGraph {
    pub fn nodes(&self) -> usize {
        self.docs + self.vocab.len()
    }
}

/// Cut `text` into the graph's tokens.
pub fn tokenize(text: &str, tokens: GraphTokens, lowercase: bool) -> Vec<String> {
    match tokens {
        GraphTokens::Word => words(text, lowercase)
            .into_iter()
            .filter(|w| !w.trim().is_empty())
            .collect(),
        GraphTokens::Char => normalize_chars(text, lowercase)
            .map(|c| c.to_string())
            .collect(),
    }
}

/// Build the graph of `texts` (every split's documents, in node order).
pub fn build_graph(texts: &[&str], config: &GraphConfig) -> TextGraph {
    let docs: Vec<Vec<String>> = texts
        .iter()
        .map(|t| tokenize(t, config.tokens, config.lowercase))
        .collect();
    build_from_tokens(&docs, config.min_count, config.window, &config.stop_words)
}

/// Build the graph of tokenized documents: tokens rarer than `min_count` in the whole corpus,
/// and stop words, are removed from the documents first (windows slide over what is left).
pub fn build_from_tokens(
    docs: &[Vec<String>],
    min_count: usize,
    window: usize,
    stop_words: &[String],
) -> TextGraph {
    assert!(window >= 1, "a window of at least one token");
    let (vocab, ids) = vocabulary(docs, min_count, stop_words);
    let n_docs = docs.len();
    let v = vocab.len();
    let n = n_docs + v;
    let mut triplets: Vec<(u32, u32, f32)> = Vec::new();
    let doc_word_edges = tf_idf_edges(&ids, v, &mut triplets);
    let word_word_edges = pmi_edges(&ids, v, window, n_docs, &mut triplets);
    let adj = normalized_adjacency(n, triplets);
    let size = GraphSize {
        docs: n_docs,
        words: v,
        doc_word_edges,
        word_word_edges,
        nnz: adj.nnz(),
    };
    TextGraph {
        docs: n_docs,
        vocab,
        adj,
        size,
    }
}

/// The vocabulary (tokens found at least `min_count` times, stop words left out; by descending
/// count, ties by the token) and each document as the vocabulary ids of the tokens it keeps.
fn vocabulary(
    docs: &[Vec<String>],
    min_count: usize,
    stop_words: &[String],
) -> (Vec<String>, Vec<Vec<u32>>) {
    let stop: HashSet<&str> = stop_words.iter().map(String::as_str).collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for d in docs {
        for t in d {
            if !stop.contains(t.as_str()) {
                *counts.entry(t.as_str()).or_default() += 1;
            }
        }
    }
    let mut ranked: Vec<(&str, usize)> = counts
        .into_iter()
        .filter(|&(_, n)| n >= min_count.max(1))
        .collect();
    ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let index: HashMap<&str, u32> = ranked
        .iter()
        .enumerate()
        .map(|(i, (w, _))| (*w, i as u32))
        .collect();
    let vocab: Vec<String> = ranked.iter().map(|(w, _)| w.to_string()).collect();
    let ids: Vec<Vec<u32>> = docs
        .iter()
        .map(|d| {
            d.iter()
                .filter_map(|t| index.get(t.as_str()).copied())
                .collect()
        })
        .collect();
    (vocab, ids)
}

/// Document–word edges, TF-IDF, pushed both ways onto `triplets` (documents are nodes
/// `0..ids.len()`, word `w` node `ids.len() + w`); returns how many (each counted once).
fn tf_idf_edges(ids: &[Vec<u32>], v: usize, triplets: &mut Vec<(u32, u32, f32)>) -> usize {
    let n_docs = ids.len();
    let mut df = vec![0usize; v];
    let mut tfs: Vec<Vec<(u32, usize)>> = Vec::with_capacity(n_docs);
    for d in ids {
        let mut tf: HashMap<u32, usize> = HashMap::new();
        for &w in d {
            *tf.entry(w).or_default() += 1;
        }
        let mut tf: Vec<(u32, usize)> = tf.into_iter().collect();
        tf.sort_unstable();
        for &(w, _) in &tf {
            df[w as usize] += 1;
        }
        tfs.push(tf);
    }
    let mut doc_word_edges = 0;
    for (d, tf) in tfs.iter().enumerate() {
        for &(w, count) in tf {
            let weight = count as f64 * (n_docs as f64 / df[w as usize] as f64).ln();
            if weight > 0.0 {
                let node = (n_docs + w as usize) as u32;
                triplets.push((d as u32, node, weight as f32));
                triplets.push((node, d as u32, weight as f32));
                doc_word_edges += 1;
            }
        }
    }
    doc_word_edges
}

/// Word–word edges, positive PMI over sliding windows of `window` tokens, pushed both ways onto
/// `triplets` (word `w` is node `n_docs + w`); returns how many (each counted once).
fn pmi_edges(
    ids: &[Vec<u32>],
    v: usize,
    window: usize,
    n_docs: usize,
    triplets: &mut Vec<(u32, u32, f32)>,
) -> usize {
    let mut windows = 0usize;
    let mut in_windows = vec![0usize; v];
    let mut pairs: HashMap<(u32, u32), usize> = HashMap::new();
    let mut distinct: Vec<u32> = Vec::with_capacity(window);
    for d in ids {
        if d.is_empty() {
            continue;
        }
        let starts = if d.len() <= window {
            1
        } else {
            d.len() - window + 1
        };
        for s in 0..starts {
            distinct.clear();
            distinct.extend_from_slice(&d[s..(s + window).min(d.len())]);
            distinct.sort_unstable();
            distinct.dedup();
            windows += 1;
            for (k, &a) in distinct.iter().enumerate() {
                in_windows[a as usize] += 1;
                for &b in &distinct[k + 1..] {
                    *pairs.entry((a, b)).or_default() += 1;
                }
            }
        }
    }
    let mut word_word_edges = 0;
    let mut pairs: Vec<((u32, u32), usize)> = pairs.into_iter().collect();
    pairs.sort_unstable();
    for ((a, b), together) in pairs {
        let pmi = (together as f64 * windows as f64
            / (in_windows[a as usize] as f64 * in_windows[b as usize] as f64))
            .ln();
        if pmi > 0.0 {
            let (a, b) = ((n_docs + a as usize) as u32, (n_docs + b as usize) as u32);
            triplets.push((a, b, pmi as f32));
            triplets.push((b, a, pmi as f32));
            word_word_edges += 1;
        }
    }
    word_word_edges
}

/// `D^-1/2 (A + I) D^-1/2` of the `n × n` matrix `A` given by `triplets`, `D` the row sums of
/// `A + I`.
fn normalized_adjacency(n: usize, mut triplets: Vec<(u32, u32, f32)>) -> Csr {
    triplets.extend((0..n as u32).map(|i| (i, i, 1.0)));
    let mut adj = Csr::from_triplets(n, triplets);
    let mut degree = vec![0f64; n];
    for (i, d) in degree.iter_mut().enumerate() {
        *d = adj.values[adj.indptr[i]..adj.indptr[i + 1]]
            .iter()
            .map(|&x| x as f64)
            .sum();
    }
    let scale: Vec<f64> = degree.iter().map(|d| 1.0 / d.sqrt()).collect();
    for i in 0..n {
        for k in adj.indptr[i]..adj.indptr[i + 1] {
            let j = adj.indices[k] as usize;
            adj.values[k] = (adj.values[k] as f64 * scale[i] * scale[j]) as f32;
        }
    }
    adj
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(d: &[&[&str]]) -> Vec<Vec<String>> {
        d.iter()
            .map(|t| t.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    /// Three documents, window 2, worked by hand:
    ///
    /// d0 = a b a, d1 = b c, d2 = c. Counts a 2, b 2, c 2 → vocabulary a, b, c = nodes 3, 4, 5.
    ///
    /// TF-IDF (N = 3): df a 1, b 2, c 2; idf a = ln 3 = 1.098612, idf b = idf c = ln 1.5 =
    /// 0.405465. d0–a: tf 2 → 2 ln 3 = 2.197225; d0–b, d1–b, d1–c, d2–c: ln 1.5 = 0.405465.
    ///
    /// Windows: d0 (3 tokens > 2) has [a b] and [b a]; d1 [b c]; d2 [c]: #W = 4.
    /// #W(a) = 2, #W(b) = 3, #W(c) = 2; #W(a,b) = 2, #W(b,c) = 1, #W(a,c) = 0.
    /// PMI(a,b) = ln(2·4 / (2·3)) = ln(4/3) = 0.287682 (kept);
    /// PMI(b,c) = ln(1·4 / (3·2)) = ln(2/3) = −0.405465 (dropped).
    ///
    /// Row sums of A + I: d0 1 + 2.197225 + 0.405465 = 3.602690; d1 1 + 2·0.405465 = 1.810930;
    /// d2 1.405465; a 1 + 2.197225 + 0.287682 = 3.484907; b 1 + 2·0.405465 + 0.287682 =
    /// 2.098612; c 1.810930.
    /// Â(d0,a) = 2.197225 / √(3.602690 · 3.484907) = 0.620105;
    /// Â(a,b) = 0.287682 / √(3.484907 · 2.098612) = 0.106378;
    /// Â(d0,b) = 0.405465 / √(3.602690 · 2.098612) = 0.147460;
    /// Â(d2,c) = 0.405465 / √(1.405465 · 1.810930) = 0.254151;
    /// Â(d0,d0) = 1 / 3.602690 = 0.277570; Â(d2,d2) = 1 / 1.405465 = 0.711508;
    /// Â(b,b) = 1 / 2.098612 = 0.476505.
    #[test]
    fn hand_worked_three_documents() {
        let corpus = docs(&[&["a", "b", "a"], &["b", "c"], &["c"]]);
        let g = build_from_tokens(&corpus, 1, 2, &[]);
        assert_eq!(g.vocab, vec!["a", "b", "c"]);
        assert_eq!(g.nodes(), 6);
        assert_eq!(
            g.size,
            GraphSize {
                docs: 3,
                words: 3,
                doc_word_edges: 5,
                word_word_edges: 1,
                // 2 · (5 + 1) edges + 6 self-loops
                nnz: 18,
            }
        );
        let a = &g.adj;
        let close = |i: usize, j: usize, want: f32| {
            let got = a.get(i, j);
            assert!(
                (got - want).abs() < 1e-6,
                "Â({i},{j}) = {got}, expected {want}"
            );
            assert_eq!(a.get(j, i), got, "Â is symmetric at ({i},{j})");
        };
        close(0, 3, 0.620_105_3);
        close(3, 4, 0.106_377_83);
        close(0, 4, 0.147_459_9);
        close(2, 5, 0.254_151_45);
        close(0, 0, 0.277_570_4);
        close(2, 2, 0.711_508_2);
        close(4, 4, 0.476_505_4);
        // No edge for a negative PMI, none between documents, none where a word is absent.
        close(4, 5, 0.0);
        close(0, 1, 0.0);
        close(2, 3, 0.0);
    }

    /// Rare tokens and stop words leave the documents before windows slide: with min_count 2
    /// and `b` a stop word, d0 = a a, d1 = c, d2 = c, and a (in one document of three) and c
    /// are all that is left.
    #[test]
    fn min_count_and_stop_words() {
        let corpus = docs(&[&["a", "b", "a", "x"], &["b", "c"], &["c"]]);
        let g = build_from_tokens(&corpus, 2, 2, &["b".to_string()]);
        assert_eq!(g.vocab, vec!["a", "c"]);
        // d0–a: tf 2 · ln 3; the windows [a a] hold one word only: no word–word edge.
        assert_eq!(g.size.doc_word_edges, 3);
        assert_eq!(g.size.word_word_edges, 0);
        let deg0 = 1.0 + 2.0 * 3f64.ln();
        let want = 2.0 * 3f64.ln() / (deg0 * deg0).sqrt();
        assert!((g.adj.get(0, 3) as f64 - want).abs() < 1e-6);
    }

    #[test]
    fn csr_sums_duplicates_and_transposes() {
        let m = Csr::from_triplets(3, vec![(2, 0, 1.0), (0, 1, 2.0), (0, 1, 0.5), (1, 2, 3.0)]);
        assert_eq!(m.indptr, vec![0, 1, 2, 3]);
        assert_eq!(m.get(0, 1), 2.5);
        let t = m.transpose();
        assert_eq!((t.get(1, 0), t.get(0, 2), t.get(2, 1)), (2.5, 1.0, 3.0));
        assert_eq!(t.nnz(), 3);
    }

    #[test]
    fn character_tokens_are_normalised_characters() {
        assert_eq!(
            tokenize("Ａb c", GraphTokens::Char, true),
            vec!["a", "b", "c"]
        );
    }
}
