//! Recipe layering and every class of recipe error.

use kdrun::recipe::{load, load_with_env, parse_set, BackendChoice, SoftLoss};
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn sets(args: &[&str]) -> Vec<kdrun::recipe::SetArg> {
    args.iter().map(|a| parse_set(a).unwrap()).collect()
}

#[test]
fn defaults_file_and_set_layer_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "r.toml",
        "[teacher]\nlayers = 3\nepochs = 7\n[distill]\nsoft_loss = \"kl\"\n",
    );
    let loaded = load_with_env(
        &p,
        &sets(&["teacher.epochs=2", "data.classes=[\"car\",\"game\"]"]),
        false,
    )
    .unwrap();
    let r = loaded.recipe;
    assert_eq!(r.teacher.layers, 3, "file over default");
    assert_eq!(r.teacher.epochs, 2, "--set over file");
    assert_eq!(r.teacher.hidden, 128, "default kept");
    assert_eq!(r.distill.soft_loss, SoftLoss::Kl);
    assert_eq!(r.data.classes, vec!["car", "game"]);
    assert_eq!(r.name, "r", "name defaults to the file stem");
    assert!(loaded.resolved_toml.contains("layers = 3"));
}

#[test]
fn environment_sits_between_file_and_set() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "env.toml",
        "[student]\nhidden = 10\nepochs = 3\n",
    );
    // This test is the only one that reads KDRUN_* variables (the others pass use_env = false).
    std::env::set_var("KDRUN_STUDENT__HIDDEN", "20");
    std::env::set_var("KDRUN_STUDENT__EPOCHS", "4");
    let r = load(&p, &sets(&["student.epochs=5"])).unwrap().recipe;
    std::env::remove_var("KDRUN_STUDENT__HIDDEN");
    std::env::remove_var("KDRUN_STUDENT__EPOCHS");
    assert_eq!(r.student.hidden, 20, "environment over file");
    assert_eq!(r.student.epochs, 5, "--set over environment");
}

#[test]
fn relative_paths_resolve_against_the_recipe_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("recipes")).unwrap();
    let p = write(
        &dir.path().join("recipes"),
        "r.toml",
        "[data]\ntrain = \"../data/t.json\"\n",
    );
    let r = load_with_env(&p, &[], false).unwrap().recipe;
    assert_eq!(r.data.train, dir.path().join("data/t.json"));
    // A default path resolves against the recipe folder too.
    assert_eq!(r.runtime.store, dir.path().join("recipes/runs"));
    // A path from --set resolves against the working directory.
    let r = load_with_env(&p, &sets(&["data.test=x/y.json"]), false)
        .unwrap()
        .recipe;
    assert_eq!(
        r.data.test,
        std::env::current_dir().unwrap().join("x/y.json")
    );
    // `~/` is the home folder, from the file or from --set; `~name` is an ordinary name.
    let home = std::path::PathBuf::from(std::env::var_os("HOME").unwrap());
    let p = write(
        &dir.path().join("recipes"),
        "home.toml",
        "[data]
train = \"~/kd/t.json\"\ntest = \"~x/d.json\"\n",
    );
    let r = load_with_env(&p, &sets(&["runtime.store=~/kd-store"]), false)
        .unwrap()
        .recipe;
    assert_eq!(r.data.train, home.join("kd/t.json"));
    assert_eq!(r.data.test, dir.path().join("recipes/~x/d.json"));
    assert_eq!(r.runtime.store, home.join("kd-store"));
}

#[test]
fn unknown_key_names_file_and_suggests() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "typo.toml", "[teacher]\nlayrs = 3\n");
    let err = load_with_env(&p, &[], false).unwrap_err().to_string();
    assert!(err.contains("typo.toml"), "{err}");
    assert!(err.contains("teacher.layrs"), "{err}");
    assert!(err.contains("did you mean `teacher.layers`"), "{err}");

    let p = write(dir.path(), "section.toml", "[techer]\nlayers = 3\n");
    let err = load_with_env(&p, &[], false).unwrap_err().to_string();
    assert!(err.contains("did you mean `teacher`"), "{err}");
}

#[test]
fn wrong_type_names_key_and_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "t.toml", "[teacher]\nlayers = \"two\"\n");
    let err = load_with_env(&p, &[], false).unwrap_err().to_string();
    assert!(
        err.contains("t.toml") && err.contains("teacher.layers"),
        "{err}"
    );
    assert!(err.contains("expected"), "{err}");
}

#[test]
fn unknown_variant_lists_choices() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "v.toml", "[distill]\nsoft_loss = \"kld\"\n");
    let err = load_with_env(&p, &[], false).unwrap_err().to_string();
    assert!(
        err.contains("distill.soft_loss") && err.contains("\"mse\", \"kl\""),
        "{err}"
    );
}

#[test]
fn out_of_range_values_are_reported_together_with_their_source() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "o.toml",
        "[teacher]\nheads = 3\n[distill]\ntemperature = 0\n",
    );
    let err = load_with_env(&p, &sets(&["data.valid_fraction=0.9"]), false).unwrap_err();
    let text = err.to_string();
    assert_eq!(err.problems.len(), 3, "{text}");
    assert!(text.contains("o.toml: key `teacher.heads`"), "{text}");
    assert!(text.contains("divides teacher.hidden"), "{text}");
    assert!(text.contains("o.toml: key `distill.temperature`"), "{text}");
    assert!(
        text.contains("--set data.valid_fraction=0.9: key `data.valid_fraction`"),
        "{text}"
    );
}

#[test]
fn pretraining_keys_follow_the_teacher_architecture() {
    let dir = tempfile::tempdir().unwrap();
    // XLNet: permutation-LM by default, with transformers' collator settings.
    let p = write(dir.path(), "x.toml", "[teacher]\narch = \"xlnet\"\n");
    let r = load_with_env(&p, &[], false).unwrap().recipe;
    let pre = &r.teacher.pretrain;
    assert_eq!(pre.objective, Some(kdrun::recipe::PretrainObjective::Plm));
    assert_eq!(pre.max_span_length, Some(5));
    assert!((pre.plm_probability.unwrap() - 1.0 / 6.0).abs() < 1e-12);
    assert_eq!((pre.mask_prob, pre.whole_word), (None, None));
    // A masked-LM key on an XLNet teacher, and PLM on BERT, name the key.
    let err = load_with_env(&p, &sets(&["teacher.pretrain.mask_prob=0.2"]), false).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("key `teacher.pretrain.mask_prob`"), "{text}");
    assert!(text.contains("only permutation-LM keys"), "{text}");
    let b = write(
        dir.path(),
        "b.toml",
        "[teacher.pretrain]\nobjective = \"plm\"\nmax_span_length = 3\n",
    );
    let text = load_with_env(&b, &[], false).unwrap_err().to_string();
    assert!(text.contains("key `teacher.pretrain.objective`"), "{text}");
    assert!(text.contains("\"mlm\" for a bert teacher"), "{text}");
    let c = write(
        dir.path(),
        "c.toml",
        "[teacher.pretrain]\nplm_probability = 0.2\n",
    );
    let text = load_with_env(&c, &[], false).unwrap_err().to_string();
    assert!(
        text.contains("key `teacher.pretrain.plm_probability`")
            && text.contains("only masked-LM keys (mask_prob, whole_word)"),
        "{text}"
    );
    // The same keys on an XLNet teacher are its own.
    let r = load_with_env(&b, &sets(&["teacher.arch=xlnet"]), false)
        .unwrap()
        .recipe;
    assert_eq!(r.teacher.pretrain.max_span_length, Some(3));
}

#[test]
fn set_errors_name_the_argument() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "s.toml", "");
    let err = load_with_env(&p, &sets(&["teacher.nope=1"]), false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--set teacher.nope=1") && err.contains("teacher.nope"),
        "{err}"
    );
    let err = load_with_env(&p, &sets(&["runtime.backend=gpu"]), false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("runtime.backend") && err.contains("\"wgpu\""),
        "{err}"
    );
    let r = load_with_env(&p, &sets(&["runtime.backend=cpu"]), false)
        .unwrap()
        .recipe;
    assert_eq!(r.runtime.backend, BackendChoice::Cpu);
}

#[test]
fn missing_file_and_bad_toml_are_errors() {
    let err = load_with_env(Path::new("/nonexistent/r.toml"), &[], false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/nonexistent/r.toml") && err.contains("not found"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "bad.toml", "[teacher\nlayers = 2\n");
    let err = load_with_env(&p, &[], false).unwrap_err().to_string();
    assert!(err.contains("bad.toml"), "{err}");
}

#[test]
fn shipped_recipes_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for name in [
        "tnews.toml",
        "tnews-gpu.toml",
        "tnews-pretrain.toml",
        "tnews-xlnet.toml",
        "tnews-seed.toml",
        "tnews-tang.toml",
        "quick.toml",
    ] {
        let r = load_with_env(&root.join("recipes").join(name), &[], false)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .recipe;
        assert!(r.data.train.is_file(), "{name}: {}", r.data.train.display());
        assert!(r.data.test.is_file(), "{name}: {}", r.data.test.display());
    }
}

#[test]
fn baseline_keys_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "b.toml",
        "[baseline]\nchar_ngrams = [2, 1]\nword_ngrams = [1]\nmin_df = 0\nc = [1.0, -2.0]\n",
    );
    let err = load_with_env(&p, &[], false).unwrap_err();
    let text = err.to_string();
    assert_eq!(err.problems.len(), 4, "{text}");
    for key in [
        "key `baseline.char_ngrams`",
        "key `baseline.word_ngrams`",
        "key `baseline.min_df`",
        "key `baseline.c`",
    ] {
        assert!(text.contains(key), "{key}: {text}");
    }
    assert!(text.contains("[min, max] with 1 ≤ min ≤ max"), "{text}");
    assert!(text.contains("positive numbers"), "{text}");
    // No n-grams at all, and an unknown model.
    let none = sets(&["baseline.char_ngrams=[]"]);
    let err = load_with_env(&write(dir.path(), "n.toml", ""), &none, false).unwrap_err();
    assert!(
        err.to_string().contains("character or word n-grams"),
        "{err}"
    );
    let p = write(dir.path(), "m.toml", "[baseline]\nmodel = \"forest\"\n");
    let err = load_with_env(&p, &[], false).unwrap_err().to_string();
    assert!(
        err.contains("baseline.model") && err.contains("\"logreg\", \"svm\""),
        "{err}"
    );
    // Turned off, its keys are not needed; the defaults are valid.
    let off = sets(&["baseline.enabled=false", "baseline.char_ngrams=[]"]);
    let r = load_with_env(&write(dir.path(), "o.toml", ""), &off, false).unwrap();
    assert!(!r.recipe.baseline.enabled);
    let r = load_with_env(&write(dir.path(), "d.toml", ""), &[], false).unwrap();
    assert!(r.recipe.baseline.enabled);
    assert_eq!(r.recipe.baseline.char_ngrams, vec![1, 2]);
}
