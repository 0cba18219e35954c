//! The store as pages: `kdrun report` re-renders every run's and sweep's pages where they were
//! written, from the stored `results.json` / `sweep.json` (no training); `kdrun publish` writes a
//! static site — an index of recipes and runs, a page per run and per sweep (with its trials),
//! a Markdown twin of each page, every table as CSV — with relative links only.

use super::sweep::{self, write_csv};
use super::table::Table;
use super::{templates, Nav};
use crate::store::scan::{scan, Scan, Stored, StoredRun};
use crate::store::{write_atomic, RunResults, SweepResults};
use anyhow::{bail, Context, Result};
use polars::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Say which run folders are left out because their results cannot be read.
fn warn_unreadable(scan: &Scan) {
    for (dir, why) in &scan.unreadable {
        eprintln!("kdrun: skipped {}: {why}", dir.display());
    }
}

/// Re-render the pages of every run and sweep of `store` into the report folder it wrote them
/// to (where several runs share one, as runs of one recipe do, the newest one's pages end
/// there, as after the runs themselves). Results from before kdrun recorded that folder go to
/// `<report.dir>/<name>` of their resolved recipe. Returns the folders written.
pub fn rerender(store: &Path) -> Result<Vec<PathBuf>> {
    let scan = scan(store)?;
    warn_unreadable(&scan);
    let mut written: Vec<PathBuf> = Vec::new();
    for run in &scan.runs {
        let (recorded, first) = match &run.stored {
            Stored::Run(r) => (r.report_dir.as_str(), Some(r.as_ref())),
            Stored::Sweep(s) => (s.report_dir.as_str(), s.first_ok()),
        };
        let target = if recorded.is_empty() {
            first
                .and_then(RunResults::recipe_report_dir)
                .unwrap_or_else(|| run.dir.join("report"))
        } else {
            PathBuf::from(recorded)
        };
        match &run.stored {
            Stored::Run(r) => {
                super::write_all(r, &target, None)
                    .with_context(|| format!("re-rendering {}", run.dir.display()))?;
            }
            Stored::Sweep(s) => {
                sweep::write(s, &target, None)
                    .with_context(|| format!("re-rendering {}", run.dir.display()))?;
                sweep::write_trial_pages(s, &target)?;
            }
        }
        if !written.contains(&target) {
            written.push(target);
        }
    }
    Ok(written)
}

/// The marker that makes a folder a kdrun site, which `publish` may replace.
pub const SITE_MARKER: &str = ".kdrun-site";

/// What `publish` wrote.
pub struct Published {
    pub index: PathBuf,
    pub runs: usize,
    pub sweeps: usize,
    pub unfinished: usize,
    pub unreadable: usize,
}

/// `2026-11-28T01-51-06Z` → `2026-11-28 01:51:06 UTC`.
pub fn pretty_time(stamp: &str) -> String {
    match stamp.split_once('T') {
        Some((date, time)) if time.len() >= 8 => {
            let (hms, rest) = time.split_at(8);
            let hms = hms.replace('-', ":");
            match rest.trim_start_matches('Z').trim_start_matches('-') {
                "" => format!("{date} {hms} UTC"),
                n => format!("{date} {hms} UTC ({n})"),
            }
        }
        _ => stamp.to_string(),
    }
}

/// A run's page folder in a site, relative to its index.
fn site_path(run: &StoredRun) -> String {
    format!("{}/{}", run.recipe, run.stamp)
}

/// The trials of a sweep's setting chosen on the validation split (see [`sweep::select`]).
fn chosen_trials(s: &SweepResults) -> Vec<&RunResults> {
    let sel = sweep::selection(s).unwrap_or(crate::recipe::Select::Model("distilled"));
    let Some(choice) = sweep::choose(s, sel) else {
        return Vec::new();
    };
    s.trials
        .iter()
        .zip(&choice.rows)
        .filter(|(_, chosen)| **chosen)
        .filter_map(|(t, _)| t.results.as_ref())
        .collect()
}

/// Of the models of some runs (a run, or a sweep setting's seeds), the one with the best
/// validation accuracy (mean over the runs; ties go to the first): its label, mean test
/// accuracy and mean validation accuracy. Models without a validation score take no part.
fn valid_chosen(runs: &[&RunResults]) -> Option<(String, f64, f64)> {
    let first = runs.first()?;
    let mut best: Option<(String, f64, f64)> = None;
    for m in &first.models {
        let of: Option<Vec<&crate::store::ModelResult>> =
            runs.iter().map(|r| r.model(&m.key)).collect();
        let Some(of) = of else { continue };
        let n = of.len() as f64;
        let valid = of.iter().map(|m| m.best_valid_accuracy).sum::<f64>() / n;
        let test = of.iter().map(|m| m.report.accuracy).sum::<f64>() / n;
        if valid.is_finite() && best.as_ref().is_none_or(|b| valid > b.2) {
            best = Some((m.label.clone(), test, valid));
        }
    }
    best
}

/// One row per finished run or sweep: the index's table (a sweep shows its setting chosen on
/// the validation split, test accuracies averaged over that setting's seeds).
pub fn runs_frame(runs: &[StoredRun]) -> PolarsResult<DataFrame> {
    let rows: Vec<(&StoredRun, Vec<&RunResults>, String)> = runs
        .iter()
        .rev()
        .map(|run| match &run.stored {
            Stored::Run(r) => (run, vec![r.as_ref()], "run".to_string()),
            Stored::Sweep(s) => {
                let chosen = chosen_trials(s);
                let kind = format!(
                    "sweep of {} trials (setting chosen on validation, mean of {} seed(s))",
                    s.trials.len(),
                    chosen.len()
                );
                (run, chosen, kind)
            }
        })
        .collect();
    let acc = |key: &str| -> Vec<Option<f64>> {
        rows.iter()
            .map(|(_, rs, _)| {
                let xs: Option<Vec<f64>> = rs
                    .iter()
                    .map(|r| r.model(key).map(|m| m.report.accuracy))
                    .collect();
                xs.filter(|xs| !xs.is_empty())
                    .map(|xs| xs.iter().sum::<f64>() / xs.len() as f64)
            })
            .collect()
    };
    let chosen: Vec<Option<(String, f64, f64)>> =
        rows.iter().map(|(_, rs, _)| valid_chosen(rs)).collect();
    df!(
        "finished" => rows.iter().map(|(run, rs, _)| {
            pretty_time(rs.iter().map(|r| r.finished.as_str()).max().unwrap_or(run.stamp.as_str()))
        }).collect::<Vec<_>>(),
        "recipe" => rows.iter().map(|(run, _, _)| run.recipe.clone()).collect::<Vec<_>>(),
        "kind" => rows.iter().map(|(_, _, k)| k.clone()).collect::<Vec<_>>(),
        "teacher" => acc("teacher"),
        "student alone" => acc("student"),
        "distilled" => acc("distilled"),
        "valid_chosen_test_accuracy" => chosen.iter().map(|c| c.as_ref().map(|c| c.1)).collect::<Vec<_>>(),
        "valid-chosen model" => chosen.iter().map(|c| c.as_ref().map(|c| c.0.clone())).collect::<Vec<_>>(),
        "backend" => rows.iter().map(|(_, rs, _)| rs.first().map(|r| r.backend.clone())).collect::<Vec<_>>(),
        "page" => rows.iter().map(|(run, _, _)| format!("{}/index.html", site_path(run))).collect::<Vec<_>>(),
    )
}

/// One row per recipe: how many runs, the latest, and — of every run and every sweep's
/// validation-chosen setting — the model with the best validation accuracy, with its test
/// accuracy.
pub fn recipes_frame(runs: &[StoredRun]) -> PolarsResult<DataFrame> {
    let mut names: Vec<&str> = runs.iter().map(|r| r.recipe.as_str()).collect();
    names.sort();
    names.dedup();
    let mut count = Vec::new();
    let mut latest = Vec::new();
    let mut best = Vec::new();
    let mut best_label = Vec::new();
    let mut page = Vec::new();
    for name in &names {
        let of: Vec<&StoredRun> = runs.iter().filter(|r| r.recipe == *name).collect();
        count.push(of.len() as u64);
        let last = of.last().expect("a recipe has runs");
        latest.push(pretty_time(&last.stamp));
        page.push(format!("{}/index.html", site_path(last)));
        let mut top: Option<(String, f64, f64)> = None;
        for run in &of {
            let chosen = match &run.stored {
                Stored::Run(r) => valid_chosen(&[r.as_ref()]),
                Stored::Sweep(s) => valid_chosen(&chosen_trials(s)),
            };
            if let Some(c) = chosen {
                if top.as_ref().is_none_or(|t| c.2 > t.2) {
                    top = Some(c);
                }
            }
        }
        best.push(top.as_ref().map(|t| t.1));
        best_label.push(top.map(|t| t.0));
    }
    df!(
        "recipe" => names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        "runs" => count,
        "latest" => latest,
        "valid_chosen_test_accuracy" => best,
        "valid-chosen model" => best_label,
        "page" => page,
    )
}

/// A table whose last column (`page`) becomes each row's link.
#[derive(Serialize)]
struct LinkedTable {
    table: Table,
    /// Link targets from the HTML page and from the Markdown page.
    html: Vec<String>,
    md: Vec<String>,
}

fn linked(df: &DataFrame) -> Result<LinkedTable> {
    let pages: Vec<String> = df
        .column("page")?
        .str()?
        .iter()
        .map(|p| p.unwrap_or_default().to_string())
        .collect();
    let table = Table::from_df(&df.drop("page")?);
    Ok(LinkedTable {
        table,
        md: pages
            .iter()
            .map(|p| p.replace("/index.html", "/README.md"))
            .collect(),
        html: pages,
    })
}

#[derive(Serialize)]
struct IndexPage {
    title: String,
    store: String,
    recipes: LinkedTable,
    runs: LinkedTable,
    unfinished: usize,
    kdrun_version: String,
    csv_files: Vec<String>,
}

/// Make `out` an empty site folder: created if missing; replaced if it is a kdrun site; an
/// error if it holds anything else (publishing never deletes what it did not write).
fn prepare(out: &Path) -> Result<()> {
    if out.exists() {
        let empty = std::fs::read_dir(out)
            .with_context(|| format!("cannot read {}", out.display()))?
            .next()
            .is_none();
        if !empty {
            if !out.join(SITE_MARKER).is_file() {
                bail!(
                    "{} is not empty and not a kdrun site (no {SITE_MARKER} file): choose another --out",
                    out.display()
                );
            }
            std::fs::remove_dir_all(out)
                .with_context(|| format!("cannot replace the site in {}", out.display()))?;
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    write_atomic(
        &out.join(SITE_MARKER),
        b"This folder was written by `kdrun publish`, which replaces it when run again.\n",
    )?;
    Ok(())
}

/// Write the static site of `store` to `out`.
pub fn publish(store: &Path, out: &Path) -> Result<Published> {
    let scan = scan(store)?;
    warn_unreadable(&scan);
    prepare(out)?;
    let up = Nav {
        text: "all runs".into(),
        html: "../../index.html".into(),
        md: "../../README.md".into(),
    };
    let (mut n_runs, mut n_sweeps) = (0, 0);
    for run in &scan.runs {
        let dir = out.join(&run.recipe).join(&run.stamp);
        match &run.stored {
            Stored::Run(r) => {
                super::write_all(r, &dir, Some(up.clone()))
                    .with_context(|| format!("publishing {}", run.dir.display()))?;
                n_runs += 1;
            }
            Stored::Sweep(s) => {
                sweep::write(s, &dir, Some(up.clone()))
                    .with_context(|| format!("publishing {}", run.dir.display()))?;
                sweep::write_trial_pages(s, &dir)?;
                n_sweeps += 1;
            }
        }
    }
    let runs = runs_frame(&scan.runs)?;
    let recipes = recipes_frame(&scan.runs)?;
    write_csv(&runs, &out.join("runs.csv"))?;
    write_csv(&recipes, &out.join("recipes.csv"))?;
    let page = IndexPage {
        title: "kdrun: runs".into(),
        store: store.display().to_string(),
        recipes: linked(&recipes)?,
        runs: linked(&runs)?,
        unfinished: scan.unfinished.len() + scan.unreadable.len(),
        kdrun_version: crate::build_info::VERSION.into(),
        csv_files: vec!["runs.csv".into(), "recipes.csv".into()],
    };
    // The index uses kdrun's templates, or those of the newest run's recipe.
    let custom = scan.runs.last().and_then(|run| match &run.stored {
        Stored::Run(r) => r.templates_dir(),
        Stored::Sweep(s) => s.first_ok().and_then(RunResults::templates_dir),
    });
    let env = templates::environment(custom.as_deref())?;
    let index = out.join("index.html");
    write_atomic(
        &index,
        templates::render(&env, "index.html", &page)?.as_bytes(),
    )?;
    write_atomic(
        &out.join("README.md"),
        templates::render(&env, "index.md", &page)?.as_bytes(),
    )?;
    Ok(Published {
        index,
        runs: n_runs,
        sweeps: n_sweeps,
        unfinished: scan.unfinished.len(),
        unreadable: scan.unreadable.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_well() {
        assert_eq!(
            pretty_time("2026-11-28T01-51-06Z"),
            "2026-11-28 01:51:06 UTC"
        );
        assert_eq!(
            pretty_time("2026-11-28T01-51-06Z-2"),
            "2026-11-28 01:51:06 UTC (2)"
        );
        assert_eq!(pretty_time("odd"), "odd");
    }

    #[test]
    fn publish_refuses_a_folder_it_did_not_write() {
        let store = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        std::fs::write(out.path().join("precious.txt"), "keep").unwrap();
        let err = publish(store.path(), out.path()).err().unwrap().to_string();
        assert!(err.contains("not a kdrun site"), "{err}");
        assert!(out.path().join("precious.txt").is_file());
        // An empty store publishes an empty index, and publishing again replaces the site.
        let site = out.path().join("site");
        publish(store.path(), &site).unwrap();
        std::fs::write(site.join("stale.html"), "old").unwrap();
        // A results file another version wrote is skipped, not fatal.
        let bad = store.path().join("r/2026-01-01T00-00-00Z");
        std::fs::create_dir_all(&bad).unwrap();
        std::fs::write(bad.join("results.json"), "{\"old\": 1}").unwrap();
        let p = publish(store.path(), &site).unwrap();
        assert_eq!((p.runs, p.sweeps, p.unreadable), (0, 0, 1));
        assert!(site.join("index.html").is_file() && !site.join("stale.html").exists());
    }
}
