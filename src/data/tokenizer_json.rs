//! A teacher's tokenizer as Hugging Face `tokenizer.json`, so that transformers'
//! `AutoTokenizer` (and the `tokenizers` crate) on an exported teacher folder reads text exactly
//! as kdrun did: for the character vocabulary a `WordLevel` model behind normalizers that repeat
//! [`normalize_chars`](super::vocab::normalize_chars) (full-width forms to half-width, whitespace
//! and control characters dropped, optional lower-casing) and a pre-tokenizer that isolates every
//! character; for a checkpoint's tokenizer, that tokenizer itself. Both truncate to `max_len`
//! tokens with the special tokens where the teacher reads them (`[CLS] A [SEP]` for BERT,
//! `A [SEP] [CLS]` with `[CLS]` in segment 2 for XLNet), as kdrun does.
//!
//! Two inputs read differently: a text that is empty after normalization (kdrun reads `[UNK]`,
//! the tokenizer nothing), and a text that spells a special token such as `[SEP]` (the tokenizer
//! reads the special token).

use super::vocab::{CharVocab, CLS, SEP};
use super::{Layout, StudentVocab, TeacherTokenizer};
use anyhow::{anyhow, Result};
use serde_json::{json, Value};
use std::path::Path;

/// What `char::is_whitespace` or `char::is_control` holds for, as one regex class.
const DROPPED: &str =
    r"[\x{0}-\x{20}\x{7F}-\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]";

fn special(id: u32, content: &str) -> Value {
    json!({
        "id": id,
        "content": content,
        "single_word": false,
        "lstrip": false,
        "rstrip": false,
        "normalized": false,
        "special": true,
    })
}

/// BERT's template `[CLS] A [SEP]` (pairs `[CLS] A [SEP] B [SEP]`) or XLNet's `A [SEP] [CLS]`
/// with `[CLS]` in segment 2 (pairs `A [SEP] B [SEP] [CLS]`).
fn template(layout: Layout, cls: u32, sep: u32) -> Value {
    let piece = |t: &str, type_id: u32| json!({"SpecialToken": {"id": t, "type_id": type_id}});
    let seq = |s: &str, type_id: u32| json!({"Sequence": {"id": s, "type_id": type_id}});
    let (single, pair) = match layout {
        Layout::ClsFirst => (
            json!([piece("[CLS]", 0), seq("A", 0), piece("[SEP]", 0)]),
            json!([
                piece("[CLS]", 0),
                seq("A", 0),
                piece("[SEP]", 0),
                seq("B", 1),
                piece("[SEP]", 1)
            ]),
        ),
        Layout::ClsLast => (
            json!([seq("A", 0), piece("[SEP]", 0), piece("[CLS]", 2)]),
            json!([
                seq("A", 0),
                piece("[SEP]", 0),
                seq("B", 1),
                piece("[SEP]", 1),
                piece("[CLS]", 2)
            ]),
        ),
    };
    json!({
        "type": "TemplateProcessing",
        "single": single,
        "pair": pair,
        "special_tokens": {
            "[CLS]": {"id": "[CLS]", "ids": [cls], "tokens": ["[CLS]"]},
            "[SEP]": {"id": "[SEP]", "ids": [sep], "tokens": ["[SEP]"]},
        },
    })
}

fn truncation(max_len: usize) -> Value {
    json!({"direction": "Right", "max_length": max_len, "strategy": "LongestFirst", "stride": 0})
}

/// The `tokenizer.json` of a character vocabulary with the special tokens of `layout`.
pub fn char_tokenizer_json(vocab: &CharVocab, layout: Layout, max_len: usize) -> Value {
    let mut json = chars_json(vocab, max_len);
    json["post_processor"] = template(layout, CLS, SEP);
    json
}

/// The `tokenizer.json` of the students' vocabulary: the bare tokens (no special tokens around
/// them), truncated to `max_len`. Characters read as kdrun reads them; words are expected cut
/// already, separated by spaces (jieba's segmentation is not a `tokenizers` pre-tokenizer: cut
/// the normalized text with jieba, as the exported README shows).
pub fn student_tokenizer_json(vocab: &StudentVocab, max_len: usize) -> Value {
    match vocab {
        StudentVocab::Chars(v) => chars_json(v, max_len),
        StudentVocab::Words(v) => {
            let tokens = v.tokens();
            json!({
                "version": "1.0",
                "truncation": truncation(max_len),
                "padding": null,
                "added_tokens": specials(tokens),
                "normalizer": null,
                "pre_tokenizer": {"type": "WhitespaceSplit"},
                "post_processor": null,
                "decoder": null,
                "model": {"type": "WordLevel", "vocab": word_level(tokens), "unk_token": "[UNK]"},
            })
        }
    }
}

fn specials(tokens: &[String]) -> Vec<Value> {
    tokens
        .iter()
        .take(5)
        .enumerate()
        .map(|(i, t)| special(i as u32, t))
        .collect()
}

fn word_level(tokens: &[String]) -> serde_json::Map<String, Value> {
    tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect()
}

/// A character vocabulary's tokenizer without a post-processor.
fn chars_json(vocab: &CharVocab, max_len: usize) -> Value {
    let mut normalizers: Vec<Value> = (0xFF01u32..=0xFF5E)
        .filter_map(|c| Some((char::from_u32(c)?, char::from_u32(c - 0xFEE0)?)))
        .map(|(wide, narrow)| {
            json!({"type": "Replace", "pattern": {"String": wide.to_string()}, "content": narrow.to_string()})
        })
        .collect();
    normalizers.push(json!({"type": "Replace", "pattern": {"Regex": DROPPED}, "content": ""}));
    if vocab.lowercase() {
        normalizers.push(json!({"type": "Lowercase"}));
    }
    let tokens = vocab.tokens();
    json!({
        "version": "1.0",
        "truncation": truncation(max_len),
        "padding": null,
        "added_tokens": specials(tokens),
        "normalizer": {"type": "Sequence", "normalizers": normalizers},
        "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "."}, "behavior": "Isolated", "invert": false},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": word_level(tokens), "unk_token": "[UNK]"},
    })
}

impl TeacherTokenizer {
    /// The tokenizer as `tokenizer.json` text, truncating to `max_len` tokens.
    pub fn tokenizer_json(&self, max_len: usize) -> Result<String> {
        match self {
            Self::Chars(v, layout) => Ok(serde_json::to_string_pretty(&char_tokenizer_json(
                v, *layout, max_len,
            ))?),
            Self::WordPiece(t) => {
                let mut inner = t.inner().clone();
                inner
                    .with_truncation(Some(tokenizers::TruncationParams {
                        max_length: max_len,
                        ..Default::default()
                    }))
                    .map_err(|e| anyhow!("tokenizer truncation: {e}"))?;
                inner
                    .to_string(true)
                    .map_err(|e| anyhow!("cannot write the tokenizer: {e}"))
            }
        }
    }
}

impl TeacherTokenizer {
    /// The special tokens by transformers' role names (`pad_token`, …).
    pub fn special_tokens(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Chars(v, _) => [
                "pad_token",
                "unk_token",
                "cls_token",
                "sep_token",
                "mask_token",
            ]
            .into_iter()
            .zip(self.special_ids())
            .map(|(role, id)| (role, v.token(id).to_string()))
            .collect(),
            Self::WordPiece(t) => t.special_tokens().to_vec(),
        }
    }

    /// Write the tokenizer into a Hugging Face folder as `AutoTokenizer.from_pretrained` reads
    /// it: `tokenizer.json` (truncating to `max_len`), `tokenizer_config.json` (a
    /// `PreTrainedTokenizerFast`, `model_max_length` = `max_len`, padding on the side the
    /// teacher reads from, segment ids among the model's inputs) and `special_tokens_map.json`; for `[CLS]`-first tokenizers also
    /// `vocab.txt`, which BERT's slow tokenizer reads.
    pub fn save_hf(&self, dir: &Path, max_len: usize) -> Result<()> {
        use crate::files::write_atomic;
        write_atomic(
            &dir.join("tokenizer.json"),
            self.tokenizer_json(max_len)?.as_bytes(),
        )?;
        let specials: serde_json::Map<String, Value> = self
            .special_tokens()
            .into_iter()
            .map(|(role, token)| (role.to_string(), Value::from(token)))
            .collect();
        let mut config = specials.clone();
        config.insert("tokenizer_class".into(), "PreTrainedTokenizerFast".into());
        config.insert("model_max_length".into(), max_len.into());
        let left = self.layout() == Layout::ClsLast;
        config.insert(
            "padding_side".into(),
            if left { "left" } else { "right" }.into(),
        );
        if left {
            // XLNetTokenizer's segment of padding.
            config.insert("pad_token_type_id".into(), 3.into());
        }
        // transformers (5.x) passes only input_ids and attention_mask by default; XLNet's
        // `<cls>` reads its segment (2), so the model must get token_type_ids too.
        config.insert(
            "model_input_names".into(),
            json!(["input_ids", "token_type_ids", "attention_mask"]),
        );
        config.insert("clean_up_tokenization_spaces".into(), false.into());
        write_atomic(
            &dir.join("tokenizer_config.json"),
            serde_json::to_string_pretty(&config)?.as_bytes(),
        )?;
        write_atomic(
            &dir.join("special_tokens_map.json"),
            serde_json::to_string_pretty(&specials)?.as_bytes(),
        )?;
        if !left {
            let mut text = self.vocab().join("\n");
            text.push('\n');
            write_atomic(&dir.join("vocab.txt"), text.as_bytes())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::batch::{InputKind, TextEncoder};
    use std::str::FromStr;

    #[test]
    fn the_exported_tokenizer_reads_like_kdrun() {
        let train = [
            "汽车ABC，ｆｕｌｌ　width",
            "体育 新闻\t比赛 2024",
            "Ünïcödé ß",
        ];
        let vocab = CharVocab::build(train.iter().copied(), 1, true);
        for layout in [Layout::ClsFirst, Layout::ClsLast] {
            let teacher = TeacherTokenizer::Chars(vocab.clone(), layout);
            let json = char_tokenizer_json(&vocab, layout, 8).to_string();
            let tok = tokenizers::Tokenizer::from_str(&json).unwrap();
            for text in [
                "汽车ABC，ｆｕｌｌ　width",
                "体育\u{3000}新闻 比赛 2024 又一个很长的句子",
                "unknown 字 ！？",
                "Ünïcödé ß\u{0}\u{85}",
            ] {
                let kdrun = teacher.encode_text(text, InputKind::Teacher, 8).unwrap();
                let hf = tok.encode(text, true).unwrap();
                assert_eq!(hf.get_ids(), kdrun, "{layout:?} {text:?}");
                let cls_segment =
                    hf.get_type_ids()[hf.get_ids().iter().position(|&i| i == CLS).unwrap()];
                assert_eq!(cls_segment, if layout == Layout::ClsLast { 2 } else { 0 });
            }
        }
    }
}
