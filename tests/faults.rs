//! Process faults: a small sweep killed with SIGKILL (`kill -9`) at many points spread over the
//! run, then run again. The rerun ends as the uninterrupted run did, bit for bit; no stage that
//! was finished at the kill is computed again (its manifest, file and contents, stays); no
//! temporary folder is left; every stage folder checks out against its manifest's checksums, also
//! right after the kill. The same for a sweep with two worker processes, whose workers outlive
//! the killed sweep for a moment. And a stage damaged after it was written (a byte flipped, a
//! file cut short or deleted, a manifest garbled or gone) is named in a warning and computed
//! again.

mod common;
use common::{assert_same_trials, quick_cmd, stage_entries, sweep_trials};
use kdrun::store::stage::{Found, Stages, MANIFEST};
use kdrun::store::RunResults;
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A two-trial sweep of `recipes/quick.toml`: twelve stages, half a second on two cores.
const SWEEP: &str = "distill.temperature=1,2";
const TRIALS: usize = 2;

/// The sweep in `tmp`, with `jobs` trials at once (each a worker process) if more than one.
fn sweep_cmd(tmp: &Path, jobs: usize) -> Command {
    let mut cmd = quick_cmd(tmp, &[SWEEP]);
    if jobs > 1 {
        cmd.args(["--jobs", &jobs.to_string()]);
    }
    cmd
}

/// How a run ended: its stderr lines and its stdout, how long it ran, whether it was killed.
struct Ended {
    lines: Vec<String>,
    stdout: String,
    seconds: f64,
    killed: bool,
}

/// Where a run is killed: once it has printed its k-th line, or this long after it started.
#[derive(Debug, Clone, Copy)]
enum Point {
    Line(usize),
    After(Duration),
}

impl std::fmt::Display for Point {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Point::Line(k) => write!(f, "after line {k:>2}"),
            Point::After(d) => write!(f, "at {:>4} ms  ", d.as_millis()),
        }
    }
}

/// Run the sweep in `tmp`, killing it (SIGKILL) at `point`, or to its end without one.
fn run(tmp: &Path, jobs: usize, point: Option<Point>) -> Ended {
    let mut child = sweep_cmd(tmp, jobs)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut stdout = child.stdout.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    match point {
        None => {}
        Some(Point::Line(k)) => {
            while lines.len() < k {
                // Disconnected: the run ended before its k-th line.
                match rx.recv_timeout(Duration::from_secs(300)) {
                    Ok(line) => lines.push(line),
                    Err(_) => break,
                }
            }
        }
        Some(Point::After(d)) => std::thread::sleep(d.saturating_sub(start.elapsed())),
    }
    if point.is_some() {
        // Child::kill is SIGKILL; on a run that has ended already it does nothing.
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    let seconds = start.elapsed().as_secs_f64();
    reader.join().unwrap();
    let stdout = out_reader.join().unwrap();
    lines.extend(rx.try_iter());
    let killed = status.signal() == Some(9);
    assert!(killed || status.success(), "{status}: {}", lines.join("\n"));
    Ended {
        lines,
        stdout,
        seconds,
        killed,
    }
}

/// The sweep folder a finished run names.
fn sweep_dir(ended: &Ended) -> PathBuf {
    let line = ended
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("sweep folder: "))
        .unwrap_or_else(|| panic!("no sweep folder in\n{}", ended.stdout));
    PathBuf::from(line)
}

/// The finished stages of a store: `stage/key` → (inode of its manifest, the manifest's bytes).
fn finished(store: &Path) -> BTreeMap<String, (u64, Vec<u8>)> {
    stage_entries(store)
        .into_iter()
        .filter(|(_, name, path)| !name.contains(".tmp-") && path.join(MANIFEST).is_file())
        .map(|(stage, key, path)| {
            let manifest = path.join(MANIFEST);
            let ino = std::fs::metadata(&manifest).unwrap().ino();
            (
                format!("{stage}/{key}"),
                (ino, std::fs::read(&manifest).unwrap()),
            )
        })
        .collect()
}

/// The stages being written (temporary folders) in a store.
fn in_progress(store: &Path) -> Vec<String> {
    stage_entries(store)
        .into_iter()
        .filter(|(_, name, _)| name.contains(".tmp-"))
        .map(|(stage, _, _)| stage)
        .collect()
}

/// No half-written artifact anywhere: every stage folder in place (and every folder named as a
/// stage key) checks out against its manifest, and every `results.json` and `sweep.json` of the
/// run folders reads.
fn assert_nothing_damaged(store: &Path, when: &str) {
    let stages = Stages::new(store);
    for (stage, name, path) in stage_entries(store) {
        if name.contains(".tmp-") || !path.is_dir() {
            continue;
        }
        match stages.check(&stage, &name) {
            Found::Whole(_) => {}
            other => panic!("{when}: stage {stage}/{name} is {other:?}"),
        }
    }
    let mut files = Vec::new();
    let mut dirs = vec![store.join("quick")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if ["results.json", "sweep.json"]
                .iter()
                .any(|n| p.ends_with(n))
            {
                files.push(p);
            }
        }
    }
    for f in files {
        let read = if f.ends_with("results.json") {
            RunResults::load(&f).map(|_| ())
        } else {
            kdrun::store::SweepResults::load(&f).map(|_| ())
        };
        read.unwrap_or_else(|e| panic!("{when}: {e:#}"));
    }
}

/// Wait until no process runs on `tmp` (the workers of a killed parallel sweep), saying how many
/// there were.
fn wait_for_workers(tmp: &Path) -> usize {
    let needle = tmp.display().to_string();
    let running = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
            })
            .count()
    };
    let (found, start) = (running(), Instant::now());
    while running() > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the workers of a killed sweep still run after 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    found
}

/// The phase a kill landed in, from what it left in the store.
fn phase(store: &Path, total: usize) -> String {
    let done = finished(store).len();
    match in_progress(store).as_slice() {
        [] if done == 0 => "before any stage".to_string(),
        [] if done == total => format!("all {total} stages finished"),
        [] => format!("{done:>2} stages finished, between stages"),
        writing => format!("{done:>2} stages finished, writing {}", writing.join(" + ")),
    }
}

/// The uninterrupted run: its trials' results and stage keys.
struct Reference {
    trials: Vec<RunResults>,
    stages: BTreeSet<String>,
    lines: usize,
    seconds: f64,
}

fn reference() -> (tempfile::TempDir, Reference) {
    let tmp = tempfile::tempdir().unwrap();
    let ended = run(tmp.path(), 1, None);
    let store = tmp.path().join("runs");
    let reference = Reference {
        trials: sweep_trials(&sweep_dir(&ended), TRIALS),
        stages: finished(&store).into_keys().collect(),
        lines: ended.lines.len(),
        seconds: ended.seconds,
    };
    assert_eq!(reference.stages.len(), 12, "{:?}", reference.stages);
    (tmp, reference)
}

/// Run the sweep again to its end after a kill, and check it: it ends as the reference did, bit
/// for bit; every stage finished `before` it is kept as it was (not computed again); no damage is
/// found or left; no temporary folder remains; the store holds the reference's stages.
fn resume_and_check(
    tmp: &Path,
    jobs: usize,
    before: &BTreeMap<String, (u64, Vec<u8>)>,
    want: &Reference,
) {
    let store = tmp.join("runs");
    let ended = run(tmp, jobs, None);
    let text = ended.lines.join("\n");
    assert!(!text.contains("is damaged"), "{text}");
    let after = finished(&store);
    for (stage, kept) in before {
        assert_eq!(
            after.get(stage),
            Some(kept),
            "stage {stage}, finished before the kill, was computed again:\n{text}"
        );
    }
    assert_eq!(
        after.keys().cloned().collect::<BTreeSet<_>>(),
        want.stages,
        "{text}"
    );
    assert_eq!(in_progress(&store), Vec::<String>::new(), "{text}");
    assert_nothing_damaged(&store, "after the resume");
    assert_same_trials(&sweep_trials(&sweep_dir(&ended), TRIALS), &want.trials);
}

/// Kill, look at what the kill left, and report where it landed.
fn kill_at(tmp: &Path, jobs: usize, point: Point, n: usize, want: &Reference) -> Option<String> {
    let store = tmp.join("runs");
    let ended = run(tmp, jobs, Some(point));
    if !ended.killed {
        println!("kill {n:>2} {point}: the run had ended");
        return None;
    }
    let phase = phase(&store, want.stages.len());
    // A parallel sweep's workers outlive it until they next write to its (closed) pipe.
    let orphans = wait_for_workers(tmp);
    assert_nothing_damaged(&store, &format!("right after kill {n} ({point})"));
    let last = ended.lines.last().map_or("", String::as_str);
    let last: String = last.chars().take(60).collect();
    let orphans = if orphans > 0 {
        format!(" ({orphans} worker(s) ended after it)")
    } else {
        String::new()
    };
    println!(
        "kill {n:>2} {point} ({:.3} s): {phase:<40} last line: {last}{orphans}",
        ended.seconds
    );
    Some(phase)
}

#[test]
fn a_sweep_killed_anywhere_resumes_to_the_same_results() {
    let clock = Instant::now();
    let (_ref_dir, want) = reference();
    println!(
        "reference: {} lines, {:.3} s, {} stages",
        want.lines,
        want.seconds,
        want.stages.len()
    );
    // Kill points spread over the run: after each of 13 lines of its output, and at 13 fractions
    // of its duration. Each from an empty store, then the full rerun, checked.
    let last_line = want.lines - 2;
    let mut points: Vec<Point> = (0..13)
        .map(|i| Point::Line(1 + i * (last_line - 1) / 12))
        .collect();
    points.extend((0..13).map(|i| {
        Point::After(Duration::from_secs_f64(
            want.seconds * (i as f64 + 0.5) / 13.0,
        ))
    }));
    let mut phases = Vec::new();
    for (n, point) in points.into_iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        let Some(phase) = kill_at(tmp.path(), 1, point, n + 1, &want) else {
            continue;
        };
        phases.push(phase);
        resume_and_check(tmp.path(), 1, &finished(&tmp.path().join("runs")), &want);
    }
    let distinct: BTreeSet<&String> = phases.iter().collect();
    println!(
        "{} kills, each resumed from its store and checked; {} distinct phases; {:.1} s",
        phases.len(),
        distinct.len(),
        clock.elapsed().as_secs_f64()
    );
    assert!(phases.len() >= 20, "only {} kills landed", phases.len());
    assert!(distinct.len() >= 5, "kills not spread: {distinct:?}");
}

#[test]
fn a_sweep_killed_again_while_it_resumes_ends_the_same() {
    let clock = Instant::now();
    let (_ref_dir, want) = reference();
    // One store: each run is killed after its k-th line, the next resumes what the last left,
    // and is killed in turn (also while it checks and reuses the stages before); every stage
    // finished before a kill must stay as it is through all the runs after it.
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("runs");
    let mut kept: BTreeMap<String, (u64, Vec<u8>)> = BTreeMap::new();
    let mut kills = 0;
    for (n, k) in [2, 8, 14, 20, 26, 32].into_iter().enumerate() {
        let landed = kill_at(tmp.path(), 1, Point::Line(k), n + 1, &want);
        let now = finished(&store);
        for (stage, was) in &kept {
            assert_eq!(
                now.get(stage),
                Some(was),
                "stage {stage} was computed again"
            );
        }
        kept = now;
        kills += usize::from(landed.is_some());
    }
    resume_and_check(tmp.path(), 1, &kept, &want);
    println!(
        "{kills} kills in a row on one store, then resumed; {:.1} s",
        clock.elapsed().as_secs_f64()
    );
    assert!(kills >= 3, "only {kills} kills landed");
}

/// Change a stage's file in place (`spoil` gets its path).
fn spoil(store: &Path, stage_key: &str, file: &str, spoil: impl FnOnce(&Path)) {
    let path = store.join("stages").join(stage_key).join(file);
    assert!(path.is_file(), "{}", path.display());
    spoil(&path);
}

#[test]
fn a_damaged_stage_is_named_and_computed_again() {
    let (tmp, want) = reference();
    let store = tmp.path().join("runs");
    let before = finished(&store);
    let key_of = |stage: &str| {
        before
            .keys()
            .find(|k| k.starts_with(&format!("{stage}/")))
            .unwrap()
            .clone()
    };
    let (teacher, logits, student, distilled, eval) = (
        key_of("teacher"),
        key_of("logits"),
        key_of("student"),
        key_of("distilled"),
        key_of("eval"),
    );
    // The teacher's weights as safetensors (its `.bpk` record's bytes vary from run to run).
    let teacher_sha = file_sha(&before[&teacher].1, "teacher_hf/model.safetensors");
    let logits_sha = file_sha(&before[&logits].1, "teacher_logits.safetensors");
    // A byte flipped, a file cut short, a file deleted, a manifest garbled, a manifest gone.
    spoil(&store, &teacher, "teacher.bpk", |p| {
        let mut bytes = std::fs::read(p).unwrap();
        let i = bytes.len() / 2;
        bytes[i] ^= 0x01;
        std::fs::write(p, bytes).unwrap();
    });
    spoil(&store, &logits, "teacher_logits.safetensors", |p| {
        let bytes = std::fs::read(p).unwrap();
        std::fs::write(p, &bytes[..bytes.len() - 100]).unwrap();
    });
    spoil(&store, &student, "fit.json", |p| {
        std::fs::remove_file(p).unwrap()
    });
    spoil(&store, &distilled, MANIFEST, |p| {
        let bytes = std::fs::read(p).unwrap();
        std::fs::write(p, &bytes[..bytes.len() / 2]).unwrap();
    });
    spoil(&store, &eval, MANIFEST, |p| {
        std::fs::remove_file(p).unwrap()
    });

    let ended = run(tmp.path(), 1, None);
    let text = ended.lines.join("\n");
    for (stage_key, what) in [
        (
            &teacher,
            "teacher.bpk: its sha256 differs from the manifest's",
        ),
        (&logits, "teacher_logits.safetensors: "),
        (&student, "fit.json: missing"),
        (&distilled, "manifest.json: not a stage manifest"),
        (&eval, "manifest.json: missing"),
    ] {
        let line = format!("warning: stage {stage_key} is damaged, computing it again: {what}");
        assert!(text.contains(&line), "no `{line}` in\n{text}");
    }
    assert_eq!(text.matches("is damaged").count(), 5, "{text}");
    // Computed again, to the same bytes where training is deterministic; every other stage as
    // it was.
    let after = finished(&store);
    let spoiled = [&teacher, &logits, &student, &distilled, &eval];
    for (stage, was) in &before {
        if spoiled.contains(&stage) {
            assert_ne!(
                after.get(stage),
                Some(was),
                "{stage} was not computed again"
            );
        } else {
            assert_eq!(after.get(stage), Some(was), "{stage} was computed again");
        }
    }
    assert_eq!(
        file_sha(&after[&teacher].1, "teacher_hf/model.safetensors"),
        teacher_sha
    );
    assert_eq!(
        file_sha(&after[&logits].1, "teacher_logits.safetensors"),
        logits_sha
    );
    assert_eq!(after.keys().cloned().collect::<BTreeSet<_>>(), want.stages);
    assert_eq!(in_progress(&store), Vec::<String>::new());
    assert_nothing_damaged(&store, "after the rerun");
    assert_same_trials(&sweep_trials(&sweep_dir(&ended), TRIALS), &want.trials);
}

#[test]
fn a_parallel_sweep_killed_resumes_to_the_same_results() {
    let clock = Instant::now();
    let (_ref_dir, want) = reference();
    // How long the sweep takes with two workers, for the kill points.
    let timing = tempfile::tempdir().unwrap();
    let seconds = run(timing.path(), 2, None).seconds;
    let mut kills = 0;
    for i in 0..5 {
        let tmp = tempfile::tempdir().unwrap();
        let at = Duration::from_secs_f64(seconds * (i as f64 + 0.5) / 6.0);
        if kill_at(tmp.path(), 2, Point::After(at), i + 1, &want).is_some() {
            kills += 1;
            resume_and_check(tmp.path(), 2, &finished(&tmp.path().join("runs")), &want);
        }
    }
    println!(
        "{kills} kills of a sweep with two workers, each resumed and checked; {:.1} s",
        clock.elapsed().as_secs_f64()
    );
    assert!(kills >= 3, "only {kills} kills landed");
}

/// The sha256 that a stage's manifest (its bytes) lists for `file`.
fn file_sha(manifest: &[u8], file: &str) -> String {
    let m: kdrun::store::stage::Manifest = serde_json::from_slice(manifest).unwrap();
    m.files
        .unwrap()
        .into_iter()
        .find(|f| f.path == file)
        .unwrap()
        .sha256
}
