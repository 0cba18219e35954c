//! TextGCN through the command line on `recipes/quick.toml` (its row, its stage folder, its notes,
//! reuse from the store) and the checks of its recipe keys.

mod common;
use common::kdrun;
use kdrun::recipe::{load_with_env, parse_set};
use std::path::Path;

fn run_quick(tmp: &Path, sets: &[&str]) -> kdrun::store::RunResults {
    let mut cmd = kdrun();
    cmd.arg("recipes/quick.toml");
    let store = format!("runtime.store={}", tmp.join("runs").display());
    let reports = format!("report.dir={}", tmp.join("reports").display());
    for s in [store.as_str(), reports.as_str()].iter().chain(sets) {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut runs: Vec<_> = std::fs::read_dir(tmp.join("runs/quick"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    runs.sort();
    kdrun::store::RunResults::load(&runs.last().unwrap().join("results.json")).unwrap()
}

#[test]
fn quick_run_with_textgcn_has_its_row_stage_and_notes() {
    let tmp = tempfile::tempdir().unwrap();
    let sets = [
        "textgcn.enabled=true",
        "textgcn.tokens=\"char\"",
        "textgcn.hidden=16",
        "textgcn.epochs=5",
        "textgcn.min_count=1",
    ];
    let results = run_quick(tmp.path(), &sets);
    let row = results
        .models
        .iter()
        .find(|m| m.key == "textgcn")
        .expect("a textgcn row");
    assert_eq!(
        row.label,
        "TextGCN (characters, window 20, 2 layers, hidden 16)"
    );
    let test = results.test_labels.len();
    assert_eq!(row.predictions.len(), test);
    assert_eq!(row.report.confusion.iter().flatten().sum::<usize>(), test);
    assert!((0.0..=1.0).contains(&row.report.accuracy));
    assert!(!row.history.is_empty() && row.history.len() <= 5);
    assert!(row.best_epoch >= 1 && row.best_epoch <= row.history.len());
    assert!(row.timing.samples_per_sec > 0.0 && row.timing.samples == test);

    // The graph: every document of the three splits is a node, and W1 has a row per node.
    let dir = Path::new(&results.stages["textgcn"]).to_path_buf();
    let graph: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("graph.json")).unwrap()).unwrap();
    let docs: usize = [
        &results.counts.train,
        &results.counts.valid,
        &results.counts.test,
    ]
    .iter()
    .map(|c| c.iter().sum::<usize>())
    .sum();
    assert_eq!(graph["size"]["docs"].as_u64().unwrap() as usize, docs);
    let nodes = graph["nodes"].as_u64().unwrap() as usize;
    assert!(nodes > docs, "{graph}");
    assert_eq!(row.params, nodes * 16 + 16 * results.classes.len());
    assert!(dir.join("textgcn.bpk").is_file());
    assert!(
        results
            .notes
            .iter()
            .any(|n| n.starts_with(&format!("TextGCN: graph of {nodes} nodes"))),
        "{:?}",
        results.notes
    );
    let csv = std::fs::read_to_string(tmp.path().join("reports/quick/comparison.csv")).unwrap();
    assert!(
        csv.lines().any(|l| l.starts_with("\"TextGCN (characters")),
        "{csv}"
    );

    // A second run reuses the stage: the same numbers.
    let again = run_quick(tmp.path(), &sets);
    let row2 = again.models.iter().find(|m| m.key == "textgcn").unwrap();
    assert_eq!(row2.predictions, row.predictions);
    assert_eq!(again.stages["textgcn"], results.stages["textgcn"]);
}

#[test]
fn textgcn_keys_are_checked_when_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("g.toml");
    std::fs::write(
        &p,
        "[textgcn]\nenabled = true\nwindow = 1\nhidden = 0\ndropout = 1.0\nlr = -0.1\npatience = 0\n",
    )
    .unwrap();
    let err = load_with_env(&p, &[], false).unwrap_err();
    let text = err.to_string();
    assert_eq!(err.problems.len(), 5, "{text}");
    for key in [
        "textgcn.window",
        "textgcn.hidden",
        "textgcn.dropout",
        "textgcn.lr",
        "textgcn.patience",
    ] {
        assert!(text.contains(&format!("key `{key}`")), "{key}: {text}");
    }
    // Off (the default), its keys are not checked; the defaults are the paper's.
    let off = vec![parse_set("textgcn.enabled=false").unwrap()];
    let r = load_with_env(&p, &off, false).unwrap().recipe;
    assert!(!r.textgcn.enabled);
    std::fs::write(&p, "").unwrap();
    let r = load_with_env(&p, &[], false).unwrap().recipe.textgcn;
    assert!(!r.enabled);
    assert_eq!(
        (r.window, r.hidden, r.epochs, r.patience),
        (20, 200, 200, 10)
    );
    assert_eq!((r.dropout, r.lr), (0.5, 0.02));
    let bad = vec![parse_set("textgcn.tokens=\"bytes\"").unwrap()];
    let err = load_with_env(&p, &bad, false).unwrap_err().to_string();
    assert!(err.contains("textgcn.tokens"), "{err}");
    // The shipped recipe turns it on, with the paper's settings.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let r = load_with_env(&root.join("recipes/tnews-textgcn.toml"), &[], false)
        .unwrap()
        .recipe;
    assert!(r.textgcn.enabled && r.baseline.enabled);
    assert_eq!((r.textgcn.window, r.textgcn.hidden), (20, 200));
}
