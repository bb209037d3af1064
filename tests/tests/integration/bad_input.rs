//! Bad input: a clear error naming the file and what was found; never a panic; the model
//! exactly as it was.

use burn::prelude::*;
use burn_pretrain::{Error, PretrainExt};
use burn_pretrain_tests::{Backbone, StateDict, fixture};

fn load_err(path: &std::path::Path) -> (Error, String) {
    let device = Device::flex();
    let mut model = Backbone::new(&device);
    let before = model.to_state_dict();
    let err = model.load_pretrained_in_place(path).unwrap_err();
    assert_eq!(
        model.to_state_dict(),
        before,
        "model changed by a failed load"
    );
    // The whole chain: what failed and where, then why.
    let msg = burn_pretrain::error::chain(&err);
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "error should name the path: {msg}"
    );
    (err, msg)
}

#[test]
fn missing_path() {
    let (err, msg) = load_err(&fixture("bad/does_not_exist.pth"));
    assert!(matches!(err, Error::Open { .. }), "{err:?}");
    assert!(msg.contains("No such file"), "{msg}");
}

#[test]
fn directory() {
    let (err, msg) = load_err(&fixture("bad"));
    assert!(matches!(err, Error::IsDirectory { .. }), "{err:?}");
    assert!(msg.ends_with("is a directory, not a file"), "{msg}");
}

#[test]
fn empty_file() {
    let (err, msg) = load_err(&fixture("bad/empty.pth"));
    assert!(matches!(err, Error::Empty { .. }), "{err:?}");
    assert!(msg.ends_with("is empty (0 bytes)"), "{msg}");
}

#[test]
fn truncated_zip() {
    let (err, msg) = load_err(&fixture("bad/truncated.pth"));
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(
        msg.starts_with("cannot read PyTorch zip checkpoint"),
        "{msg}"
    );
}

#[test]
fn random_bytes() {
    let (err, msg) = load_err(&fixture("bad/random.pth"));
    assert!(matches!(err, Error::UnknownFormat { .. }), "{err:?}");
    assert!(msg.contains("unrecognised bytes starting with"), "{msg}");
}

#[test]
fn html_page_saved_as_pth() {
    let (err, msg) = load_err(&fixture("bad/page.pth"));
    assert!(matches!(err, Error::UnknownFormat { .. }), "{err:?}");
    assert!(msg.contains("an HTML page"), "{msg}");
}

#[test]
fn torchscript_archive() {
    let (err, msg) = load_err(&fixture("bad/torchscript.pt"));
    assert!(matches!(err, Error::TorchScript { .. }), "{err:?}");
    assert!(
        msg.contains("torch.save(torch.jit.load(path).state_dict(), \"weights.pth\")"),
        "{msg}"
    );
}

/// An ONNX export (torch.onnx.export) is named as such, with where ONNX is read in burn.
#[test]
fn onnx_model() {
    let (err, msg) = load_err(&fixture("bad/linear.onnx"));
    assert!(matches!(err, Error::UnknownFormat { .. }), "{err:?}");
    assert!(msg.contains("an ONNX model"), "{msg}");
    assert!(msg.contains("burn-import reads ONNX"), "{msg}");
}

#[test]
fn damaged_tensor_bytes_fail_before_the_model_changes() {
    let path = fixture("bad/corrupt_storage.pth");
    // Headers are intact: a plan (which reads no tensor bytes) succeeds.
    let device = Device::flex();
    let report = Backbone::new(&device).plan_pretrained(&path).unwrap();
    assert!(report.dry_run());
    assert_eq!(report.loaded().len(), 30);
    // Loading reads the damaged storage and fails, naming the tensor.
    let (err, msg) = load_err(&path);
    assert!(matches!(err, Error::TensorData { .. }), "{err:?}");
    assert!(msg.starts_with("cannot read tensor `"), "{msg}");
}

#[test]
fn sub_level_that_matches_nothing_lists_what_exists() {
    let device = Device::flex();
    let spec = burn_pretrain::Pretrain::from(fixture("dataparallel/classifier_dp.pth"))
        .with_sub_level("encoder");
    let err = Backbone::new(&device).load_pretrained(spec).unwrap_err();
    assert!(matches!(err, Error::SubLevelNotFound { .. }), "{err:?}");
    assert!(
        err.to_string()
            .ends_with("top-level names are: backbone, head"),
        "{err}"
    );
}

#[test]
fn invalid_remap_pattern() {
    let device = Device::flex();
    let spec = burn_pretrain::Pretrain::from(fixture("legacy/backbone_legacy.pth"))
        .with_remap("(unclosed", "x");
    let err = Backbone::new(&device).load_pretrained(spec).unwrap_err();
    assert!(matches!(err, Error::InvalidRemap { .. }), "{err:?}");
}

/// The spec is resolved before anything is fetched: a bad pattern or sha256 is its own error
/// even when the checkpoint does not exist (or is remote), and nothing is read or downloaded.
#[test]
fn the_spec_is_checked_before_anything_is_fetched() {
    let device = Device::flex();
    let absent = fixture("bad/does_not_exist.pth");
    let spec = burn_pretrain::Pretrain::from(&absent).with_remap("(unclosed", "x");
    let err = Backbone::new(&device).plan_pretrained(spec).unwrap_err();
    assert!(matches!(err, Error::InvalidRemap { .. }), "{err:?}");
    let spec = burn_pretrain::Pretrain::from(&absent).with_remap(r"^(\w+)$", "$1_x");
    let err = Backbone::new(&device).plan_pretrained(spec).unwrap_err();
    assert!(matches!(err, Error::InvalidReplacement { .. }), "{err:?}");
    // An empty sha256 used to match every file; a port nobody listens on is never asked.
    for bad in ["", "0676ba6", "not-hex-at-all"] {
        let spec = burn_pretrain::Pretrain::from("http://127.0.0.1:9/r50.pth").with_sha256(bad);
        let err = Backbone::new(&device).plan_pretrained(spec).unwrap_err();
        match &err {
            Error::InvalidSpec { field, detail } => {
                assert_eq!(field, "sha256");
                assert!(detail.contains("8 to 64 hex digits"), "{detail}");
            }
            other => panic!("`{bad}`: {other:?}"),
        }
    }
}

/// A named pipe would block a read forever: refused by what it is, before reading.
#[test]
fn a_fifo_is_refused_without_reading() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = burn_pretrain_tests::make_fifo(dir.path(), "weights.pth");
    let (err, msg) = load_err(&fifo);
    assert!(matches!(err, Error::NotAFile { .. }), "{err:?}");
    assert!(
        msg.contains("is a named pipe (FIFO), not a regular file"),
        "{msg}"
    );
    // A device never ends: refused the same way.
    let (err, _) = load_err(std::path::Path::new("/dev/zero"));
    assert!(
        matches!(
            err,
            Error::NotAFile {
                kind: "a device",
                ..
            }
        ),
        "{err:?}"
    );
}

/// A safetensors bool tensor whose bytes are not 0 or 1, loaded into a float parameter: a
/// clear error naming the key (burn's conversion would panic), the model unchanged. The file
/// is written byte by byte here: no tool writes such a file on purpose.
#[test]
fn bool_bytes_other_than_0_and_1_are_an_error() {
    use burn::nn::{Linear, LinearConfig};
    use burn_pretrain::Pretrainable;

    #[derive(Module, Debug, Pretrainable)]
    struct Net {
        fc: Linear,
    }

    let mut header = r#"{"fc.bias":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}}"#.to_string();
    while !header.len().is_multiple_of(8) {
        header.push(' ');
    }
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[1, 7]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bools.safetensors");
    std::fs::write(&path, bytes).unwrap();

    let device = Device::flex();
    let mut net = Net {
        fc: LinearConfig::new(3, 2).init(&device),
    };
    let before = net.fc.bias.as_ref().unwrap().val().into_data();
    // The weight is not in the file: the half-loaded layer is allowed, so the read is reached.
    let spec = burn_pretrain::Pretrain::from(&path).with_allow_partial(true);
    let err = net.load_pretrained_in_place(spec).unwrap_err();
    assert!(
        matches!(err, Error::TensorData { ref key, .. } if key == "fc.bias"),
        "{err:?}"
    );
    let msg = burn_pretrain::error::chain(&err);
    assert!(msg.contains("holds byte 0x07 at element 1"), "{msg}");
    assert_eq!(net.fc.bias.as_ref().unwrap().val().into_data(), before);
}

/// Inputs that were quadratic (seconds to minutes at 100,000 keys), generated here at the size
/// that showed it: a shard index repeating one key 100,000 times, and a checkpoint of 100,000
/// top-level names planned against a model. Both finish (linear work) with the right answer.
#[test]
fn a_hundred_thousand_keys_stay_linear() {
    use burn_pretrain::{Checkpoint, Pretrain};
    use burn_pretrain_tests::write_zero_safetensors;

    let dir = tempfile::tempdir().unwrap();
    write_zero_safetensors(
        &dir.path().join("shard.safetensors"),
        &[("a".to_string(), vec![2])],
    );
    let mut index = String::from(r#"{"weight_map": {"#);
    for i in 0..100_000 {
        if i > 0 {
            index.push(',');
        }
        index.push_str(r#""a": "shard.safetensors""#);
    }
    index.push_str("}}");
    let index_path = dir.path().join("model.safetensors.index.json");
    std::fs::write(&index_path, index).unwrap();
    let ckpt = Checkpoint::open(&index_path).unwrap();
    assert_eq!(ckpt.entries().len(), 1);

    let many: Vec<(String, Vec<usize>)> = (0..100_000)
        .map(|i| (format!("name{i}.weight"), vec![0]))
        .collect();
    let path = dir.path().join("many.safetensors");
    write_zero_safetensors(&path, &many);
    let device = Device::flex();
    let err = Backbone::new(&device)
        .plan_pretrained(Pretrain::from(&path))
        .unwrap_err();
    let Error::Unmet { report, .. } = err else {
        panic!("{err}")
    };
    assert_eq!(report.unexpected().len(), 100_000);
    let text = report.to_string();
    assert!(
        text.contains("unexpected in checkpoint: 100000 keys: "),
        "{}",
        &text[..500]
    );
}
