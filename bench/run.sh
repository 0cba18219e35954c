#!/usr/bin/env bash
# Both benchmarks on this machine, then the comparison:
#   bench/run.sh [cpu|gpu] [--quick]
# cpu: `kdrun bench --backend cpu` and bench/pytorch_bench.py --device cpu, both with THREADS
#      threads (default: nproc).
# gpu: `kdrun bench --backend wgpu` and bench/pytorch_bench.py --device cuda.
# Writes $BENCH_OUT (default bench/out)/{kdrun,pytorch,compare}-MODE.{json,txt}.
# BENCH_LOCK=FILE runs the build and each timing run under `flock FILE` (a machine shared with
# others: take timings only while nobody else holds it). The kdrun binary is the one cargo builds
# (under $CARGO_TARGET_DIR where that is set).
set -euo pipefail
mode="${1:-cpu}"
shift || true
quick=()
if [ "${1:-}" = "--quick" ]; then quick=(--quick); fi
cd "$(dirname "$0")/.."
out="${BENCH_OUT:-bench/out}"
threads="${THREADS:-$(nproc)}"
lock=()
if [ -n "${BENCH_LOCK:-}" ]; then lock=(flock "$BENCH_LOCK"); fi
case "$mode" in
  cpu) kdrun_backend=cpu; torch_device=cpu ;;
  gpu) kdrun_backend=wgpu; torch_device=cuda ;;
  *) echo "usage: bench/run.sh [cpu|gpu] [--quick]" >&2; exit 2 ;;
esac
mkdir -p "$out"
${lock[@]+"${lock[@]}"} cargo build --release
${lock[@]+"${lock[@]}"} "${CARGO_TARGET_DIR:-target}/release/kdrun" bench --backend "$kdrun_backend" --threads "$threads" \
  --out "$out/kdrun-$mode.json" ${quick[@]+"${quick[@]}"}
${lock[@]+"${lock[@]}"} python3 bench/pytorch_bench.py --device "$torch_device" --threads "$threads" \
  --out "$out/pytorch-$mode.json" ${quick[@]+"${quick[@]}"}
python3 bench/compare.py "$out/kdrun-$mode.json" "$out/pytorch-$mode.json" | tee "$out/compare-$mode.txt"
