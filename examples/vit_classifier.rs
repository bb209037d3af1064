//! A Vision Transformer classifier from a config, its backbone loaded from a timm-format
//! checkpoint, a new 200-class head, on every backend compiled in:
//!
//! ```text
//! cargo run --example vit_classifier                    # flex
//! cargo run --example vit_classifier --features ndarray # flex and ndarray
//! cargo run --example vit_classifier --features wgpu    # flex and wgpu
//! ```
//!
//! Builds `examples/configs/vit_classifier.yaml` on each device, prints what the backbone's
//! `pretrain` loaded (timm's own `head` is reported unused: the classifier has its own), checks
//! the backbone's features against timm's for the same image (relative error) and the
//! devices' features against each other, and prints the classifier's top classes. The head is not
//! trained, so its classes mean nothing yet: fine-tuning starts here.

use burn::prelude::*;
use burn_pretrain_examples::{bundled_data, devices::devices, host_values, relative_error};
use burn_pretrain_models::{Features, MODELS, Stage};

fn main() -> anyhow::Result<()> {
    let config =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/vit_classifier.yaml");
    let io = "timm/vit_narrow_io.safetensors";
    let input = bundled_data(io, "input")?;
    let timm_features = host_values(bundled_data(io, "features")?)?;
    let mut first: Option<Vec<f32>> = None;
    for (name, device) in devices() {
        let built = MODELS.build_from_file(&config, &device)?;
        println!("── {name} {device:?}\n{}", built.report);
        let model = built.model;
        let images = Tensor::<4>::from_data(input.clone(), &device);
        let Features::D2(features) = model.backbone.forward(Features::D4(images.clone())) else {
            anyhow::bail!("the backbone gives pooled features")
        };
        let features = host_values(features.into_data())?;
        println!(
            "backbone features vs timm: relative error {:.2e}",
            relative_error(&features, &timm_features)
        );
        // The head is new (random per device): only the loaded backbone is compared.
        let probabilities = model.forward(images);
        let [_, classes] = probabilities.dims();
        let (top, index) = probabilities.topk_with_indices(3, 1);
        let top = host_values(top.into_data())?;
        let index: Vec<usize> = host_values(index.into_data())?
            .into_iter()
            .map(|i| i as usize)
            .collect();
        println!("{classes} classes, top 3 (untrained head): {index:?} with {top:.4?}");
        match &first {
            None => first = Some(features),
            Some(reference) => println!(
                "backbone features vs the first backend: relative error {:.2e}",
                relative_error(&features, reference)
            ),
        }
    }
    Ok(())
}
