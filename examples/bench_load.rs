//! The Rust side of `scripts/bench_load.py`, which writes checkpoints with PyTorch and runs
//! PyTorch, burn-store and this crate side by side on the same files:
//!
//! ```text
//! cargo run --release --example bench_load -- SIDE MODEL CHECKPOINT REPS
//! ```
//!
//! SIDE is `ours` (`load_pretrained`), `ours-bf16` (the same into a model holding bf16),
//! `ours-q8` (the same with every Linear weight quantized
//! to Q8 while loading), `ours-check` (`plan_pretrained`: headers only),
//! `ours-sub` (a model of one block loaded with `sub_level` from a `linears` checkpoint) or
//! `burn-store` (`PytorchStore` for `.pth`, `SafetensorsStore` with PyTorch's adapter for
//! safetensors, both `allow_partial`). MODEL is `resnet18`..`resnet152` (our ResNet, built
//! lazily: no random init) or `linears:N` (N blocks of ViT-sized Linears, `[Linears]`).
//!
//! Prints one JSON object per run (`construct_s`, `load_s`, tensors loaded, bytes of tensor
//! data read) and a last one with the process's memory (`/proc/self/status`, KiB): resident
//! set before the first run and its peak.

use std::time::Instant;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn_pretrain::{PretrainExt, Pretrainable};
use burn_pretrain_models::ResNetConfig;
use burn_store::{
    KeyRemapper, ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};
use serde_json::json;

/// One transformer block's Linears at ViT-L/16 width (1024, MLP 4096), as PyTorch names them.
#[derive(Module, Debug, Pretrainable)]
struct LinearBlock {
    qkv: Linear,
    proj: Linear,
    fc1: Linear,
    fc2: Linear,
}

/// `blocks.{i}.{qkv,proj,fc1,fc2}`: the bulk of a ViT's bytes, without the attention maths.
#[derive(Module, Debug, Pretrainable)]
struct Linears {
    blocks: Vec<LinearBlock>,
}

fn block(device: &Device) -> LinearBlock {
    let linear = |i, o| LinearConfig::new(i, o).init(device);
    LinearBlock {
        qkv: linear(1024, 3072),
        proj: linear(1024, 1024),
        fc1: linear(1024, 4096),
        fc2: linear(4096, 1024),
    }
}

/// torchvision's `downsample.0` / `downsample.1` are our ResNet's `downsample.conv` /
/// `downsample.bn` (a `#[pretrain(rename)]` tells burn-pretrain; burn-store is told here).
fn downsample() -> KeyRemapper {
    KeyRemapper::new()
        .add_pattern(r"\.downsample\.0\.", ".downsample.conv.")
        .and_then(|r| r.add_pattern(r"\.downsample\.1\.", ".downsample.bn."))
        .unwrap_or_default()
}

/// A `/proc/self/status` field in KiB (Linux), or 0 elsewhere.
fn status_kib(field: &str) -> u64 {
    proc_kib("/proc/self/status", field)
}

/// A field in KiB of a `/proc` file of this process (Linux), or 0 elsewhere.
fn proc_kib(file: &str, field: &str) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Load `path` into `model` one way; (tensors loaded, bytes of tensor data read, or 0 where
/// the side does not say).
fn load<M>(side: &str, model: M, path: &str) -> anyhow::Result<(M, usize, u64)>
where
    M: Pretrainable + Module + Clone,
{
    Ok(match side {
        "ours" => {
            let (model, report) = model.load_pretrained(path)?;
            (model, report.loaded().len(), report.bytes_read())
        }
        "ours-q8" => {
            // Every Linear weight quantized while loading (Q8, blocks of 32, f16 scales).
            let spec = burn_pretrain::Pretrain::from_path(path).with_quantize(
                burn_pretrain::quantize::Quantize::new(burn_pretrain::quantize::Value::Q8s),
            );
            let (model, report) = model.load_pretrained(spec)?;
            (model, report.loaded().len(), report.bytes_read())
        }
        "ours-check" => {
            let report = model.plan_pretrained(path)?;
            (model, report.loaded().len(), report.bytes_read())
        }
        "burn-store" => {
            let mut model = model;
            let applied = if path.ends_with(".safetensors") {
                let mut store = SafetensorsStore::from_file(path)
                    .with_from_adapter(PyTorchToBurnAdapter)
                    .allow_partial(true)
                    .skip_enum_variants(true)
                    .remap(downsample());
                model.load_from(&mut store)?.applied.len()
            } else {
                let mut store = PytorchStore::from_file(path)
                    .allow_partial(true)
                    .skip_enum_variants(true)
                    .remap(downsample());
                model.load_from(&mut store)?.applied.len()
            };
            (model, applied, 0)
        }
        other => anyhow::bail!("unknown side `{other}`"),
    })
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [side, model, path, reps] = args.as_slice() else {
        anyhow::bail!("usage: bench_load SIDE MODEL CHECKPOINT REPS");
    };
    let reps: usize = reps.parse()?;
    let mut device = Device::flex();
    // `ours-bf16`: a model that holds bf16 (the device's float dtype), loaded as `ours`.
    if side == "ours-bf16" {
        device.configure((burn::tensor::FloatDType::BF16, burn::tensor::IntDType::I64))?;
    }
    let side = side.strip_suffix("-bf16").unwrap_or(side);
    let baseline = status_kib("VmRSS:");
    for run in 0..reps {
        let start = Instant::now();
        let (built, done, loaded, bytes, rss_loaded) =
            if let Some(n) = model.strip_prefix("linears:") {
                if side == "ours-sub" {
                    // One block, from the checkpoint's last block: only its bytes are read.
                    let last = n.parse::<usize>()? - 1;
                    let model = block(&device);
                    let built = Instant::now();
                    let spec = burn_pretrain::Pretrain::from_path(path.as_str())
                        .with_sub_level(format!("blocks.{last}"));
                    let (model, report) = model.load_pretrained(spec)?;
                    let done = Instant::now();
                    let rss = status_kib("VmRSS:");
                    drop(model);
                    (built, done, report.loaded().len(), report.bytes_read(), rss)
                } else {
                    let model = Linears {
                        blocks: (0..n.parse()?).map(|_| block(&device)).collect(),
                    };
                    let built = Instant::now();
                    let (model, loaded, bytes) = load(side, model, path)?;
                    let done = Instant::now();
                    let rss = status_kib("VmRSS:");
                    drop(model);
                    (built, done, loaded, bytes, rss)
                }
            } else {
                let depth: usize = model.trim_start_matches("resnet").parse()?;
                let model = ResNetConfig::new(depth).init(&device)?;
                let built = Instant::now();
                let (model, loaded, bytes) = load(side, model, path)?;
                let done = Instant::now();
                let rss = status_kib("VmRSS:");
                if std::env::var_os("BENCH_HUGE").is_some() {
                    eprintln!(
                        "AnonHugePages {} KiB",
                        proc_kib("/proc/self/smaps_rollup", "AnonHugePages:")
                    );
                }
                drop(model);
                (built, done, loaded, bytes, rss)
            };
        println!(
            "{}",
            json!({
                "run": run,
                "construct_s": (built - start).as_secs_f64(),
                "load_s": (done - built).as_secs_f64(),
                "loaded": loaded,
                "bytes_read": bytes,
                // The resident set with the loaded model alive.
                "rss_loaded_kib": rss_loaded,
            })
        );
    }
    println!(
        "{}",
        json!({
            "baseline_rss_kib": baseline,
            "peak_rss_kib": status_kib("VmHWM:"),
            "rss_anon_kib": status_kib("RssAnon:"),
            "rss_file_kib": status_kib("RssFile:"),
        })
    );
    Ok(())
}
