//! `kdrun schema`: the recipe's JSON Schema validates every recipe in `recipes/` (and the valid
//! corpus recipes) and refuses the corpus's misspelt keys, checked with Python's `jsonschema`
//! (the reference validator, Draft 2020-12); and `docs/recipe-reference.md` is the page `kdrun
//! schema --markdown` generates (regenerate it with
//! `cargo run --release -- schema --markdown > docs/recipe-reference.md`).
//!
//! Where python3 cannot import jsonschema the validation is skipped with a message, unless
//! KDRUN_REQUIRE_ONNXRUNTIME=1 (CI installs it with onnxruntime; then it fails).

mod common;
use common::{kdrun, python_can_import, python_json};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn tomls(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

/// A TOML text as the JSON value a schema validator reads.
fn as_json(text: &str) -> Option<Value> {
    let table: toml::Table = toml::from_str(text).ok()?;
    serde_json::to_value(table).ok()
}

const VALIDATE: &str = r#"
import json, sys
from jsonschema import Draft202012Validator
schema = json.load(open(sys.argv[1]))
Draft202012Validator.check_schema(schema)
v = Draft202012Validator(schema)
out = {}
for name, doc in json.load(open(sys.argv[2])).items():
    out[name] = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(doc)]
print(json.dumps(out))
"#;

/// Each document's validation errors (Python's jsonschema), or None where it cannot be imported.
fn validate(docs: &Value) -> Option<serde_json::Map<String, Value>> {
    if !python_can_import("jsonschema", "KDRUN_REQUIRE_ONNXRUNTIME") {
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let schema = kdrun().arg("schema").output().unwrap();
    assert!(schema.status.success());
    let _: Value = serde_json::from_slice(&schema.stdout).expect("kdrun schema prints JSON");
    let (s, d) = (tmp.path().join("schema.json"), tmp.path().join("docs.json"));
    std::fs::write(&s, &schema.stdout).unwrap();
    std::fs::write(&d, docs.to_string()).unwrap();
    let v = python_json(VALIDATE, &[&s, &d]);
    Some(v.as_object().unwrap().clone())
}

#[test]
fn recipes_validate_and_misspelt_keys_do_not() {
    let mut valid = tomls(&root().join("recipes"));
    assert!(valid.len() >= 10);
    valid.extend(tomls(&root().join("tests/bad_input/ok")));
    let mut docs = serde_json::Map::new();
    for path in &valid {
        let text = std::fs::read_to_string(path).unwrap();
        docs.insert(
            format!("ok:{}", path.display()),
            as_json(&text).expect("a TOML recipe"),
        );
    }
    // The corpus's misspelt keys (`# expect: did you mean `…``), written in the file (not by
    // --set, the environment or a [sweep] grid key, which the schema lets through).
    let mut misspelt = 0;
    for path in tomls(&root().join("tests/bad_input/cases")) {
        let text = std::fs::read_to_string(&path).unwrap();
        let typo = text
            .lines()
            .any(|l| l.starts_with("# expect: did you mean `"));
        let elsewhere = text.contains("[sweep]")
            || text
                .lines()
                .any(|l| l.starts_with("# set: ") || l.starts_with("# env: "));
        if let (true, false, Some(doc)) = (typo, elsewhere, as_json(&text)) {
            docs.insert(format!("bad:{}", path.display()), doc);
            misspelt += 1;
        }
    }
    assert!(misspelt >= 3, "{misspelt} misspelt-key cases");
    let Some(errors) = validate(&json!(docs)) else {
        return;
    };
    for (name, errs) in errors {
        let errs = errs.as_array().unwrap();
        if name.starts_with("ok:") {
            assert!(errs.is_empty(), "{name}: {errs:?}");
        } else {
            assert!(!errs.is_empty(), "{name}: accepted by the schema");
        }
    }
}

#[test]
fn the_reference_page_is_generated_from_the_schema() {
    let out = kdrun().args(["schema", "--markdown"]).output().unwrap();
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    let committed = std::fs::read_to_string(root().join("docs/recipe-reference.md")).unwrap();
    assert!(
        generated == committed,
        "docs/recipe-reference.md is stale: cargo run --release -- schema --markdown > docs/recipe-reference.md"
    );
    for section in [
        "[data]",
        "[teacher]",
        "[teacher.pretrain]",
        "[student]",
        "[distill]",
        "[distill.augment]",
        "[runtime.slurm]",
        "[sweep]",
    ] {
        assert!(generated.contains(&format!("## `{section}`")), "{section}");
    }
}
