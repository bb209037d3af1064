//! Loads the packed-layer fixtures into their burn twins and exports each back as PyTorch
//! safetensors into the folder given: `export_packed OUT_DIR`. `fixtures/packed/check_export.py`
//! runs it and loads the files into PyTorch with `strict=True`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use burn::nn::activation::ActivationConfig;
use burn::prelude::*;
use burn_pretrain::PretrainExt;
use burn_pretrain_tests::fixture;
use burn_pretrain_tests::packed::{Seq, Transformer};

fn main() {
    let out = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: export_packed OUT_DIR"),
    );
    let device = Device::flex();
    let seq = Seq::new(16, &device)
        .with_pretrain(fixture("packed/seq.pth"))
        .unwrap();
    let n = seq.save_pretrained(out.join("seq.safetensors")).unwrap();
    println!("seq: {n} tensors");
    for (case, norm_first, activation) in [
        ("transformer_post", false, ActivationConfig::Relu),
        ("transformer_pre", true, ActivationConfig::Gelu),
    ] {
        let model = Transformer::new(norm_first, activation, &device)
            .with_pretrain(fixture(&format!("packed/{case}.pth")))
            .unwrap();
        let n = model
            .save_pretrained(out.join(format!("{case}.safetensors")))
            .unwrap();
        println!("{case}: {n} tensors");
    }
}
