"""GPU check on an NVIDIA machine with PyTorch and no network.

Ship beside it (built here first with scripts/gpu-build.sh): `parity` (the release example
built with `--features wgpu`) and, if the machine lacks it, `libvulkan.so.1`. Then:

    python gpu_check.py            # in the folder holding `parity`

It writes a torchvision ResNet-50 with random weights (fc included), an input batch and
torch's CUDA eval features, times `torch.load` + `load_state_dict` onto the GPU, runs our
binary on wgpu (Vulkan) for the same checkpoint, and prints one table. Stays well inside ten
minutes (one model, three timed repetitions).
"""

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


def main():
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
        return out.returncode


if __name__ == "__main__":
    sys.exit(main())
