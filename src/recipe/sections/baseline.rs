//! `[baseline]`: the linear n-gram model trained on the same split as the networks and shown
//! beside them in every report (TF-IDF over character and, optionally, jieba-rs word n-grams;
//! multinomial logistic regression or a linear SVM; `C` chosen on the validation split).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BaselineModel {
    /// Multinomial logistic regression: logits and calibrated probabilities.
    Logreg,
    /// One-vs-rest linear SVM (squared hinge), as scikit-learn's `LinearSVC`.
    Svm,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BaselineSection {
    /// Train the baseline and show it in the report.
    pub enabled: bool,
    /// The linear classifier over TF-IDF n-grams: logistic regression or a linear SVM.
    pub model: BaselineModel,
    /// Character n-gram sizes `[min, max]`; `[]`: none.
    pub char_ngrams: Vec<usize>,
    /// jieba-rs word n-gram sizes `[min, max]`; `[]`: none.
    pub word_ngrams: Vec<usize>,
    /// Keep a term found in at least this many training sentences.
    pub min_df: usize,
    /// Keep at most this many terms, the most frequent; 0: all.
    pub max_features: usize,
    /// `1 + ln(tf)` instead of the count.
    pub sublinear_tf: bool,
    /// Regularisation strengths tried; the best on the validation split is kept.
    pub c: Vec<f64>,
}

impl Default for BaselineSection {
    fn default() -> Self {
        Self {
            enabled: true,
            model: BaselineModel::Logreg,
            char_ngrams: vec![1, 2],
            word_ngrams: Vec::new(),
            min_df: 1,
            max_features: 0,
            sublinear_tf: true,
            c: vec![1.0, 3.0, 10.0, 30.0, 100.0],
        }
    }
}

impl BaselineModel {
    pub fn name(self) -> &'static str {
        match self {
            BaselineModel::Logreg => "logreg",
            BaselineModel::Svm => "svm",
        }
    }
}

/// `[min, max]` as a range, `[]` as none (anything else is caught by validation).
pub fn ngram_range(v: &[usize]) -> Option<(usize, usize)> {
    match v {
        [lo, hi] => Some((*lo, *hi)),
        _ => None,
    }
}
