//! Linear SVM, one-vs-rest, as scikit-learn's `LinearSVC` (liblinear's `L2R_L2LOSS_SVC_DUAL`)
//! fits it: squared hinge loss, `min ½||w||² + C Σ max(0, 1 − y_i w·x_i)²` with the intercept as
//! an extra feature of value 1 (penalised, `intercept_scaling = 1`), solved by dual coordinate
//! descent (Hsieh et al. 2008, Algorithm 1 without shrinking): `D_ii = 1/(2C)`, no upper bound,
//! a seeded random order each pass, stopping when the projected gradient's range over a pass
//! falls below `tol` or after `max_iter` passes.

use super::tfidf::Csr;
use rand::rngs::ChaCha8Rng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// Fit one binary problem (`positive[i]`: is row `i` in the class); returns `w` (`cols` values)
/// and the bias, and the passes used.
fn fit_binary(
    x: &Csr,
    positive: &[bool],
    c: f64,
    tol: f64,
    max_iter: usize,
    seed: u64,
) -> (Vec<f64>, f64, usize) {
    let n = x.rows();
    let diag = 0.5 / c;
    let mut w = vec![0.0; x.cols];
    let mut bias = 0.0;
    let mut alpha = vec![0.0; n];
    let qd: Vec<f64> = (0..n)
        .map(|i| x.row(i).1.iter().map(|v| v * v).sum::<f64>() + 1.0 + diag)
        .collect();
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut passes = 0;
    while passes < max_iter {
        passes += 1;
        order.shuffle(&mut rng);
        let (mut pg_max, mut pg_min) = (f64::NEG_INFINITY, f64::INFINITY);
        for &i in &order {
            let yi = if positive[i] { 1.0 } else { -1.0 };
            let (idx, val) = x.row(i);
            let wx = bias
                + idx
                    .iter()
                    .zip(val)
                    .map(|(&j, &v)| w[j as usize] * v)
                    .sum::<f64>();
            let g = yi * wx - 1.0 + alpha[i] * diag;
            let pg = if alpha[i] == 0.0 { g.min(0.0) } else { g };
            pg_max = pg_max.max(pg);
            pg_min = pg_min.min(pg);
            if pg.abs() > 1e-12 {
                let old = alpha[i];
                alpha[i] = (old - g / qd[i]).max(0.0);
                let d = (alpha[i] - old) * yi;
                for (&j, &v) in idx.iter().zip(val) {
                    w[j as usize] += d * v;
                }
                bias += d;
            }
        }
        if pg_max - pg_min <= tol {
            break;
        }
    }
    (w, bias, passes)
}

/// Fit one-vs-rest for `k` classes; returns `theta` in the layout of
/// [`super::logreg::scores`] (`W` row-major, then `b`) and the most passes any class took.
pub fn fit(
    x: &Csr,
    y: &[usize],
    k: usize,
    c: f64,
    tol: f64,
    max_iter: usize,
    seed: u64,
) -> (Vec<f64>, usize) {
    let mut theta = vec![0.0; k * x.cols + k];
    let mut most = 0;
    for class in 0..k {
        let positive: Vec<bool> = y.iter().map(|&l| l == class).collect();
        let (w, b, passes) = fit_binary(x, &positive, c, tol, max_iter, seed ^ class as u64);
        theta[class * x.cols..(class + 1) * x.cols].copy_from_slice(&w);
        theta[k * x.cols + class] = b;
        most = most.max(passes);
    }
    (theta, most)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points on either side of x0 = 0.5 with margin: the SVM separates them and the primal
    /// optimum's KKT condition holds (w = 2C Σ ξ_i y_i x_i over margin violators ⇒ the
    /// stationarity residual is small).
    #[test]
    fn separates_and_is_optimal() {
        let mut m = Csr {
            indptr: vec![0],
            cols: 2,
            ..Csr::default()
        };
        let mut pos = Vec::new();
        for i in 0..20 {
            let a = i as f64 / 19.0;
            let x0 = if i % 2 == 0 {
                0.1 + 0.3 * a
            } else {
                0.6 + 0.3 * a
            };
            m.indices.extend([0, 1]);
            m.values.extend([x0, 1.0 - a]);
            m.indptr.push(m.indices.len());
            pos.push(i % 2 == 1);
        }
        let c = 10.0;
        let (w, b, _) = fit_binary(&m, &pos, c, 1e-8, 100_000, 1);
        let mut grad = [w[0], w[1], b];
        for (i, &is_pos) in pos.iter().enumerate() {
            let (idx, val) = m.row(i);
            let y = if is_pos { 1.0 } else { -1.0 };
            let f = b + idx
                .iter()
                .zip(val)
                .map(|(&j, &v)| w[j as usize] * v)
                .sum::<f64>();
            assert_eq!(f > 0.0, is_pos, "row {i}: {f}");
            let xi = (1.0 - y * f).max(0.0);
            grad[0] -= 2.0 * c * xi * y * val[0];
            grad[1] -= 2.0 * c * xi * y * val[1];
            grad[2] -= 2.0 * c * xi * y;
        }
        for g in grad {
            assert!(g.abs() < 1e-5, "{grad:?}");
        }
    }
}
