//! `pretrain demo`: the seed's three scenarios on checkpoints bundled in the binary (narrow
//! torchvision ResNet-18s written by PyTorch, kept in `cli/assets/` so the crate packages
//! them; `tests/fixtures/resnet/` links to them), on the CPU.

use burn::prelude::*;
use burn_pretrain_models::{BACKBONES, MODELS};
use serde_json::json;

use crate::cli::DemoArgs;
use crate::output;

const CLASSIFIER_DP: &[u8] = include_bytes!("../assets/classifier_dp.pth");
const TORCHVISION: &[u8] = include_bytes!("../assets/resnet18_narrow.pth");

pub fn run(args: DemoArgs) -> anyhow::Result<i32> {
    let dir = tempfile::tempdir()?;
    let classifier_dp = dir.path().join("classifier_dp.pth");
    let torchvision = dir.path().join("resnet18-narrow.pth");
    std::fs::write(&classifier_dp, CLASSIFIER_DP)?;
    std::fs::write(&torchvision, TORCHVISION)?;
    let (classifier_dp, torchvision) = (
        classifier_dp.display().to_string(),
        torchvision.display().to_string(),
    );
    let device = Device::flex();

    let scenarios = [
        (
            "1. A Classifier(200 classes) from a DataParallel checkpoint of a Classifier(100 classes)",
            true,
            json!({
                "type": "Classifier",
                "backbone": {"type": "ResNet", "depth": 18, "base_channels": 8},
                "neck": {"type": "GlobalAveragePooling"},
                "head": {"type": "ClassifierHead", "dim": 64, "num_classes": 200},
                "pretrain": classifier_dp,
            }),
        ),
        (
            "2. BACKBONES builds a ResNet with pretrain {path, sub_level: backbone} from the same file",
            false,
            json!({"type": "ResNet", "depth": 18, "base_channels": 8,
                   "pretrain": {"path": classifier_dp, "sub_level": "backbone"}}),
        ),
        (
            "3. A ResNet from a torchvision-format file, which also holds `fc`",
            false,
            json!({"type": "ResNet", "depth": 18, "base_channels": 8, "pretrain": torchvision}),
        ),
    ];
    let mut text = String::new();
    let mut reports = Vec::new();
    for (title, classifier, config) in scenarios {
        let report = if classifier {
            MODELS.build(&config, &device)?.report
        } else {
            BACKBONES.build(&config, &device)?.report
        };
        report.log();
        let shown = report
            .to_string()
            .replace(&format!("{}/", dir.path().display()), "<bundled>/");
        text.push_str(&format!("== {title}\n{shown}\n"));
        reports.push(json!({"scenario": title, "loads": report.loads()}));
    }
    if args.json {
        output::print_json(&json!(reports))?;
    } else {
        output::print(&text)?;
    }
    Ok(0)
}
