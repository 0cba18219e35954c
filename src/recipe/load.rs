//! Layered loading: defaults < recipe file < `KDRUN_*` environment < `--set`.

use super::error::{actual_in_words, expected_in_words, nearest, shown, Problem, RecipeError};
use super::sections::{PathSlot, Recipe};
use super::set::SetArg;
use super::validate::validate;
use figment::error::Kind;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::Value;
use figment::{Figment, Metadata, Source};
use std::path::{Component, Path, PathBuf};

/// Prefix of recipe environment variables: `KDRUN_SECTION__KEY=value`.
pub const ENV_PREFIX: &str = "KDRUN_";

/// A recipe after layering, validation and path resolution.
#[derive(Debug, Clone)]
pub struct LoadedRecipe {
    pub recipe: Recipe,
    /// The recipe file.
    pub path: PathBuf,
    /// The resolved recipe as TOML (what `kdrun check` prints and each run saves).
    pub resolved_toml: String,
}

/// Load `path` with the environment and `sets` layered over it.
pub fn load(path: &Path, sets: &[SetArg]) -> Result<LoadedRecipe, RecipeError> {
    load_with_env(path, sets, true)
}

/// A check of a loaded recipe that needs a later layer (a template folder's templates, the
/// store's reserved folder names): every problem as (dotted key, what was expected and found).
/// The layer that owns the knowledge provides it; problems are reported like the recipe's own.
pub type Check = fn(&Recipe) -> Vec<(&'static str, String)>;

/// As [`load`]; `use_env = false` ignores `KDRUN_*` variables (tests).
pub fn load_with_env(
    path: &Path,
    sets: &[SetArg],
    use_env: bool,
) -> Result<LoadedRecipe, RecipeError> {
    load_checked(path, sets, use_env, &[])
}

/// As [`load_with_env`], with `checks` run after the recipe's own validation.
pub fn load_checked(
    path: &Path,
    sets: &[SetArg],
    use_env: bool,
    checks: &[Check],
) -> Result<LoadedRecipe, RecipeError> {
    load_parts(path, sets, use_env, checks).map_err(|(e, _)| e)
}

/// As [`load_checked`]; a recipe that reads but has problems comes back beside them (a sweep's
/// own checks still look at its grid, so that every problem is reported in one pass).
pub(crate) fn load_parts(
    path: &Path,
    sets: &[SetArg],
    use_env: bool,
    checks: &[Check],
) -> Result<LoadedRecipe, (RecipeError, Option<Box<Recipe>>)> {
    let shown = path.display().to_string();
    let single = |message: &str| Err((RecipeError::single(shown.clone(), None, message), None));
    if path.is_dir() {
        return single("expected a recipe TOML file, found a folder");
    }
    if !path.is_file() {
        return single("recipe file not found (expected a TOML file)");
    }
    if let Err(e) = std::fs::read(path) {
        return single(&format!("recipe file cannot be read: {e}"));
    }
    let path = absolute(path);
    let recipe_dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();

    let mut figment =
        Figment::from(Serialized::defaults(Recipe::default())).merge(Toml::file_exact(&path));
    if use_env {
        let unreadable = env_unreadable();
        if !unreadable.is_empty() {
            return Err((
                RecipeError {
                    problems: unreadable,
                },
                None,
            ));
        }
        // Only SECTION__KEY variables: a stray KDRUN_SOMETHING is not a recipe key.
        figment = figment.merge(
            Env::prefixed(ENV_PREFIX)
                .filter(|k| k.as_str().contains("__"))
                .split("__"),
        );
    }
    for set in sets {
        figment = figment.merge(set.clone());
    }

    let mut recipe: Recipe = figment
        .extract()
        .map_err(|e| (from_figment(e, &shown), None))?;

    if recipe.name.is_empty() {
        recipe.name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "recipe".into());
    }
    resolve_paths(&mut recipe, &figment, &recipe_dir);

    let mut problems = validate(&recipe);
    problems.extend(keys_without_effect(&figment, &recipe));
    for check in checks {
        problems.extend(check(&recipe));
    }
    if !problems.is_empty() {
        let error = RecipeError {
            problems: problems
                .into_iter()
                .map(|(key, message)| Problem {
                    source: source_of(&figment, key, &shown),
                    key: Some(key.to_string()),
                    message,
                })
                .collect(),
        };
        return Err((error, Some(Box::new(recipe))));
    }

    recipe.resolve_derived();
    let resolved_toml = toml::to_string_pretty(&recipe).map_err(|e| {
        (
            RecipeError::single(shown.clone(), None, format!("cannot print recipe: {e}")),
            None,
        )
    })?;
    Ok(LoadedRecipe {
        recipe,
        path,
        resolved_toml,
    })
}

/// Keys a layer set where they have no effect, named with where they would act: an ensemble's
/// keys (`teacher.combine`, `teacher.calibrate`) on a single teacher (`members = []` or no
/// `[[teacher.members]]`) or inside a member, and a member's `teacher.weight` on `[teacher]`. Told
/// apart from a default by whether any layer holds the key (the defaults layer leaves these keys
/// out while they hold their defaults).
fn keys_without_effect(figment: &Figment, r: &Recipe) -> Vec<(&'static str, String)> {
    let set = |key: &str| figment.find_value(key).is_ok();
    let mut problems = Vec::new();
    const ENSEMBLE_KEYS: [(&str, &str, &str); 2] = [
        (
            "teacher.combine",
            "combine",
            "how the ensemble combines its members",
        ),
        (
            "teacher.calibrate",
            "calibrate",
            "whether the ensemble calibrates its members before combining them",
        ),
    ];
    let t = &r.teacher;
    if t.members.is_empty() {
        let members = if set("teacher.members") {
            "teacher.members = []"
        } else {
            "no [[teacher.members]]"
        };
        for (key, _, what) in ENSEMBLE_KEYS {
            if set(key) {
                problems.push((
                    key,
                    format!(
                        "expected it only beside [[teacher.members]] ({what}), found a single \
                         teacher ({members}), where it has no effect"
                    ),
                ));
            }
        }
        // A weight other than 1 is refused by the recipe's validation already.
        if set("teacher.weight") && t.weight == 1.0 {
            problems.push((
                "teacher.weight",
                "teacher.weight only inside [[teacher.members]] (an ensemble's member), found \
                 it on a single teacher, where it has no effect"
                    .to_string(),
            ));
        }
    } else {
        problems.extend(keys_beside_members(figment, t.members.len()));
    }
    if !t.members.is_empty() && set("teacher.weight") {
        problems.push((
            "teacher.weight",
            format!(
                "teacher.weight only inside [[teacher.members]] (each member's weight in the \
                 ensemble's mean), found it on [teacher] beside [[teacher.members]] ({}), where \
                 it has no effect",
                t.weight
            ),
        ));
    }
    if let Ok(Value::Array(_, members)) = figment.find_value("teacher.members") {
        for (i, m) in members.iter().enumerate() {
            let Some(m) = m.as_dict() else { continue };
            for (_, rest, what) in ENSEMBLE_KEYS {
                if m.contains_key(rest) {
                    problems.push((
                        super::validate::member_key(i, rest),
                        format!(
                            "expected it on [teacher], beside [[teacher.members]] ({what}), \
                             found it inside member {}, where it has no effect",
                            i + 1
                        ),
                    ));
                }
            }
        }
    }
    problems
}

/// `[teacher]` keys beside `[[teacher.members]]` (`members` of them): every key of a teacher
/// section but the ensemble's own is a member's, and members do not inherit [teacher]'s. A key is
/// refused where the layer that wrote it is the members' or a later one; one the file wrote for a
/// single teacher that `--set` (or the environment) then made an ensemble is overridden, not
/// slipped.
fn keys_beside_members(figment: &Figment, members: usize) -> Vec<(&'static str, String)> {
    // Every key written under [teacher], down to the leaves of its tables.
    fn leaves(prefix: String, v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Dict(_, d) => d
                .iter()
                .for_each(|(k, v)| leaves(format!("{prefix}.{k}"), v, out)),
            _ => out.push(prefix),
        }
    }
    let mut keys = Vec::new();
    if let Ok(Value::Dict(_, d)) = figment.find_value("teacher") {
        for (k, v) in d
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "members" | "combine" | "calibrate" | "weight"))
        {
            leaves(format!("teacher.{k}"), v, &mut keys);
        }
    }
    // The layer a key came from: the defaults, the recipe file, the environment, --set.
    let rank = |key: &str| {
        figment.find_metadata(key).map_or(0, |md| match &md.source {
            Some(Source::Code(_)) => 0,
            Some(Source::File(_)) => 1,
            _ if md.name.contains("environment") => 2,
            _ => 3,
        })
    };
    let members_layer = rank("teacher.members");
    let mut problems = Vec::new();
    for key in keys {
        let layer = rank(&key);
        if layer > 0 && layer >= members_layer {
            let key = super::validate::static_key(&key);
            problems.push((
                key,
                format!(
                    "expected `{}` inside each [[teacher.members]] (a member's own setting; \
                     members do not inherit [teacher]'s), found it on [teacher] beside {} \
                     member(s), where it has no effect",
                    &key["teacher.".len()..],
                    members
                ),
            ));
        }
    }
    problems
}

/// Recipe variables whose values figment cannot read: it reads a value's escapes counting
/// characters as bytes, so a backslash after a non-ASCII character garbles the value or panics.
fn env_unreadable() -> Vec<Problem> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| {
            k.len() > ENV_PREFIX.len()
                && k[..ENV_PREFIX.len()].eq_ignore_ascii_case(ENV_PREFIX)
                && k.contains("__")
        })
        .filter(|(_, v)| v.rfind('\\').is_some_and(|b| !v[..b].is_ascii()))
        .map(|(k, v)| Problem {
            source: format!("environment variable {k}"),
            key: None,
            message: format!(
                "\"{}\": a backslash after a non-ASCII character cannot be read from the \
                 environment; set the value in the recipe or with --set",
                shown(&v)
            ),
        })
        .collect()
}

/// Where the value of `key` came from, for error messages.
fn source_of(figment: &Figment, key: &str, recipe_path: &str) -> String {
    // A member's key (`teacher.members[1].arch`): where the members were set.
    let key = key.split_once('[').map_or(key, |(array, _)| array);
    match figment.find_metadata(key) {
        Some(md) => describe(md, key, recipe_path),
        None => recipe_path.to_string(),
    }
}

fn describe(md: &Metadata, key: &str, recipe_path: &str) -> String {
    if let Some(Source::File(p)) = &md.source {
        return p.display().to_string();
    }
    if md.name.contains("environment") {
        // figment's own name for it is `TEACHER.EPOCS`; the variable is the prefix and the keys
        // joined by `__`, in whatever case it was typed.
        let name = format!("{ENV_PREFIX}{}", key.replace('.', "__").to_uppercase());
        return format!("environment variable {}", env_as_typed(&name));
    }
    if md.name.starts_with(SWEEP_SET) {
        // A trial's value from the recipe's own `[sweep]` table: the recipe file set it.
        return format!("{recipe_path} ([sweep] table)");
    }
    if md.name.starts_with("--") {
        return md.name.to_string();
    }
    format!("{recipe_path} (built-in default)")
}

/// How a trial's `--set` from the recipe's `[sweep]` table is named (its `SetArg::source`).
pub(super) const SWEEP_SET: &str = "--set [sweep] ";

/// An environment variable as the user typed it: figment names it from the lower-cased key
/// (`KDRUN_TEACHER__EPOCS`); the variable that is set may be spelt `KDRUN_teacher__epocs`.
fn env_as_typed(interpolated: &str) -> String {
    std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .find(|k| k.eq_ignore_ascii_case(interpolated))
        .unwrap_or_else(|| interpolated.to_string())
}

/// Relative paths resolve against the folder of the file that set them; defaults against the
/// recipe's folder; values from the environment or `--set` against the working directory.
fn resolve_paths(recipe: &mut Recipe, figment: &Figment, recipe_dir: &Path) {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let base_of = |key: &str| match figment.find_metadata(key) {
        Some(md) => match &md.source {
            Some(Source::File(p)) => p.parent().unwrap_or(recipe_dir).to_path_buf(),
            _ if md.name.contains("environment") || md.name.starts_with("--set") => cwd.clone(),
            _ => recipe_dir.to_path_buf(),
        },
        None => recipe_dir.to_path_buf(),
    };
    let resolve = |slot: &mut PathBuf, base: &Path| {
        // `~/…` is the user's home folder, as in a shell.
        if let (Ok(rest), Some(home)) = (slot.strip_prefix("~"), std::env::var_os("HOME")) {
            *slot = PathBuf::from(home).join(rest);
        }
        // An empty path means "none" (e.g. no checkpoint) and stays empty.
        if slot.is_relative() && !slot.as_os_str().is_empty() {
            *slot = normalize(&base.join(&*slot));
        }
    };
    for (key, slot) in recipe.path_slots() {
        let base = base_of(key);
        match slot {
            PathSlot::One(path) => resolve(path, &base),
            PathSlot::Many(paths) => paths.iter_mut().for_each(|p| resolve(p, &base)),
        }
    }
    // An ensemble's members: their paths against the layer that set the members.
    let base = base_of("teacher.members");
    for m in &mut recipe.teacher.members {
        resolve(&mut m.checkpoint, &base);
        m.pretrain.extra.iter_mut().for_each(|p| resolve(p, &base));
    }
}

pub(super) fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        normalize(path)
    } else {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        normalize(&cwd.join(path))
    }
}

/// Lexical normalization: drops `.` and folds `..` (no file-system access).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn from_figment(err: figment::Error, recipe_path: &str) -> RecipeError {
    let problems = err
        .into_iter()
        .map(|e| {
            let mut key = e.path.join(".");
            let source = e
                .metadata
                .as_ref()
                .map(|md| describe(md, &key, recipe_path))
                .unwrap_or_else(|| recipe_path.to_string());
            let message = match &e.kind {
                Kind::UnknownField(field, expected) => {
                    if !key.ends_with(field.as_str()) {
                        key = if key.is_empty() {
                            field.clone()
                        } else {
                            format!("{key}.{field}")
                        };
                    }
                    let prefix = key
                        .rsplit_once('.')
                        .map(|(p, _)| format!("{p}."))
                        .unwrap_or_default();
                    match nearest(field, expected) {
                        Some(s) => format!("unknown key; did you mean `{prefix}{s}`?"),
                        None => format!(
                            "unknown key; valid keys here: {}",
                            expected
                                .iter()
                                .map(|s| format!("{prefix}{s}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    }
                }
                Kind::UnknownVariant(value, expected) => {
                    let value = shown(value);
                    let hint = nearest(&value, expected)
                        .map(|s| format!(" (did you mean \"{s}\"?)"))
                        .unwrap_or_default();
                    format!(
                        "unknown value \"{value}\"; expected one of {}{hint}",
                        expected
                            .iter()
                            .map(|s| format!("\"{s}\""))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
                Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
                    format!(
                        "expected {}, found {}",
                        expected_in_words(expected),
                        actual_in_words(actual)
                    )
                }
                Kind::InvalidLength(n, expected) => {
                    format!("expected {expected}, found {n} values")
                }
                Kind::MissingField(field) => format!("missing key `{field}`"),
                Kind::Message(m) => m.clone(),
                other => other.to_string(),
            };
            Problem {
                source,
                key: (!key.is_empty()).then_some(key),
                message,
            }
        })
        .collect();
    RecipeError { problems }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_folds_parent_dirs() {
        assert_eq!(
            normalize(Path::new("/a/b/../c/./d")),
            PathBuf::from("/a/c/d")
        );
    }
}
