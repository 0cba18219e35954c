//! The page templates: kdrun's own (the project's `templates/`, compiled in) and, when a recipe
//! names `report.templates`, that folder's files in their place. Templates are read from
//! nowhere else: a template can only `include` another template of this set.

use anyhow::{Context, Result};
use minijinja::Environment;
use std::path::Path;

/// kdrun's templates by name. `.html` names render with HTML auto-escaping of every value.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("report.html", include_str!("../../templates/report.html")),
    ("report.md", include_str!("../../templates/report.md")),
    ("sweep.html", include_str!("../../templates/sweep.html")),
    ("sweep.md", include_str!("../../templates/sweep.md")),
    ("index.html", include_str!("../../templates/index.html")),
    ("index.md", include_str!("../../templates/index.md")),
    ("style.css", include_str!("../../templates/style.css")),
];

/// Files of a template folder that kdrun reads as templates (others are left alone).
fn is_template_file(name: &str) -> bool {
    [".html", ".md", ".css"].iter().any(|e| name.ends_with(e))
}

fn known_names() -> String {
    BUILT_IN
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The template files of `dir` (name, path), after checking that each replaces one of kdrun's.
fn folder_files(dir: &Path) -> std::result::Result<Vec<(String, std::path::PathBuf)>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        format!(
            "expected a folder of templates, found {} ({e})",
            dir.display()
        )
    })?;
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_template_file(&name) || !entry.path().is_file() {
            continue;
        }
        if !BUILT_IN.iter().any(|(n, _)| *n == name) {
            return Err(format!(
                "{}: `{name}` is not one of kdrun's templates (expected one of: {})",
                dir.display(),
                known_names()
            ));
        }
        files.push((name, entry.path()));
    }
    files.sort();
    Ok(files)
}

/// `report.templates` must be a folder whose template files each replace one of kdrun's.
pub fn check_folder(dir: &Path) -> std::result::Result<(), String> {
    folder_files(dir).map(|_| ())
}

/// A minijinja environment with kdrun's templates, those of `custom` (if any) in their place.
pub fn environment(custom: Option<&Path>) -> Result<Environment<'static>> {
    let mut env = Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .expect("default delimiters are valid"),
    );
    // Markdown cells and text: a `|` would end a table cell, a newline the row, brackets
    // could make a link, and GitHub renders inline HTML, so `<`, `>` and `&` become entities
    // (dataset text stays text).
    env.add_filter("md", |s: String| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('|', "\\|")
            .replace('[', "\\[")
            .replace(']', "\\]")
            .replace('\n', " ")
    });
    for (name, source) in BUILT_IN {
        env.add_template(name, source)
            .with_context(|| format!("kdrun's template {name}"))?;
    }
    if let Some(dir) = custom.filter(|d| !d.as_os_str().is_empty()) {
        let files = folder_files(dir).map_err(|e| anyhow::anyhow!("report.templates: {e}"))?;
        for (name, path) in files {
            let source = std::fs::read_to_string(&path)
                .with_context(|| format!("report.templates: cannot read {}", path.display()))?;
            env.add_template_owned(name, source).with_context(|| {
                format!(
                    "report.templates: {} is not a valid template",
                    path.display()
                )
            })?;
        }
    }
    Ok(env)
}

/// Render template `name` with `page` as the only variable.
pub fn render<T: serde::Serialize>(env: &Environment, name: &str, page: &T) -> Result<String> {
    env.get_template(name)?
        .render(minijinja::context! { page => minijinja::value::Serde(page) })
        .with_context(|| format!("cannot render template {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_replaces_a_template_and_rejects_unknown_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("report.md"), "CUSTOM {{ page.x }}").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a template").unwrap();
        let env = environment(Some(dir.path())).unwrap();
        let page = serde_json::json!({ "x": "<b>" });
        assert_eq!(render(&env, "report.md", &page).unwrap(), "CUSTOM <b>");
        // HTML templates escape.
        let mut env = env;
        env.add_template("t.html", "{{ page.x }}").unwrap();
        assert_eq!(render(&env, "t.html", &page).unwrap(), "&lt;b&gt;");
        std::fs::write(dir.path().join("reprot.html"), "x").unwrap();
        let err = check_folder(dir.path()).unwrap_err();
        assert!(
            err.contains("reprot.html") && err.contains("report.html"),
            "{err}"
        );
        assert!(check_folder(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn markdown_filter_keeps_text_as_text() {
        let env = environment(None).unwrap();
        let mut env = env;
        env.add_template("t.md", "{{ page.x | md }}").unwrap();
        let page = serde_json::json!({ "x": "<script>a|b</script>\nc & [d](e)" });
        assert_eq!(
            render(&env, "t.md", &page).unwrap(),
            "&lt;script&gt;a\\|b&lt;/script&gt; c &amp; \\[d\\](e)"
        );
    }
}
