//! The seed's three scenarios, built from registry configs on bundled PyTorch checkpoints
//! (narrow torchvision ResNet-18s, `tests/fixtures/resnet`), on the CPU:
//!
//! ```text
//! cargo run --example seed
//! ```

use burn::prelude::*;
use burn_pretrain_examples::bundled;
use burn_pretrain_models::{BACKBONES, MODELS};
use serde_json::json;

fn main() -> anyhow::Result<()> {
    burn_pretrain_examples::init_logging();
    let device = Device::flex();
    let classifier_dp = bundled("resnet/classifier_dp.pth").display().to_string();
    let torchvision = bundled("resnet/resnet18_narrow.pth").display().to_string();

    println!(
        "== 1. Classifier(200 classes) from a DataParallel Classifier(100 classes) checkpoint"
    );
    let config = json!({
        "type": "Classifier",
        "backbone": {"type": "ResNet", "depth": 18, "base_channels": 8},
        "neck": {"type": "GlobalAveragePooling"},
        "head": {"type": "ClassifierHead", "dim": 64, "num_classes": 200},
        "pretrain": classifier_dp,
    });
    let built = MODELS.build(&config, &device)?;
    built.report.log();
    println!("{}", built.report);

    println!("== 2. BACKBONES: the backbone of that checkpoint, with sub_level");
    let config = json!({
        "type": "ResNet", "depth": 18, "base_channels": 8,
        "pretrain": {"path": classifier_dp, "sub_level": "backbone"},
    });
    let built = BACKBONES.build(&config, &device)?;
    built.report.log();
    println!("{}", built.report);

    println!("== 3. A ResNet from a torchvision-format file that holds `fc`");
    let config =
        json!({"type": "ResNet", "depth": 18, "base_channels": 8, "pretrain": torchvision});
    let built = BACKBONES.build(&config, &device)?;
    built.report.log();
    println!("{}", built.report);
    Ok(())
}
