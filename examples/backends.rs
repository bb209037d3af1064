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
use burn_pretrain::PretrainExt;
use burn_pretrain_examples::{
    bundled, bundled_data, devices::devices, host_values, relative_error,
};
use burn_pretrain_models::ResNetConfig;

fn main() -> anyhow::Result<()> {
    let io = "resnet/resnet18_narrow_io.safetensors";
    let (input, expected) = (bundled_data(io, "input")?, bundled_data(io, "features")?);
    let expected = host_values(expected)?;
    for (name, device) in devices() {
        let net = ResNetConfig::resnet18()
            .with_base_channels(8)
            .init(&device)?;
        let (net, report) = net.load_pretrained(bundled("resnet/resnet18_narrow.pth"))?;
        let out = net.forward(Tensor::<4>::from_data(input.clone(), &device));
        println!(
            "{name:8} {device:?}: {} tensors loaded, relative error vs PyTorch {:.3e}",
            report.loaded().len(),
            relative_error(&host_values(out.into_data())?, &expected)
        );
    }
    Ok(())
}
