//! `[teacher]`: its sizes and optimiser, `[teacher.pretrain]`, and an ensemble's members.

use super::checks::{missing_file, Checks};
use crate::recipe::sections::{PretrainObjective, Recipe, MLM_KEYS, PLM_KEYS};

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
