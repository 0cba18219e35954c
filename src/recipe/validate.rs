//! Value ranges that serde's types cannot express.

use super::error::shown;
use super::sections::{PretrainObjective, Recipe, TeacherArch, MLM_KEYS, PLM_KEYS};

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

/// `[teacher]`'s own sizes and optimiser settings.
fn teacher(r: &Recipe, c: &mut Checks) {
    let unit_open = |x: f64| (0.0..1.0).contains(&x);
    let t = &r.teacher;
    c.at_least_one("teacher.layers", t.layers);
    c.at_least_one("teacher.hidden", t.hidden);
    c.check(
        "teacher.heads",
        t.heads >= 1 && t.hidden.is_multiple_of(t.heads.max(1)),
        "an integer ≥ 1 that divides teacher.hidden",
        format!("{} (hidden {})", t.heads, t.hidden),
    );
    if let Some(width) = t.intermediate {
        c.check(
            "teacher.intermediate",
            width >= 1,
            "an integer ≥ 1 (leave it out for 4 × teacher.hidden)",
            width.to_string(),
        );
    }
    c.at_least_one("teacher.epochs", t.epochs);
    c.positive("teacher.lr", t.lr);
    c.at_least_one("teacher.batch_size", t.batch_size);
    c.check(
        "teacher.warmup",
        unit_open(t.warmup),
        "a fraction in [0, 1)",
        t.warmup.to_string(),
    );
    c.check(
        "teacher.dropout",
        unit_open(t.dropout),
        "a probability in [0, 1)",
        t.dropout.to_string(),
    );
    c.check(
        "teacher.weight_decay",
        t.weight_decay >= 0.0 && t.weight_decay.is_finite(),
        "a number ≥ 0",
        t.weight_decay.to_string(),
    );

    if let super::sections::Freeze::AllButLast(k) = t.freeze {
        c.check(
            "teacher.freeze",
            k >= 1 && (!t.checkpoint.as_os_str().is_empty() || k <= t.layers),
            "{ all-but-last = K } with 1 ≤ K ≤ the number of layers",
            format!("K = {k}"),
        );
    }
}

/// `[teacher.pretrain]`: the keys of the teacher's objective, their ranges, the extra text.
fn pretrain(r: &Recipe, c: &mut Checks) {
    let unit_open = |x: f64| (0.0..1.0).contains(&x);
    let t = &r.teacher;
    let p = &t.pretrain;
    let objective = p.objective(t.arch);
    c.check(
        "teacher.pretrain.objective",
        objective == t.arch.objective(),
        &format!(
            "{:?} for a {} teacher",
            t.arch.objective().name(),
            t.arch.name()
        ),
        format!("{:?}", objective.name()),
    );
    for (of, key, set) in p.keys_set() {
        if set && of != objective {
            let full: &'static str = match key {
                "mask_prob" => "teacher.pretrain.mask_prob",
                "whole_word" => "teacher.pretrain.whole_word",
                "plm_probability" => "teacher.pretrain.plm_probability",
                _ => "teacher.pretrain.max_span_length",
            };
            let (name, keys) = match objective {
                PretrainObjective::Mlm => ("masked-LM", MLM_KEYS),
                PretrainObjective::Plm => ("permutation-LM", PLM_KEYS),
            };
            let other = match of {
                PretrainObjective::Mlm => "masked-LM",
                PretrainObjective::Plm => "permutation-LM",
            };
            c.check(
                full,
                false,
                &format!(
                    "only {name} keys ({}), as the {} teacher's objective is {:?}",
                    keys.join(", "),
                    t.arch.name(),
                    objective.name()
                ),
                format!("{key}, a {other} key"),
            );
        }
    }
    if p.enabled() {
        c.check(
            "teacher.pretrain.mask_prob",
            p.mask_prob() > 0.0 && p.mask_prob() < 1.0,
            "a probability in (0, 1)",
            p.mask_prob().to_string(),
        );
        c.check(
            "teacher.pretrain.plm_probability",
            p.plm_probability() > 0.0 && p.plm_probability() <= 1.0,
            "a share in (0, 1]",
            p.plm_probability().to_string(),
        );
        c.at_least_one("teacher.pretrain.max_span_length", p.max_span_length());
        c.positive("teacher.pretrain.lr", p.lr);
        c.at_least_one("teacher.pretrain.batch_size", p.batch_size);
        c.check(
            "teacher.pretrain.warmup",
            unit_open(p.warmup),
            "a fraction in [0, 1)",
            p.warmup.to_string(),
        );
        c.check(
            "teacher.pretrain.weight_decay",
            p.weight_decay >= 0.0 && p.weight_decay.is_finite(),
            "a number ≥ 0",
            p.weight_decay.to_string(),
        );
        c.check(
            "teacher.pretrain.holdout",
            p.holdout > 0.0 && p.holdout <= 0.5,
            "a fraction in (0, 0.5]",
            p.holdout.to_string(),
        );
    }
    if !t.checkpoint.as_os_str().is_empty() {
        c.check(
            "teacher.checkpoint",
            t.checkpoint.join("config.json").is_file(),
            "a Hugging Face checkpoint folder with config.json",
            if t.checkpoint.is_dir() {
                format!("{} (a folder without config.json)", t.checkpoint.display())
            } else if t.checkpoint.is_file() {
                format!("{} (a file, not a folder)", t.checkpoint.display())
            } else {
                format!("{} (not found)", t.checkpoint.display())
            },
        );
    }
    for f in &p.extra {
        c.check(
            "teacher.pretrain.extra",
            f.is_file(),
            "existing text files",
            format!("{} ({})", f.display(), missing_file(f)),
        );
    }
}

/// `[student]`.
fn student(r: &Recipe, c: &mut Checks) {
    let unit_open = |x: f64| (0.0..1.0).contains(&x);
    let s = &r.student;
    c.at_least_one("student.embedding_dim", s.embedding_dim);
    c.at_least_one("student.hidden", s.hidden);
    c.at_least_one("student.fc_hidden", s.fc_hidden);
    c.at_least_one("student.epochs", s.epochs);
    c.positive("student.lr", s.lr);
    c.at_least_one("student.batch_size", s.batch_size);
    c.check(
        "student.warmup",
        unit_open(s.warmup),
        "a fraction in [0, 1)",
        s.warmup.to_string(),
    );
    c.check(
        "student.dropout",
        unit_open(s.dropout),
        "a probability in [0, 1)",
        s.dropout.to_string(),
    );
    c.check(
        "student.weight_decay",
        s.weight_decay >= 0.0 && s.weight_decay.is_finite(),
        "a number ≥ 0",
        s.weight_decay.to_string(),
    );

    if !s.vectors.as_os_str().is_empty() {
        c.check(
            "student.vectors",
            s.vectors.is_file(),
            "a word2vec file (text or .bin, optionally gzip)",
            format!("{} ({})", s.vectors.display(), missing_file(&s.vectors)),
        );
    }
}

/// `[distill]` and its transfer set.
fn distill(r: &Recipe, c: &mut Checks) {
    let k = &r.distill;
    let a = &k.augment;
    for (key, p) in [
        ("distill.augment.p_mask", a.p_mask),
        ("distill.augment.p_pos", a.p_pos),
        ("distill.augment.p_ng", a.p_ng),
    ] {
        c.check(
            key,
            (0.0..=1.0).contains(&p),
            "a probability in [0, 1]",
            p.to_string(),
        );
    }
    c.check(
        "distill.augment.p_pos",
        a.p_mask + a.p_pos <= 1.0,
        "p_mask + p_pos ≤ 1",
        format!("{} + {}", a.p_mask, a.p_pos),
    );
    c.check(
        "distill.alpha",
        k.alpha >= 0.0 && k.alpha.is_finite(),
        "a weight ≥ 0",
        k.alpha.to_string(),
    );
    match k.soft_weight {
        Some(w) => c.check(
            "distill.soft_weight",
            w >= 0.0 && w.is_finite(),
            "a weight ≥ 0 (leave it out for 1 − alpha)",
            w.to_string(),
        ),
        None => c.check(
            "distill.alpha",
            k.alpha <= 1.0,
            "alpha in [0, 1] when distill.soft_weight is left out (its default, 1 − alpha, would be negative)",
            k.alpha.to_string(),
        ),
    }
    c.positive("distill.temperature", k.temperature);
    c.check(
        "distill.alpha",
        k.alpha > 0.0 || k.soft_weight() > 0.0,
        "alpha or soft_weight above 0 (the distilled student needs a loss)",
        format!("alpha {} and soft weight {}", k.alpha, k.soft_weight()),
    );
}

/// `[baseline]`.
fn baseline(r: &Recipe, c: &mut Checks) {
    let b = &r.baseline;
    let range_ok = |v: &[usize]| v.is_empty() || (v.len() == 2 && v[0] >= 1 && v[0] <= v[1]);
    for (key, v) in [
        ("baseline.char_ngrams", &b.char_ngrams),
        ("baseline.word_ngrams", &b.word_ngrams),
    ] {
        c.check(
            key,
            range_ok(v),
            "[min, max] with 1 ≤ min ≤ max, or [] for none",
            format!("{v:?}"),
        );
    }
    c.check(
        "baseline.char_ngrams",
        !b.enabled || !b.char_ngrams.is_empty() || !b.word_ngrams.is_empty(),
        "character or word n-grams (both are [])",
        format!("{:?}", b.char_ngrams),
    );
    c.at_least_one("baseline.min_df", b.min_df);
    c.check(
        "baseline.c",
        !b.c.is_empty() && b.c.iter().all(|c| *c > 0.0 && c.is_finite()),
        "a non-empty list of positive numbers",
        format!("{:?}", b.c),
    );
}

/// `[report]` and `[runtime]` (Slurm included).
fn report_and_runtime(r: &Recipe, c: &mut Checks) {
    let rep = &r.report;
    c.at_least_one("report.timing_batch", rep.timing_batch);
    c.at_least_one("report.timing_repeats", rep.timing_repeats);
    match super::Select::parse(&rep.select) {
        None => c.check(
            "report.select",
            false,
            &format!(
                "one of {} (a sweep chooses its setting by that model's validation accuracy, or \
                 by the distilled student's validation gain over the student alone; no \
                 validation macro-F1 is recorded)",
                super::Select::VALUES
                    .iter()
                    .map(|v| format!("\"{v}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!("{:?}", rep.select),
        ),
        Some(sel) => {
            let present = match sel.model() {
                "baseline" => r.baseline.enabled,
                "textgcn" => r.textgcn.enabled,
                "textgcn_distilled" => r.textgcn.enabled && r.textgcn.distill,
                _ => true,
            };
            c.check(
                "report.select",
                present,
                "a model the recipe trains (enable it, or choose another)",
                format!("{:?}", rep.select),
            );
        }
    }
    c.check(
        "runtime.jobs",
        r.runtime.jobs >= 1,
        "an integer ≥ 1 (sweep trials at once; 1: one after another)",
        r.runtime.jobs.to_string(),
    );
    for (key, problem) in slurm_problems(&r.runtime.slurm) {
        c.check(key, false, &problem.0, problem.1);
    }
}

/// `[textgcn]` (the comparison row or the teacher).
fn textgcn(r: &Recipe, c: &mut Checks) {
    let unit_open = |x: f64| (0.0..1.0).contains(&x);
    let g = &r.textgcn;
    let gcn_teacher = r.teacher.arch == TeacherArch::Textgcn
        || r.teacher
            .members
            .iter()
            .any(|m| m.arch == TeacherArch::Textgcn);
    if g.enabled || gcn_teacher {
        c.at_least_one("textgcn.min_count", g.min_count);
        c.check(
            "textgcn.window",
            g.window >= 2,
            "an integer ≥ 2",
            g.window.to_string(),
        );
        c.at_least_one("textgcn.hidden", g.hidden);
        c.check(
            "textgcn.dropout",
            unit_open(g.dropout),
            "a probability in [0, 1)",
            g.dropout.to_string(),
        );
        c.positive("textgcn.lr", g.lr);
        c.at_least_one("textgcn.epochs", g.epochs);
        c.at_least_one("textgcn.patience", g.patience);
        c.check(
            "textgcn.weight_decay",
            g.weight_decay >= 0.0 && g.weight_decay.is_finite(),
            "a number ≥ 0",
            g.weight_decay.to_string(),
        );
    }
}

/// `[export]`.
fn export(r: &Recipe, c: &mut Checks) {
    let e = &r.export;
    let teacher = e.models.contains(&crate::recipe::ExportModel::Teacher);
    c.check(
        "export.models",
        !teacher || (r.teacher.members.is_empty() && r.teacher.arch == crate::recipe::TeacherArch::Bert),
        "\"distilled\" or \"student\" (\"teacher\" exports a BERT teacher, not an ensemble or another kind)",
        format!(
            "\"teacher\" with a{} teacher",
            if r.teacher.members.is_empty() {
                format!(" {}", r.teacher.arch.name())
            } else {
                "n ensemble".to_string()
            }
        ),
    );
    c.check(
        "export.formats",
        e.models.is_empty() || !e.formats.is_empty(),
        "at least one format (\"onnx\") when export.models names a model",
        "[]".to_string(),
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
