//! The XLNet body (`XLNetModel`): word embedding, relative positional encoding, segment
//! matrix, masks, and the layers (relative attention then feed-forward, both post-LN), for the
//! content stream alone or both streams.

use super::attention::{relative_positional_encoding, XlnetRelativeAttention};
use crate::models::ops::{activation, dropout, layer_norm, linear};
use burn::module::{Module, Param};
use burn::nn::activation::Activation;
use burn::nn::{Dropout, Embedding, LayerNorm, Linear};
use burn::tensor::{Int, Tensor};

#[derive(Module, Debug)]
pub struct XlnetFeedForward {
    pub layer_1: Linear,
    pub layer_2: Linear,
    pub layer_norm: LayerNorm,
    pub activation: Activation,
    pub dropout: Dropout,
}

impl XlnetFeedForward {
    /// `layer_1` → activation → dropout → `layer_2` → dropout → residual → LayerNorm.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let y = dropout(
            &self.dropout,
            activation(&self.activation, linear(&self.layer_1, x.clone())),
        );
        let y = dropout(&self.dropout, linear(&self.layer_2, y));
        layer_norm(&self.layer_norm, y + x)
    }
}

#[derive(Module, Debug)]
pub struct XlnetLayer {
    pub rel_attn: XlnetRelativeAttention,
    pub ff: XlnetFeedForward,
}

#[derive(Module, Debug)]
pub struct XlnetModel {
    /// `[vocab, d_model]`.
    pub word_embedding: Embedding,
    /// `[1, 1, d_model]`: where the query stream starts at each target.
    pub mask_emb: Param<Tensor<3>>,
    pub layer: Vec<XlnetLayer>,
    pub dropout: Dropout,
    pub clamp_len: i64,
}

/// What the content stream yields, batch-first: `hidden_states[0]` and `hidden_states[-1]` of
/// transformers (`[B, T, d_model]` each).
#[derive(Debug, Clone)]
pub struct XlnetForward {
    pub embedding_output: Tensor<3>,
    pub last_hidden_state: Tensor<3>,
}

/// Both streams after the last layer: content `h` `[B, T, d_model]` and query `g`
/// `[B, M, d_model]` (one row per target of `target_mapping`).
#[derive(Debug, Clone)]
pub struct XlnetTwoStream {
    pub h: Tensor<3>,
    pub g: Tensor<3>,
}

/// transformers' masks as `[B, 1, T, T]` (1 = query i may not attend key j): padding keys
/// (`attention_mask` `[B, T]`, 1 = token) plus `perm_mask` `[B, T, T]` if given. The first is
/// the content stream's mask (`non_tgt_mask`: every position may always see itself), the second
/// the query stream's (`attn_mask`: a position sees itself only if `perm_mask` allows).
pub fn attention_masks(
    attention_mask: Tensor<2>,
    perm_mask: Option<Tensor<3>>,
) -> (Tensor<4>, Tensor<4>) {
    let [b, t] = attention_mask.dims();
    let device = attention_mask.device();
    let pad = attention_mask.neg().add_scalar(1.0).reshape([b, 1, t]);
    let data = match perm_mask {
        Some(p) => p + pad,
        None => pad.repeat_dim(1, t),
    };
    let attn = data.greater_elem(0.0).float();
    let eye = Tensor::<2>::eye(t, &device).unsqueeze::<3>();
    let non_tgt = (attn.clone() - eye).greater_elem(0.0).float();
    (non_tgt.unsqueeze_dim(1), attn.unsqueeze_dim(1))
}

/// `[B, 1, T, T]`: 1 where the segment ids of query i and key j differ (only equality matters).
fn segment_difference(token_type_ids: Tensor<2, Int>) -> Tensor<4> {
    let [b, t] = token_type_ids.dims();
    let rows = token_type_ids.clone().reshape([b, t, 1]).repeat_dim(2, t);
    let cols = token_type_ids.reshape([b, 1, t]).repeat_dim(1, t);
    rows.not_equal(cols).float().unsqueeze_dim(1)
}

impl XlnetModel {
    fn d_model(&self) -> usize {
        self.mask_emb.dims()[2]
    }

    /// The content stream: `input_ids`, `token_type_ids` `[B, T]`, `attention_mask` `[B, T]`
    /// (1 = token, 0 = padding, masked as a key for every query as transformers does).
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        attention_mask: Tensor<2>,
    ) -> XlnetForward {
        let [_, t] = input_ids.dims();
        let device = input_ids.device();
        let embedding_output = dropout(&self.dropout, self.word_embedding.forward(input_ids));
        let pos_emb = dropout(
            &self.dropout,
            relative_positional_encoding(t, t, self.d_model(), self.clamp_len, &device),
        );
        let seg = segment_difference(token_type_ids);
        let (mask_h, _) = attention_masks(attention_mask, None);
        let mut h = embedding_output.clone();
        for layer in &self.layer {
            h = layer
                .rel_attn
                .forward(h, pos_emb.clone(), seg.clone(), mask_h.clone());
            h = layer.ff.forward(h);
        }
        XlnetForward {
            embedding_output,
            last_hidden_state: dropout(&self.dropout, h),
        }
    }

    /// Both streams, as in permutation-LM pre-training: `perm_mask` `[B, T, T]` (1 = position i
    /// may not attend to j) and `target_mapping` `[B, M, T]` (one-hot rows: the M predicted
    /// positions). The query stream starts from `mask_emb` and never sees its target's content.
    pub fn forward_two_stream(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        attention_mask: Tensor<2>,
        perm_mask: Tensor<3>,
        target_mapping: Tensor<3>,
    ) -> XlnetTwoStream {
        let [b, t] = input_ids.dims();
        let [_, m, _] = target_mapping.dims();
        let device = input_ids.device();
        let d = self.d_model();
        let mut h = dropout(&self.dropout, self.word_embedding.forward(input_ids));
        let mut g = dropout(
            &self.dropout,
            self.mask_emb.val().repeat_dim(0, b).repeat_dim(1, m),
        );
        let pos_emb = dropout(
            &self.dropout,
            relative_positional_encoding(t, t, d, self.clamp_len, &device),
        );
        let seg = segment_difference(token_type_ids);
        let (mask_h, mask_g) = attention_masks(attention_mask, Some(perm_mask));
        for layer in &self.layer {
            let (h2, g2) = layer.rel_attn.forward_two_stream(
                h,
                g,
                pos_emb.clone(),
                seg.clone(),
                mask_h.clone(),
                mask_g.clone(),
                target_mapping.clone(),
            );
            h = layer.ff.forward(h2);
            g = layer.ff.forward(g2);
        }
        XlnetTwoStream {
            h: dropout(&self.dropout, h),
            g: dropout(&self.dropout, g),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::xlnet::XlnetConfig;
    use burn::tensor::{Device, TensorData};

    fn model(d: &Device) -> XlnetModel {
        d.seed(7);
        let mut c = XlnetConfig::new(40, 16, 2, 4, 32, &[]);
        c.dropout = 0.0;
        c.initializer_range = 0.3;
        c.init_model(d)
    }

    fn ids(v: &[i64], d: &Device) -> Tensor<2, Int> {
        Tensor::from_data(TensorData::new(v.to_vec(), [1, v.len()]), d)
    }

    fn floats<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn the_query_stream_does_not_see_its_target() {
        let d = Device::flex();
        let m = model(&d);
        let t = 6;
        let target = 3;
        // Nobody sees the target's content (as the permutation-LM collator masks a target for
        // itself and every later position in the factorisation order); one prediction, at 3.
        let mut perm = vec![0f32; t * t];
        for i in 0..t {
            perm[i * t + target] = 1.0;
        }
        let perm = Tensor::<3>::from_data(TensorData::new(perm, [1, t, t]), &d);
        let mut tm = vec![0f32; t];
        tm[target] = 1.0;
        let tm = Tensor::<3>::from_data(TensorData::new(tm, [1, 1, t]), &d);
        let run = |v: &[i64]| {
            let x = ids(v, &d);
            m.forward_two_stream(
                x.clone(),
                x.zeros_like(),
                Tensor::ones([1, t], &d),
                perm.clone(),
                tm.clone(),
            )
        };
        let a = run(&[4, 9, 13, 21, 8, 2]);
        let b = run(&[4, 9, 13, 35, 8, 2]);
        assert_eq!(a.g.dims(), [1, 1, 16]);
        let g_diff = max_diff(&floats(a.g), &floats(b.g));
        assert!(g_diff < 1e-6, "query stream changed by {g_diff}");
        // The content stream at the target does see its own token.
        let h_diff = max_diff(&floats(a.h), &floats(b.h));
        assert!(h_diff > 1e-3, "content stream unchanged ({h_diff})");
        // Without the permutation mask the query stream would see it.
        let open = |v: &[i64]| {
            let x = ids(v, &d);
            m.forward_two_stream(
                x.clone(),
                x.zeros_like(),
                Tensor::ones([1, t], &d),
                Tensor::zeros([1, t, t], &d),
                tm.clone(),
            )
            .g
        };
        let seen = max_diff(
            &floats(open(&[4, 9, 13, 21, 8, 2])),
            &floats(open(&[4, 9, 13, 35, 8, 2])),
        );
        assert!(seen > 1e-3, "{seen}");
    }

    #[test]
    fn the_content_stream_of_two_streams_is_the_plain_forward() {
        let d = Device::flex();
        let m = model(&d);
        let x = ids(&[4, 9, 13, 21, 8, 2, 0], &d);
        let types =
            Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 0, 0, 1, 1, 2, 2], [1, 7]), &d);
        let mask = Tensor::<2>::from_data(
            TensorData::new(vec![1f32, 1., 1., 1., 1., 1., 0.], [1, 7]),
            &d,
        );
        let plain = m.forward(x.clone(), types.clone(), mask.clone());
        let two = m.forward_two_stream(
            x,
            types,
            mask,
            Tensor::zeros([1, 7, 7], &d),
            Tensor::from_data(
                TensorData::new(vec![0f32, 1., 0., 0., 0., 0., 0.], [1, 1, 7]),
                &d,
            ),
        );
        let diff = max_diff(&floats(plain.last_hidden_state), &floats(two.h));
        assert!(diff < 1e-6, "{diff}");
    }

    #[test]
    fn left_padding_does_not_change_the_tokens_outputs() {
        let d = Device::flex();
        let m = model(&d);
        let short = m.forward(
            ids(&[9, 13, 21, 4, 3], &d),
            ids(&[0, 0, 0, 0, 2], &d),
            Tensor::ones([1, 5], &d),
        );
        let padded = m.forward(
            ids(&[5, 5, 9, 13, 21, 4, 3], &d),
            ids(&[3, 3, 0, 0, 0, 0, 2], &d),
            Tensor::from_data(
                TensorData::new(vec![0f32, 0., 1., 1., 1., 1., 1.], [1, 7]),
                &d,
            ),
        );
        let a = floats(short.last_hidden_state);
        let b = floats(padded.last_hidden_state);
        let diff = max_diff(&a, &b[2 * 16..]);
        assert!(diff < 1e-5, "{diff}");
    }
}
