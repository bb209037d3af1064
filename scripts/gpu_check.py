"""GPU check on an NVIDIA machine with PyTorch and no network.

Ship beside it (built here first with scripts/gpu-build.sh): `parity` and `bench_load` (the
release examples built with `--features wgpu`), `bench_load.py` and, if the machine lacks it,
`libvulkan.so.1`. Then:

    python gpu_check.py [--llama-layers 18]     # in the folder holding `parity`

It writes a torchvision ResNet-50 with random weights (fc included), an input batch and
torch's CUDA eval features, times `torch.load` + `load_state_dict` onto the GPU, runs our
binary on wgpu (Vulkan) for the same checkpoint, and prints one table. Then the large case:
the Llama-shaped sharded bf16 checkpoint of `bench_load.py` (18 layers: 7.8 GB in 4 shards),
loaded onto the GPU by safetensors (`load_file(..., device="cuda")` per shard) and by ours
(`bench_load` with `BENCH_DEVICE=wgpu`, into a bf16 model, and an f16 one where wgpu has no
bf16), each in GB/s of checkpoint bytes, page cache warm (`--llama-layers 0` skips it).
Stays well inside ten minutes on a machine with 16 cores.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision

HERE = Path(__file__).resolve().parent


def randomize(model):
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                t.fill_(100)
            elif name.endswith("running_var"):
                t.copy_(torch.rand_like(t) * 1.5 + 0.5)
            elif name.endswith("running_mean"):
                t.copy_(torch.randn_like(t) * 0.2)
            elif t.dim() == 1 and "fc" not in name:
                t.copy_(torch.rand_like(t) + 0.5 if name.endswith("weight") else torch.randn_like(t) * 0.1)
            else:
                t.copy_(torch.randn_like(t) / (t[0].numel() if t.dim() > 1 else 1) ** 0.5)
    return model.eval()


def features(m, x):
    x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    return m.layer4(m.layer3(m.layer2(m.layer1(x))))


def llama(layers, tmp, env):
    """GB/s of the sharded bf16 checkpoint onto the GPU: safetensors per shard, then ours."""
    from safetensors.torch import load_file

    sys.path.insert(0, str(HERE))
    from bench_load import write_llama

    start = time.perf_counter()
    index = write_llama(tmp, layers)
    shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    size = sum((tmp / s).stat().st_size for s in shards)
    print(f"wrote {size / 1e9:.2f} GB in {len(shards)} shards in {time.perf_counter() - start:.0f} s", flush=True)
    rows = []
    times = []
    for _ in range(3):  # the first warms the page cache
        torch.cuda.synchronize()
        start = time.perf_counter()
        held = [load_file(tmp / s, device="cuda") for s in shards]
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        del held
        torch.cuda.empty_cache()
    best = min(times[1:])
    rows.append(f"| safetensors load_file(device=cuda), {len(shards)} shards, bf16 | {best:.2f} s | {size / best / 1e9:.2f} GB/s |")
    # bf16 where the device has it (Mesa's lavapipe has not: "does not support the requested
    # data type BF16"), f16, and f16 with the Linear weights as transposed views; bf16 with
    # views and `mmap` (the shards' pages handed to the device's upload, no host copy).
    for side in ["ours-bf16", "ours-mmap-bf16", "ours-f16", "ours-views-f16"]:
        out = subprocess.run([str(HERE / "bench_load"), side, f"llama:{layers}", str(index), "2"], env=env,
                             capture_output=True, text=True, timeout=400)
        runs = [json.loads(line) for line in out.stdout.splitlines() if line.startswith('{"') and "load_s" in line]
        if out.returncode != 0 or not runs:
            # The error line, not the backtrace under it (wgpu without bf16 says so here).
            error = next((line for line in out.stderr.splitlines() if line.startswith("Error:")), out.stderr[-300:])
            rows.append(f"| burn-pretrain {side} on wgpu | failed: {error.strip()} |")
            continue
        best = min(r["load_s"] for r in runs[1:] or runs)
        rows.append(f"| burn-pretrain {side} on wgpu (build + load, warm) | {best:.2f} s | "
                    f"{runs[0]['bytes_read'] / best / 1e9:.2f} GB/s of checkpoint bytes |")
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--llama-layers", type=int, default=18, help="decoder layers of the large case (0: skip it)")
    args = parser.parse_args()
    assert torch.cuda.is_available(), "no CUDA device"
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = randomize(torchvision.models.resnet50(weights=None))
        torch.save(model.state_dict(), tmp / "resnet50.pth")
        x = torch.randn(2, 3, 224, 224)
        with torch.no_grad():
            ref = features(model.cuda(), x.cuda()).cpu()
        torch.save({"input": x, "features": ref.contiguous()}, tmp / "resnet50_io.pth")
        times = []
        for _ in range(3):
            torch.cuda.synchronize()
            start = time.perf_counter()
            fresh = torchvision.models.resnet50(weights=None)
            fresh.load_state_dict(torch.load(tmp / "resnet50.pth", map_location="cuda"))
            fresh.cuda()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        torch_load = sorted(times)[1]
        env = dict(os.environ, PARITY_DEVICE="wgpu")
        if (HERE / "libvulkan.so.1").exists():
            env["LD_LIBRARY_PATH"] = f"{HERE}:{env.get('LD_LIBRARY_PATH', '')}"
        out = subprocess.run([str(HERE / "parity"), str(tmp), "resnet50"], env=env,
                             capture_output=True, text=True, timeout=480)
        print(out.stdout)
        print(out.stderr, file=sys.stderr)
        print(f"| torch {torch.__version__} | {torch.cuda.get_device_name()} |")
        print(f"| torch.load + load_state_dict to cuda (median of 3) | {torch_load * 1000:.0f} ms |")
        for line in out.stdout.splitlines():
            if line.startswith("resnet50:"):
                print(f"| burn-pretrain on wgpu | {line} |")
        if args.llama_layers:
            for row in llama(args.llama_layers, tmp, dict(env, BENCH_DEVICE="wgpu")):
                print(row, flush=True)
        return out.returncode


if __name__ == "__main__":
    sys.exit(main())
