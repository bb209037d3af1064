"""Load speed, memory and bytes read: PyTorch, burn-store and burn-pretrain side by side, in one run.

    python scripts/bench_load.py [--rounds 5] [--reps 5] [--large-blocks 24] [--markdown FILE]
                                 [--only all|small|llama] [--llama-layers 18] [--llama-dir DIR]

Needs torch, torchvision and safetensors (fixture tools; never CI). Writes, into a temporary
folder, with PyTorch and random weights:

- torchvision's ResNet-50 as `torch.save` (.pth) and safetensors, and in float16 (safetensors);
- a "ViT-L/16-sized stack of Linears" (`blocks.N.{qkv,proj,fc1,fc2}`, width 1024, MLP 4096;
  24 blocks = 1.2 GB in float32) as safetensors and .pth, to show how time and memory grow;
- a Llama-shaped sharded bf16 checkpoint (Llama-2-7B widths, 18 decoder layers: 3.9 B
  parameters, 7.8 GB in 4 shards of 2 GB + `model.safetensors.index.json`, transformers' names),
  loaded into a bf16 model (PyTorch: built on the meta device, `load_file` per shard and
  `load_state_dict(assign=True)`, as transformers does; burn-store: a `SafetensorsStore` per
  shard), into an f32 model and quantized to Q8 while loading, beside the copy floor (the same
  bytes copied from the page cache into fresh memory by every core, `bench_load copy-floor`).
  It also reads one decoder layer with `sub_level` and loads ResNet-50 eight times in one
  process (allocator retention).
- ResNet-50 also onto burn's remote device (`bench_load ours-remote`: burn's WebSocket server in
  the same process on loopback, flex behind it), with the bytes sent counted by a proxy.

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

class DecoderLayer(torch.nn.Module):
    def __init__(self, hidden, mlp):
        super().__init__()
        self.self_attn = torch.nn.Module()
        for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
            setattr(self.self_attn, n, torch.nn.Linear(hidden, hidden, bias=False))
        self.mlp = torch.nn.Module()
        self.mlp.gate_proj = torch.nn.Linear(hidden, mlp, bias=False)
        self.mlp.up_proj = torch.nn.Linear(hidden, mlp, bias=False)
        self.mlp.down_proj = torch.nn.Linear(mlp, hidden, bias=False)
        self.input_layernorm = torch.nn.RMSNorm(hidden)
        self.post_attention_layernorm = torch.nn.RMSNorm(hidden)

class Llama(torch.nn.Module):
    # transformers' LlamaForCausalLM parameter names and shapes (Llama-2-7B widths).
    def __init__(self, layers, hidden=4096, mlp=11008, vocab=32000):
        super().__init__()
        self.model = torch.nn.Module()
        self.model.embed_tokens = torch.nn.Embedding(vocab, hidden)
        self.model.layers = torch.nn.ModuleList(DecoderLayer(hidden, mlp) for _ in range(layers))
        self.model.norm = torch.nn.RMSNorm(hidden)
        self.lm_head = torch.nn.Linear(hidden, vocab, bias=False)

def build(name):
    if name.startswith("linears:"):
        return Linears(int(name.split(":")[1]))
    if name.startswith("llama:"):
        # As transformers loads a large model: built on the meta device (no memory), every
        # shard read by safetensors and assigned (`assign=True`: the loaded tensors become
        # the parameters, no copy), in bf16 as stored.
        with torch.device("meta"):
            return Llama(int(name.split(":")[1]))
    return getattr(torchvision.models, name)(weights=None)

def load(model, path):
    if path.endswith(".index.json"):
        folder = path.rsplit("/", 1)[0]
        shards = sorted(set(json.load(open(path))["weight_map"].values()))
        loaded = 0
        for shard in shards:
            state = load_file(f"{folder}/{shard}")
            model.load_state_dict(state, strict=False, assign=True)
            loaded += len(state)
            del state
        return loaded
    state = load_file(path) if path.endswith(".safetensors") else torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return len(state)

path, name, reps = sys.argv[1], sys.argv[2], int(sys.argv[-1])
touch = "--touch" in sys.argv
torch.set_grad_enabled(False)
baseline = kib("VmRSS:")
for run in range(reps):
    start = time.perf_counter()
    model = build(name)
    built = time.perf_counter()
    loaded_n = load(model, path)
    if touch:
        # safetensors maps the file and assign=True keeps the mapping: nothing was read yet.
        # Touch one element of every page so the weights are in memory, as after a burn load.
        for p in model.parameters():
            flat = p.detach().view(-1)
            flat[:: max(1, 4096 // flat.element_size())].sum()
    loaded = time.perf_counter()
    print(json.dumps({"run": run, "construct_s": built - start, "load_s": loaded - built, "loaded": loaded_n, "bytes_read": 0}), flush=True)
    del model
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
    if not large_blocks:
        return out
    state = linears_state(large_blocks)
    held = sum(v.numel() * 4 for v in state.values())
    gb = held / 1e9
    for suffix in ("safetensors", "pth"):
        path = folder / f"linears.{suffix}"
        torch.save(state, path) if suffix == "pth" else save_file(state, path)
        out.append((f"Linears {gb:.1f} GB .{suffix}", f"linears:{large_blocks}", path, held))
    return out


LLAMA = {"hidden": 4096, "mlp": 11008, "vocab": 32000}


def llama_shapes(layers):
    """{key: shape} of the Llama-2-7B-wide LlamaForCausalLM of `layers` decoder layers."""
    h, m, v = LLAMA["hidden"], LLAMA["mlp"], LLAMA["vocab"]
    shapes = {"model.embed_tokens.weight": (v, h)}
    for i in range(layers):
        p = f"model.layers.{i}."
        for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
            shapes[f"{p}self_attn.{n}.weight"] = (h, h)
        shapes[f"{p}mlp.gate_proj.weight"] = (m, h)
        shapes[f"{p}mlp.up_proj.weight"] = (m, h)
        shapes[f"{p}mlp.down_proj.weight"] = (h, m)
        shapes[f"{p}input_layernorm.weight"] = (h,)
        shapes[f"{p}post_attention_layernorm.weight"] = (h,)
    shapes["model.norm.weight"] = (h,)
    shapes["lm_head.weight"] = (v, h)
    return shapes


def write_llama(folder, layers, shard_bytes=2 << 30):
    """A sharded bf16 checkpoint as transformers writes one (`model-0000N-of-0000M.safetensors`
    with `model.safetensors.index.json`), random weights from PyTorch; reused when present.
    Returns the index's path."""
    import torch
    from safetensors.torch import save_file

    index_path = folder / "model.safetensors.index.json"
    if index_path.exists():
        return index_path
    shapes = llama_shapes(layers)
    groups, group, size = [], [], 0
    for key, shape in shapes.items():
        n = 2 * (shape[0] * (shape[1] if len(shape) > 1 else 1))
        if group and size + n > shard_bytes:
            groups.append(group)
            group, size = [], 0
        group.append(key)
        size += n
    groups.append(group)
    torch.manual_seed(0)
    weight_map, total = {}, 0
    for i, keys in enumerate(groups):
        name = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        state = {}
        for key in keys:
            t = torch.randn(shapes[key], dtype=torch.bfloat16) * 0.02
            state[key] = t + 1 if key.endswith("norm.weight") else t
            weight_map[key] = name
            total += t.numel() * 2
        save_file(state, folder / name, metadata={"format": "pt"})
        del state
    index_path.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    return index_path


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
            # Counted by the remote side's proxy: the most any timed run sent, and got back.
            "bytes_sent": max((t.get("bytes_sent", 0) for t in rows), default=0),
            "bytes_received": max((t.get("bytes_received", 0) for t in rows), default=0),
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


def per_byte(side, held):
    """A side's times divided by the bytes it ends up holding (for `spread` and ratios)."""
    return {"load_s": side["load_s"] / held, "rounds_s": [t / held for t in side["rounds_s"]]}


def llama_section(args, ours_bin, resnet_path, resnet_held, tmp):
    """The multi-gigabyte case: a Llama-shaped sharded bf16 checkpoint into a bf16 model, an
    f32 model and quantized to Q8 while loading, beside PyTorch (`assign=True`), burn-store and
    the fresh-memory copy floor, all taking turns with our f32 ResNet-50 load (time per byte).
    Returns the lines it printed, for the markdown file."""
    import math

    folder = args.llama_dir or tmp
    folder.mkdir(parents=True, exist_ok=True)
    index = str(write_llama(folder, args.llama_layers))
    model = f"llama:{args.llama_layers}"
    shapes = llama_shapes(args.llama_layers)
    numel = {k: math.prod(v) for k, v in shapes.items()}
    total = sum(numel.values())
    quantized = [k for k in numel if k.endswith("_proj.weight") or k == "lm_head.weight"]
    held = {"bf16": 2 * total, "f32": 4 * total,
            # Q8 per block of 32 with an f16 scale: 1 + 2/32 bytes a value; the rest in f32.
            "q8": sum(numel[k] for k in quantized) * (1 + 2 / 32) + 4 * (total - sum(numel[k] for k in quantized))}
    largest_f32 = 4 * max(numel.values())
    file_bytes = sum(p.stat().st_size for p in folder.glob("model-*.safetensors"))
    sides = {"torch": [sys.executable, "-c", TORCH_WORKER, index, model],
             "touch": [sys.executable, "-c", TORCH_WORKER, index, model, "--touch"],
             "store": [ours_bin, "burn-store-bf16", model, index],
             "ours": [ours_bin, "ours-bf16", model, index],
             "f32": [ours_bin, "ours", model, index],
             # `transposed_views`: the Linear weights read as stored, held as transposed views.
             "views": [ours_bin, "ours-views-bf16", model, index],
             "views-f32": [ours_bin, "ours-views", model, index],
             # `mmap` too: those tensors ranges of each shard's copy-on-write mapping.
             "mmap": [ours_bin, "ours-mmap-bf16", model, index],
             "floor": [ours_bin, "copy-floor", model, index],
             "reference": [ours_bin, "ours", "resnet50", resnet_path]}
    m = measure(sides, args.llama_rounds, args.llama_reps)
    t, tt, st, o, f32, floor, ref = (m[k] for k in ("torch", "touch", "store", "ours", "f32", "floor", "reference"))
    views, views_f32, mapped = m["views"], m["views-f32"], m["mmap"]
    sub = run_side([ours_bin, "ours-sub", model, index], 1)[0][0]
    q8_rows, q8_mem = run_side([ours_bin, "ours-q8", model, index], 1)
    q8_growth = (q8_mem["peak_rss_kib"] - q8_mem["baseline_rss_kib"]) * 1024
    _, eight = run_side([ours_bin, "ours", "resnet50", resnet_path], 8)
    eight_growth = (eight["peak_rss_kib"] - eight["baseline_rss_kib"]) * 1024
    gb = held["bf16"] / 1e9
    ours_pb, f32_pb = per_byte(o, held["bf16"]), per_byte(f32, held["f32"])
    views_pb, views_f32_pb = per_byte(views, held["bf16"]), per_byte(views_f32, held["f32"])
    lines = [
        f"Llama-shaped, {args.llama_layers} layers, {total / 1e9:.2f} B parameters, {gb:.1f} GB bf16 in "
        f"{len(list(folder.glob('model-*.safetensors')))} shards ({file_bytes / 1e9:.2f} GB of files), {o['loaded']} tensors",
        f"load s (bf16 model): PyTorch assign=True {t['load_s']:.2f} (the shards mapped, nothing read), the same and every "
        f"page touched {tt['load_s']:.2f}, burn-store {st['load_s']:.2f}, ours {o['load_s']:.2f} "
        f"({gb / o['load_s']:.2f} GB/s); copy floor {floor['load_s']:.2f}; ours into f32 {f32['load_s']:.2f}",
        f"ours / PyTorch with every page touched {o['load_s'] / tt['load_s']:.2f} (rounds {spread(o, tt)}); ours / burn-store {o['load_s'] / st['load_s']:.2f} "
        f"(rounds {spread(o, st)}); ours / copy floor {o['load_s'] / floor['load_s']:.2f} (rounds {spread(o, floor)})",
        f"time per byte held, bf16 Llama / f32 ResNet-50: {ours_pb['load_s'] / (ref['load_s'] / resnet_held):.2f} "
        f"(rounds {spread(ours_pb, per_byte(ref, resnet_held))}); f32 Llama / bf16 Llama: "
        f"{f32_pb['load_s'] / ours_pb['load_s']:.2f} (rounds {spread(f32_pb, ours_pb)})",
        f"with transposed_views (Linear weights read as stored, held as transposed views): bf16 model {views['load_s']:.2f} s "
        f"({gb / views['load_s']:.2f} GB/s), / copy floor {views['load_s'] / floor['load_s']:.2f} (rounds {spread(views, floor)}), "
        f"/ PyTorch with every page touched {views['load_s'] / tt['load_s']:.2f} (rounds {spread(views, tt)}); f32 model "
        f"{views_f32['load_s']:.2f} s, per byte held / the bf16 model's {views_f32_pb['load_s'] / views_pb['load_s']:.2f} "
        f"(rounds {spread(views_f32_pb, views_pb)}); peak RSS growth / bytes held {views['peak_growth'] / held['bf16']:.3f}, "
        f"{views_f32['peak_growth'] / held['f32']:.3f}",
        f"with mmap as well (each shard mapped copy-on-write, its tensors ranges of it: nothing read until used, as "
        f"PyTorch's): bf16 model {mapped['load_s']:.3f} s, / PyTorch assign=True {mapped['load_s'] / t['load_s']:.2f} "
        f"(rounds {spread(mapped, t)}); peak RSS growth {mapped['peak_growth'] / 1e6:.0f} MB "
        f"({mapped['peak_growth'] / held['bf16']:.3f} of the bytes held; PyTorch {t['peak_growth'] / 1e6:.0f} MB)",
        f"peak RSS growth / bytes held: bf16 model — PyTorch (touched) {tt['peak_growth'] / held['bf16']:.2f}, burn-store "
        f"{st['peak_growth'] / held['bf16']:.2f}, ours {o['peak_growth'] / held['bf16']:.3f}; f32 model — ours "
        f"{f32['peak_growth'] / held['f32']:.3f}",
        f"Q8 while loading (every Linear weight, blocks of 32, f16 scales; the rest f32): {q8_rows[0]['load_s']:.1f} s, "
        f"holds {held['q8'] / 1e9:.2f} GB; peak RSS growth {q8_growth / 1e9:.2f} GB = "
        f"{q8_growth / (held['q8'] + largest_f32):.2f}x (held + the largest tensor in f32, {largest_f32 / 1e6:.0f} MB)",
        f"bytes read: load {o['bytes_read'] / 1e9:.2f} GB; sub_level one decoder layer {sub['bytes_read'] / 1e6:.1f} MB "
        f"({sub['loaded']} tensors; the layer holds {sum(v for k, v in numel.items() if k.startswith('model.layers.0.')) * 2 / 1e6:.1f} MB)",
        f"ResNet-50 loaded 8 times in one process (each dropped before the next): peak RSS growth / bytes held "
        f"{eight_growth / resnet_held:.2f}",
    ]
    for line in lines:
        print(line, flush=True)
    return lines


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5, help="timed loads per process, after a warm-up")
    parser.add_argument("--rounds", type=int, default=5, help="turns each side takes, interleaved")
    parser.add_argument("--large-blocks", type=int, default=24, help="blocks of the Linear stack (24: 1.2 GB)")
    parser.add_argument("--markdown", type=Path, help="also write the README's table here")
    parser.add_argument("--only", choices=["all", "small", "llama"], default="all",
                        help="small: ResNet-50 and the Linear stack; llama: the sharded multi-gigabyte case")
    parser.add_argument("--llama-layers", type=int, default=18, help="decoder layers (18: 3.9 B parameters, 7.8 GB bf16)")
    parser.add_argument("--llama-rounds", type=int, default=3, help="turns each side takes on the Llama checkpoint")
    parser.add_argument("--llama-reps", type=int, default=1, help="timed Llama loads per process, after a warm-up")
    parser.add_argument("--llama-dir", type=Path, help="write (or reuse) the Llama checkpoint here, not in a temporary folder")
    args = parser.parse_args()

    import torch

    subprocess.run(["cargo", "build", "--release", "-q", "--example", "bench_load"], cwd=ROOT, check=True)
    ours_bin = str(ROOT / "target" / "release" / "examples" / "bench_load")
    reps = args.reps
    header_info = f"{datetime.date.today()}, {machine()}; torch {torch.__version__} ({torch.get_num_threads()} threads)"
    if args.only != "llama":
        header_info += (f"; sides taking turns, {args.rounds} rounds of a process each that loads {args.reps} times after a "
                        f"warm-up; medians of the {args.rounds * args.reps} loads, ratios' spread over the rounds in brackets")
    header_info += "; page cache warm"
    if args.only != "small":
        header_info += (f"; the Llama checkpoint: {args.llama_rounds} rounds of a process each that loads {args.llama_reps} "
                        f"time(s) after a warm-up")
    print(header_info)
    rows, llama_lines = [], []
    with tempfile.TemporaryDirectory() as tmp:
        checkpoints = write_checkpoints(Path(tmp), args.large_blocks if args.only != "llama" else 0)
        resnet = next(c for c in checkpoints if c[0] == "ResNet-50 .safetensors")
        if args.only != "small":
            llama_lines = llama_section(args, ours_bin, str(resnet[2]), resnet[3], Path(tmp))
        for label, model, path, held in checkpoints if args.only != "llama" else []:
            commands = {"torch": [sys.executable, "-c", TORCH_WORKER, str(path), model],
                        "store": [ours_bin, "burn-store", model, str(path)],
                        "ours": [ours_bin, "ours", model, str(path)]}
            if label == "ResNet-50 .safetensors":
                reference = [ours_bin, "ours", model, str(path)]
                # The same load onto burn's remote device (its server in the same process, on
                # loopback, flex behind it), bytes counted by a proxy.
                commands["remote"] = [ours_bin, "ours-remote", model, str(path)]
            elif label.endswith(".safetensors"):
                # Our f32 ResNet-50 load takes turns here too, so f16/f32 and time per byte
                # are ratios within the same rounds.
                commands["reference"] = reference
            sides = measure(commands, args.rounds, reps)
            torch_side, store, ours = sides["torch"], sides["store"], sides["ours"]
            check = run_side([ours_bin, "ours-check", model, str(path)], 1)[0][0]
            sub = run_side([ours_bin, "ours-sub", model, str(path)], 1)[0][0] if model.startswith("linears") else None
            row = {"label": label, "held": held, "torch": torch_side, "store": store, "ours": ours, "check": check, "sub": sub,
                   "reference": sides.get("reference"), "remote": sides.get("remote")}
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
    base = next((r for r in rows if r["label"] == "ResNet-50 .safetensors"), None)
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
        if r["remote"]:
            rem = r["remote"]
            summary.append(f"remote device on loopback ({r['label']}, burn's WebSocket server, flex behind it): load "
                           f"{rem['load_s'] * 1e3:.1f} ms, {rem['load_s'] / r['ours']['load_s']:.1f}× the local load "
                           f"(rounds {spread(rem, r['ours'])}); bytes sent {rem['bytes_sent']:,} for {rem['bytes_read']:,} "
                           f"tensor bytes read ({rem['bytes_sent'] / rem['bytes_read']:.4f}×: each sent once), "
                           f"{rem['bytes_received']} bytes back")
    for line in summary:
        print(line, flush=True)
    if args.markdown and not rows:
        args.markdown.write_text(f"Measured {header_info}.\n\n" + "".join(f"- {line}\n" for line in llama_lines))
    elif args.markdown:
        lines = [f"Measured {header_info}.", "",
                 "| checkpoint | load: PyTorch | burn-store | burn-pretrain | ours / PyTorch (rounds) | ours / burn-store (rounds) | build + load: PyTorch, burn-store, ours | peak RSS growth / bytes held: PyTorch, burn-store, ours |",
                 "|---|---:|---:|---:|---:|---:|---|---|"]
        for r in rows:
            t, s, o = r["torch"], r["store"], r["ours"]
            lines.append(f"| {r['label']} | {t['load_s'] * 1e3:.1f} ms | {s['load_s'] * 1e3:.1f} ms | {o['load_s'] * 1e3:.1f} ms | "
                         f"{o['load_s'] / t['load_s']:.2f} ({spread(o, t)}) | {o['load_s'] / s['load_s']:.2f} ({spread(o, s)}) | "
                         f"{t['build_load_s'] * 1e3:.0f}, {s['build_load_s'] * 1e3:.0f}, {o['build_load_s'] * 1e3:.0f} ms | "
                         f"{t['peak_growth'] / r['held']:.2f}, {s['peak_growth'] / r['held']:.2f}, {o['peak_growth'] / r['held']:.2f} |")
        lines += [""] + [f"- {line}" for line in summary + llama_lines]
        args.markdown.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
