//! Writing a stage: the key's OS file lock, the temporary folder a stage is written into and
//! moved into place from (with its manifest, last), and the cleaning of temporary folders left by
//! runs that died.

use super::{file_sums, Manifest, Stages, MANIFEST};
use crate::store::{timestamp, write_atomic};
use anyhow::{Context, Result};
use serde::Serialize;
use std::fs::{File, TryLockError};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

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

impl Stages {
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

    /// Start writing a stage whose key's lock the caller already holds.
    pub(super) fn begin_locked(
        &self,
        stage: &str,
        key: &str,
        lock: KeyLock,
    ) -> Result<StageWriter> {
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
