//! The seed's story on bundled PyTorch checkpoints, on the CPU:
//!
//! ```text
//! cargo run --release --example quickstart
//! ```
//!
//! 1. a classifier trained with `DataParallel` (100 → here 5 classes) loaded into one with
//!    another class count: everything but the head loads, the head is reported;
//! 2. the backbone alone, from the same file, with `sub_level = "backbone"`;
//! 3. a backbone from a torchvision-style file that also holds `fc`: reported unexpected.

use burn::prelude::*;
use burn_pretrain::{Pretrain, PretrainExt};
use burn_pretrain_examples::{Backbone, Classifier, bundled};

fn main() -> anyhow::Result<()> {
    burn_pretrain_examples::init_logging();
    let device = Device::flex();
    let training_checkpoint = bundled("dataparallel/classifier_dp.pth");

    println!("== 1. DataParallel checkpoint of a 5-class classifier into a 7-class one");
    let classifier = Classifier::new(7, &device).with_pretrain(&training_checkpoint)?;
    let (_, report) = Classifier::new(7, &device).load_pretrained(&training_checkpoint)?;
    println!("{report}");

    println!("== 2. Only the backbone, with sub_level \"backbone\"");
    let spec = Pretrain::from(&training_checkpoint).with_sub_level("backbone");
    let (backbone, report) = Backbone::new(&device).load_pretrained(spec)?;
    println!("{report}");

    println!("== 3. A torchvision-style backbone file that also holds `fc`");
    let (_, report) = Backbone::new(&device)
        .load_pretrained(bundled("torchvision_style/backbone_with_fc.pth"))?;
    println!("{report}");

    // The loaded models run as any burn model does.
    let input = Tensor::<4>::ones([1, 3, 8, 8], &device);
    let features = backbone.forward(input.clone());
    println!("backbone features: {:?}", features.dims());
    println!("classifier logits: {:?}", classifier.forward(input).dims());
    Ok(())
}
