//! A pretrained model loaded onto burn's remote device: the tensors are prepared on this
//! machine and cross the connection once, the model runs on the server's device.
//!
//! ```text
//! cargo run --example remote                        # a server in this process, on loopback
//! pretrain serve --listen 127.0.0.1:3000 &          # or a server elsewhere:
//! cargo run --example remote -- ws://127.0.0.1:3000
//! ```
//!
//! Loads the bundled narrow torchvision ResNet-18 onto the remote device through a proxy that
//! counts bytes, runs the batch PyTorch ran, and prints the bytes sent against the tensor bytes
//! the model holds, the load time, and the output's error against PyTorch and a local load.

use std::time::Instant;

use burn::prelude::*;
use burn_pretrain::PretrainExt;
use burn_pretrain_examples::{bundled, bundled_data, host_values, relative_error, remote};
use burn_pretrain_models::ResNetConfig;

fn main() -> anyhow::Result<()> {
    let server = match std::env::args().nth(1) {
        Some(url) => url,
        None => remote::serve(Device::flex())?,
    };
    let proxy = remote::CountingProxy::start(&server)?;
    let device = remote::connect(proxy.url())?;
    let io = "resnet/resnet18_narrow_io.safetensors";
    let input = bundled_data(io, "input")?;
    let expected = host_values(bundled_data(io, "features")?)?;
    let checkpoint = bundled("resnet/resnet18_narrow.pth");
    let config = ResNetConfig::resnet18().with_base_channels(8);

    let (sent, received) = (proxy.sent(), proxy.received());
    let start = Instant::now();
    let (net, report) = config.init(&device)?.load_pretrained(&checkpoint)?;
    device.sync()?;
    let elapsed = start.elapsed();
    let (sent, received) = (proxy.sent() - sent, proxy.received() - received);
    let held = remote::held_bytes(&net);
    println!(
        "loaded {} tensors onto {server} in {:.1} ms: {sent} bytes sent for {held} bytes of tensors \
         ({:.3}×), {received} bytes back",
        report.loaded().len(),
        elapsed.as_secs_f64() * 1e3,
        sent as f64 / held as f64,
    );

    let ours = host_values(
        net.forward(Tensor::from_data(input.clone(), &device))
            .into_data(),
    )?;
    let local = Device::flex();
    let (local_net, _) = config.init(&local)?.load_pretrained(&checkpoint)?;
    let local_out = host_values(
        local_net
            .forward(Tensor::from_data(input, &local))
            .into_data(),
    )?;
    println!(
        "relative error vs PyTorch {:.3e}, vs the same model loaded locally {:.3e}",
        relative_error(&ours, &expected),
        relative_error(&ours, &local_out),
    );
    Ok(())
}
