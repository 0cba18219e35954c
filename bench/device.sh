#!/usr/bin/env bash
# The GPU check in one call, for a machine lent by the `device` tool (torch there, no Rust):
# kdrun's benchmark on wgpu, its PyTorch twin on CUDA, their comparison, and recipes/tnews-gpu.toml
# on wgpu to a report. Everything it writes goes to $OUT (default bench/out/device).
#
# Here, before the call (see bench/pack-device.sh): the release binary xz-compressed in .dev/,
# the Vulkan loader's Debian packages in .gl/ (both git-ignored). The call:
#   run(command="bash bench/device.sh", carry=[".dev", ".gl"], timeout_s=...)
# Knobs: QUICK=1 (smoke test: --quick for both benchmarks, one epoch each for the recipe),
# ONLY=<text> (benchmark workloads whose name contains it), TORCH_DEVICE (default cuda),
# KDRUN (a kdrun binary to use instead of .dev/kdrun.xz), RECIPE (default recipes/tnews-gpu.toml;
# empty: none).
#
# wgpu's compiled kernels and autotune results live in .dev/cubecl (kept on the machine between
# calls while it stays warm) and are copied to $OUT/cubecl, so the next session can carry them.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-bench/out/device}"
mkdir -p "$out" .dev/cubecl
out="$(cd "$out" && pwd)"
log() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$out/device.log"; }

if ! ldconfig -p | grep -q libvulkan; then
  for f in .gl/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done
  ldconfig
fi
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && [ -z "${VK_DRIVER_FILES:-}" ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nproc; python3 -c 'import torch; print("torch", torch.__version__)') >"$out/machine.txt" 2>&1

kdrun="${KDRUN:-/tmp/kdrun}"
if [ -z "${KDRUN:-}" ]; then
  python3 -c 'import lzma, shutil, sys
with lzma.open(".dev/kdrun.xz") as src, open(sys.argv[1], "wb") as dst: shutil.copyfileobj(src, dst)' "$kdrun"
  chmod +x "$kdrun"
fi
"$kdrun" --version | tee -a "$out/device.log"

quick=(); epochs=()
if [ "${QUICK:-0}" = 1 ]; then
  quick=(--quick); epochs=(--set teacher.epochs=1 --set student.epochs=1)
fi
only=()
if [ -n "${ONLY:-}" ]; then only=(--only "$ONLY"); fi

log "kdrun bench --backend wgpu"
"$kdrun" bench --backend wgpu --kernel-cache .dev/cubecl --out "$out/kdrun-gpu.json" \
  ${quick[@]+"${quick[@]}"} ${only[@]+"${only[@]}"} 2>&1 | tee "$out/kdrun-bench.txt"
log "pytorch_bench.py --device ${TORCH_DEVICE:-cuda}"
python3 bench/pytorch_bench.py --device "${TORCH_DEVICE:-cuda}" --out "$out/pytorch-gpu.json" \
  ${quick[@]+"${quick[@]}"} ${only[@]+"${only[@]}"} 2>&1 | tee "$out/pytorch-bench.txt"
if [ -f "$out/kdrun-gpu.json" ] && [ -f "$out/pytorch-gpu.json" ]; then
  python3 bench/compare.py "$out/kdrun-gpu.json" "$out/pytorch-gpu.json" | tee "$out/compare-gpu.txt"
fi
recipe="${RECIPE-recipes/tnews-gpu.toml}"
if [ -n "$recipe" ]; then
  log "kdrun $recipe --backend wgpu"
  "$kdrun" "$recipe" --backend wgpu ${epochs[@]+"${epochs[@]}"} \
    --set "runtime.store=$PWD/.dev/runs" --set "report.dir=$out/reports" 2>&1 | tail -40 | tee "$out/recipe.txt"
fi
rm -rf "$out/cubecl"; cp -r .dev/cubecl "$out/cubecl"
log "done"
