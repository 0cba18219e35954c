//! The binary as a user meets it: help, check, exit codes, and one whole tiny run.

mod common;
use common::{assert_same_trials, kdrun, quick_cmd};
use std::path::Path;
use std::process::Command;

#[test]
fn help_lists_commands() {
    let out = kdrun().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("check") && text.contains("run") && text.contains("--set"),
        "{text}"
    );
    let out = kdrun().args(["check", "--help"]).output().unwrap();
    assert!(out.status.success());
}

#[test]
fn check_prints_the_resolved_recipe() {
    let out = kdrun()
        .args([
            "check",
            "recipes/tnews.toml",
            "--set",
            "teacher.epochs=9",
            "--backend",
            "cpu",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("epochs = 9"), "{text}");
    assert!(text.contains("backend = \"cpu\""), "{text}");
    assert!(text.contains("name = \"tnews\""), "{text}");
    // Paths are resolved (absolute).
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        text.contains(&root.join("data/tnews/train.json").display().to_string()),
        "{text}"
    );
}

#[test]
fn check_fails_with_exit_1_on_a_bad_recipe() {
    let out = kdrun()
        .args(["check", "recipes/tnews.toml", "--set", "student.hiden=3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("student.hiden") && err.contains("student.hidden"),
        "{err}"
    );
    let out = kdrun()
        .args(["check", "no/such/recipe.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn missing_data_file_is_a_clear_error() {
    let store = tempfile::tempdir().unwrap();
    let out = kdrun()
        .args([
            "recipes/quick.toml",
            "--set",
            "data.train=nowhere/train.json",
        ])
        .args([
            "--set",
            &format!("runtime.store={}", store.path().display()),
        ])
        .args(["--set", &format!("report.dir={}", store.path().display())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nowhere/train.json") && err.contains("not found"),
        "{err}"
    );
    assert!(err.contains("data.train"), "{err}");
    // Found before anything is made: no run folder.
    assert!(!store.path().join("quick").exists());
}

#[test]
fn check_finds_missing_and_misplaced_files() {
    let out = kdrun()
        .args([
            "check",
            "recipes/quick.toml",
            "--set",
            "data.test=recipes",
            "--set",
            "student.vectors=nowhere/vectors.txt",
            "--set",
            "teacher.checkpoint=recipes/quick.toml",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "data.test",
        "found a folder",
        "student.vectors",
        "nowhere/vectors.txt",
        "teacher.checkpoint",
    ] {
        assert!(err.contains(expected), "{expected}: {err}");
    }
}

#[test]
fn quick_recipe_runs_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, reports) = (tmp.path().join("runs"), tmp.path().join("reports"));
    let out = quick_cmd(tmp.path(), &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");

    let dir = reports.join("quick");
    for f in [
        "index.html",
        "README.md",
        "comparison.csv",
        "per_class_teacher.csv",
        "confusion_distilled.csv",
        "data.csv",
        "history.csv",
    ] {
        assert!(dir.join(f).is_file(), "missing {f}");
    }
    // The comparison table holds the three networks' rows and the linear baseline's, with
    // accuracies in [0, 1].
    let csv = std::fs::read_to_string(dir.join("comparison.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 4, "{csv}");
    for (row, name) in rows.iter().zip([
        "Teacher",
        "Student alone",
        "\"Distilled",
        "\"Baseline (TF-IDF char 1–2",
    ]) {
        assert!(row.starts_with(name), "{row}");
        // The label may be quoted (it holds a comma); accuracy is the field after it.
        let after_label = row
            .rsplit_once("\",")
            .map(|(_, r)| r)
            .unwrap_or_else(|| row.split_once(',').unwrap().1);
        let acc: f64 = after_label.split(',').next().unwrap().parse().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{row}");
    }
    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(
        html.contains("Teacher (BERT)")
            && html.contains("macro avg")
            && html.contains("weighted avg")
    );
    // Self-contained: no address but the SVG namespace of the inline plots.
    let without_ns = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    assert!(
        !without_ns.contains("http://") && !without_ns.contains("https://"),
        "self-contained page"
    );
    assert!(html.contains("<svg"), "inline plots");
    let md = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(md.contains("| story |") || md.contains("| story "), "{md}");

    // The run folder keeps the resolved recipe and results; artifacts live in the stage folders.
    let runs: Vec<_> = std::fs::read_dir(store.join("quick")).unwrap().collect();
    assert_eq!(runs.len(), 1);
    let run = runs[0].as_ref().unwrap().path();
    for f in [
        "recipe.toml",
        "results.json",
        "vocab.txt",
        "student_vocab.txt",
    ] {
        assert!(run.join(f).is_file(), "missing {f} in {}", run.display());
    }
    let results = kdrun::store::RunResults::load(&run.join("results.json")).unwrap();
    let stage = |name: &str| std::path::PathBuf::from(&results.stages[name]);
    for (name, file) in [
        ("teacher", "teacher.bpk"),
        ("teacher", "config.json"),
        ("teacher", "teacher_hf/tokenizer.json"),
        ("teacher", "teacher_hf/tokenizer_config.json"),
        ("logits", "teacher_logits.safetensors"),
        ("student", "student.bpk"),
        ("distilled", "student.bpk"),
        ("data", "splits.json"),
        ("baseline", "linear.safetensors"),
        ("baseline_eval", "result.json"),
    ] {
        assert!(
            stage(name).join(file).is_file(),
            "missing {file} in stage {name}"
        );
        assert!(stage(name).join("manifest.json").is_file());
    }
    let logits =
        kdrun::distill::TeacherLogits::load(&stage("logits").join("teacher_logits.safetensors"))
            .unwrap();
    // 30 per class × 5 classes, 20% held out: 120 training examples have logits.
    assert_eq!((logits.len(), logits.classes), (120, 5));
}

fn results_of(store: &Path, name: &str) -> kdrun::store::RunResults {
    let runs: Vec<_> = std::fs::read_dir(store.join(name))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    kdrun::store::RunResults::load(&runs[0].join("results.json")).unwrap()
}

fn quick(tmp: &Path, sets: &[&str]) -> (kdrun::store::RunResults, std::path::PathBuf) {
    let out = quick_cmd(tmp, sets).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = results_of(&tmp.join("runs"), "quick");
    let run = std::path::PathBuf::from(&results.run_dir);
    (results, run)
}

#[test]
fn students_with_vectors_words_and_an_augmented_transfer_set() {
    // Characters with the embedded pretrained vectors, and Tang's augmentation.
    let tmp = tempfile::tempdir().unwrap();
    let (r, run) = quick(
        tmp.path(),
        &[
            "student.vectors=data/embeddings/tencent_char200_tnews5.vec.gz",
            "student.embedding_dim=200",
            "distill.augment.n_iter=3",
        ],
    );
    let cov = r.vectors_coverage.expect("coverage is reported");
    assert!(cov.types_found > cov.types / 2, "{cov:?}");
    assert!(
        r.transfer_set > 120,
        "synthetic examples join the 120 training ones: {}",
        r.transfer_set
    );
    let _ = run;
    let synthetic =
        std::fs::read_to_string(std::path::Path::new(&r.stages["logits"]).join("transfer_set.csv"))
            .unwrap();
    assert_eq!(synthetic.lines().count() - 1, r.transfer_set - 120);
    assert!(r
        .models
        .iter()
        .all(|m| (0.0..=1.0).contains(&m.report.accuracy)));

    // Words, averaged into one step, with the reference's max-over-time head.
    let tmp = tempfile::tempdir().unwrap();
    let (r, run) = quick(
        tmp.path(),
        &[
            "student.tokens=word",
            "student.input=mean",
            "student.head=seed",
        ],
    );
    assert_eq!(r.student_tokens, "word");
    let vocab = std::fs::read_to_string(run.join("student_vocab.txt")).unwrap();
    assert!(
        vocab.lines().any(|w| w.chars().count() > 1),
        "multi-character words"
    );
}

#[test]
fn an_exported_teacher_is_a_checkpoint_for_the_next_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, _) = quick(&tmp.path().join("a"), &[]);
    let exported = std::path::Path::new(&a.stages["teacher"]).join("teacher_hf");
    for f in ["config.json", "vocab.txt", "model.safetensors"] {
        assert!(exported.join(f).is_file(), "{f}");
    }
    // Start from it, further pre-train with whole-word masking, fine-tune the last layer only.
    let (r, _) = quick(
        &tmp.path().join("b"),
        &[
            &format!("teacher.checkpoint={}", exported.display()),
            "teacher.pretrain.steps=3",
            "teacher.pretrain.whole_word=true",
            "teacher.freeze={all-but-last=1}",
        ],
    );
    let p = r.pretrain.expect("pre-training is reported");
    assert_eq!(p.steps, 3);
    assert!(p.before.predictions > 0 && p.after.predictions == p.before.predictions);
    let keys: Vec<&str> = r.models.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "teacher",
            "teacher_base",
            "student",
            "distilled",
            "baseline"
        ]
    );
    let t = &r.models[0];
    assert!(
        t.trainable_params < t.params,
        "frozen layers: {} of {}",
        t.trainable_params,
        t.params
    );
    assert!(
        r.notes.iter().any(|n| n.contains("masked-LM head")),
        "{:?}",
        r.notes
    );
}

#[test]
fn an_xlnet_teacher_pretrains_with_plm_and_exports_a_checkpoint() {
    // From scratch on kdrun's characters, further pre-trained with permutation-LM.
    let tmp = tempfile::tempdir().unwrap();
    let (a, _) = quick(
        &tmp.path().join("a"),
        &["teacher.arch=xlnet", "teacher.pretrain.steps=3"],
    );
    let p = a.pretrain.expect("pre-training is reported");
    assert_eq!(p.objective, "permutation-LM");
    assert!(p.before.predictions > 0 && p.after.predictions == p.before.predictions);
    let labels: Vec<&str> = a.models.iter().map(|m| m.label.as_str()).collect();
    assert!(labels[0].contains("XLNet"), "{labels:?}");
    assert_eq!(a.models.len(), 5, "{labels:?}");
    let exported = std::path::Path::new(&a.stages["teacher"]).join("teacher_hf");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(exported.join(f).is_file(), "{f}");
    }
    let config = std::fs::read_to_string(exported.join("tokenizer_config.json")).unwrap();
    assert!(config.contains("\"padding_side\": \"left\""), "{config}");
    assert!(config.contains("token_type_ids"), "{config}");
    // The exported folder is an XLNet checkpoint: fine-tune its last layer only.
    let (b, _) = quick(
        &tmp.path().join("b"),
        &[
            "teacher.arch=xlnet",
            &format!("teacher.checkpoint={}", exported.display()),
            "teacher.freeze={all-but-last=1}",
        ],
    );
    let t = &b.models[0];
    assert!(
        t.trainable_params < t.params,
        "{} of {}",
        t.trainable_params,
        t.params
    );
    assert_eq!(t.params, a.models[0].params);
    // Naming the wrong architecture for it is an error that says which one it is.
    let out = quick_cmd(
        &tmp.path().join("c"),
        &[&format!("teacher.checkpoint={}", exported.display())],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    // Said by the pre-flight, before any folder is made.
    assert!(
        stderr.contains("teacher.arch")
            && stderr.contains("expected \"xlnet\" (the architecture of the checkpoint")
            && stderr.contains("found \"bert\""),
        "{stderr}"
    );
}

#[test]
fn check_lists_the_trials_of_a_sweep() {
    let out = kdrun()
        .args([
            "check",
            "recipes/quick.toml",
            "--set",
            "distill.temperature=1,2",
            "--set",
            "runtime.seed=1,2",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("# 4 trial(s), cartesian:"), "{text}");
    assert!(
        text.contains("distill.temperature=2, runtime.seed=1"),
        "{text}"
    );
    let out = kdrun()
        .args([
            "check",
            "recipes/quick.toml",
            "--set",
            "distill.temprature=1,2",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("distill.temperature"));
}

fn count_stages(store: &Path, stage: &str) -> usize {
    std::fs::read_dir(store.join("stages").join(stage))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().join("manifest.json").is_file())
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_sweep_trains_the_teacher_once_and_reports_every_trial() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, reports) = (tmp.path().join("runs"), tmp.path().join("reports"));
    let out = quick_cmd(tmp.path(), &["distill.temperature=1,2,4"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(count_stages(&store, "teacher"), 1);
    assert_eq!(count_stages(&store, "logits"), 1);
    assert_eq!(count_stages(&store, "student"), 1);
    assert_eq!(count_stages(&store, "distilled"), 3);
    let trials = std::fs::read_to_string(reports.join("quick/trials.csv")).unwrap();
    assert_eq!(trials.lines().count(), 4, "{trials}");
    assert!(trials
        .lines()
        .next()
        .unwrap()
        .contains("distill.temperature"));
    assert!(reports.join("quick/trials.parquet").is_file());
    let html = std::fs::read_to_string(reports.join("quick/index.html")).unwrap();
    assert!(
        html.contains("<svg") && html.contains("class=\"best\""),
        "plots and the best trial"
    );
    for t in 1..=3 {
        assert!(reports
            .join(format!("quick/trial-{t:03}/index.html"))
            .is_file());
    }
    // Published pages name the sweep and its trials relative to the store, never by this
    // machine's absolute path.
    let tmp_path = tmp.path().display().to_string();
    for page in [
        "index.html",
        "README.md",
        "trial-002/index.html",
        "trial-002/README.md",
    ] {
        let text = std::fs::read_to_string(reports.join("quick").join(page)).unwrap();
        assert!(!text.contains(&tmp_path), "{page} names {tmp_path}");
        // Nor the data's folder on this machine, in the recipe the pages show.
        let checkout = env!("CARGO_MANIFEST_DIR");
        assert!(!text.contains(checkout), "{page} names {checkout}");
    }
    assert!(
        std::fs::read_to_string(reports.join("quick/trial-002/README.md"))
            .unwrap()
            .contains("Run folder: `quick/"),
        "the trial's run folder, relative to the store"
    );
    // A trial reuses what earlier trials stored, yet ends exactly as a run of its own
    // settings in an empty store.
    let alone = tempfile::tempdir().unwrap();
    let (single, _) = quick(alone.path(), &["distill.temperature=2"]);
    let trial: kdrun::store::RunResults = serde_json::from_str(
        &std::fs::read_to_string(
            std::fs::read_dir(store.join("quick"))
                .unwrap()
                .flatten()
                .next()
                .unwrap()
                .path()
                .join("trial-002/results.json"),
        )
        .unwrap(),
    )
    .unwrap();
    for key in ["teacher", "student", "distilled"] {
        let (a, b) = (single.model(key).unwrap(), trial.model(key).unwrap());
        assert_eq!(a.report, b.report, "{key}");
        assert_eq!(a.predictions, b.predictions, "{key}");
        let losses = |m: &kdrun::store::ModelResult| {
            m.history.iter().map(|h| h.train_loss).collect::<Vec<_>>()
        };
        assert_eq!(losses(a), losses(b), "{key}: training went differently");
    }
}

#[test]
fn a_failing_trial_is_recorded_and_the_sweep_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let reports = tmp.path().join("reports");
    let out = quick_cmd(tmp.path(), &["student.lr=0.005,1e30"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trials = std::fs::read_to_string(reports.join("quick/trials.csv")).unwrap();
    let rows: Vec<&str> = trials.lines().skip(1).collect();
    assert!(rows[0].ends_with(",ok"), "{trials}");
    assert!(
        rows[1].contains("failed") && rows[1].contains("diverged"),
        "{trials}"
    );
}

/// quick.toml with enough student epochs to be caught mid-training.
fn slow_quick(tmp: &Path) -> Command {
    quick_cmd(tmp, &["student.epochs=150"])
}

fn wait_for(what: &str, mut found: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !found() {
        assert!(
            start.elapsed().as_secs() < 300,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Whether process `pid` is writing the student's stage (its temporary folder exists).
fn student_in_progress(store: &Path, pid: u32) -> bool {
    store
        .join("stages/student")
        .read_dir()
        .map(|d| {
            d.filter_map(|e| e.ok()).any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .ends_with(&format!(".tmp-{pid}"))
            })
        })
        .unwrap_or(false)
}

fn accuracies(store: &Path) -> Vec<f64> {
    let mut runs: Vec<_> = std::fs::read_dir(store.join("quick"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("results.json").is_file())
        .collect();
    runs.sort();
    let r = kdrun::store::RunResults::load(&runs.last().unwrap().join("results.json")).unwrap();
    r.models.iter().map(|m| m.report.accuracy).collect()
}

#[test]
fn an_interrupted_run_resumes_without_retraining_the_teacher() {
    let tmp = tempfile::tempdir().unwrap();
    // The reference: one uninterrupted run.
    let reference = tmp.path().join("ref");
    let out = slow_quick(&reference).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = accuracies(&reference.join("runs"));

    let store = tmp.path().join("runs");
    // Killed (SIGKILL) while the student trains: the teacher's stage is finished, the student's
    // is a temporary folder.
    let mut child = slow_quick(tmp.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_for("the student to start", || student_in_progress(&store, pid));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(count_stages(&store, "teacher"), 1);
    assert_eq!(count_stages(&store, "student"), 0);

    // Ctrl-C (SIGINT) while the student trains again: exit 130, nothing half-written left.
    let child = slow_quick(tmp.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_for("the student to start again", || {
        student_in_progress(&store, pid)
    });
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !student_in_progress(&store, pid),
        "Ctrl-C cleans up the unfinished stage"
    );
    assert!(!store.join(".lock").exists(), "the lock is released");

    // The same command again finishes, reusing the teacher.
    let out = slow_quick(tmp.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("teacher: reused"), "{stderr}");
    assert_eq!(count_stages(&store, "teacher"), 1);
    assert_eq!(
        accuracies(&store),
        want,
        "same results as the uninterrupted run"
    );
}

#[test]
fn the_baseline_can_be_turned_off_changed_and_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let (off, _) = quick(&tmp.path().join("off"), &["baseline.enabled=false"]);
    let keys: Vec<&str> = off.models.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys, ["teacher", "student", "distilled"]);
    assert!(!off.stages.contains_key("baseline"), "{:?}", off.stages);

    // A linear SVM over character and jieba word n-grams, C chosen from two values.
    let sets = [
        "baseline.model=svm",
        "baseline.word_ngrams=[1, 2]",
        "baseline.c=[0.1, 1.0]",
    ];
    let (r, _) = quick(&tmp.path().join("svm"), &sets);
    let b = r.model("baseline").expect("a baseline row");
    assert_eq!(b.label, "Baseline (TF-IDF char 1–2 + word 1–2, linear SVM)");
    assert_eq!(b.predictions.len(), r.test_labels.len());
    assert!(b.params > 0 && b.timing.samples_per_sec > 0.0);
    let report = tmp.path().join("svm/reports/quick");
    let csv = std::fs::read_to_string(report.join("comparison.csv")).unwrap();
    assert!(csv.contains("linear SVM"), "{csv}");
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(
        html.contains("Baseline (TF-IDF"),
        "the baseline is on the page"
    );
    let model = kdrun::models::linear::LinearModel::load(
        &std::path::Path::new(&r.stages["baseline"]).join("linear.safetensors"),
    )
    .unwrap();
    assert!(model.c == 0.1 || model.c == 1.0, "{}", model.c);

    // The same recipe again in the same store: the baseline comes from the store.
    let out = quick_cmd(&tmp.path().join("svm"), &sets).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("baseline: reused"), "{stderr}");
    assert!(stderr.contains("baseline_eval: reused"), "{stderr}");
}

/// Each trial's results of the (only) sweep in `store`, by trial number.
/// The one sweep folder of the quick recipe in `store`.
fn only_sweep(store: &Path) -> std::path::PathBuf {
    let sweeps: Vec<_> = std::fs::read_dir(store.join("quick"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(sweeps.len(), 1, "{sweeps:?}");
    sweeps[0].clone()
}

fn trial_results(store: &Path, trials: usize) -> Vec<kdrun::store::RunResults> {
    let sweeps: Vec<_> = std::fs::read_dir(store.join("quick"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("sweep.json").is_file())
        .collect();
    assert_eq!(sweeps.len(), 1, "{sweeps:?}");
    (1..=trials)
        .map(|t| {
            kdrun::store::RunResults::load(&sweeps[0].join(format!("trial-{t:03}/results.json")))
                .unwrap()
        })
        .collect()
}

#[test]
fn a_sweep_with_two_workers_ends_bit_for_bit_as_the_sequential_one() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = "distill.temperature=1,2,3,4";
    let (seq, par) = (tmp.path().join("seq"), tmp.path().join("par"));
    let out = quick_cmd(&seq, &[sweep]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = quick_cmd(&par, &[sweep])
        .args(["--jobs", "2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("4 trials, 2 at once"), "{stderr}");
    // Every stage the trials share was computed before they started: no worker waited for one.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("waiting for stage") && !stderr.contains("waiting for stage"),
        "{stdout}{stderr}"
    );

    let b = trial_results(&par.join("runs"), 4);
    assert_same_trials(&trial_results(&seq.join("runs"), 4), &b);
    // The shared stages were computed once, before the workers: every worker reused them.
    let store = par.join("runs");
    assert_eq!(count_stages(&store, "data"), 1);
    assert_eq!(count_stages(&store, "teacher"), 1);
    assert_eq!(count_stages(&store, "logits"), 1);
    assert_eq!(count_stages(&store, "student"), 1);
    assert_eq!(count_stages(&store, "distilled"), 4);
    for t in 1..=4 {
        for stage in ["teacher", "logits", "student"] {
            let line = format!("[trial {t}] {stage}: reused from the store");
            assert!(stderr.contains(&line), "no `{line}` in\n{stderr}");
        }
    }
    let teacher_dirs: std::collections::BTreeSet<_> =
        b.iter().map(|r| r.stages["teacher"].clone()).collect();
    assert_eq!(teacher_dirs.len(), 1, "{teacher_dirs:?}");
}

#[test]
fn two_runs_at_once_on_one_store_share_the_teacher() {
    let tmp = tempfile::tempdir().unwrap();
    // A teacher slow enough that the second run arrives while the first one trains it.
    let spawn = |t: &str| {
        quick_cmd(
            tmp.path(),
            &["teacher.epochs=30", &format!("distill.temperature={t}")],
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
    };
    let (a, b) = (spawn("2"), spawn("3"));
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let stderrs: Vec<String> = outs
        .iter()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .collect();
    for (o, e) in outs.iter().zip(&stderrs) {
        assert!(o.status.success(), "{e}");
    }
    let store = tmp.path().join("runs");
    assert_eq!(count_stages(&store, "teacher"), 1);
    assert_eq!(count_stages(&store, "distilled"), 2);
    // One trained the teacher; the other waited for it, then reused it.
    let reused: Vec<bool> = stderrs
        .iter()
        .map(|e| e.contains("teacher: reused from the store"))
        .collect();
    assert_eq!(reused.iter().filter(|r| **r).count(), 1, "{stderrs:?}");
    let waiter = &stderrs[reused.iter().position(|r| *r).unwrap()];
    assert!(
        waiter.contains("waiting for stage teacher/")
            && waiter.contains("(being computed by another kdrun)"),
        "{waiter}"
    );
    // Two run folders (started in the same second, yet distinct), each finished.
    let runs: Vec<_> = std::fs::read_dir(store.join("quick"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("results.json").is_file())
        .collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    // Nothing half-written left, no lock holder: the next run could take any stage.
    let stages = kdrun::store::stage::Stages::new(&store);
    assert_eq!(stages.clean_stale().unwrap(), 0);
}

/// A stand-in `sbatch` on PATH that logs its arguments to `log` and answers job ids 101, 102, ….
fn fake_sbatch(dir: &Path, log: &Path) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("sbatch");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\necho $((100 + $(wc -l < '{}')))\n",
            log.display(),
            log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap())
}

#[test]
fn slurm_dry_run_prints_the_scripts_and_submits_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("sbatch.log");
    let path = fake_sbatch(tmp.path(), &log);
    let out = quick_cmd(tmp.path(), &["distill.temperature=1,2,3,4"])
        .args([
            "--executor",
            "slurm",
            "--partition",
            "debug",
            "--time",
            "1:00:00",
        ])
        .args(["--array-limit", "2", "--gpus-per-task", "1", "--dry-run"])
        .env("PATH", &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!log.exists(), "sbatch was called");
    for want in [
        "#SBATCH --array=1-4%2",
        "#SBATCH --partition=debug",
        "#SBATCH --time=1:00:00",
        "#SBATCH --gpus-per-task=1",
        "--trial \"$SLURM_ARRAY_TASK_ID\"",
        "--shared-stages",
        "--sweep-report",
        "'distill.temperature=1,2,3,4'",
        "dry run: nothing submitted",
    ] {
        assert!(stdout.contains(want), "no `{want}` in\n{stdout}");
    }
    // The scripts are in the sweep's run folder; no stage was computed.
    let sweeps: Vec<_> = std::fs::read_dir(tmp.path().join("runs/quick"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(sweeps.len(), 1);
    for f in ["shared.sbatch", "trials.sbatch", "report.sbatch"] {
        assert!(sweeps[0].join(f).is_file(), "{f}");
    }
    // The shared stages and the trials get the GPU; the report job renders pages without one.
    let gpus = |f: &str| {
        std::fs::read_to_string(sweeps[0].join(f))
            .unwrap()
            .contains("#SBATCH --gpus-per-task=1\n")
    };
    assert!(gpus("shared.sbatch") && gpus("trials.sbatch") && !gpus("report.sbatch"));
    assert_eq!(count_stages(&tmp.path().join("runs"), "teacher"), 0);
}

#[test]
fn slurm_submits_shared_job_then_array_then_report() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("sbatch.log");
    let path = fake_sbatch(tmp.path(), &log);
    let out = quick_cmd(tmp.path(), &["distill.temperature=1,2"])
        .args(["--executor", "slurm"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(calls[0].ends_with("shared.sbatch") && !calls[0].contains("dependency"));
    assert!(calls[1].contains("--dependency=afterok:101") && calls[1].ends_with("trials.sbatch"));
    assert!(calls[1].contains("--kill-on-invalid-dep=yes"));
    assert!(calls[2].contains("--dependency=afterany:102") && calls[2].ends_with("report.sbatch"));
}

#[test]
fn the_slurm_jobs_run_by_hand_make_the_sweep() {
    // What the three jobs run, in order, without Slurm: shared stages, each trial, the report.
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("sbatch.log");
    let path = fake_sbatch(tmp.path(), &log);
    let sweep = "distill.temperature=1,2";
    let out = quick_cmd(tmp.path(), &[sweep])
        .args(["--executor", "slurm", "--dry-run"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let sweep_dir = std::fs::read_dir(tmp.path().join("runs/quick"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    {
        let st = Command::new("bash")
            .arg(sweep_dir.join("shared.sbatch"))
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
    }
    assert_eq!(count_stages(&tmp.path().join("runs"), "teacher"), 1);
    assert_eq!(count_stages(&tmp.path().join("runs"), "distilled"), 0);
    let status = |want: &str| {
        let out = kdrun()
            .arg("status")
            .arg(tmp.path().join("runs"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(want), "no `{want}` in\n{text}");
    };
    status(": 0 done, 0 running, 0 failed, 0 interrupted, 2 pending");
    for task in ["1", "2"] {
        let st = Command::new("bash")
            .arg(sweep_dir.join("trials.sbatch"))
            .env("SLURM_ARRAY_TASK_ID", task)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
    }
    let st = Command::new("bash")
        .arg(sweep_dir.join("report.sbatch"))
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let results = kdrun::store::SweepResults::load(&sweep_dir.join("sweep.json")).unwrap();
    assert_eq!(results.trials.len(), 2);
    assert!(results.trials.iter().all(|t| t.results.is_some()));
    assert_eq!(count_stages(&tmp.path().join("runs"), "teacher"), 1);
    assert_eq!(count_stages(&tmp.path().join("runs"), "distilled"), 2);
    assert!(tmp.path().join("reports/quick/index.html").is_file());
    status(" (finished): 2 done, 0 running, 0 failed, 0 interrupted, 0 pending");
}

/// A one-node Slurm cluster on localhost for one test: munged, slurmctld and slurmd started from
/// a config written into `dir` (its own munge key and socket, state, spool, logs and two free
/// ports), so nothing of the machine's own Slurm or munge set-up is used or changed. Dropping it
/// cancels what is still queued and stops the three daemons.
struct SlurmCluster {
    dir: std::path::PathBuf,
    conf: std::path::PathBuf,
    daemons: Vec<(&'static str, std::process::Child)>,
    /// slurmctld answered: jobs may have been queued.
    up: bool,
}

impl SlurmCluster {
    /// Start the daemons and wait until the node is idle; why not, if they cannot start here.
    fn start(dir: &Path) -> Result<SlurmCluster, String> {
        for tool in [
            "munged",
            "slurmctld",
            "slurmd",
            "sbatch",
            "squeue",
            "sinfo",
            "scancel",
        ] {
            let found = std::env::var_os("PATH").is_some_and(|p| {
                std::env::split_paths(&p)
                    .chain([Path::new("/usr/sbin").to_path_buf()])
                    .any(|d| d.join(tool).is_file())
            });
            if !found {
                return Err(format!(
                    "`{tool}` is not installed (Debian: apt-get install slurm-wlm munge)"
                ));
            }
        }
        let sbin = |tool: &str| {
            let p = Path::new("/usr/sbin").join(tool);
            if p.is_file() {
                p
            } else {
                std::path::PathBuf::from(tool)
            }
        };
        let output = |c: &mut Command| -> Result<String, String> {
            let o = c.output().map_err(|e| format!("{c:?}: {e}"))?;
            if !o.status.success() {
                return Err(format!(
                    "{c:?} failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
            }
            Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        let user = output(Command::new("id").arg("-un"))?;
        // What the node really has: slurmd refuses a config that promises more.
        let node = output(Command::new(sbin("slurmd")).arg("-C"))?;
        let field = |name: &str| {
            node.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| format!("no {name}= in `slurmd -C`: {node}"))
        };
        let (cpus, memory) = (field("CPUs")?, field("RealMemory")?);
        // Two free ports (held together so they differ), released just before the daemons bind.
        let ports: Vec<u16> = {
            let l: Vec<_> = (0..2)
                .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
                .collect();
            l.iter().map(|l| l.local_addr().unwrap().port()).collect()
        };
        for sub in ["state", "spool", "log"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        // munged wants its socket's folder reachable by all and its key readable only by itself.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let key = dir.join("munge.key");
        let mut random = Vec::new();
        use std::io::Read;
        std::fs::File::open("/dev/urandom")
            .and_then(|f| f.take(1024).read_to_end(&mut random))
            .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
        std::fs::write(&key, random).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let d = dir.display();
        let conf = dir.join("slurm.conf");
        std::fs::write(
            &conf,
            format!(
                "ClusterName=kdruntest\nSlurmctldHost=localhost\nSlurmctldPort={}\nSlurmdPort={}\n\
                 SlurmUser={user}\nSlurmdUser={user}\nAuthType=auth/munge\nCredType=cred/munge\n\
                 AuthInfo=socket={d}/munge.sock\n\
                 NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN\n\
                 PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE\n\
                 ProctrackType=proctrack/pgid\nTaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/none\n\
                 MpiDefault=none\nReturnToService=2\nSelectType=select/cons_tres\nSelectTypeParameters=CR_CPU\n\
                 StateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\n\
                 SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.pid\n\
                 SlurmctldLogFile={d}/log/slurmctld.log\nSlurmdLogFile={d}/log/slurmd.log\n",
                ports[0], ports[1]
            ),
        )
        .unwrap();
        let mut cluster = SlurmCluster {
            dir: dir.to_path_buf(),
            conf: conf.clone(),
            daemons: Vec::new(),
            up: false,
        };
        let spawn = |name: &'static str, c: &mut Command| -> Result<_, String> {
            let log = std::fs::File::create(dir.join(format!("log/{name}.out"))).unwrap();
            c.stdin(std::process::Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .map(|child| (name, child))
                .map_err(|e| format!("cannot start {name}: {e}"))
        };
        cluster.daemons.push(spawn(
            "munged",
            Command::new(sbin("munged"))
                .args(["--foreground", "--force"])
                .arg(format!("--key-file={d}/munge.key"))
                .arg(format!("--socket={d}/munge.sock"))
                .arg(format!("--pid-file={d}/munged.pid"))
                .arg(format!("--seed-file={d}/munged.seed"))
                .arg(format!("--log-file={d}/log/munged.log")),
        )?);
        cluster.wait_until("munged's socket", 10, |_| {
            Ok(dir.join("munge.sock").exists())
        })?;
        cluster.daemons.push(spawn(
            "slurmctld",
            Command::new(sbin("slurmctld"))
                .arg("-D")
                .arg("-f")
                .arg(&conf),
        )?);
        // The machine's own name is not `localhost`: name the node.
        cluster.daemons.push(spawn(
            "slurmd",
            Command::new(sbin("slurmd"))
                .arg("-D")
                .arg("-f")
                .arg(&conf)
                .args(["-N", "localhost"]),
        )?);
        cluster.wait_until("the node to be idle", 30, |c| {
            let o = c.client("sinfo").args(["-h", "-o", "%t"]).output();
            Ok(o.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "idle"))
        })?;
        cluster.up = true;
        Ok(cluster)
    }

    /// A Slurm client command (`sbatch`, `squeue`, …) talking to this cluster.
    fn client(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        c.env("SLURM_CONF", &self.conf);
        c
    }

    /// Poll `done` every 200 ms for up to `seconds`; an error names what a daemon logged if one
    /// ended or time ran out.
    fn wait_until(
        &mut self,
        what: &str,
        seconds: u64,
        mut done: impl FnMut(&Self) -> Result<bool, String>,
    ) -> Result<(), String> {
        let start = std::time::Instant::now();
        loop {
            if done(self)? {
                return Ok(());
            }
            let ended = self
                .daemons
                .iter_mut()
                .find_map(|(name, child)| child.try_wait().ok().flatten().map(|s| (*name, s)));
            if let Some((name, status)) = ended {
                return Err(format!(
                    "{name} ended ({status}) while waiting for {what}\n{}",
                    self.logs()
                ));
            }
            if start.elapsed().as_secs() >= seconds {
                return Err(format!("no {what} after {seconds} s\n{}", self.logs()));
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// The last lines of every daemon's log.
    fn logs(&self) -> String {
        let mut out = String::new();
        let mut files: Vec<_> = std::fs::read_dir(self.dir.join("log"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out += &format!("--- {}\n", f.display());
            for l in &lines[lines.len().saturating_sub(30)..] {
                out += l;
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for SlurmCluster {
    fn drop(&mut self) {
        // What a failed test left queued or running first, then the daemons, newest first.
        let queued = self
            .up
            .then(|| self.client("squeue").args(["-h", "-o", "%A"]).output());
        if let Some(Ok(o)) = queued {
            let ids: Vec<String> = String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect();
            if !ids.is_empty() {
                let _ = self.client("scancel").args(&ids).status();
                let start = std::time::Instant::now();
                while start.elapsed().as_secs() < 10
                    && self
                        .client("squeue")
                        .arg("-h")
                        .output()
                        .is_ok_and(|o| !o.stdout.is_empty())
                {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
            }
        }
        while let Some((_, mut child)) = self.daemons.pop() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let start = std::time::Instant::now();
            while !matches!(child.try_wait(), Ok(Some(_))) {
                if start.elapsed().as_secs() >= 10 {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
}

#[test]
fn a_sweep_submitted_to_a_real_slurm_cluster_ends_as_the_local_one() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = match SlurmCluster::start(&tmp.path().join("slurm")) {
        Ok(c) => c,
        Err(why) => {
            assert!(
                std::env::var("KDRUN_REQUIRE_SLURM").map_or(true, |v| v != "1"),
                "KDRUN_REQUIRE_SLURM=1 but the one-node Slurm cluster did not start: {why}"
            );
            eprintln!("skipped: the one-node Slurm cluster cannot start here: {why}");
            return;
        }
    };
    let sweep = "distill.temperature=1,2,4,8";
    let (on_slurm, local) = (tmp.path().join("slurm-sweep"), tmp.path().join("local"));
    let out = quick_cmd(&on_slurm, &[sweep])
        .args(["--executor", "slurm", "--array-limit", "2"])
        .env("SLURM_CONF", &cluster.conf)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        cluster.logs()
    );
    assert!(stdout.contains("(4 tasks)"), "{stdout}");
    // The same sweep locally, one trial after another, while Slurm runs its jobs.
    let out = quick_cmd(&local, &[sweep]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = on_slurm.join("runs");
    let sweep_dir = only_sweep(&store);
    let job_outputs = || {
        let mut text = String::new();
        for e in std::fs::read_dir(&sweep_dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("slurm-") && name.ends_with(".out") {
                text += &format!(
                    "--- {name}\n{}\n",
                    std::fs::read_to_string(e.path()).unwrap_or_default()
                );
            }
        }
        text
    };
    let wait_for_the_queue = || {
        let start = std::time::Instant::now();
        loop {
            let q = cluster.client("squeue").arg("-h").output().unwrap();
            if q.status.success() && q.stdout.is_empty() {
                break;
            }
            assert!(
                start.elapsed().as_secs() < 180,
                "the jobs did not finish in 180 s:\n{}\n{}{}",
                String::from_utf8_lossy(&q.stdout),
                job_outputs(),
                cluster.logs()
            );
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    };
    // `kdrun status --retry-failed STORE`, which must say it retries `n` trials.
    let retry_failed = |store: &Path, n: usize| {
        let out = kdrun()
            .args(["status", "--retry-failed"])
            .arg(store)
            .env("SLURM_CONF", &cluster.conf)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(&format!("retrying {n} trial(s) of")),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    wait_for_the_queue();
    let results =
        kdrun::store::SweepResults::load(&sweep_dir.join("sweep.json")).unwrap_or_else(|e| {
            panic!(
                "no sweep.json ({e:#}):\n{}{}",
                job_outputs(),
                cluster.logs()
            )
        });
    assert!(
        results.trials.iter().all(|t| t.results.is_some()),
        "{:?}\n{}",
        results.trials.iter().map(|t| &t.error).collect::<Vec<_>>(),
        job_outputs()
    );
    // One output file per job: the shared stages, four array tasks, the report.
    let outs = job_outputs();
    assert_eq!(outs.matches("--- slurm-trial-").count(), 4, "{outs}");
    assert_eq!(outs.matches("--- slurm-shared-").count(), 1, "{outs}");
    assert_eq!(outs.matches("--- slurm-report-").count(), 1, "{outs}");
    assert_same_trials(
        &trial_results(&local.join("runs"), 4),
        &trial_results(&store, 4),
    );
    assert_eq!(count_stages(&store, "teacher"), 1);
    assert_eq!(count_stages(&store, "distilled"), 4);
    assert!(on_slurm.join("reports/quick/index.html").is_file());

    // Trial 3 as a task that failed leaves it: `--retry-failed` submits an array of that trial
    // alone and a report job, and the sweep ends as before.
    let three = sweep_dir.join("trial-003");
    std::fs::remove_file(three.join("results.json")).unwrap();
    std::fs::write(three.join("error.txt"), "killed: time limit").unwrap();
    std::fs::remove_file(sweep_dir.join("sweep.json")).unwrap();
    retry_failed(&store, 1);
    wait_for_the_queue();
    let outs = job_outputs();
    assert_eq!(outs.matches("--- slurm-trial-3-").count(), 2, "{outs}");
    assert_eq!(outs.matches("--- slurm-trial-").count(), 5, "{outs}");
    assert_eq!(outs.matches("--- slurm-report-").count(), 2, "{outs}");
    let results = kdrun::store::SweepResults::load(&sweep_dir.join("sweep.json"))
        .unwrap_or_else(|e| panic!("no sweep.json ({e:#}):\n{outs}"));
    assert!(results.trials.iter().all(|t| t.results.is_some()), "{outs}");
    assert_same_trials(
        &trial_results(&local.join("runs"), 4),
        &trial_results(&store, 4),
    );
    assert_eq!(count_stages(&store, "distilled"), 4);

    // A shared job that ends without finishing (here cancelled while held; on a cluster: its
    // time limit, a lost node) cancels the array instead of leaving it pending on a dependency
    // that can never be met; `kdrun status` calls its trials not run and `--retry-failed` runs
    // them (computing the shared stages themselves, once).
    let holding = tmp.path().join("holding-bin");
    std::fs::create_dir_all(&holding).unwrap();
    let real_sbatch = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v sbatch"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let wrapper = holding.join("sbatch");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ncase \"$*\" in *shared.sbatch) exec {} --hold \"$@\";; esac\nexec {} \"$@\"\n",
            real_sbatch.trim(),
            real_sbatch.trim()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        holding.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let cancelled = tmp.path().join("cancelled");
    let out = quick_cmd(&cancelled, &[sweep])
        .args(["--executor", "slurm"])
        .env("SLURM_CONF", &cluster.conf)
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cancelled_store = cancelled.join("runs");
    let cancelled_dir = only_sweep(&cancelled_store);
    let jobs = std::fs::read_to_string(cancelled_dir.join("slurm-jobs.txt")).unwrap();
    let shared = jobs
        .lines()
        .find_map(|l| l.strip_prefix("shared "))
        .unwrap()
        .trim()
        .to_string();
    let scancel = cluster.client("scancel").arg(&shared).output().unwrap();
    assert!(
        scancel.status.success(),
        "{}",
        String::from_utf8_lossy(&scancel.stderr)
    );
    wait_for_the_queue();
    let status = kdrun()
        .arg("status")
        .arg(&cancelled_store)
        .env("SLURM_CONF", &cluster.conf)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&status.stdout);
    assert_eq!(
        said.matches("not run (its Slurm jobs ended without running it)")
            .count(),
        4,
        "{said}"
    );
    retry_failed(&cancelled_store, 4);
    wait_for_the_queue();
    assert_same_trials(
        &trial_results(&local.join("runs"), 4),
        &trial_results(&cancelled_store, 4),
    );
    assert_eq!(count_stages(&cancelled_store, "teacher"), 1);
    drop(cluster);
}

#[test]
fn zero_jobs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // The flag is refused as the command line is read, naming itself (a negative number too,
    // which clap took for a flag of its own); the key, by the recipe's validation.
    for jobs in ["0", "-1", "two", "--jobs=-3"] {
        let args = match jobs.strip_prefix("--jobs=") {
            Some(_) => vec![jobs],
            None => vec!["--jobs", jobs],
        };
        for cmd in [
            &["check", "recipes/quick.toml"][..],
            &["recipes/quick.toml"][..],
        ] {
            let out = kdrun()
                .args(cmd)
                .args(&args)
                .args([
                    "--set",
                    &format!("runtime.store={}", tmp.path().join("runs").display()),
                ])
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{jobs}: {stderr}");
            assert!(
                stderr.contains("'--jobs <N>'")
                    && stderr.contains("expected an integer ≥ 1 (sweep trials at once")
                    && !stderr.contains("unexpected argument")
                    && !stderr.contains("tip:"),
                "{jobs}: {stderr}"
            );
        }
    }
    let out = quick_cmd(tmp.path(), &["distill.temperature=1,2", "runtime.jobs=0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--set runtime.jobs=0")
            && stderr.contains("runtime.jobs")
            && stderr.contains("expected an integer ≥ 1"),
        "{stderr}"
    );
    assert!(!tmp.path().join("runs").exists(), "nothing was started");
}

#[test]
fn dry_run_without_slurm_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for extra in [
        &["--dry-run"][..],
        &["--dry-run", "--executor", "local"][..],
    ] {
        let out = quick_cmd(tmp.path(), &["distill.temperature=1,2"])
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("--dry-run only works with --executor slurm")
                && stderr.contains("found --executor local"),
            "{stderr}"
        );
    }
    let out = kdrun()
        .args(["check", "recipes/quick.toml", "--dry-run"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--dry-run only works with --executor slurm"),
        "{stderr}"
    );
    assert!(!tmp.path().join("runs").exists(), "nothing was started");
    assert!(!tmp.path().join("reports").exists(), "nothing was started");
}

#[test]
fn runtime_slurm_goes_into_the_scripts_and_into_no_stage_key() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("sbatch.log");
    let path = fake_sbatch(tmp.path(), &log);
    let slurm = [
        "distill.temperature=1,2",
        "runtime.slurm.partition=cpu",
        "runtime.slurm.time=90",
        "runtime.slurm.account=kd-lab",
        "runtime.slurm.cpus_per_task=4",
        "runtime.slurm.mem=8G",
        "runtime.slurm.array_limit=3",
        r#"runtime.slurm.sbatch_options=["--qos=high", "--constraint=a100"]"#,
        r#"runtime.slurm.setup=["module load cuda/12.4", "echo set up"]"#,
    ];
    let out = quick_cmd(tmp.path(), &slurm)
        .args(["--executor", "slurm", "--dry-run", "--partition", "gpu"])
        .env("PATH", &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "#SBATCH --partition=gpu\n",
        "#SBATCH --time=90\n",
        "#SBATCH --account=kd-lab\n",
        "#SBATCH --cpus-per-task=4\n",
        "#SBATCH --mem=8G\n",
        "#SBATCH --qos=high\n#SBATCH --constraint=a100\n",
        "#SBATCH --array=1-2%3\n",
        "module load cuda/12.4\necho set up\nexec ",
    ] {
        assert!(stdout.contains(want), "no `{want}` in\n{stdout}");
    }
    // The flag overrides the recipe's partition: in all three scripts, and only it.
    assert_eq!(stdout.matches("#SBATCH --partition=gpu").count(), 3);
    assert!(!stdout.contains("--partition=cpu"), "{stdout}");

    // A run with other Slurm settings and jobs reuses every stage of a run without them.
    let store = tempfile::tempdir().unwrap();
    quick(store.path(), &[]);
    let out = quick_cmd(store.path(), &slurm[1..])
        .args(["--jobs", "2", "--time", "1-00:00:00"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for stage in [
        "data",
        "teacher",
        "logits",
        "student",
        "distilled",
        "baseline",
    ] {
        assert!(
            stderr.contains(&format!("{stage}: reused from the store")),
            "{stage} was computed again:\n{stderr}"
        );
    }
}

/// Every kdrun process whose command line names `store` (each one a test started there).
fn kdrun_processes_on(store: &Path) -> Vec<String> {
    let needle = store.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            let state = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            // A zombie has no command line; one being reaped still counts as gone.
            (cmd.contains("kdrun") && cmd.contains(&needle) && !state.contains(") Z "))
                .then(|| format!("{}: {cmd}", e.file_name().to_string_lossy()))
        })
        .collect()
}

/// The unfinished stage folders (`<key>.tmp-<pid>`) of `store`, as (stage, pid).
fn unfinished_stages(store: &Path) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for stage in std::fs::read_dir(store.join("stages"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for e in std::fs::read_dir(stage.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some((_, pid)) = name.rsplit_once(".tmp-") {
                out.push((
                    stage.file_name().to_string_lossy().into_owned(),
                    pid.parse().unwrap_or(0),
                ));
            }
        }
    }
    out
}

#[test]
fn ctrl_c_stops_every_worker_and_the_sweep_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    // Students slow enough (a few seconds each) to be caught while both workers distil.
    let sets = ["distill.temperature=1,2", "student.epochs=500"];
    let reference = tmp.path().join("reference");
    let out = quick_cmd(&reference, &sets).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let store = tmp.path().join("runs");
    // Its lines go to a file: a pipe nobody reads would fill and stop it.
    let log = tmp.path().join("interrupted.log");
    let child = quick_cmd(tmp.path(), &sets)
        .args(["--jobs", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut workers = Vec::new();
    wait_for("both workers to distil", || {
        workers = unfinished_stages(&store)
            .into_iter()
            .filter(|(stage, pid)| stage == "distilled" && *pid != child.id())
            .map(|(_, pid)| pid)
            .collect();
        workers.len() == 2
    });
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut child = child;
    let code = child.wait().unwrap().code();
    let stderr = std::fs::read_to_string(&log).unwrap();
    let tail: String = stderr.lines().rev().take(20).collect::<Vec<_>>().join("\n");
    assert_eq!(code, Some(130), "{tail}");
    assert!(stderr.contains("interrupted"), "{tail}");
    // Every worker is gone, and with it every unfinished stage folder.
    assert_eq!(kdrun_processes_on(&store), Vec::<String>::new());
    for pid in &workers {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "worker {pid} is still there"
        );
    }
    assert_eq!(unfinished_stages(&store), Vec::new(), "{tail}");
    assert_eq!(count_stages(&store, "student"), 1, "the shared stages stay");

    // The same command again finishes the sweep, as the uninterrupted one ended.
    let out = quick_cmd(tmp.path(), &sets)
        .args(["--jobs", "2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("student: reused from the store"),
        "{stderr}"
    );
    assert_same_trials(
        &trial_results(&reference.join("runs"), 2),
        &trial_results(&store, 2),
    );
}

#[test]
fn retry_failed_reruns_only_the_failed_trials_of_a_local_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("runs");
    // Trial 2's student diverges, every time.
    let out = quick_cmd(tmp.path(), &["student.lr=0.005,1e30,0.01"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let sweep_dir = only_sweep(&store);
    let first = trial_results(&store, 1).remove(0);
    let third = sweep_dir.join("trial-003/results.json");
    let third_written = std::fs::metadata(&third).unwrap().modified().unwrap();
    // Trial 1 as a killed process leaves it: started, no results, no reason.
    std::fs::remove_file(sweep_dir.join("trial-001/results.json")).unwrap();
    let status = |retry: bool| {
        let mut c = kdrun();
        c.arg("status").arg(&store);
        if retry {
            c.arg("--retry-failed");
        }
        c.output().unwrap()
    };
    let text = String::from_utf8_lossy(&status(false).stdout).into_owned();
    assert!(
        text.contains("(finished): 1 done, 0 running, 1 failed, 1 interrupted, 0 pending"),
        "{text}"
    );
    let out = status(true);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    assert!(
        stdout.contains("retrying 2 trial(s) of") && stdout.contains(": 1, 2\n"),
        "{stdout}"
    );
    assert!(stdout.contains("failed again: trial(s) 2"), "{stdout}");
    assert!(
        stderr.contains("retrying trial 1: student.lr=0.005"),
        "{stderr}"
    );
    assert!(stderr.contains("diverged"), "{stderr}");
    assert!(!stderr.contains("retrying trial 3"), "{stderr}");
    assert_eq!(
        std::fs::metadata(&third).unwrap().modified().unwrap(),
        third_written,
        "trial 3 finished before: left alone"
    );
    // Trial 1 came back from the store as it was; the sweep's results and report are redone.
    assert_same_trials(&[first], &trial_results(&store, 1));
    let results = kdrun::store::SweepResults::load(&sweep_dir.join("sweep.json")).unwrap();
    let ok: Vec<bool> = results.trials.iter().map(|t| t.results.is_some()).collect();
    assert_eq!(ok, [true, false, true]);
    let text = String::from_utf8_lossy(&status(false).stdout).into_owned();
    assert!(
        text.contains("(finished): 2 done, 0 running, 1 failed, 0 interrupted, 0 pending"),
        "{text}"
    );
}

#[test]
fn retry_failed_submits_an_array_of_the_failed_trials_and_a_report() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("sbatch.log");
    let path = fake_sbatch(tmp.path(), &log);
    let out = quick_cmd(tmp.path(), &["distill.temperature=1,2,4,8"])
        .args(["--executor", "slurm", "--array-limit", "2"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = tmp.path().join("runs");
    let sweep_dir = only_sweep(&store);
    // As the array's tasks left it: 1 done, 2 and 4 failed, 3 still queued.
    let trial = |t: usize| sweep_dir.join(format!("trial-{t:03}"));
    for t in [1, 2, 4] {
        std::fs::create_dir_all(trial(t)).unwrap();
    }
    std::fs::write(trial(1).join("results.json"), "{}").unwrap();
    std::fs::write(trial(2).join("error.txt"), "out of memory").unwrap();
    std::fs::write(trial(4).join("error.txt"), "time limit").unwrap();
    let out = kdrun()
        .args(["status", "--retry-failed"])
        .arg(&store)
        .env("PATH", &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("failed: out of memory")
            && stdout.contains("slurm jobs: shared 101, trials 102, report 103"),
        "{stdout}"
    );
    assert!(
        stdout.contains("submitted: trials 104, report 105"),
        "{stdout}"
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(calls.len(), 5, "{calls:?}");
    assert!(
        calls[3].contains("--array=2,4%2") && calls[3].ends_with("trials.sbatch"),
        "{}",
        calls[3]
    );
    assert!(
        calls[4].contains("--dependency=afterany:104") && calls[4].ends_with("report.sbatch"),
        "{}",
        calls[4]
    );
    let jobs = std::fs::read_to_string(sweep_dir.join("slurm-jobs.txt")).unwrap();
    assert!(
        jobs.ends_with("retry 104 (trials 2,4)\nreport 105\n"),
        "{jobs}"
    );
    // The retried trials wait for their tasks again (their failed attempts kept beside); nothing
    // else is touched.
    assert_eq!(
        std::fs::read_to_string(sweep_dir.join("trial-002.failed/error.txt")).unwrap(),
        "out of memory"
    );
    let out = kdrun().arg("status").arg(&store).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(": 1 done, 0 running, 0 failed, 0 interrupted, 3 pending"),
        "{text}"
    );
    // Nothing failed now: a second retry submits nothing.
    let out = kdrun()
        .args(["status", "--retry-failed"])
        .arg(&store)
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no failed trials to retry"));
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 5);
}
