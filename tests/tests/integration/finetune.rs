//! Fine-tuning from what was loaded: `freeze: loaded` keeps every loaded tensor bit-identical
//! through a real training run on `Autodiff<flex>` while the loss falls; PEFT LoRA adapters
//! written by peft (`fixtures/peft/generate.py`) reproduce PEFT's outputs attached and merged,
//! on timm's ViT (a LoRA on the packed `qkv` split across burn's query/key/value, rank and
//! alpha patterns, `modules_to_save`) and transformers' BERT (rsLoRA); trained, only the
//! adapter (and what `modules_to_save` names) changes.

use std::collections::HashSet;

use burn::module::ParamId;
use burn::prelude::*;
use burn_pretrain::{Error, LoadReport, Pretrain, PretrainExt};
use burn_pretrain_examples::finetune::{changed, lora_factors, snapshot, synthetic, train};
use burn_pretrain_models::bert::{BertConfig, BertModel};
use burn_pretrain_models::{BACKBONES, Backbone, DefaultClassifier, Features, MODELS, Stage};
use burn_pretrain_tests::{fixture, relative_error, saved_tensor};
use serde_json::{Value, json};

const EXPECTED: &str = "peft/expected.safetensors";

fn path(relative: &str) -> String {
    fixture(relative).display().to_string()
}

/// The narrow timm ViT of `timm/vit_narrow.pth` with `pretrain`.
fn vit(pretrain: Value, device: &Device) -> (Backbone, LoadReport) {
    let config = json!({
        "type": "VisionTransformer", "variant": "vit_tiny_patch16_224",
        "embed_dim": 48, "depth": 2, "num_heads": 3, "num_classes": 10, "pretrain": pretrain,
    });
    let built = BACKBONES.build(&config, device).unwrap();
    let [load] = built.report.loads() else {
        panic!("one load expected: {}", built.report)
    };
    let report = load.report.clone();
    (built.model, report)
}

fn logits(model: &Backbone, images: Tensor<4>) -> Tensor<2> {
    match Stage::forward(model, Features::D4(images)) {
        Features::D2(logits) => logits,
        other => panic!("rank {}", other.rank()),
    }
}

fn vit_error(model: &Backbone, key: &str) -> f32 {
    let device = Device::flex();
    let x = saved_tensor::<4>("timm/vit_narrow_io.safetensors", "input", &device);
    relative_error(logits(model, x), saved_tensor::<2>(EXPECTED, key, &device))
}

#[test]
fn a_vit_lora_adapter_reproduces_peft_attached_and_merged() {
    let device = Device::flex();
    let adapter = path("peft/vit_lora");
    let (model, report) = vit(
        json!({"path": path("timm/vit_narrow.pth"), "adapter": adapter}),
        &device,
    );
    let applied = report.adapter().expect("an adapter report");
    assert!(!applied.merged);
    let layers: Vec<(&str, usize, f64, usize)> = applied
        .layers
        .iter()
        .map(|l| (l.key.as_str(), l.rank, l.scale, l.parts.len()))
        .collect();
    // r 4, alpha 8 (scale 2); rank_pattern gives blocks.1's qkv rank 2 (scale 4);
    // alpha_pattern gives fc2 alpha 3 (scale 0.75). The packed qkv feeds three parameters.
    assert_eq!(
        layers,
        [
            ("blocks.0.attn.qkv.weight", 4, 2.0, 3),
            ("blocks.0.mlp.fc1.weight", 4, 2.0, 1),
            ("blocks.0.mlp.fc2.weight", 4, 0.75, 1),
            ("blocks.1.attn.qkv.weight", 2, 4.0, 3),
            ("blocks.1.mlp.fc1.weight", 4, 2.0, 1),
            ("blocks.1.mlp.fc2.weight", 4, 0.75, 1),
        ]
    );
    assert_eq!(applied.replaced, ["head.weight", "head.bias"]);
    // Two adapters on each plain Linear, one per query/key/value of a packed qkv.
    assert_eq!(lora_factors(&model).len(), 2 * (2 * 3 + 2 * 2));
    let text = report.to_string();
    assert!(
        text.contains("LoRA adapter") && text.contains("attached to 6 layers"),
        "{text}"
    );
    let err = vit_error(&model, "vit/logits");
    assert!(
        err <= 1e-5,
        "logits with the adapter attached: relative error {err:e}"
    );

    let (merged, report) = vit(
        json!({"path": path("timm/vit_narrow.pth"), "adapter": adapter, "merge_adapter": true}),
        &device,
    );
    assert!(report.adapter().unwrap().merged);
    assert!(lora_factors(&merged).is_empty());
    let err = vit_error(&merged, "vit/merged_logits");
    assert!(
        err <= 1e-5,
        "logits with the adapter merged: relative error {err:e}"
    );
}

fn bert_model(device: &Device) -> BertModel {
    let text = std::fs::read_to_string(fixture("sentence/bert/config.json")).unwrap();
    let config: BertConfig = serde_json::from_str(&text).unwrap();
    config.init(device)
}

fn saved_ints(key: &str, device: &Device) -> Tensor<2, Int> {
    let ckpt = burn_pretrain::Checkpoint::open(fixture(EXPECTED)).unwrap();
    let entry = ckpt.get(key).unwrap();
    let values: Vec<i64> = entry
        .read()
        .unwrap()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let [rows, cols] = entry.shape() else {
        panic!("{key} is not 2-D")
    };
    Tensor::from_data(TensorData::new(values, [*rows, *cols]), device)
}

#[test]
fn a_bert_rslora_adapter_reproduces_peft_attached_and_merged() {
    let device = Device::flex();
    let ids = saved_ints("bert/input_ids", &device);
    let mask = saved_ints("bert/attention_mask", &device);
    for (merge, key) in [
        (false, "bert/last_hidden_state"),
        (true, "bert/merged_last_hidden_state"),
    ] {
        let spec = Pretrain::from(fixture("sentence/bert/model.safetensors"))
            .with_adapter(path("peft/bert_lora"))
            .with_merge_adapter(merge);
        let (model, report) = bert_model(&device).load_pretrained(spec).unwrap();
        let applied = report.adapter().unwrap();
        // use_rslora: scale = alpha / √r = 6 / 2.
        assert_eq!(applied.layers.len(), 4, "{report}");
        assert!(applied.layers.iter().all(|l| l.rank == 4 && l.scale == 3.0));
        assert_eq!(
            applied.layers[0].key,
            "encoder.layer.0.attention.self.query.weight"
        );
        let hidden = model.forward(ids.clone(), Some(mask.clone()), None);
        let err = relative_error(hidden, saved_tensor::<3>(EXPECTED, key, &device));
        assert!(
            err <= 1e-5,
            "{key} (merged: {merge}): relative error {err:e}"
        );
    }
}

/// A copy of `peft/bert_lora` with its `adapter_config.json` changed by `edit`.
fn edited_bert_lora(edit: impl Fn(&mut Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let source = fixture("peft/bert_lora");
    std::fs::copy(
        source.join("adapter_model.safetensors"),
        dir.path().join("adapter_model.safetensors"),
    )
    .unwrap();
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(source.join("adapter_config.json")).unwrap())
            .unwrap();
    edit(&mut config);
    std::fs::write(dir.path().join("adapter_config.json"), config.to_string()).unwrap();
    dir
}

#[test]
fn adapters_that_do_not_fit_are_errors_naming_the_key_and_change_nothing() {
    let device = Device::flex();
    let mut model = bert_model(&device)
        .with_pretrain(fixture("sentence/bert/model.safetensors"))
        .unwrap();
    let before = snapshot(&model);
    // A ViT's adapter on BERT: its first LoRA adapts a weight BERT does not have.
    let spec = Pretrain::from(fixture("sentence/bert/model.safetensors"))
        .with_adapter(path("peft/vit_lora"));
    let err = model.load_pretrained_in_place(spec).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Adapter { .. }), "{text}");
    assert!(
        text.contains("modules_to_save") && text.contains("head."),
        "the ViT adapter's new head is not BERT's: {text}"
    );
    // A config that does not list a module the file adapts.
    let dir = edited_bert_lora(|config| config["target_modules"] = json!(["value"]));
    let spec = Pretrain::from(fixture("sentence/bert/model.safetensors"))
        .with_adapter(dir.path().display().to_string());
    let text = model
        .load_pretrained_in_place(spec)
        .unwrap_err()
        .to_string();
    assert!(
        text.contains(
            "`encoder.layer.0.attention.self.query` is not among the config's target_modules"
        ),
        "{text}"
    );
    // A config whose rank disagrees with the stored factors.
    let dir = edited_bert_lora(|config| {
        config["rank_pattern"] = json!({"layer.1.attention.self.value": 8})
    });
    let spec = Pretrain::from(fixture("sentence/bert/model.safetensors"))
        .with_adapter(dir.path().display().to_string());
    let text = model
        .load_pretrained_in_place(spec)
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("`encoder.layer.1.attention.self.value`") && text.contains("rank 8"),
        "{text}"
    );
    // A directory without an adapter.
    let spec = Pretrain::from(fixture("sentence/bert/model.safetensors"))
        .with_adapter(fixture("sentence/bert").display().to_string());
    let text = model
        .load_pretrained_in_place(spec)
        .unwrap_err()
        .to_string();
    assert!(text.contains("adapter_config.json"), "{text}");
    let (moved, _) = changed(&before, &snapshot(&model));
    assert!(moved.is_empty(), "{} tensors changed", moved.len());

    // BERT's adapter on a ViT: its LoRAs adapt weights the ViT does not have.
    let config = json!({
        "type": "VisionTransformer", "variant": "vit_tiny_patch16_224",
        "embed_dim": 48, "depth": 2, "num_heads": 3, "num_classes": 10,
        "pretrain": {"path": path("timm/vit_narrow.pth"), "adapter": path("peft/bert_lora")},
    });
    let Err(err) = BACKBONES.build(&config, &device) else {
        panic!("BERT's adapter applied to a ViT")
    };
    let text = burn_pretrain::error::chain(&err);
    assert!(
        text.contains(
            "adapts `encoder.layer.0.attention.self.query.weight`, which the model does not have"
        ),
        "{text}"
    );
}

/// The seed's classifier: a narrow torchvision ResNet-18 backbone loaded from its checkpoint
/// (`freeze` as given), global average pooling and a new 4-class head, on `device`.
fn classifier(freeze: Value, device: &Device) -> (DefaultClassifier, LoadReport) {
    let config = json!({
        "type": "Classifier",
        "backbone": {"type": "ResNet", "depth": 18, "base_channels": 8,
                     "pretrain": {"path": path("resnet/resnet18_narrow.pth"), "freeze": freeze}},
        "neck": {"type": "GlobalAveragePooling"},
        "head": {"type": "ClassifierHead", "dim": 64, "num_classes": 4},
    });
    let built = MODELS.build(&config, device).unwrap();
    let [load] = built.report.loads() else {
        panic!("one load expected: {}", built.report)
    };
    let report = load.report.clone();
    (built.model, report)
}

#[test]
fn freeze_loaded_keeps_every_loaded_tensor_through_training_while_the_loss_falls() {
    let device = Device::flex().autodiff();
    let data = synthetic(16, 4, 32, &device);
    let (model, report) = classifier(json!("loaded"), &device);
    assert!(!report.loaded().is_empty());
    assert_eq!(report.frozen(), report.loaded(), "{report}");
    let text = report.to_string();
    assert!(
        text.contains(&format!("frozen {} tensors (", report.loaded().len())),
        "{text}"
    );
    let loaded: HashSet<ParamId> = report.loaded_ids().iter().copied().collect();
    let before = snapshot(&model);
    let (trained, losses) = train(model, |m, x| m.forward(x), &data, 16, 1e-3);
    assert!(
        losses[losses.len() - 1] < 0.8 * losses[0],
        "the loss did not fall: {losses:?}"
    );
    let (moved, same) = changed(&before, &snapshot(&trained));
    // Every loaded tensor (BatchNorm's running statistics included) is bit-identical; what
    // changed is exactly the new head.
    assert!(loaded.iter().all(|id| same.contains(id)));
    assert_eq!(moved.len(), 2, "the head's weight and bias");
    assert!(moved.iter().all(|id| !loaded.contains(id)));

    // The control: without `freeze` the same run changes the loaded tensors.
    let (model, report) = classifier(json!("none"), &device);
    assert!(report.frozen().is_empty());
    let loaded: HashSet<ParamId> = report.loaded_ids().iter().copied().collect();
    let before = snapshot(&model);
    let (trained, _) = train(model, |m, x| m.forward(x), &data, 2, 1e-2);
    let (moved, _) = changed(&before, &snapshot(&trained));
    assert!(moved.iter().filter(|id| loaded.contains(id)).count() > 40);
}

#[test]
fn freeze_by_key_pattern_and_the_groups_of_a_report() {
    let device = Device::flex().autodiff();
    let (_, report) = classifier(json!(["^layer4\\."]), &device);
    assert!(!report.frozen().is_empty());
    assert!(
        report.frozen().iter().all(|k| k.starts_with("layer4.")),
        "{report}"
    );
    // The report's groups are burn `ParamGroup`s of exactly its ids.
    let group = report.loaded_group();
    assert!(report.loaded_ids().iter().all(|id| group.matches(id, None)));
    assert!(!report.kept_group().matches(&report.loaded_ids()[0], None));
}

#[test]
fn training_a_vit_with_a_lora_adapter_changes_only_the_adapter_and_its_saved_modules() {
    let device = Device::flex().autodiff();
    let data = synthetic(10, 10, 224, &device);
    let (model, report) = vit(
        json!({"path": path("timm/vit_narrow.pth"), "adapter": path("peft/vit_lora")}),
        &device,
    );
    let factors: HashSet<ParamId> = lora_factors(&model).into_iter().collect();
    let before = snapshot(&model);
    let (trained, losses) = train(model, logits, &data, 4, 1e-2);
    assert!(losses[3] < losses[0], "the loss did not fall: {losses:?}");
    let (moved, _) = changed(&before, &snapshot(&trained));
    let changed: HashSet<ParamId> = moved.into_iter().collect();
    // Every factor trains; besides them only `modules_to_save`'s head (weight and bias).
    assert!(factors.iter().all(|id| changed.contains(id)));
    assert_eq!(changed.len(), factors.len() + 2, "{report}");

    // Trained, query, key and value no longer share `A`: the export writes each qkv as one
    // LoRA of rank 3r (block-diagonal `B`), which loads back to the same outputs.
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(trained.save_adapter(dir.path(), &["head"]).unwrap(), 6);
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        config["rank_pattern"]["blocks\\.0\\.attn\\.qkv"], 12,
        "{config}"
    );
    let device = Device::flex();
    let x = saved_tensor::<4>("timm/vit_narrow_io.safetensors", "input", &device);
    let ours = logits(&trained.valid(), x.clone());
    let (reloaded, _) = vit(
        json!({"path": path("timm/vit_narrow.pth"), "adapter": dir.path().display().to_string()}),
        &device,
    );
    let err = relative_error(logits(&reloaded, x), ours);
    assert!(
        err <= 1e-5,
        "the exported adapter reloaded: relative error {err:e}"
    );
}

#[test]
fn an_adapter_exports_back_to_peft_names_and_values() {
    let device = Device::flex();
    let (model, _) = vit(
        json!({"path": path("timm/vit_narrow.pth"), "adapter": path("peft/vit_lora")}),
        &device,
    );
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(model.save_adapter(dir.path(), &["head"]).unwrap(), 6);
    let ours =
        burn_pretrain::Checkpoint::open(dir.path().join("adapter_model.safetensors")).unwrap();
    let peft = burn_pretrain::Checkpoint::open(fixture("peft/vit_lora/adapter_model.safetensors"))
        .unwrap();
    let keys = |c: &burn_pretrain::Checkpoint| {
        let mut keys: Vec<String> = c.entries().iter().map(|e| e.key().to_string()).collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(&ours), keys(&peft));
    for entry in peft.entries() {
        let theirs = entry.read().unwrap();
        let mine = ours.get(entry.key()).unwrap();
        assert_eq!(mine.shape(), entry.shape(), "{}", entry.key());
        let close = theirs
            .chunks_exact(4)
            .zip(mine.read().unwrap().chunks_exact(4))
            .all(|(a, b)| {
                let a = f32::from_le_bytes(a.try_into().unwrap());
                let b = f32::from_le_bytes(b.try_into().unwrap());
                (a - b).abs() <= 1e-6 * a.abs().max(1.0)
            });
        assert!(close, "{} differs", entry.key());
    }
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (config["r"].clone(), config["lora_alpha"].clone()),
        (json!(4), json!(8.0))
    );
    assert_eq!(
        config["rank_pattern"],
        json!({"blocks\\.1\\.attn\\.qkv": 2})
    );
    assert_eq!(
        config["alpha_pattern"],
        json!({"blocks\\.0\\.mlp\\.fc2": 3.0, "blocks\\.1\\.mlp\\.fc2": 3.0})
    );
    assert_eq!(config["modules_to_save"], json!(["head"]));
}

/// transformers' `Conv1D` (GPT-2's layer): `x · W + b` with `W` stored `[in, out]`.
#[derive(burn::module::Module, Debug, burn_pretrain::Pretrainable)]
struct Conv1D {
    weight: burn::module::Param<Tensor<2>>,
    bias: burn::module::Param<Tensor<1>>,
}

impl Conv1D {
    fn new(d_in: usize, d_out: usize, device: &Device) -> Self {
        Self {
            weight: burn::module::Param::from_tensor(Tensor::zeros([d_in, d_out], device)),
            bias: burn::module::Param::from_tensor(Tensor::zeros([d_out], device)),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        x.matmul(self.weight.val()) + self.bias.val().unsqueeze()
    }
}

#[derive(burn::module::Module, Debug, burn_pretrain::Pretrainable)]
struct Tiny {
    c_attn: Conv1D,
    c_proj: Conv1D,
}

#[test]
fn a_fan_in_fan_out_lora_on_gpt2_style_conv1d_layers_reproduces_peft() {
    let device = Device::flex();
    let tiny = Tiny {
        c_attn: Conv1D::new(8, 12, &device),
        c_proj: Conv1D::new(12, 8, &device),
    };
    let spec =
        Pretrain::from(fixture("peft/conv1d.safetensors")).with_adapter(path("peft/conv1d_lora"));
    let (tiny, report) = tiny.load_pretrained(spec).unwrap();
    assert_eq!(report.adapter().unwrap().layers.len(), 2, "{report}");
    let x = saved_tensor::<2>(EXPECTED, "conv1d/input", &device);
    let y = tiny.c_proj.forward(tiny.c_attn.forward(x).tanh());
    let err = relative_error(y, saved_tensor::<2>(EXPECTED, "conv1d/output", &device));
    assert!(err <= 1e-5, "fan_in_fan_out: relative error {err:e}");
}

#[test]
fn an_adapter_from_the_loopback_hub() {
    let server = burn_pretrain_tests::server::TestServer::start();
    let dir = fixture("peft/bert_lora");
    for file in ["adapter_config.json", "adapter_model.safetensors"] {
        server.route(
            &format!("/org/bert-lora/resolve/main/{file}"),
            burn_pretrain_tests::server::Behavior::Serve(std::fs::read(dir.join(file)).unwrap()),
        );
    }
    let cache = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let spec = Pretrain::from(fixture("sentence/bert/model.safetensors"))
        .with_adapter("hf://org/bert-lora")
        .with_endpoint(server.base())
        .with_cache_dir(cache.path().display().to_string());
    let (model, report) = bert_model(&device).load_pretrained(spec).unwrap();
    assert_eq!(report.adapter().unwrap().source, "hf://org/bert-lora");
    let ids = saved_ints("bert/input_ids", &device);
    let mask = saved_ints("bert/attention_mask", &device);
    let hidden = model.forward(ids, Some(mask), None);
    let err = relative_error(
        hidden,
        saved_tensor::<3>(EXPECTED, "bert/last_hidden_state", &device),
    );
    assert!(err <= 1e-5, "relative error {err:e}");
}
