"""Full-size parity of burn-pretrain-models' ResNet with torchvision.

    python models/parity/resnet_parity.py [resnet18 resnet50 ...]

Needs torch and torchvision. Builds each torchvision model with random weights and random
BatchNorm statistics, saves its state dict (with `fc`, as torchvision does), an input batch
[2, 3, 224, 224] and torchvision's eval-mode features before `avgpool` into a temporary
folder, then runs the Rust side (`cargo run --release --example parity`) on it, which loads
the checkpoint into our ResNet and compares (relative error = max abs diff / max abs value).
"""

import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torchvision
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]


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
                fan_in = t[0].numel() if t.dim() > 1 else 1
                t.copy_(torch.randn_like(t) / fan_in**0.5)
    return model.eval()


def features(m, x):
    x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    return m.layer4(m.layer3(m.layer2(m.layer1(x))))


def main(names):
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in names:
            model = randomize(getattr(torchvision.models, name)(weights=None))
            torch.save(model.state_dict(), tmp / f"{name}.pth")
            x = torch.randn(2, 3, 224, 224)
            with torch.no_grad():
                save_file({"input": x, "features": features(model, x).contiguous()}, tmp / f"{name}_io.safetensors")
        print(f"torch {torch.__version__}, torchvision {torchvision.__version__}", flush=True)
        cmd = ["cargo", "run", "--release", "-q", "--example", "parity", "--", str(tmp), *names]
        return subprocess.run(cmd, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["resnet18", "resnet50"]))
