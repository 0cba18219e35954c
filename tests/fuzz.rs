//! Fuzzing the recipe loader and the data readers, for a bounded time (issue 16).
//!
//! Each target starts from real inputs — the recipes of `recipes/`, the bad-input corpus
//! (`tests/bad_input/`), its data files and the embedded vectors — and mutates them, in bytes
//! (flips, inserts, cut-outs, truncation, a byte order mark, CRLF) and in structure (a key
//! set to a value of another type, a huge number, NaN, infinity, a control or right-to-left
//! character, a 5,000-character string, deep nesting; keys removed, misspelt or added; a
//! `[sweep]` axis; `--set` arguments and `KDRUN_*` variables). The properties:
//!
//! - nothing panics (a panic prints the input and the seed that made it);
//! - every error message is bounded (each problem under 2,000 bytes), holds no NUL and names no
//!   Rust type (`usize`, `f64`, `Vec`…) that the input did not itself contain;
//! - valid inputs stay valid: a recipe that loads still loads, to the same resolved recipe, when
//!   rewritten with CRLF ends, comments and its tables reordered, when its resolved form is
//!   loaded in its place, and when a key is set to its own value by `--set` or an environment
//!   variable; a data file's rows are named by lines it has (from 1, in increasing order); a
//!   data or vectors file that reads still reads, to the same examples or vectors,
//!   with a byte order mark, CRLF ends and blank lines.
//!
//! The search is driven by `arbtest` (random seeds, `arbitrary`'s byte-driven choices). Each
//! target runs for `KDRUN_FUZZ_SECS` seconds (default 5; CI's run); a failure prints its seed,
//! and `ARBTEST_SEED=<seed>` reruns exactly that input.

use arbtest::arbitrary::{Result as ArbResult, Unstructured};
use kdrun::data::vectors::Vectors;
use kdrun::data::{CharVocab, Dataset, HfTokenizer};
use kdrun::pipeline::RECIPE_CHECKS;
use kdrun::recipe::sweep::load_trials;
use kdrun::recipe::{parse_set, DataFormat, DataSection, OnError, SetArg};
use std::collections::HashSet;
use std::io::Write;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// Seconds each target runs: `KDRUN_FUZZ_SECS`, else 5.
fn budget() -> Duration {
    let secs = std::env::var("KDRUN_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(5.0);
    Duration::from_secs_f64(secs)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The longest one problem's message may be.
const MAX_MESSAGE: usize = 2_000;

/// Names of Rust types that a message for a person must not use.
const RUST_TYPES: &[&str] = &[
    "usize",
    "isize",
    "u8",
    "u16",
    "u32",
    "u64",
    "u128",
    "i8",
    "i16",
    "i32",
    "i64",
    "i128",
    "f32",
    "f64",
    "str",
    "String",
    "Vec",
    "Option",
    "HashMap",
    "BTreeMap",
    "PathBuf",
    "Value",
    "Utf8Error",
    "FromUtf8Error",
    "ParseIntError",
    "ParseFloatError",
];

fn words(text: &str) -> HashSet<&str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect()
}

/// `message` (one problem, or one error chain) is one a person can read.
fn check_message(message: &str, input: &str) -> Result<(), String> {
    if message.len() > MAX_MESSAGE {
        return Err(format!(
            "a {}-byte message: {}…",
            message.len(),
            excerpt(message)
        ));
    }
    if message.contains('\0') {
        return Err(format!("a NUL in the message: {message:?}"));
    }
    let typed = words(input);
    let rust: Vec<&str> = words(message)
        .into_iter()
        .filter(|w| RUST_TYPES.contains(w) && !typed.contains(w))
        .collect();
    if !rust.is_empty() {
        return Err(format!(
            "Rust type names {rust:?} in the message: {message}"
        ));
    }
    Ok(())
}

/// Up to 800 characters of `text`, escaped, for a failure's report.
fn excerpt(text: &str) -> String {
    let s: String = text.chars().take(800).collect();
    format!("{s:?}")
}

/// Run `f` on one input; a panic or a broken property is reported with the input and fails
/// the test (arbtest then prints the seed).
fn run_case(what: &str, input: &str, f: impl FnOnce() -> Result<(), String>) {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => {}
        Ok(Err(broken)) => panic!("{what}: {broken}\ninput: {}", excerpt(input)),
        Err(panic) => {
            eprintln!("{what}: panicked on input: {}", excerpt(input));
            resume_unwind(panic)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Values and mutations shared by the targets.

/// Strings a mutation may put anywhere: none holds a letter of a Rust type's name on its own.
const STRINGS: &[&str] = &[
    "",
    " ",
    "\0",
    "a\0b",
    "\u{202e}drawkcab",
    "\u{feff}",
    "\u{200b}",
    "\t\r\n",
    "日本語のテキスト",
    "😀🎉",
    "..",
    "../../..",
    "/",
    "/dev/null",
    "/nonexistent/x",
    "cpu",
    "wgpu",
    "bert",
    "xlnet",
    "csv",
    "jsonl",
    "tnews",
    "skip",
    "fail",
    "cartesian",
    "zip",
    "mse",
    "ce",
    "kl",
    "tang",
    "NaN",
    "inf",
    "-1",
    "1e400",
    "0x10",
    "true",
    "[]",
    "{}",
    "\"",
    "\\",
    "'",
    "#",
    "=",
    "a,b,c",
    "[x]",
    "${HOME}",
];

/// A short string of awkward characters (no ASCII letter that spells a Rust type name).
fn odd_string(u: &mut Unstructured) -> ArbResult<String> {
    const CHARS: &[char] = &[
        'a',
        'b',
        'c',
        'd',
        'e',
        'g',
        'h',
        'k',
        'x',
        'z',
        '0',
        '1',
        '9',
        ' ',
        '.',
        ',',
        '-',
        '_',
        '/',
        '\\',
        '"',
        '\'',
        '=',
        '[',
        ']',
        '{',
        '}',
        '#',
        '\n',
        '\r',
        '\t',
        '\0',
        '\u{1}',
        '\u{7f}',
        '\u{85}',
        '\u{a0}',
        '\u{feff}',
        '\u{202e}',
        '\u{2028}',
        '汽',
        '车',
        '😀',
        'é',
        '\u{10ffff}',
    ];
    let n = u.int_in_range(0..=24)?;
    (0..n).map(|_| u.choose(CHARS).copied()).collect()
}

fn any_string(u: &mut Unstructured) -> ArbResult<String> {
    Ok(match u.int_in_range(0..=9)? {
        0..=5 => u.choose(STRINGS)?.to_string(),
        6 | 7 => odd_string(u)?,
        8 => "x".repeat(5_000),
        _ => "長".repeat(u.int_in_range(100..=3_000)?),
    })
}

fn any_float(u: &mut Unstructured) -> ArbResult<f64> {
    Ok(*u.choose(&[
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        f64::EPSILON,
        -0.0,
        0.0,
        0.5,
        1.0,
        1.5,
        -1.0,
        1e30,
        1e-30,
        2.5e9,
        18446744073709551616.0,
    ])?)
}

fn any_int(u: &mut Unstructured) -> ArbResult<i64> {
    Ok(match u.int_in_range(0..=2)? {
        0 => *u.choose(&[
            0,
            1,
            -1,
            2,
            3,
            7,
            100,
            i64::MAX,
            i64::MIN,
            u32::MAX as i64,
            u32::MAX as i64 + 1,
            i32::MIN as i64,
            1 << 40,
        ])?,
        1 => u.int_in_range(-10..=100)?,
        _ => u.arbitrary()?,
    })
}

/// Any TOML value, nested up to `depth`.
fn any_toml(u: &mut Unstructured, depth: u32) -> ArbResult<toml::Value> {
    use toml::Value as V;
    let kind = u.int_in_range(0..=if depth == 0 { 5 } else { 7 })?;
    Ok(match kind {
        0 => V::Integer(any_int(u)?),
        1 => V::Float(any_float(u)?),
        2 => V::Boolean(u.arbitrary()?),
        3 | 4 => V::String(any_string(u)?),
        5 => V::Datetime("1979-05-27T07:32:00Z".parse().unwrap()),
        6 => {
            let n = u.int_in_range(0..=4)?;
            V::Array(
                (0..n)
                    .map(|_| any_toml(u, depth - 1))
                    .collect::<ArbResult<_>>()?,
            )
        }
        _ => {
            let n = u.int_in_range(0..=3)?;
            let mut t = toml::Table::new();
            for _ in 0..n {
                let k = match u.ratio(1, 2)? {
                    true => u.choose(KEY_WORDS)?.to_string(),
                    false => odd_string(u)?,
                };
                t.insert(k, any_toml(u, depth - 1)?);
            }
            V::Table(t)
        }
    })
}

/// Words recipe keys are made of, for added and nested keys.
const KEY_WORDS: &[&str] = &[
    "data",
    "teacher",
    "student",
    "distill",
    "report",
    "runtime",
    "sweep",
    "grid",
    "mode",
    "name",
    "epochs",
    "lr",
    "alpha",
    "members",
    "pretrain",
    "extra",
    "checkpoint",
    "vectors",
    "classes",
    "train",
    "test",
    "format",
    "max_len",
    "hidden",
    "layers",
    "heads",
    "batch_size",
    "augment",
    "baseline",
    "textgcn",
    "seed",
    "store",
    "backend",
    "threads",
    "kind",
    "",
];

/// Byte mutations: flips, inserts, cut-outs, repeats, truncation.
fn mutate_bytes(u: &mut Unstructured, mut bytes: Vec<u8>) -> ArbResult<Vec<u8>> {
    let n = u.int_in_range(1..=4)?;
    for _ in 0..n {
        let len = bytes.len();
        let at = if len == 0 {
            0
        } else {
            u.int_in_range(0..=len - 1)?
        };
        match u.int_in_range(0..=8)? {
            0 if len > 0 => bytes[at] ^= 1 << u.int_in_range(0..=7)?,
            1 if len > 0 => bytes[at] = u.arbitrary()?,
            2 => {
                let b: u8 = *u.choose(b"\0\n\r\t \"'\\[]{}=,.#:0123456789-+eE\xff\xc3\xe6")?;
                bytes.insert(at, b)
            }
            3 if len > 0 => {
                let end = (at + u.int_in_range(1..=64)?).min(len);
                bytes.drain(at..end);
            }
            4 if len > 0 => {
                let end = (at + u.int_in_range(1..=64)?).min(len);
                let chunk = bytes[at..end].to_vec();
                let to = u.int_in_range(0..=len)?;
                bytes.splice(to..to, chunk);
            }
            5 => bytes.truncate(at),
            6 => {
                let s = any_string(u)?;
                bytes.splice(at..at, s.into_bytes());
            }
            7 => bytes
                .splice(0..0, b"\xEF\xBB\xBF".iter().copied())
                .for_each(drop),
            _ => bytes = crlf(&bytes),
        }
    }
    Ok(bytes)
}

/// LF line ends as CRLF.
fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 16);
    for &b in bytes {
        if b == b'\n' && out.last() != Some(&b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(bytes))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

// ---------------------------------------------------------------------------------------------
// The recipe loader.

/// A folder laid out as the seeds expect: `cases/`, `ok/` and `recipes/` (where mutated recipes
/// are written) beside `data/` (links to the corpus's data files and to `data/tnews`,
/// `data/embeddings`) and `../fixtures`.
struct Layout {
    _dir: tempfile::TempDir,
    base: PathBuf,
}

fn layout() -> &'static Layout {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("a");
        let data = base.join("data");
        std::fs::create_dir_all(&data).unwrap();
        for sub in ["cases", "ok", "recipes"] {
            std::fs::create_dir_all(base.join(sub)).unwrap();
        }
        let link = |from: &Path, to: &Path| std::os::unix::fs::symlink(from, to).unwrap();
        for entry in std::fs::read_dir(root().join("tests/bad_input/data")).unwrap() {
            let entry = entry.unwrap();
            link(&entry.path(), &data.join(entry.file_name()));
        }
        for sub in ["tnews", "embeddings"] {
            link(&root().join("data").join(sub), &data.join(sub));
        }
        link(&root().join("tests/fixtures"), &dir.path().join("fixtures"));
        Layout { _dir: dir, base }
    })
}

/// The seed recipes: (folder under the layout, file name, text).
fn recipe_seeds() -> &'static Vec<(&'static str, String, String)> {
    static SEEDS: OnceLock<Vec<(&'static str, String, String)>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut seeds = Vec::new();
        for (folder, from) in [
            ("recipes", root().join("recipes")),
            ("cases", root().join("tests/bad_input/cases")),
            ("ok", root().join("tests/bad_input/ok")),
        ] {
            let mut files: Vec<PathBuf> = std::fs::read_dir(from)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            files.sort();
            for f in files {
                let name = f.file_name().unwrap().to_string_lossy().into_owned();
                seeds.push((folder, name, std::fs::read_to_string(&f).unwrap()));
            }
        }
        seeds
    })
}

/// Every dotted key of the default recipe, resolved (sections and leaves).
fn recipe_keys() -> &'static Vec<String> {
    static KEYS: OnceLock<Vec<String>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let text = toml::to_string(&kdrun::recipe::Recipe::default()).unwrap();
        let table: toml::Table = toml::from_str(&text).unwrap();
        let mut keys = Vec::new();
        fn walk(prefix: &str, t: &toml::Table, keys: &mut Vec<String>) {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                keys.push(key.clone());
                if let toml::Value::Table(inner) = v {
                    walk(&key, inner, keys);
                }
            }
        }
        walk("", &table, &mut keys);
        keys
    })
}

/// Set (or, with `None`, remove) the value at a dotted key, making tables on the way.
fn set_key(table: &mut toml::Table, key: &str, value: Option<toml::Value>) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap();
    let mut t = table;
    for p in parts {
        let entry = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        t = entry.as_table_mut().unwrap();
    }
    match value {
        Some(v) => {
            t.insert(last.to_string(), v);
        }
        None => {
            t.remove(last);
        }
    }
}

/// A misspelling of `word`: a letter dropped, doubled or swapped.
fn typo(u: &mut Unstructured, word: &str) -> ArbResult<String> {
    let mut chars: Vec<char> = word.chars().collect();
    if chars.len() < 2 {
        return Ok(format!("{word}x"));
    }
    let i = u.int_in_range(0..=chars.len() - 2)?;
    match u.int_in_range(0..=2)? {
        0 => {
            chars.remove(i);
        }
        1 => chars.insert(i, chars[i]),
        _ => chars.swap(i, i + 1),
    }
    Ok(chars.into_iter().collect())
}

/// One mutated recipe: its bytes, `--set` arguments (as typed) and environment variables.
struct RecipeInput {
    folder: &'static str,
    bytes: Vec<u8>,
    sets: Vec<String>,
    env: Vec<(String, String)>,
}

fn mutate_table(u: &mut Unstructured, table: &mut toml::Table) -> ArbResult<()> {
    let keys = recipe_keys();
    let n = u.int_in_range(1..=4)?;
    for _ in 0..n {
        let key = u.choose(keys)?.clone();
        match u.int_in_range(0..=6)? {
            0..=2 => set_key(table, &key, Some(any_toml(u, 2)?)),
            3 => set_key(table, &key, None),
            4 => {
                let last = key.rsplit('.').next().unwrap();
                let wrong = typo(u, last)?;
                let key = format!("{}{wrong}", &key[..key.len() - last.len()]);
                set_key(table, &key, Some(any_toml(u, 1)?));
            }
            5 => {
                // A sweep axis over a leaf key.
                let n = u.int_in_range(0..=3)?;
                let values = (0..n).map(|_| any_toml(u, 1)).collect::<ArbResult<_>>()?;
                set_key(table, "sweep.grid", None);
                let mut grid = toml::Table::new();
                grid.insert(key, toml::Value::Array(values));
                set_key(table, "sweep.grid", Some(toml::Value::Table(grid)));
            }
            _ => {
                let k = odd_string(u)?;
                set_key(table, &format!("{key}.{k}"), Some(any_toml(u, 1)?));
            }
        }
    }
    Ok(())
}

fn recipe_input(u: &mut Unstructured) -> ArbResult<RecipeInput> {
    // A folder first, so the few valid seeds are drawn as often as the many broken ones.
    let folder = *u.choose(&["recipes", "cases", "ok"])?;
    let seeds: Vec<&(&str, String, String)> =
        recipe_seeds().iter().filter(|s| s.0 == folder).collect();
    let (folder, _, text) = *u.choose(&seeds)?;
    let mutate = u.ratio(3, 4)?;
    if !mutate {
        // The seed as it is, through still_valid's rewrites.
        return Ok(RecipeInput {
            folder,
            bytes: text.clone().into_bytes(),
            sets: Vec::new(),
            env: Vec::new(),
        });
    }
    let bytes = match u.int_in_range(0..=2)? {
        0 => mutate_bytes(u, text.clone().into_bytes())?,
        _ => match toml::from_str::<toml::Table>(text) {
            Ok(mut table) => {
                mutate_table(u, &mut table)?;
                match toml::to_string(&table) {
                    Ok(s) => s.into_bytes(),
                    Err(_) => text.clone().into_bytes(),
                }
            }
            Err(_) => text.clone().into_bytes(),
        },
    };
    let keys = recipe_keys();
    let mut sets = Vec::new();
    for _ in 0..u.int_in_range(0..=2)? {
        let key = u.choose(keys)?;
        sets.push(match u.int_in_range(0..=4)? {
            0 => odd_string(u)?,
            1 => format!("{key}={}", any_string(u)?),
            2 => format!("{key}={},{}", any_toml(u, 0)?, any_toml(u, 0)?),
            _ => format!("{key}={}", any_toml(u, 1)?),
        });
    }
    let mut env = Vec::new();
    for _ in 0..u.int_in_range(0..=1)? {
        let key = u.choose(keys)?;
        let name = format!("KDRUN_{}", key.replace('.', "__"));
        let value = match u.ratio(1, 2)? {
            true => any_toml(u, 1)?.to_string(),
            false => any_string(u)?,
        };
        // A variable's value cannot hold a NUL.
        env.push((name, value.replace('\0', "")));
    }
    Ok(RecipeInput {
        folder,
        bytes,
        sets,
        env,
    })
}

/// Environment variables set for the length of one load (the loader reads the process's).
struct EnvGuard(Vec<String>);

impl EnvGuard {
    fn set(vars: &[(String, String)]) -> Self {
        for (k, v) in vars {
            // SAFETY (edition 2021: safe): only this test sets KDRUN_* variables, one at a time.
            std::env::set_var(k, v);
        }
        Self(vars.iter().map(|(k, _)| k.clone()).collect())
    }
}

impl Drop for EnvGuard {
    fn drop(&mut self) {
        for k in &self.0 {
            std::env::remove_var(k);
        }
    }
}

/// The recipe loader's inputs are loaded one at a time: they share a folder and `KDRUN_*`.
static RECIPE_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Load one recipe input; `Ok(Some(resolved))` when it loads (the first trial's resolved
/// recipe), `Ok(None)` when it is refused with good messages.
fn load_recipe(
    path: &Path,
    bytes: &[u8],
    sets: &[String],
    env: &[(String, String)],
) -> Result<Option<Vec<String>>, String> {
    write(path, bytes);
    let input = format!(
        "{}\n{}\n{:?}",
        String::from_utf8_lossy(bytes),
        sets.join("\n"),
        env
    );
    let mut parsed: Vec<SetArg> = Vec::new();
    for s in sets {
        match parse_set(s) {
            Ok(set) => parsed.push(set),
            Err(message) => {
                check_message(&message, &input).map_err(|e| format!("--set {s:?}: {e}"))?;
                return Ok(None);
            }
        }
    }
    // A cartesian grid of sweeps over sweeps is bounded by the mutations: at most a few dozen.
    let _env = EnvGuard::set(env);
    match load_trials(path, &parsed, !env.is_empty(), RECIPE_CHECKS) {
        Ok((_, trials)) => Ok(Some(
            trials.into_iter().map(|(_, l)| l.resolved_toml).collect(),
        )),
        Err(e) => {
            if e.problems.is_empty() {
                return Err("an error without a problem".into());
            }
            for p in &e.problems {
                check_message(&p.to_string(), &input)?;
            }
            Ok(None)
        }
    }
}

/// Each trial of a recipe that loaded goes through [`kdrun::pipeline::prepare`].
fn prepared(path: &Path, input: &RecipeInput) -> Result<(), String> {
    let sets: Vec<SetArg> = input.sets.iter().map(|s| parse_set(s).unwrap()).collect();
    let _env = EnvGuard::set(&input.env);
    let (_, trials) = load_trials(path, &sets, !input.env.is_empty(), RECIPE_CHECKS)
        .map_err(|e| format!("refused the second time: {e}"))?;
    let compute = kdrun::backend::cpu();
    for (trial, loaded) in &trials {
        let stages = loaded.recipe.runtime.store.join("stages");
        let had_stages = stages.exists();
        kdrun::pipeline::prepare(&loaded.recipe, &compute).map_err(|e| {
            format!(
                "check accepted it, the run's preparation refuses it (trial {}): {e:#}",
                trial.label()
            )
        })?;
        if !had_stages && stages.exists() {
            return Err(format!("preparing made {}", stages.display()));
        }
    }
    Ok(())
}

/// A recipe that loads loads the same when written differently or set to its own values.
fn still_valid(
    u: &mut Unstructured,
    dir: &Path,
    input: &RecipeInput,
    resolved: &[String],
) -> ArbResult<Result<(), String>> {
    let same = |what: &str, r: Result<Option<Vec<String>>, String>| -> Result<(), String> {
        match r? {
            Some(again) if again == resolved => Ok(()),
            Some(again) => Err(format!(
                "{what}: resolves differently:\n{}\nvs\n{}",
                again.join("\n---\n"),
                resolved.join("\n---\n")
            )),
            None => Err(format!("{what}: a valid recipe is refused")),
        }
    };
    let path = dir.join("fuzzed.toml");
    // CRLF ends and a comment line between every line; tables reordered by a round trip.
    let text = String::from_utf8_lossy(&input.bytes).into_owned();
    let commented: String = text
        .lines()
        .flat_map(|l| [l, "\r\n# a comment \"x\" = 1\r\n"])
        .collect();
    if text.lines().all(|l| !l.trim_end().ends_with('\\')) && !text.contains("'''") {
        let r = load_recipe(&path, commented.as_bytes(), &input.sets, &input.env);
        if let Err(e) = same("with CRLF ends and comments", r) {
            return Ok(Err(e));
        }
    }
    if let Ok(table) = toml::from_str::<toml::Table>(&text) {
        let round = toml::to_string(&table).unwrap();
        let r = load_recipe(&path, round.as_bytes(), &input.sets, &input.env);
        if let Err(e) = same("reordered", r) {
            return Ok(Err(e));
        }
    }
    // One key set to its own resolved value, by --set or by an environment variable.
    if resolved.len() == 1 {
        let table: toml::Table = toml::from_str(&resolved[0]).unwrap();
        let mut leaves = Vec::new();
        fn walk(prefix: &str, t: &toml::Table, out: &mut Vec<(String, toml::Value)>) {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match v {
                    toml::Value::Table(inner) => walk(&key, inner, out),
                    // Paths resolve against the working directory from --set: skip them.
                    toml::Value::String(s) if s.starts_with('/') => {}
                    other => out.push((key, other.clone())),
                }
            }
        }
        walk("", &table, &mut leaves);
        leaves.retain(|(k, _)| !k.starts_with("sweep") && k != "name");
        if !leaves.is_empty() && input.env.is_empty() {
            let (key, value) = u.choose(&leaves)?.clone();
            let mut sets = input.sets.clone();
            sets.push(format!("{key}={value}"));
            let r = load_recipe(&path, &input.bytes, &sets, &[]);
            if let Err(e) = same(&format!("--set {key}={value}"), r) {
                return Ok(Err(e));
            }
            // A plain number, word or boolean through the environment.
            let plain = match &value {
                toml::Value::Integer(i) => Some(i.to_string()),
                toml::Value::Boolean(b) => Some(b.to_string()),
                toml::Value::String(s)
                    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphabetic()) =>
                {
                    Some(s.clone())
                }
                _ => None,
            };
            if let Some(plain) = plain {
                let already_set = input.sets.iter().any(|s| s.starts_with(&format!("{key}=")));
                if !already_set {
                    let env = vec![(format!("KDRUN_{}", key.replace('.', "__")), plain)];
                    let r = load_recipe(&path, &input.bytes, &input.sets, &env);
                    if let Err(e) = same(&format!("{env:?}"), r) {
                        return Ok(Err(e));
                    }
                }
            }
        }
        // The resolved recipe, loaded in its place (no sweep: it holds the trial's values).
        if !resolved[0].contains("[sweep") {
            let r = load_recipe(&path, resolved[0].as_bytes(), &[], &[]);
            if let Err(e) = same("its resolved form", r) {
                return Ok(Err(e));
            }
        }
    }
    Ok(Ok(()))
}

#[test]
fn fuzz_the_recipe_loader() {
    let base = &layout().base;
    // The valid seeds are valid to begin with.
    let _lock = RECIPE_LOCK.lock().unwrap();
    let mut valid = 0;
    for (folder, name, text) in recipe_seeds() {
        let path = base.join(folder).join(format!("seed-{name}"));
        let r = load_recipe(&path, text.as_bytes(), &[], &[]);
        if *folder == "cases" {
            run_case(name, text, || r.map(|_| ()));
        } else {
            assert!(matches!(r, Ok(Some(_))), "{name}: {r:?}");
            valid += 1;
        }
    }
    assert!(valid >= 20, "{valid} valid seeds");
    let mut loaded = 0usize;
    let mut refused = 0usize;
    arbtest::arbtest(|u| {
        let input = recipe_input(u)?;
        let dir = base.join(input.folder);
        let path = dir.join("fuzzed.toml");
        let shown = format!(
            "{}\n--set {:?}\nenv {:?}",
            String::from_utf8_lossy(&input.bytes),
            input.sets,
            input.env
        );
        let mut outcome = Ok(None);
        run_case("recipe", &shown, || {
            outcome = load_recipe(&path, &input.bytes, &input.sets, &input.env);
            outcome.clone().map(|_| ())
        });
        if let Ok(Some(resolved)) = outcome {
            loaded += 1;
            let check = still_valid(u, &dir, &input, &resolved)?;
            run_case("valid recipe", &shown, || check);
            // What `check` accepts, the run's own preparation (data, vocabularies, vectors,
            // tokenizers, checkpoints) accepts too: nothing a run refuses after its first stage
            // could have been seen by `check`.
            run_case("prepared recipe", &shown, || prepared(&path, &input));
        } else {
            refused += 1;
        }
        Ok(())
    })
    .budget(budget())
    .size_max(4_096);
    eprintln!("recipe loader: {loaded} fuzzed recipes loaded, {refused} refused");
    if std::env::var_os("ARBTEST_SEED").is_none() {
        assert!(
            loaded > 0 && refused > 0,
            "{loaded} loaded, {refused} refused"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The data readers.

/// A JSON value of any kind, nested up to `depth`.
fn any_json(u: &mut Unstructured, depth: u32) -> ArbResult<String> {
    Ok(match u.int_in_range(0..=if depth == 0 { 6 } else { 8 })? {
        0 => "null".into(),
        1 => any_int(u)?.to_string(),
        2 => u
            .choose(&["1e400", "-0", "NaN", "Infinity", "0.5", "1.0e2", "-1e-400"])?
            .to_string(),
        3 => u.arbitrary::<bool>()?.to_string(),
        4..=6 => serde_json::to_string(&any_string(u)?).unwrap(),
        7 => {
            let n = u.int_in_range(0..=3)?;
            let items = (0..n)
                .map(|_| any_json(u, depth - 1))
                .collect::<ArbResult<Vec<_>>>()?;
            format!("[{}]", items.join(","))
        }
        _ => {
            let n = u.int_in_range(0..=3)?;
            let items = (0..n)
                .map(|_| {
                    let k = u.choose(&["text", "label", "sentence", "label_desc", "id", "x"])?;
                    Ok(format!("\"{k}\":{}", any_json(u, depth - 1)?))
                })
                .collect::<ArbResult<Vec<_>>>()?;
            format!("{{{}}}", items.join(","))
        }
    })
}

/// Line mutations of a JSON-lines file: a field set to another value, removed, a line doubled,
/// removed, replaced, deep nesting.
fn mutate_json_lines(u: &mut Unstructured, text: &str) -> ArbResult<String> {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for _ in 0..u.int_in_range(1..=3)? {
        if lines.is_empty() {
            lines.push(any_json(u, 2)?);
            continue;
        }
        let i = u.int_in_range(0..=lines.len() - 1)?;
        match u.int_in_range(0..=5)? {
            0 | 1 => {
                if let Ok(serde_json::Value::Object(mut map)) =
                    serde_json::from_str::<serde_json::Value>(&lines[i])
                {
                    let keys: Vec<String> = map.keys().cloned().collect();
                    if let Ok(k) = u.choose(&keys) {
                        let k = k.clone();
                        let value = any_json(u, 2)?;
                        let v = serde_json::from_str(&value).unwrap_or(serde_json::Value::Null);
                        match u.ratio(1, 4)? {
                            true => map.remove(&k),
                            false => map.insert(k, v),
                        };
                    }
                    lines[i] = serde_json::to_string(&map).unwrap();
                }
            }
            2 => {
                let l = lines[i].clone();
                lines.insert(i, l)
            }
            3 => {
                lines.remove(i);
            }
            4 => lines[i] = any_json(u, 2)?,
            _ => {
                let depth = u.int_in_range(1..=200)?;
                lines[i] = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            }
        }
    }
    Ok(lines.join("\n") + "\n")
}

fn mutate_csv(u: &mut Unstructured, text: &str) -> ArbResult<String> {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for _ in 0..u.int_in_range(1..=3)? {
        if lines.is_empty() {
            lines.push(odd_string(u)?);
            continue;
        }
        let i = u.int_in_range(0..=lines.len() - 1)?;
        match u.int_in_range(0..=4)? {
            0 => lines[i] = format!("{},{}", lines[i], odd_string(u)?),
            1 => lines[i] = format!("\"{}\",{}", any_string(u)?.replace('"', "\"\""), "car"),
            2 => {
                lines.remove(i);
            }
            3 => lines[i] = odd_string(u)?,
            _ => lines.insert(i, ",,,".into()),
        }
    }
    Ok(lines.join("\n") + "\n")
}

/// The data seeds: (file name, format, text).
fn data_seeds() -> &'static Vec<(String, DataFormat, Vec<u8>)> {
    static SEEDS: OnceLock<Vec<(String, DataFormat, Vec<u8>)>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut seeds = Vec::new();
        let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("tests/bad_input/data"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for f in files {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            let format = match f.extension().and_then(|e| e.to_str()) {
                Some("csv") => DataFormat::Csv,
                Some("json") => DataFormat::Tnews,
                Some("jsonl") => DataFormat::Jsonl,
                _ => continue,
            };
            seeds.push((name, format, std::fs::read(&f).unwrap()));
        }
        // The first 40 lines of the embedded TNEWS training file.
        let tnews = std::fs::read_to_string(root().join("data/tnews/train.json")).unwrap();
        let head: String = tnews.lines().take(40).map(|l| format!("{l}\n")).collect();
        seeds.push((
            "tnews-head.json".into(),
            DataFormat::Tnews,
            head.into_bytes(),
        ));
        seeds
    })
}

fn data_section(path: &Path, format: DataFormat, on_error: OnError) -> DataSection {
    DataSection {
        format,
        train: path.to_path_buf(),
        test: path.to_path_buf(),
        on_error,
        valid_fraction: 0.2,
        max_len: 24,
        ..DataSection::default()
    }
}

/// Read a data file; `Some((examples, skipped rows))` when it reads.
fn read_data(
    path: &Path,
    format: DataFormat,
    on_error: OnError,
    input: &str,
) -> Result<Option<(usize, usize)>, String> {
    let section = data_section(path, format, on_error);
    let result = Dataset::load(&section);
    // Rows are named by physical lines of the file: from 1, at most its line count, a read
    // file's in increasing order.
    let bytes = std::fs::read(path).unwrap();
    let n_lines = bytes.iter().filter(|b| **b == b'\n').count() + 1;
    let at = format!("{}:", path.display());
    let message = match &result {
        Ok(d) => d
            .skipped
            .iter()
            .map(|s| s.first_at.clone())
            .collect::<Vec<_>>(),
        Err(e) => vec![format!("{e:#}")],
    };
    for m in message {
        let line = match m.strip_prefix("line ") {
            Some(n) => n.parse::<usize>().ok(),
            None => m
                .strip_prefix(&at)
                .and_then(|rest| rest.split(':').next())
                .and_then(|n| n.parse::<usize>().ok()),
        };
        if let Some(n) = line {
            if n == 0 || n > n_lines {
                return Err(format!("line {n} of a {n_lines}-line file: {m}"));
            }
        }
    }
    if let Ok(read) = kdrun::data::read::read_file(path, &section) {
        let lines: Vec<u32> = read
            .frame
            .column("line")
            .unwrap()
            .u32()
            .unwrap()
            .into_no_null_iter()
            .collect();
        let ordered = lines.windows(2).all(|w| w[0] < w[1]);
        if !ordered || lines.iter().any(|&l| l == 0 || l as usize > n_lines) {
            return Err(format!("row lines {lines:?} of a {n_lines}-line file"));
        }
    }
    match result {
        Ok(d) => Ok(Some((
            d.train.len() + d.valid.len() + d.test.len(),
            d.skipped.iter().map(|s| s.rows).sum(),
        ))),
        Err(e) => {
            check_message(&format!("{e:#}"), input)?;
            Ok(None)
        }
    }
}

#[test]
fn fuzz_the_data_readers() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = data_seeds();
    assert!(seeds.len() >= 30, "{} data seeds", seeds.len());
    let formats = [DataFormat::Tnews, DataFormat::Jsonl, DataFormat::Csv];
    let (mut read, mut refused) = (0usize, 0usize);
    arbtest::arbtest(|u| {
        let (name, seed_format, bytes) = u.choose(seeds)?;
        let format = match u.ratio(1, 8)? {
            true => *u.choose(&formats)?,
            false => *seed_format,
        };
        let on_error = *u.choose(&[OnError::Fail, OnError::Skip])?;
        let text = String::from_utf8_lossy(bytes);
        let bytes = match u.int_in_range(0..=3)? {
            0 => bytes.clone(),
            1 => mutate_bytes(u, bytes.clone())?,
            _ if *seed_format == DataFormat::Csv => mutate_csv(u, &text)?.into_bytes(),
            _ => mutate_json_lines(u, &text)?.into_bytes(),
        };
        let ext = match format {
            DataFormat::Csv => "csv",
            DataFormat::Tnews => "json",
            DataFormat::Jsonl => "jsonl",
        };
        let path = dir.path().join(format!("fuzzed.{ext}"));
        write(&path, &bytes);
        let input = String::from_utf8_lossy(&bytes).into_owned();
        let what = format!("{name} as {format:?}, on_error {on_error:?}");
        let mut outcome = Ok(None);
        run_case(&what, &input, || {
            outcome = read_data(&path, format, on_error, &input);
            outcome.clone().map(|_| ())
        });
        let Ok(Some(counts)) = outcome else {
            refused += 1;
            return Ok(());
        };
        read += 1;
        // What a normal editor does to a file changes nothing: a byte order mark, CRLF ends,
        // blank lines between the rows (JSON lines; a CSV's blank line is a row).
        let mut again = match bytes.starts_with(b"\xEF\xBB\xBF") {
            true => Vec::new(),
            false => b"\xEF\xBB\xBF".to_vec(),
        };
        let lines = crlf(&bytes);
        if format == DataFormat::Csv {
            again.extend(lines);
        } else {
            for line in lines.split_inclusive(|b| *b == b'\n') {
                again.extend_from_slice(line);
                again.extend_from_slice(b"\r\n  \n");
            }
        }
        // CR before LF inside a quoted CSV field is part of the text: only LF-free quoted fields.
        if format != DataFormat::Csv || !input.contains('"') {
            write(&path, &again);
            run_case(
                &format!("{what}, with BOM/CRLF"),
                &input,
                || match read_data(&path, format, on_error, &input)? {
                    Some(c) if c == counts => Ok(()),
                    other => Err(format!("read as {other:?}, not as {counts:?}")),
                },
            );
        }
        Ok(())
    })
    .budget(budget())
    .size_max(4_096);
    eprintln!("data readers: {read} fuzzed files read, {refused} refused");
    // Both kinds of input were tried (not when one seed is rerun).
    if std::env::var_os("ARBTEST_SEED").is_none() {
        assert!(read > 0 && refused > 0, "{read} read, {refused} refused");
    }
}

// ---------------------------------------------------------------------------------------------
// Vectors, vocabularies and tokenizers.

/// A word2vec binary file of `entries` (token, values).
fn binary_vectors(header: &str, entries: &[(String, Vec<f32>)]) -> Vec<u8> {
    let mut out = format!("{header}\n").into_bytes();
    for (t, v) in entries {
        out.extend_from_slice(t.as_bytes());
        out.push(b' ');
        for x in v {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.push(b'\n');
    }
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn fuzz_the_vectors_vocab_and_tokenizer_readers() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = root().join("tests/bad_input/data");
    let mut text_seeds: Vec<Vec<u8>> = ["good16.vec", "dim4.vec"]
        .iter()
        .map(|f| std::fs::read(corpus.join(f)).unwrap())
        .collect();
    let good = Vectors::load(&corpus.join("good16.vec"), None).unwrap();
    let mut entries: Vec<(String, Vec<f32>)> = good.map.clone().into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let header = format!("{} {}", entries.len(), good.dim);
    let binary = binary_vectors(&header, &entries);
    text_seeds.push(b"2 3\na 1 2 3\nb 4 5 6\n".to_vec());
    let vocab = std::fs::read(root().join("tests/fixtures/bert-tiny-cls/vocab.txt")).ok();
    let tokenizer = std::fs::read(root().join("tests/fixtures/bert-tiny-cls/tokenizer.json")).ok();
    let char_vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n汽\n车\n"
        .as_bytes()
        .to_vec();
    let (mut read, mut refused) = (0usize, 0usize);
    arbtest::arbtest(|u| {
        let kind = u.int_in_range(0..=5)?;
        let (file, bytes) = match kind {
            0 | 1 => {
                let seed = u.choose(&text_seeds)?.clone();
                let bytes = match u.int_in_range(0..=2)? {
                    0 => mutate_bytes(u, seed)?,
                    1 => {
                        let n = any_int(u)?;
                        let d = any_int(u)?;
                        let rest = seed.splitn(2, |b| *b == b'\n').nth(1).unwrap_or(&[]);
                        [format!("{n} {d}\n").as_bytes(), rest].concat()
                    }
                    _ => {
                        let mut text = String::from_utf8_lossy(&seed).into_owned();
                        text.push_str(&format!("{} {}\n", odd_string(u)?, any_float(u)?));
                        text.into_bytes()
                    }
                };
                ("fuzzed.vec", bytes)
            }
            2 | 3 => {
                let bytes = match u.int_in_range(0..=2)? {
                    0 => mutate_bytes(u, binary.clone())?,
                    1 => {
                        let n = any_int(u)?;
                        let d = any_int(u)?;
                        binary_vectors(&format!("{n} {d}"), &entries)
                    }
                    _ => {
                        let mut more = entries.clone();
                        let extra = u.int_in_range(0..=3)?;
                        more.extend((0..extra).map(|i| (format!("x{i}"), vec![0.5; good.dim])));
                        let cut = u.int_in_range(0..=more.len())?;
                        binary_vectors(&header, &more[..cut])
                    }
                };
                ("fuzzed.bin", bytes)
            }
            4 => {
                let seed = match (&vocab, u.ratio(1, 2)?) {
                    (Some(v), true) => v.clone(),
                    _ => char_vocab.clone(),
                };
                ("vocab.txt", mutate_bytes(u, seed)?)
            }
            _ => match &tokenizer {
                Some(t) => ("tokenizer.json", mutate_bytes(u, t.clone())?),
                None => ("vocab.txt", mutate_bytes(u, char_vocab.clone())?),
            },
        };
        let gz = kind < 4 && u.ratio(1, 6)?;
        let path = dir.path().join(if gz {
            format!("{file}.gz")
        } else {
            file.to_string()
        });
        write(&path, &if gz { gzip(&bytes) } else { bytes.clone() });
        let input = String::from_utf8_lossy(&bytes).into_owned();
        let wanted: HashSet<String> = ["汽", "车", "a", "x1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let use_wanted = u.arbitrary::<bool>()?;
        let mut outcome: Result<Option<usize>, String> = Ok(None);
        run_case(file, &input, || {
            let result: anyhow::Result<usize> = match file {
                "vocab.txt" => match u.ratio(1, 2) {
                    Ok(true) => CharVocab::load(&path, true).map(|v| v.len()),
                    _ => HfTokenizer::bert_from_vocab(&path, true).map(|t| t.get_vocab_size(true)),
                },
                "tokenizer.json" => HfTokenizer::from_file(&path).map(|t| t.vocab_size()),
                _ => Vectors::load(&path, use_wanted.then_some(&wanted)).map(|v| v.map.len()),
            };
            outcome = match result {
                Ok(n) => Ok(Some(n)),
                Err(e) => check_message(&format!("{e:#}"), &input).map(|_| None),
            };
            outcome.clone().map(|_| ())
        });
        match outcome {
            Ok(Some(n)) => {
                read += 1;
                // A text vectors file reads the same with CRLF ends and padded lines.
                // (Only files without CR of their own: "6\r \r\n" is another line.)
                if file == "fuzzed.vec" && !gz && !bytes.contains(&b'\r') {
                    let padded: Vec<u8> = crlf(&bytes)
                        .split_inclusive(|b| *b == b'\n')
                        .flat_map(|l| {
                            let mut l = l.to_vec();
                            if l.ends_with(b"\r\n") {
                                l.splice(l.len() - 2..l.len() - 2, *b" ");
                            }
                            l
                        })
                        .collect();
                    write(&path, &padded);
                    run_case("vectors with CRLF", &input, || {
                        match Vectors::load(&path, use_wanted.then_some(&wanted)) {
                            Ok(v) if v.map.len() == n => Ok(()),
                            Ok(v) => Err(format!("{} vectors, not {n}", v.map.len())),
                            Err(e) => Err(format!("refused: {e:#}")),
                        }
                    });
                }
            }
            _ => refused += 1,
        }
        Ok(())
    })
    .budget(budget())
    .size_max(4_096);
    eprintln!("vectors, vocabularies, tokenizers: {read} fuzzed files read, {refused} refused");
    // Both kinds of input were tried (not when one seed is rerun).
    if std::env::var_os("ARBTEST_SEED").is_none() {
        assert!(read > 0 && refused > 0, "{read} read, {refused} refused");
    }
}

/// The message check itself: it can fail.
#[test]
fn the_message_check_catches_what_it_should() {
    assert!(check_message("expected usize, found f64", "")
        .unwrap_err()
        .contains("usize"));
    // A type name the user typed may come back.
    assert!(check_message("unknown value \"u8\"", "format = \"u8\"").is_ok());
    assert!(check_message(&"x".repeat(MAX_MESSAGE + 1), "").is_err());
    assert!(check_message("a\0b", "").is_err());
}
