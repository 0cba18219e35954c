//! Sweeps on Slurm: three sbatch scripts in the sweep's run folder — one job for the stages all
//! trials share, a job array with one task per trial (`kdrun RECIPE --trial $SLURM_ARRAY_TASK_ID`
//! on the same store, after the shared job succeeded, `%N` at once), and a job rendering the
//! sweep's report after the array, whatever became of its tasks (without GPUs) — submitted with
//! `sbatch`. `[runtime.slurm]` says what each job asks for.

use crate::recipe::sweep::Trial;
use crate::recipe::{LoadedRecipe, SlurmSection};
use crate::store::RunDir;
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The three scripts, in submission order.
pub struct Scripts {
    pub shared: String,
    pub trials: String,
    pub report: String,
}

/// A word for bash, in single quotes.
fn quote(s: &std::ffi::OsStr) -> String {
    format!("'{}'", s.to_string_lossy().replace('\'', "'\\''"))
}

fn header(o: &SlurmSection, job: &str, out: &Path) -> String {
    let mut h = format!(
        "#!/bin/bash\n#SBATCH --job-name={job}\n#SBATCH --output={}\n",
        out.display()
    );
    for (option, value) in [
        ("partition", &o.partition),
        ("account", &o.account),
        ("time", &o.time),
        ("mem", &o.mem),
    ] {
        if !value.is_empty() {
            h += &format!("#SBATCH --{option}={value}\n");
        }
    }
    if o.cpus_per_task > 0 {
        h += &format!("#SBATCH --cpus-per-task={}\n", o.cpus_per_task);
    }
    if o.gpus_per_task > 0 {
        h += &format!("#SBATCH --gpus-per-task={}\n", o.gpus_per_task);
    }
    for option in &o.sbatch_options {
        h += &format!("#SBATCH {option}\n");
    }
    h
}

/// The scripts of a sweep of `n` trials of recipe `name`, run as `exe args…` in `workdir`, whose
/// folder is `sweep_dir`.
pub fn scripts(
    o: &SlurmSection,
    name: &str,
    n: usize,
    exe: &Path,
    args: &[OsString],
    workdir: &Path,
    sweep_dir: &Path,
) -> Scripts {
    let command = std::iter::once(exe.as_os_str())
        .chain(args.iter().map(OsString::as_os_str))
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ");
    let sweep = quote(sweep_dir.as_os_str());
    let mut cd = format!("set -e\ncd {}\n", quote(workdir.as_os_str()));
    for line in &o.setup {
        cd += line;
        cd.push('\n');
    }
    let limit = match o.array_limit {
        0 => String::new(),
        l => format!("%{l}"),
    };
    Scripts {
        shared: format!(
            "{}{cd}exec {command} --shared-stages --sweep-dir {sweep}\n",
            header(o, &format!("kdrun-{name}-shared"), &sweep_dir.join("slurm-shared-%j.out"))
        ),
        trials: format!(
            "{}#SBATCH --array=1-{n}{limit}\n{cd}exec {command} --trial \"$SLURM_ARRAY_TASK_ID\" --trial-dir {sweep}/trial-\"$(printf %03d \"$SLURM_ARRAY_TASK_ID\")\"\n",
            header(o, &format!("kdrun-{name}-trials"), &sweep_dir.join("slurm-trial-%a-%A.out"))
        ),
        report: format!(
            "{}{cd}exec {command} --sweep-report --sweep-dir {sweep}\n",
            header(
                // Rendering pages needs no GPU.
                &SlurmSection { gpus_per_task: 0, ..o.clone() },
                &format!("kdrun-{name}-report"),
                &sweep_dir.join("slurm-report-%j.out")
            )
        ),
    }
}

/// `sbatch --parsable [options…] script`: the job id.
pub fn sbatch(script: &Path, options: &[String]) -> Result<String> {
    let mut c = Command::new("sbatch");
    c.arg("--parsable").args(options);
    let out = c
        .arg(script)
        .output()
        .context("cannot run sbatch (is Slurm installed here?)")?;
    if !out.status.success() {
        bail!(
            "sbatch {} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() {
        bail!("sbatch {} printed no job id", script.display());
    }
    Ok(id)
}

/// Write the scripts into a new sweep folder and submit them (or, with `dry_run`, print them).
/// The recipe's `[runtime.slurm]` (the command line's flags already on it) says what the jobs
/// ask for. Returns the sweep folder.
pub fn submit(
    trials: &[(Trial, LoadedRecipe)],
    exe: &Path,
    args: &[OsString],
    dry_run: bool,
) -> Result<PathBuf> {
    let base = &trials[0].1.recipe;
    let o = &base.runtime.slurm;
    if let Some((t, _)) = trials.iter().find(|(_, l)| l.recipe.runtime.slurm != *o) {
        bail!(
            "trial {}: a sweep cannot vary runtime.slurm (one set of scripts runs every trial)",
            t.label()
        );
    }
    let workdir = std::env::current_dir()?;
    let sweep_dir = RunDir::create(&base.runtime.store, &base.name)?;
    // Absolute, as the jobs may start elsewhere.
    let abs = std::fs::canonicalize(&sweep_dir.path)?;
    super::sweep::write_plan(trials, &sweep_dir, args)?;
    let s = scripts(o, &base.name, trials.len(), exe, args, &workdir, &abs);
    let files = [
        ("shared.sbatch", &s.shared),
        ("trials.sbatch", &s.trials),
        ("report.sbatch", &s.report),
    ];
    for (name, text) in files {
        sweep_dir.write_text(name, text)?;
    }
    if dry_run {
        for (name, text) in files {
            println!("# {}\n{text}", abs.join(name).display());
        }
        println!("# dry run: nothing submitted");
        return Ok(abs);
    }
    let shared = sbatch(&abs.join("shared.sbatch"), &[])?;
    // A failed shared job cancels the array (rather than leaving it pending on a dependency
    // that can never be met); the report job still runs and shows the trials as not run.
    let array = sbatch(
        &abs.join("trials.sbatch"),
        &[
            format!("--dependency=afterok:{shared}"),
            "--kill-on-invalid-dep=yes".into(),
        ],
    )?;
    let report = sbatch(
        &abs.join("report.sbatch"),
        &[format!("--dependency=afterany:{array}")],
    )?;
    sweep_dir.write_text(
        crate::store::status::SLURM_JOBS_FILE,
        &format!("shared {shared}\ntrials {array}\nreport {report}\n"),
    )?;
    println!(
        "submitted: shared stages {shared}, trials {array} ({} tasks), report {report}\nsweep folder: {}",
        trials.len(),
        abs.display()
    );
    Ok(abs)
}
