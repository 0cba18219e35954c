//! XLNet's relative multi-head attention (`XLNetRelativeAttention`): content term `ac`,
//! position term `bd` (through `rel_shift`), segment term `ef`, scaled, masked, softmax; the
//! output projection `o`, residual and post-LayerNorm.

use crate::models::ops::{dropout, layer_norm};
use burn::module::{Module, Param};
use burn::nn::{Dropout, LayerNorm};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};

#[derive(Module, Debug)]
pub struct XlnetRelativeAttention {
    /// `[d_model, n_head, d_head]` each, applied as `einsum("ibh,hnd->ibnd")`.
    pub q: Param<Tensor<3>>,
    pub k: Param<Tensor<3>>,
    pub v: Param<Tensor<3>>,
    /// Applied back as `einsum("ibnd,hnd->ibh")`.
    pub o: Param<Tensor<3>>,
    /// Projects the relative positional encoding.
    pub r: Param<Tensor<3>>,
    /// `[n_head, d_head]` each.
    pub r_r_bias: Param<Tensor<2>>,
    pub r_s_bias: Param<Tensor<2>>,
    pub r_w_bias: Param<Tensor<2>>,
    /// `[2, n_head, d_head]`: same segment (0) / different segment (1).
    pub seg_embed: Param<Tensor<3>>,
    pub layer_norm: LayerNorm,
    pub dropout: Dropout,
}

/// `x` `[batch, time, d_model]` through `w` `[d_model, n_head, d_head]`: `[batch, n_head, time,
/// d_head]`.
pub(crate) fn heads(x: Tensor<3>, w: &Param<Tensor<3>>) -> Tensor<4> {
    let [b, t, d] = x.dims();
    let [_, n, h] = w.dims();
    x.reshape([b * t, d])
        .matmul(w.val().reshape([d, n * h]))
        .reshape([b, t, n, h])
        .swap_dims(1, 2)
}

/// Transformer-XL's relative shift on `[batch, n_head, qlen, rlen]` scores (`rel_shift_bnij`):
/// reshape to `[.., rlen, qlen]`, drop the first row, reshape to `[.., qlen, rlen - 1]`, keep
/// the first `klen` columns. With `rlen = klen + qlen` this puts the score for relative distance
/// `i - j` at `[i, j]`.
pub fn rel_shift(x: Tensor<4>, klen: usize) -> Tensor<4> {
    let [b, n, q, r] = x.dims();
    x.reshape([b, n, r, q])
        .slice([0..b, 0..n, 1..r, 0..q])
        .reshape([b, n, q, r - 1])
        .slice([0..b, 0..n, 0..q, 0..klen])
}

/// `[sin, cos]` of the relative positions `klen, klen - 1, …, -qlen + 1` (clamped to
/// ±`clamp_len` when positive) against `1 / 10000^(2i / d_model)`: `[klen + qlen, d_model]`.
pub fn relative_positional_encoding(
    qlen: usize,
    klen: usize,
    d_model: usize,
    clamp_len: i64,
    device: &Device,
) -> Tensor<2> {
    let half = d_model / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| 1.0 / 10000f32.powf((2 * i) as f32 / d_model as f32))
        .collect();
    let mut data = Vec::with_capacity((klen + qlen) * d_model);
    for p in 0..klen + qlen {
        let mut pos = klen as f32 - p as f32;
        if clamp_len > 0 {
            pos = pos.clamp(-(clamp_len as f32), clamp_len as f32);
        }
        let angles: Vec<f32> = inv_freq.iter().map(|f| pos * f).collect();
        data.extend(angles.iter().map(|a| a.sin()));
        data.extend(angles.iter().map(|a| a.cos()));
    }
    Tensor::from_data(TensorData::new(data, [klen + qlen, d_model]), device)
}

impl XlnetRelativeAttention {
    /// Attention of query heads `q` `[B, N, Tq, H]` over keys/values `k`, `v` `[B, N, T, H]`,
    /// with position keys `k_r` `[B, N, Tq + T, H]`, `seg_diff` `[B, 1, Tq, T]` (1 where the two
    /// tokens' segments differ) and `mask` `[B, 1, Tq, T]` (1 = may not attend): `[B, N, Tq, H]`.
    pub fn core(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        k_r: Tensor<4>,
        seg_diff: Tensor<4>,
        mask: Tensor<4>,
    ) -> Tensor<4> {
        let [b, n, _, h] = q.dims();
        let klen = k.dims()[2];
        let bias = |p: &Param<Tensor<2>>| p.val().reshape([1, n, 1, h]);
        let ac = (q.clone() + bias(&self.r_w_bias)).matmul(k.swap_dims(2, 3));
        let bd = rel_shift(
            (q.clone() + bias(&self.r_r_bias)).matmul(k_r.swap_dims(2, 3)),
            klen,
        );
        // ef[i, j] = (q_i + r_s_bias) · seg_embed[seg_diff[i, j]].
        let seg = self
            .seg_embed
            .val()
            .permute([1, 2, 0])
            .reshape([1, n, h, 2])
            .repeat_dim(0, b);
        let e = (q + bias(&self.r_s_bias)).matmul(seg);
        let [_, _, tq, _] = e.dims();
        let same = e.clone().slice([0..b, 0..n, 0..tq, 0..1]);
        let diff = e.slice([0..b, 0..n, 0..tq, 1..2]);
        let ef = same.clone() + seg_diff * (diff - same);
        let score = (ac + bd + ef).mul_scalar(1.0 / (h as f64).sqrt()) - mask.mul_scalar(1e30);
        // Shifted by the row maximum as torch's softmax is, so a fully masked row is uniform.
        let score = score.clone() - score.max_dim(3);
        let prob = dropout(&self.dropout, softmax(score, 3));
        prob.matmul(v)
    }

    /// `o` back to `[B, T, d_model]`, dropout, residual `h`, LayerNorm.
    pub fn post_attention(&self, h: Tensor<3>, attn_vec: Tensor<4>) -> Tensor<3> {
        let [b, n, t, dh] = attn_vec.dims();
        let [d, _, _] = self.o.dims();
        let out = attn_vec
            .swap_dims(1, 2)
            .reshape([b * t, n * dh])
            .matmul(self.o.val().reshape([d, n * dh]).transpose())
            .reshape([b, t, d]);
        layer_norm(&self.layer_norm, dropout(&self.dropout, out) + h)
    }

    /// Position keys `[B, N, R, H]` from the encoding `pos_emb` `[R, d_model]`.
    pub fn position_keys(&self, pos_emb: Tensor<2>, batch: usize) -> Tensor<4> {
        heads(pos_emb.unsqueeze::<3>(), &self.r).repeat_dim(0, batch)
    }

    /// The content stream alone: `h` `[B, T, d_model]` → `[B, T, d_model]`.
    pub fn forward(
        &self,
        h: Tensor<3>,
        pos_emb: Tensor<2>,
        seg_diff: Tensor<4>,
        mask: Tensor<4>,
    ) -> Tensor<3> {
        let [b, _, _] = h.dims();
        let k_r = self.position_keys(pos_emb, b);
        let q = heads(h.clone(), &self.q);
        let k = heads(h.clone(), &self.k);
        let v = heads(h.clone(), &self.v);
        let vec = self.core(q, k, v, k_r, seg_diff, mask);
        self.post_attention(h, vec)
    }

    /// Both streams: the content stream `h` `[B, T, d]` (mask `mask_h`) and the query stream `g`
    /// `[B, M, d]` for `M` targets, scattered to their positions by `target_mapping` `[B, M, T]`
    /// and gathered back after attending with `mask_g`; both use the keys and values of `h`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_two_stream(
        &self,
        h: Tensor<3>,
        g: Tensor<3>,
        pos_emb: Tensor<2>,
        seg_diff: Tensor<4>,
        mask_h: Tensor<4>,
        mask_g: Tensor<4>,
        target_mapping: Tensor<3>,
    ) -> (Tensor<3>, Tensor<3>) {
        let [b, _, _] = h.dims();
        let k_r = self.position_keys(pos_emb, b);
        let k = heads(h.clone(), &self.k);
        let v = heads(h.clone(), &self.v);
        let q_h = heads(h.clone(), &self.q);
        let vec_h = self.core(
            q_h,
            k.clone(),
            v.clone(),
            k_r.clone(),
            seg_diff.clone(),
            mask_h,
        );
        let out_h = self.post_attention(h, vec_h);
        // einsum("mbnd,mlb->lbnd"): targets to positions, and back with "lbnd,mlb->mbnd".
        let tm = target_mapping.unsqueeze_dim::<4>(1);
        let q_g = tm.clone().swap_dims(2, 3).matmul(heads(g.clone(), &self.q));
        let vec_g = tm.matmul(self.core(q_g, k, v, k_r, seg_diff, mask_g));
        let out_g = self.post_attention(g, vec_g);
        (out_h, out_g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rel_shift_puts_distance_i_minus_j_at_i_j() {
        // Score at column p is the position klen - p; after the shift [i, j] must hold i - j.
        let d = Device::flex();
        let (q, k) = (4usize, 4usize);
        let r = q + k;
        let data: Vec<f32> = (0..q)
            .flat_map(|_| (0..r).map(move |p| k as f32 - p as f32))
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(data, [1, 1, q, r]), &d);
        let got = rel_shift(x, k).into_data().try_to_vec::<f32>().unwrap();
        for i in 0..q {
            for j in 0..k {
                assert_eq!(got[i * k + j], i as f32 - j as f32, "[{i}, {j}]");
            }
        }
    }

    #[test]
    fn positional_encoding_is_sin_then_cos_of_clamped_distances() {
        let d = Device::flex();
        let (q, k, dm) = (3usize, 3usize, 4usize);
        let at = |clamp: i64| {
            relative_positional_encoding(q, k, dm, clamp, &d)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        let free = at(-1);
        assert_eq!(free.len(), (q + k) * dm);
        // Row p is position k - p: 3, 2, 1, 0, -1, -2; frequencies 1 and 1/100.
        for (p, pos) in [3f32, 2., 1., 0., -1., -2.].iter().enumerate() {
            let row = &free[p * dm..(p + 1) * dm];
            let want = [pos.sin(), (pos / 100.).sin(), pos.cos(), (pos / 100.).cos()];
            for (a, b) in row.iter().zip(want) {
                assert!((a - b).abs() < 1e-6, "row {p}: {row:?} vs {want:?}");
            }
        }
        // clamp_len 1: positions 1, 1, 1, 0, -1, -1.
        let clamped = at(1);
        assert_eq!(clamped[..dm], free[2 * dm..3 * dm]);
        assert_eq!(clamped[dm..2 * dm], free[2 * dm..3 * dm]);
        assert_eq!(clamped[5 * dm..], free[4 * dm..5 * dm]);
    }
}
