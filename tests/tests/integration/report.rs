//! The report as text (whole expected output) and as JSON.

use burn::prelude::*;
use burn_pretrain::{Pretrain, PretrainExt};
use burn_pretrain_tests::{Backbone, Classifier, fixture};

#[test]
fn text_report_for_another_class_count() {
    let device = Device::flex();
    let path = fixture("dataparallel/classifier_dp.pth");
    let (_, report) = Classifier::new(7, &device).load_pretrained(&path).unwrap();
    let text = report
        .to_string()
        .replace(&path.display().to_string(), "<dp>");
    let expected = "\
Loaded pretrained model [Classifier] from <dp> (PyTorch zip)
  view: unwrapped `state_dict`, ignored optimizer (20 tensors)
  view: stripped `module.` from 38 keys
  loaded 30/32 model tensors (94 %), used 30/32 checkpoint tensors (94 %): backbone 30/30, head 0/2
  shape mismatch, model keeps its values:
    head.fc.weight: model [7, 8] vs. checkpoint [5, 8]
    head.fc.bias: model [7] vs. checkpoint [5]
  ignored (outside the `state_dict` container): optimizer.* (20 tensors)
  ignored (BatchNorm step counter, not a parameter): backbone.bn1.num_batches_tracked, backbone.layer1.{0,1}.bn1.num_batches_tracked, backbone.layer1.{0,1}.bn2.num_batches_tracked, backbone.layer1.1.downsample.1.num_batches_tracked
";
    assert_eq!(text, expected);
}

#[test]
fn text_report_folds_unexpected_and_casts() {
    let device = Device::flex();
    let path = fixture("torchvision_style/backbone_with_fc.pth");
    let report = Backbone::new(&device).plan_pretrained(&path).unwrap();
    let text = report
        .to_string()
        .replace(&path.display().to_string(), "<tv>");
    assert!(text.starts_with("Plan for pretrained model [Backbone] from <tv> (PyTorch zip)\n"));
    assert!(
        text.contains("\n  unexpected in checkpoint: fc.{bias,weight}\n"),
        "{text}"
    );

    let path = fixture("half/backbone_f16.pth");
    let report = Backbone::new(&device).plan_pretrained(&path).unwrap();
    let text = report.to_string();
    assert!(
        text.contains(
            "\n  cast f16 → f32: conv1.weight, bn1.{weight,bias}, layer1.{0,1}.conv1.weight,"
        ),
        "{text}"
    );
    assert!(
        text.contains("\n  cast bf16 → f32: bn1.running_mean\n"),
        "{text}"
    );
    assert!(
        text.contains("\n  cast f64 → f32: bn1.running_var\n"),
        "{text}"
    );
}

#[test]
fn json_report_lists_every_outcome() {
    let device = Device::flex();
    let spec = Pretrain::from(fixture("dataparallel/classifier_dp.pth"));
    let (_, report) = Classifier::new(7, &device).load_pretrained(spec).unwrap();
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["format"], "pytorch_zip");
    assert_eq!(json["loaded"].as_array().unwrap().len(), 30);
    assert_eq!(
        json["mismatched"][0],
        serde_json::json!({"key": "head.fc.weight", "model_shape": [7, 8], "checkpoint_shape": [5, 8]})
    );
    assert_eq!(json["missing"], serde_json::json!([]));
    assert_eq!(json["unexpected"], serde_json::json!([]));
    assert_eq!(
        json["view"][1],
        serde_json::json!({"step": "stripped", "prefix": "module.", "keys": 38})
    );
    assert_eq!(json["coverage"], serde_json::json!(30.0 / 32.0));
    assert_eq!(
        json["subtrees"],
        serde_json::json!([
            {"subtree": "backbone", "loaded": 30, "total": 30},
            {"subtree": "head", "loaded": 0, "total": 2}
        ])
    );
}

/// `log()` and `Display` render the same sections in the same words (one renderer): every line
/// of the text after the headline is in the log, the ignored keys included (which the log
/// once left out), each section at its level.
#[test]
fn the_log_says_what_the_text_says() {
    let device = Device::flex();
    let path = fixture("dataparallel/classifier_dp.pth");
    let (_, report) = Classifier::new(7, &device).load_pretrained(&path).unwrap();
    let ((), log) = burn_pretrain_tests::capture_logs(tracing::Level::INFO, || report.log());
    let text = report.to_string();
    let lines: Vec<&str> = text.lines().skip(1).map(str::trim).collect();
    assert!(lines.len() >= 6, "{text}");
    for line in lines {
        // The summary's per-subtree tail is the text's alone; the log's first line ends with it.
        let line = line.split(": backbone").next().unwrap_or(line);
        assert!(log.contains(line), "`{line}` is not in the log:\n{log}");
    }
    let warning = log
        .lines()
        .find(|l| l.contains("shape mismatch, model keeps its values:"))
        .unwrap();
    assert!(warning.contains("WARN"), "{log}");
    let ignored = log.lines().find(|l| l.contains("ignored (")).unwrap();
    assert!(ignored.contains("INFO"), "{log}");
}
