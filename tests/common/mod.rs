//! Helpers shared by the integration tests.

use kdrun::models::forward::JsonTensor;
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

/// `kdrun recipes/quick.toml` with its store in `tmp/runs`, its reports in `tmp/reports` and
/// `sets` on top.
#[allow(dead_code)]
pub fn quick_cmd(tmp: &Path, sets: &[&str]) -> Command {
    let mut cmd = kdrun();
    cmd.arg("recipes/quick.toml")
        .args([
            "--set",
            &format!("runtime.store={}", tmp.join("runs").display()),
        ])
        .args([
            "--set",
            &format!("report.dir={}", tmp.join("reports").display()),
        ]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    cmd
}

/// The results of each trial (numbered from 1) of the sweep in `sweep_dir`.
#[allow(dead_code)]
pub fn sweep_trials(sweep_dir: &Path, trials: usize) -> Vec<kdrun::store::RunResults> {
    (1..=trials)
        .map(|t| {
            let path = sweep_dir.join(format!("trial-{t:03}/results.json"));
            kdrun::store::RunResults::load(&path).unwrap_or_else(|e| panic!("{e:#}"))
        })
        .collect()
}

/// Two sweeps' trials ended the same, bit for bit: each model's report, predictions and every
/// epoch's training loss.
#[allow(dead_code)]
pub fn assert_same_trials(a: &[kdrun::store::RunResults], b: &[kdrun::store::RunResults]) {
    assert_eq!(a.len(), b.len());
    for (t, (a, b)) in a.iter().zip(b).enumerate() {
        assert_eq!(a.models.len(), b.models.len());
        for (ma, mb) in a.models.iter().zip(&b.models) {
            let what = format!("trial {}, {}", t + 1, ma.key);
            assert_eq!(ma.key, mb.key, "{what}");
            assert_eq!(ma.report, mb.report, "{what}");
            assert_eq!(ma.predictions, mb.predictions, "{what}");
            let losses = |m: &kdrun::store::ModelResult| {
                m.history
                    .iter()
                    .map(|h| h.train_loss.to_bits())
                    .collect::<Vec<_>>()
            };
            assert_eq!(losses(ma), losses(mb), "{what}: training went differently");
        }
    }
}

/// Every entry of the store's stage folders: (stage, name, path), sorted; finished stages are
/// named by their key, temporary folders `<key>.tmp-<pid>…`, locks `<key>.lock`.
#[allow(dead_code)]
pub fn stage_entries(store: &Path) -> Vec<(String, String, std::path::PathBuf)> {
    let mut out = Vec::new();
    let Ok(stages) = std::fs::read_dir(store.join("stages")) else {
        return out;
    };
    for stage in stages.flatten() {
        let name = stage.file_name().to_string_lossy().into_owned();
        for e in std::fs::read_dir(stage.path()).unwrap().flatten() {
            let entry = e.file_name().to_string_lossy().into_owned();
            out.push((name.clone(), entry, e.path()));
        }
    }
    out.sort();
    out
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

/// Whether python3 can import `modules` (comma-separated, as in an `import` line). Where it
/// cannot, the caller skips its comparison with a message naming the pip packages, unless the
/// environment variable `require` is "1" (CI), where this fails.
#[allow(dead_code)]
pub fn python_can_import(modules: &str, require: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let msg = format!(
            "python3 cannot import {modules} (pip install {})",
            modules.replace(',', "")
        );
        assert!(
            std::env::var(require).as_deref() != Ok("1"),
            "{require}=1 but {msg}"
        );
        eprintln!("skipped: {msg}");
    }
    ok
}

/// Run a Python script (`python3 -c script args…`); its last line of output as JSON.
#[allow(dead_code)]
pub fn python_json<S: AsRef<std::ffi::OsStr>>(script: &str, args: &[S]) -> serde_json::Value {
    let out = Command::new("python3")
        .args(["-c", script])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap()
}

/// The finished run folder of recipe `name` in the store `tmp/runs`.
#[allow(dead_code)]
pub fn run_folder(tmp: &Path, name: &str) -> std::path::PathBuf {
    std::fs::read_dir(tmp.join("runs").join(name))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("results.json").is_file())
        .unwrap()
}
