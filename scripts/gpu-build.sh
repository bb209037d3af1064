#!/usr/bin/env bash
# Builds what scripts/gpu_check.py needs, into target/gpu-check/: the `parity` and
# `bench_load` examples in release with the wgpu backend, the script and bench_load.py, and this machine's Vulkan loader (for a
# GPU machine without one). Run here; carry target/gpu-check to the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p burn-pretrain-examples --example parity --example bench_load --features wgpu
mkdir -p target/gpu-check
cp target/release/examples/parity target/release/examples/bench_load scripts/gpu_check.py \
  scripts/bench_load.py target/gpu-check/
loader="$(ldconfig -p | awk '/libvulkan.so.1 / {print $NF; exit}')"
[ -n "$loader" ] && cp -L "$loader" target/gpu-check/libvulkan.so.1 || echo "no libvulkan.so.1 here (apt-get install libvulkan1)"
ls -la target/gpu-check
