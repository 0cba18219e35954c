//! Value ranges that serde's types cannot express.

use super::error::shown;
mod sections;
mod teacher;

use super::sections::{Optim, Recipe};
use sections::{baseline, distill, export, report_and_runtime, student, textgcn};
use teacher::{pretrain, teacher, teachers};

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

/// The dotted key of `rest` in member `index` (0-based, as the array is indexed) of
/// `[[teacher.members]]`: `teacher.members[1].arch`.
pub fn member_key(index: usize, rest: &str) -> &'static str {
    static_key(&format!("teacher.members[{index}].{rest}"))
}

/// `key` as the `&'static str` problems name keys by: made once each and kept (a recipe has few
/// keys made at run time: its members' and its teacher section's).
pub fn static_key(key: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static KEYS: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut keys = KEYS.lock().unwrap_or_else(|e| e.into_inner());
    let keys = keys.get_or_insert_with(HashSet::new);
    if let Some(k) = keys.get(key) {
        return k;
    }
    let k: &'static str = Box::leak(key.to_string().into_boxed_str());
    keys.insert(k);
    k
}

/// The problems found so far, as (dotted key, "expected …, found …").
#[derive(Default)]
struct Checks {
    problems: Vec<(&'static str, String)>,
}

impl Checks {
    /// A problem at `key` unless `ok`.
    fn check(&mut self, key: &'static str, ok: bool, expected: &str, found: String) {
        if !ok {
            self.problems
                .push((key, format!("expected {expected}, found {found}")));
        }
    }

    /// A count that must be at least 1.
    fn at_least_one<T: PartialOrd + From<u8> + std::fmt::Display>(
        &mut self,
        key: &'static str,
        n: T,
    ) {
        let ok = n >= T::from(1);
        self.check(key, ok, "an integer ≥ 1", n.to_string());
    }

    /// The optimiser settings of `section` (`teacher`, `student`, `teacher.pretrain`): at least
    /// one epoch (where the section counts epochs: pre-training may count steps instead), a
    /// positive learning rate, batches of at least one example, a warm-up fraction in [0, 1),
    /// a weight decay ≥ 0.
    fn optim(&mut self, section: &str, o: Optim, counts_epochs: bool) {
        let key = |rest: &str| static_key(&format!("{section}.{rest}"));
        if counts_epochs {
            self.at_least_one(key("epochs"), o.epochs);
        }
        self.positive(key("lr"), o.lr);
        self.at_least_one(key("batch_size"), o.batch_size);
        self.check(
            key("warmup"),
            (0.0..1.0).contains(&o.warmup),
            "a fraction in [0, 1)",
            o.warmup.to_string(),
        );
        self.check(
            key("weight_decay"),
            o.weight_decay >= 0.0 && o.weight_decay.is_finite(),
            "a number ≥ 0",
            o.weight_decay.to_string(),
        );
    }

    /// A finite number above 0.
    fn positive(&mut self, key: &'static str, x: f64) {
        self.check(
            key,
            x > 0.0 && x.is_finite(),
            "a positive number",
            x.to_string(),
        );
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

/// Why a path that should be a file is not one: a folder, or not there.
fn missing_file(path: &std::path::Path) -> &'static str {
    if path.is_dir() {
        "a folder, not a file"
    } else {
        "not found"
    }
}

/// Whether `t` is a Slurm time limit: `minutes`, `minutes:seconds`, `hours:minutes:seconds`,
/// `days-hours`, `days-hours:minutes`, `days-hours:minutes:seconds`, or `UNLIMITED`/`infinite`.
pub fn slurm_time_ok(t: &str) -> bool {
    if t.eq_ignore_ascii_case("unlimited") || t.eq_ignore_ascii_case("infinite") {
        return true;
    }
    let number = |s: &str| !s.is_empty() && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit());
    let (days, rest) = match t.split_once('-') {
        Some((d, rest)) => (Some(d), rest),
        None => (None, t),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    days.is_none_or(number) && parts.iter().all(|p| number(p)) && parts.len() <= 3
}

/// Options kdrun writes into every sbatch script itself.
const SLURM_OWN_OPTIONS: [&str; 9] = [
    "--array",
    "--dependency",
    "--output",
    "--job-name",
    "--parsable",
    "-a",
    "-d",
    "-o",
    "-J",
];

/// Every problem of a `[runtime.slurm]` table (also after `--time` and the other flags), as
/// (dotted key, (what was expected, what was found)).
pub fn slurm_problems(s: &super::sections::SlurmSection) -> Vec<(&'static str, (String, String))> {
    let mut out = Vec::new();
    let one_word = |v: &str| {
        v.chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '\'' && c != '"')
    };
    for (key, value) in [
        ("runtime.slurm.partition", &s.partition),
        ("runtime.slurm.account", &s.account),
    ] {
        if !one_word(value) {
            out.push((
                key,
                (
                    "a name without white space or quotes (leave it out for the cluster's default)"
                        .into(),
                    format!("\"{}\"", shown(value)),
                ),
            ));
        }
    }
    if !s.time.is_empty() && !slurm_time_ok(&s.time) {
        out.push((
            "runtime.slurm.time",
            (
                "a Slurm time limit such as \"90\" (minutes), \"2:00:00\" or \"1-12:00:00\"".into(),
                format!("\"{}\"", shown(&s.time)),
            ),
        ));
    }
    let mem_ok = |m: &str| {
        let digits = m.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
        !digits.is_empty()
            && m.len() - digits.len() <= 1
            && digits.bytes().all(|b| b.is_ascii_digit())
    };
    if !s.mem.is_empty() && !mem_ok(&s.mem) {
        out.push((
            "runtime.slurm.mem",
            (
                "a memory size such as \"16G\" or \"4000M\" (a whole number, then K, M, G or T)"
                    .into(),
                format!("\"{}\"", shown(&s.mem)),
            ),
        ));
    }
    for o in &s.sbatch_options {
        let name = o.split(['=', ' ']).next().unwrap_or("");
        let problem = if !o.starts_with('-') || o.chars().any(char::is_control) {
            Some("sbatch options such as \"--qos=high\", one line each")
        } else if SLURM_OWN_OPTIONS.contains(&name) {
            Some("options other than --array, --dependency, --output and --job-name (kdrun sets those)")
        } else {
            None
        };
        if let Some(expected) = problem {
            out.push((
                "runtime.slurm.sbatch_options",
                (expected.into(), format!("\"{}\"", shown(o))),
            ));
            break;
        }
    }
    if let Some(line) = s.setup.iter().find(|l| l.chars().any(char::is_control)) {
        out.push((
            "runtime.slurm.setup",
            (
                "shell lines, one per list item (no line breaks or control characters)".into(),
                format!("\"{}\"", shown(line)),
            ),
        ));
    }
    out
}
