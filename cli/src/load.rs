//! `pretrain load CONFIG`: build the model, load its `pretrain`s, print the report, run one
//! inference forward pass and optionally save the output.

use anyhow::Context;
use burn::prelude::*;
use burn::tensor::TensorData;
use serde_json::json;

use crate::cli::{DeviceArg, LoadArgs};
use crate::models::{self, scoped};
use crate::{npy, output};

/// The device `arg` names: a backend compiled in, or device 0 of a burn remote server
/// (connected here: a server that does not answer is an error now, not at the first tensor).
pub fn device(arg: &DeviceArg) -> anyhow::Result<Device> {
    let (name, feature) = match arg {
        DeviceArg::Flex => ("flex", "flex"),
        DeviceArg::Ndarray => ("ndarray", "ndarray"),
        DeviceArg::Wgpu => ("wgpu", "wgpu"),
        DeviceArg::Tch => ("tch", "tch"),
        DeviceArg::Remote(_) => ("ws://", "remote"),
    };
    let device = match arg {
        #[cfg(feature = "flex")]
        DeviceArg::Flex => Some(Device::flex()),
        #[cfg(feature = "ndarray")]
        DeviceArg::Ndarray => Some(Device::ndarray()),
        #[cfg(feature = "wgpu")]
        DeviceArg::Wgpu => Some(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(feature = "tch")]
        #[allow(deprecated)]
        DeviceArg::Tch => Some(Device::libtorch()),
        #[cfg(feature = "remote")]
        DeviceArg::Remote(url) => Some(
            Device::remote_options(&burn::remote::RemoteHost::websocket(url))
                .init()
                .with_context(|| format!("--device {url}: connecting to the burn remote server"))?,
        ),
        #[allow(unreachable_patterns)]
        _ => None,
    };
    device.ok_or_else(|| {
        anyhow::anyhow!(
            "--device {name}: this build lacks the `{feature}` backend; rebuild with `--features {feature}`"
        )
    })
}

/// A deterministic batch [1, channels, h, w] when no input is given: the model's image size
/// where it fixes one, else 224×224.
fn generated(channels: usize, [h, w]: [usize; 2], device: &Device) -> Tensor<4> {
    let n = channels * h * w;
    let values: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    Tensor::from_data(TensorData::new(values, [1, channels, h, w]), device)
}

pub fn run(args: LoadArgs) -> anyhow::Result<i32> {
    let device = device(&args.device)?;
    if let Some(out) = &args.output {
        let mut inputs = models::config_inputs(&args.config)?;
        inputs.extend(args.input.iter().map(|p| ("input", p.clone())));
        output::ensure_not_input(out, &inputs)?;
    }
    let (model, report) = models::build(&args.config, &device, false)?;
    let input = match &args.input {
        Some(path) => {
            let (shape, values) = npy::read_f32(path)?;
            let dims: [usize; 4] = shape.clone().try_into().map_err(|_| {
                anyhow::anyhow!(
                    "{}: expected a [batch, channels, height, width] array, got shape {shape:?}",
                    path.display()
                )
            })?;
            // burn's convolutions panic on what they cannot take: refuse it here.
            if dims.contains(&0) {
                anyhow::bail!(
                    "{}: shape {shape:?} has an empty dimension; images need at least one pixel",
                    path.display()
                );
            }
            if let Some(channels) = model.input_channels()
                && dims[1] != channels
            {
                anyhow::bail!(
                    "{}: {} channels, the model takes {channels} (shape {shape:?} is [batch, channels, height, width])",
                    path.display(),
                    dims[1]
                );
            }
            if let Some(size) = model.input_size()
                && dims[2..] != size
            {
                anyhow::bail!(
                    "{}: {}×{} images, the model takes {}×{} (shape {shape:?} is [batch, channels, height, width])",
                    path.display(),
                    dims[2],
                    dims[3],
                    size[0],
                    size[1]
                );
            }
            Tensor::from_data(TensorData::new(values, dims), &device)
        }
        None => generated(
            model.input_channels().unwrap_or(3),
            model.input_size().unwrap_or([224, 224]),
            &device,
        ),
    };
    let (shape, values) = model.forward(input);
    if let Some(path) = &args.output {
        npy::write_f32(path, &shape, &values)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let rows = models::summarize(&model.keys(), &report);
    if args.json {
        let mut loaded = Vec::new();
        let mut missing = Vec::new();
        let mut unexpected = Vec::new();
        let mut mismatched = Vec::new();
        for load in report.loads() {
            let r = &load.report;
            loaded.extend(r.loaded().iter().map(|k| scoped(&load.scope, k)));
            missing.extend(r.missing().iter().map(|k| scoped(&load.scope, k)));
            unexpected.extend(r.unexpected().iter().cloned());
            mismatched.extend(r.mismatched().iter().map(|m| {
                json!({"key": scoped(&load.scope, &m.key), "model_shape": m.model_shape, "checkpoint_shape": m.checkpoint_shape})
            }));
        }
        output::print_json(&json!({
            "config": args.config.display().to_string(),
            "loaded": loaded,
            "missing": missing,
            "unexpected": unexpected,
            "mismatched": mismatched,
            "subtrees": rows,
            "loads": report.loads(),
            "output_shape": shape,
        }))?;
    } else {
        let mut text = report.to_string();
        text.push_str(&models::table(&rows));
        text.push_str(&format!("output {shape:?}"));
        if let Some(path) = &args.output {
            text.push_str(&format!(" saved to {}", path.display()));
        }
        text.push('\n');
        output::print(&text)?;
    }
    Ok(0)
}
