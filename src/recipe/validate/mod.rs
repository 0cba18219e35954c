//! Value ranges that serde's types cannot express.

mod checks;
mod sections;
mod teacher;

use super::error::shown;
use super::sections::{Recipe, TeacherArch};
use checks::Checks;
pub use checks::{member_key, static_key};
use sections::{baseline, distill, export, report_and_runtime, student, textgcn};
use teacher::{pretrain, teacher};

/// The longest run or recipe name, in bytes (folder names are at most 255 bytes on common file
/// systems; a sweep's trial folders add a suffix).
pub const MAX_NAME_BYTES: usize = 120;

/// Why `name` cannot name a folder on every common file system, if it cannot.
pub fn folder_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name.trim() != name {
        Some("it starts or ends with white space")
    } else if name.starts_with('.') {
        Some("it starts with `.`")
    } else if name.contains(['/', '\\']) {
        Some("it holds a path separator")
    } else if name.chars().any(|c| c.is_control()) {
        Some("it holds a control character")
    } else if name.contains(['<', '>', ':', '"', '|', '?', '*']) {
        Some("it holds one of < > : \" | ? * (not allowed in Windows folder names)")
    } else if name.len() > MAX_NAME_BYTES {
        Some("it is longer than 120 bytes")
    } else {
        None
    }
}

/// Every out-of-range value, as (dotted key, what was expected and what was found).
pub fn validate(r: &Recipe) -> Vec<(&'static str, String)> {
    let mut c = Checks::default();
    for section in [
        name_and_data,
        teacher,
        pretrain,
        student,
        distill,
        baseline,
        report_and_runtime,
        textgcn,
    ] {
        section(r, &mut c);
    }
    c.problems.extend(teachers(r));
    export(r, &mut c);
    c.problems
}

/// The recipe's name and `[data]`.
fn name_and_data(r: &Recipe, c: &mut Checks) {
    let name_problem = folder_name_problem(&r.name);
    c.check(
        "name",
        name_problem.is_none(),
        "a name that can be a folder name (letters, digits, `-`, `_`, `.`, not starting with `.`)",
        format!("\"{}\" ({})", shown(&r.name), name_problem.unwrap_or("")),
    );

    let d = &r.data;
    c.check(
        "data.valid_fraction",
        d.valid_fraction > 0.0 && d.valid_fraction <= 0.5,
        "a fraction in (0, 0.5]",
        d.valid_fraction.to_string(),
    );
    c.check(
        "data.max_len",
        (4..=512).contains(&d.max_len),
        "an integer in 4..=512",
        d.max_len.to_string(),
    );
    c.at_least_one("data.min_count", d.min_count);
    c.check(
        "data.max_per_class",
        d.max_per_class != 1,
        "0 (keep all) or at least 2 (one example for training, one for validation)",
        d.max_per_class.to_string(),
    );
    for (key, field) in [
        ("data.text_field", &d.text_field),
        ("data.label_field", &d.label_field),
    ] {
        if let Some(f) = field {
            c.check(
                key,
                !f.trim().is_empty(),
                "a field or column name (leave it out for the default)",
                format!("\"{}\"", shown(f)),
            );
        }
    }
    c.check(
        "data.label_field",
        d.text_field() != d.label_field(),
        "a label field other than the text field",
        format!("both \"{}\"", shown(d.label_field())),
    );
    let blank = d.classes.iter().find(|c| c.trim().is_empty());
    c.check(
        "data.classes",
        blank.is_none(),
        "class names or codes (no empty ones)",
        format!("\"{}\"", shown(blank.map(String::as_str).unwrap_or(""))),
    );
    let mut seen = std::collections::HashSet::new();
    let dup = d.classes.iter().find(|c| !seen.insert(c.as_str()));
    c.check(
        "data.classes",
        dup.is_none(),
        "distinct class names or codes",
        format!("\"{}\" twice", shown(dup.map(String::as_str).unwrap_or(""))),
    );
}

/// The teacher's kind and an ensemble's members: the linear and BiLSTM teachers are never
/// further pre-trained, the linear one needs n-grams, and every member is a valid teacher
/// section of its own (its problems named by member number).
fn teachers(r: &Recipe) -> Vec<(&'static str, String)> {
    let t = &r.teacher;
    let mut problems = Vec::new();
    if !t.arch.is_transformer() && t.pretrain.enabled() {
        problems.push((
            "teacher.pretrain.epochs",
            format!(
                "no further pre-training (steps = 0 and epochs = 0) for a {} teacher: only \
                 bert and xlnet teachers are further pre-trained",
                t.arch.name()
            ),
        ));
    }
    // TextGCN labels only the documents of its graph: the synthetic sentences need another
    // teacher (an ensemble's other members label them).
    let only_gcn = if t.members.is_empty() {
        t.arch == TeacherArch::Textgcn
    } else {
        t.members.iter().all(|m| m.arch == TeacherArch::Textgcn)
    };
    if only_gcn && r.distill.augment.n_iter > 0 {
        problems.push((
            "distill.augment.n_iter",
            format!(
                "0 with a TextGCN teacher alone (it only has logits for the documents in its \
                 graph, so it cannot label synthetic sentences; an ensemble's other members \
                 can), found {}",
                r.distill.augment.n_iter
            ),
        ));
    }
    if r.textgcn.distill && !r.textgcn.enabled {
        problems.push((
            "textgcn.distill",
            "textgcn.enabled = true as well (the distilled TextGCN is shown beside TextGCN)"
                .to_string(),
        ));
    }
    let b = &r.baseline;
    let uses_linear =
        t.arch == TeacherArch::Linear || t.members.iter().any(|m| m.arch == TeacherArch::Linear);
    if uses_linear && b.char_ngrams.is_empty() && b.word_ngrams.is_empty() {
        problems.push((
            "baseline.char_ngrams",
            "character or word n-grams for the linear teacher (both are [])".to_string(),
        ));
    }
    if t.weight != 1.0 && t.members.is_empty() {
        problems.push((
            "teacher.weight",
            format!(
                "teacher.weight only inside [[teacher.members]] (an ensemble's member), found \
                 {} on the teacher itself",
                t.weight
            ),
        ));
    }
    for (i, m) in t.members.iter().enumerate() {
        let n = i + 1;
        if !m.members.is_empty() {
            problems.push((
                "teacher.members",
                format!(
                    "member {n}: a member with no members of its own, found {}",
                    m.members.len()
                ),
            ));
            continue;
        }
        if !(m.weight > 0.0 && m.weight.is_finite()) {
            problems.push((
                "teacher.members",
                format!("member {n}: weight a positive number, found {}", m.weight),
            ));
        }
        let mut alone = r.clone();
        alone.teacher = m.clone();
        alone.teacher.weight = 1.0;
        for (key, message) in validate(&alone) {
            if let Some(rest) = key.strip_prefix("teacher.") {
                problems.push((
                    "teacher.members",
                    format!("member {n} ({}): {rest}: {message}", m.arch.name()),
                ));
            }
        }
    }
    problems
}
