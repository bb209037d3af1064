//! One test body on every backend compiled in (`--features ndarray,wgpu,tch` add them): the
//! narrow torchvision ResNet-18 loads onto the device, its output matches PyTorch's and
//! flex's within 1e-4; timm's ViT and ConvNeXt match timm on each.

use burn::prelude::*;
use burn::tensor::TensorData;
use burn_pretrain::PretrainExt;
use burn_pretrain_examples::{bundled_data, devices::devices, relative_error};
use burn_pretrain_models::ResNetConfig;
use burn_pretrain_tests::fixture;

fn io(key: &str) -> TensorData {
    bundled_data("resnet/resnet18_narrow_io.safetensors", key).unwrap()
}

/// Load and run on `device`; the output comes back to the host.
fn features_on(device: &Device) -> (usize, Vec<f32>) {
    let net = ResNetConfig::resnet18()
        .with_base_channels(8)
        .init(device)
        .unwrap();
    let (net, report) = net
        .load_pretrained(fixture("resnet/resnet18_narrow.pth"))
        .unwrap();
    assert_eq!(
        net.conv1.weight.val().device(),
        *device,
        "parameters on the requested device"
    );
    let out = net.forward(Tensor::<4>::from_data(io("input"), device));
    (
        report.loaded().len(),
        out.into_data().convert::<f32>().try_to_vec().unwrap(),
    )
}

#[test]
fn same_model_on_every_backend() {
    let pytorch: Vec<f32> = io("features").convert::<f32>().try_to_vec().unwrap();
    let all = devices();
    assert!(!all.is_empty(), "no backend compiled in");
    let mut reference: Option<Vec<f32>> = None;
    for (name, device) in all {
        let (loaded, out) = features_on(&device);
        assert_eq!(loaded, 100, "{name}");
        let vs_pytorch = relative_error(&out, &pytorch);
        eprintln!("{name}: relative error vs PyTorch {vs_pytorch:e}");
        assert!(vs_pytorch <= 1e-4, "{name}: {vs_pytorch}");
        match &reference {
            None => reference = Some(out),
            Some(first) => {
                let vs_first = relative_error(&out, first);
                assert!(vs_first <= 1e-4, "{name} vs the first backend: {vs_first}");
            }
        }
    }
}

/// timm's ViT (packed `qkv` into burn's attention) and ConvNeXt (depthwise convolutions,
/// layer scale) from their configs on every backend: timm's logits within 1e-4 — the ViT also
/// with `transposed_views`.
#[test]
fn timm_backbones_on_every_backend() {
    use burn_pretrain_models::{BACKBONES, Features, Stage};
    for (config, io) in [
        (
            serde_json::json!({"type": "VisionTransformer", "variant": "vit_tiny_patch16_224",
                "embed_dim": 48, "depth": 2, "num_heads": 3, "num_classes": 10,
                "pretrain": fixture("timm/vit_narrow.pth")}),
            "timm/vit_narrow_io.safetensors",
        ),
        (
            serde_json::json!({"type": "ConvNeXt", "variant": "convnext_tiny", "num_classes": 10,
                "depths": [1, 1, 2, 1], "dims": [8, 16, 24, 32],
                "pretrain": fixture("timm/convnext_tiny_narrow.pth")}),
            "timm/convnext_tiny_narrow_io.safetensors",
        ),
        // The ViT's Linear weights as transposed views of the stored layout: each backend's
        // matmul reads the strides.
        (
            serde_json::json!({"type": "VisionTransformer", "variant": "vit_tiny_patch16_224",
                "embed_dim": 48, "depth": 2, "num_heads": 3, "num_classes": 10,
                "pretrain": {"path": fixture("timm/vit_narrow.pth"), "transposed_views": true}}),
            "timm/vit_narrow_io.safetensors",
        ),
    ] {
        let read = |key: &str| bundled_data(io, key).unwrap();
        let timm: Vec<f32> = read("logits").convert::<f32>().try_to_vec().unwrap();
        for (name, device) in devices() {
            let model = BACKBONES.build(&config, &device).unwrap().model;
            let x = Tensor::<4>::from_data(read("input"), &device);
            let Features::D2(out) = Stage::forward(&model, Features::D4(x)) else {
                panic!("{name}: logits expected")
            };
            let out: Vec<f32> = out.into_data().convert::<f32>().try_to_vec().unwrap();
            let err = relative_error(&out, &timm);
            eprintln!("{name} {}: relative error vs timm {err:e}", config["type"]);
            assert!(err <= 1e-4, "{name} {}: {err}", config["type"]);
        }
    }
}
