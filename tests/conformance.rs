//! Hugging Face checkpoints: kdrun must reproduce transformers' outputs on the fixtures from both
//! weight files, reject broken checkpoints by name, export loadable folders, and (where the model is
//! available) load a real pretrained BERT.

mod common;
use burn::tensor::Device;
use kdrun::models::bert::mlm::BertMaskedLm;
use kdrun::models::forward::{forward, Inputs, JsonTensor};
use kdrun::models::hf::{RawTensor, Weights};
use kdrun::models::Checkpoint;
use kdrun::models::{BertClassifier, BertConfig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn config(dir: &Path) -> BertConfig {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

fn reference(dir: &Path) -> BTreeMap<String, JsonTensor> {
    common::reference_outputs(dir)
}

fn check(name: &str, weights: Weights) {
    let dir = fixture(name);
    let inputs = Inputs::load(&dir.join("reference.json")).unwrap();
    let out = forward(&config(&dir), &weights, &inputs, &Device::flex()).unwrap();
    for (key, want) in reference(&dir) {
        let got = out.get(&key).unwrap_or_else(|| panic!("{name}: no {key}"));
        let diff = got.max_abs_diff(&want);
        assert!(
            diff < 1e-4,
            "{name} {} {key}: max abs diff {diff}",
            weights.source.display()
        );
    }
}

#[test]
fn classifier_fixture_from_safetensors() {
    check(
        "bert-tiny-cls",
        Weights::from_safetensors(&fixture("bert-tiny-cls").join("model.safetensors")).unwrap(),
    );
}

#[test]
fn classifier_fixture_from_pytorch_bin() {
    check(
        "bert-tiny-cls",
        Weights::from_pytorch(&fixture("bert-tiny-cls").join("pytorch_model.bin")).unwrap(),
    );
}

/// RoBERTa's and XLM-RoBERTa's layout (positions offset by pad_token_id + 1, one token type,
/// `classifier.dense` + `classifier.out_proj`) from both weight files.
#[test]
fn roberta_and_xlm_roberta_fixtures_from_both_weight_files() {
    for name in ["roberta-tiny-cls", "xlm-roberta-tiny-cls"] {
        let dir = fixture(name);
        check(
            name,
            Weights::from_safetensors(&dir.join("model.safetensors")).unwrap(),
        );
        check(
            name,
            Weights::from_pytorch(&dir.join("pytorch_model.bin")).unwrap(),
        );
    }
}

#[test]
fn masked_lm_fixture_from_safetensors() {
    check(
        "bert-tiny-mlm",
        Weights::from_safetensors(&fixture("bert-tiny-mlm").join("model.safetensors")).unwrap(),
    );
}

#[test]
fn masked_lm_fixture_from_pytorch_bin() {
    check(
        "bert-tiny-mlm",
        Weights::from_pytorch(&fixture("bert-tiny-mlm").join("pytorch_model.bin")).unwrap(),
    );
}

fn tensors(name: &str) -> BTreeMap<String, RawTensor> {
    let w = Weights::from_safetensors(&fixture(name).join("model.safetensors")).unwrap();
    let names: Vec<String> = w.names().map(String::from).collect();
    let device = Device::flex();
    names
        .into_iter()
        .map(|n| {
            let shape = w.shape(&n).unwrap().to_vec();
            let data = match shape.len() {
                1 => w.tensor(&n, [shape[0]], &device).unwrap().into_data(),
                _ => w
                    .tensor(&n, [shape[0], shape[1]], &device)
                    .unwrap()
                    .into_data(),
            };
            (
                n,
                RawTensor {
                    shape,
                    data: data.convert::<f32>().try_to_vec::<f32>().unwrap(),
                },
            )
        })
        .collect()
}

#[test]
fn broken_checkpoints_name_the_tensor() {
    let dir = fixture("bert-tiny-cls");
    let c = config(&dir);
    let device = Device::flex();

    let mut missing = tensors("bert-tiny-cls");
    missing.remove("bert.encoder.layer.1.output.dense.weight");
    let err = BertClassifier::load(&c, &Weights::from_map(&dir, missing), 5, &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing tensor `bert.encoder.layer.1.output.dense.weight`"),
        "{err}"
    );

    let mut misshaped = tensors("bert-tiny-cls");
    misshaped.get_mut("bert.pooler.dense.weight").unwrap().shape = vec![32, 128];
    let err = BertClassifier::load(&c, &Weights::from_map(&dir, misshaped), 5, &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`bert.pooler.dense.weight` has shape [32, 128]"),
        "{err}"
    );

    let mut extra = tensors("bert-tiny-cls");
    extra.insert(
        "bert.encoder.layer.2.output.dense.bias".into(),
        RawTensor {
            shape: vec![64],
            data: vec![0.0; 64],
        },
    );
    let err = BertClassifier::load(&c, &Weights::from_map(&dir, extra), 5, &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bert.encoder.layer.2.output.dense.bias"),
        "{err}"
    );
}

#[test]
fn heads_are_kept_replaced_or_skipped_with_a_note() {
    let device = Device::flex();
    let cls = fixture("bert-tiny-cls");
    // Five labels: the checkpoint's head is kept, nothing to say.
    let (_, notes) =
        BertClassifier::load(&config(&cls), &Weights::open(&cls).unwrap(), 5, &device).unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    // Three labels: a new head, said once.
    let (m, notes) =
        BertClassifier::load(&config(&cls), &Weights::open(&cls).unwrap(), 3, &device).unwrap();
    assert_eq!(m.classifier.weight.dims(), [64, 3]);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("classifier.") && n.contains("new head")),
        "{notes:?}"
    );
    // A masked-LM checkpoint as a classifier: no pooler, the MLM head skipped.
    let mlm = fixture("bert-tiny-mlm");
    let (_, notes) =
        BertClassifier::load(&config(&mlm), &Weights::open(&mlm).unwrap(), 5, &device).unwrap();
    assert!(notes.iter().any(|n| n.contains("pooler")), "{notes:?}");
    assert!(notes.iter().any(|n| n.contains("cls.")), "{notes:?}");
}

#[test]
fn exported_folders_load_back_to_identical_outputs() {
    let device = Device::flex();
    for (name, arch) in [
        ("bert-tiny-cls", "BertForSequenceClassification"),
        ("bert-tiny-mlm", "BertForMaskedLM"),
        ("roberta-tiny-cls", "RobertaForSequenceClassification"),
        (
            "xlm-roberta-tiny-cls",
            "XLMRobertaForSequenceClassification",
        ),
    ] {
        let dir = fixture(name);
        let inputs = Inputs::load(&dir.join("reference.json")).unwrap();
        let c = config(&dir);
        let w = Weights::open(&dir).unwrap();
        let exported = if arch == "BertForMaskedLM" {
            BertMaskedLm::load(&c, &w, &device)
                .unwrap()
                .0
                .hf_tensors()
                .unwrap()
        } else {
            BertClassifier::load(&c, &w, 5, &device)
                .unwrap()
                .0
                .hf_tensors(c.family())
                .unwrap()
        };
        if arch != "BertForMaskedLM" {
            // The state dict transformers wrote, name for name and shape for shape: what
            // from_pretrained needs to load the export without a missing or unexpected key.
            let want: BTreeMap<String, Vec<usize>> = tensors(name)
                .into_iter()
                .map(|(k, t)| (k, t.shape))
                .collect();
            let got: BTreeMap<String, Vec<usize>> = exported
                .iter()
                .map(|(k, t)| (k.clone(), t.shape.clone()))
                .collect();
            assert_eq!(got, want, "{name}: exported names and shapes");
        }
        let out = tempfile::tempdir().unwrap();
        kdrun::models::hf::save_folder(out.path(), &c, arch, &exported).unwrap();
        for f in ["config.json", "model.safetensors"] {
            assert!(out.path().join(f).is_file(), "{f}");
        }
        let back = Checkpoint::open(out.path()).unwrap();
        let kdrun::models::TeacherConfig::Bert(back_config) = &back.config else {
            panic!("{name}: not read back as BERT");
        };
        assert_eq!(back_config.architectures, vec![arch.to_string()]);
        let a = forward(&c, &Weights::open(&dir).unwrap(), &inputs, &device).unwrap();
        let b = forward(back_config, back.weights().unwrap(), &inputs, &device).unwrap();
        for key in ["embedding_output", "last_hidden_state", "logits"] {
            assert_eq!(a[key].max_abs_diff(&b[key]), 0.0, "{name} {key}");
        }
    }
}

#[test]
fn forward_command_writes_the_fixture_layout() {
    let dir = fixture("bert-tiny-cls");
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
    assert!(status.success());
    let got: BTreeMap<String, JsonTensor> =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for (key, want) in reference(&dir) {
        assert!(got[&key].max_abs_diff(&want) < 1e-4, "{key}");
    }
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_kdrun"))
        .args(["forward", "--checkpoint", "/nonexistent", "--input"])
        .arg(dir.join("reference.json"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/nonexistent"));
}

/// all-MiniLM-L6-v2 (a real pretrained BERT): `KDRUN_MINILM_DIR`, else the shared copy beside the
/// repository. CI downloads it (`.ci/run`) and sets `KDRUN_REQUIRE_MINILM=1`, so there the test
/// cannot pass without it.
fn minilm_dir() -> Option<PathBuf> {
    if let Ok(d) = std::env::var("KDRUN_MINILM_DIR") {
        return Some(PathBuf::from(d));
    }
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/models/all-MiniLM-L6-v2");
    shared.join("model.safetensors").is_file().then_some(shared)
}

#[test]
fn real_checkpoint_minilm_tokenizes_and_embeds() {
    use burn::tensor::{Int, Tensor, TensorData};
    use kdrun::data::HfTokenizer;
    use kdrun::models::bert::BertModel;

    let Some(dir) = minilm_dir() else {
        assert!(
            std::env::var("KDRUN_REQUIRE_MINILM").is_err(),
            "KDRUN_REQUIRE_MINILM is set but all-MiniLM-L6-v2 was not found (KDRUN_MINILM_DIR)"
        );
        eprintln!("all-MiniLM-L6-v2 not found: real-checkpoint test skipped");
        return;
    };
    // Our vocab.txt pipeline (BERT basic tokenizer + WordPiece) against the model's tokenizer.json.
    let from_vocab = HfTokenizer::bert_from_vocab(&dir.join("vocab.txt"), true).unwrap();
    let mut from_json = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    from_json.with_padding(None);
    for s in [
        "Hello, World! It's a test.",
        "Unbelievably, the naïve café's crème brûlée won 3rd place.",
        "Distillation shrinks BERT into a BiLSTM — fast & small.",
        "北京欢迎你 and 东京",
    ] {
        let a = from_vocab.encode(s, true).unwrap();
        let b = from_json.encode(s, true).unwrap();
        assert_eq!(a.get_ids(), b.get_ids(), "{s}");
    }

    let ckpt = Checkpoint::open(&dir).unwrap();
    let tok = HfTokenizer::open(&dir).unwrap();
    let device = Device::flex();
    let mut notes = Vec::new();
    let kdrun::models::TeacherConfig::Bert(config) = &ckpt.config else {
        panic!("MiniLM is read as BERT");
    };
    let weights = ckpt.weights().unwrap();
    let model = BertModel::load(config, weights, "", &device, &mut notes).unwrap();
    assert!(weights.unused().is_empty(), "{:?}", weights.unused());
    assert!(notes.is_empty(), "{notes:?}");

    let embed = |texts: &[&str]| -> Vec<Vec<f32>> {
        let ids: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| tok.encode(t, true, 128).unwrap())
            .collect();
        let t = ids.iter().map(Vec::len).max().unwrap();
        let b = ids.len();
        let mut flat = vec![0i64; b * t];
        let mut mask = vec![0f32; b * t];
        for (r, row) in ids.iter().enumerate() {
            for (c, id) in row.iter().enumerate() {
                flat[r * t + c] = *id as i64;
                mask[r * t + c] = 1.0;
            }
        }
        let input = Tensor::<2, Int>::from_data(TensorData::new(flat, [b, t]), &device);
        let m = Tensor::<2>::from_data(TensorData::new(mask.clone(), [b, t]), &device);
        let h = model
            .forward(input.clone(), input.zeros_like(), m)
            .last_hidden_state;
        let hidden: Vec<f32> = h.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let d = hidden.len() / (b * t);
        (0..b)
            .map(|r| {
                // Mean over real tokens (sentence-transformers' pooling), then unit length.
                let mut v = vec![0f32; d];
                let n: f32 = mask[r * t..(r + 1) * t].iter().sum();
                for c in 0..t {
                    if mask[r * t + c] > 0.0 {
                        for k in 0..d {
                            v[k] += hidden[(r * t + c) * d + k] / n;
                        }
                    }
                }
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter().map(|x| x / norm).collect()
            })
            .collect()
    };
    let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    for (s, para, other) in [
        (
            "A man is playing a guitar.",
            "Someone plays the guitar.",
            "The stock market fell sharply today.",
        ),
        (
            "How do I bake a chocolate cake?",
            "What is a good recipe for chocolate cake?",
            "The train to Berlin leaves at noon.",
        ),
        (
            "The cat sits on the mat.",
            "A cat is sitting on a rug.",
            "Quantum computers use qubits.",
        ),
        (
            "She is reading a book in the library.",
            "A woman reads a novel at the library.",
            "He repaired the car engine.",
        ),
    ] {
        let e = embed(&[s, para, other]);
        let (p, o) = (cos(&e[0], &e[1]), cos(&e[0], &e[2]));
        assert!(p > o + 0.2, "{s:?}: paraphrase {p:.3} vs unrelated {o:.3}");
    }
}

#[test]
fn truncated_or_mismatched_weight_files_are_refused_by_file_and_tensor() {
    let device = Device::flex();
    let name = "bert-tiny-cls";
    let c = config(&fixture(name));
    let all = tensors(name);
    let load = |dir: &Path| -> String {
        let checkpoint = match Checkpoint::open(dir) {
            Ok(c) => c,
            Err(e) => return format!("{e:#}"),
        };
        match checkpoint.weights() {
            Ok(w) => BertClassifier::load(&c, w, 5, &device)
                .map(|_| ())
                .map_err(|e| format!("{e:#}"))
                .unwrap_err(),
            Err(e) => format!("{e:#}"),
        }
    };

    // Cut short, in the data and in the header: refused on opening (so by `kdrun check`).
    let whole = std::fs::read(fixture(name).join("model.safetensors")).unwrap();
    for (cut, expect) in [
        (
            whole.len() * 6 / 10,
            "model.safetensors: cut short: tensor `",
        ),
        (200, "model.safetensors: cut short: its header alone needs"),
        (
            5,
            "model.safetensors: 5 bytes, too short for a safetensors file",
        ),
    ] {
        let dir = common::folder_with(&fixture(name), &all, None);
        std::fs::write(dir.path().join("model.safetensors"), &whole[..cut]).unwrap();
        let err = format!(
            "{:#}",
            Checkpoint::open(dir.path()).map(|_| ()).unwrap_err()
        );
        assert!(err.contains(expect), "cut at {cut}: {err}");
        let err = format!(
            "{:#}",
            Weights::from_safetensors(&dir.path().join("model.safetensors")).unwrap_err()
        );
        assert!(err.contains(expect), "cut at {cut}: {err}");
    }

    // The same file, whole, loads.
    let dir = common::folder_with(&fixture(name), &all, None);
    let checkpoint = Checkpoint::open(dir.path()).unwrap();
    BertClassifier::load(&c, checkpoint.weights().unwrap(), 5, &device).unwrap();

    // A tensor of the wrong shape, of integers, or missing: the file, the tensor, expected and
    // found.
    let mut misshaped = all.clone();
    let t = misshaped
        .get_mut("bert.encoder.layer.0.intermediate.dense.weight")
        .unwrap();
    t.shape.reverse();
    let found = format!("{:?}", t.shape);
    let dir = common::folder_with(&fixture(name), &misshaped, None);
    let err = load(dir.path());
    assert!(
        err.contains("model.safetensors: tensor `bert.encoder.layer.0.intermediate.dense.weight`")
            && err.contains(&format!("has shape {found}, expected")),
        "{err}"
    );
    let dir = common::folder_with(&fixture(name), &all, Some("bert.pooler.dense.bias"));
    let err = load(dir.path());
    assert!(
        err.contains("model.safetensors: tensor `bert.pooler.dense.bias` holds I32 numbers")
            && err.contains("expected floating point"),
        "{err}"
    );
    let mut missing = all.clone();
    missing.remove("bert.embeddings.word_embeddings.weight");
    let dir = common::folder_with(&fixture(name), &missing, None);
    let err = load(dir.path());
    assert!(
        err.contains("model.safetensors: missing tensor `bert.embeddings.word_embeddings.weight`"),
        "{err}"
    );
}
