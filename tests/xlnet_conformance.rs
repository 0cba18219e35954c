//! The XLNet port against transformers: on `../shared/fixtures/xlnet-tiny-{cls,lm}` (random
//! weights, made by `../shared/bench/pytorch_reference.py`), from both weight files, kdrun must
//! reproduce `embedding_output`, `last_hidden_state` and `logits` within 1e-4 on the CPU
//! backend; exports must load back to identical outputs; broken checkpoints must be refused by
//! the name of the tensor.

mod common;
use burn::tensor::{Device, Int, Tensor, TensorData};
use kdrun::models::forward::{Inputs, JsonTensor};
use kdrun::models::hf::{RawTensor, Weights};
use kdrun::models::xlnet::{
    open_folder, save_folder, XlnetConfig, XlnetForSequenceClassification, XlnetLmHeadModel,
    XlnetModel,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The shared fixtures beside the repository (CI puts `shared/` next to the clone).
fn fixture(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures")
        .join(name);
    assert!(
        dir.join("reference.json").is_file(),
        "{} not found: the XLNet fixtures live in ../shared/fixtures",
        dir.display()
    );
    dir
}

fn config(dir: &Path) -> XlnetConfig {
    XlnetConfig::from_file(&dir.join("config.json")).unwrap()
}

fn reference(dir: &Path) -> BTreeMap<String, JsonTensor> {
    common::reference_outputs(dir)
}

fn json<const D: usize>(t: Tensor<D>) -> JsonTensor {
    JsonTensor {
        shape: t.dims().to_vec(),
        data: t
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect(),
    }
}

fn int(t: &JsonTensor, d: &Device) -> Tensor<2, Int> {
    let v: Vec<i64> = t.data.iter().map(|x| *x as i64).collect();
    Tensor::from_data(TensorData::new(v, [t.shape[0], t.shape[1]]), d)
}

fn float(t: &JsonTensor, d: &Device) -> Tensor<2> {
    let v: Vec<f32> = t.data.iter().map(|x| *x as f32).collect();
    Tensor::from_data(TensorData::new(v, [t.shape[0], t.shape[1]]), d)
}

/// The three outputs of the fixture's model (classifier or LM head) loaded from `w`.
fn outputs(name: &str, c: &XlnetConfig, w: &Weights) -> BTreeMap<String, JsonTensor> {
    let d = Device::flex();
    let inputs = Inputs::load(&fixture(name).join("reference.json")).unwrap();
    let (ids, types, mask) = (
        int(&inputs.input_ids, &d),
        int(&inputs.token_type_ids, &d),
        float(&inputs.attention_mask, &d),
    );
    let (logits, out) = if name.ends_with("-lm") {
        let (m, notes) = XlnetLmHeadModel::load(c, w, &d).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        let (l, o) = m.forward_all(ids, types, mask);
        (json(l), o)
    } else {
        let (m, notes) = XlnetForSequenceClassification::load(c, w, &d).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        let (l, o) = m.forward_all(ids, types, mask);
        (json(l), o)
    };
    BTreeMap::from([
        ("embedding_output".to_string(), json(out.embedding_output)),
        ("last_hidden_state".to_string(), json(out.last_hidden_state)),
        ("logits".to_string(), logits),
    ])
}

fn check(name: &str, w: Weights) {
    let dir = fixture(name);
    let got = outputs(name, &config(&dir), &w);
    for (key, want) in reference(&dir) {
        let diff = got[&key].max_abs_diff(&want);
        eprintln!(
            "{name} {} {key}: max abs diff {diff:.3e}",
            w.source.file_name().unwrap().to_string_lossy()
        );
        assert!(
            diff < 1e-4,
            "{name} {} {key}: max abs diff {diff}",
            w.source.display()
        );
    }
}

#[test]
fn classifier_fixture_from_safetensors() {
    let dir = fixture("xlnet-tiny-cls");
    check(
        "xlnet-tiny-cls",
        Weights::from_safetensors(&dir.join("model.safetensors")).unwrap(),
    );
}

#[test]
fn classifier_fixture_from_pytorch_bin() {
    let dir = fixture("xlnet-tiny-cls");
    check(
        "xlnet-tiny-cls",
        Weights::from_pytorch(&dir.join("pytorch_model.bin")).unwrap(),
    );
}

#[test]
fn lm_fixture_from_safetensors() {
    let dir = fixture("xlnet-tiny-lm");
    check(
        "xlnet-tiny-lm",
        Weights::from_safetensors(&dir.join("model.safetensors")).unwrap(),
    );
}

#[test]
fn lm_fixture_from_pytorch_bin() {
    let dir = fixture("xlnet-tiny-lm");
    check(
        "xlnet-tiny-lm",
        Weights::from_pytorch(&dir.join("pytorch_model.bin")).unwrap(),
    );
}

#[test]
fn exported_folders_load_back_to_identical_outputs() {
    let d = Device::flex();
    for (name, arch) in [
        ("xlnet-tiny-cls", "XLNetForSequenceClassification"),
        ("xlnet-tiny-lm", "XLNetLMHeadModel"),
    ] {
        let (c, w) = open_folder(&fixture(name)).unwrap();
        let tensors = if name.ends_with("-lm") {
            XlnetLmHeadModel::load(&c, &w, &d)
                .unwrap()
                .0
                .hf_tensors()
                .unwrap()
        } else {
            XlnetForSequenceClassification::load(&c, &w, &d)
                .unwrap()
                .0
                .hf_tensors()
                .unwrap()
        };
        // The export holds exactly transformers' names (the safetensors file's tensors).
        let original = Weights::from_safetensors(&fixture(name).join("model.safetensors")).unwrap();
        let want: Vec<&str> = original.names().collect();
        let got: Vec<&str> = tensors.keys().map(String::as_str).collect();
        assert_eq!(got, want, "{name}");
        let out = tempfile::tempdir().unwrap();
        save_folder(out.path(), &c, arch, &tensors).unwrap();
        let (c2, w2) = open_folder(out.path()).unwrap();
        assert_eq!(c2.architectures, vec![arch.to_string()]);
        let a = outputs(name, &c, &Weights::open(&fixture(name)).unwrap());
        let b = outputs(name, &c2, &w2);
        for key in ["embedding_output", "last_hidden_state", "logits"] {
            assert_eq!(a[key].max_abs_diff(&b[key]), 0.0, "{name} {key}");
        }
    }
}

/// The fixture's tensors, to be broken.
fn tensors(name: &str) -> BTreeMap<String, RawTensor> {
    let (c, w) = open_folder(&fixture(name)).unwrap();
    let (m, _) = XlnetForSequenceClassification::load(&c, &w, &Device::flex()).unwrap();
    m.hf_tensors().unwrap()
}

fn load_err(tensors: BTreeMap<String, RawTensor>) -> String {
    let dir = fixture("xlnet-tiny-cls");
    XlnetForSequenceClassification::load(
        &config(&dir),
        &Weights::from_map(&dir, tensors),
        &Device::flex(),
    )
    .map(|_| ())
    .unwrap_err()
    .to_string()
}

#[test]
fn broken_checkpoints_name_the_tensor() {
    let mut missing = tensors("xlnet-tiny-cls");
    missing.remove("transformer.layer.1.rel_attn.seg_embed");
    let err = load_err(missing);
    assert!(
        err.contains("missing tensor `transformer.layer.1.rel_attn.seg_embed`"),
        "{err}"
    );

    let mut misshaped = tensors("xlnet-tiny-cls");
    misshaped
        .get_mut("transformer.layer.0.rel_attn.q")
        .unwrap()
        .shape = vec![64, 16, 4];
    let err = load_err(misshaped);
    assert!(
        err.contains("`transformer.layer.0.rel_attn.q` has shape [64, 16, 4]"),
        "{err}"
    );

    let mut extra = tensors("xlnet-tiny-cls");
    extra.insert(
        "transformer.layer.2.ff.layer_1.bias".into(),
        RawTensor {
            shape: vec![128],
            data: vec![0.0; 128],
        },
    );
    let err = load_err(extra);
    assert!(err.contains("transformer.layer.2.ff.layer_1.bias"), "{err}");

    // A partial classification head is not silently replaced.
    let mut partial = tensors("xlnet-tiny-cls");
    partial.remove("logits_proj.bias");
    let err = load_err(partial);
    assert!(err.contains("missing tensor `logits_proj.bias`"), "{err}");
}

#[test]
fn bodies_load_with_and_without_the_transformer_prefix() {
    let d = Device::flex();
    let dir = fixture("xlnet-tiny-cls");
    let c = config(&dir);
    let (m, notes) = XlnetModel::load(&c, &Weights::open(&dir).unwrap(), &d).unwrap();
    assert!(
        notes.iter().any(|n| n.contains("logits_proj.weight")),
        "{notes:?}"
    );
    // An XLNetModel state dict (no prefix) round-trips, and serves the task models, whose new
    // heads are named.
    let body = m.hf_tensors().unwrap();
    assert!(body.contains_key("layer.0.rel_attn.r_w_bias"));
    assert!(body.contains_key("word_embedding.weight"));
    let bare = Weights::from_map(&dir, body);
    let (_, notes) = XlnetModel::load(&c, &bare, &d).unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    let (cls, notes) = XlnetForSequenceClassification::load(&c, &bare, &d).unwrap();
    assert!(
        notes.iter().any(|n| n.contains("logits_proj.weight")),
        "{notes:?}"
    );
    assert_eq!(cls.logits_proj.weight.dims(), [64, 5]);
    // The body's outputs are the fixture's.
    let inputs = Inputs::load(&dir.join("reference.json")).unwrap();
    let out = XlnetModel::load(&c, &bare, &d).unwrap().0.forward(
        int(&inputs.input_ids, &d),
        int(&inputs.token_type_ids, &d),
        float(&inputs.attention_mask, &d),
    );
    let want = &reference(&dir)["last_hidden_state"];
    assert!(json(out.last_hidden_state).max_abs_diff(want) < 1e-4);
    // An LM checkpoint as a classifier: a new head, the LM bias skipped with a note.
    let lm = fixture("xlnet-tiny-lm");
    let (_, notes) =
        XlnetForSequenceClassification::load(&c, &Weights::open(&lm).unwrap(), &d).unwrap();
    assert!(
        notes.iter().any(|n| n.contains("lm_loss.bias")),
        "{notes:?}"
    );
}

#[test]
fn another_number_of_labels_gets_a_new_logits_proj() {
    let d = Device::flex();
    let dir = fixture("xlnet-tiny-cls");
    let mut c = config(&dir);
    c.id2label = (0..3).map(|i| (i.to_string(), format!("c{i}"))).collect();
    let w = Weights::open(&dir).unwrap();
    let (m, notes) = XlnetForSequenceClassification::load(&c, &w, &d).unwrap();
    assert_eq!(m.logits_proj.weight.dims(), [64, 3]);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("logits_proj.weight") && n.contains("new logits_proj")),
        "{notes:?}"
    );
    // The summary projection is the checkpoint's.
    let summary = m.hf_tensors().unwrap()["sequence_summary.summary.weight"].clone();
    let (full, _) = XlnetForSequenceClassification::load(&config(&dir), &w, &d).unwrap();
    assert_eq!(
        summary,
        full.hf_tensors().unwrap()["sequence_summary.summary.weight"]
    );
}

#[test]
fn a_fresh_model_exports_every_parameter_it_initialises() {
    let d = Device::flex();
    let c = config(&fixture("xlnet-tiny-lm"));
    let m = c.init_lm(&d);
    let t = m.hf_tensors().unwrap();
    let original =
        Weights::from_safetensors(&fixture("xlnet-tiny-lm").join("model.safetensors")).unwrap();
    for name in original.names() {
        assert_eq!(
            t[name].shape.as_slice(),
            original.shape(name).unwrap(),
            "{name}"
        );
    }
    assert_eq!(t.len(), original.names().count());
    // transformers' init: LayerNorm weights 1, biases 0, the rest N(0, 0.02²).
    assert!(t["transformer.layer.0.ff.layer_norm.weight"]
        .data
        .iter()
        .all(|v| *v == 1.0));
    assert!(t["lm_loss.bias"].data.iter().all(|v| *v == 0.0));
    let q = &t["transformer.layer.1.rel_attn.q"].data;
    let std = (q.iter().map(|v| v * v).sum::<f32>() / q.len() as f32).sqrt();
    assert!((0.015..0.025).contains(&std), "{std}");
}

fn float3(t: &JsonTensor, d: &Device) -> Tensor<3> {
    let v: Vec<f32> = t.data.iter().map(|x| *x as f32).collect();
    Tensor::from_data(TensorData::new(v, [t.shape[0], t.shape[1], t.shape[2]]), d)
}

/// The two streams against transformers: `tests/fixtures/xlnet-two-stream.json`, made by
/// `tests/fixtures/xlnet_two_stream.py` from xlnet-tiny-lm with a permutation-LM `perm_mask`
/// and `target_mapping` (two targets per row).
#[test]
fn two_stream_fixture_matches_transformers() {
    let d = Device::flex();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/xlnet-two-stream.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let get = |v: &serde_json::Value| -> JsonTensor { serde_json::from_value(v.clone()).unwrap() };
    let inputs = &v["inputs"];
    let (c, w) = open_folder(&fixture("xlnet-tiny-lm")).unwrap();
    let (m, _) = XlnetLmHeadModel::load(&c, &w, &d).unwrap();
    let (logits, streams) = m.forward_plm(
        int(&get(&inputs["input_ids"]), &d),
        int(&get(&inputs["token_type_ids"]), &d),
        float(&get(&inputs["attention_mask"]), &d),
        float3(&get(&inputs["perm_mask"]), &d),
        float3(&get(&inputs["target_mapping"]), &d),
    );
    for (key, got) in [
        ("logits", json(logits)),
        ("h", json(streams.h)),
        ("g", json(streams.g)),
    ] {
        let diff = got.max_abs_diff(&get(&v[key]));
        eprintln!("xlnet-two-stream {key}: max abs diff {diff:.3e}");
        assert!(diff < 1e-4, "two-stream {key}: max abs diff {diff}");
    }
}

#[test]
fn forward_command_runs_an_xlnet_folder() {
    for name in ["xlnet-tiny-cls", "xlnet-tiny-lm"] {
        let dir = fixture(name);
        let out = tempfile::tempdir().unwrap();
        let path = out.path().join("out.json");
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_kdrun"))
            .args(["forward", "--checkpoint"])
            .arg(&dir)
            .arg("--input")
            .arg(dir.join("reference.json"))
            .arg("--output")
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success(), "{name}");
        let got: BTreeMap<String, JsonTensor> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for (key, want) in reference(&dir) {
            let diff = got[&key].max_abs_diff(&want);
            assert!(diff < 1e-4, "{name} {key}: {diff}");
        }
    }
}

#[test]
fn truncated_or_mismatched_weight_files_are_refused_by_file_and_tensor() {
    let dir = fixture("xlnet-tiny-cls");
    let all = tensors("xlnet-tiny-cls");
    let load = |folder: &Path| -> String {
        match open_folder(folder) {
            Err(e) => format!("{e:#}"),
            Ok((c, w)) => XlnetForSequenceClassification::load(&c, &w, &Device::flex())
                .map(|_| ())
                .map_err(|e| format!("{e:#}"))
                .unwrap_err(),
        }
    };
    let whole = std::fs::read(dir.join("model.safetensors")).unwrap();
    let cut = common::folder_with(&dir, &all, None);
    std::fs::write(
        cut.path().join("model.safetensors"),
        &whole[..whole.len() - 100],
    )
    .unwrap();
    let err = load(cut.path());
    assert!(
        err.contains("model.safetensors: cut short: tensor `") && err.contains("copy it again"),
        "{err}"
    );
    let ints = common::folder_with(&dir, &all, Some("transformer.mask_emb"));
    let err = load(ints.path());
    assert!(
        err.contains("model.safetensors: tensor `transformer.mask_emb` holds I32 numbers"),
        "{err}"
    );
    let mut misshaped = all.clone();
    misshaped
        .get_mut("transformer.layer.1.ff.layer_2.weight")
        .unwrap()
        .shape
        .reverse();
    let bad = common::folder_with(&dir, &misshaped, None);
    let err = load(bad.path());
    assert!(
        err.contains("model.safetensors: tensor `transformer.layer.1.ff.layer_2.weight` has shape"),
        "{err}"
    );
    // The whole file, rewritten, loads.
    let good = common::folder_with(&dir, &all, None);
    let (c, w) = open_folder(good.path()).unwrap();
    XlnetForSequenceClassification::load(&c, &w, &Device::flex()).unwrap();
}
