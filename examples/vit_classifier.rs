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
use burn::tensor::{DType, TensorData};
use burn_pretrain::Checkpoint;
use burn_pretrain_examples::{bundled, devices::devices};
use burn_pretrain_models::{Features, MODELS, Stage};

fn relative_error(a: &[f32], b: &[f32]) -> f32 {
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    diff / b.iter().map(|y| y.abs()).fold(0f32, f32::max)
}

/// A tensor's values on the host, as f32.
fn host(data: TensorData) -> anyhow::Result<Vec<f32>> {
    data.convert::<f32>()
        .try_to_vec()
        .map_err(|e| anyhow::anyhow!("{e:?}"))
}

fn main() -> anyhow::Result<()> {
    let config =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/vit_classifier.yaml");
    let io = Checkpoint::open(bundled("timm/vit_narrow_io.safetensors"))?;
    let read = |key: &str| -> anyhow::Result<TensorData> {
        let e = io.get(key).ok_or_else(|| anyhow::anyhow!("no `{key}`"))?;
        Ok(TensorData::from_bytes_vec(
            e.read()?,
            e.shape().to_vec(),
            DType::F32,
        ))
    };
    let (input, timm_features) = (read("input")?, read("features")?);
    let timm_features = host(timm_features)?;
    let mut first: Option<Vec<f32>> = None;
    for (name, device) in devices() {
        let built = MODELS.build_from_file(&config, &device)?;
        println!("── {name} {device:?}\n{}", built.report);
        let model = built.model;
        let images = Tensor::<4>::from_data(input.clone(), &device);
        let Features::D2(features) = model.backbone.forward(Features::D4(images.clone())) else {
            anyhow::bail!("the backbone gives pooled features")
        };
        let features = host(features.into_data())?;
        println!(
            "backbone features vs timm: relative error {:.2e}",
            relative_error(&features, &timm_features)
        );
        // The head is new (random per device): only the loaded backbone is compared.
        let probabilities = model.forward(images);
        let [_, classes] = probabilities.dims();
        let (top, index) = probabilities.topk_with_indices(3, 1);
        let top = host(top.into_data())?;
        let index: Vec<i64> = index
            .into_data()
            .convert::<i64>()
            .try_to_vec()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
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
