//! `#[derive(Pretrainable)]`: one behaviour test per attribute on real burn modules (its
//! diagnostics are trybuild cases in `loader-derive/tests/ui.rs`).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, Relu};
use burn::prelude::*;
use burn_pretrain::{PretrainExt, Pretrainable};
use burn_pretrain_tests::{Backbone, StateDict, Values, assert_values_eq, expected, fixture};
use std::collections::BTreeMap;

const LEGACY: &str = "legacy/backbone_legacy.pth";

/// `#[pretrain(skip)]`: never loaded, never missing; its checkpoint keys are ignored.
#[derive(Module, Debug, Pretrainable)]
struct SkipsBn {
    conv1: Conv2d,
    #[pretrain(skip)]
    bn1: BatchNorm,
    relu: Relu,
}

#[test]
fn skip_leaves_the_field_alone() {
    let device = Device::flex();
    let model = SkipsBn {
        conv1: Conv2dConfig::new([3, 4], [3, 3])
            .with_bias(false)
            .init(&device),
        bn1: BatchNormConfig::new(4).init(&device),
        relu: Relu,
    };
    let gamma_before = model.bn1.gamma.val().into_data();
    let (model, report) = model.load_pretrained(fixture(LEGACY)).unwrap();
    assert_eq!(report.loaded(), ["conv1.weight"]);
    assert!(report.missing().is_empty());
    assert!(report.unexpected().iter().all(|k| k.starts_with("layer1.")));
    let skipped: Vec<_> = report
        .ignored()
        .iter()
        .filter(|i| i.reason == "field marked #[pretrain(skip)]")
        .map(|i| i.key.as_str())
        .collect();
    assert_eq!(
        skipped,
        [
            "bn1.bias",
            "bn1.num_batches_tracked",
            "bn1.running_mean",
            "bn1.running_var",
            "bn1.weight"
        ]
    );
    assert_eq!(model.bn1.gamma.val().into_data(), gamma_before);
}

/// `#[pretrain(flatten)]`: the field's tensors sit at the parent's level.
#[derive(Module, Debug, Pretrainable)]
struct Extended {
    #[pretrain(flatten)]
    base: Backbone,
    extra: Linear,
}

#[test]
fn flatten_and_missing_tensors() {
    let device = Device::flex();
    let model = Extended {
        base: Backbone::new(&device),
        extra: LinearConfig::new(8, 3).init(&device),
    };
    let (model, report) = model.load_pretrained(fixture(LEGACY)).unwrap();
    assert_eq!(report.missing(), ["extra.weight", "extra.bias"]);
    assert!(report.unexpected().is_empty());
    assert_eq!(
        assert_values_eq(&model.base.to_state_dict(), &expected("legacy"), ""),
        30
    );
}

/// Generic fields get a `Pretrainable` bound; enum variants wrapping one module are
/// transparent; arrays index like `Vec`.
#[derive(Module, Debug, Pretrainable)]
struct Pair<M: Module> {
    #[pretrain(rename = "0")]
    a: M,
    #[pretrain(rename = "1")]
    b: M,
}

#[derive(Module, Debug, Pretrainable)]
enum Stem {
    Conv(Conv2d),
    Act(Relu),
}

#[derive(Module, Debug, Pretrainable)]
struct Shapes {
    #[pretrain(rename = "layer1.0")]
    convs: Pair<Conv2d>,
    stem: Stem,
    heads: [Linear; 2],
}

#[test]
fn generic_enum_and_array_fields() {
    let device = Device::flex();
    let conv = |i, o| {
        Conv2dConfig::new([i, o], [3, 3])
            .with_bias(false)
            .init(&device)
    };
    let model = Shapes {
        convs: Pair {
            a: conv(4, 4),
            b: conv(4, 4),
        },
        stem: Stem::Conv(conv(3, 4)),
        heads: [
            LinearConfig::new(2, 2).init(&device),
            LinearConfig::new(2, 2).init(&device),
        ],
    };
    // Only the keys are compared here: nothing of this made-up model is in the checkpoint.
    let spec = burn_pretrain::Pretrain::from(fixture(LEGACY)).with_allow_empty(true);
    let report = model.plan_pretrained(spec).unwrap();
    let mut keys: Vec<&str> = report.loaded().iter().map(String::as_str).collect();
    keys.extend(report.missing().iter().map(String::as_str));
    assert_eq!(
        keys,
        [
            "layer1.0.0.weight",
            "layer1.0.1.weight",
            "stem.weight",
            "heads.0.weight",
            "heads.0.bias",
            "heads.1.weight",
            "heads.1.bias"
        ]
    );
    // `layer1.0.0` / `layer1.0.1` are not in the checkpoint (it has `layer1.0.conv1`), so
    // all of them are missing; nothing matched by accident.
    assert!(report.loaded().is_empty());
}

#[test]
fn nested_rename_with_dots_reaches_deep_keys() {
    #[derive(Module, Debug, Pretrainable)]
    struct FirstBlockConv {
        #[pretrain(rename = "layer1.1.downsample.0")]
        proj: Conv2d,
    }
    let device = Device::flex();
    let model = FirstBlockConv {
        proj: Conv2dConfig::new([4, 8], [1, 1])
            .with_bias(false)
            .init(&device),
    };
    let (model, report) = model.load_pretrained(fixture(LEGACY)).unwrap();
    assert_eq!(report.loaded(), ["layer1.1.downsample.0.weight"]);
    let mut got: BTreeMap<String, Values> = BTreeMap::new();
    model.proj.state_dict("layer1.1.downsample.0.", &mut got);
    let mut want = expected("legacy");
    want.retain(|k, _| k == "layer1.1.downsample.0.weight");
    assert_eq!(assert_values_eq(&got, &want, ""), 1);
}
