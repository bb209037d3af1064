"""Load speed and memory, burn-pretrain beside PyTorch, in one run:

    python scripts/bench_load.py [--reps 5] [resnet18 resnet50 ...]

Needs torch, torchvision and safetensors. For each model, writes a full-size torchvision
checkpoint with random weights as `torch.save` (.pth) and safetensors into a temporary
folder, then, each in its own fresh process (so that peak memory is its own):

- PyTorch: build `torchvision.models.<name>(weights=None)`, then `torch.load(...,
  weights_only=True)` (or `safetensors.torch.load_file`) and `load_state_dict`;
- burn-pretrain: `cargo run --release --example bench_load`, which builds our ResNet (lazy:
  no random init) and `load_pretrained` the same file on flex.

Prints medians over --reps runs (the first run is a warm-up and is dropped) and the ratios
ours / PyTorch: below 1 is faster or smaller. Memory is the growth of the process's peak
resident set over its resident set before the first run (so Python's and torch's own
footprint do not count against them).
"""

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEPTH = {"resnet18": 18, "resnet34": 34, "resnet50": 50, "resnet101": 101, "resnet152": 152}

TORCH_WORKER = r"""
import json, sys, time
import torch, torchvision
from safetensors.torch import load_file

def kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
    return 0

path, name, reps = sys.argv[1], sys.argv[2], int(sys.argv[3])
baseline = kib("VmRSS:")
for run in range(reps):
    start = time.perf_counter()
    model = getattr(torchvision.models, name)(weights=None)
    built = time.perf_counter()
    state = load_file(path) if path.endswith(".safetensors") else torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    loaded = time.perf_counter()
    print(json.dumps({"run": run, "construct_s": built - start, "load_s": loaded - built, "loaded": len(state)}), flush=True)
    del model, state
print(json.dumps({"baseline_rss_kib": baseline, "peak_rss_kib": kib("VmHWM:")}))
"""


def write_checkpoints(name, folder):
    import torch
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn_like(t) * 0.05)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    pth, st = folder / f"{name}.pth", folder / f"{name}.safetensors"
    torch.save(state, pth)
    save_file(state, st)
    return [pth, st]


def measure(cmd):
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    runs, memory = rows[:-1], rows[-1]
    runs = runs[1:] if len(runs) > 1 else runs  # drop the warm-up
    return {
        "load_s": statistics.median(r["load_s"] for r in runs),
        "total_s": statistics.median(r["construct_s"] + r["load_s"] for r in runs),
        "peak_growth_mib": (memory["peak_rss_kib"] - memory["baseline_rss_kib"]) / 1024,
        "loaded": runs[0]["loaded"],
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="*", default=["resnet18", "resnet50"])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()

    import torch
    import torchvision

    subprocess.run(["cargo", "build", "--release", "-q", "--example", "bench_load"], cwd=ROOT, check=True)
    ours_bin = ROOT / "target" / "release" / "examples" / "bench_load"
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, torch threads {torch.get_num_threads()}, "
          f"{platform.machine()}, {platform.processor() or 'cpu'}; {args.reps} runs, median after a warm-up")
    header = f"{'model':<10} {'file':<12} {'load: torch':>11} {'ours':>8} {'ratio':>6}  {'build+load: torch':>17} {'ours':>8} {'ratio':>6}  {'peak MiB: torch':>15} {'ours':>7} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            for path in write_checkpoints(name, Path(tmp)):
                theirs = measure([sys.executable, "-c", TORCH_WORKER, str(path), name, str(args.reps + 1)])
                ours = measure([str(ours_bin), str(path), str(DEPTH[name]), str(args.reps + 1)])
                print(
                    f"{name:<10} {path.suffix:<12} {theirs['load_s']:>10.4f}s {ours['load_s']:>7.4f}s {ours['load_s'] / theirs['load_s']:>6.2f}"
                    f"  {theirs['total_s']:>16.4f}s {ours['total_s']:>7.4f}s {ours['total_s'] / theirs['total_s']:>6.2f}"
                    f"  {theirs['peak_growth_mib']:>15.1f} {ours['peak_growth_mib']:>7.1f} {ours['peak_growth_mib'] / max(theirs['peak_growth_mib'], 1e-9):>6.2f}",
                    flush=True,
                )
                # torch counts num_batches_tracked as loaded; we ignore them (and torchvision
                # keeps fc, which our backbone does not have).
                print(f"{'':<10} tensors loaded: torch {theirs['loaded']}, ours {ours['loaded']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
