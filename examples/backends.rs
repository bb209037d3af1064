//! The same pretrained model on every backend compiled in:
//!
//! ```text
//! cargo run --example backends                       # flex
//! cargo run --example backends --features wgpu       # + wgpu (GPU, or lavapipe on a CPU)
//! cargo run --example backends --features ndarray,tch
//! ```
//!
//! Loads the bundled narrow torchvision ResNet-18 onto each device, runs the batch PyTorch ran,
//! and prints the relative error against PyTorch's output.

use burn::prelude::*;
use burn::tensor::{DType, TensorData};
use burn_pretrain::{Checkpoint, PretrainExt};
use burn_pretrain_examples::{bundled, devices::devices};
use burn_pretrain_models::ResNetConfig;

fn main() -> anyhow::Result<()> {
    let io = Checkpoint::open(bundled("resnet/resnet18_narrow_io.safetensors"))?;
    let read = |key: &str| -> anyhow::Result<TensorData> {
        let e = io.get(key).ok_or_else(|| anyhow::anyhow!("no `{key}`"))?;
        Ok(TensorData::from_bytes_vec(
            e.read()?,
            e.shape().to_vec(),
            DType::F32,
        ))
    };
    let (input, expected) = (read("input")?, read("features")?);
    for (name, device) in devices() {
        let net = ResNetConfig::resnet18()
            .with_base_channels(8)
            .init(&device)?;
        let (net, report) = net.load_pretrained(bundled("resnet/resnet18_narrow.pth"))?;
        let out = net.forward(Tensor::<4>::from_data(input.clone(), &device));
        let want = Tensor::<4>::from_data(expected.clone(), &device);
        let diff: f32 = (out - want.clone()).abs().max().into_scalar();
        let scale: f32 = want.abs().max().into_scalar();
        println!(
            "{name:8} {device:?}: {} tensors loaded, relative error vs PyTorch {:.3e}",
            report.loaded().len(),
            diff / scale
        );
    }
    Ok(())
}
