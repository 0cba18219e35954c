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
    /// The post-processor puts the classification token last (XLNet: `A <sep> <cls>`), so
    /// batches are padded on the left and the classifier reads the last position.
    pub cls_last: bool,
}

/// The names a special token goes by, first found wins: BERT's, then XLNet's (SentencePiece)
/// spelling, then RoBERTa's / XLM-R's, whose `<s> A </s>` puts the sequence start where BERT puts
/// `[CLS]` and the sequence end where it puts `[SEP]` (XLNet's vocabulary also has `<s>` and
/// `</s>`, so its `<cls>` and `<sep>` come first).
const ROLES: [(&str, &[&str]); 5] = [
    ("padding", &["[PAD]", "<pad>"]),
    ("mask", &["[MASK]", "<mask>"]),
    ("classification", &["[CLS]", "<cls>", "<s>"]),
    ("separator", &["[SEP]", "<sep>", "</s>"]),
    ("unknown", &["[UNK]", "<unk>"]),
];

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
        } else if dir.join("spiece.model").is_file() {
            anyhow::bail!(
                "{}: only spiece.model, which kdrun cannot read; convert it to tokenizer.json with \
                 transformers: python -c \"from transformers import AutoTokenizer; \
                 AutoTokenizer.from_pretrained('{0}').save_pretrained('{0}')\"",
                dir.display()
            );
        } else {
            anyhow::bail!(
                "{}: no tokenizer.json or vocab.txt (a checkpoint folder holds one of them)",
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

    /// A `tokenizer.json` file by itself (no checkpoint folder around it).
    pub fn from_file(path: &Path) -> Result<Self> {
        let mut t = Tokenizer::from_file(path)
            .map_err(|e| anyhow!("{}: cannot read tokenizer: {e}", path.display()))?;
        t.with_padding(None);
        t.with_truncation(None)
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        Self::from_tokenizer(t, path)
    }

    fn from_tokenizer(inner: Tokenizer, dir: &Path) -> Result<Self> {
        let mut ids = [0u32; 5];
        for (slot, (role, names)) in ids.iter_mut().zip(ROLES) {
            *slot = names
                .iter()
                .find_map(|n| inner.token_to_id(n))
                .ok_or_else(|| {
                    anyhow!(
                        "{}: the tokenizer has no {role} token ({})",
                        dir.display(),
                        names.join(" or ")
                    )
                })?;
        }
        let [pad_id, mask_id, cls_id, sep_id, unk_id] = ids;
        let probe = inner
            .encode("a", true)
            .map_err(|e| anyhow!("{}: cannot tokenize: {e}", dir.display()))?;
        let cls_last = probe.get_ids().last() == Some(&cls_id);
        Ok(Self {
            pad_id,
            mask_id,
            cls_id,
            sep_id,
            unk_id,
            cls_last,
            inner,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Where the post-processor puts the special tokens.
    pub fn layout(&self) -> super::layout::Layout {
        if self.cls_last {
            super::layout::Layout::ClsLast
        } else {
            super::layout::Layout::ClsFirst
        }
    }

    /// The tokens of the five special roles, as transformers' `special_tokens_map.json` names
    /// them (`pad_token`, `mask_token`, `cls_token`, `sep_token`, `unk_token`).
    pub fn special_tokens(&self) -> [(&'static str, String); 5] {
        [
            ("pad_token", self.token(self.pad_id)),
            ("mask_token", self.token(self.mask_id)),
            ("cls_token", self.token(self.cls_id)),
            ("sep_token", self.token(self.sep_id)),
            ("unk_token", self.token(self.unk_id)),
        ]
    }

    /// The `tokenizers` tokenizer underneath (no padding, no truncation).
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// The token of `id` (empty if there is none).
    pub fn token(&self, id: u32) -> String {
        self.inner.id_to_token(id).unwrap_or_default()
    }

    /// Ids of `text`, with the special tokens when `specials` (`[CLS] A [SEP]`, XLNet's
    /// `A <sep> <cls>`), at most `max_len`: the text's tokens are cut, the special ones kept.
    pub fn encode(&self, text: &str, specials: bool, max_len: usize) -> Result<Vec<u32>> {
        Ok(self.encode_with_types(text, specials, max_len)?.0)
    }

    /// As [`HfTokenizer::encode`], with each token's segment id (XLNet's `<cls>`: 2).
    pub fn encode_with_types(
        &self,
        text: &str,
        specials: bool,
        max_len: usize,
    ) -> Result<(Vec<u32>, Vec<u32>)> {
        use tokenizers::{PostProcessor, TruncationDirection};
        let mut enc = self
            .inner
            .encode(text, false)
            .map_err(|e| anyhow!("cannot tokenize {text:?}: {e}"))?;
        let added = match (specials, self.inner.get_post_processor()) {
            (true, Some(p)) => p.added_tokens(false),
            _ => 0,
        };
        enc.truncate(max_len.saturating_sub(added), 0, TruncationDirection::Right);
        let enc = self
            .inner
            .post_process(enc, None, specials)
            .map_err(|e| anyhow!("cannot tokenize {text:?}: {e}"))?;
        Ok((enc.get_ids().to_vec(), enc.get_type_ids().to_vec()))
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

    fn pad_left(&self) -> bool {
        self.cls_last
    }
}
