//! The store's stage folders: keys, whole-or-absent writes, locks, manifests and damage.

use super::*;
use std::time::Duration;

#[test]
fn keys_change_exactly_with_settings_and_inputs() {
    let s = serde_json::json!({"lr": 0.001, "epochs": 3});
    let k = key("teacher", &s, &["data1"]);
    assert_eq!(k, key("teacher", &s, &["data1"]));
    assert_ne!(
        k,
        key(
            "teacher",
            &serde_json::json!({"lr": 0.002, "epochs": 3}),
            &["data1"]
        )
    );
    assert_ne!(k, key("teacher", &s, &["data2"]));
    assert_ne!(k, key("student", &s, &["data1"]));
    assert_eq!(k.len(), 20);
}

#[test]
fn stages_appear_whole_or_not_at_all() {
    let store = tempfile::tempdir().unwrap();
    let stages = Stages::new(store.path());
    assert!(stages.lookup("teacher", "abc").is_none());
    {
        let w = stages.begin("teacher", "abc").unwrap();
        std::fs::write(w.file("model.bpk"), b"x").unwrap();
        // Dropped unfinished (an error or Ctrl-C): nothing remains.
    }
    assert!(stages.lookup("teacher", "abc").is_none());
    // Only the key's lock file stays (free again).
    let left: Vec<String> = std::fs::read_dir(store.path().join("stages/teacher"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["abc.lock"]);
    assert!(stages.try_lock("teacher", "abc").unwrap().is_some());
    let w = stages.begin("teacher", "abc").unwrap();
    std::fs::write(w.file("model.bpk"), b"x").unwrap();
    let dir = w.finish(serde_json::json!({"a": 1}), &["in"]).unwrap();
    assert_eq!(stages.lookup("teacher", "abc"), Some(dir.clone()));
    assert_eq!(
        stages.manifest("teacher", "abc").unwrap().inputs,
        vec!["in"]
    );
    // A temporary folder of a dead process is cleaned up.
    std::fs::create_dir(store.path().join("stages/teacher/def.tmp-999999999")).unwrap();
    assert_eq!(stages.clean_stale().unwrap(), 1);
}

#[test]
fn cleaning_spares_a_folder_being_written() {
    let store = tempfile::tempdir().unwrap();
    let stages = Stages::new(store.path());
    let w = stages.begin("teacher", "abc").unwrap();
    std::fs::write(w.file("model.bpk"), b"x").unwrap();
    // The key is locked while it is written: no one else gets the lock, cleaning keeps it.
    assert!(stages.try_lock("teacher", "abc").unwrap().is_none());
    assert_eq!(stages.clean_stale().unwrap(), 0);
    assert!(w.file("model.bpk").is_file());
    w.finish(serde_json::json!({}), &[]).unwrap();
    assert!(stages.try_lock("teacher", "abc").unwrap().is_some());
}

struct Counted<'a>(&'a std::sync::atomic::AtomicUsize);

impl Stage<()> for Counted<'_> {
    type Output = String;
    fn name(&self) -> &str {
        "slow"
    }
    type Spec = serde_json::Value;
    fn spec(&self, _: &()) -> Result<serde_json::Value> {
        Ok(serde_json::json!({"n": 1}))
    }
    fn inputs(&self) -> Vec<String> {
        Vec::new()
    }
    fn compute(&self, _: &(), _: &serde_json::Value, out: &StageWriter) -> Result<String> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(300));
        std::fs::write(out.file("v.txt"), "computed")?;
        Ok("computed".into())
    }
    fn load(&self, _: &(), dir: &Path) -> Result<String> {
        Ok(std::fs::read_to_string(dir.join("v.txt"))?)
    }
}

/// The names in the stage's parent folder (keys, locks, temporary folders).
fn names(store: &Path, stage: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(store.join("stages").join(stage))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn the_manifest_lists_every_file_with_its_size_and_sha256() {
    let store = tempfile::tempdir().unwrap();
    let stages = Stages::new(store.path());
    assert_eq!(stages.check("teacher", "abc"), Found::Absent);
    let w = stages.begin("teacher", "abc").unwrap();
    std::fs::write(w.file("model.bpk"), b"abc").unwrap();
    std::fs::create_dir(w.file("hf")).unwrap();
    std::fs::write(w.file("hf/config.json"), b"{}").unwrap();
    w.finish(serde_json::json!({"lr": 0.001}), &["in"]).unwrap();
    let m = stages.manifest("teacher", "abc").unwrap();
    let files = m.files.clone().unwrap();
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["hf/config.json", "model.bpk"]);
    assert_eq!(files[1].size, 3);
    assert_eq!(
        files[1].sha256,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(m.checksum.as_deref(), Some(m.checksum_now().as_str()));
    assert_eq!(stages.check("teacher", "abc"), Found::Whole(m));
}

/// A finished stage `teacher/abc` with `model.bpk` = "abcdef" in a new store.
fn finished() -> (tempfile::TempDir, Stages, PathBuf) {
    let store = tempfile::tempdir().unwrap();
    let stages = Stages::new(store.path());
    let w = stages.begin("teacher", "abc").unwrap();
    std::fs::write(w.file("model.bpk"), b"abcdef").unwrap();
    let dir = w.finish(serde_json::json!({"lr": 0.001}), &[]).unwrap();
    (store, stages, dir)
}

fn damage(stages: &Stages) -> String {
    match stages.check("teacher", "abc") {
        Found::Damaged(d) => d.to_string(),
        other => panic!("not damaged: {other:?}"),
    }
}

#[test]
fn damage_is_found_and_named() {
    type Spoil = fn(&Path);
    let cases: [(&str, Spoil); 7] = [
        ("model.bpk: its sha256 differs", |d| {
            std::fs::write(d.join("model.bpk"), b"abcdeF").unwrap()
        }),
        ("model.bpk: 3 bytes, the manifest says 6", |d| {
            std::fs::write(d.join("model.bpk"), b"abc").unwrap()
        }),
        ("model.bpk: missing", |d| {
            std::fs::remove_file(d.join("model.bpk")).unwrap()
        }),
        ("manifest.json: missing", |d| {
            std::fs::remove_file(d.join(MANIFEST)).unwrap()
        }),
        ("manifest.json: not a stage manifest", |d| {
            let text = std::fs::read_to_string(d.join(MANIFEST)).unwrap();
            std::fs::write(d.join(MANIFEST), &text[..text.len() / 2]).unwrap()
        }),
        // Still a manifest, but not the one written.
        (
            "manifest.json: its checksum does not match its contents",
            |d| {
                let text = std::fs::read_to_string(d.join(MANIFEST)).unwrap();
                let text = text.replace("0.001", "0.002");
                std::fs::write(d.join(MANIFEST), text).unwrap()
            },
        ),
        (
            "manifest.json: it is the manifest of stage teacher/abd",
            |d| {
                let text = std::fs::read_to_string(d.join(MANIFEST)).unwrap();
                let text = text.replace("\"abc\"", "\"abd\"");
                std::fs::write(d.join(MANIFEST), text).unwrap()
            },
        ),
    ];
    for (want, spoil) in cases {
        let (_store, stages, dir) = finished();
        assert!(matches!(stages.check("teacher", "abc"), Found::Whole(_)));
        spoil(&dir);
        let found = damage(&stages);
        assert!(found.starts_with(want), "{found} (wanted {want})");
    }
}

#[test]
fn a_damaged_stage_is_computed_again_and_an_older_one_gets_checksums() {
    let store = tempfile::tempdir().unwrap();
    let computed = std::sync::atomic::AtomicUsize::new(0);
    let stages = Stages::new(store.path());
    let stage = Counted(&computed);
    let count = || computed.load(std::sync::atomic::Ordering::SeqCst);
    let first = stages.get_or_compute(&stage, &()).unwrap();
    assert!(!first.reused);
    let key = first.key.clone();
    assert!(stages.get_or_compute(&stage, &()).unwrap().reused);
    assert_eq!(count(), 1);
    // Damaged: computed again, in the same place, and whole; once, however many want it at
    // once (each with its own handle on the store, as processes have).
    std::fs::write(first.dir.join("v.txt"), "computeD").unwrap();
    let reused: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let done = Stages::new(store.path())
                        .get_or_compute(&stage, &())
                        .unwrap();
                    assert_eq!(done.value, "computed");
                    done.reused
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(reused.iter().filter(|r| !**r).count(), 1, "{reused:?}");
    assert_eq!(count(), 2);
    assert!(matches!(stages.check("slow", &key), Found::Whole(_)));
    assert_eq!(
        names(store.path(), "slow"),
        [key.clone(), format!("{key}.lock")]
    );
    // A manifest from before the checksums: trusted, and given its checksums.
    let mut m = stages.manifest("slow", &key).unwrap();
    (m.files, m.checksum) = (None, None);
    std::fs::write(first.dir.join(MANIFEST), serde_json::to_string(&m).unwrap()).unwrap();
    assert!(matches!(stages.check("slow", &key), Found::Unchecked(_)));
    assert!(stages.get_or_compute(&stage, &()).unwrap().reused);
    assert_eq!(count(), 2);
    assert!(matches!(stages.check("slow", &key), Found::Whole(_)));
    // What a process killed while setting a damaged folder aside leaves is cleaned up.
    std::fs::create_dir(
        store
            .path()
            .join(format!("stages/slow/{key}.tmp-999999999.damaged")),
    )
    .unwrap();
    assert_eq!(stages.clean_stale().unwrap(), 1);
}

#[test]
fn a_process_hashes_a_stage_once_and_another_finds_its_damage() {
    let store = tempfile::tempdir().unwrap();
    let computed = std::sync::atomic::AtomicUsize::new(0);
    let stages = Stages::new(store.path());
    let stage = Counted(&computed);
    let first = stages.get_or_compute(&stage, &()).unwrap();
    assert!(stages.was_checked("slow", &first.key));
    // Damage that keeps the size, after this process checked the stage: its own reuse
    // trusts the check it made (the manifest is unchanged) …
    std::fs::write(first.dir.join("v.txt"), "computeD").unwrap();
    let again = stages.get_or_compute(&stage, &()).unwrap();
    assert!(again.reused && again.value == "computeD");
    // … a new process (a new handle on the store) hashes the files and computes it again.
    let fresh = Stages::new(store.path());
    assert!(!fresh.was_checked("slow", &first.key));
    let repaired = fresh.get_or_compute(&stage, &()).unwrap();
    assert!(!repaired.reused && repaired.value == "computed");
    // A changed manifest is checked again by the first handle too.
    let mut m = stages.manifest("slow", &first.key).unwrap();
    m.seconds += 1.0;
    std::fs::write(first.dir.join(MANIFEST), serde_json::to_string(&m).unwrap()).unwrap();
    assert!(!stages.was_checked("slow", &first.key));
}

#[test]
fn a_stage_wanted_at_once_by_many_is_computed_once() {
    let store = tempfile::tempdir().unwrap();
    let computed = std::sync::atomic::AtomicUsize::new(0);
    let reused: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    // Each with its own handle on the store, as separate processes have.
                    let stages = Stages::new(store.path());
                    let done = stages.get_or_compute(&Counted(&computed), &()).unwrap();
                    assert_eq!(done.value, "computed");
                    done.reused
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(computed.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(reused.iter().filter(|r| !**r).count(), 1, "{reused:?}");
}
