//! The store: one folder per run under `runtime.store`, written as each stage finishes so that a
//! failed or interrupted run keeps what it had done. Every file is written to a temporary name
//! and renamed into place, so a file in a run folder is always whole. The stored schemas
//! (`results.json`, `sweep.json`) and the scan that reads the run folders back live here too.

pub mod hashes;
pub mod results;
pub mod scan;
pub mod stage;
pub mod status;
pub mod sweep;

use anyhow::{Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use crate::files::{temp_name, write_atomic, write_with};
pub use results::{ModelResult, RunResults};
pub use sweep::{SweepResults, TrialOutcome};

/// A folder of the store as pages name it: relative to the store (`tnews/2026-11-28T18-56-46Z`),
/// never by the machine's absolute path. Without the store (or outside it): the folder's last
/// two names (`<recipe name>/<time>`).
pub fn name_in_store(store: Option<&Path>, path: &Path) -> String {
    if let Some(rel) = store.and_then(|s| path.strip_prefix(s).ok()) {
        if !rel.as_os_str().is_empty() {
            return rel.display().to_string();
        }
    }
    let names: Vec<_> = path
        .components()
        .rev()
        .take(2)
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    names.into_iter().rev().collect::<Vec<_>>().join("/")
}

/// A run's folder: `<store>/<recipe name>/<UTC time>/`.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub path: PathBuf,
}

/// `2026-11-27T22-42-56Z`: RFC 3339 seconds with `-` for `:` (valid on every file system).
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace(':', "-")
}

impl RunDir {
    pub fn create(store: &Path, recipe_name: &str) -> Result<Self> {
        let base = store.join(recipe_name);
        std::fs::create_dir_all(&base).with_context(|| {
            format!("cannot create run store {} (runtime.store)", base.display())
        })?;
        // `create_dir` fails on a folder that exists, atomically (also on NFS), so two processes
        // started in the same second take `<stamp>` and `<stamp>-2`, never one folder.
        let stamp = timestamp(SystemTime::now());
        let mut path = base.join(&stamp);
        let mut n = 1;
        loop {
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(Self { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    n += 1;
                    path = base.join(format!("{stamp}-{n}"));
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", path.display()))
                }
            }
        }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn write_text(&self, name: &str, text: &str) -> Result<PathBuf> {
        write_atomic(&self.file(name), text.as_bytes())
    }

    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<PathBuf> {
        self.write_text(name, &serde_json::to_string_pretty(value)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_dirs_are_distinct_and_writes_whole() {
        let store = tempfile::tempdir().unwrap();
        let a = RunDir::create(store.path(), "r").unwrap();
        let b = RunDir::create(store.path(), "r").unwrap();
        assert_ne!(a.path, b.path);
        // Many at once, as processes started in the same second: all distinct.
        let paths: Vec<PathBuf> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| RunDir::create(store.path(), "r").unwrap().path))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let unique: std::collections::BTreeSet<_> = paths.iter().collect();
        assert_eq!(unique.len(), paths.len());
        let p = a.write_text("x.txt", "hello").unwrap();
        assert_eq!(std::fs::read_to_string(p).unwrap(), "hello");
        let leftovers: Vec<_> = std::fs::read_dir(&a.path)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
