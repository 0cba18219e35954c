use super::*;
use crate::models::ops::test_values::normal;
use burn::module::{Module, Param};
use burn::nn::LayerNormConfig;
use burn::tensor::{Device, TensorData};

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_within(what, got, want, 1e-5)
}

fn assert_within(what: &str, got: &[f32], want: &[f32], tolerance: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tolerance * w.abs().max(1.0),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

fn data(shape: [usize; 3], seed: u64, scale: f32, shift: f32) -> TensorData {
    let v = normal(shape.iter().product(), seed);
    TensorData::new(v.into_iter().map(|v| v * scale + shift).collect(), shape)
}

/// A layer over `d` with random γ (around 1) and β, or none.
fn layer(d: usize, bias: bool, epsilon: f64, seed: u64, device: &Device) -> LayerNorm {
    let mut layer = LayerNormConfig::new(d)
        .with_bias(bias)
        .with_epsilon(epsilon)
        .init(device);
    let v = |seed, shift| {
        let v: Vec<f32> = normal(d, seed)
            .into_iter()
            .map(|v| v * 0.5 + shift)
            .collect();
        Param::from_tensor(Tensor::<1>::from_data(TensorData::new(v, [d]), device))
    };
    layer.gamma = v(seed, 1.0);
    layer.beta = bias.then(|| v(seed + 1, 0.0));
    layer
}

/// Output and gradients (x, γ, β; `None` where none was asked for) of `sum(y · w)`, through
/// this module's operation or burn's layer.
type Run = (Vec<f32>, [Option<Vec<f32>>; 3]);

fn run(layer: &LayerNorm, x: &TensorData, w: &TensorData, ours: bool) -> Run {
    let device = Device::flex().autodiff();
    let x = Tensor::<3>::from_data(x.clone(), &device).require_grad();
    let y = if ours {
        layer_norm(layer, x.clone())
    } else {
        layer.forward(x.clone())
    };
    let w = Tensor::<3>::from_data(w.clone(), &device);
    let grads = (y.clone() * w).sum().backward();
    let grad = |t: Option<Tensor<1>>| t.and_then(|t| t.grad(&grads)).map(values);
    (
        values(y),
        [
            x.grad(&grads).map(values),
            grad(Some(layer.gamma.val())),
            grad(layer.beta.as_ref().map(|b| b.val())),
        ],
    )
}

fn compare(layer: &LayerNorm, shape: [usize; 3], seed: u64) -> Run {
    // Rows far from zero and spread: the mean and the scale matter.
    let x = data(shape, seed, 3.0, 2.0);
    let w = data(shape, seed + 50, 1.0, 0.0);
    let ours = run(layer, &x, &w, true);
    let burns = run(layer, &x, &w, false);
    assert_close("y", &ours.0, &burns.0);
    // dγ and dβ are sums over the rows, in f32 in both: beyond 100 rows, the rounding of those
    // sums (about √rows · 1e-6 in burn's) is allowed for (and the sums checked in f64 below).
    let rows = (shape[0] * shape[1]) as f32;
    let sums = 1e-5 * (rows / 100.0).sqrt().max(1.0);
    for ((name, tolerance), (got, want)) in [("dx", 1e-5), ("dgamma", sums), ("dbeta", sums)]
        .into_iter()
        .zip(ours.1.iter().zip(&burns.1))
    {
        assert_eq!(got.is_some(), want.is_some(), "{name} asked for");
        if let (Some(got), Some(want)) = (got, want) {
            assert_within(name, got, want, tolerance);
        }
    }
    ours
}

#[test]
fn the_output_and_every_gradient_match_burns_layer() {
    let device = Device::flex().autodiff();
    // One task; several tasks (dγ, dβ summed over them); no β; a larger ε.
    for (shape, bias, eps) in [
        ([3, 5, 37], true, 1e-5),
        ([16, 70, 41], true, 1e-12),
        ([3, 5, 37], false, 1e-5),
        ([2, 9, 16], true, 0.5),
    ] {
        let layer = layer(shape[2], bias, eps, 3, &device);
        assert_eq!(epsilon(&layer), eps);
        let (y, [dx, dgamma, dbeta]) = compare(&layer, shape, 7);
        assert!(dx.is_some() && dgamma.is_some() && dbeta.is_some() == bias);
        // Not a trivial comparison: the output is normalized (not the input) and dγ is not 0.
        assert!(y.iter().any(|v| v.abs() > 1.5) && y.iter().all(|v| v.abs() < 20.0));
        assert!(dgamma.unwrap().iter().any(|v| v.abs() > 1e-2));
    }
}

/// dγ and dβ of `sum(y · w)` in f64.
fn exact_params(layer: &LayerNorm, x: &TensorData, w: &TensorData) -> (Vec<f64>, Vec<f64>) {
    let gamma = layer.gamma.val();
    let d = gamma.dims()[0];
    let eps = epsilon(layer);
    let (x, w) = (
        x.try_to_vec::<f32>().unwrap(),
        w.try_to_vec::<f32>().unwrap(),
    );
    let (mut dgamma, mut dbeta) = (vec![0.0; d], vec![0.0; d]);
    for (x, w) in x.chunks(d).zip(w.chunks(d)) {
        let x: Vec<f64> = x.iter().map(|&v| v.into()).collect();
        let mean = x.iter().sum::<f64>() / d as f64;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
        for j in 0..d {
            dgamma[j] += f64::from(w[j]) * (x[j] - mean) / (var + eps).sqrt();
            dbeta[j] += f64::from(w[j]);
        }
    }
    (dgamma, dbeta)
}

#[test]
fn parameter_gradients_over_many_rows_are_near_the_exact_sums() {
    let device = Device::flex().autodiff();
    let shape = [16, 70, 41];
    let layer = layer(41, true, 1e-12, 3, &device);
    let (x, w) = (data(shape, 7, 3.0, 2.0), data(shape, 57, 1.0, 0.0));
    let (_, [_, dgamma, dbeta]) = run(&layer, &x, &w, true);
    let (exact_dgamma, exact_dbeta) = exact_params(&layer, &x, &w);
    for (name, got, exact) in [
        ("dgamma", dgamma.unwrap(), exact_dgamma),
        ("dbeta", dbeta.unwrap(), exact_dbeta),
    ] {
        for (j, (&g, &e)) in got.iter().zip(&exact).enumerate() {
            // burn's own sums are 1.1e-5 off here.
            assert!(
                (f64::from(g) - e).abs() <= 1.5e-5,
                "{name}[{j}]: {g} vs {e}"
            );
        }
    }
}

#[test]
fn a_frozen_layer_passes_only_the_inputs_gradient() {
    let device = Device::flex().autodiff();
    let frozen = layer(37, true, 1e-5, 5, &device).freeze();
    let (_, [dx, dgamma, dbeta]) = compare(&frozen, [3, 5, 37], 9);
    assert!(dx.is_some() && dgamma.is_none() && dbeta.is_none());
    // Nothing asks for a gradient: the same output, untracked.
    let x = Tensor::<3>::from_data(data([3, 5, 37], 8, 2.0, 1.0), &device);
    let y = layer_norm(&frozen, x.clone());
    assert!(!y.is_require_grad());
    assert_close("y", &values(y), &values(frozen.forward(x)));
    // Trainable γ and β, an input that asks for no gradient.
    let layer = layer(37, true, 1e-5, 5, &device);
    let x = Tensor::<3>::from_data(data([3, 5, 37], 1, 1.0, 0.0), &device);
    let w = Tensor::<3>::from_data(data([3, 5, 37], 2, 1.0, 0.0), &device);
    let grads = |ours: bool| {
        let y = if ours {
            layer_norm(&layer, x.clone())
        } else {
            layer.forward(x.clone())
        };
        let grads = (y * w.clone()).sum().backward();
        let gamma = values(layer.gamma.val().grad(&grads).unwrap());
        let beta = values(layer.beta.as_ref().unwrap().val().grad(&grads).unwrap());
        (gamma, beta)
    };
    let ((gamma, beta), (gamma_burn, beta_burn)) = (grads(true), grads(false));
    assert_close("dgamma", &gamma, &gamma_burn);
    assert_close("dbeta", &beta, &beta_burn);
}

#[test]
fn inference_matches_burns_layer() {
    let device = Device::flex();
    for (shape, bias) in [([3, 5, 37], true), ([8, 64, 96], false)] {
        let layer = layer(shape[2], bias, 1e-5, 11, &device);
        let x = Tensor::<3>::from_data(data(shape, 4, 3.0, -1.0), &device);
        let y = values(layer_norm(&layer, x.clone()));
        assert_close("y", &y, &values(layer.forward(x)));
    }
}

#[test]
fn the_result_does_not_depend_on_the_number_of_threads() {
    let device = Device::flex().autodiff();
    let layer = layer(48, true, 1e-5, 2, &device);
    let x = data([32, 40, 48], 3, 1.0, 0.0);
    let w = data([32, 40, 48], 4, 1.0, 0.0);
    let on = |threads| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| run(&layer, &x, &w, true))
    };
    assert_eq!(on(1), on(3));
}
