//! The sections beside the teacher: `[student]`, `[distill]`, `[baseline]`, `[report]` and
//! `[runtime]`, `[textgcn]`, `[export]`.

use super::checks::{missing_file, Checks};
use super::shown;
use crate::recipe::sections::{Recipe, TeacherArch};

/// `[student]`.
pub(super) fn student(r: &Recipe, c: &mut Checks) {
    let unit_open = |x: f64| (0.0..1.0).contains(&x);
    let s = &r.student;
    c.at_least_one("student.embedding_dim", s.embedding_dim);
    c.at_least_one("student.hidden", s.hidden);
    c.at_least_one("student.fc_hidden", s.fc_hidden);
    c.optim("student", s.optim(), true);
    c.check(
        "student.dropout",
        unit_open(s.dropout),
        "a probability in [0, 1)",
        s.dropout.to_string(),
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
pub(super) fn distill(r: &Recipe, c: &mut Checks) {
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
pub(super) fn baseline(r: &Recipe, c: &mut Checks) {
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
pub(super) fn report_and_runtime(r: &Recipe, c: &mut Checks) {
    let rep = &r.report;
    c.at_least_one("report.timing_batch", rep.timing_batch);
    c.at_least_one("report.timing_repeats", rep.timing_repeats);
    match crate::recipe::Select::parse(&rep.select) {
        None => c.check(
            "report.select",
            false,
            &format!(
                "one of {} (a sweep chooses its setting by that model's validation accuracy, or \
                 by the distilled student's validation gain over the student alone; no \
                 validation macro-F1 is recorded)",
                crate::recipe::Select::VALUES
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
pub(super) fn textgcn(r: &Recipe, c: &mut Checks) {
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
pub(super) fn export(r: &Recipe, c: &mut Checks) {
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

/// Whether `t` is a Slurm time limit: `minutes`, `minutes:seconds`, `hours:minutes:seconds`,
/// `days-hours`, `days-hours:minutes`, `days-hours:minutes:seconds`, or `UNLIMITED`/`infinite`.
fn slurm_time_ok(t: &str) -> bool {
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
fn slurm_problems(s: &crate::recipe::SlurmSection) -> Vec<(&'static str, (String, String))> {
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
