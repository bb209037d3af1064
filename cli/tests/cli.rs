//! The built `pretrain` binary on the committed fixtures: whole expected text, parsed JSON,
//! exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use burn::prelude::*;
use burn_pretrain::PretrainExt;

const BIN: &str = env!("CARGO_BIN_EXE_pretrain");

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(rel)
        .canonicalize()
        .unwrap()
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A safetensors file from its JSON header (padded to 8 bytes here) and data: for hostile
/// files no tool writes.
fn safetensors_bytes(header: &str, data: &[u8]) -> Vec<u8> {
    let mut header = header.as_bytes().to_vec();
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(data);
    bytes
}

/// `{"t0": {...}, "t1": {...}, ...}`: `n` zero-sized F32 tensors, shapes from `shape(i)`.
fn many_empty_tensors(n: usize, shape: impl Fn(usize) -> String) -> String {
    let entries: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#""t{i}": {{"dtype": "F32", "shape": {}, "data_offsets": [0, 0]}}"#,
                shape(i)
            )
        })
        .collect();
    format!("{{{}}}", entries.join(","))
}

#[test]
fn inspect_shows_the_view_folded_with_totals() {
    let path = fixture("dataparallel/classifier_dp.pth");
    let out = run(&["inspect", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out).replace(path.to_str().unwrap(), "<dp>");
    let expected = "\
<dp> (PyTorch zip)
view: unwrapped `state_dict`, ignored optimizer (20 tensors)
view: stripped `module.` from 38 keys
  backbone.bn1.num_batches_tracked                                       [] i64
  backbone.bn1.{bias,running_mean,running_var,weight}                    [4] f32
  backbone.conv1.weight                                                  [4, 3, 3, 3] f32
  backbone.layer1.0.bn1.{bias,running_mean,running_var,weight}           [4] f32
  backbone.layer1.0.bn2.{bias,running_mean,running_var,weight}           [4] f32
  backbone.layer1.0.conv1.weight                                         [4, 4, 3, 3] f32
  backbone.layer1.0.conv2.weight                                         [4, 4, 3, 3] f32
  backbone.layer1.1.bn1.{bias,running_mean,running_var,weight}           [8] f32
  backbone.layer1.1.bn2.{bias,running_mean,running_var,weight}           [8] f32
  backbone.layer1.1.conv1.weight                                         [8, 4, 3, 3] f32
  backbone.layer1.1.conv2.weight                                         [8, 8, 3, 3] f32
  backbone.layer1.1.downsample.0.weight                                  [8, 4, 1, 1] f32
  backbone.layer1.1.downsample.1.num_batches_tracked                     [] i64
  backbone.layer1.1.downsample.1.{bias,running_mean,running_var,weight}  [8] f32
  backbone.layer1.{0,1}.bn1.num_batches_tracked                          [] i64
  backbone.layer1.{0,1}.bn2.num_batches_tracked                          [] i64
  head.fc.bias                                                           [5] f32
  head.fc.weight                                                         [5, 8] f32
38 tensors, 1487 parameters, f32 5924 bytes, i64 48 bytes
";
    assert_eq!(text, expected);
}

#[test]
fn inspect_json_and_raw() {
    let path = fixture("dataparallel/classifier_dp.pth");
    let out = run(&["inspect", path.to_str().unwrap(), "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["format"], "pytorch_zip");
    let tensors = json["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 38);
    let fc = tensors
        .iter()
        .find(|t| t["key"] == "head.fc.weight")
        .unwrap();
    assert_eq!(fc["shape"], serde_json::json!([5, 8]));
    assert_eq!(fc["dtype"], "f32");
    let out = run(&["inspect", path.to_str().unwrap(), "--json", "--raw"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: Vec<&str> = json["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 58);
    assert!(keys.contains(&"state_dict.module.head.fc.weight"));
    assert!(keys.contains(&"optimizer.state.0.momentum_buffer"));
}

#[test]
fn inspect_a_sharded_checkpoint_through_its_index() {
    let index = fixture("sharded/safetensors/model.safetensors.index.json");
    let single = fixture("resnet/resnext_narrow.pth");
    let out = run(&["inspect", index.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let first = text.lines().next().unwrap();
    assert!(first.ends_with("(safetensors, 3 shards)"), "{first}");
    let tensors = |path: &Path| -> Vec<serde_json::Value> {
        let out = run(&["inspect", path.to_str().unwrap(), "--json"]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        json["tensors"].as_array().unwrap().clone()
    };
    let (mut sharded, mut whole) = (tensors(&index), tensors(&single));
    let key = |t: &serde_json::Value| t["key"].as_str().unwrap().to_string();
    sharded.sort_by_key(key);
    whole.sort_by_key(key);
    assert_eq!(sharded.len(), 320);
    assert_eq!(sharded, whole);
}

#[test]
fn check_plans_per_subtree_and_gates() {
    let config = fixture("resnet/classifier200.json");
    let out = run(&["check", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = config.parent().unwrap().to_str().unwrap().to_string();
    let text = stdout(&out).replace(&dir, "<dir>");
    let expected = "\
plan for <dir>/classifier200.json (dry run: headers only, no tensor bytes read)
[(root)] <dir>/classifier_dp.pth (PyTorch zip): 100 load, 2 shape mismatch, 0 cast, 0 missing, 0 unexpected
  head.fc.weight: model [200, 64] vs. checkpoint [100, 64]
  head.fc.bias: model [200] vs. checkpoint [100]
subtree    total    load   shape    cast  missing
backbone     100     100       0       0        0
head           2       0       2       0        0
";
    assert_eq!(text, expected);
    let out = run(&[
        "check",
        config.to_str().unwrap(),
        "--expect",
        "backbone=1.0",
        "--expect",
        "head=0.5",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let text = stdout(&out);
    assert!(
        text.contains("expect backbone=1: ok 1.000 (100/100)\n"),
        "{text}"
    );
    assert!(
        text.contains("expect head=0.5: FAILED, got 0.000 (0/2)\n"),
        "{text}"
    );
    let out = run(&["check", config.to_str().unwrap(), "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["subtrees"][0]["load"], 100);
    assert_eq!(json["subtrees"][1]["shape_mismatch"], 2);
}

/// A copy of the classifier checkpoint whose first tensor storage is damaged: the zip and
/// its pickle are intact, so headers read; the bytes do not.
fn damaged_classifier(dir: &Path) -> PathBuf {
    let mut bytes = std::fs::read(fixture("resnet/classifier_dp.pth")).unwrap();
    let name = b"/data/0";
    let mut i = 0;
    let start = loop {
        assert!(i + 30 < bytes.len(), "no data/0 entry");
        if bytes[i..].starts_with(b"PK\x03\x04") {
            let name_len = u16::from_le_bytes([bytes[i + 26], bytes[i + 27]]) as usize;
            let extra_len = u16::from_le_bytes([bytes[i + 28], bytes[i + 29]]) as usize;
            if bytes[i + 30..i + 30 + name_len].ends_with(name) {
                break i + 30 + name_len + extra_len;
            }
        }
        i += 1;
    };
    for b in &mut bytes[start..start + 64] {
        *b ^= 0xff;
    }
    let path = dir.join("classifier_dp.pth");
    std::fs::write(&path, bytes).unwrap();
    let config = std::fs::read_to_string(fixture("resnet/classifier200.json")).unwrap();
    std::fs::write(dir.join("config.json"), config).unwrap();
    dir.join("config.json")
}

#[test]
fn check_reads_no_tensor_bytes_but_load_does() {
    let dir = tempfile::tempdir().unwrap();
    let config = damaged_classifier(dir.path());
    let out = run(&["check", config.to_str().unwrap(), "--expect", "backbone=1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("100 load, 2 shape mismatch"));
    let out = run(&["load", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: config "), "{err}");
    assert!(err.contains("cannot read tensor `"), "{err}");
}

#[test]
fn load_runs_the_model_and_matches_pytorch() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.npy");
    let config = fixture("resnet/classifier100.json");
    let input = fixture("resnet/classifier_input.npy");
    let out = run(&[
        "load",
        config.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out_path.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["loaded"].as_array().unwrap().len(), 102);
    assert_eq!(json["missing"], serde_json::json!([]));
    assert_eq!(json["unexpected"], serde_json::json!([]));
    assert_eq!(json["mismatched"], serde_json::json!([]));
    assert_eq!(json["output_shape"], serde_json::json!([2, 100]));
    assert_npy_close(&out_path, &fixture("resnet/classifier_probabilities.npy"));
}

/// A timm ViT made for 224 built at 384 from a config: the position embedding is resampled
/// (reported), and `--output` holds timm's logits for the same input.
#[test]
fn load_writes_a_timm_vit_s_logits_at_another_image_size() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("logits.npy");
    let config = fixture("timm/vit_narrow_384.json");
    let input = fixture("timm/vit_narrow_384_input.npy");
    let out = run(&[
        "load",
        config.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("pos_embed: resampled grid 14×14 → 24×24"),
        "{text}"
    );
    assert!(text.contains("output [1, 10]"), "{text}");
    assert_npy_close(&out_path, &fixture("timm/vit_narrow_384_logits.npy"));

    // `check` plans the same resampling, reading no tensor.
    let out = run(&["check", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("  pos_embed: checkpoint [1, 197, 48] → model [1, 577, 48], resampled grid 14×14 → 24×24"),
        "{text}"
    );

    // Without an input the generated batch has the model's size; a wrong size is refused.
    let out = run(&["load", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let wrong = fixture("resnet/classifier_input.npy");
    let out = run(&[
        "load",
        config.to_str().unwrap(),
        "--input",
        wrong.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("images, the model takes 384×384"),
        "{}",
        stderr(&out)
    );
}

/// A config whose `pretrain` names a PEFT LoRA adapter (written by peft) beside the base
/// checkpoint: `load` reports the adapted layers and writes PEFT's logits for the same input,
/// with the adapter attached and merged.
#[test]
fn load_applies_a_peft_adapter_as_peft_does() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("peft/vit64_input.npy");
    for (config, verb) in [
        ("peft/vit64.json", "attached"),
        ("peft/vit64_merged.json", "merged"),
    ] {
        let out_path = dir.path().join("logits.npy");
        let config = fixture(config);
        let out = run(&[
            "load",
            config.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            out_path.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(&format!("{verb} to 6 layers:")), "{text}");
        assert!(
            text.contains("replaced (modules_to_save): head.{weight,bias}"),
            "{text}"
        );
        assert_npy_close(&out_path, &fixture("peft/vit64_logits.npy"));
    }
}

/// A record saved by burn 0.21's `NamedMpkFileRecorder`: `inspect` shows its metadata and
/// tensors, `convert` writes a burnpack that burn 0.22's own `BurnpackStore` loads into the
/// same model written for burn 0.22, with the values burn-pretrain loads from the record.
#[test]
fn an_old_burn_record_converts_to_a_burnpack_burn_loads() {
    use burn::prelude::*;
    use burn_pretrain::PretrainExt;
    use burn_pretrain_tests::records::{Net, RELEASES};
    use burn_store::{BurnpackStore, ModuleSnapshot};
    for release in RELEASES {
        let record = fixture(&format!("burn_records/{release}/model.mpk"));
        let out = run(&["inspect", record.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("(burn record)"), "{text}");
        // The burn-core version that wrote it (burn `=0.14.0` resolves burn-core 0.14.1).
        let minor = release.rsplit_once('.').unwrap().0;
        assert!(text.contains(&format!("version {minor}.")), "{text}");
        assert!(
            text.contains("lstm.input_gate.input_transform.weight"),
            "{text}"
        );

        let dir = tempfile::tempdir().unwrap();
        let bpk = dir.path().join("model.bpk");
        let out = run(&["convert", record.to_str().unwrap(), bpk.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let device = Device::flex();
        let mut net = Net::new(&device);
        let applied = net.load_from(&mut BurnpackStore::from_file(&bpk)).unwrap();
        assert!(
            applied.errors.is_empty() && applied.missing.is_empty(),
            "{applied:?}"
        );
        let (loaded, _) = Net::new(&device).load_pretrained(&record).unwrap();
        let x = Tensor::<2>::ones([2, 4], &device);
        let a: Vec<f32> = net.mlp(x.clone()).into_data().iter::<f32>().collect();
        let b: Vec<f32> = loaded.mlp(x).into_data().iter::<f32>().collect();
        assert_eq!(a, b, "{release}");
        // bincode: listed by position, and not converted alone (it has no names to write).
        let bin = fixture(&format!("burn_records/{release}/model.bin"));
        let out = run(&["inspect", bin.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("tensors by position"), "{text}");
        assert!(text.contains("#0 "), "{text}");
        let out = run(&[
            "convert",
            bin.to_str().unwrap(),
            dir.path().join("bin.bpk").to_str().unwrap(),
        ]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("stores no names"), "{}", stderr(&out));
        let a = net.lstm.input_gate.input_transform.weight.val().into_data();
        let b = loaded
            .lstm
            .input_gate
            .input_transform
            .weight
            .val()
            .into_data();
        assert_eq!(a.as_bytes(), b.as_bytes());
    }
}

/// The arrays of two .npy files agree within a relative error of 1e-4 (max |diff| / max |want|).
fn assert_npy_close(got: &Path, want: &Path) {
    let (got, want) = (read_npy(got), read_npy(want));
    assert_eq!(got.len(), want.len());
    let diff = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let scale = want.iter().map(|b| b.abs()).fold(0f32, f32::max);
    assert!(diff / scale <= 1e-4, "relative error {}", diff / scale);
}

fn read_npy(path: &Path) -> Vec<f32> {
    let file = std::fs::File::open(path).unwrap();
    npyz::NpyFile::new(std::io::BufReader::new(file))
        .unwrap()
        .into_vec::<f32>()
        .unwrap()
}

#[test]
fn load_json_lists_mismatches_in_checkpoint_convention() {
    let config = fixture("resnet/classifier200.json");
    let out = run(&["load", config.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["mismatched"],
        serde_json::json!([
            {"key": "head.fc.weight", "model_shape": [200, 64], "checkpoint_shape": [100, 64]},
            {"key": "head.fc.bias", "model_shape": [200], "checkpoint_shape": [100]}
        ])
    );
    assert_eq!(json["output_shape"], serde_json::json!([1, 200]));
}

#[test]
fn convert_writes_both_formats_that_load_back() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixture("resnet/classifier_dp.pth");
    let device = Device::flex();
    let reference = burn_pretrain_models::ResNetConfig::resnet18()
        .with_base_channels(8)
        .init(&device)
        .unwrap();
    let (reference, _) = reference
        .load_pretrained(burn_pretrain::Pretrain::from(&source).with_sub_level("backbone"))
        .unwrap();
    for name in ["backbone.safetensors", "backbone.bpk"] {
        let out_path = dir.path().join(name);
        let out = run(&[
            "convert",
            source.to_str().unwrap(),
            out_path.to_str().unwrap(),
            "--sub-level",
            "backbone",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            stdout(&out),
            format!("wrote 120 tensors to {}\n", out_path.display())
        );
        let net = burn_pretrain_models::ResNetConfig::resnet18()
            .with_base_channels(8)
            .init(&device)
            .unwrap();
        let (net, report) = net.load_pretrained(&out_path).unwrap();
        assert!(report.is_complete(), "{report}");
        assert_eq!(
            net.conv1.weight.val().into_data(),
            reference.conv1.weight.val().into_data()
        );
        let a = &net.layer4[1];
        let b = &reference.layer4[1];
        let (burn_pretrain_models::Block::Basic(a), burn_pretrain_models::Block::Basic(b)) = (a, b)
        else {
            panic!("basic blocks")
        };
        assert_eq!(
            a.bn2.running_var.value().into_data(),
            b.bn2.running_var.value().into_data()
        );
    }
    // --config keeps only what the model would load.
    let out_path = dir.path().join("classifier.safetensors");
    let config = fixture("resnet/classifier200.json");
    let out = run(&[
        "convert",
        source.to_str().unwrap(),
        out_path.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("wrote 100 tensors to {}\n", out_path.display())
    );
}

#[test]
fn export_writes_the_loaded_model_in_pytorch_names_and_layouts() {
    // The classifier of classifier100.json, loaded from its DataParallel checkpoint.
    let config = fixture("resnet/classifier100.json");
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("classifier.safetensors");
    let out = run(&[
        "export",
        config.to_str().unwrap(),
        out_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("wrote"), "{}", stdout(&out));

    let exported = burn_pretrain::Checkpoint::open(&out_path).unwrap();
    let source = burn_pretrain::Checkpoint::open(fixture("resnet/classifier_dp.pth")).unwrap();
    let spec = burn_pretrain::Pretrain::from(fixture("resnet/classifier_dp.pth").to_str().unwrap());
    let view = burn_pretrain::view::CheckpointView::new(&source, spec.view()).unwrap();
    // Every stored tensor comes back under its key (the `module.` prefix stripped), floats
    // byte for byte (Linear transposed back), the BatchNorm counters as PyTorch's i64 scalars.
    let mut theirs: Vec<&str> = view.entries().map(|(k, _)| k).collect();
    let mut ours: Vec<&str> = exported.entries().iter().map(|e| e.key()).collect();
    theirs.sort_unstable();
    ours.sort_unstable();
    assert_eq!(ours, theirs);
    for (key, entry) in view.entries() {
        let mine = exported.get(key).unwrap();
        assert_eq!(mine.shape(), entry.shape(), "{key}");
        assert_eq!(mine.dtype(), entry.dtype(), "{key}");
        if !key.ends_with("num_batches_tracked") {
            assert_eq!(mine.read().unwrap(), entry.read().unwrap(), "{key}");
        }
    }
    // Refuses other extensions before doing any work.
    let out = run(&["export", config.to_str().unwrap(), "model.pth"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("*.safetensors"), "{}", stderr(&out));
}

/// A key of 70,000 bytes (a hostile file, written byte by byte here) is listed, not a panic
/// in the column formatting.
#[test]
fn inspect_lists_a_very_long_key() {
    let key = "k".repeat(70_000);
    let bytes = safetensors_bytes(
        &format!(r#"{{"{key}":{{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}}}"#),
        &1.0f32.to_le_bytes(),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.safetensors");
    std::fs::write(&path, bytes).unwrap();
    let out = run(&["inspect", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("  {key}  [1] f32")),
        "key not listed"
    );
}

#[test]
fn bad_input_gives_one_line_and_a_documented_exit_code() {
    let missing = run(&["inspect", "/no/such/file.pth"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        stderr(&missing),
        "error: cannot open checkpoint /no/such/file.pth: No such file or directory (os error 2)\n"
    );
    let html = fixture("bad/page.pth");
    let out = run(&["inspect", html.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("an HTML page"), "{}", stderr(&out));
    assert_eq!(run(&["frobnicate"]).status.code(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "type: Classifier\nbackbone: {type: ResNet, depth: 42}\nhead: {type: ClassifierHead, dim: 8, num_classes: 2}\n").unwrap();
    let out = run(&["check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "error: config {}: backbone.depth: 42 is not a ResNet depth; allowed: 18, 34, 50, 101, 152\n",
            bad.display()
        )
    );
    let out = run(&["load", bad.to_str().unwrap(), "--device", "wgpu"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .contains("this build lacks the `wgpu` backend; rebuild with `--features wgpu`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn demo_tells_the_seed_story() {
    let out = run(&["demo"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("    head.fc.weight: model [200, 64] vs. checkpoint [100, 64]\n"),
        "{text}"
    );
    assert!(
        text.contains("  ignored (outside sub_level `backbone`): head.fc.{bias,weight}\n"),
        "{text}"
    );
    assert!(
        text.contains("  unexpected in checkpoint: fc.{bias,weight}\n"),
        "{text}"
    );
}

/// A config's `pretrain` carries its own expectations; `check` (a plan) and `load` both exit
/// 3 when one is unmet, with the error and the plan's report on stderr.
#[test]
fn config_expectations_gate_check_and_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("resnet/classifier200.json")).unwrap(),
    )
    .unwrap();
    config["pretrain"] = serde_json::json!({
        "path": fixture("resnet/classifier_dp.pth"),
        "expect": {"strict": true}
    });
    let path = dir.path().join("strict.json");
    std::fs::write(&path, config.to_string()).unwrap();
    for command in ["check", "load"] {
        let out = run(&[command, path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(3), "{command}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("did not meet expectations"), "{err}");
        assert!(
            err.contains("strict: not loaded head.fc.{weight,bias}"),
            "{err}"
        );
        assert!(err.contains("loaded 100/102 model tensors (98 %)"), "{err}");
    }
    // Allowing the head's keys to stay unloaded meets it.
    config["pretrain"]["expect"]["allow_missing"] = serde_json::json!(["^head\\."]);
    std::fs::write(&path, config.to_string()).unwrap();
    let out = run(&["check", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A load that loads nothing (a checkpoint of another model) exits 3 by default.
#[test]
fn a_load_of_nothing_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let mut config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("resnet/classifier200.json")).unwrap(),
    )
    .unwrap();
    let elsewhere = fixture("resnet/classifier200.json")
        .parent()
        .unwrap()
        .join("../hints/case.pth");
    config["pretrain"] = serde_json::json!(elsewhere);
    let path = dir.path().join("other.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let out = run(&["load", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing loaded: none of the model's 102 tensors"),
        "{}",
        stderr(&out)
    );
}

/// Inputs and configs that burn would panic or abort on are refused first, with one line
/// naming the file or field (exit 1): images of other channels or no pixels, a head over
/// another width than its backbone gives, models bigger than the machine's memory or whose
/// size overflows.
#[test]
fn hostile_inputs_and_configs_fail_cleanly() {
    let config = fixture("resnet/classifier200.json");
    for (input, says) in [
        ("bad/five_channels.npy", "5 channels, the model takes 3"),
        ("bad/empty_image.npy", "has an empty dimension"),
        // Found by `fuzz/run.sh` (npy): npyz took exponential time on nested brackets.
        (
            "bad/nested_header.npy",
            "the .npy header nests brackets more than 4 deep",
        ),
        // Found by `fuzz/run.sh` (npy): npyz's stride products overflowed.
        (
            "bad/overflowing_shape.npy",
            "has more elements than 64 bits count",
        ),
    ] {
        let out = run(&[
            "load",
            config.to_str().unwrap(),
            "--input",
            fixture(input).to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(1), "{input}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(says) && err.contains(input), "{err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let base: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let mut cases = Vec::new();
    let mut wrong_dim = base.clone();
    wrong_dim["head"]["dim"] = serde_json::json!(32);
    cases.push((
        wrong_dim,
        "ClassifierHead (dim 32) takes 32 channels, but gets 64",
    ));
    let mut overflow = base.clone();
    overflow["backbone"]["base_channels"] = serde_json::json!(1u64 << 62);
    cases.push((overflow, "the count overflows"));
    let mut huge = base.clone();
    huge["backbone"]["base_channels"] = serde_json::json!(100_000);
    cases.push((huge, "more than this machine's"));
    let mut classes = base.clone();
    classes["head"]["num_classes"] = serde_json::json!(1_000_000_000u64);
    cases.push((classes, "more than this machine's"));
    for (i, (mut config, says)) in cases.into_iter().enumerate() {
        config["pretrain"] = serde_json::json!(fixture("resnet/classifier_dp.pth"));
        let path = dir.path().join(format!("case{i}.json"));
        std::fs::write(&path, config.to_string()).unwrap();
        for command in ["check", "load"] {
            let out = run(&[command, path.to_str().unwrap()]);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{command} case {i}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(err.contains(says), "{command} case {i}: {err}");
        }
    }
}

/// `inspect` of 100,000 tensors of distinct shapes (zero-sized, so the file is small) was
/// quadratic in grouping by shape; it lists every one.
#[test]
fn inspect_of_a_hundred_thousand_distinct_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = safetensors_bytes(&many_empty_tensors(100_000, |i| format!("[{i}, 0]")), &[]);
    let path = dir.path().join("shapes.safetensors");
    std::fs::write(&path, bytes).unwrap();
    let out = run(&["inspect", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 100_002, "{}", &text[..300]);
    assert!(
        text.ends_with("100000 tensors, 0 parameters, f32 0 bytes\n"),
        "{}",
        &text[text.len() - 200..]
    );
}

/// Messages that named the wrong thing: an empty `pretrain` (was "<dir>/ is a directory"), a
/// config of unknown extension (was "is not valid a config"), a safetensors file with bytes
/// after its tensors (was "(truncated?)"), a key with a NUL byte (was printed raw).
#[test]
fn messages_name_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let mut config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("resnet/classifier200.json")).unwrap(),
    )
    .unwrap();
    config["pretrain"] = serde_json::json!("");
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, config.to_string()).unwrap();
    let out = run(&["check", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("invalid checkpoint location ``: empty path"),
        "{err}"
    );

    let txt = dir.path().join("config.txt");
    std::fs::write(&txt, "{}").unwrap();
    let err = stderr(&run(&["check", txt.to_str().unwrap()]));
    assert!(
        err.contains("is not valid JSON, YAML or TOML: unknown extension `.txt`"),
        "{err}"
    );

    let mut bytes = safetensors_bytes(
        r#"{"a\u0000b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
        &[0; 8],
    );
    let end = bytes.len();
    let exact = dir.path().join("nul.safetensors");
    std::fs::write(&exact, &bytes).unwrap();
    let out = run(&["inspect", exact.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("a\\u{0}b  [2] f32"),
        "{}",
        stdout(&out)
    );
    assert!(!out.stdout.contains(&0), "a raw NUL was printed");
    bytes.extend_from_slice(&[0; 16]);
    let trailing = dir.path().join("trailing.safetensors");
    std::fs::write(&trailing, &bytes).unwrap();
    let err = stderr(&run(&["inspect", trailing.to_str().unwrap()]));
    assert!(
        err.contains(&format!(
            "the header's tensors end at byte {end} but the file has {} bytes: 16 bytes that no tensor holds follow them",
            end + 16
        )),
        "{err}"
    );
}

/// `convert` reads one tensor at a time and checks what it reads: a bool tensor whose bytes
/// are not 0/1 is an error naming the key (was copied through), and a burnpack of more tensors
/// than burn-pack's reader takes (100,001) is refused before anything is written. Neither
/// leaves a file behind.
#[test]
fn convert_refuses_what_it_cannot_write_faithfully() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = safetensors_bytes(
        r#"{"fc.bias":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}}"#,
        &[1, 7],
    );
    let bools = dir.path().join("bools.safetensors");
    std::fs::write(&bools, bytes).unwrap();
    for out in ["out.safetensors", "out.bpk"] {
        let target = dir.path().join(out);
        let run_out = run(&["convert", bools.to_str().unwrap(), target.to_str().unwrap()]);
        assert_eq!(run_out.status.code(), Some(1), "{}", stderr(&run_out));
        let err = stderr(&run_out);
        assert!(err.contains("reading `fc.bias`"), "{err}");
        assert!(err.contains("booleans are 0 or 1"), "{err}");
        assert!(!target.exists());
    }

    let bytes = safetensors_bytes(&many_empty_tensors(100_001, |_| "[0]".into()), &[]);
    let many = dir.path().join("many.safetensors");
    std::fs::write(&many, bytes).unwrap();
    let target = dir.path().join("many.bpk");
    let out = run(&["convert", many.to_str().unwrap(), target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("a burnpack holds at most 100000 tensors (burn-pack's reader refuses more), this view has 100001"),
        "{err}"
    );
    assert!(!target.exists());
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "left behind: {names:?}");
}

/// A YAML or TOML config nested 100,000 brackets deep (the YAML parser was quadratic on it,
/// a minute) is refused at once, on one line, with where.
#[test]
fn configs_nested_too_deep_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let n = 100_000;
    let nested = format!("{}{}", "[".repeat(n), "]".repeat(n));
    for (name, text, format) in [
        ("deep.yaml", format!("type: {nested}\n"), "YAML"),
        ("deep.toml", format!("type = {nested}\n"), "TOML"),
        ("deep.json", format!("{{\"type\": {nested}}}"), "JSON"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = run(&["check", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{}", &err[..err.len().min(300)]);
        assert!(err.contains(&format!("is not valid {format}")), "{err}");
        assert!(
            err.contains("recursion limit") || err.contains("nested deeper than 128 levels"),
            "{err}"
        );
    }
}

/// The second probe's configs (issue 24), each exactly: one line naming the field, exit 1,
/// from `check` (which builds the model) and `load` (which also runs it).
#[test]
fn hostile_model_configs_are_refused_naming_their_field() {
    let dir = tempfile::tempdir().unwrap();
    let vit = |extra: &str| {
        format!("type: VisionTransformer\nvariant: vit_tiny_patch16_224\nnum_classes: 10\n{extra}")
    };
    for (name, text, says) in [
        ("reg.yaml", vit("reg_tokens: 18446744073709551615\n"), "reg_tokens: 18446744073709551615 register tokens and a class token overflow the count"),
        ("deep.yaml", vit("embed_dim: 3\ndepth: 300000000\n"), "embed_dim: a Vision Transformer of width 3 and depth 300000000: the parameters would need"),
        ("wide.yaml", vit("img_size: 16384\n"), "img_size: a Vision Transformer for 16384×16384 images: a forward pass over one image would need"),
        ("nan.yaml", vit("mlp_ratio: .nan\n"), "`mlp_ratio` is NaN, not a finite number"),
        ("inf.toml", "type = \"VisionTransformer\"\nvariant = \"vit_tiny_patch16_224\"\nmlp_ratio = inf\n".to_string(), "`mlp_ratio` is inf, not a finite number"),
        (
            "zero_width.yaml",
            "type: Classifier\nbackbone: {type: ResNet, depth: 50, base_channels: 1, width_per_group: 1, groups: 64}\nneck: {type: GlobalAveragePooling}\nhead: {type: ClassifierHead, dim: 4, num_classes: 2}\n".to_string(),
            "backbone.width_per_group: base_channels 1 × width_per_group 1 / 64 × groups 64 leaves the first stage's bottleneck without channels",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        for command in ["check", "load"] {
            let out = run(&[command, path.to_str().unwrap()]);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{command} {name}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(err.contains(says), "{command} {name}: {err}");
            assert!(err.contains(name), "{err}");
        }
    }
}

/// No command writes its output onto one of its inputs — the checkpoint (also through a
/// symbolic link, or the cache entry of a URL), the config, the input batch — which the
/// atomic rename would have replaced; the input is left byte for byte.
#[test]
fn no_command_overwrites_its_own_input() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("classifier.safetensors");
    std::fs::copy(fixture("safetensors/classifier.safetensors"), &checkpoint).unwrap();
    let link = dir.path().join("link.safetensors");
    std::os::unix::fs::symlink(&checkpoint, &link).unwrap();
    let original = std::fs::read(&checkpoint).unwrap();
    let c = checkpoint.to_str().unwrap();
    let same_spelled_otherwise = format!("{}/./classifier.safetensors", dir.path().display());
    for (source, out) in [
        (c, c),
        (c, link.to_str().unwrap()),
        (link.to_str().unwrap(), c),
        (c, same_spelled_otherwise.as_str()),
    ] {
        let run = run(&["convert", source, out]);
        let err = stderr(&run);
        assert_eq!(run.status.code(), Some(1), "{source} → {out}: {err}");
        assert!(
            err.contains("refusing to write the output onto the checkpoint it is made from"),
            "{err}"
        );
        assert_eq!(std::fs::read(&checkpoint).unwrap(), original);
    }
    // `export` onto the checkpoint its config loads, and onto the config itself.
    let config = dir.path().join("classifier.json");
    std::fs::write(
        &config,
        r#"{"type": "Classifier", "backbone": {"type": "ResNet", "depth": 18, "base_channels": 8},
            "neck": {"type": "GlobalAveragePooling"},
            "head": {"type": "ClassifierHead", "dim": 64, "num_classes": 5},
            "pretrain": "classifier.safetensors"}"#,
    )
    .unwrap();
    let out = run(&["export", config.to_str().unwrap(), c]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("onto the checkpoint"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&checkpoint).unwrap(), original);
    // `load --output` onto its input batch or its config.
    let input = dir.path().join("input.npy");
    std::fs::copy(fixture("resnet/classifier_input.npy"), &input).unwrap();
    let batch = std::fs::read(&input).unwrap();
    for (onto, what) in [(&input, "input"), (&config, "config")] {
        let out = run(&[
            "load",
            config.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            onto.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("onto the {what}")),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(std::fs::read(&input).unwrap(), batch);
    // Another path is written as before.
    let fresh = dir.path().join("copy.safetensors");
    let out = run(&["convert", c, fresh.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// An `--input` batch gets a checkpoint's guards: a FIFO would block the read forever.
#[test]
fn an_input_batch_that_is_a_fifo_is_refused_without_reading() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("batch.npy");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let config = fixture("resnet/classifier200.json");
    let out = run(&[
        "load",
        config.to_str().unwrap(),
        "--input",
        fifo.to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("it is a named pipe (FIFO), not a regular file"),
        "{err}"
    );
    assert!(err.contains("batch.npy"), "{err}");
}

/// A timm repository directory stands where a config is expected.
#[test]
fn load_takes_a_repository_directory_as_its_config() {
    let repo = fixture("repos/timm_vit");
    let out = run(&["load", repo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("[(root)] built `vit_tiny_patch16_224` from "),
        "{text}"
    );
    assert!(
        text.contains("pytorch_model.bin (PyTorch zip)\n  loaded 32/32 model tensors"),
        "{text}"
    );
    assert!(text.contains("output [1, 4]"), "{text}");
    let out = run(&["load", repo.to_str().unwrap(), "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["output_shape"], serde_json::json!([1, 4]));
    assert_eq!(json["missing"], serde_json::json!([]));
}

/// timm's probabilities and inputs for the committed images and repositories
/// (`fixtures/predict/generate.py`).
fn timm_tensor(key: &str) -> (Vec<usize>, Vec<f32>) {
    burn_pretrain_tests::saved_f32("predict/tensors.safetensors", key)
}

const PREDICT_IMAGES: [&str; 4] = ["wide.png", "tall.png", "large.png", "photo.jpg"];

/// `predict --json` on `source` agrees with timm's top classes for every committed image:
/// the same classes in the same order, probabilities within 5e-3 (the model sees our
/// preprocessing, which differs from PIL's by a few 8-bit levels here and there).
fn assert_predicts_like_timm(source: &str, repo: &str, envs: &[(&str, &str)]) {
    let want: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("predict/predictions.json")).unwrap(),
    )
    .unwrap();
    let images: Vec<String> = PREDICT_IMAGES
        .iter()
        .map(|i| fixture(&format!("preprocess/{i}")).display().to_string())
        .collect();
    let mut args = vec!["predict", source, "--json", "--top", "5"];
    args.extend(images.iter().map(String::as_str));
    let out = Command::new(BIN)
        .args(&args)
        .envs(envs.iter().copied())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let predictions = got["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), PREDICT_IMAGES.len());
    for (prediction, (image, path)) in predictions.iter().zip(PREDICT_IMAGES.iter().zip(&images)) {
        assert_eq!(prediction["image"], path.as_str());
        let ours = prediction["top"].as_array().unwrap();
        let theirs = want[repo][image].as_array().unwrap();
        let index = |v: &serde_json::Value| v["index"].as_u64().unwrap();
        assert_eq!(
            ours.iter().map(index).collect::<Vec<_>>(),
            theirs.iter().map(index).collect::<Vec<_>>(),
            "{repo}/{image}: {ours:?}"
        );
        for (a, b) in ours.iter().zip(theirs) {
            let (a, b) = (
                a["probability"].as_f64().unwrap(),
                b["probability"].as_f64().unwrap(),
            );
            assert!((a - b).abs() <= 5e-3, "{repo}/{image}: {a} vs timm's {b}");
        }
    }
}

#[test]
fn predict_gives_timms_top_classes_for_each_repository_and_image() {
    for repo in ["timm_resnet", "timm_vit", "timm_convnext"] {
        let dir = fixture(&format!("repos/{repo}"));
        assert_predicts_like_timm(dir.to_str().unwrap(), repo, &[]);
    }
    // Labels from the config, text output.
    let photo = fixture("preprocess/photo.jpg");
    let resnet = fixture("repos/timm_resnet");
    let out = run(&[
        "predict",
        resnet.to_str().unwrap(),
        photo.to_str().unwrap(),
        "--top",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "{}\n   0.3000      3  dog\n   0.2173      0  ant\n",
            photo.display()
        )
    );
}

#[test]
fn predict_from_the_loopback_hub() {
    use burn_pretrain_tests::server::{Behavior, TestServer};
    let server = TestServer::start();
    for file in ["config.json", "pytorch_model.bin"] {
        let bytes = std::fs::read(fixture(&format!("repos/timm_vit/{file}"))).unwrap();
        server.route(
            &format!("/org/tiny-vit/resolve/main/{file}"),
            Behavior::Serve(bytes),
        );
    }
    let cache = tempfile::tempdir().unwrap();
    let base = server.base();
    let envs = [
        ("HF_ENDPOINT", base.as_str()),
        ("BURN_PRETRAIN_CACHE", cache.path().to_str().unwrap()),
    ];
    assert_predicts_like_timm("hf://org/tiny-vit", "timm_vit", &envs);
}

#[test]
fn preprocess_writes_timms_tensor_and_load_reproduces_timms_probabilities() {
    let dir = tempfile::tempdir().unwrap();
    let photo = fixture("preprocess/photo.jpg");
    for repo in ["timm_resnet", "timm_vit", "timm_convnext"] {
        let source = fixture(&format!("repos/{repo}"));
        let ours = dir.path().join(format!("{repo}.npy"));
        let out = run(&[
            "preprocess",
            source.to_str().unwrap(),
            photo.to_str().unwrap(),
            "--output",
            ours.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let (shape, theirs) = timm_tensor(&format!("{repo}/photo.jpg/input"));
        let got = read_npy(&ours);
        assert_eq!(got.len(), theirs.len(), "{repo}: timm's shape {shape:?}");
        let diffs: Vec<f32> = got
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .collect();
        let max = diffs.iter().copied().fold(0f32, f32::max);
        let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
        assert!(
            max <= 0.05 && mean <= 0.005,
            "{repo}: max {max}, mean {mean}"
        );
        assert!(
            stdout(&out).contains(&format!(
                "{} [1, 3, {}, {}]",
                ours.display(),
                shape[2],
                shape[3]
            )),
            "{}",
            stdout(&out)
        );
        // timm's own tensor through `load`: its probabilities within 1e-3.
        let input = dir.path().join(format!("{repo}_timm.npy"));
        let mut file = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        use npyz::WriterBuilder;
        let mut writer = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&shape.iter().map(|&d| d as u64).collect::<Vec<_>>())
            .writer(&mut file)
            .begin_nd()
            .unwrap();
        writer.extend(theirs.iter().copied()).unwrap();
        writer.finish().unwrap();
        drop(file);
        let logits = dir.path().join(format!("{repo}_logits.npy"));
        let out = run(&[
            "load",
            source.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            logits.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let logits = read_npy(&logits);
        let max_logit = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f64> = logits
            .iter()
            .map(|&l| f64::from(l - max_logit).exp())
            .collect();
        let sum: f64 = exp.iter().sum();
        let (_, want) = timm_tensor(&format!("{repo}/photo.jpg/probabilities"));
        for (e, w) in exp.iter().zip(&want) {
            let p = e / sum;
            assert!(
                (p - f64::from(*w)).abs() <= 1e-3,
                "{repo}: {p} vs timm's {w}"
            );
        }
    }
}

#[test]
fn predict_and_preprocess_refuse_what_they_cannot_do() {
    let photo = fixture("preprocess/photo.jpg");
    let config = fixture("resnet/classifier200.json");
    // A config without a repository has no data config.
    let out = run(&[
        "preprocess",
        config.to_str().unwrap(),
        photo.to_str().unwrap(),
        "--output",
        "/tmp/never.npy",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not a model repository"),
        "{}",
        stderr(&out)
    );
    // Not an image.
    let repo = fixture("repos/timm_convnext");
    let not_image = fixture("repos/timm_convnext/config.json");
    let out = run(&[
        "predict",
        repo.to_str().unwrap(),
        not_image.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with(&format!("error: cannot read image {}", not_image.display())),
        "{}",
        stderr(&out)
    );
}

/// `embed --json` rows against sentence-transformers' embeddings
/// (`fixtures/sentence/generate.py`): cosine ≥ 0.9999 per sentence.
fn assert_embeds_like_sentence_transformers(source: &str, envs: &[(&str, &str)]) {
    let texts: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(fixture("sentence/sentences.json")).unwrap())
            .unwrap();
    let (shape, want) =
        burn_pretrain_tests::saved_f32("sentence/expected.safetensors", "st_mean/embeddings");
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("e.npy");
    let mut args = vec!["embed", source, "--json", "--output", npy.to_str().unwrap()];
    args.extend(texts.iter().map(String::as_str));
    let out = Command::new(BIN)
        .args(&args)
        .envs(envs.iter().copied())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["dimension"], shape[1]);
    assert_eq!(json["pooling"], serde_json::json!(["mean"]));
    assert_eq!(json["normalize"], true);
    let rows = json["embeddings"].as_array().unwrap();
    assert_eq!(rows.len(), texts.len());
    let saved = read_npy(&npy);
    for (i, (row, text)) in rows.iter().zip(&texts).enumerate() {
        assert_eq!(row["text"], text.as_str());
        let ours: Vec<f64> = row["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let theirs = &want[i * shape[1]..(i + 1) * shape[1]];
        let dot: f64 = ours
            .iter()
            .zip(theirs)
            .map(|(a, b)| a * f64::from(*b))
            .sum();
        let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
        let cosine = dot
            / (norm(&mut ours.iter().copied()) * norm(&mut theirs.iter().map(|&x| f64::from(x))));
        assert!(cosine >= 0.9999, "{source}: sentence {i}: cosine {cosine}");
        let npy_row = &saved[i * shape[1]..(i + 1) * shape[1]];
        assert!(
            ours.iter()
                .zip(npy_row)
                .all(|(a, b)| (*a as f32 - b).abs() < 1e-6)
        );
    }
}

#[test]
fn embed_reproduces_sentence_transformers_locally_and_from_the_loopback_hub() {
    let dir = fixture("sentence/st_mean");
    assert_embeds_like_sentence_transformers(dir.to_str().unwrap(), &[]);
    use burn_pretrain_tests::server::{Behavior, TestServer};
    let server = TestServer::start();
    for file in [
        "config.json",
        "modules.json",
        "1_Pooling/config.json",
        "2_Normalize/config.json",
        "sentence_bert_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "model.safetensors",
    ] {
        server.route(
            &format!("/org/tiny-st/resolve/main/{file}"),
            Behavior::Serve(std::fs::read(dir.join(file)).unwrap()),
        );
    }
    let cache = tempfile::tempdir().unwrap();
    let base = server.base();
    assert_embeds_like_sentence_transformers(
        "hf://org/tiny-st",
        &[
            ("HF_ENDPOINT", base.as_str()),
            ("BURN_PRETRAIN_CACHE", cache.path().to_str().unwrap()),
        ],
    );
    // An image repository is not a sentence encoder.
    let timm = fixture("repos/timm_resnet");
    let out = run(&["embed", timm.to_str().unwrap(), "hello"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no `model_type`"), "{}", stderr(&out));
}

#[test]
fn predict_with_a_transformers_vit_repository_names_its_labels() {
    let repo = fixture("hf_vit/classifier");
    for image in PREDICT_IMAGES {
        let path = fixture(&format!("preprocess/{image}"));
        let out = run(&[
            "predict",
            repo.to_str().unwrap(),
            path.to_str().unwrap(),
            "--json",
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let top = json["predictions"][0]["top"].as_array().unwrap();
        let (_, want) = burn_pretrain_tests::saved_f32(
            "hf_vit/io.safetensors",
            &format!("probabilities/{image}"),
        );
        let mut order: Vec<usize> = (0..want.len()).collect();
        order.sort_by(|&a, &b| want[b].total_cmp(&want[a]));
        let labels = ["ant", "bee", "cat"];
        assert_eq!(top.len(), 3);
        for (class, &i) in top.iter().zip(&order) {
            assert_eq!(class["index"], i, "{image}: {top:?}");
            assert_eq!(class["label"], labels[i]);
            let p = class["probability"].as_f64().unwrap();
            assert!(
                (p - f64::from(want[i])).abs() <= 5e-3,
                "{image}: {p} vs {}",
                want[i]
            );
        }
    }
}

/// `convert --quantize`: a timm ViT converted with its Linear weights quantized while loading
/// (Q8, blocks of 16) to a burnpack burn-store's `BurnpackStore` loads into the float model:
/// every tensor (quantized ones included, bit for bit) equals the in-process quantized load
/// of the same config, and so do the logits. The head's 10 outputs are not a multiple of 16:
/// left in float and said so.
#[test]
fn convert_quantize_writes_a_quantized_burnpack_burn_loads() {
    use burn::prelude::*;
    use burn_pretrain_models::{BACKBONES, Features, Stage, read_config_file, strip_pretrain};
    use burn_store::{BurnpackStore, ModuleSnapshot};
    let config_path = fixture("timm/vit_narrow_384.json");
    let source = fixture("timm/vit_narrow.pth");
    let dir = tempfile::tempdir().unwrap();
    let bpk = dir.path().join("vit_q8.bpk");
    let scheme = r#"{"value": "q8s", "block": 16}"#;
    let out = run(&[
        "convert",
        source.to_str().unwrap(),
        bpk.to_str().unwrap(),
        "--config",
        config_path.to_str().unwrap(),
        "--quantize",
        scheme,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // qkv, proj, fc1 and fc2 of 2 blocks (qkv is burn's query, key and value: 12 Linear
    // weights); the head stays f32.
    assert!(
        text.contains("8 quantized (q8s, blocks of 16, f16 scales; "),
        "{text}"
    );
    assert!(text.contains("left in float"), "{text}");
    assert!(text.contains("head.weight"), "{text}");

    let device = Device::flex();
    let mut config = read_config_file(&config_path).unwrap();
    config["pretrain"] = serde_json::json!({
        "path": source.to_str().unwrap(),
        "quantize": serde_json::from_str::<serde_json::Value>(scheme).unwrap(),
    });
    let reference = BACKBONES.build(&config, &device).unwrap().model;
    strip_pretrain(&mut config);
    let mut converted = BACKBONES.build(&config, &device).unwrap().model;
    let applied = converted
        .load_from(&mut BurnpackStore::from_file(&bpk))
        .unwrap();
    assert!(
        applied.errors.is_empty() && applied.missing.is_empty() && applied.unused.is_empty(),
        "{applied:?}"
    );
    burn_pretrain_tests::assert_same_tensors(&converted, &reference);
    let quantized = converted
        .collect(None, None, false)
        .iter()
        .filter(|t| matches!(t.dtype, burn::tensor::DType::QFloat(_)))
        .count();
    assert_eq!(quantized, 12);
    let x = Tensor::<4>::ones([1, 3, 384, 384], &device);
    let logits =
        |m: &burn_pretrain_models::Backbone| match Stage::forward(m, Features::D4(x.clone())) {
            Features::D2(t) => t.into_data().iter::<f32>().collect::<Vec<_>>(),
            other => panic!("logits expected, got {:?}", other.dims()),
        };
    let (a, b) = (logits(&converted), logits(&reference));
    assert_eq!(a.len(), 10);
    assert_eq!(a, b);

    // A quantized safetensors file, or no model to say what is a Linear weight: refused.
    let out = run(&[
        "convert",
        source.to_str().unwrap(),
        dir.path().join("q.safetensors").to_str().unwrap(),
        "--config",
        config_path.to_str().unwrap(),
        "--quantize",
        "q8s",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("writes a burnpack"),
        "{}",
        stderr(&out)
    );
    let out = run(&[
        "convert",
        source.to_str().unwrap(),
        bpk.to_str().unwrap(),
        "--quantize",
        "q8s",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--config"), "{}", stderr(&out));
    let out = run(&[
        "convert",
        source.to_str().unwrap(),
        bpk.to_str().unwrap(),
        "--config",
        config_path.to_str().unwrap(),
        "--quantize",
        "q3s",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--quantize q3s"), "{}", stderr(&out));
}

/// A `pretrain serve` process, killed when dropped.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `pretrain serve` on a free loopback port, and the URL its first line names.
fn serve() -> (Server, String) {
    use std::io::BufRead;
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let server = Server(child);
    let url = line
        .trim_end()
        .rsplit_once(" on ")
        .map(|(_, url)| url.to_string())
        .unwrap_or_else(|| panic!("serve printed {line:?}"));
    assert!(line.starts_with("serving "), "{line}");
    assert!(url.starts_with("ws://127.0.0.1:"), "{line}");
    (server, url)
}

/// `load --device ws://…` onto a `pretrain serve` process: the classifier loads there and its
/// output is byte for byte the local load's.
#[test]
fn load_onto_a_remote_device_served_by_pretrain_serve() {
    let (_server, url) = serve();
    let dir = tempfile::tempdir().unwrap();
    let config = fixture("resnet/classifier100.json");
    let input = fixture("resnet/classifier_input.npy");
    let mut outputs = Vec::new();
    for device in [url.as_str(), "flex"] {
        let path = dir.path().join(format!("out{}.npy", outputs.len()));
        let out = run(&[
            "load",
            config.to_str().unwrap(),
            "--device",
            device,
            "--input",
            input.to_str().unwrap(),
            "--output",
            path.to_str().unwrap(),
            "--json",
        ]);
        assert!(out.status.success(), "{device}: {}", stderr(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["loaded"].as_array().unwrap().len(), 102, "{device}");
        outputs.push(std::fs::read(&path).unwrap());
    }
    assert_eq!(outputs[0], outputs[1], "remote and local outputs differ");
    assert_npy_close(
        &dir.path().join("out0.npy"),
        &fixture("resnet/classifier_probabilities.npy"),
    );

    // No server there: one line naming the URL.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("ws://{}", closed.local_addr().unwrap());
    drop(closed);
    let out = run(&["load", config.to_str().unwrap(), "--device", &dead]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with(&format!(
            "error: --device {dead}: connecting to the burn remote server"
        )),
        "{}",
        stderr(&out)
    );
    // A device that is not one.
    let out = run(&["load", config.to_str().unwrap(), "--device", "tpu"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`tpu`: expected flex, ndarray, wgpu, tch or ws://HOST:PORT"),
        "{}",
        stderr(&out)
    );
}
