//! The layers of `src/` point one way. Each top-level module may name (`crate::x`, `use
//! crate::{x, …}`) only modules of lower layers, or of its own layer listed before it. A new
//! top-level module must be placed in [`LAYERS`] (and in `src/lib.rs`'s list) to pass.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Lowest first. Within a row, a module may use those to its left.
const LAYERS: &[&[&str]] = &[
    &["build_info", "files", "runtime"],
    &["recipe"],
    &["data"],
    &["models"],
    &["distill", "train"],
    &["eval"],
    &["store"],
    &["report"],
    &["backend"],
    &["deploy"],
    &["pipeline", "bench"],
    &["cli"],
];

fn rank(module: &str) -> Option<(usize, usize)> {
    LAYERS
        .iter()
        .enumerate()
        .find_map(|(i, row)| row.iter().position(|m| *m == module).map(|j| (i, j)))
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules each file's non-test code names.
fn imports(text: &str) -> BTreeSet<String> {
    let code = text
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default();
    let mut found = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for part in group.split(',') {
                let name = ident(part.trim());
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

#[test]
fn imports_follow_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules: BTreeMap<String, Vec<std::path::PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "lib" || name == "main" {
            continue;
        }
        let mut files = Vec::new();
        if path.is_dir() {
            rust_files(&path, &mut files);
        } else {
            files.push(path);
        }
        modules.insert(name, files);
    }
    let placed: BTreeSet<String> = LAYERS
        .iter()
        .flat_map(|r| r.iter())
        .map(|m| m.to_string())
        .collect();
    let present: BTreeSet<String> = modules.keys().cloned().collect();
    assert_eq!(
        present, placed,
        "every top-level module of src/ must have a layer in tests/layers.rs"
    );
    let mut wrong = Vec::new();
    for (module, files) in &modules {
        let own = rank(module).unwrap();
        for file in files {
            let text = std::fs::read_to_string(file).unwrap();
            for used in imports(&text) {
                if &used == module {
                    continue;
                }
                match rank(&used) {
                    Some(r) if r < own => {}
                    Some(_) => wrong.push(format!(
                        "{} ({module}) uses crate::{used}, a layer above or beside it",
                        file.strip_prefix(&src).unwrap().display()
                    )),
                    None => {}
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_scanner_sees_both_import_forms() {
    let text = "use crate::data::batch::Encoded;\nuse crate::{models, store::Stages};\nfn f() { crate::report::x(); }\n#[cfg(test)]\nmod tests {\n use crate::cli;\n}\n";
    let found: Vec<String> = imports(text).into_iter().collect();
    assert_eq!(found, vec!["data", "models", "report", "store"]);
}
