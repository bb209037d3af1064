//! Shared pieces of the integration tests: helpers to compare a model's values with what
//! PyTorch wrote. The models themselves (Rust mirrors of those `fixtures/generate.py` saves)
//! are the examples crate's user-defined models.

// Test support: a fixture that does not parse is a broken checkout; panicking says so.
#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

pub mod azurite;
pub mod moto;
pub mod packed;
pub mod records;
pub mod server;

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear};
use burn::prelude::*;
pub use burn_pretrain_examples::{Backbone, Block, Classifier, Downsample, Head};

/// Set (to anything) by `.ci/run`: an emulator test that cannot find its emulator fails instead
/// of skipping.
pub const REQUIRE_EMULATORS: &str = "BURN_PRETRAIN_REQUIRE_EMULATORS";

/// An emulator (`what`) is not installed: print one line saying what is skipped and how to
/// enable it, or panic when [`REQUIRE_EMULATORS`] is set.
pub fn emulator_missing(what: &str, reason: &str, install: &str) {
    let line =
        format!("{what} not available ({reason}); install it with `{install}` (.ci/run does)");
    if std::env::var_os(REQUIRE_EMULATORS).is_some() {
        panic!("{line}, and {REQUIRE_EMULATORS} is set");
    }
    eprintln!("skipped: the test needing {line}");
}

/// Spawn an emulator's `command`; `None` (after [`emulator_missing`]) when its program is not
/// on PATH.
pub fn spawn_emulator(
    command: &mut std::process::Command,
    what: &str,
    install: &str,
) -> Option<std::process::Child> {
    let program = command.get_program().to_string_lossy().into_owned();
    match command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(child) => Some(child),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            emulator_missing(&format!("{what} `{program}`"), "not on PATH", install);
            None
        }
        Err(e) => panic!("cannot start `{program}`: {e}"),
    }
}

/// A named pipe `name` in `dir` (made with `mkfifo`): a path whose read would block forever.
pub fn make_fifo(dir: &std::path::Path, name: &str) -> PathBuf {
    let fifo = dir.join(name);
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo {}", fifo.display());
    fifo
}

/// The path of a committed fixture file.
/// Every tensor of `got` equals `want`'s, name for name and byte for byte (burn-store's
/// snapshots: names as burn visits them, quantized tensors in their packed form).
pub fn assert_same_tensors<M: burn::module::Module>(got: &M, want: &M) {
    use burn_store::ModuleSnapshot;
    let (got, want) = (
        got.collect(None, None, false),
        want.collect(None, None, false),
    );
    assert_eq!(got.len(), want.len());
    for (a, b) in got.iter().zip(&want) {
        assert_eq!((&a.name, a.dtype, &a.shape), (&b.name, b.dtype, &b.shape));
        assert_eq!(
            &a.to_bytes().unwrap()[..],
            &b.to_bytes().unwrap()[..],
            "{}",
            a.name
        );
    }
}

pub fn fixture(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(relative)
}

/// An f32 tensor PyTorch saved in a fixture (`resnet/resnet18_narrow_io.safetensors`, `input`).
pub fn saved_tensor<const D: usize>(file: &str, key: &str, device: &Device) -> Tensor<D> {
    let ckpt = burn_pretrain::Checkpoint::open(fixture(file)).unwrap();
    let entry = ckpt.get(key).unwrap();
    let data = burn::tensor::TensorData::from_bytes_vec(
        entry.read().unwrap(),
        entry.shape().to_vec(),
        burn::tensor::DType::F32,
    );
    Tensor::from_data(data, device)
}

/// An f32 tensor saved in a safetensors fixture, as its shape and values (no backend).
pub fn saved_f32(file: &str, key: &str) -> (Vec<usize>, Vec<f32>) {
    let ckpt = burn_pretrain::Checkpoint::open(fixture(file)).unwrap();
    let entry = ckpt.get(key).unwrap();
    let values = entry
        .read()
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (entry.shape().to_vec(), values)
}

/// max |ours - theirs| / max |theirs| (both printed for the log).
pub fn relative_error<const D: usize>(ours: Tensor<D>, theirs: Tensor<D>) -> f32 {
    assert_eq!(ours.dims(), theirs.dims());
    let diff: f32 = (ours - theirs.clone()).abs().max().into_scalar();
    let scale: f32 = theirs.abs().max().into_scalar();
    eprintln!("max abs diff {diff:e}, max abs reference {scale:e}");
    diff / scale
}

/// A tensor's shape and values as PyTorch saved them.
pub type Values = (Vec<usize>, Vec<f32>);

/// The `expected.json` PyTorch wrote next to a case's checkpoint.
pub fn expected(case: &str) -> BTreeMap<String, Values> {
    let text = std::fs::read_to_string(fixture(&format!("{case}/expected.json")))
        .unwrap_or_else(|e| panic!("fixture {case}/expected.json: {e}"));
    let json: serde_json::Value = serde_json::from_str(&text).expect("expected.json parses");
    json.as_object()
        .expect("expected.json is an object")
        .iter()
        .map(|(k, v)| {
            let shape = v["shape"]
                .as_array()
                .expect("shape")
                .iter()
                .map(|d| d.as_u64().expect("dim") as usize)
                .collect();
            let values = v["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|x| x.as_f64().expect("value") as f32)
                .collect();
            (k.clone(), (shape, values))
        })
        .collect()
}

fn values<const D: usize>(t: Tensor<D>) -> Values {
    let shape = t.shape().to_vec();
    (
        shape,
        t.into_data()
            .convert::<f32>()
            .try_to_vec()
            .expect("f32 data"),
    )
}

fn param<const D: usize>(p: &Param<Tensor<D>>) -> Values {
    values(p.val())
}

/// The model's tensors under PyTorch's names and layout, written out by hand so that the
/// tests do not check the loader's key mapping with itself.
pub trait StateDict {
    fn state_dict(&self, prefix: &str, out: &mut BTreeMap<String, Values>);

    fn to_state_dict(&self) -> BTreeMap<String, Values> {
        let mut out = BTreeMap::new();
        self.state_dict("", &mut out);
        out
    }
}

impl StateDict for Conv2d {
    fn state_dict(&self, prefix: &str, out: &mut BTreeMap<String, Values>) {
        out.insert(format!("{prefix}weight"), param(&self.weight));
        if let Some(b) = &self.bias {
            out.insert(format!("{prefix}bias"), param(b));
        }
    }
}

impl StateDict for BatchNorm {
    fn state_dict(&self, prefix: &str, out: &mut BTreeMap<String, Values>) {
        out.insert(format!("{prefix}weight"), param(&self.gamma));
        out.insert(format!("{prefix}bias"), param(&self.beta));
        out.insert(
            format!("{prefix}running_mean"),
            values(self.running_mean.value()),
        );
        out.insert(
            format!("{prefix}running_var"),
            values(self.running_var.value()),
        );
    }
}

impl StateDict for Linear {
    fn state_dict(&self, prefix: &str, out: &mut BTreeMap<String, Values>) {
        // burn keeps [in, out]; PyTorch saves [out, in].
        out.insert(
            format!("{prefix}weight"),
            values(self.weight.val().transpose()),
        );
        if let Some(b) = &self.bias {
            out.insert(format!("{prefix}bias"), param(b));
        }
    }
}

impl StateDict for Block {
    fn state_dict(&self, prefix: &str, out: &mut BTreeMap<String, Values>) {
        self.conv1.state_dict(&format!("{prefix}conv1."), out);
        self.bn1.state_dict(&format!("{prefix}bn1."), out);
        self.conv2.state_dict(&format!("{prefix}conv2."), out);
        self.bn2.state_dict(&format!("{prefix}bn2."), out);
        if let Some(d) = &self.downsample {
            d.conv.state_dict(&format!("{prefix}downsample.0."), out);
            d.bn.state_dict(&format!("{prefix}downsample.1."), out);
        }
    }
}

impl StateDict for Backbone {
    fn state_dict(&self, prefix: &str, out: &mut BTreeMap<String, Values>) {
        self.conv1.state_dict(&format!("{prefix}conv1."), out);
        self.bn1.state_dict(&format!("{prefix}bn1."), out);
        for (i, b) in self.layer1.iter().enumerate() {
            b.state_dict(&format!("{prefix}layer1.{i}."), out);
        }
    }
}

impl StateDict for Classifier {
    fn state_dict(&self, prefix: &str, out: &mut BTreeMap<String, Values>) {
        self.backbone.state_dict(&format!("{prefix}backbone."), out);
        self.head.fc.state_dict(&format!("{prefix}head.fc."), out);
    }
}

/// Assert that every tensor `expected` names (after stripping `strip` and keeping only keys
/// under it) equals the model's, element for element.
pub fn assert_values_eq(
    model: &BTreeMap<String, Values>,
    expected: &BTreeMap<String, Values>,
    strip: &str,
) -> usize {
    let mut compared = 0;
    for (key, (shape, want)) in expected {
        let Some(key) = key.strip_prefix(strip) else {
            continue;
        };
        let (got_shape, got) = model
            .get(key)
            .unwrap_or_else(|| panic!("model has no tensor `{key}`"));
        assert_eq!(got_shape, shape, "shape of `{key}`");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(g == w, "`{key}`[{i}]: model {g} vs. PyTorch {w}");
        }
        compared += 1;
    }
    compared
}

/// The sha256 of some bytes, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Write a safetensors file of F32 tensors filled with zeros, given `(key, shape)`, by hand
/// (the format is a length, a JSON header and the bytes): for generated hostile inputs too
/// large to commit, such as 100,000 keys.
pub fn write_zero_safetensors(path: &std::path::Path, tensors: &[(String, Vec<usize>)]) {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (key, shape) in tensors {
        let len = shape.iter().product::<usize>() * 4;
        header.insert(
            key.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len]}),
        );
        offset += len;
    }
    let mut text = serde_json::Value::Object(header).to_string();
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut bytes = (text.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(text.as_bytes());
    bytes.resize(bytes.len() + offset, 0);
    std::fs::write(path, bytes).unwrap();
}

/// Run `f` with every tracing event up to `level` captured as text (no colours), and return
/// its result with the log.
pub fn capture_logs<T>(level: tracing::Level, f: impl FnOnce() -> T) -> (T, String) {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(level)
        .finish();
    let value = tracing::subscriber::with_default(subscriber, f);
    let bytes = captured.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    (value, String::from_utf8_lossy(&bytes).into_owned())
}

/// A PyTorch zip checkpoint (`torch.save`'s layout: `archive/data.pkl`, `archive/data/<key>`
/// stored uncompressed, `byteorder`, `version`) around `pickle` and `storages`: for hostile
/// archives no tool writes (a pickle nested a million deep, a storage viewed by a huge
/// stride-0 shape), built byte by byte.
pub fn torch_zip(pickle: &[u8], storages: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(false);
    let mut put = |name: &str, bytes: &[u8]| {
        out.start_file(format!("archive/{name}"), stored).unwrap();
        out.write_all(bytes).unwrap();
    };
    put("data.pkl", pickle);
    put("byteorder", b"little");
    for (key, bytes) in storages {
        put(&format!("data/{key}"), bytes);
    }
    put("version", b"3\n");
    out.finish().unwrap().into_inner()
}

/// One f32 tensor of a hand-built state dict: `(key, storage key, storage numel, offset,
/// shape, stride)`.
pub type F32View<'a> = (&'a str, &'a str, usize, usize, &'a [usize], &'a [usize]);

/// The pickle of `{key: tensor, ...}` as `torch.save` writes it (protocol 2), each tensor a
/// `FloatStorage` view.
pub fn state_dict_pickle(tensors: &[F32View<'_>]) -> Vec<u8> {
    let mut p = b"\x80\x02}q\x00(".to_vec();
    let text = |p: &mut Vec<u8>, s: &str| {
        p.push(b'X');
        p.extend_from_slice(&(s.len() as u32).to_le_bytes());
        p.extend_from_slice(s.as_bytes());
    };
    let int = |p: &mut Vec<u8>, n: usize| {
        p.push(0x8a);
        p.push(8);
        p.extend_from_slice(&(n as u64).to_le_bytes());
    };
    let ints = |p: &mut Vec<u8>, ns: &[usize]| {
        p.push(b'(');
        for &n in ns {
            int(p, n);
        }
        p.push(b't');
    };
    for (key, storage, numel, offset, shape, stride) in tensors {
        text(&mut p, key);
        p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        // The persistent id: ('storage', torch.FloatStorage, key, 'cpu', numel).
        p.push(b'(');
        text(&mut p, "storage");
        p.extend_from_slice(b"ctorch\nFloatStorage\n");
        text(&mut p, storage);
        text(&mut p, "cpu");
        int(&mut p, *numel);
        p.extend_from_slice(b"tQ");
        int(&mut p, *offset);
        ints(&mut p, shape);
        ints(&mut p, stride);
        p.extend_from_slice(b"\x89ccollections\nOrderedDict\n)RtR");
    }
    p.extend_from_slice(b"u.");
    p
}
