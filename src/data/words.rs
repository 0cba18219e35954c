//! Word tokenization for students: jieba-rs (its built-in dictionary, HMM on for unknown words)
//! over normalized text, with a vocabulary built from the training text. Words rarer than
//! `min_count`, or beyond the `max_size` most frequent, map to `[UNK]` (the out-of-vocabulary
//! bucket). The special tokens and their ids are the character vocabulary's.

use super::batch::{InputKind, TextEncoder};
use super::vocab::{normalize_chars, CharVocab, MASK, PAD, UNK};
use anyhow::Result;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

const SPECIALS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// The shared jieba-rs segmenter (its dictionary loads once per process).
pub fn jieba() -> Arc<jieba_rs::Jieba> {
    static JIEBA: OnceLock<Arc<jieba_rs::Jieba>> = OnceLock::new();
    JIEBA
        .get_or_init(|| Arc::new(jieba_rs::Jieba::new()))
        .clone()
}

/// Normalize (as characters are) and cut into words.
pub fn words(text: &str, lowercase: bool) -> Vec<String> {
    let normalized: String = normalize_chars(text, lowercase).collect();
    jieba()
        .cut(&normalized, true)
        .into_iter()
        .map(|t| t.word.to_string())
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub struct WordVocab {
    tokens: Vec<String>,
    index: HashMap<String, u32>,
    lowercase: bool,
}

impl WordVocab {
    /// Build from training texts: specials first, then words by descending count (ties by the
    /// word), at most `max_size` words (0: no limit).
    pub fn build<'a>(
        texts: impl IntoIterator<Item = &'a str>,
        min_count: usize,
        max_size: usize,
        lowercase: bool,
    ) -> Self {
        let units = texts.into_iter().flat_map(|t| words(t, lowercase));
        let ranked = super::vocab::ranked(units, min_count, max_size);
        let mut tokens: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
        let mut index = HashMap::new();
        for w in ranked {
            index.insert(w.clone(), tokens.len() as u32);
            tokens.push(w);
        }
        Self {
            tokens,
            index,
            lowercase,
        }
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.len() <= SPECIALS.len()
    }

    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    pub fn id(&self, word: &str) -> u32 {
        self.index.get(word).copied().unwrap_or(UNK)
    }

    /// Read a vocabulary written by [`StudentVocab::save`] (one word a line, the special tokens
    /// first).
    pub fn load(path: &std::path::Path, lowercase: bool) -> Result<Self> {
        let tokens = super::vocab::read_tokens(path)?;
        let index = tokens
            .iter()
            .enumerate()
            .skip(SPECIALS.len())
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        Ok(Self {
            tokens,
            index,
            lowercase,
        })
    }

    /// Whether text is lower-cased before it is cut.
    pub fn lowercase(&self) -> bool {
        self.lowercase
    }

    /// Word ids of `text`; an empty text gives `[UNK]`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let ids: Vec<u32> = words(text, self.lowercase)
            .iter()
            .map(|w| self.id(w))
            .collect();
        if ids.is_empty() {
            vec![UNK]
        } else {
            ids
        }
    }
}

/// The students' vocabulary: characters or words.
#[derive(Debug, Clone, PartialEq)]
pub enum StudentVocab {
    Chars(CharVocab),
    Words(WordVocab),
}

impl StudentVocab {
    pub fn tokens(&self) -> &[String] {
        match self {
            Self::Chars(v) => v.tokens(),
            Self::Words(v) => v.tokens(),
        }
    }

    pub fn len(&self) -> usize {
        self.tokens().len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens().len() <= SPECIALS.len()
    }

    /// The unit a token stands for, for messages: `character` or `word`.
    pub fn unit(&self) -> &'static str {
        match self {
            Self::Chars(_) => "character",
            Self::Words(_) => "word",
        }
    }

    /// Ids of `text` (no special tokens).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        match self {
            Self::Chars(v) => v.encode(text),
            Self::Words(v) => v.encode(text),
        }
    }

    /// Ids of a word (a character vocabulary spells it out).
    pub fn encode_word(&self, word: &str) -> Vec<u32> {
        match self {
            Self::Chars(v) => v.encode(word),
            Self::Words(v) => vec![v.id(word)],
        }
    }

    pub fn mask_id(&self) -> u32 {
        MASK
    }

    /// Ids of a synthetic sentence (`[MASK]` pieces become the mask id), at most `max_len`.
    pub fn encode_pieces(&self, pieces: &[crate::data::Piece], max_len: usize) -> Vec<u32> {
        use crate::data::Piece;
        let mut ids = Vec::new();
        for p in pieces {
            match p {
                Piece::Mask => ids.push(MASK),
                Piece::Word(w) => ids.extend(self.encode_word(w)),
            }
        }
        ids.truncate(max_len.max(1));
        if ids.is_empty() {
            ids.push(UNK);
        }
        ids
    }

    /// Write one token per line.
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let mut text = self.tokens().join("\n");
        text.push('\n');
        crate::files::write_atomic(path, text.as_bytes())?;
        Ok(())
    }
}

impl TextEncoder for StudentVocab {
    fn encode_text(&self, text: &str, kind: InputKind, max_len: usize) -> Result<Vec<u32>> {
        match self {
            Self::Chars(v) => v.encode_text(text, kind, max_len),
            Self::Words(v) => {
                let mut ids = v.encode(text);
                ids.truncate(max_len.max(1));
                Ok(ids)
            }
        }
    }

    fn pad_id(&self) -> u32 {
        PAD
    }

    fn vocab_size(&self) -> usize {
        self.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_cut_by_jieba_and_ranked() {
        let v = WordVocab::build(["我们喜欢篮球", "我们喜欢足球", "他们喜欢篮球"], 1, 0, true);
        // 喜欢 three times; 我们, 篮球 twice; 他们, 足球 once.
        assert_eq!(&v.tokens()[5..8], ["喜欢", "我们", "篮球"]);
        assert_eq!(
            v.encode("我们喜欢篮球"),
            vec![v.id("我们"), v.id("喜欢"), v.id("篮球")]
        );
        assert_eq!(*v.encode("我们喜欢排球").last().unwrap(), UNK);
        let capped = WordVocab::build(["我们喜欢篮球", "我们喜欢足球", "他们喜欢篮球"], 2, 0, true);
        assert_eq!(capped.len(), 5 + 3);
        let top1 = WordVocab::build(["我们喜欢篮球", "我们喜欢足球", "他们喜欢篮球"], 1, 1, true);
        assert_eq!(top1.len(), 5 + 1);
    }
}
