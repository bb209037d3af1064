//! The models crate: torchvision parity of narrow ResNets, the seed's scenarios through the
//! registries, `pretrain` at several levels, and config errors that name their path.

use burn::prelude::*;
use burn_pretrain::{Checkpoint, PretrainExt};
use burn_pretrain_models::{
    BACKBONES, ConfigError, ConfigFormat, MODELS, ResNetConfig, parse_config,
};
use burn_pretrain_tests::{fixture, relative_error, saved_tensor};
use serde_json::json;

fn path(relative: &str) -> String {
    fixture(relative).display().to_string()
}

#[test]
fn narrow_resnet18_matches_torchvision() {
    let device = Device::flex();
    let net = ResNetConfig::resnet18()
        .with_base_channels(8)
        .init(&device)
        .unwrap();
    let (net, report) = net
        .load_pretrained(fixture("resnet/resnet18_narrow.pth"))
        .unwrap();
    // The seed's third scenario: a torchvision file holds `fc`, which a backbone lacks.
    assert_eq!(report.unexpected(), ["fc.bias", "fc.weight"]);
    assert!(report.missing().is_empty() && report.mismatched().is_empty());
    let x = saved_tensor::<4>("resnet/resnet18_narrow_io.safetensors", "input", &device);
    let want = saved_tensor::<4>("resnet/resnet18_narrow_io.safetensors", "features", &device);
    let err = relative_error(net.forward(x), want);
    assert!(err <= 1e-4, "relative error {err}");
}

#[test]
fn narrow_grouped_bottleneck_resnet_matches_torchvision() {
    let device = Device::flex();
    let net = ResNetConfig::new(50)
        .with_base_channels(4)
        .with_groups(2)
        .with_width_per_group(32)
        .init(&device)
        .unwrap();
    let (net, report) = net
        .load_pretrained(fixture("resnet/resnext_narrow.pth"))
        .unwrap();
    assert_eq!(report.loaded().len(), 265);
    assert!(report.missing().is_empty());
    let x = saved_tensor::<4>("resnet/resnext_narrow_io.safetensors", "input", &device);
    let want = saved_tensor::<4>("resnet/resnext_narrow_io.safetensors", "features", &device);
    let err = relative_error(net.forward(x), want);
    assert!(err <= 1e-4, "relative error {err}");
}

fn classifier_config(num_classes: usize) -> serde_json::Value {
    json!({
        "type": "Classifier",
        "backbone": {"type": "ResNet", "depth": 18, "base_channels": 8},
        "neck": {"type": "GlobalAveragePooling"},
        "head": {"type": "ClassifierHead", "dim": 64, "num_classes": num_classes},
        "pretrain": path("resnet/classifier_dp.pth")
    })
}

#[test]
fn seed_classifier_with_200_classes_from_a_100_class_dataparallel_checkpoint() {
    let device = Device::flex();
    let built = MODELS.build(&classifier_config(200), &device).unwrap();
    let [load] = built.report.loads() else {
        panic!("one load expected: {}", built.report)
    };
    assert_eq!(load.scope, "");
    let report = &load.report;
    let mismatched: Vec<_> = report
        .mismatched()
        .iter()
        .map(|m| {
            (
                m.key.as_str(),
                m.model_shape.clone(),
                m.checkpoint_shape.clone(),
            )
        })
        .collect();
    assert_eq!(
        mismatched,
        [
            ("head.fc.weight", vec![200, 64], vec![100, 64]),
            ("head.fc.bias", vec![200], vec![100]),
        ]
    );
    assert_eq!(report.loaded().len(), 100);
    assert!(report.missing().is_empty() && report.unexpected().is_empty());
    assert!(report.loaded().iter().all(|k| k.starts_with("backbone.")));
}

#[test]
fn seed_classifier_outputs_match_pytorch_in_inference() {
    let device = Device::flex();
    let built = MODELS.build(&classifier_config(100), &device).unwrap();
    assert!(built.report.loads()[0].report.is_complete());
    let x = saved_tensor::<4>("resnet/classifier_io.safetensors", "input", &device);
    let want = saved_tensor::<2>("resnet/classifier_io.safetensors", "probabilities", &device);
    let model = built.model;
    let probabilities = model.forward(x.clone());
    let err = relative_error(probabilities.clone(), want);
    assert!(err <= 1e-4, "relative error {err}");
    // Inference activates; the logits are what the softmax was applied to.
    let logits = model.forward_logits(x);
    let err = relative_error(burn::tensor::activation::softmax(logits, 1), probabilities);
    assert!(err <= 1e-6, "relative error {err}");
}

#[test]
fn seed_backbone_from_the_classifier_checkpoint_with_sub_level() {
    let device = Device::flex();
    let config = json!({
        "type": "ResNet", "depth": 18, "base_channels": 8,
        "pretrain": {"path": path("resnet/classifier_dp.pth"), "sub_level": "backbone"}
    });
    let built = BACKBONES.build(&config, &device).unwrap();
    let report = &built.report.loads()[0].report;
    assert_eq!(report.loaded().len(), 100);
    assert!(report.missing().is_empty(), "{report}");
    assert!(
        report.unexpected().is_empty(),
        "head keys are not unexpected: {report}"
    );
}

#[test]
fn inner_pretrain_loads_first_and_outer_overrides() {
    let device = Device::flex();
    let mut config = classifier_config(100);
    config["backbone"]["pretrain"] = json!(path("resnet/resnet18_narrow.pth"));
    let built = MODELS.build(&config, &device).unwrap();
    let scopes: Vec<_> = built
        .report
        .loads()
        .iter()
        .map(|l| l.scope.as_str())
        .collect();
    assert_eq!(scopes, ["backbone", ""]);
    let provenance = built.report.provenance();
    let dp = path("resnet/classifier_dp.pth");
    assert_eq!(
        provenance,
        [
            ("backbone".to_string(), vec![(dp.clone(), 100)]),
            ("head".to_string(), vec![(dp, 2)]),
        ]
    );
}

#[test]
fn each_level_may_take_its_own_source() {
    let device = Device::flex();
    let config = json!({
        "type": "Classifier",
        "backbone": {"type": "ResNet", "depth": 18, "base_channels": 8,
                     "pretrain": path("resnet/resnet18_narrow.pth")},
        "neck": {"type": "GlobalAveragePooling", "dim": 2},
        "head": {"type": "ClassifierHead", "dim": 64, "num_classes": 100,
                 "pretrain": {"path": path("resnet/classifier_dp.pth"), "sub_level": "head"}},
        "act_name": "sigmoid"
    });
    let built = MODELS.build(&config, &device).unwrap();
    assert_eq!(
        built.report.provenance(),
        [
            (
                "backbone".to_string(),
                vec![(path("resnet/resnet18_narrow.pth"), 100)]
            ),
            (
                "head".to_string(),
                vec![(path("resnet/classifier_dp.pth"), 2)]
            ),
        ]
    );
    let text = built.report.to_string();
    assert!(
        text.starts_with("[backbone] Loaded pretrained model [Backbone] from "),
        "{text}"
    );
    assert!(
        text.contains("\n[head] Loaded pretrained model [Head] from "),
        "{text}"
    );
}

#[test]
fn yaml_and_toml_configs_build_the_same_model() {
    let device = Device::flex();
    let yaml = format!(
        "type: Classifier\nbackbone:\n  type: ResNet\n  depth: 18\n  base_channels: 8\nneck:\n  type: GlobalAveragePooling\nhead:\n  type: ClassifierHead\n  dim: 64\n  num_classes: 100\npretrain: {}\n",
        path("resnet/classifier_dp.pth")
    );
    let toml = format!(
        "type = \"Classifier\"\npretrain = \"{}\"\n[backbone]\ntype = \"ResNet\"\ndepth = 18\nbase_channels = 8\n[neck]\ntype = \"GlobalAveragePooling\"\n[head]\ntype = \"ClassifierHead\"\ndim = 64\nnum_classes = 100\n",
        path("resnet/classifier_dp.pth")
    );
    for (text, format) in [(yaml, ConfigFormat::Yaml), (toml, ConfigFormat::Toml)] {
        let value = parse_config(&text, format, "<test>").unwrap();
        assert_eq!(value, classifier_config(100));
        let built = MODELS.build(&value, &device).unwrap();
        assert!(built.report.loads()[0].report.is_complete());
    }
}

fn config_error(config: serde_json::Value) -> String {
    let err: ConfigError = MODELS.build(&config, &Device::flex()).unwrap_err();
    // The whole chain: where in the config, then why.
    burn_pretrain::error::chain(&err)
}

#[test]
fn config_errors_name_the_path_and_the_allowed_values() {
    let mut c = classifier_config(10);
    c["backbone"]["type"] = json!("ResNot");
    assert_eq!(
        config_error(c),
        "backbone.type: unknown backbone type `ResNot`; registered: ConvNeXt, ResNet, TransformersVit, VisionTransformer"
    );

    let mut c = classifier_config(10);
    c["backbone"]["depth"] = json!(42);
    assert_eq!(
        config_error(c),
        "backbone.depth: 42 is not a ResNet depth; allowed: 18, 34, 50, 101, 152"
    );

    let mut c = classifier_config(10);
    c["backbone"]["dept"] = json!(50);
    let msg = config_error(c);
    assert!(
        msg.starts_with("backbone.dept: unknown field `dept`, expected one of `depth`"),
        "{msg}"
    );

    let mut c = classifier_config(10);
    c["head"].as_object_mut().unwrap().remove("num_classes");
    assert_eq!(config_error(c), "head: missing field `num_classes`");

    let mut c = classifier_config(10);
    c["neck"]["dim"] = json!(1);
    let msg = config_error(c);
    assert!(
        msg.starts_with(
            "neck: GlobalAveragePooling with dim 1 takes rank-3 features, not rank 4; use dim 2"
        ),
        "{msg}"
    );

    let mut c = classifier_config(10);
    c["head"]["dropout_rate"] = json!("high");
    let msg = config_error(c);
    assert!(
        msg.starts_with("head.dropout_rate: invalid type: string \"high\""),
        "{msg}"
    );

    let mut c = classifier_config(10);
    c["pretrain"] = json!({"path": "x.pth", "sub_lvl": "a"});
    let msg = config_error(c);
    assert!(
        msg.starts_with("pretrain.sub_lvl: unknown field `sub_lvl`"),
        "{msg}"
    );

    let mut c = classifier_config(10);
    c["pretrain"] = json!(path("resnet/missing.pth"));
    let msg = config_error(c);
    assert!(
        msg.starts_with("config: cannot load its pretrain: cannot open checkpoint "),
        "{msg}"
    );

    let c = json!({"backbone": {}});
    assert_eq!(
        config_error(c),
        "type: missing field `type`; registered model types: Classifier"
    );
}

#[test]
fn user_registered_backbone_builds_from_a_yaml_file() {
    use burn_pretrain_examples::custom::{MyBackbone, my_models};
    let device = Device::flex();
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/configs/tiny_classifier.yaml");
    let built = my_models().build_from_file(&config, &device).unwrap();
    let [load] = built.report.loads() else {
        panic!("{}", built.report)
    };
    assert_eq!(load.scope, "backbone");
    assert_eq!(
        load.report.loaded(),
        [
            "conv.weight",
            "bn.weight",
            "bn.bias",
            "bn.running_mean",
            "bn.running_var"
        ]
    );
    // The stem came from the torchvision file's conv1, value for value.
    let MyBackbone::Tiny(tiny) = &built.model.backbone else {
        panic!("TinyNet expected")
    };
    let ckpt = Checkpoint::open(fixture("resnet/resnet18_narrow.pth")).unwrap();
    let stored = ckpt.get("conv1.weight").unwrap();
    let stored = burn::tensor::TensorData::from_bytes_vec(
        stored.read().unwrap(),
        stored.shape().to_vec(),
        burn::tensor::DType::F32,
    );
    assert_eq!(tiny.conv.weight.val().into_data(), stored);
    let out = built
        .model
        .forward(Tensor::<4>::ones([2, 3, 32, 32], &device));
    assert_eq!(out.dims(), [2, 3]);
}

/// A config that is a named pipe is refused before reading (a read would block forever).
#[test]
fn a_fifo_config_is_refused_without_reading() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = burn_pretrain_tests::make_fifo(dir.path(), "config.json");
    let err = burn_pretrain_models::read_config_file(&fifo).unwrap_err();
    let msg = burn_pretrain::error::chain(&err);
    assert!(msg.contains("not a regular file"), "{msg}");
}
