//! A linear layer over the last dimension as one `[rows, in] × [in, out]` product.

use burn::nn::Linear;
use burn::tensor::Tensor;

/// `layer` applied to `x` `[…, in]` with every leading dimension folded into the rows: one
/// product (and in the backward pass one product for the input's gradient), which gemm splits
/// over the threads. burn's `Linear::forward` keeps the leading dimensions of a
/// `[batch, time, in]` input whenever its transform policy judges the batched product to tile
/// well, and then runs a batched product that packs the shared weight again for every sequence
/// (flex: 27 % of a BERT-small training step was that packing).
pub fn linear<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    if D <= 2 {
        return layer.forward(x);
    }
    let dims = x.dims();
    let rows = dims[..D - 1].iter().product::<usize>();
    let y = layer.forward(x.reshape([rows, dims[D - 1]]));
    let mut out = dims;
    out[D - 1] = y.dims()[1];
    y.reshape(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::LinearConfig;
    use burn::tensor::{Device, TensorData, Tolerance};

    #[test]
    fn equals_burns_linear_with_its_gradients() {
        let device = Device::flex().autodiff();
        let layer = LinearConfig::new(6, 5).init(&device);
        let values: Vec<f32> = (0..4 * 3 * 6)
            .map(|i| ((i * 37 % 19) as f32 - 9.0) / 7.0)
            .collect();
        let x = || {
            Tensor::<3>::from_data(TensorData::new(values.clone(), [4, 3, 6]), &device)
                .require_grad()
        };
        let (a, b) = (x(), x());
        let ya = linear(&layer, a.clone());
        let yb = layer.forward(b.clone());
        assert_eq!(ya.dims(), [4, 3, 5]);
        ya.clone()
            .into_data()
            .assert_approx_eq::<f32>(&yb.clone().into_data(), Tolerance::absolute(1e-6));
        let (ga, gb) = ((ya * 1.5).sum().backward(), (yb * 1.5).sum().backward());
        a.grad(&ga)
            .unwrap()
            .into_data()
            .assert_approx_eq::<f32>(&b.grad(&gb).unwrap().into_data(), Tolerance::absolute(1e-6));
        let w = |g| layer.weight.val().grad(g).unwrap().into_data();
        w(&ga).assert_approx_eq::<f32>(&w(&gb), Tolerance::absolute(1e-5));
    }
}
