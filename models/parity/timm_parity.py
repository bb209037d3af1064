"""Full-size parity of burn-pretrain-models' VisionTransformer and ConvNeXt with timm.

    python models/parity/timm_parity.py [vit_small_patch16_224 vit_small_patch16_224@384 convnext_tiny ...]

Needs torch and timm (1.0.20 tested). Builds each timm model with random weights (layer scale
and position embeddings too, as `tests/fixtures/timm/generate.py` randomizes them), saves its state dict (with timm's 1000-class head), an input
batch [2, 3, S, S] and timm's eval-mode logits into a temporary folder, then runs the Rust
side (`cargo run --release --example parity`), which builds the model from its config
(`{"type": "VisionTransformer", "variant": NAME, "num_classes": 1000}`), loads the checkpoint
and compares (relative error = max abs diff / max abs value).

`NAME@SIZE` loads the checkpoint made for NAME's image size into a model of SIZE: timm's own
loader (`checkpoint_filter_fn`) resamples the position embedding for the reference, ours
through the model's default mismatch policy.
"""

import subprocess
import sys
import tempfile
from pathlib import Path

import timm
import torch
from safetensors.torch import save_file
from timm.models.vision_transformer import checkpoint_filter_fn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "timm"))
from generate import randomize  # noqa: E402  (the fixtures' random weights, gamma and pos_embed too)


def main(names):
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = {}
        for name in names:
            variant, _, size = name.partition("@")
            if variant not in models:
                models[variant] = randomize(timm.create_model(variant, pretrained=False))
                torch.save(models[variant].state_dict(), tmp / f"{variant}.pth")
            model = models[variant]
            if size:
                model = timm.create_model(variant, pretrained=False, img_size=int(size))
                model.load_state_dict(checkpoint_filter_fn(models[variant].state_dict(), model))
                model.eval()
            s = int(size) if size else model.pretrained_cfg["input_size"][-1]
            x = torch.randn(2, 3, s, s)
            with torch.no_grad():
                save_file({"input": x, "logits": model(x).contiguous()}, tmp / f"{name.replace('@', '_')}_io.safetensors")
        print(f"torch {torch.__version__}, timm {timm.__version__}", flush=True)
        cmd = ["cargo", "run", "--release", "-q", "--example", "parity", "--", str(tmp), *names]
        return subprocess.run(cmd, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["vit_small_patch16_224", "vit_small_patch16_224@384", "convnext_tiny"]))
