#!/usr/bin/env bash
# Prepare what bench/device.sh needs on a GPU machine lent by the `device` tool: the release
# binary, xz-compressed, in .dev/kdrun.xz, and the Vulkan loader's Debian packages in .gl/
# (both git-ignored; `carry` them). Run here, on the build machine.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
mkdir -p .dev
python3 -c 'import lzma, shutil
with open("target/release/kdrun", "rb") as src, lzma.open(".dev/kdrun.xz", "wb", preset=6) as dst: shutil.copyfileobj(src, dst)'
ls -l .dev/kdrun.xz
if ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
  mkdir -p .gl /tmp/amd64/partial
  o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
  apt-get "${o[@]}" update -qq
  (cd .gl && apt-get "${o[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
du -sh .dev .gl
