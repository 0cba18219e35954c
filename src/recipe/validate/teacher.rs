//! `[teacher]`: its sizes and optimiser, `[teacher.pretrain]`, and an ensemble's members.

use super::{missing_file, validate, Checks};
use crate::recipe::sections::{PretrainObjective, Recipe, TeacherArch, MLM_KEYS, PLM_KEYS};

/// `[teacher]`'s own sizes and optimiser settings.
pub(super) fn teacher(r: &Recipe, c: &mut Checks) {
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
    c.optim("teacher", t.optim(), true);
    c.check(
        "teacher.dropout",
        unit_open(t.dropout),
        "a probability in [0, 1)",
        t.dropout.to_string(),
    );

    if let crate::recipe::Freeze::AllButLast(k) = t.freeze {
        c.check(
            "teacher.freeze",
            k >= 1 && (!t.checkpoint.as_os_str().is_empty() || k <= t.layers),
            "{ all-but-last = K } with 1 ≤ K ≤ the number of layers",
            format!("K = {k}"),
        );
    }
}

/// `[teacher.pretrain]`: the keys of the teacher's objective, their ranges, the extra text.
pub(super) fn pretrain(r: &Recipe, c: &mut Checks) {
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
        c.optim("teacher.pretrain", p.optim(), false);
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

/// The teacher's kind and an ensemble's members: the linear and BiLSTM teachers are never
/// further pre-trained, the linear one needs n-grams, and every member is a valid teacher
/// section of its own (its problems named by member number).
pub(super) fn teachers(r: &Recipe) -> Vec<(&'static str, String)> {
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
