//! Pre-flight: what a run would refuse, found before it starts. [`RECIPE_CHECKS`] are the
//! checks of a recipe that need the later layers (files' contents, checkpoints, templates), run
//! by `kdrun check` and before any run; [`prepare`] builds what a run builds before its first
//! stage, so a test can hold that whatever it refuses, the checks refused first.

use super::context::Context;
use super::teachers;
use crate::backend::Compute;
use crate::recipe::Recipe;
use crate::report;
use crate::store::stage::{Stages, STAGES_DIR};
use crate::train::teacher::Unfit;
use anyhow::{Context as _, Result};

/// Checks of a recipe that need the later layers (run by `kdrun check` and before any run, so
/// before any folder is made or stage starts): a `report.templates` folder holds templates that
/// parse, `name` is not the store's own stage folder, the data files exist and parse (the first
/// bad row named) with the recipe's classes and enough examples for the split, a vectors file
/// matches `student.embedding_dim` and its header's count, a checkpoint (the teacher's or each
/// ensemble member's) is of its architecture and holds a tokenizer with the roles kdrun needs.
pub const RECIPE_CHECKS: &[crate::recipe::Check] = &[
    check_templates,
    check_name,
    check_data_files,
    check_data_contents,
    check_vectors,
    check_checkpoint,
];

/// What a pre-flight check that reads files found, by what it read: a sweep's trials share data
/// files and settings, so each is read once per process.
type Found = Vec<(&'static str, String)>;

fn cached(what: String, compute: impl FnOnce() -> Found) -> Found {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static CACHE: Mutex<Option<HashMap<String, Found>>> = Mutex::new(None);
    if let Some(found) = CACHE
        .lock()
        .ok()
        .and_then(|c| c.as_ref().and_then(|m| m.get(&what).cloned()))
    {
        return found;
    }
    let found = compute();
    if let Ok(mut c) = CACHE.lock() {
        c.get_or_insert_with(HashMap::new)
            .insert(what, found.clone());
    }
    found
}

/// The file's identity for the cache: path, length and modification time.
fn stamp(path: &std::path::Path) -> String {
    let meta = std::fs::metadata(path).ok();
    format!(
        "{}|{:?}|{:?}",
        path.display(),
        meta.as_ref().map(|m| m.len()),
        meta.and_then(|m| m.modified().ok())
    )
}

/// The data files parse and the splits can be made: the first bad row (file, line, field), a
/// class the files do not have, a class with too few examples.
pub(crate) fn check_data_contents(r: &Recipe) -> Vec<(&'static str, String)> {
    if !check_data_files(r).is_empty() {
        return Vec::new();
    }
    let d = &r.data;
    let what = format!(
        "data|{}|{}|{}",
        serde_json::to_string(d).unwrap_or_default(),
        stamp(&d.train),
        stamp(&d.test)
    );
    cached(what, || {
        let train = match crate::data::read::read_file(&d.train, d) {
            Ok(t) => t,
            Err(e) => return vec![("data.train", format!("{e:#}"))],
        };
        let test = match crate::data::read::read_file(&d.test, d) {
            Ok(t) => t,
            Err(e) => return vec![("data.test", format!("{e:#}"))],
        };
        match crate::data::select::select(&train.frame, &test.frame, d) {
            Ok(_) => Vec::new(),
            Err(e) => {
                let e = format!("{e:#}");
                let key = if e.starts_with("data.classes") {
                    "data.classes"
                } else if e.starts_with(&d.test.display().to_string()) {
                    "data.test"
                } else {
                    "data.train"
                };
                vec![(key, e)]
            }
        }
    })
}

/// A vectors file reads whole (as many vectors as its header promises, each of its dimension)
/// and its dimension is `student.embedding_dim`.
fn check_vectors(r: &Recipe) -> Vec<(&'static str, String)> {
    let s = &r.student;
    if s.vectors.as_os_str().is_empty() || !s.vectors.is_file() {
        return Vec::new(); // none, or reported by the recipe's own validation
    }
    let what = format!("vectors|{}|{}", stamp(&s.vectors), s.embedding_dim);
    cached(what, || {
        let none = std::collections::HashSet::new();
        match crate::data::vectors::Vectors::load(&s.vectors, Some(&none)) {
            Err(e) => vec![("student.vectors", format!("{e:#}"))],
            Ok(v) if v.dim != s.embedding_dim => vec![(
                "student.embedding_dim",
                format!(
                    "expected {} (the dimension of {}), found {}",
                    v.dim,
                    s.vectors.display(),
                    s.embedding_dim
                ),
            )],
            Ok(_) => Vec::new(),
        }
    })
}

/// Every checkpoint folder opens (config.json and a weights file), is of its teacher's
/// architecture, holds a tokenizer kdrun reads (tokenizer.json, or vocab.txt for BERT) with
/// every role kdrun needs (padding, mask, classification, separator, unknown) on the side the
/// model reads its classification token, and takes `data.max_len` positions: the lone teacher's
/// (keys `teacher.*`), or each ensemble member's (keys `teacher.members[i].*`), as the run's
/// teacher set-up (`train::teacher::setup`) would refuse them, before any member trains.
fn check_checkpoint(r: &Recipe) -> Vec<(&'static str, String)> {
    let t = &r.teacher;
    if t.members.is_empty() {
        return check_teacher_checkpoint(r, t, None);
    }
    t.members
        .iter()
        .enumerate()
        .flat_map(|(i, m)| check_teacher_checkpoint(r, m, Some(i)))
        .collect()
}

/// [`check_checkpoint`] of one teacher: the recipe's own (`member` None) or member `member`
/// (0-based) of its ensemble.
fn check_teacher_checkpoint(
    r: &Recipe,
    t: &crate::recipe::TeacherSection,
    member: Option<usize>,
) -> Vec<(&'static str, String)> {
    let dir = &t.checkpoint;
    if dir.as_os_str().is_empty() || !dir.join("config.json").is_file() {
        return Vec::new(); // none, or reported by the recipe's own validation
    }
    // The key of the teacher's section: the lone teacher's, or member i's.
    let key = |rest: &str| -> &'static str {
        match member {
            Some(i) => crate::recipe::member_key(i, rest),
            None => crate::recipe::static_key(&format!("teacher.{rest}")),
        }
    };
    // Whose checkpoint, in a message: the teacher's, or "member 2's".
    let whose = member
        .map(|i| format!("member {}: ", i + 1))
        .unwrap_or_default();
    let files = [
        "config.json",
        "model.safetensors",
        "pytorch_model.bin",
        "tokenizer.json",
        "vocab.txt",
        "spiece.model",
        "tokenizer_config.json",
    ];
    let what = format!(
        "checkpoint|{member:?}|{}|{}|{}|{}",
        t.arch.name(),
        r.data.max_len,
        t.pretrain.enabled(),
        files
            .iter()
            .map(|f| stamp(&dir.join(f)))
            .collect::<Vec<_>>()
            .join("|")
    );
    cached(what, || {
        let c = match crate::models::Checkpoint::open(dir) {
            Err(e) => return vec![(key("checkpoint"), format!("{whose}{e:#}"))],
            Ok(c) => c,
        };
        let (unfit, _) = crate::train::teacher::unfit(t, r.data.max_len, &c);
        unfit
            .iter()
            .map(|u| match (u.teacher_key(), u, member) {
                (Some(k), _, _) => (
                    key(k),
                    format!("{whose}{}", u.message(t, r.data.max_len, &c)),
                ),
                (None, Unfit::Positions(n), Some(i)) => (
                    "data.max_len",
                    format!(
                        "at most {n} (the positions of member {}'s checkpoint {}), found {}",
                        i + 1,
                        dir.display(),
                        r.data.max_len
                    ),
                ),
                (None, _, _) => ("data.max_len", u.message(t, r.data.max_len, &c)),
            })
            .collect()
    })
}

/// The data files exist and can be opened, before anything is made (a folder where a file is
/// expected is said as such). The recipe checks its other files itself (vectors, checkpoint,
/// extra pre-training text); these are here because recipes are also loaded, in tests and tools,
/// without their data at hand.
pub(crate) fn check_data_files(r: &Recipe) -> Vec<(&'static str, String)> {
    let file = |key: &'static str, path: &std::path::Path, what: &str| {
        let message = if path.is_dir() {
            format!("expected {what}, found a folder: {}", path.display())
        } else if !path.exists() {
            format!("expected {what}, but {} was not found", path.display())
        } else {
            match std::fs::File::open(path) {
                Ok(_) => return None,
                Err(e) => format!("{what} {} cannot be read: {e}", path.display()),
            }
        };
        Some((key, message))
    };
    [
        file("data.train", &r.data.train, "a training data file"),
        file("data.test", &r.data.test, "a test data file"),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn check_templates(r: &Recipe) -> Vec<(&'static str, String)> {
    let dir = &r.report.templates;
    if dir.as_os_str().is_empty() {
        return Vec::new();
    }
    match report::templates::check_folder(dir) {
        Ok(()) => Vec::new(),
        Err(e) => vec![("report.templates", e)],
    }
}

fn check_name(r: &Recipe) -> Vec<(&'static str, String)> {
    if r.name == STAGES_DIR {
        vec![(
            "name",
            format!(
                "a name other than `{STAGES_DIR}` (the store's stage folder), found {STAGES_DIR:?}"
            ),
        )]
    } else {
        Vec::new()
    }
}

/// What a run reads and builds from its recipe before its first stage computes, without
/// training anything or writing to the store: the splits, the students' vocabulary, inputs and
/// start (pretrained vectors), and every transformer teacher's set-up (tokenizer, configuration,
/// checkpoint) and inputs, the lone teacher's or each ensemble member's. Whatever this refuses,
/// `kdrun check` ([`RECIPE_CHECKS`]) must refuse first: `tests/fuzz.rs` holds that for fuzzed
/// recipes.
pub fn prepare(r: &Recipe, compute: &Compute) -> Result<()> {
    let stages = Stages::new(&r.runtime.store);
    let cx = Context::new(r, compute, &stages);
    cx.data()?;
    cx.student_init()?;
    let teachers: Vec<Recipe> = if r.teacher.members.is_empty() {
        vec![r.clone()]
    } else {
        r.teacher
            .members
            .iter()
            .map(|m| teachers::member_recipe(r, m))
            .collect()
    };
    for (i, t) in teachers.iter().enumerate() {
        if t.teacher.arch.is_transformer() {
            cx.with_recipe(t).teacher_inputs().with_context(|| {
                if r.teacher.members.is_empty() {
                    "the teacher".to_string()
                } else {
                    format!("teacher member {}", i + 1)
                }
            })?;
        }
    }
    Ok(())
}
