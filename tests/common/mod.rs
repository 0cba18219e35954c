//! Helpers shared by the integration tests.

use kdrun::models::hf::forward::JsonTensor;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// The `kdrun` binary, run from the repository root, without a developer's KDRUN_* variables.
#[allow(dead_code)]
pub fn kdrun() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kdrun"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    for (k, _) in std::env::vars() {
        if k.starts_with("KDRUN_") {
            c.env_remove(k);
        }
    }
    c
}

/// What transformers computed for a conformance fixture (`reference.json` in `dir`):
/// `embedding_output`, `last_hidden_state` and `logits`.
#[allow(dead_code)]
pub fn reference_outputs(dir: &Path) -> BTreeMap<String, JsonTensor> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    ["embedding_output", "last_hidden_state", "logits"]
        .iter()
        .map(|k| {
            (
                k.to_string(),
                serde_json::from_value(v[*k].clone()).unwrap(),
            )
        })
        .collect()
}

/// A checkpoint folder: a copy of a fixture folder's `config.json`, with `model.safetensors`
/// written from `tensors` (the tensor named `as_int`, if any, stored as I32 instead of F32).
#[allow(dead_code)]
pub fn folder_with(
    fixture: &Path,
    tensors: &BTreeMap<String, kdrun::models::hf::RawTensor>,
    as_int: Option<&str>,
) -> tempfile::TempDir {
    use safetensors::tensor::TensorView;
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture.join("config.json"), dir.path().join("config.json")).unwrap();
    let bytes: Vec<(String, Vec<usize>, Vec<u8>, safetensors::Dtype)> = tensors
        .iter()
        .map(|(n, t)| match as_int == Some(n.as_str()) {
            true => (
                n.clone(),
                t.shape.clone(),
                t.data
                    .iter()
                    .flat_map(|v| (*v as i32).to_le_bytes())
                    .collect(),
                safetensors::Dtype::I32,
            ),
            false => (
                n.clone(),
                t.shape.clone(),
                t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                safetensors::Dtype::F32,
            ),
        })
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(n, s, b, d)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let data = safetensors::tensor::serialize(views, None).unwrap();
    std::fs::write(dir.path().join("model.safetensors"), data).unwrap();
    dir
}
