//! Content-addressed stage artifacts: `<store>/stages/<stage>/<key>/`, where the key is a hash of
//! exactly the resolved settings the stage depends on and the keys of its inputs. A stage whose
//! folder exists (with its manifest) is reused, so a sweep over `distill.*` trains the teacher
//! once and labels once.
//!
//! A stage is written into `<key>.tmp-<pid>/` and renamed into place after its manifest, so a
//! stage folder is always whole; a run that is interrupted (Ctrl-C, kill -9) leaves at most a
//! temporary folder, which the next run removes. A lock file keeps two runs on one store from
//! working at once.

use crate::store::{timestamp, write_atomic};
use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
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
}

/// A stage being written.
pub struct StageWriter {
    tmp: PathBuf,
    target: PathBuf,
    stage: String,
    key: String,
    started: std::time::Instant,
    done: bool,
}

/// The store's folder of stage artifacts (beside the recipes' run folders).
pub const STAGES_DIR: &str = "stages";

impl Stages {
    pub fn new(store: &Path) -> Self {
        Self {
            root: store.join(STAGES_DIR),
        }
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
        let writer = self.begin(name, &key)?;
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

    /// Start writing a stage.
    pub fn begin(&self, stage: &str, key: &str) -> Result<StageWriter> {
        let target = self.dir(stage, key);
        let parent = target.parent().expect("stage folder has a parent");
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
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
        })
    }

    /// Remove temporary folders left by runs that are no longer alive.
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
                if let Some((_, pid)) = name.rsplit_once(".tmp-") {
                    let alive = pid.parse::<u32>().is_ok_and(process_alive);
                    if !alive {
                        std::fs::remove_dir_all(e.path())?;
                        removed += 1;
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

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// An exclusive lock on a store: `<store>/.lock` holding the owner's pid. A second run waits
/// for it; a lock whose owner died is taken over.
pub struct StoreLock {
    path: PathBuf,
}

impl StoreLock {
    pub fn acquire(store: &Path) -> Result<Self> {
        std::fs::create_dir_all(store)
            .with_context(|| format!("cannot create store {} (runtime.store)", store.display()))?;
        let path = store.join(".lock");
        let mut said = false;
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    use std::io::Write;
                    write!(f, "{}", std::process::id())?;
                    return Ok(Self { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = std::fs::read_to_string(&path).unwrap_or_default();
                    match owner.trim().parse::<u32>() {
                        Ok(pid) if pid != std::process::id() && process_alive(pid) => {
                            if !said {
                                eprintln!(
                                    "kdrun: waiting for the run with pid {pid}, which holds {}",
                                    path.display()
                                );
                                said = true;
                            }
                            std::thread::sleep(Duration::from_millis(500));
                        }
                        // The owner is gone (or the file is empty from a crash between create and
                        // write): take the lock over.
                        _ => {
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                }
                Err(e) => return Err(anyhow!("cannot create {}: {e}", path.display())),
            }
        }
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
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
        assert_eq!(
            std::fs::read_dir(store.path().join("stages/teacher"))
                .unwrap()
                .count(),
            0
        );
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
    fn lock_is_exclusive_and_taken_over_from_the_dead() {
        let store = tempfile::tempdir().unwrap();
        std::fs::write(store.path().join(".lock"), "999999999").unwrap();
        let lock = StoreLock::acquire(store.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(store.path().join(".lock")).unwrap(),
            std::process::id().to_string()
        );
        drop(lock);
        assert!(!store.path().join(".lock").exists());
    }
}
