//! burn-nn's packed layers against PyTorch: recurrent gates, attention projections and
//! transformer layers loaded from checkpoints PyTorch wrote (tests/fixtures/packed/generate.py),
//! their outputs compared with PyTorch's, and the model exported back to PyTorch's state dict.

use burn::nn::attention::{MhaInput, MultiHeadAttention, MultiHeadAttentionConfig};
use burn::nn::conv::{DeformConv2d, DeformConv2dConfig};
use burn::nn::transformer::{TransformerDecoderInput, TransformerEncoderInput};
use burn::nn::{PaddingConfig2d, activation::ActivationConfig};
use burn::prelude::*;
use burn::tensor::TensorData;
use burn_pretrain::export::export_tensors;
use burn_pretrain::{Checkpoint, PretrainExt, Pretrainable};
use burn_pretrain_tests::packed::{Seq, Transformer};
use burn_pretrain_tests::{fixture, relative_error, saved_tensor};

const IO: &str = "packed/seq_io.safetensors";

#[test]
fn lstm_gru_rnn_attention_encoder_and_swiglu_load_from_one_pytorch_checkpoint() {
    let device = Device::flex();
    let (model, report) = Seq::new(16, &device)
        .load_pretrained(fixture("packed/seq.pth"))
        .unwrap();
    assert!(report.is_complete(), "{report}");
    assert!(report.missing().is_empty() && report.unexpected().is_empty());
    // 2 layers × 2 directions × 4 + 2 directions × 4 + 4 (cell) + 2 × 2 (GRU) ... every
    // PyTorch key is one loaded tensor.
    let stored = Checkpoint::open(fixture("packed/seq.pth")).unwrap();
    assert_eq!(report.loaded().len(), stored.entries().len());
    let text = report.to_string();
    assert!(
        text.contains("lstm.{weight_ih_l0,weight_ih_l0_reverse} [64, 8] → 4 parts (input_gate.input_transform.weight, forget_gate.input_transform.weight, cell_gate.input_transform.weight, output_gate.input_transform.weight)"),
        "{text}"
    );
    assert!(
        text.contains("lstm.{weight_hh_l0,weight_hh_l0_reverse,weight_hh_l1,weight_hh_l1_reverse} [64, 16] → 4 parts"),
        "{text}"
    );
    assert!(
        text.contains("attn.in_proj_weight [96, 32] → 3 parts"),
        "{text}"
    );
    let split = report
        .split()
        .iter()
        .find(|s| s.key == "gru.weight_ih_l1")
        .unwrap();
    assert_eq!(
        split.parts,
        [
            "gru.1.reset_gate.input_transform.weight",
            "gru.1.update_gate.input_transform.weight",
            "gru.1.new_gate.input_transform.weight",
        ]
    );

    let ours = model.stages(saved_tensor(IO, "input", &device));
    for (stage, got) in ours {
        let want = saved_tensor::<3>(IO, stage, &device);
        let err = relative_error(got, want);
        assert!(err <= 1e-5, "{stage}: relative error {err:e}");
    }
}

#[test]
fn a_packed_tensor_of_the_wrong_shape_is_reported_whole_and_loads_nothing() {
    let device = Device::flex();
    let model = Seq::new(8, &device);
    let before = model.lstm[0]
        .forward
        .input_gate
        .input_transform
        .weight
        .val();
    let (model, report) = model.load_pretrained(fixture("packed/seq.pth")).unwrap();
    let mismatch = report
        .mismatched()
        .iter()
        .find(|m| m.key == "lstm.weight_ih_l0")
        .unwrap_or_else(|| panic!("{report}"));
    // The model's four gates stacked as PyTorch packs them, against the stored tensor.
    assert_eq!(mismatch.model_shape, vec![32, 8]);
    assert_eq!(mismatch.checkpoint_shape, vec![64, 8]);
    assert!(
        !report.loaded().iter().any(|k| k.starts_with("lstm.")),
        "{report}"
    );
    let after = model.lstm[0]
        .forward
        .input_gate
        .input_transform
        .weight
        .val();
    assert_eq!(before.into_data(), after.into_data());
    // The layers after it fit and load.
    assert!(report.loaded().iter().any(|k| k == "attn.in_proj_weight"));
}

#[test]
fn export_writes_back_pytorch_state_dict_exactly() {
    let device = Device::flex();
    let model = Seq::new(16, &device)
        .with_pretrain(fixture("packed/seq.pth"))
        .unwrap();
    let exported = export_tensors(&model).unwrap();
    assert_same_tensors(&exported, "packed/seq.pth");

    // Written to a file and opened again: the same tensors, and a file that loads back.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seq.safetensors");
    assert_eq!(model.save_pretrained(&path).unwrap(), exported.len());
    let (again, report) = Seq::new(16, &device).load_pretrained(&path).unwrap();
    assert!(report.is_complete(), "{report}");
    let x = saved_tensor(IO, "input", &device);
    let err = relative_error(
        again.stages(x.clone())["head"].clone(),
        model.stages(x)["head"].clone(),
    );
    assert_eq!(err, 0.0);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temp file left"
    );
}

/// `exported` holds exactly the stored tensors of `file`: same keys, shapes and bytes.
fn assert_same_tensors(exported: &[(String, TensorData)], file: &str) {
    let stored = Checkpoint::open(fixture(file)).unwrap();
    let mut ours: Vec<&str> = exported.iter().map(|(k, _)| k.as_str()).collect();
    let mut theirs: Vec<&str> = stored.entries().iter().map(|e| e.key()).collect();
    ours.sort_unstable();
    theirs.sort_unstable();
    assert_eq!(ours, theirs);
    for (key, data) in exported {
        let entry = stored.get(key).unwrap();
        assert_eq!(data.shape().to_vec(), entry.shape().to_vec(), "{key}");
        assert_eq!(data.as_bytes(), entry.read().unwrap().as_slice(), "{key}");
    }
}

fn transformer_case(case: &str, norm_first: bool, activation: ActivationConfig) {
    let device = Device::flex();
    let model = Transformer::new(norm_first, activation, &device);
    let (model, report) = model
        .load_pretrained(fixture(&format!("packed/{case}.pth")))
        .unwrap();
    assert!(report.is_complete(), "{report}");
    let io = format!("packed/{case}_io.safetensors");
    let memory = model
        .encoder
        .forward(TransformerEncoderInput::new(saved_tensor(
            &io, "src", &device,
        )));
    let err = relative_error(memory.clone(), saved_tensor(&io, "memory", &device));
    assert!(err <= 1e-5, "{case} encoder: relative error {err:e}");
    let decoded = model.decoder.forward(TransformerDecoderInput::new(
        saved_tensor(&io, "tgt", &device),
        memory,
    ));
    let err = relative_error(decoded, saved_tensor(&io, "decoded", &device));
    assert!(err <= 1e-5, "{case} decoder: relative error {err:e}");
    assert_same_tensors(
        &export_tensors(&model).unwrap(),
        &format!("packed/{case}.pth"),
    );
}

#[test]
fn post_norm_transformer_matches_pytorch() {
    transformer_case("transformer_post", false, ActivationConfig::Relu);
}

#[test]
fn pre_norm_transformer_matches_pytorch() {
    transformer_case("transformer_pre", true, ActivationConfig::Gelu);
}

#[derive(Module, Debug, Pretrainable)]
struct Attn {
    attn: MultiHeadAttention,
}

#[test]
fn attention_with_separate_projections_matches_pytorch() {
    let device = Device::flex();
    let model = Attn {
        attn: MultiHeadAttentionConfig::new(16, 4)
            .with_dropout(0.0)
            .init(&device),
    };
    let (model, report) = model
        .load_pretrained(fixture("packed/mha_separate.pth"))
        .unwrap();
    assert!(report.is_complete(), "{report}");
    assert!(report.loaded().iter().any(|k| k == "attn.q_proj_weight"));
    let io = "packed/mha_separate_io.safetensors";
    let out = model
        .attn
        .forward(MhaInput::self_attn(saved_tensor(io, "input", &device)))
        .context;
    let err = relative_error(out, saved_tensor(io, "output", &device));
    assert!(err <= 1e-5, "relative error {err:e}");
}

#[derive(Module, Debug, Pretrainable)]
struct Deform {
    deform: DeformConv2d,
}

#[test]
fn deform_conv2d_matches_torchvision() {
    let device = Device::flex();
    let model = Deform {
        deform: DeformConv2dConfig::new([4, 6], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device),
    };
    let (model, report) = model.load_pretrained(fixture("packed/deform.pth")).unwrap();
    assert!(report.is_complete(), "{report}");
    let io = "packed/deform_io.safetensors";
    let out = model.deform.forward(
        saved_tensor(io, "input", &device),
        saved_tensor(io, "offset", &device),
        Some(saved_tensor(io, "mask", &device)),
    );
    let err = relative_error(out, saved_tensor(io, "output", &device));
    assert!(err <= 1e-5, "relative error {err:e}");
}

/// A burnpack burn wrote keeps burn's own field paths: every gate and projection is its own
/// tensor there, and the same mapping takes them one by one.
#[test]
fn burnpack_of_a_packed_model_loads_by_burn_paths() {
    use burn_store::{BurnpackStore, ModuleSnapshot};
    let device = Device::flex();
    let source = Seq::new(16, &device)
        .with_pretrain(fixture("packed/seq.pth"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seq.bpk");
    let mut store = BurnpackStore::from_file(&path);
    source.save_into(&mut store).unwrap();

    let (model, report) = Seq::new(16, &device).load_pretrained(&path).unwrap();
    assert_eq!(report.convention(), burn_pretrain::format::Convention::Burn);
    assert!(report.is_complete(), "{report}");
    assert!(report.split().is_empty(), "burn's paths need no splitting");
    assert!(
        report
            .loaded()
            .iter()
            .any(|k| k == "lstm.1.reverse.cell_gate.hidden_transform.weight"),
        "{report}"
    );
    let x = saved_tensor(IO, "input", &device);
    let err = relative_error(
        model.stages(x.clone())["head"].clone(),
        saved_tensor(IO, "head", &device),
    );
    assert!(err <= 1e-5, "relative error {err:e}");
}

/// A `Vec<BiLstm>` also takes a checkpoint that keys its layers by index (an `nn.ModuleList`
/// of one-layer `nn.LSTM`s: `lstm.1.weight_ih_l0_reverse`), here made from the stacked one by a
/// remap.
#[test]
fn a_list_of_recurrent_layers_takes_module_list_keys_too() {
    let device = Device::flex();
    let spec = burn_pretrain::Pretrain::from(fixture("packed/seq.pth").to_str().unwrap())
        .with_remap(
            r"^lstm\.(weight|bias)_(ih|hh)_l(\d)(_reverse)?$",
            "lstm.${3}.${1}_${2}_l0${4}",
        );
    let (model, report) = Seq::new(16, &device).load_pretrained(spec).unwrap();
    assert!(report.is_complete(), "{report}");
    assert!(
        report
            .loaded()
            .iter()
            .any(|k| k == "lstm.1.weight_ih_l0_reverse"),
        "{report}"
    );
    let x = saved_tensor(IO, "input", &device);
    let err = relative_error(
        model.stages(x)["lstm"].clone(),
        saved_tensor(IO, "lstm", &device),
    );
    assert!(err <= 1e-5, "relative error {err:e}");
}

/// A hand-written mapping that answers differently when applying than when planning (here:
/// from the third walk on) is an error, and the model is left as it was.
#[test]
fn a_mapping_that_changes_between_plan_and_apply_is_an_error() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use burn::nn::{Linear, LinearConfig};
    use burn_pretrain::mapping::Mapper;

    static WALKS: AtomicUsize = AtomicUsize::new(0);

    #[derive(Module, Debug)]
    struct Fickle {
        head: Linear,
    }

    impl Pretrainable for Fickle {
        fn map_pretrain(&mut self, m: &mut Mapper<'_>) {
            let key = if WALKS.fetch_add(1, Ordering::SeqCst) < 2 {
                "head"
            } else {
                "elsewhere"
            };
            m.child(key, "head", &mut self.head);
        }
    }

    let device = Device::flex();
    let mut model = Fickle {
        head: LinearConfig::new(32, 5).init(&device),
    };
    let before = model.head.weight.val().into_data();
    let err = model
        .load_pretrained_in_place(fixture("packed/seq.pth"))
        .unwrap_err();
    assert!(
        matches!(err, burn_pretrain::Error::MappingChanged { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("the plan met `head.weight` where applying met `elsewhere.weight`"),
        "{err}"
    );
    assert_eq!(model.head.weight.val().into_data(), before);
}
