//! Classification metrics with scikit-learn's `classification_report` semantics.
//!
//! Per class: precision = TP / predicted (0 when the class is never predicted, sklearn's
//! `zero_division` default), recall = TP / support (0 without support), F1 = 2PR / (P + R)
//! (0 when P + R = 0). `macro avg` is the unweighted mean over all classes; `weighted avg` weights
//! each class by its support; accuracy is the share of correct predictions.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationReport {
    pub per_class: Vec<ClassScores>,
    pub accuracy: f64,
    pub macro_avg: ClassScores,
    pub weighted_avg: ClassScores,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
}

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

fn f1(p: f64, r: f64) -> f64 {
    if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    }
}

impl ClassificationReport {
    /// Scores of predictions against truth for classes `0..classes`.
    pub fn new(truth: &[usize], predicted: &[usize], classes: usize) -> Self {
        assert_eq!(truth.len(), predicted.len(), "one prediction per example");
        let mut confusion = vec![vec![0usize; classes]; classes];
        for (&t, &p) in truth.iter().zip(predicted) {
            confusion[t][p] += 1;
        }
        let per_class: Vec<ClassScores> = (0..classes)
            .map(|k| {
                let tp = confusion[k][k];
                let support: usize = confusion[k].iter().sum();
                let predicted_k: usize = confusion.iter().map(|row| row[k]).sum();
                let precision = ratio(tp, predicted_k);
                let recall = ratio(tp, support);
                ClassScores {
                    precision,
                    recall,
                    f1: f1(precision, recall),
                    support,
                }
            })
            .collect();
        let total = truth.len();
        let correct: usize = (0..classes).map(|k| confusion[k][k]).sum();
        let mean = |f: fn(&ClassScores) -> f64| {
            if classes == 0 {
                0.0
            } else {
                per_class.iter().map(f).sum::<f64>() / classes as f64
            }
        };
        let weighted = |f: fn(&ClassScores) -> f64| {
            if total == 0 {
                0.0
            } else {
                per_class
                    .iter()
                    .map(|c| f(c) * c.support as f64)
                    .sum::<f64>()
                    / total as f64
            }
        };
        Self {
            accuracy: ratio(correct, total),
            macro_avg: ClassScores {
                precision: mean(|c| c.precision),
                recall: mean(|c| c.recall),
                f1: mean(|c| c.f1),
                support: total,
            },
            weighted_avg: ClassScores {
                precision: weighted(|c| c.precision),
                recall: weighted(|c| c.recall),
                f1: weighted(|c| c.f1),
                support: total,
            },
            per_class,
            confusion,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn hand_computed_three_classes() {
        // truth:     0 0 0 1 1 2
        // predicted: 0 0 1 1 2 2
        let r = ClassificationReport::new(&[0, 0, 0, 1, 1, 2], &[0, 0, 1, 1, 2, 2], 3);
        assert_eq!(
            r.confusion,
            vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]]
        );
        // class 0: P 2/2, R 2/3, F1 0.8; class 1: P 1/2, R 1/2, F1 0.5; class 2: P 1/2, R 1, F1 2/3.
        assert!(close(r.per_class[0].precision, 1.0));
        assert!(close(r.per_class[0].recall, 2.0 / 3.0));
        assert!(close(r.per_class[0].f1, 0.8));
        assert!(close(r.per_class[1].f1, 0.5));
        assert!(close(r.per_class[2].precision, 0.5));
        assert!(close(r.per_class[2].f1, 2.0 / 3.0));
        assert!(close(r.accuracy, 4.0 / 6.0));
        assert!(close(r.macro_avg.precision, (1.0 + 0.5 + 0.5) / 3.0));
        assert!(close(r.macro_avg.f1, (0.8 + 0.5 + 2.0 / 3.0) / 3.0));
        assert!(close(
            r.weighted_avg.recall,
            (3.0 * 2.0 / 3.0 + 2.0 * 0.5 + 1.0) / 6.0
        ));
        assert!(close(
            r.weighted_avg.f1,
            (3.0 * 0.8 + 2.0 * 0.5 + 2.0 / 3.0) / 6.0
        ));
        assert_eq!(r.macro_avg.support, 6);
    }

    #[test]
    fn class_never_predicted_scores_zero() {
        // Class 2 has support 2 but is never predicted: precision 0 (zero division), recall 0.
        let r = ClassificationReport::new(&[0, 1, 2, 2], &[0, 1, 0, 1], 3);
        assert_eq!(r.per_class[2].precision, 0.0);
        assert_eq!(r.per_class[2].recall, 0.0);
        assert_eq!(r.per_class[2].f1, 0.0);
        assert_eq!(r.per_class[2].support, 2);
        // class 0: P 1/2 R 1 F1 2/3; class 1: same.
        assert!(close(r.macro_avg.f1, (2.0 / 3.0 + 2.0 / 3.0 + 0.0) / 3.0));
        assert!(close(r.weighted_avg.f1, (2.0 / 3.0 + 2.0 / 3.0) / 4.0));
        assert!(close(r.accuracy, 0.5));
    }

    #[test]
    fn class_without_support() {
        // Class 1 never occurs but is predicted once: precision 0, recall 0 (no support).
        let r = ClassificationReport::new(&[0, 0], &[0, 1], 2);
        assert_eq!(r.per_class[1].support, 0);
        assert_eq!(r.per_class[1].precision, 0.0);
        assert_eq!(r.per_class[1].recall, 0.0);
        assert!(close(r.per_class[0].recall, 0.5));
        assert!(close(r.per_class[0].precision, 1.0));
    }
}
