//! A piece of a synthetic sentence (Tang et al.'s transfer set): a word, or the mask token. The
//! tokenizers encode pieces; `distill::augment` makes them.

/// One piece of a synthetic sentence.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Piece {
    Word(String),
    Mask,
}
