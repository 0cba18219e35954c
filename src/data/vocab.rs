//! Character tokenization with a vocabulary built from the training text.
//!
//! Text is normalized first: full-width ASCII forms (U+FF01–U+FF5E) become their half-width
//! twins, whitespace is dropped, and letters are lower-cased if the recipe says so. Each remaining
//! character is one token; characters rarer than `min_count` in the training text become `[UNK]`.

use super::batch::{InputKind, TextEncoder};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::Path;

pub const PAD: u32 = 0;
pub const UNK: u32 = 1;
pub const CLS: u32 = 2;
pub const SEP: u32 = 3;
pub const MASK: u32 = 4;
const SPECIALS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

#[derive(Debug, Clone, PartialEq)]
pub struct CharVocab {
    tokens: Vec<String>,
    index: HashMap<char, u32>,
    lowercase: bool,
}

/// The characters of `text` after normalization.
pub fn normalize_chars(text: &str, lowercase: bool) -> impl Iterator<Item = char> + '_ {
    text.chars()
        .map(|c| match c as u32 {
            0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            0x3000 => ' ',
            _ => c,
        })
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .flat_map(move |c| {
            let lower: Vec<char> = if lowercase {
                c.to_lowercase().collect()
            } else {
                vec![c]
            };
            lower.into_iter()
        })
}

/// The units seen at least `min_count` times, by descending count (ties by the unit's order, so
/// the same texts give the same vocabulary), at most `max_size` of them (0: no limit).
pub(crate) fn ranked<K: std::hash::Hash + Ord>(
    units: impl IntoIterator<Item = K>,
    min_count: usize,
    max_size: usize,
) -> Vec<K> {
    let mut counts: HashMap<K, usize> = HashMap::new();
    for u in units {
        *counts.entry(u).or_default() += 1;
    }
    let mut ranked: Vec<(K, usize)> = counts
        .into_iter()
        .filter(|(_, n)| *n >= min_count)
        .collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    if max_size > 0 {
        ranked.truncate(max_size);
    }
    ranked.into_iter().map(|(u, _)| u).collect()
}

impl CharVocab {
    /// Build from training texts: special tokens first, then characters by descending count
    /// (ties by code point, so the vocabulary is the same for the same texts).
    pub fn build<'a>(
        texts: impl IntoIterator<Item = &'a str>,
        min_count: usize,
        lowercase: bool,
    ) -> Self {
        let units = texts
            .into_iter()
            .flat_map(|t| normalize_chars(t, lowercase));
        let chars = ranked(units, min_count, 0);
        let mut tokens: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
        let mut index = HashMap::new();
        for c in chars {
            index.insert(c, tokens.len() as u32);
            tokens.push(c.to_string());
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

    /// The tokens in id order.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.len() <= SPECIALS.len()
    }

    /// Whether text is lower-cased before lookup.
    pub fn lowercase(&self) -> bool {
        self.lowercase
    }

    pub fn token(&self, id: u32) -> &str {
        &self.tokens[id as usize]
    }

    /// Token ids of `text`, one per character (no special tokens); an empty text gives `[UNK]`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let ids: Vec<u32> = normalize_chars(text, self.lowercase)
            .map(|c| self.index.get(&c).copied().unwrap_or(UNK))
            .collect();
        if ids.is_empty() {
            vec![UNK]
        } else {
            ids
        }
    }

    /// Write one token per line (BERT's `vocab.txt` layout).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut text = self.tokens.join("\n");
        text.push('\n');
        crate::files::write_to(path, text.as_bytes())
    }

    /// Read a vocabulary written by [`CharVocab::save`].
    pub fn load(path: &Path, lowercase: bool) -> Result<Self> {
        let tokens = read_tokens(path)?;
        let mut index = HashMap::new();
        for (i, t) in tokens.iter().enumerate().skip(SPECIALS.len()) {
            let mut cs = t.chars();
            match (cs.next(), cs.next()) {
                (Some(c), None) => {
                    index.insert(c, i as u32);
                }
                _ => bail!(
                    "{}:{}: expected one character, found \"{}\"",
                    path.display(),
                    i + 1,
                    crate::recipe::shown(t)
                ),
            }
        }
        Ok(Self {
            tokens,
            index,
            lowercase,
        })
    }
}

/// The tokens of a vocabulary file (one a line), the special tokens first as kdrun writes them.
pub(super) fn read_tokens(path: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let tokens: Vec<String> = text.lines().map(str::to_string).collect();
    for (i, s) in SPECIALS.iter().enumerate() {
        if tokens.get(i).map(String::as_str) != Some(*s) {
            bail!("{}:{}: expected special token {s}", path.display(), i + 1);
        }
    }
    Ok(tokens)
}

impl TextEncoder for CharVocab {
    /// The teacher's ids are `[CLS]` chars `[SEP]`; the student's the bare chars.
    fn encode_text(&self, text: &str, kind: InputKind, max_len: usize) -> Result<Vec<u32>> {
        let mut ids = self.encode(text);
        Ok(match kind {
            InputKind::Teacher => {
                ids.truncate(max_len.saturating_sub(2).max(1));
                let mut out = Vec::with_capacity(ids.len() + 2);
                out.push(CLS);
                out.extend(ids);
                out.push(SEP);
                out
            }
            InputKind::Student => {
                ids.truncate(max_len.max(1));
                ids
            }
        })
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
    fn builds_by_frequency_and_encodes() {
        let v = CharVocab::build(["aab", "ab c", "Ｂ"], 1, true);
        // a:3, b:3 (one from the full-width Ｂ lower-cased), c:1; ties by code point.
        assert_eq!(v.len(), 5 + 3);
        assert_eq!(v.token(5), "a");
        assert_eq!(v.token(6), "b");
        assert_eq!(v.token(7), "c");
        assert_eq!(v.encode("A b"), vec![5, 6]);
        assert_eq!(v.encode("z"), vec![UNK]);
        assert_eq!(v.encode("  "), vec![UNK]);
    }

    #[test]
    fn min_count_drops_rare_chars() {
        let v = CharVocab::build(["车车房", "车"], 2, true);
        assert_eq!(v.encode("车房"), vec![5, UNK]);
    }

    #[test]
    fn save_load_roundtrip() {
        let v = CharVocab::build(["体育新闻", "汽车"], 1, true);
        let f = tempfile::NamedTempFile::new().unwrap();
        v.save(f.path()).unwrap();
        let w = CharVocab::load(f.path(), true).unwrap();
        assert_eq!(v, w);
    }
}
