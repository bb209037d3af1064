//! Models saved by older burn: records written by burn's own recorders
//! (`fixtures/burn_records/generator`, pinned to each release) read by content, every tensor
//! equal to what the old burn saved, loaded into the same model written for burn 0.22 with the
//! same outputs (the conversion to burnpack is `cli/tests/cli.rs`'s).

use burn::prelude::*;
use burn_pretrain::format::{Convention, DType, Format};
use burn_pretrain::{Checkpoint, PretrainExt};
use burn_pretrain_tests::fixture;
use burn_pretrain_tests::records::{Net, RELEASES};
use serde_json::Value;

fn expected(release: &str) -> Value {
    let text =
        std::fs::read_to_string(fixture(&format!("burn_records/{release}/expected.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn floats(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

/// `0.14` of the burn version a record's metadata names.
fn version_minor(ckpt: &Checkpoint) -> Option<&str> {
    let version = ckpt.metadata().iter().find(|(k, _)| k == "version")?;
    version.1.rsplit_once('.').map(|v| v.0)
}

/// A saved tensor's shape in `expected.json`.
fn shape_of(saved: &Value) -> Vec<usize> {
    saved["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect()
}

fn as_f32(bytes: &[u8], dtype: DType) -> Vec<f32> {
    match dtype {
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes(b.try_into().unwrap()).to_f32())
            .collect(),
        other => panic!("a float record of {other}"),
    }
}

#[test]
fn every_recorder_s_file_lists_exactly_the_tensors_old_burn_saved() {
    for release in RELEASES {
        let expected = expected(release);
        let tensors = expected["tensors"].as_object().unwrap();
        for (file, half) in [
            ("model.mpk", false),
            ("model.mpk.gz", false),
            ("model.json", false),
            ("model_half.mpk", true),
            ("model_half.mpk.gz", true),
            ("model_half.json", true),
        ] {
            let what = format!("{release}/{file}");
            let ckpt = Checkpoint::open(fixture(&format!("burn_records/{what}"))).unwrap();
            assert_eq!(ckpt.format(), Format::BurnRecord, "{what}");
            assert_eq!(ckpt.convention(), Convention::Burn, "{what}");
            let meta: std::collections::BTreeMap<_, _> = ckpt.metadata().iter().cloned().collect();
            // The version burn-core wrote (`=0.14.0` of burn resolves burn-core 0.14.1).
            assert_eq!(
                version_minor(&ckpt),
                release.rsplit_once('.').map(|v| v.0),
                "{what}"
            );
            // The Rust type's name: `f32`, `half::binary16::f16`.
            let float = meta.get("float").map(String::as_str).unwrap_or_default();
            assert!(
                float.ends_with(if half { "f16" } else { "f32" }),
                "{what}: {float}"
            );
            let mut keys: Vec<&str> = ckpt.entries().iter().map(|e| e.key()).collect();
            keys.sort();
            let mut want: Vec<&str> = tensors.keys().map(String::as_str).collect();
            want.sort();
            assert_eq!(keys, want, "{what}");
            for entry in ckpt.entries() {
                let saved = &tensors[entry.key()];
                assert_eq!(entry.shape(), shape_of(saved), "{what}: {}", entry.key());
                assert_eq!(entry.dtype(), if half { DType::F16 } else { DType::F32 });
                let ours = as_f32(&entry.read().unwrap(), entry.dtype());
                let theirs = floats(&saved["values"]);
                for (a, b) in ours.iter().zip(&theirs) {
                    let tolerance = if half { 1e-3 } else { 0.0 };
                    assert!(
                        (a - b).abs() <= tolerance,
                        "{what}: {} {a} vs {b}",
                        entry.key()
                    );
                }
            }
        }
        // bincode stores no field names: the tensors by position, each one of those saved
        // (shape and values), all of them once.
        for (file, half) in [
            ("model.bin", false),
            ("model.bin.gz", false),
            ("model_half.bin", true),
            ("model_half.bin.gz", true),
        ] {
            let what = format!("{release}/{file}");
            let ckpt = Checkpoint::open(fixture(&format!("burn_records/{what}"))).unwrap();
            assert_eq!(ckpt.format(), Format::BurnRecord, "{what}");
            assert!(ckpt.is_positional(), "{what}");
            assert_eq!(
                version_minor(&ckpt),
                release.rsplit_once('.').map(|v| v.0),
                "{what}"
            );
            assert_eq!(ckpt.entries().len(), tensors.len(), "{what}");
            let mut unmatched: Vec<&String> = tensors.keys().collect();
            for (i, entry) in ckpt.entries().iter().enumerate() {
                assert_eq!(entry.key(), format!("#{i}"), "{what}");
                assert_eq!(entry.dtype(), if half { DType::F16 } else { DType::F32 });
                let ours = as_f32(&entry.read().unwrap(), entry.dtype());
                let tolerance = if half { 1e-3 } else { 0.0 };
                let found = unmatched.iter().position(|name| {
                    let saved = &tensors[name.as_str()];
                    let theirs = floats(&saved["values"]);
                    shape_of(saved) == entry.shape()
                        && ours.len() == theirs.len()
                        && ours
                            .iter()
                            .zip(&theirs)
                            .all(|(a, b)| (a - b).abs() <= tolerance)
                });
                let found =
                    found.unwrap_or_else(|| panic!("{what}: tensor #{i} is none of those saved"));
                unmatched.remove(found);
            }
        }
    }
}

/// A bincode record's tensors, named by the model at load time (burn's field order), each
/// equal to the tensor of that name the old burn saved; a model of another shape is refused
/// naming the first difference, and left unchanged.
#[test]
fn a_bincode_record_loads_by_the_model_s_field_order() {
    use burn_store::ModuleSnapshot;
    let device = Device::flex();
    for release in RELEASES {
        let expected = expected(release);
        let tensors = expected["tensors"].as_object().unwrap();
        for file in ["model.bin", "model.bin.gz", "model_half.bin"] {
            let what = format!("{release}/{file}");
            let (net, report) = Net::new(&device)
                .load_pretrained(fixture(&format!("burn_records/{what}")))
                .unwrap();
            assert!(report.is_complete(), "{what}: {report}");
            assert_eq!(report.loaded().len(), tensors.len(), "{what}");
            let tolerance = if file.contains("half") { 1e-3 } else { 0.0 };
            for snapshot in net.collect(None, None, true) {
                let name = snapshot.name.clone();
                let saved = &tensors
                    .get(&name)
                    .unwrap_or_else(|| panic!("{what}: {name} was not saved"));
                let bytes = snapshot.to_bytes().unwrap();
                let ours = as_f32(&bytes, DType::F32);
                let theirs = floats(&saved["values"]);
                assert_eq!(ours.len(), theirs.len(), "{what}: {name}");
                for (a, b) in ours.iter().zip(&theirs) {
                    assert!((a - b).abs() <= tolerance, "{what}: {name} {a} vs {b}");
                }
            }
        }
    }
    // Upgraded to burnpack as the README says: loaded by the module, saved with burn-store;
    // burn-store's own reader gives back every tensor.
    let release = RELEASES[RELEASES.len() - 1];
    let (net, _) = Net::new(&device)
        .load_pretrained(fixture(&format!("burn_records/{release}/model.bin")))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bpk = dir.path().join("model.bpk");
    net.save_into(&mut burn_store::BurnpackStore::from_file(&bpk))
        .unwrap();
    let mut back = Net::new(&device);
    let applied = back
        .load_from(&mut burn_store::BurnpackStore::from_file(&bpk))
        .unwrap();
    assert!(
        applied.errors.is_empty() && applied.missing.is_empty(),
        "{applied:?}"
    );
    burn_pretrain_tests::assert_same_tensors(&back, &net);

    // Another model: the first tensor whose shape differs is named; the model is unchanged.
    let mut net = Net::new(&device);
    net.blocks.pop();
    let before = net.head.weight.val().into_data();
    let err = net
        .load_pretrained_in_place(fixture(&format!("burn_records/{release}/model.bin")))
        .unwrap_err();
    let text = burn_pretrain::error::chain(&err);
    assert!(
        text.contains("model.bin")
            && text.contains("stores no names")
            && text.contains("tensors where the model has"),
        "{text}"
    );
    assert_eq!(
        net.head.weight.val().into_data().as_bytes(),
        before.as_bytes()
    );
}

#[test]
fn a_record_loads_into_the_same_model_for_burn_0_22_with_old_burn_s_outputs() {
    let device = Device::flex();
    for release in RELEASES {
        let expected = expected(release);
        let mlp = &expected["mlp"];
        let x = Tensor::<2>::from_data(TensorData::new(floats(&mlp["input"]), [2, 4]), &device);
        let want = floats(&mlp["output"]);
        for file in ["model.mpk", "model.mpk.gz", "model.json", "model_half.mpk"] {
            let what = format!("{release}/{file}");
            let (net, report) = Net::new(&device)
                .load_pretrained(fixture(&format!("burn_records/{what}")))
                .unwrap();
            assert!(report.is_complete(), "{what}: {report}");
            // Half precision settings: f16 tensors, cast into the f32 model and reported.
            assert_eq!(
                report.cast().len(),
                if file.contains("half") {
                    report.loaded().len()
                } else {
                    0
                },
                "{what}: {report}"
            );
            assert_eq!(
                report.loaded().len(),
                expected["tensors"].as_object().unwrap().len()
            );
            let got: Vec<f32> = net.mlp(x.clone()).into_data().iter::<f32>().collect();
            // burn 0.13's LayerNorm divided by `√var + ε`, later releases by `√(var + ε)`, as
            // burn 0.22's does: the same tensors give slightly other outputs there.
            let formula = if release.starts_with("0.13") {
                2e-3
            } else {
                1e-6
            };
            let tolerance = if file.contains("half") { 2e-2 } else { formula };
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() <= tolerance, "{what}: output {a} vs {b}");
            }
        }
    }
}

#[test]
fn a_damaged_record_is_an_error_naming_the_file_never_a_panic() {
    let release = RELEASES[RELEASES.len() - 1];
    let dir = tempfile::tempdir().unwrap();
    for file in [
        "model.mpk",
        "model.json",
        "model.mpk.gz",
        "model.bin",
        "model.bin.gz",
    ] {
        let bytes = std::fs::read(fixture(&format!("burn_records/{release}/{file}"))).unwrap();
        let path = dir.path().join(file);
        // Cut short at many places, and with bytes flipped.
        for cut in (1..bytes.len()).step_by(37) {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            if let Err(e) = Checkpoint::open(&path) {
                let text = burn_pretrain::error::chain(&e);
                assert!(text.contains(file), "{file} cut at {cut}: {text}");
            }
            let mut flipped = bytes.clone();
            flipped[cut] ^= 0x5a;
            std::fs::write(&path, &flipped).unwrap();
            let _ = Checkpoint::open(&path).map(|c| {
                for entry in c.entries() {
                    let _ = entry.read();
                }
            });
        }
    }
    // A load from a damaged record leaves the model as it was.
    let device = Device::flex();
    let mut net = Net::new(&device);
    let before = net.head.weight.val().into_data();
    let bytes = std::fs::read(fixture(&format!("burn_records/{release}/model.mpk"))).unwrap();
    let path = dir.path().join("short.mpk");
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    assert!(net.load_pretrained_in_place(&path).is_err());
    assert_eq!(
        net.head.weight.val().into_data().as_bytes(),
        before.as_bytes()
    );
}

/// A gzipped record that would decompress past 64 × its size + 1 GiB is refused as a bomb,
/// naming the file; it was decompressed into an anonymous temporary file, so nothing is left.
#[test]
fn a_gzip_bomb_record_is_refused() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.mpk.gz");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::best(),
    );
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1200 {
        gz.write_all(&zeros).unwrap();
    }
    gz.finish().unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(
        size * 64 + (1 << 30) < 1200 << 20,
        "{size} bytes: not a bomb by the rule"
    );
    let err = Checkpoint::open(&path).unwrap_err();
    let text = burn_pretrain::error::chain(&err);
    assert!(
        text.contains("bomb.mpk.gz") && text.contains("bomb"),
        "{text}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "only the bomb itself is left");
}
