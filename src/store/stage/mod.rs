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

mod compute;
mod manifest;
#[cfg(test)]
mod tests;
mod writer;

pub use manifest::{file_sums, Damage, FileSum, Found, Manifest, MANIFEST};
pub use writer::{KeyLock, StageWriter};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Bumped when what a stage writes changes, so old artifacts are not misread (2: teacher logits
/// as safetensors, vector coverage kept with the student, recipes keyed with derived values
/// filled in; 3: teachers stored as the architecture enum `models::TeacherModel`; 4: dropout masks
/// drawn by Philox (`models::ops::dropout`), so a model trained with the same seed is another
/// model, and a stage trained before must not stand for it). Not bumped
/// for the manifests' checksums: a stage's files are what they were, and a manifest without
/// checksums gets them when its stage is first reused, so no stage is computed again for them.
pub const ARTIFACT_VERSION: u32 = 4;

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
///
/// A stage's settings are one typed value, its [`Stage::Spec`]: serialised, it is the content
/// of the key; and `compute` is handed that same value, so what a result depends on and what
/// its key covers cannot drift apart.
pub trait Stage<C: ?Sized> {
    type Output;
    /// The resolved settings the result depends on (besides its inputs' results).
    type Spec: serde::Serialize;
    /// The stage's folder name under `stages/` (`teacher`, `logits`, …).
    fn name(&self) -> &str;
    /// The stage's settings, resolved from the context.
    fn spec(&self, cx: &C) -> Result<Self::Spec>;
    /// The keys of the stages it reads.
    fn inputs(&self) -> Vec<String>;
    /// Compute the result from the spec its key was made of, writing its files into `out`.
    fn compute(&self, cx: &C, spec: &Self::Spec, out: &StageWriter) -> Result<Self::Output>;
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
    let k = Keyed::new(stage, cx)?;
    Ok((k.key, k.settings, k.inputs))
}

/// A stage's spec with the key made of it.
struct Keyed<T> {
    spec: T,
    key: String,
    settings: serde_json::Value,
    inputs: Vec<String>,
}

impl<T: serde::Serialize> Keyed<T> {
    fn new<C: ?Sized, S: Stage<C, Spec = T>>(stage: &S, cx: &C) -> Result<Self> {
        let spec = stage.spec(cx)?;
        let settings = serde_json::to_value(&spec)
            .with_context(|| format!("the settings of stage {}", stage.name()))?;
        let inputs = stage.inputs();
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        Ok(Self {
            key: key(stage.name(), &settings, &refs),
            spec,
            settings,
            inputs,
        })
    }
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
}
