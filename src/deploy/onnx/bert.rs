//! The BERT teacher (`BertForSequenceClassification`) as an ONNX graph, from its Hugging Face
//! configuration and state dict (what `TeacherModel::hf_tensors` returns, or a checkpoint's
//! weights). The graph computes what `models::bert` computes: word + position + token-type
//! embeddings and LayerNorm; per layer, self-attention with the additive mask bias
//! `(1 - mask) · -1e9`, output dense + residual + LayerNorm, intermediate dense + activation,
//! output dense + residual + LayerNorm; the tanh pooler over the first token; the classifier.
//!
//! Initializers keep their Hugging Face names (`bert.encoder.layer.0.attention.self.query.weight`,
//! …, or RoBERTa's: the names come from [`Family`]); the dense weights among them are stored
//! transposed, `[in, out]`, as `MatMul` takes them. Positions are `0..sequence` of the input
//! (RoBERTa: transformers' `create_position_ids_from_input_ids`), so batch and sequence are both
//! dynamic (up to the position table's length).

use super::graph::{Attr, Dim, Elem, Graph};
use crate::models::bert::BertConfig;
use crate::models::hf::tree::Tensors;
use anyhow::{anyhow, bail, Result};
use onnx_protobuf::ModelProto;

/// The additive attention bias of a masked-out token, as `models::bert::mask_bias` uses.
const MASK_BIAS: f32 = -1e9;

/// ONNX's `to` code for a float `Cast`.
const FLOAT: i64 = 1;

/// ONNX's `to` code for an int64 `Cast`.
const INT64: i64 = 7;

/// `BertForSequenceClassification` as ONNX: inputs `input_ids`, `attention_mask`,
/// `token_type_ids` (int64, [batch, sequence], dynamic axes named "batch" and "sequence"), output
/// `logits` (float, [batch, num_labels]).
pub fn bert_classifier(config: &BertConfig, tensors: &Tensors) -> Result<ModelProto> {
    let act = Activation::of(&config.hidden_act)?;
    let labels = config.num_labels();
    if labels == 0 {
        bail!("config.json has no labels (id2label is empty): cannot size the classifier");
    }
    if config.num_attention_heads == 0
        || !config
            .hidden_size
            .is_multiple_of(config.num_attention_heads)
    {
        bail!(
            "hidden_size {} is not a multiple of num_attention_heads {}",
            config.hidden_size,
            config.num_attention_heads
        );
    }
    let src = Source { tensors };
    let mut g = Graph::new("bert_classifier");
    let axes = [Dim::Named("batch"), Dim::Named("sequence")];
    let ids = g.input("input_ids", Elem::I64, &axes);
    let mask = g.input("attention_mask", Elem::I64, &axes);
    let types = g.input("token_type_ids", Elem::I64, &axes);
    let mut x = embeddings(&mut g, &src, config, &ids, &types)?;
    let bias = mask_bias(&mut g, &mask);
    for i in 0..config.num_hidden_layers {
        x = layer(&mut g, &src, config, act, i, &x, &bias)?;
    }
    let family = config.family();
    let (head_dense, head_out) = family.head_names();
    let pooled = pooler(&mut g, &src, config, head_dense.trim_end_matches('.'), &x)?;
    let logits = dense(
        &mut g,
        &src,
        &pooled,
        head_out.trim_end_matches('.'),
        config.hidden_size,
        labels,
    )?;
    g.output(
        &logits,
        "logits",
        Elem::F32,
        &[Dim::Named("batch"), Dim::Fixed(labels as i64)],
    );
    Ok(g.model(
        &format!(
            "{} (kdrun's teacher): logits from token ids",
            family.classifier_architecture()
        ),
        &[
            ("architecture", family.classifier_architecture().into()),
            ("classes", classes_json(config)),
        ],
    ))
}

/// The class names in label order, as a JSON array.
fn classes_json(config: &BertConfig) -> String {
    let mut labels: Vec<(usize, &String)> = config
        .id2label
        .iter()
        .map(|(k, v)| (k.parse().unwrap_or(usize::MAX), v))
        .collect();
    labels.sort();
    let names: Vec<&String> = labels.into_iter().map(|(_, v)| v).collect();
    serde_json::to_string(&names).unwrap_or_else(|_| "[]".into())
}

/// The intermediate activation (`hidden_act`) the graph can express.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Activation {
    /// Exact (erf) GELU: `gelu`.
    Gelu,
    /// The tanh approximation: `gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`.
    GeluTanh,
    Relu,
}

impl Activation {
    fn of(name: &str) -> Result<Self> {
        Ok(match name {
            "gelu" => Self::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Self::GeluTanh,
            "relu" => Self::Relu,
            other => bail!(
                "hidden_act `{other}` cannot be exported to ONNX (supported: gelu, gelu_new, \
                 gelu_pytorch_tanh, gelu_fast, relu)"
            ),
        })
    }

    fn apply(self, g: &mut Graph, x: &str) -> String {
        match self {
            Self::Gelu => g.gelu(x),
            Self::GeluTanh => gelu_tanh(g, x),
            Self::Relu => g.node("Relu", &[x], &[]),
        }
    }
}

/// The tanh GELU: `½ · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))`.
fn gelu_tanh(g: &mut Graph, x: &str) -> String {
    let c = g.scalar("gelu_c", 0.044715);
    let k = g.scalar("gelu_k", (2.0 / std::f32::consts::PI).sqrt());
    let one = g.scalar("one", 1.0);
    let half = g.scalar("half", 0.5);
    let x2 = g.node("Mul", &[x, x], &[]);
    let x3 = g.node("Mul", &[&x2, x], &[]);
    let cx3 = g.node("Mul", &[&x3, &c], &[]);
    let inner = g.node("Add", &[x, &cx3], &[]);
    let scaled = g.node("Mul", &[&inner, &k], &[]);
    let t = g.node("Tanh", &[&scaled], &[]);
    let p = g.node("Add", &[&t, &one], &[]);
    let m = g.node("Mul", &[x, &p], &[]);
    g.node("Mul", &[&m, &half], &[])
}

/// The state dict, looked up by Hugging Face name with the shape the configuration implies.
struct Source<'a> {
    tensors: &'a Tensors,
}

impl Source<'_> {
    /// `name` (or its legacy LayerNorm alias, `gamma`/`beta`) with exactly `shape`.
    fn get(&self, name: &str, shape: &[usize]) -> Result<&[f32]> {
        let legacy = name
            .strip_suffix("LayerNorm.weight")
            .map(|p| format!("{p}LayerNorm.gamma"))
            .or_else(|| {
                name.strip_suffix("LayerNorm.bias")
                    .map(|p| format!("{p}LayerNorm.beta"))
            });
        let t = self
            .tensors
            .get(name)
            .or_else(|| legacy.and_then(|l| self.tensors.get(&l)))
            .ok_or_else(|| anyhow!("missing tensor `{name}` (expected shape {shape:?})"))?;
        if t.shape != shape {
            bail!(
                "tensor `{name}` has shape {:?}, expected {shape:?} (does config.json match the \
                 weights?)",
                t.shape
            );
        }
        Ok(&t.data)
    }
}

/// The dense layer `name` (`{name}.weight` `[out, in]`, `{name}.bias` `[out]`) over the last axis
/// of `x`; the weight is stored transposed.
fn dense(
    g: &mut Graph,
    src: &Source,
    x: &str,
    name: &str,
    d_in: usize,
    d_out: usize,
) -> Result<String> {
    let w = src.get(&format!("{name}.weight"), &[d_out, d_in])?;
    let b = src.get(&format!("{name}.bias"), &[d_out])?;
    let mut wt = vec![0.0; w.len()];
    for o in 0..d_out {
        for i in 0..d_in {
            wt[i * d_out + o] = w[o * d_in + i];
        }
    }
    Ok(g.linear(x, name, &wt, [d_in, d_out], Some(b)))
}

/// The LayerNorm `name` (`{name}.weight`, `{name}.bias`) over the hidden axis.
fn norm(g: &mut Graph, src: &Source, c: &BertConfig, x: &str, name: &str) -> Result<String> {
    let h = c.hidden_size;
    let gamma = src.get(&format!("{name}.weight"), &[h])?;
    let beta = src.get(&format!("{name}.bias"), &[h])?;
    Ok(g.layer_norm(x, name, gamma, beta, c.layer_norm_eps))
}

/// The table `name` (`[rows, hidden]`) as an initializer.
fn table(g: &mut Graph, src: &Source, c: &BertConfig, name: &str, rows: usize) -> Result<String> {
    let data = src.get(name, &[rows, c.hidden_size])?;
    Ok(g.weight(name, &[rows, c.hidden_size], data))
}

/// `[batch, sequence]` ids → `[batch, sequence, hidden]`: word + position + token-type
/// embeddings, then LayerNorm. Positions are the first `sequence` rows of the position table
/// (RoBERTa: the running count of non-padding tokens plus `pad_token_id`, padding at
/// `pad_token_id`).
fn embeddings(
    g: &mut Graph,
    src: &Source,
    c: &BertConfig,
    ids: &str,
    types: &str,
) -> Result<String> {
    let p = format!("{}embeddings", c.family().encoder_prefix());
    let word = table(
        g,
        src,
        c,
        &format!("{p}.word_embeddings.weight"),
        c.vocab_size,
    )?;
    let pos = format!("{p}.position_embeddings.weight");
    let pos = table(g, src, c, &pos, c.max_position_embeddings)?;
    let ty = format!("{p}.token_type_embeddings.weight");
    let ty = table(g, src, c, &ty, c.type_vocab_size)?;
    let w = g.node("Gather", &[&word, ids], &[Attr::Int("axis", 0)]);
    let t = g.node("Gather", &[&ty, types], &[Attr::Int("axis", 0)]);
    let positions = if c.position_offset() == 0 {
        let seq = g.node(
            "Shape",
            &[ids],
            &[Attr::Int("start", 1), Attr::Int("end", 2)],
        );
        let zero = g.ints("zero", &[0]);
        g.node("Slice", &[&pos, &zero, &seq, &zero], &[])
    } else {
        let pad = g.int_scalar("pad", c.pad_token_id as i64);
        let is_pad = g.node("Equal", &[ids, &pad], &[]);
        let token = g.node("Not", &[&is_pad], &[]);
        let token = g.node("Cast", &[&token], &[Attr::Int("to", INT64)]);
        let axis = g.int_scalar("seq_axis", 1);
        let count = g.node("CumSum", &[&token, &axis], &[]);
        let count = g.node("Mul", &[&count, &token], &[]);
        let ids = g.node("Add", &[&count, &pad], &[]);
        g.node("Gather", &[&pos, &ids], &[Attr::Int("axis", 0)])
    };
    let sum = g.node("Add", &[&w, &t], &[]);
    let sum = g.node("Add", &[&sum, &positions], &[]);
    norm(g, src, c, &sum, &format!("{p}.LayerNorm"))
}

/// `[batch, sequence]` 1/0 mask → `[batch, 1, 1, sequence]` additive bias, 0 on tokens and
/// `-1e9` on padding.
fn mask_bias(g: &mut Graph, mask: &str) -> String {
    let m = g.node("Cast", &[mask], &[Attr::Int("to", FLOAT)]);
    let one = g.scalar("one", 1.0);
    let big = g.scalar("mask_bias", MASK_BIAS);
    let inv = g.node("Sub", &[&one, &m], &[]);
    let bias = g.node("Mul", &[&inv, &big], &[]);
    let axes = g.ints("axes", &[1, 2]);
    g.node("Unsqueeze", &[&bias, &axes], &[])
}

/// Self-attention of layer `p` (`bert.encoder.layer.N.attention`): `[batch, sequence, hidden]`
/// in and out, heads split as `[batch, heads, sequence, head_dim]`.
fn attention(
    g: &mut Graph,
    src: &Source,
    c: &BertConfig,
    p: &str,
    x: &str,
    bias: &str,
) -> Result<String> {
    let h = c.hidden_size;
    let heads = c.num_attention_heads as i64;
    let d = h / c.num_attention_heads;
    let split = g.ints("heads_shape", &[0, 0, heads, d as i64]);
    let project = |g: &mut Graph, which: &str, perm: Vec<i64>| -> Result<String> {
        let y = dense(g, src, x, &format!("{p}.self.{which}"), h, h)?;
        let y = g.node("Reshape", &[&y, &split], &[]);
        Ok(g.node("Transpose", &[&y], &[Attr::Ints("perm", perm)]))
    };
    let q = project(g, "query", vec![0, 2, 1, 3])?;
    let k = project(g, "key", vec![0, 2, 3, 1])?;
    let v = project(g, "value", vec![0, 2, 1, 3])?;
    let scores = g.node("MatMul", &[&q, &k], &[]);
    let scale = g.scalar("scale", (d as f64).sqrt() as f32);
    let scores = g.node("Div", &[&scores, &scale], &[]);
    let scores = g.node("Add", &[&scores, bias], &[]);
    let probs = g.node("Softmax", &[&scores], &[Attr::Int("axis", -1)]);
    let ctx = g.node("MatMul", &[&probs, &v], &[]);
    let ctx = g.node(
        "Transpose",
        &[&ctx],
        &[Attr::Ints("perm", vec![0, 2, 1, 3])],
    );
    let merge = g.ints("hidden_shape", &[0, 0, h as i64]);
    Ok(g.node("Reshape", &[&ctx, &merge], &[]))
}

/// Encoder layer `i`: attention, output dense + residual + LayerNorm, intermediate dense +
/// activation, output dense + residual + LayerNorm.
fn layer(
    g: &mut Graph,
    src: &Source,
    c: &BertConfig,
    act: Activation,
    i: usize,
    x: &str,
    bias: &str,
) -> Result<String> {
    let p = format!("{}encoder.layer.{i}", c.family().encoder_prefix());
    let (h, inter) = (c.hidden_size, c.intermediate_size);
    let a = attention(g, src, c, &format!("{p}.attention"), x, bias)?;
    let a = dense(g, src, &a, &format!("{p}.attention.output.dense"), h, h)?;
    let a = g.node("Add", &[&a, x], &[]);
    let a = norm(g, src, c, &a, &format!("{p}.attention.output.LayerNorm"))?;
    let m = dense(g, src, &a, &format!("{p}.intermediate.dense"), h, inter)?;
    let m = act.apply(g, &m);
    let o = dense(g, src, &m, &format!("{p}.output.dense"), inter, h)?;
    let o = g.node("Add", &[&o, &a], &[]);
    norm(g, src, c, &o, &format!("{p}.output.LayerNorm"))
}

/// tanh(dense(first token)): `[batch, sequence, hidden]` → `[batch, hidden]`.
fn pooler(g: &mut Graph, src: &Source, c: &BertConfig, name: &str, x: &str) -> Result<String> {
    let first = g.ints("first", &[0]);
    let axis = g.ints("axis", &[1]);
    let f = g.node("Gather", &[x, &first], &[Attr::Int("axis", 1)]);
    let f = g.node("Squeeze", &[&f, &axis], &[]);
    let h = c.hidden_size;
    let d = dense(g, src, &f, name, h, h)?;
    Ok(g.node("Tanh", &[&d], &[]))
}
