//! Prefix alignment and rename hints on checkpoints PyTorch wrote: the checkpoint's keys under
//! another leading path load with `align: auto`; names that differ in case or arrangement are
//! paired as a hint, and the suggested remap loads them.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, BiLstm, BiLstmConfig};
use burn::prelude::*;
use burn_pretrain::report::{HintKind, LoadReport};
use burn_pretrain::view::Align;
use burn_pretrain::view::ViewStep;
use burn_pretrain::{Pretrain, PretrainExt, Pretrainable};
use burn_pretrain_tests::{
    Backbone, StateDict, assert_values_eq, expected, fixture, relative_error, saved_tensor,
};

const DP: &str = "dataparallel/classifier_dp.pth";

/// The seed's backbone under another field name: checkpoint `backbone.*`, model `encoder.*`.
#[derive(Module, Debug, Pretrainable)]
struct Renamed {
    encoder: Backbone,
}

#[test]
fn keys_under_another_prefix_load_fully_with_align_auto() {
    let device = Device::flex();
    let model = || Renamed {
        encoder: Backbone::new(&device),
    };
    // Off (the default): nothing loads, and the hint names the rewrite with its score.
    let err = model().plan_pretrained(fixture(DP)).unwrap_err();
    let burn_pretrain::Error::Unmet { report, .. } = err else {
        panic!("{err}")
    };
    let hint = &report.hints()[0];
    assert_eq!(hint.kind(), HintKind::Prefix);
    assert_eq!(
        hint.remap().map(|r| (r.from.as_str(), r.to.as_str())),
        Some(("^backbone\\.", "encoder."))
    );
    assert_eq!(hint.score(), Some(30));
    assert_eq!(
        hint.to_string(),
        "rewriting checkpoint `backbone.` to `encoder.` makes 30 of 30 model tensors agree in name and shape (now 0): set align: auto, or remap `^backbone\\.` → `encoder.`"
    );
    // On, from code and from a config: every tensor loads, and the view step says how.
    let from_json: Pretrain = serde_json::from_str(&format!(
        r#"{{"path": {:?}, "align": "auto"}}"#,
        fixture(DP)
    ))
    .unwrap();
    let from_code = Pretrain::from(fixture(DP)).with_align(Align::Auto);
    assert_eq!(from_json, from_code);
    let (model, report) = model().load_pretrained(from_json).unwrap();
    assert_eq!(
        report.summary(),
        "loaded 30/30 model tensors (100 %), used 30/32 checkpoint tensors (94 %)"
    );
    assert_eq!(
        report.view().last(),
        Some(&ViewStep::Aligned {
            from: "backbone".into(),
            to: "encoder".into(),
            keys: 36,
            agree: 30,
            before: 0,
        })
    );
    assert!(
        report
            .to_string()
            .contains("view: aligned: rewrote `backbone.` to `encoder.` on 36 keys (0 → 30 model tensors agree)"),
        "{report}"
    );
    let compared = assert_values_eq(
        &model.encoder.to_state_dict(),
        &expected("dataparallel"),
        "backbone.",
    );
    assert_eq!(compared, 30);
}

#[derive(Module, Debug, Pretrainable)]
struct Case {
    conv1: Conv2d,
    conv1_bn: BatchNorm,
}

#[test]
fn a_name_that_differs_in_case_is_paired_and_the_suggested_remap_loads_it() {
    let device = Device::flex();
    let model = || Case {
        conv1: Conv2dConfig::new([3, 4], [3, 3]).init(&device),
        conv1_bn: BatchNormConfig::new(4).init(&device),
    };
    let report = model().plan_pretrained(fixture("hints/case.pth")).unwrap();
    assert_eq!(
        messages(&report),
        [
            "model `conv1_bn.*` ↔ checkpoint `conv1_BN.*`: 4 tensors agree in name and shape; remap `^conv1_BN\\.` → `conv1_bn.`, or `#[pretrain(rename = \"conv1_BN\")]` on the field `conv1_bn`"
        ]
    );
    let hint = &report.hints()[0];
    assert_eq!(hint.kind(), HintKind::RenamedParent);
    assert_eq!(
        (hint.model_keys(), hint.checkpoint_keys()),
        (&["conv1_bn".to_string()][..], &["conv1_BN".to_string()][..])
    );
    // In JSON a hint is data, with its sentence beside it.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(
        json["hints"][0],
        serde_json::json!({
            "kind": "renamed_parent",
            "model_keys": ["conv1_bn"],
            "checkpoint_keys": ["conv1_BN"],
            "remap": {"from": "^conv1_BN\\.", "to": "conv1_bn."},
            "score": 4,
            "message": hint.to_string(),
        })
    );
    // The remap the hint carries, as data, is the one that loads them.
    let remap = hint.remap().expect("a parent rename carries its remap");
    let spec = Pretrain::from(fixture("hints/case.pth"))
        .with_remap(&remap.from, &remap.to)
        .with_strict(true);
    let (model, report) = model().load_pretrained(spec).unwrap();
    assert_eq!(
        report.summary(),
        "loaded 6/6 model tensors (100 %), used 6/6 checkpoint tensors (100 %)"
    );
    let stored = |key| saved_tensor::<1>("hints/case.pth", key, &device);
    assert_eq!(
        relative_error(model.conv1_bn.gamma.val(), stored("conv1_BN.weight")),
        0.0
    );
    assert_eq!(
        relative_error(
            model.conv1_bn.running_var.value(),
            stored("conv1_BN.running_var")
        ),
        0.0
    );
    // The README's "Port a PyTorch model": the same output as PyTorch's (eval mode; a
    // non-autodiff device runs BatchNorm on its running statistics).
    let io = "hints/case_io.safetensors";
    let ours = model
        .conv1_bn
        .forward(model.conv1.forward(saved_tensor::<4>(io, "input", &device)));
    let err = relative_error(ours, saved_tensor(io, "output", &device));
    assert!(err < 1e-5, "relative error {err:e}");
}

/// A stack of LSTM layers one level deeper than PyTorch's `nn.LSTM(num_layers=2)`.
#[derive(Module, Debug, Pretrainable)]
struct Stack {
    layers: Vec<BiLstm>,
}

#[derive(Module, Debug, Pretrainable)]
struct Deeper {
    lstm: Stack,
}

#[test]
fn rnn_layers_at_another_depth_are_paired() {
    let device = Device::flex();
    let model = Deeper {
        lstm: Stack {
            layers: vec![
                BiLstmConfig::new(8, 16, true).init(&device),
                BiLstmConfig::new(32, 16, true).init(&device),
            ],
        },
    };
    let spec = Pretrain::from(fixture("packed/seq.pth")).with_allow_empty(true);
    let report = model.plan_pretrained(spec).unwrap();
    assert_eq!(
        messages(&report),
        [
            "model `lstm.layers.*` ↔ checkpoint `lstm.*`: 16 tensors agree in name and shape; remap `^lstm\\.` → `lstm.layers.`"
        ]
    );
}

/// The hints' sentences, as the text report shows them.
fn messages(report: &LoadReport) -> Vec<String> {
    report.hints().iter().map(ToString::to_string).collect()
}
