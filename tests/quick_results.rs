//! `kdrun recipes/quick.toml` computes exactly the numbers it computed before (the committed
//! `tests/fixtures/quick-results.json`): every score, prediction, loss and count of every model,
//! bit for bit (timings and paths left out), and the same with a checkpoint teacher
//! (`tests/fixtures/quick-checkpoint-results.json`). A refactoring that changes a number fails
//! here.
//!
//! The expected file was made on the 2-core AMD EPYC development machine with the CPU backend;
//! floating-point results can differ on a processor with other vector instructions. To re-make it
//! after a change that is meant to change the numbers: `KDRUN_BLESS=1 cargo test --release --test
//! quick_results`, and say why in the commit.

mod common;
use common::kdrun;
use serde_json::{json, Value};
use std::path::Path;

/// The numbers of a results file that must not move.
fn numbers(results: &Value) -> Value {
    let models: Vec<Value> = results["models"]
        .as_array()
        .expect("models")
        .iter()
        .map(|m| {
            let history: Vec<Value> = m["history"]
                .as_array()
                .expect("history")
                .iter()
                .map(|h| json!([h["epoch"], h["train_loss"], h["valid_accuracy"]]))
                .collect();
            json!({
                "key": m["key"],
                "label": m["label"],
                "params": m["params"],
                "trainable_params": m["trainable_params"],
                "report": m["report"],
                "predictions": m["predictions"],
                "best_epoch": m["best_epoch"],
                "best_valid_accuracy": m["best_valid_accuracy"],
                "history": history,
            })
        })
        .collect();
    json!({
        "classes": results["classes"],
        "counts": results["counts"],
        "vocab_size": results["vocab_size"],
        "teacher_vocab_size": results["teacher_vocab_size"],
        "teacher_logit_rows": results["teacher_logit_rows"],
        "transfer_set": results["transfer_set"],
        "student_tokens": results["student_tokens"],
        "test_labels": results["test_labels"],
        "models": models,
    })
}

/// Run `recipes/quick.toml` with `sets` in a fresh store; its results' numbers.
fn run_quick(sets: &[String]) -> Value {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("runs");
    let reports = tmp.path().join("reports");
    let mut cmd = kdrun();
    cmd.args(["recipes/quick.toml", "--set"])
        .arg(format!("runtime.store={}", store.display()))
        .arg("--set")
        .arg(format!("report.dir={}", reports.display()));
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run_dir = std::fs::read_dir(store.join("quick"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(run_dir.join("results.json")).unwrap();
    numbers(&serde_json::from_str(&text).unwrap())
}

/// Compare with (or, with `KDRUN_BLESS`, write) `tests/fixtures/<file>`.
fn compare(got: Value, file: &str) {
    let expected_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(file);
    if std::env::var_os("KDRUN_BLESS").is_some() {
        std::fs::write(
            &expected_path,
            serde_json::to_string_pretty(&got).unwrap() + "\n",
        )
        .unwrap();
    }
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(&expected_path).unwrap()).unwrap();
    if got != expected {
        for (k, v) in expected.as_object().unwrap() {
            if got[k] != *v {
                if k == "models" {
                    for (g, e) in got[k].as_array().unwrap().iter().zip(v.as_array().unwrap()) {
                        for (field, ev) in e.as_object().unwrap() {
                            assert_eq!(
                                &g[field],
                                ev,
                                "model {} field {field} differs from {}",
                                e["key"],
                                expected_path.display()
                            );
                        }
                    }
                }
                panic!(
                    "{k} differs from {}: {} vs {v}",
                    expected_path.display(),
                    got[k]
                );
            }
        }
    }
}

#[test]
fn quick_recipe_gives_the_committed_numbers() {
    compare(run_quick(&[]), "quick-results.json");
}

/// A teacher from a checkpoint (the tiny masked-LM fixture: no classifier, no pooler, so both are
/// drawn anew), further pre-trained for two steps: loading, the new heads' draws and masked-LM
/// pre-training give the committed numbers (made with the build at cb15d1d).
#[test]
fn quick_recipe_with_a_checkpoint_teacher_gives_the_committed_numbers() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/bert-tiny-mlm");
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture.join(f), dir.path().join(f)).unwrap();
    }
    // The fixture has no vocabulary: its 512 ids as BERT's specials and CJK characters.
    let mut vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    vocab.extend(
        (0x4e00u32..)
            .take(507)
            .map(|c| char::from_u32(c).unwrap().to_string()),
    );
    std::fs::write(dir.path().join("vocab.txt"), vocab.join("\n") + "\n").unwrap();
    let got = run_quick(&[
        format!("teacher.checkpoint={}", dir.path().display()),
        "teacher.pretrain.steps=2".into(),
        "teacher.pretrain.batch_size=8".into(),
    ]);
    compare(got, "quick-checkpoint-results.json");
}

/// TextGCN beside the students, alone and distilled from the teacher: the graph, its training
/// with early stopping and the distilled twin give the committed numbers (made at 8daca22 and
/// checked equal, field by field, to what the build at 50249a5 computes).
#[test]
fn quick_recipe_with_textgcn_gives_the_committed_numbers() {
    let got = run_quick(&["textgcn.enabled=true".into(), "textgcn.distill=true".into()]);
    compare(got, "quick-textgcn-results.json");
}
