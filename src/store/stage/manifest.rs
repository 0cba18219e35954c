//! A stage folder's manifest (every file with its size and sha256, and a checksum of itself)
//! and the check of a folder against it: whole, from before the checksums, or damaged.

use super::Stages;
use crate::files::file_hash;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

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

impl Stages {
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
}
