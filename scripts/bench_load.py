"""Load speed, memory and bytes read: PyTorch, burn-store and burn-pretrain side by side, in one run.

    python scripts/bench_load.py [--rounds 5] [--reps 5] [--large-blocks 24] [--markdown FILE]

Needs torch, torchvision and safetensors (fixture tools; never CI). Writes, into a temporary
folder, with PyTorch and random weights:

- torchvision's ResNet-50 as `torch.save` (.pth) and safetensors, and in float16 (safetensors);
- a "ViT-L/16-sized stack of Linears" (`blocks.N.{qkv,proj,fc1,fc2}`, width 1024, MLP 4096;
  24 blocks = 1.2 GB in float32) as safetensors and .pth, to show how time and memory grow.

Then loads every file with each side below, the sides taking turns for ROUNDS rounds (the
order rotating), each turn a fresh process that loads REPS times after a warm-up run:

- PyTorch: build the model, `torch.load(..., weights_only=True)` or `safetensors.torch.load_file`,
  then `load_state_dict`;
- burn-store 0.22.1: `PytorchStore` / `SafetensorsStore` (PyTorch adapter, memmap feature on),
  `allow_partial`, into the same burn model as ours (`examples/bench_load.rs`, flex backend);
- burn-pretrain: `load_pretrained` (our ResNet, built lazily: no random init).

Prints each side's median over its ROUNDS × REPS timed loads, the ratios ours / theirs (below 1
is faster or smaller) with their spread over the rounds (this machine's slow spells fall on
every side alike when they take turns, so the ratio holds still where times alone drift), the
peak resident-set growth of a process that loads once over the bytes the model ends up holding,
and bytes of tensor data read: a full load, `check` (`plan_pretrained`: headers only) and a
`sub_level` load of one block, which reads that block's bytes only. `--markdown FILE` also
writes the table the README shows.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TORCH_WORKER = r"""
import json, sys, time
import torch, torchvision
from safetensors.torch import load_file

def kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
    return 0

class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = torch.nn.Linear(1024, 3072)
        self.proj = torch.nn.Linear(1024, 1024)
        self.fc1 = torch.nn.Linear(1024, 4096)
        self.fc2 = torch.nn.Linear(4096, 1024)

class Linears(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.blocks = torch.nn.ModuleList(Block() for _ in range(n))

def build(name):
    if name.startswith("linears:"):
        return Linears(int(name.split(":")[1]))
    return getattr(torchvision.models, name)(weights=None)

path, name, reps = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_grad_enabled(False)
baseline = kib("VmRSS:")
for run in range(reps):
    start = time.perf_counter()
    model = build(name)
    built = time.perf_counter()
    state = load_file(path) if path.endswith(".safetensors") else torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    loaded = time.perf_counter()
    print(json.dumps({"run": run, "construct_s": built - start, "load_s": loaded - built, "loaded": len(state), "bytes_read": 0}), flush=True)
    del model, state
print(json.dumps({"baseline_rss_kib": baseline, "peak_rss_kib": kib("VmHWM:")}))
"""


def linears_state(blocks):
    import torch

    torch.manual_seed(0)
    state = {}
    for i in range(blocks):
        for name, (fan_in, fan_out) in {"qkv": (1024, 3072), "proj": (1024, 1024), "fc1": (1024, 4096), "fc2": (4096, 1024)}.items():
            state[f"blocks.{i}.{name}.weight"] = torch.randn(fan_out, fan_in) * 0.02
            state[f"blocks.{i}.{name}.bias"] = torch.randn(fan_out) * 0.02
    return state


def resnet_state(name):
    import torch
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn_like(t) * 0.05)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def write_checkpoints(folder, large_blocks):
    """(label, model, path, bytes the burn model holds once loaded)."""
    import torch
    from safetensors.torch import save_file

    out = []
    state = resnet_state("resnet50")
    # Our ResNet is the backbone: everything but `fc` and the `num_batches_tracked` counters,
    # held as float32.
    held = sum(v.numel() * 4 for k, v in state.items() if not k.startswith("fc.") and not k.endswith("num_batches_tracked"))
    for suffix in ("pth", "safetensors"):
        path = folder / f"resnet50.{suffix}"
        torch.save(state, path) if suffix == "pth" else save_file(state, path)
        out.append((f"ResNet-50 .{suffix}", "resnet50", path, held))
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    path = folder / "resnet50_f16.safetensors"
    save_file(half, path)
    out.append(("ResNet-50 f16 .safetensors", "resnet50", path, held))
    state = linears_state(large_blocks)
    held = sum(v.numel() * 4 for v in state.values())
    gb = held / 1e9
    for suffix in ("safetensors", "pth"):
        path = folder / f"linears.{suffix}"
        torch.save(state, path) if suffix == "pth" else save_file(state, path)
        out.append((f"Linears {gb:.1f} GB .{suffix}", f"linears:{large_blocks}", path, held))
    return out


def run_side(cmd, n):
    """One process loading `n` times: its per-run rows and its memory row."""
    out = subprocess.run(cmd + [str(n)], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return rows[:-1], rows[-1]


def measure(sides, rounds, reps):
    """Every side of `sides` ({name: command}) in `rounds` rounds, taking turns (the order
    rotates each round), each turn a fresh process that loads `reps` times after a warm-up run.
    Taking turns spreads this machine's slow spells over every side alike, so the ratios hold
    still where the times alone drift; a ratio's spread over the rounds shows how still.

    Per side: the median load time over every timed run, the median per round, and the peak
    resident-set growth of one more process that loads once (memory a single load costs,
    without allocator reuse between runs)."""
    names = list(sides)
    runs = {name: [] for name in names}
    per_round = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            timed, _ = run_side(sides[name], reps + 1)
            timed = timed[1:] if len(timed) > 1 else timed  # drop the warm-up
            runs[name] += timed
            per_round[name].append(statistics.median(t["load_s"] for t in timed))
    out = {}
    for name in names:
        _, memory = run_side(sides[name], 1)
        rows = runs[name]
        out[name] = {
            "load_s": statistics.median(t["load_s"] for t in rows),
            "build_load_s": statistics.median(t["construct_s"] + t["load_s"] for t in rows),
            "rounds_s": per_round[name],
            "peak_growth": (memory["peak_rss_kib"] - memory["baseline_rss_kib"]) * 1024,
            "loaded": rows[0]["loaded"],
            "bytes_read": rows[0]["bytes_read"],
        }
    return out


def spread(ours, theirs):
    """`min–max` of ours / theirs over the rounds."""
    ratios = [o / t for o, t in zip(ours["rounds_s"], theirs["rounds_s"])]
    return f"{min(ratios):.2f}–{max(ratios):.2f}"


def machine():
    cpu = platform.processor() or "cpu"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, {platform.system()} {platform.machine()}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5, help="timed loads per process, after a warm-up")
    parser.add_argument("--rounds", type=int, default=5, help="turns each side takes, interleaved")
    parser.add_argument("--large-blocks", type=int, default=24, help="blocks of the Linear stack (24: 1.2 GB)")
    parser.add_argument("--markdown", type=Path, help="also write the README's table here")
    args = parser.parse_args()

    import torch

    subprocess.run(["cargo", "build", "--release", "-q", "--example", "bench_load"], cwd=ROOT, check=True)
    ours_bin = str(ROOT / "target" / "release" / "examples" / "bench_load")
    reps = args.reps
    header_info = (f"{datetime.date.today()}, {machine()}; torch {torch.__version__} ({torch.get_num_threads()} threads); "
                   f"sides taking turns, {args.rounds} rounds of a process each that loads {args.reps} times after a warm-up; "
                   f"medians of the {args.rounds * args.reps} loads, ratios' spread over the rounds in brackets; page cache warm")
    print(header_info)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, model, path, held in write_checkpoints(Path(tmp), args.large_blocks):
            commands = {"torch": [sys.executable, "-c", TORCH_WORKER, str(path), model],
                        "store": [ours_bin, "burn-store", model, str(path)],
                        "ours": [ours_bin, "ours", model, str(path)]}
            if label == "ResNet-50 .safetensors":
                reference = [ours_bin, "ours", model, str(path)]
            elif label.endswith(".safetensors"):
                # Our f32 ResNet-50 load takes turns here too, so f16/f32 and time per byte
                # are ratios within the same rounds.
                commands["reference"] = reference
            sides = measure(commands, args.rounds, reps)
            torch_side, store, ours = sides["torch"], sides["store"], sides["ours"]
            check = run_side([ours_bin, "ours-check", model, str(path)], 1)[0][0]
            sub = run_side([ours_bin, "ours-sub", model, str(path)], 1)[0][0] if model.startswith("linears") else None
            row = {"label": label, "held": held, "torch": torch_side, "store": store, "ours": ours, "check": check, "sub": sub,
                   "reference": sides.get("reference")}
            rows.append(row)
            print(f"{label:<28} load ms: torch {torch_side['load_s'] * 1e3:8.1f}  burn-store {store['load_s'] * 1e3:8.1f}  ours {ours['load_s'] * 1e3:8.1f}"
                  f"  | ours/torch {ours['load_s'] / torch_side['load_s']:.2f} (rounds {spread(ours, torch_side)})"
                  f"  ours/burn-store {ours['load_s'] / store['load_s']:.2f} (rounds {spread(ours, store)})", flush=True)
            print(f"{'':<28} build + load ms: torch {torch_side['build_load_s'] * 1e3:8.1f}  burn-store {store['build_load_s'] * 1e3:8.1f}  ours {ours['build_load_s'] * 1e3:8.1f}", flush=True)
            print(f"{'':<28} peak RSS growth / bytes held ({held / 2**20:.0f} MiB): torch {torch_side['peak_growth'] / held:.2f}  "
                  f"burn-store {store['peak_growth'] / held:.2f}  ours {ours['peak_growth'] / held:.2f}", flush=True)
            sub_text = f", sub_level one block {sub['bytes_read'] / 2**20:.1f} MiB ({sub['loaded']} tensors)" if sub else ""
            print(f"{'':<28} tensors loaded: torch {torch_side['loaded']}, burn-store {store['loaded']}, ours {ours['loaded']}; "
                  f"tensor bytes read: load {ours['bytes_read'] / 2**20:.1f} MiB, check {check['bytes_read']} B{sub_text}", flush=True)
    base = next(r for r in rows if r["label"] == "ResNet-50 .safetensors")
    summary = []
    for r in rows:
        ref = r["reference"]
        if r["label"].startswith("ResNet-50 f16"):
            summary.append(f"f16 → f32 / f32 load (safetensors, taking turns): {r['ours']['load_s'] / ref['load_s']:.2f} "
                           f"(rounds {spread(r['ours'], ref)})")
        if r["label"].startswith("Linears") and r["label"].endswith("safetensors"):
            per_byte = {k: {"load_s": v["load_s"] / held, "rounds_s": [t / held for t in v["rounds_s"]]}
                        for k, v, held in (("large", r["ours"], r["held"]), ("resnet", ref, base["held"]))}
            summary.append(f"time per byte, large / ResNet-50 (safetensors, taking turns): "
                           f"{per_byte['large']['load_s'] / per_byte['resnet']['load_s']:.2f} (rounds {spread(per_byte['large'], per_byte['resnet'])})")
    for line in summary:
        print(line, flush=True)
    if args.markdown:
        lines = [f"Measured {header_info}.", "",
                 "| checkpoint | load: PyTorch | burn-store | burn-pretrain | ours / PyTorch (rounds) | ours / burn-store (rounds) | build + load: PyTorch, burn-store, ours | peak RSS growth / bytes held: PyTorch, burn-store, ours |",
                 "|---|---:|---:|---:|---:|---:|---|---|"]
        for r in rows:
            t, s, o = r["torch"], r["store"], r["ours"]
            lines.append(f"| {r['label']} | {t['load_s'] * 1e3:.1f} ms | {s['load_s'] * 1e3:.1f} ms | {o['load_s'] * 1e3:.1f} ms | "
                         f"{o['load_s'] / t['load_s']:.2f} ({spread(o, t)}) | {o['load_s'] / s['load_s']:.2f} ({spread(o, s)}) | "
                         f"{t['build_load_s'] * 1e3:.0f}, {s['build_load_s'] * 1e3:.0f}, {o['build_load_s'] * 1e3:.0f} ms | "
                         f"{t['peak_growth'] / r['held']:.2f}, {s['peak_growth'] / r['held']:.2f}, {o['peak_growth'] / r['held']:.2f} |")
        lines += [""] + [f"- {line}" for line in summary]
        args.markdown.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
