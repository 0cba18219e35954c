//! The bad-input corpus (`tests/bad_input/`): every recipe in `cases/` is wrong in one way and
//! must be refused at load — by the recipe's validation or the pre-flight checks of
//! `pipeline::RECIPE_CHECKS`, before any folder is made or any stage starts — with a message
//! that contains the text of its `# expect:` line, about the key of its `# key:` line; none may
//! panic. Every recipe in `ok/` is awkward but valid and must load, with the examples (train and
//! validation) and skipped rows of its `# examples:` / `# skipped:` lines. A few cases also go
//! through the binary: exit code, no panic or backtrace, no run folder.

mod common;

use common::kdrun;
use kdrun::data::Dataset;
use kdrun::pipeline::RECIPE_CHECKS;
use kdrun::recipe::parse_set;
use kdrun::recipe::sweep::load_trials;
use std::path::{Path, PathBuf};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad_input")
}

/// The recipes of a corpus folder, sorted.
fn recipes(folder: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(corpus().join(folder))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

/// The values of the `# name: value` header lines of a recipe.
fn header(path: &Path, name: &str) -> Vec<String> {
    let prefix = format!("# {name}: ");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix).map(String::from))
        .collect()
}

fn sets_of(path: &Path) -> Vec<kdrun::recipe::SetArg> {
    header(path, "set")
        .iter()
        .map(|s| parse_set(s).unwrap())
        .collect()
}

/// The longest message a case may print (a 200 KB line must not come back whole).
const MAX_MESSAGE: usize = 2_000;

#[test]
fn every_bad_input_is_refused_at_load_with_its_message() {
    let cases = recipes("cases");
    assert!(cases.len() >= 80, "{} cases", cases.len());
    let mut failures = Vec::new();
    for path in &cases {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let expect = header(path, "expect");
        assert_eq!(expect.len(), 1, "{name}: one `# expect:` line");
        let key = header(path, "key").pop();
        let sets = sets_of(path);
        let result = std::panic::catch_unwind(|| load_trials(path, &sets, false, RECIPE_CHECKS));
        match result {
            Err(_) => failures.push(format!("{name}: panicked")),
            Ok(Ok(_)) => failures.push(format!("{name}: accepted")),
            Ok(Err(e)) => {
                let message = e.to_string();
                if !message.contains(&expect[0]) {
                    failures.push(format!("{name}: expected {:?} in:\n{message}", expect[0]));
                }
                if let Some(key) = &key {
                    if !e.problems.iter().any(|p| p.key.as_deref() == Some(key)) {
                        failures.push(format!("{name}: no problem about `{key}` in:\n{message}"));
                    }
                }
                if message.len() > MAX_MESSAGE {
                    failures.push(format!("{name}: a {}-byte message", message.len()));
                }
                if message.contains('\0') {
                    failures.push(format!("{name}: a NUL in the message"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn awkward_but_valid_inputs_load_and_read() {
    let oks = recipes("ok");
    assert!(oks.len() >= 10);
    for path in &oks {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let (_, trials) = load_trials(path, &[], false, RECIPE_CHECKS)
            .unwrap_or_else(|e| panic!("{name}: refused:\n{e}"));
        let examples: usize = header(path, "examples")[0].parse().unwrap();
        let skipped: usize = header(path, "skipped")[0].parse().unwrap();
        let data = Dataset::load(&trials[0].1.recipe.data)
            .unwrap_or_else(|e| panic!("{name}: cannot read: {e:#}"));
        assert_eq!(data.train.len() + data.valid.len(), examples, "{name}");
        assert_eq!(
            data.skipped.iter().map(|s| s.rows).sum::<usize>(),
            skipped,
            "{name}: {:?}",
            data.skipped
        );
        assert!(
            data.train.iter().all(|e| !e.text.trim().is_empty()),
            "{name}"
        );
    }
}

#[test]
fn awkward_files_read_as_written() {
    let ok = |name: &str| {
        let (_, trials) = load_trials(&corpus().join("ok").join(name), &[], false, &[]).unwrap();
        Dataset::load(&trials[0].1.recipe.data).unwrap()
    };
    // The byte order mark is not part of the first text; CR is not part of any label.
    let bom = ok("bom.toml");
    let all: Vec<&kdrun::data::Example> = bom.train.iter().chain(&bom.valid).collect();
    assert!(all.iter().all(|e| !e.text.starts_with('\u{feff}')));
    let crlf = ok("csv_bom_crlf.toml");
    assert!(crlf.classes.iter().all(|c| !c.label.contains('\r')));
    assert_eq!(crlf.classes.len(), 3);
    // A quoted CSV field keeps its newline and its quotes.
    let quoted = ok("csv_quoted_newline.toml");
    assert!(quoted
        .train
        .iter()
        .chain(&quoted.valid)
        .any(|e| e.text == "two\nlines, and \"quotes\""));
    // Skipped rows say what they were and where the first one is.
    let skip = ok("skip_bad_rows.toml");
    let reasons: Vec<String> = skip.skipped.iter().map(|s| s.describe()).collect();
    assert!(
        reasons.iter().any(
            |r| r.contains("2 rows of ok_skip_bad_rows.jsonl left out: empty text")
                && r.contains("first at line 3")
        ),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("not a JSON object")),
        "{reasons:?}"
    );
    // CSV rows and test rows outside the classes too are named by the physical line they start
    // on: the header and the lines of a quoted field count.
    let described =
        |name: &str| -> Vec<String> { ok(name).skipped.iter().map(|s| s.describe()).collect() };
    assert_eq!(
        described("skip_csv_rows.toml"),
        ["2 rows of skip_csv_rows.csv left out: empty text in `text` (first at line 4)"]
    );
    assert_eq!(
        described("skip_test_stranger.toml"),
        ["1 row of stranger_label.jsonl left out: label not a class of the training file (first at line 19)"]
    );
}

/// A temporary folder for a binary run's store and reports.
fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn the_binary_refuses_bad_input_before_making_folders() {
    for case in [
        "distill_alpha_above_one",
        "data_json_array",
        "student_vectors_cut_short",
        "sweep_alpha_out_of_range",
        "teacher_checkpoint_no_tokenizer",
        "member_checkpoint_other_arch",
        "member_checkpoint_no_tokenizer",
        "teacher_combine_no_members",
    ] {
        let path = corpus().join("cases").join(format!("{case}.toml"));
        let expect = header(&path, "expect").pop().unwrap();
        let t = tmp();
        let out = kdrun()
            .arg(&path)
            .args([
                "--set",
                &format!("runtime.store={}", t.path().join("runs").display()),
            ])
            .args([
                "--set",
                &format!("report.dir={}", t.path().join("reports").display()),
            ])
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{case}: {stderr}");
        assert!(stderr.contains(&expect), "{case}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("stack backtrace"),
            "{case}: {stderr}"
        );
        assert!(!t.path().join("runs").exists(), "{case}: a store was made");
        assert!(
            !t.path().join("reports").exists(),
            "{case}: reports were made"
        );
    }
}

#[test]
fn the_binary_names_files_folders_and_variables_as_given() {
    // A folder where the recipe file is expected.
    let out = kdrun().args(["check", "tests/bad_input"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("found a folder"), "{stderr}");
    // An environment variable by the name it was set under.
    let out = kdrun()
        .args(["check", "tests/bad_input/ok/bom.toml"])
        .env("KDRUN_teacher__epocs", "3")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("environment variable KDRUN_teacher__epocs")
            && stderr.contains("did you mean `teacher.epochs`"),
        "{stderr}"
    );
    // A quoted value whose escape follows a non-ASCII character (figment panicked on it; found
    // by tests/fuzz.rs) is refused by name.
    let out = kdrun()
        .args(["check", "tests/bad_input/ok/bom.toml"])
        .env("KDRUN_report__title", "\"Résumé\\n\"")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("environment variable KDRUN_report__title")
            && stderr.contains("a backslash after a non-ASCII character")
            && !stderr.contains("panicked"),
        "{stderr}"
    );
    // The recipe's own [sweep] table is blamed on the recipe, not on --set.
    let out = kdrun()
        .args([
            "check",
            "tests/bad_input/cases/sweep_alpha_out_of_range.toml",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sweep_alpha_out_of_range.toml ([sweep] table): key `distill.alpha`")
            && !stderr.contains("--set"),
        "{stderr}"
    );
}

#[test]
fn skipped_rows_reach_the_results_and_the_report() {
    let t = tmp();
    let out = kdrun()
        .arg("tests/bad_input/ok/skip_bad_rows.toml")
        .args([
            "--set",
            &format!("runtime.store={}", t.path().join("runs").display()),
        ])
        .args([
            "--set",
            &format!("report.dir={}", t.path().join("reports").display()),
        ])
        .args(["--set", "baseline.enabled=false"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let runs: Vec<_> = std::fs::read_dir(t.path().join("runs/skip_bad_rows"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let results = kdrun::store::RunResults::load(&runs[0].join("results.json")).unwrap();
    assert_eq!(
        results.skipped_rows.iter().map(|s| s.rows).sum::<usize>(),
        3,
        "{:?}",
        results.skipped_rows
    );
    let readme = std::fs::read_to_string(t.path().join("reports/skip_bad_rows/README.md")).unwrap();
    assert!(
        readme.contains("Rows left out of the data files")
            && readme.contains("left out: empty text in `text` (first at line 3)"),
        "{readme}"
    );
}

#[test]
fn a_diverging_teacher_stops_with_step_rate_and_last_finite_loss() {
    let t = tmp();
    let out = kdrun()
        .arg("tests/bad_input/ok/bom.toml")
        .args([
            "--set",
            &format!("runtime.store={}", t.path().join("runs").display()),
        ])
        .args([
            "--set",
            &format!("report.dir={}", t.path().join("reports").display()),
        ])
        .args(["--set", "teacher.lr=1e30", "--set", "teacher.epochs=4"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for part in [
        "teacher: loss is",
        "learning rate",
        "the last finite loss was",
        "lower teacher.lr",
    ] {
        assert!(stderr.contains(part), "{part}: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_diverging_xlnet_permutation_lm_pretraining_stops_the_same_way() {
    let t = tmp();
    let out = kdrun()
        .arg("tests/bad_input/ok/bom.toml")
        .args([
            "--set",
            &format!("runtime.store={}", t.path().join("runs").display()),
        ])
        .args([
            "--set",
            &format!("report.dir={}", t.path().join("reports").display()),
        ])
        .args([
            "--set",
            "teacher.arch=xlnet",
            "--set",
            "teacher.pretrain.steps=20",
        ])
        .args(["--set", "teacher.pretrain.lr=1e30"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for part in [
        "permutation-LM",
        "pretrain: loss is",
        "learning rate",
        "the last finite loss was",
        "lower teacher.pretrain.lr",
    ] {
        assert!(stderr.contains(part), "{part}: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A stage whose computation writes part of its files, then runs out of disk space (a write to
/// `/dev/full`, which answers ENOSPC as a full disk does).
struct FillsTheDisk;

impl kdrun::store::stage::Stage<()> for FillsTheDisk {
    type Output = ();
    fn name(&self) -> &str {
        "teacher"
    }
    type Spec = serde_json::Value;
    fn spec(&self, _: &()) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::json!({"disk": "full"}))
    }
    fn inputs(&self) -> Vec<String> {
        Vec::new()
    }
    fn compute(
        &self,
        _: &(),
        _: &serde_json::Value,
        out: &kdrun::store::stage::StageWriter,
    ) -> anyhow::Result<()> {
        kdrun::files::write_atomic(&out.file("config.json"), b"{}")?;
        kdrun::files::write_to(Path::new("/dev/full"), &[0u8; 4096])?;
        Ok(())
    }
    fn load(&self, _: &(), _: &Path) -> anyhow::Result<()> {
        Ok(())
    }
}

#[test]
fn a_full_disk_says_where_and_leaves_the_store_whole() {
    if !Path::new("/dev/full").exists() {
        eprintln!("no /dev/full: skipped");
        return;
    }
    let store = tmp();
    let stages = kdrun::store::stage::Stages::new(store.path());
    let err = stages
        .get_or_compute(&FillsTheDisk, &())
        .map(|_| ())
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(kdrun::files::disk_full(&err), "{message}");
    assert!(
        message.contains("space ran out writing /dev/full: the disk holding /dev is full"),
        "{message}"
    );
    // No stage folder, finished or temporary, is left.
    let left: Vec<String> = std::fs::read_dir(store.path().join("stages/teacher"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with(".lock"))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

/// `kdrun check` reports every problem it can find in one pass, as a compiler does: missing data
/// files do not hide a bad value, a sweep over a per-sweep key or an unknown key in a sweep, and
/// unequal zipped lists are reported beside them. Exit 1, no run folder.
#[test]
fn check_reports_independent_mistakes_together() {
    let tmp = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let data = "[data]\nformat = \"tnews\"\ntrain = \"no/such/train.json\"\ntest = \"no/such/dev.json\"\nclasses = [\"story\", \"sports\"]\n";
    let cartesian = write(
        "cartesian.toml",
        &format!(
            "{data}\n[student]\nhidden = 0\n\n[sweep]\n\"teacher.epoch\" = [1, 2]\n\"runtime.threads\" = [1, 2]\n"
        ),
    );
    let zip = write(
        "zip.toml",
        &format!(
            "{data}\n[teacher]\nlr = -1.0\n\n[sweep]\nmode = \"zip\"\n\"teacher.epochs\" = [1, 2]\n\"student.epochs\" = [1, 2, 3]\n"
        ),
    );
    for (recipe, expected) in [
        (
            &cartesian,
            &[
                "`data.train`: expected a training data file",
                "`student.hidden`: expected an integer ≥ 1, found 0",
                "`runtime.threads`: a sweep cannot vary runtime.threads",
                "`teacher.epoch`: unknown key; did you mean `teacher.epochs`?",
            ][..],
        ),
        (
            &zip,
            &[
                "`data.test`: expected a test data file",
                "`teacher.lr`: expected a positive number, found -1",
                "`sweep`: sweep mode \"zip\" pairs lists of equal length",
            ][..],
        ),
    ] {
        let out = kdrun()
            .arg("check")
            .arg(recipe)
            .current_dir(tmp.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        for e in expected {
            assert!(stderr.contains(e), "{e:?} not in:\n{stderr}");
        }
        assert!(!tmp.path().join("runs").exists() && !tmp.path().join("reports").exists());
    }
}
