#!/usr/bin/env bash
# The layout module's unit tests under Miri, which checks every memory access of its unsafe
# code (uninitialised reads, out-of-bounds pointers, data races between the transpose blocks).
# Needs the nightly toolchain with its miri and rust-src components:
#   rustup component add --toolchain nightly miri rust-src
# Not part of .ci/run (Miri builds burn's dependency tree again and runs ~1000x slower); the
# tests shrink their cases under `cfg(miri)`. Last result: ARCHITECTURE.md, "Unsafe".
set -euo pipefail
cd "$(dirname "$0")/.."
# A target folder of its own: Miri's artifacts never mix with the normal build's.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/miri"
# Isolation stays on; the layout tests touch no files, clocks or environment. Tree Borrows:
# rayon's crossbeam-epoch breaks the (experimental) Stacked Borrows rules in its own code (a
# known report, not ours: its `Local::element_of` retag), which would stop the run before our
# code is checked; its integer-to-pointer casts are allowed for the same reason. rayon's global
# pool threads are never joined, which Miri reports at exit as a leak: ignored.
export MIRIFLAGS="${MIRIFLAGS:--Zmiri-tree-borrows -Zmiri-permissive-provenance -Zmiri-ignore-leaks}"
cargo +nightly miri test -p burn-pretrain --no-default-features --lib apply::layout "$@"
