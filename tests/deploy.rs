//! The student leaves kdrun: the quick recipe with `[export]` writes its distilled student and
//! its BERT teacher as ONNX folders; onnxruntime (Python) runs both on the whole test split and
//! gives kdrun's predictions, logits within 1e-4, and the exported `tokenizer.json`, read by the
//! `tokenizers` library, gives kdrun's ids for every test sentence. `kdrun predict` reproduces
//! the report's accuracy, streams JSON lines and CSV, and refuses bad input by line.

mod common;

use common::{kdrun, python_can_import, python_json, quick_cmd, run_folder};
use kdrun::deploy::{ModelChoice, Run};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Whether Python's onnxruntime, tokenizers and numpy can be imported; under
/// KDRUN_REQUIRE_ONNXRUNTIME=1 (CI) their absence fails the test.
fn python_clients() -> bool {
    python_can_import(
        "onnxruntime, tokenizers, numpy",
        "KDRUN_REQUIRE_ONNXRUNTIME",
    )
}

/// The quick recipe's run folder, with `[export]` of the distilled student and the teacher.
fn quick_run(tmp: &Path) -> PathBuf {
    let out = quick_cmd(
        tmp,
        &[
            "export.models=[\"distilled\", \"teacher\"]",
            "teacher.export=true",
        ],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    run_folder(tmp, "quick")
}

/// Compare an exported folder with kdrun on `texts`: the tokenizer's ids, onnxruntime's logits.
const CHECK: &str = r#"
import json, sys
import numpy as np, onnxruntime as ort
from tokenizers import Tokenizer
folder, expected_path = sys.argv[1], sys.argv[2]
expected = json.load(open(expected_path))
tok = Tokenizer.from_file(folder + "/tokenizer.json")
pad = json.load(open(folder + "/config.json")).get("pad_token_id") or 0
session = ort.InferenceSession(folder + "/model.onnx", providers=["CPUExecutionProvider"])
names = [i.name for i in session.get_inputs()]
worst, id_mismatch, argmax_mismatch = 0.0, 0, 0
rows = expected["rows"]
for start in range(0, len(rows), 64):
    batch = rows[start:start + 64]
    encs = tok.encode_batch([r["text"] for r in batch])
    for r, e in zip(batch, encs):
        if e.ids != r["ids"]:
            id_mismatch += 1
            if id_mismatch < 4:
                print("ids differ:", r["text"], e.ids, r["ids"], file=sys.stderr)
    width = max(len(r["ids"]) for r in batch)
    ids = np.full((len(batch), width), pad, dtype=np.int64)
    mask = np.zeros((len(batch), width), dtype=np.int64)
    for i, r in enumerate(batch):
        ids[i, :len(r["ids"])] = r["ids"]
        mask[i, :len(r["ids"])] = 1
    feeds = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in names:
        feeds["token_type_ids"] = np.zeros_like(ids)
    logits = session.run(["logits"], feeds)[0]
    ours = np.array([r["logits"] for r in batch], dtype=np.float32)
    worst = max(worst, float(np.abs(logits - ours).max()))
    argmax_mismatch += int((logits.argmax(1) != ours.argmax(1)).sum())
print(json.dumps({"rows": len(rows), "max_abs_diff": worst, "id_mismatch": id_mismatch, "argmax_mismatch": argmax_mismatch}))
"#;

fn check_export(run: &Run, which: ModelChoice, folder: &Path, tmp: &Path) -> Value {
    let device = burn::tensor::Device::flex();
    let model = run.model(which, &device).unwrap();
    let texts = run.results.test_texts.clone();
    let logits = model.logits(&texts, 64, &device).unwrap();
    let rows: Vec<Value> = texts
        .iter()
        .zip(&logits)
        .map(|(t, l)| json!({"text": t, "ids": model.encode(t).unwrap(), "logits": l}))
        .collect();
    let expected = tmp.join(format!("{}-expected.json", which.name()));
    std::fs::write(&expected, json!({ "rows": rows }).to_string()).unwrap();
    let script = tmp.join("check.py");
    std::fs::write(&script, CHECK).unwrap();
    let v = python_json(CHECK, &[folder, expected.as_path()]);
    eprintln!("{} export vs kdrun: {v}", which.name());
    v
}

#[test]
fn exported_student_and_teacher_run_in_onnxruntime_as_in_kdrun() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = quick_run(tmp.path());
    let run = Run::open(&run_dir).unwrap();
    assert_eq!(run.results.exports.len(), 2, "{:?}", run.results.exports);
    let student = run_dir.join("export/distilled-onnx");
    let teacher = run_dir.join("export/teacher-onnx");
    for f in [
        "model.onnx",
        "tokenizer.json",
        "config.json",
        "README.md",
        "vocab.txt",
    ] {
        assert!(student.join(f).is_file(), "{f}");
    }
    for f in [
        "model.onnx",
        "tokenizer.json",
        "config.json",
        "model.safetensors",
    ] {
        assert!(teacher.join(f).is_file(), "{f}");
    }
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(student.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["classes"], json!(run.class_names()));
    assert_eq!(config["tokens"], "char");
    // The report links the exported folders.
    let page = std::fs::read_to_string(tmp.path().join("reports/quick/index.html")).unwrap();
    assert!(
        page.contains("distilled-onnx\"><code>"),
        "no link on the page"
    );
    if !python_clients() {
        return;
    }
    let rows = run.results.test_texts.len();
    assert_eq!(rows, 2810);
    for (which, folder) in [
        (ModelChoice::Distilled, &student),
        (ModelChoice::Teacher, &teacher),
    ] {
        let v = check_export(&run, which, folder, tmp.path());
        assert_eq!(v["rows"], rows);
        assert_eq!(v["id_mismatch"], 0, "{which:?}: tokenizer.json ids differ");
        assert_eq!(v["argmax_mismatch"], 0, "{which:?}: predictions differ");
        assert!(v["max_abs_diff"].as_f64().unwrap() < 1e-4, "{which:?}: {v}");
    }
}

/// A RoBERTa-layout checkpoint (the tiny random `roberta-tiny-cls` fixture with its XLM-R style
/// tokenizer: `<s>` = 0, `<pad>` = 1, positions from 2) as the quick recipe's teacher: it is
/// fine-tuned, exported as `RobertaForSequenceClassification` with transformers' tensor names, and
/// its ONNX graph with the exported tokenizer.json gives kdrun's ids and logits on every test
/// sentence. Where torch and transformers can be imported, transformers loads the exported
/// folder and gives kdrun's logits too.
#[test]
fn a_roberta_checkpoint_teacher_is_fine_tuned_and_exported() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/roberta-tiny-cls");
    let ckpt = tmp.path().join("roberta");
    std::fs::create_dir_all(&ckpt).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture.join(f), ckpt.join(f)).unwrap();
    }
    let out = quick_cmd(
        tmp.path(),
        &[
            &format!("teacher.checkpoint={}", ckpt.display()),
            "export.models=[\"teacher\"]",
            "teacher.export=true",
        ],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let run_dir = run_folder(tmp.path(), "quick");
    let run = Run::open(&run_dir).unwrap();
    let teacher = run_dir.join("export/teacher-onnx");
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(teacher.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["model_type"], "roberta");
    assert_eq!(
        config["architectures"],
        json!(["RobertaForSequenceClassification"])
    );
    let names = kdrun::models::hf::Weights::open(&teacher).unwrap();
    let names: Vec<&str> = names.names().collect();
    assert!(names.contains(&"classifier.out_proj.weight"), "{names:?}");
    assert!(names.contains(&"classifier.dense.weight"), "{names:?}");
    assert!(!names.iter().any(|n| n.contains("pooler")), "{names:?}");
    if !python_clients() {
        return;
    }
    let v = check_export(&run, ModelChoice::Teacher, &teacher, tmp.path());
    assert_eq!(v["rows"], 2810);
    assert_eq!(v["id_mismatch"], 0, "tokenizer.json ids differ");
    assert_eq!(v["argmax_mismatch"], 0, "predictions differ");
    assert!(v["max_abs_diff"].as_f64().unwrap() < 1e-4, "{v}");
    transformers_agrees(&run, &teacher, tmp.path());
}

/// transformers' `AutoModelForSequenceClassification` on the exported folder gives kdrun's
/// logits for every test sentence (skipped without torch and transformers, unless
/// KDRUN_REQUIRE_TRANSFORMERS=1).
fn transformers_agrees(run: &Run, folder: &Path, tmp: &Path) {
    if !python_can_import("torch, transformers", "KDRUN_REQUIRE_TRANSFORMERS") {
        return;
    }
    let device = burn::tensor::Device::flex();
    let model = run.model(ModelChoice::Teacher, &device).unwrap();
    let texts = run.results.test_texts.clone();
    let logits = model.logits(&texts, 64, &device).unwrap();
    let expected = tmp.join("transformers-expected.json");
    std::fs::write(
        &expected,
        json!({"texts": texts, "logits": logits}).to_string(),
    )
    .unwrap();
    let script = r#"
import json, sys, torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
folder, expected = sys.argv[1], json.load(open(sys.argv[2]))
tok = AutoTokenizer.from_pretrained(folder)
model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
worst, mismatch = 0.0, 0
with torch.inference_mode():
    for i in range(0, len(expected["texts"]), 128):
        enc = tok(expected["texts"][i:i + 128], padding=True, truncation=True, max_length=24, return_tensors="pt")
        got = model(**enc).logits
        ours = torch.tensor(expected["logits"][i:i + 128])
        worst = max(worst, (got - ours).abs().max().item())
        mismatch += int((got.argmax(1) != ours.argmax(1)).sum())
print(json.dumps({"max_abs_diff": worst, "argmax_mismatch": mismatch, "class": type(model).__name__}))
"#;
    let v = python_json(script, &[folder, expected.as_path()]);
    eprintln!("transformers vs kdrun: {v}");
    assert_eq!(v["class"], "RobertaForSequenceClassification");
    assert_eq!(v["argmax_mismatch"], 0, "{v}");
    assert!(v["max_abs_diff"].as_f64().unwrap() < 1e-4, "{v}");
}

/// `kdrun predict` with `args` on the quick run; (exit success, stdout, stderr).
fn predict(run: &Path, args: &[&str], stdin: Option<&[u8]>) -> (bool, String, String) {
    use std::io::Write;
    let mut cmd = kdrun();
    cmd.arg("predict").arg(run).args(args);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(bytes) = stdin {
            let _ = input.write_all(bytes); // a refusal may end kdrun before it reads
        }
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn predict_reproduces_the_report_and_refuses_bad_input_by_line() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = quick_run(tmp.path());
    let results = kdrun::store::RunResults::load(&run_dir.join("results.json")).unwrap();
    // The test split as JSON lines with an id passed through.
    let input = tmp.path().join("test.jsonl");
    let lines: Vec<String> = results
        .test_texts
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"id": i, "sentence": t}).to_string())
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let output = tmp.path().join("predictions.jsonl");
    let names: Vec<String> = results.classes.iter().map(|c| c.name.clone()).collect();
    for (model, key) in [
        ("distilled", "distilled"),
        ("student", "student"),
        ("teacher", "teacher"),
        ("baseline", "baseline"),
    ] {
        let (ok, _, err) = predict(
            &run_dir,
            &[
                "--model",
                model,
                "--input",
                input.to_str().unwrap(),
                "--output",
                output.to_str().unwrap(),
                "--top-k",
                "3",
            ],
            None,
        );
        assert!(ok, "{model}: {err}");
        let text = std::fs::read_to_string(&output).unwrap();
        let predicted: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(predicted.len(), results.test_texts.len());
        let correct = predicted
            .iter()
            .enumerate()
            .filter(|(i, p)| {
                assert_eq!(p["id"], json!(i));
                assert_eq!(p["top_k"].as_array().unwrap().len(), 3);
                p["label"] == json!(names[results.test_labels[*i]])
            })
            .count();
        let accuracy = correct as f64 / predicted.len() as f64;
        let reported = results
            .models
            .iter()
            .find(|m| m.key == key)
            .unwrap()
            .report
            .accuracy;
        assert_eq!(
            accuracy, reported,
            "{model}: predict's accuracy vs the report's"
        );
    }
    // Plain text from standard input, CSV out.
    let csv_out = tmp.path().join("out.csv");
    let (ok, _, err) = predict(
        &run_dir,
        &["--output", csv_out.to_str().unwrap()],
        Some("华为发布新款折叠屏手机\n湖人队主场击败勇士\n".as_bytes()),
    );
    assert!(ok, "{err}");
    let csv = std::fs::read_to_string(&csv_out).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(csv.starts_with("line,label,probability"), "{csv}");

    // Bad input: each refused with its line, and no output file left behind.
    let bad_out = tmp.path().join("bad.jsonl");
    let cases: &[(&str, &[u8], &str, &str)] = &[
        (
            "txt",
            b"ok sentence\n\nmore\n",
            "input.txt:2: the text is empty",
            "empty line",
        ),
        (
            "txt",
            b"ok\n   \n",
            "input.txt:2: the text is only spaces",
            "spaces",
        ),
        (
            "txt",
            b"ok\n\xff\xfe bad\n",
            "input.txt:2: not UTF-8",
            "non-UTF-8",
        ),
        (
            "jsonl",
            b"{\"text\": \"ok\"}\n{\"id\": 3}\n",
            "input.jsonl:2: no text field",
            "no field",
        ),
        (
            "csv",
            b"id,body\n1,hello\n",
            "input.csv:1: no text column",
            "no column",
        ),
        (
            "csv",
            b"id,sentence\n1,\"a\nb\"\n",
            "input.csv:2: a quoted field opens here",
            "multi-line field",
        ),
    ];
    for (ext, bytes, expected, what) in cases {
        let path = tmp.path().join(format!("input.{ext}"));
        std::fs::write(&path, bytes).unwrap();
        let (ok, _, err) = predict(
            &run_dir,
            &[
                "--input",
                path.to_str().unwrap(),
                "--output",
                bad_out.to_str().unwrap(),
            ],
            None,
        );
        assert!(!ok, "{what}: accepted");
        assert!(err.contains(expected), "{what}: {err}");
        assert!(!bad_out.exists(), "{what}: a half-written output was left");
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{what}: {leftovers:?}");
    }
    // An unknown model, a model the run does not have, a damaged stage.
    let (ok, _, err) = predict(&run_dir, &["--model", "giant"], Some(b"x\n"));
    assert!(!ok && err.contains("giant"), "{err}");
    let (ok, _, err) = predict(&tmp.path().join("nowhere"), &[], Some(b"x\n"));
    assert!(!ok && err.contains("nowhere"), "{err}");
    let stage = Path::new(&results.stages["distilled"]).to_path_buf();
    let weights = stage.join("student.bpk");
    let mut bytes = std::fs::read(&weights).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xFF;
    std::fs::write(&weights, bytes).unwrap();
    let (ok, _, err) = predict(&run_dir, &[], Some(b"x\n"));
    assert!(
        !ok && err.contains("damaged") && err.contains("student.bpk"),
        "{err}"
    );
}

#[test]
fn export_and_predict_refuse_what_a_run_cannot_give() {
    let tmp = tempfile::tempdir().unwrap();
    let out = quick_cmd(tmp.path(), &["teacher.arch=\"linear\""])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = tmp.path().join("runs/quick");
    let kd = |args: &[&str]| {
        let out = kdrun().args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let run_s = run.to_str().unwrap();
    // A linear teacher is not a model `--model teacher` reads.
    let (ok, err) = kd(&["predict", run_s, "--model", "teacher", "--input", "-"]);
    assert!(!ok && err.contains("a linear model"), "{err}");
    // The baseline has no ONNX form; a folder that is not an export is not overwritten.
    let dest = tmp.path().join("dest");
    let (ok, err) = kd(&[
        "export",
        run_s,
        "--model",
        "baseline",
        "--out",
        dest.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("TF-IDF"), "{err}");
    assert!(!dest.exists(), "a refused export left a folder");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(dest.join("notes.txt"), "mine").unwrap();
    let (ok, err) = kd(&["export", run_s, "--out", dest.to_str().unwrap()]);
    assert!(!ok && err.contains("is not a kdrun export"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dest.join("notes.txt")).unwrap(),
        "mine"
    );
    // A new folder takes the export; exporting again replaces it.
    let fresh = tmp.path().join("student");
    for _ in 0..2 {
        let (ok, err) = kd(&["export", run_s, "--out", fresh.to_str().unwrap()]);
        assert!(ok, "{err}");
        assert!(fresh.join("model.onnx").is_file());
    }
    // A recipe's teacher for [export] that is not BERT is refused before the run.
    let (ok, err) = kd(&[
        "check",
        "recipes/quick.toml",
        "--set",
        "teacher.arch=\"linear\"",
        "--set",
        "export.models=[\"teacher\"]",
    ]);
    assert!(!ok && err.contains("export.models"), "{err}");
}
