//! The Rust side of `scripts/bench_load.py`, which writes full-size torchvision checkpoints
//! and runs PyTorch and this side by side:
//!
//! ```text
//! cargo run --release --example bench_load -- CHECKPOINT DEPTH REPS
//! ```
//!
//! Builds a ResNet of DEPTH with torchvision's layout and loads CHECKPOINT into it REPS times
//! on flex (the CPU). Prints one JSON object per run (`construct_s`, `load_s`, tensors
//! loaded) and a last one with the process's memory (`/proc/self/status`, KiB): resident set
//! before the first run and its peak.

use std::time::Instant;

use burn::prelude::*;
use burn_pretrain::PretrainExt;
use burn_pretrain_models::ResNetConfig;
use serde_json::json;

/// A `/proc/self/status` field in KiB (Linux), or 0 elsewhere.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, depth, reps] = args.as_slice() else {
        anyhow::bail!("usage: bench_load CHECKPOINT DEPTH REPS");
    };
    let depth: usize = depth.parse()?;
    let reps: usize = reps.parse()?;
    let device = Device::flex();
    let baseline = status_kib("VmRSS:");
    for run in 0..reps {
        let start = Instant::now();
        let model = ResNetConfig::new(depth).init(&device)?;
        let built = Instant::now();
        let (model, report) = model.load_pretrained(path.as_str())?;
        let loaded = Instant::now();
        // Every loaded value is a tensor in memory now; reading one back is a no-op check.
        let _ = model.conv1.weight.val().dims();
        println!(
            "{}",
            json!({
                "run": run,
                "construct_s": (built - start).as_secs_f64(),
                "load_s": (loaded - built).as_secs_f64(),
                "loaded": report.loaded().len(),
            })
        );
    }
    println!(
        "{}",
        json!({"baseline_rss_kib": baseline, "peak_rss_kib": status_kib("VmHWM:")})
    );
    Ok(())
}
