//! Quantized while loading: the parameters `quantize` chooses are quantized batch by batch as
//! they load, with burn's own quantizer, so they equal — bit for bit — what burn's
//! `quantize_weights` makes of the same model loaded in float.

use burn::module::{Module, ParamGroup, Quantizer};
use burn::prelude::*;
use burn::tensor::quantization::Calibration;
use burn_pretrain::quantize::{Params, Quantize, Scale, Value, linear_weight_ids};
use burn_pretrain::{LoadReport, Pretrain, PretrainExt};
use burn_pretrain_examples::finetune::{changed, snapshot};
use burn_pretrain_models::{BACKBONES, Backbone, Features, Stage};
use burn_pretrain_tests::{fixture, relative_error, saved_tensor};
use serde_json::{Value as Json, json};

/// The narrow ViT, not loaded.
fn unloaded() -> Backbone {
    let config = json!({
        "type": "VisionTransformer", "variant": "vit_tiny_patch16_224",
        "embed_dim": 48, "depth": 2, "num_heads": 3, "num_classes": 10,
    });
    BACKBONES.build(&config, &Device::flex()).unwrap().model
}

fn vit(pretrain: Json) -> (Backbone, LoadReport) {
    let config = json!({
        "type": "VisionTransformer", "variant": "vit_tiny_patch16_224",
        "embed_dim": 48, "depth": 2, "num_heads": 3, "num_classes": 10, "pretrain": pretrain,
    });
    let built = BACKBONES.build(&config, &Device::flex()).unwrap();
    let [load] = built.report.loads() else {
        panic!("one load expected: {}", built.report)
    };
    let report = load.report.clone();
    (built.model, report)
}

fn logits(model: &Backbone) -> Tensor<2> {
    let x = saved_tensor::<4>("timm/vit_narrow_io.safetensors", "input", &Device::flex());
    match Stage::forward(model, Features::D4(x)) {
        Features::D2(logits) => logits,
        other => panic!("rank {}", other.rank()),
    }
}

#[test]
fn linear_weights_quantized_while_loading_equal_burns_quantize_after_load() {
    let checkpoint = fixture("timm/vit_narrow.pth").display().to_string();
    for quantize in [
        Quantize::new(Value::Q8s).with_block(Some(16)),
        Quantize::new(Value::Q4s)
            .with_block(Some(16))
            .with_scale(Scale::F32),
        Quantize::new(Value::Q8s).with_block(None),
    ] {
        // One model, loaded twice: the same parameter ids on both sides.
        let model = unloaded();
        let spec = Pretrain::from(checkpoint.as_str()).with_quantize(quantize.clone());
        let (quantized, report) = model.clone().load_pretrained(spec).unwrap();
        let q = report.quantized().expect("a quantize report");
        // qkv (packed: one key, three Linears), proj, fc1, fc2 in each of 2 blocks; the head
        // ([48, 10] in burn's layout) only per tensor: 16 does not divide 10.
        let blocked = quantize.block.is_some();
        assert_eq!(q.keys.len(), 2 * 4 + usize::from(!blocked), "{report}");
        assert_eq!(q.indivisible.len(), usize::from(blocked), "{report}");
        assert!(q.keys.iter().all(|k| k.ends_with(".weight")));
        assert!(q.quantized_bytes < q.float_bytes / 3, "{q:?}");
        let text = report.to_string();
        assert!(text.contains("quantized while loading"), "{text}");

        let (float, _) = model.load_pretrained(checkpoint.as_str()).unwrap();
        let mut ids = linear_weight_ids(&float);
        assert_eq!(
            ids.len(),
            2 * 6 + 1,
            "query, key, value, proj, fc1, fc2 per block; head"
        );
        if blocked {
            let Backbone::VisionTransformer(vit) = &float else {
                panic!("a ViT")
            };
            ids.remove(&vit.head.as_ref().unwrap().weight.id);
        }
        let mut quantizer = Quantizer::new(Calibration::MinMax, quantize.scheme());
        let after = float.clone().quantize_weights_group(
            &mut quantizer,
            ParamGroup::from_ids(ids.into_iter().collect()),
        );
        let (differ, same) = changed(&snapshot(&after), &snapshot(&quantized));
        assert!(
            differ.is_empty(),
            "{} of {} tensors differ ({quantize:?})",
            differ.len(),
            differ.len() + same.len()
        );
        // The quantized model runs, near the float one.
        let err = relative_error(logits(&quantized), logits(&float));
        let bound = if quantize.value == Value::Q4s {
            0.5
        } else {
            0.05
        };
        assert!(err < bound, "{quantize:?}: logits relative error {err}");
        assert_eq!(relative_error(logits(&quantized), logits(&after)), 0.0);
    }
}

#[test]
fn quantize_by_key_pattern_from_a_config() {
    let checkpoint = fixture("timm/vit_narrow.pth").display().to_string();
    let (_, report) = vit(json!({
        "path": checkpoint,
        "quantize": {"value": "q8s", "block": 16, "params": ["^blocks\\.1\\.mlp\\."]},
    }));
    let q = report.quantized().unwrap();
    assert_eq!(
        q.keys,
        [
            "blocks.1.mlp.fc1.weight",
            "blocks.1.mlp.fc1.bias",
            "blocks.1.mlp.fc2.weight",
            "blocks.1.mlp.fc2.bias"
        ]
    );
    // A bad pattern fails before anything is read.
    let spec = Pretrain::from(checkpoint.as_str())
        .with_quantize(Quantize::new(Value::Q8s).with_params(Params::Keys(vec!["(".into()])));
    let Err(err) = BACKBONES.build(
        &json!({
            "type": "VisionTransformer", "variant": "vit_tiny_patch16_224",
            "embed_dim": 48, "depth": 2, "num_heads": 3, "num_classes": 10,
            "pretrain": serde_json::to_value(spec).unwrap(),
        }),
        &Device::flex(),
    ) else {
        panic!("a bad pattern loaded")
    };
    let text = burn_pretrain::error::chain(&err);
    assert!(
        text.contains("invalid pattern `(` in `quantize.params`"),
        "{text}"
    );
}
