//! How tensor bytes are read: straight from the mapped file where PyTorch stored them
//! contiguously, through `pytorch-reader` elsewhere, checked against the archive's CRC-32 —
//! and only the bytes a load plans (`fixtures/storage/generate.py`, torch 2.9.0).

use burn::prelude::*;
use burn_pretrain::format::DType;
use burn_pretrain::{Checkpoint, Error, Pretrain, PretrainExt};
use burn_pretrain_examples::Backbone;
use burn_pretrain_tests::fixture;

/// A tensor's bytes as values: floats widened to f64, integers and bools as they are.
fn values(dtype: DType, bytes: &[u8]) -> Vec<f64> {
    match dtype {
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f64::from(f32::from_le_bytes(b.try_into().unwrap())))
            .collect(),
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|b| f64::from(half::f16::from_le_bytes(b.try_into().unwrap()).to_f32()))
            .collect(),
        DType::BF16 => bytes
            .chunks_exact(2)
            .map(|b| f64::from(half::bf16::from_le_bytes(b.try_into().unwrap()).to_f32()))
            .collect(),
        DType::I64 => bytes
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f64)
            .collect(),
        DType::Bool => bytes.iter().map(|&b| f64::from(b)).collect(),
        other => panic!("no fixture holds {other}"),
    }
}

#[test]
fn views_and_shared_storages_read_as_pytorch_reads_them() {
    let path = fixture("storage/views.pth");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("storage/expected.json")).unwrap())
            .unwrap();
    let expected = expected.as_object().unwrap();
    let checkpoint = Checkpoint::open(&path).unwrap();
    assert_eq!(checkpoint.entries().len(), expected.len());
    for (key, want) in expected {
        let entry = checkpoint
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing"));
        let shape: Vec<usize> = serde_json::from_value(want["shape"].clone()).unwrap();
        assert_eq!(entry.shape(), shape, "{key}");
        // Bools are JSON booleans, everything else numbers.
        let want: Vec<f32> = want["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().or(v.as_bool().map(f64::from)).unwrap() as f32)
            .collect();
        let got: Vec<f32> = values(entry.dtype(), &entry.read().unwrap())
            .into_iter()
            .map(|v| v as f32)
            .collect();
        assert_eq!(got, want, "{key}");
        // Contiguous views are read where they lie; the transposed one is gathered.
        assert_eq!(entry.byte_range().is_none(), key == "transposed", "{key}");
    }
    // The two halves of one storage lie 12 floats apart in the file.
    let first = checkpoint
        .get("nested.first_half")
        .unwrap()
        .byte_range()
        .unwrap();
    let second = checkpoint
        .get("nested.second_half")
        .unwrap()
        .byte_range()
        .unwrap();
    assert_eq!(second.start - first.start, 48);
    // Without recorded checksums (torch's `compute_crc32=False`) the bytes read all the same.
    let nocrc = Checkpoint::open(fixture("storage/nocrc.pth")).unwrap();
    assert_eq!(nocrc.get("weight").unwrap().read().unwrap().len(), 36);
}

/// `torch.save` names the archive's root after the file's stem; with 21 characters its first
/// directory entry is as long as the zip64 records after the directory, which the zip crate's
/// detection of prepended bytes took for 76 of them (`vit_small_patch16_224.pth` failed).
#[test]
fn a_checkpoint_whose_stem_has_21_characters_reads() {
    let checkpoint = Checkpoint::open(fixture("storage/stem_of_21_characters.pth")).unwrap();
    let views = Checkpoint::open(fixture("storage/views.pth")).unwrap();
    let ours = checkpoint.get("plain").unwrap();
    assert_eq!(ours.shape(), [4, 6]);
    assert!(
        ours.byte_range().is_some(),
        "read in place, not by the fallback"
    );
    assert_eq!(
        ours.read().unwrap(),
        views.get("plain").unwrap().read().unwrap()
    );
}

#[test]
fn every_resnet_tensor_is_read_in_place_as_pytorch_reader_reads_it() {
    // The ResNet fixtures are plain `state_dict()`s: every tensor is a contiguous storage,
    // read from the mapped file; `pytorch-reader` (which gathers every storage itself) must
    // return the same bytes.
    for file in ["resnet/resnet18_narrow.pth", "storage/views.pth"] {
        let path = fixture(file);
        let checkpoint = Checkpoint::open(&path).unwrap();
        if file.starts_with("resnet") {
            assert!(
                checkpoint
                    .entries()
                    .iter()
                    .all(|e| e.byte_range().is_some())
            );
        }
        let reader = pytorch_reader::PytorchReader::new(&path).unwrap();
        assert_eq!(reader.len(), checkpoint.entries().len());
        for entry in checkpoint.entries() {
            let theirs = reader.get(entry.key()).unwrap().read().unwrap();
            assert_eq!(entry.read().unwrap(), theirs, "{file}: {}", entry.key());
        }
    }
}

#[test]
fn a_damaged_storage_fails_its_checksum_naming_the_tensor() {
    let path = fixture("bad/corrupt_storage.pth");
    let checkpoint = Checkpoint::open(&path).unwrap();
    let damaged: Vec<_> = checkpoint
        .entries()
        .iter()
        .filter_map(|e| e.read().err().map(|err| (e.key().to_string(), err)))
        .collect();
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    assert!(
        damaged[0].1.to_string().contains("CRC-32"),
        "{}",
        damaged[0].1
    );
    let device = Device::flex();
    let model = Backbone::new(&device);
    let err = model.load_pretrained(&path).unwrap_err();
    assert!(matches!(err, Error::TensorData { .. }), "{err:?}");
    assert!(err.to_string().contains(&damaged[0].0), "{err}");
}

#[derive(burn::module::Module, Debug, burn_pretrain::Pretrainable)]
struct Proj {
    proj: burn::nn::Linear,
}

#[test]
fn a_damaged_linear_fails_its_checksum_and_leaves_the_model_unchanged() {
    // A Linear's weight is transposed on its way in ([out, in] → [in, out]), read block by
    // block: the blocks' CRC-32s must still add up to the archive's. One byte of `proj.weight`
    // (found by its values in `layers.pth`) is flipped in a copy.
    let want = burn_pretrain_tests::expected("layers")["proj.weight"]
        .1
        .clone();
    let needle: Vec<u8> = want[..4].iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut data = std::fs::read(fixture("layers/layers.pth")).unwrap();
    let at = data
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .expect("proj.weight's bytes in layers.pth");
    data[at + 5] ^= 0x40;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.pth");
    std::fs::write(&path, &data).unwrap();

    let device = Device::flex();
    let model = Proj {
        proj: burn::nn::LinearConfig::new(6, 3)
            .with_bias(false)
            .init(&device),
    };
    let before = model.proj.weight.val().into_data();
    let err = model.clone().load_pretrained(&path).unwrap_err();
    assert!(matches!(err, Error::TensorData { .. }), "{err:?}");
    let message = err.to_string();
    let cause = std::error::Error::source(&err).map(ToString::to_string);
    assert!(
        cause.as_deref().is_some_and(|c| c.contains("CRC-32")),
        "{cause:?}"
    );
    assert!(message.contains("proj.weight"), "{message}");
    assert!(message.contains("damaged.pth"), "{message}");
    assert_eq!(model.proj.weight.val().into_data(), before);
    // Mapped rather than read (`mmap`, with the weight a transposed view of the stored bytes):
    // the checksum is still computed over the mapped pages, and fails the same way; the
    // mapping is gone with the failed load.
    let spec = burn_pretrain::Pretrain::from_path(path.display().to_string())
        .with_transposed_views(true)
        .with_mmap(true);
    let err = model.clone().load_pretrained(spec).unwrap_err();
    let cause = std::error::Error::source(&err).map(ToString::to_string);
    assert!(
        cause.as_deref().is_some_and(|c| c.contains("CRC-32")),
        "{cause:?}"
    );
    assert!(err.to_string().contains("proj.weight"), "{err}");
    assert_eq!(model.proj.weight.val().into_data(), before);
    if let Ok(maps) = std::fs::read_to_string("/proc/self/maps") {
        assert!(
            !maps.contains("damaged.pth"),
            "the failed load's mapping is gone"
        );
    }
    // The undamaged file loads the same tensor through the same path.
    let (loaded, report) = model.load_pretrained(fixture("layers/layers.pth")).unwrap();
    assert_eq!(report.loaded(), ["proj.weight"], "{report}");
    let got = loaded.proj.weight.val().transpose().into_data();
    assert_eq!(got.convert::<f32>().try_to_vec::<f32>().unwrap(), want);
    // And mapped: the same values, its 72 bytes a range of the file's mapping.
    let spec =
        burn_pretrain::Pretrain::from_path(fixture("layers/layers.pth").display().to_string())
            .with_transposed_views(true)
            .with_mmap(true);
    let (mapped, report) = loaded.load_pretrained(spec).unwrap();
    assert_eq!(report.bytes_mapped(), 3 * 6 * 4, "{report}");
    let got = mapped.proj.weight.val().transpose().into_data();
    assert_eq!(got.convert::<f32>().try_to_vec::<f32>().unwrap(), want);
}

#[test]
fn a_load_reads_the_planned_tensors_bytes_and_a_check_none() {
    // A training checkpoint: `state_dict` (DataParallel's `module.backbone`, `module.head`),
    // `optimizer` state, `epoch`.
    let device = Device::flex();
    let path = fixture("dataparallel/classifier_dp.pth");
    let checkpoint = Checkpoint::open(&path).unwrap();
    let bytes_of = |keep: &dyn Fn(&str) -> bool| -> u64 {
        checkpoint
            .entries()
            .iter()
            .filter(|e| keep(e.key()))
            .map(|e| (e.num_elements() * e.dtype().size()) as u64)
            .sum()
    };
    // What the backbone loads: its tensors but the ignored `num_batches_tracked` counters.
    let backbone = bytes_of(&|k| {
        k.starts_with("state_dict.module.backbone.") && !k.ends_with("num_batches_tracked")
    });
    let rest = bytes_of(&|k| !k.starts_with("state_dict.module.backbone."));
    assert!(backbone > 0 && rest > 0);
    let spec = Pretrain::from(path.clone()).with_sub_level("backbone");
    let report = Backbone::new(&device)
        .plan_pretrained(spec.clone())
        .unwrap();
    assert_eq!(report.bytes_read(), 0);
    let (_, report) = Backbone::new(&device).load_pretrained(spec).unwrap();
    assert_eq!(report.loaded().len(), 30);
    assert_eq!(report.bytes_read(), backbone);
}
