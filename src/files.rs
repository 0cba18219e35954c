//! Files written whole or not at all, and files hashed by content. The lowest layer: every other
//! layer writes through these (model exports, vocabularies, the store, reports).

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Write `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<PathBuf> {
    write_with(path, |tmp| {
        std::fs::write(tmp, bytes).map_err(|e| write_error(path, e))
    })
}

/// Read a JSON file into `T`, the file named in the message.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: unreadable", path.display()))
}

/// Write `bytes` to `path` directly (no temporary file), a full disk said as such.
pub fn write_to(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| write_error(path, e))
}

/// Whether `e` is a full disk or an exhausted disk quota.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// Whether any cause of `e` is a full disk or quota.
pub fn disk_full(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| c.downcast_ref::<std::io::Error>().is_some_and(is_disk_full))
}

/// The error of writing `path`: a full disk says that space ran out and on which folder's disk,
/// and what to do; any other error is "cannot write PATH".
pub fn write_error(path: &Path, e: std::io::Error) -> anyhow::Error {
    if is_disk_full(&e) {
        let folder = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let message = format!(
            "space ran out writing {}: the disk holding {} is full (free space there, or set \
             runtime.store / report.dir to a folder on another disk)",
            path.display(),
            folder.display()
        );
        anyhow::Error::new(e).context(message)
    } else {
        anyhow::Error::new(e).context(format!("cannot write {}", path.display()))
    }
}

/// A sibling of `path` for writing before the rename.
pub fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Write with `write` to a temporary sibling of `path`, then rename into place.
pub fn write_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
    let tmp = temp_name(path);
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot move {} into place", path.display()));
    }
    Ok(path.to_path_buf())
}

/// sha256 of a file's bytes as 64 hex digits, read in blocks (a word-vector file can be several
/// GB; it is never held in memory whole).
pub fn file_hash(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_hash_is_sha256_of_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.txt");
        // Larger than io::copy's buffer, so the hash runs over several blocks.
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let whole: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(file_hash(&path).unwrap(), whole);
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(
            file_hash(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(file_hash(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn a_full_disk_says_where_space_ran_out() {
        // /dev/full answers every write with ENOSPC, as a full disk does.
        if !Path::new("/dev/full").exists() {
            eprintln!("no /dev/full: skipped");
            return;
        }
        let e = write_to(Path::new("/dev/full"), b"some bytes").unwrap_err();
        assert!(disk_full(&e));
        let message = format!("{e:#}");
        assert!(
            message.contains("space ran out writing /dev/full: the disk holding /dev is full")
                && message.contains("runtime.store"),
            "{message}"
        );
        // Other errors are not called a full disk.
        let e = write_to(Path::new("/nonexistent-folder/x"), b"x").unwrap_err();
        assert!(!disk_full(&e) && format!("{e:#}").starts_with("cannot write"));
    }

    #[test]
    fn writes_leave_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        write_atomic(&path, b"hello").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "hello");
        let failed = write_with(&dir.path().join("b.txt"), |tmp| {
            std::fs::write(tmp, b"half")?;
            anyhow::bail!("disk full")
        });
        assert!(failed.is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["a.txt"]);
    }
}
