//! Pretrained word or character vectors in word2vec formats: text (a header line `N D`, then one
//! `token v1 … vD` per line, as Chinese-Word-Vectors' `sgns.*` and Tencent's files) or binary
//! (the header, then per entry the token, a space and D little-endian f32), either optionally
//! gzip-compressed. Only the vectors of wanted tokens are kept, so a large file costs one pass,
//! not its size in memory.

use anyhow::{anyhow, bail, Context, Result};
use flate2::read::GzDecoder;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct Vectors {
    pub dim: usize,
    /// Entries the file's header announced.
    pub file_entries: usize,
    pub map: HashMap<String, Vec<f32>>,
}

/// A reader over the file, decompressed if it starts with gzip's magic bytes.
fn open(path: &Path) -> Result<Box<dyn BufRead>> {
    let mut file = std::fs::File::open(path).with_context(|| {
        format!(
            "cannot open vectors file {} (student.vectors)",
            path.display()
        )
    })?;
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic)?;
    let file = std::fs::File::open(path)?;
    Ok(if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(BufReader::new(GzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    })
}

/// The largest dimension a header may give: real vectors have a few hundred; a larger number
/// is a damaged header (and would be allocated before a row is read).
pub const MAX_DIM: usize = 100_000;

fn header(path: &Path, line: &str) -> Result<(usize, usize)> {
    let mut parts = line.split_whitespace();
    let parse = |s: Option<&str>| s.and_then(|x| x.parse::<usize>().ok());
    match (parse(parts.next()), parse(parts.next()), parts.next()) {
        (Some(_), Some(d), None) if d > MAX_DIM => bail!(
            "{}:1: the header gives a dimension of {d}, more than any vectors have (at most \
             {MAX_DIM}): a damaged header?",
            path.display()
        ),
        (Some(n), Some(d), None) if d > 0 => Ok((n, d)),
        _ => bail!(
            "{}:1: expected a word2vec header `N D` (count and dimension), found {:?}",
            path.display(),
            line.chars().take(60).collect::<String>()
        ),
    }
}

/// Binary if the name ends in `.bin` (or `.bin.gz`), else text.
pub fn is_binary(path: &Path) -> bool {
    let name = path.to_string_lossy();
    name.ends_with(".bin") || name.ends_with(".bin.gz")
}

impl Vectors {
    /// Read the vectors of `wanted` tokens (all of them when `wanted` is `None`).
    pub fn load(path: &Path, wanted: Option<&HashSet<String>>) -> Result<Self> {
        if is_binary(path) {
            Self::load_binary(path, wanted)
        } else {
            Self::load_text(path, wanted)
        }
    }

    pub fn load_text(path: &Path, wanted: Option<&HashSet<String>>) -> Result<Self> {
        let mut reader = open(path)?;
        let mut first = String::new();
        reader.read_line(&mut first).map_err(|e| {
            anyhow!(
                "{}:1: cannot read (a binary file? name it .bin): {e}",
                path.display()
            )
        })?;
        let (file_entries, dim) = header(path, first.trim_end())?;
        let mut map = HashMap::new();
        let mut line = String::new();
        let mut lineno = 1;
        let mut entries = 0usize;
        loop {
            line.clear();
            lineno += 1;
            let n = reader.read_line(&mut line).map_err(|e| {
                anyhow!("{}:{lineno}: cannot read (not UTF-8 text? a binary file should end in .bin): {e}", path.display())
            })?;
            if n == 0 {
                break;
            }
            let trimmed = line.trim_end_matches(['\n', '\r']);
            if trimmed.trim().is_empty() {
                continue;
            }
            // The token is everything before the last D fields (tokens may not contain spaces,
            // but some files pad lines with a trailing space).
            let fields: Vec<&str> = trimmed.split(' ').filter(|f| !f.is_empty()).collect();
            if fields.len() != dim + 1 {
                bail!(
                    "{}:{lineno}: expected a token and {dim} values (the header's dimension), found {} values",
                    path.display(),
                    fields.len().saturating_sub(1)
                );
            }
            entries += 1;
            let token = fields[0];
            if wanted.is_some_and(|w| !w.contains(token)) {
                continue;
            }
            let values = fields[1..]
                .iter()
                .map(|f| f.parse::<f32>())
                .collect::<Result<Vec<f32>, _>>()
                .map_err(|e| anyhow!("{}:{lineno}: not a number: {e}", path.display()))?;
            map.insert(token.to_string(), values);
        }
        if entries != file_entries {
            bail!(
                "{}: the header promises {file_entries} vectors, the file has {entries} ({})",
                path.display(),
                if entries < file_entries {
                    "cut short? download or copy it again"
                } else {
                    "fix the header's count"
                }
            );
        }
        Ok(Self {
            dim,
            file_entries,
            map,
        })
    }

    pub fn load_binary(path: &Path, wanted: Option<&HashSet<String>>) -> Result<Self> {
        let mut reader = open(path)?;
        let mut first = Vec::new();
        reader.read_until(b'\n', &mut first)?;
        let first = String::from_utf8_lossy(&first);
        let (file_entries, dim) = header(path, first.trim_end())?;
        let mut map = HashMap::new();
        let mut buf = vec![0u8; dim * 4];
        for entry in 0..file_entries {
            let mut word = Vec::new();
            reader.read_until(b' ', &mut word)?;
            if word.last() != Some(&b' ') {
                bail!(
                    "{}: entry {} of {file_entries}: the file ends early (expected a token and {dim} floats)",
                    path.display(),
                    entry + 1
                );
            }
            word.pop();
            // Some writers put a newline before each token.
            while word.first().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                word.remove(0);
            }
            reader.read_exact(&mut buf).map_err(|_| {
                anyhow!(
                    "{}: entry {} of {file_entries}: expected {dim} floats after the token",
                    path.display(),
                    entry + 1
                )
            })?;
            let token = String::from_utf8_lossy(&word).into_owned();
            if wanted.is_some_and(|w| !w.contains(&token)) {
                continue;
            }
            let values = buf
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            map.insert(token, values);
        }
        // More entries than the header says: counted, and refused as the text reader does.
        let mut extra = 0usize;
        loop {
            let mut word = Vec::new();
            reader.read_until(b' ', &mut word)?;
            if word.iter().all(u8::is_ascii_whitespace) {
                break;
            }
            if word.last() != Some(&b' ') || reader.read_exact(&mut buf).is_err() {
                bail!(
                    "{}: the header promises {file_entries} vectors, the file has {} and more \
                     bytes after them that are not a whole entry (fix the header's count)",
                    path.display(),
                    file_entries + extra
                );
            }
            extra += 1;
        }
        if extra > 0 {
            bail!(
                "{}: the header promises {file_entries} vectors, the file has {} (fix the \
                 header's count)",
                path.display(),
                file_entries + extra
            );
        }
        Ok(Self {
            dim,
            file_entries,
            map,
        })
    }
}

/// How much of a vocabulary a vectors file covers.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Coverage {
    /// Vocabulary entries (special tokens excluded) with a vector.
    pub types_found: usize,
    pub types: usize,
    /// Training-text tokens whose type has a vector.
    pub tokens_found: usize,
    pub tokens: usize,
    /// Entries without a vector of their own that start from the mean of their characters'
    /// vectors (`oov_init = "chars"`), and the training-text tokens of those types.
    #[serde(default)]
    pub types_composed: usize,
    #[serde(default)]
    pub tokens_composed: usize,
}

impl Coverage {
    /// One line for logs and reports; `unit` ("word", "char") may be empty.
    pub fn describe(&self, unit: &str) -> String {
        let pct = |a: usize, b: usize| 100.0 * a as f64 / b.max(1) as f64;
        let unit = if unit.is_empty() {
            String::new()
        } else {
            format!("{unit} ")
        };
        let mut s = format!(
            "{} of {} {unit}types ({:.1} %) and {:.1} % of training tokens",
            self.types_found,
            self.types,
            pct(self.types_found, self.types),
            pct(self.tokens_found, self.tokens)
        );
        if self.types_composed > 0 {
            s.push_str(&format!(
                "; {} more types ({:.1} % of tokens) from their characters' vectors",
                self.types_composed,
                pct(self.tokens_composed, self.tokens)
            ));
        }
        s
    }
}

/// The embedding matrix `[tokens, dim]` (row-major) of a vocabulary: pretrained vectors where the
/// file has the token; other tokens per `oov` (seeded); the five special tokens' rows as OOV too,
/// except `[PAD]` (zeros). `counts[i]` is how often token `i` occurs in the training text.
/// With [`OovInit::Chars`](crate::recipe::OovInit::Chars) `vectors` must hold the tokens'
/// characters as well (see [`wanted_tokens`]).
pub fn embedding_matrix(
    tokens: &[String],
    counts: &[usize],
    vectors: &Vectors,
    oov: crate::recipe::OovInit,
    seed: u64,
) -> (Vec<f32>, Coverage) {
    use rand::{RngExt, SeedableRng};
    let d = vectors.dim;
    let found: Vec<&Vec<f32>> = tokens.iter().filter_map(|t| vectors.map.get(t)).collect();
    let n = found.len().max(1) as f64;
    let mean: Vec<f32> = (0..d)
        .map(|k| (found.iter().map(|v| v[k] as f64).sum::<f64>() / n) as f32)
        .collect();
    let var = found
        .iter()
        .flat_map(|v| v.iter().zip(&mean).map(|(x, m)| ((x - m) as f64).powi(2)))
        .sum::<f64>()
        / (n * d as f64);
    // A uniform draw on ±a has variance a²/3: match the vectors' spread.
    let a = ((3.0 * var).sqrt() as f32).max(1e-3);
    let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(seed);
    let mut matrix = Vec::with_capacity(tokens.len() * d);
    let mut coverage = Coverage {
        types_found: 0,
        types: tokens.len().saturating_sub(5),
        tokens_found: 0,
        tokens: counts.iter().skip(5).sum(),
        types_composed: 0,
        tokens_composed: 0,
    };
    for (i, t) in tokens.iter().enumerate() {
        match vectors.map.get(t).filter(|_| i >= 5) {
            Some(v) => {
                matrix.extend_from_slice(v);
                coverage.types_found += 1;
                coverage.tokens_found += counts.get(i).copied().unwrap_or(0);
            }
            None if i == super::vocab::PAD as usize => matrix.extend(std::iter::repeat_n(0.0, d)),
            None => {
                let composed = (oov == crate::recipe::OovInit::Chars && i >= 5)
                    .then(|| char_mean(t, vectors))
                    .flatten();
                match (composed, oov) {
                    (Some(v), _) => {
                        matrix.extend_from_slice(&v);
                        coverage.types_composed += 1;
                        coverage.tokens_composed += counts.get(i).copied().unwrap_or(0);
                    }
                    (None, crate::recipe::OovInit::Mean) => matrix.extend_from_slice(&mean),
                    (None, _) => matrix.extend((0..d).map(|_| rng.random_range(-a..a))),
                }
            }
        }
    }
    (matrix, coverage)
}

/// The mean vector of `token`'s characters that `vectors` has; `None` when it has none of them.
fn char_mean(token: &str, vectors: &Vectors) -> Option<Vec<f32>> {
    let found: Vec<&Vec<f32>> = token
        .chars()
        .filter_map(|c| vectors.map.get(c.encode_utf8(&mut [0; 4]) as &str))
        .collect();
    if found.is_empty() {
        return None;
    }
    let n = found.len() as f32;
    Some(
        (0..vectors.dim)
            .map(|k| found.iter().map(|v| v[k]).sum::<f32>() / n)
            .collect(),
    )
}

/// The entries to read from a vectors file for a vocabulary (special tokens excluded): its tokens,
/// and with `oov_init = "chars"` their characters too.
pub fn wanted_tokens(tokens: &[String], oov: crate::recipe::OovInit) -> HashSet<String> {
    let mut wanted: HashSet<String> = tokens.iter().skip(5).cloned().collect();
    if oov == crate::recipe::OovInit::Chars {
        for t in tokens.iter().skip(5) {
            wanted.extend(t.chars().map(String::from));
        }
    }
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(name: &str, bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        (dir, p)
    }

    #[test]
    fn text_format_with_filter() {
        let (_d, p) = write("v.vec", "3 2\n车 0.5 -1\n球 1 2 \n房 3 4\n".as_bytes());
        let want: HashSet<String> = ["车", "房", "无"].iter().map(|s| s.to_string()).collect();
        let v = Vectors::load(&p, Some(&want)).unwrap();
        assert_eq!(v.dim, 2);
        assert_eq!(v.file_entries, 3);
        assert_eq!(v.map.len(), 2);
        assert_eq!(v.map["车"], vec![0.5, -1.0]);
        let all = Vectors::load(&p, None).unwrap();
        assert_eq!(all.map["球"], vec![1.0, 2.0]);
    }

    #[test]
    fn gzip_text() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all("1 3\nword 1 2 3\n".as_bytes()).unwrap();
        let (_d, p) = write("v.txt.gz", &gz.finish().unwrap());
        let v = Vectors::load(&p, None).unwrap();
        assert_eq!(v.map["word"], vec![1.0, 2.0, 3.0]);
    }

    #[test]
    fn binary_format() {
        let mut bytes = b"2 2\n".to_vec();
        for (w, vals) in [("车", [1.5f32, -2.0]), ("球", [0.25, 4.0])] {
            bytes.extend(w.as_bytes());
            bytes.push(b' ');
            for v in vals {
                bytes.extend(v.to_le_bytes());
            }
            bytes.push(b'\n');
        }
        let (_d, p) = write("v.bin", &bytes);
        let v = Vectors::load(&p, None).unwrap();
        assert_eq!(v.map["车"], vec![1.5, -2.0]);
        assert_eq!(v.map["球"], vec![0.25, 4.0]);
        let (_d2, short) = write("short.bin", &bytes[..bytes.len() - 6]);
        let err = Vectors::load(&short, None).unwrap_err().to_string();
        assert!(err.contains("entry 2 of 2"), "{err}");
        // More entries than the header says: refused with the count, as the text reader does.
        let mut more = bytes.clone();
        more[0] = b'1';
        let (_d3, more_path) = write("more.bin", &more);
        let err = Vectors::load(&more_path, None).unwrap_err().to_string();
        assert!(
            err.contains("more.bin: the header promises 1 vectors, the file has 2")
                && err.contains("fix the header's count"),
            "{err}"
        );
        // And a cut-off entry after them is named as such.
        more.extend(b"\xe6\xb1\xbd \x01\x02");
        let (_d4, cut) = write("cut.bin", &more);
        let err = Vectors::load(&cut, None).unwrap_err().to_string();
        assert!(
            err.contains("the file has 2 and more bytes after them that are not a whole entry"),
            "{err}"
        );
        // A damaged header's dimension is refused before anything is allocated.
        let mut huge = b"2 9223372036854775807\n".to_vec();
        huge.extend(&bytes[4..]);
        let (_d5, huge) = write("huge.bin", &huge);
        let err = Vectors::load(&huge, None).unwrap_err().to_string();
        assert!(err.contains("huge.bin:1: the header gives a dimension of 9223372036854775807"));
    }

    #[test]
    fn matrix_uses_vectors_and_counts_coverage() {
        let mut map = HashMap::new();
        map.insert("车".to_string(), vec![1.0, 3.0]);
        map.insert("球".to_string(), vec![3.0, 5.0]);
        let vectors = Vectors {
            dim: 2,
            file_entries: 2,
            map,
        };
        let tokens: Vec<String> = [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "车", "房", "球",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let counts = [0, 4, 0, 0, 0, 10, 5, 1];
        let (m, cov) =
            embedding_matrix(&tokens, &counts, &vectors, crate::recipe::OovInit::Mean, 1);
        assert_eq!(&m[0..2], &[0.0, 0.0], "[PAD] is zero");
        assert_eq!(&m[10..12], &[1.0, 3.0]);
        assert_eq!(&m[12..14], &[2.0, 4.0], "the OOV 房 gets the mean");
        assert_eq!(cov.types_found, 2);
        assert_eq!(cov.types, 3);
        assert_eq!((cov.tokens_found, cov.tokens), (11, 16));
        let (r1, _) = embedding_matrix(
            &tokens,
            &counts,
            &vectors,
            crate::recipe::OovInit::Random,
            1,
        );
        let (r2, _) = embedding_matrix(
            &tokens,
            &counts,
            &vectors,
            crate::recipe::OovInit::Random,
            1,
        );
        assert_eq!(r1, r2, "seeded");
        assert!(
            r1[12..14].iter().all(|x| x.abs() <= 1.8),
            "within the vectors' spread"
        );
    }

    #[test]
    fn chars_init_composes_words_from_character_vectors() {
        let mut map = HashMap::new();
        map.insert("汽".to_string(), vec![1.0, 3.0]);
        map.insert("车".to_string(), vec![3.0, 5.0]);
        map.insert("汽车".to_string(), vec![9.0, 9.0]);
        let vectors = Vectors {
            dim: 2,
            file_entries: 3,
            map,
        };
        let tokens: Vec<String> = [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "汽车", "车汽", "车", "房子",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let want = wanted_tokens(&tokens, crate::recipe::OovInit::Chars);
        assert!(want.contains("汽") && want.contains("房") && want.contains("房子"));
        assert!(!want.contains("[PAD]"));
        assert!(!wanted_tokens(&tokens, crate::recipe::OovInit::Random).contains("房"));
        let counts = [0, 0, 0, 0, 0, 7, 2, 3, 4];
        let (m, cov) =
            embedding_matrix(&tokens, &counts, &vectors, crate::recipe::OovInit::Chars, 1);
        assert_eq!(&m[10..12], &[9.0, 9.0], "a word's own vector wins");
        assert_eq!(&m[12..14], &[2.0, 4.0], "车汽: mean of its characters");
        assert_eq!(&m[14..16], &[3.0, 5.0]);
        assert!(m[16..18] != [0.0, 0.0], "房子: no character known, random");
        assert_eq!((cov.types_found, cov.types_composed), (2, 1));
        assert_eq!(
            (cov.tokens_found, cov.tokens_composed, cov.tokens),
            (10, 2, 16)
        );
        assert!(
            cov.describe("word").contains("1 more types"),
            "{}",
            cov.describe("word")
        );
    }

    #[test]
    fn bad_header_and_wrong_dimension_name_the_line() {
        let (_d, p) = write("bad.vec", "hello world\n".as_bytes());
        let err = Vectors::load(&p, None).unwrap_err().to_string();
        assert!(
            err.contains("bad.vec:1:") && err.contains("header"),
            "{err}"
        );
        let (_d2, p2) = write("dim.vec", "2 3\na 1 2 3\nb 1 2\n".as_bytes());
        let err = Vectors::load(&p2, None).unwrap_err().to_string();
        assert!(
            err.contains("dim.vec:3:") && err.contains("3 values") && err.contains("found 2"),
            "{err}"
        );
    }
}
