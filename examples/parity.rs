//! Full-size parity with torchvision and timm: run by `models/parity/resnet_parity.py` and
//! `models/parity/timm_parity.py`, which write checkpoints with random weights, an input
//! batch and the reference's eval-mode outputs into DIR, then call
//!
//! ```text
//! cargo run --release --example parity -- DIR resnet18 resnet50
//! cargo run --release --example parity -- DIR vit_small_patch16_224 vit_small_patch16_224@384 convnext_tiny
//! ```
//!
//! ResNets compare the features before `avgpool`, timm models their logits (`NAME@SIZE`: the
//! checkpoint made for the name's size loaded into a model of SIZE, its position embedding
//! resampled). Prints the relative error (max |ours − reference| / max |reference|) per model
//! and exits non-zero above 1e-4. `PARITY_DEVICE=wgpu` (or `ndarray`, `tch`; the backend compiled
//! in) runs on that device instead of flex; the load time includes moving to the device.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::*;
use burn::tensor::{DType, TensorData};
use burn_pretrain::{Checkpoint, PretrainExt};
use burn_pretrain_models::{BACKBONES, Features, ResNetConfig, Stage};

fn tensor<const D: usize>(
    ckpt: &Checkpoint,
    key: &str,
    device: &Device,
) -> anyhow::Result<Tensor<D>> {
    let entry = ckpt
        .get(key)
        .ok_or_else(|| anyhow::anyhow!("{} has no `{key}`", ckpt.path().display()))?;
    let data = TensorData::from_bytes_vec(entry.read()?, entry.shape().to_vec(), DType::F32);
    Ok(Tensor::from_data(data, device))
}

/// A timm model (`vit_small_patch16_224`, or `vit_small_patch16_224@384`: its 224
/// checkpoint in a 384 model) built from its config, with timm's 1000-class head; compares
/// the logits. Returns the relative error.
fn timm(dir: &Path, name: &str, device: &Device) -> anyhow::Result<f32> {
    let (variant, size) = match name.split_once('@') {
        Some((variant, size)) => (variant, Some(size.parse::<usize>()?)),
        None => (name, None),
    };
    let ty = if variant.starts_with("vit_") {
        "VisionTransformer"
    } else {
        "ConvNeXt"
    };
    let mut config = serde_json::json!({
        "type": ty, "variant": variant, "num_classes": 1000,
        "pretrain": dir.join(format!("{variant}.pth")),
    });
    if let Some(size) = size {
        config["img_size"] = size.into();
    }
    let start = Instant::now();
    let built = BACKBONES.build(&config, device)?;
    let load = start.elapsed();
    let report = &built.report.loads()[0].report;
    anyhow::ensure!(
        report.missing().is_empty()
            && report.mismatched().is_empty()
            && report.unexpected().is_empty(),
        "{report}"
    );
    let io = Checkpoint::open(dir.join(format!("{}_io.safetensors", name.replace('@', "_"))))?;
    let x = tensor::<4>(&io, "input", device)?;
    let want = tensor::<2>(&io, "logits", device)?;
    let start = Instant::now();
    let Features::D2(got) = Stage::forward(&built.model, Features::D4(x)) else {
        anyhow::bail!("{name}: the model gives logits")
    };
    let diff: f32 = (got - want.clone()).abs().max().into_scalar();
    let forward = start.elapsed();
    let scale: f32 = want.abs().max().into_scalar();
    let adapted: Vec<String> = report
        .adapted()
        .iter()
        .map(|a| format!(", {} {}", a.key, a.how))
        .collect();
    println!(
        "{name}: {} tensors loaded in {load:.2?}{}, forward {forward:.2?}, max abs diff {diff:.3e}, relative error {:.3e}",
        report.loaded().len(),
        adapted.concat(),
        diff / scale
    );
    Ok(diff / scale)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or_else(|| anyhow::anyhow!("usage: parity DIR MODEL..."))?,
    );
    let device_name = std::env::var("PARITY_DEVICE").unwrap_or_else(|_| "flex".into());
    let device = burn_pretrain_examples::devices::device(&device_name).ok_or_else(|| {
        anyhow::anyhow!("PARITY_DEVICE={device_name}: backend not compiled in (cargo feature)")
    })?;
    println!("device: {device_name} {device:?}");
    let mut worst = 0f32;
    for name in args {
        if name.starts_with("vit_") || name.starts_with("convnext_") {
            worst = worst.max(timm(&dir, &name, &device)?);
            continue;
        }
        let config = match name.as_str() {
            "resnet18" => ResNetConfig::resnet18(),
            "resnet34" => ResNetConfig::resnet34(),
            "resnet50" => ResNetConfig::resnet50(),
            "resnet101" => ResNetConfig::resnet101(),
            "resnext50_32x4d" => ResNetConfig::resnext50_32x4d(),
            "wide_resnet50_2" => ResNetConfig::wide_resnet50_2(),
            other => anyhow::bail!("unknown model {other}"),
        };
        let start = Instant::now();
        let (net, report) = config
            .init(&device)?
            .load_pretrained(dir.join(format!("{name}.pth")))?;
        // Wait for the device so the time covers the transfer, not only its submission.
        let _: f32 = net.conv1.weight.val().sum().into_scalar();
        let load = start.elapsed();
        anyhow::ensure!(
            report.missing().is_empty() && report.mismatched().is_empty(),
            "{report}"
        );
        // Inputs and outputs as safetensors, or as a torch.save'd dict where safetensors is
        // not installed.
        let io_path = ["safetensors", "pth"]
            .map(|ext| dir.join(format!("{name}_io.{ext}")))
            .into_iter()
            .find(|p| p.exists())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no {name}_io.safetensors or {name}_io.pth in {}",
                    dir.display()
                )
            })?;
        let io = Checkpoint::open(io_path)?;
        let x = tensor::<4>(&io, "input", &device)?;
        let want = tensor::<4>(&io, "features", &device)?;
        let start = Instant::now();
        let got = net.forward(x);
        let diff: f32 = (got - want.clone()).abs().max().into_scalar();
        let forward = start.elapsed();
        let scale: f32 = want.abs().max().into_scalar();
        let rel = diff / scale;
        worst = worst.max(rel);
        println!(
            "{name}: {} tensors loaded in {load:.2?}, forward {forward:.2?}, max abs diff {diff:.3e}, relative error {rel:.3e}",
            report.loaded().len()
        );
    }
    anyhow::ensure!(worst <= 1e-4, "relative error {worst:e} above 1e-4");
    println!("parity holds: worst relative error {worst:.3e} <= 1e-4");
    Ok(())
}
