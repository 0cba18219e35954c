//! Recipe errors name where a value came from (file, environment variable or `--set`), the key,
//! and what was expected.

use std::fmt;

/// One thing wrong with a recipe.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Where the offending value came from: a file path, `KDRUN_…` or `--set key=value`.
    pub source: String,
    /// Dotted recipe key, when the problem is about one.
    pub key: Option<String>,
    pub message: String,
}

/// Everything wrong with a recipe, reported together.
#[derive(Debug, Clone, PartialEq)]
pub struct RecipeError {
    pub problems: Vec<Problem>,
}

impl RecipeError {
    pub fn single(
        source: impl Into<String>,
        key: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            problems: vec![Problem {
                source: source.into(),
                key,
                message: message.into(),
            }],
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "{}: key `{}`: {}", self.source, key, self.message),
            None => write!(f, "{}: {}", self.source, self.message),
        }
    }
}

impl fmt::Display for RecipeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "invalid recipe ({n} problem{})",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RecipeError {}

/// The candidate closest to `word`, if it is close enough to be a likely typo.
pub fn nearest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::nearest;

    #[test]
    fn nearest_suggests_typos_only() {
        let keys = ["layers", "hidden", "heads", "epochs"];
        assert_eq!(nearest("layrs", &keys), Some("layers"));
        assert_eq!(nearest("head", &keys), Some("heads"));
        assert_eq!(nearest("completely_else", &keys), None);
    }
}
