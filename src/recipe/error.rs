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

/// The most bytes one problem's line takes: a longer one (a path or a `--set` value thousands of
/// characters long) is cut with "…" and its length.
pub const PROBLEM_BYTES: usize = 1_500;

/// `line` with NULs shown as `\0`, cut to [`PROBLEM_BYTES`].
fn bounded(line: String) -> String {
    let line = match line.contains('\0') {
        true => line.replace('\0', "\\0"),
        false => line,
    };
    if line.len() <= PROBLEM_BYTES {
        return line;
    }
    let mut cut = PROBLEM_BYTES;
    while !line.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} bytes in all)", &line[..cut], line.len())
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = match &self.key {
            Some(key) => format!("{}: key `{}`: {}", self.source, key, self.message),
            None => format!("{}: {}", self.source, self.message),
        };
        f.write_str(&bounded(line))
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

/// The longest a value is shown in a message, in characters; longer ones are cut with "…".
pub const SHOWN_CHARS: usize = 80;

/// A value as a message shows it: invisible characters (NUL, other control characters, a byte
/// order mark, zero-width spaces) escaped as `\0`, `\t`, `\u{feff}`…, and cut to
/// [`SHOWN_CHARS`] characters with "…" (and the full length) after.
pub fn shown(value: &str) -> String {
    shown_up_to(value, SHOWN_CHARS)
}

/// As [`shown`], cut to `chars` characters.
pub fn shown_up_to(value: &str, chars: usize) -> String {
    let mut out = String::new();
    let total = value.chars().count();
    for (i, c) in value.chars().enumerate() {
        if i == chars {
            out.push_str(&format!("… ({total} characters)"));
            break;
        }
        match c {
            '\0' => out.push_str("\\0"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control()
                || matches!(
                    c,
                    '\u{feff}' | '\u{200b}'..='\u{200f}' | '\u{2028}' | '\u{2029}'
                ) =>
            {
                out.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

/// What serde says a type expects, in words a recipe's reader uses (`usize` → "a whole number ≥
/// 0", `a sequence` → "a list", `struct DataSection` → "a table").
pub fn expected_in_words(expected: &str) -> String {
    let e = expected.trim();
    match e {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number ≥ 0".into(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" | "bool" => "true or false".into(),
        "a string" | "a borrowed string" | "string" | "path string" | "a char" | "char" => {
            "a string in quotes".into()
        }
        "a sequence" | "sequence" | "a tuple" => "a list".into(),
        "a map" | "map" => "a table".into(),
        e if e.starts_with("struct ") || e.starts_with("a map") => "a table".into(),
        e if e.starts_with("enum ") => "one of the listed names".into(),
        e => e.to_string(),
    }
}

/// What a recipe held where another type was expected, in words.
pub fn actual_in_words(actual: &figment::error::Actual) -> String {
    use figment::error::Actual;
    match actual {
        Actual::Bool(b) => format!("`{b}` (true or false)"),
        Actual::Unsigned(n) => format!("the whole number {n}"),
        Actual::Signed(n) => format!("the whole number {n}"),
        Actual::Float(x) => format!("the number {x}"),
        Actual::Char(c) => format!("\"{}\"", shown(&c.to_string())),
        Actual::Str(s) => format!("the string \"{}\"", shown(s)),
        Actual::Bytes(_) => "bytes".into(),
        Actual::Unit => "nothing".into(),
        Actual::Seq => "a list".into(),
        Actual::Map => "a table".into(),
        Actual::Other(s) => shown(s),
        other => other.to_string(),
    }
}

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
    use super::{expected_in_words, nearest, shown};

    #[test]
    fn nearest_suggests_typos_only() {
        let keys = ["layers", "hidden", "heads", "epochs"];
        assert_eq!(nearest("layrs", &keys), Some("layers"));
        assert_eq!(nearest("head", &keys), Some("heads"));
        assert_eq!(nearest("completely_else", &keys), None);
    }

    #[test]
    fn shown_escapes_invisible_characters_and_cuts_long_values() {
        assert_eq!(shown("a\0b\u{feff}c\t"), "a\\0b\\u{feff}c\\t");
        let long = "x".repeat(200);
        let s = shown(&long);
        assert!(
            s.starts_with(&"x".repeat(80)) && s.ends_with("… (200 characters)"),
            "{s}"
        );
        assert_eq!(shown("短い"), "短い");
    }

    #[test]
    fn serde_types_in_words() {
        assert_eq!(expected_in_words("usize"), "a whole number ≥ 0");
        assert_eq!(expected_in_words("f64"), "a number");
        assert_eq!(expected_in_words("a sequence"), "a list");
        assert_eq!(expected_in_words("struct DataSection"), "a table");
        assert_eq!(expected_in_words("a boolean"), "true or false");
    }
}
