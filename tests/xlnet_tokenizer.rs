//! XLNet's input pipeline against transformers' `XLNetTokenizer` (`../shared/fixtures/xlnet-spm`):
//! a SentencePiece unigram `tokenizer.json` read by kdrun reproduces its `input_ids`,
//! `token_type_ids` (`<cls>` in segment 2) and `attention_mask`, single sentences, a pair, and a
//! batch padded on the LEFT and truncated to 24 tokens.

use kdrun::data::batch::{Batcher, Encoded, InputKind, TextEncoder};
use kdrun::data::HfTokenizer;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/xlnet-spm")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn reference() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture().join("reference.json")).unwrap())
        .unwrap()
}

#[test]
fn single_sentences_and_a_pair() {
    let r = reference();
    let tok = HfTokenizer::from_file(&fixture().join("tokenizer.json")).unwrap();
    assert!(tok.cls_last, "XLNet reads its <cls> last");
    assert_eq!(
        (tok.unk_id, tok.cls_id, tok.sep_id, tok.pad_id, tok.mask_id),
        (0, 3, 4, 5, 6)
    );
    for case in r["single"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let (got, types) = tok.encode_with_types(text, true, 512).unwrap();
        assert_eq!(got, ids(&case["input_ids"]), "{text}");
        assert_eq!(types, ids(&case["token_type_ids"]), "{text}");
        assert!(ids(&case["attention_mask"]).iter().all(|&m| m == 1));
    }
    // A pair through the same post-processor: `A <sep> B <sep> <cls>`, segments 0… 1… 2.
    let pair = &r["pair"];
    let texts: Vec<&str> = pair["text"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let enc = tok.inner().encode((texts[0], texts[1]), true).unwrap();
    assert_eq!(enc.get_ids(), ids(&pair["input_ids"]).as_slice());
    assert_eq!(enc.get_type_ids(), ids(&pair["token_type_ids"]).as_slice());
}

#[test]
fn a_batch_is_padded_on_the_left_and_truncated() {
    let r = reference();
    let b = &r["batch_max_length_24"];
    let tok = HfTokenizer::from_file(&fixture().join("tokenizer.json")).unwrap();
    let batcher = Batcher::for_encoder(InputKind::Teacher, 24, &tok);
    assert!(batcher.pad_left);
    let items: Vec<Encoded> = b["text"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, t)| Encoded {
            id: i as u32,
            tokens: tok
                .encode_text(t.as_str().unwrap(), InputKind::Teacher, 24)
                .unwrap(),
            label: 0,
        })
        .collect();
    let refs: Vec<&Encoded> = items.iter().collect();
    let batch = batcher.batch(&refs, &burn::tensor::Device::flex());
    let got: Vec<i64> = batch
        .tokens
        .into_data()
        .convert::<i64>()
        .try_to_vec()
        .unwrap();
    let mask: Vec<f32> = batch.mask.into_data().try_to_vec().unwrap();
    let want: Vec<i64> = b["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| ids(row).into_iter().map(i64::from))
        .collect();
    let want_mask: Vec<f32> = b["attention_mask"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| ids(row).into_iter().map(|m| m as f32))
        .collect();
    assert_eq!(got, want);
    assert_eq!(mask, want_mask);
    // The truncated row keeps `<sep> <cls>` at its end.
    assert!(items
        .iter()
        .any(|e| e.tokens.len() == 24 && e.tokens[22..] == [4, 3]));
}

#[test]
fn a_folder_with_only_spiece_model_says_how_to_convert_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture().join("spiece.model"),
        dir.path().join("spiece.model"),
    )
    .unwrap();
    let err = match HfTokenizer::open(dir.path()) {
        Ok(_) => panic!("a folder with only spiece.model must not load"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("spiece.model") && err.contains("save_pretrained"),
        "{err}"
    );
}
