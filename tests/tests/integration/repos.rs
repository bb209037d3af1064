//! Model repositories as model sources: folders written by timm's own `save_for_hf`
//! (`fixtures/repos/generate.py`) build the architecture their `config.json` names, load its
//! weights (chosen as timm chooses them) and reproduce timm's logits, read as local
//! directories and as `hf://` repositories from the loopback Hub; the data config and label
//! names come back with the model; what the zoo cannot build is an error naming it.

use burn::prelude::*;
use burn_pretrain_models::repository::RepositoryError;
use burn_pretrain_models::{BACKBONES, Backbone, BuildReport, ConfigError, Features, Stage};
use burn_pretrain_tests::server::{Behavior, TestServer};
use burn_pretrain_tests::{fixture, relative_error, saved_f32, saved_tensor};
use serde_json::{Value, json};

fn dir(name: &str) -> String {
    fixture(&format!("repos/{name}")).display().to_string()
}

fn build(config: Value) -> (Backbone, BuildReport) {
    let built = BACKBONES.build(&config, &Device::flex()).unwrap();
    (built.model, built.report)
}

fn logits_error(model: &Backbone, name: &str) -> f32 {
    let device = Device::flex();
    let io = format!("repos/{name}_io.safetensors");
    let x = saved_tensor::<4>(&io, "input", &device);
    let Features::D2(got) = Stage::forward(model, Features::D4(x)) else {
        panic!("{name}: logits expected")
    };
    relative_error(got, saved_tensor::<2>(&io, "logits", &device))
}

#[test]
fn timm_repositories_build_their_architecture_and_match_timm() {
    for (name, architecture, weights, classes) in [
        ("timm_resnet", "resnet18", "model.safetensors", 5),
        ("timm_vit", "vit_tiny_patch16_224", "pytorch_model.bin", 4),
        ("timm_convnext", "convnext_atto", "model.safetensors", 3),
    ] {
        let (model, report) = build(json!({"from": dir(name)}));
        let [load] = report.loads() else {
            panic!("{name}: one load expected: {report}")
        };
        assert!(load.report.is_complete(), "{name}: {}", load.report);
        let [repo] = report.repositories() else {
            panic!("{name}: one repository expected")
        };
        let repo = &repo.repository;
        assert_eq!(repo.architecture, architecture);
        assert!(repo.weights.ends_with(weights), "{name}: {}", repo.weights);
        assert!(repo.config_file.ends_with("config.json"));
        assert_eq!(load.report.source(), repo.weights);
        assert!(
            report
                .to_string()
                .contains(&format!("built `{architecture}` from ")),
            "{report}"
        );
        assert_eq!(repo.model["num_classes"], classes);
        let err = logits_error(&model, name);
        assert!(err <= 1e-4, "{name}: relative error {err:e}");
    }
}

#[test]
fn the_data_config_and_labels_come_with_the_model() {
    let (_, report) = build(json!({"from": dir("timm_resnet")}));
    let repo = &report.repositories()[0].repository;
    let labels: Vec<&str> = repo
        .label_names
        .as_ref()
        .unwrap()
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(labels, ["ant", "bee", "cat", "dog", "eel"]);
    assert_eq!(repo.data.input_size, [3, 224, 224]);
    assert_eq!(repo.data.crop_pct, 0.95);
    assert_eq!(repo.data.interpolation, "bicubic");
    assert_eq!(repo.data.mean, [0.485, 0.456, 0.406]);
    let (_, report) = build(json!({"from": dir("timm_vit")}));
    let data = &report.repositories()[0].repository.data;
    assert_eq!((data.input_size, data.crop_pct), ([3, 32, 32], 0.9));
    assert_eq!(data.mean, [0.5, 0.5, 0.5]);
}

#[test]
fn overrides_on_top_of_a_repository_keep_what_fits() {
    // Another class count: the head keeps its init (reported), everything else loads.
    let (model, report) = build(json!({"from": dir("timm_convnext"), "num_classes": 10}));
    let load = &report.loads()[0].report;
    let kept: Vec<&str> = load.mismatched().iter().map(|m| m.key.as_str()).collect();
    assert_eq!(kept, ["head.fc.weight", "head.fc.bias"], "{load}");
    assert!(
        load.missing().is_empty() && load.unexpected().is_empty(),
        "{load}"
    );
    let device = Device::flex();
    let x = saved_tensor::<4>("repos/timm_convnext_io.safetensors", "input", &device);
    let Features::D2(out) = Stage::forward(&model, Features::D4(x)) else {
        panic!("logits expected")
    };
    assert_eq!(out.dims(), [2, 10]);
    // `type` beside `from` is refused: the repository decides it.
    let err = BACKBONES
        .build(
            &json!({"from": dir("timm_vit"), "type": "ResNet"}),
            &Device::flex(),
        )
        .unwrap_err();
    assert!(
        format!("{err:?}").contains("`type` and `from` both given"),
        "{err:?}"
    );
}

#[test]
fn hub_repositories_come_through_the_loopback_hub_and_its_cache() {
    let server = TestServer::start();
    for file in ["config.json", "model.safetensors"] {
        let bytes = std::fs::read(fixture(&format!("repos/timm_resnet/{file}"))).unwrap();
        server.route(
            &format!("/org/tiny-resnet/resolve/main/{file}"),
            Behavior::Serve(bytes),
        );
    }
    let cache = tempfile::tempdir().unwrap();
    let config = json!({
        "from": "hf://org/tiny-resnet",
        "pretrain": {"endpoint": server.base(), "cache_dir": cache.path().display().to_string()},
    });
    let (model, report) = build(config.clone());
    let repo = &report.repositories()[0].repository;
    assert_eq!(repo.config_file, "hf://org/tiny-resnet/config.json");
    assert_eq!(repo.weights, "hf://org/tiny-resnet/model.safetensors");
    assert!(report.loads()[0].report.is_complete(), "{report}");
    let err = logits_error(&model, "timm_resnet");
    assert!(err <= 1e-4, "relative error {err:e}");
    // Built again: everything from the cache.
    let before = server
        .counters("/org/tiny-resnet/resolve/main/model.safetensors")
        .requests;
    build(config);
    assert_eq!(
        server
            .counters("/org/tiny-resnet/resolve/main/model.safetensors")
            .requests,
        before
    );
    // A repository without weights says where it looked.
    server.route(
        "/org/no-weights/resolve/main/config.json",
        Behavior::Serve(std::fs::read(fixture("repos/timm_resnet/config.json")).unwrap()),
    );
    let err = BACKBONES
        .build(
            &json!({"from": "hf://org/no-weights",
                    "pretrain": {"endpoint": server.base(), "cache_dir": cache.path().display().to_string()}}),
            &Device::flex(),
        )
        .unwrap_err();
    let ConfigError::Repository { source, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        matches!(**source, RepositoryError::NoWeights { .. }),
        "{source:?}"
    );
    assert!(
        source.to_string().contains(
            "looked for model.safetensors, model.safetensors.index.json, pytorch_model.bin"
        ),
        "{source}"
    );
}

#[test]
fn what_the_zoo_cannot_build_is_named() {
    let root = tempfile::tempdir().unwrap();
    let weights = fixture("repos/timm_resnet/model.safetensors");
    let case = |name: &str, config: Value| {
        let folder = root.path().join(name);
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("config.json"), config.to_string()).unwrap();
        std::fs::copy(&weights, folder.join("model.safetensors")).unwrap();
        let err = BACKBONES
            .build(
                &json!({"from": folder.display().to_string()}),
                &Device::flex(),
            )
            .unwrap_err();
        match err {
            ConfigError::Repository { source, .. } => source.to_string(),
            other => panic!("{other:?}"),
        }
    };
    let err = case(
        "deep_stem",
        json!({"architecture": "resnet50d", "num_classes": 5}),
    );
    assert!(
        err.contains(
            "architecture `resnet50d` is not one this crate builds; known: resnet18/34/50/101/152"
        ),
        "{err}"
    );
    let err = case(
        "transformers",
        json!({"model_type": "bert", "architectures": ["BertModel"]}),
    );
    assert!(err.contains("model_type `bert`"), "{err}");
    let err = case(
        "odd_channels",
        json!({"architecture": "resnet18", "model_args": {"channels": [4, 8, 12, 32]}}),
    );
    assert!(err.contains("model_args.channels of `resnet18`"), "{err}");
    // A config that disagrees with its weights: the load's own checks say so.
    let folder = root.path().join("wider");
    std::fs::create_dir(&folder).unwrap();
    let mut config: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("repos/timm_resnet/config.json")).unwrap(),
    )
    .unwrap();
    config["model_args"]["stem_width"] = json!(8);
    config["model_args"]["channels"] = json!([8, 16, 32, 64]);
    std::fs::write(folder.join("config.json"), config.to_string()).unwrap();
    std::fs::copy(&weights, folder.join("model.safetensors")).unwrap();
    let err = BACKBONES
        .build(
            &json!({"from": folder.display().to_string()}),
            &Device::flex(),
        )
        .unwrap_err();
    let ConfigError::Pretrain { source, .. } = &err else {
        panic!("{err:?}")
    };
    let text = source.to_string();
    assert!(text.contains("layer `fc` half loaded"), "{text}");
    assert!(
        text.contains(
            "shape mismatch: layer1.0.conv1.weight: model [8, 64, 3, 3] vs. checkpoint [4, 64, 3, 3]"
        ),
        "{text}"
    );
}

#[test]
fn transformers_vit_repositories_build_with_transformers_keys_and_match_transformers() {
    let device = Device::flex();
    let io = "hf_vit/io.safetensors";
    let x = saved_tensor::<4>(io, "input", &device);
    // ViTForImageClassification: keys under `vit.` and `classifier`, labels from id2label.
    let dir = fixture("hf_vit/classifier").display().to_string();
    let (model, report) = build(json!({ "from": dir }));
    let load = &report.loads()[0].report;
    assert!(load.is_complete(), "{load}");
    assert!(load.unexpected().is_empty(), "{load}");
    let repo = &report.repositories()[0].repository;
    assert_eq!(repo.architecture, "ViTForImageClassification");
    assert_eq!(
        repo.label_names.as_deref(),
        Some(["ant", "bee", "cat"].map(String::from).as_slice())
    );
    assert_eq!(
        (
            repo.data.input_size,
            repo.data.crop_mode.as_str(),
            repo.data.interpolation.as_str()
        ),
        ([3, 32, 32], "squash", "bilinear")
    );
    let Features::D2(logits) = Stage::forward(&model, Features::D4(x.clone())) else {
        panic!("logits expected")
    };
    let err = relative_error(logits, saved_tensor::<2>(io, "classifier/logits", &device));
    assert!(err <= 1e-4, "classifier logits: relative error {err:e}");
    // ViTModel: keys at the root, its pooler.
    let dir = fixture("hf_vit/model").display().to_string();
    let (model, report) = build(json!({ "from": dir }));
    assert!(report.loads()[0].report.is_complete(), "{report}");
    let Backbone::TransformersVit(vit) = &model else {
        panic!("a transformers ViT expected")
    };
    let hidden = vit.forward_features(x.clone());
    let err = relative_error(
        hidden,
        saved_tensor::<3>(io, "model/last_hidden_state", &device),
    );
    assert!(err <= 1e-4, "last_hidden_state: relative error {err:e}");
    let Features::D2(pooled) = Stage::forward(&model, Features::D4(x)) else {
        panic!("pooled features expected")
    };
    let err = relative_error(
        pooled,
        saved_tensor::<2>(io, "model/pooler_output", &device),
    );
    assert!(err <= 1e-4, "pooler_output: relative error {err:e}");
}

#[test]
fn transformers_vit_images_are_prepared_as_its_image_processor_does() {
    use burn_pretrain_models::preprocess::{eval_transform, load_image};
    let dir = fixture("hf_vit/classifier").display().to_string();
    let (_, report) = build(json!({ "from": dir }));
    let data = &report.repositories()[0].repository.data;
    for image in ["wide.png", "tall.png", "large.png", "photo.jpg"] {
        let img = load_image(&fixture(&format!("preprocess/{image}"))).unwrap();
        let ours: Vec<f32> = eval_transform(&img, data).unwrap().iter::<f32>().collect();
        let (_, theirs) = saved_f32("hf_vit/io.safetensors", &format!("pixel_values/{image}"));
        assert_eq!(ours.len(), theirs.len());
        let diffs: Vec<f32> = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .collect();
        let max = diffs.iter().copied().fold(0f32, f32::max);
        let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
        println!("{image}: max {max:.4}, mean {mean:.5}");
        assert!(
            max <= 0.05 && mean <= 0.005,
            "{image}: max {max}, mean {mean}"
        );
    }
}
