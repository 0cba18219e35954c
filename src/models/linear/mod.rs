//! The linear n-gram model: TF-IDF features ([`tfidf`]) and a linear classifier over them —
//! multinomial logistic regression ([`logreg`]: its scores are logits, its softmax calibrated
//! probabilities) or a one-vs-rest linear SVM ([`svm`]: its scores are decision values) — with
//! the regularisation strength `C` chosen on the validation split. The report's baseline, and a
//! teacher architecture.
//!
//! Solvers: no maintained Rust crate fits sparse multinomial logistic regression (linfa's models
//! take dense `ndarray` matrices: 13k × 150k here; the `liblinear` bindings were last released in
//! 2019 and liblinear has no multinomial logistic regression), so the objective and its gradient
//! are written here over a sparse matrix and minimised with argmin's L-BFGS; the SVM is liblinear's
//! dual coordinate descent, a few lines (see [`svm`]).

pub mod logreg;
pub mod svm;
pub mod tfidf;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

pub use tfidf::{Csr, Tfidf, TfidfConfig};

/// Which linear classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinearKind {
    /// Multinomial logistic regression.
    Logreg,
    /// One-vs-rest linear SVM (squared hinge).
    Svm,
}

impl LinearKind {
    pub fn name(self) -> &'static str {
        match self {
            LinearKind::Logreg => "logreg",
            LinearKind::Svm => "svm",
        }
    }
}

/// The file a fitted model is saved to in its stage folder.
pub const MODEL_FILE: &str = "linear.safetensors";

/// Everything a fit depends on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearConfig {
    pub tfidf: TfidfConfig,
    pub kind: LinearKind,
    /// Values of `C` tried; the one with the best validation accuracy is kept (the first on a
    /// tie, in the order given).
    pub c_grid: Vec<f64>,
    /// Stopping tolerance: L-BFGS's gradient norm, or the SVM's projected-gradient range.
    pub tol: f64,
    /// L-BFGS iterations, or SVM passes over the data.
    pub max_iter: usize,
    /// Seed of the SVM's visiting order.
    pub seed: u64,
}

impl Default for LinearConfig {
    fn default() -> Self {
        Self {
            tfidf: TfidfConfig::default(),
            kind: LinearKind::Logreg,
            c_grid: vec![1.0, 3.0, 10.0, 30.0, 100.0],
            tol: 1e-4,
            max_iter: 1000,
            seed: 0,
        }
    }
}

/// One value of the `C` grid: its validation accuracy and the solver's iterations (passes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridPoint {
    pub c: f64,
    pub valid_accuracy: f64,
    pub iterations: u64,
}

/// A fitted model: the vectorizer and the weights (`classes × features`, f32) and biases.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearModel {
    pub tfidf: Tfidf,
    pub kind: LinearKind,
    pub c: f64,
    pub classes: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

fn labels_in_range(y: &[usize], k: usize) -> Result<()> {
    if let Some(bad) = y.iter().find(|&&l| l >= k) {
        bail!("label {bad} out of range for {k} classes");
    }
    Ok(())
}

impl LinearModel {
    fn from_theta(tfidf: Tfidf, kind: LinearKind, c: f64, k: usize, theta: &[f64]) -> Self {
        let cols = tfidf.len();
        Self {
            kind,
            c,
            classes: k,
            weight: theta[..k * cols].iter().map(|&v| v as f32).collect(),
            bias: theta[k * cols..].iter().map(|&v| v as f32).collect(),
            tfidf,
        }
    }

    /// Fit the vectorizer on `train`, then the classifier for each `C` of the grid (logistic
    /// regression warm-starts from the previous `C`), and keep the one with the best accuracy
    /// on `valid`. A grid of one value needs no validation split.
    pub fn fit(
        config: &LinearConfig,
        train: &[(&str, usize)],
        valid: &[(&str, usize)],
        classes: usize,
    ) -> Result<(Self, Vec<GridPoint>)> {
        if config.c_grid.is_empty() {
            bail!("the C grid is empty");
        }
        if config.c_grid.len() > 1 && valid.is_empty() {
            bail!(
                "choosing C from {} values needs a validation split",
                config.c_grid.len()
            );
        }
        if train.is_empty() {
            bail!("no training examples");
        }
        let texts: Vec<&str> = train.iter().map(|e| e.0).collect();
        let y: Vec<usize> = train.iter().map(|e| e.1).collect();
        labels_in_range(&y, classes)?;
        let (tfidf, x) = Tfidf::fit_transform(&config.tfidf, &texts);
        let valid_x = tfidf.transform(&valid.iter().map(|e| e.0).collect::<Vec<_>>());
        let mut best: Option<(f64, LinearModel)> = None;
        let mut grid = Vec::new();
        let mut warm: Option<Vec<f64>> = None;
        for &c in &config.c_grid {
            let (theta, iterations) = match config.kind {
                LinearKind::Logreg => {
                    let settings = logreg::LbfgsSettings {
                        tol: config.tol,
                        max_iter: config.max_iter as u64,
                        ..Default::default()
                    };
                    let (theta, it) = logreg::fit(&x, &y, classes, c, settings, warm.take())?;
                    warm = Some(theta.clone());
                    (theta, it)
                }
                LinearKind::Svm => {
                    let (theta, passes) =
                        svm::fit(&x, &y, classes, c, config.tol, config.max_iter, config.seed);
                    (theta, passes as u64)
                }
            };
            let model = Self::from_theta(tfidf.clone(), config.kind, c, classes, &theta);
            let valid_accuracy = if valid.is_empty() {
                f64::NAN
            } else {
                let predicted = model.predict_matrix(&valid_x);
                let correct = predicted
                    .iter()
                    .zip(valid)
                    .filter(|(p, e)| **p == e.1)
                    .count();
                correct as f64 / valid.len() as f64
            };
            grid.push(GridPoint {
                c,
                valid_accuracy,
                iterations,
            });
            let better = match &best {
                None => true,
                Some((acc, _)) => valid_accuracy > *acc,
            };
            if better {
                best = Some((valid_accuracy, model));
            }
        }
        Ok((best.expect("the grid is not empty").1, grid))
    }

    /// Features.
    pub fn features(&self) -> usize {
        self.tfidf.len()
    }

    /// Learnt parameters: weights and biases.
    pub fn parameters(&self) -> usize {
        self.weight.len() + self.bias.len()
    }

    /// Class scores of each row of a TF-IDF matrix from this model's vectorizer.
    pub fn scores_matrix(&self, x: &Csr) -> Vec<Vec<f32>> {
        let cols = self.features();
        (0..x.rows())
            .map(|i| {
                let (idx, val) = x.row(i);
                (0..self.classes)
                    .map(|c| {
                        let w = &self.weight[c * cols..(c + 1) * cols];
                        let s = self.bias[c] as f64
                            + idx
                                .iter()
                                .zip(val)
                                .map(|(&j, &v)| w[j as usize] as f64 * v)
                                .sum::<f64>();
                        s as f32
                    })
                    .collect()
            })
            .collect()
    }

    fn predict_matrix(&self, x: &Csr) -> Vec<usize> {
        self.scores_matrix(x).iter().map(|s| argmax(s)).collect()
    }

    /// Class scores of each text: logits for logistic regression (their softmax is the fitted
    /// probability), decision values `w·x + b` for the SVM.
    pub fn logits(&self, texts: &[&str]) -> Vec<Vec<f32>> {
        self.scores_matrix(&self.tfidf.transform(texts))
    }

    /// Softmax of [`Self::logits`] (calibrated for logistic regression only).
    pub fn probabilities(&self, texts: &[&str]) -> Vec<Vec<f32>> {
        self.logits(texts)
            .iter()
            .map(|z| super::softmax(z))
            .collect()
    }

    /// Predicted class of each text (the first on a tie).
    pub fn predict(&self, texts: &[&str]) -> Vec<usize> {
        self.predict_matrix(&self.tfidf.transform(texts))
    }

    /// One safetensors file: `weight` (`classes × features`, f32), `bias` (f32), `idf` (f64),
    /// and in its metadata the vocabulary and the settings (JSON).
    pub fn save(&self, path: &Path) -> Result<()> {
        use safetensors::tensor::TensorView;
        use safetensors::Dtype;
        let cols = self.features();
        let weight: Vec<u8> = self.weight.iter().flat_map(|v| v.to_le_bytes()).collect();
        let bias: Vec<u8> = self.bias.iter().flat_map(|v| v.to_le_bytes()).collect();
        let idf: Vec<u8> = self
            .tfidf
            .idf
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let views = vec![
            (
                "weight",
                TensorView::new(Dtype::F32, vec![self.classes, cols], &weight)?,
            ),
            (
                "bias",
                TensorView::new(Dtype::F32, vec![self.classes], &bias)?,
            ),
            ("idf", TensorView::new(Dtype::F64, vec![cols], &idf)?),
        ];
        let mut meta = HashMap::new();
        meta.insert(
            "tfidf".to_string(),
            serde_json::to_string(&self.tfidf.config)?,
        );
        meta.insert("kind".to_string(), self.kind.name().to_string());
        meta.insert("c".to_string(), serde_json::to_string(&self.c)?);
        meta.insert(
            "terms".to_string(),
            serde_json::to_string(&self.tfidf.terms)?,
        );
        let data = safetensors::tensor::serialize(views, Some(meta))
            .map_err(|e| anyhow!("cannot serialize {}: {e}", path.display()))?;
        crate::files::write_with(path, |tmp| {
            std::fs::write(tmp, &data).map_err(|e| crate::files::write_error(path, e))
        })?;
        Ok(())
    }

    /// Read a file written by [`Self::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let what = || format!("linear model {}", path.display());
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| anyhow!("{}: {e}", what()))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| anyhow!("{}: {e}", what()))?;
        let meta = header
            .metadata()
            .as_ref()
            .ok_or_else(|| anyhow!("{}: no metadata", what()))?;
        let field = |k: &str| {
            meta.get(k)
                .ok_or_else(|| anyhow!("{}: no `{k}` in the metadata", what()))
        };
        let config: TfidfConfig = serde_json::from_str(field("tfidf")?)?;
        let kind: LinearKind = serde_json::from_str(&format!("\"{}\"", field("kind")?))?;
        let c: f64 = serde_json::from_str(field("c")?)?;
        let terms: Vec<String> = serde_json::from_str(field("terms")?)?;
        let tensor = |name: &str, dtype: safetensors::Dtype| {
            let t = st
                .tensor(name)
                .map_err(|e| anyhow!("{}: tensor {name}: {e}", what()))?;
            if t.dtype() != dtype {
                bail!(
                    "{}: tensor {name} is {:?}, not {dtype:?}",
                    what(),
                    t.dtype()
                );
            }
            Ok(t)
        };
        let weight_t = tensor("weight", safetensors::Dtype::F32)?;
        let shape = weight_t.shape().to_vec();
        if shape.len() != 2 || shape[1] != terms.len() {
            bail!(
                "{}: weight shape {shape:?} for {} terms",
                what(),
                terms.len()
            );
        }
        let f32s = |b: &[u8]| -> Vec<f32> {
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        };
        let weight = f32s(weight_t.data());
        let bias = f32s(tensor("bias", safetensors::Dtype::F32)?.data());
        let idf: Vec<f64> = tensor("idf", safetensors::Dtype::F64)?
            .data()
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        if bias.len() != shape[0] || idf.len() != terms.len() {
            bail!("{}: bias or idf of the wrong length", what());
        }
        Ok(Self {
            tfidf: Tfidf::from_parts(config, terms, idf),
            kind,
            c,
            classes: shape[0],
            weight,
            bias,
        })
    }
}

fn argmax(s: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in s.iter().enumerate() {
        if *v > s[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    type Split = Vec<(&'static str, usize)>;

    fn corpus() -> (Split, Split) {
        let train = vec![
            ("足球比赛今晚开始", 0),
            ("篮球比赛结果", 0),
            ("球队赢了比赛", 0),
            ("新车上市价格", 1),
            ("汽车油耗测试", 1),
            ("这款车的价格", 1),
            ("房价上涨了", 2),
            ("买房贷款利率", 2),
            ("二手房价格走势", 2),
        ];
        let valid = vec![("比赛开始了", 0), ("汽车价格", 1), ("房价走势", 2)];
        (train, valid)
    }

    #[test]
    fn fits_selects_c_and_round_trips() {
        let (train, valid) = corpus();
        for kind in [LinearKind::Logreg, LinearKind::Svm] {
            let config = LinearConfig {
                kind,
                c_grid: vec![0.01, 10.0],
                ..LinearConfig::default()
            };
            let (model, grid) = LinearModel::fit(&config, &train, &valid, 3).unwrap();
            assert_eq!(grid.len(), 2);
            let texts: Vec<&str> = train.iter().map(|e| e.0).collect();
            let labels: Vec<usize> = train.iter().map(|e| e.1).collect();
            assert_eq!(model.predict(&texts), labels, "{kind:?}");
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("linear.safetensors");
            model.save(&path).unwrap();
            let back = LinearModel::load(&path).unwrap();
            assert_eq!(back, model);
            assert_eq!(back.logits(&texts), model.logits(&texts));
            let p = back.probabilities(&texts);
            for row in &p {
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn refuses_a_grid_without_validation() {
        let (train, _) = corpus();
        let err = LinearModel::fit(&LinearConfig::default(), &train, &[], 3).unwrap_err();
        assert!(err.to_string().contains("validation"), "{err}");
    }
}
