//! The BERT teacher exported to ONNX: onnxruntime (in Python) must reproduce transformers' logits
//! on the `bert-tiny-cls`, `roberta-tiny-cls` and `xlm-roberta-tiny-cls` fixtures, at the
//! fixture's shape and at another batch and sequence length; a broken state dict or an
//! inexpressible activation is refused by name.
//!
//! Where Python's onnxruntime is missing the comparison is skipped with a message, unless
//! KDRUN_REQUIRE_ONNXRUNTIME=1 (then it fails).

use burn::tensor::Device;
use kdrun::deploy::onnx::bert::bert_classifier;
use kdrun::deploy::onnx::graph::save;
use kdrun::models::forward::{Inputs, JsonTensor};
use kdrun::models::hf::tree::Tensors;
use kdrun::models::Checkpoint;
use kdrun::models::{BertConfig, TeacherConfig};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture_named(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The fixture's configuration and state dict, as kdrun loads a teacher checkpoint and exports
/// its tensors.
fn teacher() -> (BertConfig, Tensors) {
    teacher_named("bert-tiny-cls")
}

fn teacher_named(name: &str) -> (BertConfig, Tensors) {
    let ckpt = Checkpoint::open(&fixture_named(name)).unwrap();
    let model = ckpt
        .config
        .load_classifier(ckpt.weights().unwrap(), &Device::flex())
        .unwrap()
        .0;
    let tensors = ckpt.config.hf_tensors(&model).unwrap();
    let TeacherConfig::Bert(config) = ckpt.config else {
        panic!("{name} is not a BERT-architecture checkpoint");
    };
    (config, tensors)
}

/// Runs each feed set through the model with onnxruntime and checks it with onnx's full checker
/// (shape inference included).
const RUNNER: &str = r#"
import json, sys
import numpy as np
import onnx
import onnxruntime as ort

model, runs_path, out_path = sys.argv[1:4]
onnx.checker.check_model(onnx.load(model), full_check=True)
sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
out = []
for feeds in json.load(open(runs_path)):
    arrays = {
        k: np.array(v["data"], dtype=np.int64).reshape(v["shape"]) for k, v in feeds.items()
    }
    (logits,) = sess.run(["logits"], arrays)
    out.append({"shape": list(logits.shape), "data": [float(x) for x in logits.ravel()]})
json.dump(out, open(out_path, "w"))
"#;

/// Whether `python3` can import onnxruntime and onnx; without them the test is skipped, or fails
/// where KDRUN_REQUIRE_ONNXRUNTIME=1.
fn onnxruntime_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import onnxruntime, onnx, numpy"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        let msg = "python3 cannot import onnxruntime (and onnx, numpy): \
                   `pip install onnxruntime onnx numpy` to run the ONNX comparison";
        if std::env::var("KDRUN_REQUIRE_ONNXRUNTIME").as_deref() == Ok("1") {
            panic!("{msg} (KDRUN_REQUIRE_ONNXRUNTIME=1)");
        }
        eprintln!("skipped: {msg}");
    }
    ok
}

fn feeds(ids: &JsonTensor, mask: &JsonTensor, types: &JsonTensor) -> serde_json::Value {
    json!({"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
}

/// Row `r` of a `[batch, sequence]` tensor, its first `len` columns, as `[1, len]`.
fn row(t: &JsonTensor, r: usize, len: usize) -> JsonTensor {
    let s = t.shape[1];
    JsonTensor {
        shape: vec![1, len],
        data: t.data[r * s..r * s + len].to_vec(),
    }
}

/// Every value of `got` within 1e-4 of `want` (same shape); the largest difference.
fn assert_close(what: &str, got: &JsonTensor, want: &JsonTensor) -> f64 {
    let diff = got.max_abs_diff(want);
    assert!(
        diff < 1e-4,
        "{what}: max abs diff {diff}\n got {got:?}\nwant {want:?}"
    );
    diff
}

#[test]
fn onnxruntime_reproduces_transformers_logits() {
    if !onnxruntime_available() {
        return;
    }
    for name in ["bert-tiny-cls", "roberta-tiny-cls", "xlm-roberta-tiny-cls"] {
        onnxruntime_reproduces(name);
    }
}

fn onnxruntime_reproduces(name: &str) {
    let fixture = || fixture_named(name);
    let (config, tensors) = teacher_named(name);
    let model = bert_classifier(&config, &tensors).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("teacher.onnx");
    save(&model, &path).unwrap();

    let inputs = Inputs::load(&fixture().join("reference.json")).unwrap();
    let (ids, mask, types) = (
        &inputs.input_ids,
        &inputs.attention_mask,
        &inputs.token_type_ids,
    );
    // Row 0 alone, without its padding: another batch size and sequence length.
    let len = mask.data[..mask.shape[1]]
        .iter()
        .filter(|&&m| m == 1.0)
        .count();
    assert!(len < mask.shape[1], "row 0 of the fixture should be padded");
    let runs = json!([
        feeds(ids, mask, types),
        feeds(&row(ids, 0, len), &row(mask, 0, len), &row(types, 0, len)),
    ]);
    let runs_path = tmp.path().join("runs.json");
    std::fs::write(&runs_path, runs.to_string()).unwrap();
    let script = tmp.path().join("run.py");
    std::fs::write(&script, RUNNER).unwrap();
    let out_path = tmp.path().join("out.json");
    let out = Command::new("python3")
        .arg(&script)
        .args([&path, &runs_path, &out_path])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "onnxruntime failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<JsonTensor> =
        serde_json::from_str(&std::fs::read_to_string(&out_path).unwrap()).unwrap();

    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("reference.json")).unwrap())
            .unwrap();
    let want: JsonTensor = serde_json::from_value(reference["logits"].clone()).unwrap();
    let full = assert_close(
        &format!("{name}: logits of the fixture batch"),
        &got[0],
        &want,
    );
    let first = assert_close(
        &format!("{name}: logits of row 0 unpadded"),
        &got[1],
        &row(&want, 0, want.shape[1]),
    );
    eprintln!("{name}: max abs diff to transformers: batch {full:e}, row 0 unpadded {first:e}");
}

#[test]
fn the_graph_declares_dynamic_inputs_and_hf_named_weights() {
    let (config, tensors) = teacher();
    let model = bert_classifier(&config, &tensors).unwrap();
    let graph = model.graph.as_ref().unwrap();
    let names: Vec<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["input_ids", "attention_mask", "token_type_ids"]);
    assert_eq!(graph.output[0].name, "logits");
    let inits: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    for name in [
        "bert.embeddings.word_embeddings.weight",
        "bert.encoder.layer.1.attention.self.query.weight",
        "bert.encoder.layer.1.output.LayerNorm.bias",
        "classifier.weight",
    ] {
        assert!(inits.contains(&name), "no initializer {name}: {inits:?}");
    }
    let q = graph
        .initializer
        .iter()
        .find(|t| t.name == "classifier.weight")
        .unwrap();
    assert_eq!(q.dims, vec![64, 5], "dense weights are stored [in, out]");
}

#[test]
fn a_missing_tensor_or_unknown_activation_is_refused_by_name() {
    let (config, tensors) = teacher();
    let mut missing = tensors.clone();
    missing.remove("bert.encoder.layer.1.intermediate.dense.bias");
    let err = bert_classifier(&config, &missing).unwrap_err().to_string();
    assert!(
        err.contains("missing tensor `bert.encoder.layer.1.intermediate.dense.bias`"),
        "{err}"
    );

    let mut misshaped = tensors.clone();
    misshaped.get_mut("bert.pooler.dense.weight").unwrap().shape = vec![32, 128];
    let err = bert_classifier(&config, &misshaped)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`bert.pooler.dense.weight` has shape [32, 128]"),
        "{err}"
    );

    let silu = BertConfig {
        hidden_act: "silu".into(),
        ..config
    };
    let err = bert_classifier(&silu, &tensors).unwrap_err().to_string();
    assert!(err.contains("hidden_act `silu`"), "{err}");
}
