//! Multinomial logistic regression with an L2 penalty, as scikit-learn's
//! `LogisticRegression(solver = "lbfgs")` fits it: minimise
//! `(1/n) Σ_i CE(softmax(W x_i + b), y_i) + ||W||² / (2 C n)` (the intercept is not penalised)
//! with argmin's L-BFGS and a Moré–Thuente line search, stopping when the gradient's L2 norm falls
//! below `tol` (scikit-learn: `tol = 1e-4` on its largest component) or after `max_iter`
//! iterations.

use super::tfidf::Csr;
use anyhow::{anyhow, Result};
use argmin::core::{CostFunction, Error as ArgminError, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use std::sync::Mutex;

/// The last point evaluated: parameters, loss, gradient.
type Evaluated = (Vec<f64>, f64, Vec<f64>);

/// The objective over a fixed matrix; one pass over the data gives both the loss and the
/// gradient, kept for the gradient call that follows the cost call at the same point.
struct Objective<'a> {
    x: &'a Csr,
    y: &'a [usize],
    k: usize,
    c: f64,
    cache: Mutex<Option<Evaluated>>,
}

impl Objective<'_> {
    fn evaluate(&self, theta: &[f64]) -> (f64, Vec<f64>) {
        if let Some((p, f, g)) = self.cache.lock().unwrap().as_ref() {
            if p.as_slice() == theta {
                return (*f, g.clone());
            }
        }
        let (f, g) = loss_and_gradient(self.x, self.y, self.k, self.c, theta);
        *self.cache.lock().unwrap() = Some((theta.to_vec(), f, g.clone()));
        (f, g)
    }
}

/// Scores `W x + b` of one row; `theta` holds `W` row-major (`k × cols`) then `b`.
pub(crate) fn scores(theta: &[f64], cols: usize, k: usize, idx: &[u32], val: &[f64]) -> Vec<f64> {
    let bias = &theta[k * cols..];
    (0..k)
        .map(|c| {
            let w = &theta[c * cols..(c + 1) * cols];
            bias[c]
                + idx
                    .iter()
                    .zip(val)
                    .map(|(&j, &v)| w[j as usize] * v)
                    .sum::<f64>()
        })
        .collect()
}

fn loss_and_gradient(x: &Csr, y: &[usize], k: usize, c: f64, theta: &[f64]) -> (f64, Vec<f64>) {
    let cols = x.cols;
    let n = x.rows() as f64;
    let mut grad = vec![0.0; theta.len()];
    let mut loss = 0.0;
    for (i, &label) in y.iter().enumerate() {
        let (idx, val) = x.row(i);
        let z = scores(theta, cols, k, idx, val);
        let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = z.iter().map(|v| (v - max).exp()).sum();
        let lse = max + sum.ln();
        loss += lse - z[label];
        for (class, &zc) in z.iter().enumerate() {
            let d = ((zc - lse).exp() - if class == label { 1.0 } else { 0.0 }) / n;
            let g = &mut grad[class * cols..(class + 1) * cols];
            for (&j, &v) in idx.iter().zip(val) {
                g[j as usize] += d * v;
            }
            grad[k * cols + class] += d;
        }
    }
    loss /= n;
    let reg = 1.0 / (c * n);
    let mut norm2 = 0.0;
    for (g, w) in grad[..k * cols].iter_mut().zip(&theta[..k * cols]) {
        *g += reg * w;
        norm2 += w * w;
    }
    (loss + 0.5 * reg * norm2, grad)
}

impl CostFunction for Objective<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, p: &Self::Param) -> Result<f64, ArgminError> {
        Ok(self.evaluate(p).0)
    }
}

impl Gradient for Objective<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, p: &Self::Param) -> Result<Vec<f64>, ArgminError> {
        Ok(self.evaluate(p).1)
    }
}

/// How the solver stops.
#[derive(Debug, Clone, Copy)]
pub struct LbfgsSettings {
    pub tol: f64,
    pub max_iter: u64,
    pub memory: usize,
}

impl Default for LbfgsSettings {
    fn default() -> Self {
        Self {
            tol: 1e-4,
            max_iter: 1000,
            memory: 10,
        }
    }
}

/// Fit; returns `theta` (`W` row-major, then `b`) and the iterations used. `init` warm-starts
/// (e.g. from the previous value of `C` on a grid).
pub fn fit(
    x: &Csr,
    y: &[usize],
    k: usize,
    c: f64,
    settings: LbfgsSettings,
    init: Option<Vec<f64>>,
) -> Result<(Vec<f64>, u64)> {
    let dim = k * x.cols + k;
    let init = init.unwrap_or_else(|| vec![0.0; dim]);
    if init.len() != dim {
        return Err(anyhow!(
            "initial parameters: {} values for {dim}",
            init.len()
        ));
    }
    let problem = Objective {
        x,
        y,
        k,
        c,
        cache: Mutex::new(None),
    };
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), settings.memory)
        .with_tolerance_grad(settings.tol)
        .map_err(|e| anyhow!("L-BFGS: {e}"))?
        .with_tolerance_cost(0.0)
        .map_err(|e| anyhow!("L-BFGS: {e}"))?;
    let result = Executor::new(problem, solver)
        .configure(|s| s.param(init).max_iters(settings.max_iter))
        .run()
        .map_err(|e| anyhow!("logistic regression (C = {c}): {e}"))?;
    let state = result.state();
    let theta = state
        .get_best_param()
        .cloned()
        .ok_or_else(|| anyhow!("logistic regression (C = {c}): no parameters"))?;
    Ok((theta, state.get_iter()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(rows: &[Vec<(u32, f64)>], cols: usize) -> Csr {
        let mut m = Csr {
            indptr: vec![0],
            cols,
            ..Csr::default()
        };
        for r in rows {
            for &(j, v) in r {
                m.indices.push(j);
                m.values.push(v);
            }
            m.indptr.push(m.indices.len());
        }
        m
    }

    /// The analytic gradient agrees with central differences.
    #[test]
    fn gradient_matches_finite_differences() {
        let x = csr(
            &[
                vec![(0, 1.0), (2, 0.5)],
                vec![(1, 2.0)],
                vec![(0, -1.0), (1, 0.3), (2, 1.0)],
            ],
            3,
        );
        let y = [0, 2, 1];
        let theta: Vec<f64> = (0..12).map(|i| ((i * 7) % 5) as f64 * 0.1 - 0.2).collect();
        let (_, g) = loss_and_gradient(&x, &y, 3, 2.0, &theta);
        for i in 0..theta.len() {
            let (mut a, mut b) = (theta.clone(), theta.clone());
            a[i] += 1e-6;
            b[i] -= 1e-6;
            let fd = (loss_and_gradient(&x, &y, 3, 2.0, &a).0
                - loss_and_gradient(&x, &y, 3, 2.0, &b).0)
                / 2e-6;
            assert!((fd - g[i]).abs() < 1e-7, "component {i}: {fd} vs {}", g[i]);
        }
    }

    /// Three classes, each owning one feature: a separable problem is learnt exactly, and the
    /// softmax puts most of the mass on the right class.
    #[test]
    fn recovers_a_separable_problem() {
        let mut rows = Vec::new();
        let mut y = Vec::new();
        for i in 0..30 {
            let class = i % 3;
            let noise = 0.1 * ((i * 13 % 7) as f64 / 7.0);
            rows.push(vec![(class as u32, 1.0), (3, noise)]);
            y.push(class);
        }
        let x = csr(&rows, 4);
        let (theta, _) = fit(&x, &y, 3, 100.0, LbfgsSettings::default(), None).unwrap();
        for (i, &label) in y.iter().enumerate() {
            let (idx, val) = x.row(i);
            let z = scores(&theta, 4, 3, idx, val);
            let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let p: Vec<f64> = z.iter().map(|v| (v - max).exp()).collect();
            let s: f64 = p.iter().sum();
            assert!(p[label] / s > 0.9, "row {i}: {:?}", z);
        }
        // A stronger penalty (small C) shrinks the weights.
        let (small, _) = fit(&x, &y, 3, 0.01, LbfgsSettings::default(), None).unwrap();
        let norm = |t: &[f64]| t[..12].iter().map(|v| v * v).sum::<f64>();
        assert!(norm(&small) < norm(&theta));
    }
}
