//! Content-addressed stage artifacts: `<store>/stages/<stage>/<key>/`, where the key is a hash of
//! exactly the resolved settings the stage depends on and the keys of its inputs. A stage whose
//! folder exists (with its manifest) is reused, so a sweep over `distill.*` trains the teacher
//! once and labels once.
//!
//! A stage is written into `<key>.tmp-<pid>/` and renamed into place after its manifest, so a
//! stage folder is always whole; a run that is interrupted (Ctrl-C, kill -9) leaves at most a
//! temporary folder, which the next run removes.
//!
//! Many processes (and threads) may work on one store at once: whoever computes a stage holds an
//! OS file lock on `<stage>/<key>.lock` (`flock`, which Linux also takes on NFS, and which the
//! kernel releases when the process dies, however it dies). Another process needing the same
//! stage waits for that lock, then finds the stage finished and reuses it, so a stage is computed
//! once. A temporary folder is only removed by a process holding its key's lock, so cleaning never
//! deletes a folder that a live process is writing.

use crate::store::{timestamp, write_atomic};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Bumped when what a stage writes changes, so old artifacts are not misread (2: teacher logits
/// as safetensors, vector coverage kept with the student, recipes keyed with derived values
/// filled in; 3: teachers stored as the architecture enum `models::TeacherModel`).
pub const ARTIFACT_VERSION: u32 = 3;

/// What a stage folder says of itself (written last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub stage: String,
    pub key: String,
    pub settings: serde_json::Value,
    pub inputs: Vec<String>,
    pub seconds: f64,
    pub finished: String,
    pub kdrun_version: String,
    pub git_commit: String,
}

/// The key of a stage: sha256 of its name, the artifact version, its settings and its inputs'
/// keys (first 20 hex digits).
pub fn key(stage: &str, settings: &serde_json::Value, inputs: &[&str]) -> String {
    let canonical = serde_json::json!({
        "stage": stage,
        "version": ARTIFACT_VERSION,
        "settings": settings,
        "inputs": inputs,
    });
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    digest.iter().take(10).map(|b| format!("{b:02x}")).collect()
}

/// One unit of a run whose result the store keeps: exactly what its key covers, how to compute
/// it into a stage folder, and how to read it back from one. `C` is the caller's context (the
/// pipeline's trial), passed through so a stage can read lazily prepared inputs.
pub trait Stage<C: ?Sized> {
    type Output;
    /// The stage's folder name under `stages/` (`teacher`, `logits`, …).
    fn name(&self) -> &str;
    /// Exactly the resolved settings the result depends on.
    fn settings(&self, cx: &C) -> Result<serde_json::Value>;
    /// The keys of the stages it reads.
    fn inputs(&self) -> Vec<String>;
    /// Compute the result, writing its files into `out`.
    fn compute(&self, cx: &C, out: &StageWriter) -> Result<Self::Output>;
    /// Read the result back from a finished stage folder.
    fn load(&self, cx: &C, dir: &Path) -> Result<Self::Output>;
}

/// A stage's result with where it lives.
pub struct Done<T> {
    pub value: T,
    pub key: String,
    pub dir: PathBuf,
    /// Read from the store rather than computed now.
    pub reused: bool,
}

/// The key of `stage` (with its settings and inputs), without computing anything.
pub fn stage_key<C: ?Sized, S: Stage<C>>(
    stage: &S,
    cx: &C,
) -> Result<(String, serde_json::Value, Vec<String>)> {
    let settings = stage.settings(cx)?;
    let inputs = stage.inputs();
    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    Ok((key(stage.name(), &settings, &refs), settings, inputs))
}

#[derive(Debug, Clone)]
pub struct Stages {
    root: PathBuf,
    /// With recipes here, a run computes only the stages whose keys are the same for each of
    /// them (a sweep's shared stages), and stops with [`NotShared`] at the first that is not.
    shared_with: std::sync::Arc<[crate::recipe::Recipe]>,
}

/// A run limited to the stages some trials share ([`Stages::only_shared_with`]) reached one that
/// differs between them.
#[derive(Debug, thiserror::Error)]
#[error("stage {0} differs between the trials")]
pub struct NotShared(pub String);

/// A stage being written.
pub struct StageWriter {
    tmp: PathBuf,
    target: PathBuf,
    stage: String,
    key: String,
    started: std::time::Instant,
    done: bool,
    /// The key's lock, held until the folder is in place (or removed).
    _lock: KeyLock,
}

/// An exclusive OS lock on one stage key (`<stage>/<key>.lock`), released on drop or when the
/// process ends. The lock file itself stays (removing it would race with a process opening it).
pub struct KeyLock {
    _file: File,
}

/// The store's folder of stage artifacts (beside the recipes' run folders).
pub const STAGES_DIR: &str = "stages";

impl Stages {
    pub fn new(store: &Path) -> Self {
        Self {
            root: store.join(STAGES_DIR),
            shared_with: std::sync::Arc::new([]),
        }
    }

    /// The same store, for a run that computes only the stages whose keys are the same for
    /// every recipe of `recipes` (the other trials of a sweep).
    pub fn only_shared_with(&self, recipes: Vec<crate::recipe::Recipe>) -> Self {
        Self {
            root: self.root.clone(),
            shared_with: recipes.into(),
        }
    }

    /// The recipes of [`Stages::only_shared_with`] (none for a normal run).
    pub fn shared_with(&self) -> &[crate::recipe::Recipe] {
        &self.shared_with
    }

    pub fn dir(&self, stage: &str, key: &str) -> PathBuf {
        self.root.join(stage).join(key)
    }

    /// The folder of a finished stage.
    pub fn lookup(&self, stage: &str, key: &str) -> Option<PathBuf> {
        let dir = self.dir(stage, key);
        dir.join("manifest.json").is_file().then_some(dir)
    }

    pub fn manifest(&self, stage: &str, key: &str) -> Result<Manifest> {
        let path = self.dir(stage, key).join("manifest.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not a stage manifest", path.display()))
    }

    /// The stage's result: read back if its folder is finished, else computed into a temporary
    /// folder that is moved into place with its manifest (so a folder is whole or absent).
    pub fn get_or_compute<C: ?Sized, S: Stage<C>>(
        &self,
        stage: &S,
        cx: &C,
    ) -> Result<Done<S::Output>> {
        let (key, settings, inputs) = stage_key(stage, cx)?;
        let name = stage.name();
        if let Some(dir) = self.lookup(name, &key) {
            let value = stage
                .load(cx, &dir)
                .with_context(|| format!("reading stage {}", dir.display()))?;
            return Ok(Done {
                value,
                key,
                dir,
                reused: true,
            });
        }
        let lock = self.lock(name, &key)?;
        // Another process may have finished it while this one waited for the lock.
        if let Some(dir) = self.lookup(name, &key) {
            drop(lock);
            let value = stage
                .load(cx, &dir)
                .with_context(|| format!("reading stage {}", dir.display()))?;
            return Ok(Done {
                value,
                key,
                dir,
                reused: true,
            });
        }
        let writer = self.begin_locked(name, &key, lock)?;
        let value = stage.compute(cx, &writer)?;
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let dir = writer.finish(settings, &refs)?;
        Ok(Done {
            value,
            key,
            dir,
            reused: false,
        })
    }

    fn lock_file(&self, stage: &str, key: &str) -> Result<File> {
        let parent = self.root.join(stage);
        std::fs::create_dir_all(&parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        let path = parent.join(format!("{key}.lock"));
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))
    }

    /// The key's lock if no one holds it, without waiting.
    pub fn try_lock(&self, stage: &str, key: &str) -> Result<Option<KeyLock>> {
        let file = self.lock_file(stage, key)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(KeyLock { _file: file })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock stage {stage}/{key}"))
            }
        }
    }

    /// The key's lock, waiting (with one message) while another process holds it. Ctrl-C stops
    /// the wait.
    pub fn lock(&self, stage: &str, key: &str) -> Result<KeyLock> {
        let mut said = false;
        loop {
            if let Some(lock) = self.try_lock(stage, key)? {
                return Ok(lock);
            }
            if !said {
                crate::train::progress::note(&format!(
                    "waiting for stage {stage}/{key} (being computed by another kdrun)"
                ));
                said = true;
            }
            crate::train::interrupt::check()?;
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Start writing a stage (taking its key's lock first).
    pub fn begin(&self, stage: &str, key: &str) -> Result<StageWriter> {
        let lock = self.lock(stage, key)?;
        self.begin_locked(stage, key, lock)
    }

    fn begin_locked(&self, stage: &str, key: &str, lock: KeyLock) -> Result<StageWriter> {
        let target = self.dir(stage, key);
        let parent = target.parent().expect("stage folder has a parent");
        let tmp = parent.join(format!("{key}.tmp-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        Ok(StageWriter {
            tmp,
            target,
            stage: stage.into(),
            key: key.into(),
            started: std::time::Instant::now(),
            done: false,
            _lock: lock,
        })
    }

    /// Remove temporary folders left by runs that are no longer alive: those whose key's lock is
    /// free (a process writing a stage holds its lock until the folder is in place).
    pub fn clean_stale(&self) -> Result<usize> {
        let mut removed = 0;
        let Ok(stages) = std::fs::read_dir(&self.root) else {
            return Ok(0);
        };
        for stage in stages.flatten() {
            let Ok(entries) = std::fs::read_dir(stage.path()) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some((key, _)) = name.rsplit_once(".tmp-") {
                    let stage_name = stage.file_name().to_string_lossy().into_owned();
                    if let Some(_lock) = self.try_lock(&stage_name, key)? {
                        // Gone already if another cleaner holding the lock just before removed it.
                        match std::fs::remove_dir_all(e.path()) {
                            Ok(()) => removed += 1,
                            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                            Err(err) => return Err(err.into()),
                        }
                    }
                }
            }
        }
        Ok(removed)
    }
}

impl StageWriter {
    /// A file of the stage being written.
    pub fn file(&self, name: &str) -> PathBuf {
        self.tmp.join(name)
    }

    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        std::fs::write(self.file(name), serde_json::to_string_pretty(value)?)
            .with_context(|| format!("cannot write {}", self.file(name).display()))
    }

    /// Write the manifest and move the stage into place. If another run finished the same stage
    /// meanwhile, its folder is kept and this one dropped (both are the same computation).
    pub fn finish(mut self, settings: serde_json::Value, inputs: &[&str]) -> Result<PathBuf> {
        let manifest = Manifest {
            stage: self.stage.clone(),
            key: self.key.clone(),
            settings,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            seconds: self.started.elapsed().as_secs_f64(),
            finished: timestamp(SystemTime::now()),
            kdrun_version: crate::build_info::VERSION.into(),
            git_commit: crate::build_info::GIT_COMMIT.into(),
        };
        write_atomic(
            &self.tmp.join("manifest.json"),
            serde_json::to_string_pretty(&manifest)?.as_bytes(),
        )?;
        if self.target.join("manifest.json").is_file() {
            std::fs::remove_dir_all(&self.tmp)?;
        } else {
            if self.target.exists() {
                std::fs::remove_dir_all(&self.target)?;
            }
            std::fs::rename(&self.tmp, &self.target)
                .with_context(|| format!("cannot move {} into place", self.target.display()))?;
        }
        self.done = true;
        Ok(self.target.clone())
    }
}

impl Drop for StageWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        fn settings(&self, _: &()) -> Result<serde_json::Value> {
            Ok(serde_json::json!({"n": 1}))
        }
        fn inputs(&self) -> Vec<String> {
            Vec::new()
        }
        fn compute(&self, _: &(), out: &StageWriter) -> Result<String> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(300));
            std::fs::write(out.file("v.txt"), "computed")?;
            Ok("computed".into())
        }
        fn load(&self, _: &(), dir: &Path) -> Result<String> {
            Ok(std::fs::read_to_string(dir.join("v.txt"))?)
        }
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
}
