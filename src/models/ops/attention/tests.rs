use super::*;
use burn::nn::DropoutConfig;
use burn::tensor::{Device, TensorData, Tolerance};

const B: usize = 3;
const T: usize = 7;
const H: usize = 12;
const HEADS: usize = 3;

/// Values in (−2, 2) from a hash of their index and `seed` (not the device's seeded stream,
/// which the tests running in parallel share).
fn random(device: &Device, seed: u64) -> Tensor<3> {
    let values: Vec<f32> = (0..(B * T * H) as u64)
        .map(|i| {
            let x = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ seed.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            let x = (x ^ (x >> 31)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect();
    Tensor::from_data(TensorData::new(values, [B, T, H]), device)
}

/// The second sequence ends in two padding positions, the third in one.
fn mask(device: &Device) -> Tensor<4> {
    let mut m = vec![0.0f32; B * T];
    for (row, pad) in [(1, 2), (2, 1)] {
        for c in T - pad..T {
            m[row * T + c] = -1e9;
        }
    }
    Tensor::from_data(TensorData::new(m, [B, 1, 1, T]), device)
}

fn close(a: Tensor<3>, b: Tensor<3>) {
    a.into_data()
        .assert_approx_eq::<f32>(&b.into_data(), Tolerance::absolute(1e-5));
}

type Attention<'a> = &'a dyn Fn(Tensor<3>, Tensor<3>, Tensor<3>) -> Tensor<3>;

/// Outputs and the gradients of q, k and v, `fused` and `composed`, for the loss Σ y · w.
fn compare(fused: Attention, composed: Attention) {
    let device = Device::flex().autodiff();
    let grads_of = |f: Attention| {
        let (q, k, v) = (
            random(&device, 1).require_grad(),
            random(&device, 2).require_grad(),
            random(&device, 3).require_grad(),
        );
        let y = f(q.clone(), k.clone(), v.clone());
        let grads = (y.clone() * random(&device, 4)).sum().backward();
        let g =
            |x: &Tensor<3>| Tensor::<3>::from_data(x.grad(&grads).unwrap().into_data(), &device);
        (y, [g(&q), g(&k), g(&v)])
    };
    let (y, g) = grads_of(fused);
    let (y_ref, g_ref) = grads_of(composed);
    close(y, y_ref);
    for (a, b) in g.into_iter().zip(g_ref) {
        close(a, b);
    }
}

#[test]
fn equals_the_composition_and_its_gradients_without_dropout() {
    let dropout = DropoutConfig::new(0.0).init();
    let device = Device::flex().autodiff();
    compare(
        &|q, k, v| attention(q, k, v, mask(&device), HEADS, &dropout),
        &|q, k, v| attention_composed(q, k, v, mask(&device), HEADS, &dropout),
    );
}

#[test]
fn equals_the_composition_with_the_same_dropout_mask() {
    let p = 0.3;
    let key = 0x5eed;
    // The mask the operation draws, as a tensor: task (sequence, head) = stream `task`.
    let drop = Drop { p, key };
    let ones = vec![1.0f32; T * T];
    let mut mask_values = vec![0.0f32; B * HEADS * T * T];
    for (task, out) in mask_values.chunks_mut(T * T).enumerate() {
        drop.apply(task, &ones, out);
    }
    assert!(mask_values.contains(&0.0) && mask_values.iter().any(|&m| m > 1.0));
    let device = Device::flex().autodiff();
    let drop_mask = Tensor::<4>::from_data(TensorData::new(mask_values, [B, HEADS, T, T]), &device);
    let fused = |q: Tensor<3>, k: Tensor<3>, v: Tensor<3>| {
        Tensor::from_dispatch(<Dispatch as AttentionBackend>::fused_attention(
            q.into_dispatch(),
            k.into_dispatch(),
            v.into_dispatch(),
            mask(&device).into_dispatch(),
            HEADS,
            p,
            key,
        ))
    };
    let composed = |q: Tensor<3>, k: Tensor<3>, v: Tensor<3>| {
        let d = H / HEADS;
        let split = |y: Tensor<3>| y.reshape([B, T, HEADS, d]).swap_dims(1, 2);
        let scores = split(q)
            .matmul(split(k).swap_dims(2, 3))
            .div_scalar((d as f64).sqrt())
            + mask(&device);
        let probs = softmax(scores, 3) * drop_mask.clone();
        probs.matmul(split(v)).swap_dims(1, 2).reshape([B, T, H])
    };
    compare(&fused, &composed);
}

#[test]
fn inference_equals_the_composition() {
    let device = Device::flex();
    let dropout = DropoutConfig::new(0.1).init();
    let (q, k, v) = (random(&device, 1), random(&device, 2), random(&device, 3));
    let fused = attention(
        q.clone(),
        k.clone(),
        v.clone(),
        mask(&device),
        HEADS,
        &dropout,
    );
    let composed = attention_composed(q, k, v, mask(&device), HEADS, &dropout);
    close(fused, composed);
}
