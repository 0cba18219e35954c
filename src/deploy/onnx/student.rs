//! The BiLSTM student as an ONNX graph: `Gather` of the embeddings, ONNX's own bidirectional
//! `LSTM` operator with each row's length as `sequence_lens` (so the forward direction ends and
//! the backward direction starts on each row's last token, as kdrun's masked recurrence does),
//! and the head (`tang`: the final states through a ReLU layer; `seed`: per-step logits, then
//! the maximum over the real tokens).
//!
//! Inputs `input_ids` and `attention_mask` (int64, `[batch, sequence]`, padded on the right);
//! output `logits` (float, `[batch, classes]`).

use super::graph::{Attr, Dim, Elem, Graph};
use crate::models::BiLstmClassifier;
use anyhow::{anyhow, Result};
use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::Tensor;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::ModelProto;

/// A tensor's values, row-major.
fn floats<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow!("cannot read a weight for export: {e:?}"))
}

fn param<const D: usize>(p: &Param<Tensor<D>>) -> Result<Vec<f32>> {
    floats(p.val())
}

/// `Linear` (weight `[in, out]`) as MatMul + Add.
fn linear(g: &mut Graph, x: &str, name: &str, l: &Linear) -> Result<String> {
    let [d_in, d_out] = l.weight.val().dims();
    let bias = l.bias.as_ref().map(param).transpose()?;
    Ok(g.linear(x, name, &param(&l.weight)?, [d_in, d_out], bias.as_deref()))
}

/// ONNX's gate order (input, output, forget, cell) as indices into kdrun's (PyTorch's: input,
/// forget, cell, output).
const ONNX_GATES: [usize; 4] = [0, 3, 1, 2];

/// One direction's `W` `[4H, in]`, `R` `[4H, H]` and `Wb` (`Rb` is zero: kdrun's hidden
/// projection has no bias) in ONNX's gate order, from kdrun's `[in, 4H]` weights.
fn lstm_direction(
    d: &crate::models::bilstm::LstmDirection,
) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    let h = d.d_hidden;
    let [d_in, _] = d.input.weight.val().dims();
    let wi = param(&d.input.weight)?; // [in, 4H]
    let wh = param(&d.hidden.weight)?; // [H, 4H]
    let bi = d
        .input
        .bias
        .as_ref()
        .map(param)
        .transpose()?
        .unwrap_or_else(|| vec![0.0; 4 * h]);
    // Row r of the transposed, reordered matrix is column `kdrun gate block + j` of the source.
    let reorder = |src: &[f32], rows_in: usize| -> Vec<f32> {
        let mut out = Vec::with_capacity(4 * h * rows_in);
        for &gate in &ONNX_GATES {
            for j in 0..h {
                let col = gate * h + j;
                out.extend((0..rows_in).map(|r| src[r * 4 * h + col]));
            }
        }
        out
    };
    let bias = ONNX_GATES
        .iter()
        .flat_map(|&gate| bi[gate * h..(gate + 1) * h].iter().copied())
        .collect();
    Ok((reorder(&wi, d_in), reorder(&wh, h), bias))
}

/// The student `model` as an ONNX model; `metadata` goes into the model's properties.
pub fn bilstm_classifier(
    model: &BiLstmClassifier,
    metadata: &[(&str, String)],
) -> Result<ModelProto> {
    let mut g = Graph::new("kdrun_bilstm_student");
    let axes = [Dim::Named("batch"), Dim::Named("sequence")];
    let ids = g.input("input_ids", Elem::I64, &axes);
    let mask = g.input("attention_mask", Elem::I64, &axes);
    let table = model.embedding.weight.val();
    let [vocab, dim] = table.dims();
    let table = g.weight("embedding.weight", &[vocab, dim], &floats(table)?);
    let emb = g.node("Gather", &[&table, &ids], &[]); // [B, T, E]
    let mask_f = g.node("Cast", &[&mask], &[Attr::Int("to", DataType::FLOAT as i64)]);
    let (x, lens) = if model.mean_input {
        (mean_step(&mut g, &emb, &mask_f), None)
    } else {
        let x = g.node("Transpose", &[&emb], &[Attr::Ints("perm", vec![1, 0, 2])]);
        let one = g.ints("axis1", &[1]);
        let sum = g.node("ReduceSum", &[&mask, &one], &[Attr::Int("keepdims", 0)]);
        let lens = g.node("Cast", &[&sum], &[Attr::Int("to", DataType::INT32 as i64)]);
        (x, Some(lens))
    };
    let h = model.forward_lstm.d_hidden;
    let (wf, rf, bf) = lstm_direction(&model.forward_lstm)?;
    let (wb, rb, bb) = lstm_direction(&model.backward_lstm)?;
    let w = g.weight("lstm.W", &[2, 4 * h, dim], &[wf, wb].concat());
    let r = g.weight("lstm.R", &[2, 4 * h, h], &[rf, rb].concat());
    let zeros = vec![0.0; 4 * h];
    let b = g.weight(
        "lstm.B",
        &[2, 8 * h],
        &[bf, zeros.clone(), bb, zeros].concat(),
    );
    let lens = lens.unwrap_or_default();
    let outs = g.node_n(
        "LSTM",
        &[&x, &w, &r, &b, &lens],
        2,
        &[
            Attr::Str("direction", "bidirectional".into()),
            Attr::Int("hidden_size", h as i64),
        ],
    );
    let logits = if model.max_over_time {
        max_over_time(&mut g, model, &outs[0], &mask_f, h)?
    } else {
        // Y_h [2, B, H] → [B, 2H] (forward state first, as kdrun concatenates them).
        let t = g.node(
            "Transpose",
            &[&outs[1]],
            &[Attr::Ints("perm", vec![1, 0, 2])],
        );
        let shape = g.ints("shape", &[0, 2 * h as i64]);
        let last = g.node("Reshape", &[&t, &shape], &[]);
        let fc = model
            .fc
            .as_ref()
            .ok_or_else(|| anyhow!("the student's tang head has no fc layer"))?;
        let hidden = linear(&mut g, &last, "fc", fc)?;
        let hidden = g.node("Relu", &[&hidden], &[]);
        linear(&mut g, &hidden, "out", &model.out)?
    };
    let classes = model.out.weight.val().dims()[1];
    g.output(
        &logits,
        "logits",
        Elem::F32,
        &[Dim::Named("batch"), Dim::Fixed(classes as i64)],
    );
    Ok(g.model("kdrun BiLSTM student (Tang et al. 2019)", metadata))
}

/// The mean of the real tokens' embeddings as one time step `[1, B, E]`.
fn mean_step(g: &mut Graph, emb: &str, mask_f: &str) -> String {
    let two = g.ints("axis2", &[2]);
    let one = g.ints("axis1", &[1]);
    let zero = g.ints("axis0", &[0]);
    let m3 = g.node("Unsqueeze", &[mask_f, &two], &[]);
    let masked = g.node("Mul", &[emb, &m3], &[]);
    let sum = g.node("ReduceSum", &[&masked, &one], &[Attr::Int("keepdims", 0)]);
    let count = g.node("ReduceSum", &[&m3, &one], &[Attr::Int("keepdims", 0)]);
    let floor = g.scalar("one", 1.0);
    let count = g.node("Max", &[&count, &floor], &[]);
    let mean = g.node("Div", &[&sum, &count], &[]);
    g.node("Unsqueeze", &[&mean, &zero], &[])
}

/// The `seed` head: each step's `[forward; backward]` state to logits, the maximum over the
/// real tokens.
fn max_over_time(
    g: &mut Graph,
    model: &BiLstmClassifier,
    y: &str,
    mask_f: &str,
    h: usize,
) -> Result<String> {
    // Y [T, 2, B, H] → [B, T, 2H].
    let t = g.node("Transpose", &[y], &[Attr::Ints("perm", vec![2, 0, 1, 3])]);
    let shape = g.ints("shape", &[0, 0, 2 * h as i64]);
    let seq = g.node("Reshape", &[&t, &shape], &[]);
    let per_step = linear(g, &seq, "out", &model.out)?;
    let scores = if model.mean_input {
        per_step
    } else {
        // Padding steps get a large negative logit (as kdrun's head adds).
        let one = g.scalar("one", 1.0);
        let big = g.scalar("neg_big", -1e9);
        let two = g.ints("axis2", &[2]);
        let pad = g.node("Sub", &[&one, mask_f], &[]);
        let pad = g.node("Mul", &[&pad, &big], &[]);
        let pad = g.node("Unsqueeze", &[&pad, &two], &[]);
        g.node("Add", &[&per_step, &pad], &[])
    };
    Ok(g.node(
        "ReduceMax",
        &[&scores],
        &[Attr::Ints("axes", vec![1]), Attr::Int("keepdims", 0)],
    ))
}
