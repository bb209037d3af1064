//! timm's Vision Transformer and ConvNeXt through the registries: narrow models written by
//! timm (`fixtures/timm/generate.py`) load every tensor and reproduce timm's logits and
//! features, a ViT checkpoint made for 224 loads into a 384 model with its position
//! embedding resampled as timm's loader does, and the backbones fit the seed's classifier.

use burn::prelude::*;
use burn_pretrain::{Checkpoint, LoadReport, PretrainExt};
use burn_pretrain_models::{
    BACKBONES, Backbone, ConfigFormat, MODELS, Stage, VisionTransformer, VisionTransformerConfig,
    parse_config,
};
use burn_pretrain_tests::{fixture, relative_error, saved_tensor};
use serde_json::{Value, json};

fn path(relative: &str) -> String {
    fixture(relative).display().to_string()
}

/// The narrow ViT of the fixtures (timm's `vit_tiny_patch16_224` at depth 2, width 48).
fn vit_config(num_classes: usize) -> Value {
    json!({
        "type": "VisionTransformer", "variant": "vit_tiny_patch16_224",
        "embed_dim": 48, "depth": 2, "num_heads": 3, "num_classes": num_classes,
    })
}

fn build_backbone(config: &Value) -> (Backbone, LoadReport) {
    let built = BACKBONES.build(config, &Device::flex()).unwrap();
    let [load] = built.report.loads() else {
        panic!("one load expected: {}", built.report)
    };
    let report = load.report.clone();
    (built.model, report)
}

fn output(model: &Backbone, io: &str, key: &str) -> f32 {
    let device = Device::flex();
    let x = saved_tensor::<4>(io, "input", &device);
    let want = saved_tensor::<2>(io, key, &device);
    match Stage::forward(model, burn_pretrain_models::Features::D4(x)) {
        burn_pretrain_models::Features::D2(got) => relative_error(got, want),
        other => panic!("rank {}", other.rank()),
    }
}

fn stored_keys(file: &str) -> usize {
    Checkpoint::open(fixture(file)).unwrap().entries().len()
}

#[test]
fn narrow_vit_loads_every_tensor_and_matches_timm() {
    for file in ["timm/vit_narrow.pth", "timm/vit_narrow.safetensors"] {
        let mut config = vit_config(10);
        config["pretrain"] = json!(path(file));
        let (model, report) = build_backbone(&config);
        assert_eq!(report.loaded().len(), stored_keys(file), "{report}");
        assert_eq!(report.loaded().len(), model.pretrain_keys().len());
        assert!(report.unexpected().is_empty() && report.adapted().is_empty());
        // timm's packed `qkv` fills burn's query, key and value projections.
        let split: Vec<&str> = report.split().iter().map(|s| s.key.as_str()).collect();
        assert_eq!(
            split,
            [
                "blocks.0.attn.qkv.weight",
                "blocks.0.attn.qkv.bias",
                "blocks.1.attn.qkv.weight",
                "blocks.1.attn.qkv.bias"
            ]
        );
        // One line per kind of packed tensor, however many blocks.
        let text = report.to_string();
        assert!(
            text.contains("    blocks.{0,1}.attn.qkv.weight [144, 48] → 3 parts (query.weight, key.weight, value.weight)\n"),
            "{text}"
        );
        let err = output(&model, "timm/vit_narrow_io.safetensors", "logits");
        assert!(err <= 1e-4, "{file}: logits relative error {err}");
    }
    // Without a head: timm's pre-logits features; the checkpoint's head is reported.
    let mut config = vit_config(0);
    config["pretrain"] = json!(path("timm/vit_narrow.pth"));
    let (model, report) = build_backbone(&config);
    assert_eq!(report.unexpected(), ["head.bias", "head.weight"]);
    let err = output(&model, "timm/vit_narrow_io.safetensors", "features");
    assert!(err <= 1e-4, "features relative error {err}");
}

#[test]
fn a_vit_checkpoint_for_224_loads_into_384_with_its_grid_resampled() {
    let mut config = config_with_plain_pretrain();
    let (model, report) = build_backbone(&config);
    assert_eq!(report.loaded().len(), stored_keys("timm/vit_narrow.pth"));
    let [adapted] = report.adapted() else {
        panic!("{report}")
    };
    assert_eq!(adapted.key, "pos_embed");
    assert_eq!(
        (
            adapted.checkpoint_shape.clone(),
            adapted.model_shape.clone()
        ),
        (vec![1, 197, 48], vec![1, 577, 48])
    );
    assert_eq!(
        adapted.how,
        "resampled grid 14×14 → 24×24 (bicubic, 1 prefix tokens kept)"
    );
    let text = report.to_string();
    assert!(
        text.contains("pos_embed: resampled grid 14×14 → 24×24 (bicubic, 1 prefix tokens kept) (the model's default)"),
        "{text}"
    );
    let err = output(&model, "timm/vit_narrow_384_io.safetensors", "logits");
    assert!(err <= 1e-4, "logits at 384 relative error {err}");

    // A rule of the load overrides the model's default.
    config["pretrain"] = json!({
        "path": path("timm/vit_narrow.pth"),
        "on_mismatch": [{"keys": "^pos_embed$", "policy": "keep"}],
    });
    let (_, report) = build_backbone(&config);
    assert!(report.adapted().is_empty());
    assert_eq!(report.mismatched()[0].key, "pos_embed");
    assert_eq!(
        report.mismatched()[0].rule,
        Some(burn_pretrain::policy::PolicySource::Rule {
            pattern: "^pos_embed$".into()
        })
    );

    // A dry run plans the same adaptation without reading a tensor.
    let planned = BACKBONES
        .plan(&config_with_plain_pretrain(), &Device::flex())
        .unwrap();
    let report = &planned.report.loads()[0].report;
    assert_eq!(report.adapted().len(), 1);
    assert_eq!(report.bytes_read(), 0);
}

fn config_with_plain_pretrain() -> Value {
    let mut config = vit_config(10);
    config["img_size"] = json!(384);
    config["pretrain"] = json!(path("timm/vit_narrow.pth"));
    config
}

#[test]
fn vit_with_register_tokens_and_average_pooling_matches_timm() {
    let config = json!({
        "type": "VisionTransformer", "variant": "vit_base_patch16_reg4_gap_256",
        "embed_dim": 48, "depth": 1, "num_heads": 3, "img_size": 64, "num_classes": 10,
        "pretrain": path("timm/vit_reg_narrow.pth"),
    });
    let (model, report) = build_backbone(&config);
    assert_eq!(
        report.loaded().len(),
        stored_keys("timm/vit_reg_narrow.pth")
    );
    assert!(report.loaded().iter().any(|k| k == "reg_token"));
    assert!(report.loaded().iter().any(|k| k == "fc_norm.weight"));
    assert!(!report.loaded().iter().any(|k| k == "cls_token"));
    let err = output(&model, "timm/vit_reg_narrow_io.safetensors", "logits");
    assert!(err <= 1e-4, "logits relative error {err}");
}

#[test]
fn narrow_convnexts_load_every_tensor_and_match_timm() {
    for (variant, file, depths) in [
        ("convnext_atto", "convnext_atto_narrow", [1, 1, 1, 1]),
        ("convnext_tiny", "convnext_tiny_narrow", [1, 1, 2, 1]),
    ] {
        let pth = format!("timm/{file}.pth");
        let io = format!("timm/{file}_io.safetensors");
        let config = json!({
            "type": "ConvNeXt", "variant": variant, "num_classes": 10,
            "depths": depths, "dims": [8, 16, 24, 32], "pretrain": path(&pth),
        });
        let (model, report) = build_backbone(&config);
        assert_eq!(
            report.loaded().len(),
            stored_keys(&pth),
            "{variant}: {report}"
        );
        assert!(report.unexpected().is_empty() && report.missing().is_empty());
        // The layer scale is timm's `gamma`, loaded as itself.
        assert!(
            report
                .loaded()
                .iter()
                .any(|k| k == "stages.2.blocks.0.gamma")
        );
        let err = output(&model, &io, "logits");
        assert!(err <= 1e-4, "{variant}: logits relative error {err}");

        let mut config = config;
        config["num_classes"] = json!(0);
        let (model, report) = build_backbone(&config);
        assert_eq!(report.unexpected(), ["head.fc.bias", "head.fc.weight"]);
        let err = output(&model, &io, "features");
        assert!(err <= 1e-4, "{variant}: features relative error {err}");
    }
    // The Linear MLP of convnext_tiny does not take the 1×1 convolutions of convnext_atto.
    let config = json!({
        "type": "ConvNeXt", "variant": "convnext_tiny", "depths": [1, 1, 1, 1],
        "dims": [8, 16, 24, 32], "pretrain": path("timm/convnext_atto_narrow.pth"),
    });
    let err = BACKBONES.build(&config, &Device::flex()).unwrap_err();
    let chain = burn_pretrain::error::chain(&err);
    assert!(chain.contains("half"), "{chain}");
}

/// The seed's classifier around a timm backbone: the backbone level loads the timm file, the
/// 200-class head is new; exported, its backbone loads back through `sub_level`.
#[test]
fn classifier_with_a_vit_backbone_and_a_200_class_head() {
    let mut backbone = vit_config(0);
    backbone["pretrain"] = json!(path("timm/vit_narrow.pth"));
    let config = json!({
        "type": "Classifier",
        "backbone": backbone,
        "head": {"type": "ClassifierHead", "dim": 48, "num_classes": 200},
    });
    let device = Device::flex();
    let built = MODELS.build(&config, &device).unwrap();
    let [load] = built.report.loads() else {
        panic!("{}", built.report)
    };
    assert_eq!(load.scope, "backbone");
    assert_eq!(load.report.unexpected(), ["head.bias", "head.weight"]);
    let x = saved_tensor::<4>("timm/vit_narrow_io.safetensors", "input", &device);
    let probabilities = built.model.forward(x);
    assert_eq!(probabilities.dims(), [1, 200]);
    let err = output(
        &built.model.backbone,
        "timm/vit_narrow_io.safetensors",
        "features",
    );
    assert!(err <= 1e-4, "features relative error {err}");

    // Export the classifier (the packed `qkv` stacked back) and take its backbone alone.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("classifier.safetensors");
    built.model.save_pretrained(&file).unwrap();
    let saved = Checkpoint::open(&file).unwrap();
    assert_eq!(
        saved
            .get("backbone.blocks.0.attn.qkv.weight")
            .unwrap()
            .shape(),
        [144, 48]
    );
    let mut config = vit_config(0);
    config["pretrain"] = json!({"path": file.display().to_string(), "sub_level": "backbone"});
    let (model, report) = build_backbone(&config);
    assert_eq!(report.loaded().len(), model.pretrain_keys().len());
    let err = output(&model, "timm/vit_narrow_io.safetensors", "features");
    assert!(err <= 1e-4, "re-loaded features relative error {err}");
}

#[test]
fn timm_backbones_build_from_yaml_and_toml() {
    let yaml = format!(
        "type: ConvNeXt\nvariant: convnext_atto\nnum_classes: 10\ndepths: [1, 1, 1, 1]\ndims: [8, 16, 24, 32]\npretrain: {}\n",
        path("timm/convnext_atto_narrow.pth")
    );
    let toml = format!(
        "type = \"VisionTransformer\"\nvariant = \"vit_tiny_patch16_224\"\nembed_dim = 48\ndepth = 2\nnum_heads = 3\nnum_classes = 10\n[pretrain]\npath = \"{}\"\n",
        path("timm/vit_narrow.pth")
    );
    for (text, format, io) in [
        (
            yaml,
            ConfigFormat::Yaml,
            "timm/convnext_atto_narrow_io.safetensors",
        ),
        (toml, ConfigFormat::Toml, "timm/vit_narrow_io.safetensors"),
    ] {
        let config = parse_config(&text, format, "<test>").unwrap();
        let (model, _) = build_backbone(&config);
        let err = output(&model, io, "logits");
        assert!(err <= 1e-4, "{format:?}: relative error {err}");
    }
}

#[test]
fn timm_config_errors_name_the_field() {
    let device = Device::flex();
    for (config, says) in [
        (
            json!({"type": "VisionTransformer", "variant": "vit_small_patch16_224", "img_size": 100}),
            "img_size: 100 is not a multiple of the patch size 16",
        ),
        (
            json!({"type": "VisionTransformer", "variant": "vit_small_patch16_clip_224"}),
            "variant: `vit_small_patch16_clip_224`: `clip` is not a part",
        ),
        (
            json!({"type": "VisionTransformer", "variant": "vit_small_patch16_224", "global_pool": "max"}),
            "global_pool: unknown variant `max`, expected `token` or `avg`",
        ),
        (
            json!({"type": "ConvNeXt", "variant": "convnext_giant"}),
            "variant: `convnext_giant` is not a ConvNeXt this crate builds; known: convnext_atto",
        ),
        (
            json!({"type": "ConvNeXt", "variant": "convnext_tiny", "depth": 3}),
            "depth: unknown field `depth`, expected one of `variant`",
        ),
    ] {
        let err = BACKBONES.build(&config, &device).unwrap_err();
        let chain = burn_pretrain::error::chain(&err);
        assert!(chain.starts_with(says), "{chain}");
    }
}

/// The model checks its input: a ViT is made for one image size.
#[test]
#[should_panic(expected = "built for 384×384 images (its position embedding's grid), got 224×224")]
fn a_vit_refuses_images_of_another_size() {
    let device = Device::flex();
    let vit: VisionTransformer = VisionTransformerConfig::variant("vit_tiny_patch16_384")
        .resolve()
        .map(|mut s| {
            s.embed_dim = 48;
            s.num_heads = 3;
            s.depth = 1;
            s.mlp_hidden = 192;
            s.init(&device)
        })
        .unwrap();
    let _ = vit.forward(Tensor::zeros([1, 3, 224, 224], &device));
}

/// `transposed_views` in a config: the ViT's Linear weights (those not split from `qkv`) are
/// read as stored and held as transposed views; every tensor and the logits are the same.
#[test]
fn transposed_views_load_the_same_vit() {
    for file in ["timm/vit_narrow.pth", "timm/vit_narrow.safetensors"] {
        let mut config = vit_config(10);
        config["pretrain"] = json!(path(file));
        let (plain, plain_report) = build_backbone(&config);
        config["pretrain"] = json!({"path": path(file), "transposed_views": true});
        let (viewed, report) = build_backbone(&config);
        assert_eq!(report.loaded(), plain_report.loaded(), "{file}");
        burn_pretrain_tests::assert_same_tensors(&viewed, &plain);
        let err = output(&viewed, "timm/vit_narrow_io.safetensors", "logits");
        assert!(err <= 1e-4, "{file}: logits relative error {err}");
    }
}

/// `mmap` in a config: the tensors loaded as stored (with `transposed_views`, the Linear
/// weights too) are ranges of the file's one copy-on-write mapping — no read, no copy. Every
/// tensor and the logits are those of a plain load, the report counts the bytes mapped, the
/// mapping lives exactly as long as the model (seen in `/proc/self/maps`), and the file is
/// never written.
#[test]
fn mmap_loads_the_same_vit_from_the_files_pages() {
    // How many of this process's mappings are of `file`.
    fn mappings_of(file: &str) -> usize {
        std::fs::read_to_string("/proc/self/maps").map_or(0, |maps| {
            maps.lines().filter(|line| line.ends_with(file)).count()
        })
    }
    for file in ["timm/vit_narrow.pth", "timm/vit_narrow.safetensors"] {
        let before = std::fs::read(fixture(file)).unwrap();
        let mut config = vit_config(10);
        config["pretrain"] = json!(path(file));
        let (plain, plain_report) = build_backbone(&config);
        assert_eq!(plain_report.bytes_mapped(), 0);
        let mut mapped_bytes = Vec::new();
        for options in [
            json!({"mmap": true}),
            json!({"mmap": true, "transposed_views": true}),
        ] {
            let mut pretrain = options.clone();
            pretrain["path"] = json!(path(file));
            config["pretrain"] = pretrain;
            let (mapped, report) = build_backbone(&config);
            assert_eq!(report.loaded(), plain_report.loaded(), "{file} {options}");
            burn_pretrain_tests::assert_same_tensors(&mapped, &plain);
            let err = output(&mapped, "timm/vit_narrow_io.safetensors", "logits");
            assert!(err <= 1e-4, "{file} {options}: logits relative error {err}");
            // Tensors split from `qkv` (and, without views, the transposed Linears) are read.
            let bytes = report.bytes_mapped();
            assert!(
                bytes > 0 && bytes < report.bytes_read(),
                "{file} {options}: {bytes}"
            );
            assert!(
                report
                    .to_string()
                    .contains(&format!("{bytes} bytes mapped"))
            );
            mapped_bytes.push(bytes);
            if cfg!(target_os = "linux") {
                assert_eq!(mappings_of(&path(file)), 1, "{file} {options}: mapped once");
            }
            // Training writes into the mapped tensors (in place where burn can): the process's
            // own copies of those pages, never the file.
            let doubled = mapped.map(&mut Double);
            burn_pretrain_tests::assert_same_tensors(&doubled, &plain.clone().map(&mut Double));
            drop(doubled);
            if cfg!(target_os = "linux") {
                assert_eq!(
                    mappings_of(&path(file)),
                    0,
                    "{file} {options}: gone with the model"
                );
            }
        }
        assert!(
            mapped_bytes[1] > mapped_bytes[0],
            "views map the Linears too: {mapped_bytes:?}"
        );
        assert!(
            std::fs::read(fixture(file)).unwrap() == before,
            "{file} was written"
        );
    }
}

/// Every float parameter doubled (by burn, in place where the tensor is not shared).
struct Double;

impl burn::module::ModuleMapper for Double {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<D>>,
    ) -> burn::module::Param<Tensor<D>> {
        param.map(|tensor| tensor.mul_scalar(2.0))
    }
}
