//! Every format, recognised by content, loads the values PyTorch (or burn) saved.

use burn::prelude::*;
use burn_pretrain::format::{Convention, DType, Format};
use burn_pretrain::view::ViewStep;
use burn_pretrain::{Checkpoint, PretrainExt};
use burn_pretrain_tests::{Backbone, Classifier, StateDict, assert_values_eq, expected, fixture};

#[test]
fn torch_compile_prefix_is_stripped() {
    let device = Device::flex();
    let (model, report) = Backbone::new(&device)
        .load_pretrained(fixture("compiled/backbone_compiled.pth"))
        .unwrap();
    assert_eq!(
        report.view(),
        [ViewStep::Stripped {
            prefix: "_orig_mod.".into(),
            keys: 36
        }]
    );
    assert!(report.is_complete(), "{report}");
    assert_eq!(
        assert_values_eq(&model.to_state_dict(), &expected("compiled"), ""),
        30
    );
}

#[test]
fn legacy_pickle_format_loads() {
    let device = Device::flex();
    let (model, report) = Backbone::new(&device)
        .load_pretrained(fixture("legacy/backbone_legacy.pth"))
        .unwrap();
    assert_eq!(report.format(), Format::PytorchLegacy);
    assert!(report.is_complete(), "{report}");
    assert_eq!(
        assert_values_eq(&model.to_state_dict(), &expected("legacy"), ""),
        30
    );
}

#[test]
fn safetensors_loads_with_linear_transposed() {
    let device = Device::flex();
    let (model, report) = Classifier::new(5, &device)
        .load_pretrained(fixture("safetensors/classifier.safetensors"))
        .unwrap();
    assert_eq!(report.format(), Format::Safetensors);
    assert_eq!(report.convention(), Convention::Pytorch);
    assert!(report.is_complete(), "{report}");
    assert_eq!(
        assert_values_eq(&model.to_state_dict(), &expected("safetensors"), ""),
        32
    );
}

#[test]
fn half_precision_is_cast_and_reported() {
    let device = Device::flex();
    let (model, report) = Backbone::new(&device)
        .load_pretrained(fixture("half/backbone_f16.pth"))
        .unwrap();
    assert!(report.is_complete(), "{report}");
    assert_eq!(report.cast().len(), 30);
    let from = |key: &str| {
        report
            .cast()
            .iter()
            .find(|c| c.key == key)
            .map(|c| (c.from, c.to))
    };
    assert_eq!(from("conv1.weight"), Some((DType::F16, DType::F32)));
    assert_eq!(from("bn1.running_mean"), Some((DType::BF16, DType::F32)));
    assert_eq!(from("bn1.running_var"), Some((DType::F64, DType::F32)));
    assert_eq!(
        assert_values_eq(&model.to_state_dict(), &expected("half"), ""),
        30
    );
}

#[derive(burn::module::Module, Debug, burn_pretrain::Pretrainable)]
struct TwoLinears {
    a: burn::nn::Linear,
    b: burn::nn::Linear,
}

/// `transposed_views`: the half-precision Linears read as stored (cast on the way into the
/// f32 model) and held as transposed views — the same values as the transposed load, and the
/// same outputs. (A bf16 model would need the flex device configured, which is one device for
/// the whole test process: the benchmark's `ours-views-bf16` runs that, in a process of its own.)
#[test]
fn transposed_views_hold_the_values_of_a_transposed_load() {
    let device = Device::flex();
    for file in [
        "half_linears/linears.pth",
        "half_linears/linears.safetensors",
    ] {
        let model = || TwoLinears {
            a: burn::nn::LinearConfig::new(70, 130).init(&device),
            b: burn::nn::LinearConfig::new(130, 64).init(&device),
        };
        let (plain, _) = model().load_pretrained(fixture(file)).unwrap();
        let spec = burn_pretrain::Pretrain::from_path(fixture(file).display().to_string())
            .with_transposed_views(true);
        let (viewed, report) = model().load_pretrained(spec).unwrap();
        assert!(report.is_complete(), "{file}: {report}");
        burn_pretrain_tests::assert_same_tensors(&viewed, &plain);
        let x = Tensor::<2>::random(
            [3, 70],
            burn::tensor::Distribution::Uniform(-1.0, 1.0),
            &device,
        );
        let forward = |m: &TwoLinears| m.b.forward(m.a.forward(x.clone())).into_data();
        forward(&viewed).assert_approx_eq::<f32>(&forward(&plain), Default::default());
    }
}

#[test]
fn half_precision_linears_are_cast_and_transposed_in_one_pass() {
    // float16 and bfloat16 Linears (as most Hub checkpoints are) into an f32 model: each
    // weight cast and transposed block by block, with the zip's CRC-32 for the `.pth`.
    let device = Device::flex();
    let want = expected("half_linears");
    for file in [
        "half_linears/linears.pth",
        "half_linears/linears.safetensors",
    ] {
        let model = TwoLinears {
            a: burn::nn::LinearConfig::new(70, 130).init(&device),
            b: burn::nn::LinearConfig::new(130, 64).init(&device),
        };
        let (model, report) = model.load_pretrained(fixture(file)).unwrap();
        assert!(report.is_complete(), "{file}: {report}");
        let mut cast: Vec<_> = report
            .cast()
            .iter()
            .map(|c| (c.key.as_str(), c.from, c.to))
            .collect();
        cast.sort_unstable_by_key(|c| c.0);
        assert_eq!(
            cast,
            [
                ("a.bias", DType::F16, DType::F32),
                ("a.weight", DType::F16, DType::F32),
                ("b.bias", DType::BF16, DType::F32),
                ("b.weight", DType::BF16, DType::F32),
            ],
            "{file}"
        );
        for (key, linear) in [("a", &model.a), ("b", &model.b)] {
            // burn holds `[in, out]`; PyTorch's values are `[out, in]`, row-major.
            let (shape, values) = &want[&format!("{key}.weight")];
            let weight = linear.weight.val();
            assert_eq!(weight.dims(), [shape[1], shape[0]], "{file}: {key}");
            assert_eq!(weight.dtype(), burn::tensor::DType::F32, "{file}: {key}");
            let got = weight.transpose().into_data().try_to_vec::<f32>().unwrap();
            assert_eq!(&got, values, "{file}: {key}.weight");
            let bias = linear.bias.as_ref().unwrap().val().into_data();
            let want_bias = &want[&format!("{key}.bias")].1;
            assert_eq!(
                &bias.try_to_vec::<f32>().unwrap(),
                want_bias,
                "{file}: {key}.bias"
            );
        }
    }
}

#[test]
fn checkpoint_lists_tensors_without_reading_them() {
    let ckpt = Checkpoint::open(fixture("legacy/backbone_legacy.pth")).unwrap();
    assert_eq!(ckpt.format(), Format::PytorchLegacy);
    assert_eq!(ckpt.entries().len(), 36);
    let first: Vec<_> = ckpt.entries().iter().take(3).map(|e| e.key()).collect();
    assert_eq!(
        first,
        ["bn1.bias", "bn1.num_batches_tracked", "bn1.running_mean"]
    );
    let conv = ckpt.get("layer1.1.downsample.0.weight").unwrap();
    assert_eq!(conv.shape(), [8, 4, 1, 1]);
    assert_eq!(conv.dtype(), DType::F32);
    assert_eq!(
        ckpt.get("bn1.num_batches_tracked").unwrap().dtype(),
        DType::I64
    );
}

#[test]
fn burnpack_written_by_burn_loads_back() {
    use burn_store::{BurnpackStore, ModuleSnapshot};
    let device = Device::flex();
    let (source, _) = Backbone::new(&device)
        .load_pretrained(fixture("legacy/backbone_legacy.pth"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backbone.bpk");
    let mut store = BurnpackStore::from_file(&path);
    source.save_into(&mut store).unwrap();

    let (model, report) = Backbone::new(&device).load_pretrained(&path).unwrap();
    assert_eq!(report.format(), Format::Burnpack);
    assert_eq!(report.convention(), Convention::Burn);
    assert!(report.missing().is_empty(), "{report}");
    assert_eq!(report.loaded().len(), 30);
    assert_eq!(
        assert_values_eq(&model.to_state_dict(), &expected("legacy"), ""),
        30
    );
}

/// A burnpack that burn-store wrote with its defaults for a model holding burn enum modules
/// (the zoo's `Backbone::VisionTransformer`) names tensors with the enum's variant
/// (`VisionTransformer.blocks.0.…`): it loads back whole, every tensor equal.
#[test]
fn burnpack_of_a_model_with_enum_modules_loads_back() {
    use burn_pretrain_models::BACKBONES;
    use burn_store::{BurnpackStore, ModuleSnapshot};
    let device = Device::flex();
    let mut config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("timm/vit_narrow_384.json")).unwrap(),
    )
    .unwrap();
    config["pretrain"] = serde_json::json!(fixture("timm/vit_narrow.pth").to_str().unwrap());
    let source = BACKBONES.build(&config, &device).unwrap().model;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vit.bpk");
    source
        .save_into(&mut BurnpackStore::from_file(&path))
        .unwrap();
    let keys: Vec<String> = Checkpoint::open(&path)
        .unwrap()
        .entries()
        .iter()
        .map(|e| e.key().to_string())
        .collect();
    assert!(
        keys.iter().all(|k| k.starts_with("VisionTransformer.")),
        "{keys:?}"
    );
    config.as_object_mut().unwrap().remove("pretrain");
    let fresh = BACKBONES.build(&config, &device).unwrap().model;
    let (model, report) = fresh.load_pretrained(&path).unwrap();
    assert!(report.is_complete(), "{report}");
    assert_eq!(report.loaded().len(), keys.len(), "{report}");
    burn_pretrain_tests::assert_same_tensors(&model, &source);
}
