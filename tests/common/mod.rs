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
