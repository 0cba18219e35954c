//! The recipe's JSON Schema, derived from its section types (`schemars`), and the reference page
//! generated from it (`docs/recipe-reference.md`): `kdrun schema` prints the schema, `kdrun schema
//! --markdown` the page. Editors that read a `#:schema ./recipe.schema.json` line in TOML (taplo,
//! Even Better TOML) complete and check keys with it; `tests/schema.rs` validates every recipe in
//! `recipes/` against it and checks the committed page is the one generated here.

use super::Recipe;
use serde_json::{Map, Value};

/// The recipe's JSON Schema (draft 2020-12): every section, key, type, range-free default and
/// documentation comment; unknown keys are refused (`additionalProperties: false`).
pub fn schema() -> Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(Recipe)).unwrap_or_default();
    if let Some(o) = schema.as_object_mut() {
        o.insert("title".into(), "kdrun recipe".into());
    }
    schema
}

/// The keys of a default recipe in the order a recipe prints them (`[data]` first, its keys in
/// field order), dotted: the reference page lists sections and keys in this order.
fn printed_order() -> Vec<String> {
    let text = toml::to_string_pretty(&Recipe::default()).unwrap_or_default();
    let mut table = String::new();
    let mut order = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(h) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = h.trim_matches(['[', ']']).to_string();
            order.push(table.clone());
        } else if let Some((k, _)) = line.split_once(" = ") {
            let k = k.trim().trim_matches('"');
            order.push(if table.is_empty() {
                k.to_string()
            } else {
                format!("{table}.{k}")
            });
        }
    }
    order
}

/// The Markdown reference of every recipe key, generated from [`schema`].
pub fn reference_markdown() -> String {
    let schema = schema();
    let defs = schema
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let order = printed_order();
    let mut out = String::from(
        "# Recipe reference\n\n\
         Every key of a recipe, by section, with its type, its default and what it does. \
         Generated from the recipe's types by `kdrun schema --markdown` (do not edit: \
         `tests/schema.rs` fails when this page is stale). `kdrun schema > recipe.schema.json` \
         writes the same as a JSON Schema; a recipe whose first line is \
         `#:schema ./recipe.schema.json` gets completion and checks in editors that read it \
         (taplo, Even Better TOML). How the keys work together: [recipes.md](recipes.md).\n",
    );
    let mut sections = Vec::new();
    section(&schema, "", &defs, &order, &mut sections);
    for (title, body) in sections {
        out.push_str(&format!("\n## {title}\n\n{body}"));
    }
    out
}

/// The object a schema (or a `$ref` to one) describes.
fn resolve<'a>(s: &'a Value, defs: &'a Map<String, Value>) -> &'a Value {
    match s.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .rsplit('/')
            .next()
            .and_then(|name| defs.get(name))
            .unwrap_or(s),
        None => s,
    }
}

/// `s` is a table (a struct) rather than a value.
fn is_table(s: &Value) -> bool {
    s.get("properties").is_some() && s.get("type").and_then(Value::as_str) == Some("object")
}

/// The section `prefix` (empty: the top level) and, after it, its sub-tables.
fn section(
    s: &Value,
    prefix: &str,
    defs: &Map<String, Value>,
    order: &[String],
    out: &mut Vec<(String, String)>,
) {
    let Some(props) = s.get("properties").and_then(Value::as_object) else {
        return;
    };
    let dotted = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    let mut keys: Vec<&String> = props.keys().collect();
    let rank = |k: &String| {
        order
            .iter()
            .position(|o| *o == dotted(k))
            .unwrap_or(usize::MAX)
    };
    keys.sort_by_key(|k| (rank(k), (*k).clone()));
    let mut rows = String::new();
    let mut tables = Vec::new();
    for k in keys {
        let field = &props[k];
        let target = resolve(field, defs);
        if is_table(target) {
            tables.push((k.clone(), field.clone(), target.clone()));
            continue;
        }
        // An array of tables: `[[teacher.members]]`.
        if let Some(items) = field.get("items").map(|i| resolve(i, defs)) {
            if is_table(items) {
                rows.push_str(&format!(
                    "| `{k}` | `[[{}]]` tables | none | {} Each table takes the keys of `[{prefix}]` above. |\n",
                    dotted(k),
                    one_line(field.get("description"))
                ));
                continue;
            }
        }
        rows.push_str(&format!(
            "| `{k}` | {} | {} | {} |\n",
            type_of(field, defs),
            default_of(field),
            one_line(
                field
                    .get("description")
                    .or_else(|| target.get("description"))
            )
        ));
    }
    let mut body = String::new();
    let about = one_line(s.get("description"));
    if !prefix.is_empty() && !about.is_empty() {
        body.push_str(&about);
        body.push_str("\n\n");
    }
    if !rows.is_empty() {
        body.push_str("| key | type | default | what it does |\n|---|---|---|---|\n");
        body.push_str(&rows);
    }
    let title = if prefix.is_empty() {
        "Top level".to_string()
    } else {
        format!("`[{prefix}]`")
    };
    if !rows.is_empty() || !prefix.is_empty() {
        out.push((title, body));
    }
    for (k, field, target) in tables {
        let mut target = target;
        if let (Some(d), Some(o)) = (field.get("description"), target.as_object_mut()) {
            o.insert("description".into(), d.clone());
        }
        section(&target, &dotted(&k), defs, order, out);
    }
}

/// A description on one line, `|` escaped for a table cell.
fn one_line(d: Option<&Value>) -> String {
    d.and_then(Value::as_str)
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn default_of(field: &Value) -> String {
    match field.get("default") {
        None | Some(Value::Null) => "–".into(),
        Some(Value::String(s)) if s.is_empty() => "`\"\"`".into(),
        Some(v) => format!("`{}`", v.to_string().replace('|', "\\|")),
    }
}

/// A field's type in words: `integer ≥ 0`, one of `"a"`, `"b"`, a list of strings, ….
fn type_of(field: &Value, defs: &Map<String, Value>) -> String {
    let s = resolve(field, defs);
    if let Some(values) = s.get("enum").and_then(Value::as_array) {
        return values
            .iter()
            .map(|v| format!("`{v}`"))
            .collect::<Vec<_>>()
            .join(", ");
    }
    if let Some(one_of) = s
        .get("oneOf")
        .or_else(|| s.get("anyOf"))
        .and_then(Value::as_array)
    {
        let parts: Vec<String> = one_of
            .iter()
            .filter(|v| v.get("type").and_then(Value::as_str) != Some("null"))
            .map(|v| {
                match v.get("const").or_else(|| {
                    v.get("enum")
                        .and_then(Value::as_array)
                        .filter(|e| e.len() == 1)
                        .and_then(|e| e.first())
                }) {
                    Some(c) => format!("`{c}`"),
                    None => match v.get("required").and_then(Value::as_array) {
                        // An externally tagged variant with a value: `{ all-but-last = K }`.
                        Some(req) if req.len() == 1 => {
                            format!("`{{ {} = … }}`", req[0].as_str().unwrap_or_default())
                        }
                        _ => type_of(v, defs),
                    },
                }
            })
            .collect();
        let optional = one_of.len() > parts.len();
        let joined = parts.join(", ");
        return if optional {
            format!("{joined} (or left out)")
        } else {
            joined
        };
    }
    match s.get("type") {
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .map(plain)
            .collect::<Vec<_>>()
            .join(" or "),
        Some(Value::String(t)) if t == "array" => match s.get("items") {
            Some(items) => format!("list of {}", type_of(items, defs)),
            None => "list".into(),
        },
        Some(Value::String(t)) => {
            let mut t = plain(t);
            if let Some(min) = s.get("minimum") {
                t.push_str(&format!(" ≥ {min}"));
            }
            t
        }
        _ => "any".into(),
    }
}

fn plain(t: &str) -> String {
    match t {
        "number" => "number",
        "integer" => "integer",
        "string" => "string",
        "boolean" => "`true` / `false`",
        "object" => "table",
        other => other,
    }
    .to_string()
}
