//! Mismatch policies and expectations against what PyTorch and timm compute for the same
//! operation (tests/fixtures/policies/generate.py): adapted input channels, resampled
//! position grids, selected classifier rows; and the gates that make a wrong load fail.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn_pretrain::{Error, Policy, Pretrain, PretrainExt, Pretrainable};
use burn_pretrain_tests::{fixture, relative_error, saved_tensor};

const EXPECTED: &str = "policies/expected.safetensors";

fn source() -> Pretrain {
    Pretrain::from(fixture("policies/policies.pth"))
}

#[derive(Module, Debug, Pretrainable)]
struct Stem {
    stem: Conv2d,
    stem4: Conv2d,
}

fn stem(c3: usize, c4: usize, device: &Device) -> Stem {
    let conv = |c| {
        Conv2dConfig::new([c, 8], [3, 3])
            .with_bias(false)
            .init(device)
    };
    Stem {
        stem: conv(c3),
        stem4: conv(c4),
    }
}

fn close<const D: usize>(ours: Tensor<D>, theirs: Tensor<D>) {
    let err = relative_error(ours, theirs);
    assert!(err < 1e-6, "relative error {err:e}");
}

#[test]
fn adapt_in_channels_matches_timm_for_three_channel_sources_and_any_other_count() {
    let device = Device::flex();
    let spec = source().with_on_mismatch(r"^stem4?\.weight$", Policy::AdaptInChannels);
    for (c3, c4) in [(1, 6), (2, 1), (5, 6)] {
        let (model, report) = stem(c3, c4, &device).load_pretrained(&spec).unwrap();
        close(
            model.stem.weight.val(),
            saved_tensor(EXPECTED, &format!("stem.to{c3}"), &device),
        );
        close(
            model.stem4.weight.val(),
            saved_tensor(EXPECTED, &format!("stem4.to{c4}"), &device),
        );
        let text = report.to_string();
        assert!(
            text.contains(&format!(
                "\n    stem.weight: adapted 3 → {c3} input channels\n"
            )),
            "{text}"
        );
        assert_eq!(report.adapted().len(), 2);
        assert!(report.mismatched().is_empty());
    }
}

#[derive(Module, Debug, Pretrainable)]
struct Embed {
    pos_embed: Param<Tensor<3>>,
    pos_grid: Param<Tensor<4>>,
}

#[test]
fn resample_grid_matches_timm_and_antialiased_bicubic_up_and_down() {
    let device = Device::flex();
    for (tokens, grid) in [(10, 9), (4, 5)] {
        let model = Embed {
            pos_embed: Param::from_tensor(Tensor::zeros([1, 1 + tokens * tokens, 16], &device)),
            pos_grid: Param::from_tensor(Tensor::zeros([1, 16, grid, grid], &device)),
        };
        let (model, report) = model
            .load_pretrained(source().with_on_mismatch("^pos_", Policy::resample_grid()))
            .unwrap();
        close(
            model.pos_embed.val(),
            saved_tensor(EXPECTED, &format!("pos_embed.to{tokens}"), &device),
        );
        close(
            model.pos_grid.val(),
            saved_tensor(EXPECTED, &format!("pos_grid.to{grid}"), &device),
        );
        let how: Vec<&str> = report.adapted().iter().map(|a| a.how.as_str()).collect();
        assert_eq!(
            how,
            [
                format!("resampled grid 7×7 → {tokens}×{tokens} (bicubic, 1 prefix tokens kept)"),
                format!("resampled grid 7×7 → {grid}×{grid} (bicubic)"),
            ]
        );
    }
}

#[derive(Module, Debug, Pretrainable)]
struct Head {
    head: Linear,
}

#[test]
fn select_rows_keeps_the_named_classes_in_order_from_code_or_a_file() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("classes.txt");
    std::fs::write(&file, "# the classes we keep\n7\n2, 5\n").unwrap();
    let from_code = source().with_on_mismatch("^head\\.", Policy::select_rows([7, 2, 5]));
    let from_file =
        source().with_on_mismatch("^head\\.", Policy::select_rows_from(file.to_string_lossy()));
    for spec in [from_code, from_file] {
        let model = Head {
            head: LinearConfig::new(16, 3).init(&device),
        };
        let (model, report) = model.load_pretrained(spec).unwrap();
        // burn keeps Linear weights as [in, out]: the selected rows, transposed.
        close(
            model.head.weight.val().transpose(),
            saved_tensor(EXPECTED, "head.weight.rows", &device),
        );
        close(
            model.head.bias.unwrap().val(),
            saved_tensor(EXPECTED, "head.bias.rows", &device),
        );
        assert_eq!(report.adapted()[0].how, "selected 3 rows [7, 2, 5]");
    }
}

#[test]
fn keep_and_error_policies_decide_a_mismatch() {
    let device = Device::flex();
    let model = || Head {
        head: LinearConfig::new(16, 3).init(&device),
    };
    let before = model();
    let err = before
        .clone()
        .load_pretrained(source().with_on_mismatch("^head\\.weight$", Policy::Error))
        .unwrap_err();
    let Error::Unmet { unmet, report } = &err else {
        panic!("{err}")
    };
    assert!(
        unmet[0].contains("`head.weight`: model [3, 16] vs. checkpoint [10, 16]"),
        "{unmet:?}"
    );
    assert!(
        report.to_string().contains("failed: `head.weight`"),
        "{report}"
    );
    // Kept explicitly: the mismatch is reported with its rule, and the load succeeds.
    let (kept, report) = model()
        .load_pretrained(
            source()
                .with_on_mismatch("^head\\.", Policy::Keep)
                .with_allow_empty(true),
        )
        .unwrap();
    assert_eq!(
        report.mismatched()[0].rule,
        Some(burn_pretrain::policy::PolicySource::Rule {
            pattern: "^head\\.".into()
        })
    );
    assert_eq!(report.loaded().len(), 0);
    assert!(report.summary().contains("loaded 0/2 model tensors (0 %)"));
    assert_eq!(kept.head.weight.dims(), [16, 3]);
}

#[test]
fn a_policy_that_cannot_apply_fails_the_load_and_says_why() {
    let device = Device::flex();
    let model = Head {
        head: LinearConfig::new(16, 3).init(&device),
    };
    let err = model
        .load_pretrained(source().with_on_mismatch("^head\\.", Policy::AdaptInChannels))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("adapt_in_channels needs conv weights [out, in, k...]"),
        "{text}"
    );
    assert!(text.contains("rule `^head\\.`"), "{text}");
}

/// A model of another variant (a head over 12 features where the checkpoint's has 16): only
/// the bias fits. That is an error by default, naming the layer, and the model is unchanged.
#[test]
fn a_half_loaded_layer_fails_by_default_and_names_the_layer() {
    let device = Device::flex();
    let mut model = Head {
        head: LinearConfig::new(12, 10).init(&device),
    };
    let before = model.head.bias.as_ref().unwrap().val().into_data();
    let err = model.load_pretrained_in_place(source()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(
            "layer `head` half loaded: loaded head.bias; not head.weight (model [10, 12] vs. checkpoint [10, 16])"
        ),
        "{text}"
    );
    let Error::Unmet { report, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        report.summary(),
        "loaded 1/2 model tensors (50 %), used 1/6 checkpoint tensors (17 %)"
    );
    assert_eq!(
        model.head.bias.as_ref().unwrap().val().into_data(),
        before,
        "the model changed on a failed load"
    );
    // Allowed explicitly, the bias loads and the weight keeps its value.
    let (loaded, report) = model
        .load_pretrained(source().with_allow_missing("^head\\.weight$"))
        .unwrap();
    assert_eq!(report.loaded(), ["head.bias"]);
    close(
        loaded.head.bias.unwrap().val(),
        saved_tensor("policies/policies.pth", "head.bias", &device),
    );
}

/// A BatchNorm whose running statistics are not in the checkpoint (here renamed away) is half
/// loaded: an error naming each such layer.
#[test]
fn a_batchnorm_without_its_running_statistics_is_half_loaded() {
    let device = Device::flex();
    let spec = Pretrain::from(fixture("dataparallel/classifier_dp.pth"))
        .with_remap("running_(mean|var)$", "moving_$1");
    let err = burn_pretrain_tests::Classifier::new(5, &device)
        .load_pretrained(spec)
        .unwrap_err();
    let Error::Unmet { unmet, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(unmet.len(), 6, "{unmet:#?}");
    assert!(
        unmet[0].starts_with(
            "layer `backbone.bn1` half loaded: loaded backbone.bn1.weight, backbone.bn1.bias; not backbone.bn1.running_mean (missing), backbone.bn1.running_var (missing)"
        ),
        "{}",
        unmet[0]
    );
}
