//! What `kdrun bench` reports: each workload's numbers, the run's description (the JSON that
//! `--out` writes, in the layout `bench/pytorch_bench.py` shares) and the plain-text table.

use super::{Policy, Task};
use crate::runtime::machine::Machine;
use serde::{Deserialize, Serialize};

/// One workload's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadResult {
    pub name: String,
    pub model: String,
    pub task: Task,
    pub batch: usize,
    pub tokens: usize,
    pub shape: String,
    pub params: usize,
    /// What one iteration runs.
    pub step: String,
    pub warmup_ms: Vec<f64>,
    pub iterations_ms: Vec<f64>,
    pub median_ms: f64,
    /// `batch` / median seconds.
    pub samples_per_s: f64,
    /// Kernel launches of one iteration (wgpu: counted by a cubecl launch observer after the
    /// timed iterations); absent on the CPU backend and in PyTorch's file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launches: Option<usize>,
}

/// What `kdrun bench` writes (`--out`); `bench/pytorch_bench.py` writes the same layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// `kdrun` (or `pytorch` for the twin).
    pub tool: String,
    pub version: String,
    pub commit: Option<String>,
    /// The tensor library: `burn 0.22.1`.
    pub framework: String,
    /// UTC, RFC 3339.
    pub date: String,
    pub machine: Machine,
    pub backend: String,
    pub adapter: String,
    /// CPU threads the backend may use (`RAYON_NUM_THREADS`, else every core).
    pub threads: usize,
    pub quick: bool,
    pub inputs: String,
    pub policy: Policy,
    pub workloads: Vec<WorkloadResult>,
}

/// The results as a plain-text table.
pub fn table(report: &BenchReport) -> String {
    let mut out = format!(
        "kdrun {} ({}) on {} — {}, {} threads{}\n",
        report.version,
        report.commit.as_deref().unwrap_or("unknown commit"),
        report.backend,
        report.adapter,
        report.threads,
        if report.quick {
            "; --quick: smoke test, not a measurement"
        } else {
            ""
        }
    );
    out.push_str(&format!(
        "{:<22} {:>10} {:>14} {:>12} {:>6} {:>12} {:>9}\n",
        "workload", "shape", "warm-up ms", "median ms", "iters", "samples/s", "launches"
    ));
    for w in &report.workloads {
        let warm = match w.warmup_ms.as_slice() {
            [] => "-".to_string(),
            [one] => format!("{one:.1}"),
            [first, rest @ ..] => format!("{first:.1} (+{})", rest.len()),
        };
        out.push_str(&format!(
            "{:<22} {:>10} {:>14} {:>12.1} {:>6} {:>12.1} {:>9}\n",
            w.name,
            w.shape,
            warm,
            w.median_ms,
            w.iterations_ms.len(),
            w.samples_per_s,
            w.launches.map_or("-".to_string(), |n| n.to_string())
        ));
    }
    out
}
