//! The teacher's tokenizer: kdrun's character vocabulary (a teacher trained from scratch) or the
//! checkpoint's own (a loaded teacher). Students always read the character vocabulary, so teacher
//! and student see the same text through different vocabularies.

use super::batch::{InputKind, TextEncoder};
use super::hf_tokenizer::HfTokenizer;
pub use super::layout::Layout;
use super::vocab::{normalize_chars, CharVocab, CLS, MASK, PAD, SEP, UNK};
use anyhow::Result;

pub enum TeacherTokenizer {
    /// kdrun's characters, with the special tokens where the architecture reads them.
    Chars(CharVocab, Layout),
    /// A checkpoint's tokenizer (its post-processor places the special tokens).
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
            Self::Chars(..) => MASK,
            Self::WordPiece(t) => t.mask_id,
        }
    }

    /// The classification token's id.
    pub fn cls_id(&self) -> u32 {
        match self {
            Self::Chars(..) => CLS,
            Self::WordPiece(t) => t.cls_id,
        }
    }

    /// Ids that masking never selects nor draws as random replacements.
    pub fn special_ids(&self) -> Vec<u32> {
        match self {
            Self::Chars(..) => vec![PAD, UNK, CLS, SEP, MASK],
            Self::WordPiece(t) => vec![t.pad_id, t.unk_id, t.cls_id, t.sep_id, t.mask_id],
        }
    }

    /// The vocabulary in id order, for `vocab.txt`.
    pub fn vocab(&self) -> Vec<String> {
        match self {
            Self::Chars(v, _) => v.tokens().to_vec(),
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
            Self::Chars(v, layout) => {
                let ids = layout.wrap(v.encode(text), max_len, CLS, SEP);
                let n = ids.len() - 2;
                let words: Option<Vec<u32>> = jieba.map(|j| {
                    let normalized: String = normalize_chars(text, true).collect();
                    word_of_chars(j, &normalized)
                });
                let core = (0..n).map(|i| {
                    Some(match &words {
                        Some(w) => w.get(i).copied().unwrap_or(i as u32),
                        None => i as u32,
                    })
                });
                let groups = match layout {
                    Layout::ClsFirst => std::iter::once(None).chain(core).chain([None]).collect(),
                    Layout::ClsLast => core.chain([None, None]).collect(),
                };
                Ok(MlmSequence { ids, groups })
            }
            Self::WordPiece(t) => {
                let (mut ids, mut starts) = t.encode_with_offsets(text)?;
                if ids.len() > max_len {
                    // Keep the special tokens at their ends: cut the text's last tokens.
                    let cut = ids.len() - max_len;
                    let tail = if t.cls_last { 2 } else { 1 };
                    let at = ids.len() - tail - cut;
                    ids.drain(at..at + cut);
                    starts.drain(at..at + cut);
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
        let mut ids = Vec::new();
        for p in pieces {
            match p {
                Piece::Mask => ids.push(self.mask_id()),
                Piece::Word(w) => match self {
                    Self::Chars(v, _) => ids.extend(v.encode(w)),
                    Self::WordPiece(t) => ids.extend(t.encode(w, false, usize::MAX)?),
                },
            }
        }
        Ok(match self {
            Self::Chars(_, layout) => layout.wrap(ids, max_len, CLS, SEP),
            Self::WordPiece(t) => t.layout().wrap(ids, max_len, t.cls_id, t.sep_id),
        })
    }

    /// Where this tokenizer puts its special tokens.
    pub fn layout(&self) -> Layout {
        match self {
            Self::Chars(_, layout) => *layout,
            Self::WordPiece(t) => t.layout(),
        }
    }
}

impl TextEncoder for TeacherTokenizer {
    fn encode_text(&self, text: &str, kind: InputKind, max_len: usize) -> Result<Vec<u32>> {
        match self {
            Self::Chars(v, layout) if kind == InputKind::Teacher => {
                Ok(layout.wrap(v.encode(text), max_len, CLS, SEP))
            }
            Self::Chars(v, _) => v.encode_text(text, kind, max_len),
            Self::WordPiece(t) => t.encode_text(text, kind, max_len),
        }
    }

    fn pad_id(&self) -> u32 {
        match self {
            Self::Chars(v, _) => v.pad_id(),
            Self::WordPiece(t) => t.pad_id,
        }
    }

    fn vocab_size(&self) -> usize {
        match self {
            Self::Chars(v, _) => v.len(),
            Self::WordPiece(t) => t.vocab_size(),
        }
    }

    fn pad_left(&self) -> bool {
        self.layout() == Layout::ClsLast
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_sequences_group_by_word_when_asked() {
        let text = "我们喜欢篮球";
        let v = CharVocab::build([text], 1, true);
        let tok = TeacherTokenizer::Chars(v.clone(), Layout::ClsFirst);
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
