//! Where a teacher's special tokens go around a sentence: BERT's `[CLS] A [SEP]` or XLNet's
//! `A <sep> <cls>` — what a tokenizer writes and a model reads.

/// Where a teacher's special tokens go around a sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `[CLS] A [SEP]`, padded on the right; the classifier reads the first position (BERT).
    ClsFirst,
    /// `A [SEP] [CLS]`, padded on the left; the classifier reads the last position (XLNet).
    ClsLast,
}

impl Layout {
    /// `core` (truncated to leave room for the two special tokens, keeping at least one) with
    /// `cls` and `sep` where this layout puts them.
    pub fn wrap(self, mut core: Vec<u32>, max_len: usize, cls: u32, sep: u32) -> Vec<u32> {
        core.truncate(max_len.saturating_sub(2).max(1));
        match self {
            Self::ClsFirst => {
                core.insert(0, cls);
                core.push(sep);
            }
            Self::ClsLast => core.extend([sep, cls]),
        }
        core
    }
}
