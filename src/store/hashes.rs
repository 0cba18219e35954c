//! File hashes kept between runs: the sha256 of a file the recipe names (data, vectors, a
//! checkpoint's weights) by its path, size and modification time, in `<store>/.hashes/`. A trial
//! whose stages all come from the store then finds its keys without reading a multi-GB vector
//! file again. A file changed within the last two seconds is hashed and not remembered (its
//! modification time could still be shared with a later change of the same size).

use crate::files::{file_hash, write_atomic};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    path: PathBuf,
    len: u64,
    modified_ns: u128,
    sha256: String,
}

/// The store's remembered file hashes.
#[derive(Debug, Clone)]
pub struct HashCache {
    dir: PathBuf,
}

impl HashCache {
    pub fn new(store: &Path) -> Self {
        Self {
            dir: store.join(".hashes"),
        }
    }

    /// sha256 of `path` (64 hex digits), remembered while its size and modification time stay.
    pub fn hash(&self, path: &Path) -> Result<String> {
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        let abs = std::fs::canonicalize(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let modified = meta.modified().unwrap_or(UNIX_EPOCH);
        let modified_ns = modified
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name: String = Sha256::digest(abs.to_string_lossy().as_bytes())
            .iter()
            .take(10)
            .map(|b| format!("{b:02x}"))
            .collect();
        let entry_path = self.dir.join(format!("{name}.json"));
        let remembered = std::fs::read_to_string(&entry_path)
            .ok()
            .and_then(|text| serde_json::from_str::<Entry>(&text).ok())
            .filter(|e| e.path == abs && e.len == meta.len() && e.modified_ns == modified_ns);
        if let Some(e) = remembered {
            return Ok(e.sha256);
        }
        let sha256 = file_hash(path)?;
        let settled = SystemTime::now()
            .duration_since(modified)
            .is_ok_and(|age| age > Duration::from_secs(2));
        if settled && modified_ns > 0 {
            let entry = Entry {
                path: abs,
                len: meta.len(),
                modified_ns,
                sha256: sha256.clone(),
            };
            // Best effort: a cache that cannot be written only costs time.
            let _ = std::fs::create_dir_all(&self.dir).map(|_| {
                serde_json::to_string(&entry).map(|text| write_atomic(&entry_path, text.as_bytes()))
            });
        }
        Ok(sha256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_until_the_file_changes() {
        let store = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vectors.txt");
        std::fs::write(&path, b"abc").unwrap();
        // Old enough to be remembered.
        let old = SystemTime::now() - Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let cache = HashCache::new(store.path());
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(cache.hash(&path).unwrap(), abc);
        let entries: Vec<_> = std::fs::read_dir(store.path().join(".hashes"))
            .unwrap()
            .collect();
        assert_eq!(entries.len(), 1);
        // The remembered hash is used while size and time are unchanged (shown by a forged
        // entry), and dropped when the file changes.
        let entry_path = entries[0].as_ref().unwrap().path();
        let mut e: Entry =
            serde_json::from_str(&std::fs::read_to_string(&entry_path).unwrap()).unwrap();
        e.sha256 = "remembered".into();
        std::fs::write(&entry_path, serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(cache.hash(&path).unwrap(), "remembered");
        std::fs::write(&path, b"abcd").unwrap();
        assert_ne!(cache.hash(&path).unwrap(), "remembered");
        assert!(cache.hash(&dir.path().join("missing")).is_err());
    }
}
