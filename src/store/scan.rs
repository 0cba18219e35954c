//! Reading the store back: every run folder `<store>/<recipe>/<stamp>/` with what it holds — a
//! run's `results.json`, a sweep's `sweep.json`, or neither (an interrupted or failed run).

use super::stage::STAGES_DIR;
use super::sweep::SweepResults;
use super::RunResults;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// What a run folder of the store holds.
pub enum Stored {
    Run(Box<RunResults>),
    Sweep(Box<SweepResults>),
}

/// One finished run or sweep: `<store>/<recipe>/<stamp>/`.
pub struct StoredRun {
    pub recipe: String,
    pub stamp: String,
    pub dir: PathBuf,
    pub stored: Stored,
}

/// The store's finished runs and sweeps (oldest first), and the run folders that hold neither
/// results nor a sweep (interrupted or failed runs).
pub struct Scan {
    pub runs: Vec<StoredRun>,
    pub unfinished: Vec<PathBuf>,
    /// Result files that could not be read (another kdrun version's, damaged), with why.
    pub unreadable: Vec<(PathBuf, String)>,
}

/// The folders of `dir` (name, path) by name, leaving out hidden ones.
fn subdirs(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() && !name.starts_with('.') {
            out.push((name, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Read every run folder of `store`.
pub fn scan(store: &Path) -> Result<Scan> {
    if !store.is_dir() {
        bail!(
            "{}: no such store (a folder of runs, `runtime.store` of a recipe, `runs/` by default)",
            store.display()
        );
    }
    let mut runs = Vec::new();
    let mut unfinished = Vec::new();
    let mut unreadable = Vec::new();
    for (recipe, rdir) in subdirs(store)? {
        // `stages/` holds the content-addressed stage artifacts, not runs.
        if recipe == STAGES_DIR {
            continue;
        }
        for (stamp, dir) in subdirs(&rdir)? {
            let sweep_file = dir.join("sweep.json");
            let results_file = dir.join("results.json");
            let read = if sweep_file.is_file() {
                SweepResults::load(&sweep_file).map(|s| Stored::Sweep(Box::new(s)))
            } else if results_file.is_file() {
                RunResults::load(&results_file).map(|r| Stored::Run(Box::new(r)))
            } else {
                unfinished.push(dir);
                continue;
            };
            let stored = match read {
                Ok(s) => s,
                Err(e) => {
                    unreadable.push((dir, format!("{e:#}")));
                    continue;
                }
            };
            runs.push(StoredRun {
                recipe: recipe.clone(),
                stamp,
                dir,
                stored,
            });
        }
    }
    runs.sort_by(|a, b| (&a.stamp, &a.recipe).cmp(&(&b.stamp, &b.recipe)));
    Ok(Scan {
        runs,
        unfinished,
        unreadable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_sorts_runs_sweeps_and_the_rest() {
        let store = tempfile::tempdir().unwrap();
        let put = |rel: &str, file: &str, text: &str| {
            let dir = store.path().join(rel);
            std::fs::create_dir_all(&dir).unwrap();
            if !file.is_empty() {
                std::fs::write(dir.join(file), text).unwrap();
            }
        };
        let results = include_str!("../../tests/fixtures/results-min.json");
        let sweep = include_str!("../../tests/fixtures/sweep-min.json");
        put("b/2026-01-02T00-00-00Z", "results.json", results);
        put("a/2026-01-03T00-00-00Z", "sweep.json", sweep);
        put("a/2026-01-01T00-00-00Z", "results.json", results);
        put("a/2026-01-04T00-00-00Z", "", "");
        put("a/2026-01-05T00-00-00Z", "results.json", "{\"old\": 1}");
        put("a/.hidden", "results.json", results);
        put(&format!("{STAGES_DIR}/teacher"), "results.json", results);
        let s = scan(store.path()).unwrap();
        let order: Vec<(&str, &str, bool)> = s
            .runs
            .iter()
            .map(|r| {
                let sweep = matches!(r.stored, Stored::Sweep(_));
                (r.recipe.as_str(), r.stamp.as_str(), sweep)
            })
            .collect();
        assert_eq!(
            order,
            [
                ("a", "2026-01-01T00-00-00Z", false),
                ("b", "2026-01-02T00-00-00Z", false),
                ("a", "2026-01-03T00-00-00Z", true),
            ]
        );
        assert_eq!(s.unfinished, [store.path().join("a/2026-01-04T00-00-00Z")]);
        assert_eq!(s.unreadable.len(), 1);
        assert!(s.unreadable[0].1.contains("not a kdrun results file"));
        assert!(scan(&store.path().join("missing")).is_err());
    }
}
