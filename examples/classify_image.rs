//! A model repository to classes for images, as timm would give them:
//!
//! ```text
//! cargo run --example classify_image                                  # the bundled timm repository and images
//! cargo run --example classify_image -- hf://timm/resnet18.a1_in1k cat.jpg
//! ```
//!
//! Builds the architecture the repository's `config.json` names and loads its weights
//! (`BACKBONES.build` with `{"from": …}`), prepares each image as timm's eval transform does
//! for the repository's data config, and prints the five most probable classes with their
//! names where the config has them.

use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn_pretrain_models::preprocess::{prepare_images, top_k};
use burn_pretrain_models::{BACKBONES, Features, Stage};

fn main() -> anyhow::Result<()> {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures");
    let mut args = std::env::args().skip(1);
    let repository = args
        .next()
        .unwrap_or_else(|| format!("{fixtures}/repos/timm_resnet"));
    let mut images: Vec<String> = args.collect();
    if images.is_empty() {
        images = ["wide.png", "photo.jpg"]
            .map(|i| format!("{fixtures}/preprocess/{i}"))
            .into();
    }
    let device = Device::flex();
    let built = BACKBONES.build(&serde_json::json!({ "from": repository }), &device)?;
    print!("{}", built.report);
    let repo = &built.report.repositories()[0].repository;
    let batch = Tensor::<4>::from_data(prepare_images(&images, &repo.data)?, &device);
    let Features::D2(logits) = Stage::forward(&built.model, Features::D4(batch)) else {
        anyhow::bail!("{repository} has no classifier (num_classes 0)");
    };
    let [n, classes] = logits.dims();
    let probabilities: Vec<f32> = softmax(logits, 1).into_data().iter::<f32>().collect();
    for (image, row) in images.iter().zip(probabilities.chunks(classes)).take(n) {
        println!("{image}");
        for class in top_k(row, 5, repo.label_names.as_deref()) {
            let label = class
                .label
                .unwrap_or_else(|| format!("class {}", class.index));
            println!("  {:.4}  {label}", class.probability);
        }
    }
    Ok(())
}
