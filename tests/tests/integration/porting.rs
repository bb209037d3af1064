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

#[derive(Module, Debug, Pretrainable)]
struct Speaker {
    rnn: Vec<burn::nn::Lstm>,
    proj: Linear,
}

fn speaker(layers: usize, device: &Device) -> Speaker {
    let rnn = (0..layers)
        .map(|i| burn::nn::LstmConfig::new(if i == 0 { 4 } else { 6 }, 6, true).init(device))
        .collect();
    Speaker {
        rnn,
        proj: LinearConfig::new(6, 3).init(device),
    }
}

#[test]
fn a_model_with_fewer_lstm_layers_than_its_checkpoint_cannot_look_complete() {
    let device = Device::flex();
    let path = fixture("porting/lstm3.pth");
    let path = path.to_str().unwrap();
    // Every tensor of the 2-layer model is in the 3-layer checkpoint; the third layer is not
    // in the model. That names the counts, not a percentage.
    let err = speaker(2, &device)
        .load_pretrained(path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("checkpoint has 3 layers of `rnn` (`_l0`…`_l2`), the model 2 (`_l0`…`_l1`)"),
        "{err}"
    );
    assert!(err.contains("allow_unexpected"), "{err}");
    // The report carried by the error says both sides.
    let (_, report) = speaker(2, &device)
        .load_pretrained(Pretrain::from_path(path).with_allow_unexpected(r"^rnn\..*_l2$"))
        .unwrap();
    let summary = report.summary();
    assert_eq!(
        summary,
        "loaded 10/10 model tensors (100 %), used 10/14 checkpoint tensors (71 %)"
    );
    // The right model loads without a word.
    let (_, report) = speaker(3, &device).load_pretrained(path).unwrap();
    assert!(report.is_complete(), "{report}");
    assert!(report.unexpected().is_empty(), "{report}");
    assert_eq!(
        report.checkpoint_used(),
        report.checkpoint_total(),
        "{report}"
    );
}

#[derive(Module, Debug, Pretrainable)]
struct Block {
    fc: Linear,
    #[pretrain(rename = "LayerNorm")]
    norm: burn::nn::LayerNorm,
}

#[derive(Module, Debug, Pretrainable)]
struct Blocks {
    blocks: Vec<Block>,
}

fn blocks(n: usize, device: &Device) -> Blocks {
    Blocks {
        blocks: (0..n)
            .map(|_| Block {
                fc: LinearConfig::new(4, 4).init(device),
                norm: burn::nn::LayerNormConfig::new(4).init(device),
            })
            .collect(),
    }
}

#[test]
fn a_model_with_another_number_of_blocks_names_both_counts() {
    let device = Device::flex();
    let path = fixture("porting/blocks.pth");
    let path = path.to_str().unwrap();
    let err = blocks(5, &device)
        .load_pretrained(path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("checkpoint has 6 layers of `blocks` (`blocks.0`…`blocks.5`), the model 5 (`blocks.0`…`blocks.4`)"),
        "{err}"
    );
    // More blocks than the checkpoint: the model's side is missing and says so by count too.
    let err = blocks(7, &device)
        .load_pretrained(path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("6 layers of `blocks`"), "{err}");
    assert!(err.contains("the model 7"), "{err}");
    let (_, report) = blocks(7, &device)
        .load_pretrained(Pretrain::from_path(path).with_allow_missing(r"^blocks\.6\."))
        .unwrap();
    assert_eq!(report.loaded().len(), 24, "{report}");
    assert_eq!(report.missing().len(), 4, "{report}");
    let (_, report) = blocks(6, &device).load_pretrained(path).unwrap();
    assert!(report.is_complete(), "{report}");
}

/// Follow every hint that carries a remap.
fn with_hinted_remaps(path: &str, hints: &[burn_pretrain::report::Hint]) -> Pretrain {
    hints
        .iter()
        .filter_map(|h| h.remap())
        .fold(Pretrain::from_path(path), |spec, r| {
            spec.with_remap(r.from.clone(), r.to.clone())
        })
}

#[test]
fn bert_attention_without_its_remap_hints_the_output_projection_never_the_value() {
    let device = Device::flex();
    let path = fixture("porting/bert_attention.pth");
    let path = path.to_str().unwrap();
    let model = || Bert {
        attention: BertSelf {
            attn: mha(true, &device),
        },
    };
    let (_, report) = model().load_pretrained(path).unwrap();
    let text = report.to_string();
    assert!(
        !text.contains("self.value.weight` with the same shape"),
        "{text}"
    );
    let hint = report
        .hints()
        .iter()
        .find(|h| h.remap().is_some())
        .unwrap_or_else(|| panic!("no remap hint: {text}"));
    assert_eq!(hint.model_keys(), ["attention.self.out_proj"], "{text}");
    assert_eq!(hint.checkpoint_keys(), ["attention.output.dense"], "{text}");
    // Following the hint is the whole fix.
    let (_, report) = model()
        .load_pretrained(with_hinted_remaps(path, report.hints()))
        .unwrap();
    assert!(report.is_complete(), "{report}");
}

#[derive(Module, Debug, Pretrainable)]
struct Renamed {
    lstm: Vec<burn::nn::Lstm>,
    linear: Linear,
}

#[test]
fn fields_renamed_whole_are_hinted_in_the_error_and_the_hints_fix_the_load() {
    let device = Device::flex();
    let path = fixture("porting/lstm3.pth");
    let path = path.to_str().unwrap();
    let model = || {
        let Speaker { rnn, proj } = speaker(3, &device);
        Renamed {
            lstm: rnn,
            linear: proj,
        }
    };
    let err = model().load_pretrained(path).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("nothing loaded"), "{text}");
    // The error alone names the keys on both sides and the two remaps.
    assert!(text.contains("missing in checkpoint: "), "{text}");
    assert!(text.contains("unexpected in checkpoint: "), "{text}");
    assert!(
        text.contains(r"hint: model `lstm.*` ↔ checkpoint `rnn.*`")
            && text.contains(r"remap `^rnn\.` → `lstm.`"),
        "{text}"
    );
    assert!(text.contains(r"remap `^proj\.` → `linear.`"), "{text}");
    let burn_pretrain::Error::Unmet { report, .. } = err else {
        panic!("{text}")
    };
    let (_, report) = model()
        .load_pretrained(with_hinted_remaps(path, report.hints()))
        .unwrap();
    assert!(report.is_complete(), "{report}");
}

#[derive(Module, Debug, Pretrainable)]
struct Converted {
    gate_up: Linear,
    q: Linear,
    k: Linear,
    v: Linear,
    c_proj: Linear,
    head: Linear,
    wn: Linear,
}

impl Converted {
    fn new(device: &Device) -> Self {
        Self {
            gate_up: LinearConfig::new(4, 12).with_bias(false).init(device),
            q: LinearConfig::new(4, 4).init(device),
            k: LinearConfig::new(4, 4).init(device),
            v: LinearConfig::new(4, 4).init(device),
            c_proj: LinearConfig::new(4, 5).init(device),
            head: LinearConfig::new(4, 3).init(device),
            wn: LinearConfig::new(4, 3).init(device),
        }
    }
}

/// One converter of each kind, as a config writes them.
const CONVERTERS: &str = r#"[
    {"merge": {"from": ["gate_proj.weight", "up_proj.weight"], "into": "gate_up.weight", "axis": 0}},
    {"split": {"from": "qkv.*", "into": ["q.*", "k.*", "v.*"]}},
    {"transpose": {"key": "c_proj.weight"}},
    {"reshape": {"key": "head.weight", "shape": [3, -1]}},
    {"fold_weight_norm": {"g": "wn.g", "v": "wn.v", "into": "wn.weight"}}
]"#;

#[test]
fn converters_from_a_config_reproduce_pytorch_and_export_undoes_them() {
    let device = Device::flex();
    let path = fixture("porting/converters.pth");
    let spec: Pretrain = serde_json::from_str(&format!(
        r#"{{"path": {:?}, "convert": {CONVERTERS}}}"#,
        path.to_str().unwrap()
    ))
    .unwrap();
    let (model, report) = Converted::new(&device).load_pretrained(&spec).unwrap();
    assert!(report.is_complete(), "{report}");
    let text = report.to_string();
    for line in [
        "view: merge `gate_proj.weight` + `up_proj.weight` → `gate_up.weight` (axis 0): made `gate_up.weight`",
        "view: split `qkv.*` → `q.*` + `k.*` + `v.*` (axis 0): made `q.bias`, `k.bias`, `v.bias`, `q.weight` and 2 more",
        "view: transpose `c_proj.weight`: made `c_proj.weight`",
        "view: reshape `head.weight` → [3, -1]: made `head.weight`",
        "view: fold weight norm `wn.g` + `wn.v` → `wn.weight`: made `wn.weight`",
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
    let io = "porting/converters_io.safetensors";
    let x = saved_tensor::<2>(io, "input", &device);
    let gate_up = model.gate_up.forward(x.clone());
    let checks = [
        ("gate", gate_up.clone().narrow(1, 0, 6)),
        ("up", gate_up.narrow(1, 6, 6)),
        ("q", model.q.forward(x.clone())),
        ("k", model.k.forward(x.clone())),
        ("v", model.v.forward(x.clone())),
        ("c_proj", model.c_proj.forward(x.clone())),
        ("head", model.head.forward(x.clone())),
        ("wn", model.wn.forward(x)),
    ];
    for (name, out) in checks {
        let err = relative_error(out, saved_tensor(io, name, &device));
        assert!(err <= 1e-5, "{name}: relative error {err:e}");
    }
    // Export undoes every converter: the checkpoint's keys and shapes (what PyTorch's
    // `load_state_dict(strict=True)` checks), its values where the converter is exact.
    let stored = Checkpoint::open(&path).unwrap();
    let exported =
        burn_pretrain::export::export_converted(&model, spec.converters(), Some(&stored)).unwrap();
    let got: BTreeSet<&str> = exported.iter().map(|(k, _)| k.as_str()).collect();
    let wanted: BTreeSet<&str> = stored.entries().iter().map(|e| e.key()).collect();
    assert_eq!(got, wanted);
    for (key, data) in &exported {
        let entry = stored.get(key).unwrap();
        assert_eq!(data.shape().to_vec(), entry.shape().to_vec(), "{key}");
        if key.starts_with("wn.") && key != "wn.bias" {
            continue;
        }
        let theirs = TensorData::from_bytes_vec(
            entry.read().unwrap(),
            entry.shape().to_vec(),
            entry.dtype().to_burn_dtype(),
        );
        data.assert_approx_eq::<f32>(&theirs, burn::tensor::Tolerance::absolute(0.0));
    }
    // The weight norm comes back as magnitude ‖w‖ and direction w, which fold to the same w.
    let g = &exported.iter().find(|(k, _)| k == "wn.g").unwrap().1;
    let v = &exported.iter().find(|(k, _)| k == "wn.v").unwrap().1;
    let w = model.wn.weight.val().transpose().into_data();
    v.assert_approx_eq::<f32>(&w, burn::tensor::Tolerance::absolute(0.0));
    let norm: f32 = w.iter::<f32>().map(|x| x * x).sum::<f32>().sqrt();
    let g: Vec<f32> = g.iter::<f32>().collect();
    assert!((g[0] - norm).abs() <= 1e-6 * norm, "{g:?} vs {norm}");
}

#[test]
fn converters_that_do_not_fit_are_refused_with_the_keys_named() {
    let device = Device::flex();
    let path = fixture("porting/converters.pth");
    let path = path.to_str().unwrap();
    let load = |converter: burn_pretrain::view::Converter| {
        Converted::new(&device)
            .load_pretrained(Pretrain::from_path(path).with_converter(converter))
            .unwrap_err()
            .to_string()
    };
    let err = load(serde_json::from_str(
        r#"{"merge": {"from": ["qkv.weight", "gate_proj.weight"], "into": "x.weight", "axis": 1}}"#,
    ).unwrap());
    assert!(
        err.contains(
            "`qkv.weight` [12, 4] and `gate_proj.weight` [6, 4] do not concatenate along axis 1"
        ),
        "{err}"
    );
    let err = load(
        serde_json::from_str(
            r#"{"split": {"from": "qkv.weight", "into": ["a", "b"], "sizes": [5, 5]}}"#,
        )
        .unwrap(),
    );
    assert!(
        err.contains("sizes [5, 5] for 2 parts do not sum to 12"),
        "{err}"
    );
    let err = load(
        serde_json::from_str(
            r#"{"merge": {"from": ["*.gate.weight", "*.up.weight"], "into": "*.w"}}"#,
        )
        .unwrap(),
    );
    assert!(err.contains("`*.gate.weight` matches no key"), "{err}");
    let err = load(
        serde_json::from_str(
            r#"{"merge": {"from": ["gate_*.weight", "gate_*.scale"], "into": "*.w"}}"#,
        )
        .unwrap(),
    );
    assert!(
        err.contains("`gate_proj.scale` (with `gate_proj.weight`) is not in"),
        "{err}"
    );
}

#[derive(Module, Debug, Pretrainable)]
struct PlainBlock {
    fc: Linear,
    layer_norm: burn::nn::LayerNorm,
}

#[derive(Module, Debug, Pretrainable)]
struct PlainBlocks {
    blocks: Vec<PlainBlock>,
}

#[test]
fn layer_norm_and_layernorm_are_one_name_and_one_hint_for_every_block() {
    let device = Device::flex();
    let path = fixture("porting/blocks.pth");
    let path = path.to_str().unwrap();
    let model = || PlainBlocks {
        blocks: (0..6)
            .map(|_| PlainBlock {
                fc: LinearConfig::new(4, 4).init(&device),
                layer_norm: burn::nn::LayerNormConfig::new(4).init(&device),
            })
            .collect(),
    };
    let (_, report) = model().load_pretrained(path).unwrap();
    let hints: Vec<String> = report.hints().iter().map(|h| h.to_string()).collect();
    assert_eq!(
        hints,
        [
            r#"model `blocks.*.layer_norm.*` ↔ checkpoint `blocks.*.LayerNorm.*`: 12 tensors agree in name and shape; remap `^blocks\.(\d+)\.LayerNorm\.` → `blocks.${1}.layer_norm.`, or `#[pretrain(rename = "LayerNorm")]` on the field `layer_norm`"#
        ]
    );
    let (_, report) = model()
        .load_pretrained(with_hinted_remaps(path, report.hints()))
        .unwrap();
    assert!(report.is_complete(), "{report}");
}

#[derive(Module, Debug, Pretrainable)]
struct OneLayer {
    rnn: burn::nn::Lstm,
    proj: Linear,
}

#[test]
fn a_single_lstm_for_a_three_layer_checkpoint_names_the_counts() {
    let device = Device::flex();
    let model = OneLayer {
        rnn: burn::nn::LstmConfig::new(4, 6, true).init(&device),
        proj: LinearConfig::new(6, 3).init(&device),
    };
    let err = model
        .load_pretrained(fixture("porting/lstm3.pth").to_str().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "checkpoint has 3 layers of `rnn` (`_l0`…`_l2`), the model 1 (`_l0`): build 3"
        ),
        "{err}"
    );
}
