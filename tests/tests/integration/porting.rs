//! Porting PyTorch models without hand-written mappings: attention kept as separate
//! projection Linears (BERT, CLIP, Llama), weight norm in both PyTorch forms, and models with
//! another number of repeated layers than their checkpoint. Fixtures and PyTorch's outputs
//! from tests/fixtures/porting/generate.py.

use burn::nn::attention::{MhaInput, MultiHeadAttention, MultiHeadAttentionConfig};
use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig1d};
use burn::prelude::*;
use std::collections::BTreeSet;

use burn::tensor::TensorData;
use burn_pretrain::export::{export_tensors, export_tensors_like};
use burn_pretrain::{Checkpoint, Pretrain, PretrainExt, Pretrainable};
use burn_pretrain_tests::{fixture, relative_error, saved_tensor};

fn mha(bias: bool, device: &Device) -> MultiHeadAttention {
    MultiHeadAttentionConfig::new(16, 4)
        .with_dropout(0.0)
        .with_query_bias(bias)
        .with_key_bias(bias)
        .with_value_bias(bias)
        .with_output_bias(bias)
        .init(device)
}

#[derive(Module, Debug, Pretrainable)]
struct BertSelf {
    #[pretrain(rename = "self")]
    attn: MultiHeadAttention,
}

#[derive(Module, Debug, Pretrainable)]
struct Bert {
    attention: BertSelf,
}

fn attention_matches(out: Tensor<3>, io: &str, device: &Device) {
    let err = relative_error(out, saved_tensor(io, "output", device));
    assert!(err <= 1e-5, "{io}: relative error {err:e}");
}

#[test]
fn bert_attention_loads_into_burns_mha_with_one_remap_of_its_output() {
    let device = Device::flex();
    let model = Bert {
        attention: BertSelf {
            attn: mha(true, &device),
        },
    };
    let spec = Pretrain::from_path(fixture("porting/bert_attention.pth").to_str().unwrap())
        .with_remap(r"^attention\.output\.dense\.", "attention.self.out_proj.");
    let (model, report) = model.load_pretrained(spec).unwrap();
    assert!(report.is_complete(), "{report}");
    assert_eq!(report.loaded().len(), 8, "{report}");
    let io = "porting/bert_attention_io.safetensors";
    let out = model
        .attention
        .attn
        .forward(MhaInput::self_attn(saved_tensor(io, "input", &device)))
        .context;
    attention_matches(out, io, &device);
}

#[derive(Module, Debug, Pretrainable)]
struct Clip {
    self_attn: MultiHeadAttention,
}

#[test]
fn clip_and_llama_projections_load_with_and_without_biases_and_export_back() {
    let device = Device::flex();
    for (case, bias) in [("clip", true), ("llama", false)] {
        let path = fixture(&format!("porting/{case}_attention.pth"));
        let model = Clip {
            self_attn: mha(bias, &device),
        };
        let (model, report) = model.load_pretrained(path.to_str().unwrap()).unwrap();
        assert!(report.is_complete(), "{case}: {report}");
        assert_eq!(report.loaded().len(), if bias { 8 } else { 4 }, "{report}");
        let io = format!("porting/{case}_attention_io.safetensors");
        let out = model
            .self_attn
            .forward(MhaInput::self_attn(saved_tensor(&io, "input", &device)))
            .context;
        attention_matches(out, &io, &device);
        // Without the checkpoint's keys, export writes nn.MultiheadAttention's packed form;
        // the values are the same projections stacked.
        let exported = export_tensors(&model).unwrap();
        let keys: Vec<&str> = exported.iter().map(|(k, _)| k.as_str()).collect();
        assert!(keys.contains(&"self_attn.in_proj_weight"), "{keys:?}");
        // Following the checkpoint's keys, it writes the checkpoint back: same keys, same
        // values (what `load_state_dict(strict=True)` on the PyTorch module needs).
        let stored = Checkpoint::open(&path).unwrap();
        let wanted: BTreeSet<String> = stored
            .entries()
            .iter()
            .map(|e| e.key().to_string())
            .collect();
        let exported = export_tensors_like(&model, &wanted).unwrap();
        let got: BTreeSet<String> = exported.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(got, wanted);
        for (key, data) in &exported {
            let entry = stored.get(key).unwrap();
            let theirs = TensorData::from_bytes_vec(
                entry.read().unwrap(),
                entry.shape().to_vec(),
                entry.dtype().to_burn_dtype(),
            );
            assert_eq!(data.shape(), theirs.shape(), "{key}");
            data.assert_approx_eq::<f32>(&theirs, burn::tensor::Tolerance::absolute(0.0));
        }
    }
}

#[derive(Module, Debug, Pretrainable)]
struct Normed {
    linear: Linear,
    conv: Conv1d,
    conv_in: Conv1d,
}

impl Normed {
    fn new(device: &Device) -> Self {
        Self {
            linear: LinearConfig::new(6, 4).init(device),
            conv: Conv1dConfig::new(4, 5, 3)
                .with_padding(PaddingConfig1d::Explicit(1, 1))
                .init(device),
            conv_in: Conv1dConfig::new(5, 3, 1).init(device),
        }
    }
}

#[test]
fn weight_norm_in_both_pytorch_forms_folds_into_plain_layers() {
    let device = Device::flex();
    for (form, names) in [
        ("old", "(weight_g, weight_v)"),
        (
            "new",
            "(parametrizations.weight.original0, parametrizations.weight.original1)",
        ),
    ] {
        let path = fixture(&format!("porting/weight_norm_{form}.pth"));
        let (model, report) = Normed::new(&device)
            .load_pretrained(path.to_str().unwrap())
            .unwrap();
        assert!(report.is_complete(), "{form}: {report}");
        assert_eq!(report.loaded().len(), 6, "{report}");
        let text = report.to_string();
        assert!(
            text.contains(&format!(
                "folded weight norm {names} into `conv.weight`, `conv_in.weight`, `linear.weight`"
            )),
            "{text}"
        );
        let io = format!("porting/weight_norm_{form}_io.safetensors");
        let seq = saved_tensor::<3>(&io, "sequence", &device);
        let checks = [
            (
                "linear",
                model
                    .linear
                    .forward(saved_tensor::<2>(&io, "input", &device))
                    .unsqueeze::<3>(),
            ),
            ("conv", model.conv.forward(seq.clone())),
            ("conv_in", model.conv_in.forward(model.conv.forward(seq))),
        ];
        for (stage, out) in checks {
            let expected = if stage == "linear" {
                saved_tensor::<2>(&io, stage, &device).unsqueeze::<3>()
            } else {
                saved_tensor::<3>(&io, stage, &device)
            };
            let err = relative_error(out, expected);
            assert!(err <= 1e-5, "{form} {stage}: relative error {err:e}");
        }
    }
}
