//! A checkpoint's tokenizer: its `tokenizer.json` when present, else BERT's WordPiece over
//! `vocab.txt` with BERT's basic-tokenizer rules (clean text, CJK characters split into their own
//! tokens, accents stripped when lower-casing, punctuation split) — the `tokenizers` crate's
//! `BertNormalizer` + `BertPreTokenizer` + `WordPiece` + `BertProcessing`, as transformers builds
//! `BertTokenizerFast` from a vocabulary.

use super::batch::{InputKind, TextEncoder};
use anyhow::{anyhow, Result};
use std::path::Path;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::Tokenizer;

pub struct HfTokenizer {
    inner: Tokenizer,
    pub pad_id: u32,
    pub mask_id: u32,
    pub cls_id: u32,
    pub sep_id: u32,
    pub unk_id: u32,
}

fn lowercase_setting(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("tokenizer_config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("do_lower_case").and_then(|b| b.as_bool()))
        .unwrap_or(true)
}

impl HfTokenizer {
    /// The tokenizer of a checkpoint folder.
    pub fn open(dir: &Path) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        let vocab = dir.join("vocab.txt");
        let inner = if json.is_file() {
            let mut t = Tokenizer::from_file(&json)
                .map_err(|e| anyhow!("{}: cannot read tokenizer: {e}", json.display()))?;
            // kdrun pads per batch and truncates itself.
            t.with_padding(None);
            t.with_truncation(None)
                .map_err(|e| anyhow!("{}: {e}", json.display()))?;
            t
        } else if vocab.is_file() {
            Self::bert_from_vocab(&vocab, lowercase_setting(dir))?
        } else {
            anyhow::bail!(
                "{}: no tokenizer.json or vocab.txt (a BERT checkpoint folder holds one of them)",
                dir.display()
            );
        };
        Self::from_tokenizer(inner, dir)
    }

    /// BERT's tokenizer over a `vocab.txt`.
    pub fn bert_from_vocab(vocab: &Path, lowercase: bool) -> Result<Tokenizer> {
        let path = vocab
            .to_str()
            .ok_or_else(|| anyhow!("{}: path is not UTF-8", vocab.display()))?;
        let wordpiece = WordPiece::from_file(path)
            .unk_token("[UNK]".into())
            .build()
            .map_err(|e| anyhow!("{}: cannot read vocabulary: {e}", vocab.display()))?;
        let mut tok = Tokenizer::new(wordpiece);
        let id = |t: &str| {
            tok.token_to_id(t)
                .ok_or_else(|| anyhow!("{}: no {t} token", vocab.display()))
        };
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        tok.with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)));
        tok.with_pre_tokenizer(Some(BertPreTokenizer));
        tok.with_post_processor(Some(BertProcessing::new(
            ("[SEP]".into(), sep),
            ("[CLS]".into(), cls),
        )));
        Ok(tok)
    }

    fn from_tokenizer(inner: Tokenizer, dir: &Path) -> Result<Self> {
        let id = |t: &str| {
            inner
                .token_to_id(t)
                .ok_or_else(|| anyhow!("{}: the tokenizer has no {t} token", dir.display()))
        };
        Ok(Self {
            pad_id: id("[PAD]")?,
            mask_id: id("[MASK]")?,
            cls_id: id("[CLS]")?,
            sep_id: id("[SEP]")?,
            unk_id: id("[UNK]")?,
            inner,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The `tokenizers` tokenizer underneath (no padding, no truncation).
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// The token of `id` (empty if there is none).
    pub fn token(&self, id: u32) -> String {
        self.inner.id_to_token(id).unwrap_or_default()
    }

    /// Ids of `text`, with `[CLS]`/`[SEP]` when `specials`, cut to `max_len` (keeping `[SEP]`).
    pub fn encode(&self, text: &str, specials: bool, max_len: usize) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, specials)
            .map_err(|e| anyhow!("cannot tokenize {text:?}: {e}"))?;
        let mut ids = enc.get_ids().to_vec();
        if ids.len() > max_len {
            if specials {
                ids.truncate(max_len - 1);
                ids.push(self.sep_id);
            } else {
                ids.truncate(max_len);
            }
        }
        Ok(ids)
    }

    /// Ids and, for each, the char offset in `text` where the token starts (specials: `None`).
    pub fn encode_with_offsets(&self, text: &str) -> Result<(Vec<u32>, Vec<Option<usize>>)> {
        let enc = self
            .inner
            .encode_char_offsets(text, true)
            .map_err(|e| anyhow!("cannot tokenize {text:?}: {e}"))?;
        let specials = enc.get_special_tokens_mask();
        let offsets = enc
            .get_offsets()
            .iter()
            .zip(specials)
            .map(|((start, _), s)| (*s == 0).then_some(*start))
            .collect();
        Ok((enc.get_ids().to_vec(), offsets))
    }

    /// The vocabulary in id order (for `vocab.txt` exports).
    pub fn vocab_in_order(&self) -> Vec<String> {
        let vocab = self.inner.get_vocab(true);
        let mut tokens = vec![String::new(); vocab.len()];
        for (t, i) in vocab {
            if let Some(slot) = tokens.get_mut(i as usize) {
                *slot = t;
            }
        }
        tokens
    }
}

impl TextEncoder for HfTokenizer {
    fn encode_text(&self, text: &str, kind: InputKind, max_len: usize) -> Result<Vec<u32>> {
        let specials = kind == InputKind::Teacher;
        let ids = self.encode(text, specials, max_len)?;
        Ok(if ids.is_empty() {
            vec![self.unk_id]
        } else {
            ids
        })
    }

    fn pad_id(&self) -> u32 {
        self.pad_id
    }

    fn vocab_size(&self) -> usize {
        HfTokenizer::vocab_size(self)
    }
}
