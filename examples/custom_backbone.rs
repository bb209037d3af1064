//! A user-registered backbone type built from a YAML config:
//!
//! ```text
//! cargo run --example custom_backbone
//! ```

use burn::prelude::*;
use burn_pretrain_examples::custom::my_models;

fn main() -> anyhow::Result<()> {
    let device = Device::flex();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/tiny_classifier.yaml");
    let models = my_models();
    println!(
        "registered backbones: {:?}",
        burn_pretrain_examples::custom::my_backbones().names()
    );
    let built = models.build_from_file(config, &device)?;
    print!("{}", built.report);
    let probabilities = built
        .model
        .forward(Tensor::<4>::ones([2, 3, 32, 32], &device));
    println!("probabilities: {:?}", probabilities.dims());
    Ok(())
}
