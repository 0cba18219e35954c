//! `kdrun bench`: the smoke run writes every workload, and its fixed shapes are the ones the
//! project states (burn's pin, the default recipe's sizes). Correctness only; no timing is judged.

mod common;
use common::kdrun;
use kdrun::bench::{default_student, default_teacher, workloads, BenchReport};
use kdrun::recipe::Recipe;
use std::path::Path;

#[test]
fn quick_bench_writes_every_workload() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("out/bench.json");
    let out = kdrun()
        .args(["bench", "--quick", "--backend", "cpu", "--out"])
        .arg(&json)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: BenchReport =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report.tool, "kdrun");
    assert!(report.quick);
    assert!(report.backend.starts_with("cpu"), "{}", report.backend);
    assert_eq!(report.version, env!("CARGO_PKG_VERSION"));
    let expected: Vec<String> = workloads(&Recipe::default(), false, true)
        .into_iter()
        .map(|w| w.name)
        .collect();
    let names: Vec<&str> = report.workloads.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, expected);
    for family in [
        "bert-base",
        "bert-small",
        "e5-small",
        "bilstm-ref",
        "default-bert",
        "default-bilstm",
    ] {
        for task in ["train", "infer"] {
            assert!(
                names.contains(&format!("{family}/{task}").as_str()),
                "{names:?}"
            );
        }
    }
    for w in &report.workloads {
        assert!(
            w.samples_per_s.is_finite() && w.samples_per_s > 0.0,
            "{}: {}",
            w.name,
            w.samples_per_s
        );
        assert!(w.params > 0 && w.median_ms > 0.0, "{w:?}");
        assert_eq!(w.warmup_ms.len(), 1, "{w:?}");
        assert_eq!(w.iterations_ms.len(), 1, "{w:?}");
        assert!(w.batch <= 8, "{w:?}");
    }
    // The table names every workload too.
    let stdout = String::from_utf8_lossy(&out.stdout);
    for n in &names {
        assert!(stdout.contains(n), "{n}: {stdout}");
    }
}

#[test]
fn burn_version_is_the_pinned_one() {
    let toml =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let pin = format!("burn = {{ version = \"={}\"", kdrun::bench::BURN_VERSION);
    assert!(toml.contains(&pin), "Cargo.toml does not pin {pin}");
}

#[test]
fn default_workloads_have_the_shapes_of_recipes_tnews_toml() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/tnews.toml");
    let tnews = kdrun::recipe::load_with_env(&path, &[], false)
        .unwrap()
        .recipe;
    let default = Recipe::default();
    assert_eq!(default_teacher(&tnews), default_teacher(&default));
    let (a, b) = (default_student(&tnews), default_student(&default));
    assert_eq!(
        (a.embedding_dim, a.hidden, a.fc_hidden, a.head, a.input),
        (b.embedding_dim, b.hidden, b.fc_hidden, b.head, b.input)
    );
    assert_eq!(tnews.data.max_len, default.data.max_len);
    assert_eq!(tnews.teacher.batch_size, default.teacher.batch_size);
    assert_eq!(tnews.student.batch_size, default.student.batch_size);
    assert_eq!(tnews.report.timing_batch, default.report.timing_batch);
}
