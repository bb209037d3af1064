//! The seed's everyday cases: DataParallel in a training checkpoint, another class count,
//! a sub-level, torchvision's extra `fc`, and a model with tensors the checkpoint lacks.

use burn::prelude::*;
use burn_pretrain::format::Format;
use burn_pretrain::view::ViewStep;
use burn_pretrain::{Pretrain, PretrainExt};
use burn_pretrain_tests::{Backbone, Classifier, StateDict, assert_values_eq, expected, fixture};

const DP: &str = "dataparallel/classifier_dp.pth";

#[test]
fn dataparallel_training_checkpoint_loads_every_tensor() {
    let device = Device::flex();
    let (model, report) = Classifier::new(5, &device)
        .load_pretrained(fixture(DP))
        .unwrap();

    assert_eq!(report.format(), Format::PytorchZip);
    // 2 (conv1, bn1 affine) + 2 running; per block 2 convs + 2 BNs x 4; downsample in block 1.
    assert_eq!(report.loaded().len(), 32);
    assert!(report.missing().is_empty(), "{report}");
    assert!(report.unexpected().is_empty(), "{report}");
    assert!(report.mismatched().is_empty(), "{report}");
    match &report.view()[0] {
        ViewStep::Unwrapped { container, dropped } => {
            assert_eq!(container, "state_dict");
            // SGD momentum buffers: one per parameter (conv/bn/linear weights and biases).
            assert_eq!(dropped.get("optimizer"), Some(&20));
        }
        other => panic!("first step should unwrap state_dict, got {other:?}"),
    }
    assert_eq!(
        report.view()[1],
        ViewStep::Stripped {
            prefix: "module.".into(),
            keys: 38
        }
    );
    // num_batches_tracked of the 6 BatchNorms is known and ignored, not unexpected.
    let counters = report
        .ignored()
        .iter()
        .filter(|i| i.key.ends_with("num_batches_tracked"))
        .count();
    assert_eq!(counters, 6);

    let compared = assert_values_eq(&model.to_state_dict(), &expected("dataparallel"), "");
    assert_eq!(compared, 32);
}

#[test]
fn head_with_another_class_count_keeps_its_init_and_is_reported() {
    let device = Device::flex();
    let model = Classifier::new(7, &device);
    let head_before = model.head.fc.weight.val().into_data();
    let (model, report) = model.load_pretrained(fixture(DP)).unwrap();

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
            ("head.fc.weight", vec![7, 8], vec![5, 8]),
            ("head.fc.bias", vec![7], vec![5]),
        ]
    );
    assert_eq!(report.loaded().len(), 30);
    assert!(report.missing().is_empty());
    // The head keeps exactly the values it had.
    assert_eq!(model.head.fc.weight.val().into_data(), head_before);
    // Everything else equals what PyTorch saved.
    let compared = assert_values_eq(
        &model.backbone.to_state_dict(),
        &expected("dataparallel"),
        "backbone.",
    );
    assert_eq!(compared, 30);
}

#[test]
fn sub_level_takes_the_backbone_of_a_classifier_checkpoint() {
    let device = Device::flex();
    let spec = Pretrain::from(fixture(DP)).with_sub_level("backbone");
    let (model, report) = Backbone::new(&device).load_pretrained(spec).unwrap();

    assert_eq!(report.loaded().len(), 30);
    assert!(report.missing().is_empty(), "{report}");
    assert!(
        report.unexpected().is_empty(),
        "head keys are not unexpected: {report}"
    );
    let outside: Vec<_> = report
        .ignored()
        .iter()
        .filter(|i| i.reason == "outside sub_level `backbone`")
        .map(|i| i.key.as_str())
        .collect();
    assert_eq!(outside, ["head.fc.bias", "head.fc.weight"]);
    let compared = assert_values_eq(
        &model.to_state_dict(),
        &expected("dataparallel"),
        "backbone.",
    );
    assert_eq!(compared, 30);
}

#[test]
fn torchvision_style_fc_is_unexpected() {
    let device = Device::flex();
    let (model, report) = Backbone::new(&device)
        .load_pretrained(fixture("torchvision_style/backbone_with_fc.pth"))
        .unwrap();
    assert_eq!(report.unexpected(), ["fc.bias", "fc.weight"]);
    assert!(report.missing().is_empty());
    assert_eq!(report.loaded().len(), 30);
    assert_values_eq(&model.to_state_dict(), &expected_without_fc(), "");
}

fn expected_without_fc() -> std::collections::BTreeMap<String, burn_pretrain_tests::Values> {
    let mut e = expected("torchvision_style");
    e.retain(|k, _| !k.starts_with("fc."));
    e
}

#[test]
fn remaps_move_a_torchvision_file_into_a_classifier() {
    let device = Device::flex();
    let spec = Pretrain::from(fixture("torchvision_style/backbone_with_fc.pth"))
        .with_remap(r"^(conv1|bn1|layer1)\.", "backbone.$1.")
        .with_remap(r"^fc\.", "head.fc.");
    let (model, report) = Classifier::new(10, &device).load_pretrained(spec).unwrap();
    assert!(report.is_complete(), "{report}");
    let mut want = expected("torchvision_style");
    let renamed: std::collections::BTreeMap<_, _> = std::mem::take(&mut want)
        .into_iter()
        .map(|(k, v)| {
            let k = if k.starts_with("fc.") {
                format!("head.{k}")
            } else {
                format!("backbone.{k}")
            };
            (k, v)
        })
        .collect();
    assert_eq!(assert_values_eq(&model.to_state_dict(), &renamed, ""), 32);
}

#[test]
fn missing_sub_level_prefix_gets_a_hint() {
    let device = Device::flex();
    // Nothing loads, which is an error by default; the error carries the report.
    let err = Backbone::new(&device)
        .plan_pretrained(fixture(DP))
        .unwrap_err();
    let burn_pretrain::Error::Unmet { report, unmet } = err else {
        panic!("{err}")
    };
    assert_eq!(
        unmet,
        [
            "nothing loaded: none of the model's 30 tensors is in the checkpoint under its name and shape"
        ]
    );
    assert_eq!(report.loaded().len(), 0);
    assert_eq!(report.missing().len(), 30);
    let hints: Vec<String> = report.hints().iter().map(ToString::to_string).collect();
    assert_eq!(
        hints,
        [
            "stripping `backbone.` from checkpoint keys makes 30 of 30 model tensors agree in name and shape (now 0): set sub_level \"backbone\" or align: auto"
        ]
    );
    assert_eq!(report.hints()[0].sub_level(), Some("backbone"));
}

#[test]
fn config_spec_from_json_drives_the_load() {
    #[derive(serde::Deserialize)]
    struct Config {
        pretrain: Pretrain,
    }
    let path = fixture(DP);
    let json = serde_json::json!({
        "pretrain": {"path": path.to_str().unwrap(), "sub_level": "backbone"}
    });
    let config: Config = serde_json::from_value(json).unwrap();
    let device = Device::flex();
    let (_, report) = Backbone::new(&device)
        .load_pretrained(config.pretrain)
        .unwrap();
    assert!(report.is_complete(), "{report}");
}

#[test]
fn loaded_parameters_keep_ids_and_skipped_ones_stay_lazy() {
    let device = Device::flex();
    let model = Classifier::new(7, &device);
    let ids_before = burn::module::list_param_ids(&model);
    assert!(!model.head.fc.weight.is_initialized());
    let (model, _) = model.load_pretrained(fixture(DP)).unwrap();
    assert_eq!(burn::module::list_param_ids(&model), ids_before);
    // Mismatched, so never touched: still not initialised (no random init was spent on it).
    assert!(!model.head.fc.weight.is_initialized());
    // Loaded ones are on the model's device.
    assert_eq!(model.backbone.conv1.weight.val().device(), device);
}

#[test]
fn with_pretrain_returns_the_loaded_model() {
    let device = Device::flex();
    let model = Classifier::new(5, &device)
        .with_pretrain(fixture(DP))
        .unwrap();
    assert_eq!(
        assert_values_eq(&model.to_state_dict(), &expected("dataparallel"), ""),
        32
    );
}

/// `with_pretrain` logs the report in its own words; less than every tensor is a warning that
/// says how much loaded.
#[test]
fn with_pretrain_warns_below_full_coverage() {
    let device = Device::flex();
    let ((), log) = burn_pretrain_tests::capture_logs(tracing::Level::INFO, || {
        Classifier::new(7, &device)
            .with_pretrain(fixture(DP))
            .unwrap();
        Classifier::new(5, &device)
            .with_pretrain(fixture(DP))
            .unwrap();
    });
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("pretrained model"))
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(lines[0].contains("WARN"), "{log}");
    assert!(
        lines[0].contains("Loaded pretrained model [Classifier] from "),
        "{log}"
    );
    assert!(
        lines[0].ends_with(
            "(PyTorch zip): loaded 30/32 model tensors (94 %), used 30/32 checkpoint tensors (94 %)"
        ),
        "{log}"
    );
    assert!(lines[1].contains("INFO"), "{log}");
    assert!(
        lines[1]
            .ends_with("loaded 32/32 model tensors (100 %), used 32/32 checkpoint tensors (100 %)"),
        "{log}"
    );
    assert!(
        log.contains("shape mismatch, model keeps its values:\n  head.fc.weight: model [7, 8] vs. checkpoint [5, 8]"),
        "{log}"
    );
}
