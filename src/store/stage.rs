//! Content-addressed stage artifacts: `<store>/stages/<stage>/<key>/`, where the key is a hash of
//! exactly the resolved settings the stage depends on and the keys of its inputs. A stage whose
//! folder exists (with its manifest) is reused, so a sweep over `distill.*` trains the teacher
//! once and labels once.
//!
//! A stage is written into `<key>.tmp-<pid>/` and renamed into place after its manifest, so a
//! stage folder is always whole; a run that is interrupted (Ctrl-C, kill -9) leaves at most a
//! temporary folder, which the next run removes.
//!
//! The manifest lists every file of the folder with its size and sha256, and carries a checksum
//! of itself. A stage is reused only if its files still match (checked the first time a
//! process reuses it; later reuses in that process only compare the manifest's checksum);
//! a damaged stage (a file missing, truncated or changed, a manifest that does not parse or whose
//! checksum is wrong, a folder without its manifest) is named in a warning and computed again:
//! under its key's lock, the damaged folder is first renamed away (to a temporary name the next
//! run's cleaning removes if this one dies) and removed, then the new one is renamed into place,
//! so a reader holding no lock sees the whole old folder, none, or the whole new one; a reader
//! that finds the old folder damaged too takes the lock and waits. A stage written by a kdrun
//! from before the checksums has its checksums recorded the first time it is reused.
//!
//! Many processes (and threads) may work on one store at once: whoever computes a stage holds an
//! OS file lock on `<stage>/<key>.lock` (`flock`, which Linux also takes on NFS, and which the
//! kernel releases when the process dies, however it dies). Another process needing the same
//! stage waits for that lock, then finds the stage finished and reuses it, so a stage is computed
//! once. A temporary folder is only removed by a process holding its key's lock, so cleaning never
//! deletes a folder that a live process is writing.

use crate::files::file_hash;
use crate::store::{timestamp, write_atomic};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Bumped when what a stage writes changes, so old artifacts are not misread (2: teacher logits
/// as safetensors, vector coverage kept with the student, recipes keyed with derived values
/// filled in; 3: teachers stored as the architecture enum `models::TeacherModel`). Not bumped
/// for the manifests' checksums: a stage's files are what they were, and a manifest without
/// checksums gets them when its stage is first reused, so no stage is computed again for them.
pub const ARTIFACT_VERSION: u32 = 3;

/// A stage folder's manifest file (written last).
pub const MANIFEST: &str = "manifest.json";

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
    /// Every file of the folder but the manifest, by path (`None` in manifests written before
    /// kdrun recorded them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<FileSum>>,
    /// sha256 of the manifest's JSON without this field ([`Manifest::checksum_now`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

/// One file of a stage folder as its manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSum {
    /// Relative to the stage folder, `/` between folder names.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

impl Manifest {
    /// sha256 of the manifest's JSON without its `checksum`: a manifest changed after it was
    /// written (a flipped byte that still parses) no longer matches its checksum.
    pub fn checksum_now(&self) -> String {
        let body = Manifest {
            checksum: None,
            ..self.clone()
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        hex(&Sha256::digest(&json))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What is wrong with a stage folder: the file (relative to the folder) and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub file: String,
    pub problem: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file, self.problem)
    }
}

/// What a stage's folder holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// No folder.
    Absent,
    /// A finished stage whose files match its manifest.
    Whole(Manifest),
    /// A finished stage from a kdrun that wrote no checksums: nothing to check it against.
    Unchecked(Manifest),
    /// A folder that is not what its manifest says (or has no manifest).
    Damaged(Damage),
}

/// The files under `dir` (but its manifest), sorted by path, with their sizes and sha256.
pub fn file_sums(dir: &Path) -> Result<Vec<FileSum>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<FileSum>) -> Result<()> {
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        for e in entries {
            let path = e
                .with_context(|| format!("cannot read {}", dir.display()))?
                .path();
            if path.is_dir() {
                walk(root, &path, out)?;
                continue;
            }
            let rel = path.strip_prefix(root).expect("under the stage folder");
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let rel = rel.join("/");
            // The manifest, and a temporary one left by a process killed while rewriting it.
            if rel == MANIFEST || rel.starts_with(&format!(".{MANIFEST}.tmp-")) {
                continue;
            }
            let size = std::fs::metadata(&path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .len();
            out.push(FileSum {
                path: rel,
                size,
                sha256: file_hash(&path)?,
            });
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Whether the files of `dir` are those `sums` lists: each present, of its size and sha256
/// (sizes all first: the cheap check).
fn check_files(dir: &Path, sums: &[FileSum]) -> std::result::Result<(), Damage> {
    let damage = |f: &FileSum, problem: String| Damage {
        file: f.path.clone(),
        problem,
    };
    for f in sums {
        let rel = Path::new(&f.path);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(damage(
                f,
                "the manifest names a file outside the stage folder".into(),
            ));
        }
        match std::fs::metadata(dir.join(rel)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(damage(f, "missing".into()))
            }
            Err(e) => return Err(damage(f, format!("cannot be read: {e}"))),
            Ok(m) if !m.is_file() => return Err(damage(f, "not a file".into())),
            Ok(m) if m.len() != f.size => {
                return Err(damage(
                    f,
                    format!("{} bytes, the manifest says {}", m.len(), f.size),
                ))
            }
            Ok(_) => {}
        }
    }
    for f in sums {
        match file_hash(&dir.join(&f.path)) {
            Err(e) => return Err(damage(f, format!("cannot be read: {e:#}"))),
            Ok(h) if h != f.sha256 => {
                return Err(damage(
                    f,
                    "its sha256 differs from the manifest's (changed since it was written)".into(),
                ))
            }
            Ok(_) => {}
        }
    }
    Ok(())
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
    /// The stages (name, key) this process has checked or written, with their manifests'
    /// checksums: while the manifest stays the same, their files are hashed once per process,
    /// not each time a sweep's trial reuses them.
    checked: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<(String, String), String>>>,
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
            checked: Default::default(),
        }
    }

    /// The same store, for a run that computes only the stages whose keys are the same for
    /// every recipe of `recipes` (the other trials of a sweep).
    pub fn only_shared_with(&self, recipes: Vec<crate::recipe::Recipe>) -> Self {
        Self {
            root: self.root.clone(),
            shared_with: recipes.into(),
            checked: self.checked.clone(),
        }
    }

    /// Whether this process has already checked (or written) the stage, and its manifest is
    /// still the one it checked.
    fn was_checked(&self, stage: &str, key: &str) -> bool {
        let remembered = self
            .checked
            .lock()
            .ok()
            .and_then(|c| c.get(&(stage.to_string(), key.to_string())).cloned());
        remembered.is_some_and(|sum| {
            self.manifest(stage, key)
                .is_ok_and(|m| m.checksum.as_deref() == Some(sum.as_str()))
        })
    }

    /// Remember that the stage is whole, by its manifest's checksum.
    fn mark_checked(&self, stage: &str, key: &str) {
        let Some(sum) = self.manifest(stage, key).ok().and_then(|m| m.checksum) else {
            return;
        };
        if let Ok(mut c) = self.checked.lock() {
            c.insert((stage.to_string(), key.to_string()), sum);
        }
    }

    /// The recipes of [`Stages::only_shared_with`] (none for a normal run).
    pub fn shared_with(&self) -> &[crate::recipe::Recipe] {
        &self.shared_with
    }

    pub fn dir(&self, stage: &str, key: &str) -> PathBuf {
        self.root.join(stage).join(key)
    }

    /// The folder of a finished stage (with its manifest; not checked: see [`Stages::check`]).
    pub fn lookup(&self, stage: &str, key: &str) -> Option<PathBuf> {
        let dir = self.dir(stage, key);
        dir.join(MANIFEST).is_file().then_some(dir)
    }

    pub fn manifest(&self, stage: &str, key: &str) -> Result<Manifest> {
        let path = self.dir(stage, key).join(MANIFEST);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not a stage manifest", path.display()))
    }

    /// What the stage's folder holds: nothing, a finished stage whose every file matches its
    /// manifest (sizes and sha256, read in full), one from before the checksums, or damage.
    pub fn check(&self, stage: &str, key: &str) -> Found {
        let dir = self.dir(stage, key);
        let path = dir.join(MANIFEST);
        let damaged = |problem: String| {
            Found::Damaged(Damage {
                file: MANIFEST.into(),
                problem,
            })
        };
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return match std::fs::symlink_metadata(&dir) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Found::Absent,
                    _ => damaged("missing".into()),
                };
            }
            Err(e) => return damaged(format!("cannot be read: {e}")),
        };
        let m: Manifest = match serde_json::from_slice(&text) {
            Ok(m) => m,
            Err(e) => return damaged(format!("not a stage manifest ({e})")),
        };
        if m.stage != stage || m.key != key {
            return damaged(format!(
                "it is the manifest of stage {}/{}, not of this folder",
                m.stage, m.key
            ));
        }
        let Some(files) = &m.files else {
            return Found::Unchecked(m);
        };
        if m.checksum.as_deref() != Some(m.checksum_now().as_str()) {
            return damaged("its checksum does not match its contents".into());
        }
        match check_files(&dir, files) {
            Ok(()) => Found::Whole(m),
            Err(d) => Found::Damaged(d),
        }
    }

    /// The stage's result: read back if its folder is finished and whole, else computed into a
    /// temporary folder that is moved into place with its manifest (so a folder is whole or
    /// absent). A damaged folder is said in a warning and computed again.
    pub fn get_or_compute<C: ?Sized, S: Stage<C>>(
        &self,
        stage: &S,
        cx: &C,
    ) -> Result<Done<S::Output>> {
        let (key, settings, inputs) = stage_key(stage, cx)?;
        let name = stage.name();
        let dir = self.dir(name, &key);
        let reused = |value| Done {
            value,
            key: key.clone(),
            dir: dir.clone(),
            reused: true,
        };
        // Without the lock, the common case: a finished stage that checks out (its files hashed
        // once per process). Anything else (also a folder replaced while it was read) is looked
        // at again under the lock.
        let whole =
            self.was_checked(name, &key) || matches!(self.check(name, &key), Found::Whole(_));
        if whole {
            if let Ok(value) = stage.load(cx, &dir) {
                self.mark_checked(name, &key);
                return Ok(reused(value));
            }
        }
        let lock = self.lock(name, &key)?;
        // Another process may have finished (or repaired) it while this one waited for the lock.
        match self.check(name, &key) {
            Found::Absent => {}
            found @ (Found::Whole(_) | Found::Unchecked(_)) => {
                if let Found::Unchecked(m) = found {
                    self.record_checksums(m);
                }
                drop(lock);
                let value = stage
                    .load(cx, &dir)
                    .with_context(|| format!("reading stage {}", dir.display()))?;
                self.mark_checked(name, &key);
                return Ok(reused(value));
            }
            Found::Damaged(damage) => {
                crate::runtime::progress::note(&format!(
                    "warning: stage {name}/{key} is damaged, computing it again: {damage}"
                ));
                self.set_aside(name, &key)?;
            }
        }
        let writer = self.begin_locked(name, &key, lock)?;
        let value = stage.compute(cx, &writer)?;
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let dir = writer.finish(settings, &refs)?;
        self.mark_checked(name, &key);
        Ok(Done {
            value,
            key,
            dir,
            reused: false,
        })
    }

    /// A stage written before manifests had checksums: record them now (with the key's lock
    /// held), so later damage is found. Best effort: a store that cannot be written is used as
    /// it is.
    fn record_checksums(&self, mut m: Manifest) {
        let dir = self.dir(&m.stage, &m.key);
        let recorded = file_sums(&dir).and_then(|files| {
            m.files = Some(files);
            m.checksum = Some(m.checksum_now());
            write_atomic(
                &dir.join(MANIFEST),
                serde_json::to_string_pretty(&m)?.as_bytes(),
            )
        });
        crate::runtime::progress::note(&match recorded {
            Ok(_) => format!(
                "kdrun: stage {}/{} was written by a kdrun without checksums; recorded them now",
                m.stage, m.key
            ),
            Err(e) => format!(
                "kdrun: stage {}/{} has no checksums and they could not be recorded: {e:#}",
                m.stage, m.key
            ),
        });
    }

    /// Move a damaged stage folder out of the way and remove it (the key's lock held). It is
    /// renamed first, in one step, to a temporary name that cleaning removes if this process
    /// dies before it does.
    fn set_aside(&self, stage: &str, key: &str) -> Result<()> {
        let dir = self.dir(stage, key);
        let aside = dir.with_file_name(format!("{key}.tmp-{}.damaged", std::process::id()));
        if aside.exists() {
            std::fs::remove_dir_all(&aside)
                .with_context(|| format!("cannot remove {}", aside.display()))?;
        }
        match std::fs::rename(&dir, &aside) {
            Ok(()) => std::fs::remove_dir_all(&aside)
                .with_context(|| format!("cannot remove {}", aside.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot move {} aside", dir.display())),
        }
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
                crate::runtime::progress::note(&format!(
                    "waiting for stage {stage}/{key} (being computed by another kdrun)"
                ));
                said = true;
            }
            crate::runtime::interrupt::check()?;
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
        let mut manifest = Manifest {
            stage: self.stage.clone(),
            key: self.key.clone(),
            settings,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            seconds: self.started.elapsed().as_secs_f64(),
            finished: timestamp(SystemTime::now()),
            kdrun_version: crate::build_info::VERSION.into(),
            git_commit: crate::build_info::GIT_COMMIT.into(),
            files: Some(file_sums(&self.tmp)?),
            checksum: None,
        };
        manifest.checksum = Some(manifest.checksum_now());
        write_atomic(
            &self.tmp.join(MANIFEST),
            serde_json::to_string_pretty(&manifest)?.as_bytes(),
        )?;
        if self.target.join(MANIFEST).is_file() {
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
}
