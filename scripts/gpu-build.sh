#!/usr/bin/env bash
# Builds what scripts/gpu_check.py needs, into target/gpu-check/: the `parity` example in
# release with the wgpu backend, the script itself, and this machine's Vulkan loader (for a
# GPU machine without one). Run here; carry target/gpu-check to the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p burn-pretrain-examples --example parity --features wgpu
mkdir -p target/gpu-check
cp target/release/examples/parity scripts/gpu_check.py target/gpu-check/
loader="$(ldconfig -p | awk '/libvulkan.so.1 / {print $NF; exit}')"
[ -n "$loader" ] && cp -L "$loader" target/gpu-check/libvulkan.so.1 || echo "no libvulkan.so.1 here (apt-get install libvulkan1)"
ls -la target/gpu-check
