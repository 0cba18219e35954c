//! The teacher's tokenizer: kdrun's character vocabulary (a teacher trained from scratch) or the
//! checkpoint's own (a loaded teacher). Students always read the character vocabulary, so teacher
//! and student see the same text through different vocabularies.

use super::batch::{InputKind, TextEncoder};
use super::hf_tokenizer::HfTokenizer;
use super::vocab::{normalize_chars, CharVocab, CLS, MASK, PAD, SEP, UNK};
use anyhow::Result;

pub enum TeacherTokenizer {
    Chars(CharVocab),
    WordPiece(Box<HfTokenizer>),
}

/// A sequence for masked-LM: ids with `[CLS]`/`[SEP]`, and for each token the group it is masked
/// with (its word for whole-word masking, else itself); `None` for special tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MlmSequence {
    pub ids: Vec<u32>,
    pub groups: Vec<Option<u32>>,
}

/// Word index of every char of `text` (jieba-rs segmentation, HMM on).
fn word_of_chars(jieba: &jieba_rs::Jieba, text: &str) -> Vec<u32> {
    let mut out = Vec::with_capacity(text.chars().count());
    for (w, word) in jieba.cut(text, true).iter().enumerate() {
        out.extend(std::iter::repeat_n(w as u32, word.word.chars().count()));
    }
    out
}

impl TeacherTokenizer {
    pub fn mask_id(&self) -> u32 {
        match self {
            Self::Chars(_) => MASK,
            Self::WordPiece(t) => t.mask_id,
        }
    }

    /// Ids that masking never selects nor draws as random replacements.
    pub fn special_ids(&self) -> Vec<u32> {
        match self {
            Self::Chars(_) => vec![PAD, UNK, CLS, SEP, MASK],
            Self::WordPiece(t) => vec![t.pad_id, t.unk_id, t.cls_id, t.sep_id, t.mask_id],
        }
    }

    /// The vocabulary in id order, for `vocab.txt`.
    pub fn vocab(&self) -> Vec<String> {
        match self {
            Self::Chars(v) => v.tokens().to_vec(),
            Self::WordPiece(t) => t.vocab_in_order(),
        }
    }

    /// A masked-LM sequence of `text`, at most `max_len` tokens. With `jieba`, tokens are
    /// grouped by word (whole-word masking); without, each token is its own group.
    pub fn mlm_sequence(
        &self,
        text: &str,
        max_len: usize,
        jieba: Option<&jieba_rs::Jieba>,
    ) -> Result<MlmSequence> {
        match self {
            Self::Chars(v) => {
                let ids = v.encode_text(text, InputKind::Teacher, max_len)?;
                let n = ids.len() - 2;
                let words: Option<Vec<u32>> = jieba.map(|j| {
                    let normalized: String = normalize_chars(text, true).collect();
                    word_of_chars(j, &normalized)
                });
                let mut groups = vec![None];
                for i in 0..n {
                    let g = match &words {
                        Some(w) => w.get(i).copied().unwrap_or(i as u32),
                        None => i as u32,
                    };
                    groups.push(Some(g));
                }
                groups.push(None);
                Ok(MlmSequence { ids, groups })
            }
            Self::WordPiece(t) => {
                let (mut ids, mut starts) = t.encode_with_offsets(text)?;
                if ids.len() > max_len {
                    ids.truncate(max_len - 1);
                    starts.truncate(max_len - 1);
                    ids.push(t.sep_id);
                    starts.push(None);
                }
                let words = jieba.map(|j| word_of_chars(j, text));
                let mut groups = Vec::with_capacity(ids.len());
                let mut last_word: Option<u32> = None;
                for (i, (id, start)) in ids.iter().zip(&starts).enumerate() {
                    let token = t.token(*id);
                    groups.push(match (start, &words) {
                        (None, _) => None,
                        // A `##` piece continues the word before it.
                        (Some(_), _) if token.starts_with("##") && last_word.is_some() => last_word,
                        (Some(s), Some(w)) => w.get(*s).copied().map(|g| g + 1_000_000),
                        (Some(_), None) => Some(i as u32),
                    });
                    last_word = *groups.last().expect("just pushed");
                }
                Ok(MlmSequence { ids, groups })
            }
        }
    }
}

impl TeacherTokenizer {
    /// Ids of a synthetic sentence (`[MASK]` pieces become the mask id), with `[CLS]`/`[SEP]`,
    /// at most `max_len`.
    pub fn encode_pieces(&self, pieces: &[crate::data::Piece], max_len: usize) -> Result<Vec<u32>> {
        use crate::data::Piece;
        let (cls, sep) = match self {
            Self::Chars(_) => (CLS, SEP),
            Self::WordPiece(t) => (t.cls_id, t.sep_id),
        };
        let mut ids = vec![cls];
        for p in pieces {
            match p {
                Piece::Mask => ids.push(self.mask_id()),
                Piece::Word(w) => match self {
                    Self::Chars(v) => ids.extend(v.encode(w)),
                    Self::WordPiece(t) => ids.extend(t.encode(w, false, usize::MAX)?),
                },
            }
        }
        ids.truncate(max_len.saturating_sub(1).max(1));
        ids.push(sep);
        Ok(ids)
    }
}

impl TextEncoder for TeacherTokenizer {
    fn encode_text(&self, text: &str, kind: InputKind, max_len: usize) -> Result<Vec<u32>> {
        match self {
            Self::Chars(v) => v.encode_text(text, kind, max_len),
            Self::WordPiece(t) => t.encode_text(text, kind, max_len),
        }
    }

    fn pad_id(&self) -> u32 {
        match self {
            Self::Chars(v) => v.pad_id(),
            Self::WordPiece(t) => t.pad_id,
        }
    }

    fn vocab_size(&self) -> usize {
        match self {
            Self::Chars(v) => v.len(),
            Self::WordPiece(t) => t.vocab_size(),
        }
    }

    fn pad_left(&self) -> bool {
        match self {
            Self::Chars(_) => false,
            Self::WordPiece(t) => t.cls_last,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_sequences_group_by_word_when_asked() {
        let text = "我们喜欢篮球";
        let v = CharVocab::build([text], 1, true);
        let tok = TeacherTokenizer::Chars(v);
        let plain = tok.mlm_sequence(text, 32, None).unwrap();
        assert_eq!(plain.ids.len(), 8);
        assert_eq!(plain.groups[0], None);
        assert_eq!(plain.groups[7], None);
        assert_eq!(
            plain.groups[1..7],
            [Some(0), Some(1), Some(2), Some(3), Some(4), Some(5)]
        );
        let jieba = jieba_rs::Jieba::new();
        let whole = tok.mlm_sequence(text, 32, Some(&jieba)).unwrap();
        // 我们 / 喜欢 / 篮球: three words of two characters.
        assert_eq!(
            whole.groups[1..7],
            [Some(0), Some(0), Some(1), Some(1), Some(2), Some(2)]
        );
    }
}
