#!/usr/bin/env bash
# Runs the every-backend test on libtorch (CPU) with a pip-installed torch.
#
#   scripts/tch-test.sh
#
# Needs: python3 with venv, a C++ compiler, ~3 GB for the torch wheel. torch must be 2.9.x:
# torch-sys 0.22 compiles its C++ as C++17 and torch 2.10 and later need C++20 headers.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${TCH_VENV:-$PWD/target/tch-venv}"
[ -x "$venv/bin/python3" ] || python3 -m venv "$venv"
"$venv/bin/python3" -c 'import torch; assert torch.__version__.startswith("2.9.")' 2>/dev/null \
  || "$venv/bin/pip" install --quiet 'torch==2.9.0'
export PATH="$venv/bin:$PATH" LIBTORCH_USE_PYTORCH=1
torch_lib="$("$venv/bin/python3" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cargo test -p burn-pretrain-tests --features tch --test integration backends -- --nocapture
