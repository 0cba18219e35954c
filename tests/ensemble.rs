//! Teachers that are not transformers and teacher ensembles, through the whole pipeline on
//! `recipes/quick.toml`: a linear teacher, `[[teacher.members]]` of every kind, the member stages
//! shared with the baseline and the student, and the recipe's checks of members.

mod common;
use common::kdrun;
use serde_json::Value;
use std::path::Path;

/// Run `recipes/quick.toml` with `sets` in `store`; its results and what it printed.
fn run_in(store: &Path, sets: &[&str]) -> (Value, String) {
    let mut cmd = kdrun();
    cmd.args(["recipes/quick.toml", "--set"])
        .arg(format!("runtime.store={}", store.join("runs").display()))
        .arg("--set")
        .arg(format!("report.dir={}", store.join("reports").display()));
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let mut runs: Vec<_> = std::fs::read_dir(store.join("runs/quick"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    runs.sort();
    let text = std::fs::read_to_string(runs.last().unwrap().join("results.json")).unwrap();
    (serde_json::from_str(&text).unwrap(), stderr)
}

fn model<'a>(results: &'a Value, key: &str) -> &'a Value {
    results["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["key"] == key)
        .unwrap_or_else(|| panic!("no model {key} in {}", results["models"]))
}

/// How many stages of `name` the store holds.
fn stage_count(store: &Path, name: &str) -> usize {
    match std::fs::read_dir(store.join("runs/stages").join(name)) {
        // Stage folders only (not the keys' lock files, not unfinished `.` folders).
        Ok(dir) => dir
            .map(|e| e.unwrap())
            .filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.'))
            .count(),
        Err(_) => 0,
    }
}

#[test]
fn an_ensemble_of_two_identical_members_equals_the_member_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let common = ["distill.targets=\"logits\"", "distill.augment.n_iter=1"];
    let (alone, _) = run_in(
        tmp.path(),
        &[&["teacher.arch=\"linear\""], &common[..]].concat(),
    );
    let (pair, _) = run_in(
        tmp.path(),
        &[
            &[
                "teacher.members=[{arch=\"linear\"},{arch=\"linear\", weight=3.0}]",
                "teacher.combine=\"logits\"",
                "teacher.calibrate=false",
            ],
            &common[..],
        ]
        .concat(),
    );
    let (t, e) = (model(&alone, "teacher"), model(&pair, "teacher"));
    assert_eq!(t["predictions"], e["predictions"]);
    assert_eq!(t["report"], e["report"]);
    assert!(
        e["label"].as_str().unwrap().contains("ensemble of 2"),
        "{}",
        e["label"]
    );
    // The distilled student learns from the same soft targets, bit for bit (trained twice:
    // the ensemble's logits are a stage of their own).
    assert_eq!(stage_count(tmp.path(), "distilled"), 2);
    let losses = |r: &Value| -> Vec<(Value, Value)> {
        model(r, "distilled")["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["train_loss"].clone(), h["valid_accuracy"].clone()))
            .collect()
    };
    assert_eq!(losses(&alone), losses(&pair));
    for field in ["report", "predictions", "best_valid_accuracy"] {
        assert_eq!(
            model(&alone, "distilled")[field],
            model(&pair, "distilled")[field],
            "{field}"
        );
    }
    assert_eq!(alone["teacher_logit_rows"], pair["teacher_logit_rows"]);
    // One linear fit served the lone teacher, both members and the baseline row.
    assert_eq!(stage_count(tmp.path(), "baseline"), 1);
    assert_eq!(
        model(&pair, "teacher_1")["report"],
        model(&pair, "baseline")["report"]
    );
}

#[test]
fn an_ensemble_of_every_kind_of_teacher_runs_and_shares_its_members_stages() {
    let tmp = tempfile::tempdir().unwrap();
    let members = "teacher.members=[{arch=\"linear\"}, {arch=\"bert\", layers=1, hidden=16, \
                   heads=2, epochs=2, lr=1e-3, batch_size=16}, {arch=\"bilstm\", weight=0.5}]";
    let (r, out) = run_in(tmp.path(), &[members, "distill.augment.n_iter=2"]);
    let keys: Vec<&str> = r["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "teacher",
            "teacher_1",
            "teacher_2",
            "teacher_3",
            "student",
            "distilled",
            "baseline"
        ]
    );
    let ensemble = model(&r, "teacher");
    let label = ensemble["label"].as_str().unwrap();
    assert!(
        label.contains("ensemble of 3") && label.contains("1 : 1 : 0.5"),
        "{label}"
    );
    // The ensemble runs every member: its size is theirs summed.
    let params: u64 = (1..=3)
        .map(|i| {
            model(&r, &format!("teacher_{i}"))["params"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(ensemble["params"].as_u64().unwrap(), params);
    assert_eq!(ensemble["predictions"].as_array().unwrap().len(), 2810);
    // The BiLSTM member is the student alone; the linear member is the baseline.
    assert_eq!(
        model(&r, "teacher_3")["report"],
        model(&r, "student")["report"]
    );
    assert_eq!(stage_count(tmp.path(), "student"), 1);
    assert_eq!(stage_count(tmp.path(), "baseline"), 1);
    assert_eq!(stage_count(tmp.path(), "logits"), 3);
    assert_eq!(stage_count(tmp.path(), "ensemble"), 1);
    // Each member calibrated on the validation split: a temperature of its own.
    let ensemble_dir = std::fs::read_dir(tmp.path().join("runs/stages/ensemble"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    let fit: Value =
        serde_json::from_str(&std::fs::read_to_string(ensemble_dir.join("ensemble.json")).unwrap())
            .unwrap();
    let temps: Vec<f64> = fit["temperatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect();
    assert_eq!(temps.len(), 3);
    assert!(
        temps.iter().all(|t| *t > 0.02 && *t < 50.0 && *t != 1.0),
        "{temps:?}"
    );
    assert!(label.contains("calibrated"), "{label}");
    // Every member labelled the same synthetic sentences.
    assert!(r["transfer_set"].as_u64().unwrap() > 120);
    assert!(out.contains("teacher member 3 of 3: bilstm"), "{out}");
    let stages = r["stages"].as_object().unwrap();
    assert!(
        stages.keys().any(|k| k.starts_with("member 2: teacher")),
        "{stages:?}"
    );
    let page = std::fs::read_to_string(tmp.path().join("reports/quick/README.md")).unwrap();
    assert!(page.contains("Teacher member 2: BERT"), "{page}");

    // Another weighting: every member reused, only the ensemble and what follows recomputed.
    let (_, again) = run_in(
        tmp.path(),
        &[
            &members.replace("weight=0.5", "weight=2.0"),
            "distill.augment.n_iter=2",
        ],
    );
    assert!(again.contains("teacher: reused from the store"), "{again}");
    assert_eq!(
        again.matches("logits: reused from the store").count(),
        3,
        "{again}"
    );
    assert_eq!(stage_count(tmp.path(), "ensemble"), 2);
    assert_eq!(stage_count(tmp.path(), "teacher"), 1);
}

#[test]
fn log_prob_targets_are_the_linear_teachers_default_and_change_the_distilled_student() {
    let tmp = tempfile::tempdir().unwrap();
    let check = kdrun()
        .args([
            "check",
            "recipes/quick.toml",
            "--set",
            "teacher.arch=\"linear\"",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(text.contains("targets = \"log_probs\""), "{text}");
    let default = kdrun()
        .args(["check", "recipes/quick.toml"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&default.stdout).contains("targets = \"logits\""));
    // MSE on log-probabilities differs from MSE on the linear model's raw scores.
    let mse = ["teacher.arch=\"linear\"", "distill.soft_loss=\"mse\""];
    let (a, _) = run_in(tmp.path(), &mse);
    let (b, _) = run_in(
        tmp.path(),
        &[&mse[..], &["distill.targets=\"logits\""]].concat(),
    );
    assert_ne!(
        model(&a, "distilled")["history"],
        model(&b, "distilled")["history"]
    );
}

#[test]
fn members_are_checked_as_teachers_of_their_own() {
    let check = |sets: &[&str]| {
        let mut cmd = kdrun();
        cmd.args(["check", "recipes/quick.toml"]);
        for s in sets {
            cmd.args(["--set", s]);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = check(&["teacher.members=[{arch=\"linear\"}, {arch=\"bert\", heads=3}]"]);
    assert!(
        e.contains("teacher.members") && e.contains("member 2 (bert): heads"),
        "{e}"
    );
    let e = check(&["teacher.members=[{arch=\"linear\", weight=0.0}]"]);
    assert!(
        e.contains("member 1: weight a positive number, found 0"),
        "{e}"
    );
    let e = check(&["teacher.members=[{members=[{arch=\"linear\"}]}]"]);
    assert!(
        e.contains("member 1: a member with no members of its own"),
        "{e}"
    );
    let e = check(&["teacher.arch=\"linear\"", "teacher.pretrain.epochs=1"]);
    assert!(
        e.contains("teacher.pretrain.epochs") && e.contains("for a linear teacher"),
        "{e}"
    );
    let e = check(&["teacher.weight=2.0"]);
    assert!(
        e.contains("teacher.weight only inside [[teacher.members]]"),
        "{e}"
    );
    let e = check(&["teacher.arch=\"gpt\""]);
    assert!(e.contains("teacher.arch"), "{e}");
}

#[test]
fn textgcn_is_a_teacher_and_a_member_without_synthetic_sentences() {
    let tmp = tempfile::tempdir().unwrap();
    let gcn = [
        "textgcn.enabled=true",
        "textgcn.tokens=\"char\"",
        "textgcn.hidden=16",
        "textgcn.epochs=5",
    ];
    let (alone, _) = run_in(
        tmp.path(),
        &[&gcn[..], &["teacher.arch=\"textgcn\""]].concat(),
    );
    // The teacher is the TextGCN row's fit: same scores, one stage.
    assert_eq!(
        model(&alone, "teacher")["report"],
        model(&alone, "textgcn")["report"]
    );
    assert_eq!(stage_count(tmp.path(), "textgcn"), 1);
    assert_eq!(alone["teacher_logit_rows"], 120);
    let (pair, _) = run_in(
        tmp.path(),
        &[
            &gcn[..],
            &["teacher.members=[{arch=\"linear\"}, {arch=\"textgcn\"}]"],
        ]
        .concat(),
    );
    assert_eq!(
        model(&pair, "teacher_2")["report"],
        model(&alone, "textgcn")["report"]
    );
    assert_eq!(stage_count(tmp.path(), "textgcn"), 1);
    // With an augmented transfer set, the linear member alone labels the synthetic sentences.
    let (aug, _) = run_in(
        tmp.path(),
        &[
            &gcn[..],
            &[
                "teacher.members=[{arch=\"linear\"}, {arch=\"textgcn\"}]",
                "distill.augment.n_iter=2",
            ],
        ]
        .concat(),
    );
    assert!(aug["transfer_set"].as_u64().unwrap() > 120);
    assert_eq!(aug["teacher_logit_rows"], aug["transfer_set"]);
    // Alone it cannot label the augmented transfer set: said before anything runs.
    let out = kdrun()
        .args([
            "check",
            "recipes/quick.toml",
            "--set",
            "teacher.arch=\"textgcn\"",
        ])
        .args(["--set", "distill.augment.n_iter=2"])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && e.contains("distill.augment.n_iter"),
        "{e}"
    );
}

#[test]
fn the_teacher_is_distilled_onto_textgcn_too() {
    let tmp = tempfile::tempdir().unwrap();
    let sets = [
        "textgcn.enabled=true",
        "textgcn.distill=true",
        "textgcn.tokens=\"char\"",
        "textgcn.hidden=16",
        "textgcn.epochs=5",
        "teacher.arch=\"linear\"",
    ];
    let (r, _) = run_in(tmp.path(), &sets);
    let (plain, distilled) = (model(&r, "textgcn"), model(&r, "textgcn_distilled"));
    assert!(distilled["label"].as_str().unwrap().ends_with("distilled"));
    // Same graph, initialisation and epochs; another loss: other losses from the first epoch.
    assert_ne!(
        plain["history"][0]["train_loss"],
        distilled["history"][0]["train_loss"]
    );
    assert_eq!(stage_count(tmp.path(), "textgcn"), 1);
    assert_eq!(stage_count(tmp.path(), "textgcn_distilled"), 1);
    // Another teacher: only the distilled TextGCN is trained again.
    let (_, out) = run_in(
        tmp.path(),
        &[
            &sets[..5],
            &["teacher.members=[{arch=\"linear\"},{arch=\"bilstm\"}]"],
        ]
        .concat(),
    );
    assert!(out.contains("textgcn: reused from the store"), "{out}");
    assert_eq!(stage_count(tmp.path(), "textgcn"), 1);
    assert_eq!(stage_count(tmp.path(), "textgcn_distilled"), 2);
    let e = kdrun()
        .args([
            "check",
            "recipes/quick.toml",
            "--set",
            "textgcn.distill=true",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&e.stderr).contains("textgcn.distill"));
}
